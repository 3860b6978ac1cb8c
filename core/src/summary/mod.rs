//! Metrics summaries maintained on every write, so that
//! [`MetricsRepository::summary`](crate::MetricsRepository::summary) costs
//! the same at a million metrics as at ten.
//!
//! The rules are decided here, once, and every backend keeps the same
//! counters:
//!
//! - [`SummaryChange`] is what a batch of inserted and deleted metrics does
//!   to each workflow version's [`VersionTotals`] (counts, the exact
//!   duration sum), to each named value's [`ValueTotals`] (count and an
//!   [`ExactSum`], so subtracting a deleted value is exact) and to the
//!   duration buckets ([`bucket_of`]).
//! - [`SummaryParts`] assembles the summary from those counters, the least
//!   and greatest durations, values and times (index seeks), and the
//!   durations at the percentile ranks: [`SummaryParts::probes`] says
//!   which bucket holds each rank, so the backend reads one bucket's
//!   durations, not all.
//! - [`SummaryIndex`] does all of it in memory, for backends that hold
//!   their metrics there.
//!
//! The reference [`MetricsSummary::compute`](crate::MetricsSummary::compute)
//! sorts every duration and adds every value with [`ExactSum`]; the
//! conformance suite checks each backend's summary against it after every
//! kind of write.

mod change;
mod duration_buckets;
mod exact_sum;
mod index;
mod parts;

pub use change::{SummaryChange, ValueTotals, VersionChange, VersionTotals, apply_bucket};
pub use duration_buckets::{RankProbe, bucket_of, bucket_range, percentile_probes};
pub use exact_sum::ExactSum;
pub use index::SummaryIndex;
pub use parts::{Extremes, PERCENTILES, SummaryParts};
