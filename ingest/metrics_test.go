package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestGatewayMetrics posts to a gateway on a fake broker and checks the
// request counters by status code, the latency histogram, the producer's
// metrics and the readiness checks.
func TestGatewayMetrics(t *testing.T) {
	k := newFakeKafka(t)
	p := k.producer(t, k.topic(t), func(c *ProducerConfig) { c.BufferSize = 123 })
	g := newTestGateway(t, p, nil)
	reqs := func(code string) float64 {
		return testutil.ToFloat64(gatewayRequests.WithLabelValues("/v1/events", code))
	}
	before := map[string]float64{"202": reqs("202"), "401": reqs("401"), "400": reqs("400")}
	timed := func() uint64 {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(gatewayDuration)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "/v1/events" {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
		return 0
	}
	timedBefore := timed()

	good := []byte("[" + ev(`"type":"login","user":"u1"`) + "," + ev(`"type":"login","user":"u2"`) + "]")
	for i := range 3 { // three requests: each signed anew (the same one again is a replay)
		if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow.Add(time.Duration(i)*time.Second), good)); a.status != http.StatusAccepted {
			t.Fatalf("unexpected status; got %d; want 202: %s", a.status, a.raw)
		}
	}
	if a := serve(t, g, signedRequest(testApp, []byte("wrong"), gwNow, good)); a.status != http.StatusUnauthorized {
		t.Fatalf("unexpected status; got %d; want 401", a.status)
	}
	if a := serve(t, g, signedRequest(testApp, testSecrets[testApp], gwNow, []byte(`{"type":"nonsense"}`))); a.status != http.StatusBadRequest {
		t.Fatalf("unexpected status; got %d; want 400", a.status)
	}
	serve(t, g, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	refused := `
# HELP immeter_gateway_refused_requests_total Gateway requests refused before anything was published, by reason: auth (401: unknown app, bad or missing signature, timestamp out of the window), replay (409), rate_limited (429), replay_cache_full (503).
# TYPE immeter_gateway_refused_requests_total counter
immeter_gateway_refused_requests_total{reason="auth"} 1
immeter_gateway_refused_requests_total{reason="rate_limited"} 0
immeter_gateway_refused_requests_total{reason="replay"} 0
immeter_gateway_refused_requests_total{reason="replay_cache_full"} 0
`
	if err := testutil.CollectAndCompare(gatewayRefusals{g}, strings.NewReader(refused)); err != nil {
		t.Error(err)
	}
	for code, want := range map[string]float64{"202": 3, "401": 1, "400": 1} {
		if got := reqs(code) - before[code]; got != want {
			t.Errorf("unexpected immeter_gateway_requests_total{code=%q} increase; got %v; want %v", code, got, want)
		}
	}
	if got := timed() - timedBefore; got != 5 {
		t.Errorf("unexpected immeter_gateway_request_duration_seconds_count{path=\"/v1/events\"} increase; got %d; want 5", got)
	}
	if got := testutil.ToFloat64(gatewayRequests.WithLabelValues("/healthz", "200")); got < 1 {
		t.Errorf("unexpected /healthz requests; got %v; want >= 1", got)
	}
	m := `
# HELP immeter_producer_accepted_events_total Events taken into the producer's buffer.
# TYPE immeter_producer_accepted_events_total counter
immeter_producer_accepted_events_total 6
# HELP immeter_producer_buffer_capacity_events Most events the producer buffers (BufferSize); a full buffer blocks or refuses Publish.
# TYPE immeter_producer_buffer_capacity_events gauge
immeter_producer_buffer_capacity_events 123
# HELP immeter_producer_buffered_events Events accepted by the producer and not yet acknowledged by Kafka or given up.
# TYPE immeter_producer_buffered_events gauge
immeter_producer_buffered_events 0
# HELP immeter_producer_delivered_events_total Events acknowledged by all in-sync replicas.
# TYPE immeter_producer_delivered_events_total counter
immeter_producer_delivered_events_total 6
# HELP immeter_producer_delivery_failures_total Events the producer gave up on (reported to OnError or the PublishSync caller).
# TYPE immeter_producer_delivery_failures_total counter
immeter_producer_delivery_failures_total 0
`
	if err := testutil.CollectAndCompare(p.Collector(), strings.NewReader(m),
		"immeter_producer_accepted_events_total", "immeter_producer_buffer_capacity_events", "immeter_producer_buffered_events",
		"immeter_producer_delivered_events_total", "immeter_producer_delivery_failures_total"); err != nil {
		t.Error(err)
	}
	for _, c := range g.Checks() {
		if err := c.Func(context.Background()); err != nil {
			t.Errorf("check %s with the broker up: %v", c.Name, err)
		}
	}
	p.Close(context.Background())
	if err := g.Checks()[0].Func(context.Background()); err == nil {
		t.Errorf("check %s after the producer closed: got nil; want an error", g.Checks()[0].Name)
	}
}
