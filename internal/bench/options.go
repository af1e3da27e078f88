// Package bench is relay's load generator (`relay bench`): it opens real
// WebSocket connections to any relay URL (a node, nginx, a compose cluster),
// drives one scenario, and reports throughput, latency from a send
// timestamp carried in each message, losses, duplicates and reorderings per
// receiver, and the server's memory and CPU read from its /metrics.
package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Options configure a run.
type Options struct {
	Scenario   string        // idle, fanout, chat or http
	URL        string        // base URL of the service, http://host:port
	Conns      int           // connections (idle), subscribers (fanout), clients (chat)
	Rooms      int           // rooms the connections spread over
	RoomPrefix string        // rooms are RoomPrefix-0, RoomPrefix-1, ...
	HTML       string        // write an HTML report here too
	Ramp       int           // connections opened per second
	Duration   time.Duration // how long to hold (idle), publish (fanout, chat) or load (http)
	Rate       float64       // fanout: messages per second in all
	Messages   int           // fanout: stop after this many (0: Rate × Duration)
	Size       int           // bytes of padding in each message
	Publish    string        // fanout: "notify" (POST /api/notify) or "ws" (a WebSocket publisher)
	Publishers int           // fanout: notifies in flight at once, each its own ordered publisher
	Every      time.Duration // chat: each client sends one message this often
	Workers    int           // http: concurrent requests
	Stall      int           // fanout: subscribers that never read, to show memory stays bounded
	Resume     bool          // fanout: a subscriber whose connection ends reconnects and resumes
	DropRate   float64       // fanout: subscriber connections cut per second while publishing (implies Resume)
	Metrics    []string      // base URLs whose /metrics are summed for the server's figures (default: URL)
	APIKey     string
	JWTSecret  string
	JSON       bool
	Quiet      bool // no progress lines
}

// ParseArgs parses `relay bench` arguments: flags, then the scenario.
func ParseArgs(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("relay bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:3000", "relay base URL (a node, nginx or a cluster)")
	fs.IntVar(&o.Conns, "conns", 1000, "connections (idle), subscribers (fanout) or clients (chat)")
	fs.IntVar(&o.Rooms, "rooms", 1, "rooms to spread connections over")
	fs.StringVar(&o.HTML, "html", "", "also write a self-contained HTML report with charts over time to this file")
	fs.StringVar(&o.RoomPrefix, "room-prefix", "bench", "rooms are named PREFIX-0, PREFIX-1, ...: give concurrent runs against one node prefixes of their own")
	fs.IntVar(&o.Ramp, "ramp", 2000, "connections opened per second")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to hold, publish or load")
	fs.Float64Var(&o.Rate, "rate", 20, "fanout: messages per second")
	fs.IntVar(&o.Messages, "messages", 0, "fanout: messages to publish (default rate × duration)")
	fs.IntVar(&o.Size, "size", 64, "bytes of padding per message")
	fs.StringVar(&o.Publish, "publish", "notify", "fanout: publish through notify or ws")
	fs.IntVar(&o.Publishers, "publishers", 1, "fanout: concurrent notify publishers, each sending its share in order (keeps the schedule when a notify is slow)")
	fs.DurationVar(&o.Every, "every", 5*time.Second, "chat: each client sends a message this often")
	fs.IntVar(&o.Workers, "workers", 64, "http: concurrent requests")
	fs.IntVar(&o.Stall, "stall", 0, "fanout: extra subscribers that stop reading")
	fs.BoolVar(&o.Resume, "resume", false, "fanout: a subscriber whose connection ends (a replica restarted, a cut) reconnects and resumes from its positions")
	fs.Float64Var(&o.DropRate, "drop-rate", 0, "fanout: cut this many subscriber connections per second from the client side while publishing; each reconnects and resumes (implies -resume)")
	metrics := fs.String("metrics", "", "comma-separated base URLs of every node whose /metrics to sum (a cluster's replicas); default -url")
	fs.StringVar(&o.APIKey, "api-key", "", "API key for POST /api/notify")
	fs.StringVar(&o.JWTSecret, "jwt-secret", "", "mint a token per client with this HS256 secret")
	fs.BoolVar(&o.JSON, "json", false, "print the result as JSON")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress lines")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: relay bench [flags] idle|fanout|chat|http")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return o, errors.New("relay bench: name one scenario: idle, fanout, chat or http")
	}
	o.Scenario = fs.Arg(0)
	o.URL = strings.TrimRight(o.URL, "/")
	o.Metrics = []string{o.URL}
	if *metrics != "" {
		o.Metrics = nil
		for _, u := range strings.Split(*metrics, ",") {
			if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
				o.Metrics = append(o.Metrics, u)
			}
		}
	}
	switch {
	case o.Scenario != "idle" && o.Scenario != "fanout" && o.Scenario != "chat" && o.Scenario != "http":
		return o, fmt.Errorf("relay bench: unknown scenario %q", o.Scenario)
	case o.Conns < 1 || o.Rooms < 1 || o.Ramp < 1 || o.Workers < 1 || o.Publishers < 1:
		return o, errors.New("relay bench: -conns, -rooms, -ramp, -workers and -publishers must be at least 1")
	case o.Publish != "notify" && o.Publish != "ws":
		return o, fmt.Errorf("relay bench: -publish %q: want notify or ws", o.Publish)
	case o.Rate <= 0 || o.Every <= 0 || o.Duration <= 0:
		return o, errors.New("relay bench: -rate, -every and -duration must be positive")
	case o.DropRate < 0 || o.DropRate > 10000:
		return o, errors.New("relay bench: -drop-rate must be 0-10000 connections per second")
	case (o.Resume || o.DropRate > 0) && o.Scenario != "fanout":
		return o, errors.New("relay bench: -resume and -drop-rate apply to fanout")
	}
	if o.DropRate > 0 {
		o.Resume = true
	}
	if o.Messages == 0 {
		o.Messages = max(1, int(o.Rate*o.Duration.Seconds()))
	}
	return o, nil
}

// room names room i of the run.
func (o Options) room(i int) string {
	prefix := o.RoomPrefix
	if prefix == "" {
		prefix = "bench"
	}
	return prefix + "-" + strconv.Itoa(i)
}
