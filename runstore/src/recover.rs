//! Rebuilding a store from NDJSON: a dump written by [`crate::dump::export`]
//! (or found in a backup set), or the journals of a file root.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> runstore::Result<()> {
//! use runstore::recover::{self, RecoverOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let root = dir.path().join("files");
//! let files = runstore::Storage::from_yaml_str(&format!(
//!     "storage: {{ workflows: {{ type: file, path: {r} }}, logs: {{ type: file, path: {r} }}, \
//!      metrics: {{ type: file, path: {r} }}, artifacts: {{ type: file, path: {r} }} }}",
//!     r = root.display()
//! )).await?;
//! drop(files);
//! let db = dir.path().join("runstore.db");
//! let config = runstore::Config::from_yaml_str(&format!(
//!     "storage: {{ workflows: {{ type: sqlite, path: {d} }}, logs: {{ type: sqlite, path: {d} }}, \
//!      metrics: {{ type: sqlite, path: {d} }}, artifacts: {{ type: sqlite, path: {d} }} }}",
//!     d = db.display()
//! ))?;
//! // A database that is not one is moved aside first.
//! std::fs::write(&db, b"not a database").unwrap();
//! let report = recover::recover(&config, &root, RecoverOptions::default()).await?;
//! assert_eq!(report.moved_aside.len(), 1);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::dump::{self, ImportOptions, ImportReport, Quarantine, QuarantineSummary};
use crate::migrate::{self, MigrateOptions, MigrationProgress, MigrationReport};
use crate::{Concern, Config};
use crate::{Error, Result, Storage, Timestamp};

/// Options of [`recover`].
#[derive(Default)]
#[non_exhaustive]
pub struct RecoverOptions {
    /// With a quarantine, records that cannot be read are noted there and
    /// the rest is copied (holes in a run's event numbering become
    /// `runstore.lost` tombstones); without, the first stops the recovery.
    pub quarantine: Option<Quarantine>,
    /// Progress of the copy.
    pub progress: Option<Arc<dyn MigrationProgress>>,
}

impl RecoverOptions {
    /// Unreadable records go to this quarantine.
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

/// What [`recover`] read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoverSource {
    /// A dump folder (`manifest.json`).
    Dump,
    /// A file root (`runstore-format.json`), all four concerns.
    FileRoot,
}

/// What [`recover`] did.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct RecoverReport {
    /// What it read from.
    pub source: RecoverSource,
    /// Databases that failed their integrity check and were moved aside
    /// (`<name>.corrupted.<time>`) before the rebuild.
    pub moved_aside: Vec<PathBuf>,
    /// The import of a dump.
    pub imported: Option<ImportReport>,
    /// The copy out of a file root.
    pub migrated: Option<MigrationReport>,
    /// What was skipped or repaired.
    pub quarantine: Option<QuarantineSummary>,
}

/// Which kind of NDJSON `source` holds.
fn source_kind(source: &Path) -> Result<RecoverSource> {
    if !source.is_dir() {
        return Err(Error::not_found(format!(
            "recovery source {} (a dump folder or a file root)",
            source.display()
        )));
    }
    if source.join("manifest.json").is_file() || source.join("runs.ndjson").is_file() {
        return Ok(RecoverSource::Dump);
    }
    if source.join(crate::file::FORMAT_FILE).is_file() {
        return Ok(RecoverSource::FileRoot);
    }
    if source.join(crate::backup::MANIFEST_FILE).is_file() {
        return Err(Error::invalid(
            "from",
            format!(
                "{} is a backup set: put it back with `restore`, or recover from its `dump` folder",
                source.display()
            ),
        ));
    }
    Err(Error::invalid(
        "from",
        format!(
            "{} is neither a dump (no manifest.json) nor a file root (no {})",
            source.display(),
            crate::file::FORMAT_FILE
        ),
    ))
}

/// Moves a SQLite database that fails `integrity_check` (or cannot be read
/// as one) aside, with its `-wal` and `-shm`; `None` when it is sound or
/// absent.
async fn set_aside_if_corrupt(db: &Path) -> Result<Option<PathBuf>> {
    if !db.exists() {
        return Ok(None);
    }
    match crate::sqlite::SqliteStore::integrity_check_file(db).await {
        Ok(problems) if problems.is_empty() => return Ok(None),
        Ok(_) => {}
        Err(e) if e.kind() == crate::ErrorKind::Corrupt => {}
        Err(e) => return Err(e),
    }
    let stamp = crate::backup::stamp(Timestamp::now());
    let aside = {
        let mut s = db.as_os_str().to_os_string();
        s.push(format!(".corrupted.{stamp}"));
        PathBuf::from(s)
    };
    for suffix in ["", "-wal", "-shm"] {
        let (mut from, mut to) = (
            db.as_os_str().to_os_string(),
            aside.as_os_str().to_os_string(),
        );
        from.push(suffix);
        to.push(suffix);
        if Path::new(&from).exists() {
            std::fs::rename(&from, &to).map_err(|e| {
                Error::io(format!("moving {} aside", Path::new(&from).display()), e)
            })?;
        }
    }
    crate::fsutil::sync_dir(db.parent().unwrap_or(Path::new(".")))?;
    Ok(Some(aside))
}

/// Rebuilds the stores `config` names from the NDJSON in `source`: a dump
/// folder, or a file root (all four concerns read through the file
/// backend, which skips lines it cannot parse). Every SQLite database of
/// the configuration that fails its integrity check is moved aside first
/// (`<name>.corrupted.<time>`) and a new one is built in its place; a sound
/// one is kept and completed (what is already there and equal counts as
/// unchanged). PostgreSQL schemas are completed the same way.
pub async fn recover(
    config: &Config,
    source: &Path,
    options: RecoverOptions,
) -> Result<RecoverReport> {
    let kind = source_kind(source)?;
    let mut moved_aside = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in Concern::ALL {
        let bc = config.backend(c).for_backend();
        if bc.type_name != "sqlite" {
            continue;
        }
        let Some(path) = bc.str_option("path") else {
            continue;
        };
        let db = bc.resolve_path(path);
        if seen.insert(db.clone())
            && let Some(aside) = set_aside_if_corrupt(&db).await?
        {
            moved_aside.push(aside);
        }
    }
    let target = Storage::open(config).await?;
    let RecoverOptions {
        quarantine,
        progress,
    } = options;
    let mut report = RecoverReport {
        source: kind,
        moved_aside,
        imported: None,
        migrated: None,
        quarantine: None,
    };
    match kind {
        RecoverSource::Dump => {
            let mut o = ImportOptions::default().quarantine(quarantine);
            o.progress = progress;
            let imported = dump::import(&target, source, o).await?;
            report.quarantine = imported.quarantine.clone();
            report.imported = Some(imported);
        }
        RecoverSource::FileRoot => {
            let store = crate::file::FileStore::open(crate::file::FileConfig::new(source)).await?;
            let mut o = MigrateOptions {
                progress,
                ..Default::default()
            };
            if let Some(q) = quarantine {
                o = o.quarantine(q);
            }
            let q = o.quarantine.clone();
            let migrated = migrate::migrate(&store.store_set(), &target.stores(), o).await?;
            if let Some(q) = q {
                let q = std::mem::replace(
                    &mut *q
                        .lock()
                        .map_err(|_| Error::backend("the quarantine's lock was poisoned", None))?,
                    Quarantine::new(PathBuf::new()),
                );
                report.quarantine = q.close()?;
            }
            if migrated.conflict_count() > 0
                || migrated.verify.as_ref().is_some_and(|v| !v.is_equal())
            {
                return Err(Error::conflict(format!(
                    "the recovered store differs from {}: {} conflicts, {} differences; run `migrate` with the same source to see them",
                    source.display(),
                    migrated.conflict_count(),
                    migrated.verify.as_ref().map_or(0, |v| v.difference_count)
                )));
            }
            report.migrated = Some(migrated);
        }
    }
    Ok(report)
}
