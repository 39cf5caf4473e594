//! Cryptography written out by hand: SHA-256 ([`sha256`]).
//!
//! Why by hand? The product's only runtime dependencies are the standard library, `sha1_smol`
//! and `base64` (the WebSocket handshake's SHA-1 and base64, RFC 6455 §4.2.2). The demo page's
//! CSP hashes need SHA-256, which is small, fully specified (FIPS 180-4) and comes with
//! published test vectors (FIPS 180-2 appendix B): little code, checked against the
//! specification's own answers, is cheaper than a new dependency and its updates.

#![forbid(unsafe_code)]

pub mod sha256;
