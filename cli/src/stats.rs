//! `runstore stats`: how many records each concern holds.

use std::collections::BTreeMap;
use std::process::ExitCode;

use runstore::{
    ArtifactQuery, MetricQuery, PatternQuery, Result, RunFilter, RunStatus, Storage, WorkflowId,
    WorkflowQuery,
};
use serde::Serialize;

use crate::output::Out;
use crate::paging::tally;

/// Counts of every concern, read page by page.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub workflows: u64,
    pub workflow_versions: u64,
    pub runs: u64,
    pub runs_by_status: BTreeMap<String, u64>,
    pub metrics: u64,
    pub patterns: u64,
    pub artifacts: u64,
    pub artifact_bytes: u64,
}

/// Items a page when counting for `stats`.
const STATS_PAGE: usize = 1000;

/// Counts every concern, as `runstore stats` shows them.
pub async fn collect_stats(storage: &Storage) -> Result<Stats> {
    let mut s = Stats::default();
    // Listed by (id, version): a workflow starts where the id changes.
    let mut last_id: Option<WorkflowId> = None;
    (s.workflow_versions, s.workflows) = tally(
        |c| {
            storage.workflows.list(
                WorkflowQuery::default()
                    .with_limit(STATS_PAGE)
                    .with_cursor(c),
            )
        },
        |d| {
            let first = last_id.as_ref() != Some(&d.id);
            last_id = Some(d.id.clone());
            u64::from(first)
        },
    )
    .await?;
    s.runs = storage.logs.count_runs(RunFilter::default()).await?;
    for st in RunStatus::ALL {
        let n = storage
            .logs
            .count_runs(RunFilter::default().statuses([st]))
            .await?;
        s.runs_by_status.insert(st.as_str().to_string(), n);
    }
    (s.metrics, _) = tally(
        |c| {
            storage
                .metrics
                .list(MetricQuery::default().with_limit(STATS_PAGE).with_cursor(c))
        },
        |_| 0,
    )
    .await?;
    (s.patterns, _) = tally(
        |c| {
            storage.metrics.list_patterns(
                PatternQuery::default()
                    .with_limit(STATS_PAGE)
                    .with_cursor(c),
            )
        },
        |_| 0,
    )
    .await?;
    (s.artifacts, s.artifact_bytes) = tally(
        |c| {
            storage.artifacts.list(
                ArtifactQuery::default()
                    .with_limit(STATS_PAGE)
                    .with_cursor(c),
            )
        },
        |i| i.size,
    )
    .await?;
    Ok(s)
}

/// `runstore stats`.
pub async fn stats(storage: &Storage, out: &Out) -> Result<ExitCode> {
    let s = collect_stats(storage).await?;
    out.result(&s, || {
        let by_status: Vec<String> = s
            .runs_by_status
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "workflows  {} ({} versions)\nruns       {}{}\nmetrics    {}\npatterns   {}\nartifacts  {} ({} bytes)",
            s.workflows,
            s.workflow_versions,
            s.runs,
            if by_status.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_status.join(", "))
            },
            s.metrics,
            s.patterns,
            s.artifacts,
            s.artifact_bytes
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
