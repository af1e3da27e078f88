package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkClusterWho measures `who` on a 10,000-member room spread over
// three relay processes on one redis-server, end to end: a member asks over
// its WebSocket and reads the answer (1,000 users listed, of 10,000).
//
//	go test -run XXX -bench ClusterWho -benchtime 200x ./cmd/relay
func BenchmarkClusterWho(b *testing.B) {
	const members = 10000
	c := startBackplane(b, "RELAY_PRESENCE_LIMIT=10")
	ctx := context.Background()
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, members)
	sem := make(chan struct{}, 64)
	var failed error
	var mu sync.Mutex
	for i := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p := c.nodes[i%len(c.nodes)]
			ws, _, err := websocket.Dial(ctx, p.ws(fmt.Sprintf("name=m%05d", i)), nil)
			if err == nil {
				err = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"big"}`))
			}
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
				return
			}
			ws.SetReadLimit(-1)
			conns[i] = ws
			go func() { // drains until closed below
				for {
					if _, _, err := ws.Read(ctx); err != nil {
						return
					}
				}
			}()
		}()
	}
	wg.Wait()
	defer func() {
		for _, ws := range conns {
			if ws != nil {
				ws.CloseNow()
			}
		}
	}()
	if failed != nil {
		b.Fatal(failed)
	}

	asker, _, err := websocket.Dial(ctx, c.nodes[0].ws("name=asker"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer asker.CloseNow()
	asker.SetReadLimit(-1)
	ask := func() (online, listed int) {
		if err := asker.Write(ctx, websocket.MessageText, []byte(`{"type":"who","room":"big"}`)); err != nil {
			b.Fatal(err)
		}
		for {
			_, data, err := asker.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var f struct {
				Type   string
				Online int
				Users  []string
			}
			if json.Unmarshal(data, &f) == nil && f.Type == "who" {
				return f.Online, len(f.Users)
			}
		}
	}
	_ = asker.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"big"}`))
	deadline := time.Now().Add(60 * time.Second)
	for {
		online, _ := ask()
		if online == members+1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the room has %d members after 60 s, want %d", online, members+1)
		}
		time.Sleep(200 * time.Millisecond)
	}

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, listed := ask(); listed != 1000 {
			b.Fatalf("who listed %d users, want RELAY_WHO_LIMIT's 1000", listed)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
