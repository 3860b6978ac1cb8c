//! Low-level file work shared by the four concerns: confined paths (no
//! symbolic link is ever followed under the root), advisory locks, whole-line
//! appends with torn-tail repair, atomic replacement, and group commit.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runstore_core::{Error, Result};

use crate::Durability;

/// Mode of every file the backend creates: no world access at all.
pub(crate) const FILE_MODE: u32 = 0o640;
/// Mode of every folder the backend creates.
pub(crate) const DIR_MODE: u32 = 0o750;

/// Locks a std mutex, recovering from poisoning: every holder leaves the
/// cached state consistent (or marked for reload) before it can panic.
pub(crate) fn lock_mutex<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn io_err(what: impl std::fmt::Display, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

fn symlink_err(path: &Path) -> Error {
    Error::corrupt(
        path.display().to_string(),
        "is a symbolic link; runstore never follows links inside its root",
    )
}

/// The root folder; every path the backend touches is built here from
/// validated names, one component at a time.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    pub(crate) dir: PathBuf,
    /// Whether a new folder's entry is fsynced in its parent (every
    /// durability level but `None`).
    pub(crate) sync_new_dirs: bool,
    /// Opened read-only: every exclusive lock, which every write takes, is
    /// refused, so no write gets as far as the files.
    pub(crate) read_only: bool,
}

impl Root {
    /// `root/parts…`, checking that no existing component is a symbolic link
    /// (so a planted link cannot lead a read or write outside the root).
    pub(crate) fn path(&self, parts: &[&str]) -> Result<PathBuf> {
        let mut p = self.dir.clone();
        let mut exists = true;
        for part in parts {
            debug_assert!(!part.is_empty() && *part != "." && *part != ".." && !part.contains('/'));
            p.push(part);
            if exists {
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.file_type().is_symlink() => return Err(symlink_err(&p)),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => exists = false,
                    Err(e) => return Err(io_err("inspecting", &p, e)),
                }
            }
        }
        Ok(p)
    }

    /// Like [`Root::path`] for a regular file, also giving its metadata
    /// (`None` if it does not exist) from the same walk, so the file's
    /// identity and length cost no further `stat`. Something other than a
    /// regular file there is [`Error::Corrupt`], as in
    /// [`regular_file_meta`].
    pub(crate) fn file(&self, parts: &[&str]) -> Result<(PathBuf, Option<fs::Metadata>)> {
        let mut p = self.dir.clone();
        for (i, part) in parts.iter().enumerate() {
            debug_assert!(!part.is_empty() && *part != "." && *part != ".." && !part.contains('/'));
            p.push(part);
            let m = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    p.extend(&parts[i + 1..]);
                    return Ok((p, None));
                }
                Err(e) => return Err(io_err("inspecting", &p, e)),
            };
            if m.file_type().is_symlink() {
                return Err(symlink_err(&p));
            }
            if i + 1 == parts.len() {
                if !m.is_file() {
                    return Err(Error::corrupt(
                        p.display().to_string(),
                        "is not a regular file",
                    ));
                }
                return Ok((p, Some(m)));
            }
        }
        Ok((p, None))
    }

    /// Like [`Root::path`] for a folder, creating missing levels (mode 0750).
    /// An existing non-folder in the way is a [`Error::Conflict`].
    pub(crate) fn dir(&self, parts: &[&str]) -> Result<PathBuf> {
        let mut p = self.dir.clone();
        for part in parts {
            p.push(part);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => return Err(symlink_err(&p)),
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::conflict(format!(
                        "{} is a file, a folder is needed there",
                        p.display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(DIR_MODE).create(&p) {
                        // A new folder survives a power loss only once its
                        // parent's entry does: without this, an acknowledged
                        // write in a new run's folder could vanish with it.
                        Ok(()) if self.sync_new_dirs => {
                            if let Some(parent) = p.parent() {
                                sync_dir(parent)?;
                            }
                        }
                        Ok(()) => {}
                        // Another process made it meanwhile.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io_err("creating folder", &p, e)),
                    }
                }
                Err(e) => return Err(io_err("inspecting", &p, e)),
            }
        }
        Ok(p)
    }
}

/// Whether `path` exists as a regular file; a link there is an error.
pub(crate) fn regular_file_exists(path: &Path) -> Result<bool> {
    Ok(regular_file_meta(path)?.is_some())
}

/// The metadata of the regular file at `path` (identity and length in one
/// `stat`, so a cache can be checked without opening the file), `None` if
/// there is none; a link there is an error.
/// The backend never makes a second name for a file: one with more than one
/// link may be a hard link to a file outside the root, and is never
/// written through.
pub(crate) fn refuse_hard_links(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if meta.nlink() > 1 {
        return Err(Error::corrupt(
            path.display().to_string(),
            format!(
                "has {} hard links, and the file backend never makes any: another name could lead outside the root, so it is not written through (see `runstore check`)",
                meta.nlink()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn regular_file_meta(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(symlink_err(path)),
        Ok(m) if m.is_file() => Ok(Some(m)),
        Ok(_) => Err(Error::corrupt(
            path.display().to_string(),
            "is not a regular file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("inspecting", path, e)),
    }
}

/// Opens a file for reading if it exists (checked for links by the caller
/// through [`Root::path`]; checked again here for the last component).
pub(crate) fn open_read(path: &Path) -> Result<Option<File>> {
    if !regular_file_exists(path)? {
        return Ok(None);
    }
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("opening", path, e)),
    }
}

/// An advisory lock held on `root/locks/<name>`; released when dropped
/// (closing the file releases it). Each guard opens its own file handle, so
/// threads of one process exclude each other just as processes do.
#[derive(Debug)]
pub(crate) struct LockGuard {
    _file: File,
}

pub(crate) fn take_lock(root: &Root, name: &str, exclusive: bool) -> Result<LockGuard> {
    if exclusive && root.read_only {
        return Err(runstore_core::Error::invalid(
            "store",
            format!(
                "the file store at {} was opened read-only; it takes no writes",
                root.dir.display()
            ),
        ));
    }
    let path = root.path(&["locks", name])?;
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
    };
    // The folder exists after open; make it only when it went missing.
    let file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            root.dir(&["locks"])?;
            open()
        }
        other => other,
    }
    .map_err(|e| io_err("opening lock file", &path, e))?;
    let res = if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    };
    res.map_err(|e| io_err("locking", &path, e))?;
    Ok(LockGuard { _file: file })
}

/// Identity of a file, to notice that it was replaced rather than appended:
/// device, inode and (where the file system records it) birth time, so a
/// deleted and re-created file that reuses an inode number is noticed too.
pub(crate) type FileId = (u64, u64, u128);

pub(crate) fn file_id(meta: &fs::Metadata) -> FileId {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (meta.dev(), meta.ino(), born)
}

/// Complete lines read from an offset on.
pub(crate) struct ReadLines {
    /// The bytes read: every line is a slice of them, so a replay of
    /// millions of lines allocates per chunk, not per line.
    buf: Vec<u8>,
    /// Each non-empty line's offset in the file and its bytes in `buf`,
    /// without the newline.
    spans: Vec<(u64, std::ops::Range<usize>)>,
    /// Offset just after the last complete line.
    pub(crate) end: u64,
    /// Bytes after `end` without a final newline (a torn tail, if no writer
    /// is active, which holds under any of our locks).
    pub(crate) torn: u64,
}

impl ReadLines {
    /// `(offset, line)` of each non-empty complete line, in file order; a
    /// line that is not UTF-8 comes back as `Err(())`.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (u64, std::result::Result<&str, ()>)> {
        self.spans.iter().map(|(off, r)| {
            (
                *off,
                std::str::from_utf8(&self.buf[r.clone()]).map_err(|_| ()),
            )
        })
    }

    /// How many lines [`Self::lines`] yields.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.spans.len()
    }
}

/// Reads every complete line of `file` from `from` on.
pub(crate) fn read_lines(file: &mut File, path: &Path, from: u64) -> Result<ReadLines> {
    let (read, _) = read_line_chunk(file, path, from, u64::MAX)?;
    Ok(read)
}

/// Bytes a replay reads at a time, so that memory does not grow with the
/// journal (a longer line is still read whole).
pub(crate) const REPLAY_CHUNK: u64 = 1 << 20;

/// Reads the complete lines of `file` from `from` on, about `max` bytes of
/// them (at least one whole line if there is one). Returns them and whether
/// the read reached the end of the file; `torn` counts only there.
pub(crate) fn read_line_chunk(
    file: &mut File,
    path: &Path,
    from: u64,
    max: u64,
) -> Result<(ReadLines, bool)> {
    file.seek(SeekFrom::Start(from))
        .map_err(|e| io_err("seeking in", path, e))?;
    // Room for a small file up front: reading into an empty buffer would
    // grow it (and call `read`) several times for a few kilobytes.
    let mut buf = Vec::with_capacity(usize::try_from(max.min(64 << 10)).unwrap_or(64 << 10));
    let mut at_eof = false;
    // Read `max` bytes, then more until a newline or the end.
    let mut want = max;
    loop {
        let before = buf.len();
        (&mut *file)
            .take(want)
            .read_to_end(&mut buf)
            .map_err(|e| io_err("reading", path, e))?;
        if ((buf.len() - before) as u64) < want {
            at_eof = true;
            break;
        }
        if buf[before..].contains(&b'\n') {
            break;
        }
        want = want.min(1 << 20);
    }
    let mut spans = Vec::new();
    let mut start = 0usize;
    for (i, b) in buf.iter().enumerate() {
        if *b == b'\n' {
            if i > start {
                spans.push((from + start as u64, start..i));
            }
            start = i + 1;
        }
    }
    let torn = if at_eof {
        (buf.len() - start) as u64
    } else {
        0
    };
    Ok((
        ReadLines {
            buf,
            spans,
            end: from + start as u64,
            torn,
        },
        at_eof,
    ))
}

/// Cuts everything after the last newline of `file` (a line torn by a
/// crash). Returns how many bytes were cut. Caller holds the exclusive lock.
pub(crate) fn cut_torn_tail(file: &File, path: &Path) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file
        .metadata()
        .map_err(|e| io_err("inspecting", path, e))?
        .len();
    let mut pos = len;
    let mut chunk = vec![0u8; 64 * 1024];
    let keep = loop {
        if pos == 0 {
            break 0;
        }
        let n = chunk.len().min(pos as usize);
        let start = pos - n as u64;
        file.read_exact_at(&mut chunk[..n], start)
            .map_err(|e| io_err("reading", path, e))?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        pos = start;
    };
    if keep < len {
        file.set_len(keep)
            .map_err(|e| io_err("truncating", path, e))?;
        file.sync_all().map_err(|e| io_err("syncing", path, e))?;
        tracing::warn!(file = %path.display(), bytes = len - keep, "cut a torn last line left by a crash");
    }
    Ok(len - keep)
}

/// Fsyncs a folder so that a rename or a new file in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| io_err("opening folder", dir, e))?;
    f.sync_all().map_err(|e| io_err("syncing folder", dir, e))
}

/// Makes files just written in `dir`, and their names, durable. On Linux
/// one `syncfs` of the file system does it for any number of files (a
/// batch of a thousand new events files costs one flush, not a thousand);
/// elsewhere each file is fsynced, then the folder.
pub(crate) fn sync_new_files(dir: &Path, files: Vec<File>) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        drop(files);
        let d = File::open(dir).map_err(|e| io_err("opening folder", dir, e))?;
        rustix::fs::syncfs(&d).map_err(|e| io_err("syncing the file system of", dir, e.into()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        for f in files {
            f.sync_all()
                .map_err(|e| io_err("fsync of a file in", dir, e))?;
        }
        sync_dir(dir)
    }
}

/// What must still be fsynced after the lock is released (group commit).
#[derive(Debug)]
pub(crate) struct SyncTicket {
    file: File,
    id: FileId,
    end: u64,
}

impl SyncTicket {
    /// A ticket for `file` (identity `id`) written up to `end`.
    pub(crate) fn new(file: File, id: FileId, end: u64) -> SyncTicket {
        SyncTicket { file, id, end }
    }
}

/// Group commit: per file, how far it is known to be fsynced. Appenders
/// that wrote before an fsync started share it.
#[derive(Debug, Default)]
pub(crate) struct Syncer {
    files: Mutex<HashMap<FileId, SyncedUpTo>>,
}

/// Bytes of one file known to be fsynced; held while an fsync runs.
type SyncedUpTo = Arc<Mutex<u64>>;

impl Syncer {
    pub(crate) fn sync(&self, ticket: SyncTicket) -> Result<()> {
        let slot = lock_mutex(&self.files)
            .entry(ticket.id)
            .or_default()
            .clone();
        let mut synced = lock_mutex(&slot);
        if *synced >= ticket.end {
            return Ok(());
        }
        let len = ticket
            .file
            .metadata()
            .map_err(|e| Error::io("inspecting a log file before fsync", e))?
            .len();
        ticket
            .file
            .sync_data()
            .map_err(|e| Error::io("fsync of a log file", e))?;
        *synced = len.max(ticket.end);
        Ok(())
    }

    /// Forgets a file whose length went down (a cut torn tail).
    pub(crate) fn forget(&self, id: FileId) {
        lock_mutex(&self.files).remove(&id);
    }
}

/// Appends `bytes` (whole lines) to the file at `path`, creating it (and
/// fsyncing its folder) if needed, after cutting a torn tail left by a
/// crash. The caller holds the exclusive lock of the concern. With
/// [`Durability::Fsync`] the data is fsynced before returning; with
/// [`Durability::GroupCommit`] a ticket is returned for [`Syncer::sync`]
/// once the lock is released.
pub(crate) fn append(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
    syncer: &Syncer,
) -> Result<(Option<SyncTicket>, u64)> {
    debug_assert!(bytes.ends_with(b"\n"));
    let existed = regular_file_exists(path)?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| io_err("opening for append", path, e))?;
    let meta = file.metadata().map_err(|e| io_err("inspecting", path, e))?;
    refuse_hard_links(path, &meta)?;
    let id = file_id(&meta);
    let mut cut = 0;
    if meta.len() > 0 {
        use std::os::unix::fs::FileExt;
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, meta.len() - 1)
            .map_err(|e| io_err("reading", path, e))?;
        if last[0] != b'\n' {
            cut = cut_torn_tail(&file, path)?;
            syncer.forget(id);
        }
    }
    file.write_all(bytes)
        .map_err(|e| io_err("appending to", path, e))?;
    let end = file
        .metadata()
        .map_err(|e| io_err("inspecting", path, e))?
        .len();
    if !existed
        && durability != Durability::None
        && let Some(parent) = path.parent()
    {
        sync_dir(parent)?;
    }
    let ticket = match durability {
        Durability::Fsync => {
            file.sync_data().map_err(|e| io_err("fsync of", path, e))?;
            None
        }
        Durability::GroupCommit => Some(SyncTicket::new(file, id, end)),
        Durability::None => None,
    };
    Ok((ticket, cut))
}

/// Replaces (or creates) `dir/name` atomically: temp file in the same
/// folder, write, fsync, rename, fsync of the folder.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durability: Durability,
) -> Result<()> {
    write_atomic_with(dir, name, durability, |w| {
        w.write_all(bytes)
            .map_err(|e| io_err("writing a temp file in", dir, e))
    })
}

/// [`write_atomic`] with the content streamed by `fill` (through a buffer),
/// so that a large file is never held in memory.
pub(crate) fn write_atomic_with(
    dir: &Path,
    name: &str,
    durability: Durability,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| io_err("creating a temp file in", dir, e))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| io_err("setting permissions of", tmp.path(), e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    fill(&mut w)?;
    let tmp = w
        .into_inner()
        .map_err(|e| io_err("writing a temp file in", dir, e.into_error()))?;
    if durability != Durability::None {
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_err("fsync of", tmp.path(), e))?;
    }
    let dest = dir.join(name);
    if fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_symlink() || m.is_dir()) {
        return Err(symlink_err(&dest));
    }
    tmp.persist(&dest)
        .map_err(|e| io_err("renaming a temp file to", &dest, e.error))?;
    if durability != Durability::None {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes a file if it exists; fsyncs its folder.
pub(crate) fn remove_file(path: &Path, durability: Durability) -> Result<bool> {
    if !regular_file_exists(path)? {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("removing", path, e)),
    }
    if durability != Durability::None
        && let Some(parent) = path.parent()
    {
        sync_dir(parent)?;
    }
    Ok(true)
}

/// Names in a folder (not following links), sorted bytewise; empty if the
/// folder does not exist.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, fs::FileType)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let ft = entry.file_type().map_err(|e| io_err("listing", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, ft));
        }
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tails_longer_than_a_read_chunk_are_cut_at_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.ndjson");
        let mut bytes = b"{\"a\":1}\n{\"b\":2}\n".to_vec();
        let keep = bytes.len() as u64;
        bytes.extend(vec![b'x'; 200_000]);
        fs::write(&path, &bytes).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert_eq!(cut_torn_tail(&f, &path).unwrap(), 200_000);
        assert_eq!(fs::metadata(&path).unwrap().len(), keep);
        // Nothing to cut the second time; a file of one torn line is emptied.
        assert_eq!(cut_torn_tail(&f, &path).unwrap(), 0);
        fs::write(&path, b"no newline at all").unwrap();
        assert_eq!(cut_torn_tail(&f, &path).unwrap(), 17);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn append_repairs_a_torn_tail_and_read_lines_reports_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.ndjson");
        fs::write(&path, b"one\ntw").unwrap();
        let mut f = File::open(&path).unwrap();
        let read = read_lines(&mut f, &path, 0).unwrap();
        assert_eq!(read.count(), 1);
        assert_eq!((read.end, read.torn), (4, 2));
        let syncer = Syncer::default();
        let (_, cut) = append(&path, b"two\n", Durability::Fsync, &syncer).unwrap();
        assert_eq!(cut, 2);
        assert_eq!(fs::read(&path).unwrap(), b"one\ntwo\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o002, 0, "no world write");
    }

    #[test]
    fn root_paths_refuse_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("logs")).unwrap();
        let root = Root {
            dir: dir.path().to_path_buf(),
            sync_new_dirs: true,
            read_only: false,
        };
        assert_eq!(
            root.path(&["logs", "x"]).unwrap_err().kind(),
            runstore_core::ErrorKind::Corrupt
        );
        assert!(root.dir(&["logs", "events"]).is_err());
        assert!(root.file(&["logs", "x"]).is_err());
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
        // `file` gives the metadata of a regular file, `None` if missing.
        fs::create_dir(dir.path().join("real")).unwrap();
        fs::write(dir.path().join("real/f"), b"abc\n").unwrap();
        let (p, meta) = root.file(&["real", "f"]).unwrap();
        assert_eq!(
            (p, meta.map(|m| m.len())),
            (dir.path().join("real/f"), Some(4))
        );
        let (p, meta) = root.file(&["none", "f"]).unwrap();
        assert_eq!(p, dir.path().join("none/f"));
        assert!(meta.is_none());
        assert!(root.file(&["real"]).is_err(), "a folder is not a file");
        let made = root.dir(&["fresh", "deeper"]).unwrap();
        let mode = fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "no world access");
    }
}
