//! The whole conformance suite against PostgreSQL, one fresh schema per rule.
//!
//! Without a server (and without `RUNSTORE_REQUIRE_PG=1`) every generated
//! test prints loudly that it did not run and returns: see `factory()`.

/// Counts the heap, so the memory rules run (`MeasuredMemory`).
#[global_allocator]
static HEAP: runstore_conformance::PeakAlloc = runstore_conformance::PeakAlloc;

use std::sync::Arc;

use async_trait::async_trait;
use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};
use runstore_core::{ArtifactKey, Error, Result};
use runstore_postgres::testing::{self, TestSchema};
use runstore_postgres::{PostgresConfig, PostgresStore};

/// Makes a store on a fresh schema of the test server for each rule.
struct PgFactory {
    url: String,
}

/// What keeps a rule's schema alive, and how to find it again.
struct Guard {
    schema: TestSchema,
}

impl Guard {
    fn config(&self) -> &PostgresConfig {
        self.schema.config()
    }
}

fn guard_of(stores: &TestStores) -> Result<&Guard> {
    stores
        .guard
        .downcast_ref::<Guard>()
        .ok_or_else(|| Error::backend("not a postgres test store set", None))
}

#[async_trait]
impl StoreFactory for PgFactory {
    fn name(&self) -> String {
        "postgres".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::PersistsAcrossReopen)
            .with(Capability::ConcurrentHandles)
            .with(Capability::TamperArtifacts)
    }

    async fn create(&self) -> Result<TestStores> {
        let config = PostgresConfig::new(&self.url).with_schema(testing::unique_schema());
        let schema = TestSchema::new(config.clone());
        let store = PostgresStore::connect(config).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            Arc::new(Guard { schema }),
        ))
    }

    async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
        let guard = guard_of(stores)?;
        // A second pool on the same schema, as a second process would open it.
        let store = PostgresStore::connect(guard.config().clone()).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            stores.guard.clone(),
        ))
    }

    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        let config = guard_of(stores)?.config();
        let client = testing::raw_client(&config.url)
            .await
            .map_err(|e| Error::backend("raw client", Some(Box::new(e))))?;
        let s = format!("\"{}\"", config.schema);
        let blob = client
            .query_opt(
                &format!("SELECT blob_id FROM {s}.artifacts WHERE run_id = $1 AND phase = $2 AND path = $3"),
                &[&key.run_id.as_str(), &key.phase.as_str(), &key.path.as_str()],
            )
            .await
            .map_err(|e| Error::backend("tamper", Some(Box::new(e))))?
            .ok_or_else(|| Error::not_found(format!("artifact {key}")))?
            .get::<_, i64>(0);
        // Flip the first byte of the first chunk; an empty artifact gets one.
        let changed = client
            .execute(
                &format!(
                    "UPDATE {s}.blob_chunks SET data = set_byte(data, 0, get_byte(data, 0) # 255)
                     WHERE blob_id = $1 AND idx = 0"
                ),
                &[&blob],
            )
            .await
            .map_err(|e| Error::backend("tamper", Some(Box::new(e))))?;
        if changed == 0 {
            client
                .execute(
                    &format!(
                        "INSERT INTO {s}.blob_chunks (blob_id, idx, data) VALUES ($1, 0, '\\x00')"
                    ),
                    &[&blob],
                )
                .await
                .map_err(|e| Error::backend("tamper", Some(Box::new(e))))?;
        }
        Ok(())
    }
}

/// The factory, or `None` after printing loudly that there is no server
/// (which panics instead under `RUNSTORE_REQUIRE_PG=1`).
fn factory() -> Option<PgFactory> {
    match testing::test_server_blocking() {
        Some(server) => Some(PgFactory {
            url: server.url().to_string(),
        }),
        None => {
            testing::no_server(
                "conformance suite",
                &testing::why_no_server().unwrap_or_else(|| "no server".into()),
            );
            None
        }
    }
}

mod conformance {
    use super::factory;
    // Each generated test returns early (after the loud message) when there
    // is no server and RUNSTORE_REQUIRE_PG is not set.
    runstore_conformance::conformance_tests!(match factory() {
        Some(f) => f,
        None => return,
    });
}
