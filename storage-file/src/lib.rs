#![doc = include_str!("../README.md")]

mod artifacts;
mod check;
mod coordination;
mod fsutil;
mod journal_index;
mod lifecycle;
mod logs;
mod metric_index;
mod metrics;
mod registration;
mod restore;
#[cfg(feature = "testing")]
pub mod testing;
mod workflows;

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runstore_core::{Error, Result, StoreSet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use check::{CheckReport, Finding, FindingKind};
pub use registration::{FileBackend, TYPE_NAME};

/// Where the bytes of artifact `key` live under the store's `root`, by the
/// layout of FORMAT.md (`artifacts/<run>/phases/<phase>/(d/<dir>/)*f/<name>`):
/// for tools and tests that inspect or damage a stored file. The key is a
/// validated [`runstore_core::ArtifactKey`], so the path never leaves `root`.
///
/// ```
/// use std::path::Path;
/// use runstore_core::ArtifactKey;
///
/// let key = ArtifactKey::parse("run-1", "train", "logs/out.txt").unwrap();
/// let path = runstore_file::artifact_bytes_path(Path::new("/data"), &key);
/// assert_eq!(path, Path::new("/data/artifacts/run-1/phases/train/d/logs/f/out.txt"));
/// ```
pub fn artifact_bytes_path(root: &Path, key: &runstore_core::ArtifactKey) -> PathBuf {
    artifacts::blob_parts(key)
        .into_iter()
        .fold(root.to_path_buf(), |path, part| path.join(part))
}

use fsutil::{Root, Syncer, lock_mutex};

/// Name of the file in the root that records the layout version.
pub const FORMAT_FILE: &str = "runstore-format.json";
/// The layout this crate writes and reads (see FORMAT.md).
pub const FORMAT_VERSION: u32 = 1;
/// The `format` tag inside [`FORMAT_FILE`].
pub const FORMAT_NAME: &str = "runstore-file";

/// How hard an acknowledged append is pushed to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Each acknowledged append is fsynced before the call returns (default).
    #[default]
    Fsync,
    /// Concurrent appends share one fsync; still durable when the call returns.
    GroupCommit,
    /// No fsync at all: for tests and throwaway data only.
    None,
}

/// Where a [`FileStore`] lives and how it writes: the options of a
/// `type: file` section of the configuration file, or built in code.
///
/// ```
/// use runstore_file::{Durability, FileConfig};
/// let c = FileConfig::new("./runstore-data").with_durability(Durability::GroupCommit);
/// assert_eq!(c.durability, Durability::GroupCommit);
/// let yaml: FileConfig = serde_yaml::from_str("path: ./data\ndurability: none").unwrap();
/// assert_eq!(yaml.durability, Durability::None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// The root folder; created on open if missing.
    pub path: PathBuf,
    /// See [`Durability`]; [`Durability::Fsync`] by default.
    #[serde(default, deserialize_with = "registration::durability")]
    pub durability: Durability,
    /// Opens the root without writing to it: it must exist with its format
    /// file, nothing is created, repaired or compacted (a torn tail is read
    /// around; the journals' indexes are built in a private temporary
    /// folder), and every write is refused with `InvalidInput`. For
    /// migration sources and other readers. `false` by default.
    #[serde(default)]
    pub read_only: bool,
}

impl FileConfig {
    /// A store rooted at `path`, with the defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig {
            path: path.into(),
            durability: Durability::default(),
            read_only: false,
        }
    }

    /// Opens the root read-only (see [`FileConfig::read_only`]).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets the durability level.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// All four runstore traits on plain files under one root folder. Cheap to
/// clone (the state is shared); several processes may open the same root.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.inner.root.dir)
            .field("durability", &self.inner.durability)
            .finish()
    }
}

/// Shared state of a [`FileStore`]: the root, the caches (each checked
/// against the files under the lock before use) and what recovery found.
pub(crate) struct Inner {
    pub(crate) root: Root,
    pub(crate) durability: Durability,
    pub(crate) syncer: Syncer,
    pub(crate) runs: Mutex<journal_index::IndexSlot>,
    pub(crate) events: Mutex<logs::EventsCache>,
    pub(crate) metrics: Mutex<journal_index::IndexSlot>,
    /// The summary counters, following the metric journal.
    pub(crate) summaries: Mutex<metric_index::SummaryFollower>,
    pub(crate) patterns: Mutex<metrics::PatternsState>,
    /// Problems met by normal operations since open (reported by `check`).
    pub(crate) found: Mutex<Vec<Finding>>,
    /// `(file, offset)` already warned about, so a corrupt line read on every
    /// query is logged once.
    pub(crate) warned: Mutex<HashSet<(String, u64)>>,
}

/// Whether a replay reads on after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
}

impl Inner {
    /// Records a problem met during normal work: logged once, kept for
    /// the next [`FileStore::check`].
    pub(crate) fn report(
        &self,
        kind: FindingKind,
        location: &Path,
        offset: u64,
        detail: String,
        repaired: bool,
    ) {
        let loc = location.display().to_string();
        if !lock_mutex(&self.warned).insert((loc.clone(), offset)) {
            return;
        }
        tracing::warn!(file = %loc, offset, ?kind, repaired, "{detail}");
        lock_mutex(&self.found).push(Finding {
            kind,
            location: if matches!(kind, FindingKind::CorruptLine | FindingKind::TornTail) {
                format!("{loc} at byte {offset}")
            } else {
                loc
            },
            detail,
            repaired,
        });
    }

    /// Replays the complete lines of a journal after `from` into a cache:
    /// each line that parses as `L` goes to `apply`, which may still refuse
    /// it with a reason; unreadable or refused lines are skipped and
    /// reported. Returns the offset the cache now covers.
    ///
    /// `file` is the journal at `path`; `what` names a record in the report
    /// ("event", "run record", …). `cut_torn` is the file's identity when
    /// the caller holds the exclusive lock: then no writer can be active, so
    /// a torn last line is a crash's leftover and is cut.
    pub(crate) fn replay<L: DeserializeOwned>(
        &self,
        file: &mut File,
        path: &Path,
        from: u64,
        cut_torn: Option<fsutil::FileId>,
        what: &str,
        mut apply: impl FnMut(L) -> std::result::Result<(), String>,
    ) -> Result<u64> {
        self.replay_into(file, path, from, cut_torn, what, |_, l| Ok(apply(l)))
    }

    /// [`Inner::replay`] where `apply` also gets each line's offset and may
    /// fail as a whole (an index write), which stops the replay. Reads the
    /// journal a chunk at a time,
    /// so memory does not grow with it.
    pub(crate) fn replay_into<L: DeserializeOwned>(
        &self,
        file: &mut File,
        path: &Path,
        from: u64,
        cut_torn: Option<fsutil::FileId>,
        what: &str,
        mut apply: impl FnMut(u64, L) -> Result<std::result::Result<(), String>>,
    ) -> Result<u64> {
        let end = self.replay_lines(file, path, from, cut_torn, what, |off, l| {
            Ok(apply(off, l)?.map(|()| Flow::Next))
        })?;
        Ok(end.unwrap_or(from))
    }

    /// [`Inner::replay`] from the start of `file` that stops after the line
    /// for which `apply` says `true`: the lines after it are neither read
    /// nor reported. Whether it stopped. A torn tail is left as it is.
    pub(crate) fn replay_until<L: DeserializeOwned>(
        &self,
        file: &mut File,
        path: &Path,
        what: &str,
        mut apply: impl FnMut(L) -> std::result::Result<bool, String>,
    ) -> Result<bool> {
        let end = self.replay_lines(file, path, 0, None, what, |_, l| {
            Ok(apply(l).map(|stop| if stop { Flow::Stop } else { Flow::Next }))
        })?;
        Ok(end.is_none())
    }

    /// The loop of [`Inner::replay_into`] and [`Inner::replay_until`]: the
    /// offset the replay covers, `None` if `apply` stopped it.
    fn replay_lines<L: DeserializeOwned>(
        &self,
        file: &mut File,
        path: &Path,
        mut from: u64,
        cut_torn: Option<fsutil::FileId>,
        what: &str,
        mut apply: impl FnMut(u64, L) -> Result<std::result::Result<Flow, String>>,
    ) -> Result<Option<u64>> {
        loop {
            let (read, at_eof) = fsutil::read_line_chunk(file, path, from, fsutil::REPLAY_CHUNK)?;
            for (off, line) in read.lines() {
                let parsed = line
                    .map_err(|()| "not UTF-8".to_string())
                    .and_then(|l| serde_json::from_str::<L>(l).map_err(|e| e.to_string()));
                let applied = match parsed {
                    Ok(l) => apply(off, l)?,
                    Err(e) => Err(e),
                };
                if applied == Ok(Flow::Stop) {
                    return Ok(None);
                }
                if let Err(e) = applied {
                    self.report(
                        FindingKind::CorruptLine,
                        path,
                        off,
                        format!("skipped an unreadable {what}: {e}"),
                        false,
                    );
                }
            }
            from = read.end;
            if !at_eof {
                continue;
            }
            if read.torn > 0
                && let Some(id) = cut_torn
            {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| fsutil::io_err("opening", path, e))?;
                let cut = fsutil::cut_torn_tail(&f, path)?;
                self.syncer.forget(id);
                self.report(
                    FindingKind::TornTail,
                    path,
                    read.end,
                    format!("cut a torn last line of {cut} bytes left by a crash"),
                    true,
                );
            }
            return Ok(Some(from));
        }
    }

    /// Runs blocking file work off the async executor.
    pub(crate) async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::backend("a file task failed", Some(e.into())))?
    }
}

#[derive(Serialize, Deserialize)]
struct FormatRecord {
    format: String,
    version: u32,
}

impl FileStore {
    /// Opens (creating if needed) a store in `root`. Checks the format
    /// version, cuts torn tails of the shared logs, and rebuilds a missing or
    /// stale run index.
    ///
    /// # Errors
    /// [`Error::Backend`] if the root holds a newer or another format, or
    /// cannot be created; [`Error::Corrupt`] for an unreadable format file.
    pub async fn open(config: FileConfig) -> Result<FileStore> {
        let FileConfig {
            path: dir,
            durability,
            read_only,
        } = config;
        let inner = Arc::new(Inner {
            root: Root {
                dir,
                sync_new_dirs: durability != Durability::None,
                read_only,
            },
            durability,
            syncer: Syncer::default(),
            runs: Mutex::new(journal_index::IndexSlot::default()),
            events: Mutex::new(logs::EventsCache::default()),
            metrics: Mutex::new(journal_index::IndexSlot::default()),
            summaries: Mutex::new(metric_index::SummaryFollower::default()),
            patterns: Mutex::new(metrics::PatternsState::default()),
            found: Mutex::new(Vec::new()),
            warned: Mutex::new(HashSet::new()),
        });
        inner
            .blocking(|inner| {
                if inner.root.read_only {
                    // Reads refresh lazily under shared locks, which never
                    // cut, rebuild or compact anything.
                    return read_format(inner)?.ok_or_else(|| {
                        Error::not_found(format!(
                            "a runstore file store at {} (opened read-only, so it is not created)",
                            inner.root.dir.display()
                        ))
                    });
                }
                init_root(inner)?;
                logs::recover(inner)?;
                metrics::recover(inner)?;
                Ok(())
            })
            .await?;
        Ok(FileStore { inner })
    }

    /// Checks everything under the root: torn tails, corrupt lines and
    /// files, a stale or missing index, artifact hash mismatches, orphan and
    /// leftover files. With `repair`, fixes what can be fixed without losing
    /// data (cuts torn tails, rebuilds the index, removes orphans and
    /// leftovers) and says so in each finding.
    pub async fn check(&self, repair: bool) -> Result<CheckReport> {
        self.inner
            .blocking(move |inner| check::run(inner, repair))
            .await
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.inner.root.dir
    }

    /// This store as a [`StoreSet`] (one handle for every concern).
    pub fn store_set(&self) -> StoreSet {
        StoreSet {
            workflows: Arc::new(self.clone()),
            logs: Arc::new(self.clone()),
            metrics: Arc::new(self.clone()),
            artifacts: Arc::new(self.clone()),
        }
    }
}

fn init_root(inner: &Inner) -> Result<()> {
    let dir = &inner.root.dir;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() || m.file_type().is_symlink() => {}
        Ok(_) => {
            return Err(Error::backend(
                format!("{} is not a folder", dir.display()),
                None,
            ));
        }
        Err(_) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(fsutil::DIR_MODE)
                .create(dir)
                .map_err(|e| fsutil::io_err("creating root", dir, e))?;
        }
    }
    let _guard = fsutil::take_lock(&inner.root, "format.lock", true)?;
    if read_format(inner)?.is_some() {
        return Ok(());
    }
    let rec = FormatRecord {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
    };
    let mut bytes = serde_json::to_vec_pretty(&rec)
        .map_err(|e| Error::backend("writing the format record", Some(e.into())))?;
    bytes.push(b'\n');
    fsutil::write_atomic(dir, FORMAT_FILE, &bytes, inner.durability)
}

/// Reads and checks the root's format record: `None` when there is none
/// (a new root, or no root at all).
fn read_format(inner: &Inner) -> Result<Option<()>> {
    let dir = &inner.root.dir;
    let path = inner.root.path(&[FORMAT_FILE])?;
    let Some(mut f) = fsutil::open_read(&path)? else {
        return Ok(None);
    };
    use std::io::Read;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| fsutil::io_err("reading", &path, e))?;
    let rec: FormatRecord = serde_json::from_str(&text).map_err(|e| {
        Error::corrupt(
            path.display().to_string(),
            format!("not a format record: {e}"),
        )
    })?;
    if rec.format != FORMAT_NAME {
        return Err(Error::backend(
            format!(
                "{} holds format {:?}, not {FORMAT_NAME:?}: not a runstore file store",
                path.display(),
                rec.format
            ),
            None,
        ));
    }
    if rec.version > FORMAT_VERSION {
        return Err(Error::backend(
            format!(
                "{} was written in layout version {} by a newer runstore; this one reads up to version {FORMAT_VERSION}: upgrade runstore to open it",
                dir.display(),
                rec.version
            ),
            None,
        ));
    }
    Ok(Some(()))
}
