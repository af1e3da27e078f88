package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/wsconn"
)

// brokerTimeout bounds one broker call made for a client frame.
const brokerTimeout = 5 * time.Second

// handleWS checks everything it can before the upgrade, so that a refused
// client gets an HTTP status and a JSON reason, then hands the connection to
// a session goroutine and returns: the handler's stack and net/http's
// buffers are freed, which is most of what an idle connection would cost.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request, ip string) {
	user, access, status, msg := s.admit(r)
	if status != 0 {
		s.reject(w, status, msg)
		return
	}
	from, rerr := protocol.ParseResume(r.URL.Query())
	if rerr != nil {
		s.rejectAs(w, http.StatusBadRequest, "bad_resume", rerr.Error())
		return
	}
	if !s.reserveConn() {
		s.reject(w, http.StatusServiceUnavailable, "connection limit reached")
		return
	}
	if !s.perIP.reserve(ip, s.cfg.MaxConnsPerIP) {
		s.conns.Add(-1)
		s.rejectAs(w, http.StatusTooManyRequests, "per_ip", "too many connections from your address")
		return
	}
	if !s.startSession() {
		s.conns.Add(-1)
		s.perIP.release(ip)
		s.reject(w, http.StatusServiceUnavailable, "server is shutting down")
		return
	}
	started := false
	defer func() {
		if !started {
			s.conns.Add(-1)
			s.perIP.release(ip)
			s.sessions.Done()
		}
	}()

	up := s.pool.Upgrade(w)
	ws, err := websocket.Accept(up, r, &websocket.AcceptOptions{
		OriginPatterns:  s.cfg.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		s.metrics.Rejected.WithLabelValues("handshake").Inc()
		return // Accept has answered
	}
	ws.SetReadLimit(int64(s.cfg.MaxMessageBytes))
	conn := up.Conn()

	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	client, err := s.hub.Register(ctx, conn, user, access, from)
	cancel()
	if err != nil {
		s.log.Warn("register failed", "user", user, "err", err)
		s.metrics.Rejected.WithLabelValues("unavailable").Inc()
		conn.CloseWith(protocol.CloseTryAgainLater.Status, protocol.CloseTryAgainLater.Reason, time.Second)
		_ = ws.CloseNow()
		return
	}
	if s.drained.Load() {
		// Shutdown began after the check above: CloseAll may have run
		// before this client was registered, so close it here.
		conn.CloseWith(protocol.CloseServiceRestart.Status, protocol.CloseServiceRestart.Reason, time.Second)
	}
	s.metrics.Connections.Inc()
	s.metrics.ConnectionsTotal.Inc()
	started = true
	go s.session(ws, conn, client, ip) // joined by Shutdown through s.sessions
}

// admit authenticates the upgrade request and picks the user name and
// what it may do. A non-zero status means refuse with msg.
func (s *Server) admit(r *http.Request) (user string, access hub.Access, status int, msg string) {
	if s.drained.Load() {
		return "", nil, http.StatusServiceUnavailable, "server is shutting down"
	}
	if !s.originAllowed(r) {
		return "", nil, http.StatusForbidden, "origin not allowed"
	}
	user, access, status, msg = s.identify(r)
	if status != 0 {
		return "", nil, status, msg
	}
	// Checked after the credentials, so that a plain GET (which is how
	// relay.js learns why a browser's handshake was refused) reports a bad
	// token or name rather than the missing upgrade.
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return "", nil, http.StatusUpgradeRequired, "this is the WebSocket endpoint: connect with a WebSocket client"
	}
	return user, access, 0, ""
}

func (s *Server) reject(w http.ResponseWriter, status int, msg string) {
	reason := map[int]string{
		http.StatusBadRequest: "bad_name", http.StatusUnauthorized: "unauthorized",
		http.StatusForbidden: "origin", http.StatusServiceUnavailable: "unavailable",
		http.StatusUpgradeRequired: "not_websocket",
	}[status]
	s.rejectAs(w, status, reason, msg)
}

// rejectAs answers a refused upgrade with status and a JSON error, counted
// under reason.
func (s *Server) rejectAs(w http.ResponseWriter, status int, reason, msg string) {
	s.metrics.Rejected.WithLabelValues(reason).Inc()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":` + quote(msg) + "}\n"))
}

// originAllowed refuses cross-site browser upgrades unless the origin matches
// RELAY_ALLOWED_ORIGINS. Clients that send no Origin (CLIs, servers) are not
// browsers and cannot be cross-site-scripted, so they pass. The WebSocket
// library checks again with the same patterns.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range s.cfg.AllowedOrigins {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// perIP counts open connections by client IP, for
// RELAY_MAX_CONNECTIONS_PER_IP. Only addresses with a connection are kept.
type perIP struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *perIP) reserve(ip string, limit int) bool {
	if limit <= 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		p.n = make(map[string]int)
	}
	if p.n[ip] >= limit {
		return false
	}
	p.n[ip]++
	return true
}

func (p *perIP) release(ip string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		return
	}
	if p.n[ip]--; p.n[ip] <= 0 {
		delete(p.n, ip)
	}
}

func (s *Server) reserveConn() bool {
	max := int64(s.cfg.MaxConnections)
	for {
		n := s.conns.Load()
		if max > 0 && n >= max {
			return false
		}
		if s.conns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func guestName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "guest-" + hex.EncodeToString(b[:])
}

// session is a connection's one reader: it reads frames until the
// connection closes, then unregisters the client (announcing its leave).
func (s *Server) session(ws *websocket.Conn, conn *wsconn.Conn, c *hub.Client, ip string) {
	defer s.sessions.Done()
	defer s.conns.Add(-1)
	defer s.perIP.release(ip)
	defer s.metrics.Connections.Dec()
	defer func() {
		// While shutting down the node says goodbye quickly: the whole
		// shutdown has RELAY_SHUTDOWN_TIMEOUT, and Redis may be down.
		timeout := brokerTimeout
		if s.drained.Load() {
			timeout = time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		s.hub.Unregister(ctx, c)
	}()
	defer ws.CloseNow() //nolint:errcheck // closing an ended connection has nothing to report

	// Made at the first frame that needs the broker: many connections
	// never send one, and an idle connection should cost as little as
	// possible. Closed before the deferred Unregister runs, so that no
	// frame of this client is handled after its leave.
	var in *inbox
	refusing := false // the last frame for the inbox was refused busy
	defer func() {
		if in != nil {
			in.close()
		}
	}()
	for {
		// A context that is never cancelled costs the library nothing per
		// read; the session ends when the socket closes. Reading never
		// waits on the broker: pongs are read here too, and a reader that
		// stopped would be dropped by the heartbeat.
		typ, data, err := ws.Read(context.Background())
		if err != nil {
			s.logReadEnd(c, err)
			return
		}
		if !conn.Allow() {
			s.metrics.DroppedMsgs.WithLabelValues("rate_limited").Inc()
			s.sendError(c, protocol.ErrRateLimited, rateLimitedFrame)
			continue
		}
		if typ != websocket.MessageText {
			s.metrics.Received.WithLabelValues("binary").Inc()
			s.sendError(c, protocol.ErrBinary, binaryFrame)
			continue
		}
		if isPing(data) {
			// Answered here, before the decoder, as the cheapest frame.
			s.metrics.Received.WithLabelValues(protocol.TypePing).Inc()
			s.hub.Send(c, protocol.PongFrame)
			continue
		}
		f, perr := protocol.DecodeClient(data)
		if perr != nil {
			s.metrics.Received.WithLabelValues("invalid").Inc()
			s.clientError(c, perr)
			continue
		}
		s.metrics.Received.WithLabelValues(f.Type).Inc()
		if f.Type == protocol.TypePing { // a ping with spaces or extra fields
			s.hub.Send(c, protocol.PongFrame)
			continue
		}
		if in == nil {
			in = newInbox(func(f protocol.ClientFrame) { s.handleFrame(c, f) })
		}
		// The reader waits for room only if the last frame got in, so
		// that a flood is refused at once after the first wait.
		refusing = !in.put(f, len(data), !refusing)
		if refusing {
			s.metrics.DroppedMsgs.WithLabelValues("busy").Inc()
			s.clientError(c, &protocol.Error{Code: protocol.ErrBusy, Request: f.Type, Room: f.Room,
				Text: "too many frames waiting for the broker; this one was dropped"})
		}
	}
}

var (
	rateLimitedFrame = protocol.EncodeError(&protocol.Error{Code: protocol.ErrRateLimited, Text: "too many frames; this one was dropped"})
	binaryFrame      = protocol.EncodeError(&protocol.Error{Code: protocol.ErrBinary, Text: "relay speaks JSON text frames"})
)

// isPing reports whether data is exactly a ping envelope, the one frame a
// session answers itself.
func isPing(data []byte) bool {
	return string(bytes.TrimSpace(data)) == `{"type":"ping"}`
}

// handleFrame handles a frame that needs the broker, in the client's inbox.
func (s *Server) handleFrame(c *hub.Client, f protocol.ClientFrame) {
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	var err error
	switch f.Type {
	case protocol.TypeMessage:
		err = s.hub.Chat(ctx, c, f.Room, f.Data)
	case protocol.TypeJoin:
		if f.Token != "" {
			if err = s.grant(c, f.Room, f.Token); err != nil {
				break
			}
		}
		err = s.hub.Join(ctx, c, f.Room, f.Last)
	case protocol.TypeWho:
		err = s.hub.Who(ctx, c, f.Room)
	case protocol.TypeLeave:
		err = s.hub.Leave(ctx, c, f.Room)
	}
	var perr2 *protocol.Error
	if errors.As(err, &perr2) {
		if perr2.Code == protocol.ErrUnavailable {
			s.metrics.PublishErrors.Inc()
		}
		// Say which frame this answers, so that a client can tell which
		// of its joins (or who requests) was refused.
		answered := *perr2
		answered.Request, answered.Room = f.Type, f.Room
		s.clientError(c, &answered)
	}
}

func (s *Server) clientError(c *hub.Client, e *protocol.Error) {
	s.sendError(c, e.Code, protocol.EncodeError(e))
}

// sendError counts and queues an encoded error frame.
func (s *Server) sendError(c *hub.Client, code protocol.ErrorCode, frame protocol.Frame) {
	s.metrics.ClientErrors.WithLabelValues(string(code)).Inc()
	s.hub.Send(c, frame)
}

func (s *Server) logReadEnd(c *hub.Client, err error) {
	status := websocket.CloseStatus(err)
	if status == websocket.StatusMessageTooBig || errors.Is(err, websocket.ErrMessageTooBig) {
		s.metrics.Disconnects.WithLabelValues("too_big").Inc()
	}
	s.log.Debug("connection closed", "user", c.User(), "id", c.ID(), "status", int(status), "err", err)
}

var _ hub.Conn = (*wsconn.Conn)(nil)
