package composetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// crowdSize is how many WebSockets the crowd phase holds through nginx at
// once: far above what nginx's image defaults take (768 worker connections
// in Debian's build, 1,024 in the official image, two per WebSocket).
const crowdSize = 3000

// crowdClient is one of the crowd: a bare coder/websocket connection whose
// goroutine reads until the connection ends (wstest's frame buffer is sized
// for a handful of clients, not thousands).
type crowdClient struct {
	ws     *websocket.Conn
	node   string
	done   chan struct{}
	err    error // why reading ended; set before done is closed
	frames atomic.Int64
}

// crowd is the regression test for nginx's sizing (issue 14): crowdSize
// WebSockets through nginx at once, which must all connect, stay up, and
// land on every replica; then they leave and the cluster-wide count comes
// back to the test's own clients. It drives the port published on
// loopback unless Docker's userland proxy behind it cannot hold that many
// (see userlandProxy), and then nginx's container address.
func (c *compose) crowd(t *testing.T, cl []*member) {
	nodes := c.relayNodes(t)
	url := c.ws
	if pid, nofile := userlandProxy(c.port); pid > 0 && nofile/6 < crowdSize+200 {
		ip := c.containerIP(t, "nginx")
		url = "ws://" + ip + ":80/ws"
		t.Logf("docker-proxy (pid %d) behind the published port has %d open files, 6 per connection: it would stop at ~%d connections and drop them all; the crowd goes to nginx's container address %s",
			pid, nofile, nofile/6, ip)
	} else if pid > 0 {
		t.Logf("docker-proxy (pid %d) behind the published port: %d open files, room for ~%d connections", pid, nofile, nofile/6)
	}

	start := time.Now()
	crowd := make([]*crowdClient, crowdSize)
	defer func() { // on failure too
		for _, cc := range crowd {
			if cc != nil {
				cc.ws.CloseNow()
				<-cc.done
			}
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 64) // dials in flight
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range crowdSize {
		<-tick.C // at most 1,000 a second
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cc, err := dialCrowd(url + "?name=crowd" + strconv.Itoa(i))
			if err != nil {
				if failed.Add(1) == 1 {
					firstErr.Store(err)
				}
				return
			}
			crowd[i] = cc
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d WebSockets through nginx failed; the first: %v\nnginx:\n%s",
			n, crowdSize, firstErr.Load(), c.nginxTrouble(t))
	}
	t.Logf("%d WebSockets connected through nginx in %v", crowdSize, time.Since(start).Round(100*time.Millisecond))

	spread := map[string]int{}
	for _, cc := range crowd {
		if !nodes[cc.node] {
			t.Fatalf("a crowd client landed on %q, not one of the relay containers %v", cc.node, keys(nodes))
		}
		spread[cc.node]++
	}
	t.Logf("the crowd over the replicas: %v", spread)
	for n := range nodes {
		// A loose bound: the spread itself is measured by deploy/bench.sh.
		if spread[n] < crowdSize/len(nodes)/2 {
			t.Fatalf("replica %s got %d of %d connections: %v", n, spread[n], crowdSize, spread)
		}
	}

	// All stay up: a few presence intervals, the count cluster-wide, and no
	// client of the crowd or of the test's own lost.
	time.Sleep(3 * time.Second)
	c.checkCount(t, len(cl)+crowdSize, 20*time.Second)
	down := 0
	for _, cc := range crowd {
		select {
		case <-cc.done:
			if down++; down == 1 {
				t.Errorf("a crowd client on %s was disconnected: %v", cc.node, cc.err)
			}
		default:
		}
	}
	if down > 0 {
		t.Fatalf("%d of %d crowd clients were disconnected\nnginx:\n%s", down, crowdSize, c.nginxTrouble(t))
	}
	for _, m := range cl {
		if !m.ws.Open() {
			t.Fatalf("%s on %s was disconnected while the crowd was there: %v", m.name, m.node, m.ws.ReadErr())
		}
	}
	if trouble := c.nginxTrouble(t); trouble != "" {
		t.Fatalf("nginx complained while holding the crowd:\n%s", trouble)
	}

	// Everyone leaves; the count comes back to the test's own clients.
	for _, cc := range crowd {
		cc.ws.CloseNow()
	}
	c.checkCount(t, len(cl), 30*time.Second)
	t.Logf("crowd phase: %v", time.Since(start).Round(100*time.Millisecond))
}

// dialCrowd connects one crowd client and reads its welcome.
func dialCrowd(url string) (*crowdClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
		}
		return nil, err
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("no welcome: %w", err)
	}
	var w struct{ Event, Node string }
	if err := json.Unmarshal(b, &w); err != nil || w.Event != "welcome" {
		ws.CloseNow()
		return nil, fmt.Errorf("first frame %s, not a welcome", b)
	}
	cc := &crowdClient{ws: ws, node: w.Node, done: make(chan struct{})}
	go func() { // ends when the connection does; joined by whoever closes it
		defer close(cc.done)
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				cc.err = err
				return
			}
			cc.frames.Add(1)
		}
	}()
	return cc, nil
}

// nginxTrouble returns nginx's log lines that say it ran out of something
// ("worker_connections are not enough", "Too many open files"), or "".
func (c *compose) nginxTrouble(t *testing.T) string {
	t.Helper()
	out, _ := c.run(time.Minute, "logs", "--no-color", "nginx")
	var bad []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "are not enough") || strings.Contains(line, "Too many open files") ||
			strings.Contains(line, "[emerg]") || strings.Contains(line, "[crit]") {
			bad = append(bad, line)
		}
	}
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("... and %d more", len(bad)-10))
	}
	return strings.Join(bad, "\n")
}

// containerIP is the address of service's one container on the project's
// network, reachable from the Docker host.
func (c *compose) containerIP(t *testing.T, service string) string {
	t.Helper()
	ids := strings.Fields(docker(t, 30*time.Second, "ps", "-q",
		"--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service="+service))
	if len(ids) != 1 {
		t.Fatalf("%d %s containers", len(ids), service)
	}
	ip := strings.TrimSpace(docker(t, 30*time.Second, "inspect", "-f",
		"{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", ids[0]))
	if f := strings.Fields(ip); len(f) > 0 {
		return f[0]
	}
	t.Fatalf("%s has no address", service)
	return ""
}

// userlandProxy finds the docker-proxy process that serves a published
// host port and its open-files limit (hard, which Go programs raise their
// soft limit to). It returns 0, 0 when there is none: the daemon runs with
// "userland-proxy": false, or /proc cannot be read.
//
// docker-proxy copies each direction of a connection with io.Copy between
// two TCP sockets, which Go does with splice(2) through a pipe: 6 open
// files per connection. When Accept fails (EMFILE) it stops, closes every
// connection and exits, and the port stays dead until the container is
// recreated.
func userlandProxy(port int) (pid, nofile int) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("docker-proxy")) {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if i := slices.Index(args, "-host-port"); i < 0 || i+1 >= len(args) || args[i+1] != strconv.Itoa(port) {
			continue
		}
		pid, _ = strconv.Atoi(filepath.Base(filepath.Dir(p)))
		return pid, openFilesLimit(filepath.Join(filepath.Dir(p), "limits"))
	}
	return 0, 0
}

// openFilesLimit reads the hard "Max open files" from a /proc/PID/limits.
func openFilesLimit(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Max open files"); ok {
			if f := strings.Fields(rest); len(f) >= 2 {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
	}
	return 0
}
