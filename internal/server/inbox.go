package server

import (
	"sync"
	"time"

	"github.com/relay/relay/internal/protocol"
)

// The bounds of one connection's inbox: the frames it has sent that wait
// for the broker (chat, join, leave, who). A connection past them gets a
// busy error for the frame instead; its reading never stops, so that its
// pongs and pings are seen however slow the broker is.
const (
	inboxFrames = 32
	inboxBytes  = 1 << 20
	// inboxWait is how long the reader waits for room in a full inbox
	// before it answers busy: a short burst rides it out. It waits once
	// per spell of refusals, not once per frame, so that a flood cannot
	// keep it from reading for longer than that (the heartbeat's pong
	// timeout is seconds).
	inboxWait = 250 * time.Millisecond
)

// queued is a decoded frame and its size, as the client sent it.
type queued struct {
	f    protocol.ClientFrame
	size int
}

// inbox is a connection's queue of frames for the broker, served in order
// by one goroutine that exists only while there is work: most connections
// are idle most of the time, and an idle connection costs no goroutine.
// The session owns it: it puts frames in and closes it when the
// connection ends, which waits for the frame in hand.
type inbox struct {
	handle func(protocol.ClientFrame)

	mu      sync.Mutex
	frames  []queued
	bytes   int
	working bool // a server goroutine exists; it takes frames until none are left
	closed  bool
	server  sync.WaitGroup // the server goroutine, for close
	// space is signalled (without blocking) each time the server takes a
	// frame, for a reader waiting in put.
	space chan struct{}
}

func newInbox(handle func(protocol.ClientFrame)) *inbox {
	return &inbox{handle: handle, space: make(chan struct{}, 1)}
}

// put queues f, waiting up to inboxWait for room if wait is set; false if
// there was none. A frame bigger than the byte bound is taken when the
// inbox is empty, so that every frame the read limit allows can be sent.
func (b *inbox) put(f protocol.ClientFrame, size int, wait bool) bool {
	if b.tryPut(f, size) {
		return true
	}
	if !wait {
		return false
	}
	t := time.NewTimer(inboxWait)
	defer t.Stop()
	for {
		select {
		case <-b.space:
			if b.tryPut(f, size) {
				return true
			}
		case <-t.C:
			return b.tryPut(f, size)
		}
	}
}

func (b *inbox) tryPut(f protocol.ClientFrame, size int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	if len(b.frames) > 0 && (len(b.frames) >= inboxFrames || b.bytes+size > inboxBytes) {
		return false
	}
	b.frames = append(b.frames, queued{f: f, size: size})
	b.bytes += size
	if !b.working {
		b.working = true
		b.server.Add(1)
		go b.serve() // owned by the session: close waits for it
	}
	return true
}

// serve handles queued frames in order until none are left or the inbox is
// closed, then ends. The frame being handled stays counted in the bounds
// until it is done, so that "32 frames" means 32 waiting on the broker.
func (b *inbox) serve() {
	defer b.server.Done()
	for {
		b.mu.Lock()
		if len(b.frames) == 0 || b.closed {
			b.working = false
			b.frames, b.bytes = nil, 0 // frees the array of a burst; closed drops the rest
			b.mu.Unlock()
			return
		}
		q := b.frames[0]
		b.mu.Unlock()

		b.handle(q.f)

		b.mu.Lock()
		b.frames[0] = queued{}
		b.frames = b.frames[1:]
		b.bytes -= q.size
		b.mu.Unlock()
		select {
		case b.space <- struct{}{}:
		default: // a wake-up is already pending, or nobody waits
		}
	}
}

// close stops the inbox: frames not yet begun are dropped (the connection
// that sent them is gone, and nobody could read their answers) and close
// returns when the frame in hand is done.
func (b *inbox) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.server.Wait()
}
