//! Rules for coordination between workers (docs/DESIGN.md section 11):
//! leases with fencing tokens, external run keys and the delivery ledger.
//!
//! Expiry is judged by the store's clock. A backend with
//! [`Capability::ControlledClock`] has its clock moved; any other is given
//! short leases and real time with generous margins.

use std::time::Duration;

use runstore_core::{
    ErrorKind, EventQuery, Lease, LeaseQuery, LeaseRequest, LogRepository, RunWithEvents, Timestamp,
};

use crate::factory::{Capability, StoreFactory, TestStores};
use crate::fixtures::{all_pages_checked, event, rid, run, wf};
use crate::outcome::RuleResult;
use crate::{ensure, ensure_eq, ensure_err};

/// A lease long enough never to expire during a rule.
const LONG: Duration = Duration::from_secs(600);

/// A lease that expires, and how long to let pass until it surely has.
fn short_lease(f: &dyn StoreFactory) -> (Duration, Duration) {
    if f.capabilities().has(Capability::ControlledClock) {
        (Duration::from_secs(60), Duration::from_secs(120))
    } else {
        // Real time: the margin covers a loaded machine and a server clock
        // read a little apart from ours.
        (Duration::from_secs(1), Duration::from_millis(2500))
    }
}

async fn pass_time(f: &dyn StoreFactory, s: &TestStores, by: Duration) -> RuleResult {
    if f.capabilities().has(Capability::ControlledClock) {
        f.advance_clock(s, by).await?;
    } else {
        tokio::time::sleep(by).await;
    }
    Ok(())
}

fn req(name: &str, holder: &str, ttl: Duration) -> LeaseRequest {
    LeaseRequest::new(name, holder, ttl)
}

async fn leases(
    logs: &dyn LogRepository,
    query: LeaseQuery,
) -> Result<Vec<Lease>, crate::RuleError> {
    all_pages_checked("list_leases", "leases", 2, |cursor| {
        logs.list_leases(query.clone().with_limit(2).with_cursor(cursor))
    })
    .await
}

/// "Acquiring a free lease gives a token; the same holder renews it (same
/// token, later expiry); another holder gets Conflict naming the holder
/// and the expiry while it is active; bad input is InvalidInput."
pub async fn coordination_lease_acquire_renew_conflict(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let first = logs
        .acquire_lease(req("scheduler", "worker-a", LONG))
        .await?;
    ensure!(
        first.token >= 1,
        "a first token must be at least 1, got {}",
        first.token
    );
    ensure_eq!(
        (first.name.as_str(), first.holder.as_str()),
        ("scheduler", "worker-a"),
        "acquired lease"
    );
    ensure!(
        first.expires_at > first.acquired_at,
        "expiry {} must be after acquisition {}",
        first.expires_at,
        first.acquired_at
    );
    let renewed = logs
        .acquire_lease(req("scheduler", "worker-a", LONG))
        .await?;
    ensure_eq!(renewed.token, first.token, "a renewal keeps the token");
    ensure!(
        renewed.expires_at >= first.expires_at,
        "a renewal must not shorten the lease: {} then {}",
        first.expires_at,
        renewed.expires_at
    );
    let err = ensure_err!(
        logs.acquire_lease(req("scheduler", "worker-b", LONG)).await,
        ErrorKind::Conflict,
        "acquire by another holder while active"
    );
    let msg = err.to_string();
    ensure!(
        msg.contains("worker-a"),
        "the conflict must name the current holder: {msg}"
    );
    // Another name is independent.
    let other = logs.acquire_lease(req("reaper", "worker-b", LONG)).await?;
    ensure_eq!(other.holder, "worker-b", "holder of an independent lease");
    let listed = leases(logs, LeaseQuery::default()).await?;
    ensure_eq!(
        listed
            .iter()
            .map(|l| (l.name.as_str(), l.holder.as_str(), l.token))
            .collect::<Vec<_>>(),
        vec![
            ("reaper", "worker-b", other.token),
            ("scheduler", "worker-a", first.token)
        ],
        "list_leases, by name"
    );
    for (bad, what) in [
        (req("", "w", LONG), "an empty name"),
        (req("l", "", LONG), "an empty holder"),
        (req("l", "w", Duration::ZERO), "a zero time to live"),
        (req("l\0x", "w", LONG), "a name with NUL"),
    ] {
        ensure_err!(
            logs.acquire_lease(bad).await,
            ErrorKind::InvalidInput,
            "acquire_lease with {what}"
        );
    }
    Ok(())
}

/// "Only the current token releases an active lease: a wrong token is
/// Conflict, a name never acquired NotFound; a released lease is free, the
/// next acquisition (even by the same holder) gets a greater token, and
/// the old token no longer releases anything."
pub async fn coordination_lease_release_needs_current_token(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let a = logs.acquire_lease(req("deploy", "a", LONG)).await?;
    ensure_err!(
        logs.release_lease("deploy", a.token + 1).await,
        ErrorKind::Conflict,
        "release with a token that was never issued"
    );
    ensure_err!(
        logs.release_lease("never-taken", 1).await,
        ErrorKind::NotFound,
        "release of a lease never acquired"
    );
    logs.release_lease("deploy", a.token).await?;
    ensure!(
        leases(logs, LeaseQuery::default()).await?.is_empty(),
        "a released lease must not be listed as held"
    );
    let all = leases(logs, LeaseQuery::default().with_expired()).await?;
    ensure_eq!(
        all.iter()
            .map(|l| (l.name.as_str(), l.token))
            .collect::<Vec<_>>(),
        vec![("deploy", a.token)],
        "list_leases with expired ones after a release"
    );
    let again = logs.acquire_lease(req("deploy", "a", LONG)).await?;
    ensure!(
        again.token > a.token,
        "after a release the next token must be greater: {} then {}",
        a.token,
        again.token
    );
    ensure_err!(
        logs.release_lease("deploy", a.token).await,
        ErrorKind::Conflict,
        "release with the token of an earlier acquisition"
    );
    ensure_err!(
        logs.acquire_lease(req("deploy", "b", LONG)).await,
        ErrorKind::Conflict,
        "acquire by b while a holds it again"
    );
    Ok(())
}

/// "An expired lease is free: another holder takes it with a greater
/// token, and the expired holder can neither release nor renew it."
pub async fn coordination_lease_expires_and_token_grows(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let (ttl, wait) = short_lease(f);
    let a = logs.acquire_lease(req("nightly", "a", ttl)).await?;
    pass_time(f, &s, wait).await?;
    ensure!(
        leases(logs, LeaseQuery::default()).await?.is_empty(),
        "an expired lease must not be listed as held"
    );
    let b = logs.acquire_lease(req("nightly", "b", LONG)).await?;
    ensure!(
        b.token > a.token,
        "a new holder's token must be greater: {} then {}",
        a.token,
        b.token
    );
    ensure_err!(
        logs.release_lease("nightly", a.token).await,
        ErrorKind::Conflict,
        "release by the expired holder"
    );
    let err = ensure_err!(
        logs.acquire_lease(req("nightly", "a", LONG)).await,
        ErrorKind::Conflict,
        "renewal by the expired holder after b took it"
    );
    ensure!(
        err.to_string().contains('b'),
        "the conflict must name b: {err}"
    );
    // An expired lease nobody took cannot be released either.
    let c = logs.acquire_lease(req("hourly", "c", ttl)).await?;
    pass_time(f, &s, wait).await?;
    ensure_err!(
        logs.release_lease("hourly", c.token).await,
        ErrorKind::Conflict,
        "release after expiry"
    );
    Ok(())
}

/// "Holders racing for one free lease: exactly one wins, the others get
/// Conflict; tokens survive a reopen and keep growing."
pub async fn coordination_lease_one_winner_and_tokens_persist(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.clone();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let logs = logs.clone();
        tasks.push(tokio::spawn(async move {
            logs.acquire_lease(req("singleton", &format!("w{i}"), LONG))
                .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(lease)) => winners.push(lease),
            Ok(Err(e)) if e.kind() == ErrorKind::Conflict => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(crate::RuleError::Failed(format!("task failed: {e}"))),
        }
    }
    ensure_eq!(winners.len(), 1, "winners among 8 racing holders");
    let won = &winners[0];
    logs.release_lease("singleton", won.token).await?;
    if !f.capabilities().has(Capability::ConcurrentHandles) {
        return Ok(());
    }
    let other = crate::factory::reopen_distinct(f, &s).await?;
    let next = other
        .stores
        .logs
        .acquire_lease(req("singleton", "late", LONG))
        .await?;
    ensure!(
        next.token > won.token,
        "a token after reopening must be greater: {} then {}",
        won.token,
        next.token
    );
    ensure_err!(
        logs.acquire_lease(req("singleton", "w-first-handle", LONG))
            .await,
        ErrorKind::Conflict,
        "the first handle must see the lease taken through the second"
    );
    Ok(())
}

/// "Creating a run whose external key its workflow already holds returns
/// the stored run and stores nothing; the key is unique per workflow only;
/// runs are found by workflow and key; bad keys are InvalidInput."
pub async fn coordination_external_key_create_is_idempotent(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let first = run("r1", "deploy", 1, 10).with_external_key("gh-9912");
    let w = logs.create_run(first.clone()).await?;
    ensure!(w.inserted, "the first run with a key is inserted");
    let second = run("r2", "deploy", 1, 20).with_external_key("gh-9912");
    let w = logs.create_run(second).await?;
    ensure!(
        !w.inserted,
        "a second run with the same key must not be inserted"
    );
    ensure!(
        w.record.same_content(&first),
        "create with a taken key returns the stored run, got {:?}",
        w.record
    );
    ensure_err!(
        logs.get_run(&rid("r2")).await,
        ErrorKind::NotFound,
        "the run that lost to the key was stored"
    );
    let other_wf = logs
        .create_run(run("r3", "build", 1, 30).with_external_key("gh-9912"))
        .await?;
    ensure!(
        other_wf.inserted,
        "the same key in another workflow is its own run"
    );
    let found = logs.get_run_by_key(&wf("deploy"), "gh-9912").await?;
    ensure_eq!(found.id, rid("r1"), "get_run_by_key(deploy, gh-9912)");
    let found = logs.get_run_by_key(&wf("build"), "gh-9912").await?;
    ensure_eq!(found.id, rid("r3"), "get_run_by_key(build, gh-9912)");
    ensure_err!(
        logs.get_run_by_key(&wf("deploy"), "gh-0000").await,
        ErrorKind::NotFound,
        "get_run_by_key of an unknown key"
    );
    ensure_err!(
        logs.get_run_by_key(&wf("deploy"), "").await,
        ErrorKind::InvalidInput,
        "get_run_by_key with an empty key"
    );
    ensure_err!(
        logs.create_run(run("r4", "deploy", 1, 40).with_external_key("a\0b"))
            .await,
        ErrorKind::InvalidInput,
        "create_run with a NUL in the key"
    );
    // The same id with another key is other content.
    ensure_err!(
        logs.create_run(run("r1", "deploy", 1, 10).with_external_key("gh-1"))
            .await,
        ErrorKind::Conflict,
        "create of a stored id with another key"
    );
    // Runs without a key never collide.
    logs.create_run(run("r5", "deploy", 1, 50)).await?;
    ensure!(
        logs.create_run(run("r6", "deploy", 1, 60)).await?.inserted,
        "two runs without a key are two runs"
    );
    // Concurrent creates with one key: one run.
    let logs_arc = s.stores.logs.clone();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let logs = logs_arc.clone();
        tasks.push(tokio::spawn(async move {
            logs.create_run(run(&format!("race{i}"), "deploy", 1, 70 + i).with_external_key("race"))
                .await
        }));
    }
    let mut inserted = 0;
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let w = t
            .await
            .map_err(|e| crate::RuleError::Failed(format!("task failed: {e}")))??;
        inserted += usize::from(w.inserted);
        ids.insert(w.record.id.to_string());
    }
    ensure_eq!(
        inserted,
        1,
        "runs inserted by 8 racing creates with one key"
    );
    ensure_eq!(
        ids.len(),
        1,
        "racing creates must all return the one stored run"
    );
    Ok(())
}

/// "Import keeps external keys; a run whose key another run of its
/// workflow holds is Conflict and nothing of the batch is written; one key
/// twice in a batch is InvalidInput; deleting a run frees its key."
pub async fn coordination_external_key_import_and_delete(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let keyed = |id: &str, key: &str, start: i64| RunWithEvents {
        run: run(id, "etl", 1, start).with_external_key(key),
        events: Vec::new(),
    };
    logs.import_runs(vec![keyed("i1", "k1", 10)]).await?;
    ensure_eq!(
        logs.get_run_by_key(&wf("etl"), "k1").await?.id,
        rid("i1"),
        "get_run_by_key after import"
    );
    ensure_eq!(
        logs.get_run(&rid("i1")).await?.external_key,
        Some("k1".to_string()),
        "the imported run's key"
    );
    // Re-importing the same run is a no-op.
    logs.import_runs(vec![keyed("i1", "k1", 10)]).await?;
    ensure_err!(
        logs.import_runs(vec![keyed("fresh", "k-free", 20), keyed("i2", "k1", 30)])
            .await,
        ErrorKind::Conflict,
        "import of another run with a taken key"
    );
    ensure_err!(
        logs.get_run(&rid("fresh")).await,
        ErrorKind::NotFound,
        "a conflicting import batch must write nothing"
    );
    ensure_err!(
        logs.import_runs(vec![keyed("d1", "dup", 40), keyed("d2", "dup", 50)])
            .await,
        ErrorKind::InvalidInput,
        "one key twice in a batch"
    );
    logs.delete_run(&rid("i1")).await?;
    ensure_err!(
        logs.get_run_by_key(&wf("etl"), "k1").await,
        ErrorKind::NotFound,
        "get_run_by_key after the run was deleted"
    );
    let again = logs
        .create_run(run("i3", "etl", 1, 60).with_external_key("k1"))
        .await?;
    ensure!(again.inserted, "a deleted run's key is free again");
    logs.append_event(&rid("i3"), event("x", 61)).await?;
    logs.delete_runs(&[rid("i3")]).await?;
    ensure_err!(
        logs.get_run_by_key(&wf("etl"), "k1").await,
        ErrorKind::NotFound,
        "get_run_by_key after delete_runs"
    );
    ensure_err!(
        logs.list_events(&rid("i3"), EventQuery::default()).await,
        ErrorKind::NotFound,
        "events after delete_runs"
    );
    Ok(())
}

/// "A delivery id is new exactly once, also under racing callers; later
/// records return the first one; pruning forgets those recorded before a
/// time, after which the id is new again; bad ids are InvalidInput."
pub async fn coordination_delivery_recorded_once(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.clone();
    let first = logs.record_delivery("evt_1").await?;
    ensure!(first.inserted, "the first record of an id is new");
    let again = logs.record_delivery("evt_1").await?;
    ensure!(!again.inserted, "the second record of an id is not new");
    ensure_eq!(
        again.record,
        first.record,
        "a repeated record returns the first"
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let logs = logs.clone();
        tasks.push(tokio::spawn(async move {
            logs.record_delivery("evt_race").await
        }));
    }
    let mut new = 0;
    for t in tasks {
        let w = t
            .await
            .map_err(|e| crate::RuleError::Failed(format!("task failed: {e}")))??;
        new += usize::from(w.inserted);
    }
    ensure_eq!(new, 1, "records that were new among 8 racing callers");
    for bad in ["", "a\0b"] {
        ensure_err!(
            logs.record_delivery(bad).await,
            ErrorKind::InvalidInput,
            "record_delivery({bad:?})"
        );
    }
    ensure_eq!(
        logs.prune_deliveries(first.record.recorded_at).await?,
        0,
        "prune before the first record"
    );
    let far = Timestamp::MAX;
    ensure_eq!(
        logs.prune_deliveries(far).await?,
        2,
        "prune of every delivery"
    );
    ensure!(
        logs.record_delivery("evt_1").await?.inserted,
        "a pruned id is new again"
    );
    Ok(())
}
