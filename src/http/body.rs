//! Request body decoding: Content-Length and chunked (RFC 9112 §6.2, §6.3, §7.1).
//!
//! # Theory of operation
//!
//! Once the head is parsed, [`super::request::Request::body_framing`] says how the body is
//! delimited, and a [`BodyDecoder`] reads it from whatever bytes arrive after the head. The
//! caller feeds it the bytes it has; the decoder appends body bytes to a `Vec`, reports how
//! many input bytes it used, and says when the body is complete. Bytes after the body (the
//! next pipelined request) are never consumed.
//!
//! - A Content-Length body is the next N bytes (RFC 9112 §6.3 rule 6).
//! - A chunked body (RFC 9112 §7.1) is a series of chunks, each a hexadecimal size line and
//!   that many bytes of data followed by CRLF, ended by a chunk of size zero, an optional
//!   trailer section and an empty line:
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-data     = 1*OCTET ; a sequence of chunk-size octets
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Unlike the head parser, the chunked decoder is a true state machine: a chunked body can
//! be far larger than any buffer we want to keep, so the decoder never re-reads a byte. It
//! remembers where in the grammar it stopped (`ChunkState`), and one byte at a time is as
//! good as the whole body at once. Chunk data is copied in runs, not byte by byte.
//!
//! Chunk extensions are checked against the grammar and then ignored (RFC 9112 §7.1.1: "A
//! recipient MUST ignore unrecognized chunk extensions"). Trailer fields are checked with the
//! same field-line parser as the head and then discarded (§7.1.2: a recipient "MAY
//! selectively retain or discard the received trailer fields").
//!
//! Every size a peer controls is bounded: the body by `max_body` (checked against the
//! chunk-size before any of that chunk's data is stored), a chunk-size line by
//! [`MAX_CHUNK_LINE_BYTES`], the trailer by [`MAX_TRAILER_BYTES`] and [`MAX_TRAILER_FIELDS`].
//!
//! After an error the decoder's state is meaningless: the caller answers and closes the
//! connection, since it can no longer tell where the body ends.

use super::error::HttpError;
use super::grammar::{is_field_value_byte, is_tchar, parse_field_line, Parsed};

/// The longest chunk-size line, extensions included, CRLF excluded. The size itself needs at
/// most 16 hex digits; extensions are rare (RFC 9112 §7.1.1 mentions long-poll metadata and
/// padding) and short. RFC 9112 §7.1.1: a server "ought to limit the total length of chunk
/// extensions received in a request". 4 KiB is generous for all of that.
pub const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;

/// The most bytes of trailer fields we read before giving up. Trailers are discarded, so
/// they only need to be checked; 8 KiB is half the head limit, plenty for checksums and
/// signatures.
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// The most trailer field lines. Trailers carry a few fields of metadata; 32 is plenty.
pub const MAX_TRAILER_FIELDS: usize = 32;

/// How a request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither Content-Length nor Transfer-Encoding (rule 7).
    None,
    /// Exactly this many bytes (rule 6).
    Length(u64),
    /// The chunked transfer coding (rule 4).
    Chunked,
}

/// What one call to [`BodyDecoder::decode`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used; the caller drops them from its buffer.
    pub consumed: usize,
    /// The body is complete; input beyond `consumed` belongs to whatever comes next.
    pub done: bool,
}

/// Reads one request body, incrementally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyDecoder {
    state: BodyState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BodyState {
    /// A Content-Length body with this many bytes still to come.
    Length { remaining: u64 },
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// The body is complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing` that may not exceed `max_body` bytes. A
    /// Content-Length over the limit is refused here, before any of the body is read, so the
    /// client learns at once (and a `100 Continue` is never sent for it).
    pub fn new(framing: BodyFraming, max_body: usize) -> Result<BodyDecoder, HttpError> {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => BodyState::Done,
            BodyFraming::Length(length) if length > max_body as u64 => return Err(HttpError::BodyTooLarge),
            BodyFraming::Length(length) => BodyState::Length { remaining: length },
            BodyFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new(max_body)),
        };
        Ok(BodyDecoder { state })
    }

    /// Decodes what it can from `input`, appending body bytes to `body`; returns bytes
    /// consumed and whether the body is complete. Never appends past `max_body`: a body that
    /// would grow beyond it is [`HttpError::BodyTooLarge`] (413) instead.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<Progress, HttpError> {
        match &mut self.state {
            BodyState::Done => Ok(Progress { consumed: 0, done: true }),
            BodyState::Length { remaining } => {
                let taken = take(*remaining, input.len());
                body.extend_from_slice(&input[..taken]);
                // `taken <= remaining` by construction of `take`.
                *remaining -= taken as u64;
                let done = *remaining == 0;
                if done {
                    self.state = BodyState::Done;
                }
                Ok(Progress { consumed: taken, done })
            }
            BodyState::Chunked(chunked) => {
                let progress = chunked.decode(input, body)?;
                if progress.done {
                    self.state = BodyState::Done;
                }
                Ok(progress)
            }
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }
}

/// How many of `available` bytes to take when `remaining` are wanted.
fn take(remaining: u64, available: usize) -> usize {
    // A `remaining` too large for usize is certainly more than `available`.
    usize::try_from(remaining).map_or(available, |remaining| remaining.min(available))
}

/// Where the chunked decoder is in the grammar of RFC 9112 §7.1, named after the part it is
/// reading. States from `SizeStart` to `ExtQuotedPair` are inside a chunk-size line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// At the start of a chunk-size line: a HEXDIG must come.
    SizeStart,
    /// Inside the chunk-size: more HEXDIGs, or the end of the size.
    Size,
    /// BWS after the size or after an extension value: only more BWS or ";" may follow.
    ExtBws,
    /// After ";": BWS, then the chunk-ext-name.
    ExtNameStart,
    /// Inside a chunk-ext-name (a token).
    ExtName,
    /// BWS after a chunk-ext-name: "=" or the next ";" must follow.
    ExtNameBws,
    /// After "=": BWS, then a token or a quoted-string.
    ExtValueStart,
    /// Inside a token chunk-ext-val.
    ExtToken,
    /// Inside a quoted-string chunk-ext-val.
    ExtQuoted,
    /// After a backslash inside a quoted-string (quoted-pair).
    ExtQuotedPair,
    /// After the closing DQUOTE of a quoted-string.
    ExtQuotedEnd,
    /// A CR ended the chunk-size line; the LF must follow.
    SizeLineLf,
    /// Inside chunk-data, with this many bytes still to come.
    Data { remaining: u64 },
    /// After chunk-data: its CR must follow.
    DataCr,
    /// After chunk-data and CR: the LF must follow.
    DataLf,
    /// After the last-chunk line, at the start of a trailer field line or the final CRLF.
    TrailerLineStart,
    /// Inside a trailer field line, collecting it until its LF.
    TrailerLine,
    /// The CR of the final empty line arrived; its LF must follow.
    FinalLf,
    /// The chunked body is complete.
    Done,
}

impl ChunkState {
    fn is_in_size_line(self) -> bool {
        use ChunkState::*;
        matches!(
            self,
            SizeStart
                | Size
                | ExtBws
                | ExtNameStart
                | ExtName
                | ExtNameBws
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtQuotedPair
                | ExtQuotedEnd
        )
    }
}

/// The chunked transfer coding decoder (RFC 9112 §7.1.3, as a state machine).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChunkedDecoder {
    state: ChunkState,
    /// The chunk-size read so far on the current size line.
    size: u64,
    /// Bytes of the current chunk-size line, against [`MAX_CHUNK_LINE_BYTES`].
    size_line_bytes: usize,
    /// Body bytes decoded so far, against `max_body`.
    decoded: usize,
    max_body: usize,
    /// The trailer field line being collected, so that it can be checked by the same
    /// field-line parser as the head once its LF arrives.
    trailer_line: Vec<u8>,
    /// Bytes of trailer section so far, against [`MAX_TRAILER_BYTES`].
    trailer_bytes: usize,
    /// Trailer field lines so far, against [`MAX_TRAILER_FIELDS`].
    trailer_fields: usize,
}

impl ChunkedDecoder {
    fn new(max_body: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::SizeStart,
            size: 0,
            size_line_bytes: 0,
            decoded: 0,
            max_body,
            trailer_line: Vec::new(),
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<Progress, HttpError> {
        let mut position = 0;
        while position < input.len() && self.state != ChunkState::Done {
            if let ChunkState::Data { remaining } = self.state {
                // Chunk data is copied in one run, not stepped through byte by byte.
                let taken = take(remaining, input.len() - position);
                body.extend_from_slice(&input[position..position + taken]);
                // Cannot overflow: the chunk-size was checked against max_body.
                self.decoded += taken;
                position += taken;
                let remaining = remaining - taken as u64;
                self.state = if remaining == 0 { ChunkState::DataCr } else { ChunkState::Data { remaining } };
            } else {
                self.step(input[position])?;
                position += 1;
            }
        }
        Ok(Progress { consumed: position, done: self.state == ChunkState::Done })
    }

    /// Moves the state machine over one byte outside chunk-data.
    fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        use ChunkState::*;
        if self.state.is_in_size_line() {
            self.size_line_bytes += 1;
            if self.size_line_bytes > MAX_CHUNK_LINE_BYTES {
                return Err(HttpError::ChunkLineTooLong);
            }
            if byte == b'\n' {
                // A line end must be CRLF; every CR that may end the line leads to SizeLineLf.
                return Err(HttpError::BareLf);
            }
        }
        self.state = match (self.state, byte) {
            // chunk-size = 1*HEXDIG
            (SizeStart | Size, b) if b.is_ascii_hexdigit() => {
                self.add_size_digit(b)?;
                Size
            }
            (SizeStart, _) => return Err(HttpError::BadChunkSize),
            (Size, b'\r') => SizeLineLf,
            (Size, b' ' | b'\t') => ExtBws,
            (Size, b';') => ExtNameStart,
            (Size, _) => return Err(HttpError::BadChunkSize),

            // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
            (ExtBws, b' ' | b'\t') => ExtBws,
            (ExtBws, b';') => ExtNameStart,
            (ExtNameStart, b' ' | b'\t') => ExtNameStart,
            (ExtNameStart, b) if is_tchar(b) => ExtName,
            (ExtName, b) if is_tchar(b) => ExtName,
            (ExtName, b'\r') => SizeLineLf,
            (ExtName, b' ' | b'\t') => ExtNameBws,
            (ExtName | ExtNameBws, b';') => ExtNameStart,
            (ExtName | ExtNameBws, b'=') => ExtValueStart,
            (ExtNameBws, b' ' | b'\t') => ExtNameBws,
            (ExtValueStart, b' ' | b'\t') => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart | ExtToken, b) if is_tchar(b) => ExtToken,
            (ExtToken | ExtQuotedEnd, b'\r') => SizeLineLf,
            (ExtToken | ExtQuotedEnd, b' ' | b'\t') => ExtBws,
            (ExtToken | ExtQuotedEnd, b';') => ExtNameStart,
            // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE   (RFC 9110 §5.6.4)
            (ExtQuoted, b'"') => ExtQuotedEnd,
            (ExtQuoted, b'\\') => ExtQuotedPair,
            (ExtQuoted, b) if is_qdtext(b) => ExtQuoted,
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            (ExtQuotedPair, b) if is_field_value_byte(b) => ExtQuoted,
            (
                ExtBws | ExtNameStart | ExtName | ExtNameBws | ExtValueStart | ExtToken | ExtQuoted | ExtQuotedPair
                | ExtQuotedEnd,
                _,
            ) => return Err(HttpError::BadChunkExtension),

            (SizeLineLf, b'\n') => self.end_size_line(),
            (FinalLf, b'\n') => Done,
            (SizeLineLf | FinalLf, _) => return Err(HttpError::BareCr),

            // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            (DataCr | DataLf, _) => return Err(HttpError::MissingChunkCrlf),

            // chunked-body = *chunk last-chunk trailer-section CRLF
            (TrailerLineStart, b'\r') => FinalLf,
            (TrailerLineStart, b'\n') => return Err(HttpError::BareLf),
            (TrailerLineStart, b) => {
                self.trailer_fields += 1;
                if self.trailer_fields > MAX_TRAILER_FIELDS {
                    return Err(HttpError::TrailerTooLarge);
                }
                self.push_trailer_byte(b)?;
                TrailerLine
            }
            (TrailerLine, b) => {
                self.push_trailer_byte(b)?;
                if b == b'\n' {
                    self.check_trailer_line()?;
                    TrailerLineStart
                } else {
                    TrailerLine
                }
            }
            // `decode` stops at Done and handles Data itself; neither reaches here.
            (Data { .. } | Done, _) => self.state,
        };
        Ok(())
    }

    fn add_size_digit(&mut self, digit: u8) -> Result<(), HttpError> {
        let value = u64::from(hex_value(digit));
        // RFC 9112 §7.1: "recipients MUST anticipate potentially large hexadecimal numerals
        // and prevent parsing errors due to integer conversion overflows".
        self.size =
            self.size.checked_mul(16).and_then(|size| size.checked_add(value)).ok_or(HttpError::BadChunkSize)?;
        // A size only grows with more digits, so the body limit can be checked at every
        // digit: an oversized chunk is refused before its line has even ended.
        if (self.decoded as u64).saturating_add(self.size) > self.max_body as u64 {
            return Err(HttpError::BodyTooLarge);
        }
        Ok(())
    }

    /// The LF of a chunk-size line: chunk-data follows, or, after `last-chunk`, the trailer.
    fn end_size_line(&mut self) -> ChunkState {
        let size = std::mem::take(&mut self.size);
        self.size_line_bytes = 0;
        if size == 0 {
            // last-chunk = 1*("0") [ chunk-ext ] CRLF
            ChunkState::TrailerLineStart
        } else {
            ChunkState::Data { remaining: size }
        }
    }

    fn push_trailer_byte(&mut self, byte: u8) -> Result<(), HttpError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(HttpError::TrailerTooLarge);
        }
        self.trailer_line.push(byte);
        Ok(())
    }

    /// Checks a complete trailer line (it ends in LF) with the head's field-line parser, then
    /// discards it.
    fn check_trailer_line(&mut self) -> Result<(), HttpError> {
        let line = std::mem::take(&mut self.trailer_line);
        match parse_field_line(&line) {
            Ok(Parsed::Complete { consumed, .. }) if consumed == line.len() => Ok(()),
            Err(error @ (HttpError::BareCr | HttpError::BareLf)) => Err(error),
            // RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), with the same rules as
            // header fields. (A Partial cannot happen for a line ending in LF.)
            _ => Err(HttpError::BadTrailerField),
        }
    }
}

/// `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text` (RFC 9110 §5.6.4): a field
/// value byte other than DQUOTE and backslash.
fn is_qdtext(b: u8) -> bool {
    is_field_value_byte(b) && b != b'"' && b != b'\\'
}

/// The value of one HEXDIG.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        // Callers pass only ASCII hex digits.
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generous body limit for tests that are not about it.
    const LIMIT: usize = 1 << 20;

    /// Feeds `pieces` one after another the way a connection would: bytes the decoder did not
    /// consume stay in the buffer in front of the next piece. Returns the body and whatever is
    /// left in the buffer once the body is done.
    fn feed(framing: BodyFraming, max_body: usize, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
        let mut decoder = BodyDecoder::new(framing, max_body)?;
        let mut buffer = Vec::new();
        let mut body = Vec::new();
        for piece in pieces {
            buffer.extend_from_slice(piece);
            let progress = decoder.decode(&buffer, &mut body)?;
            buffer.drain(..progress.consumed);
            assert_eq!(progress.done, decoder.is_done());
            assert!(body.len() <= max_body, "never appends past max_body");
        }
        assert!(decoder.is_done(), "body incomplete after {pieces:?}");
        Ok((body, buffer))
    }

    /// Decodes `input` whole, byte by byte, and split in two at every position, checking that
    /// all give the same body and leave the same bytes over.
    fn decode_every_way(framing: BodyFraming, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let whole = feed(framing, LIMIT, &[input]).unwrap();
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(framing, LIMIT, &bytes).unwrap(), whole, "byte at a time");
        for split in 0..=input.len() {
            let (first, second) = input.split_at(split);
            assert_eq!(feed(framing, LIMIT, &[first, second]).unwrap(), whole, "split at {split}");
        }
        whole
    }

    fn chunked(input: &[u8]) -> Vec<u8> {
        let (body, rest) = decode_every_way(BodyFraming::Chunked, input);
        assert!(rest.is_empty(), "all input is body");
        body
    }

    /// The error a chunked body gets, fed whole and byte by byte.
    fn chunked_error(input: &[u8]) -> HttpError {
        let error = feed(BodyFraming::Chunked, LIMIT, &[input]).expect_err("should fail");
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(BodyFraming::Chunked, LIMIT, &bytes).unwrap_err(), error, "byte at a time");
        error
    }

    // ----- Content-Length and no body -----

    #[test]
    fn rfc9112_6_3_no_body_is_done_at_once() {
        for framing in [BodyFraming::None, BodyFraming::Length(0)] {
            let mut decoder = BodyDecoder::new(framing, LIMIT).unwrap();
            assert!(decoder.is_done());
            let mut body = Vec::new();
            assert_eq!(decoder.decode(b"GET /", &mut body), Ok(Progress { consumed: 0, done: true }));
            assert!(body.is_empty());
        }
    }

    #[test]
    fn rfc9112_6_3_content_length_body_is_exactly_that_many_bytes() {
        let (body, rest) = decode_every_way(BodyFraming::Length(5), b"helloGET / HTTP/1.1\r\n");
        assert_eq!((body.as_slice(), rest.as_slice()), (&b"hello"[..], &b"GET / HTTP/1.1\r\n"[..]));
    }

    #[test]
    fn rfc9110_15_5_14_content_length_over_the_limit_is_413_before_reading() {
        assert_eq!(BodyDecoder::new(BodyFraming::Length(9), 8), Err(HttpError::BodyTooLarge));
        assert_eq!(BodyDecoder::new(BodyFraming::Length(u64::MAX), LIMIT), Err(HttpError::BodyTooLarge));
        assert_eq!(feed(BodyFraming::Length(8), 8, &[b"12345678"]).unwrap().0, b"12345678");
    }

    // ----- RFC 9112 §7.1: chunked -----

    #[test]
    fn rfc9112_7_1_chunked_body() {
        // The classic example: "Wikipedia in\r\n\r\nchunks." in three chunks.
        let input = b"4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
        assert_eq!(chunked(input), b"Wikipedia in \r\n\r\nchunks.");
    }

    #[test]
    fn rfc9112_7_1_empty_chunked_body() {
        assert_eq!(chunked(b"0\r\n\r\n"), b"");
        // last-chunk = 1*("0")
        assert_eq!(chunked(b"000\r\n\r\n"), b"");
    }

    #[test]
    fn rfc9112_7_1_chunk_size_is_hex_in_either_case_with_leading_zeros() {
        let input = b"a\r\n0123456789\r\nA\r\n0123456789\r\n0010\r\n0123456789abcdef\r\n0\r\n\r\n";
        assert_eq!(chunked(input).len(), 36);
    }

    #[test]
    fn rfc9112_7_1_bytes_after_the_body_are_not_consumed() {
        let input = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (body, rest) = decode_every_way(BodyFraming::Chunked, input);
        assert_eq!((body.as_slice(), rest.as_slice()), (&b"hello"[..], &b"GET / HTTP/1.1\r\n"[..]));
    }

    #[test]
    fn rfc9112_7_1_1_chunk_extensions_are_parsed_and_ignored() {
        let input = b"5;name\r\nHello\r\n\
                      7 ; a = b ;c=\"quoted; \\\"string\\\\ \xff\"\t;d\r\n, world\r\n\
                      0;last=\"\"\r\n\r\n";
        assert_eq!(chunked(input), b"Hello, world");
    }

    #[test]
    fn rfc9112_7_1_1_malformed_chunk_extensions_are_400() {
        for line in [
            "5;\r\n",         // no name
            "5;=x\r\n",       // no name
            "5;a=\r\n",       // no value
            "5;a b\r\n",      // space inside the extension
            "5;a=b c\r\n",    // two values
            "5;a=\"x\r\n",    // unterminated quoted-string
            "5;a=\"x\"y\r\n", // text after the quoted-string
            "5;a=(x)\r\n",    // not a token
            "5;a=\"\x01\"\r\n",
            "5 \r\n", // BWS must be followed by ";"
            "5;a \r\n",
            "5;a=b \r\n",
        ] {
            let input = format!("{line}hello\r\n0\r\n\r\n");
            assert_eq!(chunked_error(input.as_bytes()), HttpError::BadChunkExtension, "{line:?}");
        }
    }

    #[test]
    fn rfc9112_7_1_malformed_chunk_sizes_are_400() {
        for input in ["zz\r\n", "\r\n", "-1\r\n", "+5\r\n", "0x5\r\n", " 5\r\n", "5g\r\n", "5,\r\n"] {
            assert_eq!(chunked_error(input.as_bytes()), HttpError::BadChunkSize, "{input:?}");
        }
    }

    #[test]
    fn rfc9112_7_1_chunk_size_overflow_is_400() {
        // RFC 9112 §7.1: recipients "MUST anticipate potentially large hexadecimal numerals".
        let mut decoder = ChunkedDecoder::new(usize::MAX);
        let mut body = Vec::new();
        assert_eq!(decoder.decode(b"fffffffffffffffff\r\n", &mut body), Err(HttpError::BadChunkSize));
    }

    #[test]
    fn rfc9112_7_1_chunk_line_longer_than_the_limit_is_400() {
        // The line's bytes, its CR included, may number MAX_CHUNK_LINE_BYTES and no more.
        let line_of = |len: usize| {
            let mut line = format!("5;x={}\r", "v".repeat(len - 5)).into_bytes();
            line.extend_from_slice(b"\nhello\r\n0\r\n\r\n");
            line
        };
        assert_eq!(feed(BodyFraming::Chunked, LIMIT, &[&line_of(MAX_CHUNK_LINE_BYTES)]).unwrap().0, b"hello");
        assert_eq!(chunked_error(&line_of(MAX_CHUNK_LINE_BYTES + 1)), HttpError::ChunkLineTooLong);
        // Leading zeros count too: the line cannot grow without bound.
        let zeros = vec![b'0'; MAX_CHUNK_LINE_BYTES + 1];
        assert_eq!(chunked_error(&zeros), HttpError::ChunkLineTooLong);
    }

    #[test]
    fn rfc9112_7_1_chunk_data_must_end_with_crlf() {
        assert_eq!(chunked_error(b"2\r\nabc\r\n0\r\n\r\n"), HttpError::MissingChunkCrlf);
        assert_eq!(chunked_error(b"2\r\nab\n0\r\n\r\n"), HttpError::MissingChunkCrlf);
        assert_eq!(chunked_error(b"2\r\nab\rx0\r\n\r\n"), HttpError::MissingChunkCrlf);
    }

    #[test]
    fn rfc9112_2_2_chunk_lines_need_crlf() {
        assert_eq!(chunked_error(b"5\nhello\r\n0\r\n\r\n"), HttpError::BareLf);
        assert_eq!(chunked_error(b"5;a=b\nhello\r\n0\r\n\r\n"), HttpError::BareLf);
        assert_eq!(chunked_error(b"5\rhello\r\n0\r\n\r\n"), HttpError::BareCr);
        assert_eq!(chunked_error(b"0\r\n\n"), HttpError::BareLf);
        assert_eq!(chunked_error(b"0\r\n\rx"), HttpError::BareCr);
        assert_eq!(chunked_error(b"0\r\nA: b\n\r\n"), HttpError::BareLf);
    }

    #[test]
    fn rfc9112_7_1_2_trailer_fields_are_checked_and_discarded() {
        let input = b"5\r\nHello\r\n0\r\nX-Checksum: none\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n";
        assert_eq!(chunked(input), b"Hello");
        assert_eq!(chunked(b"0\r\nX-Empty:\r\n\r\n"), b"");
    }

    #[test]
    fn rfc9112_7_1_2_malformed_trailer_fields_are_400() {
        for line in ["X-A : 1", "No-Colon", ": v", "X-A: a\x00b", " folded: 1", "X(A): 1"] {
            let input = format!("0\r\n{line}\r\n\r\n");
            assert_eq!(chunked_error(input.as_bytes()), HttpError::BadTrailerField, "{line:?}");
        }
        // Folding after a trailer line.
        assert_eq!(chunked_error(b"0\r\nX-A: 1\r\n\tmore\r\n\r\n"), HttpError::BadTrailerField);
    }

    #[test]
    fn limits_trailer_section_is_bounded() {
        let fields = |n: usize| (0..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
        let at_limit = format!("0\r\n{}\r\n", fields(MAX_TRAILER_FIELDS));
        assert_eq!(feed(BodyFraming::Chunked, LIMIT, &[at_limit.as_bytes()]).unwrap().0, b"");
        let over = format!("0\r\n{}\r\n", fields(MAX_TRAILER_FIELDS + 1));
        assert_eq!(chunked_error(over.as_bytes()), HttpError::TrailerTooLarge);

        let long = format!("0\r\nX-Long: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES));
        assert_eq!(chunked_error(long.as_bytes()), HttpError::TrailerTooLarge);
    }

    #[test]
    fn rfc9110_15_5_14_chunked_body_over_the_limit_is_413_before_appending() {
        // Exactly at the limit is fine.
        let input = b"5\r\n12345\r\n3\r\n678\r\n0\r\n\r\n";
        assert_eq!(feed(BodyFraming::Chunked, 8, &[input]).unwrap().0, b"12345678");
        // One byte over: refused when the size of the second chunk is read, before its data.
        let over = b"5\r\n12345\r\n4\r\n6789\r\n0\r\n\r\n";
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, 8).unwrap();
        let mut body = Vec::new();
        assert_eq!(decoder.decode(&over[..10], &mut body), Ok(Progress { consumed: 10, done: false }));
        assert_eq!(decoder.decode(&over[10..11], &mut body), Err(HttpError::BodyTooLarge));
        assert_eq!(body, b"12345");
        // A huge size is refused on its digits, long before any data arrives.
        assert_eq!(feed(BodyFraming::Chunked, LIMIT, &[b"ffffffff"]), Err(HttpError::BodyTooLarge));
    }

    #[test]
    fn decoding_after_done_consumes_nothing() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, LIMIT).unwrap();
        let mut body = Vec::new();
        assert_eq!(decoder.decode(b"0\r\n\r\nrest", &mut body), Ok(Progress { consumed: 5, done: true }));
        assert_eq!(decoder.decode(b"rest", &mut body), Ok(Progress { consumed: 0, done: true }));
        assert!(decoder.is_done());
    }

    #[test]
    fn partial_input_is_not_an_error() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, LIMIT).unwrap();
        let mut body = Vec::new();
        assert_eq!(decoder.decode(b"5;a=\"x", &mut body), Ok(Progress { consumed: 6, done: false }));
        assert_eq!(decoder.decode(b"\"\r\nhel", &mut body), Ok(Progress { consumed: 6, done: false }));
        assert_eq!(body, b"hel");
        assert!(!decoder.is_done());
    }
}
