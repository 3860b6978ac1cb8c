//! Summaries computed in SQL (percentile_disc, aggregates) agree with the
//! reference computation, for many sizes where nearest-rank edges differ.

mod common;

use std::collections::BTreeMap;

use runstore_core::{
    ExecutionMetric, MetricsRepository, MetricsSummary, RunId, RunStatus, SummaryQuery, Timestamp,
    Version, WorkflowId,
};

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

        let mut sorted = metrics.clone();
        sorted.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        let want = MetricsSummary::compute(wf.clone(), None, sorted.iter());
        let got = store.summary(&wf, SummaryQuery::default()).await.unwrap();
        assert!(got.agrees_with(&want), "n={n}\n got {got:?}\nwant {want:?}");
        for v in 1..=3 {
            let v = Version::new(v).unwrap();
            let want = MetricsSummary::compute(
                wf.clone(),
                Some(v),
                sorted.iter().filter(|m| m.workflow_version == v),
            );
            let got = store.summary(&wf, SummaryQuery::version(v)).await.unwrap();
            assert!(
                got.agrees_with(&want),
                "n={n} v={v}\n got {got:?}\nwant {want:?}"
            );
            // Sums are taken in run id order, like the reference: bit for bit.
            for (name, stats) in &want.values {
                assert_eq!(
                    got.values[name].sum.to_bits(),
                    stats.sum.to_bits(),
                    "{name}"
                );
            }
        }
        for m in &metrics {
            assert_eq!(&store.get(&m.run_id).await.unwrap(), m);
        }
    }
}
