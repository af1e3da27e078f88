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
)

func TestJWT(t *testing.T) {
	t.Parallel()
	const secret = "test-secret"
	n := startNode(t, map[string]string{"RELAY_JWT_SECRET": secret})
	good, err := auth.Mint(secret, "user-42", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := auth.Mint(secret, "user-42", -time.Minute)
	forged, _ := auth.Mint("other-secret", "user-42", time.Minute)

	for name, url := range map[string]string{
		"missing": n.wsURL(""), "garbage": n.wsURL("token=abc"),
		"expired": n.wsURL("token=" + expired), "wrong secret": n.wsURL("token=" + forged),
	} {
		_, err := tryDial(t, url, nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), `"error"`) {
			t.Errorf("%s token: %v, want HTTP 401 with a JSON error", name, err)
		}
	}
	// Query parameter (browsers) and header (everyone else); the token's
	// subject is the user, whatever ?name= says.
	if w := dial(t, n.wsURL("token="+good+"&name=mallory"), nil).welcome(); w.User != "user-42" {
		t.Errorf("user = %q, want the token's sub", w.User)
	}
	h := http.Header{"Authorization": {"Bearer " + good}}
	if w := dial(t, n.wsURL(""), &websocket.DialOptions{HTTPHeader: h}).welcome(); w.User != "user-42" {
		t.Errorf("user = %q with header token", w.User)
	}
}

func TestOrigin(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_ALLOWED_ORIGINS": "app.example.com, https://*.trusted.dev"})
	withOrigin := func(o string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {o}}}
	}
	for _, o := range []string{"https://evil.example", "https://app.example.com.evil.io", "http://x.trusted.dev"} {
		_, err := tryDial(t, n.wsURL(""), withOrigin(o))
		if err == nil || !strings.Contains(err.Error(), "HTTP 403") {
			t.Errorf("origin %s: %v, want 403", o, err)
		}
	}
	for _, o := range []string{"https://app.example.com", "https://a.trusted.dev", n.url} {
		if _, err := tryDial(t, n.wsURL(""), withOrigin(o)); err != nil {
			t.Errorf("origin %s refused: %v", o, err)
		}
	}
	dial(t, n.wsURL(""), nil).welcome() // no Origin: not a browser
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_MAX_CONNECTIONS": "2"})
	a := dial(t, n.wsURL("name=a"), nil)
	a.welcome()
	dial(t, n.wsURL("name=b"), nil).welcome()
	_, err := tryDial(t, n.wsURL("name=c"), nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("third connection: %v, want 503", err)
	}
	a.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, 5*time.Second, "a slot to free up", func() bool {
		c, err := tryDial(t, n.wsURL("name=c"), nil)
		if err == nil {
			c.welcome()
		}
		return err == nil
	})
}

func TestFrameTooBig(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_MAX_MESSAGE_BYTES": "1024"})
	big := dial(t, n.wsURL("name=big"), nil)
	big.welcome()
	other := dial(t, n.wsURL("name=other"), nil)
	other.welcome()

	big.send(`{"type":"message","data":"` + strings.Repeat("a", 900) + `"}`) // under the limit
	other.expect("chat under the limit", func(f frame) bool { return f.Type == "message" })
	_ = big.ws.Write(context.Background(), websocket.MessageText, []byte(strings.Repeat("b", 1025)))
	if status := big.closed(); status != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v, want 1009", status)
	}
	other.expect("big's leave", isEvent("leave", "big", "lobby"))
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_RATE_LIMIT": "5"}) // burst 10
	c := dial(t, n.wsURL("name=flood"), nil)
	c.welcome()
	for i := range 30 {
		c.send(fmt.Sprintf(`{"type":"message","data":%d}`, i))
	}
	var chats, limited int
	for chats+limited < 30 {
		switch f := c.next(); {
		case f.Type == "message":
			chats++
		case isError("rate_limited")(f):
			limited++
		}
	}
	// 30 frames sent back to back: the burst of 10 passes, and at 5/s a few
	// more may refill while they travel.
	if chats < 10 || chats > 15 || limited != 30-chats {
		t.Fatalf("%d delivered, %d rate_limited; want the burst through and the rest refused", chats, limited)
	}
	eventually(t, 5*time.Second, "the limit to refill", func() bool {
		c.send(`{"type":"ping"}`)
		f := c.next()
		return isPong(f)
	})
}

func TestSlowClientIsClosed(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_SEND_QUEUE_BYTES": "65536", "RELAY_MAX_MESSAGE_BYTES": "65536"})
	healthy := dial(t, n.wsURL("name=healthy"), nil)
	healthy.welcome()

	// A client that never reads: a raw dial whose frames nobody consumes.
	ctx := context.Background()
	stalled, _, err := websocket.Dial(ctx, n.wsURL("name=stalled"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()
	healthy.expect("stalled's join", isEvent("join", "stalled", "lobby"))

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
		healthy.expect(fmt.Sprintf("notification %d", i), func(f frame) bool { return f.Type == "notification" })
	}
	healthy.expect("stalled's leave", isEvent("leave", "stalled", "lobby"))
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_PING_INTERVAL": "100ms", "RELAY_PONG_TIMEOUT": "200ms"})
	alive := dial(t, n.wsURL("name=alive"), nil) // its read loop answers pings
	alive.welcome()

	ctx := context.Background()
	mute, _, err := websocket.Dial(ctx, n.wsURL("name=mute"), nil) // never reads, so never pongs
	if err != nil {
		t.Fatal(err)
	}
	defer mute.CloseNow()
	alive.expect("mute's join", isEvent("join", "mute", "lobby"))
	f := alive.expect("mute's leave after missing pongs", isEvent("leave", "mute", "lobby"))
	if online(f) != 1 {
		t.Fatalf("leave = %s", f)
	}
	if v := metricValue(t, n, `relay_disconnects_total{reason="ping_timeout"}`); v != 1 {
		t.Fatalf("ping timeouts = %v", v)
	}
	// Many ping intervals later the answering client is still served.
	time.Sleep(time.Second)
	alive.send(`{"type":"ping"}`)
	alive.expect("pong", isPong)
}

// metricValue reads one sample from /metrics, 0 if absent.
func metricValue(t *testing.T, n *node, sample string) float64 {
	t.Helper()
	resp, err := http.Get(n.url + "/metrics")
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
