//! Decompression (RFC 1951 §3.2), as a resumable state machine.
//!
//! # Theory of operation
//!
//! An [`Inflater`] takes compressed bytes in pieces of any size, split at any byte or bit,
//! and appends what they decode to into the caller's buffer. It never looks back at input it
//! has returned from: what it needs to continue is in its state.
//!
//! - The **bit buffer** (`bits`, `nbits`) holds input bytes taken but not yet decoded.
//!   DEFLATE packs data "starting with the least-significant bit of the byte" (§3.1.1), so
//!   new bytes go above the bits already held and decoding takes bits from the bottom.
//! - The **state** (`State`) says which part of a block comes next (§3.2.3: a 3-bit
//!   header, then a stored block's lengths and bytes, or a dynamic block's code description,
//!   then Huffman-coded symbols up to end-of-block).
//! - A step that needs more bits than are held (a symbol, a length with its extra bits and
//!   its distance) is **atomic**: it is taken whole or not at all, so running out of input
//!   leaves the state as it was, and the next call starts the same step again with more bits.
//!   The longest step, a length code, its extra bits, a distance code and its extra bits,
//!   is 15 + 5 + 15 + 13 = 48 bits, and the buffer holds 56 when input allows.
//! - Two paths decode a block's data. The **fast path** runs while at least 8 input bytes
//!   are left and a longest match fits under the limit: it loads 8 bytes at a time, decodes
//!   a literal or a whole length/distance pair per load with no check for running out, and
//!   writes into room made in the caller's buffer (matches copied 8 or 16 bytes at a time).
//!   The **slow path** takes over at the edges, near the end of the input or of the limit: a
//!   byte at a time, each step atomic as above. Both decode the same bits the same way
//!   (`the_fast_path_and_a_byte_at_a_time_agree_on_damaged_streams`); profiled with
//!   callgrind on Autobahn's data1.html, the old single path spent half its instructions on
//!   walking codes over 9 bits a bit at a time and on refilling a byte at a time, which
//!   [`super::huffman::Decoder`]'s two-level table and the 8-byte loads removed.
//! - The **window** (`history`) keeps the last `2^window_bits` bytes output before this call,
//!   for back-references into earlier calls (§3.2: "the LZ77 algorithm may use a reference to
//!   a duplicated string occurring in a previous block, up to 32K input bytes before"); this
//!   call's own output is read back from the caller's buffer.
//!
//! Output is bounded: a call that would make the caller's buffer longer than its `limit`
//! fails with [`InflateError::OutputLimit`] before writing past it. A few hundred bytes can
//! describe gigabytes ("a decompression bomb"); this is what stops them.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::OnceLock;

use super::huffman::{entry_len, entry_symbol, CodeError, Decoder, Lookup};
use super::{
    fixed_lengths, CODE_LENGTH_ORDER, DIST_BASE, DIST_EXTRA, END_OF_BLOCK, LENGTH_BASE, LENGTH_EXTRA, MAX_MATCH,
    MAX_WINDOW_BITS, MIN_WINDOW_BITS,
};

/// Everything a compressed stream can get wrong, and the decoder's own limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// §3.2.3: BTYPE 11 is "reserved (error)".
    ReservedBlockType,
    /// §3.2.4: NLEN is not "the one's complement of LEN".
    StoredLengthMismatch,
    /// §3.2.7: HLIT over 286 or HDIST over 30 (the 5-bit fields can say 288 and 32).
    TooManyCodes,
    /// The code lengths describe no prefix code (over-subscribed or incomplete).
    BadCode(CodeError),
    /// §3.2.7: code 16 ("copy the previous code length") with no previous length, or a
    /// repeat that runs past HLIT + HDIST lengths.
    BadLengthRepeat,
    /// §3.2.5: "the end of block symbol (256)" has no code, so no block could ever end.
    MissingEndOfBlock,
    /// A code that the block's tables do not have, or one of the symbols §3.2.6 says "will
    /// never actually occur" (literal/length 286-287, distance 30-31).
    InvalidSymbol,
    /// A distance back past the start of the output, or past the window.
    DistanceTooFarBack,
    /// The output would pass the caller's limit.
    OutputLimit,
    /// The input ended inside a block ([`Inflater::finish`]).
    UnexpectedEnd,
}

impl InflateError {
    /// A short reason, for a close frame or a log line.
    pub fn describe(&self) -> &'static str {
        match self {
            InflateError::ReservedBlockType => "reserved DEFLATE block type",
            InflateError::StoredLengthMismatch => "stored block length check failed",
            InflateError::TooManyCodes => "too many DEFLATE codes",
            InflateError::BadCode(CodeError::OverSubscribed) => "over-subscribed Huffman code",
            InflateError::BadCode(CodeError::Incomplete) => "incomplete Huffman code",
            InflateError::BadLengthRepeat => "bad code length repeat",
            InflateError::MissingEndOfBlock => "no end-of-block code",
            InflateError::InvalidSymbol => "invalid DEFLATE code",
            InflateError::DistanceTooFarBack => "DEFLATE distance too far back",
            InflateError::OutputLimit => "decompressed data over the limit",
            InflateError::UnexpectedEnd => "compressed data ends inside a block",
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for InflateError {}

/// What a call got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// All the input was taken; the stream goes on.
    NeedInput,
    /// The final block (BFINAL set) has ended; input after it is ignored.
    End,
}

/// The Huffman tables of the current block.
#[derive(Clone, Debug)]
enum Tables {
    /// §3.2.6: the fixed codes, built once per process.
    Fixed,
    /// §3.2.7: the block's own literal/length and distance codes.
    Dynamic(Box<(Decoder, Decoder)>),
}

/// Where in the stream the decoder is (§3.2.3). Each state names what the next bits are.
#[derive(Clone, Debug)]
enum State {
    /// A block header: BFINAL and BTYPE, 3 bits.
    Header,
    /// A stored block's LEN and NLEN, after skipping to a byte boundary (§3.2.4).
    StoredLength,
    /// A stored block's bytes, `remaining` still to copy.
    Stored { remaining: usize },
    /// A dynamic block's HLIT, HDIST and HCLEN: 14 bits (§3.2.7).
    DynamicCounts,
    /// HCLEN code lengths for the code length alphabet, 3 bits each, `read` of them so far.
    CodeLengthLengths { hlit: usize, hdist: usize, hclen: usize, read: usize, lengths: [u8; 19] },
    /// The HLIT + HDIST code lengths, run-length coded with the code length code.
    CodeLengths { hlit: usize, hdist: usize, code: Box<Decoder>, lengths: Vec<u8> },
    /// Huffman-coded literals and length/distance pairs up to end-of-block.
    Data(Tables),
    /// After the final block.
    End,
}

/// A resumable DEFLATE decoder with a window of `2^window_bits` bytes.
#[derive(Clone, Debug)]
pub struct Inflater {
    state: State,
    /// Input bits taken and not yet used, the next one lowest.
    bits: u64,
    nbits: u32,
    /// Whether the block being decoded has BFINAL set.
    final_block: bool,
    /// The last bytes output before the current call, at most `2 * window` (trimmed to
    /// `window` only when it doubles, so that trimming is not a copy per call).
    history: Vec<u8>,
    /// `2^window_bits`: the farthest a distance may reach.
    window: usize,
}

/// The fixed codes' decoders (§3.2.6), built on first use.
fn fixed_tables() -> &'static (Decoder, Decoder) {
    static FIXED: OnceLock<(Decoder, Decoder)> = OnceLock::new();
    FIXED.get_or_init(|| {
        let (litlen, dist) = fixed_lengths();
        // The fixed lengths are a complete code by construction (§3.2.6).
        let build = |lengths: &[u8]| Decoder::new(lengths).expect("RFC 1951 §3.2.6 codes are complete");
        (build(&litlen), build(&dist))
    })
}

impl Inflater {
    /// A decoder whose back-references may reach `2^window_bits` bytes, clamped to RFC 1951's
    /// 8..=15 (RFC 7692 §7.1.2 negotiates the same range).
    pub fn new(window_bits: u8) -> Inflater {
        let window_bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Inflater {
            state: State::Header,
            bits: 0,
            nbits: 0,
            final_block: false,
            history: Vec::new(),
            window: 1 << window_bits,
        }
    }

    /// Forgets the window and any partial input: the decoder is as new.
    pub fn reset(&mut self) {
        self.history.clear();
        self.history.shrink_to_fit();
        self.start_stream();
    }

    /// Starts a new stream that may refer back into the window of the previous one (what
    /// RFC 7692 §7.2.3.4 asks after a message that ended with a final block). Bits held from
    /// the old stream are dropped.
    pub fn start_stream(&mut self) {
        self.state = State::Header;
        self.bits = 0;
        self.nbits = 0;
        self.final_block = false;
    }

    /// Whether the input so far ends exactly between blocks with no whole byte held (where a
    /// sender's flush leaves a stream), or after the final block.
    pub fn at_block_boundary(&self) -> bool {
        match self.state {
            State::Header => self.nbits < 8,
            // What follows the final block is not part of the stream (RFC 7692 §7.2.3.4's
            // message ends with one and then gets the flush tail appended).
            State::End => true,
            _ => false,
        }
    }

    /// The input has ended: an error unless it ended between blocks or after the last one.
    pub fn finish(&self) -> Result<(), InflateError> {
        if self.at_block_boundary() {
            Ok(())
        } else {
            Err(InflateError::UnexpectedEnd)
        }
    }

    /// Whether the final block has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::End)
    }

    /// The bytes this decoder keeps between calls (the window and any code tables), for
    /// memory accounting.
    pub fn retained_bytes(&self) -> usize {
        self.history.capacity()
            + match &self.state {
                State::CodeLengths { lengths, .. } => lengths.capacity(),
                _ => 0,
            }
    }

    /// Decodes `input`, appending to `out`, which may not grow past `limit` bytes. Takes all
    /// of `input` unless the stream ends in it.
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<Progress, InflateError> {
        let start = out.len();
        let mut pos = 0;
        let result = self.run(input, &mut pos, out, start, limit);
        self.remember(&out[start..]);
        result
    }

    /// Keeps the last `window` bytes of output for the next call's back-references.
    fn remember(&mut self, produced: &[u8]) {
        if produced.len() >= self.window {
            self.history.clear();
            self.history.extend_from_slice(&produced[produced.len() - self.window..]);
            return;
        }
        if self.history.len() + produced.len() > 2 * self.window {
            let drop = self.history.len() + produced.len() - self.window;
            self.history.drain(..drop);
        }
        self.history.extend_from_slice(produced);
    }

    /// Tops the bit buffer up to at least 56 bits, or to the end of the input.
    fn refill(&mut self, input: &[u8], pos: &mut usize) {
        while self.nbits <= 56 && *pos < input.len() {
            self.bits |= u64::from(input[*pos]) << self.nbits;
            self.nbits += 8;
            *pos += 1;
        }
    }

    fn consume(&mut self, n: u32) {
        self.bits >>= n;
        self.nbits -= n;
    }

    /// Takes `n` bits (up to 32), or `None` (taking nothing) if the input has run out.
    fn take(&mut self, n: u32, input: &[u8], pos: &mut usize) -> Option<u32> {
        if self.nbits < n {
            self.refill(input, pos);
            if self.nbits < n {
                return None;
            }
        }
        let value = (self.bits & ((1u64 << n) - 1)) as u32;
        self.consume(n);
        Some(value)
    }

    fn run(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
        start: usize,
        limit: usize,
    ) -> Result<Progress, InflateError> {
        loop {
            match &mut self.state {
                State::End => return Ok(Progress::End),
                State::Header => {
                    let Some(header) = self.take(3, input, pos) else { return Ok(Progress::NeedInput) };
                    self.final_block = header & 1 == 1;
                    // §3.2.3: "BTYPE specifies how the data are compressed".
                    self.state = match header >> 1 {
                        0 => State::StoredLength,
                        1 => State::Data(Tables::Fixed),
                        2 => State::DynamicCounts,
                        _ => return Err(InflateError::ReservedBlockType),
                    };
                }
                State::StoredLength => {
                    // §3.2.4: "any bits of input up to the next byte boundary are ignored".
                    let skip = self.nbits % 8;
                    self.consume(skip);
                    let Some(lengths) = self.take(32, input, pos) else { return Ok(Progress::NeedInput) };
                    let (len, nlen) = (lengths & 0xffff, lengths >> 16);
                    if len != !nlen & 0xffff {
                        return Err(InflateError::StoredLengthMismatch);
                    }
                    self.state = State::Stored { remaining: len as usize };
                }
                State::Stored { remaining } => {
                    let mut remaining = *remaining;
                    // Whole bytes already in the bit buffer come first, then the input itself.
                    while remaining > 0 && self.nbits >= 8 {
                        push_bounded(out, &[self.bits as u8], limit)?;
                        self.consume(8);
                        remaining -= 1;
                    }
                    let direct = remaining.min(input.len() - *pos);
                    push_bounded(out, &input[*pos..*pos + direct], limit)?;
                    *pos += direct;
                    remaining -= direct;
                    if remaining > 0 {
                        self.state = State::Stored { remaining };
                        return Ok(Progress::NeedInput);
                    }
                    self.end_block();
                }
                State::DynamicCounts => {
                    let Some(counts) = self.take(14, input, pos) else { return Ok(Progress::NeedInput) };
                    // §3.2.7: "HLIT, # of Literal/Length codes - 257 (257 - 286)", "HDIST, #
                    // of Distance codes - 1 (1 - 32)", "HCLEN, # of Code Length codes - 4".
                    let hlit = (counts & 31) as usize + 257;
                    let hdist = (counts >> 5 & 31) as usize + 1;
                    let hclen = (counts >> 10) as usize + 4;
                    if hlit > 286 || hdist > 30 {
                        return Err(InflateError::TooManyCodes);
                    }
                    self.state = State::CodeLengthLengths { hlit, hdist, hclen, read: 0, lengths: [0; 19] };
                }
                State::CodeLengthLengths { hlit, hdist, hclen, read, lengths } => {
                    let (hlit, hdist, hclen, mut read, mut lengths) = (*hlit, *hdist, *hclen, *read, *lengths);
                    while read < hclen {
                        let Some(len) = self.take(3, input, pos) else {
                            self.state = State::CodeLengthLengths { hlit, hdist, hclen, read, lengths };
                            return Ok(Progress::NeedInput);
                        };
                        lengths[CODE_LENGTH_ORDER[read]] = len as u8;
                        read += 1;
                    }
                    let code = Decoder::new(&lengths).map_err(InflateError::BadCode)?;
                    let lengths = Vec::with_capacity(hlit + hdist);
                    self.state = State::CodeLengths { hlit, hdist, code: Box::new(code), lengths };
                }
                State::CodeLengths { .. } => {
                    if !self.read_code_lengths(input, pos)? {
                        return Ok(Progress::NeedInput);
                    }
                }
                State::Data(_) => {
                    if !self.read_data(input, pos, out, start, limit)? {
                        return Ok(Progress::NeedInput);
                    }
                }
            }
        }
    }

    /// After a block: the next header, or the end of the stream.
    fn end_block(&mut self) {
        self.state = if self.final_block { State::End } else { State::Header };
    }

    /// §3.2.7's run-length coded code lengths. `Ok(true)` when the block's tables are built,
    /// `Ok(false)` when the input ran out first.
    fn read_code_lengths(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, InflateError> {
        let State::CodeLengths { hlit, hdist, code, lengths } = &mut self.state else {
            unreachable!("called in State::CodeLengths only")
        };
        let (hlit, hdist) = (*hlit, *hdist);
        while lengths.len() < hlit + hdist {
            if self.nbits < 7 + 7 {
                // The longest step: a 7-bit code and symbol 18's 7 extra bits.
                while self.nbits <= 56 && *pos < input.len() {
                    self.bits |= u64::from(input[*pos]) << self.nbits;
                    self.nbits += 8;
                    *pos += 1;
                }
            }
            let (symbol, len) = match code.decode(self.bits, self.nbits) {
                Lookup::Symbol { symbol, len } => (symbol, u32::from(len)),
                Lookup::NeedMore => return Ok(false),
                Lookup::Invalid => return Err(InflateError::InvalidSymbol),
            };
            // 16: "Copy the previous code length 3 - 6 times. The next 2 bits indicate
            // repeat length"; 17: "Repeat a code length of 0 for 3 - 10 times (3 bits of
            // length)"; 18: "Repeat a code length of 0 for 11 - 138 times (7 bits of length)".
            let (extra, base, value) = match symbol {
                0..=15 => (0, 1, symbol as u8),
                16 => (2, 3, *lengths.last().ok_or(InflateError::BadLengthRepeat)?),
                17 => (3, 3, 0),
                _ => (7, 11, 0),
            };
            if self.nbits < len + extra {
                return Ok(false);
            }
            let repeat = base + ((self.bits >> len) & ((1 << extra) - 1)) as usize;
            self.bits >>= len + extra;
            self.nbits -= len + extra;
            if lengths.len() + repeat > hlit + hdist {
                return Err(InflateError::BadLengthRepeat);
            }
            lengths.resize(lengths.len() + repeat, value);
        }
        if lengths[END_OF_BLOCK] == 0 {
            return Err(InflateError::MissingEndOfBlock);
        }
        let litlen = Decoder::new(&lengths[..hlit]).map_err(InflateError::BadCode)?;
        let dist = Decoder::new(&lengths[hlit..]).map_err(InflateError::BadCode)?;
        self.state = State::Data(Tables::Dynamic(Box::new((litlen, dist))));
        Ok(true)
    }

    /// Huffman-coded data (§3.2.5) up to end-of-block. `Ok(true)` at the end of the block,
    /// `Ok(false)` when the input ran out first.
    fn read_data(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
        start: usize,
        limit: usize,
    ) -> Result<bool, InflateError> {
        let State::Data(tables) = &self.state else { unreachable!("called in State::Data only") };
        let (litlen, dist) = match tables {
            Tables::Fixed => fixed_tables(),
            Tables::Dynamic(tables) => &**tables,
        };
        let (mut bits, mut nbits) = (self.bits, self.nbits);
        let result = loop {
            let spare = out.capacity() - out.len();
            if input.len() - *pos >= 8
                && limit.saturating_sub(out.len()) >= FAST_ROOM
                && (spare >= FAST_ROOM || (spare == 0 && 4 * (input.len() - *pos) >= 2 * FAST_ROOM))
            {
                // Room to write into, zeroed (no `unsafe` here to skip that): the capacity
                // the caller has left if it is enough, else about what the input left could
                // make, within the limit and a bound on what the zeroing may waste at the
                // end of a block. What the fast path does not fill is cut off after it. A
                // buffer is grown only when it is full and the input left promises to fill
                // the room, so that a caller that reserved the exact size never has its output
                // moved, and a short message does not get a kilobyte for a hundred bytes:
                // until then the slow path writes into what capacity there is.
                let begin = out.len();
                let grow =
                    if spare >= FAST_ROOM { spare.min(MAX_GROW) } else { (4 * (input.len() - *pos)).min(MAX_GROW) };
                out.resize(limit.min(begin + grow), 0);
                let mut written = begin;
                let history = Window { before: &self.history, start, window: self.window };
                let fast = fast_data(litlen, dist, history, input, pos, out, &mut written, &mut bits, &mut nbits);
                out.truncate(written);
                if let Some(result) = fast {
                    break result;
                }
            }
            // The slow path, near the end of the input, the limit or the buffer's capacity: a
            // step taken only when all its bits are there, and written with its checks.
            // Input is still loaded 8 bytes at a time while there are 8.
            if input.len() - *pos >= 8 {
                let next: [u8; 8] = input[*pos..*pos + 8].try_into().expect("8 bytes");
                bits |= u64::from_le_bytes(next) << nbits;
                *pos += (63 - nbits as usize) >> 3;
                nbits |= 56;
            } else {
                while nbits <= 56 && *pos < input.len() {
                    bits |= u64::from(input[*pos]) << nbits;
                    nbits += 8;
                    *pos += 1;
                }
            }
            let (symbol, mut used) = match litlen.decode(bits, nbits) {
                Lookup::Symbol { symbol, len } => (symbol as usize, u32::from(len)),
                Lookup::NeedMore => break Ok(false),
                Lookup::Invalid => break Err(InflateError::InvalidSymbol),
            };
            if symbol < 256 {
                if out.len() >= limit {
                    break Err(InflateError::OutputLimit);
                }
                out.push(symbol as u8);
                bits >>= used;
                nbits -= used;
                continue;
            }
            if symbol == END_OF_BLOCK {
                bits >>= used;
                nbits -= used;
                break Ok(true);
            }
            // A length: its extra bits, then a distance code and its extra bits (§3.2.5).
            let index = symbol - 257;
            if index >= LENGTH_BASE.len() {
                break Err(InflateError::InvalidSymbol);
            }
            let extra = u32::from(LENGTH_EXTRA[index]);
            if nbits < used + extra {
                break Ok(false);
            }
            let length = usize::from(LENGTH_BASE[index]) + ((bits >> used) & ((1 << extra) - 1)) as usize;
            used += extra;
            let (dist_symbol, dist_len) = match dist.decode(bits >> used, nbits - used) {
                Lookup::Symbol { symbol, len } => (symbol as usize, u32::from(len)),
                Lookup::NeedMore => break Ok(false),
                Lookup::Invalid => break Err(InflateError::InvalidSymbol),
            };
            used += dist_len;
            if dist_symbol >= DIST_BASE.len() {
                break Err(InflateError::InvalidSymbol);
            }
            let extra = u32::from(DIST_EXTRA[dist_symbol]);
            if nbits < used + extra {
                break Ok(false);
            }
            let distance = usize::from(DIST_BASE[dist_symbol]) + ((bits >> used) & ((1 << extra) - 1)) as usize;
            used += extra;
            if out.len() + length > limit {
                break Err(InflateError::OutputLimit);
            }
            let at = out.len();
            out.resize(at + length, 0);
            let history = Window { before: &self.history, start, window: self.window };
            if let Err(error) = copy_exact(out, at, distance, length, history) {
                out.truncate(at);
                break Err(error);
            }
            bits >>= used;
            nbits -= used;
        };
        // Only the bits held stay: the ones the fast path's loads left above them are input
        // not taken yet.
        if nbits < 64 {
            bits &= (1 << nbits) - 1;
        }
        self.bits = bits;
        self.nbits = nbits;
        if result == Ok(true) {
            self.end_block();
        }
        result
    }
}

/// Room the fast path keeps ahead of what it writes: a longest match, and the 15 bytes past it
/// that a 16-byte piece of a copy may write before they are written again or cut off.
const FAST_ROOM: usize = MAX_MATCH + 16;

/// The most the fast path grows the output by at a time: room left over when a block ends
/// has been zeroed for nothing.
const MAX_GROW: usize = 8 * 1024;

/// What a back-reference may reach: this call's output from `start` and, before it, the
/// window kept from earlier calls.
#[derive(Clone, Copy)]
struct Window<'a> {
    before: &'a [u8],
    start: usize,
    window: usize,
}

/// The fast path of [`Inflater::read_data`], while at least 8 input bytes are left and
/// [`FAST_ROOM`] bytes of `out` (already sized, zeroed) are free past `written`. Each step
/// first loads 8 input bytes at once, which fills the bit buffer to 56-63 bits, more than the
/// longest step takes (48), so no step can run out of bits, pass the room or need undoing.
/// The load also leaves bits of the next input bytes above `nbits`: they are those bytes' own
/// bits, which the next load ORs in again unchanged (libdeflate's trick), and the caller
/// clears them when it stops. `None` when the input or the room runs short: the caller
/// carries on a step at a time.
#[allow(clippy::too_many_arguments)] // the decoder's registers, kept in locals across the loop
fn fast_data(
    litlen: &Decoder,
    dist: &Decoder,
    history: Window<'_>,
    input: &[u8],
    pos: &mut usize,
    out: &mut [u8],
    written: &mut usize,
    bits: &mut u64,
    nbits: &mut u32,
) -> Option<Result<bool, InflateError>> {
    let (mut p, mut o, mut b, mut n) = (*pos, *written, *bits, *nbits);
    let result = loop {
        if input.len() - p < 8 || out.len() - o < FAST_ROOM {
            break None;
        }
        let next: [u8; 8] = input[p..p + 8].try_into().expect("8 bytes");
        b |= u64::from_le_bytes(next) << n;
        p += (63 - n as usize) >> 3;
        n |= 56;
        let entry = litlen.entry(b);
        if entry < 256 << 16 {
            // A literal (§3.2.5: "0 - 255: represent literal bytes"), and a second one without
            // loading again: one takes at most 15 of the 56 bits.
            let used = entry_len(entry);
            b >>= used;
            n -= used;
            out[o] = entry_symbol(entry) as u8;
            o += 1;
            let entry = litlen.entry(b);
            if entry < 256 << 16 {
                let used = entry_len(entry);
                b >>= used;
                n -= used;
                out[o] = entry_symbol(entry) as u8;
                o += 1;
            }
            continue;
        }
        let used = entry_len(entry);
        b >>= used;
        n -= used;
        let symbol = entry_symbol(entry);
        if symbol == END_OF_BLOCK {
            break Some(Ok(true));
        }
        // A length: its extra bits, then a distance code and its extra bits (§3.2.5).
        let Some((&base, &extra)) =
            LENGTH_BASE.get(symbol.wrapping_sub(257)).zip(LENGTH_EXTRA.get(symbol.wrapping_sub(257)))
        else {
            break Some(Err(InflateError::InvalidSymbol));
        };
        let length = usize::from(base) + (b & ((1 << extra) - 1)) as usize;
        b >>= extra;
        n -= u32::from(extra);
        let entry = dist.entry(b);
        let symbol = entry_symbol(entry);
        let Some((&base, &extra)) = DIST_BASE.get(symbol).zip(DIST_EXTRA.get(symbol)) else {
            break Some(Err(InflateError::InvalidSymbol));
        };
        let used = entry_len(entry);
        let distance = usize::from(base) + ((b >> used) & ((1 << extra) - 1)) as usize;
        b >>= used + u32::from(extra);
        n -= used + u32::from(extra);
        let produced = o - history.start;
        if distance <= produced && distance <= history.window {
            copy_in_place(out, o, distance, length);
        } else if let Err(error) = copy_exact(out, o, distance, length, history) {
            break Some(Err(error));
        }
        o += length;
    };
    (*pos, *written, *bits, *nbits) = (p, o, b, n);
    result
}

/// Writes `length` bytes at `out[at..]` from `distance` back, which lies in `out` itself. The
/// copy may overlap what it writes (§3.2.3: "the referenced string may overlap the current
/// position"), so it goes forward in pieces that were each written before they are read: 16
/// or 8 bytes at a time when `distance` allows (up to 15 bytes past the match, which the next
/// step overwrites or the caller cuts off; a call to `memcpy` for 3 to 30 bytes costs more
/// than the copy), one `memcpy` for a long match that does not overlap, a fill for a run of
/// one byte, one byte at a time for the other short periods.
#[inline(always)]
fn copy_in_place(out: &mut [u8], at: usize, distance: usize, length: usize) {
    let from = at - distance;
    if distance >= length && length >= 32 {
        out.copy_within(from..from + length, at);
    } else if distance >= 16 {
        for i in (0..length).step_by(16) {
            out.copy_within(from + i..from + i + 16, at + i);
        }
    } else if distance >= 8 {
        for i in (0..length).step_by(8) {
            out.copy_within(from + i..from + i + 8, at + i);
        }
    } else if distance == 1 {
        let byte = out[from];
        out[at..at + length].fill(byte);
    } else {
        for i in 0..length {
            out[at + i] = out[from + i];
        }
    }
}

/// Writes `length` bytes at `out[at..]` from `distance` back, and not a byte past them: first
/// from the window kept from earlier calls if the match starts before this call's output,
/// then from `out`, one byte at a time. An error if it reaches past that window (so past
/// the start of the stream) or past the negotiated window size. For the matches that
/// [`copy_in_place`] cannot take, and near the limit.
#[cold]
fn copy_exact(
    out: &mut [u8],
    at: usize,
    distance: usize,
    length: usize,
    history: Window<'_>,
) -> Result<(), InflateError> {
    let produced = at - history.start;
    if distance > history.window || distance > produced + history.before.len() {
        return Err(InflateError::DistanceTooFarBack);
    }
    let mut done = 0;
    if distance > produced {
        let from = history.before.len() - (distance - produced);
        done = length.min(distance - produced);
        out[at..at + done].copy_from_slice(&history.before[from..from + done]);
    }
    for i in done..length {
        out[at + i] = out[at + i - distance];
    }
    Ok(())
}

/// Appends `bytes` unless that would take `out` past `limit`.
fn push_bounded(out: &mut Vec<u8>, bytes: &[u8], limit: usize) -> Result<(), InflateError> {
    if out.len() + bytes.len() > limit {
        return Err(InflateError::OutputLimit);
    }
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Inflates `input` whole, then split at every byte, and checks they agree.
    fn inflate_every_way(input: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let whole = inflate_pieces(&[input], limit);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(inflate_pieces(&[a, b], limit), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(inflate_pieces(&bytes, limit), whole, "byte by byte");
        whole
    }

    fn inflate_pieces(pieces: &[&[u8]], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut inflater = Inflater::new(15);
        let mut out = Vec::new();
        for piece in pieces {
            inflater.inflate(piece, &mut out, limit)?;
        }
        Ok(out)
    }

    const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

    fn with_tail(data: &[u8]) -> Vec<u8> {
        [data, &TAIL].concat()
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_in_one_compressed_block() {
        assert_eq!(inflate_every_way(&with_tail(&hex("f248cdc9c90700")), 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_3_hello_in_a_block_with_no_compression() {
        assert_eq!(inflate_every_way(&with_tail(&hex("000500faff48656c6c6f00")), 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_4_hello_in_a_block_with_bfinal_set() {
        let mut inflater = Inflater::new(15);
        let mut out = Vec::new();
        assert_eq!(inflater.inflate(&with_tail(&hex("f348cdc9c9070000")), &mut out, 100), Ok(Progress::End));
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_5_hello_in_two_blocks() {
        assert_eq!(inflate_every_way(&with_tail(&hex("f24805000000ffffcac9c90700")), 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_2_second_message_refers_to_the_first_through_the_shared_window() {
        let mut inflater = Inflater::new(15);
        let mut first = Vec::new();
        inflater.inflate(&with_tail(&hex("f248cdc9c90700")), &mut first, 100).unwrap();
        let mut second = Vec::new();
        inflater.inflate(&with_tail(&hex("f200110000")), &mut second, 100).unwrap();
        assert_eq!((first.as_slice(), second.as_slice()), (&b"Hello"[..], &b"Hello"[..]));
        // Without the first message's window the same bytes point before the start.
        let mut fresh = Inflater::new(15);
        assert_eq!(fresh.inflate(&hex("f200110000"), &mut Vec::new(), 100), Err(InflateError::DistanceTooFarBack));
    }

    #[test]
    fn rfc1951_3_2_7_dynamic_block_from_zlib() {
        // Python: zlib.compressobj(9, zlib.DEFLATED, -15) over the first sentence of RFC 1951's
        // abstract, then Z_SYNC_FLUSH.
        let text = concat!(
            "This specification defines a lossless compressed data format that compresses data using a ",
            "combination of the LZ77 algorithm and Huffman coding, with efficiency comparable to the best ",
            "currently available general-purpose compression methods."
        );
        let input = hex(concat!(
            "3c8e310ec2300c45afe203006bafc0c0c8c4e6264e6329b1a33801717b4c2b75b12cbfffbfff33b381350a9c38e0",
            "6015889458c800a1a8592133085a5bf78522441c08497bc50123fb38991d6c1acbe666bfaf2c47a426d7123c5ecb02",
            "5836ed3c72059408f7995245717574db053e4e8092976192f0ddd3b1e35a0886ee212b993f9dbd938cf2057c23979d",
            "6f24d4b15cdbec4d8dce62ff029546d668b71f000000ffff"
        ));
        assert_eq!(input[0] >> 1 & 3, 2, "BTYPE 10: dynamic Huffman codes");
        assert_eq!(inflate_every_way(&input, 1000).unwrap(), text.as_bytes());
        assert_eq!(inflate_every_way(&input, text.len() - 1), Err(InflateError::OutputLimit));
    }

    #[test]
    fn rfc1951_3_2_4_stored_block_lengths_must_be_complements() {
        assert_eq!(inflate_every_way(&hex("010500faff48656c6c6f"), 100).unwrap(), b"Hello");
        assert_eq!(inflate_every_way(&hex("010500fbff48656c6c6f"), 100), Err(InflateError::StoredLengthMismatch));
    }

    #[test]
    fn rfc1951_3_2_3_block_type_11_is_an_error() {
        assert_eq!(inflate_every_way(&[0b111], 100), Err(InflateError::ReservedBlockType));
    }

    #[test]
    fn rfc1951_3_2_6_literal_length_codes_286_and_287_never_occur() {
        // A fixed block (BFINAL 1, BTYPE 01) whose first code is 11000110, literal/length 286.
        let code = super::super::huffman::reverse(0b1100_0110, 8) as u32;
        let bits = 0b011 | code << 3;
        let input = [bits as u8, (bits >> 8) as u8];
        assert_eq!(inflate_every_way(&input, 100), Err(InflateError::InvalidSymbol));
    }

    #[test]
    fn rfc1951_3_2_7_hlit_over_286_is_an_error() {
        // BFINAL 1, BTYPE 10, HLIT 30 (287 codes).
        let bits: u32 = 0b101 | 30 << 3;
        let input = [bits as u8, (bits >> 8) as u8, (bits >> 16) as u8];
        assert_eq!(inflate_every_way(&input, 100), Err(InflateError::TooManyCodes));
    }

    #[test]
    fn distance_past_the_start_of_the_output_is_an_error() {
        // zlib output for "aaaa..." begins with a literal; a stream that begins with a match
        // has nothing to copy. Fixed block: length 3 (code 257 = 0000001), distance 1 (00000).
        let mut bits: u64 = 0b011;
        let mut n = 3;
        for (code, len) in [(super::super::huffman::reverse(0b000_0001, 7), 7), (0, 5)] {
            bits |= u64::from(code) << n;
            n += len;
        }
        let input = bits.to_le_bytes();
        assert_eq!(inflate_every_way(&input[..2], 100), Err(InflateError::DistanceTooFarBack));
    }

    #[test]
    fn output_over_the_limit_is_an_error_not_an_allocation() {
        // 1 MiB of zeros: about a thousand bytes of input.
        let bomb = super::super::Deflater::new(super::super::Level::Default, 15).compress_to_vec(&[0; 1 << 20]);
        assert!(bomb.len() < 2048, "{}", bomb.len());
        let mut out = Vec::new();
        let result = Inflater::new(15).inflate(&bomb, &mut out, 64 * 1024);
        assert_eq!(result, Err(InflateError::OutputLimit));
        assert!(out.len() <= 64 * 1024);
        assert_eq!(inflate_pieces(&[&bomb], 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_window_of_8_bits_refuses_distances_over_256() {
        let mut data = b"0123456789".repeat(30);
        data.extend_from_slice(b"0123456789");
        let compressed = super::super::Deflater::new(super::super::Level::Default, 15).compress_to_vec(&data);
        let mut narrow = Inflater::new(8);
        // The encoder used distance 10 only: it fits.
        assert_eq!(narrow.inflate(&compressed, &mut Vec::new(), 1000), Ok(Progress::NeedInput));
        let far = [vec![b'x'; 300], b"abcdefgh".to_vec(), vec![b'y'; 300], b"abcdefgh".to_vec()].concat();
        let compressed = super::super::Deflater::new(super::super::Level::Default, 15).compress_to_vec(&far);
        let mut narrow = Inflater::new(8);
        assert_eq!(narrow.inflate(&compressed, &mut Vec::new(), 1000), Err(InflateError::DistanceTooFarBack));
    }

    /// Inflates `input` in pieces of `piece` bytes; the outcome and every byte output, even
    /// when it fails.
    fn inflate_by(input: &[u8], piece: usize, limit: usize) -> (Result<(), InflateError>, Vec<u8>) {
        let mut inflater = Inflater::new(15);
        let mut out = Vec::new();
        for piece in input.chunks(piece) {
            if let Err(error) = inflater.inflate(piece, &mut out, limit) {
                return (Err(error), out);
            }
            assert!(out.len() <= limit);
        }
        (Ok(()), out)
    }

    /// Long enough for the fast path (8 input bytes at a time), with literals, short and long
    /// matches, runs, and a dynamic block from each compressor.
    fn long_streams() -> Vec<Vec<u8>> {
        let text: Vec<u8> = (0..3000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"text\":\"{}\"}}", "abcdefghij".repeat(i as usize % 7)).into_bytes())
            .chain(std::iter::repeat_n(b'z', 3000))
            .chain((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8))
            .collect();
        let ours = super::super::Deflater::new(super::super::Level::Default, 15).compress_to_vec(&text);
        let mut zlib = flate2::Compress::new(flate2::Compression::new(9), false);
        let mut theirs = Vec::with_capacity(text.len());
        zlib.compress_vec(&text, &mut theirs, flate2::FlushCompress::Sync).unwrap();
        vec![ours, theirs]
    }

    #[test]
    fn the_fast_path_and_a_byte_at_a_time_agree_on_damaged_streams() {
        // Whole, the input takes the fast path; a byte at a time, never. Every damage (a
        // bad code, a distance too far, a code 286/287 or 30/31) must end both the same way,
        // with the same bytes output before it.
        for stream in long_streams() {
            assert_eq!(inflate_by(&stream, stream.len(), usize::MAX).0, Ok(()));
            for at in (0..stream.len()).step_by(101) {
                for flip in [0x01, 0x10, 0xff] {
                    let mut damaged = stream.clone();
                    damaged[at] ^= flip;
                    let whole = inflate_by(&damaged, damaged.len(), 1 << 17);
                    assert_eq!(inflate_by(&damaged, 1, 1 << 17), whole, "byte {at} ^ {flip:#x}");
                    assert_eq!(inflate_by(&damaged, 4099, 1 << 17), whole, "byte {at} ^ {flip:#x}");
                }
            }
        }
    }

    #[test]
    fn the_fast_path_stops_at_the_limit_to_the_byte() {
        for stream in long_streams() {
            let full = inflate_by(&stream, stream.len(), usize::MAX).1;
            for limit in [0, 1, 257, 258, 275, 1000, 4096, 8191, full.len() / 2, full.len() - 1] {
                let (result, out) = inflate_by(&stream, stream.len(), limit);
                assert_eq!(result, Err(InflateError::OutputLimit), "limit {limit}");
                assert!(full.starts_with(&out) && out.len() <= limit && limit - out.len() < MAX_MATCH, "limit {limit}");
                assert_eq!(inflate_by(&stream, 1, limit), (result, out), "limit {limit}");
            }
            assert_eq!(inflate_by(&stream, stream.len(), full.len()), (Ok(()), full));
        }
    }

    #[test]
    fn the_fast_path_writes_into_the_capacity_a_caller_reserved() {
        for stream in long_streams() {
            let size = inflate_by(&stream, stream.len(), usize::MAX).1.len();
            let mut out = Vec::with_capacity(size);
            let reserved = out.as_ptr();
            Inflater::new(15).inflate(&stream, &mut out, usize::MAX).unwrap();
            assert_eq!((out.len(), out.capacity(), out.as_ptr()), (size, size, reserved));
        }
    }

    #[test]
    fn at_block_boundary_after_a_sync_flush_only() {
        let mut inflater = Inflater::new(15);
        let mut out = Vec::new();
        inflater.inflate(&hex("f248cdc9c90700"), &mut out, 100).unwrap();
        // Inside the flush's empty stored block, before its LEN and NLEN.
        assert!(!inflater.at_block_boundary());
        inflater.inflate(&TAIL, &mut out, 100).unwrap();
        assert!(inflater.at_block_boundary());
    }
}
