//! [`MetricsRepository`] on PostgreSQL: one row per metric plus one per
//! named value, bulk writes through binary `COPY`, summaries from counters
//! kept in the same transaction as every write (`crate::summaries`).

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use futures_util::pin_mut;
use runstore_core::summary::SummaryChange;
use runstore_core::{
    BulkOutcome, Error, ExecutionMetric, MetricCursor, MetricQuery, MetricsRepository,
    MetricsSummary, Page, Pattern, PatternCursor, PatternId, PatternQuery, Result, RunId,
    RunStatus, SummaryQuery, WorkflowId, Written, validate_limit,
};
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use crate::PostgresStore;
use crate::client::{Careful, copy_writer, with_tx};
use crate::error::Fail;
use crate::filter::{Where, overfetch_limit};
use crate::rows::{from_json, i64_of, json_text, stored, ts, v32, version};

pub(crate) const METRIC_COLUMNS: &str = "run_id, workflow_id, workflow_version, status, duration_micros, recorded_at, counters, \"values\"";
const PATTERN_COLUMNS: &str =
    "id, workflow_id, kind, description, data, confidence, evidence, detected_at";

/// A metric read from a row of [`METRIC_COLUMNS`].
pub(crate) fn metric_of(row: &Row) -> Result<ExecutionMetric> {
    let run_id: String = row.get(0);
    let loc = || format!("metrics {run_id}");
    let status: String = row.get(3);
    let duration: i64 = row.get(4);
    Ok(ExecutionMetric {
        run_id: stored(RunId::new(run_id.clone()), loc)?,
        workflow_id: stored(WorkflowId::new(row.get::<_, String>(1)), loc)?,
        workflow_version: version(loc, row.get(2))?,
        status: stored(status.parse::<RunStatus>(), loc)?,
        duration_micros: stored(
            u64::try_from(duration).map_err(|_| Error::invalid("duration_micros", "negative")),
            loc,
        )?,
        recorded_at: ts(loc, row.get(5))?,
        counters: from_json(loc, row.get::<_, &str>(6))?,
        values: from_json(loc, row.get::<_, &str>(7))?,
    })
}

fn pattern_of(row: &Row) -> Result<Pattern> {
    let id: String = row.get(0);
    let loc = || format!("patterns {id}");
    Ok(Pattern {
        id: stored(PatternId::new(id.clone()), loc)?,
        workflow_id: stored(WorkflowId::new(row.get::<_, String>(1)), loc)?,
        kind: row.get(2),
        description: row.get(3),
        data: from_json(loc, row.get::<_, &str>(4))?,
        confidence: row.get(5),
        evidence: from_json(loc, row.get::<_, &str>(6))?,
        detected_at: ts(loc, row.get(7))?,
    })
}

fn metric_conflict(run_id: &RunId) -> Fail {
    Fail::Core(runstore_core::metric_conflict(run_id))
}

/// Deletes named value rows by their whole key (the primary key of
/// `metric_values`), one row per element of the arrays.
const DELETE_VALUES: &str = "DELETE FROM {s}.metric_values x
 USING unnest($1::text[], $2::int4[], $3::text[], $4::float8[], $5::text[]) AS u(w, v, n, val, r)
 WHERE x.workflow_id = u.w COLLATE \"C\" AND x.workflow_version = u.v
   AND x.name = u.n COLLATE \"C\" AND x.value = u.val AND x.run_id = u.r COLLATE \"C\"";

/// The keys of named value rows, as statement parameters.
#[derive(Default)]
struct ValueKeys<'a> {
    workflows: Vec<&'a str>,
    versions: Vec<i32>,
    names: Vec<&'a str>,
    values: Vec<f64>,
    runs: Vec<&'a str>,
}

/// In the transaction that deleted `deleted` from `metrics` (schema
/// `schema`, quoted): deletes their named values and counts them out of
/// the summaries. Values the metrics name but that are not stored are
/// `Corrupt` (the transaction rolls back).
pub(crate) async fn forget_deleted(
    tx: &Transaction<'_>,
    schema: &str,
    deleted: &[ExecutionMetric],
) -> std::result::Result<(), Fail> {
    let mut keys = ValueKeys::default();
    for m in deleted {
        for (name, &x) in &m.values {
            keys.workflows.push(m.workflow_id.as_str());
            keys.versions.push(v32(m.workflow_version));
            keys.names.push(name);
            keys.values.push(x);
            keys.runs.push(m.run_id.as_str());
        }
    }
    if !keys.runs.is_empty() {
        let st = tx
            .prepare_cached(&DELETE_VALUES.replace("{s}", schema))
            .await?;
        let n = tx
            .execute(
                &st,
                &[
                    &keys.workflows,
                    &keys.versions,
                    &keys.names,
                    &keys.values,
                    &keys.runs,
                ],
            )
            .await?;
        if n != keys.runs.len() as u64 {
            return Err(Fail::Core(Error::corrupt(
                "metric_values",
                format!(
                    "the deleted metrics name {} values, {n} of them were stored",
                    keys.runs.len()
                ),
            )));
        }
    }
    crate::summaries::apply(tx, schema, &SummaryChange::deleting(deleted)).await
}

/// A metric's JSON columns as stored.
struct MetricText {
    counters: String,
    values: String,
}

fn metric_text(m: &ExecutionMetric) -> Result<MetricText> {
    Ok(MetricText {
        counters: json_text("counters", &m.counters)?,
        values: json_text("values", &m.values)?,
    })
}

impl PostgresStore {
    /// One attempt of `record_many` over distinct metrics, as
    /// `import_runs` makes one: optimistic first (see [`Careful`]), the
    /// batch streamed straight into `metrics` and `metric_values` with
    /// binary COPY and counted into the summaries, without looking for
    /// stored metrics; one already there makes the COPY a unique violation.
    /// Then (`check`) every later attempt compares the metrics already
    /// stored first and copies only the others; a racing recorder of one
    /// of them is again a unique violation, and the retry compares against
    /// its metric. How many were stored identically.
    async fn record_many_in(
        &self,
        tx: &Transaction<'_>,
        metrics: &[(ExecutionMetric, MetricText)],
        check: bool,
    ) -> std::result::Result<u64, Fail> {
        let rows = if check {
            let ids: Vec<&str> = metrics.iter().map(|(m, _)| m.run_id.as_str()).collect();
            // One primary-key probe per id, as `metrics_of_runs` does.
            let st = tx
                .prepare_cached(&self.sql(&format!(
                    "SELECT m.* FROM unnest($1::text[]) AS r(id) \
                     CROSS JOIN LATERAL (SELECT {METRIC_COLUMNS} FROM {{s}}.metrics \
                     WHERE run_id = r.id COLLATE \"C\") m"
                )))
                .await?;
            tx.query(&st, &[&ids]).await?
        } else {
            Vec::new()
        };
        let by_id: BTreeMap<&RunId, &ExecutionMetric> =
            metrics.iter().map(|(m, _)| (&m.run_id, m)).collect();
        let mut existing = HashSet::with_capacity(rows.len());
        for row in &rows {
            let stored = metric_of(row)?;
            match by_id.get(&stored.run_id) {
                Some(offered) if offered.same_content(&stored) => {}
                _ => return Err(metric_conflict(&stored.run_id)),
            }
            existing.insert(stored.run_id);
        }
        let fresh: Vec<&(ExecutionMetric, MetricText)> = metrics
            .iter()
            .filter(|(m, _)| !existing.contains(&m.run_id))
            .collect();
        if !fresh.is_empty() {
            let writer = copy_writer(
                tx,
                &self.sql(&format!(
                    "COPY {{s}}.metrics ({METRIC_COLUMNS}) FROM STDIN (FORMAT binary)"
                )),
                &[
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT4,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                ],
            )
            .await?;
            pin_mut!(writer);
            for (m, text) in &fresh {
                writer
                    .as_mut()
                    .write(&[
                        &m.run_id.as_str(),
                        &m.workflow_id.as_str(),
                        &v32(m.workflow_version),
                        &m.status.as_str(),
                        &i64_of(m.duration_micros),
                        &m.recorded_at.as_micros(),
                        &text.counters,
                        &text.values,
                    ])
                    .await?;
            }
            writer.finish().await?;
        }
        if fresh.iter().any(|(m, _)| !m.values.is_empty()) {
            let writer = copy_writer(
                tx,
                &self.sql(
                    "COPY {s}.metric_values (run_id, workflow_id, workflow_version, name, value)
                     FROM STDIN (FORMAT binary)",
                ),
                &[Type::TEXT, Type::TEXT, Type::INT4, Type::TEXT, Type::FLOAT8],
            )
            .await?;
            pin_mut!(writer);
            for (m, _) in &fresh {
                for (name, value) in &m.values {
                    writer
                        .as_mut()
                        .write(&[
                            &m.run_id.as_str(),
                            &m.workflow_id.as_str(),
                            &v32(m.workflow_version),
                            name,
                            value,
                        ])
                        .await?;
                }
            }
            writer.finish().await?;
        }
        let change = SummaryChange::inserting(fresh.iter().map(|(m, _)| m));
        crate::summaries::apply(tx, &self.inner.schema_sql, &change).await?;
        Ok(existing.len() as u64)
    }
}

#[async_trait]
impl MetricsRepository for PostgresStore {
    async fn begin_bulk_load(&self, options: runstore_core::BulkLoadOptions) -> Result<()> {
        self.begin_load_of(runstore_core::BulkLoadOf::Metrics, options)
            .await
    }

    async fn end_bulk_load(&self) -> Result<()> {
        self.ensure_indexes(Some(runstore_core::BulkLoadOf::Metrics))
            .await
    }

    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        metric.validate()?;
        let text = metric_text(&metric)?;
        let what = format!("recording the metric of run {}", metric.run_id);
        let (m, text) = (&metric, &text);
        with_tx!(self, &what, |tx| {
            let insert = tx
                .prepare_cached(&self.sql(&format!(
                    "INSERT INTO {{s}}.metrics ({METRIC_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (run_id) DO NOTHING"
                )))
                .await?;
            let n = tx
                .execute(
                    &insert,
                    &[
                        &m.run_id.as_str(),
                        &m.workflow_id.as_str(),
                        &v32(m.workflow_version),
                        &m.status.as_str(),
                        &i64_of(m.duration_micros),
                        &m.recorded_at.as_micros(),
                        &text.counters,
                        &text.values,
                    ],
                )
                .await?;
            if n == 0 {
                let select = tx
                    .prepare_cached(&self.sql(&format!(
                        "SELECT {METRIC_COLUMNS} FROM {{s}}.metrics WHERE run_id = $1"
                    )))
                    .await?;
                let Some(row) = tx.query_opt(&select, &[&m.run_id.as_str()]).await? else {
                    return Err(Fail::Retry(format!("metric of run {} vanished", m.run_id)));
                };
                let existing = metric_of(&row)?;
                return if existing.same_content(m) {
                    Ok(Written::unchanged(existing))
                } else {
                    Err(metric_conflict(&m.run_id))
                };
            }
            if !m.values.is_empty() {
                let names: Vec<&str> = m.values.keys().map(String::as_str).collect();
                let values: Vec<f64> = m.values.values().copied().collect();
                let st = tx
                    .prepare_cached(&self.sql(
                        "INSERT INTO {s}.metric_values (run_id, workflow_id, workflow_version, name, value)
                         SELECT $1, $2, $3, * FROM unnest($4::text[], $5::float8[])",
                    ))
                    .await?;
                tx.execute(
                    &st,
                    &[
                        &m.run_id.as_str(),
                        &m.workflow_id.as_str(),
                        &v32(m.workflow_version),
                        &names,
                        &values,
                    ],
                )
                .await?;
            }
            let change = SummaryChange::inserting([m]);
            crate::summaries::apply(&tx, &self.inner.schema_sql, &change).await?;
            Ok::<_, Fail>(Written::inserted(m.clone()))
        })
    }

    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        metrics.iter().try_for_each(ExecutionMetric::validate)?;
        // Repeats within the batch: identical ones count as unchanged,
        // different ones are a conflict, as in `record` one by one.
        let mut fresh: BTreeMap<RunId, ExecutionMetric> = BTreeMap::new();
        let mut repeats = 0u64;
        for m in metrics {
            match fresh.get(&m.run_id) {
                Some(first) if first.same_content(&m) => repeats += 1,
                Some(_) => return Err(metric_conflict(&m.run_id).into_error("recording metrics")),
                None => {
                    fresh.insert(m.run_id.clone(), m);
                }
            }
        }
        if fresh.is_empty() {
            return Ok(BulkOutcome {
                inserted: 0,
                unchanged: repeats,
                deferred: 0,
            });
        }
        let batch = fresh
            .into_values()
            .map(|m| metric_text(&m).map(|t| (m, t)))
            .collect::<Result<Vec<_>>>()?;
        let what = format!("recording {} metrics", batch.len());
        let careful = Careful::new(&self.inner.record_hint);
        let unchanged = with_tx!(self, &what, |tx| {
            careful
                .attempt(|check| self.record_many_in(&tx, &batch, check))
                .await
        })?;
        careful.settle(unchanged > 0);
        Ok(BulkOutcome {
            inserted: batch.len() as u64 - unchanged,
            unchanged: unchanged + repeats,
            deferred: 0,
        })
    }

    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        self.find(
            &format!("reading the metric of run {run_id}"),
            &format!("SELECT {METRIC_COLUMNS} FROM {{s}}.metrics WHERE run_id = $1"),
            &[&run_id.as_str()],
            metric_of,
            || format!("metric of run {run_id}"),
        )
        .await
    }

    async fn metrics_of_runs(&self, run_ids: &[RunId]) -> Result<Vec<Option<ExecutionMetric>>> {
        runstore_core::validate_delete_batch("run_ids", run_ids)?;
        let keys: Vec<&str> = run_ids.iter().map(RunId::as_str).collect();
        let rows = self
            .query_all(
                "reading the metrics of runs",
                // One primary-key probe per id, as `events_of_runs` does.
                &format!(
                    "SELECT m.* FROM unnest($1::text[]) AS r(id) \
                     CROSS JOIN LATERAL (SELECT {METRIC_COLUMNS} FROM {{s}}.metrics \
                     WHERE run_id = r.id COLLATE \"C\") m"
                ),
                &[&keys],
            )
            .await?;
        let metrics = rows.iter().map(metric_of).collect::<Result<Vec<_>>>()?;
        Ok(runstore_core::metrics_by_run(run_ids, metrics))
    }

    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<MetricCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut w = Where::default();
        if let Some(id) = &query.workflow_id {
            w.and1("workflow_id = ?", Box::new(id.as_str().to_string()));
        }
        if let Some(v) = query.workflow_version {
            w.and1("workflow_version = ?", Box::new(v32(v)));
        }
        if let Some(a) = &after {
            w.and1("run_id > ?", Box::new(a.run_id.as_str().to_string()));
        }
        let limit_sql = overfetch_limit(limit);
        let sql = format!(
            "SELECT {METRIC_COLUMNS} FROM {{s}}.metrics {} ORDER BY run_id {limit_sql}",
            w.sql()
        );
        let rows = self.query_all("listing metrics", &sql, &w.params()).await?;
        let items = rows.iter().map(metric_of).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |m| MetricCursor {
            run_id: m.run_id.clone(),
        }))
    }

    async fn delete(&self, run_id: &RunId) -> Result<()> {
        let what = format!("deleting the metric of run {run_id}");
        let found = with_tx!(self, &what, |tx| {
            let st = tx
                .prepare_cached(&self.sql(&format!(
                    "DELETE FROM {{s}}.metrics WHERE run_id = $1 RETURNING {METRIC_COLUMNS}"
                )))
                .await?;
            match tx.query_opt(&st, &[&run_id.as_str()]).await? {
                None => Ok::<_, Fail>(false),
                Some(row) => {
                    forget_deleted(&tx, &self.inner.schema_sql, &[metric_of(&row)?]).await?;
                    Ok(true)
                }
            }
        })?;
        if found {
            Ok(())
        } else {
            Err(Error::not_found(format!("metric of run {run_id}")))
        }
    }

    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        self.read_summary(workflow_id, &query).await
    }

    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        pattern.validate()?;
        let data = json_text("data", &pattern.data)?;
        let evidence = json_text("evidence", &pattern.evidence)?;
        let what = format!("storing pattern {}", pattern.id);
        let (this, p, data, evidence) = (self, &pattern, &data, &evidence);
        self.retrying(&what, move || async move {
            let client = this.client().await?;
            // xmax = 0 exactly for a row this statement inserted.
            let st = client
                .prepare_cached(&this.sql(&format!(
                    "INSERT INTO {{s}}.patterns ({PATTERN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (id) DO UPDATE SET workflow_id = EXCLUDED.workflow_id, kind = EXCLUDED.kind,
                         description = EXCLUDED.description, data = EXCLUDED.data,
                         confidence = EXCLUDED.confidence, evidence = EXCLUDED.evidence,
                         detected_at = EXCLUDED.detected_at
                     RETURNING (xmax = 0)"
                )))
                .await?;
            let row = client
                .query_one(
                    &st,
                    &[
                        &p.id.as_str(),
                        &p.workflow_id.as_str(),
                        &p.kind,
                        &p.description,
                        data,
                        &p.confidence,
                        evidence,
                        &p.detected_at.as_micros(),
                    ],
                )
                .await?;
            Ok(Written {
                record: p.clone(),
                inserted: row.get(0), deferred: false,
            })
        })
        .await
    }

    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        self.find(
            &format!("reading pattern {id}"),
            &format!("SELECT {PATTERN_COLUMNS} FROM {{s}}.patterns WHERE id = $1"),
            &[&id.as_str()],
            pattern_of,
            || format!("pattern {id}"),
        )
        .await
    }

    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        let limit = validate_limit(query.limit)?;
        let before: Option<PatternCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut w = Where::default();
        if let Some(id) = &query.workflow_id {
            w.and1("workflow_id = ?", Box::new(id.as_str().to_string()));
        }
        if let Some(b) = &before {
            w.and(
                "(detected_at, id) < (?, ?)",
                vec![
                    Box::new(b.detected_at.as_micros()),
                    Box::new(b.id.as_str().to_string()),
                ],
            );
        }
        let limit_sql = overfetch_limit(limit);
        let sql = format!(
            "SELECT {PATTERN_COLUMNS} FROM {{s}}.patterns {}
             ORDER BY detected_at DESC, id DESC {limit_sql}",
            w.sql()
        );
        let rows = self
            .query_all("listing patterns", &sql, &w.params())
            .await?;
        let items = rows.iter().map(pattern_of).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, PatternCursor::of))
    }

    async fn delete_many(&self, run_ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        self.lifecycle_delete_metrics(run_ids).await
    }
}
