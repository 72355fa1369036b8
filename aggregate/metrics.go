package aggregate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/telemetry"
)

// metrics is what an Aggregator shows Prometheus. The figures are kept
// with atomics where the work happens and read when Prometheus scrapes.
type metrics struct {
	mu    sync.Mutex
	parts atomic.Pointer[[]*partitionMetrics] // by partition id; copied on growth

	joined     atomic.Bool  // a generation of the consumer group was received
	assignedAt atomic.Int64 // Unix ns of the last assignment

	flushSeconds  prometheus.Histogram
	flushFailures prometheus.Counter

	idDaysDropped  prometheus.Counter // retention.go
	idDropFailures prometheus.Counter

	// stuck lists the partitions held stuck (Aggregator.Stuck: the stored
	// position is outside the Kafka log, or the state behind it was lost);
	// a fetch failing with "offset out of range" also marks a partition
	// stuck until the partition is checked again.
	stuck func() []int32

	// With DEDUP_FILTER_BITS: ids the filters held that were looked up in
	// event_ids, and those of them not found there (false hits).
	filterHits, filterFalseHits atomic.Uint64
}

// partitionMetrics are one partition's figures.
type partitionMetrics struct {
	id       int32
	outcomes [4]atomic.Uint64 // by Outcome

	assigned  atomic.Bool  // in this process's current assignment
	consuming atomic.Int32 // consume calls running for it (one, but a revoked one may still be ending)
	openedAt  atomic.Int64 // Unix ns when consume started
	stoppedAt atomic.Int64 // Unix ns when a consume call ended
	logEnd    atomic.Int64 // high-water mark at the last fetch; -1 unknown
	applied   atomic.Int64 // offset after the last message applied (by whole fetched batches); -1 unknown
	appliedTS atomic.Int64 // Kafka timestamp (Unix ns) of that message; 0 unknown
	stored    atomic.Int64 // next offset stored in ClickHouse; -1 unknown

	fetchFailingSince atomic.Int64 // Unix ns of the first of the failed fetches in a row; 0 after a success
	fetchOutOfRange   atomic.Bool  // the last fetch failed with "offset out of range"
	fetchInFlight     atomic.Int64 // Unix ns when the fetch in flight was sent; 0 when none
	flushFailingSince atomic.Int64 // Unix ns of the first of the failed flush attempts in a row
}

func newMetrics() *metrics {
	m := &metrics{
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "immeter_aggregate_flush_duration_seconds",
			Help:    "Duration of a partition's flush attempt to ClickHouse (dead letters, sets, counters and position).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		flushFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immeter_aggregate_flush_failures_total",
			Help: "Flush attempts that failed (each is retried with backoff).",
		}),
		idDaysDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immeter_aggregate_event_id_days_dropped_total",
			Help: "Days of event_ids dropped because they are before the accepted window (MAX_EVENT_AGE) minus a day.",
		}),
		idDropFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immeter_aggregate_event_id_drop_failures_total",
			Help: "Failed attempts to drop the days of event_ids before the accepted window (retried a minute later).",
		}),
		stuck: func() []int32 { return nil },
	}
	m.parts.Store(&[]*partitionMetrics{})
	return m
}

// part returns partition p's metrics, making them on first use.
func (m *metrics) part(p int32) *partitionMetrics {
	if ps := *m.parts.Load(); int(p) < len(ps) && ps[p] != nil {
		return ps[p]
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := *m.parts.Load()
	if int(p) < len(ps) && ps[p] != nil {
		return ps[p]
	}
	grown := make([]*partitionMetrics, max(len(ps), int(p)+1))
	copy(grown, ps)
	pm := &partitionMetrics{id: p}
	pm.logEnd.Store(-1)
	pm.applied.Store(-1)
	pm.stored.Store(-1)
	grown[p] = pm
	m.parts.Store(&grown)
	return pm
}

// all returns the partitions seen so far.
func (m *metrics) all() []*partitionMetrics {
	var out []*partitionMetrics
	for _, pm := range *m.parts.Load() {
		if pm != nil {
			out = append(out, pm)
		}
	}
	return out
}

// outcome counts an applied event: one atomic add on the partition's own counters.
func (m *metrics) outcome(p int32, out Outcome) {
	if out >= 0 && int(out) < 4 {
		m.part(p).outcomes[out].Add(1)
	}
}

// assign records the partitions of a new generation.
func (m *metrics) assign(ids []int) {
	for _, pm := range m.all() {
		pm.assigned.Store(false)
	}
	for _, id := range ids {
		m.part(int32(id)).assigned.Store(true)
	}
	m.assignedAt.Store(time.Now().UnixNano())
	m.joined.Store(true)
}

// start marks partition p consumed from now on; stop ends that.
func (m *metrics) start(p int) *partitionMetrics {
	pm := m.part(int32(p))
	pm.openedAt.Store(time.Now().UnixNano())
	pm.logEnd.Store(-1) // figures of an earlier assignment are stale
	pm.applied.Store(-1)
	pm.appliedTS.Store(0)
	pm.stored.Store(-1)
	pm.fetchFailingSince.Store(0)
	pm.fetchOutOfRange.Store(false)
	pm.flushFailingSince.Store(0)
	pm.fetchInFlight.Store(0)
	pm.consuming.Add(1)
	return pm
}

func (pm *partitionMetrics) stop() {
	pm.stoppedAt.Store(time.Now().UnixNano())
	pm.consuming.Add(-1)
}

// opened records where the partition is read from: its stored position
// when ClickHouse has one.
func (pm *partitionMetrics) opened(start int64) *partitionMetrics {
	if start >= 0 {
		pm.stored.Store(start)
		pm.applied.Store(start)
	}
	return pm
}

// fetching records that a fetch request is sent.
func (pm *partitionMetrics) fetching() {
	if pm != nil {
		pm.fetchInFlight.Store(time.Now().UnixNano())
	}
}

// fetched records a successful fetch and the partition's high-water mark.
func (pm *partitionMetrics) fetched(logEnd int64) {
	if pm == nil {
		return
	}
	pm.fetchInFlight.Store(0)
	pm.logEnd.Store(logEnd)
	pm.fetchFailingSince.Store(0)
	pm.fetchOutOfRange.Store(false)
}

// fetchFailed records a failed fetch.
func (pm *partitionMetrics) fetchFailed(err error) {
	telemetry.KafkaError(telemetry.KafkaFetch)
	if pm == nil {
		return
	}
	pm.fetchInFlight.Store(0)
	pm.fetchFailingSince.CompareAndSwap(0, time.Now().UnixNano())
	pm.fetchOutOfRange.Store(errors.Is(err, kafka.OffsetOutOfRange))
}

// fetchFailing returns since when the partition's fetches have been failing,
// or the one in flight has been waiting (a fetch answers within about
// fetchWait when the broker is up); 0 when neither.
func (pm *partitionMetrics) fetchFailing() int64 {
	t := pm.fetchFailingSince.Load()
	if f := pm.fetchInFlight.Load(); f > 0 && time.Since(time.Unix(0, f)) > 10*fetchWait && (t == 0 || f < t) {
		t = f
	}
	return t
}

// appliedBatch records that every message of b is applied.
func (pm *partitionMetrics) appliedBatch(b *batch) {
	if pm == nil || b.len() == 0 {
		return
	}
	pm.appliedTS.Store(b.lastTime)
	pm.applied.Store(b.offsets[b.len()-1] + 1)
}

// flush times one flush attempt of s; after a success the partition's
// stored position is s.next (as a Kafka offset: less the epoch base).
func (m *metrics) flush(s *partitionState, f func() error) error {
	pm := m.part(s.partition)
	start := time.Now()
	if err := f(); err != nil {
		if errors.Is(err, context.Canceled) {
			return err // the partition was revoked or the process stops
		}
		m.flushFailures.Inc()
		pm.flushFailingSince.CompareAndSwap(0, start.UnixNano())
		return err
	}
	m.flushSeconds.Observe(time.Since(start).Seconds())
	pm.flushFailingSince.Store(0)
	pm.stored.Store(int64(s.next) - s.base) // a Kafka offset, as logEnd
	return nil
}

// lag returns how far the partition is behind the high-water mark of its
// last fetch: in messages, from the position stored in ClickHouse; in
// seconds, now minus the Kafka timestamp of the last message applied (the
// start of consumption when none was), and 0 when every message up to the
// high-water mark is applied. ok is false while the figures are unknown.
func (pm *partitionMetrics) lag(now time.Time) (messages int64, seconds float64, ok bool) {
	end, stored, applied := pm.logEnd.Load(), pm.stored.Load(), pm.applied.Load()
	if end < 0 || stored < 0 {
		return 0, 0, false
	}
	messages = max(0, end-stored)
	if applied >= end {
		return messages, 0, true
	}
	from := pm.appliedTS.Load()
	if from <= 0 {
		from = pm.openedAt.Load()
	}
	return messages, max(0, now.Sub(time.Unix(0, from)).Seconds()), true
}

// isStuck says whether the partition's stored position is outside the Kafka log.
func (m *metrics) isStuck(pm *partitionMetrics, stuck []int32) bool {
	return pm.fetchOutOfRange.Load() || slices.Contains(stuck, pm.id)
}

// ErrNotReady wraps the reasons Ready gives.
var ErrNotReady = errors.New("aggregator not ready")

// Ready returns nil when the aggregator does its work: it has received
// its partitions from the consumer group (possibly none, when the group
// has more members than partitions), consumes each of them, none is
// stuck, and no partition's fetches or flushes have been failing for
// longer than failAfter.
func (a *Aggregator) Ready(failAfter time.Duration) error {
	m := a.metrics
	if !m.joined.Load() {
		return fmt.Errorf("%w: no partitions assigned yet (joining consumer group %s)", ErrNotReady, a.cfg.Group)
	}
	now := time.Now()
	since := func(ns int64) time.Duration { return now.Sub(time.Unix(0, ns)).Truncate(time.Second) }
	stuck := m.stuck()
	var errs []error
	for _, pm := range m.all() {
		if !pm.assigned.Load() {
			continue
		}
		switch {
		case m.isStuck(pm, stuck):
			errs = append(errs, fmt.Errorf("partition %d: stuck: stored position outside the Kafka log", pm.id))
		case pm.consuming.Load() == 0 && since(max(m.assignedAt.Load(), pm.stoppedAt.Load())) > failAfter:
			errs = append(errs, fmt.Errorf("partition %d: assigned but not consumed for %s", pm.id, since(max(m.assignedAt.Load(), pm.stoppedAt.Load()))))
		}
		if t := pm.fetchFailing(); t > 0 && since(t) > failAfter {
			errs = append(errs, fmt.Errorf("partition %d: fetch failing for %s", pm.id, since(t)))
		}
		if t := pm.flushFailingSince.Load(); t > 0 && since(t) > failAfter {
			errs = append(errs, fmt.Errorf("partition %d: flush failing for %s", pm.id, since(t)))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrNotReady, errors.Join(errs...))
	}
	return nil
}

// Checks are the aggregator's readiness checks: Ready(failAfter),
// ClickHouse and the Kafka topics reachable.
func (a *Aggregator) Checks(failAfter time.Duration) []telemetry.Check {
	return []telemetry.Check{
		{Name: "aggregate", Func: func(context.Context) error { return a.Ready(failAfter) }},
		telemetry.ClickHouseCheck(a.conn),
		telemetry.KafkaCheck(a.cfg.Brokers, a.cfg.Topic, a.cfg.DLQTopic),
	}
}

// stuckPartitions lists the partitions Stuck reports, for
// immeter_partition_stuck and Ready.
func (a *Aggregator) stuckPartitions() []int32 {
	var out []int32
	for _, st := range a.Stuck() {
		out = append(out, int32(st.Partition))
	}
	return out
}

// Collector returns the aggregator's metrics for a Prometheus registry.
func (a *Aggregator) Collector() prometheus.Collector { return a.metrics }

var (
	descEvents = prometheus.NewDesc("immeter_aggregate_events_total",
		"Events applied, by source partition and outcome: counted (new usage), duplicate (an id seen at another offset), replayed (read again after a restart, already stored), rejected (invalid, to the DLQ).",
		[]string{"partition", "outcome"}, nil)
	descLagMessages = prometheus.NewDesc("immeter_consumer_lag_messages",
		"Messages of an assigned partition up to its high-water mark that are not yet stored in ClickHouse.",
		[]string{"partition"}, nil)
	descLagSeconds = prometheus.NewDesc("immeter_consumer_lag_seconds",
		"Now minus the Kafka timestamp of the last message applied from an assigned partition; 0 when all up to the high-water mark are applied.",
		[]string{"partition"}, nil)
	descStored = prometheus.NewDesc("immeter_partition_stored_offset",
		"Next offset of an assigned partition that ClickHouse stores as aggregated (the durable position).",
		[]string{"partition"}, nil)
	descLogEnd = prometheus.NewDesc("immeter_partition_log_end_offset",
		"High-water mark of an assigned partition at its last fetch.",
		[]string{"partition"}, nil)
	descStuck = prometheus.NewDesc("immeter_partition_stuck",
		"1 when an assigned partition's stored position is outside the Kafka log (below its start or beyond its end).",
		[]string{"partition"}, nil)
	descFetchFailing = prometheus.NewDesc("immeter_partition_fetch_failing_seconds",
		"How long the fetches of an assigned partition have been failing, or the one in flight unanswered; 0 after a success.",
		[]string{"partition"}, nil)
	descFilterHits = prometheus.NewDesc("immeter_aggregate_filter_hits_total",
		"With DEDUP_FILTER_BITS: events whose id a filter of stored ids held, by what event_ids said: stored (a duplicate or a replay) or false (not stored: a false positive, counted as new).",
		[]string{"result"}, nil)
	descAssigned = prometheus.NewDesc("immeter_partitions_assigned",
		"Partitions of the events topic assigned to this aggregator.", nil, nil)
)

var outcomeNames = [4]string{Counted: "counted", Replayed: "replayed", Duplicate: "duplicate", Rejected: "rejected"}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvents, descLagMessages, descLagSeconds, descStored, descLogEnd, descStuck, descFetchFailing, descAssigned, descFilterHits} {
		ch <- d
	}
	m.flushSeconds.Describe(ch)
	m.flushFailures.Describe(ch)
	m.idDaysDropped.Describe(ch)
	m.idDropFailures.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	stuck := m.stuck()
	assigned := 0
	gauge := func(d *prometheus.Desc, v float64, p string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, p)
	}
	for _, pm := range m.all() {
		p := strconv.Itoa(int(pm.id))
		for out, name := range outcomeNames {
			ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(pm.outcomes[out].Load()), p, name)
		}
		if !pm.assigned.Load() {
			continue
		}
		assigned++
		if msgs, secs, ok := pm.lag(now); ok {
			gauge(descLagMessages, float64(msgs), p)
			gauge(descLagSeconds, secs, p)
		}
		if v := pm.stored.Load(); v >= 0 {
			gauge(descStored, float64(v), p)
		}
		if v := pm.logEnd.Load(); v >= 0 {
			gauge(descLogEnd, float64(v), p)
		}
		st := 0.0
		if m.isStuck(pm, stuck) {
			st = 1
		}
		gauge(descStuck, st, p)
		failing := 0.0
		if t := pm.fetchFailing(); t > 0 {
			failing = now.Sub(time.Unix(0, t)).Seconds()
		}
		gauge(descFetchFailing, failing, p)
	}
	ch <- prometheus.MustNewConstMetric(descAssigned, prometheus.GaugeValue, float64(assigned))
	hits, falseHits := m.filterHits.Load(), m.filterFalseHits.Load()
	ch <- prometheus.MustNewConstMetric(descFilterHits, prometheus.CounterValue, float64(hits-falseHits), "stored")
	ch <- prometheus.MustNewConstMetric(descFilterHits, prometheus.CounterValue, float64(falseHits), "false")
	m.flushSeconds.Collect(ch)
	m.flushFailures.Collect(ch)
	m.idDaysDropped.Collect(ch)
	m.idDropFailures.Collect(ch)
}
