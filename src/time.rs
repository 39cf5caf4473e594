//! The time, as a value. Protocol code never reads a clock: the drivers read both clocks once
//! per turn ([`crate::server::now`]) and pass the result down, so that every deadline can be
//! tested with made-up time.

#![forbid(unsafe_code)]

use std::num::NonZeroU64;
use std::ops::{Add, AddAssign, Sub};
use std::sync::OnceLock;
use std::time::Duration;

/// A point on the monotonic clock, in 8 bytes: nanoseconds from an origin the process picks
/// when it first reads the clock. `std::time::Instant` is 16 bytes (seconds and nanoseconds
/// apart), and an idle connection keeps about a dozen (its deadlines, when its buffers emptied,
/// its slot in the timer heap): 8 bytes saved on each is a tenth of what an idle connection
/// costs (README, "What an idle connection costs"). Never zero, so that an `Option<Instant>`
/// is 8 bytes too.
///
/// The origin sits about 146 years into the range, so that times before the process started
/// (a test's "ten seconds ago") are points like any other; the range left ahead of it is
/// centuries. Arithmetic saturates at both ends instead of panicking: a deadline past the end of
/// the range is "never".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

/// Nanoseconds of the range before the origin: about 146 years.
const BEFORE_ORIGIN: u64 = 1 << 62;

impl Instant {
    /// Reads the monotonic clock.
    pub fn now() -> Instant {
        static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
        let since_origin = ORIGIN.get_or_init(std::time::Instant::now).elapsed();
        Instant::at_nanos(BEFORE_ORIGIN.saturating_add(nanos(since_origin)))
    }

    fn at_nanos(nanos: u64) -> Instant {
        Instant(NonZeroU64::new(nanos).unwrap_or(NonZeroU64::MIN))
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.get().saturating_sub(earlier.0.get()))
    }

    /// The time from `earlier` to `self`, if `earlier` is not later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.get().checked_sub(earlier.0.get()).map(Duration::from_nanos)
    }

    /// Same as [`Instant::saturating_duration_since`] (std's name; std panics no more either).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }

    /// The time since `self`, read from the clock.
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }

    /// `self + duration`, if that is inside the range.
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        self.0.get().checked_add(nanos(duration)).map(Instant::at_nanos)
    }

    /// `self - duration`, if that is inside the range.
    pub fn checked_sub(self, duration: Duration) -> Option<Instant> {
        self.0.get().checked_sub(nanos(duration)).filter(|&n| n > 0).map(Instant::at_nanos)
    }
}

/// A duration in nanoseconds, saturating (`u64` holds 584 years). In `u64` arithmetic rather
/// than through `Duration::as_nanos`'s `u128`: every reading of the clock converts one.
fn nanos(duration: Duration) -> u64 {
    duration.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(duration.subsec_nanos()))
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, duration: Duration) -> Instant {
        Instant::at_nanos(self.0.get().saturating_add(nanos(duration)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, duration: Duration) -> Instant {
        Instant::at_nanos(self.0.get().saturating_sub(nanos(duration)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl std::fmt::Debug for Instant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from_origin = self.0.get() as i128 - BEFORE_ORIGIN as i128;
        write!(f, "Instant({:+.6}s)", from_origin as f64 / 1e9)
    }
}

/// The current time as the driver read it: a monotonic instant for deadlines and the wall
/// clock for timestamps, `Date` and token expiry.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub unix_ms: u64,
}

impl Now {
    /// Whole seconds since the Unix epoch: the unit of HTTP dates and JWT `exp` claims.
    pub fn unix_secs(&self) -> u64 {
        self.unix_ms / 1000
    }

    /// The monotonic instant at which the wall clock reads `unix_secs` (now, if that is past).
    /// A token's `exp` is wall-clock time; deadlines are kept on the monotonic clock.
    pub fn instant_at_unix_secs(&self, unix_secs: u64) -> Instant {
        let ahead_ms = unix_secs.saturating_mul(1000).saturating_sub(self.unix_ms);
        // Far-future expiries are capped: `Instant + Duration` may overflow on some platforms.
        self.instant + Duration::from_millis(ahead_ms.min(MAX_AHEAD_MS))
    }
}

/// About 100 years: later than any deadline this server keeps.
const MAX_AHEAD_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// Converts days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days` ("chrono-Compatible Low-Level Date
/// Algorithms", 2013), for dates from the epoch on. It counts in 400-year eras of 146,097 days
/// whose years start on March 1st, so that the leap day is the last day of a year and the
/// month lengths (31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 28/29) follow the formula
/// `(153 * m + 2) / 5`. Used by HTTP dates and log timestamps.
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_is_eight_bytes_and_so_is_an_optional_one() {
        assert_eq!(std::mem::size_of::<Instant>(), 8);
        assert_eq!(std::mem::size_of::<Option<Instant>>(), 8);
    }

    #[test]
    fn instants_before_the_process_started_are_ordinary_points() {
        let now = Instant::now();
        let ten_seconds_ago = now - Duration::from_secs(10);
        assert!(ten_seconds_ago < now);
        assert_eq!(now - ten_seconds_ago, Duration::from_secs(10));
        assert_eq!(ten_seconds_ago + Duration::from_secs(10), now);
    }

    #[test]
    fn instant_arithmetic_saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(now.saturating_duration_since(now + Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(now.checked_duration_since(now + Duration::from_secs(1)), None);
        let never = now + Duration::MAX;
        assert!(never > now + Duration::from_secs(100 * 365 * 24 * 3600));
        assert_eq!(now.checked_add(Duration::MAX), None);
        assert_eq!(now.checked_sub(Duration::MAX), None);
        assert!(now - Duration::MAX < now);
    }

    #[test]
    fn the_clock_does_not_go_backwards() {
        let first = Instant::now();
        let second = Instant::now();
        assert!(second >= first);
        assert!(first.elapsed() >= second - first);
    }

    #[test]
    fn a_wall_clock_time_maps_to_the_instant_that_far_ahead() {
        let now = Now { instant: Instant::now(), unix_ms: 1_000_500 };
        assert_eq!(now.unix_secs(), 1000);
        assert_eq!(now.instant_at_unix_secs(1002), now.instant + Duration::from_millis(1500));
        assert_eq!(now.instant_at_unix_secs(999), now.instant, "a time already past is now");
        assert_eq!(now.instant_at_unix_secs(u64::MAX), now.instant + Duration::from_millis(MAX_AHEAD_MS));
    }

    #[test]
    fn civil_from_days_matches_known_dates_across_leap_years() {
        // (days since 1970-01-01, date), computed independently (`date -u -d @$((days*86400))`).
        let known = [
            (0, (1970, 1, 1)),
            (58, (1970, 2, 28)),
            (59, (1970, 3, 1)),
            (364, (1970, 12, 31)),
            (365, (1971, 1, 1)),
            (789, (1972, 2, 29)), // the first leap day after the epoch
            (790, (1972, 3, 1)),
            (10_956, (1999, 12, 31)),
            (11_016, (2000, 2, 29)), // 2000 is divisible by 400: a leap year
            (11_017, (2000, 3, 1)),
            (19_782, (2024, 2, 29)),
            (20_787, (2026, 11, 30)),
            (47_540, (2100, 2, 28)), // 2100 is divisible by 100, not 400: no leap day
            (47_541, (2100, 3, 1)),
            (2_932_896, (9999, 12, 31)),
        ];
        for (days, date) in known {
            assert_eq!(civil_from_days(days), date, "day {days}");
        }
    }

    #[test]
    fn civil_from_days_never_skips_or_repeats_a_day() {
        let mut previous = civil_from_days(0);
        for days in 1..200_000 {
            let (year, month, day) = civil_from_days(days);
            let next_in_month = (year, month, day) == (previous.0, previous.1, previous.2 + 1);
            let next_month = day == 1 && (year, month) == (previous.0, previous.1 + 1);
            let next_year = (month, day) == (1, 1) && year == previous.0 + 1 && previous.1 == 12;
            assert!(next_in_month || next_month || next_year, "{previous:?} then {:?}", (year, month, day));
            previous = (year, month, day);
        }
    }
}
