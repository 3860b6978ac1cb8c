//! Errors as the API answers them: the CLI's `--json` error object
//! (`kind`, `message`, `retryable`) with the HTTP status of its kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use runstore::{Error, ErrorKind};

/// An error answered to a request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retryable: bool,
}

impl ApiError {
    /// A request without the right bearer token.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
            message: message.into(),
            retryable: false,
        }
    }

    /// A request this server refuses to serve whoever sends it.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            kind: "forbidden",
            message: message.into(),
            retryable: false,
        }
    }

    /// A body larger than the server takes.
    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "too_large",
            message: message.into(),
            retryable: false,
        }
    }

    /// Request headers larger than the server takes.
    pub(crate) fn headers_too_large(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            kind: "too_large",
            message: message.into(),
            retryable: false,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The status of each kind.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Immutable => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError {
            status: status_of(e.kind()),
            kind: e.kind().code(),
            message: e.to_string(),
            retryable: e.is_retryable(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, kind = self.kind, message = %self.message, "request failed");
        }
        let body = serde_json::json!({
            "error": {"kind": self.kind, "message": self.message, "retryable": self.retryable}
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
