package presence

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis counts members across a cluster. Each node keeps, in a hash of its
// own, how many local members each room has; a sorted set records until
// when each node is alive. A room's count is the sum over live nodes, done
// inside Redis by a script: one round trip per join or leave, whatever the
// number of connections. Each node renews its liveness every TTL/4, in one
// script on a client of its own (so that a renewal neither waits behind the
// node's publishes nor takes several round trips of a slow Redis); a node
// that stops renewing is out of every count after TTL, and the first node
// to notice reports its rooms' losses (NodeGone) and marks it reaped. A
// node that was only slow finds the mark at its next renewal, counts its
// members again and reports them back (NodeBack).
//
// Who is online: each node also keeps, per room, a hash of its members'
// users (user → connections), and a sorted set holds every room with
// members, by name. A join or leave changes one field of each and touches
// the set: O(1) in the room's size. Who reads the hashes of live nodes only
// until it has the users asked for.
//
// The scripts read keys they are not passed, so this works on a single
// Redis server (or a replicated one), not on Redis Cluster.
type Redis struct {
	client   *redis.Client
	renewer  *redis.Client // renewals only; closed when Run returns
	node     string
	limit    int
	ttl      time.Duration
	interval time.Duration // presence interval: one claim per room per interval
	log      *slog.Logger

	nodesKey, nodeKey, nodePrefix, pendingPrefix, lockPrefix string
	usersPrefix, roomsKey, reapedPrefix, reapedKey           string

	// resync is held for writing while this node's hash is rewritten from
	// local, so that no Add lands in between; Adds hold it for reading.
	resync   sync.RWMutex
	localMu  sync.Mutex
	local    map[string]int            // this node's members per room
	users    map[string]map[string]int // this node's connections per room and user
	needSync bool                      // an Add failed or Redis lost our hash

	onGone, onBack func(room string, s Summary)
}

// RedisOptions configure NewRedis.
type RedisOptions struct {
	Client   *redis.Client
	Prefix   string
	Node     string
	Limit    int           // presence limit
	Interval time.Duration // presence interval
	TTL      time.Duration // how long a silent node still counts; default 15s
	Logger   *slog.Logger
	// NodeGone is called, by the one node that notices, for each room a
	// dead node had members in, with the room's new count and how many
	// left with that node.
	NodeGone func(room string, s Summary)
	// NodeBack is called, by this node, for each room it has members in
	// when it finds it was reaped while alive (its renewals were late):
	// its members are counted again, and s says how many came back
	// (Joined) and the room's new count, so that the joins are announced
	// as the losses were.
	NodeBack func(room string, s Summary)
}

// NewRedis returns a cluster counter. Run must be running for the node to
// stay counted.
func NewRedis(o RedisOptions) *Redis {
	if o.TTL <= 0 {
		o.TTL = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NodeGone == nil {
		o.NodeGone = func(string, Summary) {}
	}
	if o.NodeBack == nil {
		o.NodeBack = func(string, Summary) {}
	}
	p := o.Prefix + "presence:"
	return &Redis{
		client: o.Client, renewer: newRenewer(o.Client, renewDeadline(o.TTL)), node: o.Node, limit: o.Limit, ttl: o.TTL, interval: o.Interval, log: o.Logger,
		nodesKey: p + "nodes", nodeKey: p + "node:" + o.Node, nodePrefix: p + "node:",
		pendingPrefix: p + "pending:", lockPrefix: p + "lock:",
		usersPrefix: p + "users:", roomsKey: p + "rooms",
		reapedPrefix: p + "reaped:", reapedKey: p + "reaped:" + o.Node,
		local: make(map[string]int), users: make(map[string]map[string]int), onGone: o.NodeGone, onBack: o.NodeBack,
		// A node restarted under the same name finds its previous life's
		// counts still in Redis: its first renewal replaces them.
		needSync: true,
	}
}

// sumLive starts every script: total() is the room's members over live
// nodes. The scripts are embedded from lua/, one file each.
//
//go:embed lua/sum_live.lua
var sumLive string

// KEYS: nodes, this node's hash, the room's pending hash, this node's users
// hash for the room, the rooms set.
// ARGV: node prefix, room, node, delta, ttl ms, limit, user.
//
//go:embed lua/add.lua
var addLua string

var addScript = redis.NewScript(sumLive + addLua)

// KEYS: nodes, the room's lock, the room's pending hash.
// ARGV: node prefix, room, node, interval ms.
//
//go:embed lua/claim.lua
var claimLua string

var claimScript = redis.NewScript(sumLive + claimLua)

// KEYS: nodes. ARGV: node prefix, room (unused), dead node, users prefix,
// reaped mark prefix. Removes the dead node if nobody has yet and marks it
// reaped; returns its rooms and counts.
//
//go:embed lua/reap.lua
var reapLua string

var reapScript = redis.NewScript(sumLive + reapLua)

// KEYS: nodes, this node's hash, its reaped mark. ARGV: node, ttl ms,
// users prefix, rooms with local members. Returns {hash kept, reaped}.
//
//go:embed lua/renew.lua
var renewLua string

var renewScript = redis.NewScript(renewLua)

// renewDeadline bounds one renewal: long enough for replies seconds late
// (the script runs when it arrives; only its answer is slow), short enough
// that a renewal lost on a dead connection is retried within the TTL.
func renewDeadline(ttl time.Duration) time.Duration { return ttl * 3 / 4 }

// newRenewer is a client of two connections with c's address and
// credentials, for renewals alone, whose timeouts are the renewal's
// deadline rather than c's (tuned for publishes that must fail fast).
// It retries nothing itself: Run retries a failed renewal. Renewals send
// the script itself (EVAL, not EVALSHA): a script cache miss would cost a
// second round trip.
func newRenewer(c *redis.Client, deadline time.Duration) *redis.Client {
	o := c.Options()
	return redis.NewClient(&redis.Options{
		Network: o.Network, Addr: o.Addr, Dialer: o.Dialer, TLSConfig: o.TLSConfig,
		// RESP2 and no CLIENT SETINFO: a new connection starts without a
		// round trip (with a password, one: AUTH), which matters when each
		// takes seconds.
		Protocol: 2, DisableIdentity: true, Username: o.Username, Password: o.Password,
		CredentialsProvider: o.CredentialsProvider, DB: o.DB,
		DialTimeout: o.DialTimeout, ReadTimeout: deadline, WriteTimeout: deadline, PoolTimeout: deadline,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		PoolSize:              2, MaxIdleConns: 2,
	})
}

// usersKey is this node's users hash for room. Room names cannot hold '|',
// so the key is unambiguous whatever the node's name.
func (r *Redis) usersKey(node, room string) string { return r.usersPrefix + node + "|" + room }

// addLocal records delta for user in room in this node's own counts.
// localMu must be held.
func (r *Redis) addLocal(room, user string, delta int) {
	r.local[room] += delta
	if r.local[room] <= 0 {
		delete(r.local, room)
	}
	u := r.users[room]
	if u == nil {
		u = make(map[string]int)
		r.users[room] = u
	}
	if u[user] += delta; u[user] <= 0 {
		delete(u, user)
	}
	if len(u) == 0 {
		delete(r.users, room)
	}
}

// Add records this node's join (+1) or leave (-1) of user in room.
func (r *Redis) Add(ctx context.Context, room, user string, delta int) (Change, error) {
	r.resync.RLock()
	defer r.resync.RUnlock()
	r.localMu.Lock()
	r.addLocal(room, user, delta)
	r.localMu.Unlock()

	res, err := addScript.Run(ctx, r.client,
		[]string{r.nodesKey, r.nodeKey, r.pendingPrefix + room, r.usersKey(r.node, room), r.roomsKey},
		r.nodePrefix, room, r.node, delta, r.ttl.Milliseconds(), r.limit, user).Int64Slice()
	if err != nil {
		// A join that cannot be counted is refused by the hub, so it is
		// undone here; a leave happens anyway, so it stays recorded, and
		// the node's counts are rewritten when Redis answers again.
		if delta > 0 {
			r.localMu.Lock()
			r.addLocal(room, user, -delta)
			r.localMu.Unlock()
		}
		r.markSync()
		return Change{}, fmt.Errorf("presence add: %w", err)
	}
	if res[2] == 1 {
		// Our node was not in the nodes set: Redis lost its data or we
		// were reaped, so our hash holds this room alone.
		r.markSync()
	}
	return Change{Online: int(res[0]), Coalesced: res[1] == 1}, nil
}

// Claim takes room's coalesced changes for one presence event. Only one
// node wins per room per interval; the others get ok false and should try
// again next interval if they still have changes of their own.
func (r *Redis) Claim(ctx context.Context, room string) (Summary, bool, error) {
	res, err := claimScript.Run(ctx, r.client,
		[]string{r.nodesKey, r.lockPrefix + room, r.pendingPrefix + room},
		r.nodePrefix, room, r.node, r.interval.Milliseconds()).Int64Slice()
	if err != nil {
		return Summary{}, false, fmt.Errorf("presence claim: %w", err)
	}
	if res[0] == 0 {
		return Summary{}, false, nil
	}
	return Summary{Online: int(res[1]), Joined: int(res[2]), Left: int(res[3])}, true, nil
}

// KEYS: the room's lock, the room's pending hash.
// ARGV: node, joined, left.
//
//go:embed lua/unclaim.lua
var unclaimLua string

var unclaimScript = redis.NewScript(unclaimLua)

// Unclaim gives back the changes of a claim whose presence event could not
// be sent, and releases the room's claim if this node still holds it, so
// that the next claim, on any node, announces them.
func (r *Redis) Unclaim(ctx context.Context, room string, s Summary) error {
	err := unclaimScript.Run(ctx, r.client,
		[]string{r.lockPrefix + room, r.pendingPrefix + room},
		r.node, s.Joined, s.Left).Err()
	if err != nil && err != redis.Nil {
		return fmt.Errorf("presence unclaim: %w", err)
	}
	return nil
}

func (r *Redis) markSync() {
	r.localMu.Lock()
	r.needSync = true
	r.localMu.Unlock()
}

// Run keeps this node counted until ctx ends, then removes it from every
// count (a graceful exit need not wait for the TTL).
//
// While Redis is unreachable it retries every quarter second rather than
// every TTL/4, so that counts are rewritten as soon as Redis is back.
//
// NodeGone and NodeBack callbacks run one at a time in a goroutine of
// Run's own, so a slow one cannot hold up this node's renewal. On exit Run
// waits for the callback in progress; reports still waiting are dropped.
func (r *Redis) Run(ctx context.Context) {
	defer r.renewer.Close() //nolint:errcheck // nothing to do about it on the way out
	lost := make(chan lostRoom, lostQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for l := range lost {
			if ctx.Err() != nil {
				continue
			}
			if l.back {
				r.announceBack(ctx, l)
			} else {
				r.onGone(l.room, l.s)
			}
		}
	}()
	period := r.ttl / 4
	// The reaper has a loop of its own, so that reaping (several round
	// trips, seconds each when Redis is slow) never delays a renewal.
	reaperDone := make(chan struct{})
	go func() {
		defer close(reaperDone)
		r.reapEvery(ctx, period, lost)
	}()
	defer func() { <-reaperDone; close(lost); <-done }() // lost's writers end first

	retry := min(period, 250*time.Millisecond)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			r.client.ZRem(bg, r.nodesKey, r.node)
			r.client.Del(bg, r.nodeKey)
			r.localMu.Lock()
			keys := make([]string, 0, len(r.users))
			for room := range r.users {
				keys = append(keys, r.usersKey(r.node, room))
			}
			r.localMu.Unlock()
			for len(keys) > 0 {
				n := min(len(keys), 1000)
				r.client.Del(bg, keys[:n]...)
				keys = keys[n:]
			}
			return
		case <-t.C:
		}
		// The next renewal is due a period after this one began, however
		// long it took: with replies seconds late it takes seconds, and
		// the node's life runs from when the script ran.
		next := time.Now().Add(period)
		back, ok := r.renewAndCheck(ctx)
		if ok {
			r.queueBack(back, lost)
			t.Reset(time.Until(next))
		} else {
			t.Reset(retry)
		}
	}
}

// reapEvery reaps dead nodes every period until ctx ends.
func (r *Redis) reapEvery(ctx context.Context, period time.Duration, lost chan<- lostRoom) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.reap(ctx, lost)
		}
	}
}

// queueBack queues a NodeBack report for each room in back.
func (r *Redis) queueBack(back map[string]int, lost chan<- lostRoom) {
	for room, n := range back {
		select {
		case lost <- lostRoom{room: room, s: Summary{Joined: n}, back: true}:
		default:
			r.log.Warn("presence return not reported: too many waiting", "room", room)
		}
	}
}

// announceBack reports that l.s.Joined members of l.room are counted again,
// with the room's count now.
func (r *Redis) announceBack(ctx context.Context, l lostRoom) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	online, err := r.count(ctx, l.room)
	if err != nil {
		r.log.Warn("presence return not reported", "room", l.room, "err", err)
		return
	}
	l.s.Online = online
	r.onBack(l.room, l.s)
}

// renew extends this node's life, and rewrites its hash from the local
// counts when Redis lost it (a restart), an Add failed, or a reaper took
// this node for dead. It reports whether everything succeeded.
func (r *Redis) renew(ctx context.Context) bool {
	_, ok := r.renewAndCheck(ctx)
	return ok
}

// renewAndCheck is renew; when this node found it had been reaped, back is
// its local members per room, now counted again, for NodeBack.
func (r *Redis) renewAndCheck(ctx context.Context) (back map[string]int, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, renewDeadline(r.ttl))
	defer cancel()
	r.localMu.Lock()
	args := make([]any, 0, 3+len(r.users))
	args = append(args, r.node, r.ttl.Milliseconds(), r.usersPrefix)
	for room := range r.users {
		args = append(args, room)
	}
	r.localMu.Unlock()
	// A failed renewal leaves the counts as they were: no rewrite is
	// needed for it (a late one may well have run), only a retry.
	res, err := renewScript.Eval(ctx, r.renewer, []string{r.nodesKey, r.nodeKey, r.reapedKey}, args...).Int64Slice()
	if err != nil || len(res) != 2 {
		r.log.Debug("presence renewal failed", "err", err)
		return nil, false
	}
	kept, reaped := res[0] == 1, res[1] == 1
	r.localMu.Lock()
	sync := r.needSync || reaped || (!kept && len(r.local) > 0)
	r.localMu.Unlock()
	if sync && !r.rewrite(ctx) {
		return nil, false
	}
	if !reaped {
		return nil, true
	}
	// The rewrite counted this node's members again: they are announced
	// back, and the mark goes so that they are announced once.
	if err := r.renewer.Del(ctx, r.reapedKey).Err(); err != nil {
		return nil, false // the rewrite and the announcement are retried
	}
	r.localMu.Lock()
	back = make(map[string]int, len(r.local))
	for room, n := range r.local {
		back[room] = n
	}
	r.localMu.Unlock()
	r.log.Warn("this node was taken for dead while alive: its members are counted and announced again", "rooms", len(back))
	return back, true
}

// rewrite replaces this node's hash with its local counts. It needs no Add
// in flight, and does not wait for one in line (sync.RWMutex.Lock would
// hold every new Add behind it): it tries for the lock until ctx ends, and
// a rewrite that does not get it is retried at the next renew.
func (r *Redis) rewrite(ctx context.Context) bool {
	if !r.lockResync(ctx) {
		r.log.Warn("presence resync postponed: counts still being added")
		return false
	}
	defer r.resync.Unlock()
	old, err := r.renewer.HKeys(ctx, r.nodeKey).Result()
	if err != nil {
		r.log.Warn("presence resync failed", "err", err)
		return false
	}
	r.localMu.Lock()
	fields := make([]any, 0, 2*len(r.local))
	for room, n := range r.local {
		fields = append(fields, room, n)
	}
	users := make(map[string][]any, len(r.users))
	for room, u := range r.users {
		f := make([]any, 0, 2*len(u))
		for user, n := range u {
			f = append(f, user, n)
		}
		users[room] = f
	}
	r.localMu.Unlock()
	_, err = r.renewer.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.nodeKey)
		for _, room := range old {
			p.Del(ctx, r.usersKey(r.node, room))
		}
		if len(fields) > 0 {
			p.HSet(ctx, r.nodeKey, fields...)
			p.PExpire(ctx, r.nodeKey, 2*r.ttl)
		}
		for room, f := range users {
			p.HSet(ctx, r.usersKey(r.node, room), f...)
			p.PExpire(ctx, r.usersKey(r.node, room), 2*r.ttl)
			p.ZAdd(ctx, r.roomsKey, redis.Z{Member: room})
		}
		return nil
	})
	if err != nil {
		r.log.Warn("presence resync failed", "err", err)
		return false
	}
	r.localMu.Lock()
	r.needSync = false
	r.localMu.Unlock()
	r.log.Info("presence counts rewritten", "rooms", len(fields)/2)
	return true
}

// lostRoom is a room that lost members with a dead node, for NodeGone, or
// (back) got this node's members back after it was reaped, for NodeBack.
type lostRoom struct {
	room string
	s    Summary
	back bool
}

// lostQueue bounds the NodeGone reports waiting for the callback. Past it
// they are dropped (and logged): the counts are right regardless, only the
// presence event is missed.
const lostQueue = 1024

// lockResync takes resync for writing, trying every few milliseconds until
// ctx ends.
func (r *Redis) lockResync(ctx context.Context) bool {
	if r.resync.TryLock() {
		return true
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			if r.resync.TryLock() {
				return true
			}
		}
	}
}

// reap removes nodes whose life ran out and queues their rooms on lost.
func (r *Redis) reap(ctx context.Context, lost chan<- lostRoom) {
	ctx, cancel := context.WithTimeout(ctx, r.ttl/4)
	defer cancel()
	now, err := r.client.Time(ctx).Result()
	if err != nil {
		return
	}
	dead, err := r.client.ZRangeByScore(ctx, r.nodesKey, &redis.ZRangeBy{Min: "-inf", Max: fmt.Sprint(now.UnixMilli())}).Result()
	if err != nil {
		return
	}
	for _, node := range dead {
		rooms, err := reapScript.Run(ctx, r.client, []string{r.nodesKey}, r.nodePrefix, "", node, r.usersPrefix, r.reapedPrefix).StringSlice()
		if err != nil || len(rooms) == 0 {
			continue
		}
		r.log.Warn("node stopped renewing; its members left every count", "node", node)
		for i := 0; i+1 < len(rooms); i += 2 {
			room := rooms[i]
			var left int
			fmt.Sscan(rooms[i+1], &left)
			online, err := r.count(ctx, room)
			if err != nil || left <= 0 {
				continue
			}
			select {
			case lost <- lostRoom{room: room, s: Summary{Online: online, Left: left}}:
			default:
				r.log.Warn("presence loss not reported: too many waiting", "node", node, "room", room)
			}
		}
	}
}

// KEYS: nodes. ARGV: node prefix, room.
//
//go:embed lua/count.lua
var countLua string

var countScript = redis.NewScript(sumLive + countLua)

func (r *Redis) count(ctx context.Context, room string) (int, error) {
	n, err := countScript.Run(ctx, r.client, []string{r.nodesKey}, r.nodePrefix, room).Int()
	return n, err
}

// KEYS: nodes. ARGV: node prefix, room, users prefix, limit.
//
//go:embed lua/who.lua
var whoLua string

var whoScript = redis.NewScript(sumLive + whoLua)

// Who returns room's count across the cluster and up to limit of its
// distinct users, sorted. One script: it reads each live node's users hash
// for the room only until it has limit+1 users.
func (r *Redis) Who(ctx context.Context, room string, limit int) (Members, error) {
	res, err := whoScript.Run(ctx, r.client, []string{r.nodesKey}, r.nodePrefix, room, r.usersPrefix, limit).Slice()
	if err != nil {
		return Members{}, fmt.Errorf("presence who: %w", err)
	}
	if len(res) != 3 {
		return Members{}, fmt.Errorf("presence who: %d values from the script", len(res))
	}
	online, _ := res[0].(int64)
	truncated, _ := res[1].(int64)
	raw, _ := res[2].([]any)
	m := Members{Online: int(online), Truncated: truncated == 1, Users: make([]string, 0, len(raw))}
	for _, u := range raw {
		if s, ok := u.(string); ok {
			m.Users = append(m.Users, s)
		}
	}
	slices.Sort(m.Users)
	return m, nil
}

// KEYS: nodes, rooms. ARGV: node prefix, after, limit.
//
//go:embed lua/rooms.lua
var roomsLua string

var roomsScript = redis.NewScript(sumLive + roomsLua)

// Rooms returns up to limit rooms with members across the cluster whose
// names sort after after, in name order, with their counts.
func (r *Redis) Rooms(ctx context.Context, after string, limit int) ([]RoomCount, error) {
	res, err := roomsScript.Run(ctx, r.client, []string{r.nodesKey, r.roomsKey}, r.nodePrefix, after, limit).Slice()
	if err != nil {
		return nil, fmt.Errorf("presence rooms: %w", err)
	}
	out := make([]RoomCount, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		name, _ := res[i].(string)
		n, _ := res[i+1].(int64)
		out = append(out, RoomCount{Room: name, Online: int(n)})
	}
	return out, nil
}
