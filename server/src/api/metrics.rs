//! `/v1/metrics`, `/v1/patterns` and a workflow's summary.

use axum::body::Bytes;
use axum::extract::{Path, State};
use runstore::{ExecutionMetric, MetricQuery, PatternQuery, RunId, SummaryQuery, WorkflowId};

use super::{ApiResult, RawQuery, body, ok, params, written};
use crate::AppState;

pub(crate) async fn record(State(s): State<AppState>, bytes: Bytes) -> ApiResult {
    let m: ExecutionMetric = body(&bytes)?;
    written(&s.storage.metrics.record(m).await?)
}

pub(crate) async fn list(State(s): State<AppState>, q: RawQuery) -> ApiResult {
    let mut p = params(q);
    let mut query = MetricQuery::default()
        .with_limit(p.limit()?)
        .with_cursor(p.cursor());
    query.workflow_id = p.workflow()?;
    query.workflow_version = p.version()?;
    p.done()?;
    ok(&s.storage.metrics.list(query).await?)
}

pub(crate) async fn get_one(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    ok(&s.storage.metrics.get(&RunId::new(id)?).await?)
}

pub(crate) async fn summary(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: RawQuery,
) -> ApiResult {
    let id = WorkflowId::new(id)?;
    let mut p = params(q);
    let query = match p.version()? {
        Some(v) => SummaryQuery::version(v),
        None => SummaryQuery::default(),
    };
    p.done()?;
    ok(&s.storage.metrics.summary(&id, query).await?)
}

pub(crate) async fn patterns(State(s): State<AppState>, q: RawQuery) -> ApiResult {
    let mut p = params(q);
    let mut query = PatternQuery::default()
        .with_limit(p.limit()?)
        .with_cursor(p.cursor());
    query.workflow_id = p.workflow()?;
    p.done()?;
    ok(&s.storage.metrics.list_patterns(query).await?)
}
