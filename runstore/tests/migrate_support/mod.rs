//! Shared by the `migrate_*` tests: a data set with every kind of record,
//! and an independent record-by-record comparison of two store sets.
#![allow(dead_code)]

use std::collections::BTreeMap;

use runstore::{
    ArtifactKey, ArtifactQuery, ArtifactStoreExt, Event, ExecutionMetric, JsonMap,
    LogRepositoryExt, MetricQuery, NewEvent, Pattern, PatternId, PatternQuery, PutOptions, Run,
    RunId, RunQuery, RunStatus, RunUpdate, RunWithEvents, StoreSet, Timestamp, Version,
    WorkflowDefinition, WorkflowId, WorkflowQuery,
};
use serde_json::json;

/// Events of the long run: more than one batch when tests use
/// `max_events_per_batch(LONG_RUN_BATCH)`.
pub const LONG_RUN_EVENTS: u64 = 2_500;
/// The events-per-batch bound tests use, so the long run is chunked.
pub const LONG_RUN_BATCH: usize = 1_000;
/// Size of the large artifact.
pub const LARGE_ARTIFACT: usize = 8 * 1024 * 1024;

pub fn ts(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros).unwrap()
}

pub fn wid(s: &str) -> WorkflowId {
    WorkflowId::new(s).unwrap()
}

pub fn rid(s: &str) -> RunId {
    RunId::new(s).unwrap()
}

pub fn v(n: u32) -> Version {
    Version::new(n).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so the large artifact is
/// not trivially compressible and a changed byte is a real change.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

fn run(id: &str, wf: &str, ver: u32, status: RunStatus, start: i64) -> Run {
    let mut attributes = JsonMap::new();
    attributes.insert("owner".into(), json!("zoë 🚀"));
    attributes.insert("nested".into(), json!({"b": [1, 2.5, null], "a": true}));
    let mut summaries = JsonMap::new();
    if status.is_terminal() {
        summaries.insert("rows".into(), json!(42));
    }
    Run {
        id: rid(id),
        workflow_id: wid(wf),
        workflow_version: v(ver),
        status,
        trigger: if start % 2 == 0 {
            "schedule".into()
        } else {
            "webhook".into()
        },
        started_at: ts(T0 + start),
        ended_at: status.is_terminal().then(|| ts(T0 + start + 1_234_567)),
        attributes,
        summaries,
        external_key: None,
    }
}

fn events(run_id: &RunId, n: u64, start: i64) -> Vec<Event> {
    (1..=n)
        .map(|seq| Event {
            run_id: run_id.clone(),
            seq,
            kind: if seq % 3 == 0 { "step.finished".into() } else { "step.started".into() },
            at: ts(T0 + start + seq as i64),
            payload: json!({"step": seq, "msg": format!("schritt {seq} — 完了 ✓"), "f": 0.1 * seq as f64}),
            idempotency_key: (seq % 4 == 1).then(|| format!("delivery-{seq}")),
        })
        .collect()
}

/// Every kind of record, through the public traits:
/// - workflows with lineage chains (etl 1 <- 2 <- 3, deploy 1 <- 2 <- 5) and
///   unicode text;
/// - runs in every status, two with the same start time (ordered by id), one
///   with [`LONG_RUN_EVENTS`] events, events with idempotency keys, some
///   appended through `append_events` (numbered by the store);
/// - metrics of the finished runs, patterns;
/// - artifacts: small, empty, unicode paths, one of [`LARGE_ARTIFACT`] bytes.
pub async fn populate(s: &StoreSet) {
    populate_with(s, LARGE_ARTIFACT).await
}

/// [`populate`] with a large artifact of `large` bytes.
pub async fn populate_with(s: &StoreSet, large: usize) {
    let mut defs = vec![
        WorkflowDefinition::new(wid("etl"), v(1), json!({"steps": ["extract"]}))
            .with_description("Ladet Daten — 日本語")
            .with_created_at(ts(T0 - 10_000_000)),
        WorkflowDefinition::new(
            wid("etl"),
            v(2),
            json!({"steps": ["extract", "load"], "z": {"y": 1, "x": 2}}),
        )
        .with_parent(v(1))
        .with_created_at(ts(T0 - 9_000_000)),
        WorkflowDefinition::new(
            wid("etl"),
            v(3),
            json!({"steps": ["extract", "transform", "load"]}),
        )
        .with_parent(v(2))
        .with_created_at(ts(T0 - 8_000_000)),
        WorkflowDefinition::new(wid("deploy"), v(1), json!({"target": "prod"}))
            .with_created_at(ts(T0 - 7_000_000)),
        WorkflowDefinition::new(
            wid("deploy"),
            v(2),
            json!({"target": "prod", "canary": 0.05}),
        )
        .with_parent(v(1))
        .with_created_at(ts(T0 - 6_000_000)),
        WorkflowDefinition::new(wid("deploy"), v(5), json!({"target": "eu-west"}))
            .with_parent(v(2))
            .with_description("emoji 🎉 and \"quotes\"")
            .with_created_at(ts(T0 - 5_000_000)),
        WorkflowDefinition::new(wid("Z.upper_case-1"), v(1), json!([]))
            .with_created_at(ts(T0 - 4_000_000)),
    ];
    for def in defs.drain(..) {
        s.workflows.store(def).await.unwrap();
    }

    // Imported runs, every status.
    let statuses = RunStatus::ALL;
    let mut imported = Vec::new();
    for (i, st) in statuses.iter().enumerate() {
        for k in 0..3 {
            let id = format!("run-{i}-{k}");
            let start = (i * 10 + k) as i64 * 1_000_000;
            let r = run(
                &id,
                if k == 2 { "deploy" } else { "etl" },
                if k == 2 { 5 } else { 2 },
                *st,
                start,
            );
            let ev = events(&r.id, (i + k) as u64 * 3, start);
            imported.push(RunWithEvents { run: r, events: ev });
        }
    }
    // Two runs with the same start: ordered by id.
    for id in ["same-start-a", "same-start-b"] {
        let r = run(id, "etl", 3, RunStatus::Succeeded, 77_000_000);
        let ev = events(&r.id, 2, 77_000_000);
        imported.push(RunWithEvents { run: r, events: ev });
    }
    s.logs.import_runs(imported).await.unwrap();

    // A long run, built through the live path.
    let long = run("long-run", "etl", 3, RunStatus::Running, 90_000_000);
    let long_id = long.id.clone();
    s.logs.create_run(long).await.unwrap();
    let news: Vec<NewEvent> = events(&long_id, LONG_RUN_EVENTS, 90_000_000)
        .into_iter()
        .map(|e| NewEvent {
            kind: e.kind,
            at: e.at,
            payload: e.payload,
            idempotency_key: e.idempotency_key,
        })
        .collect();
    for chunk in news.chunks(700) {
        s.logs
            .append_events(&long_id, chunk.to_vec())
            .await
            .unwrap();
    }
    // A redelivered webhook: stores nothing.
    let dup = s
        .logs
        .append_event(
            &long_id,
            NewEvent::new("step.started", json!({})).with_idempotency_key("delivery-1"),
        )
        .await
        .unwrap();
    assert!(dup.duplicate);
    s.logs
        .update_status(
            &long_id,
            RunUpdate::finished(RunStatus::Failed, ts(T0 + 99_000_000)),
        )
        .await
        .unwrap();

    // Metrics of the finished runs.
    let mut metrics = Vec::new();
    for (i, st) in statuses.iter().enumerate().filter(|(_, s)| s.is_terminal()) {
        for k in 0..3 {
            let mut counters = BTreeMap::new();
            counters.insert("steps".to_string(), (i * k) as i64);
            counters.insert("retries".to_string(), -1);
            let mut values = BTreeMap::new();
            values.insert("cost_usd".to_string(), 0.1 + i as f64 / 3.0);
            values.insert("tokens".to_string(), 1e12 + k as f64);
            metrics.push(ExecutionMetric {
                run_id: rid(&format!("run-{i}-{k}")),
                workflow_id: wid(if k == 2 { "deploy" } else { "etl" }),
                workflow_version: v(if k == 2 { 5 } else { 2 }),
                status: *st,
                duration_micros: 1_000 * (i * 7 + k) as u64,
                recorded_at: ts(T0 + 100_000_000 + (i * 3 + k) as i64),
                counters,
                values,
            });
        }
    }
    s.metrics.record_many(metrics).await.unwrap();

    for (i, kind) in ["slow_step", "flaky", "cost_spike"].iter().enumerate() {
        s.metrics
            .upsert_pattern(Pattern {
                id: PatternId::new(format!("pat-{i}")).unwrap(),
                workflow_id: wid("etl"),
                kind: kind.to_string(),
                description: format!("Befund {i}: langsam 🐢"),
                data: json!({"step": "load", "p95_ms": 1234 + i}),
                confidence: 0.25 * i as f64,
                evidence: vec![rid("run-2-0"), rid("run-3-1")],
                detected_at: ts(T0 + 200_000_000 + (i as i64 % 2)),
            })
            .await
            .unwrap();
    }

    let arts: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        ("run-2-0", "train", "model/weights.bin", bytes(large, 7)),
        (
            "run-2-0",
            "train",
            "logs/stdout.txt",
            "hello\nwörld ✓\n".as_bytes().to_vec(),
        ),
        (
            "run-2-0",
            "eval",
            "résumé/日本.json",
            br#"{"score": 0.97}"#.to_vec(),
        ),
        ("run-3-1", "build", "empty.txt", Vec::new()),
        ("run-4-2", "build", "a/b/c/d.dat", bytes(70_000, 3)),
    ];
    for (i, (run_id, phase, path, body)) in arts.into_iter().enumerate() {
        let key = ArtifactKey::parse(run_id, phase, path).unwrap();
        s.artifacts
            .put_bytes(
                &key,
                body,
                PutOptions::default()
                    .content_type(if i == 1 {
                        "text/plain; charset=utf-8"
                    } else {
                        "application/octet-stream"
                    })
                    .created_by(format!("step-{i}"))
                    .created_at(ts(T0 + 300_000_000 + i as i64)),
            )
            .await
            .unwrap();
    }
}

/// Counts of records the populated data set holds.
pub const WORKFLOWS: u64 = 7;
pub const RUNS: u64 = 18;
pub const METRICS: u64 = 9;
pub const PATTERNS: u64 = 3;
pub const ARTIFACTS: u64 = 5;

/// Compares two store sets record by record and byte by byte, independently
/// of `verify`, with each side read in full (test data is small).
pub async fn assert_same(a: &StoreSet, b: &StoreSet) {
    let wa = a
        .workflows
        .list(WorkflowQuery::default().with_limit(10_000))
        .await
        .unwrap();
    let wb = b
        .workflows
        .list(WorkflowQuery::default().with_limit(10_000))
        .await
        .unwrap();
    assert_eq!(wa.items.len(), wb.items.len(), "workflow count");
    for (x, y) in wa.items.iter().zip(&wb.items) {
        assert!(x.same_content(y), "workflow {}@{}", x.id, x.version);
        assert_eq!(
            x.created_at, y.created_at,
            "workflow {}@{} created_at",
            x.id, x.version
        );
    }

    let ra = a
        .logs
        .query_runs(RunQuery::default().with_limit(10_000))
        .await
        .unwrap();
    let rb = b
        .logs
        .query_runs(RunQuery::default().with_limit(10_000))
        .await
        .unwrap();
    assert_eq!(ra.items.len(), rb.items.len(), "run count");
    for (x, y) in ra.items.iter().zip(&rb.items) {
        assert!(x.same_content(y), "run {}: {x:?} / {y:?}", x.id);
        let ea = a.logs.all_events(&x.id).await.unwrap();
        let eb = b.logs.all_events(&y.id).await.unwrap();
        assert_eq!(ea.len(), eb.len(), "events of run {}", x.id);
        for (p, q) in ea.iter().zip(&eb) {
            assert!(p.same_content(q), "event {}#{}", p.run_id, p.seq);
        }
    }

    let ma = a
        .metrics
        .list(MetricQuery::default().with_limit(10_000))
        .await
        .unwrap();
    let mb = b
        .metrics
        .list(MetricQuery::default().with_limit(10_000))
        .await
        .unwrap();
    assert_eq!(ma.items.len(), mb.items.len(), "metric count");
    for (x, y) in ma.items.iter().zip(&mb.items) {
        assert!(x.same_content(y), "metric {}", x.run_id);
    }

    let pa = a
        .metrics
        .list_patterns(PatternQuery::default().with_limit(10_000))
        .await
        .unwrap();
    let pb = b
        .metrics
        .list_patterns(PatternQuery::default().with_limit(10_000))
        .await
        .unwrap();
    assert_eq!(pa.items.len(), pb.items.len(), "pattern count");
    for (x, y) in pa.items.iter().zip(&pb.items) {
        assert!(x.same_content(y), "pattern {}", x.id);
    }

    let aa = a
        .artifacts
        .list(ArtifactQuery::default().with_limit(10_000))
        .await
        .unwrap();
    let ab = b
        .artifacts
        .list(ArtifactQuery::default().with_limit(10_000))
        .await
        .unwrap();
    assert_eq!(aa.items, ab.items, "artifact infos");
    for info in &aa.items {
        let (_, x) = a.artifacts.get_bytes(&info.key).await.unwrap();
        let (_, y) = b.artifacts.get_bytes(&info.key).await.unwrap();
        assert!(x == y, "bytes of artifact {}", info.key);
    }
}

/// Total events of the data set.
pub async fn event_count(s: &StoreSet) -> u64 {
    let runs = s
        .logs
        .query_runs(RunQuery::default().with_limit(10_000))
        .await
        .unwrap();
    let mut n = 0;
    for r in runs.items {
        n += s.logs.all_events(&r.id).await.unwrap().len() as u64;
    }
    n
}

pub mod failing {
    //! A destination that fails after a number of writes: a migration
    //! interrupted at that point, as a crash would leave it (every trait
    //! write is all or nothing, so a crash between writes is the only kind
    //! the destination can see).

    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use runstore::{
        Appended, ArtifactInfo, ArtifactKey, ArtifactQuery, ArtifactReader, ArtifactStore,
        BulkOutcome, ByteStream, Error, Event, EventQuery, ExecutionMetric, LogRepository,
        MetricQuery, MetricsRepository, MetricsSummary, NewEvent, Page, Pattern, PatternId,
        PatternQuery, PutOptions, Result, Run, RunFilter, RunId, RunQuery, RunUpdate,
        RunWithEvents, StoreSet, SummaryQuery, Version, WorkflowDefinition, WorkflowId,
        WorkflowQuery, WorkflowRepository, Written, async_trait,
    };

    /// Shared budget of writes left; below zero every write fails.
    #[derive(Debug, Clone)]
    pub struct Budget {
        /// Writes left.
        left: Arc<AtomicI64>,
        /// Writes allowed at the start.
        allowed: i64,
        /// The most events one write carried.
        max_events: Arc<AtomicI64>,
        /// The destination also loses data while it acknowledges the
        /// writes: the last event of every imported run with more than
        /// one, and a microsecond of every metric's duration.
        lossy: bool,
        /// The write numbers of the `append_events` calls.
        appends: Arc<std::sync::Mutex<Vec<i64>>>,
        /// A run someone else imports just before the first `import_runs`.
        meddling: Arc<std::sync::Mutex<Option<RunWithEvents>>>,
    }

    impl Budget {
        fn spend(&self) -> Result<()> {
            if self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
                return Err(Error::unavailable(
                    "simulated crash of the destination",
                    None,
                ));
            }
            Ok(())
        }
        /// The most events any one `import_runs` or `append_events` call
        /// carried: what a batch held in memory.
        pub fn max_events_per_write(&self) -> i64 {
            self.max_events.load(Ordering::SeqCst)
        }
        fn saw_events(&self, n: usize) {
            self.max_events.fetch_max(n as i64, Ordering::SeqCst);
        }
        /// The write numbers (1-based, as [`Self::spent`] counts) of every
        /// `append_events` call: the chunks of a long run after its first.
        pub fn appends(&self) -> Vec<i64> {
            self.appends.lock().map(|a| a.clone()).unwrap_or_default()
        }
        /// Writes attempted so far.
        pub fn spent(&self) -> i64 {
            self.allowed - self.left.load(Ordering::SeqCst)
        }
        /// Whether the budget ran out (the migration was interrupted).
        pub fn exhausted(&self) -> bool {
            self.left.load(Ordering::SeqCst) < 0
        }
    }

    /// `inner`, failing every write after `writes` of them.
    pub fn wrap(inner: &StoreSet, writes: i64) -> (StoreSet, Budget) {
        wrap_with(inner, writes, false)
    }

    /// `inner`, silently losing data (see [`Budget`]): a broken backend
    /// that the check of a migration must catch.
    pub fn lossy(inner: &StoreSet) -> StoreSet {
        wrap_with(inner, i64::MAX, true).0
    }

    /// `inner`, where someone else imports `run` just before the first
    /// `import_runs` goes through: a write made while a migration runs.
    pub fn meddled(inner: &StoreSet, run: RunWithEvents) -> StoreSet {
        let (set, b) = wrap_with(inner, i64::MAX, false);
        *b.meddling.lock().unwrap() = Some(run);
        set
    }

    fn wrap_with(inner: &StoreSet, writes: i64, lossy: bool) -> (StoreSet, Budget) {
        let b = Budget {
            left: Arc::new(AtomicI64::new(writes)),
            allowed: writes,
            max_events: Arc::new(AtomicI64::new(0)),
            lossy,
            appends: Arc::default(),
            meddling: Arc::default(),
        };
        let set = StoreSet {
            workflows: Arc::new(W(inner.clone(), b.clone())),
            logs: Arc::new(L(inner.clone(), b.clone())),
            metrics: Arc::new(M(inner.clone(), b.clone())),
            artifacts: Arc::new(A(inner.clone(), b.clone())),
        };
        (set, b)
    }

    #[derive(Debug)]
    struct W(StoreSet, Budget);
    #[derive(Debug)]
    struct L(StoreSet, Budget);
    #[derive(Debug)]
    struct M(StoreSet, Budget);
    #[derive(Debug)]
    struct A(StoreSet, Budget);

    #[async_trait]
    impl WorkflowRepository for W {
        async fn store(&self, def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>> {
            self.1.spend()?;
            self.0.workflows.store(def).await
        }
        async fn get(&self, id: &WorkflowId, version: Version) -> Result<WorkflowDefinition> {
            self.0.workflows.get(id, version).await
        }
        async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition> {
            self.0.workflows.get_latest(id).await
        }
        async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
            self.0.workflows.list_versions(id).await
        }
        async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
            self.0.workflows.list(query).await
        }
        async fn delete(&self, id: &WorkflowId, version: Version) -> Result<()> {
            self.1.spend()?;
            self.0.workflows.delete(id, version).await
        }
    }

    #[async_trait]
    impl LogRepository for L {
        async fn create_run(&self, run: Run) -> Result<Written<Run>> {
            self.1.spend()?;
            self.0.logs.create_run(run).await
        }
        async fn get_run(&self, id: &RunId) -> Result<Run> {
            self.0.logs.get_run(id).await
        }
        async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
            self.1.spend()?;
            self.0.logs.update_status(id, update).await
        }
        async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
            self.1.spend()?;
            self.0.logs.append_event(run_id, event).await
        }
        async fn append_events(
            &self,
            run_id: &RunId,
            events: Vec<NewEvent>,
        ) -> Result<Vec<Appended>> {
            self.1.spend()?;
            self.1.saw_events(events.len());
            if let Ok(mut a) = self.1.appends.lock() {
                a.push(self.1.spent());
            }
            self.0.logs.append_events(run_id, events).await
        }
        async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
            self.0.logs.list_events(run_id, query).await
        }
        async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
            self.0.logs.query_runs(query).await
        }
        async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
            self.0.logs.count_runs(filter).await
        }
        async fn delete_run(&self, id: &RunId) -> Result<()> {
            self.1.spend()?;
            self.0.logs.delete_run(id).await
        }
        async fn import_runs(&self, mut runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
            self.1.spend()?;
            self.1.saw_events(runs.iter().map(|r| r.events.len()).sum());
            let meddling = self.1.meddling.lock().unwrap().take();
            if let Some(other) = meddling {
                self.0.logs.import_runs(vec![other]).await?;
            }
            if self.1.lossy {
                for r in &mut runs {
                    if r.events.len() > 1 {
                        r.events.pop();
                    }
                }
            }
            self.0.logs.import_runs(runs).await
        }
        async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
            self.1.spend()?;
            self.0.logs.delete_runs(ids).await
        }
        async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
            self.0.logs.get_run_by_key(workflow, key).await
        }
        async fn acquire_lease(
            &self,
            request: runstore_core::LeaseRequest,
        ) -> Result<runstore_core::Lease> {
            self.1.spend()?;
            self.0.logs.acquire_lease(request).await
        }
        async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
            self.1.spend()?;
            self.0.logs.release_lease(name, token).await
        }
        async fn list_leases(
            &self,
            query: runstore_core::LeaseQuery,
        ) -> Result<Page<runstore_core::Lease>> {
            self.0.logs.list_leases(query).await
        }
        async fn record_delivery(&self, id: &str) -> Result<Written<runstore_core::Delivery>> {
            self.1.spend()?;
            self.0.logs.record_delivery(id).await
        }
        async fn prune_deliveries(&self, before: runstore_core::Timestamp) -> Result<u64> {
            self.1.spend()?;
            self.0.logs.prune_deliveries(before).await
        }
    }

    #[async_trait]
    impl MetricsRepository for M {
        async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
            self.1.spend()?;
            self.0.metrics.record(metric).await
        }
        async fn record_many(&self, mut metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
            self.1.spend()?;
            if self.1.lossy {
                for m in &mut metrics {
                    m.duration_micros += 1;
                }
            }
            self.0.metrics.record_many(metrics).await
        }
        async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
            self.0.metrics.get(run_id).await
        }
        async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
            self.0.metrics.list(query).await
        }
        async fn delete(&self, run_id: &RunId) -> Result<()> {
            self.1.spend()?;
            self.0.metrics.delete(run_id).await
        }
        async fn summary(
            &self,
            workflow_id: &WorkflowId,
            query: SummaryQuery,
        ) -> Result<MetricsSummary> {
            self.0.metrics.summary(workflow_id, query).await
        }
        async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
            self.1.spend()?;
            self.0.metrics.upsert_pattern(pattern).await
        }
        async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
            self.0.metrics.get_pattern(id).await
        }
        async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
            self.0.metrics.list_patterns(query).await
        }
        async fn delete_many(&self, run_ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
            self.1.spend()?;
            self.0.metrics.delete_many(run_ids).await
        }
    }

    #[async_trait]
    impl ArtifactStore for A {
        async fn put(
            &self,
            key: &ArtifactKey,
            body: ByteStream,
            options: PutOptions,
        ) -> Result<Written<ArtifactInfo>> {
            self.1.spend()?;
            self.0.artifacts.put(key, body, options).await
        }
        async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
            self.0.artifacts.get(key).await
        }
        async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
            self.0.artifacts.head(key).await
        }
        async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
            self.0.artifacts.list(query).await
        }
        async fn delete(&self, key: &ArtifactKey) -> Result<()> {
            self.1.spend()?;
            self.0.artifacts.delete(key).await
        }
        async fn delete_run_artifacts(
            &self,
            run_id: &RunId,
        ) -> Result<runstore_core::ArtifactsDeleted> {
            self.1.spend()?;
            self.0.artifacts.delete_run_artifacts(run_id).await
        }
    }
}
