//! Everything that can be wrong with an HTTP/1.1 message we receive (RFC 9112, RFC 9110).
//!
//! One flat enum, one variant per rule broken, in the manner of httparse: the parser that finds
//! the fault names it, and the server turns it into a response with [`HttpError::status`] and
//! [`HttpError::message`] as a short plain-text body.
//!
//! Every one of these errors ends the connection. Once a message does not parse, the server
//! can no longer tell where it ends, so anything after it on the connection might be the rest
//! of it or a smuggled second request (RFC 9112 §11.2). RFC 9112 §2.2: a server that receives
//! octets not matching the HTTP-message grammar "SHOULD respond with a 400 (Bad Request)
//! response and close the connection"; §6.3 says the same, as a MUST, for bad framing.

use std::fmt;

/// A fault in a received HTTP/1.1 message head or body.
///
/// After any of these the connection must be closed once the error response is written: the
/// framing of the rest of the byte stream can no longer be trusted.
///
/// The same enum serves the client side ([`super::response_head`]); there the status codes
/// mean nothing to the peer, and a client simply closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    // ----- start-line (RFC 9112 §3, §4) -----
    /// The request-line is not `method SP request-target SP HTTP-version CRLF` with exactly
    /// one space between the parts (RFC 9112 §3): an empty target, a line that ends after the
    /// target, or an extra empty line before it.
    BadRequestLine,
    /// The method is not a token (RFC 9112 §3.1: `method = token`; RFC 9110 §5.6.2).
    BadMethod,
    /// The request-target has a byte outside visible ASCII, a fragment, or is in a form that
    /// the method does not allow (RFC 9112 §3.2: `*` only with OPTIONS, authority-form only
    /// with CONNECT; RFC 9110 §4.2: `http`/`https` URIs only, with a host and no userinfo).
    BadRequestTarget,
    /// The request-target is longer than the configured limit (RFC 9112 §3: a server "MUST
    /// respond with a 414 (URI Too Long)").
    TargetTooLong,
    /// The HTTP-version is not `HTTP/` DIGIT `.` DIGIT (RFC 9112 §2.3).
    MalformedVersion,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1 (RFC 9110 §15.6.6: 505).
    UnsupportedVersion,
    /// The status-line is not `HTTP-version SP 3DIGIT SP [reason-phrase] CRLF` with a status
    /// code in 100..=599 (RFC 9112 §4, RFC 9110 §15). Client side only.
    BadStatusLine,

    // ----- line endings (RFC 9112 §2.2) -----
    /// A LF without the CR before it. RFC 9112 §2.2 lets a recipient accept a bare LF; we are
    /// strict and require CRLF, so that we never read a line boundary that a stricter
    /// component in front of us did not see.
    BareLf,
    /// A CR not followed by LF. RFC 9112 §2.2: "A recipient of such a bare CR MUST consider
    /// that element to be invalid or replace each bare CR with SP".
    BareCr,

    // ----- size limits -----
    /// The head did not end within the configured number of bytes (RFC 6585 §5: 431).
    HeadTooLarge,
    /// More field lines than the configured limit (RFC 6585 §5: 431).
    TooManyHeaders,

    // ----- field lines (RFC 9112 §5, RFC 9110 §5) -----
    /// A field name that is not a token, or a field line without a colon (RFC 9110 §5.1:
    /// `field-name = token`).
    BadFieldName,
    /// Whitespace between a field name and its colon. RFC 9112 §5.1: "A server MUST reject,
    /// with a response status code of 400 (Bad Request), any received request message that
    /// contains whitespace between a header field name and colon."
    WhitespaceBeforeColon,
    /// A line that begins with SP or HTAB inside the field section: obsolete line folding
    /// (RFC 9112 §5.2) after a field line, or whitespace between the start-line and the first
    /// field (RFC 9112 §2.2). Both MUST be rejected or repaired; we reject.
    ObsFold,
    /// A field value byte that is not HTAB, SP, VCHAR or obs-text: NUL, another control
    /// character, or DEL (RFC 9110 §5.5). A CR or LF inside a value is reported as
    /// [`HttpError::BareCr`] or [`HttpError::BareLf`].
    BadFieldValue,

    // ----- Host (RFC 9112 §3.2) -----
    /// An HTTP/1.1 request without a Host field (RFC 9112 §3.2: 400).
    MissingHost,
    /// More than one Host field line (RFC 9112 §3.2: 400).
    MultipleHost,
    /// A Host value that is not `uri-host [ ":" port ]` (RFC 9110 §7.2; RFC 9112 §3.2: 400).
    BadHost,

    // ----- body framing (RFC 9112 §6) -----
    /// A Content-Length that is not 1*DIGIT, is empty, or does not fit in 64 bits
    /// (RFC 9110 §8.6, RFC 9112 §6.3 rule 5).
    BadContentLength,
    /// Content-Length values that differ, on one line (`2, 3`) or on several. Identical
    /// repeats are accepted as one value (RFC 9110 §8.6, RFC 9112 §6.3 rule 5).
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding: the classic request-smuggling shape. RFC
    /// 9112 §6.1: a server "MAY reject" it and "MUST close the connection" either way.
    ContentLengthWithTransferEncoding,
    /// A Transfer-Encoding value that is not a list of transfer codings, has no coding at
    /// all, or gives `chunked` parameters (RFC 9112 §7.1: "Their presence SHOULD be treated
    /// as an error").
    BadTransferEncoding,
    /// A transfer coding other than `chunked`, which is the only one we implement. RFC 9112
    /// §6.1: "A server that receives a request message with a transfer coding it does not
    /// understand SHOULD respond with 501 (Not Implemented)."
    UnsupportedTransferCoding,
    /// `chunked` listed more than once. RFC 9112 §6.1: "A sender MUST NOT apply the chunked
    /// transfer coding more than once to a message body".
    ChunkedAppliedTwice,
    /// Transfer-Encoding in an HTTP/1.0 message. RFC 9112 §6.1: the recipient "MUST treat
    /// the message as if the framing is faulty, even if a Content-Length is present".
    TransferEncodingOnHttp10,

    // ----- chunked coding (RFC 9112 §7.1) -----
    /// A chunk-size that is not 1*HEXDIG, or too large for 64 bits (RFC 9112 §7.1:
    /// recipients "MUST anticipate potentially large hexadecimal numerals").
    BadChunkSize,
    /// A chunk extension that is not `BWS ";" BWS name [ BWS "=" BWS value ]` with a token
    /// name and a token or quoted-string value (RFC 9112 §7.1.1).
    BadChunkExtension,
    /// A chunk-size line (size plus extensions) longer than our limit. RFC 9112 §7.1.1: a
    /// server "ought to limit the total length of chunk extensions received in a request".
    ChunkLineTooLong,
    /// Chunk data not followed by CRLF (RFC 9112 §7.1: `chunk-data CRLF`): the chunk-size
    /// and the data disagree.
    MissingChunkCrlf,
    /// A trailer field line that breaks the field-line rules (RFC 9112 §7.1.2).
    BadTrailerField,
    /// A trailer section over our limit in bytes or field lines.
    TrailerTooLarge,
    /// The body is larger than the configured limit (RFC 9110 §15.5.14: 413).
    BodyTooLarge,

    // ----- expectations (RFC 9110 §10.1.1) -----
    /// An Expect member other than `100-continue`. RFC 9110 §10.1.1: the server "MAY respond
    /// with a 417 (Expectation Failed) status code".
    UnsupportedExpectation,
}

impl HttpError {
    /// The status code of the response that reports this error.
    pub fn status(self) -> u16 {
        match self {
            HttpError::TargetTooLong => 414,
            HttpError::UnsupportedVersion => 505,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders | HttpError::TrailerTooLarge => 431,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedExpectation => 417,
            HttpError::BadRequestLine
            | HttpError::BadMethod
            | HttpError::BadRequestTarget
            | HttpError::MalformedVersion
            | HttpError::BadStatusLine
            | HttpError::BareLf
            | HttpError::BareCr
            | HttpError::BadFieldName
            | HttpError::WhitespaceBeforeColon
            | HttpError::ObsFold
            | HttpError::BadFieldValue
            | HttpError::MissingHost
            | HttpError::MultipleHost
            | HttpError::BadHost
            | HttpError::BadContentLength
            | HttpError::ConflictingContentLength
            | HttpError::ContentLengthWithTransferEncoding
            | HttpError::BadTransferEncoding
            | HttpError::ChunkedAppliedTwice
            | HttpError::TransferEncodingOnHttp10
            | HttpError::BadChunkSize
            | HttpError::BadChunkExtension
            | HttpError::ChunkLineTooLong
            | HttpError::MissingChunkCrlf
            | HttpError::BadTrailerField => 400,
        }
    }

    /// A short sentence for people: the plain-text body of the error response.
    pub fn message(self) -> &'static str {
        match self {
            HttpError::BadRequestLine => "malformed request line",
            HttpError::BadMethod => "the method is not a token",
            HttpError::BadRequestTarget => "malformed request target",
            HttpError::TargetTooLong => "request target too long",
            HttpError::MalformedVersion => "malformed HTTP version",
            HttpError::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            HttpError::BadStatusLine => "malformed status line",
            HttpError::BareLf => "lines must end with CRLF, not a bare LF",
            HttpError::BareCr => "a CR must be followed by LF",
            HttpError::HeadTooLarge => "request header fields too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::BadFieldName => "malformed header field name",
            HttpError::WhitespaceBeforeColon => "whitespace between a field name and its colon",
            HttpError::ObsFold => "obsolete line folding is not accepted",
            HttpError::BadFieldValue => "invalid character in a header field value",
            HttpError::MissingHost => "HTTP/1.1 requests need a Host header field",
            HttpError::MultipleHost => "more than one Host header field",
            HttpError::BadHost => "malformed Host header field",
            HttpError::BadContentLength => "malformed Content-Length",
            HttpError::ConflictingContentLength => "conflicting Content-Length values",
            HttpError::ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            HttpError::BadTransferEncoding => "malformed Transfer-Encoding",
            HttpError::UnsupportedTransferCoding => "only the chunked transfer coding is supported",
            HttpError::ChunkedAppliedTwice => "chunked applied more than once",
            HttpError::TransferEncodingOnHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            HttpError::BadChunkSize => "malformed chunk size",
            HttpError::BadChunkExtension => "malformed chunk extension",
            HttpError::ChunkLineTooLong => "chunk size line too long",
            HttpError::MissingChunkCrlf => "chunk data not followed by CRLF",
            HttpError::BadTrailerField => "malformed trailer field",
            HttpError::TrailerTooLarge => "trailer section too large",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::UnsupportedExpectation => "only the 100-continue expectation is supported",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_map_to_their_own_status_codes() {
        assert_eq!(HttpError::TargetTooLong.status(), 414);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
    }

    #[test]
    fn rfc9110_15_6_6_unsupported_versions_are_505_but_malformed_ones_400() {
        assert_eq!(HttpError::UnsupportedVersion.status(), 505);
        assert_eq!(HttpError::MalformedVersion.status(), 400);
    }

    #[test]
    fn rfc9112_6_1_unknown_transfer_codings_are_501_and_expectations_417() {
        assert_eq!(HttpError::UnsupportedTransferCoding.status(), 501);
        assert_eq!(HttpError::ChunkedAppliedTwice.status(), 400);
        assert_eq!(HttpError::UnsupportedExpectation.status(), 417);
    }

    #[test]
    fn display_is_the_message_and_the_status() {
        assert_eq!(HttpError::HeadTooLarge.message(), "request header fields too large");
        assert_eq!(HttpError::HeadTooLarge.to_string(), "request header fields too large (431)");
    }
}
