package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/web"
	"github.com/relay/relay/internal/wstest"
)

// The page's connection is cut while another client keeps talking in two
// rooms, and its reconnect is held until more was said: the page resumes,
// shows every message exactly once and in order, the ones it missed
// included, and says how many it recovered. The page sits behind a TCP
// proxy so that the node (and its history and epoch) stays up.
func TestPageResumesAfterConnectionCut(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	px := testkit.StartProxy(t, n.Addr)

	tom := wstest.Dial(t, n.WS("name=tom"), nil)
	tom.Welcome()
	tom.Send(`{"type":"join","room":"ops"}`)
	tom.Expect("tom's join of ops", wstest.IsEvent("join", "tom", "ops"))
	for _, early := range []string{"early 1", "early 2"} {
		tom.Send(`{"type":"message","room":"ops","data":"` + early + `"}`)
		tom.Expect(early, wstest.IsChat(early))
	}

	p := openPage(t, "kim", "http://"+px.Addr+"/demo?name=kim")
	p.waitState("live")
	p.join("ops") // the page asks for ops's last messages
	p.waitOnline("ops", 2)
	p.waitMessage("ops", "tom", "early 2")

	talk := startTalker(t, tom, "tom", "lobby", "ops")
	p.waitMessage(talk.waitSent(t, 10))

	px.Blackhole() // the page's connection goes silent: what tom says now it misses
	talk.waitSent(t, talk.sent()+20)
	px.Cut()
	p.waitState("reconnecting")
	talk.waitSent(t, talk.sent()+20) // the reconnect is held meanwhile
	px.Heal()
	p.waitState("live")
	p.waitFor("a resume that recovered at least the 40 messages said while away",
		`[...document.querySelectorAll('#messages li.resume')].some(li =>
			Number(li.dataset.recovered) >= 40 && li.dataset.missed === '' &&
			/^resumed: recovered \d+ messages$/.test(li.textContent.replace(/^[\d:]+/, '')))`)
	lastRoom, lastUser, lastText := talk.waitSent(t, talk.sent()+10)
	sent := talk.stop()
	p.waitMessage(lastRoom, lastUser, lastText)

	for _, room := range []string{"lobby", "ops"} {
		var shown []string
		p.eval(`[...document.querySelectorAll('#messages li.msg')].filter(li =>
			li.dataset.room === `+js(room)+` && li.dataset.user === 'tom').map(li => li.querySelector('.text').textContent)`, &shown)
		want := sent[room]
		if room == "ops" {
			want = append([]string{"early 1", "early 2"}, want...)
		}
		if !slices.Equal(shown, want) {
			t.Errorf("%s: the page shows %d of tom's messages, want the %d sent, each once, in order:\n got %q\nwant %q",
				room, len(shown), len(want), shown, want)
		}
	}
	var check struct {
		Errors    []string
		Resumes   int
		FromLast  int
		Recovered int
	}
	p.eval(`({
		Errors: [...document.querySelectorAll('#messages li.error')].map(li => li.textContent),
		Resumes: document.querySelectorAll('#messages li.resume').length,
		FromLast: document.querySelectorAll('#messages li.msg[data-from="last"]').length,
		Recovered: document.querySelectorAll('#messages li.msg[data-from="resume"]').length,
	})`, &check)
	if len(check.Errors) != 0 || check.Resumes != 1 || check.FromLast != 2 || check.Recovered < 40 {
		t.Errorf("page shows %+v: want no error line (no second join of ops), one resume, the 2 early messages from the join's history, and at least 40 recovered", check)
	}
	p.waitOnline("ops", 2)

	p.say("ops", "back online")
	tom.Expect("kim's message after the resume", wstest.IsChat("back online"))
}

// talker is a client that says numbered lines in turn in some rooms until
// stopped, keeping what it sent.
type talker struct {
	user   string
	order  []string // rooms, in turn
	mu     sync.Mutex
	rooms  map[string][]string
	count  int
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

// startTalker has c, connected as user and a member of rooms, talk.
func startTalker(t *testing.T, c *wstest.Client, user string, rooms ...string) *talker {
	ctx, cancel := context.WithCancel(context.Background())
	tk := &talker{user: user, order: rooms, rooms: make(map[string][]string), cancel: cancel, done: make(chan struct{})}
	go func() { // ends at stop, or with the test
		defer close(tk.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			room, text := rooms[i%len(rooms)], fmt.Sprintf("m%04d", i)
			b, _ := json.Marshal(map[string]string{"type": "message", "room": room, "data": text})
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.WS.Write(wctx, websocket.MessageText, b)
			wcancel()
			tk.mu.Lock()
			if err != nil {
				tk.err = err
				tk.mu.Unlock()
				return
			}
			tk.rooms[room] = append(tk.rooms[room], text)
			tk.count++
			tk.mu.Unlock()
		}
	}()
	t.Cleanup(func() { tk.stop() })
	return tk
}

func (tk *talker) sent() int {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.count
}

// waitSent waits until n lines were sent and returns the n-th: its room,
// sender and text.
func (tk *talker) waitSent(t *testing.T, n int) (room, user, text string) {
	t.Helper()
	testkit.CheckFor(t, wait, 5*time.Millisecond, func() error {
		tk.mu.Lock()
		defer tk.mu.Unlock()
		if tk.err != nil {
			t.Fatalf("talker: %v", tk.err)
		}
		if tk.count < n {
			return fmt.Errorf("talker sent %d lines, want %d", tk.count, n)
		}
		room, user, text = tk.order[(n-1)%len(tk.order)], tk.user, fmt.Sprintf("m%04d", n-1)
		return nil
	})
	return room, user, text
}

// stop ends the talk and returns what was said in each room.
func (tk *talker) stop() map[string][]string {
	tk.cancel()
	<-tk.done
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.rooms
}

// relay.js against a scripted node, frame by frame: where it starts in each
// stream, the resume query it reconnects with, that it sends no join for
// the rooms the resume rejoins but still leaves lobby, that it drops
// duplicates, tells replayed messages from live ones, and reports a resume
// that missed a stream and a gap.
func TestClientTracksStreamsAndResumes(t *testing.T) {
	t.Parallel()
	fake := startFakeRelay(t)
	p := openPage(t, "jo", fake.URL+"/page")
	p.eval(`window.t = {got: [], states: []};
		t.relay = new Relay('/ws', {name: 'jo', minDelay: 50});
		t.relay.on('state', (s, info) => t.states.push(s === 'live' ? s + ' ' + JSON.stringify(info) : s));
		t.relay.on('message', (m, meta) => t.got.push(m.room + '#' + m.seq + ' ' + m.data + ' ' + meta.from));
		t.relay.on('notification', (n, meta) => t.got.push(meta.stream + '#' + n.seq + ' ' + n.data + ' ' + meta.from));
		t.relay.on('gap', (g) => t.got.push('gap ' + g.stream + '#' + g.seq));
		t.relay.join('ops');
		t.relay.join('dev', {last: 2});
		true`, nil)

	c := fake.next(t)
	if c.query.Has("epoch") || c.query.Has("since") {
		t.Fatalf("first connection %v: want no resume", c.query)
	}
	c.send(t, `{"type":"system","event":"welcome","user":"jo","node":"fake","room":"lobby","online":1,"epoch":"e1","seq":{"*":3,"@":0,"lobby":10}}`)
	c.expect(t, `{"type":"join","room":"ops"}`, `{"type":"join","room":"dev","last":2}`)
	c.send(t,
		`{"type":"system","event":"join","user":"jo","room":"ops","online":1,"seq":20}`,
		`{"type":"system","event":"join","user":"jo","room":"dev","online":1,"seq":7}`,
		`{"type":"message","room":"dev","user":"al","data":"x","seq":6}`,
		`{"type":"message","room":"dev","user":"al","data":"y","seq":7}`,
		`{"type":"message","room":"lobby","user":"al","data":"a","seq":11}`,
		`{"type":"message","room":"lobby","user":"al","data":"a","seq":11}`,
		`{"type":"message","room":"ops","user":"al","data":"b","seq":21}`,
		`{"type":"notification","data":"all","seq":4}`,
		`{"type":"notification","user":"jo","data":"you","seq":1}`,
		`{"type":"message","room":"lobby","user":"al","data":"c","seq":12}`)
	p.waitFor("7 frames", `t.got.length === 7`)
	p.eval(`t.relay.leave('lobby'); true`, nil)
	c.expect(t, `{"type":"leave","room":"lobby"}`)
	c.close(websocket.StatusServiceRestart, "service restart")

	c = fake.next(t)
	if e, s := c.query.Get("epoch"), c.query.Get("since"); e != "e1" || s != "*:4,@:1,ops:21,dev:7" || c.query.Get("name") != "jo" {
		t.Fatalf("resume query %v: want name=jo, epoch=e1 and since=*:4,@:1,ops:21,dev:7", c.query)
	}
	c.send(t,
		`{"type":"system","event":"welcome","user":"jo","node":"fake","room":"lobby","online":1,"epoch":"e1","seq":{"*":5,"@":1,"lobby":15},"recovered":false,"missed":["dev"]}`,
		`{"type":"system","event":"join","user":"jo","room":"ops","online":1,"seq":23}`,
		`{"type":"system","event":"join","user":"jo","room":"dev","online":1,"seq":9}`,
		`{"type":"notification","data":"all again","seq":5}`,
		`{"type":"message","room":"ops","user":"al","data":"d","seq":22}`,
		`{"type":"message","room":"ops","user":"al","data":"e","seq":23}`,
		`{"type":"message","room":"ops","user":"al","data":"b","seq":21}`,
		`{"type":"message","room":"ops","user":"al","data":"f","seq":24}`,
		`{"type":"message","room":"dev","user":"al","data":"g","seq":10}`,
		`{"type":"system","event":"gap","stream":"ops","epoch":"e1","seq":30,"data":"gap"}`,
		`{"type":"message","room":"ops","user":"al","data":"h","seq":31}`)
	p.waitFor("14 frames", `t.got.length === 14`)
	// The frames relay.js sent on its own come before this ping: no join.
	p.eval(`t.relay.ping()`, nil)
	c.expect(t, `{"type":"leave","room":"lobby"}`, `{"type":"ping"}`)

	var got struct {
		Got        []string
		States     []string
		Duplicates int
		Since      string
	}
	p.eval(`({Got: t.got, States: t.states, Duplicates: t.relay.duplicates, Since: [...t.relay.positions].join(' ')})`, &got)
	want := []string{
		"dev#6 x last", "dev#7 y last", "lobby#11 a live", "ops#21 b live", "*#4 all live", "@#1 you live", "lobby#12 c live",
		"*#5 all again resume", "ops#22 d resume", "ops#23 e resume", "ops#24 f live", "dev#10 g live", "gap ops#30", "ops#31 h live",
	}
	if !slices.Equal(got.Got, want) {
		t.Errorf("listeners got\n%q\nwant\n%q", got.Got, want)
	}
	wantStates := []string{
		"connecting", `live {"recovered":null,"missed":[]}`, "reconnecting", "connecting", `live {"recovered":false,"missed":["dev"]}`,
	}
	if !slices.Equal(got.States, wantStates) || got.Duplicates != 2 {
		t.Errorf("states %q, %d duplicates dropped; want %q and 2", got.States, got.Duplicates, wantStates)
	}
	if got.Since != "*,5 @,1 ops,31 dev,10" {
		t.Errorf("positions %q", got.Since)
	}
}

// fakeRelay serves relay.js, a blank page that loads it, and a WebSocket
// endpoint whose connections the test drives by hand.
type fakeRelay struct {
	URL   string
	conns chan *fakeConn
}

type fakeConn struct {
	query url.Values
	ws    *websocket.Conn
	done  chan struct{}
	once  sync.Once
}

func startFakeRelay(t *testing.T) *fakeRelay {
	f := &fakeRelay{conns: make(chan *fakeConn, 4)}
	mux := http.NewServeMux()
	mux.Handle("/relay.js", web.Handler())
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>relay.js</title><link rel="icon" href="data:,"><script src="/relay.js"></script>`)
	})
	var mu sync.Mutex
	var open []*fakeConn
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c := &fakeConn{query: r.URL.Query(), ws: ws, done: make(chan struct{})}
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
		f.conns <- c
		<-c.done
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range open {
			c.close(websocket.StatusGoingAway, "test over")
		}
		mu.Unlock()
		srv.Close()
	})
	f.URL = srv.URL
	return f
}

// next waits for the client's next connection.
func (f *fakeRelay) next(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(wait):
		t.Fatal("relay.js did not connect")
		return nil
	}
}

func (c *fakeConn) send(t *testing.T, frames ...string) {
	t.Helper()
	for _, frame := range frames {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := c.ws.Write(ctx, websocket.MessageText, []byte(frame))
		cancel()
		if err != nil {
			t.Fatalf("send %s: %v", frame, err)
		}
	}
}

// expect reads the client's next frames and compares them, as JSON, with want.
func (c *fakeConn) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, b, err := c.ws.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("reading the client's frame (want %s): %v", w, err)
		}
		var got, exp any
		_ = json.Unmarshal(b, &got)
		_ = json.Unmarshal([]byte(w), &exp)
		gb, _ := json.Marshal(got)
		eb, _ := json.Marshal(exp)
		if string(gb) != string(eb) {
			t.Fatalf("the client sent %s, want %s", b, w)
		}
	}
}

func (c *fakeConn) close(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		_ = c.ws.Close(code, reason)
		close(c.done)
	})
}
