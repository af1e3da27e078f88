package server

import (
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// Slow API requests: a client that trickles a request body holds a
// goroutine and a socket for as long as it likes unless something bounds
// it. Each API request gets RELAY_HTTP_BODY_TIMEOUT to send its body, and a
// drain cuts the bodies still arriving, so that a slow request cannot hold
// a shutdown for its whole timeout.

// bodies are the API requests still able to read their body.
type bodies struct {
	mu   sync.Mutex
	open map[*http.ResponseController]struct{}
	cut  bool // draining: new ones get no time at all
}

// bounded is the middleware of the API routes.
func (s *Server) bounded() gin.HandlerFunc {
	return func(c *gin.Context) {
		rc := http.NewResponseController(c.Writer)
		s.bodies.mu.Lock()
		deadline := time.Now().Add(s.cfg.HTTPBodyTimeout)
		if s.bodies.cut {
			deadline = time.Now()
		}
		_ = rc.SetReadDeadline(deadline)
		s.bodies.open[rc] = struct{}{}
		s.bodies.mu.Unlock()
		defer func() {
			s.bodies.mu.Lock()
			delete(s.bodies.open, rc)
			s.bodies.mu.Unlock()
		}()
		c.Next()
		if c.Writer.Header().Get("Connection") == "close" {
			// An answer given before the body was read (401, 400) says
			// Connection: close, which spares the drain net/http would do
			// before writing it, but not the one after the handler:
			// finishing a request reads up to 256 KiB of an announced
			// body, so that the connection could be reused, until the
			// body deadline. The connection is closed anyway: end that
			// read at once.
			_ = rc.SetReadDeadline(time.Now())
		}
	}
}

// cutBodies ends the reads of every API request still receiving its body.
func (s *Server) cutBodies() {
	s.bodies.mu.Lock()
	defer s.bodies.mu.Unlock()
	s.bodies.cut = true
	for rc := range s.bodies.open {
		_ = rc.SetReadDeadline(time.Now())
	}
}
