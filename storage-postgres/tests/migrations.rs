//! Schema migrations: from an empty schema, from every earlier version,
//! several processes at once, refusal of unknown or altered schemas, and
//! the summaries of metrics stored before version 5 built when migrating.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runstore_core::{
    ErrorKind, ExecutionMetric, LogRepository, MetricsRepository, MetricsSummary, Run, RunId,
    RunStatus, SummaryQuery, Timestamp, Version, WorkflowId,
};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stored_at_version_4_are_summarized_after_migrating() {
    let Some(config) = common::config("migrations::metrics_at_version_4_summarized").await else {
        return;
    };
    let _guard = TestSchema::new(config.clone());
    let old = testing::connect_at_version(config.clone(), 4)
        .await
        .unwrap();
    drop(old);
    // Stored as a version-4 build stored them, more than one page of the
    // build (10,000) of them.
    let mut seed = 0x0DDB_1A5E_5BAD_5EEDu64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let workflows = [
        WorkflowId::new("old-a").unwrap(),
        WorkflowId::new("old-b").unwrap(),
    ];
    let mut metrics = Vec::new();
    for i in 0..23_456u64 {
        let mut values = BTreeMap::new();
        values.insert("tokens".to_string(), (next() % 10_000) as f64 / 3.0);
        match next() % 8 {
            0 => values.insert("cost".to_string(), 1e300),
            1 => values.insert("cost".to_string(), -1e300),
            _ => values.insert("cost".to_string(), (next() % 1000) as f64 * 0.01),
        };
        metrics.push(ExecutionMetric {
            run_id: RunId::new(format!("old-{:08x}-{i}", next() as u32)).unwrap(),
            workflow_id: workflows[(next() % 2) as usize].clone(),
            workflow_version: Version::new(1 + (next() % 3) as u32).unwrap(),
            status: match next() % 3 {
                0 => RunStatus::Succeeded,
                1 => RunStatus::Failed,
                _ => RunStatus::Cancelled,
            },
            duration_micros: match next() % 10 {
                0 => next() % 256,
                _ => 1_000 + next() % 20_000_000,
            },
            recorded_at: Timestamp::from_micros(
                1_700_000_000_000_000 + (next() % 1_000_000_000) as i64,
            )
            .unwrap(),
            counters: BTreeMap::from([("steps".to_string(), (next() % 10) as i64)]),
            values,
        });
    }
    let client = testing::raw_client(&config.url).await.unwrap();
    let q = format!("\"{}\"", config.schema);
    let col = |f: fn(&ExecutionMetric) -> String| metrics.iter().map(f).collect::<Vec<_>>();
    let (ids, wfs, statuses) = (
        col(|m| m.run_id.to_string()),
        col(|m| m.workflow_id.to_string()),
        col(|m| m.status.as_str().to_string()),
    );
    let (counters, values) = (
        col(|m| serde_json::to_string(&m.counters).unwrap()),
        col(|m| serde_json::to_string(&m.values).unwrap()),
    );
    let versions: Vec<i32> = metrics
        .iter()
        .map(|m| m.workflow_version.get() as i32)
        .collect();
    let durations: Vec<i64> = metrics.iter().map(|m| m.duration_micros as i64).collect();
    let times: Vec<i64> = metrics.iter().map(|m| m.recorded_at.as_micros()).collect();
    client
        .execute(
            &format!(
                "INSERT INTO {q}.metrics (run_id, workflow_id, workflow_version, status, \
                 duration_micros, recorded_at, counters, \"values\") \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::int8[], \
                 $6::int8[], $7::text[], $8::text[])"
            ),
            &[
                &ids, &wfs, &versions, &statuses, &durations, &times, &counters, &values,
            ],
        )
        .await
        .unwrap();
    // One row per named value, from the metrics' values as stored.
    client
        .execute(
            &format!(
                "INSERT INTO {q}.metric_values (run_id, workflow_id, workflow_version, name, value) \
                 SELECT m.run_id, m.workflow_id, m.workflow_version, v.key, v.value::float8 \
                 FROM {q}.metrics m, json_each_text(m.\"values\"::json) AS v"
            ),
            &[],
        )
        .await
        .unwrap();

    let store = PostgresStore::open(config.clone()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
    let check = |metrics: Vec<ExecutionMetric>, step: &'static str| {
        let store = store.clone();
        let workflows = workflows.clone();
        async move {
            for wf in &workflows {
                for version in [None, Some(1), Some(2), Some(3)] {
                    let version = version.map(|v| Version::new(v).unwrap());
                    let mut q = SummaryQuery::default();
                    q.workflow_version = version;
                    let got = store.summary(wf, q).await.unwrap();
                    let want = MetricsSummary::compute(
                        wf.clone(),
                        version,
                        metrics.iter().filter(|m| {
                            &m.workflow_id == wf && version.is_none_or(|v| v == m.workflow_version)
                        }),
                    );
                    assert!(
                        got.agrees_with(&want),
                        "{step}: {wf} {version:?}\n got {got:?}\nwant {want:?}"
                    );
                    assert_eq!(
                        got.values["cost"].sum.to_bits(),
                        want.values["cost"].sum.to_bits()
                    );
                }
            }
        }
    };
    check(metrics.clone(), "migrated").await;
    // The built counters are kept from then on.
    let (gone, kept) = metrics.split_at(1_000);
    let ids: Vec<RunId> = gone.iter().map(|m| m.run_id.clone()).collect();
    store.delete_many(&ids).await.unwrap();
    check(kept.to_vec(), "deleted after migrating").await;
    // Their named values went with them.
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {q}.metric_values"), &[])
        .await
        .unwrap()
        .get(0);
    let values: usize = kept.iter().map(|m| m.values.len()).sum();
    assert_eq!(n as usize, values);
}

/// The schema's index definitions by name (`pg_indexes.indexdef`).
async fn index_defs(config: &PostgresConfig) -> BTreeMap<String, String> {
    let client = testing::raw_client(&config.url).await.unwrap();
    client
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = $1",
            &[&config.schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_drops_secondary_indexes_and_any_open_builds_them_again() {
    use runstore_core::BulkLoadOptions;
    let Some(config) = common::config("migrations::bulk_load").await else {
        return;
    };
    let _guard = TestSchema::new(config.clone());
    let store = PostgresStore::open(config.clone()).await.unwrap();
    let all = index_defs(&config).await;
    LogRepository::begin_bulk_load(&store, BulkLoadOptions::default())
        .await
        .unwrap();
    MetricsRepository::begin_bulk_load(&store, BulkLoadOptions::default())
        .await
        .unwrap();
    let during = index_defs(&config).await;
    for kept in [
        "runs_by_start",
        "runs_by_external_key",
        "events_idempotency",
    ] {
        assert!(during.contains_key(kept), "{kept} is kept: {during:?}");
    }
    for dropped in ["runs_by_status", "metrics_by_duration", "metrics_by_time"] {
        assert!(!during.contains_key(dropped), "{dropped} is dropped");
    }
    // Killed mid-load: the handle goes without ending it. Opening the
    // schema again builds what the load left out, as the migrations did.
    drop(store);
    let store = PostgresStore::open(config.clone()).await.unwrap();
    assert_eq!(
        index_defs(&config).await,
        all,
        "an open builds every missing index"
    );
    // A load of 2 runs into a store of 2 keeps the indexes.
    for id in ["r1", "r2"] {
        let mut run = Run::new(WorkflowId::new("w").unwrap(), Version::FIRST);
        run.id = RunId::new(id).unwrap();
        store.create_run(run).await.unwrap();
    }
    let small = BulkLoadOptions::default().with_expected_runs(2);
    LogRepository::begin_bulk_load(&store, small).await.unwrap();
    assert_eq!(index_defs(&config).await, all);
    LogRepository::begin_bulk_load(&store, BulkLoadOptions::default())
        .await
        .unwrap();
    assert_ne!(index_defs(&config).await, all);
    LogRepository::end_bulk_load(&store).await.unwrap();
    assert_eq!(index_defs(&config).await, all, "end builds the run indexes");
}
