//! Summaries from the counters kept on every write agree with the
//! reference computation, for many sizes where nearest-rank edges differ,
//! after records and after deletes; counters that disagree with the
//! metrics are `Corrupt`, never a panic or a wrong answer.

mod common;

use std::collections::BTreeMap;

use runstore_core::{
    ErrorKind, ExecutionMetric, MetricsRepository, MetricsSummary, RunId, RunStatus, SummaryQuery,
    Timestamp, Version, WorkflowId,
};
use runstore_postgres::PostgresStore;
use runstore_postgres::testing;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_summary_agrees_with_reference() {
    let Some((store, _guard)) = common::store("summary::sql_summary_agrees_with_reference").await
    else {
        return;
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut run = 0u64;
    for (i, n) in [1usize, 2, 3, 19, 20, 21, 99, 100, 101, 200, 1000]
        .into_iter()
        .enumerate()
    {
        let wf = WorkflowId::new(format!("wf-{i}")).unwrap();
        let mut metrics = Vec::new();
        for _ in 0..n {
            run += 1;
            let status = match rng.next() % 3 {
                0 => RunStatus::Succeeded,
                1 => RunStatus::Failed,
                _ => RunStatus::Cancelled,
            };
            let mut values = BTreeMap::new();
            values.insert("tokens".to_string(), (rng.next() % 10_000) as f64 / 7.0);
            if rng.next().is_multiple_of(2) {
                values.insert(
                    "cost".to_string(),
                    (rng.next() % 1_000_000) as f64 * 1e-3 - 250.0,
                );
            }
            metrics.push(ExecutionMetric {
                // Random ids, so insertion order is not run id order.
                run_id: RunId::new(format!("r{:016x}-{run}", rng.next())).unwrap(),
                workflow_id: wf.clone(),
                workflow_version: Version::new(1 + (rng.next() % 3) as u32).unwrap(),
                status,
                // Few distinct durations, so ties sit on the rank edges.
                duration_micros: (rng.next() % 50) * 1_000
                    + if n > 500 { rng.next() % 7 } else { 0 },
                recorded_at: Timestamp::from_micros(
                    1_700_000_000_000_000 + (rng.next() % 1_000_000_000) as i64,
                )
                .unwrap(),
                counters: BTreeMap::from([("steps".to_string(), (rng.next() % 10) as i64)]),
                values,
            });
        }
        // Half one by one, half through COPY.
        let (one, many) = metrics.split_at(n / 2);
        for m in one {
            store.record(m.clone()).await.unwrap();
        }
        store.record_many(many.to_vec()).await.unwrap();
        // Recorded again: unchanged, counted once.
        store.record_many(metrics.clone()).await.unwrap();
        check(&store, &wf, &metrics, &format!("n={n}")).await;
        for m in &metrics {
            assert_eq!(&store.get(&m.run_id).await.unwrap(), m);
        }

        // A random third deleted, half one by one, half in a batch.
        let mut doomed = Vec::new();
        let mut kept = Vec::new();
        for m in metrics {
            if rng.next().is_multiple_of(3) {
                doomed.push(m);
            } else {
                kept.push(m);
            }
        }
        let (one, many) = doomed.split_at(doomed.len() / 2);
        for m in one {
            store.delete(&m.run_id).await.unwrap();
        }
        let ids: Vec<RunId> = many.iter().map(|m| m.run_id.clone()).collect();
        let deleted = store.delete_many(&ids).await.unwrap();
        assert_eq!(deleted.deleted, ids);
        check(&store, &wf, &kept, &format!("n={n}, a third deleted")).await;
        // Deleted again: nothing changes.
        assert!(store.delete_many(&ids).await.unwrap().deleted.is_empty());
        check(&store, &wf, &kept, &format!("n={n}, deleted twice")).await;
    }
}

/// The summary of `wf` and of each of its versions against the reference
/// over `stored`, the workflow's metrics.
async fn check(store: &PostgresStore, wf: &WorkflowId, stored: &[ExecutionMetric], step: &str) {
    let want = MetricsSummary::compute(wf.clone(), None, stored.iter());
    let got = store.summary(wf, SummaryQuery::default()).await.unwrap();
    assert!(
        got.agrees_with(&want),
        "{step}\n got {got:?}\nwant {want:?}"
    );
    for v in 1..=4 {
        let v = Version::new(v).unwrap();
        let want = MetricsSummary::compute(
            wf.clone(),
            Some(v),
            stored.iter().filter(|m| m.workflow_version == v),
        );
        let got = store.summary(wf, SummaryQuery::version(v)).await.unwrap();
        assert!(
            got.agrees_with(&want),
            "{step} v={v}\n got {got:?}\nwant {want:?}"
        );
        // Sums are exact, like the reference's: bit for bit.
        for (name, stats) in &want.values {
            assert_eq!(
                got.values[name].sum.to_bits(),
                stats.sum.to_bits(),
                "{step} v={v} {name}"
            );
        }
    }
}

fn metric(run: &str, wf: &WorkflowId, micros: u64, values: &[(&str, f64)]) -> ExecutionMetric {
    ExecutionMetric {
        run_id: RunId::new(run).unwrap(),
        workflow_id: wf.clone(),
        workflow_version: Version::FIRST,
        status: RunStatus::Succeeded,
        duration_micros: micros,
        recorded_at: Timestamp::from_micros(1_700_000_000_000_000).unwrap(),
        counters: BTreeMap::new(),
        values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_recorded_then_deleted_leave_the_exact_sum() {
    let Some((store, _guard)) =
        common::store("summary::huge_values_recorded_then_deleted_leave_the_exact_sum").await
    else {
        return;
    };
    let wf = WorkflowId::new("exact").unwrap();
    let small = metric("a-small", &wf, 1_000, &[("x", 1.5), ("y", 0.1)]);
    let huge = metric("b-huge", &wf, 2_000, &[("x", 1e300), ("y", 0.2)]);
    let negative = metric("c-negative", &wf, 3_000, &[("x", -1e300)]);
    let tiny = metric("d-tiny", &wf, 4_000, &[("x", f64::from_bits(1))]);
    store.record(huge.clone()).await.unwrap();
    store
        .record_many(vec![small.clone(), negative.clone(), tiny.clone()])
        .await
        .unwrap();
    let all = [&small, &huge, &negative, &tiny];
    check(&store, &wf, &all.map(Clone::clone), "all four").await;

    // 1e300 + 1.5 - 1e300 + 5e-324 - (-1e300) ... comes back exactly.
    store.delete(&huge.run_id).await.unwrap();
    store
        .delete_many(std::slice::from_ref(&negative.run_id))
        .await
        .unwrap();
    let got = store.summary(&wf, SummaryQuery::default()).await.unwrap();
    assert_eq!(got.values["x"].sum, 1.5 + f64::from_bits(1));
    assert_eq!(got.values["x"].count, 2);
    assert_eq!(got.values["y"].sum, 0.1);
    check(
        &store,
        &wf,
        &[small.clone(), tiny.clone()],
        "huge ones deleted",
    )
    .await;

    store.delete(&tiny.run_id).await.unwrap();
    let got = store.summary(&wf, SummaryQuery::default()).await.unwrap();
    assert_eq!(got.values["x"].sum.to_bits(), 1.5f64.to_bits());
    check(
        &store,
        &wf,
        std::slice::from_ref(&small),
        "only the small one",
    )
    .await;

    // The last one gone: the empty summary, and no counters left behind.
    store.delete(&small.run_id).await.unwrap();
    let got = store.summary(&wf, SummaryQuery::default()).await.unwrap();
    assert_eq!(got, MetricsSummary::empty(wf.clone(), None));
    let client = testing::raw_client(store.config().url.as_str())
        .await
        .unwrap();
    let schema = &store.config().schema;
    for table in [
        "metrics",
        "metric_values",
        "metric_totals",
        "metric_value_totals",
        "metric_duration_buckets",
    ] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_that_disagree_are_corrupt() {
    let Some((store, _guard)) = common::store("summary::counters_that_disagree_are_corrupt").await
    else {
        return;
    };
    let wf = WorkflowId::new("tampered").unwrap();
    let a = metric("a", &wf, 1_000, &[("x", 1.0)]);
    let b = metric("b", &wf, 5_000_000, &[("x", 2.0)]);
    store.record_many(vec![a.clone(), b.clone()]).await.unwrap();
    let client = testing::raw_client(store.config().url.as_str())
        .await
        .unwrap();
    let schema = format!("\"{}\"", store.config().schema);

    // A bucket that lost its count: deleting its metric would take it
    // below zero. Refused as Corrupt, and nothing is deleted.
    client
        .execute(
            &format!("DELETE FROM {schema}.metric_duration_buckets WHERE bucket = $1"),
            &[&(runstore_core::summary::bucket_of(1_000) as i32)],
        )
        .await
        .unwrap();
    let err = store.delete(&a.run_id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let err = store
        .delete_many(std::slice::from_ref(&a.run_id))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(store.get(&a.run_id).await.unwrap(), a);
    // The summary sees buckets that do not add up to the count.
    let err = store
        .summary(&wf, SummaryQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");

    // Totals that count fewer metrics than are deleted.
    client
        .execute(&format!("DELETE FROM {schema}.metric_totals"), &[])
        .await
        .unwrap();
    let err = store.delete(&b.run_id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(store.get(&b.run_id).await.unwrap(), b);
    // A value sum that is not one.
    client
        .execute(
            &format!("UPDATE {schema}.metric_value_totals SET sum = '\\x01ff'::bytea"),
            &[],
        )
        .await
        .unwrap();
    let err = store
        .record(metric("c", &wf, 7, &[("x", 3.0)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");

    // A metric whose named value is not stored: its delete is refused.
    let other = WorkflowId::new("untouched").unwrap();
    let d = metric("d", &other, 9, &[("x", 0.5), ("y", -0.5)]);
    store.record(d.clone()).await.unwrap();
    client
        .execute(
            &format!("DELETE FROM {schema}.metric_values WHERE run_id = 'd' AND name = 'y'"),
            &[],
        )
        .await
        .unwrap();
    let err = store
        .delete_many(std::slice::from_ref(&d.run_id))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(store.get(&d.run_id).await.unwrap(), d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_the_counters() {
    let Some((store, _guard)) =
        common::store("summary::concurrent_writers_keep_the_counters").await
    else {
        return;
    };
    let workflows = [
        WorkflowId::new("busy-a").unwrap(),
        WorkflowId::new("busy-b").unwrap(),
    ];
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (store, workflows) = (store.clone(), workflows.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x1234_5678 + t);
                let mut mine = Vec::new();
                for i in 0..120 {
                    let mut m = metric(
                        &format!("t{t}-{i}"),
                        &workflows[(rng.next() % 2) as usize],
                        1 + rng.next() % 5_000_000,
                        &[("x", (rng.next() % 1000) as f64 * 0.5), ("y", 1e300)],
                    );
                    m.workflow_version = Version::new(1 + (rng.next() % 3) as u32).unwrap();
                    mine.push(m);
                }
                // Some one by one, the rest in batches of different
                // versions, so writers lock overlapping sets of versions.
                for m in &mine[..20] {
                    store.record(m.clone()).await.unwrap();
                }
                for chunk in mine[20..].chunks(25) {
                    store.record_many(chunk.to_vec()).await.unwrap();
                }
                let doomed: Vec<RunId> = mine.iter().step_by(3).map(|m| m.run_id.clone()).collect();
                for id in &doomed[..5] {
                    store.delete(id).await.unwrap();
                }
                store.delete_many(&doomed[5..]).await.unwrap();
                mine.retain(|m| !doomed.contains(&m.run_id));
                mine
            })
        })
        .collect();
    let mut kept = Vec::new();
    for t in tasks {
        kept.extend(t.await.unwrap());
    }
    for wf in &workflows {
        let mine: Vec<_> = kept
            .iter()
            .filter(|m| &m.workflow_id == wf)
            .cloned()
            .collect();
        check(&store, wf, &mine, "after concurrent writers").await;
    }
}

/// A workflow with more versions than a percentile read has branches
/// for (64): the read takes them all in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_versions_in_one_bucket() {
    let Some((store, _guard)) = common::store("summary::many_versions_in_one_bucket").await else {
        return;
    };
    let mut rng = Rng(0xABCD_EF01_2345_6789);
    for (wf, versions) in [("v70", 70u32), ("v64", 64)] {
        let wf = WorkflowId::new(wf).unwrap();
        let mut all = Vec::new();
        for v in 1..=versions {
            for i in 0..3 {
                let mut m = metric(
                    &format!("{wf}-{v}-{i}"),
                    &wf,
                    // 10 s within 2 ms: one duration bucket.
                    10_000_000 + rng.next() % 2_000,
                    &[("x", (rng.next() % 100) as f64)],
                );
                m.workflow_version = Version::new(v).unwrap();
                all.push(m);
            }
        }
        store.record_many(all.clone()).await.unwrap();
        check(&store, &wf, &all, &format!("{versions} versions")).await;
    }
}
