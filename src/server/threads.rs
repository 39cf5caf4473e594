//! The thread-per-connection server model.
//!
//! The accept loop hands every connection to a new OS thread, which loops:
//!
//! ```text
//! advance the Connection ─► write its output (blocking, ─► what is it waiting for?
//!      ▲                      until the next deadline)        │ input: read(2), blocking,
//!      │                                                      │        until the next deadline
//!      └──────────────────────────────────────────────────────┘ broker: park the thread
//!                                                                      until woken or the deadline
//! ```
//!
//! The decisions are the [`Connection`]'s, as in the event loop: a write that blocks until
//! the connection's next deadline returns to `advance`, which decides whether the client is a
//! slow consumer (a WebSocket gets its 1008 close behind its backlog). No lock is held while a
//! write blocks, so a WebSocket's reading thread can still answer pings and closes.
//!
//! A parked thread cannot be woken both by the broker (`unpark`) and by its socket (a client
//! that hangs up) without a second descriptor per connection. So it parks in naps of at most
//! [`HANGUP_CHECK_INTERVAL`] and looks at its socket in between (a `poll(2)` for `POLLRDHUP`
//! that does not wait): a client that leaves a parked long poll or an SSE stream frees its
//! thread within a fraction of a second, not at the poll timeout or the next keepalive. That
//! is a cost the event loop does not pay: the kernel tells it, through epoll.
//!
//! It is the easiest model to read and it shows the cost the event loop removes: a parked
//! long poll is a whole thread asleep in `park_timeout`, with its stack. Each thread gets an
//! explicit stack of [`THREAD_STACK_BYTES`] instead of Rust's 2 MiB default; the memory a
//! thread really uses is what it touches, so the default would mostly cost address space,
//! but the explicit size keeps 10,000 threads well inside it.
//!
//! Threads are not only memory. Each one costs the kernel a task id and four memory mappings
//! (its stack and guard page, and the signal stack and guard page Rust's runtime gives every
//! thread), and `vm.max_map_count` (65,530 by default) caps the mappings of a process: past
//! about 16,000 threads a new thread cannot set up its signal stack and the runtime aborts
//! the whole process. So the model keeps a thread budget below the kernel's limits and
//! answers 503 (or closes a WebSocket with 1011) when it is spent, instead of dying.
//!
//! The broker wakes a parked thread through a [`Wake`] on the thread's own [`WakeQueue`],
//! whose bell unparks it. `park`/`unpark` keep a token, so a wake-up that arrives before the
//! thread parks is not lost.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::time::Instant;

use std::os::fd::AsFd;

use crate::app::App;
use crate::connection::{Connection, Waiting};
use crate::server::sys::os;
use crate::sync::lock;
use crate::wake::{Wake, WakeQueue};

use super::write::{self, Outbox, LINGER_BYTES, LINGER_TIME};
use super::{accept_loop, now, SHUTDOWN_GRACE};

/// Stack size of a connection thread. The deepest path (request parsing plus a response) uses
/// a few KiB; 128 KiB leaves a wide margin and is 1/16 of the default reservation.
pub const THREAD_STACK_BYTES: usize = 128 * 1024;

/// Memory mappings one thread costs: stack + guard page, signal stack + guard page.
const MAPPINGS_PER_THREAD: usize = 4;

/// Mappings and task ids left to everything else: the heap, libraries, other processes.
const KERNEL_RESERVE: usize = 2048;

/// Bytes read from the socket in one call.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Bytes copied out of the connection for one blocking write: the copy is what lets the lock
/// go while the write blocks. The size of the read buffer: each thread touches both, so a
/// larger slice would cost every connection memory for fewer system calls, which this model
/// is not about.
const WRITE_SLICE_BYTES: usize = READ_BUFFER_BYTES;

/// The longest a parked thread sleeps before it looks at its socket for a hang-up. Five looks
/// a second per parked connection is the price; a gone client's thread is freed within it.
pub const HANGUP_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// A connection as the registry knows it: its socket, and its thread's wake once running.
type Registered = (Arc<TcpStream>, Option<Wake>);

/// Open connections, so that shutdown can reach threads blocked in `read` (by shutting the
/// socket's read side) and threads asleep in `park` (by waking them); and the thread budget.
struct Registry {
    connections: Mutex<HashMap<u64, Registered>>,
    /// Threads alive (connection threads and WebSocket readers); shutdown waits for zero.
    alive: AtomicUsize,
    /// How many may be alive at once: the most the kernel allows this process.
    thread_limit: usize,
    /// Whether the operator has been told that the limit was reached.
    warned: AtomicBool,
}

/// One thread's place in the budget, given back when dropped (when its thread ends, or at
/// once if the thread could not be started).
struct ThreadPermit(Arc<Registry>);

impl Drop for ThreadPermit {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Registry {
    /// A registry whose threads stay within `max_threads` (`0`: within what the kernel allows).
    fn new(max_threads: usize) -> Registry {
        let kernel = kernel_thread_limit();
        Registry {
            connections: Mutex::default(),
            alive: AtomicUsize::new(0),
            thread_limit: if max_threads == 0 { kernel } else { max_threads.min(kernel) },
            warned: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registered>> {
        lock(&self.connections)
    }

    /// A place for one more thread, or `None` if the budget is spent.
    fn reserve_thread(self: &Arc<Self>) -> Option<ThreadPermit> {
        if self.alive.fetch_add(1, Ordering::SeqCst) < self.thread_limit {
            return Some(ThreadPermit(self.clone()));
        }
        self.alive.fetch_sub(1, Ordering::SeqCst);
        if !self.warned.swap(true, Ordering::Relaxed) {
            crate::warn!(
                "the thread budget is spent (--max-threads, at most what vm.max_map_count, kernel.threads-max \
                 and kernel.pid_max allow); refusing more connections until threads end (--model epoll has no \
                 such limit)";
                threads = self.thread_limit,
            );
        }
        None
    }
}

/// The most threads the kernel lets this process run: the smallest of what
/// `vm.max_map_count`, `kernel.threads-max` and `kernel.pid_max` leave after a reserve for
/// everything else. Off Linux no limit is known, and a failed thread creation is the limit.
fn kernel_thread_limit() -> usize {
    let read = |path: &str| fs::read_to_string(path).ok().and_then(|text| text.trim().parse::<usize>().ok());
    let by_mappings =
        read("/proc/sys/vm/max_map_count").map(|n| n.saturating_sub(KERNEL_RESERVE) / MAPPINGS_PER_THREAD);
    let by_tasks = ["/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max"]
        .into_iter()
        .filter_map(read)
        .map(|n| n.saturating_sub(KERNEL_RESERVE));
    by_mappings.into_iter().chain(by_tasks).min().unwrap_or(usize::MAX)
}

/// Accepts connections until shutdown, one thread each; then shuts down gracefully.
pub fn run(listener: TcpListener, app: Arc<App>) -> io::Result<()> {
    let registry = Arc::new(Registry::new(app.config.max_threads));
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut next_key = 0u64;
    accept_loop(&listener, &app, &admitted, |stream, peer, admission| {
        let Some(permit) = registry.reserve_thread() else {
            return Err(stream);
        };
        next_key += 1;
        let key = next_key;
        // Shared, not duplicated: one file descriptor per connection, however many threads
        // (this one, a WebSocket's reader, shutdown) use it. `&TcpStream` reads and writes.
        let stream = Arc::new(stream);
        registry.lock().insert(key, (stream.clone(), None));
        let (thread_app, thread_registry) = (app.clone(), registry.clone());
        let spawned = thread::Builder::new().stack_size(THREAD_STACK_BYTES).spawn(move || {
            serve_connection(stream, peer, &thread_app, &thread_registry, key);
            thread_registry.lock().remove(&key);
            drop((admission, permit));
        });
        match spawned {
            Ok(_) => Ok(()),
            Err(error) => {
                // The closure (with its permit and stream) is gone; the registry holds the
                // last reference to the stream.
                crate::error!("cannot start a connection thread"; error = error.to_string());
                let stream = registry.lock().remove(&key).map(|(stream, _)| stream);
                match stream.map(Arc::try_unwrap) {
                    Some(Ok(stream)) => Err(stream),
                    _ => Ok(()),
                }
            }
        }
    });
    drop(listener);
    shut_down(&registry);
    Ok(())
}

/// Wakes every connection so that it can finish, then waits for their threads.
fn shut_down(registry: &Registry) {
    for (stream, wake) in registry.lock().values() {
        if let Some(wake) = wake {
            wake.wake(); // parked: answer the poll
        }
        let _ = stream.shutdown(Shutdown::Read); // blocked in read: return 0 at once
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while registry.alive.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

/// One connection's thread: drive the [`Connection`] until it is finished.
///
/// The connection sits behind a mutex because a WebSocket needs two threads: this one writes
/// what the broker delivers and sleeps in `park`, while a second one ([`read_frames`]) sits in
/// a blocking `read` for the client's frames ([`Shared`]). Before the upgrade the locks are
/// never contended.
fn serve_connection(stream: Arc<TcpStream>, peer: IpAddr, app: &Arc<App>, registry: &Arc<Registry>, key: u64) {
    // A queue of one: the token is always 0, and the bell unparks this thread.
    let this_thread = thread::current();
    let woken = WakeQueue::new(move || this_thread.unpark());
    let wake = woken.wake_for(0);
    let mut taken = Vec::new();
    if let Some(entry) = registry.lock().get_mut(&key) {
        entry.1 = Some(wake.clone());
    }
    let _ = stream.set_nodelay(true);
    let connection =
        Arc::new(Shared { connection: Mutex::new(Connection::new(app.clone(), peer, now())), writing: Mutex::new(()) });
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut slice = Vec::with_capacity(WRITE_SLICE_BYTES);
    let mut reader: Option<thread::JoinHandle<()>> = None;
    let mut socket: &TcpStream = &stream;
    loop {
        // Emptied before advancing, so that a wake-up from now on rings (unparks) again.
        woken.take(&mut taken);
        locked(&connection).advance(now(), &wake);
        let wrote = match flush(socket, &connection, &mut slice) {
            Ok(wrote) => wrote,
            Err(_) => break, // the client is gone
        };
        let mut guard = locked(&connection);
        if guard.is_finished() {
            break;
        }
        if wrote || !guard.output().is_empty() {
            // Output drained: a stream that stopped reading the broker can read on. Output
            // left: a write waited until the next deadline, which `advance` acts on.
            continue;
        }
        let timeout = guard.next_deadline().map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match guard.waiting_for() {
            Waiting::ForInput => {
                // A zero timeout means "block forever" to set_read_timeout: use 1 ms instead.
                let _ = stream.set_read_timeout(Some(timeout.unwrap_or(Duration::MAX).max(Duration::from_millis(1))));
                let room = guard.input_room().clamp(1, buf.len());
                match socket.read(&mut buf[..room]) {
                    Ok(0) => guard.receive_eof(),
                    Ok(n) => guard.receive(&buf[..n]),
                    // The deadline passed: `advance` acts on it.
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                    }
                    Err(_) => break,
                }
            }
            Waiting::ForBroker | Waiting::ForInputAndBroker => {
                let waiting = guard.waiting_for();
                if waiting == Waiting::ForInputAndBroker && reader.is_none() {
                    reader = spawn_reader(&stream, &connection, &wake, registry);
                    if reader.is_none() {
                        guard.close_overloaded();
                        drop(guard);
                        let _ = flush(socket, &connection, &mut slice);
                        break;
                    }
                }
                drop(guard);
                if waiting == Waiting::ForInputAndBroker {
                    // A WebSocket's reader thread sees a hang-up itself and wakes this one.
                    match timeout {
                        Some(timeout) => thread::park_timeout(timeout),
                        None => thread::park(),
                    }
                } else {
                    // A parked poll or an SSE stream has nobody reading: this thread looks.
                    thread::park_timeout(timeout.map_or(HANGUP_CHECK_INTERVAL, |t| t.min(HANGUP_CHECK_INTERVAL)));
                    if has_hung_up(&stream) {
                        locked(&connection).receive_eof();
                    }
                }
            }
            Waiting::ForClose => break,
        }
    }
    if let Some(reader) = reader {
        // Wake the reader from its blocking read and wait for it.
        let _ = stream.shutdown(Shutdown::Both);
        let _ = reader.join();
    } else {
        linger_close(&mut socket, &mut buf);
    }
}

/// Has the client shut down its side, or the connection failed? A `poll(2)` that does not
/// wait: `POLLRDHUP` (Linux) is the peer's FIN even while unread bytes wait in front of it.
fn has_hung_up(stream: &TcpStream) -> bool {
    let mut fds = [os::PollFd::new(stream.as_fd(), os::POLLRDHUP)];
    match os::poll_ready(&mut fds, 0) {
        Ok(_) => fds[0].revents() & (os::POLLRDHUP | os::POLLHUP | os::POLLERR) != 0,
        Err(_) => false,
    }
}

/// What a connection's threads share: the [`Connection`], and the right to write to its
/// socket. They are separate locks so that a write that blocks holds only the second: the
/// other thread can still hand the connection bytes and advance it meanwhile, and no two
/// threads ever write (and so interleave) at once.
struct Shared {
    connection: Mutex<Connection>,
    writing: Mutex<()>,
}

/// The connection, locked (poison-tolerant, see [`crate::sync`]).
fn locked(shared: &Shared) -> std::sync::MutexGuard<'_, Connection> {
    lock(&shared.connection)
}

/// Starts the second thread of a WebSocket connection (see [`read_frames`]), if the thread
/// budget and the kernel allow it.
fn spawn_reader(
    stream: &Arc<TcpStream>,
    connection: &Arc<Shared>,
    wake: &Wake,
    registry: &Arc<Registry>,
) -> Option<thread::JoinHandle<()>> {
    let permit = registry.reserve_thread()?;
    let stream = stream.clone();
    let (connection, wake) = (connection.clone(), wake.clone());
    let read = move || {
        read_frames(stream, &connection, &wake);
        drop(permit);
    };
    thread::Builder::new().stack_size(THREAD_STACK_BYTES).spawn(read).ok()
}

/// A WebSocket's reading thread: blocks in `read`, hands the bytes to the connection, writes
/// any replies (pongs, echoes, close frames) itself, and wakes the writing thread so that it
/// sees state changes. Ends at EOF, on an error, or when the connection is finished.
fn read_frames(stream: Arc<TcpStream>, connection: &Shared, wake: &Wake) {
    let mut socket: &TcpStream = &stream;
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut slice = Vec::with_capacity(WRITE_SLICE_BYTES);
    let _ = stream.set_read_timeout(None);
    loop {
        let read = socket.read(&mut buf);
        {
            let mut guard = locked(connection);
            match read {
                Ok(0) => guard.receive_eof(),
                Ok(n) => guard.receive(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => guard.receive_eof(),
            }
            guard.advance(now(), wake);
        }
        let failed = flush(socket, connection, &mut slice).is_err();
        let done = {
            let guard = locked(connection);
            failed || guard.is_finished() || guard.waiting_for() != Waiting::ForInputAndBroker
        };
        wake.wake();
        if done {
            return;
        }
    }
}

/// Writes what the connection has queued ([`write::flush`]), each write blocking no later than
/// the connection's next deadline. The lock is held only to copy a slice out and to report
/// what went, never while the socket blocks. Returns whether anything was written; stops
/// early, with output left, when a write waited until the deadline: `advance` then decides
/// (a slow consumer is the connection's call, not the socket's).
fn flush(socket: &TcpStream, connection: &Shared, slice: &mut Vec<u8>) -> io::Result<bool> {
    let _writing = lock(&connection.writing);
    write::flush(&mut { socket }, &mut Lent { connection, socket, slice })
}

/// A shared connection's output, lent a slice at a time (see [`flush`]).
struct Lent<'a> {
    connection: &'a Shared,
    socket: &'a TcpStream,
    slice: &'a mut Vec<u8>,
}

impl Outbox for Lent<'_> {
    fn next_bytes(&mut self) -> Option<&[u8]> {
        let deadline = {
            let guard = locked(self.connection);
            let output = guard.output();
            if output.is_empty() {
                return None;
            }
            self.slice.clear();
            self.slice.extend_from_slice(&output[..output.len().min(WRITE_SLICE_BYTES)]);
            guard.next_deadline()
        };
        // A zero timeout means "block forever" to set_write_timeout: 1 ms at least.
        let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
        let _ = self.socket.set_write_timeout(wait);
        Some(self.slice)
    }

    fn wrote(&mut self, n: usize) {
        // After a write that may have blocked: the time is read again.
        locked(self.connection).consume_output(n, Instant::now());
    }
}

/// Closes our sending side, then reads and discards for a moment so that the client receives
/// the last response instead of a reset.
fn linger_close(stream: &mut &TcpStream, buf: &mut [u8]) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with_limit(thread_limit: usize) -> Arc<Registry> {
        Arc::new(Registry::new(thread_limit))
    }

    #[test]
    fn thread_budget_refuses_past_its_limit_and_frees_a_place_when_a_thread_ends() {
        let registry = registry_with_limit(2);
        let first = registry.reserve_thread().expect("first place");
        let _second = registry.reserve_thread().expect("second place");
        assert!(registry.reserve_thread().is_none(), "the third exceeds the limit");
        drop(first);
        assert!(registry.reserve_thread().is_some(), "a place was given back");
    }

    #[test]
    fn kernel_thread_limit_stays_below_the_mapping_limit() {
        let limit = kernel_thread_limit();
        if let Ok(text) = fs::read_to_string("/proc/sys/vm/max_map_count") {
            let max_map_count: usize = text.trim().parse().unwrap();
            assert!(limit * MAPPINGS_PER_THREAD < max_map_count);
        }
        assert!(limit > 0);
    }
}
