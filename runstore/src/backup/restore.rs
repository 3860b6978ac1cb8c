//! Restoring a backup set into the stores a configuration names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{BackupManifest, BackupMethod, BackupPart, read_manifest, stamp};
use crate::Backend;
use crate::dump::{self, DumpReport, ImportOptions};
use crate::migrate::MigrationProgress;
use crate::{Concern, Config};
use crate::{Error, Result, Storage, StoreSet, Timestamp};

/// The plan of the swaps, written into the set before the first one.
const PLAN_FILE: &str = "restore-plan.json";

/// Options of [`restore`].
#[derive(Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Told the count of each kind of record as the dump parts are loaded.
    pub progress: Option<Arc<dyn MigrationProgress>>,
}

impl RestoreOptions {
    /// Progress goes here.
    pub fn progress(mut self, progress: Arc<dyn MigrationProgress>) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// What [`restore`] did.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The set restored.
    pub set: PathBuf,
    /// Parts restored (one per backend).
    pub parts: usize,
    /// Records restored, by kind (as the set's manifest counts them, and
    /// as they were found afterwards).
    pub counts: BTreeMap<String, u64>,
    /// What was replaced and kept: files, folders, schemas.
    pub kept: Vec<String>,
    /// Whether this call finished a restore that a crash had interrupted.
    pub resumed: bool,
}

/// One replacement of a store by its restored copy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Swap {
    Sqlite {
        staged: PathBuf,
        dest: PathBuf,
        aside: PathBuf,
    },
    File {
        staged: PathBuf,
        root: PathBuf,
        aside: PathBuf,
        concerns: Vec<Concern>,
    },
    Postgres {
        concern: Concern,
        staged: String,
        aside: String,
    },
}

impl Swap {
    fn kept(&self) -> String {
        match self {
            Swap::Sqlite { aside, .. } | Swap::File { aside, .. } => aside.display().to_string(),
            Swap::Postgres { aside, .. } => format!("schema {aside}"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    swaps: Vec<Swap>,
}

/// Opens the backend `config` names for `concern`, alone.
async fn open_backend(config: &Config, concern: Concern) -> Result<Backend> {
    let bc = config.backend(concern).for_backend();
    let factory = crate::registry::global()
        .factory(&bc.type_name)
        .map_err(|e| bc.error(e))?;
    factory.open(&bc).await
}

/// A storage whose `concerns` are `backend`'s, the others empty memory.
fn storage_over(backend: &Backend, concerns: &[Concern]) -> Storage {
    let filler = runstore_core::memory::store_set();
    let has = |c: Concern| concerns.contains(&c);
    Storage::from_store_set(StoreSet {
        workflows: backend
            .workflows
            .clone()
            .filter(|_| has(Concern::Workflows))
            .unwrap_or(filler.workflows),
        logs: backend
            .logs
            .clone()
            .filter(|_| has(Concern::Logs))
            .unwrap_or(filler.logs),
        metrics: backend
            .metrics
            .clone()
            .filter(|_| has(Concern::Metrics))
            .unwrap_or(filler.metrics),
        artifacts: backend
            .artifacts
            .clone()
            .filter(|_| has(Concern::Artifacts))
            .unwrap_or(filler.artifacts),
    })
}

/// Compares what was found in a store with what the part saved.
fn compare(part: &BackupPart, found: &DumpReport, what: &str) -> Result<()> {
    let counts = super::counts_of(found, &part.concerns);
    let digests = super::digests_of(found, &part.concerns);
    let mut diffs = Vec::new();
    for (k, want) in &part.counts {
        let got = counts.get(k).copied().unwrap_or(0);
        if got != *want {
            diffs.push(format!("{got} {k}, the set has {want}"));
        }
    }
    for (k, want) in &part.digests {
        if digests.get(k) != Some(want) {
            diffs.push(format!("the content digest of {k} differs"));
        }
    }
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Error::corrupt(
        what.to_string(),
        format!(
            "does not hold what the backup set saved: {}",
            diffs.join("; ")
        ),
    ))
}

/// `path` with `suffix` added to its last component.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A schema name of at most 63 bytes: `schema` cut to fit before `suffix`.
#[cfg(feature = "postgres")]
fn schema_name(schema: &str, suffix: &str) -> String {
    let keep = 63usize.saturating_sub(suffix.len()).min(schema.len());
    format!("{}{suffix}", &schema[..keep])
}

/// Refuses a configuration that keeps a set's concerns elsewhere than the
/// set took them from: a restore puts back what was saved; moving between
/// backends is `migrate`'s.
fn check_config(config: &Config, manifest: &BackupManifest) -> Result<()> {
    let registry = crate::registry::global();
    for part in &manifest.parts {
        let mut keys = Vec::new();
        for c in &part.concerns {
            let bc = config.backend(*c).for_backend();
            if bc.type_name == "memory" {
                return Err(bc.error(format!(
                    "{c} is kept in memory, which is gone when the restoring process ends; restore into a store that lasts"
                )));
            }
            if bc.type_name != part.backend {
                return Err(bc.error(format!(
                    "the backup set saved {c} from a `{}` store, the configuration keeps it in `{}`; restore into the kind of store the set was taken from, then move with `migrate`",
                    part.backend, bc.type_name
                )));
            }
            let factory = registry.factory(&bc.type_name).map_err(|e| bc.error(e))?;
            keys.push(factory.share_key(&bc)?);
        }
        if part.method == BackupMethod::SqliteOnlineBackup && keys.windows(2).any(|w| w[0] != w[1])
        {
            return Err(Error::invalid(
                "config",
                format!(
                    "the backup set saved {:?} in one SQLite database, the configuration keeps them in several",
                    part.concerns
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the set's files before anything is touched.
async fn check_set(set: &Path, manifest: &BackupManifest) -> Result<()> {
    for part in &manifest.parts {
        let path = set.join(&part.location);
        match part.method {
            BackupMethod::SqliteOnlineBackup => {
                let found = super::digest_file(&path).await?;
                if part.file.as_ref() != Some(&found) {
                    return Err(Error::corrupt(
                        path.display().to_string(),
                        format!(
                            "the database file is not the one saved ({} bytes with sha256 {}); nothing was restored",
                            found.bytes, found.sha256
                        ),
                    ));
                }
            }
            BackupMethod::LogicalDump => {
                let dumped = dump::read_manifest(&path)?;
                for (name, digest) in &part.digests {
                    if dumped.files.get(name) != Some(digest) {
                        return Err(Error::corrupt(
                            path.display().to_string(),
                            format!("{name} is not the one the set saved; nothing was restored"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Restores the backup set `set` into the stores `config` names. The
/// configuration must keep each concern in the same kind of store the set
/// took it from (paths, URLs and schemas may differ: restoring into a new
/// folder or database is how a set is moved to another machine).
///
/// 1. The set is checked: manifest present, database files and dumps
///    equal to their digests.
/// 2. Each part is restored *beside* its store: a SQLite database to
///    `<db>.restoring`, a file root to `<root>.restoring`, a PostgreSQL
///    schema to `<schema>_restoring`; the copy's counts and content
///    digests must equal the set's. Other stores (S3, memory, registered
///    backends) are loaded in place, and only when they are empty or hold
///    exactly the set's records.
/// 3. A plan is written into the set, then each store is replaced by its
///    copy, keeping what it replaces: `<db>.before-restore.<time>`,
///    `<root>.before-restore.<time>/`, schema
///    `<schema>_before_restore_<time>` (a SQLite database and a PostgreSQL
///    schema are swapped atomically, a file root folder by folder under its
///    writers' locks).
/// 4. Every store is read again and must hold what the set saved.
///
/// A crash before step 3 leaves every store as it was; a crash during it is
/// finished by running the same restore again (the plan says what is left
/// to do). Writers should be stopped while a restore runs; a SQLite
/// database that is still open elsewhere is refused with
/// [`Error::Conflict`].
pub async fn restore(
    config: &Config,
    set: &Path,
    options: RestoreOptions,
) -> Result<RestoreReport> {
    let manifest = read_manifest(set)?;
    check_config(config, &manifest)?;
    let plan_path = set.join(PLAN_FILE);
    let resumed = plan_path.exists();
    let swaps = if resumed {
        let text = std::fs::read_to_string(&plan_path)
            .map_err(|e| Error::io(format!("reading {}", plan_path.display()), e))?;
        let plan: Plan = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(plan_path.display().to_string(), e.to_string()))?;
        plan.swaps
    } else {
        check_set(set, &manifest).await?;
        let swaps = stage(config, set, &manifest, &options).await?;
        let text = serde_json::to_string_pretty(&Plan {
            swaps: swaps.clone(),
        })
        .map_err(|e| Error::backend("encoding JSON", Some(e.into())))?;
        crate::fsutil::write_durably(&plan_path, text.as_bytes()).await?;
        swaps
    };
    let mut kept = Vec::new();
    for swap in &swaps {
        if run_swap(config, swap).await? {
            kept.push(swap.kept());
        }
    }
    // Afterwards: every store holds what the set saved.
    let mut counts = BTreeMap::new();
    for part in &manifest.parts {
        let backend = open_backend(config, part.concerns[0]).await?;
        let storage = storage_over(&backend, &part.concerns);
        let found = dump::content_digest(&storage, &part.concerns).await?;
        drop(storage);
        drop(backend);
        compare(
            part,
            &found,
            &format!("the restored {:?} store", part.concerns),
        )?;
        counts.extend(super::counts_of(&found, &part.concerns));
    }
    if resumed || !swaps.is_empty() {
        std::fs::remove_file(&plan_path)
            .map_err(|e| Error::io(format!("removing {}", plan_path.display()), e))?;
        crate::fsutil::sync_dir(set)?;
    }
    Ok(RestoreReport {
        set: set.to_path_buf(),
        parts: manifest.parts.len(),
        counts,
        kept,
        resumed,
    })
}

/// Step 2: every part restored beside its store and checked; the swaps
/// that put them in place.
async fn stage(
    config: &Config,
    set: &Path,
    manifest: &BackupManifest,
    options: &RestoreOptions,
) -> Result<Vec<Swap>> {
    let time = stamp(Timestamp::now());
    let mut swaps = Vec::new();
    for part in &manifest.parts {
        let source = set.join(&part.location);
        let bc = config.backend(part.concerns[0]).for_backend();
        let factory = crate::registry::global()
            .factory(&bc.type_name)
            .map_err(|e| bc.error(e))?;
        // A store that is not there yet is created by opening it; it is
        // not worth keeping then.
        let existed = factory.exists(&bc)? != Some(false);
        let backend = factory.open(&bc).await?;
        let import = || {
            let mut o = ImportOptions::default().concerns(&part.concerns);
            o.progress = options.progress.clone();
            o
        };
        match crate::Builtin::of(&backend.handle) {
            #[cfg(feature = "sqlite")]
            crate::Builtin::Sqlite(store) => {
                let dest = store.path().to_path_buf();
                drop(backend);
                if !existed {
                    super::remove_db(&dest)?;
                }
                let staged = beside(&dest, ".restoring");
                super::remove_db(&staged)?;
                runstore_sqlite::SqliteStore::restore(&source, &staged).await?;
                let found = super::sqlite_content(&staged, &part.concerns).await?;
                compare(part, &found, &staged.display().to_string())?;
                swaps.push(Swap::Sqlite {
                    aside: beside(&dest, &format!(".before-restore.{time}")),
                    staged,
                    dest,
                });
            }
            #[cfg(feature = "file")]
            crate::Builtin::File(store) => {
                let root = std::fs::canonicalize(store.root())
                    .map_err(|e| Error::io(format!("resolving {}", store.root().display()), e))?;
                drop(backend);
                let staged = beside(&root, ".restoring");
                if staged.exists() {
                    std::fs::remove_dir_all(&staged)
                        .map_err(|e| Error::io(format!("removing {}", staged.display()), e))?;
                }
                let copy =
                    runstore_file::FileStore::open(runstore_file::FileConfig::new(&staged)).await?;
                let storage = Storage::from_store_set(copy.store_set());
                dump::import(&storage, &source, import()).await?;
                let found = dump::content_digest(&storage, &part.concerns).await?;
                compare(part, &found, &staged.display().to_string())?;
                swaps.push(Swap::File {
                    aside: beside(&root, &format!(".before-restore.{time}")),
                    staged,
                    root,
                    concerns: part.concerns.clone(),
                });
            }
            #[cfg(feature = "postgres")]
            crate::Builtin::Postgres(store) => {
                let schema = store.config().schema.clone();
                let staged = schema_name(&schema, "_restoring");
                store.drop_other_schema(&staged).await?;
                let copy = runstore_postgres::PostgresStore::open(
                    store.config().clone().with_schema(&staged),
                )
                .await?;
                let storage = Storage::from_store_set(copy.store_set());
                dump::import(&storage, &source, import()).await?;
                let found = dump::content_digest(&storage, &part.concerns).await?;
                compare(part, &found, &format!("schema {staged}"))?;
                swaps.push(Swap::Postgres {
                    concern: part.concerns[0],
                    aside: schema_name(
                        &schema,
                        &format!("_before_restore_{}", time.replace(['.', 'T', 'Z'], "")),
                    ),
                    staged,
                });
            }
            _ => {
                // No place to stage: loaded in place, into an empty store
                // (or one that already holds exactly the set's records).
                let storage = storage_over(&backend, &part.concerns);
                let found = dump::content_digest(&storage, &part.concerns).await?;
                let empty = found.counts == dump::DumpCounts::default();
                if !empty && compare(part, &found, "").is_err() {
                    return Err(Error::conflict(format!(
                        "the `{}` store of {:?} holds other records; a store of this kind is restored only when empty",
                        part.backend, part.concerns
                    )));
                }
                dump::import(&storage, &source, import()).await?;
            }
        }
    }
    Ok(swaps)
}

/// Step 3 for one store; does nothing when it was already done. Whether
/// something was replaced and kept.
async fn run_swap(config: &Config, swap: &Swap) -> Result<bool> {
    match swap {
        #[cfg(feature = "sqlite")]
        Swap::Sqlite {
            staged,
            dest,
            aside,
        } => {
            runstore_sqlite::SqliteStore::swap_in(staged, dest, aside).await?;
            Ok(aside.exists())
        }
        #[cfg(feature = "file")]
        Swap::File {
            staged,
            root,
            aside,
            concerns,
        } => {
            let names: Vec<&str> = concerns.iter().map(|c| c.as_str()).collect();
            runstore_file::FileStore::swap_in(staged, root, aside, &names).await?;
            Ok(aside.exists())
        }
        #[cfg(feature = "postgres")]
        Swap::Postgres {
            concern,
            staged,
            aside,
        } => {
            let backend = open_backend(config, *concern).await?;
            match crate::Builtin::of(&backend.handle) {
                crate::Builtin::Postgres(store) => {
                    store.swap_schema_in(staged, aside).await?;
                    store.schema_exists(aside).await
                }
                _ => Err(Error::invalid(
                    "config",
                    format!("the {concern} store is no longer PostgreSQL"),
                )),
            }
        }
        #[allow(unreachable_patterns)]
        other => {
            let _ = config;
            Err(Error::invalid(
                "set",
                format!("this build cannot finish the restore step {other:?}"),
            ))
        }
    }
}
