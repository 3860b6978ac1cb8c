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

/// Whether `host` (a `Host` header's value or an origin's host, with or
/// without a port) names this machine's loopback interface.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:8080`
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request to a server without a token is refused: its `Host` is
/// not a loopback name (a rebound DNS name), or its `Origin` is a page
/// that is not served from loopback (another site's page). `None` when it
/// may pass. Clients other than browsers send no `Origin`.
fn not_from_loopback(request: &Request) -> Option<String> {
    let header = |name| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    let host = header(axum::http::header::HOST).or(request.uri().host());
    if let Some(host) = host
        && !loopback_host(host)
    {
        return Some(format!(
            "this server has no token and answers only requests to a loopback address, not to host {}",
            runstore::text::shown(host)
        ));
    }
    if let Some(origin) = header(axum::http::header::ORIGIN) {
        let host = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
        if !loopback_host(host) {
            return Some(format!(
                "this server has no token and answers no page of another site (origin {}); start it with --token to serve one",
                runstore::text::shown(origin)
            ));
        }
    }
    None
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
        // No token: only loopback listens (checked at start). What else
        // runs on this machine may still reach it through a browser: a page
        // of another site posting a form here, or a name of that site
        // rebound to 127.0.0.1. So the request must name a loopback host,
        // and a browser's request must come from a loopback page.
        if let Some(why) = not_from_loopback(&request) {
            return ApiError::forbidden(why).into_response();
        }
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

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn loopback_names_with_and_without_ports() {
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:3000",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]:80",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
