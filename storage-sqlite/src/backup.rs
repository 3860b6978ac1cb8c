//! Online backup, restore and integrity checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runstore_core::{Error, Result};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::Ctx;
use crate::schema;

/// What [`crate::SqliteStore::backup_to`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// Database pages copied.
    pub pages: u64,
    /// Size of the backup file in bytes.
    pub bytes: u64,
    /// Schema version of the copied database.
    pub schema_version: u32,
}

/// `PRAGMA integrity_check`: empty when sound.
pub(crate) fn integrity_check(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .ctx("running integrity_check")?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .ctx("running integrity_check")?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(Vec::new())
    } else {
        Ok(lines)
    }
}

fn require_sound(conn: &Connection, what: &str) -> Result<()> {
    let problems = integrity_check(conn)?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::corrupt(
        what.to_string(),
        format!(
            "integrity_check found {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        ),
    ))
}

/// A temp file name beside `dest`.
fn temp_beside(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::invalid("dest", format!("{} names no file", dest.display())))?;
    let mut tmp = name.to_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    Ok(dest.with_file_name(tmp))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Copies every page of `src` into the fresh database at `tmp`, checks it,
/// and renames it to `dest` (then syncs the folder).
fn copy_checked(src: &Connection, tmp: &Path, dest: &Path) -> Result<u64> {
    remove_if_exists(tmp)?;
    let pages = {
        let mut dst = Connection::open(tmp).ctx(&format!("creating {}", tmp.display()))?;
        // The copy is a standalone file: no WAL beside it.
        dst.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
            .ctx("preparing the backup file")?;
        let pages = {
            let backup = Backup::new(src, &mut dst).ctx("starting the backup")?;
            // -1: every page in one step, under one read snapshot of the
            // source; in WAL mode that never blocks the source's writers.
            loop {
                match backup.step(-1).ctx("copying pages")? {
                    StepResult::Done => break,
                    StepResult::More | StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            backup.progress().pagecount
        };
        require_sound(&dst, &format!("backup copy {}", tmp.display()))?;
        dst.close()
            .map_err(|(_, e)| crate::error::map("closing the backup file", e))?;
        pages
    };
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
    std::fs::rename(tmp, dest)
        .map_err(|e| Error::io(format!("moving {} to {}", tmp.display(), dest.display()), e))?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("syncing the folder {}", dir.display()), e))?;
    }
    Ok(u64::try_from(pages).unwrap_or(0))
}

/// Online backup of the database behind `src` to `dest`.
pub(crate) fn backup(src: &Connection, dest: &Path) -> Result<BackupReport> {
    require_sound(src, "the database being backed up")?;
    let schema_version = schema::current_version(src)?;
    let tmp = temp_beside(dest)?;
    let pages = match copy_checked(src, &tmp, dest) {
        Ok(p) => p,
        Err(e) => {
            let _ = remove_if_exists(&tmp);
            return Err(e);
        }
    };
    let bytes = std::fs::metadata(dest)
        .map_err(|e| Error::io(format!("reading the size of {}", dest.display()), e))?
        .len();
    Ok(BackupReport {
        path: dest.to_path_buf(),
        pages,
        bytes,
        schema_version,
    })
}

/// Whether another connection has `dest` open: try to take it exclusively
/// without waiting. `Ok(None)` when the file cannot be read as a database
/// at all (a damaged file is what a restore replaces).
fn probe_dest(dest: &Path) -> Result<Option<u32>> {
    let conn = match Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_WRITE) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    conn.busy_timeout(Duration::ZERO)
        .ctx("probing the restore target")?;
    let version = match schema::current_version(&conn) {
        Ok(v) => Some(v),
        Err(e) if e.kind() == runstore_core::ErrorKind::Corrupt => None,
        Err(e) => return Err(e),
    };
    // Exclusive locking mode makes the next write transaction take (and
    // keep) an exclusive lock on the file itself, even in WAL mode, which
    // fails at once while any other connection has it open.
    let in_use = conn
        .pragma_update(None, "locking_mode", "EXCLUSIVE")
        .and_then(|()| conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;"));
    if let Err(e) = in_use {
        let mapped = crate::error::map("locking the restore target", e);
        if mapped.kind() == runstore_core::ErrorKind::Unavailable {
            return Err(Error::conflict(format!(
                "{} is open by another connection or process; close it before restoring over it",
                dest.display()
            )));
        }
        if mapped.kind() != runstore_core::ErrorKind::Corrupt {
            return Err(mapped);
        }
    }
    Ok(version)
}

/// Restores `backup` to `dest`.
pub(crate) fn restore(backup: &Path, dest: &Path) -> Result<()> {
    if !backup.is_file() {
        return Err(Error::not_found(format!(
            "backup file {}",
            backup.display()
        )));
    }
    let src = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ctx(&format!("opening the backup {}", backup.display()))?;
    let backup_version = schema::refuse_newer(&src, &format!("backup {}", backup.display()))?;
    require_sound(&src, &format!("backup {}", backup.display()))?;
    if dest.exists()
        && let Some(dest_version) = probe_dest(dest)?
        && dest_version > backup_version
    {
        return Err(Error::conflict(format!(
            "{} has schema version {dest_version}, newer than the backup's {backup_version}; refusing to roll it back",
            dest.display()
        )));
    }
    if let Some(parent) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating the folder {}", parent.display()), e))?;
    }
    let tmp = temp_beside(dest)?;
    if let Err(e) = copy_checked(&src, &tmp, dest) {
        let _ = remove_if_exists(&tmp);
        return Err(e);
    }
    // A WAL left by the replaced file belongs to it, not to the restored one.
    remove_if_exists(&sidecar(dest, "-wal"))?;
    remove_if_exists(&sidecar(dest, "-shm"))?;
    Ok(())
}

/// Puts the database `staged` (a restored copy beside `dest`) in place of
/// `dest`, keeping the replaced database as `aside` (with its WAL, folded
/// in first when it can be). Nothing happens when `staged` is gone (the
/// swap already happened), so it can be run again after a crash; the one
/// rename that replaces `dest` is atomic.
pub(crate) fn swap_in(staged: &Path, dest: &Path, aside: &Path) -> Result<()> {
    if !staged.exists() {
        return Ok(());
    }
    // The staged copy travels as one file: anything a connection left in
    // its WAL goes into it first.
    if sidecar(staged, "-wal").exists() {
        let conn = Connection::open(staged).ctx(&format!("opening {}", staged.display()))?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .ctx("folding the restored copy's WAL in")?;
        conn.close()
            .map_err(|(_, e)| crate::error::map("closing the restored copy", e))?;
    }
    remove_if_exists(&sidecar(staged, "-wal"))?;
    remove_if_exists(&sidecar(staged, "-shm"))?;
    if dest.exists() {
        // Refuses (Conflict) while another connection has it open.
        let sound = probe_dest(dest)?.is_some();
        if sound && let Ok(conn) = Connection::open(dest) {
            // A failure leaves the WAL beside it; it is copied aside below.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        if !aside.exists() {
            std::fs::hard_link(dest, aside).map_err(|e| {
                Error::io(
                    format!("keeping {} as {}", dest.display(), aside.display()),
                    e,
                )
            })?;
        }
        for suffix in ["-wal", "-shm"] {
            let from = sidecar(dest, suffix);
            let to = sidecar(aside, suffix);
            if from.exists() && !to.exists() {
                std::fs::copy(&from, &to).map_err(|e| {
                    Error::io(format!("keeping {} as {}", from.display(), to.display()), e)
                })?;
            }
        }
    }
    // The WAL of the replaced database must not meet the restored one.
    remove_if_exists(&sidecar(dest, "-wal"))?;
    remove_if_exists(&sidecar(dest, "-shm"))?;
    std::fs::rename(staged, dest).map_err(|e| {
        Error::io(
            format!("moving {} to {}", staged.display(), dest.display()),
            e,
        )
    })?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("syncing the folder {}", dir.display()), e))?;
    }
    Ok(())
}

/// `integrity_check` of the database file at `path`, opened read-only:
/// empty when sound. A file that cannot be read as a database is
/// [`Error::Corrupt`].
pub(crate) fn check_file(path: &Path) -> Result<Vec<String>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ctx(&format!("opening {}", path.display()))?;
    integrity_check(&conn)
}
