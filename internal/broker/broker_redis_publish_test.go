package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

// A publish is never run twice, and an error that says it was not sent is
// only given when it was not: these tests put a proxy between the broker
// and a real Redis that delays every reply (Redis has run the command; its
// answer is late) or resets the connections.

// slowBroker is a broker whose Redis link goes through a proxy, ready: its
// subscription connection is up and Redis has its script, so that what is
// tested is the publish.
func slowBroker(t *testing.T) (broker.Broker, *testkit.Proxy) {
	t.Helper()
	srv := redistest.Start(t)
	p := testkit.StartProxy(t, srv.Addr())
	b := newRedisBroker(t, "redis://"+p.Addr+"/0")
	testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error { return b.Ready(t.Context()) })
	// Redis knows the script from now on, as on a node that has been
	// publishing: a first call is not a NOSCRIPT answer and a second one.
	mustPublishStream(t, b, uniqueTopic(t, "warm"), `{"n":0}`)
	return b, p
}

// entriesWith counts the history entries of topic that carry payload n.
func entriesWith(t *testing.T, b broker.Broker, topic string) map[int][]uint64 {
	t.Helper()
	h := mustHistory(t, b, topic, broker.HistoryQuery{Limit: 1000})
	seen := make(map[int][]uint64)
	for _, e := range h.Entries {
		var n, seq int
		if _, err := fmt.Sscanf(string(e.Data), `{"n":%d,"seq":%d}`, &n, &seq); err != nil {
			t.Fatalf("entry %d: %q: %v", e.Seq, e.Data, err)
		}
		seen[n] = append(seen[n], e.Seq)
	}
	return seen
}

// Redis runs the script and its reply is lost with the connection (reset
// after Redis ran it): the broker may try again, on a new connection, and
// must then answer the first run's position instead of publishing twice.
func TestRedisPublishRetriedAfterALostReplyIsStoredOnce(t *testing.T) {
	t.Parallel()
	b, p := slowBroker(t)
	topic := uniqueTopic(t, "publish")
	p.DelayReplies(time.Second, time.Second)
	type result struct {
		pos broker.Position
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pos, err := b.PublishStream(ctx, topic, []byte(`{"n":1}`))
		done <- result{pos, err}
	}()
	time.Sleep(300 * time.Millisecond) // Redis has run it; the reply is held
	p.Cut()
	p.DelayReplies(0, 0)
	r := <-done
	if r.err != nil && !errors.Is(r.err, broker.ErrUnconfirmed) {
		t.Fatalf("publish whose reply was lost: %v; want success or ErrUnconfirmed, never not sent: it was stored", r.err)
	}
	got := entriesWith(t, b, topic)
	if len(got[1]) != 1 {
		t.Fatalf("history holds the message at positions %v; want exactly one", got[1])
	}
	if r.err == nil && r.pos.Seq != got[1][0] {
		t.Fatalf("publish answered position %d; the message is at %d", r.pos.Seq, got[1][0])
	}
}

// Replies 2–3 s late, as from a Redis on a failing disk, while a caller
// gives each publish 5 s (as the notify API does): every publish is stored
// exactly once, and none that was stored is answered as not sent.
func TestRedisSlowRepliesPublishEachMessageOnce(t *testing.T) {
	t.Parallel()
	b, p := slowBroker(t)
	topic := uniqueTopic(t, "publish")
	const n = 20
	errs := make([]error, n)
	pos := make([]broker.Position, n)
	var wg sync.WaitGroup
	// n connections in the pool, as on a busy node: what is tested is the
	// publishes, not the handshakes of new connections.
	for range n {
		wg.Go(func() {
			if _, err := b.PublishStream(t.Context(), uniqueTopic(t, "warm"), []byte(`{"n":0}`)); err != nil {
				t.Errorf("warm-up publish: %v", err)
			}
		})
	}
	wg.Wait()
	p.DelayReplies(2*time.Second, 3*time.Second)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pos[i], errs[i] = b.PublishStream(ctx, topic, fmt.Appendf(nil, `{"n":%d}`, i))
		})
	}
	wg.Wait()
	p.DelayReplies(0, 0)
	got := entriesWith(t, b, topic)
	for i := range n {
		switch {
		case len(got[i]) > 1:
			t.Errorf("message %d stored %d times, at %v (answered %v)", i, len(got[i]), got[i], errs[i])
		case errs[i] == nil && (len(got[i]) != 1 || got[i][0] != pos[i].Seq):
			t.Errorf("message %d answered position %d, stored at %v", i, pos[i].Seq, got[i])
		case errs[i] != nil && len(got[i]) == 1 && !errors.Is(errs[i], broker.ErrUnconfirmed):
			t.Errorf("message %d answered %v, as not sent, but stored at %d", i, errs[i], got[i][0])
		}
	}
}

// A publish whose deadline passes before Redis answers may have been
// published: the broker says so (ErrUnconfirmed), and it was.
func TestRedisPublishPastItsDeadlineIsUnconfirmed(t *testing.T) {
	t.Parallel()
	b, p := slowBroker(t)
	topic := uniqueTopic(t, "publish")
	p.DelayReplies(2*time.Second, 2*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.PublishStream(ctx, topic, []byte(`{"n":1}`))
	took := time.Since(start)
	if !errors.Is(err, broker.ErrUnconfirmed) {
		t.Fatalf("publish past its deadline: %v; want ErrUnconfirmed", err)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("publish with a 500 ms deadline took %v", took)
	}
	p.DelayReplies(0, 0)
	if got := entriesWith(t, b, topic); len(got[1]) != 1 {
		t.Fatalf("history holds the unconfirmed message at %v; want once (Redis ran it)", got[1])
	}
}

// A publish that certainly did not reach Redis (it is down) is answered as
// not sent, not as unconfirmed.
func TestRedisPublishToADownRedisIsNotSent(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newRedisBroker(t, srv.URL())
	mustPublishStream(t, b, "down", `{"n":1}`)
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := b.PublishStream(ctx, "down", []byte(`{"n":2}`))
	if err == nil || errors.Is(err, broker.ErrUnconfirmed) {
		t.Fatalf("publish with Redis down: %v; want a not-sent error", err)
	}
}

// What a stream publish costs against a real Redis, receipt included (one
// GET and one SET more per publish), with 16 publishers.
func BenchmarkRedisPublishStream(b *testing.B) {
	srv := redistest.Start(b)
	br, err := broker.NewRedis(broker.RedisOptions{URL: srv.URL(), Prefix: "bench:", History: keepHistory})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	msg := []byte(`{"type":"message","room":"bench","user":"ann","data":"hello","id":"x-1","ts":1}`)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.PublishStream(context.Background(), "bench", msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
