-- runstore PostgreSQL schema, version 5: metrics summaries kept on every
-- write (runstore_core::summary), so a summary costs a few index seeks
-- however many metrics a workflow has. Every insert and delete of a metric
-- changes these rows in its own transaction. The step's Rust part
-- (src/summaries.rs, `build`) fills them from the metrics already stored,
-- in the same transaction.

-- Per workflow version: counts and the exact duration sum (u128, 16 bytes
-- big-endian). A version without metrics has no row.
CREATE TABLE {schema}.metric_totals (
    workflow_id      text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL,
    executions       bigint NOT NULL CHECK (executions >= 0),
    succeeded        bigint NOT NULL CHECK (succeeded >= 0),
    failed           bigint NOT NULL CHECK (failed >= 0),
    cancelled        bigint NOT NULL CHECK (cancelled >= 0),
    duration_sum     bytea NOT NULL,
    PRIMARY KEY (workflow_id, workflow_version)
);

-- Per workflow version and named value: its count and exact sum
-- (runstore_core::summary::ExactSum::to_bytes).
CREATE TABLE {schema}.metric_value_totals (
    workflow_id      text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL,
    name             text COLLATE "C" NOT NULL,
    count            bigint NOT NULL CHECK (count >= 0),
    sum              bytea NOT NULL,
    PRIMARY KEY (workflow_id, workflow_version, name)
);

-- Per workflow version: metrics per duration bucket
-- (runstore_core::summary::bucket_of), to find a percentile's bucket. No
-- CHECK on the count: a delta is added with an upsert, and the code
-- refuses (rolls back) a count that falls below zero as Corrupt.
CREATE TABLE {schema}.metric_duration_buckets (
    workflow_id      text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL,
    bucket           integer NOT NULL,
    count            bigint NOT NULL,
    PRIMARY KEY (workflow_id, workflow_version, bucket)
);

-- Least and greatest duration and time of a version, and the durations of
-- one bucket in order: index seeks.
CREATE INDEX metrics_by_duration ON {schema}.metrics (workflow_id, workflow_version, duration_micros);
CREATE INDEX metrics_by_time ON {schema}.metrics (workflow_id, workflow_version, recorded_at);

-- Named values: one index, the primary key, leading with what a summary
-- seeks (the least and greatest value of a name within a version) and
-- ending with the run id, so a deleted metric's values are deleted by
-- their whole key. It replaces both the index by workflow and the key by
-- (run_id, name): one index fewer to keep on every value recorded. No
-- foreign key, as for events since version 2: every writer writes a
-- metric's values in the transaction that inserts the metric, and both
-- deletes of metrics delete their values themselves; the key's row-by-row
-- check on every value recorded cost more than the new indexes above.
DROP INDEX {schema}.metric_values_by_workflow;
ALTER TABLE {schema}.metric_values
    DROP CONSTRAINT metric_values_run_id_fkey,
    DROP CONSTRAINT metric_values_pkey,
    ADD PRIMARY KEY (workflow_id, workflow_version, name, value, run_id);
