-- Where the aggregator's positions stand against the Kafka topic they read,
-- and the offset ranges an operator accepted as lost (`immeter accept-gap`).
-- Compatible with ClickHouse 18.16 and current releases.

-- One row per incarnation of a source partition: the Kafka topic ID it had
-- when the aggregator first read it, and offset_base, which maps its Kafka
-- offsets to positions (position = Kafka offset + offset_base). Positions
-- (consumer_offsets.next_offset, daily_usage.version, event_ids.src_offset,
-- user_sketches.version) only grow, also across a topic recreated with
-- offsets from 0 again. The row with the highest epoch is the current one.
CREATE TABLE IF NOT EXISTS partition_epochs (
    consumer_group String,
    topic          String,
    partition      Int32,
    epoch          UInt32,
    topic_id       String,
    offset_base    Int64,
    first_position UInt64,
    created_at     DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (consumer_group, topic, partition, epoch);

-- Offset ranges skipped by an operator's decision: their events were never
-- aggregated. kind is before-log-start (deleted by retention or
-- kafka-delete-records before they were read: from_offset to to_offset,
-- exclusive, of the same topic), topic-recreated (the old topic's events
-- from from_offset on, and the new topic's before to_offset), log-truncated
-- (the offsets from to_offset up to from_offset were read, then lost from
-- the log, and reading resumes at its end, to_offset) or state-lost (ClickHouse
-- lost what was aggregated before to_offset, which Kafka no longer has).
CREATE TABLE IF NOT EXISTS offset_gaps (
    consumer_group  String,
    topic           String,
    partition       Int32,
    kind            String,
    old_topic_id    String,
    new_topic_id    String,
    from_offset     Int64,
    to_offset       Int64,
    position_before Int64,
    position_after  UInt64,
    accepted_at     DateTime,
    accepted_by     String,
    reason          String
) ENGINE = ReplacingMergeTree
ORDER BY (consumer_group, topic, partition, accepted_at, kind);
