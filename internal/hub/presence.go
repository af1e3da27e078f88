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
