//! The run journal `logs/runs.ndjson` (latest line per run wins): its
//! lines, appends, replay into the run table from the run index on,
//! open-time recovery and compaction.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use runstore_core::{Error, Result, Run, RunId};
use serde::{Deserialize, Serialize};

use super::lock::LOCK;
use super::run_table::{self, RunIndex};
use crate::Inner;
use crate::fsutil::{self, SyncTicket};
use crate::journal_index::{self, IndexGuard};

/// One line of `logs/runs.ndjson`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum RunLine {
    /// The run as it now is.
    Put { run: Run },
    /// The run was deleted.
    Delete { id: RunId },
}

fn journal_path(inner: &Inner) -> Result<PathBuf> {
    inner.root.dir(&["logs"])?;
    inner.root.path(&["logs", "runs.ndjson"])
}

/// `value` as one NDJSON line, as every file of the concern holds it.
pub(crate) fn to_line<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec(value)
        .map_err(|e| Error::backend("encoding a record as JSON", Some(e.into())))?;
    v.push(b'\n');
    Ok(v)
}

/// The run index brought up to date with the journal (see
/// [`crate::journal_index`]); under the exclusive lock a torn tail is cut.
pub(crate) fn refresh_runs(inner: &Inner, exclusive: bool) -> Result<IndexGuard<'_>> {
    journal_index::refresh::<RunIndex>(inner, &inner.runs, exclusive)
}

/// Appends whole run lines to the journal; the caller holds the exclusive
/// logs lock and syncs `tickets` after releasing it.
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
    // The run index of layouts before the SQLite one, replaced by it.
    fsutil::remove_file(
        &inner.root.path(&["index", "runs.ndjson"])?,
        crate::Durability::None,
    )?;
    // Force a fresh look at the files as this process finds them.
    reload_runs(inner);
    drop(refresh_runs(inner, true)?);
    Ok(())
}

/// For `check`: whether each run of `ids` is stored (after a refresh).
pub(crate) fn stored(inner: &Inner, exclusive: bool, ids: &[RunId]) -> Result<Vec<bool>> {
    let st = refresh_runs(inner, exclusive)?;
    run_table::contains_each(&st, ids)
}

/// For `check`: forces a fresh look at the index, as a new process takes.
pub(crate) fn reload_runs(inner: &Inner) {
    journal_index::reload(&inner.runs);
}

/// Rewrites the run journal with one `put` line per live run, oldest
/// first, when deleted or superseded lines make up most of it (see
/// FORMAT.md, "Compaction"), streaming from the index. The caller holds
/// the exclusive logs lock and has synced its appends. Returns whether it
/// rewrote.
pub(crate) fn compact_journal(inner: &Inner) -> Result<bool> {
    let mut st = refresh_runs(inner, true)?;
    let path = journal_path(inner)?;
    let Some(meta) = fsutil::regular_file_meta(&path)? else {
        return Ok(false);
    };
    if !crate::lifecycle::worth_compacting(meta.len(), run_table::live_bytes(&st)?) {
        return Ok(false);
    }
    let dir = inner.root.dir(&["logs"])?;
    fsutil::write_atomic_with(&dir, "runs.ndjson", inner.durability, |w| {
        run_table::each_oldest_first(&st, |run| {
            w.write_all(&to_line(&RunLine::Put { run })?)
                .map_err(|e| fsutil::io_err("writing a temp file in", &dir, e))
        })
    })?;
    let file = fsutil::open_read(&path)?
        .ok_or_else(|| Error::backend("the compacted run journal vanished", None))?;
    // The table is unchanged; only the file under it is new.
    st.moved_to::<RunIndex>(&file, &path)?;
    Ok(true)
}
