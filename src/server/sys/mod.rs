//! What the standard library does not offer safely, behind safe APIs: the crate's only
//! `unsafe` code.
//!
//! The crate root denies `unsafe` everywhere (`#![deny(unsafe_code)]` in `lib.rs`), every other
//! module forbids it outright, and this module alone lifts the ban, so that a reviewer who
//! wants to audit every `unsafe` line reads these two files and nothing else:
//!
//! | part | what needs `unsafe` | why std is not enough |
//! |---|---|---|
//! | [`os`] | calls into C (`extern "C"`), taking ownership of the descriptors the kernel returns | std has no epoll, poll, eventfd, sigwait, rlimit, CPU affinity or per-call `MSG_DONTWAIT` |
//! | [`utf8_simd`] | 32- and 16-byte vector loads from a slice, calling AVX2 (or SSE4.1) code once the CPU is known to have it, and a `String` from bytes that check has proven | std's own UTF-8 check runs a byte (or a word) at a time |
//!
//! Every `unsafe` block carries a `// SAFETY:` comment saying why it cannot go wrong, and each
//! part's module docs say what in it is unsafe. Nothing here imports from the rest of the crate:
//! it is used by the drivers ([`crate::server`]), `main`, the load generator
//! ([`mod@crate::bench`]), the WebSocket codec ([`crate::ws::utf8`]) and the Redis link
//! (`broker::redis::pipeline`, for a send that never waits). It lives under
//! `server` because the project keeps all its `unsafe` in this one module (`DESIGN.md`: "the
//! only `unsafe` in the crate"), and that module has always been the drivers' `sys`; the
//! WebSocket codec reaching up for its vector kernel and the Redis link for its send are the
//! imports that point up the directory tree (not up the layers: README, "Layers").

#![allow(unsafe_code)]

pub mod os;
pub mod utf8_simd;
