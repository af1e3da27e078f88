package protocol

import (
	"fmt"
	"strings"
)

// Rooms is a set of room patterns, as a JWT's rooms and send claims and
// RELAY_GUEST_ROOMS give them: room names ("team-42"), prefixes ending in
// "*" ("support-*") and "*" for every room. The zero value matches nothing;
// AnyRoom matches every room.
type Rooms struct {
	any      bool
	names    []string
	prefixes []string
}

// AnyRoom matches every room.
var AnyRoom = Rooms{any: true}

// ParseRooms reads a list of patterns. An empty list matches no room.
func ParseRooms(list []string) (Rooms, error) {
	var r Rooms
	for _, p := range list {
		prefix, wild := strings.CutSuffix(p, "*")
		switch {
		case p == "*":
			r.any = true
		case wild && validChars(prefix, 63, true):
			r.prefixes = append(r.prefixes, prefix)
		case !wild && ValidRoom(p):
			r.names = append(r.names, p)
		default:
			return Rooms{}, fmt.Errorf("room pattern %q: a room name, a prefix ending in *, or *", truncate(p, 70))
		}
	}
	return r, nil
}

// Any reports whether the patterns match every room ("*").
func (r Rooms) Any() bool { return r.any }

// Match reports whether room matches one of the patterns.
func (r Rooms) Match(room string) bool {
	if r.any {
		return true
	}
	for _, n := range r.names {
		if n == room {
			return true
		}
	}
	for _, p := range r.prefixes {
		if strings.HasPrefix(room, p) {
			return true
		}
	}
	return false
}
