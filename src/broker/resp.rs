//! RESP2, the Redis serialization protocol: a sans-I/O codec.
//!
//! Theory of operation. Everything a Redis server says is one *value*, and the first byte of
//! a value names its type (RESP spec, "RESP protocol description": "The first byte in an
//! RESP-serialized payload always identifies its type"). RESP2 has five:
//!
//! | byte | type | wire form | [`Value`] |
//! |---|---|---|---|
//! | `+` | simple string | `+OK\r\n` | [`Value::Simple`] |
//! | `-` | simple error | `-ERR unknown command\r\n` | [`Value::Error`] |
//! | `:` | integer | `:1000\r\n` | [`Value::Integer`] |
//! | `$` | bulk string | `$5\r\nhello\r\n`, null: `$-1\r\n` | [`Value::Bulk`] |
//! | `*` | array | `*2\r\n` then two values, null: `*-1\r\n` | [`Value::Array`] |
//!
//! A client sends every command as an array of bulk strings ("Sending commands to a Redis
//! server": "Clients send commands to a Redis server as an array of bulk strings"), which is
//! all [`encode_command`] does. Replies are read with [`decode`], which is incremental in the
//! way `httparse` is: give it the bytes received so far; it answers `Ok(None)` when they do not
//! hold a whole value yet ("need more", a normal answer), or the value and how many bytes it
//! used. An incomplete value is parsed again from its start once more bytes arrive. That is
//! cheap here because every reply the broker asks for is bounded (`XRANGE ... COUNT n`).
//!
//! Nothing the peer sends can make the decoder allocate more than it has received: a bulk
//! string is copied only once all of it is in the buffer, and an array's element vector is
//! reserved only when the buffer could hold that many elements (each takes at least 3
//! bytes). [`Limits`] caps what a complete value may declare: bulk length (Redis's own cap is
//! 512 MB, `proto-max-bulk-len`; ours is smaller and configurable), array length, nesting
//! depth (so the recursive parser cannot overflow the stack) and line length (so a missing
//! CRLF is an error, not an ever-growing buffer).
//!
//! Spec: <https://redis.io/docs/latest/develop/reference/protocol-spec/>. RESP3 (`HELLO 3`)
//! adds maps, sets, doubles and push messages; this client never asks for it, so a RESP3
//! type byte is an error.

#![forbid(unsafe_code)]

use std::fmt;

/// The bulk-string limit used unless the caller picks another: larger than any message the
/// server accepts for publishing (64 KiB by default), far below Redis's 512 MB.
pub const DEFAULT_MAX_BULK_BYTES: usize = 16 * 1024 * 1024;

/// Most elements in one array. An `XRANGE ... COUNT 1000` reply is an array of 1000 entries.
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1024 * 1024;

/// Deepest nesting of arrays. The deepest reply this client reads is `EXEC` around `XRANGE`
/// (array of array of array of array); 32 leaves room and keeps recursion shallow.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// Longest line of a simple string, error or integer. Redis's error messages are short lines.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// One RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`: short text without CR or LF.
    Simple(String),
    /// `-ERR ...`: the server refused the command. By convention the first word is a code
    /// (`ERR`, `WRONGTYPE`, `NOSCRIPT`).
    Error(String),
    /// `:42`: a signed 64-bit integer.
    Integer(i64),
    /// `$5 hello`: binary-safe bytes; `None` is the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`: values of any type, nested; `None` is the null array `*-1`.
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk string, or the text of a simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(bytes)) => Some(bytes),
            Value::Simple(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// [`Value::as_bytes`] as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// The elements of a (non-null) array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(values)) => Some(values),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// Null bulk string or null array: "the absence of a value".
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Bulk(None) | Value::Array(None))
    }
}

/// What a value may declare before the decoder refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_bulk_bytes: usize,
    pub max_array_len: usize,
    pub max_depth: usize,
    pub max_line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            max_array_len: DEFAULT_MAX_ARRAY_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// Why bytes are not RESP2. Each is a fault of the peer; the connection cannot be trusted
/// after one (the next value's start is unknown) and must be closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// The first byte is none of `+ - : $ *`.
    UnknownType(u8),
    /// A bulk or array length that is not `-1` or a decimal number that fits.
    BadLength,
    /// An integer that is not a decimal `i64`.
    BadInteger,
    /// A CR not followed by LF, a bare LF inside a line, or bulk data not followed by CRLF.
    BadLineEnding,
    /// A line longer than [`Limits::max_line_bytes`] without its CRLF.
    LineTooLong,
    /// A bulk string declared longer than [`Limits::max_bulk_bytes`].
    BulkTooLarge,
    /// An array declared longer than [`Limits::max_array_len`].
    ArrayTooLong,
    /// Arrays nested deeper than [`Limits::max_depth`].
    TooDeep,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(byte) => write!(f, "unknown RESP type byte 0x{byte:02x}"),
            RespError::BadLength => f.write_str("malformed RESP length"),
            RespError::BadInteger => f.write_str("malformed RESP integer"),
            RespError::BadLineEnding => f.write_str("RESP line not terminated by CRLF"),
            RespError::LineTooLong => f.write_str("RESP line too long"),
            RespError::BulkTooLarge => f.write_str("RESP bulk string over the limit"),
            RespError::ArrayTooLong => f.write_str("RESP array over the limit"),
            RespError::TooDeep => f.write_str("RESP arrays nested too deeply"),
        }
    }
}

impl std::error::Error for RespError {}

/// Appends one command, an array of bulk strings: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` for
/// each argument. Arguments are binary-safe: a message text goes out as it is.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(out, Some(arg));
    }
}

fn encode_bulk(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        // "$-1\r\n": the null bulk string.
        None => out.extend_from_slice(b"$-1\r\n"),
        Some(bytes) => {
            out.push(b'$');
            out.extend_from_slice(bytes.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends any value (what a server sends; tests and the fuzz target use it to check that
/// decoding what was encoded gives the value back). Simple strings and errors must not hold
/// CR or LF: RESP cannot carry them there, and a decoded value never does.
pub fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Simple(text) => {
            out.push(b'+');
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Value::Error(text) => {
            out.push(b'-');
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Value::Integer(n) => {
            out.push(b':');
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Value::Bulk(bytes) => encode_bulk(out, bytes.as_deref()),
        Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Value::Array(Some(values)) => {
            out.push(b'*');
            out.extend_from_slice(values.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            for value in values {
                encode(out, value);
            }
        }
    }
}

/// Decodes the value at the start of `buf`: `Ok(None)` until all of it has arrived, then the
/// value and the number of bytes it took. Bytes after it (the next pipelined reply, the next
/// pub/sub message) are left for the next call.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    value_at(buf, 0, 0, limits)
}

/// The value starting at `pos`, inside `depth` arrays; the value and the position after it.
fn value_at(buf: &[u8], pos: usize, depth: usize, limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    let Some(&type_byte) = buf.get(pos) else { return Ok(None) };
    let Some((line, after_line)) = line_at(buf, pos + 1, limits)? else { return Ok(None) };
    match type_byte {
        // "+<data>\r\n": "The string mustn't contain a CR (\r) or LF (\n) character". Redis
        // sends ASCII here; anything else is kept as text with replacement characters.
        b'+' => Ok(Some((Value::Simple(String::from_utf8_lossy(line).into_owned()), after_line))),
        b'-' => Ok(Some((Value::Error(String::from_utf8_lossy(line).into_owned()), after_line))),
        // ":[<+|->]<value>\r\n": a signed, base-10, 64-bit integer.
        b':' => Ok(Some((Value::Integer(parse_integer(line)?), after_line))),
        // "$<length>\r\n<data>\r\n"; "$-1\r\n" is the null bulk string.
        b'$' => {
            let Some(len) = parse_length(line)? else { return Ok(Some((Value::Bulk(None), after_line))) };
            if len > limits.max_bulk_bytes {
                return Err(RespError::BulkTooLarge);
            }
            // Nothing is copied until the data and its CRLF are all here.
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::BadLineEnding);
            }
            Ok(Some((Value::Bulk(Some(buf[after_line..end].to_vec())), end + 2)))
        }
        // "*<number-of-elements>\r\n<element-1>...<element-n>"; "*-1\r\n" is the null array.
        b'*' => {
            let Some(len) = parse_length(line)? else { return Ok(Some((Value::Array(None), after_line))) };
            if len > limits.max_array_len {
                return Err(RespError::ArrayTooLong);
            }
            if depth + 1 > limits.max_depth {
                return Err(RespError::TooDeep);
            }
            // The shortest value, "+\r\n", takes 3 bytes: fewer than 3 per element left means
            // the array cannot be complete yet, so nothing is reserved for it.
            if (buf.len() - after_line) / 3 < len {
                return Ok(None);
            }
            let mut values = Vec::with_capacity(len);
            let mut next = after_line;
            for _ in 0..len {
                let Some((value, after)) = value_at(buf, next, depth + 1, limits)? else { return Ok(None) };
                values.push(value);
                next = after;
            }
            Ok(Some((Value::Array(Some(values)), next)))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

/// The line starting at `pos` without its CRLF, and the position after the CRLF. RESP: "The
/// \r\n (CRLF) is the protocol's terminator, which always separates its parts."
fn line_at<'a>(buf: &'a [u8], pos: usize, limits: &Limits) -> Result<Option<(&'a [u8], usize)>, RespError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let window = &rest[..rest.len().min(limits.max_line_bytes + 2)];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if window[i] == b'\n' => Err(RespError::BadLineEnding),
        Some(i) => match window.get(i + 1) {
            Some(b'\n') if i <= limits.max_line_bytes => Ok(Some((&rest[..i], pos + i + 2))),
            Some(b'\n') => Err(RespError::LineTooLong),
            Some(_) => Err(RespError::BadLineEnding),
            None if rest.len() > window.len() => Err(RespError::LineTooLong),
            None => Ok(None),
        },
        None if rest.len() > limits.max_line_bytes => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

/// A bulk or array length: `-1` (null, `None`) or decimal digits.
fn parse_length(line: &[u8]) -> Result<Option<usize>, RespError> {
    if line == b"-1" {
        return Ok(None);
    }
    if line.is_empty() || !line.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadLength);
    }
    // Only ASCII digits, so the text is UTF-8; an overflow is a bad length.
    std::str::from_utf8(line).ok().and_then(|text| text.parse().ok()).map(Some).ok_or(RespError::BadLength)
}

/// `[+|-]digits` as an `i64`.
fn parse_integer(line: &[u8]) -> Result<i64, RespError> {
    let digits = match line.first() {
        Some(b'+' | b'-') => &line[1..],
        _ => line,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadInteger);
    }
    let text = std::str::from_utf8(line).map_err(|_| RespError::BadInteger)?;
    // `i64::from_str` takes the optional sign itself and reports overflow.
    text.parse().map_err(|_| RespError::BadInteger)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::Bulk(Some(bytes.to_vec()))
    }

    fn decode_all(bytes: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
        decode(bytes, &Limits::default())
    }

    /// Decodes `bytes` whole, then checks every strict prefix is "need more".
    fn decodes_to(bytes: &[u8], expected: Value) {
        assert_eq!(decode_all(bytes), Ok(Some((expected, bytes.len()))), "{:?}", String::from_utf8_lossy(bytes));
        for split in 0..bytes.len() {
            assert_eq!(decode_all(&bytes[..split]), Ok(None), "prefix of {split} bytes");
        }
    }

    #[test]
    fn simple_strings_errors_and_integers_are_one_line() {
        decodes_to(b"+OK\r\n", Value::Simple("OK".into()));
        decodes_to(b"+\r\n", Value::Simple(String::new()));
        decodes_to(b"-ERR unknown command 'asdf'\r\n", Value::Error("ERR unknown command 'asdf'".into()));
        decodes_to(b":1000\r\n", Value::Integer(1000));
        decodes_to(b":-52\r\n", Value::Integer(-52));
        decodes_to(b":+7\r\n", Value::Integer(7));
        decodes_to(b":9223372036854775807\r\n", Value::Integer(i64::MAX));
        decodes_to(b":-9223372036854775808\r\n", Value::Integer(i64::MIN));
    }

    #[test]
    fn bulk_strings_are_binary_safe_and_may_be_empty_or_null() {
        decodes_to(b"$5\r\nhello\r\n", bulk(b"hello"));
        decodes_to(b"$0\r\n\r\n", bulk(b""));
        decodes_to(b"$-1\r\n", Value::Bulk(None));
        // CR, LF and NUL inside the data are data: the length says where it ends.
        decodes_to(b"$6\r\na\r\nb\0c\r\n", bulk(b"a\r\nb\0c"));
    }

    #[test]
    fn arrays_hold_any_type_nested_and_may_be_empty_or_null() {
        decodes_to(b"*0\r\n", Value::Array(Some(vec![])));
        decodes_to(b"*-1\r\n", Value::Array(None));
        decodes_to(b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n", Value::Array(Some(vec![bulk(b"hello"), bulk(b"world")])));
        // The spec's nested example: an array of three integers and an array of a simple
        // string and an error.
        decodes_to(
            b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
            Value::Array(Some(vec![
                Value::Array(Some(vec![Value::Integer(1), Value::Integer(2), Value::Integer(3)])),
                Value::Array(Some(vec![Value::Simple("Hello".into()), Value::Error("World".into())])),
            ])),
        );
        // Null elements inside an array (the spec's "*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld").
        decodes_to(
            b"*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld\r\n",
            Value::Array(Some(vec![bulk(b"hello"), Value::Bulk(None), bulk(b"world")])),
        );
        decodes_to(b"*1\r\n*-1\r\n", Value::Array(Some(vec![Value::Array(None)])));
    }

    #[test]
    fn an_xrange_reply_decodes_at_every_split_position() {
        // What `XRANGE realtime:news - + COUNT 2` answers: [[id, [field, value]], ...].
        let reply = b"*2\r\n*2\r\n$15\r\n1700000000000-0\r\n*2\r\n$4\r\ntext\r\n$2\r\nhi\r\n\
                      *2\r\n$15\r\n1700000000000-1\r\n*2\r\n$4\r\ntext\r\n$0\r\n\r\n";
        let entry = |id: &[u8], text: &[u8]| {
            Value::Array(Some(vec![bulk(id), Value::Array(Some(vec![bulk(b"text"), bulk(text)]))]))
        };
        decodes_to(reply, Value::Array(Some(vec![entry(b"1700000000000-0", b"hi"), entry(b"1700000000000-1", b"")])));
    }

    #[test]
    fn decode_reports_what_it_consumed_and_leaves_the_next_value() {
        let two = b"+OK\r\n:1\r\n";
        let (first, used) = decode_all(two).unwrap().unwrap();
        assert_eq!((first, used), (Value::Simple("OK".into()), 5));
        assert_eq!(decode_all(&two[used..]), Ok(Some((Value::Integer(1), 4))));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"LLEN", b"mylist"]);
        assert_eq!(out, b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n");
        out.clear();
        encode_command(&mut out, &[b"PUBLISH", b"ch", b"a\r\nb"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n");
    }

    #[test]
    fn encoding_then_decoding_gives_the_value_back() {
        let value = Value::Array(Some(vec![
            Value::Simple("OK".into()),
            Value::Error("NOSCRIPT No matching script".into()),
            Value::Integer(-3),
            bulk(b"\r\n\0"),
            Value::Bulk(None),
            Value::Array(None),
            Value::Array(Some(vec![Value::Array(Some(vec![]))])),
        ]));
        let mut out = Vec::new();
        encode(&mut out, &value);
        decodes_to(&out, value);
    }

    #[test]
    fn an_unknown_type_byte_is_refused() {
        assert_eq!(decode_all(b"!5\r\nhello\r\n"), Err(RespError::UnknownType(b'!')));
        // RESP3 types are unknown to a RESP2 client.
        assert_eq!(decode_all(b"%1\r\n+a\r\n+b\r\n"), Err(RespError::UnknownType(b'%')));
        assert_eq!(decode_all(b"_\r\n"), Err(RespError::UnknownType(b'_')));
        assert_eq!(decode_all(b"PONG\r\n"), Err(RespError::UnknownType(b'P')));
    }

    #[test]
    fn malformed_lengths_are_refused() {
        for bad in
            [&b"$\r\n"[..], b"$-2\r\n", b"$x\r\n", b"$+5\r\n", b"$ 5\r\n", b"*-0x\r\n", b"*99999999999999999999999\r\n"]
        {
            assert_eq!(decode_all(bad), Err(RespError::BadLength), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn malformed_integers_are_refused() {
        for bad in [&b":\r\n"[..], b":-\r\n", b":1.5\r\n", b":9223372036854775808\r\n", b":--1\r\n"] {
            assert_eq!(decode_all(bad), Err(RespError::BadInteger), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_line_must_end_in_crlf() {
        assert_eq!(decode_all(b"+OK\n"), Err(RespError::BadLineEnding));
        assert_eq!(decode_all(b"+O\rK\r\n"), Err(RespError::BadLineEnding));
        // Bulk data must be followed by exactly CRLF: a wrong length shows up here.
        assert_eq!(decode_all(b"$3\r\nhello\r\n"), Err(RespError::BadLineEnding));
        assert_eq!(decode_all(b"$5\r\nhelloXY"), Err(RespError::BadLineEnding));
        // A CR at the very end may be followed by its LF: not yet an error.
        assert_eq!(decode_all(b"+OK\r"), Ok(None));
    }

    #[test]
    fn limits_refuse_what_a_value_declares_before_it_arrives() {
        let limits = Limits { max_bulk_bytes: 4, max_array_len: 2, max_depth: 2, max_line_bytes: 8 };
        assert_eq!(decode(b"$5\r\n", &limits), Err(RespError::BulkTooLarge));
        assert_eq!(decode(b"$4\r\nfour\r\n", &limits), Ok(Some((bulk(b"four"), 10))));
        assert_eq!(decode(b"*3\r\n", &limits), Err(RespError::ArrayTooLong));
        assert_eq!(decode(b"*1\r\n*1\r\n*1\r\n", &limits), Err(RespError::TooDeep));
        assert_eq!(decode(b"*1\r\n*1\r\n:1\r\n", &limits).unwrap().unwrap().1, 12);
        assert_eq!(decode(b"+123456789", &limits), Err(RespError::LineTooLong));
        assert_eq!(decode(b"+12345678\r\n", &limits), Ok(Some((Value::Simple("12345678".into()), 11))));
        assert_eq!(decode(b"+123456789\r\n", &limits), Err(RespError::LineTooLong));
    }

    #[test]
    fn a_huge_declared_array_reserves_nothing_until_its_bytes_arrive() {
        // A million elements declared, four bytes received: "need more", not a 32 MB vector.
        assert_eq!(decode_all(b"*1000000\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_past_the_limit() {
        let deep = b"*1\r\n".repeat(10_000);
        assert_eq!(decode_all(&deep), Err(RespError::TooDeep));
    }
}
