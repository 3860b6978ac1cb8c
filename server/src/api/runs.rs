//! `/v1/runs`: runs, their status and their events.

use axum::body::Bytes;
use axum::extract::{Path, State};
use runstore::{
    Error, EventQuery, JsonMap, NewEvent, Run, RunFilter, RunId, RunQuery, RunStatus, RunUpdate,
    Timestamp, Version, WorkflowId,
};
use serde::Deserialize;

use super::{ApiResult, RawQuery, body, ok, params, written};
use crate::AppState;

/// `POST /v1/runs`: a new run; the id is generated when not given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRun {
    #[serde(default)]
    id: Option<RunId>,
    workflow_id: WorkflowId,
    workflow_version: Version,
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    started_at: Option<Timestamp>,
    #[serde(default)]
    attributes: Option<JsonMap>,
    #[serde(default)]
    external_key: Option<String>,
}

/// `POST /v1/runs/{id}/status`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: RunStatus,
    #[serde(default)]
    ended_at: Option<Timestamp>,
    #[serde(default)]
    summaries: Option<JsonMap>,
}

/// One event to append; `at` is now when not given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    kind: String,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    at: Option<Timestamp>,
}

/// `POST /v1/runs/{id}/events` takes one event or a list (appended all
/// or nothing).
#[derive(Deserialize)]
#[serde(untagged)]
enum EventsIn {
    Many(Vec<EventIn>),
    One(EventIn),
}

impl EventIn {
    fn into_new(self) -> NewEvent {
        let mut e = NewEvent::new(self.kind, self.payload);
        e.idempotency_key = self.idempotency_key;
        if let Some(at) = self.at {
            e.at = at;
        }
        e
    }
}

pub(crate) async fn list(State(s): State<AppState>, q: RawQuery) -> ApiResult {
    let mut p = params(q);
    let mut filter = RunFilter::default();
    filter.workflow_id = p.workflow()?;
    filter.workflow_version = p.version()?;
    filter.statuses = p.statuses()?;
    filter.trigger = p.take("trigger");
    filter.started_from = p.time("since")?;
    filter.started_before = p.time("until")?;
    let mut query = RunQuery::new(filter)
        .with_limit(p.limit()?)
        .with_cursor(p.cursor());
    query.ascending = !p.descending(true)?;
    p.done()?;
    ok(&s.storage.logs.query_runs(query).await?)
}

pub(crate) async fn create(State(s): State<AppState>, bytes: Bytes) -> ApiResult {
    let n: NewRun = body(&bytes)?;
    let mut run = Run::new(n.workflow_id, n.workflow_version);
    if let Some(id) = n.id {
        run.id = id;
    }
    if let Some(t) = n.trigger {
        run.trigger = t;
    }
    if let Some(at) = n.started_at {
        run.started_at = at;
    }
    if let Some(a) = n.attributes {
        run.attributes = a;
    }
    run.external_key = n.external_key;
    written(&s.storage.logs.create_run(run).await?)
}

pub(crate) async fn get_one(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(&s.storage.logs.get_run(&RunId::new(id)?).await?)
}

pub(crate) async fn update_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let id = RunId::new(id)?;
    let c: StatusChange = body(&bytes)?;
    let mut update = match c.status {
        RunStatus::Running => RunUpdate::running(),
        status if status.is_terminal() => {
            RunUpdate::finished(status, c.ended_at.unwrap_or_else(Timestamp::now))
        }
        other => {
            return Err(
                Error::invalid("status", format!("a run cannot be moved to {other:?}")).into(),
            );
        }
    };
    update.summaries = c.summaries;
    ok(&s.storage.logs.update_status(&id, update).await?)
}

pub(crate) async fn events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult {
    let id = RunId::new(id)?;
    let mut p = params(q);
    let mut query = EventQuery::default()
        .with_limit(p.limit()?)
        .with_cursor(p.cursor());
    query.kind = p.take("kind");
    query.descending = p.descending(false)?;
    p.done()?;
    ok(&s.storage.logs.list_events(&id, query).await?)
}

pub(crate) async fn append(
    State(s): State<AppState>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let id = RunId::new(id)?;
    let events = match body::<EventsIn>(&bytes)? {
        EventsIn::One(e) => vec![e.into_new()],
        EventsIn::Many(es) => es.into_iter().map(EventIn::into_new).collect(),
    };
    ok(&s.storage.logs.append_events(&id, events).await?)
}
