//! A store opened read-only (`SqliteConfig::read_only`): nothing created,
//! migrated or written; every write refused with `InvalidInput`.

mod common;

use runstore_core::{
    ArtifactKey, ArtifactPath, ArtifactStoreExt, ErrorKind, ExecutionMetric, LogRepository,
    LogRepositoryExt, MetricsRepository, NewEvent, Phase, PutOptions, Run, RunStatus, RunUpdate,
    Timestamp, Version, WorkflowId,
};
use std::time::Duration;

use runstore_core::LeaseRequest;
use runstore_sqlite::{SqliteConfig, SqliteStore};

fn run() -> Run {
    Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST)
}

#[tokio::test]
async fn a_missing_file_is_not_found_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/runstore.db");
    let err = SqliteStore::open(SqliteConfig::new(&path).with_read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("runstore.db"), "{err}");
    assert!(!dir.path().join("sub").exists());
}

#[tokio::test]
async fn reads_work_and_every_write_is_refused_leaving_the_file_unchanged() {
    let (_dir, path, store) = common::fresh().await;
    let r = run();
    store.create_run(r.clone()).await.unwrap();
    store
        .append_event(&r.id, NewEvent::new("step", serde_json::json!({"n": 1})))
        .await
        .unwrap();
    drop(store);
    let before = std::fs::read(&path).unwrap();

    let ro = SqliteStore::open(SqliteConfig::new(&path).with_read_only(true))
        .await
        .unwrap();
    assert_eq!(ro.get_run(&r.id).await.unwrap().id, r.id);
    assert_eq!(ro.all_events(&r.id).await.unwrap().len(), 1);

    let mut finished = r.clone();
    finished.status = RunStatus::Succeeded;
    finished.ended_at = Some(Timestamp::now());
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
        ro.put_bytes(
            &ArtifactKey::new(
                r.id.clone(),
                Phase::new("build").unwrap(),
                ArtifactPath::new("out.txt").unwrap(),
            ),
            b"x".to_vec(),
            PutOptions::default(),
        )
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
        assert!(err.to_string().contains("read-only"), "write {i}: {err}");
    }
    drop(ro);
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the database changed"
    );
}

#[tokio::test]
async fn an_older_schema_is_refused_not_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1.db"),
        &path,
    )
    .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(SqliteConfig::new(&path).with_read_only(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("older"), "{err}");
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the database changed"
    );
}
