-- event_ids partitioned by day, so that the aggregator drops the ids of the
-- days before its accepted window (MAX_EVENT_AGE) partition by partition:
-- ClickHouse 18.16 has no TTL, and monthly partitions kept up to a month of
-- ids too many. A partition key cannot be altered in place: the rows are
-- copied into a new table, which then takes the name event_ids.
--
-- Applied again after a cut (Migrate): while event_ids is not yet partitioned
-- by day, the copy is made again (rows already copied repeat; a set, so that
-- is harmless) and swapped in; once it is, only the DROPs run (see
-- schemas.migrationDone). Ids written to the old table by an aggregator of an
-- older version during the copy are not carried over: stop those first.
CREATE TABLE IF NOT EXISTS event_ids_by_day (
    src_partition Int32,
    app           UInt32,
    day           Date,
    id_hi         UInt64,
    id_lo         UInt64,
    src_offset    UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(day)
ORDER BY (src_partition, app, day, id_hi, id_lo);

INSERT INTO event_ids_by_day (src_partition, app, day, id_hi, id_lo, src_offset)
SELECT src_partition, app, day, id_hi, id_lo, src_offset FROM event_ids;

RENAME TABLE event_ids TO event_ids_by_month, event_ids_by_day TO event_ids;

DROP TABLE IF EXISTS event_ids_by_month;

DROP TABLE IF EXISTS event_ids_by_day;
