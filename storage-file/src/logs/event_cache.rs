//! Events files `logs/events/<run_id>.ndjson` in memory: one cache per
//! run, checked with one `stat` and read only for new bytes, the append
//! handles kept beside them, and the reads of events served from them.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runstore_core::{EncodedEvent, Error, Event, EventQuery, Page, Result, RunId, run_not_found};

use super::journal::refresh_runs;
use super::lock::lock;
use super::run_table;
use crate::fsutil::{self, file_id, lock_mutex};
use crate::{FileStore, Inner};

/// Cached event files kept per process before the cache is dropped.
const EVENTS_CACHE_MAX: usize = 1024;

/// A run's events in memory, valid for its file up to `offset`.
#[derive(Default)]
pub(super) struct EventsState {
    pub(super) file: Option<fsutil::FileId>,
    pub(super) offset: u64,
    pub(super) events: Vec<Event>,
    pub(super) keys: HashMap<String, u64>,
    pub(super) max_seq: u64,
}

impl EventsState {
    /// Adds the next event read from `run`'s file, or says why it does not
    /// belong there.
    pub(super) fn accept(&mut self, run: &RunId, e: Event) -> std::result::Result<(), String> {
        follows(run, self.max_seq, &e.run_id, e.seq)?;
        if let Some(k) = &e.idempotency_key {
            self.keys.entry(k.clone()).or_insert(e.seq);
        }
        self.max_seq = e.seq;
        self.events.push(e);
        Ok(())
    }
}

/// Whether an event of `run_id` numbered `seq` may follow `max_seq` in
/// `run`'s file; why not.
fn follows(run: &RunId, max_seq: u64, run_id: &RunId, seq: u64) -> std::result::Result<(), String> {
    if run_id != run {
        return Err(format!("belongs to run {run_id}"));
    }
    if seq <= max_seq {
        return Err(format!("repeats sequence number {seq}"));
    }
    Ok(())
}

/// An events line as counting reads it: every field of [`Event`] is read
/// and checked as a whole read checks it, but the payload is only parsed,
/// not built. So a line counts exactly when [`read_uncached`] keeps it, at
/// a fraction of the allocations.
#[derive(serde::Deserialize)]
struct EventHead {
    run_id: RunId,
    seq: u64,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(rename = "at")]
    _at: runstore_core::Timestamp,
    #[serde(default, rename = "payload")]
    _payload: runstore_core::SkippedJson,
    #[serde(default, rename = "idempotency_key")]
    _idempotency_key: Option<String>,
}

/// Open append handles by run, with the identity of the file each was
/// opened on; used only while that is still the run's file.
pub(super) type Handles = HashMap<RunId, (fsutil::FileId, Arc<File>)>;

/// Per-run event caches, and append handles of the runs written lately.
#[derive(Default)]
pub(crate) struct EventsCache {
    runs: HashMap<RunId, EventsState>,
    handles: Handles,
}

/// The name of a run's events file in `logs/events/`.
pub(super) fn events_name(run: &RunId) -> String {
    format!("{}.ndjson", run.as_str())
}

pub(crate) fn events_path(inner: &Inner, run: &RunId) -> Result<PathBuf> {
    inner.root.dir(&["logs", "events"])?;
    inner.root.path(&["logs", "events", &events_name(run)])
}

/// A run's events cache, up to date with its file, as [`with_events`]
/// hands it out (under the logs lock and the cache mutex).
pub(super) struct Events<'a> {
    pub(super) st: &'a mut EventsState,
    pub(super) handles: &'a mut Handles,
    pub(super) path: &'a Path,
    /// The file exists, is the one `st` was read from, and ends where `st`
    /// ends (so its last line is whole): appends may skip every check.
    pub(super) current: bool,
}

/// Brings a run's events up to date with its file, and runs `f` on them.
/// One `stat` of the file checks the cache (identity and length, see
/// FORMAT.md); only new bytes are read.
pub(super) fn with_events<T>(
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

/// Drops a run's cache and append handle, before its file is replaced or
/// removed.
pub(crate) fn forget_events(inner: &Inner, run: &RunId) {
    let mut cache = lock_mutex(&inner.events);
    cache.runs.remove(run);
    cache.handles.remove(run);
}

/// A page of a run's events.
pub(super) fn list(inner: &Inner, run_id: &RunId, query: &EventQuery) -> Result<Page<Event>> {
    let _l = lock(inner, false)?;
    let st = refresh_runs(inner, false)?;
    if !run_table::contains(&st, run_id)? {
        return Err(run_not_found(run_id));
    }
    drop(st);
    // Sequence numbers increase along the file.
    with_events(inner, run_id, false, |ev| query.page_of(&ev.st.events))
}

/// A run's events read straight from its file in `dir` (the events
/// folder, checked for links by the caller), without the cache: a batch
/// read (migration, export) would only churn it.
fn read_uncached(inner: &Inner, dir: &Path, run: &RunId) -> Result<Vec<Event>> {
    let path = dir.join(events_name(run));
    let Some(mut file) = fsutil::open_read(&path)? else {
        return Ok(Vec::new());
    };
    let mut st = EventsState::default();
    inner.replay(&mut file, &path, 0, None, "event", |e| st.accept(run, e))?;
    Ok(st.events)
}

/// How many events [`read_uncached`] would return, without building them.
fn count_uncached(inner: &Inner, dir: &Path, run: &RunId) -> Result<u64> {
    let path = dir.join(events_name(run));
    let Some(mut file) = fsutil::open_read(&path)? else {
        return Ok(0);
    };
    let (mut n, mut max_seq) = (0u64, 0u64);
    inner.replay(&mut file, &path, 0, None, "event", |e: EventHead| {
        follows(run, max_seq, &e.run_id, e.seq)?;
        max_seq = e.seq;
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// An events line in a form a batch read hands out: [`Event`], or
/// [`EncodedEvent`], whose payload stays the text of the line.
pub(super) trait EventLine: serde::de::DeserializeOwned + Send + 'static {
    /// Its run and number.
    fn numbered(&self) -> (&RunId, u64);
}

impl EventLine for Event {
    fn numbered(&self) -> (&RunId, u64) {
        (&self.run_id, self.seq)
    }
}

impl EventLine for EncodedEvent {
    fn numbered(&self) -> (&RunId, u64) {
        (&self.run_id, self.seq)
    }
}

/// [`read_uncached`] of a run with fewer than `max` events; `None` once
/// `max` are read (the rest of the file is not parsed, so a large run costs
/// at most `max` events in memory, and the lines past them are not
/// reported here: a later full read reports them). A line is kept or
/// refused as [`EventsState::accept`] keeps or refuses it.
fn read_if_small<E: EventLine>(
    inner: &Inner,
    dir: &Path,
    run: &RunId,
    max: usize,
) -> Result<IfSmall<E>> {
    let path = dir.join(events_name(run));
    let Some(mut file) = fsutil::open_read(&path)? else {
        return Ok(IfSmall::default());
    };
    let (mut events, mut max_seq) = (Vec::new(), 0);
    let large = inner.replay_until(&mut file, &path, "event", |e: E| {
        let (id, seq) = e.numbered();
        follows(run, max_seq, id, seq)?;
        max_seq = seq;
        events.push(e);
        Ok(events.len() >= max)
    })?;
    Ok(IfSmall((!large).then_some(events)))
}

/// What [`read_if_small`] gives; a run that is not stored is small, with
/// no events.
struct IfSmall<E>(Option<Vec<E>>);

impl<E> Default for IfSmall<E> {
    fn default() -> Self {
        IfSmall(Some(Vec::new()))
    }
}

impl FileStore {
    /// [`runstore_core::LogRepository::events_of_small_runs`] (and its
    /// `_encoded` twin, with `E` an [`EncodedEvent`]): each events file read
    /// once, where counting first would read it twice.
    pub(super) async fn small_runs_of<E: EventLine>(
        &self,
        ids: &[RunId],
        max_events: usize,
    ) -> Result<Vec<Option<Vec<E>>>> {
        runstore_core::validate_small_runs_request(ids, max_events)?;
        let read = self
            .read_events_of(ids, move |inner, dir, id| {
                read_if_small(inner, dir, id, max_events)
            })
            .await?;
        Ok(read.into_iter().map(|r| r.0).collect())
    }

    /// The events of each run of `ids` (none for a run that is not
    /// stored), in the order of `ids`, under one read lock and one trip to
    /// the blocking pool: a batch of runs costs what one run does.
    pub(super) async fn events_of(&self, ids: &[RunId]) -> Result<Vec<Vec<Event>>> {
        self.read_events_of(ids, read_uncached).await
    }

    /// How many events each run of `ids` has, as [`Self::events_of`].
    pub(super) async fn counts_of(&self, ids: &[RunId]) -> Result<Vec<u64>> {
        self.read_events_of(ids, count_uncached).await
    }

    /// `read` of each stored run of `ids`, the default for the others.
    async fn read_events_of<T: Default + Send + 'static>(
        &self,
        ids: &[RunId],
        read: impl Fn(&Inner, &Path, &RunId) -> Result<T> + Send + Sync + 'static,
    ) -> Result<Vec<T>> {
        runstore_core::validate_delete_batch("run_ids", ids)?;
        let ids = ids.to_vec();
        self.inner
            .blocking(move |inner| {
                let _l = lock(inner, false)?;
                let st = refresh_runs(inner, false)?;
                let stored = run_table::contains_each(&st, &ids)?;
                drop(st);
                let dir = inner.root.path(&["logs", "events"])?;
                let wanted: Vec<(&RunId, bool)> = ids.iter().zip(stored).collect();
                read_in_parallel(&wanted, |(id, stored)| {
                    if *stored {
                        read(inner, &dir, id)
                    } else {
                        Ok(T::default())
                    }
                })
            })
            .await
    }
}

/// Threads that read a batch's events files at once. A root that is not
/// in the page cache is read at the disk's latency, one small file after
/// another; several reads in flight keep the disk's queue full (and the
/// parsing of what arrived runs on the other core meanwhile).
const READ_THREADS: usize = 8;

/// Fewer files than this per thread are read on one thread: starting
/// threads would cost more than the reads they share.
const FILES_PER_THREAD: usize = 16;

/// `read` of every item, in order, spread over up to [`READ_THREADS`]
/// threads that each take a contiguous share. The first failure in the
/// order of `items` is returned.
fn read_in_parallel<I: Sync, T: Send>(
    items: &[I],
    read: impl Fn(&I) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let threads = (items.len() / FILES_PER_THREAD).clamp(1, READ_THREADS);
    if threads == 1 {
        return items.iter().map(&read).collect();
    }
    let share = items.len().div_ceil(threads);
    let read = &read;
    std::thread::scope(|s| {
        let mut running = Vec::with_capacity(threads);
        for part in items.chunks(share) {
            let spawned = std::thread::Builder::new()
                .name("runstore-file-read".into())
                .spawn_scoped(s, move || {
                    yield_to_other_work();
                    part.iter().map(read).collect::<Result<Vec<T>>>()
                })
                .map_err(|e| Error::backend("could not start a read thread", Some(e.into())))?;
            running.push(spawned);
        }
        let mut out = Vec::with_capacity(items.len());
        for t in running {
            let part = t
                .join()
                .map_err(|_| Error::backend("a read thread panicked", None))??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// How far a read thread lowers its priority below the thread that asked
/// for the batch (a nice increment, on Linux).
const READ_NICE: i32 = 10;

/// Lowers the calling read thread's priority by [`READ_NICE`], best
/// effort. A batch read fans out to [`READ_THREADS`] threads that parse as
/// fast as the page cache gives them files; at the caller's priority, on a
/// machine of two cores, they take turns on both cores with the process's
/// other work, such as the one writer of a database a migration copies
/// into, which then bounds the whole copy (files -> SQLite, 1,000,000 runs:
/// 3-11% faster at nice +10). At a lower priority they still get every
/// cycle nobody else wants. Only Linux gives each thread its own nice
/// value (elsewhere `setpriority` would lower the whole process), and
/// only these short-lived threads, which runstore starts and ends within
/// one call, are lowered.
fn yield_to_other_work() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        // Relative to what the thread inherited, and never above it: an
        // application running at nice 15 must not see reads at 10.
        if let Ok(now) = getpriority_process(me) {
            let _ = setpriority_process(me, (now + READ_NICE).min(19));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read thread runs below its caller: lower by [`READ_NICE`], or at
    /// the lowest priority there is.
    #[cfg(target_os = "linux")]
    #[test]
    fn read_threads_run_below_their_caller() {
        use rustix::process::getpriority_process;
        let caller = getpriority_process(None).unwrap();
        let items: Vec<usize> = (0..FILES_PER_THREAD * 4).collect();
        let seen = read_in_parallel(&items, |_| {
            Ok(getpriority_process(Some(rustix::thread::gettid())).unwrap())
        })
        .unwrap();
        assert!(
            seen.iter().all(|&n| n == (caller + READ_NICE).min(19)),
            "caller at {caller}, read threads at {seen:?}"
        );
        // The caller's own priority is untouched.
        assert_eq!(getpriority_process(None).unwrap(), caller);
    }

    /// Items spread over threads come back in order, and the failure
    /// reported is the first in that order, not the first to happen.
    #[test]
    fn reads_in_parallel_keep_the_order_and_the_first_failure() {
        for n in [0, 1, FILES_PER_THREAD * 2 - 1, FILES_PER_THREAD * 2, 1_000] {
            let items: Vec<usize> = (0..n).collect();
            let read = read_in_parallel(&items, |i| Ok(i * 3)).unwrap();
            assert_eq!(read, items.iter().map(|i| i * 3).collect::<Vec<_>>());
        }
        let items: Vec<usize> = (0..1_000).collect();
        let failed = read_in_parallel(&items, |&i| {
            if i == 900 {
                Err(Error::backend("late", None))
            } else if i == 420 {
                // The later failure happens first.
                std::thread::sleep(std::time::Duration::from_millis(20));
                Err(Error::backend("early", None))
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert!(failed.to_string().contains("early"), "{failed}");
    }
}
