package web_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/wstest"
)

// Real Chromium, real relay node: every test drives /demo as a user would
// and reads what the page shows.

func TestTwoPagesChat(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_NODE_ID": "node-1"})

	alice := openPage(t, "alice", n.URL()+"/demo?name=alice")
	alice.waitState("live")
	alice.waitOnline("lobby", 1)
	if node, user := alice.text("node"), alice.text("user"); node != "node-1" || user != "alice" {
		t.Fatalf("page shows node %q user %q, want node-1 alice", node, user)
	}

	bob := openPage(t, "bob", n.URL()+"/demo?name=bob")
	bob.waitState("live")
	bob.waitOnline("lobby", 2)
	alice.waitOnline("lobby", 2) // bob's join reached alice
	alice.waitLine("event", "bob joined lobby (2 online)")

	alice.join("ops")
	alice.waitOnline("ops", 1)
	bob.join("ops")
	bob.waitOnline("ops", 2)
	alice.waitOnline("ops", 2)

	alice.say("ops", "hello bob")
	bob.waitMessage("ops", "alice", "hello bob")
	alice.waitMessage("ops", "alice", "hello bob") // the sender gets its own message
	bob.say("lobby", "hi alice, the deploy is green")
	alice.waitMessage("lobby", "bob", "hi alice, the deploy is green")

	if status, body := post(t, n, "/api/notify", "", `{"message":"deploy v2 at 18:00"}`); status != 200 {
		t.Fatalf("notify: %d %s", status, body)
	}
	alice.waitNotification("deploy v2 at 18:00", "to everyone")
	bob.waitNotification("deploy v2 at 18:00", "to everyone")
	alice.say("ops", "see you at six")
	alice.waitMessage("ops", "alice", "see you at six")
	screenshot(t, alice)

	// Leaving a room: bob's page drops it, alice's count goes down.
	bob.click(`#rooms li[data-room="ops"] button`)
	alice.waitOnline("ops", 1)
	alice.waitLine("event", "bob left ops (1 online)")
	bob.waitFor("ops gone from bob's rooms", `!document.querySelector('#rooms li[data-room="ops"]')`)

	// Leaving the page leaves every room at once.
	bob.do("leave the page", chromedp.Navigate("about:blank"))
	alice.waitOnline("lobby", 1)
}

func TestNotificationsAppearApartFromChat(t *testing.T) {
	t.Parallel()
	const key = "s3cret-key"
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": key})
	p := openPage(t, "carol", n.URL()+"/demo?name=carol")
	p.waitState("live")
	p.join("ops")
	p.waitOnline("ops", 1)

	for _, c := range []struct{ body, text, to string }{
		{`{"message":"to all"}`, "to all", "to everyone"},
		{`{"message":"ops only","room":"ops"}`, "ops only", "to room ops"},
		{`{"message":"just carol","user":"carol"}`, "just carol", "to carol"},
	} {
		if status, body := post(t, n, "/api/notify", key, c.body); status != 200 {
			t.Fatalf("notify %s: %d %s", c.body, status, body)
		}
		p.waitNotification(c.text, c.to)
	}

	// The page's own form, with the right key.
	p.typeInto("notify-message", "from the form")
	p.typeInto("notify-room", "ops")
	p.typeInto("notify-key", key)
	p.click("#notify-form button")
	p.waitFor("notify answered 200", `document.getElementById('notify-result').dataset.status === '200'`)
	p.waitNotification("from the form", "to room ops")

	var check struct {
		InChat  bool
		Stored  int
		Cookies string
		KeyType string
	}
	p.eval(`({
		InChat: document.getElementById('messages').textContent.includes('to all'),
		Stored: localStorage.length + sessionStorage.length,
		Cookies: document.cookie,
		KeyType: document.getElementById('notify-key').type,
	})`, &check)
	if check.InChat {
		t.Error("a notification is shown in the chat stream")
	}
	if check.Stored != 0 || check.Cookies != "" || check.KeyType != "password" {
		t.Errorf("the API key field or storage: %+v; want a password field and nothing stored", check)
	}
}

func TestNotifyFormShowsBadKeyError(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "right-key"})
	p := openPage(t, "dan", n.URL()+"/demo?name=dan")
	p.waitState("live")

	p.typeInto("notify-message", "should not be sent")
	p.typeInto("notify-key", "wrong-key")
	p.click("#notify-form button")
	p.waitFor("notify answered 401", `document.getElementById('notify-result').dataset.status === '401'`)
	result := p.text("notify-result")
	if !strings.HasPrefix(result, "401 Unauthorized: ") || !strings.Contains(result, "invalid API key") {
		t.Fatalf("notify result shows %q, want the 401 and the server's error", result)
	}
	var notes int
	p.eval(`document.querySelectorAll('#notifications li').length`, &notes)
	if notes != 0 {
		t.Fatalf("%d notifications shown after a refused notify", notes)
	}
}

// The node stops (clients get 1012 service restart) and starts again on the
// same address: the page shows it, reconnects, rejoins its room, and chat
// flows both ways again. The restarted node's embedded broker lost its
// history (a new epoch), so the page says which streams have a gap.
func TestReconnectsAndRejoinsAfterRestart(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	p := openPage(t, "erin", n.URL()+"/demo?name=erin")
	p.waitState("live")
	p.join("ops")
	p.waitOnline("ops", 1)

	n.Stop()
	p.waitState("reconnecting")
	p.waitLine("event", "connection closed: 1012 service restart")
	p.waitFor("a countdown", `/^reconnecting in \d+s$/.test(document.getElementById('state').textContent)`)

	n.Restart()
	p.waitState("live")
	p.waitOnline("ops", 1) // rejoined by the node during the resume handshake
	p.waitFor("the resume's gap in every stream",
		`[...document.querySelectorAll('#messages li.resume')].some(li =>
			li.dataset.missed === '*,@,lobby,ops' && li.dataset.recovered === '0' &&
			li.textContent.includes('resumed: recovered 0 messages; gap in broadcasts, your notifications, lobby, ops'))`)

	// Another client finds erin in ops on the restarted node.
	c := wstest.Dial(t, n.WS("name=frank"), nil)
	c.Welcome()
	c.SendJSON(map[string]string{"type": "join", "room": "ops"})
	if f := c.Expect("frank's join of ops", wstest.IsEvent("join", "frank", "ops")); f.Count() != 2 {
		t.Fatalf("ops has %d members after the restart, want 2 (erin rejoined): %s", f.Count(), f)
	}
	p.waitOnline("ops", 2)

	c.SendJSON(map[string]any{"type": "message", "room": "ops", "data": "after the restart"})
	p.waitMessage("ops", "frank", "after the restart")
	p.say("ops", "back again")
	c.Expect("erin's message", wstest.IsChat("back again"))
	var errors []string
	p.eval(`[...document.querySelectorAll('#messages li.error')].map(li => li.textContent)`, &errors)
	if len(errors) != 0 {
		t.Errorf("error lines after the restart (a second join of ops?): %q", errors)
	}
}

func TestTokenUserAndRefusedHandshake(t *testing.T) {
	t.Parallel()
	const secret = "browser-test-secret"
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": secret})
	token, err := auth.Mint(secret, "grace", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := openPage(t, "grace", n.URL()+"/demo?token="+token)
	p.waitState("live")
	if user := p.text("user"); user != "grace" {
		t.Fatalf("page shows user %q, want the token's subject grace", user)
	}

	// A refused handshake is not retried: the page says why.
	expired, err := auth.Mint(secret, "grace", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, query string }{
		{"expired", "?token=" + expired},
		{"missing", ""},
	} {
		p := openPage(t, c.name, n.URL()+"/demo"+c.query)
		p.waitState("closed")
		if s := p.text("state"); !strings.HasPrefix(s, "closed: 1006 HTTP 401: ") {
			t.Errorf("%s token: state shows %q, want closed with the 401", c.name, s)
		}
	}
}

// relay.js on its own: errors reach on('error'), bad input throws, close()
// closes; the page's disconnect and connect buttons.
func TestClientSurfacesErrors(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	p := openPage(t, "page", n.URL()+"/demo?name=henry")
	p.waitState("live")

	p.eval(`window.solo = {states: [], errors: []};
		solo.relay = new Relay('/ws', {name: 'solo'});
		solo.relay.on('state', (s) => solo.states.push(s));
		solo.relay.on('error', (e) => solo.errors.push(e.code + ': ' + e.error));
		solo.relay.on('pong', () => { solo.pong = true; });
		solo.relay.on('welcome', (w) => { solo.user = w.user; solo.relay.send(null); solo.relay.ping(); });
		true`, nil)
	p.waitFor("solo's bad_message error and pong",
		`solo.user === 'solo' && solo.pong && solo.errors.some(e => e.startsWith('bad_message: '))`)
	var thrown string
	p.eval(`(() => { try { solo.relay.join('no spaces'); return 'nothing' } catch (e) { return e.name } })()`, &thrown)
	if thrown != "TypeError" {
		t.Errorf("join of a bad room name threw %s, want TypeError", thrown)
	}
	var states []string
	p.eval(`solo.relay.close(); solo.states`, &states)
	if strings.Join(states, ",") != "connecting,live,closed" {
		t.Errorf("solo's states %v", states)
	}

	// The page shows the server's error frames in its stream.
	p.eval(`relay.send(null); true`, nil)
	p.waitLine("error", "error bad_message: ")

	// Disconnect: closed for good, with the code and reason.
	p.click("#disconnect")
	p.waitState("closed")
	if s := p.text("state"); s != "closed: 1000 client closed" {
		t.Errorf("state shows %q after disconnect", s)
	}
	// Connect again under another name.
	p.typeInto("name", "henry2")
	p.click("#connect")
	p.waitState("live")
	if user := p.text("user"); user != "henry2" {
		t.Errorf("page shows user %q after connecting as henry2", user)
	}
}

// screenshot writes the page as PNG to $RELAY_SCREENSHOT, a path relative
// to the module root (RELAY_SCREENSHOT=docs/demo.png makes the README's).
func screenshot(t *testing.T, p *page) {
	t.Helper()
	dest := os.Getenv("RELAY_SCREENSHOT")
	if dest == "" {
		return
	}
	if !filepath.IsAbs(dest) {
		dest = filepath.Join("..", "..", dest)
	}
	var png []byte
	p.do("screenshot", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		var err error
		png, err = chromedp.CaptureScreenshot()(ctx, tg)
		return chromedp.Void{}, err
	})
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot written to %s", dest)
}
