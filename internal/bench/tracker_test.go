package bench

import (
	"testing"
	"time"
)

func TestTrackerCountsLossDuplicatesAndReordering(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		seqs                          []int
		sent                          int
		got, lost, dups, reorderedCnt int
	}{
		{"all in order", []int{0, 1, 2, 3, 4}, 5, 5, 0, 0, 0},
		{"one dropped", []int{0, 1, 3, 4}, 5, 4, 1, 0, 0},
		{"tail dropped", []int{0, 1, 2}, 5, 3, 2, 0, 0},
		{"duplicated", []int{0, 1, 1, 2, 3, 4}, 5, 5, 0, 1, 0},
		{"reordered", []int{0, 2, 1, 3, 4}, 5, 5, 0, 0, 1},
		{"nothing", nil, 3, 0, 3, 0, 0},
		{"beyond the word", seqRange(0, 130), 130, 130, 0, 0, 0},
		{"late extra not counted", []int{0, 1, 2, 7}, 3, 3, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			for _, s := range tc.seqs {
				tr.record(1, s)
			}
			got, lost, dups, re := tr.counts(map[int]int{1: tc.sent})
			if got != tc.got || lost != tc.lost || dups != tc.dups || re != tc.reorderedCnt {
				t.Fatalf("got %d lost %d dups %d reordered %d; want %d %d %d %d",
					got, lost, dups, re, tc.got, tc.lost, tc.dups, tc.reorderedCnt)
			}
		})
	}
}

func TestTrackerSeparatesPublishers(t *testing.T) {
	tr := newTracker()
	tr.record(1, 0)
	tr.record(2, 0)
	tr.record(2, 1)
	got, lost, _, _ := tr.counts(map[int]int{1: 2, 2: 2, 3: 1})
	if got != 3 || lost != 2 {
		t.Fatalf("got %d lost %d, want 3 and 2 (one from publisher 1, all of publisher 3)", got, lost)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	q := h.quantiles(0.5, 0.99)
	if q[0] < 49*time.Millisecond || q[0] > 51*time.Millisecond || q[1] < 98*time.Millisecond || q[1] > 100*time.Millisecond {
		t.Fatalf("p50 %v p99 %v of 1..100 ms", q[0], q[1])
	}
	if h := newHistogram(); h.quantiles(0.5)[0] != 0 {
		t.Fatal("empty histogram has a p50")
	}
}

func seqRange(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}
