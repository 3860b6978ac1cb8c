//! Conveniences on top of the four traits, in `…Ext` traits with blanket
//! implementations: every backend gets them, no backend implements them.

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::artifact_path::ArtifactKey;
use crate::artifacts::{ArtifactInfo, ArtifactStore, ByteStream, PutOptions};
use crate::error::{Error, Result};
use crate::id::{RunId, Version, WorkflowId};
use crate::logs::{Event, EventQuery, LogRepository, Run, RunFilter, RunQuery};
use crate::page::MAX_PAGE_LIMIT;
use crate::written::Written;

/// Conveniences for [`LogRepository`].
#[async_trait]
pub trait LogRepositoryExt: LogRepository {
    /// The `limit` most recent runs of a workflow (and version), newest
    /// first: the query of DESIGN.md section 4.
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
}

impl<T: LogRepository + ?Sized> LogRepositoryExt for T {}

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
