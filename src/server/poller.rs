//! Readiness: which of many non-blocking sockets can make progress now.
//!
//! An event loop holds thousands of non-blocking sockets on one thread. It cannot read each in
//! turn (most have nothing to say), so it asks the kernel which ones are *ready*: readable
//! (bytes to read, a connection to accept, or end-of-file) or writable (room in the send
//! buffer). [`Poller::wait`] sleeps until at least one is, and returns them with the *token*
//! the loop chose at [`Poller::register`] (an index into its table of connections).
//!
//! ## Two backends, and why epoll exists
//!
//! - [`Backend::Poll`], poll(2), on every Unix. The loop keeps the list of descriptors and
//!   hands all of it to the kernel on every wait; the kernel checks each one and writes back
//!   what it found; the loop scans the list for the ready ones. Cost per wait: O(registered).
//!   With 10,000 idle connections and one active, every wait copies 80 KB in and out and
//!   checks 10,000 sockets to find one.
//! - [`Backend::Epoll`], Linux. The list lives in the kernel (epoll(7): "the interest list"),
//!   changed only when the loop registers, modifies or removes a descriptor. A socket that
//!   becomes ready puts itself on the instance's "ready list", and `epoll_wait` copies out
//!   only that. Cost per wait: O(ready), however many are registered.
//!
//! `examples/poll_vs_epoll.rs` measures the difference.
//!
//! ## Level-triggered, in both backends
//!
//! Level-triggered means a descriptor is reported on *every* wait while its condition holds:
//! unread bytes make it readable until they are read. (Edge-triggered epoll reports only
//! changes, so a loop that reads part of the input and waits again can hang forever; epoll(7)
//! walks through exactly that.) Level-triggered is the simpler choice for a teaching codebase:
//! - a partial read or write is fine: whatever is left is reported again on the next wait, so
//!   the loop may stop after one read to be fair to other connections;
//! - it is poll(2)'s own semantics (epoll(7): "epoll is simply a faster poll(2)"), so both
//!   backends behave the same and one event loop serves both;
//! - a mistake shows up as a busy loop (visible in `top`) rather than a silent hang.
//!
//! What it asks of the event loop in return: never keep an interest it will not act on, or
//! every wait returns at once and the thread spins.
//! - Ask for *writable* only while output is queued. A healthy socket's send buffer almost
//!   always has room, so writable interest with nothing to write wakes the loop every time.
//! - Drop *readable* while the loop will not read (its input buffer is full, or it is waiting
//!   for the response to drain first). Unread bytes stay readable forever.
//!
//! ## Rules for the caller
//!
//! - Deregister before closing. epoll(7): "A file descriptor is removed from an interest list
//!   only after all the file descriptors referring to the underlying open file description
//!   have been closed". With poll(2), a closed descriptor's number may be reused by the next
//!   `accept`, and it would be reported under the old token.
//! - `hangup` and `error` can come without being asked for (the kernel always reports them).
//!   Answer them by reading (which returns end-of-file or the error) or by closing.
//! - A wait may return no events before its timeout when a signal interrupts it (see `sys`):
//!   the loop must decide what timed out from its clock, never from an empty wait.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{c_int, c_short};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::config::Backend;
use crate::server::sys::os;

/// At most this many events are taken from the kernel per [`Poller::wait`] (epoll backend).
///
/// 1024 events are 12 KiB (x86_64) or 16 KiB (aarch64), allocated once. A bound keeps one loop
/// iteration short, so the timers and the wake-up descriptor are looked at between batches
/// even under load. Nothing is lost beyond it: level-triggered descriptors stay on the ready
/// list, and epoll moves reported ones to the back, so the next wait returns the rest first.
pub const MAX_EVENTS_PER_WAIT: usize = 1024;

/// What a registered descriptor should be watched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub readable: bool,
    pub writable: bool,
}

impl Interest {
    pub const READABLE: Interest = Interest { readable: true, writable: false };
    pub const WRITABLE: Interest = Interest { readable: false, writable: true };
    pub const BOTH: Interest = Interest { readable: true, writable: true };
    /// Registered but asking for nothing: only `hangup` and `error` are reported. For a
    /// connection that is paused in both directions.
    pub const NONE: Interest = Interest { readable: false, writable: false };
}

/// One ready descriptor, as a wait found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The token given when the descriptor was registered (or last modified).
    pub token: usize,
    /// A read will not block: it returns bytes, a new connection, end-of-file or an error.
    pub readable: bool,
    /// A write will not block.
    pub writable: bool,
    /// The peer closed the connection or its writing half. Buffered bytes may still be waiting:
    /// read until end-of-file before closing. Off Linux only a full hang-up is reported.
    pub hangup: bool,
    /// An error is pending on the socket; the next read or write (or `take_error`) returns it.
    pub error: bool,
}

/// Readiness for many descriptors, level-triggered. See the module documentation.
#[derive(Debug)]
pub struct Poller {
    backend: BackendState,
}

#[derive(Debug)]
enum BackendState {
    Epoll(EpollSet),
    Poll(PollSet),
}

/// The epoll backend: the interest list is in the kernel; we keep only the event buffer.
struct EpollSet {
    epoll: OwnedFd,
    /// Reused by every wait so that waiting allocates nothing; `MAX_EVENTS_PER_WAIT` long.
    events: Vec<os::EpollEvent>,
}

/// The poll(2) backend: the interest list is ours and goes to the kernel on every wait.
#[derive(Debug)]
struct PollSet {
    /// The array poll(2) reads and writes, one entry per registered descriptor.
    fds: Vec<os::PollFd>,
    /// `tokens[i]` is the token of `fds[i]`; a parallel vector keeps `fds` exactly the layout
    /// poll(2) wants.
    tokens: Vec<usize>,
    /// Where each descriptor sits in `fds`, so that modify and deregister are O(1).
    index_of: HashMap<RawFd, usize>,
}

impl Poller {
    /// A poller with nothing registered. `Backend::Epoll` fails with `Unsupported` off Linux.
    pub fn new(backend: Backend) -> io::Result<Poller> {
        let backend = match backend {
            Backend::Epoll => BackendState::Epoll(EpollSet {
                epoll: os::epoll_create()?,
                events: vec![os::EpollEvent::new(0, 0); MAX_EVENTS_PER_WAIT],
            }),
            Backend::Poll => {
                BackendState::Poll(PollSet { fds: Vec::new(), tokens: Vec::new(), index_of: HashMap::new() })
            }
        };
        Ok(Poller { backend })
    }

    pub fn backend(&self) -> Backend {
        match self.backend {
            BackendState::Epoll(_) => Backend::Epoll,
            BackendState::Poll(_) => Backend::Poll,
        }
    }

    /// Starts watching `fd`, reporting it as `token`. Fails with `AlreadyExists` if `fd` is
    /// registered already. `fd` must stay open until it is deregistered.
    pub fn register(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> io::Result<()> {
        match &mut self.backend {
            BackendState::Epoll(set) => {
                os::epoll_add(set.epoll.as_fd(), fd, os::EpollEvent::new(epoll_events(interest), token_to_data(token)))
            }
            BackendState::Poll(set) => set.register(fd, token, interest),
        }
    }

    /// Changes what a registered `fd` is watched for, and its token. Fails with `NotFound` if
    /// `fd` is not registered.
    pub fn modify(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> io::Result<()> {
        match &mut self.backend {
            BackendState::Epoll(set) => os::epoll_modify(
                set.epoll.as_fd(),
                fd,
                os::EpollEvent::new(epoll_events(interest), token_to_data(token)),
            ),
            BackendState::Poll(set) => set.modify(fd, token, interest),
        }
    }

    /// Stops watching `fd`. Fails with `NotFound` if it is not registered. Call it before the
    /// descriptor is closed.
    pub fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        match &mut self.backend {
            BackendState::Epoll(set) => os::epoll_delete(set.epoll.as_fd(), fd),
            BackendState::Poll(set) => set.deregister(fd),
        }
    }

    /// Waits until at least one registered fd is ready or the timeout passes (None: forever),
    /// and replaces the contents of `ready` with what was found.
    ///
    /// `ready` is empty after a timeout, and also after an interrupting signal (see the module
    /// documentation). The epoll backend returns at most [`MAX_EVENTS_PER_WAIT`] events; the
    /// poll backend returns every ready descriptor. With nothing registered and no timeout
    /// this sleeps forever: register a [`Notifier`](super::notify::Notifier) to be woken.
    pub fn wait(&mut self, ready: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        ready.clear();
        let timeout_ms = timeout_to_millis(timeout);
        match &mut self.backend {
            BackendState::Epoll(set) => set.wait(ready, timeout_ms),
            BackendState::Poll(set) => set.wait(ready, timeout_ms),
        }
    }
}

impl std::fmt::Debug for EpollSet {
    /// The buffer's stale contents say nothing; its size is what matters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollSet").field("epoll", &self.epoll).field("events", &self.events.len()).finish()
    }
}

impl EpollSet {
    fn wait(&mut self, ready: &mut Vec<Ready>, timeout_ms: c_int) -> io::Result<()> {
        let count = os::epoll_wait_ready(self.epoll.as_fd(), &mut self.events, timeout_ms)?;
        for event in &self.events[..count] {
            ready.push(ready_from_epoll(event.events(), data_to_token(event.data())));
        }
        Ok(())
    }
}

impl PollSet {
    fn register(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> io::Result<()> {
        let raw = raw_fd(fd);
        if self.index_of.contains_key(&raw) {
            // The same answer epoll_ctl gives (EEXIST), so both backends fail alike.
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "descriptor already registered"));
        }
        self.index_of.insert(raw, self.fds.len());
        self.fds.push(os::PollFd::new(fd, poll_events(interest)));
        self.tokens.push(token);
        Ok(())
    }

    fn modify(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> io::Result<()> {
        let index = self.index(fd)?;
        self.fds[index].set_events(poll_events(interest));
        self.tokens[index] = token;
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let index = self.index(fd)?;
        self.index_of.remove(&raw_fd(fd));
        // swap_remove moves the last entry into the hole: O(1), and only that entry's index
        // changes. (The order of `fds` means nothing to poll(2).)
        self.fds.swap_remove(index);
        self.tokens.swap_remove(index);
        if let Some(moved) = self.fds.get(index) {
            self.index_of.insert(moved.fd(), index);
        }
        Ok(())
    }

    fn index(&self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        match self.index_of.get(&raw_fd(fd)) {
            Some(&index) => Ok(index),
            // The same answer epoll_ctl gives (ENOENT).
            None => Err(io::Error::new(io::ErrorKind::NotFound, "descriptor not registered")),
        }
    }

    fn wait(&mut self, ready: &mut Vec<Ready>, timeout_ms: c_int) -> io::Result<()> {
        let mut remaining = os::poll_ready(&mut self.fds, timeout_ms)?;
        // poll(2) says how many entries have news but not which: scan until all are found.
        for (entry, &token) in self.fds.iter().zip(&self.tokens) {
            if remaining == 0 {
                break;
            }
            let revents = entry.revents();
            if revents != 0 {
                ready.push(ready_from_poll(revents, token));
                remaining -= 1;
            }
        }
        Ok(())
    }
}

fn raw_fd(fd: BorrowedFd<'_>) -> RawFd {
    std::os::fd::AsRawFd::as_raw_fd(&fd)
}

/// The epoll bits for an interest. `EPOLLRDHUP` goes with readable interest only: a half-closed
/// connection stays "read-hung-up" forever, and a loop that only wants to finish writing
/// would otherwise be woken on every wait.
fn epoll_events(interest: Interest) -> u32 {
    let mut events = 0;
    if interest.readable {
        events |= os::EPOLLIN | os::EPOLLRDHUP;
    }
    if interest.writable {
        events |= os::EPOLLOUT;
    }
    events
}

/// The poll(2) bits for an interest; `POLLRDHUP` for the same reason as `EPOLLRDHUP` above.
fn poll_events(interest: Interest) -> c_short {
    let mut events = 0;
    if interest.readable {
        events |= os::POLLIN | os::POLLRDHUP;
    }
    if interest.writable {
        events |= os::POLLOUT;
    }
    events
}

fn ready_from_epoll(events: u32, token: usize) -> Ready {
    Ready {
        token,
        readable: events & os::EPOLLIN != 0,
        writable: events & os::EPOLLOUT != 0,
        hangup: events & (os::EPOLLHUP | os::EPOLLRDHUP) != 0,
        error: events & os::EPOLLERR != 0,
    }
}

fn ready_from_poll(revents: c_short, token: usize) -> Ready {
    Ready {
        token,
        readable: revents & os::POLLIN != 0,
        writable: revents & os::POLLOUT != 0,
        hangup: revents & (os::POLLHUP | os::POLLRDHUP) != 0,
        // POLLNVAL: the number is not an open descriptor (it was closed before deregister).
        error: revents & (os::POLLERR | os::POLLNVAL) != 0,
    }
}

/// epoll's data word holds the token. A `usize` always fits in 64 bits.
fn token_to_data(token: usize) -> u64 {
    token as u64
}

/// Every data word was written by `token_to_data` from a `usize`, so it converts back whole.
fn data_to_token(data: u64) -> usize {
    data as usize
}

/// The wait's timeout in the kernel's unit, milliseconds: -1 forever, 0 do not block.
///
/// Rounded *up*: a timer due in 0.3 ms must not become a 0 ms wait (the loop would spin until
/// it is due) nor be rounded down and fire late on a coarser retry. Waits longer than
/// `c_int::MAX` ms (24.8 days) are cut to that; the loop simply waits again.
pub fn timeout_to_millis(timeout: Option<Duration>) -> c_int {
    const NANOS_PER_MILLI: u128 = 1_000_000;
    match timeout {
        None => -1,
        Some(duration) => {
            let millis = duration.as_nanos().div_ceil(NANOS_PER_MILLI);
            c_int::try_from(millis).unwrap_or(c_int::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::notify::Notifier;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    /// Long enough for a ready descriptor to be reported on a loaded test machine; only
    /// reached when a test expects readiness and it does not come.
    const READY_WITHIN: Option<Duration> = Some(Duration::from_secs(5));
    /// How long a test waits to conclude that nothing is ready.
    const QUIET_FOR: Option<Duration> = Some(Duration::from_millis(20));

    fn backends() -> Vec<Backend> {
        if cfg!(target_os = "linux") {
            vec![Backend::Epoll, Backend::Poll]
        } else {
            vec![Backend::Poll]
        }
    }

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn wait(poller: &mut Poller, timeout: Option<Duration>) -> Vec<Ready> {
        let mut ready = Vec::new();
        poller.wait(&mut ready, timeout).unwrap();
        ready
    }

    #[test]
    fn timeout_is_rounded_up_to_whole_milliseconds() {
        assert_eq!(timeout_to_millis(None), -1);
        assert_eq!(timeout_to_millis(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_to_millis(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_to_millis(Some(Duration::from_micros(300))), 1);
        assert_eq!(timeout_to_millis(Some(Duration::from_millis(5))), 5);
        assert_eq!(timeout_to_millis(Some(Duration::from_millis(5) + Duration::from_nanos(1))), 6);
        assert_eq!(timeout_to_millis(Some(Duration::from_secs(u64::MAX))), c_int::MAX);
    }

    #[test]
    fn pending_bytes_are_reported_readable_with_the_token() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            assert_eq!(poller.backend(), backend);
            let (quiet, _quiet_peer) = pair();
            let (busy, busy_peer) = pair();
            poller.register(quiet.as_fd(), 1, Interest::READABLE).unwrap();
            poller.register(busy.as_fd(), 2, Interest::READABLE).unwrap();
            (&busy_peer).write_all(b"hello").unwrap();
            let ready = wait(&mut poller, READY_WITHIN);
            assert_eq!(ready.len(), 1, "{backend:?}");
            assert_eq!(ready[0], Ready { token: 2, readable: true, writable: false, hangup: false, error: false });
        }
    }

    #[test]
    fn unread_bytes_are_reported_again_level_triggered() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, b) = pair();
            poller.register(a.as_fd(), 7, Interest::READABLE).unwrap();
            (&b).write_all(b"two bytes").unwrap();
            let mut one = [0u8; 1];
            for _ in 0..3 {
                assert_eq!(wait(&mut poller, READY_WITHIN)[0].token, 7, "{backend:?}");
                // Read only part: the rest keeps the socket readable.
                (&a).read_exact(&mut one).unwrap();
            }
        }
    }

    #[test]
    fn deregistered_socket_is_not_reported() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, b) = pair();
            poller.register(a.as_fd(), 1, Interest::READABLE).unwrap();
            (&b).write_all(b"x").unwrap();
            assert_eq!(wait(&mut poller, READY_WITHIN).len(), 1, "{backend:?}");
            poller.deregister(a.as_fd()).unwrap();
            assert!(wait(&mut poller, QUIET_FOR).is_empty(), "{backend:?}");
        }
    }

    #[test]
    fn deregister_keeps_the_other_registrations_intact() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let pairs: Vec<_> = (0..5).map(|_| pair()).collect();
            for (token, (socket, _)) in pairs.iter().enumerate() {
                poller.register(socket.as_fd(), token, Interest::READABLE).unwrap();
            }
            // Removing the first moves the last into its place in the poll backend.
            poller.deregister(pairs[0].0.as_fd()).unwrap();
            poller.deregister(pairs[2].0.as_fd()).unwrap();
            for (_, peer) in &pairs {
                (&*peer).write_all(b"x").unwrap();
            }
            let mut tokens: Vec<usize> = wait(&mut poller, READY_WITHIN).iter().map(|r| r.token).collect();
            tokens.sort();
            assert_eq!(tokens, vec![1, 3, 4], "{backend:?}");
            poller.modify(pairs[4].0.as_fd(), 40, Interest::READABLE).unwrap();
            poller.deregister(pairs[4].0.as_fd()).unwrap();
        }
    }

    #[test]
    fn fresh_socket_is_writable() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, _b) = pair();
            poller.register(a.as_fd(), 3, Interest::WRITABLE).unwrap();
            let ready = wait(&mut poller, READY_WITHIN);
            assert_eq!(ready, vec![Ready { token: 3, readable: false, writable: true, hangup: false, error: false }]);
        }
    }

    #[test]
    fn read_only_interest_does_not_report_writable() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, _b) = pair();
            poller.register(a.as_fd(), 3, Interest::READABLE).unwrap();
            assert!(wait(&mut poller, QUIET_FOR).is_empty(), "{backend:?}");
        }
    }

    #[test]
    fn modify_switches_interest_and_token() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, _b) = pair();
            poller.register(a.as_fd(), 1, Interest::READABLE).unwrap();
            assert!(wait(&mut poller, QUIET_FOR).is_empty(), "{backend:?}");
            poller.modify(a.as_fd(), 2, Interest::WRITABLE).unwrap();
            let ready = wait(&mut poller, READY_WITHIN);
            assert_eq!((ready.len(), ready[0].token, ready[0].writable), (1, 2, true), "{backend:?}");
            poller.modify(a.as_fd(), 2, Interest::NONE).unwrap();
            assert!(wait(&mut poller, QUIET_FOR).is_empty(), "{backend:?}");
        }
    }

    #[test]
    fn registering_twice_or_changing_an_unknown_fd_fails_alike_in_both_backends() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, b) = pair();
            poller.register(a.as_fd(), 1, Interest::READABLE).unwrap();
            let twice = poller.register(a.as_fd(), 1, Interest::READABLE).unwrap_err();
            assert_eq!(twice.kind(), io::ErrorKind::AlreadyExists, "{backend:?}");
            let unknown = poller.modify(b.as_fd(), 1, Interest::READABLE).unwrap_err();
            assert_eq!(unknown.kind(), io::ErrorKind::NotFound, "{backend:?}");
            assert_eq!(poller.deregister(b.as_fd()).unwrap_err().kind(), io::ErrorKind::NotFound);
        }
    }

    #[test]
    fn peer_close_reports_readable_and_hangup() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, b) = pair();
            poller.register(a.as_fd(), 5, Interest::READABLE).unwrap();
            drop(b);
            let ready = wait(&mut poller, READY_WITHIN);
            assert_eq!(ready.len(), 1, "{backend:?}");
            assert!(ready[0].readable && ready[0].hangup, "{backend:?}: {:?}", ready[0]);
            // The read that the readiness promised: end-of-file.
            assert_eq!((&a).read(&mut [0u8; 8]).unwrap(), 0);
        }
    }

    #[test]
    fn hangup_is_reported_even_with_no_interest() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, b) = pair();
            poller.register(a.as_fd(), 5, Interest::NONE).unwrap();
            drop(b);
            let ready = wait(&mut poller, READY_WITHIN);
            assert!(ready.len() == 1 && ready[0].hangup, "{backend:?}: {ready:?}");
        }
    }

    #[test]
    fn tcp_listener_with_a_pending_connection_is_readable() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            poller.register(listener.as_fd(), 0, Interest::READABLE).unwrap();
            assert!(wait(&mut poller, QUIET_FOR).is_empty(), "{backend:?}");
            let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let ready = wait(&mut poller, READY_WITHIN);
            assert_eq!((ready.len(), ready[0].token, ready[0].readable), (1, 0, true), "{backend:?}");
            let _ = listener.accept().unwrap();
        }
    }

    #[test]
    fn tcp_half_close_reports_readable_and_on_linux_hangup() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            poller.register(server.as_fd(), 9, Interest::READABLE).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let ready = wait(&mut poller, READY_WITHIN);
            assert!(ready.len() == 1 && ready[0].readable, "{backend:?}: {ready:?}");
            // Only Linux has RDHUP; elsewhere a half-close is just an end-of-file to read.
            assert_eq!(ready[0].hangup, cfg!(target_os = "linux"), "{backend:?}");
        }
    }

    #[test]
    fn timeout_returns_no_events_and_not_early() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, _b) = pair();
            poller.register(a.as_fd(), 1, Interest::READABLE).unwrap();
            // The sub-millisecond case is the one rounding could get wrong.
            for timeout in [Duration::from_micros(300), Duration::from_millis(30)] {
                let started = Instant::now();
                assert!(wait(&mut poller, Some(timeout)).is_empty());
                assert!(started.elapsed() >= timeout, "{backend:?} returned before {timeout:?}");
            }
        }
    }

    #[test]
    fn zero_timeout_does_not_block() {
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            let (a, b) = pair();
            poller.register(a.as_fd(), 1, Interest::READABLE).unwrap();
            assert!(wait(&mut poller, Some(Duration::ZERO)).is_empty());
            (&b).write_all(b"x").unwrap();
            assert_eq!(wait(&mut poller, Some(Duration::ZERO)).len(), 1, "{backend:?}");
        }
    }

    #[test]
    fn notifier_wakes_a_wait_blocked_forever_and_drain_resets_it() {
        for backend in backends() {
            for notifier in [Notifier::new().unwrap(), Notifier::socket_pair().unwrap()] {
                let notifier = std::sync::Arc::new(notifier);
                let mut poller = Poller::new(backend).unwrap();
                poller.register(notifier.as_fd(), 99, Interest::READABLE).unwrap();
                let remote = std::sync::Arc::clone(&notifier);
                let waker = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    remote.notify().unwrap();
                });
                let ready = wait(&mut poller, None);
                assert_eq!((ready.len(), ready[0].token, ready[0].readable), (1, 99, true), "{backend:?}");
                waker.join().unwrap();
                notifier.drain().unwrap();
                assert!(wait(&mut poller, QUIET_FOR).is_empty(), "{backend:?}: drain left it readable");
            }
        }
    }

    #[test]
    fn one_ready_among_a_thousand_idle_is_the_only_one_reported() {
        const IDLE: usize = 1000;
        // 2,002 descriptors per backend, beyond a 1,024 default soft limit.
        os::raise_open_file_limit().unwrap();
        let idle: Vec<_> = (0..IDLE).map(|_| pair()).collect();
        let (busy, busy_peer) = pair();
        (&busy_peer).write_all(b"x").unwrap();
        for backend in backends() {
            let mut poller = Poller::new(backend).unwrap();
            for (token, (socket, _)) in idle.iter().enumerate() {
                poller.register(socket.as_fd(), token, Interest::READABLE).unwrap();
            }
            poller.register(busy.as_fd(), IDLE, Interest::READABLE).unwrap();
            let ready = wait(&mut poller, READY_WITHIN);
            assert_eq!(ready.len(), 1, "{backend:?}");
            assert_eq!(ready[0].token, IDLE, "{backend:?}");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn epoll_returns_at_most_max_events_and_the_rest_on_the_next_wait() {
        let total = MAX_EVENTS_PER_WAIT + 100;
        os::raise_open_file_limit().unwrap();
        let pairs: Vec<_> = (0..total).map(|_| pair()).collect();
        let mut poller = Poller::new(Backend::Epoll).unwrap();
        for (token, (socket, peer)) in pairs.iter().enumerate() {
            poller.register(socket.as_fd(), token, Interest::READABLE).unwrap();
            (&*peer).write_all(b"x").unwrap();
        }
        let first = wait(&mut poller, READY_WITHIN);
        assert_eq!(first.len(), MAX_EVENTS_PER_WAIT);
        let second = wait(&mut poller, READY_WITHIN);
        // Reported descriptors go to the back of the ready list, so the 100 that did not fit
        // come first now: two waits between them see every descriptor.
        let mut seen: Vec<usize> = first.iter().chain(&second).map(|r| r.token).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), total);
    }
}
