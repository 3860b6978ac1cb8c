//! Rules for `MetricsRepository` (docs/DESIGN.md section 4, "Metrics").

use std::collections::BTreeMap;

use runstore_core::{
    ErrorKind, ExecutionMetric, MetricQuery, MetricsRepository, MetricsSummary, Pattern, PatternId,
    PatternQuery, Result, RunStatus, SummaryQuery, Version,
};
use serde_json::json;

use crate::factory::StoreFactory;
use crate::fixtures::{SplitMix, all_pages, metric, pattern, rid, t, v, wf};
use crate::outcome::RuleResult;
use crate::{ensure, ensure_eq, ensure_err};

/// Every metric a query selects, read page by page with `page` items a page.
async fn all_metrics(
    m: &dyn MetricsRepository,
    query: MetricQuery,
    page: usize,
) -> Result<(Vec<ExecutionMetric>, usize)> {
    all_pages(|c| m.list(query.clone().with_limit(page).with_cursor(c))).await
}

/// Every pattern a query selects, read page by page.
async fn all_patterns(
    m: &dyn MetricsRepository,
    query: PatternQuery,
    page: usize,
) -> Result<Vec<Pattern>> {
    let (items, _) =
        all_pages(|c| m.list_patterns(query.clone().with_limit(page).with_cursor(c))).await?;
    Ok(items)
}

/// Whether two floats are equal within 1e-9 (false for NaN).
fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

fn ids(ms: &[ExecutionMetric]) -> Vec<String> {
    ms.iter().map(|m| m.run_id.to_string()).collect()
}

/// Checks every field of a summary against expected counts.
fn check_counts(
    got: &MetricsSummary,
    what: &str,
    version: Option<Version>,
    (executions, succeeded, failed, cancelled): (u64, u64, u64, u64),
) -> RuleResult {
    ensure_eq!(
        got.workflow_version,
        version,
        "summary of {what}: workflow_version"
    );
    ensure_eq!(
        (got.executions, got.succeeded, got.failed, got.cancelled),
        (executions, succeeded, failed, cancelled),
        "summary of {what}: (executions, succeeded, failed, cancelled)"
    );
    let rate = got.success_rate.unwrap_or(f64::NAN);
    let want = succeeded as f64 / executions as f64;
    ensure!(
        near(rate, want),
        "summary of {what}: success_rate expected {want}, got {:?}",
        got.success_rate
    );
    Ok(())
}

/// "One execution metric per run (status, duration, counters, named numeric
/// values)." Every field is read back as written, including extreme
/// counters, negative and fractional values and microsecond times; invalid
/// metrics are refused and store nothing.
pub async fn metric_record_round_trip(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let full = ExecutionMetric {
        run_id: rid("run-Round.trip_1"),
        workflow_id: wf("etl"),
        workflow_version: v(7),
        status: RunStatus::Failed,
        duration_micros: i64::MAX as u64,
        recorded_at: t(12_345, 678_901),
        counters: [
            ("steps".to_string(), 12),
            ("retries".to_string(), 0),
            ("neg".to_string(), -5),
            ("max".to_string(), i64::MAX),
            ("min".to_string(), i64::MIN),
        ]
        .into_iter()
        .collect(),
        values: [
            ("cost".to_string(), 0.1 + 0.2),
            ("neg".to_string(), -1.5e-7),
            ("zero".to_string(), 0.0),
            ("big".to_string(), 1.7976931348623157e308),
            ("tiny".to_string(), 5e-324),
        ]
        .into_iter()
        .collect(),
    };
    let w = m.record(full.clone()).await?;
    ensure!(
        w.inserted,
        "record of a new metric: expected inserted=true, got false"
    );
    ensure!(
        w.record.same_content(&full),
        "record returned another record\n written: {full:?}\nreturned: {:?}",
        w.record
    );
    let got = m.get(&full.run_id).await?;
    ensure!(
        got.same_content(&full),
        "get after record: fields differ\n written: {full:?}\n    read: {got:?}"
    );

    // Minimal metric: no counters or values, zero duration, each terminal status.
    for (i, status) in [RunStatus::Succeeded, RunStatus::Cancelled]
        .into_iter()
        .enumerate()
    {
        let bare = ExecutionMetric {
            run_id: rid(&format!("bare-{i}")),
            workflow_id: wf("etl"),
            workflow_version: v(1),
            status,
            duration_micros: 0,
            recorded_at: t(-86_400 * 365 * 30, 1),
            counters: BTreeMap::new(),
            values: BTreeMap::new(),
        };
        m.record(bare.clone()).await?;
        let got = m.get(&bare.run_id).await?;
        ensure!(
            got.same_content(&bare),
            "get of a bare metric\n written: {bare:?}\n    read: {got:?}"
        );
    }

    let e = m.get(&rid("never-recorded")).await;
    ensure_err!(e, ErrorKind::NotFound, "get of a metric never recorded");

    // A metric of an unfinished run, or with a non-finite value, is refused.
    let mut running = metric("bad-1", "etl", 1, RunStatus::Running, 10);
    let e = m.record(running.clone()).await;
    ensure_err!(
        e,
        ErrorKind::InvalidInput,
        "record of a metric with status running"
    );
    running.status = RunStatus::Succeeded;
    running.values.insert("cost".into(), f64::NAN);
    let e = m.record(running.clone()).await;
    ensure_err!(
        e,
        ErrorKind::InvalidInput,
        "record of a metric with a NaN value"
    );
    running.values.insert("cost".into(), 1.0);
    running.duration_micros = i64::MAX as u64 + 1;
    let e = m.record(running).await;
    ensure_err!(
        e,
        ErrorKind::InvalidInput,
        "record of a metric with duration above i64::MAX"
    );
    let e = m.get(&rid("bad-1")).await;
    ensure_err!(
        e,
        ErrorKind::NotFound,
        "get of a metric whose record was refused"
    );
    Ok(())
}

/// "Recording the same run again with identical data succeeds; with other
/// data it is `Conflict`: a retried writer must never count twice."
pub async fn metric_record_is_idempotent_and_never_counts_twice(
    f: &dyn StoreFactory,
) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let first = metric("r-1", "etl", 1, RunStatus::Succeeded, 1_000);
    ensure!(
        m.record(first.clone()).await?.inserted,
        "first record: expected inserted=true"
    );
    let before = m.summary(&wf("etl"), SummaryQuery::default()).await?;
    for attempt in 0..3 {
        let again = m.record(first.clone()).await?;
        ensure!(
            !again.inserted,
            "record of identical data again (attempt {attempt}): expected inserted=false, got true"
        );
        ensure!(
            again.record.same_content(&first),
            "record again returned another record: {:?}",
            again.record
        );
    }
    let after = m.summary(&wf("etl"), SummaryQuery::default()).await?;
    ensure_eq!(
        after.executions,
        1,
        "executions after recording one run four times"
    );
    ensure!(
        after.agrees_with(&before),
        "summary changed after identical re-records\nbefore: {before:?}\n after: {after:?}"
    );

    let mut changes: Vec<(&str, ExecutionMetric)> = Vec::new();
    let mut c = first.clone();
    c.duration_micros += 1;
    changes.push(("duration", c));
    let mut c = first.clone();
    c.status = RunStatus::Failed;
    changes.push(("status", c));
    let mut c = first.clone();
    c.counters.insert("steps".into(), 4);
    changes.push(("a counter", c));
    let mut c = first.clone();
    c.values.insert("extra".into(), 1.0);
    changes.push(("an added value", c));
    let mut c = first.clone();
    c.workflow_version = v(2);
    changes.push(("workflow version", c));
    let mut c = first.clone();
    c.recorded_at = first.recorded_at.saturating_add_micros(1);
    changes.push(("recorded_at", c));
    for (what, changed) in changes {
        let e = m.record(changed).await;
        ensure_err!(
            e,
            ErrorKind::Conflict,
            "record of run r-1 again with other {what}"
        );
    }
    let stored = m.get(&first.run_id).await?;
    ensure!(
        stored.same_content(&first),
        "stored metric changed after refused records\nexpected: {first:?}\n     got: {stored:?}"
    );
    let end = m.summary(&wf("etl"), SummaryQuery::default()).await?;
    ensure!(
        end.agrees_with(&before),
        "summary changed after refused records\nbefore: {before:?}\n after: {end:?}"
    );
    Ok(())
}

/// "Bulk writes (`import_runs`, `record_many`) are all or nothing"
/// (core/README.md), with the rules of "Recording the same run again with
/// identical data succeeds; with other data it is `Conflict`".
pub async fn metric_record_many_is_all_or_nothing(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let a = metric("a", "etl", 1, RunStatus::Succeeded, 10);
    let b = metric("b", "etl", 1, RunStatus::Failed, 20);
    let c = metric("c", "etl", 2, RunStatus::Cancelled, 30);
    let out = m.record_many(vec![a.clone(), b.clone()]).await?;
    ensure_eq!(
        (out.inserted, out.unchanged),
        (2, 0),
        "record_many of 2 new metrics: (inserted, unchanged)"
    );
    let out = m.record_many(vec![b.clone(), c.clone(), a.clone()]).await?;
    ensure_eq!(
        (out.inserted, out.unchanged),
        (1, 2),
        "record_many of 2 stored identical metrics and 1 new: (inserted, unchanged)"
    );
    for x in [&a, &b, &c] {
        let got = m.get(&x.run_id).await?;
        ensure!(
            got.same_content(x),
            "after record_many, metric {} reads back as {got:?}",
            x.run_id
        );
    }
    let out = m.record_many(Vec::new()).await?;
    ensure_eq!(
        (out.inserted, out.unchanged),
        (0, 0),
        "record_many of an empty batch"
    );

    // A conflicting item anywhere in the batch: nothing of it is stored.
    let d = metric("d", "etl", 1, RunStatus::Succeeded, 40);
    let e = metric("e", "etl", 1, RunStatus::Succeeded, 50);
    let mut b2 = b.clone();
    b2.duration_micros += 1;
    let r = m.record_many(vec![d.clone(), b2, e.clone()]).await;
    ensure_err!(
        r,
        ErrorKind::Conflict,
        "record_many with new d, e and a changed b"
    );
    // The same run twice in one batch with other data conflicts too.
    let mut d2 = d.clone();
    d2.status = RunStatus::Failed;
    let r = m.record_many(vec![d.clone(), e.clone(), d2]).await;
    ensure_err!(
        r,
        ErrorKind::Conflict,
        "record_many holding run d twice with other data"
    );
    // An invalid item: InvalidInput, nothing stored.
    let bad = metric("f", "etl", 1, RunStatus::Pending, 60);
    let r = m.record_many(vec![d.clone(), e.clone(), bad]).await;
    ensure_err!(
        r,
        ErrorKind::InvalidInput,
        "record_many holding a metric with status pending"
    );
    for x in ["d", "e", "f"] {
        let r = m.get(&rid(x)).await;
        ensure_err!(
            r,
            ErrorKind::NotFound,
            "metric {x} after refused record_many batches"
        );
    }
    let got = m.get(&b.run_id).await?;
    ensure!(
        got.same_content(&b),
        "metric b changed after a refused batch: {got:?}"
    );
    let sum = m.summary(&wf("etl"), SummaryQuery::default()).await?;
    ensure_eq!(
        sum.executions,
        3,
        "executions after refused batches (a, b, c only)"
    );

    // The same run twice identically within a batch counts once.
    let out = m.record_many(vec![d.clone(), d.clone()]).await?;
    ensure_eq!(
        (out.inserted, out.unchanged),
        (1, 1),
        "record_many holding new run d twice, identical: (inserted, unchanged)"
    );
    let sum = m.summary(&wf("etl"), SummaryQuery::default()).await?;
    ensure_eq!(
        sum.executions,
        4,
        "executions after recording d twice in one batch"
    );
    Ok(())
}

/// "One execution metric per run" (section 4), listed as "A page of
/// metrics by run id" (trait doc): `list` is ordered by run id ascending
/// (bytewise), filtered by workflow and version, and paged with a cursor
/// (`next` set exactly when more items follow).
pub async fn metric_list_paged_by_run_id(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    // Names whose bytewise order differs from a case-insensitive one.
    let specs = [
        ("r-b", "etl", 1),
        ("R-a", "etl", 2),
        ("r-a", "load", 1),
        ("r_c", "etl", 1),
        ("r.d", "etl", 2),
        ("0001", "load", 1),
        ("Z9", "etl", 1),
        ("r-a-2", "etl", 1),
    ];
    let mut all = Vec::new();
    for (i, (id, w, ver)) in specs.into_iter().enumerate() {
        let x = metric(id, w, ver, RunStatus::Succeeded, 100 + i as u64);
        m.record(x.clone()).await?;
        all.push(x);
    }
    all.sort_by(|a, b| {
        a.run_id
            .as_str()
            .as_bytes()
            .cmp(b.run_id.as_str().as_bytes())
    });
    for page in [1, 3, 8, 100] {
        let (got, pages) = all_metrics(m.as_ref(), MetricQuery::default(), page).await?;
        ensure_eq!(
            ids(&got),
            ids(&all),
            "list of all metrics, {page} a page: run ids in order"
        );
        ensure_eq!(
            pages,
            all.len().div_ceil(page).max(1),
            "list of 8 metrics, {page} a page: number of pages (next set exactly when more follow)"
        );
        for (g, w) in got.iter().zip(&all) {
            ensure!(
                g.same_content(w),
                "listed metric differs from recorded: {g:?} vs {w:?}"
            );
        }
    }
    let q = MetricQuery::default().with_workflow(wf("etl"), None);
    let (got, _) = all_metrics(m.as_ref(), q, 2).await?;
    let want: Vec<_> = all
        .iter()
        .filter(|x| x.workflow_id == wf("etl"))
        .cloned()
        .collect();
    ensure_eq!(ids(&got), ids(&want), "list of workflow etl, 2 a page");
    let q = MetricQuery::default().with_workflow(wf("etl"), Some(v(2)));
    let (got, _) = all_metrics(m.as_ref(), q, 1).await?;
    ensure_eq!(
        ids(&got),
        vec!["R-a".to_string(), "r.d".to_string()],
        "list of workflow etl version 2"
    );
    let q = MetricQuery::default().with_workflow(wf("nothing"), None);
    let p = m.list(q).await?;
    ensure!(
        p.items.is_empty() && p.next.is_none(),
        "list of an unknown workflow: expected an empty last page, got {p:?}"
    );
    let e = m.list(MetricQuery::default().with_limit(0)).await;
    ensure_err!(e, ErrorKind::InvalidInput, "list with limit 0");
    Ok(())
}

/// `metrics_of_runs` answers a batch in the order asked, `None` for a run
/// without a metric, each metric as `get` gives it; an id twice is
/// `InvalidInput`, no id is no metric.
pub async fn metric_reads_of_several_runs_at_once(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = s.stores.metrics.as_ref();
    m.record(metric("a", "etl", 1, RunStatus::Succeeded, 1_000))
        .await?;
    m.record(metric("c", "etl", 2, RunStatus::Failed, 3_000))
        .await?;
    let ids = [rid("c"), rid("nope"), rid("a")];
    let got = m.metrics_of_runs(&ids).await?;
    ensure_eq!(
        got.len(),
        ids.len(),
        "metrics_of_runs(c, nope, a): one answer per id"
    );
    for (id, one) in ids.iter().zip(&got) {
        let single = match m.get(id).await {
            Ok(x) => Some(x),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        ensure_eq!(
            *one,
            single,
            "metrics_of_runs: the metric of run {id}, as get gives it"
        );
    }
    ensure!(got[1].is_none(), "metrics_of_runs: a run without a metric");
    ensure_err!(
        m.metrics_of_runs(&[rid("a"), rid("a")]).await,
        ErrorKind::InvalidInput,
        "metrics_of_runs with an id twice"
    );
    ensure_eq!(
        m.metrics_of_runs(&[]).await?,
        Vec::<Option<ExecutionMetric>>::new(),
        "metrics_of_runs of no id"
    );
    Ok(())
}

/// "One execution metric per run" (section 4); "Deletes a run's metric;
/// `NotFound` if absent" (trait doc, used by retention):
/// the metric leaves reads, lists and summaries, and may be recorded anew.
pub async fn metric_delete(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let a = metric("a", "etl", 1, RunStatus::Succeeded, 10);
    let b = metric("b", "etl", 1, RunStatus::Failed, 20);
    m.record_many(vec![a.clone(), b.clone()]).await?;
    m.delete(&a.run_id).await?;
    let e = m.get(&a.run_id).await;
    ensure_err!(e, ErrorKind::NotFound, "get of a deleted metric");
    let e = m.delete(&a.run_id).await;
    ensure_err!(e, ErrorKind::NotFound, "delete of a metric deleted already");
    let e = m.delete(&rid("never")).await;
    ensure_err!(e, ErrorKind::NotFound, "delete of a metric never recorded");
    let (left, _) = all_metrics(m.as_ref(), MetricQuery::default(), 10).await?;
    ensure_eq!(ids(&left), vec!["b".to_string()], "list after deleting a");
    let sum = m.summary(&wf("etl"), SummaryQuery::default()).await?;
    ensure_eq!(
        (sum.executions, sum.succeeded, sum.failed),
        (1, 0, 1),
        "summary after deleting a"
    );
    // Another outcome may be recorded after a delete (a corrected metric).
    let mut a2 = a.clone();
    a2.status = RunStatus::Cancelled;
    ensure!(
        m.record(a2.clone()).await?.inserted,
        "record after delete: expected inserted=true"
    );
    let got = m.get(&a.run_id).await?;
    ensure!(
        got.same_content(&a2),
        "record after delete reads back as {got:?}"
    );
    Ok(())
}

/// "A summary for a workflow, or one version of it: executions, succeeded,
/// failed, cancelled, success rate".
pub async fn metric_summary_counts_and_rates(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    use RunStatus::{Cancelled as C, Failed as F, Succeeded as S};
    let specs = [
        ("a1", "etl", 1, S),
        ("a2", "etl", 1, S),
        ("a3", "etl", 1, S),
        ("a4", "etl", 1, F),
        ("a5", "etl", 2, C),
        ("a6", "etl", 2, S),
        ("b1", "load", 1, F),
        ("b2", "load", 1, F),
        ("c1", "etl-2", 1, S),
    ];
    let batch = specs
        .iter()
        .enumerate()
        .map(|(i, (id, w, ver, st))| metric(id, w, *ver, *st, 1_000 * (i as u64 + 1)))
        .collect();
    m.record_many(batch).await?;
    let sum = m.summary(&wf("etl"), SummaryQuery::default()).await?;
    ensure_eq!(sum.workflow_id, wf("etl"), "summary of etl: workflow_id");
    check_counts(&sum, "etl (all versions)", None, (6, 4, 1, 1))?;
    let sum = m.summary(&wf("etl"), SummaryQuery::version(v(1))).await?;
    check_counts(&sum, "etl version 1", Some(v(1)), (4, 3, 1, 0))?;
    let sum = m.summary(&wf("etl"), SummaryQuery::version(v(2))).await?;
    check_counts(&sum, "etl version 2", Some(v(2)), (2, 1, 0, 1))?;
    let sum = m.summary(&wf("load"), SummaryQuery::default()).await?;
    check_counts(&sum, "load", None, (2, 0, 2, 0))?;
    ensure_eq!(
        sum.success_rate,
        Some(0.0),
        "success_rate of a workflow whose runs all failed"
    );
    let sum = m.summary(&wf("etl-2"), SummaryQuery::default()).await?;
    check_counts(&sum, "etl-2", None, (1, 1, 0, 0))?;
    ensure_eq!(
        sum.success_rate,
        Some(1.0),
        "success_rate of a workflow whose runs all succeeded"
    );
    let sum = m.summary(&wf("etl"), SummaryQuery::version(v(3))).await?;
    ensure_eq!(
        (sum.executions, sum.success_rate, sum.workflow_version),
        (0, None, Some(v(3))),
        "summary of a version without metrics: (executions, success_rate, workflow_version)"
    );
    Ok(())
}

/// "duration min/max/mean and p50/p95/p99 by nearest rank, first and last
/// recorded time, and per named value count, sum, min, max, mean."
pub async fn metric_summary_percentiles_by_nearest_rank(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let mk = |id: String, w: &str, d: u64, at: i64, values: &[(&str, f64)]| ExecutionMetric {
        run_id: rid(&id),
        workflow_id: wf(w),
        workflow_version: v(1),
        status: RunStatus::Succeeded,
        duration_micros: d,
        recorded_at: t(at, 7),
        counters: BTreeMap::new(),
        values: values.iter().map(|(k, x)| (k.to_string(), *x)).collect(),
    };
    // 1..=100 recorded in a scrambled order.
    let mut batch = Vec::new();
    for i in 0..100u64 {
        let d = (i * 37) % 100 + 1;
        batch.push(mk(format!("h-{i:03}"), "hundred", d, 1000 - d as i64, &[]));
    }
    m.record_many(batch).await?;
    // n = 1.
    m.record(mk("one".into(), "single", 42, 5, &[("cost", -2.5)]))
        .await?;
    // n = 7, unsorted, with named values on some metrics only.
    let seven = [70u64, 10, 40, 20, 60, 30, 50];
    for (i, d) in seven.iter().enumerate() {
        let values: Vec<(&str, f64)> = match i {
            0 => vec![("cost", 1.5), ("tokens", 100.0)],
            1 => vec![("cost", -0.5)],
            2 => vec![("cost", 4.0), ("tokens", 300.0)],
            _ => vec![],
        };
        m.record(mk(
            format!("s-{i}"),
            "seven",
            *d,
            100 + i as i64 * 10,
            &values,
        ))
        .await?;
    }

    let sum = m.summary(&wf("hundred"), SummaryQuery::default()).await?;
    let d = sum.duration.ok_or_else(|| {
        crate::RuleError::Failed("summary of 100 metrics has no duration stats".into())
    })?;
    ensure_eq!(
        (d.min, d.max, d.p50, d.p95, d.p99),
        (1, 100, 50, 95, 99),
        "durations 1..=100: (min, max, p50, p95, p99)"
    );
    ensure!(
        near(d.mean, 50.5),
        "durations 1..=100: mean expected 50.5, got {}",
        d.mean
    );
    ensure_eq!(
        (sum.first_recorded_at, sum.last_recorded_at),
        (Some(t(900, 7)), Some(t(999, 7))),
        "durations 1..=100: (first, last) recorded_at"
    );
    ensure!(
        sum.values.is_empty(),
        "no named values recorded, summary has {:?}",
        sum.values
    );

    let sum = m.summary(&wf("single"), SummaryQuery::default()).await?;
    let d = sum.duration.ok_or_else(|| {
        crate::RuleError::Failed("summary of 1 metric has no duration stats".into())
    })?;
    ensure_eq!(
        (d.min, d.max, d.p50, d.p95, d.p99),
        (42, 42, 42, 42, 42),
        "one duration 42: (min, max, p50, p95, p99)"
    );
    ensure_eq!(d.mean, 42.0, "one duration 42: mean");
    ensure_eq!(
        (sum.first_recorded_at, sum.last_recorded_at),
        (Some(t(5, 7)), Some(t(5, 7))),
        "one metric: first and last"
    );
    let cost = sum.values.get("cost").copied();
    ensure_eq!(
        cost.map(|c| (c.count, c.sum, c.min, c.max, c.mean)),
        Some((1, -2.5, -2.5, -2.5, -2.5)),
        "one value cost=-2.5: (count, sum, min, max, mean)"
    );

    let sum = m.summary(&wf("seven"), SummaryQuery::default()).await?;
    let d = sum.duration.ok_or_else(|| {
        crate::RuleError::Failed("summary of 7 metrics has no duration stats".into())
    })?;
    ensure_eq!(
        (d.min, d.max, d.p50, d.p95, d.p99),
        (10, 70, 40, 70, 70),
        "durations 70,10,40,20,60,30,50: (min, max, p50, p95, p99)"
    );
    ensure!(
        near(d.mean, 40.0),
        "7 durations: mean expected 40, got {}",
        d.mean
    );
    ensure_eq!(
        (sum.first_recorded_at, sum.last_recorded_at),
        (Some(t(100, 7)), Some(t(160, 7))),
        "7 metrics: first and last"
    );
    ensure_eq!(
        sum.values.keys().cloned().collect::<Vec<_>>(),
        vec!["cost".to_string(), "tokens".to_string()],
        "7 metrics: named values summarized"
    );
    let c = sum.values["cost"];
    ensure_eq!(
        (c.count, c.min, c.max),
        (3, -0.5, 4.0),
        "cost 1.5, -0.5, 4.0: (count, min, max)"
    );
    ensure!(
        near(c.sum, 5.0) && near(c.mean, 5.0 / 3.0),
        "cost 1.5, -0.5, 4.0: sum 5 and mean 5/3 expected, got {c:?}"
    );
    let tk = sum.values["tokens"];
    ensure_eq!(
        (tk.count, tk.sum, tk.min, tk.max, tk.mean),
        (2, 400.0, 100.0, 300.0, 200.0),
        "tokens 100, 300"
    );
    Ok(())
}

/// "Every backend returns the same numbers as the reference implementation
/// for the same inputs (means within 1e-9 relative)." 320 pseudo-random
/// metrics (fixed seed) over two workflows and two versions each.
pub async fn metric_summary_matches_reference(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let mut rng = SplitMix::new(0x5eed_0001);
    let workflows = ["alpha", "beta"];
    let statuses = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];
    let names = ["cost", "tokens", "score", "Z-last"];
    let mut all = Vec::new();
    for i in 0..320u64 {
        let mut values = BTreeMap::new();
        for n in names {
            if rng.below(3) > 0 {
                // Mixed magnitudes and signs, exactly representable or not.
                let x = (rng.below(2_000_001) as f64 - 1_000_000.0) / (1 + rng.below(1000)) as f64;
                values.insert(n.to_string(), x);
            }
        }
        all.push(ExecutionMetric {
            run_id: rid(&format!("run-{:016x}", rng.next_u64())),
            workflow_id: wf(workflows[rng.below(2) as usize]),
            workflow_version: v(1 + rng.below(2) as u32),
            status: statuses[rng.below(3) as usize],
            // Small range so equal durations happen; a few huge ones.
            duration_micros: if rng.below(20) == 0 {
                rng.below(i64::MAX as u64 / 1000)
            } else {
                rng.below(5_000)
            },
            recorded_at: t(rng.below(1_000_000) as i64, rng.below(1_000_000) as i64),
            counters: [("i".to_string(), i as i64)].into_iter().collect(),
            values,
        });
    }
    for chunk in all.chunks(80) {
        m.record_many(chunk.to_vec()).await?;
    }
    for w in workflows {
        for version in [None, Some(v(1)), Some(v(2)), Some(v(3))] {
            let mut q = SummaryQuery::default();
            q.workflow_version = version;
            let got = m.summary(&wf(w), q).await?;
            let want = MetricsSummary::compute(
                wf(w),
                version,
                all.iter().filter(|x| {
                    x.workflow_id == wf(w) && version.is_none_or(|ver| ver == x.workflow_version)
                }),
            );
            ensure!(
                got.agrees_with(&want),
                "summary of {w} version {version:?} differs from MetricsSummary::compute\n backend: {got:?}\nreference: {want:?}"
            );
        }
    }
    Ok(())
}

/// "A summary for a workflow, or one version of it" (section 4); "the
/// empty summary if it has no metrics" (trait doc): executions 0 and no
/// statistics.
pub async fn metric_summary_of_unknown_workflow_is_empty(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    m.record(metric("a", "etl", 1, RunStatus::Succeeded, 10))
        .await?;
    for (w, q) in [
        ("unknown", SummaryQuery::default()),
        ("unknown", SummaryQuery::version(v(1))),
        ("ETL", SummaryQuery::default()),
        ("et", SummaryQuery::default()),
        ("etl", SummaryQuery::version(v(2))),
    ] {
        let version = q.workflow_version;
        let got = m.summary(&wf(w), q).await?;
        let want = MetricsSummary::empty(wf(w), version);
        ensure!(
            got == want,
            "summary of {w} version {version:?} (no metrics): expected {want:?}, got {got:?}"
        );
    }
    Ok(())
}

/// "Patterns: structured findings about a workflow (kind, description,
/// data, confidence, evidence run ids, detected time), upserted by their id".
pub async fn pattern_upsert_by_id(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let p = pattern("p-1", "etl", 10);
    let w = m.upsert_pattern(p.clone()).await?;
    ensure!(
        w.inserted,
        "upsert of a new pattern: expected inserted=true"
    );
    ensure!(
        w.record.same_content(&p),
        "upsert returned another record: {:?}",
        w.record
    );
    let got = m.get_pattern(&p.id).await?;
    ensure!(
        got.same_content(&p),
        "get_pattern after upsert\nwritten: {p:?}\n   read: {got:?}"
    );

    let w = m.upsert_pattern(p.clone()).await?;
    ensure!(
        !w.inserted,
        "upsert of the same pattern again: expected inserted=false"
    );

    let replaced = Pattern {
        id: p.id.clone(),
        workflow_id: wf("load"),
        kind: "flaky".into(),
        description: "fails one run in three\nsee evidence".into(),
        data: json!({"rate": 0.33, "nested": {"b": [1, 2], "a": null}, "s": "ü"}),
        confidence: 1.0,
        evidence: vec![rid("r9"), rid("r3"), rid("r9")],
        detected_at: t(20, 999_999),
    };
    let w = m.upsert_pattern(replaced.clone()).await?;
    ensure!(
        !w.inserted,
        "upsert of another content under an existing id: expected inserted=false"
    );
    let got = m.get_pattern(&p.id).await?;
    ensure!(
        got.same_content(&replaced),
        "get_pattern after replacing\nexpected: {replaced:?}\n    read: {got:?}"
    );
    let all = all_patterns(m.as_ref(), PatternQuery::default(), 10).await?;
    ensure_eq!(
        all.len(),
        1,
        "patterns listed after upserting one id three times"
    );
    ensure!(
        all[0].same_content(&replaced),
        "listed pattern is not the replacement: {:?}",
        all[0]
    );
    let old = all_patterns(
        m.as_ref(),
        PatternQuery::default().with_workflow(wf("etl")),
        10,
    )
    .await?;
    ensure!(
        old.is_empty(),
        "pattern moved to workflow load is still listed under etl: {old:?}"
    );

    let e = m
        .get_pattern(&PatternId::new("p-none").expect("literal"))
        .await;
    ensure_err!(e, ErrorKind::NotFound, "get_pattern of an unknown id");
    let mut bad = pattern("p-2", "etl", 1);
    bad.confidence = 1.5;
    let e = m.upsert_pattern(bad).await;
    ensure_err!(
        e,
        ErrorKind::InvalidInput,
        "upsert of a pattern with confidence 1.5"
    );
    let e = m
        .get_pattern(&PatternId::new("p-2").expect("literal"))
        .await;
    ensure_err!(
        e,
        ErrorKind::NotFound,
        "get_pattern of a pattern whose upsert was refused"
    );
    Ok(())
}

/// "Patterns ... listed newest first" (by `detected_at`, then id
/// descending), paged, and filtered by workflow.
pub async fn pattern_list_newest_first_and_paged(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let specs: [(&str, &str, i64, i64); 8] = [
        ("p-a", "etl", 10, 0),
        ("p-b", "etl", 30, 0),
        ("p-c", "load", 20, 0),
        ("P-d", "etl", 30, 0), // same time as p-b: id descending puts p-b first
        ("p-e", "etl", 30, 1), // one microsecond later: newest
        ("p-f", "load", 5, 0),
        ("p_g", "etl", 10, 0),
        ("p-h", "etl", -100, 0),
    ];
    let mut all = Vec::new();
    for (id, w, secs, micros) in specs {
        let mut p = pattern(id, w, secs);
        p.detected_at = t(secs, micros);
        m.upsert_pattern(p.clone()).await?;
        all.push(p);
    }
    let order = |ps: &[Pattern]| ps.iter().map(|p| p.id.to_string()).collect::<Vec<_>>();
    let mut want = all.clone();
    want.sort_by(|a, b| {
        (b.detected_at, b.id.as_str().as_bytes()).cmp(&(a.detected_at, a.id.as_str().as_bytes()))
    });
    ensure_eq!(
        order(&want),
        ["p-e", "p-b", "P-d", "p-c", "p_g", "p-a", "p-f", "p-h"]
            .map(String::from)
            .to_vec(),
        "the rule's own expected order (a bug in the rule if this fails)"
    );
    for page in [1, 3, 8, 50] {
        let got = all_patterns(m.as_ref(), PatternQuery::default(), page).await?;
        ensure_eq!(
            order(&got),
            order(&want),
            "list_patterns, {page} a page: ids in order"
        );
    }
    let p = m
        .list_patterns(PatternQuery::default().with_limit(8))
        .await?;
    ensure!(
        p.next.is_none(),
        "list_patterns of exactly 8 with limit 8: next must be None, got {:?}",
        p.next
    );
    let p = m
        .list_patterns(PatternQuery::default().with_limit(7))
        .await?;
    ensure!(
        p.next.is_some(),
        "list_patterns of 8 with limit 7: next must be set"
    );
    let etl: Vec<_> = want
        .iter()
        .filter(|p| p.workflow_id == wf("etl"))
        .cloned()
        .collect();
    let got = all_patterns(
        m.as_ref(),
        PatternQuery::default().with_workflow(wf("etl")),
        2,
    )
    .await?;
    ensure_eq!(
        order(&got),
        order(&etl),
        "list_patterns of workflow etl, 2 a page"
    );
    let got = all_patterns(
        m.as_ref(),
        PatternQuery::default().with_workflow(wf("none")),
        2,
    )
    .await?;
    ensure!(
        got.is_empty(),
        "list_patterns of an unknown workflow: {got:?}"
    );
    Ok(())
}

/// Summaries are exact after every kind of write, not only after inserts:
/// single and batched records, re-recording (counted once), single and
/// batched deletes, and records again after deletes. Durations crowd into
/// one narrow band (so a percentile lies inside a range of several
/// durations), sit below 256 µs, or are huge; values mix `±1e300` with
/// small numbers, so a sum kept by adding and subtracting must be exact to
/// come back (`1e300 + 1.5 - 1e300` is `1.5`).
pub async fn metric_summary_is_kept_through_every_write(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let mut rng = SplitMix::new(0x5eed_0002);
    let workflows = ["kept-a", "kept-b"];
    let statuses = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];
    let mut all = Vec::new();
    for i in 0..240u64 {
        let mut values = BTreeMap::new();
        if rng.below(2) == 0 {
            values.insert("small".to_string(), (rng.below(2001) as f64 - 1000.0) / 8.0);
        }
        if rng.below(4) == 0 {
            let huge = if rng.below(2) == 0 { 1e300 } else { -1e300 };
            values.insert("mixed".to_string(), huge);
        } else if rng.below(2) == 0 {
            values.insert("mixed".to_string(), 1.5 + rng.below(100) as f64);
        }
        all.push(ExecutionMetric {
            run_id: rid(&format!("kept-{i:04}-{:08x}", rng.next_u64() as u32)),
            workflow_id: wf(workflows[rng.below(2) as usize]),
            workflow_version: v(1 + rng.below(3) as u32),
            status: statuses[rng.below(3) as usize],
            duration_micros: match rng.below(10) {
                0 => rng.below(256),
                1 => rng.below(i64::MAX as u64),
                // 10 s within 2 ms: one bucket of the summary counters.
                _ => 10_000_000 + rng.below(2_000),
            },
            recorded_at: t(rng.below(1_000_000) as i64, rng.below(1_000_000) as i64),
            counters: BTreeMap::new(),
            values,
        });
    }
    let check = |stored: Vec<ExecutionMetric>, step: &'static str| async move {
        for w in workflows {
            for version in [None, Some(v(1)), Some(v(2)), Some(v(3)), Some(v(4))] {
                let mut q = SummaryQuery::default();
                q.workflow_version = version;
                let got = m.summary(&wf(w), q).await?;
                let mine = stored.iter().filter(|x| {
                    x.workflow_id == wf(w) && version.is_none_or(|ver| ver == x.workflow_version)
                });
                let want = MetricsSummary::compute(wf(w), version, mine);
                ensure!(
                    got.agrees_with(&want),
                    "after {step}: summary of {w} version {version:?} differs from MetricsSummary::compute\n backend: {got:?}\nreference: {want:?}"
                );
            }
        }
        Ok::<(), crate::RuleError>(())
    };
    // Single records, then batches, then the same batch again.
    for x in &all[..30] {
        m.record(x.clone()).await?;
    }
    for chunk in all[30..].chunks(70) {
        m.record_many(chunk.to_vec()).await?;
    }
    m.record_many(all[100..170].to_vec()).await?;
    m.record(all[5].clone()).await?;
    check(all.clone(), "records").await?;
    // Single deletes of every huge value among the first 60.
    let mut kept = Vec::new();
    for x in all[..60].iter() {
        if x.values.get("mixed").is_some_and(|v| v.abs() > 1e200) {
            m.delete(&x.run_id).await?;
        } else {
            kept.push(x.clone());
        }
    }
    kept.extend(all[60..].iter().cloned());
    check(kept.clone(), "single deletes").await?;
    // A batched delete of every third, unknown ids among them.
    let mut doomed: Vec<_> = kept.iter().step_by(3).map(|x| x.run_id.clone()).collect();
    doomed.push(rid("kept-never-recorded"));
    m.delete_many(&doomed).await?;
    kept.retain(|x| !doomed.contains(&x.run_id));
    check(kept.clone(), "a batched delete").await?;
    // Deleted metrics recorded again.
    let back: Vec<_> = all
        .iter()
        .filter(|x| doomed.contains(&x.run_id))
        .take(40)
        .cloned()
        .collect();
    m.record_many(back.clone()).await?;
    kept.extend(back);
    check(kept.clone(), "records after deletes").await?;
    // Exactly: whatever huge values remain cancel, the small ones stay.
    for w in workflows {
        let got = m.summary(&wf(w), SummaryQuery::default()).await?;
        let want = runstore_core::summary::ExactSum::of(
            kept.iter()
                .filter(|x| x.workflow_id == wf(w))
                .filter_map(|x| x.values.get("mixed").copied()),
        )
        .to_f64();
        let sum = got.values.get("mixed").map_or(0.0, |s| s.sum);
        ensure!(
            sum == want,
            "the exact sum of `mixed` in {w} is {want}, the summary says {sum}"
        );
    }
    Ok(())
}

/// "Every backend returns the reference's answer", also when a value sum
/// leaves the range of f64: two values of 1.5e308 sum to infinity (the
/// exact sum rounded to f64), the mean is still the finite 1e308, and the
/// summary is served, not an error.
pub async fn metric_summary_sum_beyond_f64_is_infinite_not_an_error(
    f: &dyn StoreFactory,
) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    let mut all = Vec::new();
    for (run, x) in [("a", 1.5e308), ("b", 1.5e308), ("c", -1.0)] {
        let mut metric = metric(run, "huge", 1, RunStatus::Succeeded, 10);
        metric.values = [("big".to_string(), x)].into_iter().collect();
        all.push(metric);
    }
    m.record_many(all.clone()).await?;
    let got = m.summary(&wf("huge"), SummaryQuery::default()).await?;
    let want = MetricsSummary::compute(wf("huge"), None, all.iter());
    let big = got
        .values
        .get("big")
        .ok_or_else(|| crate::RuleError::Failed(format!("no stats of `big`: {got:?}")))?;
    ensure!(
        big.sum.is_infinite() && big.sum > 0.0 && big.count == 3,
        "the sum of 1.5e308 + 1.5e308 - 1 is +inf as an f64 sum, got {big:?}"
    );
    ensure!(
        big.mean.is_finite() && (big.mean - 1e308).abs() <= 1e296,
        "the mean of 1.5e308, 1.5e308 and -1 is 1e308, got {}",
        big.mean
    );
    ensure!(
        got.agrees_with(&want),
        "summary differs from MetricsSummary::compute\n backend: {got:?}\nreference: {want:?}"
    );
    Ok(())
}
