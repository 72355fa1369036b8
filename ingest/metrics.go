package ingest

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/immeter/immeter/telemetry"
)

// The gateway's request metrics, shared by the gateways of a process.
var (
	gatewayRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "immeter_gateway_requests_total",
		Help: "HTTP requests the gateway answered, by path and status code.",
	}, []string{"path", "code"})
	gatewayDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "immeter_gateway_request_duration_seconds",
		Help:    "Time from a request's headers to the end of its answer (for POST /v1/events: including Kafka's acknowledgement), by path.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"path"})
)

// instrument counts and times the requests of route path.
func instrument(path string, h http.HandlerFunc) http.Handler {
	l := prometheus.Labels{"path": path}
	return promhttp.InstrumentHandlerDuration(gatewayDuration.MustCurryWith(l),
		promhttp.InstrumentHandlerCounter(gatewayRequests.MustCurryWith(l), h))
}

// gatewayMetrics collects the gateway's request metrics.
type gatewayMetrics struct{}

func (gatewayMetrics) Describe(ch chan<- *prometheus.Desc) {
	gatewayRequests.Describe(ch)
	gatewayDuration.Describe(ch)
}

func (gatewayMetrics) Collect(ch chan<- prometheus.Metric) {
	gatewayRequests.Collect(ch)
	gatewayDuration.Collect(ch)
}

// descRefused counts the requests the gateway refused before publishing,
// from its own counters (Gateway.Stats) at scrape time.
var descRefused = prometheus.NewDesc("immeter_gateway_refused_requests_total",
	"Gateway requests refused before anything was published, by reason: auth (401: unknown app, bad or missing signature, timestamp out of the window), replay (409), rate_limited (429), replay_cache_full (503).",
	[]string{"reason"}, nil)

// gatewayRefusals exports a Gateway's refusal counters.
type gatewayRefusals struct{ g *Gateway }

func (gatewayRefusals) Describe(ch chan<- *prometheus.Desc) { ch <- descRefused }

func (r gatewayRefusals) Collect(ch chan<- prometheus.Metric) {
	st := r.g.Stats()
	for _, c := range []struct {
		reason string
		n      uint64
	}{{"auth", st.AuthFailures}, {"replay", st.Replays}, {"rate_limited", st.RateLimited}, {"replay_cache_full", st.ReplayFull}} {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(c.n), c.reason)
	}
}

// Collector returns the gateway's request metrics (counted by every Gateway
// of the process), its refusals and those of its producer.
func (g *Gateway) Collector() prometheus.Collector {
	return collectors{gatewayMetrics{}, gatewayRefusals{g}, g.p.Collector()}
}

// Checks are the gateway's readiness checks: the producer's last write to
// Kafka succeeded and the events topic is reachable.
func (g *Gateway) Checks() []telemetry.Check {
	return g.p.Checks()
}

// Checks are the producer's readiness checks: open, its last write to Kafka
// succeeded, and the brokers answer for its topic.
func (p *Producer) Checks() []telemetry.Check {
	return []telemetry.Check{
		{Name: "producer", Func: func(context.Context) error { return p.Healthy() }},
		telemetry.KafkaCheck(p.cfg.Brokers, p.cfg.Topic),
	}
}

var (
	descBuffered = prometheus.NewDesc("immeter_producer_buffered_events",
		"Events accepted by the producer and not yet acknowledged by Kafka or given up.", nil, nil)
	descCapacity = prometheus.NewDesc("immeter_producer_buffer_capacity_events",
		"Most events the producer buffers (BufferSize); a full buffer blocks or refuses Publish.", nil, nil)
	descAccepted = prometheus.NewDesc("immeter_producer_accepted_events_total",
		"Events taken into the producer's buffer.", nil, nil)
	descDelivered = prometheus.NewDesc("immeter_producer_delivered_events_total",
		"Events acknowledged by all in-sync replicas.", nil, nil)
	descFailed = prometheus.NewDesc("immeter_producer_delivery_failures_total",
		"Events the producer gave up on (reported to OnError or the PublishSync caller).", nil, nil)
	descRetries = prometheus.NewDesc("immeter_producer_retries_total",
		"Events written again after a retryable Kafka error.", nil, nil)
)

// producerMetrics reads a producer's counters when Prometheus scrapes.
type producerMetrics struct{ p *Producer }

// Collector returns the producer's metrics: buffer use and deliveries.
func (p *Producer) Collector() prometheus.Collector { return producerMetrics{p} }

func (m producerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuffered, descCapacity, descAccepted, descDelivered, descFailed, descRetries} {
		ch <- d
	}
}

func (m producerMetrics) Collect(ch chan<- prometheus.Metric) {
	st := m.p.Stats()
	ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(cap(m.p.sem)))
	ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(st.Accepted))
	ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.Failed))
	ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(st.Retries))
}

// collectors is several collectors as one.
type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}
