//! UTF-8 validation 64 bytes at a time with the CPU's vector instructions (AVX2, or SSE4.1
//! where there is no AVX2): the *lookup* algorithm of John Keiser and Daniel Lemire,
//! "Validating UTF-8 In Less Than One Instruction Per Byte", Software: Practice and Experience
//! 51(5), 2021 (arXiv:2010.03090), the one simdjson and simdutf8 use.
//!
//! [`validate_prefix`] is the API: it vouches for a prefix of its input, and the caller,
//! [`crate::ws::utf8::Utf8Validator`], checks whatever follows (an unfinished code point at
//! the end, or the block where the first error is) with its byte-at-a-time state machine,
//! which is also what finds the error's exact offset. That keeps the vector code free of the
//! two things that make a validator fiddly, resuming across pieces and pinpointing an error,
//! and it keeps the proof simple: this side must never vouch for a byte std would reject, and
//! vouching for less than it could only costs time. [`into_string`] turns a finished text
//! message into a `String` on that same check, without std checking it again byte by byte.
//!
//! # Theory of operation
//!
//! Unicode's Table 3-7 (quoted in [`crate::ws::utf8`]) can be checked by looking at every byte
//! together with the three before it. Every error shows up in some *pair* of adjacent bytes,
//! except one: a continuation byte that is too many (its lead byte is two or three bytes back).
//! So, for 32 bytes at once:
//!
//! 1. **Pairs, by three table lookups.** Each kind of error in a pair (a lead byte not followed
//!    by a continuation, a continuation after ASCII, an overlong or surrogate or too-large
//!    second byte, ...) gets one bit. A byte pair `(previous, current)` is an error of a kind
//!    exactly when that bit is set in three 16-entry tables: one indexed by the previous
//!    byte's high nibble, one by its low nibble, one by the current byte's high nibble.
//!    `vpshufb` does a 16-entry lookup for 32 bytes in one instruction, so three lookups and
//!    two ANDs classify 32 pairs. The tables are `PREVIOUS_HIGH`, `PREVIOUS_LOW` and
//!    `CURRENT_HIGH`, each entry written as the kinds of error it is compatible with.
//! 2. **Continuations after continuations.** The pair tables flag every "continuation,
//!    continuation" pair (`TWO_CONTINUATIONS`, bit 7). That pair is right exactly when the
//!    byte two back is a 3- or 4-byte lead (then the current byte is its third byte) or the
//!    byte three back is a 4-byte lead (its fourth). Saturating subtraction turns "at least
//!    E0" and "at least F0" into the high bit; XOR with the pair result cancels the flag where
//!    it was expected and raises one where a continuation was due and is missing.
//! 3. **Blocks and the carry.** The bytes before a vector's first bytes are the previous
//!    vector's last three: they are shifted in (`vpalignr`, after `vperm2i128`, because AVX2
//!    shifts only within 16-byte lanes), so a code point split between two blocks is checked
//!    like any other. The first block of an input is preceded by zeros (ASCII), which is right
//!    because the caller only starts us between code points.
//! 4. **ASCII blocks.** Most text is mostly ASCII, and a block of 64 ASCII bytes (one OR and
//!    one `vpmovmskb` say so) is valid on its own. It skips the tables; the one thing it must
//!    still check is that the previous block did not end in the middle of a code point, which
//!    each non-ASCII block records in `cut` for the next one.
//! 5. **The end.** The input's last partial block is copied into a zeroed 64-byte block: the
//!    zeros are ASCII, so they change nothing after a finished code point and are an error
//!    after an unfinished one. But an unfinished code point at the very end of the input is
//!    not an error (the next WebSocket frame may finish it), so when a block shows an error
//!    this module vouches only up to the block's start, less a code point the block before
//!    left unfinished, and the caller's state machine tells a real error from a cut.
//!
//! Errors are checked once per 64-byte block (one `vptest`): the caller needs to know the
//! first bad block, not just that one exists somewhere in 64 KiB, so that it fails as soon as
//! the bad byte is seen (RFC 6455 §8.1) at the cost of rescanning at most 67 bytes.
//!
//! # The 16-byte variant (SSE4.1)
//!
//! A CPU without AVX2 still has 16-byte vectors: SSSE3's `pshufb` (the lookup) and `palignr`
//! (the shift), SSE4.1's `ptest` (the error check), SSE2 for the rest. The SSE4.1 path runs the
//! same steps on the same 64-byte block, held in four registers instead of two, with the same
//! tables and constants, the same `cut` for step 4 and the same end handling (step 5): the
//! block loop, `without_cut_code_point` and everything but the registers are one code for
//! both paths, so the two vouch for exactly the same prefix of any input (a test holds them to
//! it). One thing is simpler: a 16-byte register is a single lane, so the three bytes carried
//! from the previous vector (step 3) are one `palignr` of [previous, current] by 13, 14 and 15
//! bytes, where AVX2, whose `vpalignr` shifts each 16-byte lane on its own, first needs a
//! `vperm2i128` to put the previous vector's high lane beside the current one's low lane. Each
//! block takes twice the instructions, so on non-ASCII text it runs at about half the AVX2
//! path's speed (`README.md` has the numbers).
//!
//! [`validate_prefix`] takes the widest path the CPU has. A CPU with AVX2 has SSE4.1 too, so
//! the tests run every path the CPU has on the same inputs, and
//! [`sse41_validate_prefix_for_fuzzing`] lets the `utf8` fuzz target and the benchmark reach
//! the SSE4.1 path on such a CPU.
//!
//! # What is unsafe here, and why
//!
//! - **Loading a block** into two vector registers (`load`): `_mm256_loadu_si256` takes a raw
//!   pointer. It reads from a `&[u8; 64]`, so the 64 bytes are there and readable; `loadu`
//!   needs no alignment.
//!   The SSE4.1 path loads its four 16-byte quarters with `_mm_loadu_si128` (`sse41_load`),
//!   on the same grounds.
//! - **Calling the vector code**: a `#[target_feature(enable = "avx2")]` function runs AVX2
//!   instructions, which a CPU without them would fault on (or, worse, decode as something
//!   else), and the compiler cannot know what CPU it will run on. `validate_prefix_on` asks
//!   with `is_x86_feature_detected!("avx2")` first, and makes that one call in `unsafe`; the
//!   same for the SSE4.1 path's `#[target_feature(enable = "ssse3,sse4.1")]` function, after
//!   asking for both `ssse3` and `sse4.1` (every CPU with SSE4.1 has SSSE3, but the code uses
//!   both, so it asks for both).
//! - **A `String` from proven bytes** ([`into_string`]): `String::from_utf8_unchecked`, on
//!   bytes the vector check and std have checked between them.
//!
//! Everything else, the arithmetic intrinsics inside the vector functions and those functions
//! calling each other (and the closure each path hands the shared block loop, which inherits
//! its function's target features), is safe Rust: since Rust 1.86/1.87 a `#[target_feature]`
//! function may be safe, and the intrinsics that touch no memory are safe to call from code
//! compiled with their feature.
//!
//! Off x86_64, or on an older x86_64 without SSE4.1 (AMD's K10 and Bobcat, Intel's 65 nm Core
//! 2), [`validate_prefix`] vouches for nothing (returns 0) and the state machine does all the
//! work, at std's speed.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128i, __m256i, _mm256_alignr_epi8, _mm256_and_si256, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
    _mm256_permute2x128_si256, _mm256_set1_epi8, _mm256_setr_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8,
    _mm256_srli_epi16, _mm256_subs_epu8, _mm256_testz_si256, _mm256_xor_si256, _mm_alignr_epi8, _mm_and_si128,
    _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_setr_epi8, _mm_setzero_si128,
    _mm_shuffle_epi8, _mm_srli_epi16, _mm_subs_epu8, _mm_testz_si128, _mm_xor_si128,
};

/// Bytes per step: two 32-byte AVX2 registers, or four 16-byte SSE ones. Checking the error
/// once per 64 bytes rather than per vector halves (quarters) the branches; 64 is also the most
/// [`crate::ws::utf8::Utf8Validator`] rescans (plus a cut code point of at most 3 bytes) to
/// find an error's offset.
const BLOCK: usize = 64;

/// The vector paths, widest first: [`validate_prefix`] takes the first one the CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// 32-byte vectors (`__m256i`), two per block.
    Avx2,
    /// 16-byte vectors (`__m128i`), four per block: SSSE3's `pshufb` and `palignr`, SSE4.1's
    /// `ptest`. For x86_64 CPUs without AVX2: Intel's before Haswell and many later Pentium,
    /// Celeron and Atom parts, AMD's before Excavator.
    Sse41,
}

/// Every path, in the order [`validate_prefix`] tries them.
const PATHS: [Path; 2] = [Path::Avx2, Path::Sse41];

/// Returns `n` such that `bytes[..n]` is valid UTF-8 that ends between two code points, as
/// far as the vector check got. `bytes` should start between code points (a continuation
/// byte first is simply not vouched for). `n` is `bytes.len()` when all of `bytes` is valid and
/// complete; less when the input ends in an unfinished code point (`n` is at most where it
/// starts), when a block has an error (`n` is before the first bad byte, by less than 67
/// bytes), or when no vector path exists on this CPU (`n` is 0, unless `bytes` is short and
/// ASCII: `vouch`). Whatever `n` is, the caller checks `bytes[n..]` itself.
pub fn validate_prefix(bytes: &[u8]) -> usize {
    vouch(paths(), bytes)
}

/// [`validate_prefix`] on the first of `paths` that this CPU has; 0 if it has none of them.
///
/// Shorter than a block and ASCII, as most chat messages are, `bytes` is vouched for by std's
/// word-at-a-time ASCII test: a vector path would first copy it into a zeroed block, and the
/// two (validating while it arrives, then [`into_string`]) were 3.4% of the server's CPU on a
/// 32-byte echo at 8 in flight (`perf`). ASCII is valid UTF-8 and ends between code points.
fn vouch(paths: &[Path], bytes: &[u8]) -> usize {
    if bytes.len() < BLOCK && bytes.is_ascii() {
        return bytes.len();
    }
    paths.iter().find_map(|&path| validate_prefix_on(path, bytes)).unwrap_or(0)
}

/// The paths [`validate_prefix`] may take. In the crate's own test build, the environment
/// variable `REALTIME_UTF8_SIMD=sse4.1` narrows them to the SSE4.1 path, so that the tests
/// of [`crate::ws::utf8`] (the exhaustive one included) can be run over it on a CPU that has
/// AVX2 too: `REALTIME_UTF8_SIMD=sse4.1 cargo test --lib ws::utf8`.
fn paths() -> &'static [Path] {
    #[cfg(test)]
    if std::env::var_os("REALTIME_UTF8_SIMD").is_some_and(|path| path == "sse4.1") {
        return &[Path::Sse41];
    }
    &PATHS
}

/// [`validate_prefix`] on `path`, or `None` when the CPU does not have it.
#[cfg(target_arch = "x86_64")]
fn validate_prefix_on(path: Path, bytes: &[u8]) -> Option<usize> {
    match path {
        Path::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: `avx2_validate_prefix` runs AVX2 instructions, and the CPU has them: the
            // line above asked it (std caches the answer, so the check is one load).
            Some(unsafe { avx2_validate_prefix(bytes) })
        }
        Path::Sse41
            if std::arch::is_x86_feature_detected!("ssse3") && std::arch::is_x86_feature_detected!("sse4.1") =>
        {
            // SAFETY: `sse41_validate_prefix` runs SSSE3 and SSE4.1 instructions, and the CPU
            // has both: the line above asked it.
            Some(unsafe { sse41_validate_prefix(bytes) })
        }
        _ => None,
    }
}

/// See the x86_64 version: off x86_64 there is no vector path.
#[cfg(not(target_arch = "x86_64"))]
fn validate_prefix_on(_path: Path, _bytes: &[u8]) -> Option<usize> {
    None
}

/// For the `utf8` fuzz target ([`crate::fuzz::utf8`]) and the `ws_codec` benchmark only: what
/// the SSE4.1 path vouches for in `bytes` (see [`validate_prefix`]), even on a CPU with AVX2,
/// where [`validate_prefix`] never takes it; `None` when the CPU has no SSE4.1. It exists so
/// that the path that serves CPUs without AVX2 is fuzzed and measured on one that has it.
pub fn sse41_validate_prefix_for_fuzzing(bytes: &[u8]) -> Option<usize> {
    validate_prefix_on(Path::Sse41, bytes)
}

/// `bytes` as a `String` when it is valid UTF-8, as `String::from_utf8` would give it, but
/// with the vector check above doing most of the checking: std's own check runs a word at a
/// time, which was 3.4% of the server's CPU on a 1 KiB text echo (`perf`), beside 1.3% for
/// the vector check that had already seen every byte as it arrived. `Err` gives the bytes back.
pub fn into_string(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    into_string_on(paths(), bytes)
}

/// [`into_string`] with the vector check on the first of `paths` the CPU has.
fn into_string_on(paths: &[Path], bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    let vouched = vouch(paths, &bytes);
    if std::str::from_utf8(&bytes[vouched..]).is_err() {
        return Err(bytes);
    }
    // SAFETY: `bytes[..vouched]` is valid UTF-8 that ends between two code points
    // (`validate_prefix`'s contract, which the exhaustive test and the `utf8` fuzz target hold
    // it to) and std has just checked `bytes[vouched..]`; two valid UTF-8 strings one after
    // the other are one.
    Ok(unsafe { String::from_utf8_unchecked(bytes) })
}

/// `bytes` without the code point its end cuts off, for `bytes` that the vector check found
/// valid up to its end. Only the last three bytes can belong to an unfinished code point; the
/// nearest lead byte among them says how long its code point is (110xxxxx: 2 bytes, 1110xxxx:
/// 3, 11110xxx: 4), and whether it fits.
#[cfg(any(target_arch = "x86_64", test))]
fn without_cut_code_point(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        match bytes[len - back] {
            0x00..=0x7F => return len,
            0x80..=0xBF => continue,
            lead => {
                let needed = match lead {
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                };
                return if back < needed { len - back } else { len };
            }
        }
    }
    len
}

// ---------------------------------------------------------------------------------------------
// The error kinds a byte pair can show, one bit each (Keiser and Lemire's Table 7). A pair is an
// error of a kind when the kind's bit is set in all three table entries that the pair selects.
// ---------------------------------------------------------------------------------------------

/// A lead byte followed by ASCII or by another lead: the code point has too few bytes.
const TOO_SHORT: u8 = 1 << 0;
/// ASCII followed by a continuation byte: there is nothing for it to continue.
const TOO_LONG: u8 = 1 << 1;
/// E0 followed by 80..9F: U+0000..U+07FF written with three bytes.
const OVERLONG_3: u8 = 1 << 2;
/// F4 followed by 90..BF, or F5..FF followed by 90..BF: beyond U+10FFFF.
const TOO_LARGE: u8 = 1 << 3;
/// ED followed by A0..BF: a UTF-16 surrogate, U+D800..U+DFFF.
const SURROGATE: u8 = 1 << 4;
/// C0 or C1 followed by a continuation: U+0000..U+007F written with two bytes.
const OVERLONG_2: u8 = 1 << 5;
/// F5..FF followed by 80..8F: beyond U+10FFFF (the 9x..Bx half is [`TOO_LARGE`]).
const TOO_LARGE_1000: u8 = 1 << 6;
/// F0 followed by 80..8F: U+0000..U+FFFF written with four bytes. Shares its bit with
/// [`TOO_LARGE_1000`]: both are "F_ lead, 8_ second byte", told apart by the low nibble table.
const OVERLONG_4: u8 = 1 << 6;
/// A continuation followed by a continuation: an error unless a 3- or 4-byte lead came two or
/// three bytes before (step 2 of the module docs). Bit 7, the bit that step checks.
const TWO_CONTINUATIONS: u8 = 1 << 7;

/// The kinds that do not depend on the previous byte's low nibble.
const ANY_LOW_NIBBLE: u8 = TOO_SHORT | TOO_LONG | TWO_CONTINUATIONS;

/// Indexed by the previous byte's high nibble: which kinds of error it can start.
const PREVIOUS_HIGH: [u8; 16] = [
    // 0_______: ASCII
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    // 10______: a continuation
    TWO_CONTINUATIONS,
    TWO_CONTINUATIONS,
    TWO_CONTINUATIONS,
    TWO_CONTINUATIONS,
    // 1100____: C0..CF, among them the overlong C0 and C1
    TOO_SHORT | OVERLONG_2,
    // 1101____: D0..DF
    TOO_SHORT,
    // 1110____: E0..EF, among them E0 (overlong) and ED (surrogates)
    TOO_SHORT | OVERLONG_3 | SURROGATE,
    // 1111____: F0..FF, among them F0 (overlong), F4 (the top) and F5..FF (never valid)
    TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4,
];

/// Indexed by the previous byte's low nibble: which kinds of error it can start.
const PREVIOUS_LOW: [u8; 16] = [
    // ____0000: C0, E0, F0
    ANY_LOW_NIBBLE | OVERLONG_2 | OVERLONG_3 | OVERLONG_4,
    // ____0001: C1
    ANY_LOW_NIBBLE | OVERLONG_2,
    // ____0010, ____0011
    ANY_LOW_NIBBLE,
    ANY_LOW_NIBBLE,
    // ____0100: F4, too large from 90 on
    ANY_LOW_NIBBLE | TOO_LARGE,
    // ____0101 and up: F5..FF, too large from 80 on
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    // ____1101: ED, and FD
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000 | SURROGATE,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
    ANY_LOW_NIBBLE | TOO_LARGE | TOO_LARGE_1000,
];

/// Indexed by the current byte's high nibble: which kinds of error it can complete.
const CURRENT_HIGH: [u8; 16] = [
    // 0_______: ASCII, too early after a lead
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    // 1000____: 80..8F
    TOO_LONG | TWO_CONTINUATIONS | OVERLONG_2 | OVERLONG_3 | OVERLONG_4 | TOO_LARGE_1000,
    // 1001____: 90..9F
    TOO_LONG | TWO_CONTINUATIONS | OVERLONG_2 | OVERLONG_3 | TOO_LARGE,
    // 101_____: A0..BF
    TOO_LONG | TWO_CONTINUATIONS | OVERLONG_2 | SURROGATE | TOO_LARGE,
    TOO_LONG | TWO_CONTINUATIONS | OVERLONG_2 | SURROGATE | TOO_LARGE,
    // 11______: a lead, too early after a lead
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
];

/// The three table entries the pair (`previous`, `current`) selects, ANDed: what step 1
/// computes for 32 bytes at once, one pair at a time, so that the tests can hold every pair
/// against Table 3-7.
#[cfg(test)]
fn pair_flags(previous: u8, current: u8) -> u8 {
    PREVIOUS_HIGH[usize::from(previous >> 4)]
        & PREVIOUS_LOW[usize::from(previous & 0x0F)]
        & CURRENT_HIGH[usize::from(current >> 4)]
}

/// The block loop and the end handling of every path (steps 3 to 5): `is_valid` checks the
/// next 64 bytes, carrying what it needs from one block to the next, on whichever vectors.
/// Always inlined, so that each path's checker is inlined into it, in the path's own
/// `#[target_feature]` function.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn validate_blocks(bytes: &[u8], mut is_valid: impl FnMut(&[u8; BLOCK]) -> bool) -> usize {
    let (blocks, tail) = bytes.as_chunks::<BLOCK>();
    for (index, block) in blocks.iter().enumerate() {
        if !is_valid(block) {
            return without_cut_code_point(&bytes[..index * BLOCK]);
        }
    }
    if tail.is_empty() {
        return without_cut_code_point(bytes);
    }
    // Step 5: zeros after the tail are ASCII, an error only after an unfinished code point.
    let mut last = [0u8; BLOCK];
    last[..tail.len()].copy_from_slice(tail);
    if is_valid(&last) {
        return bytes.len();
    }
    without_cut_code_point(&bytes[..blocks.len() * BLOCK])
}

/// The AVX2 path of [`validate_prefix`]. Only for a CPU with AVX2 (the caller checks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2_validate_prefix(bytes: &[u8]) -> usize {
    let mut checker = Checker::new();
    // The closure inherits this function's target features, so it is AVX2 code too.
    validate_blocks(bytes, |block| checker.is_valid(block))
}

/// The SSE4.1 path of [`validate_prefix`]. Only for a CPU with SSSE3 and SSE4.1 (the caller
/// checks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3,sse4.1")]
fn sse41_validate_prefix(bytes: &[u8]) -> usize {
    let mut checker = Sse41Checker::new();
    validate_blocks(bytes, |block| checker.is_valid(block))
}

// ---------------------------------------------------------------------------------------------
// The constants of steps 1 to 4 that are not tables, shared by both vector widths.
// ---------------------------------------------------------------------------------------------

/// Step 1's nibble mask: x86 has no 8-bit shift, and a 16-bit shift by 4 brings in the
/// neighbouring byte's bits, which this mask removes.
const LOW_NIBBLE: u8 = 0x0F;

/// Step 2: unsigned saturating subtraction of these leaves the high bit set exactly in the
/// bytes E0 and up (a 3- or 4-byte lead, whose third byte is two on) and F0 and up (a 4-byte
/// lead, whose fourth byte is three on).
const THREE_BYTE_LEAD_BIAS: u8 = 0xE0 - 0x80;
const FOUR_BYTE_LEAD_BIAS: u8 = 0xF0 - 0x80;

/// The bit step 2 works in: [`TWO_CONTINUATIONS`], the high bit of a byte.
const HIGH_BIT: u8 = 0x80;

/// Step 4: the largest byte that may stand 3, 2 and 1 bytes before a block's end without
/// starting a code point longer than what is left of the block: below F0 (no 4-byte lead),
/// below E0, below C0. A vector's last three bytes get these, every other byte 255, and a
/// saturating subtraction is non-zero exactly where a code point is cut.
const CUT_LIMITS: [u8; 3] = [0xEF, 0xDF, 0xBF];

// ---------------------------------------------------------------------------------------------
// AVX2: a block is two 32-byte vectors.
// ---------------------------------------------------------------------------------------------

/// What one block's check leaves for the next, on the AVX2 path.
#[cfg(target_arch = "x86_64")]
struct Checker {
    /// The last 32 bytes checked: the bytes before the next block's first ones (step 3).
    previous: __m256i,
    /// Non-zero when `previous` ends in an unfinished code point (step 4).
    cut: __m256i,
    /// The 16-entry tables of step 1, each repeated in both 16-byte lanes (`vpshufb` looks up
    /// within a lane).
    previous_high: __m256i,
    previous_low: __m256i,
    current_high: __m256i,
    /// 255 in every byte but the last three, which hold [`CUT_LIMITS`].
    cut_limits: __m256i,
}

#[cfg(target_arch = "x86_64")]
impl Checker {
    #[target_feature(enable = "avx2")]
    fn new() -> Checker {
        let [limit3, limit2, limit1] = CUT_LIMITS.map(|limit| limit as i8);
        Checker {
            // Zeros: the input starts between code points, as if after ASCII.
            previous: _mm256_setzero_si256(),
            cut: _mm256_setzero_si256(),
            previous_high: table(PREVIOUS_HIGH),
            previous_low: table(PREVIOUS_LOW),
            current_high: table(CURRENT_HIGH),
            #[rustfmt::skip]
            cut_limits: _mm256_setr_epi8(
                -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, limit3, limit2, limit1,
            ),
        }
    }

    /// Checks the next 64 bytes: false if they show an error, counting an unfinished code
    /// point at the end of the previous block that these bytes do not finish.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn is_valid(&mut self, block: &[u8; BLOCK]) -> bool {
        let (low, high) = load(block);
        let error = if _mm256_movemask_epi8(_mm256_or_si256(low, high)) == 0 {
            // Step 4: all ASCII, so valid, unless the previous block cut a code point; and
            // nothing is cut at its end.
            std::mem::replace(&mut self.cut, _mm256_setzero_si256())
        } else {
            // For step 4 in the next block: only the last 3 bytes can start an unfinished code point.
            self.cut = _mm256_subs_epu8(high, self.cut_limits);
            _mm256_or_si256(self.errors(low, self.previous), self.errors(high, low))
        };
        self.previous = high;
        _mm256_testz_si256(error, error) == 1
    }

    /// Steps 1 and 2 for 32 bytes: a non-zero byte where `input` has an error, given the 32
    /// bytes before it.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn errors(&self, input: __m256i, previous: __m256i) -> __m256i {
        // The bytes 1, 2 and 3 before each byte of `input` (step 3). `vpalignr` shifts each
        // 16-byte lane separately, so it is fed [previous's high lane, input's low lane]
        // beside `input` to carry bytes across both lane boundaries.
        let straddle = _mm256_permute2x128_si256::<0x21>(previous, input);
        let back1 = _mm256_alignr_epi8::<15>(input, straddle);
        let back2 = _mm256_alignr_epi8::<14>(input, straddle);
        let back3 = _mm256_alignr_epi8::<13>(input, straddle);
        // Step 1: the three lookups, ANDed.
        let nibble = _mm256_set1_epi8(LOW_NIBBLE as i8);
        let previous_high = _mm256_and_si256(_mm256_srli_epi16::<4>(back1), nibble);
        let previous_low = _mm256_and_si256(back1, nibble);
        let current_high = _mm256_and_si256(_mm256_srli_epi16::<4>(input), nibble);
        let pairs = _mm256_and_si256(
            _mm256_and_si256(
                _mm256_shuffle_epi8(self.previous_high, previous_high),
                _mm256_shuffle_epi8(self.previous_low, previous_low),
            ),
            _mm256_shuffle_epi8(self.current_high, current_high),
        );
        // Step 2: where the byte must be a continuation because of a lead two or three back.
        let third_byte = _mm256_subs_epu8(back2, _mm256_set1_epi8(THREE_BYTE_LEAD_BIAS as i8));
        let fourth_byte = _mm256_subs_epu8(back3, _mm256_set1_epi8(FOUR_BYTE_LEAD_BIAS as i8));
        let must_continue =
            _mm256_and_si256(_mm256_or_si256(third_byte, fourth_byte), _mm256_set1_epi8(HIGH_BIT as i8));
        // Where a continuation was due, the TWO_CONTINUATIONS flag is expected and cancels;
        // where it was not, the flag stays, and where one was due but missing, a bit appears.
        _mm256_xor_si256(must_continue, pairs)
    }
}

/// A 16-entry table in both lanes of a register, for `vpshufb`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn table(entries: [u8; 16]) -> __m256i {
    let e = entries.map(|entry| entry as i8);
    #[rustfmt::skip]
    let both_lanes = _mm256_setr_epi8(
        e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
        e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15],
        e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
        e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15],
    );
    both_lanes
}

/// The block's two halves in two registers.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn load(block: &[u8; BLOCK]) -> (__m256i, __m256i) {
    let start = block.as_ptr().cast::<__m256i>();
    // SAFETY: `block` is 64 readable bytes; the loads read bytes 0..32 and 32..64 of it
    // (`start.add(1)` is 32 bytes on, inside the same array). `loadu` takes any alignment.
    unsafe { (_mm256_loadu_si256(start), _mm256_loadu_si256(start.add(1))) }
}

// ---------------------------------------------------------------------------------------------
// SSE4.1: a block is four 16-byte vectors. The same steps as the AVX2 code above, one vector
// width down; what differs is said where it differs.
// ---------------------------------------------------------------------------------------------

/// What one block's check leaves for the next, on the SSE4.1 path.
#[cfg(target_arch = "x86_64")]
struct Sse41Checker {
    /// The last 16 bytes checked: the bytes before the next block's first ones (step 3).
    previous: __m128i,
    /// Non-zero when `previous` ends in an unfinished code point (step 4).
    cut: __m128i,
    /// The 16-entry tables of step 1, one register each (`pshufb` looks up in all 16 bytes).
    previous_high: __m128i,
    previous_low: __m128i,
    current_high: __m128i,
    /// 255 in every byte but the last three, which hold [`CUT_LIMITS`].
    cut_limits: __m128i,
}

#[cfg(target_arch = "x86_64")]
impl Sse41Checker {
    #[target_feature(enable = "ssse3,sse4.1")]
    fn new() -> Sse41Checker {
        let [limit3, limit2, limit1] = CUT_LIMITS.map(|limit| limit as i8);
        Sse41Checker {
            // Zeros: the input starts between code points, as if after ASCII.
            previous: _mm_setzero_si128(),
            cut: _mm_setzero_si128(),
            previous_high: sse41_table(PREVIOUS_HIGH),
            previous_low: sse41_table(PREVIOUS_LOW),
            current_high: sse41_table(CURRENT_HIGH),
            #[rustfmt::skip]
            cut_limits: _mm_setr_epi8(
                -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, limit3, limit2, limit1,
            ),
        }
    }

    /// Checks the next 64 bytes: false if they show an error, counting an unfinished code
    /// point at the end of the previous block that these bytes do not finish.
    #[inline]
    #[target_feature(enable = "ssse3,sse4.1")]
    fn is_valid(&mut self, block: &[u8; BLOCK]) -> bool {
        let [first, second, third, fourth] = sse41_load(block);
        let any = _mm_or_si128(_mm_or_si128(first, second), _mm_or_si128(third, fourth));
        let error = if _mm_movemask_epi8(any) == 0 {
            // Step 4: all ASCII, so valid, unless the previous block cut a code point; and
            // nothing is cut at its end.
            std::mem::replace(&mut self.cut, _mm_setzero_si128())
        } else {
            // For step 4 in the next block: only the last 3 bytes can start an unfinished code point.
            self.cut = _mm_subs_epu8(fourth, self.cut_limits);
            _mm_or_si128(
                _mm_or_si128(self.errors(first, self.previous), self.errors(second, first)),
                _mm_or_si128(self.errors(third, second), self.errors(fourth, third)),
            )
        };
        self.previous = fourth;
        _mm_testz_si128(error, error) == 1
    }

    /// Steps 1 and 2 for 16 bytes: a non-zero byte where `input` has an error, given the 16
    /// bytes before it.
    #[inline]
    #[target_feature(enable = "ssse3,sse4.1")]
    fn errors(&self, input: __m128i, previous: __m128i) -> __m128i {
        // The bytes 1, 2 and 3 before each byte of `input` (step 3). A 16-byte register is one
        // lane, so `palignr` of [previous, input] is the whole shift: unlike AVX2, no lane
        // boundary to carry across and no `vperm2i128` first.
        let back1 = _mm_alignr_epi8::<15>(input, previous);
        let back2 = _mm_alignr_epi8::<14>(input, previous);
        let back3 = _mm_alignr_epi8::<13>(input, previous);
        // Step 1: the three lookups, ANDed.
        let nibble = _mm_set1_epi8(LOW_NIBBLE as i8);
        let previous_high = _mm_and_si128(_mm_srli_epi16::<4>(back1), nibble);
        let previous_low = _mm_and_si128(back1, nibble);
        let current_high = _mm_and_si128(_mm_srli_epi16::<4>(input), nibble);
        let pairs = _mm_and_si128(
            _mm_and_si128(
                _mm_shuffle_epi8(self.previous_high, previous_high),
                _mm_shuffle_epi8(self.previous_low, previous_low),
            ),
            _mm_shuffle_epi8(self.current_high, current_high),
        );
        // Step 2, as on the AVX2 path.
        let third_byte = _mm_subs_epu8(back2, _mm_set1_epi8(THREE_BYTE_LEAD_BIAS as i8));
        let fourth_byte = _mm_subs_epu8(back3, _mm_set1_epi8(FOUR_BYTE_LEAD_BIAS as i8));
        let must_continue = _mm_and_si128(_mm_or_si128(third_byte, fourth_byte), _mm_set1_epi8(HIGH_BIT as i8));
        _mm_xor_si128(must_continue, pairs)
    }
}

/// A 16-entry table in a register, for `pshufb`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "ssse3,sse4.1")]
fn sse41_table(entries: [u8; 16]) -> __m128i {
    let e = entries.map(|entry| entry as i8);
    #[rustfmt::skip]
    let table = _mm_setr_epi8(
        e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7],
        e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15],
    );
    table
}

/// The block's four quarters in four registers.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "ssse3,sse4.1")]
fn sse41_load(block: &[u8; BLOCK]) -> [__m128i; 4] {
    let start = block.as_ptr().cast::<__m128i>();
    // SAFETY: `block` is 64 readable bytes; the loads read bytes 0..16, 16..32, 32..48 and
    // 48..64 of it (`start.add(i)` is 16 * i bytes on, inside the same array). `loadu` takes
    // any alignment.
    unsafe { [0, 1, 2, 3].map(|i| _mm_loadu_si128(start.add(i))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unicode Table 3-7's verdict on a pair of bytes seen inside valid text, for the pair
    /// tables' test: is `current` allowed right after `previous`, when only the pair is known?
    /// (A continuation after a continuation is allowed here: step 2 decides that one.)
    fn pair_allowed(previous: u8, current: u8) -> bool {
        let continuation = (0x80..=0xBF).contains(&current);
        match previous {
            0x00..=0x7F => !continuation,
            // Any byte may follow a continuation, as far as the pair can tell.
            0x80..=0xBF => true,
            0xC2..=0xDF | 0xE1..=0xEC | 0xEE..=0xEF | 0xF1..=0xF3 => continuation,
            0xE0 => (0xA0..=0xBF).contains(&current),
            0xED => (0x80..=0x9F).contains(&current),
            0xF0 => (0x90..=0xBF).contains(&current),
            0xF4 => (0x80..=0x8F).contains(&current),
            _ => false, // C0, C1, F5..FF start nothing
        }
    }

    #[test]
    fn unicode_table_3_7_the_pair_tables_flag_exactly_the_forbidden_pairs() {
        for previous in 0..=255u8 {
            for current in 0..=255u8 {
                let flags = pair_flags(previous, current) & !TWO_CONTINUATIONS;
                assert_eq!(flags == 0, pair_allowed(previous, current), "{previous:02x} {current:02x}");
            }
        }
    }

    #[test]
    fn the_two_continuations_flag_is_set_exactly_for_continuation_pairs() {
        for previous in 0..=255u8 {
            for current in 0..=255u8 {
                let both = (0x80..=0xBF).contains(&previous) && (0x80..=0xBF).contains(&current);
                assert_eq!(pair_flags(previous, current) & TWO_CONTINUATIONS != 0, both);
            }
        }
    }

    #[test]
    fn a_cut_code_point_is_left_out_and_a_finished_one_is_not() {
        assert_eq!(without_cut_code_point(b""), 0);
        assert_eq!(without_cut_code_point(b"ab"), 2);
        assert_eq!(without_cut_code_point(b"a\xce"), 1);
        assert_eq!(without_cut_code_point(b"a\xce\xba"), 3);
        assert_eq!(without_cut_code_point(b"a\xe1\xbd"), 1);
        assert_eq!(without_cut_code_point(b"a\xe1\xbd\xb9"), 4);
        assert_eq!(without_cut_code_point(b"a\xf0\x9f\x98"), 1);
        assert_eq!(without_cut_code_point(b"\xf0\x9f\x98\x80"), 4);
        assert_eq!(without_cut_code_point(b"\xf0"), 0);
    }

    /// Each vector path this CPU has, alone: the tests below run over every one of them, so
    /// that a CPU with AVX2 tests the SSE4.1 path too.
    fn available_paths() -> Vec<Path> {
        PATHS.into_iter().filter(|&path| validate_prefix_on(path, b"").is_some()).collect()
    }

    /// Text with 1-, 2-, 3- and 4-byte code points, long enough for several 64-byte blocks.
    fn sample_text() -> Vec<u8> {
        "κόσμε, 😀 and ASCII ".repeat(20).into_bytes()
    }

    #[test]
    fn into_string_agrees_with_std_on_valid_cut_and_broken_text() {
        let text = sample_text();
        for path in available_paths() {
            for end in 0..=text.len() {
                for bad in [None, Some(0xFF), Some(0x80), Some(0xC0)] {
                    let mut bytes = text[..end].to_vec();
                    if let Some(byte) = bad {
                        bytes.insert(end / 2, byte);
                    }
                    let expected = String::from_utf8(bytes.clone()).map_err(|e| e.into_bytes());
                    assert_eq!(into_string_on(&[path], bytes), expected, "{path:?}: end {end}, inserted {bad:?}");
                }
            }
        }
    }

    #[test]
    fn vouches_for_at_most_what_is_valid_and_complete() {
        let bytes = sample_text();
        for path in available_paths() {
            for end in 0..=bytes.len() {
                let n = validate_prefix_on(path, &bytes[..end]).expect("available");
                assert!(n <= end);
                assert!(std::str::from_utf8(&bytes[..n]).is_ok(), "{path:?}: prefix of {end}: {n}");
                if std::str::from_utf8(&bytes[..end]).is_ok() {
                    assert_eq!(n, end, "{path:?}: valid and complete, all of it");
                }
            }
        }
    }

    /// A short ASCII text is vouched for whole without a vector path (on a CPU with none
    /// too); one a block long or more, or with any other byte, is left to the paths.
    #[test]
    fn a_text_shorter_than_a_block_is_vouched_for_whole_when_it_is_ascii() {
        let ascii: Vec<u8> = (0..=BLOCK as u8).map(|i| b' ' + i % 95).collect();
        let available = available_paths();
        for paths in [&[][..], &available[..]] {
            for end in 0..=ascii.len() {
                let text = &ascii[..end];
                let expected = if end < BLOCK || !paths.is_empty() { end } else { 0 };
                assert_eq!(vouch(paths, text), expected, "{end} ASCII bytes, paths {paths:?}");
                assert_eq!(into_string_on(paths, text.to_vec()).as_deref(), Ok(std::str::from_utf8(text).unwrap()));
                for bad in [0x80, 0xC3, 0xFF] {
                    let mut bytes = text.to_vec();
                    bytes.insert(end / 2, bad);
                    assert!(vouch(paths, &bytes) <= end / 2, "not past the byte {bad:#x}");
                    assert_eq!(into_string_on(paths, bytes.clone()), Err(bytes));
                }
            }
        }
    }

    #[test]
    fn every_path_vouches_for_the_same_prefix() {
        // The paths run the same algorithm on the same 64-byte blocks, only on vectors of
        // different widths, so they stop at the same block: any difference is a bug in one.
        let text = sample_text();
        for end in 0..=text.len() {
            for bad in [None, Some(0xFF), Some(0x80), Some(0xC0), Some(0xED)] {
                let mut bytes = text[..end].to_vec();
                if let Some(byte) = bad {
                    bytes.insert(end / 2, byte);
                }
                let answers: Vec<usize> =
                    available_paths().into_iter().filter_map(|path| validate_prefix_on(path, &bytes)).collect();
                assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "end {end}, {bad:?}: {answers:?}");
            }
        }
    }
}
