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
