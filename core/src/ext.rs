//! Conveniences on top of the four traits, in `…Ext` traits with blanket
//! implementations: every backend gets them, no backend implements them.

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::artifact_path::ArtifactKey;
use crate::artifacts::{ArtifactInfo, ArtifactStore, ByteStream, PutOptions};
use crate::error::{Error, Result};
use crate::id::{RunId, Version, WorkflowId};
use crate::logs::{
    Event, EventQuery, LogRepository, Run, RunFilter, RunQuery, RunStatus, RunUpdate,
};
use crate::page::MAX_PAGE_LIMIT;
use crate::timestamp::Timestamp;
use crate::workflows::{WorkflowDefinition, WorkflowRepository};
use crate::written::Written;

/// Conveniences for [`LogRepository`].
#[async_trait]
pub trait LogRepositoryExt: LogRepository {
    /// The `limit` most recent runs of a workflow (and version), newest
    /// first: the query of docs/DESIGN.md section 4.
    async fn get_recent(
        &self,
        workflow_id: &WorkflowId,
        version: Option<Version>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let mut filter = RunFilter::default().workflow(workflow_id.clone());
        filter.workflow_version = version;
        Ok(self
            .query_runs(RunQuery::new(filter).with_limit(limit))
            .await?
            .items)
    }

    /// Every event of a run, read page by page. Holds them all in memory:
    /// for very long runs, page with [`LogRepository::list_events`].
    async fn all_events(&self, run_id: &RunId) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .list_events(
                    run_id,
                    EventQuery::default()
                        .with_limit(MAX_PAGE_LIMIT)
                        .with_cursor(cursor),
                )
                .await?;
            out.extend(page.items);
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Finishes a run now with a terminal `status`: one call for
    /// `update_status(id, RunUpdate::finished(status, Timestamp::now()))`.
    /// Finishing again with the same status succeeds and changes nothing.
    async fn finish_run(&self, run_id: &RunId, status: RunStatus) -> Result<Run> {
        if !status.is_terminal() {
            return Err(Error::invalid(
                "status",
                format!("{status} is not a terminal status (succeeded, failed, cancelled)"),
            ));
        }
        self.update_status(run_id, RunUpdate::finished(status, Timestamp::now()))
            .await
    }
}

impl<T: LogRepository + ?Sized> LogRepositoryExt for T {}

/// Conveniences for [`WorkflowRepository`].
#[async_trait]
pub trait WorkflowRepositoryExt: WorkflowRepository {
    /// Stores `body` as the next version of workflow `id`: version 1 if
    /// none is stored, else the latest plus one, with the latest as its
    /// parent. A concurrent writer that stored that version first makes
    /// this [`Error::Conflict`] (versions are immutable); read the latest
    /// again and retry.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use runstore_core::{WorkflowId, WorkflowRepositoryExt, memory};
    /// let s = memory::store_set();
    /// let id = WorkflowId::new("etl").unwrap();
    /// let v1 = s.workflows.store_next_version(&id, serde_json::json!({"steps": 1})).await.unwrap();
    /// let v2 = s.workflows.store_next_version(&id, serde_json::json!({"steps": 2})).await.unwrap();
    /// assert_eq!((v1.record.version.get(), v2.record.version.get()), (1, 2));
    /// assert_eq!(v2.record.parent, Some(v1.record.version));
    /// # });
    /// ```
    async fn store_next_version(
        &self,
        id: &WorkflowId,
        body: serde_json::Value,
    ) -> Result<Written<WorkflowDefinition>> {
        let def = match self.get_latest(id).await {
            Ok(latest) => {
                let next = Version::new(latest.version.get().saturating_add(1))?;
                WorkflowDefinition::new(id.clone(), next, body).with_parent(latest.version)
            }
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {
                WorkflowDefinition::new(id.clone(), Version::FIRST, body)
            }
            Err(e) => return Err(e),
        };
        self.store(def).await
    }
}

impl<T: WorkflowRepository + ?Sized> WorkflowRepositoryExt for T {}

/// Conveniences for [`ArtifactStore`].
#[async_trait]
pub trait ArtifactStoreExt: ArtifactStore {
    /// Stores bytes held in memory.
    async fn put_bytes(
        &self,
        key: &ArtifactKey,
        bytes: Vec<u8>,
        options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        let body: ByteStream = Box::new(std::io::Cursor::new(bytes));
        self.put(key, body, options).await
    }

    /// Reads a whole artifact into memory, verified against its hash.
    async fn get_bytes(&self, key: &ArtifactKey) -> Result<(ArtifactInfo, Vec<u8>)> {
        let mut reader = self.get(key).await?;
        let mut bytes = Vec::new();
        reader
            .body
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::io(format!("reading artifact {key}"), e))?;
        Ok((reader.info, bytes))
    }
}

impl<T: ArtifactStore + ?Sized> ArtifactStoreExt for T {}
