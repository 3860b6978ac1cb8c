//! [`LogRepository`] on SQLite: runs and their numbered events.

use std::collections::HashSet;

use async_trait::async_trait;
use runstore_core::{
    Appended, BulkOutcome, Error, Event, EventCursor, EventQuery, JsonMap, LogRepository, NewEvent,
    Page, Result, Run, RunCursor, RunFilter, RunId, RunQuery, RunUpdate, RunWithEvents, Timestamp,
    Written, validate_limit,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use crate::SqliteStore;
use crate::error::Ctx;
use crate::rows;
use crate::select::{Order, Select, query_rows};

const RUN_COLUMNS: &str = "id, workflow_id, workflow_version, status, \"trigger\", started_at, ended_at, attributes, summaries";
const EVENT_COLUMNS: &str = "run_id, seq, kind, at, payload, idempotency_key";

type RawRun = (
    String,
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
);
type RawEvent = (String, i64, String, i64, String, Option<String>);

fn convert_run(raw: RawRun) -> Result<Run> {
    let (id, wf, ver, status, trigger, started, ended, attrs, sums) = raw;
    let loc = format!("runs row {id}");
    Ok(Run {
        id: rows::parsed(&loc, id, RunId::new)?,
        workflow_id: rows::parsed(&loc, wf, runstore_core::WorkflowId::new)?,
        workflow_version: rows::version(&loc, ver)?,
        status: rows::parsed(&loc, status, |s| s.parse())?,
        trigger,
        started_at: rows::ts(&loc, started)?,
        ended_at: ended.map(|e| rows::ts(&loc, e)).transpose()?,
        attributes: rows::from_json::<JsonMap>(&loc, &attrs)?,
        summaries: rows::from_json::<JsonMap>(&loc, &sums)?,
    })
}

fn convert_event((run_id, seq, kind, at, payload, key): RawEvent) -> Result<Event> {
    let loc = format!("events row {run_id} seq {seq}");
    Ok(Event {
        run_id: rows::parsed(&loc, run_id, RunId::new)?,
        seq: rows::unsigned(&loc, seq)?,
        kind,
        at: rows::ts(&loc, at)?,
        payload: rows::from_json(&loc, &payload)?,
        idempotency_key: key,
    })
}

fn run_not_found(id: &RunId) -> Error {
    Error::not_found(format!("run {id}"))
}

fn run_conflict(id: &RunId) -> Error {
    Error::conflict(format!("run {id} is already stored with other content"))
}

fn load_run(conn: &Connection, id: &RunId) -> Result<Option<Run>> {
    // A key lookup: one row at most.
    Ok(query_rows(
        conn,
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
        [id.as_str()],
        convert_run,
        "reading a run",
    )?
    .pop())
}

fn run_exists(conn: &Connection, id: &RunId) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
        .and_then(|mut s| s.exists([id.as_str()]))
        .ctx("checking a run")
}

fn insert_run(conn: &Connection, run: &Run) -> Result<()> {
    let attrs = rows::to_json("attributes", &run.attributes)?;
    let sums = rows::to_json("summaries", &run.summaries)?;
    conn.prepare_cached(
        "INSERT INTO runs (id, workflow_id, workflow_version, status, \"trigger\", started_at, ended_at, attributes, summaries)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            run.id.as_str(),
            run.workflow_id.as_str(),
            run.workflow_version.get(),
            run.status.as_str(),
            run.trigger,
            run.started_at.as_micros(),
            run.ended_at.map(|t| t.as_micros()),
            attrs,
            sums
        ])
    })
    .ctx("inserting a run")?;
    Ok(())
}

fn insert_event(conn: &Connection, e: &Event) -> Result<()> {
    let payload = rows::to_json("payload", &e.payload)?;
    let seq = rows::signed("seq", e.seq)?;
    conn.prepare_cached(
        "INSERT INTO events (run_id, seq, kind, at, payload, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.run_id.as_str(),
            seq,
            e.kind,
            e.at.as_micros(),
            payload,
            e.idempotency_key
        ])
    })
    .ctx("inserting an event")?;
    Ok(())
}

/// Appends one event inside the caller's write transaction: the original
/// number for a known key, else the next number after the highest stored.
fn append_in_tx(conn: &Connection, run_id: &RunId, event: NewEvent) -> Result<Appended> {
    if let Some(key) = &event.idempotency_key {
        let seq: Option<i64> = conn
            .prepare_cached("SELECT seq FROM events WHERE run_id = ?1 AND idempotency_key = ?2")
            .and_then(|mut s| {
                s.query_row(params![run_id.as_str(), key], |r| r.get(0))
                    .optional()
            })
            .ctx("looking up an idempotency key")?;
        if let Some(seq) = seq {
            return Ok(Appended {
                seq: rows::unsigned("events", seq)?,
                duplicate: true,
            });
        }
    }
    let last: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?1")
        .and_then(|mut s| s.query_row([run_id.as_str()], |r| r.get(0)))
        .ctx("numbering an event")?;
    let seq = rows::unsigned("events", last)? + 1;
    insert_event(conn, &event.into_event(run_id.clone(), seq))?;
    Ok(Appended {
        seq,
        duplicate: false,
    })
}

fn load_events(
    conn: &Connection,
    run_id: &RunId,
    after: u64,
    limit: Option<usize>,
) -> Result<Vec<Event>> {
    let mut select = Select::from(EVENT_COLUMNS, "events");
    select.and("run_id", "=", Value::Text(run_id.as_str().into()));
    let after = Value::Integer(rows::signed("cursor", after)?);
    select
        .page(Order::Asc, &["seq"], Some(vec![after]), limit)
        .rows(conn, convert_event, "listing events")
}

/// The runs matching a filter, selecting `columns`.
fn select_runs(columns: &str, filter: &RunFilter) -> Select {
    let text = |t: &str| Value::Text(t.into());
    let micros = |t: Timestamp| Value::Integer(t.as_micros());
    let mut select = Select::from(columns, "runs");
    select
        .and_eq_opt(
            "workflow_id",
            filter.workflow_id.as_ref().map(|w| text(w.as_str())),
        )
        .and_eq_opt(
            "workflow_version",
            filter
                .workflow_version
                .map(|v| Value::Integer(i64::from(v.get()))),
        )
        .and_in(
            "status",
            filter.statuses.iter().map(|s| text(s.as_str())).collect(),
        );
    if let Some(t) = filter.started_from {
        select.and("started_at", ">=", micros(t));
    }
    if let Some(t) = filter.started_before {
        select.and("started_at", "<", micros(t));
    }
    select.and_eq_opt("\"trigger\"", filter.trigger.as_deref().map(text));
    select
}

#[async_trait]
impl LogRepository for SqliteStore {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        self.write_tx("creating a run", move |tx| {
            if let Some(stored) = load_run(tx, &run.id)? {
                if stored.same_content(&run) {
                    return Ok(Written::unchanged(stored));
                }
                return Err(run_conflict(&run.id));
            }
            insert_run(tx, &run)?;
            Ok(Written::inserted(run))
        })
        .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Run> {
        let id = id.clone();
        self.read(move |conn| load_run(conn, &id)?.ok_or_else(|| run_not_found(&id)))
            .await
    }

    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        update.validate()?;
        let id = id.clone();
        self.write_tx("updating a run's status", move |tx| {
            let stored = load_run(tx, &id)?.ok_or_else(|| run_not_found(&id))?;
            let (next, changed) = stored.apply_update(&update)?;
            if changed {
                let sums = rows::to_json("summaries", &next.summaries)?;
                tx.prepare_cached(
                    "UPDATE runs SET status = ?2, ended_at = ?3, summaries = ?4 WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id.as_str(),
                        next.status.as_str(),
                        next.ended_at.map(|t| t.as_micros()),
                        sums
                    ])
                })
                .ctx("updating a run's status")?;
            }
            Ok(next)
        })
        .await
    }

    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        event.validate()?;
        let run_id = run_id.clone();
        self.write_tx("appending an event", move |tx| {
            if !run_exists(tx, &run_id)? {
                return Err(run_not_found(&run_id));
            }
            append_in_tx(tx, &run_id, event)
        })
        .await
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        events.iter().try_for_each(NewEvent::validate)?;
        let run_id = run_id.clone();
        self.write_tx("appending events", move |tx| {
            if !run_exists(tx, &run_id)? {
                return Err(run_not_found(&run_id));
            }
            events
                .into_iter()
                .map(|e| append_in_tx(tx, &run_id, e))
                .collect()
        })
        .await
    }

    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<EventCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let after = after.map_or(0, |c| c.seq);
        rows::signed("cursor", after)?;
        let run_id = run_id.clone();
        let items = self
            .read_tx("listing events", move |tx| {
                if !run_exists(tx, &run_id)? {
                    return Err(run_not_found(&run_id));
                }
                load_events(tx, &run_id, after, Some(limit + 1))
            })
            .await?;
        Ok(Page::from_overfetch(items, limit, |e| EventCursor {
            seq: e.seq,
        }))
    }

    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        query.filter.validate()?;
        let limit = validate_limit(query.limit)?;
        let before: Option<RunCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let cursor = before.map(|c| {
            vec![
                Value::Integer(c.started_at.as_micros()),
                Value::Text(c.id.into_string()),
            ]
        });
        let select = select_runs(RUN_COLUMNS, &query.filter).page(
            Order::Desc,
            &["started_at", "id"],
            cursor,
            Some(limit + 1),
        );
        let items = self
            .read(move |conn| select.rows(conn, convert_run, "querying runs"))
            .await?;
        Ok(Page::from_overfetch(items, limit, RunCursor::of))
    }

    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        filter.validate()?;
        let select = select_runs("count(*)", &filter);
        let n: i64 = self
            .read(move |conn| select.value(conn, "counting runs"))
            .await?;
        rows::unsigned("runs", n)
    }

    async fn delete_run(&self, id: &RunId) -> Result<()> {
        let id = id.clone();
        self.write_tx("deleting a run", move |tx| {
            // Events go with it (ON DELETE CASCADE).
            let n = tx
                .prepare_cached("DELETE FROM runs WHERE id = ?1")
                .and_then(|mut s| s.execute([id.as_str()]))
                .ctx("deleting a run")?;
            if n == 0 {
                return Err(run_not_found(&id));
            }
            Ok(())
        })
        .await
    }

    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        let mut ids = HashSet::new();
        for r in &runs {
            r.validate()?;
            if !ids.insert(r.run.id.clone()) {
                return Err(Error::invalid(
                    "runs",
                    format!("run {} appears twice in one import batch", r.run.id),
                ));
            }
        }
        // One transaction: an error anywhere rolls the whole batch back.
        self.write_tx("importing runs", move |tx| {
            let mut outcome = BulkOutcome::default();
            for r in &runs {
                if let Some(stored) = load_run(tx, &r.run.id)? {
                    let events = load_events(tx, &r.run.id, 0, None)?;
                    let stored = RunWithEvents {
                        run: stored,
                        events,
                    };
                    if !stored.same_content(r) {
                        return Err(run_conflict(&r.run.id));
                    }
                    outcome.unchanged += 1;
                    continue;
                }
                insert_run(tx, &r.run)?;
                for e in &r.events {
                    insert_event(tx, e)?;
                }
                outcome.inserted += 1;
            }
            Ok(outcome)
        })
        .await
    }
}
