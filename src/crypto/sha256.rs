//! SHA-256 (FIPS 180-4 §6.2), written out so that the product needs no new dependency for it.
//! Two users: the demo page's Content-Security-Policy names its inline script and style by
//! hash (`demo`), and HMAC-SHA-256 (`crypto::hmac`) signs and checks channel tokens (`token`)
//! under a secret key.
//!
//! It is written to be read, not to be fast: the message is padded (§5.1.1), cut into 64-byte
//! blocks (§5.2.1), and each block goes through the 64 rounds of the compression function
//! (§6.2.2). The inputs are small (a page of some 40 KB once per process; a token of at most a
//! few KB per request), so clarity costs nothing that matters.
//!
//! Is it fit to hash secrets? Timing side channels come from branches and memory lookups whose
//! choice depends on secret data. SHA-256 has neither: every round is the same additions,
//! rotations, shifts and boolean functions on 32-bit words, the round constants are read in
//! a fixed order, and the only branches (the padding loop, the block loop) depend on the
//! message *length*, which is public. So the same code serves HMAC over a secret key.

#![forbid(unsafe_code)]

/// The first 32 bits of the fractional parts of the square roots of the first 8 primes
/// (FIPS 180-4 §5.3.3).
const INITIAL_HASH: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// The first 32 bits of the fractional parts of the cube roots of the first 64 primes
/// (FIPS 180-4 §4.2.2).
const ROUND_CONSTANTS: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// Bytes in one block of the message schedule (FIPS 180-4 §1: a 512-bit block). HMAC needs
/// it too: RFC 2104's B.
pub const BLOCK_BYTES: usize = 64;

/// Bytes in a digest (FIPS 180-4 §1: a 256-bit message digest). RFC 2104's L.
pub const DIGEST_BYTES: usize = 32;

/// The SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; DIGEST_BYTES] {
    // §5.1.1: append the bit "1", then zeros until the length is 448 mod 512 bits, then the
    // message length in bits as a 64-bit big-endian integer.
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % BLOCK_BYTES != BLOCK_BYTES - 8 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());

    let mut hash = INITIAL_HASH;
    for block in message.chunks_exact(BLOCK_BYTES) {
        compress(&mut hash, block);
    }
    let mut digest = [0u8; DIGEST_BYTES];
    for (out, word) in digest.chunks_exact_mut(4).zip(hash) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// One application of the compression function to a 64-byte block (§6.2.2).
fn compress(hash: &mut [u32; 8], block: &[u8]) {
    // Step 1: the message schedule, 16 words from the block and 48 mixed from earlier ones.
    let mut schedule = [0u32; 64];
    for (word, bytes) in schedule.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..64 {
        let s0 = schedule[t - 15].rotate_right(7) ^ schedule[t - 15].rotate_right(18) ^ (schedule[t - 15] >> 3);
        let s1 = schedule[t - 2].rotate_right(17) ^ schedule[t - 2].rotate_right(19) ^ (schedule[t - 2] >> 10);
        schedule[t] = schedule[t - 16].wrapping_add(s0).wrapping_add(schedule[t - 7]).wrapping_add(s1);
    }

    // Steps 2 and 3: 64 rounds over the working variables a..h.
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *hash;
    for t in 0..64 {
        let sum1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let choose = (e & f) ^ (!e & g);
        let temp1 =
            h.wrapping_add(sum1).wrapping_add(choose).wrapping_add(ROUND_CONSTANTS[t]).wrapping_add(schedule[t]);
        let sum0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let majority = (a & b) ^ (a & c) ^ (b & c);
        let temp2 = sum0.wrapping_add(majority);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(temp1);
        d = c;
        c = b;
        b = a;
        a = temp1.wrapping_add(temp2);
    }

    // Step 4: add the block's result to the running hash.
    for (word, value) in hash.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: [u8; 32]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fips_180_2_appendix_b_1_one_block() {
        assert_eq!(hex(sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn fips_180_2_appendix_b_2_the_448_bit_message_takes_two_blocks() {
        let message = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(sha256(message)), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }

    #[test]
    fn empty_input_and_the_padding_boundaries() {
        assert_eq!(hex(sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        // 55 bytes is the longest message whose padding fits in one block; 56 needs two.
        assert_eq!(hex(sha256(&[b'a'; 55])), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
        assert_eq!(hex(sha256(&[b'a'; 56])), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    }

    #[test]
    fn fips_180_2_appendix_b_3_a_million_a() {
        let message = vec![b'a'; 1_000_000];
        assert_eq!(hex(sha256(&message)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
}
