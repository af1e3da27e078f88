package presence

import (
	"context"
	"sync"
	"testing"
)

func mustAdd(t *testing.T, c interface {
	Add(context.Context, string, string, int) (Change, error)
}, room string, delta int, want Change) {
	t.Helper()
	got, err := c.Add(context.Background(), room, "u", delta)
	if err != nil {
		t.Fatalf("Add(%q, %+d): %v", room, delta, err)
	}
	if got != want {
		t.Fatalf("Add(%q, %+d) = %+v, want %+v", room, delta, got, want)
	}
}

func mustClaim(t *testing.T, c interface {
	Claim(context.Context, string) (Summary, bool, error)
}, room string, want Summary, wantOK bool) {
	t.Helper()
	got, ok, err := c.Claim(context.Background(), room)
	if err != nil {
		t.Fatalf("Claim(%q): %v", room, err)
	}
	if got != want || ok != wantOK {
		t.Fatalf("Claim(%q) = %+v, %v; want %+v, %v", room, got, ok, want, wantOK)
	}
}

func TestLocalCounts(t *testing.T) {
	t.Parallel()
	l := NewLocal(2)
	mustAdd(t, l, "a", +1, Change{Online: 1})
	mustAdd(t, l, "a", +1, Change{Online: 2})
	mustAdd(t, l, "b", +1, Change{Online: 1}) // rooms are independent
	mustAdd(t, l, "a", -1, Change{Online: 1})
	mustAdd(t, l, "a", -1, Change{Online: 0})
	mustAdd(t, l, "b", -1, Change{Online: 0})
}

func TestLocalCoalescedAboveLimit(t *testing.T) {
	t.Parallel()
	l := NewLocal(2)
	mustAdd(t, l, "r", +1, Change{Online: 1})
	mustAdd(t, l, "r", +1, Change{Online: 2})                  // at the limit: not coalesced
	mustAdd(t, l, "r", +1, Change{Online: 3, Coalesced: true}) // joined 1
	mustAdd(t, l, "r", +1, Change{Online: 4, Coalesced: true}) // joined 2
	mustAdd(t, l, "r", -1, Change{Online: 3, Coalesced: true}) // left 1
	mustAdd(t, l, "r", -1, Change{Online: 2})                  // back at the limit: not coalesced
	mustAdd(t, l, "r", -1, Change{Online: 1})

	mustClaim(t, l, "r", Summary{Online: 1, Joined: 2, Left: 1}, true)
	// Claim resets the pending changes but keeps the count.
	mustClaim(t, l, "r", Summary{Online: 1}, true)
	mustAdd(t, l, "r", +1, Change{Online: 2})
	mustAdd(t, l, "r", +1, Change{Online: 3, Coalesced: true})
	mustClaim(t, l, "r", Summary{Online: 3, Joined: 1}, true)
}

func TestLocalClaimUnknownRoom(t *testing.T) {
	t.Parallel()
	l := NewLocal(0)
	mustClaim(t, l, "nobody", Summary{}, true)
	if len(l.rooms) != 0 {
		t.Fatalf("Claim of an unknown room created it: %v", l.rooms)
	}
}

func TestLocalForgetsEmptyRooms(t *testing.T) {
	t.Parallel()
	l := NewLocal(5)
	mustAdd(t, l, "r", +1, Change{Online: 1})
	mustAdd(t, l, "r", -1, Change{Online: 0})
	if len(l.rooms) != 0 {
		t.Fatalf("empty room kept without pending changes: %v", l.rooms)
	}

	// An empty room with pending changes is kept until they are claimed.
	l = NewLocal(0)
	mustAdd(t, l, "r", +1, Change{Online: 1, Coalesced: true})
	mustAdd(t, l, "r", -1, Change{Online: 0})
	if _, ok := l.rooms["r"]; !ok {
		t.Fatal("room with a pending join forgotten before its claim")
	}
	mustClaim(t, l, "r", Summary{Online: 0, Joined: 1}, true)
	if len(l.rooms) != 0 {
		t.Fatalf("empty room kept after its claim: %v", l.rooms)
	}
	mustClaim(t, l, "r", Summary{}, true)

	// The same when the pending join happened well before the room emptied.
	l = NewLocal(1)
	mustAdd(t, l, "r", +1, Change{Online: 1})
	mustAdd(t, l, "r", +1, Change{Online: 2, Coalesced: true})
	mustAdd(t, l, "r", -1, Change{Online: 1})
	mustAdd(t, l, "r", -1, Change{Online: 0})
	mustClaim(t, l, "r", Summary{Online: 0, Joined: 1}, true)
	if len(l.rooms) != 0 {
		t.Fatalf("empty room kept after its claim: %v", l.rooms)
	}
}

func TestLocalConcurrent(t *testing.T) {
	t.Parallel()
	const n = 50
	l := NewLocal(10)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := l.Add(context.Background(), "r", "u", +1); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, _, err := l.Claim(context.Background(), "r"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Whatever the interleaving, the count is exact.
	got, ok, err := l.Claim(context.Background(), "r")
	if err != nil || !ok || got.Online != n {
		t.Fatalf("Claim = %+v, %v, %v; want Online %d", got, ok, err, n)
	}
	for range n {
		wg.Go(func() {
			if _, err := l.Add(context.Background(), "r", "u", -1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	l.Claim(context.Background(), "r")
	if len(l.rooms) != 0 {
		t.Fatalf("rooms after everyone left and the last claim: %v", l.rooms)
	}
}

// A claim given back is announced by the next claim, with what came since.
func TestLocalUnclaim(t *testing.T) {
	t.Parallel()
	l := NewLocal(1)
	mustAdd(t, l, "r", +1, Change{Online: 1})
	mustAdd(t, l, "r", +1, Change{Online: 2, Coalesced: true})
	mustAdd(t, l, "r", -1, Change{Online: 1})
	mustClaim(t, l, "r", Summary{Online: 1, Joined: 1}, true)
	if err := l.Unclaim(context.Background(), "r", Summary{Online: 1, Joined: 1}); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, l, "r", +1, Change{Online: 2, Coalesced: true})
	mustClaim(t, l, "r", Summary{Online: 2, Joined: 2}, true)

	// Even when the room emptied after the claim.
	mustAdd(t, l, "e", +1, Change{Online: 1})
	mustAdd(t, l, "e", +1, Change{Online: 2, Coalesced: true})
	mustAdd(t, l, "e", -1, Change{Online: 1})
	mustAdd(t, l, "e", -1, Change{Online: 0})
	mustClaim(t, l, "e", Summary{Joined: 1}, true)
	if err := l.Unclaim(context.Background(), "e", Summary{Joined: 1}); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, l, "e", Summary{Joined: 1}, true)
	mustClaim(t, l, "e", Summary{}, true)
}
