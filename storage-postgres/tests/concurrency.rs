//! Concurrent writers: 32 tasks in this process and 2 child processes (this
//! test binary re-run with `--exact child_process_entry`) append to the same
//! runs at once. Every record must be there, numbered 1..=n without gaps,
//! and a repeated idempotency key must be stored once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use runstore_core::{LogRepository, LogRepositoryExt, NewEvent, Run, RunId, Version, WorkflowId};
use runstore_postgres::testing::TestSchema;
use runstore_postgres::{PostgresConfig, PostgresStore};
use serde_json::json;

const RUNS: usize = 4;
const STEPS: usize = 20;
const TASKS: usize = 32;
const CHILD_TASKS: usize = 8;
const CHILD_ENV: &str = "RUNSTORE_PG_CONCURRENCY_CHILD";

/// One writer's appends: `(run index, events)`; a batch when several.
fn plan(writer: &str) -> Vec<(usize, Vec<NewEvent>)> {
    let seed = writer
        .bytes()
        .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
    let mut out = Vec::new();
    // Every writer races for the same key on every run: stored once per run.
    for r in 0..RUNS {
        out.push((
            r,
            vec![NewEvent::new("shared", json!({"w": writer})).with_idempotency_key("shared")],
        ));
    }
    for j in 0..STEPS {
        let r = (seed + j) % RUNS;
        let ev = |n: usize| NewEvent::new("step", json!({"w": writer, "j": j, "n": n}));
        if j % 5 == 4 {
            out.push((
                r,
                vec![
                    ev(0),
                    ev(1).with_idempotency_key(format!("{writer}-{j}-b")),
                    ev(2),
                ],
            ));
        } else {
            out.push((r, vec![ev(0).with_idempotency_key(format!("{writer}-{j}"))]));
        }
    }
    out
}

/// Runs one writer's plan, each keyed append twice (a redelivery), and
/// checks that the second gives the first's number.
async fn write(store: PostgresStore, runs: Vec<RunId>, writer: String) {
    for (r, events) in plan(&writer) {
        let run = &runs[r];
        if events.len() == 1 {
            let e = events.into_iter().next().unwrap();
            let first = store.append_event(run, e.clone()).await.unwrap();
            let again = store.append_event(run, e).await.unwrap();
            assert!(again.duplicate, "{writer}: redelivery not detected");
            assert_eq!(
                again.seq, first.seq,
                "{writer}: redelivery got another number"
            );
        } else {
            let got = store.append_events(run, events).await.unwrap();
            assert!(got.iter().all(|a| !a.duplicate));
            assert!(
                got.windows(2).all(|w| w[1].seq == w[0].seq + 1),
                "{writer}: batch not contiguous: {got:?}"
            );
        }
    }
}

fn writers_of(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_processes_append_without_gaps_or_duplicates() {
    let Some(config) = common::config("concurrency::tasks_and_processes_append").await else {
        return;
    };
    let _guard = TestSchema::new(config.clone());
    let store = PostgresStore::open(config.clone()).await.unwrap();
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let mut run = Run::new(WorkflowId::new("concurrency").unwrap(), Version::FIRST);
        run.id = RunId::new(format!("run-{i}")).unwrap();
        store.create_run(run.clone()).await.unwrap();
        runs.push(run.id);
    }

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|c| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_entry",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("p{c}-"))
                .env("RUNSTORE_PG_CHILD_URL", &config.url)
                .env("RUNSTORE_PG_CHILD_SCHEMA", &config.schema)
                .spawn()
                .expect("starting a child writer process")
        })
        .collect();
    let tasks: Vec<_> = writers_of("t", TASKS)
        .into_iter()
        .map(|w| tokio::spawn(write(store.clone(), runs.clone(), w)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for mut c in children {
        let status = tokio::task::spawn_blocking(move || c.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a child writer failed: {status}");
    }

    // What must be stored: every writer's events once, plus one "shared"
    // event per run.
    let mut all_writers = writers_of("t", TASKS);
    for c in 0..2 {
        all_writers.extend(writers_of(&format!("p{c}-"), CHILD_TASKS));
    }
    let mut expected: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for w in &all_writers {
        for (r, events) in plan(w) {
            for e in events.into_iter().filter(|e| e.kind == "step") {
                expected.entry(r).or_default().insert(e.payload.to_string());
            }
        }
    }
    for (r, run) in runs.iter().enumerate() {
        let events = store.all_events(run).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "gaps in run {run}"
        );
        let shared = events.iter().filter(|e| e.kind == "shared").count();
        assert_eq!(
            shared, 1,
            "the shared key was stored {shared} times in run {run}"
        );
        let keys: Vec<&String> = events
            .iter()
            .filter_map(|e| e.idempotency_key.as_ref())
            .collect();
        let distinct: BTreeSet<&String> = keys.iter().copied().collect();
        assert_eq!(
            keys.len(),
            distinct.len(),
            "a key stored twice in run {run}"
        );
        let steps: Vec<String> = events
            .iter()
            .filter(|e| e.kind == "step")
            .map(|e| e.payload.to_string())
            .collect();
        let got: BTreeSet<String> = steps.iter().cloned().collect();
        assert_eq!(steps.len(), got.len(), "an event stored twice in run {run}");
        assert_eq!(
            got,
            expected.remove(&r).unwrap_or_default(),
            "events of run {run}"
        );
    }
}

/// The body of each child process started by the test above; does nothing
/// when run directly (without the child environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var("RUNSTORE_PG_CHILD_URL").unwrap();
    let schema = std::env::var("RUNSTORE_PG_CHILD_SCHEMA").unwrap();
    let store = PostgresStore::open(PostgresConfig::new(url).with_schema(schema))
        .await
        .unwrap();
    let runs: Vec<RunId> = (0..RUNS)
        .map(|i| RunId::new(format!("run-{i}")).unwrap())
        .collect();
    let tasks: Vec<_> = writers_of(&prefix, CHILD_TASKS)
        .into_iter()
        .map(|w| tokio::spawn(write(store.clone(), runs.clone(), w)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Many tasks racing on the same records: one version body wins and the
/// rest conflict or see it; one create, one metric, one import is counted;
/// status only moves forward and a finished run keeps its first outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_keep_every_invariant() {
    use runstore_core::{
        ErrorKind, ExecutionMetric, MetricsRepository, RunStatus, RunUpdate, RunWithEvents,
        Timestamp, WorkflowDefinition, WorkflowRepository,
    };

    let Some(config) = common::config("concurrency::racing_writers_keep_every_invariant").await
    else {
        return;
    };
    let _guard = TestSchema::new(config.clone());
    let store = PostgresStore::open(config).await.unwrap();
    let wf = WorkflowId::new("race").unwrap();
    const N: usize = 16;

    // Workflow version 1: half offer body A, half body B.
    let defs: Vec<WorkflowDefinition> = (0..N)
        .map(|i| WorkflowDefinition::new(wf.clone(), Version::FIRST, json!({"body": i % 2})))
        .collect();
    let results = futures_join(defs.into_iter().map(|d| {
        let s = store.clone();
        async move { s.store(d).await }
    }))
    .await;
    let stored = WorkflowRepository::get(&store, &wf, Version::FIRST)
        .await
        .unwrap();
    let inserted = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|w| w.inserted))
        .count();
    assert_eq!(inserted, 1, "exactly one store inserts version 1");
    for r in &results {
        match r {
            Ok(w) => assert_eq!(w.record.body, stored.body),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
        }
    }

    // The same run created, imported and measured by everybody at once.
    let mut run = Run::new(wf.clone(), Version::FIRST);
    run.id = RunId::new("race-run").unwrap();
    let created = futures_join((0..N).map(|_| {
        let (s, r) = (store.clone(), run.clone());
        async move { s.create_run(r).await.unwrap().inserted }
    }))
    .await;
    assert_eq!(created.iter().filter(|i| **i).count(), 1);

    let mut imported = Run::new(wf.clone(), Version::FIRST);
    imported.id = RunId::new("race-import").unwrap();
    let batch = vec![RunWithEvents {
        events: vec![NewEvent::new("e", json!(1)).into_event(imported.id.clone(), 1)],
        run: imported.clone(),
    }];
    let outcomes = futures_join((0..N).map(|_| {
        let (s, b) = (store.clone(), batch.clone());
        async move { s.import_runs(b).await.unwrap() }
    }))
    .await;
    assert_eq!(outcomes.iter().map(|o| o.inserted).sum::<u64>(), 1);
    assert_eq!(
        outcomes.iter().map(|o| o.unchanged).sum::<u64>(),
        N as u64 - 1
    );

    let metric = ExecutionMetric {
        run_id: run.id.clone(),
        workflow_id: wf.clone(),
        workflow_version: Version::FIRST,
        status: RunStatus::Succeeded,
        duration_micros: 42,
        recorded_at: Timestamp::now(),
        counters: Default::default(),
        values: [("cost".to_string(), 1.5)].into(),
    };
    let recorded = futures_join((0..N).map(|i| {
        let (s, m) = (store.clone(), metric.clone());
        async move {
            if i % 2 == 0 {
                s.record(m).await.map(|w| u64::from(w.inserted))
            } else {
                s.record_many(vec![m]).await.map(|o| o.inserted)
            }
        }
    }))
    .await;
    assert_eq!(recorded.into_iter().map(|r| r.unwrap()).sum::<u64>(), 1);
    let summary = store
        .summary(&wf, runstore_core::SummaryQuery::default())
        .await
        .unwrap();
    assert_eq!((summary.executions, summary.values["cost"].count), (1, 1));

    // Status: everybody tries to finish the run, with two outcomes.
    store
        .update_status(&run.id, RunUpdate::running())
        .await
        .unwrap();
    let finished = futures_join((0..N).map(|i| {
        let (s, id) = (store.clone(), run.id.clone());
        let status = if i % 2 == 0 {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        async move {
            (
                status,
                s.update_status(&id, RunUpdate::finished(status, Timestamp::now()))
                    .await,
            )
        }
    }))
    .await;
    let stored = store.get_run(&run.id).await.unwrap();
    assert!(stored.status.is_terminal());
    for (status, r) in finished {
        match r {
            Ok(got) => {
                assert_eq!(got.status, stored.status);
                assert_eq!(status, stored.status);
                assert_eq!(got.ended_at, stored.ended_at, "the end time is set once");
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                assert_ne!(status, stored.status);
            }
        }
    }
    let e = store
        .update_status(&run.id, RunUpdate::running())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

/// Runs futures concurrently as tasks and collects their outputs in order.
async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
