//! Metrics summaries kept up to date in the write transaction of every
//! metric insert and delete (`metric_totals`, `metric_value_totals`,
//! `metric_duration_buckets`), and read back with a few index seeks. The
//! rules are core's ([`runstore_core::summary`]); this module stores them.

use runstore_core::summary::{
    ExactSum, Extremes, RankProbe, SummaryChange, SummaryParts, ValueTotals, VersionTotals,
    apply_bucket,
};
use runstore_core::{ExecutionMetric, MetricsSummary, Result, SummaryQuery, WorkflowId};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::bulk_load;
use crate::error::Ctx;
use crate::rows;
use crate::select::query_rows;

/// Applies a change to the counters, inside the caller's write
/// transaction.
pub(crate) fn apply(conn: &Connection, change: &SummaryChange) -> Result<()> {
    let what = "updating the metrics summary";
    for ((wf, version), c) in change.versions() {
        let key = format!("the summary of workflow {wf} version {version}");
        let (wf, v) = (wf.as_str(), version.get());
        let stored: Option<(i64, i64, i64, i64, Vec<u8>)> = conn
            .prepare_cached(
                "SELECT executions, succeeded, failed, cancelled, duration_sum
                 FROM metric_totals WHERE workflow_id = ?1 AND workflow_version = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![wf, v], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .ctx(what)?;
        let mut totals = match stored {
            None => VersionTotals::default(),
            Some((n, ok, failed, cancelled, sum)) => VersionTotals {
                executions: rows::unsigned(&key, n)?,
                succeeded: rows::unsigned(&key, ok)?,
                failed: rows::unsigned(&key, failed)?,
                cancelled: rows::unsigned(&key, cancelled)?,
                duration_sum: VersionTotals::duration_sum_from(&key, &sum)?,
            },
        };
        totals.apply(c, &key)?;
        if totals.executions == 0 {
            conn.prepare_cached(
                "DELETE FROM metric_totals WHERE workflow_id = ?1 AND workflow_version = ?2",
            )
            .and_then(|mut s| s.execute(params![wf, v]))
            .ctx(what)?;
        } else {
            let counts = [
                rows::signed("executions", totals.executions)?,
                rows::signed("succeeded", totals.succeeded)?,
                rows::signed("failed", totals.failed)?,
                rows::signed("cancelled", totals.cancelled)?,
            ];
            conn.prepare_cached(
                "INSERT OR REPLACE INTO metric_totals
                 (workflow_id, workflow_version, executions, succeeded, failed, cancelled, duration_sum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    wf,
                    v,
                    counts[0],
                    counts[1],
                    counts[2],
                    counts[3],
                    totals.duration_sum_bytes().to_vec()
                ])
            })
            .ctx(what)?;
        }
        let mut bump = conn
            .prepare_cached(
                "INSERT INTO metric_duration_buckets (workflow_id, workflow_version, bucket, count)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workflow_id, workflow_version, bucket)
                 DO UPDATE SET count = count + excluded.count
                 RETURNING count",
            )
            .ctx(what)?;
        for (&bucket, &delta) in &c.buckets {
            let after: i64 = bump
                .query_row(params![wf, v, bucket, delta], |r| r.get(0))
                .ctx(what)?;
            // The change is checked against what was stored before it.
            let mut before = rows::unsigned(&key, after - delta)?;
            apply_bucket(&mut before, delta, &key)?;
            if after == 0 {
                conn.prepare_cached(
                    "DELETE FROM metric_duration_buckets
                     WHERE workflow_id = ?1 AND workflow_version = ?2 AND bucket = ?3",
                )
                .and_then(|mut s| s.execute(params![wf, v, bucket]))
                .ctx(what)?;
            }
        }
        for (name, (count, sum)) in &c.values {
            let stored: Option<(i64, Vec<u8>)> = conn
                .prepare_cached(
                    "SELECT count, sum FROM metric_value_totals
                     WHERE workflow_id = ?1 AND workflow_version = ?2 AND name = ?3",
                )
                .and_then(|mut s| {
                    s.query_row(params![wf, v, name], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .ctx(what)?;
            let mut totals = match stored {
                None => ValueTotals::default(),
                Some((n, bytes)) => ValueTotals {
                    count: rows::unsigned(&key, n)?,
                    sum: ExactSum::from_bytes(&key, &bytes)?,
                },
            };
            totals.apply(*count, sum, &key)?;
            if totals.count == 0 {
                conn.prepare_cached(
                    "DELETE FROM metric_value_totals
                     WHERE workflow_id = ?1 AND workflow_version = ?2 AND name = ?3",
                )
                .and_then(|mut s| s.execute(params![wf, v, name]))
                .ctx(what)?;
            } else {
                let n = rows::signed("count", totals.count)?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO metric_value_totals
                     (workflow_id, workflow_version, name, count, sum) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![wf, v, name, n, totals.sum.to_bytes()]))
                .ctx(what)?;
            }
        }
    }
    Ok(())
}

/// Builds the counters afresh from the stored metrics, a page at a time:
/// the step that adds them to an existing database.
pub(crate) fn rebuild(conn: &Connection) -> Result<()> {
    let what = "building the metrics summaries";
    conn.execute_batch(
        "DELETE FROM metric_totals; DELETE FROM metric_value_totals;
         DELETE FROM metric_duration_buckets;",
    )
    .ctx(what)?;
    let mut after = String::new();
    loop {
        let page: Vec<ExecutionMetric> = query_rows(
            conn,
            &format!(
                "SELECT {} FROM metrics WHERE run_id > ?1 ORDER BY run_id LIMIT 10000",
                crate::metrics::METRIC_COLUMNS
            ),
            [&after],
            crate::metrics::convert_metric,
            what,
        )?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.run_id.to_string();
        apply(conn, &SummaryChange::inserting(&page))?;
    }
}

/// The summary from the counters, the extremes (index seeks) and at most
/// three reads inside one duration bucket.
pub(crate) fn read(conn: &Connection, wf: &WorkflowId, q: &SummaryQuery) -> Result<MetricsSummary> {
    let what = "summarizing metrics";
    let loc = format!("the summary of workflow {wf}");
    let mut args = vec![Value::Text(wf.as_str().into())];
    let version_cond = match q.workflow_version {
        Some(v) => {
            args.push(Value::Integer(i64::from(v.get())));
            "AND t.workflow_version = ?2"
        }
        None => "",
    };
    let mut parts = SummaryParts::new(wf.clone(), q.workflow_version);
    // A bulk load may have dropped these indexes (see `bulk_load`).
    let by_duration = bulk_load::indexed_by(conn, "metrics_by_version")?;
    let by_time = bulk_load::indexed_by(conn, "metrics_by_time")?;
    let by_value = bulk_load::indexed_by(conn, "metric_values_by_version")?;
    type TotalsRow = (i64, i64, i64, i64, i64, Vec<u8>, i64, i64, i64, i64);
    let versions: Vec<TotalsRow> = query_rows(
        conn,
        &format!(
            "SELECT t.workflow_version, t.executions, t.succeeded, t.failed, t.cancelled, t.duration_sum,
               (SELECT duration_micros FROM metrics m {by_duration}
                 WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
                 ORDER BY duration_micros LIMIT 1),
               (SELECT duration_micros FROM metrics m {by_duration}
                 WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
                 ORDER BY duration_micros DESC LIMIT 1),
               (SELECT recorded_at FROM metrics m {by_time}
                 WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
                 ORDER BY recorded_at LIMIT 1),
               (SELECT recorded_at FROM metrics m {by_time}
                 WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
                 ORDER BY recorded_at DESC LIMIT 1)
             FROM metric_totals t WHERE t.workflow_id = ?1 {version_cond}"
        ),
        params_from_iter(args.iter()),
        Ok,
        what,
    )?;
    let mut selected = Vec::new();
    for (version, n, ok, failed, cancelled, sum, dmin, dmax, first, last) in versions {
        selected.push(version);
        let totals = VersionTotals {
            executions: rows::unsigned(&loc, n)?,
            succeeded: rows::unsigned(&loc, ok)?,
            failed: rows::unsigned(&loc, failed)?,
            cancelled: rows::unsigned(&loc, cancelled)?,
            duration_sum: VersionTotals::duration_sum_from(&loc, &sum)?,
        };
        let extremes = Extremes {
            min_duration: rows::unsigned(&loc, dmin)?,
            max_duration: rows::unsigned(&loc, dmax)?,
            first_recorded_at: rows::ts(&loc, first)?,
            last_recorded_at: rows::ts(&loc, last)?,
        };
        parts.add_version(&totals, Some(extremes))?;
    }
    type ValueRow = (String, i64, Vec<u8>, f64, f64);
    let values: Vec<ValueRow> = query_rows(
        conn,
        &format!(
            "SELECT t.name, t.count, t.sum,
               (SELECT value FROM metric_values x {by_value}
                 WHERE x.workflow_id = t.workflow_id AND x.workflow_version = t.workflow_version
                   AND x.name = t.name ORDER BY value LIMIT 1),
               (SELECT value FROM metric_values x {by_value}
                 WHERE x.workflow_id = t.workflow_id AND x.workflow_version = t.workflow_version
                   AND x.name = t.name ORDER BY value DESC LIMIT 1)
             FROM metric_value_totals t WHERE t.workflow_id = ?1 {version_cond}"
        ),
        params_from_iter(args.iter()),
        Ok,
        what,
    )?;
    for (name, count, sum, min, max) in values {
        let totals = ValueTotals {
            count: rows::unsigned(&loc, count)?,
            sum: ExactSum::from_bytes(&loc, &sum)?,
        };
        parts.add_value(&name, &totals, min, max)?;
    }
    let buckets: Vec<(i64, i64)> = query_rows(
        conn,
        &format!(
            "SELECT bucket, count FROM metric_duration_buckets t
             WHERE t.workflow_id = ?1 {version_cond}"
        ),
        params_from_iter(args.iter()),
        Ok,
        what,
    )?;
    for (bucket, count) in buckets {
        let bucket = u32::try_from(bucket).map_err(|_| {
            runstore_core::Error::corrupt(&loc, format!("duration bucket {bucket}"))
        })?;
        parts.add_bucket(bucket, rows::unsigned(&loc, count)?);
    }
    // The versions summarized, so the one index serves one version or all.
    let selected = rows::to_json("versions", &selected)?;
    let mut within = conn
        .prepare_cached(&format!(
            "SELECT duration_micros FROM metrics {by_duration}
             WHERE workflow_id = ?1 AND workflow_version IN (SELECT value FROM json_each(?2))
               AND duration_micros BETWEEN ?3 AND ?4
             ORDER BY duration_micros LIMIT 1 OFFSET ?5"
        ))
        .ctx(what)?;
    let mut found = Vec::new();
    for probe in parts.probes()? {
        found.push(match probe {
            RankProbe::Exact(d) => d,
            RankProbe::Within { lo, hi, offset } => {
                let mut a = vec![
                    Value::Text(wf.as_str().into()),
                    Value::Text(selected.clone()),
                ];
                a.push(Value::Integer(rows::signed("duration", lo)?));
                // Durations fit i64; the last bucket ends past it.
                a.push(Value::Integer(i64::try_from(hi - 1).unwrap_or(i64::MAX)));
                a.push(Value::Integer(rows::signed("offset", offset)?));
                let d: Option<i64> = within
                    .query_row(params_from_iter(a), |r| r.get(0))
                    .optional()
                    .ctx(what)?;
                let d = d.ok_or_else(|| {
                    runstore_core::Error::corrupt(
                        &loc,
                        "a duration bucket counts more metrics than it holds; rebuild the summaries",
                    )
                })?;
                rows::unsigned(&loc, d)?
            }
        });
    }
    parts.finish(&found)
}
