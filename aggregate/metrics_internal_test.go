package aggregate

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLag(t *testing.T) {
	now := time.Now()
	f := func(logEnd, stored, applied int64, appliedAgo time.Duration, wantMsgs int64, wantSecs float64, wantOK bool) {
		t.Helper()
		pm := newMetrics().part(0)
		pm.logEnd.Store(logEnd)
		pm.stored.Store(stored)
		pm.applied.Store(applied)
		pm.appliedTS.Store(now.Add(-appliedAgo).UnixNano())
		msgs, secs, ok := pm.lag(now)
		if msgs != wantMsgs || secs != wantSecs || ok != wantOK {
			t.Errorf("lag(end %d, stored %d, applied %d): got %d, %v, %v; want %d, %v, %v",
				logEnd, stored, applied, msgs, secs, ok, wantMsgs, wantSecs, wantOK)
		}
	}
	f(100, 100, 100, time.Hour, 0, 0, true)      // caught up and stored
	f(100, 90, 100, time.Hour, 10, 0, true)      // all applied, not all stored yet
	f(100, 90, 95, 30*time.Second, 10, 30, true) // behind: the age of the last applied message
	f(-1, 90, 95, time.Second, 0, 0, false)      // no fetch yet
	f(100, -1, 95, time.Second, 0, 0, false)     // no stored position yet
}

// TestReadyAndStuck checks Ready and immeter_partition_stuck against the
// partitions held stuck.
func TestReadyAndStuck(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Brokers = []string{"127.0.0.1:1"}
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Ready(time.Minute); err == nil || !strings.Contains(err.Error(), "no partitions assigned") {
		t.Fatalf("unexpected Ready before the group assigned partitions; got %v", err)
	}
	a.metrics.assign([]int{0, 1})
	a.metrics.start(0)
	a.metrics.start(1)
	if err := a.Ready(time.Minute); err != nil {
		t.Fatalf("unexpected Ready; got %v; want nil", err)
	}
	stuck := func() float64 {
		return gauge(t, a, "immeter_partition_stuck", "1")
	}
	if got := stuck(); got != 0 {
		t.Fatalf("unexpected immeter_partition_stuck{partition=1}; got %v; want 0", got)
	}
	a.setStuck(&Stuck{Partition: 1, Kind: GapBeforeLogStart, Position: 10, LogStart: 150, LogEnd: 200}, a.cfg.Logger)
	if err := a.Ready(time.Minute); err == nil || !strings.Contains(err.Error(), "partition 1: stuck") {
		t.Fatalf("unexpected Ready with partition 1 stuck; got %v", err)
	}
	if got := stuck(); got != 1 {
		t.Fatalf("unexpected immeter_partition_stuck{partition=1}; got %v; want 1", got)
	}
	a.clearStuck(1, a.cfg.Logger)
	pm := a.metrics.part(0)
	pm.fetchFailingSince.Store(time.Now().Add(-2 * time.Minute).UnixNano())
	if err := a.Ready(time.Minute); err == nil || !strings.Contains(err.Error(), "partition 0: fetch failing") {
		t.Fatalf("unexpected Ready with partition 0's fetches failing for 2m; got %v", err)
	}
	if err := a.Ready(time.Hour); err != nil {
		t.Fatalf("unexpected Ready with fetches failing for less than failAfter; got %v", err)
	}
	pm.fetchFailingSince.Store(0)
	if err := a.Ready(time.Minute); err != nil {
		t.Fatalf("unexpected Ready after a successful fetch; got %v", err)
	}
	pm.fetchInFlight.Store(time.Now().Add(-2 * time.Minute).UnixNano()) // a fetch without an answer
	if err := a.Ready(time.Minute); err == nil || !strings.Contains(err.Error(), "partition 0: fetch failing") {
		t.Fatalf("unexpected Ready with partition 0's fetch unanswered for 2m; got %v", err)
	}
	if got := gauge(t, a, "immeter_partition_fetch_failing_seconds", "0"); got < 119 {
		t.Fatalf("unexpected immeter_partition_fetch_failing_seconds{partition=0}; got %v; want about 120", got)
	}
}

// gauge returns the value of a's metric name for partition p.
func gauge(t *testing.T, a *Aggregator, name, p string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "partition" && l.GetValue() == p {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{partition=%q}", name, p)
	return 0
}
