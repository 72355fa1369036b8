package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// testClock runs in real time from a base that the test can move.
type testClock struct {
	mu    sync.Mutex
	base  time.Time
	start time.Time
}

func newTestClock(base time.Time) *testClock { return &testClock{base: base, start: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Since(c.start))
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.start = t, time.Now()
}

// TestRecordLifecycle follows one month of a Standard app through
// provisional, final and correction records on the real topic.
func TestRecordLifecycle(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const app = 1400000042

	startAggregator(ctx, t, env, func(c *aggregate.Config) {
		c.Location, c.FlushInterval, c.Now = loc, 100*time.Millisecond, clock.Now
	})

	r, err := rollup.New(testRollupConfig(env, func(c *rollup.Config) { c.Location = loc; c.Now = clock.Now }), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	oct := schemas.Month{Year: 2026, Month: time.October}

	id := 0
	publish := func(events ...schemas.Event) {
		t.Helper()
		var msgs []kafka.Message
		for _, e := range events {
			id++
			e.ID, e.App = fmt.Sprintf("lc-%d", id), app
			b, _ := json.Marshal(e)
			msgs = append(msgs, kafka.Message{Key: []byte(strconv.Itoa(app)), Value: b})
		}
		env.produce(ctx, t, env.events, msgs)
		env.waitAggregated(ctx, t, env.events)
	}
	logins := func(day, from, to int) []schemas.Event {
		var out []schemas.Event
		for u := from; u < to; u++ {
			out = append(out, schemas.Event{Type: schemas.Login, Time: time.Date(2026, 10, day, 9, 0, 0, 0, loc), User: fmt.Sprintf("u%05d", u)})
		}
		return out
	}
	step := func(wantRes rollup.Result) {
		t.Helper()
		res, err := r.Publish(ctx, oct, rollup.Auto)
		if err != nil {
			t.Fatal(err)
		}
		if res != wantRes {
			t.Fatalf("unexpected rollup result; got %+v; want %+v", res, wantRes)
		}
	}

	// Standard from October 1st; 10,000 users: exactly the free quota.
	publish(append([]schemas.Event{{Type: schemas.Plan, Time: time.Date(2026, 10, 1, 0, 0, 0, 0, loc), Edition: "standard"}},
		logins(3, 0, 10000)...)...)
	step(rollup.Result{Provisional: 1})
	step(rollup.Result{Unchanged: 1}) // nothing changed: no record

	// One more user, and 61 audio seconds over two calls.
	publish(append(logins(15, 10000, 10001),
		schemas.Event{Type: schemas.Call, Time: time.Date(2026, 10, 16, 9, 0, 0, 0, loc), User: "u00001", Media: "audio", Seconds: 30},
		schemas.Event{Type: schemas.Call, Time: time.Date(2026, 10, 17, 9, 0, 0, 0, loc), User: "u00002", Media: "audio", Seconds: 31})...)
	step(rollup.Result{Provisional: 1})

	// The month ended, but the settlement time (24 h later) has not come: a
	// late login on October 31 still goes into a provisional record.
	clock.Set(time.Date(2026, 11, 1, 10, 0, 0, 0, loc))
	publish(logins(31, 10001, 10002)...)
	step(rollup.Result{Provisional: 1})

	// Settlement time: the final record, with no change in figures.
	clock.Set(time.Date(2026, 11, 2, 0, 0, 1, 0, loc))
	step(rollup.Result{Final: 1})
	step(rollup.Result{Unchanged: 1})

	// A late login for October after the final: a correction.
	clock.Set(time.Date(2026, 11, 5, 8, 0, 0, 0, loc))
	publish(logins(30, 10002, 10003)...)
	step(rollup.Result{Correction: 1})
	step(rollup.Result{Unchanged: 1})

	recs := env.readBilling(ctx, t, 5)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Revision < recs[j].Revision })
	type want struct {
		status     string
		supersedes int
		mau        uint64
		total      string
	}
	// Standard, 31 days: 399.00. Overage 0.015 per MAU beyond 10,000, each
	// line rounded half-up: 1 → 0.015 → 0.02; 2 → 0.03; 3 → 0.045 → 0.05.
	// Calls: 61 s → 2 min × 0.99/1000 = 0.00198 → 0.00.
	wants := []want{
		{schemas.Provisional, 0, 10000, "399.00"},
		{schemas.Provisional, 1, 10001, "399.02"},
		{schemas.Provisional, 2, 10002, "399.03"},
		{schemas.Final, 3, 10002, "399.03"},
		{schemas.Correction, 4, 10003, "399.05"},
	}
	for i, w := range wants {
		rec := recs[i]
		if rec.Revision != i+1 || rec.Status != w.status || rec.Supersedes != w.supersedes || rec.Usage.MAU != w.mau || rec.Total != w.total {
			t.Errorf("revision %d: got status %s supersedes %d MAU %d total %s; want %+v", i+1, rec.Status, rec.Supersedes, rec.Usage.MAU, rec.Total, w)
		}
	}
	if last := recs[4]; last.Usage.CallMinutes.Audio != 2 || last.Usage.CallSeconds.Audio != 61 || last.Edition != "standard" {
		t.Errorf("unexpected calls or edition: %+v %s", last.Usage, last.Edition)
	}

	// A crash between storing and publishing: the stored revision is
	// published again at start, byte for byte.
	if err := env.conn.Exec(ctx, "ALTER TABLE billing_published DELETE WHERE revision = 5"); err != nil {
		t.Fatal(err)
	}
	waitMutations(ctx, t, env)
	if err := r.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	again := env.readAll(ctx, t, env.billing, 6)
	var copies [][]byte
	for _, m := range again {
		if string(m.Key) == fmt.Sprintf("%d:2026-10", app) && header(m, "immeter-revision") == "5" {
			copies = append(copies, m.Value)
		}
	}
	if len(copies) != 2 || string(copies[0]) != string(copies[1]) {
		t.Errorf("revision 5 not republished identically: %d copies", len(copies))
	}
}

func waitMutations(ctx context.Context, t *testing.T, env *testEnv) {
	t.Helper()
	for {
		var n uint64
		if err := env.conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", env.ch.Database).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRollupDaemon checks the daemon's schedule: provisional records at
// most every interval and only after a change, the final at settlement,
// then a correction for late usage.
func TestRollupDaemon(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	clock := newTestClock(time.Date(2026, 10, 20, 12, 0, 0, 0, loc))
	const app = 1400000077

	startAggregator(ctx, t, env, func(c *aggregate.Config) {
		c.Location, c.FlushInterval, c.Now = loc, 50*time.Millisecond, clock.Now
	})
	runCtx, stop := context.WithCancel(ctx) // the rollup's
	defer stop()

	n := 0
	login := func(day int) {
		t.Helper()
		n++
		e := schemas.Event{ID: fmt.Sprintf("d-%d", n), Type: schemas.Login, App: app, User: fmt.Sprintf("u%d", n),
			Time: time.Date(2026, 10, day, 9, 0, 0, 0, loc)}
		b, _ := json.Marshal(e)
		env.produce(ctx, t, env.events, []kafka.Message{{Key: []byte(strconv.Itoa(app)), Value: b}})
		env.waitAggregated(ctx, t, env.events)
	}
	count := func() int {
		end := env.endOffsets(ctx, t, env.billing)
		var total int64
		for _, o := range end {
			total += o
		}
		return int(total)
	}
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for count() < want && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // a few more ticks: nothing else may come
		if got := count(); got != want {
			t.Fatalf("unexpected billing records; got %d; want %d", got, want)
		}
	}

	login(3)
	r, err := rollup.New(testRollupConfig(env, func(c *rollup.Config) { c.Location = loc; c.Now = clock.Now; c.Interval = time.Hour }), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() { _ = r.Run(runCtx, 20*time.Millisecond) }()
	waitCount(1) // provisional 1 at start

	login(4)
	waitCount(1) // changed, but the interval has not passed
	clock.Set(time.Date(2026, 10, 20, 13, 0, 1, 0, loc))
	waitCount(2) // provisional 2
	clock.Set(time.Date(2026, 10, 20, 15, 0, 0, 0, loc))
	waitCount(2) // interval passed, nothing changed
	clock.Set(time.Date(2026, 11, 2, 0, 0, 1, 0, loc))
	waitCount(3) // final
	login(31)
	waitCount(4) // correction

	recs := env.readBilling(ctx, t, 4)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Revision < recs[j].Revision })
	for i, want := range []string{schemas.Provisional, schemas.Provisional, schemas.Final, schemas.Correction} {
		if recs[i].Status != want || recs[i].Revision != i+1 || recs[i].Usage.MAU != []uint64{1, 2, 2, 3}[i] {
			t.Errorf("record %d: got %s rev %d MAU %d; want %s", i, recs[i].Status, recs[i].Revision, recs[i].Usage.MAU, want)
		}
	}
}
