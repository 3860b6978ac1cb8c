//! Faults, only against a throwaway cluster this test starts for itself:
//! the server stopped (and frozen) in the middle of a workload. Calls fail
//! with `Unavailable` within the operation timeout instead of hanging, and
//! once the server is back the same store recovers by itself.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runstore_core::{
    ErrorKind, LogRepository, LogRepositoryExt, NewEvent, Run, RunQuery, Version, WorkflowId,
};
use runstore_postgres::testing::{self, Cluster};
use runstore_postgres::{PostgresConfig, PostgresStore};
use serde_json::json;

const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack for scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Runs a mixed set of calls concurrently; each must fail `Unavailable`
/// within the bound.
async fn all_fail_unavailable_in_time(store: &PostgresStore, run: &Run, phase: &str) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, id) = (store.clone(), run.id.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let kind = match i % 4 {
                0 => s
                    .append_event(&id, NewEvent::new("during", json!(i)))
                    .await
                    .err()
                    .map(|e| e.kind()),
                1 => s.get_run(&id).await.err().map(|e| e.kind()),
                2 => s
                    .query_runs(RunQuery::default())
                    .await
                    .err()
                    .map(|e| e.kind()),
                _ => s
                    .create_run(Run::new(WorkflowId::new("w").unwrap(), Version::FIRST))
                    .await
                    .err()
                    .map(|e| e.kind()),
            };
            (kind, started.elapsed())
        }));
    }
    for t in tasks {
        let (kind, took) = t.await.unwrap();
        assert_eq!(
            kind,
            Some(ErrorKind::Unavailable),
            "{phase}: a call did not fail Unavailable"
        );
        assert!(took <= OP_TIMEOUT + SLACK, "{phase}: a call took {took:?}");
    }
}

/// Polls until a call succeeds, within `limit`.
async fn until_recovered(store: &PostgresStore, run: &Run, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match store.get_run(&run.id).await {
            Ok(_) => return started.elapsed(),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "while recovering: {e}");
                assert!(
                    started.elapsed() < limit,
                    "no recovery within {limit:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn signal(sig: &str, pids: &[u32]) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_and_frozen_mid_workload_then_recovers() {
    let cluster = match blocking(Cluster::start_new).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            testing::no_server(
                "faults::server_stopped_mid_workload",
                &format!("no throwaway cluster: {e}"),
            );
            return;
        }
    };
    let config = PostgresConfig::new(cluster.url())
        .with_schema("faults")
        .with_pool_size(4)
        .with_connect_timeout(Duration::from_secs(1))
        .with_operation_timeout(OP_TIMEOUT);
    let store = PostgresStore::open(config).await.unwrap();
    let run = Run::new(WorkflowId::new("faulty").unwrap(), Version::FIRST);
    store.create_run(run.clone()).await.unwrap();
    for i in 0..10 {
        store
            .append_event(&run.id, NewEvent::new("before", json!(i)))
            .await
            .unwrap();
    }

    // 1. Stopped: connections closed, new ones refused.
    let c = cluster.clone();
    blocking(move || c.stop()).await.unwrap();
    all_fail_unavailable_in_time(&store, &run, "server stopped").await;
    let c = cluster.clone();
    blocking(move || c.start()).await.unwrap();
    let took = until_recovered(&store, &run, Duration::from_secs(30)).await;
    eprintln!("recovered {took:?} after restart");
    let appended = store
        .append_event(&run.id, NewEvent::new("after", json!("restart")))
        .await
        .unwrap();
    assert_eq!(appended.seq, 11, "numbering continues after the restart");

    // 2. Frozen (SIGSTOP): connections stay open but nothing answers; calls
    // must give up within the operation timeout rather than hang.
    let pids = cluster.server_pids();
    assert!(!pids.is_empty(), "no server processes found");
    signal("STOP", &pids);
    let frozen = async { all_fail_unavailable_in_time(&store, &run, "server frozen").await };
    let outcome = tokio::time::timeout(Duration::from_secs(30), frozen).await;
    signal("CONT", &pids);
    outcome.expect("calls hung while the server was frozen");
    until_recovered(&store, &run, Duration::from_secs(30)).await;
    let appended = store
        .append_event(&run.id, NewEvent::new("after", json!("thaw")))
        .await
        .unwrap();
    // An append that timed out while the server was frozen may still have
    // been applied once it thawed (Unavailable means "unknown outcome";
    // retries are safe with idempotency keys): at most the two sent.
    assert!((12..=14).contains(&appended.seq), "seq {}", appended.seq);
    let events = store.all_events(&run.id).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=appended.seq).collect::<Vec<_>>(),
        "numbering has gaps"
    );
    assert!(
        events[11..events.len() - 1]
            .iter()
            .all(|e| e.kind == "during")
    );
}
