//! Mapping driver and pool errors to runstore error kinds, by SQLSTATE code
//! (never by message text).

use deadpool_postgres::PoolError;
use runstore_core::Error;
use tokio_postgres::error::SqlState;

/// Why one attempt of an operation stopped: a runstore error to return as
/// it is, or a driver / pool error to classify (and maybe retry).
#[derive(Debug)]
pub(crate) enum Fail {
    /// Final: returned as it is.
    Core(Error),
    /// From the driver: classified by [`classify`].
    Pg(tokio_postgres::Error),
    /// From the pool.
    Pool(PoolError),
    /// Another writer changed what this attempt read: start it again.
    Retry(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Core(e)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<PoolError> for Fail {
    fn from(e: PoolError) -> Self {
        Fail::Pool(e)
    }
}

/// What a driver error means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Serialization failure, deadlock, or a unique violation from a racing
    /// writer: run the attempt again, it will read the winner's row.
    Retry,
    /// The server or the connection is gone or overloaded.
    Unavailable,
    /// Anything else.
    Backend,
}

/// Classifies a driver error by its SQLSTATE, or by the connection state
/// when there is none.
pub(crate) fn classify(e: &tokio_postgres::Error) -> Class {
    if let Some(code) = e.code() {
        return classify_code(code);
    }
    // A refused certificate is a setup problem, not a transient one.
    if has_tls_error(e) {
        return Class::Backend;
    }
    if e.is_closed() || has_io_source(e) {
        return Class::Unavailable;
    }
    Class::Backend
}

/// Whether a rustls error is in the chain (io::Error hides its payload
/// from `source()`, so look inside with `get_ref`).
fn has_tls_error(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn classify_code(code: &SqlState) -> Class {
    let c = code.code();
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::UNIQUE_VIOLATION
    {
        return Class::Retry;
    }
    if c.starts_with("08") // connection exception
        || c.starts_with("53") // insufficient resources (too many connections, disk full)
        || c.starts_with("57P") // admin / crash shutdown, cannot connect now
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    // a replica after failover
    {
        return Class::Unavailable;
    }
    Class::Backend
}

fn has_io_source(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The runstore error for a driver error met while doing `what`.
pub(crate) fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    match classify(&e) {
        Class::Retry if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Error::conflict(format!(
            "{what}: another writer kept changing the same record ({})",
            e.as_db_error()
                .and_then(|d| d.constraint())
                .unwrap_or("unique constraint")
        )),
        Class::Retry | Class::Unavailable => Error::unavailable(
            format!("{what}: PostgreSQL is unavailable or busy"),
            Some(Box::new(e)),
        ),
        Class::Backend => Error::backend(format!("{what}: PostgreSQL error"), Some(Box::new(e))),
    }
}

/// The runstore error for a pool error met while doing `what`.
pub(crate) fn pool_error(what: &str, e: PoolError) -> Error {
    match e {
        PoolError::Backend(pg) => pg_error(what, pg),
        PoolError::Timeout(t) => Error::unavailable(
            format!("{what}: no PostgreSQL connection available ({t:?} timeout of the pool)"),
            None,
        ),
        PoolError::Closed => {
            Error::unavailable(format!("{what}: the connection pool is closed"), None)
        }
        other => Error::backend(
            format!("{what}: connection pool error"),
            Some(Box::new(other)),
        ),
    }
}

impl Fail {
    /// The runstore error this failure becomes when it is not retried.
    pub(crate) fn into_error(self, what: &str) -> Error {
        match self {
            Fail::Core(e) => e,
            Fail::Pg(e) => pg_error(what, e),
            Fail::Pool(e) => pool_error(what, e),
            Fail::Retry(why) => Error::unavailable(
                format!("{what}: gave up after repeated concurrent changes ({why})"),
                None,
            ),
        }
    }

    /// Whether the connection that met this failure should not be reused:
    /// a driver error other than the contention that is retried (those
    /// leave the connection sound, and are frequent under load).
    pub(crate) fn may_break_the_connection(&self) -> bool {
        matches!(self, Fail::Pg(e) if classify(e) != Class::Retry)
    }

    /// Whether running the attempt again may succeed.
    pub(crate) fn is_retry(&self) -> bool {
        match self {
            Fail::Retry(_) => true,
            Fail::Pg(e) => classify(e) == Class::Retry,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds_by_code() {
        for (code, class) in [
            (SqlState::T_R_SERIALIZATION_FAILURE, Class::Retry),
            (SqlState::T_R_DEADLOCK_DETECTED, Class::Retry),
            (SqlState::UNIQUE_VIOLATION, Class::Retry),
            (SqlState::CONNECTION_FAILURE, Class::Unavailable),
            (SqlState::CONNECTION_EXCEPTION, Class::Unavailable),
            (SqlState::TOO_MANY_CONNECTIONS, Class::Unavailable),
            (SqlState::ADMIN_SHUTDOWN, Class::Unavailable),
            (SqlState::CRASH_SHUTDOWN, Class::Unavailable),
            (SqlState::CANNOT_CONNECT_NOW, Class::Unavailable),
            (SqlState::QUERY_CANCELED, Class::Unavailable),
            (SqlState::LOCK_NOT_AVAILABLE, Class::Unavailable),
            (SqlState::READ_ONLY_SQL_TRANSACTION, Class::Unavailable),
            (SqlState::FOREIGN_KEY_VIOLATION, Class::Backend),
            (SqlState::UNDEFINED_TABLE, Class::Backend),
            (SqlState::INVALID_PASSWORD, Class::Backend),
        ] {
            assert_eq!(classify_code(&code), class, "{}", code.code());
        }
    }

    #[test]
    fn pool_timeouts_and_retry_exhaustion_are_unavailable() {
        let e = pool_error(
            "x",
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait),
        );
        assert_eq!(e.kind(), runstore_core::ErrorKind::Unavailable);
        let e = pool_error("x", PoolError::Closed);
        assert_eq!(e.kind(), runstore_core::ErrorKind::Unavailable);
        let f = Fail::Retry("busy".into());
        assert!(f.is_retry());
        assert_eq!(
            f.into_error("x").kind(),
            runstore_core::ErrorKind::Unavailable
        );
        assert!(!Fail::Core(Error::conflict("c")).is_retry());
    }
}
