package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/testkit"
)

func TestMemoryBroker(t *testing.T) {
	t.Parallel()
	testBrokerContract(t, func(t *testing.T, n int, h broker.HistoryOptions) []broker.Broker {
		m := broker.NewMemory(broker.WithHistory(h))
		bs := []broker.Broker{m}
		for len(bs) < n {
			bs = append(bs, m.Peer())
		}
		t.Cleanup(func() {
			for _, b := range bs {
				b.Close()
			}
		})
		return bs
	})
}

// testBrokerContract checks the contract documented on broker.Broker against
// any implementation. newBrokers returns n brokers acting as n nodes on one
// backend; it closes them in t.Cleanup. Each subtest calls it for its own
// nodes and uses topics unique to the subtest, so subtests can run in
// parallel even when all of them share one backend (one Redis server).
//
// The suite is asynchronous: handlers may run on any goroutine, at any time
// after Publish is called, so positives are awaited with waitFor, never
// slept for. What it relies on beyond the interface documentation:
//
//   - Subscribe returns only once the subscription is active: a message
//     published (from any node) after Subscribe returns reaches the handler.
//     The hub depends on this when a client joins a room.
//   - Handlers may be called concurrently from several goroutines; the
//     recorders here are goroutine-safe and copy the payload, as the
//     Handler contract requires.
//
// Negative checks ("X is not delivered") can never fail spuriously for a
// correct implementation, since a correct one never delivers X. To give a
// wrong delivery a chance to show up without sleeping, they publish a marker
// after X and wait for it. For the marker to be a strong barrier the suite
// would need per-node order across topics (the message and the marker come
// from one publisher and go to one subscribing node). The in-process broker
// delivers synchronously, so there the barrier is exact; a Redis broker with
// one publishing and one subscribing connection per node also keeps that
// order. An implementation that does not is still tested correctly, just less
// sharply.
func testBrokerContract(t *testing.T, newBrokersWith func(t *testing.T, n int, h broker.HistoryOptions) []broker.Broker) {
	newBrokers := func(t *testing.T, n int) []broker.Broker {
		return newBrokersWith(t, n, broker.HistoryOptions{Size: 100, TTL: time.Minute})
	}
	testStreamContract(t, newBrokersWith)

	t.Run("Ready", func(t *testing.T) {
		t.Parallel()
		for i, b := range newBrokers(t, 3) {
			if err := b.Ready(t.Context()); err != nil {
				t.Errorf("node %d: Ready on a live broker = %v", i, err)
			}
		}
	})

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2)
		topic := uniqueTopic(t, "rt")
		r0, r1 := newRecorder(), newRecorder()
		mustSubscribe(t, bs[0], topic, r0.handle)
		mustSubscribe(t, bs[1], topic, r1.handle)

		mustPublish(t, bs[0], topic, []byte("hello"))
		// Every subscribed node gets it, the publisher's own node included.
		for i, r := range []*recorder{r0, r1} {
			waitFor(t, fmt.Sprintf("node %d to receive the message", i), func() bool { return r.len() >= 1 })
			got := r.all()
			if got[0].topic != topic || string(got[0].payload) != "hello" {
				t.Errorf("node %d got %q on %q; want %q on %q", i, got[0].payload, got[0].topic, "hello", topic)
			}
		}

		// And the other way round.
		mustPublish(t, bs[1], topic, []byte("back"))
		waitFor(t, "node 0 to receive the reply", func() bool { return r0.len() >= 2 })
		waitFor(t, "node 1 to receive the reply", func() bool { return r1.len() >= 2 })
		for i, r := range []*recorder{r0, r1} {
			if got := r.payloads(); !slices.Equal(got, []string{"hello", "back"}) {
				t.Errorf("node %d received %q; want [hello back]", i, got)
			}
		}
	})

	t.Run("TopicIsolation", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2)
		a := uniqueTopic(t, "a")
		// Topics that a prefix, pattern or case-folding mistake would mix
		// up with a.
		others := []string{a + "b", a + ".x", a + ":x", strings.ToUpper(a), uniqueTopic(t, "b"), a[:len(a)-1]}
		ra := newRecorder()
		mustSubscribe(t, bs[1], a, ra.handle)
		rOthers := make([]*recorder, len(others))
		for i, o := range others {
			rOthers[i] = newRecorder()
			mustSubscribe(t, bs[1], o, rOthers[i].handle)
		}

		for _, o := range others {
			mustPublish(t, bs[0], o, []byte("other:"+o))
		}
		mustPublish(t, bs[0], a, []byte("mine"))

		waitFor(t, "the message on A", func() bool { return ra.len() >= 1 })
		for i, o := range others {
			waitFor(t, "the message on "+o, func() bool { return rOthers[i].len() >= 1 })
		}
		for _, m := range ra.all() {
			if m.topic != a || string(m.payload) != "mine" {
				t.Errorf("subscriber of %q got %q on %q", a, m.payload, m.topic)
			}
		}
		if ra.len() != 1 {
			t.Errorf("subscriber of %q got %d messages; want 1", a, ra.len())
		}
		for i, o := range others {
			if got := rOthers[i].all(); len(got) != 1 || got[0].topic != o || string(got[0].payload) != "other:"+o {
				t.Errorf("subscriber of %q got %v", o, got)
			}
		}
	})

	t.Run("OrderPerPublisher", func(t *testing.T) {
		t.Parallel()
		const perPublisher = 1000
		bs := newBrokers(t, 3)
		topic := uniqueTopic(t, "order")
		r := newRecorder()
		mustSubscribe(t, bs[0], topic, r.handle)

		// Nodes 1 and 2 publish at the same time; each one's messages must
		// arrive in order, however the two streams interleave. Node 0 also
		// publishes, to its own subscription.
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for p := range 3 {
			wg.Go(func() {
				for i := range perPublisher {
					if err := bs[p].Publish(t.Context(), topic, fmt.Appendf(nil, "%d:%d", p, i)); err != nil {
						errs <- fmt.Errorf("publisher %d message %d: %w", p, i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		waitFor(t, "all messages", func() bool { return r.len() >= 3*perPublisher })
		next := make([]int, 3)
		for _, m := range r.all() {
			var p, i int
			if _, err := fmt.Sscanf(string(m.payload), "%d:%d", &p, &i); err != nil || p < 0 || p > 2 {
				t.Fatalf("unexpected payload %q", m.payload)
			}
			if i != next[p] {
				t.Fatalf("publisher %d: got message %d; want %d", p, i, next[p])
			}
			next[p]++
		}
		if r.len() != 3*perPublisher {
			t.Fatalf("got %d messages; want %d", r.len(), 3*perPublisher)
		}
	})

	t.Run("UnsubscribeStopsDelivery", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2)
		topic, marker := uniqueTopic(t, "unsub"), uniqueTopic(t, "marker")
		r, rm := newRecorder(), newRecorder()
		mustSubscribe(t, bs[1], topic, r.handle)
		mustSubscribe(t, bs[1], marker, rm.handle)

		mustPublish(t, bs[0], topic, []byte("before"))
		waitFor(t, "the message before Unsubscribe", func() bool { return r.len() >= 1 })

		if err := bs[1].Unsubscribe(t.Context(), topic); err != nil {
			t.Fatalf("Unsubscribe: %v", err)
		}
		mustPublish(t, bs[0], topic, []byte("after"))
		mustPublish(t, bs[1], topic, []byte("after, from self"))
		mustPublish(t, bs[0], marker, []byte("m1"))
		mustPublish(t, bs[1], marker, []byte("m2"))
		waitFor(t, "the markers", func() bool { return rm.len() >= 2 })
		if got := r.payloads(); !slices.Equal(got, []string{"before"}) {
			t.Fatalf("after Unsubscribe the handler got %q; want only [before]", got)
		}

		// Unsubscribing twice, or from a topic never subscribed, is harmless.
		if err := bs[1].Unsubscribe(t.Context(), topic); err != nil {
			t.Errorf("second Unsubscribe: %v", err)
		}
		if err := bs[0].Unsubscribe(t.Context(), uniqueTopic(t, "never")); err != nil {
			t.Errorf("Unsubscribe of a topic never subscribed: %v", err)
		}

		// Subscribing again resumes delivery.
		mustSubscribe(t, bs[1], topic, r.handle)
		mustPublish(t, bs[0], topic, []byte("again"))
		waitFor(t, "the message after resubscribing", func() bool { return r.len() >= 2 })
		if got := r.payloads(); !slices.Equal(got, []string{"before", "again"}) {
			t.Fatalf("after resubscribing the handler got %q; want [before again]", got)
		}
	})

	t.Run("UnsubscribeIsPerNode", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 3)
		topic := uniqueTopic(t, "pernode")
		r1, r2 := newRecorder(), newRecorder()
		mustSubscribe(t, bs[1], topic, r1.handle)
		mustSubscribe(t, bs[2], topic, r2.handle)
		if err := bs[1].Unsubscribe(t.Context(), topic); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, bs[0], topic, []byte("x"))
		waitFor(t, "node 2 still subscribed", func() bool { return r2.len() >= 1 })
		if r1.len() != 0 {
			t.Fatalf("node 1 got %q after unsubscribing", r1.payloads())
		}
	})

	t.Run("ManySubscribers", func(t *testing.T) {
		t.Parallel()
		const nodes, perNode = 5, 40
		bs := newBrokers(t, nodes)
		topic := uniqueTopic(t, "fanout")
		recs := make([]*recorder, nodes)
		for i := range recs {
			recs[i] = newRecorder()
			mustSubscribe(t, bs[i], topic, recs[i].handle)
		}
		// Every node publishes; the last message from each is its end
		// marker, so once a node has seen all end markers it has seen
		// everything (per-publisher order).
		for p := range nodes {
			for i := range perNode {
				mustPublish(t, bs[p], topic, fmt.Appendf(nil, "%d:%d", p, i))
			}
			mustPublish(t, bs[p], topic, fmt.Appendf(nil, "end:%d", p))
		}
		const total = nodes * (perNode + 1)
		for i, r := range recs {
			waitFor(t, fmt.Sprintf("node %d to see every end marker", i), func() bool { return r.count(hasPrefix("end:")) >= nodes })
			seen := map[string]int{}
			for _, m := range r.all() {
				if m.topic != topic {
					t.Errorf("node %d: message on %q", i, m.topic)
				}
				seen[string(m.payload)]++
			}
			if r.len() != total || len(seen) != total {
				t.Errorf("node %d got %d messages (%d distinct); want %d, each once", i, r.len(), len(seen), total)
			}
			for p, c := range seen {
				if c != 1 {
					t.Errorf("node %d got %q %d times", i, p, c)
				}
			}
		}
	})

	t.Run("ManyTopics", func(t *testing.T) {
		t.Parallel()
		const topics = 200
		bs := newBrokers(t, 2)
		names := make([]string, topics)
		recs := make([]*recorder, topics)
		for i := range names {
			names[i] = uniqueTopic(t, fmt.Sprintf("t%d", i))
			recs[i] = newRecorder()
			mustSubscribe(t, bs[1], names[i], recs[i].handle)
		}
		for i := range names {
			mustPublish(t, bs[0], names[i], []byte(names[i]))
		}
		for i, r := range recs {
			waitFor(t, "the message on "+names[i], func() bool { return r.len() >= 1 })
		}
		for i, r := range recs {
			got := r.all()
			if len(got) != 1 || got[0].topic != names[i] || string(got[0].payload) != names[i] {
				t.Errorf("handler of %q got %v", names[i], got)
			}
		}
	})

	t.Run("LargePayloads", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2)
		topic := uniqueTopic(t, "large")
		r := newRecorder()
		mustSubscribe(t, bs[1], topic, r.handle)

		rng := rand.New(rand.NewChaCha8([32]byte{1, 2, 3}))
		var sent [][]byte
		for _, n := range []int{1, 64 << 10, 1 << 20, 1<<20 + 7} {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			sent = append(sent, p)
			mustPublish(t, bs[0], topic, p)
		}
		waitFor(t, "the large payloads", func() bool { return r.len() >= len(sent) })
		got := r.all()
		if len(got) != len(sent) {
			t.Fatalf("got %d payloads; want %d", len(got), len(sent))
		}
		for i := range sent {
			if !bytes.Equal(got[i].payload, sent[i]) {
				t.Errorf("payload %d (%d bytes) arrived altered (%d bytes)", i, len(sent[i]), len(got[i].payload))
			}
		}
	})

	t.Run("BinaryPayload", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2)
		topic := uniqueTopic(t, "binary")
		r := newRecorder()
		mustSubscribe(t, bs[1], topic, r.handle)
		// A WebSocket frame header, NUL bytes, invalid UTF-8, CR LF: the
		// broker must carry bytes, not text.
		p := []byte("\x81\x7e\x00\x00\r\n\xff\xfe*3\r\n$")
		mustPublish(t, bs[0], topic, p)
		waitFor(t, "the binary payload", func() bool { return r.len() >= 1 })
		if got := r.all()[0].payload; !bytes.Equal(got, p) {
			t.Fatalf("got %q; want %q", got, p)
		}
	})

	t.Run("SubscribeReplacesHandler", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2)
		topic := uniqueTopic(t, "replace")
		old, cur := newRecorder(), newRecorder()
		mustSubscribe(t, bs[1], topic, old.handle)
		mustSubscribe(t, bs[1], topic, cur.handle)

		mustPublish(t, bs[0], topic, []byte("m1"))
		mustPublish(t, bs[0], topic, []byte("m2"))
		waitFor(t, "the new handler", func() bool { return cur.len() >= 2 })
		if got := cur.payloads(); !slices.Equal(got, []string{"m1", "m2"}) {
			t.Errorf("new handler got %q; want [m1 m2], each once", got)
		}
		if old.len() != 0 {
			t.Errorf("replaced handler still got %q", old.payloads())
		}
	})

	t.Run("Closed", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 3)
		topic := uniqueTopic(t, "closed")
		r1, r2 := newRecorder(), newRecorder()
		mustSubscribe(t, bs[1], topic, r1.handle)
		mustSubscribe(t, bs[2], topic, r2.handle)

		if err := bs[1].Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := bs[1].Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		ctx := t.Context()
		if err := bs[1].Publish(ctx, topic, []byte("x")); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Publish after Close = %v; want ErrClosed", err)
		}
		if err := bs[1].Subscribe(ctx, topic, r1.handle); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Subscribe after Close = %v; want ErrClosed", err)
		}
		if err := bs[1].Subscribe(ctx, uniqueTopic(t, "new"), r1.handle); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Subscribe to a new topic after Close = %v; want ErrClosed", err)
		}
		if err := bs[1].Unsubscribe(ctx, topic); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Unsubscribe after Close = %v; want ErrClosed", err)
		}
		if err := bs[1].Ready(ctx); err == nil {
			t.Errorf("Ready after Close = nil; want an error")
		}
		if n := bs[1].Subscriptions(); n != 0 {
			t.Errorf("Subscriptions() after Close = %d, want 0", n)
		}
		if err := bs[1].Close(); err != nil {
			t.Errorf("third Close: %v", err)
		}

		// The other nodes carry on, and the closed one gets nothing.
		for _, i := range []int{0, 2} {
			if err := bs[i].Ready(ctx); err != nil {
				t.Errorf("node %d: Ready after a peer closed = %v", i, err)
			}
		}
		mustPublish(t, bs[0], topic, []byte("after close"))
		mustPublish(t, bs[2], topic, []byte("after close, node 2"))
		waitFor(t, "node 2 to receive", func() bool { return r2.len() >= 2 })
		if r1.len() != 0 {
			t.Errorf("closed node got %q", r1.payloads())
		}
	})

	t.Run("CloseWithoutUse", func(t *testing.T) {
		t.Parallel()
		for i, b := range newBrokers(t, 2) {
			if err := b.Close(); err != nil {
				t.Errorf("node %d: Close: %v", i, err)
			}
			if err := b.Close(); err != nil {
				t.Errorf("node %d: second Close: %v", i, err)
			}
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2)
		cancelled, cancel := context.WithCancel(t.Context())
		cancel()
		topic, live, marker := uniqueTopic(t, "ctx"), uniqueTopic(t, "live"), uniqueTopic(t, "marker")

		r, rl, rm := newRecorder(), newRecorder(), newRecorder()
		if err := bs[1].Subscribe(cancelled, topic, r.handle); !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe with a cancelled context = %v; want context.Canceled", err)
		}
		mustSubscribe(t, bs[1], live, rl.handle)
		mustSubscribe(t, bs[1], marker, rm.handle)

		if err := bs[0].Publish(cancelled, live, []byte("cancelled")); !errors.Is(err, context.Canceled) {
			t.Errorf("Publish with a cancelled context = %v; want context.Canceled", err)
		}
		if err := bs[1].Publish(cancelled, live, []byte("cancelled, self")); !errors.Is(err, context.Canceled) {
			t.Errorf("Publish to self with a cancelled context = %v; want context.Canceled", err)
		}
		// The failed Subscribe must not have subscribed.
		mustPublish(t, bs[0], topic, []byte("not subscribed"))
		mustPublish(t, bs[0], live, []byte("ok"))
		mustPublish(t, bs[0], marker, []byte("marker"))
		waitFor(t, "the marker", func() bool { return rm.len() >= 1 })
		waitFor(t, "the live message", func() bool { return rl.len() >= 1 })
		if r.len() != 0 {
			t.Errorf("a Subscribe that failed with a cancelled context still delivered %q", r.payloads())
		}
		if got := rl.payloads(); !slices.Equal(got, []string{"ok"}) {
			t.Errorf("live topic got %q; want only [ok]: a Publish with a cancelled context was delivered", got)
		}

		// An expired deadline is a context error as well.
		expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel2()
		if err := bs[0].Publish(expired, live, []byte("expired")); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish with an expired deadline = %v; want context.DeadlineExceeded", err)
		}
	})

	t.Run("UnsubscribeWithCancelledContext", func(t *testing.T) {
		t.Parallel()
		// A caller whose deadline has passed (a connection's goodbye
		// during an outage) still lets go of the topic: nothing more is
		// delivered for it, and it is no longer counted.
		bs := newBrokers(t, 2)
		topic, marker := uniqueTopic(t, "stray"), uniqueTopic(t, "marker")
		r, rm := newRecorder(), newRecorder()
		mustSubscribe(t, bs[1], topic, r.handle)
		mustSubscribe(t, bs[1], marker, rm.handle)
		mustSubscribe(t, bs[1], marker, rm.handle) // replaces the handler: still one
		if n := bs[1].Subscriptions(); n != 2 {
			t.Errorf("Subscriptions() = %d after subscribing to 2 topics, want 2", n)
		}
		cancelled, cancel := context.WithCancel(t.Context())
		cancel()
		if err := bs[1].Unsubscribe(cancelled, topic); err != nil {
			t.Errorf("Unsubscribe with a cancelled context = %v; want nil: the topic is dropped whatever the context", err)
		}
		if n := bs[1].Subscriptions(); n != 1 {
			t.Errorf("Subscriptions() = %d after an Unsubscribe with a cancelled context, want 1", n)
		}
		expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel2()
		if err := bs[1].Unsubscribe(expired, uniqueTopic(t, "never")); err != nil {
			t.Errorf("Unsubscribe of a topic never subscribed, expired deadline = %v; want nil", err)
		}
		mustPublish(t, bs[0], topic, []byte("after unsubscribe"))
		mustPublish(t, bs[0], marker, []byte("marker"))
		waitFor(t, "the marker", func() bool { return rm.len() >= 1 })
		if r.len() != 0 {
			t.Errorf("a topic unsubscribed with a cancelled context still delivered %q", r.payloads())
		}
	})

	t.Run("ConcurrentUse", func(t *testing.T) {
		t.Parallel()
		// Publish, Subscribe and Unsubscribe from many goroutines at once,
		// for the race detector; then check the broker still works.
		bs := newBrokers(t, 3)
		topics := []string{uniqueTopic(t, "c0"), uniqueTopic(t, "c1"), uniqueTopic(t, "c2")}
		var delivered atomic.Int64
		h := func(string, broker.Message) { delivered.Add(1) }
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for n := range bs {
			wg.Go(func() {
				for i := range 200 {
					topic := topics[i%len(topics)]
					var err error
					switch i % 3 {
					case 0:
						err = bs[n].Subscribe(t.Context(), topic, h)
					case 1:
						err = bs[n].Publish(t.Context(), topic, []byte("x"))
					case 2:
						err = bs[n].Unsubscribe(t.Context(), topic)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
			wg.Go(func() {
				for i := range 200 {
					if err := bs[n].Publish(t.Context(), topics[i%len(topics)], []byte("y")); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		topic := uniqueTopic(t, "after")
		r := newRecorder()
		mustSubscribe(t, bs[2], topic, r.handle)
		mustPublish(t, bs[0], topic, []byte("still works"))
		waitFor(t, "delivery after concurrent use", func() bool { return r.len() >= 1 })
	})
}

// ---------------------------------------------------------------------------
// Helpers

// waitTimeout bounds every wait; generous, since a networked backend under
// the race detector on a busy CI machine can be slow.
const waitTimeout = 15 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.CheckFor(t, waitTimeout, time.Millisecond, func() error {
		if !cond() {
			return errors.New("waiting for " + what)
		}
		return nil
	})
}

var topicSeq atomic.Uint64

// uniqueTopic returns a topic no other test (in this process or another one
// sharing the backend) uses.
func uniqueTopic(t *testing.T, name string) string {
	t.Helper()
	return fmt.Sprintf("contract:%x:%d:%s", rand.Uint64(), topicSeq.Add(1), name)
}

func mustSubscribe(t *testing.T, b broker.Broker, topic string, h broker.Handler) {
	t.Helper()
	if err := b.Subscribe(t.Context(), topic, h); err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
}

func mustPublish(t *testing.T, b broker.Broker, topic string, payload []byte) {
	t.Helper()
	if err := b.Publish(t.Context(), topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

type message struct {
	topic   string
	payload []byte
	epoch   string
	seq     uint64
	resub   bool
}

func (m message) String() string { return fmt.Sprintf("%q on %q", m.payload, m.topic) }

// recorder is a goroutine-safe handler that keeps a copy of every delivery.
type recorder struct {
	mu   sync.Mutex
	msgs []message
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) handle(topic string, msg broker.Message) {
	m := message{topic: topic, payload: bytes.Clone(msg.Payload), // payload is shared
		epoch: msg.Epoch, seq: msg.Seq, resub: msg.Resubscribed}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) all() []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]message(nil), r.msgs...)
}

func (r *recorder) payloads() []string {
	var out []string
	for _, m := range r.all() {
		out = append(out, string(m.payload))
	}
	return out
}

func (r *recorder) count(match func(message) bool) int {
	n := 0
	for _, m := range r.all() {
		if match(m) {
			n++
		}
	}
	return n
}

func hasPrefix(p string) func(message) bool {
	return func(m message) bool { return bytes.HasPrefix(m.payload, []byte(p)) }
}
