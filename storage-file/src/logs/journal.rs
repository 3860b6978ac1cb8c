//! The run journal `logs/runs.ndjson` (latest line per run wins): its
//! lines, appends, replay into the run table from the run index on,
//! open-time recovery and compaction.

use std::collections::HashSet;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use runstore_core::{Error, Result, Run, RunId};
use serde::{Deserialize, Serialize};

use super::lock::LOCK;
use super::run_index::{index_path, load_index, write_index};
use super::run_table::RunsState;
use crate::fsutil::{self, SyncTicket, file_id, lock_mutex};
use crate::{FindingKind, Inner};

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
    // Force a fresh look at the files as this process finds them.
    lock_mutex(&inner.runs).clear();
    drop(refresh_runs(inner, true)?);
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
