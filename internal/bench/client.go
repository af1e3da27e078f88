package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/auth"
)

// conn is one load-generator connection. Its reader goroutine accounts for
// every benchmark message it receives.
type conn struct {
	id   int
	room string
	node string // from its welcome; written before confirmed is closed or the join is seen
	ws   *websocket.Conn
	tr   *tracker
	r    *runner

	confirmed chan struct{} // its room join (or the welcome, for lobby) arrived
	publisher atomic.Bool   // its own messages come back to it: not counted
	joinSeen  atomic.Bool
	closeCode atomic.Int32 // the server's close status, -1 if none yet
	presence  atomic.Int64 // system frames other than its own (join/leave/presence)
}

// dial opens connection id and, unless stalled, starts reading from it.
func (r *runner) dial(ctx context.Context, id int, room string, read bool) (*conn, error) {
	q := "name=b" + strconv.Itoa(id)
	if r.o.JWTSecret != "" {
		tok, err := auth.Mint(r.o.JWTSecret, "b"+strconv.Itoa(id), 24*time.Hour)
		if err != nil {
			return nil, err
		}
		q = "token=" + tok
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
	c := &conn{id: id, room: room, ws: ws, tr: newTracker(), r: r, confirmed: make(chan struct{})}
	c.closeCode.Store(-1)
	if !read {
		return c, nil
	}
	r.readers.Add(1)
	go c.read() // ends when the connection closes; joined by runner.closeAll
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

var (
	dataPrefix = []byte(`"data":"rb `)
	userKey    = []byte(`"user":"b`)
)

// read classifies frames without decoding JSON: the load generator shares
// the machine with the server, so it must stay cheap per frame.
//
// It reads with a context that is never cancelled, which costs the
// WebSocket library nothing per frame (a cancellable one registers a
// callback per read); closing the connection is what ends it.
func (c *conn) read() {
	defer c.r.readers.Done()
	var buf bytes.Buffer
	for {
		_, rd, err := c.ws.Reader(context.Background())
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
			c.node = welcomeNode(b)
			if c.room == "lobby" {
				c.confirm()
			}
		case bytes.Contains(b, []byte(`"type":"system"`)):
			if !c.joinSeen.Load() && bytes.Contains(b, []byte(`"event":"join"`)) &&
				bytes.Contains(b, []byte(`"room":"`+c.room+`"`)) && c.isOwn(b) {
				c.confirm()
				continue
			}
			c.presence.Add(1)
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
