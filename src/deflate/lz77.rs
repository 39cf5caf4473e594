//! LZ77 matching with hash chains (RFC 1951 §4): bytes into literals and (length, distance)
//! pairs.
//!
//! # Theory of operation
//!
//! RFC 1951 §4 describes the method zlib uses and does not require it: hash each 3-byte
//! string, keep for each hash a chain of the positions where it occurred, newest first, and
//! at each position walk the chain looking for the longest match within the window.
//!
//! - `head[hash]` is the newest position with that hash, `prev[position % size]` the one
//!   before it with the same hash (positions are stored plus one, so 0 means "none"). The
//!   chains are never cleaned: an old slot may have been reused by a newer position, so a walk
//!   stops when positions stop decreasing or leave the window, and every candidate is checked
//!   byte by byte anyway.
//! - **Lazy matching** (§4: "the compressor ... then checks whether a longer match can be
//!   found starting at the next byte"): a match is held back one byte; if the next position
//!   starts a longer match, the held one becomes a literal. The default level does this;
//!   the fast level takes the first match it finds (greedy) and chains only a few deep.
//! - The buffer holds the window of earlier input (with context takeover) followed by the
//!   input being compressed. When it passes two windows it slides down by a multiple of the
//!   window, and every stored position slides with it (positions below the cut become 0).
//!
//! The tables are sized to the data: a matcher that only ever sees a 200-byte message
//! allocates a 256-slot chain and a 512-slot head, not 32 K of each.

#![forbid(unsafe_code)]

use super::{distance_code, length_code, END_OF_BLOCK, MAX_MATCH, MIN_MATCH};

/// How hard to look for matches. Values as zlib's levels 1 and 6 (`deflate.c`,
/// `configuration_table`), which are what users of zlib get by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effort {
    /// Hold each match back one byte in case the next is longer (§4's lazy evaluation).
    pub lazy: bool,
    /// The most chain links followed at one position.
    pub max_chain: usize,
    /// Stop looking once a match this long is found.
    pub nice_length: usize,
    /// Lazy: follow only a quarter of the chain when the held match is already this long.
    pub good_length: usize,
    /// Lazy: do not look for a longer match at all when the held one is this long. Greedy:
    /// insert the positions inside a match into the chains only for matches up to this long.
    pub max_lazy: usize,
}

/// The symbols of one block, with their frequencies for choosing its codes.
#[derive(Clone, Debug)]
pub struct Symbols {
    /// A literal byte (`< 256`), or `MATCH | length << 16 | distance`.
    pub tokens: Vec<u32>,
    /// How often each literal/length code (0..286) occurs; end-of-block counted once.
    pub litlen_freq: [u32; 286],
    /// How often each distance code (0..30) occurs.
    pub dist_freq: [u32; 30],
    /// How many input bytes the tokens stand for.
    pub bytes: usize,
}

/// The flag that marks a token as a match.
pub const MATCH: u32 = 1 << 31;

/// A block is written after this many symbols: big enough that its code tables (at most
/// about 100 bytes) cost little, small enough that the codes follow changes in the data.
/// zlib uses 16 K too (`lit_bufsize` at the default memory level).
pub const BLOCK_SYMBOLS: usize = 16 * 1024;

impl Default for Symbols {
    fn default() -> Self {
        Symbols::new()
    }
}

impl Symbols {
    pub fn new() -> Symbols {
        let mut symbols = Symbols { tokens: Vec::new(), litlen_freq: [0; 286], dist_freq: [0; 30], bytes: 0 };
        symbols.clear();
        symbols
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.litlen_freq = [0; 286];
        self.dist_freq = [0; 30];
        self.litlen_freq[END_OF_BLOCK] = 1;
        self.bytes = 0;
    }

    fn literal(&mut self, byte: u8) {
        self.tokens.push(u32::from(byte));
        self.litlen_freq[usize::from(byte)] += 1;
        self.bytes += 1;
    }

    fn matched(&mut self, length: usize, distance: usize) {
        self.tokens.push(MATCH | (length as u32) << 16 | distance as u32);
        self.litlen_freq[257 + length_code(length)] += 1;
        self.dist_freq[distance_code(distance)] += 1;
        self.bytes += length;
    }

    pub fn is_full(&self) -> bool {
        self.tokens.len() >= BLOCK_SYMBOLS
    }
}

/// The matcher's memory: the window and the hash chains.
#[derive(Clone, Debug)]
pub struct Matcher {
    effort: Effort,
    /// The farthest a match may reach back.
    window: usize,
    /// Earlier input kept for matching (at most two windows), then the input being matched.
    buf: Vec<u8>,
    /// Newest position + 1 for each hash.
    head: Vec<u32>,
    /// The previous position + 1 with the same hash, indexed by position modulo its length.
    prev: Vec<u32>,
    hash_bits: u32,
}

/// The hash of the 3 bytes at `at`: a multiplicative hash, the top `bits` bits.
fn hash3(buf: &[u8], at: usize, bits: u32) -> usize {
    let key = u32::from(buf[at]) | u32::from(buf[at + 1]) << 8 | u32::from(buf[at + 2]) << 16;
    (key.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

/// How many bytes at `a` and `b` agree, up to `max`; eight at a time.
fn common_length(buf: &[u8], a: usize, b: usize, max: usize) -> usize {
    let mut n = 0;
    while n + 8 <= max {
        let x = u64::from_le_bytes(word(&buf[a + n..a + n + 8]));
        let y = u64::from_le_bytes(word(&buf[b + n..b + n + 8]));
        if x != y {
            return n + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && buf[a + n] == buf[b + n] {
        n += 1;
    }
    n
}

fn word(bytes: &[u8]) -> [u8; 8] {
    let mut word = [0; 8];
    word.copy_from_slice(bytes);
    word
}

impl Matcher {
    /// An empty matcher; it allocates when given input.
    pub fn new(effort: Effort, window: usize) -> Matcher {
        Matcher { effort, window, buf: Vec::new(), head: Vec::new(), prev: Vec::new(), hash_bits: 0 }
    }

    /// Forgets all earlier input and frees the memory.
    pub fn reset(&mut self) {
        *self = Matcher::new(self.effort, self.window);
    }

    /// Bytes held between calls.
    pub fn retained_bytes(&self) -> usize {
        self.buf.capacity() + 4 * (self.head.capacity() + self.prev.capacity())
    }

    /// Makes sure the chains can span `span` bytes (the earlier input kept plus what is about
    /// to come, up to a window), rebuilding them larger if they are smaller.
    pub fn reserve(&mut self, upcoming: usize) {
        let span = (self.buf.len() + upcoming).min(self.window).max(256);
        let size = span.next_power_of_two();
        if self.prev.len() >= size {
            return;
        }
        self.prev = vec![0; size];
        // One more hash bit than the chain's size: short chains for well-spread data.
        self.hash_bits = (size.trailing_zeros() + 1).clamp(9, 15);
        self.head = vec![0; 1 << self.hash_bits];
        for at in 0..self.buf.len().saturating_sub(MIN_MATCH - 1) {
            self.insert(at);
        }
    }

    /// Records position `at` in its hash chain; returns the previous head (a candidate).
    fn insert(&mut self, at: usize) -> u32 {
        let hash = hash3(&self.buf, at, self.hash_bits);
        let candidate = self.head[hash];
        let slot = at & (self.prev.len() - 1);
        self.prev[slot] = candidate;
        self.head[hash] = at as u32 + 1;
        candidate
    }

    /// The longest match at `at` longer than `shorter_than_this`, walking from `candidate`.
    fn longest_match(&self, at: usize, candidate: u32, better_than: usize, mut chain: usize) -> (usize, usize) {
        let max = (self.buf.len() - at).min(MAX_MATCH);
        let (mut best, mut best_distance) = (better_than.max(MIN_MATCH - 1), 0);
        if max <= best {
            return (0, 0);
        }
        let lowest = at.saturating_sub(self.window);
        let mut next = candidate;
        while next != 0 && chain > 0 {
            let from = next as usize - 1;
            if from >= at || from < lowest {
                break;
            }
            // The byte that would make this match longer than the best decides fastest.
            if self.buf[from + best] == self.buf[at + best] {
                let len = common_length(&self.buf, from, at, max);
                if len > best {
                    (best, best_distance) = (len, at - from);
                    if len >= self.effort.nice_length || len == max {
                        break;
                    }
                }
            }
            let older = self.prev[from & (self.prev.len() - 1)];
            if older as usize > from {
                break;
            }
            next = older;
            chain -= 1;
        }
        if best_distance == 0 {
            (0, 0)
        } else {
            (best, best_distance)
        }
    }

    /// Appends `input` to the buffer (sliding first if it has passed two windows) and
    /// returns where it starts. [`Matcher::reserve`] must have been called for it.
    pub fn append(&mut self, input: &[u8]) -> usize {
        if self.buf.len() >= 2 * self.window {
            self.slide();
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(input);
        start
    }

    /// Drops whole windows from the front of the buffer, keeping at least one, and moves
    /// every stored position down with it. A multiple of the window keeps `prev`'s slots in
    /// place (its length divides the window).
    fn slide(&mut self) {
        let cut = (self.buf.len() - self.window) / self.window * self.window;
        self.buf.drain(..cut);
        let cut = cut as u32;
        for entry in self.head.iter_mut().chain(self.prev.iter_mut()) {
            *entry = entry.saturating_sub(cut);
        }
    }

    /// The bytes from `start` for a block written by `flush`.
    pub fn bytes(&self, start: usize, len: usize) -> &[u8] {
        &self.buf[start..start + len]
    }

    /// Matches the buffer from `start` to its end into `symbols`, calling `flush` with each
    /// full block's symbols and the bytes they stand for. Symbols that do not fill a block are
    /// left in `symbols`, their bytes starting at the returned position.
    pub fn run(&mut self, start: usize, symbols: &mut Symbols, flush: &mut dyn FnMut(&mut Symbols, &[u8])) -> usize {
        if self.effort.lazy {
            self.run_lazy(start, symbols, flush)
        } else {
            self.run_greedy(start, symbols, flush)
        }
    }

    fn run_greedy(&mut self, start: usize, symbols: &mut Symbols, flush: &mut dyn FnMut(&mut Symbols, &[u8])) -> usize {
        let end = self.buf.len();
        let (mut at, mut block_start) = (start, start);
        while at < end {
            if symbols.is_full() {
                flush(symbols, &self.buf[block_start..block_start + symbols.bytes]);
                block_start = at;
                symbols.clear();
            }
            let (len, distance) = if at + MIN_MATCH <= end {
                let candidate = self.insert(at);
                self.longest_match(at, candidate, 0, self.effort.max_chain)
            } else {
                (0, 0)
            };
            if len >= MIN_MATCH {
                symbols.matched(len, distance);
                if len <= self.effort.max_lazy {
                    for inside in at + 1..(at + len).min(end + 1 - MIN_MATCH) {
                        self.insert(inside);
                    }
                }
                at += len;
            } else {
                symbols.literal(self.buf[at]);
                at += 1;
            }
        }
        block_start
    }

    fn run_lazy(&mut self, start: usize, symbols: &mut Symbols, flush: &mut dyn FnMut(&mut Symbols, &[u8])) -> usize {
        let end = self.buf.len();
        let (mut at, mut block_start) = (start, start);
        // The match found at `at - 1`, held back; `held` says whether a byte is held at all.
        let (mut held, mut held_len, mut held_distance) = (false, 0, 0);
        while at < end {
            if symbols.is_full() {
                flush(symbols, &self.buf[block_start..block_start + symbols.bytes]);
                block_start += symbols.bytes;
                symbols.clear();
            }
            let (mut len, mut distance) = (0, 0);
            if at + MIN_MATCH <= end {
                let candidate = self.insert(at);
                if held_len < self.effort.max_lazy {
                    let chain = if held_len >= self.effort.good_length {
                        self.effort.max_chain / 4
                    } else {
                        self.effort.max_chain
                    };
                    (len, distance) = self.longest_match(at, candidate, held_len, chain);
                }
            }
            if held_len >= MIN_MATCH && len <= held_len {
                // The held match wins: emit it and skip the bytes it covers.
                symbols.matched(held_len, held_distance);
                let resume = at - 1 + held_len;
                for inside in at + 1..resume.min(end + 1 - MIN_MATCH) {
                    self.insert(inside);
                }
                at = resume;
                (held, held_len) = (false, 0);
            } else {
                if held {
                    symbols.literal(self.buf[at - 1]);
                }
                (held, held_len, held_distance) = (true, len, distance);
                at += 1;
            }
        }
        if held {
            symbols.literal(self.buf[end - 1]);
        }
        block_start
    }
}
