//! `/v1/workflows`: versioned, immutable definitions.

use axum::body::Bytes;
use axum::extract::{Path, State};
use runstore::{Error, WorkflowDefinition, WorkflowId, WorkflowQuery};

use super::{ApiResult, RawQuery, body, ok, params, written};
use crate::AppState;
use crate::query::version;

pub(crate) async fn list(State(s): State<AppState>, q: RawQuery) -> ApiResult {
    let mut p = params(q);
    let mut query = WorkflowQuery::default().with_limit(p.limit()?);
    query.id = p.take("id").map(WorkflowId::new).transpose()?;
    query.cursor = p.cursor();
    p.done()?;
    ok(&s.storage.workflows.list(query).await?)
}

pub(crate) async fn versions(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id = WorkflowId::new(id)?;
    ok(&s.storage.workflows.list_versions(&id).await?)
}

pub(crate) async fn get_one(
    State(s): State<AppState>,
    Path((id, v)): Path<(String, String)>,
) -> ApiResult {
    let (id, v) = (WorkflowId::new(id)?, version(&v)?);
    ok(&s.storage.workflows.get(&id, v).await?)
}

pub(crate) async fn store(
    State(s): State<AppState>,
    Path((id, v)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let (id, v) = (WorkflowId::new(id)?, version(&v)?);
    let def: WorkflowDefinition = body(&bytes)?;
    if def.id != id || def.version != v {
        return Err(Error::invalid(
            "body",
            format!(
                "the definition is {}@{}, the path says {id}@{v}",
                def.id, def.version
            ),
        )
        .into());
    }
    written(&s.storage.workflows.store(def).await?)
}
