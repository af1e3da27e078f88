package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/relay/relay/internal/protocol"
)

// room is a room's local members. Fan-out holds mu for reading while it
// queues a frame for each member; membership changes hold it for writing.
type room struct {
	mu      sync.RWMutex
	members map[*Client]struct{}
	dead    bool // emptied and removed from Hub.rooms; joiners start over
	// Changes not announced one by one (the room was over the presence
	// limit), reported by the next presence event.
	joined, left int
}

// addMember adds c to room and, under the room's lock so that nothing
// overtakes it, queues ownFrame(online) for c. It reports the new count and
// whether the others should hear of the join one by one.
func (h *Hub) addMember(c *Client, name string, ownFrame func(online int) protocol.Frame) (online int, announce bool) {
	for {
		r := h.roomFor(name)
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		r.members[c] = struct{}{}
		online = len(r.members)
		announce = online <= h.opts.PresenceLimit
		if !announce {
			r.joined++
		}
		h.sendDirect(c, ownFrame(online))
		r.mu.Unlock()
		return online, announce
	}
}

// removeMember removes c from room, queueing ownFrame(online) for c when
// ownFrame is not nil (c asked to leave; it is not there on a disconnect).
func (h *Hub) removeMember(c *Client, name string, ownFrame func(online int) protocol.Frame) (online int, announce bool) {
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
	online = len(r.members)
	announce = online <= h.opts.PresenceLimit
	if !announce {
		r.left++
	}
	if ownFrame != nil {
		h.sendDirect(c, ownFrame(online))
	}
	empty := online == 0
	if empty {
		r.dead = true
	}
	r.mu.Unlock()

	if empty {
		h.roomsMu.Lock()
		if h.rooms[name] == r {
			delete(h.rooms, name)
		}
		h.roomsMu.Unlock()
	}
	return online, announce && online > 0
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

// RoomSize returns the local member count of room.
func (h *Hub) RoomSize(name string) int {
	h.roomsMu.RLock()
	r := h.rooms[name]
	h.roomsMu.RUnlock()
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.members)
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

// presenceLoop sends, once per interval, one presence event for every room
// whose unannounced membership changed since the last one.
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

func (h *Hub) flushPresence() {
	type change struct {
		room                 string
		online, joined, left int
	}
	var changes []change
	h.roomsMu.RLock()
	for name, r := range h.rooms {
		r.mu.Lock()
		if r.joined != 0 || r.left != 0 {
			changes = append(changes, change{name, len(r.members), r.joined, r.left})
			r.joined, r.left = 0, 0
		}
		r.mu.Unlock()
	}
	h.roomsMu.RUnlock()

	ctx, cancel := context.WithTimeout(context.Background(), h.opts.PresenceInterval)
	defer cancel()
	for _, ch := range changes {
		frame := h.mustEncode(protocol.Presence{
			Type: protocol.TypeSystem, Event: protocol.EventPresence, Room: ch.room,
			Online: ch.online, Joined: ch.joined, Left: ch.left,
			Data: fmt.Sprintf("当前在线: %d (%s: +%d -%d)", ch.online, ch.room, ch.joined, ch.left),
		})
		if err := h.publish(ctx, roomTopic(ch.room), 0, frame); err != nil {
			h.log.Warn("presence failed", "room", ch.room, "err", err)
		}
	}
}
