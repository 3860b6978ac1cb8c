//! Space is reclaimed: deleting runs removes their events files and
//! artifact folders and compacts the run and metric journals (and index),
//! and other handles on the same root keep reading correctly.

use std::path::Path;

use runstore_core::{
    ArtifactKey, ArtifactStore, ArtifactStoreExt, ExecutionMetric, LogRepository, LogRepositoryExt,
    MetricsRepository, NewEvent, PutOptions, Run, RunFilter, RunId, RunStatus, RunUpdate,
    Timestamp, Version, WorkflowId,
};
use runstore_file::{FileConfig, FileStore};
use serde_json::json;

/// Bytes of every file under `dir`.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            total += size_of(&entry.path());
        } else {
            total += meta.len();
        }
    }
    total
}

fn id(i: usize) -> RunId {
    RunId::new(format!("run-{i:04}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_half_the_runs_shrinks_the_root_and_its_journals() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = FileStore::open(FileConfig::new(root)).await.unwrap();
    let other = FileStore::open(FileConfig::new(root)).await.unwrap();
    let wf = WorkflowId::new("etl").unwrap();
    let n = 300;
    for i in 0..n {
        let mut run = Run::new(wf.clone(), Version::FIRST);
        run.id = id(i);
        run.started_at = Timestamp::from_micros(1_700_000_000_000_000 + i as i64).unwrap();
        run.attributes.insert("note".into(), json!("x".repeat(200)));
        store.create_run(run).await.unwrap();
        store
            .update_status(&id(i), RunUpdate::running())
            .await
            .unwrap();
        let events = (0..5)
            .map(|k| NewEvent::new("step", json!({"k": k, "pad": "y".repeat(100)})))
            .collect();
        store.append_events(&id(i), events).await.unwrap();
        let done = store
            .update_status(
                &id(i),
                RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
            )
            .await
            .unwrap();
        store
            .record(ExecutionMetric {
                run_id: id(i),
                workflow_id: wf.clone(),
                workflow_version: Version::FIRST,
                status: RunStatus::Succeeded,
                duration_micros: 10,
                recorded_at: done.ended_at.unwrap(),
                counters: Default::default(),
                values: (0..30)
                    .map(|k| (format!("value-{k:02}"), k as f64 + 0.5))
                    .collect(),
            })
            .await
            .unwrap();
        let key = ArtifactKey::parse(id(i).as_str(), "build", "out.txt").unwrap();
        store
            .put_bytes(&key, vec![7u8; 2048], PutOptions::default())
            .await
            .unwrap();
    }
    // The other handle reads everything once, so it holds cached state.
    assert_eq!(
        other.count_runs(RunFilter::default()).await.unwrap(),
        n as u64
    );

    let journal = root.join("logs").join("runs.ndjson");
    let metrics = root.join("metrics").join("metrics.ndjson");
    let before = size_of(root);
    let journal_before = std::fs::metadata(&journal).unwrap().len();
    let metrics_before = std::fs::metadata(&metrics).unwrap().len();

    let doomed: Vec<RunId> = (0..n).filter(|i| i % 2 == 0).map(id).collect();
    for batch in doomed.chunks(50) {
        for r in batch {
            store.delete_run_artifacts(r).await.unwrap();
        }
        store.delete_many(batch).await.unwrap();
        let d = store.delete_runs(batch).await.unwrap();
        assert_eq!(d.deleted.len(), batch.len());
    }
    let after = size_of(root);
    let journal_after = std::fs::metadata(&journal).unwrap().len();
    let metrics_after = std::fs::metadata(&metrics).unwrap().len();
    eprintln!(
        "root {before} -> {after} bytes; run journal {journal_before} -> {journal_after}; metric journal {metrics_before} -> {metrics_after}"
    );
    assert!(after * 10 < before * 6, "root {before} -> {after}");
    // Live runs are a third of the journal's lines before (create, start,
    // finish) and half of them are gone: the rewrite holds a sixth, plus
    // the delete lines of batches after it.
    assert!(
        journal_after * 3 < journal_before,
        "journal {journal_before} -> {journal_after}"
    );
    assert!(
        metrics_after * 10 < metrics_before * 7,
        "metrics {metrics_before} -> {metrics_after}"
    );

    // Both handles, and a fresh one, see exactly the kept runs with their
    // events and metrics.
    let fresh = FileStore::open(FileConfig::new(root)).await.unwrap();
    for s in [&store, &other, &fresh] {
        assert_eq!(
            s.count_runs(RunFilter::default()).await.unwrap(),
            (n / 2) as u64
        );
        for i in [1, 151, n - 1] {
            assert_eq!(s.all_events(&id(i)).await.unwrap().len(), 5);
            assert_eq!(
                s.get_run(&id(i)).await.unwrap().status,
                RunStatus::Succeeded
            );
            MetricsRepository::get(s, &id(i)).await.unwrap();
        }
        assert!(s.get_run(&id(0)).await.is_err());
        assert!(MetricsRepository::get(s, &id(2)).await.is_err());
    }
    // Writes after the compaction land in the new journal.
    other
        .append_event(&id(1), NewEvent::new("late", json!({})))
        .await
        .unwrap();
    assert_eq!(fresh.all_events(&id(1)).await.unwrap().len(), 6);
    let report = fresh.check(false).await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}
