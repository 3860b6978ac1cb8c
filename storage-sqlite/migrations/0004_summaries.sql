-- Metrics summaries kept up to date by every metric insert and delete, so a
-- summary reads a few counters and index seeks instead of every metric.
-- The counters follow runstore_core::summary; the migration step fills them
-- from the metrics already stored.

-- Per workflow version: counts, and the exact duration sum (16 bytes,
-- big-endian unsigned).
CREATE TABLE metric_totals (
    workflow_id      TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    executions       INTEGER NOT NULL CHECK (executions > 0),
    succeeded        INTEGER NOT NULL CHECK (succeeded >= 0),
    failed           INTEGER NOT NULL CHECK (failed >= 0),
    cancelled        INTEGER NOT NULL CHECK (cancelled >= 0),
    duration_sum     BLOB    NOT NULL,
    PRIMARY KEY (workflow_id, workflow_version)
) WITHOUT ROWID;

-- Per workflow version and named value: its count and exact sum
-- (runstore_core::summary::ExactSum::to_bytes).
CREATE TABLE metric_value_totals (
    workflow_id      TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    name             TEXT    NOT NULL,
    count            INTEGER NOT NULL CHECK (count > 0),
    sum              BLOB    NOT NULL,
    PRIMARY KEY (workflow_id, workflow_version, name)
) WITHOUT ROWID;

-- Per workflow version: metrics per duration bucket
-- (runstore_core::summary::bucket_of), to find a percentile's bucket. No
-- CHECK on the count: an upsert checks the row it would insert, and a
-- decrement is inserted as a negative count; the code refuses a count
-- that falls below zero.
CREATE TABLE metric_duration_buckets (
    workflow_id      TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    bucket           INTEGER NOT NULL,
    count            INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, workflow_version, bucket)
) WITHOUT ROWID;

-- The first and last recorded time of a version: two index seeks.
CREATE INDEX metrics_by_time ON metrics (workflow_id, workflow_version, recorded_at);

-- Counts and times no longer come from covering indexes: one narrow index
-- serves the least and greatest duration of a version and the reads inside
-- one duration bucket (of one version, or of all through `IN`), and every
-- metric written updates one index fewer.
DROP INDEX metrics_by_workflow;
DROP INDEX metrics_by_version;
CREATE INDEX metrics_by_version ON metrics (workflow_id, workflow_version, duration_micros);
