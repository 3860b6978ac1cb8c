//! Drainers killed with SIGKILL at random points of a drain lose no
//! deferred write and store none twice (docs/DESIGN.md section 10): the
//! journal's head, its rewrites and the replays survive being cut
//! anywhere.
//!
//! The writes are deferred while this test holds the SQLite database's
//! write lock (the backend then answers `Unavailable`). The test binary
//! then re-executes itself as drainer processes (env `DRAIN_CHILD_DIR`
//! set) running `child_drainer` only, and kills them part way. The
//! drainers replay 7 entries per batch, so a drain moves the journal's
//! head and rewrites the journal many times.

#![cfg(feature = "sqlite")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use runstore::outbox::{DrainOptions, Outbox};
use runstore::{EventQuery, LogRepository, NewEvent, Run, RunId, Storage, Version, WorkflowId};
use runstore_sqlite::{SqliteConfig, SqliteStore};
use serde_json::json;

const ENV_DIR: &str = "DRAIN_CHILD_DIR";
const RUNS: usize = 100;
const ROUNDS: u64 = 5;

fn yaml(dir: &std::path::Path) -> String {
    let db = serde_json::to_string(&dir.join("runstore.db")).unwrap();
    let ob = serde_json::to_string(&dir.join("outbox")).unwrap();
    format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs: {{ type: sqlite, path: {db}, busy_timeout: 20ms, outbox: {{ path: {ob} }} }}\n  metrics: {{ type: memory }}\n  artifacts: {{ type: memory }}\n"
    )
}

fn run_id(i: usize) -> RunId {
    RunId::new(format!("run-{i:03}")).unwrap()
}

/// The drainer's body; without the env it does nothing. It opens the
/// outbox itself, not through `Storage`, whose background drain would
/// replay with the default batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_drainer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let logs = SqliteStore::open(SqliteConfig::new(dir.join("runstore.db")))
        .await
        .unwrap();
    let outbox = Outbox::open(dir.join("outbox")).unwrap();
    outbox.wrap_logs(Arc::new(logs) as Arc<dyn LogRepository>);
    let report = outbox
        .drain_with(DrainOptions::default().with_batch(7))
        .await
        .unwrap();
    assert_eq!(report.left, 0);
    assert_eq!(outbox.status().await.unwrap().total(), 0);
    println!("DRAINED");
}

fn drainer(dir: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_drainer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drainers_killed_mid_drain_lose_nothing_and_store_nothing_twice() {
    if std::env::var(ENV_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml = yaml(dir.path());
    {
        let storage = Storage::from_yaml_str(&yaml).await.unwrap();
        for i in 0..RUNS {
            let mut run = Run::new(WorkflowId::new("drain").unwrap(), Version::FIRST);
            run.id = run_id(i);
            storage.logs.create_run(run).await.unwrap();
        }
        // Holding the write lock, every append is deferred. Round by round
        // over the runs, so no two consecutive entries merge at replay.
        let lock = rusqlite::Connection::open(dir.path().join("runstore.db")).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        for k in 0..ROUNDS {
            for i in 0..RUNS {
                let a = storage
                    .logs
                    .append_event(&run_id(i), NewEvent::new("step", json!({"k": k})))
                    .await
                    .unwrap();
                assert!(a.deferred, "round {k}, run {i}: {a:?}");
            }
        }
        let status = storage.outboxes()[0].status().await.unwrap();
        assert_eq!(status.total(), RUNS as u64 * ROUNDS);
        lock.execute_batch("ROLLBACK").unwrap();
    }

    // Kill drainers at spread-out points (while opening, replaying, moving
    // the head or rewriting the journal) until the journal is drained.
    let journal = dir.path().join("outbox").join("journal.ndjson");
    let pending = || std::fs::metadata(&journal).map_or(0, |m| m.len()) > 0;
    let mut killed = 0;
    let mut attempt = 0u64;
    while pending() && attempt < 300 {
        let mut child = drainer(dir.path());
        let start = Instant::now();
        let wait = Duration::from_millis(10 + (attempt * 7) % 60);
        while start.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        attempt += 1;
    }
    assert!(killed > 0, "no drainer was killed mid-drain");

    // One drainer left alone finishes the drain.
    let out = drainer(dir.path()).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("DRAINED"),
        "{stdout}"
    );

    let storage = Storage::from_yaml_str(&yaml).await.unwrap();
    assert_eq!(storage.outboxes()[0].status().await.unwrap().total(), 0);
    for i in 0..RUNS {
        let events = storage
            .logs
            .list_events(&run_id(i), EventQuery::default().with_limit(100))
            .await
            .unwrap()
            .items;
        let ks: Vec<u64> = events
            .iter()
            .map(|e| e.payload["k"].as_u64().unwrap())
            .collect();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            ks,
            (0..ROUNDS).collect::<Vec<_>>(),
            "run {i}: events in order, once each"
        );
        assert_eq!(
            seqs,
            (1..=ROUNDS).collect::<Vec<_>>(),
            "run {i}: numbered without gaps"
        );
    }
}
