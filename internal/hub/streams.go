package hub

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/protocol"
)

// Streams: chat and notifications are numbered by the broker, per topic.
// For every topic it is subscribed to, the node keeps the position it has
// delivered up to. A message that is not the next one (a lost PUB/SUB
// message, a resubscription after an outage, a new epoch) is held back
// while the gap is filled from the broker's history, so local clients get
// every message of a stream once and in order; what history no longer has
// is announced to them in a gap frame, never skipped silently.

// stream is this node's delivery of one topic's stream. Its mu is held
// while a stream message is queued for the topic's local receivers, and by
// whoever adds a receiver, so that a new receiver gets exactly the messages
// after the position it was told.
type stream struct {
	topic string

	mu        sync.Mutex
	ready     bool   // position read from the broker
	dead      bool   // unsubscribed: repairs stop
	epoch     string // of last
	last      uint64 // the last position queued for local receivers
	repairing bool   // a repair goroutine owns catching up
	again     bool   // the broker lost messages while a repair ran: read once more
	pending   []broker.Message
	abandoned []string // epochs left behind: their late messages are dropped
}

// maxPending bounds what a stream holds back while it repairs; past it the
// oldest are dropped and the repair finds them in history instead.
const maxPending = 10000

// repairBatch is how many history entries one read of a repair takes.
const repairBatch = 500

// clientStream is the name clients know topic's stream by.
func clientStream(topic string) string {
	switch {
	case topic == topicAll:
		return protocol.StreamAll
	case len(topic) > len("user:") && topic[:len("user:")] == "user:":
		return protocol.StreamUser
	default:
		return topic[len("room:"):]
	}
}

// initStream reads s's position after its topic was subscribed to, and
// delivers what arrived meanwhile. No hub lock is held: it is a broker round
// trip.
func (h *Hub) initStream(ctx context.Context, s *stream) error {
	hist, err := h.broker.History(ctx, s.topic, broker.HistoryQuery{})
	if err != nil {
		return fmt.Errorf("read position of %s: %w", s.topic, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready, s.epoch, s.last = true, hist.Epoch, hist.Seq
	pending := s.pending
	s.pending = nil
	for i, m := range pending {
		if !h.advanceLocked(s, m) {
			s.pending = append(s.pending, pending[i+1:]...)
			break
		}
	}
	return nil
}

// deliverStream handles one stream message from the broker.
func (h *Hub) deliverStream(topic string, m broker.Message) {
	s := h.subs.stream(topic)
	if s == nil {
		return // no longer subscribed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready || s.repairing {
		s.holdLocked(m)
		return
	}
	h.advanceLocked(s, m)
}

// advanceLocked delivers m if it is the stream's next message, drops it if
// it was delivered already, and otherwise holds it and starts a repair. It
// reports whether s is still live (not repairing). s.mu must be held.
func (h *Hub) advanceLocked(s *stream, m broker.Message) bool {
	switch {
	case m.Epoch != s.epoch && slices.Contains(s.abandoned, m.Epoch):
		return true // a late message of an epoch already left behind
	case m.Epoch == s.epoch && m.Seq <= s.last:
		return true // delivered already, from history
	case m.Epoch == s.epoch && m.Seq == s.last+1:
		h.fanoutStream(s, m.Seq, m.Payload)
		if ts, ok := publishedAt(m.Payload); ok {
			h.opts.Streams.FannedOut(time.Since(ts))
		}
		return true
	}
	s.holdLocked(m)
	h.startRepairLocked(s)
	return false
}

func (s *stream) holdLocked(m broker.Message) {
	if len(s.pending) >= maxPending {
		s.pending = slices.Delete(s.pending, 0, len(s.pending)-maxPending+1)
	}
	s.pending = append(s.pending, m)
}

// fanoutStream queues the message at seq for every local receiver. The
// broker's payload is the JSON with its position; it is framed once here.
// s.mu must be held.
func (h *Hub) fanoutStream(s *stream, seq uint64, payload []byte) {
	h.fanout(s.topic, 0, protocol.FrameJSON(payload))
	s.last = seq
}

// gapLocked tells the topic's local receivers that the stream's messages up
// to through (in s.epoch) may be missing, and moves past them. s.mu must be
// held.
func (h *Hub) gapLocked(s *stream, through uint64) {
	name := clientStream(s.topic)
	h.log.Warn("stream gap: messages no longer in history", "stream", s.topic, "epoch", s.epoch, "from", s.last+1, "through", through)
	if through > s.last {
		h.opts.Streams.Lost(through - s.last)
	}
	s.last = through
	h.fanout(s.topic, 0, h.mustEncode(protocol.Gap{
		Type: protocol.TypeSystem, Event: protocol.EventGap, Stream: name, Epoch: s.epoch, Seq: through,
		Data: fmt.Sprintf("messages of %s up to %d may be missing", name, through),
	}))
}

// catchUp reads what a stream missed while its subscription was down.
func (h *Hub) catchUp(topic string) {
	s := h.subs.stream(topic)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready || s.repairing {
		s.again = true
		return
	}
	h.startRepairLocked(s)
}

// startRepairLocked hands catching up to a goroutine, which delivers from
// history, then what was held back. s.mu must be held.
func (h *Hub) startRepairLocked(s *stream) {
	if s.repairing {
		return
	}
	s.repairing = true
	select {
	case <-h.stop:
		return // closing: nobody will read what is held
	default:
	}
	h.wg.Add(1)
	go h.repair(s)
}

func (h *Hub) repair(s *stream) {
	defer h.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return
		}
		since := s.last
		s.again = false
		s.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hist, err := h.broker.History(ctx, s.topic, broker.HistoryQuery{Since: since, Limit: repairBatch})
		cancel()
		if err != nil {
			h.log.Warn("stream repair: history unavailable; retrying", "stream", s.topic, "err", err)
			select {
			case <-h.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		s.mu.Lock()
		done := s.dead || h.applyHistoryLocked(s, since, hist)
		s.mu.Unlock()
		if done {
			return
		}
	}
}

// applyHistoryLocked delivers hist, read after since, then what was held
// back. It reports whether the stream is live again; if not, the caller
// reads history once more. s.mu must be held.
func (h *Hub) applyHistoryLocked(s *stream, since uint64, hist broker.History) bool {
	if s.last != since {
		return false // moved on meanwhile (an epoch reset): read again
	}
	if hist.Epoch != s.epoch {
		// The broker lost its history (Redis restarted empty): this
		// stream's numbering starts over, and receivers are told.
		if s.epoch != "" {
			s.abandoned = append(s.abandoned[max(0, len(s.abandoned)-3):], s.epoch)
		}
		s.epoch = hist.Epoch
		h.gapLocked(s, 0)
		return false
	}
	for _, e := range hist.Entries {
		if e.Seq <= s.last {
			continue
		}
		if e.Seq > s.last+1 {
			h.gapLocked(s, e.Seq-1)
		}
		h.fanoutStream(s, e.Seq, e.Data)
	}
	if len(hist.Entries) == repairBatch && s.last < hist.Seq {
		return false // more to read
	}
	if s.last < hist.Seq {
		h.gapLocked(s, hist.Seq) // positions history no longer has
	}
	pending := s.pending
	s.pending = nil
	for i, m := range pending {
		switch {
		case m.Epoch != s.epoch && slices.Contains(s.abandoned, m.Epoch):
		case m.Epoch != s.epoch, m.Seq > s.last+1:
			// Published after the read: read again.
			s.pending = pending[i:]
			return false
		case m.Seq == s.last+1:
			h.fanoutStream(s, m.Seq, m.Payload)
		}
	}
	if s.again {
		return false
	}
	s.repairing = false
	h.opts.Streams.Repaired()
	return true
}

// publishedAt reads a stream message's "ts" (unix milliseconds, set when it
// was published) without decoding the rest.
func publishedAt(msg []byte) (time.Time, bool) {
	i := bytes.LastIndex(msg, []byte(`"ts":`))
	if i < 0 {
		return time.Time{}, false
	}
	var ms int64
	for _, c := range msg[i+len(`"ts":`):] {
		if c < '0' || c > '9' {
			break
		}
		ms = ms*10 + int64(c-'0')
	}
	return time.UnixMilli(ms), ms > 0
}
