//! [`SummaryParts`]: a summary put together from maintained counters and a
//! few index seeks, the same way on every backend.

use std::collections::BTreeMap;

use super::change::{ValueTotals, VersionTotals};
use super::duration_buckets::{RankProbe, percentile_probes};
use crate::error::{Error, Result};
use crate::id::{Version, WorkflowId};
use crate::metrics::{DurationStats, MetricsSummary, ValueStats};
use crate::timestamp::Timestamp;

/// The percentiles a summary reports, in the order of
/// [`SummaryParts::probes`].
pub const PERCENTILES: [u32; 3] = [50, 95, 99];

/// A version's least and greatest duration and its first and last
/// `recorded_at`, each one index seek.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extremes {
    /// Shortest duration.
    pub min_duration: u64,
    /// Longest duration.
    pub max_duration: u64,
    /// Earliest `recorded_at`.
    pub first_recorded_at: Timestamp,
    /// Latest `recorded_at`.
    pub last_recorded_at: Timestamp,
}

/// What a backend reads to answer [`MetricsRepository::summary`]
/// (crate::MetricsRepository::summary) without visiting every metric:
/// per version, its [`VersionTotals`] and [`Extremes`]; per version and
/// value name, its [`ValueTotals`] and least and greatest value; the
/// duration bucket counts. Then the backend reads the durations the
/// [`SummaryParts::probes`] point at and calls [`SummaryParts::finish`].
///
/// ```
/// use runstore_core::summary::{Extremes, RankProbe, SummaryParts, VersionTotals, bucket_of};
/// use runstore_core::{Timestamp, WorkflowId};
/// let t = Timestamp::from_micros(1).unwrap();
/// let mut parts = SummaryParts::new(WorkflowId::new("etl").unwrap(), None);
/// let totals = VersionTotals { executions: 2, succeeded: 2, duration_sum: 30, ..Default::default() };
/// parts.add_version(&totals, Some(Extremes {
///     min_duration: 10, max_duration: 20, first_recorded_at: t, last_recorded_at: t,
/// })).unwrap();
/// parts.add_bucket(bucket_of(10), 1);
/// parts.add_bucket(bucket_of(20), 1);
/// let probes = parts.probes().unwrap();
/// assert_eq!(probes, vec![RankProbe::Exact(10), RankProbe::Exact(20), RankProbe::Exact(20)]);
/// let s = parts.finish(&[10, 20, 20]).unwrap();
/// assert_eq!((s.executions, s.duration.unwrap().mean), (2, 15.0));
/// ```
#[derive(Clone, Debug)]
pub struct SummaryParts {
    workflow_id: WorkflowId,
    workflow_version: Option<Version>,
    totals: VersionTotals,
    extremes: Option<Extremes>,
    values: BTreeMap<String, (ValueTotals, f64, f64)>,
    buckets: BTreeMap<u32, u64>,
}

impl SummaryParts {
    /// No parts yet, of a workflow or one of its versions.
    pub fn new(workflow_id: WorkflowId, workflow_version: Option<Version>) -> SummaryParts {
        SummaryParts {
            workflow_id,
            workflow_version,
            totals: VersionTotals::default(),
            extremes: None,
            values: BTreeMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    fn what(&self) -> String {
        format!("the summary of workflow {}", self.workflow_id)
    }

    /// Adds a version's counters and extremes (`None` if it has no
    /// metrics).
    pub fn add_version(
        &mut self,
        totals: &VersionTotals,
        extremes: Option<Extremes>,
    ) -> Result<()> {
        let what = self.what();
        let overflow = || Error::corrupt(what.clone(), "counters overflow");
        let t = &mut self.totals;
        for (sum, add) in [
            (&mut t.executions, totals.executions),
            (&mut t.succeeded, totals.succeeded),
            (&mut t.failed, totals.failed),
            (&mut t.cancelled, totals.cancelled),
        ] {
            *sum = sum.checked_add(add).ok_or_else(overflow)?;
        }
        t.duration_sum = t
            .duration_sum
            .checked_add(totals.duration_sum)
            .ok_or_else(overflow)?;
        if let Some(e) = extremes {
            self.extremes = Some(match self.extremes {
                None => e,
                Some(a) => Extremes {
                    min_duration: a.min_duration.min(e.min_duration),
                    max_duration: a.max_duration.max(e.max_duration),
                    first_recorded_at: a.first_recorded_at.min(e.first_recorded_at),
                    last_recorded_at: a.last_recorded_at.max(e.last_recorded_at),
                },
            });
        }
        Ok(())
    }

    /// Adds a named value's counters and least and greatest value within
    /// one version.
    pub fn add_value(
        &mut self,
        name: &str,
        totals: &ValueTotals,
        min: f64,
        max: f64,
    ) -> Result<()> {
        let what = self.what();
        match self.values.get_mut(name) {
            None => {
                self.values
                    .insert(name.to_string(), (totals.clone(), min, max));
            }
            Some((t, lo, hi)) => {
                t.count = t.count.checked_add(totals.count).ok_or_else(|| {
                    Error::corrupt(what, format!("counters of `{name}` overflow"))
                })?;
                t.sum.add_sum(&totals.sum);
                *lo = lo.min(min);
                *hi = hi.max(max);
            }
        }
        Ok(())
    }

    /// Adds a duration bucket's count (of one version; counts of the same
    /// bucket add up).
    pub fn add_bucket(&mut self, bucket: u32, count: u64) {
        *self.buckets.entry(bucket).or_default() += count;
    }

    /// Where the durations of [`PERCENTILES`] are; empty without metrics.
    /// [`Error::Corrupt`] if the bucket counts disagree with the totals.
    pub fn probes(&self) -> Result<Vec<RankProbe>> {
        let n = self.totals.executions;
        if n == 0 {
            return Ok(Vec::new());
        }
        let in_buckets: u64 = self.buckets.values().sum();
        if in_buckets != n {
            return Err(Error::corrupt(
                self.what(),
                format!(
                    "{n} metrics counted but {in_buckets} in duration buckets; rebuild the summaries"
                ),
            ));
        }
        percentile_probes(&self.buckets, n, &PERCENTILES)
            .ok_or_else(|| Error::corrupt(self.what(), "duration buckets do not add up"))
    }

    /// The summary, given the durations at [`PERCENTILES`] (what the
    /// probes found, in their order; nothing without metrics).
    pub fn finish(self, percentiles: &[u64]) -> Result<MetricsSummary> {
        let what = self.what();
        let mut s = MetricsSummary::empty(self.workflow_id, self.workflow_version);
        let t = self.totals;
        if t.executions == 0 {
            return Ok(s);
        }
        let (Some(e), [p50, p95, p99]) = (self.extremes, percentiles) else {
            return Err(Error::corrupt(
                what,
                format!(
                    "{} metrics counted but their extremes or percentiles are missing",
                    t.executions
                ),
            ));
        };
        s.executions = t.executions;
        s.succeeded = t.succeeded;
        s.failed = t.failed;
        s.cancelled = t.cancelled;
        s.success_rate = Some(t.succeeded as f64 / t.executions as f64);
        s.first_recorded_at = Some(e.first_recorded_at);
        s.last_recorded_at = Some(e.last_recorded_at);
        s.duration = Some(DurationStats {
            min: e.min_duration,
            max: e.max_duration,
            mean: t.duration_sum as f64 / t.executions as f64,
            p50: *p50,
            p95: *p95,
            p99: *p99,
        });
        for (name, (v, min, max)) in self.values {
            if v.count == 0 {
                continue;
            }
            s.values.insert(
                name,
                ValueStats {
                    count: v.count,
                    sum: v.sum.to_f64(),
                    min,
                    max,
                    mean: v.sum.mean(v.count),
                },
            );
        }
        Ok(s)
    }
}
