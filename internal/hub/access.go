package hub

import (
	"context"
	"maps"
	"slices"

	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
)

// Access and who is online: which rooms a client may join and send to, and
// who is in a room across the cluster. The hub parses no tokens: the server
// hands each client an Access made from its credentials, and Grant adds a
// room a verified room token allows.

// Access decides what a client may do. Lobby is always allowed to join;
// MaySend is asked only for rooms the client is in. Implementations must
// be safe for concurrent use (auth.Access is a read-only value).
type Access interface {
	MayJoin(room string) bool
	MaySend(room string) bool
}

// mayJoinLocked reports whether c may join room. c.mu must be held.
func (c *Client) mayJoinLocked(room string) bool {
	return room == protocol.Lobby || c.access == nil || c.access.MayJoin(room) || slices.Contains(c.granted, room)
}

// maySend reports whether c may send chat to room, which it is in.
func (c *Client) maySend(room string) bool {
	return c.access == nil || c.access.MaySend(room)
}

// allowed splits a resume's rooms into those c may join and those it may
// not (a room token's rooms among them: the handshake carries none).
func (c *Client) allowed(from protocol.Resume) (protocol.Resume, []string) {
	var forbidden []string
	for _, r := range from.Rooms {
		if !c.mayJoinLocked(r) { // c is not shared yet: no lock needed
			forbidden = append(forbidden, r)
		}
	}
	if len(forbidden) == 0 {
		return from, nil
	}
	from.Rooms = slices.DeleteFunc(slices.Clone(from.Rooms), func(r string) bool { return slices.Contains(forbidden, r) })
	from.Since = maps.Clone(from.Since)
	for _, r := range forbidden {
		delete(from.Since, r)
	}
	return from, forbidden
}

// Grant lets c join room, for the rest of the connection, whatever its
// Access says: the server verified a room token for it. Grants are few (a
// client joins at most protocol.MaxRooms rooms at once), but a client that
// presents many tokens only keeps the latest MaxRooms.
func (h *Hub) Grant(c *Client, room string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.Contains(c.granted, room) {
		return
	}
	if len(c.granted) >= protocol.MaxRooms {
		c.granted = slices.Delete(c.granted, 0, 1)
	}
	c.granted = append(c.granted, room)
}

// Who answers a member's {"type":"who"}: the room's distinct users across
// the cluster, at most Options.WhoLimit of them.
func (h *Hub) Who(ctx context.Context, c *Client, room string) error {
	if !c.inRoom(room) {
		return &protocol.Error{Code: protocol.ErrNotMember, Text: "join room " + room + " to see who is in it"}
	}
	m, err := h.Members(ctx, room)
	if err != nil {
		return h.unavailable("who refused: presence unavailable", c, room, err)
	}
	h.sendDirect(c, h.mustEncode(protocol.Who{
		Type: protocol.TypeWho, Room: room, Online: m.Online, Users: m.Users, Truncated: m.Truncated,
	}))
	return nil
}

// Members returns who is in room across the cluster: its count and up to
// Options.WhoLimit distinct users, sorted.
func (h *Hub) Members(ctx context.Context, room string) (presence.Members, error) {
	m, err := h.counter.Who(ctx, room, h.opts.WhoLimit)
	if m.Users == nil {
		m.Users = []string{}
	}
	return m, err
}

// Rooms returns up to limit rooms with members across the cluster, in name
// order, after the room named after.
func (h *Hub) Rooms(ctx context.Context, after string, limit int) ([]presence.RoomCount, error) {
	return h.counter.Rooms(ctx, after, limit)
}
