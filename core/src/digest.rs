//! SHA-256 digests and canonical JSON, the basis of content hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 digest, shown as 64 lowercase hex digits.
///
/// ```
/// use runstore_core::Sha256Digest;
/// let d = Sha256Digest::of(b"abc");
/// assert_eq!(d.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| {
            Error::invalid(
                "sha256",
                format!("expected 64 hex digits, got {}", crate::text::shown(s)),
            )
        })?;
        Ok(Sha256Digest(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_hex(s)
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental SHA-256, for streamed artifacts.
#[derive(Clone, Default)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The digest of everything fed.
    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(self.0.finalize().into())
    }
}

impl fmt::Debug for Sha256Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha256Hasher")
    }
}

/// Canonical JSON: object keys sorted bytewise, no whitespace, numbers and
/// strings as `serde_json` writes them. Two values are equal exactly when
/// their canonical texts are.
///
/// It sorts explicitly rather than trusting `serde_json::Map`'s order, which
/// changes when any crate in the build enables `preserve_order`.
///
/// ```
/// use serde_json::json;
/// assert_eq!(runstore_core::canonical_json(&json!({"b": 1, "a": [true, null]})), r#"{"a":[true,null],"b":1}"#);
/// ```
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // serde_json writes UTF-8 only, and so does every push below.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// SHA-256 of [`canonical_json`] of `value`.
pub(crate) fn canonical_hash(value: &serde_json::Value) -> Sha256Digest {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    Sha256Digest::of(&out)
}

/// Writes `value` as canonical JSON to `out`. Keys and scalars go straight
/// into `out` through `serde_json`'s writer: formatting each into a string
/// of its own, and each object's entries into a vector for sorting, was
/// most of the cost of hashing a run's events (digests are taken of every
/// record a migration checks or verifies).
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // `serde_json::Map` is a `BTreeMap` keyed by `String`, already in
            // bytewise order, unless `preserve_order` is on in the build.
            if map.keys().is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes()) {
                write_entries(map.iter(), out);
            } else {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                write_entries(entries.into_iter(), out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a serde_json::Value)>,
    out: &mut Vec<u8>,
) {
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_scalar(k.as_str(), out);
        out.push(b':');
        write_canonical(v, out);
    }
}

/// A string, number, boolean or null as `serde_json` writes it compactly
/// (what `Value`'s `Display` gives).
fn write_scalar<T: Serialize + ?Sized>(scalar: &T, out: &mut Vec<u8>) {
    // Writing a scalar into a vector cannot fail: no I/O, and a string key
    // or a JSON scalar always serializes.
    let _ = serde_json::to_writer(&mut *out, scalar);
}

/// SHA-256 of the canonical JSON of any serializable value.
///
/// # Errors
/// [`Error::InvalidInput`] if the value cannot be represented as JSON.
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> Result<Sha256Digest> {
    // Straight from the value's `Serialize`, as a rule; what the writer
    // leaves out goes through a `serde_json::Value`, the same bytes.
    let mut out = Vec::with_capacity(256);
    if crate::canonical_writer::write(value, &mut out).is_ok() {
        return Ok(Sha256Digest::of(&out));
    }
    let json = serde_json::to_value(value)
        .map_err(|e| Error::invalid("value", format!("cannot be written as JSON: {e}")))?;
    Ok(canonical_hash(&json))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The canonical form as first written (each key and scalar formatted
    /// on its own, entries sorted in a vector): digests already stored
    /// were taken of it, so the writer must give the same bytes.
    fn reference(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let inner: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), reference(v)))
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(reference).collect();
                format!("[{}]", inner.join(","))
            }
            scalar => scalar.to_string(),
        }
    }

    #[test]
    fn the_canonical_form_is_the_one_digests_were_taken_of() {
        let values = [
            json!(null),
            json!(true),
            json!(-0.0),
            json!(1e23),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!("quote \" backslash \\ tab \t nul \u{0} bell \u{7} é 😀 \u{2028}"),
            json!({}),
            json!([]),
            json!({"b": 1, "a": [true, null, {"z": "x", "é": 2, "A": {"": []}}], "aa": 1.5}),
            json!({"\u{7f}": 1, "~": 2, "\u{e9}": 3, "e\u{301}": 4, "Z": 5}),
            json!([[[[{"deep": [1, 2, {"k": "v"}]}]]]]),
        ];
        for v in &values {
            assert_eq!(canonical_json(v), reference(v), "{v}");
            assert_eq!(canonical_hash(v), Sha256Digest::of(reference(v).as_bytes()));
        }
        assert_eq!(
            canonical_json(&values[10]),
            r#"{"a":[true,null,{"A":{"":[]},"z":"x","é":2}],"aa":1.5,"b":1}"#
        );
    }

    #[test]
    fn content_hash_is_the_digest_of_the_canonical_form() {
        #[derive(Serialize)]
        struct Record<'a> {
            z: u32,
            a: &'a str,
        }
        let h = content_hash(&Record { z: 7, a: "x" }).unwrap();
        assert_eq!(h, Sha256Digest::of(br#"{"a":"x","z":7}"#));
        assert_eq!(
            h.to_string(),
            Sha256Digest::of(r#"{"a":"x","z":7}"#.as_bytes()).to_hex()
        );
    }
}
