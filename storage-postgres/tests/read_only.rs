//! A store opened read-only (`PostgresConfig::read_only`): no schema
//! created or migrated, every write refused with `InvalidInput` at once
//! (not retried as a replica's refusal would be).

mod common;

use std::time::{Duration, Instant};

use runstore_core::{ErrorKind, LogRepository, LogRepositoryExt};
use runstore_postgres::PostgresStore;
use runstore_postgres::testing::TestSchema;

#[tokio::test]
async fn a_missing_schema_is_not_found_and_not_created() {
    let Some((store, _guard)) = common::store("read_only_missing_schema").await else {
        return;
    };
    let other = format!("{}_absent", store.config().schema);
    let config = store
        .config()
        .clone()
        .with_schema(&other)
        .with_read_only(true);
    let err = PostgresStore::open(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&other), "{err}");
    assert!(!store.schema_exists(&other).await.unwrap());
}

#[tokio::test]
async fn reads_work_and_every_write_is_refused_at_once() {
    let Some((store, _guard)) = common::store("read_only_writes_refused").await else {
        return;
    };
    let seeded = runstore_conformance::read_only::seed(&store.store_set())
        .await
        .unwrap();
    let ro = PostgresStore::open(store.config().clone().with_read_only(true))
        .await
        .unwrap();
    assert!(format!("{:?}", ro.config()).contains("read_only: true"));
    let started = Instant::now();
    runstore_conformance::read_only::every_write_refused(&ro.store_set(), &seeded)
        .await
        .unwrap();
    // Refused on the first attempt, not retried as a replica's refusal
    // would be: far below one operation timeout (30 s) per write.
    assert!(started.elapsed() < Duration::from_secs(20));
    // Nothing changed.
    assert_eq!(store.all_events(&seeded).await.unwrap().len(), 1);
    assert_eq!(
        store.get_run(&seeded).await.unwrap().status,
        runstore_core::RunStatus::Pending
    );
}

#[tokio::test]
async fn an_older_schema_is_refused_not_migrated() {
    let Some(config) = common::config("read_only_older_schema").await else {
        return;
    };
    let _guard = TestSchema::new(config.clone());
    let old = runstore_postgres::testing::connect_at_version(config.clone(), 1)
        .await
        .unwrap();
    let err = PostgresStore::open(config.clone().with_read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("older"), "{err}");
    assert_eq!(old.schema_version().await.unwrap(), 1);
}
