//! The event-loop server model: a few threads, thousands of connections.
//!
//! ```text
//!  accept thread ──(round robin)──► worker 1 ... worker N      (N = --workers, one per core)
//!                                     │
//!                   ┌─────────────────┴──────────────────────────────────────┐
//!                   │ loop:                                                  │
//!                   │   wait for readiness  (poller: epoll, or poll(2))      │
//!                   │     up to the earliest deadline in the timer heap      │
//!                   │   read every readable socket until it is drained       │
//!                   │   take the tokens woken (the broker's wake-ups)        │
//!                   │   pop the deadlines that have passed                   │
//!                   │   for each connection touched: advance, write until    │
//!                   │     it would block, update its interest and deadline   │
//!                   └────────────────────────────────────────────────────────┘
//! ```
//!
//! Each connection is the same sans-I/O [`Connection`] the thread model drives; only the
//! waiting differs. A parked long poll is not a sleeping thread but an entry in the worker's
//! slot table, its wake-up left with the broker and one entry in the timer heap: a few hundred
//! bytes.
//!
//! - **Readiness, level-triggered.** A socket is registered for reading while its connection
//!   has room for input, and for writing only while bytes wait to be sent (otherwise an
//!   always-writable socket would wake the loop on every wait).
//! - **Wake-ups from other threads.** A connection's [`Wake`](crate::wake::Wake) is its slot
//!   number on the worker's [`WakeQueue`], whose bell writes the worker's [`Notifier`] when
//!   the queue was empty. The queue holds a slot once however many publishes wake it before
//!   the next turn.
//! - **Timers.** One binary heap per worker, keyed by deadline. A connection has at most one
//!   scheduled entry that matters (`Slot::scheduled`); entries made stale by a later change
//!   are recognised and skipped when they come due.
//! - **Shutdown.** The accept thread stops; every worker advances every connection once with
//!   the shutdown flag set (polls answer, streams end, WebSockets send 1001) and exits when its
//!   table is empty or [`SHUTDOWN_GRACE`] has passed.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::time::{Instant, Now};

use super::notify::Notifier;
use super::poller::{Interest, Poller, Ready};
use super::write::{flush, LINGER_BYTES, LINGER_TIME};
use super::{accept_loop, now, Admission, SHUTDOWN_GRACE};
use crate::app::App;
use crate::connection::Connection;
use crate::stats::WorkerStats;
use crate::sync::lock;
use crate::wake::WakeQueue;

/// The notifier's token; slot numbers are below it.
const NOTIFY_TOKEN: usize = usize::MAX;

/// Bytes read per `read(2)`. One buffer per worker, shared by all its connections.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How many times one turn may refill and flush a connection's output before moving on, so
/// that one fast stream cannot starve the others on its worker.
const MAX_FLUSHES_PER_TURN: usize = 4;

/// Slots the table grows by when it is full. A `Vec` doubles, so a table of 9,500
/// connections would hold room for 16,384 slots of a few hundred bytes each: up to half of an
/// idle connection's memory (README, "Idle connections"). Growing by a fixed step wastes at
/// most one step, and copying the table once per thousand connections costs nothing.
const SLOT_GROWTH: usize = 1024;

/// What a worker shares with the threads that give it work.
struct WorkerShared {
    notifier: Arc<Notifier>,
    /// Connections handed over by the accept thread.
    inbox: Mutex<Vec<(TcpStream, IpAddr, Admission)>>,
    /// Slots woken by the broker (or by a Redis reply); its bell is the notifier.
    woken: Arc<WakeQueue>,
    stats: Arc<WorkerStats>,
}

/// One entry of a worker's table.
struct Slot {
    stream: TcpStream,
    /// `None` once the connection is finished and the socket only lingers.
    connection: Option<Connection>,
    interest: Interest,
    /// The deadline this slot has in the timer heap, if any.
    scheduled: Option<Instant>,
    /// Output bytes counted in the worker's `bytes_queued` (a `u32`, as the next field, because
    /// every connection has one: a connection's count stops at 4 GiB).
    queued_bytes: u32,
    /// Whether this slot is counted in the worker's `parked_polls`.
    parked: bool,
    /// Bytes read and thrown away while lingering (at most `LINGER_BYTES`).
    discarded: u32,
    /// Frees the `--max-connections` slot when dropped.
    _admission: Admission,
}

struct Worker {
    shared: Arc<WorkerShared>,
    app: Arc<App>,
    poller: Poller,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    buf: Vec<u8>,
    /// Connections that used up their turn with more to send: driven again on the next
    /// turn, without waiting for an event.
    again: Vec<usize>,
    /// The tokens taken from the wake queue this turn (kept for its capacity).
    woken: Vec<u32>,
    /// When every connection was told about the shutdown.
    shutdown_started: Option<Instant>,
}

/// Serves on `--workers` event loops until shutdown.
pub fn run(listener: TcpListener, app: Arc<App>) -> io::Result<()> {
    let count = match app.config.workers {
        0 => thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let mut workers = Vec::with_capacity(count);
    let mut threads = Vec::with_capacity(count);
    for index in 0..count {
        let notifier = Arc::new(Notifier::new()?);
        let bell = notifier.clone();
        let shared = Arc::new(WorkerShared {
            notifier,
            inbox: Mutex::default(),
            woken: WakeQueue::new(move || {
                let _ = bell.notify();
            }),
            stats: app.stats.register_worker(),
        });
        let mut poller = Poller::new(app.config.poller)?;
        poller.register(shared.notifier.as_fd(), NOTIFY_TOKEN, Interest::READABLE)?;
        let worker = Worker {
            shared: shared.clone(),
            app: app.clone(),
            poller,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            buf: vec![0; READ_BUFFER_BYTES],
            again: Vec::new(),
            woken: Vec::new(),
            shutdown_started: None,
        };
        threads.push(thread::Builder::new().name(format!("realtime-worker-{index}")).spawn(move || worker.run())?);
        workers.push(shared);
    }
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut next = 0;
    accept_loop(&listener, &app, &admitted, |stream, peer, admission| {
        let worker = &workers[next % workers.len()];
        next += 1;
        lock(&worker.inbox).push((stream, peer, admission));
        let _ = worker.notifier.notify();
        Ok(())
    });
    drop(listener);
    for worker in &workers {
        let _ = worker.notifier.notify();
    }
    for thread in threads {
        if let Ok(Err(error)) = thread.join() {
            crate::error!("an event-loop worker failed"; error = error.to_string());
        }
    }
    Ok(())
}

impl Worker {
    fn run(mut self) -> io::Result<()> {
        let mut ready: Vec<Ready> = Vec::new();
        let mut touched: Vec<usize> = Vec::new();
        loop {
            let timeout = if self.again.is_empty() {
                self.timers.peek().map(|Reverse((deadline, _))| deadline.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            self.poller.wait(&mut ready, timeout)?;
            // Wake-ups this turn causes that can wait (the Redis link's writer) go out once, as
            // it ends: `crate::wake`, "Wake-ups held to the end of a turn".
            let _turn = crate::wake::Turn::begin();
            // One reading of the clocks per loop, not per connection: every connection driven
            // in it takes this time (its own turn already takes no time: `Connection::advance`),
            // so a deadline fires late by at most the loop's own work.
            let now = now();
            self.shared.stats.iterations.fetch_add(1, Ordering::Relaxed);
            touched.clear();
            touched.append(&mut self.again);
            for event in &ready {
                if event.token == NOTIFY_TOKEN {
                    self.take_work(&mut touched);
                } else {
                    self.on_ready(*event, &mut touched);
                }
            }
            self.take_due_timers(now.instant, &mut touched);
            if self.app.is_shutting_down() {
                match self.shutdown_started {
                    None => {
                        // Tell every connection once; each answers, ends or closes.
                        self.shutdown_started = Some(Instant::now());
                        touched.extend((0..self.slots.len()).filter(|&t| self.slots[t].is_some()));
                    }
                    Some(started) if started.elapsed() >= SHUTDOWN_GRACE => break,
                    Some(_) => {}
                }
            }
            for &token in &touched {
                self.drive(token, now);
            }
            if self.shutdown_started.is_some() && self.free.len() == self.slots.len() {
                break;
            }
        }
        Ok(())
    }

    /// The notifier fired: new connections from the accept thread, and wake-ups.
    fn take_work(&mut self, touched: &mut Vec<usize>) {
        // Drain first, then look at the queues (see `notify`): work queued after the look
        // comes with a fresh notification.
        let _ = self.shared.notifier.drain();
        let arrivals = std::mem::take(&mut *lock(&self.shared.inbox));
        for (stream, peer, admission) in arrivals {
            if let Some(token) = self.insert(stream, peer, admission) {
                touched.push(token);
            }
        }
        // Taken before advancing: a publish from now on queues the slot again.
        self.shared.woken.take(&mut self.woken);
        for &token in &self.woken {
            let token = token as usize;
            if self.slots.get(token).is_some_and(Option::is_some) {
                touched.push(token);
            }
        }
    }

    /// Adds a connection to the table and registers its socket.
    fn insert(&mut self, stream: TcpStream, peer: IpAddr, admission: Admission) -> Option<usize> {
        if stream.set_nonblocking(true).is_err() {
            return None;
        }
        let _ = stream.set_nodelay(true);
        let token = self.free.pop().unwrap_or(self.slots.len());
        // A wake-up names its slot in 32 bits; no process holds 4 billion sockets.
        if u32::try_from(token).is_err() {
            return None;
        }
        if self.poller.register(stream.as_fd(), token, Interest::READABLE).is_err() {
            return None;
        }
        let slot = Slot {
            connection: Some(Connection::new(self.app.clone(), peer, now())),
            stream,
            interest: Interest::READABLE,
            scheduled: None,
            queued_bytes: 0,
            parked: false,
            discarded: 0,
            _admission: admission,
        };
        if token == self.slots.len() {
            if self.slots.len() == self.slots.capacity() {
                self.slots.reserve_exact(SLOT_GROWTH);
            }
            self.slots.push(Some(slot));
        } else {
            self.slots[token] = Some(slot);
        }
        self.shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        Some(token)
    }

    /// A socket is ready: read what it has (writing happens in `drive`).
    fn on_ready(&mut self, event: Ready, touched: &mut Vec<usize>) {
        let Some(slot) = self.slots.get_mut(event.token).and_then(Option::as_mut) else { return };
        if event.readable || event.hangup || event.error {
            read_available(slot, &mut self.buf);
        }
        touched.push(event.token);
    }

    fn take_due_timers(&mut self, now: Instant, touched: &mut Vec<usize>) {
        while let Some(&Reverse((deadline, token))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if let Some(slot) = self.slots.get_mut(token).and_then(Option::as_mut) {
                if slot.scheduled == Some(deadline) {
                    slot.scheduled = None;
                    touched.push(token);
                }
            }
        }
    }

    /// Advances a connection and does everything it asks: write, close, wait.
    fn drive(&mut self, token: usize, now: Now) {
        let Some(slot) = self.slots.get_mut(token).and_then(Option::as_mut) else { return };
        let Some(connection) = slot.connection.as_mut() else {
            // Lingering after the last response: close on EOF or when the time is up.
            if slot.scheduled.is_none() || read_available(slot, &mut self.buf) {
                self.remove(token);
            }
            return;
        };
        let mut failed = false;
        let mut turn_used_up = true;
        // Made for each turn rather than kept in the slot: 16 bytes less per connection for an
        // atomic increment per turn. (The token fits: `insert` checked.)
        let wake = self.shared.woken.wake_for(token as u32);
        // The refills after a flush happen within the loop's time too.
        for _ in 0..MAX_FLUSHES_PER_TURN {
            connection.advance(now, &wake);
            let before = connection.output().len();
            failed = flush(&mut slot.stream, connection).is_err();
            // Output drained: a stream that paused for backpressure can read on at once.
            if failed || before == 0 || !connection.output().is_empty() {
                turn_used_up = false;
                break;
            }
        }
        if turn_used_up {
            self.again.push(token);
        }
        let stats = &self.shared.stats;
        let queued = u32::try_from(connection.output().len()).unwrap_or(u32::MAX);
        stats.bytes_queued.fetch_add(queued as usize, Ordering::Relaxed);
        stats.bytes_queued.fetch_sub(slot.queued_bytes as usize, Ordering::Relaxed);
        slot.queued_bytes = queued;
        let parked = connection.is_parked_poll();
        if parked != slot.parked {
            slot.parked = parked;
            if parked {
                stats.parked_polls.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.parked_polls.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if failed {
            self.remove(token);
            return;
        }
        if connection.is_finished() {
            self.start_linger(token);
            return;
        }
        let interest = Interest {
            readable: connection.input_room() > 0 && !connection.is_input_closed(),
            writable: !connection.output().is_empty(),
        };
        let deadline = connection.next_deadline();
        self.update_interest(token, interest);
        self.schedule(token, deadline);
    }

    fn update_interest(&mut self, token: usize, interest: Interest) {
        let Some(slot) = self.slots.get_mut(token).and_then(Option::as_mut) else { return };
        if slot.interest != interest && self.poller.modify(slot.stream.as_fd(), token, interest).is_ok() {
            slot.interest = interest;
        }
    }

    /// Makes sure the timer heap wakes the slot by `deadline`. An earlier entry already there
    /// is enough: when it fires, `drive` reschedules for whatever the deadline is then.
    fn schedule(&mut self, token: usize, deadline: Option<Instant>) {
        let Some(slot) = self.slots.get_mut(token).and_then(Option::as_mut) else { return };
        let Some(deadline) = deadline else { return };
        if slot.scheduled.is_none_or(|scheduled| deadline < scheduled) {
            slot.scheduled = Some(deadline);
            push_timer(&mut self.timers, deadline, token);
        }
    }

    /// The connection is done: send FIN, then read and discard until the client closes too
    /// (or `LINGER_TIME` passes). During shutdown, close at once.
    fn start_linger(&mut self, token: usize) {
        let lingering = self.shutdown_started.is_none();
        let Some(slot) = self.slots.get_mut(token).and_then(Option::as_mut) else { return };
        slot.connection = None; // unsubscribes and updates /stats
        if slot.parked {
            slot.parked = false;
            self.shared.stats.parked_polls.fetch_sub(1, Ordering::Relaxed);
        }
        if !lingering || slot.stream.shutdown(Shutdown::Write).is_err() {
            self.remove(token);
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        slot.scheduled = Some(deadline);
        push_timer(&mut self.timers, deadline, token);
        self.update_interest(token, Interest::READABLE);
    }

    fn remove(&mut self, token: usize) {
        let Some(slot) = self.slots.get_mut(token).and_then(Option::take) else { return };
        let _ = self.poller.deregister(slot.stream.as_fd());
        let stats = &self.shared.stats;
        stats.connections.fetch_sub(1, Ordering::Relaxed);
        stats.bytes_queued.fetch_sub(slot.queued_bytes as usize, Ordering::Relaxed);
        if slot.parked {
            stats.parked_polls.fetch_sub(1, Ordering::Relaxed);
        }
        self.free.push(token);
    }
}

/// Reads until the socket is drained, the connection's input is full, or the peer closed.
/// Adds a deadline to the timer heap, growing it by [`SLOT_GROWTH`] entries when full rather
/// than doubling it: nearly every connection has one entry, so a doubled heap would hold up to
/// 16 bytes of room per connection (README, "What an idle connection costs").
fn push_timer(timers: &mut BinaryHeap<Reverse<(Instant, usize)>>, deadline: Instant, token: usize) {
    if timers.len() == timers.capacity() {
        timers.reserve_exact(SLOT_GROWTH);
    }
    timers.push(Reverse((deadline, token)));
}

/// `true` when the peer is gone (EOF or error); for a lingering slot the bytes are discarded.
///
/// A read that returns less than it had room for has drained the socket (a TCP read takes
/// everything queued, up to the room), so it is the last: the readiness is level-triggered,
/// and anything that arrives later, a FIN too, is reported by the next wait. Reading on to
/// `EWOULDBLOCK` would cost a second `read(2)` per message for nothing.
fn read_available(slot: &mut Slot, buf: &mut [u8]) -> bool {
    loop {
        let room = slot.connection.as_ref().map_or(buf.len(), |c| c.input_room().min(buf.len()));
        if room == 0 {
            return false;
        }
        match slot.stream.read(&mut buf[..room]) {
            Ok(0) => {
                if let Some(connection) = slot.connection.as_mut() {
                    connection.receive_eof();
                }
                return true;
            }
            Ok(n) => {
                match slot.connection.as_mut() {
                    Some(connection) => connection.receive(&buf[..n]),
                    None => {
                        // Lingering: the bytes are thrown away, and not without end.
                        slot.discarded = slot.discarded.saturating_add(n as u32);
                        if slot.discarded as usize >= LINGER_BYTES {
                            return true;
                        }
                    }
                }
                if n < room {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                if let Some(connection) = slot.connection.as_mut() {
                    connection.receive_eof();
                }
                return true;
            }
        }
    }
}
