//! The link: how a node's workers send commands to Redis without ever waiting for it.
//!
//! A worker thread (event loop or connection thread) that needs Redis (a publish, a cold read,
//! a channel's first load) hands the encoded command to the [`Pipeline`] with a callback, and
//! goes on. The pipeline is a few connections ([`DEFAULT_CONNECTIONS`]), each a *lane* with
//! two threads of its own and blocking `std` sockets:
//!
//! - the **writer** writes what the thread that queued it could not: while the writer sleeps,
//!   that thread sends the output itself with a `send` that never waits (an event-loop
//!   worker as its turn ends, [`crate::wake::Turn`], or every `SEND_EARLY_AFTER` (16) commands
//!   of a long turn), outside the lane's lock: threads that queue meanwhile leave their
//!   commands to it, and it sends them next (`Lane::send_or_wake`). It wakes the writer only
//!   for what the socket did not take. The writer then writes everything queued in one
//!   blocking `write` (many workers' commands coalesce into one segment under load);
//! - the **reader** opens the connection (`SELECT`, `TIME`, then `SCRIPT LOAD` of the publish
//!   script, before the lane takes any command), reads replies and hands each to the oldest
//!   command in flight: Redis answers the commands of one connection in the order it received
//!   them (RESP "pipelining": "the server ... will reply to them in order"), and a lane appends
//!   a command's bytes to its output and its callback to its FIFO under one lock, so the two
//!   orders are the same. The callback runs on the reader thread and typically fills a
//!   [`crate::broker::Completer`], which wakes the worker's connection.
//!
//! Publishes are gathered rather than encoded one by one ([`Pipeline::submit_publish`]):
//! those queued on a lane since its output was last sent (on a cluster, those of one slot)
//! leave as one call of the publish script when it is next sent (a worker's turn ends, or the
//! writer takes the output), or before the next command of another kind, so that commands
//! still leave in the order they were queued ([`super::publish_batch`]).
//!
//! Faults. The reader declares its connection dead when the oldest command in flight has
//! waited longer than `--redis-timeout` (a stopped or partitioned Redis never closes the
//! socket), when Redis closes it, or on any read or write error: every command in flight
//! fails with [`BrokerError::Unavailable`] (the caller answers 503, or a reader tries again
//! later), the socket is shut down, and the reader reconnects: at once after losing a
//! connection that had lived a while, else with the supervisor's backoff (50 ms doubling to
//! 2 s), as while attempts fail. While a lane is down, a command goes to another lane, and
//! when none is up it fails at once: nothing queues behind a Redis that is away. A lane whose
//! oldest command is overdue counts as down from that moment, before its reader's next look
//! (`Pipeline::lane_up`): a command queued behind it would fail with it, after a Redis that
//! only woke late may have run it. Every command accepted is
//! answered exactly once, so nothing waits forever for an answer; a command refused at once is
//! told so by [`Pipeline::submit`] and its callback is never called.
//!
//! Lock order: a caller may hold a mirror's lock while it submits (a lane's lock comes after
//! it); callbacks run with no lane lock held, so they may take any broker lock.
//!
//! ## Replicated writes
//!
//! On a cluster, a publish is answered only once a replica has it: the writer sends one
//! `WAIT 1` behind each turn's publishes, and the reader holds their replies until the
//! `WAIT`'s reply says a replica has them (or fails them with 503 if none does within a
//! third of the `--redis-timeout`). Redis replicates asynchronously: a master killed before
//! its replica has a write takes the write with it, and the replica promoted in its place
//! never had it. Answered before, such a publish would be lost without anyone being told;
//! answered after, it is in the copy that takes over (a failover elects the replica with the
//! most data). One `WAIT` is in flight per lane at a time (`WAIT_SHARE`): what is queued
//! meanwhile goes out together behind the next one, so under load one `WAIT` covers many
//! publishes.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::time::Instant;

use super::super::resp::Value;
use super::publish_batch::{Publish, PublishArgs, PublishBatch};
use super::{Backoff, Link, RedisError, RedisUrl};
use crate::broker::{BrokerError, LinkStats};
use crate::server::sys::os;
use crate::sync::lock;

/// Connections in a node's link. One connection pipelines tens of thousands of commands a
/// second (measured in `benches/redis_hop.rs`); a second one stands by and keeps commands
/// flowing while the first reconnects. Commands go to the first lane that is up, not round
/// the lanes: on one connection they batch twice as deep, into half the writes, reads and
/// thread wake-ups (`redis_hop` part 2: 9.5 µs of node CPU per publish against 12.6-13.2
/// spread over two, see README "What the hop costs").
pub const DEFAULT_CONNECTIONS: usize = 2;

/// A connection that lived this long was healthy: when it is lost, the lane reconnects at
/// once (Redis may only have closed an idle connection). One lost sooner is retried after the
/// backoff, so a Redis that accepts connections and drops them at once is not hammered.
const HEALTHY_FOR: Duration = Duration::from_secs(1);

/// A worker's turn that has queued this many commands sends them at once rather than at
/// the turn's end, and holds the next ones again: Redis starts on the first of a long turn's
/// commands while the worker is still reading the rest, instead of every command of the turn
/// reaching it together as the turn ends and the worker then waiting on Redis's whole batch
/// (a convoy). `benches/redis_hop.rs` part 2, 64 publishers, Redis on a core of its own
/// (`--redis-cpu 1`), while the writer still did the sending: node A alone 66,740-68,193
/// publishes/s with the whole turn held, 83,336-84,307 with 16 (8: 81,830; 32: 78,779; 4:
/// 76,358, the writes too small); with every process sharing both cores the rate did not
/// move. With the worker sending, 16 (83,883-86,480) against 32 (82,225) and 8 (89,833, but
/// 0.3 µs more node CPU per publish at 256 publishers).
const SEND_EARLY_AFTER: usize = 16;

/// How many times a thread that sent the output sends what other threads queued meanwhile,
/// before it leaves the rest to the writer ([`Lane::send_or_wake`]): a bound, so that a
/// worker with connections of its own to serve does not go on sending for others under a
/// steady stream. `benches/redis_hop.rs` part 2 did not tell 1, 4 and 16 apart.
const SENDS_FOR_OTHERS: usize = 4;

/// Capacity of a sent output's buffer that is kept for the next output (the writer's spare,
/// [`LaneState::give_back`]'s, [`emptied_for_reuse`]): a larger one, grown by a burst while Redis was slow, is freed
/// rather than held for the lane's life.
const KEPT_OUTPUT: usize = 64 * 1024;

/// Commands a lane holds in flight at most; past it, a command fails at once (503). Callers
/// bound it already (a connection has one publish or one read in flight), so this only keeps a
/// Redis that stops answering from growing the queue by more than a timeout's worth.
const MAX_IN_FLIGHT: usize = 65_536;

/// What a command's caller is told: its replies (Redis errors among them, as
/// [`Value::Error`]), or why there are none.
pub type OnReplies = Box<dyn FnOnce(Result<Vec<Value>, BrokerError>) + Send>;

/// Called on a lane's reader thread each time its connection comes up.
pub type OnUp = Arc<dyn Fn() + Send + Sync>;

/// One command (or several sent together, like `MULTI ... EXEC`) waiting for its replies.
struct InFlight {
    replies: usize,
    /// The callers its replies answer, as the counters count them: one, or each publish of a
    /// batch ([`PublishBatch`]).
    callers: u64,
    received: Vec<Value>,
    queued_at: Instant,
    on_replies: OnReplies,
    kind: Kind,
}

/// What a command's replies mean for its caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// Answered as soon as its replies arrive.
    #[default]
    Plain,
    /// A write answered only once a replica has it: its replies are held until the `WAIT`
    /// behind it (the module docs, "Replicated writes").
    Replicated,
    /// The `WAIT 1 <ms>` the writer sent after replicated writes; its reply releases them.
    Wait,
}

impl InFlight {
    fn new(replies: usize, on_replies: OnReplies, kind: Kind) -> InFlight {
        InFlight { replies, callers: 1, received: Vec::new(), queued_at: Instant::now(), on_replies, kind }
    }
}

/// A lane's shared state, under its lock.
#[derive(Default)]
struct LaneState {
    /// The socket to write to: `Some` while the connection is up.
    socket: Option<Arc<TcpStream>>,
    /// Counts connections, so that a fault reported late is not taken for the next one's.
    generation: u64,
    /// Encoded commands the writer has not taken yet.
    output: Vec<u8>,
    /// Publishes queued since the output was last sent, to be appended to it as one script
    /// call when it is next sent, or before the next command of another kind
    /// ([`Pipeline::submit_publish`]).
    batch: Option<PublishBatch>,
    /// How the batch is answered: [`Kind::Replicated`] if any of its publishes is.
    batch_kind: Kind,
    in_flight: VecDeque<InFlight>,
    /// The writer is asleep on `queued`: only then is the output sent or the writer woken by
    /// the thread that queued it ([`Lane::send_or_wake`]); a writer busy writing takes what
    /// was queued meanwhile on its next turn.
    writer_asleep: bool,
    /// A send of the output is held to the end of a worker's turn ([`crate::wake::Turn`]),
    /// with this many commands queued since; 0 when none is held ([`SEND_EARLY_AFTER`]).
    held_for_send: usize,
    /// A thread that queued commands is sending the output, outside the lock
    /// ([`Lane::send_or_wake`]): the writer and other threads leave the output to it.
    sending: bool,
    /// The output's other buffer: what a sending thread takes the output into.
    spare_output: Vec<u8>,
    /// Replicated writes are queued that no `WAIT` follows yet: the writer adds one.
    unwaited: bool,
    /// A `WAIT` is in flight: the writer holds further output until it is answered (see
    /// [`WAIT_SHARE`]).
    waiting: bool,
    /// Replicated writes Redis answered, waiting for the reply of the `WAIT` after them, with
    /// the callers each answers ([`InFlight::callers`]).
    held: Vec<(OnReplies, Vec<Value>, u64)>,
}

impl LaneState {
    /// The oldest command in flight has waited `timeout` or longer (`--redis-timeout`): the
    /// connection is taken for dead ([`listen`], [`Pipeline::lane_up`]).
    fn overdue(&self, timeout: Duration) -> bool {
        self.in_flight.front().is_some_and(|command| command.queued_at.elapsed() >= timeout)
    }

    /// Takes back the output a sending thread took (`taken`, of which the socket took `sent`
    /// bytes): what was not sent goes back before what was queued meanwhile, so the bytes
    /// leave in the order their commands wait for replies; the buffer serves the next send,
    /// up to [`KEPT_OUTPUT`].
    fn give_back(&mut self, mut taken: Vec<u8>, sent: usize) {
        if sent < taken.len() {
            taken.drain(..sent);
            taken.extend_from_slice(&self.output);
            std::mem::swap(&mut taken, &mut self.output);
        }
        self.spare_output = emptied_for_reuse(taken);
    }
}

/// `buffer`, emptied to hold the next output, or a new one if a burst grew it past
/// [`KEPT_OUTPUT`].
fn emptied_for_reuse(mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.clear();
    if buffer.capacity() > KEPT_OUTPUT {
        Vec::new()
    } else {
        buffer
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    reconnects: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
}

/// One connection of the link, with its writer and reader threads.
#[derive(Default)]
struct Lane {
    state: Mutex<LaneState>,
    /// Wakes the writer: commands were queued, the connection changed, or the link stops.
    queued: Condvar,
    counters: Counters,
}

/// What a lane's threads need to know.
struct LaneConfig {
    url: RedisUrl,
    /// The publish script each connection loads as it opens ([`super::PUBLISH_SCRIPT`], or
    /// [`super::CLUSTER_PUBLISH_SCRIPT`] on a cluster's masters).
    script: &'static str,
    timeout: Duration,
    stopping: Arc<AtomicBool>,
    on_up: OnUp,
}

/// The node's link to Redis for commands: a few pipelined connections (see the module docs).
pub struct Pipeline {
    lanes: Vec<Arc<Lane>>,
    stopping: Arc<AtomicBool>,
    /// Commands refused at once because no lane was up (or all were full).
    refused: AtomicU64,
    /// What [`Pipeline::reload_script`] loads again.
    script: &'static str,
    /// The master has replicas: see [`Pipeline::set_replicas`].
    has_replicas: AtomicBool,
    /// `--redis-timeout`: a lane whose oldest command has waited this long takes no more
    /// ([`Pipeline::lane_up`]).
    timeout: Duration,
}

impl Pipeline {
    /// Starts `connections` lanes and waits (at most `wait`) for each one's first attempt to
    /// connect, so that a node started with Redis up takes commands from its first request.
    /// Every connection loads `script` as it opens.
    pub fn start(
        url: &RedisUrl,
        script: &'static str,
        connections: usize,
        timeout: Duration,
        on_up: OnUp,
        wait: Duration,
    ) -> Pipeline {
        let stopping = Arc::new(AtomicBool::new(false));
        let (attempted, first_attempts) = mpsc::channel();
        let mut lanes = Vec::new();
        for number in 0..connections {
            let lane = Arc::new(Lane::default());
            let config = Arc::new(LaneConfig {
                url: url.clone(),
                script,
                timeout,
                stopping: stopping.clone(),
                on_up: on_up.clone(),
            });
            let (reader_lane, reader_config, attempted) = (lane.clone(), config.clone(), attempted.clone());
            let reader = thread::Builder::new()
                .name(format!("realtime-redis-read-{number}"))
                .spawn(move || read_replies(&reader_lane, &reader_config, attempted));
            let (writer_lane, writer_config) = (lane.clone(), config);
            let writer = thread::Builder::new()
                .name(format!("realtime-redis-write-{number}"))
                .spawn(move || write_commands(&writer_lane, &writer_config));
            if let (Err(error), _) | (_, Err(error)) = (&reader, &writer) {
                // Without both threads the lane never comes up: its commands go elsewhere.
                crate::error!("redis: cannot start a link thread"; lane = number, error = error.to_string());
            }
            lanes.push(lane);
        }
        let deadline = Instant::now() + wait;
        for _ in 0..connections {
            if first_attempts.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                break;
            }
        }
        Pipeline { lanes, stopping, refused: AtomicU64::new(0), script, has_replicas: AtomicBool::new(false), timeout }
    }

    /// How many replicas Redis says the master has (`CLUSTER SLOTS` lists the healthy ones).
    /// While it has any, a replicated write ([`Pipeline::submit_or_return`]) is answered only
    /// once one of them has it.
    pub fn set_replicas(&self, replicas: usize) {
        self.has_replicas.store(replicas > 0, Ordering::Relaxed);
    }

    /// A link with no connection at all: every command fails at once (tests of the broker's
    /// bookkeeping).
    #[cfg(test)]
    pub fn offline() -> Pipeline {
        Pipeline {
            lanes: Vec::new(),
            stopping: Arc::new(AtomicBool::new(true)),
            refused: AtomicU64::new(0),
            script: super::PUBLISH_SCRIPT,
            has_replicas: AtomicBool::new(false),
            timeout: Duration::ZERO,
        }
    }

    /// Queues `commands` (encoded, expecting `replies` replies) on a lane that is up;
    /// `on_replies` is called once with the replies, or with the reason there are none. When
    /// no lane can take it, the answer is an error at once and `on_replies` is dropped
    /// uncalled: the caller knows, and nothing is woken for it.
    pub fn submit(&self, commands: &[u8], replies: usize, on_replies: OnReplies) -> Result<(), BrokerError> {
        self.submit_or_return(commands, replies, false, on_replies).map_err(|(error, _)| error)
    }

    /// [`Pipeline::submit`], but a command refused hands its callback back with the error, so
    /// that a caller that must answer it (a redirected command, `super::router`) still can.
    /// A `replicated` write is answered once a replica has it, while the master has any
    /// ([`Pipeline::set_replicas`]; the module docs, "Replicated writes").
    pub fn submit_or_return(
        &self,
        commands: &[u8],
        replies: usize,
        replicated: bool,
        on_replies: OnReplies,
    ) -> Result<(), (BrokerError, OnReplies)> {
        let kind = if replicated && self.has_replicas.load(Ordering::Relaxed) { Kind::Replicated } else { Kind::Plain };
        let Some((lane, mut state)) = self.lane_up() else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err((BrokerError::Unavailable("not connected to Redis".into()), on_replies));
        };
        // Publishes queued before it go before it.
        Lane::flush_batch(&mut state);
        state.output.extend_from_slice(commands);
        state.in_flight.push_back(InFlight::new(replies, on_replies, kind));
        state.unwaited |= kind == Kind::Replicated;
        lane.queued_one(state);
        Ok(())
    }

    /// Queues a publish: it joins the publishes queued on the lane since its output was last
    /// sent (on a cluster, those of its slot), and they leave together as one call of the
    /// publish script when it is next sent ([`super::publish_batch`]). `on_replies` is called
    /// once with the publish's own reply (`[id]` or `[error]`), or with the reason there is
    /// none; a `replicated` publish is answered as [`Pipeline::submit_or_return`] says. Refused
    /// at once, as [`Pipeline::submit`], when no lane is up.
    pub fn submit_publish(
        &self,
        publish: &Publish,
        args: &Arc<PublishArgs>,
        replicated: bool,
        on_replies: OnReplies,
    ) -> Result<(), BrokerError> {
        let kind = if replicated && self.has_replicas.load(Ordering::Relaxed) { Kind::Replicated } else { Kind::Plain };
        let Some((lane, mut state)) = self.lane_up() else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(BrokerError::Unavailable("not connected to Redis".into()));
        };
        if state.batch.as_ref().is_some_and(|batch| !batch.has_room_for(publish)) {
            Lane::flush_batch(&mut state);
        }
        if state.batch.is_none() {
            (state.batch, state.batch_kind) = (Some(PublishBatch::new(args.clone())), Kind::Plain);
        }
        if kind == Kind::Replicated {
            state.batch_kind = kind;
        }
        if let Some(batch) = state.batch.as_mut() {
            batch.push(publish, on_replies);
        }
        lane.queued_one(state);
        Ok(())
    }

    /// The first lane that is up and has room (DEFAULT_CONNECTIONS says why not round robin),
    /// locked. Not a lane whose oldest command is overdue: its reader is about to give the
    /// connection up (within a read tick) and fail every command on it, and Redis may run one
    /// queued behind it meanwhile (a Redis that was only slow, or woke up): a publish
    /// answered 503 that was stored, which its client, retrying, would publish twice. The
    /// caller of the overdue command has been answered 503 already, by its own deadline of
    /// the same length; what comes after it goes to another lane, or is refused unsent.
    fn lane_up(&self) -> Option<(&Arc<Lane>, MutexGuard<'_, LaneState>)> {
        self.lanes.iter().find_map(|lane| {
            let state = lock(&lane.state);
            let takes = state.socket.is_some() && state.in_flight.len() < MAX_IN_FLIGHT && !state.overdue(self.timeout);
            takes.then_some((lane, state))
        })
    }

    /// Loads the publish script on every lane again (after a `NOSCRIPT`: someone flushed
    /// Redis's script cache while the connections stayed up).
    pub fn reload_script(&self) {
        let mut command = Vec::new();
        super::resp::encode_command(&mut command, &[b"SCRIPT", b"LOAD", self.script.as_bytes()]);
        for lane in &self.lanes {
            let mut state = lock(&lane.state);
            if state.socket.is_some() {
                Lane::flush_batch(&mut state);
                state.output.extend_from_slice(&command);
                state.in_flight.push_back(InFlight::new(1, Box::new(|_| {}), Kind::Plain));
                lane.wake_writer(&mut state);
                drop(state);
                lane.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// For `/stats` and `/metrics`.
    pub fn stats(&self) -> LinkStats {
        let mut stats = LinkStats { connections: self.lanes.len(), ..LinkStats::default() };
        stats.failed = self.refused.load(Ordering::Relaxed);
        for lane in &self.lanes {
            {
                let state = lock(&lane.state);
                stats.connections_up += usize::from(state.socket.is_some());
                let waiting = state.batch.as_ref().map_or(0, PublishBatch::len) as u64;
                stats.in_flight += state.in_flight.iter().map(|command| command.callers).sum::<u64>() + waiting;
            }
            let counters = &lane.counters;
            stats.sent += counters.sent.load(Ordering::Relaxed);
            stats.answered += counters.answered.load(Ordering::Relaxed);
            stats.failed += counters.failed.load(Ordering::Relaxed);
            stats.reconnects += counters.reconnects.load(Ordering::Relaxed);
            stats.latency_sum_us += counters.latency_sum_us.load(Ordering::Relaxed);
            stats.latency_max_us = stats.latency_max_us.max(counters.latency_max_us.load(Ordering::Relaxed));
        }
        stats
    }

    /// Stops every lane: their connections close and what is in flight fails.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for lane in &self.lanes {
            let state = lock(&lane.state);
            if let Some(socket) = &state.socket {
                // Unblocks the reader (and a writer in the middle of a write).
                let _ = socket.shutdown(Shutdown::Both);
            }
            drop(state);
            lane.queued.notify_all();
        }
    }
}

impl Lane {
    /// A command or a publish was queued (`state` is the lane's, locked): counts it, and sends
    /// the output or holds it to the end of the queueing thread's turn.
    fn queued_one(self: &Arc<Lane>, mut state: MutexGuard<'_, LaneState>) {
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        // While the writer sleeps, the output is sent by the thread that queued it: at the
        // end of its turn, so that a worker's turn of commands leaves in one write
        // (`crate::wake`, "Wake-ups held to the end of a turn"), and early in a long turn.
        let hold = state.writer_asleep && state.held_for_send == 0;
        if state.writer_asleep {
            state.held_for_send += 1;
        }
        if state.held_for_send >= SEND_EARLY_AFTER {
            // Not 0: the send at the turn's end is still held, for what comes next.
            state.held_for_send = 1;
            self.send_or_wake(state);
        } else {
            drop(state);
        }
        if hold {
            let lane = self.clone();
            crate::wake::ring_after_turn(move || {
                let mut state = lock(&lane.state);
                state.held_for_send = 0;
                lane.send_or_wake(state);
            });
        }
    }

    /// Appends the publishes waiting in the lane's batch to its output, as one script call
    /// in flight, in the same step (the replies' order is the output's).
    fn flush_batch(state: &mut LaneState) {
        if let Some(batch) = state.batch.take() {
            let (callers, queued_at, kind) = (batch.len() as u64, batch.first_queued(), state.batch_kind);
            let on_replies = batch.encode(&mut state.output);
            state.in_flight.push_back(InFlight {
                replies: 1,
                callers,
                received: Vec::new(),
                queued_at,
                on_replies,
                kind,
            });
            state.unwaited |= kind == Kind::Replicated;
        }
    }

    /// Sends the output from this thread while the writer sleeps, without waiting
    /// ([`os::send_without_waiting`]), and wakes the writer for what the socket did not take
    /// (its buffer full, an error the writer then meets and reports), and for a `WAIT` that
    /// replicated writes need (the writer adds it). A send from the queueing thread saves the
    /// writer's wake-up, two context switches per turn. It is made outside the lane's lock,
    /// with the lane marked `sending`: the bytes are taken from the output under the lock (so
    /// their order is the in-flight order), and while they are on their way other threads
    /// queue behind them and leave what they queued to this one, which sends it next (up to
    /// [`SENDS_FOR_OTHERS`] times, then it is the writer's). So a thread never waits on the
    /// lock for another's system call, and what many threads queue meanwhile (connection
    /// threads publish one at a time) leaves in one write and as one script call. Never
    /// while the writer is up: it may be in the middle of a write, and takes the output
    /// itself when it is done. Holds output while a `WAIT` is in flight, as the writer does.
    fn send_or_wake<'a>(&'a self, mut state: MutexGuard<'a, LaneState>) {
        for _ in 0..=SENDS_FOR_OTHERS {
            if !state.writer_asleep || state.waiting || state.sending {
                return;
            }
            Lane::flush_batch(&mut state);
            if state.output.is_empty() {
                return;
            }
            let Some(socket) = state.socket.clone().filter(|_| !state.unwaited) else { break };
            let generation = state.generation;
            let mut taken = std::mem::take(&mut state.spare_output);
            std::mem::swap(&mut taken, &mut state.output);
            state.sending = true;
            drop(state);
            let sent = os::send_without_waiting(socket.as_fd(), &taken);
            state = lock(&self.state);
            state.sending = false;
            let unsent = !matches!(sent, Ok(sent) if sent == taken.len());
            if state.generation == generation {
                state.give_back(taken, sent.unwrap_or(0));
            }
            if unsent {
                break;
            }
        }
        if !state.output.is_empty() || state.batch.is_some() {
            self.wake_writer(&mut state);
        }
    }

    /// Wakes the writer, under the lane's lock (`state`), and marks it awake: a thread that
    /// sees it asleep afterwards knows it went back to sleep since, with no wake-up of
    /// this one still on its way.
    fn wake_writer(&self, state: &mut LaneState) {
        state.writer_asleep = false;
        self.queued.notify_one();
    }

    /// The connection is up: commands may be queued from now on.
    fn go_up(&self, socket: Arc<TcpStream>) -> u64 {
        let mut state = lock(&self.state);
        state.generation += 1;
        state.socket = Some(socket);
        let generation = state.generation;
        self.wake_writer(&mut state);
        generation
    }

    /// Connection `generation` is dead: shut its socket, drop its queued output and fail
    /// every command in flight (outside the lock: callbacks take broker locks and wake).
    fn go_down(&self, generation: u64, why: &str) {
        let failed = {
            let mut state = lock(&self.state);
            if state.generation != generation || state.socket.is_none() {
                return;
            }
            if let Some(socket) = state.socket.take() {
                let _ = socket.shutdown(Shutdown::Both);
            }
            // Publishes not sent yet fail too: every command accepted is answered.
            Lane::flush_batch(&mut state);
            state.output.clear();
            state.unwaited = false;
            state.waiting = false;
            let held =
                std::mem::take(&mut state.held).into_iter().map(|(on_replies, _, callers)| (on_replies, callers));
            let in_flight = std::mem::take(&mut state.in_flight);
            let in_flight = in_flight.into_iter().filter(|c| c.kind != Kind::Wait).map(|c| (c.on_replies, c.callers));
            held.chain(in_flight).collect::<Vec<_>>()
        };
        // A write Redis ran but no replica confirmed fails too: nobody can say it survives.
        let callers = failed.iter().map(|(_, callers)| callers).sum();
        self.counters.failed.fetch_add(callers, Ordering::Relaxed);
        for (on_replies, _) in failed {
            on_replies(Err(BrokerError::Unavailable(why.to_string())));
        }
    }

    /// A reply arrived: it belongs to the oldest command in flight. `Err` if none was.
    fn take_reply(&self, value: Value) -> Result<(), RedisError> {
        let (command, released) = {
            let mut state = lock(&self.state);
            let Some(oldest) = state.in_flight.front_mut() else {
                return Err(RedisError::Unexpected("a reply nobody asked for"));
            };
            oldest.received.push(value);
            if oldest.received.len() < oldest.replies {
                return Ok(());
            }
            let Some(command) = state.in_flight.pop_front() else { return Ok(()) };
            match command.kind {
                Kind::Plain => (command, Vec::new()),
                Kind::Replicated => {
                    // Its replies wait for the `WAIT` behind it.
                    state.held.push((command.on_replies, command.received, command.callers));
                    return Ok(());
                }
                Kind::Wait => {
                    let held = std::mem::take(&mut state.held);
                    state.waiting = false;
                    // The writer held what was queued meanwhile.
                    self.wake_writer(&mut state);
                    (command, held)
                }
            }
        };
        let waited = command.queued_at.elapsed().as_micros().min(u64::MAX as u128) as u64;
        let counters = &self.counters;
        counters.latency_sum_us.fetch_add(waited.saturating_mul(command.callers), Ordering::Relaxed);
        counters.latency_max_us.fetch_max(waited, Ordering::Relaxed);
        if command.kind != Kind::Wait {
            counters.answered.fetch_add(command.callers, Ordering::Relaxed);
            (command.on_replies)(Ok(command.received));
            return Ok(());
        }
        // `WAIT` answers how many replicas acknowledged every write before it on this
        // connection (<https://redis.io/docs/latest/commands/wait/>).
        let acknowledged = command.received.first().and_then(Value::as_integer).unwrap_or(0);
        let replicated = acknowledged >= 1;
        for (on_replies, replies, callers) in released {
            if replicated {
                counters.answered.fetch_add(callers, Ordering::Relaxed);
                on_replies(Ok(replies));
            } else {
                counters.failed.fetch_add(callers, Ordering::Relaxed);
                on_replies(Err(BrokerError::Unavailable(
                    "no replica confirmed the write within a third of the --redis-timeout; a failover could lose it"
                        .into(),
                )));
            }
        }
        Ok(())
    }
}

/// Opens a lane's connection: `SELECT` and `TIME` ([`Link::open`]), then the publish script,
/// so that no `EVALSHA` on it can meet `NOSCRIPT` because of a restart; then the timeouts the
/// reader and writer work with.
fn connect(config: &LaneConfig) -> Result<Link, RedisError> {
    // The lanes do not measure the clock for the broker: the supervisor's connections do.
    let mut link = Link::open(&config.url, &AtomicI64::new(0))?;
    let loaded = link.call(&[b"SCRIPT", b"LOAD", config.script.as_bytes()])?;
    if loaded.as_str().is_none() {
        return Err(RedisError::Unexpected("SCRIPT LOAD did not answer a SHA-1"));
    }
    link.stream.set_read_timeout(Some(read_tick(config.timeout)))?;
    link.stream.set_write_timeout(Some(config.timeout))?;
    Ok(link)
}

/// How often a reader waiting for replies looks at the age of the oldest command: a tenth of
/// the timeout, so a dead connection is declared within 10% of it.
fn read_tick(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(100))
}

/// A lane's reader thread: connect, read replies until the connection fails, reconnect.
fn read_replies(lane: &Lane, config: &LaneConfig, first_attempt: mpsc::Sender<()>) {
    let mut first_attempt = Some(first_attempt);
    let mut backoff = Backoff::new();
    let mut ever_up = false;
    let mut down_since: Option<Instant> = None;
    while !config.stopping.load(Ordering::SeqCst) {
        let connected = connect(config).and_then(|link| Ok((Arc::new(link.stream.try_clone()?), link)));
        match connected {
            Ok((socket, link)) => {
                if ever_up {
                    lane.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(since) = down_since.take() {
                    crate::info!("redis: link connection restored"; down_ms = since.elapsed().as_millis() as u64);
                }
                ever_up = true;
                let up_since = Instant::now();
                let generation = lane.go_up(socket);
                // `Pipeline::start` waits for the first attempt, successful or not.
                if let Some(attempted) = first_attempt.take() {
                    let _ = attempted.send(());
                }
                (config.on_up)();
                let why = listen(lane, link, config);
                lane.go_down(generation, &why);
                if config.stopping.load(Ordering::SeqCst) {
                    return;
                }
                down_since = Some(Instant::now());
                crate::warn!("redis: link connection lost; reconnecting"; error = why.to_string());
                if up_since.elapsed() >= HEALTHY_FOR {
                    backoff.reset();
                } else {
                    pause(backoff.next(), &config.stopping);
                }
            }
            Err(error) => {
                if let Some(attempted) = first_attempt.take() {
                    let _ = attempted.send(());
                }
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                    crate::warn!(
                        "redis: cannot open a link connection; publishes answer 503 until one is up";
                        url = config.url.to_string(),
                        error = error.to_string(),
                    );
                }
                pause(backoff.next(), &config.stopping);
            }
        }
    }
}

/// Reads replies on an open connection and hands them out, until it fails; returns why.
fn listen(lane: &Lane, mut link: Link, config: &LaneConfig) -> String {
    loop {
        if config.stopping.load(Ordering::SeqCst) {
            return "the broker stopped".into();
        }
        match link.receive() {
            Ok(value) => {
                if let Err(error) = lane.take_reply(value) {
                    return error.to_string();
                }
            }
            Err(RedisError::TimedOut) => {
                if lock(&lane.state).overdue(config.timeout) {
                    return format!("no reply within {:?} (--redis-timeout)", config.timeout);
                }
            }
            Err(error) => return error.to_string(),
        }
    }
}

/// A lane's writer thread: writes everything queued, in one `write_all` per turn.
fn write_commands(lane: &Lane, config: &LaneConfig) {
    let mut spare = Vec::new();
    loop {
        let (socket, generation) = {
            let mut state = wait_for_output(lane, &config.stopping);
            if config.stopping.load(Ordering::SeqCst) {
                return;
            }
            let Some(socket) = state.socket.clone() else { continue };
            Lane::flush_batch(&mut state);
            std::mem::swap(&mut spare, &mut state.output);
            if std::mem::take(&mut state.unwaited) {
                // One `WAIT` behind this turn's replicated writes: queued under the lock that
                // holds the in-flight order, so its reply is read right after theirs.
                encode_wait(&mut spare, config.timeout / WAIT_SHARE);
                state.waiting = true;
                state.in_flight.push_back(InFlight::new(1, Box::new(|_| {}), Kind::Wait));
            }
            (socket, state.generation)
        };
        if let Err(error) = (&*socket).write_all(&spare) {
            let why = match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    format!("a write did not finish within {:?} (--redis-timeout)", config.timeout)
                }
                _ => format!("write failed: {error}"),
            };
            lane.go_down(generation, &why);
        }
        spare = emptied_for_reuse(std::mem::take(&mut spare));
    }
}

/// A `WAIT` gives up after `--redis-timeout / WAIT_SHARE`. Redis runs nothing else from a
/// connection blocked in `WAIT`, so the writer sends nothing more until the `WAIT` is
/// answered: a command queued meanwhile waits for that `WAIT`, then for its own, at most two
/// thirds of the timeout, and a healthy lane is never taken for a dead one (the reader's
/// check, the oldest command's age against the whole timeout). Holding the output also makes
/// the next turn's batch, and the publishes one `WAIT` covers, larger under load.
const WAIT_SHARE: u32 = 3;

/// `WAIT 1 <timeout in ms>`: blocks this connection until a replica has every write sent on
/// it before, or the timeout passes (0 would mean "forever": at least 1 ms). One replica is
/// enough however many there are: a failover elects the replica with the most data
/// (the cluster spec, "Replica rank"), so one that has the write is the one that takes over.
fn encode_wait(out: &mut Vec<u8>, timeout: Duration) {
    let millis = timeout.as_millis().clamp(1, u64::MAX as u128).to_string();
    super::super::resp::encode_command(out, &[b"WAIT", b"1", millis.as_bytes()]);
}

/// Waits until the lane is up with output queued, or the link stops.
fn wait_for_output<'a>(lane: &'a Lane, stopping: &AtomicBool) -> MutexGuard<'a, LaneState> {
    let mut state = lock(&lane.state);
    while !stopping.load(Ordering::SeqCst)
        && (state.socket.is_none()
            || (state.output.is_empty() && state.batch.is_none())
            || state.waiting
            || state.sending)
    {
        state.writer_asleep = true;
        state = lane.queued.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    state.writer_asleep = false;
    state
}

/// Sleeps for `wait`, or less if the link stops.
fn pause(wait: Duration, stopping: &AtomicBool) {
    let until = Instant::now() + wait;
    while !stopping.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::broker::resp::{decode, Limits};
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;

    /// A stand-in for Redis on 127.0.0.1: it answers what a lane sends as it opens (`SELECT`,
    /// `TIME`, `SCRIPT LOAD`), then every other command with `answer` (`None`: never). Returns
    /// its URL and the number of connections it accepted.
    pub(in crate::broker::redis) fn fake_redis(
        answer: fn(&[Vec<u8>]) -> Option<Vec<u8>>,
    ) -> (RedisUrl, Arc<AtomicUsize>) {
        let (url, accepted, _) = gated_fake_redis(answer);
        (url, accepted)
    }

    /// [`fake_redis`], with a gate: while it is shut (`false`), a new connection is closed at
    /// once, as by a Redis that is restarting.
    fn gated_fake_redis(answer: fn(&[Vec<u8>]) -> Option<Vec<u8>>) -> (RedisUrl, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = RedisUrl {
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
            db: 0,
            user: None,
            password: None,
        };
        let accepted = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(AtomicBool::new(true));
        let (counter, open) = (accepted.clone(), gate.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                if !open.load(Ordering::SeqCst) {
                    continue;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let (mut input, mut chunk) = (Vec::new(), [0u8; 4096]);
                    while let Ok(n @ 1..) = stream.read(&mut chunk) {
                        input.extend_from_slice(&chunk[..n]);
                        while let Ok(Some((Value::Array(Some(args)), used))) = decode(&input, &Limits::default()) {
                            input.drain(..used);
                            let args: Vec<Vec<u8>> =
                                args.iter().filter_map(|a| a.as_bytes().map(<[u8]>::to_vec)).collect();
                            let reply = match args[0].as_slice() {
                                b"SELECT" => Some(b"+OK\r\n".to_vec()),
                                b"TIME" => Some(b"*2\r\n$10\r\n1700000000\r\n$1\r\n0\r\n".to_vec()),
                                b"SCRIPT" => Some(format!("$40\r\n{}\r\n", "0".repeat(40)).into_bytes()),
                                _ => answer(&args),
                            };
                            if let Some(reply) = reply {
                                let _ = stream.write_all(&reply);
                            }
                        }
                    }
                });
            }
        });
        (url, accepted, gate)
    }

    /// `ECHO x` answers `x`; `HANG` is never answered.
    fn echo_or_hang(args: &[Vec<u8>]) -> Option<Vec<u8>> {
        let text = args.get(1)?;
        let mut reply = format!("${}\r\n", text.len()).into_bytes();
        reply.extend_from_slice(text);
        reply.extend_from_slice(b"\r\n");
        (args[0] == b"ECHO").then_some(reply)
    }

    fn command(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::resp::encode_command(&mut out, args);
        out
    }

    fn start(url: &RedisUrl, lanes: usize, timeout: Duration) -> Pipeline {
        Pipeline::start(url, super::super::PUBLISH_SCRIPT, lanes, timeout, Arc::new(|| {}), Duration::from_secs(5))
    }

    #[test]
    fn replies_go_to_their_own_commands_in_the_order_the_commands_were_sent() {
        let (url, _) = fake_redis(echo_or_hang);
        let pipeline = start(&url, 2, Duration::from_secs(5));
        let (answers, answered) = mpsc::channel();
        for i in 0..500 {
            let answers = answers.clone();
            let on_replies: OnReplies = Box::new(move |replies| {
                let reply = replies.ok().and_then(|mut r| r.pop()).and_then(|v| v.as_str().map(str::to_string));
                let _ = answers.send((i, reply));
            });
            pipeline.submit(&command(&[b"ECHO", i.to_string().as_bytes()]), 1, on_replies).expect("a lane is up");
        }
        for _ in 0..500 {
            let (i, reply) = answered.recv_timeout(Duration::from_secs(10)).expect("every command is answered");
            assert_eq!(reply, Some(i.to_string()), "command {i} got another command's reply");
        }
        let stats = pipeline.stats();
        assert_eq!((stats.sent, stats.answered, stats.in_flight, stats.connections_up), (500, 500, 0, 2));
    }

    /// The `WAIT`s [`echo_and_wait`] has answered (one test uses it).
    static WAITS: AtomicUsize = AtomicUsize::new(0);

    /// `ECHO x` answers `x`; `WAIT` answers `:1` (a replica has every write) unless an `ECHO
    /// lost` came before it on the connection, then `:0`.
    fn echo_and_wait(args: &[Vec<u8>]) -> Option<Vec<u8>> {
        static LOST: AtomicBool = AtomicBool::new(false);
        if args[0] == b"WAIT" {
            WAITS.fetch_add(1, Ordering::SeqCst);
            assert_eq!(args.get(1).map(Vec::as_slice), Some(&b"1"[..]), "one replica is enough");
            return Some(if LOST.swap(false, Ordering::SeqCst) { b":0\r\n".to_vec() } else { b":1\r\n".to_vec() });
        }
        if args.get(1).is_some_and(|text| text == b"lost") {
            LOST.store(true, Ordering::SeqCst);
        }
        echo_or_hang(args)
    }

    /// Submits `ECHO text` as a replicated write and waits for what its caller is told.
    fn replicated_echo(pipeline: &Pipeline, text: &[u8]) -> Result<Vec<Value>, BrokerError> {
        let (answers, answered) = mpsc::channel();
        let on_replies: OnReplies = Box::new(move |replies| {
            let _ = answers.send(replies);
        });
        pipeline.submit_or_return(&command(&[b"ECHO", text]), 1, true, on_replies).map_err(|(error, _)| error)?;
        answered.recv_timeout(Duration::from_secs(10)).expect("answered")
    }

    #[test]
    fn a_replicated_write_is_answered_once_wait_says_a_replica_has_it_and_fails_when_none_does() {
        let (url, _) = fake_redis(echo_and_wait);
        let pipeline = start(&url, 1, Duration::from_secs(5));
        // Without replicas there is nothing to wait for: answered at once, no WAIT sent.
        assert!(replicated_echo(&pipeline, b"alone").is_ok());
        assert_eq!(WAITS.load(Ordering::SeqCst), 0);
        pipeline.set_replicas(1);
        let confirmed = replicated_echo(&pipeline, b"kept").expect("a replica has it");
        assert_eq!(confirmed.first().and_then(Value::as_str), Some("kept"));
        assert_eq!(WAITS.load(Ordering::SeqCst), 1, "answered after the WAIT behind it");
        let refused = replicated_echo(&pipeline, b"lost");
        assert!(matches!(refused, Err(BrokerError::Unavailable(_))), "no replica confirmed it: {refused:?}");
        // The lane goes on: the next write is confirmed again.
        assert!(replicated_echo(&pipeline, b"again").is_ok());
        let stats = pipeline.stats();
        assert_eq!((stats.in_flight, stats.connections_up), (0, 1), "no WAIT left behind");
    }

    #[test]
    fn a_command_unanswered_for_the_timeout_fails_and_its_connection_is_replaced() {
        let (url, accepted) = fake_redis(echo_or_hang);
        let pipeline = start(&url, 1, Duration::from_millis(100));
        let (answers, answered) = mpsc::channel();
        let on_replies: OnReplies = Box::new(move |replies| {
            let _ = answers.send(replies);
        });
        pipeline.submit(&command(&[b"HANG", b"x"]), 1, on_replies).expect("the lane is up");
        let failed = answered.recv_timeout(Duration::from_secs(10)).expect("told, not left waiting");
        assert!(matches!(failed, Err(BrokerError::Unavailable(_))), "{failed:?}");
        // The lane reconnects, and a command on the new connection is answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (answers, answered) = mpsc::channel();
            let on_replies: OnReplies = Box::new(move |replies| {
                let _ = answers.send(replies.is_ok());
            });
            if pipeline.submit(&command(&[b"ECHO", b"back"]), 1, on_replies).is_ok()
                && answered.recv_timeout(Duration::from_secs(5)) == Ok(true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "the lane did not come back");
            thread::sleep(Duration::from_millis(10));
        }
        assert!(accepted.load(Ordering::SeqCst) >= 2, "a new connection");
        assert!(pipeline.stats().reconnects >= 1);
    }

    /// Sends `ECHO text` and says whether it was accepted and then answered with `text`.
    fn echoed(pipeline: &Pipeline, text: &[u8]) -> bool {
        let (answers, answered) = mpsc::channel();
        let expected = text.to_vec();
        let on_replies: OnReplies = Box::new(move |replies| {
            let reply = replies.ok().and_then(|mut r| r.pop()).and_then(|v| v.as_bytes().map(<[u8]>::to_vec));
            let _ = answers.send(reply == Some(expected));
        });
        pipeline.submit(&command(&[b"ECHO", text]), 1, on_replies).is_ok()
            && answered.recv_timeout(Duration::from_secs(5)) == Ok(true)
    }

    /// `Pipeline::lane_up`: a lane whose oldest command has waited `--redis-timeout` takes no
    /// new command, though its reader has not given the connection up yet: the next command
    /// goes to the other lane, and is answered, instead of waiting behind the overdue one and
    /// failing with it (after Redis may have run it).
    #[test]
    fn a_lane_whose_oldest_command_is_overdue_takes_no_new_command() {
        let (url, _) = fake_redis(echo_or_hang);
        let timeout = Duration::from_secs(5);
        let pipeline = start(&url, 2, timeout);
        assert!(echoed(&pipeline, b"both lanes up"));
        while pipeline.stats().connections_up < 2 {
            thread::sleep(Duration::from_millis(10));
        }
        pipeline.submit(&command(&[b"HANG", b"x"]), 1, Box::new(|_| {})).expect("the first lane is up");
        let sent_on_first = || pipeline.lanes[0].counters.sent.load(Ordering::Relaxed);
        let before = sent_on_first();
        // As if it had waited the whole timeout: its reader gives the connection up at its
        // next look (within a tenth of a second here), and until then the lane stays up.
        if let Some(oldest) = lock(&pipeline.lanes[0].state).in_flight.front_mut() {
            oldest.queued_at = Instant::now() - timeout;
        }
        assert!(echoed(&pipeline, b"not behind the overdue command"));
        assert_eq!(sent_on_first(), before, "nothing more was queued on the first lane");
    }

    /// `DEFAULT_CONNECTIONS`: commands go to the first lane that is up, so that they batch on
    /// one connection, and to the second only while the first is down.
    #[test]
    fn commands_go_to_the_first_lane_and_to_the_next_only_while_it_is_down() {
        let (url, _, gate) = gated_fake_redis(echo_or_hang);
        let pipeline = start(&url, 2, Duration::from_millis(100));
        let sent = |lane: usize| pipeline.lanes[lane].counters.sent.load(Ordering::Relaxed);
        for i in 0..100 {
            assert!(echoed(&pipeline, i.to_string().as_bytes()));
        }
        assert_eq!((sent(0), sent(1)), (100, 0), "all on the first lane");

        // The first lane's command hangs: it fails at the timeout, and the lane cannot connect
        // again while the gate is shut; meanwhile commands go to the second.
        gate.store(false, Ordering::SeqCst);
        let (answers, answered) = mpsc::channel();
        let on_replies: OnReplies = Box::new(move |replies| {
            let _ = answers.send(replies.is_ok());
        });
        pipeline.submit(&command(&[b"HANG", b"x"]), 1, on_replies).expect("the first lane is up");
        assert_eq!(answered.recv_timeout(Duration::from_secs(10)), Ok(false), "told it failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pipeline.stats().connections_up > 1 {
            assert!(Instant::now() < deadline, "the first lane stayed up");
            thread::sleep(Duration::from_millis(10));
        }
        let first = sent(0);
        assert!(echoed(&pipeline, b"meanwhile"));
        assert_eq!((sent(0), sent(1)), (first, 1), "on the second lane");
        // Back up, the first lane takes the commands again.
        gate.store(true, Ordering::SeqCst);
        while pipeline.stats().connections_up < 2 {
            assert!(Instant::now() < deadline, "the first lane did not come back");
            thread::sleep(Duration::from_millis(10));
        }
        let (first, second) = (sent(0), sent(1));
        assert!(echoed(&pipeline, b"back on the first"));
        assert_eq!((sent(0), sent(1)), (first + 1, second));
    }

    /// A link of one lane, up, whose writer sleeps with no wake-up on its way: the lane
    /// answered a command, and the writer went back to sleep since it was woken for the
    /// connection (`Lane::wake_writer` marks it awake), so only a test's own commands move it.
    fn one_lane_with_its_writer_asleep() -> Pipeline {
        one_lane_with_its_writer_asleep_on(echo_or_hang)
    }

    /// [`one_lane_with_its_writer_asleep`] on a fake Redis that answers with `answer` (which
    /// must answer `ECHO`).
    fn one_lane_with_its_writer_asleep_on(answer: fn(&[Vec<u8>]) -> Option<Vec<u8>>) -> Pipeline {
        let (url, _) = fake_redis(answer);
        let pipeline = start(&url, 1, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !echoed(&pipeline, b"up") {
            assert!(Instant::now() < deadline, "the lane never came up");
            thread::sleep(Duration::from_millis(10));
        }
        pipeline.wait_for_writers_asleep();
        pipeline
    }

    impl Pipeline {
        /// Waits (at most 10 s) until every lane is up and its writer sleeps, gone back to
        /// sleep since it was woken for the connection (`Lane::wake_writer` marks it awake),
        /// so that only a test's own commands move it: while it is awake, what a worker's
        /// turn queues is taken by the writer instead.
        pub(in crate::broker::redis) fn wait_for_writers_asleep(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            let asleep = |lane: &Arc<Lane>| {
                let state = lock(&lane.state);
                state.socket.is_some() && state.writer_asleep
            };
            while !self.lanes.iter().all(asleep) {
                assert!(Instant::now() < deadline, "a writer never went to sleep");
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// `crate::wake`, "Wake-ups held to the end of a turn": an event-loop worker's commands
    /// leave together when its turn ends, sent by the worker while the writer sleeps.
    #[test]
    fn a_workers_turn_of_commands_leaves_in_one_send_when_the_turn_ends() {
        let pipeline = one_lane_with_its_writer_asleep();
        let (answers, answered) = mpsc::channel();
        let turn = crate::wake::Turn::begin();
        for i in 0..10 {
            let answers = answers.clone();
            let on_replies: OnReplies = Box::new(move |replies| {
                let _ = answers.send((i, replies.is_ok()));
            });
            pipeline.submit(&command(&[b"ECHO", b"x"]), 1, on_replies).expect("the lane is up");
        }
        thread::sleep(Duration::from_millis(100));
        assert_eq!(answered.try_recv().ok(), None, "nothing is written while the turn lasts");
        assert!(!lock(&pipeline.lanes[0].state).output.is_empty(), "the commands wait in the output");
        drop(turn);
        let state = lock(&pipeline.lanes[0].state);
        assert!(
            state.writer_asleep && state.output.is_empty(),
            "sent by the worker as its turn ended; the writer slept on"
        );
        drop(state);
        for i in 0..10 {
            assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok((i, true)), "sent once the turn ended");
        }
    }

    /// [`SEND_EARLY_AFTER`]: a long turn sends its first commands before it ends, so that Redis
    /// starts on them while the worker reads the rest; what follows waits for the turn's end.
    #[test]
    fn a_long_turn_sends_every_sixteen_commands_before_it_ends() {
        let pipeline = one_lane_with_its_writer_asleep();
        let (answers, answered) = mpsc::channel();
        let turn = crate::wake::Turn::begin();
        for i in 0..SEND_EARLY_AFTER + 3 {
            let answers = answers.clone();
            let on_replies: OnReplies = Box::new(move |replies| {
                let _ = answers.send((i, replies.is_ok()));
            });
            pipeline.submit(&command(&[b"ECHO", b"x"]), 1, on_replies).expect("the lane is up");
        }
        let state = lock(&pipeline.lanes[0].state);
        assert!(state.writer_asleep, "the worker sent the first ones itself");
        assert_eq!(state.output, command(&[b"ECHO", b"x"]).repeat(3), "the rest is held");
        drop(state);
        for i in 0..SEND_EARLY_AFTER {
            assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok((i, true)), "sent within the turn");
        }
        thread::sleep(Duration::from_millis(100));
        assert_eq!(answered.try_recv().ok(), None, "the rest waits for the turn's end");
        drop(turn);
        for i in SEND_EARLY_AFTER..SEND_EARLY_AFTER + 3 {
            assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok((i, true)), "sent once the turn ended");
        }
    }

    #[test]
    fn with_no_connection_up_a_command_fails_at_once_and_its_callback_is_never_called() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = RedisUrl { host: "127.0.0.1".into(), port, db: 0, user: None, password: None };
        let pipeline = start(&url, 2, Duration::from_secs(1));
        let called = Arc::new(AtomicBool::new(false));
        let flag = called.clone();
        let on_replies: OnReplies = Box::new(move |_| flag.store(true, Ordering::SeqCst));
        let refused = pipeline.submit(&command(&[b"ECHO", b"x"]), 1, on_replies);
        assert!(matches!(refused, Err(BrokerError::Unavailable(_))));
        assert!(!called.load(Ordering::SeqCst));
        assert_eq!(pipeline.stats().connections_up, 0);
    }

    /// What [`publish_script_or_echo`] was sent, in order: `EVALSHA` with the texts of its
    /// publishes, `ECHO` with its text.
    static SENT: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// The texts of the publishes of a call of the publish script (`EVALSHA`), or `None` for
    /// another command.
    pub(in crate::broker::redis) fn script_texts(args: &[Vec<u8>]) -> Option<Vec<String>> {
        let text = |arg: &Vec<u8>| String::from_utf8_lossy(arg).into_owned();
        if args[0] != b"EVALSHA" {
            return None;
        }
        let keys: usize = text(&args[2]).parse().ok()?;
        // After the keys: three common arguments, then a topic and a text per publish.
        let texts: Vec<String> = args[3 + keys + 3..].iter().skip(1).step_by(2).map(text).collect();
        assert_eq!(texts.len() * 2, keys, "two keys per publish");
        Some(texts)
    }

    /// The publish script's answer with each publish's text as its id: an array, or the id
    /// alone for a call of one publish.
    pub(in crate::broker::redis) fn texts_as_ids(texts: &[String]) -> Vec<u8> {
        if let [text] = texts {
            return format!("${}\r\n{text}\r\n", text.len()).into_bytes();
        }
        let mut reply = format!("*{}\r\n", texts.len()).into_bytes();
        for text in texts {
            reply.extend_from_slice(format!("${}\r\n{text}\r\n", text.len()).as_bytes());
        }
        reply
    }

    /// A Redis that answers the publish script with each publish's text as its id, `ECHO`, and
    /// `WAIT` with `:1` (a replica has everything); it logs each in [`SENT`].
    fn publish_script_or_echo(args: &[Vec<u8>]) -> Option<Vec<u8>> {
        if args[0] == b"WAIT" {
            lock(&SENT).push("WAIT".into());
            return Some(b":1\r\n".to_vec());
        }
        let Some(texts) = script_texts(args) else {
            lock(&SENT).push(format!("ECHO {}", String::from_utf8_lossy(args.get(1)?)));
            return echo_or_hang(args);
        };
        lock(&SENT).push(format!("EVALSHA {}", texts.join(" ")));
        Some(texts_as_ids(&texts))
    }

    fn sent_with(marker: &str) -> Vec<String> {
        lock(&SENT).iter().filter(|line| line.contains(marker)).cloned().collect()
    }

    fn publish_args() -> Arc<PublishArgs> {
        Arc::new(PublishArgs::new(super::super::PUBLISH_SCRIPT, &crate::broker::Limits::default()))
    }

    /// What a publish's caller reports: its text and its id, or why it has none.
    type Answer = (String, Result<String, BrokerError>);

    /// Submits a publish of `text` to channel `c` whose caller reports `(text, its id)`.
    fn submit_publish(pipeline: &Pipeline, text: &str, answers: &mpsc::Sender<Answer>) {
        submit_publish_to(pipeline, text, None, false, answers);
    }

    /// [`submit_publish`] of a publish in `slot` (a cluster's), `replicated` or not.
    fn submit_publish_to(
        pipeline: &Pipeline,
        text: &str,
        slot: Option<u16>,
        replicated: bool,
        answers: &mpsc::Sender<Answer>,
    ) {
        let answers = answers.clone();
        let expected = text.to_string();
        let on_replies: OnReplies = Box::new(move |replies| {
            let id = replies.map(|mut r| r.pop().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
            let _ = answers.send((expected, id));
        });
        let publish = Publish { stream: "realtime:c", newest: "realtime:c:newest", topic: "realtime:0:c", text, slot };
        pipeline.submit_publish(&publish, &publish_args(), replicated, on_replies).expect("the lane is up");
    }

    /// `super::publish_batch`: the publishes of a worker's turn leave as one call of the
    /// publish script, and each caller is answered with its own element of the reply.
    #[test]
    fn a_turns_publishes_leave_as_one_script_call_and_each_is_answered_with_its_own_id() {
        let pipeline = one_lane_with_its_writer_asleep_on(publish_script_or_echo);
        let before = pipeline.stats();
        let (answers, answered) = mpsc::channel();
        let turn = crate::wake::Turn::begin();
        for i in 0..5 {
            submit_publish(&pipeline, &format!("turn-{i}"), &answers);
        }
        let stats = pipeline.stats();
        assert_eq!(stats.in_flight, 5, "waiting publishes count as in flight");
        drop(turn);
        for i in 0..5 {
            let expected = format!("turn-{i}");
            assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok((expected.clone(), Ok(expected))));
        }
        assert_eq!(sent_with("turn-"), ["EVALSHA turn-0 turn-1 turn-2 turn-3 turn-4"], "one call");
        let stats = pipeline.stats();
        assert_eq!((stats.sent - before.sent, stats.answered - before.answered, stats.in_flight), (5, 5, 0));
    }

    /// A command queued after publishes goes after them, and a publish after it in a call of
    /// its own: commands leave in the order they were queued.
    #[test]
    fn a_command_queued_after_publishes_leaves_after_their_script_call() {
        let pipeline = one_lane_with_its_writer_asleep_on(publish_script_or_echo);
        let (answers, answered) = mpsc::channel();
        let turn = crate::wake::Turn::begin();
        submit_publish(&pipeline, "order-1", &answers);
        submit_publish(&pipeline, "order-2", &answers);
        let (echoes, echoed) = mpsc::channel();
        let on_replies: OnReplies = Box::new(move |replies| {
            let _ = echoes.send(replies.is_ok());
        });
        pipeline.submit(&command(&[b"ECHO", b"order-echo"]), 1, on_replies).expect("the lane is up");
        submit_publish(&pipeline, "order-3", &answers);
        drop(turn);
        for _ in 0..3 {
            assert!(matches!(answered.recv_timeout(Duration::from_secs(5)), Ok((_, Ok(_)))));
        }
        assert_eq!(echoed.recv_timeout(Duration::from_secs(5)), Ok(true));
        assert_eq!(sent_with("order-"), ["EVALSHA order-1 order-2", "ECHO order-echo", "EVALSHA order-3"]);
    }

    /// Every command accepted is answered: publishes still waiting for the lane's next send
    /// when its connection is lost are told they failed, like those in flight.
    #[test]
    fn publishes_waiting_to_be_sent_when_the_connection_is_lost_are_told_they_failed() {
        let pipeline = one_lane_with_its_writer_asleep_on(publish_script_or_echo);
        let before = pipeline.stats();
        let (answers, answered) = mpsc::channel();
        let turn = crate::wake::Turn::begin();
        for i in 0..3 {
            submit_publish(&pipeline, &format!("lost-{i}"), &answers);
        }
        let lane = &pipeline.lanes[0];
        let generation = lock(&lane.state).generation;
        lane.go_down(generation, "cut by the test");
        for i in 0..3 {
            let (text, answer) = answered.recv_timeout(Duration::from_secs(5)).expect("told");
            assert_eq!(text, format!("lost-{i}"));
            assert!(matches!(answer, Err(BrokerError::Unavailable(_))), "{answer:?}");
        }
        drop(turn);
        assert!(sent_with("lost-").is_empty(), "never sent");
        let stats = pipeline.stats();
        assert_eq!(stats.failed - before.failed, 3);
        assert!(lock(&lane.state).output.is_empty(), "nothing left to send on the next connection");
    }

    /// Publishes queued while the writer is busy writing are left to it: it takes them as one
    /// script call when it comes back for more output.
    #[test]
    fn publishes_queued_while_the_writer_writes_leave_as_one_call_with_its_next_write() {
        let pipeline = one_lane_with_its_writer_asleep_on(publish_script_or_echo);
        let lane = &pipeline.lanes[0];
        // As if the writer were in the middle of a write: queueing threads leave it the output.
        lock(&lane.state).writer_asleep = false;
        let (answers, answered) = mpsc::channel();
        for i in 0..3 {
            submit_publish(&pipeline, &format!("busy-{i}"), &answers);
        }
        thread::sleep(Duration::from_millis(50));
        assert!(answered.try_recv().is_err(), "left to the writer");
        // The writer is done and looks for more.
        lane.queued.notify_one();
        for i in 0..3 {
            let expected = format!("busy-{i}");
            assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok((expected.clone(), Ok(expected))));
        }
        assert_eq!(sent_with("busy-"), ["EVALSHA busy-0 busy-1 busy-2"]);
    }

    /// `Lane::send_or_wake`: publishes queued while another thread is sending (outside the
    /// lock) are left to it, and leave as one script call with its next send.
    #[test]
    fn publishes_queued_while_another_thread_sends_leave_as_one_call_with_its_next_send() {
        let pipeline = one_lane_with_its_writer_asleep_on(publish_script_or_echo);
        let lane = &pipeline.lanes[0];
        // As if a thread were in the middle of its send.
        lock(&lane.state).sending = true;
        let (answers, answered) = mpsc::channel();
        for i in 0..3 {
            submit_publish(&pipeline, &format!("combined-{i}"), &answers);
        }
        thread::sleep(Duration::from_millis(50));
        assert!(answered.try_recv().is_err(), "left to the thread that sends");
        // Its send is done: it takes what was queued meanwhile.
        let mut state = lock(&lane.state);
        state.sending = false;
        lane.send_or_wake(state);
        for i in 0..3 {
            let expected = format!("combined-{i}");
            assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok((expected.clone(), Ok(expected))));
        }
        assert_eq!(sent_with("combined-"), ["EVALSHA combined-0 combined-1 combined-2"]);
    }

    /// The writer, woken while a thread sends, writes nothing until that send is done: two
    /// writers at once could put one's bytes in the middle of the other's.
    #[test]
    fn the_writer_waits_while_another_thread_sends() {
        let pipeline = one_lane_with_its_writer_asleep();
        let lane = &pipeline.lanes[0];
        let (answers, answered) = mpsc::channel();
        {
            let mut state = lock(&lane.state);
            state.sending = true;
            state.output.extend_from_slice(&command(&[b"ECHO", b"after-the-send"]));
            state.in_flight.push_back(InFlight::new(
                1,
                Box::new(move |replies| {
                    let _ = answers.send(replies.is_ok());
                }),
                Kind::Plain,
            ));
            lane.wake_writer(&mut state);
        }
        thread::sleep(Duration::from_millis(50));
        assert!(answered.try_recv().is_err(), "the writer left the output to the sending thread");
        let mut state = lock(&lane.state);
        state.sending = false;
        lane.send_or_wake(state);
        assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok(true), "sent once the other send was done");
    }

    /// What a send left unsent goes back before what was queued while it was on its way; the
    /// buffer is kept for the next send unless a burst grew it past `KEPT_OUTPUT`.
    #[test]
    fn what_a_send_left_goes_out_before_what_was_queued_meanwhile() {
        let mut state = LaneState { output: b"queued meanwhile;".to_vec(), ..LaneState::default() };
        state.give_back(b"sent;unsent;".to_vec(), 5);
        assert_eq!(state.output, b"unsent;queued meanwhile;");
        let mut state = LaneState { output: b"queued meanwhile;".to_vec(), ..LaneState::default() };
        state.give_back(b"sent;".to_vec(), 5);
        assert_eq!(state.output, b"queued meanwhile;", "all sent: nothing goes back");
        assert!(state.spare_output.is_empty() && state.spare_output.capacity() >= 5, "kept for the next send");
        state.give_back(vec![0; KEPT_OUTPUT + 1], KEPT_OUTPUT + 1);
        assert!(state.spare_output.capacity() < KEPT_OUTPUT, "a buffer past KEPT_OUTPUT is freed, not kept");
    }

    /// On a cluster a call of the script holds publishes of one slot (its keys must hash to
    /// one): a publish of another slot starts a call of its own.
    #[test]
    fn publishes_of_one_slot_share_a_call_and_a_publish_of_another_slot_starts_its_own() {
        let pipeline = one_lane_with_its_writer_asleep_on(publish_script_or_echo);
        let (answers, answered) = mpsc::channel();
        let turn = crate::wake::Turn::begin();
        for (text, slot) in [("slots-a", 7), ("slots-b", 7), ("slots-c", 9), ("slots-d", 7)] {
            submit_publish_to(&pipeline, text, Some(slot), false, &answers);
        }
        drop(turn);
        for _ in 0..4 {
            assert!(matches!(answered.recv_timeout(Duration::from_secs(5)), Ok((_, Ok(_)))));
        }
        assert_eq!(sent_with("slots-"), ["EVALSHA slots-a slots-b", "EVALSHA slots-c", "EVALSHA slots-d"]);
    }

    /// The module docs, "Replicated writes": on a master with replicas, a batch of publishes
    /// is answered once the `WAIT` behind it says a replica has them.
    #[test]
    fn a_batch_of_replicated_publishes_is_answered_after_the_wait_behind_it() {
        let pipeline = one_lane_with_its_writer_asleep_on(publish_script_or_echo);
        pipeline.set_replicas(1);
        let before = pipeline.stats();
        let (answers, answered) = mpsc::channel();
        let turn = crate::wake::Turn::begin();
        for text in ["replicated-1", "replicated-2"] {
            submit_publish_to(&pipeline, text, Some(7), true, &answers);
        }
        drop(turn);
        for text in ["replicated-1", "replicated-2"] {
            assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok((text.to_string(), Ok(text.to_string()))));
        }
        // Only this test's lane has replicas: every `WAIT` is its own.
        let sent: Vec<String> =
            lock(&SENT).iter().filter(|line| line.contains("replicated-") || *line == "WAIT").cloned().collect();
        assert_eq!(sent, ["EVALSHA replicated-1 replicated-2", "WAIT"], "one call, and a WAIT right behind it");
        let stats = pipeline.stats();
        assert_eq!((stats.answered - before.answered, stats.in_flight), (2, 0), "each publish counted once");
    }
}
