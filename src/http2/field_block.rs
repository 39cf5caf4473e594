//! Field blocks across frames (RFC 9113 §4.3, §6.2, §6.10): a HEADERS frame and the
//! CONTINUATION frames after it, joined into the one header block HPACK decodes.
//!
//! A header block larger than a frame is split: HEADERS without END_HEADERS, then
//! CONTINUATIONs on the same stream, the last with END_HEADERS. §4.3: "Field blocks MUST be
//! transmitted as a contiguous sequence of frames, with no interleaved frames of any other
//! type or from any other stream." So while a block is open, the connection belongs to it.
//!
//! [`FieldBlocks`] checks that sequence and collects the fragments, up to a limit. The limit
//! is what stops the CONTINUATION flood (reported in 2024 against several servers, e.g.
//! CVE-2024-27316 in Apache httpd): a peer that sends CONTINUATION after CONTINUATION without
//! END_HEADERS would otherwise make the server buffer without end. Empty CONTINUATIONs grow
//! nothing: each costs this module a comparison, the same as any 9-octet frame, and nothing
//! is decoded before the block is complete. A block past the limit cannot be decoded, and HPACK cannot skip a block (the
//! dynamic table would fall out of step), so it ends the connection with ENHANCE_YOUR_CALM.

#![forbid(unsafe_code)]

use super::error::{ErrorCode, H2Error};
use super::frame::Frame;

/// A complete header block, ready for [`super::hpack::Decoder::decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldBlock {
    pub stream_id: u32,
    /// The HEADERS frame's END_STREAM: no body follows (§8.1).
    pub end_stream: bool,
    /// The fragments, in order, joined.
    pub block: Vec<u8>,
}

/// What a frame meant to the block in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not part of a header block: handle the frame as usual.
    NotABlock,
    /// A fragment was taken; the block needs CONTINUATION.
    Incomplete,
    /// The block is complete.
    Complete(FieldBlock),
}

/// The header block being received, if any, and the limit on its size.
#[derive(Debug)]
pub struct FieldBlocks {
    /// The block begun by a HEADERS without END_HEADERS.
    open: Option<FieldBlock>,
    /// The most octets one block may take, compressed.
    max_block_len: usize,
}

impl FieldBlocks {
    /// Blocks of at most `max_block_len` octets.
    pub fn new(max_block_len: usize) -> FieldBlocks {
        FieldBlocks { open: None, max_block_len }
    }

    /// Whether a block is open: then only a CONTINUATION on its stream may come next.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Takes the next frame of the connection. `Err` is always a connection error.
    pub fn receive(&mut self, frame: &Frame<'_>) -> Result<Step, H2Error> {
        match (self.open.take(), frame) {
            (None, &Frame::Headers { stream_id, end_stream, end_headers, fragment }) => {
                let block = FieldBlock { stream_id, end_stream, block: Vec::new() };
                self.append(block, fragment, end_headers)
            }
            (Some(block), &Frame::Continuation { stream_id, end_headers, fragment })
                if stream_id == block.stream_id =>
            {
                self.append(block, fragment, end_headers)
            }
            // §6.10: "A CONTINUATION frame MUST be preceded by a HEADERS, PUSH_PROMISE or
            // CONTINUATION frame without the END_HEADERS flag set. A recipient that observes
            // violation of this rule MUST respond with a connection error (Section 5.4.1) of
            // type PROTOCOL_ERROR."
            (None, Frame::Continuation { .. }) => {
                Err(H2Error::Connection(ErrorCode::ProtocolError, "CONTINUATION without a header block"))
            }
            (None, _) => Ok(Step::NotABlock),
            // §6.2: "A HEADERS frame without the END_HEADERS flag set MUST be followed by a
            // CONTINUATION frame for the same stream. A receiver MUST treat the receipt of
            // any other type of frame or a frame on a different stream as a connection error
            // (Section 5.4.1) of type PROTOCOL_ERROR."
            (Some(_), _) => Err(H2Error::Connection(ErrorCode::ProtocolError, "header block interrupted")),
        }
    }

    fn append(&mut self, mut block: FieldBlock, fragment: &[u8], end: bool) -> Result<Step, H2Error> {
        if block.block.len() + fragment.len() > self.max_block_len {
            return Err(H2Error::Connection(ErrorCode::EnhanceYourCalm, "header block larger than the limit"));
        }
        block.block.extend_from_slice(fragment);
        if end {
            return Ok(Step::Complete(block));
        }
        self.open = Some(block);
        Ok(Step::Incomplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(stream_id: u32, end_headers: bool, fragment: &[u8]) -> Frame<'_> {
        Frame::Headers { stream_id, end_stream: true, end_headers, fragment }
    }

    fn continuation(stream_id: u32, end_headers: bool, fragment: &[u8]) -> Frame<'_> {
        Frame::Continuation { stream_id, end_headers, fragment }
    }

    fn complete(stream_id: u32, block: &[u8]) -> Step {
        Step::Complete(FieldBlock { stream_id, end_stream: true, block: block.to_vec() })
    }

    /// §4.3: a block in one HEADERS frame is complete at once.
    #[test]
    fn section_4_3_block_in_one_frame() {
        let mut blocks = FieldBlocks::new(100);
        assert_eq!(blocks.receive(&headers(1, true, b"\x82")), Ok(complete(1, b"\x82")));
        assert!(!blocks.is_open());
    }

    /// §4.3: HEADERS and CONTINUATIONs join into one block, in order.
    #[test]
    fn section_4_3_block_across_continuations() {
        let mut blocks = FieldBlocks::new(100);
        assert_eq!(blocks.receive(&headers(3, false, b"\x82")), Ok(Step::Incomplete));
        assert!(blocks.is_open());
        assert_eq!(blocks.receive(&continuation(3, false, b"\x86")), Ok(Step::Incomplete));
        assert_eq!(blocks.receive(&continuation(3, true, b"\x84")), Ok(complete(3, b"\x82\x86\x84")));
        assert_eq!(blocks.receive(&Frame::Priority { stream_id: 3 }), Ok(Step::NotABlock));
    }

    /// §6.2: a frame of another type, or a CONTINUATION of another stream, inside a block is
    /// a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_2_block_interrupted() {
        let mut blocks = FieldBlocks::new(100);
        blocks.receive(&headers(1, false, b"\x82")).unwrap();
        let ping = Frame::Ping { ack: false, opaque: [0; 8] };
        assert_eq!(blocks.receive(&ping).map_err(|e| e.code()), Err(ErrorCode::ProtocolError));
        let mut blocks = FieldBlocks::new(100);
        blocks.receive(&headers(1, false, b"\x82")).unwrap();
        assert_eq!(blocks.receive(&continuation(3, true, b"")).map_err(|e| e.code()), Err(ErrorCode::ProtocolError));
        let mut blocks = FieldBlocks::new(100);
        blocks.receive(&headers(1, false, b"\x82")).unwrap();
        assert_eq!(blocks.receive(&headers(3, true, b"")).map_err(|e| e.code()), Err(ErrorCode::ProtocolError));
    }

    /// §6.10: a CONTINUATION with no open block is a connection PROTOCOL_ERROR.
    #[test]
    fn section_6_10_continuation_without_a_block() {
        let mut blocks = FieldBlocks::new(100);
        assert_eq!(blocks.receive(&continuation(1, true, b"")).map_err(|e| e.code()), Err(ErrorCode::ProtocolError));
        blocks.receive(&headers(1, true, b"\x82")).unwrap();
        assert_eq!(blocks.receive(&continuation(1, true, b"")).map_err(|e| e.code()), Err(ErrorCode::ProtocolError));
    }

    /// The CONTINUATION flood: the block stops at its limit, however many frames come.
    #[test]
    fn continuation_flood_is_bounded() {
        let mut blocks = FieldBlocks::new(10);
        blocks.receive(&headers(1, false, b"12345")).unwrap();
        assert_eq!(blocks.receive(&continuation(1, false, b"67890")), Ok(Step::Incomplete));
        assert_eq!(
            blocks.receive(&continuation(1, false, b"x")).map_err(|e| e.code()),
            Err(ErrorCode::EnhanceYourCalm)
        );
        // Exactly the limit is fine.
        let mut blocks = FieldBlocks::new(10);
        blocks.receive(&headers(1, false, b"12345")).unwrap();
        assert_eq!(blocks.receive(&continuation(1, true, b"67890")), Ok(complete(1, b"1234567890")));
    }
}
