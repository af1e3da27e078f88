package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
)

// Membership: connections come and go (Register, Unregister) and move
// between rooms (Join, Leave). Each change is counted (Counter), the client
// gets its own welcome, join or leave directly, and the room's other members
// hear of it through the broker (announce), or in the next presence event
// when the room is big (presence.go).

// Client is one local connection registered with the hub.
type Client struct {
	id     uint64
	user   string
	conn   Conn
	access Access // nil: every room

	// mu guards rooms, joining, removals and gone. It is taken before the
	// hub's roomsMu and a room's mu, never after (see Hub).
	mu      sync.Mutex
	rooms   []string // joined or being joined; at most protocol.MaxRooms, so a slice beats a map
	joining []string // those of rooms whose Join (or Register) is still making its broker round trips
	granted []string // rooms a room token let it join (access.go)
	// removals are the server API's removals from rooms still being
	// joined, applied by the join when it completes.
	removals []removal
	gone     bool

	// Live frames held while the client catches up (hold.go).
	holding   atomic.Bool
	holdMu    sync.Mutex
	held      [][]byte
	heldBytes int
	holdLimit int
	overflow  bool
}

// ID returns the connection's node-unique id.
func (c *Client) ID() uint64 { return c.id }

// User returns the connection's user name.
func (c *Client) User() string { return c.user }

// userEntry is a user's local connections: usually one, so a slice.
type userEntry struct {
	clients []*Client
}

// leaveWorkers bounds how many of a closed connection's rooms are left at
// once: each is up to three broker round trips, and a client may be in
// protocol.MaxRooms rooms.
const leaveWorkers = 8

// leaveRounds bounds a whole Unregister at this many rooms' budgets.
const leaveRounds = 4

// defaultLeaveTimeout is each room's budget when Unregister's ctx has no
// deadline.
const defaultLeaveTimeout = 5 * time.Second

// Unregister removes a closed connection, announcing its leave in each of
// its rooms. Each room gets its own deadline, as long as ctx had left when
// Unregister was called (one slow room must not use up the others' time
// and leave their counts up); up to leaveWorkers rooms are left at once.
// Safe to call once per Register.
func (h *Hub) Unregister(ctx context.Context, c *Client) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	// A room still being joined is left to its Join, which finds c gone
	// and undoes itself.
	rooms := slices.DeleteFunc(c.rooms, func(r string) bool { return slices.Contains(c.joining, r) })
	c.rooms = nil
	c.mu.Unlock()

	h.clientsMu.Lock()
	delete(h.clients, c)
	h.removeUserLocked(c)
	h.clientsMu.Unlock()

	budget := defaultLeaveTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = max(time.Until(dl), 0)
	}
	// Each room's deadline is its own, so one slow room does not make the
	// others miss theirs; all of them together get at most leaveRounds
	// budgets, so that a node draining 100 rooms through a slow Redis still
	// closes within its shutdown timeout (1 s a room while draining: 4 s).
	base, cancelAll := context.WithTimeout(context.WithoutCancel(ctx), leaveRounds*budget)
	defer cancelAll()
	leaveRoom := func(room string) {
		rctx, cancel := context.WithTimeout(base, budget)
		defer cancel()
		n, announce := h.removeMember(rctx, c, room, nil)
		if announce {
			h.announce(rctx, c, protocol.EventLeave, room, n)
		}
		h.releaseTopic(rctx, roomTopic(room))
	}
	// The workers are Unregister's own: it returns once they have left
	// every room, so the session that called it owns them, and they end
	// when the rooms run out.
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(leaveWorkers, len(rooms)) {
		wg.Go(func() {
			for room := range next {
				leaveRoom(room)
			}
		})
	}
	for _, room := range rooms {
		next <- room
	}
	close(next)
	wg.Wait()
	uctx, cancel := context.WithTimeout(base, budget)
	defer cancel()
	h.releaseTopic(uctx, userTopic(c.user))
}

// removeUserLocked drops c from its user's connections. clientsMu must be
// held.
func (h *Hub) removeUserLocked(c *Client) {
	u := h.users[c.user]
	if u == nil {
		return
	}
	u.clients = slices.DeleteFunc(u.clients, func(x *Client) bool { return x == c })
	if len(u.clients) == 0 {
		delete(h.users, c.user)
	}
}

func (h *Hub) releaseTopic(ctx context.Context, topic string) {
	if err := h.subs.release(ctx, topic); err != nil {
		h.log.Warn("unsubscribe failed", "topic", topic, "err", err)
	}
}

// Join adds c to room. c gets its own join at once, with the room's last
// position, followed by the room's last messages up to that position if it
// asked for them (last > 0). The room's other members get the join through
// the broker, or in the next presence event if the room is big.
func (h *Hub) Join(ctx context.Context, c *Client, room string, last int) error {
	c.mu.Lock()
	switch {
	case c.gone:
		c.mu.Unlock()
		return nil
	case !c.mayJoinLocked(room):
		c.mu.Unlock()
		return &protocol.Error{Code: protocol.ErrForbidden, Text: "you may not join room " + room}
	case slices.Contains(c.rooms, room):
		c.mu.Unlock()
		return &protocol.Error{Code: protocol.ErrAlreadyMember, Text: "already in room " + room}
	case len(c.rooms) >= protocol.MaxRooms:
		c.mu.Unlock()
		return &protocol.Error{Code: protocol.ErrTooManyRooms, Text: fmt.Sprintf("at most %d rooms at once", protocol.MaxRooms)}
	}
	// Claim the slot before the broker round trip so that two joins racing
	// on one connection cannot both pass the checks above.
	c.rooms = append(c.rooms, room)
	c.joining = append(c.joining, room)
	c.mu.Unlock()

	if err := h.subs.acquire(ctx, roomTopic(room)); err != nil {
		c.forget(room)
		return h.unavailable("join refused: broker unavailable", c, room, err)
	}
	ch, err := h.countJoin(ctx, room, c.user)
	if err != nil {
		c.forget(room)
		h.releaseTopic(ctx, roomTopic(room))
		return h.unavailable("join refused: broker unavailable", c, room, err)
	}
	// c may have been unregistered during the round trips. Looking and
	// adding the member under c.mu means Unregister either ran before (and
	// skipped this room, being joined: the join is undone here) or runs
	// after (and finds c a member). addMember only queues, so holding c.mu
	// across it costs nothing.
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		h.undoJoin(ctx, room, c.user)
		return nil
	}
	c.joining = slices.DeleteFunc(c.joining, func(r string) bool { return r == room })
	s := h.subs.stream(roomTopic(room))
	if last > 0 {
		c.hold()
	}
	s.mu.Lock()
	at := s.last
	var own func(int) protocol.Frame
	if last == 0 {
		own = func(online int) protocol.Frame { return h.ownJoinFrame(c.user, room, online, at) }
	}
	n, announce := h.addMember(c, room, ch, own)
	s.mu.Unlock()
	removed, wasRemoved := c.takeRemovalLocked(room)
	c.mu.Unlock()
	if last > 0 {
		sent, dropped := c.release(h.joinWithLast(ctx, c.user, room, n, at, last))
		h.obs.Delivered(sent)
		if dropped > 0 {
			h.obs.Dropped("not_queued", dropped)
		}
	}
	if announce {
		h.announce(ctx, c, protocol.EventJoin, room, n)
	}
	if wasRemoved {
		h.applyRemoval(ctx, removed)
	}
	return nil
}

// takeRemovalLocked takes the removal recorded for room while it was being
// joined, if any. c.mu must be held.
func (c *Client) takeRemovalLocked(room string) (removal, bool) {
	i := slices.IndexFunc(c.removals, func(r removal) bool { return r.room == room })
	if i < 0 {
		return removal{}, false
	}
	r := c.removals[i]
	c.removals = slices.Delete(c.removals, i, i+1)
	return r, true
}

// applyRemoval carries out a removal recorded during a join, now that the
// join is complete: the client gets its join, then its leave with the
// reason, and the room both.
func (h *Hub) applyRemoval(ctx context.Context, r removal) {
	if err := h.leave(ctx, r.c, r.room, r.reason); err == nil {
		h.log.Info("removed from a room by the server API, once joined", "user", r.c.user, "room", r.room, "reason", r.reason)
	}
}

// undoJoin takes back a join that was counted and subscribed for a client
// unregistered meanwhile. Nobody was told of the join, so nobody is told of
// the leave, but a big room's next presence event counts both.
func (h *Hub) undoJoin(ctx context.Context, room, user string) {
	h.uncount(ctx, room, user)
	h.releaseTopic(ctx, roomTopic(room))
}

// uncount counts a leave for a join that never happened.
func (h *Hub) uncount(ctx context.Context, room, user string) {
	ch, err := h.counter.Add(ctx, room, user, -1)
	if err != nil {
		h.log.Warn("leave not counted across the cluster", "room", room, "err", err)
	} else if ch.Coalesced {
		h.markPresence(room)
	}
}

// forget gives back the slot of a room whose join was refused.
func (c *Client) forget(room string) {
	c.mu.Lock()
	c.rooms = slices.DeleteFunc(c.rooms, func(r string) bool { return r == room })
	c.joining = slices.DeleteFunc(c.joining, func(r string) bool { return r == room })
	c.takeRemovalLocked(room) // not joined: nothing to remove
	c.mu.Unlock()
}

// Leave removes c from room; c gets its own leave at once. A room still
// being joined is not left: its Join owns it until done.
func (h *Hub) Leave(ctx context.Context, c *Client, room string) error {
	return h.leave(ctx, c, room, "")
}

// errRemovalDeferred says a removal found its room still being joined: it
// is recorded, and the join applies it when it completes.
var errRemovalDeferred = errors.New("room still being joined: removal applied when the join completes")

// leave is Leave; reason, when not empty, is in c's own leave frame (the
// server API removed c). A removal from a room still being joined (a Join
// or a resuming Register making its round trips) is recorded for the join
// to apply: skipped, it would be lost, and the join would complete after.
func (h *Hub) leave(ctx context.Context, c *Client, room, reason string) error {
	c.mu.Lock()
	i := slices.Index(c.rooms, room)
	if reason != "" && !c.gone && i >= 0 && slices.Contains(c.joining, room) {
		c.takeRemovalLocked(room) // the latest reason wins
		c.removals = append(c.removals, removal{c, room, reason})
		c.mu.Unlock()
		return errRemovalDeferred
	}
	if c.gone || i < 0 || slices.Contains(c.joining, room) {
		c.mu.Unlock()
		return &protocol.Error{Code: protocol.ErrNotMember, Text: "not in room " + room}
	}
	c.rooms = slices.Delete(c.rooms, i, i+1)
	c.mu.Unlock()

	n, announce := h.removeMember(ctx, c, room, func(online int) protocol.Frame {
		f := h.membershipFrame(protocol.EventLeave, c.user, room, online)
		if reason != "" {
			f = h.mustEncode(protocol.Membership{
				Type: protocol.TypeSystem, Event: protocol.EventLeave, User: c.user, Room: room, Online: online,
				Data:   fmt.Sprintf("你已被移出 %s (removed from %s: %s)", room, room, reason),
				Reason: reason,
			})
		}
		return f
	})
	if announce {
		h.announce(ctx, c, protocol.EventLeave, room, n)
	}
	h.releaseTopic(ctx, roomTopic(room))
	return nil
}

// inRoom reports whether c has joined room (and is not still joining it).
func (c *Client) inRoom(room string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.rooms, room) && !slices.Contains(c.joining, room)
}

// room is a room's local members. Fan-out holds mu for reading while it
// queues a frame for each member; membership changes hold it for writing.
type room struct {
	mu      sync.RWMutex
	members map[*Client]struct{}
	dead    bool // emptied and removed from Hub.rooms; joiners start over
}

// countJoin counts a join in room (across the cluster, when there is one).
// It may be a network round trip, so callers hold no hub lock.
func (h *Hub) countJoin(ctx context.Context, name, user string) (presence.Change, error) {
	ch, err := h.counter.Add(ctx, name, user, +1)
	if err == nil && ch.Coalesced {
		h.markPresence(name)
	}
	return ch, err
}

// addMember adds c to room, its join already counted as ch, and, under the
// room's lock so that nothing overtakes it, queues ownFrame(online) for c
// unless ownFrame is nil (c is held: its own frames go out on release).
// It reports the count and whether the others should hear of the join one
// by one.
func (h *Hub) addMember(c *Client, name string, ch presence.Change, ownFrame func(online int) protocol.Frame) (online int, announce bool) {
	for {
		r := h.roomFor(name)
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		r.members[c] = struct{}{}
		if ownFrame != nil {
			h.sendDirect(c, ownFrame(ch.Online))
		}
		r.mu.Unlock()
		return ch.Online, !ch.Coalesced
	}
}

// removeMember removes c from room and counts its leave, queueing
// ownFrame(online) for c when ownFrame is not nil (c asked to leave; on a
// disconnect it is gone). A leave happens even if it cannot be counted
// across the cluster: the count is then this node's, and the cluster's is
// repaired when the broker returns.
func (h *Hub) removeMember(ctx context.Context, c *Client, name string, ownFrame func(online int) protocol.Frame) (online int, announce bool) {
	h.roomsMu.RLock()
	r := h.rooms[name]
	h.roomsMu.RUnlock()
	if r == nil {
		return 0, false
	}
	r.mu.Lock()
	if _, ok := r.members[c]; !ok {
		r.mu.Unlock()
		return 0, false
	}
	delete(r.members, c)
	local := len(r.members)
	if local == 0 {
		r.dead = true
	}
	r.mu.Unlock()
	if local == 0 {
		h.roomsMu.Lock()
		if h.rooms[name] == r {
			delete(h.rooms, name)
		}
		h.roomsMu.Unlock()
	}

	ch, err := h.counter.Add(ctx, name, c.user, -1)
	if err != nil {
		h.log.Warn("leave not counted across the cluster", "room", name, "err", err)
		ch.Online, ch.Coalesced = local, local > h.opts.PresenceLimit
	}
	if ch.Coalesced {
		h.markPresence(name)
	}
	if ownFrame != nil {
		h.sendDirect(c, ownFrame(ch.Online))
	}
	return ch.Online, !ch.Coalesced && ch.Online > 0
}

func (h *Hub) roomFor(name string) *room {
	h.roomsMu.RLock()
	r := h.rooms[name]
	h.roomsMu.RUnlock()
	if r != nil {
		return r
	}
	h.roomsMu.Lock()
	defer h.roomsMu.Unlock()
	if r = h.rooms[name]; r == nil {
		r = &room{members: make(map[*Client]struct{})}
		h.rooms[name] = r
	}
	return r
}

// announce tells a room's members, through the broker, that c joined or
// left. c itself is skipped: it got its own copy directly, or is gone.
func (h *Hub) announce(ctx context.Context, c *Client, event, room string, online int) {
	user, exceptID := c.user, c.id
	frame := h.membershipFrame(event, user, room, online)
	if err := h.publish(ctx, roomTopic(room), exceptID, frame); err != nil {
		h.log.Warn("announce failed", "event", event, "room", room, "err", err)
	}
}

// ownJoinFrame confirms a client's own join, with the room's position from
// which it receives the room's messages.
func (h *Hub) ownJoinFrame(user, room string, online int, at uint64) protocol.Frame {
	return h.mustEncode(ownJoin(user, room, online, at))
}

// ownJoin is a client's own join of room, at position at.
func ownJoin(user, room string, online int, at uint64) protocol.Membership {
	return protocol.Membership{
		Type: protocol.TypeSystem, Event: protocol.EventJoin, User: user, Room: room, Online: online,
		Data: fmt.Sprintf("新用户加入，当前在线: %d (%s joined %s)", online, user, room),
		Seq:  &at,
	}
}

func (h *Hub) membershipFrame(event, user, room string, online int) protocol.Frame {
	text := fmt.Sprintf("新用户加入，当前在线: %d (%s joined %s)", online, user, room)
	if event == protocol.EventLeave {
		text = fmt.Sprintf("用户离开，当前在线: %d (%s left %s)", online, user, room)
	}
	return h.mustEncode(protocol.Membership{
		Type: protocol.TypeSystem, Event: event, User: user, Room: room, Online: online, Data: text,
	})
}
