// Package wsconn owns the write side of every WebSocket connection on a node.
//
// coder/websocket performs the handshake and reads frames; relay hands it a
// net.Conn of its own (see Upgrade) so that every byte written to a client
// goes through one bounded queue per connection. A few writer shards drain
// those queues, each write carrying every frame queued since the last one in
// a single writev, so a broadcast to 10,000 clients costs one syscall per
// client however many messages are waiting, and an idle connection carries no
// writer goroutine at all. Frames are shared, pre-encoded bytes: queueing one
// for a receiver copies nothing.
package wsconn

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Observer receives the pool's events, for metrics. Its methods must not
// block.
type Observer interface {
	SocketWrite(frames int) // one batched write carried this many frames
	SlowClosed()            // a connection was closed for exceeding its queue
	PingTimeout()           // a connection was dropped for not answering pings
}

// Options configure a Pool. Zero values get the defaults noted.
type Options struct {
	Shards       int           // writer goroutines; default 2
	QueueBytes   int           // bytes queued for one client before it counts as slow; default 1 MiB
	PingInterval time.Duration // how often each connection is pinged; default 30s
	PongTimeout  time.Duration // how long a ping may go unanswered; default 10s
	// ShardStall is how long a shard waits on one full socket before handing
	// that connection to a goroutine of its own, so that one slow reader
	// never delays the others. Default 5ms.
	ShardStall time.Duration
	// WriteTimeout bounds a write to a congested socket; past it the
	// connection is closed. Default PongTimeout.
	WriteTimeout time.Duration
	// RateLimit is the client frames per second a connection may send,
	// data and control frames alike, with bursts of twice that; 0 = no
	// limit. Past it a frame is dropped (a ping goes unanswered); a client
	// over it for SustainedLimit in a row is closed with 1008.
	RateLimit      float64
	SustainedLimit time.Duration
	Observer       Observer
}

// Pool is the set of writer shards. Create one per server with NewPool and
// stop it with Close after every connection has been closed.
type Pool struct {
	opts   Options
	epoch  time.Time
	shards []*shard
	next   atomic.Uint32

	quit      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // shard loops and congested-connection drains
}

// NewPool starts the writer shards.
func NewPool(opts Options) *Pool {
	if opts.Shards <= 0 {
		opts.Shards = 2
	}
	if opts.ShardStall <= 0 {
		opts.ShardStall = 5 * time.Millisecond
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.PongTimeout <= 0 {
		opts.PongTimeout = 10 * time.Second
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 1 << 20
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = opts.PongTimeout
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	p := &Pool{opts: opts, epoch: time.Now(), quit: make(chan struct{})}
	tick := min(opts.PingInterval, opts.PongTimeout) / 4
	tick = max(tick, 10*time.Millisecond)
	for range opts.Shards {
		s := &shard{pool: p, wake: make(chan struct{}, 1), urgentWake: make(chan struct{}, 1), conns: make(map[*Conn]struct{})}
		p.shards = append(p.shards, s)
		p.wg.Add(1)
		go s.run(tick)
	}
	return p
}

// Close stops the shards, closing any connection still open. It is
// idempotent and returns once every pool goroutine has exited.
func (p *Pool) Close() {
	p.closeOnce.Do(func() {
		close(p.quit)
		for _, s := range p.shards {
			for _, c := range s.snapshot() {
				c.Abort()
			}
		}
	})
	p.wg.Wait()
}

// now is a monotonic clock in nanoseconds, cheap to store atomically.
func (p *Pool) now() int64 { return int64(time.Since(p.epoch)) }

// shard drains the queues of the connections assigned to it and pings them.
//
// A connection that has never been written to (its welcome is queued: a
// client waiting on its handshake) goes on the urgent list instead of the
// ready list, and the shard writes the urgent list first: at the start of a
// pass, after each connection within a pass, and during the pause after a
// busy one. So a client that connects while the shard writes a presence
// event to 10,000 lobby members waits for one write, not for all of them.
type shard struct {
	pool       *Pool
	wake       chan struct{}
	urgentWake chan struct{} // an urgent connection was pushed: ends a pause's wait
	hasUrgent  atomic.Bool   // urgent is not empty; read by a pass after each connection

	mu          sync.Mutex // guards ready, spare, urgent, spareUrgent and conns; taken after a Conn's mu, never before
	ready       []*Conn
	spare       []*Conn
	urgent      []*Conn // connections never written yet, for the next write
	spareUrgent []*Conn
	conns       map[*Conn]struct{}

	// Reused by heartbeat, owned by the shard goroutine.
	toPing, dead []*Conn
}

// push schedules c for the next pass, or, if nothing was ever written to
// it, for the shard's next write. c.mu must be held.
func (s *shard) push(c *Conn) {
	urgent := !c.written
	s.mu.Lock()
	if urgent {
		s.urgent = append(s.urgent, c)
		s.hasUrgent.Store(true)
	} else {
		s.ready = append(s.ready, c)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if urgent {
		select {
		case s.urgentWake <- struct{}{}:
		default:
		}
	}
}

func (s *shard) add(c *Conn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *shard) remove(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *shard) snapshot() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// A pass longer than busyPass means the shard is under load: before the
// next one it pauses half as long as the pass took (at most maxPause), so that
// frames gather and each write carries more of them. Socket writes, not
// frames, are what cost CPU; light traffic (short passes) is written at
// once.
const (
	busyPass  = 2 * time.Millisecond
	maxPause  = 100 * time.Millisecond
	passYield = 128 // connections written between yields
)

func (s *shard) run(tick time.Duration) {
	defer s.pool.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	for {
		select {
		case <-s.wake:
			start := time.Now()
			s.pass()
			if d := time.Since(start); d > busyPass {
				pause.Reset(min(d/2, maxPause))
				if !s.pause(pause) {
					return
				}
			}
		case <-t.C:
			s.heartbeat()
		case <-s.pool.quit:
			return
		}
	}
}

// pause waits for the pause timer, writing urgent connections meanwhile: the
// pause gathers frames for connections already written to, and a welcome
// need not wait for that. It reports false if the pool is closing.
func (s *shard) pause(t *time.Timer) bool {
	for {
		select {
		case <-t.C:
			return true
		case <-s.urgentWake:
			s.flushUrgent()
		case <-s.pool.quit:
			t.Stop()
			return false
		}
	}
}

// flushUrgent writes the connections that have never been written to.
func (s *shard) flushUrgent() {
	s.mu.Lock()
	urgent := s.urgent
	s.hasUrgent.Store(false)
	if len(urgent) == 0 {
		s.mu.Unlock()
		return
	}
	// The spare becomes the list, and is the spare no more: the two must
	// never share an array while urgent is being written.
	s.urgent, s.spareUrgent = s.spareUrgent[:0], nil
	s.mu.Unlock()
	for _, c := range urgent {
		c.flush(s)
	}
	clear(urgent)
	s.mu.Lock()
	s.spareUrgent = urgent[:0]
	s.mu.Unlock()
}

// pass writes out every connection that has something queued, urgent ones
// first and as soon as they come. Connections that get more frames while
// the pass runs are picked up by the next one, which is what lets a busy
// connection's frames share one write.
func (s *shard) pass() {
	s.flushUrgent()
	s.mu.Lock()
	ready := s.ready
	s.ready = s.spare[:0]
	s.mu.Unlock()

	for i, c := range ready {
		c.flush(s)
		if s.hasUrgent.Load() {
			s.flushUrgent()
		}
		if i%passYield == passYield-1 {
			// A long pass is all syscalls; let the rest of the node (a
			// publish waiting for its answer, a client's frame) run.
			runtime.Gosched()
		}
	}

	clear(ready)
	s.mu.Lock()
	s.spare = ready[:0]
	s.mu.Unlock()
}

// heartbeat pings connections that are due and drops those that have not
// answered the last ping within PongTimeout. Any bytes read from a client
// count as an answer: a client busy sending is plainly alive.
func (s *shard) heartbeat() {
	p := s.pool
	now := p.now()
	interval, timeout := int64(p.opts.PingInterval), int64(p.opts.PongTimeout)

	s.toPing, s.dead = s.toPing[:0], s.dead[:0]
	s.mu.Lock()
	for c := range s.conns {
		if c.pingSentAt != 0 {
			if c.lastRead.Load() >= c.pingSentAt {
				c.pingSentAt = 0
			} else if now-c.pingSentAt >= timeout {
				s.dead = append(s.dead, c)
				continue
			}
		}
		if c.pingSentAt == 0 && now >= c.nextPingAt {
			c.pingSentAt = now
			c.nextPingAt = now + interval
			s.toPing = append(s.toPing, c)
		}
	}
	s.mu.Unlock()

	for _, c := range s.toPing {
		c.sendControl(pingFrame)
	}
	for _, c := range s.dead {
		p.opts.Observer.PingTimeout()
		c.Abort()
	}
	clear(s.toPing)
	clear(s.dead)
}

type nopObserver struct{}

func (nopObserver) SocketWrite(int) {}
func (nopObserver) SlowClosed()     {}
func (nopObserver) PingTimeout()    {}
