package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relay/relay/internal/nginxtest"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

// proc is a relay node run from the real binary.
type proc struct {
	t    testing.TB
	id   string
	addr string
	env  []string

	mu  sync.Mutex
	cmd *exec.Cmd
	out *testkit.Buffer
}

func (p *proc) url() string            { return "http://" + p.addr }
func (p *proc) ws(query string) string { return "ws://" + p.addr + "/ws?" + query }

// startNode runs a node on a loopback port of its own choosing and waits
// for /healthz. It is killed when the test ends.
func startNode(t testing.TB, id string, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, id: id}
	p.env = append([]string{"RELAY_ADDR=127.0.0.1:0", "RELAY_NODE_ID=" + id, "RELAY_LOG_LEVEL=info"}, env...)
	cmd, out := command(p.env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.out = cmd, out
	t.Cleanup(p.kill)
	p.addr = listenAddr(t, out)
	waitHTTP(t, p.url()+"/healthz", 200, out)
	return p
}

// listenAddr reads the address a node listens on from its log: with port 0
// the kernel picks it, so no other test can take it first.
func listenAddr(t testing.TB, out *testkit.Buffer) string {
	t.Helper()
	re := regexp.MustCompile(`msg="relay listening" addr=(\S+)`)
	var addr string
	testkit.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		m := re.FindStringSubmatch(out.String())
		if m == nil {
			return fmt.Errorf("no \"relay listening\" line in the node's log:\n%s", out)
		}
		addr = m[1]
		return nil
	})
	return addr
}

// term ends the node as an orchestrator does (SIGTERM: drain, 1012 to
// every client) and waits for it to exit. Idempotent.
func (p *proc) term() { p.end(syscall.SIGTERM) }

// kill ends the node with SIGKILL: no goodbye to anyone. Idempotent.
func (p *proc) kill() { p.end(syscall.SIGKILL) }

// end sends sig and waits for the node to exit.
func (p *proc) end(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// freeze stops the node (SIGSTOP), as a hung process or a paused VM would
// be: its sockets stay open and nothing answers. thaw resumes it.
func (p *proc) freeze() { p.signal(syscall.SIGSTOP) }
func (p *proc) thaw()   { p.signal(syscall.SIGCONT) }

func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// waitHTTP polls url until it answers status.
func waitHTTP(t testing.TB, url string, status int, out fmt.Stringer) {
	t.Helper()
	testkit.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", url, err, out)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			return fmt.Errorf("%s answered %d, want %d\n%s", url, resp.StatusCode, status, out)
		}
		return nil
	})
}

// cluster is redis-server, three relay nodes and nginx in front of them.
type cluster struct {
	redis *redistest.Server
	nodes []*proc
	links []*testkit.Proxy // node i's link to Redis, when proxied
	lb    *nginxtest.Server
}

// clusterOptions vary the loopback cluster for fault tests.
type clusterOptions struct {
	persistent bool // Redis with append-only persistence, as compose runs it
	proxied    bool // each node reaches Redis through a proxy the test controls
	noNginx    bool
}

const clusterAPIKey = "cluster-key"

func startCluster(t testing.TB, env ...string) *cluster {
	t.Helper()
	return startClusterWith(t, clusterOptions{}, env...)
}

// startBackplane is startCluster without nginx.
func startBackplane(t testing.TB, env ...string) *cluster {
	t.Helper()
	return startClusterWith(t, clusterOptions{noNginx: true}, env...)
}

func startClusterWith(t testing.TB, o clusterOptions, env ...string) *cluster {
	t.Helper()
	c := &cluster{}
	if o.persistent {
		c.redis = redistest.StartPersistent(t)
	} else {
		c.redis = redistest.Start(t)
	}
	env = append([]string{
		"RELAY_API_KEY=" + clusterAPIKey,
		"RELAY_TRUSTED_PROXIES=127.0.0.1",
		"RELAY_RATE_LIMIT=0",
	}, env...)
	for i := range 3 {
		url := c.redis.URL()
		if o.proxied {
			link := testkit.StartProxy(t, c.redis.Addr())
			c.links = append(c.links, link)
			url = "redis://" + link.Addr + "/0"
		}
		c.nodes = append(c.nodes, startNode(t, fmt.Sprintf("node-%d", i+1), append([]string{"RELAY_REDIS_URL=" + url}, env...)...))
	}
	for _, p := range c.nodes {
		waitHTTP(t, p.url()+"/readyz", 200, p.out)
	}
	if !o.noNginx {
		var addrs []string
		for _, p := range c.nodes {
			addrs = append(addrs, p.addr)
		}
		c.lb = nginxtest.Start(t, addrs...)
	}
	return c
}

// node returns the cluster's node with id.
func (c *cluster) node(t testing.TB, id string) *proc {
	t.Helper()
	for _, p := range c.nodes {
		if p.id == id {
			return p
		}
	}
	t.Fatalf("no node %q", id)
	return nil
}
