//! The conformance suite's factory for S3 ([`S3Factory`]): artifacts on a
//! fresh prefix of the test server per rule, workflows, logs and metrics on
//! the memory reference backend.

use std::sync::Arc;

use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};
use runstore_core::{ArtifactKey, Result, StoreSet};

use super::{TestServer, test_config};
use crate::{S3Config, S3Store};

/// Makes the stores of each rule on a fresh prefix of `server`.
#[derive(Debug, Clone)]
pub struct S3Factory {
    /// Where the artifacts go.
    pub server: TestServer,
}

/// The rule's S3 store and its configuration, found again by `reopen` and
/// `tamper_artifact`.
struct Guard {
    config: S3Config,
    store: S3Store,
}

fn guard_of(stores: &TestStores) -> Result<&Guard> {
    stores.guard_as("s3")
}

#[async_trait::async_trait]
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
        let config = test_config(&self.server);
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
