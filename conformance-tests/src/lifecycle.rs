//! Rules for deleting and selecting for retention (docs/DESIGN.md section
//! 8): batched deletes of runs (with their events), metrics and a run's
//! artifacts, workflow version deletes, and selecting runs by end time.

use runstore_core::{
    ArtifactQuery, ArtifactStoreExt, ErrorKind, EventQuery, MetricQuery, PutOptions, Run,
    RunFilter, RunStatus, Timestamp,
};

use crate::factory::StoreFactory;
use crate::fixtures::{akey, all_pages, def, event, metric, pattern, rid, run, t, v, wf};
use crate::outcome::RuleResult;
use crate::runs::query_all;
use crate::{ensure, ensure_eq, ensure_err};

fn ids(runs: &[Run]) -> Vec<String> {
    runs.iter().map(|r| r.id.to_string()).collect()
}

/// A run of `etl` v1 started at `t(start, 0)`, finished with `status` at
/// `t(end, 0)`.
fn ended(id: &str, status: RunStatus, start: i64, end: i64) -> Run {
    let mut r = run(id, "etl", 1, start);
    r.status = status;
    r.ended_at = Some(t(end, 0));
    r
}

/// "`delete_runs` deletes each run with its events, reports absent ids,
/// and leaves other runs alone; `delete_run` of a deleted run is NotFound."
pub async fn lifecycle_delete_runs_cascades_events(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    for (id, start) in [("a", 10), ("b", 11), ("c", 12)] {
        logs.create_run(run(id, "etl", 1, start)).await?;
        logs.append_events(&rid(id), vec![event("x", 20), event("y", 21)])
            .await?;
    }
    let out = logs
        .delete_runs(&[rid("a"), rid("never"), rid("c")])
        .await?;
    ensure_eq!(
        out.deleted,
        vec![rid("a"), rid("c")],
        "delete_runs([a, never, c]).deleted"
    );
    ensure_eq!(
        out.absent,
        vec![rid("never")],
        "delete_runs([a, never, c]).absent"
    );
    for gone in ["a", "c"] {
        ensure_err!(
            logs.get_run(&rid(gone)).await,
            ErrorKind::NotFound,
            "get_run({gone}) after delete_runs"
        );
        ensure_err!(
            logs.list_events(&rid(gone), EventQuery::default()).await,
            ErrorKind::NotFound,
            "list_events({gone}) after delete_runs"
        );
        ensure_err!(
            logs.delete_run(&rid(gone)).await,
            ErrorKind::NotFound,
            "delete_run({gone}) after delete_runs"
        );
    }
    let kept = logs.list_events(&rid("b"), EventQuery::default()).await?;
    ensure_eq!(kept.items.len(), 2, "events of the run not deleted");
    ensure_eq!(
        ids(&query_all(logs.as_ref(), RunFilter::default(), 10).await?),
        vec!["b".to_string()],
        "runs left after delete_runs"
    );
    // A second delete of the same ids: all absent, not an error.
    let again = logs.delete_runs(&[rid("a"), rid("c")]).await?;
    ensure!(
        again.deleted.is_empty() && again.absent == vec![rid("a"), rid("c")],
        "delete_runs of deleted runs must report them absent, got {again:?}"
    );
    // A run id reused after its delete starts again from event 1.
    logs.create_run(run("a", "etl", 1, 30)).await?;
    let seq = logs.append_event(&rid("a"), event("z", 31)).await?.seq;
    ensure_eq!(seq, 1, "first event of a run re-created after delete_runs");
    Ok(())
}

/// "A delete batch with an id twice, or more than `MAX_DELETE_BATCH` ids,
/// is InvalidInput and deletes nothing; an empty batch deletes nothing."
pub async fn lifecycle_delete_batch_validated(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    s.stores
        .metrics
        .record(metric("a", "etl", 1, RunStatus::Succeeded, 10))
        .await?;
    ensure_err!(
        logs.delete_runs(&[rid("a"), rid("a")]).await,
        ErrorKind::InvalidInput,
        "delete_runs([a, a])"
    );
    ensure_err!(
        s.stores.metrics.delete_many(&[rid("a"), rid("a")]).await,
        ErrorKind::InvalidInput,
        "metrics delete_many([a, a])"
    );
    let too_many: Vec<_> = (0..=runstore_core::MAX_DELETE_BATCH)
        .map(|i| rid(&format!("r{i}")))
        .collect();
    ensure_err!(
        logs.delete_runs(&too_many).await,
        ErrorKind::InvalidInput,
        "delete_runs of MAX_DELETE_BATCH + 1 ids"
    );
    let empty = logs.delete_runs(&[]).await?;
    ensure!(
        empty.deleted.is_empty() && empty.absent.is_empty(),
        "delete_runs([]) must report nothing, got {empty:?}"
    );
    logs.get_run(&rid("a")).await?;
    s.stores.metrics.get(&rid("a")).await?;
    Ok(())
}

/// "`delete_many` deletes the metrics of the given runs, reports absent
/// ones, keeps the others and every pattern."
pub async fn lifecycle_metrics_delete_many(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let m = &s.stores.metrics;
    for (id, micros) in [("a", 100), ("b", 200), ("c", 300)] {
        m.record(metric(id, "etl", 1, RunStatus::Succeeded, micros))
            .await?;
    }
    m.upsert_pattern(pattern("p1", "etl", 5)).await?;
    let out = m.delete_many(&[rid("c"), rid("x"), rid("a")]).await?;
    ensure_eq!(out.deleted, vec![rid("c"), rid("a")], "delete_many.deleted");
    ensure_eq!(out.absent, vec![rid("x")], "delete_many.absent");
    ensure_err!(
        m.get(&rid("a")).await,
        ErrorKind::NotFound,
        "get(a) after delete_many"
    );
    ensure_err!(
        m.delete(&rid("c")).await,
        ErrorKind::NotFound,
        "delete(c) after delete_many"
    );
    let (left, _) =
        all_pages(|c| m.list(MetricQuery::default().with_limit(10).with_cursor(c))).await?;
    ensure_eq!(
        left.iter()
            .map(|m| m.run_id.to_string())
            .collect::<Vec<_>>(),
        vec!["b".to_string()],
        "metrics left after delete_many"
    );
    m.get_pattern(&pattern("p1", "etl", 5).id).await?;
    let summary = m
        .summary(&wf("etl"), runstore_core::SummaryQuery::default())
        .await?;
    ensure_eq!(
        summary.executions,
        1,
        "summary after delete_many counts what is left"
    );
    Ok(())
}

/// "`delete_run_artifacts` deletes every artifact of one run in one call,
/// returning their count and bytes, and nothing of other runs; a run with
/// none gives zero."
pub async fn lifecycle_artifacts_delete_of_one_run(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let o = || PutOptions::default().created_at(t(1, 0));
    a.put_bytes(&akey("run-1", "build", "a.txt"), b"12345".to_vec(), o())
        .await?;
    a.put_bytes(&akey("run-1", "test", "deep/b.bin"), b"123".to_vec(), o())
        .await?;
    a.put_bytes(&akey("run-2", "build", "a.txt"), b"kept".to_vec(), o())
        .await?;
    let out = a.delete_run_artifacts(&rid("run-1")).await?;
    ensure_eq!(
        (out.count, out.bytes),
        (2, 8),
        "delete_run_artifacts(run-1)"
    );
    let (left, _) =
        all_pages(|c| a.list(ArtifactQuery::default().with_limit(10).with_cursor(c))).await?;
    ensure_eq!(
        left.iter().map(|i| i.key.to_string()).collect::<Vec<_>>(),
        vec![akey("run-2", "build", "a.txt").to_string()],
        "artifacts left after delete_run_artifacts(run-1)"
    );
    ensure_err!(
        a.head(&akey("run-1", "build", "a.txt")).await,
        ErrorKind::NotFound,
        "head of a deleted run's artifact"
    );
    let again = a.delete_run_artifacts(&rid("run-1")).await?;
    ensure_eq!(
        (again.count, again.bytes),
        (0, 0),
        "delete_run_artifacts twice"
    );
    // The path is free again.
    a.put_bytes(&akey("run-1", "build", "a.txt"), b"new".to_vec(), o())
        .await?;
    Ok(())
}

/// "`event_counts` gives each run's number of events in request order (0
/// for an absent run), and `delete_runs_artifacts` deletes the artifacts
/// of several runs at once, reporting each run as `delete_run_artifacts`
/// would, and nothing of other runs."
pub async fn lifecycle_batched_counts_and_artifact_deletes(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    for (id, start, n) in [("a", 10, 3u64), ("b", 11, 0), ("c", 12, 2)] {
        logs.create_run(run(id, "etl", 1, start)).await?;
        for i in 0..n {
            logs.append_event(&rid(id), event("step", i as i64)).await?;
        }
    }
    let counts = logs
        .event_counts(&[rid("c"), rid("nope"), rid("a"), rid("b")])
        .await?;
    ensure_eq!(counts, vec![2, 0, 3, 0], "event_counts(c, nope, a, b)");
    ensure_err!(
        logs.event_counts(&[rid("a"), rid("a")]).await,
        ErrorKind::InvalidInput,
        "event_counts with an id twice"
    );

    let a = &s.stores.artifacts;
    let o = || PutOptions::default().created_at(t(1, 0));
    a.put_bytes(&akey("run-1", "build", "a.txt"), b"12345".to_vec(), o())
        .await?;
    a.put_bytes(&akey("run-1", "test", "deep/b.bin"), b"123".to_vec(), o())
        .await?;
    a.put_bytes(&akey("run-2", "build", "x"), b"1".to_vec(), o())
        .await?;
    a.put_bytes(&akey("run-3", "build", "kept"), b"kept".to_vec(), o())
        .await?;
    let out = a
        .delete_runs_artifacts(&[rid("run-2"), rid("run-none"), rid("run-1")])
        .await?;
    let got: Vec<(u64, u64)> = out.iter().map(|d| (d.count, d.bytes)).collect();
    ensure_eq!(
        got,
        vec![(1, 1), (0, 0), (2, 8)],
        "delete_runs_artifacts(run-2, run-none, run-1)"
    );
    let (left, _) =
        all_pages(|c| a.list(ArtifactQuery::default().with_limit(10).with_cursor(c))).await?;
    ensure_eq!(
        left.iter().map(|i| i.key.to_string()).collect::<Vec<_>>(),
        vec![akey("run-3", "build", "kept").to_string()],
        "artifacts left after delete_runs_artifacts"
    );
    ensure_err!(
        a.delete_runs_artifacts(&[rid("run-3"), rid("run-3")]).await,
        ErrorKind::InvalidInput,
        "delete_runs_artifacts with an id twice"
    );
    ensure!(
        a.head(&akey("run-3", "build", "kept")).await.is_ok(),
        "a refused batch deletes nothing"
    );
    Ok(())
}

/// "`delete(id, version)` of a version another version names as parent is
/// Conflict; of a leaf it deletes; of an absent one (or twice) NotFound."
pub async fn lifecycle_workflow_delete_with_children(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let w = &s.stores.workflows;
    w.store(def("etl", 1, None)).await?;
    w.store(def("etl", 2, Some(1))).await?;
    w.store(def("etl", 3, Some(1))).await?;
    w.store(def("other", 1, None)).await?;
    ensure_err!(
        w.delete(&wf("etl"), v(1)).await,
        ErrorKind::Conflict,
        "delete(etl v1) while v2 and v3 name it as parent"
    );
    w.delete(&wf("etl"), v(3)).await?;
    ensure_err!(
        w.delete(&wf("etl"), v(1)).await,
        ErrorKind::Conflict,
        "delete(etl v1) while v2 names it as parent"
    );
    w.delete(&wf("etl"), v(2)).await?;
    w.delete(&wf("etl"), v(1)).await?;
    ensure_err!(
        w.delete(&wf("etl"), v(1)).await,
        ErrorKind::NotFound,
        "delete(etl v1) twice"
    );
    ensure_err!(
        w.delete(&wf("nope"), v(1)).await,
        ErrorKind::NotFound,
        "delete of a workflow never stored"
    );
    ensure_err!(
        w.get(&wf("etl"), v(2)).await,
        ErrorKind::NotFound,
        "get(etl v2) after delete"
    );
    ensure!(
        w.list_versions(&wf("etl")).await?.is_empty(),
        "list_versions(etl) after deleting every version must be empty"
    );
    w.get(&wf("other"), v(1)).await?;
    // A deleted version can be stored again, with other content.
    w.store(def("etl", 1, None).with_description("again"))
        .await?;
    Ok(())
}

/// "`ended_from`/`ended_before` select terminal runs by end time, with
/// status and workflow, paged like any query, and agree with
/// `RunFilter::matches` and `count_runs`."
pub async fn lifecycle_runs_filter_by_end_time(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let mut all = vec![
        ended("s1", RunStatus::Succeeded, 10, 100),
        ended("s2", RunStatus::Succeeded, 20, 200),
        ended("f1", RunStatus::Failed, 30, 150),
        ended("f2", RunStatus::Failed, 40, 300),
        ended("c1", RunStatus::Cancelled, 50, 120),
        run("p1", "etl", 1, 5),
    ];
    let mut running = run("r1", "etl", 1, 6);
    running.status = RunStatus::Running;
    all.push(running);
    let mut other = ended("o1", RunStatus::Succeeded, 15, 110);
    other.workflow_id = wf("other");
    all.push(other);
    for r in &all {
        logs.create_run(r.clone()).await?;
    }
    let filters = [
        RunFilter::default().ended_between(None, Some(t(200, 0))),
        RunFilter::default().ended_between(Some(t(150, 0)), None),
        RunFilter::default().ended_between(Some(t(110, 0)), Some(t(200, 0))),
        RunFilter::default()
            .statuses([RunStatus::Failed])
            .ended_between(None, Some(t(1000, 0))),
        RunFilter::default()
            .workflow(wf("etl"))
            .statuses([RunStatus::Succeeded, RunStatus::Cancelled])
            .ended_between(None, Some(t(150, 0))),
        RunFilter::default().ended_between(Some(t(0, 0)), Some(Timestamp::now())),
    ];
    for filter in filters {
        // The reference order: newest start first, then id descending.
        let mut expected: Vec<&Run> = all.iter().filter(|r| filter.matches(r)).collect();
        expected.sort_by(|a, b| (b.started_at, b.id.as_str()).cmp(&(a.started_at, a.id.as_str())));
        let got = query_all(logs.as_ref(), filter.clone(), 2).await?;
        ensure_eq!(
            ids(&got),
            expected
                .iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>(),
            "query_runs({filter:?}) paged by 2"
        );
        ensure_eq!(
            logs.count_runs(filter.clone()).await?,
            expected.len() as u64,
            "count_runs({filter:?})"
        );
    }
    // Sanity of the reference itself: pending and running runs never match
    // an end-time bound.
    let any_end = RunFilter::default().ended_between(Some(t(-1000, 0)), None);
    ensure!(
        !any_end.matches(&all[5]) && !any_end.matches(&all[6]),
        "RunFilter::matches must not select unfinished runs by end time"
    );
    Ok(())
}
