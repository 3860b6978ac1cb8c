use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use super::{lock, page_after};
use crate::artifact_path::ArtifactKey;
use crate::artifacts::{
    ArtifactInfo, ArtifactQuery, ArtifactReader, ArtifactStore, ByteStream, PutDecision,
    PutOptions, VerifyingReader, decide_put,
};
use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::page::Page;
use crate::written::Written;

/// In-memory [`ArtifactStore`]. Holds whole artifacts in memory, so it is
/// for tests and small data only.
#[derive(Debug, Default)]
pub struct MemoryArtifacts {
    blobs: Mutex<BTreeMap<ArtifactKey, Stored>>,
}

/// An artifact's info and its bytes (shared, so reads do not copy under the lock).
type Stored = (ArtifactInfo, Arc<Vec<u8>>);

impl MemoryArtifacts {
    /// Changes the stored bytes of an artifact behind the store's back, so
    /// tests can check that reads detect it. Returns `false` if absent.
    pub fn tamper(&self, key: &ArtifactKey, change: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut blobs = lock(&self.blobs);
        match blobs.get_mut(key) {
            Some((_, bytes)) => {
                change(Arc::make_mut(bytes));
                true
            }
            None => false,
        }
    }
}

fn artifact_not_found(key: &ArtifactKey) -> Error {
    Error::not_found(format!("artifact {key}"))
}

#[async_trait]
impl ArtifactStore for MemoryArtifacts {
    async fn put(
        &self,
        key: &ArtifactKey,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<Written<ArtifactInfo>> {
        options.validate()?;
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::io(format!("reading the body of artifact {key}"), e))?;
        let hash = Sha256Digest::of(&bytes);
        let mut blobs = lock(&self.blobs);
        let stored = blobs.get(key).map(|(info, _)| info.sha256);
        match decide_put(
            key,
            stored.as_ref(),
            &hash,
            options.overwrite_token.as_ref(),
        )? {
            PutDecision::Unchanged => {
                let (info, _) = &blobs[key];
                Ok(Written::unchanged(info.clone()))
            }
            PutDecision::Insert | PutDecision::Replace => {
                let info = options.info_for(key.clone(), hash, bytes.len() as u64);
                blobs.insert(key.clone(), (info.clone(), Arc::new(bytes)));
                Ok(Written::inserted(info))
            }
        }
    }

    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader> {
        let (info, bytes) = lock(&self.blobs)
            .get(key)
            .cloned()
            .ok_or_else(|| artifact_not_found(key))?;
        let body = VerifyingReader::new(std::io::Cursor::new(bytes.as_ref().clone()), &info);
        Ok(ArtifactReader {
            info,
            body: Box::new(body),
        })
    }

    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo> {
        lock(&self.blobs)
            .get(key)
            .map(|(info, _)| info.clone())
            .ok_or_else(|| artifact_not_found(key))
    }

    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>> {
        let blobs = lock(&self.blobs);
        page_after(
            blobs
                .values()
                .filter(|(info, _)| query.matches(&info.key))
                .map(|(info, _)| info.clone()),
            query.limit,
            query.cursor.as_ref(),
            |info| info.key.clone(),
        )
    }

    async fn delete(&self, key: &ArtifactKey) -> Result<()> {
        lock(&self.blobs)
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| artifact_not_found(key))
    }

    async fn delete_run_artifacts(&self, run_id: &crate::RunId) -> Result<crate::ArtifactsDeleted> {
        let mut blobs = lock(&self.blobs);
        let mut removed = crate::ArtifactsDeleted::default();
        blobs.retain(|key, (info, _)| {
            if key.run_id == *run_id {
                removed.add(info.size);
                false
            } else {
                true
            }
        });
        Ok(removed)
    }
}
