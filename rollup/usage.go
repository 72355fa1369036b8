package rollup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/axiomhq/hyperloglog"

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

// sqlDaily sums the newest counters of each source partition per app and
// day (see schemas/migrations/0001_usage.sql).
const sqlDaily = `SELECT app, day,
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

// ReadMonth reads the usage of every app with usage in the month, or with a
// paid edition in force during it.
func ReadMonth(ctx context.Context, conn driver.Conn, m schemas.Month, loc *time.Location) (map[uint32]*MonthUsage, error) {
	return readMonth(ctx, conn, m, loc, 0, nil)
}

// readMonth reads the month of every app (app 0) or of one app, with the
// statements that read only that app's rows; for one app, days receives its
// counters of each day with usage (active users are left to the caller).
func readMonth(ctx context.Context, conn driver.Conn, m schemas.Month, loc *time.Location, app uint32, days map[schemas.Day]*DayUsage) (map[uint32]*MonthUsage, error) {
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
	rows, err := query(sqlDaily, sqlAppDaily, first, last)
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

// mergeSketch merges sk into the app's sketch of the same precision, or keeps
// it apart when there is none.
func mergeSketch(sketches map[uint32][]*hyperloglog.Sketch, app uint32, sk *hyperloglog.Sketch) error {
	for _, into := range sketches[app] {
		err := into.Merge(sk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, hyperloglog.ErrorPrecisionMismatch) {
			return fmt.Errorf("merge sketches of app %d: %w", app, err)
		}
	}
	sketches[app] = append(sketches[app], sk)
	return nil
}
