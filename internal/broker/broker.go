// Package broker carries messages between relay nodes. A node publishes every
// message to the broker and delivers what the broker hands back, so a
// message from a local client and one from another node take the same path.
package broker

import (
	"context"
	"errors"
)

// Handler receives a message published on a topic the node subscribed to.
// It is called from the broker's delivery goroutine (or, in-process, from
// the publisher's) and must not block or call back into the broker. payload
// is shared: the handler must not modify it.
type Handler = func(topic string, payload []byte)

// Broker is the pub/sub contract every backend meets:
//   - a message published on a topic reaches the handler of every node
//     subscribed to it, once;
//   - messages from one publisher arrive in the order published;
//   - a node gets nothing for topics it has not subscribed to;
//   - Publish returns nil only once the message is accepted for delivery.
type Broker interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe sets the node's handler for topic, replacing any earlier one.
	Subscribe(ctx context.Context, topic string, h Handler) error
	Unsubscribe(ctx context.Context, topic string) error
	// Ready reports whether the broker can deliver right now.
	Ready(ctx context.Context) error
	// Close stops delivery; later calls fail with ErrClosed. Idempotent.
	Close() error
}

// ErrClosed is returned by a broker after Close.
var ErrClosed = errors.New("broker closed")
