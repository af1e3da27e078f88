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

// Policy: GOGC Small while live memory (live heap and goroutine stacks)
// is below Threshold, Large once it reaches it, and Small again only below
// half of it, so that a node near the line does not flip back and forth.
type Policy struct {
	Small, Large int
	Threshold    uint64 // bytes of live heap and stacks
	Every        time.Duration
}

// Default is relay's policy. 32 MiB is about 3,000 connections: well
// above what an HTTP-heavy node holds, well below a connection-heavy one.
var Default = Policy{Small: 200, Large: 50, Threshold: 32 << 20, Every: time.Second}

// Run applies p until ctx ends, then restores the GOGC it found.
func Run(ctx context.Context, p Policy) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
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
		if sample[0].Value.Kind() != metrics.KindUint64 || sample[1].Value.Kind() != metrics.KindUint64 {
			continue
		}
		live := sample[0].Value.Uint64() + sample[1].Value.Uint64()
		want := current
		switch {
		case live >= p.Threshold:
			want = p.Large
		case live < p.Threshold/2:
			want = p.Small
		}
		if want != current {
			debug.SetGCPercent(want)
			current = want
		}
	}
}
