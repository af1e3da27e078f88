package nginxtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMainConfigTemplates: the shipped nginx/nginx.conf keeps every line
// the tests rewrite, and its sizing survives the rewrite.
func TestMainConfigTemplates(t *testing.T) {
	conf, err := mainConfig(repoRoot(t), "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"daemon off;", "worker_processes auto;", "worker_connections 16000;",
		"worker_rlimit_nofile 16384;", "pid /tmp/x/nginx.pid;", "include /tmp/x/relay.conf;"} {
		if !strings.Contains(conf, want) {
			t.Errorf("the test's main config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "/etc/nginx/conf.d") || strings.Contains(conf, "/var/log/nginx") {
		t.Errorf("the test's main config still names the machine's nginx paths:\n%s", conf)
	}
}

// TestHoldsThousandsOfWebSockets is the loopback regression test for the
// nginx sizing: 2,000 WebSockets through the shipped main config (4,000
// connections in nginx). nginx's own defaults (768 worker connections in
// Debian's build) refuse all but a few hundred with a 500.
func TestHoldsThousandsOfWebSockets(t *testing.T) {
	const n = 2000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max < 3*n {
		t.Skipf("open-files hard limit %d: this test holds %d files (both ends of %d sockets and nginx's)", lim.Max, 3*n, n)
	}
	if lim.Cur < 3*n {
		old := lim.Cur
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lim.Cur = old; _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
	}

	// A stand-in node: /healthz, and /ws holding each WebSocket until the
	// client closes it.
	var held atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		held.Add(1)
		defer held.Add(-1)
		_, _, _ = c.Read(context.Background()) // until the client goes
		c.CloseNow()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	t.Cleanup(func() { _ = srv.Close(); <-served })

	lb := Start(t, ln.Addr().String())
	conns := make([]*websocket.Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.CloseNow()
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, lb.WS(fmt.Sprintf("n=%d", i)), nil)
			if err != nil {
				status := 0
				if resp != nil {
					status = resp.StatusCode
				}
				errs <- fmt.Errorf("client %d: HTTP %d: %v", i, status, err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	var first error
	for err := range errs {
		if first == nil {
			first = err
		}
		failed++
	}
	if failed > 0 {
		b, _ := os.ReadFile(lb.dir + "/error.log")
		t.Fatalf("%d of %d WebSockets through nginx failed, the first: %v\nnginx error.log (tail):\n%s", failed, n, first, tailLines(string(b), 10))
	}
	deadline := time.Now().Add(10 * time.Second)
	for held.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the node holds %d WebSockets through nginx, want %d", held.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tailLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
