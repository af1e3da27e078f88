package hub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/hub"
)

// A goodbye's rooms do not share one deadline: one room whose leave is
// slow (a busy Redis shard) must not leave the others' counts up. Each
// room gets the time the caller gave, and at most a few run at once.
func TestUnregisterGivesEachRoomItsOwnDeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, hub.Options{})
	a, _ := f.register("alice")
	rooms := []string{"slow"}
	for i := range 20 {
		rooms = append(rooms, fmt.Sprintf("r%d", i))
	}
	for _, r := range rooms {
		f.join(a, r)
	}

	var mu sync.Mutex
	running, most := 0, 0
	f.counter.setOnAdd(func(room string, delta int) error {
		if delta > 0 {
			return nil
		}
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		if room == "slow" {
			time.Sleep(300 * time.Millisecond) // past the deadline
		} else {
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	f.hub.Unregister(ctx, a)

	for _, r := range rooms[1:] {
		m, err := f.hub.Members(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if m.Online != 0 {
			t.Errorf("room %s counts %d after alice left, want 0: its leave waited behind another room's", r, m.Online)
		}
	}
	if most > 8 {
		t.Errorf("%d rooms' leaves ran at once, want at most 8", most)
	}
	for _, r := range rooms {
		if n := f.broker.subscriptions("room:" + r); n != 0 {
			t.Errorf("room:%s still subscribed %d times", r, n)
		}
	}
}
