-- Usage alerts written by the alerter (`immeter rollup`, `immeter run`): one
-- row per alert id, stored before the alert is published on im.usage.alerts.
-- A second row of an id (a retried insert) carries the same record.
CREATE TABLE IF NOT EXISTS alerts (
    id           String,
    app          UInt32,
    kind         String,
    period       String,
    edition      String,
    level        UInt16,
    value        Int64,
    quota        UInt64,
    at           DateTime,
    record       String,
    generated_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (app, id);

-- Alerts acknowledged by Kafka; a stored alert missing here is published
-- again at start.
CREATE TABLE IF NOT EXISTS alerts_published (
    app          UInt32,
    id           String,
    published_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (app, id);

-- Live-streaming (AVChatRoom) group creations and dissolutions, from group
-- events, written by `immeter aggregate` as a set. A group exists when its
-- latest change (by event time, then id) is a creation.
CREATE TABLE IF NOT EXISTS live_group_changes (
    app      UInt32,
    group_id String,
    op       String,
    at       DateTime,
    at_nanos UInt32,
    id       String
) ENGINE = ReplacingMergeTree
ORDER BY (app, group_id, at, at_nanos, id);
