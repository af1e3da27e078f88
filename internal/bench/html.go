package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes rep as one self-contained page (inline SVG, no script,
// nothing fetched): the run's settings, the final table, and charts over
// time of deliveries, latency, connections and the server's memory and CPU.
func WriteHTML(w io.Writer, o Options, rep *Report) error {
	var table bytes.Buffer
	rep.Print(&table)
	shown := o // secrets stay out of a file people share
	for _, secret := range []*string{&shown.APIKey, &shown.JWTSecret} {
		if *secret != "" {
			*secret = "(set)"
		}
	}
	settings, err := json.MarshalIndent(shown, "", "  ")
	if err != nil {
		return err
	}
	s := rep.Series
	x := func(i int) float64 { return s[i].Second }
	charts := []chart{
		newChart("Deliveries per second", "/s", s, x, series{"deliveries", "#2563eb", func(i int) float64 { return float64(s[i].DeliveriesPerS) }}),
		newChart("Latency, from the publisher's send to the receiver (per second)", "ms", s, x,
			series{"p50", "#16a34a", func(i int) float64 { return s[i].P50Ms }},
			series{"p99", "#dc2626", func(i int) float64 { return s[i].P99Ms }}),
		newChart("Open connections", "", s, x, series{"connections", "#7c3aed", func(i int) float64 { return float64(s[i].Conns) }}),
		newChart("Server resident memory", "MB", s, x, series{"RSS", "#ea580c", func(i int) float64 { return s[i].ServerRSSMB }}),
		newChart("Server CPU", "% of a core", s, x, series{"CPU", "#0891b2", func(i int) float64 { return s[i].ServerCPUPercent }}),
	}
	return page.Execute(w, struct {
		Title, Table, Settings string
		Charts                 []chart
		When                   string
	}{
		Title:    fmt.Sprintf("relay bench %s: %s", rep.Scenario, rep.URL),
		Table:    table.String(),
		Settings: string(settings),
		Charts:   charts,
		When:     time.Now().UTC().Format(time.RFC3339),
	})
}

type series struct {
	name, color string
	y           func(i int) float64
}

// chart is one SVG line chart, scaled to its data.
type chart struct {
	Title, Unit  string
	W, H         int
	Lines        []line
	YMax, XMax   string
	Empty        bool
	Left, Bottom int
	Ticks        []tick
}

type line struct {
	Name, Color, Points string
	N                   int
}

type tick struct {
	Y     int
	Label string
}

const chartW, chartH, padL, padB = 720, 200, 70, 24

func newChart(title, unit string, s []Sample, x func(int) float64, ss ...series) chart {
	c := chart{Title: title, Unit: unit, W: chartW, H: chartH, Left: padL, Bottom: chartH - padB}
	xMax, yMax := 0.0, 0.0
	for i := range s {
		xMax = math.Max(xMax, x(i))
		for _, sr := range ss {
			if v := sr.y(i); v > 0 {
				yMax = math.Max(yMax, v)
			}
		}
	}
	if xMax == 0 || yMax == 0 {
		c.Empty = true
		return c
	}
	yMax *= 1.1
	plotW, plotH := float64(chartW-padL-10), float64(chartH-padB-10)
	for _, sr := range ss {
		var pts strings.Builder
		n := 0
		for i := range s {
			v := sr.y(i)
			if v < 0 { // not measured for this second
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", float64(padL)+x(i)/xMax*plotW, 10+plotH-v/yMax*plotH)
			n++
		}
		c.Lines = append(c.Lines, line{Name: sr.name, Color: sr.color, Points: strings.TrimSpace(pts.String()), N: n})
	}
	for k := 0; k <= 4; k++ {
		v := yMax * float64(k) / 4
		c.Ticks = append(c.Ticks, tick{Y: int(10 + plotH - v/yMax*plotH), Label: humanize(v)})
	}
	c.XMax = fmt.Sprintf("%.0f s", xMax)
	return c
}

func humanize(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

var page = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #111; max-width: 800px }
pre { background: #f4f4f5; padding: 1em; overflow: auto }
svg { background: #fafafa; border: 1px solid #e4e4e7 }
.legend span { margin-right: 1em }
</style></head>
<body>
<h1>{{.Title}}</h1>
<p>Generated {{.When}} by <code>relay bench</code>.</p>
<h2>Result</h2>
<pre id="table">{{.Table}}</pre>
{{range $c := .Charts}}
<section class="chart">
<h3>{{.Title}}{{if .Unit}} ({{.Unit}}){{end}}</h3>
{{if .Empty}}<p class="empty">Not measured in this run.</p>{{else}}
<svg width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}">
{{range .Ticks}}<line x1="{{$c.Left}}" x2="710" y1="{{.Y}}" y2="{{.Y}}" stroke="#e4e4e7"/><text x="4" y="{{.Y}}" font-size="11" dominant-baseline="middle">{{.Label}}</text>
{{end}}<text x="710" y="{{.Bottom}}" font-size="11" text-anchor="end" dy="16">{{.XMax}}</text>
{{range .Lines}}<polyline class="line" data-points="{{.N}}" fill="none" stroke="{{.Color}}" stroke-width="1.5" points="{{.Points}}"/>
{{end}}</svg>
<p class="legend">{{range .Lines}}<span style="color:{{.Color}}">━ {{.Name}}</span>{{end}}</p>{{end}}
</section>
{{end}}
<h2>Settings</h2>
<pre id="settings">{{.Settings}}</pre>
</body></html>
`))
