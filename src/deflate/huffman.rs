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

/// The decoder's first table is indexed by this many input bits: one look-up resolves every
/// code up to 10 bits (all of §3.2.6's fixed codes, and nearly every symbol a dynamic block
/// sends); a longer code takes a second look-up in a small table of its own prefix's longer
/// codes. 2^10 entries of 4 bytes (4 KiB) per code, rebuilt for each dynamic block: zlib's
/// `inflate_fast` does the same with 9 bits, libdeflate with 11.
pub const TABLE_BITS: u32 = 10;

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

/// A decoding table for one code, in two levels (as in zlib's `inftrees.c`).
///
/// An entry is a `u32`: the symbol in the high 16 bits, then a byte that is non-zero only
/// in the first level's entries for prefixes of codes longer than [`TABLE_BITS`] (how many
/// more bits index the second-level table, which starts at the high 16 bits), then a byte
/// with the code's full length in bits. [`NO_CODE`] marks an incomplete or empty code's unused
/// space: length 0, and a symbol no alphabet has, so that a caller checking the symbol's range
/// need not check the length too.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Indexed by the next [`TABLE_BITS`] input bits, or as many as the longest code has if
    /// that is fewer (a short message's codes are short, and a table per block is built for
    /// it). A code travels first bit lowest (§3.1.1), so a code of `len` bits fills every
    /// index whose low `len` bits are it.
    first: Vec<u32>,
    /// The second-level tables, one per prefix of codes longer than [`TABLE_BITS`].
    second: Vec<u32>,
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

/// The entry for bits that start no code (see [`Decoder`]).
pub const NO_CODE: u32 = 0xffff << 16;

/// The parts of a table entry (see [`Decoder`]).
#[inline(always)]
pub fn entry_symbol(entry: u32) -> usize {
    (entry >> 16) as usize
}

/// The length in bits of the code an entry decodes; 0 for no code.
#[inline(always)]
pub fn entry_len(entry: u32) -> u32 {
    entry & 0xff
}

impl Decoder {
    /// The decoder for the code with these lengths. An empty code (every length 0) is
    /// accepted: RFC 1951 §3.2.7 allows a block with no distance codes, and such a block
    /// fails only if it uses one.
    pub fn new(lengths: &[u8]) -> Result<Decoder, CodeError> {
        let codes = canonical_codes(lengths).ok_or(CodeError::OverSubscribed)?;
        let mut counts = [0u32; MAX_CODE_LENGTH + 1];
        for &len in lengths {
            counts[len as usize] += 1;
        }
        counts[0] = 0;
        let used: u32 = counts.iter().sum();
        let max_len = (1..=MAX_CODE_LENGTH).rev().find(|&l| counts[l] > 0).unwrap_or(0);
        let space: u32 = (1..=MAX_CODE_LENGTH).map(|l| counts[l] << (MAX_CODE_LENGTH - l)).sum();
        let complete = space == 1 << MAX_CODE_LENGTH;
        if used > 0 && !complete && !(used == 1 && max_len == 1) {
            return Err(CodeError::Incomplete);
        }
        let first_bits = (max_len as u32).clamp(1, TABLE_BITS);
        let mut first = vec![NO_CODE; 1 << first_bits];
        let mut second = Vec::new();
        for (symbol, &len) in lengths.iter().enumerate().filter(|(_, &len)| (1..=first_bits).contains(&u32::from(len)))
        {
            let reversed = usize::from(reverse(codes[symbol], len));
            let entry = (symbol as u32) << 16 | u32::from(len);
            for index in (reversed..first.len()).step_by(1 << len) {
                first[index] = entry;
            }
        }
        if max_len as u32 <= TABLE_BITS {
            return Ok(Decoder { first, second });
        }
        // The longest code under each first-level prefix, which sizes its second-level table.
        let mut longest = vec![0u8; 1 << TABLE_BITS];
        for (symbol, &len) in lengths.iter().enumerate().filter(|(_, &len)| u32::from(len) > TABLE_BITS) {
            let prefix = usize::from(reverse(codes[symbol], len)) & ((1 << TABLE_BITS) - 1);
            longest[prefix] = longest[prefix].max(len);
        }
        for (prefix, &len) in longest.iter().enumerate().filter(|(_, &len)| len > 0) {
            let bits = u32::from(len) - TABLE_BITS;
            first[prefix] = (second.len() as u32) << 16 | bits << 8;
            second.resize(second.len() + (1 << bits), NO_CODE);
        }
        for (symbol, &len) in lengths.iter().enumerate().filter(|(_, &len)| u32::from(len) > TABLE_BITS) {
            let reversed = usize::from(reverse(codes[symbol], len));
            let pointer = first[reversed & ((1 << TABLE_BITS) - 1)];
            let (base, size) = (entry_symbol(pointer), 1usize << (pointer >> 8 & 0xff));
            let entry = (symbol as u32) << 16 | u32::from(len);
            for index in (reversed >> TABLE_BITS..size).step_by(1 << (u32::from(len) - TABLE_BITS)) {
                second[base + index] = entry;
            }
        }
        Ok(Decoder { first, second })
    }

    /// The table entry for the code at the bottom of `bits` (the first input bit lowest),
    /// assuming enough bits: the caller compares [`entry_len`] with what it holds.
    #[inline(always)]
    pub fn entry(&self, bits: u64) -> u32 {
        let entry = self.first[bits as usize & (self.first.len() - 1)];
        let more = entry >> 8 & 0xff;
        if more == 0 {
            return entry;
        }
        let index = entry_symbol(entry) + ((bits >> TABLE_BITS) as usize & ((1 << more) - 1));
        self.second[index]
    }

    /// Decodes the next symbol from `bits`, of which the low `available` are input.
    pub fn decode(&self, bits: u64, available: u32) -> Lookup {
        let entry = self.entry(bits);
        let len = entry_len(entry);
        if len == 0 {
            // Unused code space is known as soon as one bit is: only an incomplete code of
            // a single 1-bit code, or an empty code, has any (see `new`).
            return if available == 0 { Lookup::NeedMore } else { Lookup::Invalid };
        }
        if len > available {
            return Lookup::NeedMore;
        }
        Lookup::Symbol { symbol: entry_symbol(entry) as u16, len: len as u8 }
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
    fn long_codes_decode_through_the_second_level_table() {
        // A complete code with lengths 1..=15 and two of 15: the codes over 10 bits take two look-ups.
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
