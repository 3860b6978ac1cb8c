//! Artifact behaviour specific to the chunked PostgreSQL layout: streaming
//! in chunks, staged blobs discarded, tamper detection, racing writers.

mod common;

use runstore_core::{
    ArtifactKey, ArtifactQuery, ArtifactStore, ArtifactStoreExt, ErrorKind, PutOptions,
    Sha256Digest, Sha256Hasher, Timestamp,
};
use runstore_postgres::testing;
use tokio::io::AsyncReadExt;

fn key(run: &str, phase: &str, path: &str) -> ArtifactKey {
    ArtifactKey::parse(run, phase, path).unwrap()
}

async fn read_all(store: &dyn ArtifactStore, k: &ArtifactKey) -> runstore_core::Result<Vec<u8>> {
    let mut r = store.get(k).await?;
    let mut out = Vec::new();
    r.body
        .read_to_end(&mut out)
        .await
        .map_err(|e| runstore_core::Error::io("reading", e))?;
    Ok(out)
}

async fn count(url: &str, schema: &str, table: &str) -> i64 {
    let c = testing::raw_client(url).await.unwrap();
    c.query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_overwrite_rules_and_cleanup() {
    let Some((store, guard)) =
        common::store("artifacts::put_get_overwrite_rules_and_cleanup").await
    else {
        return;
    };
    let (url, schema) = (guard.config().url.clone(), guard.config().schema.clone());
    let k = key("run-1", "train", "model/weights.bin");
    let at = Timestamp::from_micros(1_700_000_000_123_456).unwrap();
    let opts = PutOptions::default()
        .content_type("application/x-weights")
        .created_by("trainer")
        .created_at(at);
    let w = store
        .put_bytes(&k, b"hello".to_vec(), opts.clone())
        .await
        .unwrap();
    assert!(w.inserted);
    assert_eq!(w.record.sha256, Sha256Digest::of(b"hello"));
    assert_eq!((w.record.size, w.record.created_at), (5, at));
    assert_eq!(w.record.content_type, "application/x-weights");
    assert_eq!(store.head(&k).await.unwrap(), w.record);
    assert_eq!(read_all(&store, &k).await.unwrap(), b"hello");

    // Same bytes: unchanged, the stored info comes back.
    let again = store
        .put_bytes(&k, b"hello".to_vec(), PutOptions::default())
        .await
        .unwrap();
    assert!(!again.inserted);
    assert_eq!(again.record, w.record);

    // Other bytes: Immutable; wrong token: Conflict; right token: replaced.
    let e = store
        .put_bytes(&k, b"other".to_vec(), PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Immutable);
    let e = store
        .put_bytes(
            &k,
            b"other".to_vec(),
            PutOptions::default().overwrite_token(Sha256Digest::of(b"x")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let replaced = store
        .put_bytes(
            &k,
            b"other".to_vec(),
            PutOptions::default().overwrite_token(w.record.sha256),
        )
        .await
        .unwrap();
    assert!(replaced.inserted);
    assert_eq!(read_all(&store, &k).await.unwrap(), b"other");
    // A token where nothing is stored: Conflict.
    let e = store
        .put_bytes(
            &key("run-1", "train", "absent"),
            b"x".to_vec(),
            PutOptions::default().overwrite_token(w.record.sha256),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    // Refused and unchanged writes left no staged blob behind, and the
    // replaced blob is gone: one blob per artifact.
    assert_eq!(count(&url, &schema, "blobs").await, 1);
    assert_eq!(count(&url, &schema, "artifacts").await, 1);

    // Empty artifact round trip.
    let empty = key("run-1", "train", "empty");
    let w = store
        .put_bytes(&empty, Vec::new(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(w.record.size, 0);
    assert_eq!(read_all(&store, &empty).await.unwrap(), b"");

    // Delete removes the row and its bytes.
    store.delete(&k).await.unwrap();
    assert_eq!(
        store.head(&k).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(store.get(&k).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        store.delete(&k).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(count(&url, &schema, "blob_chunks").await, 0);
    assert_eq!(count(&url, &schema, "blobs").await, 1);
}

/// A reader of `len` pseudo-random bytes, produced as it is read.
struct Generated {
    left: usize,
    state: u64,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // Odd-sized reads, so chunk boundaries fall mid-read.
        let n = buf.remaining().min(self.left).min(77_777);
        for _ in 0..n {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            buf.put_slice(&[(self.state >> 56) as u8]);
        }
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_artifact_streams_in_chunks_and_tampering_is_detected() {
    let Some((store, guard)) = common::store("artifacts::large_artifact_streams").await else {
        return;
    };
    let (url, schema) = (guard.config().url.clone(), guard.config().schema.clone());
    let len = 3 * 512 * 1024 + 12_345;
    let mut expected = Sha256Hasher::new();
    let mut g = Generated {
        left: len,
        state: 7,
    };
    let mut all = Vec::new();
    g.read_to_end(&mut all).await.unwrap();
    expected.update(&all);
    let expected = expected.finish();
    let k = key("run-2", "out", "big.bin");
    let w = store
        .put(
            &k,
            Box::new(Generated {
                left: len,
                state: 7,
            }),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((w.record.size, w.record.sha256), (len as u64, expected));
    assert_eq!(count(&url, &schema, "blob_chunks").await, 4);
    // Streamed back in small reads, hashed on the fly.
    let mut r = store.get(&k).await.unwrap();
    let mut h = Sha256Hasher::new();
    let mut buf = vec![0u8; 10_000];
    let mut total = 0;
    loop {
        let n = r.body.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n;
    }
    assert_eq!((total, h.finish()), (len, expected));

    // Flip a byte of the last chunk behind the store's back: Corrupt.
    let c = testing::raw_client(&url).await.unwrap();
    c.execute(
        &format!("UPDATE \"{schema}\".blob_chunks SET data = set_byte(data, 5, get_byte(data, 5) # 1) WHERE idx = 3"),
        &[],
    )
    .await
    .unwrap();
    let e = read_all(&store, &k).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    // A missing chunk is Corrupt too.
    c.execute(
        &format!("DELETE FROM \"{schema}\".blob_chunks WHERE idx = 1"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        read_all(&store, &k).await.unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_bytewise_ordered_and_paged() {
    let Some((store, _guard)) =
        common::store("artifacts::list_is_bytewise_ordered_and_paged").await
    else {
        return;
    };
    let paths = ["b", "B", "a/z", "a.b", "_x", "a-b", "Z"];
    for run in ["r2", "r1"] {
        for phase in ["p2", "P1"] {
            for p in paths {
                store
                    .put_bytes(
                        &key(run, phase, p),
                        p.as_bytes().to_vec(),
                        PutOptions::default(),
                    )
                    .await
                    .unwrap();
            }
        }
    }
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(ArtifactQuery::default().with_limit(3).with_cursor(cursor))
            .await
            .unwrap();
        all.extend(page.items.into_iter().map(|i| i.key));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = all.clone();
    sorted.sort(); // ArtifactKey orders bytewise by (run, phase, path)
    assert_eq!(all, sorted);
    assert_eq!(all.len(), 28);
    let one = store
        .list(
            ArtifactQuery::run(runstore_core::RunId::new("r1").unwrap())
                .with_phase(runstore_core::Phase::new("P1").unwrap()),
        )
        .await
        .unwrap();
    let got: Vec<&str> = one.items.iter().map(|i| i.key.path.as_str()).collect();
    assert_eq!(got, ["B", "Z", "_x", "a-b", "a.b", "a/z", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_of_one_path_store_it_once() {
    let Some((store, guard)) = common::store("artifacts::racing_writers").await else {
        return;
    };
    let k = key("run-3", "p", "same.txt");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, k) = (store.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            s.put_bytes(&k, b"same bytes".to_vec(), PutOptions::default())
                .await
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1);
    assert_eq!(
        count(&guard.config().url, &guard.config().schema, "blobs").await,
        1
    );
}
