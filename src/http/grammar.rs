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

use super::error::HttpError;

/// The answer of an incremental parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Nothing wrong so far, but the value is not complete: read more and call again.
    Partial,
    /// The value, and how many bytes of the input it used.
    Complete { value: T, consumed: usize },
}

/// One field line (RFC 9112 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'b> {
    /// The field name as sent; compare it case-insensitively (RFC 9110 §5.1).
    pub name: &'b str,
    /// The field line value without the OWS around it (RFC 9112 §5.1). Bytes, not text: it
    /// may hold obs-text bytes >= 0x80 (RFC 9110 §5.5), which are not necessarily UTF-8.
    pub value: &'b [u8],
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

/// ```text
/// *( field-line CRLF ) CRLF                            ; RFC 9112 §2.1
/// ```
///
/// Parses field lines up to and including the empty line. `consumed` counts the final CRLF.
/// The count limit is exact: `max_headers` lines are accepted, and the line after them is
/// refused as soon as its first byte arrives.
pub(super) fn parse_field_section(buf: &[u8], max_headers: usize) -> Result<Parsed<Vec<Header<'_>>>, HttpError> {
    let mut headers = Vec::new();
    let mut position = 0;
    loop {
        match buf.get(position) {
            None => return Ok(Parsed::Partial),
            Some(b'\r' | b'\n') => {
                // The empty line that ends the section.
                return Ok(match parse_line_end(&buf[position..], HttpError::BareCr)? {
                    Parsed::Partial => Parsed::Partial,
                    Parsed::Complete { consumed, .. } => {
                        Parsed::Complete { value: headers, consumed: position + consumed }
                    }
                });
            }
            Some(_) if headers.len() == max_headers => return Err(HttpError::TooManyHeaders),
            Some(_) => {}
        }
        match parse_field_line(&buf[position..])? {
            Parsed::Partial => return Ok(Parsed::Partial),
            Parsed::Complete { value, consumed } => {
                headers.push(value);
                position += consumed;
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
    let Some(name_len) = buf.iter().position(|&b| !is_tchar(b)) else {
        return Ok(Parsed::Partial);
    };
    match buf[name_len] {
        b':' if name_len > 0 => {}
        // RFC 9112 §5.2: a server that receives an obs-fold "MUST either reject the message
        // by sending a 400 (Bad Request) ... or replace each received obs-fold with one or
        // more SP octets". §2.2 asks the same of whitespace after the start-line. We reject.
        b' ' | b'\t' if name_len == 0 => return Err(HttpError::ObsFold),
        // Whitespace after a name: if a colon follows, it is the forbidden whitespace before
        // the colon; otherwise the name itself is broken ("Ho st: x").
        b' ' | b'\t' => {
            return match buf[name_len..].iter().find(|&&b| b != b' ' && b != b'\t') {
                // RFC 9112 §5.1: "A server MUST reject, with a response status code of 400
                // (Bad Request), any received request message that contains whitespace
                // between a header field name and colon."
                Some(b':') => Err(HttpError::WhitespaceBeforeColon),
                Some(_) => Err(HttpError::BadFieldName),
                None => Ok(Parsed::Partial),
            };
        }
        _ => return Err(HttpError::BadFieldName),
    }
    let name = ascii_str(&buf[..name_len]);

    let value_start = name_len + 1;
    let rest = &buf[value_start..];
    let Some(value_len) = rest.iter().position(|&b| !is_field_value_byte(b)) else {
        return Ok(Parsed::Partial);
    };
    // RFC 9110 §5.5: "a recipient of CR, LF, or NUL within a field value MUST either reject
    // the message or replace each of those characters with SP"; other CTLs "are also
    // invalid". We reject them all. A CR or LF can only be the line end, and must be CRLF.
    let Parsed::Complete { consumed: crlf_len, .. } = parse_line_end(&rest[value_len..], HttpError::BadFieldValue)?
    else {
        return Ok(Parsed::Partial);
    };
    // RFC 9112 §5.1: "OWS occurring before the first non-whitespace octet of the field line
    // value, or after the last non-whitespace octet of the field line value, is excluded".
    let value = trim_ows(&rest[..value_len]);
    Ok(Parsed::Complete { value: Header { name, value }, consumed: value_start + value_len + crlf_len })
}

/// Removes OWS (`*( SP / HTAB )`, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// `tchar` (RFC 9110 §5.6.2): any VCHAR except the delimiters `"(),/:;<=>?@[\]{}`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// `token = 1*tchar` (RFC 9110 §5.6.2).
pub(super) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// VCHAR: visible US-ASCII, %x21-7E (RFC 5234 appendix B.1).
pub(super) fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// `obs-text = %x80-FF` (RFC 9110 §5.6.4).
fn is_obs_text(b: u8) -> bool {
    b >= 0x80
}

/// A byte allowed inside a field value: HTAB, SP, VCHAR or obs-text (RFC 9110 §5.5).
/// Also the bytes of a reason-phrase (RFC 9112 §4).
pub(super) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || is_vchar(b) || is_obs_text(b)
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
    headers.iter().filter(move |header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value)
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
