package broker

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Memory is the in-process broker: the default when no Redis is configured,
// for a node that runs alone. Publish delivers synchronously, in the
// publisher's goroutine, so per-publisher order is kept trivially and a
// message is accepted exactly when it has been handed to every subscriber.
type Memory struct {
	bus  *bus
	root bool // created the bus, and stops its history sweeper

	mu     sync.Mutex
	closed bool

	subs int // topics this node is subscribed to; guarded by bus.mu
}

var _ Broker = (*Memory)(nil)

// bus is shared by the Memory brokers of one process (see Peer in
// export_test.go). A topic
// has one subscriber per node, and usually one node: a slice is far smaller
// than a map, which matters with a topic per connected user.
type bus struct {
	mu      sync.RWMutex
	subs    map[string][]memSub
	history *memHistory
}

type memSub struct {
	node *Memory
	h    Handler
}

// MemoryOption configures NewMemory.
type MemoryOption func(*memoryOptions)

type memoryOptions struct{ history HistoryOptions }

// WithHistory keeps each stream's recent messages; without it, streams
// only number their messages.
func WithHistory(h HistoryOptions) MemoryOption {
	return func(o *memoryOptions) { o.history = h }
}

// NewMemory returns an in-process broker.
func NewMemory(opts ...MemoryOption) *Memory {
	var o memoryOptions
	for _, opt := range opts {
		opt(&o)
	}
	return &Memory{
		bus:  &bus{subs: make(map[string][]memSub), history: newMemHistory(o.history)},
		root: true,
	}
}

func (m *Memory) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Publish hands payload to every subscriber of topic before returning.
func (m *Memory) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.isClosed() {
		return ErrClosed
	}
	m.bus.deliver(topic, Message{Payload: payload})
	return nil
}

// PublishStream numbers msg in topic's stream, keeps it in the history and
// hands it to every subscriber before returning. The stream's lock is held
// from numbering to delivery, so every subscriber sees the stream in order.
func (m *Memory) PublishStream(ctx context.Context, topic string, msg []byte) (Position, error) {
	if err := ctx.Err(); err != nil {
		return Position{}, err
	}
	if m.isClosed() {
		return Position{}, ErrClosed
	}
	prefix, err := seqPrefix(msg)
	if err != nil {
		return Position{}, err
	}
	h := m.bus.history
	now := time.Now()
	s := h.lockStream(topic, now)
	defer s.mu.Unlock()
	s.seq++
	data := withSeq(prefix, s.seq)
	h.appendLocked(s, s.seq, data, now)
	m.bus.deliver(topic, Message{Payload: data, Epoch: h.epoch, Seq: s.seq})
	return Position{Epoch: h.epoch, Seq: s.seq}, nil
}

// History reads topic's stream.
func (m *Memory) History(ctx context.Context, topic string, q HistoryQuery) (History, error) {
	if err := ctx.Err(); err != nil {
		return History{}, err
	}
	if m.isClosed() {
		return History{}, ErrClosed
	}
	return m.bus.history.read(topic, q), nil
}

// deliver runs the handlers under the read lock: they only enqueue, and
// must not call back into the broker (see Handler).
func (b *bus) deliver(topic string, msg Message) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, sub := range b.subs[topic] {
		sub.h(topic, msg)
	}
}

// Subscribe sets this node's handler for topic.
func (m *Memory) Subscribe(ctx context.Context, topic string, h Handler) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Checked under the bus lock, so that a Close cannot run between the
	// check and the subscription and leave a closed broker subscribed.
	m.bus.mu.Lock()
	defer m.bus.mu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	subs := m.bus.subs[topic]
	for i := range subs {
		if subs[i].node == m {
			subs[i].h = h
			return nil
		}
	}
	m.bus.subs[topic] = append(subs, memSub{m, h})
	m.subs++
	return nil
}

// Unsubscribe removes this node's handler for topic, whatever ctx: a
// goodbye whose deadline has passed still lets go.
func (m *Memory) Unsubscribe(_ context.Context, topic string) error {
	m.bus.mu.Lock()
	defer m.bus.mu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	m.bus.unsubscribeLocked(m, topic)
	return nil
}

// Subscriptions returns how many topics this node is subscribed to.
func (m *Memory) Subscriptions() int {
	m.bus.mu.RLock()
	defer m.bus.mu.RUnlock()
	return m.subs
}

func (b *bus) unsubscribeLocked(m *Memory, topic string) {
	before := len(b.subs[topic])
	subs := slices.DeleteFunc(b.subs[topic], func(s memSub) bool { return s.node == m })
	m.subs -= before - len(subs)
	if len(subs) == 0 {
		delete(b.subs, topic)
		return
	}
	b.subs[topic] = subs
}

// Ready is nil until Close.
func (m *Memory) Ready(ctx context.Context) error {
	if m.isClosed() {
		return ErrClosed
	}
	return ctx.Err()
}

// Close drops this node's subscriptions.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()

	m.bus.mu.Lock()
	for topic := range m.bus.subs {
		m.bus.unsubscribeLocked(m, topic)
	}
	m.bus.mu.Unlock()
	if m.root {
		m.bus.history.close()
	}
	return nil
}

var _ StateCounter = (*Memory)(nil)

// StateKeys is the number of streams held in memory.
func (m *Memory) StateKeys(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return int64(m.bus.history.size()), nil
}
