package rollup

import (
	"context"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

// BenchmarkAlertDetect: the Go work of an incremental check over 50k of
// 100k apps (two days each, one partition), none near a level, so that no
// query is needed.
func BenchmarkAlertDetect(b *testing.B) {
	loc, _ := schemas.ParseTimezone("+08:00")
	now := time.Date(2026, 10, 20, 12, 0, 0, 0, loc)
	cfg := DefaultAlertConfig()
	cfg.Brokers, cfg.Location = []string{"127.0.0.1:9"}, loc
	a, err := NewAlerter(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	a.usage, a.unchecked = map[uint32]*appUsage{}, map[uint32]appToCheck{}
	d19, d20 := schemas.DayFromDate(2026, 10, 19), schemas.DayFromDate(2026, 10, 20)
	plans := map[uint32][]planChange{}
	var apps []appToCheck
	for i := range 100000 {
		app := uint32(1000 + i*7)
		u := &appUsage{rows: []usageRow{
			{day: d19, part: 1, version: 5, dayFigures: dayFigures{logins: 3, community: 10, created: 1}},
			{day: d20, part: 1, version: 9, dayFigures: dayFigures{logins: 5, community: 20, created: 2, dissolved: 1}},
		}}
		a.usage[app] = u
		if i%2 == 0 {
			c := appToCheck{app: app, u: u, changed: changedRow | changedLogins}
			apps = append(apps, c)
			a.unchecked[app] = c
		}
		if i%50 == 0 {
			plans[app] = []planChange{{at: now.Add(-48 * time.Hour), edition: EditionPremium}}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.detect(context.Background(), apps, false, now, plans); err != nil {
			b.Fatal(err)
		}
	}
}
