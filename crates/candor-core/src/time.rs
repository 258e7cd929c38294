//! Time as Candor keeps it: milliseconds since the Unix epoch, UTC, and the calendar
//! arithmetic every part shares (UTC days for retention, daily features, partitions and
//! budget periods), written once.
//!
//! Reading the clock is I/O and stays out of this crate: callers pass the time in (the
//! server has an injectable clock, so tests control it).

/// Milliseconds in a UTC day (no leap seconds: Unix time has none).
pub const DAY_MS: i64 = 86_400_000;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The UTC day it falls in, as days since the epoch (negative before 1970).
    pub fn day(self) -> i64 {
        self.0.div_euclid(DAY_MS)
    }

    /// The first millisecond of UTC day `day`.
    pub fn day_start(day: i64) -> Self {
        Self(day.saturating_mul(DAY_MS))
    }

    /// The first millisecond of its own UTC day.
    pub fn start_of_day(self) -> Self {
        Self::day_start(self.day())
    }

    /// `days` whole days later (saturating; negative goes back).
    pub fn plus_days(self, days: i64) -> Self {
        Self(self.0.saturating_add(days.saturating_mul(DAY_MS)))
    }

    /// `days` whole days earlier (saturating).
    pub fn minus_days(self, days: i64) -> Self {
        Self(self.0.saturating_sub(days.saturating_mul(DAY_MS)))
    }

    /// `ms` milliseconds later (saturating; negative goes back).
    pub fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

impl From<i64> for UnixMillis {
    fn from(ms: i64) -> Self {
        Self(ms)
    }
}

impl std::fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_floor_before_the_epoch() {
        assert_eq!(UnixMillis(0).day(), 0);
        assert_eq!(UnixMillis(DAY_MS - 1).day(), 0);
        assert_eq!(UnixMillis(DAY_MS).day(), 1);
        assert_eq!(UnixMillis(-1).day(), -1);
        assert_eq!(UnixMillis(DAY_MS + 5).start_of_day(), UnixMillis(DAY_MS));
        assert_eq!(UnixMillis(-1).start_of_day(), UnixMillis(-DAY_MS));
        assert_eq!(UnixMillis(5).plus_days(2), UnixMillis(5 + 2 * DAY_MS));
        assert_eq!(UnixMillis(5).minus_days(2).plus_days(2), UnixMillis(5));
        assert_eq!(UnixMillis(i64::MAX).plus_days(1), UnixMillis(i64::MAX));
        assert_eq!(UnixMillis(i64::MIN).minus_days(1), UnixMillis(i64::MIN));
        assert_eq!(UnixMillis::day_start(3), UnixMillis(3 * DAY_MS));
    }
}
