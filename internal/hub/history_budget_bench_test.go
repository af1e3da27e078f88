package hub_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/redistest"
)

// BenchmarkHistoryBudget measures what a join with last=200 and a resume
// naming 5 rooms cost when each room holds 200 messages of 60 KB (issue 21,
// items 5 and 6): bytes allocated per operation (-benchmem), and with Redis
// the server's CPU per operation, from INFO commandstats.
//
//	go test -run XXX -bench HistoryBudget -benchmem ./internal/hub
func BenchmarkHistoryBudget(b *testing.B) {
	const rooms, perRoom, size = 5, 200, 60_000
	keep := broker.HistoryOptions{Size: perRoom, TTL: time.Hour}
	brokers := []struct {
		name string
		new  func(b *testing.B) (hub.Broker, *redis.Client)
	}{
		{"embedded", func(b *testing.B) (hub.Broker, *redis.Client) {
			m := broker.NewMemory(broker.WithHistory(keep))
			b.Cleanup(func() { m.Close() })
			return m, nil
		}},
		{"redis", func(b *testing.B) (hub.Broker, *redis.Client) {
			srv := redistest.Start(b)
			r, err := broker.NewRedis(broker.RedisOptions{URL: srv.URL(), History: keep})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { r.Close() })
			admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			b.Cleanup(func() { admin.Close() })
			return r, admin
		}},
	}
	for _, br := range brokers {
		b.Run("broker="+br.name, func(b *testing.B) {
			ctx := context.Background()
			bk, admin := br.new(b)
			h := hub.New(hub.Options{Node: "bench", PresenceLimit: 100, PresenceInterval: time.Hour}, bk)
			if err := h.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			names := make([]string, rooms)
			for i := range names {
				names[i] = fmt.Sprintf("big%d", i+1)
				fill(b, h, names[i], perRoom, size)
			}
			owner := &queueConn{q: make([][]byte, 0, 64)}
			oc, err := h.Register(ctx, owner, "owner", nil, protocol.Resume{})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Unregister(ctx, oc)
			w := owner.q[0]
			epoch := string(w[strings.Index(string(w), `"epoch":"`)+9:])
			epoch = epoch[:strings.IndexByte(epoch, '"')]

			b.Run("op=join-last200", func(b *testing.B) {
				c, err := h.Register(ctx, &queueConn{q: make([][]byte, 0, 64)}, "joiner", nil, protocol.Resume{})
				if err != nil {
					b.Fatal(err)
				}
				defer h.Unregister(ctx, c)
				measure(b, admin, func() {
					if err := h.Join(ctx, c, names[0], 200); err != nil {
						b.Fatal(err)
					}
					if err := h.Leave(ctx, c, names[0]); err != nil {
						b.Fatal(err)
					}
				})
			})
			b.Run(fmt.Sprintf("op=resume-%drooms", rooms), func(b *testing.B) {
				from := protocol.Resume{Epoch: epoch, Since: map[string]uint64{}, Rooms: names}
				for _, r := range names {
					from.Since[r] = 0
				}
				measure(b, admin, func() {
					c, err := h.Register(ctx, &queueConn{q: make([][]byte, 0, 64)}, "back", nil, from)
					if err != nil {
						b.Fatal(err)
					}
					h.Unregister(ctx, c)
				})
			})
		})
	}
}

// measure runs op b.N times, reporting Redis's time per op when admin is
// set: in scripts (INFO commandstats: history.lua runs as EVALSHA; the
// commands it calls are counted in it, so they are not added), and in all
// (INFO cpu: the process's CPU, replies written included).
func measure(b *testing.B, admin *redis.Client, op func()) {
	b.Helper()
	script, cpu := redisUsec(b, admin)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		op()
	}
	b.StopTimer()
	if admin != nil {
		script2, cpu2 := redisUsec(b, admin)
		b.ReportMetric(float64(script2-script)/float64(b.N), "redis-script-µs/op")
		b.ReportMetric(float64(cpu2-cpu)/float64(b.N), "redis-cpu-µs/op")
	}
}

// redisUsec returns the usec Redis spent in scripts and its CPU time in
// usec, so far.
func redisUsec(b *testing.B, admin *redis.Client) (script, cpu int64) {
	if admin == nil {
		return 0, 0
	}
	info, err := admin.Info(context.Background(), "commandstats", "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, value, _ := strings.Cut(line, ":")
		switch name {
		case "cmdstat_eval", "cmdstat_evalsha":
			for _, f := range strings.Split(value, ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					script += n
				}
			}
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(value, 64)
			cpu += int64(f * 1e6)
		}
	}
	return script, cpu
}
