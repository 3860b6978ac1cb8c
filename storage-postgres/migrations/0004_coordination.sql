-- runstore PostgreSQL schema, version 4: coordination between workers.
-- An external key is unique per workflow; runs without one never collide.
ALTER TABLE {schema}.runs ADD COLUMN external_key text COLLATE "C" NULL;
CREATE UNIQUE INDEX runs_by_external_key ON {schema}.runs (workflow_id, external_key)
    WHERE external_key IS NOT NULL;

-- One row per lease name ever acquired: its last holder and token. A
-- released or expired lease keeps its row, so the next token is greater.
-- Expiry is judged by this server's clock (clock_timestamp()).
CREATE TABLE {schema}.leases (
    name        text COLLATE "C" PRIMARY KEY,
    holder      text NOT NULL,
    token       bigint NOT NULL CHECK (token >= 1),
    acquired_at bigint NOT NULL,
    expires_at  bigint NOT NULL
);

CREATE TABLE {schema}.deliveries (
    id          text COLLATE "C" PRIMARY KEY,
    recorded_at bigint NOT NULL
);
CREATE INDEX deliveries_by_time ON {schema}.deliveries (recorded_at);
