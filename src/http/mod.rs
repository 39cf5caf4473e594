//! HTTP/1.1 from scratch (RFC 9112 message syntax, RFC 9110 semantics), sans-I/O.
//!
//! Everything else in the crate rides on this: a long poll is an HTTP request that is answered
//! late, an SSE stream is an HTTP response that never ends, and a WebSocket starts as an HTTP
//! request that asks to stop being HTTP.
//!
//! - [`request`]: the request head parser. Incremental (`Partial` until the empty line),
//!   zero-copy (fields borrow from the caller's buffer), strict, with limits.
//! - [`body`]: request body framing: `Content-Length` or chunked, with a size limit.
//! - [`response`]: the response writer and the chunked encoder that SSE streams use.
//! - [`response_head`]: the response head parser, for this crate's own clients.
//! - [`grammar`]: the field grammar the heads and the chunked trailer share (tokens, OWS,
//!   field lines, lists), and [`grammar::Parsed`], the answer of every incremental parser.
//! - `scan`: the byte classes (tchar, VCHAR, field-value) as one lookup table, and the
//!   word-at-a-time scans that find where a run of them ends; what makes the heads fast.
//! - [`error`]: one error enum, each variant carrying the status code it is answered with.
//!
//! None of it touches a socket: the server drivers hand it bytes and write what it returns.

#![forbid(unsafe_code)]

pub mod body;
pub mod error;
pub mod grammar;
pub mod request;
pub mod response;
pub mod response_head;
mod scan;

/// A query parameter that is present but not decodable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadQuery;

/// The first value of `name` in a query string (`since=k3f9-1&timeout=5`), decoded as an
/// HTML form would encode it: `+` is a space and `%XX` a byte (RFC 3986 §2.1), and the result
/// must be UTF-8. `Ok(None)` when the parameter is absent.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, BadQuery> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key)? == name {
            return percent_decode(value).map(Some);
        }
    }
    Ok(None)
}

/// `query` with the value of every parameter whose name is one of `names` (decoded, any case)
/// replaced by `replacement`, the rest as sent: what a log may show of a query that can carry
/// a secret. A name that does not decode counts as one of `names`: what cannot be read cannot
/// be known not to be a secret.
pub fn redact_query(query: &str, names: &[&str], replacement: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for (index, pair) in query.split('&').enumerate() {
        if index > 0 {
            out.push('&');
        }
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        let secret = match percent_decode(key) {
            Ok(name) => names.iter().any(|secret| name.eq_ignore_ascii_case(secret)),
            Err(BadQuery) => true,
        };
        if secret {
            out.push_str(key);
            out.push('=');
            out.push_str(replacement);
        } else {
            out.push_str(pair);
        }
    }
    out
}

fn percent_decode(text: &str) -> Result<String, BadQuery> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = tail.get(..2).ok_or(BadQuery)?;
                let high = (hex[0] as char).to_digit(16).ok_or(BadQuery)?;
                let low = (hex[1] as char).to_digit(16).ok_or(BadQuery)?;
                bytes.push((high * 16 + low) as u8);
                rest = &tail[2..];
                continue;
            }
            _ => bytes.push(byte),
        }
        rest = tail;
    }
    String::from_utf8(bytes).map_err(|_| BadQuery)
}

/// Does an `Accept` field allow `media_type` (`"text/event-stream"`)? RFC 9110 §12.5.1:
/// media ranges `type/subtype`, `type/*` and `*/*` with an optional weight `q`; "Media ranges
/// can be overridden by more specific media ranges", and a weight of 0 means "not acceptable".
/// No `Accept` field (or an empty one) accepts anything.
pub fn accepts<'a>(accept_fields: impl Iterator<Item = &'a [u8]>, media_type: &str) -> bool {
    let (wanted_type, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    let mut any_range = false;
    // (specificity, q) of the most specific range that matches.
    let mut best: Option<(u8, bool)> = None;
    for field in accept_fields {
        let Ok(field) = std::str::from_utf8(field) else { continue };
        for element in field.split(',') {
            let mut parts = element.split(';').map(str::trim);
            let range = parts.next().unwrap_or("");
            if range.is_empty() {
                continue;
            }
            any_range = true;
            let specificity = if range.eq_ignore_ascii_case(media_type) {
                2
            } else if range.split_once('/').is_some_and(|(t, s)| s == "*" && t.eq_ignore_ascii_case(wanted_type)) {
                1
            } else if range == "*/*" {
                0
            } else {
                continue;
            };
            // RFC 9110 §12.4.2: weight = OWS ";" OWS "q=" qvalue; only zero matters here.
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("q") && is_zero_qvalue(v.trim()))
            });
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, !refused));
            }
        }
    }
    match best {
        Some((_, acceptable)) => acceptable,
        None => !any_range,
    }
}

/// `0`, `0.`, `0.0`, `0.00`, `0.000` (RFC 9110 §12.4.2 qvalue).
fn is_zero_qvalue(value: &str) -> bool {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    whole == "0" && fraction.len() <= 3 && fraction.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_by_name_and_decoded() {
        let query = Some("since=k3f9-1&timeout=5&text=a+b%21");
        assert_eq!(query_param(query, "since"), Ok(Some("k3f9-1".into())));
        assert_eq!(query_param(query, "timeout"), Ok(Some("5".into())));
        assert_eq!(query_param(query, "text"), Ok(Some("a b!".into())));
        assert_eq!(query_param(query, "missing"), Ok(None));
        assert_eq!(query_param(None, "since"), Ok(None));
        assert_eq!(query_param(Some("flag"), "flag"), Ok(Some(String::new())));
    }

    #[test]
    fn redacting_a_query_replaces_every_value_of_the_named_parameters_however_spelled() {
        let names = ["token", "access_token"];
        let redact = |query: &str| redact_query(query, &names, "REDACTED");
        assert_eq!(redact("since=k3f9-1&timeout=5"), "since=k3f9-1&timeout=5", "nothing secret: as sent");
        assert_eq!(redact("token=abc.def.ghi&since=x"), "token=REDACTED&since=x");
        assert_eq!(redact("a=1&access_token=abc&token=def"), "a=1&access_token=REDACTED&token=REDACTED");
        assert_eq!(redact("%74oken=abc"), "%74oken=REDACTED", "a percent-encoded name is still the name");
        assert_eq!(redact("TOKEN=abc"), "TOKEN=REDACTED", "any case");
        assert_eq!(redact("tok%zzen=abc"), "tok%zzen=REDACTED", "an undecodable name may be anything");
        assert_eq!(redact("token"), "token=REDACTED");
        assert_eq!(redact("tokens=abc&my_token=x"), "tokens=abc&my_token=x", "only exact names");
    }

    fn accepts_sse(fields: &[&str]) -> bool {
        accepts(fields.iter().map(|f| f.as_bytes()), "text/event-stream")
    }

    #[test]
    fn rfc9110_12_5_1_accept_matches_exact_type_and_wildcards() {
        assert!(accepts_sse(&[]));
        assert!(accepts_sse(&["text/event-stream"]));
        assert!(accepts_sse(&["text/*"]));
        assert!(accepts_sse(&["*/*"]));
        assert!(accepts_sse(&["application/json, Text/Event-Stream; charset=utf-8"]));
        assert!(!accepts_sse(&["application/json"]));
        assert!(!accepts_sse(&["text/html", "application/json"]));
    }

    #[test]
    fn rfc9110_12_5_1_q_zero_refuses_and_the_more_specific_range_wins() {
        assert!(!accepts_sse(&["text/event-stream;q=0"]));
        assert!(!accepts_sse(&["*/*, text/event-stream; q=0.000"]));
        assert!(accepts_sse(&["*/*;q=0, text/event-stream"]));
        assert!(accepts_sse(&["text/event-stream;q=0.5"]));
    }

    #[test]
    fn rfc3986_2_1_malformed_percent_encoding_is_an_error() {
        assert_eq!(query_param(Some("since=%zz"), "since"), Err(BadQuery));
        assert_eq!(query_param(Some("since=%4"), "since"), Err(BadQuery));
        assert_eq!(query_param(Some("since=%ff"), "since"), Err(BadQuery), "not UTF-8");
    }
}
