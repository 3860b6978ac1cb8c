-- runstore-sqlite schema version 1.
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC); JSON is
-- TEXT written by serde_json; text ids compare bytewise (BINARY collation).

CREATE TABLE workflows (
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    parent       INTEGER,
    description  TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    content_hash TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (id, version),
    FOREIGN KEY (id, parent) REFERENCES workflows (id, version)
) WITHOUT ROWID;

CREATE TABLE runs (
    id               TEXT    NOT NULL PRIMARY KEY,
    workflow_id      TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    "trigger"        TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    attributes       TEXT    NOT NULL,
    summaries        TEXT    NOT NULL
);
-- Newest first, then id descending: the order of every run query.
CREATE INDEX runs_by_start ON runs (started_at DESC, id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow_id, started_at DESC, id DESC);
CREATE INDEX runs_by_version ON runs (workflow_id, workflow_version, started_at DESC, id DESC);
CREATE INDEX runs_by_status ON runs (status, started_at DESC, id DESC);

CREATE TABLE events (
    run_id          TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    kind            TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    idempotency_key TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_by_key ON events (run_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE metrics (
    run_id           TEXT    NOT NULL PRIMARY KEY,
    workflow_id      TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('succeeded', 'failed', 'cancelled')),
    duration_micros  INTEGER NOT NULL CHECK (duration_micros >= 0),
    recorded_at      INTEGER NOT NULL,
    counters         TEXT    NOT NULL,
    "values"         TEXT    NOT NULL
);
-- Covering indexes for summaries: counts, times and percentiles (ORDER BY
-- duration LIMIT 1 OFFSET rank-1) read only the index.
CREATE INDEX metrics_by_version ON metrics
    (workflow_id, workflow_version, duration_micros, status, recorded_at);
CREATE INDEX metrics_by_workflow ON metrics
    (workflow_id, duration_micros, status, recorded_at);

-- Named values again, one row each, so per-name statistics are computed in
-- SQL on exact binary doubles.
CREATE TABLE metric_values (
    run_id           TEXT    NOT NULL REFERENCES metrics (run_id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    workflow_id      TEXT    NOT NULL,
    workflow_version INTEGER NOT NULL,
    value            REAL    NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE INDEX metric_values_by_version ON metric_values
    (workflow_id, workflow_version, name, value);

CREATE TABLE patterns (
    id          TEXT    NOT NULL PRIMARY KEY,
    workflow_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    confidence  REAL    NOT NULL,
    evidence    TEXT    NOT NULL,
    detected_at INTEGER NOT NULL
);
CREATE INDEX patterns_by_time ON patterns (detected_at DESC, id DESC);
CREATE INDEX patterns_by_workflow ON patterns (workflow_id, detected_at DESC, id DESC);

-- Artifact bytes live in chunks of one blob. A blob is staged (complete = 0)
-- while its bytes stream in, then linked to an artifact in one transaction.
CREATE TABLE artifact_blobs (
    id        INTEGER PRIMARY KEY,
    staged_at INTEGER NOT NULL,
    complete  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX artifact_blobs_staged ON artifact_blobs (complete, staged_at);

CREATE TABLE artifact_chunks (
    blob_id INTEGER NOT NULL REFERENCES artifact_blobs (id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    data    BLOB    NOT NULL,
    PRIMARY KEY (blob_id, idx)
);

CREATE TABLE artifacts (
    run_id       TEXT    NOT NULL,
    phase        TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    blob_id      INTEGER NOT NULL UNIQUE REFERENCES artifact_blobs (id),
    PRIMARY KEY (run_id, phase, path)
) WITHOUT ROWID;
