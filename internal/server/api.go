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

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
)

const welcomeText = "欢迎访问实时服务\n" +
	"relay: WebSocket chat at /ws; API: GET /api/data, POST /api/notify, GET /api/history, GET /api/rooms, GET /api/rooms/{room}, POST /api/rooms/{room}/remove, POST /api/disconnect; health: /healthz, /readyz; metrics: /metrics\n"

func (s *Server) handleRoot(c *gin.Context) {
	c.String(http.StatusOK, welcomeText)
}

// handleData is the service's hot HTTP path, so its answer is assembled
// from bytes prepared once rather than marshalled per request.
func (s *Server) handleData(c *gin.Context) {
	b := make([]byte, 0, len(s.dataPrefix)+20+len(s.dataSuffix))
	b = append(b, s.dataPrefix...)
	b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
	b = append(b, s.dataSuffix...)
	c.Data(http.StatusOK, "application/json; charset=utf-8", b)
}

func (s *Server) handleHealthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *Server) handleReadyz(c *gin.Context) {
	if s.drained.Load() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "draining"})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.broker.Ready(ctx); err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// notifyRequest has pointer fields so that a missing field and an empty one
// can be told apart, and a field of the wrong JSON type fails to decode.
type notifyRequest struct {
	Message *string `json:"message"`
	Room    *string `json:"room"`
	User    *string `json:"user"`
}

// maxUserName bounds the user field: JWT subjects can be long, but not that long.
const maxUserName = 256

func (s *Server) handleNotify(c *gin.Context) {
	status, body := s.notify(c)
	if status >= http.StatusBadRequest {
		// Answered before (all of) the body was read: close rather than
		// wait for the rest to reuse the connection.
		c.Header("Connection", "close")
	}
	s.metrics.Notify.WithLabelValues(strconv.Itoa(status)).Inc()
	c.JSON(status, body)
}

func (s *Server) notify(c *gin.Context) (int, gin.H) {
	if !s.apiKey.Check(c.Request) {
		return http.StatusUnauthorized, gin.H{"error": "missing or invalid API key (Authorization: Bearer <key>)"}
	}
	// JSON escapes can make a message of MaxMessageBytes up to six times
	// longer on the wire; past that the body cannot be valid.
	body := http.MaxBytesReader(c.Writer, c.Request.Body, int64(s.cfg.MaxMessageBytes)*6+4096)
	var req notifyRequest
	dec := json.NewDecoder(body)
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return http.StatusRequestTimeout, gin.H{"error": "request body not received in time"}
		}
		return http.StatusBadRequest, gin.H{"error": describeBodyError(err, s.cfg.MaxMessageBytes)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return http.StatusBadRequest, gin.H{"error": "malformed JSON body: one object expected"}
	}
	switch {
	case req.Message == nil || *req.Message == "":
		return http.StatusBadRequest, gin.H{"error": "message is required"}
	case len(*req.Message) > s.cfg.MaxMessageBytes:
		return http.StatusBadRequest, gin.H{"error": fmt.Sprintf("message is longer than %d bytes", s.cfg.MaxMessageBytes)}
	case req.Room != nil && req.User != nil:
		return http.StatusBadRequest, gin.H{"error": "give room or user, not both"}
	}
	var to hub.Target
	if req.Room != nil {
		if !protocol.ValidRoom(*req.Room) {
			return http.StatusBadRequest, gin.H{"error": "room names are 1-64 of A-Z a-z 0-9 _ - . :"}
		}
		to.Room = *req.Room
	}
	if req.User != nil {
		if *req.User == "" || len(*req.User) > maxUserName {
			return http.StatusBadRequest, gin.H{"error": fmt.Sprintf("user must be 1-%d bytes", maxUserName)}
		}
		to.User = *req.User
	}

	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	id, pos, err := s.hub.Notify(ctx, to, *req.Message)
	if errors.Is(err, hub.ErrTooLarge) {
		return http.StatusBadRequest, gin.H{"error": err.Error()}
	}
	if errors.Is(err, broker.ErrUnconfirmed) {
		// It may have been published: say so, with the id to look up,
		// rather than "not sent" (the caller might send it again).
		s.metrics.PublishErrors.Inc()
		s.log.Warn("notify unconfirmed", "id", id, "err", err)
		return http.StatusGatewayTimeout, gin.H{"error": "the message broker did not confirm the notification in time: it may or may not have been sent; look its id up in GET /api/history", "id": id, "unconfirmed": true}
	}
	if err != nil {
		s.metrics.PublishErrors.Inc()
		s.log.Warn("notify not accepted", "err", err)
		return http.StatusServiceUnavailable, gin.H{"error": "message broker unavailable; the notification was not sent"}
	}
	return http.StatusOK, gin.H{"success": true, "id": id, "seq": pos.Seq, "epoch": pos.Epoch}
}

func describeBodyError(err error, maxMessage int) string {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return fmt.Sprintf("message is longer than %d bytes", maxMessage)
	case errors.As(err, &typeErr):
		return fmt.Sprintf("field %q must be a string", typeErr.Field)
	case errors.Is(err, io.EOF):
		return "request body is empty; want JSON {\"message\": \"...\"}"
	default:
		return "malformed JSON body"
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// maxHistoryPage bounds one GET /api/history answer.
const maxHistoryPage = 1000

// handleHistory answers GET /api/history?room=R (or user=U, or neither for
// the broadcast stream)&since=N&limit=M: the stream's epoch and latest
// position, and its messages after since as clients got them.
func (s *Server) handleHistory(c *gin.Context) {
	if !s.authorized(c) {
		return
	}
	q := c.Request.URL.Query()
	var of hub.Target
	room, user := q.Get("room"), q.Get("user")
	switch {
	case room != "" && user != "":
		apiError(c, http.StatusBadRequest, "give room or user, not both")
		return
	case q.Has("room") && !protocol.ValidRoom(room):
		apiError(c, http.StatusBadRequest, "room names are 1-64 of A-Z a-z 0-9 _ - . :")
		return
	case q.Has("user") && (user == "" || len(user) > maxUserName):
		apiError(c, http.StatusBadRequest, fmt.Sprintf("user must be 1-%d bytes", maxUserName))
		return
	}
	of.Room, of.User = room, user
	since, limit := uint64(0), 100
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			apiError(c, http.StatusBadRequest, "since must be a position (an integer >= 0)")
			return
		}
		since = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxHistoryPage {
			apiError(c, http.StatusBadRequest, fmt.Sprintf("limit must be 0-%d", maxHistoryPage))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	hist, err := s.hub.History(ctx, of, since, limit)
	if err != nil {
		s.log.Warn("history unavailable", "err", err)
		apiError(c, http.StatusServiceUnavailable, "message broker unavailable")
		return
	}
	msgs := make([]json.RawMessage, len(hist.Entries))
	for i, e := range hist.Entries {
		msgs[i] = e.Data
	}
	c.JSON(http.StatusOK, gin.H{"epoch": hist.Epoch, "seq": hist.Seq, "messages": msgs})
}
