package rollup

// The statements the rollup sends, besides sqlDaily in usage.go;
// schemas/sql_test.go runs each on every supported ClickHouse version.

// sqlMAU is the exact MAU of each app with logins in [first, last].
const sqlMAU = `SELECT app, uniqExact(user) FROM user_days WHERE day >= toDate(?) AND day <= toDate(?) GROUP BY app`

// sqlSketches reads the users' sketches of the days in [first, last].
const sqlSketches = `SELECT app, sketch FROM user_sketches WHERE day >= toDate(?) AND day <= toDate(?)`

const sqlPlans = `SELECT DISTINCT app, at, at_nanos, edition, id FROM plan_changes
		WHERE at < toDateTime(?) ORDER BY app, at, at_nanos, id`

const sqlUsageMark = `SELECT sum(v) FROM (SELECT src_partition, max(version) AS v FROM daily_usage
		WHERE day >= toDate(?) AND day <= toDate(?) GROUP BY src_partition)`

// sqlPlanMark counts the distinct plan changes in force before a month ends
// (plan events are accepted at any age, so a change however old is seen).
const sqlPlanMark = `SELECT uniqExact(app, at, at_nanos, edition, id) FROM plan_changes WHERE at < toDateTime(?)`

const sqlLatest = `SELECT app, max(revision), argMax(status, revision), argMax(fingerprint, revision),
		countIf(status != 'provisional') FROM billing_records WHERE month = ? GROUP BY app`

const sqlUnpublished = `SELECT app, month, revision, any(status), any(record) FROM billing_records
		WHERE (app, month, revision) NOT IN (SELECT app, month, revision FROM billing_published)
		GROUP BY app, month, revision ORDER BY app, month, revision`

const sqlStatement = `SELECT argMax(record, revision) FROM billing_records WHERE app = ? AND month = ?`

// Batch inserts: the rows follow as native blocks.
const (
	sqlInsertRecords = `INSERT INTO billing_records
		(app, month, revision, status, supersedes, edition, mau, total, currency, fingerprint, record, generated_at)`
	sqlInsertPublished = `INSERT INTO billing_published (app, month, revision, published_at)`
	// sqlInsertMonths writes the list columns of the same revisions, keyed
	// by month first (the console's app list).
	sqlInsertMonths = `INSERT INTO billing_months (month, app, revision, status, edition, mau, total, currency, generated_at)`
)

// The one-app forms of the statements of ReadMonth and the console's reads:
// each reads only one app's rows (the tables are ordered by app first).
const (
	sqlAppDaily = `SELECT app, day, logins, messages_c2c, messages_group, messages_community, messages_live,
	groups_created, groups_dissolved, call_seconds_audio, call_seconds_video
FROM daily_usage FINAL
WHERE app = ? AND day >= toDate(?) AND day <= toDate(?)`
	sqlAppMAU      = `SELECT app, uniqExact(user) FROM user_days WHERE app = ? AND day >= toDate(?) AND day <= toDate(?) GROUP BY app`
	sqlAppSketches = `SELECT app, sketch FROM user_sketches WHERE app = ? AND day >= toDate(?) AND day <= toDate(?)`
	sqlAppPlans    = `SELECT DISTINCT app, at, at_nanos, edition, id FROM plan_changes
		WHERE app = ? AND at < toDateTime(?) ORDER BY app, at, at_nanos, id`
	// sqlAppDayUsers is the active users of each day of an app's month.
	sqlAppDayUsers = `SELECT day, uniqExact(user) FROM user_days WHERE app = ? AND day >= toDate(?) AND day <= toDate(?) GROUP BY day`
	// sqlAppRecords is every stored revision of an app's month, and whether
	// Kafka acknowledged it.
	sqlAppRecords = `SELECT revision, any(record), revision IN (SELECT revision FROM billing_published WHERE app = ? AND month = ?)
		FROM billing_records WHERE app = ? AND month = ? GROUP BY revision ORDER BY revision`
	// sqlMonthApps is the newest stored revision of every app's month; the
	// table is ordered by month first, so it reads only the month's rows.
	sqlMonthApps = `SELECT app, max(revision), argMax(status, revision), argMax(edition, revision), argMax(mau, revision),
		argMax(total, revision), argMax(currency, revision), argMax(generated_at, revision)
		FROM billing_months WHERE month = ? GROUP BY app ORDER BY app`
	// sqlMonthUsageApps is the apps with usage in [first, last]: those the
	// rollup has not stored a record for yet are listed too.
	sqlMonthUsageApps = `SELECT DISTINCT app FROM daily_usage WHERE day >= toDate(?) AND day <= toDate(?)`
)
