//! The opening handshake (RFC 6455 §1.3, §4.1, §4.2): the HTTP request that asks to become a
//! WebSocket, and the `101 Switching Protocols` that agrees.
//!
//! The handshake is ordinary HTTP/1.1 (RFC 6455 §4.1: "The handshake MUST be a valid HTTP
//! request"), so parsing it is the HTTP parser's job; this file holds the WebSocket-specific
//! parts:
//!
//! - the key exchange. The client sends 16 random bytes in base64 as `Sec-WebSocket-Key`; the
//!   server proves it understood WebSocket (and is not some HTTP server tricked into replying)
//!   by answering with `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)), where the GUID is a
//!   constant no other protocol uses. SHA-1's weaknesses do not matter here (§10.8): nothing is
//!   secret, the point is only that the answer can't come from a server that doesn't know the
//!   protocol. [`accept_key`], [`is_valid_client_key`], [`check_server_accept`];
//! - writing the server's 101 response ([`write_accept_response`]) and the client's request
//!   ([`write_client_request`]).
//!
//! The request checks of §4.2.1 (GET, HTTP/1.1, `Host`, `Upgrade: websocket`, `Connection:
//! Upgrade`, `Sec-WebSocket-Version: 13`) are made where the request is parsed, with these
//! helpers. On a successful upgrade, any bytes already read past the request head belong to
//! the WebSocket session: a client may send its first frame right behind the handshake.

#![forbid(unsafe_code)]

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine as _;

use super::extension::{self, Agreement, DeflateMode};
use crate::http::grammar::trim_ows;
use crate::http::request::{Request, Version};

/// RFC 6455 §1.3: the "Globally Unique Identifier" appended to the key.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// RFC 6455 §4.1: the value of `Sec-WebSocket-Version` "MUST be 13". A server that gets another
/// version answers 426 with this value in `Sec-WebSocket-Version` (§4.2.2).
pub const VERSION: &str = "13";

/// RFC 6455 §4.1: the key is "a randomly selected 16-byte value that has been base64-encoded".
pub const KEY_NONCE_LEN: usize = 16;

/// 16 bytes in base64 are 24 characters: 22 for the data, "==" for padding.
const ENCODED_KEY_LEN: usize = 24;

/// Standard base64 with padding that accepts non-zero padding bits. RFC 4648 §3.5 lets a
/// decoder accept or reject them; the RFC 6455 §4.1 example key itself,
/// "AQIDBAUGBwgJCgsMDQ4PEC==", has them (the canonical spelling ends in "EA=="). Nothing is
/// lost by accepting it: the server hashes the key as text and never uses the bytes.
const KEY_DECODER: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));

/// Why a request cannot be upgraded, and how it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not an upgrade request at all (no `Upgrade: websocket`, or HTTP/1.0): 426, telling the
    /// client which protocol this resource speaks (RFC 9110 §15.5.22).
    NotAnUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13: 426 with `Sec-WebSocket-Version: 13`
    /// (§4.2.2: "it MUST ... send ... a |Sec-WebSocket-Version| header field indicating the
    /// version(s) the server is capable of understanding").
    UnsupportedVersion,
    /// `Connection` does not include `Upgrade` (§4.2.1 item 4): 400.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64 (§4.2.1 item 5): 400.
    BadKey,
}

impl HandshakeError {
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::NotAnUpgrade | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::MissingConnectionUpgrade | HandshakeError::BadKey => 400,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HandshakeError::NotAnUpgrade => "this resource speaks WebSocket: send Upgrade: websocket",
            HandshakeError::UnsupportedVersion => "unsupported WebSocket version: send Sec-WebSocket-Version: 13",
            HandshakeError::MissingConnectionUpgrade => "a WebSocket handshake needs Connection: Upgrade",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be 16 bytes in base64",
        }
    }
}

/// What the server's 101 says: the proof it read the key, and the extension it agreed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// permessage-deflate (RFC 7692), when the client offered it acceptably and `mode`
    /// allows it ([`extension::negotiate`]).
    pub deflate: Option<Agreement>,
}

/// Reads the client's opening handshake (RFC 6455 §4.2.1) from a parsed request head and
/// returns what the 101 must say: the `Sec-WebSocket-Accept` value and, §4.2.2 step 5.5's
/// "a list of extensions the server intends to use", permessage-deflate if agreed under
/// `deflate`. The method (GET) and `Host` are checked by the router and the HTTP parser; the
/// `Origin` policy by the application.
pub fn check_client_handshake(request: &Request<'_>, deflate: DeflateMode) -> Result<Accepted, HandshakeError> {
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request". RFC 9110 §7.8: a server "MUST
    // ignore" an Upgrade field received in an HTTP/1.0 request.
    // §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket", treated as
    // an ASCII case-insensitive value."
    if request.version != Version::Http11 || !request.has_token("upgrade", "websocket") {
        return Err(HandshakeError::NotAnUpgrade);
    }
    // §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade", treated as
    // an ASCII case-insensitive value."
    if !request.has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    // §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    let mut versions = request.headers_named("sec-websocket-version");
    if versions.next() != Some(VERSION.as_bytes()) || versions.next().is_some() {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = request.headers_named("sec-websocket-key");
    match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_client_key(key) => Ok(Accepted {
            accept: accept_key(key),
            deflate: extension::negotiate(request.headers_named("sec-websocket-extensions"), deflate),
        }),
        _ => Err(HandshakeError::BadKey),
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2 step 5.4):
/// "concatenating /key/ ... with the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", taking the
/// SHA-1 hash of this concatenated value to obtain a 20-byte value and base64-encoding ... this
/// 20-byte hash." The key is used as sent, not decoded.
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(client_key);
    sha1.update(GUID.as_bytes());
    STANDARD.encode(sha1.digest().bytes())
}

/// Whether a `Sec-WebSocket-Key` value is acceptable. RFC 6455 §4.2.1 item 5: "A
/// |Sec-WebSocket-Key| header field with a base64-encoded (see Section 4 of \[RFC4648\]) value
/// that, when decoded, is 16 bytes in length." Otherwise the server answers 400.
pub fn is_valid_client_key(key: &[u8]) -> bool {
    if key.len() != ENCODED_KEY_LEN {
        return false;
    }
    // Room for the decoder's estimate of 24 characters; a valid key fills 16 of it.
    let mut decoded = [0u8; ENCODED_KEY_LEN];
    KEY_DECODER.decode_slice(key, &mut decoded) == Ok(KEY_NONCE_LEN)
}

/// The `Sec-WebSocket-Key` for 16 random bytes (the caller draws them from the OS: §4.1, "The
/// nonce MUST be selected randomly for each connection").
pub fn client_key(nonce: &[u8; KEY_NONCE_LEN]) -> String {
    STANDARD.encode(nonce)
}

/// Writes the server's handshake response (RFC 6455 §4.2.2 step 5): "A Status-Line with a 101
/// response code", "An |Upgrade| header field with value "websocket"", "A |Connection| header
/// field with value "Upgrade"", and the `Sec-WebSocket-Accept` field; `Sec-WebSocket-Extensions`
/// when an extension was agreed (RFC 7692 §5). No subprotocol is selected.
pub fn write_accept_response(out: &mut Vec<u8>, accepted: &Accepted) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    out.extend_from_slice(b"Upgrade: websocket\r\n");
    out.extend_from_slice(b"Connection: Upgrade\r\n");
    push_field(out, "Sec-WebSocket-Accept", &accepted.accept);
    if let Some(agreement) = &accepted.deflate {
        push_field(out, "Sec-WebSocket-Extensions", &agreement.response_value());
    }
    out.extend_from_slice(b"\r\n");
}

/// A part of a client request that would not survive being put on the request line or in a
/// header field (a space, a control character such as CR or LF, or non-ASCII).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidRequestPart(pub &'static str);

/// Writes the client's opening handshake (RFC 6455 §4.1): "GET", "HTTP/1.1", `Host`,
/// `Upgrade: websocket`, `Connection: Upgrade`, the key, version 13 and, for a client acting
/// for a web page, `Origin`.
///
/// `path_and_query` is the /resource name/ (§3), e.g. `/ws/news?since=k3f9-17`, already
/// percent-encoded. Every part is checked to be visible ASCII, so that no caller can inject a
/// header line; nothing is written if one is not.
pub fn write_client_request(
    out: &mut Vec<u8>,
    host: &str,
    path_and_query: &str,
    key: &str,
    origin: Option<&str>,
) -> Result<(), InvalidRequestPart> {
    write_client_request_with_fields(out, host, path_and_query, key, origin, &[])
}

/// [`write_client_request`] with more header fields (`Authorization`), each name a token and
/// each value visible ASCII or spaces.
pub fn write_client_request_with_fields(
    out: &mut Vec<u8>,
    host: &str,
    path_and_query: &str,
    key: &str,
    origin: Option<&str>,
    fields: &[(&str, &str)],
) -> Result<(), InvalidRequestPart> {
    for (name, value) in fields {
        check_visible_ascii("field name", name)?;
        if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(InvalidRequestPart("field value"));
        }
    }
    check_visible_ascii("host", host)?;
    check_visible_ascii("path", path_and_query)?;
    if !path_and_query.starts_with('/') {
        return Err(InvalidRequestPart("path"));
    }
    check_visible_ascii("key", key)?;
    if let Some(origin) = origin {
        check_visible_ascii("origin", origin)?;
    }
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(out, "Host", host);
    out.extend_from_slice(b"Upgrade: websocket\r\n");
    out.extend_from_slice(b"Connection: Upgrade\r\n");
    push_field(out, "Sec-WebSocket-Key", key);
    push_field(out, "Sec-WebSocket-Version", VERSION);
    if let Some(origin) = origin {
        push_field(out, "Origin", origin);
    }
    for (name, value) in fields {
        push_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Whether the server's `Sec-WebSocket-Accept` value answers our `key`. RFC 6455 §4.1: if it
/// "contains a value other than the base64-encoded SHA-1 of the concatenation of the
/// |Sec-WebSocket-Key| (as a string, not base64-decoded) with the string
/// "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" but ignoring any leading and trailing whitespace, the
/// client MUST _Fail the WebSocket Connection_."
pub fn check_server_accept(key: &str, accept_header_value: &[u8]) -> bool {
    trim_ows(accept_header_value) == accept_key(key.as_bytes()).as_bytes()
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn check_visible_ascii(part: &'static str, value: &str) -> Result<(), InvalidRequestPart> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(InvalidRequestPart(part));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_1_3_example_accept_key() {
        // RFC 6455 §1.3 and §4.2.2: key "dGhlIHNhbXBsZSBub25jZQ==" gives the SHA-1
        // "0xb3 0x7a 0x4f 0x2c ... 0xc4 0xea", in base64 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rfc6455_4_2_1_key_must_decode_to_16_bytes() {
        assert!(is_valid_client_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_valid_client_key(client_key(&[0xFF; 16]).as_bytes()));
        // The §4.1 example, with its non-zero padding bits (see KEY_DECODER).
        assert!(is_valid_client_key(b"AQIDBAUGBwgJCgsMDQ4PEC=="));
        assert!(is_valid_client_key(b"AQIDBAUGBwgJCgsMDQ4PEA=="));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",    // no padding
            b"dGhlIHNhbXBsZSBub25jZQ=",   // short padding
            b"dGhlIHNhbXBsZSBub25jZQ===", // too long
            b"dGhlIHNhbXBsZSBub25j",      // 15 bytes
            b"dGhlIHNhbXBsZSBub25jZQAA",  // 18 bytes
            b"dGhlIHNhbXBsZSBub25jZQ!=",  // not base64
            b" GhlIHNhbXBsZSBub25jZQ==",  // whitespace inside the value
            b"dGhlIHNhbXBsZSBub25jZ-_==", // URL-safe alphabet
        ] {
            assert!(!is_valid_client_key(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn rfc6455_4_1_client_key_is_16_bytes_in_base64() {
        let nonce = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        assert_eq!(client_key(&nonce), "AQIDBAUGBwgJCgsMDQ4PEA==");
    }

    #[test]
    fn rfc6455_4_2_2_accept_response() {
        let mut out = Vec::new();
        write_accept_response(&mut out, &Accepted { accept: accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), deflate: None });
        let expected = "HTTP/1.1 101 Switching Protocols\r\n\
                        Upgrade: websocket\r\n\
                        Connection: Upgrade\r\n\
                        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(String::from_utf8(out).expect("ASCII"), expected);
    }

    #[test]
    fn rfc6455_4_1_client_request() {
        let mut out = Vec::new();
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        write_client_request(&mut out, "server.example.com", "/chat", key, Some("http://example.com"))
            .expect("valid parts");
        let expected = "GET /chat HTTP/1.1\r\n\
                        Host: server.example.com\r\n\
                        Upgrade: websocket\r\n\
                        Connection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                        Sec-WebSocket-Version: 13\r\n\
                        Origin: http://example.com\r\n\r\n";
        assert_eq!(String::from_utf8(out).expect("ASCII"), expected);
    }

    #[test]
    fn client_request_refuses_parts_that_would_inject_header_lines() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let mut out = Vec::new();
        let cases = [
            ("a\r\nEvil: 1", "/", Some("x"), "host"),
            ("a", "/x y", None, "path"),
            ("a", "chat", None, "path"),
            ("a", "/", Some("http://é"), "origin"),
            ("", "/", None, "host"),
        ];
        for (host, path, origin, part) in cases {
            assert_eq!(write_client_request(&mut out, host, path, key, origin), Err(InvalidRequestPart(part)));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn rfc6455_4_1_server_accept_is_checked_ignoring_surrounding_whitespace() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert!(check_server_accept(key, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(check_server_accept(key, b" \ts3pPLMBiTxaQ9kYGzzhZRbK+xOo= "));
        assert!(!check_server_accept(key, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo"));
        assert!(!check_server_accept(key, b"S3PPLMBITXAQ9KYGZZHZRBK+XOO="), "base64 is case-sensitive");
        assert!(!check_server_accept("AQIDBAUGBwgJCgsMDQ4PEA==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(!check_server_accept(key, b""));
    }
}
