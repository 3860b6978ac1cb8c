//! Backup sets of a whole [`Storage`] and restoring them.
//!
//! [`backup`] writes a *set*: a new folder `runstore-backup-<time>` holding
//! one part per backend the storage opened, and `backup.json` (the
//! [`BackupManifest`]) written last:
//!
//! - a SQLite database is copied with SQLite's online backup
//!   ([`BackupMethod::SqliteOnlineBackup`]), `integrity_check`ed before and
//!   after, while its writers go on;
//! - every other backend (a file root, PostgreSQL, S3, memory, one
//!   registered from outside) is written as a logical dump
//!   ([`BackupMethod::LogicalDump`], the format of [`crate::dump`]).
//!
//! For each part the manifest keeps the record counts and the content
//! digests of its concerns ([`crate::dump::content_digest`]), so a restore
//! can prove it put back exactly what was saved. The set is built in a
//! hidden `.runstore-backup-<time>.partial` folder and renamed when whole:
//! a set that has a name and a manifest is complete, and nothing is ever
//! overwritten.
//!
//! [`restore`] puts a set back into the stores a configuration names; see
//! its documentation for how it keeps what it replaces and survives a
//! crash.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> runstore::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let yaml = format!(
//!     "storage: {{ workflows: {{ type: file, path: {d}/data }}, logs: {{ type: sqlite, path: {d}/data/runstore.db }}, \
//!      metrics: {{ type: sqlite, path: {d}/data/runstore.db }}, artifacts: {{ type: file, path: {d}/data }} }}",
//!     d = dir.path().display()
//! );
//! let config = runstore::Config::from_yaml_str(&yaml)?;
//! let storage = runstore::Storage::open(&config).await?;
//! let set = runstore::backup::backup(&storage, &dir.path().join("backups"), Default::default()).await?;
//! drop(storage);
//! let report = runstore::backup::restore(&config, &set.path, Default::default()).await?;
//! assert_eq!(report.parts, 2);
//! # Ok(()) }
//! ```

mod restore;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Concern;
use crate::dump::{self, DumpReport, ExportOptions, FileDigest};
use crate::migrate::MigrationProgress;
use crate::{Error, Result, Storage, Timestamp};

pub use restore::{RestoreOptions, RestoreReport, restore};

/// The format tag of `backup.json`.
pub const BACKUP_FORMAT: &str = "runstore-backup/1";
/// The manifest file of a set.
pub const MANIFEST_FILE: &str = "backup.json";
/// The folder of a set's logical dump.
const DUMP_DIR: &str = "dump";

/// How one part of a set was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupMethod {
    /// SQLite's online backup API: a page copy of the database file.
    SqliteOnlineBackup,
    /// The records, read through the traits and written as a dump.
    LogicalDump,
}

/// One backend's share of a set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackupPart {
    /// The concerns this backend served.
    pub concerns: Vec<Concern>,
    /// Its `type` in the configuration.
    pub backend: String,
    /// How it was saved.
    pub method: BackupMethod,
    /// Where in the set: the database file, or the dump folder.
    pub location: String,
    /// Records of its concerns (`runs`, `events`, `metrics`, …).
    pub counts: BTreeMap<String, u64>,
    /// Content digests of its concerns: the digests of the dump files an
    /// export of them writes ([`crate::dump::content_digest`]).
    pub digests: BTreeMap<String, FileDigest>,
    /// SHA-256 and size of the database file (SQLite parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileDigest>,
}

/// `backup.json`: what a set holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackupManifest {
    /// [`BACKUP_FORMAT`].
    pub format: String,
    /// When the backup started.
    pub created_at: Timestamp,
    /// The configuration it was taken from (a file name, or "embedded
    /// default"; never a secret).
    pub config: String,
    /// One part per backend.
    pub parts: Vec<BackupPart>,
}

/// Options of [`backup`].
#[derive(Default)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Told the count of each kind of record as the dump part is written.
    pub progress: Option<Arc<dyn MigrationProgress>>,
}

impl BackupOptions {
    /// Progress goes here.
    pub fn progress(mut self, progress: Arc<dyn MigrationProgress>) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// What [`backup`] wrote.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackupSet {
    /// The set's folder.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: BackupManifest,
}

/// A file-name-safe UTC time with milliseconds: `20261204T073152.123Z`.
pub(crate) fn stamp(ts: Timestamp) -> String {
    ts.to_jiff().strftime("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// The counts of `concerns` in a dump report, by name.
fn counts_of(report: &DumpReport, concerns: &[Concern]) -> BTreeMap<String, u64> {
    concerns
        .iter()
        .flat_map(|c| report.counts.of(*c))
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The content digests of `concerns` in a dump report.
fn digests_of(report: &DumpReport, concerns: &[Concern]) -> BTreeMap<String, FileDigest> {
    concerns
        .iter()
        .flat_map(|c| dump::files_of(*c))
        .filter_map(|f| report.files.get(*f).map(|d| (f.to_string(), d.clone())))
        .collect()
}

/// Streams a file through SHA-256.
pub(crate) async fn digest_file(path: &Path) -> Result<FileDigest> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut hasher = crate::Sha256Hasher::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        sha256: hasher.finish(),
        bytes,
    })
}

/// Removes a SQLite file with its `-wal` and `-shm`, if they exist.
#[cfg(feature = "sqlite")]
pub(crate) fn remove_db(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_os_string();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(
                    format!("removing {}", Path::new(&p).display()),
                    e,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The content of the SQLite database at `path` (a copy nobody else has
/// open): counts and digests of `concerns`.
#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite_content(path: &Path, concerns: &[Concern]) -> Result<DumpReport> {
    let store =
        runstore_sqlite::SqliteStore::open(runstore_sqlite::SqliteConfig::new(path)).await?;
    let storage = Storage::from_store_set(store.store_set());
    let report = dump::content_digest(&storage, concerns).await;
    drop(storage);
    drop(store);
    report
}

/// Writes a backup set of every concern of `storage` into a new folder
/// inside `to` (created if absent); see the [module](self) documentation.
/// The storage stays open and writable throughout.
pub async fn backup(storage: &Storage, to: &Path, options: BackupOptions) -> Result<BackupSet> {
    let created_at = Timestamp::now();
    let name = format!("runstore-backup-{}", stamp(created_at));
    tokio::fs::create_dir_all(to)
        .await
        .map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let path = to.join(&name);
    let staging = to.join(format!(".{name}.partial"));
    if path.exists() {
        return Err(Error::conflict(format!(
            "{} exists; a backup set is never overwritten",
            path.display()
        )));
    }
    tokio::fs::create_dir(&staging)
        .await
        .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
    let result = write_parts(storage, &staging, options).await;
    let parts = match result {
        Ok(parts) => parts,
        Err(e) => {
            // A set that failed is not kept half-written.
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(e);
        }
    };
    let manifest = BackupManifest {
        format: BACKUP_FORMAT.to_string(),
        created_at,
        config: storage.config().source.clone(),
        parts,
    };
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::backend("encoding JSON", Some(e.into())))?;
    crate::fsutil::write_durably(&staging.join(MANIFEST_FILE), (text + "\n").as_bytes()).await?;
    if path.exists() {
        return Err(Error::conflict(format!(
            "{} appeared while the backup was written; the new set stays at {}",
            path.display(),
            staging.display()
        )));
    }
    tokio::fs::rename(&staging, &path).await.map_err(|e| {
        Error::io(
            format!("moving {} to {}", staging.display(), path.display()),
            e,
        )
    })?;
    crate::fsutil::sync_dir(to)?;
    Ok(BackupSet { path, manifest })
}

/// Saves each backend's part into `staging`.
async fn write_parts(
    storage: &Storage,
    staging: &Path,
    options: BackupOptions,
) -> Result<Vec<BackupPart>> {
    let mut parts = Vec::new();
    let mut dumped: Vec<Concern> = Vec::new();
    for opened in storage.backends() {
        let concerns = opened.concerns.clone();
        match crate::Builtin::of(&opened.backend.handle) {
            #[cfg(feature = "sqlite")]
            crate::Builtin::Sqlite(store) => {
                let names: Vec<&str> = concerns.iter().map(|c| c.as_str()).collect();
                let location = format!("{}.db", names.join("+"));
                let file = staging.join(&location);
                store.backup_to(&file).await?;
                // The digests are taken from a scratch copy: opening the
                // set's file would change its bytes.
                let scratch = staging.join(format!(".{location}.scratch"));
                tokio::fs::copy(&file, &scratch)
                    .await
                    .map_err(|e| Error::io(format!("copying {}", file.display()), e))?;
                let content = sqlite_content(&scratch, &concerns).await;
                remove_db(&scratch)?;
                let content = content?;
                parts.push(BackupPart {
                    counts: counts_of(&content, &concerns),
                    digests: digests_of(&content, &concerns),
                    file: Some(digest_file(&file).await?),
                    concerns,
                    backend: opened.type_name.clone(),
                    method: BackupMethod::SqliteOnlineBackup,
                    location,
                });
            }
            _ => {
                dumped.extend(concerns.iter().copied());
                parts.push(BackupPart {
                    concerns,
                    backend: opened.type_name.clone(),
                    method: BackupMethod::LogicalDump,
                    location: DUMP_DIR.to_string(),
                    counts: BTreeMap::new(),
                    digests: BTreeMap::new(),
                    file: None,
                });
            }
        }
    }
    if !dumped.is_empty() {
        let mut export = ExportOptions::default().concerns(&dumped);
        export.progress = options.progress;
        let report = dump::export(storage, &staging.join(DUMP_DIR), export).await?;
        for part in parts
            .iter_mut()
            .filter(|p| p.method == BackupMethod::LogicalDump)
        {
            part.counts = counts_of(&report, &part.concerns);
            part.digests = digests_of(&report, &part.concerns);
        }
    }
    Ok(parts)
}

/// Reads a set's manifest: present (a set without one did not finish),
/// of a format this build reads.
pub fn read_manifest(set: &Path) -> Result<BackupManifest> {
    let path = set.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(if set.is_dir() {
                Error::invalid(
                    "set",
                    format!(
                        "{} has no {MANIFEST_FILE}: it is not a complete backup set",
                        set.display()
                    ),
                )
            } else {
                Error::not_found(format!("backup set {}", set.display()))
            });
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let manifest: BackupManifest = serde_json::from_str(&text)
        .map_err(|e| Error::invalid("set", format!("{}: {e}", path.display())))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(Error::invalid(
            "set",
            format!(
                "{}: format is {:?}, expected {BACKUP_FORMAT:?}",
                path.display(),
                manifest.format
            ),
        ));
    }
    for part in &manifest.parts {
        // The location is joined to the set's folder: one plain name only.
        let ok = !part.location.is_empty()
            && !part.location.starts_with('.')
            && !part.location.contains(['/', '\\']);
        if !ok {
            return Err(Error::invalid(
                "set",
                format!(
                    "{}: part location {:?} is not a plain name",
                    path.display(),
                    part.location
                ),
            ));
        }
    }
    Ok(manifest)
}
