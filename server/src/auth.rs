//! The bearer token: writes need it, reads too unless opened.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use runstore::Sha256Digest;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// Paths anyone may read: probes and the API's description.
fn always_open(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/v1/openapi.json" | "/static/style.css"
    )
}

/// Compares in constant time, over digests so that the length of the
/// token does not show either.
fn same_token(given: &str, expected: &str) -> bool {
    let a = Sha256Digest::of(given.as_bytes());
    let b = Sha256Digest::of(expected.as_bytes());
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Most bytes of request headers (names and values) taken.
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::headers_too_large(format!(
            "the request headers hold {header_bytes} bytes; this server takes at most {MAX_HEADER_BYTES}"
        ))
        .into_response();
    }
    let Some(expected) = state.options.token.as_deref() else {
        // No token: only loopback listens (checked at start), all allowed.
        return next.run(request).await;
    };
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    if always_open(request.uri().path()) || (read && state.options.open_reads) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same_token(t, expected) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the bearer token is not the server's").into_response(),
        None => ApiError::unauthorized(if read {
            "reads need `Authorization: Bearer <token>` (or a server started with --open-reads)"
        } else {
            "writes need `Authorization: Bearer <token>`"
        })
        .into_response(),
    }
}
