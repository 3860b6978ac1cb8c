//! Metrics summaries kept up to date in the transaction of every metric
//! insert and delete (`metric_totals`, `metric_value_totals`,
//! `metric_duration_buckets`, schema version 5), and read back with a few
//! index seeks in one snapshot. The rules are core's
//! ([`runstore_core::summary`]); this module stores them.
//!
//! Writers lock the changed versions' `metric_totals` rows first, in the
//! key order [`SummaryChange`] gives, and touch a version's value and
//! bucket rows only while holding its totals row: concurrent writers queue
//! on those rows in one order and cannot deadlock each other.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use futures_util::future::{try_join, try_join_all, try_join3};
use runstore_core::summary::{
    ExactSum, Extremes, RankProbe, SummaryChange, SummaryParts, ValueTotals, VersionChange,
    VersionTotals, apply_bucket, bucket_of,
};
use runstore_core::{Error, MetricsSummary, SummaryQuery, Version, WorkflowId};
use tokio_postgres::IsolationLevel;

use crate::PostgresStore;
use crate::error::Fail;
use crate::metrics::{METRIC_COLUMNS, metric_of};
use crate::rows::{ts, v32};

/// Metrics read per page while building the summaries of a database that
/// already holds metrics (schema step 5).
const BUILD_PAGE: i32 = 10_000;
/// Counters a build holds before it writes them.
const BUILD_HELD: usize = 100_000;

/// Locks (creating with zero counts) the totals rows of the changed
/// versions, in the order given, and returns what they hold.
const LOCK_TOTALS: &str = "INSERT INTO {s}.metric_totals AS t
     (workflow_id, workflow_version, executions, succeeded, failed, cancelled, duration_sum)
 SELECT u.w, u.v, 0, 0, 0, 0, '\\x00000000000000000000000000000000'::bytea
 FROM unnest($1::text[], $2::int4[]) WITH ORDINALITY AS u(w, v, i) ORDER BY u.i
 ON CONFLICT (workflow_id, workflow_version) DO UPDATE SET executions = t.executions
 RETURNING t.workflow_id, t.workflow_version, t.executions, t.succeeded, t.failed,
           t.cancelled, t.duration_sum";

/// The stored totals of the changed values (under their versions' locks).
const READ_VALUES: &str = "SELECT t.workflow_id, t.workflow_version, t.name, t.count, t.sum
 FROM {s}.metric_value_totals t
 JOIN unnest($1::text[], $2::int4[], $3::text[]) AS u(w, v, n)
   ON t.workflow_id = u.w COLLATE \"C\" AND t.workflow_version = u.v
  AND t.name = u.n COLLATE \"C\"
 ORDER BY t.workflow_id, t.workflow_version, t.name
 FOR UPDATE OF t";

/// Writes the new totals (a version or value whose count is zero is
/// deleted) and adds the bucket deltas; returns the buckets whose count
/// is now zero or below (to delete, or refuse).
const WRITE: &str = "WITH tu AS (
     SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[], $5::int8[],
                          $6::int8[], $7::bytea[]) AS u(w, v, e, ok, f, c, d)
 ), t_del AS (
     DELETE FROM {s}.metric_totals t USING tu
     WHERE t.workflow_id = tu.w COLLATE \"C\" AND t.workflow_version = tu.v AND tu.e = 0
 ), t_upd AS (
     UPDATE {s}.metric_totals t
     SET executions = tu.e, succeeded = tu.ok, failed = tu.f, cancelled = tu.c, duration_sum = tu.d
     FROM tu
     WHERE t.workflow_id = tu.w COLLATE \"C\" AND t.workflow_version = tu.v AND tu.e > 0
 ), vu AS (
     SELECT * FROM unnest($8::text[], $9::int4[], $10::text[], $11::int8[], $12::bytea[])
         AS u(w, v, n, c, s)
 ), v_del AS (
     DELETE FROM {s}.metric_value_totals t USING vu
     WHERE t.workflow_id = vu.w COLLATE \"C\" AND t.workflow_version = vu.v
       AND t.name = vu.n COLLATE \"C\" AND vu.c = 0
 ), v_put AS (
     INSERT INTO {s}.metric_value_totals (workflow_id, workflow_version, name, count, sum)
     SELECT w, v, n, c, s FROM vu WHERE c > 0
     ON CONFLICT (workflow_id, workflow_version, name)
     DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum
 ), b AS (
     INSERT INTO {s}.metric_duration_buckets AS b (workflow_id, workflow_version, bucket, count)
     SELECT * FROM unnest($13::text[], $14::int4[], $15::int4[], $16::int8[])
     ON CONFLICT (workflow_id, workflow_version, bucket) DO UPDATE SET count = b.count + EXCLUDED.count
     RETURNING b.workflow_id, b.workflow_version, b.bucket, b.count
 )
 SELECT workflow_id, workflow_version, bucket, count FROM b WHERE count <= 0";

const DELETE_EMPTY_BUCKETS: &str = "DELETE FROM {s}.metric_duration_buckets b
 USING unnest($1::text[], $2::int4[], $3::int4[]) AS u(w, v, k)
 WHERE b.workflow_id = u.w COLLATE \"C\" AND b.workflow_version = u.v AND b.bucket = u.k
   AND b.count = 0";

/// The new totals of the changed versions, as statement parameters.
#[derive(Default)]
struct TotalsColumns {
    executions: Vec<i64>,
    succeeded: Vec<i64>,
    failed: Vec<i64>,
    cancelled: Vec<i64>,
    duration_sums: Vec<Vec<u8>>,
}

fn what(wf: &str, v: i32) -> String {
    format!("the summary of workflow {wf} version {v}")
}

/// A stored count.
fn unsigned(what: &str, n: i64) -> Result<u64, Fail> {
    u64::try_from(n)
        .map_err(|_| Fail::Core(Error::corrupt(what, format!("a negative count ({n})"))))
}

/// A count as stored.
fn signed(what: &str, n: u64) -> Result<i64, Fail> {
    i64::try_from(n).map_err(|_| {
        Fail::Core(Error::corrupt(
            what,
            format!("a count too large to store ({n})"),
        ))
    })
}

/// Applies `change` to the counters inside the caller's write transaction
/// (`schema` quoted): three statements, a fourth when a duration bucket
/// empties.
pub(crate) async fn apply(
    tx: &Transaction<'_>,
    schema: &str,
    change: &SummaryChange,
) -> Result<(), Fail> {
    if change.is_empty() {
        return Ok(());
    }
    let sql = |t: &str| t.replace("{s}", schema);
    let versions: Vec<(&WorkflowId, Version, &VersionChange)> =
        change.versions().map(|((wf, v), c)| (wf, *v, c)).collect();
    let wfs: Vec<&str> = versions.iter().map(|(wf, _, _)| wf.as_str()).collect();
    let vs: Vec<i32> = versions.iter().map(|(_, v, _)| v32(*v)).collect();

    // 1. The versions' totals rows, locked in key order.
    let lock = tx.prepare_cached(&sql(LOCK_TOTALS)).await?;
    let mut stored: HashMap<(String, i32), VersionTotals> = HashMap::new();
    for r in tx.query(&lock, &[&wfs, &vs]).await? {
        let (wf, v): (String, i32) = (r.get(0), r.get(1));
        let w = what(&wf, v);
        let totals = VersionTotals {
            executions: unsigned(&w, r.get(2))?,
            succeeded: unsigned(&w, r.get(3))?,
            failed: unsigned(&w, r.get(4))?,
            cancelled: unsigned(&w, r.get(5))?,
            duration_sum: VersionTotals::duration_sum_from(&w, r.get(6))?,
        };
        stored.insert((wf, v), totals);
    }

    // 2. The changed values' totals.
    let mut value_keys: (Vec<&str>, Vec<i32>, Vec<&str>) = Default::default();
    for (wf, v, c) in &versions {
        for name in c.values.keys() {
            value_keys.0.push(wf.as_str());
            value_keys.1.push(v32(*v));
            value_keys.2.push(name);
        }
    }
    let mut stored_values: HashMap<(String, i32, String), ValueTotals> = HashMap::new();
    if !value_keys.0.is_empty() {
        let read = tx.prepare_cached(&sql(READ_VALUES)).await?;
        for r in tx
            .query(&read, &[&value_keys.0, &value_keys.1, &value_keys.2])
            .await?
        {
            let (wf, v, name): (String, i32, String) = (r.get(0), r.get(1), r.get(2));
            let w = what(&wf, v);
            let totals = ValueTotals {
                count: unsigned(&w, r.get(3))?,
                sum: ExactSum::from_bytes(&w, r.get(4))?,
            };
            stored_values.insert((wf, v, name), totals);
        }
    }

    // The new counters, worked out here by core's rules.
    let mut t_cols = TotalsColumns::default();
    let mut v_cols: (Vec<i64>, Vec<Vec<u8>>) = Default::default();
    let mut b_cols: (Vec<&str>, Vec<i32>, Vec<i32>, Vec<i64>) = Default::default();
    let mut deltas: HashMap<(&str, i32, i32), i64> = HashMap::new();
    for (wf, v, c) in &versions {
        let v = v32(*v);
        let w = what(wf.as_str(), v);
        let mut totals = stored
            .remove(&(wf.as_str().to_string(), v))
            .ok_or_else(|| Fail::Retry(format!("the totals row of {w} was not locked")))?;
        totals.apply(c, &w)?;
        t_cols.executions.push(signed(&w, totals.executions)?);
        t_cols.succeeded.push(signed(&w, totals.succeeded)?);
        t_cols.failed.push(signed(&w, totals.failed)?);
        t_cols.cancelled.push(signed(&w, totals.cancelled)?);
        t_cols
            .duration_sums
            .push(totals.duration_sum_bytes().to_vec());
        for (name, (count, sum)) in &c.values {
            let mut totals = stored_values
                .remove(&(wf.as_str().to_string(), v, name.clone()))
                .unwrap_or_default();
            totals.apply(*count, sum, &w)?;
            v_cols.0.push(signed(&w, totals.count)?);
            v_cols.1.push(totals.sum.to_bytes());
        }
        for (&bucket, &delta) in &c.buckets {
            let bucket = i32::try_from(bucket)
                .map_err(|_| Fail::Core(Error::corrupt(&w, format!("duration bucket {bucket}"))))?;
            b_cols.0.push(wf.as_str());
            b_cols.1.push(v);
            b_cols.2.push(bucket);
            b_cols.3.push(delta);
            deltas.insert((wf.as_str(), v, bucket), delta);
        }
    }

    // 3. Everything written in one statement.
    let write = tx.prepare_cached(&sql(WRITE)).await?;
    let emptied = tx
        .query(
            &write,
            &[
                &wfs,
                &vs,
                &t_cols.executions,
                &t_cols.succeeded,
                &t_cols.failed,
                &t_cols.cancelled,
                &t_cols.duration_sums,
                &value_keys.0,
                &value_keys.1,
                &value_keys.2,
                &v_cols.0,
                &v_cols.1,
                &b_cols.0,
                &b_cols.1,
                &b_cols.2,
                &b_cols.3,
            ],
        )
        .await?;

    // 4. Buckets that emptied are deleted; one below zero is refused
    // (the transaction rolls back).
    let mut empty: (Vec<String>, Vec<i32>, Vec<i32>) = Default::default();
    for r in &emptied {
        let (wf, v, bucket, after): (String, i32, i32, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let w = what(&wf, v);
        let delta = deltas.get(&(wf.as_str(), v, bucket)).copied().unwrap_or(0);
        let mut before = unsigned(&w, after - delta)?;
        apply_bucket(&mut before, delta, &w)?;
        if after == 0 {
            empty.0.push(wf);
            empty.1.push(v);
            empty.2.push(bucket);
        }
    }
    if !empty.0.is_empty() {
        let del = tx.prepare_cached(&sql(DELETE_EMPTY_BUCKETS)).await?;
        tx.execute(&del, &[&empty.0, &empty.1, &empty.2]).await?;
    }
    Ok(())
}

/// Fills the counters from the metrics already stored, read a page at a
/// time through a portal (schema step 5, in the step's transaction). The
/// pages' changes are added up and applied when they hold many counters
/// (a change holds at most a few thousand per version, however many
/// metrics it counts), so memory stays bounded and few statements run.
pub(crate) async fn build(tx: &Transaction<'_>, schema: &str) -> Result<(), Fail> {
    let st = tx
        .prepare(&format!("SELECT {METRIC_COLUMNS} FROM {schema}.metrics"))
        .await?;
    let portal = tx.bind(&st, &[]).await?;
    let mut change = SummaryChange::default();
    loop {
        let rows = tx.query_portal(&portal, BUILD_PAGE).await?;
        for row in &rows {
            change.insert(&metric_of(row)?);
        }
        let held: usize = change
            .versions()
            .map(|(_, c)| 1 + c.buckets.len() + c.values.len())
            .sum();
        if rows.is_empty() || held > BUILD_HELD {
            apply(tx, schema, &change).await?;
            change = SummaryChange::default();
        }
        if rows.is_empty() {
            return Ok(());
        }
    }
}

/// One version's totals row with its extremes (index seeks).
const READ_TOTALS: &str = "SELECT t.workflow_version, t.executions, t.succeeded, t.failed,
        t.cancelled, t.duration_sum,
   (SELECT m.duration_micros FROM {s}.metrics m
     WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
     ORDER BY m.duration_micros LIMIT 1),
   (SELECT m.duration_micros FROM {s}.metrics m
     WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
     ORDER BY m.duration_micros DESC LIMIT 1),
   (SELECT m.recorded_at FROM {s}.metrics m
     WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
     ORDER BY m.recorded_at LIMIT 1),
   (SELECT m.recorded_at FROM {s}.metrics m
     WHERE m.workflow_id = t.workflow_id AND m.workflow_version = t.workflow_version
     ORDER BY m.recorded_at DESC LIMIT 1)
 FROM {s}.metric_totals t WHERE t.workflow_id = $1";

/// Per version and name, a value's totals with its least and greatest
/// value (index seeks).
const READ_VALUE_TOTALS: &str = "SELECT t.name, t.count, t.sum,
   (SELECT x.value FROM {s}.metric_values x
     WHERE x.workflow_id = t.workflow_id AND x.workflow_version = t.workflow_version
       AND x.name = t.name ORDER BY x.value LIMIT 1),
   (SELECT x.value FROM {s}.metric_values x
     WHERE x.workflow_id = t.workflow_id AND x.workflow_version = t.workflow_version
       AND x.name = t.name ORDER BY x.value DESC LIMIT 1)
 FROM {s}.metric_value_totals t WHERE t.workflow_id = $1";

/// Each version's bucket counts, as two arrays (a bucket's counts of
/// several versions are added up here, cheaper than `GROUP BY`).
const READ_BUCKETS: &str = "SELECT array_agg(t.bucket), array_agg(t.count)
 FROM {s}.metric_duration_buckets t WHERE t.workflow_id = $1";

/// Versions up to which a percentile's read has one branch per version.
const MAX_BRANCHES: usize = 64;

/// The read of a percentile inside one bucket: the `$5`-th (0-based)
/// duration of the range `$2..=$3` among the metrics of workflow `$1` and
/// of versions `$6`, `$7` …, counted from the low end or (`desc`) the high
/// end. One ordered branch per version, each stopping after `$4` (the
/// offset + 1) durations, merged in order (Merge Append), so a read visits
/// about `$5` index entries whatever the planner's row estimates. Beyond
/// [`MAX_BRANCHES`] versions, one branch for all (`$6` an array) reads
/// the whole range.
fn within_sql(versions: usize, desc: bool) -> String {
    let dir = if desc { "DESC" } else { "" };
    let branch = |version: &str| {
        format!(
            "(SELECT duration_micros AS d FROM {{s}}.metrics
              WHERE workflow_id = $1 AND workflow_version {version}
                AND duration_micros >= $2 AND duration_micros <= $3
              ORDER BY duration_micros {dir} LIMIT $4)"
        )
    };
    let branches = if versions > MAX_BRANCHES {
        branch("= ANY($6::int4[])")
    } else {
        (0..versions)
            .map(|i| branch(&format!("= ${}", 6 + i)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    format!("SELECT d FROM ({branches}) u ORDER BY d {dir} OFFSET $5 LIMIT 1")
}

impl PostgresStore {
    /// The summary from the counters, the extremes and at most three reads
    /// inside one duration bucket, all in one read-only snapshot.
    pub(crate) async fn read_summary(
        &self,
        workflow_id: &WorkflowId,
        query: &SummaryQuery,
    ) -> runstore_core::Result<MetricsSummary> {
        let what = format!("summarizing the metrics of workflow {workflow_id}");
        let loc = format!("the summary of workflow {workflow_id}");
        let corrupt = |why: &str| Fail::Core(Error::corrupt(&loc, why));
        let version = query.workflow_version.map(v32);
        let cond = if version.is_some() {
            " AND t.workflow_version = $2"
        } else {
            ""
        };
        let wf = workflow_id.as_str();
        self.bounded(&what, async {
            let mut client = self.client().await?;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let (st_totals, st_values, st_buckets) = try_join3(
                tx.prepare_cached(&self.sql(&format!("{READ_TOTALS}{cond}"))),
                tx.prepare_cached(&self.sql(&format!("{READ_VALUE_TOTALS}{cond}"))),
                tx.prepare_cached(&self.sql(&format!("{READ_BUCKETS}{cond}"))),
            )
            .await?;
            let one;
            let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = match &version {
                Some(v) => {
                    one = [&wf as _, v as _];
                    &one
                }
                None => &[&wf],
            };
            let (totals, values, buckets) = try_join3(
                tx.query(&st_totals, params),
                tx.query(&st_values, params),
                tx.query(&st_buckets, params),
            )
            .await?;
            let mut parts = SummaryParts::new(workflow_id.clone(), query.workflow_version);
            let mut versions: Vec<i32> = Vec::with_capacity(totals.len());
            for r in &totals {
                versions.push(r.get(0));
                let t = VersionTotals {
                    executions: unsigned(&loc, r.get(1))?,
                    succeeded: unsigned(&loc, r.get(2))?,
                    failed: unsigned(&loc, r.get(3))?,
                    cancelled: unsigned(&loc, r.get(4))?,
                    duration_sum: VersionTotals::duration_sum_from(&loc, r.get(5))?,
                };
                let extremes = match (
                    r.get::<_, Option<i64>>(6),
                    r.get::<_, Option<i64>>(7),
                    r.get::<_, Option<i64>>(8),
                    r.get::<_, Option<i64>>(9),
                ) {
                    (None, None, None, None) => None,
                    (Some(lo), Some(hi), Some(first), Some(last)) => Some(Extremes {
                        min_duration: unsigned(&loc, lo)?,
                        max_duration: unsigned(&loc, hi)?,
                        first_recorded_at: ts(|| loc.clone(), first)?,
                        last_recorded_at: ts(|| loc.clone(), last)?,
                    }),
                    _ => return Err(corrupt("metrics vanished within one snapshot")),
                };
                parts.add_version(&t, extremes)?;
            }
            for r in &values {
                let name: String = r.get(0);
                let t = ValueTotals {
                    count: unsigned(&loc, r.get(1))?,
                    sum: ExactSum::from_bytes(&loc, r.get(2))?,
                };
                let (Some(min), Some(max)) = (r.get::<_, Option<f64>>(3), r.get(4)) else {
                    return Err(corrupt(&format!(
                        "value `{name}` is counted but not stored; rebuild the summaries"
                    )));
                };
                parts.add_value(&name, &t, min, max)?;
            }
            let (bucket_ids, bucket_counts): (Vec<i32>, Vec<i64>) = match buckets.first() {
                Some(r) => (
                    r.get::<_, Option<Vec<i32>>>(0).unwrap_or_default(),
                    r.get::<_, Option<Vec<i64>>>(1).unwrap_or_default(),
                ),
                None => Default::default(),
            };
            if bucket_ids.len() != bucket_counts.len() {
                return Err(corrupt("bucket counts without their buckets"));
            }
            let mut in_bucket: HashMap<u32, u64> = HashMap::with_capacity(bucket_ids.len());
            for (bucket, count) in bucket_ids.into_iter().zip(bucket_counts) {
                let bucket =
                    u32::try_from(bucket).map_err(|_| corrupt("a negative duration bucket"))?;
                let count = unsigned(&loc, count)?;
                parts.add_bucket(bucket, count);
                let sum = in_bucket.entry(bucket).or_default();
                *sum = sum
                    .checked_add(count)
                    .ok_or_else(|| corrupt("bucket counts overflow"))?;
            }
            let probes = parts.probes()?;
            let within = if probes.iter().any(|p| matches!(p, RankProbe::Within { .. })) {
                Some(
                    try_join(
                        tx.prepare_cached(&self.sql(&within_sql(versions.len(), false))),
                        tx.prepare_cached(&self.sql(&within_sql(versions.len(), true))),
                    )
                    .await?,
                )
            } else {
                None
            };
            let reads = probes.iter().map(|probe| {
                let (within, tx, versions, loc) = (&within, &tx, &versions, &loc);
                let in_bucket = &in_bucket;
                async move {
                    let (lo, hi, offset) = match *probe {
                        RankProbe::Exact(d) => return Ok::<u64, Fail>(d),
                        RankProbe::Within { lo, hi, offset } => (lo, hi, offset),
                    };
                    let missing = || {
                        Fail::Core(Error::corrupt(
                            loc,
                            "a duration bucket counts more metrics than it holds; rebuild the summaries",
                        ))
                    };
                    // The bucket's durations are read from the nearer end.
                    let count = in_bucket.get(&bucket_of(lo)).copied().unwrap_or(0);
                    if offset >= count {
                        return Err(missing());
                    }
                    let (st, offset) = match within {
                        Some((asc, _)) if offset < count / 2 => (asc, offset),
                        Some((_, desc)) => (desc, count - 1 - offset),
                        None => return Err(missing()),
                    };
                    let lo = i64::try_from(lo).map_err(|_| missing())?;
                    // Stored durations fit i64; the last bucket ends past it.
                    let last = i64::try_from(hi.saturating_sub(1)).unwrap_or(i64::MAX);
                    let offset = i64::try_from(offset).map_err(|_| missing())?;
                    let limit = offset + 1;
                    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                        vec![&wf, &lo, &last, &limit, &offset];
                    if versions.len() > MAX_BRANCHES {
                        params.push(versions);
                    } else {
                        params.extend(
                            versions
                                .iter()
                                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)),
                        );
                    }
                    let row = tx.query_opt(st, &params).await?.ok_or_else(missing)?;
                    unsigned(loc, row.get::<_, i64>(0))
                }
            });
            let found = try_join_all(reads).await?;
            tx.commit().await?;
            Ok(parts.finish(&found)?)
        })
        .await
    }
}
