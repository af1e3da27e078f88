// Package metrics defines relay's Prometheus metrics on a registry of its
// own (no global state), with the Go and process collectors that let
// `relay bench` read a node's memory and CPU over HTTP.
package metrics

import (
	"net/http"

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
	reg.MustRegister(m.Connections, m.ConnectionsTotal, m.Rejected, m.Received,
		m.DeliveredMsgs, m.DroppedMsgs, m.ClientErrors, m.Notify, m.PublishErrors, m.SocketWrites,
		m.FramesWritten, m.Disconnects)
	return m
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
