//! What the conformance suite cannot see: writers racing from separate
//! clients (as separate processes would), a server that does not answer,
//! a missing bucket, and the layout in the bucket.

use runstore_core::{ArtifactKey, ArtifactStore, ArtifactStoreExt, ErrorKind, PutOptions};
use runstore_s3::testing::{self, TestServer};
use runstore_s3::{S3Config, S3Store};

fn server() -> Option<TestServer> {
    testing::server_or_skip("s3 specific tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creators_of_one_path_exactly_one_wins() {
    let Some(server) = server() else { return };
    let config = testing::test_config(&server);
    let key = ArtifactKey::parse("run-1", "build", "out/report.txt").unwrap();
    // Eight clients, each with its own connection pool, write other bytes.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let config = config.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let store = S3Store::open(config).await.unwrap();
            store
                .put_bytes(&key, vec![i; 1000 + i as usize], PutOptions::default())
                .await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(w) => {
                assert!(w.inserted);
                won.push(w.record);
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Immutable, "{e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one writer wins: {won:?}");
    let store = S3Store::open(config).await.unwrap();
    let (info, bytes) = store.get_bytes(&key).await.unwrap();
    assert_eq!(info, won[0]);
    assert_eq!(bytes.len() as u64, info.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_of_the_same_bytes_all_succeed_once_inserted() {
    let Some(server) = server() else { return };
    let config = testing::test_config(&server);
    let key = ArtifactKey::parse("run-1", "build", "same.bin").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let config = config.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let store = S3Store::open(config).await.unwrap();
            store
                .put_bytes(&key, b"identical".to_vec(), PutOptions::default())
                .await
                .unwrap()
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += t.await.unwrap().inserted as usize;
    }
    assert_eq!(inserted, 1);
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there now.
    let mut config = S3Config::new("runstore-test")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_credentials(testing::TEST_KEY, testing::TEST_KEY);
    config.retry_timeout = 1.0;
    let err = S3Store::open(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_missing_bucket_fails_at_open_naming_it() {
    let Some(server) = server() else { return };
    let config = S3Config::new("no-such-bucket-runstore")
        .with_endpoint(server.endpoint())
        .with_credentials(testing::TEST_KEY, testing::TEST_KEY);
    let err = S3Store::open(config).await.unwrap_err();
    // The server's answer travels in the chained source (its status is not
    // exposed by object_store, so this is not NotFound); it is not retryable.
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("no-such-bucket-runstore"), "{err}");
    let chain = format!("{:?}", std::error::Error::source(&err));
    assert!(chain.contains("NoSuchBucket"), "{chain}");
}

#[tokio::test]
async fn replacing_and_deleting_leave_no_blob_behind() {
    let Some(server) = server() else { return };
    let config = testing::test_config(&server);
    let store = S3Store::open(config.clone()).await.unwrap();
    let key = ArtifactKey::parse("run-2", "p", "a.txt").unwrap();
    let first = store
        .put_bytes(&key, b"one".to_vec(), PutOptions::default())
        .await
        .unwrap()
        .record;
    store
        .put_bytes(
            &key,
            b"two".to_vec(),
            PutOptions::default().overwrite_token(first.sha256),
        )
        .await
        .unwrap();
    // A refused write leaves nothing either.
    let refused = store
        .put_bytes(&key, b"three".to_vec(), PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Immutable);
    assert_eq!(objects_under(&server, &config, "blobs").await, 1);
    store.delete(&key).await.unwrap();
    assert_eq!(objects_under(&server, &config, "blobs").await, 0);
    assert_eq!(objects_under(&server, &config, "artifacts").await, 0);
}

/// Counts the objects under `<prefix>/<folder>` with a plain client.
async fn objects_under(server: &TestServer, config: &S3Config, folder: &str) -> usize {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(server.bucket())
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(testing::TEST_KEY)
        .with_secret_access_key(testing::TEST_KEY)
        .build()
        .unwrap();
    let prefix = object_store::path::Path::parse(format!("{}/{folder}", config.prefix)).unwrap();
    raw.list(Some(&prefix)).collect::<Vec<_>>().await.len()
}
