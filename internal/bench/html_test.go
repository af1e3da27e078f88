package bench

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relay/relay/internal/browsertest"
	"github.com/relay/relay/internal/node/nodetest"
)

// relay bench -html writes a page people look at: rendered in headless
// Chromium, it has the run's table and a chart per measure, each with a
// point a second. RELAY_SCREENSHOT=docs/bench-report.png refreshes the
// README's picture of it.
func TestHTMLReportRenders(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0"})
	out := filepath.Join(t.TempDir(), "report.html")
	o, err := ParseArgs([]string{"-url", n.URL(), "-api-key", "k", "-quiet", "-conns", "200", "-ramp", "100",
		"-rate", "20", "-duration", "4s", "-html", out, "fanout"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, o, rep); err != nil {
		t.Fatal(err)
	}
	f.Close()
	raw, _ := os.ReadFile(out)
	if strings.Contains(string(raw), "http://") && strings.Contains(string(raw), "<script") {
		t.Fatal("the report loads something: it must be self-contained")
	}

	bctx, stop, err := browsertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tab, closeTab := chromedp.NewContext(bctx)
	defer closeTab()
	tab, cancelTab := context.WithTimeout(tab, 30*time.Second)
	defer cancelTab()
	if err := chromedp.Do(tab, chromedp.Navigate("file://"+out)); err != nil {
		t.Fatal(err)
	}
	eval := func(expr string, v any) {
		raw, err := chromedp.Run(tab, chromedp.Evaluate[[]byte](expr))
		if err == nil {
			err = json.Unmarshal(raw, v)
		}
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
	}
	var title, table string
	var points []string
	var empty int
	eval(`document.title`, &title)
	eval(`document.getElementById("table").textContent`, &table)
	eval(`[...document.querySelectorAll("polyline.line")].map(p => p.getAttribute("data-points"))`, &points)
	eval(`document.querySelectorAll(".empty").length`, &empty)
	if !strings.Contains(title, "relay bench fanout") || !strings.Contains(table, "lost / duplicated / reordered") {
		t.Fatalf("title %q, table %q", title, table)
	}
	// deliveries, p50, p99, connections, RSS, CPU: one line each, a point
	// for (nearly) every second of the run.
	if len(points) != 6 || empty != 0 {
		t.Fatalf("%d lines (%v), %d charts not measured; want 6 lines, all measured", len(points), points, empty)
	}
	for i, p := range points {
		if n, _ := strconv.Atoi(p); n < 3 {
			t.Fatalf("line %d has %s points, want one a second of a run of 4 s or more: %v", i, p, points)
		}
	}
	if shot := os.Getenv("RELAY_SCREENSHOT"); shot != "" {
		png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", shot), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
