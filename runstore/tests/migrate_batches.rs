//! How `migrate` writes batches: a batch the destination already holds in
//! part is still counted record by record, runs at the ends of the time
//! range are found in the destination, and `OnConflict::Fail` writes nothing
//! of the batch that holds the conflict.

mod migrate_support;

use migrate_support::*;
use runstore::memory;
use runstore::migrate::{MigrateOptions, OnConflict, migrate};
use runstore::{
    BulkOutcome, ErrorKind, Event, ExecutionMetric, LogRepositoryExt, MetricQuery,
    MetricsRepository, MetricsSummary, Page, Pattern, PatternId, PatternQuery, Result, Run,
    RunFilter, RunId, RunStatus, RunWithEvents, StoreSet, SummaryQuery, Timestamp,
    WorkflowDefinition, WorkflowId, Written, async_trait,
};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// A run of workflow `etl@1` started at `started`, with `events` events.
fn run(id: &str, started: Timestamp, events: u64) -> RunWithEvents {
    let mut run = Run::new(wid("etl"), v(1));
    run.id = rid(id);
    run.started_at = started;
    run.status = RunStatus::Succeeded;
    run.ended_at = Some(started);
    let events = (1..=events)
        .map(|seq| Event {
            run_id: run.id.clone(),
            seq,
            kind: "step".into(),
            at: started,
            payload: json!({"seq": seq, "text": "日本"}),
            idempotency_key: None,
        })
        .collect();
    RunWithEvents { run, events }
}

/// A store set holding workflow `etl@1`, created at a fixed time so that
/// two such sets hold it identically.
async fn with_workflow() -> StoreSet {
    let s = memory::store_set();
    let mut def = WorkflowDefinition::new(wid("etl"), v(1), json!({"steps": ["a"]}));
    def.created_at = ts(1);
    s.workflows.store(def).await.unwrap();
    s
}

fn opts() -> MigrateOptions {
    MigrateOptions::default().batch_size(5).metrics_per_batch(5)
}

#[tokio::test]
async fn a_batch_held_in_part_is_counted_run_by_run() {
    let from = with_workflow().await;
    let runs: Vec<RunWithEvents> = (0..12)
        .map(|i| run(&format!("r{i:02}"), ts(1_000 + i), (i % 4) as u64))
        .collect();
    from.logs.import_runs(runs.clone()).await.unwrap();
    let to = with_workflow().await;
    // Every third run is already there, identically: batches are mixed.
    let held: Vec<RunWithEvents> = runs.iter().step_by(3).cloned().collect();
    let held_events: u64 = held.iter().map(|r| r.events.len() as u64).sum();
    to.logs.import_runs(held.clone()).await.unwrap();

    let report = migrate(&from, &to, opts()).await.unwrap();
    let all_events: u64 = runs.iter().map(|r| r.events.len() as u64).sum();
    assert_eq!(report.runs.copied, 12 - held.len() as u64);
    assert_eq!(report.runs.unchanged, held.len() as u64);
    assert_eq!(report.events.copied, all_events - held_events);
    assert_eq!(report.events.unchanged, held_events);
    assert_eq!(report.events.read, all_events);
    assert!(report.is_complete(), "{report:#?}");
    assert_same(&from, &to).await;
}

#[tokio::test]
async fn runs_at_both_ends_of_time_are_found_in_the_destination() {
    let from = with_workflow().await;
    let runs = vec![
        run("first", Timestamp::MIN, 2),
        run("mid", ts(5), 1),
        run("last", Timestamp::MAX, 3),
        run("last-too", Timestamp::MAX, 0),
    ];
    from.logs.import_runs(runs).await.unwrap();
    let to = with_workflow().await;
    let first = migrate(&from, &to, opts().batch_size(2)).await.unwrap();
    assert_eq!(first.runs.copied, 4);
    assert!(first.is_complete(), "{first:#?}");
    // Found by the window query, so nothing is copied again or refused.
    let again = migrate(&from, &to, opts().batch_size(2)).await.unwrap();
    assert_eq!((again.runs.copied, again.runs.unchanged), (0, 4));
    assert_eq!((again.events.copied, again.events.unchanged), (0, 6));
    assert!(again.is_complete(), "{again:#?}");
}

#[tokio::test]
async fn fail_writes_nothing_of_the_batch_holding_the_conflict() {
    let from = with_workflow().await;
    let runs: Vec<RunWithEvents> = (0..5)
        .map(|i| run(&format!("r{i}"), ts(100 + i), 2))
        .collect();
    from.logs.import_runs(runs.clone()).await.unwrap();
    let to = with_workflow().await;
    let mut other = runs[2].clone();
    other.run.trigger = "webhook".into();
    to.logs.import_runs(vec![other]).await.unwrap();

    let err = migrate(&from, &to, opts().on_conflict(OnConflict::Fail))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("r2"), "{err}");
    assert_eq!(to.logs.count_runs(RunFilter::default()).await.unwrap(), 1);

    // Reported instead: the four others are copied, r2 is left as it was.
    let report = migrate(&from, &to, opts()).await.unwrap();
    assert_eq!((report.runs.copied, report.runs.conflicts), (4, 1));
    assert!(
        report.conflicts[0].detail.contains("trigger"),
        "{report:#?}"
    );
    assert_eq!(
        to.logs.get_run(&rid("r2")).await.unwrap().trigger,
        "webhook"
    );
    assert_eq!(to.logs.all_events(&rid("r2")).await.unwrap().len(), 2);
}

/// `read = copied + unchanged + conflicts + updated`, for runs and events.
fn assert_columns_add_up(report: &runstore::migrate::MigrationReport) {
    for c in [report.runs, report.events] {
        assert_eq!(
            c.read,
            c.copied + c.unchanged + c.conflicts + c.updated,
            "{report:#?}"
        );
    }
}

#[tokio::test]
async fn several_writers_copy_what_one_does_and_report_it_the_same() {
    let runs: Vec<RunWithEvents> = (0..40)
        .map(|i| run(&format!("r{i:02}"), ts(1_000 + i), (i % 5) as u64))
        .collect();
    let mut reports = Vec::new();
    for writers in [1, 3] {
        let from = with_workflow().await;
        from.logs.import_runs(runs.clone()).await.unwrap();
        let to = with_workflow().await;
        // Every seventh run is already there identically; r10 with another
        // trigger; r22 with the same record and other events, so the batch
        // holding it is refused and handled run by run.
        let mut held: Vec<RunWithEvents> = runs.iter().step_by(7).cloned().collect();
        let mut other_trigger = runs[10].clone();
        other_trigger.run.trigger = "webhook".into();
        let mut other_events = runs[22].clone();
        other_events.events[0].payload = json!({"changed": true});
        held.extend([other_trigger, other_events]);
        to.logs.import_runs(held).await.unwrap();

        let report = migrate(&from, &to, opts().batch_size(2).writers(writers))
            .await
            .unwrap();
        assert_columns_add_up(&report);
        assert_eq!(report.runs.read, 40);
        assert_eq!(report.runs.conflicts, 2, "{report:#?}");
        let keys: Vec<&str> = report.conflicts.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["r10", "r22"]);
        // Everything else is there, and a second pass finds nothing to do.
        let again = migrate(&from, &to, opts().batch_size(2).writers(writers))
            .await
            .unwrap();
        assert_eq!((again.runs.copied, again.runs.unchanged), (0, 38));
        assert_columns_add_up(&again);
        reports.push(report);
    }
    let counts = |r: &runstore::migrate::MigrationReport| (r.runs, r.events, r.metrics);
    assert_eq!(counts(&reports[0]), counts(&reports[1]));
    assert_eq!(reports[0].conflicts, reports[1].conflicts);
}

/// The destination's metrics, counting the size of each `record_many`.
#[derive(Debug)]
struct CountedMetrics {
    inner: Arc<dyn MetricsRepository>,
    batches: Mutex<Vec<usize>>,
}

#[async_trait]
impl MetricsRepository for CountedMetrics {
    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        self.inner.record(metric).await
    }
    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        self.batches.lock().unwrap().push(metrics.len());
        self.inner.record_many(metrics).await
    }
    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        self.inner.get(run_id).await
    }
    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        self.inner.list(query).await
    }
    async fn delete(&self, run_id: &RunId) -> Result<()> {
        self.inner.delete(run_id).await
    }
    async fn summary(&self, w: &WorkflowId, q: SummaryQuery) -> Result<MetricsSummary> {
        self.inner.summary(w, q).await
    }
    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        self.inner.upsert_pattern(pattern).await
    }
    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        self.inner.get_pattern(id).await
    }
    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        self.inner.list_patterns(query).await
    }
    async fn delete_many(&self, ids: &[RunId]) -> Result<runstore::Deleted<RunId>> {
        self.inner.delete_many(ids).await
    }
    // Forwarded, so the migration's check reads through the backend's own
    // batch read, not the trait's one-by-one default.
    async fn metrics_of_runs(&self, ids: &[RunId]) -> Result<Vec<Option<ExecutionMetric>>> {
        self.inner.metrics_of_runs(ids).await
    }
}

fn metric(i: u64) -> ExecutionMetric {
    ExecutionMetric {
        run_id: rid(&format!("m{i:02}")),
        workflow_id: wid("etl"),
        workflow_version: v(1),
        status: RunStatus::Succeeded,
        duration_micros: 10 * i,
        recorded_at: ts(2_000 + i as i64),
        counters: Default::default(),
        values: [("cost".to_string(), i as f64)].into(),
    }
}

#[tokio::test]
async fn metrics_go_in_batches_of_their_own_size_and_all_arrive() {
    let from = with_workflow().await;
    from.metrics
        .record_many((0..23).map(metric).collect())
        .await
        .unwrap();
    for (per_batch, expected) in [(10, vec![10, 10, 3]), (5_000, vec![23])] {
        let base = with_workflow().await;
        let counted = Arc::new(CountedMetrics {
            inner: base.metrics.clone(),
            batches: Mutex::new(Vec::new()),
        });
        let to = StoreSet {
            metrics: counted.clone(),
            ..base
        };
        // Pages of 4 are read; the writes follow `metrics_per_batch` alone.
        let report = migrate(
            &from,
            &to,
            MigrateOptions::default()
                .batch_size(4)
                .metrics_per_batch(per_batch),
        )
        .await
        .unwrap();
        assert_eq!(*counted.batches.lock().unwrap(), expected);
        assert_eq!((report.metrics.read, report.metrics.copied), (23, 23));
        let check = report.verify.expect("checked while copying");
        assert!(check.is_equal(), "{check:#?}");
        let stored = to.metrics.list(MetricQuery::default()).await.unwrap();
        assert_eq!(stored.items, (0..23).map(metric).collect::<Vec<_>>());
    }
}
