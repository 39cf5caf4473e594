//! The load generator's event loop: many client connections on one thread.
//!
//! The server's own [`Poller`] watches every socket; a ready socket is read until it would
//! block and its bytes go to its [`Client`] (a sans-I/O [`Subscriber`](super::peer::Subscriber)
//! or [`Echoer`](super::peer::Echoer)), whose replies are written until the socket would block.
//! Every byte read and written is counted, per connection, so that a scenario can report the
//! bytes on the wire (HTTP heads, chunk sizes, SSE field names, frame headers included).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::server::poller::{Backend, Interest, Poller, Ready};

/// What the engine drives: bytes in, replies out.
pub trait Client {
    /// Takes bytes read from the socket, appends what to send to `out`. An error closes the
    /// connection (the engine records it).
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String>;
}

impl Client for super::peer::Subscriber {
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String> {
        super::peer::Subscriber::receive(self, bytes, out, now)
    }
}

impl Client for super::peer::Echoer {
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String> {
        super::peer::Echoer::receive(self, bytes, out, now)
    }
}

/// One client connection.
pub struct Connection<C> {
    pub client: C,
    stream: TcpStream,
    out: Vec<u8>,
    /// Bytes read from and written to the socket since it was opened.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Why the connection ended, if it has.
    pub closed: Option<String>,
    watching_writes: bool,
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
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let token = self.connections.len();
        self.poller.register(stream.as_fd(), token, Interest::READABLE)?;
        self.connections.push(Connection {
            client,
            stream,
            out: first,
            bytes_read: 0,
            bytes_written: 0,
            closed: None,
            watching_writes: false,
        });
        self.flush(token);
        Ok(token)
    }

    /// Waits up to `timeout` for sockets to be ready and serves them; returns how many were.
    pub fn turn(&mut self, timeout: Duration) -> io::Result<usize> {
        let mut ready = std::mem::take(&mut self.ready);
        self.poller.wait(&mut ready, Some(timeout))?;
        let now = Instant::now();
        for event in &ready {
            if event.readable || event.hangup || event.error {
                self.read(event.token, now);
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
        self.connections[token].out.extend_from_slice(bytes);
        self.flush(token);
    }

    fn read(&mut self, token: usize, now: Instant) {
        let connection = &mut self.connections[token];
        while connection.closed.is_none() {
            match (&connection.stream).read(&mut self.buf) {
                Ok(0) => connection.closed = Some("closed by the server".into()),
                Ok(n) => {
                    connection.bytes_read += n as u64;
                    if let Err(error) = connection.client.receive(&self.buf[..n], &mut connection.out, now) {
                        connection.closed = Some(error);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => connection.closed = Some(e.to_string()),
            }
        }
        if connection.closed.is_some() {
            let _ = self.poller.deregister(connection.stream.as_fd());
        }
    }

    fn flush(&mut self, token: usize) {
        let connection = &mut self.connections[token];
        if connection.closed.is_some() {
            return;
        }
        let mut written = 0;
        while written < connection.out.len() {
            match (&connection.stream).write(&connection.out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    connection.closed = Some(e.to_string());
                    let _ = self.poller.deregister(connection.stream.as_fd());
                    return;
                }
            }
        }
        connection.bytes_written += written as u64;
        connection.out.drain(..written);
        // Watch for writability only while bytes wait, as the server does.
        let want_writes = !connection.out.is_empty();
        if want_writes != connection.watching_writes {
            let interest = if want_writes { Interest::BOTH } else { Interest::READABLE };
            if self.poller.modify(connection.stream.as_fd(), token, interest).is_ok() {
                connection.watching_writes = want_writes;
            }
        }
    }
}
