//! Shared by the integration tests: the factory and tamper function of the
//! crate's `testing` module, and a fresh store.
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;

pub use runstore_sqlite::testing::*;
use runstore_sqlite::{SqliteConfig, SqliteStore};

/// A fresh store in a temp folder.
pub async fn fresh() -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runstore.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).await.unwrap();
    (dir, path, store)
}

/// A copy of the schema version 1 fixture in a temp folder.
pub fn v1_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1.db"),
        &path,
    )
    .unwrap();
    (dir, path)
}
