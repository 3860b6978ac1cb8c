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
