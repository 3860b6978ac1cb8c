//! [`ArtifactStore`] on SQLite: bytes in chunk rows of one blob, streamed in
//! and out in bounded memory, verified by SHA-256 on read.
//!
//! `put` hashes the body while it writes full chunks into a staging blob
//! (short write transactions, so a slow uploader never holds the write lock
//! for long), then decides with [`decide_put`] and links or discards the
//! blob in one final transaction. A body that fits one chunk takes a single
//! transaction.

use async_trait::async_trait;
use runstore_core::{
    ArtifactInfo, ArtifactKey, ArtifactPath, ArtifactQuery, ArtifactReader, ArtifactStore,
    ByteStream, ChunkFuture, ChunkSource, ChunkedReader, Error, Page, Phase, PutDecision,
    PutOptions, Result, RunId, Sha256Digest, Sha256Hasher, Timestamp, VerifyingReader, Written,
    decide_put, validate_limit,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::io::AsyncReadExt;

use crate::SqliteStore;
use crate::error::Ctx;
use crate::rows;
use crate::select::{Order, Select, query_rows};

/// Bytes per chunk row: large enough that per-row overhead is small, small
/// enough that a few in flight stay well under a few MiB.
pub(crate) const CHUNK_SIZE: usize = 256 * 1024;

const COLUMNS: &str =
    "run_id, phase, path, sha256, size, content_type, created_by, created_at, blob_id";

type RawInfo = (
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    i64,
);

/// The info and the blob id of a row.
fn convert(
    (run, phase, path, sha, size, ctype, by, at, blob): RawInfo,
) -> Result<(ArtifactInfo, i64)> {
    let loc = format!("artifacts row {run}/{phase}/{path}");
    let key = ArtifactKey::new(
        rows::parsed(&loc, run, RunId::new)?,
        rows::parsed(&loc, phase, Phase::new)?,
        rows::parsed(&loc, path, ArtifactPath::new)?,
    );
    Ok((
        ArtifactInfo {
            key,
            sha256: Sha256Digest::from_hex(&sha)
                .map_err(|e| Error::corrupt(&loc, e.to_string()))?,
            size: rows::unsigned(&loc, size)?,
            content_type: ctype,
            created_by: by,
            created_at: rows::ts(&loc, at)?,
        },
        blob,
    ))
}

fn load(conn: &Connection, key: &ArtifactKey) -> Result<Option<(ArtifactInfo, i64)>> {
    // A key lookup: one row at most.
    Ok(query_rows(
        conn,
        &format!("SELECT {COLUMNS} FROM artifacts WHERE run_id = ?1 AND phase = ?2 AND path = ?3"),
        params![key.run_id.as_str(), key.phase.as_str(), key.path.as_str()],
        convert,
        "reading an artifact",
    )?
    .pop())
}

fn not_found(key: &ArtifactKey) -> Error {
    Error::not_found(format!("artifact {key}"))
}

fn new_blob(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("INSERT INTO artifact_blobs (staged_at, complete) VALUES (?1, 0)")
        .and_then(|mut s| s.insert([Timestamp::now().as_micros()]))
        .ctx("staging an artifact blob")
}

fn write_chunk(conn: &Connection, blob: i64, idx: i64, data: &[u8]) -> Result<()> {
    conn.prepare_cached("INSERT INTO artifact_chunks (blob_id, idx, data) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![blob, idx, data]))
        .ctx("writing an artifact chunk")?;
    Ok(())
}

fn delete_blob(conn: &Connection, blob: i64) -> Result<()> {
    // Chunks go with it (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM artifact_blobs WHERE id = ?1")
        .and_then(|mut s| s.execute([blob]))
        .ctx("deleting an artifact blob")?;
    Ok(())
}

/// Reads up to `CHUNK_SIZE` bytes; fewer only at the end of the body.
async fn read_chunk(body: &mut ByteStream, key: &ArtifactKey) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(CHUNK_SIZE);
    let mut limited = body.take(CHUNK_SIZE as u64);
    limited
        .read_to_end(&mut buf)
        .await
        .map_err(|e| Error::io(format!("reading the body of artifact {key}"), e))?;
    Ok(buf)
}

impl SqliteStore {
    /// Removes a staged blob after a failed put (best effort: a blob left
    /// behind is removed on a later open).
    async fn discard_staged(&self, blob: Option<i64>) {
        if let Some(blob) = blob
            && let Err(e) = self.write(move |conn| delete_blob(conn, blob)).await
        {
            tracing::warn!(blob, error = %e, "could not remove a staged artifact blob");
        }
    }

    async fn stage_chunks(
        &self,
        key: &ArtifactKey,
        body: &mut ByteStream,
        staged: &mut Option<i64>,
        hasher: &mut Sha256Hasher,
        size: &mut u64,
    ) -> Result<(i64, Vec<u8>)> {
        let mut idx = 0i64;
        let mut chunk = read_chunk(body, key).await?;
        loop {
            hasher.update(&chunk);
            *size += chunk.len() as u64;
            if chunk.len() < CHUNK_SIZE {
                return Ok((idx, chunk));
            }
            // A full chunk: more may follow, so stage it now, while the
            // next one is read and hashed.
            let blob = *staged;
            let stage = self.write_tx("staging an artifact chunk", move |tx| {
                let blob = match blob {
                    Some(b) => b,
                    None => new_blob(tx)?,
                };
                write_chunk(tx, blob, idx, &chunk)?;
                Ok(blob)
            });
            let (stored, next) = futures_util::future::join(stage, read_chunk(body, key)).await;
            // The staged blob is recorded first, so a failed read still
            // discards what was staged.
            *staged = Some(stored?);
            chunk = next?;
            idx += 1;
        }
    }
}

/// The chunk rows of one blob, for [`ChunkedReader`]: each fetched in a
/// short read of its own, so a slow consumer holds no connection and no
/// snapshot.
struct BlobChunks {
    store: SqliteStore,
    key: ArtifactKey,
    blob: i64,
}

impl ChunkSource for BlobChunks {
    fn chunk(&self, idx: u64) -> ChunkFuture {
        let (store, key, blob) = (self.store.clone(), self.key.clone(), self.blob);
        Box::pin(async move {
            let idx = rows::signed("chunk index", idx)?;
            store
                .read(move |conn| {
                    let data = conn
                        .prepare_cached(
                            "SELECT data FROM artifact_chunks WHERE blob_id = ?1 AND idx = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![blob, idx], |r| r.get::<_, Vec<u8>>(0))
                                .optional()
                        })
                        .ctx("reading an artifact chunk")?;
                    if data.is_some() {
                        return Ok(data);
                    }
                    let exists = conn
                        .prepare_cached("SELECT 1 FROM artifact_blobs WHERE id = ?1")
                        .and_then(|mut s| s.query_row([blob], |_| Ok(())).optional())
                        .ctx("reading an artifact chunk")?
                        .is_some();
                    if exists {
                        return Err(Error::corrupt(
                            format!("artifact_chunks ({blob}, {idx})"),
                            format!("chunk {idx} of artifact {key} is missing"),
                        ));
                    }
                    // The blob is gone: replaced or deleted since the read began.
                    Ok(None)
                })
                .await
        })
    }
}

#[async_trait]
impl ArtifactStore for SqliteStore {
    async fn put(
        &self,
        key: &ArtifactKey,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        options.validate()?;
        let mut staged = None;
        let mut hasher = Sha256Hasher::new();
        let mut size = 0u64;
        let (last_idx, last) = match self
            .stage_chunks(key, &mut body, &mut staged, &mut hasher, &mut size)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                self.discard_staged(staged).await;
                return Err(e);
            }
        };
        let hash = hasher.finish();
        let info = options.info_for(key.clone(), hash, size);
        let size_i64 = rows::signed("size", size)?;
        let k = key.clone();
        let result = self
            .write_tx("storing an artifact", move |tx| {
                let stored = load(tx, &k)?;
                let decision = decide_put(&k, stored.as_ref().map(|(i, _)| &i.sha256), &hash, options.overwrite_token.as_ref())?;
                if decision == PutDecision::Unchanged
                    && let Some((i, _)) = stored
                {
                    if let Some(b) = staged {
                        delete_blob(tx, b)?;
                    }
                    return Ok(Written::unchanged(i));
                }
                let blob = match staged {
                    Some(b) => b,
                    None => new_blob(tx)?,
                };
                if !last.is_empty() {
                    write_chunk(tx, blob, last_idx, &last)?;
                }
                tx.prepare_cached("UPDATE artifact_blobs SET complete = 1 WHERE id = ?1")
                    .and_then(|mut s| s.execute([blob]))
                    .ctx("completing an artifact blob")?;
                let args = params![
                    k.run_id.as_str(),
                    k.phase.as_str(),
                    k.path.as_str(),
                    info.sha256.to_hex(),
                    size_i64,
                    info.content_type,
                    info.created_by,
                    info.created_at.as_micros(),
                    blob
                ];
                match stored {
                    Some((_, old)) => {
                        tx.prepare_cached(
                            "UPDATE artifacts SET sha256 = ?4, size = ?5, content_type = ?6, created_by = ?7,
                               created_at = ?8, blob_id = ?9
                             WHERE run_id = ?1 AND phase = ?2 AND path = ?3",
                        )
                        .and_then(|mut s| s.execute(args))
                        .ctx("replacing an artifact")?;
                        delete_blob(tx, old)?;
                    }
                    None => {
                        tx.prepare_cached(&format!(
                            "INSERT INTO artifacts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                        ))
                        .and_then(|mut s| s.execute(args))
                        .ctx("inserting an artifact")?;
                    }
                }
                Ok(Written::inserted(info))
            })
            .await;
        if result.is_err() {
            // The transaction rolled back; the staged chunks are not needed.
            self.discard_staged(staged).await;
        }
        result
    }

    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
        let k = key.clone();
        let (info, blob, count) = self
            .read_tx("opening an artifact", move |tx| {
                let (info, blob) = load(tx, &k)?.ok_or_else(|| not_found(&k))?;
                let count: i64 = tx
                    .prepare_cached("SELECT count(*) FROM artifact_chunks WHERE blob_id = ?1")
                    .and_then(|mut s| s.query_row([blob], |r| r.get(0)))
                    .ctx("counting artifact chunks")?;
                Ok((info, blob, count))
            })
            .await?;
        let source = BlobChunks {
            store: self.clone(),
            key: key.clone(),
            blob,
        };
        let count = rows::unsigned("artifact_chunks", count)?;
        let stream = ChunkedReader::new(std::sync::Arc::new(source), count, key.clone());
        let body = VerifyingReader::new(stream, &info);
        Ok(ArtifactReader {
            info,
            body: Box::new(body),
        })
    }

    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
        let k = key.clone();
        self.read(move |conn| load(conn, &k)?.map(|(i, _)| i).ok_or_else(|| not_found(&k)))
            .await
    }

    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<ArtifactKey> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let text = |t: &str| Value::Text(t.into());
        let mut select = Select::from(COLUMNS, "artifacts");
        select
            .and_eq_opt("run_id", query.run_id.as_ref().map(|r| text(r.as_str())))
            .and_eq_opt("phase", query.phase.as_ref().map(|p| text(p.as_str())));
        let cursor = after.map(|c| {
            vec![
                text(c.run_id.as_str()),
                text(c.phase.as_str()),
                text(c.path.as_str()),
            ]
        });
        let select = select.page(
            Order::Asc,
            &["run_id", "phase", "path"],
            cursor,
            Some(limit + 1),
        );
        let items = self
            .read(move |conn| {
                select.rows(conn, |r| convert(r).map(|(i, _)| i), "listing artifacts")
            })
            .await?;
        Ok(Page::from_overfetch(items, limit, |i| i.key.clone()))
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        let k = key.clone();
        self.write_tx("deleting an artifact", move |tx| {
            let (_, blob) = load(tx, &k)?.ok_or_else(|| not_found(&k))?;
            tx.prepare_cached(
                "DELETE FROM artifacts WHERE run_id = ?1 AND phase = ?2 AND path = ?3",
            )
            .and_then(|mut s| {
                s.execute(params![
                    k.run_id.as_str(),
                    k.phase.as_str(),
                    k.path.as_str()
                ])
            })
            .ctx("deleting an artifact")?;
            delete_blob(tx, blob)
        })
        .await
    }

    async fn delete_run_artifacts(
        &self,
        run_id: &RunId,
    ) -> Result<runstore_core::ArtifactsDeleted> {
        let run_id = run_id.clone();
        self.write_tx("deleting a run's artifacts", move |tx| {
            crate::lifecycle::delete_run_artifacts(tx, &run_id)
        })
        .await
    }

    async fn delete_runs_artifacts(
        &self,
        run_ids: &[RunId],
    ) -> Result<Vec<runstore_core::ArtifactsDeleted>> {
        crate::lifecycle::check_batch(run_ids)?;
        let run_ids = run_ids.to_vec();
        self.write_tx("deleting the artifacts of runs", move |tx| {
            crate::lifecycle::delete_runs_artifacts(tx, &run_ids)
        })
        .await
    }
}
