//! Canonical Huffman codes (RFC 1951 §3.2.2): from code lengths to codes, a decoding table,
//! and, for the compressor, code lengths from symbol frequencies under a length limit.
//!
//! DEFLATE never sends a code itself, only each symbol's code *length*; both sides rebuild
//! the same codes from the lengths with the algorithm of §3.2.2: shorter codes
//! lexicographically before longer ones, and codes of one length in symbol order. So the
//! decoder needs [`canonical_codes`] (through [`Decoder::new`]) and the encoder needs it
//! too, after choosing lengths with [`lengths_for`].
//!
//! Codes are packed "starting with the most-significant bit of the code" (§3.1.1) into a
//! stream read from the least significant bit of each byte, so both sides work with the
//! code's bits reversed ([`reverse`]).

#![forbid(unsafe_code)]

/// RFC 1951 §3.2.7: code lengths go up to 15 for literal/length and distance codes.
pub const MAX_CODE_LENGTH: usize = 15;

/// The decoder resolves codes up to this many bits with one table look-up; longer (rare,
/// by construction) codes are walked bit by bit. 9 bits covers every fixed literal/length
/// code (§3.2.6) and keeps a table at 512 entries, cheap to build for each dynamic block.
const FAST_BITS: u32 = 9;

/// Why a set of code lengths describes no usable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeError {
    /// More codes of some length than the lengths before it leave room for: no prefix code.
    OverSubscribed,
    /// Unused code space, which RFC 1951 allows only for a single code of one bit (§3.2.7:
    /// "one distance code of one bit"); zlib refuses the rest, and so do we.
    Incomplete,
}

/// The algorithm of RFC 1951 §3.2.2: each symbol's code from the code lengths (0: unused).
/// Returns `None` when the lengths are over-subscribed. Codes are in the RFC's bit order
/// (most significant bit first).
pub fn canonical_codes(lengths: &[u8]) -> Option<Vec<u16>> {
    // Step 1: "Count the number of codes for each code length."
    let mut bl_count = [0u16; MAX_CODE_LENGTH + 1];
    for &len in lengths {
        bl_count[len as usize] += 1;
    }
    bl_count[0] = 0;
    // Step 2: "Find the numerical value of the smallest code for each code length."
    let mut next_code = [0u32; MAX_CODE_LENGTH + 2];
    let mut code = 0u32;
    for bits in 1..=MAX_CODE_LENGTH {
        code = (code + u32::from(bl_count[bits - 1])) << 1;
        next_code[bits] = code;
        if code + u32::from(bl_count[bits]) > 1 << bits {
            return None;
        }
    }
    // Step 3: "Assign numerical values to all codes, using consecutive values for all codes
    // of the same length with the base values determined at step 2."
    let mut codes = vec![0u16; lengths.len()];
    for (symbol, &len) in lengths.iter().enumerate() {
        if len != 0 {
            codes[symbol] = next_code[len as usize] as u16;
            next_code[len as usize] += 1;
        }
    }
    Some(codes)
}

/// `code`'s low `len` bits in the opposite order: the form in which a code travels (§3.1.1).
pub fn reverse(code: u16, len: u8) -> u16 {
    code.reverse_bits() >> (16 - u32::from(len.max(1))) & ((1u32 << len) - 1) as u16
}

/// A decoding table for one code: a direct look-up for codes up to `FAST_BITS` (9) bits, the
/// canonical walk for longer ones.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Indexed by the next `FAST_BITS` input bits: `symbol << 4 | length`, or 0 when the code
    /// there is longer (or there is none).
    fast: Vec<u16>,
    /// How many codes each length has (the walk's `bl_count`).
    counts: [u16; MAX_CODE_LENGTH + 1],
    /// Symbols ordered by code: by length, then by symbol (the walk's table).
    sorted: Vec<u16>,
    /// The longest code; 0 when the code has no symbols at all.
    max_len: u8,
}

/// A decoded symbol and how many bits its code took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Symbol {
        symbol: u16,
        len: u8,
    },
    /// The bits available are a prefix of a code: more are needed.
    NeedMore,
    /// No code starts with these bits (an incomplete code's unused space, or an empty code).
    Invalid,
}

impl Decoder {
    /// The decoder for the code with these lengths. An empty code (every length 0) is
    /// accepted: RFC 1951 §3.2.7 allows a block with no distance codes, and such a block
    /// fails only if it uses one.
    pub fn new(lengths: &[u8]) -> Result<Decoder, CodeError> {
        let codes = canonical_codes(lengths).ok_or(CodeError::OverSubscribed)?;
        let mut counts = [0u16; MAX_CODE_LENGTH + 1];
        for &len in lengths {
            counts[len as usize] += 1;
        }
        counts[0] = 0;
        let used: u32 = counts.iter().map(|&c| u32::from(c)).sum();
        let max_len = (1..=MAX_CODE_LENGTH).rev().find(|&l| counts[l] > 0).unwrap_or(0) as u8;
        let space: u32 = (1..=MAX_CODE_LENGTH).map(|l| u32::from(counts[l]) << (MAX_CODE_LENGTH - l)).sum();
        let complete = space == 1 << MAX_CODE_LENGTH;
        if used > 0 && !complete && !(used == 1 && max_len == 1) {
            return Err(CodeError::Incomplete);
        }
        // A counting sort: where each length's symbols start, then one pass in symbol order.
        let mut offsets = [0usize; MAX_CODE_LENGTH + 1];
        for len in 1..MAX_CODE_LENGTH {
            offsets[len + 1] = offsets[len] + usize::from(counts[len]);
        }
        let mut sorted = vec![0u16; used as usize];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                sorted[offsets[len as usize]] = symbol as u16;
                offsets[len as usize] += 1;
            }
        }
        let mut fast = vec![0u16; 1 << FAST_BITS];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len == 0 || u32::from(len) > FAST_BITS {
                continue;
            }
            let reversed = reverse(codes[symbol], len) as usize;
            let entry = (symbol as u16) << 4 | u16::from(len);
            // Every index whose low `len` bits are this code decodes to it.
            let mut index = reversed;
            while index < fast.len() {
                fast[index] = entry;
                index += 1 << len;
            }
        }
        Ok(Decoder { fast, counts, sorted, max_len })
    }

    /// Decodes the next symbol from `bits`, of which the low `available` are input (the first
    /// input bit lowest).
    pub fn decode(&self, bits: u64, available: u32) -> Lookup {
        let entry = self.fast[(bits & ((1 << FAST_BITS) - 1)) as usize];
        if entry != 0 {
            let len = (entry & 15) as u8;
            return if u32::from(len) <= available {
                Lookup::Symbol { symbol: entry >> 4, len }
            } else {
                Lookup::NeedMore
            };
        }
        self.decode_slow(bits, available)
    }

    /// The canonical walk (as in zlib's `puff.c`): read the code a bit at a time, most
    /// significant first, and compare it with the first code of each length.
    fn decode_slow(&self, bits: u64, available: u32) -> Lookup {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=u32::from(self.max_len) {
            if len > available {
                return Lookup::NeedMore;
            }
            code |= ((bits >> (len - 1)) & 1) as i32;
            let count = i32::from(self.counts[len as usize]);
            if code - first < count {
                return Lookup::Symbol { symbol: self.sorted[(index + code - first) as usize], len: len as u8 };
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Lookup::Invalid
    }
}

/// Code lengths for symbols with these frequencies, none longer than `limit`: a Huffman code
/// (two queues over the sorted leaves), then, if some code is too long, the length counts
/// are rebalanced the way miniz does (push the long codes up to `limit`, then lengthen short
/// codes until the Kraft sum fits) and handed out again, shortest to the most frequent.
///
/// As zlib does, at least two symbols get a code even when fewer are used (a one-symbol code
/// would be incomplete, which some decoders refuse; RFC 1951 §3.2.7).
pub fn lengths_for(freqs: &[u32], limit: usize) -> Vec<u8> {
    let mut lengths = vec![0u8; freqs.len()];
    let mut leaves: Vec<(u32, usize)> =
        freqs.iter().enumerate().filter(|(_, &f)| f > 0).map(|(s, &f)| (f, s)).collect();
    let unused = freqs.iter().enumerate().filter(|(_, &f)| f == 0).map(|(s, _)| (1, s));
    let missing = 2usize.saturating_sub(leaves.len());
    leaves.extend(unused.take(missing));
    if leaves.len() < 2 {
        return lengths;
    }
    leaves.sort_unstable();
    let n = leaves.len();
    // Node i < n is leaf i; node n + k is the k-th merged node. `parent` links them upwards.
    let mut weight: Vec<u64> = leaves.iter().map(|&(f, _)| u64::from(f)).collect();
    weight.resize(2 * n - 1, 0);
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut next_leaf, mut next_node) = (0, n);
    for merged in n..2 * n - 1 {
        let mut pick = || {
            let take_leaf = next_leaf < n && (next_node >= merged || weight[next_leaf] <= weight[next_node]);
            if take_leaf {
                next_leaf += 1;
                next_leaf - 1
            } else {
                next_node += 1;
                next_node - 1
            }
        };
        let (a, b) = (pick(), pick());
        weight[merged] = weight[a] + weight[b];
        parent[a] = merged;
        parent[b] = merged;
    }
    // Depths from the root (the last node) down: a parent always has a higher index.
    let mut depth = vec![0usize; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]] + 1;
    }
    let mut count = vec![0usize; limit.max(MAX_CODE_LENGTH) + n + 1];
    for &d in &depth[..n] {
        count[d] += 1;
    }
    if depth[..n].iter().any(|&d| d > limit) {
        for len in limit + 1..count.len() {
            count[limit] += count[len];
            count[len] = 0;
        }
        let kraft = |count: &[usize]| (1..=limit).map(|l| count[l] << (limit - l)).sum::<usize>();
        while kraft(&count) > 1 << limit {
            count[limit] -= 1;
            // Some shorter length has a code while the sum is over: lengthen one of them,
            // which turns one leaf into two (the one from `limit` and itself).
            if let Some(len) = (1..limit).rev().find(|&l| count[l] > 0) {
                count[len] -= 1;
                count[len + 1] += 2;
            }
        }
    }
    // Hand out the lengths: the most frequent symbols (the end of `leaves`) get the shortest.
    let mut symbols = leaves.iter().rev().map(|&(_, s)| s);
    for (len, &how_many) in count.iter().enumerate().take(limit + 1).skip(1) {
        for _ in 0..how_many {
            if let Some(symbol) = symbols.next() {
                lengths[symbol] = len as u8;
            }
        }
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1951_3_2_2_example_abcdefgh_lengths_3_3_3_3_3_2_4_4() {
        // "Consider the alphabet ABCDEFGH, with bit lengths (3, 3, 3, 3, 3, 2, 4, 4)."
        let codes = canonical_codes(&[3, 3, 3, 3, 3, 2, 4, 4]).unwrap();
        assert_eq!(codes, [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]);
    }

    #[test]
    fn rfc1951_3_2_2_example_abcd_tree() {
        // "Symbol Code: A 10, B 0, C 110, D 111"
        assert_eq!(canonical_codes(&[2, 1, 3, 3]).unwrap(), [0b10, 0b0, 0b110, 0b111]);
    }

    #[test]
    fn rfc1951_3_2_2_decoder_reads_codes_most_significant_bit_first() {
        let decoder = Decoder::new(&[3, 3, 3, 3, 3, 2, 4, 4]).unwrap();
        // H = 1111; G = 1110 travels as 0111 reversed.
        assert_eq!(decoder.decode(0b0111, 4), Lookup::Symbol { symbol: 6, len: 4 });
        assert_eq!(decoder.decode(0b00, 2), Lookup::Symbol { symbol: 5, len: 2 });
        assert_eq!(decoder.decode(0b11, 2), Lookup::NeedMore);
    }

    #[test]
    fn over_subscribed_lengths_are_refused() {
        assert_eq!(Decoder::new(&[1, 1, 1]).unwrap_err(), CodeError::OverSubscribed);
    }

    #[test]
    fn incomplete_code_is_refused_except_a_single_one_bit_code() {
        assert_eq!(Decoder::new(&[2, 2, 2]).unwrap_err(), CodeError::Incomplete);
        let single = Decoder::new(&[0, 1]).unwrap();
        assert_eq!(single.decode(0, 1), Lookup::Symbol { symbol: 1, len: 1 });
        assert_eq!(single.decode(1, 1), Lookup::Invalid);
    }

    #[test]
    fn long_codes_decode_through_the_canonical_walk() {
        // A complete code with lengths 1..=15 and two of 15: the deep ones miss the table.
        let mut lengths: Vec<u8> = (1..=15).collect();
        lengths.push(15);
        let decoder = Decoder::new(&lengths).unwrap();
        let codes = canonical_codes(&lengths).unwrap();
        for (symbol, &len) in lengths.iter().enumerate() {
            let bits = u64::from(reverse(codes[symbol], len));
            assert_eq!(decoder.decode(bits, 15), Lookup::Symbol { symbol: symbol as u16, len }, "{symbol}");
        }
    }

    #[test]
    fn lengths_respect_the_limit_and_make_a_complete_code() {
        // Fibonacci frequencies make the deepest possible Huffman tree.
        let mut freqs = vec![1u32, 1];
        while freqs.len() < 30 {
            let next = freqs[freqs.len() - 1] + freqs[freqs.len() - 2];
            freqs.push(next);
        }
        for limit in [7, 15] {
            let lengths = lengths_for(&freqs, limit);
            assert!(lengths.iter().all(|&l| l >= 1 && l as usize <= limit));
            assert!(Decoder::new(&lengths).is_ok(), "{lengths:?}");
        }
    }

    #[test]
    fn one_used_symbol_still_gets_a_two_symbol_code() {
        let lengths = lengths_for(&[0, 0, 5, 0], 15);
        assert_eq!(lengths, [1, 0, 1, 0]);
        assert_eq!(lengths_for(&[0, 0, 0], 15), [1, 1, 0]);
    }
}
