//! What tests of a file store need (feature `testing`): the conformance
//! suite's factory ([`FileFactory`], a temp root per rule) and [`tamper`],
//! which changes an artifact's stored bytes behind the store's back.
//! Exported so that every crate's tests use these, not a copy.

use std::path::Path;
use std::sync::Arc;

use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};
use runstore_core::{ArtifactKey, Error, Result};

use crate::{FileConfig, FileStore};

/// Flips the first stored byte of an artifact under `root` (an empty one
/// gets a byte), without touching its recorded hash.
pub fn tamper(root: &Path, key: &ArtifactKey) -> Result<()> {
    let path = crate::artifact_bytes_path(root, key);
    let mut bytes = std::fs::read(&path).map_err(|e| Error::io("reading to tamper", e))?;
    match bytes.first_mut() {
        Some(b) => *b ^= 0xff,
        None => bytes.push(0),
    }
    std::fs::write(&path, bytes).map_err(|e| Error::io("tampering", e))
}

/// A fresh temp root per rule; reopen is a second `FileStore::open` on it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileFactory;

/// Keeps the temp folder alive as long as the stores.
#[derive(Debug)]
pub struct Guard {
    /// The root, removed when the last handle goes.
    pub dir: Arc<tempfile::TempDir>,
}

fn guard_of(stores: &TestStores) -> Result<&Guard> {
    stores.guard_as("file")
}

#[async_trait::async_trait]
impl StoreFactory for FileFactory {
    fn name(&self) -> String {
        "file".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::SharedStorage)
            .with(Capability::TamperArtifacts)
    }

    async fn create(&self) -> Result<TestStores> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temp root", e))?;
        let store = FileStore::open(FileConfig::new(dir.path())).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            Arc::new(Guard { dir: Arc::new(dir) }),
        ))
    }

    async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
        let guard = guard_of(stores)?;
        let store = FileStore::open(FileConfig::new(guard.dir.path())).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            Arc::new(Guard {
                dir: guard.dir.clone(),
            }),
        ))
    }

    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        tamper(guard_of(stores)?.dir.path(), key)
    }
}
