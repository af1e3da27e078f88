package wsconn_test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/wsconn"
)

// writeLog records, in order, which socket each write went to.
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

func (l *writeLog) add(name string) {
	l.mu.Lock()
	l.writes = append(l.writes, name)
	l.mu.Unlock()
}

func (l *writeLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes = nil
	return w
}

func (l *writeLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.writes)
}

// fakeSocket is a socket that takes every write at once and logs it; its
// next write can be held, to catch the writer in the middle of a pass.
type fakeSocket struct {
	net.Conn // nil: the pool calls only what is below
	name     string
	log      *writeLog

	mu   sync.Mutex
	hold chan struct{} // the next write waits for it to close
	held chan struct{} // closed once that write is waiting
}

func (s *fakeSocket) Write(b []byte) (int, error) {
	s.mu.Lock()
	hold, held := s.hold, s.held
	s.hold, s.held = nil, nil
	s.mu.Unlock()
	if hold != nil {
		close(held)
		<-hold
	}
	s.log.add(s.name)
	return len(b), nil
}

// holdNext makes the next write wait until release is closed; the returned
// channel is closed once it waits.
func (s *fakeSocket) holdNext(release chan struct{}) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.held = release, make(chan struct{})
	return s.held
}

func (s *fakeSocket) Close() error                     { return nil }
func (s *fakeSocket) SetWriteDeadline(time.Time) error { return nil }

// A new connection's first frame (its welcome) is not queued behind a large
// write pass: a frame for each of 1,000 connections (a presence event to a
// lobby) is being written when a client connects, and its welcome goes out
// right after the write in progress, not after the other 999.
func TestFirstFrameIsNotQueuedBehindAPass(t *testing.T) {
	t.Parallel()
	pool := wsconn.NewPool(wsconn.Options{Shards: 1, PingInterval: time.Minute, PongTimeout: time.Minute})
	t.Cleanup(pool.Close)
	log := &writeLog{}
	const n = 1000
	sockets := make([]*fakeSocket, n)
	conns := make([]*wsconn.Conn, n)
	for i := range n {
		sockets[i] = &fakeSocket{name: fmt.Sprintf("member-%d", i), log: log}
		conns[i] = pool.NewConn(sockets[i])
		conns[i].Send(frame(`{"event":"welcome"}`))
	}
	eventually(t, 5*time.Second, func() bool { return log.len() == n }, "the members' welcomes were not written")
	log.take()

	// Hold the writer on member-0, then queue the event for the others: one
	// pass of 999 once member-0 is done.
	release0 := make(chan struct{})
	held0 := sockets[0].holdNext(release0)
	conns[0].Send(frame(`{"event":"presence"}`))
	<-held0
	for _, c := range conns[1:] {
		c.Send(frame(`{"event":"presence"}`))
	}
	// Start that pass and hold it at its first write.
	release1 := make(chan struct{})
	held1 := sockets[1].holdNext(release1)
	close(release0)
	<-held1

	// A client connects in the middle of the pass.
	newcomer := &fakeSocket{name: "newcomer", log: log}
	pool.NewConn(newcomer).Send(frame(`{"event":"welcome"}`))
	close(release1)
	eventually(t, 5*time.Second, func() bool { return log.len() == n+1 }, "not every frame was written")
	writes := log.take()
	at := -1
	for i, w := range writes {
		if w == "newcomer" {
			at = i
		}
	}
	// member-0, member-1 (in progress when it connected), then the newcomer.
	if at != 2 {
		t.Fatalf("the newcomer's welcome was write %d of %d, want 2 (right after the write in progress): %v ...",
			at, len(writes), writes[:min(5, len(writes))])
	}
}

// frame is a WebSocket text frame carrying payload.
func frame(payload string) []byte {
	return append([]byte{0x81, byte(len(payload))}, payload...)
}

// Many clients connecting at once while passes run: every welcome and
// every member's frame is written exactly once.
func TestManyNewcomersDuringPasses(t *testing.T) {
	t.Parallel()
	pool := wsconn.NewPool(wsconn.Options{Shards: 1, PingInterval: time.Minute, PongTimeout: time.Minute})
	t.Cleanup(pool.Close)
	log := &writeLog{}
	const members, newcomers, rounds = 500, 400, 5
	conns := make([]*wsconn.Conn, members)
	for i := range members {
		conns[i] = pool.NewConn(&fakeSocket{name: fmt.Sprintf("member-%d", i), log: log})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range rounds {
			for _, c := range conns {
				c.Send(frame(`{"event":"presence"}`))
			}
			time.Sleep(time.Millisecond) // a pass and its pause
		}
	})
	for i := range newcomers {
		wg.Go(func() {
			pool.NewConn(&fakeSocket{name: fmt.Sprintf("newcomer-%d", i), log: log}).Send(frame(`{"event":"welcome"}`))
		})
	}
	wg.Wait()
	// A member's frames queued together go out in one write: count the
	// newcomers' writes, and that every member was written.
	eventually(t, 5*time.Second, func() bool {
		seen := map[string]int{}
		log.mu.Lock()
		for _, w := range log.writes {
			seen[w]++
		}
		log.mu.Unlock()
		for i := range newcomers {
			if seen[fmt.Sprintf("newcomer-%d", i)] != 1 {
				return false
			}
		}
		for i := range members {
			if seen[fmt.Sprintf("member-%d", i)] == 0 {
				return false
			}
		}
		return true
	}, "not every newcomer's welcome was written once, or a member was never written")
}
