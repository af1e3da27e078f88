package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/testkit"
)

// testStreamContract checks streams and history: positions assigned by the
// broker, in order, the same on every node, and the history that fills a
// gap. newBrokers returns n nodes on one backend keeping history h.
func testStreamContract(t *testing.T, newBrokers func(t *testing.T, n int, h broker.HistoryOptions) []broker.Broker) {
	keep := broker.HistoryOptions{Size: 100, TTL: time.Minute}

	t.Run("StreamPositionsAcrossNodes", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 3, keep)
		topic := uniqueTopic(t, "stream")
		recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
		for i, b := range bs {
			mustSubscribe(t, b, topic, recs[i].handle)
		}
		const perNode = 30
		var wg sync.WaitGroup
		for i, b := range bs {
			wg.Go(func() {
				for j := range perNode {
					if _, err := b.PublishStream(t.Context(), topic, fmt.Appendf(nil, `{"from":%d,"n":%d}`, i, j)); err != nil {
						t.Errorf("node %d: PublishStream: %v", i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		const total = 3 * perNode
		var first []message
		for i, r := range recs {
			waitFor(t, fmt.Sprintf("node %d to receive every stream message", i), func() bool { return r.len() >= total })
			got := r.all()
			for k, m := range got {
				if m.seq != uint64(k+1) {
					t.Fatalf("node %d: message %d has seq %d, want %d (stream out of order or with a gap)", i, k, m.seq, k+1)
				}
				var v struct {
					From, N int
					Seq     uint64
				}
				if err := json.Unmarshal(m.payload, &v); err != nil || v.Seq != m.seq {
					t.Fatalf("node %d: payload %s: seq field %d, err %v; want seq %d in the JSON", i, m.payload, v.Seq, err, m.seq)
				}
				if m.epoch == "" || m.epoch != got[0].epoch {
					t.Fatalf("node %d: epoch %q at seq %d, %q at seq 1", i, m.epoch, m.seq, got[0].epoch)
				}
			}
			if first == nil {
				first = got
				continue
			}
			for k := range got {
				if string(got[k].payload) != string(first[k].payload) || got[k].epoch != first[k].epoch {
					t.Fatalf("node %d saw %s at seq %d, node 0 saw %s", i, got[k].payload, k+1, first[k].payload)
				}
			}
		}
		// Per-publisher order holds within the stream too.
		last := map[int]int{0: -1, 1: -1, 2: -1}
		for _, m := range first {
			var v struct{ From, N int }
			_ = json.Unmarshal(m.payload, &v)
			if v.N != last[v.From]+1 {
				t.Fatalf("node %d's message %d after its %d", v.From, v.N, last[v.From])
			}
			last[v.From] = v.N
		}
	})

	t.Run("PublishStreamReturnsThePosition", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2, keep)
		topic := uniqueTopic(t, "pos")
		r := newRecorder()
		mustSubscribe(t, bs[1], topic, r.handle)
		p1 := mustPublishStream(t, bs[0], topic, `{"a":1}`)
		p2 := mustPublishStream(t, bs[1], topic, " {}\n")
		if p1.Seq != 1 || p2.Seq != 2 || p1.Epoch == "" || p1.Epoch != p2.Epoch {
			t.Fatalf("positions %+v then %+v, want seq 1 and 2 in one epoch", p1, p2)
		}
		waitFor(t, "both messages", func() bool { return r.len() >= 2 })
		got := r.payloads()
		if got[0] != `{"a":1,"seq":1}` || got[1] != `{"seq":2}` {
			t.Fatalf("delivered %q, want seq added as the last field", got)
		}
		if m := r.all()[0]; m.epoch != p1.Epoch || m.seq != 1 {
			t.Fatalf("delivered at %q/%d, PublishStream said %+v", m.epoch, m.seq, p1)
		}
	})

	t.Run("PlainAndStreamOnOneTopic", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2, keep)
		topic := uniqueTopic(t, "mixed")
		r := newRecorder()
		mustSubscribe(t, bs[1], topic, r.handle)
		mustPublish(t, bs[0], topic, []byte("plain"))
		mustPublishStream(t, bs[0], topic, `{"m":1}`)
		mustPublish(t, bs[0], topic, []byte("plain"))
		waitFor(t, "three messages", func() bool { return r.len() >= 3 })
		for i, m := range r.all() {
			stream := i == 1
			if (m.seq != 0) != stream || (string(m.payload) == "plain") == stream {
				t.Fatalf("message %d: %s seq %d: plain messages have no position, stream ones do", i, m.payload, m.seq)
			}
		}
		h := mustHistory(t, bs[0], topic, broker.HistoryQuery{Limit: 10})
		if h.Seq != 1 || len(h.Entries) != 1 {
			t.Fatalf("history %+v: plain messages must not be in it", h)
		}
	})

	t.Run("HistorySinceAndLatest", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2, keep)
		topic := uniqueTopic(t, "hist")
		var delivered []string
		for i := range 10 {
			mustPublishStream(t, bs[0], topic, fmt.Sprintf(`{"n":%d}`, i+1))
			delivered = append(delivered, fmt.Sprintf(`{"n":%d,"seq":%d}`, i+1, i+1))
		}
		h := mustHistory(t, bs[1], topic, broker.HistoryQuery{Since: 3, Limit: 100})
		if h.Seq != 10 || h.Epoch == "" {
			t.Fatalf("position %+v, want seq 10", h.Position)
		}
		checkEntries(t, h.Entries, 4, delivered[3:])
		checkEntries(t, mustHistory(t, bs[1], topic, broker.HistoryQuery{Since: 3, Limit: 2}).Entries, 4, delivered[3:5])
		checkEntries(t, mustHistory(t, bs[1], topic, broker.HistoryQuery{Limit: 3, Latest: true}).Entries, 8, delivered[7:])
		checkEntries(t, mustHistory(t, bs[1], topic, broker.HistoryQuery{Since: 10, Limit: 5}).Entries, 11, nil)
		if e := mustHistory(t, bs[1], topic, broker.HistoryQuery{Since: 3}).Entries; len(e) != 0 {
			t.Fatalf("limit 0 returned %d entries, want the position alone", len(e))
		}
	})

	// MaxBytes: a read returns what fits in the budget, in reading order,
	// says when it left entries out, and Until bounds a Latest read. The
	// stream is longer than a batch the Redis script reads at a time.
	t.Run("HistoryByteBudget", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2, keep)
		topic := uniqueTopic(t, "budget")
		pad := strings.Repeat("x", 100)
		var delivered []string
		for i := range 20 {
			mustPublishStream(t, bs[0], topic, fmt.Sprintf(`{"n":%d,"pad":%q}`, i+1, pad))
			delivered = append(delivered, fmt.Sprintf(`{"n":%d,"pad":%q,"seq":%d}`, i+1, pad, i+1))
		}
		// size(a, b) is what entries a..b (positions, inclusive) weigh.
		size := func(a, b int) int {
			n := 0
			for _, d := range delivered[a-1 : b] {
				n += len(d)
			}
			return n
		}
		for _, tc := range []struct {
			desc      string
			q         broker.HistoryQuery
			first     int // position of the first entry returned
			n         int // entries returned
			truncated bool
		}{
			{"oldest first, cut by the budget", broker.HistoryQuery{Since: 0, Limit: 100, MaxBytes: size(1, 11) + 50}, 1, 11, true},
			{"oldest first after since, cut", broker.HistoryQuery{Since: 4, Limit: 100, MaxBytes: size(5, 7)}, 5, 3, true},
			{"everything fits exactly", broker.HistoryQuery{Since: 0, Limit: 100, MaxBytes: size(1, 20)}, 1, 20, false},
			{"the limit ends the read first", broker.HistoryQuery{Since: 2, Limit: 3, MaxBytes: size(3, 5)}, 3, 3, false},
			{"newest first, cut by the budget", broker.HistoryQuery{Limit: 15, Latest: true, MaxBytes: size(10, 20) + 50}, 10, 11, true},
			{"newest up to until", broker.HistoryQuery{Limit: 3, Latest: true, Until: 12}, 10, 3, false},
			{"newest up to until, cut", broker.HistoryQuery{Limit: 10, Latest: true, Until: 12, MaxBytes: size(9, 12)}, 9, 4, true},
			{"until past the end", broker.HistoryQuery{Limit: 2, Latest: true, Until: 99, MaxBytes: size(19, 20)}, 19, 2, false},
			{"not even one fits", broker.HistoryQuery{Since: 0, Limit: 5, MaxBytes: len(delivered[0]) - 1}, 1, 0, true},
			{"not even the newest fits", broker.HistoryQuery{Limit: 5, Latest: true, MaxBytes: 10}, 1, 0, true},
		} {
			h := mustHistory(t, bs[1], topic, tc.q)
			if h.Seq != 20 {
				t.Fatalf("%s: position %d, want 20", tc.desc, h.Seq)
			}
			if h.Truncated != tc.truncated {
				t.Errorf("%s: %+v: truncated %v, want %v", tc.desc, tc.q, h.Truncated, tc.truncated)
			}
			var want []string
			if tc.n > 0 {
				want = delivered[tc.first-1 : tc.first-1+tc.n]
			}
			if len(h.Entries) != len(want) {
				t.Fatalf("%s: %+v: %d entries from %v, want %d from position %d", tc.desc, tc.q, len(h.Entries), firstSeq(h.Entries), len(want), tc.first)
			}
			checkEntries(t, h.Entries, uint64(tc.first), want)
		}
	})

	t.Run("HistoryKeepsTheLastSize", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 1, broker.HistoryOptions{Size: 5, TTL: time.Minute})
		topic := uniqueTopic(t, "size")
		for i := range 8 {
			mustPublishStream(t, bs[0], topic, fmt.Sprintf(`{"n":%d}`, i+1))
		}
		h := mustHistory(t, bs[0], topic, broker.HistoryQuery{Since: 0, Limit: 100})
		if h.Seq != 8 {
			t.Fatalf("position %d, want 8", h.Seq)
		}
		// Positions 1-3 are gone: what is returned starts at 4, and the
		// caller sees the gap from the first entry's position.
		checkEntries(t, h.Entries, 4, []string{`{"n":4,"seq":4}`, `{"n":5,"seq":5}`, `{"n":6,"seq":6}`, `{"n":7,"seq":7}`, `{"n":8,"seq":8}`})
	})

	t.Run("HistoryExpires", func(t *testing.T) {
		t.Parallel()
		ttl := 300 * time.Millisecond
		bs := newBrokers(t, 1, broker.HistoryOptions{Size: 10, TTL: ttl})
		topic := uniqueTopic(t, "ttl")
		published := time.Now() // no later than the broker's own timestamp
		mustPublishStream(t, bs[0], topic, `{"n":1}`)
		testkit.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if n := len(mustHistory(t, bs[0], topic, broker.HistoryQuery{Limit: 10}).Entries); n != 0 {
				return fmt.Errorf("%d entries still kept", n)
			}
			return nil
		})
		if age := time.Since(published); age < ttl {
			t.Fatalf("an entry expired after %v, before its TTL of %v", age, ttl)
		}
		// The position outlives the history: numbering goes on.
		if p := mustPublishStream(t, bs[0], topic, `{"n":2}`); p.Seq != 2 {
			t.Fatalf("after expiry the next position is %d, want 2", p.Seq)
		}
	})

	t.Run("HistoryOff", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 1, broker.HistoryOptions{})
		topic := uniqueTopic(t, "off")
		r := newRecorder()
		mustSubscribe(t, bs[0], topic, r.handle)
		mustPublishStream(t, bs[0], topic, `{"n":1}`)
		if p := mustPublishStream(t, bs[0], topic, `{"n":2}`); p.Seq != 2 {
			t.Fatalf("position %d with history off, want 2: positions are assigned anyway", p.Seq)
		}
		h := mustHistory(t, bs[0], topic, broker.HistoryQuery{Limit: 10})
		if h.Seq != 2 || len(h.Entries) != 0 {
			t.Fatalf("history off: %+v, want position 2 and no entries", h)
		}
		waitFor(t, "live delivery with history off", func() bool { return r.len() >= 2 })
	})

	t.Run("UnknownStream", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 2, keep)
		known := uniqueTopic(t, "known")
		p := mustPublishStream(t, bs[0], known, `{"n":1}`)
		h := mustHistory(t, bs[1], uniqueTopic(t, "never"), broker.HistoryQuery{Limit: 10})
		if h.Seq != 0 || len(h.Entries) != 0 || h.Epoch != p.Epoch {
			t.Fatalf("a stream never published to: %+v, want position 0 in the epoch %q", h, p.Epoch)
		}
	})

	t.Run("NotAnObject", func(t *testing.T) {
		t.Parallel()
		bs := newBrokers(t, 1, keep)
		topic := uniqueTopic(t, "bad")
		for _, msg := range []string{``, `[1]`, `"x"`, `{`, `}`, `{"a":1} x`} {
			if _, err := bs[0].PublishStream(t.Context(), topic, []byte(msg)); !errors.Is(err, broker.ErrNotObject) {
				t.Errorf("PublishStream(%q) = %v, want ErrNotObject", msg, err)
			}
		}
		if h := mustHistory(t, bs[0], topic, broker.HistoryQuery{Limit: 10}); h.Seq != 0 {
			t.Fatalf("a refused message took position %d", h.Seq)
		}
	})
}

func mustPublishStream(t *testing.T, b broker.Broker, topic, msg string) broker.Position {
	t.Helper()
	p, err := b.PublishStream(t.Context(), topic, []byte(msg))
	if err != nil {
		t.Fatalf("PublishStream(%s): %v", topic, err)
	}
	return p
}

func mustHistory(t *testing.T, b broker.Broker, topic string, q broker.HistoryQuery) broker.History {
	t.Helper()
	h, err := b.History(t.Context(), topic, q)
	if err != nil {
		t.Fatalf("History(%s, %+v): %v", topic, q, err)
	}
	return h
}

// checkEntries checks that es are consecutive from position first and hold
// want.
func checkEntries(t *testing.T, es []broker.Entry, first uint64, want []string) {
	t.Helper()
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d: %v", len(es), len(want), es)
	}
	for i, e := range es {
		if e.Seq != first+uint64(i) || string(e.Data) != want[i] {
			t.Fatalf("entry %d: seq %d %s, want seq %d %s", i, e.Seq, e.Data, first+uint64(i), want[i])
		}
	}
}

// firstSeq is the position of es's first entry, for messages.
func firstSeq(es []broker.Entry) any {
	if len(es) == 0 {
		return "none"
	}
	return es[0].Seq
}
