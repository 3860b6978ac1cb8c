-- runstore PostgreSQL schema, version 1.
-- `{schema}` is replaced by the quoted schema name of the store.
-- JSON is kept as TEXT (serde_json output) so values read back exactly as
-- written; jsonb would rewrite numbers and key order. Times are BIGINT
-- microseconds since the Unix epoch (runstore_core::Timestamp). Text ids and
-- paths use COLLATE "C" so every ORDER BY is bytewise, like every backend.

CREATE TABLE {schema}.workflows (
    id           text COLLATE "C" NOT NULL,
    version      integer NOT NULL CHECK (version >= 1),
    parent       integer NULL CHECK (parent < version),
    description  text NOT NULL,
    body         text NOT NULL,
    content_hash text NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (id, version),
    FOREIGN KEY (id, parent) REFERENCES {schema}.workflows (id, version)
);

CREATE TABLE {schema}.runs (
    id               text COLLATE "C" PRIMARY KEY,
    workflow_id      text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL CHECK (workflow_version >= 1),
    status           text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    trigger          text NOT NULL,
    started_at       bigint NOT NULL,
    ended_at         bigint NULL CHECK (ended_at >= started_at),
    attributes       text NOT NULL,
    summaries        text NOT NULL,
    -- Number of events stored; the row lock on it numbers appends without gaps.
    event_count      bigint NOT NULL DEFAULT 0 CHECK (event_count >= 0),
    CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (ended_at IS NOT NULL))
);
-- query_runs: newest first, optionally by workflow, version, status, trigger.
CREATE INDEX runs_by_start ON {schema}.runs (started_at DESC, id DESC);
CREATE INDEX runs_by_workflow ON {schema}.runs (workflow_id, workflow_version, started_at DESC, id DESC);
CREATE INDEX runs_by_workflow_any_version ON {schema}.runs (workflow_id, started_at DESC, id DESC);
CREATE INDEX runs_by_status ON {schema}.runs (status, started_at DESC, id DESC);
CREATE INDEX runs_by_trigger ON {schema}.runs (trigger, started_at DESC, id DESC);

CREATE TABLE {schema}.events (
    run_id          text COLLATE "C" NOT NULL REFERENCES {schema}.runs (id) ON DELETE CASCADE,
    seq             bigint NOT NULL CHECK (seq >= 1),
    kind            text NOT NULL,
    at              bigint NOT NULL,
    payload         text NOT NULL,
    idempotency_key text NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE UNIQUE INDEX events_idempotency ON {schema}.events (run_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE {schema}.metrics (
    run_id           text COLLATE "C" PRIMARY KEY,
    workflow_id      text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL CHECK (workflow_version >= 1),
    status           text NOT NULL CHECK (status IN ('succeeded', 'failed', 'cancelled')),
    duration_micros  bigint NOT NULL CHECK (duration_micros >= 0),
    recorded_at      bigint NOT NULL,
    counters         text NOT NULL,
    "values"         text NOT NULL
);
-- list by workflow (and version) in run id order; summaries by workflow/version.
CREATE INDEX metrics_by_workflow ON {schema}.metrics (workflow_id, workflow_version, run_id);
CREATE INDEX metrics_by_version ON {schema}.metrics (workflow_version, run_id);

-- One row per named value of a metric, so summaries aggregate in SQL.
CREATE TABLE {schema}.metric_values (
    run_id           text COLLATE "C" NOT NULL REFERENCES {schema}.metrics (run_id) ON DELETE CASCADE,
    workflow_id      text COLLATE "C" NOT NULL,
    workflow_version integer NOT NULL,
    name             text COLLATE "C" NOT NULL,
    value            double precision NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX metric_values_by_workflow ON {schema}.metric_values (workflow_id, workflow_version, name);

CREATE TABLE {schema}.patterns (
    id          text COLLATE "C" PRIMARY KEY,
    workflow_id text COLLATE "C" NOT NULL,
    kind        text NOT NULL,
    description text NOT NULL,
    data        text NOT NULL,
    confidence  double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    evidence    text NOT NULL,
    detected_at bigint NOT NULL
);
CREATE INDEX patterns_by_detection ON {schema}.patterns (detected_at DESC, id DESC);
CREATE INDEX patterns_by_workflow ON {schema}.patterns (workflow_id, detected_at DESC, id DESC);

-- Artifact bytes: a blob is written in chunks while hashing, then linked to
-- an artifact (or discarded) in one transaction.
CREATE TABLE {schema}.blobs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    staged_at  bigint NOT NULL
);
CREATE TABLE {schema}.blob_chunks (
    blob_id bigint NOT NULL REFERENCES {schema}.blobs (id) ON DELETE CASCADE,
    idx     integer NOT NULL CHECK (idx >= 0),
    data    bytea NOT NULL,
    PRIMARY KEY (blob_id, idx)
);
CREATE TABLE {schema}.artifacts (
    run_id       text COLLATE "C" NOT NULL,
    phase        text COLLATE "C" NOT NULL,
    path         text COLLATE "C" NOT NULL,
    sha256       text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    chunks       integer NOT NULL CHECK (chunks >= 0),
    content_type text NOT NULL,
    created_by   text NOT NULL,
    created_at   bigint NOT NULL,
    blob_id      bigint NOT NULL REFERENCES {schema}.blobs (id),
    PRIMARY KEY (run_id, phase, path)
);
CREATE UNIQUE INDEX artifacts_by_blob ON {schema}.artifacts (blob_id);
