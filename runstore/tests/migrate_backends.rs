//! Migration between the real backends: files -> SQLite -> Postgres ->
//! files, equal record for record and byte for byte at every hop, and a
//! migration into SQLite interrupted at several points, then resumed.
//! Postgres comes from `runstore_postgres::testing` (skipped loudly without
//! a server, failing under `RUNSTORE_REQUIRE_PG=1`).
#![cfg(all(feature = "file", feature = "sqlite"))]

mod migrate_support;

use std::path::Path;
use std::sync::Arc;

use migrate_support::*;
use runstore::file::{FileConfig, FileStore};
use runstore::migrate::{MigrateOptions, MigrationReport, VerifyOptions, migrate, verify};
use runstore::sqlite::{SqliteConfig, SqliteStore};
use runstore::{ErrorKind, StoreSet};
use runstore_postgres::PostgresStore;
use runstore_postgres::testing::{TestSchema, no_server, test_config, why_no_server};

fn opts() -> MigrateOptions {
    MigrateOptions::default()
        .batch_size(4)
        .metrics_per_batch(3)
        .max_events_per_batch(LONG_RUN_BATCH)
        .verify_options(VerifyOptions::default().page_size(3).deep(true))
}

async fn files(dir: &Path) -> StoreSet {
    FileStore::open(FileConfig::new(dir))
        .await
        .unwrap()
        .store_set()
}

async fn sqlite(path: &Path) -> StoreSet {
    let s = SqliteStore::open(SqliteConfig::new(path)).await.unwrap();
    StoreSet {
        workflows: Arc::new(s.clone()),
        logs: Arc::new(s.clone()),
        metrics: Arc::new(s.clone()),
        artifacts: Arc::new(s),
    }
}

async fn hop(from: &StoreSet, to: &StoreSet, what: &str) -> MigrationReport {
    let report = migrate(from, to, opts()).await.unwrap();
    assert_eq!(
        report.conflict_count(),
        0,
        "{what}: {:#?}",
        report.conflicts
    );
    let v = report.verify.as_ref().unwrap();
    assert!(v.is_equal(), "{what}: {:#?}", v.differences);
    assert!(report.is_complete());
    assert_eq!(report.runs.copied, RUNS, "{what}");
    assert_eq!(report.artifacts.copied, ARTIFACTS, "{what}");
    assert_same(from, to).await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_to_sqlite_to_postgres_to_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let src = files(&dir.path().join("src")).await;
    populate(&src).await;
    let db = sqlite(&dir.path().join("x.db")).await;
    hop(&src, &db, "files -> sqlite").await;

    // Postgres, if a server can be had.
    let pg_guard = match test_config().await {
        Some(config) => Some(TestSchema::new(config)),
        None => {
            no_server(
                "files_to_sqlite_to_postgres_to_files_round_trip",
                &why_no_server().unwrap_or_else(|| "no server".into()),
            );
            None
        }
    };
    let last = match &pg_guard {
        Some(guard) => {
            let pg = PostgresStore::open(guard.config().clone())
                .await
                .unwrap()
                .store_set();
            hop(&db, &pg, "sqlite -> postgres").await;
            // Idempotent on Postgres too.
            let again = migrate(&db, &pg, opts()).await.unwrap();
            assert_eq!(
                again.runs.copied + again.events.copied + again.artifacts.copied,
                0
            );
            assert_eq!(again.runs.unchanged, RUNS);
            assert!(again.is_complete());
            pg
        }
        None => db.clone(),
    };
    let back = files(&dir.path().join("back")).await;
    hop(&last, &back, "postgres (or sqlite) -> files").await;
    // The far end equals the start.
    let v = verify(&src, &back, VerifyOptions::default().deep(true))
        .await
        .unwrap();
    assert!(v.is_equal(), "{:#?}", v.differences);
    assert_same(&src, &back).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_migration_into_sqlite_resumes_to_equal() {
    let dir = tempfile::tempdir().unwrap();
    let src = files(&dir.path().join("src")).await;
    populate_with(&src, 300 * 1024).await;
    // Count the writes of a whole migration.
    let probe = sqlite(&dir.path().join("probe.db")).await;
    let (counting, budget) = migrate_support::failing::wrap(&probe, i64::MAX);
    migrate(&src, &counting, opts().verify(false))
        .await
        .unwrap();
    let total = budget.spent();
    // Interrupt at the start, in the workflows, runs (inside the chunked
    // import of the long run too: after each of its appended chunks),
    // metrics and artifacts, and at the end.
    let mut points: Vec<i64> = (0..total).step_by(3).collect();
    points.extend(budget.appends());
    points.push(total - 1);
    points.sort_unstable();
    points.dedup();
    let mut resumed = 0;
    for n in points {
        let path = dir.path().join(format!("cut-{n}.db"));
        let to = sqlite(&path).await;
        let (faulty, b) = migrate_support::failing::wrap(&to, n);
        let err = migrate(&src, &faulty, opts().verify(false))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "after {n} writes");
        assert!(b.exhausted());
        // A new process: reopen the file.
        drop((faulty, to));
        let to = sqlite(&path).await;
        let report = migrate(&src, &to, opts()).await.unwrap();
        assert!(report.is_complete(), "after {n} writes: {report:#?}");
        resumed += report.runs_resumed;
        assert_same(&src, &to).await;
    }
    assert!(
        resumed > 0,
        "no cut fell inside the chunked import of the long run"
    );
}

/// Looks into the SQLite destination each time the copy of runs reports
/// progress: whether a run index the bulk load drops was ever missing.
struct IndexProbe {
    path: std::path::PathBuf,
    saw_missing: std::sync::atomic::AtomicBool,
}

impl IndexProbe {
    fn new(path: &Path) -> Arc<Self> {
        Arc::new(IndexProbe {
            path: path.to_path_buf(),
            saw_missing: Default::default(),
        })
    }
}

impl runstore::migrate::MigrationProgress for IndexProbe {
    fn on_progress(&self, concern: &str, _: u64, _: Option<u64>) {
        if concern != "runs" {
            return;
        }
        if let Some(names) = sqlite_indexes(&self.path)
            && !names.iter().any(|n| n == "runs_by_status")
        {
            self.saw_missing
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The SQL-created indexes of the database at `path` (None before it exists).
fn sqlite_indexes(path: &Path) -> Option<Vec<String>> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()?;
    let mut stmt = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
        )
        .ok()?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_into_sqlite_is_a_bulk_load_that_leaves_every_index() {
    let dir = tempfile::tempdir().unwrap();
    let src = files(&dir.path().join("src")).await;
    populate_with(&src, 1024).await;
    let fresh = |name: &str| dir.path().join(name);
    let all = {
        let p = fresh("empty.db");
        drop(sqlite(&p).await);
        sqlite_indexes(&p).unwrap()
    };

    // Into an empty store: the run indexes are gone while runs are copied,
    // and all are back when the migration returns.
    let path = fresh("a.db");
    let dst = sqlite(&path).await;
    let probe = IndexProbe::new(&path);
    let report = migrate(&src, &dst, opts().progress(probe.clone()))
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:#?}");
    assert!(probe.saw_missing.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(sqlite_indexes(&path).unwrap(), all);
    assert_same(&src, &dst).await;

    // A second full pass brings nothing new: the indexes stay.
    let probe = IndexProbe::new(&path);
    let again = migrate(&src, &dst, opts().progress(probe.clone()))
        .await
        .unwrap();
    assert!(again.is_complete());
    assert!(!probe.saw_missing.load(std::sync::atomic::Ordering::SeqCst));

    // Without a bulk load, and in a dry run, nothing is dropped.
    for (name, options) in [
        ("b.db", opts().bulk_load(false)),
        ("c.db", opts().dry_run(true)),
    ] {
        let path = fresh(name);
        let dst = sqlite(&path).await;
        let probe = IndexProbe::new(&path);
        migrate(&src, &dst, options.progress(probe.clone()))
            .await
            .unwrap();
        assert!(
            !probe.saw_missing.load(std::sync::atomic::Ordering::SeqCst),
            "{name}"
        );
        assert_eq!(sqlite_indexes(&path).unwrap(), all, "{name}");
    }

    // A migration that stops on a conflict still ends the load. The
    // conflict is in the last batch (runs go oldest first): by the time a
    // writer meets it, earlier batches are written and progress reported.
    let path = fresh("d.db");
    let dst = sqlite(&path).await;
    let mut other = src.logs.get_run(&rid("same-start-b")).await.unwrap();
    other.trigger = "elsewhere".into();
    dst.logs.create_run(other).await.unwrap();
    let probe = IndexProbe::new(&path);
    let failed = migrate(
        &src,
        &dst,
        opts()
            .on_conflict(runstore::migrate::OnConflict::Fail)
            .progress(probe.clone()),
    )
    .await;
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::Conflict);
    assert!(probe.saw_missing.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(sqlite_indexes(&path).unwrap(), all);
}
