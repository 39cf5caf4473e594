//! HTTP/2 framing (RFC 9113 §4, §6), sans-I/O: the connection preface, the frame header, and
//! the payload of each frame type a server receives, checked as the RFC says.
//!
//! After the preface (§3.4), everything on an HTTP/2 connection is a frame:
//!
//! ```text
//!  HTTP Frame {
//!    Length (24),
//!    Type (8),
//!    Flags (8),
//!    Reserved (1),
//!    Stream Identifier (31),
//!    Frame Payload (..),
//!  }
//! ```
//!
//! A 9-octet header, then `Length` octets of payload, never more than the receiver's
//! SETTINGS_MAX_FRAME_SIZE (§4.2). [`parse_frame`] takes the bytes received so far and
//! answers like every parser in this crate ([`Parsed`]): `Partial` (read more and call
//! again, with the same bytes and more after them), or a [`Frame`] borrowing its payload from
//! the input and how many octets it took. It checks the header as soon as its 9 octets are
//! there, so a frame too large fails before its payload arrives, and a caller never needs to
//! hold more than [`FRAME_HEADER_LEN`] + the frame size limit to make progress.
//!
//! Each rule the RFC gives for one frame is checked here, with its sentence at the line, and
//! a broken rule becomes an [`H2Error`] with the RFC's code and scope (§5.4):
//! `Err(H2Error::Connection(..))` ends the connection; a [`Frame::StreamError`] resets one
//! stream, and the frame's octets are consumed so the connection goes on. Rules that span
//! frames (stream states, a header block's CONTINUATIONs, flow-control windows) belong to
//! the connection's state machine, which is not built yet.
//!
//! This is the server's side: a PUSH_PROMISE, which only a server may send, is an error here
//! (§8.4).

#![forbid(unsafe_code)]

use super::error::{ErrorCode, H2Error};
use crate::http::grammar::Parsed;

/// §3.4: "the connection preface starts with the string PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
/// chosen to look like an HTTP/1.1 request that no HTTP/1.1 server would accept.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// §4.1: the frame header is 9 octets.
pub const FRAME_HEADER_LEN: usize = 9;

/// §4.2/§6.5.2: the initial SETTINGS_MAX_FRAME_SIZE, and the smallest a peer may set.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 14;

/// §6.5.2: the largest SETTINGS_MAX_FRAME_SIZE, 2^24-1 (what the 24-bit length can say).
pub const MAX_FRAME_SIZE_LIMIT: u32 = (1 << 24) - 1;

/// §6.9.1: "The sender MUST NOT send a flow-controlled frame with a length that exceeds the
/// space available" in a window of at most 2^31-1 octets.
pub const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// The frame types of §6 (§11.2 registry).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// The flags of §6, by the frame types that define them.
pub mod flag {
    /// DATA, HEADERS: the last frame the sender sends on this stream.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: an acknowledgement.
    pub const ACK: u8 = 0x1;
    /// HEADERS, CONTINUATION: the header block ends in this frame.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS: a Pad Length octet first, padding last.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: the 5 octets of RFC 7540 priority fields follow.
    pub const PRIORITY: u8 = 0x20;
}

/// §4.1: "Reserved: A reserved 1-bit field. The semantics of this bit are undefined, and the
/// bit MUST remain unset (0x00) when sending and MUST be ignored when receiving."
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// What the first octets of a connection say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preface {
    /// The HTTP/2 preface (§3.4): prior knowledge, [`PREFACE`]`.len()` octets to consume.
    Http2,
    /// Anything else: an HTTP/1.1 request.
    Http1,
    /// A strict prefix of the preface: read more.
    NeedMore,
}

/// Tells an HTTP/2 client with prior knowledge (§3.3) from an HTTP/1.1 one by the first
/// octets of the connection. No HTTP/1.1 method is `PRI`, so an HTTP/1.1 request differs
/// from the preface by its third octet at the latest.
pub fn detect_preface(first: &[u8]) -> Preface {
    let n = first.len().min(PREFACE.len());
    if first[..n] != PREFACE[..n] {
        Preface::Http1
    } else if n == PREFACE.len() {
        Preface::Http2
    } else {
        Preface::NeedMore
    }
}

/// The 9-octet frame header (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The payload's length, 24 bits.
    pub length: u32,
    /// The frame type ([`kind`]).
    pub kind: u8,
    /// The flags ([`flag`]); those a type does not define are ignored (§4.1).
    pub flags: u8,
    /// The stream, 31 bits; 0 is the connection itself.
    pub stream_id: u32,
}

impl FrameHeader {
    /// Reads a header; the reserved bit is dropped (§4.1).
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            length: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: bytes[3],
            flags: bytes[4],
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & STREAM_ID_MASK,
        }
    }

    /// Appends the header, the reserved bit unset (§4.1). `length` must fit in 24 bits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.length <= MAX_FRAME_SIZE_LIMIT);
        out.extend_from_slice(&self.length.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream_id & STREAM_ID_MASK).to_be_bytes());
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A setting of a SETTINGS frame (§6.5.2), its value already checked against its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// 0x1 SETTINGS_HEADER_TABLE_SIZE: the most the sender's HPACK decoder keeps.
    HeaderTableSize(u32),
    /// 0x2 SETTINGS_ENABLE_PUSH: whether the sender accepts server push.
    EnablePush(bool),
    /// 0x3 SETTINGS_MAX_CONCURRENT_STREAMS: how many streams the sender lets the peer open.
    MaxConcurrentStreams(u32),
    /// 0x4 SETTINGS_INITIAL_WINDOW_SIZE: each new stream's flow-control window, at most 2^31-1.
    InitialWindowSize(u32),
    /// 0x5 SETTINGS_MAX_FRAME_SIZE: the largest payload the sender accepts, 2^14 to 2^24-1.
    MaxFrameSize(u32),
    /// 0x6 SETTINGS_MAX_HEADER_LIST_SIZE: the largest header list the sender accepts.
    MaxHeaderListSize(u32),
    /// Any other identifier: §6.5.2 "An endpoint that receives a SETTINGS frame with any
    /// unknown or unsupported identifier MUST ignore that setting."
    Unknown(u16, u32),
}

impl Setting {
    /// Checks one identifier/value pair against §6.5.2.
    fn parse(id: u16, value: u32) -> Result<Setting, H2Error> {
        Ok(match id {
            0x1 => Setting::HeaderTableSize(value),
            0x2 => match value {
                0 => Setting::EnablePush(false),
                1 => Setting::EnablePush(true),
                // "Any value other than 0 or 1 MUST be treated as a connection error
                // (Section 5.4.1) of type PROTOCOL_ERROR."
                _ => return Err(connection(ErrorCode::ProtocolError, "SETTINGS_ENABLE_PUSH not 0 or 1")),
            },
            0x3 => Setting::MaxConcurrentStreams(value),
            // "Values above the maximum flow-control window size of 2^31-1 MUST be treated as
            // a connection error (Section 5.4.1) of type FLOW_CONTROL_ERROR."
            0x4 if value > MAX_WINDOW_SIZE => {
                return Err(connection(ErrorCode::FlowControlError, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"))
            }
            0x4 => Setting::InitialWindowSize(value),
            // "Values outside this range MUST be treated as a connection error (Section
            // 5.4.1) of type PROTOCOL_ERROR."
            0x5 if !(DEFAULT_MAX_FRAME_SIZE..=MAX_FRAME_SIZE_LIMIT).contains(&value) => {
                return Err(connection(ErrorCode::ProtocolError, "SETTINGS_MAX_FRAME_SIZE out of range"))
            }
            0x5 => Setting::MaxFrameSize(value),
            0x6 => Setting::MaxHeaderListSize(value),
            _ => Setting::Unknown(id, value),
        })
    }

    /// The identifier and value on the wire.
    pub fn to_wire(self) -> (u16, u32) {
        match self {
            Setting::HeaderTableSize(value) => (0x1, value),
            Setting::EnablePush(on) => (0x2, u32::from(on)),
            Setting::MaxConcurrentStreams(value) => (0x3, value),
            Setting::InitialWindowSize(value) => (0x4, value),
            Setting::MaxFrameSize(value) => (0x5, value),
            Setting::MaxHeaderListSize(value) => (0x6, value),
            Setting::Unknown(id, value) => (id, value),
        }
    }
}

/// The settings of a SETTINGS frame, all checked already: iterating cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings<'a>(&'a [u8]);

impl Settings<'static> {
    /// No settings: a SETTINGS acknowledgement's payload (§6.5).
    pub const EMPTY: Settings<'static> = Settings(&[]);
}

impl<'a> Settings<'a> {
    /// The settings, in the order sent: §6.5.3 "The values in the SETTINGS frame MUST be
    /// processed in the order they appear".
    pub fn iter(&self) -> impl Iterator<Item = Setting> + 'a {
        self.0.chunks_exact(6).filter_map(|pair| {
            let id = u16::from_be_bytes([pair[0], pair[1]]);
            let value = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
            // Checked by `parse_settings` before this value was made.
            Setting::parse(id, value).ok()
        })
    }

    /// The payload as sent.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// A frame a server received (§6), its payload borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// §6.1 DATA: request body octets, padding removed.
    Data {
        stream_id: u32,
        end_stream: bool,
        data: &'a [u8],
        /// The whole payload's length: §6.1 "The entire DATA frame payload is included in
        /// flow control, including the Pad Length and Padding fields if present."
        flow_controlled_len: u32,
    },
    /// §6.2 HEADERS: a header block fragment, padding and priority fields removed.
    Headers { stream_id: u32, end_stream: bool, end_headers: bool, fragment: &'a [u8] },
    /// §6.3 PRIORITY: deprecated (RFC 9113 §5.3.2), checked and ignored.
    Priority { stream_id: u32 },
    /// §6.4 RST_STREAM: the peer ends a stream.
    RstStream { stream_id: u32, code: ErrorCode },
    /// §6.5 SETTINGS, or its acknowledgement (`ack`, no settings).
    Settings { ack: bool, settings: Settings<'a> },
    /// §6.7 PING, to be echoed with ACK unless it is one.
    Ping { ack: bool, opaque: [u8; 8] },
    /// §6.8 GOAWAY: the peer is closing; streams above `last_stream_id` were not processed.
    GoAway { last_stream_id: u32, code: ErrorCode, debug: &'a [u8] },
    /// §6.9 WINDOW_UPDATE: more room in a window (stream 0: the connection's).
    WindowUpdate { stream_id: u32, increment: u32 },
    /// §6.10 CONTINUATION: more of a header block.
    Continuation { stream_id: u32, end_headers: bool, fragment: &'a [u8] },
    /// §5.5: "Implementations MUST ignore and discard frames of unknown types."
    Unknown { kind: u8, flags: u8, stream_id: u32, payload: &'a [u8] },
    /// A frame that broke a rule whose scope is its stream (§5.4.2): reset that stream with
    /// the error's code, and go on with the next frame. Always an [`H2Error::Stream`].
    StreamError(H2Error),
}

fn connection(code: ErrorCode, reason: &'static str) -> H2Error {
    H2Error::Connection(code, reason)
}

/// Parses the frame at the start of `input`, which must not exceed `max_frame_size`, our
/// SETTINGS_MAX_FRAME_SIZE. `Err` is always a connection error ([`H2Error::Connection`]).
pub fn parse_frame(input: &[u8], max_frame_size: u32) -> Result<Parsed<Frame<'_>>, H2Error> {
    let Some(header_bytes) = input.first_chunk::<FRAME_HEADER_LEN>() else { return Ok(Parsed::Partial) };
    let header = FrameHeader::parse(header_bytes);
    // §4.2: "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a frame exceeds the
    // size defined in SETTINGS_MAX_FRAME_SIZE". Always the connection's: a frame we will
    // not buffer cannot be skipped either.
    if header.length > max_frame_size {
        return Err(connection(ErrorCode::FrameSizeError, "frame larger than SETTINGS_MAX_FRAME_SIZE"));
    }
    let end = FRAME_HEADER_LEN + header.length as usize;
    let Some(payload) = input.get(FRAME_HEADER_LEN..end) else { return Ok(Parsed::Partial) };
    let frame = parse_payload(header, payload)?;
    Ok(Parsed::Complete { value: frame, consumed: end })
}

/// The payload rules of §6, by frame type.
fn parse_payload(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, H2Error> {
    let stream_id = header.stream_id;
    match header.kind {
        kind::DATA => {
            // §6.1: "If a DATA frame is received whose Stream Identifier field is 0x00, the
            // recipient MUST respond with a connection error (Section 5.4.1) of type
            // PROTOCOL_ERROR."
            if stream_id == 0 {
                return Err(connection(ErrorCode::ProtocolError, "DATA on stream 0"));
            }
            let data = strip_padding(header, payload, 0)?;
            Ok(Frame::Data {
                stream_id,
                end_stream: header.has(flag::END_STREAM),
                data,
                flow_controlled_len: header.length,
            })
        }
        kind::HEADERS => {
            // §6.2: "If a HEADERS frame is received whose Stream Identifier field is 0x00,
            // the recipient MUST respond with a connection error (Section 5.4.1) of type
            // PROTOCOL_ERROR."
            if stream_id == 0 {
                return Err(connection(ErrorCode::ProtocolError, "HEADERS on stream 0"));
            }
            // The 5 octets of RFC 7540 priority (Exclusive, Stream Dependency, Weight) are
            // skipped: RFC 9113 §5.3.2 deprecates that scheme, and we never act on it.
            let priority_len = if header.has(flag::PRIORITY) { 5 } else { 0 };
            let fragment = strip_padding(header, payload, priority_len)?;
            Ok(Frame::Headers {
                stream_id,
                end_stream: header.has(flag::END_STREAM),
                end_headers: header.has(flag::END_HEADERS),
                fragment,
            })
        }
        kind::PRIORITY => {
            // §6.3: "If a PRIORITY frame is received with a stream identifier of 0x00, the
            // recipient MUST respond with a connection error (Section 5.4.1) of type
            // PROTOCOL_ERROR."
            if stream_id == 0 {
                return Err(connection(ErrorCode::ProtocolError, "PRIORITY on stream 0"));
            }
            // "A PRIORITY frame with a length other than 5 octets MUST be treated as a
            // stream error (Section 5.4.2) of type FRAME_SIZE_ERROR."
            if payload.len() != 5 {
                return Ok(Frame::StreamError(H2Error::Stream(
                    stream_id,
                    ErrorCode::FrameSizeError,
                    "PRIORITY not 5 octets",
                )));
            }
            Ok(Frame::Priority { stream_id })
        }
        kind::RST_STREAM => {
            // §6.4: "If a RST_STREAM frame is received with a stream identifier of 0x00, the
            // recipient MUST treat this as a connection error (Section 5.4.1) of type
            // PROTOCOL_ERROR."
            if stream_id == 0 {
                return Err(connection(ErrorCode::ProtocolError, "RST_STREAM on stream 0"));
            }
            // "A RST_STREAM frame with a length other than 4 octets MUST be treated as a
            // connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
            let Ok(code) = <[u8; 4]>::try_from(payload) else {
                return Err(connection(ErrorCode::FrameSizeError, "RST_STREAM not 4 octets"));
            };
            Ok(Frame::RstStream { stream_id, code: ErrorCode::from_code(u32::from_be_bytes(code)) })
        }
        kind::SETTINGS => parse_settings(header, payload),
        // §8.4: "A client cannot push. Thus, servers MUST treat the receipt of a PUSH_PROMISE
        // frame as a connection error (Section 5.4.1) of type PROTOCOL_ERROR."
        kind::PUSH_PROMISE => Err(connection(ErrorCode::ProtocolError, "PUSH_PROMISE sent to a server")),
        kind::PING => {
            // §6.7: "If a PING frame is received with a Stream Identifier field value other
            // than 0x00, the recipient MUST respond with a connection error (Section 5.4.1)
            // of type PROTOCOL_ERROR."
            if stream_id != 0 {
                return Err(connection(ErrorCode::ProtocolError, "PING on a stream"));
            }
            // "Receipt of a PING frame with a length field value other than 8 MUST be
            // treated as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
            let Ok(opaque) = <[u8; 8]>::try_from(payload) else {
                return Err(connection(ErrorCode::FrameSizeError, "PING not 8 octets"));
            };
            Ok(Frame::Ping { ack: header.has(flag::ACK), opaque })
        }
        kind::GOAWAY => {
            // §6.8: "An endpoint MUST treat a GOAWAY frame with a stream identifier other
            // than 0x00 as a connection error (Section 5.4.1) of type PROTOCOL_ERROR."
            if stream_id != 0 {
                return Err(connection(ErrorCode::ProtocolError, "GOAWAY on a stream"));
            }
            // Last-Stream-ID (4) and Error Code (4) are mandatory: §4.2, a frame "too small
            // to contain mandatory frame data" is a FRAME_SIZE_ERROR.
            let Some((fixed, debug)) = payload.split_first_chunk::<8>() else {
                return Err(connection(ErrorCode::FrameSizeError, "GOAWAY shorter than 8 octets"));
            };
            Ok(Frame::GoAway {
                last_stream_id: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]) & STREAM_ID_MASK,
                code: ErrorCode::from_code(u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]])),
                debug,
            })
        }
        kind::WINDOW_UPDATE => {
            // §6.9: "A WINDOW_UPDATE frame with a length other than 4 octets MUST be treated
            // as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
            let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
                return Err(connection(ErrorCode::FrameSizeError, "WINDOW_UPDATE not 4 octets"));
            };
            let increment = u32::from_be_bytes(bytes) & STREAM_ID_MASK;
            // "A receiver MUST treat the receipt of a WINDOW_UPDATE frame with a
            // flow-control window increment of 0 as a stream error (Section 5.4.2) of type
            // PROTOCOL_ERROR; errors on the connection flow-control window MUST be treated
            // as a connection error (Section 5.4.1)."
            if increment == 0 {
                if stream_id == 0 {
                    return Err(connection(ErrorCode::ProtocolError, "WINDOW_UPDATE of 0 on the connection"));
                }
                return Ok(Frame::StreamError(H2Error::Stream(
                    stream_id,
                    ErrorCode::ProtocolError,
                    "WINDOW_UPDATE of 0",
                )));
            }
            Ok(Frame::WindowUpdate { stream_id, increment })
        }
        kind::CONTINUATION => {
            // §6.10: "If a CONTINUATION frame is received with a Stream Identifier field of
            // 0x00, the recipient MUST respond with a connection error (Section 5.4.1) of type
            // PROTOCOL_ERROR."
            if stream_id == 0 {
                return Err(connection(ErrorCode::ProtocolError, "CONTINUATION on stream 0"));
            }
            Ok(Frame::Continuation { stream_id, end_headers: header.has(flag::END_HEADERS), fragment: payload })
        }
        kind => Ok(Frame::Unknown { kind, flags: header.flags, stream_id, payload }),
    }
}

/// Removes the Pad Length octet and the padding of a DATA or HEADERS frame (§6.1, §6.2), and
/// `fixed` octets of fields after the Pad Length (HEADERS' priority fields).
fn strip_padding(header: FrameHeader, payload: &[u8], fixed: usize) -> Result<&[u8], H2Error> {
    let (pad_len, rest) = if header.has(flag::PADDED) {
        match payload.split_first() {
            Some((&pad_len, rest)) => (usize::from(pad_len), rest),
            // §4.2: a frame "too small to contain mandatory frame data" is a
            // FRAME_SIZE_ERROR; the Pad Length octet is mandatory once PADDED is set.
            None => return Err(connection(ErrorCode::FrameSizeError, "PADDED frame without Pad Length")),
        }
    } else {
        (0, payload)
    };
    let Some(rest) = rest.get(fixed..) else {
        return Err(connection(ErrorCode::FrameSizeError, "HEADERS too short for its priority fields"));
    };
    // §6.1: "If the length of the padding is the length of the frame payload or greater, the
    // recipient MUST treat this as a connection error (Section 5.4.1) of type
    // PROTOCOL_ERROR." §6.2: "Padding that exceeds the size remaining for the field block
    // fragment MUST be treated as a PROTOCOL_ERROR."
    let Some(content_len) = rest.len().checked_sub(pad_len) else {
        return Err(connection(ErrorCode::ProtocolError, "padding longer than the payload"));
    };
    Ok(&rest[..content_len])
}

/// §6.5 SETTINGS.
fn parse_settings(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, H2Error> {
    // §6.5: "If an endpoint receives a SETTINGS frame whose Stream Identifier field is
    // anything other than 0x00, the endpoint MUST respond with a connection error (Section
    // 5.4.1) of type PROTOCOL_ERROR."
    if header.stream_id != 0 {
        return Err(connection(ErrorCode::ProtocolError, "SETTINGS on a stream"));
    }
    let ack = header.has(flag::ACK);
    // "Receipt of a SETTINGS frame with the ACK flag set and a length field value other than
    // 0 MUST be treated as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
    if ack && !payload.is_empty() {
        return Err(connection(ErrorCode::FrameSizeError, "SETTINGS ACK with a payload"));
    }
    // "A SETTINGS frame with a length other than a multiple of 6 octets MUST be treated as a
    // connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
    if !payload.len().is_multiple_of(6) {
        return Err(connection(ErrorCode::FrameSizeError, "SETTINGS length not a multiple of 6"));
    }
    for pair in payload.chunks_exact(6) {
        Setting::parse(
            u16::from_be_bytes([pair[0], pair[1]]),
            u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]),
        )?;
    }
    Ok(Frame::Settings { ack, settings: Settings(payload) })
}

impl Frame<'_> {
    /// Appends the frame as sent: no padding, the reserved bits unset. A [`Frame::Data`]'s
    /// `flow_controlled_len` is not sent (it is the length of what is). A
    /// [`Frame::StreamError`] is written as the RST_STREAM that answers it. The payload must
    /// fit in 24 bits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut write = |kind: u8, flags: u8, stream_id: u32, parts: &[&[u8]]| {
            let length = parts.iter().map(|part| part.len()).sum::<usize>() as u32;
            FrameHeader { length, kind, flags, stream_id }.encode(out);
            for part in parts {
                out.extend_from_slice(part);
            }
        };
        let set = |on: bool, flag: u8| if on { flag } else { 0 };
        match *self {
            Frame::Data { stream_id, end_stream, data, .. } => {
                write(kind::DATA, set(end_stream, flag::END_STREAM), stream_id, &[data])
            }
            Frame::Headers { stream_id, end_stream, end_headers, fragment } => write(
                kind::HEADERS,
                set(end_stream, flag::END_STREAM) | set(end_headers, flag::END_HEADERS),
                stream_id,
                &[fragment],
            ),
            // Stream 0 as its own dependency, default weight 16 (sent as 15).
            Frame::Priority { stream_id } => write(kind::PRIORITY, 0, stream_id, &[&[0, 0, 0, 0, 15]]),
            Frame::RstStream { stream_id, code } => {
                write(kind::RST_STREAM, 0, stream_id, &[&code.code().to_be_bytes()])
            }
            Frame::Settings { ack, settings } => write(kind::SETTINGS, set(ack, flag::ACK), 0, &[settings.0]),
            Frame::Ping { ack, opaque } => write(kind::PING, set(ack, flag::ACK), 0, &[&opaque]),
            Frame::GoAway { last_stream_id, code, debug } => write(
                kind::GOAWAY,
                0,
                0,
                &[&(last_stream_id & STREAM_ID_MASK).to_be_bytes(), &code.code().to_be_bytes(), debug],
            ),
            Frame::WindowUpdate { stream_id, increment } => {
                write(kind::WINDOW_UPDATE, 0, stream_id, &[&(increment & STREAM_ID_MASK).to_be_bytes()])
            }
            Frame::Continuation { stream_id, end_headers, fragment } => {
                write(kind::CONTINUATION, set(end_headers, flag::END_HEADERS), stream_id, &[fragment])
            }
            Frame::Unknown { kind, flags, stream_id, payload } => write(kind, flags, stream_id, &[payload]),
            Frame::StreamError(error) => {
                let stream_id = match error {
                    H2Error::Stream(stream_id, ..) => stream_id,
                    H2Error::Connection(..) => 0,
                };
                write(kind::RST_STREAM, 0, stream_id, &[&error.code().code().to_be_bytes()])
            }
        }
    }
}

/// Appends a SETTINGS frame carrying `settings` (§6.5).
pub fn encode_settings(settings: &[Setting], out: &mut Vec<u8>) {
    let length = (settings.len() * 6) as u32;
    FrameHeader { length, kind: kind::SETTINGS, flags: 0, stream_id: 0 }.encode(out);
    for setting in settings {
        let (id, value) = setting.to_wire();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a header block as a HEADERS frame and as many CONTINUATION frames as
/// `max_frame_size` (the peer's SETTINGS_MAX_FRAME_SIZE) requires (§4.3, §6.10).
pub fn encode_header_block(stream_id: u32, end_stream: bool, block: &[u8], max_frame_size: u32, out: &mut Vec<u8>) {
    let mut pieces = block.chunks(max_frame_size.max(1) as usize);
    let first = pieces.next().unwrap_or(&[]);
    let mut rest = pieces.peekable();
    Frame::Headers { stream_id, end_stream, end_headers: rest.peek().is_none(), fragment: first }.encode(out);
    while let Some(fragment) = rest.next() {
        Frame::Continuation { stream_id, end_headers: rest.peek().is_none(), fragment }.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader { length: payload.len() as u32, kind, flags, stream_id }.encode(&mut out);
        out.extend_from_slice(payload);
        out
    }

    fn parse(bytes: &[u8]) -> Result<Frame<'_>, H2Error> {
        match parse_frame(bytes, DEFAULT_MAX_FRAME_SIZE)? {
            Parsed::Complete { value, consumed } => {
                assert_eq!(consumed, bytes.len());
                Ok(value)
            }
            Parsed::Partial => panic!("partial"),
        }
    }

    fn connection_error(bytes: &[u8]) -> ErrorCode {
        match parse(bytes) {
            Err(H2Error::Connection(code, _)) => code,
            other => panic!("expected a connection error, got {other:?}"),
        }
    }

    fn stream_error(bytes: &[u8]) -> (u32, ErrorCode) {
        match parse(bytes) {
            Ok(Frame::StreamError(H2Error::Stream(stream_id, code, _))) => (stream_id, code),
            other => panic!("expected a stream error, got {other:?}"),
        }
    }

    /// §3.4: the preface is recognised from its first octet on; an HTTP/1.1 request is told
    /// apart by its first octet that differs.
    #[test]
    fn section_3_4_preface_tells_http2_from_http1() {
        assert_eq!(detect_preface(b""), Preface::NeedMore);
        assert_eq!(detect_preface(b"PRI * HTTP/2.0\r\n"), Preface::NeedMore);
        assert_eq!(detect_preface(PREFACE), Preface::Http2);
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(&frame(kind::SETTINGS, 0, 0, &[]));
        assert_eq!(detect_preface(&more), Preface::Http2);
        assert_eq!(detect_preface(b"GET / HTTP/1.1\r\n"), Preface::Http1);
        assert_eq!(detect_preface(b"POST"), Preface::Http1);
        assert_eq!(detect_preface(b"PRI * HTTP/1.1\r\n"), Preface::Http1);
        for len in 0..PREFACE.len() {
            assert_eq!(detect_preface(&PREFACE[..len]), Preface::NeedMore, "{len}");
        }
    }

    /// §4.1: 24-bit length, type, flags, a reserved bit that is ignored, 31-bit stream id.
    #[test]
    fn section_4_1_frame_header_layout() {
        let bytes = [0x00, 0x40, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff];
        let header = FrameHeader::parse(&bytes);
        assert_eq!(header, FrameHeader { length: 16384, kind: kind::DATA, flags: 1, stream_id: 0x7fff_ffff });
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(out, [0x00, 0x40, 0x00, 0x00, 0x01, 0x7f, 0xff, 0xff, 0xff], "reserved bit sent unset");
    }

    /// §4.1: "MUST be ignored when receiving": the reserved bit set on a stream id changes
    /// nothing.
    #[test]
    fn section_4_1_reserved_bit_is_ignored() {
        let mut bytes = frame(kind::DATA, 0, 1, b"x");
        bytes[5] |= 0x80;
        assert_eq!(
            parse(&bytes),
            Ok(Frame::Data { stream_id: 1, end_stream: false, data: b"x", flow_controlled_len: 1 })
        );
    }

    /// §4.2: a frame longer than SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR, known from
    /// the header alone, before the payload arrives.
    #[test]
    fn section_4_2_frame_larger_than_max_frame_size() {
        let bytes = frame(kind::DATA, 0, 1, &[0; 16385]);
        assert_eq!(
            parse_frame(&bytes[..FRAME_HEADER_LEN], DEFAULT_MAX_FRAME_SIZE),
            Err(H2Error::Connection(ErrorCode::FrameSizeError, "frame larger than SETTINGS_MAX_FRAME_SIZE"))
        );
        assert!(matches!(parse_frame(&bytes, 16385), Ok(Parsed::Complete { .. })));
        let max = frame(kind::DATA, 0, 1, &[0; 16384]);
        assert!(matches!(parse_frame(&max, DEFAULT_MAX_FRAME_SIZE), Ok(Parsed::Complete { .. })));
    }

    /// Every strict prefix of a frame is `Partial`; a frame followed by more is complete with
    /// its own length; a stream of frames parses the same in any split.
    #[test]
    fn frames_parse_in_any_split() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        stream.extend_from_slice(&frame(kind::HEADERS, flag::END_HEADERS, 1, b"\x82\x86\x84"));
        stream.extend_from_slice(&frame(kind::DATA, flag::PADDED | flag::END_STREAM, 1, b"\x02hello\0\0"));
        stream.extend_from_slice(&frame(kind::PING, 0, 0, b"12345678"));
        let whole = parse_stream(&[&stream]);
        assert_eq!(whole.len(), 4);
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(parse_stream(&[head, tail]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_stream(&bytes), whole);
    }

    /// Parses `pieces` as a driver would: each piece appended to what was not consumed.
    fn parse_stream(pieces: &[&[u8]]) -> Vec<String> {
        let mut pending = Vec::new();
        let mut frames = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            while let Ok(Parsed::Complete { value, consumed }) = parse_frame(&pending, DEFAULT_MAX_FRAME_SIZE) {
                frames.push(format!("{value:?}"));
                pending.drain(..consumed);
            }
        }
        assert!(pending.is_empty());
        frames
    }

    /// §6.1: DATA, padding removed; the whole payload counts for flow control.
    #[test]
    fn section_6_1_data_with_padding() {
        assert_eq!(
            parse(&frame(kind::DATA, flag::PADDED | flag::END_STREAM, 3, b"\x03abc\0\0\0")),
            Ok(Frame::Data { stream_id: 3, end_stream: true, data: b"abc", flow_controlled_len: 7 })
        );
        // Padding may take everything but the Pad Length octet.
        assert_eq!(
            parse(&frame(kind::DATA, flag::PADDED, 3, b"\x02\0\0")),
            Ok(Frame::Data { stream_id: 3, end_stream: false, data: b"", flow_controlled_len: 3 })
        );
    }

    /// §6.1: "If the length of the padding is the length of the frame payload or greater,
    /// the recipient MUST treat this as a connection error of type PROTOCOL_ERROR."
    #[test]
    fn section_6_1_data_padding_too_long() {
        assert_eq!(connection_error(&frame(kind::DATA, flag::PADDED, 1, b"\x03\0\0")), ErrorCode::ProtocolError);
        // PADDED and not even the Pad Length octet: too small (§4.2).
        assert_eq!(connection_error(&frame(kind::DATA, flag::PADDED, 1, b"")), ErrorCode::FrameSizeError);
    }

    /// §6.1: DATA on stream 0 is a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_1_data_on_stream_0() {
        assert_eq!(connection_error(&frame(kind::DATA, 0, 0, b"x")), ErrorCode::ProtocolError);
    }

    /// §6.2: HEADERS, padding and the deprecated priority fields removed.
    #[test]
    fn section_6_2_headers_with_padding_and_priority() {
        let payload = b"\x01\x80\0\0\x03\x0f\x82\x86\0";
        assert_eq!(
            parse(&frame(kind::HEADERS, flag::PADDED | flag::PRIORITY | flag::END_HEADERS, 5, payload)),
            Ok(Frame::Headers { stream_id: 5, end_stream: false, end_headers: true, fragment: b"\x82\x86" })
        );
        assert_eq!(
            parse(&frame(kind::HEADERS, flag::END_STREAM, 5, b"\x82")),
            Ok(Frame::Headers { stream_id: 5, end_stream: true, end_headers: false, fragment: b"\x82" })
        );
    }

    /// §6.2: "Padding that exceeds the size remaining for the field block fragment MUST be
    /// treated as a PROTOCOL_ERROR"; too short for the priority fields is too small (§4.2).
    #[test]
    fn section_6_2_headers_padding_or_priority_too_long() {
        let padded = frame(kind::HEADERS, flag::PADDED | flag::PRIORITY, 1, b"\x01\0\0\0\0\x10");
        assert_eq!(connection_error(&padded), ErrorCode::ProtocolError);
        assert_eq!(connection_error(&frame(kind::HEADERS, flag::PRIORITY, 1, b"\0\0\0")), ErrorCode::FrameSizeError);
    }

    /// §6.2: HEADERS on stream 0 is a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_2_headers_on_stream_0() {
        assert_eq!(connection_error(&frame(kind::HEADERS, flag::END_HEADERS, 0, b"\x82")), ErrorCode::ProtocolError);
    }

    /// §6.3: PRIORITY is accepted and ignored; other than 5 octets is a stream
    /// FRAME_SIZE_ERROR; on stream 0 a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_3_priority() {
        assert_eq!(parse(&frame(kind::PRIORITY, 0, 7, &[0, 0, 0, 1, 200])), Ok(Frame::Priority { stream_id: 7 }));
        assert_eq!(stream_error(&frame(kind::PRIORITY, 0, 7, &[0, 0, 0, 1])), (7, ErrorCode::FrameSizeError));
        assert_eq!(connection_error(&frame(kind::PRIORITY, 0, 0, &[0, 0, 0, 1, 200])), ErrorCode::ProtocolError);
    }

    /// §6.4: RST_STREAM carries a 4-octet code; other lengths are a connection
    /// FRAME_SIZE_ERROR; stream 0 a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_4_rst_stream() {
        assert_eq!(
            parse(&frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8])),
            Ok(Frame::RstStream { stream_id: 1, code: ErrorCode::Cancel })
        );
        assert_eq!(connection_error(&frame(kind::RST_STREAM, 0, 1, &[0, 0, 8])), ErrorCode::FrameSizeError);
        assert_eq!(connection_error(&frame(kind::RST_STREAM, 0, 0, &[0, 0, 0, 8])), ErrorCode::ProtocolError);
    }

    /// §6.5: SETTINGS, known settings decoded in order, unknown ones kept to be ignored.
    #[test]
    fn section_6_5_settings() {
        let payload = [0, 1, 0, 0, 0x10, 0, 0, 3, 0, 0, 0, 100, 0, 0xff, 0, 0, 0, 1];
        let bytes = frame(kind::SETTINGS, 0, 0, &payload);
        let Ok(Frame::Settings { ack: false, settings }) = parse(&bytes) else { panic!() };
        assert_eq!(
            settings.iter().collect::<Vec<_>>(),
            [Setting::HeaderTableSize(4096), Setting::MaxConcurrentStreams(100), Setting::Unknown(0xff, 1)]
        );
        assert_eq!(
            parse(&frame(kind::SETTINGS, flag::ACK, 0, &[])),
            Ok(Frame::Settings { ack: true, settings: Settings(&[]) })
        );
    }

    /// §6.5: "Receipt of a SETTINGS frame with the ACK flag set and a length field value
    /// other than 0 MUST be treated as a connection error of type FRAME_SIZE_ERROR."
    #[test]
    fn section_6_5_settings_ack_with_payload() {
        assert_eq!(
            connection_error(&frame(kind::SETTINGS, flag::ACK, 0, &[0, 3, 0, 0, 0, 1])),
            ErrorCode::FrameSizeError
        );
    }

    /// §6.5: a length not a multiple of 6 is a connection FRAME_SIZE_ERROR.
    #[test]
    fn section_6_5_settings_length_not_multiple_of_6() {
        assert_eq!(connection_error(&frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0])), ErrorCode::FrameSizeError);
    }

    /// §6.5: SETTINGS on a stream is a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_5_settings_on_a_stream() {
        assert_eq!(connection_error(&frame(kind::SETTINGS, 0, 1, &[])), ErrorCode::ProtocolError);
    }

    /// §6.5.2: SETTINGS_ENABLE_PUSH is 0 or 1, else PROTOCOL_ERROR.
    #[test]
    fn section_6_5_2_enable_push_range() {
        let ok = frame(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]);
        let Ok(Frame::Settings { settings, .. }) = parse(&ok) else { panic!() };
        assert_eq!(settings.iter().collect::<Vec<_>>(), [Setting::EnablePush(false)]);
        assert_eq!(connection_error(&frame(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2])), ErrorCode::ProtocolError);
    }

    /// §6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is a FLOW_CONTROL_ERROR.
    #[test]
    fn section_6_5_2_initial_window_size_range() {
        assert!(parse(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff])).is_ok());
        assert_eq!(connection_error(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0])), ErrorCode::FlowControlError);
    }

    /// §6.5.2: SETTINGS_MAX_FRAME_SIZE between 2^14 and 2^24-1, else PROTOCOL_ERROR.
    #[test]
    fn section_6_5_2_max_frame_size_range() {
        assert!(parse(&frame(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x40, 0])).is_ok());
        assert!(parse(&frame(kind::SETTINGS, 0, 0, &[0, 5, 0, 0xff, 0xff, 0xff])).is_ok());
        assert_eq!(connection_error(&frame(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff])), ErrorCode::ProtocolError);
        assert_eq!(connection_error(&frame(kind::SETTINGS, 0, 0, &[0, 5, 1, 0, 0, 0])), ErrorCode::ProtocolError);
    }

    /// §8.4: a server receiving PUSH_PROMISE: connection PROTOCOL_ERROR.
    #[test]
    fn section_8_4_push_promise_to_a_server() {
        assert_eq!(
            connection_error(&frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2, 0x82])),
            ErrorCode::ProtocolError
        );
    }

    /// §6.7: PING has 8 octets, on stream 0.
    #[test]
    fn section_6_7_ping() {
        assert_eq!(
            parse(&frame(kind::PING, flag::ACK, 0, b"abcdefgh")),
            Ok(Frame::Ping { ack: true, opaque: *b"abcdefgh" })
        );
        assert_eq!(connection_error(&frame(kind::PING, 0, 0, b"abcdefg")), ErrorCode::FrameSizeError);
        assert_eq!(connection_error(&frame(kind::PING, 0, 0, b"abcdefghi")), ErrorCode::FrameSizeError);
        assert_eq!(connection_error(&frame(kind::PING, 0, 1, b"abcdefgh")), ErrorCode::ProtocolError);
    }

    /// §6.8: GOAWAY: last stream id (reserved bit ignored), code, debug data; on stream 0;
    /// at least 8 octets.
    #[test]
    fn section_6_8_goaway() {
        assert_eq!(
            parse(&frame(kind::GOAWAY, 0, 0, &[0x80, 0, 0, 5, 0, 0, 0, 0xb, b'x'])),
            Ok(Frame::GoAway { last_stream_id: 5, code: ErrorCode::EnhanceYourCalm, debug: b"x" })
        );
        assert_eq!(connection_error(&frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0])), ErrorCode::FrameSizeError);
        assert_eq!(connection_error(&frame(kind::GOAWAY, 0, 3, &[0, 0, 0, 5, 0, 0, 0, 0])), ErrorCode::ProtocolError);
    }

    /// §6.9: WINDOW_UPDATE: a 31-bit increment in 4 octets.
    #[test]
    fn section_6_9_window_update() {
        assert_eq!(
            parse(&frame(kind::WINDOW_UPDATE, 0, 0, &[0x80, 0, 0x10, 0])),
            Ok(Frame::WindowUpdate { stream_id: 0, increment: 4096 })
        );
        assert_eq!(connection_error(&frame(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 1])), ErrorCode::FrameSizeError);
    }

    /// §6.9: an increment of 0 is a stream PROTOCOL_ERROR on a stream, a connection one on
    /// the connection's window.
    #[test]
    fn section_6_9_window_update_of_zero() {
        assert_eq!(stream_error(&frame(kind::WINDOW_UPDATE, 0, 3, &[0, 0, 0, 0])), (3, ErrorCode::ProtocolError));
        assert_eq!(connection_error(&frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0])), ErrorCode::ProtocolError);
        // Only the reserved bit set is an increment of 0 too.
        assert_eq!(stream_error(&frame(kind::WINDOW_UPDATE, 0, 3, &[0x80, 0, 0, 0])), (3, ErrorCode::ProtocolError));
    }

    /// §6.10: CONTINUATION carries a fragment; on stream 0 a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_10_continuation() {
        assert_eq!(
            parse(&frame(kind::CONTINUATION, flag::END_HEADERS, 1, b"\x84")),
            Ok(Frame::Continuation { stream_id: 1, end_headers: true, fragment: b"\x84" })
        );
        assert_eq!(connection_error(&frame(kind::CONTINUATION, 0, 0, b"\x84")), ErrorCode::ProtocolError);
    }

    /// §5.5: frames of unknown types are handed up to be discarded, not refused.
    #[test]
    fn section_5_5_unknown_types_are_ignored() {
        assert_eq!(
            parse(&frame(0xfa, 0xff, 9, b"whatever")),
            Ok(Frame::Unknown { kind: 0xfa, flags: 0xff, stream_id: 9, payload: b"whatever" })
        );
    }

    /// §4.1: "Flags that have no defined semantics for a particular frame type MUST be
    /// ignored".
    #[test]
    fn section_4_1_undefined_flags_are_ignored() {
        assert_eq!(
            parse(&frame(kind::PING, 0xfe, 0, b"abcdefgh")),
            Ok(Frame::Ping { ack: false, opaque: *b"abcdefgh" })
        );
        assert_eq!(
            parse(&frame(kind::DATA, 0xf6, 1, b"x")),
            Ok(Frame::Data { stream_id: 1, end_stream: false, data: b"x", flow_controlled_len: 1 })
        );
    }

    /// What `encode` writes, `parse_frame` reads back as the same frame.
    #[test]
    fn encoded_frames_parse_back() {
        let settings = frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]);
        let Ok(Frame::Settings { settings, .. }) = parse(&settings) else { panic!() };
        let frames = [
            Frame::Data { stream_id: 1, end_stream: true, data: b"data: hi\n\n", flow_controlled_len: 10 },
            Frame::Headers { stream_id: 1, end_stream: false, end_headers: true, fragment: b"\x88" },
            Frame::Priority { stream_id: 3 },
            Frame::RstStream { stream_id: 3, code: ErrorCode::RefusedStream },
            Frame::Settings { ack: false, settings },
            Frame::Ping { ack: true, opaque: [1, 2, 3, 4, 5, 6, 7, 8] },
            Frame::GoAway { last_stream_id: 7, code: ErrorCode::NoError, debug: b"bye" },
            Frame::WindowUpdate { stream_id: 0, increment: MAX_WINDOW_SIZE },
            Frame::Continuation { stream_id: 1, end_headers: true, fragment: b"\x84" },
            Frame::Unknown { kind: 0x20, flags: 3, stream_id: 0, payload: b"?" },
        ];
        for frame in frames {
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert_eq!(parse(&out), Ok(frame));
        }
    }

    /// §6.5: `encode_settings` writes each identifier and value in 6 octets.
    #[test]
    fn section_6_5_encode_settings() {
        let mut out = Vec::new();
        encode_settings(&[Setting::MaxConcurrentStreams(100), Setting::EnablePush(false)], &mut out);
        assert_eq!(out, frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100, 0, 2, 0, 0, 0, 0]));
    }

    /// §4.3: a block larger than the peer's frame size goes as HEADERS then CONTINUATIONs,
    /// END_HEADERS on the last only.
    #[test]
    fn section_4_3_header_block_split_into_continuations() {
        let block: Vec<u8> = (0..40).collect();
        let mut out = Vec::new();
        encode_header_block(1, true, &block, 16, &mut out);
        let mut expected = frame(kind::HEADERS, flag::END_STREAM, 1, &block[..16]);
        expected.extend_from_slice(&frame(kind::CONTINUATION, 0, 1, &block[16..32]));
        expected.extend_from_slice(&frame(kind::CONTINUATION, flag::END_HEADERS, 1, &block[32..]));
        assert_eq!(out, expected);
        out.clear();
        encode_header_block(1, false, &block[..3], 16, &mut out);
        assert_eq!(out, frame(kind::HEADERS, flag::END_HEADERS, 1, &block[..3]));
    }
}
