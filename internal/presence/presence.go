// Package presence counts room members. A node that runs alone counts its
// own (Local); a cluster counts in Redis (Redis), where every node keeps its
// own per-room counts under a TTL that it renews, so a node that dies drops
// out of every count by itself.
package presence

import (
	"context"
	"slices"
	"strings"
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

// Members is who is in a room: its count and its distinct users.
type Members struct {
	Online    int      // connections, as Change counts them
	Users     []string // distinct users, sorted; at most the limit asked for
	Truncated bool     // the room has more users than Users
}

// RoomCount is a room and its members across the cluster.
type RoomCount struct {
	Room   string `json:"room"`
	Online int    `json:"online"`
}

// Local counts the members of a node that runs alone.
type Local struct {
	limit int

	mu    sync.Mutex
	rooms map[string]*localRoom
}

type localRoom struct {
	online, joined, left int
	users                map[string]int // connections per user
}

// NewLocal returns a counter whose rooms above limit are coalesced.
func NewLocal(limit int) *Local {
	return &Local{limit: limit, rooms: make(map[string]*localRoom)}
}

// Add records user's join (+1) or leave (-1).
func (l *Local) Add(_ context.Context, room, user string, delta int) (Change, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil {
		r = &localRoom{users: make(map[string]int)}
		l.rooms[room] = r
	}
	r.online += delta
	if r.users[user] += delta; r.users[user] <= 0 {
		delete(r.users, user)
	}
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

// Unclaim gives back the changes of a claim whose presence event could not
// be sent, so that the next claim announces them.
func (l *Local) Unclaim(_ context.Context, room string, s Summary) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil {
		r = &localRoom{users: make(map[string]int)}
		l.rooms[room] = r
	}
	r.joined += s.Joined
	r.left += s.Left
	return nil
}

// Who returns room's count and its users, sorted, at most limit of them.
func (l *Local) Who(_ context.Context, room string, limit int) (Members, error) {
	l.mu.Lock()
	r := l.rooms[room]
	if r == nil {
		l.mu.Unlock()
		return Members{Users: []string{}}, nil
	}
	m := Members{Online: r.online, Users: make([]string, 0, min(len(r.users), limit+1))}
	for u := range r.users {
		m.Users = append(m.Users, u)
	}
	l.mu.Unlock()
	slices.Sort(m.Users)
	if len(m.Users) > limit {
		m.Users, m.Truncated = m.Users[:limit], true
	}
	return m, nil
}

// Rooms returns the rooms with members whose names sort after after, in
// name order, at most limit of them.
func (l *Local) Rooms(_ context.Context, after string, limit int) ([]RoomCount, error) {
	l.mu.Lock()
	var out []RoomCount
	for name, r := range l.rooms {
		if r.online > 0 && name > after {
			out = append(out, RoomCount{Room: name, Online: r.online})
		}
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b RoomCount) int { return strings.Compare(a.Room, b.Room) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
