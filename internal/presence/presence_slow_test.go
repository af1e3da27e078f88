package presence

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relay/relay/internal/testkit"
)

// nodeVia is cluster.node with the node's Redis link through a proxy, and
// a client tuned as relay's broker client is (2 s reads, one retry): the
// client a node's counter is given.
func (c *cluster) nodeVia(name string, px *testkit.Proxy, o RedisOptions) *Redis {
	c.t.Helper()
	client := redis.NewClient(&redis.Options{Addr: px.Addr, ReadTimeout: 2 * time.Second, MaxRetries: 1})
	c.t.Cleanup(func() { client.Close() })
	o.Client, o.Prefix, o.Node = client, c.prefix, name
	return NewRedis(o)
}

// An alive node whose Redis replies come late (here 55–70 % of the TTL,
// harsher than 2–3 s with the default 15 s TTL) is never reaped: the other
// node's count stays, and nothing is reported gone.
func TestRedisSlowNodeIsNotReaped(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const ttl = 3 * time.Second
	var gone goneLog
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: ttl, NodeGone: gone.record}
	px := testkit.StartProxy(t, c.srv.Addr())
	a := c.node("a", opts)
	x := c.nodeVia("x", px, opts)
	run(t, a)
	run(t, x)
	// x's first renewal rewrites its counts (as after any restart): done
	// before the slow spell, which is about renewals.
	testkit.CheckFor(t, ttl, 10*time.Millisecond, func() error {
		x.localMu.Lock()
		defer x.localMu.Unlock()
		if x.needSync {
			return fmt.Errorf("x has not renewed yet")
		}
		return nil
	})
	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, x, "r", +1, Change{Online: 2})
	mustAdd(t, x, "r", +1, Change{Online: 3})

	px.DelayReplies(ttl*55/100, ttl*70/100)
	// Well past two TTLs: a node that did not renew would be reaped within one.
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if got := count(t, a, "r"); got != 3 {
			t.Fatalf("%v into the slow spell, a counts r = %d, want 3: x was taken for dead (reported gone: %+v)",
				3*ttl-time.Until(end), got, gone.snapshot())
		}
	}
	px.Heal()
	if ev := gone.snapshot(); len(ev) != 0 {
		t.Fatalf("reported gone: %+v", ev)
	}
}

// backLog records NodeBack calls.
type backLog struct {
	mu     sync.Mutex
	events map[string][]Summary
}

func (b *backLog) record(room string, s Summary) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.events == nil {
		b.events = map[string][]Summary{}
	}
	b.events[room] = append(b.events[room], s)
}

func (b *backLog) snapshot() map[string][]Summary {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]Summary, len(b.events))
	for k, v := range b.events {
		out[k] = append([]Summary(nil), v...)
	}
	return out
}

// A node reaped while alive (whatever the cause) counts its members again
// at its next renewal and reports them back, once, as the reaper reported
// them gone.
func TestRedisReapedNodeAnnouncesItsMembersBack(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const ttl = time.Second
	var gone goneLog
	var back backLog
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: ttl, NodeGone: gone.record, NodeBack: back.record}
	a := c.node("a", opts)
	x := c.node("x", opts)
	mustAdd(t, a, "r", +1, Change{Online: 1})
	mustAdd(t, x, "r", +1, Change{Online: 2})
	mustAdd(t, x, "r", +1, Change{Online: 3})
	mustAdd(t, x, "s", +1, Change{Online: 1})

	// x's life ends now as far as Redis knows, and a reaps it.
	ctx := context.Background()
	if err := a.client.ZAdd(ctx, a.nodesKey, redis.Z{Score: 0, Member: "x"}).Err(); err != nil {
		t.Fatal(err)
	}
	lost := make(chan lostRoom, 16)
	a.reap(ctx, lost)
	if len(lost) != 2 || count(t, a, "r") != 1 {
		t.Fatalf("forced reap: %d rooms reported, r = %d; want 2 rooms and r = 1", len(lost), count(t, a, "r"))
	}

	// x was alive all along: its next renewal brings its members back.
	run(t, x)
	testkit.CheckFor(t, 2*ttl, 20*time.Millisecond, countIs(a, "r", 3))
	testkit.CheckFor(t, 2*ttl, 20*time.Millisecond, countIs(a, "s", 1))
	want := map[string]Summary{"r": {Online: 3, Joined: 2}, "s": {Online: 1, Joined: 1}}
	testkit.CheckFor(t, 2*ttl, 20*time.Millisecond, func() error {
		if got := back.snapshot(); len(got) != len(want) {
			return fmt.Errorf("NodeBack calls %+v, want %+v", got, want)
		}
		return nil
	})
	// A few more renewals: nothing is reported back again.
	time.Sleep(ttl)
	got := back.snapshot()
	for room, w := range want {
		if len(got[room]) != 1 || got[room][0] != w {
			t.Errorf("NodeBack for %s: %+v, want once %+v", room, got[room], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("NodeBack calls %+v, want %+v", got, want)
	}
}
