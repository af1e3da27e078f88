package wsconn

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/relay/relay/internal/protocol"
)

// pingFrame is an empty WebSocket ping; clients answer with a pong, which
// shows up as bytes read.
var pingFrame = []byte{0x89, 0x00}

const (
	opClose = 0x8
	opPong  = 0xA
)

// slowCloseGrace is how long a connection closed for being too slow gets to
// take its close frame before the socket is cut: it is not waited on.
const slowCloseGrace = 250 * time.Millisecond

// Conn is one client connection as the rest of relay sees it: Send queues a
// frame, CloseWith closes politely, Abort cuts it. To coder/websocket it is
// the hijacked net.Conn: the library's own writes (pong, close) land in the
// same queue as relay's frames, so exactly one goroutine writes to the
// socket at any time and frames never interleave.
//
// All methods are safe for concurrent use.
type Conn struct {
	raw   net.Conn
	pool  *Pool
	shard *shard

	lastRead atomic.Int64 // pool.now() of the last successful read

	// Owned by the shard's heartbeat, which alone reads and writes them.
	pingSentAt, nextPingAt int64

	mu          sync.Mutex
	queue       net.Buffers // frames waiting for the writer
	spare       net.Buffers // the previous write's slice, reused
	inflight    net.Buffers // the frames being written; only the writer touches it
	queued      int         // bytes in queue and inflight
	scheduled   bool        // in a shard's ready or urgent list, or being written
	written     bool        // a write has started: the shard no longer puts it first
	closeQueued bool        // a close frame is queued: no more data frames
	closeReq    bool        // close the socket once the queue is written
	closed      bool
	forceClose  *time.Timer

	// The rate limit (limit.go); made at the first frame the client sends.
	limiter   *rate.Limiter
	overSince time.Time // start of the current run of refused frames
	overLast  time.Time // the last refused frame
}

func (p *Pool) newConn(raw net.Conn) *Conn {
	s := p.shards[p.next.Add(1)%uint32(len(p.shards))]
	c := &Conn{raw: raw, pool: p, shard: s}
	now := p.now()
	c.lastRead.Store(now)
	c.nextPingAt = now + int64(p.opts.PingInterval)
	s.add(c)
	return c
}

// Send queues a frame (a complete WebSocket frame, shared and never modified)
// for the client. It never blocks. It reports false when the frame was not
// queued: the connection is closing, or the frame would take the queue past
// its limit, in which case the client is closed with 1008.
func (c *Conn) Send(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeQueued || c.closed {
		return false
	}
	if c.queued+len(frame) > c.pool.opts.QueueBytes {
		c.closeSlowLocked()
		return false
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.scheduleLocked()
	return true
}

// CloseWith queues a close frame after everything already queued and closes
// the socket once the client answers it, or after grace at the latest.
func (c *Conn) CloseWith(status uint16, reason string, grace time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeQueued || c.closed {
		return
	}
	c.queueCloseLocked(status, reason)
	c.armForceCloseLocked(grace)
}

// Abort closes the socket now, dropping whatever is queued.
func (c *Conn) Abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abortLocked()
}

func (c *Conn) sendControl(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeQueued || c.closed {
		return
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.scheduleLocked()
}

// closeSlowLocked drops what is queued, since a client this far behind will
// not read it, and sends 1008 without waiting on the client. c.mu must be held.
func (c *Conn) closeSlowLocked() {
	for _, f := range c.queue {
		c.queued -= len(f)
	}
	clear(c.queue)
	c.queue = c.queue[:0]
	c.queueCloseLocked(protocol.CloseTooSlow.Status, protocol.CloseTooSlow.Reason)
	c.closeReq = true
	c.armForceCloseLocked(slowCloseGrace)
	c.pool.opts.Observer.SlowClosed()
}

// queueCloseLocked queues a close frame. c.mu must be held.
func (c *Conn) queueCloseLocked(status uint16, reason string) {
	f := make([]byte, 4, 4+len(reason))
	f[0] = 0x80 | opClose
	f[1] = byte(2 + len(reason))
	binary.BigEndian.PutUint16(f[2:], status)
	f = append(f, reason...)
	c.closeQueued = true
	c.queue = append(c.queue, f)
	c.queued += len(f)
	c.scheduleLocked()
}

func (c *Conn) armForceCloseLocked(d time.Duration) {
	if c.forceClose != nil {
		return
	}
	c.forceClose = time.AfterFunc(d, c.Abort)
}

// scheduleLocked puts c on its shard's ready list unless it is already there
// or being written. c.mu must be held.
func (c *Conn) scheduleLocked() {
	if c.scheduled || c.closed {
		return
	}
	c.scheduled = true
	c.shard.push(c)
}

// lingerTimeout bounds how long a closed connection's unread input is
// drained (see closeSocketLocked).
const lingerTimeout = time.Second

// closeSocketLocked closes the socket once. c.mu must be held.
//
// After a close frame it closes like nginx's lingering_close: shut the
// write side, then read and discard what the client still sends for up to
// lingerTimeout. Closing a socket with unread input makes the kernel send
// a reset, which can destroy the close frame before the client reads it:
// a client whose too-big frame was cut off would see 1006, not 1009.
func (c *Conn) closeSocketLocked() { c.closeSocketLockedLinger(true) }

// abortLocked closes the socket at once, without lingering. c.mu must be
// held.
func (c *Conn) abortLocked() { c.closeSocketLockedLinger(false) }

func (c *Conn) closeSocketLockedLinger(linger bool) {
	if c.closed {
		return
	}
	c.closed = true
	if tcp, ok := c.raw.(*net.TCPConn); ok && linger && c.closeReq && c.closeQueued {
		_ = tcp.CloseWrite()
		c.pool.wg.Add(1)
		go c.linger(tcp) // joined by Pool.Close
	} else {
		_ = c.raw.Close()
	}
	if c.forceClose != nil {
		c.forceClose.Stop()
	}
	clear(c.queue)
	c.queue = nil
	c.shard.remove(c)
}

// linger drains the client's last input, then closes the socket.
func (c *Conn) linger(tcp *net.TCPConn) {
	defer c.pool.wg.Done()
	defer tcp.Close()
	_ = tcp.SetReadDeadline(time.Now().Add(lingerTimeout))
	var buf [512]byte
	for {
		if _, err := tcp.Read(buf[:]); err != nil {
			return
		}
	}
}

// flush is one shard's turn at c: write everything queued in one writev.
// Runs on the shard goroutine.
func (c *Conn) flush(s *shard) {
	c.mu.Lock()
	if c.closed || len(c.queue) == 0 {
		c.scheduled = false
		if c.closeReq {
			c.closeSocketLocked()
		}
		c.mu.Unlock()
		return
	}
	c.inflight, c.queue, c.spare = c.queue, c.spare[:0], nil
	c.written = true
	c.mu.Unlock()

	batch := c.inflight // keeps the backing array; WriteTo consumes inflight
	frames := len(batch)
	_ = c.raw.SetWriteDeadline(time.Now().Add(c.pool.opts.ShardStall))
	n, err := c.inflight.WriteTo(c.raw)
	c.pool.opts.Observer.SocketWrite(frames)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued -= int(n)
	switch {
	case err == nil:
		clear(batch)
		c.spare = batch[:0]
	case errors.Is(err, os.ErrDeadlineExceeded) && !c.closed:
		// The client's socket buffer is full. Give the connection a
		// goroutine of its own so that this shard moves on; it stays
		// scheduled until that goroutine has drained it.
		c.pool.wg.Add(1)
		go c.drainCongested()
		return
	default:
		c.abortLocked() // the socket failed: nothing to linger for
		return
	}
	if len(c.queue) > 0 {
		s.push(c)
		return
	}
	c.scheduled = false
	if c.closeReq {
		c.closeSocketLocked()
	}
}

// drainCongested writes to a client that could not take a shard's write in
// time, blocking up to WriteTimeout per write, until its queue is empty.
// Meanwhile Send keeps queueing, and closes the client if the queue fills.
func (c *Conn) drainCongested() {
	defer c.pool.wg.Done()
	for {
		_ = c.raw.SetWriteDeadline(time.Now().Add(c.pool.opts.WriteTimeout))
		n, err := c.inflight.WriteTo(c.raw)

		c.mu.Lock()
		c.queued -= int(n)
		if err != nil || c.closed {
			c.abortLocked()
			c.mu.Unlock()
			return
		}
		if len(c.queue) == 0 {
			c.scheduled = false
			if c.closeReq {
				c.closeSocketLocked()
			}
			c.mu.Unlock()
			return
		}
		c.inflight, c.queue = c.queue, nil
		c.mu.Unlock()
	}
}

// Read reads from the socket, noting the time for the heartbeat.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.raw.Read(b)
	if n > 0 {
		c.lastRead.Store(c.pool.now())
	}
	return n, err
}

// Write is how coder/websocket's own frames (pong, close) reach the socket:
// its buffered writer flushes one whole control frame per call, so the
// first byte of b is the frame's opcode header (TestLibraryContract checks
// both against the pinned version). They are
// queued like any frame, within the same limits: a pong answers a client's
// ping only within its rate limit, and pongs a client does not read fill
// its queue and get it closed as too slow, like any other frame. Once relay
// has queued a close frame, the library's further frames (its echo of the
// client's close) are dropped.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.closeQueued {
		return len(b), nil
	}
	switch b[0] & 0x0f {
	case opClose:
		c.closeQueued = true
	case opPong:
		if !c.allowLocked(time.Now()) {
			return len(b), nil // the ping was over the limit: unanswered
		}
		if c.queued+len(b) > c.pool.opts.QueueBytes {
			c.closeSlowLocked()
			return len(b), nil
		}
	}
	c.queue = append(c.queue, append([]byte(nil), b...))
	c.queued += len(b)
	c.scheduleLocked()
	return len(b), nil
}

// Close is called by coder/websocket when it is done with the connection. The
// socket closes once what is queued (the close frame among it) is written.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closeReq = true
	if !c.scheduled {
		c.closeSocketLocked()
		return nil
	}
	c.armForceCloseLocked(c.pool.opts.WriteTimeout)
	return nil
}

func (c *Conn) LocalAddr() net.Addr               { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr              { return c.raw.RemoteAddr() }
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetDeadline sets the read deadline only; see SetWriteDeadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline does nothing, on purpose. Write never blocks (it
// queues), and the socket's write deadline belongs to the shard or drain
// goroutine writing the queue (ShardStall, WriteTimeout), which sets it
// before every write: a deadline from the library would be overwritten or
// would cut relay's own frames. coder/websocket (v1.8.15) never calls it:
// its write timeouts are a context that closes the connection.
// TestLibraryContract fails if a new version starts to.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*Conn)(nil)
