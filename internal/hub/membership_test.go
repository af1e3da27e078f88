package hub_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/testkit"
)

func wantCode(t *testing.T, err error, code protocol.ErrorCode) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
}

func wantMemberships(t *testing.T, who string, got []event, want ...membership) {
	t.Helper()
	if m := memberships(got); !slices.Equal(m, want) {
		t.Fatalf("%s saw %+v, want %+v", who, m, want)
	}
}

// A client gets its own join and leave once, directly; the room's other
// members get them through the broker. The broker copy is not delivered
// back to the client that joined (the except id).
func TestJoinAndLeaveAreSeenOnceByEveryMember(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	a, aConn := f.register("alice")
	b, bConn := f.register("bob")
	wantMemberships(t, "alice", aConn.take(), membership{"join", "bob", "lobby", 2})

	f.join(a, "r")
	wantMemberships(t, "alice", aConn.take(), membership{"join", "alice", "r", 1})
	wantMemberships(t, "bob", bConn.take()) // not in r

	f.join(b, "r")
	wantMemberships(t, "bob", bConn.take(), membership{"join", "bob", "r", 2})
	wantMemberships(t, "alice", aConn.take(), membership{"join", "bob", "r", 2})

	f.leave(b, "r")
	wantMemberships(t, "bob", bConn.take(), membership{"leave", "bob", "r", 1})
	wantMemberships(t, "alice", aConn.take(), membership{"leave", "bob", "r", 1})

	f.hub.Unregister(context.Background(), a)
	wantMemberships(t, "bob", bConn.take(), membership{"leave", "alice", "lobby", 1})
	wantMemberships(t, "alice", aConn.take()) // gone: hears nothing, not even its own leave
}

func TestJoinAndLeaveMistakes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	a, _ := f.register("alice")
	ctx := context.Background()
	wantCode(t, f.hub.Join(ctx, a, "lobby", 0), protocol.ErrAlreadyMember)
	wantCode(t, f.hub.Leave(ctx, a, "r"), protocol.ErrNotMember)
	wantCode(t, f.chat(a, "r", "hi"), protocol.ErrNotMember)
	for i := 1; i < protocol.MaxRooms; i++ { // lobby is the first
		f.join(a, fmt.Sprintf("r%d", i))
	}
	wantCode(t, f.hub.Join(ctx, a, "one-too-many", 0), protocol.ErrTooManyRooms)
}

// The node subscribes to a topic while something local needs it, once:
// a room's while it has local members, a user's while the user has
// connections.
func TestTopicReferenceCounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	subs := func(topic string, want int) {
		t.Helper()
		if got := f.broker.subscriptions(topic); got != want {
			t.Fatalf("%s subscribed %d times, want %d", topic, got, want)
		}
	}
	a, _ := f.register("alice")
	a2, _ := f.register("alice") // a second tab
	b, _ := f.register("bob")
	subs("user:alice", 1)
	subs("lobby", 0)
	subs("room:lobby", 1)

	subs("room:r", 0)
	f.join(a, "r")
	subs("room:r", 1)
	f.join(b, "r")
	subs("room:r", 1)
	f.leave(a, "r")
	subs("room:r", 1)
	f.leave(b, "r")
	subs("room:r", 0)

	ctx := context.Background()
	f.hub.Unregister(ctx, a)
	subs("user:alice", 1)
	f.hub.Unregister(ctx, a2)
	subs("user:alice", 0)
	f.hub.Unregister(ctx, b)
	subs("room:lobby", 0)
	subs("user:bob", 0)
}

// Joins and leaves racing on one room keep it subscribed exactly while it
// has members, and every member gets the room's messages.
func TestTopicReferencesUnderConcurrentJoinsAndLeaves(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{PresenceLimit: 1000})
	const n, rounds = 16, 20
	clients := make([]*hub.Client, n)
	conns := make([]*testConn, n)
	for i := range clients {
		clients[i], conns[i] = f.register(fmt.Sprintf("u%d", i))
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for range rounds {
				f.join(c, "r")
				f.leave(c, "r")
			}
			if i%2 == 0 {
				f.join(c, "r") // the even ones stay
			}
		})
	}
	wg.Wait()
	if got := f.broker.subscriptions("room:r"); got != 1 {
		t.Fatalf("room:r subscribed %d times with members in it, want 1", got)
	}
	for _, conn := range conns {
		conn.take()
	}
	if err := f.chat(clients[0], "r", "hi"); err != nil {
		t.Fatal(err)
	}
	for i, conn := range conns {
		want := []string(nil)
		if i%2 == 0 {
			want = []string{`u0@r:"hi"`}
		}
		if got := chats(conn.take()); !slices.Equal(got, want) {
			t.Errorf("u%d got %q, want %q", i, got, want)
		}
	}
	for i := 0; i < n; i += 2 {
		f.leave(clients[i], "r")
	}
	if got := f.broker.subscriptions("room:r"); got != 0 {
		t.Fatalf("room:r subscribed %d times after everyone left, want 0", got)
	}
}

// A join the broker cannot subscribe, or the counter cannot count, is
// refused and leaves nothing behind: the client is not in the room (and may
// join it later), the topic is not held and the count is unchanged.
func TestRefusedJoinLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fail func(f *fixture)
	}{
		{"subscribe fails", func(f *fixture) {
			f.broker.setHooks(func(topic string) error {
				if topic == "room:r" {
					return errBroker
				}
				return nil
			}, nil)
		}},
		{"count fails", func(f *fixture) {
			f.counter.setOnAdd(func(room string, delta int) error {
				if room == "r" && delta > 0 {
					return errBroker
				}
				return nil
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, hub.Options{})
			a, aConn := f.register("alice")

			tc.fail(f)
			wantCode(t, f.hub.Join(context.Background(), a, "r", 0), protocol.ErrUnavailable)
			wantMemberships(t, "alice", aConn.take())
			wantCode(t, f.chat(a, "r", "hi"), protocol.ErrNotMember)
			wantCode(t, f.hub.Leave(context.Background(), a, "r"), protocol.ErrNotMember)
			if got := f.broker.subscriptions("room:r"); got != 0 {
				t.Fatalf("room:r subscribed %d times after the refused join, want 0", got)
			}

			f.broker.setHooks(nil, nil)
			f.counter.setOnAdd(nil)
			f.join(a, "r") // the slot was given back
			wantMemberships(t, "alice", aConn.take(), membership{"join", "alice", "r", 1})
		})
	}
}

// Fault: Join reserved the room, made its broker round trips, then added the
// member without looking whether the client had been unregistered meanwhile.
// The dead client stayed in the room for good: the room's count one too
// high, every message to the room queued to a closed connection.
func TestUnregisterDuringJoinLeavesNoDeadMember(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		hold func(f *fixture, g *gate)
	}{
		{"while subscribing", func(f *fixture, g *gate) {
			f.broker.setHooks(func(topic string) error {
				if topic == "room:r" {
					g.wait()
				}
				return nil
			}, nil)
		}},
		{"while counting", func(f *fixture, g *gate) {
			f.counter.setOnAdd(func(room string, delta int) error {
				if room == "r" && delta > 0 {
					g.wait()
				}
				return nil
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, hub.Options{})
			b, bConn := f.register("bob")
			a, aConn := f.register("alice")
			g := newGate(t)
			tc.hold(f, g)
			joined := make(chan struct{})
			go func() {
				defer close(joined)
				f.hub.Join(context.Background(), a, "r", 0)
			}()
			g.waitArrival(t)
			// The connection closes mid-join. Unregister may wait for the
			// join's broker call (the topic's lock), so it runs aside; bob
			// hearing alice leave the lobby shows it has begun.
			unregistered := make(chan struct{})
			go func() {
				defer close(unregistered)
				f.hub.Unregister(context.Background(), a)
			}()
			testkit.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
				for _, m := range memberships(bConn.all()) {
					if m == (membership{"leave", "alice", "lobby", 1}) {
						return nil
					}
				}
				return fmt.Errorf("bob saw %+v, not alice leaving the lobby", memberships(bConn.all()))
			})
			f.broker.setHooks(nil, nil)
			f.counter.setOnAdd(nil)
			g.release()
			for _, ch := range []chan struct{}{joined, unregistered} {
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					t.Fatal("Join or Unregister did not return")
				}
			}
			aConn.take()
			bConn.take()

			f.join(b, "r")
			wantMemberships(t, "bob", bConn.take(), membership{"join", "bob", "r", 1})
			if err := f.chat(b, "r", "anyone?"); err != nil {
				t.Fatal(err)
			}
			if ev := aConn.take(); len(ev) != 0 {
				t.Fatalf("alice, unregistered, was sent %+v", ev)
			}
			f.leave(b, "r")
			if got := f.broker.subscriptions("room:r"); got != 0 {
				t.Fatalf("room:r subscribed %d times after the room emptied, want 0", got)
			}
		})
	}
}

// Broker failures reach the client as "unavailable" and the log with their
// cause.
func TestBrokerFailuresAreLoggedWithTheirCause(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	a, _ := f.register("alice")

	f.broker.setHooks(func(topic string) error {
		if topic == "room:r" {
			return errors.New("subscribe: connection refused")
		}
		return nil
	}, nil)
	wantCode(t, f.hub.Join(context.Background(), a, "r", 0), protocol.ErrUnavailable)

	f.broker.setHooks(nil, func(topic string) error { return errors.New("publish: i/o timeout") })
	wantCode(t, f.chat(a, "lobby", "hi"), protocol.ErrUnavailable)

	log := f.log.String()
	for _, want := range []string{
		`level=WARN msg="join refused: broker unavailable" user=alice room=r err="subscribe: connection refused"`,
		`level=WARN msg="message not sent: broker unavailable" user=alice room=lobby err="publish: i/o timeout"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s\nlog:\n%s", want, log)
		}
	}
}

// A frame a connection refuses (it is closing, or too slow) is counted as
// dropped and does not hold up the others.
func TestRefusedSendIsCountedDropped(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	f := newFixture(t, hub.Options{Observer: obs})
	a, aConn := f.register("alice")
	_, bConn := f.register("bob")
	_, cConn := f.register("carol")
	aConn.take()
	bConn.take()
	cConn.take()
	bConn.setRefuse(true)
	d0, x0 := obs.snapshot()
	if err := f.chat(a, "lobby", "hi"); err != nil {
		t.Fatal(err)
	}
	d1, x1 := obs.snapshot()
	if d, x := d1-d0, x1-x0; d != 2 || x != 1 {
		t.Fatalf("delivered %d, dropped %d; want 2 and 1", d, x)
	}
	if len(chats(aConn.take())) != 1 || len(chats(cConn.take())) != 1 {
		t.Fatal("alice and carol did not get the message")
	}
}

func TestCloseAllClosesEveryClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	_, aConn := f.register("alice")
	_, bConn := f.register("bob")
	f.hub.CloseAll(1012, "service restart", time.Second)
	for _, c := range []*testConn{aConn, bConn} {
		c.mu.Lock()
		got := slices.Clone(c.closes)
		c.mu.Unlock()
		if want := []closeCall{{1012, "service restart"}}; !slices.Equal(got, want) {
			t.Errorf("CloseWith calls %+v, want %+v", got, want)
		}
	}
}

type countingObserver struct {
	mu                 sync.Mutex
	delivered, dropped int
}

func (o *countingObserver) Delivered(n int) {
	o.mu.Lock()
	o.delivered += n
	o.mu.Unlock()
}

func (o *countingObserver) Dropped(_ string, n int) {
	o.mu.Lock()
	o.dropped += n
	o.mu.Unlock()
}

func (o *countingObserver) snapshot() (delivered, dropped int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.delivered, o.dropped
}
