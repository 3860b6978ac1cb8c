//! Runs and events, the logs concern: the `LogRepository` impl of
//! [`FileStore`], which checks its arguments and hands the file work to
//! the modules below on the blocking pool. The files are the run journal
//! `logs/runs.ndjson`, one events file per run `logs/events/<run_id>.ndjson`
//! and the run index `index/runs.ndjson` (FORMAT.md).

mod event_append;
mod event_cache;
mod import;
mod journal;
mod lock;
mod run_table;
mod runs;

use async_trait::async_trait;
use runstore_core::{
    Appended, BulkOutcome, Delivery, EncodedEvent, Error, Event, EventCursor, EventQuery, Lease,
    LeaseQuery, LeaseRequest, LogRepository, NewEvent, Page, Result, Run, RunCursor, RunFilter,
    RunId, RunQuery, RunUpdate, RunWithEvents, Timestamp, WorkflowId, Written, run_not_found,
    validate_external_key, validate_limit,
};

use crate::FileStore;

pub(crate) use event_cache::{EventsCache, events_path, forget_events};
pub(crate) use journal::{
    RunLine, append_journal, compact_journal, recover, refresh_runs, reload_runs, stored, to_line,
};
pub(crate) use lock::{LOCK, finish, lock};

#[async_trait]
impl LogRepository for FileStore {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        self.inner
            .blocking(move |inner| runs::create(inner, run))
            .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Run> {
        let id = id.clone();
        self.inner
            .blocking(move |inner| runs::get(inner, &id))
            .await
    }

    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        update.validate()?;
        let id = id.clone();
        self.inner
            .blocking(move |inner| runs::update_status(inner, &id, &update))
            .await
    }

    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        let mut out = self.append_events(run_id, vec![event]).await?;
        out.pop()
            .ok_or_else(|| Error::backend("an append returned no result", None))
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        events.iter().try_for_each(NewEvent::validate)?;
        let run_id = run_id.clone();
        self.inner
            .blocking(move |inner| event_append::append(inner, &run_id, events))
            .await
    }

    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        validate_limit(query.limit)?;
        query.validate()?;
        if let Some(c) = &query.cursor {
            c.decode::<EventCursor>()?;
        }
        let run_id = run_id.clone();
        self.inner
            .blocking(move |inner| event_cache::list(inner, &run_id, &query))
            .await
    }

    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        query.filter.validate()?;
        let limit = validate_limit(query.limit)?;
        let after: Option<RunCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        self.inner
            .blocking(move |inner| runs::query(inner, &query, after, limit))
            .await
    }

    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        filter.validate()?;
        self.inner
            .blocking(move |inner| runs::count(inner, &filter))
            .await
    }

    async fn delete_run(&self, id: &RunId) -> Result<()> {
        // The batch delete's order (events first, then the record), so a
        // run's events never outlive it.
        let ids = [id.clone()];
        let out = self
            .inner
            .blocking(move |inner| crate::lifecycle::delete_runs(inner, &ids))
            .await?;
        if out.deleted.is_empty() {
            return Err(run_not_found(id));
        }
        Ok(())
    }

    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        RunWithEvents::validate_batch(&runs)?;
        self.inner
            .blocking(move |inner| import::import_runs(inner, runs))
            .await
    }

    async fn event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        self.counts_of(ids).await
    }

    async fn events_of_runs(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        self.events_of(ids).await
    }

    async fn events_of_small_runs(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<Event>>>> {
        self.small_runs_of(ids, max_events).await
    }

    async fn events_of_small_runs_encoded(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<EncodedEvent>>>> {
        self.small_runs_of(ids, max_events).await
    }

    async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        runstore_core::validate_delete_batch("run_ids", ids)?;
        let ids = ids.to_vec();
        self.inner
            .blocking(move |inner| crate::lifecycle::delete_runs(inner, &ids))
            .await
    }

    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        validate_external_key(key)?;
        let (workflow, key) = (workflow.clone(), key.to_owned());
        self.inner
            .blocking(move |inner| runs::get_by_key(inner, &workflow, &key))
            .await
    }

    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        crate::coordination::acquire_lease(self, request).await
    }

    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        crate::coordination::release_lease(self, name, token).await
    }

    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        crate::coordination::list_leases(self, query).await
    }

    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        crate::coordination::record_delivery(self, id).await
    }

    async fn prune_deliveries(&self, recorded_before: Timestamp) -> Result<u64> {
        crate::coordination::prune_deliveries(self, recorded_before).await
    }
}
