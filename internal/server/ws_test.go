package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

func TestWelcomeAndJoin(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_NODE_ID": "node-w"})
	alice := dial(t, n.wsURL("name=alice"), nil)
	w := alice.welcome()
	if w.User != "alice" || w.Node != "node-w" || w.Room != "lobby" || online(w) != 1 || w.text() == "" {
		t.Fatalf("welcome = %s", w)
	}

	bob := dial(t, n.wsURL("name=bob"), nil)
	if w := bob.welcome(); online(w) != 2 {
		t.Fatalf("bob's welcome = %s, want online 2", w)
	}
	j := alice.expect("bob's join", isEvent("join", "bob", "lobby"))
	if online(j) != 2 || !strings.Contains(j.text(), "2") {
		t.Fatalf("join = %s", j)
	}
	// The welcome stands for bob's own lobby join: he gets no join for it.
	bob.send(`{"type":"ping"}`)
	bob.quietUntil(isPong, isEvent("join", "bob", "lobby"))

	// Explicit joins and leaves: the joiner gets its own event too.
	bob.send(`{"type":"join","room":"dev"}`)
	if f := bob.expect("own join", isEvent("join", "bob", "dev")); online(f) != 1 {
		t.Fatalf("own join = %s", f)
	}
	alice.send(`{"type":"join","room":"dev"}`)
	alice.expect("own join", isEvent("join", "alice", "dev"))
	if f := bob.expect("alice's join", isEvent("join", "alice", "dev")); online(f) != 2 {
		t.Fatalf("join = %s", f)
	}
	alice.send(`{"type":"leave","room":"dev"}`)
	if f := alice.expect("own leave", isEvent("leave", "alice", "dev")); online(f) != 1 {
		t.Fatalf("own leave = %s", f)
	}
	bob.expect("alice's leave", isEvent("leave", "alice", "dev"))

	// A disconnect is announced with the new count.
	bob.ws.Close(websocket.StatusNormalClosure, "bye")
	if f := alice.expect("bob's leave", isEvent("leave", "bob", "lobby")); online(f) != 1 {
		t.Fatalf("leave = %s", f)
	}
}

func TestGuestNames(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	g := dial(t, n.wsURL(""), nil).welcome()
	if !strings.HasPrefix(g.User, "guest-") {
		t.Fatalf("anonymous user = %q", g.User)
	}
	if g2 := dial(t, n.wsURL("name="), nil).welcome(); !strings.HasPrefix(g2.User, "guest-") || g2.User == g.User {
		t.Fatalf("second guest = %q (first %q)", g2.User, g.User)
	}
	for _, bad := range []string{"a%20b", strings.Repeat("x", 33), "%C3%A9", "a:b"} {
		_, err := tryDial(t, n.wsURL("name="+bad), nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), `"error"`) {
			t.Errorf("name %q: %v, want HTTP 400 with a JSON error", bad, err)
		}
	}
}

func TestChat(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := dial(t, n.wsURL("name=alice"), nil)
	alice.welcome()
	bob := dial(t, n.wsURL("name=bob"), nil)
	bob.welcome()
	carol := dial(t, n.wsURL("name=carol"), nil)
	carol.welcome()

	alice.send(`{"type":"message","data":{"text":"hi","n":[1,2]}}`)
	for _, c := range []*client{alice, bob, carol} {
		f := c.expect("chat", func(f frame) bool { return f.Type == "message" })
		if f.User != "alice" || f.Room != "lobby" || string(f.Data) != `{"text":"hi","n":[1,2]}` || f.ID == "" || f.TS == 0 {
			t.Fatalf("chat = %s", f)
		}
	}

	// A frame that is not JSON is chat to lobby, exactly as typed.
	bob.send("  hello <there> \"you\"\n")
	f := carol.expect("plain text chat", func(f frame) bool { return f.Type == "message" && f.User == "bob" })
	if f.text() != "  hello <there> \"you\"\n" {
		t.Fatalf("plain text arrived as %q", f.text())
	}

	// Room chat reaches members only, sender included.
	alice.send(`{"type":"join","room":"dev"}`)
	alice.expect("own join", isEvent("join", "alice", "dev"))
	bob.send(`{"type":"join","room":"dev"}`)
	alice.expect("bob joined", isEvent("join", "bob", "dev"))
	alice.send(`{"type":"message","room":"dev","data":"dev talk"}`)
	alice.expect("own room chat", isChat("dev talk"))
	bob.expect("room chat", isChat("dev talk"))
	alice.send(`{"type":"message","data":"marker"}`)
	carol.quietUntil(isChat("marker"), isChat("dev talk"))
}

func TestChatOrderPerSender(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	const senders, each = 3, 300
	var receivers []*client
	for i := range 3 {
		r := dial(t, n.wsURL(fmt.Sprintf("name=r%d", i)), nil)
		r.welcome()
		receivers = append(receivers, r)
	}
	var ss []*client
	for i := range senders {
		s := dial(t, n.wsURL(fmt.Sprintf("name=s%d", i)), nil)
		s.welcome()
		ss = append(ss, s)
	}
	done := make(chan struct{})
	for i, s := range ss {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := range each {
				ctx := context.Background()
				if err := s.ws.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"message","data":[%d,%d]}`, i, k)); err != nil {
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
			f := r.next()
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
	n := startNode(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	alice := dial(t, n.wsURL("name=alice"), nil)
	alice.welcome()
	watcher := dial(t, n.wsURL("name=watcher"), nil)
	watcher.welcome()
	alice.expect("watcher's join", isEvent("join", "watcher", "lobby"))

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
		alice.send(tc.frame)
		f := alice.next()
		if f.Type != "error" || f.Code != tc.code || f.Error == "" {
			t.Errorf("frame %q: got %s, want error %s", tc.frame, f, tc.code)
		}
	}
	ctx := context.Background()
	if err := alice.ws.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if f := alice.next(); !isError("binary")(f) {
		t.Errorf("binary frame: got %s", f)
	}

	// Still connected, and the watcher saw none of it.
	alice.send(`{"type":"message","data":"still here"}`)
	watcher.quietUntil(isChat("still here"), func(f frame) bool { return f.User == "alice" && f.Type != "message" || f.Type == "error" })
	alice.send(`{"type":"ping"}`)
	alice.expect("pong", isPong)
}

func TestTooManyRooms(t *testing.T) {
	t.Parallel()
	n := startNode(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	c := dial(t, n.wsURL("name=joiner"), nil)
	c.welcome()
	for i := 1; i < 100; i++ { // lobby is the first of 100
		c.send(fmt.Sprintf(`{"type":"join","room":"r%d"}`, i))
		c.expect("join", isEvent("join", "joiner", fmt.Sprintf("r%d", i)))
	}
	c.send(`{"type":"join","room":"one-too-many"}`)
	c.expect("too_many_rooms", isError("too_many_rooms"))
	c.send(`{"type":"leave","room":"r1"}`)
	c.expect("leave", isEvent("leave", "joiner", "r1"))
	c.send(`{"type":"join","room":"now-fits"}`)
	c.expect("join after leave", isEvent("join", "joiner", "now-fits"))
}

func TestLeaveLobbyThenBroadcast(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	c := dial(t, n.wsURL("name=loner"), nil)
	c.welcome()
	c.send(`{"type":"leave","room":"lobby"}`)
	if f := c.expect("own leave", isEvent("leave", "loner", "lobby")); online(f) != 0 {
		t.Fatalf("leave = %s", f)
	}
	c.send(`{"type":"message","data":"x"}`)
	c.expect("not_member", isError("not_member"))
	c.send(`{"type":"join","room":"lobby"}`)
	if f := c.expect("rejoin", isEvent("join", "loner", "lobby")); online(f) != 1 {
		t.Fatalf("rejoin = %s", f)
	}
}
