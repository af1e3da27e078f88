package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
)

// room is a room's local members. Fan-out holds mu for reading while it
// queues a frame for each member; membership changes hold it for writing.
type room struct {
	mu      sync.RWMutex
	members map[*Client]struct{}
	dead    bool // emptied and removed from Hub.rooms; joiners start over
}

// countJoin counts a join in room (across the cluster, when there is one).
// It may be a network round trip, so callers hold no hub lock.
func (h *Hub) countJoin(ctx context.Context, name string) (presence.Change, error) {
	ch, err := h.counter.Add(ctx, name, +1)
	if err == nil && ch.Coalesced {
		h.markPresence(name)
	}
	return ch, err
}

// addMember adds c to room, its join already counted as ch, and, under the
// room's lock so that nothing overtakes it, queues ownFrame(online) for c.
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
		h.sendDirect(c, ownFrame(ch.Online))
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

	ch, err := h.counter.Add(ctx, name, -1)
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

// markPresence notes that room has a coalesced change from this node, for
// the next presence event.
func (h *Hub) markPresence(room string) {
	h.presenceMu.Lock()
	h.presencePending[room] = struct{}{}
	h.presenceMu.Unlock()
}

// presenceLoop sends, at most once per interval per room, one presence event
// for each room whose coalesced membership changed.
func (h *Hub) presenceLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.PresenceInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.flushPresence()
		}
	}
}

// flushPresence claims each pending room's changes and announces them. In a
// cluster only one node wins a room's claim per interval, and its event
// carries every node's changes; a node that loses keeps the room pending
// and, next interval, finds its changes already announced or claims them.
func (h *Hub) flushPresence() {
	h.presenceMu.Lock()
	rooms := make([]string, 0, len(h.presencePending))
	for room := range h.presencePending {
		rooms = append(rooms, room)
	}
	h.presenceMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), h.opts.PresenceInterval)
	defer cancel()
	for _, room := range rooms {
		s, ok, err := h.counter.Claim(ctx, room)
		if err != nil || !ok {
			continue
		}
		h.presenceMu.Lock()
		delete(h.presencePending, room)
		h.presenceMu.Unlock()
		if s.Joined != 0 || s.Left != 0 {
			h.publishPresence(ctx, room, s)
		}
	}
}

// PresenceLost announces that members left room without saying goodbye:
// their node stopped (see presence.RedisOptions.NodeGone).
func (h *Hub) PresenceLost(room string, s presence.Summary) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.publishPresence(ctx, room, s)
}

func (h *Hub) publishPresence(ctx context.Context, room string, s presence.Summary) {
	frame := h.mustEncode(protocol.Presence{
		Type: protocol.TypeSystem, Event: protocol.EventPresence, Room: room,
		Online: s.Online, Joined: s.Joined, Left: s.Left,
		Data: fmt.Sprintf("当前在线: %d (%s: +%d -%d)", s.Online, room, s.Joined, s.Left),
	})
	if err := h.publish(ctx, roomTopic(room), 0, frame); err != nil {
		h.log.Warn("presence failed", "room", room, "err", err)
	}
}
