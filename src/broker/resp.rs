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
//! all [`encode_command`] does. Replies are read with a [`Decoder`], which resumes where it
//! stopped: give it the bytes received so far; it consumes the whole elements and headers
//! among them and answers with the value once one is complete ("need more" is a normal
//! answer). The next call starts from the bytes it left, so a reply that arrives in a
//! thousand reads is still read once: the work is linear in its size (a cold `XRANGE` of a
//! long history is megabytes). [`decode`] is the one-shot form, for a buffer at hand.
//!
//! Nothing the peer sends can make the decoder allocate more than it has received: a bulk
//! string is copied only once all of it is in the buffer, and an array's element vector
//! grows with the elements that arrive (it starts with room for as many as the bytes at hand
//! could hold, each taking at least 3). [`Limits`] caps what a value may declare: bulk
//! length (Redis's own cap is 512 MB, `proto-max-bulk-len`; ours is smaller and
//! configurable), array length, nesting depth (the decoder's stack of open arrays) and line
//! length (so a missing CRLF is an error, not an ever-growing buffer).
//!
//! Spec: <https://redis.io/docs/latest/develop/reference/protocol-spec/>. RESP3 (`HELLO 3`)
//! adds maps, sets, doubles and push messages; this client never asks for it, so a RESP3
//! type byte is an error.

#![forbid(unsafe_code)]

use std::fmt;

use crate::decimal::push_decimal;

/// The bulk-string limit used unless the caller picks another: larger than any message the
/// server accepts for publishing (64 KiB by default), far below Redis's 512 MB.
pub const DEFAULT_MAX_BULK_BYTES: usize = 16 * 1024 * 1024;

/// Most elements in one array. An `XRANGE ... COUNT 1000` reply is an array of 1000 entries.
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1024 * 1024;

/// Deepest nesting of arrays. The deepest reply this client reads is `EXEC` around `XRANGE`
/// (array of array of array of array); 32 leaves room and keeps the decoder's stack small.
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
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(out, Some(arg));
    }
}

/// Appends one bulk string (`None`: the null bulk string), as [`encode_command`] writes each
/// argument: for a command whose arguments are gathered in pieces (a batch of publishes).
pub fn encode_bulk(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        // "$-1\r\n": the null bulk string.
        None => out.extend_from_slice(b"$-1\r\n"),
        Some(bytes) => {
            out.push(b'$');
            push_decimal(out, bytes.len());
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
            push_decimal(out, values.len());
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
///
/// One-shot: every call starts over. A reader that receives a value in pieces keeps a
/// [`Decoder`] instead, which this is a thin wrapper around, so there is one parser.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    let (used, value) = Decoder::new(*limits).decode(buf)?;
    Ok(value.map(|value| (value, used)))
}

/// A RESP2 decoder that resumes where it stopped, so a value received in many pieces is read
/// once, not once per piece.
///
/// Its state is what [`decode`] would otherwise rebuild on every call: the arrays begun and
/// not complete (a stack, innermost last, each with its elements so far), a bulk string whose
/// `$<len>` line has been read, and how far into an unfinished line the search for its CR has
/// got. The caller owns the bytes: each [`Decoder::decode`] consumes a prefix of what it is
/// given (whole elements and headers), and the next call must be given the bytes it did not
/// consume, followed by whatever arrived since.
///
/// Bounds, as for [`decode`]: [`Limits`] is checked when a value declares itself, before its
/// bytes arrive; nothing is allocated beyond what was received (bulk data is copied only once
/// all of it and its CRLF are there; an array's vector grows with the elements that arrive);
/// the stack is at most [`Limits::max_depth`] deep, and no recursion is involved at all.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Arrays begun and not yet complete, outermost first.
    open_arrays: Vec<OpenArray>,
    /// A bulk string whose length line was consumed: its length.
    bulk_len: Option<usize>,
    /// How many bytes at the start of an unfinished line (after its type byte) are known to
    /// hold no CR or LF, so they are not searched again.
    line_scanned: usize,
    /// Bytes consumed so far into the value being built (0 between values).
    consumed_of_value: usize,
    /// Bytes searched for a line's end or copied as bulk data, for tests to show that the
    /// work is linear in the input, however it is split.
    examined: u64,
    /// Once the bytes are not RESP, the stream is out of step for good: the same error again.
    failed: Option<RespError>,
}

/// An array whose elements are still arriving.
#[derive(Debug)]
struct OpenArray {
    elements: Vec<Value>,
    declared: usize,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            open_arrays: Vec::new(),
            bulk_len: None,
            line_scanned: 0,
            consumed_of_value: 0,
            examined: 0,
            failed: None,
        }
    }

    /// Reads on from where the last call stopped. `buf` starts with the bytes the last call
    /// did not consume. Returns how many bytes of `buf` were consumed and, when they
    /// completed one, the value; it stops right after a value, leaving what follows.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, Option<Value>), RespError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.advance(buf);
        match &result {
            Err(error) => self.failed = Some(error.clone()),
            Ok((used, None)) => self.consumed_of_value += used,
            Ok((_, Some(_))) => self.consumed_of_value = 0,
        }
        result
    }

    /// Whether a value has been begun and not finished: a reply is still on its way.
    pub fn is_mid_value(&self) -> bool {
        !self.open_arrays.is_empty() || self.bulk_len.is_some()
    }

    /// The bytes consumed into the unfinished value (0 between values): with the bytes not
    /// yet consumed, how large the reply has grown.
    pub fn consumed_of_value(&self) -> usize {
        self.consumed_of_value
    }

    /// Bytes searched for line ends or copied as bulk data since this decoder was made.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// One step at a time: a complete scalar (or null or empty array) is placed in the
    /// innermost open array, which closes when full and is placed in turn.
    fn advance(&mut self, buf: &[u8]) -> Result<(usize, Option<Value>), RespError> {
        let mut pos = 0;
        loop {
            let complete = if let Some(len) = self.bulk_len {
                // Nothing is copied until the data and its CRLF are all here.
                let end = pos + len;
                if buf.len() < end + 2 {
                    return Ok((pos, None));
                }
                self.examined += len as u64 + 2;
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::BadLineEnding);
                }
                self.bulk_len = None;
                let value = Value::Bulk(Some(buf[pos..end].to_vec()));
                pos = end + 2;
                value
            } else {
                let Some(&type_byte) = buf.get(pos) else { return Ok((pos, None)) };
                let Some((line, after_line)) = self.line_at(buf, pos + 1)? else { return Ok((pos, None)) };
                let value = match type_byte {
                    // "+<data>\r\n": "The string mustn't contain a CR (\r) or LF (\n)
                    // character". Redis sends ASCII here; anything else is kept as text with
                    // replacement characters.
                    b'+' => Value::Simple(String::from_utf8_lossy(line).into_owned()),
                    b'-' => Value::Error(String::from_utf8_lossy(line).into_owned()),
                    // ":[<+|->]<value>\r\n": a signed, base-10, 64-bit integer.
                    b':' => Value::Integer(parse_integer(line)?),
                    // "$<length>\r\n<data>\r\n"; "$-1\r\n" is the null bulk string.
                    b'$' => match parse_length(line)? {
                        None => Value::Bulk(None),
                        Some(len) if len > self.limits.max_bulk_bytes => return Err(RespError::BulkTooLarge),
                        Some(len) => {
                            self.bulk_len = Some(len);
                            pos = after_line;
                            continue;
                        }
                    },
                    // "*<number-of-elements>\r\n<element-1>...<element-n>"; "*-1\r\n" is the
                    // null array.
                    b'*' => match parse_length(line)? {
                        None => Value::Array(None),
                        Some(len) => {
                            if len > self.limits.max_array_len {
                                return Err(RespError::ArrayTooLong);
                            }
                            if self.open_arrays.len() + 1 > self.limits.max_depth {
                                return Err(RespError::TooDeep);
                            }
                            if len == 0 {
                                Value::Array(Some(Vec::new()))
                            } else {
                                // The shortest value, "+\r\n", takes 3 bytes: room is reserved
                                // only for as many elements as the bytes at hand could hold.
                                let room = (buf.len() - after_line) / 3;
                                let elements = Vec::with_capacity(len.min(room));
                                self.open_arrays.push(OpenArray { elements, declared: len });
                                pos = after_line;
                                continue;
                            }
                        }
                    },
                    other => return Err(RespError::UnknownType(other)),
                };
                pos = after_line;
                value
            };
            if let Some(value) = self.place(complete) {
                return Ok((pos, Some(value)));
            }
        }
    }

    /// Puts a complete value into the innermost open array, closing every array it fills;
    /// the value itself, or the outermost array, once nothing is left open.
    fn place(&mut self, mut value: Value) -> Option<Value> {
        while let Some(open) = self.open_arrays.last_mut() {
            open.elements.push(value);
            if open.elements.len() < open.declared {
                return None;
            }
            let full = self.open_arrays.pop()?;
            value = Value::Array(Some(full.elements));
        }
        Some(value)
    }

    /// The line starting at `pos` without its CRLF, and the position after the CRLF. RESP:
    /// "The \r\n (CRLF) is the protocol's terminator, which always separates its parts." The
    /// search for the CR resumes where the last call's stopped.
    fn line_at<'a>(&mut self, buf: &'a [u8], pos: usize) -> Result<Option<(&'a [u8], usize)>, RespError> {
        let max = self.limits.max_line_bytes;
        let rest = buf.get(pos..).unwrap_or_default();
        let window = &rest[..rest.len().min(max + 2)];
        let from = self.line_scanned.min(window.len());
        let found = window[from..].iter().position(|&b| b == b'\r' || b == b'\n').map(|i| from + i);
        self.examined += (found.map_or(window.len(), |i| i + 1) - from) as u64;
        match found {
            // Longer than the limit before anything ends it: too long, whatever comes next, so
            // that the answer does not depend on where the bytes were split (a decoder fed the
            // first `max + 1` bytes of the line cannot know what follows them).
            Some(i) if i > max => Err(RespError::LineTooLong),
            Some(i) if window[i] == b'\n' => Err(RespError::BadLineEnding),
            Some(i) => match window.get(i + 1) {
                Some(b'\n') => {
                    self.line_scanned = 0;
                    Ok(Some((&rest[..i], pos + i + 2)))
                }
                Some(_) => Err(RespError::BadLineEnding),
                None => {
                    // A CR at the very end: its LF may be next. Look at the CR again then.
                    self.line_scanned = i;
                    Ok(None)
                }
            },
            None if rest.len() > max => Err(RespError::LineTooLong),
            None => {
                self.line_scanned = window.len();
                Ok(None)
            }
        }
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

    /// Feeds `pieces` to one [`Decoder`] as a connection would: each piece is appended to
    /// the bytes not consumed yet, and what the decoder consumes is dropped. The first value
    /// (or error) and the total number of bytes consumed; `Ok(None)` if the pieces run out.
    fn decode_in_pieces(pieces: &[&[u8]], limits: &Limits) -> (Result<Option<(Value, usize)>, RespError>, Decoder) {
        let mut decoder = Decoder::new(*limits);
        let mut unconsumed = Vec::new();
        let mut consumed = 0;
        for piece in pieces {
            unconsumed.extend_from_slice(piece);
            match decoder.decode(&unconsumed) {
                Ok((used, Some(value))) => return (Ok(Some((value, consumed + used))), decoder),
                Ok((used, None)) => {
                    unconsumed.drain(..used);
                    consumed += used;
                }
                Err(error) => return (Err(error), decoder),
            }
        }
        (Ok(None), decoder)
    }

    /// Decodes `bytes` whole, then checks every strict prefix is "need more", and that the
    /// resuming decoder gives the same value from two pieces split anywhere and from single
    /// bytes.
    fn decodes_to(bytes: &[u8], expected: Value) {
        let whole = Ok(Some((expected, bytes.len())));
        assert_eq!(decode_all(bytes), whole, "{:?}", String::from_utf8_lossy(bytes));
        for split in 0..bytes.len() {
            assert_eq!(decode_all(&bytes[..split]), Ok(None), "prefix of {split} bytes");
            let (head, tail) = bytes.split_at(split);
            assert_eq!(decode_in_pieces(&[head, tail], &Limits::default()).0, whole, "split at {split}");
        }
        let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_in_pieces(&single_bytes, &Limits::default()).0, whole, "byte by byte");
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
    fn lengths_are_written_in_decimal_whatever_their_number_of_digits() {
        for length in [0, 9, 10, 99, 100, 12_345, 1 << 20] {
            let mut out = Vec::new();
            encode_command(&mut out, &[&vec![b'x'; length]]);
            let head = format!("*1\r\n${length}\r\n");
            assert!(out.starts_with(head.as_bytes()), "{length}");
            assert_eq!(out.len(), head.len() + length + 2);
        }
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
    fn a_line_past_the_limit_is_too_long_whatever_ends_it_however_it_is_split() {
        // Found by the fuzz target: a bare LF just past the limit was a bad line ending when
        // the line came whole, but too long when its first bytes came alone.
        let limits = Limits { max_bulk_bytes: 4, max_array_len: 2, max_depth: 2, max_line_bytes: 8 };
        for ending in [&b"\n"[..], b"\rX", b"\r\n"] {
            let line = [&b"+123456789"[..], ending].concat();
            assert_eq!(decode(&line, &limits), Err(RespError::LineTooLong), "{ending:?} whole");
            for split in 1..line.len() {
                let mut decoder = Decoder::new(limits);
                let first = decoder.decode(&line[..split]);
                let answer = match first {
                    Ok((used, None)) => decoder.decode(&line[used..]).map(|(_, value)| value),
                    other => other.map(|(_, value)| value),
                };
                assert_eq!(answer, Err(RespError::LineTooLong), "{ending:?} split at {split}");
            }
        }
    }

    #[test]
    fn a_huge_declared_array_reserves_nothing_until_its_bytes_arrive() {
        // A million elements declared, four bytes received: "need more", not a 32 MB vector.
        assert_eq!(decode_all(b"*1000000\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn a_reply_split_at_every_byte_resumes_to_the_same_value() {
        // An EXEC around XRANGE and XINFO-like fields: nesting, nulls, empty bulk strings,
        // CRLF inside bulk data, all split between any two bytes and fed a byte at a time.
        let reply = b"*2\r\n*2\r\n*2\r\n$3\r\n1-1\r\n*4\r\n$4\r\ntext\r\n$4\r\na\r\nb\r\n$4\r\nprev\r\n$3\r\n0-0\r\n\
                      *2\r\n$3\r\n1-2\r\n*2\r\n$4\r\ntext\r\n$0\r\n\r\n\
                      *6\r\n$6\r\nlength\r\n:2\r\n$11\r\nfirst-entry\r\n$-1\r\n+OK\r\n*-1\r\n";
        let (expected, used) = decode_all(reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        decodes_to(reply, expected.clone());
        // Three pieces, both splits anywhere.
        for first in 0..reply.len() {
            for second in first..reply.len() {
                let pieces = [&reply[..first], &reply[first..second], &reply[second..]];
                assert_eq!(decode_in_pieces(&pieces, &Limits::default()).0, Ok(Some((expected.clone(), used))));
            }
        }
    }

    #[test]
    fn a_resumed_decoder_stops_after_a_value_and_reads_the_next_from_what_it_left() {
        let mut decoder = Decoder::new(Limits::default());
        assert_eq!(decoder.decode(b"*2\r\n:1\r\n"), Ok((8, None)));
        assert!(decoder.is_mid_value());
        assert_eq!(decoder.consumed_of_value(), 8);
        assert_eq!(
            decoder.decode(b":2\r\n+next\r\n"),
            Ok((4, Some(Value::Array(Some(vec![Value::Integer(1), Value::Integer(2)])))))
        );
        assert!(!decoder.is_mid_value());
        assert_eq!(decoder.consumed_of_value(), 0);
        assert_eq!(decoder.decode(b"+next\r\n"), Ok((7, Some(Value::Simple("next".into())))));
        // A bulk string's header is consumed; its data waits, unconsumed, until all is there.
        assert_eq!(decoder.decode(b"$5\r\nhel"), Ok((4, None)));
        assert!(decoder.is_mid_value());
        assert_eq!(decoder.decode(b"hello\r"), Ok((0, None)));
        assert_eq!(decoder.decode(b"hello\r\n"), Ok((7, Some(bulk(b"hello")))));
    }

    #[test]
    fn a_decoder_that_failed_keeps_failing() {
        let mut decoder = Decoder::new(Limits::default());
        assert_eq!(decoder.decode(b"*2\r\n!"), Ok((4, None)));
        assert_eq!(decoder.decode(b"!\r\n"), Err(RespError::UnknownType(b'!')));
        assert_eq!(decoder.decode(b"+OK\r\n"), Err(RespError::UnknownType(b'!')), "out of step for good");
    }

    #[test]
    fn errors_and_limits_are_the_same_however_the_bytes_are_split() {
        let limits = Limits { max_bulk_bytes: 4, max_array_len: 2, max_depth: 2, max_line_bytes: 8 };
        for bad in [
            &b"$5\r\n"[..],
            b"*3\r\n",
            b"*1\r\n*1\r\n*1\r\n",
            b"+123456789",
            b"+123456789\r\n",
            b"*2\r\n+1234\r5\r\n",
            b"*1\r\n$3\r\nhello\r\n",
            b"*2\r\n:1\r\n:x\r\n",
            b"*1\r\n%1\r\n",
        ] {
            let whole = decode(bad, &limits);
            assert!(whole.is_err(), "{:?}", String::from_utf8_lossy(bad));
            for split in 0..=bad.len() {
                let (head, tail) = bad.split_at(split);
                assert_eq!(decode_in_pieces(&[head, tail], &limits).0, whole, "split at {split}");
            }
            let single_bytes: Vec<&[u8]> = bad.chunks(1).collect();
            assert_eq!(decode_in_pieces(&single_bytes, &limits).0, whole);
        }
    }

    #[test]
    fn a_large_reply_fed_in_small_pieces_is_decoded_in_work_linear_in_its_size() {
        // An XRANGE-like array of 20,000 bulk strings (about 700 KB), arriving 100 bytes at a
        // time: the resumed decoder examines each byte about once. Starting over on every
        // piece, as a one-shot decoder must, would examine the buffer again each time.
        let mut reply = Vec::new();
        let texts: Vec<Vec<u8>> =
            (0..20_000).map(|i| format!("{i:05} a message of some length").into_bytes()).collect();
        encode_command(&mut reply, &texts.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let pieces: Vec<&[u8]> = reply.chunks(100).collect();
        let (result, decoder) = decode_in_pieces(&pieces, &Limits::default());
        let expected = Value::Array(Some(texts.iter().map(|t| bulk(t)).collect()));
        assert_eq!(result, Ok(Some((expected, reply.len()))));
        // Each byte once, plus a few bytes per piece: a line split by a piece is searched on
        // from where it stopped, and a CR at a piece's end is looked at twice.
        let size = reply.len() as u64;
        assert!(
            decoder.examined() <= size + 2 * pieces.len() as u64,
            "{} bytes examined for {size}",
            decoder.examined()
        );
        // What starting over would cost, measured with the same counter on a 50th of the
        // pieces: already more than ten times the size.
        let mut restarted = 0;
        for received in (100..reply.len()).step_by(100 * 50) {
            let mut fresh = Decoder::new(Limits::default());
            assert_eq!(fresh.decode(&reply[..received]).map(|(_, value)| value), Ok(None));
            restarted += fresh.examined();
        }
        assert!(restarted > 10 * size, "starting over examined {restarted} bytes for {size}");
    }

    #[test]
    fn a_huge_declared_bulk_string_waits_without_copying_and_counts_as_consumed_of_the_value() {
        let mut decoder = Decoder::new(Limits::default());
        let header = format!("*1\r\n${}\r\n", DEFAULT_MAX_BULK_BYTES);
        assert_eq!(decoder.decode(header.as_bytes()), Ok((header.len(), None)));
        assert_eq!(decoder.consumed_of_value(), header.len());
        let partial = vec![b'x'; 64 * 1024];
        assert_eq!(decoder.decode(&partial), Ok((0, None)));
        assert_eq!(decoder.examined(), 11, "the data is not looked at before it is all there");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_past_the_limit() {
        let deep = b"*1\r\n".repeat(10_000);
        assert_eq!(decode_all(&deep), Err(RespError::TooDeep));
    }
}
