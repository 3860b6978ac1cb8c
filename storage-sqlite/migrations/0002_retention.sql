-- runstore-sqlite schema version 2: selecting runs by end time (retention).
-- Only finished runs have an end time, so the index holds only them.
CREATE INDEX runs_by_end ON runs (ended_at, status) WHERE ended_at IS NOT NULL;
