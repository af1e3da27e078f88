// Package node assembles one relay node from its configuration: the broker
// (embedded, or Redis for a cluster), presence counting, the hub and the
// HTTP server. The binary and every test build a node the same way, with
// New, then Start it on a listener and Shutdown it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/config"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/metrics"
	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/server"
)

// Node is one running relay node. Build it with New, serve it with Start,
// stop it with Shutdown.
type Node struct {
	cfg     config.Config
	log     *slog.Logger
	broker  broker.Broker
	hub     *hub.Hub
	srv     *server.Server
	metrics *metrics.Metrics
	http    *http.Server

	stopCounter context.CancelFunc // nil without a cluster counter
	counterDone chan struct{}

	mu       sync.Mutex    // guards served against a Shutdown racing Start
	served   chan struct{} // nil until Start; closed once Serve returned
	serveErr error         // why Serve returned, set before served closes

	shutOnce sync.Once
	shutErr  error
}

// New builds a node and starts what runs behind the listener: the broker
// connection, the presence counter and the hub. A node whose broker is
// unreachable starts anyway and reports unready until it is reached.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log, metrics: metrics.New()}
	if cfg.JWTSecret == "" {
		log.Warn("RELAY_JWT_SECRET is not set: anyone can connect as a guest")
	}
	if cfg.APIKey == "" {
		log.Warn("RELAY_API_KEY is not set: POST /api/notify is open to anyone who can reach it")
	}

	var counter *presence.Redis // nil: the hub counts its own members
	history := broker.HistoryOptions{Size: cfg.HistorySize, TTL: cfg.HistoryTTL, StreamTTL: cfg.StreamTTL}
	if cfg.RedisURL == "" {
		n.broker = broker.NewMemory(broker.WithHistory(history))
	} else {
		rb, err := broker.NewRedis(broker.RedisOptions{URL: cfg.RedisURL, Prefix: cfg.RedisPrefix, History: history, Logger: log})
		if err != nil {
			return nil, err
		}
		n.broker = rb
		counter = presence.NewRedis(presence.RedisOptions{
			Client: rb.Client(), Prefix: cfg.RedisPrefix, Node: cfg.NodeID,
			Limit: cfg.PresenceLimit, Interval: cfg.PresenceInterval, Logger: log,
			// n.hub is set below, before the counter runs.
			NodeGone: func(room string, s presence.Summary) { n.hub.PresenceLost(room, s) },
			NodeBack: func(room string, s presence.Summary) { n.hub.PresenceBack(room, s) },
		})
	}

	opts := hub.Options{
		Node:             cfg.NodeID,
		PresenceLimit:    cfg.PresenceLimit,
		PresenceInterval: cfg.PresenceInterval,
		Logger:           log,
		Observer:         n.metrics,
		Streams:          n.metrics,
		HoldBytes:        cfg.SendQueueBytes,
		MaxFrameBytes:    cfg.MaxMessageBytes + protocol.Envelope,
		WhoLimit:         cfg.WhoLimit,
	}
	if counter != nil {
		opts.Counter = counter
	}
	n.hub = hub.New(opts, n.broker)
	if counter != nil {
		// Its own context: the counter stops in Shutdown, after the hub,
		// so that on the way out the node takes itself out of every count.
		runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		n.stopCounter, n.counterDone = stop, make(chan struct{})
		go func() {
			defer close(n.counterDone)
			counter.Run(runCtx)
		}()
	}
	if err := n.hub.Start(ctx); err != nil {
		n.closeBackend()
		return nil, fmt.Errorf("start hub: %w", err)
	}

	n.metrics.WatchNode(n.hub.LocalRooms, n.broker.Ready)
	n.metrics.WatchSubscriptions(n.broker.Subscriptions)
	if sc, ok := n.broker.(broker.StateCounter); ok {
		n.metrics.WatchBrokerState(sc.StateKeys)
	}
	n.srv = server.New(cfg, n.hub, n.broker, n.metrics, log)
	n.http = &http.Server{
		Handler:           n.srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       cfg.HTTPIdleTimeout,
	}
	return n, nil
}

// Handler serves every route of the node.
func (n *Node) Handler() http.Handler { return n.srv.Handler() }

// Metrics is the node's metrics registry.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// Hub is the node's hub.
func (n *Node) Hub() *hub.Hub { return n.hub }

// Start serves the node on ln in the background until Shutdown. Call it at
// most once.
func (n *Node) Start(ln net.Listener) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.served != nil {
		panic("node: Start called twice")
	}
	served := make(chan struct{})
	n.served = served
	n.log.Info("relay listening", "addr", ln.Addr().String(), "node", n.cfg.NodeID, "config", n.cfg)
	go func() { // joined by Shutdown
		defer close(served)
		if err := n.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			n.serveErr = fmt.Errorf("serve: %w", err)
		}
	}()
}

// Stopped is closed when the listener stops serving: after Shutdown, or
// earlier if accepting failed (then Err says why). Nil before Start.
func (n *Node) Stopped() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.served
}

// Err is why the listener stopped serving before Shutdown, once Stopped is
// closed; nil otherwise.
func (n *Node) Err() error {
	select {
	case <-n.Stopped():
		return n.serveErr
	default:
		return nil
	}
}

// Drain makes /readyz answer 503 and refuses new WebSocket upgrades, so a
// load balancer moves traffic elsewhere; the node keeps serving its clients.
func (n *Node) Drain() { n.srv.Drain() }

// Shutdown stops the node in order: refuse upgrades, close every WebSocket
// client with 1012 after what is queued for it, stop the HTTP server, stop
// the hub, take the node out of the cluster's counts, close the broker.
// Clients and HTTP requests get until ctx ends; what is left is then cut.
// Idempotent; later calls return the first one's result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() { n.shutErr = n.shutdown(ctx) })
	return n.shutErr
}

func (n *Node) shutdown(ctx context.Context) error {
	// WebSocket clients first: they get their 1012 at once, while
	// http.Server.Shutdown may wait seconds on browsers' idle spare
	// connections. The listener stays open meanwhile, refusing upgrades.
	n.srv.Shutdown(ctx)
	if err := n.http.Shutdown(ctx); err != nil {
		n.log.Warn("http shutdown: cutting what is left", "err", err)
		_ = n.http.Close()
	}
	n.mu.Lock()
	served := n.served
	n.mu.Unlock()
	var err error
	if served != nil {
		<-served
		err = n.serveErr
	}
	n.closeBackend()
	return err
}

// closeBackend stops what New started behind the HTTP server.
func (n *Node) closeBackend() {
	n.hub.Close()
	if n.stopCounter != nil {
		n.stopCounter()
		<-n.counterDone
	}
	if err := n.broker.Close(); err != nil {
		n.log.Warn("close broker", "err", err)
	}
}

// Broker is the node's broker.
func (n *Node) Broker() broker.Broker { return n.broker }
