//! Values given on the command line that several commands parse the same
//! way: versions and times.

use runstore::{Error, Result, Timestamp, Version};

/// `--version N`, if given, as a validated [`Version`].
pub fn version_arg(v: Option<u32>) -> Result<Option<Version>> {
    v.map(Version::new).transpose()
}

/// A time on the command line: RFC 3339, a date (`2026-11-30`, midnight
/// UTC), or an age before now (`90s`, `15m`, `12h`, `2d`).
pub fn parse_time(field: &str, s: &str) -> Result<Timestamp> {
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        let digits = &s[..s.len() - 1];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = digits
                .parse()
                .map_err(|_| Error::invalid(field, format!("{s} is too large")))?;
            let secs = match unit {
                's' => n,
                'm' => n.saturating_mul(60),
                'h' => n.saturating_mul(3600),
                _ => n.saturating_mul(86_400),
            };
            let micros = Timestamp::now()
                .as_micros()
                .saturating_sub(secs.saturating_mul(1_000_000));
            return Timestamp::from_micros(micros);
        }
    }
    if s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
        return format!("{s}T00:00:00Z")
            .parse::<Timestamp>()
            .map_err(|_| Error::invalid(field, format!("{s} is not a date (YYYY-MM-DD)")));
    }
    s.parse::<Timestamp>().map_err(|e| {
        Error::invalid(
            field,
            format!("{s}: use RFC 3339 (2026-11-30T12:00:00Z), a date (2026-11-30) or an age (90s, 15m, 12h, 2d): {e}"),
        )
    })
}
