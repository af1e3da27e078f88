package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/config"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/metrics"
	"github.com/relay/relay/internal/server"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// node is one relay node under httptest, wired as cmd/relay wires it.
type node struct {
	url     string // http://127.0.0.1:port
	srv     *server.Server
	hub     *hub.Hub
	broker  *broker.Memory
	metrics *metrics.Metrics
	cfg     config.Config
}

// startNode starts a node with the default config overridden by env.
func startNode(t testing.TB, env map[string]string) *node {
	t.Helper()
	return startNodeLogging(t, env, io.Discard)
}

// startNodeLogging is startNode with the node's log written to w as JSON.
func startNodeLogging(t testing.TB, env map[string]string, w io.Writer) *node {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.NodeID == "" || env["RELAY_NODE_ID"] == "" {
		cfg.NodeID = "test-node"
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.LogLevel}))
	b := broker.NewMemory()
	m := metrics.New()
	h := hub.New(hub.Options{Node: cfg.NodeID, PresenceLimit: cfg.PresenceLimit,
		PresenceInterval: cfg.PresenceInterval, Logger: log, Observer: m}, b)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := server.New(cfg, h, b, m, log)
	ts := httptest.NewServer(srv.Handler())
	n := &node{url: ts.URL, srv: srv, hub: h, broker: b, metrics: m, cfg: cfg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Drain()
		ts.Close()
		srv.Shutdown(ctx)
		h.Close()
		_ = b.Close()
	})
	return n
}

func (n *node) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(n.url, "http") + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// request makes an HTTP request and decodes a JSON answer.
func request(t *testing.T, method, url, auth, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: invalid JSON %q", method, url, raw)
		}
	} else {
		m = map[string]any{"text": string(raw)}
	}
	return resp.StatusCode, m
}

func notify(t *testing.T, n *node, body string) (int, map[string]any) {
	t.Helper()
	return request(t, http.MethodPost, n.url+"/api/notify", n.cfg.APIKey, body)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, desc string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, desc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
