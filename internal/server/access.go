package server

import (
	"net/http"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
)

// Who may do what: a token's sub and its rooms and send claims, or a
// guest's name and RELAY_GUEST_ROOMS; room tokens grant one more room to a
// connected user. The checks themselves are the hub's (hub.Access), so a
// join, a send and a resume apply the same rules.

// guestAccess is what guests may do, from RELAY_GUEST_ROOMS; nil when that
// is every room (config.Load never gives an empty list: its default is *).
func guestAccess(patterns []string) hub.Access {
	rooms, err := protocol.ParseRooms(patterns)
	if err != nil || len(patterns) == 0 || rooms.Any() { // validated by config already
		return nil
	}
	return auth.GuestAccess(rooms)
}

// identify authenticates the request and picks the user name and what it
// may do (nil: anything).
func (s *Server) identify(r *http.Request) (user string, access hub.Access, status int, msg string) {
	if s.verifier.Enabled() {
		token := auth.TokenFromRequest(r)
		if token == "" {
			return "", nil, http.StatusUnauthorized, "missing token (Authorization: Bearer or ?token=)"
		}
		id, err := s.verifier.Identity(token)
		if err != nil {
			return "", nil, http.StatusUnauthorized, err.Error()
		}
		return id.User, id.Access, 0, ""
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		return guestName(), s.guests, 0, ""
	}
	if !protocol.ValidName(name) {
		return "", nil, http.StatusBadRequest, "name must be 1-32 of A-Z a-z 0-9 _ - ."
	}
	return name, s.guests, 0, ""
}

// grant verifies a room token c presents to join room and lets c join it.
func (s *Server) grant(c *hub.Client, room, token string) error {
	if err := s.verifier.RoomToken(token, c.User(), room); err != nil {
		return &protocol.Error{Code: protocol.ErrForbidden, Text: err.Error()}
	}
	s.hub.Grant(c, room)
	return nil
}
