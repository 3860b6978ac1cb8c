//! The JSON API under `/v1`: one module per concern, each handler a thin
//! call of the trait it serves, so what the API does is what the library
//! does (idempotent appends, forward-only status, the overwrite guard).

mod artifacts;
mod metrics;
mod runs;
mod workflows;

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use runstore::{Error, Written};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;
use crate::query::Params;

/// A handler's result.
pub(crate) type ApiResult<T = Response> = std::result::Result<T, ApiError>;

/// The raw query string as parameters.
pub(crate) type RawQuery = Query<BTreeMap<String, String>>;

/// The OpenAPI description, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route of the API as `(method, path)`, in OpenAPI's path syntax;
/// the test of the description checks it lists exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/openapi.json"),
    ("get", "/v1/workflows"),
    ("get", "/v1/workflows/{id}/versions"),
    ("get", "/v1/workflows/{id}/versions/{version}"),
    ("put", "/v1/workflows/{id}/versions/{version}"),
    ("get", "/v1/workflows/{id}/summary"),
    ("get", "/v1/runs"),
    ("post", "/v1/runs"),
    ("get", "/v1/runs/{id}"),
    ("post", "/v1/runs/{id}/status"),
    ("get", "/v1/runs/{id}/events"),
    ("post", "/v1/runs/{id}/events"),
    ("get", "/v1/runs/{id}/metric"),
    ("get", "/v1/runs/{id}/artifacts"),
    ("post", "/v1/metrics"),
    ("get", "/v1/metrics"),
    ("get", "/v1/patterns"),
    ("put", "/v1/artifacts/{run}/{phase}/{path}"),
    ("get", "/v1/artifacts/{run}/{phase}/{path}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let json_limit = DefaultBodyLimit::max(state.options.max_json_bytes);
    let api = Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/workflows", get(workflows::list))
        .route("/v1/workflows/{id}/versions", get(workflows::versions))
        .route(
            "/v1/workflows/{id}/versions/{version}",
            get(workflows::get_one).put(workflows::store),
        )
        .route("/v1/workflows/{id}/summary", get(metrics::summary))
        .route("/v1/runs", get(runs::list).post(runs::create))
        .route("/v1/runs/{id}", get(runs::get_one))
        .route("/v1/runs/{id}/status", post(runs::update_status))
        .route("/v1/runs/{id}/events", get(runs::events).post(runs::append))
        .route("/v1/runs/{id}/metric", get(metrics::get_one))
        .route("/v1/runs/{id}/artifacts", get(artifacts::list))
        .route("/v1/metrics", post(metrics::record).get(metrics::list))
        .route("/v1/patterns", get(metrics::patterns))
        .layer(json_limit);
    // Uploads stream and are bounded by the handler, not buffered.
    let uploads = Router::new()
        .route(
            "/v1/artifacts/{run}/{phase}/{*path}",
            put(artifacts::put).get(artifacts::get_one),
        )
        .layer(DefaultBodyLimit::disable());
    api.merge(uploads)
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// Parses a JSON request body into `T`, naming what is wrong.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid("body", format!("not the JSON expected: {e}")).into())
}

/// `200` with a JSON body.
pub(crate) fn ok<T: Serialize>(value: &T) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

/// A write's answer: `201 Created` when this request stored the record,
/// `200` when an identical one was already there (`202` when it went to
/// an outbox), with the `Written` as body.
pub(crate) fn written<T: Serialize>(w: &Written<T>) -> ApiResult {
    let status = if w.deferred {
        StatusCode::ACCEPTED
    } else if w.inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(w)).into_response())
}

/// The parameters of a request, to be taken one by one.
pub(crate) fn params(q: RawQuery) -> Params {
    Params::new(q.0)
}
