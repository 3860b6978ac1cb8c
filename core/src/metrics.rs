//! Per-run execution metrics, exact summaries and detected patterns: the
//! trait [`MetricsRepository`] and its data types.

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::digest::canonical_json;
use crate::error::{Error, Result};
use crate::id::{PatternId, RunId, Version, WorkflowId};
use crate::logs::RunStatus;
use crate::page::{Cursor, Page};
use crate::summary::ExactSum;
use crate::text::{validate_json, validate_label, validate_text};
use crate::timestamp::Timestamp;
use crate::written::{BulkOutcome, Written};

/// The metric of one finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionMetric {
    /// The run measured; one metric per run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow_id: WorkflowId,
    /// Its workflow version.
    pub workflow_version: Version,
    /// How it ended: a terminal status.
    pub status: RunStatus,
    /// Wall time, in microseconds (at most `i64::MAX`).
    pub duration_micros: u64,
    /// When the metric was recorded.
    pub recorded_at: Timestamp,
    /// Named integer counters (steps, retries, tokens). Stored, not summarized.
    #[serde(default)]
    pub counters: BTreeMap<String, i64>,
    /// Named numeric values, summarized per name (finite numbers only).
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
}

impl ExecutionMetric {
    /// The metric of a finished run: its ids and status, the duration from
    /// its start to its end, recorded now, without counters or values
    /// (add them with [`ExecutionMetric::with_value`] and
    /// [`ExecutionMetric::with_counter`]). A run that is not finished is
    /// [`Error::InvalidInput`].
    ///
    /// ```
    /// use runstore_core::{ExecutionMetric, Run, RunStatus, RunUpdate, Timestamp, Version, WorkflowId};
    /// let run = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
    /// assert!(ExecutionMetric::from_run(&run).is_err());
    /// let end = Timestamp::from_micros(run.started_at.as_micros() + 1_500_000).unwrap();
    /// let (done, _) = run.apply_update(&RunUpdate::finished(RunStatus::Succeeded, end)).unwrap();
    /// let m = ExecutionMetric::from_run(&done).unwrap().with_value("rows", 42.0);
    /// assert_eq!(m.duration_micros, 1_500_000);
    /// assert_eq!(m.values["rows"], 42.0);
    /// ```
    pub fn from_run(run: &crate::logs::Run) -> Result<ExecutionMetric> {
        let end = match (run.status.is_terminal(), run.ended_at) {
            (true, Some(end)) => end,
            _ => {
                return Err(Error::invalid(
                    "run",
                    format!(
                        "run {} is {}; a metric is of a finished run",
                        run.id, run.status
                    ),
                ));
            }
        };
        let micros = end.as_micros().saturating_sub(run.started_at.as_micros());
        Ok(ExecutionMetric {
            run_id: run.id.clone(),
            workflow_id: run.workflow_id.clone(),
            workflow_version: run.workflow_version,
            status: run.status,
            duration_micros: u64::try_from(micros).unwrap_or(0),
            recorded_at: Timestamp::now(),
            counters: BTreeMap::new(),
            values: BTreeMap::new(),
        })
    }

    /// Adds a named numeric value.
    pub fn with_value(mut self, name: impl Into<String>, value: f64) -> Self {
        self.values.insert(name.into(), value);
        self
    }

    /// Adds a named counter.
    pub fn with_counter(mut self, name: impl Into<String>, value: i64) -> Self {
        self.counters.insert(name.into(), value);
        self
    }

    /// Checks: terminal status, duration fits `i64`, names are labels,
    /// values finite.
    pub fn validate(&self) -> Result<()> {
        if !self.status.is_terminal() {
            return Err(Error::invalid(
                "status",
                format!(
                    "a metric records a finished run; run {} is {}",
                    self.run_id, self.status
                ),
            ));
        }
        if self.duration_micros > i64::MAX as u64 {
            return Err(Error::invalid(
                "duration_micros",
                format!("must be at most {}, got {}", i64::MAX, self.duration_micros),
            ));
        }
        for name in self.counters.keys() {
            validate_label("counter name", name)?;
        }
        for (name, v) in &self.values {
            validate_label("value name", name)?;
            if !v.is_finite() {
                return Err(Error::invalid(
                    "values",
                    format!(
                        "{} must be a finite number, got {v}",
                        crate::text::shown(name)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Equality of stored content (`-0.0 == 0.0`).
    pub fn same_content(&self, other: &ExecutionMetric) -> bool {
        self == other
    }
}

/// count, sum, min, max and mean of one named value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueStats {
    /// How many metrics carry it.
    pub count: u64,
    /// Their exact sum, rounded once ([`ExactSum`]); infinite if it is
    /// beyond the range of `f64`.
    pub sum: f64,
    /// The least.
    pub min: f64,
    /// The greatest.
    pub max: f64,
    /// Their mean ([`ExactSum::mean`]): finite whenever it fits, even
    /// where the sum does not.
    pub mean: f64,
}

/// Duration statistics, in microseconds. Percentiles by nearest rank: the
/// p-th percentile of n sorted values is the one at rank `ceil(p * n / 100)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DurationStats {
    /// Shortest.
    pub min: u64,
    /// Longest.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median by nearest rank.
    pub p50: u64,
    /// 95th percentile by nearest rank.
    pub p95: u64,
    /// 99th percentile by nearest rank.
    pub p99: u64,
}

/// The exact summary of a workflow's (or one version's) metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsSummary {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// The version, if the summary is of one version.
    pub workflow_version: Option<Version>,
    /// How many metrics.
    pub executions: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which cancelled.
    pub cancelled: u64,
    /// `succeeded / executions`; `None` without executions.
    pub success_rate: Option<f64>,
    /// Duration statistics; `None` without executions.
    pub duration: Option<DurationStats>,
    /// Earliest `recorded_at`.
    pub first_recorded_at: Option<Timestamp>,
    /// Latest `recorded_at`.
    pub last_recorded_at: Option<Timestamp>,
    /// Per named value.
    pub values: BTreeMap<String, ValueStats>,
}

/// `metrics` (found by one query, in any order) placed in the order of
/// `run_ids`, `None` where a run has none: the answer of
/// [`MetricsRepository::metrics_of_runs`] for backends that read a batch at
/// once.
pub fn metrics_by_run(
    run_ids: &[RunId],
    metrics: Vec<ExecutionMetric>,
) -> Vec<Option<ExecutionMetric>> {
    let mut by_run: std::collections::HashMap<RunId, ExecutionMetric> =
        metrics.into_iter().map(|m| (m.run_id.clone(), m)).collect();
    run_ids.iter().map(|id| by_run.remove(id)).collect()
}

/// The rank (1-based) of the p-th percentile of `n` values by nearest rank.
pub fn nearest_rank(p: u32, n: u64) -> u64 {
    (u64::from(p) * n).div_ceil(100).max(1)
}

impl MetricsSummary {
    /// The reference computation every backend must agree with: the summary
    /// of `metrics` (already filtered to the workflow and version), by
    /// sorting every duration and adding every value exactly. Backends
    /// keep counters instead ([`crate::summary`]).
    pub fn compute<'a>(
        workflow_id: WorkflowId,
        workflow_version: Option<Version>,
        metrics: impl IntoIterator<Item = &'a ExecutionMetric>,
    ) -> MetricsSummary {
        let mut s = MetricsSummary::empty(workflow_id, workflow_version);
        let mut durations = Vec::new();
        let mut duration_sum: u128 = 0;
        let mut sums: BTreeMap<String, (ValueStats, ExactSum)> = BTreeMap::new();
        for m in metrics {
            s.executions += 1;
            match m.status {
                RunStatus::Succeeded => s.succeeded += 1,
                RunStatus::Failed => s.failed += 1,
                RunStatus::Cancelled => s.cancelled += 1,
                _ => {}
            }
            durations.push(m.duration_micros);
            duration_sum += u128::from(m.duration_micros);
            s.first_recorded_at = Some(
                s.first_recorded_at
                    .map_or(m.recorded_at, |t| t.min(m.recorded_at)),
            );
            s.last_recorded_at = Some(
                s.last_recorded_at
                    .map_or(m.recorded_at, |t| t.max(m.recorded_at)),
            );
            for (name, &v) in &m.values {
                let (stats, sum) = sums.entry(name.clone()).or_insert((
                    ValueStats {
                        count: 0,
                        sum: 0.0,
                        min: v,
                        max: v,
                        mean: 0.0,
                    },
                    ExactSum::default(),
                ));
                stats.count += 1;
                sum.add(v);
                stats.min = stats.min.min(v);
                stats.max = stats.max.max(v);
            }
        }
        for (name, (mut stats, sum)) in sums {
            stats.sum = sum.to_f64();
            stats.mean = sum.mean(stats.count);
            s.values.insert(name, stats);
        }
        if s.executions > 0 {
            durations.sort_unstable();
            let n = s.executions;
            let at = |p: u32| durations[(nearest_rank(p, n) - 1) as usize];
            s.success_rate = Some(s.succeeded as f64 / n as f64);
            s.duration = Some(DurationStats {
                min: durations[0],
                max: durations[durations.len() - 1],
                mean: duration_sum as f64 / n as f64,
                p50: at(50),
                p95: at(95),
                p99: at(99),
            });
        }
        s
    }

    /// The summary of no metrics.
    pub fn empty(workflow_id: WorkflowId, workflow_version: Option<Version>) -> MetricsSummary {
        MetricsSummary {
            workflow_id,
            workflow_version,
            executions: 0,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            success_rate: None,
            duration: None,
            first_recorded_at: None,
            last_recorded_at: None,
            values: BTreeMap::new(),
        }
    }

    /// Whether two summaries agree: counts, times and percentiles exactly,
    /// means, sums and rates within `1e-9` relative.
    pub fn agrees_with(&self, other: &MetricsSummary) -> bool {
        fn close(a: f64, b: f64) -> bool {
            a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        }
        let dur = match (&self.duration, &other.duration) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.min == b.min
                    && a.max == b.max
                    && a.p50 == b.p50
                    && a.p95 == b.p95
                    && a.p99 == b.p99
                    && close(a.mean, b.mean)
            }
            _ => false,
        };
        let rate = match (self.success_rate, other.success_rate) {
            (None, None) => true,
            (Some(a), Some(b)) => close(a, b),
            _ => false,
        };
        let values = self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|((ka, a), (kb, b))| {
                    ka == kb
                        && a.count == b.count
                        && a.min == b.min
                        && a.max == b.max
                        && close(a.sum, b.sum)
                        && close(a.mean, b.mean)
                });
        self.workflow_id == other.workflow_id
            && self.workflow_version == other.workflow_version
            && self.executions == other.executions
            && self.succeeded == other.succeeded
            && self.failed == other.failed
            && self.cancelled == other.cancelled
            && self.first_recorded_at == other.first_recorded_at
            && self.last_recorded_at == other.last_recorded_at
            && dur
            && rate
            && values
    }
}

/// A structured finding about a workflow, upserted by its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// The pattern; writing the same id again replaces it.
    pub id: PatternId,
    /// The workflow it is about.
    pub workflow_id: WorkflowId,
    /// What kind of finding, e.g. `slow_step` or `flaky`.
    pub kind: String,
    /// For humans.
    #[serde(default)]
    pub description: String,
    /// Details: any JSON.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Between 0 and 1.
    pub confidence: f64,
    /// Runs that support it.
    #[serde(default)]
    pub evidence: Vec<RunId>,
    /// When it was detected; patterns are listed newest first by it.
    pub detected_at: Timestamp,
}

impl Pattern {
    /// Kind label, description text, data free of NUL, confidence in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        validate_label("kind", &self.kind)?;
        validate_text("description", &self.description)?;
        validate_json("data", &self.data)?;
        if !(0.0..=1.0).contains(&self.confidence) {
            return Err(Error::invalid(
                "confidence",
                format!("must be between 0 and 1, got {}", self.confidence),
            ));
        }
        Ok(())
    }

    /// Equality of stored content, comparing JSON canonically.
    pub fn same_content(&self, other: &Pattern) -> bool {
        self.id == other.id
            && self.workflow_id == other.workflow_id
            && self.kind == other.kind
            && self.description == other.description
            && self.confidence == other.confidence
            && self.evidence == other.evidence
            && self.detected_at == other.detected_at
            && canonical_json(&self.data) == canonical_json(&other.data)
    }
}

/// A page of metrics, ordered by run id ascending.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MetricQuery {
    /// Only this workflow.
    pub workflow_id: Option<WorkflowId>,
    /// Only this version.
    pub workflow_version: Option<Version>,
    /// Page size.
    pub limit: usize,
    /// Start after this position.
    pub cursor: Option<Cursor>,
}

paged_query!(MetricQuery {
    workflow_id: None,
    workflow_version: None,
});

impl MetricQuery {
    /// Only one workflow (and optionally one version).
    pub fn with_workflow(mut self, id: WorkflowId, version: Option<Version>) -> Self {
        self.workflow_id = Some(id);
        self.workflow_version = version;
        self
    }
    /// Whether a metric passes the query's filter.
    pub fn matches(&self, m: &ExecutionMetric) -> bool {
        self.workflow_id
            .as_ref()
            .is_none_or(|w| *w == m.workflow_id)
            && self
                .workflow_version
                .is_none_or(|v| v == m.workflow_version)
    }
}

/// The key in a [`MetricQuery`] cursor: the last run id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricCursor {
    /// Last run id returned.
    pub run_id: RunId,
}

/// Which summary [`MetricsRepository::summary`] computes.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SummaryQuery {
    /// Only this version; all versions if `None`.
    pub workflow_version: Option<Version>,
}

impl SummaryQuery {
    /// The summary of one version.
    pub fn version(version: Version) -> Self {
        SummaryQuery {
            workflow_version: Some(version),
        }
    }
}

/// A page of patterns, newest `detected_at` first, then id descending.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PatternQuery {
    /// Only this workflow's patterns.
    pub workflow_id: Option<WorkflowId>,
    /// Page size.
    pub limit: usize,
    /// Start after this position.
    pub cursor: Option<Cursor>,
}

paged_query!(PatternQuery { workflow_id: None });

impl PatternQuery {
    setters! {
        /// Only one workflow.
        with_workflow(id: WorkflowId) => workflow_id = Some(id);
    }
    /// Whether a pattern passes the query's filter.
    pub fn matches(&self, p: &Pattern) -> bool {
        self.workflow_id
            .as_ref()
            .is_none_or(|w| *w == p.workflow_id)
    }
}

/// The key in a [`PatternQuery`] cursor: the last `(detected_at, id)`; the
/// next page holds patterns strictly less in that order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternCursor {
    /// Last pattern's detection time.
    pub detected_at: Timestamp,
    /// Last pattern's id.
    pub id: PatternId,
}

impl PatternCursor {
    /// The cursor key of a pattern.
    pub fn of(p: &Pattern) -> Self {
        PatternCursor {
            detected_at: p.detected_at,
            id: p.id.clone(),
        }
    }
}

/// The conflict of a metric recorded again with other content, worded
/// alike by every backend: a run is counted once.
pub fn metric_conflict(run_id: &RunId) -> Error {
    Error::conflict(format!(
        "a different metric is already recorded for run {run_id}; a run is counted once"
    ))
}

/// Stores metrics and patterns. See docs/DESIGN.md section 4, "Metrics".
#[async_trait]
pub trait MetricsRepository: Send + Sync + Debug + 'static {
    /// Records a run's metric. Absent: inserted. Identical: a no-op
    /// (`inserted == false`). Different: [`Error::Conflict`], so a retried
    /// writer never counts twice.
    async fn record(&self, metric: ExecutionMetric) -> Result<Written<ExecutionMetric>>;

    /// Records many metrics, all or nothing, with the rules of `record`.
    async fn record_many(&self, metrics: Vec<ExecutionMetric>) -> Result<BulkOutcome>;

    /// As [`crate::LogRepository::begin_bulk_load`], for metrics: the
    /// backend may put off work until [`MetricsRepository::end_bulk_load`];
    /// every answer stays the same meanwhile. The default does nothing.
    async fn begin_bulk_load(&self, options: crate::BulkLoadOptions) -> Result<()> {
        let _ = options;
        Ok(())
    }

    /// Ends a bulk load of metrics: whatever was put off is done when this
    /// returns. A no-op without a load under way. The default does nothing.
    async fn end_bulk_load(&self) -> Result<()> {
        Ok(())
    }

    /// One run's metric, or [`Error::NotFound`].
    async fn get(&self, run_id: &RunId) -> Result<ExecutionMetric>;

    /// A page of metrics by run id.
    async fn list(&self, query: MetricQuery) -> Result<Page<ExecutionMetric>>;

    /// Deletes a run's metric; [`Error::NotFound`] if absent.
    async fn delete(&self, run_id: &RunId) -> Result<()>;

    /// The exact summary of a workflow or version; the empty summary if it
    /// has no metrics. Must agree with [`MetricsSummary::compute`].
    async fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: SummaryQuery,
    ) -> Result<MetricsSummary>;

    /// Inserts or replaces a pattern by its id; `inserted` tells which.
    async fn upsert_pattern(&self, pattern: Pattern) -> Result<Written<Pattern>>;

    /// One pattern, or [`Error::NotFound`].
    async fn get_pattern(&self, id: &PatternId) -> Result<Pattern>;

    /// A page of patterns, newest first.
    async fn list_patterns(&self, query: PatternQuery) -> Result<Page<Pattern>>;

    /// The metric of each run of `run_ids`, in their order (at most
    /// [`crate::MAX_DELETE_BATCH`] ids, each once); `None` for a run without
    /// one. One call for a batch, as a migration checks what it wrote. The
    /// default looks them up one by one; the SQL backends answer with one
    /// query.
    async fn metrics_of_runs(&self, run_ids: &[RunId]) -> Result<Vec<Option<ExecutionMetric>>> {
        crate::validate_delete_batch("run_ids", run_ids)?;
        let mut out = Vec::with_capacity(run_ids.len());
        for id in run_ids {
            out.push(match self.get(id).await {
                Ok(m) => Some(m),
                Err(e) if e.kind() == crate::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            });
        }
        Ok(out)
    }

    /// Deletes the metrics of these runs, at most
    /// [`crate::MAX_DELETE_BATCH`] ids each once; absent ones are reported.
    /// Patterns are kept.
    async fn delete_many(&self, run_ids: &[RunId]) -> Result<crate::Deleted<RunId>>;
}
