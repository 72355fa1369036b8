package rollup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/axiomhq/hyperloglog"

	"github.com/immeter/immeter/schemas"
)

// TestReadMonthAsBefore writes a month the way the aggregator leaves it
// before merges (several versions of a counter row in separate parts, users
// repeated across days and inserts, sketches of two precisions, plan
// changes, rows of the neighbouring months) and checks that ReadMonth, for
// every app and for one app, returns exactly what the statements it had
// before (argMax per source partition, read one after the other) return,
// and that the counters and the exact MAU equal those computed here from
// the rows written.
func TestReadMonthAsBefore(t *testing.T) {
	conn := testConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	loc := time.FixedZone("+08:00", 8*3600)
	m := schemas.Month{Year: 2026, Month: time.October}
	want := writeMonth(ctx, t, conn, m)

	got, err := ReadMonth(ctx, conn, m, loc)
	if err != nil {
		t.Fatal(err)
	}
	old, err := oldReadMonth(ctx, conn, m, loc, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(old) {
		t.Fatalf("unexpected apps; got %d; want %d (as before)", len(got), len(old))
	}
	for app, o := range old {
		if g := got[app]; !reflect.DeepEqual(g, o) {
			t.Errorf("app %d: unexpected usage\ngot  %+v\nwant %+v (as before)", app, g, o)
		}
	}
	for app, w := range want {
		g := got[app]
		if g == nil {
			t.Errorf("app %d: missing", app)
			continue
		}
		if g.Usage.MAU != w.MAU || g.Usage.Logins != w.Logins || g.Usage.Messages != w.Messages ||
			g.Usage.GroupsCreated != w.GroupsCreated || g.Usage.GroupsDissolved != w.GroupsDissolved ||
			g.Usage.MaxDailyNetGroups != w.MaxDailyNetGroups || g.Usage.CallSeconds != w.CallSeconds {
			t.Errorf("app %d: unexpected usage\ngot  %+v\nwant %+v (from the rows written)", app, g.Usage, w)
		}
	}
	if t.Failed() {
		return
	}

	// One app's month, as the console reads it, with its days.
	for _, app := range []uint32{testApp, testApp + 1, testApp + 2, testApp + 5} {
		days, oldDays := map[schemas.Day]*DayUsage{}, map[schemas.Day]*DayUsage{}
		g, err := readMonth(ctx, conn, m, loc, app, days)
		if err != nil {
			t.Fatal(err)
		}
		o, err := oldReadMonth(ctx, conn, m, loc, app, oldDays)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, o) {
			t.Errorf("app %d alone: unexpected usage\ngot  %+v\nwant %+v (as before)", app, g[app], o[app])
		}
		if len(days) == 0 || !reflect.DeepEqual(days, oldDays) {
			t.Errorf("app %d alone: unexpected days\ngot  %v\nwant %v (as before)", app, dayList(days), dayList(oldDays))
		}
	}
}

func dayList(days map[schemas.Day]*DayUsage) []DayUsage {
	var out []DayUsage
	for d := schemas.Day(0); len(out) < len(days) && d < 1<<20; d++ {
		if u := days[d]; u != nil {
			out = append(out, *u)
		}
	}
	return out
}

const testApp = uint32(1400000301)

// Test fixtures: the tables' columns as the aggregator writes them.
const (
	sqlTestDaily = `INSERT INTO daily_usage (app, day, src_partition, version, logins, messages_c2c, messages_group,
		messages_community, messages_live, groups_created, groups_dissolved, calls_audio, calls_video,
		call_seconds_audio, call_seconds_video, duplicates, updated_at)`
	sqlTestUserDays = `INSERT INTO user_days (app, day, user)`
	sqlTestSketches = `INSERT INTO user_sketches (app, day, writer, version, sketch)`
	sqlTestPlans    = `INSERT INTO plan_changes (app, at, at_nanos, edition, id)`
)

// writeMonth writes the fixture of month m and returns each app's usage
// computed from it: the newest version of each counter row, and the
// distinct users.
func writeMonth(ctx context.Context, t *testing.T, conn driver.Conn, m schemas.Month) map[uint32]*schemas.Usage {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(1, 2))
	const apps, parts = 12, 3
	type key struct {
		app  uint32
		day  schemas.Day
		part int32
	}
	type counters [9]uint64 // logins, c2c, group, community, live, created, dissolved, audio s, video s
	newest := map[key]struct {
		version uint64
		c       counters
	}{}
	users := map[uint32]map[string]bool{}
	now := time.Now().UTC().Truncate(time.Second)
	send := func(stmt string, rows [][]any) {
		t.Helper()
		b, err := conn.PrepareBatch(ctx, stmt)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := b.Append(r...); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	// Days around the month too: they must not count.
	first, last := m.FirstDay()-1, m.LastDay()+1
	// Three inserts (three parts) of counters, each with newer versions of
	// some rows; app testApp+7 has no counters (users and a plan only).
	for round := range 3 {
		var rows [][]any
		for a := range uint32(apps) {
			app := testApp + a
			if a == 7 {
				continue
			}
			for d := first; d <= last; d++ {
				if rng.IntN(4) == 0 && a > 1 {
					continue // a day without counters (apps 0 and 1 have every day)
				}
				for p := range int32(parts) {
					if rng.IntN(3) == 0 && round > 0 {
						continue // not every row gets a newer version
					}
					k := key{app, d, p}
					v := uint64(10*round + rng.IntN(10))
					var c counters
					for i := range c {
						c[i] = uint64(rng.IntN(1000))
					}
					if a == 1 {
						c[5], c[6] = 1, 5 // dissolves more than it creates: every net < 0
					}
					if n, ok := newest[k]; !ok || v > n.version {
						newest[k] = struct {
							version uint64
							c       counters
						}{v, c}
					} else if v == n.version {
						c = n.c // a tie repeats the row: the same offset, the same counters
					}
					rows = append(rows, []any{app, d.Date(), p, v, c[0], c[1], c[2], c[3], c[4], c[5], c[6],
						c[0] / 2, c[0] / 3, c[7], c[8], uint64(0), now})
				}
			}
		}
		send(sqlTestDaily, rows)
	}
	// Users: each app's pool, active on random days, some rows twice.
	for range 2 {
		var rows [][]any
		for a := range uint32(apps) {
			app := testApp + a
			for u := range 5 + int(a)*40 {
				name := "u" + strconv.Itoa(u)
				for d := first; d <= last; d++ {
					if rng.IntN(10) != 0 {
						continue
					}
					rows = append(rows, []any{app, d.Date(), name})
					if d >= m.FirstDay() && d <= m.LastDay() {
						if users[app] == nil {
							users[app] = map[string]bool{}
						}
						users[app][name] = true
					}
				}
			}
		}
		send(sqlTestUserDays, rows)
	}
	// Sketches: one a day per app and writer; app testApp+2's of October 1
	// to 9 are of precision 16 (written before an upgrade).
	var rows [][]any
	for a := range uint32(apps) {
		app := testApp + a
		for d := first; d <= last; d++ {
			for w := range 2 {
				p := uint8(17)
				if a == 2 && d < m.FirstDay()+9 {
					p = 16
				}
				sk, err := hyperloglog.NewSketch(p, true)
				if err != nil {
					t.Fatal(err)
				}
				for u := range 3 + int(a)*rng.IntN(400) {
					sk.Insert([]byte(fmt.Sprintf("u%d-%d", u, w)))
				}
				blob, err := sk.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				rows = append(rows, []any{app, d.Date(), "w" + strconv.Itoa(w), uint64(1), string(blob)})
			}
		}
	}
	send(sqlTestSketches, rows)
	// Plans: a paid app without usage, an upgrade and a downgrade.
	at := func(d schemas.Day, h int) time.Time { return d.Date().Add(time.Duration(h) * time.Hour) }
	send(sqlTestPlans, [][]any{
		{testApp + 20, at(m.FirstDay()-40, 3), uint32(0), string(EditionPremium), "p1"},
		{testApp + 3, at(m.FirstDay()+4, 3), uint32(5), string(EditionStandard), "p2"},
		{testApp + 3, at(m.FirstDay()+9, 3), uint32(0), string(EditionDeveloper), "p3"},
		{testApp + 7, at(m.FirstDay()+1, 1), uint32(0), string(EditionPremium), "p4"},
	})

	out := map[uint32]*schemas.Usage{}
	days := map[[2]uint32]int64{} // app, day: net groups
	for k, n := range newest {
		if k.day < m.FirstDay() || k.day > m.LastDay() {
			continue
		}
		u := out[k.app]
		if u == nil {
			u = &schemas.Usage{}
			out[k.app] = u
		}
		c := n.c
		u.Logins += c[0]
		u.Messages.C2C += c[1]
		u.Messages.Group += c[2]
		u.Messages.Community += c[3]
		u.Messages.Live += c[4]
		u.GroupsCreated += c[5]
		u.GroupsDissolved += c[6]
		u.CallSeconds.Audio += c[7]
		u.CallSeconds.Video += c[8]
		days[[2]uint32{k.app, uint32(k.day)}] += int64(c[5]) - int64(c[6])
	}
	for app, u := range out {
		u.MaxDailyNetGroups = math.MinInt64
		for d := m.FirstDay(); d <= m.LastDay(); d++ {
			// A day without counters nets 0.
			u.MaxDailyNetGroups = max(u.MaxDailyNetGroups, days[[2]uint32{app, uint32(d)}])
		}
	}
	for app, us := range users {
		if out[app] == nil {
			out[app] = &schemas.Usage{}
		}
		out[app].MAU = uint64(len(us))
	}
	return out
}

// testConn returns a connection to a private database on the server at
// CLICKHOUSE_ADDR, dropped after the test, or skips the test when it is
// unset (with IMMETER_INTEGRATION=1 it fails instead).
func testConn(t *testing.T) driver.Conn {
	t.Helper()
	addr := os.Getenv("CLICKHOUSE_ADDR")
	if addr == "" {
		if os.Getenv("IMMETER_INTEGRATION") == "1" {
			t.Fatal("IMMETER_INTEGRATION=1 but CLICKHOUSE_ADDR is unset")
		}
		t.Skip("integration test: set CLICKHOUSE_ADDR (make test starts ClickHouse)")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := "test_rollup_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := schemas.OpenClickHouse(ctx, schemas.ClickHouseConfig{Addr: addr, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = conn.Exec(context.Background(), fmt.Sprintf(sqlTestDropDatabase, db))
		} else {
			t.Logf("kept ClickHouse database %s for inspection", db)
		}
		conn.Close()
	})
	return conn
}

const sqlTestDropDatabase = "DROP DATABASE IF EXISTS %s"

// The statements of ReadMonth before it read the newest counter rows with
// FINAL: argMax per (app, day, src_partition), summed per app and day.
const oldSQLDaily = `SELECT app, day,
	sum(logins), sum(messages_c2c), sum(messages_group), sum(messages_community), sum(messages_live),
	sum(groups_created), sum(groups_dissolved), sum(call_seconds_audio), sum(call_seconds_video)
FROM (
	SELECT app, day, src_partition,
		argMax(logins, version) AS logins, argMax(messages_c2c, version) AS messages_c2c,
		argMax(messages_group, version) AS messages_group, argMax(messages_community, version) AS messages_community,
		argMax(messages_live, version) AS messages_live, argMax(groups_created, version) AS groups_created,
		argMax(groups_dissolved, version) AS groups_dissolved,
		argMax(call_seconds_audio, version) AS call_seconds_audio, argMax(call_seconds_video, version) AS call_seconds_video
	FROM daily_usage
	WHERE day >= toDate(?) AND day <= toDate(?)
	GROUP BY app, day, src_partition
)
GROUP BY app, day`

const oldSQLAppDaily = `SELECT app, day,
	sum(logins), sum(messages_c2c), sum(messages_group), sum(messages_community), sum(messages_live),
	sum(groups_created), sum(groups_dissolved), sum(call_seconds_audio), sum(call_seconds_video)
FROM (
	SELECT app, day, src_partition,
		argMax(logins, version) AS logins, argMax(messages_c2c, version) AS messages_c2c,
		argMax(messages_group, version) AS messages_group, argMax(messages_community, version) AS messages_community,
		argMax(messages_live, version) AS messages_live, argMax(groups_created, version) AS groups_created,
		argMax(groups_dissolved, version) AS groups_dissolved,
		argMax(call_seconds_audio, version) AS call_seconds_audio, argMax(call_seconds_video, version) AS call_seconds_video
	FROM daily_usage
	WHERE app = ? AND day >= toDate(?) AND day <= toDate(?)
	GROUP BY app, day, src_partition
)
GROUP BY app, day`

// oldReadMonth is readMonth as it was before the reads ran at the same
// time, with its statements: what ReadMonth must still return.
func oldReadMonth(ctx context.Context, conn driver.Conn, m schemas.Month, loc *time.Location, app uint32, days map[schemas.Day]*DayUsage) (map[uint32]*MonthUsage, error) {
	first, last := m.FirstDay().String(), m.LastDay().String()
	// query runs the all-apps statement, or its one-app form with the app
	// bound first.
	query := func(all, one string, args ...any) (driver.Rows, error) {
		if app == 0 {
			return conn.Query(ctx, all, args...)
		}
		return conn.Query(ctx, one, append([]any{app}, args...)...)
	}
	out := map[uint32]*MonthUsage{}
	get := func(app uint32) *MonthUsage {
		u := out[app]
		if u == nil {
			u = &MonthUsage{App: app, Month: m}
			out[app] = u
		}
		return u
	}

	daysSeen := map[uint32]int{} // days with a daily_usage row
	rows, err := query(oldSQLDaily, oldSQLAppDaily, first, last)
	if err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}
	for rows.Next() {
		var app uint32
		var day time.Time
		var logins, c2c, group, community, live, created, dissolved, audio, video uint64
		if err := rows.Scan(&app, &day, &logins, &c2c, &group, &community, &live, &created, &dissolved, &audio, &video); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read daily_usage: %w", err)
		}
		if days != nil {
			d := schemas.DayFromDate(day.Year(), day.Month(), day.Day())
			days[d] = &DayUsage{Day: d.String(), Logins: logins,
				Messages:      schemas.Messages{C2C: c2c, Group: group, Community: community, Live: live},
				GroupsCreated: created, GroupsDissolved: dissolved, GroupsNet: int64(created) - int64(dissolved),
				CallSeconds: schemas.MediaAmounts{Audio: audio, Video: video},
				CallMinutes: schemas.MediaAmounts{Audio: (audio + 59) / 60, Video: (video + 59) / 60}}
		}
		u := get(app)
		us := &u.Usage
		us.Logins += logins
		us.Messages.C2C += c2c
		us.Messages.Group += group
		us.Messages.Community += community
		us.Messages.Live += live
		net := int64(created) - int64(dissolved)
		if daysSeen[app] == 0 || net > us.MaxDailyNetGroups {
			us.MaxDailyNetGroups = net
		}
		daysSeen[app]++
		us.GroupsCreated += created
		us.GroupsDissolved += dissolved
		us.CallSeconds.Audio += audio
		us.CallSeconds.Video += video
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}

	rows, err = query(sqlMAU, sqlAppMAU, first, last)
	if err != nil {
		return nil, fmt.Errorf("read user_days: %w", err)
	}
	for rows.Next() {
		var app uint32
		var n uint64
		if err := rows.Scan(&app, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read user_days: %w", err)
		}
		get(app).Usage.MAU = n
	}
	rows.Close()
	// A stream cut in the middle ends the loop early: without this check
	// the MAU would be too small, and could be published as final.
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read user_days: %w", err)
	}

	// An app's sketches of a month merge into one, unless the month holds
	// sketches of two precisions (written before and after an upgrade of
	// the aggregator): those cannot merge, and the estimate is then the
	// larger of the partial ones, a lower bound.
	sketches := map[uint32][]*hyperloglog.Sketch{}
	rows, err = query(sqlSketches, sqlAppSketches, first, last)
	if err != nil {
		return nil, fmt.Errorf("read user_sketches: %w", err)
	}
	for rows.Next() {
		var app uint32
		var blob string
		if err := rows.Scan(&app, &blob); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read user_sketches: %w", err)
		}
		sk := new(hyperloglog.Sketch)
		if err := sk.UnmarshalBinary([]byte(blob)); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read user_sketches: app %d: %w", app, err)
		}
		if err := mergeSketch(sketches, app, sk); err != nil {
			rows.Close()
			return nil, err
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read user_sketches: %w", err)
	}
	for app, sks := range sketches {
		for _, sk := range sks {
			get(app).Usage.MAUEstimate = max(get(app).Usage.MAUEstimate, sk.Estimate())
		}
	}

	plans, err := readPlans(ctx, conn, m.End(loc), app)
	if err != nil {
		return nil, err
	}
	for app, changes := range plans {
		days := editionDays(changes, m, loc)
		if _, ok := out[app]; !ok && !paid(days) {
			continue
		}
		u := get(app)
		u.DayEditions = days
		u.Notes = planNotes(changes, m, loc)
	}
	for _, u := range out {
		if u.DayEditions == nil {
			u.DayEditions = editionDays(nil, m, loc)
		}
		if daysSeen[u.App] < m.Days() {
			u.Usage.MaxDailyNetGroups = max(u.Usage.MaxDailyNetGroups, 0) // a day without groups nets 0
		}
		u.Usage.CallMinutes.Audio = (u.Usage.CallSeconds.Audio + 59) / 60
		u.Usage.CallMinutes.Video = (u.Usage.CallSeconds.Video + 59) / 60
	}
	return out, nil
}

// TestSpans checks spans against the day-by-day form it had before, on
// every pattern of three editions over short months and random long ones.
func TestSpans(t *testing.T) {
	old := func(days []Edition, m schemas.Month) []schemas.Span {
		var out []schemas.Span
		first := m.FirstDay()
		for i, e := range days {
			d := first + schemas.Day(i)
			if n := len(out); n > 0 && out[n-1].Edition == string(e) {
				out[n-1].To = d.String()
				out[n-1].Days++
				continue
			}
			out = append(out, schemas.Span{Edition: string(e), From: d.String(), To: d.String(), Days: 1})
		}
		return out
	}
	eds := []Edition{EditionDeveloper, EditionStandard, EditionPremium}
	m := schemas.Month{Year: 2026, Month: time.February}
	f := func(days []Edition) {
		t.Helper()
		if got, want := spans(days, m), old(days, m); !reflect.DeepEqual(got, want) {
			t.Fatalf("spans(%v): unexpected spans; got %v; want %v", days, got, want)
		}
	}
	f(nil)
	for n := 1; n <= 6; n++ {
		days := make([]Edition, n)
		for k := 0; k < int(math.Pow(3, float64(n))); k++ {
			for i, x := 0, k; i < n; i, x = i+1, x/3 {
				days[i] = eds[x%3]
			}
			f(days)
		}
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	for range 1000 {
		days := make([]Edition, 28)
		for i := range days {
			days[i] = eds[rng.IntN(2)+rng.IntN(2)]
		}
		f(days)
	}
}
