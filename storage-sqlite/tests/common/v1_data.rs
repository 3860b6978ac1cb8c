//! The deterministic content of the schema-v1 fixture (tests/fixtures/v1.db),
//! shared by its generator (examples/make_fixture.rs) and the migration test.

use runstore_core::{
    ArtifactKey, ExecutionMetric, JsonMap, NewEvent, Pattern, PatternId, Run, RunId, RunStatus,
    RunUpdate, Timestamp, Version, WorkflowDefinition, WorkflowId,
};
use serde_json::json;

pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_micros(1_767_225_600_000_000 + secs * 1_000_000 + 123).unwrap()
}

pub fn workflows() -> Vec<WorkflowDefinition> {
    let id = WorkflowId::new("etl").unwrap();
    vec![
        WorkflowDefinition::new(id.clone(), Version::FIRST, json!({"steps": ["a"]}))
            .with_description("first")
            .with_created_at(t(1)),
        WorkflowDefinition::new(
            id,
            Version::new(2).unwrap(),
            json!({"steps": ["a", "b"], "x": 1.5}),
        )
        .with_parent(Version::FIRST)
        .with_created_at(t(2)),
    ]
}

pub fn runs() -> Vec<Run> {
    (0..3)
        .map(|i| {
            let mut attributes = JsonMap::new();
            attributes.insert("i".into(), json!(i));
            Run {
                id: RunId::new(format!("run-{i}")).unwrap(),
                workflow_id: WorkflowId::new("etl").unwrap(),
                workflow_version: Version::new(1 + (i % 2)).unwrap(),
                status: RunStatus::Pending,
                trigger: "schedule".into(),
                started_at: t(10 + i64::from(i)),
                ended_at: None,
                attributes,
                summaries: JsonMap::new(),
                external_key: None,
            }
        })
        .collect()
}

pub fn finish() -> RunUpdate {
    RunUpdate::finished(RunStatus::Succeeded, t(100))
}

pub fn events(run: u32) -> Vec<NewEvent> {
    (0..4)
        .map(|i| {
            let e = NewEvent::new("step", json!({"run": run, "i": i})).with_at(t(20 + i));
            if i == 0 {
                e.with_idempotency_key("first")
            } else {
                e
            }
        })
        .collect()
}

pub fn metrics() -> Vec<ExecutionMetric> {
    runs()
        .iter()
        .enumerate()
        .map(|(i, r)| ExecutionMetric {
            run_id: r.id.clone(),
            workflow_id: r.workflow_id.clone(),
            workflow_version: r.workflow_version,
            status: RunStatus::Succeeded,
            duration_micros: 1000 * (i as u64 + 1),
            recorded_at: t(200 + i as i64),
            counters: [("steps".to_string(), 3)].into_iter().collect(),
            values: [("cost".to_string(), 0.1 * (i as f64 + 1.0))]
                .into_iter()
                .collect(),
        })
        .collect()
}

pub fn pattern() -> Pattern {
    Pattern {
        id: PatternId::new("slow-a").unwrap(),
        workflow_id: WorkflowId::new("etl").unwrap(),
        kind: "slow_step".into(),
        description: "a is slow".into(),
        data: json!({"step": "a"}),
        confidence: 0.5,
        evidence: vec![RunId::new("run-0").unwrap()],
        detected_at: t(300),
    }
}

pub fn artifact_key() -> ArtifactKey {
    ArtifactKey::parse("run-0", "build", "out/report.txt").unwrap()
}

/// Spans two chunks, so the fixture holds a multi-chunk blob.
pub fn artifact_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

/// Writes the whole content through the traits.
pub async fn write_all(store: &runstore_sqlite::SqliteStore) {
    use runstore_core::{
        ArtifactStoreExt, LogRepository, MetricsRepository, PutOptions, WorkflowRepository,
    };
    for d in workflows() {
        store.store(d).await.unwrap();
    }
    for (i, r) in runs().into_iter().enumerate() {
        let id = r.id.clone();
        store.create_run(r).await.unwrap();
        store.append_events(&id, events(i as u32)).await.unwrap();
        if i < 2 {
            store.update_status(&id, finish()).await.unwrap();
        }
    }
    store.record_many(metrics()).await.unwrap();
    store.upsert_pattern(pattern()).await.unwrap();
    store
        .put_bytes(
            &artifact_key(),
            artifact_bytes(),
            PutOptions::default()
                .content_type("text/plain")
                .created_by("fixture")
                .created_at(t(400)),
        )
        .await
        .unwrap();
}
