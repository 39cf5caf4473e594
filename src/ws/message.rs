//! Messages (RFC 6455 §5.4, §5.6, §6.2), close bodies and status codes (§5.5.1, §7.4).
//!
//! Applications see messages, not frames. A message is one frame with FIN set, or a *fragmented*
//! message: a Text or Binary frame with FIN clear, any number of Continuation frames with FIN
//! clear, and a final Continuation frame with FIN set (§5.4). Control frames may sit between the
//! fragments; they are handled by the session and never reach the [`Assembler`].
//!
//! The [`Assembler`] joins the payload pieces of data frames into messages and enforces the
//! rules that span frames:
//!
//! - the order of fragments (a Continuation needs a message to continue, a new Text or Binary
//!   frame must not interrupt one): 1002;
//! - the size limit, checked against the *declared* length of each frame before any of its
//!   payload is stored: 1009;
//! - UTF-8 in text messages, checked on every piece as it arrives, so the connection fails
//!   at the first invalid byte, even in the middle of a frame: 1007.
//!
//! This file also holds the bodies of Close frames: [`parse_close_body`] for the payload of a
//! received one, and [`close_body`] for one we send. The status codes they carry are
//! [`CloseCode`], in [`super::close`].

#![forbid(unsafe_code)]

use std::fmt;

use super::close::CloseCode;
use super::frame::MAX_CONTROL_PAYLOAD;
use super::utf8::{into_string, Utf8Validator};

/// RFC 6455 §5.5: a control payload is at most 125 bytes, and a close body spends 2 of them
/// on the status code, which leaves 123 for the reason.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// The data types of RFC 6455 §5.6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// "The "Payload data" is text data encoded as UTF-8."
    Text,
    /// "The "Payload data" is arbitrary binary data whose interpretation is solely up to the
    /// application layer."
    Binary,
}

/// A complete message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// How the connection ended, from a completed closing handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// The status code in the peer's Close frame; `None` when its body was empty (what the
    /// WebSocket API reports as 1005, §7.1.5).
    pub code: Option<CloseCode>,
    /// The peer's reason, "the empty string" if it gave none (§7.1.6).
    pub reason: String,
    /// The peer sent the first Close frame (and we answered it), rather than answering ours.
    pub initiated_by_peer: bool,
}

/// A message-level rule broken by the peer. Each variant maps to one close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// A Continuation frame with no fragmented message in progress.
    ContinuationWithoutMessage,
    /// A Text or Binary frame while a fragmented message is still in progress.
    MessageInterrupted,
    /// A text message (or close reason) that is not UTF-8.
    InvalidUtf8,
    /// The message would grow beyond the configured limit.
    MessageTooBig { limit: usize },
    /// A Close frame whose body is 1 byte: too short for a status code.
    CloseBodyTooShort,
    /// A Close frame with a status code that must not be on the wire.
    InvalidCloseCode(u16),
}

impl MessageError {
    /// The status code of the Close frame that answers this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            MessageError::InvalidUtf8 => CloseCode::INVALID_DATA,
            MessageError::MessageTooBig { .. } => CloseCode::TOO_BIG,
            MessageError::ContinuationWithoutMessage
            | MessageError::MessageInterrupted
            | MessageError::CloseBodyTooShort
            | MessageError::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the Close frame and the log (ASCII, well under 123 bytes).
    pub fn describe(&self) -> &'static str {
        match self {
            MessageError::ContinuationWithoutMessage => "continuation frame without a message",
            MessageError::MessageInterrupted => "new message inside a fragmented message",
            MessageError::InvalidUtf8 => "invalid UTF-8",
            MessageError::MessageTooBig { .. } => "message too big",
            MessageError::CloseBodyTooShort => "close frame body of 1 byte",
            MessageError::InvalidCloseCode(_) => "invalid close code",
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::MessageTooBig { limit } => write!(f, "message over {limit} bytes"),
            MessageError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            _ => f.write_str(self.describe()),
        }
    }
}

impl std::error::Error for MessageError {}

/// Reads the body of a received Close frame: `(status code, reason)`.
pub fn parse_close_body(body: &[u8]) -> Result<(Option<CloseCode>, String), MessageError> {
    // RFC 6455 §5.5.1: "The Close frame MAY contain a body".
    let Some((code, reason)) = body.split_first_chunk::<2>() else {
        return match body.len() {
            0 => Ok((None, String::new())),
            // "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned
            // integer (in network byte order) representing a status code".
            _ => Err(MessageError::CloseBodyTooShort),
        };
    };
    let code = CloseCode(u16::from_be_bytes(*code));
    if !code.is_allowed_on_wire() {
        return Err(MessageError::InvalidCloseCode(code.0));
    }
    // "Following the 2-byte integer, the body MAY contain UTF-8-encoded data with value
    // /reason/"; §8.1 makes invalid UTF-8 a failure like anywhere else.
    let reason = std::str::from_utf8(reason).map_err(|_| MessageError::InvalidUtf8)?;
    Ok((Some(code), reason.to_owned()))
}

/// The body of a Close frame we send: the code in network byte order, then the reason. A
/// reason over [`MAX_CLOSE_REASON`] bytes is cut at the last character boundary that fits, so
/// the body stays UTF-8. Without a code the body is empty (no reason without a code, §5.5.1).
/// Returns the bytes and their length.
pub fn close_body(code: Option<CloseCode>, reason: &str) -> ([u8; MAX_CONTROL_PAYLOAD], usize) {
    let mut body = [0u8; MAX_CONTROL_PAYLOAD];
    let Some(code) = code else { return (body, 0) };
    body[..2].copy_from_slice(&code.0.to_be_bytes());
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    body[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    (body, 2 + end)
}

/// A message whose fragments are still arriving (`kind` is `Some`), or, between messages, the
/// emptied room for the next one.
#[derive(Debug, Default)]
struct Partial {
    kind: Option<MessageKind>,
    data: Vec<u8>,
    /// Follows text messages across all their pieces; unused for binary ones.
    utf8: Utf8Validator,
}

/// The largest buffer [`Assembler::recycle`] keeps for the next message: a connection that
/// once received a large message does not hold its size until it goes quiet.
pub const RECYCLED_BYTES: usize = 4096;

/// Joins the payloads of data frames into messages. See the module documentation.
#[derive(Debug)]
pub struct Assembler {
    /// The largest message accepted, in bytes, over all its fragments.
    max_message: usize,
    /// The message being received, from its first frame's header to its last frame's end.
    /// Boxed: 48 bytes that an idle WebSocket does not need. Between messages the emptied box
    /// is kept for the next one until [`Assembler::release_spare`]: an allocation and a free
    /// for every message were 4% of the instructions of a WebSocket echo (callgrind).
    partial: Option<Box<Partial>>,
}

impl Assembler {
    pub fn new(max_message: usize) -> Assembler {
        Assembler { max_message, partial: None }
    }

    /// A fragmented message has started and not finished.
    pub fn is_in_progress(&self) -> bool {
        self.active().is_some()
    }

    fn active(&self) -> Option<&Partial> {
        self.partial.as_deref().filter(|partial| partial.kind.is_some())
    }

    fn active_mut(&mut self) -> Option<&mut Partial> {
        self.partial.as_deref_mut().filter(|partial| partial.kind.is_some())
    }

    /// Frees the room kept for the next message, unless one is in progress: the connection
    /// has gone quiet (it frees its own buffers at the same moment).
    pub fn release_spare(&mut self) {
        if !self.is_in_progress() {
            self.partial = None;
        }
    }

    /// Bytes of memory kept between messages for the next one, until
    /// [`Assembler::release_spare`] (none while a message is in progress: its bytes are
    /// [`Assembler::buffered_bytes`]).
    pub fn spare_bytes(&self) -> usize {
        match &self.partial {
            Some(partial) if partial.kind.is_none() => size_of::<Partial>() + partial.data.capacity(),
            _ => 0,
        }
    }

    /// Takes back a delivered message's buffer as the room for the next message, so that a
    /// connection receiving message after message reuses one buffer instead of allocating and
    /// freeing one per message (about 7% of a 32-byte echo's instructions, callgrind). Kept
    /// only if no larger than [`RECYCLED_BYTES`] and only between messages; counted in
    /// [`Assembler::spare_bytes`] and freed with the rest by [`Assembler::release_spare`].
    pub fn recycle(&mut self, message: Message) {
        let mut data = match message {
            Message::Text(text) => text.into_bytes(),
            Message::Binary(data) => data,
        };
        if data.capacity() > RECYCLED_BYTES {
            return;
        }
        if let Some(partial) = self.partial.as_deref_mut().filter(|partial| partial.kind.is_none()) {
            if partial.data.capacity() == 0 {
                data.clear();
                partial.data = data;
            }
        }
    }

    /// Bytes of the message in progress held so far (what a memory budget counts).
    pub fn buffered_bytes(&self) -> usize {
        self.partial.as_ref().map_or(0, |partial| partial.data.len())
    }

    /// The header of a Text or Binary frame arrived: a new message starts.
    pub fn begin_message(&mut self, kind: MessageKind, payload_len: u64) -> Result<(), MessageError> {
        // RFC 6455 §5.4: "The fragments of one message MUST NOT be interleaved between the
        // fragments of another message unless an extension has been negotiated that can
        // interpret the interleaving."
        if self.is_in_progress() {
            return Err(MessageError::MessageInterrupted);
        }
        self.check_size(0, payload_len)?;
        // No `reserve(payload_len)`: a peer could announce 16 MiB and send nothing. The buffer
        // grows as bytes actually arrive.
        let partial = self.partial.get_or_insert_with(Box::default);
        partial.kind = Some(kind);
        partial.utf8 = Utf8Validator::new();
        Ok(())
    }

    /// The header of a Continuation frame arrived.
    pub fn continue_message(&mut self, payload_len: u64) -> Result<(), MessageError> {
        // RFC 6455 §5.4: "A fragmented message consists of a single frame with the FIN bit
        // clear and an opcode other than 0, followed by zero or more frames with the FIN bit
        // clear and the opcode set to 0". A continuation must continue something.
        let Some(partial) = self.active() else {
            return Err(MessageError::ContinuationWithoutMessage);
        };
        self.check_size(partial.data.len(), payload_len)
    }

    /// The next piece of the current frame's payload.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), MessageError> {
        let Some(partial) = self.active_mut() else { return Ok(()) };
        if partial.kind == Some(MessageKind::Text) {
            // RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds
            // that the byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST
            // _Fail the WebSocket Connection_." Checked before storing, piece by piece.
            partial.utf8.feed(piece).map_err(|_| MessageError::InvalidUtf8)?;
        }
        partial.data.extend_from_slice(piece);
        Ok(())
    }

    /// Appends bytes that `fill` writes straight into the message (a decompressor's output),
    /// then checks them as [`Assembler::push`] checks its pieces. `fill` gets the message
    /// buffer and the size limit it must not take it past.
    pub fn push_with<E: From<MessageError>>(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let max_message = self.max_message;
        let Some(partial) = self.active_mut() else { return Ok(()) };
        let start = partial.data.len();
        fill(&mut partial.data, max_message)?;
        if partial.kind == Some(MessageKind::Text) {
            // RFC 6455 §8.1, as in `push`: the decompressed text, checked as it arrives.
            partial.utf8.feed(&partial.data[start..]).map_err(|_| MessageError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// The current frame's payload is complete. With `fin`, so is the message, which is returned.
    pub fn end_frame(&mut self, fin: bool) -> Result<Option<Message>, MessageError> {
        if !fin {
            return Ok(None);
        }
        let Some(partial) = self.partial.as_deref_mut() else { return Ok(None) };
        let Some(kind) = partial.kind.take() else { return Ok(None) };
        let data = std::mem::take(&mut partial.data);
        match kind {
            MessageKind::Binary => Ok(Some(Message::Binary(data))),
            MessageKind::Text => {
                // RFC 6455 §5.6: "a particular text frame might include a partial UTF-8
                // sequence; however, the whole message MUST contain valid UTF-8."
                partial.utf8.finish().map_err(|_| MessageError::InvalidUtf8)?;
                // A `String` needs the bytes proven once more (skipping that is `unsafe`):
                // the vector check does it, faster than std's (it cannot fail here).
                let text = into_string(data).map_err(|_| MessageError::InvalidUtf8)?;
                Ok(Some(Message::Text(text)))
            }
        }
    }

    /// Drops a message in progress (the connection is closing).
    pub fn abandon(&mut self) {
        self.partial = None;
    }

    /// RFC 6455 §10.4: "Such an implementation SHOULD impose a limit on frame sizes and the
    /// total message size after reassembly from multiple frames."
    fn check_size(&self, stored: usize, payload_len: u64) -> Result<(), MessageError> {
        let total = (stored as u64).checked_add(payload_len);
        match total {
            Some(total) if total <= self.max_message as u64 => Ok(()),
            _ => Err(MessageError::MessageTooBig { limit: self.max_message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_5_1_empty_close_body_has_no_code() {
        assert_eq!(parse_close_body(b""), Ok((None, String::new())));
    }

    #[test]
    fn rfc6455_5_5_1_close_body_of_one_byte_is_a_protocol_error() {
        assert_eq!(parse_close_body(&[0x03]), Err(MessageError::CloseBodyTooShort));
        assert_eq!(MessageError::CloseBodyTooShort.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_5_5_1_close_body_is_code_then_utf8_reason() {
        assert_eq!(parse_close_body(&[0x03, 0xE8]), Ok((Some(CloseCode::NORMAL), String::new())));
        let body = [&[0x0F, 0xA0][..], "bye κόσμε".as_bytes()].concat();
        assert_eq!(parse_close_body(&body), Ok((Some(CloseCode(4000)), "bye κόσμε".into())));
    }

    #[test]
    fn rfc6455_7_4_invalid_close_code_is_a_protocol_error() {
        assert_eq!(parse_close_body(&[0x03, 0xED]), Err(MessageError::InvalidCloseCode(1005)));
        assert_eq!(MessageError::InvalidCloseCode(1005).close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_8_1_close_reason_must_be_utf8() {
        let body = [0x03, 0xE8, b'a', 0xED, 0xA0, 0x80];
        assert_eq!(parse_close_body(&body), Err(MessageError::InvalidUtf8));
        assert_eq!(MessageError::InvalidUtf8.close_code(), CloseCode::INVALID_DATA);
    }

    #[test]
    fn close_body_round_trips_and_caps_the_reason() {
        let (body, len) = close_body(Some(CloseCode::GOING_AWAY), "shutting down");
        assert_eq!(parse_close_body(&body[..len]), Ok((Some(CloseCode::GOING_AWAY), "shutting down".into())));
        let (_, len) = close_body(None, "ignored without a code");
        assert_eq!(len, 0);
        let (_, len) = close_body(Some(CloseCode::NORMAL), &"x".repeat(200));
        assert_eq!(len, MAX_CONTROL_PAYLOAD);
        // 61 two-byte characters fit in 123 bytes with one byte to spare: it stays unused.
        let (body, len) = close_body(Some(CloseCode::NORMAL), &"é".repeat(100));
        assert_eq!(len, 2 + 122);
        assert_eq!(parse_close_body(&body[..len]), Ok((Some(CloseCode::NORMAL), "é".repeat(61))));
    }

    #[test]
    fn rfc6455_5_4_fragments_are_joined_in_order() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Text, 3).expect("first fragment");
        assembler.push(b"Hel").expect("valid");
        assert_eq!(assembler.end_frame(false), Ok(None));
        assert!(assembler.is_in_progress());
        assembler.continue_message(2).expect("continuation");
        assembler.push(b"lo").expect("valid");
        assert_eq!(assembler.end_frame(true), Ok(Some(Message::Text("Hello".into()))));
        assert!(!assembler.is_in_progress());
    }

    #[test]
    fn rfc6455_5_4_continuation_without_message_is_a_protocol_error() {
        let mut assembler = Assembler::new(100);
        assert_eq!(assembler.continue_message(1), Err(MessageError::ContinuationWithoutMessage));
        assert_eq!(MessageError::ContinuationWithoutMessage.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_5_4_new_message_inside_fragmented_message_is_a_protocol_error() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Binary, 1).expect("first fragment");
        assert_eq!(assembler.end_frame(false), Ok(None));
        assert_eq!(assembler.begin_message(MessageKind::Text, 1), Err(MessageError::MessageInterrupted));
        assert_eq!(MessageError::MessageInterrupted.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_10_4_declared_size_over_the_limit_is_too_big() {
        let mut assembler = Assembler::new(10);
        assert_eq!(assembler.begin_message(MessageKind::Binary, 11), Err(MessageError::MessageTooBig { limit: 10 }));
        assembler.begin_message(MessageKind::Binary, 6).expect("fits");
        assembler.push(&[0; 6]).expect("binary");
        assert_eq!(assembler.end_frame(false), Ok(None));
        assert_eq!(assembler.continue_message(4), Ok(()), "exactly at the limit");
        assert_eq!(assembler.continue_message(5), Err(MessageError::MessageTooBig { limit: 10 }));
        assert_eq!(assembler.continue_message(u64::MAX), Err(MessageError::MessageTooBig { limit: 10 }));
        assert_eq!(MessageError::MessageTooBig { limit: 10 }.close_code(), CloseCode::TOO_BIG);
    }

    #[test]
    fn rfc6455_8_1_invalid_utf8_fails_on_the_piece_that_contains_it() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Text, 10).expect("fits");
        assert_eq!(assembler.push(b"\xce\xba\xe1"), Ok(()));
        assert_eq!(assembler.push(b"\xbd\xb9\xed\xa0"), Err(MessageError::InvalidUtf8));
    }

    #[test]
    fn rfc6455_5_6_text_split_inside_a_code_point_across_fragments_is_fine() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Text, 1).expect("fits");
        assembler.push(b"\xce").expect("prefix");
        assert_eq!(assembler.end_frame(false), Ok(None));
        assembler.continue_message(1).expect("fits");
        assembler.push(b"\xba").expect("completes");
        assert_eq!(assembler.end_frame(true), Ok(Some(Message::Text("κ".into()))));
    }

    #[test]
    fn rfc6455_5_6_text_message_ending_inside_a_code_point_is_invalid() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Text, 1).expect("fits");
        assembler.push(b"\xce").expect("prefix");
        assert_eq!(assembler.end_frame(true), Err(MessageError::InvalidUtf8));
    }

    #[test]
    fn binary_messages_are_not_checked_for_utf8() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Binary, 2).expect("fits");
        assembler.push(&[0xFF, 0xFE]).expect("binary");
        assert_eq!(assembler.end_frame(true), Ok(Some(Message::Binary(vec![0xFF, 0xFE]))));
    }

    #[test]
    fn the_room_kept_between_messages_starts_each_message_afresh() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Text, 1).expect("fits");
        assembler.push(b"\xce").expect("prefix");
        assert_eq!(assembler.end_frame(true), Err(MessageError::InvalidUtf8));
        // The next message in the same box: no bytes, no UTF-8 state and no kind carried over.
        assembler.begin_message(MessageKind::Binary, 1).expect("a new message");
        assembler.push(&[0xBA]).expect("binary");
        assert_eq!(assembler.end_frame(true), Ok(Some(Message::Binary(vec![0xBA]))));
        assert!(!assembler.is_in_progress());
        assert_eq!(assembler.end_frame(true), Ok(None), "nothing in progress, nothing to end");
        assert_eq!(assembler.continue_message(1), Err(MessageError::ContinuationWithoutMessage));
    }

    #[test]
    fn releasing_the_spare_room_never_drops_a_message_in_progress() {
        let mut assembler = Assembler::new(100);
        assembler.begin_message(MessageKind::Text, 2).expect("fits");
        assembler.push(b"h").expect("first fragment");
        assert_eq!(assembler.end_frame(false), Ok(None));
        assembler.release_spare();
        assert_eq!(assembler.buffered_bytes(), 1, "the fragment is still held");
        assembler.continue_message(1).expect("continues");
        assembler.push(b"i").expect("last fragment");
        assert_eq!(assembler.end_frame(true), Ok(Some(Message::Text("hi".into()))));
        assembler.release_spare();
        assert!(assembler.partial.is_none(), "between messages, the room is freed");
    }

    /// One message, whole, in one frame: what `receive` does with a frame that is a message.
    fn one(assembler: &mut Assembler, kind: MessageKind, bytes: &[u8]) -> Message {
        assembler.begin_message(kind, bytes.len() as u64).expect("fits");
        assembler.push(bytes).expect("payload");
        assembler.end_frame(true).expect("valid").expect("complete")
    }

    #[test]
    fn a_delivered_messages_buffer_is_the_room_for_the_next_one() {
        let mut assembler = Assembler::new(10_000);
        let first = one(&mut assembler, MessageKind::Text, b"hello");
        let Message::Text(text) = &first else { panic!("text") };
        let buffer = text.as_ptr();
        assembler.recycle(first);
        assert!(assembler.spare_bytes() >= size_of::<Partial>() + 5, "the buffer is counted as kept");
        let second = one(&mut assembler, MessageKind::Binary, b"world");
        assert_eq!(second, Message::Binary(b"world".to_vec()), "nothing of the first is left");
        let Message::Binary(data) = &second else { panic!("binary") };
        assert_eq!(data.as_ptr(), buffer, "the same allocation");
        assembler.release_spare();
        assert_eq!(assembler.spare_bytes(), 0, "freed with the rest when the connection goes quiet");
    }

    #[test]
    fn a_large_messages_buffer_goes_back_to_the_allocator() {
        let mut assembler = Assembler::new(100_000);
        let large = one(&mut assembler, MessageKind::Binary, &[7; RECYCLED_BYTES + 1]);
        assembler.recycle(large);
        assert_eq!(assembler.spare_bytes(), size_of::<Partial>(), "only the emptied box is kept");
    }

    #[test]
    fn a_buffer_given_back_during_a_message_does_not_touch_that_message() {
        let mut assembler = Assembler::new(100);
        let first = one(&mut assembler, MessageKind::Text, b"old");
        assembler.begin_message(MessageKind::Text, 2).expect("fits");
        assembler.push(b"n").expect("first fragment");
        assert_eq!(assembler.end_frame(false), Ok(None));
        assembler.recycle(first);
        assembler.continue_message(1).expect("continues");
        assembler.push(b"w").expect("last fragment");
        assert_eq!(assembler.end_frame(true), Ok(Some(Message::Text("nw".into()))));
    }
}
