//! The time, as a value. Protocol code never reads a clock: the drivers read both clocks once
//! per turn ([`crate::server::now`]) and pass the result down, so that every deadline can be
//! tested with made-up time.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

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
