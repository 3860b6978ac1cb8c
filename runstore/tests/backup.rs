//! Backup sets and restores through the library: every concern comes back
//! (files and SQLite, PostgreSQL, a mixed configuration), what a restore
//! replaces is kept, and a damaged set changes nothing.

mod migrate_support;

use migrate_support::*;
use runstore::backup::{self, BackupMethod};
use runstore::{
    ArtifactKey, ArtifactStoreExt, Concern, Config, ErrorKind, LogRepository, Run, Storage,
};
#[cfg(feature = "postgres")]
use runstore_postgres::testing::{TestSchema, no_server, test_config, why_no_server};

/// The embedded default's layout under `dir`: workflows and artifacts in a
/// file root, logs and metrics in a SQLite database inside it.
fn default_layout(dir: &std::path::Path) -> Config {
    let d = dir.display();
    Config::from_yaml_str(&format!(
        "storage:\n  workflows: {{ type: file, path: {d}/data }}\n  logs: {{ type: sqlite, path: {d}/data/runstore.db }}\n  metrics: {{ type: sqlite, path: {d}/data/runstore.db }}\n  artifacts: {{ type: file, path: {d}/data }}\n"
    ))
    .unwrap()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A store of the default layout under `dir`, holding the populated set.
async fn populated(dir: &std::path::Path) -> Storage {
    let source = Storage::open(&default_layout(dir)).await.unwrap();
    populate(&source.stores()).await;
    source
}

async fn digest(config: &Config) -> runstore::dump::DumpReport {
    let s = Storage::open(config).await.unwrap();
    runstore::dump::content_digest(&s, &Concern::ALL)
        .await
        .unwrap()
}

/// A PostgreSQL test schema and its YAML mapping; `None` (said loudly) without a server.
#[cfg(feature = "postgres")]
async fn pg(test: &str) -> Option<(TestSchema, String)> {
    let Some(config) = test_config().await else {
        no_server(test, &why_no_server().unwrap_or_default());
        return None;
    };
    let url = serde_json::to_string(&config.url).unwrap();
    let yaml = format!(
        "{{ type: postgres, url: {url}, schema: {}, pool_size: 2 }}",
        config.schema
    );
    Some((TestSchema::new(config), yaml))
}

/// Guards for the schemas a restore leaves beside `schema`.
#[cfg(feature = "postgres")]
fn guard_aside(guard: &TestSchema, kept: &[String]) -> Vec<TestSchema> {
    kept.iter()
        .filter_map(|k| k.strip_prefix("schema "))
        .map(|s| TestSchema::new(guard.config().clone().with_schema(s)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_layout_restores_into_an_empty_folder() {
    let (a, b, sets) = (tempdir(), tempdir(), tempdir());
    let source = populated(a.path()).await;
    let set = backup::backup(&source, sets.path(), Default::default())
        .await
        .unwrap();
    assert!(set.path.join("backup.json").is_file());
    let methods: Vec<_> = set.manifest.parts.iter().map(|p| p.method).collect();
    assert_eq!(
        methods,
        [BackupMethod::LogicalDump, BackupMethod::SqliteOnlineBackup]
    );
    let sqlite = &set.manifest.parts[1];
    assert_eq!(sqlite.concerns, [Concern::Logs, Concern::Metrics]);
    assert_eq!(sqlite.counts["runs"], RUNS);
    assert_eq!(sqlite.counts["metrics"], METRICS);
    assert_eq!(set.manifest.parts[0].counts["workflows"], WORKFLOWS);
    assert_eq!(set.manifest.parts[0].counts["artifacts"], ARTIFACTS);
    // No temp folder is left beside the set.
    let names: Vec<_> = std::fs::read_dir(sets.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let target = default_layout(b.path());
    let report = backup::restore(&target, &set.path, Default::default())
        .await
        .unwrap();
    assert!(
        report.kept.is_empty(),
        "nothing was there to keep: {report:?}"
    );
    assert_eq!(report.counts["events"], event_count(&source.stores()).await);
    let restored = Storage::open(&target).await.unwrap();
    assert_same(&source.stores(), &restored.stores()).await;
    // The plan is gone once the restore is done.
    assert!(!set.path.join("restore-plan.json").exists());

    // A second backup never reuses the first one's folder.
    let again = backup::backup(&source, sets.path(), Default::default())
        .await
        .unwrap();
    assert_ne!(again.path, set.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_over_a_store_keeps_what_it_replaced() {
    let (a, b, sets) = (tempdir(), tempdir(), tempdir());
    let source = populated(a.path()).await;
    let set = backup::backup(&source, sets.path(), Default::default())
        .await
        .unwrap();

    // B holds a run of its own, and an artifact of it.
    let target = default_layout(b.path());
    let replaced = Storage::open(&target).await.unwrap();
    let own = Run {
        id: rid("only-in-b"),
        ..Run::new(wid("other"), v(1))
    };
    replaced.logs.create_run(own).await.unwrap();
    let key = ArtifactKey::parse("only-in-b", "build", "out.txt").unwrap();
    replaced
        .artifacts
        .put_bytes(&key, b"b's own".to_vec(), Default::default())
        .await
        .unwrap();
    drop(replaced);

    let report = backup::restore(&target, &set.path, Default::default())
        .await
        .unwrap();
    assert_eq!(report.kept.len(), 2, "{report:?}");
    let restored = Storage::open(&target).await.unwrap();
    assert_same(&source.stores(), &restored.stores()).await;
    let gone = restored.logs.get_run(&rid("only-in-b")).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    // The replaced database is kept, whole, with B's run.
    let kept_db = report
        .kept
        .iter()
        .find(|k| k.contains("runstore.db.before-restore."))
        .unwrap();
    let kept = runstore::sqlite::SqliteStore::open(runstore::sqlite::SqliteConfig::new(kept_db))
        .await
        .unwrap();
    assert!(kept.get_run(&rid("only-in-b")).await.is_ok());
    assert!(kept.integrity_check().await.unwrap().is_empty());
    // So is the replaced artifacts folder, with B's artifact.
    let kept_root = report
        .kept
        .iter()
        .find(|k| k.contains("data.before-restore."))
        .unwrap();
    let bytes = std::path::Path::new(kept_root).join("artifacts/only-in-b");
    assert!(bytes.is_dir(), "{}", bytes.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_partial_set_is_refused_and_nothing_changes() {
    let (a, b, sets) = (tempdir(), tempdir(), tempdir());
    let source = populated(a.path()).await;
    let target = default_layout(b.path());
    {
        let s = Storage::open(&target).await.unwrap();
        let own = Run {
            id: rid("only-in-b"),
            ..Run::new(wid("other"), v(1))
        };
        s.logs.create_run(own).await.unwrap();
    }
    let before = digest(&target).await;

    let set = backup::backup(&source, sets.path(), Default::default())
        .await
        .unwrap();
    // One byte of the dump changed.
    let runs = set.path.join("dump/workflows.ndjson");
    let mut bytes = std::fs::read(&runs).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&runs, &bytes).unwrap();
    let e = backup::restore(&target, &set.path, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    bytes[10] ^= 1;
    std::fs::write(&runs, &bytes).unwrap();

    // The database file cut short.
    let db = set.path.join("logs+metrics.db");
    let full = std::fs::read(&db).unwrap();
    std::fs::write(&db, &full[..full.len() / 2]).unwrap();
    let e = backup::restore(&target, &set.path, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    std::fs::write(&db, &full).unwrap();

    // No manifest: a set that did not finish.
    let manifest = std::fs::read(set.path.join("backup.json")).unwrap();
    std::fs::remove_file(set.path.join("backup.json")).unwrap();
    let e = backup::restore(&target, &set.path, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("not a complete backup set"), "{e}");
    std::fs::write(set.path.join("backup.json"), manifest).unwrap();

    let e = backup::restore(&target, &sets.path().join("nope"), Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // A configuration that keeps logs elsewhere than the set took them from.
    let file_logs = Config::from_yaml_str(&format!(
        "storage:\n  workflows: {{ type: file, path: {d}/data }}\n  logs: {{ type: file, path: {d}/data }}\n  metrics: {{ type: sqlite, path: {d}/data/runstore.db }}\n  artifacts: {{ type: file, path: {d}/data }}\n",
        d = b.path().display()
    ))
    .unwrap();
    let e = backup::restore(&file_logs, &set.path, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("`sqlite` store"), "{e}");

    assert_eq!(digest(&target).await, before, "nothing was changed");
    // And the intact set still restores.
    backup::restore(&target, &set.path, Default::default())
        .await
        .unwrap();
    assert_same(
        &source.stores(),
        &Storage::open(&target).await.unwrap().stores(),
    )
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restores_into_another_schema_and_over_itself() {
    let test = "postgres_restores_into_another_schema_and_over_itself";
    let Some((g1, pg1)) = pg(test).await else {
        return;
    };
    let Some((g2, pg2)) = pg(test).await else {
        return;
    };
    let all_on = |b: &str| {
        Config::from_yaml_str(&format!(
            "storage:\n  workflows: {b}\n  logs: {b}\n  metrics: {b}\n  artifacts: {b}\n"
        ))
        .unwrap()
    };
    let (c1, c2) = (all_on(&pg1), all_on(&pg2));
    let sets = tempfile::tempdir().unwrap();
    let source = Storage::open(&c1).await.unwrap();
    populate(&source.stores()).await;
    let set = backup::backup(&source, sets.path(), Default::default())
        .await
        .unwrap();
    assert_eq!(set.manifest.parts.len(), 1);
    assert_eq!(set.manifest.parts[0].method, BackupMethod::LogicalDump);

    let report = backup::restore(&c2, &set.path, Default::default())
        .await
        .unwrap();
    let _aside2 = guard_aside(&g2, &report.kept);
    let restored = Storage::open(&c2).await.unwrap();
    assert_same(&source.stores(), &restored.stores()).await;
    drop(restored);

    // Over the store it was taken from, after a change: the change is gone,
    // the schema that held it is kept.
    let extra = Run {
        id: rid("after-backup"),
        ..Run::new(wid("etl"), v(1))
    };
    source.logs.create_run(extra).await.unwrap();
    drop(source);
    let report = backup::restore(&c1, &set.path, Default::default())
        .await
        .unwrap();
    let aside = guard_aside(&g1, &report.kept);
    assert_eq!(aside.len(), 1, "{report:?}");
    let restored = Storage::open(&c1).await.unwrap();
    let e = restored
        .logs
        .get_run(&rid("after-backup"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let kept = runstore_postgres::PostgresStore::open(aside[0].config().clone())
        .await
        .unwrap();
    assert!(kept.get_run(&rid("after-backup")).await.is_ok());
    let again = Storage::open(&c2).await.unwrap();
    assert_same(&again.stores(), &restored.stores()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_configuration_restores_every_concern() {
    let test = "a_mixed_configuration_restores_every_concern";
    let Some((g1, pg1)) = pg(test).await else {
        return;
    };
    let Some((g2, pg2)) = pg(test).await else {
        return;
    };
    let mixed = |dir: &std::path::Path, pg: &str| {
        let d = dir.display();
        Config::from_yaml_str(&format!(
            "storage:\n  workflows: {{ type: file, path: {d}/files }}\n  logs: {pg}\n  metrics: {{ type: sqlite, path: {d}/metrics.db }}\n  artifacts: {{ type: file, path: {d}/files }}\n"
        ))
        .unwrap()
    };
    let (a, b, sets) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (c1, c2) = (mixed(a.path(), &pg1), mixed(b.path(), &pg2));
    let source = Storage::open(&c1).await.unwrap();
    populate(&source.stores()).await;
    let set = backup::backup(&source, sets.path(), Default::default())
        .await
        .unwrap();
    assert_eq!(set.manifest.parts.len(), 3);
    let report = backup::restore(&c2, &set.path, Default::default())
        .await
        .unwrap();
    let _aside = guard_aside(&g2, &report.kept);
    let restored = Storage::open(&c2).await.unwrap();
    assert_same(&source.stores(), &restored.stores()).await;
    drop(g1);
}
