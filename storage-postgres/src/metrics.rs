//! [`MetricsRepository`] on PostgreSQL: one row per metric plus one per
//! named value, summaries aggregated in SQL, bulk writes through binary
//! `COPY`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use futures_util::{TryStreamExt, pin_mut};
use runstore_core::{
    BulkOutcome, DurationStats, Error, ExecutionMetric, MetricCursor, MetricQuery,
    MetricsRepository, MetricsSummary, Page, Pattern, PatternCursor, PatternId, PatternQuery,
    Result, RunId, RunStatus, SummaryQuery, ValueStats, WorkflowId, Written, validate_limit,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use crate::PostgresStore;
use crate::client::{copy_writer, with_tx};
use crate::error::Fail;
use crate::filter::{Where, overfetch_limit};
use crate::rows::{from_json, i64_of, json_text, stored, ts, v32, version};

const METRIC_COLUMNS: &str = "run_id, workflow_id, workflow_version, status, duration_micros, recorded_at, counters, \"values\"";
const PATTERN_COLUMNS: &str =
    "id, workflow_id, kind, description, data, confidence, evidence, detected_at";

fn metric_of(row: &Row) -> Result<ExecutionMetric> {
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
    /// One attempt of `record_many` over distinct metrics: stage with
    /// binary COPY, compare those already stored, insert the rest.
    async fn record_many_attempt(
        &self,
        tx: &Transaction<'_>,
        metrics: &[(ExecutionMetric, MetricText)],
    ) -> std::result::Result<u64, Fail> {
        tx.batch_execute(
            "CREATE TEMP TABLE rs_stage_metrics (
                 run_id text COLLATE \"C\", workflow_id text, workflow_version integer, status text,
                 duration_micros bigint, recorded_at bigint, counters text, \"values\" text) ON COMMIT DROP;
             CREATE TEMP TABLE rs_stage_values (
                 run_id text COLLATE \"C\", workflow_id text, workflow_version integer, name text,
                 value double precision) ON COMMIT DROP;",
        )
        .await?;
        {
            let writer = copy_writer(
                tx,
                &format!("COPY rs_stage_metrics ({METRIC_COLUMNS}) FROM STDIN (FORMAT binary)"),
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
            for (m, text) in metrics {
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
        {
            let writer = copy_writer(
                tx,
                "COPY rs_stage_values (run_id, workflow_id, workflow_version, name, value)
                 FROM STDIN (FORMAT binary)",
                &[Type::TEXT, Type::TEXT, Type::INT4, Type::TEXT, Type::FLOAT8],
            )
            .await?;
            pin_mut!(writer);
            for (m, _) in metrics {
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
        let cols = METRIC_COLUMNS
            .split(", ")
            .map(|c| format!("m.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = tx
            .query(
                &self.sql(&format!(
                    "SELECT {cols} FROM {{s}}.metrics m JOIN rs_stage_metrics s ON s.run_id = m.run_id"
                )),
                &[],
            )
            .await?;
        let by_id: BTreeMap<&RunId, &ExecutionMetric> =
            metrics.iter().map(|(m, _)| (&m.run_id, m)).collect();
        let mut existing = Vec::with_capacity(rows.len());
        for row in &rows {
            let stored = metric_of(row)?;
            match by_id.get(&stored.run_id) {
                Some(offered) if offered.same_content(&stored) => {}
                _ => return Err(metric_conflict(&stored.run_id)),
            }
            existing.push(stored.run_id.as_str().to_string());
        }
        // A racing recorder of the same run makes these a unique violation:
        // the retry finds its metric and compares.
        tx.execute(
            &self.sql(&format!(
                "INSERT INTO {{s}}.metrics ({METRIC_COLUMNS})
                 SELECT {METRIC_COLUMNS} FROM rs_stage_metrics WHERE run_id <> ALL($1)"
            )),
            &[&existing],
        )
        .await?;
        tx.execute(
            &self.sql(
                "INSERT INTO {s}.metric_values (run_id, workflow_id, workflow_version, name, value)
                 SELECT run_id, workflow_id, workflow_version, name, value FROM rs_stage_values
                 WHERE run_id <> ALL($1)",
            ),
            &[&existing],
        )
        .await?;
        Ok(existing.len() as u64)
    }
}

#[async_trait]
impl MetricsRepository for PostgresStore {
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
        let unchanged = with_tx!(self, &what, |tx| {
            self.record_many_attempt(&tx, &batch).await
        })?;
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
        let n = self
            .execute(
                &format!("deleting the metric of run {run_id}"),
                "DELETE FROM {s}.metrics WHERE run_id = $1",
                &[&run_id.as_str()],
            )
            .await?;
        match n {
            0 => Err(Error::not_found(format!("metric of run {run_id}"))),
            _ => Ok(()),
        }
    }

    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        let what = format!("summarizing the metrics of workflow {workflow_id}");
        let version_clause = if query.workflow_version.is_some() {
            "AND workflow_version = $2"
        } else {
            ""
        };
        let version = query.workflow_version.map(v32);
        let wf = workflow_id.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&wf];
        if let Some(v) = &version {
            params.push(v);
        }
        // Nearest rank: percentile_disc(p) is the value at rank ceil(p * n).
        let totals_sql = self.sql(&format!(
            "SELECT count(*),
                    count(*) FILTER (WHERE status = 'succeeded'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status = 'cancelled'),
                    min(duration_micros), max(duration_micros), sum(duration_micros)::float8,
                    percentile_disc(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP (ORDER BY duration_micros),
                    min(recorded_at), max(recorded_at)
             FROM {{s}}.metrics WHERE workflow_id = $1 {version_clause}"
        ));
        // Summed in run id order, the order of the reference computation,
        // so float sums agree bit for bit.
        let values_sql = self.sql(&format!(
            "SELECT name, count(*), sum(value ORDER BY run_id), min(value), max(value)
             FROM {{s}}.metric_values WHERE workflow_id = $1 {version_clause}
             GROUP BY name ORDER BY name"
        ));
        let values_each_sql = self.sql(&format!(
            "SELECT name, value FROM {{s}}.metric_values WHERE workflow_id = $1 {version_clause}
             ORDER BY name, run_id"
        ));
        self.bounded(&what, async {
            let client = self.client().await?;
            let st = client.prepare_cached(&totals_sql).await?;
            let row = client.query_one(&st, &params).await?;
            let mut s = MetricsSummary::empty(workflow_id.clone(), query.workflow_version);
            let n: i64 = row.get(0);
            if n == 0 {
                return Ok(s);
            }
            let loc = || format!("metrics of workflow {workflow_id}");
            s.executions = n as u64;
            s.succeeded = row.get::<_, i64>(1) as u64;
            s.failed = row.get::<_, i64>(2) as u64;
            s.cancelled = row.get::<_, i64>(3) as u64;
            s.success_rate = Some(s.succeeded as f64 / s.executions as f64);
            let pct: Vec<i64> = row.get(7);
            let (min, max): (i64, i64) = (row.get(4), row.get(5));
            let sum: f64 = row.get(6);
            if pct.len() != 3 {
                return Err(Fail::Core(Error::corrupt(
                    loc(),
                    "percentile_disc returned no percentiles",
                )));
            }
            s.duration = Some(DurationStats {
                min: min as u64,
                max: max as u64,
                mean: sum / s.executions as f64,
                p50: pct[0] as u64,
                p95: pct[1] as u64,
                p99: pct[2] as u64,
            });
            s.first_recorded_at = Some(ts(loc, row.get(8))?);
            s.last_recorded_at = Some(ts(loc, row.get(9))?);
            let st = client.prepare_cached(&values_sql).await?;
            match client.query(&st, &params).await {
                Ok(rows) => {
                    for r in rows {
                        let count = r.get::<_, i64>(1) as u64;
                        let sum: f64 = r.get(2);
                        let stats = ValueStats {
                            count,
                            sum,
                            min: r.get(3),
                            max: r.get(4),
                            mean: sum / count as f64,
                        };
                        s.values.insert(r.get(0), stats);
                    }
                }
                // A float8 sum that leaves the range of f64 is an error in
                // PostgreSQL and infinity in the reference: sum the values
                // here, in the same order, streamed.
                Err(e) if e.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => {
                    let st = client.prepare_cached(&values_each_sql).await?;
                    let rows = client.query_raw(&st, params.iter().copied()).await?;
                    pin_mut!(rows);
                    while let Some(r) = rows.try_next().await? {
                        let (name, x): (String, f64) = (r.get(0), r.get(1));
                        let stats = s.values.entry(name).or_insert(ValueStats {
                            count: 0,
                            sum: 0.0,
                            min: x,
                            max: x,
                            mean: 0.0,
                        });
                        stats.count += 1;
                        stats.sum += x;
                        stats.min = stats.min.min(x);
                        stats.max = stats.max.max(x);
                    }
                    for stats in s.values.values_mut() {
                        stats.mean = stats.sum / stats.count as f64;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            Ok(s)
        })
        .await
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
