//! The logs and metrics handles behind an outbox: writes try the backend
//! unless the outbox holds earlier writes of the same run, and go to the
//! outbox when the backend is unavailable; everything else passes through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use runstore_core::{
    Appended, BulkOutcome, Delivery, Error, ErrorKind, Event, EventQuery, ExecutionMetric, Lease,
    LeaseQuery, LeaseRequest, LogRepository, MetricQuery, MetricsRepository, MetricsSummary,
    NewEvent, Page, Pattern, PatternId, PatternQuery, Result, Run, RunFilter, RunId, RunQuery,
    RunUpdate, RunWithEvents, SummaryQuery, Timestamp, WorkflowId, Written,
};

use super::Outbox;
use super::journal::Op;

/// Runs whose state the logs handle remembers, so a status update of a
/// run can be deferred (it needs the state to apply the forward-only rule
/// to). Bounded: when full it starts over.
const KNOWN_RUNS_MAX: usize = 10_000;

fn unavailable(e: &Error) -> bool {
    e.kind() == ErrorKind::Unavailable
}

/// [`LogRepository`] behind an outbox (see the module documentation).
#[derive(Debug)]
pub struct OutboxLogs {
    backend: Arc<dyn LogRepository>,
    outbox: Outbox,
    known: Mutex<HashMap<RunId, Run>>,
}

impl OutboxLogs {
    pub(crate) fn new(backend: Arc<dyn LogRepository>, outbox: Outbox) -> Self {
        OutboxLogs {
            backend,
            outbox,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, run: &Run) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= KNOWN_RUNS_MAX && !known.contains_key(&run.id) {
            known.clear();
        }
        known.insert(run.id.clone(), run.clone());
    }

    fn known(&self, id: &RunId) -> Option<Run> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every event gets a key before its first attempt, so a replay of a
    /// write whose outcome was unknown stores nothing twice.
    fn keyed(events: Vec<NewEvent>) -> Vec<NewEvent> {
        events
            .into_iter()
            .map(|e| match e.idempotency_key {
                Some(_) => e,
                None => e.with_idempotency_key(format!("outbox-{}", uuid::Uuid::now_v7())),
            })
            .collect()
    }

    async fn append(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        events.iter().try_for_each(NewEvent::validate)?;
        let events = Self::keyed(events);
        let n = events.len();
        if !self.outbox.holds_logs_of(run_id).await? {
            let target = self.outbox.resolve(run_id)?;
            match self.backend.append_events(&target, events.clone()).await {
                Err(e) if unavailable(&e) => {}
                other => return other,
            }
        }
        self.outbox
            .defer(Op::AppendEvents {
                run_id: run_id.clone(),
                events,
            })
            .await?;
        Ok(vec![Appended::deferred(); n])
    }
}

#[async_trait]
impl LogRepository for OutboxLogs {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        if !self.outbox.holds_logs_of(&run.id).await? {
            match self.backend.create_run(run.clone()).await {
                Err(e) if unavailable(&e) => {}
                Ok(w) => {
                    self.remember(&w.record);
                    return Ok(w);
                }
                Err(e) => return Err(e),
            }
        }
        self.outbox
            .defer(Op::CreateRun { run: run.clone() })
            .await?;
        self.remember(&run);
        Ok(Written::deferred(run))
    }

    async fn get_run(&self, id: &RunId) -> Result<Run> {
        let run = self.backend.get_run(&self.outbox.resolve(id)?).await?;
        // A run with writes still in the outbox is ahead of the backend.
        if !self.outbox.holds_logs_of(id).await? {
            self.remember(&run);
        }
        Ok(run)
    }

    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        update.validate()?;
        let held = self.outbox.holds_logs_of(id).await?;
        let failure = if held {
            None
        } else {
            match self
                .backend
                .update_status(&self.outbox.resolve(id)?, update.clone())
                .await
            {
                Ok(run) => {
                    self.remember(&run);
                    return Ok(run);
                }
                Err(e) if unavailable(&e) => Some(e),
                Err(e) => return Err(e),
            }
        };
        let Some(base) = self.known(id) else {
            return Err(failure.unwrap_or_else(|| {
                Error::unavailable(
                    format!(
                        "run {id} has writes in the outbox but its state is unknown here; the status update cannot be deferred"
                    ),
                    None,
                )
            }));
        };
        // The forward-only rule is applied now, so a contradiction is an
        // error now rather than a rejection at drain time; the end time is
        // fixed now, not when the drain runs.
        let (next, _) = base.apply_update(&update)?;
        self.outbox
            .defer(Op::UpdateStatus {
                run_id: id.clone(),
                status: next.status,
                ended_at: next.ended_at,
                summaries: update.summaries,
            })
            .await?;
        self.remember(&next);
        Ok(next)
    }

    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        let mut out = self.append(run_id, vec![event]).await?;
        out.pop()
            .ok_or_else(|| Error::backend("appending an event returned nothing", None))
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.append(run_id, events).await
    }

    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        self.backend
            .list_events(&self.outbox.resolve(run_id)?, query)
            .await
    }

    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        self.backend.query_runs(query).await
    }

    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        self.backend.count_runs(filter).await
    }

    async fn delete_run(&self, id: &RunId) -> Result<()> {
        self.backend.delete_run(id).await
    }

    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        self.backend.import_runs(runs).await
    }

    async fn import_runs_encoded(
        &self,
        runs: Vec<runstore_core::EncodedRun>,
    ) -> Result<BulkOutcome> {
        self.backend.import_runs_encoded(runs).await
    }

    async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        self.backend.delete_runs(ids).await
    }

    async fn event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        self.backend.event_counts(ids).await
    }

    // A hint about speed only: an unavailable backend takes it when it is
    // next opened or the load ends, so it is not queued in the outbox.
    async fn begin_bulk_load(&self, options: runstore_core::BulkLoadOptions) -> Result<()> {
        self.backend.begin_bulk_load(options).await
    }

    async fn end_bulk_load(&self) -> Result<()> {
        self.backend.end_bulk_load().await
    }

    async fn events_of_runs(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        self.backend.events_of_runs(ids).await
    }

    async fn events_of_small_runs(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<Event>>>> {
        self.backend.events_of_small_runs(ids, max_events).await
    }

    async fn events_of_small_runs_encoded(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<runstore_core::EncodedEvent>>>> {
        self.backend
            .events_of_small_runs_encoded(ids, max_events)
            .await
    }

    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        self.backend.get_run_by_key(workflow, key).await
    }

    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        self.backend.acquire_lease(request).await
    }

    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        self.backend.release_lease(name, token).await
    }

    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        self.backend.list_leases(query).await
    }

    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        self.backend.record_delivery(id).await
    }

    async fn prune_deliveries(&self, recorded_before: Timestamp) -> Result<u64> {
        self.backend.prune_deliveries(recorded_before).await
    }
}

/// [`MetricsRepository`] behind an outbox (see the module documentation).
#[derive(Debug)]
pub struct OutboxMetrics {
    backend: Arc<dyn MetricsRepository>,
    outbox: Outbox,
}

impl OutboxMetrics {
    pub(crate) fn new(backend: Arc<dyn MetricsRepository>, outbox: Outbox) -> Self {
        OutboxMetrics { backend, outbox }
    }

    /// Tries the backend unless the outbox holds metrics of these runs;
    /// `None` when the write went to the outbox.
    async fn record_or_defer<T>(
        &self,
        metrics: &[ExecutionMetric],
        attempt: impl std::future::Future<Output = Result<T>>,
    ) -> Result<Option<T>> {
        for m in metrics {
            m.validate()?;
        }
        let runs = metrics.iter().map(|m| m.run_id.clone()).collect();
        if !self.outbox.holds_metrics_of(runs).await? {
            match attempt.await {
                Err(e) if unavailable(&e) => {}
                other => return other.map(Some),
            }
        }
        self.outbox
            .defer(Op::RecordMetrics {
                metrics: metrics.to_vec(),
            })
            .await?;
        Ok(None)
    }
}

#[async_trait]
impl MetricsRepository for OutboxMetrics {
    async fn begin_bulk_load(&self, options: runstore_core::BulkLoadOptions) -> Result<()> {
        self.backend.begin_bulk_load(options).await
    }

    async fn end_bulk_load(&self) -> Result<()> {
        self.backend.end_bulk_load().await
    }

    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        let one = std::slice::from_ref(&metric);
        let mut direct = metric.clone();
        direct.run_id = self.outbox.resolve(&metric.run_id)?;
        match self
            .record_or_defer(one, self.backend.record(direct))
            .await?
        {
            Some(w) => Ok(w),
            None => Ok(Written::deferred(metric)),
        }
    }

    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        let n = metrics.len() as u64;
        match self
            .record_or_defer(
                &metrics,
                self.backend
                    .record_many(self.outbox.resolve_metrics(metrics.clone())?),
            )
            .await?
        {
            Some(out) => Ok(out),
            None => Ok(BulkOutcome {
                deferred: n,
                ..BulkOutcome::default()
            }),
        }
    }

    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        self.backend.get(run_id).await
    }

    async fn metrics_of_runs(&self, run_ids: &[RunId]) -> Result<Vec<Option<ExecutionMetric>>> {
        self.backend.metrics_of_runs(run_ids).await
    }

    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        self.backend.list(query).await
    }

    async fn delete(&self, run_id: &RunId) -> Result<()> {
        self.backend.delete(run_id).await
    }

    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        self.backend.summary(workflow_id, query).await
    }

    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>> {
        self.backend.upsert_pattern(pattern).await
    }

    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        self.backend.get_pattern(id).await
    }

    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        self.backend.list_patterns(query).await
    }

    async fn delete_many(&self, run_ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        self.backend.delete_many(run_ids).await
    }
}
