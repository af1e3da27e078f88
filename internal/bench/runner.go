package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runner holds one run's connections and counters.
type runner struct {
	o     Options
	out   io.Writer
	wsURL string

	hist       *histogram
	handshakes *histogram  // each connection's first dial to its welcome
	series     []Sample    // a second each, written by progress alone
	lastScrape serverStats // progress's previous scrape, for CPU
	deliveries atomic.Int64
	errors     atomic.Int64
	sent       atomic.Int64
	readers    sync.WaitGroup // reader goroutines

	// life ends when the run closes its connections: reconnections stop.
	life context.Context
	end  context.CancelFunc

	// With -resume: connections cut by the load generator, reconnections,
	// welcomes that answered a resume (recovered or not), failed redials, receivers that
	// gave up, frames dropped as already seen, positions that were not the
	// next of their stream, gap frames.
	drops, reconnects, recovered, notRecovered, redialErrors atomic.Int64
	resumeFailures                                           atomic.Int64
	dupsDropped, streamGaps, gapFrames                       atomic.Int64
	reconnecting                                             atomic.Int64 // receivers between one connection and the next

	mu       sync.Mutex
	conns    []*conn
	problem  string // the first error frame, gap or unrecovered resume
	problems int
}

// noteError keeps the first of what went wrong, for the report.
func (r *runner) noteError(what string) {
	r.mu.Lock()
	if r.problems == 0 {
		r.problem = what
	}
	r.problems++
	r.mu.Unlock()
}

// Run executes the scenario in o and returns its report. Progress lines go
// to out every second unless o.Quiet.
func Run(ctx context.Context, o Options, out io.Writer) (*Report, error) {
	r := &runner{o: o, out: out, hist: newHistogram(), handshakes: newHistogram()}
	r.life, r.end = context.WithCancel(context.Background())
	defer r.end()
	r.wsURL = "ws" + strings.TrimPrefix(o.URL, "http") + "/ws"
	need := o.Conns + o.Stall + 64
	if o.Scenario == "http" {
		need = o.Workers + 64
	}
	raiseOpenFiles(need, out)

	var rep *Report
	var err error
	switch o.Scenario {
	case "idle":
		rep, err = r.idle(ctx)
	case "fanout":
		rep, err = r.fanout(ctx)
	case "chat":
		rep, err = r.chat(ctx)
	default:
		rep, err = r.http(ctx)
	}
	if rep != nil && r.handshakes.count() > 0 {
		q := r.handshakes.quantiles(0.5, 0.99, 1)
		rep.HandshakeP50Ms, rep.HandshakeP99Ms, rep.HandshakeMaxMs = ms(q[0]), ms(q[1]), ms(q[2])
	}
	if rep != nil && o.HTML != "" {
		rep.Series = r.series
	}
	return rep, err
}

// raiseOpenFiles lifts the soft open-files limit to what the run needs, up
// to the hard limit, and says so when the hard limit is too low.
func raiseOpenFiles(need int, out io.Writer) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur >= uint64(need) {
		return
	}
	want := min(uint64(need), lim.Max)
	old := lim.Cur
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		fmt.Fprintf(out, "bench: raised the open-files limit from %d to %d\n", old, want)
	}
	if lim.Max < uint64(need) {
		fmt.Fprintf(out, "bench: warning: the open-files hard limit is %d, below the %d this run needs; raise it (ulimit -n) or expect dial errors\n", lim.Max, need)
	}
}

// connect opens n connections at the ramp rate, assigning rooms round
// robin from the given first id, and returns them in id order.
func (r *runner) connect(ctx context.Context, first, n int, read bool) ([]*conn, error) {
	out := make([]*conn, n)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	tick := time.NewTicker(time.Second / time.Duration(r.o.Ramp))
	defer tick.Stop()
	sem := make(chan struct{}, 256) // dials in flight
	for i := range n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		errMu.Lock()
		failed := firstErr != nil
		errMu.Unlock()
		if failed {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := first + i
			c, err := r.dial(ctx, id, r.roomOf(id), read)
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				return
			}
			out[i] = c
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	return out, firstErr
}

// roomOf is the room connection id joins. Idle connections stay in lobby,
// as a client that only listens does, unless told to spread over rooms.
func (r *runner) roomOf(id int) string {
	if r.o.Scenario == "idle" && r.o.Rooms == 1 {
		return "lobby"
	}
	return r.o.room(id % r.o.Rooms)
}

// closeAll closes every connection for good and waits for the readers.
func (r *runner) closeAll() {
	r.end()
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	r.readers.Wait()
}

// progress prints a line every second until stop is closed.
func (r *runner) progress(stop <-chan struct{}, done chan<- struct{}, open func() int) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	last := r.deliveries.Load()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		d := r.deliveries.Load()
		q := r.hist.quantiles(0.5, 0.99)
		r.sample(time.Since(start), open(), d-last)
		if !r.o.Quiet {
			resumes := ""
			if r.o.Resume {
				resumes = fmt.Sprintf(" resumes=%d/%d", r.recovered.Load(), r.recovered.Load()+r.notRecovered.Load())
			}
			fmt.Fprintf(r.out, "t=%3.0fs conns=%d deliveries/s=%d p50=%v p99=%v errors=%d%s\n",
				time.Since(start).Seconds(), open(), d-last, q[0], q[1], r.errors.Load(), resumes)
		}
		last = d
	}
}

// sample records one second of the run for the report's charts: its
// deliveries and latency, and, with -html, the server's memory and CPU.
func (r *runner) sample(at time.Duration, conns int, deliveries int64) {
	q := r.hist.window(0.5, 0.99)
	s := Sample{Second: at.Seconds(), Conns: conns, DeliveriesPerS: deliveries,
		P50Ms: ms(q[0]), P99Ms: ms(q[1])}
	if r.o.HTML != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		if st, err := r.scrape(ctx); err == nil {
			s.ServerRSSMB = st.rss / 1e6
			if r.lastScrape.at.IsZero() {
				s.ServerCPUPercent = -1
			} else if dt := st.at.Sub(r.lastScrape.at).Seconds(); dt > 0 {
				s.ServerCPUPercent = (st.cpuSeconds - r.lastScrape.cpuSeconds) / dt * 100
			}
			r.lastScrape = st
		}
		cancel()
	}
	r.series = append(r.series, s)
}

// startProgress runs progress in the background; the returned func stops
// it and waits for it.
func (r *runner) startProgress(open func() int) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go r.progress(stop, done, open)
	return func() { close(stop); <-done }
}

func (r *runner) openConns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}
