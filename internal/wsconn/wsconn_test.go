package wsconn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wsconn"
)

// observer counts the pool's events.
type observer struct {
	writes       atomic.Int64 // SocketWrite calls
	frames       atomic.Int64 // frames carried by those calls
	slow         atomic.Int64
	pingTimeouts atomic.Int64
}

func (o *observer) SocketWrite(frames int) {
	o.writes.Add(1)
	o.frames.Add(int64(frames))
}
func (o *observer) SlowClosed()  { o.slow.Add(1) }
func (o *observer) PingTimeout() { o.pingTimeouts.Add(1) }

// serverConn is the server side of one accepted connection.
type serverConn struct {
	*wsconn.Conn
	done chan struct{} // closed once the server's ws.Read loop has ended
}

// isDone reports whether the server-side read loop has ended.
func (sc serverConn) isDone() bool {
	select {
	case <-sc.done:
		return true
	default:
		return false
	}
}

type fixture struct {
	pool  *wsconn.Pool
	obs   *observer
	srv   *httptest.Server
	url   string
	conns chan serverConn
	reads sync.WaitGroup // server-side read loops
}

// newFixture starts a pool and a WebSocket server on it. Zero durations in
// opts are replaced by a minute, so that tests that are not about the
// heartbeat never see it; QueueBytes defaults to 1 MiB.
func newFixture(t *testing.T, opts wsconn.Options) *fixture {
	t.Helper()
	if opts.PingInterval == 0 {
		opts.PingInterval = time.Minute
	}
	if opts.PongTimeout == 0 {
		opts.PongTimeout = time.Minute
	}
	if opts.QueueBytes == 0 {
		opts.QueueBytes = 1 << 20
	}
	f := &fixture{obs: &observer{}, conns: make(chan serverConn, 16)}
	opts.Observer = f.obs
	f.pool = wsconn.NewPool(opts)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := f.pool.Upgrade(w)
		ws, err := websocket.Accept(up, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		ws.SetReadLimit(-1)
		sc := serverConn{Conn: up.Conn(), done: make(chan struct{})}
		if sc.Conn == nil {
			t.Errorf("Upgrade.Conn() is nil after a successful Accept")
			_ = ws.CloseNow()
			return
		}
		f.reads.Add(1)
		go func() {
			defer f.reads.Done()
			defer close(sc.done)
			for {
				if _, _, err := ws.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		f.conns <- sc
	}))
	f.url = "ws" + strings.TrimPrefix(f.srv.URL, "http")
	t.Cleanup(func() {
		f.srv.Close() // waits for handlers, so no more reads.Add
		f.pool.Close()
		waitGroup(t, &f.reads, 5*time.Second, "server read loops")
	})
	return f
}

// connect dials the fixture and returns the client and the server side.
func (f *fixture) connect(t *testing.T) (*websocket.Conn, serverConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { _ = ws.CloseNow() })
	select {
	case sc := <-f.conns:
		return ws, sc
	case <-time.After(5 * time.Second):
		t.Fatal("server did not hand over the connection")
		return nil, serverConn{}
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
		t.Errorf("%s did not finish within %v", what, d)
	}
}

// eventually polls cond until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	testkit.CheckFor(t, d, 2*time.Millisecond, func() error {
		if !cond() {
			return fmt.Errorf(format, args...)
		}
		return nil
	})
}

// waitDone waits for the server side of sc to close.
func waitDone(t *testing.T, sc serverConn, d time.Duration, what string) {
	t.Helper()
	select {
	case <-sc.done:
	case <-time.After(d):
		t.Fatalf("%s: server side not closed within %v", what, d)
	}
}

func payload(i int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, i)) }

// readN reads n text messages and checks they are payload(first..first+n-1).
func readN(t *testing.T, ws *websocket.Conn, first, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := first; i < first+n; i++ {
		typ, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read message %d: %v", i, err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("message %d: type %v, want text", i, typ)
		}
		if want := payload(i); !bytes.Equal(b, want) {
			t.Fatalf("message %d: got %q, want %q", i, b, want)
		}
	}
}

// reader reads client messages in the background, checking they arrive as
// payload(0), payload(1), ... It must be the only reader of ws.
type reader struct {
	n    atomic.Int64
	done chan struct{}
	err  error // the error that ended the loop; valid after done
	bad  atomic.Pointer[string]
}

func startReader(t *testing.T, ws *websocket.Conn) *reader {
	t.Helper()
	r := &reader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for i := 0; ; i++ {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				r.err = err
				return
			}
			if want := payload(i); !bytes.Equal(b, want) {
				s := fmt.Sprintf("message %d: got %q, want %q", i, b, want)
				r.bad.Store(&s)
			}
			r.n.Add(1)
		}
	}()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("client reader did not stop")
		}
		if s := r.bad.Load(); s != nil {
			t.Error(*s)
		}
	})
	return r
}

func (r *reader) check(t *testing.T) {
	t.Helper()
	if s := r.bad.Load(); s != nil {
		t.Fatal(*s)
	}
}

func (r *reader) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
		t.Fatalf("client read did not end within %v", d)
		return nil
	}
}

func TestSendDeliversInOrder(t *testing.T) {
	f := newFixture(t, wsconn.Options{})
	ws, sc := f.connect(t)

	const n = 1000
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			if !sc.Send(protocol.FrameJSON(payload(i))) {
				sendErr <- fmt.Errorf("Send %d returned false", i)
				return
			}
		}
		sendErr <- nil
	}()
	readN(t, ws, 0, n)
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool { return sc.Queued() == 0 }, "Queued() = %d, want 0", sc.Queued())
	if got := f.obs.frames.Load(); got != n {
		t.Errorf("observer counted %d frames written, want %d", got, n)
	}
}

func TestBatchesFramesQueuedTogether(t *testing.T) {
	f := newFixture(t, wsconn.Options{Shards: 1})
	ws, sc := f.connect(t)

	// Queue every frame before the client reads anything.
	const n = 200
	for i := range n {
		if !sc.Send(protocol.FrameJSON(payload(i))) {
			t.Fatalf("Send %d returned false", i)
		}
	}
	readN(t, ws, 0, n)

	// SocketWrite is reported after the write returns, which can be after
	// the client has read the bytes.
	eventually(t, 2*time.Second, func() bool { return f.obs.frames.Load() == n },
		"observer counted %d frames, want %d", f.obs.frames.Load(), n)
	writes := f.obs.writes.Load()
	if writes < 1 || writes >= n {
		t.Errorf("%d frames took %d writes: want batching (fewer writes than frames)", n, writes)
	}
	t.Logf("%d frames in %d writes", n, writes)
	if q := sc.Queued(); q != 0 {
		t.Errorf("Queued() = %d after everything was read, want 0", q)
	}
}

func TestCloseWithSendsQueuedFramesThenClose(t *testing.T) {
	f := newFixture(t, wsconn.Options{})
	ws, sc := f.connect(t)

	const n = 50
	for i := range n {
		if !sc.Send(protocol.FrameJSON(payload(i))) {
			t.Fatalf("Send %d returned false", i)
		}
	}
	const grace = 10 * time.Second // far longer than the handshake takes
	start := time.Now()
	sc.CloseWith(1012, "service restart", grace)
	if sc.Send(protocol.FrameJSON(payload(n))) {
		t.Error("Send after CloseWith returned true")
	}
	sc.CloseWith(1000, "again", grace) // no-op

	readN(t, ws, 0, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err == nil {
		t.Fatalf("read after the queued frames: got message %q, want close", b)
	}
	if got := websocket.CloseStatus(err); got != 1012 {
		t.Fatalf("close status %d (err %v), want 1012", got, err)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Reason != "service restart" {
		t.Errorf("close error %v, want reason %q", err, "service restart")
	}

	// The client echoed the close, so the server closes without waiting
	// for the grace period.
	waitDone(t, sc, 5*time.Second, "after close handshake")
	if d := time.Since(start); d >= grace {
		t.Errorf("socket closed after %v: the handshake did not end it before the grace period", d)
	}
	if sc.Send(protocol.FrameJSON(payload(0))) {
		t.Error("Send after close returned true")
	}
}

func TestCloseWithGraceCutsClientThatDoesNotAnswer(t *testing.T) {
	f := newFixture(t, wsconn.Options{})
	ws, sc := f.connect(t) // never reads until the socket is cut

	for i := range 3 {
		if !sc.Send(protocol.FrameJSON(payload(i))) {
			t.Fatalf("Send %d returned false", i)
		}
	}
	const grace = 200 * time.Millisecond
	start := time.Now()
	sc.CloseWith(1001, "going away", grace)
	waitDone(t, sc, grace+3*time.Second, "after grace")
	if d := time.Since(start); d < grace {
		t.Errorf("socket closed after %v, before the %v grace period", d, grace)
	}

	// What was written before the cut is still in the client's buffer.
	readN(t, ws, 0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	if got := websocket.CloseStatus(err); got != 1001 {
		t.Errorf("close status %d (err %v), want 1001", got, err)
	}
}

func TestClientInitiatedClose(t *testing.T) {
	f := newFixture(t, wsconn.Options{})
	ws, sc := f.connect(t)

	// The server's echo of the close goes through Conn.Write, then the
	// library's Conn.Close closes the socket once it is written.
	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("client close handshake: %v", err)
	}
	waitDone(t, sc, 5*time.Second, "after client close")
	if sc.Send(protocol.FrameJSON(payload(0))) {
		t.Error("Send after the client closed returned true")
	}
}

func TestSlowClientIsClosed(t *testing.T) {
	const queueBytes = 64 << 10
	f := newFixture(t, wsconn.Options{Shards: 1, QueueBytes: queueBytes})

	// A healthy client on the same shard keeps receiving throughout.
	healthyWS, healthy := f.connect(t)
	hr := startReader(t, healthyWS)
	var sent atomic.Int64
	stop := make(chan struct{})
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if !healthy.Send(protocol.FrameJSON(payload(i))) {
				return // caught below: sent stops short of received
			}
			sent.Add(1)
		}
	}()
	stopSender := sync.OnceFunc(func() { close(stop); <-senderDone })
	t.Cleanup(stopSender)

	_, slow := f.connect(t) // never reads
	big := protocol.FrameJSON(bytes.Repeat([]byte("x"), 32<<10))
	checkBound := func() {
		t.Helper()
		if q := slow.Queued(); q > queueBytes {
			t.Fatalf("Queued() = %d, above QueueBytes %d", q, queueBytes)
		}
	}

	healthyBefore := hr.n.Load()
	accepted := 0
	for range 2000 {
		if !slow.Send(big) {
			break
		}
		accepted++
		checkBound()
		// Let the writer move the frame into the socket, so that the
		// client is closed because its socket is full rather than
		// because of a burst. Once the socket is full the frame stays.
		deadline := time.Now().Add(time.Second)
		for slow.Queued() > 0 && time.Now().Before(deadline) {
			checkBound()
			time.Sleep(100 * time.Microsecond)
		}
	}
	checkBound()
	if accepted == 2000 {
		t.Fatalf("Send accepted 2000 frames of %d bytes to a client that never reads", len(big))
	}
	if accepted*len(big) <= queueBytes {
		t.Errorf("only %d frames accepted before the slow close: the writer made no progress", accepted)
	}
	t.Logf("slow client closed after %d frames (%d KiB)", accepted, accepted*len(big)>>10)
	if got := f.obs.slow.Load(); got != 1 {
		t.Fatalf("SlowClosed called %d times, want 1", got)
	}
	if slow.Send(protocol.FrameJSON(payload(0))) {
		t.Error("Send after the slow close returned true")
	}
	for !slow.isDone() {
		checkBound()
		select {
		case <-slow.done:
		case <-time.After(5 * time.Second):
			t.Fatal("slow client's socket not closed within 5s")
		case <-time.After(time.Millisecond):
		}
	}
	if got := f.obs.slow.Load(); got != 1 {
		t.Errorf("SlowClosed called %d times, want 1", got)
	}

	// The healthy client kept receiving while the slow one was stuck, and
	// is still served afterwards.
	if hr.n.Load() == healthyBefore {
		t.Error("healthy client received nothing while the slow client was being closed")
	}
	mark := sent.Load()
	eventually(t, 5*time.Second, func() bool { return sent.Load() >= mark+20 },
		"healthy client: Send stopped working (%d sent)", sent.Load())
	stopSender()
	eventually(t, 5*time.Second, func() bool { return hr.n.Load() == sent.Load() },
		"healthy client received %d of %d frames", hr.n.Load(), sent.Load())
	hr.check(t)
	if healthy.isDone() {
		t.Error("healthy client was closed")
	}
	if got := f.obs.slow.Load(); got != 1 {
		t.Errorf("SlowClosed called %d times, want 1", got)
	}
}

// TestHeartbeat uses test timings: a ping every 50ms, 100ms to answer. On a
// loaded machine a scheduling stall of 100ms legitimately drops a live
// client, so the scenario gets a few attempts, each on a fresh pool; a
// heartbeat that is wrong fails every one of them.
func TestHeartbeat(t *testing.T) {
	const attempts = 3
	for i := 1; ; i++ {
		problem := heartbeatScenario(t)
		if problem == "" {
			return
		}
		if i == attempts {
			t.Fatalf("attempt %d of %d: %s", i, attempts, problem)
		}
		t.Logf("attempt %d of %d: %s; retrying", i, attempts, problem)
	}
}

// heartbeatScenario returns what went wrong, or "".
func heartbeatScenario(t *testing.T) string {
	t.Helper()
	f := newFixture(t, wsconn.Options{
		PingInterval: 50 * time.Millisecond,
		PongTimeout:  100 * time.Millisecond,
		WriteTimeout: 5 * time.Second,
	})
	defer f.pool.Close() // also in f's cleanup; frees this attempt's clients now
	start := time.Now()

	// Reads, so coder answers every ping.
	liveWS, live := f.connect(t)
	lr := startReader(t, liveWS)

	// Never reads, but keeps sending: bytes read count as an answer.
	talkerWS, talker := f.connect(t)
	stop := make(chan struct{})
	talkerDone := make(chan struct{})
	go func() {
		defer close(talkerDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := talkerWS.Write(ctx, websocket.MessageText, []byte("hi"))
			cancel()
			if err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-talkerDone }()

	// Never reads, so never answers a ping.
	_, dead := f.connect(t)
	deadAt := time.Now()

	select {
	case <-dead.done:
	case <-time.After(2 * time.Second):
		return "client that does not answer pings not dropped within 2s"
	}
	t.Logf("unresponsive client dropped after %v", time.Since(deadAt))
	if got := f.obs.pingTimeouts.Load(); got < 1 {
		return fmt.Sprintf("PingTimeout called %d times after the drop, want 1", got)
	}

	// The others stay connected through many ping rounds.
	select {
	case <-live.done:
		return fmt.Sprintf("reading client dropped after %v", time.Since(start))
	case <-talker.done:
		return fmt.Sprintf("sending client dropped after %v", time.Since(start))
	case <-time.After(time.Until(start.Add(1200 * time.Millisecond))):
	}
	if got := f.obs.pingTimeouts.Load(); got != 1 {
		return fmt.Sprintf("PingTimeout called %d times, want 1", got)
	}
	// Pings were written: 1.2s / 50ms to each of the two live clients.
	if w := f.obs.writes.Load(); w < 10 {
		return fmt.Sprintf("only %d socket writes in 1.2s: are pings sent?", w)
	}
	select {
	case <-lr.done:
		return fmt.Sprintf("reading client's Read ended: %v", lr.err)
	default:
	}
	return ""
}

func TestAbortClosesAtOnce(t *testing.T) {
	f := newFixture(t, wsconn.Options{})
	ws, sc := f.connect(t)
	r := startReader(t, ws)

	for i := range 10 {
		sc.Send(protocol.FrameJSON(payload(i)))
	}
	sc.Abort()
	if sc.Send(protocol.FrameJSON(payload(10))) {
		t.Error("Send after Abort returned true")
	}
	sc.Abort()                                  // idempotent
	sc.CloseWith(1000, "", 10*time.Millisecond) // no-op
	waitDone(t, sc, 2*time.Second, "after Abort")
	err := r.wait(t, 2*time.Second)
	if got := websocket.CloseStatus(err); got != -1 {
		t.Errorf("client read ended with close status %d, want a cut socket (err %v)", got, err)
	}
	r.check(t)
}

func TestClientPingGetsPong(t *testing.T) {
	f := newFixture(t, wsconn.Options{Shards: 1})
	ws, sc := f.connect(t)
	r := startReader(t, ws) // Ping needs the client to be reading

	// Pongs written by coder (Conn.Write) share the queue with relay's
	// frames; frames must arrive intact and in order meanwhile.
	const n = 2000
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		for i := range n {
			if !sc.Send(protocol.FrameJSON(payload(i))) {
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ws.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	<-sendDone
	eventually(t, 5*time.Second, func() bool { return r.n.Load() == n }, "client received %d of %d frames", r.n.Load(), n)
	r.check(t)
	if sc.isDone() {
		t.Error("connection closed")
	}
}

func TestPoolClose(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	f := newFixture(t, wsconn.Options{
		Shards:       2,
		QueueBytes:   1 << 30,
		WriteTimeout: time.Minute, // Close must not wait on it
	})

	var clients []*websocket.Conn
	var readers []*reader
	var conns []serverConn
	for range 3 {
		ws, sc := f.connect(t)
		clients = append(clients, ws)
		readers = append(readers, startReader(t, ws))
		conns = append(conns, sc)
	}
	// One client that never reads, with far more queued than socket
	// buffers hold, so that its writer is blocked in a write.
	stuckWS, stuck := f.connect(t)
	clients = append(clients, stuckWS)
	conns = append(conns, stuck)
	big := protocol.FrameJSON(bytes.Repeat([]byte("x"), 1<<20))
	for range 128 {
		if !stuck.Send(big) {
			t.Fatal("Send to the stuck client returned false")
		}
	}
	// The first write is reported once it has hit ShardStall, just before
	// the connection gets a drain goroutine of its own, blocked in a write.
	eventually(t, 5*time.Second, func() bool { return f.obs.writes.Load() >= 1 }, "no write to the stuck client")
	if stuck.Queued() == 0 {
		t.Fatal("128 MiB went through to a client that does not read")
	}

	start := time.Now()
	f.pool.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Pool.Close took %v", d)
	}
	for i, sc := range conns {
		waitDone(t, sc, 2*time.Second, fmt.Sprintf("conn %d after Pool.Close", i))
		if sc.Send(protocol.FrameJSON(payload(0))) {
			t.Errorf("conn %d: Send after Pool.Close returned true", i)
		}
	}
	for _, r := range readers {
		r.wait(t, 2*time.Second)
	}

	done := make(chan struct{})
	go func() { f.pool.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("second Pool.Close did not return")
	}

	for _, ws := range clients {
		_ = ws.CloseNow()
	}
	f.srv.Close()
	goleak.VerifyNone(t, ignore)
}
