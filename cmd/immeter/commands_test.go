package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// TestRollupFinalOpenMonth asks for the final records of a month that has
// not ended: refused, before any service is contacted (none is reachable
// here), with an error that says why and how to override.
func TestRollupFinalOpenMonth(t *testing.T) {
	loc, _ := schemas.ParseTimezone("+08:00")
	now := time.Now()
	for _, m := range []schemas.Month{schemas.MonthOf(now, loc), schemas.MonthOf(now, loc).Next(), {Year: now.Year() + 1, Month: time.January}} {
		err := runRollup(context.Background(), []string{"--kafka-brokers", "127.0.0.1:1", "--clickhouse-addr", "127.0.0.1:1", "--billing-tz", "+08:00",
			"--month", m.String(), "--final"})
		if err == nil || !strings.Contains(err.Error(), "has not ended in the billing time zone +08:00") || !strings.Contains(err.Error(), "--allow-open-month") {
			t.Errorf("--month %s --final: got %v; want a refusal naming the time zone and the override", m, err)
		}
	}
	err := runRollup(context.Background(), []string{"--kafka-brokers", "127.0.0.1:1", "--clickhouse-addr", "127.0.0.1:1", "--month", "2026-01", "--allow-open-month"})
	if err == nil || !strings.Contains(err.Error(), "--allow-open-month: only with --final") {
		t.Errorf("--allow-open-month without --final: got %v", err)
	}
	// The package refuses it too, before reading anything.
	cfg := rollup.DefaultConfig()
	cfg.Brokers, cfg.Location = []string{"127.0.0.1:1"}, loc
	r, err := rollup.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Publish(context.Background(), schemas.MonthOf(now, loc), rollup.ForceFinal); !errors.Is(err, rollup.ErrMonthNotEnded) {
		t.Errorf("Publish(open month, ForceFinal): got %v; want ErrMonthNotEnded", err)
	}
}

// TestBillingTZSetting checks that a bad BILLING_TZ stops a command at
// start, naming the setting.
func TestBillingTZSetting(t *testing.T) {
	for _, tz := range []string{"Local", "+-8:00", "-+1:00", "+14:59", "+8"} {
		t.Setenv("BILLING_TZ", tz)
		err := runRollup(context.Background(), []string{"--kafka-brokers", "127.0.0.1:1", "--clickhouse-addr", "127.0.0.1:1", "--month", "2026-01"})
		if err == nil || !strings.HasPrefix(err.Error(), "BILLING_TZ: ") {
			t.Errorf("BILLING_TZ=%q: got %v; want an error naming BILLING_TZ", tz, err)
		}
	}
	// Typed as a flag, the error names the flag; an empty zone is refused too.
	for _, tz := range []string{"", "Local", "+-8:00"} {
		err := runRollup(context.Background(), []string{"--kafka-brokers", "127.0.0.1:1", "--clickhouse-addr", "127.0.0.1:1", "--billing-tz", tz, "--month", "2026-01"})
		if err == nil || !strings.HasPrefix(err.Error(), "-billing-tz: ") {
			t.Errorf("--billing-tz %q: got %v; want an error naming -billing-tz", tz, err)
		}
	}
}

func TestParsePlans(t *testing.T) {
	loc, _ := schemas.ParseTimezone("Asia/Shanghai")
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, loc)
	evs, err := parsePlans(strings.NewReader("app,edition,from\n# seeded from the IM console\n\n1400000001,standard,2025-10-01\n 1400000002 , premium , 2026-06-15T10:00:00+08:00\n"), "plans.csv", loc, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].App != 1400000001 || evs[0].Edition != "standard" || !evs[0].Time.Equal(time.Date(2025, 9, 30, 16, 0, 0, 0, time.UTC)) ||
		evs[1].App != 1400000002 || evs[1].Edition != "premium" || !evs[1].Time.Equal(time.Date(2026, 6, 15, 2, 0, 0, 0, time.UTC)) ||
		evs[0].Type != schemas.Plan || evs[0].ID != "plan-import:1400000001:standard:2025-09-30T16:00:00Z" {
		t.Fatalf("unexpected events: %+v", evs)
	}
	for _, c := range []struct{ in, want string }{
		{"1400000001,standard\n", "plans.csv:1: 1400000001,standard: want app,edition,from"},
		{"0,standard,2026-01-01\n", "plans.csv:1: 0,standard,2026-01-01: app:"},
		{"4294967296,standard,2026-01-01\n", "app:"},
		{"1,gold,2026-01-01\n", "edition"},
		{"1,standard,2026-13-01\n", "from: want a date"},
		{"1,standard,2026-06-15T10:00:00\n", "from: want a date"},
		{"1,standard,2026-12-01\n", "in the future"},
		{"1,standard,1969-12-31\n", "before 1970"},
		{"1,standard,2026-01-01\n2,standard,x\n", "plans.csv:2:"},
		{"# nothing\n", "no app,edition,from lines"},
	} {
		_, err := parsePlans(strings.NewReader(c.in), "plans.csv", loc, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v; want an error with %q", c.in, err, c.want)
		}
	}
}
