package server_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

func TestRootAndData(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_NODE_ID": "node-a"})

	status, body := request(t, http.MethodGet, n.URL()+"/", "", "")
	if status != 200 || !strings.Contains(body["text"].(string), "欢迎访问实时服务") || !strings.Contains(body["text"].(string), "/ws") {
		t.Fatalf("GET / = %d %q", status, body["text"])
	}

	before := time.Now().UnixMilli()
	status, body = request(t, http.MethodGet, n.URL()+"/api/data", "", "")
	if status != 200 {
		t.Fatalf("GET /api/data = %d", status)
	}
	ts, _ := body["timestamp"].(float64)
	if int64(ts) < before || int64(ts) > time.Now().UnixMilli() {
		t.Errorf("timestamp %v is not now (unix ms)", body["timestamp"])
	}
	if body["node"] != "node-a" || body["message"] == "" {
		t.Errorf("body = %v", body)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	if status, _ := request(t, http.MethodGet, n.URL()+"/healthz", "", ""); status != 200 {
		t.Errorf("healthz = %d", status)
	}
	if status, body := request(t, http.MethodGet, n.URL()+"/readyz", "", ""); status != 200 {
		t.Errorf("readyz = %d %v", status, body)
	}

	c := wstest.Dial(t, n.WS("name=metric"), nil)
	c.Welcome()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"relay_connections 1", "relay_messages_delivered_total", "process_resident_memory_bytes", "go_goroutines"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A broker that cannot deliver makes the node unready but still alive.
	_ = n.Node().Broker().Close()
	if status, body := request(t, http.MethodGet, n.URL()+"/readyz", "", ""); status != 503 {
		t.Errorf("readyz with closed broker = %d %v", status, body)
	}
	if status, _ := request(t, http.MethodGet, n.URL()+"/healthz", "", ""); status != 200 {
		t.Errorf("healthz with closed broker = %d", status)
	}
}

func TestNotifyValidation(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_MAX_MESSAGE_BYTES": "1024"})
	long := strings.Repeat("x", 1025)
	for _, tc := range []struct {
		name, body string
		status     int
		errHas     string
	}{
		{"bad json", `{"message":`, 400, "malformed"},
		{"not an object", `"hi"`, 400, ""},
		{"empty body", ``, 400, "empty"},
		{"missing message", `{"room":"lobby"}`, 400, "message is required"},
		{"empty message", `{"message":""}`, 400, "message is required"},
		{"message too long", fmt.Sprintf(`{"message":%q}`, long), 400, "longer than 1024"},
		{"message wrong type", `{"message":42}`, 400, `"message" must be a string`},
		{"room wrong type", `{"message":"hi","room":7}`, 400, `"room" must be a string`},
		{"room and user", `{"message":"hi","room":"a","user":"b"}`, 400, "not both"},
		{"bad room", `{"message":"hi","room":"no spaces"}`, 400, "room names"},
		{"empty user", `{"message":"hi","user":""}`, 400, "user must be"},
		{"unknown fields ignored", `{"message":"hi","priority":"high"}`, 200, ""},
		{"trailing data", `{"message":"hi"} {"message":"again"}`, 400, "one object"},
		{"user too long", `{"message":"hi","user":"` + strings.Repeat("u", 257) + `"}`, 400, "user must be"},
		{"exactly max", fmt.Sprintf(`{"message":%q}`, long[:1024]), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := notify(t, n, tc.body)
			if status != tc.status {
				t.Fatalf("status = %d, want %d (%v)", status, tc.status, body)
			}
			if tc.status == 200 {
				if body["success"] != true || body["id"] == "" {
					t.Fatalf("body = %v", body)
				}
				return
			}
			msg, _ := body["error"].(string)
			if msg == "" || !strings.Contains(msg, tc.errHas) {
				t.Fatalf("error = %q, want it to mention %q", msg, tc.errHas)
			}
		})
	}
}

func TestNotifyAPIKey(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "s3cret"})
	for _, key := range []string{"", "wrong", "s3cret2"} {
		status, body := request(t, http.MethodPost, n.URL()+"/api/notify", key, `{"message":"hi"}`)
		if status != 401 || body["error"] == nil {
			t.Errorf("key %q: %d %v, want 401 with error", key, status, body)
		}
	}
	if status, body := notify(t, n, `{"message":"hi"}`); status != 200 {
		t.Errorf("right key: %d %v", status, body)
	}
}

func TestNotifyBrokerDown(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	_ = n.Node().Broker().Close()
	status, body := notify(t, n, `{"message":"lost?"}`)
	if status != 503 || body["error"] == nil || body["success"] != nil {
		t.Fatalf("notify with broker down = %d %v, want 503 with an error", status, body)
	}
}

func TestNotifyDelivery(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	alice := wstest.Dial(t, n.WS("name=alice"), nil)
	alice.Welcome()
	bob := wstest.Dial(t, n.WS("name=bob"), nil)
	bob.Welcome()
	alice.Expect("bob's join", wstest.IsEvent("join", "bob", "lobby"))
	// carol leaves lobby: "everyone" must still reach her, a room must not.
	carol := wstest.Dial(t, n.WS("name=carol"), nil)
	carol.Welcome()
	carol.SendJSON(map[string]string{"type": "leave", "room": "lobby"})
	carol.Expect("own leave", wstest.IsEvent("leave", "carol", "lobby"))
	bob.SendJSON(map[string]string{"type": "join", "room": "ops"})
	bob.Expect("own join", wstest.IsEvent("join", "bob", "ops"))

	status, body := notify(t, n, `{"message":"to all"}`)
	if status != 200 {
		t.Fatalf("notify: %d %v", status, body)
	}
	for _, c := range []*wstest.Client{alice, bob, carol} {
		f := c.Expect("broadcast", wstest.IsNote("to all"))
		if f.ID != body["id"] || f.TS == 0 || f.Room != "" {
			t.Errorf("notification %s: want id %v, a ts and no room", f, body["id"])
		}
	}

	notify(t, n, `{"message":"ops only","room":"ops"}`)
	notify(t, n, `{"message":"alice only","user":"alice"}`)
	notify(t, n, `{"message":"marker"}`)
	if f := bob.Expect("room notification", wstest.IsNote("ops only")); f.Room != "ops" {
		t.Errorf("room notification lacks its room: %s", f)
	}
	alice.Expect("user notification", wstest.IsNote("alice only"))
	notOps := wstest.IsNote("ops only")
	alice.QuietUntil(wstest.IsNote("marker"), notOps)
	carol.QuietUntil(wstest.IsNote("marker"), func(f wstest.Frame) bool { return notOps(f) || wstest.IsNote("alice only")(f) })
	bob.QuietUntil(wstest.IsNote("marker"), wstest.IsNote("alice only"))
}

func TestUnknownRouteIsJSON(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	status, body := request(t, http.MethodGet, n.URL()+"/nope", "", "")
	if status != 404 || body["error"] == nil {
		t.Fatalf("GET /nope = %d %v", status, body)
	}
}

// Behind nginx, the client IP in logs is the one nginx forwards, but only
// from a proxy named in RELAY_TRUSTED_PROXIES: anyone else could claim any
// address in X-Forwarded-For.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		trusted, want string
	}{
		{"127.0.0.1", `"ip":"203.0.113.7"`},
		{"", `"ip":"127.0.0.1"`},
		{"10.0.0.0/8", `"ip":"127.0.0.1"`},
	} {
		var logs testkit.Buffer
		n := nodetest.Start(t, map[string]string{"RELAY_TRUSTED_PROXIES": tc.trusted, "RELAY_LOG_LEVEL": "debug"}, nodetest.Logs(&logs))
		req, _ := http.NewRequest(http.MethodGet, n.URL()+"/api/data", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// The access log is written as the handler returns, which may be
		// just after the client has its answer.
		testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if !strings.Contains(logs.String(), tc.want) {
				return fmt.Errorf("no access log line with %s", tc.want)
			}
			return nil
		})
	}
}
