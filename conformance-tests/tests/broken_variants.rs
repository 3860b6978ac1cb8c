//! Proof that the suite can fail: the reference backend wrapped so that it
//! breaks exactly one promise of docs/DESIGN.md section 4, and for each such
//! variant the rules that must notice it. The unbroken wrapper (pure
//! delegation) must pass every rule, so a failure below is the break being
//! caught, not the wrapper.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use runstore_conformance::{
    Capabilities, Capability, Outcome, StoreFactory, TestStores, run_all, run_rule,
};
use runstore_core::memory::{MemoryArtifacts, MemoryLogs, MemoryMetrics, MemoryWorkflows};
use runstore_core::{
    Appended, ArtifactInfo, ArtifactKey, ArtifactPath, ArtifactQuery, ArtifactReader,
    ArtifactStore, ArtifactStoreExt, ArtifactsDeleted, BulkOutcome, BundleRequest, ByteStream,
    Deleted, Delivery, EncodedEvent, EncodedRun, Error, ErrorKind, Event, EventQuery,
    ExecutionMetric, Lease, LeaseQuery, LeaseRequest, LogRepository, LogRepositoryExt, MetricQuery,
    MetricsRepository, MetricsSummary, NewEvent, Page, Pattern, PatternId, PatternQuery, Phase,
    PutOptions, Result, Run, RunFilter, RunId, RunQuery, RunUpdate, RunWithEvents, StoreSet,
    SummaryQuery, Timestamp, Version, WorkflowDefinition, WorkflowId, WorkflowQuery,
    WorkflowRepository, Written, async_trait, validate_limit,
};
use tokio::io::AsyncReadExt;

/// The one promise a wrapper breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Break {
    /// Nothing: pure delegation.
    Nothing,
    /// Storing a stored workflow version with other content replaces it.
    WorkflowOverwrite,
    /// A finished run takes another terminal status or end time.
    FinishedRunChanges,
    /// An idempotency key is ignored: the event is stored again.
    IdempotencyKeyTwice,
    /// Event numbers skip 3: 1, 2, 4, 5 ...
    EventNumberGap,
    /// Recording identical metrics again counts the run twice.
    MetricCountedTwice,
    /// Other bytes on a stored path replace it without a token.
    ArtifactOverwriteWithoutToken,
    /// Reads skip the hash check and return tampered bytes.
    ReadSkipsVerification,
    /// Each bundle carries a varying member, so identical calls differ.
    BundleVaries,
    /// `query_runs` ignores its cursor (answers the first page again).
    RunQueryIgnoresCursor,
    /// `query_runs` returns each page oldest first.
    RunQueryIgnoresOrder,
    /// `query_runs` ignores `oldest_first`: always newest first.
    RunQueryIgnoresOldestFirst,
    /// Metric `list` ignores its cursor.
    MetricListIgnoresCursor,
    /// Artifact `list` sorts by the string `run/phase/path`, not the tuple.
    ArtifactListStringOrder,
    /// Percentiles taken at the 0-based index `p * n / 100` instead of by
    /// nearest rank.
    PercentileByFloorIndex,
    /// `record_many` records one by one: a conflict leaves a partial batch.
    RecordManyNotAtomic,
    /// Patterns listed oldest first.
    PatternsOldestFirst,
    /// Event kinds are stored without validation (control characters
    /// replaced instead of refused).
    EventKindNotValidated,
    /// Artifact content types are stored without validation.
    ContentTypeNotValidated,
    /// A workflow version named as parent "deletes" (answers Ok) anyway.
    WorkflowDeleteIgnoresChildren,
    /// `query_runs` ignores the end-time bounds of its filter.
    EndTimeFilterIgnored,
    /// Every acquisition answers fencing token 1.
    LeaseTokenNotFenced,
    /// `create_run` drops the external key, so a repeated key stores a
    /// second run.
    ExternalKeyIgnored,
    /// Every delivery is reported new.
    DeliveryAlwaysNew,
    /// Summaries keep counting deleted metrics (counters only ever grow).
    SummaryIgnoresDeletes,
    /// Value sums added up as plain f64 in run id order, so huge values
    /// that cancel swallow the small ones.
    SummarySumNotExact,
    /// While a bulk load is under way, `query_runs` ignores the status
    /// filter (as a backend reading around an index it dropped might).
    BulkLoadStatusFilterIgnored,
    /// `events_of_small_runs` takes a run of exactly `max` events for a
    /// small one (`<=` for `<`).
    SmallRunsBoundInclusive,
    /// `events_of_small_runs_encoded` stops a line short: the last event
    /// of each run is left out.
    EncodedReadDropsLast,
    /// `import_runs_encoded` takes a run already stored for the same one
    /// without comparing it, so a payload that differs is no conflict.
    EncodedImportIgnoresStored,
}

fn ctrl_to(s: &str, with: char) -> String {
    s.chars()
        .map(|c| if c.is_control() { with } else { c })
        .collect()
}

// ---------------------------------------------------------------- workflows

#[derive(Debug)]
struct Workflows {
    inner: MemoryWorkflows,
    brk: Break,
    /// Versions "overwritten" by the broken store.
    overrides: Mutex<BTreeMap<(WorkflowId, Version), WorkflowDefinition>>,
}

impl Workflows {
    fn over(&self, d: WorkflowDefinition) -> WorkflowDefinition {
        let o = self.overrides.lock().expect("lock");
        o.get(&(d.id.clone(), d.version)).cloned().unwrap_or(d)
    }
}

#[async_trait]
impl WorkflowRepository for Workflows {
    async fn store(&self, def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>> {
        match self.inner.store(def.clone()).await {
            Err(e) if e.kind() == ErrorKind::Conflict && self.brk == Break::WorkflowOverwrite => {
                self.overrides
                    .lock()
                    .expect("lock")
                    .insert((def.id.clone(), def.version), def.clone());
                Ok(Written::inserted(def))
            }
            other => other.map(|mut w| {
                w.record = self.over(w.record);
                w
            }),
        }
    }
    async fn get(&self, id: &WorkflowId, version: Version) -> Result<WorkflowDefinition> {
        self.inner.get(id, version).await.map(|d| self.over(d))
    }
    async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition> {
        self.inner.get_latest(id).await.map(|d| self.over(d))
    }
    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
        Ok(self
            .inner
            .list_versions(id)
            .await?
            .into_iter()
            .map(|d| self.over(d))
            .collect())
    }
    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
        let mut p = self.inner.list(query).await?;
        p.items = p.items.into_iter().map(|d| self.over(d)).collect();
        Ok(p)
    }
    async fn delete(&self, id: &WorkflowId, version: Version) -> Result<()> {
        match self.inner.delete(id, version).await {
            Err(e)
                if e.kind() == ErrorKind::Conflict
                    && self.brk == Break::WorkflowDeleteIgnoresChildren =>
            {
                Ok(())
            }
            other => other,
        }
    }
}

// ---------------------------------------------------------------- logs

#[derive(Debug)]
struct Logs {
    inner: MemoryLogs,
    brk: Break,
    loading: std::sync::atomic::AtomicBool,
}

impl Logs {
    fn renumber(&self, seq: u64) -> u64 {
        if self.brk == Break::EventNumberGap && seq >= 3 {
            seq + 1
        } else {
            seq
        }
    }
    fn prepare(&self, mut e: NewEvent) -> NewEvent {
        if self.brk == Break::IdempotencyKeyTwice {
            e.idempotency_key = None;
        }
        if self.brk == Break::EventKindNotValidated {
            e.kind = ctrl_to(&e.kind, '?');
        }
        e
    }
}

#[async_trait]
impl LogRepository for Logs {
    async fn create_run(&self, mut run: Run) -> Result<Written<Run>> {
        if self.brk == Break::ExternalKeyIgnored {
            run.external_key = None;
        }
        self.inner.create_run(run).await
    }
    async fn get_run(&self, id: &RunId) -> Result<Run> {
        self.inner.get_run(id).await
    }
    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        if self.brk == Break::FinishedRunChanges {
            let stored = self.inner.get_run(id).await?;
            if stored.status.is_terminal()
                && update.status.is_terminal()
                && (update.status != stored.status
                    || update.ended_at.is_some_and(|e| Some(e) != stored.ended_at))
            {
                // Rewrite the finished run with the new outcome.
                let events = self.inner.all_events(id).await?;
                let mut run = stored.clone();
                run.status = update.status;
                run.ended_at = update.ended_at.or(stored.ended_at);
                self.inner.delete_run(id).await?;
                self.inner
                    .import_runs(vec![RunWithEvents {
                        run: run.clone(),
                        events,
                    }])
                    .await?;
                return Ok(run);
            }
        }
        self.inner.update_status(id, update).await
    }
    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        let mut a = self.inner.append_event(run_id, self.prepare(event)).await?;
        a.seq = self.renumber(a.seq);
        Ok(a)
    }
    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        let events = events.into_iter().map(|e| self.prepare(e)).collect();
        let mut out = self.inner.append_events(run_id, events).await?;
        for a in &mut out {
            a.seq = self.renumber(a.seq);
        }
        Ok(out)
    }
    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        let mut p = self.inner.list_events(run_id, query).await?;
        for e in &mut p.items {
            e.seq = self.renumber(e.seq);
        }
        Ok(p)
    }
    async fn events_of_small_runs(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<Event>>>> {
        if self.brk == Break::SmallRunsBoundInclusive {
            return self
                .inner
                .events_of_small_runs(ids, max_events.saturating_add(1))
                .await;
        }
        self.inner.events_of_small_runs(ids, max_events).await
    }
    async fn events_of_small_runs_encoded(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<EncodedEvent>>>> {
        let mut read = self
            .inner
            .events_of_small_runs_encoded(ids, max_events)
            .await?;
        if self.brk == Break::EncodedReadDropsLast {
            for events in read.iter_mut().flatten() {
                events.pop();
            }
        }
        Ok(read)
    }
    async fn import_runs_encoded(&self, runs: Vec<EncodedRun>) -> Result<BulkOutcome> {
        if self.brk != Break::EncodedImportIgnoresStored {
            return self.inner.import_runs_encoded(runs).await;
        }
        let mut absent = Vec::new();
        let mut unchanged = 0;
        for r in runs {
            match self.inner.get_run(&r.run.id).await {
                Ok(_) => unchanged += 1,
                Err(_) => absent.push(r),
            }
        }
        let mut out = self.inner.import_runs_encoded(absent).await?;
        out.unchanged += unchanged;
        Ok(out)
    }
    async fn query_runs(&self, mut query: RunQuery) -> Result<Page<Run>> {
        if self.brk == Break::BulkLoadStatusFilterIgnored && self.loading.load(Ordering::SeqCst) {
            query.filter.statuses.clear();
        }
        if self.brk == Break::EndTimeFilterIgnored {
            query.filter.ended_from = None;
            query.filter.ended_before = None;
        }
        if self.brk == Break::RunQueryIgnoresCursor && query.cursor.is_some() {
            query.cursor = None;
            let mut p = self.inner.query_runs(query).await?;
            // Stop the caller's loop: the first page again, as the last.
            p.next = None;
            return Ok(p);
        }
        if self.brk == Break::RunQueryIgnoresOldestFirst {
            query.ascending = false;
        }
        let mut p = self.inner.query_runs(query).await?;
        if self.brk == Break::RunQueryIgnoresOrder {
            p.items.reverse();
        }
        Ok(p)
    }
    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        self.inner.count_runs(filter).await
    }
    async fn begin_bulk_load(&self, _: runstore_core::BulkLoadOptions) -> Result<()> {
        self.loading.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn end_bulk_load(&self) -> Result<()> {
        self.loading.store(false, Ordering::SeqCst);
        Ok(())
    }
    async fn delete_run(&self, id: &RunId) -> Result<()> {
        self.inner.delete_run(id).await
    }
    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        self.inner.import_runs(runs).await
    }
    async fn delete_runs(&self, ids: &[RunId]) -> Result<Deleted<RunId>> {
        self.inner.delete_runs(ids).await
    }
    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        self.inner.get_run_by_key(workflow, key).await
    }
    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        let mut lease = self.inner.acquire_lease(request).await?;
        if self.brk == Break::LeaseTokenNotFenced {
            lease.token = 1;
        }
        Ok(lease)
    }
    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        self.inner.release_lease(name, token).await
    }
    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        self.inner.list_leases(query).await
    }
    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        let mut w = self.inner.record_delivery(id).await?;
        if self.brk == Break::DeliveryAlwaysNew {
            w.inserted = true;
        }
        Ok(w)
    }
    async fn prune_deliveries(&self, recorded_before: Timestamp) -> Result<u64> {
        self.inner.prune_deliveries(recorded_before).await
    }
}

// ---------------------------------------------------------------- metrics

#[derive(Debug)]
struct Metrics {
    inner: MemoryMetrics,
    brk: Break,
    dups: AtomicU64,
    /// Every metric ever recorded, never deleted: the summaries of
    /// [`Break::SummaryIgnoresDeletes`].
    shadow: MemoryMetrics,
}

#[async_trait]
impl MetricsRepository for Metrics {
    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        let w = self.inner.record(metric.clone()).await?;
        let _ = self.shadow.record(metric.clone()).await;
        if !w.inserted && self.brk == Break::MetricCountedTwice {
            // A retried writer that inserts another row: counted twice.
            let n = self.dups.fetch_add(1, Ordering::Relaxed);
            let mut dup = metric;
            dup.run_id = RunId::new(format!("{}-dup{n}", dup.run_id))?;
            self.inner.record(dup).await?;
        }
        Ok(w)
    }
    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        if self.brk == Break::RecordManyNotAtomic {
            let mut out = BulkOutcome::default();
            for m in metrics {
                if self.inner.record(m).await?.inserted {
                    out.inserted += 1;
                } else {
                    out.unchanged += 1;
                }
            }
            return Ok(out);
        }
        let out = self.inner.record_many(metrics.clone()).await?;
        for m in metrics {
            let _ = self.shadow.record(m).await;
        }
        Ok(out)
    }
    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        self.inner.get(run_id).await
    }
    async fn list(&self, mut query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        if self.brk == Break::MetricListIgnoresCursor && query.cursor.is_some() {
            query.cursor = None;
            let mut p = self.inner.list(query).await?;
            p.next = None;
            return Ok(p);
        }
        self.inner.list(query).await
    }
    async fn delete(&self, run_id: &RunId) -> Result<()> {
        self.inner.delete(run_id).await
    }
    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        let version = query.workflow_version;
        if self.brk == Break::SummaryIgnoresDeletes {
            return self.shadow.summary(workflow_id, query).await;
        }
        let mut s = self.inner.summary(workflow_id, query).await?;
        if self.brk == Break::SummarySumNotExact {
            let q = MetricQuery::default()
                .with_workflow(workflow_id.clone(), version)
                .with_limit(10_000);
            let all = self.inner.list(q).await?.items;
            for (name, stats) in s.values.iter_mut() {
                stats.sum = all.iter().filter_map(|m| m.values.get(name)).sum();
                stats.mean = stats.sum / stats.count as f64;
            }
        }
        if self.brk == Break::PercentileByFloorIndex
            && let Some(d) = s.duration.as_mut()
        {
            let mut durations = Vec::new();
            let mut cursor = None;
            loop {
                let q = MetricQuery::default()
                    .with_workflow(workflow_id.clone(), version)
                    .with_limit(10_000)
                    .with_cursor(cursor);
                let p = self.inner.list(q).await?;
                durations.extend(p.items.iter().map(|m| m.duration_micros));
                match p.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            durations.sort_unstable();
            let n = durations.len();
            let at = |p: usize| durations[(p * n / 100).min(n - 1)];
            (d.p50, d.p95, d.p99) = (at(50), at(95), at(99));
        }
        Ok(s)
    }
    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        self.inner.upsert_pattern(pattern).await
    }
    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        self.inner.get_pattern(id).await
    }
    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        let mut p = self.inner.list_patterns(query).await?;
        if self.brk == Break::PatternsOldestFirst {
            p.items.reverse();
        }
        Ok(p)
    }
    async fn delete_many(&self, run_ids: &[RunId]) -> Result<Deleted<RunId>> {
        self.inner.delete_many(run_ids).await
    }
}

// ---------------------------------------------------------------- artifacts

#[derive(Debug)]
struct Artifacts {
    inner: Arc<MemoryArtifacts>,
    brk: Break,
    nonce: AtomicU64,
}

#[async_trait]
impl ArtifactStore for Artifacts {
    async fn put(
        &self,
        key: &ArtifactKey,
        mut body: ByteStream,
        mut options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        if self.brk == Break::ContentTypeNotValidated {
            options.content_type = options.content_type.map(|t| ctrl_to(&t, ' '));
        }
        if self.brk != Break::ArtifactOverwriteWithoutToken {
            return self.inner.put(key, body, options).await;
        }
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::io("reading a body", e))?;
        match self
            .inner
            .put_bytes(key, bytes.clone(), options.clone())
            .await
        {
            Err(e) if e.kind() == ErrorKind::Immutable => {
                self.inner.delete(key).await?;
                self.inner.put_bytes(key, bytes, options).await
            }
            other => other,
        }
    }
    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
        let mut r = self.inner.get(key).await?;
        if self.brk == Break::ReadSkipsVerification {
            // Keep whatever was read before the hash check at the end failed.
            let mut bytes = Vec::new();
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = r.body.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buf[..n]);
            }
            r.body = Box::new(std::io::Cursor::new(bytes));
        }
        Ok(r)
    }
    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
        self.inner.head(key).await
    }
    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
        if self.brk != Break::ArtifactListStringOrder {
            return self.inner.list(query).await;
        }
        let limit = validate_limit(query.limit)?;
        let after: Option<ArtifactKey> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let p = self
                .inner
                .list(query.clone().with_limit(10_000).with_cursor(cursor))
                .await?;
            all.extend(p.items);
            match p.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        all.sort_by_key(|i| i.key.to_string());
        let rest: Vec<_> = all
            .into_iter()
            .filter(|i| {
                after
                    .as_ref()
                    .is_none_or(|a| i.key.to_string() > a.to_string())
            })
            .take(limit + 1)
            .collect();
        Ok(Page::from_overfetch(rest, limit, |i| i.key.clone()))
    }
    async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn bundle(&self, mut request: BundleRequest) -> Result<Written<ArtifactInfo>> {
        if self.brk == Break::BundleVaries {
            let n = self.nonce.fetch_add(1, Ordering::Relaxed);
            let phase = Phase::new("nonce")?;
            let path = ArtifactPath::new(format!("n{n}"))?;
            let key = ArtifactKey::new(request.run_id.clone(), phase.clone(), path.clone());
            self.inner
                .put_bytes(&key, n.to_string().into_bytes(), PutOptions::default())
                .await?;
            request.members.push((phase, path));
        }
        runstore_core::bundle::write_bundle(self, request).await
    }
    async fn delete_run_artifacts(&self, run_id: &RunId) -> Result<ArtifactsDeleted> {
        self.inner.delete_run_artifacts(run_id).await
    }
}

// ---------------------------------------------------------------- factory

struct BrokenFactory(Break);

#[async_trait]
impl StoreFactory for BrokenFactory {
    fn name(&self) -> String {
        format!("memory broken by {:?}", self.0)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with(Capability::TamperArtifacts)
    }
    async fn create(&self) -> Result<TestStores> {
        let brk = self.0;
        let raw = Arc::new(MemoryArtifacts::default());
        let stores = StoreSet {
            workflows: Arc::new(Workflows {
                inner: MemoryWorkflows::default(),
                brk,
                overrides: Mutex::new(BTreeMap::new()),
            }),
            logs: Arc::new(Logs {
                inner: MemoryLogs::default(),
                brk,
                loading: Default::default(),
            }),
            metrics: Arc::new(Metrics {
                inner: MemoryMetrics::default(),
                brk,
                dups: AtomicU64::new(0),
                shadow: MemoryMetrics::default(),
            }),
            artifacts: Arc::new(Artifacts {
                inner: raw.clone(),
                brk,
                nonce: AtomicU64::new(0),
            }),
        };
        Ok(TestStores::with_guard(stores, raw))
    }
    async fn tamper_artifact(&self, stores: &TestStores, key: &ArtifactKey) -> Result<()> {
        let raw = stores
            .guard
            .downcast_ref::<MemoryArtifacts>()
            .ok_or_else(|| Error::backend("not a broken memory store set", None))?;
        if raw.tamper(key, |b| match b.first_mut() {
            Some(x) => *x ^= 0xff,
            None => b.push(0),
        }) {
            Ok(())
        } else {
            Err(Error::not_found(format!("artifact {key}")))
        }
    }
}

const MODEL: &str = "model_based_random_operations_match_reference";

/// Runs `rules` against the variant and asserts each fails for a real
/// reason (not a placeholder rule that fails whatever the backend does).
async fn assert_caught(brk: Break, rules: &[&str]) {
    let f = BrokenFactory(brk);
    let mut missed = Vec::new();
    for rule in rules {
        match run_rule(&f, rule).await {
            Outcome::Failed(m)
                if m.contains("NOT_WRITTEN_YET") || m.starts_with("no rule named") =>
            {
                missed.push(format!("{rule}: cannot judge yet: {m}"))
            }
            Outcome::Failed(m) => {
                eprintln!(
                    "{brk:?} caught by {rule}:\n{}\n",
                    m.lines().take(6).collect::<Vec<_>>().join("\n")
                )
            }
            other => missed.push(format!("{rule}: {other:?}")),
        }
    }
    assert!(
        missed.is_empty(),
        "break {brk:?} was not caught by:\n{}",
        missed.join("\n")
    );
}

macro_rules! variant {
    ($name:ident, $brk:expr, [$($rule:expr),+ $(,)?]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            assert_caught($brk, &[$($rule),+]).await;
        }
    };
}

variant!(
    workflow_overwrite_is_caught,
    Break::WorkflowOverwrite,
    ["workflow_store_other_content_conflicts", MODEL]
);
variant!(
    finished_run_change_is_caught,
    Break::FinishedRunChanges,
    ["run_terminal_status_and_end_time_set_once", MODEL]
);
variant!(
    idempotency_key_twice_is_caught,
    Break::IdempotencyKeyTwice,
    ["event_idempotency_key_returns_original_seq", MODEL]
);
variant!(
    event_number_gap_is_caught,
    Break::EventNumberGap,
    ["event_numbering_starts_at_one_without_gaps", MODEL]
);
variant!(
    metric_counted_twice_is_caught,
    Break::MetricCountedTwice,
    ["metric_record_is_idempotent_and_never_counts_twice", MODEL]
);
variant!(
    artifact_overwrite_without_token_is_caught,
    Break::ArtifactOverwriteWithoutToken,
    ["artifact_put_other_bytes_is_immutable", MODEL]
);
variant!(
    read_skipping_verification_is_caught,
    Break::ReadSkipsVerification,
    ["artifact_read_detects_tampering", MODEL]
);
variant!(
    varying_bundle_is_caught,
    Break::BundleVaries,
    [
        "bundle_is_deterministic_with_manifest",
        "bundle_missing_member_writes_nothing",
        MODEL
    ]
);
variant!(
    run_query_ignoring_cursor_is_caught,
    Break::RunQueryIgnoresCursor,
    ["run_query_cursor_stable_under_inserts", MODEL]
);
variant!(
    run_query_ignoring_order_is_caught,
    Break::RunQueryIgnoresOrder,
    ["run_query_orders_by_start_then_id_descending", MODEL]
);
variant!(
    run_query_ignoring_oldest_first_is_caught,
    Break::RunQueryIgnoresOldestFirst,
    ["run_query_oldest_first"]
);
variant!(
    metric_list_ignoring_cursor_is_caught,
    Break::MetricListIgnoresCursor,
    ["metric_list_paged_by_run_id", MODEL]
);
variant!(
    artifact_list_in_string_order_is_caught,
    Break::ArtifactListStringOrder,
    ["artifact_list_by_run_and_phase_ordered", MODEL]
);
variant!(
    percentile_by_floor_index_is_caught,
    Break::PercentileByFloorIndex,
    [
        "metric_summary_percentiles_by_nearest_rank",
        "metric_summary_matches_reference",
        MODEL
    ]
);
variant!(
    record_many_not_atomic_is_caught,
    Break::RecordManyNotAtomic,
    ["metric_record_many_is_all_or_nothing", MODEL]
);
variant!(
    patterns_oldest_first_is_caught,
    Break::PatternsOldestFirst,
    ["pattern_list_newest_first_and_paged", MODEL]
);
variant!(
    unvalidated_event_kind_is_caught,
    Break::EventKindNotValidated,
    ["hostile_text_rejected_by_backend", MODEL]
);
variant!(
    unvalidated_content_type_is_caught,
    Break::ContentTypeNotValidated,
    [
        "hostile_text_rejected_by_backend",
        "artifact_put_records_hash_size_type_creator_time",
        MODEL
    ]
);

variant!(
    summary_ignoring_deletes_is_caught,
    Break::SummaryIgnoresDeletes,
    ["metric_summary_is_kept_through_every_write"]
);
variant!(
    summary_sum_not_exact_is_caught,
    Break::SummarySumNotExact,
    ["metric_summary_is_kept_through_every_write"]
);
variant!(
    bulk_load_status_filter_ignored_is_caught,
    Break::BulkLoadStatusFilterIgnored,
    ["bulk_load_changes_no_answer"]
);

variant!(
    small_runs_bound_inclusive_is_caught,
    Break::SmallRunsBoundInclusive,
    ["event_reads_of_small_runs_tell_large_ones_apart"]
);
variant!(
    encoded_read_dropping_an_event_is_caught,
    Break::EncodedReadDropsLast,
    ["event_reads_encoded_equal_parsed_reads"]
);
variant!(
    encoded_import_ignoring_stored_runs_is_caught,
    Break::EncodedImportIgnoresStored,
    ["run_import_encoded_equals_import"]
);

/// The wrapper itself is faithful: without a break every rule passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbroken_wrapper_passes_every_rule() {
    let report = run_all(&BrokenFactory(Break::Nothing)).await;
    eprintln!("{report}");
    report.assert_passed();
    // A memory store has no second handle, and this binary does not count
    // its heap.
    let mut skipped = report.skipped();
    skipped.sort_unstable();
    assert_eq!(
        skipped,
        [
            "artifact_large_streams_in_bounded_memory",
            "bulk_load_unended_is_whole_after_reopen",
            "run_shared_storage_appends_from_two_handles",
            "run_shared_storage_survives_reopen",
        ],
        "unexpected skips"
    );
}
variant!(
    workflow_delete_ignoring_children_is_caught,
    Break::WorkflowDeleteIgnoresChildren,
    ["lifecycle_workflow_delete_with_children"]
);
variant!(
    end_time_filter_ignored_is_caught,
    Break::EndTimeFilterIgnored,
    ["lifecycle_runs_filter_by_end_time"]
);
variant!(
    lease_token_not_fenced_is_caught,
    Break::LeaseTokenNotFenced,
    [
        "coordination_lease_release_needs_current_token",
        "coordination_lease_expires_and_token_grows"
    ]
);
variant!(
    external_key_ignored_is_caught,
    Break::ExternalKeyIgnored,
    ["coordination_external_key_create_is_idempotent"]
);
variant!(
    delivery_always_new_is_caught,
    Break::DeliveryAlwaysNew,
    ["coordination_delivery_recorded_once"]
);
