package presence

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/relay/relay/internal/testkit"
)

// Fault: reap called NodeGone synchronously, inside the renewal loop. A dead
// node with many rooms and a slow callback (the hub publishes, up to 5s a
// room) held the loop past this node's own TTL, and it dropped out of the
// counts too.
func TestRedisSlowNodeGoneDoesNotStopRenewal(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const ttl = time.Second
	arrived := make(chan string, 16)
	release := make(chan struct{})
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: ttl, NodeGone: func(room string, _ Summary) {
		arrived <- room
		<-release // a callback that never finishes while the test looks
	}}
	a := c.node("a", opts)
	x := c.node("x", opts)
	run(t, a)
	t.Cleanup(func() { close(release) }) // runs before run's stop: Cleanups are LIFO

	mustAdd(t, a, "r", +1, Change{Online: 1})
	for i := range 3 {
		mustAdd(t, x, fmt.Sprintf("x%d", i), +1, Change{Online: 1})
	}
	// x never renews: a reaps it after its TTL and reports its rooms.
	select {
	case <-arrived:
	case <-time.After(5 * ttl):
		t.Fatal("NodeGone not called for the dead node")
	}
	ctx := context.Background()
	score := func() float64 {
		s, err := a.client.ZScore(ctx, a.nodesKey, "a").Result()
		if err != nil {
			t.Fatalf("a's expiry: %v", err)
		}
		return s
	}
	before := score()
	testkit.CheckFor(t, 2*ttl, 20*time.Millisecond, func() error {
		if score() <= before {
			return errors.New("a did not renew while a NodeGone callback was running")
		}
		return nil
	})
	testkit.CheckFor(t, time.Second, 20*time.Millisecond, countIs(a, "r", 1))
}

// Fault: rewrite took the resync lock with no timeout. It waits for the Adds
// in flight, and while it waits every new Add (a join) queues behind it: one
// slow Add held up every join on the node, for as long as it took.
func TestRedisRewriteDoesNotHoldUpJoins(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const ttl = 2 * time.Second
	a := c.node("a", RedisOptions{Limit: 100, Interval: time.Second, TTL: ttl})
	ctx := context.Background()
	if !a.renew(ctx) {
		t.Fatal("first renew failed")
	}
	a.markSync() // as after a failed Add: the next renew rewrites

	a.resync.RLock() // an Add stuck in its round trip
	stuck := true
	unstick := func() {
		if stuck {
			stuck = false
			a.resync.RUnlock()
		}
	}
	defer unstick()
	renewed := make(chan bool, 1)
	go func() { renewed <- a.renew(ctx) }()
	time.Sleep(50 * time.Millisecond) // let renew reach rewrite (ordering, not an assertion)

	added := make(chan error, 1)
	go func() {
		_, err := a.Add(ctx, "r", "u", +1)
		added <- err
	}()
	select {
	case err := <-added:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("a join waited behind the rewrite")
	}
	select {
	case ok := <-renewed:
		if ok {
			t.Fatal("renew rewrote the counts while an Add was in flight")
		}
	case <-time.After(ttl):
		t.Fatal("rewrite still waiting for the Add in flight after the renew's time was up")
	}
	unstick()
	if !a.renew(ctx) {
		t.Fatal("renew after the Add finished failed")
	}
	if got := count(t, a, "r"); got != 1 {
		t.Fatalf("r = %d, want 1", got)
	}
}
