package server_test

import (
	"fmt"
	"testing"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/wstest"
)

// With RELAY_PRESENCE_LIMIT=3, a room of up to 3 announces each join and
// leave; past that, members see at most one presence event per interval.
func TestPresenceRule(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_PRESENCE_LIMIT": "3", "RELAY_PRESENCE_INTERVAL": "200ms"})
	var cs []*wstest.Client
	for i := range 3 {
		c := wstest.Dial(t, n.WS(fmt.Sprintf("name=u%d", i)), nil)
		c.Welcome()
		cs = append(cs, c)
	}
	for _, c := range cs[:2] {
		c.Expect("u2's join (room of 3)", wstest.IsEvent("join", "u2", "lobby"))
	}

	// Three more join: the room is now over the limit.
	for i := 3; i < 6; i++ {
		c := wstest.Dial(t, n.WS(fmt.Sprintf("name=u%d", i)), nil)
		if w := c.Welcome(); w.Count() != i+1 {
			t.Fatalf("u%d welcome = %s", i, w)
		}
		cs = append(cs, c)
	}
	isPresence := func(f wstest.Frame) bool { return f.Type == "system" && f.Event == "presence" && f.Room == "lobby" }
	// u3's join made the room 4: none of the three joins is announced one
	// by one; presence events (the joins may straddle intervals) add up.
	joined := 0
	for joined < 3 {
		f := cs[0].Next()
		switch {
		case f.Event == "join":
			t.Fatalf("per-member join in a room over the limit: %s", f)
		case isPresence(f):
			joined += f.Joined
			if joined == 3 && f.Count() != 6 {
				t.Fatalf("presence = %s, want online 6", f)
			}
		}
	}
	if joined != 3 {
		t.Fatalf("presence events count %d joins, want 3", joined)
	}
	cs[1].Send(`{"type":"ping"}`)
	cs[1].QuietUntil(wstest.IsPong, func(f wstest.Frame) bool { return f.Event == "join" })

	// A leave in the big room is counted, not announced.
	cs[5].WS.Close(websocket.StatusNormalClosure, "")
	p := cs[4].Expect("presence after a leave", func(f wstest.Frame) bool { return isPresence(f) && f.Left == 1 })
	if p.Count() != 5 || p.Joined != 0 {
		t.Fatalf("presence = %s, want online 5, joined 0, left 1", p)
	}
	// Back at the limit after this leave: per-member events again.
	cs[4].WS.Close(websocket.StatusNormalClosure, "")
	cs[0].Expect("presence for u4's leave", func(f wstest.Frame) bool { return isPresence(f) && f.Count() == 4 })
	cs[3].WS.Close(websocket.StatusNormalClosure, "")
	l := cs[0].Expect("u3's leave, announced at the limit", wstest.IsEvent("leave", "u3", "lobby"))
	if l.Count() != 3 {
		t.Fatalf("leave = %s", l)
	}
}

func TestPresenceCounts(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_PRESENCE_LIMIT": "1", "RELAY_PRESENCE_INTERVAL": "100ms"})
	first := wstest.Dial(t, n.WS("name=first"), nil)
	first.Welcome()
	for i := range 4 {
		wstest.Dial(t, n.WS(fmt.Sprintf("name=p%d", i)), nil).Welcome()
	}
	// However the 4 joins fall into intervals, the presence events add up
	// to them and the last one carries the full count.
	joined, last := 0, wstest.Frame{}
	for joined < 4 {
		f := first.Expect("presence", func(f wstest.Frame) bool { return f.Event == "presence" })
		if f.Left != 0 || f.Joined < 1 || f.Data == nil {
			t.Fatalf("presence = %s", f)
		}
		joined += f.Joined
		last = f
	}
	if joined != 4 || last.Count() != 5 {
		t.Fatalf("presence joins add up to %d, last online %d; want 4 and 5", joined, last.Count())
	}
}
