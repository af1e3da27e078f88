// Package testkit holds what relay's tests share: one way to wait for a
// condition and one way to get a loopback address. It imports nothing of
// relay's, so that any package's tests can use it.
package testkit

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// CheckFor calls f every interval until it returns nil, and fails the test
// with f's last error if total passes first. Tests wait with it instead of
// sleeping: it returns as soon as the condition holds.
func CheckFor(t testing.TB, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", total, err)
		}
		time.Sleep(interval)
	}
}

// Listen returns a listener on a free loopback port, closed when the test
// ends if nobody closed it before. In-process servers listen this way and
// read the address back: there is no window in which another test can take
// the port.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// process that must be told its port before it starts (redis-server,
// nginx). Another process may take it meanwhile: in-process servers use
// Listen instead.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

// Buffer is a bytes.Buffer that a process or a logger writes to while the
// test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
