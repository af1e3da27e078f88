package presence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

// cluster is a set of simulated nodes sharing one Redis and one prefix.
type cluster struct {
	t      testing.TB
	srv    *redistest.Server
	prefix string
	// fastFail makes clients give up on a dead server after one quick retry
	// (go-redis's default retries take about 2s a command).
	fastFail bool
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	return &cluster{t: t, srv: redistest.Start(t), prefix: t.Name() + ":"}
}

// node returns a presence.Redis with its own client. o.Client, o.Prefix and
// o.Node are filled in.
func (c *cluster) node(name string, o RedisOptions) *Redis {
	c.t.Helper()
	ro := &redis.Options{Addr: c.srv.Addr()}
	if c.fastFail {
		ro.MaxRetries, ro.MaxRetryBackoff = 1, 20*time.Millisecond
		ro.DialerRetries, ro.DialerRetryTimeout = 1, 10*time.Millisecond
	}
	client := redis.NewClient(ro)
	c.t.Cleanup(func() { client.Close() })
	o.Client, o.Prefix, o.Node = client, c.prefix, name
	return NewRedis(o)
}

// run starts r.Run and returns a function that cancels it and waits for
// it to return (also called at the end of the test).
func run(t *testing.T, r *Redis) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func count(t *testing.T, r *Redis, room string) int {
	t.Helper()
	n, err := r.count(context.Background(), room)
	if err != nil {
		t.Fatalf("count(%q): %v", room, err)
	}
	return n
}

func countIs(r *Redis, room string, want int) func() error {
	return func() error {
		n, err := r.count(context.Background(), room)
		if err != nil {
			return fmt.Errorf("count(%q): %v", room, err)
		}
		if n != want {
			return fmt.Errorf("count(%q) = %d, want %d", room, n, want)
		}
		return nil
	}
}

// goneLog records NodeGone calls, from any number of nodes.
type goneLog struct {
	mu     sync.Mutex
	events []goneEvent
}

type goneEvent struct {
	room string
	s    Summary
}

func (g *goneLog) record(room string, s Summary) {
	g.mu.Lock()
	g.events = append(g.events, goneEvent{room, s})
	g.mu.Unlock()
}

func (g *goneLog) snapshot() []goneEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]goneEvent(nil), g.events...)
}

func TestRedisCountsAcrossNodes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.node("a", RedisOptions{Limit: 100, Interval: time.Second})
	b := c.node("b", RedisOptions{Limit: 100, Interval: time.Second})
	d := c.node("d", RedisOptions{Limit: 100, Interval: time.Second})

	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, b, "r", +1, Change{Online: 2})
	for _, n := range []*Redis{a, b, d} {
		if got := count(t, n, "r"); got != 2 {
			t.Fatalf("node %s sees %d, want 2", n.node, got)
		}
	}
	mustAdd(t, d, "r", +1, Change{Online: 3})
	mustAdd(t, a, "other", +1, Change{Online: 1}) // rooms are independent
	mustAdd(t, b, "r", +1, Change{Online: 4})

	mustAdd(t, a, "r", -1, Change{Online: 3})
	mustAdd(t, b, "r", -1, Change{Online: 2})
	mustAdd(t, d, "r", -1, Change{Online: 1})
	mustAdd(t, b, "r", -1, Change{Online: 0})
	mustAdd(t, a, "other", -1, Change{Online: 0})

	// A node's hash loses rooms it has no members in any more.
	for _, n := range []*Redis{a, b, d} {
		if m, err := n.client.HGetAll(context.Background(), n.nodeKey).Result(); err != nil || len(m) != 0 {
			t.Fatalf("node %s hash after everyone left = %v, %v", n.node, m, err)
		}
	}
}

func TestRedisConcurrentAdds(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const perNode = 30
	nodes := []*Redis{
		c.node("a", RedisOptions{Limit: 10, Interval: time.Second}),
		c.node("b", RedisOptions{Limit: 10, Interval: time.Second}),
		c.node("d", RedisOptions{Limit: 10, Interval: time.Second}),
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		for range perNode {
			wg.Go(func() {
				if _, err := n.Add(context.Background(), "r", "u", +1); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if got := count(t, nodes[0], "r"); got != 3*perNode {
		t.Fatalf("count = %d, want %d", got, 3*perNode)
	}
	// Joins over the limit (10) were all counted for the next event.
	s, ok, err := nodes[1].Claim(context.Background(), "r")
	if err != nil || !ok || s != (Summary{Online: 3 * perNode, Joined: 3*perNode - 10}) {
		t.Fatalf("Claim = %+v, %v, %v", s, ok, err)
	}
}

func TestRedisCoalescedAboveLimit(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.node("a", RedisOptions{Limit: 2, Interval: time.Second})
	b := c.node("b", RedisOptions{Limit: 2, Interval: time.Second})

	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, b, "r", +1, Change{Online: 2})                  // at the limit
	mustAdd(t, a, "r", +1, Change{Online: 3, Coalesced: true}) // joined 1
	mustAdd(t, b, "r", +1, Change{Online: 4, Coalesced: true}) // joined 2
	mustAdd(t, a, "r", -1, Change{Online: 3, Coalesced: true}) // left 1
	mustAdd(t, b, "r", -1, Change{Online: 2})                  // back at the limit
	mustAdd(t, a, "r", -1, Change{Online: 1})
	mustClaim(t, b, "r", Summary{Online: 1, Joined: 2, Left: 1}, true)
}

func TestRedisClaim(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const interval = 400 * time.Millisecond
	a := c.node("a", RedisOptions{Limit: 1, Interval: interval})
	b := c.node("b", RedisOptions{Limit: 1, Interval: interval})

	// A claim with nothing pending wins with zeros.
	mustClaim(t, a, "empty", Summary{}, true)
	mustAdd(t, a, "quiet", +1, Change{Online: 1})
	mustClaim(t, b, "quiet", Summary{Online: 1}, true)

	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, b, "r", +1, Change{Online: 2, Coalesced: true}) // b: joined
	mustAdd(t, a, "r", +1, Change{Online: 3, Coalesced: true}) // a: joined
	mustAdd(t, b, "r", -1, Change{Online: 2, Coalesced: true}) // b: left

	// Both nodes claim at once: exactly one wins, with both nodes' changes.
	type result struct {
		node string
		s    Summary
		ok   bool
		err  error
	}
	results := make(chan result, 2)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range []*Redis{a, b} {
		wg.Go(func() {
			<-start
			s, ok, err := n.Claim(context.Background(), "r")
			results <- result{n.node, s, ok, err}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	winners := 0
	for r := range results {
		if r.err != nil {
			t.Fatalf("%s: Claim: %v", r.node, r.err)
		}
		if r.ok {
			winners++
			if want := (Summary{Online: 2, Joined: 2, Left: 1}); r.s != want {
				t.Errorf("%s won with %+v, want %+v", r.node, r.s, want)
			}
		} else if r.s != (Summary{}) {
			t.Errorf("%s lost with %+v, want zeros", r.node, r.s)
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners, want 1", winners)
	}

	// Within the interval, nobody else wins, and changes keep pending.
	mustClaim(t, a, "r", Summary{}, false)
	mustAdd(t, a, "r", +1, Change{Online: 3, Coalesced: true})
	mustClaim(t, b, "r", Summary{}, false)

	// After the interval, the next claim wins with what came since.
	testkit.CheckFor(t, 5*interval, 20*time.Millisecond, func() error {
		s, ok, err := b.Claim(context.Background(), "r")
		switch {
		case err != nil:
			return err
		case !ok:
			return errors.New("claim still locked")
		case s != (Summary{Online: 3, Joined: 1}):
			t.Fatalf("second claim = %+v, want {Online:3 Joined:1}", s)
		}
		return nil
	})
	// The claim locks the room even when nothing was pending.
	mustClaim(t, a, "r", Summary{}, false)
}

// A node that dies without a word (never Runs, stops Adding) drops out of
// every count once its TTL runs out; one of the running nodes reports its
// rooms, once.
func TestRedisDeadNodeDropsOut(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const ttl = time.Second
	var gone goneLog
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: ttl, NodeGone: gone.record}
	a := c.node("a", opts)
	b := c.node("b", opts)
	x := c.node("x", opts)
	run(t, a)
	run(t, b)

	mustAdd(t, a, "r1", +1, Change{Online: 1})
	mustAdd(t, x, "r1", +1, Change{Online: 2})
	mustAdd(t, x, "r1", +1, Change{Online: 3})
	mustAdd(t, x, "r2", +1, Change{Online: 1})
	mustAdd(t, b, "r1", +1, Change{Online: 4})
	died := time.Now() // x's last word
	if got := count(t, a, "r1"); got != 4 {
		t.Fatalf("count before x dies = %d, want 4", got)
	}

	testkit.CheckFor(t, ttl+time.Second, 20*time.Millisecond, countIs(a, "r1", 2))
	if since := time.Since(died); since < ttl-100*time.Millisecond {
		t.Errorf("x dropped out after %v, before its TTL %v", since, ttl)
	}
	if got := count(t, b, "r2"); got != 0 {
		t.Fatalf("r2 = %d after x died, want 0", got)
	}

	testkit.CheckFor(t, 2*ttl, 20*time.Millisecond, func() error {
		if ev := gone.snapshot(); len(ev) < 2 {
			return fmt.Errorf("NodeGone calls: %+v, want r1 and r2", ev)
		}
		return nil
	})
	// Let the reapers tick a few more times: nobody reports x again.
	time.Sleep(3 * ttl / 4)
	ev := gone.snapshot()
	got := map[string]Summary{}
	for _, e := range ev {
		if _, dup := got[e.room]; dup {
			t.Errorf("NodeGone reported %q twice: %+v", e.room, ev)
		}
		got[e.room] = e.s
	}
	want := map[string]Summary{"r1": {Online: 2, Left: 2}, "r2": {Online: 0, Left: 1}}
	if len(ev) != 2 || got["r1"] != want["r1"] || got["r2"] != want["r2"] {
		t.Fatalf("NodeGone calls %+v, want %+v", ev, want)
	}
	// The live nodes are still counted, and still count.
	mustAdd(t, b, "r1", -1, Change{Online: 1})
}

// Cancelling Run takes the node out of every count at once.
func TestRedisGracefulStop(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	var gone goneLog
	// A long TTL: a drop can only come from the goodbye, not from expiry.
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: 20 * time.Second, NodeGone: gone.record}
	a := c.node("a", opts)
	b := c.node("b", opts)
	stopA := run(t, a)
	run(t, b)

	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, a, "r", +1, Change{Online: 2})
	mustAdd(t, b, "r", +1, Change{Online: 3})

	stopA()
	if got := count(t, b, "r"); got != 1 {
		t.Fatalf("count right after a stopped = %d, want 1", got)
	}
	if n, err := b.client.Exists(context.Background(), a.nodeKey).Result(); err != nil || n != 0 {
		t.Fatalf("a's hash after it stopped: exists=%d, %v", n, err)
	}
	if s, err := b.client.ZScore(context.Background(), a.nodesKey, "a").Result(); err != redis.Nil {
		t.Fatalf("a still in the nodes set: %v, %v", s, err)
	}
	if ev := gone.snapshot(); len(ev) != 0 {
		t.Fatalf("graceful stop reported as NodeGone: %+v", ev)
	}
	mustAdd(t, b, "r", +1, Change{Online: 2})
}

// Redis restarts empty: each running node rewrites its counts at its next
// renew.
func TestRedisRestartRewritesCounts(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: time.Second}
	a := c.node("a", opts)
	b := c.node("b", opts)
	run(t, a)
	run(t, b)

	for range 3 {
		if _, err := a.Add(context.Background(), "r", "u", +1); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd(t, b, "r", +1, Change{Online: 4})
	mustAdd(t, b, "s", +1, Change{Online: 1})

	c.srv.Kill()
	c.srv.Restart()
	if got := count(t, a, "r"); got != 0 {
		t.Logf("count right after restart = %d (a renew already ran)", got)
	}

	testkit.CheckFor(t, 3*time.Second, 20*time.Millisecond, countIs(a, "r", 4))
	testkit.CheckFor(t, time.Second, 20*time.Millisecond, countIs(a, "s", 1))
	mustAdd(t, a, "r", +1, Change{Online: 5})
	mustAdd(t, b, "r", -1, Change{Online: 4})
	mustAdd(t, b, "s", -1, Change{Online: 0})
}

// The same, step by step: the first renew after the data loss rewrites the
// node's hash from its local counts.
func TestRedisRenewRewritesLostHash(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.node("a", RedisOptions{Limit: 100, Interval: time.Second, TTL: 10 * time.Second})
	ctx := context.Background()
	a.renew(ctx)
	for range 3 {
		if _, err := a.Add(ctx, "r", "u", +1); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd(t, a, "s", +1, Change{Online: 1})
	mustAdd(t, a, "t", +1, Change{Online: 1})
	mustAdd(t, a, "t", -1, Change{Online: 0})

	c.srv.Kill()
	c.srv.Restart()
	if got := count(t, a, "r"); got != 0 {
		t.Fatalf("r = %d after the restart, want 0 (data lost)", got)
	}
	a.renew(ctx)
	if m, err := a.client.HGetAll(ctx, a.nodeKey).Result(); err != nil || len(m) != 2 || m["r"] != "3" || m["s"] != "1" {
		t.Fatalf("a's hash after renew = %v, %v; want r:3 s:1", m, err)
	}
	mustAdd(t, a, "r", +1, Change{Online: 4})
	mustAdd(t, a, "s", -1, Change{Online: 0})
}

// An Add while Redis is down fails; once Redis is back, the node rewrites
// its hash from its local counts: with the leave, without the refused join.
func TestRedisAddDuringOutage(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.fastFail = true
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: time.Second}
	a := c.node("a", opts)
	b := c.node("b", opts)
	run(t, a)
	run(t, b)

	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, a, "r", +1, Change{Online: 2})
	mustAdd(t, b, "r", +1, Change{Online: 3})

	c.srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ch, err := a.Add(ctx, "r", "u", +1); err == nil {
		t.Fatalf("Add during the outage = %+v, want an error", ch)
	}
	if ch, err := b.Add(ctx, "r", "u", -1); err == nil {
		t.Fatalf("Add during the outage = %+v, want an error", ch)
	}
	if _, _, err := a.Claim(ctx, "r"); err == nil {
		t.Fatal("Claim during the outage succeeded")
	}
	c.srv.Restart()

	// a: 2 members (the join that failed was refused, so it is not
	// counted), b: 0 (its leave happened although Redis was down).
	testkit.CheckFor(t, 3*time.Second, 20*time.Millisecond, countIs(b, "r", 2))
	mustAdd(t, b, "r", +1, Change{Online: 3})
	mustAdd(t, a, "r", -1, Change{Online: 2})
}

// The same when Redis is lost and back before the Add: no Add fails. An
// Add that lands between the restart and the node's next renew recreates
// the node's hash with that room alone; it notices the node is missing from
// the nodes set, so the next renew rewrites the other counts.
func TestRedisAddRightAfterRestart(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.node("a", RedisOptions{Limit: 100, Interval: time.Second, TTL: 10 * time.Second})
	ctx := context.Background()
	a.renew(ctx) // as Run would, before the first Add
	for range 3 {
		if _, err := a.Add(ctx, "r", "u", +1); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd(t, a, "other", +1, Change{Online: 1})

	c.srv.Kill()
	c.srv.Restart()
	// The first Add after the restart may only see itself...
	if _, err := a.Add(ctx, "r", "u", +1); err != nil {
		t.Fatal(err)
	}
	// ...but the next renew must repair the counts.
	a.renew(ctx)
	if got := count(t, a, "r"); got != 4 {
		t.Errorf("r = %d after renew, want 4", got)
	}
	if got := count(t, a, "other"); got != 1 {
		t.Errorf("other = %d after renew, want 1", got)
	}
}

// Known bug: reap lists the dead nodes, then removes each in a separate
// script that does not check the node is still dead; a node that renewed
// in between is removed with its counts.
func TestRedisReapSparesRenewedNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.node("a", RedisOptions{Limit: 100, Interval: time.Second, TTL: 10 * time.Second})
	mustAdd(t, a, "r", +1, Change{Online: 1}) // a is alive for 10s
	// A reaper that listed a as dead a moment ago, before a renewed:
	rooms, err := reapScript.Run(context.Background(), a.client, []string{a.nodesKey}, a.nodePrefix, "", "a", a.usersPrefix, a.reapedPrefix).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 0 {
		t.Errorf("live node reaped, rooms %v reported gone", rooms)
	}
	if got := count(t, a, "r"); got != 1 {
		t.Errorf("r = %d, want 1", got)
	}
}

// A claim given back releases the room at once, and its changes are
// announced by the next claim, on any node, with what came since.
func TestRedisUnclaim(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.node("a", RedisOptions{Limit: 1, Interval: time.Hour})
	b := c.node("b", RedisOptions{Limit: 1, Interval: time.Hour})
	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, b, "r", +1, Change{Online: 2, Coalesced: true})
	mustClaim(t, a, "r", Summary{Online: 2, Joined: 1}, true)
	mustAdd(t, b, "r", -1, Change{Online: 1})
	if err := a.Unclaim(context.Background(), "r", Summary{Online: 2, Joined: 1}); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, b, "r", Summary{Online: 1, Joined: 1}, true)
	mustClaim(t, a, "r", Summary{}, false) // b holds it for the interval
}
