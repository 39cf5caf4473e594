//! HTTP/2 error codes (RFC 9113 §7) and the two scopes an error can have (§5.4).
//!
//! Every fault a peer can commit is answered with one of the codes below, and with one of two
//! reactions: a *connection error* (§5.4.1) ends the whole connection with GOAWAY, because
//! the connection's shared state (the HPACK tables, the frame stream) can no longer be
//! trusted; a *stream error* (§5.4.2) resets one stream with RST_STREAM and the others go on.
//! The codecs in this module return [`H2Error`], which carries both, so the connection layer
//! above only has to carry the decision out.

#![forbid(unsafe_code)]

use std::fmt;

/// The error codes of RFC 9113 §7, as sent in RST_STREAM and GOAWAY frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0x0: a graceful shutdown, not an error.
    NoError,
    /// 0x1: an unspecific protocol error, when no more specific code applies.
    ProtocolError,
    /// 0x2: an unexpected internal error.
    InternalError,
    /// 0x3: the peer violated the flow-control protocol.
    FlowControlError,
    /// 0x4: SETTINGS were not acknowledged in time.
    SettingsTimeout,
    /// 0x5: a frame arrived after the stream was half-closed.
    StreamClosed,
    /// 0x6: a frame had an invalid size.
    FrameSizeError,
    /// 0x7: the stream was refused before any application processing.
    RefusedStream,
    /// 0x8: the stream is no longer needed.
    Cancel,
    /// 0x9: the HPACK state of the connection cannot be maintained.
    CompressionError,
    /// 0xa: the connection of a CONNECT request was reset.
    ConnectError,
    /// 0xb: the peer is generating excessive load.
    EnhanceYourCalm,
    /// 0xc: the transport does not meet minimum security requirements.
    InadequateSecurity,
    /// 0xd: HTTP/1.1 is required instead.
    Http11Required,
}

impl ErrorCode {
    /// The 32-bit value on the wire (§7).
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::NoError => 0x0,
            ErrorCode::ProtocolError => 0x1,
            ErrorCode::InternalError => 0x2,
            ErrorCode::FlowControlError => 0x3,
            ErrorCode::SettingsTimeout => 0x4,
            ErrorCode::StreamClosed => 0x5,
            ErrorCode::FrameSizeError => 0x6,
            ErrorCode::RefusedStream => 0x7,
            ErrorCode::Cancel => 0x8,
            ErrorCode::CompressionError => 0x9,
            ErrorCode::ConnectError => 0xa,
            ErrorCode::EnhanceYourCalm => 0xb,
            ErrorCode::InadequateSecurity => 0xc,
            ErrorCode::Http11Required => 0xd,
        }
    }

    /// The code for a wire value. §7: "Unknown or unsupported error codes MUST NOT trigger
    /// any special behavior. These MAY be treated by an implementation as being equivalent
    /// to INTERNAL_ERROR."
    pub fn from_code(code: u32) -> ErrorCode {
        match code {
            0x0 => ErrorCode::NoError,
            0x1 => ErrorCode::ProtocolError,
            0x3 => ErrorCode::FlowControlError,
            0x4 => ErrorCode::SettingsTimeout,
            0x5 => ErrorCode::StreamClosed,
            0x6 => ErrorCode::FrameSizeError,
            0x7 => ErrorCode::RefusedStream,
            0x8 => ErrorCode::Cancel,
            0x9 => ErrorCode::CompressionError,
            0xa => ErrorCode::ConnectError,
            0xb => ErrorCode::EnhanceYourCalm,
            0xc => ErrorCode::InadequateSecurity,
            0xd => ErrorCode::Http11Required,
            _ => ErrorCode::InternalError,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCode::NoError => "NO_ERROR",
            ErrorCode::ProtocolError => "PROTOCOL_ERROR",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::FlowControlError => "FLOW_CONTROL_ERROR",
            ErrorCode::SettingsTimeout => "SETTINGS_TIMEOUT",
            ErrorCode::StreamClosed => "STREAM_CLOSED",
            ErrorCode::FrameSizeError => "FRAME_SIZE_ERROR",
            ErrorCode::RefusedStream => "REFUSED_STREAM",
            ErrorCode::Cancel => "CANCEL",
            ErrorCode::CompressionError => "COMPRESSION_ERROR",
            ErrorCode::ConnectError => "CONNECT_ERROR",
            ErrorCode::EnhanceYourCalm => "ENHANCE_YOUR_CALM",
            ErrorCode::InadequateSecurity => "INADEQUATE_SECURITY",
            ErrorCode::Http11Required => "HTTP_1_1_REQUIRED",
        })
    }
}

/// A fault of the peer, with its scope (§5.4) and code (§7), and the rule it broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Error {
    /// §5.4.1: end the connection (GOAWAY with this code, then close).
    Connection(ErrorCode, &'static str),
    /// §5.4.2: reset this stream (RST_STREAM with this code); the connection goes on.
    Stream(u32, ErrorCode, &'static str),
}

impl H2Error {
    /// The code to send.
    pub fn code(&self) -> ErrorCode {
        match *self {
            H2Error::Connection(code, _) | H2Error::Stream(_, code, _) => code,
        }
    }

    /// Which rule was broken, for the log.
    pub fn reason(&self) -> &'static str {
        match *self {
            H2Error::Connection(_, reason) | H2Error::Stream(_, _, reason) => reason,
        }
    }
}

impl fmt::Display for H2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H2Error::Connection(code, reason) => write!(f, "connection error {code}: {reason}"),
            H2Error::Stream(id, code, reason) => write!(f, "stream {id} error {code}: {reason}"),
        }
    }
}

impl std::error::Error for H2Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// §7: every defined code has its value, and the values map back.
    #[test]
    fn section_7_codes_round_trip() {
        for value in 0..=0xd {
            assert_eq!(ErrorCode::from_code(value).code(), value);
        }
    }

    /// §7: an unknown code is treated as INTERNAL_ERROR.
    #[test]
    fn section_7_unknown_code_is_internal_error() {
        assert_eq!(ErrorCode::from_code(0xe), ErrorCode::InternalError);
        assert_eq!(ErrorCode::from_code(u32::MAX), ErrorCode::InternalError);
    }
}
