//! The one error type of runstore, with a [`ErrorKind`] and a retryable flag.

use std::fmt;

/// Boxed source error chained under [`Error::Backend`] and [`Error::Unavailable`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, runstore_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of the backend. See docs/DESIGN.md section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The id, version, run or artifact does not exist.
    NotFound,
    /// A write that contradicts what is stored.
    Conflict,
    /// An artifact write to an existing path with other content and no overwrite token.
    Immutable,
    /// A value breaks a validation rule or a trait's precondition.
    InvalidInput,
    /// Stored data cannot be read back or fails its hash.
    Corrupt,
    /// Transient: database down, lock timeout, pool exhausted. Retryable.
    Unavailable,
    /// Anything else from a backend.
    Backend,
}

impl ErrorKind {
    /// The kind as one snake_case word, as the command line's `--json`
    /// errors and the HTTP API name it: `not_found`, `conflict`,
    /// `immutable`, `invalid_input`, `corrupt`, `unavailable`, `backend`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Immutable => "immutable",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Backend => "backend",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Immutable => "immutable",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Backend => "backend error",
        })
    }
}

/// The error returned by every runstore operation.
///
/// Messages say what was asked and what was found. Match on [`Error::kind`]
/// rather than on variants' fields, so new detail can be added later.
///
/// ```
/// use runstore_core::{Error, ErrorKind, WorkflowId};
/// let err = WorkflowId::new("../etc").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("workflow_id"));
/// assert!(!err.is_retryable());
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorKind::NotFound`].
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for, e.g. `run 0193…` or `workflow deploy version 3`.
        what: String,
    },
    /// See [`ErrorKind::Conflict`].
    #[error("conflict: {message}")]
    Conflict {
        /// What was asked and what is stored.
        message: String,
    },
    /// See [`ErrorKind::Immutable`].
    #[error("immutable: {message}")]
    Immutable {
        /// Which artifact, and the stored and offered hashes.
        message: String,
    },
    /// See [`ErrorKind::InvalidInput`].
    #[error("invalid input: {field}: {rule}")]
    InvalidInput {
        /// The field at fault, e.g. `run_id` or `artifact path`.
        field: String,
        /// The rule that was broken, with the offending value where safe to show.
        rule: String,
    },
    /// See [`ErrorKind::Corrupt`].
    #[error("corrupt data at {location}: {message}")]
    Corrupt {
        /// Where: a file and line, a table and key, an artifact.
        location: String,
        /// What is wrong with it.
        message: String,
    },
    /// See [`ErrorKind::Unavailable`].
    #[error("unavailable: {message}")]
    Unavailable {
        /// What was being done.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::Backend`].
    #[error("backend error: {message}")]
    Backend {
        /// What was being done.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Immutable { .. } => ErrorKind::Immutable,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether retrying the same call later may succeed. True only for
    /// [`ErrorKind::Unavailable`].
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    /// A [`ErrorKind::NotFound`] error.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// A [`ErrorKind::Conflict`] error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
        }
    }

    /// A [`ErrorKind::Immutable`] error.
    pub fn immutable(message: impl Into<String>) -> Self {
        Error::Immutable {
            message: message.into(),
        }
    }

    /// A [`ErrorKind::InvalidInput`] error naming the field and the rule.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// A [`ErrorKind::Corrupt`] error naming where the bad data is.
    pub fn corrupt(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Corrupt {
            location: location.into(),
            message: message.into(),
        }
    }

    /// A retryable [`ErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source,
        }
    }

    /// A [`ErrorKind::Backend`] error with its source chained.
    pub fn backend(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source,
        }
    }

    /// Wraps an I/O error met while doing `what`. Interrupted, would-block and
    /// timed-out errors are [`ErrorKind::Unavailable`]; an `InvalidData` error
    /// that carries a runstore [`Error`] (as streamed artifact readers do) is
    /// unwrapped to it.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = err.kind();
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(inner) = err.into_inner() {
                return match inner.downcast::<Error>() {
                    Ok(runstore_err) => *runstore_err,
                    Err(other) => Error::backend(what, Some(other)),
                };
            }
            return Error::backend(what, None);
        }
        match kind {
            K::Interrupted | K::WouldBlock | K::TimedOut => {
                Error::unavailable(what, Some(err.into()))
            }
            _ => Error::backend(what, Some(err.into())),
        }
    }

    /// Converts this error into an [`std::io::Error`] so it can travel through
    /// an `AsyncRead`; [`Error::io`] unwraps it again.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }
}

/// `Debug` reads like `Display`, followed by the chain of causes, so a
/// `?` in `main` or an `unwrap` prints the message rather than the enum.
///
/// ```
/// let err = runstore_core::Error::not_found("run r1");
/// assert_eq!(format!("{err:?}"), "not found: run r1");
/// ```
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
