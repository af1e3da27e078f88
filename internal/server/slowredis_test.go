package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

// The slow-Redis suite of issue 21: every Redis reply to one node is
// delayed 2–3 s for 20 s (a failing disk, a busy shard, a long script)
// while 400 chatters in 20 rooms and 200 idle clients sit on it, and
// observers on a second, healthy node watch. What a user checks:
//   - nobody is dropped (the heartbeat must not lose a client whose frames
//     wait for Redis), and frames that need no Redis are answered at once;
//   - nobody on the other node is told a slow node's users left;
//   - no message answered "not sent" was sent, and none is stored twice;
//   - chat still works, slowly.
func TestSlowRedisDropsNobodyAndAnswersHonestly(t *testing.T) {
	if testing.Short() {
		t.Skip("a 40-second fault run")
	}
	const (
		rooms    = 20
		chatters = 400
		idle     = 200
		window   = 20 * time.Second
	)
	srv := redistest.Start(t)
	proxy := testkit.StartProxy(t, srv.Addr())
	common := map[string]string{
		"RELAY_PING_INTERVAL":  "2s", // a reader stuck for 4 s is dropped
		"RELAY_PONG_TIMEOUT":   "2s",
		"RELAY_HISTORY_SIZE":   "5000",
		"RELAY_HISTORY_TTL":    "10m",
		"RELAY_RATE_LIMIT":     "0",
		"RELAY_PRESENCE_LIMIT": "100",
	}
	env := func(id, redis string) map[string]string {
		e := map[string]string{"RELAY_NODE_ID": id, "RELAY_REDIS_URL": redis}
		for k, v := range common {
			e[k] = v
		}
		return e
	}
	slow := nodetest.Start(t, env("slow", "redis://"+proxy.Addr+"/0"))
	steady := nodetest.Start(t, env("steady", srv.URL()))

	room := func(i int) string { return fmt.Sprintf("slow-%d", i%rooms) }
	observer := dialSlowClient(t, steady.WS(""))
	for i := range rooms {
		observer.join(t, room(i))
	}
	var talkers []*slowClient
	for i := range chatters {
		c := dialSlowClient(t, slow.WS(""))
		c.join(t, room(i))
		talkers = append(talkers, c)
	}
	var idlers []*slowClient
	for range idle {
		idlers = append(idlers, dialSlowClient(t, slow.WS("")))
	}
	// Chat works before the fault: one message per room reaches the
	// observer on the other node.
	for i := range rooms {
		talkers[i].chat(room(i))
	}
	testkit.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := observer.delivered(); n < rooms {
			return fmt.Errorf("observer got %d of %d warm-up chats", n, rooms)
		}
		return nil
	})

	proxy.DelayReplies(2*time.Second, 3*time.Second)
	faultStart := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range talkers {
		wg.Go(func() {
			// Staggered: 400 chatters, one chat each 2 s, and a ping and an
			// unknown frame (answered without Redis) each second.
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				c.ping()
				if n%2 == 0 {
					c.chat(room(i))
				}
			}
		})
	}
	type answer struct {
		status int
		id     string
		text   string
	}
	var (
		answersMu sync.Mutex
		answers   []answer
	)
	wg.Go(func() {
		client := &http.Client{Timeout: 15 * time.Second}
		var inflight sync.WaitGroup
		defer inflight.Wait()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			text := fmt.Sprintf("notify-%d", n)
			inflight.Go(func() {
				body := fmt.Sprintf(`{"message":%q}`, text)
				resp, err := client.Post(slow.URL()+"/api/notify", "application/json", strings.NewReader(body))
				a := answer{text: text}
				if err == nil {
					var m struct {
						ID string `json:"id"`
					}
					_ = json.NewDecoder(resp.Body).Decode(&m)
					resp.Body.Close()
					a.status, a.id = resp.StatusCode, m.ID
				}
				answersMu.Lock()
				answers = append(answers, a)
				answersMu.Unlock()
			})
		}
	})
	time.Sleep(window)
	close(stop)
	proxy.DelayReplies(0, 0)
	wg.Wait()
	faultEnd := time.Now()
	// What was in flight lands; the slow node's presence catches up.
	time.Sleep(8 * time.Second)

	// 0 clients dropped.
	dropped := 0
	for _, c := range append(append([]*slowClient{}, talkers...), idlers...) {
		if err := c.closedErr(); err != nil {
			if dropped < 3 {
				t.Errorf("%s was dropped: %v", c.user, err)
			}
			dropped++
		}
	}
	if dropped > 0 {
		t.Errorf("%d of %d clients on the slow node were dropped", dropped, chatters+idle)
	}
	// Frames that need no Redis answered at once, whatever Redis does.
	var slowest time.Duration
	unanswered := 0
	for _, c := range talkers {
		d, missing := c.pingLatency()
		slowest, unanswered = max(slowest, d), unanswered+missing
	}
	// Any wait for Redis takes at least its 2 s delay: an answer sooner
	// waited for none (the race detector on a loaded machine has taken 1.1 s).
	if unanswered > 0 || slowest >= 2*time.Second {
		t.Errorf("pings during the fault: slowest answer %v, %d unanswered: want all before any Redis reply (2 s)", slowest, unanswered)
	}
	// No false leaves on the other node.
	if leaves := observer.leftDuring(faultStart, faultEnd.Add(8*time.Second)); len(leaves) > 0 {
		t.Errorf("the steady node announced %d leaves of users who never left, e.g. %s", len(leaves), leaves[0])
	}

	// Chat: no "not sent" answer for a chat that was sent, none stored
	// twice, and chat went on.
	byText := observer.deliveredTexts()
	sent, delivered, codes := 0, 0, map[string]int{}
	for _, c := range talkers {
		mine, notSent := c.sentTexts(), c.notSentAnswers()
		got := 0
		for _, text := range mine {
			if byText[text] > 0 {
				got++
			}
		}
		for code, n := range c.errorCodes() {
			codes[code] += n
		}
		if got+notSent > len(mine) {
			t.Errorf("%s sent %d chats, %d were delivered and %d answered not sent: a not-sent answer for a sent chat", c.user, len(mine), got, notSent)
		}
		sent += len(mine)
		delivered += got
	}
	for text, n := range byText {
		if n > 1 {
			t.Errorf("the observer got %q %d times", text, n)
		}
	}
	t.Logf("chats during the fault: %d sent, %d delivered, error answers %v; slowest ping answer %v", sent, delivered, codes, slowest)
	if delivered < sent/2 {
		t.Errorf("only %d of %d chats delivered: chat must work, slowly", delivered, sent)
	}
	for i := range rooms {
		stored := historyTexts(t, steady, "room="+url.QueryEscape(room(i)))
		for text, n := range stored {
			if n > 1 {
				t.Errorf("room %s stored %q %d times", room(i), text, n)
			}
		}
	}

	// Notifies: 200 means stored once; 503 means not stored; 504 (not
	// confirmed) at most once, and findable by its id.
	stored := historyTexts(t, steady, "")
	statuses := map[int]int{}
	answersMu.Lock()
	defer answersMu.Unlock()
	for _, a := range answers {
		statuses[a.status]++
		n := stored[a.text]
		switch {
		case a.status == http.StatusOK && n != 1:
			t.Errorf("notify %s answered 200 is stored %d times", a.text, n)
		case a.status == http.StatusServiceUnavailable && n != 0:
			t.Errorf("notify %s answered 503 (not sent) is stored %d times", a.text, n)
		case n > 1:
			t.Errorf("notify %s answered %d is stored %d times", a.text, a.status, n)
		}
	}
	t.Logf("notifies during the fault: %v (by status)", statuses)
	// Each notify needs one Redis reply, 2–3 s late, within its 5 s: a
	// connection the pool must dial first pays the handshake's reply too,
	// so not all make it; but some must, and none may be refused outright.
	if statuses[http.StatusOK] == 0 || statuses[http.StatusServiceUnavailable] > 0 {
		t.Errorf("notifies answered %v: some must land, and none be refused while Redis answers", statuses)
	}
}

// historyTexts counts each message's data in a stream's history, read from
// node n (query: "room=R", or "" for the broadcast stream).
func historyTexts(t *testing.T, n *nodetest.Node, query string) map[string]int {
	t.Helper()
	u := n.URL() + "/api/history?limit=1000"
	if query != "" {
		u += "&" + query
	}
	status, body := testkit.Do(t, http.MethodGet, u, n.Config.APIKey, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, status, body)
	}
	var h struct {
		Messages []struct {
			Data json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("history %s: %v", body, err)
	}
	out := map[string]int{}
	for _, m := range h.Messages {
		var s string
		_ = json.Unmarshal(m.Data, &s)
		out[s]++
	}
	return out
}

// slowClient is a light WebSocket client for the suite (hundreds of them):
// it records what the suite checks, not every frame.
type slowClient struct {
	ws   *websocket.Conn
	user string
	done chan struct{}

	seq atomic.Int64 // chats sent

	mu        sync.Mutex
	err       error // why reading stopped
	joined    map[string]chan struct{}
	sent      []string       // chat texts, in order
	pingsSent []time.Time    // unanswered pings, oldest first
	slowPing  time.Duration  // slowest pong
	errCodes  map[string]int // error frames by code
	texts     map[string]int // chat data received (observer)
	leaves    []string       // leave events and presence departures seen
	leaveAt   []time.Time
}

func dialSlowClient(t *testing.T, u string) *slowClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	ws.SetReadLimit(-1)
	c := &slowClient{ws: ws, done: make(chan struct{}), joined: map[string]chan struct{}{},
		errCodes: map[string]int{}, texts: map[string]int{}}
	welcome := make(chan string, 1)
	go c.read(welcome) // ends when the connection does, at the latest in Cleanup
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	select {
	case c.user = <-welcome:
	case <-time.After(10 * time.Second):
		t.Fatalf("no welcome from %s", u)
	}
	return c
}

type slowFrame struct {
	Type    string          `json:"type"`
	Event   string          `json:"event"`
	User    string          `json:"user"`
	Room    string          `json:"room"`
	Data    json.RawMessage `json:"data"`
	Code    string          `json:"code"`
	Left    int             `json:"left"`
	Request string          `json:"request"`
}

func (c *slowClient) read(welcome chan<- string) {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var f slowFrame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		now := time.Now()
		c.mu.Lock()
		switch {
		case f.Event == "welcome":
			welcome <- f.User
		case f.Type == "pong":
			if len(c.pingsSent) > 0 {
				c.slowPing = max(c.slowPing, now.Sub(c.pingsSent[0]))
				c.pingsSent = c.pingsSent[1:]
			}
		case f.Type == "error":
			c.errCodes[f.Code]++
		case f.Event == "join" && f.User == c.user:
			if ch, ok := c.joined[f.Room]; ok {
				close(ch)
				delete(c.joined, f.Room)
			}
		case f.Event == "leave":
			c.leaves, c.leaveAt = append(c.leaves, string(b)), append(c.leaveAt, now)
		case f.Event == "presence" && f.Left > 0:
			c.leaves, c.leaveAt = append(c.leaves, string(b)), append(c.leaveAt, now)
		case f.Type == "message":
			var s string
			_ = json.Unmarshal(f.Data, &s)
			c.texts[s]++
		}
		c.mu.Unlock()
	}
}

func (c *slowClient) send(v any) {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, b) // a failed write shows as a drop
}

func (c *slowClient) join(t *testing.T, room string) {
	t.Helper()
	ch := make(chan struct{})
	c.mu.Lock()
	c.joined[room] = ch
	c.mu.Unlock()
	c.send(map[string]string{"type": "join", "room": room})
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no confirmation of its join of %s", c.user, room)
	}
}

func (c *slowClient) chat(room string) {
	text := fmt.Sprintf("%s-%d", c.user, c.seq.Add(1))
	c.mu.Lock()
	c.sent = append(c.sent, text)
	c.mu.Unlock()
	c.send(map[string]string{"type": "message", "room": room, "data": text})
}

func (c *slowClient) ping() {
	c.mu.Lock()
	c.pingsSent = append(c.pingsSent, time.Now())
	c.mu.Unlock()
	c.send(map[string]string{"type": "ping"})
}

func (c *slowClient) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *slowClient) pingLatency() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slowPing, len(c.pingsSent)
}

func (c *slowClient) delivered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.texts)
}

func (c *slowClient) deliveredTexts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.texts)
}

func (c *slowClient) sentTexts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// notSentAnswers counts the error answers that say a chat was not sent:
// every code but unconfirmed (which says it may have been).
func (c *slowClient) notSentAnswers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for code, k := range c.errCodes {
		if code != "unconfirmed" {
			n += k
		}
	}
	return n
}

func (c *slowClient) errorCodes() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.errCodes)
}

func (c *slowClient) leftDuring(from, to time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, at := range c.leaveAt {
		if !at.Before(from) && !at.After(to) {
			out = append(out, c.leaves[i])
		}
	}
	return out
}
