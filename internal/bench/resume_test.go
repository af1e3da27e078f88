package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
)

// runFanout runs relay bench fanout with args against url, its progress
// going to out, and returns its report.
func runFanout(url string, out io.Writer, args ...string) (*Report, error) {
	o, err := ParseArgs(append(append([]string{"-url", url, "-api-key", "k"}, args...), "fanout"), io.Discard)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o, out)
	if err != nil {
		return nil, fmt.Errorf("relay bench fanout %v: %w", args, err)
	}
	return rep, nil
}

// exact fails the test unless every subscriber got every message once, in
// order, and every resume was recovered.
func exact(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Published == 0 || rep.Delivered != rep.Expected || rep.Lost+rep.Duplicated+rep.Reordered != 0 ||
		rep.RecoveredFalse+rep.StreamGaps+rep.GapFrames+rep.ResumeFailures+rep.ErrorFrames != 0 {
		t.Errorf("published %d, delivered %d of %d, lost %d, duplicated %d, reordered %d; resumes %d (recovered false %d), gaps %d/%d, gave up %d, error frames %d; first problem: %s",
			rep.Published, rep.Delivered, rep.Expected, rep.Lost, rep.Duplicated, rep.Reordered,
			rep.Resumes, rep.RecoveredFalse, rep.StreamGaps, rep.GapFrames, rep.ResumeFailures, rep.ErrorFrames, rep.Problem)
	}
}

// Subscribers cut from the client side while messages flow reconnect and
// resume: each message is counted once per receiver, in order, whether it
// came live or by replay, and a replayed frame already seen is dropped.
func TestFanoutDropsResume(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0"})
	rep, err := runFanout(n.URL(), io.Discard, "-quiet", "-conns", "200", "-rooms", "2", "-rate", "100", "-messages", "300",
		"-publishers", "2", "-drop-rate", "50")
	if err != nil {
		t.Fatal(err)
	}
	exact(t, rep)
	// A connection cut again before its welcome came has no resume of its
	// own: the next one resumes for both.
	if rep.Drops < 50 || rep.Reconnects != rep.Drops || rep.Resumes < rep.Drops*9/10 || rep.RecoveredTrue != rep.Resumes {
		t.Errorf("%d connections cut, %d reconnected, %d resumes, %d recovered: want every cut reconnected and every resume recovered (over 50)",
			rep.Drops, rep.Reconnects, rep.Resumes, rep.RecoveredTrue)
	}
	t.Logf("%d cut and resumed, %d replayed frames already seen dropped, p99 %.1f ms", rep.Drops, rep.DuplicatesDropped, rep.P99Ms)
}

// A node restarted under the run (SIGTERM: 1012, then back on its address,
// its history in Redis): every subscriber resumes there, and a publish that
// failed while it was down is only counted if it landed.
func TestFanoutNodeRestartResume(t *testing.T) {
	t.Parallel()
	rd := redistest.Start(t)
	env := map[string]string{"RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0", "RELAY_REDIS_URL": rd.URL(), "RELAY_NODE_ID": "restarted"}
	n := nodetest.Start(t, env)
	nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0", "RELAY_REDIS_URL": rd.URL(), "RELAY_NODE_ID": "other"})

	var out testkit.Buffer
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() { // ends with the run, bounded by runFanout's timeout
		rep, err := runFanout(n.URL(), &out, "-conns", "100", "-rooms", "2", "-rate", "50", "-messages", "200", "-resume")
		done <- result{rep, err}
	}()
	testkit.CheckFor(t, time.Minute, 10*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "publishing") {
			return errors.New("relay bench did not start publishing")
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	n.Stop()
	time.Sleep(300 * time.Millisecond)
	n.Restart()
	res := <-done
	if res.err != nil {
		t.Fatalf("%v\n%s", res.err, out.String())
	}
	rep := res.rep
	exact(t, rep)
	if rep.Resumes < 100 || rep.RecoveredTrue != rep.Resumes {
		t.Errorf("%d resumes, %d recovered: want every subscriber resumed once at least", rep.Resumes, rep.RecoveredTrue)
	}
	t.Logf("published %d (%d refused while the node was down, %d failed but landed), %d resumes after %d failed redials",
		rep.Published, rep.PublishErrors, rep.PublishLanded, rep.Resumes, rep.RedialErrors)
}

// A receiver counts a message replayed after a resume only if it had not
// arrived before the cut: Positions decides by the stream's seq.
func TestReplayedFramesCountedOnce(t *testing.T) {
	r := &runner{}
	c := &conn{id: 7, room: "bench-1", r: r}
	frames := []string{
		`{"type":"system","event":"welcome","user":"b7","node":"n","room":"lobby","online":1,"data":"","epoch":"e1","seq":{"*":0,"@":0,"lobby":3}}`,
		`{"type":"system","event":"join","user":"b7","room":"bench-1","online":1,"data":"","seq":5}`,
		`{"type":"notification","room":"bench-1","data":"rb 1 0 1 x","id":"a","ts":1,"seq":6}`,
		`{"type":"notification","room":"bench-1","data":"rb 1 1 1 x","id":"b","ts":1,"seq":7}`,
		// cut; the resume's welcome, join, and a replay from 6 (one too early)
		`{"type":"system","event":"welcome","user":"b7","node":"m","room":"lobby","online":1,"data":"","epoch":"e1","seq":{"*":0,"@":0,"lobby":3},"recovered":true}`,
		`{"type":"system","event":"join","user":"b7","room":"bench-1","online":1,"data":"","seq":9}`,
		`{"type":"notification","room":"bench-1","data":"rb 1 1 1 x","id":"b","ts":1,"seq":7}`,
		`{"type":"notification","room":"bench-1","data":"rb 1 2 1 x","id":"c","ts":1,"seq":8}`,
		`{"type":"notification","room":"bench-1","data":"rb 1 3 1 x","id":"d","ts":1,"seq":9}`,
	}
	var fresh []bool
	for _, f := range frames {
		b := []byte(f)
		if strings.Contains(f, `"type":"system"`) {
			c.observe(b)
			continue
		}
		fresh = append(fresh, c.fresh(b))
	}
	if want := []bool{true, true, false, true, true}; !slices.Equal(fresh, want) {
		t.Errorf("fresh %v, want %v", fresh, want)
	}
	if q := c.pos.Query(); q != "epoch=e1&since="+url.QueryEscape("*:0,@:0,lobby:3,bench-1:9") {
		t.Errorf("resume query %q", q)
	}
	if r.recovered.Load() != 1 || r.streamGaps.Load() != 0 {
		t.Errorf("recovered %d, gaps %d: want 1, 0 (problem %q)", r.recovered.Load(), r.streamGaps.Load(), r.problem)
	}
}

func TestStreamSeq(t *testing.T) {
	for _, tc := range []struct {
		frame string
		n     uint64
		ok    bool
	}{
		{`{"type":"notification","room":"r","data":"rb 1 2 3 x","id":"a","ts":1,"seq":42}`, 42, true},
		{`{"type":"notification","room":"r","data":"rb 1 2 3 x","id":"a","ts":1}`, 0, false},
		{`{"seq":}`, 0, false},
	} {
		if n, ok := streamSeq([]byte(tc.frame)); n != tc.n || ok != tc.ok {
			t.Errorf("streamSeq(%s) = %d, %v; want %d, %v", tc.frame, n, ok, tc.n, tc.ok)
		}
	}
}
