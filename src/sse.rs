//! Server-Sent Events: the `text/event-stream` format, written by the server and read back by
//! a WHATWG-conformant parser.
//!
//! An SSE response is one long HTTP response of UTF-8 text. The server never ends it; it appends
//! *blocks* of `field: value` lines, each block closed by a blank line, and the browser's
//! `EventSource` turns every block that carries `data` into a `MessageEvent`:
//!
//! ```text
//! retry:2000                       <- the client waits 2 s before reconnecting
//!
//! event:gap                        <- the event's type; none means `message`, the default
//! data:{"since":"k3f9-3",...}      <- one `data:` line per line of text
//!                                  <- blank line: dispatch the event now
//! id:k3f9-17                       <- sent back as `Last-Event-ID` after a reconnect
//! data:{"id":"k3f9-17",...}        <- a `message` event: no `event:` line needed
//!
//! : keepalive                      <- a comment: ignored, but it keeps proxies from timing out
//! ```
//!
//! The encoder writes no byte the client does not need, because they are paid at every
//! delivery to every subscriber: no `event:` line for a `message` (§9.2.6 dispatch steps 5 and
//! 6: the type is `message` unless "the event type buffer has a value other than the empty
//! string"), and no space after a field's colon unless the value itself starts with one
//! (§9.2.6: "If value starts with a U+0020 SPACE character, remove it from value", so the
//! space is optional and only one is removed).
//!
//! Spec: WHATWG HTML Living Standard §9.2 "Server-sent events": §9.2.5 "Parsing an event stream"
//! (the ABNF), §9.2.6 "Interpreting an event stream" (the parsing and dispatch algorithm this
//! module follows step by step), §9.2.7 "Authoring notes" (keepalive comments), and the WHATWG
//! Encoding Standard's "UTF-8 decode" which §9.2.6 names.
//!
//! ## The server side: an encoder
//!
//! [`encode_retry`], [`encode_event`] and [`encode_comment`] append one complete block to a
//! `Vec<u8>` and never fail on the text they carry: a message text with line breaks becomes
//! several `data:` lines. Every block ends with a blank line, so
//! - an event is dispatched the moment its bytes arrive (nothing waits for the next block), and
//! - a client's parser is back in its initial state (every buffer but the last event ID empty)
//!   after each block, so blocks can be written in any order and interleaved freely. A blank
//!   line after a block with no `data` dispatches nothing (§9.2.6 dispatch step 2), so it costs
//!   one byte and no event.
//!
//! `id` and `event` values are one line each by nature, so a line break in them (or a NUL in
//! an id, which clients ignore) is the caller's bug: [`encode_event`] returns an
//! [`EncodeError`] and writes nothing.
//!
//! [`LineEvent`] is the same event for data that is known to be one line, described by
//! borrowed pieces instead of copied into a buffer: the server sends every message this way,
//! framing the broker's shared envelope as it writes it to each subscriber, so a message costs
//! no per-message buffer and a delivery copies the envelope once, into the connection's output.
//!
//! ## The client side: a parser
//!
//! [`EventStreamParser`] is sans-I/O: [`EventStreamParser::feed`] takes whatever bytes the
//! socket produced, split anywhere, and appends the events they complete. Inside it is the
//! pipeline of §9.2.6:
//!
//! 1. **Lines.** Bytes are cut into lines at CRLF, lone LF or lone CR. A partial line waits in
//!    a buffer for the next `feed`; a CR that ends one feed remembers that an LF starting the
//!    next belongs to the same line end.
//! 2. **UTF-8 decode, one line at a time.** Cutting the *bytes* at CR and LF and decoding each
//!    line gives exactly the text that decoding the whole stream first and then cutting would
//!    give: in the Encoding Standard's UTF-8 decoder an ASCII byte is never part of a multi-byte
//!    sequence (an unfinished sequence before it becomes one U+FFFD, then the byte is decoded on
//!    its own), and an unfinished sequence at the end of a line also becomes one U+FFFD.
//!    `String::from_utf8_lossy` replaces ill-formed bytes by the same rule as the WHATWG
//!    decoder (one U+FFFD per maximal subpart; the tests check it against a transcription of
//!    the spec's decoder). A sequence split across two `feed` calls is simply still in the line
//!    buffer when its last byte arrives. The BOM that "UTF-8 decode" strips can only sit at the
//!    start of the stream's first line.
//! 3. **Fields.** Each line is a blank line (dispatch), a comment, or `name: value`.
//! 4. **Dispatch.** On a blank line, the data and event type buffers become an [`Event`].
//!
//! Browsers put no bound on a line or on the data buffer. This parser must (it reads whatever a
//! peer sends, and it is fuzzed), so [`ParserLimits`] caps both; past a cap the parser stops
//! with a [`ParseError`] that the caller treats like a broken connection. Nothing is silently
//! dropped or truncated: a client either gets the event the server wrote or an error.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// The server side: encoding
// ---------------------------------------------------------------------------------------------

/// Why an `id` or `event` value cannot be written as an SSE field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The id contains CR or LF: the rest would be read as a new line.
    LineBreakInId,
    /// The id contains U+0000. §9.2.6: "If the field value does not contain U+0000 NULL, then
    /// set the last event ID buffer to the field value. Otherwise, ignore the field." The
    /// client would keep its previous id and resume from the wrong place.
    NullInId,
    /// The event type contains CR or LF: the rest would be read as a new line.
    LineBreakInEventType,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::LineBreakInId => "an SSE event id cannot contain CR or LF",
            EncodeError::NullInId => "an SSE event id cannot contain U+0000 NULL",
            EncodeError::LineBreakInEventType => "an SSE event type cannot contain CR or LF",
        })
    }
}

impl std::error::Error for EncodeError {}

/// Appends `retry:<millis>` and a blank line: the client's reconnection time, in milliseconds.
///
/// §9.2.6: "If the field value consists of only ASCII digits, then interpret the field value as
/// an integer in base ten, and set the event stream's reconnection time to that integer." The
/// field takes effect as soon as its line is read, not at dispatch, so the blank line is not
/// needed for it; it is there so that this block, like every block the encoder writes, leaves
/// the client's buffers empty. It dispatches nothing, because the data buffer is empty.
pub fn encode_retry(out: &mut Vec<u8>, millis: u64) {
    write_field(out, "retry", &millis.to_string());
    out.push(b'\n');
}

/// Appends one event: `id:` (if given), `event:` (if given), one `data:` line per line of
/// `data`, and the blank line that dispatches it.
///
/// - `id: None` writes no `id:` line, and the client keeps the last id it saw (§9.2.6 dispatch
///   step 1: the buffer "does not get reset"). `Some("")` writes `id:` and *resets* the
///   client's last event ID to the empty string, so it will resume with no `Last-Event-ID`.
/// - `event: None` (and `Some("")`) give the default type, `message`, and write no `event:`
///   line. `Some("message")` writes one, which a client reads the same way: pass `None`.
/// - `data` is cut at CRLF, lone LF and lone CR; the client joins the lines with LF. Text with
///   CRLF or a lone CR therefore arrives with LF in their place: the format has one line
///   separator, so this is inherent to SSE, not to this encoder. Empty `data` still makes an
///   event (with empty data): it is written as one empty `data:` line.
///
/// Fails, writing nothing, if `id` contains CR, LF or NUL, or `event` contains CR or LF.
pub fn encode_event(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &str) -> Result<(), EncodeError> {
    if let Some(id) = id {
        if contains_line_break(id) {
            return Err(EncodeError::LineBreakInId);
        }
        if id.contains('\0') {
            return Err(EncodeError::NullInId);
        }
    }
    if let Some(event) = event {
        if contains_line_break(event) {
            return Err(EncodeError::LineBreakInEventType);
        }
    }
    if let Some(id) = id {
        write_field(out, "id", id);
    }
    if let Some(event) = event {
        write_field(out, "event", event);
    }
    // §9.2.6: "If the field name is "data": Append the field value to the data buffer, then
    // append a single U+000A LINE FEED (LF) character to the data buffer." So n lines come back
    // joined by n - 1 LFs once dispatch removes the last one.
    for line in Lines::new(data) {
        write_field(out, "data", line);
    }
    out.push(b'\n');
    Ok(())
}

/// A `message` event whose data is a single line, as the pieces [`encode_event`] would write
/// for it with no event type: `id:` ID LF `data:` DATA LF LF.
///
/// The pieces borrow the id and the data, so the caller decides where the bytes go
/// and how they are framed: written around the broker's shared envelope, straight into a
/// connection's output, as one HTTP chunk whose size is known before the first byte
/// ([`crate::http::response::write_chunk_pieces`]).
#[derive(Clone, Copy, Debug)]
pub struct LineEvent<'a> {
    id: &'a str,
    data: &'a str,
}

impl<'a> LineEvent<'a> {
    /// Checks `id` as [`encode_event`] does (it is short).
    ///
    /// `data` must hold no CR or LF, or the client would read its rest as new lines (§9.2.6).
    /// The caller vouches for that rather than this function checking: a check is a pass over
    /// the data, at every delivery of a message to every subscriber, several times the cost of
    /// copying it. The broker's envelopes are one line by construction
    /// ([`crate::broker::Message::envelope`]: JSON whose writer escapes every control
    /// character); text that may hold line breaks goes through [`encode_event`], which cuts it
    /// into `data:` lines. Debug builds check anyway.
    pub fn message(id: &'a str, data: &'a str) -> Result<LineEvent<'a>, EncodeError> {
        if contains_line_break(id) {
            return Err(EncodeError::LineBreakInId);
        }
        if id.contains('\0') {
            return Err(EncodeError::NullInId);
        }
        debug_assert!(!contains_line_break(data), "LineEvent data must be one line");
        Ok(LineEvent { id, data })
    }

    /// The event's bytes, in order; their concatenation is what [`encode_event`] writes for
    /// `Some(id)`, no event type, and the data.
    pub fn pieces(&self) -> [&'a [u8]; 5] {
        [
            field_start(b"id: ", self.id),
            self.id.as_bytes(),
            field_start(b"\ndata: ", self.data),
            self.data.as_bytes(),
            // The data line's LF, then the blank line that dispatches the event.
            b"\n\n",
        ]
    }
}

/// Appends a comment, `: <text>`, and a blank line: a keepalive that no client sees as an
/// event.
///
/// §9.2.7: "Legacy proxy servers are known to, in certain cases, drop HTTP connections after a
/// short timeout. To protect against such proxy servers, authors can include a comment line
/// (one starting with a ':' character) every 15 seconds or so."
///
/// A comment is one line (ABNF: `comment = colon *any-char end-of-line`), so text with line
/// breaks is written as one comment line per line rather than refused: comments carry nothing
/// a client acts on, and an error here would only give every keepalive an impossible failure
/// path.
pub fn encode_comment(out: &mut Vec<u8>, text: &str) {
    for line in Lines::new(text) {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Writes `name:value` and LF.
///
/// LF is the line end §9.2.5 recommends: "line buffering with lines are defined to end with a
/// single U+000A LINE FEED (LF) character is safe". The space after the colon is written only
/// where [`field_start`] says it is needed.
fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(field_start(b": ", value));
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// The bytes before a field's value: `with_space` (which ends in `": "`) as given when the
/// value starts with a space, or without its last byte otherwise.
///
/// §9.2.6: "If value starts with a U+0020 SPACE character, remove it from value." One space is
/// removed, whether the server meant it as a separator or as part of the value, so a value
/// that starts with a space needs one more in front of it; any other value is read the same
/// without it, and a space written at every delivery is a byte per field per subscriber.
fn field_start(with_space: &'static [u8], value: &str) -> &'static [u8] {
    debug_assert!(with_space.ends_with(b": "));
    if value.starts_with(' ') {
        with_space
    } else {
        &with_space[..with_space.len() - 1]
    }
}

/// Whether `text` holds CR or LF. Byte by byte: both are ASCII, so they never occur inside a
/// multi-byte UTF-8 sequence, and for the short ids and types this checks (at every delivery)
/// a plain loop is several times faster than a `char` pattern.
fn contains_line_break(text: &str) -> bool {
    text.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// The lines of a text, cut where an event stream would cut them: at CRLF, lone LF or lone CR.
///
/// Unlike `str::lines`, a lone CR ends a line and a trailing line break yields a final empty
/// line, so `"a\n"` gives `"a"` and `""`: the data `"a\n"` must come back as `"a\n"`.
struct Lines<'a> {
    /// What is left to cut; `None` once the last line has been returned.
    rest: Option<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        Lines { rest: Some(text) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest?;
        match text.find(['\r', '\n']) {
            None => {
                self.rest = None;
                Some(text)
            }
            Some(end) => {
                let after = if text[end..].starts_with("\r\n") { end + 2 } else { end + 1 };
                self.rest = Some(&text[after..]);
                Some(&text[..end])
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client side: parsing
// ---------------------------------------------------------------------------------------------

/// Longest line the parser accepts by default, in bytes, not counting its line end.
///
/// Our server's longest line is one `data:` line holding one envelope. The default publish
/// limit is 64 KiB of text, and JSON escaping grows text at most six times (a control character
/// becomes `\u00XX`), so about 384 KiB plus the envelope's other members. 1 MiB leaves room;
/// a client of a server run with a larger `--max-publish-bytes` raises it with
/// [`EventStreamParser::with_limits`].
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Largest data buffer (the event's `data` lines joined) the parser accepts by default, in
/// bytes. Our server sends one `data:` line per event, so the line limit is the real bound; a
/// separate cap is still needed because a peer can send any number of `data:` lines before the
/// blank line. Same value as [`MAX_LINE_BYTES`], for the same reason.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The parser's memory bounds. Browsers have none; see the module docs for why we do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest line in bytes, without its line end.
    pub max_line_bytes: usize,
    /// Largest data buffer in bytes, counting the LF appended after each `data` value.
    pub max_data_bytes: usize,
}

impl Default for ParserLimits {
    fn default() -> ParserLimits {
        ParserLimits { max_line_bytes: MAX_LINE_BYTES, max_data_bytes: MAX_DATA_BYTES }
    }
}

/// One dispatched event: what a browser hands to a `MessageEvent` listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field of its block, or `"message"` if there was none (or it was empty).
    pub event_type: String,
    /// Its `data:` values joined with LF.
    pub data: String,
    /// The stream's last event ID when the event was dispatched: the latest `id:` field,
    /// whether in this block or an earlier one.
    ///
    /// Shared (`Arc`), not copied: the ID persists across events, so a peer could send one
    /// megabyte-long `id:` and then a million six-byte events (`data\n\n`); copying it into
    /// each would turn a few megabytes of input into terabytes of memory.
    pub last_event_id: Arc<str>,
}

/// One dispatched event, borrowed from the parser: what [`EventStreamParser::feed_with`]
/// hands to its callback. The same fields as [`Event`], without copying them out of the
/// parser's buffers, so that a client reading millions of events allocates nothing per event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub event_type: &'a str,
    pub data: &'a str,
    pub last_event_id: &'a str,
    /// Whether `last_event_id` differs from the one at the previous dispatch (or may: an `id:`
    /// field was read since): lets [`EventStreamParser::feed`] share one `Arc` between events
    /// without comparing the strings.
    id_changed: bool,
}

/// Why the parser stopped. The events before the fault were delivered; the stream's remaining
/// bytes are ignored until [`EventStreamParser::finish`], so the caller should drop the
/// connection (and may reconnect, as after any broken stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A line grew past [`ParserLimits::max_line_bytes`] before its line end arrived.
    LineTooLong { limit: usize },
    /// An event's `data` lines added up to more than [`ParserLimits::max_data_bytes`].
    DataTooLong { limit: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::LineTooLong { limit } => {
                write!(f, "event stream line longer than {limit} bytes")
            }
            ParseError::DataTooLong { limit } => {
                write!(f, "event stream data longer than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Where the parser is in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    /// Reading the stream's first line, which may begin with a byte order mark.
    FirstLine,
    /// Reading any later line.
    Line,
    /// The last line ended with CR: an LF next is the second half of a CRLF, not a new line.
    AfterCr,
    /// A limit was exceeded; the rest of this stream is ignored.
    Failed(ParseError),
}

/// The UTF-8 encoding of U+FEFF BYTE ORDER MARK.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The default event type. §9.2.6 dispatch step 5: "Initialize event's type attribute to
/// "message"".
const DEFAULT_EVENT_TYPE: &str = "message";

/// A `text/event-stream` parser: §9.2.6 "Interpreting an event stream", fed bytes as they
/// arrive.
#[derive(Debug)]
pub struct EventStreamParser {
    limits: ParserLimits,
    state: StreamState,
    /// The bytes of the current line so far, when a line is split across `feed` calls. Bytes,
    /// not text: a UTF-8 sequence may be split too (see the module docs).
    line: Vec<u8>,
    /// §9.2.6: "When a stream is parsed, a data buffer, an event type buffer, and a last event
    /// ID buffer must be associated with it. They must be initialized to the empty string."
    ///
    /// The buffers are cleared, never dropped, so their allocations serve every event.
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    /// The EventSource's "last event ID string" (§9.2.2): the buffer's value at the last
    /// dispatch. This, not the buffer, is what a client sends as `Last-Event-ID` (§9.2.3).
    last_event_id: String,
    /// An `id:` field was read since the last dispatch. The buffer is copied into
    /// `last_event_id` only then, so a stream cannot make every event copy a long ID that it
    /// sent once: each `id:` line is copied at most once more than it was read.
    id_pending: bool,
    /// `last_event_id` changed since the last event was dispatched ([`EventRef`]).
    id_changed: bool,
    /// The `Arc` that [`EventStreamParser::feed`]'s events share while the ID stays the same:
    /// a peer could send one megabyte-long `id:` and then a million six-byte events
    /// (`data\n\n`); a copy in each would turn a few megabytes of input into terabytes.
    shared_id: Arc<str>,
    /// The reconnection time the stream asked for with `retry:`, in milliseconds.
    reconnection_time: Option<u64>,
}

impl Default for EventStreamParser {
    fn default() -> EventStreamParser {
        EventStreamParser::new()
    }
}

impl EventStreamParser {
    /// A parser with the default [`ParserLimits`].
    pub fn new() -> EventStreamParser {
        EventStreamParser::with_limits(ParserLimits::default())
    }

    /// A parser with other bounds: a client of a server whose messages may be larger than
    /// [`MAX_LINE_BYTES`] raises them.
    pub fn with_limits(limits: ParserLimits) -> EventStreamParser {
        EventStreamParser {
            limits,
            state: StreamState::FirstLine,
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            last_event_id_buffer: String::new(),
            last_event_id: String::new(),
            id_pending: false,
            id_changed: false,
            shared_id: Arc::from(""),
            reconnection_time: None,
        }
    }

    /// Reads the next bytes of the stream and appends the events they complete to `events`.
    ///
    /// All of `bytes` is consumed: a partial line is kept for the next call, so the stream can
    /// be split anywhere (even inside a CRLF, a UTF-8 sequence or the BOM). On error the events
    /// completed before the fault are in `events`, and every later call returns the same error.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), ParseError> {
        let mut shared_id = std::mem::replace(&mut self.shared_id, Arc::from(""));
        let outcome = self.feed_with(bytes, |event| {
            if event.id_changed {
                shared_id = Arc::from(event.last_event_id);
            }
            events.push(Event {
                event_type: event.event_type.to_string(),
                data: event.data.to_string(),
                last_event_id: Arc::clone(&shared_id),
            });
        });
        self.shared_id = shared_id;
        outcome
    }

    /// [`EventStreamParser::feed`] without copies: each event the bytes complete is lent to
    /// `on_event`, borrowed from the parser's buffers, which are reused for the next one.
    pub fn feed_with(&mut self, bytes: &[u8], mut on_event: impl FnMut(EventRef<'_>)) -> Result<(), ParseError> {
        let mut rest = bytes;
        loop {
            match self.state {
                StreamState::Failed(error) => return Err(error),
                StreamState::AfterCr => match rest.first() {
                    None => return Ok(()),
                    // §9.2.6: a line ends with "a U+000D CARRIAGE RETURN U+000A LINE FEED
                    // (CRLF) character pair, a single U+000A LINE FEED (LF) character not
                    // preceded by a U+000D CARRIAGE RETURN (CR) character, and a single U+000D
                    // CARRIAGE RETURN (CR) character not followed by a U+000A LINE FEED (LF)
                    // character". The line already ended at the CR; this LF completes the pair.
                    Some(b'\n') => {
                        rest = &rest[1..];
                        self.state = StreamState::Line;
                    }
                    Some(_) => self.state = StreamState::Line,
                },
                StreamState::FirstLine | StreamState::Line => {}
            }
            let Some(end) = line_break(rest) else {
                return self.buffer_partial_line(rest);
            };
            self.end_line(&rest[..end], rest[end], &mut on_event)?;
            rest = &rest[end + 1..];
        }
    }

    /// Ends the stream (the connection closed) and readies the parser for the next one.
    ///
    /// §9.2.6: "Once the end of the file is reached, any pending data must be discarded. (If
    /// the file ends in the middle of an event, before the final empty line, the incomplete
    /// event is not dispatched.)" So the partial line and the data and event type buffers are
    /// dropped, and an `id:` read since the last dispatch is forgotten.
    ///
    /// The parser can then read the stream of a reconnection. What it keeps is what §9.2.2 puts
    /// on the EventSource rather than on one stream: the reconnection time and the last event
    /// ID string. The new stream's last event ID buffer starts from that string, as Chromium's
    /// parser does, so an event without `id:` on the new connection keeps the ID the client
    /// resumed from. (Read to the letter, §9.2.6 starts every stream's buffer empty, which
    /// would blank the ID at the new stream's first dispatch.)
    pub fn finish(&mut self) {
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.last_event_id_buffer.clone_from(&self.last_event_id);
        self.id_pending = false;
        self.state = StreamState::FirstLine;
    }

    /// The reconnection time the stream set with `retry:`, in milliseconds; `None` until it
    /// sends one (a browser then uses its own default, "probably in the region of a few
    /// seconds", §9.2.2).
    pub fn retry(&self) -> Option<u64> {
        self.reconnection_time
    }

    /// The last event ID string: the value to send as `Last-Event-ID` when reconnecting. It
    /// changes at dispatch, not when the `id:` line is read, so an `id:` in a block the stream
    /// never finished does not count.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Keeps the start of a line whose end has not arrived yet.
    fn buffer_partial_line(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        if self.line.len().saturating_add(bytes.len()) > self.limits.max_line_bytes {
            return Err(self.fail(ParseError::LineTooLong { limit: self.limits.max_line_bytes }));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// A line end (`terminator`, CR or LF) arrived: processes the line it ends, whose last
    /// bytes are `tail` (the earlier ones, if any, are in `self.line`).
    fn end_line(
        &mut self,
        tail: &[u8],
        terminator: u8,
        on_event: &mut impl FnMut(EventRef<'_>),
    ) -> Result<(), ParseError> {
        let outcome = if self.line.is_empty() {
            // The whole line is in this feed: read it in place, without copying.
            if tail.len() > self.limits.max_line_bytes {
                Err(ParseError::LineTooLong { limit: self.limits.max_line_bytes })
            } else {
                self.process_line(tail, on_event)
            }
        } else {
            self.buffer_partial_line(tail)?;
            // Taken out so that `process_line` can borrow `self` mutably, then put back so the
            // next split line reuses its allocation.
            let line = std::mem::take(&mut self.line);
            let outcome = self.process_line(&line, on_event);
            self.line = line;
            self.line.clear();
            outcome
        };
        if let Err(error) = outcome {
            return Err(self.fail(error));
        }
        self.state = if terminator == b'\r' { StreamState::AfterCr } else { StreamState::Line };
        Ok(())
    }

    /// §9.2.6: "Lines must be processed, in the order they are received, as follows".
    fn process_line(&mut self, bytes: &[u8], on_event: &mut impl FnMut(EventRef<'_>)) -> Result<(), ParseError> {
        let bytes = if self.state == StreamState::FirstLine {
            // §9.2.6: "The UTF-8 decode algorithm strips one leading UTF-8 Byte Order Mark
            // (BOM), if any." Only one, and only at the start of the stream: a BOM contains
            // no CR or LF, so if the stream starts with one it is all in the first line.
            bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
        } else {
            bytes
        };
        // §9.2.6: "Streams must be decoded using the UTF-8 decode algorithm." Ill-formed bytes
        // become U+FFFD; see the module docs for why decoding line by line is the same.
        // `from_utf8` first: for the well-formed lines of every real stream it is several times
        // faster than the lossy decoder's chunk iterator, and gives the same borrowed text.
        let line = match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        };

        // "If the line is empty (a blank line): Dispatch the event".
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        // "If the line starts with a U+003A COLON character (:): Ignore the line."
        if line.starts_with(':') {
            return Ok(());
        }
        // The colon is ASCII, so the byte it is at is a character boundary; a byte search
        // costs less than a `char` pattern's searcher, on every line of every event.
        let colon = line.bytes().position(|b| b == b':');
        let (field, value) = match colon.map(|at| (&line[..at], &line[at + 1..])) {
            // "If the line contains a U+003A COLON character (:): Collect the characters on
            // the line before the first U+003A COLON character (:), and let field be that
            // string. Collect the characters on the line after the first U+003A COLON
            // character (:), and let value be that string. If value starts with a U+0020
            // SPACE character, remove it from value."
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            // "Otherwise, the string is not empty but does not contain a U+003A COLON
            // character (:): Process the field using the steps described below, using the
            // whole line as the field name, and the empty string as the field value."
            None => (&*line, ""),
        };
        self.process_field(field, value)
    }

    /// §9.2.6 "process the field": "Field names must be compared literally, with no case
    /// folding performed."
    fn process_field(&mut self, field: &str, value: &str) -> Result<(), ParseError> {
        match field {
            // "If the field name is "event": Set the event type buffer to the field value."
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            // "If the field name is "data": Append the field value to the data buffer, then
            // append a single U+000A LINE FEED (LF) character to the data buffer."
            "data" => {
                let new_len = self.data.len().saturating_add(value.len()).saturating_add(1);
                if new_len > self.limits.max_data_bytes {
                    return Err(ParseError::DataTooLong { limit: self.limits.max_data_bytes });
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            // "If the field name is "id": If the field value does not contain U+0000 NULL,
            // then set the last event ID buffer to the field value. Otherwise, ignore the
            // field."
            "id" if value.contains('\0') => {}
            "id" => {
                self.last_event_id_buffer.clear();
                self.last_event_id_buffer.push_str(value);
                self.id_pending = true;
            }
            // "If the field name is "retry": If the field value consists of only ASCII
            // digits, then interpret the field value as an integer in base ten, and set the
            // event stream's reconnection time to that integer. Otherwise, ignore the field."
            "retry" => {
                if let Some(millis) = parse_retry(value) {
                    self.reconnection_time = Some(millis);
                }
            }
            // "Otherwise: The field is ignored."
            _ => {}
        }
        Ok(())
    }

    /// §9.2.6 "dispatch the event", the steps for web browsers.
    fn dispatch(&mut self, on_event: &mut impl FnMut(EventRef<'_>)) {
        // Step 1: "Set the last event ID string of the event source to the value of the last
        // event ID buffer. The buffer does not get reset, so the last event ID string of the
        // event source remains set to this value until the next time it is set by the server."
        // (Copied only if an `id:` was read since the last time: otherwise they are equal.)
        if std::mem::take(&mut self.id_pending) {
            self.last_event_id.clone_from(&self.last_event_id_buffer);
            self.id_changed = true;
        }

        // Step 2: "If the data buffer is an empty string, set the data buffer and the event
        // type buffer to the empty string and return."
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let id_changed = std::mem::take(&mut self.id_changed);

        // Step 3: "If the data buffer's last character is a U+000A LINE FEED (LF) character,
        // then remove the last character from the data buffer." (It always is: every `data`
        // field appends one.)
        let data = self.data.strip_suffix('\n').unwrap_or(&self.data);

        // Steps 5 and 6: the type is "message" unless "the event type buffer has a value
        // other than the empty string".
        let event_type = if self.event_type.is_empty() { DEFAULT_EVENT_TYPE } else { &self.event_type };
        on_event(EventRef {
            event_type,
            data,
            // Step 5: "its lastEventId attribute to the last event ID string of the event
            // source".
            last_event_id: &self.last_event_id,
            id_changed,
        });
        // Step 7: "Set the data buffer and the event type buffer to the empty string." Cleared,
        // so that the next event reuses their allocations.
        self.data.clear();
        self.event_type.clear();
    }

    /// Stops the stream: the error is returned now and by every later `feed`.
    fn fail(&mut self, error: ParseError) -> ParseError {
        self.state = StreamState::Failed(error);
        error
    }
}

/// The index of the first CR or LF in `bytes`.
///
/// Eight bytes per step: a byte equal to LF is a zero byte of `word ^ 0x0a0a...`, and
/// "Bit Twiddling Hacks"' `haszero` (`(v - 0x01...) & !v & 0x80...`) marks zero bytes in the
/// high bit of each byte. It can also mark a byte above a zero byte (a borrow), never one
/// below, so the lowest mark is the first CR or LF. A `data:` line of an envelope is a hundred
/// bytes or so; this scan, at every line of every event, is most of what a subscriber of a
/// busy channel does besides the system calls.
fn line_break(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        // `chunks_exact(8)` gives eight bytes, so the conversion cannot fail.
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let marks = zero_bytes(word ^ (ONES * u64::from(b'\n'))) | zero_bytes(word ^ (ONES * u64::from(b'\r')));
        if marks != 0 {
            return Some(offset + (marks.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words.remainder().iter().position(|&b| b == b'\r' || b == b'\n').map(|at| offset + at)
}

/// The value of a `retry` field, if it "consists of only ASCII digits".
///
/// An empty value is ignored: it holds no integer to interpret (browsers ignore it too). A
/// value too large for `u64` milliseconds (over 584 million years) saturates: it is the
/// integer the spec asks for, as near as we can hold it.
fn parse_retry(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(value.bytes().fold(0u64, |millis, digit| millis.saturating_mul(10).saturating_add(u64::from(digit - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- helpers ------------------------------------------------------------------------------

    fn event(event_type: &str, data: &str, last_event_id: &str) -> Event {
        Event { event_type: event_type.into(), data: data.into(), last_event_id: Arc::from(last_event_id) }
    }

    fn message(data: &str) -> Event {
        event("message", data, "")
    }

    /// What a parser ends with after reading a stream: its events, its first error, its
    /// reconnection time and its last event ID.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        events: Vec<Event>,
        error: Option<ParseError>,
        retry: Option<u64>,
        last_event_id: String,
    }

    fn parse_in_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        parse_with_limits(ParserLimits::default(), pieces)
    }

    fn parse_with_limits<'a>(limits: ParserLimits, pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut parser = EventStreamParser::with_limits(limits);
        let mut events = Vec::new();
        let mut error = None;
        for piece in pieces {
            if let Err(e) = parser.feed(piece, &mut events) {
                error.get_or_insert(e);
            }
        }
        Outcome { events, error, retry: parser.retry(), last_event_id: parser.last_event_id().into() }
    }

    /// Parses `stream` whole, one byte at a time and split in two at every position, asserts
    /// that all give the same outcome, and returns it.
    fn parse_every_way(stream: &[u8]) -> Outcome {
        let whole = parse_in_pieces([stream]);
        let byte_by_byte = parse_in_pieces(stream.chunks(1));
        assert_eq!(byte_by_byte, whole, "byte by byte: {stream:?}");
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            let two_pieces = parse_in_pieces([head, tail]);
            assert_eq!(two_pieces, whole, "split at {split}: {stream:?}");
        }
        whole
    }

    /// The events of a valid stream, checked incrementally.
    fn events_of(stream: &[u8]) -> Vec<Event> {
        let outcome = parse_every_way(stream);
        assert_eq!(outcome.error, None);
        outcome.events
    }

    // --- §9.2 examples ------------------------------------------------------------------------

    #[test]
    fn whatwg_9_2_1_example_three_messages() {
        let stream = b"data: This is the first message.\n\
            \n\
            data: This is the second message, it\n\
            data: has two lines.\n\
            \n\
            data: This is the third message.\n\n";
        assert_eq!(
            events_of(stream),
            [
                message("This is the first message."),
                message("This is the second message, it\nhas two lines."),
                message("This is the third message."),
            ]
        );
    }

    #[test]
    fn whatwg_9_2_1_example_two_event_types() {
        let stream = b"event: add\ndata: 73857293\n\n\
            event: remove\ndata: 2153\n\n\
            event: add\ndata: 113411\n\n";
        assert_eq!(
            events_of(stream),
            [event("add", "73857293", ""), event("remove", "2153", ""), event("add", "113411", ""),]
        );
    }

    #[test]
    fn whatwg_9_2_6_example_stock_ticker() {
        // "The following event stream, once followed by a blank line: [...] The event's data
        // attribute would contain the string "YHOO\n+2\n10"".
        let stream = b"data: YHOO\ndata: +2\ndata: 10\n\n";
        assert_eq!(events_of(stream), [message("YHOO\n+2\n10")]);
    }

    #[test]
    fn whatwg_9_2_6_example_four_blocks() {
        // "The first block has just a comment, and will fire nothing. The second block has two
        // fields [...] with the data "first event", and will then set the last event ID to "1"
        // [...] The third block fires an event with data "second event", and also has an "id"
        // field, this time with no value, which resets the last event ID to the empty string
        // [...] the last block just fires an event with the data " third event" (with a single
        // leading space character). Note that the last still has to end with a blank line".
        let stream = b": test stream\n\
            \n\
            data: first event\n\
            id: 1\n\
            \n\
            data:second event\n\
            id\n\
            \n\
            data:  third event\n\n";
        let outcome = parse_every_way(stream);
        assert_eq!(
            outcome.events,
            [
                event("message", "first event", "1"),
                event("message", "second event", ""),
                event("message", " third event", ""),
            ]
        );
        assert_eq!(outcome.last_event_id, "");
    }

    #[test]
    fn whatwg_9_2_6_example_end_of_stream_is_not_a_blank_line() {
        // Same stream without the final blank line: "the end of the stream is not enough to
        // trigger the dispatch of the last event."
        let stream = b": test stream\n\ndata: first event\nid: 1\n\n\
            data:second event\nid\n\ndata:  third event\n";
        let outcome = parse_every_way(stream);
        assert_eq!(outcome.events.len(), 2);
    }

    #[test]
    fn whatwg_9_2_6_example_data_without_colon() {
        // "The first block fires events with the data set to the empty string, as would the
        // last block if it was followed by a blank line. The middle block fires an event with
        // the data set to a single newline character. The last block is discarded because it
        // is not followed by a blank line."
        let stream = b"data\n\ndata\ndata\n\ndata:";
        assert_eq!(events_of(stream), [message(""), message("\n")]);
    }

    #[test]
    fn whatwg_9_2_6_example_space_after_colon_ignored() {
        // "The following stream fires two identical events [...] because the space after the
        // colon is ignored if present."
        let stream = b"data:test\n\ndata: test\n\n";
        assert_eq!(events_of(stream), [message("test"), message("test")]);
    }

    // --- §9.2.6: decoding ---------------------------------------------------------------------

    #[test]
    fn whatwg_9_2_6_utf8_decode_invalid_bytes_become_replacement_characters() {
        // A lone continuation byte, an overlong encoding, a surrogate, a byte that never
        // starts UTF-8, and a sequence cut short by the line end.
        let stream = b"data: a\x80b\xC0\xAFc\xED\xA0\x80d\xFFe\xE2\x82\n\n";
        assert_eq!(
            events_of(stream),
            [message("a\u{FFFD}b\u{FFFD}\u{FFFD}c\u{FFFD}\u{FFFD}\u{FFFD}d\u{FFFD}e\u{FFFD}")]
        );
    }

    #[test]
    fn whatwg_9_2_6_utf8_decode_sequence_split_across_feeds() {
        // "€" is E2 82 AC and "😀" is F0 9F 98 80; `parse_every_way` cuts inside both.
        let stream = "data: 5 € 😀\n\n".as_bytes();
        assert_eq!(events_of(stream), [message("5 € 😀")]);
    }

    #[test]
    fn whatwg_9_2_6_utf8_decode_unfinished_sequence_before_line_end() {
        // The CR ends the line even though E2 82 expects one more byte: the decoder never
        // takes an ASCII byte into a multi-byte sequence.
        let stream = b"data: \xE2\x82\r\n\r\n";
        assert_eq!(events_of(stream), [message("\u{FFFD}")]);
    }

    #[test]
    fn whatwg_9_2_6_utf8_decode_nul_is_an_ordinary_character_in_data() {
        assert_eq!(events_of(b"data: a\0b\n\n"), [message("a\0b")]);
    }

    /// The Encoding Standard's "UTF-8 decoder", transcribed step by step, with the "replacement"
    /// error mode: a reference to check `String::from_utf8_lossy` against.
    fn whatwg_utf8_decode_without_bom(bytes: &[u8]) -> String {
        let mut output = String::new();
        let (mut code_point, mut bytes_seen, mut bytes_needed) = (0u32, 0u32, 0u32);
        let (mut lower_boundary, mut upper_boundary) = (0x80u8, 0xBFu8);
        let mut index = 0;
        loop {
            let Some(&byte) = bytes.get(index) else {
                // 1. "If byte is end-of-queue and UTF-8 bytes needed is not 0, set UTF-8 bytes
                // needed to 0 and return error."
                if bytes_needed != 0 {
                    output.push('\u{FFFD}');
                }
                return output;
            };
            index += 1;
            // 3. "If UTF-8 bytes needed is 0, based on byte:"
            if bytes_needed == 0 {
                match byte {
                    0x00..=0x7F => output.push(char::from(byte)),
                    0xC2..=0xDF => {
                        bytes_needed = 1;
                        code_point = u32::from(byte & 0x1F);
                    }
                    0xE0..=0xEF => {
                        if byte == 0xE0 {
                            lower_boundary = 0xA0;
                        }
                        if byte == 0xED {
                            upper_boundary = 0x9F;
                        }
                        bytes_needed = 2;
                        code_point = u32::from(byte & 0xF);
                    }
                    0xF0..=0xF4 => {
                        if byte == 0xF0 {
                            lower_boundary = 0x90;
                        }
                        if byte == 0xF4 {
                            upper_boundary = 0x8F;
                        }
                        bytes_needed = 3;
                        code_point = u32::from(byte & 0x7);
                    }
                    _ => output.push('\u{FFFD}'),
                }
                continue;
            }
            // 4. "If byte is not in the range UTF-8 lower boundary to UTF-8 upper boundary,
            // inclusive": reset, "Restore byte to ioQueue", "Return error."
            if !(lower_boundary..=upper_boundary).contains(&byte) {
                (code_point, bytes_needed, bytes_seen) = (0, 0, 0);
                (lower_boundary, upper_boundary) = (0x80, 0xBF);
                index -= 1;
                output.push('\u{FFFD}');
                continue;
            }
            // 5.-11.
            (lower_boundary, upper_boundary) = (0x80, 0xBF);
            code_point = (code_point << 6) | u32::from(byte & 0x3F);
            bytes_seen += 1;
            if bytes_seen == bytes_needed {
                output.push(char::from_u32(code_point).expect("the boundaries exclude surrogates"));
                (code_point, bytes_needed, bytes_seen) = (0, 0, 0);
            }
        }
    }

    #[test]
    fn whatwg_encoding_utf8_decode_matches_from_utf8_lossy() {
        // Every sequence of up to four bytes drawn from the bytes where the decoder's
        // decisions change (ASCII, each boundary of each lead and continuation range).
        const BYTES: [u8; 26] = [
            0x00, 0x0A, 0x0D, 0x3A, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
            0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF,
        ];
        let mut sequence = Vec::new();
        for length in 0..=4u32 {
            for mut number in 0..BYTES.len().pow(length) {
                sequence.clear();
                for _ in 0..length {
                    sequence.push(BYTES[number % BYTES.len()]);
                    number /= BYTES.len();
                }
                assert_eq!(
                    String::from_utf8_lossy(&sequence),
                    whatwg_utf8_decode_without_bom(&sequence),
                    "{sequence:02X?}"
                );
            }
        }
    }

    #[test]
    fn whatwg_9_2_6_bom_stripped_at_start_of_stream() {
        assert_eq!(events_of(b"\xEF\xBB\xBFdata: x\n\n"), [message("x")]);
    }

    #[test]
    fn whatwg_9_2_6_bom_alone_on_first_line_leaves_a_blank_line() {
        // With the BOM stripped the first line is empty: a blank line, which dispatches
        // nothing because the data buffer is empty.
        assert_eq!(events_of(b"\xEF\xBB\xBF\ndata: x\n\n"), [message("x")]);
    }

    #[test]
    fn whatwg_9_2_6_only_one_bom_stripped() {
        // The second U+FEFF is text: the field name is "\u{FEFF}data", which is ignored.
        assert_eq!(events_of(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), []);
    }

    #[test]
    fn whatwg_9_2_6_bom_after_stream_start_is_text() {
        let stream = b"data: a\n\n\xEF\xBB\xBFdata: b\n\ndata: \xEF\xBB\xBFc\n\n";
        assert_eq!(events_of(stream), [message("a"), message("\u{FEFF}c")]);
    }

    #[test]
    fn whatwg_9_2_6_partial_bom_is_not_stripped() {
        // EF BB followed by 'd' is an unfinished sequence: one U+FFFD, then "data".
        assert_eq!(events_of(b"\xEF\xBBdata: x\n\n"), []);
    }

    // --- §9.2.6: lines ------------------------------------------------------------------------

    #[test]
    fn whatwg_9_2_6_lines_end_with_crlf_lf_or_cr() {
        let expected = [message("a\nb"), message("c")];
        assert_eq!(events_of(b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"), expected);
        assert_eq!(events_of(b"data: a\ndata: b\n\ndata: c\n\n"), expected);
        assert_eq!(events_of(b"data: a\rdata: b\r\rdata: c\r\r"), expected);
        assert_eq!(events_of(b"data: a\rdata: b\n\r\ndata: c\r\n\r"), expected);
    }

    #[test]
    fn whatwg_9_2_6_cr_then_lf_in_next_feed_is_one_line_end() {
        // If the LF after the CR were a second line end, it would be a blank line and
        // dispatch "a" on its own.
        let mut parser = EventStreamParser::new();
        let mut events = Vec::new();
        parser.feed(b"data: a\r", &mut events).unwrap();
        parser.feed(b"\ndata: b\r", &mut events).unwrap();
        parser.feed(b"\n", &mut events).unwrap();
        parser.feed(b"", &mut events).unwrap();
        assert_eq!(events, []);
        parser.feed(b"\r", &mut events).unwrap();
        parser.feed(b"\n", &mut events).unwrap();
        assert_eq!(events, [message("a\nb")]);
    }

    #[test]
    fn whatwg_9_2_6_cr_cr_is_two_line_ends() {
        assert_eq!(events_of(b"data: a\r\r"), [message("a")]);
    }

    #[test]
    fn whatwg_9_2_6_lf_cr_is_two_line_ends() {
        // An LF followed by a CR is not a pair: the CR ends a second, blank line.
        assert_eq!(events_of(b"data: a\n\r"), [message("a")]);
    }

    #[test]
    fn whatwg_9_2_6_blank_line_dispatches() {
        let mut parser = EventStreamParser::new();
        let mut events = Vec::new();
        parser.feed(b"data: a\n", &mut events).unwrap();
        assert_eq!(events, []);
        parser.feed(b"\n", &mut events).unwrap();
        assert_eq!(events, [message("a")]);
    }

    #[test]
    fn whatwg_9_2_6_line_starting_with_colon_is_ignored() {
        let stream = b": comment\n:\n:data: no\ndata: yes\n: between\n\n";
        assert_eq!(events_of(stream), [message("yes")]);
    }

    #[test]
    fn whatwg_9_2_6_one_leading_space_removed_from_value() {
        let stream = b"data:  two spaces\n\ndata:\tno space\n\ndata: trailing \n\n";
        assert_eq!(events_of(stream), [message(" two spaces"), message("\tno space"), message("trailing ")]);
    }

    #[test]
    fn whatwg_9_2_6_field_is_split_at_first_colon() {
        let stream = b"data: a: b:c\n\n";
        assert_eq!(events_of(stream), [message("a: b:c")]);
    }

    #[test]
    fn whatwg_9_2_6_line_without_colon_is_field_with_empty_value() {
        // "event" alone sets an empty type (so "message"); "id" alone resets the ID.
        let stream = b"id: 7\ndata: a\n\nevent\nid\ndata\n\n";
        assert_eq!(events_of(stream), [event("message", "a", "7"), event("message", "", "")]);
    }

    #[test]
    fn whatwg_9_2_6_field_names_compared_literally() {
        let stream = b"Data: a\nDATA: b\ndata : c\n data: d\nevent : x\nEvent: y\ndata: e\n\n";
        assert_eq!(events_of(stream), [message("e")]);
    }

    #[test]
    fn whatwg_9_2_6_unknown_field_ignored() {
        let stream = b"foo: bar\nretries: 5\ndata: a\nx\n\n";
        let outcome = parse_every_way(stream);
        assert_eq!(outcome.events, [message("a")]);
        assert_eq!(outcome.retry, None);
    }

    // --- §9.2.6: fields -----------------------------------------------------------------------

    #[test]
    fn whatwg_9_2_6_event_field_sets_event_type() {
        let stream = b"event: first\nevent: second\ndata: a\n\n";
        assert_eq!(events_of(stream), [event("second", "a", "")]);
    }

    #[test]
    fn whatwg_9_2_6_event_type_reset_after_dispatch() {
        let stream = b"event: gap\ndata: a\n\ndata: b\n\n";
        assert_eq!(events_of(stream), [event("gap", "a", ""), message("b")]);
    }

    #[test]
    fn whatwg_9_2_6_data_field_appends_value_and_lf() {
        let stream = b"data: a\ndata:\ndata: b\ndata\n\n";
        assert_eq!(events_of(stream), [message("a\n\nb\n")]);
    }

    #[test]
    fn whatwg_9_2_6_id_field_sets_last_event_id_buffer() {
        let stream = b"id: 1\ndata: a\n\n";
        let outcome = parse_every_way(stream);
        assert_eq!(outcome.events, [event("message", "a", "1")]);
        assert_eq!(outcome.last_event_id, "1");
    }

    #[test]
    fn whatwg_9_2_6_id_persists_across_events() {
        let stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n";
        assert_eq!(
            events_of(stream),
            [event("message", "a", "1"), event("message", "b", "1"), event("message", "c", "2"),]
        );
    }

    #[test]
    fn whatwg_9_2_6_empty_id_resets_last_event_id() {
        let stream = b"id: 1\ndata: a\n\nid:\ndata: b\n\n";
        let outcome = parse_every_way(stream);
        assert_eq!(outcome.events, [event("message", "a", "1"), event("message", "b", "")]);
        assert_eq!(outcome.last_event_id, "");
    }

    #[test]
    fn whatwg_9_2_6_id_containing_nul_ignored() {
        let stream = b"id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n";
        let outcome = parse_every_way(stream);
        assert_eq!(outcome.events, [event("message", "a", "1"), event("message", "b", "1")]);
        assert_eq!(outcome.last_event_id, "1");
    }

    #[test]
    fn whatwg_9_2_6_last_event_id_string_set_at_dispatch() {
        // An id in a block without data still counts at the blank line (dispatch step 1
        // comes before the empty-data check)...
        assert_eq!(parse_every_way(b"id: 7\n\n").last_event_id, "7");
        // ...but not before it.
        assert_eq!(parse_every_way(b"id: 7\ndata: x\n").last_event_id, "");
    }

    #[test]
    fn whatwg_9_2_6_retry_sets_reconnection_time() {
        assert_eq!(parse_every_way(b"retry: 2000\n").retry, Some(2000));
        assert_eq!(parse_every_way(b"retry:0\n").retry, Some(0));
        assert_eq!(parse_every_way(b"retry: 007\n").retry, Some(7));
        assert_eq!(parse_every_way(b"retry: 1000\nretry: 3000\n").retry, Some(3000));
        // Taken when read, whether or not the block is ever dispatched.
        let outcome = parse_every_way(b"data: a\nretry: 5\n");
        assert_eq!((outcome.events.len(), outcome.retry), (0, Some(5)));
    }

    #[test]
    fn whatwg_9_2_6_retry_ignored_unless_only_ascii_digits() {
        for value in ["", "  100", "100 ", "-1", "+1", "1.5", "1e3", "10ms", "0x10", "\u{663}", "１２"] {
            let stream = format!("retry: 1234\nretry: {value}\n");
            let outcome = parse_every_way(stream.as_bytes());
            assert_eq!(outcome.retry, Some(1234), "retry: {value:?}");
        }
    }

    #[test]
    fn retry_too_large_for_u64_saturates() {
        let outcome = parse_every_way(b"retry: 99999999999999999999999999\n");
        assert_eq!(outcome.retry, Some(u64::MAX));
        assert_eq!(parse_every_way(b"retry: 18446744073709551615\n").retry, Some(u64::MAX));
    }

    // --- §9.2.6: dispatch ---------------------------------------------------------------------

    #[test]
    fn whatwg_9_2_6_dispatch_without_data_fires_nothing_and_resets_type() {
        let stream = b"event: ping\n\n\n\ndata: a\n\n";
        assert_eq!(events_of(stream), [message("a")]);
    }

    #[test]
    fn whatwg_9_2_6_dispatch_removes_one_trailing_lf() {
        assert_eq!(events_of(b"data:\ndata:\n\n"), [message("\n")]);
    }

    #[test]
    fn whatwg_9_2_6_dispatch_event_type_defaults_to_message() {
        let stream = b"data: a\n\nevent:\ndata: b\n\n";
        assert_eq!(events_of(stream), [message("a"), message("b")]);
    }

    #[test]
    fn whatwg_9_2_6_end_of_stream_discards_incomplete_event() {
        let mut parser = EventStreamParser::new();
        let mut events = Vec::new();
        parser.feed(b"data: a\n\nevent: x\nid: 9\ndata: b\ndata: partial", &mut events).unwrap();
        parser.finish();
        assert_eq!(events, [message("a")]);
        assert_eq!(parser.last_event_id(), "");
        // Nothing of the discarded block leaks into the next stream.
        parser.feed(b"data: c\n\n", &mut events).unwrap();
        assert_eq!(events, [message("a"), message("c")]);
    }

    #[test]
    fn finish_keeps_last_event_id_and_retry_for_the_reconnection() {
        let mut parser = EventStreamParser::new();
        let mut events = Vec::new();
        parser.feed(b"retry: 500\nid: 4\ndata: a\n\ndata: b\r", &mut events).unwrap();
        parser.finish();
        assert_eq!(parser.last_event_id(), "4");
        assert_eq!(parser.retry(), Some(500));
        // A new stream: its BOM is stripped again, a leading LF is not the end of the old CR,
        // and events without id carry the ID the client resumed from.
        parser.feed(b"\xEF\xBB\xBF\ndata: c\n\n", &mut events).unwrap();
        assert_eq!(events, [event("message", "a", "4"), event("message", "c", "4")]);
    }

    #[test]
    fn last_event_id_shared_between_events_not_copied() {
        let mut parser = EventStreamParser::new();
        let mut events = Vec::new();
        parser.feed(b"id: 42\ndata\n\ndata\n\n", &mut events).unwrap();
        assert!(Arc::ptr_eq(&events[0].last_event_id, &events[1].last_event_id));
    }

    #[test]
    fn a_line_break_is_found_where_a_byte_search_finds_it_at_every_position_and_alignment() {
        for length in 0..40 {
            for at in 0..=length {
                for byte in [b'\n', b'\r'] {
                    // Every other byte value around it, high bits included, to catch a borrow.
                    let mut bytes: Vec<u8> = (0..length).map(|i| [b'a', 0x0b, 0x0c, 0x09, 0xff, 0x8a][i % 6]).collect();
                    if at < length {
                        bytes[at] = byte;
                        bytes[length - 1 - (length - 1 - at) / 2] = byte ^ 0x07;
                    }
                    for start in 0..bytes.len().min(8) {
                        let naive = bytes[start..].iter().position(|&b| b == b'\r' || b == b'\n');
                        assert_eq!(line_break(&bytes[start..]), naive, "{bytes:?} from {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn feed_with_lends_the_events_feed_copies() {
        let stream = b"retry:5\nid:1\ndata:a\n\nevent:t\ndata:b\ndata:c\n\n: x\n\nid\ndata\n\n";
        let mut copied = Vec::new();
        EventStreamParser::new().feed(stream, &mut copied).unwrap();
        let mut lent = Vec::new();
        EventStreamParser::new()
            .feed_with(stream, |lent_event| {
                lent.push(event(lent_event.event_type, lent_event.data, lent_event.last_event_id));
            })
            .unwrap();
        assert_eq!(lent, copied);
        assert_eq!(copied.len(), 3);
    }

    // --- limits -------------------------------------------------------------------------------

    const SMALL_LIMITS: ParserLimits = ParserLimits { max_line_bytes: 8, max_data_bytes: 12 };

    #[test]
    fn a_line_event_is_byte_for_byte_what_encode_event_writes() {
        for (id, data) in [
            ("k3f9-17", r#"{"id":"k3f9-17","text":"Hi","time":1678900000123}"#),
            ("", ""),
            (" 1700000000123-4", " leading space, \u{2028} and ünïcödé"),
        ] {
            let mut encoded = Vec::new();
            encode_event(&mut encoded, Some(id), None, data).unwrap();
            assert_eq!(LineEvent::message(id, data).unwrap().pieces().concat(), encoded, "{id:?} {data:?}");
        }
    }

    #[test]
    fn whatwg_9_2_6_a_line_event_refuses_what_encode_event_refuses() {
        assert_eq!(LineEvent::message("a\nb", "x").unwrap_err(), EncodeError::LineBreakInId);
        assert_eq!(LineEvent::message("a\rb", "x").unwrap_err(), EncodeError::LineBreakInId);
        assert_eq!(LineEvent::message("a\0b", "x").unwrap_err(), EncodeError::NullInId);
    }

    #[test]
    fn a_line_event_reads_back_as_one_message_event() {
        let envelope = r#"{"id":"k3f9-1","text":"a\u000ab","time":0}"#;
        let bytes = LineEvent::message("k3f9-1", envelope).unwrap().pieces().concat();
        assert_eq!(bytes, format!("id:k3f9-1\ndata:{envelope}\n\n").as_bytes());
        assert_eq!(events_of(&bytes), [event("message", envelope, "k3f9-1")]);
    }

    #[test]
    fn whatwg_9_2_6_a_line_event_keeps_a_leading_space_of_its_id_and_data() {
        let bytes = LineEvent::message(" 7", "  x").unwrap().pieces().concat();
        assert_eq!(bytes, b"id:  7\ndata:   x\n\n");
        assert_eq!(events_of(&bytes), [event("message", "  x", " 7")]);
    }

    fn small_parser() -> EventStreamParser {
        EventStreamParser::with_limits(SMALL_LIMITS)
    }

    #[test]
    fn line_at_limit_accepted() {
        let mut parser = small_parser();
        let mut events = Vec::new();
        parser.feed(b"data: ab\n\n", &mut events).unwrap();
        parser.feed(b"data", &mut events).unwrap();
        parser.feed(b": cd\n\n", &mut events).unwrap();
        assert_eq!(events, [message("ab"), message("cd")]);
    }

    #[test]
    fn line_over_limit_stops_the_stream() {
        for stream in [&b"data: a\n\ndata: abc\n\ndata: b\n\n"[..], b"data: a\n\n: comment!\n"] {
            let whole = parse_with_limits(SMALL_LIMITS, [stream]);
            assert_eq!(whole.events, [message("a")]);
            assert_eq!(whole.error, Some(ParseError::LineTooLong { limit: 8 }));
            let outcome = parse_with_limits(SMALL_LIMITS, stream.chunks(1));
            assert_eq!(outcome.events, [message("a")]);
            assert_eq!(outcome.error, Some(ParseError::LineTooLong { limit: 8 }));
        }
        // Also when the line never ends: the limit holds while it is being buffered.
        let mut parser = small_parser();
        let mut events = Vec::new();
        for _ in 0..8 {
            parser.feed(b"x", &mut events).unwrap();
        }
        assert_eq!(parser.feed(b"x", &mut events), Err(ParseError::LineTooLong { limit: 8 }));
    }

    #[test]
    fn data_over_limit_stops_the_stream() {
        // 12 bytes: three times "abc\n" fit, a fourth does not.
        let mut parser = small_parser();
        let mut events = Vec::new();
        let three = b"data:abc\ndata:abc\ndata:abc\n\n";
        parser.feed(three, &mut events).unwrap();
        let result = parser.feed(b"data:abc\ndata:abc\ndata:abc\ndata:abc\n\n", &mut events);
        assert_eq!(result, Err(ParseError::DataTooLong { limit: 12 }));
        assert_eq!(events, [message("abc\nabc\nabc")]);
    }

    #[test]
    fn error_is_sticky_until_finish() {
        let mut parser = small_parser();
        let mut events = Vec::new();
        let error = Err(ParseError::LineTooLong { limit: 8 });
        assert_eq!(parser.feed(b"data: too long\n", &mut events), error);
        assert_eq!(parser.feed(b"data: a\n\n", &mut events), error);
        assert_eq!(events, []);
        parser.finish();
        parser.feed(b"data: a\n\n", &mut events).unwrap();
        assert_eq!(events, [message("a")]);
    }

    #[test]
    fn one_mebibyte_fed_byte_by_byte_is_linear() {
        // A 512 KiB data line, then 512 KiB of small events; feeding it one byte per call
        // must not rescan the partial line on every byte (that would be 2^38 steps).
        let mut stream = Vec::new();
        let long_text = "x".repeat(512 * 1024);
        encode_event(&mut stream, Some("long"), None, &long_text).unwrap();
        let mut small_events = 0;
        while stream.len() < 1024 * 1024 {
            encode_event(&mut stream, Some("s"), Some("tick"), "y\r\nz").unwrap();
            small_events += 1;
        }
        let mut parser = EventStreamParser::new();
        let mut events = Vec::new();
        for byte in stream.chunks(1) {
            parser.feed(byte, &mut events).unwrap();
        }
        assert_eq!(events.len(), 1 + small_events);
        assert_eq!(events[0].data, long_text);
        assert_eq!(events[1], event("tick", "y\nz", "s"));
    }

    // --- the encoder --------------------------------------------------------------------------

    fn encoded_event(id: Option<&str>, event_type: Option<&str>, data: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_event(&mut out, id, event_type, data).unwrap();
        out
    }

    #[test]
    fn encode_event_writes_id_event_data_and_blank_line() {
        assert_eq!(encoded_event(Some("k3f9-17"), Some("gap"), "Hi"), b"id:k3f9-17\nevent:gap\ndata:Hi\n\n");
        assert_eq!(encoded_event(None, None, "Hi"), b"data:Hi\n\n");
    }

    #[test]
    fn whatwg_9_2_6_a_message_event_needs_no_event_line() {
        // Dispatch steps 5 and 6: the type is "message" unless "the event type buffer has a
        // value other than the empty string", so `None` is written as nothing and read back
        // as a message.
        assert_eq!(encoded_event(Some("1"), None, "Hi"), b"id:1\ndata:Hi\n\n");
        assert_eq!(round_trip(Some("1"), None, "Hi"), event("message", "Hi", "1"));
    }

    #[test]
    fn whatwg_9_2_6_the_space_after_the_colon_is_written_only_before_a_value_that_starts_with_one() {
        // "If value starts with a U+0020 SPACE character, remove it from value": one space is
        // removed, so a value that starts with one gets one more, and nothing else needs it.
        assert_eq!(encoded_event(Some(" 1"), Some(" t"), " a\nb"), b"id:  1\nevent:  t\ndata:  a\ndata:b\n\n");
        assert_eq!(round_trip(Some(" 1"), Some(" t"), " a\nb"), event(" t", " a\nb", " 1"));
    }

    #[test]
    fn encode_event_writes_one_data_line_per_line() {
        assert_eq!(encoded_event(None, None, "a\nb\r\nc\rd\n"), b"data:a\ndata:b\ndata:c\ndata:d\ndata:\n\n");
        assert_eq!(encoded_event(None, None, ""), b"data:\n\n");
    }

    #[test]
    fn encode_event_refuses_line_break_or_nul_in_id_and_line_break_in_type() {
        let cases = [
            (Some("1\n2"), None, EncodeError::LineBreakInId),
            (Some("1\r"), None, EncodeError::LineBreakInId),
            (Some("1\0"), None, EncodeError::NullInId),
            (None, Some("a\nb"), EncodeError::LineBreakInEventType),
            (Some("1"), Some("\r"), EncodeError::LineBreakInEventType),
        ];
        for (id, event_type, error) in cases {
            let mut out = b"kept".to_vec();
            assert_eq!(encode_event(&mut out, id, event_type, "x"), Err(error));
            assert_eq!(out, b"kept", "nothing written on error");
        }
        // A NUL is fine in an event type: only the id field ignores it.
        let outcome = parse_every_way(&encoded_event(None, Some("a\0b"), "x"));
        assert_eq!(outcome.events, [event("a\0b", "x", "")]);
    }

    #[test]
    fn encode_retry_sets_reconnection_time_and_fires_nothing() {
        let mut out = Vec::new();
        encode_retry(&mut out, 2000);
        assert_eq!(out, b"retry:2000\n\n");
        let outcome = parse_every_way(&out);
        assert_eq!((outcome.events, outcome.retry), (vec![], Some(2000)));
        encode_retry(&mut out, u64::MAX);
        assert_eq!(parse_every_way(&out).retry, Some(u64::MAX));
    }

    #[test]
    fn encode_comment_writes_comment_lines_that_fire_nothing() {
        let mut out = Vec::new();
        encode_comment(&mut out, "keepalive");
        assert_eq!(out, b": keepalive\n\n");
        out.clear();
        encode_comment(&mut out, "two\r\nlines");
        assert_eq!(out, b": two\n: lines\n\n");
        assert_eq!(parse_every_way(&out).events, []);
    }

    /// Encodes one event, parses it back, and returns what the client sees.
    fn round_trip(id: Option<&str>, event_type: Option<&str>, data: &str) -> Event {
        let events = events_of(&encoded_event(id, event_type, data));
        assert_eq!(events.len(), 1);
        events.into_iter().next().expect("one event, checked above")
    }

    #[test]
    fn round_trip_keeps_id_type_and_data() {
        for data in [
            "plain",
            "",
            "line\nbreaks\n\nand a trailing one\n",
            "\n",
            " leading and trailing spaces ",
            ": looks like a comment",
            "data: looks like a field",
            "unicode: é € 😀 \u{2028} \u{85} \u{FEFF} \0",
        ] {
            let expected = event("update", data, "k3f9-17");
            assert_eq!(round_trip(Some("k3f9-17"), Some("update"), data), expected);
        }
        assert_eq!(round_trip(Some(" spaced id "), None, "x").last_event_id.as_ref(), " spaced id ");
        assert_eq!(round_trip(None, Some(" t"), "x").event_type, " t");
    }

    #[test]
    fn round_trip_turns_crlf_and_lone_cr_into_lf() {
        assert_eq!(round_trip(None, None, "a\r\nb").data, "a\nb");
        assert_eq!(round_trip(None, None, "a\rb").data, "a\nb");
        assert_eq!(round_trip(None, None, "a\r\n\r\n").data, "a\n\n");
        assert_eq!(round_trip(None, None, "\r\r\n\n").data, "\n\n\n");
    }

    #[test]
    fn round_trip_json_envelope_stays_on_one_data_line() {
        // JSON escapes control characters, so an envelope has no raw line break whatever
        // the message text.
        let envelope = r#"{"id":"k3f9-17","text":"two\nlines\r\n","time":1678900000123}"#;
        let bytes = encoded_event(Some("k3f9-17"), None, envelope);
        assert_eq!(bytes.windows(5).filter(|w| w == b"data:").count(), 1);
        assert_eq!(round_trip(Some("k3f9-17"), None, envelope).data, envelope);
    }

    #[test]
    fn round_trip_id_none_keeps_previous_id_and_empty_id_resets_it() {
        let mut stream = Vec::new();
        encode_event(&mut stream, Some("1"), None, "a").unwrap();
        encode_event(&mut stream, None, None, "b").unwrap();
        encode_event(&mut stream, Some(""), None, "c").unwrap();
        assert_eq!(
            events_of(&stream),
            [event("message", "a", "1"), event("message", "b", "1"), event("message", "c", ""),]
        );
    }

    #[test]
    fn server_stream_blocks_combine_in_any_order() {
        // What `GET /sse/{channel}` writes: retry first, then events, a gap notice and
        // keepalive comments in between.
        let mut stream = Vec::new();
        encode_retry(&mut stream, 3000);
        encode_comment(&mut stream, "keepalive");
        encode_event(&mut stream, Some("k3f9-1"), Some("gap"), "{}").unwrap();
        encode_event(&mut stream, Some("k3f9-2"), None, "one").unwrap();
        encode_comment(&mut stream, "keepalive");
        encode_retry(&mut stream, 1000);
        encode_event(&mut stream, Some("k3f9-3"), None, "two\nlines").unwrap();
        let outcome = parse_every_way(&stream);
        assert_eq!(
            outcome.events,
            [event("gap", "{}", "k3f9-1"), event("message", "one", "k3f9-2"), event("message", "two\nlines", "k3f9-3"),]
        );
        assert_eq!(outcome.retry, Some(1000));
        assert_eq!(outcome.last_event_id, "k3f9-3");
    }
}
