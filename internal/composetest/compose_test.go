// Package composetest runs the repository's docker-compose.yml for real:
// Redis, relay replicas built from deploy/Dockerfile and nginx, driven from
// the host only through nginx's port published on loopback, as a user would.
//
// It skips, saying why, when no Docker engine answers, under -short, or
// with RELAY_COMPOSE_TEST=0. Where the engine cannot pull images it runs
// deploy/standins.sh first, which builds local stand-ins for the official
// images (and Compose v2) and does nothing when they are there.
package composetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

const apiKey = "compose-test-key"

// TestCompose is one cluster's life, in order: build and up, spread over
// replicas, 3,000 clients through nginx at once, scale, a replica killed, a
// replica stopped, Redis restarted (history and epoch kept), a restart of
// every replica, a rolling restart under relay bench fanout with resume,
// and down.
func TestCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("composetest: skipped under -short")
	}
	if v := os.Getenv("RELAY_COMPOSE_TEST"); v == "0" || v == "false" || v == "skip" {
		t.Skip("composetest: skipped, RELAY_COMPOSE_TEST=" + v)
	}
	if err := dockerAnswers(); err != nil {
		t.Skip("composetest: SKIPPED, no Docker engine answers (" + err.Error() + "): docker compose was not tested")
	}
	c := newCompose(t)
	testStart := time.Now()
	defer func() { t.Logf("compose test took %v", time.Since(testStart).Round(time.Second)) }()

	c.build()
	c.step("up", 3*time.Minute, "up", "-d")
	c.waitReady(90 * time.Second)
	c.waitHealthy(3, 90*time.Second)

	// One cluster's life in order. No subtests: the clients outlive each
	// phase, and a client fails the test it was dialed in.
	phase := func(name string) { t.Logf("--- %s (at %v)", name, time.Since(testStart).Round(time.Second)) }
	phase("spread over replicas, chat and notify reach all")
	cl := c.spread(t) // every client the test keeps connected
	phase("monitoring profile: every dashboard query returns data for every replica")
	c.monitoring(t, cl)
	phase(fmt.Sprintf("%d WebSockets through nginx at once: all connect, stay up, reach every replica", crowdSize))
	c.crowd(t, cl)
	phase("scale to 5 without restarting nginx")
	cl = c.scale(t, cl)
	phase("docker kill a replica: clients reconnect, counts right within 30 s")
	cl = c.kill(t, cl)
	phase("docker stop a replica: 1012, clients move to the others")
	cl = c.stop(t, cl)
	phase("restart redis: delivery resumes, nobody reconnects")
	c.redisRestart(t, cl)
	phase("compose restart relay: 1012, clients reconnect and work")
	c.restartAll(t, cl)
	phase("rolling restart of every replica under relay bench fanout -resume: 0 lost, 0 duplicated, 0 reordered")
	c.rollingRestart(t)
	phase("down leaves nothing running")
	c.down(t)
}

// ---- the scenarios --------------------------------------------------------

// member is a client the test keeps, with the replica it landed on.
type member struct {
	name string
	ws   *wstest.Client
	node string
}

func (c *compose) spread(t *testing.T) []*member {
	nodes := c.relayNodes(t)
	var cl []*member
	seen := map[string]int{}
	// nginx picks one of the replicas Docker's DNS lists at random for each
	// connection: six almost always reach two or more, and a few more make
	// it certain.
	for i := 0; i < 6 || (len(seen) < 2 && i < 20); i++ {
		m := c.join(t, fmt.Sprintf("c%d", i), i+1)
		if !nodes[m.node] {
			t.Fatalf("%s landed on %q, not one of the relay containers %v", m.name, m.node, keys(nodes))
		}
		seen[m.node]++
		for _, o := range cl {
			o.ws.Expect(m.name+"'s join", wstest.IsEvent("join", m.name, "lobby"))
		}
		cl = append(cl, m)
	}
	t.Logf("%d clients through nginx landed on %v", len(cl), seen)
	if len(seen) < 2 {
		t.Fatalf("every client landed on one replica: %v", seen)
	}

	cl[0].ws.Send("hello from " + cl[0].node)
	everyoneGets(t, cl, "chat", wstest.IsChat("hello from "+cl[0].node))
	c.notify(t, "deploy at 18:00", 200)
	everyoneGets(t, cl, "notification", wstest.IsNote("deploy at 18:00"))
	c.notifyWithKey(t, "", `{"message":"no key"}`, 401)

	var data struct {
		Node string `json:"node"`
	}
	c.getJSON(t, "/api/data", &data)
	if !nodes[data.Node] {
		t.Fatalf("/api/data answered by %q, not a relay container %v", data.Node, keys(nodes))
	}
	return cl
}

func (c *compose) scale(t *testing.T, cl []*member) []*member {
	before := c.relayNodes(t)
	nginxBefore := c.containerState(t, "nginx")
	start := time.Now()
	c.step("scale", 3*time.Minute, "up", "-d", "--no-recreate", "--scale", "relay=5")
	c.waitHealthy(5, 90*time.Second)
	after := c.relayNodes(t)
	var fresh []string
	for n := range after {
		if !before[n] {
			fresh = append(fresh, n)
		}
	}
	if len(after) != 5 || len(fresh) != 2 {
		t.Fatalf("after scaling: replicas %v, new %v", keys(after), fresh)
	}
	if got := c.containerState(t, "nginx"); got != nginxBefore {
		t.Fatalf("nginx was restarted or replaced by the scale: %s, then %s", nginxBefore, got)
	}

	// New connections reach the new replicas: nginx looks the service name
	// up again (resolver valid=5s), with no reload.
	reached := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; len(reached) < len(fresh); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("within 30 s of scaling, new connections reached only %v of the new replicas %v", keys(reached), fresh)
		}
		m := c.dial(t, fmt.Sprintf("s%d", i))
		if !after[m.node] {
			t.Fatalf("%s landed on %q, not a relay container", m.name, m.node)
		}
		if slices.Contains(fresh, m.node) && !reached[m.node] {
			reached[m.node] = true
			cl = append(cl, m) // keep one client on each new replica
			for _, o := range cl[:len(cl)-1] {
				o.ws.Expect(m.name+"'s join", wstest.IsEvent("join", m.name, "lobby"))
			}
		} else {
			m.ws.WS.CloseNow()
			for _, o := range cl {
				o.ws.Expect(m.name+"'s leave", wstest.IsEvent("leave", m.name, "lobby"))
			}
		}
		if len(reached) < len(fresh) {
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("new replicas %v took connections %v after the scale began", fresh, time.Since(start).Round(100*time.Millisecond))

	// Traffic from a new replica reaches the old ones and back.
	last := cl[len(cl)-1]
	last.ws.Send("hello from new " + last.node)
	everyoneGets(t, cl, "chat from a new replica", wstest.IsChat("hello from new "+last.node))
	c.notify(t, "after scale", 200)
	everyoneGets(t, cl, "notification after scaling", wstest.IsNote("after scale"))
	c.checkCount(t, len(cl), 10*time.Second)
	return cl
}

func (c *compose) kill(t *testing.T, cl []*member) []*member {
	victim := busiest(cl)
	id := c.containerOf(t, victim)
	var gone, kept []*member
	for _, m := range cl {
		if m.node == victim {
			gone = append(gone, m)
		} else {
			kept = append(kept, m)
		}
	}
	t.Logf("killing %s (%d clients on it)", victim, len(gone))
	start := time.Now()
	docker(t, 30*time.Second, "kill", id)
	for _, m := range gone {
		code := closed(t, m, 15*time.Second)
		t.Logf("%s closed with %v", m.name, code)
	}
	for _, m := range kept {
		if !m.ws.Open() {
			t.Fatalf("%s on %s was disconnected by another replica's death: %v", m.name, m.node, m.ws.ReadErr())
		}
	}
	// Reconnect through nginx: never to the dead replica.
	for _, m := range gone {
		n := c.redial(t, m.name, 20*time.Second)
		if n.node == victim {
			t.Fatalf("%s reconnected to the killed replica %s", m.name, victim)
		}
		kept = append(kept, n)
	}
	t.Logf("%d clients reconnected %v after the kill", len(gone), time.Since(start).Round(100*time.Millisecond))
	for range 5 { // new connections: none to the dead one
		m := c.dial(t, "after-kill")
		if m.node == victim {
			t.Fatalf("a new connection reached the killed replica %s", victim)
		}
		m.ws.WS.CloseNow()
	}
	kept[len(kept)-1].ws.Send("after the kill")
	everyoneGets(t, kept, "chat after the kill", wstest.IsChat("after the kill"))
	c.notify(t, "kill note", 200)
	everyoneGets(t, kept, "notification after the kill", wstest.IsNote("kill note"))

	// The dead replica's members leave the cluster-wide count.
	c.checkCount(t, len(kept), 30*time.Second-time.Since(start))
	t.Logf("online count right %v after the kill", time.Since(start).Round(100*time.Millisecond))
	return kept
}

func (c *compose) stop(t *testing.T, cl []*member) []*member {
	victim := busiest(cl)
	id := c.containerOf(t, victim)
	var gone, kept []*member
	for _, m := range cl {
		if m.node == victim {
			gone = append(gone, m)
		} else {
			kept = append(kept, m)
		}
	}
	t.Logf("stopping %s gracefully (%d clients on it)", victim, len(gone))
	start := time.Now()
	docker(t, time.Minute, "stop", id) // SIGTERM, as compose stop and scale-down do
	for _, m := range gone {
		if code := closed(t, m, 15*time.Second); code != websocket.StatusServiceRestart {
			t.Fatalf("%s was closed with %v, want 1012 (service restart)", m.name, code)
		}
	}
	for _, m := range gone {
		n := c.redial(t, m.name, 20*time.Second)
		if n.node == victim {
			t.Fatalf("%s reconnected to the stopped replica %s", m.name, victim)
		}
		kept = append(kept, n)
	}
	t.Logf("%d clients closed with 1012 and moved in %v", len(gone), time.Since(start).Round(100*time.Millisecond))
	kept[len(kept)-1].ws.Send("after the stop")
	everyoneGets(t, kept, "chat after the stop", wstest.IsChat("after the stop"))
	// A graceful exit takes the replica out of the count at once.
	c.checkCount(t, len(kept), 10*time.Second)
	return kept
}

func (c *compose) redisRestart(t *testing.T, cl []*member) {
	// Redis is append-only on a named volume: history and the epoch outlive
	// the restart, so that clients resume with nothing missed.
	c.notifyWithKey(t, apiKey, `{"message":"kept across the restart","room":"compose-history"}`, 200)
	before := c.history(t, "compose-history", 10*time.Second)
	start := time.Now()
	c.step("restart redis", 2*time.Minute, "restart", "redis")
	sender := cl[0]
	var lost []string // what happened to the attempts before delivery resumed
	for i := 0; ; i++ {
		if time.Since(start) > time.Minute {
			t.Fatalf("delivery did not resume within a minute of restarting Redis: %v", lost)
		}
		text := fmt.Sprintf("after redis restart %d", i)
		sent := time.Now()
		sender.ws.Send(text)
		f, ok := next(sender, 2*time.Second, func(f wstest.Frame) bool {
			return wstest.IsChat(text)(f) || wstest.IsError("unavailable")(f)
		})
		if ok && f.Type == "message" {
			everyoneGets(t, cl[1:], "chat after the Redis restart", wstest.IsChat(text))
			break
		}
		what := "nothing within 2 s"
		if ok {
			what = "error " + f.Code
		}
		lost = append(lost, fmt.Sprintf("%s at +%v: %s", text, sent.Sub(start).Round(100*time.Millisecond), what))
		time.Sleep(200 * time.Millisecond)
	}
	if len(lost) > 0 {
		t.Logf("chat sent while Redis restarted, not delivered: %v", lost)
	}
	t.Logf("delivery resumed %v after the restart began", time.Since(start).Round(100*time.Millisecond))
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _ := c.notifyWithKey(t, apiKey, `{"message":"after redis"}`, 0)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notify still answers %d 30 s after Redis came back", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	everyoneGets(t, cl, "notification after the Redis restart", wstest.IsNote("after redis"))
	after := c.history(t, "compose-history", 30*time.Second)
	if after.Epoch != before.Epoch || after.Seq != before.Seq || len(after.Messages) != len(before.Messages) ||
		len(after.Messages) == 0 || after.Messages[len(after.Messages)-1].Data != "kept across the restart" {
		t.Fatalf("history did not survive the Redis restart: before %+v, after %+v", before, after)
	}
	t.Logf("epoch %s and history (position %d) kept across the Redis restart", after.Epoch, after.Seq)
	for _, m := range cl {
		if !m.ws.Open() {
			t.Fatalf("%s was disconnected by the Redis restart: %v", m.name, m.ws.ReadErr())
		}
	}
	c.checkCount(t, len(cl), 30*time.Second)
}

func (c *compose) restartAll(t *testing.T, cl []*member) []*member {
	start := time.Now()
	c.step("restart relay", 2*time.Minute, "restart", "relay")
	var back []*member
	for _, m := range cl {
		if code := closed(t, m, 20*time.Second); code != websocket.StatusServiceRestart {
			t.Fatalf("%s on %s was closed with %v, want 1012 (service restart)", m.name, m.node, code)
		}
	}
	for _, m := range cl {
		back = append(back, c.redial(t, m.name, 60*time.Second))
	}
	t.Logf("%d clients closed with 1012 and back %v after the restart began", len(back), time.Since(start).Round(100*time.Millisecond))
	nodes := map[string]bool{}
	for _, m := range back {
		nodes[m.node] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("after the restart every client is on %v", keys(nodes))
	}
	back[0].ws.Send("after restart")
	everyoneGets(t, back, "chat after the restart", wstest.IsChat("after restart"))
	c.notify(t, "restart note", 200)
	everyoneGets(t, back, "notification after the restart", wstest.IsNote("restart note"))
	c.checkCount(t, len(back), 30*time.Second)
	return back
}

func (c *compose) down(t *testing.T) {
	c.step("down", 2*time.Minute, "--profile", "monitoring", "down", "-v", "--remove-orphans")
	c.downDone = true
	if left := c.leftovers(); left != "" {
		t.Fatalf("after down: %s", left)
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(c.base + "/readyz")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("%s still answers %d after down", c.base, resp.StatusCode)
	}
}

// ---- clients ----------------------------------------------------------------

// dial connects through nginx and reads the welcome.
func (c *compose) dial(t *testing.T, name string) *member {
	t.Helper()
	ws := wstest.Dial(t, c.ws+"?name="+name, nil)
	w := ws.Welcome()
	return &member{name: name, ws: ws, node: w.Node}
}

// join dials and checks the welcome's cluster-wide count.
func (c *compose) join(t *testing.T, name string, online int) *member {
	t.Helper()
	ws := wstest.Dial(t, c.ws+"?name="+name, nil)
	w := ws.Welcome()
	if w.Count() != online {
		t.Fatalf("%s's welcome counts %d online, want %d: %s", name, w.Count(), online, w)
	}
	return &member{name: name, ws: ws, node: w.Node}
}

// redial reconnects a client through nginx until a welcome comes: while
// replicas come and go nginx may answer 502 or a replica 503/1013.
func (c *compose) redial(t *testing.T, name string, within time.Duration) *member {
	t.Helper()
	deadline := time.Now().Add(within)
	var lastErr error
	for {
		ws, err := wstest.TryDial(t, c.ws+"?name="+name, nil)
		if err == nil {
			select {
			case f := <-ws.Frames:
				if f.Type == "system" && f.Event == "welcome" {
					return &member{name: name, ws: ws, node: f.Node}
				}
				lastErr = fmt.Errorf("first frame %s", f)
			case <-time.After(wstest.Wait):
				lastErr = fmt.Errorf("no welcome (read error %v)", ws.ReadErr())
			}
			ws.WS.CloseNow()
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s could not reconnect through nginx within %v: %v", name, within, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// closed waits for the server to end m's connection and returns the close
// code (-1 if there was no close frame).
func closed(t *testing.T, m *member, within time.Duration) websocket.StatusCode {
	t.Helper()
	deadline := time.Now().Add(within)
	for m.ws.Open() {
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s still open after %v", m.name, m.node, within)
		}
		select {
		case <-m.ws.Frames: // whatever was on its way
		case <-time.After(50 * time.Millisecond):
		}
	}
	return websocket.CloseStatus(m.ws.ReadErr())
}

// next waits up to d for a frame that matches, skipping others; ok is false
// if none came.
func next(m *member, d time.Duration, match func(wstest.Frame) bool) (f wstest.Frame, ok bool) {
	deadline := time.After(d)
	for {
		select {
		case f := <-m.ws.Frames:
			if match(f) {
				return f, true
			}
		case <-deadline:
			return wstest.Frame{}, false
		}
	}
}

func everyoneGets(t *testing.T, cl []*member, desc string, match func(wstest.Frame) bool) {
	t.Helper()
	for _, m := range cl {
		m.ws.Expect(desc+" at "+m.name+" on "+m.node, match)
	}
}

// busiest returns the replica with the most of the test's clients.
func busiest(cl []*member) string {
	n := map[string]int{}
	best := ""
	for _, m := range cl {
		n[m.node]++
		if best == "" || n[m.node] > n[best] {
			best = m.node
		}
	}
	return best
}

// checkCount waits until a new client's welcome counts want+1 online: the
// test's clients and itself, wherever they are.
func (c *compose) checkCount(t *testing.T, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got int
	for i := 0; ; i++ {
		ws, err := wstest.TryDial(t, c.ws+"?name=counter", nil)
		if err == nil {
			select {
			case f := <-ws.Frames:
				got = f.Count()
			case <-time.After(wstest.Wait):
			}
			ws.WS.CloseNow()
			if got == want+1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new client's welcome counts %d online, want %d (the test's %d clients and itself), after %v", got, want+1, want, within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ---- HTTP through nginx ------------------------------------------------------

// streamHistory is GET /api/history's answer.
type streamHistory struct {
	Epoch    string `json:"epoch"`
	Seq      uint64 `json:"seq"`
	Messages []struct {
		Data string `json:"data"`
	} `json:"messages"`
}

// history reads a room's stream through nginx, trying again within d
// while the cluster cannot answer (Redis coming back).
func (c *compose) history(t *testing.T, room string, d time.Duration) streamHistory {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		req, _ := http.NewRequest(http.MethodGet, c.base+"/api/history?room="+room+"&limit=1000", nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := c.http.Do(req)
		var h streamHistory
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if err := json.Unmarshal(b, &h); err != nil {
					t.Fatalf("GET /api/history: %v in %s", err, b)
				}
				return h
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/history?room=%s through nginx: %v", room, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *compose) notify(t *testing.T, text string, want int) {
	t.Helper()
	c.notifyWithKey(t, apiKey, fmt.Sprintf(`{"message":%q}`, text), want)
}

// notifyWithKey posts body; want 0 accepts any status.
func (c *compose) notifyWithKey(t *testing.T, key, body string, want int) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+"/api/notify", strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if want == 0 {
			return 0, err.Error()
		}
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if want != 0 && resp.StatusCode != want {
		t.Fatalf("POST /api/notify %s: %d %s, want %d", body, resp.StatusCode, b, want)
	}
	return resp.StatusCode, string(b)
}

func (c *compose) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// ---- compose and docker --------------------------------------------------------

type compose struct {
	t        *testing.T
	argv     []string // the compose command, e.g. docker compose
	project  string
	root     string // repository root
	env      []string
	port     int    // nginx's port published on 127.0.0.1
	promPort int    // the monitoring profile's Prometheus, on 127.0.0.1
	base, ws string // http://127.0.0.1:port, ws://127.0.0.1:port/ws
	http     *http.Client
	downDone bool
}

func newCompose(t *testing.T) *compose {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "docker-compose.yml")); err != nil {
		t.Fatal(err)
	}
	standins(t, root)

	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	c := &compose{
		t:       t,
		argv:    composeCommand(t),
		project: "relaytest" + hex.EncodeToString(suffix),
		root:    root,
		http:    &http.Client{Timeout: 10 * time.Second},
	}
	port := testkit.FreePort(t)
	c.port = port
	c.promPort = testkit.FreePort(t)
	c.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	c.ws = fmt.Sprintf("ws://127.0.0.1:%d/ws", port)

	// The test's own settings, not a .env the developer may have.
	envFile := filepath.Join(t.TempDir(), "compose.env")
	settings := strings.Join([]string{
		fmt.Sprintf("RELAY_PORT=127.0.0.1:%d", port),
		fmt.Sprintf("RELAY_PROMETHEUS_PORT=127.0.0.1:%d", c.promPort),
		"RELAY_API_KEY=" + apiKey,
		"RELAY_IMAGE=relay:composetest",
		"RELAY_REPLICAS=3",
		"RELAY_SHUTDOWN_TIMEOUT=5s",
		"RELAY_STOP_GRACE_PERIOD=10s",
		"RELAY_LOG_LEVEL=info",
		// No RELAY_NOFILE: the open-files limits as shipped, which must
		// start here (TestShippedOpenFilesFitTheDaemon).
	}, "\n") + "\n"
	if err := os.WriteFile(envFile, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") && !strings.HasPrefix(kv, "COMPOSE_") && !strings.HasPrefix(kv, "DOCKER_BUILDKIT=") {
			c.env = append(c.env, kv)
		}
	}
	// The legacy builder: this engine has no buildx. With BuildKit the same
	// files build too.
	c.env = append(c.env, "DOCKER_BUILDKIT=0", "COMPOSE_DOCKER_CLI_BUILD=0", "COMPOSE_BAKE=false")
	t.Logf("compose: %s (project %s, nginx on %s)", strings.Join(c.argv, " "), c.project, c.base)
	c.argv = append(c.argv, "--project-name", c.project, "--project-directory", root,
		"--file", filepath.Join(root, "docker-compose.yml"), "--env-file", envFile)

	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run(time.Minute, "ps", "-a")
			t.Logf("compose ps -a:\n%s", out)
			out, _ = c.run(time.Minute, "logs", "--no-color", "--tail", "80")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := c.run(2*time.Minute, "--profile", "monitoring", "down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("cleanup: compose down: %v\n%s", err, out)
		}
		if left := c.leftovers(); left != "" {
			t.Errorf("cleanup: after down: %s", left)
		}
	})
	return c
}

// run runs compose with args and returns its combined output.
func (c *compose) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append(slices.Clone(c.argv), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.root
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after %v)", err, timeout)
	}
	return out.String(), err
}

// step runs compose args or fails the test, logging how long it took.
func (c *compose) step(name string, timeout time.Duration, args ...string) {
	c.t.Helper()
	start := time.Now()
	out, err := c.run(timeout, args...)
	if err != nil {
		c.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, tail(out, 60))
	}
	c.t.Logf("compose %s: %v", name, time.Since(start).Round(100*time.Millisecond))
}

// build builds the relay image and prunes what earlier builds left
// dangling (their build stage, their untagged final image); the layers this
// build reused are kept, so the next one is as fast.
func (c *compose) build() {
	c.t.Helper()
	started := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	c.step("build", 10*time.Minute, "build")
	c.checkImage()
	if out, err := dockerOut(time.Minute, "image", "prune", "--force",
		"--filter", "label=org.relay.image", "--filter", "until="+started); err != nil {
		c.t.Logf("pruning old relay build images: %v\n%s", err, out)
	}
}

// checkImage: the image runs as a non-root user and checks its own health.
func (c *compose) checkImage() {
	c.t.Helper()
	out := docker(c.t, 30*time.Second, "image", "inspect", "-f", "{{.Config.User}}|{{json .Config.Healthcheck.Test}}|{{json .Config.ExposedPorts}}", "relay:composetest")
	parts := strings.Split(strings.TrimSpace(out), "|")
	if len(parts) != 3 || parts[0] == "" || parts[0] == "0" || strings.HasPrefix(parts[0], "root") ||
		!strings.Contains(parts[1], "healthcheck") || !strings.Contains(parts[2], "3000/tcp") {
		c.t.Fatalf("relay image: user %q, healthcheck and ports %q; want non-root, relay healthcheck, 3000", parts[0], parts[1:])
	}
}

// waitReady polls nginx's /readyz on the published port.
func (c *compose) waitReady(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := c.http.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s/readyz not 200 within %v: %v", c.base, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// relayInfo is a running relay container.
type relayInfo struct{ id, host, health string }

func (c *compose) relays(t *testing.T) []relayInfo {
	t.Helper()
	ids := strings.Fields(docker(t, 30*time.Second, "ps", "-q", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service=relay"))
	if len(ids) == 0 {
		return nil
	}
	out := docker(t, 30*time.Second, append([]string{"inspect", "-f",
		"{{.Id}} {{.Config.Hostname}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"}, ids...)...)
	var rs []relayInfo
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 {
			rs = append(rs, relayInfo{f[0], f[1], f[2]})
		}
	}
	return rs
}

// relayNodes returns the node names (host names) of the running replicas.
func (c *compose) relayNodes(t *testing.T) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	for _, r := range c.relays(t) {
		m[r.host] = true
	}
	return m
}

func (c *compose) containerOf(t *testing.T, node string) string {
	t.Helper()
	for _, r := range c.relays(t) {
		if r.host == node {
			return r.id
		}
	}
	t.Fatalf("no running relay container is %s", node)
	return ""
}

// waitHealthy waits for n running relay replicas, all healthy.
func (c *compose) waitHealthy(n int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		rs := c.relays(c.t)
		healthy := 0
		for _, r := range rs {
			if r.health == "healthy" {
				healthy++
			}
		}
		if len(rs) == n && healthy == n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d relay replicas healthy after %v: %v", healthy, n, within, rs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// containerState identifies a service's container and when it started.
func (c *compose) containerState(t *testing.T, service string) string {
	t.Helper()
	ids := strings.Fields(docker(t, 30*time.Second, "ps", "-aq", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service="+service))
	if len(ids) != 1 {
		t.Fatalf("%d %s containers", len(ids), service)
	}
	return strings.TrimSpace(docker(t, 30*time.Second, "inspect", "-f", "{{.Id}} started {{.State.StartedAt}} restarts {{.RestartCount}}", ids[0]))
}

// leftovers lists what of the project is still there ("" if nothing).
func (c *compose) leftovers() string {
	label := "label=com.docker.compose.project=" + c.project
	var left []string
	for _, what := range [][]string{
		{"ps", "-aq", "--filter", label},
		{"network", "ls", "-q", "--filter", label},
		{"volume", "ls", "-q", "--filter", label},
	} {
		out, err := dockerOut(30*time.Second, what...)
		if err != nil {
			left = append(left, fmt.Sprintf("docker %s: %v", what[0], err))
		} else if ids := strings.Fields(out); len(ids) > 0 {
			left = append(left, fmt.Sprintf("%d %s (%s)", len(ids), what[0], strings.Join(ids, " ")))
		}
	}
	return strings.Join(left, "; ")
}

func docker(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := dockerOut(timeout, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func dockerOut(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// dockerAnswers reports why no Docker engine can be used, or nil.
func dockerAnswers() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return err
	}
	out, err := dockerOut(15*time.Second, "info", "--format", "{{.ServerVersion}}")
	if err != nil {
		return fmt.Errorf("docker info: %v: %s", err, strings.TrimSpace(tail(out, 3)))
	}
	return nil
}

// standins makes sure the images compose and the Dockerfile name are there:
// deploy/standins.sh builds local ones from Debian's packages where the
// engine cannot pull, and returns at once when they are present.
func standins(t *testing.T, root string) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "deploy", "standins.sh"))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/standins.sh: %v\n%s", err, tail(string(out), 40))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("deploy/standins.sh took %v:\n%s", d.Round(time.Second), tail(string(out), 20))
	}
}

// composeCommand picks Compose: RELAY_COMPOSE if set ("docker compose" or
// "docker-compose"), else the v2 plugin, else a v2 binary that
// deploy/standins.sh left in the cache, else Debian's docker-compose (v1).
func composeCommand(t *testing.T) []string {
	t.Helper()
	if v := os.Getenv("RELAY_COMPOSE"); v != "" {
		return strings.Fields(v)
	}
	if _, err := dockerOut(15*time.Second, "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	cache := os.Getenv("RELAY_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "relay")
	}
	if bins, _ := filepath.Glob(filepath.Join(cache, "compose-v2*", "docker-compose")); len(bins) > 0 {
		sort.Strings(bins)
		return []string{bins[len(bins)-1]}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		t.Logf("compose: Compose v2 not found, using %s (v1)", p)
		return []string{p}
	}
	t.Fatal("no docker compose: deploy/standins.sh installs Compose v2")
	return nil
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
