package rollup

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/immeter/immeter/schemas"
)

// MonthUsage is what ClickHouse holds of one app's month: the input of a
// billing record.
type MonthUsage struct {
	App         uint32
	Month       schemas.Month
	Usage       schemas.Usage
	DayEditions []Edition // edition at the end of each day
	Notes       []string  // plan history facts worth a reader's eye
}

// sqlDaily is the newest row (highest version) of each app, day and source
// partition (see schemas/migrations/0001_usage.sql): FINAL keeps, as the
// table's merges do, the row with the highest version of each sorting key,
// which is what argMax(x, version) per (app, day, src_partition) reads, at a
// fraction of the cost of grouping millions of keys. The counters are
// summed over partitions and days in Go (dailyTotals).
const sqlDaily = `SELECT app, day, logins, messages_c2c, messages_group, messages_community, messages_live,
	groups_created, groups_dissolved, call_seconds_audio, call_seconds_video
FROM daily_usage FINAL
WHERE day >= toDate(?) AND day <= toDate(?)`

// ReadMonth reads the usage of every app with usage in the month, or with a
// paid edition in force during it.
func ReadMonth(ctx context.Context, conn driver.Conn, m schemas.Month, loc *time.Location) (map[uint32]*MonthUsage, error) {
	return readMonth(ctx, conn, m, loc, 0, nil)
}

// monthReads are the results of the independent reads of a month.
type monthReads struct {
	daily    *dailyTotals
	mau      map[uint32]uint64 // exact
	estimate map[uint32]uint64 // from the sketches
	plans    map[uint32][]planChange
}

// readMonth reads the month of every app (app 0) or of one app, with the
// statements that read only that app's rows; for one app, days receives its
// counters of each day with usage (active users are left to the caller).
// The counters, the exact MAU, the sketches and the plans are read at the
// same time, on connections of their own.
func readMonth(ctx context.Context, conn driver.Conn, m schemas.Month, loc *time.Location, app uint32, days map[schemas.Day]*DayUsage) (map[uint32]*MonthUsage, error) {
	q := monthQuery{conn: conn, m: m, app: app}
	var r monthReads
	err := concurrently(ctx,
		func(ctx context.Context) (err error) { r.daily, err = q.daily(ctx, days); return err },
		func(ctx context.Context) (err error) { r.mau, err = q.mau(ctx); return err },
		func(ctx context.Context) (err error) { r.estimate, err = q.estimates(ctx); return err },
		func(ctx context.Context) (err error) {
			r.plans, err = readPlans(ctx, conn, m.End(loc), app)
			return err
		},
	)
	if err != nil {
		return nil, err
	}

	out := make(map[uint32]*MonthUsage, len(r.daily.apps))
	get := func(app uint32) *MonthUsage {
		u := out[app]
		if u == nil {
			u = &MonthUsage{App: app, Month: m}
			out[app] = u
		}
		return u
	}
	for app, t := range r.daily.apps {
		u := get(app)
		u.Usage = t.usage
		u.Usage.MaxDailyNetGroups = t.maxDailyNet(m.Days())
	}
	for app, n := range r.mau {
		get(app).Usage.MAU = n
	}
	for app, n := range r.estimate {
		get(app).Usage.MAUEstimate = n
	}
	for app, changes := range r.plans {
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
		u.Usage.CallMinutes.Audio = (u.Usage.CallSeconds.Audio + 59) / 60
		u.Usage.CallMinutes.Video = (u.Usage.CallSeconds.Video + 59) / 60
	}
	return out, nil
}

// concurrently runs each read in a goroutine of its own and returns the
// error of the first one (in the order given) that failed; the first
// failure cancels the others.
func concurrently(ctx context.Context, reads ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(reads))
	var wg sync.WaitGroup
	for i, read := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = read(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// A read cut by the cancel reports context.Canceled: report the cause.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// monthQuery reads one month of every app (app 0) or of one app.
type monthQuery struct {
	conn driver.Conn
	m    schemas.Month
	app  uint32
}

// query runs the all-apps statement, or its one-app form with the app bound
// first, over the month's days.
func (q monthQuery) query(ctx context.Context, all, one string) (driver.Rows, error) {
	first, last := q.m.FirstDay().String(), q.m.LastDay().String()
	if q.app == 0 {
		return q.conn.Query(ctx, all, first, last)
	}
	return q.conn.Query(ctx, one, q.app, first, last)
}

// dailyTotals is the month's counters of each app.
type dailyTotals struct {
	apps map[uint32]*appDays
}

// appDays is one app's counters of a month: their sums, and each day's
// groups created minus dissolved (over all source partitions).
type appDays struct {
	usage schemas.Usage
	net   [31]int64
	seen  uint32 // bit d: day d of the month has a row
}

// maxDailyNet is the largest net of groups of a day of the month: a day
// without a row nets 0.
func (a *appDays) maxDailyNet(days int) int64 {
	var out int64
	n := 0
	for d := range days {
		if a.seen&(1<<d) == 0 {
			continue
		}
		if n == 0 || a.net[d] > out {
			out = a.net[d]
		}
		n++
	}
	if n < days {
		out = max(out, 0)
	}
	return out
}

// daily reads the month's counters; for one app, days receives each day's.
func (q monthQuery) daily(ctx context.Context, days map[schemas.Day]*DayUsage) (*dailyTotals, error) {
	rows, err := q.query(ctx, sqlDaily, sqlAppDaily)
	if err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}
	defer rows.Close()
	out := &dailyTotals{apps: map[uint32]*appDays{}}
	first, ndays := q.m.FirstDay(), q.m.Days()
	var cur *appDays // rows come in runs of one app: look it up once per run
	curApp := uint32(0)
	// One set of variables for all rows: Scan's arguments escape, and
	// millions of rows would each allocate them.
	var app uint32
	var day time.Time
	var logins, c2c, group, community, live, created, dissolved, audio, video uint64
	dest := []any{&app, &day, &logins, &c2c, &group, &community, &live, &created, &dissolved, &audio, &video}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read daily_usage: %w", err)
		}
		dd := schemas.DayFromDate(day.Date())
		d := int(dd - first)
		if d < 0 || d >= ndays {
			return nil, fmt.Errorf("read daily_usage: app %d: day %s is not in %s", app, dd, q.m)
		}
		if cur == nil || app != curApp {
			cur, curApp = out.apps[app], app
			if cur == nil {
				cur = &appDays{}
				out.apps[app] = cur
			}
		}
		us := &cur.usage
		us.Logins += logins
		us.Messages.C2C += c2c
		us.Messages.Group += group
		us.Messages.Community += community
		us.Messages.Live += live
		us.GroupsCreated += created
		us.GroupsDissolved += dissolved
		us.CallSeconds.Audio += audio
		us.CallSeconds.Video += video
		cur.net[d] += int64(created) - int64(dissolved)
		cur.seen |= 1 << d
		if days != nil {
			du := days[dd]
			if du == nil {
				du = &DayUsage{Day: dd.String()}
				days[dd] = du
			}
			du.Logins += logins
			du.Messages.C2C += c2c
			du.Messages.Group += group
			du.Messages.Community += community
			du.Messages.Live += live
			du.GroupsCreated += created
			du.GroupsDissolved += dissolved
			du.CallSeconds.Audio += audio
			du.CallSeconds.Video += video
		}
	}
	// A stream cut in the middle ends the loop early: without this check
	// the counters would be too small, and could be published as final.
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read daily_usage: %w", err)
	}
	for _, du := range days {
		du.GroupsNet = int64(du.GroupsCreated) - int64(du.GroupsDissolved)
		du.CallMinutes = schemas.MediaAmounts{Audio: (du.CallSeconds.Audio + 59) / 60, Video: (du.CallSeconds.Video + 59) / 60}
	}
	return out, nil
}

// mau reads the exact MAU of each app.
func (q monthQuery) mau(ctx context.Context) (map[uint32]uint64, error) {
	rows, err := q.query(ctx, sqlMAU, sqlAppMAU)
	if err != nil {
		return nil, fmt.Errorf("read user_days: %w", err)
	}
	defer rows.Close()
	out := map[uint32]uint64{}
	for rows.Next() {
		var app uint32
		var n uint64
		if err := rows.Scan(&app, &n); err != nil {
			return nil, fmt.Errorf("read user_days: %w", err)
		}
		out[app] = n
	}
	// A stream cut in the middle ends the loop early: without this check
	// the MAU would be too small, and could be published as final.
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read user_days: %w", err)
	}
	return out, nil
}

// estimates reads the month's sketches and returns each app's estimate
// (see sketchEstimator). The union of an app's sketches, most of the work,
// is shared among workers by app.
func (q monthQuery) estimates(ctx context.Context) (map[uint32]uint64, error) {
	rows, err := q.query(ctx, sqlSketches, sqlAppSketches)
	if err != nil {
		return nil, fmt.Errorf("read user_sketches: %w", err)
	}
	defer rows.Close()
	e := newSketchEstimator(min(runtime.GOMAXPROCS(0), 4))
	var app uint32
	var blob []byte // a copy of the row's: workers hold it
	for rows.Next() {
		if err = rows.Scan(&app, &blob); err != nil {
			break
		}
		e.add(app, blob)
	}
	out, err2 := e.finish()
	if err != nil {
		return nil, fmt.Errorf("read user_sketches: %w", err)
	}
	// A stream cut in the middle ends the loop early: without this check
	// the estimates would be too small.
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read user_sketches: %w", err)
	}
	return out, err2
}

// planChange is one plan event.
type planChange struct {
	at      time.Time
	edition Edition
}

// readPlans reads the plan changes before a time of every app (app 0) or of
// one app.
func readPlans(ctx context.Context, conn driver.Conn, before time.Time, app uint32) (map[uint32][]planChange, error) {
	var rows driver.Rows
	var err error
	if app == 0 {
		rows, err = conn.Query(ctx, sqlPlans, before.Unix()+1)
	} else {
		rows, err = conn.Query(ctx, sqlAppPlans, app, before.Unix()+1)
	}
	if err != nil {
		return nil, fmt.Errorf("read plan_changes: %w", err)
	}
	defer rows.Close()
	out := map[uint32][]planChange{}
	for rows.Next() {
		var app, nanos uint32
		var at time.Time
		var edition, id string
		if err := rows.Scan(&app, &at, &nanos, &edition, &id); err != nil {
			return nil, fmt.Errorf("read plan_changes: %w", err)
		}
		t := at.Add(time.Duration(nanos))
		if t.Before(before) {
			out[app] = append(out[app], planChange{at: t, edition: Edition(edition)})
		}
	}
	return out, rows.Err()
}

// editionDays returns the edition in force at the end of each day of the
// month: the last change on that day or before; Developer before any. A
// change's day is schemas.DayOf, as for usage, so days whose midnight a
// change of offset skips or repeats are cut where the aggregator cuts them.
func editionDays(changes []planChange, m schemas.Month, loc *time.Location) []Edition {
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].at.Before(changes[j].at) })
	days := make([]Edition, m.Days())
	cur, i := EditionDeveloper, 0
	for d := range days {
		day := m.FirstDay() + schemas.Day(d)
		for i < len(changes) && schemas.DayOf(changes[i].at, loc) <= day {
			cur = changes[i].edition
			i++
		}
		days[d] = cur
	}
	return days
}

func paid(days []Edition) bool {
	for _, e := range days {
		if e != EditionDeveloper {
			return true
		}
	}
	return false
}

var editionRank = map[Edition]int{EditionDeveloper: 0, EditionStandard: 1, EditionPremium: 2}

// planNotes reports what the IM service should have refused: more than one
// change in the month, or a downgrade. The meter reports it; it does not hide it.
func planNotes(changes []planChange, m schemas.Month, loc *time.Location) []string {
	var notes []string
	start := m.Start(loc)
	prev, n := EditionDeveloper, 0
	for _, c := range changes {
		if !c.at.Before(start) {
			if c.edition != prev {
				n++
			}
			if editionRank[c.edition] < editionRank[prev] {
				notes = append(notes, fmt.Sprintf("downgrade from %s to %s at %s", prev, c.edition, c.at.In(loc).Format(time.RFC3339)))
			}
		}
		prev = c.edition
	}
	if n > 1 {
		notes = append(notes, fmt.Sprintf("%d plan changes in the month; at most one is allowed", n))
	}
	return notes
}
