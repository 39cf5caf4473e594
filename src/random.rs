//! Unpredictable bytes from the operating system.
//!
//! Two things in the protocol need them: the broker's epoch (so that a cursor from before a
//! restart is recognised as foreign) and the WebSocket client's masking keys, which RFC 6455
//! §5.3 requires to be "derived from a strong source of entropy". Reading `/dev/urandom` gives
//! that without a `rand` dependency; a buffered reader keeps it to one system call per 4 KiB.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Read};

/// How many random bytes one read of `/dev/urandom` fetches for a [`RandomSource`].
const REFILL_BYTES: usize = 4096;

/// Fills `buf` with bytes from `/dev/urandom`.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

/// A buffered source of OS randomness, for callers that need many small values (masking keys).
pub struct RandomSource {
    file: File,
    buf: Box<[u8; REFILL_BYTES]>,
    used: usize,
}

impl RandomSource {
    pub fn new() -> io::Result<RandomSource> {
        Ok(RandomSource { file: File::open("/dev/urandom")?, buf: Box::new([0; REFILL_BYTES]), used: REFILL_BYTES })
    }

    /// Four fresh bytes, e.g. a WebSocket masking key.
    ///
    /// If `/dev/urandom` stops answering (it does not, short of a broken system), the bytes
    /// come from a SplitMix64 generator seeded with the last random bytes: still unpredictable
    /// to a peer, and a masking key must never be withheld.
    pub fn next_u32_bytes(&mut self) -> [u8; 4] {
        if self.used + 4 > REFILL_BYTES {
            if self.file.read_exact(&mut self.buf[..]).is_err() {
                let mut state = u64::from_le_bytes(self.buf[..8].try_into().unwrap_or([0; 8]));
                for chunk in self.buf.chunks_exact_mut(8) {
                    state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
                }
            }
            self.used = 0;
        }
        let mut out = [0; 4];
        out.copy_from_slice(&self.buf[self.used..self.used + 4]);
        self.used += 4;
        out
    }
}
