//! Runs and events: `logs/runs.ndjson` (journal of run records, latest line
//! wins), `logs/events/<run_id>.ndjson` (one file per run), and the index
//! checkpoint `index/runs.ndjson`. See FORMAT.md.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use runstore_core::{
    Appended, BulkOutcome, Delivery, Error, Event, EventCursor, EventQuery, Lease, LeaseQuery,
    LeaseRequest, LogRepository, NewEvent, Page, Result, Run, RunCursor, RunFilter, RunId,
    RunQuery, RunUpdate, RunWithEvents, Sha256Digest, Timestamp, WorkflowId, Written,
    decide_run_create, external_key_conflict, external_key_of, key_not_found, run_conflict,
    run_not_found, validate_external_key, validate_limit,
};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, LockGuard, SyncTicket, file_id, lock_mutex};
use crate::{FileStore, FindingKind, Inner};

pub(crate) const LOCK: &str = "logs.lock";
const INDEX_FORMAT: u32 = 1;
/// How many bytes of the journal the index header fingerprints.
const TAIL_PRINT: u64 = 4096;
/// Cached event files kept per process before the cache is dropped.
const EVENTS_CACHE_MAX: usize = 1024;
/// Append handles kept open per process before they are all closed (well
/// below the usual limit of 1024 open files).
const HANDLES_MAX: usize = 64;

/// One line of `logs/runs.ndjson`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum RunLine {
    /// The run as it now is.
    Put { run: Run },
    /// The run was deleted.
    Delete { id: RunId },
}

/// First line of `index/runs.ndjson`.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct IndexHeader {
    index: String,
    format: u32,
    /// Journal bytes the index covers.
    journal_len: u64,
    /// SHA-256 of the last (up to) 4096 covered journal bytes.
    journal_tail_sha256: String,
    /// Runs listed.
    runs: u64,
    /// SHA-256 of every byte after the header line.
    body_sha256: String,
}

type OrderKey = (Timestamp, RunId);

/// The run table in memory, valid for the journal file `file` up to `offset`.
#[derive(Default)]
pub(crate) struct RunsState {
    file: Option<fsutil::FileId>,
    offset: u64,
    /// Journal bytes covered by the index file on disk.
    indexed: u64,
    /// The index must be rewritten at the next exclusive lock.
    index_dirty: bool,
    pub(crate) runs: HashMap<RunId, Run>,
    order: BTreeSet<OrderKey>,
    by_workflow: HashMap<WorkflowId, BTreeSet<OrderKey>>,
    /// `(workflow, external key)` to the run holding it.
    by_key: HashMap<(WorkflowId, String), RunId>,
}

impl RunsState {
    fn clear(&mut self) {
        *self = RunsState::default();
    }

    /// The index must be (re)written: it is missing or stale, or the
    /// journal outgrew it.
    fn index_due(&self) -> bool {
        let outgrown = self.offset - self.indexed > (1 << 20).max(self.indexed / 2);
        self.index_dirty || outgrown
    }

    fn put(&mut self, run: Run) {
        self.remove(&run.id.clone());
        let key = (run.started_at, run.id.clone());
        self.order.insert(key.clone());
        self.by_workflow
            .entry(run.workflow_id.clone())
            .or_default()
            .insert(key);
        if let Some((w, k)) = external_key_of(&run) {
            self.by_key
                .insert((w.clone(), k.to_owned()), run.id.clone());
        }
        self.runs.insert(run.id.clone(), run);
    }

    /// The run holding `key` of `workflow`.
    pub(crate) fn by_key(&self, workflow: &WorkflowId, key: &str) -> Option<&Run> {
        self.by_key
            .get(&(workflow.clone(), key.to_owned()))
            .and_then(|id| self.runs.get(id))
    }

    fn remove(&mut self, id: &RunId) {
        if let Some(old) = self.runs.remove(id) {
            let key = (old.started_at, old.id.clone());
            self.order.remove(&key);
            if let Some(set) = self.by_workflow.get_mut(&old.workflow_id) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_workflow.remove(&old.workflow_id);
                }
            }
            if let Some((w, k)) = external_key_of(&old) {
                let pair = (w.clone(), k.to_owned());
                if self.by_key.get(&pair) == Some(&old.id) {
                    self.by_key.remove(&pair);
                }
            }
        }
    }

    fn apply(&mut self, line: RunLine) {
        match line {
            RunLine::Put { run } => self.put(run),
            RunLine::Delete { id } => self.remove(&id),
        }
    }
}

/// A run's events in memory, valid for its file up to `offset`.
#[derive(Default)]
pub(crate) struct EventsState {
    file: Option<fsutil::FileId>,
    offset: u64,
    events: Vec<Event>,
    keys: HashMap<String, u64>,
    max_seq: u64,
}

impl EventsState {
    /// Adds the next event read from `run`'s file, or says why it does not
    /// belong there.
    fn accept(&mut self, run: &RunId, e: Event) -> std::result::Result<(), String> {
        if e.run_id != *run {
            return Err(format!("belongs to run {}", e.run_id));
        }
        if e.seq <= self.max_seq {
            return Err(format!("repeats sequence number {}", e.seq));
        }
        if let Some(k) = &e.idempotency_key {
            self.keys.entry(k.clone()).or_insert(e.seq);
        }
        self.max_seq = e.seq;
        self.events.push(e);
        Ok(())
    }
}

/// Per-run event caches, and append handles of the runs written lately.
#[derive(Default)]
pub(crate) struct EventsCache {
    runs: HashMap<RunId, EventsState>,
    /// Open append handles by run, with the identity of the file each
    /// was opened on; used only while that is still the run's file.
    handles: HashMap<RunId, (fsutil::FileId, Arc<File>)>,
}

fn journal_path(inner: &Inner) -> Result<PathBuf> {
    inner.root.dir(&["logs"])?;
    inner.root.path(&["logs", "runs.ndjson"])
}

fn events_name(run: &RunId) -> String {
    format!("{}.ndjson", run.as_str())
}

pub(crate) fn events_path(inner: &Inner, run: &RunId) -> Result<PathBuf> {
    inner.root.dir(&["logs", "events"])?;
    inner.root.path(&["logs", "events", &events_name(run)])
}

fn index_path(inner: &Inner) -> Result<PathBuf> {
    inner.root.dir(&["index"])?;
    inner.root.path(&["index", "runs.ndjson"])
}

pub(crate) fn to_line<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec(value)
        .map_err(|e| Error::backend("encoding a record as JSON", Some(e.into())))?;
    v.push(b'\n');
    Ok(v)
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

/// The runs of a usable index and the journal bytes it covers, or why it
/// is unusable: `None` if missing, `Some(why)` if stale.
type IndexLoad = std::result::Result<(u64, Vec<Run>), Option<String>>;

/// Loads the index file if it matches the journal; `Err(reason)` if it is
/// missing (`None`) or stale (`Some(why)`).
fn load_index(
    inner: &Inner,
    journal: &File,
    journal_path: &Path,
    journal_len: u64,
) -> Result<IndexLoad> {
    let path = index_path(inner)?;
    let Some(mut f) = fsutil::open_read(&path)? else {
        return Ok(Err(None));
    };
    let all = fsutil::read_lines(&mut f, &path, 0)?;
    let mut lines = all.lines.into_iter();
    let Some((_, Ok(head))) = lines.next() else {
        return Ok(Err(Some("no header line".into())));
    };
    let header: IndexHeader = match serde_json::from_str(&head) {
        Ok(h) => h,
        Err(e) => return Ok(Err(Some(format!("unreadable header: {e}")))),
    };
    if header.index != "runs" || header.format != INDEX_FORMAT {
        return Ok(Err(Some(format!("unknown index format {}", header.format))));
    }
    if header.journal_len > journal_len {
        return Ok(Err(Some(format!(
            "covers {} journal bytes, the journal has {journal_len}",
            header.journal_len
        ))));
    }
    if tail_print(journal, journal_path, header.journal_len)? != header.journal_tail_sha256 {
        return Ok(Err(Some("was made from another journal".into())));
    }
    let mut body = Vec::new();
    let mut runs = Vec::new();
    for (_, line) in lines {
        let Ok(line) = line else {
            return Ok(Err(Some("holds a line that is not UTF-8".into())));
        };
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
        match serde_json::from_str::<Run>(&line) {
            Ok(r) => runs.push(r),
            Err(e) => return Ok(Err(Some(format!("holds an unreadable run: {e}")))),
        }
    }
    if all.torn > 0 {
        return Ok(Err(Some("ends in a torn line".into())));
    }
    if Sha256Digest::of(&body).to_hex() != header.body_sha256 || runs.len() as u64 != header.runs {
        return Ok(Err(Some("its content does not match its header".into())));
    }
    Ok(Ok((header.journal_len, runs)))
}

/// Writes the index file from the state (caller holds the exclusive lock).
fn write_index(
    inner: &Inner,
    st: &mut RunsState,
    journal: &File,
    journal_path: &Path,
) -> Result<()> {
    let mut body = Vec::new();
    for (_, id) in st.order.iter().rev() {
        if let Some(run) = st.runs.get(id) {
            body.extend(to_line(run)?);
        }
    }
    let header = IndexHeader {
        index: "runs".into(),
        format: INDEX_FORMAT,
        journal_len: st.offset,
        journal_tail_sha256: tail_print(journal, journal_path, st.offset)?,
        runs: st.runs.len() as u64,
        body_sha256: Sha256Digest::of(&body).to_hex(),
    };
    let mut bytes = to_line(&header)?;
    bytes.extend(body);
    let dir = inner.root.dir(&["index"])?;
    fsutil::write_atomic(&dir, "runs.ndjson", &bytes, inner.durability)?;
    st.indexed = st.offset;
    st.index_dirty = false;
    Ok(())
}

/// Brings the run table up to date with the journal. Under the exclusive
/// lock it also cuts a torn tail and writes a missing, stale or outgrown
/// index.
pub(crate) fn refresh_runs<'a>(
    inner: &'a Inner,
    exclusive: bool,
) -> Result<std::sync::MutexGuard<'a, RunsState>> {
    let mut st = lock_mutex(&inner.runs);
    // One `stat` checks the cache (identity and length, see FORMAT.md): a
    // table that matches needs no open, unless the index is due.
    let (path, meta) = inner.root.file(&["logs", "runs.ndjson"])?;
    let Some(meta) = meta else {
        st.clear();
        return Ok(st);
    };
    if st.file == Some(file_id(&meta)) && meta.len() == st.offset && !(exclusive && st.index_due())
    {
        return Ok(st);
    }
    let Some(mut file) = fsutil::open_read(&path)? else {
        st.clear();
        return Ok(st);
    };
    let meta = file
        .metadata()
        .map_err(|e| fsutil::io_err("inspecting", &path, e))?;
    let id = file_id(&meta);
    if st.file != Some(id) || meta.len() < st.offset {
        st.clear();
        st.file = Some(id);
        match load_index(inner, &file, &path, meta.len())? {
            Ok((covered, runs)) => {
                for r in runs {
                    st.put(r);
                }
                st.offset = covered;
                st.indexed = covered;
            }
            Err(why) => {
                if meta.len() > 0 {
                    let (kind, detail) = match why {
                        None => (
                            FindingKind::MissingIndex,
                            "the run index is missing; rebuilt from logs/runs.ndjson".to_string(),
                        ),
                        Some(w) => (
                            FindingKind::StaleIndex,
                            format!("the run index is stale ({w}); rebuilt from logs/runs.ndjson"),
                        ),
                    };
                    let ipath = index_path(inner)?;
                    inner.report(kind, &ipath, 0, detail, exclusive);
                }
                st.index_dirty = true;
            }
        }
    }
    if meta.len() > st.offset {
        let from = st.offset;
        st.offset = inner.replay(
            &mut file,
            &path,
            from,
            exclusive.then_some(id),
            "run record",
            |rec: RunLine| {
                st.apply(rec);
                Ok(())
            },
        )?;
    }
    if exclusive && st.index_due() {
        write_index(inner, &mut st, &file, &path)?;
    }
    Ok(st)
}

/// A run's events cache, up to date with its file, as [`with_events`]
/// hands it out (under the logs lock and the cache mutex).
struct Events<'a> {
    st: &'a mut EventsState,
    handles: &'a mut HashMap<RunId, (fsutil::FileId, Arc<File>)>,
    path: &'a Path,
    /// The file exists, is the one `st` was read from, and ends where `st`
    /// ends (so its last line is whole): appends may skip every check.
    current: bool,
}

/// Brings a run's events up to date with its file, and runs `f` on them.
/// One `stat` of the file checks the cache (identity and length, see
/// FORMAT.md); only new bytes are read.
fn with_events<T>(
    inner: &Inner,
    run: &RunId,
    exclusive: bool,
    f: impl FnOnce(Events<'_>) -> Result<T>,
) -> Result<T> {
    let name = events_name(run);
    let (path, meta) = inner.root.file(&["logs", "events", &name])?;
    let mut guard = lock_mutex(&inner.events);
    let cache = &mut *guard;
    let Some(meta) = meta else {
        // The first append creates the file, in a folder that must exist.
        let path = events_path(inner, run)?;
        cache.runs.remove(run);
        cache.handles.remove(run);
        return f(Events {
            st: &mut EventsState::default(),
            handles: &mut cache.handles,
            path: &path,
            current: false,
        });
    };
    if exclusive {
        // Writes never go through a file with another name.
        fsutil::refuse_hard_links(&path, &meta)?;
    }
    let id = file_id(&meta);
    if cache.runs.len() >= EVENTS_CACHE_MAX && !cache.runs.contains_key(run) {
        cache.runs.clear();
    }
    let st = cache.runs.entry(run.clone()).or_default();
    if st.file != Some(id) || meta.len() < st.offset {
        *st = EventsState {
            file: Some(id),
            ..EventsState::default()
        };
    }
    if meta.len() > st.offset {
        // No writer can replace the file while we hold the logs lock, so
        // this opens the file just checked.
        let Some(mut file) = fsutil::open_read(&path)? else {
            return Err(Error::backend(
                format!("{} vanished under the logs lock", path.display()),
                None,
            ));
        };
        let (from, cut) = (st.offset, exclusive.then_some(id));
        st.offset = inner.replay(&mut file, &path, from, cut, "event", |e| st.accept(run, e))?;
    }
    let current = st.offset == meta.len();
    f(Events {
        st,
        handles: &mut cache.handles,
        path: &path,
        current,
    })
}

/// Appends numbered lines (`bytes`, holding `written`) to a run's events
/// file; the caller holds the exclusive logs lock. When the cache is
/// current, the run's kept handle writes them: one `write` and, with
/// [`crate::Durability::Fsync`], one `fdatasync`, and the cache takes the
/// events as written. Otherwise [`fsutil::append`] opens the file
/// (creating it, cutting a torn tail) and the next read picks the lines up.
fn append_numbered(
    inner: &Inner,
    run: &RunId,
    ev: Events<'_>,
    bytes: &[u8],
    written: Vec<Event>,
) -> Result<Option<SyncTicket>> {
    let handle = match ev.st.file {
        Some(id) if ev.current => appender(ev.handles, run, ev.path, id)?,
        _ => None,
    };
    let (Some(handle), Some(id)) = (handle, ev.st.file) else {
        return Ok(fsutil::append(ev.path, bytes, inner.durability, &inner.syncer)?.0);
    };
    if let Err(e) = (&*handle).write_all(bytes) {
        // A failed write may leave part of a line: forget what we know, so
        // the next access re-reads the file and cuts the torn tail.
        *ev.st = EventsState::default();
        ev.handles.remove(run);
        return Err(fsutil::io_err("appending to", ev.path, e));
    }
    ev.st.offset += bytes.len() as u64;
    if written
        .into_iter()
        .try_for_each(|e| ev.st.accept(run, e))
        .is_err()
    {
        // Cannot happen (numbered after `max_seq`); re-read to be sure.
        *ev.st = EventsState::default();
    }
    match inner.durability {
        crate::Durability::Fsync => {
            handle
                .sync_data()
                .map_err(|e| fsutil::io_err("fsync of", ev.path, e))?;
            Ok(None)
        }
        crate::Durability::GroupCommit => {
            let file = handle
                .try_clone()
                .map_err(|e| fsutil::io_err("duplicating the handle of", ev.path, e))?;
            Ok(Some(SyncTicket::new(file, id, ev.st.offset)))
        }
        crate::Durability::None => Ok(None),
    }
}

/// The kept append handle of a run's events file `id`, opening (and
/// keeping) one if needed; `None` if the file at `path` is not `id`.
fn appender(
    handles: &mut HashMap<RunId, (fsutil::FileId, Arc<File>)>,
    run: &RunId,
    path: &Path,
    id: fsutil::FileId,
) -> Result<Option<Arc<File>>> {
    if let Some((kept, h)) = handles.get(run)
        && *kept == id
    {
        return Ok(Some(h.clone()));
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| fsutil::io_err("opening for append", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| fsutil::io_err("inspecting", path, e))?;
    if file_id(&meta) != id {
        return Ok(None);
    }
    if handles.len() >= HANDLES_MAX {
        handles.clear();
    }
    let h = Arc::new(file);
    handles.insert(run.clone(), (id, h.clone()));
    Ok(Some(h))
}

pub(crate) fn forget_events(inner: &Inner, run: &RunId) {
    let mut cache = lock_mutex(&inner.events);
    cache.runs.remove(run);
    cache.handles.remove(run);
}

/// Numbers `events` after `st`, as one batch: returns what each append
/// gives, the lines to write and the events they hold.
fn number(
    run: &RunId,
    st: &EventsState,
    events: Vec<NewEvent>,
) -> Result<(Vec<Appended>, Vec<u8>, Vec<Event>)> {
    let mut keys: HashMap<String, u64> = HashMap::new();
    let mut next = st.max_seq + 1;
    let mut out = Vec::with_capacity(events.len());
    let mut bytes = Vec::new();
    let mut written = Vec::new();
    for e in events {
        if let Some(k) = &e.idempotency_key
            && let Some(&seq) = st.keys.get(k).or_else(|| keys.get(k))
        {
            out.push(Appended {
                seq,
                duplicate: true,
                deferred: false,
            });
            continue;
        }
        if let Some(k) = &e.idempotency_key {
            keys.insert(k.clone(), next);
        }
        let event = e.into_event(run.clone(), next);
        bytes.extend(to_line(&event)?);
        written.push(event);
        out.push(Appended {
            seq: next,
            duplicate: false,
            deferred: false,
        });
        next += 1;
    }
    Ok((out, bytes, written))
}

/// Open-time recovery: cut a torn journal tail, rebuild the index.
pub(crate) fn recover(inner: &Inner) -> Result<()> {
    let _g = fsutil::take_lock(&inner.root, LOCK, true)?;
    // An empty journal from the start, so that its index exists from the
    // start too, and a missing index always means a lost one.
    let path = journal_path(inner)?;
    if !fsutil::regular_file_exists(&path)? {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(fsutil::FILE_MODE)
            .open(&path)
            .map_err(|e| fsutil::io_err("creating", &path, e))?;
        if inner.durability != crate::Durability::None
            && let Some(dir) = path.parent()
        {
            fsutil::sync_dir(dir)?;
        }
    }
    // Force a fresh look at the files as this process finds them.
    lock_mutex(&inner.runs).clear();
    drop(refresh_runs(inner, true)?);
    Ok(())
}

/// Holds the logs lock and the tickets to sync after release.
pub(crate) struct Locked {
    _guard: LockGuard,
}

pub(crate) fn lock(inner: &Inner, exclusive: bool) -> Result<Locked> {
    Ok(Locked {
        _guard: fsutil::take_lock(&inner.root, LOCK, exclusive)?,
    })
}

pub(crate) fn finish<T>(
    inner: &Inner,
    locked: Locked,
    value: T,
    tickets: Vec<SyncTicket>,
) -> Result<T> {
    drop(locked);
    for t in tickets {
        inner.syncer.sync(t)?;
    }
    Ok(value)
}

pub(crate) fn append_journal(
    inner: &Inner,
    bytes: &[u8],
    tickets: &mut Vec<SyncTicket>,
) -> Result<()> {
    let path = journal_path(inner)?;
    let (t, _) = fsutil::append(&path, bytes, inner.durability, &inner.syncer)?;
    tickets.extend(t);
    Ok(())
}

fn stored_with_events(inner: &Inner, run: &Run) -> Result<RunWithEvents> {
    with_events(inner, &run.id, true, |ev| {
        Ok(RunWithEvents {
            run: run.clone(),
            events: ev.st.events.clone(),
        })
    })
}

impl FileStore {
    /// `f` of the events of each run of `ids` (`None` for a run that is not
    /// stored), in the order of `ids`, under one read lock and one trip to
    /// the blocking pool: a batch of runs costs what one run does.
    async fn read_events_of<T: Send + 'static>(
        &self,
        ids: &[RunId],
        f: fn(Option<&[Event]>) -> T,
    ) -> Result<Vec<T>> {
        runstore_core::validate_delete_batch("run_ids", ids)?;
        let ids = ids.to_vec();
        self.inner
            .blocking(move |inner| {
                let _l = lock(inner, false)?;
                let st = refresh_runs(inner, false)?;
                let stored: Vec<bool> = ids.iter().map(|id| st.runs.contains_key(id)).collect();
                drop(st);
                ids.iter()
                    .zip(stored)
                    .map(|(id, stored)| {
                        if !stored {
                            return Ok(f(None));
                        }
                        with_events(inner, id, false, |ev| Ok(f(Some(&ev.st.events))))
                    })
                    .collect()
            })
            .await
    }
}

#[async_trait]
impl LogRepository for FileStore {
    async fn create_run(&self, run: Run) -> Result<Written<Run>> {
        run.validate()?;
        self.inner
            .blocking(move |inner| {
                let locked = lock(inner, true)?;
                let st = refresh_runs(inner, true)?;
                let by_key = external_key_of(&run).and_then(|(w, k)| st.by_key(w, k));
                let by_id = st.runs.get(&run.id);
                let written = decide_run_create(run, by_id, by_key)?;
                if !written.inserted {
                    return Ok(written);
                }
                let run = written.record;
                drop(st);
                // An events file without a run is left over from a crashed
                // import or delete; a new run starts with no events.
                let epath = events_path(inner, &run.id)?;
                if fsutil::remove_file(&epath, inner.durability)? {
                    inner.report(
                        FindingKind::OrphanFile,
                        &epath,
                        0,
                        format!("removed events of run {} that had no run record", run.id),
                        true,
                    );
                }
                forget_events(inner, &run.id);
                let mut tickets = Vec::new();
                append_journal(
                    inner,
                    &to_line(&RunLine::Put { run: run.clone() })?,
                    &mut tickets,
                )?;
                finish(inner, locked, Written::inserted(run), tickets)
            })
            .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Run> {
        let id = id.clone();
        self.inner
            .blocking(move |inner| {
                let _l = lock(inner, false)?;
                let st = refresh_runs(inner, false)?;
                st.runs.get(&id).cloned().ok_or_else(|| run_not_found(&id))
            })
            .await
    }

    async fn update_status(&self, id: &RunId, update: RunUpdate) -> Result<Run> {
        update.validate()?;
        let id = id.clone();
        self.inner
            .blocking(move |inner| {
                let locked = lock(inner, true)?;
                let st = refresh_runs(inner, true)?;
                let stored = st.runs.get(&id).ok_or_else(|| run_not_found(&id))?;
                let (next, changed) = stored.apply_update(&update)?;
                drop(st);
                let mut tickets = Vec::new();
                if changed {
                    append_journal(
                        inner,
                        &to_line(&RunLine::Put { run: next.clone() })?,
                        &mut tickets,
                    )?;
                }
                finish(inner, locked, next, tickets)
            })
            .await
    }

    async fn append_event(&self, run_id: &RunId, event: NewEvent) -> Result<Appended> {
        let mut out = self.append_events(run_id, vec![event]).await?;
        out.pop()
            .ok_or_else(|| Error::backend("an append returned no result", None))
    }

    async fn append_events(&self, run_id: &RunId, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        events.iter().try_for_each(NewEvent::validate)?;
        let run_id = run_id.clone();
        self.inner
            .blocking(move |inner| {
                let locked = lock(inner, true)?;
                let st = refresh_runs(inner, true)?;
                if !st.runs.contains_key(&run_id) {
                    return Err(run_not_found(&run_id));
                }
                drop(st);
                let (out, ticket) = with_events(inner, &run_id, true, |ev| {
                    let (out, bytes, written) = number(&run_id, ev.st, events)?;
                    if bytes.is_empty() {
                        return Ok((out, None));
                    }
                    Ok((out, append_numbered(inner, &run_id, ev, &bytes, written)?))
                })?;
                finish(inner, locked, out, ticket.into_iter().collect())
            })
            .await
    }

    async fn list_events(&self, run_id: &RunId, query: EventQuery) -> Result<Page<Event>> {
        validate_limit(query.limit)?;
        query.validate()?;
        if let Some(c) = &query.cursor {
            c.decode::<EventCursor>()?;
        }
        let run_id = run_id.clone();
        self.inner
            .blocking(move |inner| {
                let _l = lock(inner, false)?;
                let st = refresh_runs(inner, false)?;
                if !st.runs.contains_key(&run_id) {
                    return Err(run_not_found(&run_id));
                }
                drop(st);
                // Sequence numbers increase along the file.
                with_events(inner, &run_id, false, |ev| query.page_of(&ev.st.events))
            })
            .await
    }

    async fn query_runs(&self, query: RunQuery) -> Result<Page<Run>> {
        query.filter.validate()?;
        let limit = validate_limit(query.limit)?;
        let before: Option<RunCursor> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        self.inner
            .blocking(move |inner| {
                let _l = lock(inner, false)?;
                let st = refresh_runs(inner, false)?;
                let set = match &query.filter.workflow_id {
                    Some(w) => match st.by_workflow.get(w) {
                        Some(s) => s,
                        None => return Ok(Page::empty()),
                    },
                    None => &st.order,
                };
                let f = &query.filter;
                // Walk newest first, from just below the cursor and the
                // `started_before` bound, stopping at `started_from`.
                let mut upper: Option<OrderKey> = before.map(|b| (b.started_at, b.id));
                if let Some(b) = f.started_before {
                    // "-" is the least valid run id, so every run started at
                    // `b` or later lies at or above this key.
                    let bound = (b, RunId::new("-")?);
                    if upper.as_ref().is_none_or(|u| bound < *u) {
                        upper = Some(bound);
                    }
                }
                let iter: Box<dyn Iterator<Item = &OrderKey>> = match upper {
                    Some(u) => Box::new(set.range(..u).rev()),
                    None => Box::new(set.iter().rev()),
                };
                let mut items = Vec::new();
                for (at, id) in iter {
                    if f.started_before.is_some_and(|b| *at >= b) {
                        continue;
                    }
                    if f.started_from.is_some_and(|from| *at < from) {
                        break;
                    }
                    if let Some(run) = st.runs.get(id)
                        && f.matches(run)
                    {
                        items.push(run.clone());
                        if items.len() > limit {
                            break;
                        }
                    }
                }
                Ok(Page::from_overfetch(items, limit, RunCursor::of))
            })
            .await
    }

    async fn count_runs(&self, filter: RunFilter) -> Result<u64> {
        filter.validate()?;
        self.inner
            .blocking(move |inner| {
                let _l = lock(inner, false)?;
                let st = refresh_runs(inner, false)?;
                let set = match &filter.workflow_id {
                    Some(w) => match st.by_workflow.get(w) {
                        Some(s) => s,
                        None => return Ok(0),
                    },
                    None => &st.order,
                };
                Ok(set
                    .iter()
                    .filter_map(|(_, id)| st.runs.get(id))
                    .filter(|r| filter.matches(r))
                    .count() as u64)
            })
            .await
    }

    async fn delete_run(&self, id: &RunId) -> Result<()> {
        // The batch delete's order (events first, then the record), so a
        // run's events never outlive it.
        let ids = [id.clone()];
        let out = self
            .inner
            .blocking(move |inner| crate::lifecycle::delete_runs(inner, &ids))
            .await?;
        if out.deleted.is_empty() {
            return Err(run_not_found(id));
        }
        Ok(())
    }

    async fn import_runs(&self, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
        RunWithEvents::validate_batch(&runs)?;
        self.inner
            .blocking(move |inner| {
                let locked = lock(inner, true)?;
                let st = refresh_runs(inner, true)?;
                let existing: Vec<Option<Run>> = runs
                    .iter()
                    .map(|r| st.runs.get(&r.run.id).cloned())
                    .collect();
                drop(st);
                // Check everything first: all or nothing.
                let mut outcome = BulkOutcome::default();
                let mut fresh = Vec::new();
                for (r, stored) in runs.into_iter().zip(existing) {
                    match stored {
                        Some(s) => {
                            if stored_with_events(inner, &s)?.same_content(&r) {
                                outcome.unchanged += 1;
                            } else {
                                return Err(run_conflict(&r.run.id));
                            }
                        }
                        None => {
                            outcome.inserted += 1;
                            fresh.push(r);
                        }
                    }
                }
                let st = refresh_runs(inner, true)?;
                for r in &fresh {
                    if let Some((w, k)) = external_key_of(&r.run)
                        && let Some(holder) = st.by_key(w, k)
                    {
                        return Err(external_key_conflict(&r.run, &holder.id));
                    }
                }
                drop(st);
                if fresh.is_empty() {
                    return finish(inner, locked, outcome, Vec::new());
                }
                // Events files first, then the run records in one append: a
                // crash leaves at most orphan events files, which a later
                // import or create overwrites.
                let dir = inner.root.dir(&["logs", "events"])?;
                let mut journal = Vec::new();
                for r in &fresh {
                    let name = format!("{}.ndjson", r.run.id.as_str());
                    inner.root.path(&["logs", "events", &name])?;
                    forget_events(inner, &r.run.id);
                    if r.events.is_empty() {
                        fsutil::remove_file(&dir.join(&name), crate::Durability::None)?;
                    } else {
                        let mut bytes = Vec::new();
                        for e in &r.events {
                            bytes.extend(to_line(e)?);
                        }
                        // The folder is synced once below, not per file.
                        write_events_file(&dir, &name, &bytes, inner.durability)?;
                    }
                    journal.extend(to_line(&RunLine::Put { run: r.run.clone() })?);
                }
                if inner.durability != crate::Durability::None {
                    fsutil::sync_dir(&dir)?;
                }
                let mut tickets = Vec::new();
                append_journal(inner, &journal, &mut tickets)?;
                finish(inner, locked, outcome, tickets)
            })
            .await
    }

    async fn event_counts(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        self.read_events_of(ids, |events| events.map_or(0, |e| e.len() as u64))
            .await
    }

    async fn events_of_runs(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        self.read_events_of(ids, |events| {
            events.map(<[Event]>::to_vec).unwrap_or_default()
        })
        .await
    }

    async fn delete_runs(&self, ids: &[RunId]) -> Result<runstore_core::Deleted<RunId>> {
        runstore_core::validate_delete_batch("run_ids", ids)?;
        let ids = ids.to_vec();
        self.inner
            .blocking(move |inner| crate::lifecycle::delete_runs(inner, &ids))
            .await
    }

    async fn get_run_by_key(&self, workflow: &WorkflowId, key: &str) -> Result<Run> {
        validate_external_key(key)?;
        let (workflow, key) = (workflow.clone(), key.to_owned());
        self.inner
            .blocking(move |inner| {
                let _l = lock(inner, false)?;
                let st = refresh_runs(inner, false)?;
                st.by_key(&workflow, &key)
                    .cloned()
                    .ok_or_else(|| key_not_found(&workflow, &key))
            })
            .await
    }

    async fn acquire_lease(&self, request: LeaseRequest) -> Result<Lease> {
        crate::coordination::acquire_lease(self, request).await
    }

    async fn release_lease(&self, name: &str, token: u64) -> Result<()> {
        crate::coordination::release_lease(self, name, token).await
    }

    async fn list_leases(&self, query: LeaseQuery) -> Result<Page<Lease>> {
        crate::coordination::list_leases(self, query).await
    }

    async fn record_delivery(&self, id: &str) -> Result<Written<Delivery>> {
        crate::coordination::record_delivery(self, id).await
    }

    async fn prune_deliveries(&self, recorded_before: Timestamp) -> Result<u64> {
        crate::coordination::prune_deliveries(self, recorded_before).await
    }
}

/// Replaces an events file atomically without syncing the folder (the
/// caller syncs it once for the whole batch).
fn write_events_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durability: crate::Durability,
) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| fsutil::io_err("creating a temp file in", dir, e))?;
    std::fs::set_permissions(
        tmp.path(),
        std::fs::Permissions::from_mode(fsutil::FILE_MODE),
    )
    .map_err(|e| fsutil::io_err("setting permissions of", tmp.path(), e))?;
    tmp.write_all(bytes)
        .map_err(|e| fsutil::io_err("writing", tmp.path(), e))?;
    if durability != crate::Durability::None {
        tmp.as_file()
            .sync_all()
            .map_err(|e| fsutil::io_err("fsync of", tmp.path(), e))?;
    }
    let dest = dir.join(name);
    tmp.persist(&dest)
        .map_err(|e| fsutil::io_err("renaming a temp file to", &dest, e.error))?;
    Ok(())
}

/// For `check`: the run ids in the table (after a refresh).
pub(crate) fn run_ids(inner: &Inner, exclusive: bool) -> Result<HashSet<RunId>> {
    let st = refresh_runs(inner, exclusive)?;
    Ok(st.runs.keys().cloned().collect())
}

/// For `check`: forces an index rebuild at the next exclusive refresh, or
/// now with `repair` (the caller holds the exclusive lock then).
pub(crate) fn reload_runs(inner: &Inner) {
    lock_mutex(&inner.runs).clear();
}

/// Rewrites the run journal with one `put` line per live run, and the
/// index for it, when deleted or superseded lines make up most of it (see
/// FORMAT.md, "Compaction"). The caller holds the exclusive logs lock and
/// has synced its appends. Returns whether it rewrote.
pub(crate) fn compact_journal(inner: &Inner) -> Result<bool> {
    let mut st = refresh_runs(inner, true)?;
    let path = journal_path(inner)?;
    let Some(meta) = fsutil::regular_file_meta(&path)? else {
        return Ok(false);
    };
    let mut body = Vec::new();
    for (_, id) in st.order.iter() {
        if let Some(run) = st.runs.get(id) {
            body.extend(to_line(&RunLine::Put { run: run.clone() })?);
        }
    }
    if !crate::lifecycle::worth_compacting(meta.len(), body.len() as u64) {
        return Ok(false);
    }
    let dir = inner.root.dir(&["logs"])?;
    fsutil::write_atomic(&dir, "runs.ndjson", &body, inner.durability)?;
    let file = fsutil::open_read(&path)?
        .ok_or_else(|| Error::backend("the compacted run journal vanished", None))?;
    let meta = file
        .metadata()
        .map_err(|e| fsutil::io_err("inspecting", &path, e))?;
    // The table is unchanged; only the file under it is new.
    st.file = Some(file_id(&meta));
    st.offset = meta.len();
    write_index(inner, &mut st, &file, &path)?;
    Ok(true)
}
