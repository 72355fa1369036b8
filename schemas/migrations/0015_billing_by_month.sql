-- The billing records' list columns keyed by month first, for the usage
-- console's app list (GET /v1/apps?month=): it reads only the month's rows.
-- `immeter rollup` writes every revision here before billing_records.
CREATE TABLE IF NOT EXISTS billing_months (
    month        String,
    app          UInt32,
    revision     UInt32,
    status       String,
    edition      String,
    mau          UInt64,
    total        Decimal(18, 2),
    currency     String,
    generated_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (month, app, revision);

-- The revisions stored before this migration. A set: running it again adds
-- only rows that replace equal ones.
INSERT INTO billing_months (month, app, revision, status, edition, mau, total, currency, generated_at)
SELECT month, app, revision, status, edition, mau, total, currency, generated_at FROM billing_records;
