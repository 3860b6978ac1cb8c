-- runstore PostgreSQL schema, version 2: events keep their run id without
-- a foreign key. Every writer of events already holds the run's row (an
-- append locks it; an import writes the run and its events in one
-- transaction), and `delete_run` deletes the events itself after the run
-- row, so the key checked nothing those do not; but it cost a row-by-row
-- trigger on every imported event, about half the time of a bulk import.
ALTER TABLE {schema}.events DROP CONSTRAINT events_run_id_fkey;
