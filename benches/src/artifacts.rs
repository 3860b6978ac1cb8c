//! Artifact write and read, each measured in a child process of its own so
//! that its peak resident memory (`VmHWM`) belongs to that measurement
//! alone.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use runstore_core::{ArtifactKey, PutOptions};
use tokio::io::{AsyncRead, ReadBuf};

use crate::BenchResult;
use crate::stores::Backend;

/// `len` bytes of a fixed, non-repeating-looking pattern (xorshift).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An `AsyncRead` of `size` bytes cycled from a 1 MiB pattern: the body of
/// a big artifact without holding it in memory.
pub struct PatternReader {
    chunk: Vec<u8>,
    pos: u64,
    size: u64,
}

impl PatternReader {
    /// A reader of `size` bytes.
    pub fn new(size: u64) -> Self {
        PatternReader {
            chunk: pattern(1 << 20),
            pos: 0,
            size,
        }
    }
}

impl AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let left = this.size - this.pos;
        let at = (this.pos % this.chunk.len() as u64) as usize;
        let n = (buf.remaining() as u64)
            .min(left)
            .min((this.chunk.len() - at) as u64) as usize;
        buf.put_slice(&this.chunk[at..at + n]);
        this.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// The key every artifact measurement writes.
pub fn key() -> ArtifactKey {
    ArtifactKey::parse("bench-run", "output", "blob.bin").expect("a valid key")
}

/// What one child measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChildResult {
    /// MiB per second.
    pub mib_per_sec: f64,
    /// The child's peak resident memory in bytes.
    pub peak_bytes: u64,
}

/// The child's side: `op` is `write` or `read`. Prints one line
/// `RESULT <MiB/s> <peak bytes>`.
pub async fn child_main(
    backend: Backend,
    op: &str,
    size: u64,
    dir: &Path,
    pg: Option<(&str, &str)>,
) -> BenchResult<()> {
    let stores = backend.reopen(dir, pg).await?;
    if op == "write" {
        // An artifact in a run and phase that already hold one: the folders
        // (or rows) of the run exist, as for every artifact after a run's
        // first, so the figure is the steady cost of one more artifact.
        let warm = ArtifactKey::parse("bench-run", "output", "warm-up.txt")?;
        stores
            .artifacts
            .put(
                &warm,
                Box::new(std::io::Cursor::new(b"warm-up".to_vec())),
                PutOptions::default(),
            )
            .await?;
    }
    // The body's pattern is made before the clock starts.
    let body = Box::new(PatternReader::new(size));
    let start = Instant::now();
    match op {
        "write" => {
            let written = stores
                .artifacts
                .put(&key(), body, PutOptions::default())
                .await?;
            if written.record.size != size {
                return Err(format!("stored {} bytes, wrote {size}", written.record.size).into());
            }
        }
        "read" => {
            let mut reader = stores.artifacts.get(&key()).await?;
            let n = tokio::io::copy(&mut reader.body, &mut tokio::io::sink()).await?;
            if n != size {
                return Err(format!("read {n} bytes, stored {size}").into());
            }
        }
        other => return Err(format!("unknown artifact op {other:?}").into()),
    }
    let rate = crate::raw::mib(size) / start.elapsed().as_secs_f64();
    let peak = crate::machine::peak_rss_bytes().ok_or("no VmHWM in /proc/self/status")?;
    println!("RESULT {rate} {peak}");
    Ok(())
}

/// The backend names a child understands.
pub fn backend_arg(b: Backend) -> &'static str {
    match b {
        Backend::Memory => "memory",
        Backend::File(runstore_file::Durability::GroupCommit) => "file-group",
        Backend::File(_) => "file",
        Backend::Sqlite { .. } => "sqlite",
        Backend::Postgres => "postgres",
        Backend::S3 => "s3",
    }
}

/// Parses [`backend_arg`].
pub fn parse_backend(s: &str) -> Option<Backend> {
    Some(match s {
        "memory" => Backend::Memory,
        "file" => Backend::File(runstore_file::Durability::Fsync),
        "file-group" => Backend::File(runstore_file::Durability::GroupCommit),
        "sqlite" => Backend::Sqlite { full: false },
        "postgres" => Backend::Postgres,
        "s3" => Backend::S3,
        _ => return None,
    })
}

/// The parent's side: runs `exe --artifact-child ...` and reads its result.
pub fn run_child(
    exe: &Path,
    backend: Backend,
    op: &str,
    size: u64,
    dir: &Path,
    pg: Option<&(String, String)>,
) -> BenchResult<ChildResult> {
    let size = size.to_string();
    let args = [
        std::ffi::OsStr::new(backend_arg(backend)),
        std::ffi::OsStr::new(op),
        std::ffi::OsStr::new(&size),
        dir.as_os_str(),
    ];
    let what = format!("artifact {op}");
    crate::child::run_parsed(exe, "--artifact-child", &args, pg, &what, |fields| {
        let [rate, peak, ..] = fields else {
            return None;
        };
        Some(ChildResult {
            mib_per_sec: rate.parse().ok()?,
            peak_bytes: peak.parse().ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn pattern_reader_gives_exactly_size_bytes() {
        let mut r = PatternReader::new((1 << 20) + 5);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), (1 << 20) + 5);
        assert_eq!(&out[1 << 20..], &pattern(5)[..]);
    }

    #[test]
    fn backend_names_round_trip() {
        for b in [
            Backend::Memory,
            Backend::File(runstore_file::Durability::Fsync),
            Backend::File(runstore_file::Durability::GroupCommit),
            Backend::Sqlite { full: false },
            Backend::Postgres,
            Backend::S3,
        ] {
            assert_eq!(parse_backend(backend_arg(b)), Some(b));
        }
    }
}
