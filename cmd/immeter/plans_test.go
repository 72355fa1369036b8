package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// TestOldPlanEvents seeds editions with `immeter plans import` after
// October 2026 is final, on the real services: an edition bought a year
// before (older than MAX_EVENT_AGE) is billed, and plan changes inside the
// final month lead the rollup daemon to corrections.
func TestOldPlanEvents(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 11, 5, 8, 0, 0, 0, loc))
	const appA, appB, appC = 1400000101, 1400000102, 1400000103

	startAggregator(ctx, t, env, func(c *aggregate.Config) {
		c.Location, c.FlushInterval, c.Now = loc, 50*time.Millisecond, clock.Now
	})
	runCtx, stop := context.WithCancel(ctx) // the rollup's

	// Two users each for A and B on October 3; no plan yet: Developer.
	var msgs []kafka.Message
	for i, app := range []uint32{appA, appA, appB, appB} {
		e := schemas.Event{ID: fmt.Sprintf("op-%d", i), Type: schemas.Login, App: app, User: fmt.Sprintf("u%d", i),
			Time: time.Date(2026, 10, 3, 9, 0, 0, 0, loc)}
		b, _ := json.Marshal(e)
		msgs = append(msgs, kafka.Message{Key: []byte(strconv.Itoa(int(app))), Value: b})
	}
	env.produce(ctx, t, env.events, msgs)
	env.waitAggregated(ctx, t, env.events)

	r, err := rollup.New(testRollupConfig(env, func(c *rollup.Config) { c.Location, c.Now, c.Interval = loc, clock.Now, time.Hour }), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rollDone := make(chan error, 1)
	go func() { rollDone <- r.Run(runCtx, 20*time.Millisecond) }()
	defer func() { stop(); <-rollDone }()
	count := func() int {
		var total int64
		for _, o := range env.endOffsets(ctx, t, env.billing) {
			total += o
		}
		return int(total)
	}
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for count() < want && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // more ticks: nothing else may come
		if got := count(); got != want {
			t.Fatalf("unexpected billing records; got %d; want %d", got, want)
		}
	}
	waitCount(2) // October is settled: A and B final at Developer

	// The editions apps had before immeter: A Standard since a year before
	// October, B Premium from October 15 (inside the final month), C
	// Standard since June (no usage).
	file := filepath.Join(t.TempDir(), "plans.csv")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("app,edition,from\n%d,standard,2025-10-01\n%d,premium,2026-10-15T23:30:00+08:00\n%d,standard,2026-06-01\n",
		appA, appB, appC)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runPlans(ctx, []string{"import", "--kafka-brokers", strings.Join(env.brokers, ","), "--events-topic", env.events,
		"--kafka-partitions", strconv.Itoa(testPartitions), "--billing-tz", "+08:00", file}); err != nil {
		t.Fatal(err)
	}
	env.waitAggregated(ctx, t, env.events)
	waitCount(7)

	var dlq int64
	for _, o := range env.endOffsets(ctx, t, env.dlq) {
		dlq += o
	}
	if dlq != 0 {
		t.Errorf("unexpected dead letters: %d", dlq)
	}
	var got []string
	for _, rec := range env.readBilling(ctx, t, 7) {
		got = append(got, fmt.Sprintf("%d %s rev %d %s %s %s", rec.App, rec.Month, rec.Revision, rec.Status, rec.Edition, rec.Total))
	}
	sort.Strings(got)
	// Standard 399 a month; B: Premium on October 15–31, 699 × 17 / 31 =
	// 383.322…; 2 MAU is within every free quota. September had no
	// record yet: A and C, paid since before it, get its final.
	want := []string{
		"1400000101 2026-09 rev 1 final standard 399.00",
		"1400000101 2026-10 rev 1 final developer 0.00",
		"1400000101 2026-10 rev 2 correction standard 399.00",
		"1400000102 2026-10 rev 1 final developer 0.00",
		"1400000102 2026-10 rev 2 correction premium 383.32",
		"1400000103 2026-09 rev 1 final standard 399.00",
		"1400000103 2026-10 rev 1 final standard 399.00",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unexpected records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
