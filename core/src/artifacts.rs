//! Immutable blobs with SHA-256, an overwrite guard and deterministic
//! bundles: the trait [`ArtifactStore`] and its data types.

use std::fmt::Debug;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, ReadBuf};

use crate::artifact_path::{ArtifactKey, ArtifactPath};
use crate::digest::{Sha256Digest, Sha256Hasher};
use crate::error::{Error, Result};
use crate::id::{Phase, RunId};
use crate::page::{Cursor, Page};
use crate::text::validate_label;
use crate::timestamp::Timestamp;
use crate::written::Written;

/// A stream of bytes going into or out of a store.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// Content type when none is given.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Creator when none is given.
pub const DEFAULT_CREATOR: &str = "unknown";

/// What is stored about an artifact besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Where it is.
    pub key: ArtifactKey,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Digest,
    /// Length of the bytes.
    pub size: u64,
    /// MIME type.
    pub content_type: String,
    /// Who wrote it (a step, a user, a tool).
    pub created_by: String,
    /// When it was written.
    pub created_at: Timestamp,
}

/// Options of [`ArtifactStore::put`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PutOptions {
    /// MIME type; [`DEFAULT_CONTENT_TYPE`] if not given.
    pub content_type: Option<String>,
    /// Who writes it; [`DEFAULT_CREATOR`] if not given.
    pub created_by: Option<String>,
    /// When; now if not given (import and migration keep the original).
    pub created_at: Option<Timestamp>,
    /// Compare-and-swap: replace the stored artifact only if its hash is
    /// this. Without it, other bytes on an existing path are refused.
    pub overwrite_token: Option<Sha256Digest>,
}

impl PutOptions {
    setters! {
        /// Sets the content type.
        content_type(t: impl Into<String>) => content_type = Some(t.into());
        /// Sets the creator.
        created_by(who: impl Into<String>) => created_by = Some(who.into());
        /// Sets the creation time.
        created_at(at: Timestamp) => created_at = Some(at);
        /// Allows replacing the artifact whose hash is `token`.
        overwrite_token(token: Sha256Digest) => overwrite_token = Some(token);
    }

    /// Checks content type and creator labels.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.content_type {
            validate_label("content_type", t)?;
        }
        if let Some(c) = &self.created_by {
            validate_label("created_by", c)?;
        }
        Ok(())
    }

    /// The info an artifact written with these options gets.
    pub fn info_for(&self, key: ArtifactKey, sha256: Sha256Digest, size: u64) -> ArtifactInfo {
        ArtifactInfo {
            key,
            sha256,
            size,
            content_type: self
                .content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
            created_by: self
                .created_by
                .clone()
                .unwrap_or_else(|| DEFAULT_CREATOR.to_string()),
            created_at: self.created_at.unwrap_or_else(Timestamp::now),
        }
    }
}

/// What a `put` must do, given what is stored under the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutDecision {
    /// Nothing stored: store it.
    Insert,
    /// The same bytes are stored: return the stored info, write nothing.
    Unchanged,
    /// The token matches the stored hash: replace.
    Replace,
}

/// The overwrite rules of docs/DESIGN.md section 4, shared by every backend:
/// same bytes succeed, other bytes are [`Error::Immutable`] without a token,
/// [`Error::Conflict`] with a token that is not the stored hash (or with a
/// token when nothing is stored).
pub fn decide_put(
    key: &ArtifactKey,
    stored: Option<&Sha256Digest>,
    new_hash: &Sha256Digest,
    token: Option<&Sha256Digest>,
) -> Result<PutDecision> {
    match (stored, token) {
        (Some(s), _) if s == new_hash => Ok(PutDecision::Unchanged),
        (Some(s), None) => Err(Error::immutable(format!(
            "artifact {key} is stored with sha256 {s}; refusing other bytes (sha256 {new_hash}) without an overwrite token"
        ))),
        (Some(s), Some(t)) if s == t => Ok(PutDecision::Replace),
        (Some(s), Some(t)) => Err(Error::conflict(format!(
            "overwrite token {t} for artifact {key} does not match the stored sha256 {s}"
        ))),
        (None, Some(t)) => Err(Error::conflict(format!(
            "overwrite token {t} given for artifact {key}, but nothing is stored there"
        ))),
        (None, None) => Ok(PutDecision::Insert),
    }
}

/// An artifact being read: its info and its bytes. The body checks the
/// bytes against `info.sha256` and `info.size` as they stream and fails with
/// [`Error::Corrupt`] (inside an `io::Error` of kind `InvalidData`; turn it
/// back with [`Error::io`]) at the end if they do not match.
pub struct ArtifactReader {
    /// What is stored about it.
    pub info: ArtifactInfo,
    /// The bytes.
    pub body: ByteStream,
}

impl Debug for ArtifactReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactReader")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Wraps a reader so it hashes and counts what passes through, and fails
/// with [`Error::Corrupt`] at the end if that is not `expected`. Every
/// backend's `get` returns its bytes through one.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Sha256Hasher>,
    size: u64,
    expected: Sha256Digest,
    expected_size: u64,
    location: String,
}

impl<R> VerifyingReader<R> {
    /// Verifies `inner` against `info`.
    pub fn new(inner: R, info: &ArtifactInfo) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Sha256Hasher::new()),
            size: 0,
            expected: info.sha256,
            expected_size: info.size,
            location: format!("artifact {}", info.key),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for VerifyingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if fresh.is_empty() {
                    // End of stream: check once.
                    if let Some(h) = this.hasher.take() {
                        let got = h.finish();
                        if got != this.expected || this.size != this.expected_size {
                            return Poll::Ready(Err(Error::corrupt(
                                this.location.clone(),
                                format!(
                                    "stored bytes have sha256 {got} and size {}, expected sha256 {} and size {}",
                                    this.size, this.expected, this.expected_size
                                ),
                            )
                            .into_io()));
                        }
                    }
                } else if let Some(h) = this.hasher.as_mut() {
                    h.update(fresh);
                    this.size += fresh.len() as u64;
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Wraps a reader so it hashes and counts what passes through; for `put`,
/// where the hash is known only at the end.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
    size: u64,
}

impl<R> HashingReader<R> {
    /// Hashes `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256Hasher::new(),
            size: 0,
        }
    }

    /// The digest and size of everything read so far.
    pub fn finish(self) -> (Sha256Digest, u64) {
        (self.hasher.finish(), self.size)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let fresh = &buf.filled()[before..];
            this.hasher.update(fresh);
            this.size += fresh.len() as u64;
        }
        res
    }
}

/// Which artifacts [`ArtifactStore::list`] returns, ordered by
/// `(run_id, phase, path)` bytewise.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ArtifactQuery {
    /// Only this run's artifacts; all runs if `None` (migration, export).
    pub run_id: Option<RunId>,
    /// Only this phase.
    pub phase: Option<Phase>,
    /// Page size.
    pub limit: usize,
    /// Start after this position.
    pub cursor: Option<Cursor>,
}

paged_query!(ArtifactQuery {
    run_id: None,
    phase: None,
});

impl ArtifactQuery {
    /// A run's artifacts.
    pub fn run(run_id: RunId) -> Self {
        ArtifactQuery {
            run_id: Some(run_id),
            ..Default::default()
        }
    }
    setters! {
        /// Only one phase.
        with_phase(phase: Phase) => phase = Some(phase);
    }
    /// Whether a key passes the query's filter.
    pub fn matches(&self, key: &ArtifactKey) -> bool {
        self.run_id.as_ref().is_none_or(|r| *r == key.run_id)
            && self.phase.as_ref().is_none_or(|p| *p == key.phase)
    }
}

/// The key in an [`ArtifactQuery`] cursor: the last artifact's key.
pub type ArtifactCursor = ArtifactKey;

/// A request for a bundle: a zip of named artifacts of one run, stored as an
/// artifact of that run at `phase/path`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BundleRequest {
    /// The run whose artifacts are bundled, and which owns the bundle.
    pub run_id: RunId,
    /// The bundle's phase.
    pub phase: Phase,
    /// The bundle's path.
    pub path: ArtifactPath,
    /// The members, as `(phase, path)` of the same run; each at most once.
    pub members: Vec<(Phase, ArtifactPath)>,
    /// Options of the bundle artifact (its content type defaults to
    /// `application/zip`).
    pub options: PutOptions,
}

impl BundleRequest {
    /// A bundle of `members` of `run_id` stored at `phase/path`.
    pub fn new(
        run_id: RunId,
        phase: Phase,
        path: ArtifactPath,
        members: Vec<(Phase, ArtifactPath)>,
    ) -> Self {
        BundleRequest {
            run_id,
            phase,
            path,
            members,
            options: PutOptions::default(),
        }
    }

    /// Sets the bundle's put options.
    pub fn with_options(mut self, options: PutOptions) -> Self {
        self.options = options;
        self
    }
}

/// Stores artifacts. See docs/DESIGN.md section 4, "Artifacts".
#[async_trait]
pub trait ArtifactStore: Send + Sync + Debug + 'static {
    /// Streams `body` to `key` in bounded memory, following [`decide_put`].
    /// Returns the stored info; `inserted == false` when identical bytes
    /// were already stored (the stored info is returned unchanged).
    async fn put(
        &self,
        key: &ArtifactKey,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<Written<ArtifactInfo>>;

    /// Opens an artifact for streaming; [`Error::NotFound`] if absent. The
    /// body verifies the hash (see [`ArtifactReader`]).
    async fn get(&self, key: &ArtifactKey) -> Result<ArtifactReader>;

    /// The info of an artifact, without its bytes.
    async fn head(&self, key: &ArtifactKey) -> Result<ArtifactInfo>;

    /// A page of artifacts ordered by `(run_id, phase, path)`.
    async fn list(&self, query: ArtifactQuery) -> Result<Page<ArtifactInfo>>;

    /// Deletes an artifact (retention); [`Error::NotFound`] if absent.
    async fn delete(&self, key: &ArtifactKey) -> Result<()>;

    /// Writes a deterministic zip bundle (see [`crate::bundle`]). Backends
    /// keep the default, which builds it through `get` and `put`.
    async fn bundle(&self, request: BundleRequest) -> Result<Written<ArtifactInfo>> {
        crate::bundle::write_bundle(self, request).await
    }

    /// Deletes every artifact of one run in one call (retention), returning
    /// how many and their bytes; zero when the run has none.
    async fn delete_run_artifacts(&self, run_id: &RunId) -> Result<crate::ArtifactsDeleted>;

    /// [`ArtifactStore::delete_run_artifacts`] for each run of `run_ids`
    /// (at most [`crate::MAX_DELETE_BATCH`], each once), what was deleted
    /// per run in their order. The default calls it once per run; backends
    /// that can, delete the whole batch in one transaction.
    async fn delete_runs_artifacts(
        &self,
        run_ids: &[RunId],
    ) -> Result<Vec<crate::ArtifactsDeleted>> {
        crate::validate_delete_batch("run_ids", run_ids)?;
        let mut out = Vec::with_capacity(run_ids.len());
        for id in run_ids {
            out.push(self.delete_run_artifacts(id).await?);
        }
        Ok(out)
    }
}
