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

/// Length of the text form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
const TEXT_LEN: usize = 27;
const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

// The text form is written and read here rather than by jiff's general
// `strftime` and parser: every stored record's timestamps go through it,
// and jiff's took a visible share of a migration's time. jiff stays the
// reference: the tests compare both over the whole range, and text in any
// other form is still parsed by jiff.

/// (year, month, day) of the proleptic Gregorian calendar, `days` after
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Timestamp {
    /// The text form, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (years 1 to 9999 take
    /// four digits).
    fn text(self) -> [u8; TEXT_LEN] {
        let secs = self.0.div_euclid(MICROS_PER_SEC);
        let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
        let of_day = secs.rem_euclid(SECS_PER_DAY);
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: i64| {
            for i in (at..at + width).rev() {
                // A digit: `n` is not negative in range.
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3_600);
        put(14, 2, of_day / 60 % 60);
        put(17, 2, of_day % 60);
        put(20, 6, self.0.rem_euclid(MICROS_PER_SEC));
        out
    }

    /// `s` in exactly the text form, if it is a valid instant in range;
    /// `None` leaves it to jiff (other forms, and every error).
    fn from_text(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() != TEXT_LEN {
            return None;
        }
        let num = |at: usize, width: usize| -> Option<i64> {
            b[at..at + width].iter().try_fold(0i64, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
            })
        };
        for (at, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ] {
            if b[at] != c {
                return None;
            }
        }
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        // A leap second (60) and the like are jiff's to decide.
        if year < 1
            || !(1..=12).contains(&month)
            || !(1..=days_in_month(year, month)).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let secs =
            days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3_600 + minute * 60 + second;
        let micros = secs * MICROS_PER_SEC + num(20, 6)?;
        (MIN_MICROS..=MAX_MICROS)
            .contains(&micros)
            .then_some(Timestamp(micros))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
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
        if let Some(t) = Timestamp::from_text(s) {
            return Ok(t);
        }
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
        // Read from the input where it can be, without a `String` of each.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Timestamp, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instants over the whole range: both ends, the days around every
    /// kind of leap year, and a spread of others.
    fn instants() -> Vec<i64> {
        let mut out = vec![
            MIN_MICROS,
            MAX_MICROS,
            0,
            -1,
            1,
            MIN_MICROS + 1,
            MAX_MICROS - 1,
        ];
        for year in [
            1i64, 4, 100, 400, 1600, 1900, 1969, 1970, 2000, 2024, 2100, 9996, 9999,
        ] {
            for (month, day) in [(1, 1), (2, 28), (2, 29), (3, 1), (12, 31)] {
                if day > days_in_month(year, month) {
                    continue;
                }
                let secs = days_from_civil(year, month, day) * SECS_PER_DAY;
                for delta in [-1, 0, 1, 86_399] {
                    let m = (secs + delta) * MICROS_PER_SEC + 123_456;
                    if (MIN_MICROS..=MAX_MICROS).contains(&m) {
                        out.push(m);
                    }
                }
            }
        }
        // A fixed linear congruential sequence over the range.
        let span = (MAX_MICROS - MIN_MICROS) as u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            out.push(MIN_MICROS + ((x >> 1) % span) as i64);
        }
        out
    }

    #[test]
    fn text_form_is_jiffs_over_the_whole_range() {
        for m in instants() {
            let t = Timestamp::from_micros(m).unwrap();
            let by_jiff = t.to_jiff().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
            let text = t.to_string();
            assert_eq!(text, by_jiff, "{m}");
            assert_eq!(Timestamp::from_text(&text), Some(t), "{text}");
            let parsed: jiff::Timestamp = text.parse().unwrap();
            assert_eq!(parsed.as_microsecond(), m, "{text}");
        }
    }

    #[test]
    fn text_not_in_the_form_is_left_to_jiff() {
        for s in [
            "2026-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-00-01T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T23:60:00.000000Z",
            "2016-12-31T23:59:60.000000Z",
            "0000-01-01T00:00:00.000000Z",
            "9999-12-31T00:00:00.000000Z",
            "2026-01-01T00:00:00.000000z",
            "2026-01-01 00:00:00.000000Z",
            "2026-01-01T00:00:00.00000aZ",
            "+026-01-01T00:00:00.000000Z",
            "2026-01-01T00:00:00.000000+00:00",
        ] {
            assert_eq!(Timestamp::from_text(s), None, "{s}");
            let by_jiff = s.parse::<jiff::Timestamp>().ok().and_then(|t| {
                (t.subsec_nanosecond() % 1000 == 0)
                    .then(|| Timestamp::from_micros(t.as_microsecond()).ok())
                    .flatten()
            });
            assert_eq!(s.parse::<Timestamp>().ok(), by_jiff, "{s}");
        }
    }

    #[test]
    fn reads_from_json_borrowed_or_escaped() {
        let t: Timestamp = serde_json::from_str(r#""2026-01-02T03:04:05.123456Z""#).unwrap();
        let escaped: Timestamp =
            serde_json::from_str(r#""2026-01-02T03:04:05.123456\u005a""#).unwrap();
        assert_eq!(t, escaped);
        let from_value: Timestamp =
            serde_json::from_value(serde_json::json!(t.to_string())).unwrap();
        assert_eq!(from_value, t);
        assert!(serde_json::from_str::<Timestamp>("17").is_err());
    }

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
