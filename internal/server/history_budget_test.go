package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/wstest"
)

// A guest fills a public room with 50 chats of 25 KB; a demo user who
// joins it with last 50 (as the demo page does) is not closed as too slow:
// it gets its own join, marked truncated, then the newest chats that fit
// in its send queue, oldest first, and stays connected (issue 21, item 5).
func TestJoinWithLastOfBigMessages(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	guest := wstest.Dial(t, n.WS("name=guest"), nil)
	guest.Welcome()
	guest.Send(`{"type":"join","room":"pub"}`)
	guest.Expect("own join", wstest.IsEvent("join", "guest", "pub"))
	pad := strings.Repeat("x", 25_000)
	for i := range 50 {
		guest.Send(fmt.Sprintf(`{"type":"message","room":"pub","data":"%d %s"}`, i+1, pad))
		guest.Expect("own chat", func(f wstest.Frame) bool { return f.Type == "message" && f.Seq() == uint64(i+1) })
	}

	demo := wstest.Dial(t, n.WS("name=demo"), nil)
	demo.Welcome()
	demo.Send(`{"type":"join","room":"pub","last":50}`)
	join := demo.Next()
	if !wstest.IsEvent("join", "demo", "pub")(join) || join.Seq() != 50 || !join.Truncated {
		t.Fatalf("first frame after the join: %s, want the own join at seq 50, truncated", join.Raw)
	}
	var seqs []uint64
	for len(seqs) == 0 || seqs[len(seqs)-1] < 50 {
		f := demo.Next()
		if f.Type != "message" || f.Room != "pub" {
			t.Fatalf("after %d replayed chats: %s, want the next chat", len(seqs), f.Raw)
		}
		if len(seqs) > 0 && f.Seq() != seqs[len(seqs)-1]+1 {
			t.Fatalf("chat seq %d after %d: want consecutive, oldest first", f.Seq(), seqs[len(seqs)-1])
		}
		if want := fmt.Sprintf("%d %s", f.Seq(), pad); f.Text() != want {
			t.Fatalf("chat seq %d holds %.20q…, want its own text", f.Seq(), f.Text())
		}
		seqs = append(seqs, f.Seq())
	}
	if len(seqs) < 10 || len(seqs) >= 50 {
		t.Fatalf("replayed %d chats (%d to 50), want the newest that fit in half the 1 MiB queue", len(seqs), seqs[0])
	}
	// Still connected, and live.
	demo.Send(`{"type":"message","room":"pub","data":"still here"}`)
	demo.Expect("own chat after the replay", wstest.IsChat("still here"))
}
