//! Garbage cursors and out-of-range limits on every paged read.

use runstore_core::{
    ArtifactQuery, ArtifactStoreExt, Cursor, Error, EventQuery, LogRepositoryExt, MAX_PAGE_LIMIT,
    MetricQuery, PatternQuery, PutOptions, RunQuery, RunStatus, StoreSet, WorkflowQuery,
};
use serde_json::json;

use super::{Fut, Refused, answer, refuse_each};
use crate::ensure_eq;
use crate::factory::StoreFactory;
use crate::fixtures::{akey, def, event, metric, pattern, rid, run, wf};
use crate::outcome::{RuleError, RuleResult};

/// A cursor and what it is, for failure messages.
type Labelled = (String, Cursor);

const WORKFLOWS_BY_CURSOR: &[Refused<Labelled>] = &[Refused {
    field: "cursor",
    what: "workflows.list with {} as cursor",
    call: |st, _, (_, c)| {
        Box::pin(async move {
            let q = WorkflowQuery::default().with_cursor(Some(c));
            answer(st.workflows.list(q).await)
        })
    },
}];

const RUNS_BY_CURSOR: &[Refused<Labelled>] = &[Refused {
    field: "cursor",
    what: "query_runs with {} as cursor",
    call: |st, _, (_, c)| {
        Box::pin(async move {
            answer(
                st.logs
                    .query_runs(RunQuery::default().with_cursor(Some(c)))
                    .await,
            )
        })
    },
}];

const EVENTS_BY_CURSOR: &[Refused<Labelled>] = &[
    Refused {
        field: "cursor",
        what: "list_events with {} as cursor",
        call: |st, _, (_, c)| {
            Box::pin(async move {
                let q = EventQuery::default().with_cursor(Some(c));
                answer(st.logs.list_events(&rid("r1"), q).await)
            })
        },
    },
    Refused {
        field: "cursor",
        what: "list_events with {} as cursor, for a run that does not exist (input before existence)",
        call: |st, _, (_, c)| {
            Box::pin(async move {
                let q = EventQuery::default().with_cursor(Some(c));
                answer(st.logs.list_events(&rid("missing"), q).await)
            })
        },
    },
];

const METRICS_BY_CURSOR: &[Refused<Labelled>] = &[Refused {
    field: "cursor",
    what: "metrics.list with {} as cursor",
    call: |st, _, (_, c)| {
        Box::pin(async move {
            answer(
                st.metrics
                    .list(MetricQuery::default().with_cursor(Some(c)))
                    .await,
            )
        })
    },
}];

const PATTERNS_BY_CURSOR: &[Refused<Labelled>] = &[Refused {
    field: "cursor",
    what: "list_patterns with {} as cursor",
    call: |st, _, (_, c)| {
        Box::pin(async move {
            let q = PatternQuery::default().with_cursor(Some(c));
            answer(st.metrics.list_patterns(q).await)
        })
    },
}];

const ARTIFACTS_BY_CURSOR: &[Refused<Labelled>] = &[Refused {
    field: "cursor",
    what: "artifacts.list with {} as cursor",
    call: |st, _, (_, c)| {
        Box::pin(async move {
            let q = ArtifactQuery::default().with_cursor(Some(c));
            answer(st.artifacts.list(q).await)
        })
    },
}];

/// Every paged read with a page size, including one of a run that does not
/// exist (input is checked before existence).
const BY_LIMIT: &[Refused<usize>] = &[
    Refused {
        field: "limit",
        what: "workflows.list with limit {}",
        call: |st, _, limit| {
            Box::pin(async move {
                answer(
                    st.workflows
                        .list(WorkflowQuery::default().with_limit(limit))
                        .await,
                )
            })
        },
    },
    Refused {
        field: "limit",
        what: "query_runs with limit {}",
        call: |st, _, limit| {
            Box::pin(async move {
                answer(
                    st.logs
                        .query_runs(RunQuery::default().with_limit(limit))
                        .await,
                )
            })
        },
    },
    Refused {
        field: "limit",
        what: "list_events with limit {}",
        call: |st, _, limit| {
            Box::pin(async move {
                let q = EventQuery::default().with_limit(limit);
                answer(st.logs.list_events(&rid("r1"), q).await)
            })
        },
    },
    Refused {
        field: "limit",
        what: "list_events of a run that does not exist (input before existence) with limit {}",
        call: |st, _, limit| {
            Box::pin(async move {
                let q = EventQuery::default().with_limit(limit);
                answer(st.logs.list_events(&rid("missing"), q).await)
            })
        },
    },
    Refused {
        field: "limit",
        what: "metrics.list with limit {}",
        call: |st, _, limit| {
            Box::pin(async move {
                answer(
                    st.metrics
                        .list(MetricQuery::default().with_limit(limit))
                        .await,
                )
            })
        },
    },
    Refused {
        field: "limit",
        what: "list_patterns with limit {}",
        call: |st, _, limit| {
            Box::pin(async move {
                let q = PatternQuery::default().with_limit(limit);
                answer(st.metrics.list_patterns(q).await)
            })
        },
    },
    Refused {
        field: "limit",
        what: "artifacts.list with limit {}",
        call: |st, _, limit| {
            Box::pin(async move {
                answer(
                    st.artifacts
                        .list(ArtifactQuery::default().with_limit(limit))
                        .await,
                )
            })
        },
    },
    Refused {
        field: "limit",
        what: "get_recent with limit {}",
        call: |st, _, limit| {
            Box::pin(async move { answer(st.logs.get_recent(&wf("etl"), None, limit).await) })
        },
    },
];

/// A paged read with the largest page size: what it is, how many items
/// the rule stored for it, and the number it returns.
struct FullPage {
    what: &'static str,
    items: usize,
    call: for<'a> fn(&'a StoreSet, usize) -> Fut<'a, Result<usize, Error>>,
}

const FULL_PAGES: &[FullPage] = &[
    FullPage {
        what: "workflows.list",
        items: 2,
        call: |st, limit| {
            Box::pin(async move {
                let q = WorkflowQuery::default().with_limit(limit);
                Ok(st.workflows.list(q).await?.items.len())
            })
        },
    },
    FullPage {
        what: "query_runs",
        items: 2,
        call: |st, limit| {
            Box::pin(async move {
                let q = RunQuery::default().with_limit(limit);
                Ok(st.logs.query_runs(q).await?.items.len())
            })
        },
    },
    FullPage {
        what: "list_events",
        items: 3,
        call: |st, limit| {
            Box::pin(async move {
                let q = EventQuery::default().with_limit(limit);
                Ok(st.logs.list_events(&rid("r1"), q).await?.items.len())
            })
        },
    },
    FullPage {
        what: "metrics.list",
        items: 2,
        call: |st, limit| {
            Box::pin(async move {
                let q = MetricQuery::default().with_limit(limit);
                Ok(st.metrics.list(q).await?.items.len())
            })
        },
    },
    FullPage {
        what: "list_patterns",
        items: 2,
        call: |st, limit| {
            Box::pin(async move {
                let q = PatternQuery::default().with_limit(limit);
                Ok(st.metrics.list_patterns(q).await?.items.len())
            })
        },
    },
    FullPage {
        what: "artifacts.list",
        items: 2,
        call: |st, limit| {
            Box::pin(async move {
                let q = ArtifactQuery::default().with_limit(limit);
                Ok(st.artifacts.list(q).await?.items.len())
            })
        },
    },
];

/// "page with an opaque cursor" (docs/DESIGN.md section 4) and "a bad one is
/// `Error::InvalidInput` naming the field" (section 2), for cursors and
/// page sizes (core/README.md: "`limit` is 1 to 10,000").
///
/// On every paged query (workflows, runs, events, metrics, patterns,
/// artifacts), garbage cursors (SQL fragments, random hex, empty, hex of
/// JSON of the wrong shape, well-formed keys carrying invalid ids, paths
/// or times, and real cursors of another query kind) are `InvalidInput`
/// naming `cursor`; limits 0, 10,001 and `usize::MAX` are `InvalidInput`
/// naming `limit`, and 10,000 is accepted. For a run that does not exist,
/// bad input is reported before `NotFound`. Nothing changes.
pub async fn hostile_cursors_and_limits_rejected(f: &dyn StoreFactory) -> RuleResult {
    let s = f.create().await?;
    let st = &s.stores;
    st.workflows.store(def("etl", 1, None)).await?;
    st.workflows.store(def("etl", 2, None)).await?;
    st.logs.create_run(run("r1", "etl", 1, 10)).await?;
    st.logs.create_run(run("r2", "etl", 1, 11)).await?;
    st.logs
        .append_events(
            &rid("r1"),
            vec![event("a", 1), event("b", 2), event("c", 3)],
        )
        .await?;
    st.metrics
        .record(metric("r1", "etl", 1, RunStatus::Succeeded, 5))
        .await?;
    st.metrics
        .record(metric("r2", "etl", 1, RunStatus::Failed, 6))
        .await?;
    st.metrics.upsert_pattern(pattern("p1", "etl", 1)).await?;
    st.metrics.upsert_pattern(pattern("p2", "etl", 2)).await?;
    for p in ["a", "b"] {
        st.artifacts
            .put_bytes(
                &akey("r1", "out", p),
                p.as_bytes().to_vec(),
                PutOptions::default(),
            )
            .await?;
    }

    // Real cursors: one of events, one of workflows.
    let event_cursor = st
        .logs
        .list_events(&rid("r1"), EventQuery::default().with_limit(1))
        .await?
        .next;
    let workflow_cursor = st
        .workflows
        .list(WorkflowQuery::default().with_limit(1))
        .await?
        .next;
    let (Some(event_cursor), Some(workflow_cursor)) = (event_cursor, workflow_cursor) else {
        return Err(RuleError::Failed(
            "list_events(limit 1) of 3 events and list(limit 1) of 2 workflows must both set next"
                .into(),
        ));
    };

    let hex = |v: serde_json::Value| Cursor::encode(&v);
    let mut common: Vec<Labelled> = [
        "'; DROP TABLE runs; --",
        "\" OR 1=1 --",
        "",
        "zz",
        "deadbeef",
        "00ff00ff00ff00ff00ff",
        "%2e%2e",
        "．．",
    ]
    .iter()
    .map(|g| (format!("garbage {g:?}"), Cursor::from_string(*g)))
    .collect();
    common.push((
        "a 10 KB string".into(),
        Cursor::from_string("7b".repeat(5 * 1024)),
    ));
    for v in [
        json!(null),
        json!({}),
        json!([]),
        json!("'; DROP TABLE runs; --"),
        json!(42),
    ] {
        common.push((format!("the hex of {v}"), hex(v)));
    }

    // Each paged read, with the cursors only it must refuse besides the
    // common garbage: real cursors of other reads, forged keys.
    let good_time = "2026-01-01T00:00:00.000000Z";
    let per_query: Vec<(&[Refused<Labelled>], Vec<Labelled>)> = vec![
        (
            WORKFLOWS_BY_CURSOR,
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                (
                    "a forged key with id `'; DROP`".into(),
                    hex(json!({"id": "'; DROP TABLE workflows; --", "version": 1})),
                ),
                (
                    "a forged key with version 0".into(),
                    hex(json!({"id": "etl", "version": 0})),
                ),
            ],
        ),
        (
            RUNS_BY_CURSOR,
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with id `../x`".into(),
                    hex(json!({"started_at": good_time, "id": "../x"})),
                ),
                (
                    "a forged key with a bad time".into(),
                    hex(json!({"started_at": "yesterday'; --", "id": "r1"})),
                ),
            ],
        ),
        (
            EVENTS_BY_CURSOR,
            vec![
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with seq `1; DROP`".into(),
                    hex(json!({"seq": "1; DROP TABLE events"})),
                ),
                ("a forged key with seq -5".into(), hex(json!({"seq": -5}))),
            ],
        ),
        (
            METRICS_BY_CURSOR,
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with run id `' OR 1=1 --`".into(),
                    hex(json!({"run_id": "' OR 1=1 --"})),
                ),
            ],
        ),
        (
            PATTERNS_BY_CURSOR,
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with id `..`".into(),
                    hex(json!({"detected_at": good_time, "id": ".."})),
                ),
            ],
        ),
        (
            ARTIFACTS_BY_CURSOR,
            vec![
                ("an event cursor".into(), event_cursor.clone()),
                ("a workflow cursor".into(), workflow_cursor.clone()),
                (
                    "a forged key with path `../../etc/passwd`".into(),
                    hex(json!({"run_id": "r1", "phase": "out", "path": "../../etc/passwd"})),
                ),
                (
                    "a forged key with phase `/tmp`".into(),
                    hex(json!({"run_id": "r1", "phase": "/tmp", "path": "a"})),
                ),
            ],
        ),
    ];
    for (reads, specific) in per_query {
        let cursors: Vec<Labelled> = common.iter().cloned().chain(specific).collect();
        refuse_each(st, reads, &cursors, |(what, _)| what.clone()).await?;
    }

    let limits = [0, MAX_PAGE_LIMIT + 1, usize::MAX];
    refuse_each(st, BY_LIMIT, &limits, |limit| limit.to_string()).await?;

    // The largest page is allowed.
    let max = MAX_PAGE_LIMIT;
    for page in FULL_PAGES {
        ensure_eq!(
            (page.call)(st, max).await?,
            page.items,
            "{}(limit {max})",
            page.what
        );
    }
    // The real cursors still work where they belong.
    let rest = st
        .logs
        .list_events(
            &rid("r1"),
            EventQuery::default().with_cursor(Some(event_cursor)),
        )
        .await?;
    ensure_eq!(
        rest.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3],
        "list_events after its own cursor"
    );
    let rest = st
        .workflows
        .list(WorkflowQuery::default().with_cursor(Some(workflow_cursor)))
        .await?;
    ensure_eq!(
        rest.items,
        vec![def("etl", 2, None)],
        "workflows.list after its own cursor"
    );
    Ok(())
}
