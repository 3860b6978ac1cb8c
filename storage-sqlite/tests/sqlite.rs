//! Tests of what the SQLite backend promises beyond section 4: migrations,
//! refusal of newer schemas, backup and restore, damaged files, error
//! mapping, SQL summaries and chunked artifacts.

mod common;
#[path = "common/v1_data.rs"]
mod v1_data;

use std::path::Path;
use std::time::Duration;

use runstore_core::{
    ArtifactKey, ArtifactStore, ArtifactStoreExt, ErrorKind, ExecutionMetric, LogRepository,
    LogRepositoryExt, MetricQuery, MetricsRepository, MetricsSummary, NewEvent, PatternId,
    PutOptions, RunId, RunQuery, RunStatus, SummaryQuery, Version, WorkflowId, WorkflowRepository,
};
use runstore_sqlite::{SqliteConfig, SqliteStore, Synchronous};
use serde_json::json;

fn raw(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// Checks that `store` holds exactly the v1 fixture content.
async fn assert_fixture_content(store: &SqliteStore) {
    for d in v1_data::workflows() {
        let got = WorkflowRepository::get(store, &d.id, d.version)
            .await
            .unwrap();
        assert_eq!(got, d);
    }
    for (i, r) in v1_data::runs().into_iter().enumerate() {
        let got = store.get_run(&r.id).await.unwrap();
        let expected = if i < 2 {
            r.apply_update(&v1_data::finish()).unwrap().0
        } else {
            r.clone()
        };
        assert_eq!(got, expected);
        let events = store.all_events(&r.id).await.unwrap();
        let want: Vec<_> = v1_data::events(i as u32)
            .into_iter()
            .enumerate()
            .map(|(n, e)| e.into_event(r.id.clone(), n as u64 + 1))
            .collect();
        assert_eq!(events, want);
    }
    let metrics = v1_data::metrics();
    for m in &metrics {
        assert_eq!(&MetricsRepository::get(store, &m.run_id).await.unwrap(), m);
    }
    // The summary counters of a file older than them are built when it is
    // migrated, and agree with the reference.
    let workflows: std::collections::BTreeSet<_> =
        metrics.iter().map(|m| m.workflow_id.clone()).collect();
    for wf in workflows {
        let got = store.summary(&wf, SummaryQuery::default()).await.unwrap();
        let want = runstore_core::MetricsSummary::compute(
            wf.clone(),
            None,
            metrics.iter().filter(|m| m.workflow_id == wf),
        );
        assert!(
            got.executions > 0 && got.agrees_with(&want),
            "{got:?}\n{want:?}"
        );
    }
    assert_eq!(
        store
            .get_pattern(&PatternId::new("slow-a").unwrap())
            .await
            .unwrap(),
        v1_data::pattern()
    );
    let (info, bytes) = store.get_bytes(&v1_data::artifact_key()).await.unwrap();
    assert_eq!(bytes, v1_data::artifact_bytes());
    assert_eq!(info.created_by, "fixture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_folder_and_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/runstore.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);
    assert_eq!(store.schema_version().await.unwrap(), 4);
    assert!(store.integrity_check().await.unwrap().is_empty());
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let (n, sha): (i64, String) = raw(&path)
        .query_row(
            "SELECT count(*), max(sha256) FROM schema_migrations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(sha.len(), 64);
    let o = SqliteConfig::new("x.db");
    assert_eq!(
        (o.synchronous, o.busy_timeout, o.readers, o.checkpoint_pages),
        (Synchronous::Normal, Duration::from_millis(5000), 4, 10_000)
    );
    let bad = SqliteConfig::new(dir.path().join("x.db")).with_readers(0);
    let err = SqliteStore::open(bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    for pages in [0, 99, 1_000_001] {
        let bad = SqliteConfig::new(dir.path().join("y.db")).with_checkpoint_pages(pages);
        let err = SqliteStore::open(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("checkpoint_pages"), "{err}");
    }
    assert!(!dir.path().join("y.db").exists(), "nothing created");
}

/// The write-ahead log's size after many small commits: about
/// `checkpoint_pages` pages, so the setting reaches the writer.
async fn wal_bytes_after_small_commits(checkpoint_pages: u32) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let config = SqliteConfig::new(&path).with_checkpoint_pages(checkpoint_pages);
    let store = SqliteStore::open(config).await.unwrap();
    let run = runstore_core::Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    let id = run.id.clone();
    store.create_run(run).await.unwrap();
    // About 2 KiB per commit, 2,000 commits: about 1,000 pages of log.
    for i in 0..2000 {
        store
            .append_event(
                &id,
                NewEvent::new("step", json!({ "i": i, "pad": "x".repeat(2000) })),
            )
            .await
            .unwrap();
    }
    std::fs::metadata(dir.path().join("wal.db-wal"))
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_pages_bounds_the_write_ahead_log() {
    let small = wal_bytes_after_small_commits(100).await;
    let large = wal_bytes_after_small_commits(10_000).await;
    assert!(small < 200 * 4096, "100 pages: the log is {small} bytes");
    assert!(large > 500 * 4096, "10,000 pages: the log is {large} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let options = SqliteConfig::new(&path).with_synchronous(Synchronous::Full);
    let store = SqliteStore::open(options).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 4);
    v1_data::write_all(&store).await;
    assert_fixture_content(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_the_v1_fixture_and_reads_it_back() {
    let (_dir, path) = common::v1_copy();
    let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 4);
    assert!(store.integrity_check().await.unwrap().is_empty());
    assert_fixture_content(&store).await;
    // And it keeps working: numbering continues after the stored events.
    let id = RunId::new("run-0").unwrap();
    let a = store
        .append_event(&id, NewEvent::new("late", json!({})))
        .await
        .unwrap();
    assert_eq!(a.seq, 5);
    let dup = store
        .append_event(
            &id,
            NewEvent::new("step", json!({})).with_idempotency_key("first"),
        )
        .await
        .unwrap();
    assert_eq!((dup.seq, dup.duplicate), (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused_and_left_untouched() {
    let (dir, path, store) = common::fresh().await;
    v1_data::write_all(&store).await;
    drop(store);
    raw(&path)
        .execute(
            "INSERT INTO schema_migrations (version, name, sha256, applied_at) VALUES (5, 'x', 'x', 0), (999, 'future', 'x', 0)",
            [],
        )
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    assert!(!Path::new(&format!("{}-wal", path.display())).exists());
    let err = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("999"), "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the refused file changed"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_migration_checksum_is_corrupt() {
    let (_dir, path, store) = common::fresh().await;
    drop(store);
    raw(&path)
        .execute(
            "UPDATE schema_migrations SET sha256 = 'deadbeef' WHERE version = 1",
            [],
        )
        .unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("deadbeef"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_opening_a_new_file_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let (a, b) = tokio::join!(
        SqliteStore::open(SqliteConfig::new(&path)),
        SqliteStore::open(SqliteConfig::new(&path))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.schema_version().await.unwrap(), 4);
    assert_eq!(b.schema_version().await.unwrap(), 4);
    let n: i64 = raw(&path)
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_gives_equal_content() {
    let (dir, _path, store) = common::fresh().await;
    v1_data::write_all(&store).await;
    let backup = dir.path().join("backups/b1.db");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let report = store.backup_to(&backup).await.unwrap();
    assert_eq!(report.path, backup);
    assert_eq!(report.schema_version, 4);
    assert!(report.pages > 0);
    assert_eq!(report.bytes, std::fs::metadata(&backup).unwrap().len());
    // Writes after the backup are not in it.
    store
        .append_event(
            &RunId::new("run-2").unwrap(),
            NewEvent::new("after", json!({})),
        )
        .await
        .unwrap();

    let restored = dir.path().join("restored/runstore.db");
    SqliteStore::restore(&backup, &restored).await.unwrap();
    let r = SqliteStore::open(SqliteConfig::new(&restored))
        .await
        .unwrap();
    assert!(r.integrity_check().await.unwrap().is_empty());
    assert_fixture_content(&r).await;

    // Restoring over a file that is open is refused, and changes nothing.
    let err = SqliteStore::restore(&backup, &restored).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_fixture_content(&r).await;
    drop(r);

    // Over a closed file it works, also over one with later changes.
    let live = store.path().to_path_buf();
    drop(store);
    SqliteStore::restore(&backup, &live).await.unwrap();
    let s = SqliteStore::open(SqliteConfig::new(&live)).await.unwrap();
    assert_eq!(
        s.all_events(&RunId::new("run-2").unwrap())
            .await
            .unwrap()
            .len(),
        4
    );
    drop(s);

    // A target with a newer schema is not rolled back.
    raw(&restored)
        .execute(
            "INSERT INTO schema_migrations VALUES (5, 'next', 'x', 0)",
            [],
        )
        .unwrap();
    let err = SqliteStore::restore(&backup, &restored).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    // A damaged backup is refused before anything is written.
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, vec![7u8; 4096]).unwrap();
    let target = dir.path().join("untouched.db");
    let err = SqliteStore::restore(&bad, &target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(!target.exists());
    let err = SqliteStore::restore(dir.path().join("missing.db"), &target)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_pages_give_corrupt_never_a_panic() {
    let (_dir, path, store) = common::fresh().await;
    let wf = WorkflowId::new("etl").unwrap();
    let mut ids = Vec::new();
    for i in 0..400 {
        let mut run = runstore_core::Run::new(wf.clone(), Version::FIRST);
        run.id = RunId::new(format!("run-{i:05}")).unwrap();
        run.attributes.insert("pad".into(), json!("x".repeat(200)));
        ids.push(run.id.clone());
        store.create_run(run).await.unwrap();
    }
    drop(store);
    // Overwrite whole pages in the middle of the file with garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages > 10, "file too small: {pages} pages");
    for p in (pages / 3)..(pages / 3 + 4) {
        for b in &mut bytes[p * page..(p + 1) * page] {
            *b = 0xa5;
        }
    }
    std::fs::write(&path, &bytes).unwrap();

    let mut errors = Vec::new();
    match SqliteStore::open(SqliteConfig::new(&path)).await {
        Err(e) => errors.push(e),
        Ok(store) => {
            match store.integrity_check().await {
                Ok(problems) => assert!(!problems.is_empty(), "integrity_check missed the damage"),
                Err(e) => errors.push(e),
            }
            let mut cursor = None;
            loop {
                match store
                    .query_runs(RunQuery::default().with_limit(50).with_cursor(cursor))
                    .await
                {
                    Ok(page) => match page.next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    },
                    Err(e) => {
                        errors.push(e);
                        break;
                    }
                }
            }
            for id in &ids {
                if let Err(e) = store.get_run(id).await {
                    errors.push(e);
                }
            }
            let err = store
                .backup_to(path.with_extension("bak"))
                .await
                .unwrap_err();
            errors.push(err);
        }
    }
    assert!(!errors.is_empty(), "no error from a damaged file");
    for e in &errors {
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_database_is_unavailable_and_retryable() {
    let (_dir, path, store) = common::fresh().await;
    let run = runstore_core::Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    let id = run.id.clone();
    store.create_run(run).await.unwrap();
    let options = SqliteConfig::new(&path).with_busy_timeout(Duration::from_millis(100));
    let impatient = SqliteStore::open(options).await.unwrap();
    let locker = raw(&path);
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = impatient
        .append_event(&id, NewEvent::new("x", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    // Readers still work while another connection writes (WAL).
    assert_eq!(impatient.get_run(&id).await.unwrap().id, id);
    locker.execute_batch("COMMIT").unwrap();
    let ok = impatient
        .append_event(&id, NewEvent::new("x", json!({})))
        .await
        .unwrap();
    assert_eq!(ok.seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_in_sql_agree_with_the_reference() {
    let (_dir, _path, store) = common::fresh().await;
    let wf = WorkflowId::new("etl").unwrap();
    let statuses = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];
    let mut all = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..3000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut values = std::collections::BTreeMap::new();
        values.insert("cost".to_string(), (x % 10_000) as f64 / 3.0 - 1000.0);
        if i % 3 == 0 {
            values.insert("tokens".to_string(), (x % 977) as f64);
        }
        all.push(ExecutionMetric {
            run_id: RunId::new(format!("r{i:06}")).unwrap(),
            workflow_id: wf.clone(),
            workflow_version: Version::new(1 + (x % 3) as u32).unwrap(),
            status: statuses[(x % 3) as usize],
            duration_micros: x % 5_000_000,
            recorded_at: v1_data::t((x % 86_400) as i64),
            counters: Default::default(),
            values,
        });
    }
    for batch in all.chunks(1000) {
        let out = store.record_many(batch.to_vec()).await.unwrap();
        assert_eq!(out.inserted, batch.len() as u64);
    }
    for version in [None, Some(Version::FIRST), Some(Version::new(3).unwrap())] {
        let q = version.map_or_else(SummaryQuery::default, SummaryQuery::version);
        let got = store.summary(&wf, q).await.unwrap();
        let want = MetricsSummary::compute(
            wf.clone(),
            version,
            all.iter()
                .filter(|m| version.is_none_or(|v| v == m.workflow_version)),
        );
        assert!(
            got.agrees_with(&want),
            "version {version:?}:\n got {got:?}\nwant {want:?}"
        );
        assert!(got.executions > 0);
    }
    let empty = store
        .summary(&WorkflowId::new("none").unwrap(), SummaryQuery::default())
        .await
        .unwrap();
    assert_eq!(empty.executions, 0);
    // Deleting a metric removes its values from the summary too.
    MetricsRepository::delete(&store, &all[0].run_id)
        .await
        .unwrap();
    let got = store.summary(&wf, SummaryQuery::default()).await.unwrap();
    let want = MetricsSummary::compute(wf.clone(), None, all[1..].iter());
    assert!(got.agrees_with(&want));
    let page = MetricsRepository::list(&store, MetricQuery::default().with_limit(10))
        .await
        .unwrap();
    assert_eq!(page.items[0], all[1]);
}

/// `record_many` writes rows in index order, not the caller's: the outcome
/// must not show it. Of two conflicts, the one first in the batch is
/// named (the later one sorts first by duration), and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_many_reports_the_first_conflict_in_the_callers_order() {
    let (_dir, _path, store) = common::fresh().await;
    let metric = |id: &str, duration_micros: u64| {
        let mut values = std::collections::BTreeMap::new();
        values.insert("cost".to_string(), duration_micros as f64);
        ExecutionMetric {
            run_id: RunId::new(id).unwrap(),
            workflow_id: WorkflowId::new("etl").unwrap(),
            workflow_version: Version::FIRST,
            status: RunStatus::Succeeded,
            duration_micros,
            recorded_at: v1_data::t(0),
            counters: Default::default(),
            values,
        }
    };
    let stored = [metric("late", 900), metric("early", 100)];
    store.record_many(stored.to_vec()).await.unwrap();
    let batch = vec![
        metric("new-1", 500),
        metric("late", 901),
        metric("new-2", 50),
        metric("early", 99),
    ];
    let err = store.record_many(batch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().contains("run late;"),
        "names the first conflict of the batch: {err}"
    );
    for id in ["new-1", "new-2"] {
        let r = MetricsRepository::get(&store, &RunId::new(id).unwrap()).await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound, "{id}");
    }
    // Given out of order, a batch reads back whole, values included.
    let batch: Vec<_> = [7, 3, 9, 1, 5]
        .iter()
        .map(|d| metric(&format!("m{d}"), *d))
        .collect();
    let out = store.record_many(batch.clone()).await.unwrap();
    assert_eq!((out.inserted, out.unchanged), (5, 0));
    for m in &batch {
        let got = MetricsRepository::get(&store, &m.run_id).await.unwrap();
        assert!(got.same_content(m), "{got:?}");
    }
    let sum = store
        .summary(&WorkflowId::new("etl").unwrap(), SummaryQuery::default())
        .await
        .unwrap();
    let duration = sum.duration.unwrap();
    assert_eq!((sum.executions, duration.min, duration.max), (7, 1, 900));
    assert_eq!((sum.values["cost"].min, sum.values["cost"].count), (1.0, 7));
}

fn chunk_rows(path: &Path, key: &ArtifactKey) -> i64 {
    raw(path)
        .query_row(
            "SELECT count(*) FROM artifact_chunks c JOIN artifacts a ON a.blob_id = c.blob_id
             WHERE a.run_id = ?1 AND a.phase = ?2 AND a.path = ?3",
            [key.run_id.as_str(), key.phase.as_str(), key.path.as_str()],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_chunked_and_refused_puts_leave_nothing_staged() {
    let (_dir, path, store) = common::fresh().await;
    let key = ArtifactKey::parse("run-1", "build", "big.bin").unwrap();
    let size = 3 * 256 * 1024 + 17;
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 256) as u8).collect();
    let w = store
        .put_bytes(&key, bytes.clone(), PutOptions::default())
        .await
        .unwrap();
    assert!(w.inserted);
    assert_eq!(w.record.size, size as u64);
    assert_eq!(chunk_rows(&path, &key), 4);
    // Exactly one chunk: the boundary case.
    let exact = ArtifactKey::parse("run-1", "build", "exact.bin").unwrap();
    store
        .put_bytes(&exact, vec![1u8; 256 * 1024], PutOptions::default())
        .await
        .unwrap();
    assert_eq!(chunk_rows(&path, &exact), 1);
    assert_eq!(
        store.get_bytes(&exact).await.unwrap().1,
        vec![1u8; 256 * 1024]
    );

    let mut other = bytes.clone();
    other[size - 1] ^= 1;
    let err = store
        .put_bytes(&key, other.clone(), PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Immutable);
    let staged: i64 = raw(&path)
        .query_row(
            "SELECT count(*) FROM artifact_blobs WHERE complete = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(staged, 0, "a refused put left a staged blob");
    let blobs: i64 = raw(&path)
        .query_row("SELECT count(*) FROM artifact_blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blobs, 2);
    // Compare-and-swap replaces and frees the old blob.
    let w2 = store
        .put_bytes(
            &key,
            other.clone(),
            PutOptions::default().overwrite_token(w.record.sha256),
        )
        .await
        .unwrap();
    assert!(w2.inserted);
    assert_eq!(store.get_bytes(&key).await.unwrap().1, other);
    let blobs: i64 = raw(&path)
        .query_row("SELECT count(*) FROM artifact_blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blobs, 2);
    // Tampering with a middle chunk is detected at the end of the stream.
    raw(&path)
        .execute(
            "UPDATE artifact_chunks SET data = zeroblob(length(data)) WHERE idx = 1 AND blob_id = (SELECT blob_id FROM artifacts WHERE path = 'big.bin')",
            [],
        )
        .unwrap();
    let err = store.get_bytes(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    ArtifactStore::delete(&store, &key).await.unwrap();
    let chunks: i64 = raw(&path)
        .query_row("SELECT count(*) FROM artifact_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(chunks, 1, "only exact.bin's chunk is left");
}

/// The lines of SQLite's plan for `sql`.
fn query_plan(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_of_section_4_uses_an_index() {
    let (_dir, path, _store) = common::fresh().await;
    let conn = raw(&path);
    let plans = [
        "SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT 50",
        "SELECT * FROM runs WHERE workflow_id = 'a' ORDER BY started_at DESC, id DESC LIMIT 50",
        "SELECT * FROM runs WHERE workflow_id = 'a' AND workflow_version = 1 ORDER BY started_at DESC, id DESC LIMIT 50",
        "SELECT * FROM runs WHERE status IN ('failed') ORDER BY started_at DESC, id DESC LIMIT 50",
        "SELECT * FROM events WHERE run_id = 'a' AND seq > 3 ORDER BY seq LIMIT 50",
        "SELECT * FROM patterns ORDER BY detected_at DESC, id DESC LIMIT 50",
        "SELECT * FROM artifacts WHERE run_id = 'a' AND phase = 'b' ORDER BY run_id, phase, path LIMIT 50",
        "SELECT duration_micros FROM metrics INDEXED BY metrics_by_version WHERE workflow_id = 'a' AND workflow_version = 1 ORDER BY duration_micros LIMIT 1 OFFSET 5",
        "SELECT recorded_at FROM metrics INDEXED BY metrics_by_time WHERE workflow_id = 'a' AND workflow_version = 1 ORDER BY recorded_at DESC LIMIT 1",
        "SELECT value FROM metric_values INDEXED BY metric_values_by_version WHERE workflow_id = 'a' AND workflow_version = 1 AND name = 'x' ORDER BY value LIMIT 1",
    ];
    for sql in plans {
        let text = query_plan(&conn, sql).join(" | ");
        assert!(
            !text.contains("USE TEMP B-TREE FOR ORDER BY"),
            "{sql}: {text}"
        );
        assert!(
            !text.starts_with("SCAN runs") || text.contains("INDEX"),
            "{sql}: {text}"
        );
    }
    // A percentile of all versions reads one bucket's range of each version
    // through the index, and sorts only those rows.
    let text = query_plan(
        &conn,
        "SELECT duration_micros FROM metrics INDEXED BY metrics_by_version
         WHERE workflow_id = 'a' AND workflow_version IN (SELECT value FROM json_each('[1,2]'))
           AND duration_micros BETWEEN 10 AND 20 ORDER BY duration_micros LIMIT 1 OFFSET 5",
    );
    assert!(
        text[0].contains("workflow_version=? AND duration_micros>? AND duration_micros<?"),
        "{text:?}"
    );
    // A batch's idempotency keys are looked up in one query, through the
    // partial unique index (not by scanning the run's events).
    let detail = query_plan(
        &conn,
        "SELECT idempotency_key, seq FROM events
         WHERE run_id = 'a' AND idempotency_key IN (SELECT value FROM json_each('[\"k\"]'))",
    );
    assert!(
        detail.iter().any(|d| d.contains("events_by_key")),
        "{detail:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_recent_and_workflow_listing_work_through_ext() {
    let (_dir, _path, store) = common::fresh().await;
    v1_data::write_all(&store).await;
    let wf = WorkflowId::new("etl").unwrap();
    let recent = store.get_recent(&wf, None, 2).await.unwrap();
    assert_eq!(
        recent.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["run-2", "run-1"]
    );
    assert_eq!(
        store.get_latest(&wf).await.unwrap().version,
        Version::new(2).unwrap()
    );
    assert_eq!(store.list_versions(&wf).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replaces_a_damaged_database() {
    let (dir, path, store) = common::fresh().await;
    v1_data::write_all(&store).await;
    let backup = dir.path().join("b.db");
    store.backup_to(&backup).await.unwrap();
    drop(store);
    std::fs::write(&path, vec![0x33; 16384]).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    SqliteStore::restore(&backup, &path).await.unwrap();
    let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    assert_fixture_content(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_replaced_while_streaming_fails_retryably() {
    use tokio::io::AsyncReadExt;
    let (_dir, _path, store) = common::fresh().await;
    let key = ArtifactKey::parse("run-1", "p", "f.bin").unwrap();
    let first = store
        .put_bytes(&key, vec![1u8; 600_000], PutOptions::default())
        .await
        .unwrap();
    let mut reader = ArtifactStore::get(&store, &key).await.unwrap();
    let mut head = vec![0u8; 1000];
    reader.body.read_exact(&mut head).await.unwrap();
    assert_eq!(head, vec![1u8; 1000]);
    store
        .put_bytes(
            &key,
            vec![2u8; 600_000],
            PutOptions::default().overwrite_token(first.record.sha256),
        )
        .await
        .unwrap();
    let mut rest = Vec::new();
    let err = reader.body.read_to_end(&mut rest).await.unwrap_err();
    let err = runstore_core::Error::io("reading", err);
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(store.get_bytes(&key).await.unwrap().1, vec![2u8; 600_000]);
}

/// An existing empty file is refused as corrupt (not opened as a new,
/// empty store), and left as it is.
#[tokio::test]
async fn an_existing_empty_database_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runstore.db");
    std::fs::write(&path, b"").unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), runstore_core::ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    // A missing file is still a new store.
    let fresh = dir.path().join("new.db");
    SqliteStore::open(SqliteConfig::new(&fresh)).await.unwrap();
}

/// The names of the database's indexes that SQL created (not the automatic
/// ones of primary keys).
fn index_names(path: &Path) -> Vec<String> {
    raw(path)
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_drops_secondary_indexes_and_any_open_builds_them_again() {
    use runstore_core::BulkLoadOptions;
    let (dir, path, store) = common::fresh().await;
    let all = index_names(&path);
    LogRepository::begin_bulk_load(&store, BulkLoadOptions::default())
        .await
        .unwrap();
    MetricsRepository::begin_bulk_load(&store, BulkLoadOptions::default())
        .await
        .unwrap();
    let during = index_names(&path);
    for kept in ["runs_by_start", "runs_by_external_key", "events_by_key"] {
        assert!(
            during.iter().any(|n| n == kept),
            "{kept} is kept: {during:?}"
        );
    }
    for dropped in [
        "runs_by_status",
        "metrics_by_version",
        "metric_values_by_version",
    ] {
        assert!(!during.iter().any(|n| n == dropped), "{dropped} is dropped");
    }
    // Killed mid-load: the handle goes without ending it. Opening the file
    // again builds what the load left out.
    drop(store);
    let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    assert_eq!(
        index_names(&path),
        all,
        "an open builds every missing index"
    );
    // A load of 2 runs into a store of 2 keeps the indexes: a rebuild of
    // every row costs more than inserting what may be there already.
    for (id, at) in [("r1", 1), ("r2", 2)] {
        let mut run = runstore_core::Run::new(WorkflowId::new("w").unwrap(), Version::FIRST);
        run.id = RunId::new(id).unwrap();
        run.started_at = runstore_core::Timestamp::from_micros(at).unwrap();
        store.create_run(run).await.unwrap();
    }
    let small = BulkLoadOptions::default().with_expected_runs(2);
    LogRepository::begin_bulk_load(&store, small).await.unwrap();
    assert_eq!(index_names(&path), all);
    LogRepository::begin_bulk_load(&store, BulkLoadOptions::default())
        .await
        .unwrap();
    assert_ne!(index_names(&path), all);
    LogRepository::end_bulk_load(&store).await.unwrap();
    assert_eq!(index_names(&path), all, "end builds the run indexes");
    // A read-only handle takes no load and changes nothing.
    let ro = SqliteStore::open(SqliteConfig::new(&path).with_read_only(true))
        .await
        .unwrap();
    LogRepository::begin_bulk_load(&ro, BulkLoadOptions::default())
        .await
        .unwrap();
    assert_eq!(index_names(&path), all);
    drop(dir);
}
