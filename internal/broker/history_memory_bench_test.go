package broker_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
)

// BenchmarkMemoryHistoryFootprint measures what the embedded broker's
// history holds: 10,000 rooms × 200 chat messages of a typical size (the
// README's figure). Run with -benchtime 1x:
//
//	go test -run XXX -bench HistoryFootprint -benchtime 1x ./internal/broker
func BenchmarkMemoryHistoryFootprint(b *testing.B) {
	const rooms, perRoom = 10000, 200
	msg := []byte(`{"type":"message","room":"room-00000","user":"alice","data":"a chat line of about sixty characters, as people type them","id":"9e84b158-4f2","ts":1795632113590}`)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := broker.NewMemory(broker.WithHistory(broker.HistoryOptions{Size: perRoom, TTL: time.Hour}))
		ctx := context.Background()
		for r := range rooms {
			topic := fmt.Sprintf("room:room-%05d", r)
			for range perRoom {
				if _, err := m.PublishStream(ctx, topic, msg); err != nil {
					b.Fatal(err)
				}
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(held/(1<<20), "MiB")
		b.ReportMetric(held/rooms, "B/stream")
		b.ReportMetric(held/(rooms*perRoom), "B/message")
		b.ReportMetric(float64(len(msg)+len(`,"seq":200`)), "B/payload")
		runtime.KeepAlive(m)
		m.Close()
	}
}
