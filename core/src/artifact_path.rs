//! [`ArtifactPath`], the validated logical path of an artifact, and
//! [`ArtifactKey`], the full address `run_id/phase/path`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::id::{Phase, RunId};
use crate::text::shown;

/// Longest artifact path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest segment of an artifact path, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// A relative, `/`-separated logical path: each segment 1 to 255 bytes, no
/// empty, `.` or `..` segment, no `\`, no NUL or control character, at most
/// 1024 bytes in all.
///
/// ```
/// use runstore_core::ArtifactPath;
/// assert!(ArtifactPath::new("reports/summary.json").is_ok());
/// for bad in ["", "/etc/passwd", "a/../b", "a//b", "a\\b", "./a"] {
///     assert!(ArtifactPath::new(bad).is_err(), "{bad}");
/// }
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    /// The field name used in validation errors.
    pub const FIELD: &'static str = "artifact path";

    /// Validates and wraps `value`.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let field = Self::FIELD;
        if value.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if value.len() > MAX_PATH_LEN {
            return Err(Error::invalid(
                field,
                format!(
                    "is {} bytes long; at most {MAX_PATH_LEN} allowed",
                    value.len()
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::invalid(
                field,
                format!(
                    "must not contain NUL or control characters: {}",
                    shown(&value)
                ),
            ));
        }
        if value.contains('\\') {
            return Err(Error::invalid(
                field,
                format!("must use '/' as separator, found '\\' in {}", shown(&value)),
            ));
        }
        if value.starts_with('/') {
            return Err(Error::invalid(
                field,
                format!("must be relative, got {}", shown(&value)),
            ));
        }
        for segment in value.split('/') {
            match segment {
                "" => {
                    return Err(Error::invalid(
                        field,
                        format!("must not have an empty segment: {}", shown(&value)),
                    ));
                }
                "." | ".." => {
                    return Err(Error::invalid(
                        field,
                        format!("must not have a '{segment}' segment: {}", shown(&value)),
                    ));
                }
                s if s.len() > MAX_SEGMENT_LEN => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "segment of {} bytes; at most {MAX_SEGMENT_LEN} allowed",
                            s.len()
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(ArtifactPath(value))
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactPath({:?})", self.0)
    }
}

impl FromStr for ArtifactPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&str> for ArtifactPath {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for ArtifactPath {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ArtifactPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// The address of an artifact: `(run_id, phase, path)`, written
/// `run_id/phase/path`. Orders by run, then phase, then path (bytewise).
///
/// It is also the key of artifact cursors ([`crate::ArtifactCursor`]), so
/// like every cursor key it refuses unknown fields: a cursor of another
/// query never decodes as one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactKey {
    /// The run that produced it.
    pub run_id: RunId,
    /// The phase of the run.
    pub phase: Phase,
    /// The logical path within the phase.
    pub path: ArtifactPath,
}

impl ArtifactKey {
    /// Builds a key from validated parts.
    pub fn new(run_id: RunId, phase: Phase, path: ArtifactPath) -> Self {
        ArtifactKey {
            run_id,
            phase,
            path,
        }
    }

    /// Parses and validates each part.
    ///
    /// ```
    /// let key = runstore_core::ArtifactKey::parse("run-1", "train", "model/weights.bin").unwrap();
    /// assert_eq!(key.to_string(), "run-1/train/model/weights.bin");
    /// ```
    pub fn parse(run_id: &str, phase: &str, path: &str) -> Result<Self> {
        Ok(ArtifactKey {
            run_id: RunId::new(run_id)?,
            phase: Phase::new(phase)?,
            path: ArtifactPath::new(path)?,
        })
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.run_id, self.phase, self.path)
    }
}
