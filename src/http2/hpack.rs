//! HPACK, header compression for HTTP/2 (RFC 7541), sans-I/O: a [`Decoder`] for the header
//! blocks a client sends and an [`Encoder`] for the ones a server answers with.
//!
//! HTTP/1.1 sends every header as text on every request. HPACK sends most of them as a
//! number: both ends keep the same table of header fields, and a field already in it costs
//! one octet. The table has two parts (§2.3):
//!
//! ```text
//!   <----------  Index Address Space ---------->
//!   <-- Static  Table -->  <-- Dynamic Table -->
//!   +---+-----------+---+  +---+-----------+---+
//!   | 1 |    ...    | s |  |s+1|    ...    |s+k|
//!   +---+-----------+---+  +---+-----------+---+
//!                          ^                   |
//!                          |                   V
//!                   Insertion Point      Dropping Point
//! ```
//!
//! The static table ([`STATIC_TABLE`], Appendix A) is 61 fields fixed by the RFC
//! (`:method: GET`, `:status: 200`, `content-type`, ...). The dynamic table
//! ([`DynamicTable`], §4) is what this connection has sent so far: the encoder chooses which
//! fields to add, newest first, and the oldest are evicted once the table's size (name +
//! value + 32 per entry, §4.1) would pass its maximum. The decoder mirrors the encoder's
//! table exactly, which is why one lost or misread block breaks the whole connection: a
//! decoding error is a connection error of type COMPRESSION_ERROR (RFC 9113 §4.3).
//!
//! A header block is a sequence of representations (§6), told apart by their first bits:
//!
//! | first octet | representation | table |
//! |---|---|---|
//! | `1xxxxxxx` | indexed field (§6.1): index in 7 bits | unchanged |
//! | `01xxxxxx` | literal with incremental indexing (§6.2.1): name index in 6 bits, or a literal name | the field is added |
//! | `001xxxxx` | dynamic table size update (§6.3), only at the start of a block | resized |
//! | `0001xxxx` | literal never indexed (§6.2.3): also never by an intermediary | unchanged |
//! | `0000xxxx` | literal without indexing (§6.2.2) | unchanged |
//!
//! Integers (§5.1) fill the rest of the first octet and continue 7 bits at a time; strings
//! (§5.2) are a length and octets, raw or Huffman-coded ([`super::huffman`]).
//!
//! What the decoder refuses (each an [`HpackError`], never a panic): index 0 or past the end
//! of both tables, an integer longer than [`MAX_INTEGER_OCTETS`], a string longer than the
//! block, bad Huffman, a table size update past the limit we advertised or after the first
//! field, a missing size update the limit required. Memory is bounded by the block (every
//! string is checked against what is left of it before anything is allocated), the dynamic
//! table's maximum, and the header list limit (RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE).

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;

use super::error::{ErrorCode, H2Error};
use super::huffman::{self, HuffmanError};

/// §4.1: "The size of an entry is the sum of its name's length in octets ..., its value's
/// length in octets, and 32." The 32 stands for what an implementation spends per entry.
pub const ENTRY_OVERHEAD: usize = 32;

/// The dynamic table's maximum size until SETTINGS say otherwise: RFC 9113 §6.5.2 gives
/// SETTINGS_HEADER_TABLE_SIZE an initial value of 4,096 octets.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// The most our encoder's table ever holds, whatever the peer allows. §4.2 lets an encoder
/// use less than the decoder's limit; a server repeats a few response fields, which 4,096
/// octets hold, and a peer announcing a larger table must not make every connection cost
/// more memory.
pub const MAX_ENCODER_TABLE_SIZE: usize = DEFAULT_TABLE_SIZE;

/// The most octets an integer's continuation may take (§5.1: "Integer encodings that exceed
/// implementation limits -- in value or octet length -- MUST be treated as decoding errors").
/// Four octets carry 28 bits, past any index, length or table size this server accepts; a
/// longer one is either absurd or padded with zero octets to waste our time.
pub const MAX_INTEGER_OCTETS: usize = 4;

/// The static table, RFC 7541 Appendix A: index 1 is the first entry.
pub const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// One header field, as decoded or to be encoded. Bytes, not text: HPACK carries octets, and
/// which octets a field may hold is HTTP's rule (RFC 9113 §8.2.1), checked a layer above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    /// Sent, or to be sent, as "literal never indexed" (§6.2.3): a value such as a token
    /// that no table, ours or an intermediary's, may keep (§7.1.3).
    pub never_indexed: bool,
}

impl Field {
    /// A field that may be indexed.
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Field {
        Field { name: name.into(), value: value.into(), never_indexed: false }
    }

    /// A field that must never be indexed (§6.2.3), such as `authorization`.
    pub fn sensitive(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Field {
        Field { never_indexed: true, ..Field::new(name, value) }
    }

    /// Its size as a table entry (§4.1), which is also how RFC 9113 §6.5.2 counts it toward
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub fn size(&self) -> usize {
        entry_size(&self.name, &self.value)
    }
}

fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + ENTRY_OVERHEAD
}

/// Why a header block was refused. Every variant but [`HpackError::HeaderListTooLarge`] is a
/// decoding error, a connection error of type COMPRESSION_ERROR (RFC 9113 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended inside a representation.
    Truncated,
    /// An integer had more than [`MAX_INTEGER_OCTETS`] continuation octets (§5.1).
    IntegerTooLong,
    /// §6.1: "The index value of 0 is not used."
    IndexZero,
    /// §2.3.3: an index past the end of both tables.
    IndexOutOfRange,
    /// A Huffman-coded string broke a rule of §5.2.
    Huffman(HuffmanError),
    /// §4.2/§6.3: a size update above the limit we advertised.
    TableSizeUpdateTooLarge,
    /// §4.2: a size update after the first field of a block.
    TableSizeUpdateNotAtStart,
    /// §4.2: our limit went below the table's size, and the next block did not begin with a
    /// size update that honours it.
    TableSizeUpdateMissing,
    /// RFC 9113 §6.5.2: the decoded fields passed SETTINGS_MAX_HEADER_LIST_SIZE. Not a
    /// decoding error: the whole block was still decoded, so the table is in sync and only
    /// this request is refused (RFC 9113 §10.5.1 suggests 431).
    HeaderListTooLarge,
}

impl HpackError {
    /// The connection error to end the connection with, or `None` for
    /// [`HpackError::HeaderListTooLarge`], which refuses one request and keeps the connection.
    pub fn connection_error(self) -> Option<H2Error> {
        match self {
            HpackError::HeaderListTooLarge => None,
            // RFC 9113 §4.3: "A decoding error in a field block MUST be treated as a
            // connection error (Section 5.4.1) of type COMPRESSION_ERROR."
            _ => Some(H2Error::Connection(ErrorCode::CompressionError, "HPACK decoding error")),
        }
    }
}

impl From<HuffmanError> for HpackError {
    fn from(error: HuffmanError) -> HpackError {
        HpackError::Huffman(error)
    }
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HpackError::Truncated => f.write_str("header block ends inside a representation"),
            HpackError::IntegerTooLong => f.write_str("HPACK integer too long"),
            HpackError::IndexZero => f.write_str("HPACK index 0"),
            HpackError::IndexOutOfRange => f.write_str("HPACK index past the end of the tables"),
            HpackError::Huffman(error) => error.fmt(f),
            HpackError::TableSizeUpdateTooLarge => f.write_str("dynamic table size update above the limit"),
            HpackError::TableSizeUpdateNotAtStart => f.write_str("dynamic table size update after a field"),
            HpackError::TableSizeUpdateMissing => f.write_str("dynamic table size update missing"),
            HpackError::HeaderListTooLarge => f.write_str("header list larger than allowed"),
        }
    }
}

impl std::error::Error for HpackError {}

/// Appends `value` as an integer with an `prefix_bits`-bit prefix (§5.1); `flags` are the
/// bits of the first octet above the prefix (the representation's pattern).
pub fn encode_integer(value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
    let max_prefix = (1usize << prefix_bits) - 1;
    // §5.1: "If the integer value is small enough, i.e., strictly less than 2^N-1, it is
    // encoded within the N-bit prefix."
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    // "Otherwise, all the bits of the prefix are set to 1, and the value, decreased by
    // 2^N-1, is encoded using a list of one or more octets", 7 bits each, least significant
    // first, the top bit set on all but the last.
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Reads an integer with a `prefix_bits`-bit prefix from the start of `input` (§5.1): the
/// value and the octets it took.
pub fn decode_integer(input: &[u8], prefix_bits: u8) -> Result<(usize, usize), HpackError> {
    let (&first, rest) = input.split_first().ok_or(HpackError::Truncated)?;
    let max_prefix = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value < max_prefix {
        return Ok((value, 1));
    }
    for (i, &octet) in rest.iter().enumerate() {
        if i == MAX_INTEGER_OCTETS {
            return Err(HpackError::IntegerTooLong);
        }
        // At most 4 octets of 7 bits: the value stays below 2^28 + 2^8, no overflow.
        value += usize::from(octet & 0x7f) << (7 * i);
        if octet & 0x80 == 0 {
            return Ok((value, i + 2));
        }
    }
    if rest.len() >= MAX_INTEGER_OCTETS {
        return Err(HpackError::IntegerTooLong);
    }
    Err(HpackError::Truncated)
}

/// Appends a string literal (§5.2): Huffman-coded if `huffman` and the code is no longer
/// than the raw octets. At a tie the RFC's own examples choose Huffman (C.6.2, "307"), so
/// this does too, and reproduces them.
fn encode_string(value: &[u8], huffman: bool, out: &mut Vec<u8>) {
    let coded_len = huffman::encoded_len(value);
    if huffman && coded_len <= value.len() {
        encode_integer(coded_len, 7, 0x80, out);
        huffman::encode(value, out);
    } else {
        encode_integer(value.len(), 7, 0x00, out);
        out.extend_from_slice(value);
    }
}

/// Reads a string literal (§5.2) from the start of `input`: the octets and how many octets
/// of input it took. The length is checked against the input before anything is allocated.
fn decode_string(input: &[u8]) -> Result<(Vec<u8>, usize), HpackError> {
    let (len, used) = decode_integer(input, 7)?;
    let huffman = input[0] & 0x80 != 0;
    let body = input.get(used..used + len).ok_or(HpackError::Truncated)?;
    let value = if huffman {
        let mut out = Vec::new();
        huffman::decode(body, &mut out)?;
        out
    } else {
        body.to_vec()
    };
    Ok((value, used + len))
}

/// The dynamic table (§2.3.2, §4): the fields this connection's encoder chose to add, newest
/// first, within a maximum size.
#[derive(Clone, Debug, Default)]
pub struct DynamicTable {
    /// Newest first: index 1 of the dynamic table is `entries[0]`.
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// The sum of the entries' sizes (§4.1), always at most `max_size`.
    size: usize,
    /// The maximum size, set by a size update (§6.3).
    max_size: usize,
}

impl DynamicTable {
    /// An empty table with this maximum size.
    pub fn new(max_size: usize) -> DynamicTable {
        DynamicTable { entries: VecDeque::new(), size: 0, max_size }
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sum of its entries' sizes (§4.1).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Its maximum size.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The entries, newest first, as `(name, value)`.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|(name, value)| (name.as_slice(), value.as_slice()))
    }

    /// §4.3: "Whenever the maximum size for the dynamic table is reduced, entries are
    /// evicted from the end of the dynamic table until the size of the dynamic table is less
    /// than or equal to the maximum size."
    fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            let Some((name, value)) = self.entries.pop_back() else { break };
            self.size -= entry_size(&name, &value);
        }
    }

    /// Adds a field at the front (§4.4), evicting from the back to make room.
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = entry_size(&name, &value);
        // §4.4: "an attempt to add an entry larger than the maximum size causes the table
        // to be emptied of all existing entries and results in an empty table."
        if size > self.max_size {
            self.evict_to(0);
            return;
        }
        // §4.4: "Before a new entry is added to the dynamic table, entries are evicted from
        // the end of the dynamic table until the size of the dynamic table is less than or
        // equal to (maximum size - new entry size) or until the table is empty."
        self.evict_to(self.max_size - size);
        self.entries.push_front((name, value));
        self.size += size;
    }

    /// The entry at a 1-based index of the whole address space (§2.3.3).
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError::IndexZero),
            1..=61 => Ok(STATIC_TABLE[index - 1]),
            _ => self
                .entries
                .get(index - STATIC_TABLE.len() - 1)
                .map(|(name, value)| (name.as_slice(), value.as_slice()))
                // §2.3.3: "Indices strictly greater than the sum of the lengths of both
                // tables MUST be treated as a decoding error."
                .ok_or(HpackError::IndexOutOfRange),
        }
    }

    /// Where a field is in the address space: a full match if any, else a name match, with
    /// the static table first (its indices are the smaller ones, so they encode shorter).
    fn find(&self, name: &[u8], value: &[u8]) -> Option<(usize, bool)> {
        let all = STATIC_TABLE
            .iter()
            .copied()
            .chain(self.entries.iter().map(|(name, value)| (name.as_slice(), value.as_slice())));
        let mut name_match = None;
        for (i, (entry_name, entry_value)) in all.enumerate() {
            if entry_name == name {
                if entry_value == value {
                    return Some((i + 1, true));
                }
                name_match = name_match.or(Some((i + 1, false)));
            }
        }
        name_match
    }
}

/// Decodes header blocks, keeping the dynamic table the peer's encoder builds.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The most the encoder may set the table to: our SETTINGS_HEADER_TABLE_SIZE (§4.2).
    max_table_size: usize,
    /// Set when that limit went below the table's maximum: the next block must begin with a
    /// size update to at most this (§4.2).
    required_update: Option<usize>,
    /// Our SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2).
    max_header_list_size: usize,
}

impl Decoder {
    /// A decoder whose table may hold `max_table_size` octets and whose header lists may
    /// take `max_header_list_size` (our SETTINGS_MAX_HEADER_LIST_SIZE). A connection starts
    /// at [`DEFAULT_TABLE_SIZE`], which both ends assume before any SETTINGS (RFC 9113
    /// §6.5.2), and calls [`Decoder::set_max_table_size`] once its own SETTINGS are
    /// acknowledged.
    pub fn new(max_table_size: usize, max_header_list_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_table_size,
            required_update: None,
            max_header_list_size,
        }
    }

    /// The table as the peer's encoder has built it.
    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Our SETTINGS_HEADER_TABLE_SIZE changed (call once the peer acknowledged it). Lower
    /// than the table's maximum, the next block must begin with a size update within it.
    pub fn set_max_table_size(&mut self, limit: usize) {
        self.max_table_size = limit;
        if limit < self.table.max_size {
            // §4.2: "the smallest maximum table size that occurs in that interval MUST be
            // signaled in a dynamic table size update."
            self.required_update = Some(self.required_update.map_or(limit, |required| required.min(limit)));
        }
    }

    /// Decodes one complete header block (a HEADERS frame's block and its CONTINUATIONs,
    /// RFC 9113 §4.3) into its fields, updating the dynamic table as it goes.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut fields = Vec::new();
        let mut list_size = 0usize;
        let mut too_large = false;
        let mut at_start = true;
        let mut rest = block;
        while let Some(&first) = rest.first() {
            if first & 0xe0 == 0x20 {
                let (size, used) = decode_integer(rest, 5)?;
                rest = &rest[used..];
                self.size_update(size, at_start)?;
                continue;
            }
            if at_start && self.required_update.is_some() {
                return Err(HpackError::TableSizeUpdateMissing);
            }
            at_start = false;
            // RFC 9113 §10.5.1: "The field block MUST be processed to ensure a consistent
            // connection state": past the limit, keep decoding but keep nothing, and copy
            // no more entries out of the table.
            let (field, size, used) = self.decode_field(rest, !too_large)?;
            rest = &rest[used..];
            list_size = list_size.saturating_add(size);
            too_large |= list_size > self.max_header_list_size;
            if let (Some(field), false) = (field, too_large) {
                fields.push(field);
            }
        }
        if self.required_update.is_some() {
            return Err(HpackError::TableSizeUpdateMissing);
        }
        if too_large {
            return Err(HpackError::HeaderListTooLarge);
        }
        Ok(fields)
    }

    /// A dynamic table size update (§6.3).
    fn size_update(&mut self, size: usize, at_start: bool) -> Result<(), HpackError> {
        // §4.2: "This dynamic table size update MUST occur at the beginning of the first
        // header block following the change to the dynamic table size." Only there: one
        // after a field is not where §4.2 puts it (nghttp2 refuses it too).
        if !at_start {
            return Err(HpackError::TableSizeUpdateNotAtStart);
        }
        // §6.3: "The new maximum size MUST be lower than or equal to the limit determined by
        // the protocol using HPACK. A value that exceeds this limit MUST be treated as a
        // decoding error."
        if size > self.max_table_size {
            return Err(HpackError::TableSizeUpdateTooLarge);
        }
        if self.required_update.is_some_and(|required| size <= required) {
            self.required_update = None;
        }
        self.table.set_max_size(size);
        Ok(())
    }

    /// One field representation (§6.1, §6.2) at the start of `input`: the field (if `keep`),
    /// its size (§4.1) and the octets it took. Not keeping spares an indexed field's copy:
    /// one octet can name a 4 KiB entry, and a block past the list limit can repeat it.
    fn decode_field(&mut self, input: &[u8], keep: bool) -> Result<(Option<Field>, usize, usize), HpackError> {
        let first = input[0];
        if first & 0x80 != 0 {
            // §6.1 indexed header field.
            let (index, used) = decode_integer(input, 7)?;
            let (name, value) = self.table.get(index)?;
            return Ok((keep.then(|| Field::new(name, value)), entry_size(name, value), used));
        }
        // §6.2: the literal representations differ in their pattern and prefix size.
        let (prefix_bits, indexing, never_indexed) = match first {
            _ if first & 0x40 != 0 => (6, true, false),
            _ if first & 0xf0 == 0x10 => (4, false, true),
            _ => (4, false, false),
        };
        let (name_index, mut used) = decode_integer(input, prefix_bits)?;
        // The name is copied out of the table before the new entry is added: §4.4 warns
        // that the entry it names may be the one the insertion evicts.
        let name = if name_index == 0 {
            let (name, name_used) = decode_string(&input[used..])?;
            used += name_used;
            name
        } else {
            self.table.get(name_index)?.0.to_vec()
        };
        let (value, value_used) = decode_string(&input[used..])?;
        used += value_used;
        let size = entry_size(&name, &value);
        if indexing {
            self.table.insert(name.clone(), value.clone());
        }
        Ok((Some(Field { name, value, never_indexed }), size, used))
    }
}

/// A change of the table's maximum that the next block must announce (§4.2).
#[derive(Clone, Copy, Debug)]
struct PendingUpdate {
    /// The smallest maximum since the last block: announced first, so that the decoder
    /// evicts what we evicted.
    smallest: usize,
    /// The maximum now, announced after it if larger.
    last: usize,
}

/// Encodes header blocks, keeping the dynamic table the peer's decoder will mirror.
///
/// Its choices: a field in either table is sent as its index; a field whose name is in a
/// table is sent with that name index; a field is added to the dynamic table unless it is
/// sensitive ([`Field::sensitive`], sent never indexed) or larger than the table. Strings are
/// Huffman-coded when that is no longer (§5.2), unless Huffman is turned off.
#[derive(Debug)]
pub struct Encoder {
    table: DynamicTable,
    huffman: bool,
    pending_update: Option<PendingUpdate>,
}

impl Encoder {
    /// An encoder whose table may use `max_table_size` octets: the peer's
    /// SETTINGS_HEADER_TABLE_SIZE, [`DEFAULT_TABLE_SIZE`] until it says. `huffman` turns the
    /// Huffman coding of strings on (what a server wants) or off (plain text on the wire).
    pub fn new(max_table_size: usize, huffman: bool) -> Encoder {
        Encoder { table: DynamicTable::new(max_table_size), huffman, pending_update: None }
    }

    /// The table as the peer's decoder will see it.
    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE changed: use that maximum, or
    /// [`MAX_ENCODER_TABLE_SIZE`] if it is smaller, from the next block, which begins with the
    /// size update(s) that tell the peer (§4.2, §6.3).
    pub fn set_max_table_size(&mut self, peer_limit: usize) {
        let max_size = peer_limit.min(MAX_ENCODER_TABLE_SIZE);
        if self.pending_update.is_none() && max_size == self.table.max_size {
            return;
        }
        let smallest = self.pending_update.map_or(max_size, |pending| pending.smallest.min(max_size));
        self.pending_update = Some(PendingUpdate { smallest, last: max_size });
        self.table.set_max_size(max_size);
    }

    /// Appends the header block for `fields` to `out`.
    pub fn encode(&mut self, fields: &[Field], out: &mut Vec<u8>) {
        if let Some(PendingUpdate { smallest, last }) = self.pending_update.take() {
            // §4.2: "In the case that this size is changed more than once in this interval,
            // the smallest maximum table size that occurs in that interval MUST be signaled
            // in a dynamic table size update. The final maximum size is always signaled."
            encode_integer(smallest, 5, 0x20, out);
            if last != smallest {
                encode_integer(last, 5, 0x20, out);
            }
        }
        for field in fields {
            self.encode_field(field, out);
        }
    }

    fn encode_field(&mut self, field: &Field, out: &mut Vec<u8>) {
        let found = self.table.find(&field.name, &field.value);
        if let (Some((index, true)), false) = (found, field.never_indexed) {
            // §6.1: indexed header field, pattern 1, 7-bit index.
            encode_integer(index, 7, 0x80, out);
            return;
        }
        let name_index = found.map_or(0, |(index, _)| index);
        let indexing = !field.never_indexed && field.size() <= self.table.max_size;
        match (indexing, field.never_indexed) {
            // §6.2.1 with incremental indexing: pattern 01, 6-bit name index.
            (true, _) => encode_integer(name_index, 6, 0x40, out),
            // §6.2.3 never indexed: pattern 0001, 4-bit name index.
            (false, true) => encode_integer(name_index, 4, 0x10, out),
            // §6.2.2 without indexing: pattern 0000, 4-bit name index.
            (false, false) => encode_integer(name_index, 4, 0x00, out),
        }
        if name_index == 0 {
            encode_string(&field.name, self.huffman, out);
        }
        encode_string(&field.value, self.huffman, out);
        if indexing {
            self.table.insert(field.name.clone(), field.value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
        pairs.iter().map(|&(name, value)| Field::new(name, value)).collect()
    }

    fn table_of(table: &DynamicTable) -> Vec<(String, String)> {
        table
            .entries()
            .map(|(name, value)| {
                (String::from_utf8(name.to_vec()).unwrap(), String::from_utf8(value.to_vec()).unwrap())
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|&(name, value)| (name.to_string(), value.to_string())).collect()
    }

    /// One block of an Appendix C sequence: the wire, the header list, and the dynamic table
    /// after it (newest first) with its size.
    struct Step {
        wire: &'static str,
        headers: &'static [(&'static str, &'static str)],
        table: &'static [(&'static str, &'static str)],
        size: usize,
    }

    /// Decodes the steps in order on one decoder, then encodes the header lists in order on
    /// one encoder: both must give the RFC's headers, bytes and tables.
    fn check_sequence(table_size: usize, huffman: bool, steps: &[Step]) {
        let mut decoder = Decoder::new(table_size, 64 * 1024);
        let mut encoder = Encoder::new(table_size, huffman);
        for (i, step) in steps.iter().enumerate() {
            let wire = hex(step.wire);
            assert_eq!(decoder.decode(&wire), Ok(fields(step.headers)), "step {i}: headers");
            assert_eq!(table_of(decoder.table()), pairs(step.table), "step {i}: decoder table");
            assert_eq!(decoder.table().size(), step.size, "step {i}: decoder table size");
            let mut out = Vec::new();
            encoder.encode(&fields(step.headers), &mut out);
            assert_eq!(out, wire, "step {i}: encoded");
            assert_eq!(table_of(encoder.table()), pairs(step.table), "step {i}: encoder table");
            assert_eq!(encoder.table().size(), step.size, "step {i}: encoder table size");
        }
    }

    /// C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42 at an
    /// octet boundary (8-bit prefix).
    #[test]
    fn appendix_c_1_integers() {
        for (value, prefix, wire) in [(10, 5, "0a"), (1337, 5, "1f9a0a"), (42, 8, "2a")] {
            let mut out = Vec::new();
            encode_integer(value, prefix, 0, &mut out);
            assert_eq!(out, hex(wire), "{value}");
            assert_eq!(decode_integer(&out, prefix), Ok((value, out.len())));
        }
        // The bits above the prefix are the representation's, not the integer's.
        assert_eq!(decode_integer(&hex("ff9a0a"), 5), Ok((1337, 3)));
    }

    /// C.2.1: literal header field with indexing.
    #[test]
    fn appendix_c_2_1_literal_with_indexing() {
        let wire = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&wire), Ok(fields(&[("custom-key", "custom-header")])));
        assert_eq!(table_of(decoder.table()), pairs(&[("custom-key", "custom-header")]));
        assert_eq!(decoder.table().size(), 55);
        let mut out = Vec::new();
        Encoder::new(DEFAULT_TABLE_SIZE, false).encode(&fields(&[("custom-key", "custom-header")]), &mut out);
        assert_eq!(out, wire);
    }

    /// C.2.2: literal header field without indexing; the table stays empty. (Our encoder
    /// would have indexed it: the RFC's choice here is not the only one.)
    #[test]
    fn appendix_c_2_2_literal_without_indexing() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        let wire = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(decoder.decode(&wire), Ok(fields(&[(":path", "/sample/path")])));
        assert!(decoder.table().is_empty());
        assert_eq!(decoder.table().size(), 0);
    }

    /// C.2.3: literal header field never indexed; the table stays empty and the field is
    /// marked, so that a proxy would forward it never indexed too (§6.2.3).
    #[test]
    fn appendix_c_2_3_literal_never_indexed() {
        let wire = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&wire), Ok(vec![Field::sensitive("password", "secret")]));
        assert!(decoder.table().is_empty());
        let mut encoder = Encoder::new(DEFAULT_TABLE_SIZE, false);
        let mut out = Vec::new();
        encoder.encode(&[Field::sensitive("password", "secret")], &mut out);
        assert_eq!(out, wire);
        assert!(encoder.table().is_empty());
    }

    /// C.2.4: indexed header field.
    #[test]
    fn appendix_c_2_4_indexed() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&hex("82")), Ok(fields(&[(":method", "GET")])));
        assert!(decoder.table().is_empty());
        let mut out = Vec::new();
        Encoder::new(DEFAULT_TABLE_SIZE, false).encode(&fields(&[(":method", "GET")]), &mut out);
        assert_eq!(out, hex("82"));
    }

    const REQUEST_1: &[(&str, &str)] =
        &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
    const REQUEST_2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQUEST_3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const REQUEST_TABLE_1: &[(&str, &str)] = &[(":authority", "www.example.com")];
    const REQUEST_TABLE_2: &[(&str, &str)] = &[("cache-control", "no-cache"), (":authority", "www.example.com")];
    const REQUEST_TABLE_3: &[(&str, &str)] =
        &[("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")];

    /// C.3: three requests on one connection, without Huffman coding.
    #[test]
    fn appendix_c_3_requests_without_huffman() {
        check_sequence(
            DEFAULT_TABLE_SIZE,
            false,
            &[
                Step {
                    wire: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    headers: REQUEST_1,
                    table: REQUEST_TABLE_1,
                    size: 57,
                },
                Step {
                    wire: "8286 84be 5808 6e6f 2d63 6163 6865",
                    headers: REQUEST_2,
                    table: REQUEST_TABLE_2,
                    size: 110,
                },
                Step {
                    wire: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    headers: REQUEST_3,
                    table: REQUEST_TABLE_3,
                    size: 164,
                },
            ],
        );
    }

    /// C.4: the same requests, with Huffman coding.
    #[test]
    fn appendix_c_4_requests_with_huffman() {
        check_sequence(
            DEFAULT_TABLE_SIZE,
            true,
            &[
                Step {
                    wire: "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                    headers: REQUEST_1,
                    table: REQUEST_TABLE_1,
                    size: 57,
                },
                Step { wire: "8286 84be 5886 a8eb 1064 9cbf", headers: REQUEST_2, table: REQUEST_TABLE_2, size: 110 },
                Step {
                    wire: "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    headers: REQUEST_3,
                    table: REQUEST_TABLE_3,
                    size: 164,
                },
            ],
        );
    }

    const RESPONSE_1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESPONSE_2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const RESPONSE_3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
    ];
    const RESPONSE_TABLE_1: &[(&str, &str)] = &[
        ("location", "https://www.example.com"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("cache-control", "private"),
        (":status", "302"),
    ];
    /// `:status: 302` evicted to make room for `:status: 307`.
    const RESPONSE_TABLE_2: &[(&str, &str)] = &[
        (":status", "307"),
        ("location", "https://www.example.com"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("cache-control", "private"),
    ];
    /// Four evictions along the way.
    const RESPONSE_TABLE_3: &[(&str, &str)] = &[
        ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
        ("content-encoding", "gzip"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
    ];

    /// C.5: three responses with a 256-octet table, so that entries are evicted; without
    /// Huffman coding.
    #[test]
    fn appendix_c_5_responses_without_huffman() {
        check_sequence(
            256,
            false,
            &[
                Step {
                    wire: "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                           2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                           6c65 2e63 6f6d",
                    headers: RESPONSE_1,
                    table: RESPONSE_TABLE_1,
                    size: 222,
                },
                Step { wire: "4803 3330 37c1 c0bf", headers: RESPONSE_2, table: RESPONSE_TABLE_2, size: 222 },
                Step {
                    wire: "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                           54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                           5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                           3d31",
                    headers: RESPONSE_3,
                    table: RESPONSE_TABLE_3,
                    size: 215,
                },
            ],
        );
    }

    /// C.6: the same responses with Huffman coding; the evictions are the same, because
    /// sizes count decoded octets (§4.1).
    #[test]
    fn appendix_c_6_responses_with_huffman() {
        check_sequence(
            256,
            true,
            &[
                Step {
                    wire: "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                           2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    headers: RESPONSE_1,
                    table: RESPONSE_TABLE_1,
                    size: 222,
                },
                Step { wire: "4883 640e ffc1 c0bf", headers: RESPONSE_2, table: RESPONSE_TABLE_2, size: 222 },
                Step {
                    wire: "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                           77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                           9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                    headers: RESPONSE_3,
                    table: RESPONSE_TABLE_3,
                    size: 215,
                },
            ],
        );
    }

    /// Appendix A: 61 entries, 1-based, in the RFC's order.
    #[test]
    fn appendix_a_static_table() {
        let table = DynamicTable::new(0);
        assert_eq!(table.get(1), Ok((&b":authority"[..], &b""[..])));
        assert_eq!(table.get(2), Ok((&b":method"[..], &b"GET"[..])));
        assert_eq!(table.get(8), Ok((&b":status"[..], &b"200"[..])));
        assert_eq!(table.get(16), Ok((&b"accept-encoding"[..], &b"gzip, deflate"[..])));
        assert_eq!(table.get(61), Ok((&b"www-authenticate"[..], &b""[..])));
        assert_eq!(table.get(62), Err(HpackError::IndexOutOfRange));
    }

    /// §5.1: an integer that ends before its last octet is incomplete.
    #[test]
    fn section_5_1_truncated_integer_is_an_error() {
        assert_eq!(decode_integer(&[], 5), Err(HpackError::Truncated));
        assert_eq!(decode_integer(&hex("1f9a"), 5), Err(HpackError::Truncated));
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&hex("ff")), Err(HpackError::Truncated));
    }

    /// §5.1: "Integer encodings that exceed implementation limits -- in value or octet length
    /// -- MUST be treated as decoding errors." Zero octets cannot pad a value forever.
    #[test]
    fn section_5_1_integer_past_the_octet_limit_is_an_error() {
        assert_eq!(decode_integer(&hex("1f808080"), 5), Err(HpackError::Truncated));
        // Four octets that all continue: too long already, whatever follows.
        assert_eq!(decode_integer(&hex("1f80808080"), 5), Err(HpackError::IntegerTooLong));
        assert_eq!(decode_integer(&hex("1f8080808000"), 5), Err(HpackError::IntegerTooLong));
        assert_eq!(decode_integer(&hex("1fffffffff0f"), 5), Err(HpackError::IntegerTooLong));
        assert_eq!(decode_integer(&hex("1fffffff7f"), 5), Ok((31 + (1 << 28) - 1, 5)));
    }

    /// §5.1: every value round-trips at every prefix size, at the boundaries.
    #[test]
    fn section_5_1_integers_round_trip() {
        for prefix in 1..=8u8 {
            let max_prefix = (1usize << prefix) - 1;
            for value in [0, 1, max_prefix - 1, max_prefix, max_prefix + 1, max_prefix + 127, max_prefix + 128, 1 << 20]
            {
                let mut out = Vec::new();
                encode_integer(value, prefix, 0, &mut out);
                assert_eq!(decode_integer(&out, prefix), Ok((value, out.len())), "{value} on {prefix} bits");
            }
        }
    }

    /// §5.2: a string whose length runs past the end of the block is refused before anything
    /// is allocated for it.
    #[test]
    fn section_5_2_string_longer_than_the_block_is_an_error() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        // Literal without indexing, new name of 3 octets, of which 2 are there.
        assert_eq!(decoder.decode(&hex("00 03 6162")), Err(HpackError::Truncated));
        // A name of 2^28 octets announced in five octets.
        assert_eq!(decoder.decode(&hex("00 7fffffff7f")), Err(HpackError::Truncated));
    }

    /// §5.2: a Huffman error in a string is a decoding error of the block.
    #[test]
    fn section_5_2_bad_huffman_in_a_block_is_an_error() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        // Literal without indexing, name index 1, value Huffman-coded: one octet of ones.
        assert_eq!(decoder.decode(&hex("01 81ff")), Err(HpackError::Huffman(HuffmanError::PaddingTooLong)));
        assert_eq!(
            HpackError::Huffman(HuffmanError::Eos).connection_error(),
            Some(H2Error::Connection(ErrorCode::CompressionError, "HPACK decoding error"))
        );
    }

    /// §6.1: "The index value of 0 is not used. It MUST be treated as a decoding error if
    /// found in an indexed header field representation."
    #[test]
    fn section_6_1_index_zero_is_an_error() {
        assert_eq!(Decoder::new(DEFAULT_TABLE_SIZE, 1024).decode(&hex("80")), Err(HpackError::IndexZero));
    }

    /// §2.3.3: "Indices strictly greater than the sum of the lengths of both tables MUST be
    /// treated as a decoding error", for an indexed field and for a name index.
    #[test]
    fn section_2_3_3_index_past_both_tables_is_an_error() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&hex("be")), Err(HpackError::IndexOutOfRange));
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&hex("7e 00")), Err(HpackError::IndexOutOfRange));
        // With one dynamic entry, 62 is fine and 63 is not.
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert!(decoder.decode(&hex("4001 61 0162")).is_ok());
        assert_eq!(decoder.decode(&hex("be")), Ok(fields(&[("a", "b")])));
        assert_eq!(decoder.decode(&hex("bf")), Err(HpackError::IndexOutOfRange));
    }

    /// §4.4: "an attempt to add an entry larger than the maximum size causes the table to be
    /// emptied of all existing entries and results in an empty table."
    #[test]
    fn section_4_4_entry_larger_than_the_table_empties_it() {
        let mut decoder = Decoder::new(64, 1024);
        // `a: b` (34 octets) fits; then a 33-octet value with name `a` (66) does not.
        decoder.decode(&hex("4001 61 0162")).unwrap();
        assert_eq!(decoder.table().size(), 34);
        let mut block = hex("4001 61 21");
        block.extend_from_slice(&[b'x'; 33]);
        assert_eq!(decoder.decode(&block).unwrap()[0].value.len(), 33);
        assert!(decoder.table().is_empty());
        assert_eq!(decoder.table().size(), 0);
    }

    /// §4.4: the name of a new entry may come from the entry its insertion evicts; "the
    /// referenced name" must survive.
    #[test]
    fn section_4_4_name_of_the_evicted_entry_survives() {
        // Room for exactly one `abc: x` (36 octets).
        let mut decoder = Decoder::new(40, 1024);
        decoder.decode(&hex("4003 616263 0178")).unwrap();
        // Literal with indexing, name index 62 (`abc`, the entry about to be evicted).
        assert_eq!(decoder.decode(&hex("7e 0179")), Ok(fields(&[("abc", "y")])));
        assert_eq!(table_of(decoder.table()), pairs(&[("abc", "y")]));
    }

    /// §4.3: entries are evicted from the end (the oldest) as new ones come in.
    #[test]
    fn section_4_3_eviction_drops_the_oldest() {
        // 2 entries of 34 octets fit in 80.
        let mut decoder = Decoder::new(80, 1024);
        decoder.decode(&hex("4001 61 0131 4001 62 0132 4001 63 0133")).unwrap();
        assert_eq!(table_of(decoder.table()), pairs(&[("c", "3"), ("b", "2")]));
        assert_eq!(decoder.table().size(), 68);
    }

    /// §6.3 and §4.3: a size update resizes the table, evicting what no longer fits; 0
    /// empties it.
    #[test]
    fn section_6_3_size_update_evicts() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        decoder.decode(&hex("4001 61 0131 4001 62 0132")).unwrap();
        assert_eq!(decoder.decode(&hex("3f03 82")), Ok(fields(&[(":method", "GET")])));
        assert_eq!(decoder.table().max_size(), 34);
        assert_eq!(table_of(decoder.table()), pairs(&[("b", "2")]));
        assert_eq!(decoder.decode(&hex("20")), Ok(vec![]));
        assert!(decoder.table().is_empty());
    }

    /// §6.3: "The new maximum size MUST be lower than or equal to the limit determined by the
    /// protocol using HPACK" (our SETTINGS_HEADER_TABLE_SIZE).
    #[test]
    fn section_6_3_size_update_above_the_limit_is_an_error() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        // 4097 = 31 + 4066 = 1f e2 1f.
        assert_eq!(decoder.decode(&hex("3fe21f")), Err(HpackError::TableSizeUpdateTooLarge));
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&hex("3fe11f")), Ok(vec![]));
        assert_eq!(decoder.table().max_size(), 4096);
    }

    /// §4.2: the size update comes "at the beginning of the first header block", not after
    /// a field.
    #[test]
    fn section_4_2_size_update_after_a_field_is_an_error() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&hex("82 20")), Err(HpackError::TableSizeUpdateNotAtStart));
        // Two at the start are fine (§4.2: the smallest, then the final).
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&hex("20 3fe11f 82")), Ok(fields(&[(":method", "GET")])));
    }

    /// §4.2: once our limit went below the table's size, the next block must begin with a
    /// size update within it; a block that does not is a decoding error.
    #[test]
    fn section_4_2_lowered_limit_requires_a_size_update() {
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        decoder.set_max_table_size(100);
        assert_eq!(decoder.decode(&hex("82")), Err(HpackError::TableSizeUpdateMissing));
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        decoder.set_max_table_size(100);
        // An update to the old size, now above the limit, is refused too.
        assert_eq!(decoder.decode(&hex("3fe11f 82")), Err(HpackError::TableSizeUpdateTooLarge));
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        decoder.set_max_table_size(100);
        assert_eq!(decoder.decode(&hex("3f45 82")), Ok(fields(&[(":method", "GET")])));
        assert_eq!(decoder.table().max_size(), 100);
        // Satisfied once: the next block needs no update.
        assert_eq!(decoder.decode(&hex("82")), Ok(fields(&[(":method", "GET")])));
    }

    /// RFC 9113 §6.5.2: SETTINGS_MAX_HEADER_LIST_SIZE counts name + value + 32 per field. A
    /// list past it is refused, but the block is still decoded to the end (RFC 9113
    /// §10.5.1), so the next block sees the same table as the encoder.
    #[test]
    fn rfc9113_section_6_5_2_header_list_size_limit() {
        // `:method: GET` is 42; two are 84.
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 84);
        assert_eq!(decoder.decode(&hex("82 82")), Ok(fields(&[(":method", "GET"), (":method", "GET")])));
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 83);
        // Past the limit at the second field; the third (indexed `a: b`) still goes in.
        assert_eq!(decoder.decode(&hex("82 82 4001 61 0162")), Err(HpackError::HeaderListTooLarge));
        assert_eq!(HpackError::HeaderListTooLarge.connection_error(), None);
        assert_eq!(table_of(decoder.table()), pairs(&[("a", "b")]));
        assert_eq!(decoder.decode(&hex("be")), Ok(fields(&[("a", "b")])));
    }

    /// The encoder announces a new maximum at the start of the next block (§6.3), and after
    /// more than one change the smallest first, then the final (§4.2).
    #[test]
    fn section_4_2_encoder_announces_size_changes() {
        let mut encoder = Encoder::new(DEFAULT_TABLE_SIZE, false);
        encoder.set_max_table_size(0);
        encoder.set_max_table_size(256);
        let mut out = Vec::new();
        encoder.encode(&fields(&[(":method", "GET")]), &mut out);
        assert_eq!(out, hex("20 3fe101 82"));
        let mut decoder = Decoder::new(DEFAULT_TABLE_SIZE, 1024);
        assert_eq!(decoder.decode(&out), Ok(fields(&[(":method", "GET")])));
        assert_eq!(decoder.table().max_size(), 256);
        // Only once.
        out.clear();
        encoder.encode(&fields(&[(":method", "GET")]), &mut out);
        assert_eq!(out, hex("82"));
    }

    /// A peer allowing a larger table does not make the encoder use more than
    /// [`MAX_ENCODER_TABLE_SIZE`]; no change, no size update.
    #[test]
    fn encoder_table_is_capped() {
        let mut encoder = Encoder::new(DEFAULT_TABLE_SIZE, false);
        encoder.set_max_table_size(1 << 20);
        assert_eq!(encoder.table().max_size(), MAX_ENCODER_TABLE_SIZE);
        let mut out = Vec::new();
        encoder.encode(&fields(&[(":method", "GET")]), &mut out);
        assert_eq!(out, hex("82"));
    }

    /// The encoder does not index a field larger than its table, which would only empty it.
    #[test]
    fn encoder_does_not_index_what_cannot_fit() {
        let mut encoder = Encoder::new(40, false);
        let mut out = Vec::new();
        encoder.encode(&fields(&[("a", "b"), ("big", "0123456789")]), &mut out);
        assert_eq!(out, hex("4001 61 0162 0003 626967 0a 30313233343536373839"));
        assert_eq!(table_of(encoder.table()), pairs(&[("a", "b")]));
    }

    /// Whatever the encoder writes, a decoder reads back, block after block, with both
    /// tables equal, through evictions, a sensitive field and table size changes.
    #[test]
    fn encoder_and_decoder_stay_in_sync() {
        let mut encoder = Encoder::new(200, true);
        let mut decoder = Decoder::new(200, 64 * 1024);
        for round in 0..50usize {
            if round % 17 == 16 {
                encoder.set_max_table_size(round % 200);
            }
            let list = vec![
                Field::new(":status", "200"),
                Field::new("content-type", "text/event-stream"),
                Field::new(format!("x-round-{}", round % 7), format!("value {}", round % 5)),
                Field::sensitive("authorization", format!("Bearer {round}")),
                Field::new("x-long", "y".repeat(round * 3)),
            ];
            let mut out = Vec::new();
            encoder.encode(&list, &mut out);
            assert_eq!(decoder.decode(&out), Ok(list), "round {round}");
            assert_eq!(table_of(decoder.table()), table_of(encoder.table()), "round {round}");
            assert_eq!(decoder.table().size(), encoder.table().size());
        }
    }

    /// Every prefix of a valid block is either a shorter valid block or an error, never a
    /// panic: the decoder never reads past what it was given.
    #[test]
    fn every_prefix_of_a_block_is_handled() {
        let wire = hex("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07");
        for len in 0..wire.len() {
            let mut decoder = Decoder::new(256, 1024);
            // The first step of C.6 fills the table that this block refers to.
            decoder.decode(&hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3")).unwrap();
            let _ = decoder.decode(&wire[..len]);
        }
    }
}
