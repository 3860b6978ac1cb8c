//! [`BulkLoadOptions`]: the hint that a large import is about to start
//! (docs/DESIGN.md section 4, "Bulk loads").
//!
//! A bulk load changes how fast a store takes a large import, never what it
//! answers: between [`crate::LogRepository::begin_bulk_load`] and
//! [`crate::LogRepository::end_bulk_load`] (and the same pair on
//! [`crate::MetricsRepository`]) every write keeps its rules and every read
//! its answer. A backend may put off work it can do faster once at the end
//! (a SQL backend builds its secondary indexes in one sorted pass instead of
//! one random insert per row), and must have done it when `end_bulk_load`
//! returns or, after a crash mid-load, when the store is next opened. The
//! default of both methods does nothing.

/// Which repository a bulk load is of. Backends that list what a load puts
/// off tag each item with it, so a load of logs leaves the metrics' alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BulkLoadOf {
    /// [`crate::LogRepository`]: runs and their events.
    Logs,
    /// [`crate::MetricsRepository`]: metrics and their named values.
    Metrics,
}

impl BulkLoadOf {
    /// The records whose number [`BulkLoadOptions::pays_off`] weighs
    /// against the load's runs: `runs`, or `metrics` (one per run). The SQL
    /// backends keep them in tables of these names.
    ///
    /// ```
    /// use runstore_core::BulkLoadOf;
    /// assert_eq!(BulkLoadOf::Metrics.sized_by(), "metrics");
    /// ```
    pub fn sized_by(self) -> &'static str {
        match self {
            BulkLoadOf::Logs => "runs",
            BulkLoadOf::Metrics => "metrics",
        }
    }
}

/// What a bulk load is told when it starts. `#[non_exhaustive]` so that it
/// can grow; build it with [`Default`] and the `with_` methods.
///
/// ```
/// use runstore_core::BulkLoadOptions;
/// let o = BulkLoadOptions::default().with_expected_runs(1_000_000);
/// assert_eq!(o.expected_runs, Some(1_000_000));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkLoadOptions {
    /// How many runs (with their events and metrics) the load expects to
    /// write, if known. A backend compares it with what it holds: rebuilding
    /// an index over a large table to add a few rows costs more than the
    /// rows' inserts. `None`: the load is taken to be large.
    pub expected_runs: Option<u64>,
}

impl BulkLoadOptions {
    /// Sets [`BulkLoadOptions::expected_runs`].
    pub fn with_expected_runs(mut self, runs: u64) -> Self {
        self.expected_runs = Some(runs);
        self
    }

    /// Whether putting work off pays for a store already holding `stored`
    /// rows of the table concerned: the load is expected to bring more
    /// than that (or its size is unknown). A second full pass of a
    /// migration, which brings what is already there, keeps the indexes.
    /// The one place that rule is decided, so that every backend defers in
    /// the same cases.
    ///
    /// ```
    /// use runstore_core::BulkLoadOptions;
    /// assert!(BulkLoadOptions::default().pays_off(5_000_000));
    /// let o = BulkLoadOptions::default().with_expected_runs(1_000);
    /// assert!(o.pays_off(0) && o.pays_off(999) && !o.pays_off(1_000));
    /// ```
    pub fn pays_off(&self, stored: u64) -> bool {
        self.expected_runs.is_none_or(|n| n > stored)
    }
}
