package rollup

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/schemas"
)

func TestAlertLevels(t *testing.T) {
	if got := DefaultPriceBook().AlertLevels(); !slices.Equal(got, []int{80, 100}) {
		t.Fatalf("unexpected default levels; got %v; want [80 100]", got)
	}
	f := func(yaml []byte, want []int, wantErr string) {
		t.Helper()
		pb, err := ParsePriceBook(yaml)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("unexpected error; got %v; want %q", err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := pb.AlertLevels(); !slices.Equal(got, want) {
			t.Fatalf("unexpected levels; got %v; want %v", got, want)
		}
	}
	f(edit(t, "alert_levels: [80, 100]", "alert_levels: [50, 90, 100, 120]"), []int{50, 90, 100, 120}, "")
	f(edit(t, "alert_levels: [80, 100]", ""), []int{80, 100}, "")
	f(edit(t, "alert_levels: [80, 100]", "alert_levels: []"), nil, "alert_levels: at least one level")
	f(edit(t, "alert_levels: [80, 100]", "alert_levels: [100, 80]"), nil, "alert_levels: levels must be strictly ascending")
	f(edit(t, "alert_levels: [80, 100]", "alert_levels: [0, 100]"), nil, "alert_levels: 0: a level is a percentage")
	f(edit(t, "alert_levels: [80, 100]", "alert_levels: [80, 80.5]"), nil, "alert_levels")
}

func TestReached(t *testing.T) {
	f := func(value, limit int64, level int, want bool) {
		t.Helper()
		if got := reached(value, limit, level); got != want {
			t.Errorf("reached(%d, %d, %d): got %v; want %v", value, limit, level, got, want)
		}
	}
	f(79, 100, 80, false)
	f(80, 100, 80, true)
	f(7999, 10000, 80, false)
	f(8000, 10000, 80, true)
	f(79_999_999, 100_000_000, 80, false)
	f(80_000_000, 100_000_000, 80, true)
	f(7, 9, 80, false) // 7.2 needed
	f(8, 9, 80, true)
	f(-5, 100, 80, false)
}

// TestCrossed: levels not alerted yet that the value reaches, none for an
// unlimited limit, and the id names the edition.
func TestCrossed(t *testing.T) {
	a := &Alerter{cfg: AlertConfig{Prices: DefaultPriceBook()}, known: map[string]bool{}}
	now := time.Date(2026, 10, 5, 1, 2, 3, 0, time.UTC)
	w := watch{app: 7, kind: schemas.AlertMAUQuota, period: "2026-10", edition: EditionDeveloper, limit: 100}
	ids := func(as []schemas.Alert) []string {
		var out []string
		for _, x := range as {
			out = append(out, x.ID)
		}
		return out
	}
	if got := ids(a.crossed(w, 79, now)); len(got) != 0 {
		t.Fatalf("unexpected alerts at 79; got %v", got)
	}
	if got := ids(a.crossed(w, 100, now)); !slices.Equal(got, []string{"7:mau_quota:2026-10:developer:80", "7:mau_quota:2026-10:developer:100"}) {
		t.Fatalf("unexpected alerts at 100; got %v", got)
	}
	a.known["7:mau_quota:2026-10:developer:80"] = true
	if got := ids(a.crossed(w, 100, now)); !slices.Equal(got, []string{"7:mau_quota:2026-10:developer:100"}) {
		t.Fatalf("unexpected alerts at 100 with 80 known; got %v", got)
	}
	w.edition, w.limit = EditionStandard, 10000
	if got := ids(a.crossed(w, 8000, now)); !slices.Equal(got, []string{"7:mau_quota:2026-10:standard:80"}) {
		t.Fatalf("unexpected alerts after the upgrade; got %v", got)
	}
	w.limit = Unlimited
	if got := a.crossed(w, 1<<40, now); len(got) != 0 {
		t.Fatalf("unexpected alerts for an unlimited limit; got %v", got)
	}
}

func TestEditionAt(t *testing.T) {
	loc := time.FixedZone("+08:00", 8*3600)
	up := time.Date(2026, 10, 20, 12, 0, 0, 0, loc)
	changes := []planChange{{at: up, edition: EditionStandard}, {at: up.Add(24 * time.Hour), edition: EditionPremium}}
	f := func(t0 time.Time, want Edition) {
		t.Helper()
		if got := editionAt(changes, t0); got != want {
			t.Errorf("editionAt(%s): got %s; want %s", t0, got, want)
		}
	}
	f(up, EditionDeveloper)
	f(up.Add(time.Nanosecond), EditionStandard)
	f(dayEnd(schemas.DayOf(up, loc), loc), EditionStandard)
	f(schemas.Month{Year: 2026, Month: time.October}.End(loc), EditionPremium)
}

func TestAlertConfig(t *testing.T) {
	f := func(set func(*AlertConfig), want string) {
		t.Helper()
		c := DefaultAlertConfig()
		c.Brokers = []string{"127.0.0.1:9"}
		set(&c)
		_, err := NewAlerter(c, nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)) {
			t.Fatalf("unexpected error; got %v; want %q", err, want)
		}
	}
	f(func(c *AlertConfig) {}, "")
	f(func(c *AlertConfig) { c.Interval = 0 }, "ALERT_INTERVAL: must be > 0")
	f(func(c *AlertConfig) { c.Sweep = 0 }, "ALERT_SWEEP: must be > 0")
	f(func(c *AlertConfig) { c.Topic = "" }, "ALERTS_TOPIC: must not be empty")
	f(func(c *AlertConfig) { c.Brokers = nil }, "KAFKA_BROKERS: required")
}

// TestForget: ids of periods no longer checked are dropped, the others and
// the live-group ones kept.
func TestForget(t *testing.T) {
	a := &Alerter{known: map[string]bool{
		"7:mau_quota:2026-08:developer:80":           true,
		"7:daily_net_groups:2026-08-31:developer:80": true,
		"7:mau_quota:2026-09:developer:80":           true,
		"7:daily_net_groups:2026-09-01:developer:80": true,
		"7:live_groups:current:developer:80":         true,
	}}
	a.forget("2026-09")
	var got []string
	for id := range a.known {
		got = append(got, id)
	}
	slices.Sort(got)
	want := []string{"7:daily_net_groups:2026-09-01:developer:80", "7:live_groups:current:developer:80", "7:mau_quota:2026-09:developer:80"}
	if !slices.Equal(got, want) {
		t.Fatalf("unexpected ids kept; got %v; want %v", got, want)
	}
}
