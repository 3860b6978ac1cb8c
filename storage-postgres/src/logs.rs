//! [`LogRepository`] on PostgreSQL: runs, events numbered under the run's
//! row lock, keyset paging, and bulk import through binary `COPY`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use futures_util::pin_mut;
use runstore_core::{
    Appended, BulkOutcome, Delivery, EncodedEvent, EncodedRun, Error, ErrorKind, Event,
    EventCursor, EventQuery, Lease, LeaseQuery, LeaseRequest, LogRepository, NewEvent, Page,
    Result, Run, RunCursor, RunFilter, RunId, RunQuery, RunStatus, RunUpdate, RunWithEvents,
    SmallRuns, StoredEvent, Timestamp, WorkflowId, Written, decide_run_create,
    external_key_conflict, external_key_of, key_not_found, validate_external_key, validate_limit,
    validate_small_runs_request,
};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::PostgresStore;
use crate::client::{Careful, copy_writer, with_tx};
use crate::error::Fail;
use crate::filter::{Where, overfetch_limit};
use crate::rows::{from_json, i64_of, json_text, stored, ts, v32, version};

/// Runs imported since the last `ANALYZE` below which statistics are not
/// looked at: small tables plan well enough without, and small imports
/// leave them to autovacuum.
const ANALYZE_MIN_ROWS: u64 = 10_000;
/// The share of the table's rows (as of its last `ANALYZE`) that imports
/// must have added before this store analyzes it again; with it, a bulk
/// load analyzes a number of times logarithmic in its size.
const ANALYZE_SHARE: f64 = 0.25;

pub(crate) const RUN_COLUMNS: &str = "id, workflow_id, workflow_version, status, trigger, started_at, ended_at, attributes, summaries, external_key";
const EVENT_COLUMNS: &str = "run_id, seq, kind, at, payload, idempotency_key";

pub(crate) fn run_of(row: &Row) -> Result<Run> {
    let id: String = row.get(0);
    let loc = || format!("runs {id}");
    let status: String = row.get(3);
    let ended: Option<i64> = row.get(6);
    Ok(Run {
        id: stored(RunId::new(id.clone()), loc)?,
        workflow_id: stored(WorkflowId::new(row.get::<_, String>(1)), loc)?,
        workflow_version: version(loc, row.get(2))?,
        status: stored(status.parse::<RunStatus>(), loc)?,
        trigger: row.get(4),
        started_at: ts(loc, row.get(5))?,
        ended_at: ended.map(|e| ts(loc, e)).transpose()?,
        attributes: from_json(loc, row.get::<_, &str>(7))?,
        summaries: from_json(loc, row.get::<_, &str>(8))?,
        external_key: row.get(9),
    })
}

/// An events row ([`EVENT_COLUMNS`]) checked, its payload read in the form
/// `E` keeps it in (a value for [`Event`], the text stored for
/// [`EncodedEvent`]).
fn event_of<E: StoredEvent>(row: &Row) -> Result<E> {
    let run_id: String = row.get(0);
    let seq: i64 = row.get(1);
    let loc = || format!("events ({run_id}, {seq})");
    Ok(E::from_parts(
        stored(RunId::new(run_id.clone()), loc)?,
        stored(
            u64::try_from(seq).map_err(|_| Error::invalid("seq", "negative")),
            loc,
        )?,
        row.get(2),
        ts(loc, row.get(3))?,
        from_json(loc, row.get::<_, &str>(4))?,
        row.get(5),
    ))
}

fn run_not_found(id: &RunId) -> Fail {
    Fail::Core(runstore_core::run_not_found(id))
}

fn run_conflict(id: &RunId) -> Fail {
    Fail::Core(runstore_core::run_conflict(id))
}

/// A run's record as stored (the columns of [`RUN_COLUMNS`]), its JSON
/// maps as text.
struct RunRow<'a> {
    id: &'a str,
    workflow_id: &'a str,
    version: i32,
    status: &'static str,
    trigger: &'a str,
    started_at: i64,
    ended_at: Option<i64>,
    attributes: String,
    summaries: String,
    external_key: Option<&'a str>,
}

impl<'a> RunRow<'a> {
    fn of(run: &'a Run) -> Result<Self> {
        Ok(RunRow {
            id: run.id.as_str(),
            workflow_id: run.workflow_id.as_str(),
            version: v32(run.workflow_version),
            status: run.status.as_str(),
            trigger: &run.trigger,
            started_at: run.started_at.as_micros(),
            ended_at: run.ended_at.map(|t| t.as_micros()),
            attributes: json_text("attributes", &run.attributes)?,
            summaries: json_text("summaries", &run.summaries)?,
            external_key: run.external_key.as_deref(),
        })
    }

    /// The values of [`RUN_COLUMNS`], in order.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.workflow_id,
            &self.version,
            &self.status,
            &self.trigger,
            &self.started_at,
            &self.ended_at,
            &self.attributes,
            &self.summaries,
            &self.external_key,
        ]
    }
}

/// The conditions of a run filter.
fn filter_where(filter: &RunFilter) -> Where {
    let mut w = Where::default();
    if let Some(id) = &filter.workflow_id {
        w.and1("workflow_id = ?", Box::new(id.as_str().to_string()));
    }
    if let Some(v) = filter.workflow_version {
        w.and1("workflow_version = ?", Box::new(v32(v)));
    }
    if !filter.statuses.is_empty() {
        let statuses: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        w.and1("status = ANY(?)", Box::new(statuses));
    }
    if let Some(t) = filter.started_from {
        w.and1("started_at >= ?", Box::new(t.as_micros()));
    }
    if let Some(t) = filter.started_before {
        w.and1("started_at < ?", Box::new(t.as_micros()));
    }
    // `ended_at` is NULL for unfinished runs, so a bound never selects them.
    if let Some(t) = filter.ended_from {
        w.and1("ended_at >= ?", Box::new(t.as_micros()));
    }
    if let Some(t) = filter.ended_before {
        w.and1("ended_at < ?", Box::new(t.as_micros()));
    }
    if let Some(t) = &filter.trigger {
        w.and1("trigger = ?", Box::new(t.clone()));
    }
    w
}

impl PostgresStore {
    /// The events of each run of `ids` (a checked batch) in sequence order,
    /// with one query, each row made by `convert`.
    async fn events_of<E>(
        &self,
        ids: &[RunId],
        convert: fn(&Row) -> Result<E>,
        run_of: fn(&E) -> &RunId,
    ) -> Result<Vec<Vec<E>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = ids.iter().map(RunId::as_str).collect();
        let rows = self
            .query_all(
                "reading the events of runs",
                // One index range per id (as `event_counts`): `= ANY` can
                // plan as a scan of every event when statistics are stale.
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM unnest($1::text[]) WITH ORDINALITY AS r(id, n) \
                     CROSS JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM {{s}}.events e \
                     WHERE e.run_id = r.id COLLATE \"C\") ev ORDER BY r.n, ev.seq"
                ),
                &[&keys],
            )
            .await?;
        let events = rows.iter().map(convert).collect::<Result<Vec<_>>>()?;
        Ok(runstore_core::events_by_run(ids, events, run_of))
    }

    /// Appends events in one transaction under the run's row lock, so
    /// concurrent appenders (tasks or processes) number without gaps and
    /// see each other's idempotency keys.
    async fn append_locked(
        &self,
        what: &str,
        run_id: &RunId,
        events: &[NewEvent],
    ) -> Result<Vec<Appended>> {
        with_tx!(self, what, |tx| {
            self.append_in(&tx, run_id, events).await
        })
    }

    /// One attempt of [`PostgresStore::append_locked`] in `tx`.
    async fn append_in(
        &self,
        tx: &Transaction<'_>,
        run_id: &RunId,
        events: &[NewEvent],
    ) -> std::result::Result<Vec<Appended>, Fail> {
        let lock = tx
            .prepare_cached(&self.sql("SELECT event_count FROM {s}.runs WHERE id = $1 FOR UPDATE"))
            .await?;
        let Some(row) = tx.query_opt(&lock, &[&run_id.as_str()]).await? else {
            return Err(run_not_found(run_id));
        };
        let mut count: i64 = row.get(0);
        let keys: Vec<&str> = events
            .iter()
            .filter_map(|e| e.idempotency_key.as_deref())
            .collect();
        let mut seen: HashMap<String, i64> = HashMap::new();
        if !keys.is_empty() {
            let st = tx
                .prepare_cached(&self.sql(
                    "SELECT idempotency_key, seq FROM {s}.events
                     WHERE run_id = $1 AND idempotency_key = ANY($2)",
                ))
                .await?;
            for r in tx.query(&st, &[&run_id.as_str(), &keys]).await? {
                seen.insert(r.get(0), r.get(1));
            }
        }
        let mut out = Vec::with_capacity(events.len());
        let (mut seqs, mut kinds, mut ats, mut payloads, mut ikeys) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in events {
            if let Some(k) = &e.idempotency_key
                && let Some(&seq) = seen.get(k)
            {
                out.push(Appended {
                    seq: seq as u64,
                    duplicate: true,
                    deferred: false,
                });
                continue;
            }
            count += 1;
            if let Some(k) = &e.idempotency_key {
                seen.insert(k.clone(), count);
            }
            seqs.push(count);
            kinds.push(e.kind.as_str());
            ats.push(e.at.as_micros());
            payloads.push(json_text("payload", &e.payload)?);
            ikeys.push(e.idempotency_key.as_deref());
            out.push(Appended {
                seq: count as u64,
                duplicate: false,
                deferred: false,
            });
        }
        if !seqs.is_empty() {
            let insert = tx
                .prepare_cached(&self.sql(
                    "INSERT INTO {s}.events (run_id, seq, kind, at, payload, idempotency_key)
                     SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[])",
                ))
                .await?;
            tx.execute(
                &insert,
                &[&run_id.as_str(), &seqs, &kinds, &ats, &payloads, &ikeys],
            )
            .await?;
            let bump = tx
                .prepare_cached(&self.sql("UPDATE {s}.runs SET event_count = $2 WHERE id = $1"))
                .await?;
            tx.execute(&bump, &[&run_id.as_str(), &count]).await?;
        }
        Ok(out)
    }

    /// An import of a batch already checked (`validate_batch`), in one
    /// transaction, retried as [`Careful`] says.
    async fn import_checked(&self, runs: Vec<EncodedRun>) -> Result<BulkOutcome> {
        if runs.is_empty() {
            return Ok(BulkOutcome::default());
        }
        let what = format!("importing {} runs", runs.len());
        let careful = Careful::new(&self.inner.import_hint);
        let out = with_tx!(self, &what, |tx| {
            careful
                .attempt(|check| self.import_in(&tx, &runs, check))
                .await
        })?;
        careful.settle(out.unchanged > 0);
        if out.inserted > 0 {
            self.refresh_run_stats(out.inserted);
        }
        Ok(out)
    }

    /// One attempt of an import, in `tx`: stream the runs not stored yet
    /// and their events with binary `COPY` straight into the tables.
    ///
    /// Optimistic first (see [`Careful`]): the batch is copied without
    /// looking for stored runs, and a run already there makes the `COPY` a
    /// unique violation. Then (`check`) every later attempt locks and
    /// compares the runs already stored first and copies only the others;
    /// a racing importer of the same run is again a unique violation, and
    /// the retry compares against its run.
    async fn import_in(
        &self,
        tx: &Transaction<'_>,
        batch: &[EncodedRun],
        check: bool,
    ) -> std::result::Result<BulkOutcome, Fail> {
        let mut existing: HashMap<RunId, RunWithEvents> = HashMap::new();
        let stored = if check {
            let ids: Vec<&str> = batch.iter().map(|r| r.run.id.as_str()).collect();
            let lock = tx
                .prepare_cached(&self.sql(&format!(
                    "SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE id = ANY($1) ORDER BY id FOR UPDATE"
                )))
                .await?;
            tx.query(&lock, &[&ids]).await?
        } else {
            Vec::new()
        };
        for row in &stored {
            let run = run_of(row)?;
            existing.insert(
                run.id.clone(),
                RunWithEvents {
                    run,
                    events: Vec::new(),
                },
            );
        }
        if !existing.is_empty() {
            let existing_ids: Vec<&str> = existing.keys().map(RunId::as_str).collect();
            let st = tx
                .prepare_cached(&self.sql(&format!(
                    "SELECT {EVENT_COLUMNS} FROM {{s}}.events WHERE run_id = ANY($1) ORDER BY run_id, seq"
                )))
                .await?;
            for row in &tx.query(&st, &[&existing_ids]).await? {
                let e: Event = event_of(row)?;
                if let Some(r) = existing.get_mut(&e.run_id) {
                    r.events.push(e);
                }
            }
            for r in batch {
                if let Some(stored) = existing.get(&r.run.id)
                    && !r.same_content(stored)?
                {
                    return Err(run_conflict(&r.run.id));
                }
            }
        }
        let fresh: Vec<&EncodedRun> = batch
            .iter()
            .filter(|r| !existing.contains_key(&r.run.id))
            .collect();
        self.check_keys_free(tx, &fresh).await?;
        if !fresh.is_empty() {
            let writer = copy_writer(
                tx,
                &self.sql(&format!(
                    "COPY {{s}}.runs ({RUN_COLUMNS}, event_count) FROM STDIN (FORMAT binary)"
                )),
                &[
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT4,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                ],
            )
            .await?;
            pin_mut!(writer);
            for r in &fresh {
                let row = RunRow::of(&r.run)?;
                let event_count = r.events.len() as i64;
                let mut params = row.params();
                params.push(&event_count);
                writer.as_mut().write(&params).await?;
            }
            writer.finish().await?;
        }
        if fresh.iter().any(|r| !r.events.is_empty()) {
            let writer = copy_writer(
                tx,
                &self.sql(&format!(
                    "COPY {{s}}.events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)"
                )),
                &[
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                ],
            )
            .await?;
            pin_mut!(writer);
            for r in &fresh {
                for e in &r.events {
                    writer
                        .as_mut()
                        .write(&[
                            &r.run.id.as_str(),
                            &i64_of(e.seq),
                            &e.kind,
                            &e.at.as_micros(),
                            // Stored as the text it came in.
                            &e.payload.as_str(),
                            &e.idempotency_key,
                        ])
                        .await?;
                }
            }
            writer.finish().await?;
        }
        Ok(BulkOutcome {
            inserted: fresh.len() as u64,
            unchanged: existing.len() as u64,
            deferred: 0,
        })
    }

    /// Has the planner's statistics of `runs` refreshed once this store
    /// has imported a large share of its rows since they were taken: the
    /// paged run queries pick their index from them, and right after a
    /// bulk load (before autovacuum's next round) stale statistics make
    /// the filtered query scan the wrong index (see the crate README).
    /// Best effort: the import is committed whatever happens here.
    /// Refuses new runs whose external key another run of their workflow
    /// holds. (A racing import that takes the key between this check and
    /// the COPY fails on the unique index instead.)
    async fn check_keys_free(
        &self,
        tx: &Transaction<'_>,
        fresh: &[&EncodedRun],
    ) -> std::result::Result<(), Fail> {
        let keyed: Vec<&Run> = fresh
            .iter()
            .map(|r| &r.run)
            .filter(|r| r.external_key.is_some())
            .collect();
        if keyed.is_empty() {
            return Ok(());
        }
        let workflows: Vec<&str> = keyed.iter().map(|r| r.workflow_id.as_str()).collect();
        let keys: Vec<&str> = keyed
            .iter()
            .filter_map(|r| r.external_key.as_deref())
            .collect();
        let st = tx
            .prepare_cached(&self.sql(
                "SELECT r.id, r.workflow_id, r.external_key FROM {s}.runs r
                 JOIN unnest($1::text[], $2::text[]) AS k(w, key)
                   ON r.workflow_id = k.w AND r.external_key = k.key",
            ))
            .await?;
        for row in tx.query(&st, &[&workflows, &keys]).await? {
            let (holder, workflow, key): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            if let Some(run) = keyed.iter().find(|r| {
                r.workflow_id.as_str() == workflow
                    && r.external_key.as_deref() == Some(key.as_str())
                    && r.id.as_str() != holder
            }) {
                let holder = stored(RunId::new(holder), || "runs".to_string())?;
                return Err(Fail::Core(external_key_conflict(run, &holder)));
            }
        }
        Ok(())
    }

    /// Counts `inserted` runs imported and, once enough are, has `runs`
    /// and `events` analyzed in the background: the import's caller waits
    /// for its rows, not for the statistics (an `ANALYZE` after 10,000
    /// runs took a fifth of their import), and one `ANALYZE` runs at a
    /// time.
    fn refresh_run_stats(&self, inserted: u64) {
        let pending = self.inner.unanalyzed.fetch_add(inserted, Ordering::Relaxed) + inserted;
        if pending < ANALYZE_MIN_ROWS || self.inner.analyzing.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            store.analyze_if_due().await;
            store.inner.analyzing.store(false, Ordering::Release);
        });
    }

    /// `ANALYZE` of `runs` and `events` when the runs imported since the
    /// last are a large enough share of the table.
    async fn analyze_if_due(&self) {
        let pending = self.inner.unanalyzed.load(Ordering::Relaxed);
        let what = "refreshing the statistics of runs and events";
        let table = format!("{}.runs", self.inner.schema_sql);
        let r = async {
            let row = self
                .query_opt(
                    what,
                    "SELECT reltuples FROM pg_class WHERE oid = $1::text::regclass",
                    &[&table],
                )
                .await?;
            // -1 (or no row) before the first ANALYZE.
            let known = row.map_or(-1.0, |r| f64::from(r.get::<_, f32>(0)));
            if known >= 0.0 && (pending as f64) < known * ANALYZE_SHARE {
                return Ok(());
            }
            self.inner.unanalyzed.store(0, Ordering::Relaxed);
            // Events too: a prune's `run_id = ANY(…)` deletes need their
            // statistics to use the index after a bulk import.
            self.execute(what, "ANALYZE {s}.runs, {s}.events", &[])
                .await
                .map(drop)
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not refresh the statistics of runs");
        }
    }
}

#[async_trait]
impl LogRepository for PostgresStore {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        let row = RunRow::of(&run)?;
        let what = format!("creating run {}", run.id);
        let (this, run, row) = (self, &run, &row);
        self.retrying(&what, move || async move {
            let client = this.client().await?;
            // No conflict target: a taken id and a taken external key both
            // insert nothing, and the reads below tell which.
            let insert = client
                .prepare_cached(&this.sql(&format!(
                    "INSERT INTO {{s}}.runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT DO NOTHING"
                )))
                .await?;
            let n = client
                .execute(&insert, &row.params())
                .await?;
            if n == 1 {
                return Ok(Written::inserted(run.clone()));
            }
            let by_id = client
                .prepare_cached(&this.sql(&format!("SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE id = $1")))
                .await?;
            let by_id = client.query_opt(&by_id, &[&run.id.as_str()]).await?.map(|r| run_of(&r)).transpose()?;
            let by_key = match (&by_id, external_key_of(run)) {
                (None, Some((w, k))) => {
                    let st = client
                        .prepare_cached(&this.sql(&format!(
                            "SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE workflow_id = $1 AND external_key = $2"
                        )))
                        .await?;
                    client.query_opt(&st, &[&w.as_str(), &k]).await?.map(|r| run_of(&r)).transpose()?
                }
                _ => None,
            };
            match decide_run_create(run.clone(), by_id.as_ref(), by_key.as_ref())? {
                // What blocked the insert is gone again: try once more.
                w if w.inserted => Err(Fail::Retry(format!("run {} vanished", run.id))),
                w => Ok(w),
            }
        })
        .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Run> {
        self.find(
            &format!("reading run {id}"),
            &format!("SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE id = $1"),
            &[&id.as_str()],
            run_of,
            || format!("run {id}"),
        )
        .await
    }

    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        update.validate()?;
        let what = format!("updating the status of run {id}");
        let update = &update;
        with_tx!(self, &what, |tx| {
            let select = tx
                .prepare_cached(&self.sql(&format!(
                    "SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE id = $1 FOR UPDATE"
                )))
                .await?;
            let Some(row) = tx.query_opt(&select, &[&id.as_str()]).await? else {
                return Err(run_not_found(id));
            };
            let current = run_of(&row)?;
            let (next, changed) = current.apply_update(update)?;
            if changed {
                let st = tx
                    .prepare_cached(&self.sql(
                        "UPDATE {s}.runs SET status = $2, ended_at = $3, summaries = $4 WHERE id = $1",
                    ))
                    .await?;
                tx.execute(
                    &st,
                    &[
                        &id.as_str(),
                        &next.status.as_str(),
                        &next.ended_at.map(|t| t.as_micros()),
                        &json_text("summaries", &next.summaries)?,
                    ],
                )
                .await?;
            }
            Ok::<_, Fail>(next)
        })
    }

    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        event.validate()?;
        let what = format!("appending an event to run {run_id}");
        if event.idempotency_key.is_some() {
            let mut out = self
                .append_locked(&what, run_id, std::slice::from_ref(&event))
                .await?;
            return out
                .pop()
                .ok_or_else(|| Error::backend(format!("{what}: no result"), None));
        }
        // Without a key: one statement, numbered under the run's row
        // lock, shared with the appends to the same run waiting meanwhile.
        self.append_grouped(&what, run_id, &event).await
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        events.iter().try_for_each(NewEvent::validate)?;
        let what = format!("appending {} events to run {run_id}", events.len());
        self.append_locked(&what, run_id, &events).await
    }

    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        let limit = validate_limit(query.limit)?;
        query.validate()?;
        let after: Option<EventCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let what = format!("listing the events of run {run_id}");
        // Without a cursor: from the first (ascending) or the last
        // (descending) event; the kind is a parameter, NULL for any.
        let (cmp, order, from) = if query.descending {
            ("<", "DESC", after.map_or(i64::MAX, |a| i64_of(a.seq)))
        } else {
            (">", "ASC", after.map_or(0, |a| i64_of(a.seq)))
        };
        let rows = self
            .query_all(
                &what,
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM {{s}}.events WHERE run_id = $1 AND seq {cmp} $2 AND ($4::text IS NULL OR kind = $4) ORDER BY seq {order} LIMIT $3"
                ),
                &[
                    &run_id.as_str(),
                    &from,
                    &((limit + 1) as i64),
                    &query.kind.as_deref(),
                ],
            )
            .await?;
        if rows.is_empty()
            && self
                .query_opt(
                    &what,
                    "SELECT 1 FROM {s}.runs WHERE id = $1",
                    &[&run_id.as_str()],
                )
                .await?
                .is_none()
        {
            return Err(Error::not_found(format!("run {run_id}")));
        }
        let items = rows
            .iter()
            .map(event_of::<Event>)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| EventCursor {
            seq: e.seq,
        }))
    }

    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        query.filter.validate()?;
        let limit = validate_limit(query.limit)?;
        // The last run returned: the page goes on past it, in either order.
        let after: Option<RunCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut w = filter_where(&query.filter);
        let (cmp, dir) = if query.ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some(b) = &after {
            w.and(
                &format!("(started_at, id) {cmp} (?, ?)"),
                vec![
                    Box::new(b.started_at.as_micros()),
                    Box::new(b.id.as_str().to_string()),
                ],
            );
        }
        let limit_sql = overfetch_limit(limit);
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM {{s}}.runs {} ORDER BY started_at {dir}, id {dir} {limit_sql}",
            w.sql()
        );
        let rows = self.query_all("querying runs", &sql, &w.params()).await?;
        let items = rows.iter().map(run_of).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, RunCursor::of))
    }

    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        filter.validate()?;
        let w = filter_where(&filter);
        let sql = format!("SELECT count(*) FROM {{s}}.runs {}", w.sql());
        let row = self.query_opt("counting runs", &sql, &w.params()).await?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0)) as u64)
    }

    async fn delete_run(&self, id: &RunId) -> Result<()> {
        let what = format!("deleting run {id}");
        with_tx!(self, &what, |tx| {
            // The run row first: its lock waits for appends in flight and
            // keeps new ones out (they find no run), so the events deleted
            // next are all there will be (no foreign key since schema 2).
            let run = tx
                .prepare_cached(&self.sql("DELETE FROM {s}.runs WHERE id = $1"))
                .await?;
            if tx.execute(&run, &[&id.as_str()]).await? == 0 {
                return Err(run_not_found(id));
            }
            let events = tx
                .prepare_cached(&self.sql("DELETE FROM {s}.events WHERE run_id = $1"))
                .await?;
            tx.execute(&events, &[&id.as_str()]).await?;
            Ok::<_, Fail>(())
        })
    }

    async fn begin_bulk_load(&self, options: runstore_core::BulkLoadOptions) -> Result<()> {
        self.begin_load_of(runstore_core::BulkLoadOf::Logs, options)
            .await
    }

    async fn end_bulk_load(&self) -> Result<()> {
        self.ensure_indexes(Some(runstore_core::BulkLoadOf::Logs))
            .await
    }

    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        RunWithEvents::validate_batch(&runs)?;
        let runs = runs
            .into_iter()
            .map(EncodedRun::from_run)
            .collect::<Result<Vec<_>>>()?;
        self.import_checked(runs).await
    }

    // Payloads are copied in as the text they come in: none is built as a
    // value or serialised again.
    async fn import_runs_encoded(&self, runs: Vec<EncodedRun>) -> Result<BulkOutcome> {
        EncodedRun::validate_batch(&runs)?;
        self.import_checked(runs).await
    }

    async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        self.lifecycle_delete_runs(ids).await
    }

    async fn event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        self.lifecycle_event_counts(ids).await
    }

    async fn events_of_runs(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        runstore_core::validate_delete_batch("run_ids", ids)?;
        self.events_of(ids, event_of::<Event>, |e| &e.run_id).await
    }

    // The counts, then the small runs' events with their payloads handed
    // over as the text stored: no payload is built as a value.
    async fn events_of_small_runs_encoded(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<EncodedEvent>>>> {
        validate_small_runs_request(ids, max_events)?;
        let small = SmallRuns::new(self.lifecycle_event_counts(ids).await?, max_events);
        let events = self
            .events_of(&small.to_read(ids), event_of::<EncodedEvent>, |e| &e.run_id)
            .await?;
        Ok(small.answer(events))
    }

    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        validate_external_key(key)?;
        self.find(
            &format!("reading the run of workflow {workflow} by external key"),
            &format!(
                "SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE workflow_id = $1 AND external_key = $2"
            ),
            &[&workflow.as_str(), &key],
            run_of,
            || key_not_found(workflow, key).to_string(),
        )
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => key_not_found(workflow, key),
            _ => e,
        })
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
