//! The client side of the contract in `docs/PROTOCOL.md`: following a channel over any of the
//! three transports ([`subscriber`]) and publishing to one ([`publisher`]).
//!
//! Both are built on the crate's own codecs, run against any server that speaks the contract,
//! and serve two users: `realtime bench`, which drives thousands of subscribers on one thread,
//! and `realtime sub` / `realtime pub` ([`crate::cli`]), which drive one over a blocking
//! socket. The WebSocket client for tests and Rust programs is [`crate::ws::client`].

#![forbid(unsafe_code)]

pub mod envelope;
pub mod publisher;
pub mod subscriber;
