package hub

import (
	"context"
	"fmt"
	"slices"

	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
)

// Register adds a connection for user, allowed what access allows (nil:
// every room), and puts it in lobby and, when it resumes, in the rooms it
// lists that it may join; the welcome names the others as forbidden. Its
// frames come in this order: the welcome, its own join of each listed room,
// what it missed while away (a resume), then live frames for its rooms, its
// user and the whole node. The rooms' other members get a join.
//
// The steps: subscribe to every topic, count every join (both broker
// round trips, under no lock), make the client visible with its lobby
// membership, add it to the resumed rooms, then queue its own frames and
// announce its joins.
func (h *Hub) Register(ctx context.Context, conn Conn, user string, access Access, from protocol.Resume) (*Client, error) {
	c := &Client{id: h.connSeq.Add(1), user: user, conn: conn, access: access, holdLimit: h.opts.HoldBytes}
	from, forbidden := c.allowed(from)
	rooms := append([]string{protocol.Lobby}, from.Rooms...)
	c.rooms = slices.Clone(rooms)
	// The resumed rooms are being joined until addResumedRooms: a removal
	// that comes once c is visible is recorded, not lost (leave).
	c.joining = slices.Clone(from.Rooms)
	c.holding.Store(true)

	topics, err := h.subscribeForRegister(ctx, user, rooms)
	if err != nil {
		return nil, err
	}
	changes, err := h.countForRegister(ctx, user, rooms, topics)
	if err != nil {
		return nil, err
	}
	h.awaitPositions(ctx, user, from)
	h.step(stepCounted)

	at, epoch := h.makeVisible(c, changes[0])
	h.step(stepVisible)
	joins, removed := h.addResumedRooms(c, from.Rooms, changes[1:], at)

	h.sendWelcome(ctx, c, from, forbidden, changes[0].Online, epoch, at, joins)
	for i, r := range rooms {
		if !changes[i].Coalesced {
			h.announce(ctx, c, protocol.EventJoin, r, changes[i].Online)
		}
	}
	for _, r := range removed { // after c's own join, as a Join does
		h.applyRemoval(ctx, r)
	}
	return c, nil
}

// Register's steps, named for the test seam (export_test.go).
const (
	stepCounted = "counted" // subscribed and counted; c not visible yet
	stepVisible = "visible" // c visible to the API and in lobby; resumed rooms not added yet
)

// step calls the test seam, if one is set.
func (h *Hub) step(name string) {
	if h.hooks.register != nil {
		h.hooks.register(name)
	}
}

// subscribeForRegister subscribes to user's topic and every room's,
// undoing what it did if one fails.
func (h *Hub) subscribeForRegister(ctx context.Context, user string, rooms []string) ([]string, error) {
	topics := []string{userTopic(user)}
	for _, r := range rooms {
		topics = append(topics, roomTopic(r))
	}
	for i, t := range topics {
		if err := h.subs.acquire(ctx, t); err != nil {
			for _, done := range topics[:i] {
				h.releaseTopic(ctx, done)
			}
			return nil, fmt.Errorf("subscribe to %s: %w", t, err)
		}
	}
	return topics, nil
}

// countForRegister counts user's join of every room; if one fails it
// takes back the counts and the subscriptions.
func (h *Hub) countForRegister(ctx context.Context, user string, rooms, topics []string) ([]presence.Change, error) {
	changes := make([]presence.Change, len(rooms))
	for i, r := range rooms {
		ch, err := h.countJoin(ctx, r, user)
		if err != nil {
			for _, done := range rooms[:i] {
				h.uncount(ctx, done, user)
			}
			for _, t := range topics {
				h.releaseTopic(ctx, t)
			}
			return nil, fmt.Errorf("count join of %s: %w", r, err)
		}
		changes[i] = ch
	}
	return changes, nil
}

// makeVisible adds c to the hub's clients and users and to lobby, in one
// critical section, under the broadcast's, the user's and lobby's stream
// locks, so that the positions read there are exactly where c's live
// messages start. (No broker or Redis call is made under these locks: a
// slow Redis must not hold up delivery.) It returns those positions, by
// stream name, and lobby's epoch.
func (h *Hub) makeVisible(c *Client, lobby presence.Change) (at map[string]uint64, epoch string) {
	at = make(map[string]uint64, len(c.rooms)+2)
	sAll, sUser, sLobby := h.subs.stream(topicAll), h.subs.stream(userTopic(c.user)), h.subs.stream(roomTopic(protocol.Lobby))
	locked := []*stream{sAll, sUser, sLobby}
	for _, s := range locked {
		if s != nil {
			s.mu.Lock()
		}
	}
	h.clientsMu.Lock()
	h.clients[c] = struct{}{}
	u := h.users[c.user]
	if u == nil {
		u = &userEntry{}
		h.users[c.user] = u
	}
	u.clients = append(u.clients, c)
	h.addMember(c, protocol.Lobby, lobby, nil)
	h.clientsMu.Unlock()
	epoch = sLobby.epoch
	for i, name := range []string{protocol.StreamAll, protocol.StreamUser, protocol.Lobby} {
		if locked[i] != nil {
			at[name] = locked[i].last
			locked[i].mu.Unlock()
		}
	}
	return at, epoch
}

// addResumedRooms adds c to each resumed room, each under c's lock and the
// room stream's (recording in at where c's live messages start), and
// returns c's own join frames and the removals that came while the rooms
// were being joined. Taking each room out of joining and adding the member
// under c.mu means a removal either came before (recorded, returned here)
// or comes after (and finds c a member).
func (h *Hub) addResumedRooms(c *Client, rooms []string, changes []presence.Change, at map[string]uint64) ([]protocol.Frame, []removal) {
	var joins []protocol.Frame
	var removed []removal
	for i, r := range rooms {
		s := h.subs.stream(roomTopic(r))
		c.mu.Lock()
		c.joining = slices.DeleteFunc(c.joining, func(x string) bool { return x == r })
		if rm, ok := c.takeRemovalLocked(r); ok {
			removed = append(removed, rm)
		}
		s.mu.Lock()
		h.addMember(c, r, changes[i], nil)
		at[r] = s.last
		s.mu.Unlock()
		c.mu.Unlock()
		joins = append(joins, h.ownJoinFrame(c.user, r, changes[i].Online, at[r]))
	}
	return joins, removed
}

// sendWelcome queues c's welcome, its own joins and what it missed, then what
// was held for it meanwhile, and lets its live frames through.
func (h *Hub) sendWelcome(ctx context.Context, c *Client, from protocol.Resume, forbidden []string, online int, epoch string, at map[string]uint64, joins []protocol.Frame) {
	replay, missed := h.replay(ctx, c.user, from, epoch, at)
	welcome := protocol.Welcome{
		Type: protocol.TypeSystem, Event: protocol.EventWelcome, User: c.user, Node: h.opts.Node,
		Room: protocol.Lobby, Online: online,
		Data:  fmt.Sprintf("欢迎 %s，当前在线: %d (%s)", c.user, online, protocol.Lobby),
		Epoch: epoch,
		Seq:   map[string]uint64{protocol.Lobby: at[protocol.Lobby], protocol.StreamUser: at[protocol.StreamUser]},
	}
	if pos, ok := at[protocol.StreamAll]; ok {
		welcome.Seq[protocol.StreamAll] = pos
	}
	if from.Since != nil {
		recovered := len(missed) == 0
		welcome.Recovered, welcome.Missed = &recovered, missed
	}
	welcome.Forbidden = forbidden
	frames := append(append([]protocol.Frame{h.mustEncode(welcome)}, joins...), replay...)
	sent, dropped := c.release(frames)
	h.obs.Delivered(sent)
	if dropped > 0 {
		h.obs.Dropped("not_queued", dropped)
	}
}
