//! [`Written`] and [`BulkOutcome`]: what an idempotent write reports.

use serde::{Deserialize, Serialize};

/// The record a write left in the store, and whether this call inserted it
/// (`false`: an identical record was already there and nothing changed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Written<T> {
    /// The stored record, as a later read returns it.
    pub record: T,
    /// `true` if this call stored it, `false` if it was already there.
    pub inserted: bool,
    /// `true` if the backend was unavailable and the write went to the
    /// concern's outbox (docs/DESIGN.md section 10): acknowledged, stored
    /// when the outbox drains; `record` is what was written.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deferred: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl<T> Written<T> {
    /// A record this call stored.
    pub fn inserted(record: T) -> Self {
        Written {
            record,
            inserted: true,
            deferred: false,
        }
    }
    /// A record that was already stored, identical.
    pub fn unchanged(record: T) -> Self {
        Written {
            record,
            inserted: false,
            deferred: false,
        }
    }

    /// A record written to an outbox, to be stored when it drains.
    pub fn deferred(record: T) -> Self {
        Written {
            record,
            inserted: false,
            deferred: true,
        }
    }
}

/// Counts of a bulk write. A bulk write is all or nothing: on error nothing
/// of the batch is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkOutcome {
    /// Records this call stored.
    pub inserted: u64,
    /// Records that were already stored, identical, and left as they were.
    pub unchanged: u64,
    /// Records that went to an outbox because the backend was unavailable
    /// (docs/DESIGN.md section 10), stored when it drains.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferred: u64,
}
