package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

var keepHistory = broker.HistoryOptions{Size: 100, TTL: time.Minute}

func newRedisBroker(t *testing.T, url string) broker.Broker {
	t.Helper()
	return newRedisBrokers(t, url, 1, keepHistory)[0]
}

// With append-only persistence (as the compose Redis runs), a Redis restart
// keeps the epoch, the positions and the history; subscribers are told they
// were resubscribed, so they can read back what they missed.
func TestRedisRestartWithPersistenceKeepsHistory(t *testing.T) {
	t.Parallel()
	srv := redistest.StartPersistent(t)
	sub, pub := newRedisBroker(t, srv.URL()), newRedisBroker(t, srv.URL())
	r := newRecorder()
	mustSubscribe(t, sub, "kept", r.handle)
	before := mustPublishStream(t, pub, "kept", `{"n":1}`)
	waitFor(t, "the first message", func() bool { return r.len() >= 1 })

	srv.Kill()
	srv.Restart()
	waitFor(t, "the resubscribed notice", func() bool { return r.count(func(m message) bool { return m.resub }) >= 1 })
	var after broker.Position
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() (err error) {
		after, err = pub.PublishStream(t.Context(), "kept", []byte(`{"n":2}`))
		return err
	})
	if after.Epoch != before.Epoch || after.Seq != 2 {
		t.Fatalf("after a restart with persistence: %+v, before %+v: want the same epoch and seq 2", after, before)
	}
	h := mustHistory(t, sub, "kept", broker.HistoryQuery{Limit: 10})
	checkEntries(t, h.Entries, 1, []string{`{"n":1,"seq":1}`, `{"n":2,"seq":2}`})
}

// Redis restarted empty has lost the history: the epoch changes and
// positions start again at 1, so that nobody mistakes the new stream for
// the old.
func TestRedisRestartEmptyChangesEpoch(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newRedisBroker(t, srv.URL())
	mustPublishStream(t, b, "lost", `{"n":1}`)
	before := mustPublishStream(t, b, "lost", `{"n":2}`)
	srv.Kill()
	srv.Restart()
	var after broker.Position
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() (err error) {
		after, err = b.PublishStream(t.Context(), "lost", []byte(`{"n":3}`))
		return err
	})
	if after.Epoch == before.Epoch || after.Seq != 1 {
		t.Fatalf("after Redis lost its data: %+v, before %+v: want a new epoch and seq 1", after, before)
	}
	if h := mustHistory(t, b, "other", broker.HistoryQuery{}); h.Epoch != after.Epoch {
		t.Fatalf("streams disagree on the epoch: %q and %q", h.Epoch, after.Epoch)
	}
}

// A subscription connection that stops answering while Redis still takes
// new connections (the link of that one socket blackholed, then Redis drops
// the subscriber, whose goodbye never arrives) is noticed within 10 s: the
// node reconnects and resubscribes by itself, subscribers are told, and
// what was published meanwhile is in the history. (Ready is false from the
// moment the silence is noticed until the new connection answers: on
// loopback, a millisecond.)
func TestRedisSilentSubscriptionIsReplaced(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := testkit.StartProxy(t, srv.Addr())
	sub := newRedisBroker(t, fmt.Sprintf("redis://%s/0", proxy.Addr))
	pub := newRedisBroker(t, srv.URL())
	ctx := context.Background()
	r := newRecorder()
	mustSubscribe(t, sub, "silent", r.handle)
	mustPublishStream(t, pub, "silent", `{"n":1}`)
	waitFor(t, "the first message", func() bool { return r.len() >= 1 })

	proxy.BlackholeOpen()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	for i := 2; i <= 4; i++ { // published while the node is subscribed to nothing
		mustPublishStream(t, pub, "silent", fmt.Sprintf(`{"n":%d}`, i))
	}
	waitFor(t, "the resubscribed notice", func() bool { return r.count(func(m message) bool { return m.resub }) >= 1 })
	if d := time.Since(cut); d > 10*time.Second {
		t.Errorf("a silent subscription took %v to notice and replace, want ≤ 10s", d)
	}
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error { return sub.Ready(ctx) })
	if got := r.count(func(m message) bool { return m.seq > 1 }); got != 0 {
		t.Fatalf("%d messages published while unsubscribed were delivered: the test did not cut the subscription", got)
	}
	h := mustHistory(t, sub, "silent", broker.HistoryQuery{Since: 1, Limit: 10})
	checkEntries(t, h.Entries, 2, []string{`{"n":2,"seq":2}`, `{"n":3,"seq":3}`, `{"n":4,"seq":4}`})
	mustPublishStream(t, pub, "silent", `{"n":5}`)
	waitFor(t, "live delivery on the new connection", func() bool {
		return r.count(func(m message) bool { return m.seq == 5 }) == 1
	})
}

// A topic unsubscribed with a context already cancelled (a goodbye whose
// deadline passed on a slow Redis) is not subscribed again when the
// connection is: here its UNSUBSCRIBE never reaches Redis (the link is
// blackholed, then cut), and after the node reconnects Redis must count no
// subscriber on it, while the topics kept are resubscribed.
func TestRedisStrayIsNotResubscribed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := testkit.StartProxy(t, srv.Addr())
	sub := newRedisBroker(t, fmt.Sprintf("redis://%s/0", proxy.Addr))
	pub := newRedisBroker(t, srv.URL())
	ctx := context.Background()
	stray, kept := newRecorder(), newRecorder()
	mustSubscribe(t, sub, "stray", stray.handle)
	mustSubscribe(t, sub, "kept", kept.handle)

	proxy.BlackholeOpen()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_ = sub.Unsubscribe(cancelled, "stray")
	proxy.Cut()
	waitFor(t, "the resubscribed notice", func() bool { return kept.count(func(m message) bool { return m.resub }) >= 1 })
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error { return sub.Ready(ctx) })

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	n, err := admin.PubSubNumSub(ctx, "contract:{stray}", "contract:{kept}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n["contract:{kept}"] != 1 {
		t.Fatalf("kept topic has %d subscribers after the reconnect, want 1", n["contract:{kept}"])
	}
	if n["contract:{stray}"] != 0 {
		t.Errorf("the unsubscribed topic has %d subscribers after the reconnect, want 0: a stray resubscribed", n["contract:{stray}"])
	}
	mustPublish(t, pub, "stray", []byte("to nobody"))
	mustPublish(t, pub, "kept", []byte("marker"))
	waitFor(t, "the marker", func() bool { return kept.count(hasPrefix("marker")) >= 1 })
	if got := stray.count(func(m message) bool { return !m.resub }); got != 0 {
		t.Errorf("the unsubscribed topic still delivered %q", stray.payloads())
	}
}
