//! One WebSocket connection after the handshake, as a state machine (RFC 6455 §5.4, §5.5, §6,
//! §7), sans-I/O.
//!
//! A [`Session`] takes the bytes the peer sent and gives back [`Event`]s: messages, pings,
//! pongs, the end of the connection. It takes commands (send a text, send a ping, close) and
//! gives back bytes to write. It never touches a socket, a thread or a clock, so the threaded
//! driver and the event loop run the very same code, and the tests need no network.
//!
//! # Receiving
//!
//! [`Session::receive`] reads as much input as it can and stops at the first event, returning
//! how many bytes it consumed. The driver keeps the rest for the next call:
//!
//! ```text
//! loop {
//!     let (used, event) = session.receive(&mut buffer[start..end], &mut out);
//!     start += used;
//!     match event { Some(event) => handle(event), None if used == 0 => break, None => {} }
//! }
//! write out; if session.state() == Closed: close the TCP connection (see below)
//! ```
//!
//! The layers below do the parsing: [`FrameDecoder`] turns bytes into frame headers and payload
//! pieces (checking masking, opcodes, lengths), and [`Assembler`] turns data frames into
//! messages (checking fragment order, size, UTF-8). The session routes payload pieces to the
//! assembler or to a small buffer for the current control frame, and answers control frames.
//!
//! Some replies the protocol demands at once, without asking the application, so `receive`
//! writes them into `out` itself:
//!
//! - a Pong for every Ping, with the same payload (§5.5.2, §5.5.3);
//! - the echo of the peer's Close frame (§5.5.1);
//! - a Close frame with the right status code when the peer breaks the protocol (§7.1.7).
//!
//! # Closing
//!
//! [`State`] follows the closing handshake of §7. Either side may start it:
//!
//! ```text
//!                 close()                      peer's Close
//!   Open ──────────────────────► CloseSent ─────────────────► Closed
//!    │                                                          ▲
//!    ├── peer's Close: we echo it ──────────────────────────────┤
//!    └── peer breaks the protocol: we send Close(code) ─────────┘
//! ```
//!
//! A protocol error in `CloseSent` also ends in `Closed`, without a second Close frame.
//!
//! In `Closed`, `receive` processes nothing more (§7.1.7: "An endpoint MUST NOT continue to
//! attempt to process data (including a responding Close frame) from the remote endpoint after
//! being instructed to _Fail the WebSocket Connection_."). What remains is the driver's job:
//! write out what is in `out`, then close TCP. A server does so at once (§5.5.1: "The server
//! MUST close the underlying TCP connection immediately"); a client waits a little for the
//! server to do it (§7.1.1). In `CloseSent` the driver should also set a deadline: a peer that
//! never answers our Close must not hold the connection forever.
//!
//! # Masking on the client side
//!
//! RFC 6455 §5.3: "the client MUST pick a fresh masking key" for every frame, including the
//! pongs and close echoes that `receive` writes on its own. So a client session owns a
//! [`MaskSource`], a closure that returns the next key, and masks every frame it writes; a
//! server session never masks. The closure keeps randomness (and its errors) out of this
//! module: the driver fills it from the OS, tests from a counter.

#![forbid(unsafe_code)]

use std::fmt;

use super::close::CloseCode;
use super::deflate::{Compressor, Decompressor};
use super::extension::Agreement;
use super::frame::{
    encode_compressed_frame, encode_frame, Decoded, FrameDecoder, FrameError, FrameHeader, Opcode, Role,
    MAX_CONTROL_PAYLOAD,
};
use super::message::{
    close_body, parse_close_body, Assembler, CloseInfo, Message, MessageError, MessageKind, MAX_CLOSE_REASON,
};
use crate::deflate::InflateError;

/// A sensible default for the largest message accepted. Autobahn|Testsuite 9.1.6 and 9.2.6
/// send 16 MiB messages and expect them echoed; a chat-sized service can configure far less.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Where a client's masking keys come from: a fresh, unpredictable key per call (§5.3).
pub type MaskSource = Box<dyn FnMut() -> [u8; 4] + Send>;

/// The lifecycle of a connection after the opening handshake (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a Close frame and wait for the peer's; data frames from the peer are discarded.
    CloseSent,
    /// Close frames went both ways, or the connection failed: nothing more is read or sent,
    /// and the driver closes TCP once `out` is written.
    Closed,
}

/// What the peer's bytes amounted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete message.
    Message(Message),
    /// A Ping; the Pong with its payload is already in `out`.
    Ping(Vec<u8>),
    /// A Pong: the answer to our Ping, or an unsolicited heartbeat (§5.5.3). Needs no reply.
    Pong(Vec<u8>),
    /// The closing handshake is complete (our echo, if one was due, is in `out`). State is
    /// `Closed`.
    Closed(CloseInfo),
    /// The peer broke the protocol: our Close frame with `error.close_code()` is in `out`
    /// (unless we had already sent one). State is `Closed`. RFC 6455 calls this "_Fail the
    /// WebSocket Connection_" (§7.1.7).
    Failed(ProtocolError),
}

/// Any rule the peer can break, from either layer, with the close code it is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    Frame(FrameError),
    Message(MessageError),
    /// A compressed message (RFC 7692) that does not decompress. Answered with 1007, as
    /// data "not consistent with the type of the message" (the `ws` library does the same);
    /// one that decompresses past the size limit is [`MessageError::MessageTooBig`] instead.
    Compression(InflateError),
}

impl ProtocolError {
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::Frame(error) => error.close_code(),
            ProtocolError::Message(error) => error.close_code(),
            ProtocolError::Compression(_) => CloseCode::INVALID_DATA,
        }
    }

    /// A short reason for the Close frame and the log.
    pub fn describe(&self) -> &'static str {
        match self {
            ProtocolError::Frame(error) => error.describe(),
            ProtocolError::Message(error) => error.describe(),
            ProtocolError::Compression(error) => error.describe(),
        }
    }
}

impl From<FrameError> for ProtocolError {
    fn from(error: FrameError) -> Self {
        ProtocolError::Frame(error)
    }
}

impl From<MessageError> for ProtocolError {
    fn from(error: MessageError) -> Self {
        ProtocolError::Message(error)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Frame(error) => write!(f, "{error} (close code {})", error.close_code()),
            ProtocolError::Message(error) => write!(f, "{error} (close code {})", error.close_code()),
            ProtocolError::Compression(error) => write!(f, "{error} (close code {})", self.close_code()),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A send that the protocol does not allow: local misuse, nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// RFC 6455 §6.1: "The endpoint MUST ensure the WebSocket connection is in the OPEN
    /// state"; and §5.5.1: "The application MUST NOT send any more data frames after sending a
    /// Close frame."
    NotOpen,
    /// A whole message, while a fragmented one is being sent (§5.4: fragments of messages
    /// "MUST NOT be interleaved").
    FragmentedMessageInProgress,
    /// A text fragment inside a binary message in progress, or the other way round.
    WrongFragmentKind,
    /// A Ping or Pong payload over 125 bytes (§5.5).
    ControlPayloadTooLong,
    /// A close reason over 123 bytes (§5.5: the body is at most 125 bytes, 2 of them the code).
    CloseReasonTooLong,
    /// A close code that must not be sent (§7.4), such as 1005 or 1006.
    InvalidCloseCode(u16),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotOpen => f.write_str("connection is not open"),
            SendError::FragmentedMessageInProgress => f.write_str("a fragmented message is being sent"),
            SendError::WrongFragmentKind => f.write_str("fragment of the wrong message kind"),
            SendError::ControlPayloadTooLong => f.write_str("control payload over 125 bytes"),
            SendError::CloseReasonTooLong => f.write_str("close reason over 123 bytes"),
            SendError::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
        }
    }
}

impl std::error::Error for SendError {}

/// The control frames (§5.5), for routing their payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Close,
    Ping,
    Pong,
}

/// Where the payload pieces of the current frame go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// To the assembler; `fin` ends the message with this frame.
    Data { fin: bool },
    /// Through the decompressor to the assembler: a message with RSV1 (RFC 7692 §6).
    Compressed { fin: bool },
    /// To the control payload buffer, handled when the frame is complete.
    Control(Control),
    /// Nowhere: data frames after our Close (and the initial value, before any frame).
    Discard,
}

/// One WebSocket connection. See the module documentation.
pub struct Session {
    role: Role,
    state: State,
    decoder: FrameDecoder,
    assembler: Assembler,
    /// Where the current frame's payload goes.
    reading: Reading,
    /// The payload of the control frame being read (at most 125 bytes, checked by the decoder),
    /// only while one is: boxed, so that a session between control frames keeps one word, not
    /// a `Vec`'s three (README, "What an idle connection costs").
    control_payload: Option<Box<ControlPayload>>,
    /// A client's masking keys; `None` for a server, which never masks (§5.1).
    masks: Option<MaskSource>,
    /// The kind of the fragmented message we are sending, if one is unfinished.
    sending: Option<MessageKind>,
    /// permessage-deflate (RFC 7692), when the handshake agreed to it. Boxed: a few hundred
    /// bytes that a session without it does not carry.
    deflate: Option<Box<Deflate>>,
    /// The message being received is compressed (its first frame had RSV1): its
    /// continuation frames go through the decompressor too.
    receiving_compressed: bool,
}

/// A control frame's payload as it arrives.
struct ControlPayload {
    len: u8,
    bytes: [u8; MAX_CONTROL_PAYLOAD],
}

impl ControlPayload {
    fn empty() -> Box<ControlPayload> {
        Box::new(ControlPayload { len: 0, bytes: [0; MAX_CONTROL_PAYLOAD] })
    }

    /// Adds a piece. The decoder refuses a control frame over 125 bytes (§5.5) before any of
    /// its payload, so the pieces fit; were they not to, the excess is dropped, not a panic.
    fn push(&mut self, data: &[u8]) {
        let start = usize::from(self.len);
        let end = (start + data.len()).min(MAX_CONTROL_PAYLOAD);
        self.bytes[start..end].copy_from_slice(&data[..end - start]);
        self.len = end as u8;
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Both halves of permessage-deflate for one connection.
#[derive(Debug)]
struct Deflate {
    compressor: Compressor,
    decompressor: Decompressor,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("reading", &self.reading)
            .field("receiving_fragmented", &self.assembler.is_in_progress())
            .field("sending_fragmented", &self.sending)
            .finish()
    }
}

impl Session {
    /// The server end of a connection whose opening handshake just completed. Messages over
    /// `max_message` bytes fail the connection with 1009.
    pub fn new_server(max_message: usize) -> Session {
        Session::new(Role::Server, max_message, None)
    }

    /// The client end; `masks` gives a fresh masking key for every frame sent.
    pub fn new_client(max_message: usize, masks: MaskSource) -> Session {
        Session::new(Role::Client, max_message, Some(masks))
    }

    fn new(role: Role, max_message: usize, masks: Option<MaskSource>) -> Session {
        Session {
            role,
            state: State::Open,
            // No single frame can be larger than the largest message.
            decoder: FrameDecoder::new(role, max_message as u64),
            assembler: Assembler::new(max_message),
            reading: Reading::Discard,
            // Made by each control frame and given up once it is handled: most sessions are
            // idle, and a reserved 125 bytes would be a quarter of an idle WebSocket's memory.
            control_payload: None,
            masks,
            sending: None,
            deflate: None,
            receiving_compressed: false,
        }
    }

    /// Turns on permessage-deflate as the handshake agreed (RFC 7692): RSV1 becomes the
    /// "Per-Message Compressed" bit, messages we send go compressed when that makes them
    /// smaller, and compressed messages received are decompressed within the message limit.
    pub fn use_deflate(&mut self, agreement: Agreement) {
        let (ours, theirs) = match self.role {
            Role::Server => (agreement.server, agreement.client),
            Role::Client => (agreement.client, agreement.server),
        };
        self.decoder.allow_compressed();
        self.deflate =
            Some(Box::new(Deflate { compressor: Compressor::new(ours), decompressor: Decompressor::new(theirs) }));
    }

    /// Whether permessage-deflate was agreed.
    pub fn is_compressing(&self) -> bool {
        self.deflate.is_some()
    }

    /// With permessage-deflate and no context takeover on our side: the window every message
    /// we send is compressed for, the same on every such connection, so that a broadcast can
    /// be compressed once ([`super::deflate::SharedCompression`]) and sent with
    /// [`Session::send_compressed_text`]. `None` otherwise.
    pub fn shared_compression(&self) -> Option<u8> {
        self.deflate.as_ref().and_then(|deflate| deflate.compressor.shared_window_bits())
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Bytes of an incoming message held until its last fragment arrives, and any
    /// compression state kept between messages.
    pub fn buffered_bytes(&self) -> usize {
        self.assembler.buffered_bytes()
            + self.deflate.as_ref().map_or(0, |d| d.compressor.retained_bytes() + d.decompressor.retained_bytes())
    }

    /// Bytes of memory kept between messages for the next one ([`Assembler::spare_bytes`]).
    pub fn spare_bytes(&self) -> usize {
        self.assembler.spare_bytes()
    }

    /// Gives a delivered message's buffer back for the next message ([`Assembler::recycle`]).
    pub fn recycle(&mut self, message: Message) {
        self.assembler.recycle(message);
    }

    /// Frees what the session keeps between messages for the next one (see
    /// [`Assembler::release_spare`]): the connection has gone quiet.
    pub fn release_spare(&mut self) {
        self.assembler.release_spare();
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Consumes bytes from `input` and returns how many, with at most one event. Automatic
    /// replies (pongs, the close echo, the close frame of a failure) are appended to `out`.
    /// Call again with the unconsumed rest while a call consumes bytes or yields an event.
    ///
    /// Consumed payload bytes are unmasked in place inside `input`. In state `Closed` nothing
    /// is consumed.
    pub fn receive(&mut self, input: &mut [u8], out: &mut Vec<u8>) -> (usize, Option<Event>) {
        let mut consumed = 0;
        while self.state != State::Closed {
            let (used, decoded) = match self.decoder.decode(&mut input[consumed..]) {
                Ok(step) => step,
                Err(error) => return (consumed, Some(self.fail(error.into(), out))),
            };
            consumed += used;
            let Some(decoded) = decoded else { break };
            match self.handle(decoded, out) {
                Ok(None) => {}
                Ok(Some(event)) => return (consumed, Some(event)),
                Err(error) => return (consumed, Some(self.fail(error, out))),
            }
        }
        (consumed, None)
    }

    /// Sends a text message in one frame.
    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(MessageKind::Text, text.as_bytes(), out)
    }

    /// Sends a text message in one frame whose compressed payload, if any, was made by
    /// [`super::deflate::compress_message`] with the window [`Session::shared_compression`]
    /// gives (`None`: it would not be smaller, so `text` goes as it is).
    pub fn send_compressed_text(
        &mut self,
        text: &str,
        compressed: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.check_open()?;
        if self.sending.is_some() {
            return Err(SendError::FragmentedMessageInProgress);
        }
        match compressed {
            Some(compressed) if self.shared_compression().is_some() => {
                super::deflate::TALLY.sent(text.len(), compressed.len());
                let mask = self.masks.as_mut().map(|next_key| next_key());
                encode_compressed_frame(out, true, Opcode::Text, compressed, mask);
            }
            _ => self.write_frame(true, Opcode::Text, text.as_bytes(), out),
        }
        Ok(())
    }

    /// Sends a binary message in one frame.
    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(MessageKind::Binary, data, out)
    }

    /// Sends the next fragment of a text message (§5.4); `fin` marks the last one. Fragments
    /// are whole `str`s, so every fragment is UTF-8 on its own, which the RFC allows but does
    /// not require. Pings and pongs may go between fragments; other messages may not.
    pub fn send_text_fragment(&mut self, text: &str, fin: bool, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_fragment(MessageKind::Text, text.as_bytes(), fin, out)
    }

    /// Sends the next fragment of a binary message (§5.4); `fin` marks the last one.
    pub fn send_binary_fragment(&mut self, data: &[u8], fin: bool, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_fragment(MessageKind::Binary, data, fin, out)
    }

    /// Sends a Ping (§5.5.2): a keepalive, or a check that the peer still answers.
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(Opcode::Ping, payload, out)
    }

    /// Sends an unsolicited Pong, "a unidirectional heartbeat" (§5.5.3).
    pub fn send_pong(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(Opcode::Pong, payload, out)
    }

    /// Starts the closing handshake (§7.1.2): sends a Close frame with `code` and `reason`
    /// and moves to `CloseSent`. A message being received is dropped.
    pub fn close(&mut self, code: CloseCode, reason: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.check_open()?;
        if !code.is_allowed_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::CloseReasonTooLong);
        }
        let (body, len) = close_body(Some(code), reason);
        self.write_frame(true, Opcode::Close, &body[..len], out);
        self.state = State::CloseSent;
        self.sending = None;
        self.abandon_message();
        if let Reading::Data { .. } = self.reading {
            self.reading = Reading::Discard;
        }
        Ok(())
    }

    fn handle(&mut self, decoded: Decoded<'_>, out: &mut Vec<u8>) -> Result<Option<Event>, ProtocolError> {
        match decoded {
            Decoded::Header(header) => {
                self.reading = self.start_frame(header)?;
                Ok(None)
            }
            Decoded::Payload { data, frame_done } => self.take_payload(data, frame_done, out),
        }
    }

    /// Decides where the payload of a new frame goes, checking the message-level rules that
    /// its header alone can break.
    fn start_frame(&mut self, header: FrameHeader) -> Result<Reading, ProtocolError> {
        let FrameHeader { fin, opcode, payload_len, .. } = header;
        let reading = match opcode {
            // RFC 6455 §5.4: "An endpoint MUST be capable of handling control frames in the
            // middle of a fragmented message." They have their own buffer.
            Opcode::Close => Reading::Control(Control::Close),
            Opcode::Ping => Reading::Control(Control::Ping),
            Opcode::Pong => Reading::Control(Control::Pong),
            // RFC 6455 §5.5.1: "there is no guarantee that the endpoint that has already sent
            // a Close frame will continue to process data." We don't: only its Close matters.
            _ if self.state == State::CloseSent => Reading::Discard,
            Opcode::Text | Opcode::Binary => {
                let kind = if opcode == Opcode::Text { MessageKind::Text } else { MessageKind::Binary };
                // The declared length of a compressed frame bounds what arrives, not what it
                // inflates to; the decompressor's output is bounded separately.
                self.assembler.begin_message(kind, payload_len)?;
                // RFC 7692 §6: RSV1 on the first frame says the whole message is compressed.
                // (The decoder lets RSV1 through only when the extension was agreed.)
                self.receiving_compressed = header.compressed;
                self.data_reading(fin)
            }
            Opcode::Continuation => {
                self.assembler.continue_message(payload_len)?;
                self.data_reading(fin)
            }
        };
        if let Reading::Control(_) = reading {
            self.control_payload = None;
        }
        Ok(reading)
    }

    fn data_reading(&self, fin: bool) -> Reading {
        if self.receiving_compressed {
            Reading::Compressed { fin }
        } else {
            Reading::Data { fin }
        }
    }

    /// Drops the message being received, compressed or not.
    fn abandon_message(&mut self) {
        self.assembler.abandon();
        self.receiving_compressed = false;
        if let Some(deflate) = &mut self.deflate {
            deflate.decompressor.abandon();
        }
    }

    /// A piece of a compressed message: decompressed straight into the message, whose size
    /// limit bounds the output (a decompression bomb ends in 1009 at the limit). With `end`,
    /// the message is complete: the flush tail goes in too (RFC 7692 §7.2.2).
    fn inflate_piece(&mut self, data: &[u8], end: bool) -> Result<(), ProtocolError> {
        let Some(deflate) = &mut self.deflate else { unreachable!("RSV1 is refused without the extension") };
        let decompressor = &mut deflate.decompressor;
        self.assembler.push_with(|message, limit| {
            let mut result = decompressor.inflate(data, message, limit);
            if end && result.is_ok() {
                result = decompressor.finish_message(message, limit);
            }
            result.map_err(|error| match error {
                InflateError::OutputLimit => ProtocolError::Message(MessageError::MessageTooBig { limit }),
                error => ProtocolError::Compression(error),
            })
        })
    }

    fn take_payload(
        &mut self,
        data: &[u8],
        frame_done: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, ProtocolError> {
        match self.reading {
            Reading::Data { fin } => {
                self.assembler.push(data)?;
                if !frame_done {
                    return Ok(None);
                }
                Ok(self.assembler.end_frame(fin)?.map(Event::Message))
            }
            Reading::Compressed { fin } => {
                self.inflate_piece(data, fin && frame_done)?;
                if !frame_done {
                    return Ok(None);
                }
                if fin {
                    self.receiving_compressed = false;
                }
                Ok(self.assembler.end_frame(fin)?.map(Event::Message))
            }
            Reading::Control(control) => {
                self.control_payload.get_or_insert_with(ControlPayload::empty).push(data);
                if !frame_done {
                    return Ok(None);
                }
                let payload = self.control_payload.take().unwrap_or_else(ControlPayload::empty);
                self.control_frame(control, payload.as_slice(), out)
            }
            Reading::Discard => Ok(None),
        }
    }

    /// A complete control frame (§5.5).
    fn control_frame(
        &mut self,
        control: Control,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, ProtocolError> {
        match control {
            Control::Ping => {
                let payload = payload.to_vec();
                // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong
                // frame in response, unless it already received a Close frame." (Had we
                // received one, we would be Closed and reading nothing.) §5.5.3: "A Pong frame
                // sent in response to a Ping frame must have identical "Application data" as
                // found in the message body of the Ping frame being replied to."
                self.write_frame(true, Opcode::Pong, &payload, out);
                Ok(Some(Event::Ping(payload)))
            }
            // RFC 6455 §5.5.3: "A response to an unsolicited Pong frame is not expected."
            Control::Pong => Ok(Some(Event::Pong(payload.to_vec()))),
            Control::Close => self.close_received(payload, out),
        }
    }

    fn close_received(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<Option<Event>, ProtocolError> {
        let (code, reason) = parse_close_body(payload)?;
        let initiated_by_peer = self.state == State::Open;
        if initiated_by_peer {
            // RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not previously
            // send a Close frame, the endpoint MUST send a Close frame in response. (When
            // sending a Close frame in response, the endpoint typically echos the status code
            // it received.)" An empty Close is answered with an empty one.
            let (body, len) = close_body(code, "");
            self.write_frame(true, Opcode::Close, &body[..len], out);
        }
        // RFC 6455 §5.5.1: "After both sending and receiving a Close message, an endpoint
        // considers the WebSocket connection closed and MUST close the underlying TCP
        // connection."
        self.state = State::Closed;
        self.abandon_message();
        Ok(Some(Event::Closed(CloseInfo { code, reason, initiated_by_peer })))
    }

    /// _Fail the WebSocket Connection_ (§7.1.7).
    fn fail(&mut self, error: ProtocolError, out: &mut Vec<u8>) -> Event {
        // RFC 6455 §7.1.7: "the endpoint SHOULD send a Close frame with an appropriate status
        // code (Section 7.4) before proceeding to _Close the WebSocket Connection_." Not if we
        // already sent one: a second Close frame is never allowed.
        if self.state == State::Open {
            let (body, len) = close_body(Some(error.close_code()), error.describe());
            self.write_frame(true, Opcode::Close, &body[..len], out);
        }
        self.state = State::Closed;
        self.abandon_message();
        Event::Failed(error)
    }

    fn send_message(&mut self, kind: MessageKind, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.check_open()?;
        if self.sending.is_some() {
            return Err(SendError::FragmentedMessageInProgress);
        }
        // RFC 7692 §6: a message is compressed or not as a whole; we compress it when that
        // makes it smaller (see `super::deflate`).
        let compressed = self.deflate.as_mut().and_then(|deflate| deflate.compressor.compress(payload));
        match compressed {
            Some(compressed) => {
                let mask = self.masks.as_mut().map(|next_key| next_key());
                encode_compressed_frame(out, true, data_opcode(kind), &compressed, mask);
            }
            None => self.write_frame(true, data_opcode(kind), payload, out),
        }
        Ok(())
    }

    fn send_fragment(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.check_open()?;
        // RFC 6455 §5.4: "a single frame with the FIN bit clear and an opcode other than 0,
        // followed by zero or more frames with the FIN bit clear and the opcode set to 0, and
        // terminated by a single frame with the FIN bit set and an opcode of 0."
        let opcode = match self.sending {
            None => data_opcode(kind),
            Some(sending) if sending == kind => Opcode::Continuation,
            Some(_) => return Err(SendError::WrongFragmentKind),
        };
        self.write_frame(fin, opcode, payload, out);
        self.sending = if fin { None } else { Some(kind) };
        Ok(())
    }

    fn send_control(&mut self, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.check_open()?;
        // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.write_frame(true, opcode, payload, out);
        Ok(())
    }

    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::CloseSent | State::Closed => Err(SendError::NotOpen),
        }
    }

    /// Writes one frame, masked with a fresh key if we are the client.
    fn write_frame(&mut self, fin: bool, opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
        // RFC 6455 §5.1: "a client MUST mask all frames that it sends to the server" ... "A
        // server MUST NOT mask any frames that it sends to the client."
        let mask = self.masks.as_mut().map(|next_key| next_key());
        encode_frame(out, fin, opcode, payload, mask);
    }
}

fn data_opcode(kind: MessageKind) -> Opcode {
    match kind {
        MessageKind::Text => Opcode::Text,
        MessageKind::Binary => Opcode::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::extension::Agreement;

    const LIMIT: usize = 1 << 16;

    /// A deterministic stand-in for OS randomness: a linear congruential generator.
    fn counter_masks(seed: u32) -> MaskSource {
        let mut state = seed;
        Box::new(move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state.to_be_bytes()
        })
    }

    /// A frame as a client sends it (masked with a fixed key, which is fine for tests).
    fn client_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, opcode, payload, Some([0xA1, 0xB2, 0xC3, 0xD4]));
        out
    }

    /// A frame as a server sends it.
    fn server_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, opcode, payload, None);
        out
    }

    fn close_frame_body(code: u16, reason: &[u8]) -> Vec<u8> {
        [&code.to_be_bytes()[..], reason].concat()
    }

    /// What a driver does: buffer the input, call `receive` until it neither consumes nor
    /// yields, keep the rest.
    struct Driver {
        session: Session,
        buffer: Vec<u8>,
        out: Vec<u8>,
        events: Vec<Event>,
    }

    impl Driver {
        fn new(session: Session) -> Driver {
            Driver { session, buffer: Vec::new(), out: Vec::new(), events: Vec::new() }
        }

        fn server() -> Driver {
            Driver::new(Session::new_server(LIMIT))
        }

        fn push(&mut self, bytes: &[u8]) -> &mut Driver {
            self.buffer.extend_from_slice(bytes);
            let mut start = 0;
            loop {
                let (used, event) = self.session.receive(&mut self.buffer[start..], &mut self.out);
                start += used;
                match event {
                    Some(event) => self.events.push(event),
                    None if used == 0 => break,
                    None => {}
                }
            }
            self.buffer.drain(..start);
            self
        }
    }

    /// Runs `input` through a fresh session whole, one byte at a time, and split at every
    /// position; checks that events, replies and final state agree; returns them.
    fn receive_every_way(make: &dyn Fn() -> Session, input: &[u8]) -> (Vec<Event>, Vec<u8>, State) {
        let mut whole = Driver::new(make());
        whole.push(input);
        let expected = (whole.events, whole.out, whole.session.state());
        let mut bytewise = Driver::new(make());
        for byte in input {
            bytewise.push(std::slice::from_ref(byte));
        }
        assert_eq!((bytewise.events, bytewise.out, bytewise.session.state()), expected, "bytewise");
        for split in 0..=input.len() {
            let mut driver = Driver::new(make());
            driver.push(&input[..split]).push(&input[split..]);
            assert_eq!((driver.events, driver.out, driver.session.state()), expected, "split {split}");
        }
        expected
    }

    fn server_every_way(input: &[u8]) -> (Vec<Event>, Vec<u8>, State) {
        receive_every_way(&|| Session::new_server(LIMIT), input)
    }

    /// The frames in `bytes` (a server's output), as (fin, opcode, payload).
    fn frames_from_server(bytes: &[u8]) -> Vec<(bool, Opcode, Vec<u8>)> {
        frames_in(Role::Client, bytes)
    }

    fn frames_in(role: Role, bytes: &[u8]) -> Vec<(bool, Opcode, Vec<u8>)> {
        let mut decoder = FrameDecoder::new(role, u64::MAX >> 1);
        let mut bytes = bytes.to_vec();
        let mut start = 0;
        let mut frames = Vec::new();
        loop {
            let (used, decoded) = decoder.decode(&mut bytes[start..]).expect("our own frames are valid");
            start += used;
            match decoded {
                None => break,
                Some(Decoded::Header(header)) => frames.push((header.fin, header.opcode, Vec::new())),
                Some(Decoded::Payload { data, .. }) => {
                    frames.last_mut().expect("header first").2.extend_from_slice(data)
                }
            }
        }
        frames
    }

    fn failed(error: impl Into<ProtocolError>) -> Event {
        Event::Failed(error.into())
    }

    /// Checks that `out` holds exactly one Close frame with `code`.
    fn assert_closed_with(out: &[u8], code: CloseCode) {
        let frames = frames_from_server(out);
        assert_eq!(frames.len(), 1, "{frames:?}");
        let (fin, opcode, body) = &frames[0];
        assert!(fin);
        assert_eq!(*opcode, Opcode::Close);
        assert_eq!(parse_close_body(body).expect("valid close body").0, Some(code));
    }

    #[test]
    fn rfc6455_5_7_masked_hello_is_a_text_message() {
        let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (events, out, state) = server_every_way(&bytes);
        assert_eq!(events, [Event::Message(Message::Text("Hello".into()))]);
        assert!(out.is_empty());
        assert_eq!(state, State::Open);
    }

    #[test]
    fn rfc6455_5_7_fragmented_hello_is_one_message() {
        let bytes =
            [client_frame(false, Opcode::Text, b"Hel"), client_frame(true, Opcode::Continuation, b"lo")].concat();
        let (events, _, _) = server_every_way(&bytes);
        assert_eq!(events, [Event::Message(Message::Text("Hello".into()))]);
    }

    #[test]
    fn rfc6455_5_7_unmasked_frames_from_a_server_reach_a_client() {
        let bytes = [
            server_frame(true, Opcode::Text, b"Hello"),
            server_frame(false, Opcode::Binary, &[1, 2]),
            server_frame(true, Opcode::Continuation, &[3]),
        ]
        .concat();
        let (events, _, _) = receive_every_way(&|| Session::new_client(LIMIT, counter_masks(1)), &bytes);
        assert_eq!(
            events,
            [Event::Message(Message::Text("Hello".into())), Event::Message(Message::Binary(vec![1, 2, 3]))]
        );
    }

    #[test]
    fn rfc6455_5_4_control_frames_interleaved_in_a_fragmented_message() {
        let bytes = [
            client_frame(false, Opcode::Text, b"He"),
            client_frame(true, Opcode::Ping, b"p1"),
            client_frame(false, Opcode::Continuation, b"l"),
            client_frame(true, Opcode::Pong, b"p2"),
            client_frame(true, Opcode::Continuation, b"lo"),
        ]
        .concat();
        let (events, out, _) = server_every_way(&bytes);
        assert_eq!(
            events,
            [Event::Ping(b"p1".to_vec()), Event::Pong(b"p2".to_vec()), Event::Message(Message::Text("Hello".into()))]
        );
        assert_eq!(frames_from_server(&out), [(true, Opcode::Pong, b"p1".to_vec())]);
    }

    #[test]
    fn rfc6455_5_5_2_ping_is_answered_with_a_pong_with_identical_payload() {
        for payload in [&b""[..], b"Hello", &[0xFF; 125]] {
            let (events, out, _) = server_every_way(&client_frame(true, Opcode::Ping, payload));
            assert_eq!(events, [Event::Ping(payload.to_vec())]);
            assert_eq!(frames_from_server(&out), [(true, Opcode::Pong, payload.to_vec())]);
        }
    }

    #[test]
    fn rfc6455_5_5_3_unsolicited_pong_is_reported_and_not_answered() {
        let (events, out, state) = server_every_way(&client_frame(true, Opcode::Pong, b"beat"));
        assert_eq!(events, [Event::Pong(b"beat".to_vec())]);
        assert!(out.is_empty());
        assert_eq!(state, State::Open);
    }

    #[test]
    fn rfc6455_5_5_1_close_is_echoed_with_the_same_code() {
        let body = close_frame_body(4000, b"bye");
        let (events, out, state) = server_every_way(&client_frame(true, Opcode::Close, &body));
        let info = CloseInfo { code: Some(CloseCode(4000)), reason: "bye".into(), initiated_by_peer: true };
        assert_eq!(events, [Event::Closed(info)]);
        assert_closed_with(&out, CloseCode(4000));
        assert_eq!(state, State::Closed);
    }

    #[test]
    fn rfc6455_5_5_1_empty_close_is_echoed_empty() {
        let (events, out, state) = server_every_way(&client_frame(true, Opcode::Close, b""));
        let info = CloseInfo { code: None, reason: String::new(), initiated_by_peer: true };
        assert_eq!(events, [Event::Closed(info)]);
        assert_eq!(frames_from_server(&out), [(true, Opcode::Close, Vec::new())]);
        assert_eq!(state, State::Closed);
    }

    #[test]
    fn rfc6455_7_4_every_valid_close_code_is_echoed() {
        // Autobahn 7.7.x.
        for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            let mut driver = Driver::server();
            driver.push(&client_frame(true, Opcode::Close, &code.to_be_bytes()));
            assert_closed_with(&driver.out, CloseCode(code));
            assert_eq!(driver.session.state(), State::Closed);
        }
    }

    #[test]
    fn rfc6455_7_4_invalid_close_code_fails_with_1002() {
        // Autobahn 7.9.x, and the other codes that must not be on the wire.
        for code in [0u16, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            let (events, out, state) = server_every_way(&client_frame(true, Opcode::Close, &code.to_be_bytes()));
            assert_eq!(events, [failed(MessageError::InvalidCloseCode(code))]);
            assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
            assert_eq!(state, State::Closed);
        }
    }

    #[test]
    fn rfc6455_5_5_1_close_body_of_one_byte_fails_with_1002() {
        // Autobahn 7.3.2.
        let (events, out, _) = server_every_way(&client_frame(true, Opcode::Close, &[0x03]));
        assert_eq!(events, [failed(MessageError::CloseBodyTooShort)]);
        assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_5_5_close_reason_of_maximum_length_is_fine_and_one_more_is_not() {
        // Autobahn 7.3.5 and 7.3.6: 123 reason bytes fit, 124 make the frame too long.
        let (events, out, _) =
            server_every_way(&client_frame(true, Opcode::Close, &close_frame_body(1000, &[b'*'; 123])));
        assert!(matches!(&events[..], [Event::Closed(info)] if info.reason.len() == 123));
        assert_closed_with(&out, CloseCode::NORMAL);
        let (events, out, _) =
            server_every_way(&client_frame(true, Opcode::Close, &close_frame_body(1000, &[b'*'; 124])));
        assert_eq!(events, [failed(FrameError::ControlFrameTooLong)]);
        assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_8_1_close_reason_that_is_not_utf8_fails_with_1007() {
        // Autobahn 7.5.1.
        let reason = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
        let (events, out, _) = server_every_way(&client_frame(true, Opcode::Close, &close_frame_body(1000, reason)));
        assert_eq!(events, [failed(MessageError::InvalidUtf8)]);
        assert_closed_with(&out, CloseCode::INVALID_DATA);
    }

    #[test]
    fn rfc6455_5_4_continuation_without_a_message_fails_with_1002() {
        // Autobahn 5.9.
        let (events, out, _) = server_every_way(&client_frame(true, Opcode::Continuation, b"x"));
        assert_eq!(events, [failed(MessageError::ContinuationWithoutMessage)]);
        assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_5_4_new_message_inside_a_fragmented_message_fails_with_1002() {
        for opcode in [Opcode::Text, Opcode::Binary] {
            let bytes = [client_frame(false, Opcode::Text, b"He"), client_frame(true, opcode, b"llo")].concat();
            let (events, out, _) = server_every_way(&bytes);
            assert_eq!(events, [failed(MessageError::MessageInterrupted)]);
            assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn rfc6455_5_1_server_fails_on_unmasked_frame() {
        let (events, out, state) = server_every_way(&server_frame(true, Opcode::Text, b"Hello"));
        assert_eq!(events, [failed(FrameError::UnmaskedFrame)]);
        assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
        assert_eq!(state, State::Closed);
    }

    #[test]
    fn rfc6455_5_1_client_fails_on_masked_frame() {
        let mut driver = Driver::new(Session::new_client(LIMIT, counter_masks(7)));
        driver.push(&client_frame(true, Opcode::Text, b"Hello"));
        assert_eq!(driver.events, [failed(FrameError::MaskedFrame)]);
        let frames = frames_in(Role::Server, &driver.out);
        assert_eq!(frames.len(), 1);
        assert_eq!(parse_close_body(&frames[0].2).expect("valid").0, Some(CloseCode::PROTOCOL_ERROR));
    }

    #[test]
    fn rfc6455_5_2_reserved_bits_and_opcodes_fail_with_1002() {
        // Autobahn 3.x and 4.x.
        let mut rsv = client_frame(true, Opcode::Text, b"x");
        rsv[0] |= 0x40;
        let mut opcode = client_frame(true, Opcode::Text, b"x");
        opcode[0] = 0x85;
        for (bytes, error) in [(rsv, FrameError::ReservedBitsSet), (opcode, FrameError::ReservedOpcode(5))] {
            let (events, out, _) = server_every_way(&bytes);
            assert_eq!(events, [failed(error)]);
            assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn rfc6455_8_1_invalid_utf8_fails_fast_inside_one_frame() {
        // Autobahn 6.4.3/6.4.4: one frame, sent in three chops; the second makes it invalid.
        let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64";
        let bytes = client_frame(true, Opcode::Text, payload);
        let header_len = bytes.len() - payload.len();
        let mut driver = Driver::server();
        driver.push(&bytes[..header_len + 11]);
        assert!(driver.events.is_empty(), "the first chop is valid so far");
        driver.push(&bytes[header_len + 11..header_len + 13]);
        assert_eq!(driver.events, [failed(MessageError::InvalidUtf8)], "fails before the frame ends");
        assert_closed_with(&driver.out, CloseCode::INVALID_DATA);
        assert_eq!(driver.session.state(), State::Closed);
    }

    #[test]
    fn rfc6455_8_1_invalid_utf8_fails_fast_across_fragments() {
        // Autobahn 6.4.1/6.4.2: the second fragment makes the message invalid.
        let mut driver = Driver::server();
        driver.push(&client_frame(false, Opcode::Text, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"));
        assert!(driver.events.is_empty());
        let second = client_frame(false, Opcode::Continuation, b"\xf4\x90\x80\x80");
        driver.push(&second[..second.len() - 2]);
        assert_eq!(driver.events, [failed(MessageError::InvalidUtf8)]);
        assert_closed_with(&driver.out, CloseCode::INVALID_DATA);
    }

    #[test]
    fn rfc6455_5_6_text_message_ending_inside_a_code_point_fails_with_1007() {
        let bytes =
            [client_frame(false, Opcode::Text, b"edited"), client_frame(true, Opcode::Continuation, b"\xed\x9f")]
                .concat();
        let (events, out, _) = server_every_way(&bytes);
        assert_eq!(events, [failed(MessageError::InvalidUtf8)]);
        assert_closed_with(&out, CloseCode::INVALID_DATA);
    }

    #[test]
    fn rfc6455_5_6_code_point_split_across_fragments_is_valid() {
        let bytes = [
            client_frame(false, Opcode::Text, b"\xce"),
            client_frame(false, Opcode::Continuation, b""),
            client_frame(true, Opcode::Continuation, b"\xba"),
        ]
        .concat();
        let (events, _, _) = server_every_way(&bytes);
        assert_eq!(events, [Event::Message(Message::Text("κ".into()))]);
    }

    #[test]
    fn rfc6455_10_4_message_over_the_limit_fails_with_1009_on_the_header() {
        let mut driver = Driver::new(Session::new_server(100));
        // Only the header of a 101-byte frame: refused before any payload arrives.
        let bytes = client_frame(true, Opcode::Binary, &[0; 101]);
        driver.push(&bytes[..8]);
        assert_eq!(driver.events, [failed(FrameError::PayloadTooBig { declared: 101, limit: 100 })]);
        assert_closed_with(&driver.out, CloseCode::TOO_BIG);
        // The same over several fragments: the third announces the byte too many.
        let bytes = [
            client_frame(false, Opcode::Binary, &[0; 50]),
            client_frame(false, Opcode::Continuation, &[0; 50]),
            client_frame(true, Opcode::Continuation, &[0; 1]),
        ]
        .concat();
        let (events, out, _) = receive_every_way(&|| Session::new_server(100), &bytes);
        assert_eq!(events, [failed(MessageError::MessageTooBig { limit: 100 })]);
        assert_closed_with(&out, CloseCode::TOO_BIG);
    }

    #[test]
    fn rfc6455_5_5_1_after_close_sent_data_is_discarded_and_close_completes() {
        let mut driver = Driver::server();
        driver.push(&client_frame(false, Opcode::Text, b"par"));
        driver.session.close(CloseCode::GOING_AWAY, "shutdown", &mut driver.out).expect("open");
        assert_eq!(driver.session.state(), State::CloseSent);
        assert_closed_with(&driver.out, CloseCode::GOING_AWAY);
        driver.out.clear();
        driver.push(&client_frame(true, Opcode::Continuation, b"tial"));
        driver.push(&client_frame(true, Opcode::Text, b"ignored"));
        driver.push(&client_frame(true, Opcode::Continuation, b"no error either"));
        assert!(driver.events.is_empty(), "{:?}", driver.events);
        driver.push(&client_frame(true, Opcode::Close, &1001u16.to_be_bytes()));
        let info = CloseInfo { code: Some(CloseCode::GOING_AWAY), reason: String::new(), initiated_by_peer: false };
        assert_eq!(driver.events, [Event::Closed(info)]);
        assert!(driver.out.is_empty(), "no second Close frame");
        assert_eq!(driver.session.state(), State::Closed);
    }

    #[test]
    fn rfc6455_5_5_2_ping_after_our_close_is_still_answered() {
        let mut driver = Driver::server();
        driver.session.close(CloseCode::NORMAL, "", &mut driver.out).expect("open");
        driver.out.clear();
        driver.push(&client_frame(true, Opcode::Ping, b"still there?"));
        assert_eq!(driver.events, [Event::Ping(b"still there?".to_vec())]);
        assert_eq!(frames_from_server(&driver.out), [(true, Opcode::Pong, b"still there?".to_vec())]);
    }

    #[test]
    fn rfc6455_7_1_7_a_failure_after_our_close_sends_no_second_close() {
        let mut driver = Driver::server();
        driver.session.close(CloseCode::NORMAL, "", &mut driver.out).expect("open");
        driver.out.clear();
        driver.push(&client_frame(true, Opcode::Close, &[0x03]));
        assert_eq!(driver.events, [failed(MessageError::CloseBodyTooShort)]);
        assert!(driver.out.is_empty());
        assert_eq!(driver.session.state(), State::Closed);
    }

    #[test]
    fn rfc6455_5_5_1_nothing_is_read_after_the_closing_handshake() {
        // Autobahn 7.1.2-7.1.4: close, then ping, text, another close: no pong, no message.
        let bytes = [
            client_frame(true, Opcode::Close, &1000u16.to_be_bytes()),
            client_frame(true, Opcode::Ping, b"late"),
            client_frame(true, Opcode::Text, b"late"),
            client_frame(true, Opcode::Close, b""),
        ]
        .concat();
        let (events, out, state) = server_every_way(&bytes);
        assert!(matches!(&events[..], [Event::Closed(_)]));
        assert_closed_with(&out, CloseCode::NORMAL);
        assert_eq!(state, State::Closed);
        let mut driver = Driver::server();
        driver.push(&bytes);
        assert!(!driver.buffer.is_empty(), "the rest is left unread");
    }

    #[test]
    fn rfc6455_5_5_1_close_in_the_middle_of_a_fragmented_message_drops_it() {
        // Autobahn 7.1.5: fragment, close, last fragment.
        let bytes = [
            client_frame(false, Opcode::Text, b"frag"),
            client_frame(true, Opcode::Close, &1000u16.to_be_bytes()),
            client_frame(true, Opcode::Continuation, b"ment"),
        ]
        .concat();
        let (events, out, _) = server_every_way(&bytes);
        assert!(matches!(&events[..], [Event::Closed(info)] if info.initiated_by_peer));
        assert_closed_with(&out, CloseCode::NORMAL);
    }

    #[test]
    fn rfc6455_7_1_7_nothing_is_read_after_a_failure() {
        // Autobahn 3.2: a good message, a frame with RSV set, a ping: echoable message first,
        // then the failure, and no pong.
        let mut bad = client_frame(true, Opcode::Text, b"bad");
        bad[0] |= 0x20;
        let bytes = [client_frame(true, Opcode::Text, b"good"), bad, client_frame(true, Opcode::Ping, b"")].concat();
        let (events, out, state) = server_every_way(&bytes);
        assert_eq!(events, [Event::Message(Message::Text("good".into())), failed(FrameError::ReservedBitsSet)]);
        assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
        assert_eq!(state, State::Closed);
    }

    #[test]
    fn rfc6455_5_1_client_masks_every_frame_and_server_masks_none() {
        let mut client = Driver::new(Session::new_client(LIMIT, counter_masks(3)));
        client.session.send_text("hi", &mut client.out).expect("open");
        client.push(&server_frame(true, Opcode::Ping, b"auto"));
        client.session.close(CloseCode::NORMAL, "", &mut client.out).expect("open");
        // A server decoder accepts them all (it would fail on an unmasked frame).
        let frames = frames_in(Role::Server, &client.out);
        let opcodes: Vec<Opcode> = frames.iter().map(|frame| frame.1).collect();
        assert_eq!(opcodes, [Opcode::Text, Opcode::Pong, Opcode::Close]);

        let mut server = Session::new_server(LIMIT);
        let mut out = Vec::new();
        server.send_text("hi", &mut out).expect("open");
        server.send_ping(b"p", &mut out).expect("open");
        assert_eq!(frames_from_server(&out).len(), 2, "a client decoder accepts them: unmasked");
    }

    #[test]
    fn rfc6455_5_3_client_picks_a_fresh_mask_for_every_frame() {
        let mut client = Session::new_client(LIMIT, counter_masks(5));
        let mut out = Vec::new();
        for _ in 0..4 {
            client.send_binary(b"same payload", &mut out).expect("open");
        }
        let mut decoder = FrameDecoder::new(Role::Server, 1000);
        let mut keys = Vec::new();
        let mut start = 0;
        while start < out.len() {
            let (used, decoded) = decoder.decode(&mut out[start..]).expect("valid");
            start += used;
            if let Some(Decoded::Header(header)) = decoded {
                keys.push(header.mask.expect("masked"));
            }
        }
        assert_eq!(keys.len(), 4);
        for (i, key) in keys.iter().enumerate() {
            assert!(!keys[..i].contains(key), "key {i} repeated");
        }
    }

    #[test]
    fn rfc6455_5_5_1_no_data_frames_after_sending_close() {
        let mut session = Session::new_server(LIMIT);
        let mut out = Vec::new();
        session.close(CloseCode::NORMAL, "", &mut out).expect("open");
        let written = out.len();
        assert_eq!(session.send_text("late", &mut out), Err(SendError::NotOpen));
        assert_eq!(session.send_binary(b"late", &mut out), Err(SendError::NotOpen));
        assert_eq!(session.send_ping(b"", &mut out), Err(SendError::NotOpen));
        assert_eq!(session.close(CloseCode::NORMAL, "", &mut out), Err(SendError::NotOpen));
        assert_eq!(out.len(), written, "nothing written");
    }

    #[test]
    fn rfc6455_5_4_outgoing_fragments_are_not_interleaved_with_other_messages() {
        let mut session = Session::new_server(LIMIT);
        let mut out = Vec::new();
        session.send_text_fragment("Hel", false, &mut out).expect("first");
        assert_eq!(session.send_text("other", &mut out), Err(SendError::FragmentedMessageInProgress));
        assert_eq!(session.send_binary_fragment(b"x", true, &mut out), Err(SendError::WrongFragmentKind));
        session.send_ping(b"between", &mut out).expect("control frames may go between");
        session.send_text_fragment("lo", true, &mut out).expect("last");
        session.send_text("next", &mut out).expect("a new message");
        let frames = frames_from_server(&out);
        let expected = [
            (false, Opcode::Text, b"Hel".to_vec()),
            (true, Opcode::Ping, b"between".to_vec()),
            (true, Opcode::Continuation, b"lo".to_vec()),
            (true, Opcode::Text, b"next".to_vec()),
        ];
        assert_eq!(frames, expected);
    }

    #[test]
    fn rfc6455_5_5_oversized_control_payloads_and_reasons_are_refused() {
        let mut session = Session::new_server(LIMIT);
        let mut out = Vec::new();
        assert_eq!(session.send_ping(&[0; 126], &mut out), Err(SendError::ControlPayloadTooLong));
        assert_eq!(session.send_pong(&[0; 126], &mut out), Err(SendError::ControlPayloadTooLong));
        let long = "x".repeat(124);
        assert_eq!(session.close(CloseCode::NORMAL, &long, &mut out), Err(SendError::CloseReasonTooLong));
        assert!(out.is_empty());
        assert_eq!(session.state(), State::Open);
    }

    #[test]
    fn rfc6455_7_4_1_reserved_close_codes_are_not_sent() {
        let mut session = Session::new_server(LIMIT);
        let mut out = Vec::new();
        for code in [1005, 1006, 1015, 999] {
            assert_eq!(session.close(CloseCode(code), "", &mut out), Err(SendError::InvalidCloseCode(code)));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_long_stream_of_valid_frames_gives_the_same_events_however_it_is_split() {
        let bytes = [
            client_frame(true, Opcode::Text, "κόσμε".as_bytes()),
            client_frame(false, Opcode::Binary, &[0, 1, 2]),
            client_frame(true, Opcode::Ping, b""),
            client_frame(true, Opcode::Continuation, &[3; 130]),
            client_frame(false, Opcode::Text, b"\xe2\x82"),
            client_frame(true, Opcode::Pong, b"pong"),
            client_frame(true, Opcode::Continuation, b"\xac"),
            client_frame(true, Opcode::Text, b""),
            client_frame(true, Opcode::Close, &close_frame_body(1000, b"done")),
        ]
        .concat();
        let (events, out, state) = server_every_way(&bytes);
        assert_eq!(events.len(), 7);
        assert_eq!(events[2], Event::Message(Message::Binary([&[0u8, 1, 2][..], &[3; 130]].concat())));
        assert_eq!(events[4], Event::Message(Message::Text("€".into())));
        assert_eq!(frames_from_server(&out).len(), 2, "a pong and the close echo");
        assert_eq!(state, State::Closed);
    }

    /// xorshift64*: a tiny deterministic generator, so the test is the same on every run.
    struct Prng(u64);

    impl Prng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_message(rng: &mut Prng) -> Message {
        let len = match rng.below(10) {
            0 => 0,
            1 => 126 + rng.below(70000),
            _ => rng.below(200),
        };
        if rng.below(2) == 0 {
            Message::Binary((0..len).map(|_| rng.next() as u8).collect())
        } else {
            let alphabet = ['a', 'Z', ' ', 'é', 'κ', '€', '😀', '\u{10FFFF}'];
            Message::Text((0..len / 3).map(|_| alphabet[rng.below(alphabet.len())]).collect())
        }
    }

    /// Cuts `len` bytes into 1 to 4 random pieces; for text, only at char boundaries.
    fn random_cuts(rng: &mut Prng, text: Option<&str>, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(len + 1)).collect();
        if let Some(text) = text {
            cuts.retain(|&cut| text.is_char_boundary(cut));
        }
        cuts.push(len);
        cuts.sort_unstable();
        cuts
    }

    #[test]
    fn random_messages_from_a_client_reach_a_server_exactly() {
        let mut rng = Prng(0x2545_F491_4F6C_DD1D);
        let mut client = Session::new_client(DEFAULT_MAX_MESSAGE, counter_masks(11));
        let mut server = Driver::new(Session::new_server(DEFAULT_MAX_MESSAGE));
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for round in 0..300 {
            let message = random_message(&mut rng);
            let (text, bytes) = match &message {
                Message::Text(text) => (Some(text.as_str()), text.as_bytes()),
                Message::Binary(data) => (None, data.as_slice()),
            };
            let mut start = 0;
            let cuts = random_cuts(&mut rng, text, bytes.len());
            for (i, &cut) in cuts.iter().enumerate() {
                let fin = i + 1 == cuts.len();
                match text {
                    Some(text) => client.send_text_fragment(&text[start..cut], fin, &mut wire),
                    None => client.send_binary_fragment(&bytes[start..cut], fin, &mut wire),
                }
                .expect("open");
                start = cut;
                if fin {
                    expected.push(Event::Message(message.clone()));
                }
                if rng.below(3) == 0 {
                    let payload = format!("ping {round} {i}").into_bytes();
                    client.send_ping(&payload, &mut wire).expect("open");
                    expected.push(Event::Ping(payload));
                }
            }
        }
        // The wire arrives in random pieces.
        let mut start = 0;
        while start < wire.len() {
            let end = (start + 1 + rng.below(5000)).min(wire.len());
            server.push(&wire[start..end]);
            start = end;
        }
        assert_eq!(server.events.len(), expected.len());
        for (i, (got, want)) in server.events.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "event {i}");
        }
        assert_eq!(server.session.state(), State::Open);
        // The server's pongs go back to the client, each with its ping's payload.
        let mut client = Driver::new(client);
        let pongs = std::mem::take(&mut server.out);
        client.push(&pongs);
        let pings: Vec<Event> = expected
            .iter()
            .filter_map(|event| match event {
                Event::Ping(payload) => Some(Event::Pong(payload.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(client.events, pings);
    }

    #[test]
    fn arbitrary_bytes_end_in_events_or_need_more_and_never_panic() {
        // Mutated valid streams and plain noise, fed in random pieces to both roles: every call
        // terminates, and a failed session stops reading.
        let mut rng = Prng(0xDEAD_BEEF_CAFE_F00D);
        let valid = [
            client_frame(false, Opcode::Text, "κόσμε".as_bytes()),
            client_frame(true, Opcode::Ping, b"ping"),
            client_frame(true, Opcode::Continuation, b"!"),
            client_frame(true, Opcode::Binary, &[0; 300]),
            client_frame(true, Opcode::Close, &close_frame_body(1000, b"bye")),
        ]
        .concat();
        for round in 0..3000 {
            let mut bytes =
                if round % 2 == 0 { valid.clone() } else { (0..rng.below(400)).map(|_| rng.next() as u8).collect() };
            for _ in 0..rng.below(4) {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            let session = if rng.below(2) == 0 {
                Session::new_server(200)
            } else {
                Session::new_client(200, counter_masks(round))
            };
            let mut driver = Driver::new(session);
            let mut start = 0;
            while start < bytes.len() {
                let end = (start + 1 + rng.below(64)).min(bytes.len());
                driver.push(&bytes[start..end]);
                start = end;
            }
            let failures = driver.events.iter().filter(|event| matches!(event, Event::Failed(_))).count();
            assert!(failures <= 1);
            if failures == 1 {
                assert!(matches!(driver.events.last(), Some(Event::Failed(_))), "nothing after a failure");
                assert_eq!(driver.session.state(), State::Closed);
            }
        }
    }

    #[test]
    fn random_text_split_at_any_byte_across_frames_reaches_a_server_exactly() {
        // Unlike `send_text_fragment`, raw frames can split a code point between frames.
        let mut rng = Prng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200 {
            let Message::Text(text) = random_message(&mut rng) else { continue };
            let bytes = text.as_bytes();
            let cuts = random_cuts(&mut rng, None, bytes.len());
            let mut wire = Vec::new();
            let mut start = 0;
            for (i, &cut) in cuts.iter().enumerate() {
                let opcode = if i == 0 { Opcode::Text } else { Opcode::Continuation };
                wire.extend_from_slice(&client_frame(i + 1 == cuts.len(), opcode, &bytes[start..cut]));
                start = cut;
            }
            let mut server = Driver::server();
            server.push(&wire);
            assert_eq!(server.events, [Event::Message(Message::Text(text))]);
        }
    }

    /// The agreement of `--ws-deflate no-context`, or with context takeover both ways.
    fn agreement(no_context_takeover: bool) -> Agreement {
        let mode = if no_context_takeover {
            super::super::extension::DeflateMode::NoContext
        } else {
            super::super::extension::DeflateMode::Context
        };
        super::super::extension::negotiate(std::iter::once(&b"permessage-deflate"[..]), mode).expect("acceptable")
    }

    fn deflate_server(no_context_takeover: bool) -> Session {
        let mut session = Session::new_server(LIMIT);
        session.use_deflate(agreement(no_context_takeover));
        session
    }

    /// A client frame with RSV1 set: the first frame of a compressed message.
    fn compressed_client_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_compressed_frame(&mut out, fin, opcode, payload, Some([0xA1, 0xB2, 0xC3, 0xD4]));
        out
    }

    #[test]
    fn rfc7692_7_2_3_1_compressed_hello_in_one_frame_is_a_text_message() {
        let bytes = compressed_client_frame(true, Opcode::Text, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let (events, out, _) = receive_every_way(&|| deflate_server(true), &bytes);
        assert_eq!(events, [Event::Message(Message::Text("Hello".into()))]);
        assert!(out.is_empty());
    }

    #[test]
    fn rfc7692_7_2_3_1_compressed_hello_in_two_fragments_only_the_first_with_rsv1() {
        // "0x41 0x03 0xf2 0x48 0xcd" then "0x80 0x04 0xc9 0xc9 0x07 0x00", masked here.
        let bytes = [
            compressed_client_frame(false, Opcode::Text, &[0xf2, 0x48, 0xcd]),
            client_frame(true, Opcode::Continuation, &[0xc9, 0xc9, 0x07, 0x00]),
        ]
        .concat();
        let (events, _, _) = receive_every_way(&|| deflate_server(true), &bytes);
        assert_eq!(events, [Event::Message(Message::Text("Hello".into()))]);
    }

    #[test]
    fn rfc7692_7_2_3_2_with_context_takeover_the_second_message_refers_to_the_first() {
        let bytes = [
            compressed_client_frame(true, Opcode::Text, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            compressed_client_frame(true, Opcode::Text, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
        ]
        .concat();
        let (events, _, _) = receive_every_way(&|| deflate_server(false), &bytes);
        let hello = Event::Message(Message::Text("Hello".into()));
        assert_eq!(events, [hello.clone(), hello.clone()]);
        // Without it, the second message points before the start of its stream: 1007.
        let (events, out, _) = receive_every_way(&|| deflate_server(true), &bytes);
        assert_eq!(events, [hello, Event::Failed(ProtocolError::Compression(InflateError::DistanceTooFarBack))]);
        assert_closed_with(&out, CloseCode::INVALID_DATA);
    }

    #[test]
    fn rfc7692_6_uncompressed_messages_still_arrive_as_they_are() {
        let bytes = client_frame(true, Opcode::Text, b"Hello");
        let (events, _, _) = receive_every_way(&|| deflate_server(true), &bytes);
        assert_eq!(events, [Event::Message(Message::Text("Hello".into()))]);
    }

    #[test]
    fn rfc6455_5_2_rsv1_without_the_extension_fails_with_1002() {
        let bytes = compressed_client_frame(true, Opcode::Text, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let (events, out, _) = server_every_way(&bytes);
        assert_eq!(events, [failed(FrameError::ReservedBitsSet)]);
        assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc7692_6_1_rsv1_on_a_ping_fails_with_1002() {
        let mut ping = client_frame(true, Opcode::Ping, b"");
        ping[0] |= 0x40;
        let (events, out, _) = receive_every_way(&|| deflate_server(true), &ping);
        assert_eq!(events, [failed(FrameError::CompressedBitMisplaced)]);
        assert_closed_with(&out, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn rfc6455_10_4_a_compressed_message_that_inflates_past_the_limit_fails_with_1009() {
        // A few hundred bytes that inflate to 1 MiB, against a 64 KiB limit.
        let mut bomb =
            crate::deflate::Deflater::new(crate::deflate::Level::Default, 15).compress_to_vec(&[b'a'; 1 << 20]);
        bomb.truncate(bomb.len() - 4);
        assert!(bomb.len() < 2048);
        let mut driver = Driver::new(deflate_server(true));
        driver.push(&compressed_client_frame(true, Opcode::Binary, &bomb));
        assert_eq!(driver.events, [failed(MessageError::MessageTooBig { limit: LIMIT })]);
        assert_closed_with(&driver.out, CloseCode::TOO_BIG);
        assert!(driver.session.buffered_bytes() <= LIMIT);
    }

    #[test]
    fn rfc6455_8_1_invalid_utf8_inside_a_compressed_text_message_fails_with_1007() {
        let mut compressed =
            crate::deflate::Deflater::new(crate::deflate::Level::Default, 15).compress_to_vec(b"ok \xff");
        compressed.truncate(compressed.len() - 4);
        let (events, out, _) =
            receive_every_way(&|| deflate_server(true), &compressed_client_frame(true, Opcode::Text, &compressed));
        assert_eq!(events, [failed(MessageError::InvalidUtf8)]);
        assert_closed_with(&out, CloseCode::INVALID_DATA);
    }

    #[test]
    fn rfc7692_6_sent_messages_are_compressed_only_when_smaller_and_control_frames_never() {
        let mut server = deflate_server(true);
        let mut out = Vec::new();
        server.send_text("Hello", &mut out).unwrap();
        assert_eq!(out, server_frame(true, Opcode::Text, b"Hello"), "5 bytes do not compress");
        out.clear();
        let long = "{\"id\":\"k3f9-1\",\"text\":\"hello hello hello hello\",\"time\":1700000000000}";
        server.send_text(long, &mut out).unwrap();
        assert_eq!(out[0], 0xc1, "FIN, RSV1, text");
        assert!(out.len() < long.len());
        out.clear();
        server.send_ping(&[b'a'; 100], &mut out).unwrap();
        assert_eq!(out[0], 0x89, "no RSV1 on a ping");
        // A client of ours reads the compressed message back.
        let mut client = Driver::new(Session::new_client(LIMIT, counter_masks(3)));
        client.session.use_deflate(agreement(true));
        let mut bytes = Vec::new();
        server.send_text(long, &mut bytes).unwrap();
        client.push(&bytes);
        assert_eq!(client.events, [Event::Message(Message::Text(long.into()))]);
    }

    #[test]
    fn rfc7692_7_1_1_no_context_takeover_keeps_nothing_between_messages() {
        let mut server = deflate_server(true);
        let mut out = Vec::new();
        server.send_text(&"x".repeat(1000), &mut out).unwrap();
        let mut driver = Driver::new(server);
        driver.push(&compressed_client_frame(true, Opcode::Text, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]));
        assert_eq!(driver.session.buffered_bytes(), 0);
        let mut context = Driver::new(deflate_server(false));
        context.push(&compressed_client_frame(true, Opcode::Text, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]));
        assert!(context.session.buffered_bytes() > 0, "the window is kept and counted");
    }
}
