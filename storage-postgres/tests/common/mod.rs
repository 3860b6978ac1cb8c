//! Helpers shared by this crate's integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use runstore_postgres::testing::{self, TestSchema};
use runstore_postgres::{PostgresConfig, PostgresStore};

/// A store on a fresh schema, or `None` after the loud "did not run"
/// message (a panic under RUNSTORE_REQUIRE_PG=1).
pub async fn store(test: &str) -> Option<(PostgresStore, TestSchema)> {
    let config = config(test).await?;
    let guard = TestSchema::new(config.clone());
    let store = PostgresStore::open(config)
        .await
        .expect("connecting to the test server");
    Some((store, guard))
}

/// A config on a fresh schema, or `None` as for [`store`].
pub async fn config(test: &str) -> Option<PostgresConfig> {
    testing::server_or_skip(test).await?;
    testing::test_config().await
}
