// Package presence counts room members. A node that runs alone counts its
// own (Local); a cluster counts in Redis (Redis), where every node keeps its
// own per-room counts under a TTL that it renews, so a node that dies drops
// out of every count by itself.
package presence

import (
	"context"
	"sync"
)

// Change is the result of recording one join or leave.
type Change struct {
	Online int // the room's members after the change, across the cluster
	// Coalesced is true when the room is over the presence limit: the change
	// is not announced one by one but counted for the next presence event.
	Coalesced bool
}

// Summary is what a presence event reports for a room.
type Summary struct {
	Online, Joined, Left int
}

// Local counts the members of a node that runs alone.
type Local struct {
	limit int

	mu    sync.Mutex
	rooms map[string]*localRoom
}

type localRoom struct{ online, joined, left int }

// NewLocal returns a counter whose rooms above limit are coalesced.
func NewLocal(limit int) *Local {
	return &Local{limit: limit, rooms: make(map[string]*localRoom)}
}

// Add records a join (+1) or leave (-1).
func (l *Local) Add(_ context.Context, room string, delta int) (Change, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil {
		r = &localRoom{}
		l.rooms[room] = r
	}
	r.online += delta
	ch := Change{Online: r.online, Coalesced: r.online > l.limit}
	if ch.Coalesced {
		if delta > 0 {
			r.joined++
		} else {
			r.left++
		}
	}
	if r.online <= 0 && r.joined == 0 && r.left == 0 {
		delete(l.rooms, room)
	}
	return ch, nil
}

// Claim returns and resets room's coalesced changes. A lone node always
// wins the claim.
func (l *Local) Claim(_ context.Context, room string) (Summary, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil {
		return Summary{}, true, nil
	}
	s := Summary{Online: r.online, Joined: r.joined, Left: r.left}
	r.joined, r.left = 0, 0
	if r.online <= 0 {
		delete(l.rooms, room)
	}
	return s, true, nil
}
