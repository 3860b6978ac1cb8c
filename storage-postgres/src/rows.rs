//! Reading stored rows back into core types; anything that does not parse
//! is `Corrupt`, naming the table and key. The location comes first, as in
//! the SQLite backend's `rows.rs`.

use runstore_core::{Error, Result, Timestamp, Version};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON as stored: serde_json's text, so it reads back equal.
pub(crate) fn json_text<T: Serialize + ?Sized>(field: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::invalid(field, format!("cannot be written as JSON: {e}")))
}

/// Parses stored JSON.
pub(crate) fn from_json<T: DeserializeOwned>(
    location: impl FnOnce() -> String,
    text: &str,
) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::corrupt(location(), format!("stored JSON does not parse: {e}")))
}

/// Maps a validation error of a stored value to `Corrupt`.
pub(crate) fn stored<T>(r: Result<T>, location: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| Error::corrupt(location(), format!("stored value is invalid: {e}")))
}

/// A stored timestamp.
pub(crate) fn ts(location: impl FnOnce() -> String, micros: i64) -> Result<Timestamp> {
    stored(Timestamp::from_micros(micros), location)
}

/// A stored version.
pub(crate) fn version(location: impl FnOnce() -> String, v: i32) -> Result<Version> {
    stored(Version::from_i64(i64::from(v)), location)
}

/// A version as stored (versions fit `i32`, see `Version::new`).
pub(crate) fn v32(v: Version) -> i32 {
    i32::try_from(v.get()).unwrap_or(i32::MAX)
}

/// A `u64` as stored in a `bigint`; larger values clamp (only cursors can
/// carry them, and clamping keeps their order).
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
