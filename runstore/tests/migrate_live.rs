//! A live cutover: the source keeps running between migration passes.
//! Pass 1 copies runs that are still running; the source then finishes
//! some, appends events, records metrics; pass 2 brings them forward
//! without conflicts and the two sides verify equal. A real contradiction
//! (another outcome in the destination) is still a conflict.

use runstore::memory;
use runstore::migrate::{MigrateOptions, OnConflict, VerifyOptions, migrate};
use runstore::{
    ExecutionMetric, LogRepositoryExt, NewEvent, Run, RunStatus, RunUpdate, StoreSet, Timestamp,
    Version, WorkflowDefinition, WorkflowId,
};
use serde_json::json;

fn opts() -> MigrateOptions {
    MigrateOptions::default()
        .batch_size(3)
        .metrics_per_batch(2)
        .verify_options(VerifyOptions::default().deep(true))
}

/// Six running runs of one workflow, each with two events.
async fn live_source() -> (StoreSet, Vec<Run>) {
    let s = memory::store_set();
    let wf = WorkflowId::new("live").unwrap();
    s.workflows
        .store(WorkflowDefinition::new(
            wf.clone(),
            Version::FIRST,
            json!({"steps": 2}),
        ))
        .await
        .unwrap();
    let mut runs = Vec::new();
    for i in 0..6 {
        let run = s
            .logs
            .create_run(Run::new(wf.clone(), Version::FIRST))
            .await
            .unwrap()
            .record;
        let run = s
            .logs
            .update_status(&run.id, RunUpdate::running())
            .await
            .unwrap();
        for step in 0..2 {
            s.logs
                .append_event(
                    &run.id,
                    NewEvent::new("step", json!({"run": i, "step": step})),
                )
                .await
                .unwrap();
        }
        runs.push(run);
    }
    (s, runs)
}

fn metric_of(run: &Run) -> ExecutionMetric {
    ExecutionMetric {
        run_id: run.id.clone(),
        workflow_id: run.workflow_id.clone(),
        workflow_version: run.workflow_version,
        status: run.status,
        duration_micros: 1_000,
        recorded_at: Timestamp::now(),
        counters: Default::default(),
        values: Default::default(),
    }
}

#[tokio::test]
async fn a_second_pass_brings_forward_what_the_live_source_did_since() {
    let (from, runs) = live_source().await;
    let to = memory::store_set();
    let first = migrate(&from, &to, opts()).await.unwrap();
    assert!(first.is_complete(), "{first:?}");
    assert_eq!(first.runs.copied, 6);

    // The source keeps going: three runs finish (with summaries and a
    // metric), one gets more events while still running, one gets new
    // summaries while still running.
    for (i, run) in runs.iter().take(3).enumerate() {
        from.logs
            .append_event(&run.id, NewEvent::new("step", json!({"late": i})))
            .await
            .unwrap();
        let status = if i == 2 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let mut summaries = runstore::JsonMap::new();
        summaries.insert("rows".into(), json!(i * 10));
        let done = from
            .logs
            .update_status(
                &run.id,
                RunUpdate::finished(status, Timestamp::now()).with_summaries(summaries),
            )
            .await
            .unwrap();
        from.metrics.record(metric_of(&done)).await.unwrap();
    }
    from.logs
        .append_event(&runs[3].id, NewEvent::new("step", json!({"more": true})))
        .await
        .unwrap();
    let mut progress = runstore::JsonMap::new();
    progress.insert("progress".into(), json!(0.5));
    from.logs
        .update_status(&runs[4].id, RunUpdate::running().with_summaries(progress))
        .await
        .unwrap();

    let second = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!(second.conflict_count(), 0, "{:?}", second.conflicts);
    assert_eq!(second.runs_forwarded, 4, "{second:?}");
    // The run that only got new events is completed like an interrupted
    // import: updated too.
    assert_eq!(second.runs_resumed, 1, "{second:?}");
    assert_eq!(second.runs.updated, 5, "{second:?}");
    for c in [second.runs, second.events, second.metrics] {
        assert_eq!(
            c.read,
            c.copied + c.unchanged + c.updated + c.conflicts,
            "{c:?}"
        );
    }
    assert_eq!(second.metrics.copied, 3, "{second:?}");
    assert!(second.is_complete(), "{second:?}");
    for run in &runs[..3] {
        let there = to.logs.get_run(&run.id).await.unwrap();
        let here = from.logs.get_run(&run.id).await.unwrap();
        assert!(there.same_content(&here), "{there:?} / {here:?}");
        assert_eq!(to.logs.all_events(&run.id).await.unwrap().len(), 3);
    }
    assert_eq!(to.logs.all_events(&runs[3].id).await.unwrap().len(), 3);

    // A third pass finds nothing to do.
    let third = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!(third.runs_forwarded, 0);
    assert_eq!(third.runs.unchanged, 6, "{third:?}");
    assert!(third.is_complete());
}

#[tokio::test]
async fn another_outcome_in_the_destination_is_still_a_conflict() {
    let (from, runs) = live_source().await;
    let to = memory::store_set();
    migrate(&from, &to, opts()).await.unwrap();
    // Both sides finish the same run, differently.
    from.logs
        .update_status(
            &runs[0].id,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
        )
        .await
        .unwrap();
    to.logs
        .update_status(
            &runs[0].id,
            RunUpdate::finished(RunStatus::Failed, Timestamp::now()),
        )
        .await
        .unwrap();
    let report = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!(report.runs.conflicts, 1, "{report:?}");
    assert_eq!(report.runs_forwarded, 0);
    for c in [report.runs, report.events] {
        assert_eq!(
            c.read,
            c.copied + c.unchanged + c.updated + c.conflicts,
            "{c:?}"
        );
    }
    assert!(!report.is_complete());
    assert_eq!(report.conflicts[0].key, runs[0].id.to_string());
    // The destination keeps its own outcome.
    assert_eq!(
        to.logs.get_run(&runs[0].id).await.unwrap().status,
        RunStatus::Failed
    );

    // Under OnConflict::Fail the migration stops on it.
    let err = migrate(&from, &to, opts().on_conflict(OnConflict::Fail))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), runstore::ErrorKind::Conflict);

    // A destination that is *ahead* of the source (finished there, running
    // here) cannot be brought back either.
    let (from, runs) = live_source().await;
    let to = memory::store_set();
    migrate(&from, &to, opts()).await.unwrap();
    to.logs
        .update_status(
            &runs[1].id,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
        )
        .await
        .unwrap();
    let report = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!(report.runs.conflicts, 1, "{report:?}");
}

/// A finished run of `wf` that started and ended `age_secs` ago, with one
/// event.
fn old_finished_run(wf: &WorkflowId, age_secs: i64) -> runstore::RunWithEvents {
    let then = Timestamp::now().saturating_add_micros(-age_secs * 1_000_000);
    let mut run = Run::new(wf.clone(), Version::FIRST);
    run.started_at = then;
    run.status = RunStatus::Succeeded;
    run.ended_at = Some(then.saturating_add_micros(1_000));
    let event = runstore::Event {
        run_id: run.id.clone(),
        seq: 1,
        kind: "step".into(),
        at: then,
        payload: json!({"old": true}),
        idempotency_key: None,
    };
    runstore::RunWithEvents {
        run,
        events: vec![event],
    }
}

#[tokio::test]
async fn a_pass_since_a_watermark_reads_only_what_changed() {
    let (from, runs) = live_source().await;
    let wf = WorkflowId::new("live").unwrap();
    let history: Vec<_> = (0..20).map(|_| old_finished_run(&wf, 86_400)).collect();
    from.logs.import_runs(history).await.unwrap();
    let to = memory::store_set();
    let first = migrate(&from, &to, opts()).await.unwrap();
    assert!(first.is_complete(), "{first:?}");
    assert_eq!(first.runs.copied, 26);
    let watermark = first.next_since.expect("a watermark for the next pass");
    assert!(watermark < Timestamp::now());

    // The live source moves on: a run finishes with a metric, another gets
    // an event, a new run starts.
    let done = from
        .logs
        .update_status(
            &runs[0].id,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
        )
        .await
        .unwrap();
    from.metrics.record(metric_of(&done)).await.unwrap();
    from.logs
        .append_event(&runs[1].id, NewEvent::new("step", json!({"late": 1})))
        .await
        .unwrap();
    let new_run = from
        .logs
        .create_run(Run::new(wf.clone(), Version::FIRST))
        .await
        .unwrap()
        .record;

    let second = migrate(&from, &to, opts().since(watermark)).await.unwrap();
    assert_eq!(second.since, Some(watermark));
    // The 6 live runs (one now finished) and the new one; none of the 20
    // finished before the watermark is read again.
    assert_eq!(second.runs.read, 7, "{second:?}");
    assert_eq!(second.runs.copied, 1, "{second:?}");
    assert_eq!(second.runs_forwarded, 1, "{second:?}");
    assert_eq!(second.runs_resumed, 1, "{second:?}");
    assert_eq!(second.metrics.read, 1, "{second:?}");
    assert_eq!(second.metrics.copied, 1, "{second:?}");
    assert!(second.is_complete(), "{second:?}");
    let v = second.verify.as_ref().unwrap();
    assert_eq!(v.since, Some(watermark));
    assert_eq!((v.runs.a, v.runs.b), (7, 7), "{v:?}");
    assert!(to.logs.get_run(&new_run.id).await.is_ok());
    // Everything is there: a whole verification agrees.
    let whole = runstore::migrate::verify(&from, &to, VerifyOptions::default())
        .await
        .unwrap();
    assert!(whole.is_equal(), "{whole:?}");

    // What the watermark cannot see: a run written after it with times
    // from before it. A pass since the watermark leaves it; the whole
    // verification finds it, and a pass without `since` copies it.
    let late_import = old_finished_run(&wf, 7_200);
    let late_id = late_import.run.id.clone();
    from.logs.import_runs(vec![late_import]).await.unwrap();
    let third = migrate(&from, &to, opts().since(watermark)).await.unwrap();
    assert_eq!(third.runs.copied, 0, "{third:?}");
    assert!(third.is_complete(), "{third:?}");
    let whole = runstore::migrate::verify(&from, &to, VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(whole.difference_count, 1, "{whole:?}");
    assert_eq!(whole.differences[0].key, late_id.to_string());
    let full = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!(full.runs.copied, 1, "{full:?}");
    assert!(full.is_complete(), "{full:?}");
}

#[tokio::test]
async fn a_pass_since_finds_old_runs_that_finished_among_many() {
    let from = memory::store_set();
    let wf = WorkflowId::new("spread").unwrap();
    // 300 finished runs an hour apart, and two runs still running that
    // started before all and after most of them.
    let history: Vec<_> = (1..=300)
        .map(|h| old_finished_run(&wf, h * 3_600))
        .collect();
    from.logs.import_runs(history).await.unwrap();
    let mut live = Vec::new();
    for age in [301 * 3_600, 1_800] {
        let mut r = old_finished_run(&wf, age);
        r.run.status = RunStatus::Running;
        r.run.ended_at = None;
        live.push(r.run.id.clone());
        from.logs.import_runs(vec![r]).await.unwrap();
    }
    let to = memory::store_set();
    let first = migrate(&from, &to, opts()).await.unwrap();
    assert!(first.is_complete(), "{first:?}");
    let watermark = first.next_since.unwrap();
    for id in &live {
        from.logs
            .update_status(
                id,
                RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
            )
            .await
            .unwrap();
    }
    // The two runs' start times span the whole history: the destination's
    // copies are looked up one by one, not by reading that window.
    let second = migrate(&from, &to, opts().since(watermark)).await.unwrap();
    assert_eq!(second.runs.read, 2, "{second:?}");
    assert_eq!(second.runs_forwarded, 2, "{second:?}");
    assert!(second.is_complete(), "{second:?}");
    for id in &live {
        assert_eq!(
            to.logs.get_run(id).await.unwrap().status,
            RunStatus::Succeeded
        );
    }
}
