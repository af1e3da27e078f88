package hub_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/testkit"
)

// access is a hub.Access from two lists of patterns; nil send: no limit.
type access struct {
	join, send protocol.Rooms
	sendAll    bool
}

func newAccess(t *testing.T, join, send []string) access {
	t.Helper()
	j, err := protocol.ParseRooms(join)
	if err != nil {
		t.Fatal(err)
	}
	a := access{join: j, sendAll: send == nil}
	if send != nil {
		if a.send, err = protocol.ParseRooms(send); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func (a access) MayJoin(room string) bool { return a.join.Match(room) }
func (a access) MaySend(room string) bool { return a.sendAll || a.send.Match(room) }

func (f *fixture) registerAs(user string, a hub.Access, from protocol.Resume) (*hub.Client, *testConn, event) {
	f.t.Helper()
	conn := &testConn{t: f.t}
	c, err := f.hub.Register(context.Background(), conn, user, a, from)
	if err != nil {
		f.t.Fatalf("Register(%q): %v", user, err)
	}
	ev := conn.take()
	if len(ev) == 0 || ev[0].Event != "welcome" {
		f.t.Fatalf("%s's first frames = %+v, want its welcome", user, ev)
	}
	return c, conn, ev[0]
}

func TestAccessJoinAndSend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	c, conn, _ := f.registerAs("alice", newAccess(t, []string{"team-42", "news", "support-*"}, []string{"team-42", "support-*"}), protocol.Resume{})

	for _, room := range []string{"team-42", "news", "support-7"} {
		f.join(c, room)
	}
	for _, room := range []string{"team-43", "support", "ops"} {
		wantCode(t, f.hub.Join(context.Background(), c, room, 0), protocol.ErrForbidden)
	}
	conn.take()
	if err := f.chat(c, "team-42", "hi"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.chat(c, "news", "hi"), protocol.ErrForbidden)  // reads, may not write
	wantCode(t, f.chat(c, "lobby", "hi"), protocol.ErrForbidden) // the send claim covers lobby too
	wantCode(t, f.chat(c, "ops", "hi"), protocol.ErrNotMember)   // not in it: that comes first

	// A room token's grant lets it join a room its access does not list.
	f.hub.Grant(c, "vip")
	f.join(c, "vip")
	wantCode(t, f.chat(c, "vip", "hi"), protocol.ErrForbidden) // send claim still applies
	f.leave(c, "vip")
	f.join(c, "vip") // the grant lasts for the connection

	// Lobby is always allowed, even with no room at all.
	d, _, _ := f.registerAs("dave", newAccess(t, []string{}, nil), protocol.Resume{})
	f.leave(d, "lobby")
	f.join(d, "lobby")
	if err := f.chat(d, "lobby", "hi"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.hub.Join(context.Background(), d, "team-42", 0), protocol.ErrForbidden)
}

// A resume that lists rooms the connection may not join rejoins only the
// others; the welcome names the refused ones, which are neither joined nor
// replayed nor reported missed.
func TestResumeChecksAccess(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	o, _ := f.register("owner")
	f.join(o, "private")
	f.join(o, "open")
	for i := range 3 {
		if err := f.chat(o, "private", "secret "+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	_, _, w := f.registerAs("owner", nil, protocol.Resume{}) // learn the epoch
	epoch := w.Epoch

	from := protocol.Resume{Epoch: epoch, Since: map[string]uint64{"lobby": 0, "private": 0, "open": 0}, Rooms: []string{"private", "open"}}
	c, conn, welcome := f.registerAs("mallory", newAccess(t, []string{"open"}, nil), from)
	if !slices.Equal(welcome.Forbidden, []string{"private"}) {
		t.Fatalf("welcome forbidden = %v, want [private]", welcome.Forbidden)
	}
	for _, e := range conn.take() {
		if e.Room == "private" {
			t.Fatalf("mallory got a frame of private: %+v", e)
		}
	}
	wantCode(t, f.hub.Leave(context.Background(), c, "private"), protocol.ErrNotMember)
	if err := f.hub.Leave(context.Background(), c, "open"); err != nil {
		t.Fatalf("open was not rejoined: %v", err)
	}
}

func TestWho(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{WhoLimit: 2})
	a, aConn := f.register("alice")
	b, _ := f.register("bob")
	b2, _ := f.register("bob") // a second connection: one user
	for _, c := range []*hub.Client{a, b, b2} {
		f.join(c, "ops")
	}
	aConn.take()
	if err := f.hub.Who(context.Background(), a, "ops"); err != nil {
		t.Fatal(err)
	}
	ev := aConn.take()
	if len(ev) != 1 || ev[0].Type != "who" || ev[0].Room != "ops" || ev[0].Online != 3 ||
		!slices.Equal(ev[0].Users, []string{"alice", "bob"}) || ev[0].Truncated {
		t.Fatalf("who = %+v", ev)
	}
	c, _ := f.register("carol")
	f.join(c, "ops")
	aConn.take()
	if err := f.hub.Who(context.Background(), a, "ops"); err != nil {
		t.Fatal(err)
	}
	if ev := aConn.take(); len(ev) != 1 || len(ev[0].Users) != 2 || !ev[0].Truncated || ev[0].Online != 4 {
		t.Fatalf("who past the limit = %+v", ev)
	}
	d, _ := f.register("dave")
	wantCode(t, f.hub.Who(context.Background(), d, "ops"), protocol.ErrNotMember)
}

func TestDisconnectAndRemove(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	a1, a1Conn := f.register("alice")
	a2, a2Conn := f.register("alice")
	b, bConn := f.register("bob")
	f.join(a1, "ops")
	f.join(b, "ops")
	_ = a2
	a1Conn.take()
	a2Conn.take()
	bConn.take()

	if err := f.hub.Remove(context.Background(), "alice", "ops", "be nice"); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if ev := a1Conn.all(); len(ev) != 1 {
			return fmt.Errorf("alice's frames = %+v", ev)
		}
		return nil
	})
	ev := a1Conn.take()
	if ev[0].Event != "leave" || ev[0].Room != "ops" || ev[0].Reason != "be nice" || !strings.Contains(string(ev[0].Data), "be nice") {
		t.Fatalf("alice's leave = %+v", ev[0])
	}
	testkit.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if m := memberships(bConn.all()); !slices.Equal(m, []membership{{"leave", "alice", "ops", 1}}) {
			return fmt.Errorf("bob saw %+v", m)
		}
		return nil
	})
	wantCode(t, f.hub.Leave(context.Background(), a1, "ops"), protocol.ErrNotMember)
	if ev := a2Conn.take(); len(ev) != 0 {
		t.Fatalf("alice's other connection, not in ops, got %+v", ev)
	}

	if err := f.hub.Disconnect(context.Background(), "alice", "banned"); err != nil {
		t.Fatal(err)
	}
	for _, conn := range []*testConn{a1Conn, a2Conn} {
		conn.mu.Lock()
		closes := slices.Clone(conn.closes)
		conn.mu.Unlock()
		if len(closes) != 1 || closes[0] != (closeCall{4000, "banned"}) {
			t.Fatalf("alice's closes = %+v, want 4000 banned", closes)
		}
	}
	bConn.mu.Lock()
	if len(bConn.closes) != 0 {
		t.Errorf("bob was closed: %+v", bConn.closes)
	}
	bConn.mu.Unlock()
	if err := f.hub.Disconnect(context.Background(), "alice", strings.Repeat("x", 124)); err == nil {
		t.Fatal("a reason past 123 bytes was accepted")
	}
	if err := f.hub.Disconnect(context.Background(), "bob", ""); err != nil {
		t.Fatal(err)
	}
	bConn.mu.Lock()
	defer bConn.mu.Unlock()
	if len(bConn.closes) != 1 || bConn.closes[0] != (closeCall{4000, "disconnected by the server"}) {
		t.Fatalf("bob's closes = %+v", bConn.closes)
	}
}
