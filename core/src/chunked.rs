//! [`ChunkedReader`]: an artifact's bytes read from a store that keeps them
//! as numbered chunks (database rows, object parts), one chunk in memory at
//! a time, the next fetched while the caller consumes the current one.
//!
//! The rule for a chunk that is gone mid-read is decided here, once: the
//! artifact was replaced or deleted by another writer after the read began,
//! which is [`crate::ErrorKind::Unavailable`] (retryable: reading again
//! gives the new bytes, or `NotFound`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::artifact_path::ArtifactKey;
use crate::error::{Error, Result};

/// One chunk being fetched: its bytes, or `None` when it is no longer
/// stored.
pub type ChunkFuture = Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>>> + Send>>;

/// Where a [`ChunkedReader`] gets chunk `idx` (0-based) of one blob.
pub trait ChunkSource: Send + Sync + 'static {
    /// Fetches chunk `idx`: `Ok(None)` when the blob is no longer stored.
    fn chunk(&self, idx: u64) -> ChunkFuture;
}

/// The error of a chunk that is gone while `key` was being read.
pub fn changed_while_reading(key: &ArtifactKey) -> Error {
    Error::unavailable(
        format!("artifact {key} was replaced or deleted while it was being read; read it again"),
        None,
    )
}

/// The bytes of a blob of `count` chunks from a [`ChunkSource`], as an
/// `AsyncRead`. Wrap it in a [`crate::VerifyingReader`] so its hash and
/// size are checked at the end.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use runstore_core::{ArtifactKey, ChunkFuture, ChunkSource, ChunkedReader, ErrorKind};
/// use tokio::io::AsyncReadExt;
///
/// struct Parts(Vec<Vec<u8>>);
/// impl ChunkSource for Parts {
///     fn chunk(&self, idx: u64) -> ChunkFuture {
///         let part = self.0.get(idx as usize).cloned();
///         Box::pin(async move { Ok(part) })
///     }
/// }
/// let key = ArtifactKey::parse("r1", "build", "out.txt").unwrap();
/// let parts = Arc::new(Parts(vec![b"hello ".to_vec(), b"world".to_vec()]));
/// let mut all = String::new();
/// ChunkedReader::new(parts.clone(), 2, key.clone()).read_to_string(&mut all).await.unwrap();
/// assert_eq!(all, "hello world");
/// // The row said three chunks, the store has two: changed under the read.
/// let err = ChunkedReader::new(parts, 3, key).read_to_string(&mut all).await.unwrap_err();
/// assert!(err.to_string().contains("replaced or deleted"));
/// # });
/// ```
pub struct ChunkedReader {
    source: Arc<dyn ChunkSource>,
    key: ArtifactKey,
    count: u64,
    /// The next chunk to fetch.
    next: u64,
    buf: Vec<u8>,
    pos: usize,
    pending: Option<ChunkFuture>,
    failed: bool,
}

impl ChunkedReader {
    /// Reads chunks `0..count` of `source`, for artifact `key` (named in
    /// errors).
    pub fn new(source: Arc<dyn ChunkSource>, count: u64, key: ArtifactKey) -> Self {
        ChunkedReader {
            source,
            key,
            count,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            pending: None,
            failed: false,
        }
    }

    /// Starts fetching the next chunk, if there is one and none is under
    /// way.
    fn prefetch(&mut self) {
        if self.pending.is_none() && self.next < self.count {
            self.pending = Some(self.source.chunk(self.next));
            self.next += 1;
        }
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.failed {
                return Poll::Ready(Err(changed_while_reading(&this.key).into_io()));
            }
            if this.pos < this.buf.len() {
                // Polled once, the next fetch runs while the caller
                // consumes (and hashes) this chunk; the wake-up it may
                // cause is harmless.
                this.prefetch();
                if let Some(fut) = this.pending.as_mut()
                    && let Poll::Ready(done) = fut.as_mut().poll(cx)
                {
                    this.pending = Some(Box::pin(std::future::ready(done)));
                }
                let n = (this.buf.len() - this.pos).min(out.remaining());
                out.put_slice(&this.buf[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            this.prefetch();
            let Some(fut) = this.pending.as_mut() else {
                // Every chunk read: the end.
                return Poll::Ready(Ok(()));
            };
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => {
                    this.pending = None;
                    match r {
                        Ok(Some(data)) => {
                            this.buf = data;
                            this.pos = 0;
                        }
                        Ok(None) => this.failed = true,
                        Err(e) => return Poll::Ready(Err(e.into_io())),
                    }
                }
            }
        }
    }
}
