package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// ownCPU returns this process's CPU time.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idle opens the connections, holds them, then drops them all at once.
func (r *runner) idle(ctx context.Context) (*Report, error) {
	rep := &Report{Scenario: "idle", URL: r.o.URL, Conns: r.o.Conns}
	before, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	stop := r.startProgress(r.openConns)
	start := time.Now()
	opened, err := r.connect(ctx, 0, r.o.Conns, true)
	rep.ConnectSeconds = time.Since(start).Seconds()
	if err != nil {
		stop()
		r.closeAll()
		return nil, err
	}
	rep.countNodes(opened)
	// Settle (presence events, GC), then measure the hold.
	time.Sleep(2 * time.Second)
	held, err := r.scrape(ctx)
	if err != nil {
		stop()
		r.closeAll()
		return nil, err
	}
	select {
	case <-time.After(r.o.Duration):
	case <-ctx.Done():
	}
	after, err := r.scrape(ctx)
	stop()
	if err != nil {
		r.closeAll()
		return nil, err
	}
	between(rep, held, after)
	rep.ServerRSSBeforeMB = before.rss / 1e6
	rep.KBPerConn = (after.rss - before.rss) / float64(r.o.Conns) / 1000
	rep.ServerRSSPeakMB = after.rss / 1e6
	for _, c := range r.conns {
		rep.PresenceFrames += int(c.presence.Load())
	}

	// Everyone leaves at once: the server must not balloon or stall.
	start = time.Now()
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		s, err := r.scrape(ctx)
		if err == nil {
			rep.ServerRSSPeakMB = max(rep.ServerRSSPeakMB, s.rss/1e6)
			if s.connections == 0 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep.DisconnectSec = time.Since(start).Seconds()
	r.readers.Wait()
	r.fillLatency(rep)
	return rep, nil
}

// fanout connects subscribers over the rooms and publishes messages at a
// fixed rate, through POST /api/notify or a WebSocket publisher per room.
func (r *runner) fanout(ctx context.Context) (*Report, error) {
	o := r.o
	rep := &Report{Scenario: "fanout", URL: o.URL, Conns: o.Conns}
	defer r.closeAll()
	stop := r.startProgress(r.openConns)
	defer stop()

	start := time.Now()
	subs, err := r.connect(ctx, 0, o.Conns, true)
	if err != nil {
		return nil, err
	}
	rep.ConnectSeconds = time.Since(start).Seconds()
	rep.countNodes(subs)
	var stalled []*conn
	if o.Stall > 0 {
		if stalled, err = r.connect(ctx, o.Conns, o.Stall, false); err != nil {
			return nil, err
		}
	}
	// Publishers (ws mode): one per room, ids after everyone else's; their
	// own copies are not counted.
	pubs := make(map[int]*conn) // by room index
	if o.Publish == "ws" {
		cs, err := r.connect(ctx, o.Conns+o.Stall, o.Rooms, true)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			c.publisher.Store(true)
			pubs[roomIndex(c.id, o.Rooms)] = c
		}
	}

	before, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	cpu0 := ownCPU()
	r.deliveries.Store(0)
	if !o.Quiet {
		fmt.Fprintf(r.out, "bench: %d subscribers connected; publishing %d messages at %g/s\n", o.Conns, o.Messages, o.Rate)
	}
	t0 := time.Now()
	stopDrops := r.startDrops(subs)
	sent, err := r.publishAll(ctx, rep, pubs)
	stopDrops()
	if err != nil {
		return nil, err
	}
	published := time.Since(t0)

	fromRoom := make([]map[int]int, o.Rooms) // what each room's members should get, by publisher
	for id, n := range sent {
		k := roomIndex(id, o.Rooms)
		if fromRoom[k] == nil {
			fromRoom[k] = map[int]int{}
		}
		fromRoom[k][id] = n
	}
	expected := 0
	for _, c := range subs {
		for _, n := range fromRoom[roomIndex(c.id, o.Rooms)] {
			expected += n
		}
	}
	// Wait for the last deliveries: until every subscriber has all, or 5 s.
	if err := r.settle(ctx, rep, expected, before, cpu0, t0); err != nil {
		return nil, err
	}
	for _, c := range subs {
		rep.tally(c.tr, fromRoom[roomIndex(c.id, o.Rooms)])
	}
	rep.Expected = expected
	rep.DeliveriesPerS = float64(rep.Delivered) / published.Seconds()
	r.fillResume(rep)
	for _, c := range stalled {
		if c.closeCode.Load() == 1008 || !r.stalledOpen(ctx, c) {
			rep.StalledClosed++
		}
	}
	r.fillLatency(rep)
	return rep, nil
}

func roomIndex(id, rooms int) int { return id % rooms }

// publishAll publishes o.Messages on schedule, round robin over the rooms
// and over o.Publishers concurrent publishers, so that a publish the server
// is slow to accept does not hold up the next (through a busy proxy a
// notify can take longer than the interval). Publisher p of room k has id
// k + Rooms*p and sends its messages in order, numbered from 0; it returns
// how many each id sent. ws mode has one publisher per room, pubs.
func (r *runner) publishAll(ctx context.Context, rep *Report, pubs map[int]*conn) (map[int]int, error) {
	o := r.o
	pad := padding(o.Size)
	client := &http.Client{Timeout: 10 * time.Second}
	interval := time.Duration(float64(time.Second) / o.Rate)
	accept := newHistogram() // how long the server took to accept each publish
	workers := o.Publishers
	if o.Publish == "ws" {
		workers = 1
	}
	type job struct {
		room int
		due  time.Time
	}
	var mu sync.Mutex // guards sent, head and rep's publish counts
	sent := map[int]int{}
	head := map[int]uint64{} // by room: the last position a notify was given
	jobs := make([]chan job, workers)
	var wg sync.WaitGroup
	for w := range workers {
		jobs[w] = make(chan job, o.Messages/workers+1)
		wg.Add(1)
		go func() { // one publisher: its messages in order; ends when its jobs do
			defer wg.Done()
			for j := range jobs[w] {
				id := j.room + o.Rooms*w
				mu.Lock()
				seq := sent[id]
				if time.Since(j.due) > interval {
					rep.PublishLate++
				}
				mu.Unlock()
				// With -resume a refused publish is tried again, as a
				// careful backend does, for up to 10 s: faults are the
				// point of the run, and every message should get through.
				for attempt := 0; ; attempt++ {
					sentAt := time.Now()
					landed, uncertain, err := r.publishOnce(ctx, client, pubs[j.room], j.room, benchData(id, seq, sentAt, pad), head, &mu)
					mu.Lock()
					if landed {
						rep.PublishLanded++
					}
					if uncertain {
						rep.PublishUncertain++
					}
					if err == nil {
						accept.add(time.Since(sentAt))
						sent[id]++
						rep.Published++
					} else {
						rep.PublishErrors++
					}
					mu.Unlock()
					if err == nil || !o.Resume || uncertain || attempt == 49 || ctx.Err() != nil {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	t0 := time.Now()
	var err error
	for i := range o.Messages {
		due := t0.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err != nil {
			break
		}
		jobs[i%workers] <- job{room: i % o.Rooms, due: due}
	}
	for _, ch := range jobs {
		close(ch)
	}
	wg.Wait()
	q := accept.quantiles(0.99, 1)
	rep.PublishP99Ms, rep.PublishMaxMs = ms(q[0]), ms(q[1])
	return sent, err
}

// publishOnce publishes data to room k once, through its WebSocket
// publisher (ws mode) or a notify. A notify that failed but may have been
// published (no answer, a 5xx) is looked for in the room's history after
// the last position a notify was given (head, under mu): landed, it counts
// as published; uncertain, no answer came. Retrying it blindly would make a
// second copy if it had landed.
func (r *runner) publishOnce(ctx context.Context, client *http.Client, pub *conn, k int, data string, head map[int]uint64, mu *sync.Mutex) (landed, uncertain bool, err error) {
	room := r.o.room(k)
	if r.o.Publish == "ws" {
		b, _ := json.Marshal(map[string]string{"type": "message", "room": room, "data": data})
		if ws := pub.current(); ws != nil {
			return false, false, ws.Write(ctx, websocket.MessageText, b)
		}
		return false, false, errors.New("publisher disconnected")
	}
	mu.Lock()
	since := head[k]
	mu.Unlock()
	at, maybe, err := r.notify(ctx, client, room, data)
	if err != nil && maybe {
		var known bool
		landed, known = r.landed(ctx, client, room, since, data)
		uncertain = !known
		if landed {
			err = nil
		}
	}
	mu.Lock()
	head[k] = max(head[k], at)
	mu.Unlock()
	return landed, uncertain, err
}

// settle waits for the last deliveries (until expected have arrived, or
// 5 s), then fills in the server's and the load generator's figures since
// before / cpu0 / t0.
func (r *runner) settle(ctx context.Context, rep *Report, expected int, before serverStats, cpu0 time.Duration, t0 time.Time) error {
	// With -resume, receivers still reconnecting catch up by replay: wait
	// for them too, up to a minute.
	limit := time.Now().Add(5 * time.Second)
	if r.o.Resume {
		limit = time.Now().Add(time.Minute)
	}
	last, lastAt := r.deliveries.Load(), time.Now()
	for ctx.Err() == nil && time.Now().Before(limit) {
		d, away := r.deliveries.Load(), r.reconnecting.Load()
		if d != last {
			last, lastAt = d, time.Now()
		}
		if away == 0 && (int(d) >= expected || time.Since(lastAt) > 5*time.Second) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A replica may still be restarting: the run's own figures stand without
	// the server's.
	if after, err := r.scrape(ctx); err != nil {
		fmt.Fprintf(r.out, "bench: warning: no server figures after the run: %v\n", err)
	} else {
		between(rep, before, after)
	}
	rep.BenchCPUPercent = 100 * (ownCPU() - cpu0).Seconds() / time.Since(t0).Seconds()
	rep.MeasuredFromMs, rep.MeasuredToMs = t0.UnixMilli(), time.Now().UnixMilli()
	return nil
}

// startDrops cuts random subscribers' connections at -drop-rate per second
// until the returned func is called (it waits for the dropper to stop).
func (r *runner) startDrops(subs []*conn) func() {
	if r.o.DropRate <= 0 || len(subs) == 0 {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // ends at stop
		defer close(done)
		t := time.NewTicker(time.Duration(float64(time.Second) / r.o.DropRate))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if subs[rand.IntN(len(subs))].cut() {
				r.drops.Add(1)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// fillResume adds what -resume and -drop-rate did to the report.
func (r *runner) fillResume(rep *Report) {
	rep.Resume = r.o.Resume
	rep.Drops = int(r.drops.Load())
	rep.Reconnects = int(r.reconnects.Load())
	rep.RecoveredTrue = int(r.recovered.Load())
	rep.RecoveredFalse = int(r.notRecovered.Load())
	rep.Resumes = rep.RecoveredTrue + rep.RecoveredFalse
	rep.RedialErrors = int(r.redialErrors.Load())
	rep.ResumeFailures = int(r.resumeFailures.Load())
	rep.DuplicatesDropped = int(r.dupsDropped.Load())
	rep.StreamGaps = int(r.streamGaps.Load())
	rep.GapFrames = int(r.gapFrames.Load())
}

// tally adds one receiver's accounting, given what each publisher sent.
func (rep *Report) tally(tr *tracker, sent map[int]int) {
	got, lost, dups, re := tr.counts(sent)
	rep.Delivered += got
	rep.Lost += lost
	rep.Duplicated += dups
	rep.Reordered += re
}

// stalledOpen reports whether a stalled connection is still open, reading
// what the server sent it to find out (ending the stall).
func (r *runner) stalledOpen(ctx context.Context, c *conn) bool {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		_, rd, err := c.current().Reader(rctx)
		if err != nil {
			return rctx.Err() != nil // still open if only our patience ran out
		}
		_, _ = io.Copy(io.Discard, rd)
	}
}

// notify posts one notification and returns the position the server gave
// it. maybe says whether a failure may have published it all the same: no
// answer, or a 5xx (a node, nginx or Redis going away after the script ran).
func (r *runner) notify(ctx context.Context, client *http.Client, room, text string) (seq uint64, maybe bool, err error) {
	body, _ := json.Marshal(map[string]string{"message": text, "room": room})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.o.URL+"/api/notify", bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.o.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, true, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, resp.StatusCode >= 500, fmt.Errorf("notify: HTTP %d", resp.StatusCode)
	}
	var answer struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	_, _ = io.Copy(io.Discard, resp.Body)
	return answer.Seq, false, nil
}

// landed asks GET /api/history whether a notification whose publish failed
// is in the room's stream after position since all the same, as a careful
// backend does before it retries. known is false when no answer came within
// 10 s.
func (r *runner) landed(ctx context.Context, client *http.Client, room string, since uint64, text string) (landed, known bool) {
	u := r.o.URL + "/api/history?room=" + url.QueryEscape(room) + "&since=" + strconv.FormatUint(since, 10) + "&limit=1000"
	for try := range 20 {
		if try > 0 {
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				return false, false
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false, false
		}
		if r.o.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+r.o.APIKey)
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var h struct {
			Messages []struct {
				Data string `json:"data"`
			} `json:"messages"`
		}
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		for _, m := range h.Messages {
			if m.Data == text {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

// chat connects clients over the rooms; each sends a message every
// o.Every, with starts spread so that the load is even.
func (r *runner) chat(ctx context.Context) (*Report, error) {
	o := r.o
	rep := &Report{Scenario: "chat", URL: o.URL, Conns: o.Conns}
	defer r.closeAll()
	stop := r.startProgress(r.openConns)
	defer stop()

	start := time.Now()
	clients, err := r.connect(ctx, 0, o.Conns, true)
	if err != nil {
		return nil, err
	}
	rep.ConnectSeconds = time.Since(start).Seconds()
	rep.countNodes(clients)
	before, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	cpu0 := ownCPU()
	r.deliveries.Store(0)
	pad := padding(o.Size)
	sent := make([]int, o.Conns)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() { // one sender per client, bounded by the duration
			defer wg.Done()
			offset := time.Duration(int64(o.Every) * int64(i) / int64(o.Conns))
			for seq := 0; ; seq++ {
				due := t0.Add(offset + time.Duration(seq)*o.Every)
				if due.Sub(t0) >= o.Duration {
					return
				}
				select {
				case <-time.After(time.Until(due)):
				case <-ctx.Done():
					return
				}
				b, _ := json.Marshal(map[string]string{"type": "message", "room": c.room, "data": benchData(c.id, seq, time.Now(), pad)})
				if err := c.current().Write(ctx, websocket.MessageText, b); err != nil {
					return
				}
				sent[i] = seq + 1
				r.sent.Add(1)
			}
		}()
	}
	wg.Wait()
	published := time.Since(t0)

	byRoom := make(map[string]map[int]int)
	for i, c := range clients {
		if byRoom[c.room] == nil {
			byRoom[c.room] = make(map[int]int)
		}
		byRoom[c.room][c.id] = sent[i]
	}
	expected := 0
	for _, c := range clients {
		for _, n := range byRoom[c.room] {
			expected += n
		}
	}
	if err := r.settle(ctx, rep, expected, before, cpu0, t0); err != nil {
		return nil, err
	}
	for _, c := range clients {
		rep.tally(c.tr, byRoom[c.room])
	}
	rep.Published = int(r.sent.Load())
	rep.Expected = expected
	rep.DeliveriesPerS = float64(rep.Delivered) / published.Seconds()
	r.fillLatency(rep)
	return rep, nil
}

// http loads GET /api/data with o.Workers concurrent keep-alive clients.
func (r *runner) http(ctx context.Context) (*Report, error) {
	o := r.o
	rep := &Report{Scenario: "http", URL: o.URL}
	tr := &http.Transport{MaxIdleConnsPerHost: o.Workers, MaxConnsPerHost: o.Workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	before, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	stop := r.startProgress(func() int { return o.Workers })
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(o.Duration)
	for range o.Workers {
		wg.Add(1)
		go func() { // bounded by the duration
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				start := time.Now()
				resp, err := client.Get(o.URL + "/api/data")
				if err != nil {
					r.errors.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					r.errors.Add(1)
					continue
				}
				r.hist.add(time.Since(start))
				r.deliveries.Add(1)
			}
		}()
	}
	wg.Wait()
	stop()
	elapsed := time.Since(t0)
	after, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	between(rep, before, after)
	rep.Requests = int(r.deliveries.Load())
	rep.RPS = float64(rep.Requests) / elapsed.Seconds()
	r.fillLatency(rep)
	return rep, nil
}
