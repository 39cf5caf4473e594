//! Writing responses (RFC 9112 §4, §6, §7.1; RFC 9110 §6.6.1, §15).
//!
//! A response is a status line, header fields, an empty line and a body whose length the
//! client must be able to find (RFC 9112 §6.3). This server frames bodies one of three ways:
//!
//! - `Content-Length` for every complete response ([`write_response`]);
//! - chunked transfer coding for a stream of unknown length on HTTP/1.1 ([`write_chunk`],
//!   [`write_chunk_pieces`], [`write_last_chunk`]): Server-Sent Events use it, one chunk per
//!   event;
//! - the end of the connection for a stream to an HTTP/1.0 client, which knows no chunking.
//!
//! The status line always says `HTTP/1.1`, also to HTTP/1.0 clients: RFC 9112 §2.3 asks a
//! server to send "the highest version to which the server is conformant that has a major
//! version less than or equal to the one received in the request". What changes for 1.0 is
//! what we may *use*: no chunking, and persistence only when the client asked for it.

#![forbid(unsafe_code)]

use super::request::Version;
use crate::decimal::{push_decimal, write_padded};

/// A complete response with a body of known length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header fields other than the framing ones (`Content-Length`, `Connection`, `Date`),
    /// which [`write_response`] adds itself.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A short plain-text response: how every error is answered.
    pub fn text(status: u16, body: &str) -> Response {
        let mut body = body.as_bytes().to_vec();
        body.push(b'\n');
        Response { status, headers: vec![("Content-Type", "text/plain; charset=utf-8".into())], body }
    }

    pub fn json(status: u16, body: String) -> Response {
        Response { status, headers: vec![("Content-Type", "application/json".into())], body: body.into_bytes() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// What the request decided about how its response is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// The request's version: HTTP/1.0 gets no chunked coding.
    pub version: Version,
    /// Whether the connection stays open after this response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// A `HEAD` request: the same header fields as for `GET`, no body (RFC 9110 §9.3.2).
    pub head_only: bool,
}

/// The reason phrase for the status codes this server sends. Clients ignore it (RFC 9112
/// §4: "A client SHOULD ignore the reason-phrase content"); it is there for humans.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Writes a status line and header fields, up to and including the empty line.
///
/// `date` is an IMF-fixdate ([`format_http_date`]): RFC 9110 §6.6.1, "An origin server with a
/// clock ... MUST generate a Date header field" in 2xx, 3xx and 4xx responses.
pub fn write_head(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], date: &str) {
    write_status_line_and_date(out, status, date);
    for (name, value) in headers {
        push_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a complete response with `Content-Length` framing. Byte by byte, as every writer of
/// a head here: `write!` and the vector of fields it once built were 1.5% of a node's CPU
/// under a publish load (`perf`, `benches/redis_hop.rs` part 2).
pub fn write_response(out: &mut Vec<u8>, response: &Response, framing: Framing, date: &str) {
    write_status_line_and_date(out, response.status, date);
    for (name, value) in &response.headers {
        push_field(out, name, value);
    }
    // RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any response with
    // a status code of 1xx (Informational) or 204 (No Content)"; such a response has no content.
    if response.status >= 200 && response.status != 204 {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, response.body.len());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(connection) = connection_field(framing) {
        push_field(out, "Connection", connection);
    }
    out.extend_from_slice(b"\r\n");
    // RFC 9110 §9.3.2: "The server SHOULD send the same header fields in response to a HEAD
    // request as it would have sent if the request method had been GET", without the content.
    if !framing.head_only {
        out.extend_from_slice(&response.body);
    }
}

/// `HTTP/1.1 <status> <reason>`, and the `Date` field a final response carries.
fn write_status_line_and_date(out: &mut Vec<u8>, status: u16, date: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if status >= 200 {
        push_field(out, "Date", date);
    }
}

/// `name: value` and its CRLF.
fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The `Connection` field a response needs, if any: `close`, or, for an HTTP/1.0 client that
/// asked to keep the connection, `keep-alive` (HTTP/1.0 persistence is opt-in, RFC 9112 §9.3
/// and Appendix C.2.2).
fn connection_field(framing: Framing) -> Option<&'static str> {
    if !framing.keep_alive {
        Some("close")
    } else if framing.version == Version::Http10 {
        Some("keep-alive")
    } else {
        None
    }
}

/// Appends one chunk (RFC 9112 §7.1: `chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF`).
/// An empty `data` would be the last-chunk, so it writes nothing.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    write_chunk_pieces(out, &[data]);
}

/// The most bytes a chunk adds around its data: a chunk-size of at most 16 hex digits (a
/// 64-bit length) and two CRLFs.
const MAX_CHUNK_FRAMING: usize = 16 + 2 * 2;

/// Appends one chunk whose data is `pieces` one after the other, without joining them first:
/// the chunk-size is their total length, written before any of them. This is how an SSE event
/// goes out around the broker's shared envelope ([`crate::sse::LineEvent`]): the envelope is
/// copied once, from the history into the output. Empty in total, it writes nothing (that
/// would be the last-chunk).
pub fn write_chunk_pieces(out: &mut Vec<u8>, pieces: &[&[u8]]) {
    let size: usize = pieces.iter().map(|piece| piece.len()).sum();
    if size == 0 {
        return;
    }
    out.reserve(size + MAX_CHUNK_FRAMING);
    push_chunk_size(out, size);
    out.extend_from_slice(b"\r\n");
    for piece in pieces {
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `size` as a chunk-size (`1*HEXDIG`): lowercase hex without leading zeros. Written
/// by hand because it is written once per event to every subscriber, and `write!` would cost
/// more than the rest of a small event's framing.
fn push_chunk_size(out: &mut Vec<u8>, size: usize) {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1) as usize;
    for digit in (0..digits).rev() {
        out.push(HEX_DIGITS[(size >> (4 * digit)) & 0xf]);
    }
}

/// Appends the last-chunk and the empty trailer section that end a chunked body.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`: the IMF-fixdate of RFC 9110 §5.6.7 for a Unix time,
/// written digit by digit into 29 bytes rather than through `format!`: every response carries
/// one (`Date`, §6.6.1), and the formatting machinery and the `String` were 2.6% of a node's
/// CPU under a publish load (`perf`, `benches/redis_hop.rs` part 2). Its grammar has a
/// four-digit year, so a clock past 9999 is written as the last second of 9999.
pub fn format_http_date(unix_secs: u64) -> HttpDate {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"]; // 1970-01-01 was a Thursday
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    let unix_secs = unix_secs.min(LAST_SECOND_OF_9999);
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = crate::time::civil_from_days(days);
    let mut date = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    date[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    write_padded(&mut date[5..7], day);
    date[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    write_padded(&mut date[12..16], year);
    write_padded(&mut date[17..19], secs_of_day / 3600);
    write_padded(&mut date[20..22], secs_of_day / 60 % 60);
    write_padded(&mut date[23..25], secs_of_day % 60);
    HttpDate(date)
}

/// An IMF-fixdate ([`format_http_date`]), read as a `&str`.
#[derive(Clone, Copy)]
pub struct HttpDate([u8; 29]);

impl std::ops::Deref for HttpDate {
    type Target = str;

    fn deref(&self) -> &str {
        // Only ASCII letters, digits, spaces, commas and colons are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or("Thu, 01 Jan 1970 00:00:00 GMT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn framing(version: Version, keep_alive: bool, head_only: bool) -> Framing {
        Framing { version, keep_alive, head_only }
    }

    #[test]
    fn rfc9110_5_6_7_imf_fixdate_example() {
        assert_eq!(&*format_http_date(784_111_777), DATE);
        assert_eq!(&*format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&*format_http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&*format_http_date(1_796_039_897), "Mon, 30 Nov 2026 11:58:17 GMT");
    }

    /// RFC 9110 §5.6.7: `year = 4DIGIT`; a clock past 9999 cannot be written, and its last
    /// second is written instead of a fifth digit.
    #[test]
    fn rfc9110_5_6_7_an_imf_fixdate_year_has_four_digits() {
        assert_eq!(&*format_http_date(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(&*format_http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn rfc9112_6_3_complete_responses_carry_content_length() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(200, "ok"), framing(Version::Http11, true, false), DATE);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nok\n"
        );
    }

    /// RFC 9110 §8.6: `Content-Length = 1*DIGIT`, the content's length in decimal octets.
    #[test]
    fn rfc9110_8_6_content_length_is_the_decimal_number_of_octets() {
        for length in [0, 9, 10, 99, 100, 65_535, 1_048_576] {
            let mut out = Vec::new();
            let response = Response { status: 200, headers: Vec::new(), body: vec![b'x'; length] };
            write_response(&mut out, &response, framing(Version::Http11, true, true), DATE);
            let head = String::from_utf8(out).unwrap();
            assert!(head.ends_with(&format!("\r\nContent-Length: {length}\r\n\r\n")), "{head}");
        }
    }

    #[test]
    fn rfc9110_9_3_2_head_gets_the_same_fields_and_no_content() {
        let mut get = Vec::new();
        let mut head = Vec::new();
        let response = Response::text(200, "ok");
        write_response(&mut get, &response, framing(Version::Http11, true, false), DATE);
        write_response(&mut head, &response, framing(Version::Http11, true, true), DATE);
        assert_eq!(&get[..head.len()], &head[..]);
        assert!(head.ends_with(b"Content-Length: 3\r\n\r\n"));
    }

    #[test]
    fn rfc9110_8_6_a_204_carries_no_content_length() {
        let mut out = Vec::new();
        let no_content = Response { status: 204, headers: vec![("Allow", "POST".into())], body: Vec::new() };
        write_response(&mut out, &no_content, framing(Version::Http11, true, false), DATE);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nAllow: POST\r\n\r\n"
        );
    }

    #[test]
    fn rfc9112_9_3_connection_close_is_announced() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(400, "bad"), framing(Version::Http11, false, false), DATE);
        assert!(String::from_utf8(out).unwrap().contains("\r\nConnection: close\r\n"));
    }

    #[test]
    fn rfc9112_c_2_2_http10_keep_alive_is_confirmed() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(200, "ok"), framing(Version::Http10, true, false), DATE);
        assert!(String::from_utf8(out).unwrap().contains("\r\nConnection: keep-alive\r\n"));
    }

    #[test]
    fn rfc9112_7_1_chunks_are_hex_sized_and_end_with_a_last_chunk() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"Wiki");
        write_chunk(&mut out, b"pedia in chunks.");
        write_chunk(&mut out, b"");
        write_last_chunk(&mut out);
        assert_eq!(out, b"4\r\nWiki\r\n10\r\npedia in chunks.\r\n0\r\n\r\n");
    }

    #[test]
    fn rfc9112_7_1_chunk_sizes_are_lowercase_hex_without_leading_zeros() {
        for size in [1, 9, 10, 15, 16, 255, 256, 0xabcdef, usize::MAX] {
            let mut out = Vec::new();
            push_chunk_size(&mut out, size);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{size:x}"));
        }
    }

    #[test]
    fn rfc9112_7_1_a_chunk_of_pieces_is_byte_for_byte_the_chunk_of_their_concatenation() {
        let big = vec![b'x'; 70_000];
        for pieces in [&[&b"id: "[..], b"k3f9-1", b"\n", &big, b"\n\n"][..], &[b"", b"Wiki", b""], &[b"", b""], &[]] {
            let mut joined = Vec::new();
            write_chunk(&mut joined, &pieces.concat());
            let mut written = Vec::new();
            write_chunk_pieces(&mut written, pieces);
            assert_eq!(written, joined);
        }
    }
}
