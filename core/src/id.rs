//! Validated identifiers: [`WorkflowId`], [`RunId`], [`Phase`], [`PatternId`]
//! and [`Version`].
//!
//! An identifier is 1 to 128 bytes of `[A-Za-z0-9._-]`, not starting with
//! `.`, case-sensitive. That makes it safe as a file name on every OS and
//! harmless in a log line. It is checked once, when the value is built; a
//! backend only ever sees checked values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Longest identifier, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks the identifier rule of docs/DESIGN.md section 2 for `field`.
pub(crate) fn validate_identifier(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes long; at most {MAX_ID_LEN} allowed",
                value.len()
            ),
        ));
    }
    if value.starts_with('.') {
        return Err(Error::invalid(
            field,
            format!("must not start with '.': {}", crate::text::shown(value)),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::invalid(
            field,
            format!(
                "may only hold [A-Za-z0-9._-], found {:?} in {}",
                bad,
                crate::text::shown(value)
            ),
        ));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The field name used in validation errors.
            pub const FIELD: &'static str = $field;

            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`Error::InvalidInput`] naming the field and the rule broken.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate_identifier($field, &value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// The id of a workflow; all its versions share it.
    ///
    /// ```
    /// use runstore_core::WorkflowId;
    /// assert!(WorkflowId::new("nightly-etl").is_ok());
    /// assert!(WorkflowId::new("../etc/passwd").is_err());
    /// ```
    WorkflowId,
    "workflow_id"
);

identifier!(
    /// The id of one run of a workflow. [`RunId::generate`] gives a
    /// time-ordered one (UUIDv7 text).
    RunId,
    "run_id"
);

identifier!(
    /// A phase of a run (e.g. `extract`, `train`); artifacts are grouped by it.
    Phase,
    "phase"
);

identifier!(
    /// The id of a detected pattern; patterns are upserted by it.
    PatternId,
    "pattern_id"
);

impl RunId {
    /// A new time-ordered run id: the text of a UUIDv7, so ids generated later
    /// sort later (to the millisecond).
    ///
    /// ```
    /// let a = runstore_core::RunId::generate();
    /// assert_eq!(a.as_str().len(), 36);
    /// ```
    pub fn generate() -> Self {
        RunId(uuid::Uuid::now_v7().hyphenated().to_string())
    }
}

/// A workflow version: an integer >= 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Version(u32);

impl Version {
    /// The first version.
    pub const FIRST: Version = Version(1);

    /// Validates `value >= 1`. Values above `i32::MAX` are refused too, so
    /// that every SQL backend can store them in a 32-bit integer column.
    ///
    /// ```
    /// use runstore_core::Version;
    /// assert_eq!(Version::new(3).unwrap().get(), 3);
    /// assert!(Version::new(0).is_err());
    /// ```
    pub fn new(value: u32) -> Result<Self> {
        if value == 0 {
            return Err(Error::invalid("version", "must be >= 1, got 0"));
        }
        if value > i32::MAX as u32 {
            return Err(Error::invalid(
                "version",
                format!("must be <= {}, got {value}", i32::MAX),
            ));
        }
        Ok(Version(value))
    }

    /// Like [`Version::new`] for a signed value read back from a database.
    pub fn from_i64(value: i64) -> Result<Self> {
        u32::try_from(value)
            .map_err(|_| Error::invalid("version", format!("must be >= 1, got {value}")))
            .and_then(Version::new)
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The next version.
    pub fn next(self) -> Result<Self> {
        Version::new(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        Version::new(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_the_allowed_alphabet() {
        for ok in [
            "a",
            "A-b_c.d",
            "0193a2b4-7c1d-7e00-8000-000000000000",
            &"x".repeat(128),
        ] {
            assert!(RunId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn identifiers_reject_hostile_values() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "a b",
            "a\0b",
            "é",
            "a;DROP TABLE runs",
            &"x".repeat(129),
        ] {
            let err = WorkflowId::new(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("workflow_id"), "{err}");
        }
    }

    #[test]
    fn generated_run_ids_are_valid_and_ordered() {
        let a = RunId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RunId::generate();
        assert!(RunId::new(a.as_str()).is_ok());
        assert!(a < b);
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<Phase>("\"../x\"").is_err());
        assert!(serde_json::from_str::<Version>("0").is_err());
        assert_eq!(serde_json::from_str::<Version>("7").unwrap().get(), 7);
    }
}
