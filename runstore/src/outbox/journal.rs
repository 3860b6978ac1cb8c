//! The outbox folder on disk: `journal.ndjson` (deferred writes, one JSON
//! line each, in the order they were acknowledged), `rejected.ndjson`
//! (writes the backend refused for good at drain time, with the reason) and
//! `remaps.ndjson` (deferred runs whose external key turned out, at drain
//! time, to belong to another run: their writes go to that run),
//! `journal.head` (where the entries not yet drained start) and
//! `outbox.lock`. Every change holds the exclusive lock, so processes may
//! share one folder; a line is acknowledged only after `fsync`, and a torn
//! last line (a crash mid-append, never acknowledged) is cut before the
//! next append so it cannot swallow the next entry.
//!
//! A drain stores the journal's first entries, so it moves the head past
//! them (one small file replaced) instead of rewriting the journal; the
//! journal is rewritten without its drained part only once that part is at
//! least as long as the rest, or is all of it. A long outage's journal is
//! so drained in time and bytes written proportional to its length, not to
//! its square. The head names the last drained entry's line and id, and
//! counts only while that line is still there: after a rewrite, or if the
//! file is lost, the head is the journal's start, and the drain replays
//! entries it had stored (every replay is idempotent) rather than skip one
//! it had not.

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
const HEAD: &str = "journal.head";

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

/// Identity and length of the journal, and identity of its head file, to
/// notice changes cheaply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub ino: u64,
    pub dev: u64,
    pub len: u64,
    /// Modification time in nanoseconds: an inode number reused by the
    /// next replacement of the journal, at the same length, still differs.
    pub mtime_ns: i128,
    /// The head file's inode and modification time (zero when missing):
    /// it is replaced whenever a drain moves the head.
    pub head: (u64, i128),
}

/// What a reader of the journal has seen: the file, where its pending
/// entries started, and where the entries read end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub ino: u64,
    pub dev: u64,
    pub head: u64,
    pub end: u64,
}

/// A change [`Journal::sync`] reports to a reader.
pub(crate) enum Change<'a> {
    /// The journal was replaced: forget everything seen.
    Reset,
    /// An entry seen before was drained.
    Drained(&'a Entry),
    /// An entry not seen before.
    Added(&'a Entry),
}

/// The contents of `journal.head`: the journal's entries before byte `end`
/// are drained; `start..end` is the line of the last of them, `last` its id.
#[derive(Serialize, Deserialize)]
struct Head {
    start: u64,
    end: u64,
    last: String,
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
        let mut stamp = match fs::metadata(&path) {
            Ok(m) => stamp_of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stamp::default(),
            Err(e) => return Err(io("inspecting", &path, e)),
        };
        stamp.head = self.head_stamp()?;
        Ok(stamp)
    }

    fn head_stamp(&self) -> Result<(u64, i128)> {
        let path = self.path(HEAD);
        match fs::metadata(&path) {
            Ok(m) => Ok((m.ino(), mtime_ns(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
            Err(e) => Err(io("inspecting", &path, e)),
        }
    }

    /// Where the entries not yet drained start in `file`, the open journal
    /// of `len` bytes (the caller holds the lock): the head file's `end` if
    /// the line it names is there with the id it names, else 0.
    fn pending_start(&self, file: &mut File, len: u64) -> Result<u64> {
        let path = self.path(HEAD);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("reading", &path, e)),
        };
        let Ok(head) = serde_json::from_slice::<Head>(&bytes) else {
            tracing::warn!(file = %path.display(), "ignored an unreadable outbox head; the drain starts at the journal's start");
            return Ok(0);
        };
        if head.start >= head.end || head.end > len {
            return Ok(0);
        }
        // Bounded by the journal's length, checked above.
        let mut line = Vec::new();
        file.seek(SeekFrom::Start(head.start))
            .and_then(|_| {
                Read::by_ref(file)
                    .take(head.end - head.start)
                    .read_to_end(&mut line)
            })
            .map_err(|e| io("reading", &self.path(JOURNAL), e))?;
        let names_it = line.ends_with(b"\n")
            && serde_json::from_slice::<IdOnly>(&line).is_ok_and(|e| e.entry == head.last);
        Ok(if names_it { head.end } else { 0 })
    }

    /// Opens the journal (the caller holds the lock): the file, its length
    /// and where its pending entries start; `None` when there is none.
    fn open_pending(&self) -> Result<Option<(File, fs::Metadata, u64)>> {
        let path = self.path(JOURNAL);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("opening", &path, e)),
        };
        let meta = file.metadata().map_err(|e| io("inspecting", &path, e))?;
        let head = self.pending_start(&mut file, meta.len())?;
        Ok(Some((file, meta, head)))
    }

    /// Appends `entries` durably: acknowledged once this returns. Returns
    /// the journal's length before the append and its stamp after, so a
    /// reader that had seen everything up to there need not read the
    /// entries back.
    pub fn append(&self, entries: &[Entry]) -> Result<(u64, Stamp)> {
        let bytes = ndjson(entries, "encoding an outbox entry")?;
        let _lock = self.lock(true)?;
        let (before, mut after) = append_synced(&self.path(JOURNAL), &bytes)?;
        after.head = self.head_stamp()?;
        Ok((before, after))
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

    /// Brings a reader that has seen `seen` up to the journal, under one
    /// lock: `each` hears of a replaced journal, of the entries drained
    /// since, and of the entries appended since (whole lines only,
    /// streamed; unreadable lines are skipped with a warning). Returns what
    /// the reader has now seen.
    pub fn sync(&self, seen: Seen, mut each: impl FnMut(Change<'_>)) -> Result<Seen> {
        let _lock = self.lock(false)?;
        let Some((mut file, meta, head)) = self.open_pending()? else {
            if seen != Seen::default() {
                each(Change::Reset);
            }
            return Ok(Seen::default());
        };
        let path = self.path(JOURNAL);
        let mut now = seen;
        if (meta.ino(), meta.dev()) != (seen.ino, seen.dev)
            || meta.len() < seen.end
            || head < seen.head
        {
            each(Change::Reset);
            now = Seen {
                ino: meta.ino(),
                dev: meta.dev(),
                head,
                end: head,
            };
        } else if head > seen.head {
            let upto = head.min(seen.end);
            each_entry(&mut file, &path, seen.head, upto, |e| {
                each(Change::Drained(e))
            })?;
            now.head = head;
            now.end = seen.end.max(head);
        }
        now.end = each_entry(&mut file, &path, now.end, meta.len(), |e| {
            each(Change::Added(e))
        })?;
        Ok(now)
    }

    /// The first `max` entries not yet drained (whole lines only), read
    /// line by line, so a long outage's journal is never all in memory.
    pub fn read_head(&self, max: usize) -> Result<Vec<Entry>> {
        use std::io::BufRead;
        let path = self.path(JOURNAL);
        let _lock = self.lock(false)?;
        let Some((mut file, _, head)) = self.open_pending()? else {
            return Ok(Vec::new());
        };
        file.seek(SeekFrom::Start(head))
            .map_err(|e| io("reading", &path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let mut out = Vec::new();
        let mut line = Vec::new();
        let mut offset = head;
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

    /// Removes the drained entries `done`, given in journal order (a drain
    /// stores a prefix of what [`Journal::read_head`] gave it). They are
    /// the first pending entries, so the head moves past them; the journal
    /// is rewritten only when its drained part is at least as long as the
    /// rest. Entries of `done` not at the head were removed already (by
    /// another process draining the folder), unless an unreadable line
    /// stands between them: then the journal is rewritten without them,
    /// keeping that line.
    pub fn remove(&self, done: &[String]) -> Result<()> {
        use std::io::BufRead;
        if done.is_empty() {
            return Ok(());
        }
        let done: HashSet<&str> = done.iter().map(String::as_str).collect();
        let path = self.path(JOURNAL);
        let _lock = self.lock(true)?;
        let Some((mut file, meta, head)) = self.open_pending()? else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(head))
            .map_err(|e| io("reading", &path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        let (mut at, mut found, mut last) = (head, 0, None);
        let blocked = loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io("reading", &path, e))?;
            if n == 0 || !line.ends_with(b"\n") {
                break false;
            }
            match serde_json::from_slice::<IdOnly>(&line) {
                Ok(e) if done.contains(e.entry.as_str()) => {
                    last = Some(Head {
                        start: at,
                        end: at + n as u64,
                        last: e.entry,
                    });
                    at += n as u64;
                    found += 1;
                }
                Ok(_) => break false,
                Err(_) => break true,
            }
        };
        if blocked && found < done.len() {
            reader
                .seek(SeekFrom::Start(head))
                .map_err(|e| io("reading", &path, e))?;
            return self.rewrite(reader, |id| id.is_some_and(|id| done.contains(id)));
        }
        let Some(last) = last else {
            return Ok(());
        };
        // Drained part at least as long as the rest: copy the rest into a
        // new journal, so rewrites copy no more than was drained.
        if last.end >= meta.len() - last.end {
            reader
                .seek(SeekFrom::Start(last.end))
                .map_err(|e| io("reading", &path, e))?;
            return self.rewrite(reader, |_| false);
        }
        let bytes = serde_json::to_vec(&last)
            .map_err(|e| Error::backend("encoding the outbox head", Some(Box::new(e))))?;
        replace_synced(&self.dir, &self.path(HEAD), &bytes)
    }

    /// Replaces the journal (the caller holds the exclusive lock) with the
    /// lines `reader` has left, leaving out those whose entry id `leave_out`
    /// says so (the id is `None` for an unreadable line) and a torn tail;
    /// the head file goes with the old journal. Streamed: the rest of a
    /// long outage's journal is copied line by line, never held in memory.
    fn rewrite(
        &self,
        mut reader: impl std::io::BufRead,
        leave_out: impl Fn(Option<&str>) -> bool,
    ) -> Result<()> {
        let (path, tmp) = (self.path(JOURNAL), self.path(".journal.tmp"));
        let mut out =
            std::io::BufWriter::new(File::create(&tmp).map_err(|e| io("creating", &tmp, e))?);
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
            let id = serde_json::from_slice::<IdOnly>(&line).ok();
            if leave_out(id.as_ref().map(|e| e.entry.as_str())) {
                continue;
            }
            out.write_all(&line).map_err(|e| io("writing", &tmp, e))?;
        }
        let f = out
            .into_inner()
            .map_err(|e| io("writing", &tmp, e.into_error()))?;
        f.sync_data().map_err(|e| io("fsync of", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io("replacing", &path, e))?;
        // A head left behind names a line the new journal does not hold,
        // so it would count as the start anyway; removed for tidiness.
        let head = self.path(HEAD);
        match fs::remove_file(&head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &head, e)),
        }
        sync_dir(&self.dir)
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
        mtime_ns: mtime_ns(m),
        head: (0, 0),
    }
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync of", dir, e))
}

/// Replaces the file at `path` with `bytes` durably: written to a
/// temporary file, synced, renamed over it, the folder synced.
fn replace_synced(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io("writing", &tmp, e))?;
    f.sync_data().map_err(|e| io("fsync of", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("replacing", path, e))?;
    sync_dir(dir)
}

/// Calls `each` with the entries of the whole lines of `file` from byte
/// `from` up to byte `to`, streamed; returns the offset they end at.
/// Unreadable lines are skipped with a warning.
fn each_entry(
    file: &mut File,
    path: &Path,
    from: u64,
    to: u64,
    mut each: impl FnMut(&Entry),
) -> Result<u64> {
    use std::io::BufRead;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| io("reading", path, e))?;
    let mut reader = std::io::BufReader::new(Read::by_ref(file).take(to.saturating_sub(from)));
    let mut line = Vec::new();
    let mut offset = from;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io("reading", path, e))?;
        if n == 0 || !line.ends_with(b"\n") {
            return Ok(offset);
        }
        for e in parse_lines(&line, path, offset) {
            each(&e);
        }
        offset += n as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, run: &str) -> Entry {
        Entry {
            entry: id.to_string(),
            at: Timestamp::from_micros(1_000_000).unwrap(),
            op: Op::UpdateStatus {
                run_id: RunId::new(run).unwrap(),
                status: RunStatus::Running,
                ended_at: None,
                summaries: None,
            },
        }
    }

    fn ids(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.entry.as_str()).collect()
    }

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:02}")).collect()
    }

    /// Ten entries of equal length, `e00` to `e09`.
    fn journal_of_ten() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let all: Vec<Entry> = names("e", 10).iter().map(|id| entry(id, "r")).collect();
        j.append(&all).unwrap();
        (dir, j)
    }

    #[test]
    fn a_drained_prefix_moves_the_head_and_a_long_one_rewrites_the_journal() {
        let (dir, j) = journal_of_ten();
        let before = j.stamp().unwrap();
        j.remove(&names("e", 3)).unwrap();
        let after = j.stamp().unwrap();
        // Same file, same length: only the head moved.
        assert_eq!((after.ino, after.len), (before.ino, before.len));
        assert_ne!(after.head, (0, 0));
        assert_eq!(ids(&j.read_head(100).unwrap())[..2], ["e03", "e04"]);
        assert_eq!(j.read_head(100).unwrap().len(), 7);
        // Five of ten drained: the drained half is copied away.
        j.remove(&names("e", 5)[3..]).unwrap();
        let compacted = j.stamp().unwrap();
        assert_ne!(compacted.ino, before.ino);
        assert_eq!(compacted.len, before.len / 2);
        assert_eq!(
            compacted.head,
            (0, 0),
            "the head file goes with the rewrite"
        );
        assert_eq!(ids(&j.read_head(1).unwrap()), ["e05"]);
        // All drained: an empty journal.
        j.remove(&names("e", 10)[5..]).unwrap();
        assert_eq!(j.stamp().unwrap().len, 0);
        assert!(j.read_head(100).unwrap().is_empty());
        assert!(!dir.path().join(HEAD).exists());
    }

    #[test]
    fn entries_drained_already_by_another_drainer_are_skipped() {
        let (_dir, j) = journal_of_ten();
        j.remove(&names("e", 2)).unwrap();
        // A second drainer read e00..e03 before the first removed e00, e01.
        j.remove(&names("e", 4)).unwrap();
        assert_eq!(ids(&j.read_head(1).unwrap()), ["e04"]);
        // A drainer that stored only what is gone already changes nothing.
        let stamp = j.stamp().unwrap();
        j.remove(&names("e", 3)).unwrap();
        assert_eq!(j.stamp().unwrap(), stamp);
        assert_eq!(j.read_head(100).unwrap().len(), 6);
    }

    #[test]
    fn a_head_that_does_not_name_its_line_counts_as_the_start() {
        let (dir, j) = journal_of_ten();
        j.remove(&names("e", 2)).unwrap();
        let head: Head = serde_json::from_slice(&fs::read(dir.path().join(HEAD)).unwrap()).unwrap();
        assert_eq!(head.last, "e01");
        for bad in [
            b"not json".to_vec(),
            serde_json::to_vec(&Head {
                last: "e07".into(),
                ..head
            })
            .unwrap(),
            serde_json::to_vec(&Head {
                start: 1,
                end: 5,
                last: "e01".into(),
            })
            .unwrap(),
            serde_json::to_vec(&Head {
                start: 0,
                end: u64::MAX,
                last: "e01".into(),
            })
            .unwrap(),
        ] {
            fs::write(dir.path().join(HEAD), &bad).unwrap();
            // Replayed again rather than skipped: every replay is idempotent.
            assert_eq!(
                j.read_head(100).unwrap().len(),
                10,
                "{}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    /// The states a crash can leave between the steps of a drain's
    /// removal: a head file written but not renamed, a rewritten journal
    /// not yet renamed, a rewritten journal renamed with the old head still
    /// there. None of them skips an entry not drained.
    #[test]
    fn a_crash_between_the_steps_of_a_removal_skips_nothing() {
        let (dir, j) = journal_of_ten();
        j.remove(&names("e", 2)).unwrap();
        // A head move that did not reach its rename.
        fs::write(
            dir.path().join("journal.tmp"),
            b"{\"start\":0,\"end\":9,\"last\":\"x\"}",
        )
        .unwrap();
        assert_eq!(ids(&j.read_head(1).unwrap()), ["e02"]);
        // A rewrite that did not reach its rename.
        fs::write(dir.path().join(".journal.tmp"), b"{\"entry\":\"e09\"").unwrap();
        assert_eq!(j.read_head(100).unwrap().len(), 8);
        // A rewrite renamed, the old head left behind.
        let old_head = fs::read(dir.path().join(HEAD)).unwrap();
        j.remove(&names("e", 6)).unwrap();
        assert!(!dir.path().join(HEAD).exists());
        fs::write(dir.path().join(HEAD), &old_head).unwrap();
        assert_eq!(
            ids(&j.read_head(100).unwrap()),
            ["e06", "e07", "e08", "e09"]
        );
        // And the next removal goes on from there.
        j.remove(&names("e", 7)).unwrap();
        assert_eq!(ids(&j.read_head(100).unwrap()), ["e07", "e08", "e09"]);
    }

    #[test]
    fn drained_entries_past_an_unreadable_line_are_removed_and_the_line_kept() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.append(&[entry("a", "r")]).unwrap();
        let path = dir.path().join(JOURNAL);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"garbage\": true}\n").unwrap();
        drop(f);
        j.append(&[entry("b", "r"), entry("c", "r")]).unwrap();
        // read_head skips the unreadable line, so a drain stores a and b.
        assert_eq!(ids(&j.read_head(2).unwrap()), ["a", "b"]);
        j.remove(&["a".to_string(), "b".to_string()]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"garbage\": true}\n"), "{text}");
        assert_eq!(ids(&j.read_head(100).unwrap()), ["c"]);
    }

    fn changes_since(j: &Journal, seen: Seen) -> (Vec<String>, Seen) {
        let mut changes = Vec::new();
        let seen = j
            .sync(seen, |c| {
                changes.push(match c {
                    Change::Reset => "reset".to_string(),
                    Change::Drained(e) => format!("-{}", e.entry),
                    Change::Added(e) => format!("+{}", e.entry),
                })
            })
            .unwrap();
        (changes, seen)
    }

    #[test]
    fn sync_reports_drained_and_appended_entries_then_a_replacement() {
        let (_dir, j) = journal_of_ten();
        let (changes, seen) = changes_since(&j, Seen::default());
        assert_eq!(changes.len(), 11);
        assert_eq!(changes[..2], ["reset", "+e00"]);
        j.remove(&names("e", 2)).unwrap();
        j.append(&[entry("f", "r")]).unwrap();
        let (changes, seen) = changes_since(&j, seen);
        assert_eq!(changes, ["-e00", "-e01", "+f"]);
        // Drained past the half: the journal is rewritten, the reader reset.
        j.remove(&names("e", 8)).unwrap();
        let (changes, _) = changes_since(&j, seen);
        assert_eq!(changes, ["reset", "+e08", "+e09", "+f"]);
    }
}
