//! The server models: what drives the sans-I/O [`Connection`](crate::connection::Connection)s.
//!
//! - [`threads`]: one OS thread per connection with blocking reads and writes. Simple and
//!   honest about its cost: a parked long poll is a sleeping thread.
//! - [`sys`]: the OS calls std lacks (signals), the crate's only `unsafe`.
//!
//! [`Server::bind`] opens the listening socket and builds the shared [`App`]; [`Server::run`]
//! serves until [`ShutdownHandle::shutdown`] is called (by the signal thread in `main`, or by a
//! test), then shuts down gracefully: it stops accepting, answers parked polls, closes idle
//! keep-alive connections and returns.

// No `forbid(unsafe_code)` here: it would also bind `sys`. The crate root denies unsafe code
// everywhere, and only `sys` lifts that.

pub mod sys;
pub mod threads;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::app::App;
use crate::broker::memory::MemoryBroker;
use crate::config::{Config, Model};
use crate::connection::Now;

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
    /// Binds the listening socket and creates the broker.
    pub fn bind(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(&config.addr)?;
        let local_addr = listener.local_addr()?;
        let broker = Arc::new(MemoryBroker::new(config.history, config.max_channels));
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
