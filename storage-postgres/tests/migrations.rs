//! Schema migrations: from an empty schema, from every earlier version,
//! several processes at once, and refusal of unknown or altered schemas.

mod common;

use std::time::{Duration, Instant};

use runstore_core::{ErrorKind, LogRepository, Run, Version, WorkflowId};
use runstore_postgres::testing::{self, TestSchema};
use runstore_postgres::{LATEST_SCHEMA_VERSION, PostgresConfig, PostgresStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_empty_schema_and_every_earlier_version() {
    for from in 0..LATEST_SCHEMA_VERSION {
        let Some(config) = common::config("migrations::from_every_earlier_version").await else {
            return;
        };
        let _guard = TestSchema::new(config.clone());
        let old = testing::connect_at_version(config.clone(), from)
            .await
            .unwrap();
        assert_eq!(old.schema_version().await.unwrap(), from);
        drop(old);
        let store = PostgresStore::open(config.clone()).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
        // The migrated schema works, and connecting again changes nothing.
        let run = Run::new(WorkflowId::new("wf").unwrap(), Version::FIRST);
        store.create_run(run.clone()).await.unwrap();
        let again = PostgresStore::open(config.clone()).await.unwrap();
        assert_eq!(again.get_run(&run.id).await.unwrap(), run);
        assert_eq!(again.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connects_at_once_migrate_once() {
    let Some(config) = common::config("migrations::many_connects_at_once").await else {
        return;
    };
    let _guard = TestSchema::new(config.clone());
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let c = config.clone();
            tokio::spawn(async move { PostgresStore::open(c).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let client = testing::raw_client(&config.url).await.unwrap();
    let n: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".schema_migrations",
                config.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(LATEST_SCHEMA_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_or_altered_schema_is_refused() {
    let Some(config) = common::config("migrations::newer_or_altered_schema_is_refused").await
    else {
        return;
    };
    let _guard = TestSchema::new(config.clone());
    PostgresStore::open(config.clone()).await.unwrap();
    let client = testing::raw_client(&config.url).await.unwrap();
    let table = format!("\"{}\".schema_migrations", config.schema);
    client
        .execute(
            &format!("INSERT INTO {table} (version, name, sha256) VALUES (999, 'future', 'x')"),
            &[],
        )
        .await
        .unwrap();
    let err = PostgresStore::open(config.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(
        err.to_string().contains("999") && err.to_string().contains("newer"),
        "{err}"
    );

    client
        .execute(&format!("DELETE FROM {table} WHERE version = 999"), &[])
        .await
        .unwrap();
    client
        .execute(
            &format!("UPDATE {table} SET sha256 = 'altered' WHERE version = 1"),
            &[],
        )
        .await
        .unwrap();
    let err = PostgresStore::open(config.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_without_leaking_the_password() {
    // Needs no server: nothing listens on port 1.
    let config = PostgresConfig::new("postgres://app:sekret-pw@127.0.0.1:1/db")
        .with_connect_timeout(Duration::from_secs(1))
        .with_operation_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let err = PostgresStore::open(config.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut shown = format!("{err} {err:?} {config} {config:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        shown.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains("sekret"), "{shown}");

    for (url, schema) in [
        // verify modes need a readable root certificate
        (
            "postgres://app:sekret-pw@127.0.0.1/db?sslmode=verify-full",
            "ok",
        ),
        (
            "postgres://app:sekret-pw@127.0.0.1/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem",
            "ok",
        ),
        ("postgres://app:sekret-pw@127.0.0.1/db", "bad-name"),
        (
            "postgres://app:sekret-pw@127.0.0.1/db",
            "x\"; DROP SCHEMA public; --",
        ),
        ("not a url = at all '", "ok"),
    ] {
        let err = PostgresStore::open(PostgresConfig::new(url).with_schema(schema))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url} {schema}: {err}");
        assert!(!format!("{err:?}").contains("sekret"), "{err:?}");
    }
}
