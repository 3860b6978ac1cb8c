//! Event append and numbering: keys, batches, paging, concurrency.

use std::sync::Arc;

use runstore_core::{
    Appended, ErrorKind, EventQuery, LogRepository, NewEvent, RunFilter, RunStatus, RunUpdate,
};
use serde_json::json;

use crate::factory::StoreFactory;
use crate::fixtures::{appended, duplicate_of, event, rid, run, t};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure, ensure_eq, ensure_err};

use super::{events_all, one_to, seqs};

/// "Each run's events are numbered 1, 2, 3 ... by the store, with no gaps,
/// in append order."
///
/// Appends to two runs, interleaved, are numbered from 1 per run; the list
/// returns the events whole in append order; events may be appended to a
/// finished run (core/README.md) and continue the numbering.
pub async fn event_numbering_starts_at_one_without_gaps(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    logs.create_run(run("b", "etl", 1, 11)).await?;
    let mut want_a = Vec::new();
    for i in 1..=6u64 {
        let e = NewEvent::new(
            format!("step.{i}"),
            json!({"i": i, "text": format!("line {i}")}),
        )
        .with_at(t(20 + i as i64, i as i64));
        let got = logs.append_event(&rid("a"), e.clone()).await?;
        ensure_eq!(got, appended(i), "append_event(a, event {i})");
        want_a.push(e.into_event(rid("a"), i));
        if i % 2 == 0 {
            let got = logs
                .append_event(&rid("b"), event("b.step", i as i64))
                .await?;
            ensure_eq!(
                got.seq,
                i / 2,
                "append_event(b, ...) interleaved with run a: numbering is per run"
            );
        }
    }
    ensure_eq!(
        events_all(logs.as_ref(), &rid("a"), 100).await?,
        want_a,
        "list_events(a) must return the six events whole, numbered 1..6 in append order"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("b"), 100).await?),
        one_to(3),
        "list_events(b)"
    );
    // Late lines after the run finished continue the numbering.
    logs.update_status(
        &rid("a"),
        RunUpdate::finished(RunStatus::Succeeded, t(40, 0)),
    )
    .await?;
    let late = logs.append_event(&rid("a"), event("late.line", 41)).await?;
    ensure_eq!(late, appended(7), "append_event(a) after a finished");
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("a"), 100).await?),
        one_to(7),
        "list_events(a) after a late append"
    );
    // A run without events lists nothing.
    logs.create_run(run("c", "etl", 1, 12)).await?;
    let empty = logs.list_events(&rid("c"), EventQuery::default()).await?;
    ensure!(
        empty.items.is_empty() && empty.next.is_none(),
        "list_events(c) of a run without events: expected an empty last page, got {} items, next {:?}",
        empty.items.len(),
        empty.next
    );
    Ok(())
}

/// "An event may carry an idempotency key: appending the same key again to
/// that run returns the original sequence number and stores nothing
/// (webhook redelivery)."
///
/// A repeated key (even with another payload) returns the first sequence
/// number with `duplicate == true` and stores nothing; the next new event
/// continues without a gap; the same key on another run is a new event.
pub async fn event_idempotency_key_returns_original_seq(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    logs.create_run(run("b", "etl", 1, 11)).await?;
    let first = NewEvent::new("webhook.received", json!({"delivery": 1}))
        .with_at(t(20, 0))
        .with_idempotency_key("delivery-42");
    ensure_eq!(
        logs.append_event(&rid("a"), first.clone()).await?,
        appended(1),
        "append_event(a, key delivery-42)"
    );
    ensure_eq!(
        logs.append_event(&rid("a"), event("plain", 21)).await?,
        appended(2),
        "append_event(a, no key)"
    );
    let redelivery = NewEvent::new("webhook.received.again", json!({"delivery": 2}))
        .with_at(t(22, 0))
        .with_idempotency_key("delivery-42");
    for attempt in 1..=3 {
        ensure_eq!(
            logs.append_event(&rid("a"), redelivery.clone()).await?,
            duplicate_of(1),
            "append_event(a, key delivery-42) again, attempt {attempt}: must return the original seq 1 and store nothing"
        );
    }
    ensure_eq!(
        logs.append_event(&rid("a"), event("next", 23)).await?,
        appended(3),
        "append_event(a) after duplicates: numbering continues without a gap"
    );
    let listed = events_all(logs.as_ref(), &rid("a"), 10).await?;
    ensure_eq!(
        seqs(&listed),
        one_to(3),
        "list_events(a): duplicates must store nothing"
    );
    ensure_eq!(
        listed[0],
        first.clone().into_event(rid("a"), 1),
        "event 1 of a must be the FIRST delivery, with its key"
    );
    // Keys are per run.
    ensure_eq!(
        logs.append_event(&rid("b"), event("other", 24)).await?,
        appended(1),
        "append_event(b, no key)"
    );
    ensure_eq!(
        logs.append_event(&rid("b"), redelivery.clone()).await?,
        appended(2),
        "append_event(b, key delivery-42) used before on run a only: a new event of b"
    );
    ensure_eq!(
        logs.append_event(&rid("b"), first).await?,
        duplicate_of(2),
        "append_event(b, key delivery-42) again on b"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("b"), 10).await?),
        one_to(2),
        "list_events(b)"
    );
    // Keys are compared exactly.
    let near = event("near", 25).with_idempotency_key("Delivery-42");
    ensure_eq!(
        logs.append_event(&rid("a"), near).await?,
        appended(4),
        "append_event(a, key Delivery-42): keys are case-sensitive"
    );
    Ok(())
}

/// "Events are append-only. Each run's events are numbered ... in append
/// order" and (trait) "Appends events in order, all or nothing. A key
/// repeated within the batch behaves as if appended twice in a row."
///
/// A batch is numbered in order after the stored events; a key repeated in
/// the batch, or one already stored, is a duplicate; a batch with one
/// invalid event (a kind with a control character, a payload with NUL)
/// is `InvalidInput` and stores nothing; an empty batch stores nothing.
pub async fn event_batch_append_is_ordered_and_atomic(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    logs.append_event(&rid("a"), event("first", 11).with_idempotency_key("k0"))
        .await?;

    let batch = vec![
        event("b1", 12),
        event("b2", 13).with_idempotency_key("k1"),
        event("b3", 14),
        event("b4", 15),
    ];
    let got = logs.append_events(&rid("a"), batch.clone()).await?;
    ensure_eq!(
        got.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(),
        vec![(2, false), (3, false), (4, false), (5, false)],
        "append_events(a, 4 events) after one stored event"
    );
    let listed = events_all(logs.as_ref(), &rid("a"), 100).await?;
    ensure_eq!(
        listed.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["first", "b1", "b2", "b3", "b4"],
        "list_events(a): batch events in batch order"
    );

    let dup_batch = vec![
        event("c1", 16).with_idempotency_key("k2"),
        event("c2", 17),
        event("c3", 18).with_idempotency_key("k2"),
        event("c4", 19).with_idempotency_key("k0"),
        event("c5", 20),
    ];
    let got = logs.append_events(&rid("a"), dup_batch).await?;
    ensure_eq!(
        got.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(),
        vec![(6, false), (7, false), (6, true), (1, true), (8, false)],
        "append_events(a) with key k2 twice in the batch and k0 stored before"
    );
    ensure_eq!(
        listed.len() + 3,
        events_all(logs.as_ref(), &rid("a"), 100).await?.len(),
        "list_events(a) after a batch with two duplicates must hold three more events"
    );

    let bad_kind = vec![event("d1", 21), event("bad\u{7}kind", 22), event("d3", 23)];
    ensure_err!(
        logs.append_events(&rid("a"), bad_kind).await,
        ErrorKind::InvalidInput,
        "append_events(a) with a kind holding a control character in the middle of the batch"
    );
    let bad_payload = vec![
        event("e1", 24).with_idempotency_key("k-new"),
        NewEvent::new("e2", json!({"s": "nul\u{0}inside"})).with_at(t(25, 0)),
    ];
    ensure_err!(
        logs.append_events(&rid("a"), bad_payload).await,
        ErrorKind::InvalidInput,
        "append_events(a) with a payload holding NUL at the end of the batch"
    );
    let after = events_all(logs.as_ref(), &rid("a"), 100).await?;
    ensure_eq!(
        seqs(&after),
        one_to(8),
        "list_events(a) after refused batches: nothing of them may be stored"
    );
    // The key of the refused batch was not recorded either.
    ensure_eq!(
        logs.append_event(&rid("a"), event("f", 26).with_idempotency_key("k-new"))
            .await?,
        appended(9),
        "append_event(a, key k-new) whose only previous use was in a refused batch"
    );
    ensure_eq!(
        logs.append_events(&rid("a"), Vec::new()).await?,
        Vec::<Appended>::new(),
        "append_events(a, empty batch)"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("a"), 100).await?),
        one_to(9),
        "list_events(a) after an empty batch"
    );
    Ok(())
}

/// "`NotFound`: the id, version, run or artifact does not exist" (docs/DESIGN.md
/// section 3) for the run operations of section 4.
///
/// Appending (one or a batch), listing events, updating, getting and
/// deleting a run that does not exist are `NotFound`, and create nothing.
pub async fn event_append_to_missing_run_is_not_found(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("present", "etl", 1, 10)).await?;
    let ghost = rid("ghost");
    ensure_err!(
        logs.append_event(&ghost, event("x", 1)).await,
        ErrorKind::NotFound,
        "append_event(ghost)"
    );
    ensure_err!(
        logs.append_event(&ghost, event("x", 1).with_idempotency_key("k"))
            .await,
        ErrorKind::NotFound,
        "append_event(ghost, with a key)"
    );
    ensure_err!(
        logs.append_events(&ghost, vec![event("x", 1), event("y", 2)])
            .await,
        ErrorKind::NotFound,
        "append_events(ghost)"
    );
    ensure_err!(
        logs.list_events(&ghost, EventQuery::default()).await,
        ErrorKind::NotFound,
        "list_events(ghost)"
    );
    ensure_err!(
        logs.update_status(&ghost, RunUpdate::running()).await,
        ErrorKind::NotFound,
        "update_status(ghost)"
    );
    ensure_err!(
        logs.get_run(&ghost).await,
        ErrorKind::NotFound,
        "get_run(ghost)"
    );
    ensure_err!(
        logs.delete_run(&ghost).await,
        ErrorKind::NotFound,
        "delete_run(ghost)"
    );
    ensure_err!(
        logs.get_run(&rid("Present")).await,
        ErrorKind::NotFound,
        "get_run(Present) with only `present` stored: run ids are case-sensitive"
    );
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after operations on a missing run"
    );
    ensure_eq!(
        events_all(logs.as_ref(), &rid("present"), 10).await?.len(),
        0,
        "events of `present` after appends to a missing run"
    );
    Ok(())
}

/// "page with an opaque cursor" (section 4, applied to a run's events) and
/// core/README.md: "`next` is set exactly when more items follow".
///
/// 25 events listed with limits 1, 7, 24, 25 and 100 come back complete, in
/// sequence order, without duplicates; `next` is `None` exactly on the last
/// page; a cursor taken before more appends continues with them.
pub async fn event_list_paged_in_sequence_order(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("a", "etl", 1, 10)).await?;
    let batch: Vec<NewEvent> = (1..=25).map(|i| event(&format!("e{i}"), i)).collect();
    logs.append_events(&rid("a"), batch).await?;
    for limit in [1, 7, 24, 25, 100] {
        let got = events_all(logs.as_ref(), &rid("a"), limit).await?;
        ensure_eq!(
            seqs(&got),
            one_to(25),
            "list_events(a) walked with limit {limit}"
        );
        ensure_eq!(
            got[9].kind,
            "e10",
            "kind of event 10 listed with limit {limit}"
        );
    }
    let full = logs
        .list_events(&rid("a"), EventQuery::default().with_limit(25))
        .await?;
    ensure!(
        full.items.len() == 25 && full.next.is_none(),
        "list_events(a, limit 25) with exactly 25 events: expected one page without next, got {} items, next {:?}",
        full.items.len(),
        full.next
    );
    let p1 = logs
        .list_events(&rid("a"), EventQuery::default().with_limit(20))
        .await?;
    ensure!(
        p1.next.is_some(),
        "list_events(a, limit 20) of 25 events must set next"
    );
    logs.append_events(
        &rid("a"),
        (26..=30).map(|i| event(&format!("e{i}"), i)).collect(),
    )
    .await?;
    let p2 = logs
        .list_events(
            &rid("a"),
            EventQuery::default().with_limit(100).with_cursor(p1.next),
        )
        .await?;
    ensure_eq!(
        seqs(&p2.items),
        (21..=30).collect::<Vec<u64>>(),
        "list_events(a) after a cursor taken before 5 more appends must continue at 21 and include them"
    );
    ensure!(
        p2.next.is_none(),
        "the last page of events must have next = None"
    );
    Ok(())
}

/// "Each run's events are numbered 1, 2, 3 ... by the store, with no gaps,
/// in append order", under concurrency.
///
/// 16 tasks append 10 events each through one shared handle: the sequence
/// numbers are exactly 1..160, each task sees its own numbers increasing,
/// and the list agrees with what each append returned. Then 16 tasks
/// append the same idempotency key at once: exactly one stores it, all get
/// its number.
pub async fn event_concurrent_appends_number_without_gaps(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs: Arc<dyn LogRepository> = s.stores.logs.clone();
    logs.create_run(run("hot", "etl", 1, 10)).await?;
    const TASKS: usize = 16;
    const EACH: usize = 10;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let logs = logs.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let e = NewEvent::new(format!("task{task}.{i}"), json!({"task": task, "i": i}))
                    .with_at(t(20, (task * 100 + i) as i64));
                got.push((logs.append_event(&rid("hot"), e).await?, task, i));
            }
            Ok::<_, runstore_core::Error>(got)
        }));
    }
    let mut all: Vec<(Appended, usize, usize)> = Vec::new();
    for h in handles {
        let got = h
            .await
            .map_err(|e| RuleError::Failed(format!("an appending task panicked: {e}")))??;
        let task_seqs: Vec<u64> = got.iter().map(|(a, _, _)| a.seq).collect();
        ensure!(
            task_seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's sequential appends must get increasing numbers, got {task_seqs:?}"
        );
        all.extend(got);
    }
    let total = (TASKS * EACH) as u64;
    let mut numbers: Vec<u64> = all.iter().map(|(a, _, _)| a.seq).collect();
    numbers.sort_unstable();
    ensure_eq!(
        numbers,
        one_to(total),
        "numbers returned by {TASKS}x{EACH} concurrent appends: 1..{total}, no gap, no duplicate"
    );
    ensure!(
        all.iter().all(|(a, _, _)| !a.duplicate),
        "no append without a key may be a duplicate"
    );
    let listed = events_all(logs.as_ref(), &rid("hot"), 37).await?;
    ensure_eq!(
        seqs(&listed),
        one_to(total),
        "list_events(hot) after concurrent appends"
    );
    for (a, task, i) in &all {
        let e = &listed[(a.seq - 1) as usize];
        ensure_eq!(
            e.kind,
            format!("task{task}.{i}"),
            "event {} must be the one whose append returned {}",
            a.seq,
            a.seq
        );
    }

    // One key, sixteen deliveries at once.
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let logs = logs.clone();
        handles.push(tokio::spawn(async move {
            let e = NewEvent::new("webhook", json!({"task": task}))
                .with_at(t(30, task as i64))
                .with_idempotency_key("same-delivery");
            logs.append_event(&rid("hot"), e).await
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(
            h.await
                .map_err(|e| RuleError::Failed(format!("an appending task panicked: {e}")))??,
        );
    }
    let fresh: Vec<&Appended> = results.iter().filter(|a| !a.duplicate).collect();
    ensure_eq!(
        fresh.len(),
        1,
        "{TASKS} concurrent appends of one idempotency key: exactly one must store it, got {results:?}"
    );
    ensure!(
        results.iter().all(|a| a.seq == total + 1),
        "{TASKS} concurrent appends of one key must all return seq {}, got {results:?}",
        total + 1
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("hot"), 1000).await?),
        one_to(total + 1),
        "list_events(hot) after concurrent duplicate deliveries"
    );
    Ok(())
}
