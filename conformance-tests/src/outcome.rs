//! What a rule returns, and the assertion macros rules use.

use std::fmt;

use crate::factory::Capability;

/// Why a rule did not pass.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleError {
    /// The backend broke the rule; the message says how.
    Failed(String),
    /// The backend lacks a capability the rule needs.
    Skipped(Capability),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Failed(m) => write!(f, "FAILED: {m}"),
            RuleError::Skipped(c) => write!(f, "skipped: the backend lacks capability {c}"),
        }
    }
}

/// An unexpected error from the backend fails the rule.
impl From<runstore_core::Error> for RuleError {
    fn from(e: runstore_core::Error) -> Self {
        RuleError::Failed(format!("unexpected error ({:?}): {e}", e.kind()))
    }
}

/// The result of one rule: `Ok(())` is a pass.
pub type RuleResult = Result<(), RuleError>;

/// Fails the rule with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::RuleError::Failed(format!($($msg)+)));
        }
    };
}

/// Fails the rule unless `left == right`, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::RuleError::Failed(format!(
                "{}\n  left: {:?}\n right: {:?}",
                format!($($msg)+), l, r
            )));
        }
    }};
}

/// Fails the rule unless `result` is an error of `kind`; evaluates to the
/// error.
#[macro_export]
macro_rules! ensure_err {
    ($result:expr, $kind:expr, $($msg:tt)+) => {{
        match $result {
            Ok(v) => {
                return Err($crate::RuleError::Failed(format!(
                    "{}: expected {:?}, got Ok({:?})",
                    format!($($msg)+), $kind, v
                )))
            }
            Err(e) if e.kind() == $kind => e,
            Err(e) => {
                return Err($crate::RuleError::Failed(format!(
                    "{}: expected {:?}, got {:?}: {}",
                    format!($($msg)+), $kind, e.kind(), e
                )))
            }
        }
    }};
}

/// Skips the rule unless the factory declares `capability`.
#[macro_export]
macro_rules! require {
    ($factory:expr, $cap:expr) => {
        if !$factory.capabilities().has($cap) {
            return Err($crate::RuleError::Skipped($cap));
        }
    };
}
