//! [`ArtifactStore`] on PostgreSQL: bytes in `bytea` chunk rows written
//! while hashing into a staged blob, then linked (or discarded) in one
//! transaction; reads stream chunk by chunk through a verifying reader.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use runstore_core::{
    ArtifactInfo, ArtifactKey, ArtifactPath, ArtifactQuery, ArtifactReader, ArtifactStore,
    ByteStream, ChunkFuture, ChunkSource, ChunkedReader, Error, Page, Phase, PutDecision,
    PutOptions, Result, RunId, Sha256Digest, Sha256Hasher, Timestamp, VerifyingReader, Written,
    decide_put, validate_limit,
};
use tokio::io::AsyncReadExt;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PostgresStore;
use crate::client::with_tx;
use crate::error::Fail;
use crate::filter::{Where, overfetch_limit};
use crate::rows::{stored, ts};

/// Bytes per chunk row: large enough that a 1 GiB artifact is 2,048 rows,
/// small enough that a put or get holds little memory.
pub(crate) const CHUNK_SIZE: usize = 512 * 1024;

/// Staged blobs older than this and linked to no artifact are leftovers of
/// a crashed writer, removed on connect.
pub(crate) const STALE_STAGED_MICROS: i64 = 24 * 3600 * 1_000_000;

const INFO_COLUMNS: &str =
    "run_id, phase, path, sha256, size, content_type, created_by, created_at";

fn info_of(row: &Row) -> Result<ArtifactInfo> {
    let run_id: String = row.get(0);
    let phase: String = row.get(1);
    let path: String = row.get(2);
    let loc = || format!("artifacts {run_id}/{phase}/{path}");
    let size: i64 = row.get(4);
    Ok(ArtifactInfo {
        key: ArtifactKey::new(
            stored(RunId::new(run_id.clone()), loc)?,
            stored(Phase::new(phase.clone()), loc)?,
            stored(ArtifactPath::new(path.clone()), loc)?,
        ),
        sha256: stored(Sha256Digest::from_hex(row.get(3)), loc)?,
        size: stored(
            u64::try_from(size).map_err(|_| Error::invalid("size", "negative")),
            loc,
        )?,
        content_type: row.get(5),
        created_by: row.get(6),
        created_at: ts(loc, row.get(7))?,
    })
}

fn not_found(key: &ArtifactKey) -> Error {
    Error::not_found(format!("artifact {key}"))
}

/// The primary key of an artifact row as stored.
fn key_strs(key: &ArtifactKey) -> [&str; 3] {
    [key.run_id.as_str(), key.phase.as_str(), key.path.as_str()]
}

impl PostgresStore {
    /// Removes staged blobs that a crashed writer left behind.
    pub(crate) async fn remove_stale_blobs(&self) -> Result<()> {
        let cutoff = Timestamp::now().as_micros() - STALE_STAGED_MICROS;
        self.execute(
            "removing stale staged artifact blobs",
            "DELETE FROM {s}.blobs b WHERE b.staged_at < $1
             AND NOT EXISTS (SELECT 1 FROM {s}.artifacts a WHERE a.blob_id = b.id)",
            &[&cutoff],
        )
        .await?;
        Ok(())
    }

    /// Deletes a staged blob that will not be linked; best effort (a
    /// leftover is removed by a later connect).
    async fn discard_blob(&self, blob_id: i64) {
        let r = self
            .execute(
                "discarding a staged artifact blob",
                "DELETE FROM {s}.blobs WHERE id = $1",
                &[&blob_id],
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(blob_id, error = %e, "could not discard a staged artifact blob");
        }
    }

    /// Writes `body` as chunk rows of a new staged blob, hashing as it goes.
    /// Returns the blob id, digest, size and chunk count.
    async fn stage_body(
        &self,
        key: &ArtifactKey,
        body: &mut ByteStream,
        blob_id: i64,
    ) -> Result<(Sha256Digest, u64, i32)> {
        let mut hasher = Sha256Hasher::new();
        let mut size: u64 = 0;
        let mut idx: i32 = 0;
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            let mut filled = 0;
            while filled < CHUNK_SIZE {
                let n = body
                    .read(&mut buf[filled..])
                    .await
                    .map_err(|e| Error::io(format!("reading the body of artifact {key}"), e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let chunk = &buf[..filled];
            hasher.update(chunk);
            size += filled as u64;
            let what = format!("writing chunk {idx} of artifact {key}");
            self.execute(
                &what,
                "INSERT INTO {s}.blob_chunks (blob_id, idx, data) VALUES ($1, $2, $3)",
                &[&blob_id, &idx, &chunk],
            )
            .await?;
            idx = idx
                .checked_add(1)
                .ok_or_else(|| Error::invalid("body", format!("artifact {key} is too large")))?;
            if filled < CHUNK_SIZE {
                break;
            }
        }
        Ok((hasher.finish(), size, idx))
    }

    /// Links a staged blob to `key` following [`decide_put`], in one
    /// transaction with the stored row locked.
    async fn link_attempt(
        &self,
        tx: &Transaction<'_>,
        key: &ArtifactKey,
        info: &ArtifactInfo,
        chunks: i32,
        blob_id: i64,
        token: Option<&Sha256Digest>,
    ) -> std::result::Result<(Written<ArtifactInfo>, Option<i64>), Fail> {
        let select = tx
            .prepare_cached(&self.sql(&format!(
                "SELECT {INFO_COLUMNS}, blob_id FROM {{s}}.artifacts
                 WHERE run_id = $1 AND phase = $2 AND path = $3 FOR UPDATE"
            )))
            .await?;
        let k = key_strs(key);
        let current = tx.query_opt(&select, &[&k[0], &k[1], &k[2]]).await?;
        let current = match &current {
            Some(row) => Some((info_of(row)?, row.get::<_, i64>(8))),
            None => None,
        };
        let decision = decide_put(
            key,
            current.as_ref().map(|(i, _)| &i.sha256),
            &info.sha256,
            token,
        )?;
        let sha = info.sha256.to_hex();
        let size = i64::try_from(info.size).unwrap_or(i64::MAX);
        let created_at = info.created_at.as_micros();
        // The row as stored, in the column order of INFO_COLUMNS, chunks,
        // blob_id: the same parameters for a replace and an insert.
        let row: [&(dyn ToSql + Sync); 10] = [
            &k[0],
            &k[1],
            &k[2],
            &sha,
            &size,
            &info.content_type,
            &info.created_by,
            &created_at,
            &chunks,
            &blob_id,
        ];
        match (decision, current) {
            (PutDecision::Unchanged, Some((stored, _))) => {
                // The staged copy is not needed.
                Ok((Written::unchanged(stored), Some(blob_id)))
            }
            (PutDecision::Replace, Some((_, old_blob))) => {
                let st = tx
                    .prepare_cached(&self.sql(
                        "UPDATE {s}.artifacts SET sha256 = $4, size = $5, content_type = $6,
                             created_by = $7, created_at = $8, chunks = $9, blob_id = $10
                         WHERE run_id = $1 AND phase = $2 AND path = $3",
                    ))
                    .await?;
                tx.execute(&st, &row).await?;
                let del = tx
                    .prepare_cached(&self.sql("DELETE FROM {s}.blobs WHERE id = $1"))
                    .await?;
                tx.execute(&del, &[&old_blob]).await?;
                Ok((Written::inserted(info.clone()), None))
            }
            (PutDecision::Insert, None) => {
                // A racing first writer makes this a unique violation: the
                // retry locks its row and decides again.
                let st = tx
                    .prepare_cached(&self.sql(&format!(
                        "INSERT INTO {{s}}.artifacts ({INFO_COLUMNS}, chunks, blob_id)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                    )))
                    .await?;
                tx.execute(&st, &row).await?;
                Ok((Written::inserted(info.clone()), None))
            }
            _ => Err(Fail::Core(Error::backend(
                format!("storing artifact {key}: inconsistent overwrite decision"),
                None,
            ))),
        }
    }
}

#[async_trait]
impl ArtifactStore for PostgresStore {
    async fn put(
        &self,
        key: &ArtifactKey,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        options.validate()?;
        let what = format!("storing artifact {key}");
        let now = Timestamp::now().as_micros();
        let blob_id: i64 = self
            .query_opt(
                &what,
                "INSERT INTO {s}.blobs (staged_at) VALUES ($1) RETURNING id",
                &[&now],
            )
            .await?
            .ok_or_else(|| Error::backend(format!("{what}: no blob id returned"), None))?
            .get(0);
        let staged = self.stage_body(key, &mut body, blob_id).await;
        let (sha, size, chunks) = match staged {
            Ok(s) => s,
            Err(e) => {
                self.discard_blob(blob_id).await;
                return Err(e);
            }
        };
        let info = options.info_for(key.clone(), sha, size);
        let token = options.overwrite_token.as_ref();
        let linked = with_tx!(self, &what, |tx| {
            self.link_attempt(&tx, key, &info, chunks, blob_id, token)
                .await
        });
        match linked {
            Ok((written, discard)) => {
                if let Some(b) = discard {
                    self.discard_blob(b).await;
                }
                Ok(written)
            }
            Err(e) => {
                self.discard_blob(blob_id).await;
                Err(e)
            }
        }
    }

    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
        let what = format!("reading artifact {key}");
        let k = key_strs(key);
        let row = self
            .query_opt(
                &what,
                &format!(
                    "SELECT {INFO_COLUMNS}, blob_id, chunks FROM {{s}}.artifacts
                     WHERE run_id = $1 AND phase = $2 AND path = $3"
                ),
                &[&k[0], &k[1], &k[2]],
            )
            .await?
            .ok_or_else(|| not_found(key))?;
        let (info, blob_id, chunks) = (info_of(&row)?, row.get::<_, i64>(8), row.get::<_, i32>(9));
        let source = BlobChunks {
            store: self.clone(),
            key: key.clone(),
            blob_id,
        };
        let count = u64::try_from(chunks)
            .map_err(|_| Error::corrupt(format!("artifacts ({key})"), "negative chunk count"))?;
        let chunks = ChunkedReader::new(std::sync::Arc::new(source), count, key.clone());
        let body = VerifyingReader::new(chunks, &info);
        Ok(ArtifactReader {
            info,
            body: Box::new(body),
        })
    }

    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
        let k = key_strs(key);
        self.find(
            &format!("reading the info of artifact {key}"),
            &format!(
                "SELECT {INFO_COLUMNS} FROM {{s}}.artifacts WHERE run_id = $1 AND phase = $2 AND path = $3"
            ),
            &[&k[0], &k[1], &k[2]],
            info_of,
            || format!("artifact {key}"),
        )
        .await
    }

    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<ArtifactKey> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let mut w = Where::default();
        if let Some(r) = &query.run_id {
            w.and1("run_id = ?", Box::new(r.as_str().to_string()));
        }
        if let Some(p) = &query.phase {
            w.and1("phase = ?", Box::new(p.as_str().to_string()));
        }
        if let Some(a) = &after {
            w.and(
                "(run_id, phase, path) > (?, ?, ?)",
                vec![
                    Box::new(a.run_id.as_str().to_string()),
                    Box::new(a.phase.as_str().to_string()),
                    Box::new(a.path.as_str().to_string()),
                ],
            );
        }
        let limit_sql = overfetch_limit(limit);
        let sql = format!(
            "SELECT {INFO_COLUMNS} FROM {{s}}.artifacts {} ORDER BY run_id, phase, path {limit_sql}",
            w.sql()
        );
        let rows = self
            .query_all("listing artifacts", &sql, &w.params())
            .await?;
        let items = rows.iter().map(info_of).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |i| i.key.clone()))
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        let what = format!("deleting artifact {key}");
        let k = key_strs(key);
        with_tx!(self, &what, |tx| {
            let st = tx
                .prepare_cached(&self.sql(
                    "DELETE FROM {s}.artifacts WHERE run_id = $1 AND phase = $2 AND path = $3 RETURNING blob_id",
                ))
                .await?;
            let Some(row) = tx.query_opt(&st, &[&k[0], &k[1], &k[2]]).await? else {
                return Err(Fail::Core(not_found(key)));
            };
            let blob: i64 = row.get(0);
            let del = tx
                .prepare_cached(&self.sql("DELETE FROM {s}.blobs WHERE id = $1"))
                .await?;
            tx.execute(&del, &[&blob]).await?;
            Ok::<_, Fail>(())
        })
    }

    async fn delete_run_artifacts(
        &self,
        run_id: &RunId,
    ) -> Result<runstore_core::ArtifactsDeleted> {
        self.lifecycle_delete_run_artifacts(run_id).await
    }

    async fn delete_runs_artifacts(
        &self,
        run_ids: &[RunId],
    ) -> Result<Vec<runstore_core::ArtifactsDeleted>> {
        self.lifecycle_delete_runs_artifacts(run_ids).await
    }
}

/// The chunk rows of one blob, for [`ChunkedReader`].
struct BlobChunks {
    store: PostgresStore,
    key: ArtifactKey,
    blob_id: i64,
}

impl ChunkSource for BlobChunks {
    fn chunk(&self, idx: u64) -> ChunkFuture {
        let (store, key, blob_id) = (self.store.clone(), self.key.clone(), self.blob_id);
        Box::pin(async move {
            let what = format!("reading chunk {idx} of artifact {key}");
            let idx = i32::try_from(idx)
                .map_err(|_| Error::corrupt(key.to_string(), "chunk index out of range"))?;
            let row = store
                .query_opt(
                    &what,
                    "SELECT data FROM {s}.blob_chunks WHERE blob_id = $1 AND idx = $2",
                    &[&blob_id, &idx],
                )
                .await?;
            if let Some(row) = row {
                return Ok(Some(row.get::<_, Vec<u8>>(0)));
            }
            let blob = store
                .query_opt(&what, "SELECT 1 FROM {s}.blobs WHERE id = $1", &[&blob_id])
                .await?;
            match blob {
                // The blob is gone: replaced or deleted since the read began.
                None => Ok(None),
                Some(_) => Err(Error::corrupt(
                    format!("blob_chunks ({blob_id}, {idx})"),
                    format!("chunk {idx} of artifact {key} is missing"),
                )),
            }
        })
    }
}
