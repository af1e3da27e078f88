package broker

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// memHistory is the in-process broker's streams: a position counter per
// topic and its last entries, kept while HistoryOptions allow. The epoch is
// new with every process: a restarted node has lost its history. A stream
// with no entries left, unused for StreamTTL, is forgotten; one created
// again starts at floor, past every position given in this epoch.
//
// Lock order: mu, then a memStream's mu.
type memHistory struct {
	opts  HistoryOptions
	epoch string

	mu      sync.Mutex
	streams map[string]*memStream
	floor   uint64 // the highest position a forgotten stream had reached

	stop chan struct{} // ends the sweeper
	done chan struct{}
}

type memStream struct {
	mu      sync.Mutex // held from assigning a position to delivering it
	seq     uint64
	entries []memEntry // oldest first, at most opts.Size
	used    time.Time  // last published to or read
	gone    bool       // forgotten: whoever holds it must look the topic up again
}

type memEntry struct {
	seq  uint64
	at   time.Time
	data []byte
}

func newMemHistory(opts HistoryOptions) *memHistory {
	var r [8]byte
	_, _ = rand.Read(r[:])
	h := &memHistory{
		opts:    opts,
		epoch:   hex.EncodeToString(r[:]),
		streams: make(map[string]*memStream),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go h.sweep() // joined by close; it forgets streams even with no history kept
	return h
}

// lockStream returns topic's stream, created if need be, locked and marked
// used: the caller unlocks it.
func (h *memHistory) lockStream(topic string, now time.Time) *memStream {
	for {
		h.mu.Lock()
		s := h.streams[topic]
		if s == nil {
			s = &memStream{seq: h.floor}
			h.streams[topic] = s
		}
		h.mu.Unlock()
		s.mu.Lock()
		if !s.gone {
			s.used = now
			return s
		}
		s.mu.Unlock() // forgotten between the lookup and the lock
	}
}

// size is how many streams the broker holds state for.
func (h *memHistory) size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

// append stores data as the entry at seq. s.mu must be held.
func (h *memHistory) appendLocked(s *memStream, seq uint64, data []byte, now time.Time) {
	if !h.opts.keeps() {
		return
	}
	s.entries = append(s.entries, memEntry{seq: seq, at: now, data: data})
	if len(s.entries) > h.opts.Size {
		s.entries = s.entries[len(s.entries)-h.opts.Size:]
	}
	h.expireLocked(s, now)
}

// expireLocked drops entries older than the TTL. s.mu must be held.
func (h *memHistory) expireLocked(s *memStream, now time.Time) {
	i := 0
	for i < len(s.entries) && now.Sub(s.entries[i].at) >= h.opts.TTL {
		i++
	}
	if i == len(s.entries) {
		s.entries = nil // lets the array go
		return
	}
	s.entries = s.entries[i:]
}

func (h *memHistory) read(topic string, q HistoryQuery) History {
	out := History{Position: Position{Epoch: h.epoch}}
	// A read creates the stream: the position it answers must be where the
	// stream's next message follows, whatever is forgotten meanwhile.
	s := h.lockStream(topic, time.Now())
	defer s.mu.Unlock()
	out.Seq = s.seq
	if q.Limit <= 0 {
		return out
	}
	h.expireLocked(s, time.Now())
	// Entries are consecutive positions: find Since+1 and Until by
	// arithmetic.
	es := s.entries
	if q.Latest {
		switch n := len(es); {
		case q.Until == 0 || n == 0 || q.Until >= es[n-1].seq:
		case q.Until < es[0].seq:
			es = nil
		default:
			es = es[:q.Until-es[0].seq+1]
		}
		es = es[max(0, len(es)-q.Limit):]
		if q.MaxBytes > 0 {
			// Newest first while they fit.
			used, i := 0, len(es)
			for i > 0 && used+len(es[i-1].data) <= q.MaxBytes {
				i--
				used += len(es[i].data)
			}
			out.Truncated = i > 0
			es = es[i:]
		}
	} else {
		switch {
		case len(es) == 0 || q.Since >= es[len(es)-1].seq:
			es = nil
		case q.Since >= es[0].seq:
			es = es[q.Since-es[0].seq+1:]
		}
		es = es[:min(len(es), q.Limit)]
		if q.MaxBytes > 0 {
			used, i := 0, 0
			for i < len(es) && used+len(es[i].data) <= q.MaxBytes {
				used += len(es[i].data)
				i++
			}
			out.Truncated = i < len(es)
			es = es[:i]
		}
	}
	out.Entries = make([]Entry, len(es))
	for i, e := range es {
		out.Entries[i] = Entry{Seq: e.seq, Data: e.data}
	}
	return out
}

// sweep frees the entries of streams nobody publishes to any more, and
// forgets the streams unused for StreamTTL.
func (h *memHistory) sweep() {
	defer close(h.done)
	every := h.opts.streamTTL() / 4
	if h.opts.keeps() {
		every = min(every, h.opts.TTL/4)
	}
	t := time.NewTicker(max(every, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			h.sweepOnce(now)
		}
	}
}

func (h *memHistory) sweepOnce(now time.Time) {
	type named struct {
		topic  string
		stream *memStream
	}
	h.mu.Lock()
	streams := make([]named, 0, len(h.streams))
	for topic, s := range h.streams {
		streams = append(streams, named{topic, s})
	}
	h.mu.Unlock()
	var idle []named
	for _, n := range streams {
		s := n.stream
		s.mu.Lock()
		h.expireLocked(s, now)
		if h.forgettableLocked(s, now) {
			idle = append(idle, n)
		}
		s.mu.Unlock()
	}
	if len(idle) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range idle {
		s := n.stream
		s.mu.Lock() // lock order: h.mu, then s.mu
		// Checked again: it may have been used since.
		if h.streams[n.topic] == s && h.forgettableLocked(s, now) {
			s.gone = true
			h.floor = max(h.floor, s.seq)
			delete(h.streams, n.topic)
		}
		s.mu.Unlock()
	}
}

// forgettableLocked: s keeps no entry and was not used for StreamTTL.
// s.mu must be held.
func (h *memHistory) forgettableLocked(s *memStream, now time.Time) bool {
	return len(s.entries) == 0 && now.Sub(s.used) >= h.opts.streamTTL()
}

func (h *memHistory) close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}
