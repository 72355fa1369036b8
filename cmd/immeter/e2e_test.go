package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/immeter/immeter/aggregate"
	"github.com/immeter/immeter/internal/testenv/truth"
	"github.com/immeter/immeter/rollup"
	"github.com/immeter/immeter/schemas"
)

// stream builds a deterministic stream for three apps over October and
// November 2026 in +08:00, with events minutes on either side of the month
// boundary, repeated ids and invalid events.
type stream struct {
	loc     *time.Location
	msgs    []kafka.Message
	invalid int
	want    *truth.Totals // of the valid events (Finish called by buildStream)
}

func newStream(loc *time.Location) *stream {
	return &stream{loc: loc, want: truth.New(loc)}
}

// add publishes e and folds it into the truth unless its (app, id) was seen.
func (s *stream) add(e schemas.Event) {
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	s.msgs = append(s.msgs, kafka.Message{Key: []byte(strconv.FormatUint(uint64(e.App), 10)), Value: b})
	s.want.Add(e)
}

func (s *stream) addRaw(app uint32, value string) {
	s.msgs = append(s.msgs, kafka.Message{Key: []byte(strconv.FormatUint(uint64(app), 10)), Value: []byte(value)})
	s.invalid++
}

const (
	appDev      = 1400000001 // developer all along
	appStandard = 1400000002 // standard from 2026-10-01
	appPremium  = 1400000003 // developer, premium from 2026-10-11
)

func buildStream(loc *time.Location) *stream {
	s := newStream(loc)
	at := func(day, hour, min, sec, ms int) time.Time {
		return time.Date(2026, 10, day, hour, min, sec, ms*int(time.Millisecond), loc)
	}
	id := 0
	next := func() string { id++; return fmt.Sprintf("ev-%06d", id) }
	ev := func(e schemas.Event) schemas.Event { e.ID = next(); return e }

	s.add(ev(schemas.Event{Type: schemas.Plan, App: appStandard, Time: at(1, 0, 0, 0, 0), Edition: "standard"}))
	s.add(ev(schemas.Event{Type: schemas.Plan, App: appPremium, Time: at(11, 9, 30, 0, 0), Edition: "premium"}))

	apps := []uint32{appDev, appStandard, appPremium}
	channels := []string{"c2c", "group", "community", "live"}
	for i, app := range apps {
		users := 40 + 30*i
		for d := 1; d <= 31; d += 3 {
			for u := 0; u < users; u += 1 + d%4 {
				user := fmt.Sprintf("user-%d", u)
				s.add(ev(schemas.Event{Type: schemas.Login, App: app, Time: at(d, 8, u%60, 0, 0), User: user, Platform: "ios"}))
				s.add(ev(schemas.Event{Type: schemas.Message, App: app, Time: at(d, 9, u%60, 1, 0), User: user,
					Channel: channels[(u+d)%4], Count: int64(1 + u%3)}))
			}
			s.add(ev(schemas.Event{Type: schemas.Group, App: app, Time: at(d, 10, 0, 0, 0), Op: "create", Group: fmt.Sprintf("g%d", d), GroupType: "Work"}))
			s.add(ev(schemas.Event{Type: schemas.Group, App: app, Time: at(d, 10, 0, 1, 0), Op: "create", Group: fmt.Sprintf("h%d", d), GroupType: "Public"}))
			if d%2 == 0 {
				s.add(ev(schemas.Event{Type: schemas.Group, App: app, Time: at(d, 11, 0, 0, 0), Op: "dissolve", Group: fmt.Sprintf("g%d", d), GroupType: "Work"}))
			}
		}
		// Around the month boundary in +08:00: the first two are October, the
		// last two November (in UTC all four would be October 31).
		s.add(ev(schemas.Event{Type: schemas.Login, App: app, Time: at(31, 23, 59, 59, 999), User: "edge-oct"}))
		s.add(ev(schemas.Event{Type: schemas.Login, App: app, Time: time.Date(2026, 10, 31, 15, 59, 0, 0, time.UTC), User: "edge-oct-utc"}))
		s.add(ev(schemas.Event{Type: schemas.Login, App: app, Time: at(32, 0, 0, 0, 0), User: "edge-nov"}))
		s.add(ev(schemas.Event{Type: schemas.Login, App: app, Time: time.Date(2026, 10, 31, 16, 1, 0, 0, time.UTC), User: "edge-nov-utc"}))
		s.add(ev(schemas.Event{Type: schemas.Message, App: app, Time: at(32, 0, 3, 0, 0), User: "edge-nov", Channel: "c2c", Count: 7}))
		// November traffic.
		for d := 1; d <= 20; d += 5 {
			for u := 0; u < 25; u++ {
				s.add(ev(schemas.Event{Type: schemas.Login, App: app, Time: at(31+d, 12, u, 0, 0), User: fmt.Sprintf("user-%d", u*2)}))
			}
		}
	}
	// Calls of the premium app: 61 audio seconds over two calls, 3000 video seconds.
	s.add(ev(schemas.Event{Type: schemas.Call, App: appPremium, Time: at(12, 10, 0, 0, 0), User: "user-1", Media: "audio", Seconds: 30}))
	s.add(ev(schemas.Event{Type: schemas.Call, App: appPremium, Time: at(13, 10, 0, 0, 0), User: "user-2", Media: "audio", Seconds: 31}))
	s.add(ev(schemas.Event{Type: schemas.Call, App: appPremium, Time: at(14, 10, 0, 0, 0), User: "user-3", Media: "video", Seconds: 3000, CallID: "c-1"}))

	// Repeated ids: exact repeats, and a repeat with different content.
	for _, i := range []int{5, 50, 77, 300, 1000} {
		var e schemas.Event
		if err := json.Unmarshal(s.msgs[i].Value, &e); err != nil {
			panic(err)
		}
		s.add(e)
	}
	var e schemas.Event
	_ = json.Unmarshal(s.msgs[10].Value, &e)
	e.Time = e.Time.Add(time.Hour)
	e.User = "someone-else"
	s.add(e)

	// Invalid events: never counted, all on the DLQ.
	s.addRaw(appDev, `{"id":"bad-1","type":"login","app":1400000001,"time":"2026-10-05T10:00:00+08:00"}`)   // no user
	s.addRaw(appDev, `{"id":"bad-2","type":"login","app":0,"time":"2026-10-05T10:00:00+08:00","user":"x"}`) // app 0
	s.addRaw(appDev, `{"id":"bad-3","type":"teleport","app":1400000001,"time":"2026-10-05T10:00:00+08:00"}`)
	s.addRaw(appDev, `{"id":"bad-4","type":"login","app":1400000001,"time":"2026-10-05 10:00","user":"x"}`) // no offset
	s.addRaw(appDev, `not json at all`)
	s.addRaw(appStandard, `{"id":"bad-6","type":"message","app":1400000002,"time":"2026-10-05T10:00:00+08:00","user":"u","channel":"c2c","count":0}`)
	s.addRaw(appStandard, `{"id":"bad-7","type":"call","app":1400000002,"time":"2026-10-05T10:00:00+08:00","user":"u","media":"audio","seconds":-5}`)
	s.want.Finish()
	return s
}

func TestEndToEndTwoMonths(t *testing.T) {
	env := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	loc, _ := schemas.ParseTimezone("+08:00")
	s := buildStream(loc)
	env.produce(ctx, t, env.events, s.msgs)

	// The clock stands in late November 2026, so October is settled and the
	// stream is inside the accepted window whatever the real date.
	clock := shiftedClock(time.Date(2026, 11, 25, 12, 0, 0, 0, loc))
	agg, err := aggregate.New(testAggregateConfig(env, func(c *aggregate.Config) {
		c.Location = loc
		c.FlushInterval = 200 * time.Millisecond
		c.Now = clock
	}), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	aggCtx, stopAgg := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agg.Run(aggCtx) }()
	env.waitAggregated(ctx, t, env.events)
	stopAgg()
	if err := <-done; err != nil {
		t.Fatalf("aggregate: %v", err)
	}

	r, err := rollup.New(testRollupConfig(env, func(c *rollup.Config) { c.Location = loc; c.Now = clock }), env.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	oct := schemas.Month{Year: 2026, Month: time.October}
	res, err := r.Publish(ctx, oct, rollup.ForceFinal)
	if err != nil {
		t.Fatal(err)
	}
	if res.Final != 3 || res.Provisional+res.Correction != 0 {
		t.Fatalf("unexpected result of the October rollup; got %+v; want 3 final", res)
	}

	recs := env.readBilling(ctx, t, 3)
	wantTotal := map[uint32]string{
		appDev:      "0.00",
		appStandard: "399.00",
		appPremium:  "473.72", // 699×21/31 = 473.516… → 473.52; video 50 min × 3.99/1000 = 0.1995 → 0.20; audio 2 min → 0.00
	}
	wantEdition := map[uint32]string{appDev: "developer", appStandard: "standard", appPremium: "premium"}
	for _, rec := range recs {
		want := s.want.Months[oct][rec.App]
		if want == nil {
			t.Fatalf("unexpected record for app %d", rec.App)
		}
		got := rec.Usage
		got.MAUEstimate = 0
		if got != want.Usage {
			t.Errorf("app %d October usage:\n got %+v\nwant %+v", rec.App, got, want.Usage)
		}
		if rec.Status != schemas.Final || rec.Revision != 1 || rec.Month != "2026-10" || rec.Timezone != "+08:00" {
			t.Errorf("app %d: unexpected header; got status %s revision %d month %s tz %s", rec.App, rec.Status, rec.Revision, rec.Month, rec.Timezone)
		}
		if rec.Total != wantTotal[rec.App] || rec.Edition != wantEdition[rec.App] {
			t.Errorf("app %d: unexpected total/edition; got %s %s; want %s %s", rec.App, rec.Total, rec.Edition, wantTotal[rec.App], wantEdition[rec.App])
		}
		if est, mau := float64(rec.Usage.MAUEstimate), float64(rec.Usage.MAU); est < mau*0.97 || est > mau*1.03 {
			t.Errorf("app %d: MAU estimate %v too far from %v", rec.App, est, mau)
		}
	}

	// November is still open: compare what ClickHouse holds with the truth.
	nov := schemas.Month{Year: 2026, Month: time.November}
	got, err := rollup.ReadMonth(ctx, env.conn, nov, loc)
	if err != nil {
		t.Fatal(err)
	}
	for app, want := range s.want.Months[nov] {
		u := got[app].Usage
		u.MAUEstimate = 0
		if u != want.Usage {
			t.Errorf("app %d November usage:\n got %+v\nwant %+v", app, u, want.Usage)
		}
	}

	// Every invalid event is on the DLQ with a reason, and in dead_letters.
	dead := env.readAll(ctx, t, env.dlq, s.invalid)
	for _, m := range dead {
		if header(m, "immeter-reason") == "" || header(m, "immeter-source-offset") == "" || header(m, "immeter-source-epoch") == "" ||
			header(m, "immeter-source-topic") != env.events {
			t.Errorf("dead letter without reason or source: %q %v", m.Value, m.Headers)
		}
	}
	var n uint64
	if err := env.conn.QueryRow(ctx, "SELECT count() FROM (SELECT DISTINCT src_partition, src_offset FROM dead_letters)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(s.invalid) {
		t.Errorf("unexpected dead_letters rows; got %d; want %d", n, s.invalid)
	}
	// Analysts' view: October logins of the developer app, exact.
	var logins uint64
	if err := env.conn.QueryRow(ctx, "SELECT sum(logins) FROM daily_stats WHERE app = ? AND day >= '2026-10-01' AND day <= '2026-10-31'", uint32(appDev)).Scan(&logins); err != nil {
		t.Fatal(err)
	}
	if logins != s.want.Months[oct][appDev].Usage.Logins {
		t.Errorf("unexpected daily_stats logins; got %d; want %d", logins, s.want.Months[oct][appDev].Usage.Logins)
	}
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// readBilling reads n records from the billing topic, sorted by app.
func (e *testEnv) readBilling(ctx context.Context, t *testing.T, n int) []schemas.BillingRecord {
	t.Helper()
	var out []schemas.BillingRecord
	for _, m := range e.readAll(ctx, t, e.billing, n) {
		var r schemas.BillingRecord
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatalf("billing record: %v: %s", err, m.Value)
		}
		if want := fmt.Sprintf("%d:%s", r.App, r.Month); string(m.Key) != want {
			t.Errorf("unexpected key; got %s; want %s", m.Key, want)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}
