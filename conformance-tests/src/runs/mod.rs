//! Rules for `LogRepository` (docs/DESIGN.md section 4, "Runs and events"),
//! one module per concept; the helpers here (`query_all`, `events_all`, ...)
//! are shared by them and by other rule modules.

use runstore_core::{
    Cursor, Event, EventQuery, JsonMap, LogRepository, NewEvent, Run, RunFilter, RunId, RunQuery,
    RunStatus, RunUpdate, RunWithEvents,
};
use serde_json::json;

use crate::fixtures::{all_pages_checked, run, t};
use crate::outcome::RuleError;

mod delete;
mod events;
mod import;
mod queries;
mod records;
mod shared;

pub use delete::run_delete_removes_record_and_events;
pub use events::{
    event_append_to_missing_run_is_not_found, event_batch_append_is_ordered_and_atomic,
    event_concurrent_appends_number_without_gaps, event_idempotency_key_returns_original_seq,
    event_list_paged_in_sequence_order, event_numbering_starts_at_one_without_gaps,
};
pub use import::{
    run_import_conflict_writes_nothing, run_import_continues_numbering_and_keys,
    run_import_is_idempotent, run_import_validates_numbering_and_keys,
};
pub use queries::{
    run_count_matches_query, run_get_recent_returns_newest_first,
    run_query_cursor_stable_under_inserts, run_query_filters, run_query_oldest_first,
    run_query_orders_by_start_then_id_descending,
};
pub use records::{
    run_create_and_get_round_trip, run_create_is_idempotent_and_conflicts_on_difference,
    run_end_time_not_before_start, run_status_moves_forward_only,
    run_terminal_status_and_end_time_set_once, run_timestamps_keep_microseconds,
};
pub use shared::{run_shared_storage_appends_from_two_handles, run_shared_storage_survives_reopen};

/// Reads every page of `query_runs(filter)` with `limit`, checking that
/// pages are at most `limit` long and that `next` is set exactly when more
/// runs follow.
pub(crate) async fn query_all(
    logs: &dyn LogRepository,
    filter: RunFilter,
    limit: usize,
) -> Result<Vec<Run>, RuleError> {
    query_all_of(logs, RunQuery::new(filter).with_limit(limit)).await
}

/// Creates a run of `etl` v1 named `id` that started at `at`.
pub(crate) async fn create_started(
    logs: &dyn LogRepository,
    id: &str,
    at: runstore_core::Timestamp,
) -> Result<Run, RuleError> {
    let mut r = run(id, "etl", 1, 0);
    r.started_at = at;
    logs.create_run(r.clone()).await?;
    Ok(r)
}

/// The runs of every page after `next` (the cursor a first page of
/// `query` returned), read while the caller's arrivals are in place.
pub(crate) async fn pages_after(
    logs: &dyn LogRepository,
    query: &RunQuery,
    next: Option<Cursor>,
) -> Result<Vec<Run>, RuleError> {
    let mut rest = Vec::new();
    let mut cursor = next;
    while let Some(c) = cursor {
        let page = logs.query_runs(query.clone().with_cursor(Some(c))).await?;
        rest.extend(page.items);
        cursor = page.next;
        crate::ensure!(rest.len() <= 100, "query_runs pages do not end");
    }
    Ok(rest)
}

/// [`query_all`] of a whole query (its filter, limit and order), from its
/// first page.
pub(crate) async fn query_all_of(
    logs: &dyn LogRepository,
    query: RunQuery,
) -> Result<Vec<Run>, RuleError> {
    let order = if query.ascending {
        ", oldest first"
    } else {
        ""
    };
    let call = format!(
        "query_runs({:?}, limit {}{order})",
        query.filter, query.limit
    );
    all_pages_checked(&call, "runs", query.limit, |cursor| {
        logs.query_runs(query.clone().with_cursor(cursor))
    })
    .await
}

/// Reads every page of `list_events(run)` with `limit`, with the same checks
/// as [`query_all`].
pub(crate) async fn events_all(
    logs: &dyn LogRepository,
    run_id: &RunId,
    limit: usize,
) -> Result<Vec<Event>, RuleError> {
    let call = format!("list_events({run_id}, limit {limit})");
    all_pages_checked(&call, "events", limit, |cursor| {
        logs.list_events(
            run_id,
            EventQuery::default().with_limit(limit).with_cursor(cursor),
        )
    })
    .await
}

fn ids(runs: &[Run]) -> Vec<String> {
    runs.iter().map(|r| r.id.to_string()).collect()
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// An update back to `pending`, which no run may take.
fn back_to_pending() -> RunUpdate {
    let mut u = RunUpdate::running();
    u.status = RunStatus::Pending;
    u
}

fn one_to(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

fn map(value: serde_json::Value) -> JsonMap {
    match value {
        serde_json::Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

/// The order of docs/DESIGN.md section 4: start time descending, then run id
/// descending (bytewise).
fn sort_newest_first(runs: &mut [Run]) {
    runs.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.id.as_str().as_bytes().cmp(a.id.as_str().as_bytes()))
    });
}

/// A run with every field set: terminal, nested attributes and summaries.
fn full_run(id: &str) -> Run {
    let mut r = run(id, "etl", 3, 100);
    r.status = RunStatus::Succeeded;
    r.trigger = "webhook".into();
    r.started_at = t(100, 250_001);
    r.ended_at = Some(t(160, 999_999));
    r.attributes = map(json!({
        "owner": "team-a",
        "labels": ["nightly", "prod", "ünïcödé ✓"],
        "limits": {"cpu": 2.5, "mem_mb": 4096, "deep": {"x": [1, {"y": null}]}},
        "flag": true,
        "big": 18446744073709551615u64,
        "neg": -9223372036854775808i64,
        "ratio": 0.1
    }));
    r.summaries = map(json!({"rows": 12345, "tables": ["a", "b"], "cost": 1.25, "note": ""}));
    r
}

/// A run with `n` events, keys `k1..kn` on odd events.
fn with_events(r: Run, n: u64) -> RunWithEvents {
    let events = (1..=n)
        .map(|i| {
            let mut e = NewEvent::new(format!("ev{i}"), json!({"i": i, "nested": {"x": [i]}}))
                .with_at(r.started_at.saturating_add_micros(i as i64 * 1_000_001));
            if i % 2 == 1 {
                e = e.with_idempotency_key(format!("k{i}"));
            }
            e.into_event(r.id.clone(), i)
        })
        .collect();
    RunWithEvents { run: r, events }
}
