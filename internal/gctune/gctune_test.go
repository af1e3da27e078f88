package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// The policy follows the live heap both ways and restores GOGC on exit.
func TestRunFollowsLiveHeap(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p := Policy{Small: 300, Large: 30, Threshold: 32 << 20, Every: 10 * time.Millisecond}
	go func() { Run(ctx, p); close(done) }()

	gogc := func() int {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return int(s[0].Value.Uint64())
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for gogc() != want {
			if time.Now().After(deadline) {
				t.Fatalf("GOGC = %d, want %d", gogc(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(300)
	live := make([][]byte, 0, 64)
	for range 64 {
		live = append(live, make([]byte, 1<<20)) // 64 MiB that stays live
	}
	waitFor(30)
	live = nil
	_ = live
	deadline := time.Now().Add(5 * time.Second)
	for gogc() != 300 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d after the heap shrank, want 300", gogc())
		}
		debug.FreeOSMemory() // a collection finds the heap small again
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := gogc(); got != 100 {
		t.Fatalf("GOGC after Run = %d, want the 100 it found", got)
	}
}
