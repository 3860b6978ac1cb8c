//! Two handles on one storage, and reopening it.

use runstore_core::{
    Appended, ArtifactStoreExt, ErrorKind, NewEvent, PutOptions, RunStatus, RunUpdate,
};
use serde_json::json;

use crate::factory::{Capability, StoreFactory};
use crate::fixtures::{akey, appended, def, duplicate_of, event, metric, rid, run, t, v, wf};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq, ensure_err, require};

use super::{events_all, full_run, one_to, seqs, with_events};

/// "Each run's events are numbered 1, 2, 3 ... by the store, with no gaps",
/// from two handles on one storage (docs/DESIGN.md section 6: "safe with several
/// processes", "several application processes may share one database").
///
/// Needs [`Capability::ConcurrentHandles`]. Two handles append 25 events
/// each to one run at the same time, plus one shared idempotency key from
/// both: numbers are 1..=51 without gaps or duplicates, and both handles
/// list the same events.
pub async fn run_shared_storage_appends_from_two_handles(f: &dyn StoreFactory) -> RuleResult {
    require!(f, Capability::ConcurrentHandles);
    let s1 = f.create().await?;
    let s2 = crate::factory::reopen_distinct(f, &s1).await?;
    s1.stores
        .logs
        .create_run(run("shared", "etl", 1, 10))
        .await?;
    ensure_eq!(
        s2.stores.logs.get_run(&rid("shared")).await?,
        run("shared", "etl", 1, 10),
        "get_run(shared) through the second handle, created through the first"
    );
    const EACH: usize = 25;
    let mut handles = Vec::new();
    for (h, logs) in [
        (1usize, s1.stores.logs.clone()),
        (2, s2.stores.logs.clone()),
    ] {
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let e = NewEvent::new(format!("h{h}.{i}"), json!({"h": h, "i": i}))
                    .with_at(t(20, i as i64));
                got.push((
                    logs.append_event(&rid("shared"), e).await?,
                    format!("h{h}.{i}"),
                ));
                if i == EACH / 2 {
                    let dup = event("both", 21).with_idempotency_key("from-both");
                    got.push((
                        logs.append_event(&rid("shared"), dup).await?,
                        "both".to_string(),
                    ));
                }
            }
            Ok::<_, runstore_core::Error>(got)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.await
                .map_err(|e| RuleError::Failed(format!("an appending task panicked: {e}")))??,
        );
    }
    let fresh: Vec<u64> = all
        .iter()
        .filter(|(a, _)| !a.duplicate)
        .map(|(a, _)| a.seq)
        .collect();
    let mut sorted = fresh.clone();
    sorted.sort_unstable();
    let total = (2 * EACH + 1) as u64;
    ensure_eq!(
        sorted,
        one_to(total),
        "numbers of non-duplicate appends from two handles: 1..{total} without gap or duplicate"
    );
    let shared_key: Vec<&Appended> = all
        .iter()
        .filter(|(_, k)| k == "both")
        .map(|(a, _)| a)
        .collect();
    ensure!(
        shared_key.len() == 2
            && shared_key.iter().filter(|a| a.duplicate).count() == 1
            && shared_key[0].seq == shared_key[1].seq,
        "one idempotency key appended through both handles: exactly one must store it and both get its number, got {shared_key:?}"
    );
    let from1 = events_all(s1.stores.logs.as_ref(), &rid("shared"), 20).await?;
    let from2 = events_all(s2.stores.logs.as_ref(), &rid("shared"), 20).await?;
    ensure_eq!(
        seqs(&from1),
        one_to(total),
        "list_events(shared) through handle 1"
    );
    ensure_eq!(from1, from2, "both handles must list the same events");
    for (a, kind) in all.iter().filter(|(a, _)| !a.duplicate) {
        ensure_eq!(
            &from1[(a.seq - 1) as usize].kind,
            kind,
            "event {} must be the one whose append returned it",
            a.seq
        );
    }
    Ok(())
}

/// "data written via one handle is read through another": docs/DESIGN.md section
/// 6 (durable, shared storage) for all four concerns.
///
/// Needs [`Capability::PersistsAcrossReopen`]. Writes a workflow, runs with
/// events, a metric and an artifact through one handle, reopens, drops the
/// first handle, and reads everything back through the second, which also
/// sees writes as already stored (idempotent no-ops) and can continue them.
pub async fn run_shared_storage_survives_reopen(f: &dyn StoreFactory) -> RuleResult {
    require!(f, Capability::PersistsAcrossReopen);
    let s1 = f.create().await?;
    let d = def("etl", 1, None);
    s1.stores.workflows.store(d.clone()).await?;
    let mut finished = full_run("persisted");
    finished.workflow_id = wf("etl");
    finished.workflow_version = v(1);
    s1.stores.logs.create_run(finished.clone()).await?;
    let e1 = event("one", 101).with_idempotency_key("k");
    let e2 = NewEvent::new("two ✓", json!({"nested": [1, {"x": 0.1}]})).with_at(t(102, 7));
    s1.stores
        .logs
        .append_events(&rid("persisted"), vec![e1.clone(), e2.clone()])
        .await?;
    let imported = with_events(run("imported", "etl", 1, 200), 3);
    s1.stores.logs.import_runs(vec![imported.clone()]).await?;
    let m = metric("persisted", "etl", 1, RunStatus::Succeeded, 60_000_000);
    s1.stores.metrics.record(m.clone()).await?;
    let key = akey("persisted", "report", "out/summary.json");
    let bytes = b"{\"rows\": 12345}\n".to_vec();
    let info = s1
        .stores
        .artifacts
        .put_bytes(
            &key,
            bytes.clone(),
            PutOptions::default()
                .content_type("application/json")
                .created_by("step-1")
                .created_at(t(161, 0)),
        )
        .await?
        .record;

    let s2 = crate::factory::reopen_distinct(f, &s1).await?;
    drop(s1);

    ensure_eq!(
        s2.stores.workflows.get(&wf("etl"), v(1)).await?,
        d,
        "workflow etl v1 through a reopened handle"
    );
    ensure!(
        !s2.stores.workflows.store(d.clone()).await?.inserted,
        "storing etl v1 again through a reopened handle must be a no-op"
    );
    ensure_eq!(
        s2.stores.logs.get_run(&rid("persisted")).await?,
        finished,
        "run `persisted` through a reopened handle"
    );
    ensure_eq!(
        events_all(s2.stores.logs.as_ref(), &rid("persisted"), 10).await?,
        vec![
            e1.clone().into_event(rid("persisted"), 1),
            e2.into_event(rid("persisted"), 2)
        ],
        "events of `persisted` through a reopened handle"
    );
    ensure_eq!(
        s2.stores.logs.get_run(&rid("imported")).await?,
        imported.run,
        "imported run through a reopened handle"
    );
    ensure_eq!(
        events_all(s2.stores.logs.as_ref(), &rid("imported"), 10).await?,
        imported.events,
        "imported events through a reopened handle"
    );
    ensure_eq!(
        s2.stores.logs.append_event(&rid("persisted"), e1).await?,
        duplicate_of(1),
        "idempotency key `k` through a reopened handle"
    );
    ensure_eq!(
        s2.stores
            .logs
            .append_event(&rid("persisted"), event("three", 103))
            .await?,
        appended(3),
        "numbering continues through a reopened handle"
    );
    ensure_err!(
        s2.stores
            .logs
            .update_status(
                &rid("persisted"),
                RunUpdate::finished(RunStatus::Failed, t(170, 0))
            )
            .await,
        ErrorKind::Conflict,
        "re-finishing a run with another status through a reopened handle"
    );
    ensure_eq!(
        s2.stores.metrics.get(&rid("persisted")).await?,
        m,
        "metric through a reopened handle"
    );
    let (got_info, got_bytes) = s2.stores.artifacts.get_bytes(&key).await?;
    ensure_eq!(got_info, info, "artifact info through a reopened handle");
    ensure_eq!(got_bytes, bytes, "artifact bytes through a reopened handle");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The two shared-storage rules against a factory whose `reopen` hands
    //! out the same in-memory stores: they are skipped for the plain memory
    //! backend, and must still be proven to pass on a correct one.

    use async_trait::async_trait;
    use runstore_core::Result;

    use crate::factory::{Capabilities, Capability, StoreFactory, TestStores};
    use crate::runner::{Outcome, run_rule};

    struct SharedMemory;

    #[async_trait]
    impl StoreFactory for SharedMemory {
        fn name(&self) -> String {
            "shared memory".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::none().with(Capability::SharedStorage)
        }
        async fn create(&self) -> Result<TestStores> {
            Ok(TestStores::new(runstore_core::memory::store_set()))
        }
        async fn reopen(&self, stores: &TestStores) -> Result<TestStores> {
            Ok(stores.clone())
        }
    }

    /// A factory that claims both capabilities but "reopens" by handing
    /// back its own handles: the rules must not pass it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopen_that_returns_the_same_handles_fails_the_rules() {
        for name in [
            "run_shared_storage_appends_from_two_handles",
            "run_shared_storage_survives_reopen",
            "coordination_lease_one_winner_and_tokens_persist",
        ] {
            match run_rule(&SharedMemory, name).await {
                Outcome::Failed(m) => assert!(m.contains("same"), "{name}: {m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn shared_storage_rules_skip_without_the_capability() {
        let outcome = run_rule(&crate::MemoryFactory, "run_shared_storage_survives_reopen").await;
        assert_eq!(outcome, Outcome::Skipped(Capability::PersistsAcrossReopen));
        let outcome = run_rule(
            &crate::MemoryFactory,
            "run_shared_storage_appends_from_two_handles",
        )
        .await;
        assert_eq!(outcome, Outcome::Skipped(Capability::ConcurrentHandles));
    }
}
