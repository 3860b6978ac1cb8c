-- runstore-sqlite schema version 3: coordination between workers.
-- An external key is unique per workflow; runs without one never collide.
ALTER TABLE runs ADD COLUMN external_key TEXT;
CREATE UNIQUE INDEX runs_by_external_key ON runs (workflow_id, external_key)
    WHERE external_key IS NOT NULL;

-- One row per lease name ever acquired: its last holder and token. A
-- released or expired lease keeps its row, so the next token is greater.
CREATE TABLE leases (
    name        TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    token       INTEGER NOT NULL CHECK (token >= 1),
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE deliveries (
    id          TEXT    NOT NULL PRIMARY KEY,
    recorded_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deliveries_by_time ON deliveries (recorded_at);
