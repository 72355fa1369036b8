package e2ebench

// The statements the benchmark sends besides those of peer.go (the peers'
// design); schemas/sql_test.go runs each on every supported ClickHouse version.

// sqlAppLogins is an app's logins so far, all days.
const sqlAppLogins = `SELECT sum(l) FROM (SELECT argMax(logins, version) AS l
				FROM daily_usage WHERE app = ? GROUP BY day, src_partition)`

const sqlMergeTrees = `SELECT name FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree'`

const sqlTableSizes = `SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts
		WHERE database = ? AND active GROUP BY table ORDER BY table`

// sqlOptimizeFinal and sqlDropDatabase take a table or database name (fmt verb).
const (
	sqlOptimizeFinal = "OPTIMIZE TABLE %s FINAL"
	sqlDropDatabase  = "DROP DATABASE IF EXISTS %s"
)

// Batch inserts of the synthetic month and the peers' raw events: the rows
// follow as native blocks.
const (
	sqlInsertDailyUsage = `INSERT INTO daily_usage (app, day, src_partition, version, logins, messages_c2c,
			messages_group, messages_community, messages_live, groups_created, groups_dissolved, calls_audio, calls_video,
			call_seconds_audio, call_seconds_video, duplicates, updated_at)`
	sqlInsertUserDays  = `INSERT INTO user_days (app, day, user)`
	sqlInsertSketches  = `INSERT INTO user_sketches (app, day, writer, version, sketch)`
	sqlInsertRawEvents = `INSERT INTO raw_events (app, time, type, user, id, platform, channel,
		count, op, group_id, group_type, media, seconds, edition)`
)
