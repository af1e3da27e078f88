package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// What wsconn assumes of coder/websocket (the version pinned in go.mod),
// checked against the library itself: if an upgrade changes any of it,
// this test fails before relay misbehaves.
//
//   - Conn.Write reads a frame's opcode from the first byte of each Write:
//     every Write the library makes on the hijacked connection starts a
//     frame, and holds exactly one whole frame. With relay's use (Read
//     only, never Write or Ping), those frames are pongs and closes.
//   - A control frame arrives in one Write: the library's buffered writer
//     (controlBufferSize) flushes once per frame, never splits one.
//   - Conn.SetWriteDeadline does nothing: the library never calls it (nor
//     SetDeadline); its write timeouts are its own (a context that closes
//     the connection). A library that began to rely on it would lose its
//     timeouts silently.
func TestLibraryContract(t *testing.T) {
	longReason := strings.Repeat("r", 123) // the longest a close frame allows
	for _, tc := range []struct {
		name string
		// talk drives the server from a raw client and returns the
		// opcodes of the frames the library answered with, in order.
		talk func(t *testing.T, c *rawClient)
		want []byte // opcodes the library must have written, in order
	}{
		{"pongs, then the echo of a close", func(t *testing.T, c *rawClient) {
			for _, payload := range []string{"", "seven b", strings.Repeat("p", 125)} {
				c.write(t, 0x9, []byte(payload), true)
				if op, got := c.read(t); op != 0xA || string(got) != payload {
					t.Fatalf("answer to a ping of %d bytes: opcode %#x, %d bytes", len(payload), op, len(got))
				}
			}
			c.write(t, 0x8, closePayload(1000, "bye"), true)
			if op, got := c.read(t); op != 0x8 || !bytes.Equal(got, closePayload(1000, "bye")) {
				t.Fatalf("echo of a close: opcode %#x, %q", op, got)
			}
		}, []byte{0xA, 0xA, 0xA, 0x8}},
		{"echo of a close with the longest reason", func(t *testing.T, c *rawClient) {
			c.write(t, 0x8, closePayload(4000, longReason), true)
			if op, got := c.read(t); op != 0x8 || !bytes.Equal(got, closePayload(4000, longReason)) {
				t.Fatalf("echo of a close: opcode %#x, %q", op, got)
			}
		}, []byte{0x8}},
		{"close for a message past the read limit", func(t *testing.T, c *rawClient) {
			c.write(t, 0x1, bytes.Repeat([]byte("m"), 2000), true)
			if op, got := c.read(t); op != 0x8 || binary.BigEndian.Uint16(got) != uint16(websocket.StatusMessageTooBig) {
				t.Fatalf("answer to a message past the limit: opcode %#x, %q", op, got)
			}
		}, []byte{0x8}},
		{"close for an unknown opcode", func(t *testing.T, c *rawClient) {
			c.write(t, 0x3, []byte("what"), true)
			if op, got := c.read(t); op != 0x8 || binary.BigEndian.Uint16(got) != uint16(websocket.StatusProtocolError) {
				t.Fatalf("answer to an unknown opcode: opcode %#x, %q", op, got)
			}
		}, []byte{0x8}},
		{"nothing for an unmasked frame", func(t *testing.T, c *rawClient) {
			c.write(t, 0x1, []byte("not masked"), false) // the library hangs up
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := make(chan *recorder, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws, err := websocket.Accept(hijacker{w, recs}, r, &websocket.AcceptOptions{
					CompressionMode: websocket.CompressionDisabled, // as relay
				})
				if err != nil {
					t.Errorf("accept: %v", err)
					return
				}
				ws.SetReadLimit(1024)
				for { // as a relay session: Read until the connection ends
					if _, _, err := ws.Read(context.Background()); err != nil {
						break
					}
				}
				_ = ws.CloseNow()
			}))
			defer srv.Close() // waits for the handler
			c := dialRaw(t, srv.Listener.Addr().String())
			defer c.conn.Close()
			tc.talk(t, c)
			rec := <-recs
			// The library closes the connection after a close: wait for it,
			// so that every Write it made is recorded.
			_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, c.br)

			rec.mu.Lock()
			defer rec.mu.Unlock()
			var ops []byte
			for i, w := range rec.writes {
				op, err := oneControlFrame(w)
				if err != nil {
					t.Errorf("Write %d of the library (% x): %v; wsconn.Conn.Write reads the opcode from a Write's first byte and expects one whole control frame per Write", i, w[:min(len(w), 8)], err)
					continue
				}
				ops = append(ops, op)
			}
			if !bytes.Equal(ops, tc.want) {
				t.Errorf("the library wrote frames with opcodes % x, want % x", ops, tc.want)
			}
			if rec.deadlines > 0 {
				t.Errorf("the library called SetWriteDeadline or SetDeadline %d times: wsconn.Conn ignores write deadlines (its writes are the pool's), so the library's would be lost", rec.deadlines)
			}
		})
	}
}

// oneControlFrame checks that b is exactly one whole, final, unmasked
// control frame and returns its opcode.
func oneControlFrame(b []byte) (byte, error) {
	if len(b) < 2 {
		return 0, fmt.Errorf("%d bytes: not a whole frame header", len(b))
	}
	op := b[0] & 0x0f
	switch {
	case b[0]&0x80 == 0:
		return 0, fmt.Errorf("first byte %#x: FIN not set", b[0])
	case b[0]&0x70 != 0:
		return 0, fmt.Errorf("first byte %#x: RSV bits set", b[0])
	case op < 0x8 || op > 0xA:
		return 0, fmt.Errorf("first byte %#x: opcode %#x is not close, ping or pong", b[0], op)
	case b[1]&0x80 != 0:
		return 0, fmt.Errorf("a masked frame from the server")
	case int(b[1]&0x7f) > 125:
		return 0, fmt.Errorf("a control frame with a payload length of %d", b[1]&0x7f)
	case len(b) != 2+int(b[1]&0x7f):
		return 0, fmt.Errorf("%d bytes for a frame of %d: the frame is split across Writes, or shares one", len(b), 2+int(b[1]&0x7f))
	}
	return op, nil
}

// recorder is the hijacked connection as the library sees it: each Write
// kept, deadline calls counted.
type recorder struct {
	net.Conn
	mu        sync.Mutex
	writes    [][]byte
	deadlines int
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, bytes.Clone(b))
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recorder) SetWriteDeadline(t time.Time) error {
	r.mu.Lock()
	r.deadlines++
	r.mu.Unlock()
	return r.Conn.SetWriteDeadline(t)
}

func (r *recorder) SetDeadline(t time.Time) error {
	r.mu.Lock()
	r.deadlines++
	r.mu.Unlock()
	return r.Conn.SetDeadline(t)
}

// hijacker hands the library a recorder and the buffers Upgrade gives it.
type hijacker struct {
	http.ResponseWriter
	recs chan<- *recorder
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	raw, brw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	rec := &recorder{Conn: raw}
	h.recs <- rec
	return rec, libraryIO(rec, brw.Reader), nil
}

// rawClient speaks WebSocket frames by hand, so that it can send what a
// library client would refuse to (an unmasked frame, a 125-byte ping).
type rawClient struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		addr, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return &rawClient{conn: conn, br: br}
}

// write sends one final frame with opcode op (payload at most 65535 bytes),
// masked as a client must unless masked is false.
func (c *rawClient) write(t *testing.T, op byte, payload []byte, masked bool) {
	t.Helper()
	f := []byte{0x80 | op}
	maskBit := byte(0)
	if masked {
		maskBit = 0x80
	}
	if len(payload) < 126 {
		f = append(f, maskBit|byte(len(payload)))
	} else {
		f = append(f, maskBit|126, byte(len(payload)>>8), byte(len(payload)))
	}
	body := bytes.Clone(payload)
	if masked {
		key := []byte{0x12, 0x34, 0x56, 0x78}
		f = append(f, key...)
		for i := range body {
			body[i] ^= key[i%4]
		}
	}
	if _, err := c.conn.Write(append(f, body...)); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

// read reads one unmasked frame with a payload under 126 bytes.
func (c *rawClient) read(t *testing.T) (op byte, payload []byte) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		t.Fatalf("read frame header: %v", err)
	}
	if h[1]&0x80 != 0 || h[1]&0x7f > 125 {
		t.Fatalf("frame header % x: masked or long", h)
	}
	payload = make([]byte, h[1]&0x7f)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		t.Fatalf("read frame payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}
