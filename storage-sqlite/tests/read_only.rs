//! A store opened read-only (`SqliteConfig::read_only`): nothing created,
//! migrated or written; every write refused with `InvalidInput`.

mod common;

use runstore_core::ErrorKind;
use runstore_sqlite::{SqliteConfig, SqliteStore};

#[tokio::test]
async fn a_missing_file_is_not_found_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/runstore.db");
    let err = SqliteStore::open(SqliteConfig::new(&path).with_read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("runstore.db"), "{err}");
    assert!(!dir.path().join("sub").exists());
}

#[tokio::test]
async fn reads_work_and_every_write_is_refused_leaving_the_file_unchanged() {
    let (_dir, path, store) = common::fresh().await;
    let seeded = runstore_conformance::read_only::seed(&store.store_set())
        .await
        .unwrap();
    drop(store);
    let before = std::fs::read(&path).unwrap();

    let ro = SqliteStore::open(SqliteConfig::new(&path).with_read_only(true))
        .await
        .unwrap();
    runstore_conformance::read_only::every_write_refused(&ro.store_set(), &seeded)
        .await
        .unwrap();
    drop(ro);
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the database changed"
    );
}

#[tokio::test]
async fn an_older_schema_is_refused_not_migrated() {
    let (_dir, path) = common::v1_copy();
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path).with_read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("older"), "{err}");
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the database changed"
    );
}
