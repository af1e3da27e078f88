package config

import (
	"bytes"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env returns a getenv backed by key/value pairs.
func env(kv ...string) func(string) string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "relay"
}

// TestVariables checks, for every variable, its default, one valid value and
// (where the variable can be invalid) one invalid value.
func TestVariables(t *testing.T) {
	tests := []struct {
		name    string
		get     func(Config) any
		def     any
		valid   string
		want    any
		invalid string // "" when every value is accepted
	}{
		{"RELAY_ADDR", func(c Config) any { return c.Addr }, ":3000", "127.0.0.1:8080", "127.0.0.1:8080", ""},
		{"RELAY_NODE_ID", func(c Config) any { return c.NodeID }, hostname(), "node-7", "node-7", strings.Repeat("n", 256)},
		{"RELAY_REDIS_URL", func(c Config) any { return c.RedisURL }, "", "rediss://:pw@cache:6380/2", "rediss://:pw@cache:6380/2", "http://cache:6379"},
		{"RELAY_JWT_SECRET", func(c Config) any { return c.JWTSecret }, "", "s3cret", "s3cret", ""},
		{"RELAY_JWT_ISSUER", func(c Config) any { return c.JWTIssuer }, "", "https://id.example.com", "https://id.example.com", ""},
		{"RELAY_JWT_AUDIENCE", func(c Config) any { return c.JWTAudience }, "", "relay", "relay", ""},
		{"RELAY_JWT_REQUIRE_EXP", func(c Config) any { return c.JWTRequireExp }, false, "true", true, "sometimes"},
		{"RELAY_API_KEY", func(c Config) any { return c.APIKey }, "", "k3y", "k3y", ""},
		{"RELAY_ALLOWED_ORIGINS", func(c Config) any { return c.AllowedOrigins }, []string(nil), "example.com,*.example.com", []string{"example.com", "*.example.com"}, "[bad"},
		{"RELAY_MAX_CONNECTIONS", func(c Config) any { return c.MaxConnections }, 0, "5000", 5000, "-1"},
		{"RELAY_MAX_CONNECTIONS_PER_IP", func(c Config) any { return c.MaxConnsPerIP }, 0, "10", 10, "-1"},
		{"RELAY_MAX_MESSAGE_BYTES", func(c Config) any { return c.MaxMessageBytes }, 65536, "1024", 1024, "1023"},
		{"RELAY_PING_INTERVAL", func(c Config) any { return c.PingInterval }, 30 * time.Second, "15s", 15 * time.Second, "abc"},
		{"RELAY_PONG_TIMEOUT", func(c Config) any { return c.PongTimeout }, 10 * time.Second, "2s", 2 * time.Second, "0s"},
		{"RELAY_SEND_QUEUE_BYTES", func(c Config) any { return c.SendQueueBytes }, 1 << 20, "4194304", 4 << 20, "lots"},
		{"RELAY_RATE_LIMIT", func(c Config) any { return c.RateLimit }, 20.0, "2.5", 2.5, "NaN"},
		{"RELAY_PRESENCE_LIMIT", func(c Config) any { return c.PresenceLimit }, 100, "0", 0, "-5"},
		{"RELAY_PRESENCE_INTERVAL", func(c Config) any { return c.PresenceInterval }, time.Second, "250ms", 250 * time.Millisecond, "-1s"},
		{"RELAY_HISTORY_SIZE", func(c Config) any { return c.HistorySize }, 200, "0", 0, "-1"},
		{"RELAY_HISTORY_TTL", func(c Config) any { return c.HistoryTTL }, 2 * time.Minute, "30s", 30 * time.Second, "0s"},
		{"RELAY_STREAM_TTL", func(c Config) any { return c.StreamTTL }, 24 * time.Hour, "1h", time.Hour, "1m"},
		{"RELAY_GUEST_ROOMS", func(c Config) any { return c.GuestRooms }, []string{"*"}, "lobby, support-*", []string{"lobby", "support-*"}, "a*b"},
		{"RELAY_WHO_LIMIT", func(c Config) any { return c.WhoLimit }, 1000, "50", 50, "0"},
		{"RELAY_SHUTDOWN_TIMEOUT", func(c Config) any { return c.ShutdownTimeout }, 10 * time.Second, "1m", time.Minute, "10"},
		{"RELAY_HTTP_IDLE_TIMEOUT", func(c Config) any { return c.HTTPIdleTimeout }, time.Minute, "5s", 5 * time.Second, "0s"},
		{"RELAY_HTTP_BODY_TIMEOUT", func(c Config) any { return c.HTTPBodyTimeout }, 10 * time.Second, "2s", 2 * time.Second, "-1s"},
		{"RELAY_TRUSTED_PROXIES", func(c Config) any { return c.TrustedProxies }, []string(nil), "10.0.0.1,fd00::/8", []string{"10.0.0.1", "fd00::/8"}, "10.0.0.0/33"},
		{"RELAY_REDIS_PREFIX", func(c Config) any { return c.RedisPrefix }, "relay:", "chat:", "chat:", ""},
		{"RELAY_LOG_LEVEL", func(c Config) any { return c.LogLevel }, slog.LevelInfo, "WARN", slog.LevelWarn, "verbose"},
		{"RELAY_LOG_FORMAT", func(c Config) any { return c.LogFormat }, "text", "JSON", "json", "xml"},
		{"RELAY_METRICS_ADDR", func(c Config) any { return c.MetricsAddr }, "", "127.0.0.1:9090", "127.0.0.1:9090", ""},
		{"RELAY_DEBUG_ADDR", func(c Config) any { return c.DebugAddr }, "", "127.0.0.1:6060", "127.0.0.1:6060", ""},
	}
	if len(tests) != len(settings()) {
		t.Fatalf("test table has %d variables, settings has %d", len(tests), len(settings()))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env())
			if err != nil {
				t.Fatalf("Load(defaults): %v", err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.def) {
				t.Errorf("default = %#v, want %#v", got, tt.def)
			}

			c, err = Load(env(tt.name, tt.valid))
			if err != nil {
				t.Fatalf("Load(%s=%q): %v", tt.name, tt.valid, err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s=%q gives %#v, want %#v", tt.name, tt.valid, got, tt.want)
			}

			if tt.invalid == "" {
				return
			}
			_, err = Load(env(tt.name, tt.invalid))
			if err == nil {
				t.Fatalf("Load(%s=%q) succeeded, want error", tt.name, tt.invalid)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.name+"=") || !strings.Contains(msg, `"`+tt.invalid+`"`) {
				t.Errorf("error %q does not name %s and its value %q", msg, tt.name, tt.invalid)
			}
			if !strings.Contains(msg, "want ") || strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line saying what is wanted", msg)
			}
		})
	}
}

func TestLoadReportsFirstErrorInTableOrder(t *testing.T) {
	_, err := Load(env("RELAY_LOG_FORMAT", "xml", "RELAY_PING_INTERVAL", "abc"))
	want := `RELAY_PING_INTERVAL="abc": want a positive duration such as 30s`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestSendQueueMustHoldOneMessage(t *testing.T) {
	tests := []struct {
		name    string
		env     func(string) string
		wantErr string // substring; "" for success
	}{
		{"equal is enough", env("RELAY_MAX_MESSAGE_BYTES", "4096", "RELAY_SEND_QUEUE_BYTES", "4096"), ""},
		{"smaller explicit", env("RELAY_MAX_MESSAGE_BYTES", "4096", "RELAY_SEND_QUEUE_BYTES", "4095"),
			`RELAY_SEND_QUEUE_BYTES="4095": want at least RELAY_MAX_MESSAGE_BYTES (4096)`},
		{"default queue too small", env("RELAY_MAX_MESSAGE_BYTES", "2097152"),
			`RELAY_SEND_QUEUE_BYTES="1048576" (default): want at least RELAY_MAX_MESSAGE_BYTES (2097152)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.env)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), "max-size message"):
				t.Fatalf("error %q does not explain the rule", err)
			}
		})
	}
}

func TestLists(t *testing.T) {
	tests := []struct {
		name, val string
		get       func(Config) []string
		want      []string
		wantErr   bool
	}{
		{"RELAY_ALLOWED_ORIGINS", " example.com , *.example.com,,https://app.example.com, ", func(c Config) []string { return c.AllowedOrigins },
			[]string{"example.com", "*.example.com", "https://app.example.com"}, false},
		{"RELAY_ALLOWED_ORIGINS", " , ,", func(c Config) []string { return c.AllowedOrigins }, nil, false},
		{"RELAY_ALLOWED_ORIGINS", "ok.com,a[b", nil, nil, true},
		{"RELAY_ALLOWED_ORIGINS", `bad\`, nil, nil, true},
		{"RELAY_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16 ,::1,2001:db8::/32", func(c Config) []string { return c.TrustedProxies },
			[]string{"10.0.0.1", "192.168.0.0/16", "::1", "2001:db8::/32"}, false},
		{"RELAY_TRUSTED_PROXIES", "10.0.0.1,proxy.local", nil, nil, true},
		{"RELAY_TRUSTED_PROXIES", "256.0.0.1", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.val, func(t *testing.T) {
			c, err := Load(env(tt.name, tt.val))
			if tt.wantErr {
				if err == nil || !strings.HasPrefix(err.Error(), tt.name+"=") {
					t.Fatalf("err = %v, want an error naming %s", err, tt.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRedisURLErrorsHidePassword(t *testing.T) {
	for _, val := range []string{
		"http://user:hunter2@cache:6379",  // parses, wrong scheme
		"redis://user:hunter2@cache:port", // does not parse
	} {
		_, err := Load(env("RELAY_REDIS_URL", val))
		if err == nil {
			t.Fatalf("RELAY_REDIS_URL=%q accepted", val)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks password: %v", err)
		}
	}
}

func TestUsageMentionsEveryVariable(t *testing.T) {
	// Each Config field has exactly one setting, so a new field cannot be
	// added without documenting it.
	if n, m := reflect.TypeFor[Config]().NumField(), len(settings()); n != m {
		t.Fatalf("Config has %d fields but %d settings", n, m)
	}
	u := Usage()
	for _, s := range settings() {
		if !strings.HasPrefix(s.name, envPrefix) {
			t.Errorf("%s lacks the %s prefix", s.name, envPrefix)
		}
		if !strings.Contains(u, s.name+" ") {
			t.Errorf("Usage does not mention %s:\n%s", s.name, u)
		}
	}
	for _, want := range []string{":3000", "65536", "30s", "relay:", "host name"} {
		if !strings.Contains(u, want) {
			t.Errorf("Usage lacks default %q", want)
		}
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	c, err := Load(env(
		"RELAY_JWT_SECRET", "jwt-hunter2",
		"RELAY_API_KEY", "key-hunter2",
		"RELAY_REDIS_URL", "redis://app:pw-hunter2@cache:6379/0",
	))
	if err != nil {
		t.Fatal(err)
	}
	if n, m := len(c.LogValue().Group()), len(settings()); n != m {
		t.Errorf("LogValue has %d attributes, want one per setting (%d)", n, m)
	}

	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("start", "config", c)
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("log leaks a secret: %s", out)
	}
	for _, want := range []string{"config.jwt_secret=set", "config.api_key=set", "cache:6379"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: %s", want, out)
		}
	}

	buf.Reset()
	c, _ = Load(env())
	slog.New(slog.NewTextHandler(&buf, nil)).Info("start", "config", c)
	if !strings.Contains(buf.String(), "config.jwt_secret=unset") {
		t.Errorf("unset secret not reported as unset: %s", buf.String())
	}
}
