//! Rules for `ArtifactStore` (docs/DESIGN.md section 4, "Artifacts").

use std::io::Read as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use runstore_core::artifacts::{DEFAULT_CONTENT_TYPE, DEFAULT_CREATOR};
use runstore_core::bundle::{BUNDLE_CONTENT_TYPE, MANIFEST_FORMAT, MANIFEST_NAME};
use runstore_core::{
    ArtifactInfo, ArtifactKey, ArtifactQuery, ArtifactStore, ArtifactStoreExt, BundleRequest,
    ByteStream, Error, ErrorKind, PutOptions, Result, Sha256Digest, Sha256Hasher,
};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::factory::{Capability, StoreFactory};
use crate::fixtures::{SplitMix, akey, all_pages, phase, rid, t};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq, ensure_err, require};

/// Every artifact a query selects, read page by page.
async fn all_artifacts(
    a: &dyn ArtifactStore,
    query: ArtifactQuery,
    page: usize,
) -> Result<(Vec<ArtifactInfo>, usize)> {
    all_pages(|c| a.list(query.clone().with_limit(page).with_cursor(c))).await
}

fn keys(infos: &[ArtifactInfo]) -> Vec<String> {
    infos.iter().map(|i| i.key.to_string()).collect()
}

fn opts(at: i64) -> PutOptions {
    PutOptions::default().created_at(t(at, 250))
}

/// Reads all bytes of an artifact, turning a body error back into a
/// runstore error (as callers do).
async fn read_all(a: &dyn ArtifactStore, key: &ArtifactKey) -> Result<Vec<u8>> {
    Ok(a.get_bytes(key).await?.1)
}

/// "Writing a path that does not exist stores it with its SHA-256, size,
/// type, creator and time."
pub async fn artifact_put_records_hash_size_type_creator_time(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-1", "build", "out/report.html");
    let bytes = b"<html>hello</html>\n".to_vec();
    let o = PutOptions::default()
        .content_type("text/html; charset=utf-8")
        .created_by("step render")
        .created_at(t(5, 123_456));
    let w = a.put_bytes(&key, bytes.clone(), o).await?;
    ensure!(w.inserted, "put of a new path: expected inserted=true");
    let want = ArtifactInfo {
        key: key.clone(),
        sha256: Sha256Digest::of(&bytes),
        size: bytes.len() as u64,
        content_type: "text/html; charset=utf-8".into(),
        created_by: "step render".into(),
        created_at: t(5, 123_456),
    };
    ensure_eq!(w.record, want, "info returned by put");
    ensure_eq!(a.head(&key).await?, want, "head after put");
    let (info, got) = a.get_bytes(&key).await?;
    ensure_eq!(info, want, "info returned by get");
    ensure!(got == bytes, "get returned other bytes: {got:?}");

    // Defaults for type and creator.
    let key2 = akey("run-1", "build", "raw.bin");
    let w = a.put_bytes(&key2, vec![1, 2, 3], opts(9)).await?;
    ensure_eq!(
        (
            w.record.content_type.as_str(),
            w.record.created_by.as_str(),
            w.record.created_at
        ),
        (DEFAULT_CONTENT_TYPE, DEFAULT_CREATOR, t(9, 250)),
        "put without type and creator: (content_type, created_by, created_at)"
    );
    ensure_eq!(
        a.head(&key2).await?,
        w.record,
        "head of an artifact put with defaults"
    );

    let missing = akey("run-1", "build", "missing.txt");
    ensure_err!(
        a.head(&missing).await,
        ErrorKind::NotFound,
        "head of a path never written"
    );
    ensure_err!(
        a.get(&missing).await,
        ErrorKind::NotFound,
        "get of a path never written"
    );
    let bad = PutOptions::default().content_type("text/plain\nX-Injected: 1");
    let e = a.put_bytes(&missing, b"x".to_vec(), bad).await;
    ensure_err!(
        e,
        ErrorKind::InvalidInput,
        "put with a content type holding a newline"
    );
    ensure_err!(
        a.head(&missing).await,
        ErrorKind::NotFound,
        "head after a refused put"
    );
    Ok(())
}

/// "Writing the same bytes again succeeds and returns the stored info."
pub async fn artifact_put_same_bytes_is_noop(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-1", "p", "data.json");
    let bytes = br#"{"a":1}"#.to_vec();
    let first = a
        .put_bytes(
            &key,
            bytes.clone(),
            opts(1).content_type("application/json").created_by("one"),
        )
        .await?
        .record;
    let variants = [
        (
            "the same options",
            opts(1).content_type("application/json").created_by("one"),
        ),
        ("no options", PutOptions::default()),
        (
            "other type, creator and time",
            opts(99).content_type("text/plain").created_by("two"),
        ),
        (
            "an overwrite token equal to the stored hash",
            opts(2).overwrite_token(first.sha256),
        ),
        (
            "an overwrite token that matches nothing",
            opts(3).overwrite_token(Sha256Digest::of(b"other")),
        ),
    ];
    for (what, o) in variants {
        let w = a.put_bytes(&key, bytes.clone(), o).await?;
        ensure!(
            !w.inserted,
            "put of the same bytes again with {what}: expected inserted=false"
        );
        ensure_eq!(
            w.record,
            first,
            "info returned by a put of the same bytes again with {what}"
        );
    }
    ensure_eq!(
        a.head(&key).await?,
        first,
        "head after repeated puts of the same bytes"
    );
    let (list, _) = all_artifacts(a.as_ref(), ArtifactQuery::run(rid("run-1")), 10).await?;
    ensure_eq!(
        list,
        vec![first],
        "list after repeated puts of the same bytes"
    );
    Ok(())
}

/// "Writing other bytes is `Immutable`, unless the caller gives an overwrite
/// token equal to the stored hash."
pub async fn artifact_put_other_bytes_is_immutable(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-1", "p", "model.bin");
    let bytes = vec![7u8; 1000];
    let first = a.put_bytes(&key, bytes.clone(), opts(1)).await?.record;
    for (what, other) in [
        ("one byte changed", {
            let mut b = bytes.clone();
            b[500] = 8;
            b
        }),
        ("one byte more", [bytes.clone(), vec![7]].concat()),
        ("empty", Vec::new()),
    ] {
        let e = a.put_bytes(&key, other, opts(2)).await;
        ensure_err!(
            e,
            ErrorKind::Immutable,
            "put of other bytes ({what}) without a token"
        );
    }
    ensure_eq!(a.head(&key).await?, first, "info after refused overwrites");
    let got = read_all(a.as_ref(), &key).await?;
    ensure!(
        got == bytes,
        "stored bytes changed after refused overwrites ({} bytes read)",
        got.len()
    );
    Ok(())
}

/// "unless the caller gives an overwrite token equal to the stored hash
/// (compare-and-swap); a token that does not match is `Conflict`", and "An
/// overwrite token on a path where nothing is stored is `Conflict`"
/// (core/README.md).
pub async fn artifact_overwrite_token_is_compare_and_swap(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-1", "p", "state.txt");
    let v1 = a
        .put_bytes(&key, b"version one".to_vec(), opts(1))
        .await?
        .record;
    let w = a
        .put_bytes(
            &key,
            b"version two".to_vec(),
            opts(2)
                .overwrite_token(v1.sha256)
                .content_type("text/plain"),
        )
        .await?;
    ensure!(
        w.inserted,
        "put with a token equal to the stored hash: expected inserted=true (replaced)"
    );
    ensure_eq!(
        w.record.sha256,
        Sha256Digest::of(b"version two"),
        "sha256 after a replace"
    );
    ensure_eq!(
        (
            w.record.size,
            w.record.content_type.as_str(),
            w.record.created_at
        ),
        (11, "text/plain", t(2, 250)),
        "(size, content_type, created_at) after a replace"
    );
    ensure_eq!(a.head(&key).await?, w.record, "head after a replace");
    ensure_eq!(
        read_all(a.as_ref(), &key).await?,
        b"version two".to_vec(),
        "bytes after a replace"
    );

    // The old token is stale now.
    let e = a
        .put_bytes(
            &key,
            b"version three".to_vec(),
            opts(3).overwrite_token(v1.sha256),
        )
        .await;
    ensure_err!(
        e,
        ErrorKind::Conflict,
        "put with a stale token (the hash of version one)"
    );
    let e = a
        .put_bytes(
            &key,
            b"version three".to_vec(),
            opts(3).overwrite_token(Sha256Digest::of(b"version three")),
        )
        .await;
    ensure_err!(
        e,
        ErrorKind::Conflict,
        "put with a token equal to the new bytes' hash, not the stored one"
    );
    ensure_eq!(
        read_all(a.as_ref(), &key).await?,
        b"version two".to_vec(),
        "bytes after refused tokens"
    );

    let absent = akey("run-1", "p", "absent.txt");
    let e = a
        .put_bytes(
            &absent,
            b"x".to_vec(),
            opts(4).overwrite_token(Sha256Digest::of(b"x")),
        )
        .await;
    ensure_err!(
        e,
        ErrorKind::Conflict,
        "put with a token on a path where nothing is stored"
    );
    ensure_err!(
        a.head(&absent).await,
        ErrorKind::NotFound,
        "head after a refused token put on an absent path"
    );
    Ok(())
}

/// "Reads return exactly the bytes written": the empty artifact, every byte
/// value, and 1 MiB.
pub async fn artifact_read_returns_exact_bytes(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let mut rng = SplitMix::new(7);
    let mib: Vec<u8> = (0..1 << 20).map(|_| rng.next_u64() as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("all-bytes.bin", (0..=255u8).collect()),
        (
            "all-bytes-twice-reversed.bin",
            (0..=255u8).rev().chain(0..=255u8).collect(),
        ),
        ("crlf.txt", b"line\r\nnext\r\n\0end".to_vec()),
        ("one-mib.bin", mib),
    ];
    for (name, bytes) in &cases {
        let key = akey("run-1", "bytes", name);
        let w = a.put_bytes(&key, bytes.clone(), opts(1)).await?;
        ensure_eq!(
            (w.record.size, w.record.sha256),
            (bytes.len() as u64, Sha256Digest::of(bytes)),
            "put of {name}: (size, sha256)"
        );
    }
    for (name, bytes) in &cases {
        let key = akey("run-1", "bytes", name);
        let (info, got) = a.get_bytes(&key).await?;
        ensure_eq!(info.size, bytes.len() as u64, "size of {name}");
        ensure!(
            got == *bytes,
            "bytes of {name}: wrote {} bytes (sha256 {}), read {} bytes (sha256 {})",
            bytes.len(),
            Sha256Digest::of(bytes),
            got.len(),
            Sha256Digest::of(&got)
        );
    }
    Ok(())
}

/// "Reads ... fail with `Corrupt` if the stored bytes no longer match their
/// hash."
pub async fn artifact_read_detects_tampering(f: &dyn StoreFactory) -> RuleResult {
    require!(f, Capability::TamperArtifacts);
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-1", "p", "evidence.log");
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    a.put_bytes(&key, bytes.clone(), opts(1)).await?;
    // One byte: the smallest artifact every factory can tamper with.
    let small = akey("run-1", "p", "one-byte");
    a.put_bytes(&small, vec![b'x'], opts(1)).await?;
    let intact = akey("run-1", "p", "intact");
    a.put_bytes(&intact, bytes.clone(), opts(1)).await?;
    f.tamper_artifact(&s, &key).await?;
    f.tamper_artifact(&s, &small).await?;

    for k in [&key, &small] {
        let e = a.get_bytes(k).await;
        ensure_err!(e, ErrorKind::Corrupt, "get_bytes of tampered artifact {k}");
    }
    // Detection must not be a false alarm on artifacts left alone.
    let got = read_all(a.as_ref(), &intact).await?;
    ensure!(
        got == bytes,
        "an artifact that was not tampered with reads back other bytes"
    );

    // Streaming by hand: the error surfaces from the body as an io error
    // that Error::io turns back into Corrupt (unless get itself refuses).
    match a.get(&key).await {
        Err(e) => ensure_eq!(
            e.kind(),
            ErrorKind::Corrupt,
            "get of a tampered artifact failed early: {e}"
        ),
        Ok(mut reader) => {
            let mut sink = Vec::new();
            match reader.body.read_to_end(&mut sink).await {
                Ok(n) => {
                    return Err(RuleError::Failed(format!(
                        "streaming the body of tampered artifact {key}: expected an error, read {n} bytes without one"
                    )));
                }
                Err(io) => {
                    let e = Error::io("reading a tampered artifact", io);
                    ensure_eq!(
                        e.kind(),
                        ErrorKind::Corrupt,
                        "error streaming a tampered artifact: {e}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Generates `size` pseudo-random bytes without holding them. Byte `i`
/// depends only on `i`, so the stream is the same whatever buffer sizes
/// its readers use.
struct Generated {
    seed: u64,
    pos: u64,
    size: u64,
}

impl Generated {
    fn new(seed: u64, size: u64) -> Self {
        Generated { seed, pos: 0, size }
    }

    /// Fills the start of `out` with the next bytes; returns how many.
    fn fill(&mut self, out: &mut [u8]) -> usize {
        let n = (out.len() as u64).min(self.size - self.pos) as usize;
        let mut done = 0;
        while done < n {
            let word =
                SplitMix::new(self.seed ^ (self.pos / 8).wrapping_mul(0x2545_F491_4F6C_DD1D))
                    .next_u64()
                    .to_le_bytes();
            let off = (self.pos % 8) as usize;
            let take = (8 - off).min(n - done);
            out[done..done + take].copy_from_slice(&word[off..off + take]);
            done += take;
            self.pos += take as u64;
        }
        n
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(64 * 1024);
        let mut tmp = vec![0u8; n];
        let n = self.fill(&mut tmp);
        buf.put_slice(&tmp[..n]);
        Poll::Ready(Ok(()))
    }
}

/// "Large artifacts stream in and out in bounded memory." A volume rule: a
/// 64 MiB body is generated while it is written (never held by the rule)
/// and read back by streaming, comparing hash and size.
pub async fn artifact_large_streams_round_trip(f: &dyn StoreFactory) -> RuleResult {
    const SIZE: u64 = 64 << 20;
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-big", "out", "large.bin");
    // The expected hash, from the same generator.
    let mut gen_ = Generated::new(42, SIZE);
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = gen_.fill(&mut buf);
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let want = h.finish();
    let body: ByteStream = Box::new(Generated::new(42, SIZE));
    let w = a.put(&key, body, opts(1)).await?;
    ensure_eq!(
        (w.record.size, w.record.sha256),
        (SIZE, want),
        "put of 64 MiB: (size, sha256)"
    );

    let mut reader = a.get(&key).await?;
    let mut h = Sha256Hasher::new();
    let size = stream_to_end(&mut reader.body, &mut buf, |chunk| h.update(chunk)).await?;
    ensure_eq!(
        (size, h.finish()),
        (SIZE, want),
        "64 MiB read back by streaming: (size, sha256)"
    );
    Ok(())
}

/// Reads `body` to its end through `buf`, handing each chunk to `each`;
/// the bytes read.
async fn stream_to_end(
    body: &mut ByteStream,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<u64, RuleError> {
    let mut size = 0u64;
    loop {
        let n = body
            .read(buf)
            .await
            .map_err(|e| Error::io("streaming a large artifact", e))?;
        if n == 0 {
            return Ok(size);
        }
        size += n as u64;
        each(&buf[..n]);
    }
}

/// Most heap a put or a get of the 64 MiB artifact may add: a backend that
/// holds the whole artifact needs at least 64 MiB, one that streams needs
/// its buffers; the margin covers the other rules running at the same time
/// in the same process.
const STREAMING_HEAP_MAX: usize = 48 << 20;

/// A read begun before the artifact was replaced (overwrite token) returns
/// either every byte it began with, verified, or fails `Unavailable`
/// (retryable: read it again); never a mix of old and new bytes, and never
/// a `Corrupt` that is not. The new bytes read whole afterwards. 3 MiB, so
/// that stores keeping chunks have several left when the replacement lands.
pub async fn artifact_read_of_a_replaced_artifact_is_whole_or_unavailable(
    f: &dyn StoreFactory,
) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-1", "p", "replaced.bin");
    let old: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let new: Vec<u8> = old.iter().map(|b| b.wrapping_add(1)).collect();
    let v1 = a.put_bytes(&key, old.clone(), opts(1)).await?.record;
    let mut reader = a.get(&key).await?;
    let mut begun = vec![0u8; 64 * 1024];
    reader
        .body
        .read_exact(&mut begun)
        .await
        .map_err(|e| Error::io("reading the first bytes", e))?;
    a.put_bytes(&key, new.clone(), opts(2).overwrite_token(v1.sha256))
        .await?;
    let mut rest = Vec::new();
    match reader.body.read_to_end(&mut rest).await {
        Ok(_) => {
            begun.extend(rest);
            ensure!(
                begun == old,
                "a read begun before the replacement returned {} bytes that are not the ones it began with",
                begun.len()
            );
        }
        Err(io) => {
            let e = Error::io("reading on after the replacement", io);
            ensure_eq!(
                e.kind(),
                ErrorKind::Unavailable,
                "a read cut short by a replacement failed with {e}"
            );
        }
    }
    ensure!(
        read_all(a.as_ref(), &key).await? == new,
        "after the replacement the artifact does not read back as the new bytes"
    );
    Ok(())
}

/// "Large artifacts stream in and out in bounded memory", measured: the
/// heap a 64 MiB put and a 64 MiB streamed get add, each under
/// [`STREAMING_HEAP_MAX`]. Needs [`Capability::MeasuredMemory`] (the test
/// binary's global allocator is [`crate::PeakAlloc`]), found at run time.
pub async fn artifact_large_streams_in_bounded_memory(f: &dyn StoreFactory) -> RuleResult {
    const SIZE: u64 = 64 << 20;
    let heap = crate::PeakAlloc;
    if heap.current_usage() == 0 {
        return Err(RuleError::Skipped(Capability::MeasuredMemory));
    }
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-big", "out", "bounded.bin");
    let mut buf = vec![0u8; 1 << 20];
    let base = heap.current_usage();
    heap.reset_peak_usage();
    let body: ByteStream = Box::new(Generated::new(7, SIZE));
    let w = a.put(&key, body, opts(1)).await?;
    let put_heap = heap.peak_usage().saturating_sub(base);
    ensure_eq!(w.record.size, SIZE, "put of 64 MiB: size");
    ensure!(
        put_heap < STREAMING_HEAP_MAX,
        "a put of 64 MiB added {} MiB to the heap at its peak (at most {} MiB): the body must be streamed, not held",
        put_heap >> 20,
        STREAMING_HEAP_MAX >> 20
    );
    let base = heap.current_usage();
    heap.reset_peak_usage();
    let mut reader = a.get(&key).await?;
    let size = stream_to_end(&mut reader.body, &mut buf, |_| {}).await?;
    drop(reader);
    let get_heap = heap.peak_usage().saturating_sub(base);
    ensure_eq!(size, SIZE, "64 MiB read back by streaming: size");
    ensure!(
        get_heap < STREAMING_HEAP_MAX,
        "a streamed get of 64 MiB added {} MiB to the heap at its peak (at most {} MiB): the bytes must be streamed, not loaded",
        get_heap >> 20,
        STREAMING_HEAP_MAX >> 20
    );
    Ok(())
}

/// "List by run, optionally by phase, ordered by `(phase, path)`"; listing
/// all runs is ordered by `(run_id, phase, path)` bytewise, paged.
pub async fn artifact_list_by_run_and_phase_ordered(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    // ("a", "x") < ("a-b", "x") as tuples, but "a-b/x" < "a/x" as strings;
    // "x-y" < "x/y" < "x/y/z" bytewise; uppercase sorts before lowercase.
    let specs = [
        ("r1", "a", "x"),
        ("r1", "a-b", "x"),
        ("r1", "a", "x-y"),
        ("r1", "a", "x/y"),
        ("r1", "a", "x/y/z"),
        ("r1", "a", "X"),
        ("r1", "B", "z"),
        ("r1", "a.b", "a"),
        ("r1", "a", "x.y"),
        ("r0", "a", "x"),
        ("r1-0", "a", "x"),
        ("R2", "a", "x"),
        ("r2", "Z", "q"),
    ];
    for (i, (r, p, path)) in specs.iter().enumerate() {
        a.put_bytes(&akey(r, p, path), vec![i as u8; i + 1], opts(i as i64))
            .await?;
    }
    let tuple_sorted = |filter: &dyn Fn(&(&str, &str, &str)) -> bool| {
        let mut v: Vec<(&str, &str, &str)> = specs.iter().copied().filter(|x| filter(x)).collect();
        v.sort_by(|x, y| {
            (x.0.as_bytes(), x.1.as_bytes(), x.2.as_bytes()).cmp(&(
                y.0.as_bytes(),
                y.1.as_bytes(),
                y.2.as_bytes(),
            ))
        });
        v.into_iter()
            .map(|(r, p, path)| format!("{r}/{p}/{path}"))
            .collect::<Vec<_>>()
    };
    let want_r1 = tuple_sorted(&|x| x.0 == "r1");
    for page in [1, 2, 4, 9, 100] {
        let (got, pages) = all_artifacts(a.as_ref(), ArtifactQuery::run(rid("r1")), page).await?;
        ensure_eq!(
            keys(&got),
            want_r1,
            "list of run r1, {page} a page, ordered by (phase, path) bytewise"
        );
        ensure_eq!(
            pages,
            want_r1.len().div_ceil(page),
            "list of run r1 ({} items), {page} a page: pages",
            want_r1.len()
        );
    }
    let want_a = tuple_sorted(&|x| x.0 == "r1" && x.1 == "a");
    let (got, _) = all_artifacts(
        a.as_ref(),
        ArtifactQuery::run(rid("r1")).with_phase(phase("a")),
        2,
    )
    .await?;
    ensure_eq!(keys(&got), want_a, "list of run r1 phase a, 2 a page");
    let want_all = tuple_sorted(&|_| true);
    for page in [3, 100] {
        let (got, _) = all_artifacts(a.as_ref(), ArtifactQuery::default(), page).await?;
        ensure_eq!(
            keys(&got),
            want_all,
            "list of all runs, {page} a page, ordered by (run_id, phase, path)"
        );
    }
    let (got, _) = all_artifacts(a.as_ref(), ArtifactQuery::run(rid("r3")), 5).await?;
    ensure!(
        got.is_empty(),
        "list of a run without artifacts: {:?}",
        keys(&got)
    );
    let (every, _) = all_artifacts(a.as_ref(), ArtifactQuery::default(), 100).await?;
    for info in &every {
        ensure_eq!(
            a.head(&info.key).await?,
            *info,
            "listed info of {} vs head",
            info.key
        );
    }
    Ok(())
}

/// "Writing a path that does not exist stores it" (section 4), so after
/// "Deletes an artifact (retention); `NotFound` if absent" (trait doc) the
/// path reads as absent and takes new bytes without a token.
pub async fn artifact_delete(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let key = akey("run-1", "p", "gone.txt");
    let keep = akey("run-1", "p", "kept.txt");
    a.put_bytes(&key, b"first".to_vec(), opts(1)).await?;
    a.put_bytes(&keep, b"kept".to_vec(), opts(1)).await?;
    a.delete(&key).await?;
    ensure_err!(
        a.head(&key).await,
        ErrorKind::NotFound,
        "head of a deleted artifact"
    );
    ensure_err!(
        a.get(&key).await,
        ErrorKind::NotFound,
        "get of a deleted artifact"
    );
    ensure_err!(
        a.delete(&key).await,
        ErrorKind::NotFound,
        "delete of a deleted artifact"
    );
    ensure_err!(
        a.delete(&akey("run-9", "p", "never")).await,
        ErrorKind::NotFound,
        "delete of a path never written"
    );
    let (left, _) = all_artifacts(a.as_ref(), ArtifactQuery::run(rid("run-1")), 10).await?;
    ensure_eq!(keys(&left), vec![keep.to_string()], "list after a delete");
    // After a delete the path is free: other bytes need no token.
    let w = a.put_bytes(&key, b"second".to_vec(), opts(2)).await?;
    ensure!(w.inserted, "put on a deleted path: expected inserted=true");
    ensure_eq!(
        read_all(a.as_ref(), &key).await?,
        b"second".to_vec(),
        "bytes put after a delete"
    );
    Ok(())
}

/// The entries of a zip: (name, bytes, last-modified, unix mode).
type Entry = (String, Vec<u8>, String, Option<u32>);

fn unzip(bytes: &[u8]) -> std::result::Result<Vec<Entry>, String> {
    let mut z =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("not a zip: {e}"))?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut file = z.by_index(i).map_err(|e| format!("zip entry {i}: {e}"))?;
        let name = file
            .name()
            .map_err(|e| format!("zip entry {i} name: {e}"))?
            .into_owned();
        let modified = file
            .last_modified()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let mode = file.unix_mode();
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| format!("reading zip entry {name}: {e}"))?;
        out.push((name, data, modified, mode));
    }
    Ok(out)
}

/// "A bundle is a zip of named artifacts of one run, stored as an artifact
/// itself. It is deterministic: same members, same bytes, same hash (sorted
/// entries, fixed timestamps and permissions), and it carries a manifest of
/// each member's path, size and hash."
pub async fn bundle_is_deterministic_with_manifest(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let members = [
        ("a", "x", b"alpha".to_vec()),
        (
            "a-b",
            "x",
            b"tuple order differs from string order".to_vec(),
        ),
        ("a", "x/y", (0..=255u8).collect::<Vec<u8>>()),
        ("a", "x-y", Vec::new()),
        ("B", "report.txt", b"upper".repeat(1000)),
    ];
    for (i, (p, path, bytes)) in members.iter().enumerate() {
        a.put_bytes(
            &akey("run-1", p, path),
            bytes.clone(),
            opts(i as i64 * 1000),
        )
        .await?;
    }
    let list = |order: &[usize]| {
        order
            .iter()
            .map(|&i| {
                (
                    phase(members[i].0),
                    akey("run-1", members[i].0, members[i].1).path,
                )
            })
            .collect::<Vec<_>>()
    };
    let req = |path: &str, order: &[usize]| {
        BundleRequest::new(
            rid("run-1"),
            phase("bundles"),
            akey("run-1", "bundles", path).path,
            list(order),
        )
        .with_options(opts(77))
    };
    let first = a.bundle(req("all.zip", &[0, 1, 2, 3, 4])).await?;
    ensure!(first.inserted, "first bundle: expected inserted=true");
    ensure_eq!(
        first.record.content_type,
        BUNDLE_CONTENT_TYPE,
        "content type of a bundle by default"
    );
    let again = a.bundle(req("all.zip", &[4, 2, 0, 3, 1])).await?;
    ensure!(
        !again.inserted,
        "the same bundle again (members reordered) at the same path: expected inserted=false, i.e. same bytes"
    );
    ensure_eq!(
        again.record.sha256,
        first.record.sha256,
        "sha256 of the same bundle again"
    );
    let other = a.bundle(req("copy.zip", &[3, 1, 4, 0, 2])).await?;
    ensure_eq!(
        other.record.sha256,
        first.record.sha256,
        "sha256 of the same members bundled at another path"
    );
    let bytes1 = read_all(a.as_ref(), &first.record.key).await?;
    let bytes2 = read_all(a.as_ref(), &other.record.key).await?;
    ensure!(
        bytes1 == bytes2,
        "two bundles of the same members differ in bytes"
    );
    ensure_eq!(
        Sha256Digest::of(&bytes1),
        first.record.sha256,
        "stored bundle bytes vs its sha256"
    );

    let entries = unzip(&bytes1).map_err(RuleError::Failed)?;
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let mut want_members: Vec<&(&str, &str, Vec<u8>)> = members.iter().collect();
    want_members
        .sort_by(|x, y| (x.0.as_bytes(), x.1.as_bytes()).cmp(&(y.0.as_bytes(), y.1.as_bytes())));
    let mut want_names = vec![MANIFEST_NAME.to_string()];
    want_names.extend(
        want_members
            .iter()
            .map(|(p, path, _)| format!("{p}/{path}")),
    );
    ensure_eq!(
        names,
        want_names,
        "zip entries: the manifest first, then members sorted by (phase, path)"
    );
    for (name, _, modified, mode) in &entries {
        ensure_eq!(
            modified.as_str(),
            "1980-01-01 00:00:00",
            "last-modified time of zip entry {name}"
        );
        ensure_eq!(
            mode.map(|m| m & 0o777),
            Some(0o644),
            "unix permissions of zip entry {name}"
        );
    }
    for ((name, data, _, _), (_, _, bytes)) in entries[1..].iter().zip(&want_members) {
        ensure!(
            data == bytes,
            "zip entry {name} holds {} bytes, the member has {}",
            data.len(),
            bytes.len()
        );
    }

    let manifest: serde_json::Value = serde_json::from_slice(&entries[0].1)
        .map_err(|e| RuleError::Failed(format!("manifest.json is not JSON: {e}")))?;
    let want_manifest = serde_json::json!({
        "format": MANIFEST_FORMAT,
        "run_id": "run-1",
        "members": want_members.iter().map(|(p, path, bytes)| serde_json::json!({
            "path": format!("{p}/{path}"),
            "size": bytes.len(),
            "sha256": Sha256Digest::of(bytes).to_hex(),
        })).collect::<Vec<_>>(),
    });
    ensure_eq!(manifest, want_manifest, "manifest.json of the bundle");

    // A bundle of other members has another hash (the hash means something).
    let fewer = a.bundle(req("fewer.zip", &[0, 1])).await?;
    ensure!(
        fewer.record.sha256 != first.record.sha256,
        "bundles of different members have the same sha256"
    );
    Ok(())
}

/// "A missing member writes nothing."
pub async fn bundle_missing_member_writes_nothing(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let a = &s.stores.artifacts;
    let present = akey("run-1", "p", "present.txt");
    a.put_bytes(&present, b"here".to_vec(), opts(1)).await?;
    // Same path in another run: members are of the bundle's run only.
    a.put_bytes(
        &akey("run-2", "p", "elsewhere.txt"),
        b"other run".to_vec(),
        opts(1),
    )
    .await?;
    let target = akey("run-1", "bundles", "b.zip");
    for (what, missing) in [
        ("a path never written", akey("run-1", "p", "missing.txt")),
        ("a path of another run", akey("run-1", "p", "elsewhere.txt")),
    ] {
        let req = BundleRequest::new(
            rid("run-1"),
            target.phase.clone(),
            target.path.clone(),
            vec![
                (present.phase.clone(), present.path.clone()),
                (missing.phase.clone(), missing.path.clone()),
            ],
        );
        let e = a.bundle(req).await;
        ensure_err!(e, ErrorKind::NotFound, "bundle with a member at {what}");
        ensure_err!(
            a.head(&target).await,
            ErrorKind::NotFound,
            "head of the bundle path after a refused bundle ({what})"
        );
    }
    let (left, _) = all_artifacts(a.as_ref(), ArtifactQuery::run(rid("run-1")), 10).await?;
    ensure_eq!(
        keys(&left),
        vec![present.to_string()],
        "artifacts of run-1 after refused bundles"
    );
    Ok(())
}
