-- runstore PostgreSQL schema, version 3: retention selects finished runs by
-- end time (and outcome); only finished runs have one, so the index holds
-- only them.
CREATE INDEX runs_by_end ON {schema}.runs (ended_at, status) WHERE ended_at IS NOT NULL;
