package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
)

// History reads have a byte budget: a join with last and a resume read
// only what the client's queue can take (issue 21, items 5 and 6).

// readCounter is a broker that counts the entry bytes its History calls
// return: what a replay costs the node, whether it is sent or not.
type readCounter struct {
	hub.Broker
	read atomic.Int64
}

func (b *readCounter) History(ctx context.Context, topic string, q broker.HistoryQuery) (broker.History, error) {
	h, err := b.Broker.History(ctx, topic, q)
	for _, e := range h.Entries {
		b.read.Add(int64(len(e.Data)))
	}
	return h, err
}

// sizedConn is a testConn that also counts the bytes queued to it.
type sizedConn struct {
	*testConn
	mu    sync.Mutex
	bytes int
	first []byte // the first frame's payload
}

func (c *sizedConn) Send(f []byte) bool {
	c.mu.Lock()
	c.bytes += len(f)
	if c.first == nil {
		c.first = textPayload(c.t, f)
	}
	c.mu.Unlock()
	return c.testConn.Send(f)
}

// welcomeMissed is what the first frame, a resume's welcome, says missed.
func (c *sizedConn) welcomeMissed(t *testing.T) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var w struct {
		Recovered *bool    `json:"recovered"`
		Missed    []string `json:"missed"`
	}
	if err := json.Unmarshal(c.first, &w); err != nil || w.Recovered == nil {
		t.Fatalf("welcome %s: %v, want recovered and missed", c.first, err)
	}
	return w.Missed
}

func (c *sizedConn) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// newBudgetHub starts a hub on b with the default hold budget (1 MiB).
func newBudgetHub(t *testing.T, b hub.Broker) *hub.Hub {
	t.Helper()
	h := hub.New(hub.Options{Node: "n1", PresenceLimit: 100, PresenceInterval: time.Hour}, b)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// fill posts n notifications of size bytes to room, numbered from 1.
func fill(t testing.TB, h *hub.Hub, room string, n, size int) {
	t.Helper()
	for i := range n {
		text := fmt.Sprintf("%s %d ", room, i+1)
		text += strings.Repeat("x", max(0, size-len(text)))
		if _, _, err := h.Notify(context.Background(), hub.Target{Room: room}, text); err != nil {
			t.Fatal(err)
		}
	}
}

// noteNumbers returns the numbers of room's notifications in ev, in order.
func noteNumbers(ev []event, room string) []int {
	var out []int
	for _, e := range ev {
		var n int
		if e.Type == "notification" && e.Room == room {
			if _, err := fmt.Sscanf(strings.Trim(string(e.Data), `"`), room+" %d", &n); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

const holdBytes = 1 << 20 // the hub's default, as RELAY_SEND_QUEUE_BYTES's

// A join asking for the last 50 of 50 messages of 25 KB gets the newest
// that fit in half its queue, in order, told so by "truncated" on its own
// join; the node reads no more than it sends.
func TestJoinWithLastKeepsToTheBudget(t *testing.T) {
	t.Parallel()
	b := &readCounter{Broker: newHookBroker(t)}
	h := newBudgetHub(t, b)
	fill(t, h, "pub", 50, 25_000)

	conn := &sizedConn{testConn: &testConn{t: t}}
	c, err := h.Register(context.Background(), conn, "demo", nil, protocol.Resume{})
	if err != nil {
		t.Fatal(err)
	}
	conn.take()
	before, read := conn.queued(), b.read.Load()
	if err := h.Join(context.Background(), c, "pub", 50); err != nil {
		t.Fatal(err)
	}
	ev := conn.take()
	if len(ev) == 0 || ev[0].Event != "join" || ev[0].User != "demo" {
		t.Fatalf("first frame after the join: %+v, want the own join", ev)
	}
	if !ev[0].Truncated {
		t.Errorf("own join %+v: want truncated, since 50 × 25 KB do not fit in half a 1 MiB queue", ev[0])
	}
	got := noteNumbers(ev, "pub")
	if len(got) == 0 || got[len(got)-1] != 50 || len(got) >= 50 {
		t.Fatalf("replayed %v, want the newest that fit, ending with 50", got)
	}
	for i := range got {
		if got[i] != 51-len(got)+i {
			t.Fatalf("replayed %v, want consecutive and oldest first", got)
		}
	}
	if q := conn.queued() - before; q > holdBytes/2 {
		t.Errorf("the join queued %d bytes, past half the queue (%d)", q, holdBytes/2)
	}
	if r := b.read.Load() - read; r > holdBytes/2 {
		t.Errorf("the join read %d bytes of history, past half the queue (%d)", r, holdBytes/2)
	}
	if len(conn.closes) != 0 {
		t.Errorf("closed %v", conn.closes)
	}

	// A room whose last messages fit is replayed whole, not truncated.
	fill(t, h, "small", 5, 100)
	if err := h.Join(context.Background(), c, "small", 3); err != nil {
		t.Fatal(err)
	}
	ev = conn.take()
	if len(ev) == 0 || ev[0].Truncated || !slices.Equal(noteNumbers(ev, "small"), []int{3, 4, 5}) {
		t.Fatalf("join of small with last 3: %+v, want 3, 4, 5 and not truncated", ev)
	}
}

// A resume reads at most about the client's queue of history in all,
// whatever the streams it names hold: what fits is replayed, the streams
// that do not are reported missed, as for any gap history cannot fill.
func TestResumeKeepsToTheBudget(t *testing.T) {
	t.Parallel()
	b := &readCounter{Broker: newHookBroker(t)}
	h := newBudgetHub(t, b)
	owner := &testConn{t: t}
	if _, err := h.Register(context.Background(), owner, "owner", nil, protocol.Resume{}); err != nil {
		t.Fatal(err)
	}
	epoch := owner.take()[0].Epoch
	fill(t, h, "small", 3, 100)
	fill(t, h, "mid", 5, 60_000) // 300 KB: fits
	big := []string{"big1", "big2", "big3", "big4", "big5"}
	for _, r := range big {
		fill(t, h, r, 20, 60_000) // 1.2 MB each: none fits
	}

	rooms := append([]string{"small", "mid"}, big...)
	from := protocol.Resume{Epoch: epoch, Since: map[string]uint64{}, Rooms: rooms}
	for _, r := range rooms {
		from.Since[r] = 0
	}
	conn := &sizedConn{testConn: &testConn{t: t}}
	read := b.read.Load()
	if _, err := h.Register(context.Background(), conn, "back", nil, from); err != nil {
		t.Fatal(err)
	}
	if r := b.read.Load() - read; r > holdBytes {
		t.Errorf("the resume read %d bytes of history, past the queue (%d)", r, holdBytes)
	}
	if q := conn.queued(); q > holdBytes/2+10_000 {
		t.Errorf("the resume queued %d bytes, past half the queue (%d) and its own frames", q, holdBytes/2)
	}
	ev := conn.take()
	w := ev[0]
	if w.Event != "welcome" {
		t.Fatalf("first frame %+v, want the welcome", w)
	}
	if missed := conn.welcomeMissed(t); !slices.Equal(missed, big) {
		t.Errorf("missed %v, want %v", missed, big)
	}
	if got := noteNumbers(ev, "small"); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("small replayed %v, want 1, 2, 3", got)
	}
	if got := noteNumbers(ev, "mid"); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Errorf("mid replayed %v, want 1 to 5", got)
	}
	for _, r := range big {
		if got := noteNumbers(ev, r); len(got) != 0 {
			t.Errorf("%s replayed %v although missed", r, got)
		}
	}
	if len(conn.closes) != 0 {
		t.Errorf("closed %v", conn.closes)
	}
}
