package schemas

import (
	"context"
	"fmt"
	"github.com/ClickHouse/clickhouse-go/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// The statements immeter sends are the migrations and the package-level
// string consts named sql… (or SQL…) of its non-test Go files; README.md's
// ```sql blocks are the analysts' queries. TestSQL runs all of them, in the
// order a database lives (DDL, inserts, queries, OPTIMIZE, DROP), on each
// supported ClickHouse: the real server at CLICKHOUSE_ADDR (18.16 in make
// test) and the embedded engines of .ci/chdb.sh (24.8 and 26.9), and
// requires the same rows and column types from each.

// sample is what a statement runs with.
type sample struct {
	args   []any   // bound to the statement's ?s, in order
	alt    [][]any // more sets of args, each run too (e.g. matching no row)
	rows   [][]any // a batch insert's rows
	format []any   // fmt.Sprintf arguments of a statement that takes a name
	differ bool    // its results differ between servers by nature
	// cluster: it needs a replicated cluster (system.clusters, ON CLUSTER)
	// or its rows depend on the version; TestCluster* in make test-cluster
	// runs it on the 18.16 replicas, not here.
	cluster bool
}

const (
	app1 = uint32(1400000001) // users on days 1 and 2 of October
	app2 = uint32(1400000002)
	app3 = uint32(1400000003) // counters, no users: active_users 0
	app9 = uint32(1400000009) // the benchmark's synthetic rows
)

// sqlTestDB is the name of the test's database in every engine (a suffix
// makes it private on the shared server).
var sqlTestDB = fmt.Sprintf("immeter_sqltest_%d", time.Now().UnixNano()%1e9)

func day(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
func at(s string) time.Time  { t, _ := time.Parse(time.DateTime, s); return t } // never midnight: see sqlLiteral

// dailyRow is a daily_usage row; the counters not named derive from logins.
func dailyRow(app uint32, d string, part int32, version, logins, c2c, group, created, dissolved uint64) []any {
	return []any{app, day(d), part, version, logins, c2c, group, logins / 2, logins / 3, created, dissolved,
		logins + 1, logins + 2, 60 * logins, 30 * logins, logins % 2, at("2026-10-02 03:04:05")}
}

// samples holds a sample for every statement, by package folder and const
// name. The inserts are the fixture the queries read.
func samples() map[string]sample {
	octStart := at("2026-09-30 16:00:00").Unix() // October in UTC+08:00
	octEnd := at("2026-10-31 16:00:00").Unix()
	return map[string]sample{
		"schemas.sqlCreateDatabase":    {format: []any{sqlTestDB}},
		"schemas.sqlDatabaseCount":     {args: []any{sqlTestDB}},
		"schemas.sqlTableCount":        {args: []any{sqlTestDB, "daily_usage"}},
		"schemas.sqlAppliedIn":         {format: []any{sqlTestDB}},
		"schemas.sqlKnownSettings":     {cluster: true},
		"schemas.sqlClusterShards":     {cluster: true},
		"schemas.sqlCreateDBOn":        {cluster: true},
		"schemas.sqlCreateMigrations":  {},
		"schemas.sqlAppliedMigrations": {},
		"schemas.sqlInsertMigration":   {rows: [][]any{{uint32(1), "usage", at("2026-10-01 00:00:01")}}},
		"schemas.sqlEventIDsByDay":     {},
		"schemas.sqlDeadLettersEpoch":  {},

		"aggregate.sqlInsertDailyUsage": {rows: [][]any{
			dailyRow(app1, "2026-09-30", 0, 90, 7, 7, 7, 0, 0), // not October
			dailyRow(app1, "2026-10-01", 0, 100, 5, 10, 3, 1, 0),
			dailyRow(app1, "2026-10-01", 0, 250, 8, 20, 4, 2, 3), // newer: replaces v100
			dailyRow(app1, "2026-10-01", 1, 40, 1, 1, 0, 0, 0),
			dailyRow(app1, "2026-10-02", 0, 250, 2, 2, 2, 1, 0),
			dailyRow(app2, "2026-10-01", 1, 40, 3, 3, 3, 0, 0),
			dailyRow(app3, "2026-10-03", 1, 41, 4, 4, 4, 0, 1),
		}},
		"aggregate.sqlInsertUserDays": {rows: [][]any{
			{app1, day("2026-10-01"), "u1"}, {app1, day("2026-10-01"), "u2"}, {app1, day("2026-10-01"), "u3"},
			{app1, day("2026-10-01"), "u1"}, {app1, day("2026-10-02"), "u2"}, {app2, day("2026-10-01"), "v1"},
			{app2, day("2026-09-30"), "v2"},
		}},
		"aggregate.sqlInsertSketches": {rows: [][]any{
			{app1, day("2026-10-01"), "agg-1/0", uint64(100), "sketch\x01a"},
			{app1, day("2026-10-02"), "agg-1/0", uint64(250), "sketch\tb'"},
		}},
		"aggregate.sqlInsertEventIDs": {rows: [][]any{
			{int32(0), app1, day("2026-10-01"), uint64(1), uint64(2), uint64(10)},
			{int32(0), app1, day("2026-10-01"), uint64(3), uint64(4), uint64(11)},
			{int32(0), app1, day("2026-10-02"), uint64(5), uint64(6), uint64(20)},
			{int32(1), app2, day("2026-10-01"), uint64(7), uint64(8), uint64(3)},
		}},
		"aggregate.sqlInsertPlanChanges": {rows: [][]any{
			{app1, at("2026-09-15 10:00:00"), uint32(5), "standard", "p1"},
			{app1, at("2026-10-20 08:00:00"), uint32(0), "premium", "p2"},
			{app1, at("2026-10-20 08:00:00"), uint32(0), "premium", "p2"}, // the same event again
			{app2, at("2026-11-01 00:00:01"), uint32(0), "premium", "p3"}, // after October
		}},
		"aggregate.sqlInsertPosition": {rows: [][]any{
			{"g", "im.usage.events", int32(0), uint64(100), at("2026-10-01 00:00:10")},
			{"g", "im.usage.events", int32(0), uint64(250), at("2026-10-02 00:00:10")},
			{"g", "im.usage.events", int32(1), uint64(41), at("2026-10-03 00:00:10")},
		}},
		"aggregate.sqlInsertEpoch": {rows: [][]any{
			{"g", "im.usage.events", int32(0), uint32(0), "tid-a", int64(0), uint64(0), at("2026-10-01 00:00:01")},
			{"g", "im.usage.events", int32(0), uint32(1), "tid-b", int64(250), uint64(250), at("2026-10-05 00:00:01")},
		}},
		"aggregate.sqlInsertGap": {rows: [][]any{
			{"g", "im.usage.events", int32(0), "topic-recreated", "tid-a", "tid-b", int64(250), int64(0), int64(250), uint64(250),
				at("2026-10-05 00:00:01"), "ops", "INC-1"},
		}},
		"aggregate.sqlInsertLiveGroupChange": {rows: [][]any{
			{app1, "live-1", "create", at("2026-10-02 01:00:00"), uint32(0), "lg1"},
			{app1, "live-2", "create", at("2026-10-02 02:00:00"), uint32(0), "lg2"},
			{app1, "live-2", "dissolve", at("2026-10-03 02:00:00"), uint32(0), "lg3"},
		}},
		"aggregate.sqlInsertDeadLetters": {rows: [][]any{
			{at("2026-10-01 00:00:10"), "im.usage.events", int32(0), int64(7), uint32(1), app1, "type: unknown", `{"type":"nope"}`},
			{at("2026-10-01 00:00:20"), "im.usage.events", int32(0), int64(7), uint32(1), app1, "type: unknown", `{"type":"nope"}`},  // replayed
			{at("2026-10-05 00:00:10"), "im.usage.events", int32(0), int64(7), uint32(2), app1, "time: too old", `{"type":"login"}`}, // the topic recreated
		}},
		// Aggregates over no row still give one row, of zeros or "": the
		// Go code relies on it.
		"aggregate.sqlReadPosition": {args: []any{"g", "im.usage.events", int32(0)}, alt: [][]any{{"g", "im.usage.events", int32(9)}}},
		"aggregate.sqlLoadDays":     {args: []any{int32(0), "2026-10-01"}},
		"aggregate.sqlLoadDay":      {args: []any{int32(0), app1, "2026-10-01"}, alt: [][]any{{int32(0), app1, "2026-10-09"}}},
		"aggregate.sqlLoadIDs":      {args: []any{int32(0), "2026-10-01"}},
		"aggregate.sqlLoadPlans":    {},
		"aggregate.sqlCountIDs":     {args: []any{int32(0), "2026-10-01"}},
		"aggregate.sqlLoadFilter":   {args: []any{int32(0), "2026-10-01"}},
		"aggregate.sqlConfirmIDs": {args: []any{int32(0), "2026-10-01", clickhouse.GroupSet{Value: []any{
			clickhouse.GroupSet{Value: []any{app1, uint64(1), uint64(2)}}, clickhouse.GroupSet{Value: []any{app1, uint64(3), uint64(4)}}}}},
			alt: [][]any{{int32(0), "2026-10-01", clickhouse.GroupSet{Value: []any{clickhouse.GroupSet{Value: []any{app1, uint64(1), uint64(2)}}}}}}},
		"aggregate.sqlProgress":      {args: []any{"g", "im.usage.events"}},
		"aggregate.sqlProgressBases": {args: []any{"g", "im.usage.events"}},
		"aggregate.sqlReadEpoch":     {args: []any{"g", "im.usage.events", int32(0)}, alt: [][]any{{"g", "im.usage.events", int32(9)}}},
		// Retention: the fixture's ids are of October; a September day
		// has none, and dropping it changes nothing.
		"aggregate.sqlIDDays":    {args: []any{"20261102"}},
		"aggregate.sqlDropIDDay": {format: []any{"20260915"}},
		"aggregate.sqlIDsEngine": {},

		"rollup.sqlInsertRecords": {rows: [][]any{
			{app1, "2026-10", uint32(1), "provisional", uint32(0), "standard", uint64(3), decimal.RequireFromString("12.30"),
				"USD", "f1", `{"app":1400000001,"revision":1}`, at("2026-10-05 00:00:03")},
			{app1, "2026-10", uint32(2), "final", uint32(1), "standard", uint64(3), decimal.RequireFromString("15.05"),
				"USD", "f2", `{"app":1400000001,"revision":2}`, at("2026-11-02 00:00:03")},
			{app2, "2026-10", uint32(1), "provisional", uint32(0), "developer", uint64(1), decimal.RequireFromString("0"),
				"USD", "f3", `{"app":1400000002,"revision":1}`, at("2026-10-05 00:00:03")},
		}},
		"rollup.sqlInsertMonths": {rows: [][]any{
			{"2026-10", app1, uint32(1), "provisional", "standard", uint64(3), decimal.RequireFromString("12.30"), "USD", at("2026-10-05 00:00:03")},
			{"2026-10", app1, uint32(2), "final", "standard", uint64(3), decimal.RequireFromString("15.05"), "USD", at("2026-11-02 00:00:03")},
			{"2026-10", app2, uint32(1), "provisional", "developer", uint64(1), decimal.RequireFromString("0"), "USD", at("2026-10-05 00:00:03")},
			{"2026-09", app1, uint32(1), "final", "standard", uint64(2), decimal.RequireFromString("9.00"), "USD", at("2026-10-01 00:00:03")},
		}},
		"rollup.sqlInsertPublished": {rows: [][]any{{app1, "2026-10", uint32(1), at("2026-10-05 00:00:01")}}},
		"rollup.sqlDaily":           {args: []any{"2026-10-01", "2026-10-31"}},
		"rollup.sqlMAU":             {args: []any{"2026-10-01", "2026-10-31"}},
		"rollup.sqlSketches":        {args: []any{"2026-10-01", "2026-10-31"}},
		"rollup.sqlPlans":           {args: []any{octEnd + 1}},
		"rollup.sqlInsertAlert": {rows: [][]any{
			{"1400000001:mau_quota:2026-10:developer:80", app1, "mau_quota", "2026-10", "developer", uint16(80), int64(80), uint64(100),
				at("2026-10-02 00:00:05"), `{"id":"1400000001:mau_quota:2026-10:developer:80"}`, at("2026-10-02 00:00:05")},
			{"1400000001:mau_quota:2026-10:developer:100", app1, "mau_quota", "2026-10", "developer", uint16(100), int64(100), uint64(100),
				at("2026-10-03 00:00:05"), `{"id":"1400000001:mau_quota:2026-10:developer:100"}`, at("2026-10-03 00:00:05")},
		}},
		"rollup.sqlInsertAlertPublished": {rows: [][]any{{app1, "1400000001:mau_quota:2026-10:developer:80", at("2026-10-02 00:00:06")}}},
		"rollup.sqlAlertsStored":         {},
		"rollup.sqlAlertsOfApp":          {args: []any{app1}},
		"rollup.sqlAlertPositions":       {},
		"rollup.sqlAlertUsage":           {args: []any{[]int32{-1}, []uint64{0}, []int32{-1}, int64(0), "2026-10-01", "2026-10-31", uint64(0)}, alt: [][]any{{[]int32{-1, 0, 3}, []uint64{0, 5, 18446744073709551615}, []int32{-1, 0, 3}, at("2026-10-02 03:04:05").Unix(), "2026-10-01", "2026-10-31", uint64(0)}}},
		"rollup.sqlAlertBlocks":          {differ: true}, // part names and block numbers are each server's
		"rollup.sqlAlertMAU":             {args: []any{"2026-10-01", "2026-10-31", clickhouse.GroupSet{Value: []any{app1, app2}}}},
		"rollup.sqlAlertLiveGroups":      {args: []any{octEnd + 1}},
		"rollup.sqlAlertLiveGroupsOf":    {args: []any{clickhouse.GroupSet{Value: []any{app1, app2}}, octEnd + 1}},
		"rollup.sqlPlanMark":             {args: []any{octEnd + 1}},
		"rollup.sqlUsageMark":            {args: []any{"2026-10-01", "2026-10-31"}, alt: [][]any{{"2026-12-01", "2026-12-31"}}},
		"rollup.sqlLatest":               {args: []any{"2026-10"}},
		"rollup.sqlUnpublished":          {},
		"rollup.sqlStatement":            {args: []any{app1, "2026-10"}, alt: [][]any{{app3, "2026-10"}}},
		"rollup.sqlAppDaily":             {args: []any{app1, "2026-10-01", "2026-10-31"}},
		"rollup.sqlAppMAU":               {args: []any{app1, "2026-10-01", "2026-10-31"}},
		"rollup.sqlAppSketches":          {args: []any{app1, "2026-10-01", "2026-10-31"}},
		"rollup.sqlAppPlans":             {args: []any{app1, octEnd + 1}},
		"rollup.sqlAppDayUsers":          {args: []any{app1, "2026-10-01", "2026-10-31"}},
		"rollup.sqlAppRecords":           {args: []any{app1, "2026-10", app1, "2026-10"}},
		"rollup.sqlMonthApps":            {args: []any{"2026-10"}},
		"rollup.sqlMonthUsageApps":       {args: []any{"2026-10-01", "2026-10-31"}},

		"cmd/immeter/e2ebench.sqlRawEventsTable": {},
		"cmd/immeter/e2ebench.sqlInsertRawEvents": {rows: [][]any{
			{app9, at("2026-10-01 01:00:00"), "login", "w1", "e1", "ios", "", uint32(0), "", "", "", "", uint32(0), ""},
			{app9, at("2026-10-01 02:00:00"), "login", "w1", "e2", "ios", "", uint32(0), "", "", "", "", uint32(0), ""},
			{app9, at("2026-10-02 02:00:00"), "message", "w2", "e3", "web", "c2c", uint32(4), "", "", "", "", uint32(0), ""},
			{app9, at("2026-10-02 03:00:00"), "group", "w2", "e4", "web", "", uint32(0), "create", "g1", "work", "", uint32(0), ""},
			{app9, at("2026-10-02 04:00:00"), "call", "w2", "e5", "web", "", uint32(0), "", "", "", "video", uint32(61), ""},
			{app9, at("2026-11-01 04:00:00"), "login", "w3", "e6", "web", "", uint32(0), "", "", "", "", uint32(0), ""},
		}},
		"cmd/immeter/e2ebench.sqlInsertDailyUsage": {rows: [][]any{dailyRow(app9, "2026-10-01", 2, 1, 2, 4, 0, 1, 0)}},
		"cmd/immeter/e2ebench.sqlInsertUserDays":   {rows: [][]any{{app9, day("2026-10-01"), "w1"}}},
		"cmd/immeter/e2ebench.sqlInsertSketches":   {rows: [][]any{{app9, day("2026-10-01"), "synthetic/p2", uint64(1), "sk"}}},
		"cmd/immeter/e2ebench.sqlPeerMAU":          {args: []any{octStart, octEnd}},
		"cmd/immeter/e2ebench.sqlPeerCounters":     {args: []any{octStart, octEnd}},
		"cmd/immeter/e2ebench.sqlAppLogins":        {args: []any{app1}},
		"cmd/immeter/e2ebench.sqlMergeTrees":       {args: []any{sqlTestDB}},
		"cmd/immeter/e2ebench.sqlTableSizes":       {args: []any{sqlTestDB}, differ: true}, // bytes on disk
		"cmd/immeter/e2ebench.sqlIDDaysKept":       {args: []any{sqlTestDB}},
		"cmd/immeter/e2ebench.sqlOptimizeFinal":    {format: []any{"user_days"}},
		"cmd/immeter/e2ebench.sqlDropDatabase":     {format: []any{sqlTestDB}},

		"internal/testenv.sqlDropDatabase":          {format: []any{sqlTestDB + "_never_made"}},
		"internal/testenv.sqlDropDatabaseOnCluster": {cluster: true},
	}
}

// sqlChecks pin results that the fixture determines, on every engine.
var sqlChecks = []struct{ query, want string }{
	// argMax takes the newest version per partition; partitions add up; a
	// day without users has 0 active users (ANY LEFT JOIN's default).
	{"SELECT app, day, active_users, logins, messages_c2c, messages_group, groups_net FROM daily_stats ORDER BY app, day",
		"1400000001 2026-09-30 0 7 7 7 0\n" +
			"1400000001 2026-10-01 3 9 21 4 -1\n" +
			"1400000001 2026-10-02 1 2 2 2 1\n" +
			"1400000002 2026-10-01 1 3 3 3 0\n" +
			"1400000003 2026-10-03 0 4 4 4 -1\n" +
			"1400000009 2026-10-01 1 2 4 0 1\n"},
	{"SELECT app, month, latest_revision, status, mau, total FROM monthly_billing ORDER BY app, month",
		"1400000001 2026-10 2 final 3 15.05\n1400000002 2026-10 1 provisional 1 0\n"},
	// The console's list reads billing_months (September's row is not
	// October's).
	// event_ids is partitioned by day (migration 0016).
	{"SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = 'event_ids' AND active ORDER BY partition",
		"20261001\n20261002\n"},
	{"SELECT app, max(revision), argMax(status, revision), argMax(total, revision) FROM billing_months WHERE month = '2026-10' GROUP BY app ORDER BY app",
		"1400000001 2 final 15.05\n1400000002 1 provisional 0\n"},
	// dead_letters is keyed by source offset and epoch (migration 0017): a
	// replay replaces its row, the same offset of another epoch does not.
	{"SELECT src_partition, src_offset, src_epoch, reason FROM dead_letters FINAL ORDER BY src_epoch",
		"0 7 1 type: unknown\n0 7 2 time: too old\n"},
}

// stmt is one statement as sent.
type stmt struct {
	key  string // where it is: package.const, migration or README.md
	text string
	sample
}

func (s stmt) phase() int {
	w := strings.ToUpper(strings.Fields(s.text)[0])
	switch {
	case strings.HasPrefix(s.key, "migration "), w == "CREATE":
		return 1
	case w == "INSERT":
		return 2
	case w == "OPTIMIZE":
		return 4
	case w == "DROP" && strings.HasSuffix(s.text, " "+sqlTestDB):
		return 6 // the engine's current database: last
	case w == "DROP":
		return 5
	}
	return 3
}

func (s stmt) query() bool {
	w := strings.ToUpper(strings.Fields(s.text)[0])
	return w == "SELECT" || w == "WITH" || w == "SHOW"
}

func TestSQL(t *testing.T) {
	consts, err := sqlConsts("..")
	if err != nil {
		t.Fatal(err)
	}
	smp := samples()
	var stmts []stmt
	for _, c := range consts {
		s, ok := smp[c.key]
		if !ok {
			t.Errorf("%s (%s): no sample in samples(): add one so that it is checked", c.key, c.pos)
			continue
		}
		delete(smp, c.key)
		if s.cluster {
			continue
		}
		text := c.text
		if s.format != nil {
			text = fmt.Sprintf(text, s.format...)
		}
		stmts = append(stmts, stmt{key: c.key, text: text, sample: s})
		for i, args := range s.alt {
			alt := s
			alt.args = args
			stmts = append(stmts, stmt{key: fmt.Sprintf("%s (alt args %d)", c.key, i+1), text: text, sample: alt})
		}
	}
	for k := range smp {
		t.Errorf("samples(): %s: no such statement", k)
	}
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for i, s := range m.Statements {
			stmts = append(stmts, stmt{key: fmt.Sprintf("migration %04d_%s #%d", m.Version, m.Name, i+1), text: s})
		}
	}
	readme, err := readmeQueries("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(readme) == 0 {
		t.Error("README.md: no ```sql block found")
	}
	stmts = append(stmts, readme...)
	for _, c := range sqlChecks {
		stmts = append(stmts, stmt{key: "check " + c.query, text: c.query})
	}
	if t.Failed() {
		return
	}
	var create stmt
	for _, s := range stmts {
		if s.key == "schemas.sqlCreateDatabase" {
			create = s
		}
	}
	if create.text == "" {
		t.Fatal("schemas.sqlCreateDatabase: not found")
	}
	sort.SliceStable(stmts, func(i, j int) bool { return stmts[i].phase() < stmts[j].phase() })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	engines := sqlEngines(ctx, t, create)
	results := make([][]*result, len(engines))
	for i, e := range engines {
		for _, s := range stmts {
			if s.key == create.key {
				results[i] = append(results[i], nil) // run by sqlEngines
				continue
			}
			r, err := e.run(ctx, s)
			if err != nil {
				t.Errorf("%s: %s: %v\n%s", e.name(), s.key, err, s.text)
			}
			results[i] = append(results[i], r)
		}
	}
	for j, s := range stmts {
		if !s.query() {
			continue
		}
		for i, e := range engines {
			r := results[i][j]
			if r == nil {
				continue
			}
			if len(r.rows) == 0 {
				t.Errorf("%s: %s: no rows: the fixture (samples) should give it some", e.name(), s.key)
			}
			if want, ok := checkWant(s.key); ok {
				got := strings.ReplaceAll(strings.Join(r.rows, "\n")+"\n", "\t", " ")
				if got != want {
					t.Errorf("%s: %s:\ngot\n%swant\n%s", e.name(), s.key, got, want)
				}
			}
			if i == 0 || s.differ || results[0][j] == nil {
				continue
			}
			if a, b := results[0][j].String(), r.String(); a != b {
				t.Errorf("%s: results differ between %s and %s:\n%s:\n%s\n%s:\n%s",
					s.key, engines[0].name(), e.name(), engines[0].name(), a, e.name(), b)
			}
		}
	}
	t.Logf("%d statements on %d engines", len(stmts), len(engines))
}

func checkWant(key string) (string, bool) {
	for _, c := range sqlChecks {
		if key == "check "+c.query {
			return c.want, true
		}
	}
	return "", false
}

// TestMigrationReplacesOldDailyStats: a database migrated by 0003 as it was
// before its subqueries had aliases (18.16 accepted it; current releases
// reject it, and reject reading such a view) gets the fixed view from the
// migrations after 0003.
func TestMigrationReplacesOldDailyStats(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	create := stmt{key: "schemas.sqlCreateDatabase", text: fmt.Sprintf(sqlCreateDatabase, sqlTestDB)}
	for _, e := range sqlEngines(ctx, t, create) {
		run := func(key, text string, rows ...[]any) *result {
			t.Helper()
			r, err := e.run(ctx, stmt{key: key, text: text, sample: sample{rows: rows}})
			if err != nil {
				t.Fatalf("%s: %s: %v", e.name(), key, err)
			}
			return r
		}
		_, current := e.(*chdb)
		if current { // as the 18.16 server that created the view
			run("setting", "SET joined_subquery_requires_alias = 0")
		}
		run("schema_migrations", sqlCreateMigrations)
		for _, m := range ms[:3] {
			for i, s := range m.Statements {
				if m.Version == 3 && strings.HasPrefix(s, "CREATE VIEW IF NOT EXISTS daily_stats") {
					for _, alias := range [][2]string{{") AS counters\n", ")\n"}, {") AS users USING", ") USING"}} {
						if strings.Count(s, alias[0]) != 1 {
							t.Fatalf("0003_views: %q not found once: update this test", alias[0])
						}
						s = strings.Replace(s, alias[0], alias[1], 1)
					}
				}
				run(fmt.Sprintf("migration %04d #%d", m.Version, i+1), s)
			}
			run("record", sqlInsertMigration, []any{uint32(m.Version), m.Name, at("2026-10-01 00:00:01")})
		}
		if current {
			run("setting", "SET joined_subquery_requires_alias = 1")
			if _, err := e.run(ctx, stmt{key: "old view", text: "SELECT count() FROM daily_stats"}); err == nil {
				t.Errorf("%s: the old daily_stats works: this test no longer shows what the migration repairs", e.name())
			}
			for _, m := range ms[3:] {
				for i, s := range m.Statements {
					run(fmt.Sprintf("migration %04d #%d", m.Version, i+1), s)
				}
				run("record", sqlInsertMigration, []any{uint32(m.Version), m.Name, at("2026-10-01 00:00:01")})
			}
		} else if err := Migrate(ctx, e.(*server).conn); err != nil {
			t.Fatalf("%s: %v", e.name(), err)
		}
		run("read", "SELECT count() FROM daily_stats")
		def := run("show", "SHOW CREATE TABLE daily_stats")
		if s := strings.Join(def.rows, "\n"); !strings.Contains(s, "AS counters") || !strings.Contains(s, "AS users") {
			t.Errorf("%s: daily_stats not replaced:\n%s", e.name(), s)
		}
		run("drop", fmt.Sprintf("DROP DATABASE %s", sqlTestDB))
	}
}
