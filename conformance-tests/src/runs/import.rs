//! Import of whole runs with their events.

use runstore_core::{ErrorKind, RunFilter, RunWithEvents};
use serde_json::json;

use crate::factory::StoreFactory;
use crate::fixtures::{appended, duplicate_of, event, rid, run};
use crate::outcome::RuleResult;
use crate::{ensure_eq, ensure_err};

use super::{events_all, full_run, one_to, seqs, with_events};

/// "A whole run with its events can be stored at once (import, migration),
/// idempotently."
///
/// Importing runs with events stores them exactly (run and events as
/// given); importing the same batch again reports them all unchanged and
/// changes nothing; a batch mixing stored and new runs counts each; a run
/// created and appended to normally, then imported identically, is
/// unchanged.
pub async fn run_import_is_idempotent(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let batch = vec![
        with_events(full_run("imp-1"), 4),
        with_events(run("imp-2", "etl", 2, 30), 0),
        with_events(run("imp-3", "other", 1, 40), 7),
    ];
    let first = logs.import_runs(batch.clone()).await?;
    ensure_eq!(
        (first.inserted, first.unchanged),
        (3, 0),
        "import_runs(3 new runs) (inserted, unchanged)"
    );
    for r in &batch {
        ensure_eq!(
            logs.get_run(&r.run.id).await?,
            r.run,
            "imported run {} read back",
            r.run.id
        );
        ensure_eq!(
            events_all(logs.as_ref(), &r.run.id, 3).await?,
            r.events,
            "imported events of {} read back",
            r.run.id
        );
    }
    let second = logs.import_runs(batch.clone()).await?;
    ensure_eq!(
        (second.inserted, second.unchanged),
        (0, 3),
        "import_runs(same 3 runs) again (inserted, unchanged)"
    );
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        3,
        "count_runs() after importing twice"
    );
    ensure_eq!(
        events_all(logs.as_ref(), &rid("imp-3"), 100).await?.len(),
        7,
        "events of imp-3 after importing twice"
    );

    let mut mixed = batch.clone();
    mixed.push(with_events(run("imp-4", "etl", 1, 50), 2));
    let third = logs.import_runs(mixed).await?;
    ensure_eq!(
        (third.inserted, third.unchanged),
        (1, 3),
        "import_runs(3 stored + 1 new) (inserted, unchanged)"
    );

    // A run built through create_run and append_event imports as unchanged.
    let live = run("live", "etl", 1, 60);
    logs.create_run(live.clone()).await?;
    let e1 = event("a", 61).with_idempotency_key("x");
    let e2 = event("b", 62);
    logs.append_event(&rid("live"), e1.clone()).await?;
    logs.append_event(&rid("live"), e2.clone()).await?;
    let same = RunWithEvents {
        run: live,
        events: vec![e1.into_event(rid("live"), 1), e2.into_event(rid("live"), 2)],
    };
    let fourth = logs.import_runs(vec![same]).await?;
    ensure_eq!(
        (fourth.inserted, fourth.unchanged),
        (0, 1),
        "import_runs(a run identical to one created and appended to normally)"
    );
    let empty = logs.import_runs(Vec::new()).await?;
    ensure_eq!(
        (empty.inserted, empty.unchanged),
        (0, 0),
        "import_runs(empty batch)"
    );
    Ok(())
}

/// "A whole run with its events can be stored at once ... idempotently"
/// and (trait) "one stored differently is `Conflict` and nothing of the
/// batch is written."
///
/// A batch whose last run differs from the stored one (in its record, or
/// only in its events) is `Conflict`; the new runs of the batch are absent
/// afterwards and the stored run is unchanged.
pub async fn run_import_conflict_writes_nothing(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let stored = with_events(run("stored", "etl", 1, 10), 3);
    logs.import_runs(vec![stored.clone()]).await?;

    let mut other_record = stored.clone();
    other_record.run.trigger = "schedule".into();
    let mut extra_event = with_events(run("stored", "etl", 1, 10), 4);
    extra_event.run = stored.run.clone();
    let mut other_event = stored.clone();
    other_event.events[1].payload = json!({"changed": true});
    let mut fewer_events = stored.clone();
    fewer_events.events.pop();
    for (what, conflicting) in [
        ("another trigger", other_record),
        ("one more event", extra_event),
        ("another payload of event 2", other_event),
        ("one event less", fewer_events),
    ] {
        let batch = vec![
            with_events(run("new-1", "etl", 1, 20), 2),
            with_events(run("new-2", "etl", 1, 21), 0),
            conflicting,
        ];
        ensure_err!(
            logs.import_runs(batch).await,
            ErrorKind::Conflict,
            "import_runs([new-1, new-2, stored with {what}])"
        );
        for id in ["new-1", "new-2"] {
            ensure_err!(
                logs.get_run(&rid(id)).await,
                ErrorKind::NotFound,
                "get_run({id}) after a refused import (stored with {what}): nothing of the batch may be written"
            );
        }
        ensure_eq!(
            logs.get_run(&rid("stored")).await?,
            stored.run,
            "stored run after a refused import ({what})"
        );
        ensure_eq!(
            events_all(logs.as_ref(), &rid("stored"), 10).await?,
            stored.events,
            "events of the stored run after a refused import ({what})"
        );
    }
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after refused imports"
    );
    // Conflict with a run created normally.
    logs.create_run(run("created", "etl", 1, 30)).await?;
    let mut differs = with_events(run("created", "etl", 1, 30), 0);
    differs
        .run
        .attributes
        .insert("owner".into(), json!("someone-else"));
    ensure_err!(
        logs.import_runs(vec![with_events(run("new-3", "etl", 1, 31), 1), differs])
            .await,
        ErrorKind::Conflict,
        "import_runs([new-3, created with other attributes])"
    );
    ensure_err!(
        logs.get_run(&rid("new-3")).await,
        ErrorKind::NotFound,
        "get_run(new-3) after a refused import"
    );
    Ok(())
}

/// "A whole run with its events can be stored at once" with the numbering
/// rules of events: "numbered 1, 2, 3 ... with no gaps" and one idempotency
/// key per event (trait docs).
///
/// Events numbered with a gap, from 0 or 2, out of order, an idempotency key
/// used twice in one run, an event of another run, an invalid kind or
/// trigger, and the same run twice in one batch are `InvalidInput`, and
/// nothing of the batch is stored.
pub async fn run_import_validates_numbering_and_keys(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let good = || with_events(run("good", "etl", 1, 10), 2);
    let base = || with_events(run("bad", "etl", 1, 20), 3);
    let mut cases: Vec<(&str, Vec<RunWithEvents>)> = Vec::new();
    let mut c = base();
    c.events[2].seq = 4;
    cases.push(("events numbered 1, 2, 4", vec![good(), c]));
    let mut c = base();
    for e in &mut c.events {
        e.seq -= 1;
    }
    cases.push(("events numbered from 0", vec![good(), c]));
    let mut c = base();
    for e in &mut c.events {
        e.seq += 1;
    }
    cases.push(("events numbered from 2", vec![good(), c]));
    let mut c = base();
    c.events.swap(0, 1);
    cases.push(("events numbered 2, 1, 3", vec![good(), c]));
    let mut c = base();
    c.events[2].idempotency_key = c.events[0].idempotency_key.clone();
    cases.push(("one idempotency key on events 1 and 3", vec![good(), c]));
    let mut c = base();
    c.events[1].run_id = rid("good");
    cases.push(("event 2 naming another run", vec![good(), c]));
    let mut c = base();
    c.events[0].kind = "line\nbreak".into();
    cases.push(("an event kind with a newline", vec![good(), c]));
    let mut c = base();
    c.run.trigger = String::new();
    cases.push(("an empty trigger", vec![good(), c]));
    cases.push(("the same run twice", vec![good(), base(), base()]));
    for (what, batch) in cases {
        ensure_err!(
            logs.import_runs(batch).await,
            ErrorKind::InvalidInput,
            "import_runs([good, bad with {what}])"
        );
        for id in ["good", "bad"] {
            ensure_err!(
                logs.get_run(&rid(id)).await,
                ErrorKind::NotFound,
                "get_run({id}) after an import refused for {what}: nothing may be stored"
            );
        }
    }
    let ok = logs.import_runs(vec![good(), base()]).await?;
    ensure_eq!(
        ok.inserted,
        2,
        "import_runs([good, bad]) once both are valid"
    );
    Ok(())
}

/// "An event may carry an idempotency key: appending the same key again to
/// that run returns the original sequence number" and "numbered 1, 2, 3 ...
/// with no gaps", across import.
///
/// After importing a run with events 1..5, appending with an imported key
/// returns the imported number as a duplicate, and a new event gets 6.
pub async fn run_import_continues_numbering_and_keys(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    let imported = with_events(run("imp", "etl", 1, 10), 5);
    logs.import_runs(vec![imported.clone()]).await?;
    for (key, seq) in [("k1", 1), ("k3", 3), ("k5", 5)] {
        ensure_eq!(
            logs.append_event(
                &rid("imp"),
                event("redelivered", 30).with_idempotency_key(key)
            )
            .await?,
            duplicate_of(seq),
            "append_event(imp, key {key}) where {key} came with imported event {seq}"
        );
    }
    ensure_eq!(
        logs.append_event(&rid("imp"), event("new", 31)).await?,
        appended(6),
        "append_event(imp) after importing 5 events"
    );
    ensure_eq!(
        logs.append_events(
            &rid("imp"),
            vec![
                event("n7", 32).with_idempotency_key("k2"),
                event("n8", 33).with_idempotency_key("k3")
            ]
        )
        .await?,
        vec![appended(7), duplicate_of(3)],
        "append_events(imp, [key k2 (imported event 2 had no key), key k3 (imported)])"
    );
    let listed = events_all(logs.as_ref(), &rid("imp"), 4).await?;
    ensure_eq!(
        seqs(&listed),
        one_to(7),
        "list_events(imp) after import and appends"
    );
    ensure_eq!(
        &listed[..5],
        &imported.events[..],
        "the imported events are unchanged by later appends"
    );
    Ok(())
}
