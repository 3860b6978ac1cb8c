//! Single appends grouped into one commit per run, and the statistics a
//! bulk import refreshes.

mod common;

use std::collections::BTreeMap;

use runstore_core::{
    ErrorKind, LogRepository, LogRepositoryExt, NewEvent, Run, RunId, RunWithEvents, Timestamp,
    Version, WorkflowId,
};
use runstore_postgres::testing;
use serde_json::json;

const TASKS: u64 = 16;
const PER_TASK: u64 = 25;
/// Enough runs for the import to have `runs` analyzed.
const IMPORTED: i64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_single_appends_to_one_run_number_without_gaps() {
    let Some((store, _guard)) = common::store("appends::grouped").await else {
        return;
    };
    let run = Run::new(WorkflowId::new("wf").unwrap(), Version::FIRST);
    store.create_run(run.clone()).await.unwrap();
    let tasks = (0..TASKS).map(|t| {
        let (store, id) = (store.clone(), run.id.clone());
        tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..PER_TASK {
                let e = NewEvent::new("step", json!({"t": t, "i": i}));
                let a = store.append_event(&id, e).await.unwrap();
                assert!(!a.duplicate);
                got.push((a.seq, (t, i)));
            }
            got
        })
    });
    let mut by_seq = BTreeMap::new();
    for t in futures_util::future::join_all(tasks).await {
        for (seq, who) in t.unwrap() {
            assert!(by_seq.insert(seq, who).is_none(), "seq {seq} given twice");
        }
    }
    let n = TASKS * PER_TASK;
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    // Each event is stored at the number its call was given.
    let events = store.all_events(&run.id).await.unwrap();
    assert_eq!(events.len() as u64, n);
    for e in events {
        let (t, i) = by_seq[&e.seq];
        assert_eq!(e.payload, json!({"t": t, "i": i}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_single_appends_to_a_missing_run_each_fail_not_found() {
    let Some((store, _guard)) = common::store("appends::missing").await else {
        return;
    };
    let missing = RunId::new("no-such-run").unwrap();
    let tasks = (0..8).map(|i| {
        let (store, id) = (store.clone(), missing.clone());
        tokio::spawn(async move { store.append_event(&id, NewEvent::new("x", json!(i))).await })
    });
    for r in futures_util::future::join_all(tasks).await {
        assert_eq!(r.unwrap().unwrap_err().kind(), ErrorKind::NotFound);
    }
}

#[tokio::test]
async fn a_large_import_refreshes_the_statistics_of_runs() {
    let Some((store, guard)) = common::store("appends::analyze").await else {
        return;
    };
    let wf = WorkflowId::new("wf").unwrap();
    let runs: Vec<RunWithEvents> = (0..IMPORTED)
        .map(|i| {
            let mut run = Run::new(wf.clone(), Version::FIRST);
            run.id = RunId::new(format!("r-{i:06}")).unwrap();
            run.started_at = Timestamp::from_micros(1_700_000_000_000_000 + i).unwrap();
            RunWithEvents {
                run,
                events: Vec::new(),
            }
        })
        .collect();
    let out = store.import_runs(runs).await.unwrap();
    assert_eq!(out.inserted, IMPORTED as u64);
    let config = guard.config();
    let client = testing::raw_client(&config.url).await.unwrap();
    let table = format!("\"{}\".runs", config.schema);
    // In the background, after the import returned: -1 until the table is
    // first analyzed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let row = client
            .query_one(
                "SELECT reltuples FROM pg_class WHERE oid = $1::text::regclass",
                &[&table],
            )
            .await
            .unwrap();
        let known = row.get::<_, f32>(0);
        if known == IMPORTED as f32 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs not analyzed within a minute: reltuples {known}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
