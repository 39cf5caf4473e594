//! Negotiating `permessage-deflate` (RFC 7692 §5, §7.1) in the opening handshake, over the
//! `Sec-WebSocket-Extensions` grammar of RFC 6455 §9.1.
//!
//! # Theory of operation
//!
//! The client lists what it offers, in order of preference, in `Sec-WebSocket-Extensions`
//! (one or more header lines, each a comma-separated list). A browser offers
//! `permessage-deflate; client_max_window_bits`; Autobahn|Testsuite offers every combination
//! of the four parameters. [`negotiate`] walks the offers of `permessage-deflate` in order and
//! takes the first one it can accept under the server's [`DeflateMode`]; RFC 7692 §5 says
//! which offers a server "MUST decline": one with an unknown parameter, an invalid value or a
//! parameter twice. Offers of other extensions are ignored, and so is an element that does not
//! parse. Declining everything is not an error: the connection simply goes uncompressed.
//!
//! The answer ([`Agreement`]) is written back in the 101 ([`Agreement::response_value`]) and
//! fixes, for each direction, whether the compressor keeps its window between messages
//! ("context takeover") and how large a window it may use:
//!
//! | parameter | RFC 7692 | what it means here |
//! |---|---|---|
//! | `server_no_context_takeover` | §7.1.1.1 | the server compresses each message on its own |
//! | `client_no_context_takeover` | §7.1.1.2 | the client does; the server's inflater is dropped after each message |
//! | `server_max_window_bits=N` | §7.1.2.1 | the server's distances reach at most 2^N bytes back |
//! | `client_max_window_bits[=N]` | §7.1.2.2 | the client's do (our inflater accepts 2^15 whatever N, see below) |
//!
//! With `--ws-deflate no-context` (the default) the server answers every accepted offer with
//! both `no_context_takeover` parameters, which a server "MAY include" in any response
//! (§7.1.1.1, §7.1.1.2): no compression state outlives a message, so an idle connection
//! costs what it cost without compression.
//!
//! The server never answers with `client_max_window_bits`: it does not need the client's
//! window to be small, since without context takeover nothing is kept, and with it the
//! inflater keeps at most 64 KiB. Its inflater accepts distances up to 32 KiB from any client
//! (zlib's deflate turns a window of 2^8 into 2^9 on its own: strictness here would fail real
//! clients, and it protects nothing that the message size limit does not).

#![forbid(unsafe_code)]

use crate::deflate::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// The extension's name, the `extension-token` of RFC 7692 §7.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// Whether, and how, the server agrees to compress (`--ws-deflate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeflateMode {
    /// Decline every offer.
    Off,
    /// Accept, with no context takeover in either direction: nothing is kept between
    /// messages, and a broadcast is compressed once for all its subscribers.
    #[default]
    NoContext,
    /// Accept, keeping each direction's window between messages when the client allows it:
    /// better ratios on small similar messages, about 300 KiB more per busy connection.
    Context,
}

impl DeflateMode {
    /// Parses `off`, `no-context` or `context`.
    pub fn parse(value: &str) -> Result<DeflateMode, String> {
        match value {
            "off" => Ok(DeflateMode::Off),
            "no-context" => Ok(DeflateMode::NoContext),
            "context" => Ok(DeflateMode::Context),
            other => Err(format!("unknown mode '{other}' (expected off, no-context or context)")),
        }
    }
}

/// What one direction of the connection agreed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direction {
    /// The sender starts each message with an empty window (RFC 7692 §7.1.1).
    pub no_context_takeover: bool,
    /// The sender's LZ77 window is at most 2^`window_bits` bytes (RFC 7692 §7.1.2).
    pub window_bits: u8,
}

/// An accepted offer: the parameters of the response, in each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// What the server's messages follow.
    pub server: Direction,
    /// What the client's messages follow.
    pub client: Direction,
    /// Whether the response names `server_max_window_bits` (only when the offer did,
    /// §7.1.2.1: otherwise the response "MUST NOT include" it).
    server_window_in_response: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub fn response_value(&self) -> String {
        let mut value = String::from(EXTENSION_NAME);
        if self.server.no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client.no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.server_window_in_response {
            value.push_str(&format!("; server_max_window_bits={}", self.server.window_bits));
        }
        value
    }

    /// The agreement a server's response describes, read by a client: `None` if the response
    /// names anything the client cannot have offered (RFC 7692 §5: the client then "MUST
    /// _Fail the WebSocket Connection_").
    pub fn from_response(value: &[u8]) -> Option<Agreement> {
        let mut elements = parse_extension_list(value)?.into_iter();
        let element = elements.next()?;
        if element.name != EXTENSION_NAME || elements.next().is_some() {
            return None;
        }
        let offer = read_params(&element.params)?;
        Some(Agreement {
            server: Direction {
                no_context_takeover: offer.server_no_context_takeover,
                window_bits: offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
            },
            client: Direction {
                no_context_takeover: offer.client_no_context_takeover,
                window_bits: offer.client_max_window_bits.flatten().unwrap_or(MAX_WINDOW_BITS),
            },
            server_window_in_response: offer.server_max_window_bits.is_some(),
        })
    }
}

/// The offer a client of ours makes: every parameter left to the server.
pub const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Picks the first acceptable `permessage-deflate` offer among the values of every
/// `Sec-WebSocket-Extensions` line, or `None` to go without.
pub fn negotiate<'a>(header_values: impl Iterator<Item = &'a [u8]>, mode: DeflateMode) -> Option<Agreement> {
    if mode == DeflateMode::Off {
        return None;
    }
    for value in header_values {
        // RFC 6455 §9.1 allows the list to be split across lines; an unparsable line is
        // skipped like an unknown extension, not fatal to the handshake.
        let Some(elements) = parse_extension_list(value) else { continue };
        for element in elements.iter().filter(|e| e.name == EXTENSION_NAME) {
            if let Some(offer) = read_params(&element.params) {
                return Some(accept(&offer, mode));
            }
        }
    }
    None
}

/// The parameters of one offer, each present at most once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value ("the client supports the parameter").
    client_max_window_bits: Option<Option<u8>>,
}

/// Reads an offer's parameters, or `None` if RFC 7692 §5 says to decline it: "an extension
/// parameter not defined for use in an offer", "an extension parameter with an invalid
/// value", "multiple extension parameters with the same name".
fn read_params(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = Vec::new();
    for (name, value) in params {
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match (name.as_str(), value) {
            // §7.1.1.1, §7.1.1.2: these parameters have no value.
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
            // §7.1.2.1: server_max_window_bits always has a value.
            ("server_max_window_bits", Some(value)) => offer.server_max_window_bits = Some(window_bits(value)?),
            // §7.1.2.2: "This parameter has no value or a decimal integer value".
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(value)) => offer.client_max_window_bits = Some(Some(window_bits(value)?)),
            _ => return None,
        }
    }
    Some(offer)
}

/// RFC 7692 §7.1.2.1: "a decimal integer value without leading zeros between 8 to 15,
/// inclusive".
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 2 {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits).then_some(bits)
}

/// The server's answer to an acceptable offer.
fn accept(offer: &Offer, mode: DeflateMode) -> Agreement {
    let no_context = mode == DeflateMode::NoContext;
    Agreement {
        server: Direction {
            // §7.1.1.1: an offer with server_no_context_takeover binds us; without it we may
            // still add it.
            no_context_takeover: no_context || offer.server_no_context_takeover,
            // §7.1.2.1: accepted "with the same or smaller value as the offer".
            window_bits: offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        },
        client: Direction {
            no_context_takeover: no_context || offer.client_no_context_takeover,
            // We never answer client_max_window_bits, so the client may use up to 2^15.
            window_bits: MAX_WINDOW_BITS,
        },
        server_window_in_response: offer.server_max_window_bits.is_some(),
    }
}

/// One element of an extension list: a name and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Element {
    name: String,
    params: Vec<(String, Option<String>)>,
}

/// RFC 6455 §9.1:
///
/// ```text
/// extension-list = 1#extension
/// extension = extension-token *( ";" extension-param )
/// extension-token = registered-token
/// registered-token = token
/// extension-param = token [ "=" (token | quoted-string) ]
///     ;When using the quoted-string syntax variant, the value
///     ;after quoted-string unescaping MUST conform to the
///     ;'token' ABNF.
/// ```
///
/// With the list rule's optional whitespace around `,` and `;` (RFC 9110 §5.6.1). `None` if
/// the value does not follow the grammar.
fn parse_extension_list(value: &[u8]) -> Option<Vec<Element>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut elements = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        let (name, after) = take_token(rest);
        if name.is_empty() {
            // Empty list elements (",,") are allowed by the list rule and ignored.
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
                continue;
            }
            return if rest.is_empty() && !elements.is_empty() { Some(elements) } else { None };
        }
        let mut element = Element { name: name.to_ascii_lowercase(), params: Vec::new() };
        rest = after.trim_start_matches([' ', '\t']);
        while let Some(after) = rest.strip_prefix(';') {
            let (param, after) = take_token(after.trim_start_matches([' ', '\t']));
            if param.is_empty() {
                return None;
            }
            rest = after.trim_start_matches([' ', '\t']);
            let mut value = None;
            if let Some(after) = rest.strip_prefix('=') {
                let after = after.trim_start_matches([' ', '\t']);
                let (parsed, after) = if after.starts_with('"') { take_quoted(after)? } else { token_owned(after) };
                if parsed.is_empty() || !parsed.bytes().all(is_tchar) {
                    return None;
                }
                value = Some(parsed);
                rest = after.trim_start_matches([' ', '\t']);
            }
            element.params.push((param.to_ascii_lowercase(), value));
        }
        elements.push(element);
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None if rest.is_empty() => return Some(elements),
            None => return None,
        }
    }
}

/// RFC 9110 §5.6.2: `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn take_token(text: &str) -> (&str, &str) {
    let end = text.bytes().position(|b| !is_tchar(b)).unwrap_or(text.len());
    text.split_at(end)
}

fn token_owned(text: &str) -> (String, &str) {
    let (token, rest) = take_token(text);
    (token.to_string(), rest)
}

/// RFC 9110 §5.6.4: `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE`, unescaped.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str, mode: DeflateMode) -> Option<String> {
        negotiate(std::iter::once(value.as_bytes()), mode).map(|agreement| agreement.response_value())
    }

    #[test]
    fn rfc7692_5_default_mode_answers_with_no_context_takeover_both_ways() {
        assert_eq!(
            offer("permessage-deflate", DeflateMode::NoContext).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn rfc7692_5_a_browser_offer_is_accepted() {
        // What Chromium and Firefox send.
        let agreement =
            negotiate(std::iter::once(&b"permessage-deflate; client_max_window_bits"[..]), DeflateMode::NoContext)
                .unwrap();
        assert_eq!(agreement.client, Direction { no_context_takeover: true, window_bits: 15 });
        assert!(!agreement.response_value().contains("client_max_window_bits"));
    }

    #[test]
    fn rfc7692_7_1_1_context_mode_takes_over_unless_the_offer_forbids_it() {
        assert_eq!(offer("permessage-deflate", DeflateMode::Context).as_deref(), Some("permessage-deflate"));
        assert_eq!(
            offer("permessage-deflate; server_no_context_takeover", DeflateMode::Context).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn rfc7692_7_1_2_1_server_max_window_bits_is_answered_with_the_same_value() {
        let agreement =
            negotiate(std::iter::once(&b"permessage-deflate; server_max_window_bits=10"[..]), DeflateMode::NoContext)
                .unwrap();
        assert_eq!(agreement.server.window_bits, 10);
        assert!(agreement.response_value().ends_with("; server_max_window_bits=10"));
        // Not offered: "MUST NOT include" it.
        assert!(!offer("permessage-deflate", DeflateMode::Context).unwrap().contains("window_bits"));
    }

    #[test]
    fn rfc7692_7_1_2_window_bits_must_be_8_to_15_without_leading_zeros() {
        for bad in ["7", "16", "08", "010", "", "x", "1 5"] {
            let value = format!("permessage-deflate; server_max_window_bits={bad}");
            assert_eq!(offer(&value, DeflateMode::NoContext), None, "{bad}");
        }
        assert!(offer("permessage-deflate; client_max_window_bits=\"9\"", DeflateMode::NoContext).is_some());
        assert_eq!(offer("permessage-deflate; server_max_window_bits", DeflateMode::NoContext), None);
    }

    #[test]
    fn rfc7692_5_unknown_repeated_or_valued_parameters_decline_the_offer() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits=10; client_max_window_bits",
        ] {
            assert_eq!(offer(bad, DeflateMode::NoContext), None, "{bad}");
        }
    }

    #[test]
    fn rfc7692_5_the_first_acceptable_offer_wins() {
        let value = "x-webkit-deflate-frame, permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=12, permessage-deflate";
        let agreement = negotiate(std::iter::once(value.as_bytes()), DeflateMode::NoContext).unwrap();
        assert_eq!(agreement.server.window_bits, 12);
        // Split across header lines too.
        let lines: [&[u8]; 2] = [b"permessage-deflate; bogus", b"permessage-deflate; server_max_window_bits=9"];
        assert_eq!(negotiate(lines.into_iter(), DeflateMode::NoContext).unwrap().server.window_bits, 9);
    }

    #[test]
    fn off_declines_everything_and_other_extensions_are_ignored() {
        assert_eq!(offer("permessage-deflate", DeflateMode::Off), None);
        assert_eq!(offer("x-webkit-deflate-frame", DeflateMode::NoContext), None);
        assert_eq!(offer("permessage-deflate;;", DeflateMode::NoContext), None);
        assert_eq!(offer("permessage-deflate; a=\"unterminated", DeflateMode::NoContext), None);
    }

    #[test]
    fn rfc6455_9_1_the_list_grammar_allows_whitespace_and_quoted_values() {
        let elements = parse_extension_list(b" a ;b = \"c\" , d").unwrap();
        assert_eq!(
            elements,
            [
                Element { name: "a".into(), params: vec![("b".into(), Some("c".into()))] },
                Element { name: "d".into(), params: vec![] }
            ]
        );
        assert_eq!(parse_extension_list(b"a b"), None);
    }

    #[test]
    fn a_client_reads_the_response_back() {
        let agreement =
            negotiate(std::iter::once(&b"permessage-deflate; server_max_window_bits=11"[..]), DeflateMode::NoContext)
                .unwrap();
        assert_eq!(Agreement::from_response(agreement.response_value().as_bytes()), Some(agreement));
        assert_eq!(Agreement::from_response(b"permessage-deflate; foo"), None);
        assert_eq!(Agreement::from_response(b"x-other"), None);
    }
}
