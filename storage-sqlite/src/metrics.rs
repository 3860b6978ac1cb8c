//! [`MetricsRepository`] on SQLite: metrics, summaries computed in SQL, and
//! patterns.

use async_trait::async_trait;
use runstore_core::{
    BulkOutcome, Error, ExecutionMetric, MetricCursor, MetricQuery, MetricsRepository,
    MetricsSummary, Page, Pattern, PatternCursor, PatternId, PatternQuery, Result, RunId,
    SummaryQuery, WorkflowId, Written, metric_conflict, validate_limit,
};
use rusqlite::types::Value;
use rusqlite::{Connection, params};

use crate::bulk_load;
use crate::error::Ctx;
use crate::rows;
use crate::select::{Order, Select, query_rows};
use crate::summaries;
use crate::{SqliteStore, changed_one};
use runstore_core::summary::SummaryChange;

pub(crate) const METRIC_COLUMNS: &str = "run_id, workflow_id, workflow_version, status, duration_micros, recorded_at, counters, \"values\"";
const PATTERN_COLUMNS: &str =
    "id, workflow_id, kind, description, data, confidence, evidence, detected_at";

type RawMetric = (String, String, i64, String, i64, i64, String, String);
type RawPattern = (String, String, String, String, String, f64, String, i64);

pub(crate) fn convert_metric(raw: RawMetric) -> Result<ExecutionMetric> {
    let (run_id, wf, ver, status, dur, rec, counters, values) = raw;
    let loc = format!("metrics row {run_id}");
    Ok(ExecutionMetric {
        run_id: rows::parsed(&loc, run_id, RunId::new)?,
        workflow_id: rows::parsed(&loc, wf, WorkflowId::new)?,
        workflow_version: rows::version(&loc, ver)?,
        status: rows::parsed(&loc, status, |s| s.parse())?,
        duration_micros: rows::unsigned(&loc, dur)?,
        recorded_at: rows::ts(&loc, rec)?,
        counters: rows::from_json(&loc, &counters)?,
        values: rows::from_json(&loc, &values)?,
    })
}

fn convert_pattern(raw: RawPattern) -> Result<Pattern> {
    let (id, wf, kind, description, data, confidence, evidence, detected) = raw;
    let loc = format!("patterns row {id}");
    Ok(Pattern {
        id: rows::parsed(&loc, id, PatternId::new)?,
        workflow_id: rows::parsed(&loc, wf, WorkflowId::new)?,
        kind,
        description,
        data: rows::from_json(&loc, &data)?,
        confidence,
        evidence: rows::from_json(&loc, &evidence)?,
        detected_at: rows::ts(&loc, detected)?,
    })
}

fn load_metric(conn: &Connection, run_id: &RunId) -> Result<Option<ExecutionMetric>> {
    // A key lookup: one row at most.
    Ok(query_rows(
        conn,
        &format!("SELECT {METRIC_COLUMNS} FROM metrics WHERE run_id = ?1"),
        [run_id.as_str()],
        convert_metric,
        "reading a metric",
    )?
    .pop())
}

/// A metric's counters and values as JSON text, written before the write
/// lock is taken so the lock is held for SQLite work only.
fn metric_json(m: &ExecutionMetric) -> Result<[String; 2]> {
    let counters = rows::to_json("counters", &m.counters)?;
    Ok([counters, rows::to_json("values", &m.values)?])
}

/// The insert of [`insert_metric_row`], in the order of [`METRIC_COLUMNS`]
/// (spelled out: a statement built per metric cost the writer a format and
/// a hash of its text every time).
const INSERT_METRIC: &str = "INSERT INTO metrics (run_id, workflow_id, workflow_version, status, duration_micros, recorded_at, counters, \"values\")
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (run_id) DO NOTHING";

/// Inserts one metric row inside the caller's write transaction (its named
/// values are the caller's): `Ok(true)` if inserted, `Ok(false)` if an
/// identical one was there, `Err` with the conflict if another one was.
fn insert_metric_row(conn: &Connection, m: &ExecutionMetric, json: &[String; 2]) -> Result<bool> {
    let [counters, values] = json;
    let duration = rows::signed("duration_micros", m.duration_micros)?;
    // Insert first: a new metric (the usual case) costs no lookup; only the
    // run id conflict is ignored, any other constraint still fails.
    let inserted = changed_one(
        conn,
        INSERT_METRIC,
        params![
            m.run_id.as_str(),
            m.workflow_id.as_str(),
            m.workflow_version.get(),
            m.status.as_str(),
            duration,
            m.recorded_at.as_micros(),
            counters,
            values
        ],
        "inserting a metric",
    )?;
    if inserted {
        return Ok(true);
    }
    let stored = load_metric(conn, &m.run_id)?.ok_or_else(|| metric_conflict(&m.run_id))?;
    if stored.same_content(m) {
        return Ok(false);
    }
    Err(metric_conflict(&m.run_id))
}

/// Records metrics and brings the summary counters up to date, in the
/// caller's write transaction; how many were inserted.
///
/// Rows go in in the order of the value-ordered indexes
/// (`metrics_by_version` by duration, `metric_values_by_version` by value),
/// not in the caller's order. A batch's entries land all over those
/// indexes; in index order a page is changed by consecutive inserts, so
/// the small page cache no longer spills it to the log and reads it back
/// between them (1,000,000 metrics in batches of 5,000: 12.0 to 6.7 GB
/// written; `record_many` 10-29% faster in the bench). The other indexes
/// are keyed by run id or time, which a batch already fills together.
/// While a bulk load has dropped a value-ordered index, its rows go in by
/// run id instead, the order of the one index left on them (the
/// duration order scattered the run id index and took a third more of the
/// writer's time in a migration). The outcome does not depend on the
/// order: the batch is one transaction, and of several conflicts the one
/// earliest in the caller's order is reported.
fn record_all_in_tx(
    conn: &Connection,
    metrics: &[ExecutionMetric],
    json: &[[String; 2]],
) -> Result<BulkOutcome> {
    let mut order: Vec<usize> = (0..metrics.len()).collect();
    // A single `record` has nothing to order by value: it skips the look
    // at the schema.
    let several = metrics.len() > 1;
    if several && bulk_load::exists(conn, "metrics_by_version")? {
        order.sort_by_key(|&i| {
            let m = &metrics[i];
            (
                m.workflow_id.as_str(),
                m.workflow_version,
                m.duration_micros,
            )
        });
    } else {
        order.sort_by_key(|&i| metrics[i].run_id.as_str());
    }
    let mut outcome = BulkOutcome::default();
    let mut change = SummaryChange::default();
    let mut first_conflict: Option<(usize, Error)> = None;
    let mut values = Vec::new();
    for i in order {
        let m = &metrics[i];
        match insert_metric_row(conn, m, &json[i]) {
            Ok(true) => {
                outcome.inserted += 1;
                change.insert(m);
                values.extend(m.values.iter().map(|(name, v)| (m, name.as_str(), *v)));
            }
            Ok(false) => outcome.unchanged += 1,
            Err(e) if e.kind() == runstore_core::ErrorKind::Conflict => {
                if first_conflict.as_ref().is_none_or(|(at, _)| i < *at) {
                    first_conflict = Some((i, e));
                }
            }
            Err(e) => return Err(e),
        }
    }
    if let Some((_, e)) = first_conflict {
        return Err(e);
    }
    if several && bulk_load::exists(conn, "metric_values_by_version")? {
        values.sort_by(|(a, an, av), (b, bn, bv)| {
            (a.workflow_id.as_str(), a.workflow_version, an)
                .cmp(&(b.workflow_id.as_str(), b.workflow_version, bn))
                .then(av.total_cmp(bv))
        });
    } else {
        // The metrics went in by run id; their values (by name) follow.
        values.sort_by(|(a, an, _), (b, bn, _)| {
            (a.run_id.as_str(), an).cmp(&(b.run_id.as_str(), bn))
        });
    }
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO metric_values (run_id, name, workflow_id, workflow_version, value)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .ctx("inserting metric values")?;
    for (m, name, v) in values {
        stmt.execute(params![
            m.run_id.as_str(),
            name,
            m.workflow_id.as_str(),
            m.workflow_version.get(),
            v
        ])
        .ctx("inserting a metric value")?;
    }
    summaries::apply(conn, &change)?;
    Ok(outcome)
}

/// Deletes metrics (their named values go with them, ON DELETE CASCADE)
/// and takes them out of the summary counters.
pub(crate) fn delete_in_tx(conn: &Connection, ids: &[RunId]) -> Result<Vec<ExecutionMetric>> {
    let list = crate::lifecycle::id_list(ids, "deleting metrics")?;
    let gone = query_rows(
        conn,
        &format!(
            "DELETE FROM metrics WHERE run_id IN (SELECT value FROM json_each(?1)) \
             RETURNING {METRIC_COLUMNS}"
        ),
        [list],
        convert_metric,
        "deleting metrics",
    )?;
    summaries::apply(conn, &SummaryChange::deleting(&gone))?;
    Ok(gone)
}

#[async_trait]
impl MetricsRepository for SqliteStore {
    async fn begin_bulk_load(&self, options: runstore_core::BulkLoadOptions) -> Result<()> {
        self.begin_load_of(runstore_core::BulkLoadOf::Metrics, options)
            .await
    }

    async fn end_bulk_load(&self) -> Result<()> {
        self.end_load_of(runstore_core::BulkLoadOf::Metrics).await
    }

    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        metric.validate()?;
        let json = metric_json(&metric)?;
        self.write_tx("recording a metric", move |tx| {
            let outcome = record_all_in_tx(tx, std::slice::from_ref(&metric), &[json])?;
            if outcome.inserted == 1 {
                Ok(Written::inserted(metric))
            } else {
                Ok(Written::unchanged(metric))
            }
        })
        .await
    }

    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        // Named values are inserted only for the metrics the transaction
        // itself inserted, so the parent check of each is left out.
        self.write_tx_over_unchecked(
            "recording metrics",
            metrics,
            |metrics| {
                metrics.iter().try_for_each(ExecutionMetric::validate)?;
                let json = metrics
                    .iter()
                    .map(metric_json)
                    .collect::<Result<Vec<_>>>()?;
                Ok((metrics, json))
            },
            |tx, (metrics, json)| record_all_in_tx(tx, metrics, json),
        )
        .await
    }

    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        let run_id = run_id.clone();
        self.read(move |conn| {
            load_metric(conn, &run_id)?
                .ok_or_else(|| Error::not_found(format!("metric of run {run_id}")))
        })
        .await
    }

    async fn metrics_of_runs(&self, run_ids: &[RunId]) -> Result<Vec<Option<ExecutionMetric>>> {
        crate::lifecycle::check_batch(run_ids)?;
        let ids = run_ids.to_vec();
        self.read(move |conn| {
            let list = crate::lifecycle::id_list(&ids, "reading the metrics of runs")?;
            let metrics = query_rows(
                conn,
                &format!(
                    "SELECT {METRIC_COLUMNS} FROM metrics \
                     WHERE run_id IN (SELECT value FROM json_each(?1))"
                ),
                [list],
                convert_metric,
                "reading the metrics of runs",
            )?;
            Ok(runstore_core::metrics_by_run(&ids, metrics))
        })
        .await
    }

    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<MetricCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut select = Select::from(METRIC_COLUMNS, "metrics");
        select
            .and_eq_opt(
                "workflow_id",
                query.workflow_id.map(|w| Value::Text(w.into_string())),
            )
            .and_eq_opt(
                "workflow_version",
                query
                    .workflow_version
                    .map(|v| Value::Integer(i64::from(v.get()))),
            );
        let cursor = after.map(|c| vec![Value::Text(c.run_id.into_string())]);
        let select = select.page(Order::Asc, &["run_id"], cursor, Some(limit + 1));
        let items = self
            .read(move |conn| select.rows(conn, convert_metric, "listing metrics"))
            .await?;
        Ok(Page::from_overfetch(items, limit, |m| MetricCursor {
            run_id: m.run_id.clone(),
        }))
    }

    async fn delete(&self, run_id: &RunId) -> Result<()> {
        let run_id = run_id.clone();
        self.write_tx("deleting a metric", move |tx| {
            if delete_in_tx(tx, std::slice::from_ref(&run_id))?.is_empty() {
                return Err(Error::not_found(format!("metric of run {run_id}")));
            }
            Ok(())
        })
        .await
    }

    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        let wf = workflow_id.clone();
        self.read_tx("summarizing metrics", move |tx| {
            summaries::read(tx, &wf, &query)
        })
        .await
    }

    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        pattern.validate()?;
        let data = rows::to_json("data", &pattern.data)?;
        let evidence = rows::to_json("evidence", &pattern.evidence)?;
        self.write_tx("upserting a pattern", move |tx| {
            let existed = tx
                .prepare_cached("SELECT 1 FROM patterns WHERE id = ?1")
                .and_then(|mut s| s.exists([pattern.id.as_str()]))
                .ctx("checking a pattern")?;
            tx.prepare_cached(&format!(
                "INSERT INTO patterns ({PATTERN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET workflow_id = excluded.workflow_id, kind = excluded.kind,
                   description = excluded.description, data = excluded.data,
                   confidence = excluded.confidence, evidence = excluded.evidence,
                   detected_at = excluded.detected_at"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    pattern.id.as_str(),
                    pattern.workflow_id.as_str(),
                    pattern.kind,
                    pattern.description,
                    data,
                    pattern.confidence,
                    evidence,
                    pattern.detected_at.as_micros()
                ])
            })
            .ctx("upserting a pattern")?;
            Ok(Written {
                record: pattern,
                inserted: !existed, deferred: false,
            })
        })
        .await
    }

    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        let id = id.clone();
        self.read(move |conn| {
            query_rows(
                conn,
                &format!("SELECT {PATTERN_COLUMNS} FROM patterns WHERE id = ?1"),
                [id.as_str()],
                convert_pattern,
                "reading a pattern",
            )?
            .pop()
            .ok_or_else(|| Error::not_found(format!("pattern {id}")))
        })
        .await
    }

    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        let limit = validate_limit(query.limit)?;
        let before: Option<PatternCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut select = Select::from(PATTERN_COLUMNS, "patterns");
        select.and_eq_opt(
            "workflow_id",
            query.workflow_id.map(|w| Value::Text(w.into_string())),
        );
        let cursor = before.map(|c| {
            vec![
                Value::Integer(c.detected_at.as_micros()),
                Value::Text(c.id.into_string()),
            ]
        });
        let select = select.page(Order::Desc, &["detected_at", "id"], cursor, Some(limit + 1));
        let items = self
            .read(move |conn| select.rows(conn, convert_pattern, "listing patterns"))
            .await?;
        Ok(Page::from_overfetch(items, limit, PatternCursor::of))
    }

    async fn delete_many(&self, run_ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        crate::lifecycle::check_batch(run_ids)?;
        let ids = run_ids.to_vec();
        self.write_tx("deleting metrics", move |tx| {
            let gone = delete_in_tx(tx, &ids)?;
            let gone: std::collections::HashSet<&str> =
                gone.iter().map(|m| m.run_id.as_str()).collect();
            Ok(runstore_core::Deleted::split(&ids, |id| {
                gone.contains(id.as_str())
            }))
        })
        .await
    }
}
