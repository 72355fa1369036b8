-- Monthly billing records written by `immeter rollup`, one row per revision,
-- stored before they are published on im.billing.monthly.
CREATE TABLE IF NOT EXISTS billing_records (
    app          UInt32,
    month        String,
    revision     UInt32,
    status       String,
    supersedes   UInt32,
    edition      String,
    mau          UInt64,
    total        Decimal(18, 2),
    currency     String,
    fingerprint  String,
    record       String,
    generated_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (app, month, revision);

-- Revisions acknowledged by Kafka; a stored revision missing here is
-- published again at start.
CREATE TABLE IF NOT EXISTS billing_published (
    app          UInt32,
    month        String,
    revision     UInt32,
    published_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (app, month, revision);
