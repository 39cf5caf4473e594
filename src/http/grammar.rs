//! The field grammar that every message head and the chunked trailer share (RFC 9110 §5.5,
//! §5.6; RFC 9112 §2.2, §5), and [`Parsed`], the answer of every incremental parser in
//! [`super`].
//!
//! A request head ([`super::request`]), a response head ([`super::response_head`]) and the
//! trailer of a chunked body ([`super::body`]) differ in their first line, or have none, but
//! their field lines are the same:
//!
//! ```text
//! field-line   = field-name ":" OWS field-value OWS         ; RFC 9112 §5
//! field-name   = token                                      ; RFC 9110 §5.1
//! token        = 1*tchar                                    ; RFC 9110 §5.6.2
//! OWS          = *( SP / HTAB )                             ; RFC 9110 §5.6.3
//! field-value  = *field-content                             ; RFC 9110 §5.5
//! #element     => [ element ] *( OWS "," OWS [ element ] )  ; RFC 9110 §5.6.1.2
//! ```
//!
//! So they are parsed, and looked up, by the one copy of that grammar here, with the same
//! strictness everywhere. Each function quotes the rule it implements.

use std::cell::Cell;
use std::fmt;

use super::error::HttpError;
use super::scan::{field_value_end, tchar_end};
pub(super) use super::scan::{is_field_value_byte, is_tchar};

/// The answer of an incremental parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Nothing wrong so far, but the value is not complete: read more and call again.
    Partial,
    /// The value, and how many bytes of the input it used.
    Complete { value: T, consumed: usize },
}

/// One field line (RFC 9112 §5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header<'b> {
    /// The field name as sent, a token (RFC 9110 §5.1: all ASCII); compare it
    /// case-insensitively. Bytes like the value: making each name a `&str` meant a UTF-8
    /// check of the head it came from, which a parser that has checked every byte of the name
    /// against `tchar` does not need, and which was a sixth of a browser head's parse
    /// (`cargo bench --bench http_parse`).
    pub name: &'b [u8],
    /// The field line value without the OWS around it (RFC 9112 §5.1). Bytes, not text: it
    /// may hold obs-text bytes >= 0x80 (RFC 9110 §5.5), which are not necessarily UTF-8.
    pub value: &'b [u8],
}

/// Shown as text, escaped where not printable ASCII: `Header { name: "Host", value: "x" }`.
impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("name", &format_args!("\"{}\"", self.name.escape_ascii()))
            .field("value", &format_args!("\"{}\"", self.value.escape_ascii()))
            .finish()
    }
}

/// The CRLF that ends a line, at the start of `buf`. `otherwise` is the error for any other
/// byte. RFC 9112 §2.2 allows a recipient to accept a bare LF; we do not.
pub(super) fn parse_line_end(buf: &[u8], otherwise: HttpError) -> Result<Parsed<()>, HttpError> {
    match buf {
        [] | [b'\r'] => Ok(Parsed::Partial),
        [b'\r', b'\n', ..] => Ok(Parsed::Complete { value: (), consumed: 2 }),
        // RFC 9112 §2.2: "A recipient of such a bare CR MUST consider that element to be
        // invalid or replace each bare CR with SP".
        [b'\r', ..] => Err(HttpError::BareCr),
        [b'\n', ..] => Err(HttpError::BareLf),
        _ => Err(otherwise),
    }
}

/// How many field lines the vector of a head has room for before it grows: a browser sends
/// about 15, so one allocation covers almost every head.
const FIELDS_CAPACITY: usize = 32;

/// An empty vector for the field lines of one head, with room for the usual number of them.
pub(super) fn field_vec<'b>(max_headers: usize) -> Vec<Header<'b>> {
    Vec::with_capacity(max_headers.min(FIELDS_CAPACITY))
}

thread_local! {
    /// The field vector of the last request head parsed on this thread, emptied and kept for
    /// the next one, so that parsing a request head allocates nothing: the allocation and its
    /// free were a tenth of the time a minimal head took (`cargo bench --bench http_parse`
    /// under `perf`). One per thread (an event-loop worker parses its connections' heads one
    /// after another), so an idle connection holds none.
    static SPARE_FIELDS: Cell<Vec<Header<'static>>> = const { Cell::new(Vec::new()) };
}

/// An empty vector for the field lines of one request head: this thread's spare
/// ([`keep_as_spare`] gives it back), or a new one.
pub(super) fn lend_field_vec<'b>(max_headers: usize) -> Vec<Header<'b>> {
    let spare = SPARE_FIELDS.try_with(Cell::take).unwrap_or_default();
    if spare.capacity() > 0 {
        spare
    } else {
        field_vec(max_headers)
    }
}

/// Keeps a head's field vector as this thread's spare, emptied, unless it grew past
/// [`FIELDS_CAPACITY`]: a head of a hundred fields does not leave every thread holding room
/// for a hundred. The emptied vector of `Header<'b>` becomes one of `Header<'static>` in
/// place (`collect` from a `Vec`'s own iterator reuses its allocation when the two types
/// have one size and alignment), with no element left to carry a borrow of the old buffer.
pub(super) fn keep_as_spare(mut fields: Vec<Header<'_>>) {
    if fields.capacity() > FIELDS_CAPACITY {
        return;
    }
    fields.clear();
    let spare: Vec<Header<'static>> = fields.into_iter().map(|_| Header { name: b"", value: b"" }).collect();
    let _ = SPARE_FIELDS.try_with(|cell| cell.set(spare));
}

/// The room (capacity, in fields) of this thread's spare field vector; 0 when it has none.
/// For tests, which must look at the spare itself: a vector freed and a new one allocated
/// usually land at the same address, so the address alone cannot tell reuse from waste.
#[cfg(test)]
pub(super) fn spare_field_room() -> usize {
    SPARE_FIELDS.with(|cell| {
        let spare = cell.take();
        let room = spare.capacity();
        cell.set(spare);
        room
    })
}

/// ```text
/// *( field-line CRLF ) CRLF                            ; RFC 9112 §2.1
/// ```
///
/// Parses field lines up to and including the empty line. `consumed` counts the final CRLF.
/// The count limit is exact: `max_headers` lines are accepted, and the line after them is
/// refused as soon as its first byte arrives.
pub(super) fn parse_field_section(buf: &[u8], max_headers: usize) -> Result<Parsed<Vec<Header<'_>>>, HttpError> {
    let mut fields = field_vec(max_headers);
    Ok(match scan_field_section(buf, 0, max_headers, &mut fields)? {
        None => Parsed::Partial,
        Some(end) => Parsed::Complete { value: fields, consumed: end },
    })
}

/// The field section (as [`parse_field_section`]) that starts at `buf[start..]`, each line
/// pushed on `fields` (which starts empty). `Some(end)` once the empty line is in: `end` is
/// the offset just past its CRLF. `None`: read more.
pub(super) fn scan_field_section<'b>(
    buf: &'b [u8],
    start: usize,
    max_headers: usize,
    fields: &mut Vec<Header<'b>>,
) -> Result<Option<usize>, HttpError> {
    let mut position = start;
    loop {
        match buf.get(position) {
            None => return Ok(None),
            Some(b'\r' | b'\n') => {
                // The empty line that ends the section.
                return Ok(match parse_line_end(&buf[position..], HttpError::BareCr)? {
                    Parsed::Partial => None,
                    Parsed::Complete { consumed, .. } => Some(position + consumed),
                });
            }
            Some(_) if fields.len() == max_headers => return Err(HttpError::TooManyHeaders),
            Some(_) => {}
        }
        match scan_field_line(buf, position)? {
            None => return Ok(None),
            Some((field, next)) => {
                fields.push(field);
                position = next;
            }
        }
    }
}

/// ```text
/// field-line   = field-name ":" OWS field-value OWS   ; RFC 9112 §5
/// field-name   = token                                ; RFC 9110 §5.1
/// field-value  = *field-content                       ; RFC 9110 §5.5
/// field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
/// field-vchar  = VCHAR / obs-text
/// obs-fold     = OWS CRLF RWS                         ; RFC 9112 §5.2
/// ```
///
/// Parses one field line and its CRLF from the start of `buf`.
pub(super) fn parse_field_line(buf: &[u8]) -> Result<Parsed<Header<'_>>, HttpError> {
    Ok(match scan_field_line(buf, 0)? {
        None => Parsed::Partial,
        Some((header, consumed)) => Parsed::Complete { value: header, consumed },
    })
}

/// The field line at `buf[start..]` (the grammar is on [`parse_field_line`]) and the offset
/// just past its CRLF; `None` while it is incomplete.
fn scan_field_line(buf: &[u8], start: usize) -> Result<Option<(Header<'_>, usize)>, HttpError> {
    let name_end = tchar_end(buf, start);
    let Some(&after_name) = buf.get(name_end) else {
        return Ok(None);
    };
    let name_len = name_end - start;
    match after_name {
        b':' if name_len > 0 => {}
        // RFC 9112 §5.2: a server that receives an obs-fold "MUST either reject the message
        // by sending a 400 (Bad Request) ... or replace each received obs-fold with one or
        // more SP octets". §2.2 asks the same of whitespace after the start-line. We reject.
        b' ' | b'\t' if name_len == 0 => return Err(HttpError::ObsFold),
        // Whitespace after a name: if a colon follows, it is the forbidden whitespace before
        // the colon; otherwise the name itself is broken ("Ho st: x").
        b' ' | b'\t' => {
            return match buf[name_end..].iter().find(|&&b| b != b' ' && b != b'\t') {
                // RFC 9112 §5.1: "A server MUST reject, with a response status code of 400
                // (Bad Request), any received request message that contains whitespace
                // between a header field name and colon."
                Some(b':') => Err(HttpError::WhitespaceBeforeColon),
                Some(_) => Err(HttpError::BadFieldName),
                None => Ok(None),
            };
        }
        _ => return Err(HttpError::BadFieldName),
    }

    // RFC 9112 §5.1: "OWS occurring before the first non-whitespace octet of the field line
    // value, or after the last non-whitespace octet of the field line value, is excluded".
    // Leading OWS is skipped before the value is scanned, trailing OWS trimmed after.
    let mut value_start = name_end + 1;
    while matches!(buf.get(value_start), Some(b' ' | b'\t')) {
        value_start += 1;
    }
    let value_end = field_value_end(buf, value_start);
    // RFC 9110 §5.5: "a recipient of CR, LF, or NUL within a field value MUST either reject
    // the message or replace each of those characters with SP"; other CTLs "are also
    // invalid". We reject them all. A CR or LF can only be the line end, and must be CRLF.
    let Parsed::Complete { consumed: crlf_len, .. } = parse_line_end(&buf[value_end..], HttpError::BadFieldValue)?
    else {
        return Ok(None);
    };
    let mut trimmed_end = value_end;
    while trimmed_end > value_start && matches!(buf[trimmed_end - 1], b' ' | b'\t') {
        trimmed_end -= 1;
    }
    let field = Header { name: &buf[start..name_end], value: &buf[value_start..trimmed_end] };
    Ok(Some((field, value_end + crlf_len)))
}

/// Removes OWS (`*( SP / HTAB )`, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// `token = 1*tchar` (RFC 9110 §5.6.2).
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// Bytes already checked to be ASCII (tokens, VCHARs) as a `&str`.
pub(super) fn ascii_str(bytes: &[u8]) -> &str {
    // Cannot fail: every caller has checked that each byte is a tchar or VCHAR, and ASCII
    // is valid UTF-8.
    std::str::from_utf8(bytes).expect("bytes checked to be ASCII")
}

// ---------------------------------------------------------------------------------------
// Field lookups
// ---------------------------------------------------------------------------------------

/// The values of every field line named `name` (case-insensitive, RFC 9110 §5.1), in order.
pub(super) fn fields_named<'h, 'b>(headers: &'h [Header<'b>], name: &'h str) -> impl Iterator<Item = &'b [u8]> + 'h {
    headers.iter().filter(move |header| header.name.eq_ignore_ascii_case(name.as_bytes())).map(|header| header.value)
}

/// The elements of a comma-separated list value (RFC 9110 §5.6.1), OWS trimmed, empty
/// elements skipped ("a recipient MUST parse and ignore a reasonable number of empty list
/// elements"). The split ignores quoted-strings, which is exact for the token lists we read
/// (Connection, Upgrade, Transfer-Encoding, Expect): a quoted comma could only appear where
/// we reject the element anyway.
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|element| !element.is_empty())
}

/// Whether any field line named `name` lists `token` (both case-insensitive).
pub(super) fn list_has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    fields_named(headers, name).flat_map(list_elements).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::scan::is_vchar;
    use super::*;

    #[test]
    fn rfc9110_5_6_2_tchar_is_vchar_minus_delimiters() {
        let delimiters = b"\"(),/:;<=>?@[\\]{}";
        for b in 0..=255u8 {
            assert_eq!(is_tchar(b), is_vchar(b) && !delimiters.contains(&b), "{b:#04x}");
        }
    }

    #[test]
    fn rfc9110_5_6_3_ows_trimming() {
        assert_eq!(trim_ows(b" \t a b \t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"x"), b"x");
    }
}
