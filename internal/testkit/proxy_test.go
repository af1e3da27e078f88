package testkit_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/relay/relay/internal/testkit"
)

// echo serves one line-echo server on loopback.
func echo(t *testing.T) string {
	ln := testkit.Listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					if _, err := c.Write(append(s.Bytes(), '\n')); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestProxyBlackholeHoldsAndHealReleases(t *testing.T) {
	p := testkit.StartProxy(t, echo(t))
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	roundTrip := func(msg string, within time.Duration) (string, error) {
		if _, err := c.Write([]byte(msg + "\n")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(within))
		return r.ReadString('\n')
	}
	if got, err := roundTrip("one", 2*time.Second); err != nil || got != "one\n" {
		t.Fatalf("through the open proxy: %q %v", got, err)
	}
	p.Blackhole()
	if got, err := roundTrip("two", 300*time.Millisecond); err == nil {
		t.Fatalf("through the blackholed proxy: got %q, want nothing", got)
	}
	p.Heal()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after Heal, the held line: %q %v", got, err)
	}
	p.Cut()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a cut connection still reads")
	}
}

func TestProxyBlackholeOpenSparesNewConnections(t *testing.T) {
	p := testkit.StartProxy(t, echo(t))
	old, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	waitEcho := func(c net.Conn, within time.Duration) error {
		if _, err := c.Write([]byte("x\n")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(within))
		_, err := bufio.NewReader(c).ReadString('\n')
		return err
	}
	if err := waitEcho(old, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.BlackholeOpen()
	if err := waitEcho(old, 300*time.Millisecond); err == nil {
		t.Fatal("an open connection still echoes after BlackholeOpen")
	}
	fresh, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := waitEcho(fresh, 2*time.Second); err != nil {
		t.Fatalf("a new connection after BlackholeOpen: %v", err)
	}
}

// DelayReplies must add latency, not limit throughput: many requests in
// flight at once all come back after about one delay, not one delay each.
func TestProxyDelayRepliesIsLatencyNotThroughput(t *testing.T) {
	p := testkit.StartProxy(t, echo(t))
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	p.DelayReplies(200*time.Millisecond, 300*time.Millisecond)
	const lines = 20
	start := time.Now()
	go func() {
		for i := 0; i < lines; i++ {
			if _, err := c.Write([]byte("x\n")); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	first := time.Time{}
	for i := 0; i < lines; i++ {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if i == 0 {
			first = time.Now()
		}
	}
	if lat := first.Sub(start); lat < 200*time.Millisecond {
		t.Fatalf("the first reply came after %v: want at least the 200ms delay", lat)
	}
	// Sent over ~200ms, each delayed 200–300ms: all back well before the
	// 20 × 200ms = 4s a one-at-a-time delay would take.
	if all := time.Since(start); all > 1500*time.Millisecond {
		t.Fatalf("%d delayed replies took %v: the delay limits throughput", lines, all)
	}
	p.DelayReplies(0, 0)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	sent := time.Now()
	if _, err := c.Write([]byte("y\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(sent); d > 150*time.Millisecond {
		t.Fatalf("after DelayReplies(0, 0) a reply took %v", d)
	}
}
