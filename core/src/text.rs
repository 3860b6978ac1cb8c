//! Rules for the free-text fields of records (event kinds, triggers, content
//! types, descriptions, metric names).
//!
//! They exist so that every backend can store every accepted value: no NUL
//! (PostgreSQL `text` cannot hold it), bounded sizes, and for labels no
//! control characters (they end up in file names of nobody, but in log lines
//! and CLI tables of everybody).

use crate::error::{Error, Result};

/// Longest label (kind, trigger, content type, creator, metric name,
/// idempotency key), in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// Longest free text (descriptions), in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// A value as shown in an error message: quoted, escaped, and cut to 64
/// characters so a 10 KB hostile string does not flood a log.
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = value.chars().take(MAX).collect::<String>();
    if value.chars().count() > MAX {
        out.push('…');
    }
    format!("{out:?}")
}

/// A label: 1 to [`MAX_LABEL_LEN`] bytes, no control characters.
pub fn validate_label(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes long; at most {MAX_LABEL_LEN} allowed",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must not contain control characters: {}", shown(value)),
        ));
    }
    Ok(())
}

/// Free text: at most [`MAX_TEXT_LEN`] bytes, no control characters but
/// newline, carriage return and tab.
pub fn validate_text(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_TEXT_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes long; at most {MAX_TEXT_LEN} allowed",
                value.len()
            ),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::invalid(
            field,
            format!(
                "must not contain NUL or control characters: {}",
                shown(value)
            ),
        ));
    }
    Ok(())
}

/// The deepest nesting of arrays and objects a stored JSON value may have.
/// Every write refuses deeper values: JSON parsers (serde_json among them)
/// stop reading at 128 levels, and a stored record wraps the value in a
/// few more, so a deeper value could be acknowledged and then never read
/// back.
pub const MAX_JSON_DEPTH: usize = 64;

/// Checks every key of a JSON object map, and every string inside a JSON
/// value, for NUL, and that arrays and objects nest at most
/// [`MAX_JSON_DEPTH`] levels; JSON itself can carry anything else.
///
/// ```
/// use runstore_core::text::{MAX_JSON_DEPTH, validate_json};
/// let mut v = serde_json::json!(1);
/// for _ in 0..MAX_JSON_DEPTH {
///     v = serde_json::json!([v]);
/// }
/// assert!(validate_json("payload", &v).is_ok());
/// assert!(validate_json("payload", &serde_json::json!([v])).is_err());
/// ```
pub fn validate_json(field: &str, value: &serde_json::Value) -> Result<()> {
    validate_json_at(field, value, 0)
}

/// Why [`validate_json`] refuses a value (and [`crate::JsonText::validate`]
/// its text), in one set of words.
pub(crate) const NUL_IN_STRING: &str = "JSON strings must not contain NUL (U+0000)";
pub(crate) const NUL_IN_KEY: &str = "JSON keys must not contain NUL (U+0000)";
pub(crate) const TOO_DEEP: &str = "JSON must not nest arrays and objects more than 64 levels deep";

fn validate_json_at(field: &str, value: &serde_json::Value, depth: usize) -> Result<()> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Err(Error::invalid(field, NUL_IN_STRING)),
        Value::Array(_) | Value::Object(_) if depth >= MAX_JSON_DEPTH => {
            Err(Error::invalid(field, TOO_DEEP))
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| validate_json_at(field, v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                return Err(Error::invalid(field, NUL_IN_KEY));
            }
            validate_json_at(field, v, depth + 1)
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_message_names_the_limit() {
        assert!(TOO_DEEP.contains(&format!(" {MAX_JSON_DEPTH} ")));
    }

    #[test]
    fn labels() {
        assert!(validate_label("kind", "step.started").is_ok());
        assert!(validate_label("kind", "").is_err());
        assert!(validate_label("kind", "a\nb").is_err());
        assert!(validate_label("kind", &"k".repeat(257)).is_err());
        assert!(validate_text("description", "two\nlines").is_ok());
        assert!(validate_text("description", "nul\0").is_err());
        assert!(validate_json("payload", &serde_json::json!({"a": ["x\u{0}"]})).is_err());
        assert!(shown(&"x".repeat(1000)).len() < 80);
    }
}
