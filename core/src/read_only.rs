//! [`StoreSet::read_only`]: a view of a store set that reads and never
//! writes, whatever the backends are. The source of a migration is opened
//! through it, so no bug and no swapped argument can change the data being
//! copied.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::artifacts::{
    ArtifactInfo, ArtifactQuery, ArtifactReader, ArtifactStore, BundleRequest, ByteStream,
    PutOptions,
};
use crate::coordination::{Delivery, Lease, LeaseQuery, LeaseRequest};
use crate::lifecycle::{ArtifactsDeleted, Deleted};
use crate::logs::{
    Appended, Event, EventQuery, LogRepository, NewEvent, Run, RunFilter, RunQuery, RunUpdate,
    RunWithEvents,
};
use crate::metrics::{
    ExecutionMetric, MetricQuery, MetricsRepository, MetricsSummary, Pattern, PatternQuery,
    SummaryQuery,
};
use crate::workflows::{WorkflowDefinition, WorkflowQuery, WorkflowRepository};
use crate::{
    ArtifactKey, BulkOutcome, Error, Page, PatternId, Result, RunId, StoreSet, Timestamp, Version,
    WorkflowId, Written,
};

impl StoreSet {
    /// The same stores, read-only: every read goes through, every write
    /// (leases and deliveries included) fails with
    /// [`crate::ErrorKind::InvalidInput`] naming the operation, before it
    /// reaches the backend.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use runstore_core::{memory, ErrorKind, Run, Version, WorkflowId};
    ///
    /// let stores = memory::store_set();
    /// let view = stores.read_only();
    /// let run = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    /// let err = view.logs.create_run(run).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// assert_eq!(view.logs.count_runs(Default::default()).await.unwrap(), 0);
    /// # });
    /// ```
    pub fn read_only(&self) -> StoreSet {
        StoreSet {
            workflows: Arc::new(ReadOnly(self.workflows.clone())),
            logs: Arc::new(ReadOnly(self.logs.clone())),
            metrics: Arc::new(ReadOnly(self.metrics.clone())),
            artifacts: Arc::new(ReadOnly(self.artifacts.clone())),
        }
    }
}

/// One handle of a read-only view.
struct ReadOnly<T: ?Sized>(Arc<T>);

impl<T: ?Sized + fmt::Debug> fmt::Debug for ReadOnly<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadOnly").field(&self.0).finish()
    }
}

/// The error of every write through a read-only view.
fn refused(operation: &str) -> Error {
    Error::invalid(
        "store",
        format!("{operation} refused: this store is opened read-only"),
    )
}

#[async_trait]
impl WorkflowRepository for ReadOnly<dyn WorkflowRepository> {
    async fn store(&self, _def: WorkflowDefinition) -> Result<Written<WorkflowDefinition>> {
        Err(refused("storing a workflow version"))
    }
    async fn get(&self, id: &WorkflowId, version: Version) -> Result<WorkflowDefinition> {
        self.0.get(id, version).await
    }
    async fn get_latest(&self, id: &WorkflowId) -> Result<WorkflowDefinition> {
        self.0.get_latest(id).await
    }
    async fn list_versions(&self, id: &WorkflowId) -> Result<Vec<WorkflowDefinition>> {
        self.0.list_versions(id).await
    }
    async fn list(&self, query: WorkflowQuery) -> Result<Page<WorkflowDefinition>> {
        self.0.list(query).await
    }
    async fn delete(&self, _id: &WorkflowId, _version: Version) -> Result<()> {
        Err(refused("deleting a workflow version"))
    }
}

#[async_trait]
impl LogRepository for ReadOnly<dyn LogRepository> {
    async fn create_run(&self, _run: Run) -> Result<Written<Run>> {
        Err(refused("creating a run"))
    }
    async fn get_run(&self, id: &RunId) -> Result<Run> {
        self.0.get_run(id).await
    }
    async fn update_status(&self, _id: &RunId, _update: RunUpdate) -> Result<Run> {
        Err(refused("updating a run's status"))
    }
    async fn append_event(&self, _run_id: &RunId, _event: NewEvent) -> Result<Appended> {
        Err(refused("appending an event"))
    }
    async fn append_events(
        &self,
        _run_id: &RunId,
        _events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>> {
        Err(refused("appending events"))
    }
    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        self.0.list_events(run_id, query).await
    }
    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        self.0.query_runs(query).await
    }
    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        self.0.count_runs(filter).await
    }
    async fn delete_run(&self, _id: &RunId) -> Result<()> {
        Err(refused("deleting a run"))
    }
    async fn import_runs(&self, _runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        Err(refused("importing runs"))
    }
    async fn delete_runs(&self, _ids: &[RunId]) -> Result<Deleted<RunId>> {
        Err(refused("deleting runs"))
    }
    async fn event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        self.0.event_counts(ids).await
    }
    async fn events_of_runs(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        self.0.events_of_runs(ids).await
    }
    async fn events_of_small_runs(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<Event>>>> {
        self.0.events_of_small_runs(ids, max_events).await
    }
    async fn events_of_small_runs_encoded(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<crate::EncodedEvent>>>> {
        self.0.events_of_small_runs_encoded(ids, max_events).await
    }
    async fn import_runs_encoded(&self, _runs: Vec<crate::EncodedRun>) -> Result<BulkOutcome> {
        Err(refused("importing runs"))
    }
    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        self.0.get_run_by_key(workflow, key).await
    }
    async fn acquire_lease(&self, _request: LeaseRequest) -> Result<Lease> {
        Err(refused("acquiring a lease"))
    }
    async fn release_lease(&self, _name: &str, _token: u64) -> Result<()> {
        Err(refused("releasing a lease"))
    }
    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        self.0.list_leases(query).await
    }
    async fn record_delivery(&self, _id: &str) -> Result<Written<Delivery>> {
        Err(refused("recording a delivery"))
    }
    async fn prune_deliveries(&self, _recorded_before: Timestamp) -> Result<u64> {
        Err(refused("pruning deliveries"))
    }
}

#[async_trait]
impl MetricsRepository for ReadOnly<dyn MetricsRepository> {
    async fn record(&self, _metric: ExecutionMetric) -> Result<Written<ExecutionMetric>> {
        Err(refused("recording a metric"))
    }
    async fn record_many(&self, _metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome> {
        Err(refused("recording metrics"))
    }
    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric> {
        self.0.get(run_id).await
    }
    async fn metrics_of_runs(&self, run_ids: &[RunId]) -> Result<Vec<Option<ExecutionMetric>>> {
        self.0.metrics_of_runs(run_ids).await
    }
    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>> {
        self.0.list(query).await
    }
    async fn delete(&self, _run_id: &RunId) -> Result<()> {
        Err(refused("deleting a metric"))
    }
    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary> {
        self.0.summary(workflow_id, query).await
    }
    async fn upsert_pattern(&self, _pattern: Pattern) -> Result<Written<Pattern>> {
        Err(refused("writing a pattern"))
    }
    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern> {
        self.0.get_pattern(id).await
    }
    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>> {
        self.0.list_patterns(query).await
    }
    async fn delete_many(&self, _run_ids: &[RunId]) -> Result<Deleted<RunId>> {
        Err(refused("deleting metrics"))
    }
}

#[async_trait]
impl ArtifactStore for ReadOnly<dyn ArtifactStore> {
    async fn put(
        &self,
        _key: &ArtifactKey,
        _body: ByteStream,
        _options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        Err(refused("storing an artifact"))
    }
    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
        self.0.get(key).await
    }
    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
        self.0.head(key).await
    }
    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
        self.0.list(query).await
    }
    async fn delete(&self, _key: &ArtifactKey) -> Result<()> {
        Err(refused("deleting an artifact"))
    }
    async fn bundle(&self, _request: BundleRequest) -> Result<Written<ArtifactInfo>> {
        Err(refused("writing a bundle"))
    }
    async fn delete_run_artifacts(&self, _run_id: &RunId) -> Result<ArtifactsDeleted> {
        Err(refused("deleting a run's artifacts"))
    }
    async fn delete_runs_artifacts(&self, _run_ids: &[RunId]) -> Result<Vec<ArtifactsDeleted>> {
        Err(refused("deleting the artifacts of runs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, memory};

    #[tokio::test]
    async fn reads_go_through_and_every_write_is_refused_before_the_backend() {
        let stores = memory::store_set();
        let wf = WorkflowId::new("etl").unwrap();
        let def = WorkflowDefinition::new(wf.clone(), Version::FIRST, serde_json::json!({}));
        stores.workflows.store(def.clone()).await.unwrap();
        let run = stores
            .logs
            .create_run(Run::new(wf.clone(), Version::FIRST))
            .await
            .unwrap()
            .record;
        let view = stores.read_only();
        assert_eq!(view.logs.get_run(&run.id).await.unwrap().id, run.id);
        assert_eq!(
            view.workflows.get(&wf, Version::FIRST).await.unwrap().id,
            wf
        );
        assert_eq!(
            view.logs
                .event_counts(std::slice::from_ref(&run.id))
                .await
                .unwrap(),
            [0]
        );

        let refusals: Vec<Error> = vec![
            view.workflows.store(def).await.unwrap_err(),
            view.workflows
                .delete(&wf, Version::FIRST)
                .await
                .unwrap_err(),
            view.logs
                .create_run(Run::new(wf.clone(), Version::FIRST))
                .await
                .unwrap_err(),
            view.logs
                .append_event(&run.id, NewEvent::new("step", serde_json::json!({})))
                .await
                .unwrap_err(),
            view.logs.delete_run(&run.id).await.unwrap_err(),
            view.logs
                .delete_runs(std::slice::from_ref(&run.id))
                .await
                .unwrap_err(),
            view.logs.record_delivery("d-1").await.unwrap_err(),
            view.metrics.delete(&run.id).await.unwrap_err(),
            view.artifacts
                .delete_run_artifacts(&run.id)
                .await
                .unwrap_err(),
        ];
        for e in refusals {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("read-only"), "{e}");
        }
        // Nothing reached the stores.
        assert_eq!(
            stores.logs.count_runs(RunFilter::default()).await.unwrap(),
            1
        );
        assert!(stores.logs.get_run(&run.id).await.is_ok());
        assert!(stores.workflows.get(&wf, Version::FIRST).await.is_ok());
    }
}
