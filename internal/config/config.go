// Package config builds relay's runtime configuration from RELAY_*
// environment variables.
//
// Every variable is described once, in the table returned by settings. Load
// walks that table to read and validate values, and Usage walks it to print
// the help text, so the documented list and the loader cannot drift apart.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relay/relay/internal/protocol"
)

// Config is relay's complete runtime configuration. It is built once at
// start-up by Load and treated as read-only afterwards.
type Config struct {
	Addr             string        // listen address
	NodeID           string        // identifies this node among peers sharing a broker
	RedisURL         string        // "" selects the embedded in-process broker
	JWTSecret        string        // HS256 secret for client tokens; "" disables JWT auth
	JWTIssuer        string        // required iss; "" = any
	JWTAudience      string        // required aud; "" = any
	JWTRequireExp    bool          // refuse tokens without exp
	APIKey           string        // bearer key for the HTTP publish API; "" disables it
	AllowedOrigins   []string      // path.Match host patterns for the WebSocket Origin check
	MaxConnections   int           // 0 means unlimited
	MaxConnsPerIP    int           // per client IP; 0 means unlimited
	MaxMessageBytes  int           // largest frame accepted from or sent to a client
	PingInterval     time.Duration // how often idle connections are pinged
	PongTimeout      time.Duration // how long to wait for the pong before dropping
	SendQueueBytes   int           // per-connection outbound buffer before a slow client is dropped
	RateLimit        float64       // client frames per second per connection; 0 disables
	PresenceLimit    int           // rooms up to this size announce each join and leave
	PresenceInterval time.Duration // how often presence changes are batched and sent
	HistorySize      int           // messages kept per stream; 0 = no history
	HistoryTTL       time.Duration // how long a message stays in history
	StreamTTL        time.Duration // how long an unused stream's position is kept
	GuestRooms       []string      // room patterns guests may join (no JWT secret); lobby always
	WhoLimit         int           // most users in a who answer
	ShutdownTimeout  time.Duration // grace period for draining connections on shutdown
	HTTPIdleTimeout  time.Duration // how long an idle keep-alive connection stays open
	HTTPBodyTimeout  time.Duration // how long an API request may take to send its body
	TrustedProxies   []string      // IPs/CIDRs whose X-Forwarded-For is believed
	RedisPrefix      string        // namespace for all Redis keys and channels
	LogLevel         slog.Level
	LogFormat        string // "text" or "json"
	DebugAddr        string // where to serve pprof profiles; empty = off
	MetricsAddr      string // where to serve /metrics instead of the public port; empty = public port
}

const (
	envPrefix     = "RELAY_"
	minMessageMax = 1 << 10 // 1 KiB: smaller would not fit ordinary protocol frames
	maxMessageMax = 16 << 20
)

// setting describes one environment variable. The table of settings is the
// single source of truth for names, defaults and help text.
type setting struct {
	name    string // full variable name, including RELAY_
	def     string // default, fed through parse exactly like a user value
	defText string // shown by Usage instead of def when the default is computed
	help    string
	// parse stores val into c, or returns what was expected (e.g. "an
	// integer >= 0"); Load adds the variable name and value around it. It
	// runs in table order, so it may read fields set by earlier entries.
	parse func(c *Config, val string) error
	// show, when set, renders the value for error messages with any
	// secret inside it masked; by default the value is simply quoted.
	show func(val string) string
}

// settings returns the table in Config field order. It is a function rather
// than a package variable so that no caller can mutate it.
func settings() []setting {
	return []setting{
		{name: "RELAY_ADDR", def: ":3000", help: "listen address (host:port)",
			parse: func(c *Config, v string) error { c.Addr = v; return nil }},
		{name: "RELAY_NODE_ID", defText: "host name", help: "unique node name within a cluster",
			parse: parseNodeID},
		{name: "RELAY_REDIS_URL", defText: "(embedded broker)", help: "redis:// or rediss:// URL of the shared broker",
			parse: parseRedisURL, show: showURL},
		{name: "RELAY_JWT_SECRET", defText: "(unset)", help: "HS256 secret for client JWTs; unset disables token checks",
			parse: func(c *Config, v string) error { c.JWTSecret = v; return nil }},
		{name: "RELAY_JWT_ISSUER", defText: "(any)", help: "set: a token's iss must be this",
			parse: func(c *Config, v string) error { c.JWTIssuer = v; return nil }},
		{name: "RELAY_JWT_AUDIENCE", defText: "(any)", help: "set: a token's aud must include this",
			parse: func(c *Config, v string) error { c.JWTAudience = v; return nil }},
		{name: "RELAY_JWT_REQUIRE_EXP", def: "false", help: "true: refuse tokens that have no exp (that never expire)",
			parse: parseBool(func(c *Config) *bool { return &c.JWTRequireExp })},
		{name: "RELAY_API_KEY", defText: "(unset)", help: "bearer key for the HTTP API; unset leaves it open",
			parse: func(c *Config, v string) error { c.APIKey = v; return nil }},
		{name: "RELAY_ALLOWED_ORIGINS", defText: "(none)", help: "comma-separated Origin host patterns, e.g. *.example.com",
			parse: parseOrigins},
		{name: "RELAY_MAX_CONNECTIONS", def: "0", help: "max concurrent connections, 0 = unlimited",
			parse: intIn(func(c *Config) *int { return &c.MaxConnections }, 0, math.MaxInt)},
		{name: "RELAY_MAX_CONNECTIONS_PER_IP", def: "0", help: "max concurrent connections from one client IP (behind a trusted proxy, the forwarded one), 0 = unlimited",
			parse: intIn(func(c *Config) *int { return &c.MaxConnsPerIP }, 0, math.MaxInt)},
		{name: "RELAY_MAX_MESSAGE_BYTES", def: "65536", help: "max bytes in one client frame (close 1009 past it) or notify message (400)",
			parse: intIn(func(c *Config) *int { return &c.MaxMessageBytes }, minMessageMax, maxMessageMax)},
		{name: "RELAY_PING_INTERVAL", def: "30s", help: "interval between keep-alive pings",
			parse: positiveDuration(func(c *Config) *time.Duration { return &c.PingInterval })},
		{name: "RELAY_PONG_TIMEOUT", def: "10s", help: "time allowed for a pong before disconnecting",
			parse: positiveDuration(func(c *Config) *time.Duration { return &c.PongTimeout })},
		{name: "RELAY_SEND_QUEUE_BYTES", def: "1048576", help: "bytes queued for one client before it is closed as too slow (1008)",
			parse: parseSendQueue},
		{name: "RELAY_RATE_LIMIT", def: "20", help: "client frames per second per connection, burst twice that; 0 = off",
			parse: parseRateLimit},
		{name: "RELAY_PRESENCE_LIMIT", def: "100", help: "rooms up to this size announce each join/leave; bigger ones get presence events",
			parse: intIn(func(c *Config) *int { return &c.PresenceLimit }, 0, math.MaxInt)},
		{name: "RELAY_PRESENCE_INTERVAL", def: "1s", help: "at most one presence event per big room per interval",
			parse: positiveDuration(func(c *Config) *time.Duration { return &c.PresenceInterval })},
		{name: "RELAY_HISTORY_SIZE", def: "200", help: "messages kept per stream (room, user, broadcast) for resume; 0 = none",
			parse: intIn(func(c *Config) *int { return &c.HistorySize }, 0, 100000)},
		{name: "RELAY_HISTORY_TTL", def: "2m", help: "how long a message stays in its stream's history",
			parse: positiveDuration(func(c *Config) *time.Duration { return &c.HistoryTTL })},
		{name: "RELAY_STREAM_TTL", def: "24h", help: "a stream neither published to nor read for this long is forgotten (its position too; numbering resumes past every position used); at least RELAY_HISTORY_TTL",
			parse: parseStreamTTL},
		{name: "RELAY_GUEST_ROOMS", def: "*", help: "comma-separated rooms and prefixes (support-*) guests may join when RELAY_JWT_SECRET is unset; lobby always",
			parse: parseGuestRooms},
		{name: "RELAY_WHO_LIMIT", def: "1000", help: "most users listed in a who answer (WebSocket who, GET /api/rooms/{room})",
			parse: intIn(func(c *Config) *int { return &c.WhoLimit }, 1, 100000)},
		{name: "RELAY_SHUTDOWN_TIMEOUT", def: "10s", help: "time from SIGTERM to exit: close clients with 1012, then stop",
			parse: positiveDuration(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
		{name: "RELAY_HTTP_IDLE_TIMEOUT", def: "60s", help: "an idle keep-alive HTTP connection is closed after this",
			parse: positiveDuration(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout })},
		{name: "RELAY_HTTP_BODY_TIMEOUT", def: "10s", help: "an API request must have sent its body within this (408 past it)",
			parse: positiveDuration(func(c *Config) *time.Duration { return &c.HTTPBodyTimeout })},
		{name: "RELAY_TRUSTED_PROXIES", defText: "(none)", help: "comma-separated proxy IPs/CIDRs trusted for X-Forwarded-For",
			parse: parseProxies},
		{name: "RELAY_REDIS_PREFIX", def: "relay:", help: "prefix for every Redis key and channel",
			parse: func(c *Config, v string) error { c.RedisPrefix = v; return nil }},
		{name: "RELAY_LOG_LEVEL", def: "info", help: "debug, info, warn or error",
			parse: parseLogLevel},
		{name: "RELAY_LOG_FORMAT", def: "text", help: "text or json",
			parse: parseLogFormat},
		{name: "RELAY_METRICS_ADDR", defText: "(public port)", help: "serve /metrics on this address only, not on the public port",
			parse: func(c *Config, v string) error { c.MetricsAddr = v; return nil }},
		{name: "RELAY_DEBUG_ADDR", defText: "(off)", help: "serve Go's pprof profiles on this address; keep it on loopback",
			parse: func(c *Config, v string) error { c.DebugAddr = v; return nil }},
	}
}

// Load reads every RELAY_* variable through getenv (os.Getenv in production,
// a map lookup in tests) and returns the validated configuration. An empty
// value selects the default. The first invalid value, in table order, is
// reported as a one-line error naming the variable, its value and what was
// expected.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	for _, s := range settings() {
		val, fromDefault := getenv(s.name), false
		if val == "" {
			val, fromDefault = s.def, true
		}
		if err := s.parse(&c, val); err != nil {
			shown := strconv.Quote(val)
			if s.show != nil {
				shown = s.show(val)
			}
			// Defaults are valid on their own, but cross-field rules can
			// still reject one; say so, or the user hunts for a variable
			// they never set.
			origin := ""
			if fromDefault {
				origin = " (default)"
			}
			return Config{}, fmt.Errorf("%s=%s%s: want %w", s.name, shown, origin, err)
		}
	}
	return c, nil
}

// Usage returns a table of every variable with its default and meaning, for
// `relay -h`.
func Usage() string {
	var b strings.Builder
	b.WriteString("Environment variables:\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, s := range settings() {
		def := s.def
		if s.defText != "" {
			def = s.defText
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.name, def, s.help)
	}
	tw.Flush() // cannot fail: strings.Builder never returns an error
	return b.String()
}

// LogValue implements slog.LogValuer so the configuration can be logged at
// start-up without leaking secrets: JWTSecret and APIKey appear only as
// "set"/"unset", and a password in RedisURL is masked.
func (c Config) LogValue() slog.Value {
	redis := "unset"
	if c.RedisURL != "" {
		redis = redactURL(c.RedisURL)
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("node_id", c.NodeID),
		slog.String("redis_url", redis),
		slog.String("jwt_secret", setOrUnset(c.JWTSecret)),
		slog.String("api_key", setOrUnset(c.APIKey)),
		slog.Any("allowed_origins", c.AllowedOrigins),
		slog.Int("max_connections", c.MaxConnections),
		slog.Int("max_message_bytes", c.MaxMessageBytes),
		slog.Duration("ping_interval", c.PingInterval),
		slog.Duration("pong_timeout", c.PongTimeout),
		slog.Int("send_queue_bytes", c.SendQueueBytes),
		slog.Float64("rate_limit", c.RateLimit),
		slog.Int("presence_limit", c.PresenceLimit),
		slog.Duration("presence_interval", c.PresenceInterval),
		slog.Int("history_size", c.HistorySize),
		slog.Duration("history_ttl", c.HistoryTTL),
		slog.Duration("stream_ttl", c.StreamTTL),
		slog.Any("guest_rooms", c.GuestRooms),
		slog.Int("who_limit", c.WhoLimit),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("http_idle_timeout", c.HTTPIdleTimeout),
		slog.Duration("http_body_timeout", c.HTTPBodyTimeout),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.String("redis_prefix", c.RedisPrefix),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", c.LogFormat),
		slog.String("debug_addr", c.DebugAddr),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.String("jwt_issuer", c.JWTIssuer),
		slog.String("jwt_audience", c.JWTAudience),
		slog.Bool("jwt_require_exp", c.JWTRequireExp),
		slog.Int("max_connections_per_ip", c.MaxConnsPerIP),
	)
}

func setOrUnset(secret string) string {
	if secret == "" {
		return "unset"
	}
	return "set"
}

// redactURL masks the password of a URL. If the value does not parse, it is
// hidden entirely, since we cannot tell where a password might be.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(hidden)"
	}
	return u.Redacted()
}

// showURL is redactURL for error messages, where values are quoted; the
// placeholder stays unquoted so it is not mistaken for the value itself.
func showURL(raw string) string {
	if _, err := url.Parse(raw); err != nil {
		return "(unparsable URL hidden)"
	}
	return strconv.Quote(redactURL(raw))
}

func orHostname(v string) string {
	if v != "" {
		return v
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "relay"
}

// parseNodeID takes the node name; it travels in a one-byte length field of
// every broker message, hence the limit.
func parseNodeID(c *Config, v string) error {
	if len(v) > 255 {
		return errors.New("at most 255 bytes")
	}
	c.NodeID = orHostname(v)
	return nil
}

func parseRedisURL(c *Config, v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil {
		// url.Error repeats the raw URL, password included; keep only
		// the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("a URL such as redis://host:6379/0: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return errors.New("a redis:// or rediss:// URL")
	}
	c.RedisURL = v
	return nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items so that "a, b,," means [a b].
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func parseOrigins(c *Config, v string) error {
	list := splitList(v)
	for _, p := range list {
		// Match reports ErrBadPattern for a malformed pattern whatever the
		// name, so this catches typos at start-up rather than per request.
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("comma-separated host patterns; %q is malformed", p)
		}
	}
	c.AllowedOrigins = list
	return nil
}

func parseGuestRooms(c *Config, v string) error {
	list := splitList(v)
	if _, err := protocol.ParseRooms(list); err != nil {
		return fmt.Errorf("comma-separated room names or prefixes ending in *: %w", err)
	}
	c.GuestRooms = list
	return nil
}

func parseProxies(c *Config, v string) error {
	list := splitList(v)
	for _, p := range list {
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		return fmt.Errorf("comma-separated IPs or CIDRs; %q is neither", p)
	}
	c.TrustedProxies = list
	return nil
}

// intIn returns a parser for an integer field that must lie in [lo, hi].
func intIn(field func(*Config) *int, lo, hi int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			if hi == math.MaxInt {
				return fmt.Errorf("an integer >= %d", lo)
			}
			return fmt.Errorf("an integer from %d to %d", lo, hi)
		}
		*field(c) = n
		return nil
	}
}

// parseBool returns a parser for a true/false field.
func parseBool(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("true or false")
		}
		*field(c) = b
		return nil
	}
}

// parseStreamTTL: a stream must outlive its history, or a message still in
// history could lose the position it is stored under.
func parseStreamTTL(c *Config, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < c.HistoryTTL {
		return fmt.Errorf("a duration of at least RELAY_HISTORY_TTL (%s)", c.HistoryTTL)
	}
	c.StreamTTL = d
	return nil
}

// positiveDuration returns a parser for a duration field that must be > 0.
func positiveDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("a positive duration such as 30s")
		}
		*field(c) = d
		return nil
	}
}

// parseSendQueue relies on RELAY_MAX_MESSAGE_BYTES coming earlier in the
// table: a queue smaller than one maximum-size message could never accept
// that message, so the connection would be dropped on its first large frame.
func parseSendQueue(c *Config, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return errors.New("an integer number of bytes")
	}
	if n < c.MaxMessageBytes {
		return fmt.Errorf("at least RELAY_MAX_MESSAGE_BYTES (%d), since a queue must hold at least one max-size message", c.MaxMessageBytes)
	}
	c.SendQueueBytes = n
	return nil
}

func parseRateLimit(c *Config, v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return errors.New("a number of frames per second >= 0 (0 = off)")
	}
	c.RateLimit = f
	return nil
}

func parseLogLevel(c *Config, v string) error {
	switch strings.ToLower(v) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		return errors.New("one of debug, info, warn, error")
	}
	return nil
}

func parseLogFormat(c *Config, v string) error {
	switch f := strings.ToLower(v); f {
	case "text", "json":
		c.LogFormat = f
		return nil
	}
	return errors.New("text or json")
}
