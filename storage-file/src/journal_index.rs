//! The on-disk indexes of the two large journals: `index/runs.sqlite` for
//! `logs/runs.ndjson` and `index/metrics.sqlite` for
//! `metrics/metrics.ndjson` (FORMAT.md). Each is an SQLite file derived
//! from its journal, which stays the only record. The index says which
//! journal file it was built from (identity), how many bytes of it it
//! covers, and a fingerprint of their last 4 KiB; it is brought up to date
//! by replaying only the lines after that, and rebuilt (and reported) when
//! it is missing, stale or unreadable. Memory is SQLite's page cache,
//! whatever the number of records, and a process opening the root reads
//! nothing but the index's pages it needs.
//!
//! Any process may bring an index up to date, under either lock of the
//! journal's concern: the journal cannot change while the lock is held, so
//! concurrent catch-ups compute the same rows, and SQLite's write lock
//! (`BEGIN IMMEDIATE`, with the cover re-read inside) lets one of them do
//! it. A root opened read-only never writes, not even the files SQLite keeps
//! beside an index it reads: the process builds a private index of its own
//! in a temporary folder.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use runstore_core::{Error, Result, Sha256Digest};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::de::DeserializeOwned;

use crate::fsutil::{self, FileId, file_id, lock_mutex};
use crate::{Durability, FindingKind, Inner};

/// How many bytes of the journal the cover fingerprints.
const TAIL_PRINT: u64 = 4096;

/// SQLite's page cache per index connection (KiB): what bounds memory.
const CACHE_KIB: i64 = 8 * 1024;

/// How long a process waits for another one's catch-up (a rebuild of a
/// million records takes seconds).
const BUSY_TIMEOUT: Duration = Duration::from_secs(600);

/// The cover table: which journal bytes the index holds.
const COVER_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cover (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    journal_dev INTEGER NOT NULL, journal_ino INTEGER NOT NULL, journal_born TEXT NOT NULL,
    covered INTEGER NOT NULL, tail_sha256 TEXT NOT NULL,
    rewrites INTEGER NOT NULL DEFAULT 0);";

/// A journal with an on-disk index: where both live and how a line changes
/// the index.
pub(crate) trait Indexed {
    /// One journal line.
    type Line: DeserializeOwned;
    /// The index file under the root (folder, name).
    const DB: [&'static str; 2];
    /// The journal under the root (folder, name).
    const JOURNAL: [&'static str; 2];
    /// What a line holds, for reports ("run record").
    const WHAT: &'static str;
    /// Tables and indexes, created if missing.
    const SCHEMA: &'static str;
    /// Empties the tables before a rebuild.
    const CLEAR: &'static str;
    /// Drops what only served the old journal, after a compaction.
    const COMPACTED: &'static str;
    /// Applies one line (starting at byte `offset` of the journal) inside
    /// the catch-up transaction. `Ok(Err(why))`
    /// refuses the line, which is reported and skipped; `Ok(Ok(true))`
    /// says the line replaced or removed a record in a way a follower of
    /// the journal cannot apply from the line alone (see
    /// [`Cover::rewrites`]).
    fn apply(
        conn: &Connection,
        offset: u64,
        line: Self::Line,
    ) -> Result<std::result::Result<bool, String>>;
}

/// Which journal bytes an index holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cover {
    pub(crate) journal: FileId,
    pub(crate) covered: u64,
    tail_sha256: String,
    /// Bumped by every line that a follower replaying the journal cannot
    /// apply on its own, and by every rebuild: a follower that saw another
    /// count starts over from the index.
    pub(crate) rewrites: i64,
}

/// The index connection of one journal in this process.
#[derive(Default)]
pub(crate) struct IndexSlot {
    db: Option<IndexDb>,
}

struct IndexDb {
    conn: Connection,
    /// The shared index file's identity when opened (another file at the
    /// path means the folder was swapped, by a restore); `None` for a
    /// private index.
    file: Option<FileId>,
    /// The journal whose fingerprint this process checked.
    checked: Option<FileId>,
    /// The journal (identity, length) this process last found the index up
    /// to date with: while the journal is unchanged, so is the index (no
    /// record changes without a line), and a refresh costs one `stat`.
    current: Option<(FileId, u64)>,
    /// Keys found stored while the journal is at `current` (see
    /// [`IndexGuard::known`]).
    known: HashSet<String>,
    /// Keeps a private index's folder until the connection is dropped.
    _private: Option<tempfile::TempDir>,
}

/// The index connection, up to date with the journal under the caller's
/// lock.
pub(crate) struct IndexGuard<'a> {
    guard: MutexGuard<'a, IndexSlot>,
}

impl Deref for IndexGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // `refresh` returns a guard only with the connection open.
        &self.db().conn
    }
}

impl IndexGuard<'_> {
    fn db(&self) -> &IndexDb {
        self.guard
            .db
            .as_ref()
            .expect("an IndexGuard always holds an open index")
    }

    /// Keys (run ids) this process found stored since the journal last
    /// changed: a steady appender to one run looks it up once.
    pub(crate) fn known(&mut self) -> &mut HashSet<String> {
        &mut self.db_mut().known
    }

    fn db_mut(&mut self) -> &mut IndexDb {
        // `refresh` returns a guard only with the index open.
        self.guard
            .db
            .as_mut()
            .expect("an IndexGuard always holds an open index")
    }

    /// What the index covers now.
    pub(crate) fn cover(&self) -> Result<Option<Cover>> {
        read_cover(&self.db().conn)
    }

    /// Records that the journal was replaced by a compaction with the same
    /// records: the rows stay, the cover moves to the new file. The caller
    /// holds the exclusive lock.
    pub(crate) fn moved_to<J: Indexed>(&mut self, file: &File, path: &Path) -> Result<()> {
        let meta = file
            .metadata()
            .map_err(|e| fsutil::io_err("inspecting", path, e))?;
        let (id, len) = (file_id(&meta), meta.len());
        let tail = tail_print(file, path, len)?;
        let db = self.db_mut();
        let rewrites = read_cover(&db.conn)?.map_or(0, |c| c.rewrites);
        db.conn
            .execute_batch(J::COMPACTED)
            .sql("tidying the index after a compaction")?;
        write_cover(
            &db.conn,
            &Cover {
                journal: id,
                covered: len,
                tail_sha256: tail,
                rewrites,
            },
        )?;
        db.checked = Some(id);
        db.current = Some((id, len));
        db.known.clear();
        // The journal shrank; so does the index: its free pages and its
        // write-ahead log go back to the file system.
        if db.file.is_some() {
            db.conn
                .execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
                .sql("shrinking the index")?;
        }
        Ok(())
    }
}

/// Maps an SQLite error of the index by result code.
pub(crate) fn sql_err(what: &str, path: &Path, err: rusqlite::Error) -> Error {
    let what = format!("{what} ({})", path.display());
    match &err {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::unavailable(
                format!("{what}: the index is locked by another process"),
                Some(Box::new(err)),
            ),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                Error::corrupt(path.display().to_string(), format!("{what}: {err}"))
            }
            // A full disk, like any other I/O failure of the backend, is
            // not retryable (README, "Errors and faults").
            _ => Error::backend(what, Some(Box::new(err))),
        },
        _ => Error::backend(what, Some(Box::new(err))),
    }
}

/// `sql_err` for the index files, whose path the message names.
pub(crate) trait SqlCtx<T> {
    fn sql(self, what: &str) -> Result<T>;
}

impl<T> SqlCtx<T> for rusqlite::Result<T> {
    fn sql(self, what: &str) -> Result<T> {
        self.map_err(|e| sql_err(what, Path::new("the journal index"), e))
    }
}

fn is_unreadable(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

/// SHA-256 of journal bytes `[len - 4096, len)`.
fn tail_print(file: &File, path: &Path, len: u64) -> Result<String> {
    use std::os::unix::fs::FileExt;
    let start = len.saturating_sub(TAIL_PRINT);
    let mut buf = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut buf, start)
        .map_err(|e| fsutil::io_err("reading", path, e))?;
    Ok(Sha256Digest::of(&buf).to_hex())
}

fn read_cover(conn: &Connection) -> Result<Option<Cover>> {
    conn.prepare_cached(
        "SELECT journal_dev, journal_ino, journal_born, covered, tail_sha256, rewrites
         FROM cover WHERE only = 1",
    )
    .and_then(|mut s| {
        s.query_row([], |r| {
            let born: String = r.get(2)?;
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                born,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()
    })
    .sql("reading the cover of the index")
    .map(|row| {
        row.and_then(|(dev, ino, born, covered, tail, rewrites)| {
            Some(Cover {
                // Stored as the bits of the u64 identity.
                journal: (dev as u64, ino as u64, born.parse().ok()?),
                covered: u64::try_from(covered).ok()?,
                tail_sha256: tail,
                rewrites,
            })
        })
    })
}

fn write_cover(conn: &Connection, c: &Cover) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO cover
         (only, journal_dev, journal_ino, journal_born, covered, tail_sha256, rewrites)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.journal.0 as i64,
            c.journal.1 as i64,
            c.journal.2.to_string(),
            i64::try_from(c.covered).unwrap_or(i64::MAX),
            c.tail_sha256,
            c.rewrites
        ])
    })
    .sql("writing the cover of the index")?;
    Ok(())
}

fn configure(conn: &Connection, durability: Durability, private: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // Without it, SQLite re-prepares a cached statement each time its
    // `LIMIT ?` is bound again (a page of metrics is one such query).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    if private {
        conn.pragma_update(None, "journal_mode", "OFF")?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        return Ok(());
    }
    // Pages freed by deletes go back to the file system at a compaction
    // (set before the first table, a no-op afterwards).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // WAL with NORMAL: a commit does not fsync, and a power loss can only
    // lose the last commits, which the journal replays; never corrupt.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = if durability == Durability::None {
        "OFF"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)
}

/// The layout of the index files (`PRAGMA user_version`); an index of
/// another layout is rebuilt.
const INDEX_LAYOUT: i64 = 1;

/// Creates the tables of an empty index; `Ok(false)` for an index of
/// another layout, which the caller replaces.
fn create_tables<J: Indexed>(conn: &Connection) -> rusqlite::Result<bool> {
    let layout: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if layout != 0 && layout != INDEX_LAYOUT {
        return Ok(false);
    }
    conn.execute_batch(COVER_SCHEMA)?;
    conn.execute_batch(J::SCHEMA)?;
    conn.pragma_update(None, "user_version", INDEX_LAYOUT)?;
    Ok(true)
}

/// Opens the shared index file, creating it (mode 0640) if missing.
fn open_shared<J: Indexed>(inner: &Inner) -> Result<IndexDb> {
    inner.root.dir(&J::DB[..1])?;
    let (path, meta) = inner.root.file(&J::DB)?;
    if meta.is_none() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsutil::FILE_MODE)
            .open(&path)
            .map_err(|e| fsutil::io_err("creating", &path, e))?;
    }
    let (path, Some(meta)) = inner.root.file(&J::DB)? else {
        return Err(Error::backend(
            format!("{} vanished as it was created", path.display()),
            None,
        ));
    };
    let opened = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|conn| {
        configure(&conn, inner.durability, false)?;
        let ours = create_tables::<J>(&conn)?;
        Ok((conn, ours))
    });
    let why = match opened {
        Ok((conn, true)) => {
            return Ok(IndexDb {
                conn,
                file: Some(file_id(&meta)),
                checked: None,
                current: None,
                known: HashSet::new(),
                _private: None,
            });
        }
        Ok((_, false)) => "it has another layout".to_string(),
        Err(e) if is_unreadable(&e) => format!("it is unreadable: {e}"),
        Err(e) => return Err(sql_err("opening the index", &path, e)),
    };
    // The index is derived: it is removed and built again from the journal.
    inner.report(
        FindingKind::StaleIndex,
        &path,
        0,
        format!("the index was replaced ({why}); rebuilt from its journal"),
        true,
    );
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        fsutil::remove_file(&p, Durability::None)?;
    }
    open_shared::<J>(inner)
}

/// A private index in a temporary folder, for a read-only root.
fn open_private<J: Indexed>() -> Result<IndexDb> {
    let dir = tempfile::TempDir::new()
        .map_err(|e| Error::io("creating a temporary folder for a private index", e))?;
    let path = dir.path().join("index.sqlite");
    let conn = Connection::open(&path)
        .and_then(|conn| {
            configure(&conn, Durability::None, true)?;
            create_tables::<J>(&conn)?;
            Ok(conn)
        })
        .map_err(|e| sql_err("creating a private index", &path, e))?;
    Ok(IndexDb {
        conn,
        file: None,
        checked: None,
        current: None,
        known: HashSet::new(),
        _private: Some(dir),
    })
}

/// The index of `J` brought up to date with its journal (see the module
/// doc). The caller holds the concern's lock, exclusive if `exclusive`;
/// under it a torn last line is cut.
pub(crate) fn refresh<'a, J: Indexed>(
    inner: &Inner,
    slot: &'a Mutex<IndexSlot>,
    exclusive: bool,
) -> Result<IndexGuard<'a>> {
    let mut guard = lock_mutex(slot);
    let (jpath, jmeta) = inner.root.file(&J::JOURNAL)?;
    let journal = jmeta.as_ref().map(|m| (file_id(m), m.len()));
    if let Some(db) = &guard.db
        && journal.is_some()
        && db.current == journal
    {
        return Ok(IndexGuard { guard });
    }
    // A shared index replaced under us (a restore swapped the folder) is
    // reopened.
    if let Some(db) = &guard.db
        && let Some(was) = db.file
    {
        let (_, now) = inner.root.file(&J::DB)?;
        if now.map(|m| file_id(&m)) != Some(was) {
            guard.db = None;
        }
    }
    if guard.db.is_none() {
        guard.db = Some(if inner.root.read_only {
            open_private::<J>()?
        } else {
            open_shared::<J>(inner)?
        });
    }
    let db = guard.db.as_mut().expect("opened above");
    db.known.clear();
    db.current = None;
    let cover = read_cover(&db.conn)?;
    // The fast path: one `stat` of each file and one row read.
    if let (Some((id, len)), Some(c)) = (journal, &cover)
        && c.journal == id
        && c.covered == len
        && db.checked == Some(id)
    {
        db.current = journal;
        return Ok(IndexGuard { guard });
    }
    let covered = catch_up::<J>(inner, db, &jpath, exclusive)?;
    // A torn tail (cut only under the exclusive lock) leaves the index
    // short of the journal: the next refresh looks again.
    if journal.is_some_and(|(_, len)| Some(len) == covered) {
        db.current = journal;
    }
    Ok(IndexGuard { guard })
}

/// Replays the journal into the index, from the cover on or, for a
/// missing or stale index, from the start; in one write transaction.
fn catch_up<J: Indexed>(
    inner: &Inner,
    db: &mut IndexDb,
    jpath: &Path,
    exclusive: bool,
) -> Result<Option<u64>> {
    let ipath = inner.root.path(&J::DB)?;
    let tx = db
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_err("starting to update the index", &ipath, e))?;
    // Re-read inside the write lock: another process may have caught up.
    let cover = read_cover(&tx)?;
    let Some(mut file) = fsutil::open_read(jpath)? else {
        // No journal: no records.
        if cover.is_some() {
            tx.execute_batch(J::CLEAR)
                .and_then(|()| tx.execute("DELETE FROM cover", []))
                .map_err(|e| sql_err("emptying the index", &ipath, e))?;
        }
        tx.commit()
            .map_err(|e| sql_err("updating the index", &ipath, e))?;
        db.checked = None;
        return Ok(None);
    };
    let meta = file
        .metadata()
        .map_err(|e| fsutil::io_err("inspecting", jpath, e))?;
    let (id, len) = (file_id(&meta), meta.len());
    let stale: Option<Option<String>> = match &cover {
        None => Some(None),
        Some(c) if c.journal != id => Some(Some("was made from another journal file".into())),
        Some(c) if c.covered > len => Some(Some(format!(
            "covers {} journal bytes, the journal has {len}",
            c.covered
        ))),
        Some(c)
            if db.checked != Some(id) && tail_print(&file, jpath, c.covered)? != c.tail_sha256 =>
        {
            Some(Some("was made from another journal".into()))
        }
        Some(_) => None,
    };
    let (from, mut rewrites) = match (stale, &cover) {
        (None, Some(c)) => (c.covered, c.rewrites),
        (why, _) => {
            if len > 0 {
                let (kind, detail) = match why.flatten() {
                    None => (
                        FindingKind::MissingIndex,
                        format!(
                            "the index {} is missing; rebuilt from {}",
                            J::DB.join("/"),
                            J::JOURNAL.join("/")
                        ),
                    ),
                    Some(w) => (
                        FindingKind::StaleIndex,
                        format!(
                            "the index {} is stale ({w}); rebuilt from {}",
                            J::DB.join("/"),
                            J::JOURNAL.join("/")
                        ),
                    ),
                };
                inner.report(kind, &ipath, 0, detail, true);
            }
            tx.execute_batch(J::CLEAR)
                .map_err(|e| sql_err("emptying the index", &ipath, e))?;
            (0, cover.as_ref().map_or(0, |c| c.rewrites) + 1)
        }
    };
    let end = inner.replay_into(
        &mut file,
        jpath,
        from,
        exclusive.then_some(id),
        J::WHAT,
        |offset, line: J::Line| {
            Ok(J::apply(&tx, offset, line)?.map(|rewrote| {
                if rewrote {
                    rewrites += 1;
                }
            }))
        },
    )?;
    let cover_now = Cover {
        journal: id,
        covered: end,
        tail_sha256: tail_print(&file, jpath, end)?,
        rewrites,
    };
    if cover.as_ref() != Some(&cover_now) {
        write_cover(&tx, &cover_now)?;
    }
    tx.commit()
        .map_err(|e| sql_err("updating the index", &ipath, e))?;
    db.checked = Some(id);
    Ok(Some(end))
}

/// Runs `sql` (its first column a record as JSON, which the index stores as
/// the journal line held it) and hands each row's record to `f` until `f`
/// returns `false`. `index` names the file in a `Corrupt` error.
pub(crate) fn each_record<T: DeserializeOwned>(
    conn: &Connection,
    index: &str,
    sql: &str,
    params: impl rusqlite::Params,
    what: &str,
    mut f: impl FnMut(T) -> Result<bool>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql).sql(what)?;
    let mut rows = stmt.query(params).sql(what)?;
    while let Some(row) = rows.next().sql(what)? {
        let json: String = row.get(0).sql(what)?;
        if !f(decode_record(index, &json)?)? {
            break;
        }
    }
    Ok(())
}

/// A record the index stores as JSON; one that does not parse is
/// `Corrupt`, naming the index (which can be deleted and rebuilt).
pub(crate) fn decode_record<T: DeserializeOwned>(index: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| {
        Error::corrupt(
            index,
            format!("a record does not parse ({e}); delete the index to rebuild it"),
        )
    })
}

/// The sum of `sql`'s single integer (the bytes a compaction would write).
pub(crate) fn sum_of(conn: &Connection, sql: &str) -> Result<u64> {
    let n: i64 = conn
        .query_row(sql, [], |r| r.get(0))
        .sql("measuring the live records")?;
    Ok(n.max(0) as u64)
}

/// Forgets this process's index connection, so the next access opens the
/// index afresh and checks it against its journal as a new process would.
pub(crate) fn reload(slot: &Mutex<IndexSlot>) {
    lock_mutex(slot).db = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// An index query binds a new `LIMIT` on every page; the cached
    /// statement must run again without being compiled again.
    #[test]
    fn a_cached_page_query_is_not_prepared_again_for_a_new_limit() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("index.sqlite")).unwrap();
        configure(&conn, Durability::None, false).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
        for limit in [1_i64, 3, 2] {
            let mut stmt = conn
                .prepare_cached("SELECT k FROM t ORDER BY k LIMIT ?1")
                .unwrap();
            let rows: Vec<i64> = stmt
                .query_map([limit], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(rows.len() as i64, limit);
            assert_eq!(
                stmt.get_status(StatementStatus::RePrepare),
                0,
                "limit {limit}"
            );
        }
    }
}
