// Package wstest is a real WebSocket test client for relay: one goroutine
// reads frames into a channel so that tests can wait for a frame, skip to
// one, or check that none arrives before a marker, without sleeping.
package wstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/protocol"
)

// Wait is how long a test waits for a frame before failing.
const Wait = 5 * time.Second

// Frame is a server frame as a client sees it.
type Frame struct {
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
	// Streams: Seq is a number in stream frames and own joins, an object
	// in the welcome; both forms are in In.Seq.
	Epoch     string   `json:"epoch"`
	Stream    string   `json:"stream"`
	Recovered *bool    `json:"recovered"`
	Missed    []string `json:"missed"`
	// Private rooms and who: a resume's refused rooms, a who answer, a
	// removal's reason.
	Forbidden []string         `json:"forbidden"`
	Users     []string         `json:"users"`
	Truncated bool             `json:"truncated"`
	Reason    string           `json:"reason"`
	Request   string           `json:"request"` // on an error: the type of the frame it refuses
	In        protocol.InFrame `json:"-"`
	Raw       string           `json:"-"`
	At        time.Time        `json:"-"` // when the client read it
}

func (f Frame) String() string { return f.Raw }

// Text returns Data as a string, or "" if it is not a JSON string.
func (f Frame) Text() string {
	var s string
	_ = json.Unmarshal(f.Data, &s)
	return s
}

// Count returns Online, or -1 if the frame has none.
func (f Frame) Count() int {
	if f.Online == nil {
		return -1
	}
	return *f.Online
}

// Client is a real coder/websocket client.
type Client struct {
	t      testing.TB
	WS     *websocket.Conn
	Frames chan Frame
	done   chan struct{}
	mu     sync.Mutex
	err    error // why reading stopped
}

// Dial connects or fails the test.
func Dial(t testing.TB, url string, opts *websocket.DialOptions) *Client {
	t.Helper()
	c, err := TryDial(t, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

// TryDial connects; a refused upgrade's error carries the HTTP status and
// body. The connection is closed when the test ends.
func TryDial(t testing.TB, url string, opts *websocket.DialOptions) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
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
	c := &Client{t: t, WS: ws, Frames: make(chan Frame, 100000), done: make(chan struct{})}
	go c.readLoop() // ends when the connection closes, at the latest in Cleanup
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c, nil
}

func (c *Client) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.WS.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		f := Frame{Raw: string(b), At: time.Now()}
		if err := json.Unmarshal(b, &f); err != nil {
			c.t.Errorf("server sent invalid JSON %q: %v", b, err)
		}
		_ = json.Unmarshal(b, &f.In)
		c.Frames <- f
	}
}

// Send writes a text frame or fails the test.
func (c *Client) Send(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := c.WS.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// SendJSON marshals v and sends it.
func (c *Client) SendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Send(string(b))
}

// Next returns the next frame, failing the test if none comes in time.
func (c *Client) Next() Frame {
	c.t.Helper()
	select {
	case f := <-c.Frames:
		return f
	case <-time.After(Wait):
		c.t.Fatalf("no frame within %v (read error: %v)", Wait, c.ReadErr())
		return Frame{}
	}
}

// Expect skips frames until one matches, failing if none does within d
// (Wait if d is 0).
func (c *Client) Expect(desc string, match func(Frame) bool) Frame {
	c.t.Helper()
	return c.ExpectWithin(Wait, desc, match)
}

// ExpectWithin is Expect with its own deadline.
func (c *Client) ExpectWithin(d time.Duration, desc string, match func(Frame) bool) Frame {
	c.t.Helper()
	deadline := time.After(d)
	var seen []string
	for {
		select {
		case f := <-c.Frames:
			if match(f) {
				return f
			}
			if len(seen) < 20 {
				seen = append(seen, f.Raw)
			}
		case <-deadline:
			c.t.Fatalf("no %s within %v (read error: %v); saw %v", desc, d, c.ReadErr(), seen)
			return Frame{}
		}
	}
}

// QuietUntil fails if a forbidden frame arrives before the marker does.
// Callers send a marker after the action under test, so "nothing arrived"
// is checked without sleeping.
func (c *Client) QuietUntil(marker, forbidden func(Frame) bool) {
	c.t.Helper()
	deadline := time.After(Wait)
	for {
		select {
		case f := <-c.Frames:
			if forbidden(f) {
				c.t.Fatalf("unexpected frame %s", f.Raw)
			}
			if marker(f) {
				return
			}
		case <-deadline:
			c.t.Fatalf("marker not seen within %v", Wait)
		}
	}
}

// ReadErr returns why reading stopped, or nil.
func (c *Client) ReadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Open reports whether the connection is still being read.
func (c *Client) Open() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Closed waits for the connection to end and returns the close status the
// server sent (-1 if none).
func (c *Client) Closed() websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
		return websocket.CloseStatus(c.ReadErr())
	case <-time.After(Wait):
		c.t.Fatalf("connection still open after %v", Wait)
		return 0
	}
}

// Welcome returns the first frame, failing unless it is the welcome.
func (c *Client) Welcome() Frame {
	c.t.Helper()
	f := c.Next()
	if f.Type != "system" || f.Event != "welcome" {
		c.t.Fatalf("first frame is not the welcome: %s", f.Raw)
	}
	return f
}

// IsEvent matches a system event; an empty user matches any user.
func IsEvent(event, user, room string) func(Frame) bool {
	return func(f Frame) bool {
		return f.Type == "system" && f.Event == event && (user == "" || f.User == user) && f.Room == room
	}
}

// IsChat matches a chat message whose data is the JSON string text.
func IsChat(text string) func(Frame) bool {
	return func(f Frame) bool { return f.Type == "message" && f.Text() == text }
}

// IsNote matches a notification with text.
func IsNote(text string) func(Frame) bool {
	return func(f Frame) bool { return f.Type == "notification" && f.Text() == text }
}

// IsError matches an error frame with code.
func IsError(code string) func(Frame) bool {
	return func(f Frame) bool { return f.Type == "error" && f.Code == code }
}

// Seq is a stream frame's position, 0 if it has none.
func (f Frame) Seq() uint64 { return f.In.Seq.N }

// IsWho matches a who answer for room.
func IsWho(room string) func(Frame) bool {
	return func(f Frame) bool { return f.Type == "who" && f.Room == room }
}

// CloseError waits for the connection to end and returns the close frame
// the server sent (Code -1 if none).
func (c *Client) CloseError() websocket.CloseError {
	c.t.Helper()
	select {
	case <-c.done:
		var ce websocket.CloseError
		if errors.As(c.ReadErr(), &ce) {
			return ce
		}
		return websocket.CloseError{Code: -1}
	case <-time.After(Wait):
		c.t.Fatalf("connection still open after %v", Wait)
		return websocket.CloseError{}
	}
}

// IsPong matches a pong.
func IsPong(f Frame) bool { return f.Type == "pong" }
