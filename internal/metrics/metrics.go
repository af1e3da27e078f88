// Package metrics defines relay's Prometheus metrics on a registry of its
// own (no global state), with the Go and process collectors that let
// `relay bench` read a node's memory and CPU over HTTP.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every metric a node exports. It implements the observer
// interfaces of the hub and the connection pool.
type Metrics struct {
	reg *prometheus.Registry

	Connections      prometheus.Gauge
	ConnectionsTotal prometheus.Counter
	Rejected         *prometheus.CounterVec // by reason
	Received         *prometheus.CounterVec // client frames, by type
	DeliveredMsgs    prometheus.Counter
	DroppedMsgs      *prometheus.CounterVec // by reason
	ClientErrors     *prometheus.CounterVec // error frames sent, by code
	Notify           *prometheus.CounterVec // by HTTP status
	PublishErrors    prometheus.Counter
	SocketWrites     prometheus.Counter
	FramesWritten    prometheus.Counter
	Disconnects      *prometheus.CounterVec // server-initiated, by reason

	Resumes       *prometheus.CounterVec // by result: recovered or missed
	Repairs       prometheus.Counter
	LostPositions prometheus.Counter
	FanoutLag     prometheus.Histogram
}

// New registers relay's metrics on a fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_connections", Help: "Open WebSocket connections on this node."}),
		ConnectionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_connections_total", Help: "WebSocket connections accepted."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_connections_rejected_total", Help: "Upgrades refused, by reason."}, []string{"reason"}),
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_messages_received_total", Help: "Frames received from clients, by type."}, []string{"type"}),
		DeliveredMsgs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_messages_delivered_total", Help: "Frames queued for clients."}),
		DroppedMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_messages_dropped_total", Help: "Frames not delivered, by reason."}, []string{"reason"}),
		ClientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_client_errors_total", Help: "Error frames sent to clients, by code."}, []string{"code"}),
		Notify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_notify_requests_total", Help: "POST /api/notify requests, by status."}, []string{"status"}),
		PublishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_broker_publish_errors_total", Help: "Publishes the broker refused."}),
		SocketWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_socket_writes_total", Help: "Batched socket writes to clients."}),
		FramesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_frames_written_total", Help: "Frames carried by those writes."}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_disconnects_total", Help: "Connections closed by the server, by reason."}, []string{"reason"}),
	}
	m.Resumes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_resumes_total", Help: "Connections that resumed, by result: recovered (every listed stream filled) or missed."}, []string{"result"})
	m.Repairs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "relay_stream_repairs_total", Help: "Streams this node caught up from history (a lost message, a resubscription)."})
	m.LostPositions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "relay_stream_lost_total", Help: "Stream positions history no longer had when this node needed them (announced in gap frames)."})
	m.FanoutLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "relay_publish_to_fanout_seconds",
		Help:    "Time from a message's publication (any node) to its being queued for this node's clients.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	// Series a dashboard graphs exist from the start, at 0, rather than
	// appearing at their first event: "no data" and "none yet" differ.
	for _, r := range []string{"unauthorized", "unavailable", "origin", "bad_resume"} {
		m.Rejected.WithLabelValues(r)
	}
	for _, t := range []string{"message", "join", "leave", "ping", "invalid", "binary"} {
		m.Received.WithLabelValues(t)
	}
	for _, r := range []string{"not_queued", "rate_limited", "busy"} {
		m.DroppedMsgs.WithLabelValues(r)
	}
	for _, c := range []string{"rate_limited", "busy", "unavailable", "unconfirmed", "too_large"} {
		m.ClientErrors.WithLabelValues(c)
	}
	for _, st := range []string{"200", "400", "401", "503", "504"} {
		m.Notify.WithLabelValues(st)
	}
	for _, r := range []string{"slow", "ping_timeout", "too_big"} {
		m.Disconnects.WithLabelValues(r)
	}
	m.Resumes.WithLabelValues("recovered")
	m.Resumes.WithLabelValues("missed")
	reg.MustRegister(m.Connections, m.ConnectionsTotal, m.Rejected, m.Received,
		m.DeliveredMsgs, m.DroppedMsgs, m.ClientErrors, m.Notify, m.PublishErrors, m.SocketWrites,
		m.FramesWritten, m.Disconnects, m.Resumes, m.Repairs, m.LostPositions, m.FanoutLag)
	return m
}

// Resumed counts a resume (hub.StreamObserver).
func (m *Metrics) Resumed(recovered bool) {
	result := "missed"
	if recovered {
		result = "recovered"
	}
	m.Resumes.WithLabelValues(result).Inc()
}

// Repaired counts a stream caught up from history (hub.StreamObserver).
func (m *Metrics) Repaired() { m.Repairs.Inc() }

// Lost counts positions announced as gaps (hub.StreamObserver).
func (m *Metrics) Lost(positions uint64) { m.LostPositions.Add(float64(positions)) }

// FannedOut observes a message's lag from publication (hub.StreamObserver).
func (m *Metrics) FannedOut(d time.Duration) { m.FanoutLag.Observe(d.Seconds()) }

// WatchNode adds what is read from the node when Prometheus scrapes: the
// rooms it has members in, and whether its broker answers and how fast
// (for Redis, a round trip; bounded at a second, so a scrape during an
// outage still answers).
func (m *Metrics) WatchNode(rooms func() int, ready func(context.Context) error) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_rooms", Help: "Rooms with members on this node."}, func() float64 { return float64(rooms()) }))
	m.reg.MustRegister(&brokerCollector{ready: ready})
}

// WatchSubscriptions adds the topics the node's broker is subscribed to,
// read at scrape time: rooms with local members, users with local
// connections, and the broadcast topic. More than that means strays.
func (m *Metrics) WatchSubscriptions(n func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_broker_subscriptions", Help: "Topics this node's broker is subscribed to."}, func() float64 { return float64(n()) }))
}

// WatchBrokerState adds relay_broker_streams, read at scrape time (bounded at
// a second; a failed read reports nothing rather than a wrong figure).
func (m *Metrics) WatchBrokerState(keys func(context.Context) (int64, error)) {
	m.reg.MustRegister(&stateCollector{keys: keys})
}

var brokerKeys = prometheus.NewDesc("relay_broker_streams",
	"Streams the broker holds a position for (in memory, or in Redis for the cluster). Unused ones are forgotten after RELAY_STREAM_TTL.", nil, nil)

type stateCollector struct {
	keys func(context.Context) (int64, error)
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- brokerKeys }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := c.keys(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(brokerKeys, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(brokerKeys, prometheus.GaugeValue, float64(n))
}

var (
	brokerUp  = prometheus.NewDesc("relay_broker_up", "1 when the broker answered the scrape's readiness check.", nil, nil)
	brokerRTT = prometheus.NewDesc("relay_broker_rtt_seconds", "How long the scrape's readiness check of the broker took (a Redis round trip).", nil, nil)
)

type brokerCollector struct{ ready func(context.Context) error }

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- brokerUp; ch <- brokerRTT }

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	up := 1.0
	if c.ready(ctx) != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(brokerUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(brokerRTT, prometheus.GaugeValue, time.Since(start).Seconds())
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Delivered counts frames queued for clients (hub.Observer).
func (m *Metrics) Delivered(n int) { m.DeliveredMsgs.Add(float64(n)) }

// Dropped counts frames not queued (hub.Observer).
func (m *Metrics) Dropped(reason string, n int) {
	m.DroppedMsgs.WithLabelValues(reason).Add(float64(n))
}

// SocketWrite counts one batched write (wsconn.Observer).
func (m *Metrics) SocketWrite(frames int) {
	m.SocketWrites.Inc()
	m.FramesWritten.Add(float64(frames))
}

// SlowClosed counts a client closed for a full queue (wsconn.Observer).
func (m *Metrics) SlowClosed() { m.Disconnects.WithLabelValues("slow").Inc() }

// PingTimeout counts a client dropped by the heartbeat (wsconn.Observer).
func (m *Metrics) PingTimeout() { m.Disconnects.WithLabelValues("ping_timeout").Inc() }
