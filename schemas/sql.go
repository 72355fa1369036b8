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
