package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relay/relay/internal/nginxtest"
	"github.com/relay/relay/internal/redistest"
)

// proc is a relay node run from the real binary.
type proc struct {
	t    testing.TB
	id   string
	addr string
	env  []string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *syncBuffer
}

func (p *proc) url() string            { return "http://" + p.addr }
func (p *proc) ws(query string) string { return "ws://" + p.addr + "/ws?" + query }

// startNode runs a node and waits for /healthz. It is killed when the test
// ends.
func startNode(t testing.TB, id string, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, id: id, addr: freeAddr(t)}
	p.env = append([]string{"RELAY_ADDR=" + p.addr, "RELAY_NODE_ID=" + id, "RELAY_LOG_LEVEL=warn"}, env...)
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) start() {
	p.t.Helper()
	cmd, out := command(p.env...)
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.cmd, p.out = cmd, out
	p.mu.Unlock()
	waitHTTP(p.t, p.url()+"/healthz", 200, out)
}

// kill ends the node with SIGKILL: no goodbye to anyone. Idempotent.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// waitHTTP polls url until it answers status.
func waitHTTP(t testing.TB, url string, status int, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d: %v\n%s", url, status, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cluster is redis-server, three relay nodes and nginx in front of them.
type cluster struct {
	redis *redistest.Server
	nodes []*proc
	lb    *nginxtest.Server
}

const clusterAPIKey = "cluster-key"

func startCluster(t testing.TB, env ...string) *cluster {
	t.Helper()
	c := startBackplane(t, env...)
	var addrs []string
	for _, p := range c.nodes {
		addrs = append(addrs, p.addr)
	}
	c.lb = nginxtest.Start(t, addrs...)
	return c
}

// startBackplane is startCluster without nginx.
func startBackplane(t testing.TB, env ...string) *cluster {
	t.Helper()
	c := &cluster{redis: redistest.Start(t)}
	env = append([]string{
		"RELAY_REDIS_URL=" + c.redis.URL(),
		"RELAY_API_KEY=" + clusterAPIKey,
		"RELAY_TRUSTED_PROXIES=127.0.0.1",
		"RELAY_RATE_LIMIT=0",
	}, env...)
	for i := range 3 {
		c.nodes = append(c.nodes, startNode(t, fmt.Sprintf("node-%d", i+1), env...))
	}
	for _, p := range c.nodes {
		waitHTTP(t, p.url()+"/readyz", 200, p.out)
	}
	return c
}
