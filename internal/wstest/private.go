package wstest

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// PrivateRooms is the no-leak scenario for private rooms: members chat,
// come and go and get notifications in private rooms while intruders, on
// every node, join everything they may, try to join and send to what they
// may not (without and with other users' and expired room tokens, and by
// resuming into private rooms), ask who is in them, and count every frame
// they get. Not one may name a private room.
type PrivateRooms struct {
	// Nodes are the WebSocket URLs to spread clients over (ws://host/ws).
	Nodes []string
	// Mint signs a token for sub with extra claims and a time to live.
	Mint func(sub string, ttl time.Duration, extra map[string]any) string
	// Notify posts a notification to a room (POST /api/notify).
	Notify func(room, text string)
	// Messages is how many chat messages each member sends to each
	// private room.
	Messages int
}

var privateRooms = []string{"private-a", "private-b"}

// isPrivate reports whether f carries anything of a private room. Error
// frames answering the intruder's own attempts name the room it asked for,
// and a resume's welcome the rooms it listed: nothing it did not send.
func isPrivate(f Frame) bool {
	if f.Type == "error" || (f.Type == "system" && f.Event == "welcome") {
		return false
	}
	return strings.Contains(f.Raw, "private-")
}

// Run runs the scenario and fails t if a private frame reaches an intruder.
func (p PrivateRooms) Run(t testing.TB) {
	t.Helper()
	dial := func(i int, sub string, extra map[string]any, query string) (*Client, Frame) {
		t.Helper()
		u := p.Nodes[i%len(p.Nodes)] + "?token=" + url.QueryEscape(p.Mint(sub, time.Hour, extra)) + query
		c := Dial(t, u, nil)
		return c, c.Welcome()
	}
	memberClaims := map[string]any{"rooms": []string{"private-*", "public"}}
	intruderClaims := map[string]any{"rooms": []string{"public", "lobby"}}

	var members []*Client
	for i := range len(p.Nodes) * 2 {
		m, _ := dial(i, fmt.Sprintf("member-%d", i), memberClaims, "")
		for _, r := range append([]string{"public"}, privateRooms...) {
			m.SendJSON(map[string]any{"type": "join", "room": r})
			m.Expect("member joins "+r, IsEvent("join", fmt.Sprintf("member-%d", i), r))
		}
		members = append(members, m)
	}

	var intruders []*Client
	var got []Frame
	record := func(c *Client, until func(Frame) bool, desc string) {
		t.Helper()
		deadline := time.After(Wait)
		for {
			select {
			case f := <-c.Frames:
				got = append(got, f)
				if until(f) {
					return
				}
			case <-deadline:
				t.Fatalf("intruder: %s not seen within %v", desc, Wait)
			}
		}
	}
	for i := range p.Nodes {
		sub := fmt.Sprintf("eve-%d", i)
		c, _ := dial(i, sub, intruderClaims, "")
		intruders = append(intruders, c)
		c.SendJSON(map[string]any{"type": "join", "room": "public"})
		record(c, IsEvent("join", sub, "public"), "own join of public")
		for _, r := range privateRooms {
			for _, tok := range []string{
				"",
				p.Mint("member-0", time.Hour, map[string]any{"room": r}), // another user's
				p.Mint(sub, -time.Hour, map[string]any{"room": r}),       // expired
				p.Mint(sub, time.Hour, map[string]any{"room": "public"}), // another room's
			} {
				join := map[string]any{"type": "join", "room": r}
				if tok != "" {
					join["token"] = tok
				}
				c.SendJSON(join)
				record(c, IsError("forbidden"), "forbidden join of "+r)
			}
			c.SendJSON(map[string]any{"type": "message", "room": r, "data": "let me in"})
			record(c, IsError("not_member"), "refused send to "+r)
			c.SendJSON(map[string]any{"type": "who", "room": r})
			record(c, IsError("not_member"), "refused who of "+r)
			c.SendJSON(map[string]any{"type": "leave", "room": r})
			record(c, IsError("not_member"), "refused leave of "+r)
		}
		// A resume cannot smuggle it in either.
		rc, w := dial(i, sub, intruderClaims, "&epoch=e&since="+url.QueryEscape("lobby:0,private-a:0,public:0,private-b:0"))
		if strings.Join(w.Forbidden, ",") != "private-a,private-b" {
			t.Fatalf("resuming intruder's welcome = %s, want forbidden private-a, private-b", w.Raw)
		}
		intruders = append(intruders, rc)
	}

	// The members talk, come and go, and are notified, in every room.
	for n := range p.Messages {
		for i, m := range members {
			for _, r := range append([]string{"public"}, privateRooms...) {
				m.SendJSON(map[string]any{"type": "message", "room": r, "data": fmt.Sprintf("%s %d from member-%d", r, n, i)})
			}
		}
	}
	for _, r := range append([]string{"public"}, privateRooms...) {
		p.Notify(r, "notice to "+r)
	}
	churn, _ := dial(0, "member-x", memberClaims, "")
	for _, r := range privateRooms {
		churn.SendJSON(map[string]any{"type": "join", "room": r})
		churn.Expect("join", IsEvent("join", "member-x", r))
		churn.SendJSON(map[string]any{"type": "who", "room": r})
		churn.Expect("who", IsWho(r))
		churn.SendJSON(map[string]any{"type": "leave", "room": r})
		churn.Expect("leave", IsEvent("leave", "member-x", r))
	}
	// Every member got everything: the last member's last message and
	// every notice are in.
	last := len(members) - 1
	for _, m := range members {
		want := map[string]bool{}
		for _, r := range append([]string{"public"}, privateRooms...) {
			want[fmt.Sprintf("%s %d from member-%d", r, p.Messages-1, last)] = true
			want["notice to "+r] = true
		}
		m.Expect("every room's last message and notice", func(f Frame) bool {
			delete(want, f.Text())
			return len(want) == 0
		})
	}
	// Then each intruder's round trip: what was sent to it has arrived.
	publicSeen := 0
	for i, c := range intruders {
		c.SendJSON(map[string]any{"type": "ping"})
		record(c, IsPong, "pong")
		if i%2 == 0 { // the first connection of each intruder joined public
			for _, f := range got {
				if f.Type == "notification" && f.Room == "public" {
					publicSeen++
				}
			}
		}
	}
	leaked := 0
	for _, f := range got {
		if isPrivate(f) {
			leaked++
			t.Errorf("an intruder got a private frame: %s", f.Raw)
		}
	}
	t.Logf("intruders: %d frames, %d of them private; members: %d messages each in each private room", len(got), leaked, p.Messages*len(members))
	if publicSeen == 0 {
		t.Fatal("intruders got nothing of public: the probe sees nothing")
	}
}
