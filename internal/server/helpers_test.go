package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/config"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/metrics"
	"github.com/relay/relay/internal/server"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// node is one relay node under httptest, wired as cmd/relay wires it.
type node struct {
	url     string // http://127.0.0.1:port
	srv     *server.Server
	hub     *hub.Hub
	broker  *broker.Memory
	metrics *metrics.Metrics
	cfg     config.Config
}

// startNode starts a node with the default config overridden by env.
func startNode(t *testing.T, env map[string]string) *node {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.NodeID == "" || env["RELAY_NODE_ID"] == "" {
		cfg.NodeID = "test-node"
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := broker.NewMemory()
	m := metrics.New()
	h := hub.New(hub.Options{Node: cfg.NodeID, PresenceLimit: cfg.PresenceLimit,
		PresenceInterval: cfg.PresenceInterval, Logger: log, Observer: m}, b)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := server.New(cfg, h, b, m, log)
	ts := httptest.NewServer(srv.Handler())
	n := &node{url: ts.URL, srv: srv, hub: h, broker: b, metrics: m, cfg: cfg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Drain()
		ts.Close()
		srv.Shutdown(ctx)
		h.Close()
		_ = b.Close()
	})
	return n
}

func (n *node) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(n.url, "http") + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// frame is a server frame as a client sees it.
type frame struct {
	Type   string          `json:"type"`
	Event  string          `json:"event"`
	User   string          `json:"user"`
	Node   string          `json:"node"`
	Room   string          `json:"room"`
	Online *int            `json:"online"`
	Joined int             `json:"joined"`
	Left   int             `json:"left"`
	Data   json.RawMessage `json:"data"`
	ID     string          `json:"id"`
	TS     int64           `json:"ts"`
	Code   string          `json:"code"`
	Error  string          `json:"error"`
	raw    string
}

func (f frame) String() string { return f.raw }

func (f frame) text() string {
	var s string
	_ = json.Unmarshal(f.Data, &s)
	return s
}

// client is a real WebSocket client whose frames are read by one goroutine
// into a channel, so tests can wait for a frame without blocking forever.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan frame
	done   chan struct{}
	mu     sync.Mutex
	err    error // why reading stopped
}

func dial(t *testing.T, url string, opts *websocket.DialOptions) *client {
	t.Helper()
	c, err := tryDial(t, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

func tryDial(t *testing.T, url string, opts *websocket.DialOptions) (*client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			return nil, fmt.Errorf("%w (HTTP %d: %s)", err, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil, err
	}
	ws.SetReadLimit(-1)
	c := &client{t: t, ws: ws, frames: make(chan frame, 100000), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c, nil
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		f := frame{raw: string(b)}
		if err := json.Unmarshal(b, &f); err != nil {
			c.t.Errorf("server sent invalid JSON %q: %v", b, err)
		}
		c.frames <- f
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

func (c *client) sendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(string(b))
}

const waitFor = 5 * time.Second

// next returns the next frame, failing the test if none comes in time.
func (c *client) next() frame {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-time.After(waitFor):
		c.t.Fatalf("no frame within %v (read error: %v)", waitFor, c.readErr())
		return frame{}
	}
}

// expect skips frames until one matches, failing if none does in time.
func (c *client) expect(desc string, match func(frame) bool) frame {
	c.t.Helper()
	deadline := time.After(waitFor)
	var seen []string
	for {
		select {
		case f := <-c.frames:
			if match(f) {
				return f
			}
			seen = append(seen, f.raw)
		case <-deadline:
			c.t.Fatalf("no %s within %v; saw %v", desc, waitFor, seen)
		}
	}
}

// quiet asserts that no frame matching arrives before a marker frame does:
// callers send a marker after the action under test, so "nothing arrived" is
// checked without sleeping.
func (c *client) quietUntil(marker func(frame) bool, forbidden func(frame) bool) {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case f := <-c.frames:
			if forbidden(f) {
				c.t.Fatalf("unexpected frame %s", f.raw)
			}
			if marker(f) {
				return
			}
		case <-deadline:
			c.t.Fatalf("marker not seen within %v", waitFor)
		}
	}
}

func (c *client) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// closed waits for the connection to end and returns the close status the
// server sent (-1 if none).
func (c *client) closed() websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
		return websocket.CloseStatus(c.readErr())
	case <-time.After(waitFor):
		c.t.Fatalf("connection still open after %v", waitFor)
		return 0
	}
}

func (c *client) welcome() frame {
	c.t.Helper()
	f := c.next()
	if f.Type != "system" || f.Event != "welcome" {
		c.t.Fatalf("first frame is not the welcome: %s", f.raw)
	}
	return f
}

func isEvent(event, user, room string) func(frame) bool {
	return func(f frame) bool {
		return f.Type == "system" && f.Event == event && (user == "" || f.User == user) && f.Room == room
	}
}

func isChat(text string) func(frame) bool {
	return func(f frame) bool { return f.Type == "message" && f.text() == text }
}

func isError(code string) func(frame) bool {
	return func(f frame) bool { return f.Type == "error" && f.Code == code }
}

func isPong(f frame) bool { return f.Type == "pong" }

// request makes an HTTP request and decodes a JSON answer.
func request(t *testing.T, method, url, auth, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: invalid JSON %q", method, url, raw)
		}
	} else {
		m = map[string]any{"text": string(raw)}
	}
	return resp.StatusCode, m
}

func notify(t *testing.T, n *node, body string) (int, map[string]any) {
	t.Helper()
	return request(t, http.MethodPost, n.url+"/api/notify", n.cfg.APIKey, body)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, desc string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, desc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func online(f frame) int {
	if f.Online == nil {
		return -1
	}
	return *f.Online
}
