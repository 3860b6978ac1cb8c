//! Run records: create, get, status, end time and timestamps.

use runstore_core::{
    ErrorKind, JsonMap, NewEvent, Run, RunFilter, RunStatus, RunUpdate, RunWithEvents, Timestamp,
};
use serde_json::json;

use crate::factory::StoreFactory;
use crate::fixtures::{rid, run, t, v};
use crate::outcome::RuleResult;
use crate::{ensure, ensure_eq, ensure_err};

use super::{back_to_pending, events_all, full_run, ids, map, query_all};

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
