package composetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The rolling restart's load: relay bench fanout through nginx, every
// subscriber resuming when its replica goes. relay bench publishes for
// rollingPerReplica per replica and rollingSlack more: a docker restart
// and the next healthy check take about 8 s.
const (
	rollingConns      = 2000
	rollingRooms      = 4
	rollingRate       = 20 // messages per second in all
	rollingPerReplica = 12 * time.Second
	rollingSlack      = 10 * time.Second
)

// benchResult is what the rolling restart reads from relay bench -json.
type benchResult struct {
	Published      int            `json:"published"`
	PublishErrors  int            `json:"publish_errors"`
	PublishLanded  int            `json:"publish_failed_but_landed"`
	Uncertain      int            `json:"publish_uncertain"`
	Expected       int            `json:"expected"`
	Delivered      int            `json:"delivered"`
	Lost           int            `json:"lost"`
	Duplicated     int            `json:"duplicated"`
	Reordered      int            `json:"reordered"`
	Nodes          map[string]int `json:"nodes"`
	Reconnects     int            `json:"reconnects"`
	Resumes        int            `json:"resumes"`
	RecoveredTrue  int            `json:"recovered_true"`
	RecoveredFalse int            `json:"recovered_false"`
	ResumeFailures int            `json:"resume_failures"`
	DupsDropped    int            `json:"duplicates_dropped"`
	StreamGaps     int            `json:"stream_gaps"`
	GapFrames      int            `json:"gap_frames"`
	ErrorFrames    int            `json:"error_frames"`
	P99Ms          float64        `json:"p99_ms"`
	MaxMs          float64        `json:"max_ms"`
	Problem        string         `json:"first_problem"`
}

// rollingRestart restarts every relay replica in turn (docker restart:
// SIGTERM, 1012 to its clients, then up again), waiting for each to be
// healthy before the next, while the real relay binary's bench fans out
// through nginx with -resume: every subscriber must get every message
// once, in order, across all the restarts.
func (c *compose) rollingRestart(t *testing.T) {
	bin := c.relayBinary(t)
	replicas := c.relays(t)
	rollingDuration := time.Duration(len(replicas))*rollingPerReplica + rollingSlack
	url := c.base
	if pid, nofile := userlandProxy(c.port); pid > 0 && nofile/6 < rollingConns+200 {
		url = "http://" + c.containerIP(t, "nginx") + ":80"
		t.Logf("docker-proxy (pid %d) holds ~%d connections: relay bench drives nginx's container address %s", pid, nofile/6, url)
	}
	args := []string{"bench", "-url", url, "-api-key", apiKey, "-json", "-resume",
		"-conns", strconv.Itoa(rollingConns), "-rooms", strconv.Itoa(rollingRooms), "-ramp", "2000",
		"-rate", strconv.Itoa(rollingRate), "-publishers", strconv.Itoa(rollingRooms),
		"-duration", rollingDuration.String(), "fanout"}
	ctx, cancel := context.WithTimeout(context.Background(), rollingDuration+4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("relay bench %s", strings.Join(args[1:], " "))

	// Its progress lines: the last ones are kept for a failure, and
	// "publishing" starts the restarts.
	publishing := make(chan struct{})
	var logMu sync.Mutex
	var progress []string
	scanned := make(chan struct{})
	go func() { // ends when relay bench closes its stderr
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			progress = append(progress, line)
			if len(progress) > 40 {
				progress = progress[1:]
			}
			logMu.Unlock()
			if strings.Contains(line, "publishing") {
				once.Do(func() { close(publishing) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	progressTail := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Join(progress, "\n")
	}

	select {
	case <-publishing:
	case <-scanned:
		_ = cmd.Wait()
		t.Fatalf("relay bench ended before publishing:\n%s\n%s", progressTail(), stdout.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("relay bench did not start publishing within 2 minutes:\n%s", progressTail())
	}
	start := time.Now()
	for i, r := range replicas {
		began := time.Now()
		docker(t, time.Minute, "restart", "--time", "10", r.id)
		c.waitHealthy(len(replicas), 90*time.Second)
		t.Logf("replica %d of %d (%s) restarted and healthy in %v", i+1, len(replicas), r.host, time.Since(began).Round(100*time.Millisecond))
	}
	restarts := time.Since(start)
	if restarts > rollingDuration-2*time.Second {
		t.Fatalf("the rolling restart took %v, past the %v relay bench publishes for: raise rollingPerReplica", restarts.Round(time.Second), rollingDuration)
	}
	t.Logf("rolling restart of %d replicas in %v while relay bench published", len(replicas), restarts.Round(100*time.Millisecond))

	<-scanned
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relay bench: %v\n%s\n%s", err, progressTail(), stdout.String())
	}
	var rep benchResult
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("relay bench: %v in %q", err, stdout.String())
	}
	t.Logf("relay bench: published %d (%d refused, %d failed but landed), delivered %d of %d, lost %d, duplicated %d, reordered %d; "+
		"%d reconnections, %d resumes (%d recovered, %d not), %d replayed frames already seen dropped; p99 %.1f ms, max %.1f ms; first connections per node %v",
		rep.Published, rep.PublishErrors, rep.PublishLanded, rep.Delivered, rep.Expected, rep.Lost, rep.Duplicated, rep.Reordered,
		rep.Reconnects, rep.Resumes, rep.RecoveredTrue, rep.RecoveredFalse, rep.DupsDropped, rep.P99Ms, rep.MaxMs, rep.Nodes)
	switch {
	case rep.Published < rollingRate*int(rollingDuration/time.Second)*9/10:
		t.Errorf("published only %d of %d messages", rep.Published, rollingRate*int(rollingDuration/time.Second))
	case rep.Delivered != rep.Expected || rep.Lost+rep.Duplicated+rep.Reordered != 0:
		t.Errorf("across the rolling restart: delivered %d of %d, lost %d, duplicated %d, reordered %d (first problem: %s)",
			rep.Delivered, rep.Expected, rep.Lost, rep.Duplicated, rep.Reordered, rep.Problem)
	case rep.RecoveredFalse+rep.ResumeFailures+rep.StreamGaps+rep.GapFrames+rep.Uncertain != 0:
		t.Errorf("%d resumes not recovered, %d receivers gave up, %d stream gaps, %d gap frames, %d publishes of unknown fate (first problem: %s)",
			rep.RecoveredFalse, rep.ResumeFailures, rep.StreamGaps, rep.GapFrames, rep.Uncertain, rep.Problem)
	case rep.Resumes < rollingConns:
		// Every subscriber was on a replica that restarted.
		t.Errorf("%d resumes for %d subscribers: want each to resume at least once", rep.Resumes, rollingConns)
	}
}

// relayBinary builds the relay command for the host, once per test run.
func (c *compose) relayBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/relay")
	cmd.Dir = c.root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/relay: %v\n%s", err, out)
	}
	return bin
}
