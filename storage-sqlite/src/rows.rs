//! Conversions between stored columns and core types. A stored value that
//! does not convert back is [`Error::Corrupt`], naming the table and key.

use runstore_core::{Error, Result, Timestamp, Version};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON text as stored: serde_json output.
pub(crate) fn to_json<T: Serialize + ?Sized>(field: &str, value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::invalid(field, format!("cannot be written as JSON: {e}")))
}

/// Parses stored JSON text.
pub(crate) fn from_json<T: DeserializeOwned>(location: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| crate::error::bad_json(location, e))
}

/// A stored timestamp.
pub(crate) fn ts(location: &str, micros: i64) -> Result<Timestamp> {
    Timestamp::from_micros(micros).map_err(|e| Error::corrupt(location, e.to_string()))
}

/// A stored version.
pub(crate) fn version(location: &str, v: i64) -> Result<Version> {
    Version::from_i64(v).map_err(|e| Error::corrupt(location, e.to_string()))
}

/// A stored identifier or other validated string.
pub(crate) fn parsed<T>(
    location: &str,
    text: String,
    parse: impl FnOnce(String) -> Result<T>,
) -> Result<T> {
    parse(text).map_err(|e| Error::corrupt(location, e.to_string()))
}

/// A stored unsigned number.
pub(crate) fn unsigned(location: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::corrupt(location, format!("negative count {v}")))
}

/// A u64 going into an INTEGER column.
pub(crate) fn signed(field: &str, v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::invalid(field, format!("must be at most {}, got {v}", i64::MAX)))
}
