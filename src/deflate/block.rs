//! Writing a block (RFC 1951 §3.2.3-§3.2.7): the same symbols as a stored, fixed-Huffman or
//! dynamic-Huffman block, whichever takes fewest bits.
//!
//! # Theory of operation
//!
//! [`write_block`] counts the exact size of the three encodings before writing one:
//!
//! - **dynamic** (§3.2.7): Huffman codes built for this block's symbol frequencies
//!   ([`super::huffman::lengths_for`], at most 15 bits), plus their description: the code lengths,
//!   run-length coded with symbols 16, 17 and 18, themselves Huffman coded (at most 7 bits);
//! - **fixed** (§3.2.6): no description, codes of 7 to 9 bits; wins for short inputs;
//! - **stored** (§3.2.4): the raw bytes, 65535 at most per block; wins for data that does not
//!   compress (already compressed, random), so output is never much larger than input.
//!
//! Bits go out least significant first (§3.1.1) through [`BitWriter`]; Huffman codes are
//! reversed first so that their most significant bit goes out first, as §3.1.1 requires.

#![forbid(unsafe_code)]

use super::huffman::{canonical_codes, lengths_for, reverse};
use super::lz77::{Symbols, MATCH};
use super::{
    distance_code, fixed_lengths, length_code, CODE_LENGTH_ORDER, DIST_BASE, DIST_EXTRA, END_OF_BLOCK, LENGTH_BASE,
    LENGTH_EXTRA,
};

/// §3.2.4: LEN is 16 bits, so a stored block holds at most 65535 bytes.
const MAX_STORED: usize = 65535;

/// §3.2.7: the code length code's lengths are 3-bit fields: at most 7.
const MAX_CODE_LENGTH_CODE: usize = 7;

/// Packs bits into bytes, least significant bit first (§3.1.1), appending to a buffer.
pub struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl<'a> BitWriter<'a> {
    /// A writer that starts on a byte boundary at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> BitWriter<'a> {
        BitWriter { out, acc: 0, nbits: 0 }
    }

    /// Writes the low `n` (at most 32) bits of `value`.
    pub fn put(&mut self, value: u32, n: u32) {
        self.acc |= u64::from(value) << self.nbits;
        self.nbits += n;
        if self.nbits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.nbits -= 32;
        }
    }

    /// Pads with zero bits to the next byte boundary and writes out every whole byte.
    pub fn align(&mut self) {
        self.nbits = self.nbits.next_multiple_of(8);
        while self.nbits > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }

    /// Bits written past the last byte boundary.
    fn pending(&self) -> u32 {
        self.nbits % 8
    }

    /// Raw bytes, after [`BitWriter::align`].
    fn bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.nbits, 0);
        self.out.extend_from_slice(bytes);
    }
}

/// A Huffman code ready for writing: each symbol's length and reversed code.
struct Code {
    lengths: Vec<u8>,
    codes: Vec<u16>,
}

impl Code {
    fn from_lengths(lengths: &[u8]) -> Code {
        // Lengths from `lengths_for` or §3.2.6 always form a prefix code.
        let canonical = canonical_codes(lengths).unwrap_or_else(|| vec![0; lengths.len()]);
        let codes = lengths.iter().zip(&canonical).map(|(&len, &code)| reverse(code, len)).collect();
        Code { lengths: lengths.to_vec(), codes }
    }

    fn put(&self, writer: &mut BitWriter, symbol: usize) {
        writer.put(u32::from(self.codes[symbol]), u32::from(self.lengths[symbol]));
    }
}

/// §3.2.6's fixed codes, built on first use: every small message's block costs them.
fn fixed_codes() -> &'static (Code, Code) {
    static FIXED: std::sync::OnceLock<(Code, Code)> = std::sync::OnceLock::new();
    FIXED.get_or_init(|| {
        let (litlen, dist) = fixed_lengths();
        (Code::from_lengths(&litlen), Code::from_lengths(&dist))
    })
}

/// The cost in bits of the symbols' data under these code lengths, extra bits included.
fn data_bits(symbols: &Symbols, litlen: &[u8], dist: &[u8]) -> usize {
    let literal_and_length: usize = symbols
        .litlen_freq
        .iter()
        .enumerate()
        .map(|(s, &f)| {
            f as usize * (usize::from(litlen[s]) + if s > 256 { usize::from(LENGTH_EXTRA[s - 257]) } else { 0 })
        })
        .sum();
    let distance: usize = symbols
        .dist_freq
        .iter()
        .enumerate()
        .map(|(s, &f)| f as usize * (usize::from(dist[s]) + usize::from(DIST_EXTRA[s])))
        .sum();
    literal_and_length + distance
}

/// A dynamic block's code description (§3.2.7), ready to write and to cost.
struct DynamicHeader {
    hlit: usize,
    hdist: usize,
    hclen: usize,
    /// The code length code.
    code: Code,
    /// The run-length coded lengths: (symbol 0..=18, extra bits value).
    runs: Vec<(u8, u8)>,
}

impl DynamicHeader {
    fn new(litlen: &[u8], dist: &[u8]) -> DynamicHeader {
        // "HLIT + 257" and "HDIST + 1" codes: trailing unused codes need not be described.
        let hlit = (257..=litlen.len()).rev().find(|&n| litlen[n - 1] != 0).unwrap_or(257);
        let hdist = (1..=dist.len()).rev().find(|&n| dist[n - 1] != 0).unwrap_or(1);
        let all: Vec<u8> = litlen[..hlit].iter().chain(&dist[..hdist]).copied().collect();
        let runs = run_lengths(&all);
        let mut freq = [0u32; 19];
        for &(symbol, _) in &runs {
            freq[usize::from(symbol)] += 1;
        }
        let code = Code::from_lengths(&lengths_for(&freq, MAX_CODE_LENGTH_CODE));
        // "HCLEN + 4" lengths in CODE_LENGTH_ORDER: the trailing zeros are cut.
        let hclen = (4..=19).rev().find(|&n| code.lengths[CODE_LENGTH_ORDER[n - 1]] != 0).unwrap_or(4);
        DynamicHeader { hlit, hdist, hclen, code, runs }
    }

    fn bits(&self) -> usize {
        let runs: usize = self
            .runs
            .iter()
            .map(|&(symbol, _)| {
                usize::from(self.code.lengths[usize::from(symbol)]) + repeat_extra_bits(symbol) as usize
            })
            .sum();
        5 + 5 + 4 + 3 * self.hclen + runs
    }

    fn write(&self, writer: &mut BitWriter) {
        writer.put((self.hlit - 257) as u32, 5);
        writer.put((self.hdist - 1) as u32, 5);
        writer.put((self.hclen - 4) as u32, 4);
        for &symbol in &CODE_LENGTH_ORDER[..self.hclen] {
            writer.put(u32::from(self.code.lengths[symbol]), 3);
        }
        for &(symbol, extra) in &self.runs {
            self.code.put(writer, usize::from(symbol));
            writer.put(u32::from(extra), repeat_extra_bits(symbol));
        }
    }
}

/// §3.2.7: the extra bits after code length symbols 16 (2), 17 (3) and 18 (7).
fn repeat_extra_bits(symbol: u8) -> u32 {
    match symbol {
        16 => 2,
        17 => 3,
        18 => 7,
        _ => 0,
    }
}

/// §3.2.7's run-length coding of code lengths: "16: Copy the previous code length 3 - 6
/// times", "17: Repeat a code length of 0 for 3 - 10 times", "18: ... for 11 - 138 times".
fn run_lengths(lengths: &[u8]) -> Vec<(u8, u8)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < lengths.len() {
        let value = lengths[i];
        let mut run = lengths[i..].iter().take_while(|&&l| l == value).count();
        i += run;
        if value == 0 {
            while run >= 11 {
                let n = run.min(138);
                runs.push((18, (n - 11) as u8));
                run -= n;
            }
            if run >= 3 {
                runs.push((17, (run - 3) as u8));
                run = 0;
            }
        } else {
            runs.push((value, 0));
            run -= 1;
            while run >= 3 {
                let n = run.min(6);
                runs.push((16, (n - 3) as u8));
                run -= n;
            }
        }
        runs.extend(std::iter::repeat_n((value, 0), run));
    }
    runs
}

/// The cost in bits of `len` bytes as stored blocks, starting `pending` bits past a byte
/// boundary: per block a 3-bit header, padding, LEN and NLEN, then the bytes.
fn stored_bits(len: usize, pending: u32) -> usize {
    let blocks = len.div_ceil(MAX_STORED).max(1);
    let first_padding = (8 - (pending as usize + 3) % 8) % 8;
    first_padding + 3 + 32 + (blocks - 1) * (8 + 32) + 8 * len
}

/// Writes `symbols` (which stand for `raw`) as one block, or as stored blocks, whichever is
/// smallest; `last` sets BFINAL.
pub fn write_block(writer: &mut BitWriter, symbols: &Symbols, raw: &[u8], last: bool) {
    let bfinal = u32::from(last);
    let dynamic_litlen = lengths_for(&symbols.litlen_freq, 15);
    let dynamic_dist = lengths_for(&symbols.dist_freq, 15);
    let header = DynamicHeader::new(&dynamic_litlen, &dynamic_dist);
    let dynamic = 3 + header.bits() + data_bits(symbols, &dynamic_litlen, &dynamic_dist);
    let (fixed_litlen, fixed_dist) = fixed_codes();
    let fixed = 3 + data_bits(symbols, &fixed_litlen.lengths, &fixed_dist.lengths);
    let stored = stored_bits(raw.len(), writer.pending());
    if stored <= fixed && stored <= dynamic {
        write_stored(writer, raw, last);
    } else if fixed <= dynamic {
        writer.put(bfinal | 1 << 1, 3);
        write_symbols(writer, symbols, fixed_litlen, fixed_dist);
    } else {
        writer.put(bfinal | 2 << 1, 3);
        header.write(writer);
        write_symbols(writer, symbols, &Code::from_lengths(&dynamic_litlen), &Code::from_lengths(&dynamic_dist));
    }
}

/// §3.2.4: raw bytes, in blocks of at most 65535, each after a byte boundary and LEN, NLEN.
fn write_stored(writer: &mut BitWriter, raw: &[u8], last: bool) {
    // No bytes still make one (empty) block: the sync flush is one.
    let blocks = raw.len().div_ceil(MAX_STORED).max(1);
    for block in 0..blocks {
        let chunk = &raw[(block * MAX_STORED).min(raw.len())..((block + 1) * MAX_STORED).min(raw.len())];
        writer.put(u32::from(last && block + 1 == blocks), 3);
        writer.align();
        let len = chunk.len() as u16;
        writer.bytes(&len.to_le_bytes());
        writer.bytes(&(!len).to_le_bytes());
        writer.bytes(chunk);
    }
}

/// The symbols, then end-of-block (§3.2.5).
fn write_symbols(writer: &mut BitWriter, symbols: &Symbols, litlen: &Code, dist: &Code) {
    for &token in &symbols.tokens {
        if token & MATCH == 0 {
            litlen.put(writer, token as usize);
            continue;
        }
        let length = (token >> 16 & 0x1ff) as usize;
        let distance = (token & 0xffff) as usize;
        let lcode = length_code(length);
        litlen.put(writer, 257 + lcode);
        writer.put((length - usize::from(LENGTH_BASE[lcode])) as u32, u32::from(LENGTH_EXTRA[lcode]));
        let dcode = distance_code(distance);
        dist.put(writer, dcode);
        writer.put((distance - usize::from(DIST_BASE[dcode])) as u32, u32::from(DIST_EXTRA[dcode]));
    }
    litlen.put(writer, END_OF_BLOCK);
}

/// The sync flush: an empty stored block, not final, ending on a byte boundary in
/// [`super::SYNC_FLUSH_TAIL`] (what zlib's `Z_SYNC_FLUSH` writes, and RFC 7692 §7.2.1 strips).
pub fn write_sync_flush(writer: &mut BitWriter) {
    write_stored(writer, &[], false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1951_3_2_7_run_length_coding_of_code_lengths() {
        // 4 fours: a 4 then "copy 3 times"; 20 zeros: "18" with 9; 2 ones as themselves.
        let lengths = [[4u8; 4].as_slice(), &[0; 20], &[1, 1]].concat();
        assert_eq!(run_lengths(&lengths), [(4, 0), (16, 0), (18, 9), (1, 0), (1, 0)]);
        // 7 fives: 5, then 16 with 6 (extra 3); 5 zeros: 17 with 2; 140 zeros: 138 + 2 singles.
        let lengths = [[5u8; 7].as_slice(), &[0; 5], &[0; 0]].concat();
        assert_eq!(run_lengths(&lengths), [(5, 0), (16, 3), (17, 2)]);
        assert_eq!(run_lengths(&[0; 140]), [(18, 127), (0, 0), (0, 0)]);
    }

    #[test]
    fn rfc1951_3_2_4_sync_flush_is_an_empty_stored_block_ending_00_00_ff_ff() {
        let mut out = Vec::new();
        write_sync_flush(&mut BitWriter::new(&mut out));
        assert_eq!(out, [0x00, 0x00, 0x00, 0xff, 0xff]);
        assert!(out.ends_with(&super::super::SYNC_FLUSH_TAIL));
    }

    #[test]
    fn stored_cost_counts_each_block_of_65535_bytes() {
        assert_eq!(stored_bits(0, 0), 8 + 32);
        assert_eq!(stored_bits(65536, 0), 8 + 32 + 8 + 32 + 8 * 65536);
        assert_eq!(stored_bits(1, 5), 3 + 32 + 8);
    }
}
