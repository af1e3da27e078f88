package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
)

// Presence batching: rooms above Options.PresenceLimit get no join or leave
// per member; their changes are counted and announced in at most one
// presence event per room per Options.PresenceInterval.

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

// presenceFloor is the least time a room's claim and publish get, however
// short the interval: a loaded node must not fail them for a deadline that
// only tests make that short.
const presenceFloor = time.Second

// flushPresence claims each pending room's changes and announces them. In a
// cluster only one node wins a room's claim per interval, and its event
// carries every node's changes; a node that loses keeps the room pending
// and, next interval, finds its changes already announced or claims them.
//
// Nothing claimed is lost: each room has its own deadline, so a slow room
// does not use up the next one's; a room's pending mark is cleared before
// its claim, so a change counted during the claim marks it again for the
// next interval; and a claim whose event could not be published is given
// back (Counter.Unclaim) and the room marked again. Rooms not reached
// within one interval stay pending for the next.
func (h *Hub) flushPresence() {
	h.presenceMu.Lock()
	rooms := make([]string, 0, len(h.presencePending))
	for room := range h.presencePending {
		rooms = append(rooms, room)
	}
	h.presenceMu.Unlock()

	budget := time.Now().Add(h.opts.PresenceInterval)
	for _, room := range rooms {
		if time.Now().After(budget) {
			return
		}
		select {
		case <-h.stop:
			return
		default:
		}
		h.presenceMu.Lock()
		delete(h.presencePending, room)
		h.presenceMu.Unlock()
		if !h.flushRoom(room) {
			h.markPresence(room)
		}
	}
}

// flushRoom claims room's changes and announces them. It reports false when
// the room must stay pending: the claim failed or was lost to another node,
// or the event could not be published (its changes are then given back).
func (h *Hub) flushRoom(room string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), max(h.opts.PresenceInterval, presenceFloor))
	defer cancel()
	s, ok, err := h.counter.Claim(ctx, room)
	if err != nil {
		h.log.Warn("presence claim failed", "room", room, "err", err)
		return false
	}
	if !ok {
		return false
	}
	if s.Joined == 0 && s.Left == 0 {
		return true
	}
	if err := h.publishPresence(ctx, room, s); err != nil {
		// The claim's deadline may be spent: giving back gets its own.
		uctx, ucancel := context.WithTimeout(context.Background(), max(h.opts.PresenceInterval, presenceFloor))
		defer ucancel()
		if err := h.counter.Unclaim(uctx, room, s); err != nil {
			h.log.Warn("presence changes lost", "room", room, "joined", s.Joined, "left", s.Left, "err", err)
		}
		return false
	}
	return true
}

// PresenceLost announces that members left room without saying goodbye:
// their node stopped (see presence.RedisOptions.NodeGone).
func (h *Hub) PresenceLost(room string, s presence.Summary) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.publishPresence(ctx, room, s); err != nil {
		h.log.Warn("presence lost announcement failed", "room", room, "left", s.Left, "err", err)
	}
}

// publishPresence sends room's presence event to its members on every node.
func (h *Hub) publishPresence(ctx context.Context, room string, s presence.Summary) error {
	frame := h.mustEncode(protocol.Presence{
		Type: protocol.TypeSystem, Event: protocol.EventPresence, Room: room,
		Online: s.Online, Joined: s.Joined, Left: s.Left,
		Data: fmt.Sprintf("当前在线: %d (%s: +%d -%d)", s.Online, room, s.Joined, s.Left),
	})
	if err := h.publish(ctx, roomTopic(room), 0, frame); err != nil {
		return fmt.Errorf("presence event for %s: %w", room, err)
	}
	return nil
}
