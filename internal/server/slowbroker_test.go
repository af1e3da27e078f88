package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// A slow Redis (every reply 2–3 s late, as behind a failing disk) must not
// stop a connection from being read. These bounds are far below the delay:
// an answer within them did not wait for Redis.
const (
	slowReplyLo, slowReplyHi = 2 * time.Second, 3 * time.Second
	notWaiting               = time.Second
)

// slowNode is a node whose Redis link is delayed on demand, with a
// heartbeat much shorter than the delay, so that a connection whose pongs
// are not read while its chat waits for Redis is dropped within it.
func slowNode(t *testing.T) (*nodetest.Node, *testkit.Proxy) {
	t.Helper()
	rs := redistest.Start(t)
	px := testkit.StartProxy(t, rs.Addr())
	n := nodetest.Start(t, map[string]string{
		"RELAY_REDIS_URL":     "redis://" + px.Addr + "/0",
		"RELAY_PING_INTERVAL": "200ms",
		"RELAY_PONG_TIMEOUT":  "400ms",
		"RELAY_RATE_LIMIT":    "0",
	})
	return n, px
}

// While a client's chat waits for a slow Redis, its ping and a frame that
// needs no Redis are answered at once, and neither it nor an idle client is
// dropped by the heartbeat.
func TestSlowBrokerKeepsReading(t *testing.T) {
	t.Parallel()
	n, px := slowNode(t)
	alice := wstest.Dial(t, n.WS("name=alice"), nil)
	alice.Welcome()
	bob := wstest.Dial(t, n.WS("name=bob"), nil)
	bob.Welcome()
	alice.Expect("bob's join", wstest.IsEvent("join", "bob", "lobby"))
	reading(alice)
	reading(bob)

	px.DelayReplies(slowReplyLo, slowReplyHi)
	sent := time.Now()
	alice.Send(`{"type":"message","room":"lobby","data":"slow"}`)
	alice.Send(`{"type":"ping"}`)
	alice.ExpectWithin(notWaiting, "pong while the chat waits for Redis", wstest.IsPong)
	alice.Send(`{"type":"nope"}`)
	alice.ExpectWithin(notWaiting, "unknown_type while the chat waits for Redis", wstest.IsError("unknown_type"))
	alice.Send(`{"type":"message","room":"lobby"}`)
	alice.ExpectWithin(notWaiting, "bad_message while the chat waits for Redis", wstest.IsError("bad_message"))

	// The chat is answered, late (delivered, or refused by the broker's
	// own timeout: that is the publish path's business, not this test's),
	// and everyone is still connected: through seconds of a 200 ms
	// heartbeat.
	alice.ExpectWithin(4*slowReplyHi, "an answer to the slow chat", answersChat("slow"))
	if waited := time.Since(sent); waited < slowReplyLo {
		t.Fatalf("the chat was answered in %v: Redis was not slow, the test proves nothing", waited)
	}
	px.Heal()
	for _, c := range []*wstest.Client{alice, bob} {
		c.Send(`{"type":"ping"}`)
		c.Expect("pong after the slow spell", wstest.IsPong)
		if !c.Open() {
			t.Fatalf("dropped while Redis was slow: %v", c.ReadErr())
		}
	}
}

// A client that sends more than its inbox holds while Redis is slow gets a
// busy error for each frame past it, at once, and everything it sent is
// answered one way or the other: queued chats are delivered once Redis is
// back.
func TestSlowBrokerFloodGetsBusy(t *testing.T) {
	t.Parallel()
	n, px := slowNode(t)
	alice := wstest.Dial(t, n.WS("name=alice"), nil)
	alice.Welcome()
	reading(alice)

	px.DelayReplies(slowReplyLo, slowReplyHi)
	const sent = 36 // the inbox holds 32
	for i := range sent {
		alice.Send(fmt.Sprintf(`{"type":"message","room":"lobby","data":"m%d"}`, i))
	}
	busy := alice.ExpectWithin(notWaiting+time.Second, "a busy error while Redis is slow", wstest.IsError("busy"))
	if busy.Request != "message" || busy.Room != "lobby" {
		t.Fatalf("busy = %s; want it to name the refused frame (message, lobby)", busy)
	}
	refused := 1
	alice.Send(`{"type":"ping"}`)
	alice.ExpectWithin(notWaiting, "pong past a full inbox", func(f wstest.Frame) bool {
		if wstest.IsError("busy")(f) {
			refused++ // the rest of the flood, refused at once
		}
		return wstest.IsPong(f)
	})

	px.Heal()
	answered := map[string]bool{}
	for len(answered)+refused < sent {
		f := alice.ExpectWithin(4*slowReplyHi, fmt.Sprintf("answers to all %d frames (%d so far, %d busy)", sent, len(answered), refused),
			func(f wstest.Frame) bool { return f.Type == "message" || f.Type == "error" && f.Request == "message" })
		switch {
		case f.Code == "busy":
			refused++
		case f.Type == "message":
			answered[f.Text()] = true
		default: // refused by the broker: answered, as one of the queued
			answered[fmt.Sprint("error ", len(answered))] = true
		}
	}
	if refused > sent-32 {
		t.Fatalf("%d of %d frames refused busy; want the 32 the inbox holds taken", refused, sent)
	}
	if !alice.Open() {
		t.Fatalf("dropped: %v", alice.ReadErr())
	}
}

// reading waits until c's session reads its frames: the welcome comes
// before the handshake's last Redis calls (announcing the join), and this
// test is about what comes after.
func reading(c *wstest.Client) {
	c.Send(`{"type":"ping"}`)
	c.Expect("pong", wstest.IsPong)
}

// answersChat matches the chat text or an error refusing a message.
func answersChat(text string) func(wstest.Frame) bool {
	return func(f wstest.Frame) bool {
		return wstest.IsChat(text)(f) || f.Type == "error" && f.Request == "message"
	}
}
