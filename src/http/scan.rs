//! The byte classes of the message grammar as one lookup table, and scans that find the
//! first byte outside a class, a machine word at a time.
//!
//! A head parser spends nearly all its time asking one question: where does this run of
//! token, request-target or field-value bytes end? Asked one byte at a time through a chain
//! of comparisons (`is_ascii_alphanumeric() || matches!(...)`), it costs several branches per
//! byte. Here each class is one bit of a 256-entry table, so a byte's class is one load, and
//! the two long runs (a request-target and a field value, most of a browser's head) are
//! checked eight bytes per step with the carry tricks of "Bit Twiddling Hacks" (`haszero`,
//! `hasless`) on a `u64` read with `u64::from_le_bytes`: portable, and no `unsafe`.
//!
//! The rules themselves are written once, as `const fn`s quoting the ABNF; the table is built
//! from them at compile time, and a test checks every byte against both.

/// `tchar` (RFC 9110 §5.6.2).
const TCHAR: u8 = 1;
/// VCHAR (RFC 5234 appendix B.1): the bytes of a request-target.
const VCHAR: u8 = 2;
/// HTAB / SP / VCHAR / obs-text: the bytes of a field value (RFC 9110 §5.5).
const FIELD_VALUE: u8 = 4;
/// unreserved / sub-delims: the bytes of a host name in Host, besides its `%XX` escapes
/// (RFC 9110 §7.2, RFC 3986 §3.2.2).
const REG_NAME: u8 = 8;

/// `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
/// / "~" / DIGIT / ALPHA` (RFC 9110 §5.6.2): any VCHAR except the delimiters
/// `"(),/:;<=>?@[\]{}`.
const fn tchar_rule(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// `VCHAR = %x21-7E` (RFC 5234 appendix B.1).
const fn vchar_rule(b: u8) -> bool {
    b >= 0x21 && b <= 0x7e
}

/// `field-vchar = VCHAR / obs-text`, `obs-text = %x80-FF`, with SP and HTAB between them
/// (RFC 9110 §5.5, §5.6.4).
const fn field_value_rule(b: u8) -> bool {
    b == b'\t' || b == b' ' || vchar_rule(b) || b >= 0x80
}

/// `unreserved / sub-delims`, the bytes of `reg-name = *( unreserved / pct-encoded /
/// sub-delims )` other than a pct-encoded's `%` (RFC 3986 §3.2.2), where
/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"` (§2.3) and
/// `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="` (§2.2).
const fn reg_name_rule(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(b, b'-' | b'.' | b'_' | b'~')
        || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// Each byte's classes, one bit per class.
static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = (if tchar_rule(byte) { TCHAR } else { 0 })
            | (if vchar_rule(byte) { VCHAR } else { 0 })
            | (if field_value_rule(byte) { FIELD_VALUE } else { 0 })
            | (if reg_name_rule(byte) { REG_NAME } else { 0 });
        b += 1;
    }
    table
};

/// `tchar` (RFC 9110 §5.6.2).
#[inline]
pub(super) fn is_tchar(b: u8) -> bool {
    CLASSES[usize::from(b)] & TCHAR != 0
}

/// VCHAR: visible US-ASCII, %x21-7E (RFC 5234 appendix B.1).
#[inline]
pub(super) fn is_vchar(b: u8) -> bool {
    CLASSES[usize::from(b)] & VCHAR != 0
}

/// A byte allowed inside a field value: HTAB, SP, VCHAR or obs-text (RFC 9110 §5.5).
#[inline]
pub(super) fn is_field_value_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & FIELD_VALUE != 0
}

/// An unreserved or sub-delims byte: one that a reg-name holds as itself (RFC 3986 §3.2.2).
#[inline]
pub(super) fn is_reg_name_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & REG_NAME != 0
}

/// The index of the first byte at or after `from` that is not a `tchar`, or `bytes.len()`:
/// the end of a method or a field name. Eight bytes per step: field names are letters,
/// digits and `-` nearly always, and a word of those alone is checked with a few additions
/// (no table, no branch per byte); at any other byte the table decides, and the scan goes on
/// past a rarer tchar (`_`, `!`, ...).
#[inline]
pub(super) fn tchar_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i + 8 <= bytes.len() {
        let others = not_alphanumeric_or_dash(word_at(bytes, i));
        if others == 0 {
            i += 8;
            continue;
        }
        i += (others.trailing_zeros() / 8) as usize;
        if !is_tchar(bytes[i]) {
            return i;
        }
        i += 1;
    }
    while i < bytes.len() && is_tchar(bytes[i]) {
        i += 1;
    }
    i
}

/// The high bit of each byte of `word` that is not an ASCII letter, digit or `-`; exact for
/// every byte. Each test works on the low seven bits, where adding a constant below 0x81
/// cannot carry into the next byte: `x + (0x80 - lo)` has its high bit set when `x >= lo`,
/// and `x + (0x7F - hi)` when `x > hi`.
#[inline]
fn not_alphanumeric_or_dash(word: u64) -> u64 {
    let low7 = word & !HIGH_BITS;
    let at_least = |lo: u8| low7.wrapping_add(ONES * u64::from(0x80 - lo));
    let above = |hi: u8| low7.wrapping_add(ONES * u64::from(0x7f - hi));
    // A letter of either case is one of 'a'..='z' once bit 5 is set.
    let folded = low7 | (ONES * 0x20);
    let letter =
        folded.wrapping_add(ONES * u64::from(0x80 - b'a')) & !folded.wrapping_add(ONES * u64::from(0x7f - b'z'));
    let digit = at_least(b'0') & !above(b'9');
    let dash = !(low7 ^ (ONES * u64::from(b'-'))).wrapping_add(ONES * 0x7f);
    !(letter | digit | dash) & HIGH_BITS | (word & HIGH_BITS)
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// The word at `bytes[i..i + 8]`, first byte lowest, so that the lowest flagged byte of a
/// mask below is the first in the buffer.
#[inline]
fn word_at(bytes: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[i..i + 8]);
    u64::from_le_bytes(word)
}

/// The high bit of each byte of `word` that is below `n` (`n` <= 0x80). Exact for the lowest
/// flagged byte; bytes above it may be flagged falsely by the borrow, which is why the scans
/// only ever use the lowest one ("hasless", Bit Twiddling Hacks).
#[inline]
fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH_BITS
}

/// The high bit of each byte of `word` that is `0x7F` (DEL) or above. Exact for the lowest
/// flagged byte: a carry only leaves a byte that is itself flagged (0xFF).
#[inline]
fn bytes_del_or_above(word: u64) -> u64 {
    (word.wrapping_add(ONES) | word) & HIGH_BITS
}

/// The high bit of each byte of `word` that is `0x7F` (DEL), exact for the lowest ("haszero"
/// of `word ^ 0x7F7F...`).
#[inline]
fn bytes_del(word: u64) -> u64 {
    let x = word ^ (ONES * 0x7f);
    x.wrapping_sub(ONES) & !x & HIGH_BITS
}

/// The index of the first byte at or after `from` that is not a VCHAR, or `bytes.len()`: the
/// end of a request-target. Eight bytes per step: a word with no byte below 0x21 and none at
/// 0x7F or above is all VCHAR.
pub(super) fn vchar_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i + 8 <= bytes.len() {
        let word = word_at(bytes, i);
        let stops = bytes_below(word, 0x21) | bytes_del_or_above(word);
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && is_vchar(bytes[i]) {
        i += 1;
    }
    i
}

/// The index of the first byte at or after `from` that is not a field-value byte, or
/// `bytes.len()`: the end of a field value (where its CR should be). Sixteen bytes per step,
/// as two words: a word with no control byte (below 0x20) and no DEL is all field-value
/// bytes. HTAB is a control byte that a value may hold, so a step with one is looked at again
/// past it.
pub(super) fn field_value_end(bytes: &[u8], from: usize) -> usize {
    let stops = |word: u64| bytes_below(word, 0x20) | bytes_del(word);
    let mut i = from;
    while i + 16 <= bytes.len() {
        let (low, high) = (stops(word_at(bytes, i)), stops(word_at(bytes, i + 8)));
        if low | high == 0 {
            i += 16;
            continue;
        }
        i += if low != 0 { low.trailing_zeros() / 8 } else { 8 + high.trailing_zeros() / 8 } as usize;
        if bytes[i] != b'\t' {
            return i;
        }
        i += 1;
    }
    while i + 8 <= bytes.len() {
        let stops = stops(word_at(bytes, i));
        if stops == 0 {
            i += 8;
            continue;
        }
        i += (stops.trailing_zeros() / 8) as usize;
        if bytes[i] != b'\t' {
            return i;
        }
        i += 1;
    }
    while i < bytes.len() && is_field_value_byte(bytes[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_agrees_with_the_rules_for_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(is_tchar(b), tchar_rule(b), "{b:#04x}");
            assert_eq!(is_vchar(b), vchar_rule(b), "{b:#04x}");
            assert_eq!(is_field_value_byte(b), field_value_rule(b), "{b:#04x}");
            assert_eq!(is_reg_name_byte(b), reg_name_rule(b), "{b:#04x}");
        }
    }

    /// The byte-at-a-time definition each word scan must agree with.
    fn end_by_bytes(bytes: &[u8], from: usize, class: fn(u8) -> bool) -> usize {
        bytes[from..].iter().position(|&b| !class(b)).map_or(bytes.len(), |n| from + n)
    }

    #[test]
    fn word_scans_stop_at_the_first_byte_outside_the_class_wherever_it_is() {
        // Every byte value, at every position of a run long enough for several words, after
        // every start offset, and with every byte value following it (to catch a borrow or
        // carry from one byte flagging the byte before it).
        for stop in 0..=255u8 {
            for after in [0x00, 0x09, 0x20, 0x7f, 0x80, 0xff, b'a'] {
                for position in 0..36 {
                    let mut bytes = vec![b'a'; 40];
                    bytes[position] = stop;
                    bytes[position + 1] = after;
                    for from in 0..=position {
                        assert_eq!(vchar_end(&bytes, from), end_by_bytes(&bytes, from, vchar_rule), "{stop:#x}");
                        assert_eq!(
                            field_value_end(&bytes, from),
                            end_by_bytes(&bytes, from, field_value_rule),
                            "{stop:#x} at {position} from {from}"
                        );
                        assert_eq!(tchar_end(&bytes, from), end_by_bytes(&bytes, from, tchar_rule));
                    }
                }
            }
        }
        // Runs with no stop at all end at the end, whatever the length.
        for len in 0..40 {
            let bytes = vec![b'\t'; len];
            assert_eq!(field_value_end(&bytes, 0), len);
            assert_eq!(vchar_end(&vec![b'~'; len], 0), len);
        }
    }
}
