package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// observe feeds frames to a client's positions until match, failing on a
// gap or a reordering in any stream, and returns the matching frame.
func observe(t *testing.T, c *wstest.Client, p *protocol.Positions, desc string, match func(wstest.Frame) bool) wstest.Frame {
	t.Helper()
	for {
		f := c.Expect(desc, func(wstest.Frame) bool { return true })
		if _, err := p.Observe(f.In); err != nil {
			t.Fatalf("%v (frame %s)", err, f.Raw)
		}
		if match(f) {
			return f
		}
	}
}

// Every chat and notification frame carries its position; the welcome
// says where the client starts in each of its streams, and a join where it
// starts in the room.
func TestStreamPositionsInFrames(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	notify(t, n, `{"message":"before anyone"}`)
	a := wstest.Dial(t, n.WS("name=ann"), nil)
	w := a.Welcome()
	if w.Epoch == "" || w.In.Seq.Map == nil || w.In.Seq.Map["*"] != 1 || w.In.Seq.Map["lobby"] != 0 || w.In.Seq.Map["@"] != 0 {
		t.Fatalf("welcome %s: want an epoch and seq {*:1, @:0, lobby:0}", w.Raw)
	}
	if w.Recovered != nil {
		t.Fatalf("a fresh connection's welcome says recovered: %s", w.Raw)
	}
	a.Send(`{"type":"message","data":"one"}`)
	if f := a.Expect("chat", wstest.IsChat("one")); f.Seq() != 1 {
		t.Fatalf("first lobby chat: %s, want seq 1", f.Raw)
	}
	a.Send(`{"type":"message","data":"two"}`)
	if f := a.Expect("chat", wstest.IsChat("two")); f.Seq() != 2 {
		t.Fatalf("second lobby chat: %s, want seq 2", f.Raw)
	}
	notify(t, n, `{"message":"for ann","user":"ann"}`)
	if f := a.Expect("user note", wstest.IsNote("for ann")); f.Seq() != 1 {
		t.Fatalf("user notification: %s, want seq 1 in ann's stream", f.Raw)
	}
	status, body := notify(t, n, `{"message":"all"}`)
	if status != 200 || body["seq"] != 2.0 || body["epoch"] != w.Epoch {
		t.Fatalf("notify answered %d %v: want seq 2 in epoch %s", status, body, w.Epoch)
	}
	if f := a.Expect("broadcast", wstest.IsNote("all")); f.Seq() != 2 {
		t.Fatalf("broadcast: %s, want seq 2", f.Raw)
	}
	notify(t, n, `{"message":"ops 1","room":"ops"}`)
	a.Send(`{"type":"join","room":"ops"}`)
	if f := a.Expect("own join", wstest.IsEvent("join", "ann", "ops")); f.Seq() != 1 || !f.In.Seq.Set {
		t.Fatalf("own join: %s, want the room's position 1", f.Raw)
	}
	b := wstest.Dial(t, n.WS("name=bob"), nil)
	b.Welcome()
	b.Send(`{"type":"join","room":"ops"}`)
	if f := a.Expect("bob's join", wstest.IsEvent("join", "bob", "ops")); f.In.Seq.Set {
		t.Fatalf("another member's join carries a position: %s", f.Raw)
	}
}

// The resume contract on one node: a client away while every kind of
// stream moved on comes back with ?epoch&since and gets, in order, the
// welcome (recovered), its own join of each listed room, what it missed,
// then live messages, with no gap and no duplicate in any stream, while
// others keep publishing throughout.
func TestResumeFillsEveryStream(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	var p protocol.Positions
	ann := wstest.Dial(t, n.WS("name=ann"), nil)
	observe(t, ann, &p, "welcome", wstest.IsEvent("welcome", "ann", "lobby"))
	ann.Send(`{"type":"join","room":"ops"}`)
	observe(t, ann, &p, "own join", wstest.IsEvent("join", "ann", "ops"))
	ann.Send(`{"type":"message","room":"ops","data":"before"}`)
	observe(t, ann, &p, "own chat", wstest.IsChat("before"))

	// Publishers that do not stop while ann is away and comes back.
	talker := wstest.Dial(t, n.WS("name=tom"), nil)
	talker.Welcome()
	talker.Send(`{"type":"join","room":"ops"}`)
	talker.Expect("own join", wstest.IsEvent("join", "tom", "ops"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			room := []string{"lobby", "ops"}[i%2]
			talker.Send(fmt.Sprintf(`{"type":"message","room":%q,"data":"t%d"}`, room, i))
			time.Sleep(2 * time.Millisecond)
		}
	})
	defer func() { close(stop); wg.Wait() }()

	_ = ann.WS.CloseNow()
	notify(t, n, `{"message":"while away: everyone"}`)
	notify(t, n, `{"message":"while away: ann","user":"ann"}`)
	notify(t, n, `{"message":"while away: ops","room":"ops"}`)
	time.Sleep(50 * time.Millisecond) // let the talker fill the rooms too

	back := wstest.Dial(t, n.WS("name=ann&"+p.Query()), nil)
	w := back.Welcome()
	if w.Recovered == nil || !*w.Recovered || len(w.Missed) != 0 || w.Epoch != p.Epoch {
		t.Fatalf("welcome of a resume within history: %s, want recovered true", w.Raw)
	}
	if _, err := p.Observe(w.In); err != nil {
		t.Fatal(err)
	}
	if f := back.Next(); !wstest.IsEvent("join", "ann", "ops")(f) {
		t.Fatalf("second frame %s, want the own join of ops", f.Raw)
	} else if _, err := p.Observe(f.In); err != nil {
		t.Fatal(err)
	}
	for _, note := range []string{"while away: everyone", "while away: ann", "while away: ops"} {
		observe(t, back, &p, note, wstest.IsNote(note))
	}
	// Live traffic after the replay, still without a gap.
	back.Send(`{"type":"message","room":"ops","data":"after"}`)
	observe(t, back, &p, "own chat after resuming", wstest.IsChat("after"))
	if p.Duplicates != 0 {
		t.Fatalf("%d duplicates after resuming", p.Duplicates)
	}
}

// A resume that history cannot fill says which streams it could not, and
// live delivery starts anyway: past RELAY_HISTORY_SIZE, after the TTL, and
// from another epoch (the node restarted: its history is gone).
func TestResumeReportsWhatItCannotFill(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0", "RELAY_HISTORY_SIZE": "5", "RELAY_HISTORY_TTL": "1s"})
	var p protocol.Positions
	ann := wstest.Dial(t, n.WS("name=ann"), nil)
	observe(t, ann, &p, "welcome", wstest.IsEvent("welcome", "ann", "lobby"))
	_ = ann.WS.CloseNow()

	for i := range 8 { // more than the 5 kept
		notify(t, n, fmt.Sprintf(`{"message":"lobby %d","room":"lobby"}`, i))
	}
	notify(t, n, `{"message":"one for ann","user":"ann"}`)
	resume := func() wstest.Frame {
		c := wstest.Dial(t, n.WS("name=ann&"+p.Query()), nil)
		return c.Welcome()
	}
	w := resume()
	if w.Recovered == nil || *w.Recovered || strings.Join(w.Missed, ",") != "lobby" {
		t.Fatalf("after 8 messages with 5 kept: %s, want recovered false, missed [lobby]", w.Raw)
	}

	time.Sleep(1100 * time.Millisecond) // past the TTL
	w = resume()
	if w.Recovered == nil || *w.Recovered || !strings.Contains(strings.Join(w.Missed, ","), "@") {
		t.Fatalf("after the TTL: %s, want ann's stream missed", w.Raw)
	}

	n.Stop()
	n.Restart()
	w = resume()
	if w.Recovered == nil || *w.Recovered || w.Epoch == p.Epoch || len(w.Missed) != 3 {
		t.Fatalf("after a restart of the embedded broker: %s, want a new epoch and all three streams missed", w.Raw)
	}
}

// Bad ?since answers 400 with a JSON error, before any upgrade.
func TestResumeBadQuery(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	for _, q := range []string{
		"epoch=e", "since=lobby:1", "epoch=e&since=lobby", "epoch=e&since=lobby:x",
		"epoch=e&since=bad%20room:1", "epoch=e&since=lobby:1,lobby:2",
	} {
		_, err := wstest.TryDial(t, n.WS("name=ann&"+q), nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), `"error"`) {
			t.Errorf("?%s: %v, want 400 with a JSON error", q, err)
		}
	}
}

// {"type":"join","last":N} replays the room's last N messages after the
// join confirmation, before anything live.
func TestJoinWithLast(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	for i := range 5 {
		notify(t, n, fmt.Sprintf(`{"message":"ops %d","room":"ops"}`, i+1))
	}
	a := wstest.Dial(t, n.WS("name=ann"), nil)
	a.Welcome()
	a.Send(`{"type":"join","room":"ops","last":3}`)
	if f := a.Next(); !wstest.IsEvent("join", "ann", "ops")(f) || f.Seq() != 5 {
		t.Fatalf("first frame after the join %s, want the own join at seq 5", f.Raw)
	}
	for i := 3; i <= 5; i++ {
		if f := a.Next(); !wstest.IsNote(fmt.Sprintf("ops %d", i))(f) || f.Seq() != uint64(i) {
			t.Fatalf("replayed %s, want ops %d", f.Raw, i)
		}
	}
	a.Send(`{"type":"join","room":"big","last":1001}`)
	a.Expect("refusal", wstest.IsError("bad_json"))
}

// GET /api/history gives a backend a stream's messages as clients got them.
func TestHistoryAPI(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k"})
	for i := range 3 {
		notify(t, n, fmt.Sprintf(`{"message":"m%d","room":"ops"}`, i+1))
	}
	notify(t, n, `{"message":"u","user":"ann"}`)
	get := func(q, key string) (int, map[string]any) {
		return request(t, http.MethodGet, n.URL()+"/api/history?"+q, key, "")
	}
	status, body := get("room=ops&since=1&limit=10", "k")
	if status != 200 || body["seq"] != 3.0 || body["epoch"] == "" {
		t.Fatalf("history of ops: %d %v", status, body)
	}
	msgs, _ := body["messages"].([]any)
	if len(msgs) != 2 {
		t.Fatalf("history after 1: %v, want 2 messages", msgs)
	}
	raw, _ := json.Marshal(msgs[0])
	if !strings.Contains(string(raw), `"data":"m2"`) || !strings.Contains(string(raw), `"seq":2`) {
		t.Fatalf("first message %s, want m2 at seq 2 as clients get it", raw)
	}
	if status, body := get("user=ann", "k"); status != 200 || len(body["messages"].([]any)) != 1 {
		t.Fatalf("history of ann: %d %v", status, body)
	}
	for _, tc := range []struct {
		q, key string
		want   int
	}{
		{"room=ops", "", 401}, {"room=ops", "wrong", 401}, {"room=bad%20room", "k", 400},
		{"room=ops&user=ann", "k", 400}, {"room=ops&since=-1", "k", 400}, {"room=ops&limit=5000", "k", 400},
	} {
		if status, body := get(tc.q, tc.key); status != tc.want || body["error"] == nil {
			t.Errorf("?%s key %q: %d %v, want %d with an error", tc.q, tc.key, status, body, tc.want)
		}
	}
}

// What operators see of history: resumes by result, the lag from
// publication to fan-out, rooms, and the broker's health, in /metrics.
func TestStreamMetrics(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0", "RELAY_HISTORY_SIZE": "2"})
	var p protocol.Positions
	a := wstest.Dial(t, n.WS("name=ann"), nil)
	observe(t, a, &p, "welcome", wstest.IsEvent("welcome", "ann", "lobby"))
	a.Send(`{"type":"join","room":"ops"}`)
	observe(t, a, &p, "own join", wstest.IsEvent("join", "ann", "ops"))
	a.Send(`{"type":"message","room":"ops","data":"one"}`)
	observe(t, a, &p, "chat", wstest.IsChat("one"))
	_ = a.WS.CloseNow()

	notify(t, n, `{"message":"while away"}`)
	wstest.Dial(t, n.WS("name=ann&"+p.Query()), nil).Welcome() // recovered
	for i := range 3 {
		notify(t, n, fmt.Sprintf(`{"message":"past history %d"}`, i))
	}
	wstest.Dial(t, n.WS("name=ann&"+p.Query()), nil).Welcome() // 4 missed, 2 kept: missed

	for _, want := range []string{
		`relay_resumes_total{result="recovered"} 1`,
		`relay_resumes_total{result="missed"} 1`,
		"relay_publish_to_fanout_seconds_count ",
		"relay_rooms 2",
		"relay_broker_up 1",
		"relay_broker_rtt_seconds ",
	} {
		testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if m := metricsText(t, n); !strings.Contains(m, want) {
				return fmt.Errorf("/metrics lacks %q", want)
			}
			return nil
		})
	}
}

func metricsText(t *testing.T, n *nodetest.Node) string {
	t.Helper()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
