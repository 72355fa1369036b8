package schemas

// The statements Migrate and OpenClickHouse send besides the migrations;
// sql_test.go runs each on every supported ClickHouse version.

// sqlCreateDatabase takes the database name (fmt verb).
const sqlCreateDatabase = "CREATE DATABASE IF NOT EXISTS %s"

const sqlCreateMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime
	) ENGINE = ReplacingMergeTree ORDER BY version`

const sqlAppliedMigrations = "SELECT version FROM schema_migrations"

const sqlInsertMigration = "INSERT INTO schema_migrations (version, name, applied_at)"

// sqlEventIDsByDay counts 1 once migration 0016 has swapped in event_ids
// partitioned by day (see migrationDone).
const sqlEventIDsByDay = `SELECT count() FROM system.tables
	WHERE database = currentDatabase() AND name = 'event_ids' AND partition_key = 'toYYYYMMDD(day)'`

// sqlDeadLettersEpoch counts 1 once migration 0017 has added src_epoch to
// dead_letters (see migrationDone).
const sqlDeadLettersEpoch = `SELECT count() FROM system.columns
	WHERE database = currentDatabase() AND table = 'dead_letters' AND name = 'src_epoch'`
