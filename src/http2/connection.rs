//! The HTTP/2 connection, server side, sans-I/O (RFC 9113 §3.4, §5, §6.5, §6.9): frames in,
//! [`Event`]s out; responses in, frames out.
//!
//! # Theory of operation
//!
//! [`H2Connection`] is the protocol and nothing else: it knows streams, windows and settings,
//! not routes ([`super::server`] puts the application on top). A driver hands it the bytes
//! after the client's 24-octet preface and the buffer its output goes to:
//!
//! - [`H2Connection::receive`] parses every complete frame and answers what the protocol
//!   answers by itself (SETTINGS ACK, PING ACK, WINDOW_UPDATE, RST_STREAM, GOAWAY), and
//!   returns what the application must act on: a request's header fields, request body
//!   octets, a stream the client reset.
//! - [`H2Connection::send_headers`], [`H2Connection::send_data`], [`H2Connection::end_stream`]
//!   and [`H2Connection::reset`] are the application's answers. Header blocks are written at
//!   once (HPACK is a shared, ordered state); body octets wait in the stream's own buffer.
//! - [`H2Connection::flush`] moves waiting body octets out as DATA frames, never more than the
//!   peer's windows allow (§6.9.1), and resets a stream whose window stayed shut for
//!   `send_timeout` (the slow-consumer policy of HTTP/1.1, applied per stream).
//!
//! Stream states (§5.1), as a server sees them (no push, so no "reserved" states):
//!
//! ```text
//!   idle ── HEADERS ──► open ── recv END_STREAM ──► half-closed (remote) ── send END_STREAM ──► closed
//!     └──── HEADERS with END_STREAM ──────────────►┘
//!   open ── send END_STREAM ──► RST_STREAM(NO_ERROR), §8.1: the rest of the request is not wanted ──► closed
//!   any ── RST_STREAM, sent or received ──► closed
//! ```
//!
//! Half-closed (local) is never kept: a response complete before its request asks the client
//! to stop sending (§8.1), so the stream goes straight to closed.
//!
//! A closed stream leaves the table: a stream id at or below the highest one opened that is not
//! in the table is closed, one above it is idle (§5.1.1). How the last [`CLOSED_REMEMBERED`]
//! closed is kept, because a DATA frame arriving late on a closed stream gets what §5.1 says
//! for that way of closing: ignored if we reset it, a stream error if the peer did, a
//! connection error if both ends had ended it.
//!
//! # Bounds on the known floods
//!
//! - **CONTINUATION flood**: a header block is bounded by [`super::field_block`].
//! - **PING and SETTINGS floods** (and any frame that asks for an answer): each answer goes to
//!   the output; a peer that asks while [`OUTPUT_HIGH_WATER`] octets of answers wait unread is
//!   asking faster than it reads, and the connection ends ([`Event::Flooded`]).
//! - **Rapid reset** (CVE-2023-44487): a stream the peer resets (or opens beyond
//!   SETTINGS_MAX_CONCURRENT_STREAMS) before its response is complete costs a token from a
//!   bucket of [`RESET_BURST`] refilled at [`RESETS_PER_SECOND`]; an empty bucket ends the
//!   connection with ENHANCE_YOUR_CALM.
//! - **Zero-window hold**: a stream's waiting octets are bounded by the application (it stops
//!   pulling from the broker); a stream with octets waiting and no window for `send_timeout`
//!   is reset with CANCEL.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::time::Instant;

use super::error::{ErrorCode, H2Error};
use super::field_block::{FieldBlocks, Step};
use super::frame::{self, encode_header_block, parse_frame, Frame, Setting, DEFAULT_MAX_FRAME_SIZE, MAX_WINDOW_SIZE};
use super::hpack::{self, Decoder, Encoder, Field, HpackError};
use crate::http::grammar::Parsed;

/// Our SETTINGS_MAX_CONCURRENT_STREAMS. RFC 9113 §6.5.2 recommends "no smaller than 100";
/// a thousand lets one connection carry a thousand `EventSource`s (the point of HTTP/2 for
/// SSE, and what a proxy multiplexing its clients needs). What a stream may hold is bounded
/// by the application, so the number of streams bounds the connection's memory.
pub const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// The initial flow-control window, ours and the peer's until it says otherwise (§6.5.2,
/// §6.9.2): 2^16-1 octets.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// While this many octets of output wait unread, a frame that asks for an answer is a flood:
/// a peer that reads its answers never gets here, because body octets stop entering the
/// output at [`DATA_HIGH_WATER`]. 256 KiB, the bound at which an HTTP/1.1 connection stops
/// parsing pipelined requests.
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Body octets (DATA frames) enter the output only while it holds less than this, so that the
/// output stays small and control frames are not stuck behind a megabyte of DATA.
pub const DATA_HIGH_WATER: usize = 64 * 1024;

/// How many streams the peer may cancel (or have refused) at once before the rate applies:
/// as many as it may have open, so that a proxy whose clients all leave together is not
/// taken for an attacker.
pub const RESET_BURST: u32 = MAX_CONCURRENT_STREAMS;

/// The sustained rate of cancelled streams a peer may cause. Each cancelled stream cost a
/// request's work; CVE-2023-44487 is a peer doing that as fast as it can send frames.
pub const RESETS_PER_SECOND: u32 = 100;

/// How many of the most recently closed streams are remembered with how they closed: a frame
/// that arrives late on one is answered as §5.1 says for that way of closing.
/// Late frames are the peer's in flight when the stream closed: a few round trips' worth.
pub const CLOSED_REMEMBERED: usize = 256;

/// How a stream closed (RFC 9113 §5.1, "closed"): what a DATA frame arriving on it afterwards
/// gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    /// We sent RST_STREAM: the peer "might have already sent ... frames on the stream that
    /// cannot be withdrawn. An endpoint MUST ignore frames that it receives on closed streams
    /// after it has sent a RST_STREAM frame."
    ResetByUs,
    /// The peer sent RST_STREAM: "An endpoint that receives any frame other than PRIORITY
    /// after receiving a RST_STREAM MUST treat that as a stream error ... of type
    /// STREAM_CLOSED."
    ResetByPeer,
    /// Both sides sent END_STREAM: "an endpoint that receives any frames after receiving a
    /// frame with the END_STREAM flag set MUST treat that as a connection error ... of type
    /// STREAM_CLOSED".
    Ended,
}

/// What the application must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A request's header fields (not yet checked against HTTP's rules, §8.3): `end_stream`
    /// means no body follows.
    Request { stream_id: u32, fields: Vec<Field>, end_stream: bool },
    /// The request's header list passed our SETTINGS_MAX_HEADER_LIST_SIZE: answer 431
    /// (§10.5.1). The block was decoded, so the connection goes on.
    HeaderListTooLarge { stream_id: u32 },
    /// Request body octets; `end_stream`: the last.
    Data { stream_id: u32, data: Vec<u8>, end_stream: bool },
    /// The stream was closed by a reset (the peer's, ours, or a stalled window): drop its
    /// exchange.
    Reset { stream_id: u32 },
    /// The connection has ended with a GOAWAY: drop every exchange, flush the output, close.
    Closed,
    /// The peer asks for answers faster than it reads them: drop every exchange and the
    /// output (a GOAWAY behind it would never be read), and close.
    Flooded,
}

/// §5.1: the states a stream the peer opened can be in while we still know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Open,
    /// The peer sent END_STREAM; we may still send.
    HalfClosedRemote,
}

// Half-closed (local) is not kept: once our response is complete, a stream whose request is
// still open is reset with NO_ERROR (§8.1), so it goes straight to closed.

/// One stream's share of the connection.
#[derive(Debug)]
struct Stream {
    state: StreamState,
    /// §6.9: how much DATA we may still send on it. Signed: a smaller
    /// SETTINGS_INITIAL_WINDOW_SIZE can make it negative (§6.9.2).
    send_window: i64,
    /// How much DATA the peer may still send on it.
    recv_window: i64,
    /// Body octets written by the application and not yet sent as DATA.
    pending: Vec<u8>,
    /// The application has written its last octet: END_STREAM follows `pending`.
    ending: bool,
    /// Since when `pending` has waited for a window.
    stalled_since: Option<Instant>,
}

/// The connection's phase (one at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// §3.4: the client's preface must be followed by its SETTINGS.
    AwaitingSettings,
    /// Streams may open.
    Open,
    /// We sent GOAWAY(NO_ERROR): no new streams, the open ones finish.
    GoingAway,
    /// The connection is over (after GOAWAY with an error, or a flood); only flushing is left.
    Closed,
}

/// A token bucket: how many streams the peer may still have cancelled before it is cut off.
#[derive(Debug)]
struct ResetBudget {
    tokens: u32,
    refilled_at: Instant,
}

impl ResetBudget {
    /// Spends one token at `now`; `false` when none is left.
    fn spend(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned = (elapsed.as_millis() as u64 * u64::from(RESETS_PER_SECOND) / 1000) as u32;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(RESET_BURST);
            self.refilled_at = now;
        }
        match self.tokens.checked_sub(1) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

/// The server side of one HTTP/2 connection.
#[derive(Debug)]
pub struct H2Connection {
    phase: Phase,
    /// The highest stream id the peer opened (§5.1.1): ids at or below it are not idle.
    last_stream_id: u32,
    streams: BTreeMap<u32, Stream>,
    blocks: FieldBlocks,
    decoder: Decoder,
    encoder: Encoder,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE: each new stream's send window.
    peer_initial_window: u32,
    /// The peer's SETTINGS_MAX_FRAME_SIZE: our DATA and header frames are at most this.
    peer_max_frame_size: u32,
    /// §6.9: the connection's windows, both ways.
    send_window: i64,
    recv_window: i64,
    resets: ResetBudget,
    /// The last [`CLOSED_REMEMBERED`] streams closed, and how.
    closed: VecDeque<(u32, Closed)>,
    /// After `send_timeout` without a window, a stream with octets waiting is reset.
    send_timeout: Duration,
}

impl H2Connection {
    /// A connection whose header blocks may hold `max_header_list_size` octets (decoded,
    /// §6.5.2; also the bound on a compressed block); writes our SETTINGS, the server's
    /// connection preface (§3.4), to `output`.
    pub fn new(
        max_header_list_size: usize,
        send_timeout: Duration,
        now: Instant,
        output: &mut Vec<u8>,
    ) -> H2Connection {
        // §3.4: "The server connection preface consists of a potentially empty SETTINGS
        // frame (Section 6.5) that MUST be the first frame the server sends".
        frame::encode_settings(
            &[
                Setting::MaxConcurrentStreams(MAX_CONCURRENT_STREAMS),
                Setting::MaxHeaderListSize(max_header_list_size as u32),
            ],
            output,
        );
        H2Connection {
            phase: Phase::AwaitingSettings,
            last_stream_id: 0,
            streams: BTreeMap::new(),
            blocks: FieldBlocks::new(max_header_list_size),
            decoder: Decoder::new(hpack::DEFAULT_TABLE_SIZE, max_header_list_size),
            encoder: Encoder::new(hpack::DEFAULT_TABLE_SIZE, true),
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: i64::from(DEFAULT_WINDOW),
            resets: ResetBudget { tokens: RESET_BURST, refilled_at: now },
            closed: VecDeque::new(),
            send_timeout,
        }
    }

    /// The connection is over and nothing more will be sent but what is in the output.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed || (self.phase == Phase::GoingAway && self.streams.is_empty())
    }

    /// Whether the stream is open (not yet closed by both ends or reset).
    pub fn is_open(&self, stream_id: u32) -> bool {
        self.streams.contains_key(&stream_id)
    }

    /// No stream is open.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty()
    }

    /// Body octets waiting in the streams' buffers.
    pub fn pending_bytes(&self) -> usize {
        self.streams.values().map(|stream| stream.pending.len()).sum()
    }

    /// A stream's waiting body octets, for the application to append to (an SSE stream
    /// writes its events here); `None` once the stream is closed.
    pub fn pending_mut(&mut self, stream_id: u32) -> Option<&mut Vec<u8>> {
        self.streams.get_mut(&stream_id).filter(|stream| !stream.ending).map(|stream| &mut stream.pending)
    }

    /// When a stalled stream will be reset, if one is stalled.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams.values().filter_map(|stream| stream.stalled_since).min().map(|since| since + self.send_timeout)
    }

    /// Parses and acts on every complete frame in `input` (consumed from it), appending the
    /// protocol's own answers to `output`.
    pub fn receive(&mut self, input: &mut Vec<u8>, output: &mut Vec<u8>, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut consumed = 0;
        while self.phase != Phase::Closed {
            let (frame, used) = match parse_frame(&input[consumed..], DEFAULT_MAX_FRAME_SIZE) {
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Complete { value, consumed }) => (value, consumed),
                Err(error) => {
                    self.fail(error, output, &mut events);
                    break;
                }
            };
            consumed += used;
            if let Err(error) = self.handle(frame, output, now, &mut events) {
                match error {
                    H2Error::Connection(..) => self.fail(error, output, &mut events),
                    H2Error::Stream(stream_id, code, _) => self.reset(stream_id, code, output, &mut events),
                }
            }
        }
        input.drain(..consumed);
        events
    }

    /// One frame, by type and by the state of its stream.
    fn handle(
        &mut self,
        frame: Frame<'_>,
        output: &mut Vec<u8>,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Result<(), H2Error> {
        if self.phase == Phase::AwaitingSettings {
            // §3.4: "The client connection preface ... MUST be followed by a SETTINGS frame";
            // "Clients and servers MUST treat an invalid connection preface as a connection
            // error (Section 5.4.1) of type PROTOCOL_ERROR."
            if !matches!(frame, Frame::Settings { ack: false, .. }) {
                return Err(H2Error::Connection(ErrorCode::ProtocolError, "preface not followed by SETTINGS"));
            }
            self.phase = Phase::Open;
        }
        if asks_for_an_answer(&frame) && output.len() >= OUTPUT_HIGH_WATER {
            // The peer asks faster than it reads: its answers would queue without bound.
            self.phase = Phase::Closed;
            self.streams.clear();
            events.push(Event::Flooded);
            return Ok(());
        }
        match self.blocks.receive(&frame)? {
            Step::Incomplete => return Ok(()),
            Step::Complete(block) => {
                return self.open_stream(block.stream_id, &block.block, block.end_stream, output, now, events)
            }
            Step::NotABlock => {}
        }
        match frame {
            Frame::Data { stream_id, end_stream, data, flow_controlled_len } => {
                self.receive_data(stream_id, end_stream, data, flow_controlled_len, output, events)
            }
            Frame::Settings { ack: true, .. } => Ok(()),
            Frame::Settings { ack: false, settings } => {
                for setting in settings.iter() {
                    self.apply_setting(setting)?;
                }
                // §6.5.3: "Upon receiving and processing the SETTINGS frame, the recipient
                // MUST immediately emit a SETTINGS frame with the ACK flag set."
                Frame::Settings { ack: true, settings: frame::Settings::EMPTY }.encode(output);
                Ok(())
            }
            // §6.7: "Receivers of a PING frame that does not include an ACK flag MUST send a
            // PING frame with the ACK flag set in response, with an identical frame payload."
            Frame::Ping { ack: false, opaque } => {
                Frame::Ping { ack: true, opaque }.encode(output);
                Ok(())
            }
            Frame::Ping { ack: true, .. } => Ok(()),
            Frame::WindowUpdate { stream_id: 0, increment } => {
                self.send_window += i64::from(increment);
                // §6.9.1: "If a sender receives a WINDOW_UPDATE that causes a flow-control
                // window to exceed this maximum, it MUST terminate either the stream or the
                // connection, as appropriate."
                if self.send_window > i64::from(MAX_WINDOW_SIZE) {
                    return Err(H2Error::Connection(ErrorCode::FlowControlError, "connection window above 2^31-1"));
                }
                Ok(())
            }
            Frame::WindowUpdate { stream_id, increment } => {
                self.check_not_idle(stream_id)?;
                if let Some(stream) = self.streams.get_mut(&stream_id) {
                    stream.send_window += i64::from(increment);
                    if stream.send_window > i64::from(MAX_WINDOW_SIZE) {
                        return Err(H2Error::Stream(
                            stream_id,
                            ErrorCode::FlowControlError,
                            "stream window above 2^31-1",
                        ));
                    }
                }
                // §6.9: WINDOW_UPDATE "can be sent by a peer that has sent a frame with the
                // END_STREAM flag set", so on a closed stream it is ignored.
                Ok(())
            }
            Frame::RstStream { stream_id, .. } => {
                self.check_not_idle(stream_id)?;
                // §6.4: "the receiver ... MUST NOT send additional frames for that stream".
                if let Some(stream) = self.streams.remove(&stream_id) {
                    self.remember_closed(stream_id, Closed::ResetByPeer);
                    events.push(Event::Reset { stream_id });
                    if !stream.ending || !stream.pending.is_empty() {
                        self.spend_reset(output, now, events);
                    }
                }
                Ok(())
            }
            // RFC 9113 §5.3.2: the RFC 7540 priority signals are deprecated; we ignore them.
            Frame::Priority { .. } => Ok(()),
            Frame::GoAway { .. } => {
                // §6.8: the peer will open no more streams; those open finish.
                if self.phase == Phase::Open {
                    self.phase = Phase::GoingAway;
                }
                Ok(())
            }
            Frame::StreamError(error) => Err(error),
            // §5.5: "Implementations MUST ignore and discard frames of unknown types."
            Frame::Unknown { .. } => Ok(()),
            // Taken by `self.blocks` above.
            Frame::Headers { .. } | Frame::Continuation { .. } => Ok(()),
        }
    }

    /// §6.5.2, the peer's settings as they apply to what we send.
    fn apply_setting(&mut self, setting: Setting) -> Result<(), H2Error> {
        match setting {
            Setting::HeaderTableSize(size) => self.encoder.set_max_table_size(size as usize),
            Setting::InitialWindowSize(size) => {
                // §6.9.2: "When the value of SETTINGS_INITIAL_WINDOW_SIZE changes, a receiver
                // MUST adjust the size of all stream flow-control windows that it maintains by
                // the difference between the new value and the old value."
                let delta = i64::from(size) - i64::from(self.peer_initial_window);
                self.peer_initial_window = size;
                for stream in self.streams.values_mut() {
                    stream.send_window += delta;
                    // "An endpoint MUST treat a change to SETTINGS_INITIAL_WINDOW_SIZE that
                    // causes any flow-control window to exceed the maximum size as a
                    // connection error (Section 5.4.1) of type FLOW_CONTROL_ERROR."
                    if stream.send_window > i64::from(MAX_WINDOW_SIZE) {
                        return Err(H2Error::Connection(ErrorCode::FlowControlError, "stream window above 2^31-1"));
                    }
                }
            }
            Setting::MaxFrameSize(size) => self.peer_max_frame_size = size,
            // A client's limits on what it sends or on server push do not concern us; our
            // responses' header lists are small.
            Setting::EnablePush(_)
            | Setting::MaxConcurrentStreams(_)
            | Setting::MaxHeaderListSize(_)
            | Setting::Unknown(..) => {}
        }
        Ok(())
    }

    /// §5.1 idle: "Receiving any frame other than HEADERS or PRIORITY on a stream in this
    /// state MUST be treated as a connection error (Section 5.4.1) of type PROTOCOL_ERROR."
    fn check_not_idle(&self, stream_id: u32) -> Result<(), H2Error> {
        if stream_id > self.last_stream_id {
            return Err(H2Error::Connection(ErrorCode::ProtocolError, "frame on an idle stream"));
        }
        Ok(())
    }

    /// A complete header block opens a stream (or, on an open one, is its trailers).
    fn open_stream(
        &mut self,
        stream_id: u32,
        block: &[u8],
        end_stream: bool,
        output: &mut Vec<u8>,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Result<(), H2Error> {
        // Decoded whatever happens next: the decoder's table must stay in step (RFC 7541 §2.2).
        let fields = match self.decoder.decode(block) {
            Ok(fields) => Ok(fields),
            Err(error) => match error.connection_error() {
                Some(error) => return Err(error),
                None => Err(HpackError::HeaderListTooLarge),
            },
        };
        if let Some(stream) = self.streams.get_mut(&stream_id) {
            return match stream.state {
                // §8.1: trailers end the request; we have no use for their fields.
                StreamState::Open if end_stream => {
                    stream.state = StreamState::HalfClosedRemote;
                    events.push(Event::Data { stream_id, data: Vec::new(), end_stream: true });
                    Ok(())
                }
                // §8.1: "A HEADERS frame (and associated CONTINUATION frames) can only appear at
                // the start or end of a stream"; trailers without END_STREAM are malformed.
                StreamState::Open => {
                    Err(H2Error::Stream(stream_id, ErrorCode::ProtocolError, "trailers without END_STREAM"))
                }
                // §5.1 half-closed (remote): frames other than WINDOW_UPDATE, PRIORITY or
                // RST_STREAM are "a stream error (Section 5.4.2) of type STREAM_CLOSED".
                StreamState::HalfClosedRemote => {
                    Err(H2Error::Stream(stream_id, ErrorCode::StreamClosed, "HEADERS after END_STREAM"))
                }
            };
        }
        // §5.1.1: "Streams initiated by a client MUST use odd-numbered stream identifiers";
        // "The identifier of a newly established stream MUST be numerically greater than all
        // streams that the initiating endpoint has opened or reserved. ... An endpoint that
        // receives an unexpected stream identifier MUST respond with a connection error
        // (Section 5.4.1) of type PROTOCOL_ERROR."
        if stream_id.is_multiple_of(2) {
            return Err(H2Error::Connection(ErrorCode::ProtocolError, "even stream identifier from a client"));
        }
        if stream_id <= self.last_stream_id {
            return Err(H2Error::Connection(ErrorCode::ProtocolError, "stream identifier not above the last"));
        }
        self.last_stream_id = stream_id;
        if self.phase != Phase::Open {
            // §6.8: after GOAWAY, streams above its last id are not processed; the peer
            // retries them on a new connection.
            return Ok(());
        }
        // §5.1.2: "An endpoint that receives a HEADERS frame that causes its advertised
        // concurrent stream limit to be exceeded MUST treat this as a stream error (Section
        // 5.4.2) of type PROTOCOL_ERROR or REFUSED_STREAM." REFUSED_STREAM: the peer may retry.
        if self.streams.len() >= MAX_CONCURRENT_STREAMS as usize {
            Frame::RstStream { stream_id, code: ErrorCode::RefusedStream }.encode(output);
            self.remember_closed(stream_id, Closed::ResetByUs);
            self.spend_reset(output, now, events);
            return Ok(());
        }
        let state = if end_stream { StreamState::HalfClosedRemote } else { StreamState::Open };
        self.streams.insert(
            stream_id,
            Stream {
                state,
                send_window: i64::from(self.peer_initial_window),
                recv_window: i64::from(DEFAULT_WINDOW),
                pending: Vec::new(),
                ending: false,
                stalled_since: None,
            },
        );
        events.push(match fields {
            Ok(fields) => Event::Request { stream_id, fields, end_stream },
            Err(_) => Event::HeaderListTooLarge { stream_id },
        });
        Ok(())
    }

    fn receive_data(
        &mut self,
        stream_id: u32,
        end_stream: bool,
        data: &[u8],
        flow_controlled_len: u32,
        output: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Result<(), H2Error> {
        self.check_not_idle(stream_id)?;
        let len = i64::from(flow_controlled_len);
        // §6.9.1: "A receiver MAY respond with a stream error (Section 5.4.2) or connection
        // error (Section 5.4.1) of type FLOW_CONTROL_ERROR if it is unable to accept a frame"
        // beyond its window: the peer broke the rule "MUST NOT send a flow-controlled frame
        // with a length that exceeds the space available".
        if len > self.recv_window {
            return Err(H2Error::Connection(ErrorCode::FlowControlError, "DATA beyond the connection window"));
        }
        self.recv_window -= len;
        // Every octet is taken at once (a body is bounded by the application, which answers
        // 413 past its limit), so the window is given back as soon as half of it is used: one
        // WINDOW_UPDATE per 32 KiB instead of one per frame.
        if let Some(increment) = replenish(&mut self.recv_window) {
            Frame::WindowUpdate { stream_id: 0, increment }.encode(output);
        }
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            // Closed (§5.1): what the frame gets depends on how the stream closed. A stream
            // closed longer ago than we remember is taken as one the peer reset: a late frame
            // from a peer that knew it was closed (with ours, it would be in the memory).
            let how = self.closed.iter().rev().find(|(id, _)| *id == stream_id).map(|(_, how)| *how);
            return match how {
                Some(Closed::ResetByUs) => Ok(()),
                Some(Closed::ResetByPeer) | None => {
                    Err(H2Error::Stream(stream_id, ErrorCode::StreamClosed, "DATA on a closed stream"))
                }
                Some(Closed::Ended) => {
                    Err(H2Error::Connection(ErrorCode::StreamClosed, "DATA after both ends ended the stream"))
                }
            };
        };
        match stream.state {
            StreamState::HalfClosedRemote => {
                return Err(H2Error::Stream(stream_id, ErrorCode::StreamClosed, "DATA after END_STREAM"))
            }
            StreamState::Open => {}
        }
        if len > stream.recv_window {
            return Err(H2Error::Stream(stream_id, ErrorCode::FlowControlError, "DATA beyond the stream window"));
        }
        stream.recv_window -= len;
        if end_stream {
            stream.state = StreamState::HalfClosedRemote;
        } else if let Some(increment) = replenish(&mut stream.recv_window) {
            Frame::WindowUpdate { stream_id, increment }.encode(output);
        }
        events.push(Event::Data { stream_id, data: data.to_vec(), end_stream });
        Ok(())
    }

    /// A stream the peer made us drop before its response was complete: one token.
    fn spend_reset(&mut self, output: &mut Vec<u8>, now: Instant, events: &mut Vec<Event>) {
        if !self.resets.spend(now) {
            // RFC 9113 §10.5: "An endpoint MAY treat activity that is suspicious as a
            // connection error (Section 5.4.1) of type ENHANCE_YOUR_CALM."
            let error = H2Error::Connection(ErrorCode::EnhanceYourCalm, "too many streams cancelled");
            self.fail(error, output, events);
        }
    }

    /// §5.4.1: "An endpoint that encounters a connection error SHOULD first send a GOAWAY
    /// frame (Section 6.8) with the stream identifier of the last stream that it successfully
    /// received from its peer."
    fn fail(&mut self, error: H2Error, output: &mut Vec<u8>, events: &mut Vec<Event>) {
        if self.phase == Phase::Closed {
            return;
        }
        let debug = error.reason().as_bytes();
        Frame::GoAway { last_stream_id: self.last_stream_id, code: error.code(), debug }.encode(output);
        self.phase = Phase::Closed;
        self.streams.clear();
        events.push(Event::Closed);
    }

    /// Graceful shutdown (§6.8): GOAWAY(NO_ERROR) naming the last stream we will process;
    /// the open streams finish.
    pub fn go_away(&mut self, output: &mut Vec<u8>) {
        if matches!(self.phase, Phase::Open | Phase::AwaitingSettings) {
            Frame::GoAway { last_stream_id: self.last_stream_id, code: ErrorCode::NoError, debug: b"" }.encode(output);
            self.phase = Phase::GoingAway;
        }
    }

    /// Sends a response's header block on an open stream.
    pub fn send_headers(&mut self, stream_id: u32, fields: &[Field], end_stream: bool, output: &mut Vec<u8>) {
        if !self.streams.contains_key(&stream_id) {
            return;
        }
        let mut block = Vec::new();
        self.encoder.encode(fields, &mut block);
        encode_header_block(stream_id, end_stream, &block, self.peer_max_frame_size, output);
        if end_stream {
            self.close_local(stream_id, output);
        }
    }

    /// Queues body octets on a stream; [`H2Connection::flush`] sends them.
    pub fn send_data(&mut self, stream_id: u32, data: &[u8]) {
        if let Some(pending) = self.pending_mut(stream_id) {
            pending.extend_from_slice(data);
        }
    }

    /// The response is complete: END_STREAM follows what waits.
    pub fn end_stream(&mut self, stream_id: u32) {
        if let Some(stream) = self.streams.get_mut(&stream_id) {
            stream.ending = true;
        }
    }

    /// Resets a stream (§6.4); its exchange is dropped through [`Event::Reset`].
    pub fn reset(&mut self, stream_id: u32, code: ErrorCode, output: &mut Vec<u8>, events: &mut Vec<Event>) {
        Frame::RstStream { stream_id, code }.encode(output);
        self.remember_closed(stream_id, Closed::ResetByUs);
        if self.streams.remove(&stream_id).is_some() {
            events.push(Event::Reset { stream_id });
        }
    }

    fn remember_closed(&mut self, stream_id: u32, how: Closed) {
        if self.closed.len() == CLOSED_REMEMBERED {
            self.closed.pop_front();
        }
        self.closed.push_back((stream_id, how));
    }

    /// We sent END_STREAM: the stream is half-closed (local), or closed. §8.1: a server whose
    /// response is complete before the request is "can request that the client abort
    /// transmission of a request without error by sending a RST_STREAM with an error code of
    /// NO_ERROR".
    fn close_local(&mut self, stream_id: u32, output: &mut Vec<u8>) {
        let Some(stream) = self.streams.remove(&stream_id) else { return };
        if stream.state == StreamState::Open {
            Frame::RstStream { stream_id, code: ErrorCode::NoError }.encode(output);
            self.remember_closed(stream_id, Closed::ResetByUs);
        } else {
            self.remember_closed(stream_id, Closed::Ended);
        }
    }

    /// Moves waiting body octets into DATA frames, within the peer's windows and
    /// [`DATA_HIGH_WATER`]; resets streams stalled for `send_timeout` (their ids are returned
    /// as [`Event::Reset`]).
    pub fn flush(&mut self, output: &mut Vec<u8>, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        if self.phase == Phase::Closed {
            return events;
        }
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for stream_id in ids {
            let Some(stream) = self.streams.get_mut(&stream_id) else { continue };
            let mut sent_end = false;
            while !stream.pending.is_empty() && output.len() < DATA_HIGH_WATER {
                // §6.9.1: "The sender MUST NOT send a flow-controlled frame with a length
                // that exceeds the space available in either of the flow-control windows
                // advertised by the receiver."
                let room = stream.send_window.min(self.send_window).min(i64::from(self.peer_max_frame_size));
                if room <= 0 {
                    break;
                }
                let n = stream.pending.len().min(room as usize);
                let last = n == stream.pending.len() && stream.ending;
                sent_end |= last;
                Frame::Data { stream_id, end_stream: last, data: &stream.pending[..n], flow_controlled_len: 0 }
                    .encode(output);
                stream.pending.drain(..n);
                stream.send_window -= n as i64;
                self.send_window -= n as i64;
                stream.stalled_since = None;
            }
            if stream.pending.is_empty() {
                stream.stalled_since = None;
                if stream.ending {
                    if !sent_end {
                        // Nothing was left to carry END_STREAM: an empty DATA frame does.
                        Frame::Data { stream_id, end_stream: true, data: b"", flow_controlled_len: 0 }.encode(output);
                    }
                    self.close_local(stream_id, output);
                }
                continue;
            }
            let shut = stream.send_window <= 0 || self.send_window <= 0;
            if !shut {
                continue; // waiting for the output to drain, not for the peer's window
            }
            let since = *stream.stalled_since.get_or_insert(now);
            if now >= since + self.send_timeout {
                // The slow-consumer policy, per stream: a window held shut is a client that
                // does not read. CANCEL: "the stream is no longer needed" (§7).
                self.reset(stream_id, ErrorCode::Cancel, output, &mut events);
            }
        }
        events
    }
}

/// The increment that brings a receive window used by half or more back to
/// [`DEFAULT_WINDOW`], if it is time for one.
fn replenish(window: &mut i64) -> Option<u32> {
    if *window > i64::from(DEFAULT_WINDOW / 2) {
        return None;
    }
    let increment = i64::from(DEFAULT_WINDOW) - *window;
    *window = i64::from(DEFAULT_WINDOW);
    Some(increment as u32)
}

/// Frames whose receipt makes us queue an answer: PING and SETTINGS (their ACKs), and HEADERS
/// (a response, or a refusal).
fn asks_for_an_answer(frame: &Frame<'_>) -> bool {
    matches!(frame, Frame::Ping { ack: false, .. } | Frame::Settings { ack: false, .. } | Frame::Headers { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::frame::{flag, kind, FrameHeader};

    /// The time every test starts at; later times are offsets from it.
    fn t0() -> Instant {
        // A fixed base: tests compare instants, never read the clock again.
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    const SEND_TIMEOUT: Duration = Duration::from_secs(10);

    /// A connection past its SETTINGS exchange, and the frames the client sent so far.
    struct Peer {
        connection: H2Connection,
        /// What the server wrote, not yet looked at.
        output: Vec<u8>,
        encoder: Encoder,
    }

    impl Peer {
        fn new() -> Peer {
            Peer::with_settings(&[])
        }

        /// Just after the preface: our SETTINGS written (and dropped), the client's not yet sent.
        fn fresh() -> Peer {
            let mut output = Vec::new();
            let connection = H2Connection::new(16 * 1024, SEND_TIMEOUT, t0(), &mut output);
            output.clear();
            Peer { connection, output, encoder: Encoder::new(hpack::DEFAULT_TABLE_SIZE, false) }
        }

        fn with_settings(settings: &[Setting]) -> Peer {
            let mut peer = Peer::fresh();
            let mut bytes = Vec::new();
            frame::encode_settings(settings, &mut bytes);
            let events = peer.send(&bytes);
            assert!(events.is_empty());
            peer.output.clear();
            peer
        }

        fn send_at(&mut self, bytes: &[u8], at: Instant) -> Vec<Event> {
            let mut input = bytes.to_vec();
            let events = self.connection.receive(&mut input, &mut self.output, at);
            assert!(input.is_empty() || self.connection.phase == Phase::Closed, "a frame was left unparsed");
            events
        }

        fn send(&mut self, bytes: &[u8]) -> Vec<Event> {
            self.send_at(bytes, t0())
        }

        fn frame(&mut self, frame: Frame<'_>) -> Vec<Event> {
            let mut bytes = Vec::new();
            frame.encode(&mut bytes);
            self.send(&bytes)
        }

        /// A GET on `stream_id`, with END_STREAM unless `body_follows`.
        fn headers(&mut self, stream_id: u32, body_follows: bool) -> Vec<Event> {
            let fields = [Field::new(":method", "GET"), Field::new(":scheme", "http"), Field::new(":path", "/")];
            let mut block = Vec::new();
            self.encoder.encode(&fields, &mut block);
            self.frame(Frame::Headers { stream_id, end_stream: !body_follows, end_headers: true, fragment: &block })
        }

        /// The frames the server wrote since the last look, as (type, flags, stream, payload).
        fn written(&mut self) -> Vec<(u8, u8, u32, Vec<u8>)> {
            let mut frames = Vec::new();
            let mut rest = &self.output[..];
            while let Some(header) = rest.first_chunk::<9>() {
                let header = FrameHeader::parse(header);
                let end = 9 + header.length as usize;
                frames.push((header.kind, header.flags, header.stream_id, rest[9..end].to_vec()));
                rest = &rest[end..];
            }
            self.output.clear();
            frames
        }

        /// The code of the GOAWAY the server wrote.
        fn goaway(&mut self) -> ErrorCode {
            let frames = self.written();
            let (_, _, _, payload) = frames.iter().find(|f| f.0 == kind::GOAWAY).expect("a GOAWAY");
            ErrorCode::from_code(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
        }

        /// The code of the RST_STREAM the server wrote on `stream_id`.
        fn rst(&mut self, stream_id: u32) -> ErrorCode {
            let frames = self.written();
            let (_, _, _, payload) =
                frames.iter().find(|f| f.0 == kind::RST_STREAM && f.2 == stream_id).expect("a RST_STREAM");
            ErrorCode::from_code(u32::from_be_bytes(payload[..4].try_into().unwrap()))
        }

        fn flush(&mut self) -> Vec<Event> {
            self.connection.flush(&mut self.output, t0())
        }

        /// The DATA octets written, by stream, and whether END_STREAM came.
        fn data(&mut self) -> Vec<(u32, usize, bool)> {
            self.written()
                .into_iter()
                .filter(|f| f.0 == kind::DATA)
                .map(|(_, flags, id, payload)| (id, payload.len(), flags & flag::END_STREAM != 0))
                .collect()
        }
    }

    #[test]
    fn the_server_preface_is_a_settings_frame_first_rfc9113_3_4() {
        let mut output = Vec::new();
        H2Connection::new(16 * 1024, SEND_TIMEOUT, t0(), &mut output);
        let header = FrameHeader::parse(output.first_chunk::<9>().unwrap());
        assert_eq!((header.kind, header.flags, header.stream_id), (kind::SETTINGS, 0, 0));
        assert!(output[9..].chunks(6).any(|s| s == [0, 3, 0, 0, 0x03, 0xe8]), "MAX_CONCURRENT_STREAMS 1000");
    }

    #[test]
    fn a_preface_not_followed_by_settings_is_a_protocol_error_rfc9113_3_4() {
        let mut peer = Peer::fresh();
        let events = peer.frame(Frame::Ping { ack: false, opaque: [0; 8] });
        assert_eq!(events, vec![Event::Closed]);
        assert_eq!(peer.goaway(), ErrorCode::ProtocolError);
    }

    #[test]
    fn settings_are_acknowledged_rfc9113_6_5_3() {
        let mut output = Vec::new();
        let mut connection = H2Connection::new(16 * 1024, SEND_TIMEOUT, t0(), &mut output);
        output.clear();
        let mut settings = Vec::new();
        frame::encode_settings(&[Setting::MaxFrameSize(20_000)], &mut settings);
        connection.receive(&mut settings, &mut output, t0());
        assert_eq!(output, [0, 0, 0, kind::SETTINGS, flag::ACK, 0, 0, 0, 0]);
        assert_eq!(connection.peer_max_frame_size, 20_000);
    }

    #[test]
    fn a_ping_is_answered_with_its_payload_and_ack_rfc9113_6_7() {
        let mut peer = Peer::new();
        peer.frame(Frame::Ping { ack: false, opaque: *b"12345678" });
        assert_eq!(peer.written(), vec![(kind::PING, flag::ACK, 0, b"12345678".to_vec())]);
        peer.frame(Frame::Ping { ack: true, opaque: *b"12345678" });
        assert!(peer.written().is_empty(), "an ACK is not answered");
    }

    #[test]
    fn headers_open_a_stream_and_report_its_request_rfc9113_5_1() {
        let mut peer = Peer::new();
        let events = peer.headers(1, false);
        let [Event::Request { stream_id: 1, fields, end_stream: true }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(fields[0], Field::new(":method", "GET"));
        assert!(peer.connection.is_open(1));
    }

    #[test]
    fn a_client_stream_id_must_be_odd_and_increasing_rfc9113_5_1_1() {
        let mut peer = Peer::new();
        peer.headers(2, false);
        assert_eq!(peer.goaway(), ErrorCode::ProtocolError);
        let mut peer = Peer::new();
        peer.headers(5, false);
        peer.headers(3, false);
        assert_eq!(peer.goaway(), ErrorCode::ProtocolError);
    }

    #[test]
    fn frames_other_than_headers_on_an_idle_stream_are_a_protocol_error_rfc9113_5_1() {
        for frame in [
            Frame::Data { stream_id: 1, end_stream: false, data: b"x", flow_controlled_len: 1 },
            Frame::WindowUpdate { stream_id: 1, increment: 1 },
            Frame::RstStream { stream_id: 1, code: ErrorCode::Cancel },
        ] {
            let mut peer = Peer::new();
            assert_eq!(peer.frame(frame), vec![Event::Closed]);
            assert_eq!(peer.goaway(), ErrorCode::ProtocolError, "{frame:?}");
        }
        let mut peer = Peer::new();
        assert!(peer.frame(Frame::Priority { stream_id: 1 }).is_empty(), "PRIORITY may name an idle stream");
    }

    #[test]
    fn data_after_end_stream_is_a_stream_closed_error_rfc9113_5_1() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: b"x", flow_controlled_len: 1 });
        assert_eq!(peer.rst(1), ErrorCode::StreamClosed);
        assert!(!peer.connection.is_open(1));
    }

    #[test]
    fn data_on_a_stream_we_reset_is_ignored_rfc9113_5_1() {
        let mut peer = Peer::new();
        peer.headers(1, true);
        let mut events = Vec::new();
        peer.connection.reset(1, ErrorCode::Cancel, &mut peer.output, &mut events);
        assert_eq!(peer.rst(1), ErrorCode::Cancel);
        // Sent before our RST_STREAM reached the peer: "MUST ignore".
        let events = peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: b"x", flow_controlled_len: 1 });
        assert!(events.is_empty());
        assert!(peer.written().iter().all(|f| f.0 != kind::RST_STREAM && f.0 != kind::GOAWAY));
    }

    #[test]
    fn data_on_a_stream_the_peer_reset_is_a_stream_closed_error_rfc9113_5_1() {
        let mut peer = Peer::new();
        peer.headers(1, true);
        peer.frame(Frame::RstStream { stream_id: 1, code: ErrorCode::Cancel });
        peer.written();
        peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: b"x", flow_controlled_len: 1 });
        assert_eq!(peer.rst(1), ErrorCode::StreamClosed);
        assert!(!peer.connection.is_closed(), "a stream error: the connection goes on");
    }

    #[test]
    fn data_after_both_ends_ended_a_stream_is_a_connection_error_rfc9113_5_1() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        let status = [Field::new(":status", "204")];
        peer.connection.send_headers(1, &status, true, &mut peer.output);
        assert!(!peer.connection.is_open(1));
        peer.written();
        peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: b"x", flow_controlled_len: 1 });
        assert_eq!(peer.goaway(), ErrorCode::StreamClosed);
    }

    #[test]
    fn streams_past_max_concurrent_streams_are_refused_rfc9113_5_1_2() {
        let mut peer = Peer::new();
        for n in 0..MAX_CONCURRENT_STREAMS {
            peer.headers(2 * n + 1, false);
        }
        peer.written();
        let next = 2 * MAX_CONCURRENT_STREAMS + 1;
        assert!(peer.headers(next, false).is_empty(), "no request for a refused stream");
        assert_eq!(peer.rst(next), ErrorCode::RefusedStream);
    }

    #[test]
    fn priority_is_ignored_rfc9113_5_3_2() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        assert!(peer.frame(Frame::Priority { stream_id: 1 }).is_empty());
        assert!(peer.written().is_empty());
        assert!(peer.connection.is_open(1));
    }

    #[test]
    fn data_never_exceeds_the_peers_stream_window_rfc9113_6_9_1() {
        let mut peer = Peer::with_settings(&[Setting::InitialWindowSize(10)]);
        peer.headers(1, false);
        peer.connection.send_data(1, &[7; 25]);
        peer.connection.end_stream(1);
        peer.flush();
        assert_eq!(peer.data(), vec![(1, 10, false)]);
        peer.frame(Frame::WindowUpdate { stream_id: 1, increment: 100 });
        peer.flush();
        assert_eq!(peer.data(), vec![(1, 15, true)]);
    }

    #[test]
    fn data_never_exceeds_the_connection_window_rfc9113_6_9_1() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        peer.headers(3, false);
        peer.connection.send_data(1, &vec![0; 40_000]);
        peer.connection.send_data(3, &vec![0; 40_000]);
        peer.flush();
        let sent: usize = peer.data().iter().map(|d| d.1).sum();
        assert_eq!(sent, DEFAULT_WINDOW as usize, "the connection's window is shared by its streams");
        peer.frame(Frame::WindowUpdate { stream_id: 0, increment: 10 });
        peer.flush();
        assert_eq!(peer.data().iter().map(|d| d.1).sum::<usize>(), 10);
    }

    #[test]
    fn data_frames_are_no_larger_than_the_peers_max_frame_size_rfc9113_4_2() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        peer.connection.send_data(1, &vec![0; 20_000]);
        peer.flush();
        assert_eq!(peer.data(), vec![(1, 16_384, false), (1, 20_000 - 16_384, false)]);
    }

    #[test]
    fn a_new_initial_window_size_applies_to_open_streams_rfc9113_6_9_2() {
        let mut peer = Peer::with_settings(&[Setting::InitialWindowSize(0)]);
        peer.headers(1, false);
        peer.connection.send_data(1, b"hello");
        peer.flush();
        assert!(peer.data().is_empty(), "window 0: nothing may go");
        let mut settings = Vec::new();
        frame::encode_settings(&[Setting::InitialWindowSize(3)], &mut settings);
        peer.send(&settings);
        peer.flush();
        assert_eq!(peer.data(), vec![(1, 3, false)]);
    }

    #[test]
    fn a_window_pushed_past_2_31_minus_1_is_a_flow_control_error_rfc9113_6_9_1() {
        let mut peer = Peer::new();
        peer.frame(Frame::WindowUpdate { stream_id: 0, increment: MAX_WINDOW_SIZE });
        assert_eq!(peer.goaway(), ErrorCode::FlowControlError);
        let mut peer = Peer::new();
        peer.headers(1, false);
        peer.frame(Frame::WindowUpdate { stream_id: 1, increment: MAX_WINDOW_SIZE });
        assert_eq!(peer.rst(1), ErrorCode::FlowControlError);
    }

    #[test]
    fn data_beyond_our_window_is_a_flow_control_error_rfc9113_6_9_1() {
        let mut peer = Peer::new();
        peer.headers(1, true);
        let mut bytes = Vec::new();
        for _ in 0..3 {
            Frame::Data { stream_id: 1, end_stream: false, data: &[0; 16_000], flow_controlled_len: 0 }
                .encode(&mut bytes);
        }
        peer.send(&bytes);
        peer.written();
        // The peer has not read our WINDOW_UPDATEs; our windows are as we gave them.
        peer.connection.recv_window = 10;
        let events =
            peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: &[0; 11], flow_controlled_len: 0 });
        assert_eq!(events, vec![Event::Closed]);
        assert_eq!(peer.goaway(), ErrorCode::FlowControlError);
    }

    #[test]
    fn received_data_is_given_back_with_window_updates_rfc9113_6_9() {
        let mut peer = Peer::new();
        peer.headers(1, true);
        let events = peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: b"abc", flow_controlled_len: 3 });
        assert_eq!(events, vec![Event::Data { stream_id: 1, data: b"abc".to_vec(), end_stream: false }]);
        assert!(peer.written().is_empty(), "less than half of the window used");
        peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: &[0; 16_384], flow_controlled_len: 0 });
        peer.frame(Frame::Data { stream_id: 1, end_stream: false, data: &[0; 16_384], flow_controlled_len: 0 });
        let updates: Vec<(u32, Vec<u8>)> =
            peer.written().into_iter().filter(|f| f.0 == kind::WINDOW_UPDATE).map(|f| (f.2, f.3)).collect();
        let used = (3 + 2 * 16_384u32).to_be_bytes().to_vec();
        assert_eq!(updates, vec![(0, used.clone()), (1, used)]);
    }

    #[test]
    fn rst_stream_closes_the_stream_and_nothing_more_is_sent_on_it_rfc9113_6_4() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        peer.connection.send_data(1, b"queued");
        let events = peer.frame(Frame::RstStream { stream_id: 1, code: ErrorCode::Cancel });
        assert_eq!(events, vec![Event::Reset { stream_id: 1 }]);
        peer.flush();
        assert!(peer.written().is_empty());
    }

    #[test]
    fn a_response_complete_before_its_request_resets_the_stream_with_no_error_rfc9113_8_1() {
        let mut peer = Peer::new();
        peer.headers(1, true);
        let status = [Field::new(":status", "413")];
        peer.connection.send_headers(1, &status, true, &mut peer.output);
        assert_eq!(peer.rst(1), ErrorCode::NoError);
        assert!(!peer.connection.is_open(1));
    }

    #[test]
    fn the_stream_ends_with_end_stream_after_its_data_rfc9113_8_1() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        peer.connection.send_data(1, b"body");
        peer.connection.end_stream(1);
        peer.flush();
        assert_eq!(peer.data(), vec![(1, 4, true)]);
        assert!(!peer.connection.is_open(1));
    }

    #[test]
    fn a_header_list_past_our_limit_is_reported_and_the_connection_goes_on_rfc9113_10_5_1() {
        let mut peer = Peer::new();
        // One 4,000-octet field, then indexed four more times: a few octets on the wire, and
        // 20 KB of header list (each field counted with its 32 octets, §6.5.2).
        let mut block = Vec::new();
        let big = Field::new("x-big", vec![b'a'; 4000]);
        let fields = [Field::new(":method", "GET"), Field::new(":scheme", "http"), Field::new(":path", "/")];
        peer.encoder.encode(&fields, &mut block);
        peer.encoder.encode(&[big.clone(), big.clone(), big.clone(), big.clone(), big], &mut block);
        let mut bytes = Vec::new();
        encode_header_block(1, true, &block, DEFAULT_MAX_FRAME_SIZE, &mut bytes);
        assert!(block.len() < 16 * 1024, "the compressed block is within the bound");
        assert_eq!(peer.send(&bytes), vec![Event::HeaderListTooLarge { stream_id: 1 }]);
        assert_ne!(peer.connection.phase, Phase::Closed);
        let events = peer.headers(3, false);
        assert!(matches!(&events[..], [Event::Request { stream_id: 3, .. }]), "the tables stayed in step: {events:?}");
    }

    #[test]
    fn a_graceful_goaway_names_the_last_stream_and_refuses_new_ones_rfc9113_6_8() {
        let mut peer = Peer::new();
        peer.headers(1, false);
        peer.connection.go_away(&mut peer.output);
        let frames = peer.written();
        assert_eq!(frames, vec![(kind::GOAWAY, 0, 0, vec![0, 0, 0, 1, 0, 0, 0, 0])]);
        assert!(peer.headers(3, false).is_empty(), "streams after GOAWAY are not processed");
        assert!(!peer.connection.is_closed(), "stream 1 finishes");
        peer.connection.end_stream(1);
        peer.flush();
        assert!(peer.connection.is_closed());
    }

    #[test]
    fn rapid_reset_ends_the_connection_with_enhance_your_calm_cve_2023_44487() {
        let mut peer = Peer::new();
        let mut bytes = Vec::new();
        let fields = [Field::new(":method", "GET"), Field::new(":scheme", "http"), Field::new(":path", "/")];
        for n in 0..=RESET_BURST {
            let stream_id = 2 * n + 1;
            let mut block = Vec::new();
            peer.encoder.encode(&fields, &mut block);
            Frame::Headers { stream_id, end_stream: true, end_headers: true, fragment: &block }.encode(&mut bytes);
            Frame::RstStream { stream_id, code: ErrorCode::Cancel }.encode(&mut bytes);
        }
        let events = peer.send(&bytes);
        assert_eq!(events.last(), Some(&Event::Closed));
        assert_eq!(peer.goaway(), ErrorCode::EnhanceYourCalm);
    }

    #[test]
    fn resets_are_allowed_again_at_their_sustained_rate() {
        let mut peer = Peer::new();
        let fields = [Field::new(":method", "GET"), Field::new(":scheme", "http"), Field::new(":path", "/")];
        let mut stream_id = 1;
        let mut cancel = |peer: &mut Peer, at: Instant| {
            let mut block = Vec::new();
            peer.encoder.encode(&fields, &mut block);
            let mut bytes = Vec::new();
            Frame::Headers { stream_id, end_stream: true, end_headers: true, fragment: &block }.encode(&mut bytes);
            Frame::RstStream { stream_id, code: ErrorCode::Cancel }.encode(&mut bytes);
            stream_id += 2;
            peer.send_at(&bytes, at)
        };
        for _ in 0..RESET_BURST {
            cancel(&mut peer, t0());
        }
        // A second later, a second's worth more is allowed, and not one more.
        let later = t0() + Duration::from_secs(1);
        for _ in 0..RESETS_PER_SECOND {
            assert!(!cancel(&mut peer, later).contains(&Event::Closed));
        }
        assert!(cancel(&mut peer, later).contains(&Event::Closed));
    }

    #[test]
    fn pings_asked_faster_than_answers_are_read_end_the_connection() {
        let mut peer = Peer::new();
        let mut ping = Vec::new();
        Frame::Ping { ack: false, opaque: [1; 8] }.encode(&mut ping);
        let pings = ping.repeat(OUTPUT_HIGH_WATER / 17 + 2);
        // Nobody reads `peer.output`: the answers pile up until the next ping is one too many.
        let events = peer.send(&pings);
        assert_eq!(events, vec![Event::Flooded]);
        assert!(peer.output.len() <= OUTPUT_HIGH_WATER + 17);
        assert!(peer.frame(Frame::Ping { ack: false, opaque: [1; 8] }).is_empty(), "nothing more is answered");
    }

    #[test]
    fn settings_asked_faster_than_acknowledgements_are_read_end_the_connection() {
        let mut peer = Peer::new();
        let mut settings = Vec::new();
        frame::encode_settings(&[], &mut settings);
        let events = peer.send(&settings.repeat(OUTPUT_HIGH_WATER / 9 + 2));
        assert_eq!(events, vec![Event::Flooded]);
    }

    #[test]
    fn a_window_held_shut_resets_its_stream_after_the_send_timeout() {
        let mut peer = Peer::with_settings(&[Setting::InitialWindowSize(0)]);
        peer.headers(1, false);
        peer.connection.send_data(1, b"event");
        assert!(peer.connection.flush(&mut peer.output, t0()).is_empty());
        assert_eq!(peer.connection.next_deadline(), Some(t0() + SEND_TIMEOUT));
        let just_before = t0() + SEND_TIMEOUT - Duration::from_millis(1);
        assert!(peer.connection.flush(&mut peer.output, just_before).is_empty());
        let events = peer.connection.flush(&mut peer.output, t0() + SEND_TIMEOUT);
        assert_eq!(events, vec![Event::Reset { stream_id: 1 }]);
        assert_eq!(peer.rst(1), ErrorCode::Cancel);
        assert_eq!(peer.connection.pending_bytes(), 0, "what it held is freed");
    }

    #[test]
    fn a_continuation_flood_ends_the_connection_rfc9113_6_10() {
        let mut peer = Peer::new();
        let mut bytes = Vec::new();
        Frame::Headers { stream_id: 1, end_stream: true, end_headers: false, fragment: b"" }.encode(&mut bytes);
        for _ in 0..20 {
            Frame::Continuation { stream_id: 1, end_headers: false, fragment: &[0; 1024] }.encode(&mut bytes);
        }
        assert_eq!(peer.send(&bytes), vec![Event::Closed]);
        assert_eq!(peer.goaway(), ErrorCode::EnhanceYourCalm);
    }
}
