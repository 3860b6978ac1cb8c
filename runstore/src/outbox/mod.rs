//! Degraded mode (docs/DESIGN.md section 10): when the logs or metrics
//! backend is down, writes go to a local outbox and the agent keeps going.
//!
//! An outbox is configured per concern, in the concern's mapping:
//!
//! ```yaml
//! storage:
//!   logs:    { type: postgres, url: "postgres://app@db/runs", outbox: { path: ./outbox } }
//!   metrics: { type: postgres, url: "postgres://app@db/runs", outbox: { path: ./outbox } }
//! ```
//!
//! [`crate::Storage`] then wraps the concern's handle: a write that fails
//! with `Unavailable` is appended durably to the outbox (fsync, under a file
//! lock: several processes may share one folder) and acknowledged as
//! **deferred** (`Written::deferred`, `Appended::deferred`,
//! `BulkOutcome::deferred`). Later writes of a run whose writes the outbox
//! holds go there too, so per-run order holds. A drain replays the outbox
//! in order, exactly once (runs by id, events by idempotency key, metrics
//! by run id), in the background while the process runs, at every open,
//! and on demand ([`Outbox::drain`], `runstore outbox drain`). Every event
//! gets an idempotency key before its first attempt (`outbox-<uuid>` when
//! the caller gave none), so a write whose outcome was unknown (stored, then
//! the connection died) is not stored twice. A run created deferred with an
//! external key another run took meanwhile resolves, at drain, to that run
//! (the keyed create's rule); its writes follow it there, durably remapped
//! (`remaps.ndjson`). Reads go to the backend: deferred writes show once
//! drained.
//!
//! `update_status` can be deferred when the outbox knows the run's state
//! (the run was created or last read or written through this handle);
//! otherwise its `Unavailable` error is returned and nothing is deferred.

mod journal;
mod wrappers;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use runstore_core::{
    ErrorKind, ExecutionMetric, LogRepository, MetricsRepository, Result, RunId, Timestamp,
};
use serde::Serialize;

use journal::{Change, Entry, Journal, Op, Seen, Stamp};
pub use wrappers::{OutboxLogs, OutboxMetrics};

/// How often the background task looks at a non-empty outbox.
const DRAIN_INTERVAL: Duration = Duration::from_millis(500);
/// How a drain goes.
///
/// ```
/// use runstore::outbox::DrainOptions;
/// assert_eq!(DrainOptions::default().batch, 10_000);
/// assert_eq!(DrainOptions::default().with_batch(500).batch, 500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainOptions {
    /// Entries read and replayed between two moves of the journal's head:
    /// the entries in memory at once (a few MiB at the default, 10,000),
    /// and the most a drain killed part way replays again.
    pub batch: usize,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions { batch: 10_000 }
    }
}

impl DrainOptions {
    /// Sets [`DrainOptions::batch`] (at least 1).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }
}

/// Counters since this handle was opened.
#[derive(Debug, Default)]
pub struct OutboxCounters {
    deferred: AtomicU64,
    drained: AtomicU64,
    rejected: AtomicU64,
}

impl OutboxCounters {
    /// Writes deferred.
    pub fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }
    /// Deferred writes stored by drains.
    pub fn drained(&self) -> u64 {
        self.drained.load(Ordering::Relaxed)
    }
    /// Deferred writes the backend refused for good (kept in
    /// `rejected.ndjson`).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// What an outbox holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStatus {
    /// The folder.
    pub path: PathBuf,
    /// Pending writes per concern (`logs`, `metrics`).
    pub pending: BTreeMap<String, u64>,
    /// When the oldest pending write was deferred.
    pub oldest: Option<Timestamp>,
    /// Writes rejected for good so far (in `rejected.ndjson`).
    pub rejected: u64,
    /// Size of the pending entries in the journal, in bytes.
    pub bytes: u64,
}

impl OutboxStatus {
    /// Pending writes of every concern.
    pub fn total(&self) -> u64 {
        self.pending.values().sum()
    }
}

/// What one drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    /// Writes stored (or found already stored).
    pub drained: u64,
    /// Writes the backend refused for good, moved to `rejected.ndjson`.
    pub rejected: u64,
    /// Writes still pending because the backend was unavailable again.
    pub left: u64,
}

/// Most events or metrics one merged replay call carries.
const MERGE_MAX: usize = 1000;

/// How many entries from the start of `entries` one call can replay:
/// consecutive appends to the same run, or consecutive metrics, up to
/// [`MERGE_MAX`] records.
fn mergeable(entries: &[Entry]) -> usize {
    let size = |op: &Op| match op {
        Op::AppendEvents { events, .. } => events.len(),
        Op::RecordMetrics { metrics } => metrics.len(),
        _ => 1,
    };
    let first = &entries[0].op;
    let mut records = size(first);
    let mut n = 1;
    for e in &entries[1..] {
        let same = match (first, &e.op) {
            (Op::AppendEvents { run_id: a, .. }, Op::AppendEvents { run_id: b, .. }) => a == b,
            (Op::RecordMetrics { .. }, Op::RecordMetrics { metrics }) => {
                // A run's metric twice in one batch is refused by
                // `record_many`; such entries replay one by one.
                metrics.iter().all(|m| {
                    !entries[..n]
                        .iter()
                        .any(|prev| prev.op.metric_runs().any(|r| *r == m.run_id))
                })
            }
            _ => false,
        };
        if !same || records + size(&e.op) > MERGE_MAX {
            break;
        }
        records += size(&e.op);
        n += 1;
    }
    n
}

/// One write doing what `entries` (see [`mergeable`]) do in turn.
fn merge(entries: &[Entry]) -> Op {
    match &entries[0].op {
        Op::AppendEvents { run_id, .. } => Op::AppendEvents {
            run_id: run_id.clone(),
            events: entries
                .iter()
                .flat_map(|e| match &e.op {
                    Op::AppendEvents { events, .. } => events.clone(),
                    _ => Vec::new(),
                })
                .collect(),
        },
        _ => Op::RecordMetrics {
            metrics: entries
                .iter()
                .flat_map(|e| match &e.op {
                    Op::RecordMetrics { metrics } => metrics.clone(),
                    _ => Vec::new(),
                })
                .collect(),
        },
    }
}

/// The cached view of the journal: which runs have pending writes. It
/// counts per run, so entries drained since the last look are taken out
/// without reading the rest of the journal again.
#[derive(Default)]
struct View {
    stamp: Stamp,
    /// What of the journal the view holds.
    seen: Seen,
    log_runs: BTreeMap<RunId, u64>,
    metric_runs: BTreeMap<RunId, u64>,
    logs: u64,
    metrics: u64,
    /// When pending entries were deferred, with how many at each time.
    deferred_at: BTreeMap<Timestamp, u64>,
}

/// Adds one to `key`'s count (`up`), or takes one away, dropping it at zero.
fn bump<K: Ord + Clone>(map: &mut BTreeMap<K, u64>, key: &K, up: bool) {
    if up {
        *map.entry(key.clone()).or_default() += 1;
    } else if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl View {
    /// Takes in a change the journal reported.
    fn apply(&mut self, change: Change<'_>) {
        match change {
            Change::Reset => *self = View::default(),
            Change::Added(e) => self.count(e, true),
            Change::Drained(e) => self.count(e, false),
        }
    }

    fn count(&mut self, e: &Entry, up: bool) {
        let step = |n: &mut u64| {
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        };
        if let Some(r) = e.op.log_run() {
            bump(&mut self.log_runs, r, up);
            step(&mut self.logs);
        }
        let mut metric = false;
        for r in e.op.metric_runs() {
            bump(&mut self.metric_runs, r, up);
            metric = true;
        }
        if metric {
            step(&mut self.metrics);
        }
        bump(&mut self.deferred_at, &e.at, up);
    }

    fn oldest(&self) -> Option<Timestamp> {
        self.deferred_at.keys().next().copied()
    }
}

pub(crate) struct Inner {
    journal: Journal,
    logs: Mutex<Option<Arc<dyn LogRepository>>>,
    metrics: Mutex<Option<Arc<dyn MetricsRepository>>>,
    view: Mutex<View>,
    counters: OutboxCounters,
    /// One drain at a time per handle.
    draining: tokio::sync::Mutex<()>,
    /// Runs whose writes go to another run, and the length of the remaps
    /// file they were read from.
    remaps: Mutex<(u64, HashMap<RunId, RunId>)>,
}

/// A local outbox folder (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.inner.journal.dir())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| runstore_core::Error::backend("an outbox task failed", Some(Box::new(e))))?
}

impl Outbox {
    /// Opens (creating) the outbox folder `dir`. Attach the backends it
    /// drains into with [`Outbox::wrap_logs`] and [`Outbox::wrap_metrics`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Outbox> {
        Ok(Outbox {
            inner: Arc::new(Inner {
                journal: Journal::open(dir.as_ref())?,
                logs: Mutex::new(None),
                metrics: Mutex::new(None),
                view: Mutex::new(View::default()),
                counters: OutboxCounters::default(),
                draining: tokio::sync::Mutex::new(()),
                remaps: Mutex::new((0, HashMap::new())),
            }),
        })
    }

    /// `metrics` with each run id [`Outbox::resolve`]d.
    pub(crate) fn resolve_metrics(
        &self,
        mut metrics: Vec<ExecutionMetric>,
    ) -> Result<Vec<ExecutionMetric>> {
        for m in &mut metrics {
            m.run_id = self.resolve(&m.run_id)?;
        }
        Ok(metrics)
    }

    /// The run that writes naming `run` go to: `run` itself, unless a
    /// drain found that `run`, created deferred with an external key, was
    /// already held by another run under that key (a keyed create returns
    /// the run holding the key, so the writer would have written to that
    /// one had the backend been up). One `stat` when nothing changed.
    pub(crate) fn resolve(&self, run: &RunId) -> Result<RunId> {
        let len = self.inner.journal.remaps_len()?;
        let mut remaps = lock(&self.inner.remaps);
        if len != remaps.0 {
            let (pairs, read) = self.inner.journal.read_remaps()?;
            *remaps = (read, pairs.into_iter().collect());
        }
        Ok(remaps.1.get(run).cloned().unwrap_or_else(|| run.clone()))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.inner.journal.dir()
    }

    /// `logs` behind this outbox: the handle to use instead of `logs`.
    pub fn wrap_logs(&self, logs: Arc<dyn LogRepository>) -> Arc<dyn LogRepository> {
        *lock(&self.inner.logs) = Some(logs.clone());
        Arc::new(OutboxLogs::new(logs, self.clone()))
    }

    /// `metrics` behind this outbox: the handle to use instead of `metrics`.
    pub fn wrap_metrics(&self, metrics: Arc<dyn MetricsRepository>) -> Arc<dyn MetricsRepository> {
        *lock(&self.inner.metrics) = Some(metrics.clone());
        Arc::new(OutboxMetrics::new(metrics, self.clone()))
    }

    /// Counters since this handle was opened.
    pub fn counters(&self) -> &OutboxCounters {
        &self.inner.counters
    }

    /// Brings the cached view up to the journal on disk: only the entries
    /// appended or drained since the last look, unless the journal was
    /// replaced.
    fn refresh(&self) -> Result<()> {
        let stamp = self.inner.journal.stamp()?;
        let mut view = lock(&self.inner.view);
        if stamp == view.stamp {
            return Ok(());
        }
        let seen = view.seen;
        let now = self.inner.journal.sync(seen, |c| view.apply(c))?;
        view.seen = now;
        view.stamp = stamp;
        Ok(())
    }

    /// Whether the outbox holds log writes of `run` (then its next writes
    /// must follow them there).
    pub(crate) async fn holds_logs_of(&self, run: &RunId) -> Result<bool> {
        let run = run.clone();
        self.ask(move |view| view.log_runs.contains_key(&run)).await
    }

    /// Whether the outbox holds metrics of any of `runs`.
    pub(crate) async fn holds_metrics_of(&self, runs: Vec<RunId>) -> Result<bool> {
        self.ask(move |view| runs.iter().any(|r| view.metric_runs.contains_key(r)))
            .await
    }

    /// Answers `question` from a view that is up to date with the journal.
    /// The usual case (the journal did not change since the last look) costs
    /// one `stat` on this thread; reading what changed goes to the blocking
    /// pool.
    async fn ask(&self, question: impl FnOnce(&View) -> bool + Send + 'static) -> Result<bool> {
        let stamp = self.inner.journal.stamp()?;
        {
            let view = lock(&self.inner.view);
            if view.stamp == stamp {
                return Ok(question(&view));
            }
        }
        let this = self.clone();
        blocking(move || {
            this.refresh()?;
            Ok(question(&lock(&this.inner.view)))
        })
        .await
    }

    /// Appends a write durably; returns once it is on disk.
    pub(crate) async fn defer(&self, op: Op) -> Result<()> {
        let entry = Entry {
            entry: uuid::Uuid::now_v7().to_string(),
            at: Timestamp::now(),
            op,
        };
        let this = self.clone();
        blocking(move || {
            let (before, after) = this.inner.journal.append(std::slice::from_ref(&entry))?;
            let mut view = lock(&this.inner.view);
            // Nobody else appended since the view was read: add the entry
            // without reading it back.
            if view.seen.end == before
                && view.stamp.len == before
                && (view.stamp.ino, view.stamp.dev, view.stamp.head)
                    == (after.ino, after.dev, after.head)
            {
                view.apply(Change::Added(&entry));
                view.seen.end = after.len;
                view.stamp = after;
                return Ok(());
            }
            drop(view);
            this.refresh()
        })
        .await?;
        self.inner.counters.deferred.fetch_add(1, Ordering::Relaxed);
        tracing::info!(outbox = %self.path().display(), "write deferred to the outbox");
        Ok(())
    }

    /// What the outbox holds now.
    pub async fn status(&self) -> Result<OutboxStatus> {
        let this = self.clone();
        blocking(move || {
            this.refresh()?;
            let rejected = this.inner.journal.rejected_count()?;
            let view = lock(&this.inner.view);
            let mut pending = BTreeMap::new();
            pending.insert("logs".to_string(), view.logs);
            pending.insert("metrics".to_string(), view.metrics);
            Ok(OutboxStatus {
                path: this.path().to_path_buf(),
                pending,
                oldest: view.oldest(),
                rejected,
                bytes: view.stamp.len.saturating_sub(view.seen.head),
            })
        })
        .await
    }

    /// Replays every pending write into its backend, in order, and removes
    /// what was stored. Stops early (the rest stays) when the backend is
    /// unavailable again; a write the backend refuses for good (a
    /// contradiction found only now) moves to `rejected.ndjson`.
    pub async fn drain(&self) -> Result<DrainReport> {
        self.drain_with(DrainOptions::default()).await
    }

    /// [`Outbox::drain`] with options.
    pub async fn drain_with(&self, options: DrainOptions) -> Result<DrainReport> {
        let batch_size = options.batch.max(1);
        let _one = self.inner.draining.lock().await;
        let mut report = DrainReport::default();
        loop {
            let journal = self.inner.journal.clone();
            let batch = blocking(move || journal.read_head(batch_size)).await?;
            if batch.is_empty() {
                return Ok(report);
            }
            // In journal order: the head moves past them.
            let mut done = Vec::new();
            let mut rejected = Vec::new();
            let mut stopped = false;
            let mut drained = 0;
            let mut rest: &[Entry] = &batch;
            while !rest.is_empty() {
                // Consecutive appends to one run (or consecutive metrics)
                // go in one call; per-run order is the journal's order.
                let group = mergeable(rest);
                let (head, tail) = rest.split_at(group);
                rest = tail;
                let merged = if head.len() > 1 {
                    match self.replay(&merge(head)).await {
                        Ok(()) => Some(Ok(())),
                        Err(err) if err.kind() == ErrorKind::Unavailable => Some(Err(err)),
                        // One of them is refused: find which, one by one.
                        Err(_) => None,
                    }
                } else {
                    None
                };
                let outcomes: Vec<Result<()>> = match merged {
                    Some(Ok(())) => head.iter().map(|_| Ok(())).collect(),
                    Some(Err(err)) => vec![Err(err)],
                    None => {
                        let mut v = Vec::new();
                        for e in head {
                            let r = self.replay(&e.op).await;
                            let unavailable = r
                                .as_ref()
                                .is_err_and(|e| e.kind() == ErrorKind::Unavailable);
                            v.push(r);
                            if unavailable {
                                break;
                            }
                        }
                        v
                    }
                };
                for (e, outcome) in head.iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => {
                            done.push(e.entry.clone());
                            drained += 1;
                        }
                        Err(err) if err.kind() == ErrorKind::Unavailable => {
                            stopped = true;
                            break;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "the backend refused a deferred write");
                            done.push(e.entry.clone());
                            rejected.push((e.clone(), err.to_string()));
                            report.rejected += 1;
                        }
                    }
                }
                if stopped {
                    break;
                }
            }
            let journal = self.inner.journal.clone();
            let n_rejected = rejected.len() as u64;
            blocking(move || {
                journal.reject(&rejected)?;
                journal.remove(&done)
            })
            .await?;
            // Counted once the journal no longer holds them.
            report.drained += drained;
            let c = &self.inner.counters;
            c.drained.fetch_add(drained, Ordering::Relaxed);
            c.rejected.fetch_add(n_rejected, Ordering::Relaxed);
            if stopped {
                let status = self.status().await?;
                report.left = status.total();
                tracing::info!(
                    left = report.left,
                    "outbox drain stopped: backend unavailable"
                );
                return Ok(report);
            }
        }
    }

    async fn replay(&self, op: &Op) -> Result<()> {
        let logs = || {
            lock(&self.inner.logs).clone().ok_or_else(|| {
                runstore_core::Error::backend(
                    "the outbox holds log writes but no logs backend is attached",
                    None,
                )
            })
        };
        match op {
            Op::CreateRun { run } => {
                let written = logs()?.create_run(run.clone()).await?;
                if written.record.id != run.id {
                    // Its external key is another run's: what the writer
                    // wrote to this run goes there, as it would have had
                    // the create not been deferred.
                    let (from, to) = (run.id.clone(), written.record.id.clone());
                    let journal = self.inner.journal.clone();
                    blocking(move || journal.append_remap(&from, &to)).await?;
                    tracing::info!(run = %run.id, held_by = %written.record.id, "a deferred keyed run resolved to the run holding its key");
                }
                Ok(())
            }
            Op::UpdateStatus {
                run_id,
                status,
                ended_at,
                summaries,
            } => {
                let run_id = &self.resolve(run_id)?;
                let update = Op::update(*status, *ended_at, summaries.clone());
                let logs = logs()?;
                match logs.update_status(run_id, update.clone()).await {
                    Ok(_) => Ok(()),
                    // The run already moved past this state (another writer
                    // finished it): the update is superseded, not lost.
                    Err(e) if e.kind() == ErrorKind::Conflict && !status.is_terminal() => {
                        let stored = logs.get_run(run_id).await?;
                        if stored.status > *status {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Op::AppendEvents { run_id, events } => logs()?
                .append_events(&self.resolve(run_id)?, events.clone())
                .await
                .map(drop),
            Op::RecordMetrics { metrics } => {
                let backend = lock(&self.inner.metrics).clone().ok_or_else(|| {
                    runstore_core::Error::backend(
                        "the outbox holds metrics but no metrics backend is attached",
                        None,
                    )
                })?;
                backend
                    .record_many(self.resolve_metrics(metrics.clone())?)
                    .await
                    .map(drop)
            }
        }
    }

    /// Drains now and then every half second while the outbox holds
    /// writes, until the last clone of this handle is dropped or the
    /// returned handle is aborted.
    pub fn spawn_drain(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let outbox = Outbox { inner };
                let pending = match outbox.inner.journal.stamp() {
                    Ok(s) => s.len > 0,
                    Err(_) => true,
                };
                if pending {
                    match outbox.drain().await {
                        Ok(r) if r.drained + r.rejected > 0 => tracing::info!(
                            drained = r.drained,
                            rejected = r.rejected,
                            left = r.left,
                            "outbox drained"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "outbox drain failed"),
                    }
                }
                drop(outbox);
                tokio::time::sleep(DRAIN_INTERVAL).await;
            }
        })
    }
}
