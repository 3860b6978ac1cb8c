//! Several real processes on one database file: the test binary re-executes
//! itself as a child (env `RUNSTORE_SQLITE_CHILD_DB` set) running only
//! `child_writer`, which appends events and prints each acknowledged
//! sequence number.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use runstore_core::{LogRepository, LogRepositoryExt, NewEvent, Run, RunId, Version, WorkflowId};
use runstore_sqlite::{SqliteConfig, SqliteStore};
use serde_json::json;

const ENV_DB: &str = "RUNSTORE_SQLITE_CHILD_DB";
const ENV_RUN: &str = "RUNSTORE_SQLITE_CHILD_RUN";
const ENV_TAG: &str = "RUNSTORE_SQLITE_CHILD_TAG";
const ENV_COUNT: &str = "RUNSTORE_SQLITE_CHILD_COUNT";

fn new_run(id: &str) -> Run {
    let mut run = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    run.id = RunId::new(id).unwrap();
    // Fixed, so both children create the identical run (the second is a no-op).
    run.started_at = runstore_core::Timestamp::from_micros(1_767_225_600_000_000).unwrap();
    run
}

/// Appends `count` events tagged `tag` to `run`, one transaction each, and
/// prints `ACK <tag> <i> <seq>` after each is acknowledged.
async fn append_stream(db: &Path, run: &RunId, tag: &str, count: u64) -> Vec<u64> {
    let store = SqliteStore::open(SqliteConfig::new(db)).await.unwrap();
    store.create_run(new_run(run.as_str())).await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..count {
        let e = NewEvent::new("tick", json!({"tag": tag, "i": i}))
            .with_idempotency_key(format!("{tag}-{i}"));
        let a = store.append_event(run, e).await.unwrap();
        println!("ACK {tag} {i} {}", a.seq);
        seqs.push(a.seq);
    }
    seqs
}

/// The child's body. Run directly (no env), it does the same work on its
/// own file and checks the numbering, so it is a real test either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    if let Ok(db) = std::env::var(ENV_DB) {
        let run = RunId::new(std::env::var(ENV_RUN).unwrap()).unwrap();
        let tag = std::env::var(ENV_TAG).unwrap();
        let count: u64 = std::env::var(ENV_COUNT).unwrap().parse().unwrap();
        append_stream(Path::new(&db), &run, &tag, count).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seqs = append_stream(
        &dir.path().join("solo.db"),
        &RunId::new("solo").unwrap(),
        "solo",
        20,
    )
    .await;
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

fn spawn_child(db: &Path, run: &str, tag: &str, count: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(ENV_DB, db)
        .env(ENV_RUN, run)
        .env(ENV_TAG, tag)
        .env(ENV_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// `(tag, i, seq)` of every ACK line.
fn acks(lines: impl Iterator<Item = String>) -> Vec<(String, u64, u64)> {
    lines
        .filter_map(|l| {
            // libtest may print "test child_writer ... " on the same line.
            let at = l.find("ACK ")?;
            let mut p = l[at + 4..].split(' ');
            Some((
                p.next()?.to_string(),
                p.next()?.parse().ok()?,
                p.next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_append_to_one_run_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let n = 150;
    let children = [
        spawn_child(&db, "shared-run", "a", n),
        spawn_child(&db, "shared-run", "b", n),
    ];
    let mut all = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {:?}", out.status);
        all.extend(acks(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string),
        ));
    }
    assert_eq!(all.len() as u64, 2 * n);
    let store = SqliteStore::open(SqliteConfig::new(&db)).await.unwrap();
    let events = store
        .all_events(&RunId::new("shared-run").unwrap())
        .await
        .unwrap();
    assert_eq!(events.len() as u64, 2 * n);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gap or disorder in numbering");
    }
    for (tag, i, seq) in &all {
        let e = &events[(*seq - 1) as usize];
        assert_eq!(
            e.payload,
            json!({"tag": tag, "i": i}),
            "ack {tag} {i} {seq}"
        );
    }
    // Each writer's own events are in its append order.
    for tag in ["a", "b"] {
        let mine: Vec<u64> = events
            .iter()
            .filter(|e| e.payload["tag"] == tag)
            .map(|e| e.payload["i"].as_u64().unwrap())
            .collect();
        assert_eq!(mine, (0..n).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_child_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.db");
    let mut child = spawn_child(&db, "victim", "k", 1_000_000);
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = lines
            .iter()
            .filter(|l: &&String| l.contains("ACK "))
            .count()
            >= 300;
        lines.push(line);
        if done {
            break;
        }
    }
    // SIGKILL mid-stream: no destructor, no checkpoint, no clean close.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let acked = acks(lines.into_iter());
    assert!(acked.len() > 300);

    let store = SqliteStore::open(SqliteConfig::new(&db)).await.unwrap();
    assert!(store.integrity_check().await.unwrap().is_empty());
    let events = store
        .all_events(&RunId::new("victim").unwrap())
        .await
        .unwrap();
    assert!(
        events.len() >= acked.len(),
        "{} stored < {} acknowledged",
        events.len(),
        acked.len()
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.payload["i"], json!(i));
    }
    for (_, i, seq) in acked {
        assert_eq!(seq, i + 1);
    }
}
