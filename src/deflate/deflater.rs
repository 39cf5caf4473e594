//! The compressor: a stream of messages, each compressed and ended with a sync flush so that
//! the receiver can decode it whole as soon as it arrives (RFC 1951 §4, RFC 7692 §7.2.1).
//!
//! # Theory of operation
//!
//! [`Deflater::compress`] runs the input through the [`Matcher`] in pieces of
//! [`INPUT_PIECE`] bytes; whenever a block's worth of symbols has gathered, and at the end
//! of each piece, [`write_block`] writes them as whichever block type is smallest. Then
//! [`write_sync_flush`] ends the output on a byte boundary with `00 00 ff ff`.
//!
//! Between calls the matcher keeps the last window of input, so the next message can refer
//! back into this one: RFC 7692's context takeover. [`Deflater::reset`] forgets it (and frees
//! the memory), which is what "no context takeover" asks after each message.

#![forbid(unsafe_code)]

use super::block::{write_block, write_sync_flush, BitWriter};
use super::lz77::{Effort, Matcher, Symbols};
use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// Input is matched this much at a time, so that the buffer stays within two windows plus
/// this, whatever the size of a message. Each piece ends a block; at 64 KiB the cost of the
/// extra block headers is a few hundred bytes per megabyte.
pub const INPUT_PIECE: usize = 64 * 1024;

/// How hard the compressor works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Level {
    /// Greedy matching on short chains, as zlib's level 1: about twice as fast, a few percent
    /// larger.
    Fast,
    /// Lazy matching, as zlib's level 6 (its default).
    #[default]
    Default,
}

impl Level {
    /// The matcher settings: zlib's `configuration_table` rows for levels 1 and 6.
    fn effort(self) -> Effort {
        match self {
            Level::Fast => Effort { lazy: false, max_chain: 4, nice_length: 8, good_length: 4, max_lazy: 4 },
            Level::Default => Effort { lazy: true, max_chain: 128, nice_length: 128, good_length: 8, max_lazy: 16 },
        }
    }
}

/// A DEFLATE compressor for a stream of messages.
#[derive(Clone, Debug)]
pub struct Deflater {
    matcher: Matcher,
}

impl Deflater {
    /// A compressor whose back-references reach at most `2^window_bits` bytes (clamped to
    /// 8..=15): RFC 7692 §7.1.2 lets the receiver ask for a smaller window.
    pub fn new(level: Level, window_bits: u8) -> Deflater {
        let window = 1 << window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Deflater { matcher: Matcher::new(level.effort(), window) }
    }

    /// Appends `input`, compressed and followed by a sync flush, to `out`. Later calls may
    /// refer back into this input unless [`Deflater::reset`] is called in between.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut writer = BitWriter::new(out);
        self.matcher.reserve(input.len());
        let mut symbols = Symbols::new();
        for piece in input.chunks(INPUT_PIECE) {
            let start = self.matcher.append(piece);
            let mut flush = |full: &mut Symbols, raw: &[u8]| write_block(&mut writer, full, raw, false);
            let rest = self.matcher.run(start, &mut symbols, &mut flush);
            if symbols.bytes > 0 {
                write_block(&mut writer, &symbols, self.matcher.bytes(rest, symbols.bytes), false);
                symbols.clear();
            }
        }
        write_sync_flush(&mut writer);
    }

    /// [`Deflater::compress`] into a new buffer.
    pub fn compress_to_vec(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() / 2 + 16);
        self.compress(input, &mut out);
        out
    }

    /// Forgets earlier input and frees the window and hash chains.
    pub fn reset(&mut self) {
        self.matcher.reset();
    }

    /// The bytes kept between calls: zero after [`Deflater::reset`].
    pub fn retained_bytes(&self) -> usize {
        self.matcher.retained_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Inflater, SYNC_FLUSH_TAIL};
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), for incompressible input.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Text with the repetition of real messages: JSON envelopes with varying fields.
    fn envelopes(count: usize) -> Vec<u8> {
        let mut text = Vec::new();
        for i in 0..count {
            text.extend_from_slice(
                format!(
                    "{{\"channel\":\"prices.{}\",\"id\":\"{}-{}\",\"time\":{},\"data\":{{\"bid\":{}.{},\"ask\":{}}}}}\n",
                    i % 7,
                    1_700_000_000 + i,
                    i % 3,
                    1_700_000_000_000u64 + i as u64 * 37,
                    100 + i % 13,
                    i % 100,
                    101 + i % 11
                )
                .as_bytes(),
            );
        }
        text
    }

    fn inputs() -> Vec<(String, Vec<u8>)> {
        vec![
            ("empty".into(), Vec::new()),
            ("one byte".into(), b"a".to_vec()),
            ("two bytes".into(), b"ab".to_vec()),
            ("hello".into(), b"Hello".to_vec()),
            ("run".into(), vec![b'z'; 100_000]),
            ("noise".into(), noise(200_000, 7)),
            ("envelopes".into(), envelopes(3000)),
            ("all bytes".into(), (0..=255u8).cycle().take(70_000).collect()),
            ("mixed".into(), [envelopes(50), noise(5000, 3), envelopes(50), vec![0; 70_000]].concat()),
        ]
    }

    fn inflate_all(compressed: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Inflater::new(15).inflate(compressed, &mut out, usize::MAX).unwrap();
        out
    }

    #[test]
    fn round_trips_at_every_level() {
        for level in [Level::Fast, Level::Default] {
            for (name, input) in inputs() {
                let compressed = Deflater::new(level, 15).compress_to_vec(&input);
                assert!(compressed.ends_with(&SYNC_FLUSH_TAIL), "{name}");
                assert_eq!(inflate_all(&compressed), input, "{level:?} {name}");
            }
        }
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_compresses_to_the_rfc_bytes() {
        // The RFC's example is what zlib writes: a fixed block with five literals.
        let compressed = Deflater::new(Level::Default, 15).compress_to_vec(b"Hello");
        assert_eq!(compressed, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff]);
    }

    #[test]
    fn rfc7692_7_2_3_2_context_takeover_refers_back_to_the_previous_message() {
        let mut deflater = Deflater::new(Level::Default, 15);
        let first = deflater.compress_to_vec(b"Hello");
        let second = deflater.compress_to_vec(b"Hello");
        // The RFC's second message (zlib's) is a literal "H" and a match of 4 at distance 5,
        // `f2 00 11 00 00`; ours is one match of 5 at distance 5, a byte shorter. Both decode
        // to "Hello" after the first.
        assert_eq!(second, [0x02, 0x13, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff]);
        let rfc_second = [0xf2, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff];
        for second in [&second[..], &rfc_second] {
            let mut inflater = Inflater::new(15);
            let mut out = Vec::new();
            inflater.inflate(&[&first[..], second].concat(), &mut out, 100).unwrap();
            assert_eq!(out, b"HelloHello");
        }
    }

    #[test]
    fn rfc7692_7_2_3_6_empty_message_is_an_empty_sync_flush() {
        assert_eq!(Deflater::new(Level::Default, 15).compress_to_vec(b""), [0x00, 0x00, 0x00, 0xff, 0xff]);
    }

    #[test]
    fn reset_forgets_the_window_and_frees_it() {
        let mut deflater = Deflater::new(Level::Default, 15);
        deflater.compress_to_vec(&envelopes(100));
        assert!(deflater.retained_bytes() > 0);
        deflater.reset();
        assert_eq!(deflater.retained_bytes(), 0);
        assert_eq!(deflater.compress_to_vec(b"Hello"), Deflater::new(Level::Default, 15).compress_to_vec(b"Hello"));
    }

    #[test]
    fn context_takeover_over_many_messages_round_trips_and_stays_bounded() {
        for bits in [8, 9, 12, 15] {
            let mut deflater = Deflater::new(Level::Default, bits);
            let mut inflater = Inflater::new(bits);
            for (i, message) in envelopes(400).chunks(97).chain(noise(100_000, 5).chunks(33_000)).enumerate() {
                let mut out = Vec::new();
                inflater.inflate(&deflater.compress_to_vec(message), &mut out, usize::MAX).unwrap();
                assert_eq!(out, message, "window bits {bits}, message {i}");
                assert!(deflater.retained_bytes() <= 2 * (3 << bits) + 4 * (2 << bits) + 8 * INPUT_PIECE);
            }
        }
    }

    #[test]
    fn incompressible_input_grows_by_stored_block_headers_only() {
        let input = noise(200_000, 11);
        let compressed = Deflater::new(Level::Default, 15).compress_to_vec(&input);
        // A stored block (5 bytes of header) per block of symbols at most, and the flush.
        let blocks = input.len().div_ceil(super::super::lz77::BLOCK_SYMBOLS) + input.len().div_ceil(INPUT_PIECE);
        assert!(compressed.len() <= input.len() + 5 * blocks + 5, "{}", compressed.len());
    }

    #[test]
    fn default_level_compresses_envelopes_at_least_as_well_as_fast() {
        let input = envelopes(2000);
        let fast = Deflater::new(Level::Fast, 15).compress_to_vec(&input).len();
        let default = Deflater::new(Level::Default, 15).compress_to_vec(&input).len();
        assert!(default <= fast && default * 4 < input.len(), "fast {fast}, default {default}, input {}", input.len());
    }

    /// zlib (through flate2, a dev-dependency) decodes a raw DEFLATE stream.
    fn zlib_inflate(compressed: &[u8], expected_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(expected_len + 1);
        let mut zlib = flate2::Decompress::new(false);
        zlib.decompress_vec(compressed, &mut out, flate2::FlushDecompress::Sync).unwrap();
        out
    }

    /// zlib's raw DEFLATE with a sync flush at `level`.
    fn zlib_deflate(input: &[u8], level: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + input.len() / 100 + 64);
        let mut zlib = flate2::Compress::new(flate2::Compression::new(level), false);
        zlib.compress_vec(input, &mut out, flate2::FlushCompress::Sync).unwrap();
        out
    }

    #[test]
    fn zlib_inflates_what_we_deflate() {
        for level in [Level::Fast, Level::Default] {
            for (name, input) in inputs() {
                let compressed = Deflater::new(level, 15).compress_to_vec(&input);
                assert_eq!(zlib_inflate(&compressed, input.len()), input, "{level:?} {name}");
            }
        }
    }

    #[test]
    fn we_inflate_what_zlib_deflates_at_every_level() {
        for level in 0..=9 {
            for (name, input) in inputs() {
                assert_eq!(inflate_all(&zlib_deflate(&input, level)), input, "zlib level {level}, {name}");
            }
        }
    }
}
