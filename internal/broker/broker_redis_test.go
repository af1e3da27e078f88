package broker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/redistest"
)

func newRedisBrokers(t *testing.T, url string, n int, h broker.HistoryOptions) []broker.Broker {
	t.Helper()
	var bs []broker.Broker
	for range n {
		b, err := broker.NewRedis(broker.RedisOptions{URL: url, Prefix: "contract:", History: h})
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	t.Cleanup(func() {
		for _, b := range bs {
			b.Close()
		}
	})
	return bs
}

// The same contract as the in-process broker, against a real redis-server.
func TestRedisBroker(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testBrokerContract(t, func(t *testing.T, n int, h broker.HistoryOptions) []broker.Broker {
		return newRedisBrokers(t, srv.URL(), n, h)
	})
}

func TestRedisBadURL(t *testing.T) {
	t.Parallel()
	if _, err := broker.NewRedis(broker.RedisOptions{URL: "http://nope"}); err == nil {
		t.Fatal("NewRedis accepted an http URL")
	}
}

// Redis killed and restarted: the node notices, fails publishes meanwhile,
// and resubscribes by itself when Redis is back, without the caller doing
// anything.
func TestRedisOutageAndResubscribe(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	bs := newRedisBrokers(t, srv.URL(), 2, broker.HistoryOptions{})
	sub, pub := bs[0], bs[1]
	ctx := context.Background()

	var got atomic.Int64
	if err := sub.Subscribe(ctx, "outage", func(_ string, m broker.Message) {
		if !m.Resubscribed {
			got.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "outage", []byte("before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery before the outage", func() bool { return got.Load() == 1 })

	srv.Kill()
	waitFor(t, "Ready to report the outage", func() bool { return sub.Ready(ctx) != nil })
	start := time.Now()
	if err := pub.Publish(ctx, "outage", []byte("lost")); err == nil {
		t.Fatal("Publish succeeded with Redis down")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Publish took %v to fail during the outage", d)
	}
	if err := sub.Subscribe(ctx, "during", func(string, broker.Message) {}); err == nil {
		t.Error("Subscribe succeeded with Redis down")
	}

	srv.Restart()
	waitFor(t, "Ready after Redis is back", func() bool { return sub.Ready(ctx) == nil && pub.Ready(ctx) == nil })
	resumed := time.Now()
	for i := 0; got.Load() < 2; i++ {
		if err := pub.Publish(ctx, "outage", fmt.Appendf(nil, "after %d", i)); err != nil {
			t.Logf("publish after restart: %v", err)
		}
		if time.Since(resumed) > 5*time.Second {
			t.Fatal("no delivery within 5s of Redis returning: not resubscribed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
