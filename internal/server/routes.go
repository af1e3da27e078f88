package server

import (
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/relay/relay/internal/web"
)

// routes is the whole HTTP surface of a node, in one place.
func (s *Server) routes() http.Handler {
	// Process-wide and atomic in gin; release mode keeps gin from printing
	// every route at startup.
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery(), s.accessLog())
	// With no trusted proxies, X-Forwarded-For is ignored and the client IP
	// is the TCP peer; behind nginx, RELAY_TRUSTED_PROXIES names it.
	if err := r.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		s.log.Error("trusted proxies", "err", err) // validated by config already
	}
	r.HandleMethodNotAllowed = true

	r.GET("/", s.handleRoot)
	r.GET("/api/data", s.handleData)
	r.POST("/api/notify", s.bounded(), s.handleNotify)
	r.GET("/api/history", s.bounded(), s.handleHistory)
	r.GET("/api/rooms", s.bounded(), s.handleRooms)
	r.GET("/api/rooms/:room", s.bounded(), s.handleRoom)
	r.POST("/api/rooms/:room/remove", s.bounded(), s.handleRemove)
	r.POST("/api/disconnect", s.bounded(), s.handleDisconnect)
	r.GET("/healthz", s.handleHealthz)
	r.GET("/readyz", s.handleReadyz)
	if s.cfg.MetricsAddr == "" { // else served on its own address only
		r.GET("/metrics", gin.WrapH(s.metrics.Handler()))
	}
	// The client IP (behind a trusted proxy, the forwarded one) is gin's
	// to work out; the rest of the handler is plain net/http.
	r.GET("/ws", func(c *gin.Context) { s.handleWS(c.Writer, c.Request, c.ClientIP()) })
	r.GET("/demo", gin.WrapH(web.Handler()))
	r.GET("/relay.js", gin.WrapH(web.Handler()))

	r.NoRoute(func(c *gin.Context) { jsonError(c, http.StatusNotFound, "no such route") })
	r.NoMethod(func(c *gin.Context) { jsonError(c, http.StatusMethodNotAllowed, "method not allowed") })
	return r
}

// accessLog logs each request at debug level: at info, a busy node would log
// mostly noise.
func (s *Server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		// Checked first: building the attributes (and the client IP)
		// costs more than the request when nobody reads them.
		if !s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
			return
		}
		s.log.Debug("http", "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", c.Writer.Status(), "ip", c.ClientIP())
	}
}

func jsonError(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}
