//! The outbox (docs/DESIGN.md section 10) over a reference backend that a
//! switch makes unavailable, or that stores a write and then reports it
//! unavailable (a write whose outcome the caller cannot know).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use runstore::memory::{MemoryLogs, MemoryMetrics};
use runstore::outbox::Outbox;
use runstore::{
    Appended, BulkOutcome, Delivery, Error, ErrorKind, Event, EventQuery, ExecutionMetric, Lease,
    LeaseQuery, LeaseRequest, LogRepository, MetricQuery, MetricsRepository, MetricsSummary,
    NewEvent, Page, Pattern, PatternId, PatternQuery, Result, Run, RunFilter, RunId, RunQuery,
    RunStatus, RunUpdate, RunWithEvents, Storage, SummaryQuery, Timestamp, Version, WorkflowId,
    Written, async_trait,
};
use serde_json::json;

/// Makes a backend unavailable (`down`, or after `up_for` more calls), or
/// lets the next `unknown` writes through and then reports them
/// unavailable.
#[derive(Debug, Default)]
struct Switch {
    down: AtomicBool,
    unknown: AtomicU32,
    up_for: std::sync::Mutex<Option<u32>>,
}

impl Switch {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable("switched off", None));
        }
        let mut left = self.up_for.lock().unwrap();
        match *left {
            Some(0) => return Err(Error::unavailable("switched off after a while", None)),
            Some(n) => *left = Some(n - 1),
            None => {}
        }
        Ok(())
    }

    /// After a write went through: fail it anyway if an unknown outcome is due.
    fn after<T>(&self, r: Result<T>) -> Result<T> {
        let due = self
            .unknown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        match r {
            Ok(_) if due => Err(Error::unavailable("connection lost after the write", None)),
            other => other,
        }
    }
}

#[derive(Debug)]
struct FlakyLogs(Arc<MemoryLogs>, Arc<Switch>);
#[derive(Debug)]
struct FlakyMetrics(Arc<MemoryMetrics>, Arc<Switch>);

#[async_trait]
impl LogRepository for FlakyLogs {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        self.1.check()?;
        self.1.after(self.0.create_run(run).await)
    }
    async fn get_run(&self, id: &RunId) -> Result<Run> {
        self.1.check()?;
        self.0.get_run(id).await
    }
    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        self.1.check()?;
        self.1.after(self.0.update_status(id, update).await)
    }
    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        self.1.check()?;
        self.1.after(self.0.append_event(run_id, event).await)
    }
    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.1.check()?;
        self.1.after(self.0.append_events(run_id, events).await)
    }
    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        self.1.check()?;
        self.0.list_events(run_id, query).await
    }
    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        self.1.check()?;
        self.0.query_runs(query).await
    }
    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        self.1.check()?;
        self.0.count_runs(filter).await
    }
    async fn delete_run(&self, id: &RunId) -> Result<()> {
        self.1.check()?;
        self.0.delete_run(id).await
    }
    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        self.1.check()?;
        self.0.import_runs(runs).await
    }
    async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore::Deleted<RunId>> {
        self.1.check()?;
        self.0.delete_runs(ids).await
    }
    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        self.1.check()?;
        self.0.get_run_by_key(workflow, key).await
    }
    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        self.1.check()?;
        self.0.acquire_lease(request).await
    }
    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        self.1.check()?;
        self.0.release_lease(name, token).await
    }
    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        self.1.check()?;
        self.0.list_leases(query).await
    }
    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        self.1.check()?;
        self.0.record_delivery(id).await
    }
    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64> {
        self.1.check()?;
        self.0.prune_deliveries(before).await
    }
}

#[async_trait]
impl MetricsRepository for FlakyMetrics {
    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        self.1.check()?;
        self.1.after(self.0.record(metric).await)
    }
    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        self.1.check()?;
        self.1.after(self.0.record_many(metrics).await)
    }
    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        self.1.check()?;
        self.0.get(run_id).await
    }
    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        self.1.check()?;
        self.0.list(query).await
    }
    async fn delete(&self, run_id: &RunId) -> Result<()> {
        self.1.check()?;
        self.0.delete(run_id).await
    }
    async fn summary(&self, w: &WorkflowId, q: SummaryQuery) -> Result<MetricsSummary> {
        self.1.check()?;
        self.0.summary(w, q).await
    }
    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        self.1.check()?;
        self.0.upsert_pattern(pattern).await
    }
    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        self.1.check()?;
        self.0.get_pattern(id).await
    }
    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        self.1.check()?;
        self.0.list_patterns(query).await
    }
    async fn delete_many(&self, ids: &[RunId]) -> Result<runstore::Deleted<RunId>> {
        self.1.check()?;
        self.0.delete_many(ids).await
    }
}

/// The raw stores, the switch, and handles behind an outbox in `dir`.
struct Rig {
    raw_logs: Arc<MemoryLogs>,
    raw_metrics: Arc<MemoryMetrics>,
    switch: Arc<Switch>,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            raw_logs: Arc::new(MemoryLogs::default()),
            raw_metrics: Arc::new(MemoryMetrics::default()),
            switch: Arc::new(Switch::default()),
        }
    }

    fn handles(
        &self,
        dir: &std::path::Path,
    ) -> (Outbox, Arc<dyn LogRepository>, Arc<dyn MetricsRepository>) {
        let outbox = Outbox::open(dir).unwrap();
        let logs = outbox.wrap_logs(Arc::new(FlakyLogs(
            self.raw_logs.clone(),
            self.switch.clone(),
        )));
        let metrics = outbox.wrap_metrics(Arc::new(FlakyMetrics(
            self.raw_metrics.clone(),
            self.switch.clone(),
        )));
        (outbox, logs, metrics)
    }

    fn down(&self, down: bool) {
        self.switch.down.store(down, Ordering::SeqCst);
    }

    /// Up for `calls` more calls, then down (`None`: up).
    fn up_for(&self, calls: Option<u32>) {
        *self.switch.up_for.lock().unwrap() = calls;
    }

    async fn events(&self, run: &RunId) -> Vec<Event> {
        self.raw_logs
            .list_events(run, EventQuery::default().with_limit(1000))
            .await
            .unwrap()
            .items
    }
}

fn new_run(id: &str) -> Run {
    let mut run = Run::new(WorkflowId::new("agent").unwrap(), Version::FIRST);
    run.id = RunId::new(id).unwrap();
    run
}

fn ev(i: u32) -> NewEvent {
    NewEvent::new("step", json!({"i": i}))
}

#[tokio::test]
async fn outage_defers_in_order_and_the_drain_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let (outbox, logs, metrics) = rig.handles(dir.path());
    let run = new_run("r1");
    let w = logs.create_run(run.clone()).await.unwrap();
    assert!(w.inserted && !w.deferred);
    logs.append_event(&run.id, ev(0)).await.unwrap();

    rig.down(true);
    let a = logs.append_event(&run.id, ev(1)).await.unwrap();
    assert!(a.deferred && a.seq == 0, "{a:?}");
    let running = logs
        .update_status(&run.id, RunUpdate::running())
        .await
        .unwrap();
    assert_eq!(running.status, RunStatus::Running);
    let batch = logs
        .append_events(&run.id, vec![ev(2), ev(3)])
        .await
        .unwrap();
    assert!(batch.iter().all(|a| a.deferred));
    // Bad input is refused now, never deferred.
    let bad = logs
        .append_event(&run.id, NewEvent::new("bad\u{0}kind", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    // A backward status change is a conflict now, not at drain time.
    assert_eq!(
        logs.update_status(&run.id, RunUpdate::running())
            .await
            .map(|r| r.status)
            .unwrap(),
        RunStatus::Running
    );
    let finished = logs
        .update_status(
            &run.id,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
        )
        .await
        .unwrap();
    assert!(finished.ended_at.is_some());
    let m = ExecutionMetric::from_run(&finished).unwrap();
    let rec = metrics.record(m.clone()).await.unwrap();
    assert!(rec.deferred && !rec.inserted);
    let status = outbox.status().await.unwrap();
    assert_eq!(status.pending["logs"], 5, "{status:?}");
    assert_eq!(status.pending["metrics"], 1, "{status:?}");
    assert!(status.oldest.is_some());

    // Back up: the run's writes still go behind the deferred ones.
    rig.down(false);
    let after = logs.append_event(&run.id, ev(4)).await.unwrap();
    assert!(
        after.deferred,
        "a write must follow the run's deferred writes"
    );
    assert_eq!(
        rig.events(&run.id).await.len(),
        1,
        "reads show what is stored"
    );

    let report = outbox.drain().await.unwrap();
    assert_eq!((report.drained, report.rejected, report.left), (7, 0, 0));
    let events = rig.events(&run.id).await;
    let order: Vec<u64> = events
        .iter()
        .map(|e| e.payload["i"].as_u64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let stored = rig.raw_logs.get_run(&run.id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Succeeded);
    assert_eq!(
        stored.ended_at, finished.ended_at,
        "the end time is the deferred one"
    );
    assert_eq!(rig.raw_metrics.get(&run.id).await.unwrap(), m);
    assert_eq!(outbox.status().await.unwrap().total(), 0);
    // Nothing held any more: writes go straight to the backend.
    let direct = logs.append_event(&run.id, ev(5)).await.unwrap();
    assert_eq!((direct.deferred, direct.seq), (false, 6));
    assert_eq!(outbox.counters().deferred(), 7);
    assert_eq!(outbox.counters().drained(), 7);
}

#[tokio::test]
async fn unknown_outcomes_are_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let (outbox, logs, metrics) = rig.handles(dir.path());
    let run = new_run("r2");
    // Stored, then reported unavailable: deferred, and stored once.
    rig.switch.unknown.store(1, Ordering::SeqCst);
    assert!(logs.create_run(run.clone()).await.unwrap().deferred);
    outbox.drain().await.unwrap();
    rig.switch.unknown.store(3, Ordering::SeqCst);
    for i in 0..3 {
        assert!(logs.append_event(&run.id, ev(i)).await.unwrap().deferred);
    }
    // The first of them was stored by the backend before it failed; the
    // other two went straight to the outbox behind it.
    rig.switch.unknown.store(0, Ordering::SeqCst);
    let r = outbox.drain().await.unwrap();
    assert_eq!(r.rejected, 0);
    let events = rig.events(&run.id).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| {
        e.idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("outbox-"))
    }));
    // A metric stored, then reported unavailable.
    let mut finished = run.clone();
    finished.status = RunStatus::Failed;
    finished.ended_at = Some(Timestamp::now());
    logs.update_status(
        &run.id,
        RunUpdate::finished(RunStatus::Failed, finished.ended_at.unwrap()),
    )
    .await
    .unwrap();
    rig.switch.unknown.store(1, Ordering::SeqCst);
    let m = ExecutionMetric::from_run(&rig.raw_logs.get_run(&run.id).await.unwrap()).unwrap();
    assert!(metrics.record(m.clone()).await.unwrap().deferred);
    let r = outbox.drain().await.unwrap();
    assert_eq!((r.drained, r.rejected), (1, 0));
    assert_eq!(rig.raw_metrics.get(&run.id).await.unwrap(), m);
}

#[tokio::test]
async fn a_new_handle_drains_what_a_dead_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let run = new_run("r3");
    {
        let (_outbox, logs, _) = rig.handles(dir.path());
        logs.create_run(run.clone()).await.unwrap();
        rig.down(true);
        for i in 0..5 {
            assert!(logs.append_event(&run.id, ev(i)).await.unwrap().deferred);
        }
    }
    // A torn line from a crash mid-append (never acknowledged).
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("journal.ndjson"))
        .unwrap()
        .write_all(b"{\"entry\":\"torn")
        .unwrap();
    let (outbox, logs, _) = rig.handles(dir.path());
    // Still down: another deferred write lands after the torn bytes are cut.
    assert!(logs.append_event(&run.id, ev(5)).await.unwrap().deferred);
    assert_eq!(outbox.status().await.unwrap().pending["logs"], 6);
    let r = outbox.drain().await.unwrap();
    assert_eq!((r.drained, r.left), (0, 6), "nothing drains while down");
    rig.down(false);
    // The background drain of a fresh handle empties it.
    let _task = outbox.spawn_drain();
    for _ in 0..100 {
        if outbox.status().await.unwrap().total() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let order: Vec<u64> = rig
        .events(&run.id)
        .await
        .iter()
        .map(|e| e.payload["i"].as_u64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn contradictions_found_at_drain_are_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let (outbox, logs, _) = rig.handles(dir.path());
    let run = new_run("r4");
    logs.create_run(run.clone()).await.unwrap();
    rig.down(true);
    logs.update_status(
        &run.id,
        RunUpdate::finished(RunStatus::Failed, Timestamp::now()),
    )
    .await
    .unwrap();
    // Meanwhile another worker finished it differently, directly.
    rig.raw_logs
        .update_status(
            &run.id,
            RunUpdate::finished(RunStatus::Succeeded, Timestamp::now()),
        )
        .await
        .unwrap();
    rig.down(false);
    let r = outbox.drain().await.unwrap();
    assert_eq!((r.drained, r.rejected), (0, 1));
    let status = outbox.status().await.unwrap();
    assert_eq!((status.total(), status.rejected), (0, 1));
    let kept = std::fs::read_to_string(dir.path().join("rejected.ndjson")).unwrap();
    assert!(kept.contains("already finished"), "{kept}");
    assert_eq!(
        rig.raw_logs.get_run(&run.id).await.unwrap().status,
        RunStatus::Succeeded
    );
}

#[tokio::test]
async fn status_update_of_an_unknown_run_is_not_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let run = new_run("r5");
    rig.raw_logs.create_run(run.clone()).await.unwrap();
    let (outbox, logs, _) = rig.handles(dir.path());
    rig.down(true);
    let e = logs
        .update_status(&run.id, RunUpdate::running())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(outbox.status().await.unwrap().total(), 0);
}

#[tokio::test]
async fn configured_per_concern_in_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let ob = serde_json::to_string(&dir.path().join("outbox")).unwrap();
    let yaml = format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs: {{ type: memory, outbox: {{ path: {ob} }} }}\n  metrics: {{ type: memory, outbox: {{ path: {ob} }} }}\n  artifacts: {{ type: memory }}\n"
    );
    let storage = Storage::from_yaml_str(&yaml).await.unwrap();
    assert_eq!(storage.outboxes().len(), 1, "one folder, one outbox");
    let run = new_run("r6");
    let w = storage.logs.create_run(run.clone()).await.unwrap();
    assert!(w.inserted && !w.deferred);
    assert!(dir.path().join("outbox").is_dir());
    let bad = format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs: {{ type: memory }}\n  metrics: {{ type: memory }}\n  artifacts: {{ type: memory, outbox: {{ path: {ob} }} }}\n"
    );
    let e = Storage::from_yaml_str(&bad).await.unwrap_err();
    assert!(e.to_string().contains("logs and metrics"), "{e}");
    let no_path = "storage:\n  workflows: { type: memory }\n  logs: { type: memory, outbox: {} }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n";
    let e = Storage::from_yaml_str(no_path).await.unwrap_err();
    assert!(e.to_string().contains("outbox"), "{e}");
}

#[tokio::test]
async fn a_refused_write_in_a_merged_replay_is_found_and_the_rest_stored() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let (outbox, _, metrics) = rig.handles(dir.path());
    let finished = |id: &str| {
        let mut r = new_run(id);
        r.status = RunStatus::Succeeded;
        r.ended_at = Some(r.started_at);
        ExecutionMetric::from_run(&r).unwrap()
    };
    let m: Vec<ExecutionMetric> = ["m1", "m2", "m3"].iter().map(|id| finished(id)).collect();
    rig.down(true);
    for metric in &m {
        assert!(metrics.record(metric.clone()).await.unwrap().deferred);
    }
    // Meanwhile m2's metric was recorded differently, directly.
    let mut other = m[1].clone();
    other.duration_micros += 1;
    rig.raw_metrics.record(other.clone()).await.unwrap();
    rig.down(false);
    let r = outbox.drain().await.unwrap();
    assert_eq!((r.drained, r.rejected, r.left), (2, 1, 0));
    for i in [0, 2] {
        let stored = rig.raw_metrics.get(&m[i].run_id).await.unwrap();
        assert_eq!(stored, m[i]);
    }
    let kept = rig.raw_metrics.get(&other.run_id).await.unwrap();
    assert_eq!(kept, other);
}

#[tokio::test]
async fn a_read_only_open_refuses_an_outbox_with_pending_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ob_dir = dir.path().join("outbox");
    let ob = serde_json::to_string(&ob_dir).unwrap();
    let yaml = format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs: {{ type: memory, outbox: {{ path: {ob} }} }}\n  metrics: {{ type: memory }}\n  artifacts: {{ type: memory }}\n"
    );
    let config = runstore::Config::from_yaml_str(&yaml).unwrap();
    // No outbox folder yet: nothing pending, and none is created.
    let reader = Storage::open_read_only(&config).await.unwrap();
    assert!(reader.outboxes().is_empty());
    assert!(!ob_dir.exists());
    let e = reader.logs.create_run(new_run("r9")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

    // A write deferred by a process whose backend was down.
    let rig = Rig::new();
    let (_outbox, logs, _) = rig.handles(&ob_dir);
    rig.down(true);
    assert!(logs.create_run(new_run("r9")).await.unwrap().deferred);
    let e = Storage::open_read_only(&config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("drain"), "{e}");
}

#[tokio::test]
async fn a_deferred_keyed_run_whose_key_was_taken_meanwhile_keeps_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let (outbox, logs, metrics) = rig.handles(dir.path());
    let mut mine = new_run("r-mine");
    mine.external_key = Some("ticket-7".into());
    rig.down(true);
    assert!(logs.create_run(mine.clone()).await.unwrap().deferred);
    for i in 0..2 {
        assert!(logs.append_event(&mine.id, ev(i)).await.unwrap().deferred);
    }
    // Meanwhile another worker created the run of that key, directly.
    let mut theirs = new_run("r-theirs");
    theirs.external_key = Some("ticket-7".into());
    rig.raw_logs.create_run(theirs.clone()).await.unwrap();
    rig.down(false);

    let r = outbox.drain().await.unwrap();
    assert_eq!((r.drained, r.rejected), (3, 0), "{r:?}");
    // The keyed create returned the run holding the key; the writes made
    // to the deferred run went there, as they would have online.
    let order = |events: Vec<Event>| -> Vec<u64> {
        events
            .iter()
            .map(|e| e.payload["i"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(order(rig.events(&theirs.id).await), vec![0, 1]);
    assert_eq!(
        rig.raw_logs.get_run(&mine.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Later writes naming the deferred run go there directly, reads too.
    logs.append_event(&mine.id, ev(2)).await.unwrap();
    assert_eq!(logs.get_run(&mine.id).await.unwrap().id, theirs.id);
    let done = runstore::ExecutionMetric {
        run_id: mine.id.clone(),
        workflow_id: mine.workflow_id.clone(),
        workflow_version: mine.workflow_version,
        status: RunStatus::Succeeded,
        duration_micros: 10,
        recorded_at: Timestamp::now(),
        counters: Default::default(),
        values: Default::default(),
    };
    metrics.record(done).await.unwrap();
    assert_eq!(
        rig.raw_metrics.get(&theirs.id).await.unwrap().run_id,
        theirs.id
    );

    // Another process on the same folder finds the remap on disk.
    drop((outbox, logs, metrics));
    let (_outbox, logs, _) = rig.handles(dir.path());
    logs.append_event(&mine.id, ev(3)).await.unwrap();
    assert_eq!(order(rig.events(&theirs.id).await), vec![0, 1, 2, 3]);
}

/// A drain that stops part way moves the journal's head and leaves the
/// journal file as it is; another handle on the folder (as another process
/// would) sees the drained writes gone and sends each run's next write
/// where its earlier ones are.
#[tokio::test]
async fn a_partial_drain_is_seen_by_every_handle_on_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::new();
    let (outbox, logs, _) = rig.handles(dir.path());
    let (other, other_logs, _) = rig.handles(dir.path());
    let runs: Vec<Run> = (0..6).map(|i| new_run(&format!("p{i}"))).collect();
    for run in &runs {
        logs.create_run(run.clone()).await.unwrap();
        other_logs.get_run(&run.id).await.unwrap();
    }
    rig.down(true);
    for run in &runs {
        logs.update_status(&run.id, RunUpdate::running())
            .await
            .unwrap();
    }
    assert_eq!(other.status().await.unwrap().pending["logs"], 6);
    let journal = dir.path().join("journal.ndjson");
    let ino =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = ino(&journal);

    rig.down(false);
    rig.up_for(Some(2));
    let report = outbox.drain().await.unwrap();
    assert_eq!((report.drained, report.left), (2, 4), "{report:?}");
    assert_eq!(
        ino(&journal),
        before,
        "a head move does not rewrite the journal"
    );
    assert!(dir.path().join("journal.head").exists());
    let seen = other.status().await.unwrap();
    assert_eq!(seen, outbox.status().await.unwrap());
    assert_eq!(seen.pending["logs"], 4);

    rig.up_for(None);
    let drained = other_logs.append_event(&runs[0].id, ev(1)).await.unwrap();
    assert!(!drained.deferred, "run p0 has nothing pending: {drained:?}");
    let held = other_logs.append_event(&runs[5].id, ev(1)).await.unwrap();
    assert!(held.deferred, "run p5 still has a pending write: {held:?}");
    assert_eq!(outbox.status().await.unwrap().pending["logs"], 5);

    let report = other.drain().await.unwrap();
    assert_eq!((report.drained, report.left), (5, 0), "{report:?}");
    for handle in [&outbox, &other] {
        let status = handle.status().await.unwrap();
        assert_eq!((status.total(), status.bytes, status.oldest), (0, 0, None));
    }
    for run in &runs {
        let stored = rig.raw_logs.get_run(&run.id).await.unwrap();
        assert_eq!(stored.status, RunStatus::Running, "{}", run.id);
    }
    assert_eq!(rig.events(&runs[5].id).await.len(), 1);
}
