//! A serde serializer that writes the canonical JSON of a value (see
//! [`canonical_json`](crate::canonical_json)) straight from its `Serialize`
//! impl, without building a `serde_json::Value` first.
//!
//! Converting a record to a `Value` copies every string and payload into a
//! tree of maps and frees it again; in a migration checked while copying,
//! that was most of the cost of a digest. This writer gives the same bytes
//! for what it supports and refuses the rest ([`Unsupported`]), so the
//! caller falls back to the `Value` path: `f32` and 128-bit numbers (whose
//! `Value` forms differ from their direct ones), byte strings, map keys that
//! are not strings, repeated keys, and `serde_json`'s private raw values.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

/// Appends the canonical JSON of `value` to `out`. On an error `out` holds
/// a partial text, which the caller discards.
pub(crate) fn write<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), Unsupported> {
    value.serialize(Canonical { out })
}

/// What the writer does not support, or an error of the value's own
/// `Serialize` impl: either way the caller takes the `Value` path, which
/// reports real errors.
#[derive(Debug)]
pub(crate) struct Unsupported;

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not written by the canonical writer")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

type Res = Result<(), Unsupported>;

/// A scalar as `serde_json` writes it compactly, which is how a `Value`
/// holding it is written.
fn scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Res {
    serde_json::to_writer(out, v).map_err(|_| Unsupported)
}

/// Calls `$then!` with serde's methods for booleans and integers up to 64
/// bits and their types, which both serializers here treat alike.
macro_rules! integer_and_bool_methods {
    ($then:ident) => {
        $then!(
            serialize_bool: bool,
            serialize_i8: i8,
            serialize_i16: i16,
            serialize_i32: i32,
            serialize_i64: i64,
            serialize_u8: u8,
            serialize_u16: u16,
            serialize_u32: u32,
            serialize_u64: u64
        );
    };
}

/// Scalars written as `serde_json` writes them, the same as their `Value`.
macro_rules! write_scalars {
    ($($method:ident : $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Res {
            scalar(self.out, &v)
        }
    )*};
}

struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Canonical<'a> {
    /// `{"variant":` before the content of an externally tagged variant.
    fn open_variant(&mut self, variant: &str) -> Res {
        self.out.push(b'{');
        scalar(self.out, variant)?;
        self.out.push(b':');
        Ok(())
    }
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    integer_and_bool_methods!(write_scalars);
    fn serialize_f32(self, _: f32) -> Res {
        // A `Value` holds it widened to f64, which prints other digits.
        Err(Unsupported)
    }
    fn serialize_f64(self, v: f64) -> Res {
        // Non-finite is `null` both ways.
        scalar(self.out, &v)
    }
    fn serialize_char(self, v: char) -> Res {
        scalar(self.out, &v)
    }
    fn serialize_str(self, v: &str) -> Res {
        scalar(self.out, v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Res {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Res {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Res {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Res {
        scalar(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Res {
        if name.starts_with("$serde_json::private::") {
            return Err(Unsupported);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Res {
        self.open_variant(variant)?;
        value.serialize(Canonical { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, Unsupported> {
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'a>, Unsupported> {
        self.open_variant(variant)?;
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Unsupported> {
        Ok(Object::open(self.out, len.unwrap_or(0), false))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Object<'a>, Unsupported> {
        if name.starts_with("$serde_json::private::") {
            return Err(Unsupported);
        }
        Ok(Object::open(self.out, len, false))
    }
    fn serialize_struct_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, Unsupported> {
        self.open_variant(variant)?;
        Ok(Object::open(self.out, len, true))
    }
}

/// An array being written.
struct Seq<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Inside `{"variant":…}`, closed too at the end.
    variant: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical {
            out: &mut *self.out,
        })
    }

    fn close(self) -> Res {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// The four array kinds of serde, each written by [`Seq`].
macro_rules! array_kind {
    ($($kind:ident :: $method:ident),*) => {$(
        impl ser::$kind for Seq<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
                self.element(value)
            }
            fn end(self) -> Res {
                self.close()
            }
        }
    )*};
}

array_kind!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// An object being written. Each entry is written as it comes, `key:value`
/// after a comma, and its span remembered; at the end the entries are put
/// in bytewise key order if they came in another (a struct's fields come in
/// declaration order, a `serde_json::Map`'s already sorted).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where the first entry starts (after `{`).
    start: usize,
    /// Each entry's key and the span of its `key:value` text in `out`.
    entries: Vec<(Cow<'static, str>, usize, usize)>,
    /// Whether the keys so far came in strictly increasing order.
    ordered: bool,
    /// A map key waiting for its value.
    key: Option<String>,
    variant: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>, len: usize, variant: bool) -> Self {
        out.push(b'{');
        let start = out.len();
        Object {
            out,
            start,
            entries: Vec::with_capacity(len),
            ordered: true,
            key: None,
            variant,
        }
    }

    fn entry<T: Serialize + ?Sized>(&mut self, key: Cow<'static, str>, value: &T) -> Res {
        if let Some((last, _, _)) = self.entries.last() {
            self.ordered &= last.as_bytes() < key.as_bytes();
            self.out.push(b',');
        }
        let from = self.out.len();
        scalar(self.out, key.as_ref())?;
        self.out.push(b':');
        value.serialize(Canonical {
            out: &mut *self.out,
        })?;
        self.entries.push((key, from, self.out.len()));
        Ok(())
    }

    fn close(mut self) -> Res {
        if self.key.is_some() {
            return Err(Unsupported);
        }
        if !self.ordered {
            self.entries
                .sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            // A repeated key: a `Value` keeps the last one only.
            if self.entries.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(Unsupported);
            }
            let written = self.out.split_off(self.start);
            for (i, (_, from, to)) in self.entries.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.out
                    .extend_from_slice(&written[from - self.start..to - self.start]);
            }
        }
        self.out.push(b'}');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Res {
        self.key = Some(key.serialize(KeyOnly)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Res {
        let key = self.key.take().ok_or(Unsupported)?;
        self.entry(Cow::Owned(key), value)
    }
    fn end(self) -> Res {
        self.close()
    }
}

/// The two struct kinds of serde, each written by [`Object`].
macro_rules! struct_kind {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Object<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Res {
                self.entry(Cow::Borrowed(key), value)
            }
            fn end(self) -> Res {
                self.close()
            }
        }
    )*};
}

struct_kind!(SerializeStruct, SerializeStructVariant);

/// Map keys of a scalar type other than a string, which `serde_json`
/// writes as strings of its own making: left to the `Value` path.
macro_rules! refuse_keys {
    ($($method:ident : $ty:ty),*) => {$(
        fn $method(self, _: $ty) -> Result<String, Unsupported> {
            Err(Unsupported)
        }
    )*};
}

/// A map key: a string (or a char) only; `serde_json` turns numbers and
/// booleans into strings too, which this writer leaves to the `Value` path.
struct KeyOnly;

impl ser::Serializer for KeyOnly {
    type Ok = String;
    type Error = Unsupported;
    type SerializeSeq = Impossible<String, Unsupported>;
    type SerializeTuple = Impossible<String, Unsupported>;
    type SerializeTupleStruct = Impossible<String, Unsupported>;
    type SerializeTupleVariant = Impossible<String, Unsupported>;
    type SerializeMap = Impossible<String, Unsupported>;
    type SerializeStruct = Impossible<String, Unsupported>;
    type SerializeStructVariant = Impossible<String, Unsupported>;

    fn serialize_str(self, v: &str) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_char(self, v: char) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Unsupported> {
        value.serialize(self)
    }
    integer_and_bool_methods!(refuse_keys);
    refuse_keys!(serialize_f32: f32, serialize_f64: f64);
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_none(self) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_unit(self) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Unsupported> {
        // serde_json takes a unit variant as its name, as a key too.
        Ok(variant.to_string())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Err(Unsupported)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde_json::{Value, json};

    use super::*;
    use crate::{
        ExecutionMetric, Run, RunStatus, RunUpdate, Timestamp, Version, WorkflowId, canonical_json,
    };

    /// What the writer gives, or `None` where it leaves the value to the
    /// `Value` path.
    fn written<T: Serialize>(v: &T) -> Option<String> {
        let mut out = Vec::new();
        write(v, &mut out).ok()?;
        Some(String::from_utf8(out).unwrap())
    }

    /// The writer gives exactly the canonical JSON of the value's `Value`.
    fn same<T: Serialize + fmt::Debug>(v: &T) {
        let expected = canonical_json(&serde_json::to_value(v).unwrap());
        assert_eq!(written(v).as_deref(), Some(expected.as_str()), "{v:?}");
    }

    #[derive(Debug, Serialize)]
    enum Kind {
        Unit,
        Newtype(u32),
        Tuple(i8, &'static str),
        Struct { z: bool, a: Option<u8> },
    }

    #[derive(Debug, Serialize)]
    struct Inner {
        zeta: f64,
        alpha: Vec<Kind>,
    }

    #[derive(Debug, Serialize)]
    struct Outer {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        nothing: Option<u8>,
        unit: (),
        tuple: (u8, char, &'static str),
        #[serde(flatten)]
        extra: BTreeMap<String, Value>,
        inner: Inner,
        b: HashMap<String, i64>,
        a: Kind,
    }

    #[test]
    fn gives_the_bytes_of_the_value_path() {
        for v in [
            json!(null),
            json!(-0.0),
            json!(1e23),
            json!(u64::MAX),
            json!(i64::MIN),
            json!("quote \" backslash \\ nul \u{0} é 😀 \u{2028}"),
            json!({"b": 1, "a": [true, null, {"z": "x", "é": 2, "A": {"": []}}], "aa": 1.5}),
            json!({"\u{7f}": 1, "~": 2, "\u{e9}": 3, "e\u{301}": 4, "Z": 5}),
        ] {
            same(&v);
        }
        let mut extra = BTreeMap::new();
        extra.insert("middle".to_string(), json!({"y": [1, 2], "x": null}));
        let outer = Outer {
            name: "n\"ame".into(),
            skipped: None,
            nothing: None,
            unit: (),
            tuple: (1, 'c', "s"),
            extra,
            inner: Inner {
                zeta: f64::NAN,
                alpha: vec![
                    Kind::Unit,
                    Kind::Newtype(7),
                    Kind::Tuple(-1, "t"),
                    Kind::Struct { z: true, a: None },
                ],
            },
            b: [
                ("q".to_string(), 1),
                ("p".to_string(), -2),
                ("".to_string(), 0),
            ]
            .into_iter()
            .collect(),
            a: Kind::Struct {
                z: false,
                a: Some(3),
            },
        };
        same(&outer);
        same(&Kind::Unit);
        same(&vec![Some(1.5), None]);
    }

    #[test]
    fn gives_the_bytes_of_the_value_path_for_the_records() {
        let mut run = Run::new(WorkflowId::new("etl").unwrap(), Version::FIRST);
        same(&run);
        run.attributes
            .insert("z".into(), json!({"nested": [1, "two", null]}));
        run.attributes.insert("a".into(), json!(0.1));
        run.external_key = Some("ci-42".into());
        let end = Timestamp::from_micros(run.started_at.as_micros() + 1_500_000).unwrap();
        let (done, _) = run
            .apply_update(&RunUpdate::finished(RunStatus::Succeeded, end))
            .unwrap();
        same(&done);
        let metric = ExecutionMetric::from_run(&done)
            .unwrap()
            .with_value("rows", 42.5)
            .with_value("cost", -0.0)
            .with_counter("steps", -3);
        same(&metric);
    }

    #[test]
    fn leaves_what_it_cannot_write_alike_to_the_value_path() {
        // f32 is widened in a `Value`, and prints other digits there.
        assert_eq!(written(&0.1f32), None);
        assert_eq!(written(&(1u128 << 70)), None);
        let mut by_number = BTreeMap::new();
        by_number.insert(1, "one");
        assert_eq!(written(&by_number), None);
        #[derive(Serialize)]
        struct Twice {
            a: u8,
            #[serde(flatten)]
            more: BTreeMap<String, u8>,
        }
        let twice = Twice {
            a: 1,
            more: [("a".to_string(), 2), ("0".to_string(), 0)]
                .into_iter()
                .collect(),
        };
        assert_eq!(written(&twice), None);
        // content_hash still hashes all of these, through the `Value`.
        for v in [
            serde_json::to_value(0.1f32).unwrap(),
            serde_json::to_value(&by_number).unwrap(),
            serde_json::to_value(&twice).unwrap(),
        ] {
            assert_eq!(
                crate::content_hash(&v).unwrap(),
                crate::Sha256Digest::of(canonical_json(&v).as_bytes())
            );
        }
        assert_eq!(
            crate::content_hash(&0.1f32).unwrap(),
            crate::Sha256Digest::of(b"0.10000000149011612")
        );
    }
}
