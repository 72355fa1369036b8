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
)
