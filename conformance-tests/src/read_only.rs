//! A check for stores opened read-only (`SqliteConfig::read_only`,
//! `PostgresConfig::read_only`, `FileConfig::read_only`, or a backend's own
//! read-only mode): every kind of write is refused with `InvalidInput`
//! saying so, and reads still answer. Not a rule of the suite, since
//! opening read-only is each backend's own option; the backends' tests
//! call it on a store they opened that way.

use runstore_core::{
    ArtifactStoreExt, ErrorKind, LeaseRequest, LogRepositoryExt, PutOptions, Result, RunId,
    RunStatus, RunUpdate, RunWithEvents, StoreSet, Timestamp,
};

use crate::fixtures::{akey, def, event, metric, pattern, run};

/// Writes one run (with an event), a workflow, a metric, a pattern and an
/// artifact through `set`, a store opened for writing, and returns the
/// run's id, for [`every_write_refused`] on the same store opened
/// read-only.
pub async fn seed(set: &StoreSet) -> Result<RunId> {
    set.workflows.store(def("ro-wf", 1, None)).await?;
    let r = run("ro-run", "ro-wf", 1, 100);
    set.logs.create_run(r.clone()).await?;
    set.logs.append_event(&r.id, event("step", 101)).await?;
    set.metrics
        .record(metric("ro-run", "ro-wf", 1, RunStatus::Succeeded, 5_000))
        .await?;
    set.metrics
        .upsert_pattern(pattern("ro-p", "ro-wf", 102))
        .await?;
    set.artifacts
        .put_bytes(
            &akey("ro-run", "build", "out.txt"),
            b"kept".to_vec(),
            PutOptions::default(),
        )
        .await?;
    Ok(r.id)
}

/// Checks `set`, opened read-only on a store [`seed`] wrote: what `seed`
/// wrote reads back, and every kind of write (workflows, runs, events,
/// imports, status changes, deletes, metrics, patterns, artifacts, leases,
/// deliveries) fails with `InvalidInput` whose message says `read-only`.
/// Returns what went wrong, one line per failed expectation.
pub async fn every_write_refused(
    set: &StoreSet,
    seeded: &RunId,
) -> std::result::Result<(), String> {
    let mut wrong = Vec::new();
    match set.logs.all_events(seeded).await {
        Ok(events) if events.len() == 1 => {}
        other => wrong.push(format!("reading the seeded run's events gave {other:?}")),
    }
    match set
        .artifacts
        .get_bytes(&akey("ro-run", "build", "out.txt"))
        .await
    {
        Ok((_, bytes)) if bytes == b"kept" => {}
        other => wrong.push(format!("reading the seeded artifact gave {other:?}")),
    }
    let other = run("ro-other", "ro-wf", 1, 200);
    let key = akey("ro-run", "build", "new.txt");
    let writes: Vec<(&str, Result<()>)> = vec![
        (
            "workflow store",
            set.workflows
                .store(def("ro-wf", 2, Some(1)))
                .await
                .map(drop),
        ),
        (
            "workflow delete",
            set.workflows
                .delete(&def("ro-wf", 1, None).id, def("ro-wf", 1, None).version)
                .await,
        ),
        (
            "run create",
            set.logs.create_run(other.clone()).await.map(drop),
        ),
        (
            "event append",
            set.logs
                .append_event(seeded, event("step", 103))
                .await
                .map(drop),
        ),
        (
            "status update",
            set.logs
                .update_status(
                    seeded,
                    RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
                )
                .await
                .map(drop),
        ),
        (
            "run import",
            set.logs
                .import_runs(vec![RunWithEvents {
                    run: other.clone(),
                    events: Vec::new(),
                }])
                .await
                .map(drop),
        ),
        (
            "encoded run import",
            set.logs
                .import_runs_encoded(vec![runstore_core::EncodedRun {
                    run: other.clone(),
                    events: Vec::new(),
                }])
                .await
                .map(drop),
        ),
        ("run delete", set.logs.delete_run(seeded).await),
        (
            "runs delete",
            set.logs
                .delete_runs(std::slice::from_ref(seeded))
                .await
                .map(drop),
        ),
        (
            "lease acquire",
            set.logs
                .acquire_lease(LeaseRequest::new(
                    "ro-lease",
                    "me",
                    std::time::Duration::from_secs(5),
                ))
                .await
                .map(drop),
        ),
        (
            "delivery record",
            set.logs.record_delivery("ro-d").await.map(drop),
        ),
        (
            "metric record",
            set.metrics
                .record(metric("ro-other", "ro-wf", 1, RunStatus::Failed, 7))
                .await
                .map(drop),
        ),
        ("metric delete", set.metrics.delete(seeded).await),
        (
            "pattern upsert",
            set.metrics
                .upsert_pattern(pattern("ro-q", "ro-wf", 104))
                .await
                .map(drop),
        ),
        (
            "artifact put",
            set.artifacts
                .put_bytes(&key, b"x".to_vec(), PutOptions::default())
                .await
                .map(drop),
        ),
        (
            "artifact delete",
            set.artifacts
                .delete(&akey("ro-run", "build", "out.txt"))
                .await,
        ),
        (
            "run artifacts delete",
            set.artifacts.delete_run_artifacts(seeded).await.map(drop),
        ),
    ];
    for (what, result) in writes {
        match result {
            Err(e)
                if e.kind() == ErrorKind::InvalidInput && e.to_string().contains("read-only") => {}
            Err(e) => wrong.push(format!(
                "{what}: expected InvalidInput saying read-only, got {e}"
            )),
            Ok(()) => wrong.push(format!("{what}: a write went through")),
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}
