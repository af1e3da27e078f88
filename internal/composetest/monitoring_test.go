package composetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/testkit"
)

// monitoring starts the monitoring profile's Prometheus beside the running
// cluster and, under traffic, runs every query of the Grafana dashboard
// (deploy/grafana) against it through its HTTP API: each must return data,
// and one series per replica where it is per node. (Grafana has no stand-in
// image here: its file is checked offline, in internal/metrics.)
func (c *compose) monitoring(t *testing.T, cl []*member) {
	c.step("monitoring profile: prometheus", 3*time.Minute, "--profile", "monitoring", "up", "-d", "prometheus")
	prom := fmt.Sprintf("http://127.0.0.1:%d", c.promPort)
	replicas := len(c.relayNodes(t))

	// Traffic while Prometheus scrapes, so that rates and the latency
	// histogram have something to show.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // joined below
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodPost, c.base+"/api/notify", strings.NewReader(fmt.Sprintf(`{"message":"scraped %d"}`, i)))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			if resp, err := c.http.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); <-done }()
	defer func() {
		for _, m := range cl { // what the traffic queued for them
			drain(m)
		}
	}()

	query := func(q string) ([]json.RawMessage, error) {
		resp, err := c.http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Error  string
			Data   struct{ Result []json.RawMessage }
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		if r.Status != "success" {
			return nil, fmt.Errorf("%s: %s %s", q, r.Status, r.Error)
		}
		return r.Data.Result, nil
	}
	testkit.CheckFor(t, 90*time.Second, time.Second, func() error {
		res, err := query(`up{job="relay"} == 1`)
		if err == nil && len(res) != replicas {
			err = fmt.Errorf("%d of %d replicas scraped", len(res), replicas)
		}
		return err
	})

	raw, err := os.ReadFile(filepath.Join(c.root, "deploy", "grafana", "dashboards", "relay.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			checked++
			perNode := strings.Contains(target.Expr, "by (instance)")
			// A rate needs two scrapes in its window: give it time.
			testkit.CheckFor(t, 60*time.Second, time.Second, func() error {
				res, err := query(target.Expr)
				switch {
				case err != nil:
					return fmt.Errorf("panel %q: %v", p.Title, err)
				case len(res) == 0:
					return fmt.Errorf("panel %q: %s returns no data", p.Title, target.Expr)
				case perNode && len(res) != replicas:
					return fmt.Errorf("panel %q: %s returns %d series, want one per replica (%d)", p.Title, target.Expr, len(res), replicas)
				}
				return nil
			})
		}
	}
	t.Logf("monitoring: %d dashboard queries return data, per replica where per node (%d replicas)", checked, replicas)
}

// drain reads whatever is waiting for m without blocking.
func drain(m *member) {
	for {
		select {
		case <-m.ws.Frames:
		default:
			return
		}
	}
}
