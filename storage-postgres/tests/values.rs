//! Values that are valid but awkward come back exactly as written: JSON
//! numbers at the edges, key order, unicode, quotes and SQL in text,
//! extreme floats in metrics, and times at the ends of the range.

mod common;

use std::collections::BTreeMap;

use runstore_core::{
    ArtifactKey, ArtifactStore, ArtifactStoreExt, EventQuery, ExecutionMetric, JsonMap,
    LogRepository, MetricsRepository, NewEvent, Pattern, PatternId, PutOptions, Run, RunId,
    RunStatus, Timestamp, Version, WorkflowDefinition, WorkflowId, WorkflowRepository,
};
use serde_json::json;

fn awkward() -> serde_json::Value {
    json!({
        "big": u64::MAX,
        "small": i64::MIN,
        "float": 1.0000000000000002,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "neg_zero": -0.0,
        "text": "quote ' double \" backslash \\ tab \t newline \n ; DROP TABLE runs; --",
        "unicode": "héllo wörld ✓ 🦀 \u{10FFFF}",
        "z": [1, "two", null, true, {"b": 2, "a": 1}],
        "A": {},
        "é": []
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_values_round_trip_exactly() {
    let Some((store, _guard)) = common::store("values::awkward_values_round_trip_exactly").await
    else {
        return;
    };
    let value = awkward();
    let text = serde_json::to_string(&value).unwrap();

    let def = WorkflowDefinition::new(
        WorkflowId::new("wf.x-Y_1").unwrap(),
        Version::FIRST,
        value.clone(),
    )
    .with_description("line one\nline two ✓ '; --")
    .with_created_at(Timestamp::MIN);
    store.store(def.clone()).await.unwrap();
    let got = WorkflowRepository::get(&store, &def.id, def.version)
        .await
        .unwrap();
    assert_eq!(got, def);
    assert_eq!(serde_json::to_string(&got.body).unwrap(), text);
    assert_eq!(got.content_hash(), def.content_hash());

    let mut run = Run::new(def.id.clone(), Version::FIRST);
    run.trigger = "web hook ✓ '\"".into();
    run.started_at = Timestamp::MIN;
    run.status = RunStatus::Failed;
    run.ended_at = Some(Timestamp::MAX);
    let mut attrs = JsonMap::new();
    attrs.insert("v".into(), value.clone());
    run.attributes = attrs.clone();
    run.summaries = attrs;
    store.create_run(run.clone()).await.unwrap();
    let got = store.get_run(&run.id).await.unwrap();
    assert_eq!(got, run);
    assert_eq!(serde_json::to_string(&got.attributes["v"]).unwrap(), text);

    store
        .append_event(
            &run.id,
            NewEvent::new("kind ✓ '", value.clone()).with_idempotency_key("key '\" ✓"),
        )
        .await
        .unwrap();
    let events = store
        .list_events(&run.id, EventQuery::default())
        .await
        .unwrap()
        .items;
    assert_eq!(serde_json::to_string(&events[0].payload).unwrap(), text);
    assert_eq!(events[0].idempotency_key.as_deref(), Some("key '\" ✓"));

    let metric = ExecutionMetric {
        run_id: run.id.clone(),
        workflow_id: def.id.clone(),
        workflow_version: Version::new(i32::MAX as u32).unwrap(),
        status: RunStatus::Cancelled,
        duration_micros: i64::MAX as u64,
        recorded_at: Timestamp::MAX,
        counters: BTreeMap::from([("min".into(), i64::MIN), ("max".into(), i64::MAX)]),
        values: BTreeMap::from([
            ("max".into(), f64::MAX),
            ("min".into(), f64::MIN),
            ("tiny".into(), f64::MIN_POSITIVE),
            ("sub".into(), 5e-324),
            ("neg_zero".into(), -0.0),
        ]),
    };
    store.record(metric.clone()).await.unwrap();
    let got = MetricsRepository::get(&store, &run.id).await.unwrap();
    assert_eq!(got, metric);
    assert!(got.values["neg_zero"].is_sign_negative());
    assert!(!store.record(metric.clone()).await.unwrap().inserted);

    let pattern = Pattern {
        id: PatternId::new("p-1").unwrap(),
        workflow_id: def.id.clone(),
        kind: "slow ✓".into(),
        description: "tabs\tand\nlines".into(),
        data: value.clone(),
        confidence: 0.1 + 0.2,
        evidence: vec![run.id.clone(), RunId::new("other").unwrap()],
        detected_at: Timestamp::MAX,
    };
    store.upsert_pattern(pattern.clone()).await.unwrap();
    assert_eq!(store.get_pattern(&pattern.id).await.unwrap(), pattern);

    let key = ArtifactKey::parse(
        run.id.as_str(),
        "phase",
        "dir with space/ünïcödé 'q' \"d\"/file;.txt",
    )
    .unwrap();
    let w = store
        .put_bytes(
            &key,
            vec![0, 255, 0, 10],
            PutOptions::default().content_type("text/plain; charset=utf-8"),
        )
        .await
        .unwrap();
    assert_eq!(store.head(&key).await.unwrap(), w.record);
}
