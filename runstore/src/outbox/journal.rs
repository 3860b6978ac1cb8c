//! The outbox folder on disk: `journal.ndjson` (deferred writes, one JSON
//! line each, in the order they were acknowledged), `rejected.ndjson`
//! (writes the backend refused for good at drain time, with the reason) and
//! `remaps.ndjson` (deferred runs whose external key turned out, at drain
//! time, to belong to another run: their writes go to that run), and
//! `outbox.lock`. Every change holds the exclusive lock, so processes may
//! share one folder; a line is acknowledged only after `fsync`, and a torn
//! last line (a crash mid-append, never acknowledged) is cut before the
//! next append so it cannot swallow the next entry.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runstore_core::{
    Error, ExecutionMetric, JsonMap, NewEvent, Result, Run, RunId, RunStatus, RunUpdate, Timestamp,
};
use serde::{Deserialize, Serialize};

const JOURNAL: &str = "journal.ndjson";
const REJECTED: &str = "rejected.ndjson";
const LOCK: &str = "outbox.lock";
const REMAPS: &str = "remaps.ndjson";

/// One deferred write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// A unique id (UUIDv7), so a drain can remove exactly what it stored.
    pub entry: String,
    /// When it was deferred.
    pub at: Timestamp,
    /// The write.
    #[serde(flatten)]
    pub op: Op,
}

/// The deferred write itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    CreateRun {
        run: Run,
    },
    UpdateStatus {
        run_id: RunId,
        status: RunStatus,
        #[serde(default)]
        ended_at: Option<Timestamp>,
        #[serde(default)]
        summaries: Option<JsonMap>,
    },
    AppendEvents {
        run_id: RunId,
        events: Vec<NewEvent>,
    },
    RecordMetrics {
        metrics: Vec<ExecutionMetric>,
    },
}

impl Op {
    /// The runs whose logs this write touches.
    pub fn log_run(&self) -> Option<&RunId> {
        match self {
            Op::CreateRun { run } => Some(&run.id),
            Op::UpdateStatus { run_id, .. } | Op::AppendEvents { run_id, .. } => Some(run_id),
            Op::RecordMetrics { .. } => None,
        }
    }

    /// The runs whose metrics this write touches.
    pub fn metric_runs(&self) -> impl Iterator<Item = &RunId> {
        let metrics: &[ExecutionMetric] = match self {
            Op::RecordMetrics { metrics } => metrics,
            _ => &[],
        };
        metrics.iter().map(|m| &m.run_id)
    }

    /// `update_status`'s update, for replay.
    pub fn update(
        status: RunStatus,
        ended_at: Option<Timestamp>,
        summaries: Option<JsonMap>,
    ) -> RunUpdate {
        let mut u = RunUpdate::running();
        u.status = status;
        u.ended_at = ended_at;
        u.summaries = summaries;
        u
    }
}

/// Identity and length of the journal, to notice changes cheaply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub ino: u64,
    pub dev: u64,
    pub len: u64,
    /// Modification time in nanoseconds: an inode number reused by the
    /// next replacement of the journal, at the same length, still differs.
    pub mtime_ns: i128,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

/// The outbox folder.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    dir: PathBuf,
    /// The lock file, opened once. The mutex orders this process's threads
    /// (a file lock does not: it belongs to the open file, which they
    /// share); the file lock orders processes.
    lock_file: Arc<Mutex<File>>,
}

/// Holds the folder's lock while alive.
struct Locked<'a> {
    file: std::sync::MutexGuard<'a, File>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; it stays open for reuse.
        let _ = self.file.unlock();
    }
}

impl Journal {
    /// The folder `dir`, created (with its parents) if missing.
    pub fn open(dir: &Path) -> Result<Journal> {
        fs::create_dir_all(dir).map_err(|e| io("creating the outbox folder", dir, e))?;
        let meta = fs::symlink_metadata(dir).map_err(|e| io("inspecting", dir, e))?;
        if !meta.is_dir() {
            return Err(Error::invalid(
                "outbox.path",
                format!("{} is not a folder", dir.display()),
            ));
        }
        let path = dir.join(LOCK);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening", &path, e))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            lock_file: Arc::new(Mutex::new(lock_file)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn lock(&self, exclusive: bool) -> Result<Locked<'_>> {
        let file = self.lock_file.lock().unwrap_or_else(|p| p.into_inner());
        let r = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        r.map_err(|e| io("locking", &self.path(LOCK), e))?;
        Ok(Locked { file })
    }

    /// The journal's identity and length now (zero when missing).
    pub fn stamp(&self) -> Result<Stamp> {
        let path = self.path(JOURNAL);
        match fs::metadata(&path) {
            Ok(m) => Ok(stamp_of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stamp::default()),
            Err(e) => Err(io("inspecting", &path, e)),
        }
    }

    /// Appends `entries` durably: acknowledged once this returns. Returns
    /// the journal's length before the append and its stamp after, so a
    /// reader that had seen everything up to there need not read the
    /// entries back.
    pub fn append(&self, entries: &[Entry]) -> Result<(u64, Stamp)> {
        let bytes = ndjson(entries, "encoding an outbox entry")?;
        let _lock = self.lock(true)?;
        append_synced(&self.path(JOURNAL), &bytes)
    }

    /// Records durably that writes naming run `from` go to run `to`.
    pub fn append_remap(&self, from: &RunId, to: &RunId) -> Result<()> {
        let bytes = ndjson(
            &[Remap {
                from: from.clone(),
                to: to.clone(),
            }],
            "encoding an outbox remap",
        )?;
        let _lock = self.lock(true)?;
        append_synced(&self.path(REMAPS), &bytes).map(drop)
    }

    /// The length of the remaps file now (zero when missing), to tell
    /// whether [`Journal::read_remaps`] would find anything new.
    pub fn remaps_len(&self) -> Result<u64> {
        let path = self.path(REMAPS);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io("inspecting", &path, e)),
        }
    }

    /// Every remap, in the order found, and the length read. Unreadable
    /// lines (a torn tail) are skipped.
    pub fn read_remaps(&self) -> Result<(Vec<(RunId, RunId)>, u64)> {
        let path = self.path(REMAPS);
        let _lock = self.lock(false)?;
        let text = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(io("reading", &path, e)),
        };
        let remaps = text
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<Remap>(line).ok())
            .map(|r| (r.from, r.to))
            .collect();
        Ok((remaps, text.len() as u64))
    }

    /// Calls `each` with every entry from byte `from` on (whole lines
    /// only, streamed) and returns the offset they end at. Unreadable lines
    /// are skipped with a warning.
    pub fn scan_from(&self, from: u64, mut each: impl FnMut(&Entry)) -> Result<u64> {
        use std::io::BufRead;
        let path = self.path(JOURNAL);
        let _lock = self.lock(false)?;
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("opening", &path, e)),
        };
        file.seek(SeekFrom::Start(from))
            .map_err(|e| io("reading", &path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        let mut offset = from;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io("reading", &path, e))?;
            if n == 0 || !line.ends_with(b"\n") {
                return Ok(offset);
            }
            for e in parse_lines(&line, &path, offset) {
                each(&e);
            }
            offset += n as u64;
        }
    }

    /// The first `max` entries (whole lines only), read line by line, so a
    /// long outage's journal is never all in memory.
    pub fn read_head(&self, max: usize) -> Result<Vec<Entry>> {
        use std::io::BufRead;
        let path = self.path(JOURNAL);
        let _lock = self.lock(false)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("opening", &path, e)),
        };
        let mut reader = std::io::BufReader::new(file);
        let mut out = Vec::new();
        let mut line = Vec::new();
        let mut offset = 0u64;
        while out.len() < max {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io("reading", &path, e))?;
            if n == 0 || !line.ends_with(b"\n") {
                break;
            }
            out.extend(parse_lines(&line, &path, offset));
            offset += n as u64;
        }
        Ok(out)
    }

    /// Removes the entries whose ids are in `done` (stored or rejected) and
    /// keeps the rest in order; the journal is replaced atomically.
    pub fn remove(&self, done: &HashSet<String>) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        use std::io::BufRead;
        let path = self.path(JOURNAL);
        let _lock = self.lock(true)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("reading", &path, e)),
        };
        // Streamed: the rest of a long outage's journal is copied line by
        // line, never held in memory.
        let tmp = self.path(".journal.tmp");
        let mut out =
            std::io::BufWriter::new(File::create(&tmp).map_err(|e| io("creating", &tmp, e))?);
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io("reading", &path, e))?;
            // The end, or a torn tail (never acknowledged).
            if n == 0 || !line.ends_with(b"\n") {
                break;
            }
            let id = serde_json::from_slice::<IdOnly>(&line)
                .ok()
                .map(|e| e.entry);
            if id.is_some_and(|id| done.contains(&id)) {
                continue;
            }
            out.write_all(&line).map_err(|e| io("writing", &tmp, e))?;
        }
        let f = out
            .into_inner()
            .map_err(|e| io("writing", &tmp, e.into_error()))?;
        f.sync_data().map_err(|e| io("fsync of", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io("replacing", &path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync of", &self.dir, e))?;
        Ok(())
    }

    /// Keeps writes the backend refused for good, with the reason.
    pub fn reject(&self, rejected: &[(Entry, String)]) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let lines: Vec<serde_json::Value> = rejected
            .iter()
            .map(|(entry, reason)| serde_json::json!({"rejected_at": now, "reason": reason, "entry": entry}))
            .collect();
        let bytes = ndjson(&lines, "encoding a rejected entry")?;
        let _lock = self.lock(true)?;
        append_synced(&self.path(REJECTED), &bytes).map(drop)
    }

    /// How many writes were rejected so far.
    pub fn rejected_count(&self) -> Result<u64> {
        let path = self.path(REJECTED);
        match fs::read(&path) {
            Ok(b) => Ok(b.iter().filter(|c| **c == b'\n').count() as u64),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io("reading", &path, e)),
        }
    }
}

/// Values as NDJSON lines.
fn ndjson<T: Serialize>(values: &[T], what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for v in values {
        serde_json::to_writer(&mut bytes, v)
            .map_err(|e| Error::backend(what, Some(Box::new(e))))?;
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// Appends `bytes` to the file at `path` (the caller holds the lock) after
/// cutting a torn tail, and fsyncs it. Returns the length before and the
/// stamp after.
fn append_synced(path: &Path, bytes: &[u8]) -> Result<(u64, Stamp)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io("opening", path, e))?;
    let before = cut_torn_tail(&mut file, path)?;
    file.write_all(bytes)
        .map_err(|e| io("appending to", path, e))?;
    file.sync_data().map_err(|e| io("fsync of", path, e))?;
    let m = file.metadata().map_err(|e| io("inspecting", path, e))?;
    Ok((before, stamp_of(&m)))
}

fn stamp_of(m: &fs::Metadata) -> Stamp {
    Stamp {
        ino: m.ino(),
        dev: m.dev(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

/// A line of `remaps.ndjson`.
#[derive(Serialize, Deserialize)]
struct Remap {
    from: RunId,
    to: RunId,
}

#[derive(Deserialize)]
struct IdOnly {
    entry: String,
}

fn parse_lines(bytes: &[u8], path: &Path, base: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut offset = base;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!(
                file = %path.display(),
                offset,
                error = %e,
                "skipped an unreadable outbox line"
            ),
        }
        offset += line.len() as u64;
    }
    out
}

/// Cuts bytes after the last newline (a crash's torn append); returns the
/// length kept.
fn cut_torn_tail(file: &mut File, path: &Path) -> Result<u64> {
    let len = file
        .metadata()
        .map_err(|e| io("inspecting", path, e))?
        .len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))
        .and_then(|_| file.read_exact(&mut last))
        .map_err(|e| io("reading", path, e))?;
    if last[0] == b'\n' {
        return Ok(len);
    }
    // Find the last newline, reading backwards in blocks.
    let mut end = len;
    let mut keep = 0;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut block[..n]))
            .map_err(|e| io("reading", path, e))?;
        if let Some(i) = block[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(file = %path.display(), cut = len - keep, "cut a torn outbox line left by a crash");
    file.set_len(keep).map_err(|e| io("truncating", path, e))?;
    file.sync_data().map_err(|e| io("fsync of", path, e))?;
    Ok(keep)
}
