package aggregate

// The statements the aggregator sends; schemas/sql_test.go runs each on every
// supported ClickHouse version.

const sqlLoadDays = `SELECT app, day, max(version), ` + countersArgMax + `
		FROM daily_usage WHERE src_partition = ? AND day >= toDate(?) GROUP BY app, day`

const sqlLoadDay = `SELECT max(version), ` + countersArgMax + `
		FROM daily_usage WHERE src_partition = ? AND app = ? AND day = toDate(?)`

const sqlLoadIDs = `SELECT day, id_hi, id_lo, min(src_offset) FROM event_ids
		WHERE src_partition = ? AND day >= toDate(?) GROUP BY day, id_hi, id_lo`

// The filtered dedup (filter.go): the ids stored per day, the ids, and the
// lookup of the ids the filter may hold, bound as one clickhouse.GroupSet
// of (app, id_hi, id_lo) GroupSets: ((1, 2, 3), (4, 5, 6)).
const sqlCountIDs = `SELECT day, count() FROM event_ids
		WHERE src_partition = ? AND day >= toDate(?) GROUP BY day`

const sqlLoadFilter = `SELECT day, id_hi, id_lo FROM event_ids
		WHERE src_partition = ? AND day >= toDate(?)`

const sqlConfirmIDs = `SELECT day, id_hi, id_lo, min(src_offset) FROM event_ids
		WHERE src_partition = ? AND day >= toDate(?) AND (app, id_hi, id_lo) IN ?
		GROUP BY app, day, id_hi, id_lo`

const sqlProgress = `SELECT partition, max(next_offset) FROM consumer_offsets
		WHERE consumer_group = ? AND topic = ? GROUP BY partition`

// Positions and epochs (position.go).
const sqlReadPosition = `SELECT max(next_offset), count() FROM consumer_offsets
	WHERE consumer_group = ? AND topic = ? AND partition = ?`

const sqlReadEpoch = `SELECT max(epoch), argMax(offset_base, epoch), argMax(topic_id, epoch), count()
	FROM partition_epochs WHERE consumer_group = ? AND topic = ? AND partition = ?`

const sqlInsertEpoch = `INSERT INTO partition_epochs
	(consumer_group, topic, partition, epoch, topic_id, offset_base, first_position, created_at)`

const sqlInsertPosition = `INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated_at)`

const sqlInsertGap = `INSERT INTO offset_gaps (consumer_group, topic, partition, kind, old_topic_id, new_topic_id,
	from_offset, to_offset, position_before, position_after, accepted_at, accepted_by, reason)`

const sqlProgressBases = `SELECT partition, argMax(offset_base, epoch) FROM partition_epochs
	WHERE consumer_group = ? AND topic = ? GROUP BY partition`

// Batch inserts: the rows follow as native blocks.
const (
	sqlInsertDeadLetters = `INSERT INTO dead_letters
		(received_at, src_topic, src_partition, src_offset, src_epoch, app, reason, payload)`
	sqlInsertEventIDs    = `INSERT INTO event_ids (src_partition, app, day, id_hi, id_lo, src_offset)`
	sqlInsertUserDays    = `INSERT INTO user_days (app, day, user)`
	sqlInsertPlanChanges = `INSERT INTO plan_changes (app, at, at_nanos, edition, id)`
	sqlInsertSketches    = `INSERT INTO user_sketches (app, day, writer, version, sketch)`
	sqlInsertDailyUsage  = `INSERT INTO daily_usage (app, day, src_partition, version, ` + countersCols + `, updated_at)`
)
