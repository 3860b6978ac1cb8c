//! Migration and verification between in-memory store sets: round trip,
//! idempotency, dry run, resumption after a crash, conflicts, and what
//! verify detects.

mod migrate_support;

use std::sync::{Arc, Mutex};

use migrate_support::*;
use runstore::memory::{self, MemoryArtifacts, MemoryLogs, MemoryMetrics, MemoryWorkflows};
use runstore::migrate::{
    Concern, DifferenceKind, MAX_WRITERS, MigrateOptions, MigrationProgress, OnConflict,
    VerifyOptions, migrate, verify,
};
use runstore::{
    ArtifactKey, ArtifactStoreExt, ErrorKind, ExecutionMetric, LogRepositoryExt, PatternId,
    PutOptions, RunStatus, RunWithEvents, StoreSet, WorkflowDefinition,
};
use serde_json::json;

fn opts() -> MigrateOptions {
    MigrateOptions::default()
        .batch_size(4)
        .metrics_per_batch(3)
        .max_events_per_batch(LONG_RUN_BATCH)
        .verify_options(VerifyOptions::default().page_size(3).deep(true))
}

async fn source() -> StoreSet {
    let s = memory::store_set();
    populate(&s).await;
    s
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, u64, Option<u64>)>>);

impl MigrationProgress for Recorder {
    fn on_progress(&self, concern: &str, done: u64, total: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push((concern.to_string(), done, total));
    }
}

#[tokio::test]
async fn round_trip_is_equal_and_a_second_run_changes_nothing() {
    let from = source().await;
    let to = memory::store_set();
    let progress = Arc::new(Recorder::default());
    let report = migrate(&from, &to, opts().progress(progress.clone()))
        .await
        .unwrap();
    let events = event_count(&from).await;
    assert_eq!(events, 135 + 4 + LONG_RUN_EVENTS);
    assert_eq!(report.workflows.copied, WORKFLOWS);
    assert_eq!(report.runs.copied, RUNS);
    assert_eq!(report.events.copied, events);
    assert_eq!(report.metrics.copied, METRICS);
    assert_eq!(report.patterns.copied, PATTERNS);
    assert_eq!(report.artifacts.copied, ARTIFACTS);
    assert!(report.artifact_bytes_copied > LARGE_ARTIFACT as u64);
    assert_eq!(report.conflict_count(), 0);
    let v = report.verify.as_ref().unwrap();
    assert!(v.is_equal(), "{:#?}", v.differences);
    assert!(v.deep);
    assert_eq!((v.runs.a, v.runs.b, v.runs.equal), (RUNS, RUNS, RUNS));
    assert_eq!(
        (v.events.a, v.events.b, v.events.equal),
        (events, events, events)
    );
    assert_eq!(v.artifacts.equal, ARTIFACTS);
    assert_eq!(v.workflows.digest_a, v.workflows.digest_b);
    assert!(report.is_complete());
    assert_same(&from, &to).await;

    // Progress: runs carry their total, and every concern reports.
    let seen = progress.0.lock().unwrap().clone();
    assert!(seen.contains(&("runs".to_string(), RUNS, Some(RUNS))));
    for c in [
        "workflows",
        "metrics",
        "patterns",
        "artifacts",
        "verify runs",
    ] {
        assert!(seen.iter().any(|(n, _, _)| n == c), "no progress for {c}");
    }

    // The report is serializable for --json.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["runs"]["copied"], json!(RUNS));
    assert_eq!(json["verify"]["difference_count"], json!(0));

    // Idempotent: nothing copied the second time, everything unchanged.
    let again = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!(
        again.workflows.copied + again.runs.copied + again.metrics.copied,
        0
    );
    assert_eq!(
        again.patterns.copied + again.artifacts.copied + again.events.copied,
        0
    );
    assert_eq!(again.runs.unchanged, RUNS);
    assert_eq!(again.events.unchanged, events);
    assert_eq!(again.artifacts.unchanged, ARTIFACTS);
    assert!(again.is_complete());
    assert_same(&from, &to).await;
}

#[tokio::test]
async fn dry_run_writes_nothing_and_says_what_it_would_copy() {
    let from = source().await;
    let to = memory::store_set();
    let report = migrate(&from, &to, opts().dry_run(true)).await.unwrap();
    assert!(report.dry_run);
    assert!(report.verify.is_none());
    assert_eq!(report.workflows.copied, WORKFLOWS);
    assert_eq!(report.runs.copied, RUNS);
    assert_eq!(report.events.copied, event_count(&from).await);
    assert_eq!(report.artifacts.copied, ARTIFACTS);
    assert!(!report.is_complete());
    let empty = verify(&memory::store_set(), &to, VerifyOptions::default())
        .await
        .unwrap();
    assert!(
        empty.is_equal(),
        "the dry run wrote: {:#?}",
        empty.differences
    );
    assert_eq!(empty.runs.b + empty.workflows.b + empty.artifacts.b, 0);
}

#[tokio::test]
async fn bad_options_are_invalid_input() {
    let s = memory::store_set();
    for (o, field) in [
        (opts().batch_size(0), "batch_size"),
        (opts().metrics_per_batch(0), "metrics_per_batch"),
        (opts().metrics_per_batch(10_001), "metrics_per_batch"),
        (opts().max_events_per_batch(10_001), "max_events_per_batch"),
        (opts().writers(0), "writers"),
        (opts().writers(MAX_WRITERS + 1), "writers"),
    ] {
        let err = migrate(&s, &s, o).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = verify(&s, &s, VerifyOptions::default().page_size(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Interrupts the migration after every possible number of writes, then
/// starts it again without the fault: the destination ends equal.
#[tokio::test]
async fn interrupted_after_any_write_then_resumed_is_equal() {
    // A smaller large artifact: this migrates the data set dozens of times.
    let from = memory::store_set();
    populate_with(&from, 256 * 1024).await;
    // Count the writes of a whole migration.
    let (counting, budget) = migrate_support::failing::wrap(&memory::store_set(), i64::MAX);
    migrate(&from, &counting, opts().verify(false))
        .await
        .unwrap();
    let total = budget.spent();
    // Bounded batches: the long run went in chunks, never whole.
    assert_eq!(budget.max_events_per_write(), LONG_RUN_BATCH as i64);
    assert!(total > 10, "expected many writes, got {total}");
    let mut resumed_large = false;
    for n in 0..total {
        let to = memory::store_set();
        let (faulty, b) = migrate_support::failing::wrap(&to, n);
        let err = migrate(&from, &faulty, opts().verify(false))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "after {n} writes");
        assert!(b.exhausted());
        let report = migrate(&from, &to, opts().verify_options(VerifyOptions::default()))
            .await
            .unwrap();
        assert!(report.is_complete(), "after {n} writes: {report:#?}");
        resumed_large |= report.runs_resumed > 0;
        assert_same(&from, &to).await;
    }
    // Some interruption fell inside the chunked import of the long run.
    assert!(resumed_large);
}

#[tokio::test]
async fn conflicting_destination_is_reported_and_left_untouched() {
    let from = source().await;
    let to = memory::store_set();
    // The destination holds other content under keys of the source.
    let other_wf = WorkflowDefinition::new(wid("etl"), v(1), json!({"steps": ["other"]}));
    to.workflows.store(other_wf.clone()).await.unwrap();
    let mut other_run = from.logs.get_run(&rid("run-2-0")).await.unwrap();
    other_run.trigger = "manual".into();
    to.logs
        .import_runs(vec![RunWithEvents {
            run: other_run.clone(),
            events: vec![],
        }])
        .await
        .unwrap();
    // Same record, other events.
    let same_run = from.logs.get_run(&rid("run-3-1")).await.unwrap();
    let mut other_events = from.logs.all_events(&same_run.id).await.unwrap();
    other_events[1].payload = json!({"changed": true});
    to.logs
        .import_runs(vec![RunWithEvents {
            run: same_run.clone(),
            events: other_events.clone(),
        }])
        .await
        .unwrap();
    let mut other_metric: ExecutionMetric = from.metrics.get(&rid("run-4-0")).await.unwrap();
    other_metric.duration_micros += 1;
    to.metrics.record(other_metric.clone()).await.unwrap();
    let mut other_pattern = from
        .metrics
        .get_pattern(&PatternId::new("pat-1").unwrap())
        .await
        .unwrap();
    other_pattern.confidence = 0.99;
    to.metrics
        .upsert_pattern(other_pattern.clone())
        .await
        .unwrap();
    let art = ArtifactKey::parse("run-2-0", "train", "logs/stdout.txt").unwrap();
    to.artifacts
        .put_bytes(&art, b"other bytes".to_vec(), PutOptions::default())
        .await
        .unwrap();

    // Fail: stops at the first conflict.
    let err = migrate(&from, &to, opts().on_conflict(OnConflict::Fail))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("etl@1"), "{err}");

    // Report (default): each conflict listed, everything else copied.
    for dry_run in [true, false] {
        let report = migrate(&from, &to, opts().dry_run(dry_run)).await.unwrap();
        let keys: Vec<(Concern, &str)> = report
            .conflicts
            .iter()
            .map(|c| (c.concern, c.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Concern::Workflows, "etl@1"),
                (Concern::Runs, "run-2-0"),
                (Concern::Runs, "run-3-1"),
                (Concern::Metrics, "run-4-0"),
                (Concern::Patterns, "pat-1"),
                (Concern::Artifacts, "run-2-0/train/logs/stdout.txt"),
            ],
            "dry run {dry_run}: {:#?}",
            report.conflicts
        );
        assert_eq!(report.conflict_count(), 6);
        assert!(!report.is_complete());
        assert!(
            report.conflicts[1].detail.contains("trigger"),
            "{}",
            report.conflicts[1].detail
        );
        assert!(
            report.conflicts[2].detail.contains("event 2"),
            "{}",
            report.conflicts[2].detail
        );
        if !dry_run {
            let v = report.verify.as_ref().unwrap();
            // The six records, plus run-2-0's six events missing in the destination.
            assert_eq!(v.difference_count, 12, "{:#?}", v.differences);
            assert_eq!(v.differences_of(Concern::Events).count(), 7);
            assert_eq!(v.differences_of(Concern::Runs).count(), 1);
        }
    }

    // Untouched.
    assert!(
        to.workflows
            .get(&wid("etl"), v(1))
            .await
            .unwrap()
            .same_content(&other_wf)
    );
    assert!(
        to.logs
            .get_run(&other_run.id)
            .await
            .unwrap()
            .same_content(&other_run)
    );
    assert!(to.logs.all_events(&other_run.id).await.unwrap().is_empty());
    let evs = to.logs.all_events(&same_run.id).await.unwrap();
    assert!(
        evs.iter()
            .zip(&other_events)
            .all(|(a, b)| a.same_content(b))
    );
    assert_eq!(to.metrics.get(&rid("run-4-0")).await.unwrap(), other_metric);
    assert!(
        to.metrics
            .get_pattern(&other_pattern.id)
            .await
            .unwrap()
            .same_content(&other_pattern)
    );
    assert_eq!(
        to.artifacts.get_bytes(&art).await.unwrap().1,
        b"other bytes"
    );
    // And the rest was copied.
    assert!(to.workflows.get(&wid("etl"), v(3)).await.is_ok());
    assert_eq!(
        to.logs.all_events(&rid("long-run")).await.unwrap().len() as u64,
        LONG_RUN_EVENTS
    );
}

/// A destination empty when the migration began takes its batches without
/// looking their runs up first; a run someone else writes there meanwhile
/// is still a conflict, reported or failed on as with the lookup, and left
/// as it is.
#[tokio::test]
async fn a_run_written_meanwhile_into_an_empty_destination_is_a_conflict() {
    let from = source().await;
    let mut other_run = from.logs.get_run(&rid("run-2-0")).await.unwrap();
    other_run.trigger = "manual".into();
    let other = RunWithEvents {
        run: other_run.clone(),
        events: vec![],
    };

    let to = memory::store_set();
    let meddled = migrate_support::failing::meddled(&to, other.clone());
    let err = migrate(&from, &meddled, opts().on_conflict(OnConflict::Fail))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("run-2-0"), "{err}");

    let to = memory::store_set();
    let meddled = migrate_support::failing::meddled(&to, other);
    let report = migrate(&from, &meddled, opts()).await.unwrap();
    let keys: Vec<(Concern, &str)> = report
        .conflicts
        .iter()
        .map(|c| (c.concern, c.key.as_str()))
        .collect();
    assert_eq!(keys, vec![(Concern::Runs, "run-2-0")], "{report:#?}");
    assert!(
        report.conflicts[0].detail.contains("trigger"),
        "{}",
        report.conflicts[0].detail
    );
    let stored = to.logs.get_run(&other_run.id).await.unwrap();
    assert!(stored.same_content(&other_run));
    // Every other run was copied.
    let source_runs = from.logs.count_runs(Default::default()).await.unwrap();
    assert_eq!(report.runs.copied, source_runs - 1, "{report:#?}");
    assert_eq!(
        to.logs.all_events(&rid("long-run")).await.unwrap().len() as u64,
        LONG_RUN_EVENTS
    );
}

struct Handles {
    set: StoreSet,
    logs: Arc<MemoryLogs>,
    artifacts: Arc<MemoryArtifacts>,
}

fn handles() -> Handles {
    let logs = Arc::new(MemoryLogs::default());
    let artifacts = Arc::new(MemoryArtifacts::default());
    Handles {
        set: StoreSet {
            workflows: Arc::new(MemoryWorkflows::default()),
            logs: logs.clone(),
            metrics: Arc::new(MemoryMetrics::default()),
            artifacts: artifacts.clone(),
        },
        logs,
        artifacts,
    }
}

#[tokio::test]
async fn verify_detects_changed_event_missing_artifact_and_changed_byte() {
    let a = source().await;
    let b = handles();
    let report = migrate(&a, &b.set, opts()).await.unwrap();
    assert!(report.is_complete());
    let deep = VerifyOptions::default().deep(true).page_size(5);

    // A changed event payload.
    let id = rid("run-4-1");
    let mut events = b.logs.all_events(&id).await.unwrap();
    let run = b.set.logs.get_run(&id).await.unwrap();
    events[2].payload = json!({"step": 3, "msg": "tampered"});
    b.set.logs.delete_run(&id).await.unwrap();
    b.set
        .logs
        .import_runs(vec![RunWithEvents { run, events }])
        .await
        .unwrap();
    let r = verify(&a, &b.set, deep.clone()).await.unwrap();
    assert!(!r.is_equal());
    assert_eq!(r.difference_count, 1, "{:#?}", r.differences);
    let d = &r.differences[0];
    assert_eq!(
        (d.concern, d.kind, d.key.as_str()),
        (Concern::Events, DifferenceKind::Different, "run-4-1#3")
    );
    assert!(d.detail.contains("payload"), "{}", d.detail);
    assert_ne!(r.events.digest_a, r.events.digest_b);
    assert_eq!(r.runs.digest_a, r.runs.digest_b);

    // A missing artifact (the event difference stays).
    let gone = ArtifactKey::parse("run-2-0", "eval", "résumé/日本.json").unwrap();
    b.set.artifacts.delete(&gone).await.unwrap();
    let r = verify(&a, &b.set, deep.clone()).await.unwrap();
    assert_eq!(r.difference_count, 2);
    let d: Vec<_> = r.differences_of(Concern::Artifacts).collect();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].kind, d[0].key.as_str()),
        (DifferenceKind::OnlyInA, "run-2-0/eval/résumé/日本.json")
    );
    assert_eq!((r.artifacts.a, r.artifacts.b), (ARTIFACTS, ARTIFACTS - 1));

    // One changed byte of the large artifact, behind the store's back: only
    // re-reading the bytes sees it.
    let big = ArtifactKey::parse("run-2-0", "train", "model/weights.bin").unwrap();
    assert!(
        b.artifacts
            .tamper(&big, |bytes| bytes[LARGE_ARTIFACT / 2] ^= 1)
    );
    let shallow = verify(&a, &b.set, VerifyOptions::default()).await.unwrap();
    assert_eq!(shallow.difference_count, 2);
    let r = verify(&a, &b.set, deep).await.unwrap();
    assert_eq!(r.difference_count, 3, "{:#?}", r.differences);
    let d: Vec<_> = r
        .differences_of(Concern::Artifacts)
        .filter(|d| d.key == big.to_string())
        .collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].kind, DifferenceKind::Different);
    assert!(d[0].detail.contains("side b"), "{}", d[0].detail);
    assert!(!d[0].detail.contains("side a"), "{}", d[0].detail);
}

#[tokio::test]
async fn verify_reports_runs_and_workflows_missing_on_either_side() {
    let a = source().await;
    let b = memory::store_set();
    migrate(&a, &b, opts().verify(false)).await.unwrap();
    b.logs.delete_run(&rid("same-start-a")).await.unwrap();
    a.logs.delete_run(&rid("run-1-1")).await.unwrap();
    let extra = WorkflowDefinition::new(wid("only-b"), v(1), json!({}));
    b.workflows.store(extra).await.unwrap();
    let r = verify(&a, &b, VerifyOptions::default()).await.unwrap();
    let got: Vec<_> = r
        .differences
        .iter()
        .map(|d| (d.concern, d.kind, d.key.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Concern::Workflows, DifferenceKind::OnlyInB, "only-b@1"),
            // Runs in the order verification walks them: oldest first.
            (Concern::Runs, DifferenceKind::OnlyInB, "run-1-1"),
            (Concern::Runs, DifferenceKind::OnlyInA, "same-start-a"),
        ]
    );
    assert_eq!(
        (r.runs.a, r.runs.b, r.runs.equal),
        (RUNS - 1, RUNS - 1, RUNS - 2)
    );
    // The events of one-sided runs are counted on their side.
    assert_eq!(r.events.a, event_count(&a).await);
    assert_eq!(r.events.b, event_count(&b).await);
    let _ = RunStatus::ALL;
}

/// A source whose run `run-1-0` is deleted between listing the runs and
/// reading its events (retention running meanwhile).
#[derive(Debug)]
struct Vanishing(StoreSet);

#[runstore::async_trait]
impl runstore::LogRepository for Vanishing {
    async fn create_run(
        &self,
        run: runstore::Run,
    ) -> runstore::Result<runstore::Written<runstore::Run>> {
        self.0.logs.create_run(run).await
    }
    async fn get_run(&self, id: &runstore::RunId) -> runstore::Result<runstore::Run> {
        self.0.logs.get_run(id).await
    }
    async fn update_status(
        &self,
        id: &runstore::RunId,
        update: runstore::RunUpdate,
    ) -> runstore::Result<runstore::Run> {
        self.0.logs.update_status(id, update).await
    }
    async fn append_event(
        &self,
        run_id: &runstore::RunId,
        event: runstore::NewEvent,
    ) -> runstore::Result<runstore::Appended> {
        self.0.logs.append_event(run_id, event).await
    }
    async fn append_events(
        &self,
        run_id: &runstore::RunId,
        events: Vec<runstore::NewEvent>,
    ) -> runstore::Result<Vec<runstore::Appended>> {
        self.0.logs.append_events(run_id, events).await
    }
    async fn list_events(
        &self,
        run_id: &runstore::RunId,
        query: runstore::EventQuery,
    ) -> runstore::Result<runstore::Page<runstore::Event>> {
        if run_id.as_str() == "run-1-0" {
            self.0.logs.delete_run(run_id).await?;
        }
        self.0.logs.list_events(run_id, query).await
    }
    async fn query_runs(
        &self,
        query: runstore::RunQuery,
    ) -> runstore::Result<runstore::Page<runstore::Run>> {
        self.0.logs.query_runs(query).await
    }
    async fn count_runs(&self, filter: runstore::RunFilter) -> runstore::Result<u64> {
        self.0.logs.count_runs(filter).await
    }
    async fn delete_run(&self, id: &runstore::RunId) -> runstore::Result<()> {
        self.0.logs.delete_run(id).await
    }
    async fn import_runs(
        &self,
        runs: Vec<RunWithEvents>,
    ) -> runstore::Result<runstore::BulkOutcome> {
        self.0.logs.import_runs(runs).await
    }
    async fn delete_runs(
        &self,
        ids: &[runstore::RunId],
    ) -> runstore::Result<runstore::Deleted<runstore::RunId>> {
        self.0.logs.delete_runs(ids).await
    }
    async fn get_run_by_key(
        &self,
        workflow: &runstore::WorkflowId,
        key: &str,
    ) -> runstore::Result<runstore::Run> {
        self.0.logs.get_run_by_key(workflow, key).await
    }
    async fn acquire_lease(
        &self,
        request: runstore::LeaseRequest,
    ) -> runstore::Result<runstore::Lease> {
        self.0.logs.acquire_lease(request).await
    }
    async fn release_lease(&self, name: &str, token: u64) -> runstore::Result<()> {
        self.0.logs.release_lease(name, token).await
    }
    async fn list_leases(
        &self,
        query: runstore::LeaseQuery,
    ) -> runstore::Result<runstore::Page<runstore::Lease>> {
        self.0.logs.list_leases(query).await
    }
    async fn record_delivery(
        &self,
        id: &str,
    ) -> runstore::Result<runstore::Written<runstore::Delivery>> {
        self.0.logs.record_delivery(id).await
    }
    async fn prune_deliveries(&self, before: runstore::Timestamp) -> runstore::Result<u64> {
        self.0.logs.prune_deliveries(before).await
    }
}

#[tokio::test]
async fn a_run_deleted_from_the_source_meanwhile_is_skipped() {
    let inner = memory::store_set();
    populate_with(&inner, 1024).await;
    let from = StoreSet {
        logs: Arc::new(Vanishing(inner.clone())),
        ..inner.clone()
    };
    let to = memory::store_set();
    let report = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!(report.runs.copied, RUNS - 1);
    assert_eq!(report.runs.read, RUNS - 1);
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(
        to.logs.get_run(&rid("run-1-0")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// Options whose check is the one made while copying (no `deep`).
fn checked_while_copying() -> MigrateOptions {
    MigrateOptions::default()
        .batch_size(4)
        .metrics_per_batch(3)
        .max_events_per_batch(LONG_RUN_BATCH)
}

#[tokio::test]
async fn the_check_made_while_copying_covers_everything_copied() {
    let from = source().await;
    let to = memory::store_set();
    let report = migrate(&from, &to, checked_while_copying()).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    let v = report.verify.as_ref().unwrap();
    assert!(v.while_copying && !v.deep, "{v:?}");
    let events = event_count(&from).await;
    for (c, n) in [
        (&v.workflows, WORKFLOWS),
        (&v.runs, RUNS),
        (&v.events, events),
        (&v.metrics, METRICS),
        (&v.patterns, PATTERNS),
        (&v.artifacts, ARTIFACTS),
    ] {
        assert_eq!((c.a, c.b, c.equal), (n, n, n), "{c:?}");
        assert_eq!(c.digest_a, c.digest_b, "{c:?}");
    }
    // A second pass reads everything back again and still agrees.
    let again = migrate(&from, &to, checked_while_copying()).await.unwrap();
    assert!(again.is_complete(), "{again:?}");
    let w = again.verify.as_ref().unwrap();
    assert_eq!(w.runs.digest_a, v.runs.digest_a);
    assert_eq!(w.events.digest_b, v.events.digest_b);
}

#[tokio::test]
async fn the_check_made_while_copying_is_the_same_with_any_number_of_writers() {
    let from = source().await;
    let mut reports = Vec::new();
    for writers in [1, 3] {
        let to = memory::store_set();
        let report = migrate(&from, &to, checked_while_copying().writers(writers))
            .await
            .unwrap();
        assert!(report.is_complete(), "{report:?}");
        reports.push(report.verify.unwrap());
    }
    assert_eq!(reports[0].runs.a, RUNS);
    assert_eq!(reports[0], reports[1]);
}

#[tokio::test]
async fn the_check_made_while_copying_finds_what_a_lossy_destination_dropped() {
    let from = source().await;
    let behind = memory::store_set();
    let lossy = failing::lossy(&behind);
    let report = migrate(&from, &lossy, checked_while_copying())
        .await
        .unwrap();
    assert!(!report.is_complete(), "{report:?}");
    // The long run (imported in chunks) notices the loss itself: its next
    // chunk is numbered one early. Every other loss went unnoticed by the
    // copy; the check finds them.
    assert!(
        report.conflicts.iter().all(|c| c.key == "long-run"),
        "{:?}",
        report.conflicts
    );
    let v = report.verify.as_ref().unwrap();
    assert!(v.while_copying);
    // Every metric lost a microsecond; every run imported with more than
    // one event lost its last one.
    assert_eq!(v.differences_of(Concern::Metrics).count() as u64, METRICS);
    let runs_short = v.differences_of(Concern::Events).count();
    assert!(runs_short > 0, "{v:?}");
    assert!(v.events.b < v.events.a, "{v:?}");
    assert_ne!(v.events.digest_a, v.events.digest_b);
    let d = v.differences_of(Concern::Events).next().unwrap();
    assert!(d.key.ends_with("#*"), "{d:?}");
    assert!(d.detail.contains("in the source"), "{d:?}");
    // A whole verification of the two sides agrees that they differ.
    let whole = verify(&from, &behind, VerifyOptions::default())
        .await
        .unwrap();
    assert!(!whole.is_equal());
    assert_eq!(
        whole.differences_of(Concern::Metrics).count() as u64,
        METRICS
    );
}
