//! Waking an event loop from another thread.
//!
//! An event-loop worker sleeps in [`Poller::wait`](super::poller::Poller::wait), and only a
//! ready descriptor wakes it. When another thread has work for it (the broker published a
//! message a parked long poll is waiting for, or the server is shutting down), that thread
//! needs a descriptor of its own to make ready. A [`Notifier`] is that descriptor:
//!
//! 1. the worker registers [`Notifier::as_fd`] for readable interest, once;
//! 2. another thread queues its work somewhere shared (a `Mutex<Vec<_>>`), then calls
//!    [`Notifier::notify`], which makes the descriptor readable;
//! 3. the worker's wait returns the notifier's token; it calls [`Notifier::drain`], which
//!    makes the descriptor quiet again, and *then* takes the queued work.
//!
//! The order in step 3 matters. Work queued before a `drain` is found by the look at the queue
//! after it; work queued after it comes with a `notify` that makes the descriptor readable
//! again. Looking at the queue first would lose work queued between the look and the drain.
//!
//! Notifications do not count: ten calls to `notify` before the worker wakes are one wake-up.
//! That is why `notify` never blocks: if the counter or socket buffer is full, a wake-up is
//! certainly pending already, and that is all the caller wants.
//!
//! Linux uses an eventfd (eventfd(2)): one descriptor holding a 64-bit counter, readable while
//! it is non-zero. Elsewhere a connected pair of Unix sockets does the job: one byte written to
//! one end makes the other readable.
//!
//! Cost: every `notify` is one `write(2)`. A fan-out that wakes the same worker for many
//! subscribers should notify once, when its queue goes from empty to non-empty.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use crate::server::sys::os;

/// How many bytes one `drain` reads from the socket pair per `read(2)`.
///
/// Each pending `notify` is one byte; a buffer this size empties a socket that has seen a
/// thousand notifications since the last drain in one call.
pub const DRAIN_BUFFER_BYTES: usize = 1024;

/// At most this many reads per `drain`, so that a thread calling `notify` in a tight loop
/// cannot keep the worker draining forever. Bytes left over keep the descriptor readable
/// (the poller is level-triggered), so the next wait drains the rest.
pub const MAX_DRAIN_READS: usize = 8;

/// A descriptor that any thread can make readable to wake the poller it is registered with.
///
/// `Send + Sync`: share it in an `Arc` between the worker and the threads that wake it.
#[derive(Debug)]
pub struct Notifier {
    channel: Channel,
}

#[derive(Debug)]
enum Channel {
    /// Linux: the worker registers and reads the same descriptor that others write.
    EventFd(os::EventFd),
    /// Elsewhere: others write to `sender`, the worker registers and reads `receiver`.
    SocketPair { sender: UnixStream, receiver: UnixStream },
}

impl Notifier {
    /// An eventfd on Linux, a socket pair elsewhere.
    pub fn new() -> io::Result<Notifier> {
        if cfg!(target_os = "linux") {
            Ok(Notifier { channel: Channel::EventFd(os::EventFd::new()?) })
        } else {
            Notifier::socket_pair()
        }
    }

    /// The portable version, on any Unix (also on Linux, where the tests use it).
    pub fn socket_pair() -> io::Result<Notifier> {
        let (sender, receiver) = UnixStream::pair()?;
        // Non-blocking on both ends: a full buffer must not stall `notify`, an empty one must
        // not stall `drain`.
        sender.set_nonblocking(true)?;
        receiver.set_nonblocking(true)?;
        Ok(Notifier { channel: Channel::SocketPair { sender, receiver } })
    }

    /// Makes the descriptor readable. Callable from any thread; never blocks.
    ///
    /// Errors are only those of a broken descriptor, which cannot happen while `self` lives;
    /// a full counter or buffer is not one (the wake-up is pending already).
    pub fn notify(&self) -> io::Result<()> {
        let written = match &self.channel {
            Channel::EventFd(eventfd) => eventfd.add(1),
            Channel::SocketPair { sender, .. } => (&*sender).write(&[1]).map(|_| ()),
        };
        match written {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// Makes the descriptor quiet again. Call it when the poller reports it readable, before
    /// taking the queued work (see the module documentation).
    ///
    /// Finding nothing to read is not an error: the wake-up may have been drained already.
    pub fn drain(&self) -> io::Result<()> {
        match &self.channel {
            // One read takes the whole counter and resets it to zero.
            Channel::EventFd(eventfd) => match eventfd.take() {
                Err(error) if error.kind() != io::ErrorKind::WouldBlock => Err(error),
                _ => Ok(()),
            },
            Channel::SocketPair { receiver, .. } => drain_socket(receiver),
        }
    }
}

/// Reads and discards pending notification bytes, within `MAX_DRAIN_READS` reads.
fn drain_socket(receiver: &UnixStream) -> io::Result<()> {
    let mut buffer = [0u8; DRAIN_BUFFER_BYTES];
    for _ in 0..MAX_DRAIN_READS {
        match (&*receiver).read(&mut buffer) {
            // End-of-file cannot happen while `sender` lives; stop rather than spin if it did.
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

impl AsFd for Notifier {
    /// The descriptor to register for readable interest.
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.channel {
            Channel::EventFd(eventfd) => eventfd.as_fd(),
            Channel::SocketPair { receiver, .. } => receiver.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;
    use crate::server::poller::{Interest, Poller};
    use std::sync::Arc;
    use std::time::Duration;

    const READY_WITHIN: Option<Duration> = Some(Duration::from_secs(5));
    const QUIET_FOR: Option<Duration> = Some(Duration::from_millis(20));

    fn notifiers() -> Vec<Notifier> {
        vec![Notifier::new().unwrap(), Notifier::socket_pair().unwrap()]
    }

    /// Whether the notifier's descriptor is readable now (or within `timeout`).
    fn is_readable(notifier: &Notifier, timeout: Option<Duration>) -> bool {
        let mut poller = Poller::new(Backend::Poll).unwrap();
        poller.register(notifier.as_fd(), 0, Interest::READABLE).unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, timeout).unwrap();
        !ready.is_empty()
    }

    #[test]
    fn a_notifier_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Notifier>();
    }

    #[test]
    fn a_new_notifier_is_quiet() {
        for notifier in notifiers() {
            assert!(!is_readable(&notifier, QUIET_FOR), "{notifier:?}");
        }
    }

    #[test]
    fn notify_makes_it_readable_and_drain_makes_it_quiet() {
        for notifier in notifiers() {
            notifier.notify().unwrap();
            assert!(is_readable(&notifier, READY_WITHIN), "{notifier:?}");
            notifier.drain().unwrap();
            assert!(!is_readable(&notifier, QUIET_FOR), "{notifier:?}");
        }
    }

    #[test]
    fn many_notifications_are_one_wakeup_and_one_drain() {
        for notifier in notifiers() {
            for _ in 0..100 {
                notifier.notify().unwrap();
            }
            notifier.drain().unwrap();
            assert!(!is_readable(&notifier, QUIET_FOR), "{notifier:?}");
        }
    }

    #[test]
    fn drain_with_nothing_pending_is_not_an_error() {
        for notifier in notifiers() {
            notifier.drain().unwrap();
        }
    }

    #[test]
    fn notify_never_blocks_even_when_the_buffer_is_full() {
        // A Unix socket's send buffer fills after a few hundred one-byte writes; far more
        // notifications than that must all return at once and successfully.
        let notifier = Notifier::socket_pair().unwrap();
        for _ in 0..10_000 {
            notifier.notify().unwrap();
        }
        // Level-triggered: whatever one bounded drain leaves is drained by the next ones.
        for _ in 0..100 {
            notifier.drain().unwrap();
            if !is_readable(&notifier, Some(Duration::ZERO)) {
                return;
            }
        }
        panic!("a full socket pair was not drained by 100 drains");
    }

    #[test]
    fn notify_from_another_thread_wakes_a_poller_blocked_forever() {
        for notifier in notifiers() {
            let notifier = Arc::new(notifier);
            let mut poller = Poller::new(Backend::native()).unwrap();
            poller.register(notifier.as_fd(), 42, Interest::READABLE).unwrap();
            let remote = Arc::clone(&notifier);
            let waker = std::thread::spawn(move || remote.notify().unwrap());
            let mut ready = Vec::new();
            poller.wait(&mut ready, None).unwrap();
            assert_eq!(ready[0].token, 42);
            waker.join().unwrap();
        }
    }
}
