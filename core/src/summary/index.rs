//! [`SummaryIndex`]: the maintained summary counters of backends that hold
//! their metrics in memory (the reference store, the file backend).

use std::collections::{BTreeMap, HashMap};

use super::change::{ValueTotals, VersionTotals};
use super::duration_buckets::{RankProbe, bucket_of};
use super::parts::{Extremes, SummaryParts};
use crate::error::Result;
use crate::id::{Version, WorkflowId};
use crate::logs::RunStatus;
use crate::metrics::{ExecutionMetric, MetricsSummary, SummaryQuery};
use crate::timestamp::Timestamp;

/// Summary counters kept up to date as metrics come and go, so a summary
/// costs a few thousand steps however many metrics there are.
///
/// ```
/// use runstore_core::summary::SummaryIndex;
/// use runstore_core::{ExecutionMetric, MetricsSummary, RunId, RunStatus, SummaryQuery, Timestamp, Version, WorkflowId};
/// let wf = WorkflowId::new("etl").unwrap();
/// let metric = |run: &str, micros| ExecutionMetric {
///     run_id: RunId::new(run).unwrap(),
///     workflow_id: wf.clone(),
///     workflow_version: Version::FIRST,
///     status: RunStatus::Succeeded,
///     duration_micros: micros,
///     recorded_at: Timestamp::from_micros(1).unwrap(),
///     counters: Default::default(),
///     values: Default::default(),
/// };
/// let (a, b) = (metric("a", 1_000_000), metric("b", 3_000_000));
/// let mut index = SummaryIndex::default();
/// index.insert(&a);
/// index.insert(&b);
/// index.remove(&a);
/// let got = index.summary(&wf, &SummaryQuery::default()).unwrap();
/// assert_eq!(got, MetricsSummary::compute(wf.clone(), None, [&b]));
/// ```
#[derive(Debug, Default)]
pub struct SummaryIndex {
    workflows: HashMap<WorkflowId, BTreeMap<Version, VersionIndex>>,
}

#[derive(Debug, Default)]
struct VersionIndex {
    totals: VersionTotals,
    /// The durations of each bucket, unsorted: a bucket's count is its
    /// length, and a percentile sorts the one bucket it falls in. (A
    /// count per distinct duration would cost a large ordered map per
    /// insert.)
    buckets: BTreeMap<u32, Vec<u64>>,
    recorded: BTreeMap<Timestamp, u64>,
    values: BTreeMap<String, ValueIndex>,
}

#[derive(Debug, Default)]
struct ValueIndex {
    totals: ValueTotals,
    /// Count per distinct value, by [`order_key`].
    ordered: BTreeMap<u64, u64>,
}

/// A key that orders finite `f64`s as numbers.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

fn step(count: &mut u64, add: bool) {
    *count = if add {
        count.saturating_add(1)
    } else {
        count.saturating_sub(1)
    };
}

fn step_key<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, add: bool) {
    if add {
        *map.entry(key).or_default() += 1;
    } else if let Some(c) = map.get_mut(&key) {
        *c -= 1;
        if *c == 0 {
            map.remove(&key);
        }
    }
}

impl SummaryIndex {
    /// Counts a stored metric in.
    pub fn insert(&mut self, m: &ExecutionMetric) {
        self.update(m, true);
    }

    /// Counts a metric that was stored out.
    pub fn remove(&mut self, m: &ExecutionMetric) {
        self.update(m, false);
    }

    fn update(&mut self, m: &ExecutionMetric, add: bool) {
        // Look up before inserting: most metrics find their workflow and
        // value names there, and need no clone of them.
        if !self.workflows.contains_key(&m.workflow_id) {
            self.workflows
                .insert(m.workflow_id.clone(), BTreeMap::new());
        }
        let Some(versions) = self.workflows.get_mut(&m.workflow_id) else {
            return;
        };
        let v = versions.entry(m.workflow_version).or_default();
        let t = &mut v.totals;
        step(&mut t.executions, add);
        match m.status {
            RunStatus::Succeeded => step(&mut t.succeeded, add),
            RunStatus::Failed => step(&mut t.failed, add),
            RunStatus::Cancelled => step(&mut t.cancelled, add),
            _ => {}
        }
        let d = u128::from(m.duration_micros);
        t.duration_sum = if add {
            t.duration_sum + d
        } else {
            t.duration_sum.saturating_sub(d)
        };
        let bucket = bucket_of(m.duration_micros);
        if add {
            v.buckets.entry(bucket).or_default().push(m.duration_micros);
        } else if let Some(held) = v.buckets.get_mut(&bucket) {
            if let Some(at) = held.iter().position(|&d| d == m.duration_micros) {
                held.swap_remove(at);
            }
            if held.is_empty() {
                v.buckets.remove(&bucket);
            }
        }
        step_key(&mut v.recorded, m.recorded_at, add);
        for (name, &x) in &m.values {
            if !v.values.contains_key(name) {
                v.values.insert(name.clone(), ValueIndex::default());
            }
            let Some(value) = v.values.get_mut(name) else {
                continue;
            };
            step(&mut value.totals.count, add);
            if add {
                value.totals.sum.add(x)
            } else {
                value.totals.sum.sub(x)
            }
            step_key(&mut value.ordered, order_key(x), add);
            if value.totals.count == 0 {
                v.values.remove(name);
            }
        }
        if v.totals.executions == 0 {
            versions.remove(&m.workflow_version);
            if versions.is_empty() {
                self.workflows.remove(&m.workflow_id);
            }
        }
    }

    /// The summary of a workflow (or one version) from the counters.
    pub fn summary(
        &self,
        workflow_id: &WorkflowId,
        query: &SummaryQuery,
    ) -> Result<MetricsSummary> {
        let mut parts = SummaryParts::new(workflow_id.clone(), query.workflow_version);
        let selected: Vec<&VersionIndex> =
            match (self.workflows.get(workflow_id), query.workflow_version) {
                (None, _) => Vec::new(),
                (Some(vs), Some(v)) => vs.get(&v).into_iter().collect(),
                (Some(vs), None) => vs.values().collect(),
            };
        for v in &selected {
            let extremes = match (
                v.buckets
                    .first_key_value()
                    .and_then(|(_, d)| d.iter().min()),
                v.buckets.last_key_value().and_then(|(_, d)| d.iter().max()),
                v.recorded.first_key_value(),
                v.recorded.last_key_value(),
            ) {
                (Some(&lo), Some(&hi), Some((&first, _)), Some((&last, _))) => Some(Extremes {
                    min_duration: lo,
                    max_duration: hi,
                    first_recorded_at: first,
                    last_recorded_at: last,
                }),
                _ => None,
            };
            parts.add_version(&v.totals, extremes)?;
            for (name, value) in &v.values {
                if let (Some((&lo, _)), Some((&hi, _))) = (
                    value.ordered.first_key_value(),
                    value.ordered.last_key_value(),
                ) {
                    parts.add_value(name, &value.totals, from_order_key(lo), from_order_key(hi))?;
                }
            }
            for (&b, held) in &v.buckets {
                parts.add_bucket(b, held.len() as u64);
            }
        }
        let mut found = Vec::new();
        for probe in parts.probes()? {
            found.push(match probe {
                RankProbe::Exact(d) => d,
                RankProbe::Within { lo, offset, .. } => {
                    let bucket = bucket_of(lo);
                    let mut within: Vec<u64> = selected
                        .iter()
                        .filter_map(|v| v.buckets.get(&bucket))
                        .flatten()
                        .copied()
                        .collect();
                    within.sort_unstable();
                    within.get(offset as usize).copied().unwrap_or(lo)
                }
            });
        }
        parts.finish(&found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_reference_through_inserts_and_removes() {
        use crate::id::RunId;
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let wf = WorkflowId::new("w").unwrap();
        let mut index = SummaryIndex::default();
        let mut stored: Vec<ExecutionMetric> = Vec::new();
        for i in 0..3000u64 {
            if next(4) == 0 && !stored.is_empty() {
                let m = stored.swap_remove(next(stored.len() as u64) as usize);
                index.remove(&m);
            } else {
                let m = ExecutionMetric {
                    run_id: RunId::new(format!("r{i}")).unwrap(),
                    workflow_id: wf.clone(),
                    workflow_version: Version::new(1 + next(3) as u32).unwrap(),
                    status: [
                        RunStatus::Succeeded,
                        RunStatus::Failed,
                        RunStatus::Cancelled,
                    ][next(3) as usize],
                    duration_micros: match next(3) {
                        0 => next(300),
                        1 => 5_000_000 + next(5_000),
                        _ => next(1 << 40),
                    },
                    recorded_at: Timestamp::from_micros(next(1_000_000) as i64).unwrap(),
                    counters: Default::default(),
                    values: [("x".to_string(), next(1000) as f64 - 500.5)].into(),
                };
                index.insert(&m);
                stored.push(m);
            }
            if i % 250 == 0 {
                for version in [None, Some(Version::FIRST), Some(Version::new(3).unwrap())] {
                    let q = SummaryQuery {
                        workflow_version: version,
                    };
                    let got = index.summary(&wf, &q).unwrap();
                    let want = MetricsSummary::compute(
                        wf.clone(),
                        version,
                        stored
                            .iter()
                            .filter(|m| version.is_none_or(|v| v == m.workflow_version)),
                    );
                    assert!(got.agrees_with(&want), "step {i}\n{got:?}\n{want:?}");
                }
            }
        }
    }

    #[test]
    fn order_keys_order_numbers() {
        let xs = [
            f64::MIN,
            -1e300,
            -1.0,
            -f64::from_bits(1),
            0.0,
            f64::from_bits(1),
            1.0,
            f64::MAX,
        ];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) < order_key(w[1]), "{} < {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(from_order_key(order_key(x)), x);
        }
    }
}
