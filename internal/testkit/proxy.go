package testkit

import (
	"errors"
	"io"
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
	conns   map[*proxyConn]struct{}
	wg      sync.WaitGroup
	stopped bool
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
		go p.pipe(pc, s, c)
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

// Heal lets data through again, what was held first.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdNew, p.delay = false, 0
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
