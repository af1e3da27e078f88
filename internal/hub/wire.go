package hub

import (
	"encoding/binary"
	"errors"
)

// A broker message is a small routing header followed by the encoded
// WebSocket frame. Receiving nodes slice the frame out and hand those very
// bytes to their clients: nothing is decoded or re-encoded on the way.
//
//	byte 0      wire version (1)
//	byte 1      length n of the origin node id
//	2..2+n      origin node id
//	next 8      id of a connection on the origin node that must not get the
//	            frame (it got its own copy directly), or 0
//	rest        the frame
const wireVersion = 1

var errBadWire = errors.New("hub: malformed broker message")

func encodeWire(origin string, except uint64, frame []byte) []byte {
	b := make([]byte, 0, 2+len(origin)+8+len(frame))
	b = append(b, wireVersion, byte(len(origin)))
	b = append(b, origin...)
	b = binary.BigEndian.AppendUint64(b, except)
	return append(b, frame...)
}

// decodeWire returns slices into b.
func decodeWire(b []byte) (origin []byte, except uint64, frame []byte, err error) {
	if len(b) < 2 || b[0] != wireVersion {
		return nil, 0, nil, errBadWire
	}
	n := int(b[1])
	if len(b) < 2+n+8+2 {
		return nil, 0, nil, errBadWire
	}
	origin = b[2 : 2+n]
	except = binary.BigEndian.Uint64(b[2+n:])
	return origin, except, b[2+n+8:], nil
}

// Topics. The broker adds its own prefix (for Redis, "relay:").
const topicAll = "all"

func roomTopic(room string) string { return "room:" + room }
func userTopic(user string) string { return "user:" + user }
