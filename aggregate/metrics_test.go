package aggregate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/internal/testenv"
	"github.com/immeter/immeter/schemas"
	"github.com/immeter/immeter/telemetry"
)

// scrape reads /metrics of srv: the value of each sample by name and labels
// (as "name{k=v,...}" with the labels sorted by name).
func scrape(t *testing.T, srv *httptest.Server) map[string]float64 {
	t.Helper()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestMetricsAndReadiness runs an aggregator on the real broker and server
// (ClickHouse behind the fault tests' proxy) with its /metrics and /readyz:
// the event counters per partition and outcome equal the events published,
// the lag is 0 once all is stored; while ClickHouse is unreachable /readyz
// fails and the lag grows, and both recover after.
func TestMetricsAndReadiness(t *testing.T) {
	env := integration(t)
	_, chAddr := testenv.Services(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	proxy := newCHProxy(t, chAddr)
	ch := env.ch
	ch.Addr = proxy.addr()
	conn, err := schemas.OpenClickHouse(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	agg, _ := env.runAggregator(ctx, t, "metrics", aggregate.Config{FlushInterval: 200 * time.Millisecond}, telemetry.ClickHouse(conn))
	const failAfter = 2 * time.Second
	srv := httptest.NewServer(telemetry.Handler(telemetry.NewRegistry(agg.Collector()), agg.Checks(failAfter)...))
	defer srv.Close()

	if code, _ := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("unexpected /healthz status; got %d; want 200", code)
	}

	// Events of 12 apps (spread over the partitions), some sent twice
	// (duplicates), and some invalid.
	now := time.Now().UTC()
	id := 0
	batch := func(valid, repeats, invalid int) []kafka.Message {
		var msgs []kafka.Message
		for i := range valid {
			id++
			app := uint32(1400000100 + i%12)
			e := schemas.Event{ID: fmt.Sprintf("m-%d", id), Type: schemas.Message, App: app, Time: now,
				User: "u" + strconv.Itoa(i), Channel: "c2c", Count: 1}
			b, _ := json.Marshal(e)
			m := kafka.Message{Key: []byte(strconv.Itoa(int(app))), Value: b}
			msgs = append(msgs, m)
			if i < repeats {
				msgs = append(msgs, m)
			}
		}
		for i := range invalid {
			msgs = append(msgs, kafka.Message{Key: []byte(strconv.Itoa(1400000100 + i%12)), Value: []byte(`{"id":"bad","type":"nonsense"}`)})
		}
		return msgs
	}
	// want folds what the broker now holds: per partition and outcome.
	want := func() map[string]float64 {
		w := map[string]float64{}
		seen := map[string]bool{}
		for _, m := range env.readAll(ctx, t, env.events) {
			var e schemas.Event
			outcome := "counted"
			switch {
			case json.Unmarshal(m.Value, &e) != nil || e.Type == "nonsense":
				outcome = "rejected"
			case seen[string(m.Key)+"/"+e.ID]:
				outcome = "duplicate"
			}
			seen[string(m.Key)+"/"+e.ID] = true
			w[fmt.Sprintf("immeter_aggregate_events_total{outcome=%s,partition=%d}", outcome, m.Partition)]++
		}
		return w
	}
	// settled waits until every partition's lag is 0 and its stored
	// position is the end offset, and returns the last scrape.
	settled := func(stage string) map[string]float64 {
		t.Helper()
		end := env.endOffsets(ctx, t, env.events)
		for {
			got := scrape(t, srv)
			ok := true
			for p, off := range end {
				l := fmt.Sprintf("{partition=%d}", p)
				v, has := got["immeter_consumer_lag_messages"+l]
				ok = ok && has && v == 0 && got["immeter_consumer_lag_seconds"+l] == 0 &&
					got["immeter_partition_stored_offset"+l] == float64(off) && got["immeter_partition_log_end_offset"+l] == float64(off)
			}
			if ok {
				return got
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: lag did not return to 0 at end offsets %v; last scrape: %v", stage, end, got)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	check := func(stage string, got map[string]float64) {
		t.Helper()
		w := want()
		for p := range testPartitions {
			for _, o := range []string{"counted", "duplicate", "rejected", "replayed"} {
				k := fmt.Sprintf("immeter_aggregate_events_total{outcome=%s,partition=%d}", o, p)
				if got[k] != w[k] {
					t.Errorf("%s: unexpected %s; got %v; want %v", stage, k, got[k], w[k])
				}
			}
		}
		var counted float64
		for k, v := range w {
			if strings.Contains(k, "counted") {
				counted += v
			}
		}
		if got["immeter_clickhouse_rows_written_total{table=event_ids}"] != counted {
			t.Errorf("%s: unexpected rows written to event_ids; got %v; want %v (the counted events)",
				stage, got["immeter_clickhouse_rows_written_total{table=event_ids}"], counted)
		}
		if got["immeter_partitions_assigned"] != testPartitions {
			t.Errorf("%s: unexpected immeter_partitions_assigned; got %v; want %d", stage, got["immeter_partitions_assigned"], testPartitions)
		}
	}
	waitReady := func(stage string, wantCode int) string {
		t.Helper()
		for {
			code, body := get(t, srv.URL+"/readyz")
			if code == wantCode {
				return body
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: /readyz did not answer %d; last %d: %s", stage, wantCode, code, body)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}

	env.produce(ctx, t, env.events, batch(600, 50, 20))
	got := settled("first batch")
	check("first batch", got)
	waitReady("first batch", http.StatusOK)

	// ClickHouse unreachable (the proxy drops all traffic from the next
	// insert on): flushes fail, the lag grows, /readyz fails.
	proxy.arm(func() {}, "INSERT INTO")
	env.produce(ctx, t, env.events, batch(400, 30, 10))
	body := waitReady("ClickHouse down", http.StatusServiceUnavailable)
	if !strings.Contains(body, "clickhouse") {
		t.Errorf("unexpected /readyz body while ClickHouse is down; got %q; want the clickhouse check failing", body)
	}
	var lag float64
	for deadline := time.Now().Add(10 * time.Second); lag == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = scrape(t, srv)
		for p := range testPartitions {
			lag += got[fmt.Sprintf("immeter_consumer_lag_messages{partition=%d}", p)]
		}
	}
	if lag == 0 {
		t.Errorf("unexpected lag while ClickHouse is down; got 0; want > 0")
	}
	// Flushes that fail for longer than failAfter fail the aggregate check too.
	body = waitReady("ClickHouse down", http.StatusServiceUnavailable)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(body, "flush failing") && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, body = get(t, srv.URL+"/readyz")
	}
	if !strings.Contains(body, "flush failing") {
		t.Errorf("unexpected /readyz body while ClickHouse is down; got %q; want a partition's flush failing", body)
	}

	proxy.reset()
	waitReady("ClickHouse back", http.StatusOK)
	got = settled("ClickHouse back")
	check("ClickHouse back", got)
	if got["immeter_aggregate_flush_failures_total"] == 0 {
		t.Errorf("unexpected immeter_aggregate_flush_failures_total; got 0; want > 0 after the outage")
	}
	if got["immeter_clickhouse_errors_total{op=insert}"]+got["immeter_clickhouse_errors_total{op=ping}"] == 0 {
		t.Errorf("unexpected ClickHouse errors; got 0; want > 0 after the outage")
	}
}

// TestReadinessKafkaDown stops a private broker under a running aggregator:
// /readyz fails (Kafka unreachable, the partitions' fetches failing or the
// partitions no longer consumed) and recovers once the broker is back.
func TestReadinessKafkaDown(t *testing.T) {
	t.Parallel()
	_, chAddr := testenv.Services(t)
	broker := testenv.StartKafka(t)
	env := newEnv(t, []string{broker.Addr}, chAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	agg, _ := env.runAggregator(ctx, t, "kafka-down", aggregate.Config{FlushInterval: 100 * time.Millisecond}, env.conn)
	srv := httptest.NewServer(telemetry.Handler(telemetry.NewRegistry(agg.Collector()), agg.Checks(2*time.Second)...))
	defer srv.Close()
	wait := func(stage string, ok func(code int, body string) bool) string {
		t.Helper()
		for {
			code, body := get(t, srv.URL+"/readyz")
			if ok(code, body) {
				return body
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: unexpected /readyz; last %d: %s", stage, code, body)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	wait("broker up", func(code int, _ string) bool { return code == http.StatusOK })

	broker.Run("pause")
	body := wait("broker down", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "kafka: metadata") &&
			(strings.Contains(body, "fetch failing") || strings.Contains(body, "not consumed"))
	})
	t.Logf("/readyz with the broker down: %s", body)
	broker.Run("start")
	wait("broker back", func(code int, _ string) bool { return code == http.StatusOK })
	got := scrape(t, srv)
	if got["immeter_kafka_errors_total{op=fetch}"]+got["immeter_kafka_errors_total{op=join_group}"] == 0 {
		t.Errorf("unexpected Kafka errors after the outage; got 0 fetch and join_group errors; want > 0")
	}
}
