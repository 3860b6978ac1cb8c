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
}

impl<T> Written<T> {
    /// A record this call stored.
    pub fn inserted(record: T) -> Self {
        Written {
            record,
            inserted: true,
        }
    }
    /// A record that was already stored, identical.
    pub fn unchanged(record: T) -> Self {
        Written {
            record,
            inserted: false,
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
}
