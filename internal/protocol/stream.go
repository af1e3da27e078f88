package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Streams. Every chat and notification frame carries "seq", its position
// in its stream: a room's ("lobby"), the client's own user's ("@") or the
// broadcast one ("*"). A client that reconnects says where it was in each
// (?epoch=E&since=*:12,@:3,lobby:44) and gets what it missed.
const (
	StreamAll  = "*"
	StreamUser = "@"

	EventGap = "gap"

	// MaxLast is the most a join may ask to be replayed ({"last": N}).
	MaxLast = 1000
)

// Gap tells a client that messages of a stream up to Seq may be missing
// (history no longer had them, or the epoch changed): the stream's next
// message is Seq+1 in Epoch.
type Gap struct {
	Type   string `json:"type"`
	Event  string `json:"event"`
	Stream string `json:"stream"`
	Epoch  string `json:"epoch"`
	Seq    uint64 `json:"seq"`
	Data   string `json:"data"`
}

// Marshal encodes v as relay encodes every frame (no HTML escaping), without
// the WebSocket header: a stream message is published as JSON and framed by
// each receiving node once its position is known.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// FrameOverhead is the most FrameJSON adds to a payload: the frame header.
const FrameOverhead = maxHeader

// FrameJSON wraps an encoded JSON payload in a WebSocket text frame.
func FrameJSON(payload []byte) Frame {
	b := make([]byte, maxHeader+len(payload))
	copy(b[maxHeader:], payload)
	return frameInPlace(b)
}

// Resume is where a reconnecting client was: its epoch and, for each stream
// it lists, the last position it has. Rooms are the listed rooms other than
// lobby, in the order given: the handshake joins them.
type Resume struct {
	Epoch string
	Since map[string]uint64
	Rooms []string
}

// ParseResume reads ?epoch= and ?since= from an upgrade URL's query. Both
// absent is a fresh connection (ok, zero Resume). An error names what is
// wrong, for a 400 before the upgrade.
func ParseResume(q url.Values) (Resume, error) {
	epoch, since := q.Get("epoch"), q.Get("since")
	if epoch == "" && since == "" {
		return Resume{}, nil
	}
	bad := func(text string) (Resume, error) { return Resume{}, errors.New(text) }
	if epoch == "" || len(epoch) > 64 {
		return bad("epoch: give the epoch of the welcome you resume from (at most 64 bytes)")
	}
	if since == "" {
		return bad("since: give stream:position pairs, as in since=*:12,@:3,lobby:44")
	}
	r := Resume{Epoch: epoch, Since: make(map[string]uint64)}
	for _, pair := range strings.Split(since, ",") {
		// Room names may hold ':'; the position follows the last one.
		i := strings.LastIndexByte(pair, ':')
		if i < 0 {
			return bad("since: " + strconv.Quote(pair) + " is not stream:position")
		}
		name, pos := pair[:i], pair[i+1:]
		n, err := strconv.ParseUint(pos, 10, 64)
		if err != nil {
			return bad("since: position " + strconv.Quote(pos) + " of " + strconv.Quote(name) + " is not a number")
		}
		if _, dup := r.Since[name]; dup {
			return bad("since: " + strconv.Quote(name) + " listed twice")
		}
		switch {
		case name == StreamAll, name == StreamUser, name == Lobby:
		case ValidRoom(name):
			r.Rooms = append(r.Rooms, name)
		default:
			return bad("since: " + strconv.Quote(name) + " is neither *, @ nor a valid room name")
		}
		r.Since[name] = n
	}
	if len(r.Rooms)+1 > MaxRooms {
		return bad("since: more rooms than the " + strconv.Itoa(MaxRooms) + " a connection may be in")
	}
	return r, nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
