-- Usage rollups written by `immeter aggregate`.
-- Compatible with ClickHouse 18.16 and current releases: no DateTime64,
-- LowCardinality, CODEC or TTL.

-- Per app, billing-time-zone day and source Kafka partition: absolute counters.
-- A row is complete up to Kafka offset `version` of `src_partition`; newer rows
-- replace older ones. Read with argMax(x, version) per (app, day, src_partition)
-- and sum over partitions, or use the view daily_stats.
CREATE TABLE IF NOT EXISTS daily_usage (
    app                UInt32,
    day                Date,
    src_partition      Int32,
    version            UInt64,
    logins             UInt64,
    messages_c2c       UInt64,
    messages_group     UInt64,
    messages_community UInt64,
    messages_live      UInt64,
    groups_created     UInt64,
    groups_dissolved   UInt64,
    calls_audio        UInt64,
    calls_video        UInt64,
    call_seconds_audio UInt64,
    call_seconds_video UInt64,
    duplicates         UInt64,
    updated_at         DateTime
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (app, day, src_partition);

-- Users who logged in, per app and day: the exact DAU and MAU (uniqExact(user)).
-- Rows may repeat until merged; uniqExact makes that harmless.
CREATE TABLE IF NOT EXISTS user_days (
    app  UInt32,
    day  Date,
    user String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (app, day, user);

-- HyperLogLog sketches (github.com/axiomhq/hyperloglog, binary form) of the
-- users who logged in, per app and day. The union of all rows of a day is its
-- DAU sketch; the union over a month is its MAU sketch.
CREATE TABLE IF NOT EXISTS user_sketches (
    app     UInt32,
    day     Date,
    writer  String,
    version UInt64,
    sketch  String
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (app, day, writer);

-- Event ids seen, per source partition, for deduplication across restarts.
-- (id_hi, id_lo) is the 128-bit xxh3 hash of the event id; src_offset is where
-- the event was first seen.
CREATE TABLE IF NOT EXISTS event_ids (
    src_partition Int32,
    app           UInt32,
    day           Date,
    id_hi         UInt64,
    id_lo         UInt64,
    src_offset    UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (src_partition, app, day, id_hi, id_lo);

-- Plan (edition) changes, from plan events.
CREATE TABLE IF NOT EXISTS plan_changes (
    app      UInt32,
    at       DateTime,
    at_nanos UInt32,
    edition  String,
    id       String
) ENGINE = ReplacingMergeTree
ORDER BY (app, at, at_nanos, id);

-- Where each source partition has been aggregated up to (exclusive).
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group String,
    topic          String,
    partition      Int32,
    next_offset    UInt64,
    updated_at     DateTime
) ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (consumer_group, topic, partition);

-- Invalid events, as published on the dead-letter topic.
CREATE TABLE IF NOT EXISTS dead_letters (
    received_at   DateTime,
    src_topic     String,
    src_partition Int32,
    src_offset    Int64,
    app           UInt32,
    reason        String,
    payload       String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (src_topic, src_partition, src_offset);
