//! The load generator's event loop: many client connections on one thread.
//!
//! The server's own [`Poller`] watches every socket; a ready socket is read until a read
//! leaves room in the buffer (the socket is empty then; the poller is level-triggered) and its
//! bytes go to its [`Client`] (a sans-I/O [`Subscriber`],
//! [`Echoer`](super::peer::Echoer) or [`Abuser`](super::abuse::Abuser)), whose replies are
//! written until the socket would block. Every byte read and written is counted, per
//! connection, so that a scenario can report the bytes on the wire (HTTP heads, chunk sizes,
//! SSE field names, frame headers included).
//!
//! A scenario may also hold a connection's reading back ([`Engine::allow_reading`]): a slow
//! reader gets a few bytes per tick, a flood client none at all, and the engine then stops
//! asking the poller for readability so that a socket full of unread bytes does not wake it on
//! every turn. It may end a connection ([`Engine::close`]) and put a new one in its place
//! ([`Engine::reopen`]); a connection that has ended gives its descriptor back at once, so a
//! long run with churn holds no more descriptors than it has live connections.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::client::subscriber::{Sink, Subscriber};
use crate::config::Backend;
use crate::server::poller::{Interest, Poller, Ready};

/// What the engine drives: bytes in, replies out.
pub trait Client {
    /// Takes bytes read from the socket, appends what to send to `out`. An error closes the
    /// connection (the engine records it).
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String>;
}

impl<S: Sink> Client for Subscriber<S> {
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String> {
        Subscriber::receive(self, bytes, out, now)
    }
}

impl Client for super::peer::Echoer {
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String> {
        super::peer::Echoer::receive(self, bytes, out, now)
    }
}

/// Why a connection ended at the client's own request ([`Engine::close`]).
pub const CLOSED_BY_CLIENT: &str = "closed by the client";

/// How the reason of a connection [`Engine::reopen`] could not open begins.
pub const CONNECT_FAILED: &str = "cannot connect";

/// One client connection.
pub struct Connection<C> {
    pub client: C,
    /// The socket, until the connection ends.
    stream: Option<TcpStream>,
    out: Vec<u8>,
    /// Bytes read from and written to the socket since it was opened.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Why the connection ended, if it has.
    pub closed: Option<String>,
    /// Bytes the engine may still read (`None`: no limit).
    allowance: Option<u64>,
    /// What the poller is asked to report for this socket.
    interest: Interest,
}

impl<C> Connection<C> {
    /// A connection just opened, with `first` waiting to be sent.
    fn opened(client: C, stream: TcpStream, first: Vec<u8>) -> Connection<C> {
        Connection {
            client,
            stream: Some(stream),
            out: first,
            bytes_read: 0,
            bytes_written: 0,
            closed: None,
            allowance: None,
            interest: Interest::READABLE,
        }
    }

    /// Bytes the client wants sent that the socket has not taken yet.
    pub fn pending(&self) -> usize {
        self.out.len()
    }
}

/// Many client connections, one thread.
pub struct Engine<C> {
    poller: Poller,
    pub connections: Vec<Connection<C>>,
    ready: Vec<Ready>,
    buf: Vec<u8>,
}

impl<C: Client> Engine<C> {
    pub fn new() -> io::Result<Engine<C>> {
        Ok(Engine {
            poller: Poller::new(Backend::native())?,
            connections: Vec::new(),
            ready: Vec::new(),
            buf: vec![0; 64 * 1024],
        })
    }

    /// Connects to `addr` and starts `client`, whose first bytes (its request) are `first`.
    /// The connect itself blocks (on loopback it takes microseconds); everything after does not.
    pub fn open(&mut self, addr: SocketAddr, client: C, first: Vec<u8>) -> io::Result<usize> {
        let stream = connect(addr)?;
        let token = self.connections.len();
        self.poller.register(stream.as_fd(), token, Interest::READABLE)?;
        self.connections.push(Connection::opened(client, stream, first));
        self.flush(token);
        Ok(token)
    }

    /// Ends connection `token` (if it is still open) and opens a new one in its place, for
    /// `client`. On failure the slot stays closed, with the reason.
    pub fn reopen(&mut self, token: usize, addr: SocketAddr, client: C, first: Vec<u8>) -> io::Result<()> {
        self.close(token);
        let stream = match connect(addr).and_then(|stream| {
            self.poller.register(stream.as_fd(), token, Interest::READABLE)?;
            Ok(stream)
        }) {
            Ok(stream) => stream,
            Err(error) => {
                let connection = &mut self.connections[token];
                connection.closed = Some(format!("{CONNECT_FAILED}: {error}"));
                (connection.bytes_read, connection.bytes_written) = (0, 0);
                return Err(error);
            }
        };
        self.connections[token] = Connection::opened(client, stream, first);
        self.flush(token);
        Ok(())
    }

    /// Ends connection `token` now. Bytes the client has not sent are dropped; if bytes the
    /// server sent are still unread, the kernel answers the close with a reset instead of a
    /// FIN (RFC 2525 §2.17; Linux's `tcp_close`), which is how a scenario sends an RST
    /// without `SO_LINGER`.
    pub fn close(&mut self, token: usize) {
        let connection = &mut self.connections[token];
        if connection.closed.is_none() {
            connection.closed = Some(CLOSED_BY_CLIENT.into());
        }
        self.release(token);
    }

    /// Lets the engine read at most `bytes` more from connection `token` (`None`: any amount)
    /// until the next call. At zero it stops watching the socket for input.
    pub fn allow_reading(&mut self, token: usize, bytes: Option<u64>) {
        self.connections[token].allowance = bytes;
        self.watch(token);
    }

    /// Waits up to `timeout` for sockets to be ready and serves them; returns how many were.
    pub fn turn(&mut self, timeout: Duration) -> io::Result<usize> {
        let mut ready = std::mem::take(&mut self.ready);
        self.poller.wait(&mut ready, Some(timeout))?;
        let now = Instant::now();
        for event in &ready {
            if event.readable || event.hangup || event.error {
                self.read(event.token, now, event.hangup || event.error);
            }
            self.flush(event.token);
        }
        let count = ready.len();
        self.ready = ready;
        Ok(count)
    }

    /// Runs [`Engine::turn`] until `deadline` or until `done` says so.
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&mut Engine<C>) -> bool) -> io::Result<()> {
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.turn(left.min(Duration::from_millis(50)))?;
        }
        Ok(())
    }

    /// Bytes a client wants sent outside a socket event (a publish-driven write, say).
    pub fn send(&mut self, token: usize, bytes: &[u8]) {
        let connection = &mut self.connections[token];
        if connection.stream.is_some() {
            connection.out.extend_from_slice(bytes);
            self.flush(token);
        }
    }

    /// Reads what the allowance permits. `hung_up`: the poller reported a hang-up or an error,
    /// which a connection that may not read would otherwise never learn about.
    fn read(&mut self, token: usize, now: Instant, hung_up: bool) {
        let connection = &mut self.connections[token];
        while connection.closed.is_none() {
            let Some(stream) = &connection.stream else { return };
            let room = connection.allowance.map_or(self.buf.len(), |left| (left as usize).min(self.buf.len()));
            if room == 0 {
                if hung_up {
                    connection.closed = Some("hung up by the server".into());
                }
                break;
            }
            match (&*stream).read(&mut self.buf[..room]) {
                Ok(0) => connection.closed = Some("closed by the server".into()),
                Ok(n) => {
                    connection.bytes_read += n as u64;
                    if let Some(left) = &mut connection.allowance {
                        *left -= n as u64;
                    }
                    if let Err(error) = connection.client.receive(&self.buf[..n], &mut connection.out, now) {
                        connection.closed = Some(error);
                    } else if n < room {
                        // The socket held less than there was room for: it is empty now. The
                        // poller is level-triggered, so bytes that arrive later are reported
                        // again; reading on until `WouldBlock` would cost a second system call
                        // for every wake-up (in a fan-out, for every delivery) to learn that.
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => connection.closed = Some(e.to_string()),
            }
        }
        if connection.closed.is_some() {
            self.release(token);
        } else if connection.allowance == Some(0) {
            self.watch(token);
        }
    }

    fn flush(&mut self, token: usize) {
        let connection = &mut self.connections[token];
        let Some(stream) = &connection.stream else { return };
        let mut written = 0;
        while written < connection.out.len() {
            match (&*stream).write(&connection.out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    connection.closed = Some(e.to_string());
                    self.release(token);
                    return;
                }
            }
        }
        connection.bytes_written += written as u64;
        connection.out.drain(..written);
        self.watch(token);
    }

    /// Asks the poller for what the connection needs now: input while it may read, writability
    /// only while bytes wait (as the server does).
    fn watch(&mut self, token: usize) {
        let connection = &mut self.connections[token];
        let Some(stream) = &connection.stream else { return };
        let interest = Interest { readable: connection.allowance != Some(0), writable: !connection.out.is_empty() };
        if interest != connection.interest && self.poller.modify(stream.as_fd(), token, interest).is_ok() {
            connection.interest = interest;
        }
    }

    /// Forgets the socket of a connection that has ended, closing its descriptor.
    fn release(&mut self, token: usize) {
        let connection = &mut self.connections[token];
        if let Some(stream) = connection.stream.take() {
            let _ = self.poller.deregister(stream.as_fd());
        }
        connection.out = Vec::new();
    }
}

/// A non-blocking connection to `addr`, without Nagle's delay (the clients send small frames
/// they want on the wire at once).
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}
