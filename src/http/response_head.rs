//! The response head parser, for this crate's own clients: tests, the WebSocket client and
//! the benchmark tool (RFC 9112 §4, §6.3).
//!
//! # Theory of operation
//!
//! The same shape as [`super::request::parse_request`]: hand it the bytes read so far, get
//! `Partial` until the empty line after the fields, then the parsed head and the bytes it
//! used. The field section is parsed by the very same code as a request's, with the same
//! limits and the same strictness; only the start-line differs:
//!
//! ```text
//! status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF   ; RFC 9112 §4
//! status-code = 3DIGIT
//! reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
//! ```
//!
//! After a `101 Switching Protocols`, the bytes after `consumed` are the first WebSocket
//! frames; the caller hands them to the frame codec.
//!
//! How the body that follows is delimited depends on the request as well as the response
//! (RFC 9112 §6.3): see [`ResponseHead::body_framing`].

use super::body::BodyFraming;
use super::error::HttpError;
use super::grammar::{
    fields_named, is_field_value_byte, list_has_token, parse_field_section, parse_line_end, Header, Parsed,
};
use super::request::{enforce_head_limit, framing_from_fields, parse_http_version, Limits, Version};

/// A parsed response head, borrowing from the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead<'b> {
    pub version: Version,
    /// 100 to 599 (RFC 9110 §15: "Values outside the range 100..599 are invalid").
    pub status: u16,
    /// For humans only (RFC 9112 §4: "A client SHOULD ignore the reason-phrase content").
    /// It may hold obs-text; a reason that is not UTF-8 is given as "".
    pub reason: &'b str,
    /// The field lines in the order received.
    pub headers: Vec<Header<'b>>,
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to HEAD, or a 1xx, 204 or 304 (rule 1).
    None,
    /// Exactly this many bytes (rule 6).
    Length(u64),
    /// The chunked transfer coding (rule 4).
    Chunked,
    /// Everything until the server closes the connection (rule 8): an HTTP/1.0 stream.
    UntilClose,
}

/// Parses a response head from the start of `buf`. `Partial` until the empty line after the
/// fields has arrived; `consumed` counts the head's bytes including that line. Errors come as
/// soon as the bytes that cause them are in `buf`, and a head longer than
/// `limits.max_head_bytes` is an error at once (`max_target_bytes` is not used).
pub fn parse_response<'b>(buf: &'b [u8], limits: &Limits) -> Result<Parsed<ResponseHead<'b>>, HttpError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let parsed = parse_response_head(window, limits)?;
    enforce_head_limit(parsed, buf.len(), limits.max_head_bytes)
}

fn parse_response_head<'b>(buf: &'b [u8], limits: &Limits) -> Result<Parsed<ResponseHead<'b>>, HttpError> {
    let Parsed::Complete { value: line, consumed: mut position } = parse_status_line(buf)? else {
        return Ok(Parsed::Partial);
    };
    let Parsed::Complete { value: headers, consumed } = parse_field_section(&buf[position..], limits.max_headers)?
    else {
        return Ok(Parsed::Partial);
    };
    position += consumed;
    let head = ResponseHead { version: line.version, status: line.status, reason: line.reason, headers };
    Ok(Parsed::Complete { value: head, consumed: position })
}

struct StatusLine<'b> {
    version: Version,
    status: u16,
    reason: &'b str,
}

/// ```text
/// status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
/// ```
///
/// Strict like the request-line: one SP on each side of the status code, including when the
/// reason is empty (`HTTP/1.1 204 \r\n`).
fn parse_status_line(buf: &[u8]) -> Result<Parsed<StatusLine<'_>>, HttpError> {
    let Parsed::Complete { value: version, consumed: version_len } = parse_http_version(buf)? else {
        return Ok(Parsed::Partial);
    };
    // Positions of the parts: "HTTP/1.1" SP "200" SP reason
    let status_start = version_len + 1;
    let reason_start = status_start + 4;
    for (position, &byte) in buf.iter().enumerate().take(reason_start).skip(version_len) {
        let fits = match position - version_len {
            0 | 4 => byte == b' ',
            _ => byte.is_ascii_digit(),
        };
        if !fits {
            return Err(HttpError::BadStatusLine);
        }
    }
    let Some(status_digits) = buf.get(status_start..status_start + 3) else {
        return Ok(Parsed::Partial);
    };
    let status = status_digits.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(HttpError::BadStatusLine);
    }
    let Some(rest) = buf.get(reason_start..) else {
        return Ok(Parsed::Partial);
    };
    let Some(reason_len) = rest.iter().position(|&b| !is_field_value_byte(b)) else {
        return Ok(Parsed::Partial);
    };
    let Parsed::Complete { consumed: crlf_len, .. } = parse_line_end(&rest[reason_len..], HttpError::BadStatusLine)?
    else {
        return Ok(Parsed::Partial);
    };
    let reason = std::str::from_utf8(&rest[..reason_len]).unwrap_or("");
    Ok(Parsed::Complete {
        value: StatusLine { version, status, reason },
        consumed: reason_start + reason_len + crlf_len,
    })
}

impl<'b> ResponseHead<'b> {
    /// The value of the first field line named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        fields_named(&self.headers, name).next()
    }

    /// The values of every field line named `name` (case-insensitive), in order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        fields_named(&self.headers, name)
    }

    /// Whether any field line named `name` has `token` in its comma-separated list, both
    /// compared case-insensitively (`Upgrade: websocket`, `Connection: Upgrade`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        list_has_token(&self.headers, name, token)
    }

    /// How the body after this head is delimited (RFC 9112 §6.3). `request_method_was_head`
    /// says whether the request was HEAD, whose response has no body whatever its fields say.
    /// CONNECT (rule 2) is not handled: our clients never send it.
    pub fn body_framing(&self, request_method_was_head: bool) -> Result<ResponseFraming, HttpError> {
        // RFC 9112 §6.3 rule 1: "Any response to a HEAD request and any response with a 1xx
        // (Informational), 204 (No Content), or 304 (Not Modified) status code is always
        // terminated by the first empty line after the header fields".
        if request_method_was_head || (100..200).contains(&self.status) || self.status == 204 || self.status == 304 {
            return Ok(ResponseFraming::None);
        }
        // Rules 3 to 6 are the same as for a request; a client is as strict as our server
        // about Content-Length with Transfer-Encoding (rule 3: "ought to be handled as an
        // error") and about codings it cannot decode.
        Ok(match framing_from_fields(self.version, &self.headers)? {
            BodyFraming::Length(length) => ResponseFraming::Length(length),
            BodyFraming::Chunked => ResponseFraming::Chunked,
            // Rule 8: "a response message without a declared message body length ... is
            // determined by the number of octets received prior to the server closing the
            // connection".
            BodyFraming::None => ResponseFraming::UntilClose,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::MAX_HEAD_BYTES;
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Parsed<ResponseHead<'_>>, HttpError> {
        parse_response(bytes, &Limits::default())
    }

    /// Parses a buffer that starts with one complete head, after checking that every prefix
    /// shorter than the head is `Partial`. Returns the head and the bytes after it.
    fn parse_whole(bytes: &[u8]) -> (ResponseHead<'_>, &[u8]) {
        let Ok(Parsed::Complete { value, consumed }) = parse(bytes) else {
            panic!("{:?}: {:?}", String::from_utf8_lossy(bytes), parse(bytes));
        };
        for split in 0..consumed {
            assert_eq!(parse(&bytes[..split]), Ok(Parsed::Partial), "prefix of {split} bytes");
        }
        (value, &bytes[consumed..])
    }

    fn error_of(bytes: &[u8]) -> HttpError {
        let error = parse(bytes).expect_err("should fail");
        for split in 0..bytes.len() {
            match parse(&bytes[..split]) {
                Ok(Parsed::Partial) => {}
                Err(e) if e == error => {}
                other => panic!("prefix {split} of {:?}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
        error
    }

    #[test]
    fn rfc9112_4_status_line() {
        let (head, rest) = parse_whole(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n");
        assert_eq!(
            head,
            ResponseHead {
                version: Version::Http11,
                status: 200,
                reason: "OK",
                headers: vec![
                    Header { name: b"Content-Type", value: b"text/plain" },
                    Header { name: b"Content-Length", value: b"3" },
                ],
            }
        );
        assert_eq!(rest, b"ok\n");
        assert_eq!(head.body_framing(false), Ok(ResponseFraming::Length(3)));
    }

    #[test]
    fn rfc9112_4_reason_phrase_may_be_empty_or_hold_spaces() {
        let (head, _) = parse_whole(b"HTTP/1.1 204 \r\n\r\n");
        assert_eq!((head.status, head.reason), (204, ""));
        let (head, _) = parse_whole(b"HTTP/1.0 404 Not\tFound Here\r\n\r\n");
        assert_eq!((head.version, head.status, head.reason), (Version::Http10, 404, "Not\tFound Here"));
        // obs-text that is not UTF-8 is accepted and not shown.
        let (head, _) = parse_whole(b"HTTP/1.1 200 \xe9t\xe9\r\n\r\n");
        assert_eq!(head.reason, "");
    }

    #[test]
    fn rfc9112_4_malformed_status_lines_are_rejected() {
        for bad in [
            "HTTP/1.1 200\r\n\r\n",
            "HTTP/1.1  200 OK\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1 600 High\r\n\r\n",
            "HTTP/1.1 200 O\x00K\r\n\r\n",
            "HTTP/1.1\t200 OK\r\n\r\n",
        ] {
            assert_eq!(error_of(bad.as_bytes()), HttpError::BadStatusLine, "{bad:?}");
        }
        assert_eq!(error_of(b"HTTP/2 200 OK\r\n\r\n"), HttpError::MalformedVersion);
        assert_eq!(error_of(b"HTTP/2.0 200 OK\r\n\r\n"), HttpError::UnsupportedVersion);
        assert_eq!(error_of(b"HTTP/1.1 200 OK\n\r\n"), HttpError::BareLf);
    }

    #[test]
    fn rfc9112_5_field_rules_are_the_requests() {
        assert_eq!(error_of(b"HTTP/1.1 200 OK\r\nServer : x\r\n\r\n"), HttpError::WhitespaceBeforeColon);
        assert_eq!(error_of(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n"), HttpError::ObsFold);
        assert_eq!(error_of(b"HTTP/1.1 200 OK\r\nX-A: 1\x7f\r\n\r\n"), HttpError::BadFieldValue);
        assert_eq!(error_of(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\n"), HttpError::BareLf);
    }

    #[test]
    fn limits_apply_to_responses() {
        let limits = Limits { max_headers: 1, ..Limits::default() };
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nA: 1\r\nB", &limits), Err(HttpError::TooManyHeaders));
        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 1, b'a');
        assert_eq!(parse(&big), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn rfc6455_4_2_2_switching_protocols_leaves_the_frames_that_follow() {
        // RFC 6455 §1.3's handshake response, followed by a first frame ("Hello", unmasked).
        let bytes = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05Hello";
        let (head, rest) = parse_whole(bytes);
        assert_eq!((head.status, head.reason), (101, "Switching Protocols"));
        assert!(head.has_token("upgrade", "WebSocket") && head.has_token("Connection", "upgrade"));
        assert_eq!(head.header("sec-websocket-accept"), Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..]));
        assert_eq!(head.headers_named("upgrade").count(), 1);
        assert_eq!(head.body_framing(false), Ok(ResponseFraming::None));
        assert_eq!(rest, b"\x81\x05Hello");
    }

    fn framing(head: &str, request_method_was_head: bool) -> Result<ResponseFraming, HttpError> {
        let bytes = format!("{head}\r\n");
        parse_whole(bytes.as_bytes()).0.body_framing(request_method_was_head)
    }

    #[test]
    fn rfc9112_6_3_rule_1_head_1xx_204_304_have_no_body() {
        let with_length = |status: &str| format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n");
        assert_eq!(framing(&with_length("200 OK"), true), Ok(ResponseFraming::None));
        for status in ["100 Continue", "103 Early Hints", "204 No Content", "304 Not Modified"] {
            assert_eq!(framing(&with_length(status), false), Ok(ResponseFraming::None), "{status}");
        }
        assert_eq!(framing(&with_length("205 Reset Content"), false), Ok(ResponseFraming::Length(10)));
    }

    #[test]
    fn rfc9112_6_3_rule_4_chunked() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(framing(head, false), Ok(ResponseFraming::Chunked));
    }

    #[test]
    fn rfc9112_6_3_rule_8_no_length_means_until_close() {
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n", false),
            Ok(ResponseFraming::UntilClose)
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n", false), Ok(ResponseFraming::UntilClose));
    }

    #[test]
    fn rfc9112_6_3_rules_3_and_5_bad_framing_is_an_error() {
        let both = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(framing(both, false), Err(HttpError::ContentLengthWithTransferEncoding));
        let conflicting = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n";
        assert_eq!(framing(conflicting, false), Err(HttpError::ConflictingContentLength));
        let http10_chunked = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(framing(http10_chunked, false), Err(HttpError::TransferEncodingOnHttp10));
        let gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n";
        assert_eq!(framing(gzip, false), Err(HttpError::UnsupportedTransferCoding));
    }
}
