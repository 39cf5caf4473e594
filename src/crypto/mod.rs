//! Cryptography written out by hand: SHA-256 ([`sha256`]) and HMAC-SHA-256 with a
//! constant-time comparison ([`hmac`]).
//!
//! Why by hand? The product's only runtime dependencies are the standard library, `sha1_smol`
//! and `base64` (the WebSocket handshake's SHA-1 and base64, RFC 6455 §4.2.2). The demo page's
//! CSP hashes and the channel tokens ([`crate::token`], HS256) need SHA-256 and HMAC, which are
//! small, fully specified (FIPS 180-4, RFC 2104) and come with published test vectors (FIPS
//! 180-2 appendix B, RFC 4231): little code, checked against the specifications' own answers,
//! is cheaper than a new dependency and its updates. Nothing else belongs here: no ciphers, no
//! random numbers, no key exchange.

#![forbid(unsafe_code)]

pub mod hmac;
pub mod sha256;
