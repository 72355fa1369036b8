package rollup

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/immeter/immeter/schemas"
	"github.com/immeter/immeter/telemetry"
)

// metrics is what a Rollup shows Prometheus.
type metrics struct {
	published *prometheus.CounterVec // by status
	duration  prometheus.Histogram
	failures  prometheus.Counter

	lastClose atomic.Int64 // Unix s of the last successful pass over a settled month; 0 none
	closedEnd atomic.Int64 // Unix s of the end of the latest month closed since start; 0 none

	cfg Config
}

func newMetrics(cfg Config) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "immeter_billing_records_published_total",
			Help: "Billing records published to the billing topic, by status (provisional, final, correction).",
		}, []string{"status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "immeter_rollup_duration_seconds",
			Help:    "Duration of a rollup pass over one month (read usage, price, store and publish).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "immeter_rollup_failures_total",
			Help: "Rollup passes over a month that failed (retried at the next tick).",
		}),
		cfg: cfg,
	}
	for _, s := range []string{schemas.Provisional, schemas.Final, schemas.Correction} {
		m.published.WithLabelValues(s)
	}
	return m
}

// recordsPublished counts records acknowledged by Kafka.
func (m *metrics) recordsPublished(recs []storedRecord) {
	for _, s := range recs {
		m.published.WithLabelValues(s.rec.Status).Inc()
	}
}

// observe records the duration of a pass that started at start.
func (m *metrics) observe(start time.Time) { m.duration.Observe(time.Since(start).Seconds()) }

// passed records a successful pass over month mo at now; a pass over a
// settled month closes it.
func (m *metrics) passed(mo schemas.Month, settled bool, now time.Time) {
	if !settled {
		return
	}
	m.lastClose.Store(now.Unix())
	end := mo.End(m.cfg.Location).Unix()
	for {
		cur := m.closedEnd.Load()
		if end <= cur || m.closedEnd.CompareAndSwap(cur, end) {
			return
		}
	}
}

// closeOverdue is how long ago the close of the month before the open one
// became due (its end plus SettleAfter), while no pass since start closed
// it; 0 otherwise.
func (m *metrics) closeOverdue(now time.Time) float64 {
	prev := schemas.MonthOf(now, m.cfg.Location).Prev()
	if m.closedEnd.Load() >= prev.End(m.cfg.Location).Unix() {
		return 0
	}
	return max(0, now.Sub(prev.End(m.cfg.Location).Add(m.cfg.SettleAfter)).Seconds())
}

var (
	descLastClose = prometheus.NewDesc("immeter_rollup_last_month_close_timestamp_seconds",
		"Unix time of the last successful pass over a settled month (its final records or corrections published, or found unchanged); 0 before the first.",
		nil, nil)
	descCloseOverdue = prometheus.NewDesc("immeter_rollup_month_close_overdue_seconds",
		"Seconds since the previous month's close became due (month end plus SETTLE_AFTER) while this process has not closed it; 0 when closed or not yet due.",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.published.Describe(ch)
	m.duration.Describe(ch)
	m.failures.Describe(ch)
	ch <- descLastClose
	ch <- descCloseOverdue
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.published.Collect(ch)
	m.duration.Collect(ch)
	m.failures.Collect(ch)
	ch <- prometheus.MustNewConstMetric(descLastClose, prometheus.GaugeValue, float64(m.lastClose.Load()))
	ch <- prometheus.MustNewConstMetric(descCloseOverdue, prometheus.GaugeValue, m.closeOverdue(m.cfg.Now()))
}

// Collector returns the rollup's metrics for a Prometheus registry.
func (r *Rollup) Collector() prometheus.Collector { return r.m }

// Checks are the rollup's readiness checks: ClickHouse and the billing topic reachable.
func (r *Rollup) Checks() []telemetry.Check {
	return []telemetry.Check{
		telemetry.ClickHouseCheck(r.conn),
		telemetry.KafkaCheck(r.cfg.Brokers, r.cfg.Topic),
	}
}
