//! An incremental UTF-8 validator (RFC 3629 §4; RFC 6455 §5.6 and §8.1).
//!
//! RFC 6455 §5.6: "Note that a particular text frame might include a partial UTF-8 sequence;
//! however, the whole message MUST contain valid UTF-8." §8.1 says what to do otherwise: "When
//! an endpoint is to interpret a byte stream as UTF-8 but finds that the byte stream is not, in
//! fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket Connection_."
//!
//! A text message arrives in pieces: several frames, and each frame in several socket reads.
//! `std::str::from_utf8` needs the whole message, which would mean buffering a message we
//! already know is bad, and answering late. This validator takes the pieces one by one, keeps
//! the unfinished code point between them, and reports the first byte that cannot be part of
//! valid UTF-8 as soon as it sees it ("fail fast", which the Autobahn cases 6.4.x check).
//!
//! # The state machine
//!
//! Unicode's Table 3-7 ("Well-Formed UTF-8 Byte Sequences") lists every valid sequence:
//!
//! ```text
//!   code points          1st byte  2nd byte  3rd byte  4th byte
//!   U+0000..U+007F       00..7F
//!   U+0080..U+07FF       C2..DF    80..BF
//!   U+0800..U+0FFF       E0        A0..BF    80..BF
//!   U+1000..U+CFFF       E1..EC    80..BF    80..BF
//!   U+D000..U+D7FF       ED        80..9F    80..BF
//!   U+E000..U+FFFF       EE..EF    80..BF    80..BF
//!   U+10000..U+3FFFF     F0        90..BF    80..BF    80..BF
//!   U+40000..U+FFFFF     F1..F3    80..BF    80..BF    80..BF
//!   U+100000..U+10FFFF   F4        80..8F    80..BF    80..BF
//! ```
//!
//! The first byte decides how many continuation bytes follow and which range the *second* byte
//! must fall in; every later byte must be in 80..BF. So the whole state is two things: how many
//! continuation bytes are still due, and the range allowed for the next one. The narrowed
//! second-byte ranges are exactly the classic traps:
//!
//! - overlong encodings: C0 and C1 never start anything; E0 needs A0..BF; F0 needs 90..BF;
//! - UTF-16 surrogates U+D800..DFFF: ED needs 80..9F;
//! - beyond U+10FFFF: F4 needs 80..8F, and F5..FF never start anything.
//!
//! A sequence cut off by the end of the message is caught by [`Utf8Validator::finish`].
//!
//! # The ASCII fast path
//!
//! Most text is ASCII, and an ASCII byte is always valid on its own. Between code points, the
//! validator reads 8 bytes as one `u64` and checks all their high bits with one AND; only a
//! word with a non-ASCII byte goes through the byte-wise state machine.
//!
//! # The vector path
//!
//! The state machine goes a byte at a time through non-ASCII text (about 1 GB/s). Where the
//! CPU has AVX2 or SSE4.1, [`Utf8Validator::feed`] first finishes a code point the previous
//! piece cut,
//! then lets [`utf8_simd::validate_prefix`] check 64 bytes at a time (the lookup algorithm of
//! Keiser and Lemire, 2021, explained in that module), and runs the state machine only on
//! what it did not vouch for: a code point cut at the end of the piece, which the state
//! machine carries to the next piece as before, or the 64-byte block where the first error
//! is, whose exact offset the state machine then finds. So the answers, the error positions
//! and when they come, are the state machine's, and the tests check them against it and
//! against `std::str::from_utf8`. [`Utf8Validator::feed_scalar`] is the state machine alone.

#![forbid(unsafe_code)]

use std::fmt;

use crate::server::sys::utf8_simd;
/// A finished text message's bytes as a `String`, proven by the same vector check.
pub use crate::server::sys::utf8_simd::into_string;

/// Bytes checked at once by the ASCII fast path: one `u64`.
const WORD_BYTES: usize = 8;

/// The high bit of each byte of a word: any of them set means a non-ASCII byte.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The range of an ordinary continuation byte (10xxxxxx).
const CONTINUATION: (u8, u8) = (0x80, 0xBF);

/// Why a byte stream is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utf8Error {
    /// The byte at `position` (counted from the start of the stream, over all pieces) cannot
    /// appear where it does.
    InvalidByte { position: u64 },
    /// The stream ended in the middle of a multi-byte sequence.
    Truncated,
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Utf8Error::InvalidByte { position } => write!(f, "invalid UTF-8 at byte {position}"),
            Utf8Error::Truncated => f.write_str("UTF-8 sequence cut off at the end"),
        }
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a UTF-8 stream fed in arbitrary pieces. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still due for the current code point; 0 between code points.
    pending: u8,
    /// The range the next continuation byte must fall in (only the second byte of a sequence
    /// can have a range narrower than 80..BF).
    next_range: (u8, u8),
    /// Bytes accepted so far, so that errors can say where in the stream they are; once
    /// `failed`, where the first invalid byte is.
    position: u64,
    /// An invalid byte was found (at `position`). It is kept: once the stream is invalid, it
    /// stays invalid. A flag rather than an `Option<Utf8Error>`: 16 bytes instead of 32 in
    /// every WebSocket message being received.
    failed: bool,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Utf8Validator::new()
    }
}

impl Utf8Validator {
    pub fn new() -> Utf8Validator {
        Utf8Validator { pending: 0, next_range: CONTINUATION, position: 0, failed: false }
    }

    /// Checks the next piece of the stream. Returns an error as soon as a byte is found that
    /// no valid continuation of the stream could contain.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        // Finish a code point the previous piece cut (at most three bytes), so that the rest
        // starts between code points, where the vector check can start.
        let (end_of_cut, rest) = bytes.split_at(usize::from(self.pending).min(bytes.len()));
        self.feed_scalar(end_of_cut)?;
        let vouched = if self.pending == 0 { utf8_simd::validate_prefix(rest) } else { 0 };
        self.position += vouched as u64;
        // What the vector check did not vouch for: a code point cut at the end, the block
        // with the first error (whose offset this finds), or everything on a CPU with neither
        // AVX2 nor SSE4.1.
        self.feed_scalar(&rest[vouched..])
    }

    /// [`Utf8Validator::feed`] without the vector path: the state machine alone, a byte (or
    /// an ASCII word) at a time. The reference the vector path is tested against, and the
    /// benchmark's baseline (`cargo bench --bench ws_codec`).
    pub fn feed_scalar(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        self.check_not_failed()?;
        // Local copies of the state, which the compiler can keep in registers.
        let mut pending = self.pending;
        let mut next_range = self.next_range;
        let mut index = 0;
        while index < bytes.len() {
            if pending == 0 {
                // Between code points: skip ASCII fast, then read a lead byte.
                if bytes[index].is_ascii() {
                    index += ascii_prefix_len(&bytes[index..]);
                }
                let Some(&lead) = bytes.get(index) else { break };
                let Some((continuations, second_range)) = sequence_start(lead) else {
                    return Err(self.fail_at(index));
                };
                pending = continuations;
                next_range = second_range;
            } else {
                // Inside a multi-byte sequence: the byte must be in the allowed range.
                let byte = bytes[index];
                if byte < next_range.0 || byte > next_range.1 {
                    return Err(self.fail_at(index));
                }
                pending -= 1;
                next_range = CONTINUATION;
            }
            index += 1;
        }
        self.pending = pending;
        self.next_range = next_range;
        self.position += bytes.len() as u64;
        Ok(())
    }

    /// Declares the end of the stream: an unfinished multi-byte sequence is an error.
    pub fn finish(&self) -> Result<(), Utf8Error> {
        self.check_not_failed()?;
        if self.pending != 0 {
            return Err(Utf8Error::Truncated);
        }
        Ok(())
    }

    fn fail_at(&mut self, index: usize) -> Utf8Error {
        self.position += index as u64;
        self.failed = true;
        Utf8Error::InvalidByte { position: self.position }
    }

    /// The error found earlier, if any.
    fn check_not_failed(&self) -> Result<(), Utf8Error> {
        match self.failed {
            true => Err(Utf8Error::InvalidByte { position: self.position }),
            false => Ok(()),
        }
    }
}

/// What a byte seen between code points starts (Table 3-7, column "1st byte"): how many
/// continuation bytes follow and the range of the second byte. `None` for a byte that can never
/// start a sequence: 80..BF (a continuation with nothing to continue), C0 and C1 (only overlong
/// encodings), F5..FF (beyond U+10FFFF, or not UTF-8 at all).
fn sequence_start(lead: u8) -> Option<(u8, (u8, u8))> {
    match lead {
        0x00..=0x7F => Some((0, CONTINUATION)),
        0xC2..=0xDF => Some((1, CONTINUATION)),
        // E0 80..9F would be an overlong encoding of U+0000..U+07FF.
        0xE0 => Some((2, (0xA0, 0xBF))),
        0xE1..=0xEC | 0xEE..=0xEF => Some((2, CONTINUATION)),
        // ED A0..BF would be a UTF-16 surrogate, U+D800..U+DFFF.
        0xED => Some((2, (0x80, 0x9F))),
        // F0 80..8F would be an overlong encoding of U+0000..U+FFFF.
        0xF0 => Some((3, (0x90, 0xBF))),
        0xF1..=0xF3 => Some((3, CONTINUATION)),
        // F4 90..BF would be beyond U+10FFFF.
        0xF4 => Some((3, (0x80, 0x8F))),
        _ => None,
    }
}

/// How many bytes at the start of `bytes` are ASCII, checked a word at a time.
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    let mut len = 0;
    for chunk in bytes.chunks_exact(WORD_BYTES) {
        let mut word = [0u8; WORD_BYTES];
        word.copy_from_slice(chunk);
        if u64::from_ne_bytes(word) & HIGH_BITS != 0 {
            break;
        }
        len += WORD_BYTES;
    }
    len + bytes[len..].iter().take_while(|byte| byte.is_ascii()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::std_utf8_verdict;

    fn validate(bytes: &[u8]) -> Result<(), Utf8Error> {
        let mut validator = Utf8Validator::new();
        validator.feed(bytes)?;
        validator.finish()
    }

    /// Feeds `bytes` in pieces cut at `cuts` and returns the result.
    fn validate_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<(), Utf8Error> {
        let mut validator = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            validator.feed(&bytes[start..cut])?;
            start = cut;
        }
        validator.finish()
    }

    /// The test sequences Autobahn|Testsuite sends in cases 6.2 to 6.23, after Markus Kuhn's
    /// UTF-8-test.txt, with the verdict each must get.
    fn kuhn_cases() -> Vec<(bool, Vec<u8>)> {
        let mut cases: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut add = |valid: bool, bytes: &[u8]| cases.push((valid, bytes.to_vec()));
        // 1: some correct UTF-8 text ("κόσμε").
        let kosme: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
        add(true, b"hello\x24world");
        add(true, b"hello\xc2\xa2world");
        add(true, b"hello\xe2\x82\xacworld");
        add(true, b"hello\xf0\xa4\xad\xa2world");
        add(true, kosme);
        // 2.1 first possible sequence of a certain length; 5 and 6 bytes are not UTF-8.
        add(true, b"\x00");
        add(true, b"\xc2\x80");
        add(true, b"\xe0\xa0\x80");
        add(true, b"\xf0\x90\x80\x80");
        add(false, b"\xf8\x88\x80\x80\x80");
        add(false, b"\xfc\x84\x80\x80\x80\x80");
        // 2.2 last possible sequence of a certain length.
        add(true, b"\x7f");
        add(true, b"\xdf\xbf");
        add(true, b"\xef\xbf\xbf");
        add(true, b"\xf4\x8f\xbf\xbf");
        add(false, b"\xf7\xbf\xbf\xbf");
        add(false, b"\xfb\xbf\xbf\xbf\xbf");
        add(false, b"\xfd\xbf\xbf\xbf\xbf\xbf");
        // 2.3 other boundary conditions.
        add(true, b"\xed\x9f\xbf");
        add(true, b"\xee\x80\x80");
        add(true, b"\xef\xbf\xbd");
        add(true, b"\xf4\x8f\xbf\xbf");
        add(false, b"\xf4\x90\x80\x80");
        // 3.1 unexpected continuation bytes.
        add(false, b"\x80");
        add(false, b"\xbf");
        add(false, b"\x80\xbf");
        add(false, b"\x80\xbf\x80\xbf\x80\xbf");
        let all_continuations: Vec<u8> = (0x80..0xbf).collect();
        add(false, &all_continuations);
        // 3.2 lonely start characters, each followed by a space.
        for (first, last) in [(0xc0u8, 0xdfu8), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd)] {
            let lonely: Vec<u8> = (first..last).flat_map(|byte| [byte, b' ']).collect();
            add(false, &lonely);
        }
        // 3.3 sequences with the last continuation byte missing, and 3.4 all of them at once.
        let truncated: [&[u8]; 10] = [
            b"\xc0",
            b"\xe0\x80",
            b"\xf0\x80\x80",
            b"\xf8\x80\x80\x80",
            b"\xfc\x80\x80\x80\x80",
            b"\xdf",
            b"\xef\xbf",
            b"\xf7\xbf\xbf",
            b"\xfb\xbf\xbf\xbf",
            b"\xfd\xbf\xbf\xbf\xbf",
        ];
        for sequence in truncated {
            add(false, sequence);
        }
        add(false, &truncated.concat());
        // 3.5 impossible bytes.
        add(false, b"\xfe");
        add(false, b"\xff");
        add(false, b"\xfe\xfe\xff\xff");
        // 4.1 overlong ASCII "/", 4.2 maximum overlong sequences, 4.3 overlong NUL.
        for overlong in [
            &b"\xc0\xaf"[..],
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xf8\x80\x80\x80\xaf",
            b"\xfc\x80\x80\x80\x80\xaf",
            b"\xc1\xbf",
            b"\xe0\x9f\xbf",
            b"\xf0\x8f\xbf\xbf",
            b"\xf8\x87\xbf\xbf\xbf",
            b"\xfc\x83\xbf\xbf\xbf\xbf",
            b"\xc0\x80",
            b"\xe0\x80\x80",
            b"\xf0\x80\x80\x80",
            b"\xf8\x80\x80\x80\x80",
            b"\xfc\x80\x80\x80\x80\x80",
        ] {
            add(false, overlong);
        }
        // 5.1 single UTF-16 surrogates, 5.2 paired ones.
        for surrogate in [
            &b"\xed\xa0\x80"[..],
            b"\xed\xad\xbf",
            b"\xed\xae\x80",
            b"\xed\xaf\xbf",
            b"\xed\xb0\x80",
            b"\xed\xbe\x80",
            b"\xed\xbf\xbf",
            b"\xed\xa0\x80\xed\xb0\x80",
            b"\xed\xaf\xbf\xed\xbf\xbf",
        ] {
            add(false, surrogate);
        }
        // 5.3 non-characters and specials are valid UTF-8.
        add(true, b"\xef\xbf\xbe");
        add(true, b"\xef\xbf\xbf");
        add(true, b"\xf0\x9f\xbf\xbe");
        add(true, b"\xf3\xbf\xbf\xbf");
        add(true, b"\xf4\x8f\xbf\xbe");
        add(true, b"\xef\xbf\xb9\xef\xbf\xba\xef\xbf\xbb\xef\xbf\xbc");
        cases
    }

    #[test]
    fn rfc3629_kuhn_test_sequences_get_the_right_verdict() {
        for (valid, bytes) in kuhn_cases() {
            assert_eq!(validate(&bytes).is_ok(), valid, "{bytes:02x?}");
            assert_eq!(std::str::from_utf8(&bytes).is_ok(), valid, "std agrees on {bytes:02x?}");
        }
    }

    #[test]
    fn rfc6455_5_6_every_split_position_gives_the_same_verdict() {
        for (valid, bytes) in kuhn_cases() {
            let whole = validate(&bytes);
            for cut in 0..=bytes.len() {
                assert_eq!(validate_in_pieces(&bytes, &[cut]), whole, "{bytes:02x?} cut at {cut}");
            }
            let every_byte: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(validate_in_pieces(&bytes, &every_byte), whole);
            assert_eq!(whole.is_ok(), valid);
        }
    }

    #[test]
    fn every_code_point_is_valid_and_every_surrogate_is_not() {
        let mut buf = [0u8; 4];
        for code_point in 0..=0x10FFFFu32 {
            match char::from_u32(code_point) {
                Some(c) => assert_eq!(validate(c.encode_utf8(&mut buf).as_bytes()), Ok(())),
                None => {
                    // U+D800..DFFF written with the generic 3-byte pattern.
                    let bytes = [
                        0xE0 | (code_point >> 12) as u8,
                        0x80 | ((code_point >> 6) & 0x3F) as u8,
                        0x80 | (code_point & 0x3F) as u8,
                    ];
                    assert_eq!(validate(&bytes), Err(Utf8Error::InvalidByte { position: 1 }));
                }
            }
        }
    }

    #[test]
    fn rfc6455_8_1_fails_fast_at_the_first_invalid_byte() {
        // Autobahn 6.4.1: "κόσμε" is fine; then F4 90 is U+110000's start, invalid at the 90,
        // before the rest of the message arrives.
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), Ok(()));
        assert_eq!(validator.feed(b"\xf4"), Ok(()), "F4 may still start U+100000..U+10FFFF");
        assert_eq!(validator.feed(b"\x90\x80\x80"), Err(Utf8Error::InvalidByte { position: 12 }));
        assert_eq!(validator.feed(b"edited"), Err(Utf8Error::InvalidByte { position: 12 }), "sticky");
        assert_eq!(validator.finish(), Err(Utf8Error::InvalidByte { position: 12 }));
    }

    #[test]
    fn rfc6455_5_6_truncated_sequence_at_message_end_is_an_error() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(b"edited\xed"), Ok(()));
        assert_eq!(validator.finish(), Err(Utf8Error::Truncated));
        assert_eq!(validator.feed(b"\x9f\xbf"), Ok(()), "completed by the next piece");
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn error_positions_count_across_pieces() {
        let mut validator = Utf8Validator::new();
        assert_eq!(validator.feed(b"\x65\x64\x69\x74"), Ok(()));
        assert_eq!(validator.feed(b"\x65\x64\xed\xa0\x80"), Err(Utf8Error::InvalidByte { position: 7 }));
    }

    #[test]
    fn ascii_fast_path_finds_non_ascii_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                let mut bytes = vec![b'a'; len];
                bytes[at] = 0xFF;
                assert_eq!(ascii_prefix_len(&bytes), at);
                assert_eq!(validate(&bytes), Err(Utf8Error::InvalidByte { position: at as u64 }));
            }
            assert_eq!(ascii_prefix_len(&vec![b'a'; len]), len);
        }
    }

    /// xorshift64*: a tiny deterministic generator, so the test is the same on every run.
    struct Prng(u64);

    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Mostly valid text with a few corrupted bytes, so both verdicts are common.
    fn random_text(rng: &mut Prng) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4];
        for _ in 0..rng.below(24) {
            let c = match rng.below(5) {
                0 => char::from_u32(rng.below(0x80) as u32),
                1 => char::from_u32(0x80 + rng.below(0x780) as u32),
                2 => char::from_u32(0x800 + rng.below(0xF800) as u32),
                3 => char::from_u32(0x10000 + rng.below(0x100000) as u32),
                _ => None,
            };
            match c {
                Some(c) => bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                None => bytes.push(rng.next() as u8),
            }
        }
        if !bytes.is_empty() && rng.below(4) == 0 {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        if rng.below(8) == 0 {
            bytes.pop();
        }
        bytes
    }

    #[test]
    fn agrees_with_std_on_random_inputs_fed_in_random_pieces() {
        let mut rng = Prng(0x9E37_79B9_7F4A_7C15);
        let mut invalid = 0;
        for _ in 0..5000 {
            let bytes = random_text(&mut rng);
            let mut cuts: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let expected = std_utf8_verdict(&bytes);
            assert_eq!(validate_in_pieces(&bytes, &cuts), expected, "{bytes:02x?} cut at {cuts:?}");
            invalid += usize::from(expected.is_err());
        }
        assert!(invalid > 1000 && invalid < 4000, "both verdicts are exercised: {invalid}");
    }

    #[test]
    fn agrees_with_std_on_long_non_ascii_text_with_a_bad_byte_fed_in_random_pieces() {
        // Several blocks of the vector path with few ASCII runs, so that its tables (not its
        // ASCII shortcut) see every block, and the bad byte anywhere among them.
        let mut rng = Prng(0x2545_F491_4F6C_DD1D);
        let mut buf = [0u8; 4];
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            while bytes.len() < 64 * 5 {
                let c = match rng.below(4) {
                    0 => char::from_u32(rng.below(0x80) as u32),
                    1 => char::from_u32(0x80 + rng.below(0x780) as u32),
                    2 => char::from_u32(0x800 + rng.below(0xF800) as u32),
                    _ => char::from_u32(0x10000 + rng.below(0x100000) as u32),
                };
                if let Some(c) = c {
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            if rng.below(4) != 0 {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            bytes.truncate(bytes.len() - rng.below(4));
            let mut cuts: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            check_pieces(&bytes, &cuts, std_utf8_verdict(&bytes));
        }
    }

    /// Bytes in all of the exhaustive tests' inputs: two 64-byte blocks of the vector path.
    const PLACE_BYTES: usize = 128;

    /// Where the exhaustive tests put a sequence of `len` bytes in a run of ASCII, one place for
    /// each part of the vector path: (the bytes before it, the input's length).
    fn places(len: usize) -> [(usize, usize); 6] {
        [
            // First in the input, after the zeros the vector check starts from.
            (0, PLACE_BYTES),
            // Across the boundary between the two 16-byte lanes of a register.
            (14, PLACE_BYTES),
            // Across the two 32-byte registers of a block.
            (30, PLACE_BYTES),
            // Across two blocks: the state carried from one to the next.
            (62, PLACE_BYTES),
            // Ending the last full block of the input: a code point cut at the end.
            (PLACE_BYTES - len, PLACE_BYTES),
            // Ending a partial block, which is padded with zeros.
            (100 - len, 100),
        ]
    }

    /// `feed` gives std's answer, error offset included, for `sequence` at each of the
    /// [`places`]. (`feed_scalar`, the state machine that was `feed` before the vector path,
    /// is checked against std by the tests above.)
    fn check_everywhere(ascii: &mut [u8; PLACE_BYTES], sequence: &[u8]) {
        for (before, len) in places(sequence.len()) {
            ascii[before..before + sequence.len()].copy_from_slice(sequence);
            let bytes = &ascii[..len];
            assert_eq!(validate(bytes), std_utf8_verdict(bytes), "{sequence:02x?} after {before} bytes");
            ascii[before..before + sequence.len()].fill(b'a');
        }
    }

    /// Which of the [`places`] is across the boundary between two blocks.
    const ACROSS_BLOCKS: usize = 3;

    /// `feed` gives std's answer for `sequence` at the one of the [`places`] numbered `place`.
    fn check_at_place(ascii: &mut [u8; PLACE_BYTES], sequence: &[u8], place: usize) {
        let (before, len) = places(sequence.len())[place];
        ascii[before..before + sequence.len()].copy_from_slice(sequence);
        let bytes = &ascii[..len];
        assert_eq!(validate(bytes), std_utf8_verdict(bytes), "{sequence:02x?} after {before} bytes");
        ascii[before..before + sequence.len()].fill(b'a');
    }

    /// [`check_at_place`] at the place `turn` picks (the caller's count of sequences, so that
    /// neighbours go to different places).
    fn check_at_one_place(ascii: &mut [u8; PLACE_BYTES], sequence: &[u8], turn: usize) {
        check_at_place(ascii, sequence, turn % places(sequence.len()).len());
    }

    /// Feeds `bytes` in pieces cut at `cuts` and checks the answer is `expected` and fails
    /// fast: an invalid byte is reported by the `feed` of the piece that holds it.
    fn check_pieces(bytes: &[u8], cuts: &[usize], expected: Result<(), Utf8Error>) {
        let mut validator = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            if let Err(error) = validator.feed(&bytes[start..cut]) {
                assert_eq!(Err(error), expected, "{bytes:02x?} cut at {cuts:?}");
                let Utf8Error::InvalidByte { position } = error else { panic!("feed truncated") };
                assert!((start as u64..cut as u64).contains(&position), "late: {bytes:02x?} {cuts:?}");
                return;
            }
            start = cut;
        }
        assert_eq!(validator.finish(), expected, "{bytes:02x?} cut at {cuts:?}");
    }

    /// `sequence`, placed across the block boundary of [`places`], cut in two pieces at every
    /// position from two bytes before it to two after, in three pieces at one pair of those
    /// positions (chosen by `turn`, so that the caller's sequences go through every pair), and
    /// in two at one position anywhere (chosen by `turn` too, which moves where the vector
    /// path's blocks fall in the second piece), agrees with std and fails fast.
    fn check_split_everywhere(ascii: &mut [u8; PLACE_BYTES], sequence: &[u8], turn: usize) {
        let (before, _) = places(sequence.len())[ACROSS_BLOCKS];
        ascii[before..before + sequence.len()].copy_from_slice(sequence);
        let expected = std_utf8_verdict(ascii);
        let near: Vec<usize> = (before - 2..=before + sequence.len() + 2).collect();
        for &cut in &near {
            check_pieces(ascii, &[cut], expected);
        }
        let pairs: Vec<[usize; 2]> = near
            .iter()
            .flat_map(|&first| near.iter().filter(move |&&second| second > first).map(move |&second| [first, second]))
            .collect();
        check_pieces(ascii, &pairs[turn % pairs.len()], expected);
        check_pieces(ascii, &[turn % (PLACE_BYTES + 1)], expected);
        ascii[before..before + sequence.len()].fill(b'a');
    }

    /// One byte from each end of each range in Unicode Table 3-7 (and ASCII's), the bytes where
    /// a validator that is wrong about a range shows it: the sample for 4-byte sequences.
    const RANGE_ENDS: [u8; 25] = [
        0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
        0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
    ];

    #[test]
    fn rfc3629_4_every_one_and_two_byte_sequence_agrees_with_std_everywhere() {
        let mut ascii = [b'a'; PLACE_BYTES];
        for first in 0..=255u8 {
            check_everywhere(&mut ascii, &[first]);
            for second in 0..=255u8 {
                check_everywhere(&mut ascii, &[first, second]);
            }
        }
    }

    // Every 3- and 4-byte sequence takes minutes even in release, too long for `cargo test`:
    // `every_sequence_of_up_to_four_bytes_agrees_with_std`, below, does that. These
    // two take every lead byte first (C0..FF), with the range ends after it, each at one place.

    #[test]
    fn rfc3629_4_three_byte_sequences_made_of_range_ends_agree_with_std() {
        let mut ascii = [b'a'; PLACE_BYTES];
        let mut turn = 0;
        for first in 0xC0..=0xFFu8 {
            for second in 0..=255u8 {
                for third in RANGE_ENDS {
                    check_at_one_place(&mut ascii, &[first, second, third], turn);
                    turn += 1;
                }
            }
        }
    }

    #[test]
    fn rfc3629_4_four_byte_sequences_made_of_range_ends_agree_with_std() {
        let mut ascii = [b'a'; PLACE_BYTES];
        let mut turn = 0;
        for first in 0xC0..=0xFFu8 {
            for second in RANGE_ENDS {
                for third in RANGE_ENDS {
                    for fourth in RANGE_ENDS {
                        check_at_one_place(&mut ascii, &[first, second, third, fourth], turn);
                        turn += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn rfc6455_5_6_every_one_and_two_byte_sequence_split_anywhere_agrees_with_std() {
        let mut ascii = [b'a'; PLACE_BYTES];
        for first in 0..=255u8 {
            check_split_everywhere(&mut ascii, &[first], usize::from(first));
            for second in 0..=255u8 {
                check_split_everywhere(&mut ascii, &[first, second], usize::from(first) * 256 + usize::from(second));
            }
        }
    }

    #[test]
    fn rfc6455_5_6_longer_sequences_split_anywhere_agree_with_std() {
        let mut ascii = [b'a'; PLACE_BYTES];
        let mut turn = 0;
        for first in RANGE_ENDS {
            for second in RANGE_ENDS {
                for third in RANGE_ENDS {
                    for sequence in
                        [&[first, second, third][..], &[0xF0, first, second, third], &[0xF4, first, second, third]]
                    {
                        check_split_everywhere(&mut ascii, sequence, turn);
                        turn += 1;
                    }
                }
            }
        }
    }

    /// Every sequence of one to four bytes against std, error offsets included: those of one
    /// to three bytes at each of the six [`places`], the 2^32 four-byte ones at two, across
    /// two blocks (the carried state) and one of the other five in turn. All six places for
    /// every four-byte value would take an hour of CPU; this takes minutes, too long for
    /// `cargo test` all the same: `cargo test --release --lib every_sequence -- --ignored
    /// --nocapture` (the README says how long it took).
    #[test]
    #[ignore = "minutes even in release: run with --release -- --ignored"]
    fn every_sequence_of_up_to_four_bytes_agrees_with_std() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|scope| {
            for thread in 0..threads {
                scope.spawn(move || {
                    let mut ascii = [b'a'; PLACE_BYTES];
                    for first in (0..=255u8).filter(|first| usize::from(*first) % threads == thread) {
                        check_everywhere(&mut ascii, &[first]);
                        for rest in 0..1u32 << 24 {
                            let [_, second, third, fourth] = rest.to_be_bytes();
                            if third == 0 && fourth == 0 {
                                check_everywhere(&mut ascii, &[first, second]);
                            }
                            if fourth == 0 {
                                check_everywhere(&mut ascii, &[first, second, third]);
                            }
                            let sequence = [first, second, third, fourth];
                            check_at_place(&mut ascii, &sequence, ACROSS_BLOCKS);
                            check_at_place(&mut ascii, &sequence, [0, 1, 2, 4, 5][rest as usize % 5]);
                        }
                        eprintln!("every_sequence: first byte {first:02x} done");
                    }
                });
            }
        });
    }
}
