//! Limits per client address: a publish rate (a token bucket) and a connection count.
//!
//! Both are tables keyed by IP address, and both are bounded: a connection count exists only
//! while the address has connections open (at most `--max-connections` entries), and a bucket
//! only while it is not full again. A full bucket is the same as no bucket, so the table can
//! forget it; when the table still reaches [`MAX_TRACKED_ADDRESSES`], new addresses are
//! refused until buckets refill, rather than growing the table without bound.
//!
//! Behind a reverse proxy every client has the proxy's address: limit per client at the
//! proxy there (nginx `limit_req`, `limit_conn`), and leave these off.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::lock;
use crate::time::Instant;

/// Addresses the publish-rate table tracks at once. A bucket lives about one second after its
/// last publish (the time to refill a burst), so this is 64k publishing addresses per second;
/// past it new addresses wait, which is the safe side for a limit.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Per-address token buckets: each address may publish `rate` times a second on average, and
/// `rate` times at once after a quiet second (the burst).
pub struct PublishRate {
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Publishes allowed right now; refills at `rate` per second up to `rate`.
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refilled(self, rate: u32, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        Bucket { tokens: (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate)), updated: now }
    }
}

impl PublishRate {
    /// `rate` publishes per second per address; zero is treated as one.
    pub fn new(rate: u32) -> PublishRate {
        PublishRate { rate: rate.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one publish from `address`'s bucket. `Err` carries how long until one is
    /// available: the `Retry-After` of a 429 (RFC 6585 §4).
    pub fn take(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&address) {
            // Full buckets carry no information: forget them, then look again.
            buckets.retain(|_, bucket| bucket.refilled(rate, now).tokens < f64::from(rate));
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                return Err(Duration::from_secs(1));
            }
        }
        let full = Bucket { tokens: f64::from(rate), updated: now };
        let bucket = buckets.entry(address).or_insert(full);
        *bucket = bucket.refilled(rate, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / f64::from(rate)))
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.buckets).len()
    }
}

/// Open connections per address, under `--max-conns-per-ip`.
pub struct ConnectionsPerAddress {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection's share of its address's count; dropping it gives it back.
pub struct AddressSlot {
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionsPerAddress {
    pub fn new(max: usize) -> ConnectionsPerAddress {
        ConnectionsPerAddress { max, open: Arc::default() }
    }

    /// A slot for one more connection from `address`, or `None` if it has `max` open.
    pub fn admit(&self, address: IpAddr) -> Option<AddressSlot> {
        let mut open = lock(&self.open);
        let count = open.entry(address).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot { address, open: self.open.clone() })
    }

    /// Connections open from `address`.
    pub fn open_from(&self, address: IpAddr) -> usize {
        lock(&self.open).get(&address).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                // An address with nothing open takes no room in the table.
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_bucket_allows_a_burst_of_rate_then_one_publish_per_interval() {
        let limit = PublishRate::new(5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limit.take(A, t0), Ok(()));
        }
        let wait = limit.take(A, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(200), "one token every 1/5 s");
        assert_eq!(limit.take(B, t0), Ok(()), "addresses have their own buckets");
        assert!(limit.take(A, t0 + Duration::from_millis(199)).is_err());
        assert_eq!(limit.take(A, t0 + Duration::from_millis(200)), Ok(()));
        // After a quiet while the bucket is full again, never fuller.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(limit.take(A, later), Ok(()));
        }
        assert!(limit.take(A, later).is_err());
    }

    #[test]
    fn the_bucket_table_forgets_full_buckets_and_never_grows_past_its_bound() {
        let limit = PublishRate::new(1);
        let t0 = Instant::now();
        let address = |i: usize| IpAddr::V6(std::net::Ipv6Addr::from(i as u128));
        for i in 0..MAX_TRACKED_ADDRESSES {
            assert_eq!(limit.take(address(i), t0), Ok(()));
        }
        assert!(limit.take(address(MAX_TRACKED_ADDRESSES), t0).is_err(), "full table: new addresses wait");
        assert_eq!(limit.tracked(), MAX_TRACKED_ADDRESSES);
        // A second later every bucket has refilled: the table empties to make room.
        assert_eq!(limit.take(address(MAX_TRACKED_ADDRESSES), t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(limit.tracked(), 1);
    }

    #[test]
    fn connections_per_address_are_counted_while_open_and_forgotten_at_zero() {
        let limit = ConnectionsPerAddress::new(2);
        let first = limit.admit(A).expect("first");
        let second = limit.admit(A).expect("second");
        assert!(limit.admit(A).is_none(), "a third from the same address is refused");
        let other = limit.admit(B).expect("another address has its own count");
        drop(first);
        assert_eq!(limit.open_from(A), 1);
        let third = limit.admit(A).expect("a slot was given back");
        drop((second, third, other));
        assert_eq!(limit.open_from(A), 0);
        assert!(lock(&limit.open).is_empty());
    }
}
