//! permessage-deflate on the wire (RFC 7692 §6, §7.2): compressing a message to send and
//! decompressing one received, over [`crate::deflate`].
//!
//! # Theory of operation
//!
//! RFC 7692 compresses *messages*, not frames. The sender compresses a message's payload,
//! ends it with a sync flush, removes the flush's last four bytes `00 00 ff ff` (§7.2.1) and
//! sends the rest as the message, with RSV1 ("Per-Message Compressed") on its first frame
//! (§6). The receiver puts the four bytes back and decompresses (§7.2.2).
//!
//! - [`Compressor`] is the sending half. Without context takeover each message is compressed
//!   on its own by [`compress_message`], a pure function of the payload and the window, which
//!   is why a broadcast can be compressed once for all its subscribers
//!   ([`SharedCompression`]). With context takeover one [`Deflater`] lives as long as the
//!   connection.
//! - [`Decompressor`] is the receiving half: an [`Inflater`] fed each payload piece as it
//!   arrives, its output bounded by the message size limit, so that a small frame that
//!   inflates to gigabytes ends the connection with 1009 at the limit. Without context
//!   takeover the inflater is dropped after each message: an idle connection holds nothing.
//!
//! A message goes compressed only when that makes it smaller (RFC 7692 §6 leaves the choice
//! per message to the sender). With context takeover that is decided before compressing:
//! once the deflater has seen a message, the receiver must see it too or the two windows
//! would differ, so a message of at least [`CONTEXT_MIN_BYTES`] is always sent compressed
//! (at worst a stored block: 6 bytes more than the payload).

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use super::extension::Direction;
use crate::deflate::{Deflater, InflateError, Inflater, Level, SYNC_FLUSH_TAIL};
use crate::sync::lock;

/// What permessage-deflate saved this node, both ways, for `/stats` and `/metrics` (issue 18:
/// a page's JavaScript sees messages only after the browser inflated them, never the frames,
/// so only the server can say). Payload bytes before and after compression, of the messages
/// that went compressed (the others save nothing); frame headers are not counted. One tally
/// per process, which is one node: every connection adds to it, the way a broadcast's
/// compressed payload is shared by every connection ([`SharedCompression`]).
#[derive(Debug)]
pub struct Tally {
    sent_payload: AtomicU64,
    sent_compressed: AtomicU64,
    received_compressed: AtomicU64,
    received_payload: AtomicU64,
}

/// This process's [`Tally`].
pub static TALLY: Tally = Tally {
    sent_payload: AtomicU64::new(0),
    sent_compressed: AtomicU64::new(0),
    received_compressed: AtomicU64::new(0),
    received_payload: AtomicU64::new(0),
};

/// A reading of the [`Tally`], in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TallySnapshot {
    pub sent_payload: u64,
    pub sent_compressed: u64,
    pub received_compressed: u64,
    pub received_payload: u64,
}

impl Tally {
    /// A message of `payload` bytes went out as `compressed` bytes.
    pub fn sent(&self, payload: usize, compressed: usize) {
        self.sent_payload.fetch_add(payload as u64, Relaxed);
        self.sent_compressed.fetch_add(compressed as u64, Relaxed);
    }

    /// `compressed` bytes arrived and inflated to `payload`.
    pub fn received(&self, compressed: usize, payload: usize) {
        self.received_compressed.fetch_add(compressed as u64, Relaxed);
        self.received_payload.fetch_add(payload as u64, Relaxed);
    }

    pub fn snapshot(&self) -> TallySnapshot {
        TallySnapshot {
            sent_payload: self.sent_payload.load(Relaxed),
            sent_compressed: self.sent_compressed.load(Relaxed),
            received_compressed: self.received_compressed.load(Relaxed),
            received_payload: self.received_payload.load(Relaxed),
        }
    }
}

/// With context takeover, messages shorter than this go uncompressed: a few bytes save
/// nothing that the 3-byte block overhead would not eat.
pub const CONTEXT_MIN_BYTES: usize = 32;

/// The compression level of everything the server sends: zlib's default (level 6), which
/// is what the benchmark shows our default matching zlib's ratio at (`benches/deflate.rs`).
pub const LEVEL: Level = Level::Default;

/// `payload` compressed on its own for a window of `2^window_bits`, the flush tail removed
/// (RFC 7692 §7.2.1), or `None` if that would not be smaller than the payload.
pub fn compress_message(payload: &[u8], window_bits: u8) -> Option<Vec<u8>> {
    let mut compressed = Deflater::new(LEVEL, window_bits).compress_to_vec(payload);
    strip_tail(&mut compressed);
    (compressed.len() < payload.len()).then_some(compressed)
}

/// RFC 7692 §7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail end."
fn strip_tail(compressed: &mut Vec<u8>) {
    debug_assert!(compressed.ends_with(&SYNC_FLUSH_TAIL), "every compress ends with a sync flush");
    compressed.truncate(compressed.len() - SYNC_FLUSH_TAIL.len());
}

/// The sending half of permessage-deflate.
#[derive(Debug)]
pub struct Compressor {
    direction: Direction,
    /// With context takeover, the window shared by all our messages; `None` without. Boxed,
    /// like the inflater: a connection without context takeover carries neither inline.
    deflater: Option<Box<Deflater>>,
}

impl Compressor {
    pub fn new(direction: Direction) -> Compressor {
        let deflater = (!direction.no_context_takeover).then(|| Box::new(Deflater::new(LEVEL, direction.window_bits)));
        Compressor { direction, deflater }
    }

    /// The window of every message's stand-alone compression, when there is no context
    /// takeover; `None` with it (each connection's output then differs).
    pub fn shared_window_bits(&self) -> Option<u8> {
        self.deflater.is_none().then_some(self.direction.window_bits)
    }

    /// The payload to send with RSV1 for `payload`, or `None` to send `payload` as it is.
    pub fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let compressed = match &mut self.deflater {
            None => compress_message(payload, self.direction.window_bits)?,
            Some(_) if payload.len() < CONTEXT_MIN_BYTES => return None,
            Some(deflater) => {
                let mut compressed = deflater.compress_to_vec(payload);
                strip_tail(&mut compressed);
                compressed
            }
        };
        TALLY.sent(payload.len(), compressed.len());
        Some(compressed)
    }

    /// Bytes kept between messages (the window and hash chains with context takeover).
    pub fn retained_bytes(&self) -> usize {
        self.deflater.as_ref().map_or(0, |deflater| deflater.retained_bytes())
    }
}

/// The receiving half of permessage-deflate.
#[derive(Debug)]
pub struct Decompressor {
    direction: Direction,
    /// Exists while a compressed message is arriving, and between messages with context
    /// takeover.
    inflater: Option<Box<Inflater>>,
}

impl Decompressor {
    pub fn new(direction: Direction) -> Decompressor {
        Decompressor { direction, inflater: None }
    }

    /// Decompresses the next piece of a compressed message's payload into `out`, which may
    /// not grow past `limit`.
    pub fn inflate(&mut self, piece: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        self.inflate_counted(piece, piece.len(), out, limit)
    }

    /// [`Decompressor::inflate`], counting `wire` of the piece's bytes as received.
    fn inflate_counted(
        &mut self,
        piece: &[u8],
        wire: usize,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        // The window the sender may use: ours always accepts 2^15 (see `super::extension`).
        let inflater = self.inflater.get_or_insert_with(|| Box::new(Inflater::new(crate::deflate::MAX_WINDOW_BITS)));
        let before = out.len();
        let result = inflater.inflate(piece, out, limit).map(|_| ());
        TALLY.received(wire, out.len() - before);
        result
    }

    /// The message's last frame has ended: RFC 7692 §7.2.2, "Append 4 octets of 0x00 0x00
    /// 0xff 0xff to the tail end of the payload of the message" and decompress; the data must
    /// then end between blocks.
    pub fn finish_message(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        // The tail was never on the wire (RFC 7692 §7.2.1).
        self.inflate_counted(&SYNC_FLUSH_TAIL, 0, out, limit)?;
        let Some(inflater) = &mut self.inflater else { unreachable!("inflate just made it") };
        inflater.finish()?;
        if self.direction.no_context_takeover {
            self.inflater = None;
        } else if inflater.is_finished() {
            // RFC 7692 §7.2.3.4: a message may end with a final block (BFINAL); the next one
            // starts a new stream that may still refer back into this one's window.
            inflater.start_stream();
        }
        Ok(())
    }

    /// Drops a message in progress (the connection is closing).
    pub fn abandon(&mut self) {
        if self.direction.no_context_takeover {
            self.inflater = None;
        }
    }

    /// Bytes held: the inflater's window, during a message or with context takeover.
    pub fn retained_bytes(&self) -> usize {
        self.inflater.as_ref().map_or(0, |inflater| inflater.retained_bytes())
    }
}

/// How many broadcast payloads [`SharedCompression`] remembers. A message goes out to all
/// its subscribers within moments, so it needs a slot only that long; 64 slots hold the
/// latest messages of 64 busy channels at once.
pub const SHARED_SLOTS: usize = 64;

/// Messages whose compressed form is bigger than this are compressed per connection rather
/// than remembered: the slots' memory stays under `SHARED_SLOTS` times this.
pub const SHARED_MAX_BYTES: usize = 64 * 1024;

/// One remembered compression: of which message, for which window, and the result.
struct Slot<T> {
    /// Held weakly: the message may go, its allocation stays until the slot is reused, so
    /// an equal pointer is always the same message.
    message: Weak<T>,
    window_bits: u8,
    compressed: Arc<Option<Vec<u8>>>,
}

/// Compress once per broadcast (issue 18): without server context takeover a message's
/// compressed payload is the same for every subscriber that agreed on the same window, so
/// the first delivery compresses it and the others reuse it, as they reuse its envelope.
///
/// A small direct-mapped table keyed by the message's address and the window, one lock per
/// slot, shared by every connection of the server (both server models).
pub struct SharedCompression<T> {
    slots: Vec<Mutex<Option<Slot<T>>>>,
}

impl<T> Default for SharedCompression<T> {
    fn default() -> Self {
        SharedCompression { slots: (0..SHARED_SLOTS).map(|_| Mutex::new(None)).collect() }
    }
}

impl<T> SharedCompression<T> {
    /// The compressed payload of `message` (as [`compress_message`] of `payload` gives it),
    /// from the table or compressed now and remembered.
    pub fn get(&self, message: &Arc<T>, payload: &[u8], window_bits: u8) -> Arc<Option<Vec<u8>>> {
        let address = Arc::as_ptr(message) as *const u8 as usize;
        // Allocations are at least 8-byte aligned: the low bits carry nothing.
        let slot = &self.slots[(address >> 4 ^ usize::from(window_bits)) % SHARED_SLOTS];
        if let Some(found) = &*lock(slot) {
            if found.window_bits == window_bits && std::ptr::eq(found.message.as_ptr(), Arc::as_ptr(message)) {
                return found.compressed.clone();
            }
        }
        // Compressed outside the lock: other slots' deliveries do not wait for it, and a
        // race at worst compresses the same message twice.
        let compressed = Arc::new(compress_message(payload, window_bits));
        if compressed.as_ref().as_ref().is_none_or(|c| c.len() <= SHARED_MAX_BYTES) {
            *lock(slot) = Some(Slot { message: Arc::downgrade(message), window_bits, compressed: compressed.clone() });
        }
        compressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_CONTEXT: Direction = Direction { no_context_takeover: true, window_bits: 15 };
    const CONTEXT: Direction = Direction { no_context_takeover: false, window_bits: 15 };

    #[test]
    fn rfc7692_7_2_1_compressing_removes_the_flush_tail() {
        // §7.2.3.1: "Hello" is f2 48 cd c9 c9 07 00, but 7 bytes do not beat 5: sent as is.
        assert_eq!(compress_message(b"Hello", 15), None);
        let text = b"Hello, Hello, Hello, Hello, Hello";
        let compressed = compress_message(text, 15).unwrap();
        assert!(!compressed.ends_with(&SYNC_FLUSH_TAIL) && compressed.len() < text.len());
        let mut out = Vec::new();
        let mut decompressor = Decompressor::new(NO_CONTEXT);
        decompressor.inflate(&compressed, &mut out, 100).unwrap();
        decompressor.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn rfc7692_7_2_2_receiving_hello_in_every_rfc_form() {
        for payload in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..], // §7.2.3.1
            &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00], // §7.2.3.3
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], // §7.2.3.4
            &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00], // §7.2.3.5
        ] {
            let mut decompressor = Decompressor::new(CONTEXT);
            for _ in 0..2 {
                let mut out = Vec::new();
                decompressor.inflate(payload, &mut out, 100).unwrap();
                decompressor.finish_message(&mut out, 100).unwrap();
                assert_eq!(out, b"Hello", "{payload:x?}");
            }
        }
    }

    #[test]
    fn rfc7692_7_2_3_2_context_takeover_shares_the_window_between_messages() {
        let mut decompressor = Decompressor::new(CONTEXT);
        for payload in [&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..], &[0xf2, 0x00, 0x11, 0x00, 0x00]] {
            let mut out = Vec::new();
            decompressor.inflate(payload, &mut out, 100).unwrap();
            decompressor.finish_message(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
        }
        // Without context takeover the second message points before the start.
        let mut fresh = Decompressor::new(NO_CONTEXT);
        let mut out = Vec::new();
        fresh.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100).unwrap();
        fresh.finish_message(&mut out, 100).unwrap();
        assert_eq!(fresh.retained_bytes(), 0);
        let result = fresh.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100);
        assert_eq!(result, Err(InflateError::DistanceTooFarBack));
    }

    #[test]
    fn rfc7692_7_2_2_a_message_that_does_not_end_on_a_flush_is_an_error() {
        let mut decompressor = Decompressor::new(NO_CONTEXT);
        let mut out = Vec::new();
        decompressor.inflate(&[0xf2, 0x48, 0xcd], &mut out, 100).unwrap();
        assert!(decompressor.finish_message(&mut out, 100).is_err());
    }

    #[test]
    fn context_takeover_sends_every_longer_message_compressed_and_short_ones_plain() {
        let mut compressor = Compressor::new(CONTEXT);
        assert_eq!(compressor.shared_window_bits(), None);
        assert_eq!(compressor.compress(b"short"), None);
        let mut decompressor = Decompressor::new(CONTEXT);
        for _ in 0..3 {
            let text = b"{\"id\":\"k3f9-17\",\"text\":\"the same text again\",\"time\":1700000000000}";
            let compressed = compressor.compress(text).unwrap();
            let mut out = Vec::new();
            decompressor.inflate(&compressed, &mut out, 1000).unwrap();
            decompressor.finish_message(&mut out, 1000).unwrap();
            assert_eq!(out, text);
        }
        assert!(compressor.retained_bytes() > 0 && decompressor.retained_bytes() > 0);
        assert_eq!(Compressor::new(NO_CONTEXT).shared_window_bits(), Some(15));
    }

    #[test]
    fn shared_compression_compresses_a_message_once_per_window() {
        let shared = SharedCompression::<String>::default();
        let message = Arc::new("hello hello hello hello hello hello".to_string());
        let first = shared.get(&message, message.as_bytes(), 15);
        let again = shared.get(&message, message.as_bytes(), 15);
        assert!(Arc::ptr_eq(&first, &again), "the second delivery reuses the first's bytes");
        let narrow = shared.get(&message, message.as_bytes(), 9);
        assert_eq!(*narrow, compress_message(message.as_bytes(), 9));
        let other = Arc::new("another message, another message, another".to_string());
        assert_eq!(*shared.get(&other, other.as_bytes(), 15), compress_message(other.as_bytes(), 15));
    }
}
