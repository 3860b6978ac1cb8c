//! The conformance suite's factory for PostgreSQL ([`PgFactory`], a fresh
//! schema per rule) and [`tamper`], which changes an artifact's stored bytes
//! behind the store's back; every crate's tests use these.

use std::sync::Arc;

use runstore_conformance::{Capabilities, Capability, StoreFactory, TestStores};
use runstore_core::{ArtifactKey, Error, Result};

use super::{TestSchema, raw_client, unique_schema};
use crate::{PostgresConfig, PostgresStore};

/// Flips the first byte of an artifact's first chunk in the schema of
/// `config`, or gives an empty artifact a chunk of one byte, in one
/// statement; its recorded hash is left as it was.
pub async fn tamper(config: &PostgresConfig, key: &ArtifactKey) -> Result<()> {
    let client = raw_client(&config.url)
        .await
        .map_err(|e| Error::backend("raw client", Some(Box::new(e))))?;
    let s = format!("\"{}\"", config.schema);
    let sql = format!(
        "INSERT INTO {s}.blob_chunks AS c (blob_id, idx, data)
         SELECT blob_id, 0, '\\x00'::bytea FROM {s}.artifacts
          WHERE run_id = $1 AND phase = $2 AND path = $3
         ON CONFLICT (blob_id, idx) DO UPDATE SET data = CASE
           WHEN length(c.data) = 0 THEN '\\x00'::bytea
           ELSE set_byte(c.data, 0, get_byte(c.data, 0) # 255) END"
    );
    let changed = client
        .execute(
            &sql,
            &[
                &key.run_id.as_str(),
                &key.phase.as_str(),
                &key.path.as_str(),
            ],
        )
        .await
        .map_err(|e| Error::backend("tamper", Some(Box::new(e))))?;
    if changed == 0 {
        return Err(Error::not_found(format!("artifact {key}")));
    }
    Ok(())
}

/// Makes a store on a fresh schema of the server at `url` for each rule.
#[derive(Debug, Clone)]
pub struct PgFactory {
    /// The server's URL (from [`super::test_server`]).
    pub url: String,
}

/// What keeps a rule's schema alive, and how to find it again.
struct Guard {
    schema: TestSchema,
}

fn guard_of(stores: &TestStores) -> Result<&Guard> {
    stores.guard_as("postgres")
}

#[async_trait::async_trait]
impl StoreFactory for PgFactory {
    fn name(&self) -> String {
        "postgres".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with(Capability::SharedStorage)
            .with(Capability::TamperArtifacts)
    }

    async fn create(&self) -> Result<TestStores> {
        let config = PostgresConfig::new(&self.url).with_schema(unique_schema());
        let schema = TestSchema::new(config.clone());
        let store = PostgresStore::open(config).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            Arc::new(Guard { schema }),
        ))
    }

    async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
        let config = guard_of(stores)?.schema.config().clone();
        // A second pool on the same schema, as a second process would open it.
        let store = PostgresStore::open(config).await?;
        Ok(TestStores::with_guard(
            store.store_set(),
            stores.guard.clone(),
        ))
    }

    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        tamper(guard_of(stores)?.schema.config(), key).await
    }
}
