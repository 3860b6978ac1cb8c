//! The backend-neutral NDJSON dump: [`export`] writes every record of a
//! [`Storage`] to a folder, [`import`] loads one back into any storage, and
//! [`content_digest`] hashes what an export would write without writing it.
//!
//! A dump folder holds `workflows.ndjson`, `runs.ndjson` (each run with its
//! events), `metrics.ndjson`, `patterns.ndjson`, `artifacts.ndjson`, the
//! artifacts' bytes under `blobs/<sha256>`, and `manifest.json`, written
//! last, with the record counts and each NDJSON file's SHA-256. A folder
//! without a manifest is an export that did not finish; `import` refuses it,
//! and refuses a dump whose files do not match their manifest, before it
//! writes anything.
//!
//! Both directions stream: export holds one page, import one small batch.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> runstore::Result<()> {
//! use runstore::dump::{self, ExportOptions, ImportOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let source = runstore::Storage::from_yaml_str(
//!     "storage: { workflows: { type: memory }, logs: { type: memory }, metrics: { type: memory }, artifacts: { type: memory } }",
//! ).await?;
//! let report = dump::export(&source, &dir.path().join("dump"), ExportOptions::default()).await?;
//! let copy = runstore::Storage::from_yaml_str(
//!     "storage: { workflows: { type: memory }, logs: { type: memory }, metrics: { type: memory }, artifacts: { type: memory } }",
//! ).await?;
//! dump::import(&copy, &dir.path().join("dump"), ImportOptions::default()).await?;
//! let digest = dump::content_digest(&copy, &runstore::Concern::ALL).await?;
//! assert_eq!(digest.files, report.files);
//! # Ok(()) }
//! ```

mod export;
mod files;
mod import;
mod quarantine;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Concern;
use crate::migrate::MigrationProgress;

pub use export::{content_digest, export, prepare_out_dir};
pub use import::import;
pub use quarantine::{Quarantine, QuarantineSummary};

/// The format tag written to `manifest.json`. Version 2 keeps artifact
/// bytes by their SHA-256 (`blobs/<sha256>`), so artifacts `a/x` and
/// `a/x/y` of one run and phase both fit; version 1 kept them under their
/// logical paths, and is still read.
pub const DUMP_FORMAT: &str = "runstore-dump/2";
pub(crate) const DUMP_FORMAT_V1: &str = "runstore-dump/1";

/// The NDJSON files of a dump, in the order they are written and read.
pub const NDJSON_FILES: [&str; 5] = [
    "workflows.ndjson",
    "runs.ndjson",
    "metrics.ndjson",
    "patterns.ndjson",
    "artifacts.ndjson",
];

/// The NDJSON files that hold a concern's records.
pub fn files_of(concern: Concern) -> &'static [&'static str] {
    match concern {
        Concern::Workflows => &["workflows.ndjson"],
        Concern::Logs => &["runs.ndjson"],
        Concern::Metrics => &["metrics.ndjson", "patterns.ndjson"],
        Concern::Artifacts => &["artifacts.ndjson"],
    }
}

/// Record counts of a dump: what its manifest states, or what a store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DumpCounts {
    /// Workflow versions.
    pub workflows: u64,
    /// Runs.
    pub runs: u64,
    /// Events of those runs.
    pub events: u64,
    /// Execution metrics.
    pub metrics: u64,
    /// Patterns.
    pub patterns: u64,
    /// Artifacts.
    pub artifacts: u64,
    /// Bytes of those artifacts.
    pub artifact_bytes: u64,
}

impl DumpCounts {
    /// The counts that belong to `concern`, as `(name, value)` pairs.
    pub fn of(&self, concern: Concern) -> Vec<(&'static str, u64)> {
        match concern {
            Concern::Workflows => vec![("workflows", self.workflows)],
            Concern::Logs => vec![("runs", self.runs), ("events", self.events)],
            Concern::Metrics => vec![("metrics", self.metrics), ("patterns", self.patterns)],
            Concern::Artifacts => vec![
                ("artifacts", self.artifacts),
                ("artifact_bytes", self.artifact_bytes),
            ],
        }
    }
}

/// SHA-256 and size of one NDJSON file of a dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// SHA-256 of the file's bytes.
    pub sha256: crate::Sha256Digest,
    /// Its size.
    pub bytes: u64,
}

/// What an export wrote, or what [`content_digest`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DumpReport {
    /// Records written.
    pub counts: DumpCounts,
    /// Each NDJSON file's digest. Two stores with the same records give
    /// the same digests, whatever their backends.
    pub files: BTreeMap<String, FileDigest>,
    /// What was left out (with a quarantine).
    pub quarantine: Option<QuarantineSummary>,
}

/// What `import` stored, per kind of record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImportReport {
    /// Workflow versions.
    pub workflows: crate::BulkOutcome,
    /// Runs (with their events).
    pub runs: crate::BulkOutcome,
    /// Execution metrics.
    pub metrics: crate::BulkOutcome,
    /// Patterns.
    pub patterns: crate::BulkOutcome,
    /// Artifacts.
    pub artifacts: crate::BulkOutcome,
    /// What was skipped or repaired (with a quarantine).
    pub quarantine: Option<QuarantineSummary>,
    /// Things the caller should tell the user: a damaged dump imported
    /// anyway with a quarantine, counts that did not add up.
    pub warnings: Vec<String>,
}

/// Options of [`export`] and [`import`] (also named [`ExportOptions`] and
/// [`ImportOptions`]).
#[derive(Default)]
#[non_exhaustive]
pub struct DumpOptions {
    /// The concerns to write or load; export writes the files of the
    /// others empty, import does not read them nor check their counts. All
    /// four when `None`.
    pub concerns: Option<Vec<Concern>>,
    /// With a quarantine, what cannot be read is noted there and the rest
    /// is copied: export leaves out a run whose events cannot be read and
    /// an artifact whose bytes fail their hash; import skips records that
    /// cannot be read or stored and fills holes in a run's event numbering
    /// with `runstore.lost` tombstones. Without, the first stops it.
    pub quarantine: Option<Quarantine>,
    /// Told the count of each kind of record as it is written or stored
    /// (`workflows`, `runs`, `metrics`, `patterns`, `artifacts`).
    pub progress: Option<Arc<dyn MigrationProgress>>,
}

/// The options of [`export`].
pub type ExportOptions = DumpOptions;
/// The options of [`import`].
pub type ImportOptions = DumpOptions;

impl DumpOptions {
    /// Only these concerns.
    pub fn concerns(mut self, concerns: &[Concern]) -> Self {
        self.concerns = Some(concerns.to_vec());
        self
    }

    /// Unreadable records go to this quarantine instead of stopping.
    pub fn quarantine(mut self, quarantine: Option<Quarantine>) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// Progress goes here.
    pub fn progress(mut self, progress: Arc<dyn MigrationProgress>) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// What `manifest.json` says.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct DumpManifest {
    /// [`DUMP_FORMAT`] or the version 1 tag.
    pub format: String,
    /// Records the dump holds.
    #[serde(default)]
    pub counts: DumpCounts,
    /// SHA-256 and size of each NDJSON file (format 2).
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
}

/// Reads and checks a dump's `manifest.json`: present (an export writes it
/// last, so a folder without one is an export that did not finish), of a
/// format this build reads.
pub fn read_manifest(dir: &std::path::Path) -> crate::Result<DumpManifest> {
    files::read_manifest(dir)
}

/// Progress of one kind of record, if anybody listens.
pub(crate) struct Step<'a> {
    progress: Option<&'a Arc<dyn MigrationProgress>>,
    name: &'static str,
    count: u64,
}

impl<'a> Step<'a> {
    pub(crate) fn start(
        progress: Option<&'a Arc<dyn MigrationProgress>>,
        name: &'static str,
    ) -> Self {
        Step {
            progress,
            name,
            count: 0,
        }
    }

    pub(crate) fn inc(&mut self, n: u64) {
        self.count += n;
        if let Some(p) = self.progress {
            p.on_progress(self.name, self.count, None);
        }
    }

    pub(crate) fn finish(self) -> u64 {
        if let Some(p) = self.progress {
            p.on_finish(self.name, self.count);
        }
        self.count
    }
}
