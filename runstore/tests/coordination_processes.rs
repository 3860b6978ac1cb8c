//! Coordination across real processes (docs/DESIGN.md section 11), on a
//! file root, a SQLite file and a Postgres schema, each opened from YAML.
//! The test binary re-executes itself as 8 children (env `COORD_CHILD_YAML`
//! set) that run `child_worker` only; each child:
//!
//! - contends for one lease for a while; whenever it holds it, it appends
//!   `enter` and `exit` events carrying its token to a shared run before
//!   releasing, so the store's own event order shows whether two holders
//!   ever overlapped, and prints every token it got;
//! - takes the lease once more with a short time to live, lets it expire,
//!   and checks that its release is refused;
//! - creates the same runs by external key and records the same delivery
//!   ids as every other child, printing what was new.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runstore::{
    ErrorKind, LeaseRequest, LogRepositoryExt, NewEvent, Run, RunId, Storage, Version, WorkflowId,
};
use serde_json::json;

const ENV_YAML: &str = "COORD_CHILD_YAML";
const ENV_ID: &str = "COORD_CHILD_ID";
const CHILDREN: usize = 8;
const LEASE: &str = "the-one";
const GUARD_RUN: &str = "guarded";
const KEYS: usize = 5;
const DELIVERIES: usize = 20;
/// How long each child contends for the lease.
const CONTEND: Duration = Duration::from_millis(2500);

fn guard_run() -> Run {
    let mut run = Run::new(WorkflowId::new("coord").unwrap(), Version::FIRST);
    run.id = RunId::new(GUARD_RUN).unwrap();
    run.started_at = runstore::Timestamp::from_micros(1_767_225_600_000_000).unwrap();
    run
}

async fn child(yaml: &str, me: usize) {
    let storage = Storage::from_yaml_str(yaml).await.unwrap();
    let logs = storage.stores().logs;
    logs.create_run(guard_run()).await.unwrap();
    let holder = format!("p{me}");
    let start = Instant::now();
    while start.elapsed() < CONTEND {
        match logs
            .acquire_lease(LeaseRequest::new(LEASE, &holder, Duration::from_secs(30)))
            .await
        {
            Ok(lease) => {
                let mark = |phase: &str| {
                    NewEvent::new(phase, json!({"token": lease.token, "holder": holder}))
                };
                let guard = RunId::new(GUARD_RUN).unwrap();
                logs.append_event(&guard, mark("enter")).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
                logs.append_event(&guard, mark("exit")).await.unwrap();
                logs.release_lease(LEASE, lease.token).await.unwrap();
                println!("TOKEN {} {holder}", lease.token);
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                tokio::time::sleep(Duration::from_millis(2 + me as u64)).await;
            }
            Err(e) => panic!("acquire failed: {e}"),
        }
    }
    // A stale holder: its lease expires, its release is refused.
    let stale = loop {
        let req = LeaseRequest::new("stale", &holder, Duration::from_millis(200));
        match logs.acquire_lease(req).await {
            Ok(l) => break l,
            Err(e) if e.kind() == ErrorKind::Conflict => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("acquire of the stale lease failed: {e}"),
        }
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refused = logs.release_lease("stale", stale.token).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");
    println!("STALE_REFUSED {}", stale.token);
    for k in 0..KEYS {
        let mut run = Run::new(WorkflowId::new("webhooks").unwrap(), Version::FIRST)
            .with_external_key(format!("ext-{k}"));
        run.id = RunId::new(format!("p{me}-k{k}")).unwrap();
        let w = logs.create_run(run).await.unwrap();
        println!("KEY ext-{k} {} {}", w.inserted, w.record.id);
    }
    for d in 0..DELIVERIES {
        let w = logs.record_delivery(&format!("d-{d}")).await.unwrap();
        println!("DELIVERY d-{d} {}", w.inserted);
    }
}

/// The child's body; run directly (no env) it passes without doing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker() {
    if let Ok(yaml) = std::env::var(ENV_YAML) {
        let me: usize = std::env::var(ENV_ID).unwrap().parse().unwrap();
        child(&yaml, me).await;
    }
}

/// Runs the children on `yaml` and checks everything they and the store say.
async fn contend(yaml: &str) {
    let children: Vec<_> = (0..CHILDREN)
        .map(|i| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
                .env(ENV_YAML, yaml)
                .env(ENV_ID, i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens: Vec<u64> = Vec::new();
    let mut stale_refused = 0;
    let mut key_inserts: BTreeMap<String, usize> = BTreeMap::new();
    let mut key_runs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut new_deliveries: BTreeMap<String, usize> = BTreeMap::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed: {:?}", out.status);
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            // The harness's `test child_worker ... ` may precede the first line.
            let words: Vec<&str> = line.split_whitespace().collect();
            let start = words
                .iter()
                .position(|w| ["TOKEN", "STALE_REFUSED", "KEY", "DELIVERY"].contains(w))
                .unwrap_or(words.len());
            match &words[start..] {
                ["TOKEN", t, _] => tokens.push(t.parse().unwrap()),
                ["STALE_REFUSED", _] => stale_refused += 1,
                ["KEY", k, inserted, id] => {
                    *key_inserts.entry(k.to_string()).or_default() +=
                        usize::from(*inserted == "true");
                    key_runs
                        .entry(k.to_string())
                        .or_default()
                        .insert(id.to_string());
                }
                ["DELIVERY", d, new] => {
                    *new_deliveries.entry(d.to_string()).or_default() += usize::from(*new == "true")
                }
                _ => {}
            }
        }
    }
    assert_eq!(stale_refused, CHILDREN, "every stale release refused");
    // Tokens: each acquisition got its own, and they are unique.
    let unique: BTreeSet<u64> = tokens.iter().copied().collect();
    assert_eq!(unique.len(), tokens.len(), "a token was handed out twice");
    assert!(
        tokens.len() >= CHILDREN,
        "only {} acquisitions",
        tokens.len()
    );
    // The store's event order: enter/exit pairs never interleave, and
    // tokens grow from one holder to the next.
    let storage = Storage::from_yaml_str(yaml).await.unwrap();
    let logs = storage.stores().logs;
    let events = logs
        .all_events(&RunId::new(GUARD_RUN).unwrap())
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        tokens.len() * 2,
        "enter and exit per acquisition"
    );
    let mut last = 0;
    for pair in events.chunks(2) {
        let (enter, exit) = (&pair[0], &pair[1]);
        assert_eq!(
            (enter.kind.as_str(), exit.kind.as_str()),
            ("enter", "exit"),
            "two holders overlapped: {pair:?}"
        );
        assert_eq!(
            enter.payload, exit.payload,
            "two holders overlapped: {pair:?}"
        );
        let token = enter.payload["token"].as_u64().unwrap();
        assert!(token > last, "token {token} after {last}");
        last = token;
    }
    for k in 0..KEYS {
        let key = format!("ext-{k}");
        assert_eq!(key_inserts.get(&key), Some(&1), "inserts of {key}");
        let ids = &key_runs[&key];
        assert_eq!(ids.len(), 1, "{key} answered with several runs: {ids:?}");
        let stored = logs
            .get_run_by_key(&WorkflowId::new("webhooks").unwrap(), &key)
            .await
            .unwrap();
        assert!(ids.contains(stored.id.as_str()));
    }
    let keyed = logs
        .count_runs(runstore::RunFilter::default().workflow(WorkflowId::new("webhooks").unwrap()))
        .await
        .unwrap();
    assert_eq!(keyed, KEYS as u64, "runs stored for {KEYS} keys");
    for d in 0..DELIVERIES {
        let id = format!("d-{d}");
        assert_eq!(new_deliveries.get(&id), Some(&1), "new records of {id}");
    }
}

fn yaml_for(logs: &str) -> String {
    format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs: {logs}\n  metrics: {{ type: memory }}\n  artifacts: {{ type: memory }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_a_file_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = serde_json::to_string(&dir.path().join("root")).unwrap();
    contend(&yaml_for(&format!("{{ type: file, path: {root} }}"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = serde_json::to_string(&dir.path().join("runstore.db")).unwrap();
    contend(&yaml_for(&format!("{{ type: sqlite, path: {db} }}"))).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_a_postgres_schema() {
    use runstore_postgres::testing::{TestSchema, no_server, test_config, why_no_server};
    let Some(config) = test_config().await else {
        no_server(
            "eight_processes_on_a_postgres_schema",
            &why_no_server().unwrap_or_else(|| "no server".into()),
        );
        return;
    };
    let url = serde_json::to_string(&config.url).unwrap();
    let yaml = yaml_for(&format!(
        "{{ type: postgres, url: {url}, schema: {}, pool_size: 2 }}",
        config.schema
    ));
    let _schema = TestSchema::new(config);
    contend(&yaml).await;
}
