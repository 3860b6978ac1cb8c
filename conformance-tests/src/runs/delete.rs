//! Deleting a run.

use runstore_core::{ErrorKind, EventQuery, RunFilter};

use crate::factory::StoreFactory;
use crate::fixtures::{appended, event, rid, run};
use crate::outcome::RuleResult;
use crate::{ensure, ensure_eq, ensure_err};

use super::{events_all, ids, one_to, query_all, seqs};

/// "Deleting a run deletes its record and events."
///
/// After `delete_run`, `get_run` and `list_events` are `NotFound`, the run
/// is gone from queries and counts, a second delete is `NotFound`, other
/// runs keep their events, and a new run with the same id starts empty
/// (numbering from 1, old idempotency keys forgotten).
pub async fn run_delete_removes_record_and_events(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let logs = &s.stores.logs;
    logs.create_run(run("doomed", "etl", 1, 10)).await?;
    logs.create_run(run("kept", "etl", 1, 11)).await?;
    logs.append_events(
        &rid("doomed"),
        vec![
            event("a", 12).with_idempotency_key("key-1"),
            event("b", 13),
            event("c", 14),
        ],
    )
    .await?;
    logs.append_events(&rid("kept"), vec![event("x", 15), event("y", 16)])
        .await?;

    logs.delete_run(&rid("doomed")).await?;
    ensure_err!(
        logs.get_run(&rid("doomed")).await,
        ErrorKind::NotFound,
        "get_run(doomed) after delete_run"
    );
    ensure_err!(
        logs.list_events(&rid("doomed"), EventQuery::default())
            .await,
        ErrorKind::NotFound,
        "list_events(doomed) after delete_run"
    );
    ensure_err!(
        logs.delete_run(&rid("doomed")).await,
        ErrorKind::NotFound,
        "delete_run(doomed) a second time"
    );
    ensure_err!(
        logs.append_event(&rid("doomed"), event("late", 20)).await,
        ErrorKind::NotFound,
        "append_event(doomed) after delete_run"
    );
    ensure_eq!(
        ids(&query_all(logs.as_ref(), RunFilter::default(), 10).await?),
        vec!["kept".to_string()],
        "query_runs() after deleting `doomed`"
    );
    ensure_eq!(
        logs.count_runs(RunFilter::default()).await?,
        1,
        "count_runs() after delete"
    );
    ensure_eq!(
        seqs(&events_all(logs.as_ref(), &rid("kept"), 10).await?),
        one_to(2),
        "events of `kept` after deleting another run"
    );

    // The id is free again, with nothing left of the old run.
    let reborn = run("doomed", "other", 2, 30);
    ensure!(
        logs.create_run(reborn.clone()).await?.inserted,
        "create_run(doomed) again after delete: expected inserted = true"
    );
    ensure_eq!(
        logs.get_run(&rid("doomed")).await?,
        reborn,
        "get_run(doomed) after re-creating it"
    );
    ensure_eq!(
        logs.list_events(&rid("doomed"), EventQuery::default())
            .await?
            .items
            .len(),
        0,
        "a re-created run must not see the events of the deleted one"
    );
    ensure_eq!(
        logs.append_event(
            &rid("doomed"),
            event("again", 31).with_idempotency_key("key-1")
        )
        .await?,
        appended(1),
        "append_event(doomed, key-1) on the re-created run: numbering restarts at 1 and old keys are gone"
    );
    Ok(())
}
