//! References between concerns that do not resolve, for `check`: runs
//! naming a workflow version that is not stored, metrics and artifacts of
//! runs that are not stored.
//!
//! Writes do not enforce these references: the concerns may live in
//! different backends (no transaction spans them), and some flows write in
//! another order on purpose (artifacts uploaded before the run is
//! recorded, runs migrated before their workflows). So `check` reports
//! them, as warnings that do not fail it.

use std::collections::HashMap;

use runstore::{
    ArtifactQuery, ErrorKind, MetricQuery, Result, RunId, RunQuery, Storage, Version, WorkflowId,
};
use serde::Serialize;

use crate::paging::Items;

/// One reference that does not resolve.
#[derive(Debug, Serialize)]
pub struct Unresolved {
    /// What refers, e.g. `run 0193...` or `artifact r/p/x`.
    pub from: String,
    /// What it names and is missing, e.g. `workflow etl@2`.
    pub to: String,
}

/// Everything checked and found.
#[derive(Debug, Default, Serialize)]
pub struct References {
    /// References looked up.
    pub checked: u64,
    /// Those that do not resolve.
    pub unresolved: Vec<Unresolved>,
}

/// Page size of the scans.
const PAGE: usize = 500;
/// At most this many unresolved references are listed (all are counted
/// in `checked`).
const MAX_LISTED: usize = 1000;

impl References {
    fn push(&mut self, from: String, to: String) {
        if self.unresolved.len() < MAX_LISTED {
            self.unresolved.push(Unresolved { from, to });
        }
    }
}

/// Scans runs, metrics and artifacts, looking up what each names.
pub async fn check(storage: &Storage) -> Result<References> {
    let mut found = References::default();
    let mut versions: HashMap<(WorkflowId, Version), bool> = HashMap::new();
    let mut runs: HashMap<RunId, bool> = HashMap::new();

    let mut all = Items::default();
    let query = RunQuery::default().with_limit(PAGE);
    while let Some(run) = all
        .next(|c| storage.logs.query_runs(query.clone().with_cursor(c)))
        .await?
    {
        found.checked += 1;
        let key = (run.workflow_id.clone(), run.workflow_version);
        let present = match versions.get(&key) {
            Some(p) => *p,
            None => {
                let p = exists(storage.workflows.get(&key.0, key.1).await)?;
                versions.insert(key, p);
                p
            }
        };
        if !present {
            found.push(
                format!("run {}", run.id),
                format!("workflow {}@{}", run.workflow_id, run.workflow_version),
            );
        }
    }

    let mut all = Items::default();
    let query = MetricQuery::default().with_limit(PAGE);
    while let Some(m) = all
        .next(|c| storage.metrics.list(query.clone().with_cursor(c)))
        .await?
    {
        found.checked += 1;
        if !run_exists(storage, &mut runs, &m.run_id).await? {
            found.push(
                format!("metric of run {}", m.run_id),
                format!("run {}", m.run_id),
            );
        }
    }

    let mut all = Items::default();
    let query = ArtifactQuery::default().with_limit(PAGE);
    while let Some(info) = all
        .next(|c| storage.artifacts.list(query.clone().with_cursor(c)))
        .await?
    {
        found.checked += 1;
        if !run_exists(storage, &mut runs, &info.key.run_id).await? {
            found.push(
                format!("artifact {}", info.key),
                format!("run {}", info.key.run_id),
            );
        }
    }
    Ok(found)
}

/// Whether a lookup found its record (`NotFound`: no; other errors pass).
fn exists<T>(lookup: Result<T>) -> Result<bool> {
    match lookup {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

async fn run_exists(
    storage: &Storage,
    cache: &mut HashMap<RunId, bool>,
    id: &RunId,
) -> Result<bool> {
    if let Some(p) = cache.get(id) {
        return Ok(*p);
    }
    // Bounded: the cache is dropped rather than grown past a page's worth
    // of runs many times over.
    if cache.len() > 100 * PAGE {
        cache.clear();
    }
    let p = exists(storage.logs.get_run(id).await)?;
    cache.insert(id.clone(), p);
    Ok(p)
}
