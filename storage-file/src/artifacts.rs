//! Artifacts: bytes at `artifacts/<run_id>/phases/<phase>/<path…>` (mapped
//! segment by segment), their info in `artifacts/<run_id>/info.ndjson`
//! (journal, latest line for a key wins). Bodies are spooled to `tmp/`
//! while hashed, then placed by rename under the artifacts lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use runstore_core::{
    ArtifactCursor, ArtifactInfo, ArtifactKey, ArtifactQuery, ArtifactReader, ArtifactStore,
    ByteStream, Error, HashingReader, Page, PutDecision, PutOptions, Result, RunId,
    VerifyingReader, Written, decide_put, validate_limit,
};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::{FileStore, FindingKind, Inner};

pub(crate) const LOCK: &str = "artifacts.lock";
pub(crate) const INFO_FILE: &str = "info.ndjson";
/// Bytes per read or write of an artifact's file: one blocking-thread hop
/// each, so large enough that hops cost little next to the I/O.
const IO_CHUNK: usize = 1 << 20;

/// One line of `artifacts/<run_id>/info.ndjson`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum InfoLine {
    Put { info: ArtifactInfo },
    Delete { key: ArtifactKey },
}

fn not_found(key: &ArtifactKey) -> Error {
    Error::not_found(format!("artifact {key}"))
}

/// The path components of an artifact's bytes under the root. Each
/// folder segment goes under `d/` and the last segment under `f/`, so the
/// paths `a/x` and `a/x/y` can both exist (a file and a folder never share
/// a name), and every name stays the segment itself (at most 255 bytes).
pub(crate) fn blob_parts(key: &ArtifactKey) -> Vec<&str> {
    let mut parts = vec![
        "artifacts",
        key.run_id.as_str(),
        "phases",
        key.phase.as_str(),
    ];
    let segments: Vec<&str> = key.path.segments().collect();
    if let Some((last, dirs)) = segments.split_last() {
        for d in dirs {
            parts.push("d");
            parts.push(d);
        }
        parts.push("f");
        parts.push(last);
    }
    parts
}

/// The current info of every artifact of a run, read from its journal;
/// corrupt lines are skipped and reported.
pub(crate) fn run_infos(inner: &Inner, run: &RunId) -> Result<BTreeMap<ArtifactKey, ArtifactInfo>> {
    let path = inner.root.path(&["artifacts", run.as_str(), INFO_FILE])?;
    let mut out = BTreeMap::new();
    let Some(mut file) = fsutil::open_read(&path)? else {
        return Ok(out);
    };
    let read = fsutil::read_lines(&mut file, &path, 0)?;
    for (off, line) in read.lines() {
        let parsed = line
            .map_err(|()| "not UTF-8".to_string())
            .and_then(|l| serde_json::from_str::<InfoLine>(l).map_err(|e| e.to_string()));
        match parsed {
            Ok(InfoLine::Put { info }) if info.key.run_id == *run => {
                out.insert(info.key.clone(), info);
            }
            Ok(InfoLine::Delete { key }) if key.run_id == *run => {
                out.remove(&key);
            }
            Ok(_) => inner.report(
                FindingKind::CorruptLine,
                &path,
                off,
                "skipped a record of another run".into(),
                false,
            ),
            Err(e) => inner.report(
                FindingKind::CorruptLine,
                &path,
                off,
                format!("skipped an unreadable artifact record: {e}"),
                false,
            ),
        }
    }
    Ok(out)
}

/// Runs that have an artifacts folder, bytewise ascending.
pub(crate) fn runs_with_artifacts(inner: &Inner) -> Result<Vec<RunId>> {
    let dir = inner.root.path(&["artifacts"])?;
    Ok(fsutil::list_dir(&dir)?
        .into_iter()
        .filter(|(_, ft)| ft.is_dir())
        .filter_map(|(n, _)| RunId::new(n).ok())
        .collect())
}

fn to_line(line: &InfoLine) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec(line)
        .map_err(|e| Error::backend("encoding artifact info", Some(e.into())))?;
    v.push(b'\n');
    Ok(v)
}

/// Under the exclusive lock: decides and, if needed, places the spooled
/// file and records its info.
fn place(
    inner: &Inner,
    key: &ArtifactKey,
    spool: tempfile::NamedTempFile,
    hash: runstore_core::Sha256Digest,
    size: u64,
    options: &PutOptions,
) -> Result<Written<ArtifactInfo>> {
    let guard = fsutil::take_lock(&inner.root, LOCK, true)?;
    let infos = run_infos(inner, &key.run_id)?;
    let stored = infos.get(key);
    match decide_put(
        key,
        stored.map(|i| &i.sha256),
        &hash,
        options.overwrite_token.as_ref(),
    )? {
        PutDecision::Unchanged => {
            // Checked just above: `Unchanged` needs a stored info.
            let info = stored.cloned().ok_or_else(|| not_found(key))?;
            Ok(Written::unchanged(info))
        }
        PutDecision::Insert | PutDecision::Replace => {
            let info = options.info_for(key.clone(), hash, size);
            let parts = blob_parts(key);
            let (name, dirs) = parts.split_last().ok_or_else(|| not_found(key))?;
            let dir = inner.root.dir(dirs)?;
            let dest = inner.root.path(&parts)?;
            if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                return Err(Error::conflict(format!(
                    "artifact {key} cannot be stored: {name} is a folder of other artifacts in this backend"
                )));
            }
            spool
                .persist(&dest)
                .map_err(|e| fsutil::io_err("placing artifact at", &dest, e.error))?;
            if inner.durability != crate::Durability::None {
                fsutil::sync_dir(&dir)?;
            }
            let journal = inner
                .root
                .path(&["artifacts", key.run_id.as_str(), INFO_FILE])?;
            let (ticket, _) = fsutil::append(
                &journal,
                &to_line(&InfoLine::Put { info: info.clone() })?,
                inner.durability,
                &inner.syncer,
            )?;
            drop(guard);
            if let Some(t) = ticket {
                inner.syncer.sync(t)?;
            }
            Ok(Written::inserted(info))
        }
    }
}

fn spool_dir(inner: &Inner) -> Result<PathBuf> {
    inner.root.dir(&["tmp"])
}

/// A new spool file in the root's `tmp/` with the store's file mode, and a
/// handle to write it through.
fn spool_file(inner: &Inner) -> Result<(tempfile::NamedTempFile, std::fs::File)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = spool_dir(inner)?;
    let tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(fsutil::FILE_MODE))
        .tempfile_in(&dir)
        .map_err(|e| fsutil::io_err("creating a spool file in", &dir, e))?;
    let handle = tmp
        .as_file()
        .try_clone()
        .map_err(|e| fsutil::io_err("opening", tmp.path(), e))?;
    Ok((tmp, handle))
}

/// Makes the spooled bytes durable (unless the store is not durable)
/// before they are placed.
fn finish_spool(inner: &Inner, tmp: &tempfile::NamedTempFile, handle: std::fs::File) -> Result<()> {
    if inner.durability != crate::Durability::None {
        handle
            .sync_all()
            .map_err(|e| fsutil::io_err("fsync of", tmp.path(), e))?;
    }
    Ok(())
}

#[async_trait]
impl ArtifactStore for FileStore {
    async fn put(
        &self,
        key: &ArtifactKey,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        options.validate()?;
        use tokio::io::AsyncReadExt;
        // A body of at most IO_CHUNK bytes (most artifacts) is read whole,
        // written and synced on a blocking thread while it is hashed here,
        // then placed.
        let mut head = Vec::with_capacity(64 * 1024);
        (&mut body)
            .take(IO_CHUNK as u64 + 1)
            .read_to_end(&mut head)
            .await
            .map_err(|e| Error::io(format!("reading the body of artifact {key}"), e))?;
        let key = key.clone();
        if head.len() <= IO_CHUNK {
            let data = std::sync::Arc::new(head);
            let (inner, bytes) = (self.inner.clone(), data.clone());
            let spooled = tokio::task::spawn_blocking(move || {
                let (tmp, mut file) = spool_file(&inner)?;
                use std::io::Write;
                file.write_all(&bytes)
                    .map_err(|e| fsutil::io_err("spooling artifact to", tmp.path(), e))?;
                finish_spool(&inner, &tmp, file)?;
                Ok::<_, Error>(tmp)
            });
            let hash = runstore_core::Sha256Digest::of(&data);
            let size = data.len() as u64;
            let tmp = spooled
                .await
                .map_err(|e| Error::backend("a file task failed", Some(e.into())))??;
            return self
                .inner
                .blocking(move |inner| place(inner, &key, tmp, hash, size, &options))
                .await;
        }
        // Larger: spool to a temp file in the root while hashing, so any
        // size streams in bounded memory and nothing is locked meanwhile.
        let (tmp, handle) = self.inner.blocking(spool_file).await?;
        // Large buffers on both sides: every write to the file is a hop to
        // a blocking thread, so it gets IO_CHUNK bytes at a time, and the
        // file writes one chunk while the next is read and hashed.
        let mut reader = tokio::io::BufReader::with_capacity(
            IO_CHUNK,
            HashingReader::new(std::io::Cursor::new(head).chain(body)),
        );
        let mut out =
            tokio::io::BufWriter::with_capacity(IO_CHUNK, tokio::fs::File::from_std(handle));
        tokio::io::copy_buf(&mut reader, &mut out)
            .await
            .map_err(|e| Error::io(format!("reading the body of artifact {key}"), e))?;
        use tokio::io::AsyncWriteExt;
        out.flush()
            .await
            .map_err(|e| Error::io(format!("spooling artifact {key}"), e))?;
        let handle = out.into_inner().into_std().await;
        let (hash, size) = reader.into_inner().finish();
        self.inner
            .blocking(move |inner| {
                finish_spool(inner, &tmp, handle)?;
                place(inner, &key, tmp, hash, size, &options)
            })
            .await
    }

    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
        let key = key.clone();
        let (info, file) = self
            .inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let info = run_infos(inner, &key.run_id)?
                    .remove(&key)
                    .ok_or_else(|| not_found(&key))?;
                let path = inner.root.path(&blob_parts(&key))?;
                let file = fsutil::open_read(&path)?.ok_or_else(|| {
                    Error::corrupt(
                        format!("artifact {key}"),
                        format!("its bytes ({}) are missing", path.display()),
                    )
                })?;
                Ok((info, file))
            })
            .await?;
        // Each read of a tokio file is a hop to a blocking thread: read
        // IO_CHUNK bytes per hop, whatever size the caller reads in.
        let body = VerifyingReader::new(
            tokio::io::BufReader::with_capacity(IO_CHUNK, tokio::fs::File::from_std(file)),
            &info,
        );
        Ok(ArtifactReader {
            info,
            body: Box::new(body),
        })
    }

    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
        let key = key.clone();
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                run_infos(inner, &key.run_id)?
                    .remove(&key)
                    .ok_or_else(|| not_found(&key))
            })
            .await
    }

    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<ArtifactCursor> =
            query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        self.inner
            .blocking(move |inner| {
                let _g = fsutil::take_lock(&inner.root, LOCK, false)?;
                let runs = match &query.run_id {
                    Some(r) => vec![r.clone()],
                    None => runs_with_artifacts(inner)?,
                };
                let mut items = Vec::new();
                for run in runs {
                    if after.as_ref().is_some_and(|a| run < a.run_id) {
                        continue;
                    }
                    for (key, info) in run_infos(inner, &run)? {
                        if query.matches(&key) && after.as_ref().is_none_or(|a| key > *a) {
                            items.push(info);
                        }
                        if items.len() > limit {
                            break;
                        }
                    }
                    if items.len() > limit {
                        break;
                    }
                }
                Ok(Page::from_overfetch(items, limit, |i| i.key.clone()))
            })
            .await
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        let key = key.clone();
        self.inner
            .blocking(move |inner| {
                let guard = fsutil::take_lock(&inner.root, LOCK, true)?;
                if !run_infos(inner, &key.run_id)?.contains_key(&key) {
                    return Err(not_found(&key));
                }
                // Record first, bytes second: a crash in between leaves an
                // orphan file that `check` reports and removes.
                let journal = inner
                    .root
                    .path(&["artifacts", key.run_id.as_str(), INFO_FILE])?;
                let (ticket, _) = fsutil::append(
                    &journal,
                    &to_line(&InfoLine::Delete { key: key.clone() })?,
                    inner.durability,
                    &inner.syncer,
                )?;
                if let Some(t) = ticket {
                    inner.syncer.sync(t)?;
                }
                fsutil::remove_file(&inner.root.path(&blob_parts(&key))?, inner.durability)?;
                drop(guard);
                Ok(())
            })
            .await
    }

    async fn delete_run_artifacts(
        &self,
        run_id: &RunId,
    ) -> Result<runstore_core::ArtifactsDeleted> {
        let run_id = run_id.clone();
        self.inner
            .blocking(move |inner| crate::lifecycle::delete_run_artifacts(inner, &run_id))
            .await
    }
}
