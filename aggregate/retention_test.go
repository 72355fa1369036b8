package aggregate_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/schemas"
)

// retentionEvent is a login of app 1400000001 (one partition) with id and
// day given, at noon in the billing time zone.
func retentionEvent(t *testing.T, id, day string) kafka.Message {
	t.Helper()
	at, err := time.ParseInLocation(time.DateTime, day+" 12:00:00", time.FixedZone("+08:00", 8*3600))
	if err != nil {
		t.Fatal(err)
	}
	const app = 1400000001
	v, err := json.Marshal(schemas.Event{ID: id, Type: schemas.Login, App: app, Time: at, User: "u-" + id})
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(strconv.Itoa(app)), Value: v}
}

// TestRetentionDropsIDsBeforeWindow: once the clock has moved on, the
// aggregator drops the days of event_ids before its accepted window (minus
// aggregate.IDsMargin), keeps the margin day and the days in the window,
// and after a restart still recognises a repeated event of a day in the
// window as a duplicate.
func TestRetentionDropsIDsBeforeWindow(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The harness accepts 100 days (maxPast). On 2026-10-01 all three
	// days are in the window; on 2026-11-30 (window from 2026-08-22) the
	// first is before it, the second is its margin day, the third is in it.
	var clock atomic.Pointer[time.Time]
	setClock := func(s string) {
		at, _ := time.Parse(time.RFC3339, s)
		clock.Store(&at)
	}
	now := func() time.Time { return *clock.Load() }
	const old, margin, inWindow = "2026-07-01", "2026-08-21", "2026-09-15"
	setClock("2026-10-01T04:00:00Z")
	cfg := aggregate.Config{FlushInterval: 200 * time.Millisecond, Now: now}

	agg, stop := env.runAggregator(ctx, t, "before", cfg, env.conn)
	env.produce(ctx, t, env.events, []kafka.Message{
		retentionEvent(t, "e-old", old), retentionEvent(t, "e-margin", margin), retentionEvent(t, "e-in", inWindow)})
	env.waitAggregated(ctx, t)
	stop()
	if st := agg.Stats(); st.Counted != 3 {
		t.Fatalf("unexpected counted events on 2026-10-01; got %d; want 3 (stats %+v)", st.Counted, st)
	}
	idsOf := func(day string) uint64 {
		t.Helper()
		var n uint64
		if err := env.conn.QueryRow(ctx, "SELECT count() FROM event_ids WHERE day = toDate(?)", day).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, d := range []string{old, margin, inWindow} {
		if n := idsOf(d); n != 1 {
			t.Fatalf("event_ids of %s before the clock moved: %d rows; want 1", d, n)
		}
	}

	// Two months later, a new process: its first flush drops the old day.
	setClock("2026-11-30T04:00:00Z")
	agg, stop = env.runAggregator(ctx, t, "after", cfg, env.conn)
	reg := prometheus.NewRegistry()
	reg.MustRegister(agg.Collector())
	dropped := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "immeter_aggregate_event_id_days_dropped_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return -1
	}
	for deadline := time.Now().Add(30 * time.Second); idsOf(old) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("event_ids of %s (before the window from 2026-08-22) not dropped", old)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := idsOf(margin); n != 1 {
		t.Errorf("event_ids of %s (the margin day before the window): %d rows; want 1 (kept)", margin, n)
	}
	if n := idsOf(inWindow); n != 1 {
		t.Errorf("event_ids of %s (in the window): %d rows; want 1 (kept)", inWindow, n)
	}
	if got := dropped(); got != 1 {
		t.Errorf("immeter_aggregate_event_id_days_dropped_total = %v; want 1", got)
	}

	// The same event of the day in the window again, at a new offset: a
	// duplicate, known from the kept ids. The one of the dropped day is
	// too old to be accepted at all, so its id is never needed.
	env.produce(ctx, t, env.events, []kafka.Message{retentionEvent(t, "e-in", inWindow), retentionEvent(t, "e-old", old)})
	env.waitAggregated(ctx, t)
	stop()
	if st := agg.Stats(); st.Duplicates != 1 || st.Rejected != 1 || st.Counted != 0 {
		t.Errorf("unexpected outcomes of the repeated events after the restart; got %+v; want 1 duplicate, 1 rejected, 0 counted", st)
	}
	var logins uint64
	if err := env.conn.QueryRow(ctx, "SELECT sum(logins) FROM daily_stats WHERE day = toDate(?)", inWindow).Scan(&logins); err != nil {
		t.Fatal(err)
	}
	if logins != 1 {
		t.Errorf("logins of %s: %d; want 1 (the repeated event not counted again)", inWindow, logins)
	}
	// Idempotent: nothing is left to drop, and dropping again changes nothing.
	days, err := aggregate.DropIDDays(ctx, env.conn, schemas.DayFromDate(2026, 8, 21))
	if err != nil || len(days) != 0 {
		t.Errorf("DropIDDays again: dropped %v, %v; want none", days, err)
	}
}
