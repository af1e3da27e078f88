package broker

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// memHistory is the in-process broker's streams: a position counter per
// topic, kept for the life of the process, and its last entries, kept while
// HistoryOptions allow. The epoch is new with every process: a restarted
// node has lost its history.
type memHistory struct {
	opts  HistoryOptions
	epoch string

	mu      sync.Mutex
	streams map[string]*memStream

	stop chan struct{} // ends the sweeper
	done chan struct{}
}

type memStream struct {
	mu      sync.Mutex // held from assigning a position to delivering it
	seq     uint64
	entries []memEntry // oldest first, at most opts.Size
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
	if !opts.keeps() {
		close(h.done)
		return h
	}
	go h.sweep() // joined by close
	return h
}

// stream returns topic's stream, creating it.
func (h *memHistory) stream(topic string) *memStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.streams[topic]
	if s == nil {
		s = &memStream{}
		h.streams[topic] = s
	}
	return s
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
	h.mu.Lock()
	s := h.streams[topic]
	h.mu.Unlock()
	if s == nil {
		return out
	}
	s.mu.Lock()
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

// sweep frees the entries of streams nobody publishes to any more.
func (h *memHistory) sweep() {
	defer close(h.done)
	t := time.NewTicker(max(h.opts.TTL/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			h.mu.Lock()
			streams := make([]*memStream, 0, len(h.streams))
			for _, s := range h.streams {
				streams = append(streams, s)
			}
			h.mu.Unlock()
			for _, s := range streams {
				s.mu.Lock()
				h.expireLocked(s, now)
				s.mu.Unlock()
			}
		}
	}
}

func (h *memHistory) close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}
