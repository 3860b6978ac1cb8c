//! [`SummaryChange`]: what a write does to the maintained totals, worked
//! out once in core so every backend keeps the same counters.

use std::collections::BTreeMap;

use super::duration_buckets::bucket_of;
use super::exact_sum::ExactSum;
use crate::error::{Error, Result};
use crate::id::{Version, WorkflowId};
use crate::logs::RunStatus;
use crate::metrics::ExecutionMetric;

/// The counters of one workflow version's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionTotals {
    /// Metrics.
    pub executions: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which cancelled.
    pub cancelled: u64,
    /// The exact sum of their durations, in microseconds.
    pub duration_sum: u128,
}

/// The counters of one named value within one workflow version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValueTotals {
    /// Metrics carrying it.
    pub count: u64,
    /// Their exact sum.
    pub sum: ExactSum,
}

/// How a batch of inserted and deleted metrics changes one version's
/// counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionChange {
    /// Change of [`VersionTotals::executions`].
    pub executions: i64,
    /// Change of [`VersionTotals::succeeded`].
    pub succeeded: i64,
    /// Change of [`VersionTotals::failed`].
    pub failed: i64,
    /// Change of [`VersionTotals::cancelled`].
    pub cancelled: i64,
    /// Change of [`VersionTotals::duration_sum`].
    pub duration_sum: i128,
    /// Change of the count of each duration bucket
    /// ([`bucket_of`](super::bucket_of)).
    pub buckets: BTreeMap<u32, i64>,
    /// Change of each named value's count and sum.
    pub values: BTreeMap<String, (i64, ExactSum)>,
}

/// The change a batch of writes makes, per workflow version, in key order
/// (so backends that lock rows lock them in one order and cannot
/// deadlock each other).
///
/// ```
/// use runstore_core::summary::{SummaryChange, VersionTotals};
/// use runstore_core::{ExecutionMetric, RunId, RunStatus, Timestamp, Version, WorkflowId};
/// let m = ExecutionMetric {
///     run_id: RunId::new("r1").unwrap(),
///     workflow_id: WorkflowId::new("etl").unwrap(),
///     workflow_version: Version::FIRST,
///     status: RunStatus::Failed,
///     duration_micros: 1_500,
///     recorded_at: Timestamp::now(),
///     counters: Default::default(),
///     values: [("rows".to_string(), 2.5)].into(),
/// };
/// let mut change = SummaryChange::default();
/// change.insert(&m);
/// let (_, version) = change.versions().next().unwrap();
/// let mut totals = VersionTotals::default();
/// totals.apply(version, "etl v1").unwrap();
/// assert_eq!((totals.executions, totals.failed, totals.duration_sum), (1, 1, 1_500));
/// change.delete(&m);
/// assert!(change.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SummaryChange {
    versions: BTreeMap<(WorkflowId, Version), VersionChange>,
}

impl SummaryChange {
    /// The change of inserting `metrics`.
    pub fn inserting<'a>(metrics: impl IntoIterator<Item = &'a ExecutionMetric>) -> Self {
        let mut c = SummaryChange::default();
        for m in metrics {
            c.insert(m);
        }
        c
    }

    /// The change of deleting `metrics`.
    pub fn deleting<'a>(metrics: impl IntoIterator<Item = &'a ExecutionMetric>) -> Self {
        let mut c = SummaryChange::default();
        for m in metrics {
            c.delete(m);
        }
        c
    }

    /// Counts `m` in.
    pub fn insert(&mut self, m: &ExecutionMetric) {
        self.count(m, 1);
    }

    /// Counts `m` out.
    pub fn delete(&mut self, m: &ExecutionMetric) {
        self.count(m, -1);
    }

    fn count(&mut self, m: &ExecutionMetric, sign: i64) {
        let key = (m.workflow_id.clone(), m.workflow_version);
        let c = self.versions.entry(key.clone()).or_default();
        c.executions += sign;
        match m.status {
            RunStatus::Succeeded => c.succeeded += sign,
            RunStatus::Failed => c.failed += sign,
            RunStatus::Cancelled => c.cancelled += sign,
            _ => {}
        }
        c.duration_sum += i128::from(sign) * i128::from(m.duration_micros);
        let bucket = c.buckets.entry(bucket_of(m.duration_micros)).or_default();
        *bucket += sign;
        if *bucket == 0 {
            c.buckets.remove(&bucket_of(m.duration_micros));
        }
        for (name, &v) in &m.values {
            let (count, sum) = c.values.entry(name.clone()).or_default();
            *count += sign;
            if sign > 0 {
                sum.add(v)
            } else {
                sum.sub(v)
            }
            if *count == 0 && sum.is_zero() {
                c.values.remove(name);
            }
        }
        if *c == VersionChange::default() {
            self.versions.remove(&key);
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The changed versions, in key order.
    pub fn versions(&self) -> impl Iterator<Item = (&(WorkflowId, Version), &VersionChange)> {
        self.versions.iter()
    }
}

fn apply_count(what: &str, field: &str, value: &mut u64, change: i64) -> Result<()> {
    *value = value.checked_add_signed(change).ok_or_else(|| {
        Error::corrupt(
            what,
            format!(
                "the maintained {field} count would be negative ({value} {change:+}); \
             rebuild the summaries"
            ),
        )
    })?;
    Ok(())
}

impl VersionTotals {
    /// Applies a change; a count that would fall below zero means the
    /// counters no longer match the metrics, [`Error::Corrupt`] naming
    /// `what`.
    pub fn apply(&mut self, c: &VersionChange, what: &str) -> Result<()> {
        apply_count(what, "executions", &mut self.executions, c.executions)?;
        apply_count(what, "succeeded", &mut self.succeeded, c.succeeded)?;
        apply_count(what, "failed", &mut self.failed, c.failed)?;
        apply_count(what, "cancelled", &mut self.cancelled, c.cancelled)?;
        self.duration_sum = self
            .duration_sum
            .checked_add_signed(c.duration_sum)
            .ok_or_else(|| Error::corrupt(what, "the maintained duration sum would be negative"))?;
        Ok(())
    }

    /// The duration sum as stored: 16 bytes, big-endian.
    pub fn duration_sum_bytes(&self) -> [u8; 16] {
        self.duration_sum.to_be_bytes()
    }

    /// Decodes [`VersionTotals::duration_sum_bytes`].
    pub fn duration_sum_from(what: &str, bytes: &[u8]) -> Result<u128> {
        let b: [u8; 16] = bytes.try_into().map_err(|_| {
            Error::corrupt(what, format!("a duration sum of {} bytes", bytes.len()))
        })?;
        Ok(u128::from_be_bytes(b))
    }
}

impl ValueTotals {
    /// Applies a change of count and sum.
    pub fn apply(&mut self, count: i64, sum: &ExactSum, what: &str) -> Result<()> {
        apply_count(what, "value", &mut self.count, count)?;
        self.sum.add_sum(sum);
        Ok(())
    }
}

/// Applies a bucket's change to its count.
pub fn apply_bucket(count: &mut u64, change: i64, what: &str) -> Result<()> {
    apply_count(what, "duration bucket", count, change)
}
