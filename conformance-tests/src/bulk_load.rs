//! Bulk loads (docs/DESIGN.md section 4, "Bulk loads"): a hint about speed
//! that changes no answer, before, during or after the load, nor after a
//! load that was never ended.

use runstore_core::{
    BulkLoadOptions, ErrorKind, EventQuery, MetricQuery, NewEvent, RunFilter, RunId, RunQuery,
    RunStatus, RunWithEvents, StoreSet, SummaryQuery,
};
use serde_json::json;

use crate::factory::{Capability, StoreFactory, reopen_distinct};
use crate::fixtures::{all_pages_checked, metric, rid, run, t, v, wf};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq, ensure_err};

const STATUSES: [RunStatus; 5] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Cancelled,
];

/// Run `n` of a batch named `tag`: one of two workflows and three versions,
/// every status, every third with an external key, `n % 4` events with one
/// idempotency key. Start times repeat, so ties are ordered by id.
fn run_with_events(tag: &str, n: i64) -> RunWithEvents {
    let id = format!("{tag}-{n:03}");
    let workflow = if n % 3 == 0 { "etl" } else { "report" };
    let mut r = run(&id, workflow, 1 + (n % 3) as u32, 100 + (n * 7) % 50);
    r.status = STATUSES[(n % 5) as usize];
    r.trigger = if n % 2 == 0 { "manual" } else { "schedule" }.into();
    if r.status.is_terminal() {
        r.ended_at = Some(t(200 + n % 40, 0));
    }
    if n % 3 == 1 {
        r.external_key = Some(format!("key-{tag}-{n}"));
    }
    let events = (1..=(n % 4) as u64)
        .map(|seq| {
            let mut e = NewEvent::new("step", json!({"seq": seq})).with_at(t(300 + seq as i64, 0));
            if seq == 1 {
                e = e.with_idempotency_key(format!("once-{id}"));
            }
            e.into_event(r.id.clone(), seq)
        })
        .collect();
    RunWithEvents { run: r, events }
}

fn batch(tag: &str, runs: i64) -> Vec<RunWithEvents> {
    (0..runs).map(|n| run_with_events(tag, n)).collect()
}

/// Stores a batch of runs and the metrics of its finished ones in `s`.
async fn load(s: &StoreSet, runs: Vec<RunWithEvents>) -> Result<(), RuleError> {
    let metrics = runs
        .iter()
        .filter(|r| r.run.status.is_terminal())
        .map(|r| {
            metric(
                r.run.id.as_str(),
                r.run.workflow_id.as_str(),
                r.run.workflow_version.get(),
                r.run.status,
                1_000 + (r.run.started_at.as_micros() / 1_000_000 % 37) as u64 * 113,
            )
        })
        .collect();
    s.logs.import_runs(runs).await?;
    s.metrics.record_many(metrics).await?;
    Ok(())
}

/// Every answer the rule compares, each labelled with its call: run queries
/// by every filter a backend indexes (both orders, in pages of 3), counts,
/// lookups by external key, events, metrics and summaries.
async fn answers(s: &StoreSet, ids: &[RunId]) -> Result<Vec<String>, RuleError> {
    let filters = [
        RunFilter::default(),
        RunFilter::default().workflow(wf("etl")),
        RunFilter::default().workflow(wf("report")).version(v(2)),
        RunFilter::default().statuses([RunStatus::Succeeded, RunStatus::Failed]),
        RunFilter::default().statuses([RunStatus::Running]),
        RunFilter::default().started_between(Some(t(120, 0)), Some(t(140, 0))),
        RunFilter::default().ended_between(Some(t(210, 0)), Some(t(230, 0))),
        RunFilter::default().ended_between(None, Some(t(220, 0))),
        RunFilter::default().trigger("schedule"),
    ];
    let mut out = Vec::new();
    for f in filters {
        for oldest_first in [false, true] {
            let mut q = RunQuery::new(f.clone()).with_limit(3);
            if oldest_first {
                q = q.oldest_first();
            }
            let call = format!("query_runs({f:?}, oldest first: {oldest_first})");
            let runs = all_pages_checked(&call, "runs", 3, |c| {
                s.logs.query_runs(q.clone().with_cursor(c))
            })
            .await?;
            out.push(format!("{call}: {runs:?}"));
        }
        let n = s.logs.count_runs(f.clone()).await?;
        out.push(format!("count_runs({f:?}): {n}"));
    }
    for id in ids {
        let run = s.logs.get_run(id).await?;
        if let Some(key) = &run.external_key {
            let found = s.logs.get_run_by_key(&run.workflow_id, key).await?;
            out.push(format!("get_run_by_key({key}): {}", found.id));
        }
        let call = format!("list_events({id})");
        let events = all_pages_checked(&call, "events", 2, |c| {
            s.logs
                .list_events(id, EventQuery::default().with_limit(2).with_cursor(c))
        })
        .await?;
        out.push(format!("{call}: {events:?}"));
    }
    out.push(format!(
        "event_counts: {:?}",
        s.logs.event_counts(ids).await?
    ));
    let metrics = all_pages_checked("list metrics", "metrics", 4, |c| {
        s.metrics
            .list(MetricQuery::default().with_limit(4).with_cursor(c))
    })
    .await?;
    out.push(format!("list metrics: {metrics:?}"));
    for (workflow, version) in [("etl", None), ("report", None), ("report", Some(2))] {
        let q = version.map_or_else(SummaryQuery::default, |n| SummaryQuery::version(v(n)));
        let summary = s.metrics.summary(&wf(workflow), q).await?;
        out.push(format!("summary({workflow}, {version:?}): {summary:?}"));
    }
    Ok(out)
}

/// Compares every answer of `backend` with the reference's, naming the first
/// that differs.
async fn same_answers(
    when: &str,
    backend: &StoreSet,
    reference: &StoreSet,
    ids: &[RunId],
) -> RuleResult {
    let got = answers(backend, ids).await?;
    let want = answers(reference, ids).await?;
    ensure_eq!(got.len(), want.len(), "{when}: number of answers");
    for (g, w) in got.iter().zip(&want) {
        ensure_eq!(g, w, "{when}: an answer differs from the reference's");
    }
    Ok(())
}

/// "A bulk load changes no answer".
///
/// Runs (two workflows, three versions, every status, external keys,
/// events with idempotency keys) and the metrics of the finished ones are
/// stored in three parts: before `begin_bulk_load`, during the load (begun
/// twice on the logs, which is allowed), and after `end_bulk_load` (ended
/// twice, the second a no-op). After each part every query, count, lookup,
/// event listing, metric listing and summary answers as the reference
/// store's does. During the load the rules of writes hold: an import of a
/// run stored with other content is a conflict that writes nothing, a run
/// created with a taken external key returns the holder, a repeated
/// idempotency key returns the first sequence number.
pub async fn bulk_load_changes_no_answer(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let (b, r) = (&s.stores, &runstore_core::memory::store_set());
    let mut ids: Vec<RunId> = Vec::new();
    let part = |ids: &mut Vec<RunId>, tag: &str, n: i64| {
        let runs = batch(tag, n);
        ids.extend(runs.iter().map(|x| x.run.id.clone()));
        runs
    };
    let before = part(&mut ids, "a", 15);
    load(b, before.clone()).await?;
    load(r, before).await?;
    same_answers("before the load", b, r, &ids).await?;

    b.logs.begin_bulk_load(BulkLoadOptions::default()).await?;
    b.logs.begin_bulk_load(BulkLoadOptions::default()).await?;
    b.metrics
        .begin_bulk_load(BulkLoadOptions::default())
        .await?;
    let during = part(&mut ids, "b", 30);
    load(b, during.clone()).await?;
    load(r, during).await?;
    same_answers("during the load", b, r, &ids).await?;

    let mut changed = run_with_events("b", 4);
    changed.run.trigger = "webhook".into();
    ensure_err!(
        b.logs
            .import_runs(vec![run_with_events("c", 0), changed])
            .await,
        ErrorKind::Conflict,
        "during the load, importing b-004 with another trigger"
    );
    ensure_err!(
        b.logs.get_run(&rid("c-000")).await,
        ErrorKind::NotFound,
        "during the load, the refused import's other run"
    );
    let mut taken = run("c-taken", "report", 2, 150);
    taken.external_key = Some("key-b-1".into());
    let w = b.logs.create_run(taken).await?;
    ensure!(
        !w.inserted && w.record.id == rid("b-001"),
        "during the load, a run with b-001's external key must return b-001, got {} (inserted: {})",
        w.record.id,
        w.inserted
    );
    let again = NewEvent::new("retry", json!({})).with_idempotency_key("once-b-003");
    let a = b.logs.append_event(&rid("b-003"), again).await?;
    ensure_eq!(
        a.seq,
        1,
        "during the load, a repeated idempotency key returns the first number"
    );

    b.logs.end_bulk_load().await?;
    b.metrics.end_bulk_load().await?;
    b.logs.end_bulk_load().await?;
    b.metrics.end_bulk_load().await?;
    same_answers("after the load", b, r, &ids).await?;
    let after = part(&mut ids, "d", 10);
    load(b, after.clone()).await?;
    load(r, after).await?;
    same_answers("after writes that follow the load", b, r, &ids).await
}

/// "A bulk load left unended is whole at the next open".
///
/// Needs [`Capability::PersistsAcrossReopen`]. A load is begun and filled
/// and never ended, as when the loading process is killed; a handle opened
/// anew then answers every query as the reference does, takes writes, and
/// still does after it begins and ends a load of its own.
pub async fn bulk_load_unended_is_whole_after_reopen(f: &dyn StoreFactory) -> RuleResult {
    crate::require!(f, Capability::PersistsAcrossReopen);
    let s = f.create().await?;
    let (b, r) = (&s.stores, &runstore_core::memory::store_set());
    let first = batch("a", 12);
    let second = batch("b", 24);
    let mut ids: Vec<RunId> = first.iter().map(|x| x.run.id.clone()).collect();
    ids.extend(second.iter().map(|x| x.run.id.clone()));
    load(b, first.clone()).await?;
    load(r, first).await?;
    b.logs.begin_bulk_load(BulkLoadOptions::default()).await?;
    b.metrics
        .begin_bulk_load(BulkLoadOptions::default())
        .await?;
    load(b, second.clone()).await?;
    load(r, second).await?;
    let other = reopen_distinct(f, &s).await?;
    drop(s);
    let o = &other.stores;
    same_answers("after reopening a store left mid-load", o, r, &ids).await?;
    let more = batch("c", 6);
    ids.extend(more.iter().map(|x| x.run.id.clone()));
    o.logs.begin_bulk_load(BulkLoadOptions::default()).await?;
    o.metrics
        .begin_bulk_load(BulkLoadOptions::default())
        .await?;
    load(o, more.clone()).await?;
    load(r, more).await?;
    o.logs.end_bulk_load().await?;
    o.metrics.end_bulk_load().await?;
    same_answers("after a load through the reopened handle", o, r, &ids).await
}
