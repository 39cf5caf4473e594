//! Reading a message envelope (`docs/PROTOCOL.md` §2.1) without building a JSON tree.
//!
//! A subscriber of a busy channel reads a million envelopes a second; [`crate::json::parse`]
//! would allocate a tree, a `String` per key and one per value for each. [`scan`] reads the
//! envelope where it lies instead: one pass over a flat object whose values are strings
//! without escapes, integers, `true`, `false` or `null`, handing out borrowed slices. That is
//! every envelope and every WebSocket gap notice this server writes (a text with a `"`, a `\`
//! or a control character in it is the exception).
//!
//! Anything else (an escape, a nested value, a fraction, whitespace in odd places is fine)
//! is not refused but handed to [`crate::json::parse`], so the answer is always the full
//! parser's: the scan accepts only a subset of what that parser accepts, reads it the same way
//! (the first of a repeated member counts, as [`crate::json::Value::get`] finds it), and gives
//! up, not guesses, at the first byte outside the subset.

#![forbid(unsafe_code)]

use std::borrow::Cow;

use crate::json;

/// The members of an envelope (or of a WebSocket gap notice) that a subscriber reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub id: Option<Cow<'a, str>>,
    pub text: Option<Cow<'a, str>>,
    /// `time`, when it is a whole number from 0 to 2^53 (what [`json::Value::as_u64`] reads).
    pub time: Option<u64>,
    /// `"gap":true`: a WebSocket's gap notice, not a message (`docs/PROTOCOL.md` §8.2).
    pub gap: bool,
}

/// The largest integer [`json::Value::as_u64`] reads exactly (2^53), plus one.
const EXACT_INTEGERS: u64 = 1 << 53;

/// Reads `text` as an envelope: the cheap scan, or the full parser where the scan gives up.
pub fn read(text: &str) -> Result<Envelope<'_>, json::JsonError> {
    match scan(text) {
        Some(envelope) => Ok(envelope),
        None => json::parse(text).map(|value| from_value(&value)),
    }
}

/// The members of a parsed document (none, if it is not an object).
fn from_value(value: &json::Value) -> Envelope<'static> {
    let string = |name| value.get(name).and_then(json::Value::as_str).map(|s| Cow::Owned(s.to_string()));
    Envelope {
        id: string("id"),
        text: string("text"),
        time: value.get("time").and_then(json::Value::as_u64),
        gap: value.get("gap").and_then(json::Value::as_bool) == Some(true),
    }
}

/// The scan alone: `None` where it gives up (the input may still be valid JSON).
///
/// RFC 8259 §4: `object = begin-object [ member *( value-separator member ) ] end-object`,
/// `member = string name-separator value`, with insignificant whitespace around the
/// structural characters (§2).
pub fn scan(text: &str) -> Option<Envelope<'_>> {
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(bytes, at + 1);
    let (mut id, mut text_member, mut time, mut gap) = (None, None, None, None);
    if bytes.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            let (name, after) = plain_string(text, at)?;
            at = skip_whitespace(bytes, after);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at = skip_whitespace(bytes, at + 1);
            let (value, after) = scalar(text, at)?;
            // The first of a repeated name counts, as `json::Value::get` finds it.
            match name {
                "id" if id.is_none() => id = Some(value),
                "text" if text_member.is_none() => text_member = Some(value),
                "time" if time.is_none() => time = Some(value),
                "gap" if gap.is_none() => gap = Some(value),
                _ => {}
            }
            at = skip_whitespace(bytes, after);
            match bytes.get(at) {
                Some(b',') => at = skip_whitespace(bytes, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if skip_whitespace(bytes, at) != bytes.len() {
        return None;
    }
    Some(Envelope {
        id: id.and_then(Scalar::string).map(Cow::Borrowed),
        text: text_member.and_then(Scalar::string).map(Cow::Borrowed),
        time: time.and_then(Scalar::exact_integer),
        gap: gap == Some(Scalar::True),
    })
}

/// A value the scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar<'a> {
    String(&'a str),
    /// A whole number from 0 up (`-0` included), without fraction or exponent, if it fits.
    Integer(u64),
    /// Any other number the scan accepts (a negative integer, a huge one): valid, not read.
    OtherNumber,
    True,
    False,
    Null,
}

impl<'a> Scalar<'a> {
    fn string(self) -> Option<&'a str> {
        match self {
            Scalar::String(text) => Some(text),
            _ => None,
        }
    }

    fn exact_integer(self) -> Option<u64> {
        match self {
            Scalar::Integer(value) if value < EXACT_INTEGERS => Some(value),
            _ => None,
        }
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    // RFC 8259 §2: `ws = *( %x20 / %x09 / %x0A / %x0D )`.
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// A string value or name at `at` with no escape in it: its text and the index after it.
fn plain_string(text: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    // RFC 8259 §7: unescaped = %x20-21 / %x23-5B / %x5D-10FFFF. A `\` gives up (the full
    // parser decodes escapes); a control character is an error, which the full parser reports.
    let length = bytes[start..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    let end = start + length;
    if bytes[end] != b'"' {
        return None;
    }
    // Both ends are ASCII quotes inside a `str`, so the slice is on character boundaries.
    Some((&text[start..end], end + 1))
}

/// A value at `at` that is not an object or an array: the value and the index after it.
fn scalar(text: &str, at: usize) -> Option<(Scalar<'_>, usize)> {
    let bytes = text.as_bytes();
    let literal = |word: &str, value| bytes[at..].starts_with(word.as_bytes()).then_some((value, at + word.len()));
    match bytes.get(at)? {
        b'"' => plain_string(text, at).map(|(text, after)| (Scalar::String(text), after)),
        b't' => literal("true", Scalar::True),
        b'f' => literal("false", Scalar::False),
        b'n' => literal("null", Scalar::Null),
        b'-' | b'0'..=b'9' => integer(bytes, at),
        _ => None,
    }
}

/// RFC 8259 §6 `number`, restricted to `[ minus ] int`: `int = zero / ( digit1-9 *DIGIT )`.
/// A fraction or an exponent gives up.
fn integer(bytes: &[u8], at: usize) -> Option<(Scalar<'static>, usize)> {
    let negative = bytes[at] == b'-';
    let start = if negative { at + 1 } else { at };
    let digits = bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    let end = start + digits;
    let leading_zero = digits > 1 && bytes[start] == b'0';
    if digits == 0 || leading_zero || matches!(bytes.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let value = bytes[start..end]
        .iter()
        .try_fold(0u64, |value, digit| value.checked_mul(10)?.checked_add(u64::from(digit - b'0')));
    let scalar = match value {
        Some(value) if !negative => Scalar::Integer(value),
        // `-0` is zero, a whole number from 0 to 2^53 to the full parser too.
        Some(0) => Scalar::Integer(0),
        _ => Scalar::OtherNumber,
    };
    Some((scalar, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the full parser reads from `text`, as an [`Envelope`].
    fn parsed(text: &str) -> Option<Envelope<'static>> {
        json::parse(text).ok().map(|value| from_value(&value))
    }

    #[test]
    fn protocol_2_1_the_envelope_is_scanned_in_place() {
        let text = r#"{"id":"k3f9-17","text":"Hi","time":1678900000123}"#;
        let envelope = scan(text).unwrap();
        assert_eq!(envelope.id, Some(Cow::Borrowed("k3f9-17")));
        assert!(matches!(envelope.text, Some(Cow::Borrowed("Hi"))), "borrowed, not copied");
        assert_eq!((envelope.time, envelope.gap), (Some(1678900000123), false));
    }

    #[test]
    fn protocol_8_2_a_websocket_gap_notice_is_scanned() {
        let envelope = scan(r#"{"gap":true,"since":"k3f9-3","oldest":null}"#).unwrap();
        assert!(envelope.gap);
        assert_eq!((envelope.id, envelope.text), (None, None));
    }

    #[test]
    fn rfc8259_what_the_scan_reads_it_reads_as_the_full_parser_does() {
        for text in [
            r#"{"id":"k3f9-17","text":"Hi","time":1678900000123}"#,
            r#" { "time" : 0 , "text" : "" , "id" : "a" } "#,
            r#"{"id":"a","id":"b","text":"first","text":"second"}"#,
            r#"{"id":1,"text":true,"time":"5","gap":"true"}"#,
            r#"{"time":9007199254740991}"#,
            r#"{"time":9007199254740992}"#,
            r#"{"time":-1,"x":18446744073709551616,"y":false,"z":null}"#,
            r#"{"time":-0}"#,
            r#"{"text":"é € 😀"}"#,
            r#"{}"#,
        ] {
            assert_eq!(scan(text), parsed(text), "{text}");
            assert_eq!(read(text).ok(), parsed(text), "{text}");
        }
    }

    #[test]
    fn rfc8259_what_the_scan_leaves_to_the_full_parser_reads_the_same() {
        for text in [
            r#"{"id":"k3f9-1","text":"a\"b\\c\u000a","time":1}"#,
            r#"{"id":"a","text":"x","extra":{"nested":[1,2]}}"#,
            r#"{"time":1.0}"#,
            r#"{"time":1e3}"#,
            r#"{"time":01}"#,
            r#"[1]"#,
            r#""text""#,
        ] {
            assert_eq!(scan(text), None, "{text}");
            assert_eq!(read(text).ok(), parsed(text), "{text}");
            assert!(parsed(text).is_some(), "{text} is JSON");
        }
    }

    #[test]
    fn rfc8259_every_one_byte_edit_of_an_envelope_reads_as_the_full_parser_reads_it() {
        // A differential test: deleting, replacing or inserting one byte anywhere in these
        // documents, with every byte that means something to JSON, gives inputs on both sides
        // of every rule the scan checks. Wherever the scan answers, the full parser must agree.
        let interesting = b"{}[]\":,\\ \t\n0123456789-+.eEtrufalsn\x01\x7fa";
        for base in [
            r#"{"id":"k3f9-17","text":"1 2","time":1678900000123}"#,
            r#"{"gap":true,"since":"k3f9-3","oldest":null}"#,
            r#"{"id":"a","gap":false,"time":0,"text":""}"#,
        ] {
            let bytes = base.as_bytes();
            let mut edits: Vec<Vec<u8>> = Vec::new();
            for at in 0..=bytes.len() {
                for &byte in interesting {
                    edits.push([&bytes[..at], &[byte], &bytes[at..]].concat());
                    if at < bytes.len() {
                        edits.push([&bytes[..at], &[byte], &bytes[at + 1..]].concat());
                    }
                }
                if at < bytes.len() {
                    edits.push([&bytes[..at], &bytes[at + 1..]].concat());
                }
            }
            for edit in edits {
                let Ok(text) = std::str::from_utf8(&edit) else { continue };
                if let Some(scanned) = scan(text) {
                    assert_eq!(Some(scanned), parsed(text), "{text}");
                }
                assert_eq!(read(text).ok(), parsed(text), "{text}");
            }
        }
    }

    #[test]
    fn rfc8259_malformed_json_is_an_error_not_an_envelope() {
        for text in [
            "",
            "{",
            r#"{"id":"a""#,
            r#"{"id":"a",}"#,
            r#"{"id" "a"}"#,
            r#"{"id":"a"} x"#,
            "{\"text\":\"a\u{1}b\"}",
            r#"{"id":tru}"#,
            r#"{"id":-}"#,
        ] {
            assert_eq!(scan(text), None, "{text:?}");
            assert!(read(text).is_err(), "{text:?}");
        }
    }
}
