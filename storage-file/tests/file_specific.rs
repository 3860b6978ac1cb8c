//! Behaviour of the file backend beyond the conformance suite: crash
//! recovery, corrupt data, the run index, symbolic links, several processes,
//! and the format version.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use runstore_core::{
    ArtifactKey, ArtifactStoreExt, ErrorKind, EventQuery, ExecutionMetric, LogRepository,
    LogRepositoryExt, MetricsRepository, MetricsSummary, NewEvent, PutOptions, Run, RunFilter,
    RunId, RunQuery, RunStatus, RunUpdate, SummaryQuery, Timestamp, Version, WorkflowDefinition,
    WorkflowId, WorkflowRepository,
};
use runstore_file::{Durability, FileConfig, FileStore, FindingKind};
use serde_json::json;

fn wf() -> WorkflowId {
    WorkflowId::new("etl").unwrap()
}

fn run_at(id: &str, micros: i64) -> Run {
    let mut r = Run::new(wf(), Version::FIRST);
    r.id = RunId::new(id).unwrap();
    r.started_at = Timestamp::from_micros(micros).unwrap();
    r
}

async fn open(root: &Path) -> FileStore {
    FileStore::open(FileConfig::new(root)).await.unwrap()
}

fn events_file(root: &Path, run: &str) -> PathBuf {
    root.join("logs")
        .join("events")
        .join(format!("{run}.ndjson"))
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[tokio::test]
async fn torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let s = open(root).await;
        s.create_run(run_at("r1", 1_000)).await.unwrap();
        for i in 0..3 {
            s.append_event(
                &RunId::new("r1").unwrap(),
                NewEvent::new("step", json!({"i": i})),
            )
            .await
            .unwrap();
        }
    }
    // A crash in the middle of an append: half a line, no newline.
    append_raw(&events_file(root, "r1"), br#"{"run_id":"r1","seq":4,"ki"#);
    append_raw(
        &root.join("logs/runs.ndjson"),
        br#"{"op":"put","run":{"id":"r2""#,
    );

    let s = open(root).await;
    // The run journal's tail is cut on open.
    let journal = std::fs::read(root.join("logs/runs.ndjson")).unwrap();
    assert!(journal.ends_with(b"\n"));
    let r1 = RunId::new("r1").unwrap();
    let events = s.all_events(&r1).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let report = s.check(false).await.unwrap();
    let torn: Vec<_> = report.of_kind(FindingKind::TornTail).collect();
    assert!(
        torn.iter()
            .any(|f| f.location.contains("runs.ndjson") && f.repaired),
        "{report:?}"
    );
    assert!(
        torn.iter()
            .any(|f| f.location.contains("r1.ndjson") && !f.repaired),
        "{report:?}"
    );

    // The next append cuts the torn line and numbers on from 3.
    let a = s
        .append_event(&r1, NewEvent::new("step", json!({"i": 3})))
        .await
        .unwrap();
    assert_eq!(a.seq, 4);
    let text = std::fs::read_to_string(events_file(root, "r1")).unwrap();
    assert_eq!(text.lines().count(), 4);
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    assert!(
        s.check(false)
            .await
            .unwrap()
            .of_kind(FindingKind::TornTail)
            .all(|f| f.repaired)
    );
    assert!(
        s.check(false)
            .await
            .unwrap()
            .of_kind(FindingKind::TornTail)
            .next()
            .is_none()
    );
}

#[tokio::test]
async fn corrupt_line_in_the_middle_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r1 = RunId::new("r1").unwrap();
    {
        let s = open(root).await;
        s.create_run(run_at("r1", 1_000)).await.unwrap();
        s.create_run(run_at("r3", 3_000)).await.unwrap();
        for i in 0..3 {
            s.append_event(&r1, NewEvent::new("step", json!({"i": i})))
                .await
                .unwrap();
        }
    }
    // Line 2 of the events file and a line between two run records go bad.
    let path = events_file(root, "r1");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{this is not json";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let jpath = root.join("logs/runs.ndjson");
    let text = std::fs::read_to_string(&jpath).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let spliced = format!("{}\n\u{1}garbage\n{}\n", lines[0], lines[1..].join("\n"));
    std::fs::write(&jpath, spliced).unwrap();
    std::fs::remove_file(root.join("index/runs.ndjson")).ok();

    let s = open(root).await;
    let seqs: Vec<u64> = s
        .all_events(&r1)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 3]);
    assert_eq!(s.count_runs(RunFilter::default()).await.unwrap(), 2);
    let report = s.check(false).await.unwrap();
    let corrupt: Vec<_> = report.of_kind(FindingKind::CorruptLine).collect();
    assert!(
        corrupt.iter().any(|f| f.location.contains("r1.ndjson")),
        "{report:?}"
    );
    assert!(
        corrupt.iter().any(|f| f.location.contains("runs.ndjson")),
        "{report:?}"
    );
    // Numbering goes on after the highest number read, never reusing one.
    assert_eq!(
        s.append_event(&r1, NewEvent::new("late", json!(null)))
            .await
            .unwrap()
            .seq,
        4
    );

    // Repair moves the bad lines aside and keeps every good one.
    let report = s.check(true).await.unwrap();
    assert!(
        report.of_kind(FindingKind::CorruptLine).all(|f| f.repaired),
        "{report:?}"
    );
    let quarantined = std::fs::read_to_string(root.join("logs/events/r1.ndjson.corrupt")).unwrap();
    assert_eq!(quarantined, "{this is not json\n");
    assert!(root.join("logs/runs.ndjson.corrupt").exists());
    assert!(s.check(false).await.unwrap().is_clean());
    let seqs: Vec<u64> = s
        .all_events(&r1)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 3, 4]);
    assert_eq!(s.count_runs(RunFilter::default()).await.unwrap(), 2);
    let reopened = open(root).await;
    assert_eq!(reopened.count_runs(RunFilter::default()).await.unwrap(), 2);
    let next = reopened
        .append_event(&r1, NewEvent::new("later", json!(null)))
        .await
        .unwrap();
    assert_eq!(next.seq, 5);
}

/// `event_counts` reads lines without building their payloads: it must
/// still count exactly the events that a whole read keeps, whatever is
/// wrong with the others.
#[tokio::test]
async fn event_counts_agree_with_the_events_read_past_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let r1 = RunId::new("r1").unwrap();
    let r2 = RunId::new("r2").unwrap();
    let s = open(root).await;
    s.create_run(run_at("r1", 1_000)).await.unwrap();
    s.create_run(run_at("r2", 2_000)).await.unwrap();
    for i in 0..3 {
        s.append_event(
            &r1,
            NewEvent::new("step", json!({"i": i, "deep": [[1], {"a": null}]})),
        )
        .await
        .unwrap();
    }
    drop(s);
    let at = "\"1970-01-01T00:00:00.001Z\"";
    let bad = [
        // Not JSON; the payload not JSON; a bad time; no kind; the kind
        // not a string; another run's event; a number already used; a
        // payload nested past the parser's limit.
        "{this is not json".to_string(),
        format!(r#"{{"run_id":"r1","seq":10,"kind":"k","at":{at},"payload":{{"a":}}}}"#),
        r#"{"run_id":"r1","seq":11,"kind":"k","at":"yesterday","payload":1}"#.to_string(),
        format!(r#"{{"run_id":"r1","seq":12,"at":{at},"payload":1}}"#),
        format!(r#"{{"run_id":"r1","seq":13,"kind":7,"at":{at},"payload":1}}"#),
        format!(r#"{{"run_id":"r2","seq":14,"kind":"k","at":{at},"payload":1}}"#),
        format!(r#"{{"run_id":"r1","seq":2,"kind":"k","at":{at},"payload":1}}"#),
        format!(
            r#"{{"run_id":"r1","seq":15,"kind":"k","at":{at},"payload":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        ),
        // Good ones: no payload at all, a key, unknown fields.
        format!(r#"{{"run_id":"r1","seq":20,"kind":"k","at":{at}}}"#),
        format!(
            r#"{{"run_id":"r1","seq":21,"kind":"k","at":{at},"payload":{{"x":[1,2]}},"idempotency_key":"k1","extra":true}}"#
        ),
    ];
    append_raw(&events_file(root, "r1"), (bad.join("\n") + "\n").as_bytes());

    let s = open(root).await;
    let read = s.events_of_runs(&[r1.clone(), r2.clone()]).await.unwrap();
    let seqs: Vec<u64> = read[0].iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 20, 21]);
    assert_eq!(s.event_counts(&[r1, r2]).await.unwrap(), vec![5, 0]);
}

/// A batch of many runs is read on several threads: what comes back is
/// still in the order asked for, run by run the same as each run's own
/// reading, with unknown ids and a damaged file in between.
#[tokio::test]
async fn a_large_batch_reads_each_run_in_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = open(root).await;
    let mut ids = Vec::new();
    for i in 0..300 {
        let id = format!("r{i:03}");
        s.create_run(run_at(&id, 1_000 + i)).await.unwrap();
        let events = (0..i % 7)
            .map(|n| NewEvent::new("step", json!({"run": i, "n": n})))
            .collect::<Vec<_>>();
        if !events.is_empty() {
            s.append_events(&RunId::new(&id).unwrap(), events)
                .await
                .unwrap();
        }
        ids.push(RunId::new(&id).unwrap());
        if i % 50 == 0 {
            ids.push(RunId::new(format!("absent{i}")).unwrap());
        }
    }
    drop(s);
    // One damaged line in the middle of the batch is skipped, not fatal.
    append_raw(&events_file(root, "r139"), b"{not json\n");
    // Asked in an order that is neither the stored nor the sorted one.
    ids.reverse();
    ids.rotate_left(77);
    let s = open(root).await;
    let read = s.events_of_runs(&ids).await.unwrap();
    let counts = s.event_counts(&ids).await.unwrap();
    assert_eq!((read.len(), counts.len()), (ids.len(), ids.len()));
    for ((id, events), count) in ids.iter().zip(&read).zip(&counts) {
        assert!(events.iter().all(|e| &e.run_id == id), "{id}");
        assert_eq!(events.len() as u64, *count, "{id}");
        if id.as_str().starts_with("absent") {
            assert!(events.is_empty(), "{id}");
        } else {
            let own = s.list_events(id, EventQuery::default()).await.unwrap();
            assert_eq!(events, &own.items, "{id}");
            let i: usize = id.as_str()[1..].parse().unwrap();
            assert_eq!(events.len(), i % 7, "{id}");
        }
    }
}

#[tokio::test]
async fn deleted_and_stale_index_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let index = root.join("index/runs.sqlite");
    let remove_index = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", index.display()));
        }
    };
    let tamper = |sql: &str| {
        let c = rusqlite::Connection::open(&index).unwrap();
        c.execute_batch(sql).unwrap();
    };
    {
        let s = open(root).await;
        for i in 0..5 {
            s.create_run(run_at(&format!("r{i}"), 1_000 + i))
                .await
                .unwrap();
        }
    }
    {
        let s = open(root).await;
        assert!(index.exists());
        assert_eq!(s.get_recent(&wf(), None, 50).await.unwrap().len(), 5);
        s.create_run(run_at("r5", 2_000)).await.unwrap();
    }
    {
        let s = open(root).await;
        assert_eq!(
            s.get_recent(&wf(), None, 50).await.unwrap()[0].id.as_str(),
            "r5"
        );
        assert!(
            s.check(false)
                .await
                .unwrap()
                .of_kind(FindingKind::StaleIndex)
                .next()
                .is_none()
        );
    }

    // Deleted: rebuilt on open and reported.
    remove_index();
    {
        let s = open(root).await;
        assert!(index.exists());
        let report = s.check(false).await.unwrap();
        assert!(
            report
                .of_kind(FindingKind::MissingIndex)
                .any(|f| f.repaired),
            "{report:?}"
        );
        assert_eq!(s.count_runs(RunFilter::default()).await.unwrap(), 6);
    }

    // Stale: an index made from another journal (its fingerprint differs)
    // that says r0 is running, where the journal says pending.
    tamper(
        "UPDATE runs SET status = 'running', run = replace(run, '\"status\":\"pending\"', '\"status\":\"running\"') WHERE id = 'r0';
         UPDATE cover SET tail_sha256 = 'another journal';",
    );
    {
        let s = open(root).await;
        let report = s.check(false).await.unwrap();
        assert!(
            report.of_kind(FindingKind::StaleIndex).any(|f| f.repaired),
            "{report:?}"
        );
        let runs = s.get_recent(&wf(), None, 50).await.unwrap();
        assert_eq!(runs.len(), 6);
        assert!(runs.iter().all(|r| r.status == RunStatus::Pending));
    }

    // Stale the other way: an index made from a longer journal.
    tamper("UPDATE cover SET covered = 10000000;");
    {
        let s = open(root).await;
        let report = s.check(true).await.unwrap();
        assert!(
            report.of_kind(FindingKind::StaleIndex).next().is_some(),
            "{report:?}"
        );
        assert_eq!(s.count_runs(RunFilter::default()).await.unwrap(), 6);
        assert!(s.check(false).await.unwrap().is_clean());
    }

    // Replaced on open and reported, every run still there.
    let replaced = || async {
        let s = open(root).await;
        let report = s.check(false).await.unwrap();
        assert!(
            report.of_kind(FindingKind::StaleIndex).any(|f| f.repaired),
            "{report:?}"
        );
        assert_eq!(s.count_runs(RunFilter::default()).await.unwrap(), 6);
    };
    // Another layout (a later version's).
    tamper("PRAGMA user_version = 99;");
    replaced().await;
    // Unreadable: not a database at all.
    remove_index();
    std::fs::write(&index, vec![b'x'; 8192]).unwrap();
    replaced().await;
}

/// A root written before the indexes moved into SQLite has a checkpoint
/// `index/runs.ndjson` and no `index/runs.sqlite`: it opens, the index is
/// built from the journal, and the old checkpoint is removed.
#[tokio::test]
async fn a_root_with_the_older_run_checkpoint_opens() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let s = open(root).await;
        for i in 0..3 {
            s.create_run(run_at(&format!("r{i}"), 10 + i))
                .await
                .unwrap();
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(root.join(format!("index/runs.sqlite{suffix}")));
    }
    let old = root.join("index/runs.ndjson");
    std::fs::write(&old, "{\"index\":\"runs\",\"format\":1}\n").unwrap();
    let s = open(root).await;
    assert!(!old.exists());
    assert!(root.join("index/runs.sqlite").exists());
    assert_eq!(s.get_recent(&wf(), None, 50).await.unwrap().len(), 3);
}

#[tokio::test]
async fn query_paths_use_the_index_and_agree_with_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::open(FileConfig::new(dir.path()).with_durability(Durability::None))
        .await
        .unwrap();
    let other = WorkflowId::new("other").unwrap();
    let mut batch = Vec::new();
    for i in 0..2_000i64 {
        let mut r = run_at(&format!("run-{i:05}"), 1_000_000 + (i % 700) * 10);
        if i % 3 == 0 {
            r.workflow_id = other.clone();
        }
        if i % 5 == 0 {
            r.trigger = "schedule".into();
        }
        batch.push(runstore_core::RunWithEvents {
            run: r,
            events: vec![],
        });
    }
    let all: Vec<Run> = batch.iter().map(|r| r.run.clone()).collect();
    assert_eq!(s.import_runs(batch).await.unwrap().inserted, 2_000);
    let s = FileStore::open(FileConfig::new(dir.path())).await.unwrap();
    let filter = RunFilter::default()
        .workflow(wf())
        .trigger("schedule")
        .started_between(
            Some(Timestamp::from_micros(1_001_000).unwrap()),
            Some(Timestamp::from_micros(1_005_000).unwrap()),
        );
    let mut expected: Vec<&Run> = all.iter().filter(|r| filter.matches(r)).collect();
    expected.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .query_runs(
                RunQuery::new(filter.clone())
                    .with_limit(7)
                    .with_cursor(cursor),
            )
            .await
            .unwrap();
        got.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(
        got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(s.count_runs(filter).await.unwrap(), expected.len() as u64);
}

#[cfg(unix)]
#[tokio::test]
async fn symbolic_links_inside_the_root_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = open(root).await;
    s.create_run(run_at("r1", 1_000)).await.unwrap();

    // An artifacts folder of a run that points outside.
    std::fs::create_dir_all(root.join("artifacts")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("artifacts/r1")).unwrap();
    let key = ArtifactKey::parse("r1", "build", "out.txt").unwrap();
    let err = s
        .put_bytes(&key, b"secret".to_vec(), PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(runstore_core::ArtifactStore::head(&s, &key).await.is_err());

    // An events file that points at a file outside.
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::fs::create_dir_all(root.join("logs/events")).unwrap();
    std::os::unix::fs::symlink(&victim, events_file(root, "r1")).unwrap();
    let r1 = RunId::new("r1").unwrap();
    assert!(
        s.append_event(&r1, NewEvent::new("x", json!(1)))
            .await
            .is_err()
    );
    assert!(s.list_events(&r1, EventQuery::default()).await.is_err());

    // A workflow folder that points at a folder with a plausible file.
    let fake = outside.path().join("wf");
    std::fs::create_dir_all(&fake).unwrap();
    let def = WorkflowDefinition::new(wf(), Version::FIRST, json!({"from": "outside"}));
    std::fs::write(fake.join("1.yaml"), serde_json::to_string(&def).unwrap()).unwrap();
    std::fs::create_dir_all(root.join("workflows")).unwrap();
    std::os::unix::fs::symlink(&fake, root.join("workflows/etl")).unwrap();
    assert!(
        WorkflowRepository::get(&s, &wf(), Version::FIRST)
            .await
            .is_err()
    );
    let v2 = WorkflowDefinition::new(wf(), Version::new(2).unwrap(), json!({}));
    assert!(s.store(v2).await.is_err());

    // Nothing outside was read into the store or written.
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    let names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(std::fs::read_dir(&fake).unwrap().count(), 1);
}

#[tokio::test]
async fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).await);
    let path = dir.path().join("runstore-format.json");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(rec["version"], json!(runstore_file::FORMAT_VERSION));
    std::fs::write(&path, r#"{"format":"runstore-file","version":99}"#).unwrap();
    let err = FileStore::open(FileConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    assert!(err.to_string().contains("99"), "{err}");
    std::fs::write(&path, r#"{"format":"something-else","version":1}"#).unwrap();
    assert!(FileStore::open(FileConfig::new(dir.path())).await.is_err());
}

#[tokio::test]
async fn workflow_yaml_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let body = json!({
        "big": u64::MAX, "neg": i64::MIN, "float": 0.1, "tiny": 5e-324, "huge": 1.7976931348623157e308,
        "whole_float": 2.0, "yes": "yes", "null_text": "null", "num_text": "1.0", "empty": "",
        "multi": "a\nb\n", "unicode": "héllo ✓", "nested": [{"a": [1, {"b": null}]}, true, false],
        "colon: key": "#not a comment", "": {}
    });
    let def =
        WorkflowDefinition::new(wf(), Version::FIRST, body).with_description("line one\nline: two");
    {
        let s = open(dir.path()).await;
        assert!(s.store(def.clone()).await.unwrap().inserted);
    }
    let s = open(dir.path()).await;
    let back = WorkflowRepository::get(&s, &wf(), Version::FIRST)
        .await
        .unwrap();
    assert!(back.same_content(&def), "{back:?}");
    assert_eq!(back.created_at, def.created_at);
    assert_eq!(back.content_hash(), def.content_hash());
    let text = std::fs::read_to_string(dir.path().join("workflows/etl/1.yaml")).unwrap();
    assert!(text.contains("id: etl"), "{text}");
    // Same content again is a no-op; other content conflicts.
    assert!(!s.store(def.clone()).await.unwrap().inserted);
    let other = WorkflowDefinition::new(wf(), Version::FIRST, json!({"x": 1}));
    assert_eq!(
        s.store(other).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
}

#[tokio::test]
async fn a_corrupt_workflow_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    s.store(WorkflowDefinition::new(wf(), Version::FIRST, json!({})))
        .await
        .unwrap();
    s.store(WorkflowDefinition::new(
        wf(),
        Version::new(2).unwrap(),
        json!({}),
    ))
    .await
    .unwrap();
    std::fs::write(dir.path().join("workflows/etl/1.yaml"), "id: [unclosed").unwrap();
    assert_eq!(
        WorkflowRepository::get(&s, &wf(), Version::FIRST)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Corrupt
    );
    let listed = s.list_versions(&wf()).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.version.get()).collect::<Vec<_>>(),
        vec![2]
    );
    let report = s.check(false).await.unwrap();
    assert!(
        report
            .of_kind(FindingKind::CorruptFile)
            .any(|f| f.location.ends_with("1.yaml")),
        "{report:?}"
    );
}

#[tokio::test]
async fn artifact_tampering_and_orphans_are_found_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let key = ArtifactKey::parse("r1", "build", "a/b.txt").unwrap();
    s.put_bytes(&key, b"hello".to_vec(), PutOptions::default())
        .await
        .unwrap();
    assert!(s.check(false).await.unwrap().is_clean());
    let blob = dir.path().join("artifacts/r1/phases/build/d/a/f/b.txt");
    std::fs::write(&blob, b"jello").unwrap();
    std::fs::write(
        dir.path().join("artifacts/r1/phases/build/d/a/f/stray"),
        b"x",
    )
    .unwrap();
    let report = s.check(true).await.unwrap();
    assert!(
        report.of_kind(FindingKind::HashMismatch).next().is_some(),
        "{report:?}"
    );
    assert!(
        report.of_kind(FindingKind::OrphanFile).any(|f| f.repaired),
        "{report:?}"
    );
    assert_eq!(
        s.get_bytes(&key).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

#[tokio::test]
async fn summaries_agree_with_the_reference_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut metrics = Vec::new();
    for i in 0..500u64 {
        let status = [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ][(i % 3) as usize];
        let mut m = ExecutionMetric {
            run_id: RunId::new(format!("m{i}")).unwrap(),
            workflow_id: if i % 4 == 0 {
                WorkflowId::new("other").unwrap()
            } else {
                wf()
            },
            workflow_version: Version::new(1 + (i % 2) as u32).unwrap(),
            status,
            duration_micros: (i * 7919) % 10_007,
            recorded_at: Timestamp::from_micros(i as i64 * 1_000).unwrap(),
            counters: Default::default(),
            values: Default::default(),
        };
        m.values.insert("tokens".into(), i as f64 * 0.1);
        metrics.push(m);
    }
    {
        let s = open(dir.path()).await;
        assert_eq!(s.record_many(metrics.clone()).await.unwrap().inserted, 500);
    }
    let s = open(dir.path()).await;
    for version in [None, Some(Version::FIRST)] {
        let expected = MetricsSummary::compute(
            wf(),
            version,
            metrics.iter().filter(|m| {
                m.workflow_id == wf() && version.is_none_or(|v| v == m.workflow_version)
            }),
        );
        let q = version.map_or_else(SummaryQuery::default, SummaryQuery::version);
        let got = s.summary(&wf(), q).await.unwrap();
        assert!(got.agrees_with(&expected), "{got:?} vs {expected:?}");
        assert!(got.executions > 0);
    }
}

/// A handle's summary counters follow what another handle (another process,
/// as far as the files go) records and deletes, through single deletes,
/// batched deletes and the compaction they trigger, and a reopen.
#[tokio::test]
async fn summaries_follow_another_handles_records_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let metric = |i: u64| {
        let mut m = ExecutionMetric {
            run_id: RunId::new(format!("m{i:05}")).unwrap(),
            workflow_id: wf(),
            workflow_version: Version::new(1 + (i % 2) as u32).unwrap(),
            status: [RunStatus::Succeeded, RunStatus::Failed][(i % 2) as usize],
            duration_micros: (i * 7919) % 100_003,
            recorded_at: Timestamp::from_micros(i as i64 * 1_000).unwrap(),
            counters: Default::default(),
            values: Default::default(),
        };
        m.values.insert("tokens".into(), (i as f64).powi(3) * 0.37);
        // Wide enough that deleting most of them compacts the journal.
        for k in 0..20 {
            m.values
                .insert(format!("value-{k:02}"), (i * k) as f64 + 0.5);
        }
        m
    };
    let writer = open(dir.path()).await;
    let reader = open(dir.path()).await;
    let mut stored: std::collections::BTreeMap<u64, ExecutionMetric> = Default::default();
    let check = |stored: &std::collections::BTreeMap<u64, ExecutionMetric>, s: &FileStore| {
        let expected = MetricsSummary::compute(wf(), None, stored.values());
        let s = s.clone();
        async move {
            let got = s.summary(&wf(), SummaryQuery::default()).await.unwrap();
            assert!(got.agrees_with(&expected), "{got:?} vs {expected:?}");
            assert_eq!(got.executions, expected.executions);
        }
    };
    // The reader's counters start before anything is recorded.
    check(&stored, &reader).await;
    let batch: Vec<ExecutionMetric> = (0..600).map(metric).collect();
    writer.record_many(batch.clone()).await.unwrap();
    stored.extend(batch.into_iter().enumerate().map(|(i, m)| (i as u64, m)));
    check(&stored, &reader).await;
    for i in (0..600).step_by(7) {
        MetricsRepository::delete(&writer, &metric(i).run_id)
            .await
            .unwrap();
        stored.remove(&i);
    }
    writer.record(metric(7)).await.unwrap();
    stored.insert(7, metric(7));
    check(&stored, &reader).await;
    // Batched deletes of most metrics: the journal is compacted.
    let journal = dir.path().join("metrics/metrics.ndjson");
    let len_before = std::fs::metadata(&journal).unwrap().len();
    let doomed: Vec<u64> = stored.keys().copied().filter(|i| i % 5 != 0).collect();
    for chunk in doomed.chunks(100) {
        let ids: Vec<RunId> = chunk.iter().map(|i| metric(*i).run_id).collect();
        writer.delete_many(&ids).await.unwrap();
        for i in chunk {
            stored.remove(i);
        }
        check(&stored, &reader).await;
    }
    assert!(std::fs::metadata(&journal).unwrap().len() < len_before / 2);
    writer.record(metric(1)).await.unwrap();
    stored.insert(1, metric(1));
    check(&stored, &reader).await;
    check(&stored, &writer).await;
    check(&stored, &open(dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_numbers_concurrent_appends_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::open(FileConfig::new(dir.path()).with_durability(Durability::GroupCommit))
        .await
        .unwrap();
    let r1 = RunId::new("r1").unwrap();
    s.create_run(run_at("r1", 1)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        let r1 = r1.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                seqs.push(
                    s.append_event(&r1, NewEvent::new("e", json!([t, i])))
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
    let reopened = open(dir.path()).await;
    assert_eq!(reopened.all_events(&r1).await.unwrap().len(), 200);
    let done = reopened
        .update_status(
            &r1,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::from_micros(5).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
}

// ---- Several real processes --------------------------------------------

const CHILD_ENV: &str = "RUNSTORE_FILE_TEST_CHILD";

/// Spawns this test binary as a child running `child_appender`.
fn spawn_child(root: &Path, plan: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appender",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{plan}", root.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Appends events as the plan in the environment says, printing `ACK <run>
/// <seq> <n>` on a line of its own after each acknowledged append. The plan is
/// `name:run1,run2:count` (count 0: until killed). Run directly (no plan),
/// it appends in-process and checks the numbering.
#[test]
fn child_appender() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        // Not a child: the same loop in-process, checked.
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let s = open(dir.path()).await;
            s.create_run(run_at("solo", 1)).await.unwrap();
            let acks = append_loop(&s, "solo", &["solo".into()], 10, &mut Vec::new()).await;
            assert_eq!(acks, (1..=10).collect::<Vec<u64>>());
        });
        return;
    };
    let (root, plan) = spec.split_once('|').unwrap();
    let parts: Vec<&str> = plan.split(':').collect();
    let (name, runs, count) = (parts[0], parts[1], parts[2].parse::<u64>().unwrap());
    let runs: Vec<String> = runs.split(',').map(str::to_string).collect();
    rt.block_on(async {
        let s = open(Path::new(root)).await;
        let mut out = std::io::stdout();
        if name == "create" {
            create_loop(&s, &runs[0], count, &mut out).await;
        } else {
            append_loop(&s, name, &runs, count, &mut out).await;
        }
    });
}

/// Creates runs `<prefix>-0`, `<prefix>-1`, … each with a metric, reading
/// the newest run back after each (so this process brings the shared
/// indexes up to date between its writes), printing `ACK <run>`.
async fn create_loop(s: &FileStore, prefix: &str, count: u64, out: &mut dyn Write) {
    let mut n = 0u64;
    while count == 0 || n < count {
        let id = format!("{prefix}-{n}");
        s.create_run(run_at(&id, n as i64 + 1)).await.unwrap();
        s.record(ExecutionMetric {
            run_id: RunId::new(id.as_str()).unwrap(),
            workflow_id: wf(),
            workflow_version: Version::FIRST,
            status: RunStatus::Succeeded,
            duration_micros: n * 13 % 1_000,
            recorded_at: Timestamp::from_micros(n as i64 + 1).unwrap(),
            counters: Default::default(),
            values: Default::default(),
        })
        .await
        .unwrap();
        assert_eq!(s.get_recent(&wf(), None, 1).await.unwrap().len(), 1);
        writeln!(out, "\nACK {id}").unwrap();
        out.flush().unwrap();
        n += 1;
    }
}

/// The live ids of a journal where the last line per id wins, read the way
/// the format says (not through the backend).
fn live_ids(path: &Path, record: &str, id_field: &str) -> std::collections::BTreeSet<String> {
    let mut live = std::collections::BTreeSet::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["op"].as_str() {
            Some("put") => {
                live.insert(v[record][id_field].as_str().unwrap().to_string());
            }
            Some("delete") => {
                live.remove(v[id_field].as_str().unwrap());
            }
            _ => {}
        }
    }
    live
}

/// Two processes write runs and metrics into one root, each bringing the
/// shared indexes up to date between its writes, and one is killed with
/// SIGKILL at a random point: afterwards every acknowledged run and metric
/// is found, and the indexes agree with the journals exactly.
#[tokio::test]
async fn indexes_shared_by_processes_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    drop(open(root).await);
    let mut victim = spawn_child(root, "create:v:0");
    let steady = spawn_child(root, "create:s:120");
    let mut stdout = BufReader::new(victim.stdout.take().unwrap());
    let mut acked: Vec<String> = Vec::new();
    let mut line = String::new();
    while acked.len() < 80 {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the child ended");
        if let Some(id) = line.trim().strip_prefix("ACK ") {
            acked.push(id.to_string());
        }
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let out = steady.wait_with_output().unwrap();
    assert!(out.status.success());
    let steady_acks = String::from_utf8(out.stdout).unwrap();
    acked.extend(
        steady_acks
            .lines()
            .filter_map(|l| l.strip_prefix("ACK "))
            .map(str::to_string),
    );
    assert_eq!(acked.len(), 200);

    let s = open(root).await;
    let runs = live_ids(&root.join("logs/runs.ndjson"), "run", "id");
    let metrics = live_ids(&root.join("metrics/metrics.ndjson"), "metric", "run_id");
    for id in &acked {
        let id = RunId::new(id.as_str()).unwrap();
        s.get_run(&id).await.unwrap();
        MetricsRepository::get(&s, &id).await.unwrap();
    }
    assert_eq!(
        s.count_runs(RunFilter::default()).await.unwrap(),
        runs.len() as u64
    );
    let mut listed = std::collections::BTreeSet::new();
    let mut cursor = None;
    loop {
        let mut q = RunQuery::new(RunFilter::default()).with_limit(37);
        q.cursor = cursor;
        let page = s.query_runs(q).await.unwrap();
        listed.extend(page.items.iter().map(|r| r.id.to_string()));
        if page.next.is_none() {
            break;
        }
        cursor = page.next;
    }
    assert_eq!(listed, runs);
    let summary = s.summary(&wf(), SummaryQuery::default()).await.unwrap();
    assert_eq!(summary.executions, metrics.len() as u64);
    let report = s.check(false).await.unwrap();
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.kind == FindingKind::TornTail),
        "{report:?}"
    );
}

async fn append_loop(
    s: &FileStore,
    name: &str,
    runs: &[String],
    count: u64,
    out: &mut dyn Write,
) -> Vec<u64> {
    let mut acks = Vec::new();
    let mut n = 0u64;
    while count == 0 || n < count {
        for run in runs {
            let id = RunId::new(run.as_str()).unwrap();
            let a = s
                .append_event(&id, NewEvent::new("child", json!({"child": name, "n": n})))
                .await
                .unwrap();
            writeln!(out, "\nACK {run} {} {n}", a.seq).unwrap();
            out.flush().unwrap();
            acks.push(a.seq);
        }
        n += 1;
    }
    acks
}

#[tokio::test]
async fn two_processes_append_to_the_same_and_to_different_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let s = open(root).await;
        for r in ["shared", "only-a", "only-b"] {
            s.create_run(run_at(r, 1)).await.unwrap();
        }
    }
    let a = spawn_child(root, "a:shared,only-a:40");
    let b = spawn_child(root, "b:shared,only-b:40");
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let acks = String::from_utf8(out.stdout).unwrap();
        assert_eq!(acks.lines().filter(|l| l.starts_with("ACK ")).count(), 80);
    }
    let s = open(root).await;
    for (run, expected) in [("shared", 80usize), ("only-a", 40), ("only-b", 40)] {
        let events = s.all_events(&RunId::new(run).unwrap()).await.unwrap();
        assert_eq!(events.len(), expected, "{run}");
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=expected as u64).collect::<Vec<_>>(), "{run}");
        let mut seen = std::collections::HashSet::new();
        for e in &events {
            assert!(
                seen.insert((e.payload["child"].clone(), e.payload["n"].clone())),
                "duplicate {e:?}"
            );
        }
    }
    assert!(s.check(false).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_killed_appender_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let s = open(root).await;
        s.create_run(run_at("victim", 1)).await.unwrap();
    }
    let mut child = spawn_child(root, "k:victim:0");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut line = String::new();
    while acked.len() < 60 {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "child ended early"
        );
        assert!(line.ends_with('\n'));
        if let Some(rest) = line.trim_end().strip_prefix("ACK victim ") {
            let mut it = rest.split_whitespace().map(|x| x.parse::<u64>().unwrap());
            acked.push((it.next().unwrap(), it.next().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL on unix
    // Acks printed before the kill are acknowledged too.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    // Only whole lines: a line cut by the kill was not fully printed.
    for l in rest.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        if let Some(r) = l.trim_end().strip_prefix("ACK victim ") {
            let mut it = r.split_whitespace().map(|x| x.parse::<u64>().unwrap());
            acked.push((it.next().unwrap(), it.next().unwrap()));
        }
    }
    child.wait().unwrap();

    let s = open(root).await;
    let events = s.all_events(&RunId::new("victim").unwrap()).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    for (seq, n) in &acked {
        let e = &events[(*seq - 1) as usize];
        assert_eq!(e.payload["n"], json!(n), "{e:?}");
    }
    assert!(events.len() >= acked.len());
    // The store goes on numbering after whatever the crash left.
    let next = s
        .append_event(
            &RunId::new("victim").unwrap(),
            NewEvent::new("after", json!(null)),
        )
        .await
        .unwrap();
    assert_eq!(next.seq, events.len() as u64 + 1);
}

/// A store keeps an append handle per run and trusts its cache while the
/// file keeps its identity and length: appends, a delete and re-create, and
/// a torn tail made by other handles on the same root (as by other
/// processes, each with its own caches) must all be noticed.
#[tokio::test]
async fn kept_append_handles_notice_other_writers_replacements_and_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = open(root).await;
    let b = open(root).await;
    let r = RunId::new("r").unwrap();
    let seqs = |events: Vec<runstore_core::Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let step = |i: u64| NewEvent::new("step", json!({"i": i}));
    a.create_run(run_at("r", 1)).await.unwrap();
    for i in 1..=3 {
        assert_eq!(a.append_event(&r, step(i)).await.unwrap().seq, i);
    }
    // Another writer appends: the kept handle's cache is now short.
    for i in 4..=5 {
        assert_eq!(b.append_event(&r, step(i)).await.unwrap().seq, i);
    }
    assert_eq!(a.append_event(&r, step(6)).await.unwrap().seq, 6);
    assert_eq!(
        seqs(b.all_events(&r).await.unwrap()),
        (1..=6).collect::<Vec<_>>()
    );

    // Another writer deletes and re-creates the run: its events file is a
    // new file, and the old handle must not write into the unlinked one.
    b.delete_run(&r).await.unwrap();
    b.create_run(run_at("r", 2)).await.unwrap();
    assert_eq!(b.append_event(&r, step(1)).await.unwrap().seq, 1);
    assert_eq!(a.append_event(&r, step(2)).await.unwrap().seq, 2);
    assert_eq!(seqs(b.all_events(&r).await.unwrap()), vec![1, 2]);
    let text = std::fs::read_to_string(events_file(root, "r")).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");

    // A crashed writer leaves half a line: the next append cuts it first.
    append_raw(&events_file(root, "r"), br#"{"run_id":"r","seq":3,"ki"#);
    assert_eq!(a.append_event(&r, step(3)).await.unwrap().seq, 3);
    assert_eq!(a.append_event(&r, step(4)).await.unwrap().seq, 4);
    let text = std::fs::read_to_string(events_file(root, "r")).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    assert_eq!(seqs(b.all_events(&r).await.unwrap()), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn an_orphan_events_file_is_reported_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = open(root).await;
    s.create_run(run_at("keep", 1)).await.unwrap();
    // As if a crash hit an import after its events file and before its run line.
    std::fs::write(
        events_file(root, "ghost"),
        "{\"run_id\":\"ghost\",\"seq\":1,\"kind\":\"old\",\"at\":\"2026-01-01T00:00:00.000000Z\",\"payload\":null,\"idempotency_key\":\"k\"}\n",
    )
    .unwrap();
    let report = s.check(false).await.unwrap();
    assert!(
        report
            .of_kind(FindingKind::OrphanFile)
            .any(|f| f.location.contains("ghost")),
        "{report:?}"
    );
    // A run created under that id starts with no events and a free key.
    s.create_run(run_at("ghost", 2)).await.unwrap();
    let ghost = RunId::new("ghost").unwrap();
    assert!(s.all_events(&ghost).await.unwrap().is_empty());
    let a = s
        .append_event(
            &ghost,
            NewEvent::new("new", json!(null)).with_idempotency_key("k"),
        )
        .await
        .unwrap();
    assert_eq!((a.seq, a.duplicate), (1, false));
    assert!(
        s.check(false)
            .await
            .unwrap()
            .of_kind(FindingKind::OrphanFile)
            .all(|f| f.repaired)
    );
}

#[tokio::test]
async fn hostile_workflow_text_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "",
        " leading and trailing ",
        "tab\there",
        "cr\r\nlf\n",
        "\n\nblank lines\n\n",
        "line\u{2028}sep\u{2029}para",
        "- not a list",
        "? not a key",
        "&anchor *alias !tag",
        "'single' \"double\"",
        "%directive",
        "---",
        "...",
        "\u{feff}bom",
        "emoji 🚀",
        "#comment",
        "key: value",
        "null",
        "~",
        "0x1F",
        "1e3",
        ".inf",
        "\\back\\slash",
    ];
    let s = open(dir.path()).await;
    for (i, text) in texts.iter().enumerate() {
        let id = WorkflowId::new(format!("w{i}")).unwrap();
        let body = json!({ *text: text, "list": [text, {"k": text}] });
        let def = WorkflowDefinition::new(id.clone(), Version::FIRST, body).with_description(*text);
        s.store(def.clone())
            .await
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let back = WorkflowRepository::get(&s, &id, Version::FIRST)
            .await
            .unwrap();
        assert!(back.same_content(&def), "{text:?}: {back:?}");
    }
}

#[tokio::test]
async fn longest_and_deepest_artifact_paths_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let deep = vec!["a"; 512].join("/");
    assert_eq!(deep.len(), 1023);
    let long = format!(
        "{}/{}/{}",
        "é".repeat(127),
        "x".repeat(255),
        "y".repeat(255)
    );
    let run = "r".repeat(128);
    for (i, path) in [
        deep,
        long,
        "a".into(),
        "a/a".into(),
        "d/f".into(),
        "f".into(),
        ".hidden".into(),
        "...".into(),
    ]
    .into_iter()
    .enumerate()
    {
        let key = ArtifactKey::parse(&run, "p", &path).unwrap();
        let bytes = format!("content {i}").into_bytes();
        s.put_bytes(&key, bytes.clone(), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(s.get_bytes(&key).await.unwrap().1, bytes);
    }
    let listed = runstore_core::ArtifactStore::list(
        &s,
        runstore_core::ArtifactQuery::run(RunId::new(run.as_str()).unwrap()).with_limit(100),
    )
    .await
    .unwrap();
    assert_eq!(listed.items.len(), 8);
    assert!(s.check(false).await.unwrap().is_clean());
}

/// `check` lists every link it meets (a symlinked run folder, a symlinked
/// events file) and every other problem beside them, instead of stopping
/// at the first.
#[tokio::test]
async fn check_lists_every_link_and_every_other_finding() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = open(root).await;
    s.create_run(run_at("r1", 1_000)).await.unwrap();
    let good = ArtifactKey::parse("r2", "build", "a.txt").unwrap();
    s.put_bytes(&good, b"hello".to_vec(), PutOptions::default())
        .await
        .unwrap();
    // Run r3's artifacts folder is a link to a copy outside.
    let r3 = ArtifactKey::parse("r3", "build", "b.txt").unwrap();
    s.put_bytes(&r3, b"world".to_vec(), PutOptions::default())
        .await
        .unwrap();
    let moved = outside.path().join("r3");
    std::fs::rename(root.join("artifacts/r3"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, root.join("artifacts/r3")).unwrap();
    // r2's bytes are tampered with.
    std::fs::write(root.join("artifacts/r2/phases/build/f/a.txt"), b"jello").unwrap();
    // And an events file that is a link.
    std::fs::create_dir_all(root.join("logs/events")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("x"), events_file(root, "r9")).unwrap();

    let report = s.check(false).await.unwrap();
    let links: Vec<_> = report.of_kind(FindingKind::Link).collect();
    assert!(
        links.iter().any(|f| f.location.ends_with("artifacts/r3")),
        "{report:?}"
    );
    assert!(
        links.iter().any(|f| f.location.ends_with("r9.ndjson")),
        "{report:?}"
    );
    assert!(
        report.of_kind(FindingKind::HashMismatch).next().is_some(),
        "{report:?}"
    );
}

/// A hard link from inside the root to a file outside is never written
/// through, and `check` reports it.
#[tokio::test]
async fn hard_links_are_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path();
    let s = open(root).await;
    let r1 = RunId::new("r1").unwrap();
    s.create_run(run_at("r1", 1_000)).await.unwrap();
    s.append_event(&r1, NewEvent::new("x", json!(1)))
        .await
        .unwrap();
    drop(s);
    // Replace the events file by a hard link to a file outside the root
    // (same content, so nothing but the link count tells).
    let events = events_file(root, "r1");
    let victim = outside.path().join("victim.ndjson");
    std::fs::copy(&events, &victim).unwrap();
    std::fs::remove_file(&events).unwrap();
    std::fs::hard_link(&victim, &events).unwrap();
    let before = std::fs::read(&victim).unwrap();

    let s = open(root).await;
    let err = s
        .append_event(&r1, NewEvent::new("x", json!(2)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("hard links"), "{err}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        before,
        "written through the link"
    );
    let report = s.check(false).await.unwrap();
    assert!(
        report
            .of_kind(FindingKind::Link)
            .any(|f| f.location.ends_with("r1.ndjson")),
        "{report:?}"
    );
}

/// A valid hand edit of a stored version's YAML changes an immutable
/// version: reads refuse it as `Corrupt` and `check` reports it.
#[tokio::test]
async fn a_hand_edited_workflow_version_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path()).await;
    let def = WorkflowDefinition::new(wf(), Version::FIRST, json!({"steps": ["a", "b"]}));
    s.store(def).await.unwrap();
    assert!(s.check(false).await.unwrap().is_clean());
    let path = dir.path().join("workflows/etl/1.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("content_sha256"), "{text}");
    let edited = text.replace("- b", "- c");
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    let err = WorkflowRepository::get(&s, &wf(), Version::FIRST)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("immutable"), "{err}");
    let report = s.check(false).await.unwrap();
    assert!(
        report
            .of_kind(FindingKind::CorruptFile)
            .any(|f| f.location.ends_with("1.yaml")),
        "{report:?}"
    );
}
