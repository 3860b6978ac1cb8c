//! A store opened read-only (`PostgresConfig::read_only`): no schema
//! created or migrated, every write refused with `InvalidInput` at once
//! (not retried as a replica's refusal would be).

mod common;

use std::time::{Duration, Instant};

use runstore_core::{
    ErrorKind, ExecutionMetric, LeaseRequest, LogRepository, LogRepositoryExt, MetricsRepository,
    NewEvent, Run, RunStatus, RunUpdate, Timestamp, Version, WorkflowId,
};
use runstore_postgres::PostgresStore;
use runstore_postgres::testing::TestSchema;

fn run() -> Run {
    Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST)
}

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
    let r = run();
    store.create_run(r.clone()).await.unwrap();
    store
        .append_event(&r.id, NewEvent::new("step", serde_json::json!({"n": 1})))
        .await
        .unwrap();
    let ro = PostgresStore::open(store.config().clone().with_read_only(true))
        .await
        .unwrap();
    assert!(format!("{:?}", ro.config()).contains("read_only: true"));
    assert_eq!(ro.get_run(&r.id).await.unwrap().id, r.id);
    assert_eq!(ro.all_events(&r.id).await.unwrap().len(), 1);

    let mut finished = r.clone();
    finished.status = RunStatus::Succeeded;
    finished.ended_at = Some(Timestamp::now());
    let started = Instant::now();
    let refused = [
        ro.create_run(run()).await.map(|_| ()),
        ro.append_event(&r.id, NewEvent::new("step", serde_json::json!({})))
            .await
            .map(|_| ()),
        ro.update_status(
            &r.id,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
        )
        .await
        .map(|_| ()),
        ro.record(ExecutionMetric::from_run(&finished).unwrap())
            .await
            .map(|_| ()),
        ro.delete_run(&r.id).await.map(|_| ()),
        ro.acquire_lease(LeaseRequest::new("leader", "me", Duration::from_secs(5)))
            .await
            .map(|_| ()),
    ];
    for (i, result) in refused.into_iter().enumerate() {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "write {i}: {err}");
        assert!(!err.is_retryable(), "write {i}: {err}");
        assert!(err.to_string().contains("read-only"), "write {i}: {err}");
    }
    // Refused on the first attempt: far below one operation timeout (30 s).
    assert!(started.elapsed() < Duration::from_secs(20));
    // Nothing changed.
    assert_eq!(store.all_events(&r.id).await.unwrap().len(), 1);
    assert_eq!(store.get_run(&r.id).await.unwrap().status, r.status);
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
