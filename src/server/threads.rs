//! The thread-per-connection server model.
//!
//! The accept loop hands every connection to a new OS thread, which loops:
//!
//! ```text
//! advance the Connection ─► write its output (blocking) ─► what is it waiting for?
//!      ▲                                                      │ input: read(2), blocking,
//!      │                                                      │        until the next deadline
//!      └──────────────────────────────────────────────────────┘ broker: park the thread
//!                                                                      until woken or the deadline
//! ```
//!
//! It is the easiest model to read and it shows the cost the event loop removes: a parked
//! long poll is a whole thread asleep in `park_timeout`, with its stack. Each thread gets an
//! explicit stack of [`THREAD_STACK_BYTES`] instead of Rust's 2 MiB default; the memory a
//! thread really uses is what it touches, so the default would mostly cost address space,
//! but the explicit size keeps 10,000 threads well inside it.
//!
//! The broker wakes a parked thread through a [`Waker`] that unparks it (`ThreadWaker`).
//! `park`/`unpark` keep a token, so a wake-up that arrives before the thread parks is not lost.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::app::App;
use crate::connection::{Connection, Waiting};

use super::{accept_loop, now, SHUTDOWN_GRACE};

/// Stack size of a connection thread. The deepest path (request parsing plus a response) uses
/// a few KiB; 128 KiB leaves a wide margin and is 1/16 of the default reservation.
pub const THREAD_STACK_BYTES: usize = 128 * 1024;

/// Bytes read from the socket in one call.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// How long a closing connection keeps reading (and discarding) after its last response, and
/// how much. Closing with unread input makes the kernel send a reset that can destroy the
/// response before the client reads it (RFC 9112 §9.6 on closing "in stages").
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Wakes a parked connection thread.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A connection as the registry knows it: its socket, and its thread's waker once running.
type Registered = (Arc<TcpStream>, Option<Waker>);

/// Open connections, so that shutdown can reach threads blocked in `read` (by shutting the
/// socket's read side) and threads asleep in `park` (by waking them).
#[derive(Default)]
struct Registry {
    connections: Mutex<HashMap<u64, Registered>>,
    /// Connection threads alive; shutdown waits for zero.
    alive: AtomicUsize,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registered>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Accepts connections until shutdown, one thread each; then shuts down gracefully.
pub fn run(listener: TcpListener, app: Arc<App>) -> io::Result<()> {
    let registry = Arc::new(Registry::default());
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut next_key = 0u64;
    accept_loop(&listener, &app, &admitted, |stream, admission| {
        next_key += 1;
        let key = next_key;
        // Shared, not duplicated: one file descriptor per connection, however many threads
        // (this one, a WebSocket's reader, shutdown) use it. `&TcpStream` reads and writes.
        let stream = Arc::new(stream);
        registry.lock().insert(key, (stream.clone(), None));
        registry.alive.fetch_add(1, Ordering::SeqCst);
        let (thread_app, thread_registry) = (app.clone(), registry.clone());
        let spawned = thread::Builder::new().stack_size(THREAD_STACK_BYTES).spawn(move || {
            serve_connection(stream, &thread_app, &thread_registry, key);
            thread_registry.lock().remove(&key);
            thread_registry.alive.fetch_sub(1, Ordering::SeqCst);
            drop(admission);
        });
        match spawned {
            Ok(_) => Ok(()),
            Err(error) => {
                // The closure (and its reference) is gone; the registry's is the last one.
                eprintln!("realtime: cannot start a connection thread: {error}");
                registry.alive.fetch_sub(1, Ordering::SeqCst);
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
    for (stream, waker) in registry.lock().values() {
        if let Some(waker) = waker {
            waker.wake_by_ref(); // parked: answer the poll
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
/// a blocking `read` for the client's frames. Before the upgrade the lock is never contended.
fn serve_connection(stream: Arc<TcpStream>, app: &Arc<App>, registry: &Registry, key: u64) {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    if let Some(entry) = registry.lock().get_mut(&key) {
        entry.1 = Some(waker.clone());
    }
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(app.config.send_timeout));
    let connection = Arc::new(Mutex::new(Connection::new(app.clone(), now())));
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut reader: Option<thread::JoinHandle<()>> = None;
    let mut socket: &TcpStream = &stream;
    loop {
        let mut guard = lock(&connection);
        guard.advance(now(), &waker);
        let wrote = !guard.output().is_empty();
        if write_output(&mut socket, &mut guard).is_err() {
            break; // the client is gone or took nothing for `send_timeout`
        }
        if guard.is_finished() {
            break;
        }
        if wrote {
            // A stream stops reading the broker while its output is full: now that the output
            // has drained, let it read on before waiting for anything else.
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
                if guard.waiting_for() == Waiting::ForInputAndBroker && reader.is_none() {
                    reader = spawn_reader(&stream, &connection, &waker);
                    if reader.is_none() {
                        break;
                    }
                }
                drop(guard);
                match timeout {
                    Some(timeout) => thread::park_timeout(timeout),
                    None => thread::park(),
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

fn lock(connection: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the second thread of a WebSocket connection (see [`read_frames`]).
fn spawn_reader(
    stream: &Arc<TcpStream>,
    connection: &Arc<Mutex<Connection>>,
    waker: &Waker,
) -> Option<thread::JoinHandle<()>> {
    let stream = stream.clone();
    let (connection, waker) = (connection.clone(), waker.clone());
    thread::Builder::new().stack_size(THREAD_STACK_BYTES).spawn(move || read_frames(stream, &connection, &waker)).ok()
}

/// A WebSocket's reading thread: blocks in `read`, hands the bytes to the connection, writes
/// any replies (pongs, echoes, close frames) itself, and wakes the writing thread so that it
/// sees state changes. Ends at EOF, on an error, or when the connection is finished.
fn read_frames(stream: Arc<TcpStream>, connection: &Mutex<Connection>, waker: &Waker) {
    let mut socket: &TcpStream = &stream;
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let _ = stream.set_read_timeout(None);
    loop {
        let read = socket.read(&mut buf);
        let mut guard = lock(connection);
        match read {
            Ok(0) => guard.receive_eof(),
            Ok(n) => guard.receive(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => guard.receive_eof(),
        }
        guard.advance(now(), waker);
        let failed = write_output(&mut socket, &mut guard).is_err();
        let done = failed || guard.is_finished() || guard.waiting_for() != Waiting::ForInputAndBroker;
        drop(guard);
        waker.wake_by_ref();
        if done {
            return;
        }
    }
}

/// Writes everything the connection has queued.
fn write_output(stream: &mut &TcpStream, connection: &mut Connection) -> io::Result<()> {
    while !connection.output().is_empty() {
        match stream.write(connection.output()) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => connection.consume_output(n, Instant::now()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
