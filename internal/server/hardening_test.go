package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// rawUpgrade opens a WebSocket by hand, so that a test can write frames no
// well-behaved library would (a flood of pings) and choose never to read.
func rawUpgrade(t *testing.T, addr, query string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var key [16]byte
	_, _ = rand.Read(key[:])
	fmt.Fprintf(conn, "GET /ws?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", query, addr, base64.StdEncoding.EncodeToString(key[:]))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return conn
}

// maskedPing is a client ping frame with a 125-byte payload, the largest a
// control frame may carry.
func maskedPing() []byte {
	f := []byte{0x89, 0x80 | 125, 1, 2, 3, 4}
	for i := range 125 {
		f = append(f, byte('p')^[]byte{1, 2, 3, 4}[i%4])
	}
	return f
}

// flood writes pings until the node ends the connection or d passes, and
// reports how long the node took.
func flood(t *testing.T, conn net.Conn, d time.Duration) (time.Duration, bool) {
	t.Helper()
	var burst []byte
	for range 64 {
		burst = append(burst, maskedPing()...)
	}
	start := time.Now()
	for time.Since(start) < d {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write(burst); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // our send buffer is full: the node stopped reading, or is slow
			}
			return time.Since(start), true
		}
	}
	return time.Since(start), false
}

// A client flooding pings and never reading is held to the limits of any
// other client. With a rate limit, pings past it go unanswered and a flood
// sustained for 5 s is closed; without one, the unread pongs fill its queue
// and it is closed as too slow. Either way the node's memory stays within
// the queue bound (before, pongs piled up unbounded: 157 MB in 3 s) and
// other clients go on. Not parallel: it measures the process's heap.
func TestPingFloodIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"rate limited", map[string]string{"RELAY_RATE_LIMIT": "20"}},
		{"queue bound", map[string]string{"RELAY_RATE_LIMIT": "0", "RELAY_SEND_QUEUE_BYTES": "65536", "RELAY_MAX_MESSAGE_BYTES": "65536"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodetest.Start(t, tc.env)
			bystander := wstest.Dial(t, n.WS("name=bystander"), nil)
			bystander.Welcome()
			attacker := rawUpgrade(t, n.Addr, "name=attacker")
			peak := sampleHeap(t)
			took, closed := flood(t, attacker, 20*time.Second)
			grew := peak()
			if grew > 16<<20 {
				t.Fatalf("the heap grew by %d MiB during the flood: pongs are piling up", grew>>20)
			}
			if !closed {
				t.Fatalf("the node still takes pings from a flooding client after %v", took)
			}
			bystander.Send(`{"type":"ping"}`)
			bystander.Expect("a pong for the bystander", wstest.IsPong)
			t.Logf("flood closed after %v; live heap grew by at most %d KiB", took.Round(100*time.Millisecond), grew>>10)
		})
	}
}

// sampleHeap watches the live heap (collected first: the flood's garbage
// is not what it is about) from now on; the function it returns stops
// watching and returns the largest growth seen.
func sampleHeap(t *testing.T) func() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		return peak - base
	}
}

// A client that keeps sending data past its rate limit for seconds is
// closed with 1008, instead of being answered with rate_limited frames
// forever; one that bursts and pauses is not.
func TestSustainedRateLimitCloses(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "10"})
	burster := wstest.Dial(t, n.WS("name=burster"), nil)
	burster.Welcome()
	for range 40 { // a burst past the limit, then quiet
		burster.Send(`{"type":"ping"}`)
	}
	burster.Expect("rate_limited", wstest.IsError("rate_limited"))

	flooder := wstest.Dial(t, n.WS("name=flooder"), nil)
	flooder.Welcome()
	start := time.Now()
	for flooder.Open() && time.Since(start) < 20*time.Second {
		_ = flooder.WS.Write(t.Context(), websocket.MessageText, []byte(`{"type":"ping"}`))
		time.Sleep(5 * time.Millisecond) // 200 frames/s against a limit of 10
	}
	if status := flooder.Closed(); status != websocket.StatusPolicyViolation {
		t.Fatalf("a sustained flood ended with %v, want 1008", status)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Fatalf("closed after %v: a flood is judged over 5 s", d)
	}
	burster.Send(`{"type":"ping"}`)
	burster.Expect("the burster is still served", wstest.IsPong)
}

// Relay never sends a frame much bigger than what it accepts: a message
// whose encoding for its receivers would pass RELAY_MAX_MESSAGE_BYTES plus
// the envelope (1 KiB) is refused, not amplified to every member. A text of
// control bytes escapes to six times its size.
func TestAmplifiedMessagesAreRefused(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_MAX_MESSAGE_BYTES": "4096", "RELAY_RATE_LIMIT": "0"})
	sender := wstest.Dial(t, n.WS("name=sender"), nil)
	sender.Welcome()
	member := wstest.Dial(t, n.WS("name=member"), nil)
	member.Welcome()

	controls := strings.Repeat("\x01", 4000) // 4,000 bytes in, 24,000 escaped
	_ = sender.WS.Write(t.Context(), websocket.MessageText, []byte(controls))
	sender.Expect("too_large", wstest.IsError("too_large"))
	sender.Send(`{"type":"message","data":"fits"}`)
	member.QuietUntil(wstest.IsChat("fits"), func(f wstest.Frame) bool { return len(f.Raw) > 4096+1024 })

	status, body := notify(t, n, `{"message":"`+strings.Repeat(`\u0001`, 4000)+`"}`)
	if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["error"]), "too large") {
		t.Fatalf("notify that escapes past the limit: %d %v, want 400", status, body)
	}
}

// slowPost starts a POST /api/notify that announces a 100-byte body and
// sends one byte of it, as a slowloris does, and returns the connection.
func slowPost(t *testing.T, addr, key string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	fmt.Fprintf(conn, "POST /api/notify HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", addr, auth)
	return conn
}

// readStatus reads the status line of the answer on conn, within d.
func readStatus(conn net.Conn, d time.Duration) (int, error) {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Slow and idle HTTP connections do not hold a node: a bad key is refused
// before the body arrives and the connection closed; a body that does not
// arrive within RELAY_HTTP_BODY_TIMEOUT gets 408; an idle keep-alive
// connection is closed after RELAY_HTTP_IDLE_TIMEOUT; and a shutdown cuts a
// trickling request instead of waiting its whole timeout for it.
func TestSlowAndIdleHTTP(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_HTTP_BODY_TIMEOUT": "1s", "RELAY_HTTP_IDLE_TIMEOUT": "1s"})

	if status, err := readStatus(slowPost(t, n.Addr, "wrong"), 500*time.Millisecond); status != 401 {
		t.Errorf("a trickling POST with a wrong key: %d %v, want 401 at once", status, err)
	}
	if status, err := readStatus(slowPost(t, n.Addr, ""), 500*time.Millisecond); status != 401 {
		t.Errorf("a trickling POST with no key: %d %v, want 401 at once", status, err)
	}
	start := time.Now()
	if status, err := readStatus(slowPost(t, n.Addr, "k"), 5*time.Second); status != http.StatusRequestTimeout {
		t.Errorf("a body that never completes: %d %v, want 408", status, err)
	} else if d := time.Since(start); d > 3*time.Second {
		t.Errorf("408 after %v, want about RELAY_HTTP_BODY_TIMEOUT (1s)", d)
	}

	idle, err := net.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, err := readStatus(idle, 2*time.Second); status != 200 {
		t.Fatalf("healthz: %d %v", status, err)
	}
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("an idle keep-alive connection still open after 5 s: %v", err)
	}

	// A shutdown is not held by a request still trickling its body.
	n2 := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k"})
	slow := slowPost(t, n2.Addr, "k")
	time.Sleep(100 * time.Millisecond) // the request has reached its handler
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n2.Node().Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v with a slow request in flight, want it cut", d)
	}
	if status, _ := readStatus(slow, time.Second); status != 0 && status != http.StatusRequestTimeout {
		t.Errorf("the cut request got %d", status)
	}
}

// An API request refused before its body arrived (401, 400) has its
// connection closed at once after the answer, not held until
// RELAY_HTTP_BODY_TIMEOUT while net/http drains the announced body (up to
// 256 KiB of it).
func TestEarlyAPIErrorClosesAtOnce(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_HTTP_BODY_TIMEOUT": "10s"})
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"notify, wrong key", "POST /api/notify\r\nAuthorization: Bearer wrong", 401},
		{"notify, no key", "POST /api/notify", 401},
		{"rooms, no key", "GET /api/rooms", 401},
		{"rooms, bad limit", "GET /api/rooms?limit=0\r\nAuthorization: Bearer k", 400},
		{"notify, bad JSON", "POST /api/notify\r\nAuthorization: Bearer k", 400},
		{"disconnect, no key", "POST /api/disconnect", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", n.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			method, rest, _ := strings.Cut(tc.request, " ")
			path, header, _ := strings.Cut(rest, "\r\n")
			if header != "" {
				header += "\r\n"
			}
			// 200,000 bytes announced, 1,000 sent (not JSON), the rest never.
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n%s",
				method, path, header, strings.Repeat("x", 1000))
			br := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), `"error"`) {
				t.Fatalf("answer %d %s, want %d with a JSON error", resp.StatusCode, body, tc.status)
			}
			answered := time.Now()
			_ = conn.SetReadDeadline(answered.Add(time.Second))
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("connection still open 1 s after the %d answer (body deadline 10 s): %v", tc.status, err)
			}
		})
	}
}

// RELAY_MAX_CONNECTIONS_PER_IP counts a client's address (behind a
// trusted proxy, the forwarded one): past it, 429 with a JSON error; other
// addresses are not affected, and a closed connection frees its slot.
func TestConnectionsPerIP(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_MAX_CONNECTIONS_PER_IP": "2", "RELAY_TRUSTED_PROXIES": "127.0.0.1"})
	from := func(ip string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {ip}}}
	}
	a := wstest.Dial(t, n.WS("name=a"), from("203.0.113.1"))
	a.Welcome()
	b := wstest.Dial(t, n.WS("name=b"), from("203.0.113.1"))
	b.Welcome()
	_, err := wstest.TryDial(t, n.WS("name=c"), from("203.0.113.1"))
	if err == nil || !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), `"error"`) {
		t.Fatalf("third connection from one address: %v, want 429 with a JSON error", err)
	}
	other := wstest.Dial(t, n.WS("name=d"), from("203.0.113.2"))
	other.Welcome()
	_ = a.WS.Close(websocket.StatusNormalClosure, "")
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		c, err := wstest.TryDial(t, n.WS("name=c"), from("203.0.113.1"))
		if err == nil {
			c.Welcome()
		}
		return err
	})
}
