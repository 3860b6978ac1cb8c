//! What tests of a SQLite store need (feature `testing`): the conformance
//! suite's factory ([`SqliteFactory`], a database file per rule in a temp
//! folder) and [`tamper`], which changes an artifact's stored bytes behind
//! the store's back. Exported so that every crate's tests use these, not a
//! copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};
use runstore_core::{ArtifactKey, Error, Result};

use crate::{SqliteConfig, SqliteStore};

/// Keeps the temp folder alive as long as any handle on it.
#[derive(Debug)]
pub struct Guard {
    /// The temp folder, removed when the last handle goes.
    pub dir: Arc<tempfile::TempDir>,
    /// The database file in it.
    pub path: PathBuf,
    /// The store the set was made from.
    pub store: SqliteStore,
}

/// Stores on a fresh database file in a temp folder per rule.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteFactory;

fn guard_of(stores: &TestStores) -> Result<&Guard> {
    stores.guard_as("sqlite")
}

/// Flips the first stored byte of an artifact through a raw connection.
pub fn tamper(path: &Path, key: &ArtifactKey) -> Result<()> {
    let conn =
        rusqlite::Connection::open(path).map_err(|e| Error::backend("open", Some(Box::new(e))))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| Error::backend("busy", Some(Box::new(e))))?;
    let blob: i64 = conn
        .query_row(
            "SELECT blob_id FROM artifacts WHERE run_id = ?1 AND phase = ?2 AND path = ?3",
            [key.run_id.as_str(), key.phase.as_str(), key.path.as_str()],
            |r| r.get(0),
        )
        .map_err(|_| Error::not_found(format!("artifact {key}")))?;
    let first: Option<Vec<u8>> = conn
        .query_row(
            "SELECT data FROM artifact_chunks WHERE blob_id = ?1 AND idx = 0",
            [blob],
            |r| r.get(0),
        )
        .ok();
    let res = match first {
        Some(mut data) => {
            if data.is_empty() {
                data.push(0);
            } else {
                data[0] ^= 0xff;
            }
            conn.execute(
                "UPDATE artifact_chunks SET data = ?2 WHERE blob_id = ?1 AND idx = 0",
                rusqlite::params![blob, data],
            )
        }
        None => conn.execute(
            "INSERT INTO artifact_chunks (blob_id, idx, data) VALUES (?1, 0, x'00')",
            [blob],
        ),
    };
    res.map(|_| ())
        .map_err(|e| Error::backend("tamper", Some(Box::new(e))))
}

#[runstore_core::async_trait]
impl StoreFactory for SqliteFactory {
    fn name(&self) -> String {
        "sqlite (file)".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::SharedStorage)
            .with(Capability::TamperArtifacts)
    }

    async fn create(&self) -> Result<TestStores> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("runstore.db");
        let store = SqliteStore::open(SqliteConfig::new(&path)).await?;
        let stores = store.store_set();
        Ok(TestStores::with_guard(
            stores,
            Arc::new(Guard {
                dir: Arc::new(dir),
                path,
                store,
            }),
        ))
    }

    async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
        let g = guard_of(stores)?;
        let store = SqliteStore::open(SqliteConfig::new(&g.path)).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            Arc::new(Guard {
                dir: g.dir.clone(),
                path: g.path.clone(),
                store,
            }),
        ))
    }

    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        let path = guard_of(stores)?.path.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || tamper(&path, &key))
            .await
            .map_err(|e| Error::backend("tamper task", Some(Box::new(e))))?
    }
}
