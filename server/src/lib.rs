#![doc = include_str!("../README.md")]

mod api;
mod auth;
mod chart;
mod error;
mod pages;
mod query;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use runstore::{Error, Result, Storage};

pub use api::{OPENAPI, ROUTES};
pub use error::ApiError;

/// The environment variable the bearer token is read from.
pub const TOKEN_ENV: &str = "RUNSTORE_API_TOKEN";

/// How the server guards and bounds requests.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The bearer token writes need (and reads, unless `open_reads`).
    /// Without one the server only listens on a loopback address, where
    /// every request is allowed.
    pub token: Option<String>,
    /// Reads need no token even when one is set.
    pub open_reads: bool,
    /// Largest JSON request body, in bytes; 1 MiB.
    pub max_json_bytes: usize,
    /// Largest artifact upload, in bytes; 1 GiB.
    pub max_artifact_bytes: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            token: None,
            open_reads: false,
            max_json_bytes: 1024 * 1024,
            max_artifact_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl ServeOptions {
    /// Options with the token of [`TOKEN_ENV`], if set and not empty.
    pub fn from_env() -> Self {
        ServeOptions {
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            ..Default::default()
        }
    }

    /// Sets the token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Reads need no token.
    pub fn open_reads(mut self, open: bool) -> Self {
        self.open_reads = open;
        self
    }

    /// Sets the largest JSON body.
    pub fn max_json_bytes(mut self, n: usize) -> Self {
        self.max_json_bytes = n;
        self
    }

    /// Sets the largest artifact upload.
    pub fn max_artifact_bytes(mut self, n: u64) -> Self {
        self.max_artifact_bytes = n;
        self
    }

    /// Refuses to serve `addr` without a token unless it is loopback:
    /// anyone who can reach the port could write.
    pub fn check_listen(&self, addr: &SocketAddr) -> Result<()> {
        if self.token.is_none() && !addr.ip().is_loopback() {
            return Err(Error::invalid(
                "listen",
                format!(
                    "refusing to listen on {addr} without a token: set {TOKEN_ENV}, or listen on 127.0.0.1"
                ),
            ));
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) storage: Storage,
    pub(crate) options: Arc<ServeOptions>,
    pub(crate) pages: Arc<pages::Templates>,
}

/// The whole application: the JSON API under `/v1`, the web page under
/// `/`, `/healthz` and `/readyz`.
pub fn router(storage: Storage, options: ServeOptions) -> Result<Router> {
    let state = AppState {
        storage,
        options: Arc::new(options),
        pages: Arc::new(pages::Templates::new()?),
    };
    let app = Router::new()
        .merge(api::routes(&state))
        .merge(pages::routes())
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(trace))
        .with_state(state);
    Ok(app)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::io("serving HTTP", e))
}

/// One span per request with its method and path (never its headers, so
/// never the token), and a line with the status and time taken.
async fn trace(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path()
    );
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "answered"
        )
    });
    response
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"ok": true}))
}

/// Touches each concern's backend with the cheapest read it has.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> std::result::Result<axum::Json<serde_json::Value>, ApiError> {
    let s = &state.storage;
    s.workflows
        .list(runstore::WorkflowQuery::default().with_limit(1))
        .await?;
    s.logs
        .query_runs(runstore::RunQuery::default().with_limit(1))
        .await?;
    s.metrics
        .list(runstore::MetricQuery::default().with_limit(1))
        .await?;
    s.artifacts
        .list(runstore::ArtifactQuery::default().with_limit(1))
        .await?;
    Ok(axum::Json(
        serde_json::json!({"ready": true, "concerns": ["workflows", "logs", "metrics", "artifacts"]}),
    ))
}
