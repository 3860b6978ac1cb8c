//! `object_store` errors as runstore errors, by variant and transport kind,
//! never by message text.

use object_store::client::{HttpError, HttpErrorKind};
use runstore_core::Error;

/// Maps an error met while doing `what`. Failures to reach the server
/// (connect, time-out, aborted request), left after the client's own
/// retries, are `Unavailable`; a missing object is `NotFound`; the rest is
/// `Backend` with its source chained.
pub(crate) fn map(what: impl Into<String>, err: object_store::Error) -> Error {
    let what = what.into();
    match err {
        object_store::Error::NotFound { .. } => Error::not_found(what),
        e if transient(&e) => Error::unavailable(what, Some(Box::new(e))),
        e => Error::backend(what, Some(Box::new(e))),
    }
}

/// Whether the source chain holds a transport failure.
fn transient(err: &object_store::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::TimedOut
                    | K::Interrupted
                    | K::BrokenPipe
                    | K::UnexpectedEof
            );
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use runstore_core::ErrorKind;

    #[test]
    fn missing_objects_are_not_found_and_others_backend_errors() {
        let nf = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        assert_eq!(map("artifact x", nf).kind(), ErrorKind::NotFound);
        let other = object_store::Error::Generic {
            store: "S3",
            source: "denied".into(),
        };
        assert_eq!(map("artifact x", other).kind(), ErrorKind::Backend);
        let io = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        let e = map("artifact x", io);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
    }
}
