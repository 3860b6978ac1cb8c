//! Queries: filters, order, keyset paging, `get_recent`, counts.

use std::collections::BTreeSet;

use runstore_core::{
    LogRepository, LogRepositoryExt, Run, RunFilter, RunQuery, RunStatus, RunUpdate,
};

use crate::factory::StoreFactory;
use crate::fixtures::{rid, run, t, v, wf};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq};

use super::{create_started, ids, pages_after, query_all, query_all_of, sort_newest_first};

/// Runs for the query rules: several workflows, versions, statuses,
/// triggers and start times (some equal).
async fn seed_query_runs(logs: &dyn LogRepository) -> Result<Vec<Run>, RuleError> {
    let spec: &[(&str, &str, u32, RunStatus, &str, i64)] = &[
        ("r01", "etl", 1, RunStatus::Succeeded, "manual", 100),
        ("r02", "etl", 1, RunStatus::Failed, "schedule", 110),
        ("r03", "etl", 2, RunStatus::Running, "webhook", 120),
        ("r04", "etl", 2, RunStatus::Pending, "manual", 130),
        ("r05", "etl", 2, RunStatus::Cancelled, "schedule", 130),
        ("r06", "report", 1, RunStatus::Succeeded, "schedule", 140),
        ("r07", "report", 1, RunStatus::Failed, "manual", 150),
        ("r08", "etl", 3, RunStatus::Succeeded, "webhook", 160),
        ("r09", "etl-2", 1, RunStatus::Succeeded, "manual", 170),
        ("r10", "etl", 1, RunStatus::Running, "Manual", 180),
        ("r11", "report", 2, RunStatus::Pending, "schedule", 190),
        ("r12", "etl", 1, RunStatus::Succeeded, "manual", 200),
    ];
    let mut out = Vec::new();
    for &(id, workflow, version, status, trigger, start) in spec {
        let mut r = run(id, workflow, version, start);
        r.status = status;
        r.trigger = trigger.into();
        if status.is_terminal() {
            r.ended_at = Some(t(start + 5, 0));
        }
        logs.create_run(r.clone()).await?;
        out.push(r);
    }
    sort_newest_first(&mut out);
    Ok(out)
}

/// "Queries filter by workflow id, version, status set, start-time range
/// and trigger".
///
/// Each filter alone and in combination returns exactly the runs that match
/// (`started_from` inclusive, `started_before` exclusive, statuses as a
/// set, trigger compared exactly), newest first, walked in pages of 2, and
/// `count_runs` agrees.
pub async fn run_query_filters(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let runs = seed_query_runs(logs.as_ref()).await?;
    let etl = || RunFilter::default().workflow(wf("etl"));
    let cases: Vec<(&str, RunFilter, Vec<&str>)> = vec![
        (
            "no filter",
            RunFilter::default(),
            vec![
                "r12", "r11", "r10", "r09", "r08", "r07", "r06", "r05", "r04", "r03", "r02", "r01",
            ],
        ),
        (
            "workflow etl",
            etl(),
            vec!["r12", "r10", "r08", "r05", "r04", "r03", "r02", "r01"],
        ),
        (
            "workflow etl-2",
            RunFilter::default().workflow(wf("etl-2")),
            vec!["r09"],
        ),
        (
            "workflow unknown",
            RunFilter::default().workflow(wf("unknown")),
            vec![],
        ),
        (
            "etl version 2",
            etl().version(v(2)),
            vec!["r05", "r04", "r03"],
        ),
        (
            "version 1 of any workflow",
            RunFilter::default().version(v(1)),
            vec!["r12", "r10", "r09", "r07", "r06", "r02", "r01"],
        ),
        (
            "status succeeded",
            RunFilter::default().statuses([RunStatus::Succeeded]),
            vec!["r12", "r09", "r08", "r06", "r01"],
        ),
        (
            "statuses pending or running",
            RunFilter::default().statuses([RunStatus::Running, RunStatus::Pending]),
            vec!["r11", "r10", "r04", "r03"],
        ),
        (
            "all statuses",
            RunFilter::default().statuses(RunStatus::ALL),
            vec![
                "r12", "r11", "r10", "r09", "r08", "r07", "r06", "r05", "r04", "r03", "r02", "r01",
            ],
        ),
        (
            "started from 130 (inclusive)",
            RunFilter::default().started_between(Some(t(130, 0)), None),
            vec![
                "r12", "r11", "r10", "r09", "r08", "r07", "r06", "r05", "r04",
            ],
        ),
        (
            "started before 130 (exclusive)",
            RunFilter::default().started_between(None, Some(t(130, 0))),
            vec!["r03", "r02", "r01"],
        ),
        (
            "started in [110, 150)",
            RunFilter::default().started_between(Some(t(110, 0)), Some(t(150, 0))),
            vec!["r06", "r05", "r04", "r03", "r02"],
        ),
        (
            "empty range [150, 150)",
            RunFilter::default().started_between(Some(t(150, 0)), Some(t(150, 0))),
            vec![],
        ),
        (
            "trigger manual",
            RunFilter::default().trigger("manual"),
            vec!["r12", "r09", "r07", "r04", "r01"],
        ),
        (
            "trigger Manual (case-sensitive)",
            RunFilter::default().trigger("Manual"),
            vec!["r10"],
        ),
        (
            "trigger man (no prefix match)",
            RunFilter::default().trigger("man"),
            vec![],
        ),
        (
            "trigger ma% (no LIKE pattern)",
            RunFilter::default().trigger("ma%"),
            vec![],
        ),
        (
            "etl, version 1, succeeded, trigger manual, started in [100, 200]",
            etl()
                .version(v(1))
                .statuses([RunStatus::Succeeded])
                .trigger("manual")
                .started_between(Some(t(100, 0)), Some(t(200, 1))),
            vec!["r12", "r01"],
        ),
        (
            "etl, failed or cancelled, from 105",
            etl()
                .statuses([RunStatus::Failed, RunStatus::Cancelled])
                .started_between(Some(t(105, 0)), None),
            vec!["r05", "r02"],
        ),
        (
            "report, trigger schedule, before 190",
            RunFilter::default()
                .workflow(wf("report"))
                .trigger("schedule")
                .started_between(None, Some(t(190, 0))),
            vec!["r06"],
        ),
    ];
    for (what, filter, want) in cases {
        // The reference semantics agree with the expectation written here.
        let reference: Vec<String> = runs
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.id.to_string())
            .collect();
        ensure_eq!(reference, want, "test setup: reference filter for {what}");
        let got = query_all(logs.as_ref(), filter.clone(), 2).await?;
        ensure_eq!(ids(&got), want, "query_runs({what}), walked in pages of 2");
        let whole: Vec<Run> = runs.iter().filter(|r| filter.matches(r)).cloned().collect();
        ensure_eq!(got, whole, "query_runs({what}) must return whole runs");
        ensure_eq!(
            logs.count_runs(filter).await?,
            want.len() as u64,
            "count_runs({what}) must agree with query_runs"
        );
    }
    Ok(())
}

/// "order by start time descending, then run id descending".
///
/// Runs with the same start time come in descending bytewise id order
/// (`b` > `a` > `B` > `A` > `9` > `-`), also across page boundaries with
/// limit 1, 2 and 3; different start times come newest first whatever the
/// ids.
pub async fn run_query_orders_by_start_then_id_descending(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let same = [
        "B", "a", "A", "b", "9", "-", "a.b", "a_b", "a-b", "aa", "Zz", "_",
    ];
    let mut all = Vec::new();
    for id in same {
        let r = run(id, "etl", 1, 500);
        logs.create_run(r.clone()).await?;
        all.push(r);
    }
    // Just before the group, 1 µs after it, and much later: time wins over ids.
    for (id, start) in [
        ("zzz-old", t(499, 999_999)),
        ("mid", t(500, 1)),
        ("000-new", t(900, 0)),
    ] {
        all.push(create_started(logs.as_ref(), id, start).await?);
    }
    sort_newest_first(&mut all);
    let want = ids(&all);
    ensure_eq!(
        &want[..3],
        &["000-new".to_string(), "mid".to_string(), "b".to_string()],
        "test setup: expected order"
    );
    for limit in [1, 2, 3, 100] {
        let got = query_all(logs.as_ref(), RunFilter::default(), limit).await?;
        ensure_eq!(
            ids(&got),
            want,
            "query_runs(limit {limit}) must order by started_at descending, then id descending bytewise"
        );
    }
    Ok(())
}

/// "Asked for, the order is the reverse: oldest first."
///
/// With `oldest_first`, every filter of [`run_query_filters`]' kinds lists
/// exactly the reverse of its newest-first listing (equal start times by
/// ascending bytewise id), in pages of 1, 2, 3 and 100. A cursor of an
/// oldest-first page continues after its run in that order while runs
/// arrive: a later arrival, and one with the boundary's start and a higher
/// id, are on the next pages; an earlier one, and one with the boundary's
/// start and a lower id, are not.
pub async fn run_query_oldest_first(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let runs = seed_query_runs(logs.as_ref()).await?;
    let filters = [
        ("no filter", RunFilter::default()),
        ("workflow etl", RunFilter::default().workflow(wf("etl"))),
        (
            "etl version 2",
            RunFilter::default().workflow(wf("etl")).version(v(2)),
        ),
        (
            "statuses pending or running",
            RunFilter::default().statuses([RunStatus::Running, RunStatus::Pending]),
        ),
        (
            "started in [110, 150)",
            RunFilter::default().started_between(Some(t(110, 0)), Some(t(150, 0))),
        ),
        ("trigger manual", RunFilter::default().trigger("manual")),
    ];
    for (what, filter) in filters {
        let mut want: Vec<Run> = runs.iter().filter(|r| filter.matches(r)).cloned().collect();
        want.reverse();
        for limit in [1, 2, 3, 100] {
            let query = RunQuery::new(filter.clone())
                .oldest_first()
                .with_limit(limit);
            let got = query_all_of(logs.as_ref(), query).await?;
            ensure_eq!(
                ids(&got),
                ids(&want),
                "query_runs({what}, oldest first, limit {limit}) must order by started_at ascending, then id ascending bytewise"
            );
            ensure_eq!(
                got,
                want,
                "query_runs({what}, oldest first) must return whole runs"
            );
        }
    }

    // Keyset paging oldest first while runs arrive. The 12 runs start at
    // 100 ... 200 s; r04 and r05 share 130 s.
    let first = RunQuery::default().oldest_first().with_limit(4);
    let p1 = logs.query_runs(first.clone()).await?;
    let mut oldest: Vec<Run> = runs.clone();
    oldest.reverse();
    ensure_eq!(
        ids(&p1.items),
        ids(&oldest[..4]),
        "page 1 of query_runs(oldest first, limit 4)"
    );
    ensure!(
        p1.next.is_some(),
        "page 1 of 12 runs with limit 4 must set next"
    );
    let boundary = p1.items[3].clone(); // r04 at 130 s
    let mut late = Vec::new();
    for (id, at) in [
        ("r04a", boundary.started_at),
        ("r00", t(50, 0)),
        ("r99", t(900, 0)),
    ] {
        late.push(create_started(logs.as_ref(), id, at).await?);
    }
    // Same start as r04, lower id: belongs before the boundary.
    create_started(logs.as_ref(), "r03z", boundary.started_at).await?;
    let rest = pages_after(logs.as_ref(), &first, p1.next.clone()).await?;
    let mut want: Vec<Run> = oldest[4..].to_vec();
    want.extend(late.into_iter().filter(|r| r.id.as_str() != "r00"));
    want.sort_by(|a, b| {
        (a.started_at, a.id.as_str().as_bytes()).cmp(&(b.started_at, b.id.as_str().as_bytes()))
    });
    ensure_eq!(
        ids(&rest),
        ids(&want),
        "oldest-first pages after page 1 must continue exactly after {} (keyset), including later arrivals that sort after it and none that sort before it",
        boundary.id
    );
    Ok(())
}

/// "page with an opaque cursor that stays correct while new runs arrive
/// (keyset, not offset)."
///
/// After reading page 1, newer runs, a run with the same start as the page
/// boundary (one with a higher id, which belongs before the boundary, and
/// one with a lower id, which belongs after it) and a run older than the
/// boundary arrive; page 2 onwards continues exactly after page 1 and
/// includes exactly the arrivals that sort after the boundary.
pub async fn run_query_cursor_stable_under_inserts(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let mut original = Vec::new();
    for i in 0..10i64 {
        let r = run(&format!("run-{i:02}"), "etl", 1, 100 + i);
        logs.create_run(r.clone()).await?;
        original.push(r);
    }
    sort_newest_first(&mut original);
    let p1 = logs.query_runs(RunQuery::default().with_limit(4)).await?;
    ensure_eq!(
        ids(&p1.items),
        ids(&original[..4]),
        "page 1 of query_runs(limit 4)"
    );
    let boundary = p1.items[3].clone(); // run-06 at 106 s
    ensure!(
        p1.next.is_some(),
        "page 1 of 10 runs with limit 4 must set next"
    );

    let mut arrivals = Vec::new();
    for (id, secs) in [("new-a", 300), ("new-b", 301), ("old-x", 50)] {
        arrivals.push(run(id, "etl", 1, secs));
    }
    // Same start as the boundary: `run-07x` > `run-06` sorts before it, `run-05x` < `run-06` after it.
    let mut higher = run("run-07x", "etl", 1, 0);
    higher.started_at = boundary.started_at;
    let mut lower = run("run-05x", "etl", 1, 0);
    lower.started_at = boundary.started_at;
    arrivals.push(higher);
    arrivals.push(lower.clone());
    for r in &arrivals {
        logs.create_run(r.clone()).await?;
    }

    let query = RunQuery::default().with_limit(4);
    let rest = pages_after(logs.as_ref(), &query, p1.next.clone()).await?;
    let mut want: Vec<Run> = original[4..].to_vec();
    want.push(lower);
    want.push(run("old-x", "etl", 1, 50));
    sort_newest_first(&mut want);
    ensure_eq!(
        ids(&rest),
        ids(&want),
        "pages after page 1 must continue exactly after {} (keyset), including later arrivals that sort after it and none that sort before it",
        boundary.id
    );
    let seen: BTreeSet<String> = ids(&p1.items).into_iter().chain(ids(&rest)).collect();
    ensure_eq!(
        seen.len(),
        p1.items.len() + rest.len(),
        "no run may appear twice across pages"
    );
    Ok(())
}

/// "`get_recent(workflow, version, limit)` is that query."
///
/// `get_recent` (via `LogRepositoryExt`) returns the newest runs of the
/// workflow (and version), newest first, at most `limit`; an unknown
/// workflow gives none.
pub async fn run_get_recent_returns_newest_first(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let runs = seed_query_runs(logs.as_ref()).await?;
    let got = logs.get_recent(&wf("etl"), None, 3).await?;
    ensure_eq!(
        ids(&got),
        vec!["r12", "r10", "r08"],
        "get_recent(etl, any version, 3)"
    );
    let want: Vec<Run> = runs
        .iter()
        .filter(|r| ["r12", "r10", "r08"].contains(&r.id.as_str()))
        .cloned()
        .collect();
    ensure_eq!(
        got,
        want,
        "get_recent(etl, any version, 3) must return whole runs"
    );
    ensure_eq!(
        ids(&logs.get_recent(&wf("etl"), Some(v(2)), 10).await?),
        vec!["r05", "r04", "r03"],
        "get_recent(etl, version 2, 10)"
    );
    ensure_eq!(
        ids(&logs.get_recent(&wf("report"), Some(v(1)), 1).await?),
        vec!["r07"],
        "get_recent(report, version 1, 1)"
    );
    ensure_eq!(
        logs.get_recent(&wf("unknown"), None, 5).await?.len(),
        0,
        "get_recent(unknown, any version, 5)"
    );
    ensure_eq!(
        logs.get_recent(&wf("etl"), Some(v(9)), 5).await?.len(),
        0,
        "get_recent(etl, version 9 that has no runs, 5)"
    );
    Ok(())
}

/// "Queries filter by workflow id, version, status set, start-time range
/// and trigger" — counted: `count_runs` is the size of the query.
///
/// `count_runs` is 0 on an empty store and, for several filters, equals the
/// number of runs `query_runs` walks; it follows creates, status changes
/// and deletes.
pub async fn run_count_matches_query(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        0,
        "count_runs() on an empty store"
    );
    seed_query_runs(logs.as_ref()).await?;
    let filters = vec![
        RunFilter::default(),
        RunFilter::default().workflow(wf("etl")),
        RunFilter::default().statuses([RunStatus::Pending, RunStatus::Running]),
        RunFilter::default().started_between(Some(t(130, 0)), Some(t(170, 0))),
        RunFilter::default().trigger("schedule").version(v(1)),
    ];
    for filter in &filters {
        let walked = query_all(logs.as_ref(), filter.clone(), 3).await?.len() as u64;
        ensure_eq!(
            logs.count_runs(filter.clone()).await?,
            walked,
            "count_runs({filter:?}) vs query_runs"
        );
    }
    let running = RunFilter::default().statuses([RunStatus::Running]);
    let before = logs.count_runs(running.clone()).await?;
    logs.update_status(
        &rid("r03"),
        RunUpdate::finished(RunStatus::Succeeded, t(125, 0)),
    )
    .await?;
    ensure_eq!(
        logs.count_runs(running).await?,
        before - 1,
        "count_runs(running) after one running run finished"
    );
    logs.delete_run(&rid("r01")).await?;
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        11,
        "count_runs() after deleting one of 12 runs"
    );
    logs.create_run(run("r13", "etl", 1, 300)).await?;
    ensure_eq!(
        logs.count_runs(RunFilter::default().workflow(wf("etl")))
            .await?,
        8,
        "count_runs(etl) after a delete and a create"
    );
    Ok(())
}
