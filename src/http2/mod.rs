//! HTTP/2 (RFC 9113) codecs, sans-I/O: HPACK and frames.

#![forbid(unsafe_code)]

pub mod error;
pub mod frame;
pub mod hpack;
pub mod huffman;
