package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkClusterFanout measures a chat message's trip from a client on
// node-1 through Redis to clients on all three nodes: latency from the send
// timestamp each message carries, and deliveries per second. Run it with
//
//	go test -run XXX -bench ClusterFanout -benchtime 2000x ./cmd/relay
//
// It sends at a fixed rate so that latency is not queueing behind a burst.
func BenchmarkClusterFanout(b *testing.B) {
	const perNode = 50 // receivers per node
	rate := 200        // messages per second; RELAY_BENCH_RATE overrides
	if v, err := strconv.Atoi(os.Getenv("RELAY_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	c := startBackplane(b) // info: the harness reads the listen address from the log
	ctx := context.Background()

	type receiver struct {
		lat  []time.Duration
		next int
		bad  int // lost or out of order
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	receivers := make([]*receiver, 0, 3*perNode)
	var conns []*websocket.Conn
	for _, p := range c.nodes {
		for i := range perNode {
			ws, _, err := websocket.Dial(ctx, p.ws(fmt.Sprintf("name=r%s-%d", p.id, i)), nil)
			if err != nil {
				b.Fatal(err)
			}
			ws.SetReadLimit(-1)
			conns = append(conns, ws)
			r := &receiver{}
			receivers = append(receivers, r)
			wg.Add(1)
			go func() { // ends when the connection is closed below
				defer wg.Done()
				for {
					_, data, err := ws.Read(ctx)
					if err != nil {
						return
					}
					var f struct {
						Type string `json:"type"`
						Data []int64
					}
					if json.Unmarshal(data, &f) != nil || f.Type != "message" || len(f.Data) != 2 {
						continue
					}
					d := time.Duration(time.Now().UnixNano() - f.Data[1])
					mu.Lock()
					r.lat = append(r.lat, d)
					if int(f.Data[0]) != r.next {
						r.bad++
					}
					r.next = int(f.Data[0]) + 1
					mu.Unlock()
				}
			}()
		}
	}
	sender, _, err := websocket.Dial(ctx, c.nodes[0].ws("name=sender"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sender.CloseNow()
	go func() { // drain the sender's own frames
		for {
			if _, _, err := sender.Read(ctx); err != nil {
				return
			}
		}
	}()

	b.ResetTimer()
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i := range b.N {
		<-tick.C
		msg := `{"type":"message","data":[` + strconv.Itoa(i) + "," + strconv.FormatInt(time.Now().UnixNano(), 10) + "]}"
		if err := sender.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			b.Fatal(err)
		}
	}
	tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := 0
		for _, r := range receivers {
			if r.next == b.N {
				done++
			}
		}
		mu.Unlock()
		if done == len(receivers) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	for _, ws := range conns {
		ws.CloseNow()
	}
	wg.Wait()

	var all []time.Duration
	lost := 0
	for _, r := range receivers {
		all = append(all, r.lat...)
		lost += b.N - len(r.lat) + r.bad
	}
	slices.Sort(all)
	if len(all) == 0 {
		b.Fatal("nothing delivered")
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(lost), "lost")
}
