package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of a run; Print shows it as a table, JSON as JSON.
type Report struct {
	Scenario string `json:"scenario"`
	URL      string `json:"url"`

	Conns          int            `json:"conns"`
	ConnectSeconds float64        `json:"connect_seconds,omitempty"`
	Nodes          map[string]int `json:"nodes,omitempty"` // connections per node, from each welcome
	// From a connection's dial to its welcome (TCP, upgrade, the server's
	// registration and the welcome's write), each connection's first.
	HandshakeP50Ms float64 `json:"handshake_p50_ms,omitempty"`
	HandshakeP99Ms float64 `json:"handshake_p99_ms,omitempty"`
	HandshakeMaxMs float64 `json:"handshake_max_ms,omitempty"`
	SpreadPercent  float64 `json:"spread_percent,omitempty"` // largest distance of a node's count from the mean, in % of the mean

	Published     int `json:"published,omitempty"`
	PublishLate   int `json:"publish_late,omitempty"` // publishes that started over one interval behind schedule
	PublishErrors int `json:"publish_errors,omitempty"`
	// Publishes that failed (no answer, 5xx) but that GET /api/history
	// found in the stream: counted as sent; and those it could not tell.
	PublishLanded    int     `json:"publish_failed_but_landed,omitempty"`
	PublishUncertain int     `json:"publish_uncertain,omitempty"`
	PublishP99Ms     float64 `json:"publish_accept_p99_ms,omitempty"` // from sending a publish to its acceptance (notify's 200)
	PublishMaxMs     float64 `json:"publish_accept_max_ms,omitempty"`
	// The measured phase (publishing and the last deliveries), in unix
	// milliseconds, to match against CPU sampled outside (per container).
	MeasuredFromMs int64   `json:"measured_from_unix_ms,omitempty"`
	MeasuredToMs   int64   `json:"measured_to_unix_ms,omitempty"`
	Expected       int     `json:"expected,omitempty"`
	Delivered      int     `json:"delivered,omitempty"`
	Lost           int     `json:"lost"`
	Duplicated     int     `json:"duplicated"`
	Reordered      int     `json:"reordered"`
	DeliveriesPerS float64 `json:"deliveries_per_second,omitempty"`
	P50Ms          float64 `json:"p50_ms,omitempty"`
	P99Ms          float64 `json:"p99_ms,omitempty"`
	MaxMs          float64 `json:"max_ms,omitempty"`
	ErrorFrames    int     `json:"error_frames"`
	Problem        string  `json:"first_problem,omitempty"` // the first error frame, gap or unrecovered resume

	// -resume and -drop-rate (fanout): connections cut by the load
	// generator; reconnections; resumes (reconnections whose welcome
	// answered recovered true or false: one cut again before its welcome
	// has none); failed redials; receivers that gave up after a minute
	// of them; frames dropped as already seen (a replay of what had
	// arrived); positions that were not the next of their stream; gap frames.
	Resume            bool `json:"resume,omitempty"`
	Drops             int  `json:"drops,omitempty"`
	Reconnects        int  `json:"reconnects,omitempty"`
	Resumes           int  `json:"resumes,omitempty"`
	RecoveredTrue     int  `json:"recovered_true,omitempty"`
	RecoveredFalse    int  `json:"recovered_false"`
	RedialErrors      int  `json:"redial_errors,omitempty"`
	ResumeFailures    int  `json:"resume_failures,omitempty"`
	DuplicatesDropped int  `json:"duplicates_dropped,omitempty"`
	StreamGaps        int  `json:"stream_gaps"`
	GapFrames         int  `json:"gap_frames"`

	Requests int     `json:"requests,omitempty"`
	RPS      float64 `json:"requests_per_second,omitempty"`

	PresenceFrames int     `json:"presence_frames,omitempty"` // join/leave/presence frames received by all clients
	StalledClosed  int     `json:"stalled_closed_1008,omitempty"`
	DisconnectSec  float64 `json:"disconnect_seconds,omitempty"`

	ServerRSSBeforeMB float64 `json:"server_rss_before_mb,omitempty"`
	ServerRSSAfterMB  float64 `json:"server_rss_after_mb,omitempty"`
	ServerRSSPeakMB   float64 `json:"server_rss_peak_mb,omitempty"`
	KBPerConn         float64 `json:"server_kb_per_conn,omitempty"`
	ServerCPUPercent  float64 `json:"server_cpu_percent,omitempty"` // of one core, during the measured phase
	FramesPerWrite    float64 `json:"frames_per_socket_write,omitempty"`
	BenchCPUPercent   float64 `json:"bench_cpu_percent,omitempty"` // the load generator's own, of one core

	// Series is the run second by second, with -html (its charts).
	Series []Sample `json:"series,omitempty"`
}

// Print writes the report as a table.
func (rep *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("scenario", rep.Scenario+" "+rep.URL)
	if rep.Conns > 0 {
		row("connections", rep.Conns)
	}
	if rep.ConnectSeconds > 0 {
		row("connect time", fmt.Sprintf("%.1f s", rep.ConnectSeconds))
	}
	if rep.HandshakeMaxMs > 0 {
		row("handshake (dial → welcome) p50 / p99 / max", fmt.Sprintf("%.2f / %.1f / %.1f ms", rep.HandshakeP50Ms, rep.HandshakeP99Ms, rep.HandshakeMaxMs))
	}
	if len(rep.Nodes) > 1 {
		names := make([]string, 0, len(rep.Nodes))
		for n := range rep.Nodes {
			names = append(names, n)
		}
		sort.Strings(names)
		var per []string
		for _, n := range names {
			per = append(per, fmt.Sprintf("%s %d", n, rep.Nodes[n]))
		}
		row("connections per node", fmt.Sprintf("%s (spread ±%.1f %%)", strings.Join(per, ", "), rep.SpreadPercent))
	}
	if rep.Requests > 0 {
		row("requests", rep.Requests)
		row("requests/s", fmt.Sprintf("%.0f", rep.RPS))
	}
	if rep.Published > 0 {
		row("published", fmt.Sprintf("%d (%d late, %d refused)", rep.Published, rep.PublishLate, rep.PublishErrors))
		if rep.PublishLanded+rep.PublishUncertain > 0 {
			row("publishes failed but in history / unknown", fmt.Sprintf("%d / %d", rep.PublishLanded, rep.PublishUncertain))
		}
		if rep.PublishP99Ms > 0 {
			row("publish accepted in p99 / max", fmt.Sprintf("%.1f / %.1f ms", rep.PublishP99Ms, rep.PublishMaxMs))
		}
	}
	if rep.Expected > 0 {
		row("delivered", fmt.Sprintf("%d of %d", rep.Delivered, rep.Expected))
		row("lost / duplicated / reordered", fmt.Sprintf("%d / %d / %d", rep.Lost, rep.Duplicated, rep.Reordered))
		row("deliveries/s", fmt.Sprintf("%.0f", rep.DeliveriesPerS))
	}
	if rep.P50Ms > 0 || rep.P99Ms > 0 {
		row("latency p50 / p99 / max", fmt.Sprintf("%.1f / %.1f / %.1f ms", rep.P50Ms, rep.P99Ms, rep.MaxMs))
	}
	if rep.Resume {
		row("connections cut by the load generator", rep.Drops)
		row("reconnections; resumes (recovered true / false)", fmt.Sprintf("%d; %d (%d / %d)", rep.Reconnects, rep.Resumes, rep.RecoveredTrue, rep.RecoveredFalse))
		row("redial errors / gave up", fmt.Sprintf("%d / %d", rep.RedialErrors, rep.ResumeFailures))
		row("replayed frames already seen (dropped)", rep.DuplicatesDropped)
		row("stream gaps / gap frames", fmt.Sprintf("%d / %d", rep.StreamGaps, rep.GapFrames))
	}
	row("error frames", rep.ErrorFrames)
	if rep.Problem != "" {
		row("first problem", rep.Problem)
	}
	if rep.PresenceFrames > 0 {
		row("presence frames received", rep.PresenceFrames)
	}
	if rep.StalledClosed > 0 {
		row("stalled clients closed (1008)", rep.StalledClosed)
	}
	if rep.DisconnectSec > 0 {
		row("disconnect all", fmt.Sprintf("%.1f s", rep.DisconnectSec))
	}
	if rep.ServerRSSAfterMB > 0 {
		row("server RSS before / after / peak", fmt.Sprintf("%.1f / %.1f / %.1f MB", rep.ServerRSSBeforeMB, rep.ServerRSSAfterMB, rep.ServerRSSPeakMB))
	}
	if rep.KBPerConn > 0 {
		row("server memory per connection", fmt.Sprintf("%.1f KB", rep.KBPerConn))
	}
	if rep.ServerCPUPercent > 0 {
		row("server CPU", fmt.Sprintf("%.1f %% of a core", rep.ServerCPUPercent))
	}
	if rep.BenchCPUPercent > 0 {
		row("load generator CPU", fmt.Sprintf("%.1f %% of a core", rep.BenchCPUPercent))
	}
	if rep.FramesPerWrite > 0 {
		row("frames per socket write", fmt.Sprintf("%.2f", rep.FramesPerWrite))
	}
	tw.Flush()
}

// JSON writes the report as one JSON object.
func (rep *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func (r *runner) fillLatency(rep *Report) {
	q := r.hist.quantiles(0.5, 0.99, 1)
	rep.P50Ms, rep.P99Ms, rep.MaxMs = ms(q[0]), ms(q[1]), ms(q[2])
	rep.ErrorFrames = int(r.errors.Load())
	r.mu.Lock()
	rep.Problem = r.problem
	r.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Sample is one second of a run.
type Sample struct {
	Second           float64 `json:"t"`
	Conns            int     `json:"conns"`
	DeliveriesPerS   int64   `json:"deliveries_per_second"`
	P50Ms            float64 `json:"p50_ms"`
	P99Ms            float64 `json:"p99_ms"`
	ServerRSSMB      float64 `json:"server_rss_mb,omitempty"`
	ServerCPUPercent float64 `json:"server_cpu_percent,omitempty"` // of one core; -1 before the second scrape
}

// serverStats is what the load generator reads from the server's /metrics:
// the process collector's memory and CPU, and relay's write counters. It
// works across the network and into containers (one node's view).
type serverStats struct {
	rss, cpuSeconds, socketWrites, framesWritten, connections float64
	at                                                        time.Time
}

func (r *runner) scrape(ctx context.Context) (serverStats, error) {
	var sum serverStats
	for _, u := range r.o.Metrics {
		s, err := scrapeOne(ctx, u)
		if err != nil {
			return sum, err
		}
		sum.rss += s.rss
		sum.cpuSeconds += s.cpuSeconds
		sum.socketWrites += s.socketWrites
		sum.framesWritten += s.framesWritten
		sum.connections += s.connections
	}
	sum.at = time.Now()
	return sum, nil
}

// scrapeOne reads one node's /metrics.
func scrapeOne(ctx context.Context, base string) (serverStats, error) {
	s := serverStats{at: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("read server metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			s.rss = v
		case "process_cpu_seconds_total":
			s.cpuSeconds = v
		case "relay_socket_writes_total":
			s.socketWrites = v
		case "relay_frames_written_total":
			s.framesWritten = v
		case "relay_connections":
			s.connections = v
		}
	}
	return s, sc.Err()
}

// countNodes fills in how the connections spread over the nodes that
// welcomed them.
func (rep *Report) countNodes(conns []*conn) {
	rep.Nodes = map[string]int{}
	for _, c := range conns {
		if c == nil {
			continue
		}
		if n := c.nodeName(); n != "" {
			rep.Nodes[n]++
		}
	}
	if len(rep.Nodes) == 0 {
		rep.Nodes = nil
		return
	}
	total := 0
	for _, n := range rep.Nodes {
		total += n
	}
	mean := float64(total) / float64(len(rep.Nodes))
	for _, n := range rep.Nodes {
		rep.SpreadPercent = max(rep.SpreadPercent, 100*math.Abs(float64(n)-mean)/mean)
	}
}

// between fills the report's server figures from two scrapes.
func between(rep *Report, a, b serverStats) {
	rep.ServerRSSBeforeMB, rep.ServerRSSAfterMB = a.rss/1e6, b.rss/1e6
	rep.ServerRSSPeakMB = max(rep.ServerRSSPeakMB, b.rss/1e6)
	if el := b.at.Sub(a.at).Seconds(); el > 0 {
		rep.ServerCPUPercent = 100 * (b.cpuSeconds - a.cpuSeconds) / el
	}
	if w := b.socketWrites - a.socketWrites; w > 0 {
		rep.FramesPerWrite = (b.framesWritten - a.framesWritten) / w
	}
}
