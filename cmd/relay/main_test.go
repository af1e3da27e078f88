package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
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

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func command(env ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out
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
	addr := freeAddr(t)
	cmd, out := command("RELAY_ADDR="+addr, "RELAY_SHUTDOWN_TIMEOUT=5s", "RELAY_NODE_ID=sigterm")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not come up: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}

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
	if err := check(freeAddr(t)); err == nil {
		t.Fatal("healthcheck passed with no node running")
	}
	if err := check(startNode(t, "hc").addr); err != nil {
		t.Fatalf("healthcheck against a ready node: %v", err)
	}
}
