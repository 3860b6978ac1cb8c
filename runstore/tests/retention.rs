//! Retention: policy parsing, the prune pipeline on the memory reference
//! (against a model, as a property), dry runs, archives and workflow deletes.

use std::collections::BTreeSet;

use proptest::prelude::*;
use runstore::config::parse_policy;
use runstore::retention::{
    ArtifactRetention, OutcomeSelector, RetentionDuration, RetentionPolicy, RetentionRule,
};
use runstore::retention::{PruneOptions, delete_workflow_version, prune};
use runstore::{
    ArtifactKey, ArtifactQuery, ArtifactStoreExt, Config, ErrorKind, ExecutionMetric, NewEvent,
    PutOptions, Run, RunId, RunStatus, StoreSet, Timestamp, Version, WorkflowDefinition,
    WorkflowId, memory,
};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_micros(1_700_000_000_000_000 + secs * 1_000_000).unwrap()
}

fn run(id: &str, wf: &str, status: RunStatus, start: i64, end: i64) -> Run {
    let mut r = Run::new(WorkflowId::new(wf).unwrap(), Version::FIRST);
    r.id = RunId::new(id).unwrap();
    r.started_at = at(start);
    r.status = status;
    r.ended_at = status.is_terminal().then(|| at(end));
    r
}

/// Stores a run with two events, a metric and an artifact.
async fn seed(stores: &StoreSet, r: &Run) {
    stores.logs.create_run(r.clone()).await.unwrap();
    stores
        .logs
        .append_events(
            &r.id,
            vec![
                NewEvent::new("a", serde_json::json!({})),
                NewEvent::new("b", serde_json::json!({})),
            ],
        )
        .await
        .unwrap();
    if r.status.is_terminal() {
        stores
            .metrics
            .record(ExecutionMetric {
                run_id: r.id.clone(),
                workflow_id: r.workflow_id.clone(),
                workflow_version: r.workflow_version,
                status: r.status,
                duration_micros: 5,
                recorded_at: r.started_at,
                counters: Default::default(),
                values: Default::default(),
            })
            .await
            .unwrap();
    }
    stores
        .artifacts
        .put_bytes(&key(&r.id), b"0123456789".to_vec(), PutOptions::default())
        .await
        .unwrap();
}

fn key(id: &RunId) -> ArtifactKey {
    ArtifactKey::parse(id.as_str(), "build", "out.txt").unwrap()
}

async fn remaining(stores: &StoreSet) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = stores
            .logs
            .query_runs(
                runstore::RunQuery::default()
                    .with_limit(100)
                    .with_cursor(cursor),
            )
            .await
            .unwrap();
        out.extend(page.items.iter().map(|r| r.id.to_string()));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out
}

/// The model: each run decided from the whole set at once.
fn model_kept(runs: &[Run], policy: &RetentionPolicy, now: Timestamp) -> BTreeSet<String> {
    let mut kept = BTreeSet::new();
    for r in runs {
        let mut selected = false;
        let mut keep = !r.status.is_terminal();
        for rule in &policy.rules {
            if !r.status.is_terminal() || !rule.selects(r) {
                continue;
            }
            selected = true;
            let newer = runs
                .iter()
                .filter(|o| rule.selects(o) && o.workflow_id == r.workflow_id)
                .filter(|o| (o.started_at, o.id.as_str()) > (r.started_at, r.id.as_str()))
                .count() as u64;
            let young = rule.max_age.is_some_and(|age| {
                r.ended_at.unwrap().as_micros() > now.as_micros() - age.as_secs() as i64 * 1_000_000
            });
            if young || rule.keep_last.is_some_and(|n| newer < n) {
                keep = true;
            }
        }
        if keep || !selected {
            kept.insert(r.id.to_string());
        }
    }
    kept
}

fn status_of(n: u8) -> RunStatus {
    RunStatus::ALL[n as usize % 5]
}

fn rule_strategy() -> impl Strategy<Value = RetentionRule> {
    (
        0u8..4,
        0u8..3,
        prop::option::of(1u64..1500),
        prop::option::of(0u64..4),
    )
        .prop_map(|(o, w, age, last)| {
            let outcome = [
                OutcomeSelector::Succeeded,
                OutcomeSelector::Failed,
                OutcomeSelector::Cancelled,
                OutcomeSelector::Any,
            ][o as usize];
            let mut rule = RetentionRule::new(outcome);
            if w > 0 {
                rule = rule.with_workflow(WorkflowId::new(["", "a", "b"][w as usize]).unwrap());
            }
            match (age, last) {
                (None, None) => rule.with_keep_last(1),
                (a, l) => {
                    if let Some(a) = a {
                        rule = rule.with_max_age(RetentionDuration::from_secs(a).unwrap());
                    }
                    if let Some(l) = l {
                        rule = rule.with_keep_last(l);
                    }
                    rule
                }
            }
        })
}

/// Seeds `specs` as runs, prunes them by `rules` (a dry run first, then a
/// real one, then again) and compares with the model.
fn check_prune(specs: &[(u8, u8, i64, i64)], rules: Vec<RetentionRule>, page: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stores = memory::store_set();
        let runs: Vec<Run> = specs
            .iter()
            .enumerate()
            .map(|(i, (w, s, start, len))| {
                run(
                    &format!("r{i:02}"),
                    ["a", "b"][*w as usize],
                    status_of(*s),
                    start * 10,
                    start * 10 + len * 10,
                )
            })
            .collect();
        for r in &runs {
            seed(&stores, r).await;
        }
        let policy = RetentionPolicy::new(rules);
        let now = at(1000);
        let expected = model_kept(&runs, &policy, now);
        let dry = prune(
            &stores,
            &policy,
            PruneOptions::default()
                .dry_run(true)
                .now(now)
                .page_size(page),
            |_| {},
        )
        .await
        .unwrap();
        let all: BTreeSet<String> = runs.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(remaining(&stores).await, all, "a dry run deletes nothing");
        let report = prune(
            &stores,
            &policy,
            PruneOptions::default().now(now).page_size(page),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(remaining(&stores).await, expected);
        let pruned = (all.len() - expected.len()) as u64;
        assert_eq!(report.total().runs, pruned);
        assert_eq!(
            dry.total().runs,
            pruned,
            "the dry run reports what the prune does"
        );
        assert_eq!(report.total().events, 2 * pruned);
        assert_eq!(report.total().metrics, pruned);
        assert_eq!(report.total().bytes, 10 * pruned);
        for r in &runs {
            if expected.contains(r.id.as_str()) {
                continue;
            }
            assert_eq!(
                stores.metrics.get(&r.id).await.unwrap_err().kind(),
                ErrorKind::NotFound
            );
            assert_eq!(
                stores.artifacts.head(&key(&r.id)).await.unwrap_err().kind(),
                ErrorKind::NotFound
            );
        }
        // Run again: nothing more to do.
        let again = prune(
            &stores,
            &policy,
            PruneOptions::default().now(now).page_size(page),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(again.total().runs, 0);
    });
}

/// Rules by age only (no `keep_last`): the prune reads only runs that
/// ended before the shortest age, which must not change the decision.
fn age_rule_strategy() -> impl Strategy<Value = RetentionRule> {
    (0u8..4, 0u8..3, 1u64..1200).prop_map(|(o, w, age)| {
        let mut rule = RetentionRule::new(
            [
                OutcomeSelector::Succeeded,
                OutcomeSelector::Failed,
                OutcomeSelector::Cancelled,
                OutcomeSelector::Any,
            ][o as usize],
        )
        .with_max_age(RetentionDuration::from_secs(age).unwrap());
        if w > 0 {
            rule = rule.with_workflow(WorkflowId::new(["", "a", "b"][w as usize]).unwrap());
        }
        rule
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// For random runs and policies, the runs a prune keeps are the
    /// model's, and the pruned ones lose events, metric and artifacts.
    #[test]
    fn prune_keeps_what_the_model_keeps(
        specs in prop::collection::vec((0u8..2, 0u8..5, 0i64..60, 0i64..40), 0..25),
        rules in prop::collection::vec(rule_strategy(), 0..4),
        page in 1usize..6,
    ) {
        check_prune(&specs, rules, page);
    }

    /// The same with policies of age rules only.
    #[test]
    fn prune_by_age_only_keeps_what_the_model_keeps(
        specs in prop::collection::vec((0u8..2, 0u8..5, 0i64..60, 0i64..40), 0..25),
        rules in prop::collection::vec(age_rule_strategy(), 0..4),
        page in 1usize..6,
    ) {
        check_prune(&specs, rules, page);
    }
}

#[tokio::test]
async fn interrupted_prune_is_finished_by_the_next() {
    let stores = memory::store_set();
    let runs: Vec<Run> = (0..6)
        .map(|i| {
            run(
                &format!("r{i}"),
                "a",
                RunStatus::Succeeded,
                i * 10,
                i * 10 + 5,
            )
        })
        .collect();
    for r in &runs {
        seed(&stores, r).await;
    }
    // A prune that stopped after the artifacts and metrics of two runs.
    for r in &runs[..2] {
        stores.artifacts.delete_run_artifacts(&r.id).await.unwrap();
        stores.metrics.delete(&r.id).await.unwrap();
    }
    let policy = RetentionPolicy::new(vec![
        RetentionRule::new(OutcomeSelector::Any).with_max_age("90s".parse().unwrap()),
    ]);
    let report = prune(
        &stores,
        &policy,
        PruneOptions::default().now(at(1000)),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.total().runs, 6);
    assert_eq!(
        report.total().metrics,
        4,
        "metrics already gone count as done"
    );
    assert!(remaining(&stores).await.is_empty());
}

#[tokio::test]
async fn archive_copies_then_deletes_and_a_failed_archive_deletes_nothing() {
    let stores = memory::store_set();
    let def = WorkflowDefinition::new(
        WorkflowId::new("a").unwrap(),
        Version::FIRST,
        serde_json::json!({}),
    );
    stores.workflows.store(def).await.unwrap();
    for i in 0..3 {
        seed(
            &stores,
            &run(&format!("r{i}"), "a", RunStatus::Failed, i, i + 1),
        )
        .await;
    }
    let policy = RetentionPolicy::new(vec![
        RetentionRule::new(OutcomeSelector::Failed).with_keep_last(1),
    ]);
    let archive = memory::store_set();
    let report = prune(
        &stores,
        &policy,
        PruneOptions::default()
            .now(at(1000))
            .archive_to(archive.clone()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.total().archived, 2);
    assert_eq!(remaining(&stores).await, BTreeSet::from(["r2".to_string()]));
    assert_eq!(
        remaining(&archive).await,
        BTreeSet::from(["r0".to_string(), "r1".to_string()])
    );
    let (_, bytes) = archive
        .artifacts
        .get_bytes(&key(&RunId::new("r0").unwrap()))
        .await
        .unwrap();
    assert_eq!(bytes, b"0123456789");
    archive
        .metrics
        .get(&RunId::new("r1").unwrap())
        .await
        .unwrap();

    // An archive that already holds r5 with other content: Conflict, and
    // the source keeps everything.
    let src = memory::store_set();
    let doomed = run("r5", "a", RunStatus::Failed, 1, 2);
    seed(&src, &doomed).await;
    let clash = memory::store_set();
    let mut other = doomed.clone();
    other.trigger = "schedule".into();
    clash.logs.create_run(other).await.unwrap();
    let policy = RetentionPolicy::new(vec![
        RetentionRule::new(OutcomeSelector::Any).with_keep_last(0),
    ]);
    let err = prune(
        &src,
        &policy,
        PruneOptions::default().archive_to(clash),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(remaining(&src).await, BTreeSet::from(["r5".to_string()]));
    src.artifacts.head(&key(&doomed.id)).await.unwrap();
    src.metrics.get(&doomed.id).await.unwrap();
    let left = src
        .artifacts
        .list(ArtifactQuery::run(doomed.id.clone()))
        .await
        .unwrap();
    assert_eq!(left.items.len(), 1);
}

#[tokio::test]
async fn keep_artifacts_policy_leaves_them() {
    let stores = memory::store_set();
    let r = run("r1", "a", RunStatus::Succeeded, 1, 2);
    seed(&stores, &r).await;
    let policy = RetentionPolicy::new(vec![
        RetentionRule::new(OutcomeSelector::Any).with_keep_last(0),
    ])
    .with_artifacts(ArtifactRetention::Keep);
    let report = prune(&stores, &policy, PruneOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!((report.total().runs, report.total().artifacts), (1, 0));
    stores.artifacts.head(&key(&r.id)).await.unwrap();
}

#[tokio::test]
async fn workflow_delete_refuses_while_runs_exist_unless_forced() {
    let stores = memory::store_set();
    let id = WorkflowId::new("a").unwrap();
    stores
        .workflows
        .store(WorkflowDefinition::new(
            id.clone(),
            Version::FIRST,
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    seed(&stores, &run("r1", "a", RunStatus::Succeeded, 1, 2)).await;
    let err = delete_workflow_version(&stores, &id, Version::FIRST, false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("1 stored run"), "{err}");
    delete_workflow_version(&stores, &id, Version::FIRST, true)
        .await
        .unwrap();
    let err = delete_workflow_version(&stores, &id, Version::FIRST, true)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn retention_section_and_policy_file_parse_with_locations() {
    let yaml = "\
storage:
  workflows: { type: memory }
  logs: { type: memory }
  metrics: { type: memory }
  artifacts: { type: memory }
retention:
  artifacts: keep
  rules:
    - { outcome: failed, max_age: 90d }
    - { outcome: any, max_age: 30d, keep_last: 100 }
    - { workflow: nightly-etl, outcome: succeeded, keep_last: 10 }
";
    let config = Config::from_yaml_str(yaml).unwrap();
    let policy = config.retention.unwrap();
    assert_eq!(policy.rules.len(), 3);
    assert_eq!(policy.artifacts, ArtifactRetention::Keep);
    assert_eq!(policy.rules[1].keep_last, Some(100));
    assert_eq!(policy.rules[0].max_age.unwrap().as_secs(), 90 * 86_400);

    let file = "retention:\n  rules:\n    - { outcome: failed, max_age: 3w }\n";
    let err = parse_policy(file, "policy.yaml").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(msg.contains("policy.yaml line 3"), "{msg}");
    assert!(msg.contains("30d"), "{msg}");
    let err = parse_policy("retention:\n  rulez: []\n", "p.yaml").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = parse_policy("retention:\n  rules:\n    - { outcome: any }\n", "p.yaml").unwrap_err();
    assert!(err.to_string().contains("max_age, keep_last"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_task_prunes_every_interval_and_stops() {
    use runstore::retention::RetentionTask;
    let stores = memory::store_set();
    for i in 0..3 {
        seed(
            &stores,
            &run(&format!("r{i}"), "a", RunStatus::Succeeded, i, i + 1),
        )
        .await;
    }
    let policy = RetentionPolicy::new(vec![
        RetentionRule::new(OutcomeSelector::Any).with_keep_last(1),
    ]);
    let task = RetentionTask::spawn(
        stores.clone(),
        policy,
        std::time::Duration::from_millis(20),
        PruneOptions::default(),
    );
    let wait_for = |want: u64| {
        let task = &task;
        async move {
            for _ in 0..500 {
                if task.stats().runs_pruned >= want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the task did not prune {want} runs: {:?}", task.stats());
        }
    };
    wait_for(2).await;
    assert_eq!(remaining(&stores).await, BTreeSet::from(["r2".to_string()]));
    // New runs are pruned by a later pass.
    seed(&stores, &run("r9", "a", RunStatus::Failed, 100, 101)).await;
    wait_for(3).await;
    assert_eq!(remaining(&stores).await, BTreeSet::from(["r9".to_string()]));
    let stats = tokio::time::timeout(std::time::Duration::from_secs(5), task.stop())
        .await
        .expect("stop returns promptly");
    assert!(stats.passes >= 2, "{stats:?}");
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.runs_pruned, 3);
    // Stopped: a new prunable run stays.
    seed(&stores, &run("r10", "a", RunStatus::Failed, 200, 201)).await;
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    assert_eq!(remaining(&stores).await.len(), 2);
}

#[tokio::test]
async fn delivery_age_forgets_old_delivery_ids() {
    let stores = memory::store_set();
    for id in ["hook-1", "hook-2"] {
        assert!(stores.logs.record_delivery(id).await.unwrap().inserted);
    }
    let policy = RetentionPolicy::new(Vec::new()).with_delivery_age("1d".parse().unwrap());
    let later = runstore::Timestamp::now().saturating_add_micros(2 * 86_400 * 1_000_000);
    // Too young now; a dry run forgets nothing even when old enough.
    let now = prune(&stores, &policy, PruneOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(now.deliveries, 0);
    let dry = prune(
        &stores,
        &policy,
        PruneOptions::default().dry_run(true).now(later),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(dry.deliveries, 0);
    assert!(
        !stores
            .logs
            .record_delivery("hook-1")
            .await
            .unwrap()
            .inserted
    );
    let real = prune(&stores, &policy, PruneOptions::default().now(later), |_| {})
        .await
        .unwrap();
    assert_eq!(real.deliveries, 2);
    assert!(
        stores
            .logs
            .record_delivery("hook-1")
            .await
            .unwrap()
            .inserted
    );
    // The policy file form.
    let parsed = parse_policy(
        "retention:\n  deliveries: 30d\n  rules: []\n",
        "policy.yaml",
    )
    .unwrap();
    assert_eq!(parsed.deliveries, Some("30d".parse().unwrap()));
}
