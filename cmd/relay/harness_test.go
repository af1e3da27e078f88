package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// nginx runs the project's own nginx/conf.d/relay.conf, templated only for
// a loopback listen port, in front of nodes listed in an upstream block.
type nginx struct {
	addr string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

func (n *nginx) url() string            { return "http://" + n.addr }
func (n *nginx) ws(query string) string { return "ws://" + n.addr + "/ws?" + query }

func startNginx(t testing.TB, nodes ...*proc) *nginx {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Fatal("nginx not found: run the tests with ./deploy/test.sh, which installs it")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // nginx workers run as nobody when started by root
		t.Fatal(err)
	}
	n := &nginx{addr: freeAddr(t)}

	conf, err := os.ReadFile("../../nginx/conf.d/relay.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := strings.Replace(string(conf), "listen 80;", "listen "+n.addr+";", 1)
	if site == string(conf) {
		t.Fatal(`nginx/conf.d/relay.conf no longer has "listen 80;" for the test to template`)
	}
	var servers strings.Builder
	for _, p := range nodes {
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=2s;\n", p.addr)
	}
	upstream := "upstream relay_nodes {\n    least_conn;\n" + servers.String() + "}\nmap $host $relay_upstream { default relay_nodes; }\n"
	main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/upstream.conf;
    include %[1]s/relay.conf;
}
`, dir)
	for name, body := range map[string]string{"nginx.conf": main, "upstream.conf": upstream, "relay.conf": site} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.cmd = exec.Command(bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir, "-e", filepath.Join(dir, "error.log"))
	n.cmd.Stdout, n.cmd.Stderr = &n.out, &n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = n.cmd.Process.Kill()
			<-done
		}
	})
	errLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "error.log")); return n.out.String() + string(b) }
	waitHTTP(t, n.url()+"/healthz", 200, stringer(errLog))
	return n
}

type stringer func() string

func (s stringer) String() string { return s() }

// cluster is redis-server, three relay nodes and nginx in front of them.
type cluster struct {
	redis *redistest.Server
	nodes []*proc
	lb    *nginx
}

const clusterAPIKey = "cluster-key"

func startCluster(t testing.TB, env ...string) *cluster {
	t.Helper()
	c := startBackplane(t, env...)
	c.lb = startNginx(t, c.nodes...)
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
