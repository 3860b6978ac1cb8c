//! Rules for `LogRepository` (docs/DESIGN.md section 4, "Runs and events").

use std::collections::BTreeSet;
use std::sync::Arc;

use runstore_core::{
    Appended, ArtifactStoreExt, ErrorKind, Event, EventQuery, JsonMap, LogRepository,
    LogRepositoryExt, NewEvent, PutOptions, Run, RunFilter, RunId, RunQuery, RunStatus, RunUpdate,
    RunWithEvents, Timestamp,
};
use serde_json::json;

use crate::factory::{Capability, StoreFactory};
use crate::fixtures::{
    akey, all_pages_checked, appended, def, duplicate_of, event, metric, rid, run, t, v, wf,
};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq, ensure_err, require};

/// Reads every page of `query_runs(filter)` with `limit`, checking that
/// pages are at most `limit` long and that `next` is set exactly when more
/// runs follow.
pub(crate) async fn query_all(
    logs: &dyn LogRepository,
    filter: RunFilter,
    limit: usize,
) -> Result<Vec<Run>, RuleError> {
    let call = format!("query_runs({filter:?}, limit {limit})");
    all_pages_checked(&call, "runs", limit, |cursor| {
        logs.query_runs(
            RunQuery::new(filter.clone())
                .with_limit(limit)
                .with_cursor(cursor),
        )
    })
    .await
}

/// Reads every page of `list_events(run)` with `limit`, with the same checks
/// as [`query_all`].
pub(crate) async fn events_all(
    logs: &dyn LogRepository,
    run_id: &RunId,
    limit: usize,
) -> Result<Vec<Event>, RuleError> {
    let call = format!("list_events({run_id}, limit {limit})");
    all_pages_checked(&call, "events", limit, |cursor| {
        logs.list_events(
            run_id,
            EventQuery::default().with_limit(limit).with_cursor(cursor),
        )
    })
    .await
}

fn ids(runs: &[Run]) -> Vec<String> {
    runs.iter().map(|r| r.id.to_string()).collect()
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// An update back to `pending`, which no run may take.
fn back_to_pending() -> RunUpdate {
    let mut u = RunUpdate::running();
    u.status = RunStatus::Pending;
    u
}

fn one_to(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

fn map(value: serde_json::Value) -> JsonMap {
    match value {
        serde_json::Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

/// The order of docs/DESIGN.md section 4: start time descending, then run id
/// descending (bytewise).
fn sort_newest_first(runs: &mut [Run]) {
    runs.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.id.as_str().as_bytes().cmp(a.id.as_str().as_bytes()))
    });
}

/// A run with every field set: terminal, nested attributes and summaries.
fn full_run(id: &str) -> Run {
    let mut r = run(id, "etl", 3, 100);
    r.status = RunStatus::Succeeded;
    r.trigger = "webhook".into();
    r.started_at = t(100, 250_001);
    r.ended_at = Some(t(160, 999_999));
    r.attributes = map(json!({
        "owner": "team-a",
        "labels": ["nightly", "prod", "ünïcödé ✓"],
        "limits": {"cpu": 2.5, "mem_mb": 4096, "deep": {"x": [1, {"y": null}]}},
        "flag": true,
        "big": 18446744073709551615u64,
        "neg": -9223372036854775808i64,
        "ratio": 0.1
    }));
    r.summaries = map(json!({"rows": 12345, "tables": ["a", "b"], "cost": 1.25, "note": ""}));
    r
}

/// "A run has a workflow id and version, a status, times, a trigger, free
/// attributes and summaries."
///
/// `create_run` returns `inserted == true` and the record; `get_run`
/// returns every field exactly as written (nested JSON, large integers,
/// floats, unicode, times to the microsecond), for a terminal run, a
/// running run and a pending run.
pub async fn run_create_and_get_round_trip(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let full = full_run("run-full");
    let w = logs.create_run(full.clone()).await?;
    ensure!(
        w.inserted,
        "create_run(run-full) into an empty store: expected inserted = true"
    );
    ensure_eq!(
        w.record,
        full,
        "create_run(run-full) must return the stored record"
    );
    ensure_eq!(
        logs.get_run(&rid("run-full")).await?,
        full,
        "get_run(run-full) must return every field as written"
    );

    let mut running = run("run-running", "etl", 1, 50);
    running.status = RunStatus::Running;
    running.trigger = "schedule".into();
    running.attributes = JsonMap::new();
    logs.create_run(running.clone()).await?;
    ensure_eq!(
        logs.get_run(&rid("run-running")).await?,
        running,
        "get_run(run-running): a running run with empty attributes"
    );

    let pending = run("run-pending", "other", 7, 10);
    logs.create_run(pending.clone()).await?;
    ensure_eq!(
        logs.get_run(&rid("run-pending")).await?,
        pending,
        "get_run(run-pending): a pending run (no end time)"
    );
    ensure_eq!(
        logs.get_run(&rid("run-full")).await?,
        full,
        "get_run(run-full) after more runs were created"
    );
    // The three are listed too, with the same content.
    let listed = query_all(logs.as_ref(), RunFilter::default(), 10).await?;
    ensure_eq!(
        listed,
        vec![full, running, pending],
        "query_runs() must return the three runs, whole, newest start first"
    );
    Ok(())
}

/// "A whole run ... can be stored ... idempotently" and docs/DESIGN.md section 3
/// ("a write that contradicts what is stored" is `Conflict`), applied to
/// `create_run`.
///
/// Creating the same run again is a no-op (`inserted == false`, the stored
/// record returned), even with attribute keys in another order; creating it
/// with another trigger, attributes, start or status is `Conflict` and the
/// stored run is unchanged.
pub async fn run_create_is_idempotent_and_conflicts_on_difference(
    f: &dyn StoreFactory,
) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let r = full_run("r1");
    logs.create_run(r.clone()).await?;
    let again = logs.create_run(r.clone()).await?;
    ensure!(
        !again.inserted,
        "create_run(r1) twice with identical content: expected inserted = false"
    );
    ensure_eq!(
        again.record,
        r,
        "create_run(r1) again must return the stored record"
    );

    let mut changes: Vec<(&str, Run)> = Vec::new();
    let mut c = r.clone();
    c.trigger = "manual".into();
    changes.push(("trigger", c));
    let mut c = r.clone();
    c.attributes.insert("owner".into(), json!("team-b"));
    changes.push(("attributes", c));
    let mut c = r.clone();
    c.started_at = t(100, 250_002);
    changes.push(("started_at (1 µs later)", c));
    let mut c = r.clone();
    c.status = RunStatus::Failed;
    changes.push(("status", c));
    let mut c = r.clone();
    c.workflow_version = v(4);
    changes.push(("workflow_version", c));
    let mut c = r.clone();
    c.summaries = JsonMap::new();
    changes.push(("summaries", c));
    for (what, changed) in changes {
        ensure_err!(
            logs.create_run(changed).await,
            ErrorKind::Conflict,
            "create_run(r1) again with another {what}"
        );
    }
    ensure_eq!(
        logs.get_run(&rid("r1")).await?,
        r,
        "get_run(r1) after refused conflicting creates must return the original"
    );
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after one create and refused duplicates"
    );
    Ok(())
}

/// "Status moves forward only: `pending -> running -> succeeded | failed |
/// cancelled`."
///
/// pending -> running -> succeeded works and the returned run is what
/// `get_run` shows; pending may finish directly (core/README.md); running
/// -> pending and terminal -> pending/running are `Conflict` and change
/// nothing; summaries given with an update replace the stored ones.
pub async fn run_status_moves_forward_only(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    for id in ["a", "b", "c", "d"] {
        logs.create_run(run(id, "etl", 1, 10)).await?;
    }

    let summaries = map(json!({"step": "extract", "progress": 0.5}));
    let got = logs
        .update_status(
            &rid("a"),
            RunUpdate::running().with_summaries(summaries.clone()),
        )
        .await?;
    ensure_eq!(
        got.status,
        RunStatus::Running,
        "update_status(a, running) from pending"
    );
    ensure_eq!(got.ended_at, None, "a running run has no end time");
    ensure_eq!(
        got.summaries,
        summaries,
        "summaries given with update_status(a, running)"
    );
    ensure_eq!(
        logs.get_run(&rid("a")).await?,
        got,
        "get_run(a) must equal what update_status returned"
    );

    ensure_err!(
        logs.update_status(&rid("a"), back_to_pending()).await,
        ErrorKind::Conflict,
        "update_status(a, pending) from running"
    );
    ensure_eq!(
        logs.get_run(&rid("a")).await?.status,
        RunStatus::Running,
        "status of a after refused running -> pending"
    );

    let done = logs
        .update_status(
            &rid("a"),
            RunUpdate::finished(RunStatus::Succeeded, t(20, 1)),
        )
        .await?;
    ensure_eq!(
        done.status,
        RunStatus::Succeeded,
        "update_status(a, succeeded) from running"
    );
    ensure_eq!(done.ended_at, Some(t(20, 1)), "end time of a");
    ensure_eq!(
        done.summaries,
        summaries,
        "summaries kept when the update carries none"
    );
    ensure_eq!(
        logs.get_run(&rid("a")).await?,
        done,
        "get_run(a) after it succeeded"
    );

    // Pending finishes directly, with every terminal status.
    for (id, status) in [
        ("b", RunStatus::Failed),
        ("c", RunStatus::Cancelled),
        ("d", RunStatus::Succeeded),
    ] {
        let got = logs
            .update_status(&rid(id), RunUpdate::finished(status, t(30, 0)))
            .await?;
        ensure_eq!(
            got.status,
            status,
            "update_status({id}, {status}) from pending"
        );
        ensure_eq!(
            logs.get_run(&rid(id)).await?.ended_at,
            Some(t(30, 0)),
            "end time of {id} read back"
        );
    }

    // Nothing moves a terminal run back.
    for (id, status) in [
        ("a", RunStatus::Succeeded),
        ("b", RunStatus::Failed),
        ("c", RunStatus::Cancelled),
    ] {
        let before = logs.get_run(&rid(id)).await?;
        ensure_err!(
            logs.update_status(&rid(id), RunUpdate::running()).await,
            ErrorKind::Conflict,
            "update_status({id}, running) when {id} is {status}"
        );
        ensure_err!(
            logs.update_status(&rid(id), back_to_pending()).await,
            ErrorKind::Conflict,
            "update_status({id}, pending) when {id} is {status}"
        );
        ensure_eq!(
            logs.get_run(&rid(id)).await?,
            before,
            "run {id} after refused backward moves"
        );
    }
    ensure_err!(
        logs.update_status(&rid("nope"), RunUpdate::running()).await,
        ErrorKind::NotFound,
        "update_status(nope, running) of a run that does not exist"
    );
    Ok(())
}

/// "A terminal status and its end time are set once and never change or
/// clear; finishing again with the same outcome succeeds, with another is
/// `Conflict`."
///
/// Finishing again with the same status, another end time and other
/// summaries succeeds and changes nothing (core/README.md); another
/// terminal status is `Conflict` and changes nothing.
pub async fn run_terminal_status_and_end_time_set_once(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("r", "etl", 1, 10)).await?;
    logs.update_status(&rid("r"), RunUpdate::running()).await?;
    let first_summaries = map(json!({"rows": 10}));
    let finished = logs
        .update_status(
            &rid("r"),
            RunUpdate::finished(RunStatus::Failed, t(50, 500))
                .with_summaries(first_summaries.clone()),
        )
        .await?;
    ensure_eq!(
        finished.ended_at,
        Some(t(50, 500)),
        "end time after finishing r as failed"
    );

    let again = logs
        .update_status(
            &rid("r"),
            RunUpdate::finished(RunStatus::Failed, t(99, 0))
                .with_summaries(map(json!({"rows": 99}))),
        )
        .await?;
    ensure_eq!(
        again,
        finished,
        "finishing r again as failed with another end time and summaries must succeed and change nothing"
    );
    ensure_eq!(
        logs.get_run(&rid("r")).await?,
        finished,
        "get_run(r) after finishing again the same way"
    );

    for other in [RunStatus::Succeeded, RunStatus::Cancelled] {
        ensure_err!(
            logs.update_status(&rid("r"), RunUpdate::finished(other, t(60, 0)))
                .await,
            ErrorKind::Conflict,
            "finishing r as {other} after it failed"
        );
    }
    let stored = logs.get_run(&rid("r")).await?;
    ensure_eq!(
        stored.status,
        RunStatus::Failed,
        "status of r after refused re-finishes"
    );
    ensure_eq!(
        stored.ended_at,
        Some(t(50, 500)),
        "end time of r after refused re-finishes"
    );
    ensure_eq!(
        stored.summaries,
        first_summaries,
        "summaries of r after refused re-finishes"
    );

    // A run created terminal is just as final.
    let mut created = run("c", "etl", 1, 10);
    created.status = RunStatus::Succeeded;
    created.ended_at = Some(t(11, 0));
    logs.create_run(created.clone()).await?;
    ensure_eq!(
        logs.update_status(
            &rid("c"),
            RunUpdate::finished(RunStatus::Succeeded, t(12, 0))
        )
        .await?,
        created,
        "finishing c (created succeeded) again as succeeded"
    );
    ensure_err!(
        logs.update_status(&rid("c"), RunUpdate::finished(RunStatus::Failed, t(12, 0)))
            .await,
        ErrorKind::Conflict,
        "finishing c (created succeeded) as failed"
    );
    ensure_eq!(
        logs.get_run(&rid("c")).await?,
        created,
        "get_run(c) after refused re-finish"
    );
    Ok(())
}

/// "`ended_at` is set exactly for terminal runs and is never before
/// `started_at`" (core/README.md, on docs/DESIGN.md section 4 "times").
///
/// An end time before the start is `InvalidInput` in `update_status` and
/// `create_run` and stores nothing; an end time equal to the start is
/// fine; a terminal run without an end time, a pending or running run with
/// one, and a non-terminal update carrying one are `InvalidInput`.
pub async fn run_end_time_not_before_start(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("r", "etl", 1, 100)).await?;
    ensure_err!(
        logs.update_status(
            &rid("r"),
            RunUpdate::finished(RunStatus::Succeeded, t(99, 999_999))
        )
        .await,
        ErrorKind::InvalidInput,
        "update_status(r, succeeded at 1 µs before its start)"
    );
    let stored = logs.get_run(&rid("r")).await?;
    ensure!(
        stored.status == RunStatus::Pending && stored.ended_at.is_none(),
        "run r after a refused finish must still be pending without end time, got {:?} {:?}",
        stored.status,
        stored.ended_at
    );
    let mut bad_update = RunUpdate::running();
    bad_update.ended_at = Some(t(200, 0));
    ensure_err!(
        logs.update_status(&rid("r"), bad_update).await,
        ErrorKind::InvalidInput,
        "update_status(r, running with an end time)"
    );
    ensure_eq!(
        logs.get_run(&rid("r")).await?.status,
        RunStatus::Pending,
        "status of r after a refused update"
    );
    let same = logs
        .update_status(
            &rid("r"),
            RunUpdate::finished(RunStatus::Cancelled, t(100, 0)),
        )
        .await?;
    ensure_eq!(
        same.ended_at,
        Some(t(100, 0)),
        "finishing r at exactly its start time"
    );

    let mut early = run("early", "etl", 1, 100);
    early.status = RunStatus::Failed;
    early.ended_at = Some(t(50, 0));
    ensure_err!(
        logs.create_run(early).await,
        ErrorKind::InvalidInput,
        "create_run(early) that ends before it starts"
    );
    let mut no_end = run("no-end", "etl", 1, 100);
    no_end.status = RunStatus::Succeeded;
    ensure_err!(
        logs.create_run(no_end).await,
        ErrorKind::InvalidInput,
        "create_run(no-end) succeeded without an end time"
    );
    let mut pending_end = run("pending-end", "etl", 1, 100);
    pending_end.ended_at = Some(t(200, 0));
    ensure_err!(
        logs.create_run(pending_end).await,
        ErrorKind::InvalidInput,
        "create_run(pending-end) pending with an end time"
    );
    let mut running_end = run("running-end", "etl", 1, 100);
    running_end.status = RunStatus::Running;
    running_end.ended_at = Some(t(200, 0));
    ensure_err!(
        logs.create_run(running_end).await,
        ErrorKind::InvalidInput,
        "create_run(running-end) running with an end time"
    );
    for id in ["early", "no-end", "pending-end", "running-end"] {
        ensure_err!(
            logs.get_run(&rid(id)).await,
            ErrorKind::NotFound,
            "get_run({id}) after its create was refused: nothing may be stored"
        );
    }
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after refused creates"
    );
    Ok(())
}

/// "Timestamps are UTC with microsecond precision in every backend (what
/// Postgres keeps), so that a value read back equals the value written"
/// (docs/DESIGN.md section 2, for the times of section 4).
///
/// Start, end and event times with odd microseconds (e.g. `.123457`), before
/// 1970, and at both ends of the range (year 1 and year 9999) read back
/// equal, through `get_run`, `query_runs`, `list_events` and import, and
/// filters compare them to the microsecond.
pub async fn run_timestamps_keep_microseconds(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let cases: Vec<(&str, Timestamp, Timestamp)> = vec![
        ("odd", t(1, 123_457), t(2, 999_999)),
        ("one", t(3, 1), t(3, 2)),
        (
            "pre-1970",
            Timestamp::from_micros(-1_234_567_891)?,
            Timestamp::from_micros(-1)?,
        ),
        (
            "year-1",
            Timestamp::MIN,
            Timestamp::from_micros(Timestamp::MIN.as_micros() + 1)?,
        ),
        (
            "year-9999",
            Timestamp::from_micros(Timestamp::MAX.as_micros() - 1)?,
            Timestamp::MAX,
        ),
    ];
    for (id, start, end) in &cases {
        let mut r = run(id, "etl", 1, 0);
        r.started_at = *start;
        logs.create_run(r).await?;
        logs.append_event(&rid(id), NewEvent::new("tick", json!({})).with_at(*start))
            .await?;
        logs.append_event(&rid(id), NewEvent::new("tock", json!({})).with_at(*end))
            .await?;
        logs.update_status(&rid(id), RunUpdate::finished(RunStatus::Succeeded, *end))
            .await?;
        let got = logs.get_run(&rid(id)).await?;
        ensure_eq!(got.started_at, *start, "started_at of run {id} read back");
        ensure_eq!(got.ended_at, Some(*end), "ended_at of run {id} read back");
        let ev = events_all(logs.as_ref(), &rid(id), 10).await?;
        ensure_eq!(
            ev.iter().map(|e| e.at).collect::<Vec<_>>(),
            vec![*start, *end],
            "event times of run {id} read back"
        );
    }
    let listed = query_all(logs.as_ref(), RunFilter::default(), 2).await?;
    let mut want: Vec<(String, Timestamp)> =
        cases.iter().map(|(i, s, _)| (i.to_string(), *s)).collect();
    want.sort_by_key(|w| std::cmp::Reverse(w.1));
    ensure_eq!(
        listed
            .iter()
            .map(|r| (r.id.to_string(), r.started_at))
            .collect::<Vec<_>>(),
        want,
        "query_runs() must return every run with its exact start, newest first"
    );
    // Filters compare to the microsecond.
    let f1 = RunFilter::default().started_between(Some(t(1, 123_457)), Some(t(1, 123_458)));
    ensure_eq!(
        ids(&query_all(logs.as_ref(), f1.clone(), 10).await?),
        vec!["odd".to_string()],
        "query_runs(started in [t+1.123457s, t+1.123458s))"
    );
    let f2 = RunFilter::default().started_between(Some(t(1, 123_458)), None);
    ensure_eq!(
        ids(&query_all(logs.as_ref(), f2, 10).await?),
        vec!["year-9999".to_string(), "one".to_string()],
        "query_runs(started at or after t+1.123458s) must exclude the run started 1 µs earlier"
    );
    let f3 = RunFilter::default().started_between(None, Some(t(1, 123_457)));
    ensure_eq!(
        ids(&query_all(logs.as_ref(), f3, 10).await?),
        vec!["pre-1970".to_string(), "year-1".to_string()],
        "query_runs(started before t+1.123457s) must exclude the run started exactly then"
    );

    // Import keeps microseconds too.
    let mut imported = run("imported", "etl", 1, 0);
    imported.started_at = t(7, 654_321);
    imported.status = RunStatus::Cancelled;
    imported.ended_at = Some(t(8, 7));
    let ev = NewEvent::new("x", json!(null))
        .with_at(t(7, 999_001))
        .into_event(rid("imported"), 1);
    logs.import_runs(vec![RunWithEvents {
        run: imported.clone(),
        events: vec![ev.clone()],
    }])
    .await?;
    ensure_eq!(
        logs.get_run(&rid("imported")).await?,
        imported,
        "imported run read back"
    );
    ensure_eq!(
        events_all(logs.as_ref(), &rid("imported"), 10).await?,
        vec![ev],
        "imported event read back"
    );
    Ok(())
}

/// "Each run's events are numbered 1, 2, 3 ... by the store, with no gaps,
/// in append order."
///
/// Appends to two runs, interleaved, are numbered from 1 per run; the list
/// returns the events whole in append order; events may be appended to a
/// finished run (core/README.md) and continue the numbering.
pub async fn event_numbering_starts_at_one_without_gaps(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    logs.create_run(run("b", "etl", 1, 11)).await?;
    let mut want_a = Vec::new();
    for i in 1..=6u64 {
        let e = NewEvent::new(
            format!("step.{i}"),
            json!({"i": i, "text": format!("line {i}")}),
        )
        .with_at(t(20 + i as i64, i as i64));
        let got = logs.append_event(&rid("a"), e.clone()).await?;
        ensure_eq!(got, appended(i), "append_event(a, event {i})");
        want_a.push(e.into_event(rid("a"), i));
        if i % 2 == 0 {
            let got = logs
                .append_event(&rid("b"), event("b.step", i as i64))
                .await?;
            ensure_eq!(
                got.seq,
                i / 2,
                "append_event(b, ...) interleaved with run a: numbering is per run"
            );
        }
    }
    ensure_eq!(
        events_all(logs.as_ref(), &rid("a"), 100).await?,
        want_a,
        "list_events(a) must return the six events whole, numbered 1..6 in append order"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("b"), 100).await?),
        one_to(3),
        "list_events(b)"
    );
    // Late lines after the run finished continue the numbering.
    logs.update_status(
        &rid("a"),
        RunUpdate::finished(RunStatus::Succeeded, t(40, 0)),
    )
    .await?;
    let late = logs.append_event(&rid("a"), event("late.line", 41)).await?;
    ensure_eq!(late, appended(7), "append_event(a) after a finished");
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("a"), 100).await?),
        one_to(7),
        "list_events(a) after a late append"
    );
    // A run without events lists nothing.
    logs.create_run(run("c", "etl", 1, 12)).await?;
    let empty = logs.list_events(&rid("c"), EventQuery::default()).await?;
    ensure!(
        empty.items.is_empty() && empty.next.is_none(),
        "list_events(c) of a run without events: expected an empty last page, got {} items, next {:?}",
        empty.items.len(),
        empty.next
    );
    Ok(())
}

/// "An event may carry an idempotency key: appending the same key again to
/// that run returns the original sequence number and stores nothing
/// (webhook redelivery)."
///
/// A repeated key (even with another payload) returns the first sequence
/// number with `duplicate == true` and stores nothing; the next new event
/// continues without a gap; the same key on another run is a new event.
pub async fn event_idempotency_key_returns_original_seq(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    logs.create_run(run("b", "etl", 1, 11)).await?;
    let first = NewEvent::new("webhook.received", json!({"delivery": 1}))
        .with_at(t(20, 0))
        .with_idempotency_key("delivery-42");
    ensure_eq!(
        logs.append_event(&rid("a"), first.clone()).await?,
        appended(1),
        "append_event(a, key delivery-42)"
    );
    ensure_eq!(
        logs.append_event(&rid("a"), event("plain", 21)).await?,
        appended(2),
        "append_event(a, no key)"
    );
    let redelivery = NewEvent::new("webhook.received.again", json!({"delivery": 2}))
        .with_at(t(22, 0))
        .with_idempotency_key("delivery-42");
    for attempt in 1..=3 {
        ensure_eq!(
            logs.append_event(&rid("a"), redelivery.clone()).await?,
            duplicate_of(1),
            "append_event(a, key delivery-42) again, attempt {attempt}: must return the original seq 1 and store nothing"
        );
    }
    ensure_eq!(
        logs.append_event(&rid("a"), event("next", 23)).await?,
        appended(3),
        "append_event(a) after duplicates: numbering continues without a gap"
    );
    let listed = events_all(logs.as_ref(), &rid("a"), 10).await?;
    ensure_eq!(
        seqs(&listed),
        one_to(3),
        "list_events(a): duplicates must store nothing"
    );
    ensure_eq!(
        listed[0],
        first.clone().into_event(rid("a"), 1),
        "event 1 of a must be the FIRST delivery, with its key"
    );
    // Keys are per run.
    ensure_eq!(
        logs.append_event(&rid("b"), event("other", 24)).await?,
        appended(1),
        "append_event(b, no key)"
    );
    ensure_eq!(
        logs.append_event(&rid("b"), redelivery.clone()).await?,
        appended(2),
        "append_event(b, key delivery-42) used before on run a only: a new event of b"
    );
    ensure_eq!(
        logs.append_event(&rid("b"), first).await?,
        duplicate_of(2),
        "append_event(b, key delivery-42) again on b"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("b"), 10).await?),
        one_to(2),
        "list_events(b)"
    );
    // Keys are compared exactly.
    let near = event("near", 25).with_idempotency_key("Delivery-42");
    ensure_eq!(
        logs.append_event(&rid("a"), near).await?,
        appended(4),
        "append_event(a, key Delivery-42): keys are case-sensitive"
    );
    Ok(())
}

/// "Events are append-only. Each run's events are numbered ... in append
/// order" and (trait) "Appends events in order, all or nothing. A key
/// repeated within the batch behaves as if appended twice in a row."
///
/// A batch is numbered in order after the stored events; a key repeated in
/// the batch, or one already stored, is a duplicate; a batch with one
/// invalid event (a kind with a control character, a payload with NUL)
/// is `InvalidInput` and stores nothing; an empty batch stores nothing.
pub async fn event_batch_append_is_ordered_and_atomic(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    logs.append_event(&rid("a"), event("first", 11).with_idempotency_key("k0"))
        .await?;

    let batch = vec![
        event("b1", 12),
        event("b2", 13).with_idempotency_key("k1"),
        event("b3", 14),
        event("b4", 15),
    ];
    let got = logs.append_events(&rid("a"), batch.clone()).await?;
    ensure_eq!(
        got.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(),
        vec![(2, false), (3, false), (4, false), (5, false)],
        "append_events(a, 4 events) after one stored event"
    );
    let listed = events_all(logs.as_ref(), &rid("a"), 100).await?;
    ensure_eq!(
        listed.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["first", "b1", "b2", "b3", "b4"],
        "list_events(a): batch events in batch order"
    );

    let dup_batch = vec![
        event("c1", 16).with_idempotency_key("k2"),
        event("c2", 17),
        event("c3", 18).with_idempotency_key("k2"),
        event("c4", 19).with_idempotency_key("k0"),
        event("c5", 20),
    ];
    let got = logs.append_events(&rid("a"), dup_batch).await?;
    ensure_eq!(
        got.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(),
        vec![(6, false), (7, false), (6, true), (1, true), (8, false)],
        "append_events(a) with key k2 twice in the batch and k0 stored before"
    );
    ensure_eq!(
        listed.len() + 3,
        events_all(logs.as_ref(), &rid("a"), 100).await?.len(),
        "list_events(a) after a batch with two duplicates must hold three more events"
    );

    let bad_kind = vec![event("d1", 21), event("bad\u{7}kind", 22), event("d3", 23)];
    ensure_err!(
        logs.append_events(&rid("a"), bad_kind).await,
        ErrorKind::InvalidInput,
        "append_events(a) with a kind holding a control character in the middle of the batch"
    );
    let bad_payload = vec![
        event("e1", 24).with_idempotency_key("k-new"),
        NewEvent::new("e2", json!({"s": "nul\u{0}inside"})).with_at(t(25, 0)),
    ];
    ensure_err!(
        logs.append_events(&rid("a"), bad_payload).await,
        ErrorKind::InvalidInput,
        "append_events(a) with a payload holding NUL at the end of the batch"
    );
    let after = events_all(logs.as_ref(), &rid("a"), 100).await?;
    ensure_eq!(
        seqs(&after),
        one_to(8),
        "list_events(a) after refused batches: nothing of them may be stored"
    );
    // The key of the refused batch was not recorded either.
    ensure_eq!(
        logs.append_event(&rid("a"), event("f", 26).with_idempotency_key("k-new"))
            .await?,
        appended(9),
        "append_event(a, key k-new) whose only previous use was in a refused batch"
    );
    ensure_eq!(
        logs.append_events(&rid("a"), Vec::new()).await?,
        Vec::<Appended>::new(),
        "append_events(a, empty batch)"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("a"), 100).await?),
        one_to(9),
        "list_events(a) after an empty batch"
    );
    Ok(())
}

/// "`NotFound`: the id, version, run or artifact does not exist" (docs/DESIGN.md
/// section 3) for the run operations of section 4.
///
/// Appending (one or a batch), listing events, updating, getting and
/// deleting a run that does not exist are `NotFound`, and create nothing.
pub async fn event_append_to_missing_run_is_not_found(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("present", "etl", 1, 10)).await?;
    let ghost = rid("ghost");
    ensure_err!(
        logs.append_event(&ghost, event("x", 1)).await,
        ErrorKind::NotFound,
        "append_event(ghost)"
    );
    ensure_err!(
        logs.append_event(&ghost, event("x", 1).with_idempotency_key("k"))
            .await,
        ErrorKind::NotFound,
        "append_event(ghost, with a key)"
    );
    ensure_err!(
        logs.append_events(&ghost, vec![event("x", 1), event("y", 2)])
            .await,
        ErrorKind::NotFound,
        "append_events(ghost)"
    );
    ensure_err!(
        logs.list_events(&ghost, EventQuery::default()).await,
        ErrorKind::NotFound,
        "list_events(ghost)"
    );
    ensure_err!(
        logs.update_status(&ghost, RunUpdate::running()).await,
        ErrorKind::NotFound,
        "update_status(ghost)"
    );
    ensure_err!(
        logs.get_run(&ghost).await,
        ErrorKind::NotFound,
        "get_run(ghost)"
    );
    ensure_err!(
        logs.delete_run(&ghost).await,
        ErrorKind::NotFound,
        "delete_run(ghost)"
    );
    ensure_err!(
        logs.get_run(&rid("Present")).await,
        ErrorKind::NotFound,
        "get_run(Present) with only `present` stored: run ids are case-sensitive"
    );
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after operations on a missing run"
    );
    ensure_eq!(
        events_all(logs.as_ref(), &rid("present"), 10).await?.len(),
        0,
        "events of `present` after appends to a missing run"
    );
    Ok(())
}

/// "page with an opaque cursor" (section 4, applied to a run's events) and
/// core/README.md: "`next` is set exactly when more items follow".
///
/// 25 events listed with limits 1, 7, 24, 25 and 100 come back complete, in
/// sequence order, without duplicates; `next` is `None` exactly on the last
/// page; a cursor taken before more appends continues with them.
pub async fn event_list_paged_in_sequence_order(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    let batch: Vec<NewEvent> = (1..=25).map(|i| event(&format!("e{i}"), i)).collect();
    logs.append_events(&rid("a"), batch).await?;
    for limit in [1, 7, 24, 25, 100] {
        let got = events_all(logs.as_ref(), &rid("a"), limit).await?;
        ensure_eq!(
            seqs(&got),
            one_to(25),
            "list_events(a) walked with limit {limit}"
        );
        ensure_eq!(
            got[9].kind,
            "e10",
            "kind of event 10 listed with limit {limit}"
        );
    }
    let full = logs
        .list_events(&rid("a"), EventQuery::default().with_limit(25))
        .await?;
    ensure!(
        full.items.len() == 25 && full.next.is_none(),
        "list_events(a, limit 25) with exactly 25 events: expected one page without next, got {} items, next {:?}",
        full.items.len(),
        full.next
    );
    let p1 = logs
        .list_events(&rid("a"), EventQuery::default().with_limit(20))
        .await?;
    ensure!(
        p1.next.is_some(),
        "list_events(a, limit 20) of 25 events must set next"
    );
    logs.append_events(
        &rid("a"),
        (26..=30).map(|i| event(&format!("e{i}"), i)).collect(),
    )
    .await?;
    let p2 = logs
        .list_events(
            &rid("a"),
            EventQuery::default().with_limit(100).with_cursor(p1.next),
        )
        .await?;
    ensure_eq!(
        seqs(&p2.items),
        (21..=30).collect::<Vec<u64>>(),
        "list_events(a) after a cursor taken before 5 more appends must continue at 21 and include them"
    );
    ensure!(
        p2.next.is_none(),
        "the last page of events must have next = None"
    );
    Ok(())
}

/// "Each run's events are numbered 1, 2, 3 ... by the store, with no gaps,
/// in append order", under concurrency.
///
/// 16 tasks append 10 events each through one shared handle: the sequence
/// numbers are exactly 1..160, each task sees its own numbers increasing,
/// and the list agrees with what each append returned. Then 16 tasks
/// append the same idempotency key at once: exactly one stores it, all get
/// its number.
pub async fn event_concurrent_appends_number_without_gaps(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs: Arc<dyn LogRepository> = s.stores.logs.clone();
    logs.create_run(run("hot", "etl", 1, 10)).await?;
    const TASKS: usize = 16;
    const EACH: usize = 10;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let logs = logs.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let e = NewEvent::new(format!("task{task}.{i}"), json!({"task": task, "i": i}))
                    .with_at(t(20, (task * 100 + i) as i64));
                got.push((logs.append_event(&rid("hot"), e).await?, task, i));
            }
            Ok::<_, runstore_core::Error>(got)
        }));
    }
    let mut all: Vec<(Appended, usize, usize)> = Vec::new();
    for h in handles {
        let got = h
            .await
            .map_err(|e| RuleError::Failed(format!("an appending task panicked: {e}")))??;
        let task_seqs: Vec<u64> = got.iter().map(|(a, _, _)| a.seq).collect();
        ensure!(
            task_seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's sequential appends must get increasing numbers, got {task_seqs:?}"
        );
        all.extend(got);
    }
    let total = (TASKS * EACH) as u64;
    let mut numbers: Vec<u64> = all.iter().map(|(a, _, _)| a.seq).collect();
    numbers.sort_unstable();
    ensure_eq!(
        numbers,
        one_to(total),
        "numbers returned by {TASKS}x{EACH} concurrent appends: 1..{total}, no gap, no duplicate"
    );
    ensure!(
        all.iter().all(|(a, _, _)| !a.duplicate),
        "no append without a key may be a duplicate"
    );
    let listed = events_all(logs.as_ref(), &rid("hot"), 37).await?;
    ensure_eq!(
        seqs(&listed),
        one_to(total),
        "list_events(hot) after concurrent appends"
    );
    for (a, task, i) in &all {
        let e = &listed[(a.seq - 1) as usize];
        ensure_eq!(
            e.kind,
            format!("task{task}.{i}"),
            "event {} must be the one whose append returned {}",
            a.seq,
            a.seq
        );
    }

    // One key, sixteen deliveries at once.
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let logs = logs.clone();
        handles.push(tokio::spawn(async move {
            let e = NewEvent::new("webhook", json!({"task": task}))
                .with_at(t(30, task as i64))
                .with_idempotency_key("same-delivery");
            logs.append_event(&rid("hot"), e).await
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(
            h.await
                .map_err(|e| RuleError::Failed(format!("an appending task panicked: {e}")))??,
        );
    }
    let fresh: Vec<&Appended> = results.iter().filter(|a| !a.duplicate).collect();
    ensure_eq!(
        fresh.len(),
        1,
        "{TASKS} concurrent appends of one idempotency key: exactly one must store it, got {results:?}"
    );
    ensure!(
        results.iter().all(|a| a.seq == total + 1),
        "{TASKS} concurrent appends of one key must all return seq {}, got {results:?}",
        total + 1
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("hot"), 1000).await?),
        one_to(total + 1),
        "list_events(hot) after concurrent duplicate deliveries"
    );
    Ok(())
}

/// A run with `n` events, keys `k1..kn` on odd events.
fn with_events(r: Run, n: u64) -> RunWithEvents {
    let events = (1..=n)
        .map(|i| {
            let mut e = NewEvent::new(format!("ev{i}"), json!({"i": i, "nested": {"x": [i]}}))
                .with_at(r.started_at.saturating_add_micros(i as i64 * 1_000_001));
            if i % 2 == 1 {
                e = e.with_idempotency_key(format!("k{i}"));
            }
            e.into_event(r.id.clone(), i)
        })
        .collect();
    RunWithEvents { run: r, events }
}

/// "A whole run with its events can be stored at once (import, migration),
/// idempotently."
///
/// Importing runs with events stores them exactly (run and events as
/// given); importing the same batch again reports them all unchanged and
/// changes nothing; a batch mixing stored and new runs counts each; a run
/// created and appended to normally, then imported identically, is
/// unchanged.
pub async fn run_import_is_idempotent(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let batch = vec![
        with_events(full_run("imp-1"), 4),
        with_events(run("imp-2", "etl", 2, 30), 0),
        with_events(run("imp-3", "other", 1, 40), 7),
    ];
    let first = logs.import_runs(batch.clone()).await?;
    ensure_eq!(
        (first.inserted, first.unchanged),
        (3, 0),
        "import_runs(3 new runs) (inserted, unchanged)"
    );
    for r in &batch {
        ensure_eq!(
            logs.get_run(&r.run.id).await?,
            r.run,
            "imported run {} read back",
            r.run.id
        );
        ensure_eq!(
            events_all(logs.as_ref(), &r.run.id, 3).await?,
            r.events,
            "imported events of {} read back",
            r.run.id
        );
    }
    let second = logs.import_runs(batch.clone()).await?;
    ensure_eq!(
        (second.inserted, second.unchanged),
        (0, 3),
        "import_runs(same 3 runs) again (inserted, unchanged)"
    );
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        3,
        "count_runs() after importing twice"
    );
    ensure_eq!(
        events_all(logs.as_ref(), &rid("imp-3"), 100).await?.len(),
        7,
        "events of imp-3 after importing twice"
    );

    let mut mixed = batch.clone();
    mixed.push(with_events(run("imp-4", "etl", 1, 50), 2));
    let third = logs.import_runs(mixed).await?;
    ensure_eq!(
        (third.inserted, third.unchanged),
        (1, 3),
        "import_runs(3 stored + 1 new) (inserted, unchanged)"
    );

    // A run built through create_run and append_event imports as unchanged.
    let live = run("live", "etl", 1, 60);
    logs.create_run(live.clone()).await?;
    let e1 = event("a", 61).with_idempotency_key("x");
    let e2 = event("b", 62);
    logs.append_event(&rid("live"), e1.clone()).await?;
    logs.append_event(&rid("live"), e2.clone()).await?;
    let same = RunWithEvents {
        run: live,
        events: vec![e1.into_event(rid("live"), 1), e2.into_event(rid("live"), 2)],
    };
    let fourth = logs.import_runs(vec![same]).await?;
    ensure_eq!(
        (fourth.inserted, fourth.unchanged),
        (0, 1),
        "import_runs(a run identical to one created and appended to normally)"
    );
    let empty = logs.import_runs(Vec::new()).await?;
    ensure_eq!(
        (empty.inserted, empty.unchanged),
        (0, 0),
        "import_runs(empty batch)"
    );
    Ok(())
}

/// "A whole run with its events can be stored at once ... idempotently"
/// and (trait) "one stored differently is `Conflict` and nothing of the
/// batch is written."
///
/// A batch whose last run differs from the stored one (in its record, or
/// only in its events) is `Conflict`; the new runs of the batch are absent
/// afterwards and the stored run is unchanged.
pub async fn run_import_conflict_writes_nothing(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let stored = with_events(run("stored", "etl", 1, 10), 3);
    logs.import_runs(vec![stored.clone()]).await?;

    let mut other_record = stored.clone();
    other_record.run.trigger = "schedule".into();
    let mut extra_event = with_events(run("stored", "etl", 1, 10), 4);
    extra_event.run = stored.run.clone();
    let mut other_event = stored.clone();
    other_event.events[1].payload = json!({"changed": true});
    let mut fewer_events = stored.clone();
    fewer_events.events.pop();
    for (what, conflicting) in [
        ("another trigger", other_record),
        ("one more event", extra_event),
        ("another payload of event 2", other_event),
        ("one event less", fewer_events),
    ] {
        let batch = vec![
            with_events(run("new-1", "etl", 1, 20), 2),
            with_events(run("new-2", "etl", 1, 21), 0),
            conflicting,
        ];
        ensure_err!(
            logs.import_runs(batch).await,
            ErrorKind::Conflict,
            "import_runs([new-1, new-2, stored with {what}])"
        );
        for id in ["new-1", "new-2"] {
            ensure_err!(
                logs.get_run(&rid(id)).await,
                ErrorKind::NotFound,
                "get_run({id}) after a refused import (stored with {what}): nothing of the batch may be written"
            );
        }
        ensure_eq!(
            logs.get_run(&rid("stored")).await?,
            stored.run,
            "stored run after a refused import ({what})"
        );
        ensure_eq!(
            events_all(logs.as_ref(), &rid("stored"), 10).await?,
            stored.events,
            "events of the stored run after a refused import ({what})"
        );
    }
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after refused imports"
    );
    // Conflict with a run created normally.
    logs.create_run(run("created", "etl", 1, 30)).await?;
    let mut differs = with_events(run("created", "etl", 1, 30), 0);
    differs
        .run
        .attributes
        .insert("owner".into(), json!("someone-else"));
    ensure_err!(
        logs.import_runs(vec![with_events(run("new-3", "etl", 1, 31), 1), differs])
            .await,
        ErrorKind::Conflict,
        "import_runs([new-3, created with other attributes])"
    );
    ensure_err!(
        logs.get_run(&rid("new-3")).await,
        ErrorKind::NotFound,
        "get_run(new-3) after a refused import"
    );
    Ok(())
}

/// "A whole run with its events can be stored at once" with the numbering
/// rules of events: "numbered 1, 2, 3 ... with no gaps" and one idempotency
/// key per event (trait docs).
///
/// Events numbered with a gap, from 0 or 2, out of order, an idempotency key
/// used twice in one run, an event of another run, an invalid kind or
/// trigger, and the same run twice in one batch are `InvalidInput`, and
/// nothing of the batch is stored.
pub async fn run_import_validates_numbering_and_keys(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let good = || with_events(run("good", "etl", 1, 10), 2);
    let base = || with_events(run("bad", "etl", 1, 20), 3);
    let mut cases: Vec<(&str, Vec<RunWithEvents>)> = Vec::new();
    let mut c = base();
    c.events[2].seq = 4;
    cases.push(("events numbered 1, 2, 4", vec![good(), c]));
    let mut c = base();
    for e in &mut c.events {
        e.seq -= 1;
    }
    cases.push(("events numbered from 0", vec![good(), c]));
    let mut c = base();
    for e in &mut c.events {
        e.seq += 1;
    }
    cases.push(("events numbered from 2", vec![good(), c]));
    let mut c = base();
    c.events.swap(0, 1);
    cases.push(("events numbered 2, 1, 3", vec![good(), c]));
    let mut c = base();
    c.events[2].idempotency_key = c.events[0].idempotency_key.clone();
    cases.push(("one idempotency key on events 1 and 3", vec![good(), c]));
    let mut c = base();
    c.events[1].run_id = rid("good");
    cases.push(("event 2 naming another run", vec![good(), c]));
    let mut c = base();
    c.events[0].kind = "line\nbreak".into();
    cases.push(("an event kind with a newline", vec![good(), c]));
    let mut c = base();
    c.run.trigger = String::new();
    cases.push(("an empty trigger", vec![good(), c]));
    cases.push(("the same run twice", vec![good(), base(), base()]));
    for (what, batch) in cases {
        ensure_err!(
            logs.import_runs(batch).await,
            ErrorKind::InvalidInput,
            "import_runs([good, bad with {what}])"
        );
        for id in ["good", "bad"] {
            ensure_err!(
                logs.get_run(&rid(id)).await,
                ErrorKind::NotFound,
                "get_run({id}) after an import refused for {what}: nothing may be stored"
            );
        }
    }
    let ok = logs.import_runs(vec![good(), base()]).await?;
    ensure_eq!(
        ok.inserted,
        2,
        "import_runs([good, bad]) once both are valid"
    );
    Ok(())
}

/// "An event may carry an idempotency key: appending the same key again to
/// that run returns the original sequence number" and "numbered 1, 2, 3 ...
/// with no gaps", across import.
///
/// After importing a run with events 1..5, appending with an imported key
/// returns the imported number as a duplicate, and a new event gets 6.
pub async fn run_import_continues_numbering_and_keys(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let imported = with_events(run("imp", "etl", 1, 10), 5);
    logs.import_runs(vec![imported.clone()]).await?;
    for (key, seq) in [("k1", 1), ("k3", 3), ("k5", 5)] {
        ensure_eq!(
            logs.append_event(
                &rid("imp"),
                event("redelivered", 30).with_idempotency_key(key)
            )
            .await?,
            duplicate_of(seq),
            "append_event(imp, key {key}) where {key} came with imported event {seq}"
        );
    }
    ensure_eq!(
        logs.append_event(&rid("imp"), event("new", 31)).await?,
        appended(6),
        "append_event(imp) after importing 5 events"
    );
    ensure_eq!(
        logs.append_events(
            &rid("imp"),
            vec![
                event("n7", 32).with_idempotency_key("k2"),
                event("n8", 33).with_idempotency_key("k3")
            ]
        )
        .await?,
        vec![appended(7), duplicate_of(3)],
        "append_events(imp, [key k2 (imported event 2 had no key), key k3 (imported)])"
    );
    let listed = events_all(logs.as_ref(), &rid("imp"), 4).await?;
    ensure_eq!(
        seqs(&listed),
        one_to(7),
        "list_events(imp) after import and appends"
    );
    ensure_eq!(
        &listed[..5],
        &imported.events[..],
        "the imported events are unchanged by later appends"
    );
    Ok(())
}

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
        let mut r = run(id, "etl", 1, 0);
        r.started_at = start;
        logs.create_run(r.clone()).await?;
        all.push(r);
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

    let mut rest = Vec::new();
    let mut cursor = p1.next.clone();
    while let Some(c) = cursor {
        let page = logs
            .query_runs(RunQuery::default().with_limit(4).with_cursor(Some(c)))
            .await?;
        rest.extend(page.items);
        cursor = page.next;
        ensure!(rest.len() <= 100, "query_runs pages do not end");
    }
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

/// "Deleting a run deletes its record and events."
///
/// After `delete_run`, `get_run` and `list_events` are `NotFound`, the run
/// is gone from queries and counts, a second delete is `NotFound`, other
/// runs keep their events, and a new run with the same id starts empty
/// (numbering from 1, old idempotency keys forgotten).
pub async fn run_delete_removes_record_and_events(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("doomed", "etl", 1, 10)).await?;
    logs.create_run(run("kept", "etl", 1, 11)).await?;
    logs.append_events(
        &rid("doomed"),
        vec![
            event("a", 12).with_idempotency_key("key-1"),
            event("b", 13),
            event("c", 14),
        ],
    )
    .await?;
    logs.append_events(&rid("kept"), vec![event("x", 15), event("y", 16)])
        .await?;

    logs.delete_run(&rid("doomed")).await?;
    ensure_err!(
        logs.get_run(&rid("doomed")).await,
        ErrorKind::NotFound,
        "get_run(doomed) after delete_run"
    );
    ensure_err!(
        logs.list_events(&rid("doomed"), EventQuery::default())
            .await,
        ErrorKind::NotFound,
        "list_events(doomed) after delete_run"
    );
    ensure_err!(
        logs.delete_run(&rid("doomed")).await,
        ErrorKind::NotFound,
        "delete_run(doomed) a second time"
    );
    ensure_err!(
        logs.append_event(&rid("doomed"), event("late", 20)).await,
        ErrorKind::NotFound,
        "append_event(doomed) after delete_run"
    );
    ensure_eq!(
        ids(&query_all(logs.as_ref(), RunFilter::default(), 10).await?),
        vec!["kept".to_string()],
        "query_runs() after deleting `doomed`"
    );
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after delete"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("kept"), 10).await?),
        one_to(2),
        "events of `kept` after deleting another run"
    );

    // The id is free again, with nothing left of the old run.
    let reborn = run("doomed", "other", 2, 30);
    ensure!(
        logs.create_run(reborn.clone()).await?.inserted,
        "create_run(doomed) again after delete: expected inserted = true"
    );
    ensure_eq!(
        logs.get_run(&rid("doomed")).await?,
        reborn,
        "get_run(doomed) after re-creating it"
    );
    ensure_eq!(
        logs.list_events(&rid("doomed"), EventQuery::default())
            .await?
            .items
            .len(),
        0,
        "a re-created run must not see the events of the deleted one"
    );
    ensure_eq!(
        logs.append_event(
            &rid("doomed"),
            event("again", 31).with_idempotency_key("key-1")
        )
        .await?,
        appended(1),
        "append_event(doomed, key-1) on the re-created run: numbering restarts at 1 and old keys are gone"
    );
    Ok(())
}

/// "Each run's events are numbered 1, 2, 3 ... by the store, with no gaps",
/// from two handles on one storage (docs/DESIGN.md section 6: "safe with several
/// processes", "several application processes may share one database").
///
/// Needs [`Capability::ConcurrentHandles`]. Two handles append 25 events
/// each to one run at the same time, plus one shared idempotency key from
/// both: numbers are 1..=51 without gaps or duplicates, and both handles
/// list the same events.
pub async fn run_shared_storage_appends_from_two_handles(f: &dyn StoreFactory) -> RuleResult {
    require!(f, Capability::ConcurrentHandles);
    let s1 = f.create().await?;
    let s2 = crate::factory::reopen_distinct(f, &s1).await?;
    s1.stores
        .logs
        .create_run(run("shared", "etl", 1, 10))
        .await?;
    ensure_eq!(
        s2.stores.logs.get_run(&rid("shared")).await?,
        run("shared", "etl", 1, 10),
        "get_run(shared) through the second handle, created through the first"
    );
    const EACH: usize = 25;
    let mut handles = Vec::new();
    for (h, logs) in [
        (1usize, s1.stores.logs.clone()),
        (2, s2.stores.logs.clone()),
    ] {
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let e = NewEvent::new(format!("h{h}.{i}"), json!({"h": h, "i": i}))
                    .with_at(t(20, i as i64));
                got.push((
                    logs.append_event(&rid("shared"), e).await?,
                    format!("h{h}.{i}"),
                ));
                if i == EACH / 2 {
                    let dup = event("both", 21).with_idempotency_key("from-both");
                    got.push((
                        logs.append_event(&rid("shared"), dup).await?,
                        "both".to_string(),
                    ));
                }
            }
            Ok::<_, runstore_core::Error>(got)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.await
                .map_err(|e| RuleError::Failed(format!("an appending task panicked: {e}")))??,
        );
    }
    let fresh: Vec<u64> = all
        .iter()
        .filter(|(a, _)| !a.duplicate)
        .map(|(a, _)| a.seq)
        .collect();
    let mut sorted = fresh.clone();
    sorted.sort_unstable();
    let total = (2 * EACH + 1) as u64;
    ensure_eq!(
        sorted,
        one_to(total),
        "numbers of non-duplicate appends from two handles: 1..{total} without gap or duplicate"
    );
    let shared_key: Vec<&Appended> = all
        .iter()
        .filter(|(_, k)| k == "both")
        .map(|(a, _)| a)
        .collect();
    ensure!(
        shared_key.len() == 2
            && shared_key.iter().filter(|a| a.duplicate).count() == 1
            && shared_key[0].seq == shared_key[1].seq,
        "one idempotency key appended through both handles: exactly one must store it and both get its number, got {shared_key:?}"
    );
    let from1 = events_all(s1.stores.logs.as_ref(), &rid("shared"), 20).await?;
    let from2 = events_all(s2.stores.logs.as_ref(), &rid("shared"), 20).await?;
    ensure_eq!(
        seqs(&from1),
        one_to(total),
        "list_events(shared) through handle 1"
    );
    ensure_eq!(from1, from2, "both handles must list the same events");
    for (a, kind) in all.iter().filter(|(a, _)| !a.duplicate) {
        ensure_eq!(
            &from1[(a.seq - 1) as usize].kind,
            kind,
            "event {} must be the one whose append returned it",
            a.seq
        );
    }
    Ok(())
}

/// "data written via one handle is read through another": docs/DESIGN.md section
/// 6 (durable, shared storage) for all four concerns.
///
/// Needs [`Capability::PersistsAcrossReopen`]. Writes a workflow, runs with
/// events, a metric and an artifact through one handle, reopens, drops the
/// first handle, and reads everything back through the second, which also
/// sees writes as already stored (idempotent no-ops) and can continue them.
pub async fn run_shared_storage_survives_reopen(f: &dyn StoreFactory) -> RuleResult {
    require!(f, Capability::PersistsAcrossReopen);
    let s1 = f.create().await?;
    let d = def("etl", 1, None);
    s1.stores.workflows.store(d.clone()).await?;
    let mut finished = full_run("persisted");
    finished.workflow_id = wf("etl");
    finished.workflow_version = v(1);
    s1.stores.logs.create_run(finished.clone()).await?;
    let e1 = event("one", 101).with_idempotency_key("k");
    let e2 = NewEvent::new("two ✓", json!({"nested": [1, {"x": 0.1}]})).with_at(t(102, 7));
    s1.stores
        .logs
        .append_events(&rid("persisted"), vec![e1.clone(), e2.clone()])
        .await?;
    let imported = with_events(run("imported", "etl", 1, 200), 3);
    s1.stores.logs.import_runs(vec![imported.clone()]).await?;
    let m = metric("persisted", "etl", 1, RunStatus::Succeeded, 60_000_000);
    s1.stores.metrics.record(m.clone()).await?;
    let key = akey("persisted", "report", "out/summary.json");
    let bytes = b"{\"rows\": 12345}\n".to_vec();
    let info = s1
        .stores
        .artifacts
        .put_bytes(
            &key,
            bytes.clone(),
            PutOptions::default()
                .content_type("application/json")
                .created_by("step-1")
                .created_at(t(161, 0)),
        )
        .await?
        .record;

    let s2 = crate::factory::reopen_distinct(f, &s1).await?;
    drop(s1);

    ensure_eq!(
        s2.stores.workflows.get(&wf("etl"), v(1)).await?,
        d,
        "workflow etl v1 through a reopened handle"
    );
    ensure!(
        !s2.stores.workflows.store(d.clone()).await?.inserted,
        "storing etl v1 again through a reopened handle must be a no-op"
    );
    ensure_eq!(
        s2.stores.logs.get_run(&rid("persisted")).await?,
        finished,
        "run `persisted` through a reopened handle"
    );
    ensure_eq!(
        events_all(s2.stores.logs.as_ref(), &rid("persisted"), 10).await?,
        vec![
            e1.clone().into_event(rid("persisted"), 1),
            e2.into_event(rid("persisted"), 2)
        ],
        "events of `persisted` through a reopened handle"
    );
    ensure_eq!(
        s2.stores.logs.get_run(&rid("imported")).await?,
        imported.run,
        "imported run through a reopened handle"
    );
    ensure_eq!(
        events_all(s2.stores.logs.as_ref(), &rid("imported"), 10).await?,
        imported.events,
        "imported events through a reopened handle"
    );
    ensure_eq!(
        s2.stores.logs.append_event(&rid("persisted"), e1).await?,
        duplicate_of(1),
        "idempotency key `k` through a reopened handle"
    );
    ensure_eq!(
        s2.stores
            .logs
            .append_event(&rid("persisted"), event("three", 103))
            .await?,
        appended(3),
        "numbering continues through a reopened handle"
    );
    ensure_err!(
        s2.stores
            .logs
            .update_status(
                &rid("persisted"),
                RunUpdate::finished(RunStatus::Failed, t(170, 0))
            )
            .await,
        ErrorKind::Conflict,
        "re-finishing a run with another status through a reopened handle"
    );
    ensure_eq!(
        s2.stores.metrics.get(&rid("persisted")).await?,
        m,
        "metric through a reopened handle"
    );
    let (got_info, got_bytes) = s2.stores.artifacts.get_bytes(&key).await?;
    ensure_eq!(got_info, info, "artifact info through a reopened handle");
    ensure_eq!(got_bytes, bytes, "artifact bytes through a reopened handle");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The two shared-storage rules against a factory whose `reopen` hands
    //! out the same in-memory stores: they are skipped for the plain memory
    //! backend, and must still be proven to pass on a correct one.

    use async_trait::async_trait;
    use runstore_core::Result;

    use crate::factory::{Capabilities, Capability, StoreFactory, TestStores};
    use crate::runner::{Outcome, run_rule};

    struct SharedMemory;

    #[async_trait]
    impl StoreFactory for SharedMemory {
        fn name(&self) -> String {
            "shared memory".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::none().with(Capability::SharedStorage)
        }
        async fn create(&self) -> Result<TestStores> {
            Ok(TestStores::new(runstore_core::memory::store_set()))
        }
        async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
            Ok(stores.clone())
        }
    }

    /// A factory that claims both capabilities but "reopens" by handing
    /// back its own handles: the rules must not pass it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopen_that_returns_the_same_handles_fails_the_rules() {
        for name in [
            "run_shared_storage_appends_from_two_handles",
            "run_shared_storage_survives_reopen",
            "coordination_lease_one_winner_and_tokens_persist",
        ] {
            match run_rule(&SharedMemory, name).await {
                Outcome::Failed(m) => assert!(m.contains("same"), "{name}: {m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn shared_storage_rules_skip_without_the_capability() {
        let outcome = run_rule(&crate::MemoryFactory, "run_shared_storage_survives_reopen").await;
        assert_eq!(outcome, Outcome::Skipped(Capability::PersistsAcrossReopen));
        let outcome = run_rule(
            &crate::MemoryFactory,
            "run_shared_storage_appends_from_two_handles",
        )
        .await;
        assert_eq!(outcome, Outcome::Skipped(Capability::ConcurrentHandles));
    }
}
