//! The whole conformance suite with artifacts on S3 (a local moto server or
//! `RUNSTORE_S3_URL`), one fresh prefix per rule; workflows, logs and
//! metrics on the memory reference backend.
//!
//! Without a server (and without `RUNSTORE_REQUIRE_S3=1`) every generated
//! test prints loudly that it did not run and returns: see `factory()`.

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use std::sync::Arc;

use async_trait::async_trait;
use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};
use runstore_core::{ArtifactKey, Result, StoreSet};
use runstore_s3::testing::{self, TestServer};
use runstore_s3::{S3Config, S3Store};

struct S3Factory {
    server: TestServer,
}

/// The rule's S3 store and the memory stores beside it, found again by
/// `reopen` and `tamper_artifact`.
struct Guard {
    config: S3Config,
    store: S3Store,
}

fn guard_of(stores: &TestStores) -> Result<&Guard> {
    stores.guard_as("s3")
}

#[async_trait]
impl StoreFactory for S3Factory {
    fn name(&self) -> String {
        format!("s3 ({})", self.server.origin())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::PersistsAcrossReopen)
            .with(Capability::ConcurrentHandles)
            .with(Capability::TamperArtifacts)
    }

    async fn create(&self) -> Result<TestStores> {
        let config = testing::test_config(&self.server);
        let store = S3Store::open(config.clone()).await?;
        let memory = runstore_core::memory::store_set();
        let stores = StoreSet {
            artifacts: Arc::new(store.clone()),
            ..memory
        };
        Ok(TestStores::with_guard(
            stores,
            Arc::new(Guard { config, store }),
        ))
    }

    async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
        // A second client on the same prefix, as another process would
        // open it; the memory concerns are shared as they are.
        let guard = guard_of(stores)?;
        let second = S3Store::open(guard.config.clone()).await?;
        Ok(TestStores::with_guard(
            StoreSet {
                artifacts: Arc::new(second),
                ..stores.stores.clone()
            },
            stores.guard.clone(),
        ))
    }

    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        guard_of(stores)?.store.tamper(key).await
    }
}

/// The factory, or `None` after printing loudly that there is no server
/// (which panics instead under `RUNSTORE_REQUIRE_S3=1`).
fn factory() -> Option<S3Factory> {
    testing::server_or_skip("conformance suite").map(|server| S3Factory { server })
}

mod conformance {
    use super::factory;
    runstore_conformance::conformance_tests!(match factory() {
        Some(f) => f,
        None => return,
    });
}
