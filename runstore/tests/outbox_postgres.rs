//! The outbox through real PostgreSQL outages (docs/DESIGN.md section 10),
//! on a throwaway cluster this test starts, stops and restarts.
//!
//! The test binary re-executes itself as writer processes (env
//! `OUTBOX_CHILD_YAML` set) running `child_writer` only. Each writer
//! creates its run, appends numbered events for a while and prints `ACK n`
//! after each acknowledged append (stored or deferred), then finishes the
//! run and records its metric. All writers share one outbox folder.

#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runstore::{
    ExecutionMetric, LogRepositoryExt, NewEvent, Run, RunId, RunStatus, RunUpdate, Storage,
    Timestamp, Version, WorkflowId,
};
use runstore_postgres::testing::{self, Cluster};
use serde_json::json;

const ENV_YAML: &str = "OUTBOX_CHILD_YAML";
const ENV_ID: &str = "OUTBOX_CHILD_ID";
const ENV_MS: &str = "OUTBOX_CHILD_MS";

fn run_id(writer: &str) -> RunId {
    RunId::new(format!("writer-{writer}")).unwrap()
}

async fn writer(yaml: &str, me: &str, for_ms: u64) {
    let storage = Storage::from_yaml_str(yaml).await.unwrap();
    let mut run = Run::new(WorkflowId::new("outage").unwrap(), Version::FIRST);
    run.id = run_id(me);
    storage.logs.create_run(run.clone()).await.unwrap();
    println!("CREATED");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(for_ms) {
        let a = storage
            .logs
            .append_event(&run.id, NewEvent::new("tick", json!({"n": n})))
            .await
            .unwrap();
        println!("ACK {n} {}", a.deferred);
        n += 1;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let done = storage
        .logs
        .update_status(
            &run.id,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
        )
        .await
        .unwrap();
    println!("FINISHED");
    let metric = ExecutionMetric::from_run(&done).unwrap();
    let w = storage.metrics.record(metric).await.unwrap();
    println!("METRIC {}", w.deferred);
}

/// The child's body; without the env it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    if let Ok(yaml) = std::env::var(ENV_YAML) {
        let me = std::env::var(ENV_ID).unwrap();
        let ms = std::env::var(ENV_MS).unwrap().parse().unwrap();
        writer(&yaml, &me, ms).await;
    }
}

fn spawn(yaml: &str, id: &str, ms: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(ENV_YAML, yaml)
        .env(ENV_ID, id)
        .env(ENV_MS, ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// What a writer printed: the acknowledged event numbers, how many were
/// deferred, and whether it finished and recorded its metric.
#[derive(Debug, Default)]
struct Acks {
    events: Vec<u64>,
    deferred: u64,
    finished: bool,
    metric: bool,
}

fn parse(stdout: impl std::io::Read, acks: &mut Acks, mut on_line: impl FnMut(&Acks)) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // The harness's `test child_writer ... ` may precede the first line.
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| ["ACK", "FINISHED", "METRIC", "CREATED"].contains(w))
            .unwrap_or(words.len());
        match &words[at..] {
            ["ACK", n, deferred] => {
                acks.events.push(n.parse().unwrap());
                acks.deferred += u64::from(*deferred == "true");
            }
            ["FINISHED"] => acks.finished = true,
            ["METRIC", _] => acks.metric = true,
            _ => {}
        }
        on_line(acks);
    }
}

fn yaml(cluster: &Cluster, outbox: &std::path::Path) -> String {
    let url = serde_json::to_string(&cluster.url()).unwrap();
    let ob = serde_json::to_string(outbox).unwrap();
    let pg = format!(
        "{{ type: postgres, url: {url}, schema: outage, pool_size: 2, connect_timeout: 0.5, operation_timeout: 3, outbox: {{ path: {ob} }} }}"
    );
    format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs: {pg}\n  metrics: {pg}\n  artifacts: {{ type: memory }}\n"
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Drains the outbox until it is empty (the server may take a moment).
async fn drain_all(storage: &Storage) {
    let outbox = &storage.outboxes()[0];
    for _ in 0..60 {
        let r = outbox.drain().await.unwrap();
        assert_eq!(r.rejected, 0, "a deferred write was refused: {r:?}");
        if outbox.status().await.unwrap().total() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the outbox did not drain: {:?}",
        outbox.status().await.unwrap()
    );
}

/// Every acknowledged event of `writer` is stored exactly once, in order,
/// numbered without gaps.
async fn check_writer(storage: &Storage, writer: &str, acks: &Acks) {
    let id = run_id(writer);
    let events = storage.logs.all_events(&id).await.unwrap();
    let stored: Vec<u64> = events
        .iter()
        .map(|e| e.payload["n"].as_u64().unwrap())
        .collect();
    // Every acknowledged event, once, in the order acknowledged; a killed
    // writer may have stored one more it never acknowledged.
    assert!(
        stored.len() == acks.events.len() || stored.len() == acks.events.len() + 1,
        "writer {writer}: {} stored, {} acknowledged",
        stored.len(),
        acks.events.len()
    );
    assert_eq!(
        &stored[..acks.events.len()],
        &acks.events[..],
        "writer {writer}: order"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "writer {writer}: numbering"
    );
    if acks.finished {
        let run = storage.logs.get_run(&id).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded, "writer {writer}");
    }
    if acks.metric {
        storage.metrics.get(&id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_writers_through_fast_and_immediate_shutdowns_lose_nothing() {
    let cluster = match blocking(Cluster::start_new_durable).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            testing::no_server("outbox outage", &format!("no throwaway cluster: {e}"));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml(&cluster, &dir.path().join("outbox"));
    // Creates the schema while the server is up.
    drop(Storage::from_yaml_str(&yaml).await.unwrap());

    let writers: Vec<(String, Child)> = (0..4)
        .map(|i| (i.to_string(), spawn(&yaml, &i.to_string(), 7000)))
        .collect();
    let mut readers = Vec::new();
    for (id, mut child) in writers {
        let stdout = child.stdout.take().unwrap();
        readers.push((
            id,
            child,
            std::thread::spawn(move || {
                let mut acks = Acks::default();
                parse(stdout, &mut acks, |_| {});
                acks
            }),
        ));
    }
    let c = cluster.clone();
    blocking(move || {
        std::thread::sleep(Duration::from_millis(1500));
        c.stop().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        c.start().unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        c.stop_immediate().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        c.start().unwrap();
    })
    .await;
    let mut all = BTreeMap::new();
    for (id, mut child, reader) in readers {
        let status = blocking(move || child.wait().unwrap()).await;
        assert!(status.success(), "writer {id} failed: {status:?}");
        all.insert(id, reader.join().unwrap());
    }
    let deferred: u64 = all.values().map(|a| a.deferred).sum();
    assert!(
        deferred > 0,
        "no write was deferred: the outage did not happen"
    );
    eprintln!(
        "acknowledged {} events, {deferred} of them deferred",
        all.values().map(|a| a.events.len()).sum::<usize>()
    );
    let storage = Storage::from_yaml_str(&yaml).await.unwrap();
    drain_all(&storage).await;
    for (id, acks) in &all {
        assert!(
            acks.finished && acks.metric,
            "writer {id} did not finish: {acks:?}"
        );
        check_writer(&storage, id, acks).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_while_the_server_is_down_loses_nothing() {
    let cluster = match blocking(Cluster::start_new_durable).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            testing::no_server("outbox sigkill", &format!("no throwaway cluster: {e}"));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml(&cluster, &dir.path().join("outbox"));
    drop(Storage::from_yaml_str(&yaml).await.unwrap());
    let mut child = spawn(&yaml, "k", 60_000);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let reader = std::thread::spawn(move || {
        let mut acks = Acks::default();
        parse(stdout, &mut acks, |a| {
            let _ = tx.send(a.deferred * 1_000_000 + a.events.len() as u64);
        });
        acks
    });
    // Some events stored, then the server goes away, then some deferred.
    let wait_for = |pred: &dyn Fn(u64) -> bool| loop {
        let v = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer went quiet");
        if pred(v) {
            break;
        }
    };
    wait_for(&|v| v % 1_000_000 >= 20);
    let c = cluster.clone();
    blocking(move || c.stop_immediate().unwrap()).await;
    wait_for(&|v| v / 1_000_000 >= 50);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acks = reader.join().unwrap();
    assert!(acks.deferred >= 50, "{acks:?}");
    let c = cluster.clone();
    blocking(move || c.start().unwrap()).await;
    // A new process (here: a new Storage) drains what the dead one left.
    let storage = Storage::from_yaml_str(&yaml).await.unwrap();
    drain_all(&storage).await;
    check_writer(&storage, "k", &acks).await;
}
