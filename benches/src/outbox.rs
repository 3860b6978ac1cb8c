//! Degraded mode (docs/DESIGN.md section 10): appends deferred to the
//! outbox while the backend is down, beside the file backend's durable
//! (fsync) append on the same disk in the same run; and the drain of a
//! full outbox into a backend that is back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use runstore::outbox::{DrainOptions, Outbox};
use runstore_core::{
    Appended, BulkOutcome, Delivery, Error, Event, EventQuery, Lease, LeaseQuery, LeaseRequest,
    LogRepository, NewEvent, Page, Result, Run, RunFilter, RunId, RunQuery, RunUpdate,
    RunWithEvents, StoreSet, Timestamp, Version, WorkflowId, Written, async_trait,
};
use runstore_file::{Durability, FileConfig, FileStore};
use serde_json::json;

use crate::BenchResult;

/// A logs backend that a switch turns off (every call `Unavailable`).
#[derive(Debug)]
struct Switched {
    inner: Arc<dyn LogRepository>,
    down: Arc<AtomicBool>,
}

impl Switched {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable("benchmark outage", None));
        }
        Ok(())
    }
}

#[async_trait]
impl LogRepository for Switched {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        self.check()?;
        self.inner.create_run(run).await
    }
    async fn get_run(&self, id: &RunId) -> Result<Run> {
        self.check()?;
        self.inner.get_run(id).await
    }
    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        self.check()?;
        self.inner.update_status(id, update).await
    }
    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        self.check()?;
        self.inner.append_event(run_id, event).await
    }
    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.check()?;
        self.inner.append_events(run_id, events).await
    }
    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        self.check()?;
        self.inner.list_events(run_id, query).await
    }
    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        self.check()?;
        self.inner.query_runs(query).await
    }
    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        self.check()?;
        self.inner.count_runs(filter).await
    }
    async fn delete_run(&self, id: &RunId) -> Result<()> {
        self.check()?;
        self.inner.delete_run(id).await
    }
    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        self.check()?;
        self.inner.import_runs(runs).await
    }
    async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        self.check()?;
        self.inner.delete_runs(ids).await
    }
    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        self.check()?;
        self.inner.get_run_by_key(workflow, key).await
    }
    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        self.check()?;
        self.inner.acquire_lease(request).await
    }
    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        self.check()?;
        self.inner.release_lease(name, token).await
    }
    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        self.check()?;
        self.inner.list_leases(query).await
    }
    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        self.check()?;
        self.inner.record_delivery(id).await
    }
    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64> {
        self.check()?;
        self.inner.prune_deliveries(before).await
    }
}

fn bench_run(id: &str) -> Run {
    let mut run = Run::new(
        WorkflowId::new("outbox-bench").expect("valid id"),
        Version::FIRST,
    );
    run.id = RunId::new(id).expect("valid id");
    run
}

fn event(i: usize) -> NewEvent {
    NewEvent::new("step.finished", json!({"step": i, "rows": i * 7}))
}

/// Fills an outbox in `dir` with a created run and `n` appends while
/// `backend` is down. Deferred appends per second, and the outbox with the
/// backend attached and the switch.
async fn fill(
    dir: &Path,
    backend: Arc<dyn LogRepository>,
    run: &str,
    n: usize,
) -> BenchResult<(f64, Outbox, Arc<AtomicBool>)> {
    let down = Arc::new(AtomicBool::new(true));
    let outbox = Outbox::open(dir)?;
    let logs = outbox.wrap_logs(Arc::new(Switched {
        inner: backend,
        down: down.clone(),
    }));
    let run = bench_run(run);
    logs.create_run(run.clone()).await?;
    let start = Instant::now();
    for i in 0..n {
        let a = logs.append_event(&run.id, event(i)).await?;
        if !a.deferred {
            return Err("an append was not deferred".into());
        }
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), outbox, down))
}

/// Deferred appends per second into an outbox in `dir` (each one appended
/// and fsynced before it returns).
pub async fn deferred_appends(dir: &Path, n: usize) -> BenchResult<f64> {
    let backend: Arc<dyn LogRepository> = Arc::new(runstore_core::memory::MemoryLogs::default());
    let (rate, _, _) = fill(dir, backend, "deferred", n).await?;
    Ok(rate)
}

/// The file backend's durable (fsync) single appends per second, in `dir`.
pub async fn file_durable_appends(dir: &Path, n: usize) -> BenchResult<f64> {
    let store = FileStore::open(FileConfig::new(dir).with_durability(Durability::Fsync)).await?;
    let run = bench_run("file-durable");
    store.create_run(run.clone()).await?;
    let start = Instant::now();
    for i in 0..n {
        store.append_event(&run.id, event(i)).await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Defers `n` appends while `stores`'s logs backend is "down", brings it
/// back and drains, `batch` entries between two moves of the journal's
/// head: drained writes per second.
pub async fn drain_into(
    stores: &StoreSet,
    dir: &Path,
    run: &str,
    n: usize,
    batch: DrainOptions,
) -> BenchResult<f64> {
    let (_, outbox, down) = fill(dir, stores.logs.clone(), run, n).await?;
    down.store(false, Ordering::SeqCst);
    let start = Instant::now();
    let report = outbox.drain_with(batch).await?;
    let rate = report.drained as f64 / start.elapsed().as_secs_f64();
    if report.left > 0 || report.rejected > 0 || report.drained != n as u64 + 1 {
        return Err(format!(
            "drain left {} and rejected {}",
            report.left, report.rejected
        )
        .into());
    }
    Ok(rate)
}
