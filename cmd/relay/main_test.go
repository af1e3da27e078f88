package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/testkit"
)

// binary is the real relay binary, built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "relay")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func command(env ...string) (*exec.Cmd, *testkit.Buffer) {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), env...)
	out := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

func TestBadConfigExits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ env, want string }{
		{"RELAY_PING_INTERVAL=soon", `RELAY_PING_INTERVAL="soon"`},
		{"RELAY_MAX_CONNECTIONS=-1", `RELAY_MAX_CONNECTIONS="-1"`},
		{"RELAY_REDIS_URL=http://127.0.0.1:1", "RELAY_REDIS_URL"},
	} {
		cmd, out := command(tc.env)
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("%s: %v, want a non-zero exit", tc.env, err)
		}
		if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%s: output %q, want one line naming %s", tc.env, out, tc.want)
		}
	}
}

func TestHelpListsSettings(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "-h").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"RELAY_ADDR", "RELAY_REDIS_URL", "RELAY_SEND_QUEUE_BYTES", "RELAY_PRESENCE_INTERVAL", ":3000"} {
		if !bytes.Contains(out, []byte(v)) {
			t.Errorf("relay -h does not mention %s", v)
		}
	}
}

// SIGTERM: readyz goes 503, clients are closed with 1012, exit status 0.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	p := startNode(t, "sigterm", "RELAY_SHUTDOWN_TIMEOUT=5s")
	cmd, out, addr := p.cmd, p.out, p.addr

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws?name=term", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, b, err := ws.Read(ctx); err != nil || !bytes.Contains(b, []byte(`"welcome"`)) {
		t.Fatalf("welcome: %s %v", b, err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Fatalf("client got %v, want close 1012", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v, longer than RELAY_SHUTDOWN_TIMEOUT", d)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	check := func(addr string) error {
		cmd := exec.Command(binary, "healthcheck")
		cmd.Env = append(os.Environ(), "RELAY_ADDR="+addr)
		return cmd.Run()
	}
	if err := check(testkit.FreeAddr(t)); err == nil {
		t.Fatal("healthcheck passed with no node running")
	}
	if err := check(startNode(t, "hc").addr); err != nil {
		t.Fatalf("healthcheck against a ready node: %v", err)
	}
}

// relay chat driven through a pipe: typed lines become frames, frames are
// printed readably.
func TestChatCommand(t *testing.T) {
	t.Parallel()
	p := startNode(t, "chat-node")
	cmd := exec.Command(binary, "chat", p.ws(""), "-name", "alice")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "hello there")
	fmt.Fprintln(stdin, "/join ops")
	fmt.Fprintln(stdin, "in ops")
	fmt.Fprintln(stdin, "/ping")
	fmt.Fprintln(stdin, `{"type":"bogus"}`)
	fmt.Fprintln(stdin, "/nonsense")
	// Wait for the last answer before ending the input, so that the
	// session's output is complete.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "unknown_type") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relay chat: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"* connected to chat-node as alice, 1 online in lobby",
		"[lobby] alice: hello there",
		"* alice joined ops (1 online)",
		"[ops] alice: in ops",
		"* pong",
		`! unknown_type: unknown type "bogus"`,
		`unknown command "/nonsense"`,
		"* closed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// relay bench against a real node, small enough for a unit test: it must
// report exactly what it sent and that all of it arrived.
func TestBenchCommand(t *testing.T) {
	t.Parallel()
	p := startNode(t, "bench-node", "RELAY_API_KEY=k", "RELAY_RATE_LIMIT=0")
	for _, args := range [][]string{
		{"-conns", "30", "-rooms", "3", "-rate", "40", "-messages", "30", "-api-key", "k", "fanout"},
		{"-conns", "10", "-rooms", "2", "-rate", "40", "-messages", "20", "-publish", "ws", "fanout"},
		{"-conns", "12", "-rooms", "3", "-every", "200ms", "-duration", "1s", "chat"},
		{"-conns", "50", "-duration", "1s", "idle"},
		{"-workers", "4", "-duration", "1s", "http"},
	} {
		cmd := exec.Command(binary, append([]string{"bench", "-url", p.url(), "-json", "-quiet"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("relay bench %v: %v\n%s", args, err, stderr.String())
		}
		var rep struct {
			Scenario    string  `json:"scenario"`
			Published   int     `json:"published"`
			Expected    int     `json:"expected"`
			Delivered   int     `json:"delivered"`
			Lost        int     `json:"lost"`
			Duplicated  int     `json:"duplicated"`
			Reordered   int     `json:"reordered"`
			ErrorFrames int     `json:"error_frames"`
			Requests    int     `json:"requests"`
			KBPerConn   float64 `json:"server_kb_per_conn"`
			RSSAfter    float64 `json:"server_rss_after_mb"`
			// dial → welcome, each connection's first
			HandshakeP50 float64 `json:"handshake_p50_ms"`
			HandshakeP99 float64 `json:"handshake_p99_ms"`
			HandshakeMax float64 `json:"handshake_max_ms"`
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("relay bench %v: bad JSON %q", args, out)
		}
		scenario := args[len(args)-1]
		switch scenario {
		case "fanout", "chat":
			if rep.Published == 0 || rep.Delivered != rep.Expected || rep.Lost+rep.Duplicated+rep.Reordered+rep.ErrorFrames != 0 {
				t.Errorf("%v: %+v", args, rep)
			}
		case "idle":
			if rep.RSSAfter == 0 {
				t.Errorf("idle: no server memory read from /metrics: %+v", rep)
			}
			if !(0 < rep.HandshakeP50 && rep.HandshakeP50 <= rep.HandshakeP99 && rep.HandshakeP99 <= rep.HandshakeMax) {
				t.Errorf("idle: handshake times p50 %v, p99 %v, max %v: want 0 < p50 <= p99 <= max",
					rep.HandshakeP50, rep.HandshakeP99, rep.HandshakeMax)
			}
		case "http":
			if rep.Requests == 0 || rep.ErrorFrames != 0 {
				t.Errorf("http: %+v", rep)
			}
		}
		if s := string(out); scenario == "fanout" && args[len(args)-2] != "ws" && !strings.Contains(s, `"published": 30`) {
			t.Errorf("fanout did not report the 30 messages it sent: %s", s)
		}
	}
}

// RELAY_METRICS_ADDR takes /metrics off the public port: it is served on
// its own address only.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	t.Parallel()
	p := startNode(t, "metrics", "RELAY_METRICS_ADDR=127.0.0.1:0")
	if status := getStatus(t, p.url()+"/metrics"); status != http.StatusNotFound {
		t.Errorf("/metrics on the public port: %d, want 404", status)
	}
	re := regexp.MustCompile(`msg="metrics served" addr=(\S+)`)
	m := re.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no \"metrics served\" line in the log:\n%s", p.out)
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "relay_connections") {
		t.Fatalf("/metrics on RELAY_METRICS_ADDR: %d %.200s", resp.StatusCode, body)
	}
}
