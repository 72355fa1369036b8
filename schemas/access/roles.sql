-- Access for immeter on current ClickHouse releases (SQL roles, 20.4 and later;
-- ClickHouse 18.16 has none: use users.d/immeter-access.xml there). Run as a user
-- with access management, e.g. clickhouse-client --multiquery < schemas/access/roles.sql,
-- after replacing the passwords. The database is immeter (CLICKHOUSE_DATABASE).
-- README, "ClickHouse for analysts".

-- immeter itself: creates its database and tables (migrations), inserts, reads.
CREATE ROLE IF NOT EXISTS immeter_writer;
GRANT CREATE DATABASE ON immeter.* TO immeter_writer;
GRANT CREATE TABLE, CREATE VIEW, SELECT, INSERT, OPTIMIZE ON immeter.* TO immeter_writer;
-- Migration 0016 renames and drops a table; the aggregator drops the days of
-- event_ids before its window (ALTER TABLE … DROP PARTITION needs ALTER DELETE).
GRANT DROP TABLE, ALTER DELETE ON immeter.* TO immeter_writer;
-- Migration 0017 adds a column to the sorting key of dead_letters.
GRANT ALTER ADD COLUMN, ALTER ORDER BY ON immeter.* TO immeter_writer;

-- Analysts: read immeter's tables and views, nothing else.
CREATE ROLE IF NOT EXISTS immeter_analyst;
GRANT SELECT ON immeter.* TO immeter_analyst;

-- readonly = 2: settings such as max_execution_time may be changed, readonly may not,
-- and no write or DDL runs even if a grant were added by mistake.
CREATE SETTINGS PROFILE IF NOT EXISTS immeter_analyst_limits
    SETTINGS readonly = 2, max_execution_time = 300, max_memory_usage = 4000000000;

CREATE USER IF NOT EXISTS immeter IDENTIFIED WITH sha256_password BY 'REPLACE_ME'
    HOST LOCAL DEFAULT ROLE immeter_writer DEFAULT DATABASE immeter;
GRANT immeter_writer TO immeter;

CREATE USER IF NOT EXISTS analyst IDENTIFIED WITH sha256_password BY 'REPLACE_ME'
    HOST LOCAL DEFAULT ROLE immeter_analyst DEFAULT DATABASE immeter
    SETTINGS PROFILE 'immeter_analyst_limits';
GRANT immeter_analyst TO analyst;
