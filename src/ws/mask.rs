//! Masking (RFC 6455 §5.3): the XOR that every client-to-server payload goes through.
//!
//! RFC 6455 §5.3: "Octet i of the transformed data ("transformed-octet-i") is the XOR of octet
//! i of the original data ("original-octet-i") with octet at index i modulo 4 of the masking key
//! ("masking-key-octet-j")". XOR is its own inverse, so one function both masks (a client
//! sending) and unmasks (a server receiving).
//!
//! Why masking exists at all (§10.3): a script in a browser chooses the payload, but it must not
//! choose the bytes on the wire, or it could write something that a confused proxy reads as an
//! HTTP request and caches. The client picks a fresh unpredictable key for every frame, so the
//! script cannot know what its bytes will look like. It is not encryption: the key travels in
//! the frame header.
//!
//! Two practical points shape the code:
//!
//! - Payloads arrive in pieces (a frame split across two socket reads), so [`apply_mask`] takes
//!   `offset`, the position of `payload[0]` within the frame's payload. Byte `i` of the piece is
//!   byte `offset + i` of the payload and uses key byte `(offset + i) % 4`.
//! - A server unmasks every byte a client sends, so speed matters. Repeating the 4-byte key
//!   twice gives an 8-byte word; XOR with a `u64` then handles 8 payload bytes in one
//!   operation (and the compiler turns the loop into SIMD). A long payload is first taken a
//!   byte at a time up to an 8-byte boundary, so that the vector loads do not straddle cache
//!   lines; a short one (most messages) starts its words at its first byte, wherever that lies
//!   (x86-64 and AArch64 load unaligned words at full speed, and the byte loop cost a 32-byte
//!   echo 6% of its instructions). The ragged end after the last whole word is done a byte at
//!   a time. This is all safe code: `from_ne_bytes`/`to_ne_bytes` compile to plain loads and
//!   stores.

#![forbid(unsafe_code)]

/// Payload bytes XORed at once in the fast loop: one `u64`.
const WORD_BYTES: usize = 8;

/// From this many bytes on, the words are lined up with memory first (see the module docs).
const ALIGNED_FROM: usize = 256;

/// XORs `payload` with the masking `key` (RFC 6455 §5.3), in place.
///
/// `offset` is the position of `payload[0]` within the whole frame payload, so that a payload
/// processed in several pieces gets the same result as one processed at once.
pub fn apply_mask(payload: &mut [u8], key: [u8; 4], offset: usize) {
    // After rotating, key[0] is the key byte for payload[0].
    let key = rotate(key, offset);

    // A long payload byte by byte up to the first 8-byte boundary. `align_offset` may answer
    // "cannot tell" with usize::MAX; `min` turns that into "all byte-wise", which is correct,
    // only slower.
    let head_len = match payload.len() {
        len if len >= ALIGNED_FROM => payload.as_ptr().align_offset(WORD_BYTES).min(len),
        _ => 0,
    };
    let (head, body) = payload.split_at_mut(head_len);
    apply_mask_bytewise(head, key);

    let key = rotate(key, head_len);
    let key_word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut words = body.chunks_exact_mut(WORD_BYTES);
    for word in &mut words {
        let mut bytes = [0u8; WORD_BYTES];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ key_word).to_ne_bytes());
    }
    // Every word used the key exactly twice, so the tail starts at key[0] again.
    apply_mask_bytewise(words.into_remainder(), key);
}

/// The textbook loop: one XOR per byte. Used for the edges, and as the reference in tests.
fn apply_mask_bytewise(bytes: &mut [u8], key: [u8; 4]) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// The key as seen from `by` bytes further into the payload.
fn rotate(mut key: [u8; 4], by: usize) -> [u8; 4] {
    key.rotate_left(by % 4);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition in RFC 6455 §5.3, written as plainly as possible.
    fn naive_mask(payload: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        // RFC 6455 §5.7: "0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 (contains
        // "Hello")": the key is 37 fa 21 3d and the masked payload 7f 9f 4d 51 58.
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello", "masking twice restores the payload");
    }

    #[test]
    fn rfc6455_5_3_masking_in_pieces_equals_masking_at_once() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut whole = *b"Hello, WebSocket world!";
        apply_mask(&mut whole, key, 0);
        for split in 0..=whole.len() {
            let mut pieces = *b"Hello, WebSocket world!";
            let (first, second) = pieces.split_at_mut(split);
            apply_mask(first, key, 0);
            apply_mask(second, key, split);
            assert_eq!(pieces, whole, "split at {split}");
        }
    }

    #[test]
    fn word_loop_equals_naive_loop_at_every_offset_length_and_alignment() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        let original: Vec<u8> = (0..ALIGNED_FROM as u32 + 100).map(|i| (i * 37 + 11) as u8).collect();
        for alignment in 0..WORD_BYTES {
            // Short payloads (words from the first byte) and long ones (lined up first).
            for len in (0..80).chain(ALIGNED_FROM - 8..ALIGNED_FROM + 80) {
                for offset in 0..8 {
                    let mut fast = original.clone();
                    let mut slow = original.clone();
                    apply_mask(&mut fast[alignment..alignment + len], key, offset);
                    naive_mask(&mut slow[alignment..alignment + len], key, offset);
                    assert_eq!(fast, slow, "alignment {alignment} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn large_offsets_wrap_around_the_key() {
        let key = [1, 2, 3, 4];
        let mut fast = [0u8; 9];
        let mut slow = [0u8; 9];
        apply_mask(&mut fast, key, usize::MAX);
        naive_mask(&mut slow, key, usize::MAX % 4);
        assert_eq!(fast, slow);
    }
}
