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
}
