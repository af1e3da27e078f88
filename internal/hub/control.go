package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relay/relay/internal/protocol"
)

// Control: the server API acts on a user's connections wherever they are.
// Disconnect and Remove publish a control message on the user's topic,
// which exactly the nodes with a connection of that user subscribe to;
// each acts on its own connections. Like joins and leaves, control
// messages are not in a stream: a node that is cut off from the broker when
// one is published does not get it.

// Control messages share the broker's plain messages with joins, leaves and
// presence (wire.go), told apart by their first byte:
//
//	byte 0      controlVersion (2)
//	byte 1      op
//	byte 2      length n of the room (0 for a disconnect)
//	3..3+n      room
//	rest        reason, UTF-8
const controlVersion = 2

const (
	opDisconnect byte = 1
	opRemove     byte = 2
)

// controlQueue bounds the removals waiting for the control goroutine; past
// it a removal is dropped and logged (they come from an operator's API
// calls, one per connection of one user).
const controlQueue = 1024

// removal is one local connection to take out of a room.
type removal struct {
	c      *Client
	room   string
	reason string
}

func encodeControl(op byte, room, reason string) []byte {
	b := make([]byte, 0, 3+len(room)+len(reason))
	b = append(b, controlVersion, op, byte(len(room)))
	b = append(b, room...)
	return append(b, reason...)
}

func decodeControl(b []byte) (op byte, room, reason string, err error) {
	if len(b) < 3 || b[0] != controlVersion || len(b) < 3+int(b[2]) {
		return 0, "", "", errBadWire
	}
	n := int(b[2])
	return b[1], string(b[3 : 3+n]), string(b[3+n:]), nil
}

// ErrBadReason is returned for a reason that cannot go in a close frame.
var ErrBadReason = fmt.Errorf("reason longer than %d bytes", protocol.MaxCloseReason)

// Disconnect closes every connection of user on every node with close code
// 4000 and reason (default "disconnected by the server"). It returns once
// the broker has accepted the request.
func (h *Hub) Disconnect(ctx context.Context, user, reason string) error {
	if len(reason) > protocol.MaxCloseReason {
		return ErrBadReason
	}
	if err := h.broker.Publish(ctx, userTopic(user), encodeControl(opDisconnect, "", reason)); err != nil {
		return fmt.Errorf("publish disconnect: %w", err)
	}
	return nil
}

// Remove takes user out of room on every node: each of its connections in
// the room gets its own leave with reason (default "removed by the
// server"), the room the usual leave or presence. It does not keep the user
// out: a client allowed to join may join again. It returns once the broker
// has accepted the request.
func (h *Hub) Remove(ctx context.Context, user, room, reason string) error {
	if len(reason) > protocol.MaxCloseReason {
		return ErrBadReason
	}
	if err := h.broker.Publish(ctx, userTopic(user), encodeControl(opRemove, room, reason)); err != nil {
		return fmt.Errorf("publish remove: %w", err)
	}
	return nil
}

// control acts on a control message for topic's user. It runs in the
// broker's delivery: closing only queues a close frame, and removals,
// which need the broker, are handed to controlLoop.
func (h *Hub) control(topic string, payload []byte) {
	op, room, reason, err := decodeControl(payload)
	if err != nil || len(topic) <= len("user:") || topic[:len("user:")] != "user:" {
		h.log.Error("dropping control message", "topic", topic, "err", errors.Join(err, errBadWire))
		return
	}
	user := topic[len("user:"):]
	h.clientsMu.RLock()
	var clients []*Client
	if u := h.users[user]; u != nil {
		clients = append(clients, u.clients...)
	}
	h.clientsMu.RUnlock()
	switch op {
	case opDisconnect:
		if reason == "" {
			reason = protocol.CloseDisconnected.Reason
		}
		for _, c := range clients {
			c.conn.CloseWith(protocol.CloseDisconnected.Status, reason, time.Second)
		}
		if len(clients) > 0 {
			h.log.Info("disconnected by the server API", "user", user, "connections", len(clients), "reason", reason)
		}
	case opRemove:
		if reason == "" {
			reason = "removed by the server"
		}
		for _, c := range clients {
			select {
			case h.removals <- removal{c, room, reason}:
			default:
				h.log.Warn("removal dropped: too many waiting", "user", user, "room", room)
			}
		}
	default:
		h.log.Error("dropping control message", "topic", topic, "op", op)
	}
}

// controlLoop takes connections out of rooms for Remove, one at a time,
// until the hub closes.
func (h *Hub) controlLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case r := <-h.removals:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			switch err := h.leave(ctx, r.c, r.room, r.reason); {
			case err == nil:
				h.log.Info("removed from a room by the server API", "user", r.c.user, "room", r.room, "reason", r.reason)
			case errors.Is(err, errRemovalDeferred):
				h.log.Info("removal from a room being joined: applied once joined", "user", r.c.user, "room", r.room, "reason", r.reason)
			}
			cancel()
			if h.hooks.removed != nil {
				h.hooks.removed(r.c, r.room)
			}
		}
	}
}
