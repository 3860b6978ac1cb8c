//! Mapping of rusqlite errors to runstore errors, by SQLite result code.

use runstore_core::Error;
use rusqlite::ErrorCode;

/// Maps a rusqlite error met while doing `what` to a runstore error. Decided
/// by the primary result code only, never by the message text.
pub(crate) fn map(what: &str, err: rusqlite::Error) -> Error {
    match &err {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::unavailable(
                format!("{what}: the database is busy or locked by another connection"),
                Some(Box::new(err)),
            ),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                Error::corrupt("sqlite database", format!("{what}: {err}"))
            }
            ErrorCode::ConstraintViolation => {
                // Every constraint is checked in code first (in the same
                // transaction), so reaching one means a concurrent writer won a
                // race or the stored data contradicts the request.
                Error::conflict(format!("{what}: constraint violated: {err}"))
            }
            ErrorCode::DiskFull | ErrorCode::CannotOpen | ErrorCode::OperationInterrupted => {
                Error::unavailable(format!("{what}: {err}"), Some(Box::new(err)))
            }
            _ => Error::backend(what.to_string(), Some(Box::new(err))),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => Error::corrupt(
            "sqlite database",
            format!("{what}: stored value cannot be read back: {err}"),
        ),
        _ => Error::backend(what.to_string(), Some(Box::new(err))),
    }
}

/// Extension to map rusqlite results with a description of the operation.
pub(crate) trait Ctx<T> {
    /// Maps the error with [`map`].
    fn ctx(self, what: &str) -> runstore_core::Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> runstore_core::Result<T> {
        self.map_err(|e| map(what, e))
    }
}

/// A stored JSON text that does not parse: the row is corrupt.
pub(crate) fn bad_json(location: impl Into<String>, err: serde_json::Error) -> Error {
    Error::corrupt(location, format!("stored JSON does not parse: {err}"))
}
