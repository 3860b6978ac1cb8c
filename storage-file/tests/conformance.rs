//! The whole conformance suite on the file backend, default durability.

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use std::sync::Arc;

use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};
use runstore_core::{ArtifactKey, Error, Result};
use runstore_file::{FileOptions, FileStore};

/// A fresh temp root per rule; reopen is a second `FileStore::open` on it.
struct FileFactory;

/// Keeps the temp folder alive as long as the stores.
struct Guard {
    dir: Arc<tempfile::TempDir>,
}

#[runstore_core::async_trait]
impl StoreFactory for FileFactory {
    fn name(&self) -> String {
        "file".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::PersistsAcrossReopen)
            .with(Capability::ConcurrentHandles)
            .with(Capability::TamperArtifacts)
    }

    async fn create(&self) -> Result<TestStores> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temp root", e))?;
        let store = FileStore::open(dir.path(), FileOptions::default()).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            Arc::new(Guard { dir: Arc::new(dir) }),
        ))
    }

    async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
        let guard = stores
            .guard
            .downcast_ref::<Guard>()
            .ok_or_else(|| Error::backend("not a file store set", None))?;
        let store = FileStore::open(guard.dir.path(), FileOptions::default()).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            Arc::new(Guard {
                dir: guard.dir.clone(),
            }),
        ))
    }

    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        let guard = stores
            .guard
            .downcast_ref::<Guard>()
            .ok_or_else(|| Error::backend("not a file store set", None))?;
        let path = runstore_file::artifact_bytes_path(guard.dir.path(), key);
        let mut bytes = std::fs::read(&path).map_err(|e| Error::io("reading to tamper", e))?;
        match bytes.first_mut() {
            Some(b) => *b ^= 0xff,
            None => bytes.push(0),
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io("tampering", e))
    }
}

runstore_conformance::conformance_tests!(FileFactory);
