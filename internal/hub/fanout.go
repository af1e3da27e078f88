package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/protocol"
)

// Fan-out: Chat and Notify encode a frame once and publish it; the broker
// hands it back to deliver on every subscribed node, which queues it for
// each local receiver without waiting on any of them.

// Chat publishes a user's message to room, which c must be in. The frame is
// encoded here, once, for every receiver on every node.
func (h *Hub) Chat(ctx context.Context, c *Client, room string, data json.RawMessage) error {
	if !c.inRoom(room) {
		return &protocol.Error{Code: protocol.ErrNotMember, Text: "join room " + room + " before sending to it"}
	}
	if !c.maySend(room) {
		return &protocol.Error{Code: protocol.ErrForbidden, Text: "you may not send to room " + room}
	}
	id := h.newID()
	msg, err := protocol.Marshal(protocol.Chat{
		Type: protocol.TypeMessage, Room: room, User: c.user, Data: data,
		ID: id, TS: time.Now().UnixMilli(),
	})
	if err != nil {
		return &protocol.Error{Code: protocol.ErrBadMessage, Text: "data is not valid JSON"}
	}
	if h.tooLarge(msg) {
		return &protocol.Error{Code: protocol.ErrTooLarge, Text: fmt.Sprintf("message too large once encoded (%d bytes, at most %d)", len(msg), h.opts.MaxFrameBytes-seqRoom)}
	}
	if _, err := h.broker.PublishStream(ctx, roomTopic(room), msg); err != nil {
		if errors.Is(err, broker.ErrUnconfirmed) {
			h.log.Warn("message unconfirmed", "user", c.user, "room", room, "id", id, "err", err)
			return &protocol.Error{Code: protocol.ErrUnconfirmed, ID: id,
				Text: "the broker did not confirm the message in time: it may or may not have been sent; it was if a message with this id reaches you or is in the room's history"}
		}
		return h.unavailable("message not sent: broker unavailable", c, room, err)
	}
	return nil
}

// ErrTooLarge is returned by Notify for a message that would be sent in a
// frame past MaxFrameBytes.
var ErrTooLarge = errors.New("message too large")

// seqRoom is what the broker adds to a stream message (,"seq":N) and the
// frame header, at most.
const seqRoom = 40

func (h *Hub) tooLarge(msg []byte) bool {
	return h.opts.MaxFrameBytes > 0 && len(msg)+seqRoom > h.opts.MaxFrameBytes
}

// Target says who a notification is for: everyone (both empty), a room's
// members, or one user's connections.
type Target struct {
	Room string
	User string
}

func (t Target) topic() string {
	switch {
	case t.Room != "":
		return roomTopic(t.Room)
	case t.User != "":
		return userTopic(t.User)
	}
	return topicAll
}

// Notify publishes a server notification and returns its id and its
// position in its stream once the broker has accepted it: it is then in the
// stream's history. When the error wraps broker.ErrUnconfirmed the id is
// returned too: the notification may have been published, under that id.
func (h *Hub) Notify(ctx context.Context, to Target, text string) (string, broker.Position, error) {
	id := h.newID()
	msg, err := protocol.Marshal(protocol.Notification{
		Type: protocol.TypeNotification, Room: to.Room, User: to.User, Data: text,
		ID: id, TS: time.Now().UnixMilli(),
	})
	if err != nil {
		return "", broker.Position{}, fmt.Errorf("encode notification: %w", err)
	}
	if h.tooLarge(msg) {
		return "", broker.Position{}, fmt.Errorf("%w: %d bytes once encoded, at most %d", ErrTooLarge, len(msg), h.opts.MaxFrameBytes-seqRoom)
	}
	pos, err := h.broker.PublishStream(ctx, to.topic(), msg)
	if errors.Is(err, broker.ErrUnconfirmed) {
		return id, broker.Position{}, fmt.Errorf("publish notification %s: %w", id, err)
	}
	if err != nil {
		return "", broker.Position{}, fmt.Errorf("publish notification: %w", err)
	}
	return id, pos, nil
}

// deliver is the broker handler. Stream messages go through their stream
// (streams.go); the others, joins, leaves and presence, are queued at once.
// It only enqueues, so it never waits on a client.
func (h *Hub) deliver(topic string, m broker.Message) {
	switch {
	case m.Resubscribed:
		h.catchUp(topic)
	case m.Seq != 0:
		h.deliverStream(topic, m)
	case len(m.Payload) > 0 && m.Payload[0] == controlVersion:
		h.control(topic, m.Payload)
	default:
		origin, except, frame, err := decodeWire(m.Payload)
		if err != nil {
			h.log.Error("dropping broker message", "topic", topic, "err", err)
			return
		}
		if string(origin) != h.opts.Node {
			except = 0 // connection ids are per node
		}
		h.fanout(topic, except, frame)
	}
}

// fanout queues frame for every local receiver of topic but the connection
// except.
func (h *Hub) fanout(topic string, except uint64, frame []byte) {
	var sent, dropped int
	send := func(c *Client) {
		if c.id == except {
			return
		}
		if c.send(frame) {
			sent++
		} else {
			dropped++
		}
	}
	switch {
	case topic == topicAll:
		h.clientsMu.RLock()
		for c := range h.clients {
			send(c)
		}
		h.clientsMu.RUnlock()
	case strings.HasPrefix(topic, "room:"):
		h.roomsMu.RLock()
		r := h.rooms[topic[len("room:"):]]
		h.roomsMu.RUnlock()
		if r != nil {
			r.mu.RLock()
			for c := range r.members {
				send(c)
			}
			r.mu.RUnlock()
		}
	case strings.HasPrefix(topic, "user:"):
		h.clientsMu.RLock()
		if u := h.users[topic[len("user:"):]]; u != nil {
			for _, c := range u.clients {
				send(c)
			}
		}
		h.clientsMu.RUnlock()
	}
	h.obs.Delivered(sent)
	if dropped > 0 {
		h.obs.Dropped("not_queued", dropped)
	}
}

// sendDirect queues a frame for one local client without the broker: a
// client's own welcome, join and leave.
func (h *Hub) sendDirect(c *Client, f protocol.Frame) {
	if c.conn.Send(f) {
		h.obs.Delivered(1)
	} else {
		h.obs.Dropped("not_queued", 1)
	}
}

// Send queues a ready frame for c (a pong, say).
func (h *Hub) Send(c *Client, f protocol.Frame) { h.sendDirect(c, f) }

// publish wraps frame for the broker and publishes it.
func (h *Hub) publish(ctx context.Context, topic string, except uint64, frame protocol.Frame) error {
	return h.broker.Publish(ctx, topic, encodeWire(h.opts.Node, except, frame))
}
