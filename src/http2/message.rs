//! HTTP semantics over HTTP/2 (RFC 9113 §8): a request's decoded fields checked and turned
//! into the same [`Request`] an HTTP/1.1 head parses to, so that one route table
//! ([`crate::app::App::handle`]) serves both; and a [`Response`] turned into HEADERS fields.
//!
//! A request is *malformed* (§8.1.1) when its fields break the rules below; the server
//! answers it with a stream error of type PROTOCOL_ERROR, as the RFC says, and the other
//! streams go on:
//!
//! - §8.2.1: field names are lowercase tokens; values hold no NUL, CR or LF and do not
//!   begin or end with whitespace;
//! - §8.2.2: no connection-specific fields (`Connection`, `Keep-Alive`, `Proxy-Connection`,
//!   `Transfer-Encoding`, `Upgrade`), and `TE` only as `trailers`;
//! - §8.3.1: the pseudo-header fields `:method`, `:scheme`, `:path` (and `:authority`) each
//!   at most once, before every regular field, no others, and the first three present.
//!
//! The request-line's parts become `:method` and `:path`; `:authority` becomes `Host`
//! (§8.3.1: it "MUST NOT" be contradicted by one). The body has no `Content-Length` of
//! its own over HTTP/2 (DATA frames end with END_STREAM), so once it is complete its length
//! is given as one, and a `Content-Length` the client sent must match it (§8.1.1).

#![forbid(unsafe_code)]

use super::hpack::Field;
use crate::http::grammar::Header;
use crate::http::request::{Request, Version};
use crate::http::response::Response;

/// Why a request is malformed (§8.1.1); each variant names the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// §8.2.1: a field name with an uppercase letter or a byte outside a token.
    BadFieldName,
    /// §8.2.1: a field value with NUL, CR or LF, or whitespace at either end.
    BadFieldValue,
    /// §8.2.2: a connection-specific field, or `TE` other than `trailers`.
    ConnectionSpecific,
    /// §8.3: an unknown pseudo-header, a repeated one, one after a regular field, or a
    /// response's (`:status`).
    BadPseudoHeader,
    /// §8.3.1: `:method`, `:scheme` or `:path` missing, or `:path` empty.
    MissingPseudoHeader,
    /// §8.3.1: `Host` and `:authority` disagree.
    HostMismatch,
    /// §8.1.1: `Content-Length` does not match the DATA received.
    ContentLengthMismatch,
}

/// A request's head, checked and owned: the request-line's parts and the regular fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// `:path`: the request-target, in origin-form.
    pub path: String,
    /// The regular fields, `host` from `:authority` among them.
    fields: Vec<(String, Vec<u8>)>,
}

const CONNECTION_SPECIFIC: [&str; 5] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

impl RequestHead {
    /// Checks a request's fields (§8.2, §8.3.1).
    pub fn from_fields(fields: Vec<Field>) -> Result<RequestHead, Malformed> {
        let (mut method, mut scheme, mut path, mut authority) = (None, None, None, None);
        let mut regular: Vec<(String, Vec<u8>)> = Vec::new();
        for Field { name, value, .. } in fields {
            if let Some(pseudo) = name.strip_prefix(b":") {
                // §8.3: "All pseudo-header fields MUST appear in a field block before all
                // regular field lines."
                if !regular.is_empty() {
                    return Err(Malformed::BadPseudoHeader);
                }
                let slot = match pseudo {
                    b"method" => &mut method,
                    b"scheme" => &mut scheme,
                    b"path" => &mut path,
                    b"authority" => &mut authority,
                    // "Endpoints MUST treat a request or response that contains undefined or
                    // invalid pseudo-header fields as malformed."
                    _ => return Err(Malformed::BadPseudoHeader),
                };
                check_value(&value)?;
                // §8.3.1: "The same pseudo-header field name MUST NOT appear more than once".
                if slot.replace(value).is_some() {
                    return Err(Malformed::BadPseudoHeader);
                }
                continue;
            }
            // §8.2.1: "A field name MUST NOT contain characters in the ranges 0x00-0x20,
            // 0x41-0x5a, or 0x7f-0xff (all ranges inclusive)." (And it is a token.)
            if name.is_empty() || !name.iter().all(|&b| crate::http::grammar::is_token(&[b]) && !b.is_ascii_uppercase())
            {
                return Err(Malformed::BadFieldName);
            }
            check_value(&value)?;
            // The name is ASCII: checked just above.
            let name = String::from_utf8(name).map_err(|_| Malformed::BadFieldName)?;
            // §8.2.2: "An endpoint MUST NOT generate an HTTP/2 message containing
            // connection-specific header fields. ... Any message containing
            // connection-specific header fields MUST be treated as malformed". "The only
            // exception to this is the TE header field ... it MUST NOT contain any value
            // other than "trailers"."
            if CONNECTION_SPECIFIC.contains(&name.as_str()) || (name == "te" && value != b"trailers") {
                return Err(Malformed::ConnectionSpecific);
            }
            regular.push((name, value));
        }
        // §8.3.1: "All HTTP/2 requests MUST include exactly one valid value for the
        // ":method", ":scheme", and ":path" pseudo-header fields, unless they are CONNECT
        // requests"; ":path" "MUST NOT be empty for "http" or "https" URIs".
        let (Some(method), Some(_scheme), Some(path)) = (method, scheme, path) else {
            return Err(Malformed::MissingPseudoHeader);
        };
        if path.is_empty() {
            return Err(Malformed::MissingPseudoHeader);
        }
        let method = String::from_utf8(method).map_err(|_| Malformed::BadPseudoHeader)?;
        let path = String::from_utf8(path).map_err(|_| Malformed::BadPseudoHeader)?;
        if let Some(authority) = authority {
            match regular.iter().find(|(name, _)| name == "host") {
                // §8.3.1: "A server SHOULD treat a request as malformed if it contains a Host
                // header field that identifies an entity that differs from the entity in the
                // ":authority" pseudo-header field."
                Some((_, host)) if *host != authority => return Err(Malformed::HostMismatch),
                Some(_) => {}
                // "An intermediary that forwards a request over HTTP/1.1 MUST construct a
                // Host header field if one is not present" — we do the same for our routes.
                None => regular.push(("host".to_string(), authority)),
            }
        }
        Ok(RequestHead { method, path, fields: regular })
    }

    /// A body follows the head (no END_STREAM on the HEADERS frame). Without a
    /// `Content-Length`, its length is known only at END_STREAM, which is what the chunked
    /// coding means to the HTTP/1.1 routes (RFC 9112 §6.3 rule 4): the head says so, so that
    /// the gate can judge the request before the body is read. (A client may not send
    /// `Transfer-Encoding` itself: §8.2.2, refused in [`RequestHead::from_fields`].)
    pub fn body_follows(&mut self) {
        if !self.fields.iter().any(|(name, _)| name == "content-length") {
            self.fields.push(("transfer-encoding".to_string(), b"chunked".to_vec()));
        }
    }

    /// The body is complete and `length` octets long: it is given as `Content-Length`.
    /// §8.1.1: "A request or response is also malformed if the value of a content-length
    /// header field does not equal the sum of the DATA frame payload lengths".
    pub fn set_body_length(&mut self, length: usize) -> Result<(), Malformed> {
        let length = length.to_string();
        for (name, value) in &self.fields {
            if name == "content-length" && value != length.as_bytes() {
                return Err(Malformed::ContentLengthMismatch);
            }
        }
        self.fields.retain(|(name, _)| name != "content-length" && name != "transfer-encoding");
        // A GET without a body keeps the shape it has over HTTP/1.1: no Content-Length.
        if length != "0" || self.method == "POST" {
            self.fields.push(("content-length".to_string(), length.into_bytes()));
        }
        Ok(())
    }

    /// The request as the routes see it: an HTTP/1.1 request with the same fields.
    pub fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            target: &self.path,
            version: Version::Http11,
            headers: self.fields.iter().map(|(name, value)| Header { name: name.as_bytes(), value }).collect(),
        }
    }
}

/// §8.2.1: "A field value MUST NOT contain the zero value (ASCII NUL, 0x00), line feed
/// (ASCII LF, 0x0a), or carriage return (ASCII CR, 0x0d) at any position. A field value
/// MUST NOT start or end with an ASCII whitespace character (ASCII SP or HTAB, 0x20 or 0x09)."
fn check_value(value: &[u8]) -> Result<(), Malformed> {
    let whitespace = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if value.iter().any(|&b| matches!(b, 0 | b'\n' | b'\r')) || whitespace(value.first()) || whitespace(value.last()) {
        return Err(Malformed::BadFieldValue);
    }
    Ok(())
}

/// The HEADERS fields of a response: `:status` first (§8.3.2), then its fields with their
/// names in lowercase (§8.2: "field names MUST be converted to lowercase"), `content-length`
/// and `date`. `Content-Length` is kept even though DATA frames delimit the body: it tells the
/// client the size before the body arrives (§8.1.1 allows it).
pub fn response_fields(response: &Response, content_length: bool, date: &str) -> Vec<Field> {
    let mut fields = vec![Field::new(":status", response.status.to_string())];
    for (name, value) in &response.headers {
        fields.push(Field::new(name.to_ascii_lowercase(), value.as_str()));
    }
    if content_length {
        fields.push(Field::new("content-length", response.body.len().to_string()));
    }
    fields.push(Field::new("date", date));
    fields
}

/// The HEADERS fields of a stream's head given as name-value pairs (an SSE stream's).
pub fn head_fields(status: u16, headers: &[(&str, &str)], date: &str) -> Vec<Field> {
    let mut fields = vec![Field::new(":status", status.to_string())];
    fields.extend(headers.iter().map(|(name, value)| Field::new(name.to_ascii_lowercase(), *value)));
    fields.push(Field::new("date", date));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::BodyFraming;

    fn request(fields: &[(&str, &str)]) -> Result<RequestHead, Malformed> {
        RequestHead::from_fields(fields.iter().map(|(n, v)| Field::new(*n, *v)).collect())
    }

    const GET: [(&str, &str); 4] =
        [(":method", "GET"), (":scheme", "http"), (":path", "/healthz"), (":authority", "x")];

    #[test]
    fn a_request_becomes_an_http11_request_with_host_from_authority_rfc9113_8_3_1() {
        let head = request(&GET).unwrap();
        let request = head.request();
        assert_eq!((request.method, request.target, request.version), ("GET", "/healthz", Version::Http11));
        assert_eq!(request.header("host"), Some(&b"x"[..]));
    }

    #[test]
    fn uppercase_field_names_are_malformed_rfc9113_8_2_1() {
        let mut fields = GET.to_vec();
        fields.push(("Accept", "*/*"));
        assert_eq!(request(&fields), Err(Malformed::BadFieldName));
    }

    #[test]
    fn values_with_cr_lf_nul_or_edge_whitespace_are_malformed_rfc9113_8_2_1() {
        for bad in ["a\r\nb", "a\0", " a", "a\t"] {
            let mut fields = GET.to_vec();
            fields.push(("accept", bad));
            assert_eq!(request(&fields), Err(Malformed::BadFieldValue), "{bad:?}");
        }
    }

    #[test]
    fn connection_specific_fields_are_malformed_and_te_only_trailers_rfc9113_8_2_2() {
        for (name, value) in [
            ("connection", "close"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("keep-alive", "5"),
            ("te", "gzip"),
        ] {
            let mut fields = GET.to_vec();
            fields.push((name, value));
            assert_eq!(request(&fields), Err(Malformed::ConnectionSpecific), "{name}");
        }
        let mut fields = GET.to_vec();
        fields.push(("te", "trailers"));
        assert!(request(&fields).is_ok());
    }

    #[test]
    fn pseudo_headers_come_first_once_and_only_the_request_ones_rfc9113_8_3() {
        let after = [(":method", "GET"), (":scheme", "http"), ("accept", "*/*"), (":path", "/")];
        assert_eq!(request(&after), Err(Malformed::BadPseudoHeader));
        let twice = [(":method", "GET"), (":method", "GET"), (":scheme", "http"), (":path", "/")];
        assert_eq!(request(&twice), Err(Malformed::BadPseudoHeader));
        let status = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":status", "200")];
        assert_eq!(request(&status), Err(Malformed::BadPseudoHeader));
    }

    #[test]
    fn method_scheme_and_a_non_empty_path_are_required_rfc9113_8_3_1() {
        assert_eq!(request(&[(":method", "GET"), (":scheme", "http")]), Err(Malformed::MissingPseudoHeader));
        assert_eq!(request(&[(":method", "GET"), (":path", "/")]), Err(Malformed::MissingPseudoHeader));
        assert_eq!(
            request(&[(":method", "GET"), (":scheme", "http"), (":path", "")]),
            Err(Malformed::MissingPseudoHeader)
        );
    }

    #[test]
    fn a_host_that_differs_from_authority_is_malformed_rfc9113_8_3_1() {
        let mut fields = GET.to_vec();
        fields.push(("host", "y"));
        assert_eq!(request(&fields), Err(Malformed::HostMismatch));
    }

    #[test]
    fn content_length_must_match_the_data_received_rfc9113_8_1_1() {
        let fields = [(":method", "POST"), (":scheme", "http"), (":path", "/publish/a"), ("content-length", "5")];
        let mut head = request(&fields).unwrap();
        assert_eq!(head.clone().set_body_length(4), Err(Malformed::ContentLengthMismatch));
        head.set_body_length(5).unwrap();
        assert_eq!(head.request().header("content-length"), Some(&b"5"[..]));
    }

    #[test]
    fn a_body_of_unknown_length_reads_as_chunked_to_the_http11_routes_until_it_is_complete_rfc9112_6_3() {
        let post = [(":method", "POST"), (":scheme", "http"), (":path", "/publish/a")];
        let mut head = request(&post).unwrap();
        head.body_follows();
        assert_eq!(head.request().body_framing(), Ok(BodyFraming::Chunked), "judged before the body");
        head.set_body_length(3).unwrap();
        assert_eq!(head.request().body_framing(), Ok(BodyFraming::Length(3)), "and once it is complete");
        let mut fields = post.to_vec();
        fields.push(("content-length", "3"));
        let mut declared = request(&fields).unwrap();
        declared.body_follows();
        assert_eq!(declared.request().body_framing(), Ok(BodyFraming::Length(3)), "a declared length stands");
    }

    #[test]
    fn response_fields_start_with_status_and_are_lowercase_rfc9113_8_3_2() {
        let response = Response::text(404, "not found").with_header("X-Thing", "1");
        let fields = response_fields(&response, true, "d");
        assert_eq!(fields[0], Field::new(":status", "404"));
        assert!(fields.iter().all(|f| !f.name.iter().any(u8::is_ascii_uppercase)));
        assert!(fields.contains(&Field::new("content-length", "10")));
    }
}
