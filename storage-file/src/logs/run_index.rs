//! The run index `index/runs.ndjson`: a checkpoint of the run table, so
//! that a process replays only the journal after it (FORMAT.md).

use std::fs::File;
use std::path::{Path, PathBuf};

use runstore_core::{Result, Run, Sha256Digest};
use serde::{Deserialize, Serialize};

use super::journal::to_line;
use super::run_table::RunsState;
use crate::{Inner, fsutil};

const INDEX_FORMAT: u32 = 1;
/// How many bytes of the journal the index header fingerprints.
const TAIL_PRINT: u64 = 4096;

/// First line of `index/runs.ndjson`.
#[derive(Serialize, Deserialize, Debug)]
struct IndexHeader {
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

pub(super) fn index_path(inner: &Inner) -> Result<PathBuf> {
    inner.root.dir(&["index"])?;
    inner.root.path(&["index", "runs.ndjson"])
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
pub(super) type IndexLoad = std::result::Result<(u64, Vec<Run>), Option<String>>;

/// Loads the index file if it matches the journal; `Err(reason)` if it is
/// missing (`None`) or stale (`Some(why)`).
pub(super) fn load_index(
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
pub(super) fn write_index(
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
