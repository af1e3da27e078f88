package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

func TestJWT(t *testing.T) {
	t.Parallel()
	const secret = "test-secret"
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": secret})
	good, err := auth.Mint(secret, "user-42", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := auth.Mint(secret, "user-42", -time.Minute)
	forged, _ := auth.Mint("other-secret", "user-42", time.Minute)

	for name, url := range map[string]string{
		"missing": n.WS(""), "garbage": n.WS("token=abc"),
		"expired": n.WS("token=" + expired), "wrong secret": n.WS("token=" + forged),
	} {
		_, err := wstest.TryDial(t, url, nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), `"error"`) {
			t.Errorf("%s token: %v, want HTTP 401 with a JSON error", name, err)
		}
	}
	// Query parameter (browsers) and header (everyone else); the token's
	// subject is the user, whatever ?name= says.
	if w := wstest.Dial(t, n.WS("token="+good+"&name=mallory"), nil).Welcome(); w.User != "user-42" {
		t.Errorf("user = %q, want the token's sub", w.User)
	}
	h := http.Header{"Authorization": {"Bearer " + good}}
	if w := wstest.Dial(t, n.WS(""), &websocket.DialOptions{HTTPHeader: h}).Welcome(); w.User != "user-42" {
		t.Errorf("user = %q with header token", w.User)
	}
}

func TestOrigin(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_ALLOWED_ORIGINS": "app.example.com, https://*.trusted.dev"})
	withOrigin := func(o string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {o}}}
	}
	for _, o := range []string{"https://evil.example", "https://app.example.com.evil.io", "http://x.trusted.dev"} {
		_, err := wstest.TryDial(t, n.WS(""), withOrigin(o))
		if err == nil || !strings.Contains(err.Error(), "HTTP 403") {
			t.Errorf("origin %s: %v, want 403", o, err)
		}
	}
	for _, o := range []string{"https://app.example.com", "https://a.trusted.dev", n.URL()} {
		if _, err := wstest.TryDial(t, n.WS(""), withOrigin(o)); err != nil {
			t.Errorf("origin %s refused: %v", o, err)
		}
	}
	wstest.Dial(t, n.WS(""), nil).Welcome() // no Origin: not a browser
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_MAX_CONNECTIONS": "2"})
	a := wstest.Dial(t, n.WS("name=a"), nil)
	a.Welcome()
	wstest.Dial(t, n.WS("name=b"), nil).Welcome()
	_, err := wstest.TryDial(t, n.WS("name=c"), nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("third connection: %v, want 503", err)
	}
	a.WS.Close(websocket.StatusNormalClosure, "")
	testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, err := wstest.TryDial(t, n.WS("name=c"), nil)
		if err == nil {
			c.Welcome()
		}
		return err // until a slot frees up
	})
}

func TestFrameTooBig(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_MAX_MESSAGE_BYTES": "1024"})
	big := wstest.Dial(t, n.WS("name=big"), nil)
	big.Welcome()
	other := wstest.Dial(t, n.WS("name=other"), nil)
	other.Welcome()

	big.Send(`{"type":"message","data":"` + strings.Repeat("a", 900) + `"}`) // under the limit
	other.Expect("chat under the limit", func(f wstest.Frame) bool { return f.Type == "message" })
	_ = big.WS.Write(context.Background(), websocket.MessageText, []byte(strings.Repeat("b", 1025)))
	if status := big.Closed(); status != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v, want 1009", status)
	}
	other.Expect("big's leave", wstest.IsEvent("leave", "big", "lobby"))
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "5"}) // burst 10
	c := wstest.Dial(t, n.WS("name=flood"), nil)
	c.Welcome()
	for i := range 30 {
		c.Send(fmt.Sprintf(`{"type":"message","data":%d}`, i))
	}
	var chats, limited int
	for chats+limited < 30 {
		switch f := c.Next(); {
		case f.Type == "message":
			chats++
		case wstest.IsError("rate_limited")(f):
			limited++
		}
	}
	// 30 frames sent back to back: the burst of 10 passes, and at 5/s a few
	// more may refill while they travel.
	if chats < 10 || chats > 15 || limited != 30-chats {
		t.Fatalf("%d delivered, %d rate_limited; want the burst through and the rest refused", chats, limited)
	}
	testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		c.Send(`{"type":"ping"}`)
		if f := c.Next(); !wstest.IsPong(f) {
			return fmt.Errorf("rate limit not refilled: ping answered %s", f)
		}
		return nil
	})
}

func TestSlowClientIsClosed(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_SEND_QUEUE_BYTES": "65536", "RELAY_MAX_MESSAGE_BYTES": "65536"})
	healthy := wstest.Dial(t, n.WS("name=healthy"), nil)
	healthy.Welcome()

	// A client that never reads: a raw dial whose frames nobody consumes.
	ctx := context.Background()
	stalled, _, err := websocket.Dial(ctx, n.WS("name=stalled"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()
	healthy.Expect("stalled's join", wstest.IsEvent("join", "stalled", "lobby"))

	msg := strings.Repeat("z", 32*1024)
	body := fmt.Sprintf(`{"message":%q}`, msg)
	sent := 0
	for sent < 1000 && metricValue(t, n, `relay_disconnects_total{reason="slow"}`) == 0 {
		if status, resp := notify(t, n, body); status != 200 {
			t.Fatalf("notify: %d %v", status, resp)
		}
		sent++
	}
	if metricValue(t, n, `relay_disconnects_total{reason="slow"}`) != 1 {
		t.Fatalf("stalled client not closed after %d × 32 KiB", sent)
	}
	// The healthy client got every notification, then the stalled one's leave.
	for i := range sent {
		healthy.Expect(fmt.Sprintf("notification %d", i), func(f wstest.Frame) bool { return f.Type == "notification" })
	}
	healthy.Expect("stalled's leave", wstest.IsEvent("leave", "stalled", "lobby"))
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_PING_INTERVAL": "100ms", "RELAY_PONG_TIMEOUT": "200ms"})
	alive := wstest.Dial(t, n.WS("name=alive"), nil) // its read loop answers pings
	alive.Welcome()

	ctx := context.Background()
	mute, _, err := websocket.Dial(ctx, n.WS("name=mute"), nil) // never reads, so never pongs
	if err != nil {
		t.Fatal(err)
	}
	defer mute.CloseNow()
	alive.Expect("mute's join", wstest.IsEvent("join", "mute", "lobby"))
	f := alive.Expect("mute's leave after missing pongs", wstest.IsEvent("leave", "mute", "lobby"))
	if f.Count() != 1 {
		t.Fatalf("leave = %s", f)
	}
	if v := metricValue(t, n, `relay_disconnects_total{reason="ping_timeout"}`); v != 1 {
		t.Fatalf("ping timeouts = %v", v)
	}
	// Many ping intervals later the answering client is still served.
	time.Sleep(time.Second)
	alive.Send(`{"type":"ping"}`)
	alive.Expect("pong", wstest.IsPong)
}

// metricValue reads one sample from /metrics, 0 if absent.
func metricValue(t *testing.T, n *nodetest.Node, sample string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}
