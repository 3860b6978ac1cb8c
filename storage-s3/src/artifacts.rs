//! [`ArtifactStore`] on object storage: a small JSON record per artifact,
//! its bytes in a blob written once. The record is the artifact: it is
//! created with a conditional write (`If-None-Match: *`) and replaced with
//! one (`If-Match: <etag>`), so two writers racing on one path cannot both
//! win, whatever process or machine they run on.

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions as ObjectPutOptions, PutPayload, UpdateVersion,
};
use runstore_core::{
    ArtifactInfo, ArtifactKey, ArtifactQuery, ArtifactReader, ArtifactStore, ArtifactsDeleted,
    ByteStream, Cursor, Error, HashingReader, Page, PutDecision, PutOptions, Result, RunId,
    VerifyingReader, Written, decide_put, validate_limit,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, BufReader};

use crate::S3Store;
use crate::error::map;

/// Bytes buffered per upload part: S3's smallest part size. A large
/// artifact holds at most `PART_SIZE * (UPLOAD_CONCURRENCY + 1)` in memory.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts in flight at once for one upload.
const UPLOAD_CONCURRENCY: usize = 4;
/// Records read at once while listing.
const LIST_CONCURRENCY: usize = 16;
/// How often a put re-reads the record after losing a race before it gives
/// up with `Unavailable`.
const MAX_RACES: usize = 16;

/// What the record object of an artifact holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// The artifact's info, as `head` returns it.
    info: ArtifactInfo,
    /// The object holding its bytes.
    blob: String,
}

/// A record and the version it was read at (for a conditional replace).
struct Stored {
    record: Record,
    version: UpdateVersion,
}

impl S3Store {
    /// Reads the record of `key`, or `None` if there is none.
    async fn read_record(&self, key: &ArtifactKey) -> Result<Option<Stored>> {
        let path = self.layout.record(key)?;
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(map(format!("reading the record of artifact {key}"), e)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| map(format!("reading the record of artifact {key}"), e))?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
            Error::corrupt(
                format!("{} ({})", path, self.config.location()),
                format!("the record of artifact {key} is not readable: {e}"),
            )
        })?;
        if record.info.key != *key {
            return Err(Error::corrupt(
                format!("{} ({})", path, self.config.location()),
                format!("the record names artifact {}, not {key}", record.info.key),
            ));
        }
        Ok(Some(Stored { record, version }))
    }

    async fn require_record(&self, key: &ArtifactKey) -> Result<Stored> {
        self.read_record(key)
            .await?
            .ok_or_else(|| Error::not_found(format!("artifact {key}")))
    }

    /// Streams `body` into the new blob `blob`, hashing it on the way.
    async fn upload(
        &self,
        key: &ArtifactKey,
        blob: &Path,
        body: ByteStream,
    ) -> Result<(runstore_core::Sha256Digest, u64)> {
        let mut reader = BufReader::with_capacity(256 * 1024, HashingReader::new(body));
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            blob.clone(),
            PART_SIZE,
        )
        .with_max_concurrency(UPLOAD_CONCURRENCY);
        let copied = async {
            tokio::io::copy_buf(&mut reader, &mut writer).await?;
            writer.shutdown().await
        }
        .await;
        if let Err(e) = copied {
            // Best effort: an unfinished multipart upload costs storage
            // until the bucket's lifecycle rule removes it.
            let _ = writer.abort().await;
            return Err(Error::io(format!("writing the bytes of artifact {key}"), e));
        }
        Ok(reader.into_inner().finish())
    }

    /// Removes a blob nobody points to; failures only cost space.
    async fn discard(&self, blob: &Path) {
        if let Err(e) = self.store.delete(blob).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            tracing::warn!(blob = %blob, error = %e, "could not remove an unused artifact blob");
        }
    }

    /// Decides the put against the stored record and writes the new record
    /// conditionally; after losing a race, decides again on what won.
    async fn commit(
        &self,
        key: &ArtifactKey,
        blob: &Path,
        hash: runstore_core::Sha256Digest,
        size: u64,
        options: &PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        let path = self.layout.record(key)?;
        for _ in 0..MAX_RACES {
            let stored = self.read_record(key).await?;
            let decision = decide_put(
                key,
                stored.as_ref().map(|s| &s.record.info.sha256),
                &hash,
                options.overwrite_token.as_ref(),
            )?;
            let (mode, old_blob) = match (decision, stored) {
                (PutDecision::Unchanged, Some(s)) => return Ok(Written::unchanged(s.record.info)),
                (PutDecision::Replace, Some(s)) => {
                    (PutMode::Update(s.version), Some(s.record.blob))
                }
                _ => (PutMode::Create, None),
            };
            let record = Record {
                info: options.info_for(key.clone(), hash, size),
                blob: blob.to_string(),
            };
            let body = serde_json::to_vec(&record).map_err(|e| {
                Error::backend(format!("encoding the record of {key}"), Some(e.into()))
            })?;
            let put = ObjectPutOptions {
                mode,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(body), put)
                .await
            {
                Ok(_) => {
                    if let Some(old) = old_blob {
                        self.discard(&self.layout.blob(&old)?).await;
                    }
                    return Ok(Written::inserted(record.info));
                }
                // Another writer got there first: decide again on what it wrote.
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => continue,
                Err(e) => return Err(map(format!("writing the record of artifact {key}"), e)),
            }
        }
        Err(Error::unavailable(
            format!("artifact {key} kept changing under concurrent writers; try again"),
            None,
        ))
    }
}

#[async_trait]
impl ArtifactStore for S3Store {
    async fn put(
        &self,
        key: &ArtifactKey,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        options.validate()?;
        // Refuse a key that cannot be an object key before any upload.
        self.layout.record(key)?;
        let blob = self.layout.new_blob(&key.run_id)?;
        let (hash, size) = self.upload(key, &blob, body).await?;
        let written = self.commit(key, &blob, hash, size, &options).await;
        if !matches!(&written, Ok(w) if w.inserted) {
            self.discard(&blob).await;
        }
        written
    }

    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
        let stored = self.require_record(key).await?;
        let blob = self.layout.blob(&stored.record.blob)?;
        let got = match self.store.get(&blob).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::corrupt(
                    format!("{blob} ({})", self.config.location()),
                    format!("the bytes of artifact {key} are missing"),
                ));
            }
            Err(e) => return Err(map(format!("reading artifact {key}"), e)),
        };
        let what = format!("reading artifact {key}");
        let stream = got
            .into_stream()
            .map_err(move |e| map(what.clone(), e).into_io());
        let body = VerifyingReader::new(
            tokio_util::io::StreamReader::new(stream),
            &stored.record.info,
        );
        Ok(ArtifactReader {
            info: stored.record.info,
            body: Box::new(body),
        })
    }

    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
        Ok(self.require_record(key).await?.record.info)
    }

    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
        let limit = validate_limit(query.limit)?;
        let after: Option<ArtifactKey> = query.cursor.as_ref().map(|c| c.decode()).transpose()?;
        let prefix = self.layout.list_prefix(&query)?;
        let listing = match &after {
            Some(k) => self
                .store
                .list_with_offset(Some(&prefix), &self.layout.record(k)?),
            None => self.store.list(Some(&prefix)),
        };
        // Keys first (the listing is in key order), then the records of the
        // page, read concurrently.
        let mut keys: Vec<ArtifactKey> = listing
            .map_err(|e| map(format!("listing artifacts under {prefix}"), e))
            .try_filter_map(|meta| {
                let key = self
                    .layout
                    .key_of(&meta.location)
                    .filter(|k| query.matches(k) && after.as_ref().is_none_or(|a| k > a));
                futures_util::future::ready(Ok(key))
            })
            .take(limit + 1)
            .try_collect()
            .await?;
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = if more {
            keys.last().map(Cursor::encode)
        } else {
            None
        };
        let items: Vec<ArtifactInfo> = futures_util::stream::iter(keys)
            .map(|k| async move { self.read_record(&k).await })
            .buffered(LIST_CONCURRENCY)
            // A record deleted since the listing is simply gone.
            .try_filter_map(|s| futures_util::future::ready(Ok(s.map(|s| s.record.info))))
            .try_collect()
            .await?;
        Ok(Page { items, next })
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        let stored = self.require_record(key).await?;
        let blob = self.layout.blob(&stored.record.blob)?;
        let path = self.layout.record(key)?;
        // The record first: once it is gone the artifact is gone, and a
        // crash before the blob goes leaves only unreferenced bytes.
        match self.store.delete(&path).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found(format!("artifact {key}")));
            }
            Err(e) => return Err(map(format!("deleting artifact {key}"), e)),
        }
        self.discard(&blob).await;
        Ok(())
    }

    async fn delete_run_artifacts(&self, run_id: &RunId) -> Result<ArtifactsDeleted> {
        // Page by page through the run's records: each is deleted (record
        // first, then its blob) as in `delete`; one gone meanwhile is done.
        let mut done = ArtifactsDeleted::default();
        loop {
            let page = self
                .list(ArtifactQuery::run(run_id.clone()).with_limit(500))
                .await?;
            if page.items.is_empty() {
                return Ok(done);
            }
            for info in &page.items {
                match self.delete(&info.key).await {
                    Ok(()) => done.add(info.size),
                    Err(e) if e.kind() == runstore_core::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

#[cfg(feature = "testing")]
impl S3Store {
    /// Flips the first byte of an artifact's stored bytes (or adds one to an
    /// empty artifact) without touching its record, so tests can check that
    /// reads detect it.
    pub async fn tamper(&self, key: &ArtifactKey) -> Result<()> {
        let stored = self.require_record(key).await?;
        let blob = self.layout.blob(&stored.record.blob)?;
        let mut bytes = self
            .store
            .get(&blob)
            .await
            .map_err(|e| map("tamper", e))?
            .bytes()
            .await
            .map_err(|e| map("tamper", e))?
            .to_vec();
        match bytes.first_mut() {
            Some(b) => *b ^= 0xff,
            None => bytes.push(0),
        }
        self.store
            .put(&blob, PutPayload::from(bytes))
            .await
            .map_err(|e| map("tamper", e))?;
        Ok(())
    }
}
