//! Reading stored rows back into core types; anything that does not parse
//! is `Corrupt`, naming the table and key.

use runstore_core::{Error, Result, Timestamp, Version};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON as stored: serde_json's text, so it reads back equal.
pub(crate) fn json_text<T: Serialize + ?Sized>(value: &T, field: &str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::invalid(field, format!("cannot be written as JSON: {e}")))
}

/// Parses stored JSON.
pub(crate) fn from_json<T: DeserializeOwned>(
    text: &str,
    location: impl FnOnce() -> String,
) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::corrupt(location(), format!("stored JSON does not parse: {e}")))
}

/// Maps a validation error of a stored value to `Corrupt`.
pub(crate) fn stored<T>(r: Result<T>, location: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| Error::corrupt(location(), format!("stored value is invalid: {e}")))
}

/// A stored timestamp.
pub(crate) fn ts(micros: i64, location: impl FnOnce() -> String) -> Result<Timestamp> {
    stored(Timestamp::from_micros(micros), location)
}

/// A stored version.
pub(crate) fn version(v: i32, location: impl FnOnce() -> String) -> Result<Version> {
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
