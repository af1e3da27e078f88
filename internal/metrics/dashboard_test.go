package metrics_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/relay/relay/internal/metrics"
)

// The Grafana dashboard (deploy/grafana) is checked offline: its structure,
// its data source, and that every metric its queries read is one a node
// exports from the start. (Whether each query returns data for every
// replica needs a Prometheus: the compose test's monitoring profile.)
func TestDashboardReadsRelaysMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/dashboards/relay.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				Type, UID string
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	ds, err := os.ReadFile("../../deploy/grafana/provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Fatal("dashboard without uid or title")
	}

	m := metrics.New()
	m.WatchNode(func() int { return 0 }, func(context.Context) error { return nil })
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	exported := w.Body.String()

	name := regexp.MustCompile(`\b(relay|process|go)_[a-z_]+\b`)
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.Type != "prometheus" || !strings.Contains(string(ds), "uid: "+p.Datasource.UID) {
			t.Errorf("panel %q: data source %+v is not the provisioned one", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if strings.Count(q.Expr, "(") != strings.Count(q.Expr, ")") {
				t.Errorf("panel %q: unbalanced query %q", p.Title, q.Expr)
			}
			for _, n := range name.FindAllString(q.Expr, -1) {
				if !strings.Contains(exported, "\n"+n+" ") && !strings.Contains(exported, "\n"+n+"{") {
					t.Errorf("panel %q reads %s, which a node does not export (yet)", p.Title, n)
				}
			}
		}
	}
	if queries < 20 {
		t.Fatalf("%d queries: the dashboard lost its panels", queries)
	}
}
