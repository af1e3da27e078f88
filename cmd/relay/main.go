// Command relay is a real-time messaging server: WebSocket chat rooms, server
// notifications and presence over HTTP, alone or as a cluster behind nginx.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/relay/relay/internal/bench"
	"github.com/relay/relay/internal/chatcli"
	"github.com/relay/relay/internal/config"
	"github.com/relay/relay/internal/gctune"
	"github.com/relay/relay/internal/node"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

const usage = `usage: relay [command]

commands:
  serve        run a node (the default)
  chat URL     a terminal client: relay chat ws://localhost:3000/ws [-name N] [-token JWT]
  bench ...    a load generator: relay bench [flags] idle|fanout|chat|http (relay bench -h)
  healthcheck  exit 0 if the local node's /readyz answers 200 (for Docker HEALTHCHECK)
  help         show this help

relay is configured from the environment:
`

// run is the whole program; main only maps its error to an exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "serve":
		cfg, err := config.Load(getenv)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stderr)
	case "bench":
		opts, err := bench.ParseArgs(args[1:], stderr)
		if err != nil {
			return err
		}
		rep, err := bench.Run(ctx, opts, stderr)
		if err != nil {
			return err
		}
		if opts.HTML != "" {
			if err := writeReport(opts, rep); err != nil {
				return err
			}
		}
		if opts.JSON {
			return rep.JSON(stdout)
		}
		rep.Print(stdout)
		return nil
	case "chat":
		opts, err := parseChatArgs(args[1:], stderr)
		if err != nil {
			return err
		}
		return chatcli.Run(ctx, opts, stdin, stdout)
	case "healthcheck":
		cfg, err := config.Load(getenv)
		if err != nil {
			return err
		}
		return healthcheck(ctx, cfg.Addr, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage+config.Usage())
		return nil
	default:
		return fmt.Errorf("unknown command %q (try relay help)", cmd)
	}
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs a node on cfg.Addr until ctx ends, then shuts it down within
// cfg.ShutdownTimeout. What is process-wide (GC tuning, pprof) is set up
// here; the node is built by package node.
func serve(ctx context.Context, cfg config.Config, logw io.Writer) error {
	log := newLogger(cfg, logw)
	if os.Getenv("GOGC") == "" { // GOGC in the environment overrides the policy
		tuneCtx, stopTune := context.WithCancel(context.WithoutCancel(ctx))
		tuned := make(chan struct{})
		go func() {
			defer close(tuned)
			gctune.Run(tuneCtx, gctune.Default)
		}()
		defer func() { stopTune(); <-tuned }()
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveAside(cfg.DebugAddr, pprofHandler(), "pprof profiles", log)
		if err != nil {
			return fmt.Errorf("RELAY_DEBUG_ADDR: %w", err)
		}
		defer stopDebug()
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	n, err := node.New(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	if cfg.MetricsAddr != "" {
		stopMetrics, err := serveAside(cfg.MetricsAddr, n.Metrics().Handler(), "metrics", log)
		if err != nil {
			ln.Close()
			_ = n.Shutdown(context.Background())
			return fmt.Errorf("RELAY_METRICS_ADDR: %w", err)
		}
		defer stopMetrics()
	}
	n.Start(ln)

	select {
	case <-n.Stopped():
		_ = n.Shutdown(context.Background())
		return n.Err()
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	// The signal's context is done; the shutdown gets a fresh one.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// writeReport writes relay bench's HTML report (-html).
func writeReport(opts bench.Options, rep *bench.Report) error {
	f, err := os.Create(opts.HTML)
	if err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	if err := bench.WriteHTML(f, opts, rep); err != nil {
		f.Close()
		return fmt.Errorf("bench report: %w", err)
	}
	return f.Close()
}

func parseChatArgs(args []string, stderr io.Writer) (chatcli.Options, error) {
	var o chatcli.Options
	fs := flag.NewFlagSet("relay chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Token, "token", "", "JWT to connect with (RELAY_JWT_SECRET set on the server)")
	fs.StringVar(&o.Name, "name", "", "name to use when the server takes ?name=")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: relay chat [-token JWT] [-name NAME] ws://host:port/ws")
		fs.PrintDefaults()
	}
	// Flags may come after the URL too: relay chat ws://... -name alice
	var rest []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) != 1 {
		fs.Usage()
		return o, errors.New("relay chat: give one ws:// URL")
	}
	o.URL = rest[0]
	return o, nil
}
