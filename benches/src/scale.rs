//! The scale knob: how many operations and rows each workload uses.

use std::str::FromStr;

/// How big a run is. `Quick` is a smoke check (under 5 minutes on 2 cores),
/// `Full` the published figures (under 30 minutes), `Tiny` is for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Seconds: used by the crate's own tests.
    Tiny,
    /// A few minutes: every workload at reduced size.
    Quick,
    /// The figures of the issue: 1,000,000 runs and metrics, 1 GiB artifacts.
    Full,
}

impl FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tiny" => Ok(Scale::Tiny),
            "quick" => Ok(Scale::Quick),
            "full" => Ok(Scale::Full),
            other => Err(format!(
                "--scale must be tiny, quick or full, got {other:?}"
            )),
        }
    }
}

/// The sizes a [`Scale`] stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Repetitions of each timed measurement (median, min, max over them).
    pub reps: usize,
    /// Durable single appends per repetition.
    pub single_appends: usize,
    /// Appends per repetition spread over 8 concurrent writers.
    pub concurrent_appends: usize,
    /// Batches of [`Sizes::batch`] events per repetition.
    pub batches: usize,
    /// Events per batch.
    pub batch: usize,
    /// Runs (10 events each) per bulk import repetition.
    pub import_runs: usize,
    /// Run counts at which queries are timed.
    pub query_rows: Vec<usize>,
    /// The largest run count the file backend is loaded with (its bulk path
    /// is the slowest; above it the row says so).
    pub file_query_cap: usize,
    /// Metric counts over which the summary is timed.
    pub summary_rows: Vec<usize>,
    /// Queries timed per measurement.
    pub query_reps: usize,
    /// Artifact sizes in bytes.
    pub artifact_sizes: Vec<u64>,
    /// Runs (10 events and a metric each) migrated per hop.
    pub migrate_runs: usize,
    /// Runs (10 events each) pruned on SQLite and PostgreSQL; the file
    /// backend prunes at most [`Sizes::file_prune_cap`].
    pub prune_runs: usize,
    /// The most runs the file backend prunes.
    pub file_prune_cap: usize,
}

impl Scale {
    /// The sizes of this scale.
    pub fn sizes(self) -> Sizes {
        match self {
            Scale::Tiny => Sizes {
                reps: 2,
                single_appends: 5,
                concurrent_appends: 16,
                batches: 2,
                batch: 10,
                import_runs: 20,
                query_rows: vec![1000],
                file_query_cap: 1000,
                summary_rows: vec![200],
                query_reps: 3,
                artifact_sizes: vec![64 << 10],
                migrate_runs: 50,
                prune_runs: 200,
                file_prune_cap: 200,
            },
            Scale::Quick => Sizes {
                reps: 3,
                single_appends: 100,
                concurrent_appends: 400,
                batches: 20,
                batch: 100,
                import_runs: 2_000,
                query_rows: vec![100_000],
                file_query_cap: 100_000,
                summary_rows: vec![100_000],
                query_reps: 20,
                artifact_sizes: vec![1 << 20, 64 << 20],
                migrate_runs: 2_000,
                prune_runs: 5_000,
                file_prune_cap: 5_000,
            },
            Scale::Full => Sizes {
                reps: 5,
                single_appends: 300,
                concurrent_appends: 1_600,
                batches: 50,
                batch: 100,
                import_runs: 10_000,
                query_rows: vec![100_000, 1_000_000],
                file_query_cap: 1_000_000,
                summary_rows: vec![100_000, 1_000_000],
                query_reps: 30,
                artifact_sizes: vec![1 << 20, 1 << 30],
                migrate_runs: 1_000_000,
                prune_runs: 1_000_000,
                file_prune_cap: 100_000,
            },
        }
    }
}
