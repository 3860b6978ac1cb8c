//! `import_runs`, all or nothing: every run is checked first (one stored
//! with the same content is unchanged, another is a conflict), then the
//! new runs' events files are written, then their records in one journal
//! append.

use std::path::Path;

use runstore_core::{
    BulkOutcome, Result, Run, RunWithEvents, external_key_conflict, external_key_of, run_conflict,
};

use super::event_cache::{events_name, forget_events, with_events};
use super::journal::{RunLine, append_journal, refresh_runs, to_line};
use super::lock::{finish, lock};
use super::run_table;
use crate::{Inner, fsutil};

/// Imports `runs` as the module doc says, under the exclusive lock.
pub(super) fn import_runs(inner: &Inner, runs: Vec<RunWithEvents>) -> Result<BulkOutcome> {
    let locked = lock(inner, true)?;
    let st = refresh_runs(inner, true)?;
    let existing = runs
        .iter()
        .map(|r| run_table::get(&st, &r.run.id))
        .collect::<Result<Vec<Option<Run>>>>()?;
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
            && let Some(holder) = run_table::by_key(&st, w, k)?
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
    let mut written = Vec::new();
    let mut bytes = Vec::new();
    for r in &fresh {
        let name = events_name(&r.run.id);
        inner.root.path(&["logs", "events", &name])?;
        forget_events(inner, &r.run.id);
        let path = dir.join(&name);
        fsutil::remove_file(&path, crate::Durability::None)?;
        if !r.events.is_empty() {
            bytes.clear();
            for e in &r.events {
                bytes.extend(to_line(e)?);
            }
            written.push(write_events_file(&path, &bytes)?);
        }
        journal.extend(to_line(&RunLine::Put { run: r.run.clone() })?);
    }
    if inner.durability != crate::Durability::None {
        fsutil::sync_new_files(&dir, written)?;
    }
    let mut tickets = Vec::new();
    append_journal(inner, &journal, &mut tickets)?;
    finish(inner, locked, outcome, tickets)
}

fn stored_with_events(inner: &Inner, run: &Run) -> Result<RunWithEvents> {
    with_events(inner, &run.id, true, |ev| {
        Ok(RunWithEvents {
            run: run.clone(),
            events: ev.st.events.clone(),
        })
    })
}

/// Writes a new events file (the old one was removed, so `create_new`
/// never follows a link planted there), without syncing it: the caller
/// makes the whole batch durable at once.
fn write_events_file(path: &Path, bytes: &[u8]) -> Result<std::fs::File> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(fsutil::FILE_MODE)
        .open(path)
        .map_err(|e| fsutil::io_err("creating", path, e))?;
    f.write_all(bytes)
        .map_err(|e| fsutil::io_err("writing", path, e))?;
    Ok(f)
}
