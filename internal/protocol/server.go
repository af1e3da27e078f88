package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
)

// Server frame types and system events.
const (
	TypeSystem       = "system"
	TypeNotification = "notification"
	TypeError        = "error"
	TypePong         = "pong"

	EventWelcome  = "welcome"
	EventJoin     = "join"
	EventLeave    = "leave"
	EventPresence = "presence"
)

// Frame is a server frame ready for the wire: one complete, unmasked
// WebSocket text frame (header and JSON payload). A message is encoded into a
// Frame once and the same bytes go to every receiver, on every node.
type Frame []byte

// Welcome is the first frame on every connection.
type Welcome struct {
	Type   string `json:"type"`
	Event  string `json:"event"`
	User   string `json:"user"`
	Node   string `json:"node"`
	Room   string `json:"room"`
	Online int    `json:"online"`
	Data   string `json:"data"`
	// Epoch and Seq: where the client starts in each of its streams.
	Epoch string            `json:"epoch,omitempty"`
	Seq   map[string]uint64 `json:"seq,omitempty"`
	// Recovered and Missed answer a resume: whether every listed stream
	// was filled, and which were not.
	Recovered *bool    `json:"recovered,omitempty"`
	Missed    []string `json:"missed,omitempty"`
	// Forbidden names the rooms a resume listed that the connection may
	// not join (its token's rooms, RELAY_GUEST_ROOMS, or a room token that
	// the handshake cannot carry): they were not joined.
	Forbidden []string `json:"forbidden,omitempty"`
}

// Membership is a join or leave in a room.
type Membership struct {
	Type   string `json:"type"`
	Event  string `json:"event"`
	User   string `json:"user"`
	Room   string `json:"room"`
	Online int    `json:"online"`
	Data   string `json:"data"`
	// Seq, on a client's own join only: the room's last position when it
	// joined. Messages after it reach the client.
	Seq *uint64 `json:"seq,omitempty"`
	// Reason, on a client's own leave only when the server API removed
	// it from the room.
	Reason string `json:"reason,omitempty"`
	// Truncated, on a client's own join with "last" only: some of the
	// messages asked for were left out to fit the client's send queue;
	// the newest that fit follow.
	Truncated bool `json:"truncated,omitempty"`
}

// Who answers {"type":"who"}: the distinct users in a room across the
// cluster, sorted, at most the node's limit (Truncated: there are more).
// Online counts connections, as in join and leave frames.
type Who struct {
	Type      string   `json:"type"`
	Room      string   `json:"room"`
	Online    int      `json:"online"`
	Users     []string `json:"users"`
	Truncated bool     `json:"truncated"`
}

// Presence summarises membership changes in a room too big for per-member
// events.
type Presence struct {
	Type   string `json:"type"`
	Event  string `json:"event"`
	Room   string `json:"room"`
	Online int    `json:"online"`
	Joined int    `json:"joined"`
	Left   int    `json:"left"`
	Data   string `json:"data"`
}

// Chat is a user's message to a room.
type Chat struct {
	Type string          `json:"type"`
	Room string          `json:"room"`
	User string          `json:"user"`
	Data json.RawMessage `json:"data"`
	ID   string          `json:"id"`
	TS   int64           `json:"ts"`
}

// Notification is a server-side message from POST /api/notify.
type Notification struct {
	Type string `json:"type"`
	Room string `json:"room,omitempty"`
	User string `json:"user,omitempty"`
	Data string `json:"data"`
	ID   string `json:"id"`
	TS   int64  `json:"ts"`
}

// ErrorFrame reports a client mistake.
type ErrorFrame struct {
	Type    string    `json:"type"`
	Code    ErrorCode `json:"code"`
	Error   string    `json:"error"`
	Request string    `json:"request,omitempty"`
	Room    string    `json:"room,omitempty"`
	ID      string    `json:"id,omitempty"`
}

// PongFrame answers a client's {"type":"ping"}.
var PongFrame = mustEncode(struct {
	Type string `json:"type"`
}{TypePong})

// EncodeError encodes an error frame for e.
func EncodeError(e *Error) Frame {
	return mustEncode(ErrorFrame{Type: TypeError, Code: e.Code, Error: e.Text, Request: e.Request, Room: e.Room, ID: e.ID})
}

// maxHeader is the longest WebSocket frame header a server sends (no mask).
const maxHeader = 10

// Encode marshals v to JSON and wraps it in a WebSocket text frame, writing
// the JSON straight after room reserved for the header, so no copy is needed
// to frame it.
func Encode(v any) (Frame, error) {
	var buf bytes.Buffer
	buf.Grow(256)
	buf.Write(make([]byte, maxHeader)) // room for the header, filled in below
	if err := writeJSON(&buf, v); err != nil {
		return nil, err
	}
	return frameInPlace(buf.Bytes()), nil
}

// writeJSON appends v to buf as relay encodes every frame: no HTML
// escaping (chat shows <, > and & as typed), no trailing newline.
func writeJSON(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encoder ends each value with a newline
	return nil
}

func mustEncode(v any) Frame {
	f, err := Encode(v)
	if err != nil {
		panic("protocol: encoding a fixed server frame: " + err.Error())
	}
	return f
}

// frameInPlace writes the header into the maxHeader bytes reserved at the
// front of b and returns the frame, which starts where the header does.
func frameInPlace(b []byte) Frame {
	n := len(b) - maxHeader
	var start int
	switch {
	case n < 126:
		start = maxHeader - 2
		b[start+1] = byte(n)
	case n <= 0xffff:
		start = maxHeader - 4
		b[start+1] = 126
		binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	default:
		start = 0
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[start] = 0x81 // FIN + text
	return Frame(b[start:])
}
