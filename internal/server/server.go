// Package server is relay's HTTP edge: Gin routes, the API handlers and the
// WebSocket endpoint. It turns requests into hub calls; the hub and the
// broker know nothing of HTTP.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/config"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/metrics"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/wsconn"
)

// Readier reports whether the node can deliver messages (the broker).
type Readier interface {
	Ready(ctx context.Context) error
}

// Server serves one node's HTTP and WebSocket traffic. Build it with New,
// serve Handler with an http.Server, and call Shutdown once that server has
// stopped accepting.
type Server struct {
	cfg      config.Config
	hub      *hub.Hub
	broker   Readier
	metrics  *metrics.Metrics
	log      *slog.Logger
	pool     *wsconn.Pool
	verifier *auth.Verifier
	guests   hub.Access // what guests may do; nil: anything
	apiKey   auth.APIKey
	handler  http.Handler

	// GET /api/data's answer around its timestamp.
	dataPrefix, dataSuffix []byte

	conns atomic.Int64 // open or opening WebSocket connections

	mu       sync.Mutex // guards draining against sessions.Add
	draining bool
	drained  atomic.Bool    // mirrors draining for lock-free reads
	sessions sync.WaitGroup // one per WebSocket connection, upgrade to cleanup
	shutOnce sync.Once

	bodies bodies // API requests still receiving their body
	perIP  perIP  // open connections by client IP
}

// New builds a server for the hub.
func New(cfg config.Config, h *hub.Hub, b Readier, m *metrics.Metrics, log *slog.Logger) *Server {
	s := &Server{
		cfg:      cfg,
		hub:      h,
		broker:   b,
		metrics:  m,
		log:      log,
		verifier: auth.NewVerifier(cfg.JWTSecret, auth.Claims{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, RequireExp: cfg.JWTRequireExp}),
		apiKey:   auth.NewAPIKey(cfg.APIKey),
		guests:   guestAccess(cfg.GuestRooms),
		pool: wsconn.NewPool(wsconn.Options{
			QueueBytes:     cfg.SendQueueBytes,
			PingInterval:   cfg.PingInterval,
			PongTimeout:    cfg.PongTimeout,
			RateLimit:      cfg.RateLimit,
			SustainedLimit: sustainedLimit,
			Observer:       m,
		}),
	}
	s.bodies.open = make(map[*http.ResponseController]struct{})
	s.dataPrefix = []byte(`{"timestamp":`)
	s.dataSuffix = []byte(`,"message":"来自实时服务的数据","node":` + quote(h.Node()) + "}")
	s.handler = s.routes()
	return s
}

// Handler returns the HTTP handler for every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Drain makes /readyz answer 503 and refuses new WebSocket upgrades, so that a
// load balancer moves traffic elsewhere. Idempotent.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	s.drained.Store(true)
	s.mu.Unlock()
	s.cutBodies()
}

// startSession reserves a place for a new WebSocket session, unless draining.
func (s *Server) startSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.sessions.Add(1)
	return true
}

// Shutdown drains, closes every WebSocket connection with 1012 after what is
// queued for it, and waits for their sessions to end or ctx to expire, when
// the rest are cut. It stops the connection pool last. Idempotent.
func (s *Server) Shutdown(ctx context.Context) {
	s.shutOnce.Do(func() {
		s.Drain()
		// Clients get all the time there is to take what is queued and
		// answer the close.
		grace := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			grace = time.Until(dl)
		}
		s.hub.CloseAll(protocol.CloseServiceRestart.Status, protocol.CloseServiceRestart.Reason, grace)

		done := make(chan struct{})
		go func() { // joined below, or by the pool's Close cutting every socket
			s.sessions.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("shutdown timeout: cutting remaining connections", "open", s.conns.Load())
		}
		s.pool.Close() // aborts what is left, which ends those sessions
		<-done
	})
}

// sustainedLimit is how long a client may keep sending past its rate limit
// before it is closed (1008): a burst is answered with rate_limited errors,
// a flood is not.
const sustainedLimit = 5 * time.Second
