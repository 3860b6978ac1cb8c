//! Deletes for retention (docs/DESIGN.md section 8), each batch under the
//! exclusive lock of its concern with one journal append (one fsync).

use runstore_core::{
    ArtifactsDeleted, Deleted, Result, RunId, Version, WorkflowId, decide_workflow_delete,
};

use crate::logs::{self, RunLine};
use crate::metric_index;
use crate::metrics::{self, METRICS_JOURNAL, MetricLine};
use crate::{Durability, Inner, artifacts, fsutil, workflows};

/// Prefix of a run's artifacts folder moved into `tmp/` to be removed.
const DELETED_PREFIX: &str = ".deleted-";

/// Deletes runs: their events files first, then one append of their
/// `delete` lines. A crash in between leaves runs without events, which the
/// next prune deletes; never events without their run.
pub(crate) fn delete_runs(inner: &Inner, ids: &[RunId]) -> Result<Deleted<RunId>> {
    let locked = logs::lock(inner, true)?;
    let stored = logs::stored(inner, true, ids)?;
    let mut stored = stored.into_iter();
    let out = Deleted::split(ids, |_| stored.next().unwrap_or(false));
    if out.deleted.is_empty() {
        return logs::finish(inner, locked, out, Vec::new());
    }
    let mut journal = Vec::new();
    for id in &out.deleted {
        // The folder is synced once below, not per file.
        fsutil::remove_file(&logs::events_path(inner, id)?, Durability::None)?;
        logs::forget_events(inner, id);
        journal.extend(logs::to_line(&RunLine::Delete { id: id.clone() })?);
    }
    if inner.durability != Durability::None {
        fsutil::sync_dir(&inner.root.path(&["logs", "events"])?)?;
    }
    let mut tickets = Vec::new();
    logs::append_journal(inner, &journal, &mut tickets)?;
    // Synced before a compaction may copy these lines into a new file.
    for t in tickets {
        inner.syncer.sync(t)?;
    }
    logs::compact_journal(inner)?;
    logs::finish(inner, locked, out, Vec::new())
}

/// Journals are rewritten when at least half of them, and at least this
/// many bytes, is lines that no longer count (deleted or superseded
/// records): rare enough that the rewrite's cost is spread over many
/// deletes.
pub(crate) const COMPACT_MIN_WASTE: u64 = 64 * 1024;

/// Whether a journal of `len` bytes whose live records take `live` bytes
/// is worth rewriting.
pub(crate) fn worth_compacting(len: u64, live: u64) -> bool {
    len >= live.saturating_mul(2) && len - live >= COMPACT_MIN_WASTE
}

/// Rewrites the metrics journal with one `put` line per live metric when
/// worth it, streaming from the index (the caller holds the exclusive
/// metrics lock and has synced).
fn compact_metrics(inner: &Inner) -> Result<bool> {
    let mut st = metrics::refresh_metrics(inner, true)?;
    let path = metrics::journal_path(inner, METRICS_JOURNAL)?;
    let Some(meta) = fsutil::regular_file_meta(&path)? else {
        return Ok(false);
    };
    if !worth_compacting(meta.len(), metric_index::live_bytes(&st)?) {
        return Ok(false);
    }
    let dir = inner.root.dir(&["metrics"])?;
    fsutil::write_atomic_with(&dir, METRICS_JOURNAL, inner.durability, |w| {
        metric_index::each(&st, |metric| {
            w.write_all(&metrics::to_line(&MetricLine::Put { metric })?)
                .map_err(|e| fsutil::io_err("writing a temp file in", &dir, e))
        })
    })?;
    let file = fsutil::open_read(&path)?.ok_or_else(|| {
        runstore_core::Error::backend("the compacted metrics journal vanished", None)
    })?;
    st.moved_to::<metric_index::MetricIndex>(&file, &path)?;
    Ok(true)
}

/// Deletes metrics with one append of their `delete` lines.
pub(crate) fn delete_metrics(inner: &Inner, ids: &[RunId]) -> Result<Deleted<RunId>> {
    let g = fsutil::take_lock(&inner.root, metrics::LOCK, true)?;
    let st = metrics::refresh_metrics(inner, true)?;
    let stored = ids
        .iter()
        .map(|id| metric_index::contains(&st, id))
        .collect::<Result<Vec<bool>>>()?;
    drop(st);
    let mut found = stored.into_iter();
    let out = Deleted::split(ids, |_| found.next().unwrap_or(false));
    if out.deleted.is_empty() {
        drop(g);
        return Ok(out);
    }
    let mut journal = Vec::new();
    for id in &out.deleted {
        journal.extend(metrics::to_line(&MetricLine::Delete {
            run_id: id.clone(),
        })?);
    }
    if let Some(t) = metrics::append_to(inner, METRICS_JOURNAL, &journal)? {
        inner.syncer.sync(t)?;
    }
    compact_metrics(inner)?;
    metrics::sync_after(inner, g, None)?;
    Ok(out)
}

/// Deletes a run's artifacts: its whole folder (info journal and bytes) is
/// renamed into `tmp/` in one atomic step, then removed. A crash after the
/// rename leaves a folder in `tmp/` that the next call removes; before it,
/// every artifact of the run is still whole.
pub(crate) fn delete_run_artifacts(inner: &Inner, run: &RunId) -> Result<ArtifactsDeleted> {
    let _g = fsutil::take_lock(&inner.root, artifacts::LOCK, true)?;
    let tmp = inner.root.dir(&["tmp"])?;
    sweep_deleted(&tmp)?;
    let dir = inner.root.path(&["artifacts", run.as_str()])?;
    let mut out = ArtifactsDeleted::default();
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        // No folder: the run has no artifacts (a link or file there is
        // not ours to remove; `check` reports it).
        Ok(_) => return Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(fsutil::io_err("reading", &dir, e)),
    }
    for info in artifacts::run_infos(inner, run)?.values() {
        out.add(info.size);
    }
    let moved = tmp.join(format!("{DELETED_PREFIX}{}", run.as_str()));
    std::fs::rename(&dir, &moved).map_err(|e| fsutil::io_err("moving aside", &dir, e))?;
    if inner.durability != Durability::None {
        if let Some(parent) = dir.parent() {
            fsutil::sync_dir(parent)?;
        }
        fsutil::sync_dir(&tmp)?;
    }
    std::fs::remove_dir_all(&moved).map_err(|e| fsutil::io_err("removing", &moved, e))?;
    Ok(out)
}

/// Removes folders of deleted runs' artifacts left in `tmp/` by a crash.
fn sweep_deleted(tmp: &std::path::Path) -> Result<()> {
    for (name, ft) in fsutil::list_dir(tmp)? {
        if ft.is_dir() && name.starts_with(DELETED_PREFIX) {
            let p = tmp.join(&name);
            std::fs::remove_dir_all(&p).map_err(|e| fsutil::io_err("removing", &p, e))?;
        }
    }
    Ok(())
}

/// Deletes one workflow version file after [`decide_workflow_delete`].
/// Every higher version is read to find a child; a corrupt one is an error
/// rather than a guess.
pub(crate) fn delete_workflow(inner: &Inner, id: &WorkflowId, version: Version) -> Result<()> {
    let _g = fsutil::take_lock(&inner.root, workflows::LOCK, true)?;
    let path = workflows::version_path(inner, id, version)?;
    let stored = fsutil::regular_file_exists(&path)?;
    let mut child = None;
    if stored {
        for v in workflows::versions(inner, id)?
            .into_iter()
            .filter(|v| *v > version)
        {
            let p = workflows::version_path(inner, id, v)?;
            if workflows::read_version(&p, id, v)?.is_some_and(|d| d.parent == Some(version)) {
                child = Some(v);
                break;
            }
        }
    }
    decide_workflow_delete(id, version, stored, child)?;
    fsutil::remove_file(&path, inner.durability)?;
    Ok(())
}
