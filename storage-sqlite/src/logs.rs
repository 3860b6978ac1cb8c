//! [`LogRepository`] on SQLite: runs and their numbered events.

use std::collections::HashMap;

use async_trait::async_trait;
use runstore_core::{
    Appended, BulkOutcome, Delivery, EncodedEvent, EncodedRun, Error, Event, EventCursor,
    EventQuery, JsonMap, Lease, LeaseQuery, LeaseRequest, LogRepository, NewEvent, Page, Result,
    Run, RunCursor, RunFilter, RunId, RunQuery, RunUpdate, RunWithEvents, SmallRuns, StoredEvent,
    Timestamp, WorkflowId, Written, decide_run_create, external_key_conflict, external_key_of,
    key_not_found, run_conflict, run_not_found, validate_external_key, validate_limit,
    validate_small_runs_request,
};
use rusqlite::types::Value;
use rusqlite::{Connection, Statement, params};

use crate::error::Ctx;
use crate::rows;
use crate::select::{Order, Select, query_rows};
use crate::{SqliteStore, changed_one};

const RUN_COLUMNS: &str = "id, workflow_id, workflow_version, status, \"trigger\", started_at, ended_at, attributes, summaries, external_key";
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
    Option<String>,
);
type RawEvent = (String, i64, String, i64, String, Option<String>);

fn convert_run(raw: RawRun) -> Result<Run> {
    let (id, wf, ver, status, trigger, started, ended, attrs, sums, key) = raw;
    let loc = format!("runs row {id}");
    Ok(Run {
        id: rows::parsed(&loc, id, RunId::new)?,
        workflow_id: rows::parsed(&loc, wf, WorkflowId::new)?,
        workflow_version: rows::version(&loc, ver)?,
        status: rows::parsed(&loc, status, |s| s.parse())?,
        trigger,
        started_at: rows::ts(&loc, started)?,
        ended_at: ended.map(|e| rows::ts(&loc, e)).transpose()?,
        attributes: rows::from_json::<JsonMap>(&loc, &attrs)?,
        summaries: rows::from_json::<JsonMap>(&loc, &sums)?,
        external_key: key,
    })
}

/// An events row checked, its payload read in the form `E` keeps it in (a
/// value for [`Event`], the text stored for [`EncodedEvent`]).
fn convert_event<E: StoredEvent>((run_id, seq, kind, at, payload, key): RawEvent) -> Result<E> {
    let loc = format!("events row {run_id} seq {seq}");
    Ok(E::from_parts(
        rows::parsed(&loc, run_id, RunId::new)?,
        rows::unsigned(&loc, seq)?,
        kind,
        rows::ts(&loc, at)?,
        rows::from_json(&loc, &payload)?,
        key,
    ))
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

/// The run holding `run`'s external key, if it has one and a run holds it.
fn load_run_by_key(conn: &Connection, workflow: &WorkflowId, key: &str) -> Result<Option<Run>> {
    Ok(query_rows(
        conn,
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ?1 AND external_key = ?2"),
        [workflow.as_str(), key],
        convert_run,
        "reading a run by external key",
    )?
    .pop())
}

/// Refuses a run whose external key another run of its workflow holds.
fn check_key_free(conn: &Connection, run: &Run) -> Result<()> {
    if let Some((w, k)) = external_key_of(run)
        && let Some(holder) = load_run_by_key(conn, w, k)?
        && holder.id != run.id
    {
        return Err(external_key_conflict(run, &holder.id));
    }
    Ok(())
}

fn run_exists(conn: &Connection, id: &RunId) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
        .and_then(|mut s| s.exists([id.as_str()]))
        .ctx("checking a run")
}

/// A run's attributes and summaries as JSON text, written before the write
/// lock is taken so the lock is held for SQLite work only.
fn run_json(run: &Run) -> Result<[String; 2]> {
    let attributes = rows::to_json("attributes", &run.attributes)?;
    Ok([attributes, rows::to_json("summaries", &run.summaries)?])
}
/// The events of each run of `ids` in sequence order, read with one query
/// in (run, seq) order (the events table's primary key) and made by
/// `convert`.
fn events_of_runs<E>(
    conn: &Connection,
    ids: &[RunId],
    convert: fn(RawEvent) -> Result<E>,
    run_of: fn(&E) -> &RunId,
) -> Result<Vec<Vec<E>>> {
    let what = "reading the events of runs";
    let list = crate::lifecycle::id_list(ids, what)?;
    let events = query_rows(
        conn,
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE run_id IN (SELECT value FROM json_each(?1)) ORDER BY run_id, seq"
        ),
        [list],
        convert,
        what,
    )?;
    Ok(runstore_core::events_by_run(ids, events, run_of))
}

/// A run of an import batch as it is written: its attributes and
/// summaries as JSON text (see [`run_json`]), its payloads as text.
type ImportRow = ([String; 2], EncodedRun);

/// An import batch checked (by `validate`) and encoded, on the blocking
/// pool before the writer is taken.
fn import_rows<R>(
    runs: Vec<R>,
    validate: fn(&[R]) -> Result<()>,
    encode: fn(R) -> Result<EncodedRun>,
) -> Result<Vec<ImportRow>> {
    validate(&runs)?;
    runs.into_iter()
        .map(|r| {
            let r = encode(r)?;
            Ok((run_json(&r.run)?, r))
        })
        .collect()
}

/// The writes of `import_runs`, inside its transaction: each run inserted
/// with its events, or found identical (unchanged), or a conflict.
fn import_in_tx(tx: &Connection, rows: &[ImportRow]) -> Result<BulkOutcome> {
    let mut outcome = BulkOutcome::default();
    let mut insert = tx.prepare_cached(INSERT_EVENT).ctx("inserting an event")?;
    for (run_json, r) in rows {
        check_key_free(tx, &r.run)?;
        // Insert first: a new run (the usual case) costs no lookup.
        if !insert_run_if_new(tx, &r.run, run_json)? {
            let stored = RunWithEvents {
                run: load_run(tx, &r.run.id)?.ok_or_else(|| run_not_found(&r.run.id))?,
                events: load_events(tx, &r.run.id, 0, None)?,
            };
            if !r.same_content(&stored)? {
                return Err(run_conflict(&r.run.id));
            }
            outcome.unchanged += 1;
            continue;
        }
        for e in &r.events {
            let key = e.idempotency_key.as_deref();
            let payload = e.payload.as_str();
            insert_event(&mut insert, &e.run_id, e.seq, &e.kind, e.at, payload, key)?;
        }
        outcome.inserted += 1;
    }
    Ok(outcome)
}

/// Inserts a run unless one with its id is stored (then nothing changes);
/// `true` if it was inserted. Only the id conflict is ignored: any other
/// constraint still fails.
fn insert_run_if_new(conn: &Connection, run: &Run, json: &[String; 2]) -> Result<bool> {
    let [attributes, summaries] = json;
    changed_one(
        conn,
        "INSERT INTO runs (id, workflow_id, workflow_version, status, \"trigger\", started_at, ended_at, attributes, summaries, external_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
        params![
            run.id.as_str(),
            run.workflow_id.as_str(),
            run.workflow_version.get(),
            run.status.as_str(),
            run.trigger,
            run.started_at.as_micros(),
            run.ended_at.map(|t| t.as_micros()),
            attributes,
            summaries,
            run.external_key
        ],
        "inserting a run",
    )
}

const INSERT_EVENT: &str = "INSERT INTO events (run_id, seq, kind, at, payload, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Inserts one event row with its payload already JSON text.
fn insert_event(
    stmt: &mut Statement<'_>,
    run_id: &RunId,
    seq: u64,
    kind: &str,
    at: Timestamp,
    payload: &str,
    key: Option<&str>,
) -> Result<()> {
    stmt.execute(params![
        run_id.as_str(),
        rows::signed("seq", seq)?,
        kind,
        at.as_micros(),
        payload,
        key
    ])
    .ctx("inserting an event")?;
    Ok(())
}

/// Events to append with their payloads as JSON text (written before the
/// write lock is taken).
fn encode_events(events: Vec<NewEvent>) -> Result<Vec<(NewEvent, String)>> {
    events
        .into_iter()
        .map(|e| {
            e.validate()?;
            let payload = rows::to_json("payload", &e.payload)?;
            Ok((e, payload))
        })
        .collect()
}

/// The stored numbers of those of `keys` the run already has.
fn stored_keys(conn: &Connection, run_id: &RunId, keys: &[&str]) -> Result<HashMap<String, u64>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // One query for the whole batch: the keys travel as one JSON array
    // parameter, so any number of them fits.
    let keys = rows::to_json("idempotency_key", keys)?;
    let found: Vec<(String, u64)> = query_rows(
        conn,
        "SELECT idempotency_key, seq FROM events
         WHERE run_id = ?1 AND idempotency_key IN (SELECT value FROM json_each(?2))",
        params![run_id.as_str(), keys],
        |(key, seq): (String, i64)| Ok((key, rows::unsigned("events", seq)?)),
        "looking up idempotency keys",
    )?;
    Ok(found.into_iter().collect())
}

/// Appends events inside the caller's write transaction, in order: a known
/// key (stored, or earlier in the batch) gets its original number back and
/// stores nothing; the others are numbered on from the highest stored.
fn append_in_tx(
    conn: &Connection,
    run_id: &RunId,
    events: Vec<(NewEvent, String)>,
) -> Result<Vec<Appended>> {
    let keys: Vec<&str> = events
        .iter()
        .filter_map(|(e, _)| e.idempotency_key.as_deref())
        .collect();
    let mut known = stored_keys(conn, run_id, &keys)?;
    let last: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?1")
        .and_then(|mut s| s.query_row([run_id.as_str()], |r| r.get(0)))
        .ctx("numbering an event")?;
    let mut seq = rows::unsigned("events", last)?;
    let mut insert = conn
        .prepare_cached(INSERT_EVENT)
        .ctx("inserting an event")?;
    let mut out = Vec::with_capacity(events.len());
    for (e, payload) in events {
        if let Some(&first) = e.idempotency_key.as_ref().and_then(|k| known.get(k)) {
            out.push(Appended {
                seq: first,
                duplicate: true,
                deferred: false,
            });
            continue;
        }
        seq += 1;
        let key = e.idempotency_key.as_deref();
        insert_event(&mut insert, run_id, seq, &e.kind, e.at, &payload, key)?;
        if let Some(key) = e.idempotency_key {
            known.insert(key, seq);
        }
        out.push(Appended {
            seq,
            duplicate: false,
            deferred: false,
        });
    }
    Ok(out)
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
        .rows(conn, convert_event::<Event>, "listing events")
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
    // `ended_at` is NULL for unfinished runs, so a bound never selects them.
    if let Some(t) = filter.ended_from {
        select.and("ended_at", ">=", micros(t));
    }
    if let Some(t) = filter.ended_before {
        select.and("ended_at", "<", micros(t));
    }
    select
}

#[async_trait]
impl LogRepository for SqliteStore {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        let json = run_json(&run)?;
        self.write_tx("creating a run", move |tx| {
            let by_id = load_run(tx, &run.id)?;
            let by_key = match external_key_of(&run) {
                Some((w, k)) if by_id.is_none() => load_run_by_key(tx, w, k)?,
                _ => None,
            };
            let written = decide_run_create(run, by_id.as_ref(), by_key.as_ref())?;
            if written.inserted {
                insert_run_if_new(tx, &written.record, &json)?;
            }
            Ok(written)
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
        let mut appended = self.append_events(run_id, vec![event]).await?;
        appended
            .pop()
            .ok_or_else(|| Error::backend("appending an event stored nothing", None))
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        let events = encode_events(events)?;
        let run_id = run_id.clone();
        self.write_tx("appending events", move |tx| {
            if !run_exists(tx, &run_id)? {
                return Err(run_not_found(&run_id));
            }
            append_in_tx(tx, &run_id, events)
        })
        .await
    }

    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        let limit = validate_limit(query.limit)?;
        query.validate()?;
        let after: Option<EventCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let after = after
            .map(|c| rows::signed("cursor", c.seq).map(Value::Integer))
            .transpose()?;
        let run_id = run_id.clone();
        let items = self
            .read_tx("listing events", move |tx| {
                if !run_exists(tx, &run_id)? {
                    return Err(run_not_found(&run_id));
                }
                let mut select = Select::from(EVENT_COLUMNS, "events");
                select.and("run_id", "=", Value::Text(run_id.as_str().into()));
                if let Some(kind) = &query.kind {
                    select.and("kind", "=", Value::Text(kind.clone()));
                }
                let order = if query.descending {
                    Order::Desc
                } else {
                    Order::Asc
                };
                select
                    .page(order, &["seq"], after.map(|a| vec![a]), Some(limit + 1))
                    .rows(tx, convert_event::<Event>, "listing events")
            })
            .await?;
        Ok(Page::from_overfetch(items, limit, |e| EventCursor {
            seq: e.seq,
        }))
    }

    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        query.filter.validate()?;
        let limit = validate_limit(query.limit)?;
        // The last run returned: the page goes on past it, in either order.
        let after: Option<RunCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let cursor = after.map(|c| {
            vec![
                Value::Integer(c.started_at.as_micros()),
                Value::Text(c.id.into_string()),
            ]
        });
        let order = if query.ascending {
            Order::Asc
        } else {
            Order::Desc
        };
        let select = select_runs(RUN_COLUMNS, &query.filter).page(
            order,
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
        let ids = vec![id.clone()];
        let deleted = self
            .write_tx_unchecked("deleting a run", move |tx| {
                crate::lifecycle::delete_runs(tx, &ids)
            })
            .await?;
        if deleted.deleted.is_empty() {
            return Err(run_not_found(id));
        }
        Ok(())
    }

    async fn begin_bulk_load(&self, options: runstore_core::BulkLoadOptions) -> Result<()> {
        self.begin_load_of(runstore_core::BulkLoadOf::Logs, options)
            .await
    }

    async fn end_bulk_load(&self) -> Result<()> {
        self.end_load_of(runstore_core::BulkLoadOf::Logs).await
    }

    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        self.write_tx_over_unchecked(
            "importing runs",
            runs,
            |runs| import_rows(runs, RunWithEvents::validate_batch, EncodedRun::from_run),
            // One transaction: an error anywhere rolls the whole batch back.
            // Each run's events are inserted right after the run itself (and
            // only then), so the parent check of every event is left out.
            |tx, rows| import_in_tx(tx, rows),
        )
        .await
    }

    // Payloads are stored as the text they come in: none is built as a
    // value or serialised again.
    async fn import_runs_encoded(&self, runs: Vec<EncodedRun>) -> Result<BulkOutcome> {
        self.write_tx_over_unchecked(
            "importing runs",
            runs,
            |runs| import_rows(runs, EncodedRun::validate_batch, Ok),
            |tx, rows| import_in_tx(tx, rows),
        )
        .await
    }

    async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        crate::lifecycle::check_batch(ids)?;
        let ids = ids.to_vec();
        self.write_tx_unchecked("deleting runs", move |tx| {
            crate::lifecycle::delete_runs(tx, &ids)
        })
        .await
    }

    async fn event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        crate::lifecycle::check_batch(ids)?;
        let ids = ids.to_vec();
        self.read(move |conn| crate::lifecycle::event_counts(conn, &ids))
            .await
    }

    async fn events_of_runs(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        crate::lifecycle::check_batch(ids)?;
        let ids = ids.to_vec();
        self.read(move |conn| events_of_runs(conn, &ids, convert_event::<Event>, |e| &e.run_id))
            .await
    }

    // One trip to the reader: the counts, then the small runs' events,
    // their payloads handed over as the text stored.
    async fn events_of_small_runs_encoded(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<EncodedEvent>>>> {
        validate_small_runs_request(ids, max_events)?;
        let ids = ids.to_vec();
        self.read(move |conn| {
            let small = SmallRuns::new(crate::lifecycle::event_counts(conn, &ids)?, max_events);
            let read = small.to_read(&ids);
            let events = events_of_runs(conn, &read, convert_event::<EncodedEvent>, |e| &e.run_id)?;
            Ok(small.answer(events))
        })
        .await
    }

    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        validate_external_key(key)?;
        let (workflow, key) = (workflow.clone(), key.to_owned());
        self.read(move |conn| {
            load_run_by_key(conn, &workflow, &key)?.ok_or_else(|| key_not_found(&workflow, &key))
        })
        .await
    }

    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        crate::coordination::acquire_lease(self, request).await
    }

    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        crate::coordination::release_lease(self, name, token).await
    }

    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        crate::coordination::list_leases(self, query).await
    }

    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        crate::coordination::record_delivery(self, id).await
    }

    async fn prune_deliveries(&self, recorded_before: Timestamp) -> Result<u64> {
        crate::coordination::prune_deliveries(self, recorded_before).await
    }
}
