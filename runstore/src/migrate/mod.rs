#![doc = include_str!("README.md")]

mod copy;
mod pager;
mod runs_check;
mod verify;

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::dump::Quarantine;

use runstore_core::{Error, MAX_PAGE_LIMIT, Result, Run, RunFilter, RunStatus, Timestamp};
use serde::Serialize;

pub use copy::migrate;
pub use verify::verify;

/// The concerns, in the order a migration copies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Concern {
    /// Workflow definitions.
    Workflows,
    /// Runs (with their events when migrating).
    Runs,
    /// Events of runs (verification counts and compares them on their own).
    Events,
    /// Execution metrics.
    Metrics,
    /// Patterns.
    Patterns,
    /// Artifacts.
    Artifacts,
}

impl Concern {
    /// The lowercase name, as given to [`MigrationProgress::on_progress`].
    pub fn as_str(self) -> &'static str {
        match self {
            Concern::Workflows => "workflows",
            Concern::Runs => "runs",
            Concern::Events => "events",
            Concern::Metrics => "metrics",
            Concern::Patterns => "patterns",
            Concern::Artifacts => "artifacts",
        }
    }
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Receives progress of a migration or verification, e.g. to drive one
/// progress bar per concern. Called from the migrating task: keep it cheap.
pub trait MigrationProgress: Send + Sync {
    /// `done` records of `concern` handled so far, of `total` if known
    /// (runs: from `count_runs`; others: unknown). `concern` is one of
    /// [`Concern::as_str`].
    fn on_progress(&self, concern: &str, done: u64, total: Option<u64>);

    /// `concern` is finished after `done` records.
    fn on_finish(&self, concern: &str, done: u64) {
        let _ = (concern, done);
    }
}

/// What to do with a record the destination holds with other content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Report it in [`MigrationReport::conflicts`], leave it untouched and go on.
    #[default]
    Report,
    /// Stop at the first one with [`runstore_core::ErrorKind::Conflict`],
    /// before writing the batch that holds it.
    Fail,
}

/// Options of [`migrate`].
#[derive(Clone)]
#[non_exhaustive]
pub struct MigrateOptions {
    /// Records read per page and written per batch (runs per
    /// `import_runs`); 1 to [`MAX_PAGE_LIMIT`]. Default 500.
    pub batch_size: usize,
    /// Metrics written per `record_many` (one transaction); 1 to
    /// [`MAX_PAGE_LIMIT`]. Default 5,000. Metrics are small, and a database
    /// keeps indexes over their durations and named values in an order
    /// unrelated to the copy's: a commit writes each index page it touched
    /// once, however many metrics it holds, so fewer, larger commits write
    /// fewer pages. Measured at 1,000,000 runs against 500: files ->
    /// SQLite 86-91 s instead of 104-133 s (two interleaved pairs),
    /// SQLite -> PostgreSQL 66 s instead of 86 s, for 20-45 MiB more peak
    /// memory; 10,000 was no faster into PostgreSQL and peaked at 200 MiB.
    pub metrics_per_batch: usize,
    /// Most events held in memory and written in one batch; a run with more
    /// events is imported alone, its events in chunks of this size.
    /// 1 to [`MAX_PAGE_LIMIT`]. Default 10,000.
    pub max_events_per_batch: usize,
    /// Batches of runs written at once, 1 to [`MAX_WRITERS`]. Default 2:
    /// while one batch is being written, the next is looked up in the
    /// destination and prepared, and a destination with a pool of
    /// connections writes both at once. The metrics are copied alongside
    /// the runs in any case. With the check made while copying (see
    /// [`MigrateOptions::verify`]) each writer reads its batches back, and
    /// they are recorded in the order the source gave them, which the
    /// check's digests follow.
    pub writers: usize,
    /// Conflicting records: report (default) or fail.
    pub on_conflict: OnConflict,
    /// Say what would be copied and what conflicts exist; write nothing.
    pub dry_run: bool,
    /// Check the destination (not in a dry run). Default `true`. Without
    /// [`VerifyOptions::deep`], each batch is read back from the destination
    /// as it is written and compared with the source records in hand
    /// ([`VerifyReport::while_copying`]: records by content, events by
    /// count), a fraction of the copy's cost; with it, a whole [`verify`]
    /// of both sides runs at the end (every event's content and artifact
    /// bytes too).
    pub verify: bool,
    /// Options of that verification.
    pub verify_options: VerifyOptions,
    /// Most conflicts listed one by one in the report (all are counted).
    /// Default 10,000.
    pub max_reported: usize,
    /// Progress callback.
    pub progress: Option<Arc<dyn MigrationProgress>>,
    /// With a quarantine, what cannot be read from the source is noted
    /// there and the rest is copied: a run whose events cannot be read and
    /// an artifact whose bytes fail their hash are left out, a hole in a
    /// run's event numbering becomes `runstore.lost` tombstones. The
    /// verification then leaves those records out. Without (the default),
    /// the first stops the migration.
    pub quarantine: Option<Arc<Mutex<Quarantine>>>,
    /// A pass over what changed since this time (a watermark, usually the
    /// [`MigrationReport::next_since`] of the previous pass), not over
    /// everything: runs started or ended since then and every run not yet
    /// finished (with their events), metrics recorded, patterns detected
    /// and artifacts created since then. Workflow versions are always all
    /// looked at (they are few). The final verification covers the same
    /// records. Records are selected by their own times, which writers set:
    /// one written with an older time than the watermark is missed, so a
    /// last pass without `since` (or `verify`) is the proof. Default none.
    pub since: Option<Timestamp>,
    /// Tell the destination's logs and metrics that a bulk load is under way
    /// (see [`runstore_core::BulkLoadOptions`]) while runs and metrics are
    /// copied, with the number of source runs to copy. A SQL backend then
    /// builds its secondary indexes once at the end instead of row by row
    /// (files -> SQLite at 1,000,000 runs: 154 s before, 114 s with). It
    /// does so only when the copy brings more runs than the destination
    /// holds, so a pass since a watermark, or a second full pass, keeps
    /// them. Reads of
    /// the destination stay correct meanwhile, only slower. Default `true`;
    /// nothing is told in a dry run.
    pub bulk_load: bool,
}

/// What a pass [`since`](MigrateOptions::since) `t` reads again, by its
/// own times: runs started or ended at or after `t`, and every run not yet
/// finished (it may have new events). A finished run's record and events
/// never change, so one that ended before `t` was copied whole by an
/// earlier pass. One rule for the copy and the verification.
pub fn run_changed_since(run: &Run, t: Timestamp) -> bool {
    run.started_at >= t || run.ended_at.is_some_and(|e| e >= t) || !run.status.is_terminal()
}

/// The runs of [`run_changed_since`] as three disjoint filters the
/// backends serve from their indexes (start time, end time, status).
pub(crate) fn run_filters_since(t: Timestamp) -> Vec<RunFilter> {
    vec![
        RunFilter::default().started_between(Some(t), None),
        RunFilter::default()
            .started_between(None, Some(t))
            .ended_between(Some(t), None),
        RunFilter::default()
            .started_between(None, Some(t))
            .statuses([RunStatus::Pending, RunStatus::Running]),
    ]
}

/// The most batches of runs a migration writes at once
/// ([`MigrateOptions::writers`]).
pub const MAX_WRITERS: usize = 8;

/// How far before a pass's start the next pass's watermark lies: a margin
/// for writers whose clocks run behind the migrating machine's.
pub const WATERMARK_MARGIN_SECS: i64 = 60;

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            batch_size: 500,
            metrics_per_batch: 5_000,
            max_events_per_batch: MAX_PAGE_LIMIT,
            writers: 2,
            on_conflict: OnConflict::Report,
            dry_run: false,
            verify: true,
            verify_options: VerifyOptions::default(),
            max_reported: 10_000,
            progress: None,
            quarantine: None,
            since: None,
            bulk_load: true,
        }
    }
}

impl fmt::Debug for MigrateOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("batch_size", &self.batch_size)
            .field("metrics_per_batch", &self.metrics_per_batch)
            .field("max_events_per_batch", &self.max_events_per_batch)
            .field("writers", &self.writers)
            .field("on_conflict", &self.on_conflict)
            .field("dry_run", &self.dry_run)
            .field("verify", &self.verify)
            .field("verify_options", &self.verify_options)
            .field("max_reported", &self.max_reported)
            .field("progress", &self.progress.is_some())
            .field("quarantine", &self.quarantine.is_some())
            .field("since", &self.since)
            .field("bulk_load", &self.bulk_load)
            .finish()
    }
}

impl MigrateOptions {
    /// Sets the batch size.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Sets how many metrics go in one `record_many` (see
    /// [`MigrateOptions::metrics_per_batch`]).
    pub fn metrics_per_batch(mut self, n: usize) -> Self {
        self.metrics_per_batch = n;
        self
    }
    /// Sets the most events per batch.
    pub fn max_events_per_batch(mut self, n: usize) -> Self {
        self.max_events_per_batch = n;
        self
    }
    /// Sets whether the destination is told of a bulk load (see
    /// [`MigrateOptions::bulk_load`]).
    pub fn bulk_load(mut self, on: bool) -> Self {
        self.bulk_load = on;
        self
    }
    /// Sets how many batches of runs are written at once (see
    /// [`MigrateOptions::writers`]).
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = n;
        self
    }
    /// Sets the conflict policy.
    pub fn on_conflict(mut self, policy: OnConflict) -> Self {
        self.on_conflict = policy;
        self
    }
    /// Makes it a dry run.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Turns the final verification on or off.
    pub fn verify(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }
    /// Sets the options of the final verification.
    pub fn verify_options(mut self, options: VerifyOptions) -> Self {
        self.verify_options = options;
        self
    }
    /// Sets the progress callback (also used by the final verification).
    pub fn progress(mut self, progress: Arc<dyn MigrationProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Unreadable source records go to `quarantine` instead of stopping
    /// the migration (see [`MigrateOptions::quarantine`]).
    pub fn quarantine(mut self, quarantine: Quarantine) -> Self {
        self.quarantine = Some(Arc::new(Mutex::new(quarantine)));
        self
    }

    /// Makes it a pass over what changed since `t` (see
    /// [`MigrateOptions::since`]).
    pub fn since(mut self, t: Timestamp) -> Self {
        self.since = Some(t);
        self
    }

    fn validate(&self) -> Result<()> {
        check_limit("batch_size", self.batch_size)?;
        check_limit("metrics_per_batch", self.metrics_per_batch)?;
        check_limit("max_events_per_batch", self.max_events_per_batch)?;
        if !(1..=MAX_WRITERS).contains(&self.writers) {
            return Err(Error::invalid(
                "writers",
                format!("must be between 1 and {MAX_WRITERS}, got {}", self.writers),
            ));
        }
        self.verify_options.validate()
    }
}

/// Options of [`verify`].
#[derive(Clone)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Records read per page; 1 to [`MAX_PAGE_LIMIT`]. Default 500.
    pub page_size: usize,
    /// Also read every artifact's bytes on both sides and hash them, rather
    /// than trusting the stored hash and size. Default `false`.
    pub deep: bool,
    /// Most differences listed one by one (all are counted). Default 10,000.
    pub max_reported: usize,
    /// Progress callback.
    pub progress: Option<Arc<dyn MigrationProgress>>,
    /// Compares only what a migration pass since this time looks at (see
    /// [`MigrateOptions::since`]), on both sides; every workflow version.
    /// Default none: everything.
    pub since: Option<Timestamp>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            page_size: 500,
            deep: false,
            max_reported: 10_000,
            progress: None,
            since: None,
        }
    }
}

impl fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("page_size", &self.page_size)
            .field("deep", &self.deep)
            .field("max_reported", &self.max_reported)
            .field("progress", &self.progress.is_some())
            .field("since", &self.since)
            .finish()
    }
}

impl VerifyOptions {
    /// Compares only what changed since `t` (see [`VerifyOptions::since`]).
    pub fn since(mut self, t: Timestamp) -> Self {
        self.since = Some(t);
        self
    }

    /// Sets the page size.
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n;
        self
    }
    /// Re-reads artifact bytes on both sides.
    pub fn deep(mut self, deep: bool) -> Self {
        self.deep = deep;
        self
    }
    /// Sets the progress callback.
    pub fn progress(mut self, progress: Arc<dyn MigrationProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    fn validate(&self) -> Result<()> {
        check_limit("page_size", self.page_size)
    }
}

fn check_limit(field: &str, n: usize) -> Result<()> {
    if n == 0 || n > MAX_PAGE_LIMIT {
        return Err(Error::invalid(
            field,
            format!("must be between 1 and {MAX_PAGE_LIMIT}, got {n}"),
        ));
    }
    Ok(())
}

/// Counts of one concern in a migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConcernCounts {
    /// Records read from the source.
    pub read: u64,
    /// Records written to the destination (in a dry run: that would be).
    pub copied: u64,
    /// Records already in the destination with the same content, skipped.
    pub unchanged: u64,
    /// Records in the destination with other content, left untouched.
    pub conflicts: u64,
    /// Records found in the destination at an earlier state and brought up
    /// to the source's (runs: [`MigrationReport::runs_forwarded`] plus
    /// [`MigrationReport::runs_resumed`]). `read` is always `copied +
    /// unchanged + conflicts + updated`.
    pub updated: u64,
}

/// A record the destination holds with other content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConflictRecord {
    /// Its concern.
    pub concern: Concern,
    /// Its key, e.g. `etl@3`, a run id, `run/phase/path`.
    pub key: String,
    /// What differs.
    pub detail: String,
}

/// What [`migrate`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MigrationReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The watermark this pass started from ([`MigrateOptions::since`]),
    /// if any.
    pub since: Option<Timestamp>,
    /// The watermark for the next pass: when this one started, less
    /// [`WATERMARK_MARGIN_SECS`].
    pub next_since: Option<Timestamp>,
    /// Workflow versions.
    pub workflows: ConcernCounts,
    /// Runs.
    pub runs: ConcernCounts,
    /// Events (of copied runs: `copied`; of skipped runs: `unchanged`).
    pub events: ConcernCounts,
    /// Source records left out because they could not be read (with a
    /// quarantine).
    pub quarantined: u64,
    /// Runs copied with `runstore.lost` tombstones in the holes of their
    /// event numbering (with a quarantine).
    pub repaired: u64,
    /// Runs found in the destination with a strict prefix of their events (an
    /// interrupted chunked import) and completed by appending the rest.
    pub runs_resumed: u64,
    /// Runs found in the destination at an earlier state of the same run (a
    /// live source moved them on after an earlier pass: finished them, gave
    /// them new summaries) and brought forward with the forward-only status
    /// update; their new events are appended after the ones already there.
    pub runs_forwarded: u64,
    /// Metrics.
    pub metrics: ConcernCounts,
    /// Patterns.
    pub patterns: ConcernCounts,
    /// Artifacts.
    pub artifacts: ConcernCounts,
    /// Bytes of artifacts copied (in a dry run: that would be).
    pub artifact_bytes_copied: u64,
    /// Conflicts, one by one, up to [`MigrateOptions::max_reported`], by
    /// concern, then key.
    pub conflicts: Vec<ConflictRecord>,
    /// Whether some conflicts were counted but not listed.
    pub conflicts_truncated: bool,
    /// The final verification (source as `a`, destination as `b`), unless
    /// turned off or a dry run.
    pub verify: Option<VerifyReport>,
}

impl ConcernCounts {
    fn add(&mut self, other: ConcernCounts) {
        self.read += other.read;
        self.copied += other.copied;
        self.unchanged += other.unchanged;
        self.conflicts += other.conflicts;
        self.updated += other.updated;
    }
}

impl MigrationReport {
    /// Adds the counts and conflicts of `other`, a part of the same
    /// migration copied alongside (its conflicts listed after these, up to
    /// `max_reported` in all).
    pub(crate) fn absorb(&mut self, other: MigrationReport, max_reported: usize) {
        for (mine, theirs) in [
            (&mut self.workflows, other.workflows),
            (&mut self.runs, other.runs),
            (&mut self.events, other.events),
            (&mut self.metrics, other.metrics),
            (&mut self.patterns, other.patterns),
            (&mut self.artifacts, other.artifacts),
        ] {
            mine.add(theirs);
        }
        self.runs_resumed += other.runs_resumed;
        self.runs_forwarded += other.runs_forwarded;
        self.artifact_bytes_copied += other.artifact_bytes_copied;
        let room = max_reported.saturating_sub(self.conflicts.len());
        self.conflicts_truncated |= other.conflicts_truncated || other.conflicts.len() > room;
        self.conflicts
            .extend(other.conflicts.into_iter().take(room));
    }

    /// All conflicts, counted over every concern.
    pub fn conflict_count(&self) -> u64 {
        self.workflows.conflicts
            + self.runs.conflicts
            + self.metrics.conflicts
            + self.patterns.conflicts
            + self.artifacts.conflicts
    }

    /// No conflicts, and the final verification (if run) found the two
    /// sides equal. Always `false` for a dry run that found work to do.
    pub fn is_complete(&self) -> bool {
        let nothing_left = !self.dry_run
            || [
                self.workflows,
                self.runs,
                self.metrics,
                self.patterns,
                self.artifacts,
            ]
            .iter()
            .all(|c| c.copied == 0)
                && self.runs_resumed == 0
                && self.runs_forwarded == 0;
        self.conflict_count() == 0
            && nothing_left
            && self.verify.as_ref().is_none_or(VerifyReport::is_equal)
    }

    pub(crate) fn counts_mut(&mut self, concern: Concern) -> &mut ConcernCounts {
        match concern {
            Concern::Workflows => &mut self.workflows,
            Concern::Runs => &mut self.runs,
            Concern::Events => &mut self.events,
            Concern::Metrics => &mut self.metrics,
            Concern::Patterns => &mut self.patterns,
            Concern::Artifacts => &mut self.artifacts,
        }
    }
}

/// Counts of one concern on both sides of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SideCounts {
    /// Records on side `a`.
    pub a: u64,
    /// Records on side `b`.
    pub b: u64,
    /// Records present on both sides with equal content.
    pub equal: u64,
    /// SHA-256 over the content hashes of every record of side `a`, in key
    /// order: equal digests mean equal concerns.
    pub digest_a: String,
    /// The same for side `b`.
    pub digest_b: String,
}

/// How a record differs between the two sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Present on side `a` only.
    OnlyInA,
    /// Present on side `b` only.
    OnlyInB,
    /// Present on both with other content (or unreadable on one side).
    Different,
}

/// One difference found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Its concern.
    pub concern: Concern,
    /// Its key: `workflow@version`, a run id, `run#seq` for an event, a run
    /// id for a metric, a pattern id, `run/phase/path` for an artifact.
    pub key: String,
    /// How it differs.
    pub kind: DifferenceKind,
    /// Hashes or the field that differs.
    pub detail: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Whether artifact bytes were re-read on both sides.
    pub deep: bool,
    /// Only what changed since this time was compared
    /// ([`VerifyOptions::since`]).
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// Made by a migration while it copied: each batch read back from the
    /// destination and compared with the source records in hand, so the
    /// source is not read twice and records only in the destination are
    /// not looked for. Workflow versions, runs, metrics, patterns and
    /// artifact infos are compared by content hash; the events of a run by
    /// their count (one `event_counts` call per batch: their content is
    /// compared by [`VerifyOptions::deep`]). The digests are this check's
    /// own: compare `digest_a` with `digest_b`, not with a [`verify`]'s.
    /// `false` for [`verify`] and for a migration with `deep`.
    #[serde(default)]
    pub while_copying: bool,
    /// Workflow versions.
    pub workflows: SideCounts,
    /// Runs (record only; events below).
    pub runs: SideCounts,
    /// Events of all runs.
    pub events: SideCounts,
    /// Metrics.
    pub metrics: SideCounts,
    /// Patterns.
    pub patterns: SideCounts,
    /// Artifacts.
    pub artifacts: SideCounts,
    /// All differences found.
    pub difference_count: u64,
    /// Differences left out of `difference_count` because the migration
    /// quarantined or repaired their records.
    #[serde(default)]
    pub excused: u64,
    /// Differences, one by one, up to [`VerifyOptions::max_reported`].
    pub differences: Vec<Difference>,
    /// Whether some differences were counted but not listed.
    pub differences_truncated: bool,
}

impl VerifyReport {
    /// Whether the two sides hold the same records with the same content.
    pub fn is_equal(&self) -> bool {
        self.difference_count == 0
    }

    /// The differences of one concern that were listed.
    pub fn differences_of(&self, concern: Concern) -> impl Iterator<Item = &Difference> {
        self.differences
            .iter()
            .filter(move |d| d.concern == concern)
    }
}
