package hub

import (
	"context"
	"sync"
)

// subscriptions keeps the node subscribed to a topic exactly while something
// local needs it: a room's topic while the room has local members, a user's
// while the user has local connections. Broker calls may be network round
// trips, so they run under the topic's own lock, never a hub-wide one.
//
// A subscription carries its topic's stream: the position this node has
// delivered, read from the broker when the subscription is made.
type subscriptions struct {
	hub *Hub

	mu     sync.Mutex
	topics map[string]*subscription
}

type subscription struct {
	mu     sync.Mutex // held across the broker calls
	refs   int
	dead   bool    // removed from topics; acquire must start over
	stream *stream // set before the broker is asked, so nothing is missed
}

func newSubscriptions(h *Hub) *subscriptions {
	return &subscriptions{hub: h, topics: make(map[string]*subscription)}
}

// stream returns topic's stream, or nil when the node is not subscribed.
func (s *subscriptions) stream(topic string) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.topics[topic]; sub != nil {
		return sub.stream
	}
	return nil
}

// acquire takes a reference on topic, subscribing if it is the first.
func (s *subscriptions) acquire(ctx context.Context, topic string) error {
	for {
		s.mu.Lock()
		sub := s.topics[topic]
		if sub == nil {
			sub = &subscription{stream: &stream{topic: topic}}
			s.topics[topic] = sub
		}
		s.mu.Unlock()

		sub.mu.Lock()
		if sub.dead {
			sub.mu.Unlock()
			continue
		}
		if sub.refs == 0 {
			err := s.hub.broker.Subscribe(ctx, topic, s.hub.deliver)
			if err == nil {
				if err = s.hub.initStream(ctx, sub.stream); err != nil {
					_ = s.hub.broker.Unsubscribe(context.WithoutCancel(ctx), topic)
				}
			}
			if err != nil {
				s.removeLocked(topic, sub)
				sub.mu.Unlock()
				return err
			}
		}
		sub.refs++
		sub.mu.Unlock()
		return nil
	}
}

// release drops a reference, unsubscribing with the last one. An
// unsubscribe that fails leaves a stray subscription whose messages find no
// local receiver: harmless, so it is only reported.
func (s *subscriptions) release(ctx context.Context, topic string) error {
	s.mu.Lock()
	sub := s.topics[topic]
	s.mu.Unlock()
	if sub == nil {
		return nil
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.dead || sub.refs == 0 {
		return nil
	}
	sub.refs--
	if sub.refs > 0 {
		return nil
	}
	// Unsubscribe before letting go of the topic: a join that comes in
	// meanwhile waits on sub.mu, finds it dead and subscribes afresh, after
	// this unsubscribe, never before it (which would leave it subscribed to
	// nothing).
	err := s.hub.broker.Unsubscribe(ctx, topic)
	s.removeLocked(topic, sub)
	return err
}

// removeLocked marks sub dead and forgets it. sub.mu must be held.
func (s *subscriptions) removeLocked(topic string, sub *subscription) {
	sub.dead = true
	sub.stream.mu.Lock()
	sub.stream.dead = true
	sub.stream.pending = nil
	sub.stream.mu.Unlock()
	s.mu.Lock()
	if s.topics[topic] == sub {
		delete(s.topics, topic)
	}
	s.mu.Unlock()
}
