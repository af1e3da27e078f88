package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/wstest"
)

func TestWelcomeAndJoin(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_NODE_ID": "node-w"})
	alice := wstest.Dial(t, n.WS("name=alice"), nil)
	w := alice.Welcome()
	if w.User != "alice" || w.Node != "node-w" || w.Room != "lobby" || w.Count() != 1 || w.Text() == "" {
		t.Fatalf("welcome = %s", w)
	}

	bob := wstest.Dial(t, n.WS("name=bob"), nil)
	if w := bob.Welcome(); w.Count() != 2 {
		t.Fatalf("bob's welcome = %s, want online 2", w)
	}
	j := alice.Expect("bob's join", wstest.IsEvent("join", "bob", "lobby"))
	if j.Count() != 2 || !strings.Contains(j.Text(), "2") {
		t.Fatalf("join = %s", j)
	}
	// The welcome stands for bob's own lobby join: he gets no join for it.
	bob.Send(`{"type":"ping"}`)
	bob.QuietUntil(wstest.IsPong, wstest.IsEvent("join", "bob", "lobby"))

	// Explicit joins and leaves: the joiner gets its own event too.
	bob.Send(`{"type":"join","room":"dev"}`)
	if f := bob.Expect("own join", wstest.IsEvent("join", "bob", "dev")); f.Count() != 1 {
		t.Fatalf("own join = %s", f)
	}
	alice.Send(`{"type":"join","room":"dev"}`)
	alice.Expect("own join", wstest.IsEvent("join", "alice", "dev"))
	if f := bob.Expect("alice's join", wstest.IsEvent("join", "alice", "dev")); f.Count() != 2 {
		t.Fatalf("join = %s", f)
	}
	alice.Send(`{"type":"leave","room":"dev"}`)
	if f := alice.Expect("own leave", wstest.IsEvent("leave", "alice", "dev")); f.Count() != 1 {
		t.Fatalf("own leave = %s", f)
	}
	bob.Expect("alice's leave", wstest.IsEvent("leave", "alice", "dev"))

	// A disconnect is announced with the new count.
	bob.WS.Close(websocket.StatusNormalClosure, "bye")
	if f := alice.Expect("bob's leave", wstest.IsEvent("leave", "bob", "lobby")); f.Count() != 1 {
		t.Fatalf("leave = %s", f)
	}
}

// A plain GET of the WebSocket endpoint says what it is, in JSON.
func TestPlainGetOfWS(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	status, body := request(t, "GET", n.URL()+"/ws", "", "")
	if status != 426 || body["error"] == nil {
		t.Fatalf("GET /ws = %d %v, want 426 with a JSON error", status, body)
	}
}

func TestGuestNames(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	g := wstest.Dial(t, n.WS(""), nil).Welcome()
	if !strings.HasPrefix(g.User, "guest-") {
		t.Fatalf("anonymous user = %q", g.User)
	}
	if g2 := wstest.Dial(t, n.WS("name="), nil).Welcome(); !strings.HasPrefix(g2.User, "guest-") || g2.User == g.User {
		t.Fatalf("second guest = %q (first %q)", g2.User, g.User)
	}
	for _, bad := range []string{"a%20b", strings.Repeat("x", 33), "%C3%A9", "a:b"} {
		_, err := wstest.TryDial(t, n.WS("name="+bad), nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), `"error"`) {
			t.Errorf("name %q: %v, want HTTP 400 with a JSON error", bad, err)
		}
	}
}

func TestChat(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	alice := wstest.Dial(t, n.WS("name=alice"), nil)
	alice.Welcome()
	bob := wstest.Dial(t, n.WS("name=bob"), nil)
	bob.Welcome()
	carol := wstest.Dial(t, n.WS("name=carol"), nil)
	carol.Welcome()

	alice.Send(`{"type":"message","data":{"text":"hi","n":[1,2]}}`)
	for _, c := range []*wstest.Client{alice, bob, carol} {
		f := c.Expect("chat", func(f wstest.Frame) bool { return f.Type == "message" })
		if f.User != "alice" || f.Room != "lobby" || string(f.Data) != `{"text":"hi","n":[1,2]}` || f.ID == "" || f.TS == 0 {
			t.Fatalf("chat = %s", f)
		}
	}

	// A frame that is not JSON is chat to lobby, exactly as typed.
	bob.Send("  hello <there> \"you\"\n")
	f := carol.Expect("plain text chat", func(f wstest.Frame) bool { return f.Type == "message" && f.User == "bob" })
	if f.Text() != "  hello <there> \"you\"\n" {
		t.Fatalf("plain text arrived as %q", f.Text())
	}

	// Room chat reaches members only, sender included.
	alice.Send(`{"type":"join","room":"dev"}`)
	alice.Expect("own join", wstest.IsEvent("join", "alice", "dev"))
	bob.Send(`{"type":"join","room":"dev"}`)
	alice.Expect("bob joined", wstest.IsEvent("join", "bob", "dev"))
	alice.Send(`{"type":"message","room":"dev","data":"dev talk"}`)
	alice.Expect("own room chat", wstest.IsChat("dev talk"))
	bob.Expect("room chat", wstest.IsChat("dev talk"))
	alice.Send(`{"type":"message","data":"marker"}`)
	carol.QuietUntil(wstest.IsChat("marker"), wstest.IsChat("dev talk"))
}

func TestChatOrderPerSender(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	const senders, each = 3, 300
	var receivers []*wstest.Client
	for i := range 3 {
		r := wstest.Dial(t, n.WS(fmt.Sprintf("name=r%d", i)), nil)
		r.Welcome()
		receivers = append(receivers, r)
	}
	var ss []*wstest.Client
	for i := range senders {
		s := wstest.Dial(t, n.WS(fmt.Sprintf("name=s%d", i)), nil)
		s.Welcome()
		ss = append(ss, s)
	}
	done := make(chan struct{})
	for i, s := range ss {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := range each {
				ctx := context.Background()
				if err := s.WS.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"message","data":[%d,%d]}`, i, k)); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	for range ss {
		<-done
	}
	for _, r := range receivers {
		next := make([]int, senders)
		for got := 0; got < senders*each; {
			f := r.Next()
			if f.Type != "message" {
				continue
			}
			var pair [2]int
			if _, err := fmt.Sscanf(string(f.Data), "[%d,%d]", &pair[0], &pair[1]); err != nil {
				t.Fatalf("data %s: %v", f.Data, err)
			}
			if pair[1] != next[pair[0]] {
				t.Fatalf("from s%d got #%d, want #%d: order broken", pair[0], pair[1], next[pair[0]])
			}
			next[pair[0]]++
			got++
		}
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	alice := wstest.Dial(t, n.WS("name=alice"), nil)
	alice.Welcome()
	watcher := wstest.Dial(t, n.WS("name=watcher"), nil)
	watcher.Welcome()
	alice.Expect("watcher's join", wstest.IsEvent("join", "watcher", "lobby"))

	for _, tc := range []struct{ frame, code string }{
		{`{"type":"message","data":`, "bad_json"},
		{`{"type":"message","room":5,"data":"x"}`, "bad_json"},
		{`{"type":"shout","data":"x"}`, "unknown_type"},
		{`{"data":"x"}`, "unknown_type"},
		{`{"type":"message"}`, "bad_message"},
		{"   ", "bad_message"},
		{`{"type":"join","room":"has space"}`, "bad_room"},
		{`{"type":"join","room":""}`, "bad_room"},
		{`{"type":"join","room":"` + strings.Repeat("r", 65) + `"}`, "bad_room"},
		{`{"type":"join"}`, "bad_room"},
		{`{"type":"message","room":"elsewhere","data":"x"}`, "not_member"},
		{`{"type":"leave","room":"elsewhere"}`, "not_member"},
		{`{"type":"join","room":"lobby"}`, "already_member"},
	} {
		alice.Send(tc.frame)
		f := alice.Next()
		if f.Type != "error" || f.Code != tc.code || f.Error == "" {
			t.Errorf("frame %q: got %s, want error %s", tc.frame, f, tc.code)
		}
	}
	ctx := context.Background()
	if err := alice.WS.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if f := alice.Next(); !wstest.IsError("binary")(f) {
		t.Errorf("binary frame: got %s", f)
	}

	// Still connected, and the watcher saw none of it.
	alice.Send(`{"type":"message","data":"still here"}`)
	watcher.QuietUntil(wstest.IsChat("still here"), func(f wstest.Frame) bool { return f.User == "alice" && f.Type != "message" || f.Type == "error" })
	alice.Send(`{"type":"ping"}`)
	alice.Expect("pong", wstest.IsPong)
}

func TestTooManyRooms(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	c := wstest.Dial(t, n.WS("name=joiner"), nil)
	c.Welcome()
	for i := 1; i < 100; i++ { // lobby is the first of 100
		c.Send(fmt.Sprintf(`{"type":"join","room":"r%d"}`, i))
		c.Expect("join", wstest.IsEvent("join", "joiner", fmt.Sprintf("r%d", i)))
	}
	c.Send(`{"type":"join","room":"one-too-many"}`)
	c.Expect("too_many_rooms", wstest.IsError("too_many_rooms"))
	c.Send(`{"type":"leave","room":"r1"}`)
	c.Expect("leave", wstest.IsEvent("leave", "joiner", "r1"))
	c.Send(`{"type":"join","room":"now-fits"}`)
	c.Expect("join after leave", wstest.IsEvent("join", "joiner", "now-fits"))
}

func TestLeaveLobbyThenBroadcast(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	c := wstest.Dial(t, n.WS("name=loner"), nil)
	c.Welcome()
	c.Send(`{"type":"leave","room":"lobby"}`)
	if f := c.Expect("own leave", wstest.IsEvent("leave", "loner", "lobby")); f.Count() != 0 {
		t.Fatalf("leave = %s", f)
	}
	c.Send(`{"type":"message","data":"x"}`)
	c.Expect("not_member", wstest.IsError("not_member"))
	c.Send(`{"type":"join","room":"lobby"}`)
	if f := c.Expect("rejoin", wstest.IsEvent("join", "loner", "lobby")); f.Count() != 1 {
		t.Fatalf("rejoin = %s", f)
	}
}
