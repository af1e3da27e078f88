package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// No message lost, duplicated or reordered across the faults a real cluster
// meets, with thousands of messages in flight: clients that resume after
// their connection ends (cut, drained, node killed) and nodes that fill
// gaps from history after Redis restarts or their link to it goes dark.
// Each test publishes one stream without pause through the fault and checks
// every receiver got all of it, once each, in order.

// publisher posts notifications m0, m1, ... to a room through bases in
// turn, as fast as they are accepted, until stopped. A post that fails is
// retried, but first, as a careful backend would, it asks GET /api/history
// whether the message landed anyway: a Redis killed after running the
// script and before answering leaves a 503 that was in fact published.
type publisher struct {
	room string
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	sent []string // accepted, in order: their positions are 1, 2, ...
}

func startPublisher(t *testing.T, room string, bases ...string) *publisher {
	p := &publisher{room: room, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() { // joined by wait
		defer close(p.done)
		uncertain := false // the last post of msg failed: it may have landed
		for i, n := 0, 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			msg := fmt.Sprintf("m%d", n)
			if uncertain {
				landed, known := p.landed(client, bases, msg)
				if !known {
					time.Sleep(20 * time.Millisecond) // history unreachable: ask again
					continue
				}
				uncertain = false
				if landed {
					p.accepted(msg)
					n++
					continue
				}
			}
			req, _ := http.NewRequest(http.MethodPost, bases[i%len(bases)]+"/api/notify",
				strings.NewReader(fmt.Sprintf(`{"message":%q,"room":%q}`, msg, room)))
			req.Header.Set("Authorization", "Bearer "+clusterAPIKey)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				uncertain = err != nil || resp.StatusCode >= 500
				time.Sleep(20 * time.Millisecond) // node or nginx going away: try the next
				continue
			}
			p.accepted(msg)
			n++
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(func() { p.wait() })
	return p
}

func (p *publisher) accepted(msg string) {
	p.mu.Lock()
	p.sent = append(p.sent, msg)
	p.mu.Unlock()
}

// landed reports whether msg is among the room's latest messages; known is
// false when no node could say.
func (p *publisher) landed(client *http.Client, bases []string, msg string) (landed, known bool) {
	for _, base := range bases {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/history?room="+p.room+"&since="+strconv.Itoa(max(0, p.count()-5))+"&limit=50", nil)
		req.Header.Set("Authorization", "Bearer "+clusterAPIKey)
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var h struct{ Messages []struct{ Data string } }
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		for _, m := range h.Messages {
			if m.Data == msg {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sent)
}

// wait stops publishing and returns what was accepted. Idempotent.
func (p *publisher) wait() []string {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sent...)
}

// awaitSent waits until the publisher has n more messages accepted.
func (p *publisher) awaitMore(t *testing.T, n int) {
	t.Helper()
	target := p.count() + n
	testkit.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if c := p.count(); c < target {
			return fmt.Errorf("%d of %d messages accepted", c, target)
		}
		return nil
	})
}

// settle stops the publisher and waits for every resumer to have all it
// sent, then checks each.
func settle(t *testing.T, p *publisher, rs map[string]*wstest.Resumer) {
	t.Helper()
	sent := p.wait()
	if len(sent) < 500 {
		t.Fatalf("only %d messages published: not enough in flight to mean anything", len(sent))
	}
	for name, r := range rs {
		testkit.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			if got := len(r.Received(p.room)); got < len(sent) {
				return fmt.Errorf("%s has %d of %d messages", name, got, len(sent))
			}
			return nil
		})
		r.Check(name, p.room, sent)
	}
	t.Logf("%d messages, every receiver got all of them once, in order", len(sent))
}

// A client whose TCP connection is cut resumes on another node.
func TestRecoveryConnectionCutToAnotherNode(t *testing.T) {
	t.Parallel()
	c := startClusterWith(t, clusterOptions{noNginx: true})
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	link := testkit.StartProxy(t, n1.addr)
	viaProxy := "ws://" + link.Addr + "/ws"
	mover := wstest.StartResumer(t, "name=mover", []string{"ops"}, viaProxy, "ws://"+n2.addr+"/ws")
	stayer := wstest.StartResumer(t, "name=stayer", []string{"ops"}, "ws://"+n3.addr+"/ws")

	p := startPublisher(t, "ops", n3.url(), n1.url())
	p.awaitMore(t, 300)
	link.Cut()
	testkit.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if mover.Reconnects() == 0 || mover.Node() != "node-2" {
			return fmt.Errorf("mover on %s after %d reconnects", mover.Node(), mover.Reconnects())
		}
		return nil
	})
	p.awaitMore(t, 300)
	settle(t, p, map[string]*wstest.Resumer{"mover": mover, "stayer": stayer})
}

// Clients of a node that is drained (SIGTERM, close 1012) or killed
// outright resume through nginx on the nodes left, while a publisher keeps
// posting through nginx.
func TestRecoveryNodeDrainedAndKilledThroughNginx(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	lb := "ws://" + c.lb.Addr + "/ws"
	rs := map[string]*wstest.Resumer{}
	for i := range 6 {
		name := fmt.Sprintf("r%d", i)
		rs[name] = wstest.StartResumer(t, "name="+name, []string{"ops"}, lb)
	}
	p := startPublisher(t, "ops", c.lb.URL())
	p.awaitMore(t, 300)

	victim := rs["r0"].Node()
	c.node(t, victim).term()
	testkit.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if rs["r0"].Reconnects() == 0 || rs["r0"].Node() == victim {
			return fmt.Errorf("r0 still on %s", rs["r0"].Node())
		}
		return nil
	})
	p.awaitMore(t, 300)

	victim = rs["r0"].Node()
	c.node(t, victim).kill()
	testkit.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if rs["r0"].Node() == victim {
			return fmt.Errorf("r0 still on %s", victim)
		}
		return nil
	})
	p.awaitMore(t, 300)
	settle(t, p, rs)
}

// Redis restarted with its data (append-only file, as compose runs it):
// nodes keep their clients, resubscribe, and fill from history what was
// published while they were cut off.
func TestRecoveryRedisRestartWithPersistence(t *testing.T) {
	t.Parallel()
	c := startClusterWith(t, clusterOptions{persistent: true, noNginx: true})
	rs := map[string]*wstest.Resumer{}
	for i, n := range c.nodes {
		name := fmt.Sprintf("on-%d", i+1)
		rs[name] = wstest.StartResumer(t, "name="+name, []string{"ops"}, "ws://"+n.addr+"/ws")
	}
	p := startPublisher(t, "ops", c.nodes[0].url(), c.nodes[1].url(), c.nodes[2].url())
	p.awaitMore(t, 300)
	c.redis.Kill()
	time.Sleep(500 * time.Millisecond) // an outage, not a blink
	c.redis.Restart()
	p.awaitMore(t, 300)
	settle(t, p, rs)
	for name, r := range rs {
		if r.Reconnects() != 0 {
			t.Errorf("%s reconnected %d times: a Redis restart must not drop clients", name, r.Reconnects())
		}
	}
}

// A node's link to Redis goes dark for 15 s (no FIN, no RST: a blackhole)
// and heals. The node notices, stays up for its clients, and once Redis
// answers again delivers everything published meanwhile, in order.
func TestRecoveryRedisLinkBlackholed(t *testing.T) {
	if testing.Short() {
		t.Skip("15 s outage")
	}
	t.Parallel()
	// History deep enough for the outage: this test is about the node
	// filling it, not about history running out.
	c := startClusterWith(t, clusterOptions{proxied: true, noNginx: true}, "RELAY_HISTORY_SIZE=50000")
	n1, n2 := c.nodes[0], c.nodes[1]
	cutOff := wstest.StartResumer(t, "name=cutoff", []string{"ops"}, "ws://"+n1.addr+"/ws")
	other := wstest.StartResumer(t, "name=other", []string{"ops"}, "ws://"+n2.addr+"/ws")
	p := startPublisher(t, "ops", n2.url())
	p.awaitMore(t, 300)

	c.links[0].Blackhole()
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if getStatus(t, n1.url()+"/readyz") != http.StatusServiceUnavailable {
			return fmt.Errorf("node-1 still ready with its Redis link dark")
		}
		return nil
	})
	time.Sleep(15 * time.Second)
	c.links[0].Heal()
	waitHTTP(t, n1.url()+"/readyz", 200, n1.out)
	p.awaitMore(t, 300)
	defer func() {
		if t.Failed() {
			t.Logf("node-1's log:\n%s", n1.out)
		}
	}()
	settle(t, p, map[string]*wstest.Resumer{"cutoff": cutOff, "other": other})
	if cutOff.Reconnects() != 0 {
		t.Errorf("node-1's client reconnected %d times: a dark Redis link must not drop clients", cutOff.Reconnects())
	}
}

// When a node's link is dark for longer than history reaches back, what
// history no longer has is announced to the stream's clients in a gap
// frame, never skipped silently, and delivery goes on after it.
func TestRecoveryGapPastHistoryIsAnnounced(t *testing.T) {
	if testing.Short() {
		t.Skip("8 s outage")
	}
	t.Parallel()
	c := startClusterWith(t, clusterOptions{proxied: true, noNginx: true}, "RELAY_HISTORY_SIZE=50")
	n1, n2 := c.nodes[0], c.nodes[1]
	cut := wstest.Dial(t, n1.ws("name=cut"), nil)
	cut.Welcome()
	cut.Send(`{"type":"join","room":"ops"}`)
	cut.Expect("own join", wstest.IsEvent("join", "cut", "ops"))
	for i := range 10 {
		post(t, n2.url(), fmt.Sprintf(`{"message":"a%d","room":"ops"}`, i))
	}
	cut.Expect("a9", wstest.IsNote("a9"))

	c.links[0].Blackhole()
	// Long enough for node-1 to give up on its silent subscription (6 s):
	// what Redis sent it meanwhile is gone with that connection.
	time.Sleep(8 * time.Second)
	for i := range 100 {
		post(t, n2.url(), fmt.Sprintf(`{"message":"b%d","room":"ops"}`, i))
	}
	c.links[0].Heal()
	waitHTTP(t, n1.url()+"/readyz", 200, n1.out)

	// seq 1-10 were a0-a9, 11-110 b0-b99, 50 of which history keeps.
	gap := cut.Expect("the gap frame", func(f wstest.Frame) bool { return f.Event == "gap" })
	if gap.Stream != "ops" || gap.Seq() != 60 {
		t.Fatalf("gap frame %s, want stream ops up to seq 60", gap.Raw)
	}
	for i := 50; i < 100; i++ {
		if f := cut.Next(); !wstest.IsNote(fmt.Sprintf("b%d", i))(f) || f.Seq() != uint64(i+11) {
			t.Fatalf("after the gap: %s, want b%d at seq %d", f.Raw, i, i+11)
		}
	}
	post(t, n2.url(), `{"message":"after","room":"ops"}`)
	cut.Expect("live delivery after the gap", wstest.IsNote("after"))
}

// Redis restarted without its data: history is gone, and relay says so
// instead of pretending. Connected clients get a gap frame with the new
// epoch; a client resuming from the old epoch is told every stream it lists
// was missed; and the new epoch's messages flow, numbered from 1.
func TestRecoveryRedisRestartEmptyIsHonest(t *testing.T) {
	t.Parallel()
	c := startClusterWith(t, clusterOptions{noNginx: true})
	n1, n2 := c.nodes[0], c.nodes[1]
	var pos protocol.Positions
	away := wstest.Dial(t, n1.ws("name=away"), nil)
	w := away.Welcome()
	if _, err := pos.Observe(w.In); err != nil {
		t.Fatal(err)
	}
	stay := wstest.Dial(t, n2.ws("name=stay"), nil)
	old := stay.Welcome().Epoch
	post(t, n1.url(), `{"message":"before"}`)
	stay.Expect("before", wstest.IsNote("before"))
	_ = away.WS.CloseNow()

	c.redis.Kill()
	c.redis.Restart()
	gap := stay.Expect("a gap frame for the lost epoch", func(f wstest.Frame) bool { return f.Event == "gap" })
	if gap.Epoch == old || gap.Seq() != 0 {
		t.Fatalf("gap after Redis lost its data: %s, want a new epoch from 0", gap.Raw)
	}
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if status, body := post(t, n1.url(), `{"message":"new epoch"}`); status != 200 || body["seq"] != 1.0 {
			return fmt.Errorf("notify after the restart: %d %v, want 200 at seq 1", status, body)
		}
		return nil
	})
	if f := stay.Expect("the first message of the new epoch", wstest.IsNote("new epoch")); f.Seq() != 1 {
		t.Fatalf("first message after the reset: %s", f.Raw)
	}
	back := wstest.Dial(t, n2.ws("name=away&"+pos.Query()), nil)
	if w := back.Welcome(); w.Recovered == nil || *w.Recovered || len(w.Missed) != 3 || w.Epoch == old {
		t.Fatalf("resume from the lost epoch: %s, want recovered false, all three streams missed", w.Raw)
	}
}

// A node that freezes (SIGSTOP: a long GC pause, a paused VM) for a few
// seconds and comes back delivers everything published meanwhile to its
// clients, in order, once: what Redis sent it waited in the socket, and
// anything Redis dropped is read back from history.
func TestRecoveryNodeFrozen(t *testing.T) {
	t.Parallel()
	c := startClusterWith(t, clusterOptions{noNginx: true})
	n1, n2 := c.nodes[0], c.nodes[1]
	frozen := wstest.StartResumer(t, "name=frozen", []string{"ops"}, "ws://"+n2.addr+"/ws")
	p := startPublisher(t, "ops", n1.url())
	p.awaitMore(t, 300)
	n2.freeze()
	p.awaitMore(t, 300)
	time.Sleep(2 * time.Second)
	n2.thaw()
	p.awaitMore(t, 300)
	settle(t, p, map[string]*wstest.Resumer{"frozen": frozen})
}
