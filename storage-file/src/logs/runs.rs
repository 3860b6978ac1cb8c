//! Run records under the logs lock: create, read, status updates and
//! queries, each on the run table brought up to date with the journal.

use runstore_core::{
    Page, Result, Run, RunCursor, RunFilter, RunId, RunQuery, RunUpdate, WorkflowId, Written,
    decide_run_create, external_key_of, key_not_found, run_not_found,
};

use super::event_cache::{events_path, forget_events};
use super::journal::{RunLine, append_journal, refresh_runs, to_line};
use super::lock::{finish, lock};
use super::run_table;
use crate::{FindingKind, Inner, fsutil};

/// Stores a new run (or finds it already stored, see `decide_run_create`).
pub(super) fn create(inner: &Inner, run: Run) -> Result<Written<Run>> {
    let locked = lock(inner, true)?;
    let st = refresh_runs(inner, true)?;
    let by_key = match external_key_of(&run) {
        Some((w, k)) => run_table::by_key(&st, w, k)?,
        None => None,
    };
    let by_id = run_table::get(&st, &run.id)?;
    let written = decide_run_create(run, by_id.as_ref(), by_key.as_ref())?;
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
}

/// The run `id`.
pub(super) fn get(inner: &Inner, id: &RunId) -> Result<Run> {
    let _l = lock(inner, false)?;
    let st = refresh_runs(inner, false)?;
    run_table::get(&st, id)?.ok_or_else(|| run_not_found(id))
}

/// The run holding external key `key` of `workflow`.
pub(super) fn get_by_key(inner: &Inner, workflow: &WorkflowId, key: &str) -> Result<Run> {
    let _l = lock(inner, false)?;
    let st = refresh_runs(inner, false)?;
    run_table::by_key(&st, workflow, key)?.ok_or_else(|| key_not_found(workflow, key))
}

/// Applies a status update (see `Run::apply_update`); appends only a change.
pub(super) fn update_status(inner: &Inner, id: &RunId, update: &RunUpdate) -> Result<Run> {
    let locked = lock(inner, true)?;
    let st = refresh_runs(inner, true)?;
    let stored = run_table::get(&st, id)?.ok_or_else(|| run_not_found(id))?;
    let (next, changed) = stored.apply_update(update)?;
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
}

/// A page of the runs matching `filter`, see `RunsState::query`.
pub(super) fn query(
    inner: &Inner,
    query: &RunQuery,
    after: Option<RunCursor>,
    limit: usize,
) -> Result<Page<Run>> {
    let _l = lock(inner, false)?;
    let st = refresh_runs(inner, false)?;
    run_table::query(&st, &query.filter, after, query.ascending, limit)
}

/// How many runs match `filter`.
pub(super) fn count(inner: &Inner, filter: &RunFilter) -> Result<u64> {
    let _l = lock(inner, false)?;
    let st = refresh_runs(inner, false)?;
    run_table::count(&st, filter)
}
