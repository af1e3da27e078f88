package hub

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/protocol"
)

func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		origin string
		except uint64
		frame  string
	}{
		{"n1", 0, "\x81\x02{}"},
		{"", 7, "\x81\x01x"},
		{strings.Repeat("n", 255), 1<<64 - 1, "\x81\x02[]"},
	} {
		b := encodeWire(tc.origin, tc.except, []byte(tc.frame))
		origin, except, frame, err := decodeWire(b)
		if err != nil || string(origin) != tc.origin || except != tc.except || string(frame) != tc.frame {
			t.Errorf("decodeWire(encodeWire(%q, %d, %q)) = %q, %d, %q, %v",
				tc.origin, tc.except, tc.frame, origin, except, frame, err)
		}
	}
}

func TestWireRejectsMalformed(t *testing.T) {
	t.Parallel()
	good := encodeWire("node", 3, []byte("\x81\x02{}"))
	for name, b := range map[string][]byte{
		"empty":             nil,
		"version only":      {wireVersion},
		"unknown version":   append([]byte{2}, good[1:]...),
		"origin cut short":  good[:4],
		"except cut short":  good[:2+4+7],
		"frame missing":     good[:2+4+8],
		"frame one byte":    good[:2+4+8+1],
		"origin length big": append([]byte{wireVersion, 200}, good[2:]...),
	} {
		if _, _, _, err := decodeWire(b); !errors.Is(err, errBadWire) {
			t.Errorf("%s: decodeWire(% x) = %v, want errBadWire", name, b, err)
		}
	}
}

// recConn records frames for the internal tests.
type recConn struct{ frames [][]byte }

func (c *recConn) Send(f []byte) bool                      { c.frames = append(c.frames, f); return true }
func (c *recConn) CloseWith(uint16, string, time.Duration) {}

// The except id names a connection on the origin node: on another node the
// connection with that id is someone else, who must get the frame.
func TestDeliverSkipsExceptOnlyFromItsOwnNode(t *testing.T) {
	t.Parallel()
	br := broker.NewMemory()
	defer br.Close()
	h := New(Options{Node: "n1"}, br)
	defer h.Close()
	conn := &recConn{}
	c, err := h.Register(t.Context(), conn, "alice", nil, protocol.Resume{})
	if err != nil {
		t.Fatal(err)
	}
	conn.frames = nil
	frame := []byte("\x81\x02{}")
	h.deliver("room:lobby", broker.Message{Payload: encodeWire("n1", c.ID(), frame)})
	if len(conn.frames) != 0 {
		t.Fatalf("own node, except alice: alice got %q", conn.frames)
	}
	h.deliver("room:lobby", broker.Message{Payload: encodeWire("n2", c.ID(), frame)})
	if len(conn.frames) != 1 || !bytes.Equal(conn.frames[0], frame) {
		t.Fatalf("other node's except id: alice got %q, want the frame", conn.frames)
	}
	h.deliver("room:lobby", broker.Message{Payload: []byte("garbage")})
	if len(conn.frames) != 1 {
		t.Fatalf("malformed broker message delivered: %q", conn.frames)
	}
}
