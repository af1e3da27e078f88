package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

// A guest who opens 590 fresh rooms, each used once, must not leave 590
// streams behind for good (issue 21 #10): once StreamTTL passes, the state
// is gone, on both brokers, and relay_broker_keys (StateKeys) says so.
func testUnusedStreamsAreForgotten(t *testing.T, b broker.Broker) {
	t.Helper()
	sc, ok := b.(broker.StateCounter)
	if !ok {
		t.Fatalf("%T does not report its state (broker.StateCounter)", b)
	}
	ctx := context.Background()
	before, err := sc.StateKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const rooms = 590
	for i := range rooms {
		topic := fmt.Sprintf("room:guest-%d", i)
		if i%2 == 0 {
			if _, err := b.PublishStream(ctx, topic, []byte(`{"data":"hi"}`)); err != nil {
				t.Fatal(err)
			}
		} else if _, err := b.History(ctx, topic, broker.HistoryQuery{Limit: 50, Latest: true}); err != nil {
			t.Fatal(err)
		}
	}
	during, err := sc.StateKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if during < before+rooms/2 {
		t.Fatalf("StateKeys %d after %d fresh rooms (from %d): the metric does not see them", during, rooms, before)
	}
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		n, err := sc.StateKeys(ctx)
		if err != nil {
			return err
		}
		if n > before {
			return fmt.Errorf("%d keys of state, %d before %d one-off rooms, StreamTTL passed", n, before, rooms)
		}
		return nil
	})
}

var shortStreams = broker.HistoryOptions{Size: 50, TTL: 200 * time.Millisecond, StreamTTL: 500 * time.Millisecond}

func TestMemoryForgetsUnusedStreams(t *testing.T) {
	t.Parallel()
	m := broker.NewMemory(broker.WithHistory(shortStreams))
	defer m.Close()
	testUnusedStreamsAreForgotten(t, m)
}

func TestRedisForgetsUnusedStreams(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	b := newRedisBrokers(t, srv.URL(), 1, shortStreams)[0]
	// The epoch and the floor: one key each for the whole Redis, there first.
	if _, err := b.PublishStream(context.Background(), "room:first", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	testUnusedStreamsAreForgotten(t, b)
}

// Unused streams are forgotten, yet no position is ever given twice in an
// epoch, and a stream in use keeps its count. bs are two nodes on one
// backend of their own (the floor is the backend's: tests sharing one would
// see each other's).
func testForgottenStreamNeverReusesAPosition(t *testing.T, bs []broker.Broker) {
	forgotten, busy, used := uniqueTopic(t, "forgotten"), uniqueTopic(t, "busy"), uniqueTopic(t, "used")
	var last broker.Position
	for range 3 {
		last = mustPublishStream(t, bs[0], forgotten, `{"n":1}`)
	}
	for range 9 {
		mustPublishStream(t, bs[1], busy, `{"n":2}`)
	}
	mustPublishStream(t, bs[0], used, `{"n":3}`)
	// used is read every 100ms, well within its StreamTTL; forgotten is
	// left alone for more than three StreamTTLs.
	for range 10 {
		if _, err := bs[1].History(t.Context(), used, broker.HistoryQuery{}); err != nil {
			t.Fatalf("History: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rec := newRecorder()
	mustSubscribe(t, bs[1], forgotten, rec.handle)
	again := mustPublishStream(t, bs[0], forgotten, `{"n":4}`)
	if again.Epoch == last.Epoch && again.Seq <= last.Seq {
		t.Fatalf("a forgotten stream used again got %+v after %+v: a position given twice in one epoch", again, last)
	}
	waitFor(t, "the message to its subscriber", func() bool { return rec.len() == 1 })
	if m := rec.all()[0]; m.seq != again.Seq || m.epoch != again.Epoch {
		t.Fatalf("subscriber got seq %d epoch %s, the publisher was told %+v", m.seq, m.epoch, again)
	}
	hist, err := bs[1].History(t.Context(), forgotten, broker.HistoryQuery{Since: again.Seq - 1, Limit: 10})
	if err != nil || hist.Seq != again.Seq || len(hist.Entries) != 1 || hist.Entries[0].Seq != again.Seq {
		t.Fatalf("history after the reuse: %+v %v, want the one message at %d", hist, err, again.Seq)
	}
	if p := mustPublishStream(t, bs[1], used, `{"n":5}`); p.Seq != 2 {
		t.Fatalf("a stream read within its StreamTTL went on at %+v, want seq 2", p)
	}
}

var forgetFast = broker.HistoryOptions{Size: 100, TTL: 100 * time.Millisecond, StreamTTL: 300 * time.Millisecond}

func TestMemoryForgottenStreamNeverReusesAPosition(t *testing.T) {
	t.Parallel()
	m := broker.NewMemory(broker.WithHistory(forgetFast))
	defer m.Close()
	testForgottenStreamNeverReusesAPosition(t, []broker.Broker{m, m.Peer()})
}

func TestRedisForgottenStreamNeverReusesAPosition(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testForgottenStreamNeverReusesAPosition(t, newRedisBrokers(t, srv.URL(), 2, forgetFast))
}
