package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

// newTunedClient is a go-redis client set up as NewRedis sets up its own.
func newTunedClient(t *testing.T, addr string, change func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: addr}
	broker.Tune(o)
	if change != nil {
		change(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// PublishStream says "not sent" only for errors after which the command
// certainly did not reach Redis. These are the errors go-redis really
// returns (a go-redis upgrade that changes them fails here).
func TestPublishErrorsTellWhetherTheCommandMayHaveRun(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	p := testkit.StartProxy(t, srv.Addr())
	expired, cancel := context.WithCancel(t.Context())
	cancel()
	cases := []struct {
		name string
		err  func(t *testing.T) error
		may  bool
	}{
		{"connection refused", func(t *testing.T) error {
			return newTunedClient(t, testkit.FreeAddr(t), nil).Ping(t.Context()).Err()
		}, false},
		{"an error reply", func(t *testing.T) error {
			return newTunedClient(t, srv.Addr(), nil).Do(t.Context(), "NOSUCHCOMMAND").Err()
		}, false},
		{"a context already done", func(t *testing.T) error {
			return newTunedClient(t, srv.Addr(), nil).Ping(expired).Err()
		}, false},
		{"no free connection", func(t *testing.T) error {
			c := newTunedClient(t, srv.Addr(), func(o *redis.Options) { o.PoolSize, o.PoolTimeout = 1, 100*time.Millisecond })
			held := make(chan struct{})
			go func() { // holds the one connection for 1 s
				defer close(held)
				c.BLPop(context.Background(), time.Second, "nothing")
			}()
			time.Sleep(100 * time.Millisecond)
			err := c.Ping(t.Context()).Err()
			<-held
			return err
		}, false},
		{"a reply past the deadline", func(t *testing.T) error {
			c := newTunedClient(t, p.Addr, nil)
			if err := c.Ping(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			p.DelayReplies(time.Second, time.Second)
			defer p.DelayReplies(0, 0)
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			return c.Ping(ctx).Err()
		}, true},
		{"a connection reset before the reply", func(t *testing.T) error {
			c := newTunedClient(t, p.Addr, nil)
			if err := c.Ping(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			p.DelayReplies(time.Second, time.Second)
			defer p.DelayReplies(0, 0)
			time.AfterFunc(200*time.Millisecond, p.Cut)
			return c.Ping(t.Context()).Err()
		}, true},
	}
	for _, tc := range cases { // in turn: two share the proxy
		err := tc.err(t)
		if err == nil {
			t.Fatalf("%s: no error", tc.name)
		}
		if got := broker.MayHaveRun(err); got != tc.may {
			t.Errorf("%s (%v): may have run %v, want %v", tc.name, err, got, tc.may)
		}
	}
}
