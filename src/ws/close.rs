//! Close status codes (RFC 6455 §7.4): why a WebSocket connection ended.
//!
//! Every layer that can end a connection names a code: the frame decoder for a frame that
//! breaks a framing rule ([`super::frame::FrameError::close_code`]), the message layer for a
//! rule that spans frames ([`super::message::MessageError::close_code`]), the session, and
//! the application for its own reasons (a slow consumer, a shutdown). So the codes sit below
//! all of them, in a file of their own that depends on none of them.

#![forbid(unsafe_code)]

use std::fmt;

/// A close status code (RFC 6455 §7.4). A newtype rather than an enum because the peer may
/// send any code in 3000-4999, which we must accept and echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: "the purpose for which the connection was established has been fulfilled".
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: "an endpoint is "going away", such as a server going down".
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: "an endpoint is terminating the connection due to a protocol error".
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: "it has received a type of data it cannot accept".
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: "data within a message that was not consistent with the type of the message
    /// (e.g., non-UTF-8 \[RFC3629\] data within a text message)".
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: "a message that violates its policy".
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: "a message that is too big for it to process".
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: a client expected an extension the server did not agree to.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: "an unexpected condition that prevented it from fulfilling the request".
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether this code may appear in a Close frame, sent or received.
    ///
    /// RFC 6455 §7.4.1 defines 1000-1003 and 1007-1011; 1004 is "Reserved"; 1005, 1006 and
    /// 1015 "MUST NOT be set as a status code in a Close control frame by an endpoint". §7.4.2
    /// leaves 0-999 "not used" and 1000-2999 to this protocol and its future revisions, so
    /// anything there that is not defined is not understood; 3000-4999 belong to libraries and
    /// applications. (1012-1014 were registered with IANA after the RFC; like Autobahn's own
    /// implementation we treat them as not defined.)
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_7_4_defined_and_application_codes_are_valid() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(code).is_allowed_on_wire(), "{code}");
        }
    }

    #[test]
    fn rfc6455_7_4_reserved_and_unused_codes_are_invalid() {
        // The list Autobahn 7.9.x sends, plus the other "MUST NOT be set" codes and the edges.
        for code in [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(code).is_allowed_on_wire(), "{code}");
        }
    }
}
