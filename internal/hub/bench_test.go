package hub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
)

// queueConn is a bounded in-memory queue standing in for a socket, so the
// benchmark measures the hub's fan-out alone: look-ups, locking and
// queueing, per receiver. wsconn has its own benchmarks for the writes.
type queueConn struct {
	mu sync.Mutex
	q  [][]byte
}

func (c *queueConn) Send(f []byte) bool {
	c.mu.Lock()
	if len(c.q) == cap(c.q) && cap(c.q) > 0 {
		c.q = c.q[:0] // a writer drained it
	}
	c.q = append(c.q, f)
	c.mu.Unlock()
	return true
}

func (c *queueConn) CloseWith(uint16, string, time.Duration) {}

func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("receivers=%d", n), func(b *testing.B) {
			ctx := context.Background()
			br := broker.NewMemory()
			defer br.Close()
			h := hub.New(hub.Options{Node: "bench", PresenceLimit: 100, PresenceInterval: time.Hour}, br)
			if err := h.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			for i := range n {
				c := &queueConn{q: make([][]byte, 0, 64)}
				if _, err := h.Register(ctx, c, fmt.Sprintf("u%d", i), nil, protocol.Resume{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if _, _, err := h.Notify(ctx, hub.Target{Room: "lobby"}, "hello, everyone in the lobby"); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n*b.N), "ns/delivery")
		})
	}
}
