//! HMAC-SHA-256 (RFC 2104) and the constant-time comparison that checking a MAC needs.
//!
//! # Theory of operation
//!
//! A hash alone is no signature: anyone can hash. HMAC mixes a secret key into the hash twice,
//!
//! ```text
//! HMAC(K, text) = H(K XOR opad, H(K XOR ipad, text))
//! ```
//!
//! where K is the key padded with zeros to the hash's block size B (64 bytes for SHA-256), and
//! ipad and opad are two fixed bytes repeated B times. The inner hash binds the key to the
//! message; the outer hash, keyed again, is what stops the length-extension trick that a plain
//! `H(K || text)` over a Merkle-Damgård hash like SHA-256 would allow. Without the key, a valid
//! MAC for a new message cannot be computed; with it, checking is computing the MAC again and
//! comparing.
//!
//! That comparison is where implementations leak. `==` on byte slices stops at the first
//! difference, so its running time tells an attacker how many leading bytes of a forged MAC
//! were right, and lets them find a valid one byte by byte. [`constant_time_eq`] looks at every
//! byte whatever it finds (RFC 7518 §3.2 requires this for JWS: "The comparison of the computed
//! HMAC value to the JWS Signature value MUST be done in a constant-time manner to thwart
//! timing attacks.").
//!
//! [`sha256`] has no secret-dependent branches or table lookups, so hashing the key is safe
//! too (see [`super::sha256`]).

#![forbid(unsafe_code)]

use super::sha256::{sha256, BLOCK_BYTES, DIGEST_BYTES};

/// RFC 2104 §2: "ipad = the byte 0x36 repeated B times".
const IPAD: u8 = 0x36;

/// RFC 2104 §2: "opad = the byte 0x5C repeated B times".
const OPAD: u8 = 0x5c;

/// The HMAC-SHA-256 of `message` under `key` (RFC 2104 §2 with SHA-256 as H, B = 64, L = 32).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; DIGEST_BYTES] {
    // RFC 2104 §2: "Applications that use keys longer than B bytes will first hash the key
    // using H and then use the resultant L byte string as the actual key to HMAC."
    // Step (1): "append zeros to the end of K to create a B byte string".
    let mut block_key = [0u8; BLOCK_BYTES];
    if key.len() > BLOCK_BYTES {
        block_key[..DIGEST_BYTES].copy_from_slice(&sha256(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }

    // Steps (2) to (4): H(K XOR ipad, text).
    let mut inner = Vec::with_capacity(BLOCK_BYTES + message.len());
    inner.extend(block_key.iter().map(|byte| byte ^ IPAD));
    inner.extend_from_slice(message);
    let inner_hash = sha256(&inner);

    // Steps (5) to (7): H(K XOR opad, inner hash).
    let mut outer = Vec::with_capacity(BLOCK_BYTES + DIGEST_BYTES);
    outer.extend(block_key.iter().map(|byte| byte ^ OPAD));
    outer.extend_from_slice(&inner_hash);
    sha256(&outer)
}

/// Whether `given` equals `expected`, in a time that depends only on the length of `expected`,
/// never on where the first difference is. A length mismatch is `false`, but every byte of
/// `expected` is still visited, so a short guess takes as long as a right one.
///
/// The loop has no data-dependent branch; [`std::hint::black_box`] hides the running
/// difference from the optimizer, so that it cannot add one (stopping once every bit is set).
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (index, &byte) in expected.iter().enumerate() {
        // Past the end of `given`, compare against `!byte`: a difference, with the same work.
        difference = std::hint::black_box(difference | (byte ^ given.get(index).copied().unwrap_or(!byte)));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // RFC 4231 §4: the HMAC-SHA-256 values of its seven test cases. Each test is named after
    // its section and says what the case exercises.

    #[test]
    fn rfc4231_4_2_test_case_1_a_20_byte_key() {
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(hex(&mac), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    }

    #[test]
    fn rfc4231_4_3_test_case_2_a_key_shorter_than_the_output() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn rfc4231_4_4_test_case_3_combined_length_of_key_and_data_over_64_bytes() {
        let mac = hmac_sha256(&[0xaa; 20], &[0xdd; 50]);
        assert_eq!(hex(&mac), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    }

    #[test]
    fn rfc4231_4_5_test_case_4_combined_length_over_64_bytes_with_a_counting_key() {
        let key: Vec<u8> = (0x01..=0x19).collect();
        let mac = hmac_sha256(&key, &[0xcd; 50]);
        assert_eq!(hex(&mac), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    }

    #[test]
    fn rfc4231_4_6_test_case_5_truncation_to_128_bits() {
        // The RFC gives only the leftmost 128 bits for this case.
        let mac = hmac_sha256(&[0x0c; 20], b"Test With Truncation");
        assert_eq!(hex(&mac[..16]), "a3b6167473100ee06e0c796c2955552b");
    }

    #[test]
    fn rfc4231_4_7_test_case_6_a_131_byte_key_is_hashed_first() {
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn rfc4231_4_8_test_case_7_a_131_byte_key_and_data_longer_than_a_block() {
        let message = b"This is a test using a larger than block-size key and a larger than block-size data. \
                        The key needs to be hashed before being used by the HMAC algorithm.";
        let mac = hmac_sha256(&[0xaa; 131], message);
        assert_eq!(hex(&mac), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
    }

    #[test]
    fn rfc2104_2_a_key_of_exactly_b_bytes_is_used_as_it_is_and_one_more_byte_is_hashed() {
        // 64 bytes: padded with no zeros, not hashed. 65 bytes: hashed to 32, then padded.
        let block = [0x42u8; 64];
        let mut padded_digest = [0u8; 64];
        padded_digest[..32].copy_from_slice(&sha256(&[0x42; 65]));
        assert_eq!(hmac_sha256(&[0x42; 65], b"m"), hmac_sha256(&padded_digest, b"m"));
        assert_ne!(hmac_sha256(&block, b"m"), hmac_sha256(&sha256(&block), b"m"));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"Secret", b"secret"));
    }

    #[test]
    fn constant_time_eq_refuses_a_length_mismatch_even_when_one_is_a_prefix() {
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"secrets", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
    }
}
