package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/protocol"
)

// conn is one load-generator connection. Its reader goroutine accounts for
// every benchmark message it receives and, with -resume, reconnects when the
// connection ends and resumes from the positions it has (protocol.Positions):
// a message replayed after a resume and already seen is dropped before it is
// counted, so that each is counted once per receiver.
type conn struct {
	id   int
	room string
	tr   *tracker
	r    *runner

	mu     sync.Mutex
	ws     *websocket.Conn // the current connection; nil once cut, until the next
	node   string          // from the latest welcome
	closed bool            // closeAll: no reconnecting

	pos protocol.Positions // the reader goroutine's alone

	confirmed chan struct{} // its room join (or the welcome, for lobby) arrived
	publisher atomic.Bool   // its own messages come back to it: not counted
	joinSeen  atomic.Bool
	closeCode atomic.Int32 // the server's close status, -1 if none yet
	presence  atomic.Int64 // system frames other than its own (join/leave/presence)

	dialed   time.Time // when its first dial began; set before the reader starts
	welcomed bool      // its first welcome was timed; the reader goroutine's alone
}

// dial opens connection id and, unless stalled, starts reading from it.
func (r *runner) dial(ctx context.Context, id int, room string, read bool) (*conn, error) {
	dialed := time.Now()
	ws, err := r.open(ctx, id, "")
	if err != nil {
		return nil, err
	}
	c := &conn{id: id, room: room, ws: ws, tr: newTracker(), r: r, confirmed: make(chan struct{}), dialed: dialed}
	c.closeCode.Store(-1)
	if !read {
		return c, nil
	}
	r.readers.Add(1)
	go c.read() // ends when the connection closes (for good, with -resume); joined by runner.closeAll
	if room != "lobby" {
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"`+room+`"}`)); err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
	}
	select {
	case <-c.confirmed:
		return c, nil
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("connection %d: no welcome/join confirmation in 10s", id)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// open dials the WebSocket of connection id, with a resume query if not "".
func (r *runner) open(ctx context.Context, id int, resume string) (*websocket.Conn, error) {
	q := "name=b" + strconv.Itoa(id)
	if r.o.JWTSecret != "" {
		tok, err := auth.Mint(r.o.JWTSecret, "b"+strconv.Itoa(id), 24*time.Hour)
		if err != nil {
			return nil, err
		}
		q = "token=" + tok
	}
	if resume != "" {
		q += "&" + resume
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, r.wsURL+"?"+q, nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			return nil, fmt.Errorf("dial: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(-1)
	return ws, nil
}

// current is the open connection, nil between a cut and the reconnection.
func (c *conn) current() *websocket.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws
}

func (c *conn) nodeName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node
}

// cut closes the connection from the client's side without a close frame,
// as a network that goes away does; it reports whether there was one open.
func (c *conn) cut() bool {
	c.mu.Lock()
	ws := c.ws
	c.ws = nil
	c.mu.Unlock()
	if ws == nil {
		return false
	}
	_ = ws.CloseNow()
	return true
}

// close ends the connection for good. Idempotent.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	ws := c.ws
	c.ws = nil
	c.mu.Unlock()
	if ws != nil {
		_ = ws.CloseNow()
	}
}

// read reads the connection until it ends; with -resume it then
// reconnects and goes on, until the run closes it.
func (c *conn) read() {
	defer c.r.readers.Done()
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	for ws != nil {
		c.readFrom(ws)
		if !c.r.o.Resume {
			return
		}
		ws = c.reconnect()
	}
}

// reconnect dials again with the positions the reader has, after a
// jittered backoff that doubles from 100 ms to 2 s, until it succeeds, the
// run ends, or a minute of failures (then the receiver gives up: what it
// misses counts as lost). It returns nil when it stops.
func (c *conn) reconnect() *websocket.Conn {
	c.mu.Lock()
	c.ws = nil
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil
	}
	c.r.reconnecting.Add(1)
	defer c.r.reconnecting.Add(-1)
	q := c.pos.Query()
	giveUp := time.Now().Add(time.Minute)
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-time.After(rand.N(backoff)):
		case <-c.r.life.Done():
			return nil
		}
		ws, err := c.r.open(c.r.life, c.id, q)
		if err == nil {
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				_ = ws.CloseNow()
				return nil
			}
			c.ws = ws
			c.mu.Unlock()
			c.r.reconnects.Add(1)
			return ws
		}
		if c.r.life.Err() != nil {
			return nil
		}
		c.r.redialErrors.Add(1)
		if time.Now().After(giveUp) {
			c.r.resumeFailures.Add(1)
			c.r.noteError(fmt.Sprintf("connection %d gave up reconnecting after a minute: %v", c.id, err))
			return nil
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

var (
	dataPrefix = []byte(`"data":"rb `)
	userKey    = []byte(`"user":"b`)
	seqKey     = []byte(`"seq":`)
)

// readFrom classifies frames without decoding JSON: the load generator
// shares the machine with the server, so it must stay cheap per frame. The
// rare frames that place the receiver in its streams (welcome, its own
// joins, gap) are decoded and given to its Positions.
//
// It reads with a context that is never cancelled, which costs the
// WebSocket library nothing per frame (a cancellable one registers a
// callback per read); closing the connection is what ends it.
func (c *conn) readFrom(ws *websocket.Conn) {
	var buf bytes.Buffer
	for {
		_, rd, err := ws.Reader(context.Background())
		if err != nil {
			c.closeCode.Store(int32(websocket.CloseStatus(err)))
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(rd); err != nil {
			c.closeCode.Store(int32(websocket.CloseStatus(err)))
			return
		}
		now := time.Now()
		b := buf.Bytes()
		if i := bytes.Index(b, dataPrefix); i >= 0 {
			pub, seq, sent, ok := parseBenchData(b[i+len(dataPrefix):])
			if ok && c.publisher.Load() {
				continue
			}
			if ok {
				if !c.fresh(b) {
					c.r.dupsDropped.Add(1)
					continue
				}
				c.tr.record(pub, seq)
				c.r.hist.add(now.Sub(time.Unix(0, sent)))
				c.r.deliveries.Add(1)
				continue
			}
		}
		switch {
		case bytes.Contains(b, []byte(`"type":"error"`)):
			c.r.errors.Add(1)
			c.r.noteError(string(b))
		case bytes.Contains(b, []byte(`"event":"welcome"`)):
			if !c.welcomed {
				// The handshake as a client sees it: from the dial to the
				// welcome, the first frame it can act on.
				c.welcomed = true
				c.r.handshakes.add(now.Sub(c.dialed))
			}
			c.observe(b)
			c.mu.Lock()
			c.node = welcomeNode(b)
			c.mu.Unlock()
			if c.room == "lobby" {
				c.confirm()
			}
		case bytes.Contains(b, []byte(`"type":"system"`)):
			if bytes.Contains(b, []byte(`"event":"join"`)) &&
				bytes.Contains(b, []byte(`"room":"`+c.room+`"`)) && c.isOwn(b) {
				c.observe(b)
				c.confirm()
				continue
			}
			if bytes.Contains(b, []byte(`"event":"gap"`)) {
				c.r.gapFrames.Add(1)
				c.r.noteError(string(b))
				c.observe(b)
				continue
			}
			c.presence.Add(1)
		}
	}
}

// fresh reports whether a benchmark message is new to the receiver by its
// position in its stream (every one is in the receiver's room), and counts
// a position that is not the next. A frame without a position (a server
// before positions) is taken as new.
func (c *conn) fresh(b []byte) bool {
	n, ok := streamSeq(b)
	if !ok {
		return true
	}
	fresh, err := c.pos.Observe(protocol.InFrame{Type: protocol.TypeNotification, Room: c.room,
		Seq: protocol.RawSeq{N: n, Set: true}})
	if err != nil {
		c.r.streamGaps.Add(1)
		c.r.noteError(fmt.Sprintf("connection %d: %v", c.id, err))
	}
	return fresh
}

// streamSeq reads the frame's "seq", which relay writes last.
func streamSeq(b []byte) (uint64, bool) {
	i := bytes.LastIndex(b, seqKey)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(seqKey):]
	n, digits := uint64(0), 0
	for digits < len(b) && b[digits] >= '0' && b[digits] <= '9' {
		n = n*10 + uint64(b[digits]-'0')
		digits++
	}
	return n, digits > 0
}

// observe decodes a welcome, an own join or a gap frame for Positions, and
// counts what a resume's welcome says.
func (c *conn) observe(b []byte) {
	var f protocol.InFrame
	if err := json.Unmarshal(b, &f); err != nil {
		c.r.noteError(fmt.Sprintf("connection %d: undecodable frame %q", c.id, b))
		return
	}
	if _, err := c.pos.Observe(f); err != nil {
		c.r.streamGaps.Add(1)
		c.r.noteError(fmt.Sprintf("connection %d: %v", c.id, err))
	}
	if f.Type == protocol.TypeSystem && f.Event == protocol.EventWelcome && f.Recovered != nil {
		if *f.Recovered {
			c.r.recovered.Add(1)
		} else {
			c.r.notRecovered.Add(1)
			c.r.noteError(string(b))
		}
	}
}

var nodeKey = []byte(`"node":"`)

// welcomeNode is the node named in a welcome frame, or "".
func welcomeNode(b []byte) string {
	i := bytes.Index(b, nodeKey)
	if i < 0 {
		return ""
	}
	rest := b[i+len(nodeKey):]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return string(rest[:j])
	}
	return ""
}

func (c *conn) isOwn(b []byte) bool {
	i := bytes.Index(b, userKey)
	if i < 0 {
		return false
	}
	rest := b[i+len(userKey):]
	id := strconv.Itoa(c.id)
	return bytes.HasPrefix(rest, []byte(id+`"`))
}

func (c *conn) confirm() {
	if c.joinSeen.CompareAndSwap(false, true) {
		close(c.confirmed)
	}
}

// benchData is the text of every benchmark message: publisher, sequence
// number, send time in unix nanoseconds, then padding.
func benchData(pub, seq int, sent time.Time, pad string) string {
	return "rb " + strconv.Itoa(pub) + " " + strconv.Itoa(seq) + " " + strconv.FormatInt(sent.UnixNano(), 10) + " " + pad
}

// parseBenchData reads "pub seq nanos " from the start of b.
func parseBenchData(b []byte) (pub, seq int, sent int64, ok bool) {
	fields := [3]int64{}
	for f := range fields {
		n, i := int64(0), 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			n = n*10 + int64(b[i]-'0')
			i++
		}
		if i == 0 || i >= len(b) || b[i] != ' ' {
			return 0, 0, 0, false
		}
		fields[f] = n
		b = b[i+1:]
	}
	return int(fields[0]), int(fields[1]), fields[2], true
}

func padding(n int) string { return strings.Repeat("x", n) }
