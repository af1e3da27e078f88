package wstest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/protocol"
)

// Resumer is a client that does what relay's own clients do when their
// connection ends: reconnect (to the next of its URLs: another node, or the
// same load balancer) and resume with the positions it has, so that tests
// can check that nothing is lost, duplicated or reordered across faults.
type Resumer struct {
	t     testing.TB
	urls  []string // ws://host/ws, tried in turn
	query string   // ?name=... without the resume part
	rooms []string // joined after the first welcome

	mu         sync.Mutex
	pos        protocol.Positions
	got        map[string][]string // stream → data of each message, in arrival order
	problems   []string            // gaps, reorderings, refused resumes
	welcomes   []Frame
	node       string // of the current connection
	ws         *websocket.Conn
	connected  chan struct{} // closed at each welcome, then replaced
	reconnects int

	stop chan struct{}
	done chan struct{}
}

// StartResumer connects to urls[0] with query (e.g. "name=ann"), joins
// rooms, and keeps itself connected until the test ends.
func StartResumer(t testing.TB, query string, rooms []string, urls ...string) *Resumer {
	t.Helper()
	r := &Resumer{t: t, urls: urls, query: query, rooms: rooms, got: make(map[string][]string),
		connected: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run() // ends at stop, joined in Cleanup
	t.Cleanup(r.Close)
	r.WaitLive(Wait)
	return r
}

// Close stops reconnecting and closes the connection. Idempotent.
func (r *Resumer) Close() {
	r.mu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	ws := r.ws
	r.mu.Unlock()
	if ws != nil {
		_ = ws.CloseNow()
	}
	<-r.done
}

func (r *Resumer) run() {
	defer close(r.done)
	first := true
	for i := 0; ; i++ {
		select {
		case <-r.stop:
			return
		default:
		}
		url := r.urls[i%len(r.urls)] + "?" + r.query
		r.mu.Lock()
		if q := r.pos.Query(); q != "" {
			url += "&" + q
		}
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws, _, err := websocket.Dial(ctx, url, nil)
		cancel()
		if err != nil {
			select {
			case <-r.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		ws.SetReadLimit(-1)
		r.mu.Lock()
		r.ws = ws
		if !first {
			r.reconnects++
		}
		r.mu.Unlock()
		r.read(ws, first)
		first = false
		_ = ws.CloseNow()
	}
}

// read takes frames until the connection ends.
func (r *Resumer) read(ws *websocket.Conn, first bool) {
	for {
		_, b, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		var f Frame
		if err := json.Unmarshal(b, &f); err != nil {
			r.problem("invalid JSON %q", b)
			continue
		}
		_ = json.Unmarshal(b, &f.In)
		f.Raw = string(b)
		r.mu.Lock()
		fresh, err := r.pos.Observe(f.In)
		if err != nil {
			r.problems = append(r.problems, fmt.Sprintf("%v (frame %s)", err, b))
		}
		if stream := protocol.StreamOf(f.In); stream != "" && fresh {
			r.got[stream] = append(r.got[stream], f.Text())
		}
		if f.Type == "system" && f.Event == "welcome" {
			r.welcomes = append(r.welcomes, f)
			r.node = f.Node
			if f.Recovered != nil && !*f.Recovered {
				r.problems = append(r.problems, "resume not recovered: "+f.Raw)
			}
			if !first || len(r.rooms) == 0 {
				close(r.connected)
				r.connected = make(chan struct{})
			}
		}
		if f.Type == "system" && f.Event == "gap" {
			r.problems = append(r.problems, "gap frame: "+f.Raw)
		}
		if first && f.Type == "system" && f.Event == "welcome" {
			for _, room := range r.rooms {
				_ = ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"join","room":"`+room+`"}`))
			}
		}
		if first && f.Type == "system" && f.Event == "join" && f.In.Seq.Set && len(r.rooms) > 0 && f.Room == r.rooms[len(r.rooms)-1] {
			close(r.connected)
			r.connected = make(chan struct{})
		}
		r.mu.Unlock()
	}
}

func (r *Resumer) problem(format string, args ...any) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// WaitLive waits for the next welcome (after its rooms are joined, the first
// time), failing the test after d.
func (r *Resumer) WaitLive(d time.Duration) {
	r.t.Helper()
	r.mu.Lock()
	ch := r.connected
	n := len(r.welcomes)
	r.mu.Unlock()
	if n > 0 && r.Connected() {
		return
	}
	select {
	case <-ch:
	case <-time.After(d):
		r.t.Fatalf("resumer not connected within %v", d)
	}
}

// Connected reports whether the resumer has an open connection that got
// its welcome.
func (r *Resumer) Connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ws != nil && len(r.welcomes) > 0
}

// Node is the node of the current (or last) connection.
func (r *Resumer) Node() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.node
}

// Reconnects counts the connections after the first.
func (r *Resumer) Reconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reconnects
}

// Received returns the data of every message of stream, once each, in
// arrival order.
func (r *Resumer) Received(stream string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[stream]...)
}

// Check fails the test if the resumer saw a gap, a reordering, a refused
// resume or a duplicate, or if stream's messages are not want, in order.
func (r *Resumer) Check(name, stream string, want []string) {
	r.t.Helper()
	r.mu.Lock()
	problems, dups := append([]string(nil), r.problems...), r.pos.Duplicates
	r.mu.Unlock()
	if len(problems) > 0 {
		r.t.Errorf("%s: %d problems, first: %s", name, len(problems), strings.Join(problems[:min(3, len(problems))], "; "))
	}
	if dups > 0 {
		r.t.Errorf("%s: %d duplicates reached the client", name, dups)
	}
	got := r.Received(stream)
	if len(got) != len(want) {
		r.t.Errorf("%s: %d messages in %s, want %d (%d reconnects)", name, len(got), stream, len(want), r.Reconnects())
		return
	}
	for i := range want {
		if got[i] != want[i] {
			r.t.Errorf("%s: message %d of %s is %q, want %q", name, i, stream, got[i], want[i])
			return
		}
	}
}
