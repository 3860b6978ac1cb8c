#![doc = include_str!("../README.md")]

mod artifacts;
mod backup;
mod bulk_load;
mod coordination;
mod error;
mod lifecycle;
mod logs;
mod metrics;
mod registration;
mod rows;
mod schema;
mod select;
mod summaries;
#[cfg(feature = "testing")]
pub mod testing;
mod workflows;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use runstore_core::{Error, Result, StoreSet, Timestamp};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{Mutex as AsyncMutex, Semaphore};

pub use backup::BackupReport;
pub use registration::{SqliteBackend, TYPE_NAME};

use crate::error::Ctx;

/// How hard SQLite syncs to disk at commit (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// WAL is synced at checkpoints only: a commit survives a process crash,
    /// and may be lost (never corrupted) on power loss. The default.
    #[default]
    Normal,
    /// Every commit is synced: survives power loss too, slower.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Where a [`SqliteStore`] lives and how it commits: the options of a
/// `type: sqlite` section of the configuration file, or built in code.
///
/// ```
/// use std::time::Duration;
/// use runstore_sqlite::{SqliteConfig, Synchronous};
/// let c = SqliteConfig::new("./runstore-data/runstore.db").with_synchronous(Synchronous::Full);
/// assert_eq!((c.busy_timeout, c.readers), (Duration::from_secs(5), 4));
/// let yaml: SqliteConfig =
///     serde_yaml::from_str("path: x.db\nbusy_timeout: 500ms\ncheckpoint_pages: 1000").unwrap();
/// assert_eq!(yaml.busy_timeout, Duration::from_millis(500));
/// assert_eq!(yaml.checkpoint_pages, 1000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file; it and its folder are created on open if missing.
    pub path: PathBuf,
    /// Durability of commits; [`Synchronous::Normal`] by default.
    #[serde(default, deserialize_with = "registration::synchronous")]
    pub synchronous: Synchronous,
    /// How long a connection waits for a lock held by another connection or
    /// process before giving up with a retryable `Unavailable`; 5000 ms.
    #[serde(
        default = "registration::default_busy_timeout",
        deserialize_with = "registration::busy_timeout"
    )]
    pub busy_timeout: Duration,
    /// How many reader connections may run at once, beside the one writer;
    /// 1 to 64, 4 by default.
    #[serde(default = "registration::default_readers")]
    pub readers: usize,
    /// How many pages (4 KiB each) the write-ahead log grows to before a
    /// commit copies it into the database file (`PRAGMA
    /// wal_autocheckpoint`); 100 to 1,000,000, 10,000 (about 40 MiB) by
    /// default. SQLite's own default is 1,000: a larger log copies a page
    /// changed by many commits once and syncs less often, which speeds up
    /// batched writes and deletes (a prune by about 15%). With
    /// `synchronous: normal`, the commits a power loss may take are the
    /// ones since the last copy (or the kernel's own write-back), so a
    /// smaller value narrows that window.
    #[serde(default = "registration::default_checkpoint_pages")]
    pub checkpoint_pages: u32,
    /// Opens the database without writing to it at all: the file must
    /// exist with this build's schema (no migration, no housekeeping, no
    /// switch to WAL), every connection is read-only, and every write is
    /// refused with `InvalidInput` before it reaches SQLite. For migration
    /// sources, dashboards and other readers. `false` by default.
    #[serde(default)]
    pub read_only: bool,
}

impl SqliteConfig {
    /// A database at `path`, with the defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            synchronous: Synchronous::Normal,
            busy_timeout: registration::default_busy_timeout(),
            readers: registration::default_readers(),
            checkpoint_pages: registration::default_checkpoint_pages(),
            read_only: false,
        }
    }

    /// Opens the database read-only (see [`SqliteConfig::read_only`]).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets how hard commits are synced.
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets how long a connection waits for a lock.
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Sets how many reader connections may run at once.
    pub fn with_readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// Sets how many pages the write-ahead log grows to before it is
    /// copied into the database file.
    pub fn with_checkpoint_pages(mut self, pages: u32) -> Self {
        self.checkpoint_pages = pages;
        self
    }

    /// Checks the values serde cannot: the number of readers and the
    /// checkpoint size.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `readers` outside 1 to 64, or
    /// `checkpoint_pages` outside 100 to 1,000,000.
    pub fn validate(&self) -> Result<()> {
        if !registration::CHECKPOINT_PAGES.contains(&self.checkpoint_pages) {
            return Err(Error::invalid(
                "checkpoint_pages",
                format!(
                    "must be {} to {}, got {}",
                    registration::CHECKPOINT_PAGES.start(),
                    registration::CHECKPOINT_PAGES.end(),
                    self.checkpoint_pages
                ),
            ));
        }
        if !(1..=registration::MAX_READERS).contains(&self.readers) {
            return Err(Error::invalid(
                "readers",
                format!(
                    "must be 1 to {}, got {}",
                    registration::MAX_READERS,
                    self.readers
                ),
            ));
        }
        Ok(())
    }
}

/// A runstore backend on one SQLite file: implements all four traits of
/// `runstore-core`. Cheap to clone (an `Arc` inside); every clone shares one
/// writer connection and one pool of readers.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteConfig,
    /// The one writer connection. A tokio mutex, so waiting for it never
    /// blocks an executor thread; the work itself runs on the blocking pool.
    writer: Arc<AsyncMutex<Connection>>,
    /// Idle reader connections, opened lazily up to `options.readers`.
    idle_readers: std::sync::Mutex<Vec<Connection>>,
    reader_slots: Arc<Semaphore>,
    /// Set when the writer's foreign-key checks could not be switched on
    /// again after [`SqliteStore::write_tx_unchecked`]; the next write
    /// switches them on before anything else.
    foreign_keys_off: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction of `conn`: committed if
/// it returns `Ok`, rolled back (dropped) otherwise.
fn immediate_tx<T>(
    conn: &mut Connection,
    what: &str,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(what)?;
    let out = f(&tx)?;
    tx.commit().ctx(what)?;
    Ok(out)
}

/// Staged artifact blobs older than this are from a writer that died; they
/// are removed on open.
const STALE_STAGING_MICROS: i64 = 3600 * 1_000_000;

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::backend("a blocking SQLite task failed", Some(Box::new(e)))
}

/// Sets the per-connection settings every connection shares.
fn configure(conn: &Connection, options: &SqliteConfig) -> Result<()> {
    conn.busy_timeout(options.busy_timeout)
        .ctx("setting busy_timeout")?;
    conn.pragma_update(None, "foreign_keys", true)
        .ctx("enabling foreign keys")?;
    conn.set_prepared_statement_cache_capacity(64);
    // Without the query planner stability guarantee, SQLite (3.54) compiles
    // a bound `LIMIT ?` into the plan as a constant and re-prepares the
    // cached statement every time the limit is bound again: about a quarter
    // of a `get_recent(50)`'s time went to re-parsing its SQL. The plans do not
    // depend on bound values here (no ANALYZE statistics, no `LIKE ?`).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .ctx("enabling the query planner stability guarantee")?;
    Ok(())
}

/// Runs a statement that changes at most one row (an insert with `ON
/// CONFLICT (key) DO NOTHING`, a delete by key): `true` if it changed one.
/// An insert that changed nothing found its key stored; the caller reads it
/// back to tell "unchanged" from "conflict". Inserting first saves a lookup
/// for every new record, the usual case of bulk writes.
pub(crate) fn changed_one(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    what: &str,
) -> Result<bool> {
    let n = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .ctx(what)?;
    Ok(n == 1)
}

/// Makes a new database at `path` if there is none: a valid, empty
/// database (header written, WAL mode set) is built in a temp file beside
/// it and moved into place without replacing anything, so a concurrent
/// creator's file wins and nobody ever sees a half-made one.
fn create_if_missing(path: &Path, options: &SqliteConfig) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".runstore-new-")
        .suffix(".db")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a new database in {}", dir.display()), e))?;
    {
        let conn = Connection::open(tmp.path()).ctx("making a new database")?;
        configure(&conn, options)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .ctx("making a new database")?;
        // Closing checkpoints the WAL into the file and removes it.
        conn.close()
            .map_err(|(_, e)| e)
            .ctx("closing the new database")?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("syncing the new database", e))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        // Another process made it meanwhile: use theirs.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(
            format!("placing the new database at {}", path.display()),
            e.error,
        )),
    }
}

fn open_writer(path: &Path, options: &SqliteConfig) -> Result<Connection> {
    if options.read_only {
        return open_read_only(path, options);
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating the folder {}", parent.display()), e))?;
    }
    // SQLite takes an empty file for a new database; here one is far more
    // likely a database cut to nothing (a failed copy, a full disk), and
    // opening it would hide that under a fresh, empty store. A new database
    // never shows as an empty file: it is made aside and placed whole.
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        return Err(Error::corrupt(
            path.display().to_string(),
            "the database file exists but is empty (0 bytes), which no runstore database is; restore it from a backup, or remove it to start a new store",
        ));
    }
    create_if_missing(path, options)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx(&format!("opening {}", path.display()))?;
    configure(&conn, options)?;
    // Refuse a newer schema before anything writes to the file (switching
    // the journal mode would already change its header).
    schema::refuse_newer(&conn, &format!("{}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .ctx("switching to WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::backend(
            format!(
                "{} could not be switched to WAL (journal mode is {mode})",
                path.display()
            ),
            None,
        ));
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())
        .ctx("setting synchronous")?;
    // Only the writer commits, so only its setting matters.
    conn.pragma_update(None, "wal_autocheckpoint", options.checkpoint_pages)
        .ctx("setting wal_autocheckpoint")?;
    schema::migrate(&mut conn)?;
    // A bulk load cut short (a crash, a killed migration) left indexes out.
    bulk_load::ensure(&mut conn, None)?;
    let cutoff = Timestamp::now().as_micros() - STALE_STAGING_MICROS;
    // Housekeeping, not needed to open: on a damaged file it may fail, and
    // the store must still open so that `integrity_check` (and `check`)
    // can say what is wrong and the intact parts stay readable.
    if let Err(e) = conn
        .execute(
            "DELETE FROM artifact_blobs WHERE complete = 0 AND staged_at < ?1",
            [cutoff],
        )
        .ctx("removing stale staged artifact blobs")
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove stale staged artifact blobs");
    }
    Ok(conn)
}

/// The connection of a store opened read-only: the file must exist and
/// hold this build's schema, since nothing may be migrated.
fn open_read_only(path: &Path, options: &SqliteConfig) -> Result<Connection> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(Error::not_found(format!(
            "SQLite database {} (opened read-only, so it is not created)",
            path.display()
        )));
    }
    let conn = open_reader(path, options)?;
    let v = schema::refuse_newer(&conn, &format!("{}", path.display()))?;
    if v < schema::latest_version() {
        return Err(Error::invalid(
            "read_only",
            format!(
                "{} has schema version {v}, older than this build's {}; a read-only open cannot migrate it: open it once for writing",
                path.display(),
                schema::latest_version()
            ),
        ));
    }
    Ok(conn)
}

fn open_reader(path: &Path, options: &SqliteConfig) -> Result<Connection> {
    let flags = if options.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .ctx(&format!("opening a reader on {}", path.display()))?;
    configure(&conn, options)?;
    // Readers never write; this makes a bug that tries fail loudly.
    conn.pragma_update(None, "query_only", true)
        .ctx("making a reader read-only")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the database at `path`
    /// and brings its schema to the latest version. A file whose schema is
    /// newer than this code is refused and left unchanged.
    pub async fn open(options: SqliteConfig) -> Result<SqliteStore> {
        options.validate()?;
        let path = options.path.clone();
        let (conn, path, options) = tokio::task::spawn_blocking(move || {
            open_writer(&path, &options).map(|c| (c, path, options))
        })
        .await
        .map_err(join_error)??;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                reader_slots: Arc::new(Semaphore::new(options.readers)),
                path,
                options,
                writer: Arc::new(AsyncMutex::new(conn)),
                idle_readers: std::sync::Mutex::new(Vec::new()),
                foreign_keys_off: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The file this store works on.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the file (the highest applied migration).
    pub async fn schema_version(&self) -> Result<u32> {
        self.read(|conn| schema::current_version(conn)).await
    }

    /// Runs `PRAGMA integrity_check`; an empty list means the file is sound,
    /// otherwise each entry is one problem SQLite found.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        self.read(|conn| backup::integrity_check(conn)).await
    }

    /// Copies the database to `dest` with SQLite's online backup API, while
    /// other connections keep working. Checks integrity before (refusing to
    /// copy a damaged database) and after (on the copy). The copy is written
    /// beside `dest` and renamed into place only when sound.
    pub async fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        let dest = dest.as_ref().to_path_buf();
        self.read(move |conn| backup::backup(conn, &dest)).await
    }

    /// Restores the backup file `backup` to `dest`. The backup must pass
    /// `integrity_check` and have a schema this code knows. An existing
    /// `dest` is replaced only if no connection has it open and its schema is
    /// not newer than the backup's; otherwise [`Error::Conflict`] and nothing
    /// changes.
    pub async fn restore(backup: impl AsRef<Path>, dest: impl AsRef<Path>) -> Result<()> {
        let backup = backup.as_ref().to_path_buf();
        let dest = dest.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || backup::restore(&backup, &dest))
            .await
            .map_err(join_error)?
    }

    /// Puts the database `staged` (restored beside `dest`, e.g. by
    /// [`SqliteStore::restore`]) in place of `dest` with one rename, keeping
    /// the replaced database (and its WAL) as `aside`. Refuses
    /// ([`Error::Conflict`]) while another connection has `dest` open. Does
    /// nothing once `staged` is gone, so it can be run again after a crash.
    pub async fn swap_in(
        staged: impl AsRef<Path>,
        dest: impl AsRef<Path>,
        aside: impl AsRef<Path>,
    ) -> Result<()> {
        let (staged, dest, aside) = (
            staged.as_ref().to_path_buf(),
            dest.as_ref().to_path_buf(),
            aside.as_ref().to_path_buf(),
        );
        tokio::task::spawn_blocking(move || backup::swap_in(&staged, &dest, &aside))
            .await
            .map_err(join_error)?
    }

    /// `PRAGMA integrity_check` of the database file at `path`, opened
    /// read-only without opening a store: the problems found, empty when
    /// sound. A file that cannot be read as a database at all is
    /// [`Error::Corrupt`].
    pub async fn integrity_check_file(path: impl AsRef<Path>) -> Result<Vec<String>> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || backup::check_file(&path))
            .await
            .map_err(join_error)?
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

    /// Runs `f` with the writer connection on the blocking pool.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        if self.inner.options.read_only {
            return Err(Error::invalid(
                "store",
                format!(
                    "the SQLite store {} was opened read-only; it takes no writes",
                    self.inner.path.display()
                ),
            ));
        }
        let guard = self.inner.writer.clone().lock_owned().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = guard;
            if inner.foreign_keys_off.load(Ordering::Acquire) {
                guard
                    .pragma_update(None, "foreign_keys", true)
                    .ctx("enabling foreign keys again")?;
                inner.foreign_keys_off.store(false, Ordering::Release);
            }
            f(&mut guard)
        })
        .await
        .map_err(join_error)?
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction of the writer:
    /// committed if it returns `Ok`, rolled back otherwise. IMMEDIATE takes
    /// the write lock first, so a read-modify-write never races another
    /// process (and never needs a lock upgrade that could fail).
    pub(crate) async fn write_tx<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.write(move |conn| immediate_tx(conn, what, f)).await
    }

    /// [`Self::write_tx_unchecked`] of a bulk write of `batch`, which
    /// `prepare` first checks and encodes (JSON text, say) into what `f`
    /// writes. The batch is prepared on the blocking pool before the writer
    /// is taken, and freed there after it is released, so neither holds the
    /// writer nor the async thread: while one migration writer holds the
    /// writer, the next batch gets ready on another core, and the task that
    /// takes the writer next is not kept waiting behind an encode or a free
    /// (freeing 10,000 events took a fifth of the writer's time in a
    /// migration). For imports that insert each parent row before its
    /// children in the same transaction, where SQLite's lookup of the
    /// parent of every child inserted would find what the transaction
    /// itself just wrote.
    pub(crate) async fn write_tx_over_unchecked<B, P, T, F>(
        &self,
        what: &'static str,
        batch: B,
        prepare: impl FnOnce(B) -> Result<P> + Send + 'static,
        f: F,
    ) -> Result<T>
    where
        B: Send + 'static,
        P: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &P) -> Result<T> + Send + 'static,
    {
        let prepared = tokio::task::spawn_blocking(move || prepare(batch))
            .await
            .map_err(join_error)??;
        let (out, spent) = self
            .write_tx_unchecked(what, move |tx| Ok((f(tx, &prepared)?, prepared)))
            .await?;
        // Awaited, so a writer holds one batch at a time; a failed join
        // has dropped the batch anyway.
        let _ = tokio::task::spawn_blocking(move || drop(spent)).await;
        Ok(out)
    }

    /// [`Self::write_tx`] with the writer's foreign-key checks off for the
    /// transaction. SQLite looks up the parent of every child row written
    /// or deleted and scans the children of every parent deleted, which
    /// triples the cost of deleting runs with their events. Only for
    /// transactions that keep every child's parent themselves: deletes that
    /// remove the children first, imports that insert each parent before
    /// its children. The checks are on again before the writer is
    /// released; if that fails, the next write switches them on before it
    /// does anything else.
    pub(crate) async fn write_tx_unchecked<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        self.write(move |conn| {
            // `foreign_keys` cannot change inside a transaction, so it is
            // switched around it.
            inner.foreign_keys_off.store(true, Ordering::Release);
            conn.pragma_update(None, "foreign_keys", false).ctx(what)?;
            let out = immediate_tx(conn, what, f);
            // The transaction's own result is returned either way: when the
            // checks stay off, the flag has the next write switch them on.
            if conn.pragma_update(None, "foreign_keys", true).is_ok() {
                inner.foreign_keys_off.store(false, Ordering::Release);
            }
            out
        })
        .await
    }

    /// Starts a bulk load of `concern` (see [`bulk_load`]); nothing to do
    /// on a read-only store, which takes no load.
    pub(crate) async fn begin_load_of(
        &self,
        concern: runstore_core::BulkLoadOf,
        options: runstore_core::BulkLoadOptions,
    ) -> Result<()> {
        if self.inner.options.read_only {
            return Ok(());
        }
        self.write(move |conn| bulk_load::begin(conn, concern, options))
            .await
    }

    /// Ends a bulk load of `concern`: builds what it left out.
    pub(crate) async fn end_load_of(&self, concern: runstore_core::BulkLoadOf) -> Result<()> {
        if self.inner.options.read_only {
            return Ok(());
        }
        self.write(move |conn| bulk_load::ensure(conn, Some(concern)))
            .await
    }

    /// Runs `f` with a reader connection on the blocking pool, concurrently
    /// with the writer and other readers.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .inner
            .reader_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::backend("the reader pool is closed", Some(Box::new(e))))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = inner
                .idle_readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let mut conn = match idle {
                Some(c) => c,
                None => open_reader(&inner.path, &inner.options)?,
            };
            let out = f(&mut conn);
            // A connection left inside a transaction is not reused.
            if conn.is_autocommit() {
                inner
                    .idle_readers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
            out
        })
        .await
        .map_err(join_error)?
    }

    /// Runs `f` inside one read transaction of a reader, so several
    /// statements see one snapshot.
    pub(crate) async fn read_tx<T, F>(&self, what: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.read(move |conn| {
            let tx = conn.transaction().ctx(what)?;
            let out = f(&tx)?;
            tx.finish().ctx(what)?;
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runstore_core::{
        Event, ExecutionMetric, JsonMap, LogRepository, MetricsRepository, Run, RunId, RunStatus,
        RunWithEvents, Version, WorkflowId,
    };
    use rusqlite::StatementStatus;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(1_700_000_000_000_000 + secs * 1_000_000).unwrap()
    }

    fn run_with_events(id: &str, trigger: &str) -> RunWithEvents {
        let run = Run {
            id: RunId::new(id).unwrap(),
            workflow_id: WorkflowId::new("etl").unwrap(),
            workflow_version: Version::FIRST,
            status: RunStatus::Succeeded,
            trigger: trigger.into(),
            started_at: at(1),
            ended_at: Some(at(2)),
            attributes: JsonMap::new(),
            summaries: JsonMap::new(),
            external_key: None,
        };
        let events = (1..=2)
            .map(|seq| Event {
                run_id: run.id.clone(),
                seq,
                kind: "step".into(),
                at: at(1),
                payload: serde_json::json!({ "seq": seq }),
                idempotency_key: None,
            })
            .collect();
        RunWithEvents { run, events }
    }

    async fn foreign_keys(store: &SqliteStore) -> i64 {
        store
            .write(|conn| {
                conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))
                    .ctx("reading foreign_keys")
            })
            .await
            .unwrap()
    }

    /// Imports and `record_many` run with the writer's foreign-key checks
    /// off; afterwards, also after one that failed, they are on again and
    /// a child without its parent is refused.
    #[tokio::test]
    async fn bulk_writes_switch_the_writers_foreign_keys_on_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("store.db")))
            .await
            .unwrap();
        assert_eq!(foreign_keys(&store).await, 1);
        let outcome = store
            .import_runs(vec![run_with_events("r1", "manual")])
            .await
            .unwrap();
        assert_eq!(outcome.inserted, 1);
        assert_eq!(
            store
                .event_counts(&[RunId::new("r1").unwrap()])
                .await
                .unwrap(),
            vec![2]
        );
        assert_eq!(foreign_keys(&store).await, 1);
        // Another run under the same id: the import fails as a whole.
        let refused = store
            .import_runs(vec![
                run_with_events("r2", "manual"),
                run_with_events("r1", "webhook"),
            ])
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), runstore_core::ErrorKind::Conflict);
        assert!(matches!(
            store.get_run(&RunId::new("r2").unwrap()).await,
            Err(e) if e.kind() == runstore_core::ErrorKind::NotFound
        ));
        assert_eq!(foreign_keys(&store).await, 1);
        let mut values = std::collections::BTreeMap::new();
        values.insert("cost".to_string(), 1.5);
        let metric = ExecutionMetric {
            run_id: RunId::new("r1").unwrap(),
            workflow_id: WorkflowId::new("etl").unwrap(),
            workflow_version: Version::FIRST,
            status: RunStatus::Succeeded,
            duration_micros: 10,
            recorded_at: at(3),
            counters: std::collections::BTreeMap::new(),
            values,
        };
        store.record_many(vec![metric]).await.unwrap();
        assert_eq!(foreign_keys(&store).await, 1);
        let orphan = store
            .write_tx("inserting an orphan event", |tx| {
                tx.execute(
                    "INSERT INTO events (run_id, seq, kind, at, payload) VALUES ('nope', 1, 'step', 0, '{}')",
                    [],
                )
                .ctx("inserting an orphan event")
            })
            .await;
        assert!(orphan.is_err(), "a child without its parent is refused");
    }

    /// A paged query binds a new `LIMIT` on every call; the cached
    /// statement must run again without being compiled again.
    #[test]
    fn a_cached_page_query_is_not_prepared_again_for_a_new_limit() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConfig::new(dir.path().join("store.db"));
        drop(open_writer(&options.path, &options).unwrap());
        let reader = open_reader(&options.path, &options).unwrap();
        let sql = "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1";
        for limit in [1_i64, 51, 2, 51] {
            let mut stmt = reader.prepare_cached(sql).unwrap();
            let rows: Vec<String> = stmt
                .query_map([limit], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(rows.is_empty());
            assert_eq!(
                stmt.get_status(StatementStatus::RePrepare),
                0,
                "limit {limit}"
            );
        }
    }
}
