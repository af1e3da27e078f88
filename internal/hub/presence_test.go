package hub_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/testkit"
)

// In a room over the presence limit nobody hears of joins and leaves one by
// one: each member hears only its own, and everyone gets one presence event
// per interval with how many joined and left since the last.
func TestBigRoomPresenceIsBatched(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{PresenceLimit: 2, PresenceInterval: 10 * time.Millisecond})
	// While the claim is shut (another node holds it), the changes wait:
	// the test decides which interval they are announced in.
	f.counter.setClaimShut(true)
	a, aConn := f.register("a")
	b, bConn := f.register("b")
	c, cConn := f.register("c")
	d, dConn := f.register("d")
	for _, conn := range []*testConn{aConn, bConn, cConn, dConn} {
		conn.take()
	}

	f.join(a, "big")
	f.join(b, "big") // at the limit: announced
	f.join(c, "big") // over it: batched
	f.join(d, "big")
	f.leave(d, "big")
	wantMemberships(t, "a", aConn.take(), membership{"join", "a", "big", 1}, membership{"join", "b", "big", 2})
	wantMemberships(t, "b", bConn.take(), membership{"join", "b", "big", 2})
	wantMemberships(t, "c", cConn.take(), membership{"join", "c", "big", 3})
	wantMemberships(t, "d", dConn.take(), membership{"join", "d", "big", 4}, membership{"leave", "d", "big", 3})

	f.counter.setClaimShut(false)
	want := event{Type: "system", Event: "presence", Room: "big", Online: 3, Joined: 2, Left: 1}
	waitPresence(t, map[string]*testConn{"a": aConn, "b": bConn, "c": cConn}, want)
	if p := presenceEvents(dConn.take(), "big"); len(p) != 0 {
		t.Fatalf("d, who left, got %+v", p)
	}

	// The next event carries only what came since.
	e, eConn := f.register("e")
	f.join(e, "big")
	wantMemberships(t, "e", eConn.take(), membership{"join", "e", "big", 4})
	want = event{Type: "system", Event: "presence", Room: "big", Online: 4, Joined: 1}
	waitPresence(t, map[string]*testConn{"a": aConn, "b": bConn, "c": cConn, "e": eConn}, want)
}

// waitPresence waits until every conn has got a presence event for
// want.Room, then checks it got exactly one, equal to want, and no join or
// leave in the room. (The lobby is over the limit too, and has its own.)
func waitPresence(t *testing.T, conns map[string]*testConn, want event) {
	t.Helper()
	for name, conn := range conns {
		testkit.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if p := presenceEvents(conn.all(), want.Room); len(p) == 0 {
				return fmt.Errorf("%s got no presence event", name)
			}
			return nil
		})
		ev := conn.take()
		p := presenceEvents(ev, want.Room)
		if len(p) != 1 {
			t.Fatalf("%s got %d presence events, want 1: %+v", name, len(p), p)
		}
		got := p[0]
		if got.Type != want.Type || got.Room != want.Room || got.Online != want.Online ||
			got.Joined != want.Joined || got.Left != want.Left {
			t.Fatalf("%s got %+v, want %+v", name, got, want)
		}
		for _, m := range memberships(ev) {
			if m.room == want.Room {
				t.Fatalf("%s got %+v in a batched room", name, m)
			}
		}
	}
}

// A dead node's members are announced in one presence event.
func TestPresenceLost(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	a, aConn := f.register("a")
	f.join(a, "r")
	aConn.take()
	f.hub.PresenceLost("r", presence.Summary{Online: 1, Left: 7})
	p := presenceEvents(aConn.take(), "r")
	if len(p) != 1 || p[0].Online != 1 || p[0].Left != 7 || p[0].Joined != 0 {
		t.Fatalf("presence events %+v, want one with online 1, left 7", p)
	}
}

// A presence publish that fails, or is slow, loses no summary: the failed
// room's changes are announced next interval, and the rooms after it have
// their own deadline.
func TestPresenceSurvivesASlowPublish(t *testing.T) {
	t.Parallel()
	const interval = 10 * time.Millisecond
	f := newFixture(t, hub.Options{PresenceLimit: 1, PresenceInterval: interval})
	f.counter.setClaimShut(true)
	a, aConn := f.register("a")
	b, bConn := f.register("b")
	rooms := []string{"r1", "r2", "r3"}
	for _, room := range rooms {
		f.join(a, room)
		f.join(b, room) // over the limit: batched
	}
	aConn.take()
	bConn.take()

	// The first presence publish, whichever room it is for, takes three
	// intervals and fails; the rest go through.
	var once sync.Once
	f.broker.setHooks(nil, func(topic string) error {
		if !strings.HasPrefix(topic, "room:r") {
			return nil
		}
		var err error
		once.Do(func() {
			time.Sleep(3 * interval)
			err = errBroker
		})
		return err
	})
	f.counter.setClaimShut(false)
	for name, conn := range map[string]*testConn{"a": aConn, "b": bConn} {
		// Wait for every room's event, then check each came once.
		testkit.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			ev := conn.all()
			for _, room := range rooms {
				if len(presenceEvents(ev, room)) == 0 {
					return fmt.Errorf("%s got no presence event for %s", name, room)
				}
			}
			return nil
		})
		ev := conn.take()
		for _, room := range rooms {
			p := presenceEvents(ev, room)
			want := event{Type: "system", Event: "presence", Room: room, Online: 2, Joined: 1}
			if len(p) != 1 || p[0].Online != want.Online || p[0].Joined != want.Joined || p[0].Left != want.Left {
				t.Fatalf("%s got %+v for %s, want one %+v", name, p, room, want)
			}
		}
	}
}

// A join counted while its room's changes are being claimed is announced
// in the next presence event, not forgotten.
func TestPresenceCountedDuringAClaimIsAnnounced(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{PresenceLimit: 2, PresenceInterval: 10 * time.Millisecond})
	f.counter.setClaimShut(true)
	a, aConn := f.register("a")
	b, bConn := f.register("b")
	c, cConn := f.register("c")
	f.join(a, "big")
	f.join(b, "big")
	f.join(c, "big") // over the limit: batched
	for _, conn := range []*testConn{aConn, bConn, cConn} {
		conn.take()
	}

	// Hold the first claim of big after it has taken c's join, and count
	// d's join meanwhile.
	g := newGate(t)
	var once sync.Once
	f.counter.setOnClaimed(func(room string) {
		if room == "big" {
			once.Do(g.wait)
		}
	})
	f.counter.setClaimShut(false)
	g.waitArrival(t)
	d, dConn := f.register("d")
	f.join(d, "big")
	wantMemberships(t, "d", dConn.take(), membership{"join", "d", "big", 4})
	f.counter.setClaimShut(true) // the next claim waits for the test
	g.release()
	want := event{Type: "system", Event: "presence", Room: "big", Online: 3, Joined: 1}
	// d was a member when it was published.
	waitPresence(t, map[string]*testConn{"a": aConn, "b": bConn, "c": cConn, "d": dConn}, want)

	f.counter.setClaimShut(false)
	want = event{Type: "system", Event: "presence", Room: "big", Online: 4, Joined: 1}
	waitPresence(t, map[string]*testConn{"a": aConn, "b": bConn, "c": cConn, "d": dConn}, want)
}
