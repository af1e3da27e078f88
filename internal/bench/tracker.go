package bench

import (
	"math/bits"
	"sync"
	"time"
)

// tracker accounts for what one receiver got from each publisher: every
// message carries its publisher and a sequence number starting at 0, so a
// gap is a loss, a number seen twice a duplicate, and one lower than the
// highest seen so far arrived out of order.
type tracker struct {
	mu   sync.Mutex
	pubs map[int]*seqSet
}

type seqSet struct {
	seen      []uint64 // bit per sequence number
	max       int      // highest seen, -1 before any
	unique    int
	dups      int
	reordered int
}

func newTracker() *tracker { return &tracker{pubs: make(map[int]*seqSet)} }

// record notes message seq from publisher pub.
func (t *tracker) record(pub, seq int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.pubs[pub]
	if s == nil {
		s = &seqSet{max: -1}
		t.pubs[pub] = s
	}
	word, bit := seq/64, uint(seq%64)
	for len(s.seen) <= word {
		s.seen = append(s.seen, 0)
	}
	if s.seen[word]&(1<<bit) != 0 {
		s.dups++
		return
	}
	s.seen[word] |= 1 << bit
	s.unique++
	if seq < s.max {
		s.reordered++
	} else {
		s.max = seq
	}
}

// counts returns, given how many messages each publisher sent (expected),
// the receiver's unique deliveries, losses, duplicates and reorderings.
func (t *tracker) counts(expected map[int]int) (got, lost, dups, reordered int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pub, n := range expected {
		s := t.pubs[pub]
		if s == nil {
			lost += n
			continue
		}
		inRange := 0
		for w, word := range s.seen {
			if w*64 >= n {
				break
			}
			if rem := n - w*64; rem < 64 {
				word &= (1 << uint(rem)) - 1
			}
			inRange += bits.OnesCount64(word)
		}
		got += inRange
		lost += n - inRange
		dups += s.dups
		reordered += s.reordered
	}
	return got, lost, dups, reordered
}

// histogram records latencies in 50 µs buckets up to a minute; enough
// resolution for p50/p99 of a messaging service, in fixed memory.
type histogram struct {
	mu      sync.Mutex
	buckets []uint32
	n       int
	// The last second's latencies, coarser, for the report's charts.
	win  []uint32
	winN int
}

const winWidth = time.Millisecond

const bucketWidth = 50 * time.Microsecond

func newHistogram() *histogram {
	return &histogram{buckets: make([]uint32, int(time.Minute/bucketWidth)+1), win: make([]uint32, int(time.Minute/winWidth)+1)}
}

func (h *histogram) add(d time.Duration) {
	i := int(d / bucketWidth)
	if i < 0 {
		i = 0
	}
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	w := min(max(int(d/winWidth), 0), len(h.win)-1)
	h.mu.Lock()
	h.buckets[i]++
	h.n++
	h.win[w]++
	h.winN++
	h.mu.Unlock()
}

// window returns the quantiles qs of what was added since the last call,
// and starts a new window.
func (h *histogram) window(qs ...float64) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]time.Duration, len(qs))
	seen, q := 0, 0
	for i, c := range h.win {
		seen += int(c)
		for h.winN > 0 && q < len(qs) && float64(seen) >= qs[q]*float64(h.winN) {
			out[q] = time.Duration(i+1) * winWidth
			q++
		}
	}
	clear(h.win)
	h.winN = 0
	return out
}

// quantiles returns the latencies below which the fractions qs of samples
// fall (0 with no samples).
func (h *histogram) quantiles(qs ...float64) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]time.Duration, len(qs))
	if h.n == 0 {
		return out
	}
	seen, q := 0, 0
	for i, c := range h.buckets {
		seen += int(c)
		for q < len(qs) && float64(seen) >= qs[q]*float64(h.n) {
			out[q] = time.Duration(i+1) * bucketWidth
			q++
		}
		if q == len(qs) {
			break
		}
	}
	return out
}

func (h *histogram) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
