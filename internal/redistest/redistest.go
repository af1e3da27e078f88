// Package redistest runs a real redis-server on a free loopback port for
// tests, and can kill and restart it to test outages.
package redistest

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/testkit"
)

// Server is a redis-server process owned by one test.
type Server struct {
	t       testing.TB
	Port    int
	persist string // data directory with append-only persistence, or ""

	mu  sync.Mutex
	cmd *exec.Cmd
	out bytes.Buffer
}

// Start starts redis-server (from Debian's redis-server package, which
// deploy/test.sh installs) and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := New(t)
	s.Restart()
	return s
}

// StartPersistent is Start with append-only persistence, as the compose
// Redis runs: what was written survives Kill and Restart.
func StartPersistent(t testing.TB) *Server {
	t.Helper()
	s := New(t)
	s.persist = t.TempDir()
	s.Restart()
	return s
}

// New picks a port for a server without starting it: Restart starts it.
func New(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: run the tests with ./deploy/test.sh, which installs it")
	}
	s := &Server{t: t, Port: testkit.FreePort(t)}
	t.Cleanup(s.Kill)
	return s
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Restart starts the server (again, after Kill) on its port: empty, or,
// for StartPersistent, with what it had written.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("redistest: Restart while running")
	}
	s.out.Reset()
	args := []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--protected-mode", "no"}
	if s.persist != "" {
		// appendfsync always: a SIGKILL loses nothing that was answered.
		args = append(args, "--appendonly", "yes", "--appendfsync", "always", "--dir", s.persist)
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not start: %v\n%s", err, s.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would. Idempotent.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
