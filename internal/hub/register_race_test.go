package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
)

// A removal (POST /api/rooms/{room}/remove) that arrives while a resume is
// still putting the client in its rooms is not lost: once Register is done
// the client is out of the room, told why, and the room's count and
// subscription are right. Register is paused after the client became
// visible to the API and before it was added to its resumed room.
func TestRemovalDuringResumeIsApplied(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	b, bConn := f.register("bob")
	f.join(b, "ops")
	bConn.take()

	g := newGate(t)
	hub.SetRegisterHook(f.hub, func(step string) {
		if step == hub.StepVisible {
			g.wait()
		}
	})
	removed := make(chan string, 4)
	hub.SetRemovedHook(f.hub, func(c *hub.Client, room string) { removed <- c.User() + "@" + room })

	aConn := &testConn{t: t}
	registered := make(chan *hub.Client, 1)
	go func() {
		c, err := f.hub.Register(context.Background(), aConn, "alice", nil, protocol.Resume{Rooms: []string{"ops"}})
		if err != nil {
			t.Errorf("Register: %v", err)
		}
		registered <- c
	}()
	g.waitArrival(t)
	if err := f.hub.Remove(context.Background(), "alice", "ops", "kicked"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-removed:
		if r != "alice@ops" {
			t.Fatalf("removal handled for %s, want alice@ops", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the removal was not handled within 5s")
	}
	g.release()
	var a *hub.Client
	select {
	case a = <-registered:
	case <-time.After(5 * time.Second):
		t.Fatal("Register did not return within 5s")
	}
	if a == nil {
		t.FailNow()
	}

	online := func(room string) int {
		t.Helper()
		m, err := f.hub.Members(context.Background(), room)
		if err != nil {
			t.Fatal(err)
		}
		return m.Online
	}
	var leave *event
	for _, e := range aConn.all() {
		if e.Event == "leave" && e.User == "alice" && e.Room == "ops" {
			leave = &e
		}
	}
	if leave == nil || leave.Reason != "kicked" {
		t.Errorf("alice's frames %+v: want her own leave of ops with reason kicked", memberships(aConn.all()))
	}
	if n := online("ops"); n != 1 {
		t.Errorf("ops counts %d after alice was removed, want 1 (bob)", n)
	}
	aConn.take()
	if err := f.chat(b, "ops", "after the removal"); err != nil {
		t.Fatal(err)
	}
	if err := f.chat(b, "lobby", "marker"); err != nil {
		t.Fatal(err)
	}
	if got := chats(aConn.take()); len(got) != 1 || got[0] != `bob@lobby:"marker"` {
		t.Errorf("alice, removed from ops, got %q; want only the lobby marker", got)
	}

	f.hub.Unregister(context.Background(), a)
	if n := online("ops"); n != 1 {
		t.Errorf("ops counts %d after alice left too, want 1 (bob)", n)
	}
	f.hub.Unregister(context.Background(), b)
	if n := online("ops"); n != 0 {
		t.Errorf("ops counts %d with nobody left, want 0", n)
	}
	if n := f.broker.subscriptions("room:ops"); n != 0 {
		t.Errorf("room:ops still subscribed %d times with nobody left", n)
	}
}

// The same for a Join: a removal that comes while the join makes its
// broker round trips is applied once it completes, not dropped.
func TestRemovalDuringJoinIsApplied(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	a, aConn := f.register("alice")
	removed := make(chan string, 4)
	hub.SetRemovedHook(f.hub, func(c *hub.Client, room string) { removed <- c.User() + "@" + room })
	g := newGate(t)
	f.counter.setOnAdd(func(room string, delta int) error {
		if room == "ops" && delta > 0 {
			g.wait()
		}
		return nil
	})
	joined := make(chan error, 1)
	go func() { joined <- f.hub.Join(context.Background(), a, "ops", 0) }()
	g.waitArrival(t)
	if err := f.hub.Remove(context.Background(), "alice", "ops", "kicked"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-removed:
	case <-time.After(5 * time.Second):
		t.Fatal("the removal was not handled within 5s")
	}
	f.counter.setOnAdd(nil)
	g.release()
	if err := <-joined; err != nil {
		t.Fatalf("Join: %v", err)
	}
	wantMemberships(t, "alice", aConn.take(),
		membership{"join", "alice", "ops", 1}, membership{"leave", "alice", "ops", 0})
	if m, _ := f.hub.Members(context.Background(), "ops"); m.Online != 0 {
		t.Errorf("ops counts %d after alice was removed, want 0", m.Online)
	}
	if n := f.broker.subscriptions("room:ops"); n != 0 {
		t.Errorf("room:ops still subscribed %d times with nobody in it", n)
	}
}
