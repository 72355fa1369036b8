package rollup

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/immeter/immeter/schemas"
)

func TestMonthCloseMetrics(t *testing.T) {
	loc := time.FixedZone("+08:00", 8*3600)
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, loc)
	cfg := DefaultConfig()
	cfg.Location, cfg.SettleAfter = loc, 24*time.Hour
	cfg.Now = func() time.Time { return now }
	m := newMetrics(cfg)
	oct, nov := schemas.Month{Year: 2026, Month: time.October}, schemas.Month{Year: 2026, Month: time.November}

	f := func(at time.Time, want float64) {
		t.Helper()
		now = at
		if got := m.closeOverdue(now); got != want {
			t.Errorf("unexpected overdue at %s; got %v; want %v", at, got, want)
		}
	}
	f(time.Date(2026, 11, 1, 12, 0, 0, 0, loc), 0)    // October's close not due before Nov 2, 00:00 +08:00
	f(time.Date(2026, 11, 2, 0, 0, 0, 0, loc), 0)     // due now
	f(time.Date(2026, 11, 3, 0, 0, 0, 0, loc), 86400) // a day late
	m.passed(nov, false, now)                         // a provisional pass closes nothing
	f(time.Date(2026, 11, 3, 0, 0, 0, 0, loc), 86400)
	m.passed(oct, true, now)
	f(time.Date(2026, 11, 3, 0, 0, 0, 0, loc), 0)
	if got := m.lastClose.Load(); got != now.Unix() {
		t.Errorf("unexpected last close; got %d; want %d", got, now.Unix())
	}
	f(time.Date(2026, 12, 5, 0, 0, 0, 0, loc), 3*86400) // November not closed yet

	m.recordsPublished([]storedRecord{{rec: schemas.BillingRecord{Status: schemas.Final}}, {rec: schemas.BillingRecord{Status: schemas.Final}},
		{rec: schemas.BillingRecord{Status: schemas.Correction}}})
	for status, want := range map[string]float64{schemas.Final: 2, schemas.Correction: 1, schemas.Provisional: 0} {
		if got := testutil.ToFloat64(m.published.WithLabelValues(status)); got != want {
			t.Errorf("unexpected records published with status %s; got %v; want %v", status, got, want)
		}
	}
}
