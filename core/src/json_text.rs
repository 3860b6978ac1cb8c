//! JSON kept as its text: what a bulk copy carries, so a payload read from
//! one store is written to the next without being built as a
//! [`serde_json::Value`] and serialised again.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::text::{MAX_JSON_DEPTH, NUL_IN_KEY, NUL_IN_STRING, TOO_DEEP};

/// JSON text that reads as a [`serde_json::Value`]: every way to make one
/// checks that, so [`JsonText::to_value`] only fails if memory does.
///
/// Text is not canonical: `{"b":1, "a":2}` and `{"a":2,"b":1}` are two
/// texts of one value. Compare values ([`JsonText::to_value`], then
/// [`crate::canonical_json`]), never texts.
///
/// ```
/// use runstore_core::JsonText;
/// let text = JsonText::new(r#"{"rows": 3}"#).unwrap();
/// assert_eq!(text.to_value().unwrap(), serde_json::json!({"rows": 3}));
/// assert!(JsonText::new("{rows: 3}").is_err());
/// // Read as a value, 1e400 would be out of range: refused here too.
/// assert!(JsonText::new("1e400").is_err());
/// ```
#[derive(Clone)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// `text` if it reads as a JSON value; else an [`crate::ErrorKind::InvalidInput`] error of
    /// field `json`, saying why.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        check(&text, false).map_err(|why| Error::invalid("json", why))?;
        RawValue::from_string(text)
            .map(JsonText)
            .map_err(|e| Error::invalid("json", e.to_string()))
    }

    /// The text of `value`, as serde_json writes it (compact, keys in
    /// order).
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        serde_json::value::to_raw_value(value)
            .map(JsonText)
            .map_err(|e| Error::invalid("json", e.to_string()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The value the text holds.
    pub fn to_value(&self) -> Result<serde_json::Value> {
        serde_json::from_str(self.as_str()).map_err(|e| Error::invalid("json", e.to_string()))
    }

    /// What [`crate::text::validate_json`] checks of the value, checked on
    /// the text without building the value: no NUL in a string or key, at
    /// most [`MAX_JSON_DEPTH`] levels. An error names `field`.
    ///
    /// ```
    /// use runstore_core::JsonText;
    /// assert!(JsonText::new(r#"{"a": "b"}"#).unwrap().validate("payload").is_ok());
    /// let nul = JsonText::new(r#"{"a": "\u0000"}"#).unwrap();
    /// assert!(nul.validate("payload").unwrap_err().to_string().contains("payload"));
    /// ```
    pub fn validate(&self, field: &str) -> Result<()> {
        check(self.as_str(), true).map_err(|why| Error::invalid(field, why))
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Read with serde_json only (the text is kept as it stands), and checked
/// to read as a value, so a line a [`serde_json::Value`] read refuses is
/// refused here too.
impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        check(raw.get(), false).map_err(de::Error::custom)?;
        Ok(JsonText(raw))
    }
}

/// A JSON value read and dropped: parsed as for a [`serde_json::Value`]
/// (unlike [`serde::de::IgnoredAny`], which serde_json skips without its
/// nesting limit), so the same input fails, but nothing is built. For a
/// read that must refuse what a whole read refuses, at a fraction of the
/// allocations (the file backend counting events).
#[derive(Clone, Copy, Debug, Default)]
pub struct SkippedJson;

impl<'de> Deserialize<'de> for SkippedJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let why = Cell::new(None);
        let seed = Check {
            depth: 0,
            limits: false,
            why: &why,
        };
        seed.deserialize(d).map(|()| SkippedJson)
    }
}

/// Parses `text` as serde_json parses a [`serde_json::Value`] (the same
/// numbers out of range, the same lone surrogates, the same nesting limit
/// fail), building nothing; with `limits`, also what
/// [`crate::text::validate_json`] refuses, in its words.
fn check(text: &str, limits: bool) -> std::result::Result<(), String> {
    let why = Cell::new(None);
    let seed = Check {
        depth: 0,
        limits,
        why: &why,
    };
    let mut d = serde_json::Deserializer::from_str(text);
    let parsed = seed.deserialize(&mut d).and_then(|()| d.end());
    match (parsed, why.get()) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(why)) => Err(why.to_string()),
        (Err(e), None) => Err(e.to_string()),
    }
}

/// A value at `depth` (0 for the whole text); see [`check`].
#[derive(Clone, Copy)]
struct Check<'a> {
    depth: usize,
    limits: bool,
    /// Which limit failed: the parser's error would say it with a position.
    why: &'a Cell<Option<&'static str>>,
}

impl Check<'_> {
    fn fail<E: de::Error>(self, why: &'static str) -> std::result::Result<(), E> {
        self.why.set(Some(why));
        Err(E::custom(why))
    }

    fn string<E: de::Error>(self, s: &str, why: &'static str) -> std::result::Result<(), E> {
        if self.limits && s.contains('\0') {
            return self.fail(why);
        }
        Ok(())
    }

    fn nested<E: de::Error>(self) -> std::result::Result<Self, E> {
        if self.limits && self.depth >= MAX_JSON_DEPTH {
            self.why.set(Some(TOO_DEEP));
            return Err(E::custom(TOO_DEEP));
        }
        Ok(Check {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<(), E> {
        self.string(s, NUL_IN_STRING)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let inner = self.nested()?;
        while map.next_key_seed(Key(self))?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object's key; see [`check`].
#[derive(Clone, Copy)]
struct Key<'a>(Check<'a>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<(), E> {
        self.0.string(s, NUL_IN_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::validate_json;

    /// Every text is accepted exactly when a `Value` reads it (as a
    /// [`JsonText`] and as [`SkippedJson`]), and passes
    /// `validate` exactly when that value passes `validate_json`, with the
    /// same words.
    #[test]
    fn text_checks_agree_with_value_checks() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let deep_objects = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let texts = [
            "1".to_string(),
            "null".into(),
            "-0.0".into(),
            "1e308".into(),
            "1e400".into(),
            "-1e400".into(),
            "1e-400".into(),
            format!("1{}", "0".repeat(400)),
            "18446744073709551616".into(),
            r#""plain""#.into(),
            r#""\u0000""#.into(),
            r#""\\u0000""#.into(),
            r#"{"\u0000":1}"#.into(),
            r#"{"a":"b\u0000"}"#.into(),
            r#""\ud800""#.into(),
            r#""\udc00""#.into(),
            r#""\ud83d\ude00""#.into(),
            r#"{"a":1,"a":2}"#.into(),
            " { \"spaced\" : [ 1 , 2 ] } ".into(),
            "[1,]".into(),
            "{".into(),
            "1 2".into(),
            "".into(),
            "\"a\u{1}b\"".into(),
            deep(64),
            deep(65),
            deep_objects(64),
            deep_objects(65),
            deep(127),
            deep(129),
        ];
        for text in &texts {
            let value = serde_json::from_str::<serde_json::Value>(text);
            let made = JsonText::new(text.clone());
            assert_eq!(
                value.is_ok(),
                made.is_ok(),
                "{text:?}: {value:?} / {made:?}"
            );
            let skipped = serde_json::from_str::<SkippedJson>(text);
            assert_eq!(
                value.is_ok(),
                skipped.is_ok(),
                "{text:?}: skipped {skipped:?}"
            );
            let (Ok(value), Ok(made)) = (value, made) else {
                continue;
            };
            assert_eq!(made.to_value().unwrap(), value, "{text:?}");
            let by_value = validate_json("payload", &value).map_err(|e| e.to_string());
            let by_text = made.validate("payload").map_err(|e| e.to_string());
            assert_eq!(by_value, by_text, "{text:?}");
        }
    }

    #[test]
    fn the_text_is_kept_and_written_as_it_stands() {
        let text = JsonText::new(r#"{"b": 1,  "a": [true]}"#).unwrap();
        assert_eq!(text.as_str(), r#"{"b": 1,  "a": [true]}"#);
        let line = serde_json::to_string(&serde_json::json!({"k": 1})).unwrap();
        assert_eq!(line, r#"{"k":1}"#);
        #[derive(Serialize, Deserialize)]
        struct Line {
            payload: JsonText,
        }
        let written = serde_json::to_string(&Line { payload: text }).unwrap();
        assert_eq!(written, r#"{"payload":{"b": 1,  "a": [true]}}"#);
        let read: Line = serde_json::from_str(&written).unwrap();
        assert_eq!(read.payload.as_str(), r#"{"b": 1,  "a": [true]}"#);
        // A payload a value read refuses is refused as a line too.
        assert!(serde_json::from_str::<Line>(r#"{"payload":1e400}"#).is_err());
    }

    #[test]
    fn from_value_writes_compact_text() {
        let text = JsonText::from_value(&serde_json::json!({"b": 1, "a": "x"})).unwrap();
        assert_eq!(text.as_str(), r#"{"a":"x","b":1}"#);
    }
}
