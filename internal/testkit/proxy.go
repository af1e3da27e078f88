package testkit

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on loopback that a test puts between a node and a
// server (Redis) to break the link on demand: cut it (connections reset),
// blackhole it (connections stay open and carry nothing, as when a peer
// vanishes without a FIN), slow it, and heal it.
type Proxy struct {
	Addr   string // where clients connect: 127.0.0.1:port
	target string
	ln     net.Listener

	mu      sync.Mutex
	holdNew bool // new connections start blackholed
	delay   time.Duration
	// replyLo/replyHi: every chunk from the server reaches the client this
	// long (uniformly drawn) after it left the server; see DelayReplies.
	replyLo, replyHi time.Duration
	conns            map[*proxyConn]struct{}
	wg               sync.WaitGroup
	stopped          bool
}

type proxyConn struct {
	client, server net.Conn
	gate           chan struct{} // closed while data flows; guarded by Proxy.mu
	once           sync.Once
	done           chan struct{} // closed when the pair is dropped
}

// StartProxy proxies to target (host:port) until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[*proxyConn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.stop)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxyConn{client: c, server: s, gate: make(chan struct{}), done: make(chan struct{})}
		p.mu.Lock()
		if !p.holdNew {
			close(pc.gate)
		}
		if p.stopped {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.conns[pc] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(pc, c, s)
		go p.pipeReplies(pc, s, c)
	}
}

// pipe copies src to dst. While the proxy is blackholed it holds what it
// read and reads no more, so the sender's kernel buffers fill as they would
// behind a dead link; on Heal the data flows on, as TCP retransmits it.
func (p *Proxy) pipe(pc *proxyConn, src, dst net.Conn) {
	defer p.wg.Done()
	defer p.drop(pc)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		// Data and the end of the stream alike wait for the gate: a FIN
		// does not cross a dead link either.
		if !p.pass(pc) {
			return
		}
		if n > 0 {
			p.mu.Lock()
			delay := p.delay
			p.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// pipeReplies copies the server's bytes to the client as pipe does, except
// that while DelayReplies is set each chunk is held until its due time
// without holding up the reading of the next ones: replies are late, not
// slower, as behind a server that takes seconds per command but runs many
// at once (a failing disk under a busy shard). Order is kept.
func (p *Proxy) pipeReplies(pc *proxyConn, src, dst net.Conn) {
	type chunk struct {
		data []byte
		due  time.Time
		err  error
	}
	queue := make(chan chunk, 1<<14)
	p.wg.Add(1)
	go func() { // the writer; ends when the reader does or the pair drops
		defer p.wg.Done()
		defer p.drop(pc)
		for {
			var c chunk
			select {
			case c = <-queue:
			case <-pc.done:
				return
			}
			if wait := time.Until(c.due); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-pc.done:
					t.Stop()
					return
				}
			}
			if len(c.data) > 0 {
				if _, err := dst.Write(c.data); err != nil {
					return
				}
			}
			if c.err != nil {
				if errors.Is(c.err, io.EOF) {
					if tc, ok := dst.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
				}
				return
			}
		}
	}()
	defer p.wg.Done()
	var last time.Time
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if !p.pass(pc) {
			return
		}
		p.mu.Lock()
		lo, hi, delay := p.replyLo, p.replyHi, p.delay
		p.mu.Unlock()
		if delay > 0 && n > 0 {
			time.Sleep(delay) // Slow: throughput, as pipe does
		}
		due := time.Now()
		if hi > 0 {
			d := lo
			if hi > lo {
				d += time.Duration(rand.Int64N(int64(hi - lo)))
			}
			due = due.Add(d)
		}
		if due.Before(last) {
			due = last // keep the order: a reply never overtakes an earlier one
		}
		last = due
		select {
		case queue <- chunk{data: buf[:n], due: due, err: err}:
		case <-pc.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// pass waits until pc's gate is open; false if pc was dropped meanwhile.
func (p *Proxy) pass(pc *proxyConn) bool {
	p.mu.Lock()
	gate := pc.gate
	p.mu.Unlock()
	select {
	case <-gate:
		return true
	case <-pc.done:
		return false
	}
}

func (p *Proxy) drop(pc *proxyConn) {
	pc.once.Do(func() { close(pc.done) })
	pc.client.Close()
	pc.server.Close()
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

// Cut resets every open connection; new ones are still accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for pc := range p.conns {
		conns = append(conns, pc)
	}
	p.mu.Unlock()
	for _, pc := range conns {
		if tc, ok := pc.client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as a crashed peer's kernel would send
		}
		p.drop(pc)
	}
}

// Blackhole makes every connection, open and new, carry nothing in either
// direction, without closing it.
func (p *Proxy) Blackhole() { p.hold(true) }

// BlackholeOpen blackholes the connections open now; new ones work. It is
// a peer that silently lost one long-lived connection (a subscription)
// while it still answers new ones.
func (p *Proxy) BlackholeOpen() { p.hold(false) }

func (p *Proxy) hold(newToo bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdNew = newToo
	for pc := range p.conns {
		select {
		case <-pc.gate:
			pc.gate = make(chan struct{})
		default: // already held
		}
	}
}

// Slow delays every chunk of data by d (0: no delay).
func (p *Proxy) Slow(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// DelayReplies holds every reply from the server for between lo and hi
// (uniformly drawn per chunk, order kept) while still reading the next
// ones: latency without a throughput limit, unlike Slow. 0, 0 ends it.
func (p *Proxy) DelayReplies(lo, hi time.Duration) {
	p.mu.Lock()
	p.replyLo, p.replyHi = lo, hi
	p.mu.Unlock()
}

// Heal lets data through again, what was held first.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdNew, p.delay = false, 0
	p.replyLo, p.replyHi = 0, 0
	for pc := range p.conns {
		select {
		case <-pc.gate:
		default:
			close(pc.gate)
		}
	}
}

func (p *Proxy) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
