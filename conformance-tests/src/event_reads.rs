//! Reads a debugger and a dashboard need (docs/DESIGN.md section 4, runs
//! and events): a run's events of one kind, and its last events, newest
//! first, paged with cursors like every other listing.

use runstore_core::{ErrorKind, Event, EventQuery, LogRepository, RunId};

use crate::factory::StoreFactory;
use crate::fixtures::{all_pages_checked, event, rid, run};
use crate::outcome::{RuleError, RuleResult};
use crate::{ensure_eq, ensure_err};

/// Every page of `query` (its limit and filters) over run `id`.
async fn walk(
    logs: &dyn LogRepository,
    id: &RunId,
    query: EventQuery,
) -> Result<Vec<Event>, RuleError> {
    let call = format!("list_events({id}, {query:?})");
    let limit = query.limit;
    all_pages_checked(&call, "events", limit, |cursor| {
        logs.list_events(id, query.clone().with_cursor(cursor))
    })
    .await
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// 30 events: kinds cycle through `step.started`, `step.finished`,
/// `log`, so each kind holds every third number.
async fn thirty_events(logs: &dyn LogRepository) -> Result<(), RuleError> {
    logs.create_run(run("a", "etl", 1, 10)).await?;
    let kinds = ["step.started", "step.finished", "log"];
    let batch = (1..=30)
        .map(|i| event(kinds[(i as usize - 1) % 3], i))
        .collect();
    logs.append_events(&rid("a"), batch).await?;
    Ok(())
}

/// A kind filter returns exactly that kind's events, in sequence order,
/// keeping their own numbers, at any page size.
pub async fn event_list_filters_by_kind(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    thirty_events(logs).await?;
    for limit in [1, 4, 10, 11] {
        let got = walk(
            logs,
            &rid("a"),
            EventQuery::default()
                .of_kind("step.finished")
                .with_limit(limit),
        )
        .await?;
        ensure_eq!(
            seqs(&got),
            (2..=30).step_by(3).collect::<Vec<u64>>(),
            "events of kind step.finished with limit {limit}"
        );
        ensure_eq!(
            got.iter().all(|e| e.kind == "step.finished"),
            true,
            "every event listed with kind step.finished (limit {limit}) has that kind"
        );
    }
    let none = logs
        .list_events(&rid("a"), EventQuery::default().of_kind("no.such.kind"))
        .await?;
    ensure_eq!(
        (none.items.len(), none.next.is_none()),
        (0, true),
        "a kind no event has gives an empty last page"
    );
    Ok(())
}

/// Newest first gives a run's last events, highest number first, and
/// pages on downwards; a page taken before more appends goes on from where
/// it was (the new events are above it).
pub async fn event_list_newest_first(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    thirty_events(logs).await?;
    let last5 = logs
        .list_events(
            &rid("a"),
            EventQuery::default().newest_first().with_limit(5),
        )
        .await?;
    ensure_eq!(
        seqs(&last5.items),
        vec![30, 29, 28, 27, 26],
        "the last 5 events, newest first"
    );
    logs.append_events(&rid("a"), (31..=33).map(|i| event("log", i)).collect())
        .await?;
    let next = logs
        .list_events(
            &rid("a"),
            EventQuery::default()
                .newest_first()
                .with_limit(5)
                .with_cursor(last5.next),
        )
        .await?;
    ensure_eq!(
        seqs(&next.items),
        vec![25, 24, 23, 22, 21],
        "the page after the last 5, taken before 3 more appends"
    );
    for limit in [1, 7, 33, 100] {
        let all = walk(
            logs,
            &rid("a"),
            EventQuery::default().newest_first().with_limit(limit),
        )
        .await?;
        ensure_eq!(
            seqs(&all),
            (1..=33).rev().collect::<Vec<u64>>(),
            "all events newest first with limit {limit}"
        );
    }
    // Both: the last `log` events.
    let logs_last = logs
        .list_events(
            &rid("a"),
            EventQuery::default()
                .of_kind("log")
                .newest_first()
                .with_limit(4),
        )
        .await?;
    ensure_eq!(
        seqs(&logs_last.items),
        vec![33, 32, 31, 30],
        "the last 4 events of kind log"
    );
    Ok(())
}

/// A kind that breaks the label rules is `InvalidInput`, even for a run
/// that does not exist; a run that does not exist is `NotFound`.
pub async fn event_list_filter_input_checked(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    thirty_events(logs).await?;
    for bad in ["", "a\u{0}b", "line\nbreak"] {
        ensure_err!(
            logs.list_events(&rid("a"), EventQuery::default().of_kind(bad))
                .await,
            ErrorKind::InvalidInput,
            "list_events with kind {bad:?}"
        );
        ensure_err!(
            logs.list_events(&rid("nope"), EventQuery::default().of_kind(bad))
                .await,
            ErrorKind::InvalidInput,
            "list_events of a missing run with kind {bad:?}"
        );
    }
    ensure_err!(
        logs.list_events(
            &rid("nope"),
            EventQuery::default().of_kind("log").newest_first()
        )
        .await,
        ErrorKind::NotFound,
        "list_events of a missing run, newest first"
    );
    Ok(())
}

/// "`events_of_runs(ids)` gives every event of each run in the order of
/// `ids`, each run's in sequence order, none for a run that is not stored;
/// an id twice is InvalidInput."
pub async fn event_reads_of_several_runs_at_once(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    for (id, start, n) in [("a", 10, 3i64), ("b", 11, 0), ("c", 12, 25)] {
        logs.create_run(run(id, "etl", 1, start)).await?;
        if n > 0 {
            logs.append_events(&rid(id), (1..=n).map(|i| event("step", i)).collect())
                .await?;
        }
    }
    let ids = [rid("c"), rid("nope"), rid("a"), rid("b")];
    let got = logs.events_of_runs(&ids).await?;
    ensure_eq!(
        got.len(),
        ids.len(),
        "events_of_runs(c, nope, a, b): one list per id"
    );
    for (id, events) in ids.iter().zip(&got) {
        let one_by_one = match logs.get_run(id).await {
            Ok(_) => walk(logs, id, EventQuery::default().with_limit(7)).await?,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        ensure_eq!(
            seqs(events),
            seqs(&one_by_one),
            "events_of_runs: the sequence numbers of run {id}"
        );
        ensure_eq!(
            *events,
            one_by_one,
            "events_of_runs: the events of run {id}, as list_events gives them"
        );
    }
    ensure_err!(
        logs.events_of_runs(&[rid("a"), rid("a")]).await,
        ErrorKind::InvalidInput,
        "events_of_runs with an id twice"
    );
    ensure_eq!(
        logs.events_of_runs(&[]).await?,
        Vec::<Vec<Event>>::new(),
        "events_of_runs of no id"
    );
    Ok(())
}

/// "`events_of_small_runs(ids, max)` gives the events of each run of `ids`
/// that holds fewer than `max`, as `events_of_runs` gives them, and `None`
/// for a run that holds `max` or more; a run that is not stored is small
/// with none; an id twice or a `max` of 0 is InvalidInput."
pub async fn event_reads_of_small_runs_tell_large_ones_apart(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = s.stores.logs.as_ref();
    let sizes = [("a", 10, 3i64), ("b", 11, 0), ("c", 12, 25), ("d", 13, 4)];
    for (id, start, n) in sizes {
        logs.create_run(run(id, "etl", 1, start)).await?;
        if n > 0 {
            logs.append_events(&rid(id), (1..=n).map(|i| event("step", i)).collect())
                .await?;
        }
    }
    let ids = [rid("c"), rid("nope"), rid("a"), rid("b"), rid("d")];
    let whole = logs.events_of_runs(&ids).await?;
    // Around each size: a run of exactly `max` events is large.
    for max in [1usize, 3, 4, 5, 25, 26, 1000] {
        let got = logs.events_of_small_runs(&ids, max).await?;
        ensure_eq!(
            got.len(),
            ids.len(),
            "events_of_small_runs(c, nope, a, b, d; {max}): one answer per id"
        );
        for ((id, events), all) in ids.iter().zip(&got).zip(&whole) {
            if all.len() < max {
                ensure_eq!(
                    events.as_ref(),
                    Some(all),
                    "events_of_small_runs(max {max}): run {id} with {} events is small, with the events events_of_runs gives",
                    all.len()
                );
            } else {
                ensure_eq!(
                    events.as_ref(),
                    None,
                    "events_of_small_runs(max {max}): run {id} with {} events is large",
                    all.len()
                );
            }
        }
    }
    ensure_err!(
        logs.events_of_small_runs(&[rid("a"), rid("a")], 10).await,
        ErrorKind::InvalidInput,
        "events_of_small_runs with an id twice"
    );
    ensure_err!(
        logs.events_of_small_runs(&[rid("a")], 0).await,
        ErrorKind::InvalidInput,
        "events_of_small_runs with max 0"
    );
    ensure_eq!(
        logs.events_of_small_runs(&[], 10).await?,
        Vec::<Option<Vec<Event>>>::new(),
        "events_of_small_runs of no id"
    );
    Ok(())
}
