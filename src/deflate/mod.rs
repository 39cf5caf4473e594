//! DEFLATE (RFC 1951) from scratch, sans-I/O: what `permessage-deflate` (RFC 7692) runs on.
//!
//! | file | RFC 1951 | what it does |
//! |---|---|---|
//! | [`huffman`] | §3.2.1, §3.2.2 | canonical codes from code lengths; a decoding table; code lengths from frequencies under a length limit |
//! | [`inflate`] | §3.2.3-§3.2.7 | a resumable decoder: input split at any byte, output bounded by a caller's limit |
//! | [`lz77`] | §4 | hash chains over a sliding window, greedy or lazy matching: bytes into literals and (length, distance) pairs |
//! | [`block`] | §3.2.4-§3.2.7 | those symbols as a stored, fixed or dynamic block, whichever is smallest |
//! | [`deflater`] | §4 | the compressor: a stream of messages, each ending in a sync flush |
//!
//! A DEFLATE stream is a series of blocks (§3.2.3). Each block holds literal bytes and
//! back-references "(length, backward distance)" into the last 32 KiB of output, coded with
//! two Huffman codes: the fixed ones of §3.2.6, or the block's own, sent at its start in a
//! compact form (§3.2.7). A stored block carries raw bytes, for data that does not compress.
//!
//! ```text
//!  compress:   bytes ─► lz77::Matcher ─► literals, (length, distance) ─► block::write_block ─► bits
//!  decompress: bits ─► inflate::Inflater (header, code lengths, Huffman symbols, window) ─► bytes
//! ```
//!
//! # The sync flush, and what RFC 7692 does with it
//!
//! A WebSocket message must be decodable as soon as it arrives, so the compressor ends each
//! message on a byte boundary with an empty stored block, which always ends in the four
//! bytes [`SYNC_FLUSH_TAIL`] (`00 00 ff ff`: LEN 0 and its complement, §3.2.4). zlib calls
//! this `Z_SYNC_FLUSH`. RFC 7692 §7.2.1 strips those four bytes from the wire and §7.2.2
//! puts them back before decompressing.
//!
//! # Memory
//!
//! Both sides keep a window between messages only when asked to (RFC 7692's "context
//! takeover"): [`Inflater::reset`] and [`Deflater::reset`] free it. Without context takeover
//! a compressor sizes its hash tables to the message (a 200-byte message uses a few KiB,
//! briefly) and an inflater holds at most its window; with it, a compressor keeps about
//! [`Deflater::retained_bytes`] (a 32 KiB window twice, and the hash chains) and an inflater
//! up to 64 KiB.

#![forbid(unsafe_code)]

pub mod block;
pub mod deflater;
pub mod huffman;
pub mod inflate;
pub mod lz77;

pub use deflater::{Deflater, Level};
pub use inflate::{InflateError, Inflater, Progress};

/// The end of every sync flush: an empty stored block's LEN (0) and NLEN (its complement),
/// §3.2.4. RFC 7692 §7.2.1 removes these four bytes from each compressed message.
pub const SYNC_FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RFC 1951 §3.2: distances reach back "up to 32K input bytes": a window of 2^15 bytes.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window RFC 7692 §7.1.2.1 lets a peer ask for: 2^8 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

/// §3.2.5: the literal/length alphabet's end-of-block symbol.
pub const END_OF_BLOCK: usize = 256;

/// §3.2.5: the shortest and longest match a length code can say.
pub const MIN_MATCH: usize = 3;
pub const MAX_MATCH: usize = 258;

/// §3.2.5: lengths 3..=258 as codes 257..=285, each a base and a count of extra bits.
pub const LENGTH_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
pub const LENGTH_EXTRA: [u8; 29] =
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];

/// §3.2.5: distances 1..=32768 as codes 0..=29, each a base and a count of extra bits.
pub const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
pub const DIST_EXTRA: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];

/// §3.2.7: the order in which a dynamic block lists the code length code's lengths, "from
/// most likely to be zero to least likely", so that HCLEN can cut the zeros off the end.
pub const CODE_LENGTH_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// §3.2.6: the fixed code lengths, literal/length (288 symbols) and distance (32).
pub fn fixed_lengths() -> ([u8; 288], [u8; 32]) {
    let mut litlen = [0u8; 288];
    for (symbol, len) in litlen.iter_mut().enumerate() {
        // "Lit Value 0 - 143: 8 bits; 144 - 255: 9; 256 - 279: 7; 280 - 287: 8".
        *len = match symbol {
            0..=143 => 8,
            144..=255 => 9,
            256..=279 => 7,
            _ => 8,
        };
    }
    // "Distance codes 0-31 are represented by (fixed-length) 5-bit codes".
    (litlen, [5; 32])
}

/// The index (0..=28) of the length code for a match of `len` bytes (3..=258), §3.2.5.
pub fn length_code(len: usize) -> usize {
    let x = len - MIN_MATCH;
    if len == MAX_MATCH {
        28
    } else if x < 8 {
        x
    } else {
        // Four codes per power of two, the top two bits after the leading one pick among them.
        let log = (usize::BITS - 1 - x.leading_zeros()) as usize;
        4 * (log - 1) + ((x >> (log - 2)) & 3)
    }
}

/// The distance code (0..=29) for a distance of 1..=32768, §3.2.5.
pub fn distance_code(distance: usize) -> usize {
    let x = distance - 1;
    if x < 4 {
        x
    } else {
        // Two codes per power of two, the bit after the leading one picks.
        let log = (usize::BITS - 1 - x.leading_zeros()) as usize;
        2 * log + ((x >> (log - 1)) & 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1951_3_2_5_every_length_maps_to_the_code_whose_range_holds_it() {
        for len in MIN_MATCH..=MAX_MATCH {
            let code = length_code(len);
            let base = usize::from(LENGTH_BASE[code]);
            assert!(base <= len && len - base < 1 << LENGTH_EXTRA[code], "{len} -> {code}");
        }
        // "284: 5 extra bits, lengths 227-257"; "285: 0, 258".
        assert_eq!((length_code(257), length_code(258)), (27, 28));
    }

    #[test]
    fn rfc1951_3_2_5_every_distance_maps_to_the_code_whose_range_holds_it() {
        for distance in 1..=32768 {
            let code = distance_code(distance);
            let base = usize::from(DIST_BASE[code]);
            assert!(base <= distance && distance - base < 1 << DIST_EXTRA[code], "{distance} -> {code}");
        }
    }
}
