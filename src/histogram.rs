//! A Prometheus histogram: fixed bucket bounds, one atomic counter per bucket, no lock.
//!
//! The exposition format (<https://prometheus.io/docs/instrumenting/exposition_formats/>,
//! "Histograms and summaries") writes a histogram named `x` as `x_bucket{le="..."}` samples,
//! one per upper bound, each counting the observations *less than or equal to* it (so the
//! counts are cumulative), a final `x_bucket{le="+Inf"}` equal to `x_count`, then `x_sum`
//! and `x_count`. The buckets "must appear in increasing numerical order" of `le`.
//!
//! Recording keeps each bucket's own count (not the cumulative one), so an observation is one
//! atomic add on one counter: a hot path that delivers a message pays that and no more. The
//! running sum is kept in whole microseconds in an integer, because an atomic float add would
//! need a compare-and-swap loop; a batch of observations adds its sum once
//! ([`Histogram::record_batch`]). Cumulating happens when a scrape reads the histogram
//! ([`Histogram::snapshot`]), and `count` is taken from the same bucket reads, so `+Inf` and
//! `_count` always agree even while other threads record (each bucket is read once; a scrape
//! racing with a recording sees it in both or in neither, except that `_sum` may lag a batch).
//!
//! Counters only grow: `Relaxed` ordering, as for every counter in [`crate::stats`].

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds, increasing. `+Inf` is implied.
pub type Bounds = &'static [u64];

/// Delivery latency, publish to queued for writing: 1 ms to 10 s.
///
/// A message's publish time ([`crate::broker::Message::time_ms`]) has millisecond resolution
/// (and so does the wall clock the drivers read), so a bound below 1 ms would only separate
/// "same millisecond" from "the next one", which truncation decides, not speed. An in-process
/// fan-out queues a message in well under a millisecond; a worker busy with a large fan-out,
/// a Redis hop or a slow consumer's backlog shows up in the tens to hundreds of milliseconds;
/// past 10 s something is wrong and the exact value no longer matters (`+Inf`).
pub const DELIVERY_LATENCY: Bounds = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Request duration, first byte of the head to the response queued: 0.5 ms to 60 s.
///
/// Measured on the monotonic clock, so sub-millisecond bounds mean something: a `/healthz` or
/// a publish to memory takes tens of microseconds. The top bounds are for long polls, whose
/// duration is their wait: up to `--poll-timeout` (30 s by default), at most
/// [`crate::config::MAX_POLL_TIMEOUT`] (60 s). A poll that timed out lands just above its
/// timeout (a default poll in `le="60"`), which keeps "answered by a message" (below) apart
/// from "answered by the clock" (30 s and up).
pub const REQUEST_DURATION: Bounds = &[
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];

/// Observations sorted into buckets, with their sum. Lock-free: every field is an atomic.
#[derive(Debug)]
pub struct Histogram {
    bounds: Bounds,
    /// `counts[i]`: observations in `(bounds[i-1], bounds[i]]`; the last one is `(max, +Inf)`.
    counts: Box<[AtomicU64]>,
    /// The sum of all observations, in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: Bounds) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// The bucket an observation of `micros` falls in: the first bound at or above it
    /// (`le` is "less than or equal"), or the `+Inf` bucket past the last one.
    fn bucket(&self, micros: u64) -> usize {
        self.bounds.partition_point(|&bound| bound < micros)
    }

    /// Counts one observation of `micros` without touching the sum: one atomic add. The
    /// caller adds the sum of its batch with [`Histogram::add_to_sum`].
    pub fn count(&self, micros: u64) {
        self.counts[self.bucket(micros)].fetch_add(1, Relaxed);
    }

    /// Adds a batch's total to the sum (see [`Histogram::count`]).
    pub fn add_to_sum(&self, micros: u64) {
        if micros > 0 {
            self.sum_micros.fetch_add(micros, Relaxed);
        }
    }

    /// Records one observation: its bucket and the sum.
    pub fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.count(micros);
        self.add_to_sum(micros);
    }

    /// Records observations given in microseconds: one add per observation, one for the sum.
    pub fn record_batch(&self, micros: impl IntoIterator<Item = u64>) {
        let mut sum = 0u64;
        for micros in micros {
            self.count(micros);
            sum = sum.saturating_add(micros);
        }
        self.add_to_sum(sum);
    }

    /// The counts as a scrape shows them: cumulative, with `count` equal to the `+Inf` bucket.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let cumulative: Vec<u64> = self
            .counts
            .iter()
            .map(|count| {
                running = running.saturating_add(count.load(Relaxed));
                running
            })
            .collect();
        HistogramSnapshot { bounds: self.bounds, cumulative, sum_micros: self.sum_micros.load(Relaxed) }
    }
}

/// A histogram at one moment, ready to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: Bounds,
    /// `cumulative[i]`: observations `<= bounds[i]`; the last entry is the `+Inf` bucket.
    pub cumulative: Vec<u64>,
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    /// Every observation: the `+Inf` bucket.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

/// Writes one histogram family: `# HELP`, `# TYPE`, then for each series (its labels, already
/// formatted as `name="value"` pairs without braces) its buckets, `_sum` and `_count`.
pub fn write_family(out: &mut String, name: &str, help: &str, series: &[(String, HistogramSnapshot)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, histogram) in series {
        let separator = if labels.is_empty() { "" } else { "," };
        for (i, count) in histogram.cumulative.iter().enumerate() {
            let _ = match histogram.bounds.get(i) {
                Some(&bound) => writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{}\"}} {count}", seconds(bound)),
                None => writeln!(out, "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}"),
            };
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", seconds(histogram.sum_micros));
        let _ = writeln!(out, "{name}_count{braces} {}", histogram.count());
    }
}

/// Microseconds as seconds, the base unit Prometheus asks for ("use base units", Metric and
/// label naming): `2500` is `0.0025`. Rust prints the shortest decimal that reads back as the
/// same `f64`, never an exponent, which Go's `ParseFloat` (the format's rule) accepts.
fn seconds(micros: u64) -> String {
    format!("{}", micros as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = &[1_000, 10_000];

    #[test]
    fn an_observation_on_a_bound_counts_in_that_bucket_because_le_is_inclusive() {
        let histogram = Histogram::new(BOUNDS);
        histogram.record(Duration::from_millis(1));
        histogram.record(Duration::from_micros(1_001));
        histogram.record(Duration::from_secs(1));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative, vec![1, 2, 3], "cumulative, +Inf last");
        assert_eq!(snapshot.count(), 3);
        assert_eq!(snapshot.sum_micros, 1_000 + 1_001 + 1_000_000);
    }

    #[test]
    fn a_batch_costs_one_add_per_observation_and_sums_once() {
        let histogram = Histogram::new(BOUNDS);
        histogram.record_batch([0, 5_000, 20_000, 20_000]);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative, vec![1, 2, 4]);
        assert_eq!(snapshot.sum_micros, 45_000);
    }

    #[test]
    fn the_family_has_cumulative_buckets_up_to_inf_then_sum_and_count_in_seconds() {
        let histogram = Histogram::new(BOUNDS);
        histogram.record(Duration::from_micros(2_500));
        let mut out = String::new();
        write_family(&mut out, "x_seconds", "X.", &[("kind=\"a\"".to_string(), histogram.snapshot())]);
        assert_eq!(
            out,
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{kind=\"a\",le=\"0.001\"} 0\n\
             x_seconds_bucket{kind=\"a\",le=\"0.01\"} 1\n\
             x_seconds_bucket{kind=\"a\",le=\"+Inf\"} 1\n\
             x_seconds_sum{kind=\"a\"} 0.0025\n\
             x_seconds_count{kind=\"a\"} 1\n"
        );
        let mut unlabelled = String::new();
        write_family(&mut unlabelled, "y", "Y.", &[(String::new(), Histogram::new(BOUNDS).snapshot())]);
        assert!(unlabelled.contains("y_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n"), "{unlabelled}");
    }

    #[test]
    fn the_chosen_bounds_increase() {
        for bounds in [DELIVERY_LATENCY, REQUEST_DURATION] {
            assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]), "{bounds:?}");
        }
        assert_eq!(seconds(500), "0.0005");
        assert_eq!(seconds(60_000_000), "60");
    }
}
