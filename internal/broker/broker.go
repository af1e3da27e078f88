// Package broker carries messages between relay nodes. A node publishes every
// message to the broker and delivers what the broker hands back, so a
// message from a local client and one from another node take the same path.
//
// Besides plain pub/sub, a broker keeps streams: a message published with
// PublishStream gets the next position of its topic's stream, cluster-wide,
// and is kept in the stream's history for a while, so that a node or a
// client that missed it can read it back.
package broker

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Message is what a subscriber's handler receives.
type Message struct {
	// Payload is what Publish was given or, for a stream message, the
	// stream entry: the JSON object given to PublishStream with "seq" added
	// as its last field.
	Payload []byte
	// Epoch and Seq place a stream message in its topic's stream. Seq is 0
	// for a plain Publish.
	Epoch string
	Seq   uint64
	// Resubscribed marks a notice with no payload: the subscription was
	// restored after the broker lost it (an outage), and what was published
	// meanwhile was not delivered. Read it back from History.
	Resubscribed bool
}

// Handler receives what is published on a topic the node subscribed to.
// It is called from the broker's delivery goroutine (or, in-process, from
// the publisher's) and must not block or call back into the broker.
// m.Payload is shared: the handler must not modify it.
type Handler = func(topic string, m Message)

// Broker is the pub/sub contract every backend meets:
//   - a message published on a topic reaches the handler of every node
//     subscribed to it, once;
//   - messages from one publisher arrive in the order published, and a
//     topic's stream messages arrive in stream order;
//   - a node gets nothing for topics it has not subscribed to;
//   - Publish and PublishStream return nil only once the message is
//     accepted for delivery (and, for a stream, is in its history);
//   - PublishStream never publishes a message twice, and its error means
//     the message was not published, unless it wraps ErrUnconfirmed.
type Broker interface {
	// Publish sends payload to the topic's subscribers, outside any stream.
	Publish(ctx context.Context, topic string, payload []byte) error
	// PublishStream appends msg, a JSON object, to the topic's stream and
	// sends it to the topic's subscribers, with its position added as
	// "seq". It returns that position.
	PublishStream(ctx context.Context, topic string, msg []byte) (Position, error)
	// History reads the topic's stream: its current position and the
	// entries the query asks for that are still kept.
	History(ctx context.Context, topic string, q HistoryQuery) (History, error)
	// Subscribe sets the node's handler for topic, replacing any earlier one.
	Subscribe(ctx context.Context, topic string, h Handler) error
	// Unsubscribe stops delivery for topic at once, whatever ctx (a
	// goodbye whose deadline has passed still lets go), and the topic is
	// not subscribed again when the broker reconnects. An error says the
	// backend could not be told; delivery has stopped all the same.
	Unsubscribe(ctx context.Context, topic string) error
	// Subscriptions returns how many topics the node is subscribed to
	// (0 after Close).
	Subscriptions() int
	// Ready reports whether the broker can deliver right now.
	Ready(ctx context.Context) error
	// Close stops delivery; later calls fail with ErrClosed. Idempotent.
	Close() error
}

// ErrClosed is returned by a broker after Close.
var ErrClosed = errors.New("broker closed")

// ErrUnconfirmed is wrapped by the error of a PublishStream that may or may
// not have published its message: Redis may have run the publish and its
// answer was lost (it came too late, or the connection broke), and the
// caller's deadline left no time to ask again. If it was published, the
// message is in its stream's history, at most once.
var ErrUnconfirmed = errors.New("broker: publish unconfirmed: the message may or may not have been published")

// ErrNotObject is returned by PublishStream for a message that is not a
// JSON object, where "seq" could not be added.
var ErrNotObject = errors.New("broker: stream message is not a JSON object")

// Position is a place in a stream. Seq counts the stream's messages, from 1,
// for as long as the epoch holds; a new epoch means the history before it
// is gone (the broker restarted without its data). A stream created after
// another was forgotten (HistoryOptions.StreamTTL) starts past that one's
// positions, so no (epoch, topic, seq) ever names two messages.
type Position struct {
	Epoch string
	Seq   uint64
}

// HistoryQuery says which entries History returns.
type HistoryQuery struct {
	Since uint64 // entries after this position
	Limit int    // at most this many; 0 asks for the position alone
	// Latest asks for the stream's last Limit entries instead of the first
	// ones after Since: the newest up to Until (0: up to the stream's
	// latest position).
	Latest bool
	Until  uint64
	// MaxBytes bounds the entries' Data, summed (0: no bound). Entries are
	// taken in reading order (oldest first, or newest first with Latest)
	// while they fit; the first that does not ends the read, and History
	// says Truncated. A broker reads no more than that from its store, so a
	// caller bounds what a read costs, not only what it returns.
	MaxBytes int
}

// History is part of a stream.
type History struct {
	Position         // the stream's latest position
	Entries  []Entry // oldest first
	// Truncated: the query's MaxBytes left out entries it would otherwise
	// have returned (the newest, or with Latest the oldest).
	Truncated bool
}

// Entry is one message of a stream, as subscribers received it. Data may
// be shared (with the broker's store, or with other entries): callers must
// not modify it.
type Entry struct {
	Seq  uint64
	Data []byte
}

// HistoryOptions say how much of each stream a broker keeps. An entry is
// kept while it is among the last Size of its stream and younger than TTL.
// Size 0 keeps none: positions are still assigned.
//
// StreamTTL bounds the state of streams nobody uses: a stream neither
// published to nor read for that long is forgotten (its position counter
// too), so that rooms used once, by guests, do not pile up. Positions are
// never reused for all that: the broker keeps a floor, the highest position
// a forgotten stream had reached, and a stream created starts there (at 0
// until the first is forgotten). 0: DefaultStreamTTL.
type HistoryOptions struct {
	Size      int
	TTL       time.Duration
	StreamTTL time.Duration
}

// DefaultStreamTTL is how long an unused stream's state is kept by default:
// long enough that a room used daily keeps its numbering.
const DefaultStreamTTL = 24 * time.Hour

// streamTTL is StreamTTL with its default, never shorter than TTL: a stream
// outlives its history.
func (o HistoryOptions) streamTTL() time.Duration {
	d := o.StreamTTL
	if d <= 0 {
		d = DefaultStreamTTL
	}
	return max(d, o.TTL)
}

// keeps reports whether the options keep any history.
func (o HistoryOptions) keeps() bool { return o.Size > 0 && o.TTL > 0 }

// seqPrefix returns msg, a JSON object, up to where "seq" is added: without
// its closing brace and surrounding space, with a comma unless it is empty.
// Both brokers build a stream entry as seqPrefix + `"seq":N}`.
func seqPrefix(msg []byte) ([]byte, error) {
	end := len(msg)
	for end > 0 && isSpace(msg[end-1]) {
		end--
	}
	start := 0
	for start < end && isSpace(msg[start]) {
		start++
	}
	if end-start < 2 || msg[start] != '{' || msg[end-1] != '}' {
		return nil, ErrNotObject
	}
	body := msg[start : end-1]
	out := make([]byte, 0, len(body)+1)
	out = append(out, body...)
	for _, c := range body[1:] {
		if !isSpace(c) {
			return append(out, ','), nil
		}
	}
	return out, nil
}

// withSeq completes a stream entry from seqPrefix's result.
func withSeq(prefix []byte, seq uint64) []byte {
	out := make([]byte, 0, len(prefix)+28)
	out = append(out, prefix...)
	out = append(out, `"seq":`...)
	out = strconv.AppendUint(out, seq, 10)
	return append(out, '}')
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// StateCounter is a broker that can say how many streams it holds state
// for, for the relay_broker_streams metric: the bound StreamTTL puts on
// them is visible there.
type StateCounter interface {
	StateKeys(ctx context.Context) (int64, error)
}
