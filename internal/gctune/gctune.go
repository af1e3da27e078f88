// Package gctune sets the garbage collector's GOGC from the size of the
// live heap, since relay's two kinds of load want opposite settings.
//
// A node with few connections serving many HTTP requests has a small live
// heap and a high allocation rate: at a low GOGC it collects constantly (at
// GOGC=50, GET /api/data served 56k req/s here; at 200, 81k). A node holding
// many idle connections has a large live heap of connection state and
// little garbage: there a high GOGC only lets garbage grow as large as all
// that state (10,000 idle connections: 10.9 KB each at GOGC=50, over 12 KB
// at 100).
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Policy: GOGC Small while the live heap is below Threshold, Large above.
type Policy struct {
	Small, Large int
	Threshold    uint64 // bytes of live heap
	Every        time.Duration
}

// Default is relay's policy.
var Default = Policy{Small: 200, Large: 50, Threshold: 64 << 20, Every: time.Second}

// Run applies p until ctx ends, then restores the GOGC it found.
func Run(ctx context.Context, p Policy) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := debug.SetGCPercent(p.Small)
	defer debug.SetGCPercent(current)
	current = p.Small
	t := time.NewTicker(p.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			continue
		}
		want := p.Small
		if sample[0].Value.Uint64() >= p.Threshold {
			want = p.Large
		}
		if want != current {
			debug.SetGCPercent(want)
			current = want
		}
	}
}
