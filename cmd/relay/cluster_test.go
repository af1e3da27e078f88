package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// post sends a notify to base (a node or nginx) and returns the status and
// body.
func post(t *testing.T, base, body string) (int, map[string]any) {
	t.Helper()
	return testkit.DoJSON(t, http.MethodPost, base+"/api/notify", clusterAPIKey, body)
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// One cluster for the behaviour that needs no outage.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	n1, n2, n3, lb := c.nodes[0], c.nodes[1], c.nodes[2], c.lb

	// Counts are cluster-wide, whichever node a client lands on.
	alice := wstest.Dial(t, n1.ws("name=alice"), nil)
	if w := alice.Welcome(); w.Node != "node-1" || w.Count() != 1 {
		t.Fatalf("alice's welcome = %s", w)
	}
	bob := wstest.Dial(t, n2.ws("name=bob"), nil)
	if w := bob.Welcome(); w.Node != "node-2" || w.Count() != 2 {
		t.Fatalf("bob's welcome = %s", w)
	}
	if f := alice.Expect("bob's join from node-2", wstest.IsEvent("join", "bob", "lobby")); f.Count() != 2 {
		t.Fatalf("join = %s", f)
	}
	carol := wstest.Dial(t, n3.ws("name=carol"), nil)
	carol.Welcome()
	dave := wstest.Dial(t, lb.WS("name=dave"), nil) // through nginx
	if w := dave.Welcome(); w.Count() != 4 || !strings.HasPrefix(w.Node, "node-") {
		t.Fatalf("dave's welcome through nginx = %s", w)
	}
	for _, cl := range []*wstest.Client{alice, bob, carol} {
		cl.Expect("dave's join", wstest.IsEvent("join", "dave", "lobby"))
	}
	everyone := []*wstest.Client{alice, bob, carol, dave}

	t.Run("chat crosses nodes", func(t *testing.T) {
		bob.Send("hello from node-2")
		for _, cl := range everyone {
			if f := cl.Expect("bob's chat", wstest.IsChat("hello from node-2")); f.User != "bob" {
				t.Fatalf("chat = %s", f)
			}
		}
	})

	t.Run("notify on any node reaches every node", func(t *testing.T) {
		for _, base := range []string{n1.url(), n3.url(), lb.URL()} {
			text := "note via " + base
			if status, body := post(t, base, fmt.Sprintf(`{"message":%q}`, text)); status != 200 {
				t.Fatalf("notify via %s: %d %v", base, status, body)
			}
			for _, cl := range everyone {
				cl.Expect(text, wstest.IsNote(text))
			}
		}
		post(t, n1.url(), `{"message":"for carol","user":"carol"}`) // carol is on node-3
		carol.Expect("user notification from node-1", wstest.IsNote("for carol"))
	})

	t.Run("rooms across nodes, and only where needed", func(t *testing.T) {
		rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
		defer rdb.Close()
		subscribers := func() int64 {
			m, err := rdb.PubSubNumSub(context.Background(), "relay:{room:ops}").Result()
			if err != nil {
				t.Fatal(err)
			}
			return m["relay:{room:ops}"]
		}
		alice.Send(`{"type":"join","room":"ops"}`)
		alice.Expect("own join", wstest.IsEvent("join", "alice", "ops"))
		carol.Send(`{"type":"join","room":"ops"}`)
		if f := alice.Expect("carol's join", wstest.IsEvent("join", "carol", "ops")); f.Count() != 2 {
			t.Fatalf("join = %s", f)
		}
		if n := subscribers(); n != 2 {
			t.Fatalf("%d nodes subscribed to room ops, want 2 (node-2 has no member)", n)
		}
		alice.Send(`{"type":"message","room":"ops","data":"ops talk"}`)
		carol.Expect("room chat from node-1", wstest.IsChat("ops talk"))
		post(t, n2.url(), `{"message":"ops note","room":"ops"}`)
		alice.Expect("room notification", wstest.IsNote("ops note"))
		carol.Expect("room notification", wstest.IsNote("ops note"))
		alice.Send("marker")
		bob.QuietUntil(wstest.IsChat("marker"), func(f wstest.Frame) bool { return f.Room == "ops" })

		alice.Send(`{"type":"leave","room":"ops"}`)
		carol.Expect("alice's leave", wstest.IsEvent("leave", "alice", "ops"))
		carol.Send(`{"type":"leave","room":"ops"}`)
		carol.Expect("own leave", wstest.IsEvent("leave", "carol", "ops"))
		deadline := time.Now().Add(5 * time.Second)
		for subscribers() != 0 {
			if time.Now().After(deadline) {
				t.Fatal("nodes still subscribed to an empty room")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("thousands of messages across nodes, complete and in order", func(t *testing.T) {
		const total = 3000
		go func() {
			for i := range total {
				if err := alice.WS.Write(context.Background(), websocket.MessageText, fmt.Appendf(nil, `{"type":"message","data":%d}`, i)); err != nil {
					return
				}
			}
		}()
		for _, cl := range []*wstest.Client{bob, carol, dave} {
			next := 0
			for next < total {
				f := cl.Expect("numbered chat", func(f wstest.Frame) bool { return f.Type == "message" && f.User == "alice" })
				var n int
				if err := json.Unmarshal(f.Data, &n); err != nil {
					continue // an earlier test's text message
				}
				if n != next {
					t.Fatalf("got message %d, want %d: lost or out of order", n, next)
				}
				next++
			}
		}
	})

	t.Run("nginx spreads connections over the nodes", func(t *testing.T) {
		seen := map[string]bool{}
		for range 6 {
			cl := wstest.Dial(t, lb.WS(""), nil)
			seen[cl.Welcome().Node] = true
		}
		if len(seen) < 2 {
			t.Fatalf("6 connections through nginx all landed on %v", seen)
		}
	})
}

// Redis killed and restarted: 503s and error frames while it is down, no
// client disconnected, delivery back within 5 s of its return.
func TestClusterRedisOutage(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	n1, n2 := c.nodes[0], c.nodes[1]
	a := wstest.Dial(t, n1.ws("name=a"), nil)
	a.Welcome()
	b := wstest.Dial(t, n2.ws("name=b"), nil)
	b.Welcome()
	viaLB := wstest.Dial(t, c.lb.WS("name=lb"), nil)
	viaLB.Welcome()

	c.redis.Kill()
	for _, base := range []string{n1.url(), n2.url(), c.lb.URL()} {
		deadline := time.Now().Add(10 * time.Second)
		for getStatus(t, base+"/readyz") != 503 {
			if time.Now().After(deadline) {
				t.Fatalf("%s/readyz still 200 with Redis down", base)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if s := getStatus(t, base+"/healthz"); s != 200 {
			t.Fatalf("%s/healthz = %d during the outage", base, s)
		}
		status, body := post(t, base, `{"message":"during outage"}`)
		if status != 503 || body["error"] == nil {
			t.Fatalf("notify via %s during the outage = %d %v, want 503 with an error", base, status, body)
		}
	}
	a.Send("are you there?")
	if f := a.Expect("unavailable error frame", wstest.IsError("unavailable")); f.Error == "" {
		t.Fatalf("error frame = %s", f)
	}

	c.redis.Restart()
	back := time.Now()
	for _, p := range c.nodes {
		waitHTTP(t, p.url()+"/readyz", 200, p.out)
	}
	// Delivery resumes on the same connections.
	for i := 0; ; i++ {
		text := fmt.Sprintf("after outage %d", i)
		a.Send(text)
		f := a.ExpectWithin(time.Second, "own chat after Redis returned", func(f wstest.Frame) bool {
			return wstest.IsChat(text)(f) || wstest.IsError("unavailable")(f)
		})
		if f.Type == "message" {
			b.Expect("chat across nodes after the outage", wstest.IsChat(text))
			viaLB.Expect("chat through nginx after the outage", wstest.IsChat(text))
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatal("delivery did not resume within 5 s of Redis returning")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status, body := post(t, c.lb.URL(), `{"message":"after"}`); status != 200 {
		t.Fatalf("notify after the outage = %d %v", status, body)
	}
	for _, cl := range []*wstest.Client{a, b, viaLB} {
		cl.Expect("notification after the outage", wstest.IsNote("after"))
		if !cl.Open() {
			t.Fatal("a client was disconnected by the outage")
		}
	}
	// Counts are rebuilt from the nodes' own state (Redis lost everything)
	// within 5 s: a newcomer's welcome counts all four.
	for {
		d := wstest.Dial(t, n1.ws("name=d"), nil)
		n := d.Welcome().Count()
		d.WS.Close(websocket.StatusNormalClosure, "")
		d.Closed()
		if n == 4 {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("welcome %v after Redis returned counts %d, want 4", time.Since(back), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A node killed without goodbye: its users leave every count within 30 s,
// and the others are told.
func TestClusterNodeKilled(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	n1, n2 := c.nodes[0], c.nodes[1]
	watcher := wstest.Dial(t, n1.ws("name=watcher"), nil)
	watcher.Welcome()
	for i := range 3 {
		v := wstest.Dial(t, n2.ws(fmt.Sprintf("name=victim%d", i)), nil)
		v.Welcome()
	}
	watcher.Expect("the third victim's join", wstest.IsEvent("join", "victim2", "lobby"))

	n2.kill()
	start := time.Now()
	f := watcher.ExpectWithin(30*time.Second, "presence for the dead node's members", func(f wstest.Frame) bool {
		return f.Event == "presence" && f.Room == "lobby" && f.Left == 3
	})
	if f.Count() != 1 {
		t.Fatalf("presence after node-2 died = %s, want online 1", f)
	}
	t.Logf("node-2's members left the count after %v", time.Since(start).Round(time.Second))
	late := wstest.Dial(t, c.lb.WS("name=late"), nil) // nginx skips the dead node
	if w := late.Welcome(); w.Count() != 2 || w.Node == "node-2" {
		t.Fatalf("welcome after node-2 died = %s", w)
	}
}

// A node started before Redis is reachable waits (readyz 503) instead of
// exiting, and serves once Redis comes up.
func TestNodeStartsBeforeRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.New(t) // its port, not started yet
	p := startNode(t, "early", "RELAY_REDIS_URL="+srv.URL())
	if s := getStatus(t, p.url()+"/readyz"); s != 503 {
		t.Fatalf("readyz without Redis = %d", s)
	}
	srv.Restart()
	waitHTTP(t, p.url()+"/readyz", 200, p.out)
	cl := wstest.Dial(t, p.ws("name=x"), nil)
	cl.Welcome()
	if status, body := post(t, p.url(), `{"message":"hi"}`); status != 200 {
		t.Fatalf("notify = %d %v", status, body)
	}
	cl.Expect("notification once Redis is up", wstest.IsNote("hi"))
}

// Joins spread over three nodes into a room over the presence limit: the
// cluster sends one presence event per interval, not one per node, and
// together they count every join.
func TestClusterPresenceCoalesced(t *testing.T) {
	t.Parallel()
	const interval = 300 * time.Millisecond
	c := startCluster(t, "RELAY_PRESENCE_LIMIT=2", "RELAY_PRESENCE_INTERVAL="+interval.String())
	watcher := wstest.Dial(t, c.nodes[0].ws("name=watcher"), nil)
	watcher.Welcome()
	first := wstest.Dial(t, c.nodes[1].ws("name=first"), nil)
	first.Welcome()
	watcher.Expect("the join that fits the limit", wstest.IsEvent("join", "first", "lobby"))
	const more = 9
	for i := range more {
		cl := wstest.Dial(t, c.nodes[i%3].ws(fmt.Sprintf("name=j%d", i)), nil)
		cl.Welcome()
	}
	joined := 0
	var last wstest.Frame
	for joined < more {
		f := watcher.Expect("presence", func(f wstest.Frame) bool {
			if f.Event == "join" {
				t.Fatalf("per-member join over the limit: %s", f)
			}
			return f.Event == "presence"
		})
		if !last.At.IsZero() && f.At.Sub(last.At) < interval/2 {
			t.Fatalf("two presence events %v apart, interval %v: %s then %s", f.At.Sub(last.At), interval, last, f)
		}
		joined += f.Joined
		last = f
	}
	if joined != more || last.Count() != more+2 {
		t.Fatalf("presence events count %d joins, last online %d; want %d and %d", joined, last.Count(), more, more+2)
	}
}
