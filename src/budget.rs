//! One process-wide budget for the memory clients control.
//!
//! Every buffer a client can fill is bounded on its own: a request head (`--max-head-bytes`),
//! a body (`--max-publish-bytes`), a WebSocket message (`--max-message-bytes`), the output a
//! connection queues (backpressure in [`crate::connection::Connection::input_room`]). But ten
//! thousand connections each within their bounds can still add up to more than the machine
//! has: 40 clients each sending most of a 16 MiB message to `/echo` hold 640 MiB. So the
//! connections also add what they hold to one counter, and when the sum passes the budget,
//! the connections holding more than an equal share give theirs up, biggest first by
//! construction: a connection under the share is never touched, whatever the total.
//!
//! What counts: bytes read and not yet parsed, a partial request body or WebSocket message,
//! and output not yet written. Not counted: the broker's history (bounded per channel by
//! `--history` and `--history-bytes`) and the fixed cost of a connection.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// What a budget is when the machine's memory cannot be read.
pub const FALLBACK_BUDGET_BYTES: usize = 1 << 30;

/// The share of physical memory the default budget takes: a quarter leaves room for the
/// history, the process itself and whatever else runs on the machine.
pub const DEFAULT_SHARE_OF_MEMORY: usize = 4;

/// The budget and what the connections hold of it.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// Connections that had to give up what they held.
    shed: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget { limit, used: AtomicUsize::new(0), shed: AtomicU64::new(0) }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    pub fn shed_count(&self) -> u64 {
        self.shed.load(Relaxed)
    }

    /// A connection that held `before` bytes now holds `after`.
    pub fn update(&self, before: usize, after: usize) {
        if after > before {
            self.used.fetch_add(after - before, Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Relaxed);
        }
    }

    /// Should a connection holding `held` bytes give them up, with `connections` open? Only
    /// while the total is over the budget, and only if it holds more than an equal share.
    pub fn should_shed(&self, held: usize, connections: usize) -> bool {
        self.used() > self.limit && held > self.limit / connections.max(1)
    }

    /// Counts one connection that gave up what it held.
    pub fn shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }
}

/// The default budget: [`DEFAULT_SHARE_OF_MEMORY`] of `MemTotal` in `/proc/meminfo`, or
/// [`FALLBACK_BUDGET_BYTES`] where there is no procfs.
pub fn default_budget() -> usize {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<usize>().ok())
        .map(|kib| kib.saturating_mul(1024) / DEFAULT_SHARE_OF_MEMORY)
        .filter(|&bytes| bytes > 0)
        .unwrap_or(FALLBACK_BUDGET_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_add_and_give_back_what_they_hold() {
        let budget = MemoryBudget::new(1000);
        budget.update(0, 600);
        budget.update(0, 300);
        assert_eq!(budget.used(), 900);
        budget.update(600, 100);
        assert_eq!(budget.used(), 400);
        budget.update(100, 0);
        budget.update(300, 0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn only_connections_over_an_equal_share_are_shed_and_only_past_the_budget() {
        let budget = MemoryBudget::new(1000);
        budget.update(0, 900);
        assert!(!budget.should_shed(900, 4), "within the budget nobody is shed");
        budget.update(0, 300);
        assert!(budget.should_shed(900, 4), "past it, the one holding 900 of 1200 gives up");
        assert!(!budget.should_shed(240, 4), "one under the share (250) keeps what it has");
        assert!(budget.should_shed(251, 4));
        assert!(budget.should_shed(1001, 0), "no connections counted: the share is the budget");
    }

    #[test]
    fn the_default_budget_is_a_share_of_the_machine() {
        let budget = default_budget();
        assert!(budget > 0);
        if std::path::Path::new("/proc/meminfo").exists() {
            assert_ne!(budget, FALLBACK_BUDGET_BYTES);
        }
    }
}
