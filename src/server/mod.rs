//! The server models: what drives the sans-I/O [`Connection`](crate::connection::Connection)s.
//!
//! - [`threads`]: one OS thread per connection with blocking reads and writes. Simple and
//!   honest about its cost: a parked long poll is a sleeping thread.
//! - [`event_loop`]: a few worker threads, each multiplexing thousands of non-blocking
//!   sockets with a [`poller::Poller`] (epoll, or poll(2)); a parked long poll is a table
//!   entry and a timer.
//! - [`poller`], [`notify`]: readiness and cross-thread wake-ups for the event loop.
//! - [`write`](mod@write): writing a connection's output and closing in stages, one way for both models.
//!
//! - [`sys`]: the crate's only `unsafe`, behind safe APIs: the OS calls std lacks (signals,
//!   epoll, poll, eventfd, rlimit, CPU affinity) and the AVX2 UTF-8 check.
//!
//! [`Server::bind`] opens the listening socket and builds the shared [`App`]; [`Server::run`]
//! serves until [`ShutdownHandle::shutdown`] is called (by the signal thread in `main`, or by a
//! test), then shuts down gracefully: it stops accepting, answers parked polls, closes idle
//! keep-alive connections and returns.

// No `forbid(unsafe_code)` here: it would also bind `sys`. The crate root denies unsafe code
// everywhere, and only `sys` lifts that.

pub mod event_loop;
pub mod notify;
pub mod poller;
pub mod sys;
pub mod threads;
pub mod write;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::App;
use crate::broker::memory::MemoryBroker;
use crate::broker::redis::RedisBroker;
use crate::broker::Broker;
use crate::config::{BrokerUrl, Config, Model};
use crate::gate::rate::{AddressSlot, ConnectionsPerAddress};
use crate::http::request::Version;
use crate::http::response::{format_http_date, write_response, Framing, Response};
use crate::server::sys::os;
use crate::stats::Refusal;
use crate::time::{Instant, Now};

/// A bound, not yet running server.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// Asks a running server to shut down gracefully. Cheap to clone.
#[derive(Clone)]
pub struct ShutdownHandle {
    app: Arc<App>,
    local_addr: SocketAddr,
}

/// The time as the drivers read it: the one place the server reads the clocks.
pub fn now() -> Now {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    Now { instant: Instant::now(), unix_ms }
}

impl Server {
    /// Binds the listening socket and creates the broker. A Redis broker is given a few
    /// seconds to subscribe; if Redis is down the server starts anyway, answers publishes
    /// with 503 and keeps reconnecting (see `broker::redis`).
    pub fn bind(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(&config.addr)?;
        os::set_listen_backlog(std::os::fd::AsFd::as_fd(&listener), config.backlog)?;
        let local_addr = listener.local_addr()?;
        let broker: Arc<dyn Broker> = match &config.broker {
            BrokerUrl::Memory => Arc::new(MemoryBroker::new(config.broker_limits())),
            BrokerUrl::Redis(url) => {
                let (timeout, connections) = (config.redis_timeout, config.redis_connections);
                Arc::new(RedisBroker::start(url.clone(), config.broker_limits(), timeout, connections)?)
            }
            BrokerUrl::RedisCluster(url) => {
                let (timeout, connections) = (config.redis_timeout, config.redis_connections);
                Arc::new(RedisBroker::start_cluster(url.clone(), config.broker_limits(), timeout, connections)?)
            }
        };
        let app = Arc::new(App::new(config, broker));
        Ok(Server { app, listener, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { app: self.app.clone(), local_addr: self.local_addr }
    }

    /// Serves until shut down.
    pub fn run(self) -> io::Result<()> {
        match self.app.config.model {
            Model::Threads => threads::run(self.listener, self.app),
            Model::EventLoop => event_loop::run(self.listener, self.app),
        }
    }

    /// Runs the server on a background thread (tests and benchmarks).
    pub fn spawn(self) -> io::Result<RunningServer> {
        let addr = self.local_addr;
        let shutdown = self.shutdown_handle();
        let thread = thread::Builder::new().name("realtime-server".into()).spawn(move || self.run())?;
        Ok(RunningServer { addr, shutdown, thread: Some(thread) })
    }
}

impl ShutdownHandle {
    /// Starts a graceful shutdown; [`Server::run`] returns once it is complete.
    pub fn shutdown(&self) {
        self.app.begin_shutdown();
        // The accept loop is blocked in accept(2): a connection of our own wakes it up to see
        // the flag. The listener may be bound to 0.0.0.0, which is not connectable everywhere.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        let _ = TcpStream::connect(wake);
    }
}

/// How long a graceful shutdown waits for connections to finish (answered polls, last
/// chunks, WebSocket closing handshakes) before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A slot under `--max-connections` (and under `--max-conns-per-ip` for its address), held for
/// a connection's whole life: dropping it frees the slot. Counting admissions in the accept
/// loop (rather than live `Connection`s) makes the limit exact even while a new connection's
/// thread is still starting.
///
/// Small, because the event loop keeps one in every connection's slot: the client's address is
/// handed over beside it (the connection keeps that copy), and the per-address share is boxed,
/// since without `--max-conns-per-ip` (behind a proxy, every client has the proxy's address)
/// there is none.
pub struct Admission {
    admitted: Arc<AtomicUsize>,
    _address_slot: Option<Box<AddressSlot>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The accept loop both models share: accepts until shutdown, answers 503 past
/// `--max-connections` and 429 past `--max-conns-per-ip` without spending anything else on the
/// connection, and hands every admitted connection to `handoff`, which gives the stream back
/// if it could not take it.
fn accept_loop(
    listener: &TcpListener,
    app: &App,
    admitted: &Arc<AtomicUsize>,
    mut handoff: impl FnMut(TcpStream, IpAddr, Admission) -> Result<(), TcpStream>,
) {
    let per_address = app.config.max_conns_per_ip.map(ConnectionsPerAddress::new);
    for stream in listener.incoming() {
        if app.is_shutting_down() {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // EMFILE/ENFILE: out of file descriptors. Back off instead of spinning; the
                // pending connection is accepted once another one closes.
                crate::error!("accept failed; retrying in 50 ms"; error = error.to_string());
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // A socket whose peer is already gone has no address; it will fail its first read.
        let peer = stream.peer_addr().map(|addr| addr.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let address_slot = match &per_address {
            None => None,
            Some(limit) => match limit.admit(peer) {
                Some(slot) => Some(Box::new(slot)),
                None => {
                    app.stats.refusal(Refusal::Conns);
                    // RFC 6585 §4: 429 "Too Many Requests", here too many at once from one address.
                    refuse(app, stream, 429, "too many connections from this address");
                    continue;
                }
            },
        };
        if admitted.fetch_add(1, Ordering::SeqCst) >= app.config.max_connections {
            admitted.fetch_sub(1, Ordering::SeqCst);
            app.stats.refused();
            refuse(app, stream, 503, "too many connections");
            continue;
        }
        let admission = Admission { admitted: admitted.clone(), _address_slot: address_slot };
        if let Err(stream) = handoff(stream, peer, admission) {
            refuse(app, stream, 503, "server overloaded");
        }
    }
}

/// Answers `status` and closes, spending no thread or buffer on the connection.
fn refuse(app: &App, stream: TcpStream, status: u16, why: &str) {
    app.stats.response_sent(status);
    let mut out = Vec::new();
    let framing = Framing { version: Version::Http11, keep_alive: false, head_only: false };
    write_response(&mut out, &Response::text(status, why), framing, &format_http_date(now().unix_secs()));
    // A fresh socket's send buffer takes these few bytes at once; never block the accept loop.
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write(&out);
}

/// A server running on a background thread; shuts down when dropped.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    pub fn app(&self) -> &Arc<App> {
        &self.shutdown.app
    }

    /// Shuts down gracefully and waits for the server to finish.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.shutdown.shutdown();
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err(io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
