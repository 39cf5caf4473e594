//! The operating-system calls the standard library does not offer, behind a safe API.
//!
//! One of the two parts of [`crate::server::sys`], the crate's only `unsafe` code: calling C. Each
//! foreign function is declared by hand with `extern "C"` — no `libc` crate — and each wrapper
//! checks the call's result and turns failures into `io::Error`. Everything that uses it
//! ([`crate::server::poller`], [`crate::server::notify`], the drivers, `main`) is safe Rust.
//!
//! What is here, and the manual page each part follows:
//!
//! | part | calls | man page |
//! |---|---|---|
//! | graceful shutdown | `pthread_sigmask`, `sigwait` | sigwait(3) |
//! | readiness, Linux | `epoll_create1`, `epoll_ctl`, `epoll_wait` | epoll(7), epoll_ctl(2), epoll_wait(2) |
//! | readiness, any Unix | `poll` | poll(2) |
//! | cross-thread wake-up, Linux | `eventfd` | eventfd(2) |
//! | file descriptors | `close` | close(2) |
//! | a write that never waits, Linux | `send` with `MSG_DONTWAIT` | send(2) |
//! | the open-file limit | `getrlimit`, `setrlimit` | getrlimit(2) |
//! | one worker per core | `sched_setaffinity`, `sched_getaffinity` | sched_setaffinity(2) |
//! | the clock tick, which checks `/proc`'s `USER_HZ` | `sysconf(_SC_CLK_TCK)` | sysconf(3) |
//!
//! Graceful shutdown: the process blocks SIGINT and SIGTERM in every thread (the mask is
//! inherited by threads spawned afterwards, so [`block_termination_signals`] must run first in
//! `main`) and one thread takes them synchronously with `sigwait(3)`. Compared with a signal
//! handler, nothing runs in async-signal context, so the shutdown code is ordinary Rust.
//!
//! File descriptors: every descriptor a call here creates comes back as an
//! [`std::os::fd::OwnedFd`], which closes it when dropped. `OwnedFd::from_raw_fd` is `unsafe`
//! (it trusts that the number is an open descriptor nobody else owns), so it is called in one
//! place, `owned_fd`, right after the kernel handed us a fresh descriptor. Calls that only use
//! a descriptor take a [`BorrowedFd`], which cannot outlive its owner.
//!
//! Struct layouts and constants: each `#[repr(C)]` struct below mirrors glibc's definition on
//! Linux x86_64 and aarch64. They were checked with `offsetof`/`sizeof` from a small C program
//! compiled for both targets (gcc, and aarch64-linux-gnu-gcc run under qemu-aarch64), and the
//! tests at the bottom pin the same numbers. The one that differs between the two CPUs is
//! `struct epoll_event`: packed (12 bytes) on x86_64, naturally aligned (16 bytes) elsewhere.
//!
//! Interrupted waits: when a signal interrupts `epoll_wait` or `poll` (`EINTR`), the wrappers
//! report zero ready descriptors instead of an error or a retry. A retry with the same timeout
//! would wait too long; the event loop already re-reads the clock and recomputes its deadline
//! after every wait, so "nothing happened, look again" is the cheapest correct answer.

use std::ffi::{c_int, c_short};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// The result of a call that fails with -1 and sets errno: the error, or the value for the
/// caller (a count, a new descriptor, or 0 from a call that only succeeds or fails). Not for
/// the pthread functions, which return the error number instead of setting errno.
fn cvt(result: c_int) -> io::Result<c_int> {
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown: SIGINT and SIGTERM, taken with sigwait(3)
// ---------------------------------------------------------------------------------------------

/// Room for a `sigset_t`: glibc's is 128 bytes, musl's 128, macOS's and the BSDs' smaller. The
/// set is only ever touched through `sigemptyset`/`sigaddset`, so a larger buffer is safe.
#[repr(C)]
struct SigSet {
    bits: [u64; 16],
}

extern "C" {
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, signum: c_int) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const SigSet, oldset: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int;
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const SIG_BLOCK: c_int = 0;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SIG_BLOCK: c_int = 1;

/// Interrupt from the terminal (Ctrl-C).
pub const SIGINT: c_int = 2;
/// The polite request to stop (`kill`, systemd, docker stop).
pub const SIGTERM: c_int = 15;

/// SIGINT and SIGTERM, blocked in this thread and every thread it spawns afterwards.
pub struct TerminationSignals {
    set: SigSet,
}

/// Blocks SIGINT and SIGTERM so that they wait for [`TerminationSignals::wait`] instead of
/// killing the process. Call it before spawning any thread.
pub fn block_termination_signals() -> io::Result<TerminationSignals> {
    let mut set = SigSet { bits: [0; 16] };
    // SAFETY: `set` is a valid, writable buffer at least as large as the platform's sigset_t.
    unsafe {
        cvt(sigemptyset(&mut set))?;
        cvt(sigaddset(&mut set, SIGINT))?;
        cvt(sigaddset(&mut set, SIGTERM))?;
    }
    // SAFETY: `set` was initialised by sigemptyset/sigaddset; a null `oldset` is allowed.
    let error = unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) };
    if error != 0 {
        // pthread functions return the error number instead of setting errno.
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(TerminationSignals { set })
}

impl TerminationSignals {
    /// Sleeps until SIGINT or SIGTERM arrives and returns its number.
    pub fn wait(&self) -> io::Result<c_int> {
        let mut signal: c_int = 0;
        // SAFETY: `self.set` is an initialised signal set and `signal` a valid out-pointer.
        let error = unsafe { sigwait(&self.set, &mut signal) };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(signal)
    }
}

/// A signal's conventional name, for the log line.
pub fn signal_name(signal: c_int) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

// ---------------------------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------------------------

extern "C" {
    fn close(fd: c_int) -> c_int;
}

/// Turns the result of a call that returns a new descriptor (or -1 and errno) into an owner.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn owned_fd(result: c_int) -> io::Result<OwnedFd> {
    let fd = cvt(result)?;
    // SAFETY: the kernel just returned `fd` as a newly opened descriptor; nothing else in the
    // process knows its number yet, so this `OwnedFd` is its only owner and will close it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes `fd` and reports what `close(2)` says, which dropping an `OwnedFd` cannot.
///
/// Useful for a diagnostic only: on Linux the descriptor is released even when this fails.
pub fn close_fd(fd: OwnedFd) -> io::Result<()> {
    let raw = fd.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of `raw`, so nothing else will close it or use it.
    let result = unsafe { close(raw) };
    // close(2): "Retrying the close() after a failure return is the wrong thing to do, since
    // this may cause a reused file descriptor from another thread to be closed." So no retry,
    // not even on EINTR.
    cvt(result)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A write that never waits (Linux)
// ---------------------------------------------------------------------------------------------

/// `MSG_DONTWAIT` and `MSG_NOSIGNAL` in `<bits/socket.h>` (Linux, every architecture).
#[cfg(target_os = "linux")]
const MSG_DONTWAIT: c_int = 0x40;
#[cfg(target_os = "linux")]
const MSG_NOSIGNAL: c_int = 0x4000;

#[cfg(target_os = "linux")]
extern "C" {
    fn send(fd: c_int, buf: *const std::ffi::c_void, len: usize, flags: c_int) -> isize;
}

/// Writes what `socket` takes at once of `bytes`, without waiting, and returns how much that
/// was (`WouldBlock` when its buffer is full). `send(2)` with `MSG_DONTWAIT` makes this one
/// call non-blocking whatever the socket's mode, so a thread that must never wait can write
/// to a blocking socket that another thread reads with a blocking read (setting the socket
/// non-blocking would change the reader's calls too); `MSG_NOSIGNAL` makes a peer that closed
/// an `EPIPE` error rather than a signal.
#[cfg(target_os = "linux")]
pub fn send_without_waiting(socket: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `socket` is open for the call, and `bytes` is valid for reads of its length;
        // send(2) only reads it.
        let sent = unsafe { send(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), MSG_DONTWAIT | MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Off Linux nothing is written: the caller's blocking path does it.
#[cfg(not(target_os = "linux"))]
pub fn send_without_waiting(_socket: BorrowedFd<'_>, _bytes: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(io::ErrorKind::WouldBlock, "a write without waiting is implemented for Linux only"))
}

// ---------------------------------------------------------------------------------------------
// The listen backlog
// ---------------------------------------------------------------------------------------------

extern "C" {
    fn listen(fd: c_int, backlog: c_int) -> c_int;
}

/// Sets how many connections the kernel completes and queues for `accept` before it stops
/// answering SYNs (the listen backlog). std's `TcpListener::bind` asks for 128, which a burst
/// of connects overruns: the rest wait a second for a SYN retry. listen(2) may be called again
/// on a listening socket to change it; the kernel caps it at `net.core.somaxconn`.
pub fn set_listen_backlog(listener: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = c_int::try_from(backlog).unwrap_or(c_int::MAX);
    // SAFETY: `listener` is a valid open descriptor for the duration of the call; listen(2)
    // reads nothing but its two integer arguments.
    cvt(unsafe { listen(listener.as_raw_fd(), backlog) })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// epoll (Linux): readiness in O(ready) per wait
// ---------------------------------------------------------------------------------------------

/// `EPOLL_CLOEXEC`: the epoll descriptor is not inherited by a child process after `exec`.
/// It equals `O_CLOEXEC`, 0o2000000, on x86_64 and aarch64.
#[cfg(target_os = "linux")]
const EPOLL_CLOEXEC: c_int = 0x80000;
#[cfg(target_os = "linux")]
const EPOLL_CTL_ADD: c_int = 1;
#[cfg(target_os = "linux")]
const EPOLL_CTL_DEL: c_int = 2;
#[cfg(target_os = "linux")]
const EPOLL_CTL_MOD: c_int = 3;

/// Readable: there are bytes to read, a connection to accept, or end-of-file.
pub const EPOLLIN: u32 = 0x001;
/// Writable: there is room in the send buffer.
pub const EPOLLOUT: u32 = 0x004;
/// An error is pending on the descriptor. Always reported, whatever was asked for.
pub const EPOLLERR: u32 = 0x008;
/// Both directions are closed. Always reported, whatever was asked for.
pub const EPOLLHUP: u32 = 0x010;
/// The peer closed the connection or shut down its writing half (read will hit end-of-file).
pub const EPOLLRDHUP: u32 = 0x2000;

/// `struct epoll_event` as glibc defines it: what to watch (`events`) and a word the kernel
/// hands back untouched when the descriptor is ready (`data`; we store the caller's token).
///
/// glibc's `<bits/epoll.h>` declares it `__attribute__ ((__packed__))` on x86_64 only, so the
/// 64-bit `data` sits at offset 4 there (12 bytes in all) and at offset 8 on aarch64 (16
/// bytes). Because the x86_64 version is packed, its fields are read by copy (see the
/// accessors), never by reference.
#[cfg_attr(target_arch = "x86_64", repr(C, packed))]
#[cfg_attr(not(target_arch = "x86_64"), repr(C))]
#[derive(Clone, Copy)]
pub struct EpollEvent {
    events: u32,
    data: u64,
}

impl EpollEvent {
    pub const fn new(events: u32, data: u64) -> EpollEvent {
        EpollEvent { events, data }
    }

    /// The `EPOLL*` bits: asked for when registering, happened when returned by a wait.
    pub fn events(&self) -> u32 {
        self.events
    }

    /// The word given at registration.
    pub fn data(&self) -> u64 {
        self.data
    }
}

impl std::fmt::Debug for EpollEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Copies first: a reference to a field of a packed struct is not allowed.
        let (events, data) = (self.events, self.data);
        f.debug_struct("EpollEvent").field("events", &format_args!("{events:#x}")).field("data", &data).finish()
    }
}

#[cfg(target_os = "linux")]
extern "C" {
    fn epoll_create1(flags: c_int) -> c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut EpollEvent) -> c_int;
    fn epoll_wait(epfd: c_int, events: *mut EpollEvent, maxevents: c_int, timeout: c_int) -> c_int;
}

/// Creates an epoll instance: an interest list and a ready list kept by the kernel.
#[cfg(target_os = "linux")]
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked by `owned_fd`.
    owned_fd(unsafe { epoll_create1(EPOLL_CLOEXEC) })
}

/// Adds `fd` to the interest list. Fails with `AlreadyExists` (EEXIST) if it is there already.
#[cfg(target_os = "linux")]
pub fn epoll_add(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, event: EpollEvent) -> io::Result<()> {
    epoll_control(epoll, EPOLL_CTL_ADD, fd, event)
}

/// Replaces the events and data of a registered `fd`. Fails with `NotFound` (ENOENT) if absent.
#[cfg(target_os = "linux")]
pub fn epoll_modify(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, event: EpollEvent) -> io::Result<()> {
    epoll_control(epoll, EPOLL_CTL_MOD, fd, event)
}

/// Removes `fd` from the interest list. Fails with `NotFound` (ENOENT) if absent.
#[cfg(target_os = "linux")]
pub fn epoll_delete(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    // epoll_ctl(2): "In kernel versions before 2.6.9, the EPOLL_CTL_DEL operation required a
    // non-null pointer in event". Passing one costs nothing.
    epoll_control(epoll, EPOLL_CTL_DEL, fd, EpollEvent::new(0, 0))
}

#[cfg(target_os = "linux")]
fn epoll_control(epoll: BorrowedFd<'_>, op: c_int, fd: BorrowedFd<'_>, mut event: EpollEvent) -> io::Result<()> {
    // SAFETY: both descriptors are open (they are borrowed) and `event` is a valid
    // `struct epoll_event` that the kernel only reads during the call.
    cvt(unsafe { epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut event) })?;
    Ok(())
}

/// Waits for ready descriptors and writes up to `events.len()` of them to the front of
/// `events`; returns how many. `timeout_ms`: -1 waits forever, 0 returns at once.
///
/// An interrupted wait (EINTR) returns `Ok(0)`: see the module documentation.
#[cfg(target_os = "linux")]
pub fn epoll_wait_ready(epoll: BorrowedFd<'_>, events: &mut [EpollEvent], timeout_ms: c_int) -> io::Result<usize> {
    // A longer buffer than c_int can count is simply used in part.
    let capacity = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
    // SAFETY: `events` is a valid, writable buffer of at least `capacity` initialised
    // `EpollEvent`s, and the kernel writes at most `capacity` of them.
    let result = unsafe { epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), capacity, timeout_ms) };
    ready_count(result)
}

/// The result of `epoll_wait`/`poll`: a count, or -1 and errno, with EINTR read as "none".
fn ready_count(result: c_int) -> io::Result<usize> {
    match cvt(result) {
        // Not negative after `cvt`, so the cast keeps the value.
        Ok(count) => Ok(count as usize),
        // epoll_wait(2), poll(2): EINTR "The call was interrupted by a signal handler before
        // either (1) any of the requested events occurred or (2) the timeout expired." Nothing
        // is ready; the caller's loop looks at its clock and waits again.
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(error) => Err(error),
    }
}

// Off Linux there is no epoll: the same functions exist so that the poller compiles
// everywhere, and say so at run time. The poll(2) backend is the one to use there.

#[cfg(not(target_os = "linux"))]
fn epoll_unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "epoll is Linux-only; use the poll(2) backend")
}

#[cfg(not(target_os = "linux"))]
pub fn epoll_create() -> io::Result<OwnedFd> {
    Err(epoll_unsupported())
}

#[cfg(not(target_os = "linux"))]
pub fn epoll_add(_epoll: BorrowedFd<'_>, _fd: BorrowedFd<'_>, _event: EpollEvent) -> io::Result<()> {
    Err(epoll_unsupported())
}

#[cfg(not(target_os = "linux"))]
pub fn epoll_modify(_epoll: BorrowedFd<'_>, _fd: BorrowedFd<'_>, _event: EpollEvent) -> io::Result<()> {
    Err(epoll_unsupported())
}

#[cfg(not(target_os = "linux"))]
pub fn epoll_delete(_epoll: BorrowedFd<'_>, _fd: BorrowedFd<'_>) -> io::Result<()> {
    Err(epoll_unsupported())
}

#[cfg(not(target_os = "linux"))]
pub fn epoll_wait_ready(_epoll: BorrowedFd<'_>, _events: &mut [EpollEvent], _timeout_ms: c_int) -> io::Result<usize> {
    Err(epoll_unsupported())
}

// ---------------------------------------------------------------------------------------------
// poll(2): readiness on any Unix, in O(registered) per wait
// ---------------------------------------------------------------------------------------------

/// Readable: bytes to read, a connection to accept, or end-of-file.
pub const POLLIN: c_short = 0x001;
/// Writable: room in the send buffer.
pub const POLLOUT: c_short = 0x004;
/// An error is pending. Always reported.
pub const POLLERR: c_short = 0x008;
/// Hang-up. Always reported.
pub const POLLHUP: c_short = 0x010;
/// The number in `fd` is not an open descriptor. Always reported.
pub const POLLNVAL: c_short = 0x020;
/// The peer shut down its writing half: Linux only (0x2000 on x86_64 and aarch64); elsewhere
/// zero, so asking for it asks for nothing.
pub const POLLRDHUP: c_short = if cfg!(target_os = "linux") { 0x2000 } else { 0 };

/// `struct pollfd { int fd; short events; short revents; }`: 8 bytes, the same on every Unix.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

impl PollFd {
    /// Watches `fd` for `events` (`POLL*` bits). Only the number is kept: the caller must keep
    /// the descriptor open while it is polled, or poll reports `POLLNVAL` (or, if the number
    /// was reused, reports on some other file).
    pub fn new(fd: BorrowedFd<'_>, events: c_short) -> PollFd {
        PollFd { fd: fd.as_raw_fd(), events, revents: 0 }
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn set_events(&mut self, events: c_short) {
        self.events = events;
    }

    /// What the last `poll` found; zero if nothing.
    pub fn revents(&self) -> c_short {
        self.revents
    }
}

/// `nfds_t`: `unsigned long` in glibc and musl, `unsigned int` on macOS and the BSDs.
#[cfg(target_os = "linux")]
type PollCount = std::ffi::c_ulong;
#[cfg(not(target_os = "linux"))]
type PollCount = std::ffi::c_uint;

extern "C" {
    fn poll(fds: *mut PollFd, nfds: PollCount, timeout: c_int) -> c_int;
}

/// Waits until one of `fds` is ready and fills in each one's `revents`; returns how many have
/// a non-zero `revents`. `timeout_ms`: -1 waits forever, 0 returns at once.
///
/// An interrupted wait (EINTR) returns `Ok(0)`: see the module documentation.
pub fn poll_ready(fds: &mut [PollFd], timeout_ms: c_int) -> io::Result<usize> {
    let count = PollCount::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one poll(2)"))?;
    // SAFETY: `fds` is a valid, writable array of `count` `struct pollfd`s; the kernel reads
    // `fd` and `events` and writes `revents` of each, and keeps no pointer after the call.
    let result = unsafe { poll(fds.as_mut_ptr(), count, timeout_ms) };
    ready_count(result)
}

// ---------------------------------------------------------------------------------------------
// eventfd (Linux): a counter in the kernel that another thread bumps to wake a poller
// ---------------------------------------------------------------------------------------------

/// `EFD_CLOEXEC` (= `O_CLOEXEC`) and `EFD_NONBLOCK` (= `O_NONBLOCK`, 0o4000) on x86_64 and
/// aarch64. Non-blocking so that neither side can ever stall the thread that calls it.
#[cfg(target_os = "linux")]
const EFD_CLOEXEC: c_int = 0x80000;
#[cfg(target_os = "linux")]
const EFD_NONBLOCK: c_int = 0x800;

#[cfg(target_os = "linux")]
extern "C" {
    fn eventfd(initval: std::ffi::c_uint, flags: c_int) -> c_int;
}

/// An eventfd: readable while its 64-bit counter is non-zero.
///
/// Reads and writes are exactly 8 bytes (eventfd(2)), done through `std::fs::File`, which is
/// plain `read(2)`/`write(2)`: no more `unsafe` is needed once the descriptor exists.
#[derive(Debug)]
pub struct EventFd {
    file: File,
}

impl EventFd {
    /// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: no pointers; the result is checked by `owned_fd`.
        let fd = owned_fd(unsafe { eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) })?;
        Ok(EventFd { file: File::from(fd) })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<EventFd> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "eventfd is Linux-only"))
    }

    /// Adds `value` to the counter. `WouldBlock` if the counter would pass its maximum,
    /// 0xffff_ffff_ffff_fffe (eventfd(2)); the descriptor is certainly readable then.
    pub fn add(&self, value: u64) -> io::Result<()> {
        let written = (&self.file).write(&value.to_ne_bytes())?;
        expect_eight_bytes(written)
    }

    /// Returns the counter and resets it to zero. `WouldBlock` if it was already zero.
    pub fn take(&self) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        let read = (&self.file).read(&mut bytes)?;
        expect_eight_bytes(read)?;
        Ok(u64::from_ne_bytes(bytes))
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// eventfd(2) transfers exactly 8 bytes or fails; anything else would be a kernel bug.
fn expect_eight_bytes(count: usize) -> io::Result<()> {
    if count != 8 {
        return Err(io::Error::other("eventfd transferred other than 8 bytes"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The open-file limit: one connection is one descriptor
// ---------------------------------------------------------------------------------------------

/// `struct rlimit`: two `rlim_t`, which is 64 bits on 64-bit Linux (and on macOS and FreeBSD).
#[repr(C)]
struct ResourceLimit {
    current: u64,
    maximum: u64,
}

#[cfg(target_os = "linux")]
const RLIMIT_NOFILE: c_int = 7;
#[cfg(not(target_os = "linux"))]
const RLIMIT_NOFILE: c_int = 8;

/// macOS refuses a soft limit above `OPEN_MAX` even when the hard limit is "unlimited".
#[cfg(target_os = "macos")]
const MACOS_OPEN_MAX: u64 = 10240;

extern "C" {
    fn getrlimit(resource: c_int, limit: *mut ResourceLimit) -> c_int;
    fn setrlimit(resource: c_int, limit: *const ResourceLimit) -> c_int;
}

/// The process's limit on open descriptors: `soft` is enforced, `hard` is as far as an
/// unprivileged process may raise `soft`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Reads `RLIMIT_NOFILE`.
pub fn open_file_limit() -> io::Result<OpenFileLimit> {
    let mut limit = ResourceLimit { current: 0, maximum: 0 };
    // SAFETY: `limit` is a valid, writable `struct rlimit`.
    cvt(unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) })?;
    Ok(OpenFileLimit { soft: limit.current, hard: limit.maximum })
}

/// Lifts the soft limit on open descriptors to the hard limit and returns the new soft limit.
///
/// Many systems start processes at a soft limit of 1024, which a push server holding one
/// socket per client reaches quickly; the hard limit is what the administrator allows.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let limit = open_file_limit()?;
    #[cfg(target_os = "macos")]
    let target = limit.hard.min(MACOS_OPEN_MAX);
    #[cfg(not(target_os = "macos"))]
    let target = limit.hard;
    if target <= limit.soft {
        return Ok(limit.soft);
    }
    let raised = ResourceLimit { current: target, maximum: limit.hard };
    // SAFETY: `raised` is a valid `struct rlimit` that the kernel only reads.
    cvt(unsafe { setrlimit(RLIMIT_NOFILE, &raised) })?;
    Ok(target)
}

// ---------------------------------------------------------------------------------------------
// CPU affinity (Linux): one event-loop worker per core
// ---------------------------------------------------------------------------------------------

/// How many CPUs a glibc `cpu_set_t` can name: 1024 bits, 128 bytes (`CPU_SETSIZE`).
pub const MAX_CPUS: usize = 1024;

/// `cpu_set_t`: a bit per CPU, in 64-bit words (glibc's `__cpu_mask` is `unsigned long`), CPU
/// `n` at bit `n % 64` of word `n / 64`, as glibc's `CPU_SET` macro puts it.
#[cfg(target_os = "linux")]
#[repr(C)]
struct CpuSet {
    words: [u64; MAX_CPUS / 64],
}

#[cfg(target_os = "linux")]
extern "C" {
    fn sched_setaffinity(pid: c_int, cpusetsize: usize, mask: *const CpuSet) -> c_int;
    fn sched_getaffinity(pid: c_int, cpusetsize: usize, mask: *mut CpuSet) -> c_int;
}

/// sched_setaffinity(2): "If pid is zero, then the calling thread is used."
#[cfg(target_os = "linux")]
const CALLING_THREAD: c_int = 0;

/// Pins the calling thread to CPU `cpu`. Threads it spawns afterwards inherit the pin.
///
/// A worker that stays on one core keeps its connections' data in that core's cache, and the
/// scheduler stops moving it around. Fails with `InvalidInput` for `cpu >= MAX_CPUS` and with
/// the kernel's `EINVAL` for a CPU this process may not use (see [`available_cpus`]).
#[cfg(target_os = "linux")]
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= MAX_CPUS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "CPU number beyond cpu_set_t"));
    }
    let mut set = CpuSet { words: [0; MAX_CPUS / 64] };
    set.words[cpu / 64] = 1 << (cpu % 64);
    // SAFETY: `set` is a valid 128-byte cpu_set_t and its size is passed with it.
    cvt(unsafe { sched_setaffinity(CALLING_THREAD, std::mem::size_of::<CpuSet>(), &set) })?;
    Ok(())
}

/// The CPUs the calling thread may run on, in increasing order: where to pin the workers.
///
/// On a machine with more than [`MAX_CPUS`] CPUs the kernel refuses the 128-byte set (EINVAL).
#[cfg(target_os = "linux")]
pub fn available_cpus() -> io::Result<Vec<usize>> {
    let mut set = CpuSet { words: [0; MAX_CPUS / 64] };
    // SAFETY: `set` is a valid, writable 128-byte cpu_set_t and its size is passed with it.
    cvt(unsafe { sched_getaffinity(CALLING_THREAD, std::mem::size_of::<CpuSet>(), &mut set) })?;
    let cpus = (0..MAX_CPUS).filter(|&cpu| set.words[cpu / 64] & (1 << (cpu % 64)) != 0).collect();
    Ok(cpus)
}

#[cfg(not(target_os = "linux"))]
pub fn pin_to_cpu(_cpu: usize) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "CPU pinning is implemented for Linux only"))
}

#[cfg(not(target_os = "linux"))]
pub fn available_cpus() -> io::Result<Vec<usize>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "CPU affinity is implemented for Linux only"))
}

// ---------------------------------------------------------------------------------------------
// The clock tick: the unit of the CPU times in /proc
// ---------------------------------------------------------------------------------------------

/// `_SC_CLK_TCK` in glibc's and musl's `<unistd.h>` (`<bits/confname.h>`) on Linux.
#[cfg(target_os = "linux")]
const SC_CLK_TCK: c_int = 2;

#[cfg(target_os = "linux")]
extern "C" {
    fn sysconf(name: c_int) -> std::ffi::c_long;
}

/// Clock ticks per second (`USER_HZ`): proc(5) gives a process's CPU times (`utime`, `stime`
/// in `/proc/self/stat`) and its start time in these, "divide by sysconf(_SC_CLK_TCK)".
/// [`crate::process`] uses the ABI's constant (reading `/proc` needs no `unsafe`, so it
/// imports nothing from the crate); its tests check the constant against this. `None` where the call fails or is not
/// wired up (off Linux).
#[cfg(target_os = "linux")]
pub fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    let ticks = unsafe { sysconf(SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&ticks| ticks > 0)
}

#[cfg(not(target_os = "linux"))]
pub fn clock_ticks_per_second() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::os::unix::net::UnixStream;

    // The expected numbers below are glibc's, printed by `sizeof`/`offsetof` in a C program
    // built with gcc (x86_64) and aarch64-linux-gnu-gcc (run under qemu-aarch64).

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn epoll_event_is_packed_on_x86_64() {
        assert_eq!(size_of::<EpollEvent>(), 12);
        assert_eq!(std::mem::align_of::<EpollEvent>(), 1);
        assert_eq!(offset_of!(EpollEvent, events), 0);
        assert_eq!(offset_of!(EpollEvent, data), 4);
    }

    #[test]
    #[cfg(target_arch = "aarch64")]
    fn epoll_event_is_naturally_aligned_on_aarch64() {
        assert_eq!(size_of::<EpollEvent>(), 16);
        assert_eq!(std::mem::align_of::<EpollEvent>(), 8);
        assert_eq!(offset_of!(EpollEvent, events), 0);
        assert_eq!(offset_of!(EpollEvent, data), 8);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_send_without_waiting_takes_what_fits_and_then_would_block_on_a_blocking_socket() {
        let (writer, _reader) = UnixStream::pair().unwrap();
        assert_eq!(send_without_waiting(writer.as_fd(), b"hello").unwrap(), 5);
        let chunk = vec![0u8; 64 * 1024];
        let full = loop {
            match send_without_waiting(writer.as_fd(), &chunk) {
                Ok(sent) => assert!(sent > 0),
                Err(error) => break error,
            }
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock, "the socket stays blocking, the call does not wait");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_send_to_a_closed_peer_is_an_error_not_a_signal() {
        let (writer, reader) = UnixStream::pair().unwrap();
        drop(reader);
        let error = send_without_waiting(writer.as_fd(), b"x").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn pollfd_is_int_short_short() {
        assert_eq!(size_of::<PollFd>(), 8);
        assert_eq!(offset_of!(PollFd, fd), 0);
        assert_eq!(offset_of!(PollFd, events), 4);
        assert_eq!(offset_of!(PollFd, revents), 6);
    }

    #[test]
    fn rlimit_is_two_64_bit_words() {
        assert_eq!(size_of::<ResourceLimit>(), 16);
        assert_eq!(offset_of!(ResourceLimit, maximum), 8);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn cpu_set_is_128_bytes() {
        assert_eq!(size_of::<CpuSet>(), 128);
    }

    #[test]
    fn sigset_buffer_is_at_least_glibc_s_128_bytes() {
        assert!(size_of::<SigSet>() >= 128);
    }

    #[test]
    fn raise_open_file_limit_reaches_at_least_the_current_soft_limit() {
        let before = open_file_limit().unwrap();
        let raised = raise_open_file_limit().unwrap();
        assert!(raised >= before.soft);
        assert_eq!(open_file_limit().unwrap().soft, raised);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn pin_to_cpu_0_succeeds_and_narrows_the_affinity() {
        // Each test runs on its own thread, so the pin stays inside this test.
        assert!(available_cpus().unwrap().contains(&0));
        pin_to_cpu(0).unwrap();
        assert_eq!(available_cpus().unwrap(), vec![0]);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn pin_to_cpu_beyond_the_set_is_invalid_input() {
        assert_eq!(pin_to_cpu(MAX_CPUS).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn eventfd_read_returns_the_sum_and_resets_it() {
        let eventfd = EventFd::new().unwrap();
        assert_eq!(eventfd.take().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        eventfd.add(1).unwrap();
        eventfd.add(2).unwrap();
        assert_eq!(eventfd.take().unwrap(), 3);
        assert_eq!(eventfd.take().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn eventfd_full_counter_would_block_instead_of_blocking() {
        let eventfd = EventFd::new().unwrap();
        eventfd.add(u64::MAX - 1).unwrap();
        assert_eq!(eventfd.add(1).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn epoll_reports_the_data_word_of_a_ready_descriptor() {
        let epoll = epoll_create().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        epoll_add(epoll.as_fd(), a.as_fd(), EpollEvent::new(EPOLLIN, 0xfeed_beef_0000_0001)).unwrap();
        (&b).write_all(b"x").unwrap();
        let mut events = [EpollEvent::new(0, 0); 4];
        assert_eq!(epoll_wait_ready(epoll.as_fd(), &mut events, 1000).unwrap(), 1);
        assert_eq!(events[0].data(), 0xfeed_beef_0000_0001);
        assert_eq!(events[0].events() & EPOLLIN, EPOLLIN);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn epoll_add_twice_is_already_exists_and_delete_of_absent_is_not_found() {
        let epoll = epoll_create().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        epoll_add(epoll.as_fd(), a.as_fd(), EpollEvent::new(EPOLLIN, 1)).unwrap();
        let again = epoll_add(epoll.as_fd(), a.as_fd(), EpollEvent::new(EPOLLIN, 1)).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        epoll_delete(epoll.as_fd(), a.as_fd()).unwrap();
        assert_eq!(epoll_delete(epoll.as_fd(), a.as_fd()).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn poll_fills_in_revents() {
        let (a, b) = UnixStream::pair().unwrap();
        (&b).write_all(b"x").unwrap();
        let mut fds = [PollFd::new(a.as_fd(), POLLIN), PollFd::new(b.as_fd(), POLLIN)];
        assert_eq!(poll_ready(&mut fds, 1000).unwrap(), 1);
        assert_eq!(fds[0].revents() & POLLIN, POLLIN);
        assert_eq!(fds[1].revents(), 0);
    }

    #[test]
    fn close_fd_reports_success() {
        let (a, _b) = UnixStream::pair().unwrap();
        close_fd(OwnedFd::from(a)).unwrap();
    }
}
