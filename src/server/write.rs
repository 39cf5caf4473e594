//! Writing a connection's output to its socket, the same way on both server models.
//!
//! The [`Connection`] decides what is owed and when a client that does not take it is a slow
//! consumer; a driver only moves bytes. [`flush`] is that move, written once: write until
//! nothing is owed, the socket would block (the event loop's non-blocking sockets) or a write
//! waited until the connection's next deadline (the thread model's blocking sockets, whose
//! write timeout is that deadline), and tell the connection each time what went. Either way
//! the driver then advances the connection, which acts on the deadline.
//!
//! The drivers differ only in how they lend the output ([`Outbox`]): the event loop owns its
//! connections and writes straight from the output buffer; a thread-model connection is shared
//! with a WebSocket's reading thread, so a slice is copied out under its lock and written with
//! the lock released.
//!
//! And both close the same way: after the last response, our sending side is shut and the
//! socket read (and discarded) for at most [`LINGER_TIME`] and [`LINGER_BYTES`], so that the
//! client reads the response instead of a reset.

#![forbid(unsafe_code)]

use std::io::{self, ErrorKind, Write};
use std::time::Duration;

use crate::connection::Connection;

/// How long a closing connection keeps reading (and discarding) after its last response, and
/// how much, on both models. Closing with unread input makes the kernel send a reset that can
/// destroy the response before the client reads it (RFC 9112 §9.6 on closing "in stages").
pub const LINGER_TIME: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 256 * 1024;

/// How a driver lends a connection's output to [`flush`].
pub trait Outbox {
    /// The next bytes to write, or `None` when nothing is owed.
    fn next_bytes(&mut self) -> Option<&[u8]>;

    /// `n` of those bytes were written, just now: each driver reads its own clock (a
    /// non-blocking write takes the time of its turn; a blocking one, the time after it).
    fn wrote(&mut self, n: usize);
}

/// Writes what `outbox` owes to `socket` until nothing is owed, or the socket would block or
/// timed out; returns whether anything was written. An error means the client is gone.
pub fn flush(socket: &mut impl Write, outbox: &mut impl Outbox) -> io::Result<bool> {
    let mut wrote = false;
    loop {
        let Some(bytes) = outbox.next_bytes() else { return Ok(wrote) };
        match socket.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                outbox.wrote(n);
                wrote = true;
            }
            // Owed bytes are left: the connection's next deadline decides what that means.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(wrote),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A connection the driver owns lends its output buffer as it is.
impl Outbox for Connection {
    fn next_bytes(&mut self) -> Option<&[u8]> {
        let output = self.output();
        (!output.is_empty()).then_some(output)
    }

    fn wrote(&mut self, n: usize) {
        self.consume_output_in_this_turn(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owes `owed` bytes and records what it was told went.
    struct Owed {
        owed: Vec<u8>,
        written: usize,
    }

    impl Outbox for Owed {
        fn next_bytes(&mut self) -> Option<&[u8]> {
            (self.written < self.owed.len()).then(|| &self.owed[self.written..])
        }

        fn wrote(&mut self, n: usize) {
            self.written += n;
        }
    }

    /// A socket that takes `per_write` bytes a call, `capacity` in all, then fails with `full`.
    struct Socket {
        taken: Vec<u8>,
        per_write: usize,
        capacity: usize,
        full: ErrorKind,
    }

    impl Write for Socket {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let room = self.capacity - self.taken.len();
            if room == 0 {
                return Err(self.full.into());
            }
            let n = bytes.len().min(self.per_write).min(room);
            self.taken.extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn everything_owed_is_written_across_short_writes() {
        let mut outbox = Owed { owed: (0..=255).collect(), written: 0 };
        let mut socket = Socket { taken: Vec::new(), per_write: 7, capacity: 1 << 20, full: ErrorKind::WouldBlock };
        assert!(flush(&mut socket, &mut outbox).unwrap());
        assert_eq!(socket.taken, outbox.owed);
        assert!(!flush(&mut socket, &mut outbox).unwrap(), "nothing owed, nothing written");
    }

    #[test]
    fn a_full_socket_leaves_the_rest_owed_for_the_connection_to_judge() {
        for full in [ErrorKind::WouldBlock, ErrorKind::TimedOut] {
            let mut outbox = Owed { owed: vec![1; 100], written: 0 };
            let mut socket = Socket { taken: Vec::new(), per_write: 30, capacity: 40, full };
            assert!(flush(&mut socket, &mut outbox).unwrap(), "{full:?}");
            assert_eq!(outbox.written, 40, "{full:?}");
        }
    }

    #[test]
    fn a_socket_that_fails_or_takes_nothing_means_the_client_is_gone() {
        let mut outbox = Owed { owed: vec![1; 10], written: 0 };
        let mut broken = Socket { taken: Vec::new(), per_write: 0, capacity: 10, full: ErrorKind::BrokenPipe };
        assert_eq!(flush(&mut broken, &mut outbox).unwrap_err().kind(), ErrorKind::WriteZero);
        let mut reset = Socket { taken: Vec::new(), per_write: 1, capacity: 0, full: ErrorKind::ConnectionReset };
        assert_eq!(flush(&mut reset, &mut outbox).unwrap_err().kind(), ErrorKind::ConnectionReset);
    }
}
