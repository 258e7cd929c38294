//! The TC string's 36-bit timestamps (deciseconds since the Unix epoch) and
//! their ISO-8601 form.
//!
//! Date arithmetic is done by hand (Howard Hinnant's civil-date algorithms)
//! to keep the crate free of a date-time dependency for two fields.

use core::fmt;

/// A point in time with decisecond precision, as stored in TC strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// Largest value a 36-bit field holds (early 2187).
pub const MAX_DECISECONDS: u64 = (1 << 36) - 1;

impl Timestamp {
    /// From deciseconds since the Unix epoch.
    pub const fn from_deciseconds(ds: u64) -> Self {
        Self(ds)
    }

    /// Deciseconds since the Unix epoch.
    pub const fn deciseconds(self) -> u64 {
        self.0
    }

    /// From milliseconds since the Unix epoch, rounded to the nearest
    /// decisecond as the IAB encoder does (`Math.round(ms / 100)`).
    pub const fn from_unix_millis(ms: u64) -> Self {
        Self((ms + 50) / 100)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0 * 100
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form JavaScript's `toISOString` gives.
    pub fn to_iso8601(self) -> String {
        self.to_string()
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only; 1970 onwards).
    pub fn parse_iso8601(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
            return None;
        }
        let num = |r: core::ops::Range<usize>| -> Option<u64> {
            let t = s.get(r)?;
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let millis = match b[19] {
            b'Z' if b.len() == 20 => 0,
            b'.' => {
                let frac = s.get(20..b.len() - 1)?;
                if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                // Only milliseconds matter below a decisecond anyway.
                let padded = format!("{frac:0<3}");
                padded.get(..3)?.parse::<u64>().ok()?
            }
            _ => return None,
        };
        if !(1..=12).contains(&mo)
            || d < 1
            || d > days_in_month(y, mo)
            || h > 23
            || mi > 59
            || sec > 59
        {
            return None;
        }
        let days = days_from_civil(y, mo, d)?;
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
        Some(Self::from_unix_millis(secs * 1000 + millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.unix_millis();
        let secs = ms / 1000;
        let (y, mo, d) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            ms % 1000
        )
    }
}

fn is_leap(y: u64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (None before 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let t = Timestamp::parse_iso8601("2025-08-05T00:00:00.000Z").unwrap();
        assert_eq!(t.unix_millis(), 1_754_352_000_000);
        assert_eq!(t.to_iso8601(), "2025-08-05T00:00:00.000Z");
        let t = Timestamp::parse_iso8601("2000-02-29T23:59:59.9Z").unwrap();
        assert_eq!(t.to_iso8601(), "2000-02-29T23:59:59.900Z");
        assert_eq!(
            Timestamp::default().to_iso8601(),
            "1970-01-01T00:00:00.000Z"
        );
        let max = Timestamp::from_deciseconds(MAX_DECISECONDS);
        assert_eq!(Timestamp::parse_iso8601(&max.to_iso8601()), Some(max));
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "",
            "2025-02-30T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00.Z",
            "+025-01-01T00:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_iso8601(s), None, "{s}");
        }
    }

    #[test]
    fn day_conversion_is_inverse() {
        for days in (0..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
    }
}
