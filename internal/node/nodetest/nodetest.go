// Package nodetest runs in-process relay nodes for tests, built by
// node.New exactly as the binary builds them, on loopback listeners.
package nodetest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/config"
	"github.com/relay/relay/internal/node"
	"github.com/relay/relay/internal/testkit"
)

// Node is a relay node owned by one test. Its address stays the same
// across Stop and Restart, so that clients can reconnect to it.
type Node struct {
	Addr   string // 127.0.0.1:port
	Config config.Config

	t   testing.TB
	log *slog.Logger

	mu   sync.Mutex
	node *node.Node // nil while stopped
}

// Option changes how Start runs a node.
type Option func(*options)

type options struct{ logs io.Writer }

// Logs writes the node's log to w as JSON lines, at RELAY_LOG_LEVEL.
func Logs(w io.Writer) Option { return func(o *options) { o.logs = w } }

// Start runs a node with the default configuration overridden by env
// (RELAY_NODE_ID defaults to "test-node"). It is stopped when the test ends.
func Start(t testing.TB, env map[string]string, opts ...Option) *Node {
	t.Helper()
	o := options{logs: io.Discard}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if env["RELAY_NODE_ID"] == "" {
		cfg.NodeID = "test-node"
	}
	n := &Node{
		Config: cfg,
		t:      t,
		log:    slog.New(slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: cfg.LogLevel})),
	}
	ln := testkit.Listen(t)
	n.Addr = ln.Addr().String()
	n.serve(ln)
	t.Cleanup(n.Stop)
	return n
}

// URL is the node's base URL, http://127.0.0.1:port.
func (n *Node) URL() string { return "http://" + n.Addr }

// WS is the URL of /ws with query (none if empty).
func (n *Node) WS(query string) string {
	u := "ws://" + n.Addr + "/ws"
	if query != "" {
		u += "?" + strings.TrimPrefix(query, "?")
	}
	return u
}

// Node is the running node; the test fails if it is stopped.
func (n *Node) Node() *node.Node {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.node == nil {
		n.t.Fatal("nodetest: node is stopped")
	}
	return n.node
}

func (n *Node) serve(ln net.Listener) {
	n.t.Helper()
	nd, err := node.New(context.Background(), n.Config, n.log)
	if err != nil {
		n.t.Fatalf("node.New: %v", err)
	}
	nd.Start(ln)
	n.mu.Lock()
	n.node = nd
	n.mu.Unlock()
}

// shutdownGrace bounds a test node's shutdown. Short, so a test that stops
// a node under a browser does not wait for net/http's 5 s on the spare
// connections browsers open ahead of need.
const shutdownGrace = 3 * time.Second

// Stop shuts the node down as SIGTERM does: refuse upgrades, close every
// client with 1012 after what is queued for it, stop serving. Idempotent.
func (n *Node) Stop() {
	n.mu.Lock()
	nd := n.node
	n.node = nil
	n.mu.Unlock()
	if nd == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := nd.Shutdown(ctx); err != nil {
		n.t.Errorf("node shutdown: %v", err)
	}
}

// Restart starts a stopped node again, with the same configuration, on the
// same address (waiting for the port to be free again).
func (n *Node) Restart() {
	n.t.Helper()
	var ln net.Listener
	testkit.CheckFor(n.t, 15*time.Second, 20*time.Millisecond, func() (err error) {
		ln, err = net.Listen("tcp", n.Addr)
		return err
	})
	n.serve(ln)
}
