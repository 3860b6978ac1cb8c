//! Appending events: a batch numbered after the cached events (idempotency
//! keys included), written through the run's kept append handle when the
//! cache is current.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use runstore_core::{Appended, Event, NewEvent, Result, RunId, run_not_found};

use super::event_cache::{Events, EventsState, Handles, with_events};
use super::journal::{refresh_runs, to_line};
use super::lock::{finish, lock};
use super::run_table;
use crate::Inner;
use crate::fsutil::{self, SyncTicket, file_id};

/// Append handles kept open per process before they are all closed (well
/// below the usual limit of 1024 open files).
const HANDLES_MAX: usize = 64;

/// Appends a batch of events to a stored run, under the exclusive lock.
pub(super) fn append(
    inner: &Inner,
    run_id: &RunId,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>> {
    let locked = lock(inner, true)?;
    let mut st = refresh_runs(inner, true)?;
    if !run_table::contains_known(&mut st, run_id)? {
        return Err(run_not_found(run_id));
    }
    drop(st);
    let (out, ticket) = with_events(inner, run_id, true, |ev| {
        let (out, bytes, written) = number(run_id, ev.st, events)?;
        if bytes.is_empty() {
            return Ok((out, None));
        }
        Ok((out, append_numbered(inner, run_id, ev, &bytes, written)?))
    })?;
    finish(inner, locked, out, ticket.into_iter().collect())
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
    handles: &mut Handles,
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
