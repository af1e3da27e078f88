package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
)

// The server API for a backend: which rooms have members and who is in
// them, and moderation (close a user's connections, take a user out of a
// room) on every node. All of it behind RELAY_API_KEY.

// maxRoomsPage bounds one GET /api/rooms answer.
const maxRoomsPage = 1000

// apiError answers an API request with status and a JSON error, closing the
// connection (the body may not have been read).
func apiError(c *gin.Context, status int, msg string) {
	c.Header("Connection", "close")
	jsonError(c, status, msg)
}

// authorized answers 401 unless the request has the API key.
func (s *Server) authorized(c *gin.Context) bool {
	if s.apiKey.Check(c.Request) {
		return true
	}
	apiError(c, http.StatusUnauthorized, "missing or invalid API key (Authorization: Bearer <key>)")
	return false
}

// handleRooms answers GET /api/rooms?limit=N&after=R: the rooms with
// members across the cluster, sorted by name, after R, at most N (default
// 100), with "next" to pass as after for the following page.
func (s *Server) handleRooms(c *gin.Context) {
	if !s.authorized(c) {
		return
	}
	q := c.Request.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRoomsPage {
			apiError(c, http.StatusBadRequest, fmt.Sprintf("limit must be 1-%d", maxRoomsPage))
			return
		}
		limit = n
	}
	after := q.Get("after")
	if q.Has("after") && !protocol.ValidRoom(after) {
		apiError(c, http.StatusBadRequest, "after: room names are 1-64 of A-Z a-z 0-9 _ - . :")
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	rooms, err := s.hub.Rooms(ctx, after, limit)
	if err != nil {
		s.log.Warn("room list unavailable", "err", err)
		apiError(c, http.StatusServiceUnavailable, "presence unavailable")
		return
	}
	if rooms == nil {
		rooms = []presence.RoomCount{} // [] in JSON, not null: a client iterates it
	}
	body := gin.H{"rooms": rooms}
	if len(rooms) == limit {
		body["next"] = rooms[len(rooms)-1].Room
	}
	c.JSON(http.StatusOK, body)
}

// handleRoom answers GET /api/rooms/{room} as a member's who is answered.
func (s *Server) handleRoom(c *gin.Context) {
	if !s.authorized(c) {
		return
	}
	room := c.Param("room")
	if !protocol.ValidRoom(room) {
		apiError(c, http.StatusBadRequest, "room names are 1-64 of A-Z a-z 0-9 _ - . :")
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	m, err := s.hub.Members(ctx, room)
	if err != nil {
		s.log.Warn("who unavailable", "room", room, "err", err)
		apiError(c, http.StatusServiceUnavailable, "presence unavailable")
		return
	}
	c.JSON(http.StatusOK, gin.H{"room": room, "online": m.Online, "users": m.Users, "truncated": m.Truncated})
}

// moderation is the body of POST /api/disconnect and
// /api/rooms/{room}/remove.
type moderation struct {
	User   *string `json:"user"`
	Reason *string `json:"reason"`
}

// readModeration reads and checks a moderation body; status 0 means ok.
func (s *Server) readModeration(c *gin.Context) (user, reason string, status int, msg string) {
	var req moderation
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 4096))
	if err := dec.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return "", "", http.StatusRequestTimeout, "request body not received in time"
		case errors.As(err, &typeErr):
			return "", "", http.StatusBadRequest, fmt.Sprintf("field %q must be a string", typeErr.Field)
		case errors.Is(err, io.EOF):
			return "", "", http.StatusBadRequest, `request body is empty; want JSON {"user": "..."}`
		}
		return "", "", http.StatusBadRequest, "malformed JSON body"
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", "", http.StatusBadRequest, "malformed JSON body: one object expected"
	}
	switch {
	case req.User == nil || *req.User == "" || len(*req.User) > maxUserName:
		return "", "", http.StatusBadRequest, fmt.Sprintf("user must be 1-%d bytes", maxUserName)
	case req.Reason != nil && len(*req.Reason) > protocol.MaxCloseReason:
		return "", "", http.StatusBadRequest, fmt.Sprintf("reason must be at most %d bytes (it goes in a WebSocket close frame)", protocol.MaxCloseReason)
	}
	if req.Reason != nil {
		reason = *req.Reason
	}
	return *req.User, reason, 0, ""
}

// handleDisconnect answers POST /api/disconnect {"user", "reason"}: every
// connection of user on every node is closed with 4000 and reason. 200
// once the request is published to the cluster.
func (s *Server) handleDisconnect(c *gin.Context) {
	if !s.authorized(c) {
		return
	}
	user, reason, status, msg := s.readModeration(c)
	if status != 0 {
		apiError(c, status, msg)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	if err := s.hub.Disconnect(ctx, user, reason); err != nil {
		s.metrics.PublishErrors.Inc()
		s.log.Warn("disconnect not published", "user", user, "err", err)
		apiError(c, http.StatusServiceUnavailable, "message broker unavailable; nobody was disconnected")
		return
	}
	s.log.Info("disconnect requested", "user", user, "reason", reason)
	c.JSON(http.StatusOK, gin.H{"success": true})
}

// handleRemove answers POST /api/rooms/{room}/remove {"user", "reason"}:
// the user leaves room on every node. 200 once published to the cluster.
func (s *Server) handleRemove(c *gin.Context) {
	if !s.authorized(c) {
		return
	}
	room := c.Param("room")
	if !protocol.ValidRoom(room) {
		apiError(c, http.StatusBadRequest, "room names are 1-64 of A-Z a-z 0-9 _ - . :")
		return
	}
	user, reason, status, msg := s.readModeration(c)
	if status != 0 {
		apiError(c, status, msg)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	if err := s.hub.Remove(ctx, user, room, reason); err != nil {
		s.metrics.PublishErrors.Inc()
		s.log.Warn("remove not published", "user", user, "room", room, "err", err)
		apiError(c, http.StatusServiceUnavailable, "message broker unavailable; nobody was removed")
		return
	}
	s.log.Info("remove requested", "user", user, "room", room, "reason", reason)
	c.JSON(http.StatusOK, gin.H{"success": true})
}
