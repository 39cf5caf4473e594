//! The request head parser (RFC 9112 §2-§5, §6, §9.3; RFC 9110 §5, §7.2, §8.6, §10.1.1).
//!
//! # Theory of operation
//!
//! A request head is a request-line, zero or more field lines and an empty line:
//!
//! ```text
//! HTTP-message   = start-line CRLF
//!                  *( field-line CRLF )
//!                  CRLF
//!                  [ message-body ]                           ; RFC 9112 §2.1
//! ```
//!
//! [`parse_request`] is handed whatever bytes the connection has read so far. It answers
//! [`Parsed::Partial`] until the empty line that ends the head is in the buffer, then
//! [`Parsed::Complete`] with the parsed [`Request`] and the number of bytes the head used;
//! whatever follows (a body, or the next pipelined request) is left for the caller. The
//! request borrows from the caller's buffer: nothing is copied (zero-copy), and the caller
//! must keep the buffer until it is done with the request. The field lines go into a vector
//! that [`Request::recycle`] hands on to the next head parsed on the same thread, so a server
//! that recycles its requests parses heads without allocating.
//!
//! The parser keeps no state between calls: each call starts again at the first byte, as
//! httparse does. That is what makes it simple, and it is cheap because each call looks at no
//! more than [`Limits::max_head_bytes`] bytes, so a head that trickles in costs at most that
//! much per read. A byte that breaks a rule is reported as soon as it is in the buffer, so
//! garbage is refused at once instead of after the limit; and a head that has already grown
//! past a limit is refused at once too, without waiting for the rest.
//!
//! It is strict. It requires CRLF line endings, single spaces in the request-line, tokens
//! where the grammar says token, and it rejects obsolete line folding, whitespace before a
//! colon and control characters in values. Each of these is a leniency that RFC 9112 allows
//! but that has been used for request smuggling when two parsers on the path disagree
//! (RFC 9112 §11.2). The few robustness rules that cost nothing are kept: one empty line
//! before the request-line is skipped (§2.2), and empty list elements are ignored (RFC 9110
//! §5.6.1).
//!
//! Once the head is parsed, [`Request`] answers the questions the server has about it: the
//! path and query, the authority, how the body is framed ([`Request::body_framing`]),
//! whether the connection persists ([`Request::keep_alive`]) and whether the client waits
//! for `100 Continue` ([`Request::expectation`]).
//!
//! The field lines are parsed by [`super::grammar`], which the response head parser and the
//! chunked trailer in [`super::body`] use too; the version parser, the head limit and the body
//! framing rules here are shared with [`super::response_head`].

use super::body::BodyFraming;
use super::error::HttpError;
use super::grammar::{
    ascii_str, fields_named, is_token, keep_as_spare, lend_field_vec, list_elements, list_has_token, parse_line_end,
    scan_field_section, trim_ows, Header, Parsed,
};
use super::scan::{is_reg_name_byte, tchar_end, vchar_end};

/// The largest request head we read: request-line plus fields. 16 KiB is twice the 8 KiB
/// that common servers default to, roomy for cookies and tokens, and small enough that
/// re-parsing it on each read is cheap. Past it: 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The longest request-target. RFC 9112 §3 recommends supporting "request-line lengths of
/// 8000 octets"; 8 KiB covers that. Past it: 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// The most field lines in a head. A browser sends about 15; 100 leaves room for proxies
/// that add their own while keeping the `Vec` of fields small. Past it: 431.
pub const MAX_HEADERS: usize = 100;

/// How many empty lines before the request-line are skipped. RFC 9112 §2.2: a server
/// "SHOULD ignore at least one empty line (CRLF) received prior to the request-line" (old
/// HTTP/1.0 clients sent a CRLF after a POST body). One is what the RFC asks for; a stream
/// of empty lines is not a request.
pub const MAX_LEADING_EMPTY_LINES: usize = 1;

/// Limits on a message head. The server's command-line flags override the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_HEAD_BYTES`].
    pub max_head_bytes: usize,
    /// See [`MAX_TARGET_BYTES`].
    pub max_target_bytes: usize,
    /// See [`MAX_HEADERS`].
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_head_bytes: MAX_HEAD_BYTES, max_target_bytes: MAX_TARGET_BYTES, max_headers: MAX_HEADERS }
    }
}

/// The HTTP versions we speak (RFC 9112 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request head, borrowing from the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'b> {
    /// Case-sensitive (RFC 9112 §3.1): `get` is not `GET`.
    pub method: &'b str,
    /// The request-target exactly as sent (visible ASCII only).
    pub target: &'b str,
    pub version: Version,
    /// The field lines in the order received.
    pub headers: Vec<Header<'b>>,
}

/// The four shapes of request-target (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`: the usual form (§3.2.1).
    Origin,
    /// `http://authority/path?query`: sent to proxies, and accepted by servers (§3.2.2).
    Absolute,
    /// `host:port`, only for CONNECT (§3.2.3).
    Authority,
    /// `*`, only for a server-wide OPTIONS (§3.2.4).
    Asterisk,
}

/// What the client expects before it sends the body (RFC 9110 §10.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    None,
    /// `Expect: 100-continue`: the client waits for a `100 Continue` before the body.
    Continue,
}

/// Parses a request head from the start of `buf`.
///
/// Returns [`Parsed::Partial`] while the head is incomplete and nothing is wrong yet, and
/// `Complete { value, consumed }` once the empty line has arrived, where `consumed` counts
/// the head's bytes including any skipped leading empty line and the final CRLF. Bytes after
/// that are not looked at. Errors are reported as soon as the bytes that cause them are in
/// `buf`: a request-target over the limit, or a head already longer than the limit, fails
/// without waiting for more.
///
/// Besides the syntax, this checks the Host rules of RFC 9112 §3.2 and the request-target
/// forms that each method allows. It does not look at Content-Length, Transfer-Encoding or
/// Expect: ask [`Request::body_framing`] and [`Request::expectation`] for those.
pub fn parse_request<'b>(buf: &'b [u8], limits: &Limits) -> Result<Parsed<Request<'b>>, HttpError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let parsed = parse_request_head(window, limits)?;
    enforce_head_limit(parsed, buf.len(), limits.max_head_bytes)
}

/// Turns a `Partial` into [`HttpError::HeadTooLarge`] when the buffer already holds more than
/// `max_head_bytes`: the head was parsed from the first `max_head_bytes` bytes and did not end
/// there, so it never will within the limit.
pub(super) fn enforce_head_limit<T>(
    parsed: Parsed<T>,
    buffered: usize,
    max_head_bytes: usize,
) -> Result<Parsed<T>, HttpError> {
    match parsed {
        Parsed::Partial if buffered > max_head_bytes => Err(HttpError::HeadTooLarge),
        parsed => Ok(parsed),
    }
}

fn parse_request_head<'b>(buf: &'b [u8], limits: &Limits) -> Result<Parsed<Request<'b>>, HttpError> {
    let Parsed::Complete { consumed: start, .. } = skip_leading_empty_lines(buf)? else {
        return Ok(Parsed::Partial);
    };
    let Parsed::Complete { value: line, consumed } = parse_request_line(buf, start, limits.max_target_bytes)? else {
        return Ok(Parsed::Partial);
    };
    let method = &buf[line.method.0..line.method.1];
    let target = &buf[line.target.0..line.target.1];
    // Checked as soon as the request-line is complete, so a bad target fails without
    // waiting for the fields.
    check_target_form(method, target)?;
    let mut fields = lend_field_vec(limits.max_headers);
    let end = match scan_field_section(buf, consumed, limits.max_headers, &mut fields) {
        Ok(Some(end)) => end,
        scanned => {
            keep_as_spare(fields);
            return scanned.map(|_| Parsed::Partial);
        }
    };
    // The method and the target are checked to be tokens and VCHARs: ASCII, so `&str`s.
    let request =
        Request { method: ascii_str(method), target: ascii_str(target), version: line.version, headers: fields };
    if let Err(error) = check_host(&request) {
        request.recycle();
        return Err(error);
    }
    Ok(Parsed::Complete { value: request, consumed: end })
}

/// RFC 9112 §2.2: a server "SHOULD ignore at least one empty line (CRLF) received prior to
/// the request-line". We skip up to [`MAX_LEADING_EMPTY_LINES`].
fn skip_leading_empty_lines(buf: &[u8]) -> Result<Parsed<()>, HttpError> {
    let mut position = 0;
    for _ in 0..MAX_LEADING_EMPTY_LINES {
        if !matches!(buf.get(position), Some(b'\r' | b'\n')) {
            break;
        }
        match parse_line_end(&buf[position..], HttpError::BareCr)? {
            Parsed::Partial => return Ok(Parsed::Partial),
            Parsed::Complete { consumed, .. } => position += consumed,
        }
    }
    Ok(Parsed::Complete { value: (), consumed: position })
}

/// Where the method and the target are in the buffer (start, end), and the version.
struct RequestLine {
    method: (usize, usize),
    target: (usize, usize),
    version: Version,
}

/// ```text
/// request-line   = method SP request-target SP HTTP-version CRLF   ; RFC 9112 §3
/// method         = token                                           ; RFC 9112 §3.1
/// ```
///
/// The request-line at `buf[start..]`; `consumed` is the offset just past its CRLF.
///
/// RFC 9112 §3 lets a recipient split on any run of whitespace instead of a single SP; we
/// do not ("lenient parsing can result in request smuggling security vulnerabilities").
fn parse_request_line(buf: &[u8], start: usize, max_target_bytes: usize) -> Result<Parsed<RequestLine>, HttpError> {
    let method_end = tchar_end(buf, start);
    match buf.get(method_end) {
        None => return Ok(Parsed::Partial),
        Some(b' ') if method_end > start => {}
        // A line that ends after the method, or an empty line we did not skip.
        Some(b'\r' | b'\n') => return Err(HttpError::BadRequestLine),
        Some(_) => return Err(HttpError::BadMethod),
    }

    let target_start = method_end + 1;
    let Parsed::Complete { value: target_end, .. } = parse_request_target(buf, target_start, max_target_bytes)? else {
        return Ok(Parsed::Partial);
    };

    let version_start = target_end + 1;
    let Parsed::Complete { value: version, consumed: version_len } = parse_http_version(&buf[version_start..])? else {
        return Ok(Parsed::Partial);
    };

    let line_end = version_start + version_len;
    // Anything but CRLF after the eight version bytes ("HTTP/1.10", "HTTP/1.1 ") makes the
    // version something other than `HTTP/` DIGIT `.` DIGIT.
    let Parsed::Complete { consumed: crlf_len, .. } = parse_line_end(&buf[line_end..], HttpError::MalformedVersion)?
    else {
        return Ok(Parsed::Partial);
    };
    let line = RequestLine { method: (start, method_end), target: (target_start, target_end), version };
    Ok(Parsed::Complete { value: line, consumed: line_end + crlf_len })
}

/// The request-target that starts at `buf[start..]`, up to (not including) the SP after it;
/// the value is the offset of that SP.
///
/// RFC 9112 §3.2: "No whitespace is allowed in the request-target." We allow only visible
/// ASCII (VCHAR); which form the target takes is checked later by [`check_target_form`].
fn parse_request_target(buf: &[u8], start: usize, max_target_bytes: usize) -> Result<Parsed<usize>, HttpError> {
    // Look one byte past the limit: if that byte still belongs to the target, the target is
    // too long, whether or not the rest of it has arrived.
    let window = &buf[..buf.len().min(start.saturating_add(max_target_bytes).saturating_add(1))];
    let end = vchar_end(window, start);
    let Some(&stop) = window.get(end) else {
        if window.len() - start > max_target_bytes {
            // RFC 9112 §3: "A server that receives a request-target longer than any URI it
            // wishes to parse MUST respond with a 414 (URI Too Long) status code".
            return Err(HttpError::TargetTooLong);
        }
        return Ok(Parsed::Partial);
    };
    match stop {
        b' ' if end > start => Ok(Parsed::Complete { value: end, consumed: end - start }),
        // Two spaces in a row, or a line that ends after the target (an HTTP/0.9 request).
        b' ' | b'\r' | b'\n' => Err(HttpError::BadRequestLine),
        _ => Err(HttpError::BadRequestTarget),
    }
}

/// ```text
/// HTTP-version  = HTTP-name "/" DIGIT "." DIGIT      ; RFC 9112 §2.3
/// HTTP-name     = %s"HTTP"                           ; case-sensitive
/// ```
///
/// Reads exactly these eight bytes; the caller checks what follows. Each byte is checked as
/// soon as it is there, so `HTTX` fails without waiting for the rest. A well-formed version
/// other than 1.0 or 1.1 is [`HttpError::UnsupportedVersion`] (505); a malformed one is
/// [`HttpError::MalformedVersion`] (400).
pub(super) fn parse_http_version(buf: &[u8]) -> Result<Parsed<Version>, HttpError> {
    const SHAPE: &[u8; 8] = b"HTTP/#.#"; // '#' stands for any DIGIT

    // Nearly every head says one of the two: one 8-byte comparison each, before the
    // byte-by-byte walk that tells a partial version from a malformed one.
    match buf.get(..SHAPE.len()) {
        Some(b"HTTP/1.1") => return Ok(Parsed::Complete { value: Version::Http11, consumed: SHAPE.len() }),
        Some(b"HTTP/1.0") => return Ok(Parsed::Complete { value: Version::Http10, consumed: SHAPE.len() }),
        _ => {}
    }
    for (&byte, &expected) in buf.iter().zip(SHAPE) {
        let fits = if expected == b'#' { byte.is_ascii_digit() } else { byte == expected };
        if !fits {
            return Err(HttpError::MalformedVersion);
        }
    }
    let version = match buf.get(..SHAPE.len()) {
        None => return Ok(Parsed::Partial),
        Some(b"HTTP/1.1") => Version::Http11,
        Some(b"HTTP/1.0") => Version::Http10,
        Some(_) => return Err(HttpError::UnsupportedVersion),
    };
    Ok(Parsed::Complete { value: version, consumed: SHAPE.len() })
}

/// Checks that the target's form is one the method may use (RFC 9112 §3.2) and that it is
/// well formed.
fn check_target_form(method: &[u8], target: &[u8]) -> Result<(), HttpError> {
    // The request-target rules exclude a fragment (origin-form = absolute-path [ "?" query ];
    // RFC 9110 §4.2.5: elements that allow one say so in their ABNF). A '#' here means the
    // client did not encode its target.
    if target.contains(&b'#') {
        return Err(HttpError::BadRequestTarget);
    }
    let valid = match target_form(method, target) {
        // origin-form = absolute-path [ "?" query ]: starting with '/' is the whole check
        // beyond the visible-ASCII rule; percent-decoding is the router's business.
        TargetForm::Origin => true,
        // RFC 9112 §3.2.4: "only used for a server-wide OPTIONS request".
        TargetForm::Asterisk => method == b"OPTIONS",
        // RFC 9112 §3.2.3: authority-form = uri-host ":" port, "only used for CONNECT".
        TargetForm::Authority => {
            matches!(split_host_port(target), Some((host, Some(port))) if !host.is_empty() && !port.is_empty())
        }
        // RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests".
        TargetForm::Absolute => match split_absolute_form(ascii_str(target)) {
            // RFC 9110 §4.2.1: an "http" URI with an empty host is invalid, and a recipient
            // "MUST reject it"; §4.2.4: userinfo is an error (it fails the reg-name check).
            Some((authority, _)) => {
                matches!(split_host_port(authority.as_bytes()), Some((host, _)) if !host.is_empty())
            }
            None => false,
        },
    };
    if valid {
        Ok(())
    } else {
        Err(HttpError::BadRequestTarget)
    }
}

/// Which form a target is in, decided by the method and the first byte. CONNECT always uses
/// authority-form, so its target is taken as one (and rejected if it is not).
fn target_form(method: &[u8], target: &[u8]) -> TargetForm {
    if method == b"CONNECT" {
        TargetForm::Authority
    } else if target == b"*" {
        TargetForm::Asterisk
    } else if target.first() == Some(&b'/') {
        TargetForm::Origin
    } else {
        TargetForm::Absolute
    }
}

/// Splits `http://authority/path?query` (or `https`, scheme case-insensitive per RFC 3986
/// §3.1) into the authority and the rest (`/path?query`, possibly empty). `None` for any
/// other shape: this server only serves http and https URIs.
fn split_absolute_form(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(rest.split_at(authority_end))
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
/// request message that lacks a Host header field and to any request message that contains
/// more than one Host header field line or a Host header field with an invalid field value."
fn check_host(request: &Request<'_>) -> Result<(), HttpError> {
    let mut hosts = request.headers_named("host");
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Err(HttpError::MultipleHost),
        (None, None) if request.version == Version::Http11 => Err(HttpError::MissingHost),
        (Some(value), None) if !is_valid_host_value(value) => Err(HttpError::BadHost),
        _ => Ok(()),
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2), or empty: RFC 9112 §3.2 has a client send
/// an empty Host when the target URI has no authority.
fn is_valid_host_value(value: &[u8]) -> bool {
    value.is_empty() || matches!(split_host_port(value), Some((host, _)) if !host.is_empty())
}

/// Splits and checks `uri-host [ ":" port ]` (RFC 3986 §3.2.2, §3.2.3). Deliberately simple:
///
/// - `uri-host = IP-literal / IPv4address / reg-name`. An IP-literal must be an IPv6 address
///   in brackets (no zone id, no IPvFuture). A reg-name is `*( unreserved / pct-encoded /
///   sub-delims )`; an IPv4address is a special case of it, so it needs no check of its own.
///   Whether the name resolves, or is one of ours, is not our business here.
/// - `port = *DIGIT` (RFC 3986 §3.2.3), at most 5 digits and no larger than 65535. It may be
///   empty: RFC 9110 §4.2.1 "If the port subcomponent is empty or not given, TCP port 80 ...
///   is the default".
///
/// `userinfo@` fails because '@' is not a reg-name character.
fn split_host_port(authority: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let host_end = if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&b| b == b']')?;
        if !is_ipv6_address(&authority[1..close]) {
            return None;
        }
        close + 1
    } else {
        // The reg-name runs to the first byte that cannot be in it: the end, the ':' before
        // the port, or a byte that makes the whole value invalid.
        reg_name_end(authority)?
    };
    let (host, after_host) = authority.split_at(host_end);
    match after_host {
        [] => Some((host, None)),
        [b':', port @ ..] if is_port(port) => Some((host, Some(port))),
        _ => None,
    }
}

/// The IPv6address rule of RFC 3986 §3.2.2, through the standard library's parser (an
/// address type only: no sockets are involved).
fn is_ipv6_address(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok_and(|text| text.parse::<core::net::Ipv6Addr>().is_ok())
}

/// The length of the `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986
/// §3.2.2) at the start of `authority`, in one pass; `None` if a `%` is not followed by two
/// HEXDIGs. The byte classes are in [`super::scan`].
fn reg_name_end(authority: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < authority.len() {
        if is_reg_name_byte(authority[i]) {
            i += 1;
        } else if authority[i] == b'%' {
            // pct-encoded = "%" HEXDIG HEXDIG
            let hex = authority.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            break;
        }
    }
    Some(i)
}

fn is_port(port: &[u8]) -> bool {
    port.len() <= 5
        && port
            .iter()
            .try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
            .is_some_and(|n| n <= u32::from(u16::MAX))
}

/// How a message body is delimited by its Content-Length and Transfer-Encoding fields (RFC
/// 9112 §6.1-§6.3, rules 3 to 7), for requests and responses alike. `BodyFraming::None`
/// means neither field is present: for a request no body (rule 7), for a response a body
/// that runs until the connection closes (rule 8).
pub(super) fn framing_from_fields(version: Version, headers: &[Header<'_>]) -> Result<BodyFraming, HttpError> {
    let has_transfer_encoding = fields_named(headers, "transfer-encoding").next().is_some();
    let has_content_length = fields_named(headers, "content-length").next().is_some();
    if has_transfer_encoding {
        if version == Version::Http10 {
            // RFC 9112 §6.1: a recipient of an HTTP/1.0 message with Transfer-Encoding "MUST
            // treat the message as if the framing is faulty, even if a Content-Length is
            // present, and close the connection after processing the message."
            return Err(HttpError::TransferEncodingOnHttp10);
        }
        if has_content_length {
            // RFC 9112 §6.1: "A server MAY reject a request that contains both
            // Content-Length and Transfer-Encoding ... Regardless, the server MUST close the
            // connection". We reject: two framings are how requests get smuggled (§11.2).
            return Err(HttpError::ContentLengthWithTransferEncoding);
        }
        check_transfer_codings(headers)?;
        return Ok(BodyFraming::Chunked);
    }
    Ok(match content_length(headers)? {
        Some(length) => BodyFraming::Length(length),
        None => BodyFraming::None,
    })
}

/// ```text
/// Transfer-Encoding = #transfer-coding                          ; RFC 9112 §6.1
/// transfer-coding   = token *( OWS ";" OWS transfer-parameter ) ; RFC 9110 §10.1.4
/// ```
///
/// We implement one transfer coding, `chunked`, so the only value we accept is a single
/// `chunked` (case-insensitive, RFC 9112 §7), over one or more field lines.
///
/// Any other coding (`gzip`, `chunked, gzip`, `gzip, chunked`) is 501. For a request whose
/// final coding is not chunked, RFC 9112 §6.3 rule 4 asks for 400 instead; both codes close
/// the connection, and 501 names the actual cause, a coding we do not implement (§6.1).
fn check_transfer_codings(headers: &[Header<'_>]) -> Result<(), HttpError> {
    let mut chunked_seen = false;
    for coding in fields_named(headers, "transfer-encoding").flat_map(list_elements) {
        let (name, has_parameters) = match coding.iter().position(|&b| b == b';') {
            Some(semicolon) => (trim_ows(&coding[..semicolon]), true),
            None => (coding, false),
        };
        if !is_token(name) {
            return Err(HttpError::BadTransferEncoding);
        }
        if !name.eq_ignore_ascii_case(b"chunked") {
            // RFC 9112 §6.1: "A server that receives a request message with a transfer
            // coding it does not understand SHOULD respond with 501 (Not Implemented)."
            return Err(HttpError::UnsupportedTransferCoding);
        }
        if has_parameters {
            // RFC 9112 §7.1: "The chunked coding does not define any parameters. Their
            // presence SHOULD be treated as an error."
            return Err(HttpError::BadTransferEncoding);
        }
        if chunked_seen {
            // RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer coding more than
            // once to a message body".
            return Err(HttpError::ChunkedAppliedTwice);
        }
        chunked_seen = true;
    }
    if chunked_seen {
        Ok(())
    } else {
        // `Transfer-Encoding:` with no coding at all: the framing is unknowable.
        Err(HttpError::BadTransferEncoding)
    }
}

/// ```text
/// Content-Length = 1*DIGIT                             ; RFC 9110 §8.6
/// ```
///
/// `None` when there is no Content-Length field. RFC 9112 §6.3 rule 5 makes an invalid value
/// "an unrecoverable error, unless the field value can be successfully parsed as a
/// comma-separated list ..., all values in the list are valid, and all values in the list are
/// the same". We take that exception, also across several field lines (which a recipient may
/// combine into one list, RFC 9110 §5.3): `5, 5` and two lines of `5` are 5. We do not take
/// the empty-element leniency of lists: `5,` and an empty value are errors, since a length
/// is not really a list and any oddity in framing is a smuggling risk.
fn content_length(headers: &[Header<'_>]) -> Result<Option<u64>, HttpError> {
    let mut length = None;
    for value in fields_named(headers, "content-length") {
        for element in value.split(|&b| b == b',') {
            let this = parse_decimal(trim_ows(element)).ok_or(HttpError::BadContentLength)?;
            match length {
                Some(earlier) if earlier != this => return Err(HttpError::ConflictingContentLength),
                _ => length = Some(this),
            }
        }
    }
    Ok(length)
}

/// `1*DIGIT` as a u64. RFC 9110 §8.6: "a recipient MUST anticipate potentially large decimal
/// numerals and prevent parsing errors due to integer conversion overflows".
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

impl<'b> Request<'b> {
    /// Done with the request: its field vector, emptied, serves the next head parsed on this
    /// thread, so that [`parse_request`] allocates nothing (`grammar::keep_as_spare`). A
    /// request simply dropped costs the next head one allocation, nothing else.
    pub fn recycle(mut self) {
        keep_as_spare(std::mem::take(&mut self.headers));
    }

    /// The form of the request-target (RFC 9112 §3.2).
    pub fn target_form(&self) -> TargetForm {
        target_form(self.method.as_bytes(), self.target.as_bytes())
    }

    /// The path: the target up to `?` in origin-form; for absolute-form the path after the
    /// authority (`/` when it is empty, as RFC 9112 §3.2.1 has a client send); `*` for
    /// asterisk-form; empty for authority-form, which has no path (RFC 9112 §3.3).
    /// Still percent-encoded.
    pub fn path(&self) -> &'b str {
        match self.target_form() {
            TargetForm::Origin => split_query(self.target).0,
            TargetForm::Absolute => {
                let (_, path_and_query) = split_absolute_form(self.target).unwrap_or(("", ""));
                match split_query(path_and_query).0 {
                    "" => "/",
                    path => path,
                }
            }
            TargetForm::Asterisk => "*",
            TargetForm::Authority => "",
        }
    }

    /// The query: what follows the first `?` of the target, if there is one. Still
    /// percent-encoded.
    pub fn query(&self) -> Option<&'b str> {
        match self.target_form() {
            TargetForm::Origin => split_query(self.target).1,
            TargetForm::Absolute => split_query(split_absolute_form(self.target)?.1).1,
            TargetForm::Asterisk | TargetForm::Authority => None,
        }
    }

    /// The authority (host and port) the request is for. RFC 9112 §3.2.2: with an
    /// absolute-form target, a server "MUST ignore the received Host header field (if any)
    /// and instead use the host information of the request-target". For authority-form it is
    /// the target itself (§3.3); otherwise the Host field. `None` when there is no Host field
    /// or it is empty (§3.3: the authority is then empty).
    pub fn authority(&self) -> Option<&'b str> {
        match self.target_form() {
            TargetForm::Absolute => split_absolute_form(self.target).map(|(authority, _)| authority),
            TargetForm::Authority => Some(self.target),
            TargetForm::Origin | TargetForm::Asterisk => {
                let host = self.header("host")?;
                // A Host that passed the parser's check is ASCII; a hand-built one may not be.
                std::str::from_utf8(host).ok().filter(|host| !host.is_empty())
            }
        }
    }

    /// The value of the first field line named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        fields_named(&self.headers, name).next()
    }

    /// The values of every field line named `name` (case-insensitive), in order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        fields_named(&self.headers, name)
    }

    /// Whether any field line named `name` has `token` in its comma-separated list, both
    /// compared case-insensitively: `has_token("connection", "upgrade")` is true for
    /// `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        list_has_token(&self.headers, name, token)
    }

    /// How the request body is delimited (RFC 9112 §6.1-§6.3). An error means the framing
    /// cannot be trusted: answer with the error's status and close the connection.
    pub fn body_framing(&self) -> Result<BodyFraming, HttpError> {
        // RFC 9112 §6.3 rule 7: "If this is a request message and none of the above are
        // true, then the message body length is zero".
        framing_from_fields(self.version, &self.headers)
    }

    /// Whether the connection stays open after the response (RFC 9112 §9.3):
    /// "If the "close" connection option is present, the connection will not persist";
    /// else HTTP/1.1 persists; else HTTP/1.0 persists only with the "keep-alive" option.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self.has_token("connection", "keep-alive"),
        }
    }

    /// The client's expectation (RFC 9110 §10.1.1). `Expect = #expectation`, and "The
    /// Expect field value is case-insensitive". Any member other than `100-continue` is
    /// [`HttpError::UnsupportedExpectation`] (417).
    ///
    /// RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
    /// request MUST ignore that expectation." That is the caller's part: this reports what
    /// was asked, whatever the version.
    pub fn expectation(&self) -> Result<Expectation, HttpError> {
        let mut expectation = Expectation::None;
        for member in self.headers_named("expect").flat_map(list_elements) {
            if !member.eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::UnsupportedExpectation);
            }
            expectation = Expectation::Continue;
        }
        Ok(expectation)
    }
}

/// Splits `path?query` at the first `?`.
fn split_query(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::grammar::spare_field_room;
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Parsed<Request<'_>>, HttpError> {
        parse_request(bytes, &Limits::default())
    }

    /// Parses a buffer that holds exactly one complete, valid head, after checking that every
    /// shorter prefix of it (the head arriving split at that byte) is `Partial`.
    fn parse_whole(bytes: &[u8]) -> Request<'_> {
        parse_whole_with(bytes, &Limits::default())
    }

    fn parse_whole_with<'b>(bytes: &'b [u8], limits: &Limits) -> Request<'b> {
        for split in 0..bytes.len() {
            assert_eq!(
                parse_request(&bytes[..split], limits),
                Ok(Parsed::Partial),
                "prefix of {split} bytes of {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        match parse_request(bytes, limits) {
            Ok(Parsed::Complete { value, consumed }) => {
                assert_eq!(consumed, bytes.len(), "the head is the whole input");
                value
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    /// The error a request gets, checking that no prefix of it is refused with another one
    /// (every prefix is Partial or the same error).
    fn error_of(bytes: &[u8]) -> HttpError {
        error_of_with(bytes, &Limits::default())
    }

    fn error_of_with(bytes: &[u8], limits: &Limits) -> HttpError {
        let error = match parse_request(bytes, limits) {
            Err(error) => error,
            other => panic!("{:?} should fail: {other:?}", String::from_utf8_lossy(bytes)),
        };
        for split in 0..bytes.len() {
            match parse_request(&bytes[..split], limits) {
                Ok(Parsed::Partial) => {}
                Err(e) if e == error => {}
                other => panic!("prefix {split} of {:?}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
        error
    }

    fn header<'b>(name: &'b str, value: &'b [u8]) -> Header<'b> {
        Header { name: name.as_bytes(), value }
    }

    // ----- RFC 9112 §3: the request-line -----

    #[test]
    fn rfc9112_3_2_1_origin_form_example() {
        // RFC 9112 §3.2.1's example.
        let request = parse_whole(b"GET /where?q=now HTTP/1.1\r\nHost: www.example.org\r\n\r\n");
        assert_eq!(
            request,
            Request {
                method: "GET",
                target: "/where?q=now",
                version: Version::Http11,
                headers: vec![header("Host", b"www.example.org")],
            }
        );
        assert_eq!(request.target_form(), TargetForm::Origin);
        assert_eq!((request.path(), request.query()), ("/where", Some("q=now")));
        assert_eq!(request.authority(), Some("www.example.org"));
    }

    #[test]
    fn rfc9112_3_2_1_query_splits_at_the_first_question_mark() {
        let request = parse_whole(b"GET /a/b?x=1?y=2&z HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((request.path(), request.query()), ("/a/b", Some("x=1?y=2&z")));
        let request = parse_whole(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((request.path(), request.query()), ("/a", Some("")));
        let request = parse_whole(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((request.path(), request.query()), ("/", None));
    }

    #[test]
    fn rfc9112_3_2_2_absolute_form_example() {
        // RFC 9112 §3.2.2's example, with the Host a client must still send.
        let request = parse_whole(
            b"GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
        );
        assert_eq!(request.target_form(), TargetForm::Absolute);
        assert_eq!((request.path(), request.query()), ("/pub/WWW/TheProject.html", None));
        assert_eq!(request.authority(), Some("www.example.org"));
    }

    #[test]
    fn rfc9112_3_2_2_absolute_form_authority_overrides_host() {
        // "the origin server MUST ignore the received Host header field (if any) and instead
        // use the host information of the request-target".
        let request = parse_whole(b"GET HTTPS://a.example:8443?x=1 HTTP/1.1\r\nHost: b.example\r\n\r\n");
        assert_eq!(request.authority(), Some("a.example:8443"));
        assert_eq!((request.path(), request.query()), ("/", Some("x=1")));
        let request = parse_whole(b"GET http://[::1]:80 HTTP/1.1\r\nHost: b.example\r\n\r\n");
        assert_eq!((request.authority(), request.path(), request.query()), (Some("[::1]:80"), "/", None));
    }

    #[test]
    fn rfc9110_4_2_3_equivalent_absolute_forms_example() {
        // RFC 9110 §4.2.3's three equivalent URIs, empty port included. Normalizing them is
        // left to the router; the parser hands them over as sent.
        for (target, authority, path) in [
            ("http://example.com:80/~smith/home.html", "example.com:80", "/~smith/home.html"),
            ("http://EXAMPLE.com/%7Esmith/home.html", "EXAMPLE.com", "/%7Esmith/home.html"),
            ("http://EXAMPLE.com:/%7esmith/home.html", "EXAMPLE.com:", "/%7esmith/home.html"),
        ] {
            let bytes = format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n");
            let request = parse_whole(bytes.as_bytes());
            assert_eq!((request.authority(), request.path()), (Some(authority), path));
        }
    }

    #[test]
    fn rfc9110_4_2_absolute_form_must_be_http_with_a_host_and_no_userinfo() {
        for target in ["ftp://a.example/", "http:/a", "http://", "http:///x", "http://user@a.example/", "mailto:x", "a"]
        {
            let request = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::BadRequestTarget, "{target}");
        }
    }

    #[test]
    fn rfc9112_3_2_3_authority_form_only_with_connect() {
        // RFC 9112 §3.2.3's example.
        let request = parse_whole(b"CONNECT www.example.com:80 HTTP/1.1\r\nHost: www.example.com\r\n\r\n");
        assert_eq!(request.target_form(), TargetForm::Authority);
        assert_eq!((request.authority(), request.path(), request.query()), (Some("www.example.com:80"), "", None));

        for bad in [
            "GET www.example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT www.example.com HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT :80 HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(error_of(bad.as_bytes()), HttpError::BadRequestTarget, "{bad:?}");
        }
    }

    #[test]
    fn rfc9112_3_2_4_asterisk_form_only_with_options() {
        // RFC 9112 §3.3's example 2.
        let request = parse_whole(b"OPTIONS * HTTP/1.1\r\nHost: www.example.org:8080\r\n\r\n");
        assert_eq!(request.target_form(), TargetForm::Asterisk);
        assert_eq!((request.path(), request.query()), ("*", None));
        assert_eq!(request.authority(), Some("www.example.org:8080"));
        assert_eq!(error_of(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"), HttpError::BadRequestTarget);
    }

    #[test]
    fn rfc9112_2_2_one_leading_empty_line_is_ignored() {
        let bytes = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let request = parse_whole(bytes);
        assert_eq!(request.target, "/");
        // Two are more than we skip.
        assert_eq!(error_of(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), HttpError::BadRequestLine);
        assert_eq!(error_of(b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), HttpError::BareLf);
    }

    #[test]
    fn rfc9112_3_request_line_needs_exactly_single_spaces() {
        for bad in ["GET  / HTTP/1.1\r\nHost: x\r\n\r\n", "GET /\r\nHost: x\r\n\r\n", "GET\r\nHost: x\r\n\r\n"] {
            assert_eq!(error_of(bad.as_bytes()), HttpError::BadRequestLine, "{bad:?}");
        }
        // After the second space comes the version: a missing one, a second space or a
        // trailing space make it malformed.
        assert_eq!(error_of(b"GET / \r\nHost: x\r\n\r\n"), HttpError::MalformedVersion);
        assert_eq!(error_of(b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n"), HttpError::MalformedVersion);
        assert_eq!(error_of(b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n"), HttpError::MalformedVersion);
        // A tab is not a space (RFC 9112 §3 allows splitting on it; strict parsers do not).
        assert_eq!(error_of(b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n"), HttpError::BadMethod);
    }

    #[test]
    fn rfc9112_3_1_method_is_a_case_sensitive_token() {
        let request = parse_whole(b"get / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(request.method, "get");
        let request = parse_whole(b"M-SEARCH!#$%&'*+.^_`|~09 / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(request.method, "M-SEARCH!#$%&'*+.^_`|~09");
        for bad in ["G(T", "GE\x7fT", "G\u{e9}T", "G/T", " GET", "G\"T"] {
            let request = format!("{bad} / HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::BadMethod, "{bad:?}");
        }
    }

    #[test]
    fn rfc9112_3_2_request_target_is_visible_ascii_without_fragment() {
        for bad in ["/a\tb", "/a\x00", "/caf\u{e9}", "/a\x7f", "/a#frag"] {
            let request = format!("GET {bad} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::BadRequestTarget, "{bad:?}");
        }
        // A space inside the target splits it; what follows is not a version.
        assert_eq!(error_of(b"GET /heal thz HTTP/1.1\r\nHost: x\r\n\r\n").status(), 400);
        // Characters RFC 3986 would have encoded are still visible ASCII: accepted as sent.
        assert_eq!(parse_whole(b"GET /a|b{c}\"d HTTP/1.1\r\nHost: x\r\n\r\n").path(), "/a|b{c}\"d");
    }

    #[test]
    fn rfc9112_3_target_longer_than_the_limit_is_414() {
        let limits = Limits { max_target_bytes: 10, ..Limits::default() };
        let at_limit = b"GET /123456789 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse_whole_with(at_limit, &limits).target.len(), 10);
        let over = b"GET /1234567890 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(error_of_with(over, &limits), HttpError::TargetTooLong);
        // Refused while the target is still arriving.
        assert_eq!(parse_request(b"GET /1234567890", &limits), Err(HttpError::TargetTooLong));
        assert_eq!(parse_request(b"GET /123456789", &limits), Ok(Parsed::Partial));
        // The default.
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(parse(long.as_bytes()), Err(HttpError::TargetTooLong));
    }

    // ----- RFC 9112 §2.3: the version -----

    #[test]
    fn rfc9112_2_3_http_1_0_and_1_1_are_accepted() {
        assert_eq!(parse_whole(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").version, Version::Http11);
        assert_eq!(parse_whole(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    }

    #[test]
    fn rfc9110_15_6_6_other_well_formed_versions_are_505() {
        for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
            let request = format!("GET / {version}\r\nHost: x\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::UnsupportedVersion, "{version}");
        }
        // The HTTP/2 connection preface is answered in HTTP/1.1 terms.
        assert_eq!(parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Err(HttpError::UnsupportedVersion));
    }

    #[test]
    fn rfc9112_2_3_malformed_versions_are_400() {
        for version in ["HTTP/1.x", "http/1.1", "HTTP/1.10", "HTTP/11", "HTTP/1", "HTTPS/1.1", "HTTP/1.1x"] {
            let request = format!("GET / {version}\r\nHost: x\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::MalformedVersion, "{version}");
        }
        // Caught on the first wrong byte.
        assert_eq!(parse(b"GET / HTTX"), Err(HttpError::MalformedVersion));
        assert_eq!(parse(b"GET / HTTP/2"), Ok(Parsed::Partial));
    }

    // ----- RFC 9112 §2.2: line endings -----

    #[test]
    fn rfc9112_2_2_bare_lf_is_rejected() {
        for bad in [
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\n\r\n",
        ] {
            assert_eq!(error_of(bad.as_bytes()), HttpError::BareLf, "{bad:?}");
        }
    }

    #[test]
    fn rfc9112_2_2_bare_cr_is_rejected() {
        for bad in [
            "GET / HTTP/1.1\rHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
            "\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(error_of(bad.as_bytes()), HttpError::BareCr, "{bad:?}");
        }
    }

    // ----- RFC 9112 §5, RFC 9110 §5: field lines -----

    #[test]
    fn rfc9112_5_1_no_whitespace_between_field_name_and_colon() {
        for bad in ["Host : x", "Host\t: x", "Host  \t : x"] {
            let request = format!("GET / HTTP/1.1\r\n{bad}\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::WhitespaceBeforeColon, "{bad:?}");
        }
    }

    #[test]
    fn rfc9110_5_1_field_name_is_a_token() {
        for bad in ["X(A): 1", ": no-name", "No-Colon", "Ho st: x", "X\u{e9}: 1", "X\x00: 1", "X/Y: 1"] {
            let request = format!("GET / HTTP/1.1\r\nHost: x\r\n{bad}\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::BadFieldName, "{bad:?}");
        }
    }

    #[test]
    fn rfc9112_5_2_obs_fold_is_rejected() {
        let folded = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n";
        assert_eq!(error_of(folded), HttpError::ObsFold);
        let tab_folded = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tfolded\r\n\r\n";
        assert_eq!(error_of(tab_folded), HttpError::ObsFold);
    }

    #[test]
    fn rfc9112_2_2_whitespace_between_start_line_and_first_field_is_rejected() {
        assert_eq!(error_of(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n"), HttpError::ObsFold);
    }

    #[test]
    fn rfc9112_5_1_ows_around_the_value_is_trimmed() {
        let request = parse_whole(b"GET / HTTP/1.1\r\nHost:x\r\nX-A: \t v a\tl \t \r\nX-B:\r\nX-C:   \r\n\r\n");
        assert_eq!(
            request.headers,
            vec![header("Host", b"x"), header("X-A", b"v a\tl"), header("X-B", b""), header("X-C", b"")]
        );
    }

    #[test]
    fn rfc9110_5_5_values_may_hold_vchar_sp_htab_and_obs_text() {
        let request = parse_whole(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9 \xff\t\"~!\r\n\r\n");
        assert_eq!(request.header("x-a"), Some(&b"caf\xc3\xa9 \xff\t\"~!"[..]));
    }

    #[test]
    fn rfc9110_5_5_nul_controls_and_del_in_values_are_rejected() {
        for bad in ["a\x00b", "a\x01b", "a\x0bb", "a\x0cb", "a\x1bb", "a\x7fb"] {
            let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: {bad}\r\n\r\n");
            assert_eq!(error_of(request.as_bytes()), HttpError::BadFieldValue, "{bad:?}");
        }
    }

    // ----- limits -----

    #[test]
    fn limits_max_headers_is_exact() {
        let limits = Limits { max_headers: 3, ..Limits::default() };
        let three = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse_whole_with(three, &limits).headers.len(), 3);
        let four = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(error_of_with(four, &limits), HttpError::TooManyHeaders);
        // Refused as soon as the first byte of the extra line is there.
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC", &limits),
            Err(HttpError::TooManyHeaders)
        );

        // The default, at the boundary.
        let fields = |n: usize| (1..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
        let at_limit = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", fields(MAX_HEADERS));
        assert!(matches!(parse(at_limit.as_bytes()), Ok(Parsed::Complete { .. })));
        let over = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", fields(MAX_HEADERS + 1));
        assert_eq!(parse(over.as_bytes()), Err(HttpError::TooManyHeaders));
    }

    #[test]
    fn limits_head_of_exactly_max_bytes_is_accepted_one_more_is_431() {
        let head_of = |len: usize| {
            let fixed = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n".len();
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "p".repeat(len - fixed))
        };
        let limits = Limits { max_head_bytes: 100, ..Limits::default() };
        let at_limit = head_of(100);
        assert_eq!(parse_whole_with(at_limit.as_bytes(), &limits).headers.len(), 2);
        assert_eq!(parse_request(head_of(101).as_bytes(), &limits), Err(HttpError::HeadTooLarge));

        let at_default = head_of(MAX_HEAD_BYTES);
        assert!(matches!(parse(at_default.as_bytes()), Ok(Parsed::Complete { consumed: MAX_HEAD_BYTES, .. })));
        assert_eq!(parse(head_of(MAX_HEAD_BYTES + 1).as_bytes()), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn limits_a_partial_head_past_the_limit_errors_at_once() {
        // 20 KiB of token bytes: a "method" that never ends.
        assert_eq!(parse(&[b'A'; 20 * 1024]), Err(HttpError::HeadTooLarge));
        // 20 KiB of a well-formed head whose last field never ends.
        let mut partial = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        partial.resize(20 * 1024, b'a');
        assert_eq!(parse(&partial), Err(HttpError::HeadTooLarge));
        // 20 KiB of binary garbage is refused on its first byte.
        assert_eq!(parse(&[0u8; 20 * 1024]), Err(HttpError::BadMethod));
        // Just under the limit it is still waiting.
        partial.truncate(MAX_HEAD_BYTES);
        assert_eq!(parse(&partial), Ok(Parsed::Partial));
    }

    // ----- RFC 9112 §3.2: Host -----

    #[test]
    fn rfc9112_3_2_http11_requires_a_host() {
        assert_eq!(error_of(b"GET / HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
        assert_eq!(error_of(b"GET / HTTP/1.1\r\nX-Host: x\r\n\r\n"), HttpError::MissingHost);
        // HTTP/1.0 predates Host.
        let request = parse_whole(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(request.authority(), None);
    }

    #[test]
    fn rfc9112_3_2_more_than_one_host_is_rejected() {
        assert_eq!(error_of(b"GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n"), HttpError::MultipleHost);
        assert_eq!(error_of(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), HttpError::MultipleHost);
    }

    #[test]
    fn rfc9112_3_2_host_must_be_uri_host_and_port() {
        for good in [
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::7]:443",
            "ex%41mple",
            "a-b_c~d.e!$&'()*+,;=",
            "example.com:",
        ] {
            let bytes = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            assert_eq!(parse_whole(bytes.as_bytes()).authority(), Some(good), "{good}");
        }
        for bad in [
            "exa mple",
            "user@example.com",
            "example.com:http",
            "example.com:65536",
            "example.com:123456",
            "[::1",
            "[not-ipv6]",
            "[::1]x",
            "a:1:2",
            "ex%4",
            "ex%zz",
            ":80",
            "/path",
        ] {
            let bytes = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(error_of(bytes.as_bytes()), HttpError::BadHost, "{bad}");
        }
        // A bad Host is refused on HTTP/1.0 too.
        assert_eq!(error_of(b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n"), HttpError::BadHost);
    }

    #[test]
    fn rfc9112_3_2_an_empty_host_is_valid_and_means_no_authority() {
        // "If the authority component is missing or undefined for the target URI, then a
        // client MUST send a Host header field with an empty field value."
        let request = parse_whole(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
        assert_eq!(request.authority(), None);
    }

    // ----- incremental parsing -----

    #[test]
    fn pipelined_bytes_after_the_head_are_not_consumed() {
        let first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut bytes = first.to_vec();
        bytes.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        let Ok(Parsed::Complete { value, consumed }) = parse(&bytes) else { panic!() };
        assert_eq!((value.path(), consumed), ("/a", first.len()));
        let Ok(Parsed::Complete { value, .. }) = parse(&bytes[consumed..]) else { panic!() };
        assert_eq!(value.path(), "/b");

        // A body is not consumed either, whatever it looks like.
        let post = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n\x00\r\n\r\nzz";
        let Ok(Parsed::Complete { consumed, .. }) = parse(post) else { panic!() };
        assert_eq!(&post[consumed..], b"\x00\r\n\r\nzz");
    }

    #[test]
    fn a_realistic_browser_request_parses_at_every_split() {
        let bytes = b"GET /sse/news?since=k3f9-17 HTTP/1.1\r\n\
            Host: localhost:8080\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
            Accept: text/event-stream\r\n\
            Accept-Language: en-US,en;q=0.5\r\n\
            Accept-Encoding: gzip, deflate, br, zstd\r\n\
            Connection: keep-alive\r\n\
            Cookie: a=1; b=\"two\"\r\n\
            Cache-Control: no-cache\r\n\r\n";
        let request = parse_whole(bytes);
        assert_eq!((request.path(), request.query()), ("/sse/news", Some("since=k3f9-17")));
        assert_eq!(request.headers.len(), 8);
        assert_eq!(request.header("accept"), Some(&b"text/event-stream"[..]));
    }

    #[test]
    fn rfc6455_1_3_websocket_opening_handshake_example() {
        let request = parse_whole(
            b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
              Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert!(request.has_token("upgrade", "WebSocket"));
        assert!(request.has_token("connection", "upgrade"));
        assert_eq!(request.header("sec-websocket-key"), Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
    }

    // ----- field lookups -----

    #[test]
    fn rfc9110_5_1_field_names_are_case_insensitive() {
        let request = parse_whole(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n");
        assert_eq!(request.header("X-A"), Some(&b"1"[..]));
        assert_eq!(request.header("x-b"), Some(&b"3"[..]));
        assert_eq!(request.header("x-c"), None);
        assert_eq!(request.headers_named("x-A").collect::<Vec<_>>(), [&b"1"[..], b"2"]);
    }

    #[test]
    fn rfc9110_5_6_1_token_lists_allow_ows_and_empty_elements() {
        // RFC 9110 §5.6.1.2's valid examples: "foo,bar", "foo ,bar,", "foo , ,bar,charlie".
        let request = parse_whole(
            b"GET / HTTP/1.1\r\nHost: x\r\nA: foo,bar\r\nB: foo ,bar,\r\nC: foo , ,bar,charlie\r\n\
              Connection: keep-alive , , Upgrade\r\nConnection: TE\r\n\r\n",
        );
        for name in ["a", "b", "c"] {
            assert!(request.has_token(name, "foo") && request.has_token(name, "BAR"), "{name}");
        }
        assert!(request.has_token("c", "charlie"));
        assert!(!request.has_token("a", "fo"));
        assert!(!request.has_token("a", ""));
        assert!(request.has_token("connection", "upgrade"));
        assert!(request.has_token("connection", "te"), "found on a later field line");
        assert!(!request.has_token("upgrade", "websocket"));
    }

    // ----- RFC 9112 §9.3: persistence -----

    #[test]
    fn rfc9112_9_3_persistence() {
        let keep_alive = |bytes: &[u8]| parse_whole(bytes).keep_alive();
        assert!(keep_alive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!keep_alive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert!(!keep_alive(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
        assert!(!keep_alive(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep_alive(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!keep_alive(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
    }

    // ----- RFC 9110 §10.1.1: Expect -----

    #[test]
    fn rfc9110_10_1_1_expect_100_continue() {
        // RFC 9110 §10.1.1's example.
        let request = parse_whole(
            b"PUT /somewhere/fun HTTP/1.1\r\nHost: origin.example.com\r\nContent-Type: video/h264\r\n\
              Content-Length: 1234567890987\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(request.expectation(), Ok(Expectation::Continue));
        assert_eq!(request.body_framing(), Ok(BodyFraming::Length(1_234_567_890_987)));

        let expectation = |bytes: &[u8]| parse_whole(bytes).expectation();
        assert_eq!(expectation(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(Expectation::None));
        assert_eq!(
            expectation(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n"),
            Ok(Expectation::Continue)
        );
        assert_eq!(expectation(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), Ok(Expectation::Continue));
    }

    #[test]
    fn rfc9110_10_1_1_other_expectations_are_417() {
        for value in ["teapot", "100-continue, teapot", "100-continue=1", "100-continue;a=b"] {
            let bytes = format!("POST / HTTP/1.1\r\nHost: x\r\nExpect: {value}\r\n\r\n");
            assert_eq!(parse_whole(bytes.as_bytes()).expectation(), Err(HttpError::UnsupportedExpectation), "{value}");
        }
    }

    // ----- RFC 9112 §6: body framing -----

    fn framing(fields: &str) -> Result<BodyFraming, HttpError> {
        let bytes = format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        parse_whole(bytes.as_bytes()).body_framing()
    }

    fn framing_10(fields: &str) -> Result<BodyFraming, HttpError> {
        let bytes = format!("POST / HTTP/1.0\r\n{fields}\r\n");
        parse_whole(bytes.as_bytes()).body_framing()
    }

    #[test]
    fn rfc9112_6_3_no_length_and_no_transfer_encoding_means_no_body() {
        assert_eq!(framing(""), Ok(BodyFraming::None));
    }

    #[test]
    fn rfc9110_8_6_content_length_is_a_decimal_length() {
        // RFC 9110 §8.6's example.
        assert_eq!(framing("Content-Length: 3495\r\n"), Ok(BodyFraming::Length(3495)));
        assert_eq!(framing("Content-Length: 0\r\n"), Ok(BodyFraming::Length(0)));
        assert_eq!(framing("content-length: 007\r\n"), Ok(BodyFraming::Length(7)));
        assert_eq!(framing("Content-Length: 18446744073709551615\r\n"), Ok(BodyFraming::Length(u64::MAX)));
        assert_eq!(framing_10("Content-Length: 5\r\n"), Ok(BodyFraming::Length(5)));
    }

    #[test]
    fn rfc9110_8_6_malformed_content_length_is_400() {
        for value in ["", "+2", "-1", "abc", "1 2", "0x10", "5,", ",5", "5,,5", "1.0", "18446744073709551616"] {
            assert_eq!(framing(&format!("Content-Length: {value}\r\n")), Err(HttpError::BadContentLength), "{value:?}");
        }
    }

    #[test]
    fn rfc9112_6_3_identical_repeated_content_lengths_count_once() {
        assert_eq!(framing("Content-Length: 5, 5\r\n"), Ok(BodyFraming::Length(5)));
        assert_eq!(framing("Content-Length: 5\r\nContent-Length: 5\r\n"), Ok(BodyFraming::Length(5)));
        assert_eq!(framing("Content-Length: 5,05\r\n"), Ok(BodyFraming::Length(5)));
    }

    #[test]
    fn rfc9112_6_3_conflicting_content_lengths_are_400() {
        assert_eq!(framing("Content-Length: 2, 3\r\n"), Err(HttpError::ConflictingContentLength));
        assert_eq!(framing("Content-Length: 2\r\nContent-Length: 3\r\n"), Err(HttpError::ConflictingContentLength));
    }

    #[test]
    fn rfc9112_7_chunked_is_recognised_case_insensitively() {
        assert_eq!(framing("Transfer-Encoding: chunked\r\n"), Ok(BodyFraming::Chunked));
        assert_eq!(framing("transfer-encoding: Chunked\r\n"), Ok(BodyFraming::Chunked));
        assert_eq!(framing("Transfer-Encoding: , chunked ,\r\n"), Ok(BodyFraming::Chunked));
    }

    #[test]
    fn rfc9112_6_1_content_length_with_transfer_encoding_is_400() {
        let both = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(framing(both), Err(HttpError::ContentLengthWithTransferEncoding));
        let both = "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n";
        assert_eq!(framing(both), Err(HttpError::ContentLengthWithTransferEncoding));
    }

    #[test]
    fn rfc9112_6_1_transfer_codings_other_than_chunked_are_501() {
        for value in ["gzip", "chunked, gzip", "gzip, chunked", "identity", "x-custom;a=1"] {
            let fields = format!("Transfer-Encoding: {value}\r\n");
            assert_eq!(framing(&fields), Err(HttpError::UnsupportedTransferCoding), "{value}");
        }
        let two_lines = "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(framing(two_lines), Err(HttpError::UnsupportedTransferCoding));
    }

    #[test]
    fn rfc9112_6_1_chunked_applied_twice_is_400() {
        assert_eq!(framing("Transfer-Encoding: chunked, chunked\r\n"), Err(HttpError::ChunkedAppliedTwice));
        let two_lines = "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n";
        assert_eq!(framing(two_lines), Err(HttpError::ChunkedAppliedTwice));
    }

    #[test]
    fn rfc9112_7_1_malformed_transfer_encoding_is_400() {
        for value in ["", ",", " , ", "chunked;a=1", "chunked ; q=1", "\"chunked\"", "chunk(ed)"] {
            let fields = format!("Transfer-Encoding: {value}\r\n");
            assert_eq!(framing(&fields), Err(HttpError::BadTransferEncoding), "{value:?}");
        }
    }

    #[test]
    fn rfc9112_6_1_transfer_encoding_on_http10_is_faulty_framing() {
        assert_eq!(framing_10("Transfer-Encoding: chunked\r\n"), Err(HttpError::TransferEncodingOnHttp10));
        // "even if a Content-Length is present"
        let both = "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n";
        assert_eq!(framing_10(both), Err(HttpError::TransferEncodingOnHttp10));
    }

    // ----- the field vector, lent from one head to the next -----

    fn complete(head: &[u8]) -> Request<'_> {
        match parse_request(head, &Limits::default()) {
            Ok(Parsed::Complete { value, .. }) => value,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_recycled_requests_field_vector_holds_the_next_heads_fields() {
        let first = complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let vector = first.headers.as_ptr();
        first.recycle();
        assert!(spare_field_room() > 0, "kept as the thread's spare");
        let second = complete(b"GET /b HTTP/1.1\r\nHost: b\r\nAccept: */*\r\n\r\n");
        assert_eq!(spare_field_room(), 0, "lent to the next head");
        assert_eq!(second.headers.as_ptr(), vector);
        assert_eq!(second.headers, [header("Host", b"b"), header("Accept", b"*/*")]);
    }

    #[test]
    fn a_head_that_is_partial_or_refused_gives_the_field_vector_back() {
        complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").recycle();
        let room = spare_field_room();
        assert!(room > 0);
        let limits = Limits::default();
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &limits), Ok(Parsed::Partial));
        assert_eq!(spare_field_room(), room, "given back by a partial head");
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", &limits), Err(HttpError::BadFieldName));
        assert_eq!(spare_field_room(), room, "given back by a head refused for a field line");
        let two_hosts = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &limits);
        assert_eq!(two_hosts, Err(HttpError::MultipleHost));
        assert_eq!(spare_field_room(), room, "given back by a head refused for its Host");
    }

    #[test]
    fn a_field_vector_that_grew_past_its_usual_room_is_not_kept() {
        let many: String = (0..40).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        let big = complete(head.as_bytes());
        assert!(big.headers.capacity() > 32);
        big.recycle();
        assert_eq!(spare_field_room(), 0, "freed, not kept");
    }

    // ----- helpers -----

    #[test]
    fn hand_built_requests_never_panic_in_accessors() {
        let request = Request { method: "GET", target: "nonsense", version: Version::Http11, headers: vec![] };
        assert_eq!((request.path(), request.query(), request.authority()), ("/", None, None));
        let request =
            Request { method: "GET", target: "/", version: Version::Http11, headers: vec![header("Host", b"\xff")] };
        assert_eq!(request.authority(), None);
    }
}
