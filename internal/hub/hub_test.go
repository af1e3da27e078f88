package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
)

// Fan-out must not allocate per receiver: a message to 2,000 members costs
// the same allocations as one to 20.
func TestFanoutAllocationsDoNotGrowWithReceivers(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	allocs := func(n int) float64 {
		ctx := context.Background()
		br := broker.NewMemory()
		defer br.Close()
		h := hub.New(hub.Options{Node: "allocs", PresenceLimit: 10, PresenceInterval: time.Hour}, br)
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		for i := range n {
			if _, err := h.Register(ctx, &queueConn{q: make([][]byte, 0, 8)}, fmt.Sprintf("u%d", i), nil, protocol.Resume{}); err != nil {
				t.Fatal(err)
			}
		}
		return testing.AllocsPerRun(100, func() {
			if _, _, err := h.Notify(ctx, hub.Target{Room: "lobby"}, "hi"); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := allocs(20), allocs(2000)
	if large > small {
		t.Fatalf("allocations per message: %v for 20 receivers, %v for 2000: fan-out allocates per receiver", small, large)
	}
}
