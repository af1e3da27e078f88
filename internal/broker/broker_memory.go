package broker

import (
	"context"
	"slices"
	"sync"
)

// Memory is the in-process broker: the default when no Redis is configured,
// for a node that runs alone. Publish delivers synchronously, in the
// publisher's goroutine, so per-publisher order is kept trivially and a
// message is accepted exactly when it has been handed to every subscriber.
type Memory struct {
	bus *bus

	mu     sync.Mutex
	closed bool
}

var _ Broker = (*Memory)(nil)

// bus is shared by the Memory brokers of one process (see Peer in
// export_test.go). A topic
// has one subscriber per node, and usually one node: a slice is far smaller
// than a map, which matters with a topic per connected user.
type bus struct {
	mu   sync.RWMutex
	subs map[string][]memSub
}

type memSub struct {
	node *Memory
	h    Handler
}

// NewMemory returns an in-process broker.
func NewMemory() *Memory {
	return &Memory{bus: &bus{subs: make(map[string][]memSub)}}
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
	// Handlers run under the read lock: they only enqueue, and must not
	// call back into the broker (see Handler).
	m.bus.mu.RLock()
	defer m.bus.mu.RUnlock()
	for _, sub := range m.bus.subs[topic] {
		sub.h(topic, payload)
	}
	return nil
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
	return nil
}

// Unsubscribe removes this node's handler for topic.
func (m *Memory) Unsubscribe(ctx context.Context, topic string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.bus.mu.Lock()
	defer m.bus.mu.Unlock()
	if m.isClosed() {
		return ErrClosed
	}
	m.bus.unsubscribeLocked(m, topic)
	return nil
}

func (b *bus) unsubscribeLocked(m *Memory, topic string) {
	subs := slices.DeleteFunc(b.subs[topic], func(s memSub) bool { return s.node == m })
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
	defer m.bus.mu.Unlock()
	for topic := range m.bus.subs {
		m.bus.unsubscribeLocked(m, topic)
	}
	return nil
}
