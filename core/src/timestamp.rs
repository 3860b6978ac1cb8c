//! [`Timestamp`]: UTC, microsecond precision, the same in every backend.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A UTC instant with microsecond precision, from 0001-01-01T00:00:00Z to
/// 9999-12-30T21:59:59.999999Z.
///
/// Microseconds are what PostgreSQL keeps, so a value read back from any
/// backend equals the value written. Its text form is RFC 3339 with exactly
/// six fractional digits and a `Z`, so text order is time order.
///
/// ```
/// use runstore_core::Timestamp;
/// let t: Timestamp = "2026-01-02T03:04:05.123456Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-01-02T03:04:05.123456Z");
/// assert_eq!(Timestamp::from_micros(t.as_micros()).unwrap(), t);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// 0001-01-01T00:00:00Z in microseconds since the Unix epoch.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// 9999-12-30T21:59:59.999999Z in microseconds since the Unix epoch: the end
/// of jiff's range, which stops short of the year's end.
const MAX_MICROS: i64 = 253_402_207_199_999_999;

impl Timestamp {
    /// The earliest representable instant, 0001-01-01T00:00:00Z.
    pub const MIN: Timestamp = Timestamp(MIN_MICROS);
    /// The latest representable instant, 9999-12-30T21:59:59.999999Z.
    pub const MAX: Timestamp = Timestamp(MAX_MICROS);
    /// The Unix epoch.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    /// Now, truncated to the microsecond.
    pub fn now() -> Self {
        Timestamp::from_jiff(jiff::Timestamp::now())
    }

    /// From microseconds since the Unix epoch.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] outside years 1 to 9999.
    pub fn from_micros(micros: i64) -> Result<Self> {
        if !(MIN_MICROS..=MAX_MICROS).contains(&micros) {
            return Err(Error::invalid(
                "timestamp",
                format!("{micros} µs since the epoch is outside years 1 to 9999"),
            ));
        }
        Ok(Timestamp(micros))
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// From a [`jiff::Timestamp`], truncated to the microsecond and clamped
    /// to years 1 to 9999.
    pub fn from_jiff(ts: jiff::Timestamp) -> Self {
        let micros = ts.as_microsecond().clamp(MIN_MICROS, MAX_MICROS);
        Timestamp(micros)
    }

    /// As a [`jiff::Timestamp`].
    pub fn to_jiff(self) -> jiff::Timestamp {
        // In range by construction, and jiff's range is wider.
        jiff::Timestamp::from_microsecond(self.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// This instant plus `micros` microseconds, saturating at the range ends.
    pub fn saturating_add_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros).clamp(MIN_MICROS, MAX_MICROS))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = self.to_jiff();
        write!(f, "{}", ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// Parses RFC 3339 with any offset; more than six fractional digits are
    /// refused rather than silently truncated.
    fn from_str(s: &str) -> Result<Self> {
        let ts: jiff::Timestamp = s.parse().map_err(|e| {
            Error::invalid(
                "timestamp",
                format!("{} is not an RFC 3339 time: {e}", crate::text::shown(s)),
            )
        })?;
        if ts.subsec_nanosecond() % 1000 != 0 {
            return Err(Error::invalid(
                "timestamp",
                format!("{} has sub-microsecond digits", crate::text::shown(s)),
            ));
        }
        Timestamp::from_micros(ts.as_microsecond())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_order() {
        for t in [
            Timestamp::MIN,
            Timestamp::MAX,
            Timestamp::UNIX_EPOCH,
            Timestamp::now(),
        ] {
            let s = t.to_string();
            assert_eq!(s.parse::<Timestamp>().unwrap(), t, "{s}");
            assert_eq!(s.len(), 27, "{s}");
        }
        assert_eq!(Timestamp::MIN.to_string(), "0001-01-01T00:00:00.000000Z");
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-30T21:59:59.999999Z");
        assert!(Timestamp::from_micros(MAX_MICROS + 1).is_err());
        assert!("2026-01-01T00:00:00.0000001Z".parse::<Timestamp>().is_err());
        assert_eq!(
            "2026-01-01T01:00:00+01:00"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2026-01-01T00:00:00.000000Z"
        );
    }
}
