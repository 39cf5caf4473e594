//! One client connection's whole life, as a sans-I/O state machine.
//!
//! This is the piece both server models share. A driver (a blocking thread, or the event
//! loop) does only four things with it:
//!
//! 1. hands it the bytes it read ([`Connection::receive`], [`Connection::receive_eof`]);
//! 2. calls [`Connection::advance`] with the current time and a [`Wake`] whenever something
//!    happened: bytes arrived, the broker woke it, or [`Connection::next_deadline`] passed;
//! 3. writes out [`Connection::output`] and reports how much went, and when
//!    ([`Connection::consume_output`]);
//! 4. closes the socket once [`Connection::is_finished`].
//!
//! [`Connection::waiting_for`] tells the driver what the connection needs next: more input
//! (read the socket), or an event from the broker (a thread sleeps, the event loop just
//! leaves the connection in its table).
//!
//! Lifecycle (one `State` at a time):
//!
//! ```text
//!            ┌──────────── keep-alive ───────────────┐
//!            ▼                                       │
//!  accept ─► Head ─► (route) ─┬─► respond ───────────┤
//!                             ├─► Body ─► Publishing ┤  (until the broker answers, or 503)
//!                             ├─► Poll ─► answer ────┘
//!                             ├─► (Opening) ─► Sse ─ (until the client leaves or shutdown)
//!                             └─► (Opening) ─► 101 ─► WebSocket ─ (until the closing handshake)
//!  accept ─► Head ─► (the HTTP/2 preface) ─► Http2 ─ (streams, until GOAWAY: crate::http2::server)
//!            any error, timeout or `Connection: close` ─► Closing ─► (flushed) ─► closed
//! ```
//!
//! Every change of state goes through one function, `Connection::enter`: what leaving a
//! state means (a poll cancelled, a stream unsubscribed) is written once, whichever path leaves
//! it.
//!
//! Requests are handled one at a time in arrival order, so pipelined requests (RFC 9112 §9.3.2)
//! are answered in order: the next head is not parsed until the previous response is queued.
//!
//! The access log (`--access-log`, [`crate::log::AccessLine`]) is written here, not by the
//! drivers, so that both server models log alike: an exchange begins when its head is read
//! and ends when its response is queued or, for a long poll, a request body, an SSE stream or
//! a WebSocket left without one, when `enter` leaves its state. Its time is the turn's.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::app::{error_response, Action, App, Exchange, SseStart, WebSocketMode};
use crate::broker::{Message, Pending, Reader};
use crate::gate::loggable_target;
use crate::gate::origin::Cors;
use crate::gate::Grant;
use crate::http::body::BodyDecoder;
use crate::http::grammar::Parsed;
use crate::http::request::parse_request;
use crate::http::request::Request;
use crate::http::request::Version;
use crate::http::response::{format_http_date, write_response, Framing, Response};
use crate::http2::frame::{detect_preface, Preface, PREFACE};
use crate::http2::server::{H2Server, Outcome};
use crate::log::{self, AccessLine};
use crate::longpoll::LongPoll;
use crate::stats::{Kind, RouteLabel};
use crate::stream::{Io, Next, SseStream, WebSocketStream};
use crate::subscription::Subscription;
use crate::time::{Instant, Now};
use crate::transport::Transport;
use crate::wake::Wake;
use crate::ws::close::CloseCode;

/// While this many response bytes wait to be written, no further pipelined request is
/// parsed: a client that sends requests but never reads cannot make us buffer without bound.
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// How far past `max_outbound_bytes` (where a stream stops pulling from the broker) the output
/// may grow with what the client itself causes (responses, pongs, echoes, close replies)
/// before the connection stops reading from it. Twice the pull limit leaves room for a
/// WebSocket's pongs while its output is full of broker messages, so that a slow but live
/// client is not mistaken for a dead one.
pub const INPUT_PAUSE_FACTOR: usize = 2;

/// A buffer that empties is freed at once, unless it emptied before within this long: then
/// the connection is busy, and the buffer is kept until it has been empty this long. Freeing
/// and allocating them again for every message cost 11% more instructions per WebSocket echo
/// (callgrind), and keeping them all made every idle connection hold the buffers of its
/// handshake (README, "What an idle connection costs").
const BUFFER_LINGER: Duration = Duration::from_secs(1);

/// An empty output buffer larger than this, grown for a burst (an echo of a large message, a
/// replay), is freed at once rather than after [`BUFFER_LINGER`]: the memory budget counts
/// the bytes a connection holds, not its buffers' capacity.
const RETAINED_OUTPUT_CAPACITY: usize = 64 * 1024;

/// A buffer just became empty at `now`, and `emptied_at` was when it did before: whether it
/// did within [`BUFFER_LINGER`] (the connection is busy: the buffer is kept).
fn emptied_again(emptied_at: &mut Option<Instant>, now: Instant) -> bool {
    let busy = emptied_at.is_some_and(|at| now < at + BUFFER_LINGER);
    *emptied_at = Some(now);
    busy
}

/// Until when an empty buffer that still holds memory (`capacity`) is kept ([`BUFFER_LINGER`]).
fn kept_until(buffer: &[u8], capacity: usize, emptied_at: Option<Instant>) -> Option<Instant> {
    emptied_at.filter(|_| buffer.is_empty() && capacity > 0).map(|at| at + BUFFER_LINGER)
}

/// A connection's input (bytes received and not yet consumed by a parser) and output (bytes
/// waiting to be written to the client), in one box that exists only while either holds
/// memory: two empty `Vec`s are 48 bytes that every idle connection kept, and an idle
/// connection's buffers are freed anyway (README, "What an idle connection costs"). Taking a
/// buffer to write to makes the box; freeing the last memory in it drops it.
#[derive(Default)]
struct Buffers(Option<Box<BufferPair>>);

#[derive(Default)]
struct BufferPair {
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Buffers {
    fn input(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |pair| &pair.input)
    }

    fn output(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |pair| &pair.output)
    }

    fn input_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0.get_or_insert_with(Box::default).input
    }

    fn output_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0.get_or_insert_with(Box::default).output
    }

    fn both_mut(&mut self) -> (&mut Vec<u8>, &mut Vec<u8>) {
        let pair = self.0.get_or_insert_with(Box::default);
        (&mut pair.input, &mut pair.output)
    }

    /// The memory each buffer holds, full or not: (input, output).
    fn capacity(&self) -> (usize, usize) {
        self.0.as_ref().map_or((0, 0), |pair| (pair.input.capacity(), pair.output.capacity()))
    }

    /// Drops the input and frees its memory.
    fn free_input(&mut self) {
        if let Some(pair) = &mut self.0 {
            pair.input = Vec::new();
        }
        self.drop_if_unused();
    }

    /// Drops the output and frees its memory.
    fn free_output(&mut self) {
        if let Some(pair) = &mut self.0 {
            pair.output = Vec::new();
        }
        self.drop_if_unused();
    }

    /// Drops the box once neither buffer holds memory (a stream's turn that wrote nothing
    /// made one, say).
    fn drop_if_unused(&mut self) {
        if self.capacity() == (0, 0) {
            self.0 = None;
        }
    }
}

/// What the connection needs before it can make progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Bytes from the client (a request head or body).
    ForInput,
    /// A wake-up from the broker or a deadline (a parked poll, an SSE stream).
    ForBroker,
    /// Either: a WebSocket reads frames and follows its channel at the same time.
    ForInputAndBroker,
    /// Nothing more: flush the output, then close.
    ForClose,
}

/// How every response to the current request is written: its framing, and the CORS fields
/// that let an allowed page read it (errors included).
#[derive(Clone, Debug)]
struct Reply {
    framing: Framing,
    cors: Cors,
}

impl Reply {
    /// The same, but the connection closes after it: an error whose request's bytes cannot be
    /// trusted. An allowed page may still read it.
    fn closing(&self) -> Reply {
        Reply { framing: Framing { keep_alive: false, ..self.framing }, cors: self.cors.clone() }
    }
}

enum State {
    /// Waiting for a request head. `idle_since` starts the keep-alive idle timer; `started`
    /// starts the header timer: when the first byte of this head arrived, or for the first
    /// request of a connection, when it was accepted.
    Head { idle_since: Instant, started: Option<Instant> },
    /// Reading a request body to publish.
    Body(Box<Upload>),
    /// A publish the broker has not answered yet (Redis: the command is on the link). At
    /// `deadline` (`--redis-timeout` after the body) the client is answered 503 and the late
    /// answer is discarded.
    Publishing(Box<InFlight>),
    /// A long poll waiting for a message or its timeout.
    Poll(Box<PollExchange>),
    /// A stream whose start in its channel ("only new messages": the tail) the broker is
    /// still asking for; nothing has been written yet. Its head (or `101`) goes out once the
    /// start is known, so that nothing the client publishes after seeing it can be skipped.
    Opening { opening: Box<Opening>, deadline: Instant },
    /// A Server-Sent Events stream ([`crate::stream::SseStream`]).
    Sse(Box<SseStream>),
    /// An upgraded WebSocket ([`crate::stream::WebSocketStream`]).
    WebSocket(Box<WebSocketStream>),
    /// An HTTP/2 connection (prior-knowledge h2c, RFC 9113 §3.3): the client's first octets
    /// were the preface. Its streams are exchanges of their own ([`crate::http2::server`]).
    Http2(Box<H2Server>),
    /// The last bytes are queued; once written, the connection closes.
    Closing,
}

/// A publish's request body as it arrives ([`State::Body`]); boxed, like every state bigger
/// than a few words, so that an idle connection's state stays small (README, "Idle
/// connections").
struct Upload {
    channel: String,
    reply: Reply,
    decoder: BodyDecoder,
    body: Vec<u8>,
    deadline: Instant,
}

/// A publish in flight ([`State::Publishing`]).
struct InFlight {
    pending: Pending<Arc<Message>>,
    reply: Reply,
    deadline: Instant,
}

/// A long poll and how to answer it ([`State::Poll`]), boxed together: a parked poll's
/// connection keeps one pointer in its state.
struct PollExchange {
    poll: LongPoll,
    reply: Reply,
}

/// What the access log keeps of the exchange in progress until it ends.
struct AccessRecord {
    /// `-` when the head could not be read.
    method: String,
    /// The path and query, tokens redacted ([`loggable_target`]).
    target: String,
    started: Instant,
    /// [`Connection::produced`] when it began: its bytes are what that grows by.
    produced_before: u64,
}

/// What a stream in [`State::Opening`] will be.
enum Opening {
    Sse { subscription: Subscription, grant: Grant, reply: Reply },
    WebSocket { subscription: Subscription, grant: Grant, accept: crate::ws::handshake::Accepted },
}

impl Opening {
    fn subscription(&mut self) -> &mut Subscription {
        match self {
            Opening::Sse { subscription, .. } | Opening::WebSocket { subscription, .. } => subscription,
        }
    }
}

pub struct Connection {
    /// Unique per process; the broker knows our wake by it.
    id: u64,
    app: Arc<App>,
    /// The client's address: what per-address limits count by.
    peer: IpAddr,
    /// Bytes received and not yet consumed by a parser, and bytes waiting to be written.
    buffers: Buffers,
    state: State,
    /// The client has finished sending (read returned 0).
    input_closed: bool,
    /// What this connection counts as in `/stats`.
    kind: Kind,
    /// What it last told the memory budget it holds.
    charged: usize,
    /// When the input buffer, and the output buffer, last became empty (`None`: never): see
    /// [`BUFFER_LINGER`]. Apart, because a request and its answer are one exchange, not two.
    input_emptied_at: Option<Instant>,
    output_emptied_at: Option<Instant>,
    /// Since when output has waited without the client taking any of it: after
    /// `send_timeout` the client is a slow consumer and is disconnected.
    stalled_since: Option<Instant>,
    /// Ended for not taking its output within `send_timeout` (counted in `/stats` once).
    ended_as_slow: bool,
    /// The time of the latest turn ([`Connection::advance`]). The broker is told when a
    /// subscriber leaves a channel (an idle channel's time starts then); a connection that
    /// leaves outside a turn (dropped, or closed for overload) tells it this, a turn old at most.
    /// It is also the time of an access line.
    last_turn: Now,
    /// Bytes written to the client so far.
    sent: u64,
    /// The exchange in progress, with `--access-log`.
    access: Option<Box<AccessRecord>>,
    /// The request being answered, for `/metrics`: the turn its head's first bytes were read
    /// in, and its route once known.
    request: (Option<Instant>, RouteLabel),
}

impl Connection {
    pub fn new(app: Arc<App>, peer: IpAddr, now: Now) -> Connection {
        app.stats.connection_opened(Kind::Http);
        Connection {
            id: app.next_connection_id(),
            app,
            peer,
            buffers: Buffers::default(),
            // The header timeout runs from the accept: a connection that sends nothing holds its
            // slot no longer than a slow request head may.
            state: State::Head { idle_since: now.instant, started: Some(now.instant) },
            input_closed: false,
            kind: Kind::Http,
            charged: 0,
            stalled_since: None,
            input_emptied_at: None,
            output_emptied_at: None,
            ended_as_slow: false,
            last_turn: now,
            sent: 0,
            access: None,
            request: (None, RouteLabel::None),
        }
    }

    /// Bytes read from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.app.stats.bytes_in(bytes.len());
        self.buffers.input_mut().extend_from_slice(bytes);
        self.account();
    }

    /// The client closed its sending side.
    pub fn receive_eof(&mut self) {
        self.input_closed = true;
    }

    /// Bytes to write to the client.
    pub fn output(&self) -> &[u8] {
        self.buffers.output()
    }

    /// `n` bytes of [`Connection::output`] were written in the turn just taken
    /// ([`Connection::advance`]), whose time they take: an event loop writes without blocking
    /// right after the turn, and reading the clock again for every write cost more than the
    /// write's bookkeeping.
    pub fn consume_output_in_this_turn(&mut self, n: usize) {
        self.consume_output(n, self.last_turn.instant);
    }

    /// `n` bytes of [`Connection::output`] were written at `now`.
    pub fn consume_output(&mut self, n: usize, now: Instant) {
        // A driver reports what it wrote of a slice it copied out earlier: never more than is
        // still queued (nothing else removes output while a WebSocket's threads share it).
        let n = n.min(self.buffers.output().len());
        self.app.stats.bytes_out(n);
        self.sent += n as u64;
        if n > 0 {
            self.buffers.output_mut().drain(..n);
        }
        // Progress: the slow-consumer clock restarts if anything is left.
        let emptied = self.buffers.output().is_empty();
        self.stalled_since = if emptied { None } else { Some(now) };
        if emptied && n > 0 {
            let busy = emptied_again(&mut self.output_emptied_at, now);
            if !busy || self.buffers.capacity().1 > RETAINED_OUTPUT_CAPACITY {
                self.buffers.free_output();
            }
        }
        self.account();
    }

    /// Bytes of memory the input and output buffers hold, full or not, and the room a
    /// WebSocket keeps for its next message: an idle connection holds none, a busy one keeps
    /// them for a second after they empty.
    pub fn buffer_capacity(&self) -> usize {
        let (input, output) = self.buffers.capacity();
        let spare = match &self.state {
            State::WebSocket(stream) => stream.spare_bytes(),
            _ => 0,
        };
        input + output + spare
    }

    /// The client has closed its sending side.
    pub fn is_input_closed(&self) -> bool {
        self.input_closed
    }

    /// A long poll waiting for the broker (for the event loop's per-worker counts).
    pub fn is_parked_poll(&self) -> bool {
        matches!(&self.state, State::Poll(exchange) if exchange.poll.is_parked())
    }

    /// Closed once everything queued is written: the driver closes the socket.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Closing) && self.buffers.output().is_empty()
    }

    pub fn waiting_for(&self) -> Waiting {
        match self.state {
            State::Head { .. } | State::Body(_) => Waiting::ForInput,
            State::Poll(_) | State::Sse(_) | State::Publishing(_) | State::Opening { .. } => Waiting::ForBroker,
            State::WebSocket(_) | State::Http2(_) => Waiting::ForInputAndBroker,
            State::Closing => Waiting::ForClose,
        }
    }

    /// How many more bytes the connection will buffer from the client right now. The event
    /// loop stops reading at zero (backpressure); a blocking driver reads only when waiting
    /// for input.
    ///
    /// Zero also while the client has not taken what it is owed: a client that floods pings or
    /// echo messages and never reads would otherwise make us queue the replies without bound.
    /// Not reading lets the kernel's buffers fill and push back on the client instead.
    pub fn input_room(&self) -> usize {
        if self.buffers.output().len() >= self.app.config.max_outbound_bytes.saturating_mul(INPUT_PAUSE_FACTOR) {
            return 0;
        }
        let cap = self.app.config.limits.max_head_bytes + 64 * 1024;
        cap.saturating_sub(self.buffers.input().len())
    }

    /// When [`Connection::advance`] must be called even if nothing else happens.
    pub fn next_deadline(&self) -> Option<Instant> {
        let config = &self.app.config;
        let deadline = match &self.state {
            State::Head { started: Some(started), .. } => Some(*started + config.header_timeout),
            State::Head { idle_since, started: None } => Some(*idle_since + config.idle_timeout),
            State::Body(upload) => Some(upload.deadline),
            State::Publishing(publish) => Some(publish.deadline),
            State::Opening { deadline, .. } => Some(*deadline),
            State::Poll(exchange) => Some(exchange.poll.deadline()),
            State::Sse(stream) => Some(stream.next_deadline()),
            State::WebSocket(stream) => Some(stream.next_deadline(config.keepalive)),
            State::Http2(server) => server.next_deadline(&self.app),
            State::Closing => None,
        };
        let stall = self.stalled_since.map(|since| since + config.send_timeout);
        [deadline, stall, self.buffers_release_at()].into_iter().flatten().min()
    }

    /// Makes all the progress possible with the input so far, the broker's state and the time.
    pub fn advance(&mut self, now: Now, wake: &Wake) {
        self.last_turn = now;
        let had_input = !self.buffers.input().is_empty();
        let send_timeout = self.app.config.send_timeout;
        if self.stalled_since.is_some_and(|since| now.instant >= since + send_timeout) {
            // RFC 6455 §7.4.1: 1008 "indicates that an endpoint is terminating the connection
            // because it has received a message that violates its policy"; here the policy
            // is the send timeout.
            if !self.ended_as_slow {
                // Counted once: a WebSocket given its grace period may come back here at its end.
                self.ended_as_slow = true;
                self.app.stats.slow_consumer();
            }
            self.end_now(now, CloseCode::POLICY, "slow consumer");
        }
        let closing = matches!(self.state, State::Closing);
        if !closing && self.app.budget.should_shed(self.held(), self.app.stats.open_connections()) {
            self.app.budget.shed();
            self.shed(now);
        }
        while self.step(now, wake) {}
        if !self.buffers.output().is_empty() && self.stalled_since.is_none() {
            // Bytes are owed from now: the slow-consumer clock starts with this turn, not with
            // the next one (which may be a keepalive interval away).
            self.stalled_since = Some(now.instant);
        }
        if had_input && self.buffers.input().is_empty() && !emptied_again(&mut self.input_emptied_at, now.instant) {
            self.free_input();
        }
        let (input_capacity, output_capacity) = self.buffers.capacity();
        if kept_until(self.buffers.input(), input_capacity, self.input_emptied_at).is_some_and(|at| now.instant >= at) {
            self.free_input();
        }
        if kept_until(self.buffers.output(), output_capacity, self.output_emptied_at)
            .is_some_and(|at| now.instant >= at)
        {
            self.buffers.free_output();
        }
        self.account();
    }

    /// The input has gone quiet (it emptied and had not emptied within [`BUFFER_LINGER`], or
    /// it has stayed empty that long): its buffer is freed, and so is the room a WebSocket
    /// keeps for its next message, by the same rule.
    fn free_input(&mut self) {
        self.buffers.free_input();
        if let State::WebSocket(stream) = &mut self.state {
            stream.release_spare();
        }
    }

    /// When a kept buffer is to be freed, if one is kept.
    fn buffers_release_at(&self) -> Option<Instant> {
        let (input_capacity, output_capacity) = self.buffers.capacity();
        let input = kept_until(self.buffers.input(), input_capacity, self.input_emptied_at);
        input.into_iter().chain(kept_until(self.buffers.output(), output_capacity, self.output_emptied_at)).min()
    }

    /// Bytes this connection holds that its client controls: input not yet parsed, a partial
    /// body or WebSocket message, output not yet written ([`crate::budget`]).
    fn held(&self) -> usize {
        let partial = match &self.state {
            State::Body(upload) => upload.body.len(),
            State::WebSocket(stream) => stream.buffered_bytes(),
            State::Http2(server) => server.buffered_bytes(),
            _ => 0,
        };
        self.buffers.input().len() + self.buffers.output().len() + partial
    }

    /// Tells the process-wide budget what this connection holds now.
    fn account(&mut self) {
        self.buffers.drop_if_unused();
        let held = self.held();
        self.app.budget.update(self.charged, held);
        self.charged = held;
    }

    /// The memory budget is exceeded and this connection holds more than its share: it gives
    /// up what it holds, with an answer the client understands. A WebSocket is closed with 1009
    /// (RFC 6455 §7.4.1: "a message that is too big for it to process"; here, too big for the
    /// server right now) and its partial message dropped; a request body is refused with 503;
    /// anything else is dropped with its output, as a slow consumer would be.
    fn shed(&mut self, now: Now) {
        self.buffers.free_input();
        match &self.state {
            State::Body(upload) => {
                let reply = upload.reply.closing();
                let busy =
                    Response::text(503, "server memory budget exceeded, try again").with_header("Retry-After", "1");
                self.respond(now, busy, &reply);
            }
            _ => self.end_now(now, CloseCode::TOO_BIG, "server memory budget exceeded"),
        }
        self.account();
    }

    /// Ends the connection from the server's side. A WebSocket gets one more `send_timeout`
    /// to read on and find a close with `code` at the end of its backlog; anything else, or a
    /// WebSocket that still reads nothing, is dropped with its output. Either way the client
    /// can resume from the last id it received.
    fn end_now(&mut self, now: Now, code: CloseCode, reason: &str) {
        let was_websocket = self.say_farewell(code, reason);
        if !was_websocket {
            // Dropped before the exchange ends, so that its access line counts only what went.
            self.buffers.free_output();
        }
        self.enter(State::Closing, now.instant);
        self.stalled_since = if was_websocket { Some(now.instant) } else { None };
    }

    /// The driver cannot keep this connection (the thread model ran out of threads for a
    /// WebSocket's reader): a WebSocket is told 1011 behind what it has not
    /// read yet, and the connection closes once that is written.
    pub fn close_overloaded(&mut self) {
        // RFC 6455 §7.4.1: 1011, "an unexpected condition that prevented it from fulfilling
        // the request". 1013 "Try Again Later" would say it better, but it was registered
        // after the RFC and strict peers (ours, Autobahn's) refuse it as undefined.
        self.say_farewell(CloseCode::INTERNAL_ERROR, "server overloaded, try again later");
        self.enter(State::Closing, self.last_turn.instant);
    }

    /// A WebSocket queues its Close with `code` and `reason` (RFC 6455 §5.5.1), behind what it
    /// has not written yet; `true` if this is a WebSocket. Other states have nothing to say.
    fn say_farewell(&mut self, code: CloseCode, reason: &str) -> bool {
        let State::WebSocket(stream) = &mut self.state else { return false };
        stream.close_now(code, reason, self.buffers.output_mut());
        true
    }

    /// Every change of state goes through here, so what leaving and entering a state mean is
    /// written once, whichever path takes it (an answer, the client's hang-up, a stream's end,
    /// a slow consumer, the memory budget, an overloaded driver, the connection being dropped):
    ///
    /// - leaving a long poll cancels it (and a parked one stops counting as parked);
    /// - leaving an SSE stream or a WebSocket stops following its channel;
    /// - entering a stream makes the connection count as that kind in `/stats`;
    /// - leaving a stream ends its exchange in the access log, and so does leaving a long poll
    ///   or a request body that was not answered (an answered one was logged by `respond`).
    ///
    /// `at` is when: the broker starts an idle channel's time from its last subscriber's leaving.
    fn enter(&mut self, next: State, at: Instant) {
        let kind = match &next {
            State::Sse(_) => Some(Kind::Sse),
            State::WebSocket(_) => Some(Kind::WebSocket),
            _ => None,
        };
        let ended = match std::mem::replace(&mut self.state, next) {
            State::Poll(mut exchange) => {
                let poll = &mut exchange.poll;
                if poll.is_parked() {
                    self.app.stats.poll_unparked();
                }
                poll.cancel(&*self.app.broker, self.id, at);
                Some((None, Some(Transport::LongPoll), None))
            }
            // Never registered: this only drops what the broker was asking for it. The client
            // never saw the stream open: its exchange ends without a status.
            State::Opening { mut opening, .. } => {
                opening.subscription().unregister(&*self.app.broker, self.id, at);
                let transport = match *opening {
                    Opening::Sse { .. } => Transport::Sse,
                    Opening::WebSocket { .. } => Transport::WebSocket,
                };
                Some((None, Some(transport), None))
            }
            State::Sse(mut stream) => {
                stream.stop(&self.app, self.id, at);
                Some((Some(200), Some(Transport::Sse), None))
            }
            State::WebSocket(mut stream) => {
                stream.stop(&self.app, self.id, at);
                Some((Some(101), Some(Transport::WebSocket), Some(stream.close_code())))
            }
            // A complete body becomes a publish in flight: the same exchange goes on.
            State::Body(_) if matches!(self.state, State::Publishing(_)) => None,
            // A body or a publish left unanswered (an answered one was logged by `respond`).
            State::Body(_) | State::Publishing(_) => Some((None, None, None)),
            // Each stream is an exchange of its own, logged by the server as it ends.
            State::Http2(mut server) => {
                server.stop_all(&self.app, Now { instant: at, unix_ms: self.last_turn.unix_ms });
                None
            }
            State::Head { .. } | State::Closing => None,
        };
        if let Some((status, transport, close_code)) = ended {
            self.end_exchange(status, transport, close_code);
        }
        if let Some(kind) = kind {
            self.app.stats.connection_closed(self.kind);
            self.app.stats.connection_opened(kind);
            self.kind = kind;
        }
    }

    /// The connection waits for the next request head, from `at` (keep-alive), or closes.
    fn next_request(&mut self, keep_alive: bool, at: Instant) {
        let next = if keep_alive { State::Head { idle_since: at, started: None } } else { State::Closing };
        self.enter(next, at);
    }

    /// One transition; `true` if another may follow at once.
    fn step(&mut self, now: Now, wake: &Wake) -> bool {
        match &mut self.state {
            State::Head { started, idle_since } => {
                if started.is_none() && !self.buffers.input().is_empty() {
                    *started = Some(now.instant);
                }
                if !self.buffers.input().is_empty() {
                    self.request.0.get_or_insert(now.instant);
                }
                let deadline = match started {
                    Some(started) => *started + self.app.config.header_timeout,
                    None => *idle_since + self.app.config.idle_timeout,
                };
                self.read_head(now, deadline, wake)
            }
            State::Body(_) => self.read_body(now),
            State::Publishing(_) => self.finish_publish(now, wake),
            State::Opening { .. } => self.open(now, wake),
            State::Poll(_) => self.poll(now, wake),
            State::Sse(_) | State::WebSocket(_) => self.stream(now, wake),
            State::Http2(_) => self.http2(now, wake),
            State::Closing => false,
        }
    }

    /// Waits for a request head until `deadline`: the header timeout once a head has begun
    /// (or from the accept, for a connection's first request), else the keep-alive idle limit.
    fn read_head(&mut self, now: Now, deadline: Instant, wake: &Wake) -> bool {
        let config = &self.app.config;
        if self.buffers.output().len() >= OUTPUT_HIGH_WATER {
            return false; // let the driver drain the responses already queued
        }
        if self.buffers.input().is_empty() {
            // Between requests: close when the client has gone, the server is stopping, or
            // nothing came in time. Nothing is owed, so no response.
            if self.input_closed || self.app.is_shutting_down() || now.instant >= deadline {
                self.enter(State::Closing, now.instant);
            }
            return false;
        }
        if self.produced() == 0 {
            // RFC 9113 §3.3: a client that knows the server speaks HTTP/2 sends the preface
            // first; no HTTP/1.1 request begins with it, so one port serves both.
            match detect_preface(self.buffers.input()) {
                Preface::Http2 => {
                    self.buffers.input_mut().drain(..PREFACE.len());
                    let server = H2Server::new(&self.app, self.peer, now.instant, self.buffers.output_mut());
                    self.enter(State::Http2(Box::new(server)), now.instant);
                    return true;
                }
                Preface::NeedMore if !(self.input_closed || self.app.is_shutting_down() || now.instant >= deadline) => {
                    return false;
                }
                Preface::NeedMore | Preface::Http1 => {}
            }
        }
        let exchange = match parse_request(self.buffers.input(), &config.limits) {
            Ok(Parsed::Partial) => {
                if self.input_closed || self.app.is_shutting_down() {
                    // The rest of the head will never arrive (or we will not wait for it).
                    self.enter(State::Closing, now.instant);
                } else if now.instant >= deadline {
                    // RFC 9110 §15.5.9: 408 "indicates that the server did not receive a
                    // complete request message within the time that it was prepared to wait".
                    let started = deadline.checked_sub(config.header_timeout).unwrap_or(now.instant);
                    self.access = self.access_record(None, started);
                    self.fail(now, Response::text(408, "request head not received in time"));
                }
                return false;
            }
            Ok(Parsed::Complete { value: request, consumed }) => {
                let record = self.access_record(Some(&request), now.instant);
                let exchange = self.app.handle(&request, self.peer, now);
                request.recycle();
                self.buffers.input_mut().drain(..consumed);
                self.access = record;
                exchange
            }
            Err(error) => {
                self.access = self.access_record(None, now.instant);
                Exchange::failed(plain_framing(), error)
            }
        };
        self.start(exchange, now, wake);
        true
    }

    /// Begins the exchange decided by [`App::handle`].
    fn start(&mut self, exchange: Exchange, now: Now, wake: &Wake) {
        let Exchange { framing, cors, action, route } = exchange;
        self.request.1 = route;
        let reply = Reply { framing, cors };
        match action {
            Action::Respond(response) | Action::Reject(response) => self.respond(now, response, &reply),
            Action::Publish { channel, body, send_continue } => {
                let decoder = match BodyDecoder::new(body, self.app.config.max_publish_bytes) {
                    Ok(decoder) => decoder,
                    Err(error) => return self.respond(now, error_response(error), &reply.closing()),
                };
                if send_continue {
                    // RFC 9110 §15.2.1: the interim response tells the client to send the body.
                    self.buffers.output_mut().extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                let deadline = now.instant + self.app.config.header_timeout;
                let upload = Upload { channel, reply, decoder, body: Vec::new(), deadline };
                self.enter(State::Body(Box::new(upload)), now.instant);
            }
            Action::Poll(poll) => self.enter(State::Poll(Box::new(PollExchange { poll, reply })), now.instant),
            Action::Sse(start) => self.start_sse(start, &reply, now),
            Action::Upgrade(start) => match start.mode {
                WebSocketMode::Echo => {
                    let stream = WebSocketStream::start(&start.accept, None, start.grant, &mut self.io(now, wake));
                    self.answered(101, now.instant);
                    self.enter(State::WebSocket(Box::new(stream)), now.instant);
                }
                WebSocketMode::Channel { channel, since } => {
                    let subscription = Subscription::new(&channel, since);
                    let opening = Opening::WebSocket { subscription, grant: start.grant, accept: start.accept };
                    let deadline = now.instant + self.app.config.redis_timeout;
                    self.enter(State::Opening { opening: Box::new(opening), deadline }, now.instant);
                }
            },
        }
    }

    /// A `text/event-stream` response: `HEAD` gets its head now; `GET` opens the stream once
    /// it knows where it starts (`State::Opening`, usually left in the same turn).
    fn start_sse(&mut self, start: SseStart, reply: &Reply, now: Now) {
        if reply.framing.head_only {
            let chunked = reply.framing.version == Version::Http11;
            let date = format_http_date(now.unix_secs());
            SseStream::write_head(self.buffers.output_mut(), &reply.cors.fields(), chunked, &date);
            self.answered(200, now.instant);
            self.end_exchange(Some(200), Some(Transport::Sse), None);
            return self.next_request(reply.framing.keep_alive && chunked, now.instant);
        }
        let subscription = Subscription::new(&start.channel, start.since);
        let opening = Opening::Sse { subscription, grant: start.grant, reply: reply.clone() };
        let deadline = now.instant + self.app.config.redis_timeout;
        self.enter(State::Opening { opening: Box::new(opening), deadline }, now.instant);
    }

    /// A stream in `State::Opening` opens once the broker says where it starts: the SSE head
    /// and `retry:`, or the `101`, then the stream. A client that leaves, or a server shutting
    /// down, closes it before anything was written.
    fn open(&mut self, now: Now, wake: &Wake) -> bool {
        if self.input_closed || self.app.is_shutting_down() {
            self.enter(State::Closing, now.instant);
            return false;
        }
        let State::Opening { opening, deadline } = &mut self.state else { return false };
        let reader = Reader { subscriber: self.id, wake };
        if opening.subscription().resolve_start(&*self.app.broker, reader).is_pending() {
            if now.instant >= *deadline {
                // The broker's answer lands within --redis-timeout; this only keeps a deadline
                // in the past from making the driver spin until it does.
                *deadline = now.instant + self.app.config.redis_timeout;
            }
            return false;
        }
        // Taken out to become the stream (as `stream` does; the transition is the `enter` below).
        let State::Opening { opening, .. } = std::mem::replace(&mut self.state, State::Closing) else { return false };
        match *opening {
            Opening::Sse { subscription, grant, reply } => {
                // HTTP/1.1: chunked, so the stream can end cleanly with a last-chunk. HTTP/1.0
                // has no chunking: the stream is delimited by closing the connection (RFC 9112
                // §6.3 rule 8).
                let chunked = reply.framing.version == Version::Http11;
                let date = format_http_date(now.unix_secs());
                SseStream::write_head(self.buffers.output_mut(), &reply.cors.fields(), chunked, &date);
                self.answered(200, now.instant);
                let stream = SseStream::start(subscription, chunked, grant, &mut self.io(now, wake));
                self.enter(State::Sse(Box::new(stream)), now.instant);
            }
            Opening::WebSocket { subscription, grant, accept } => {
                let stream = WebSocketStream::start(&accept, Some(subscription), grant, &mut self.io(now, wake));
                self.answered(101, now.instant);
                self.enter(State::WebSocket(Box::new(stream)), now.instant);
            }
        }
        true
    }

    /// The context a stream advances with.
    fn io<'a>(&'a mut self, now: Now, wake: &'a Wake) -> Io<'a> {
        let (input, output) = self.buffers.both_mut();
        Io {
            app: &self.app,
            subscriber: self.id,
            peer: self.peer,
            wake,
            now,
            input,
            output,
            input_closed: self.input_closed,
        }
    }

    /// An SSE stream or a WebSocket makes progress.
    fn stream(&mut self, now: Now, wake: &Wake) -> bool {
        // The stream is taken out while it advances, because `io` lends it the connection's
        // buffers; it goes back before any transition. (Not a transition itself: nothing leaves.)
        let mut state = std::mem::replace(&mut self.state, State::Closing);
        let next = match &mut state {
            State::Sse(stream) => stream.advance(&mut self.io(now, wake)),
            State::WebSocket(stream) => stream.advance(&mut self.io(now, wake)),
            _ => Next::Close,
        };
        self.state = state;
        if next == Next::Close {
            self.enter(State::Closing, now.instant);
        }
        false
    }

    /// An HTTP/2 connection's turn: the protocol and its streams, in [`H2Server`].
    fn http2(&mut self, now: Now, wake: &Wake) -> bool {
        // Taken out while it advances, as in `stream`: `io` lends it the connection's buffers.
        let mut server = match std::mem::replace(&mut self.state, State::Closing) {
            State::Http2(server) => server,
            other => {
                self.state = other;
                return false;
            }
        };
        let outcome = server.advance(&mut self.io(now, wake));
        self.state = State::Http2(server);
        match outcome {
            Outcome::Continue => {}
            Outcome::Close => self.enter(State::Closing, now.instant),
            Outcome::Drop => {
                self.buffers.free_output();
                self.enter(State::Closing, now.instant);
            }
        }
        false
    }

    fn read_body(&mut self, now: Now) -> bool {
        let State::Body(upload) = &mut self.state else {
            return false;
        };
        let Upload { channel, reply, decoder, body, deadline } = &mut **upload;
        let failed = reply.closing();
        match decoder.decode(self.buffers.input(), body) {
            Ok(progress) => {
                self.buffers.input_mut().drain(..progress.consumed);
                if progress.done {
                    let reply = reply.clone();
                    match self.app.publish(channel, body, now) {
                        Ok(pending) => {
                            let deadline = now.instant + self.app.config.redis_timeout;
                            let publish = InFlight { pending, reply, deadline };
                            self.enter(State::Publishing(Box::new(publish)), now.instant);
                        }
                        Err(response) => self.respond(now, response, &reply),
                    }
                    return true;
                }
                if self.input_closed || self.app.is_shutting_down() {
                    self.enter(State::Closing, now.instant);
                } else if now.instant >= *deadline {
                    self.respond(now, Response::text(408, "request body not received in time"), &failed);
                }
                false
            }
            Err(error) => {
                self.respond(now, error_response(error), &failed);
                false
            }
        }
    }

    /// Answers a publish once the broker has (at once, on the memory broker), or 503 with
    /// `Retry-After: 1` when it has not within `--redis-timeout`.
    fn finish_publish(&mut self, now: Now, wake: &Wake) -> bool {
        let State::Publishing(publish) = &mut self.state else { return false };
        let InFlight { pending, reply, deadline } = &mut **publish;
        let response = match pending.poll(wake) {
            Poll::Ready(result) => self.app.published(result),
            Poll::Pending if now.instant < *deadline => return false,
            // RFC 9110 §15.6.4: 503 "indicates that the server is currently unable to handle
            // the request due to a temporary overload"; §10.2.3: Retry-After says when to try.
            // Redis may still run the command: the message may exist (at least once, as with
            // a reply lost to a broken connection).
            Poll::Pending => Response::text(503, "broker did not answer in time, message may not be published")
                .with_header("Retry-After", "1"),
        };
        let reply = reply.clone();
        self.respond(now, response, &reply);
        true
    }

    /// Long-polling steps 2 to 4 ([`crate::longpoll`]).
    fn poll(&mut self, now: Now, wake: &Wake) -> bool {
        let State::Poll(exchange) = &mut self.state else { return false };
        let PollExchange { poll, reply } = &mut **exchange;
        let was_parked = poll.is_parked();
        // A client that hung up is not waiting for an answer any more.
        let give_up = self.app.is_shutting_down() || self.input_closed;
        let outcome = poll.poll(&*self.app.broker, self.id, wake, now.instant, give_up);
        let parked = poll.is_parked();
        match (was_parked, parked) {
            (false, true) => self.app.stats.poll_parked(),
            (true, false) => self.app.stats.poll_unparked(),
            _ => {}
        }
        match outcome {
            Poll::Pending => false,
            Poll::Ready(answer) => {
                self.app.stats.batch_delivered(Transport::LongPoll, &answer.batch, poll.live_from_ms(), now.unix_ms);
                let mut reply = reply.clone();
                reply.framing.keep_alive &= !self.app.is_shutting_down();
                let response = Response::json(200, answer.body).with_header("Cache-Control", "no-store");
                self.respond(now, response, &reply);
                true
            }
        }
    }

    /// Queues a complete response with the exchange's CORS fields, then waits for the next
    /// request or closes.
    fn respond(&mut self, now: Now, mut response: Response, reply: &Reply) {
        reply.cors.apply(&mut response);
        let date = format_http_date(now.unix_secs());
        write_response(self.buffers.output_mut(), &response, reply.framing, &date);
        self.answered(response.status, now.instant);
        let transport = if matches!(self.state, State::Poll(_)) { Some(Transport::LongPoll) } else { None };
        self.end_exchange(Some(response.status), transport, None);
        self.next_request(reply.framing.keep_alive, now.instant);
    }

    /// Bytes written to the client or queued for it: what an exchange's bytes are counted by
    /// (output dropped unsent stops counting).
    fn produced(&self) -> u64 {
        self.sent + self.buffers.output().len() as u64
    }

    /// With `--access-log`, the record of an exchange that begins at `at`, for `request`
    /// (`None`: a head that could not be read).
    fn access_record(&self, request: Option<&Request<'_>>, at: Instant) -> Option<Box<AccessRecord>> {
        if !self.app.config.access_log {
            return None;
        }
        let (method, target) = match request {
            Some(request) => (request.method.to_string(), loggable_target(request)),
            None => ("-".to_string(), "-".to_string()),
        };
        Some(Box::new(AccessRecord { method, target, started: at, produced_before: self.produced() }))
    }

    /// The exchange in progress, if any, ends now (this turn): its access line.
    fn end_exchange(&mut self, status: Option<u16>, transport: Option<Transport>, close_code: Option<CloseCode>) {
        let Some(record) = self.access.take() else { return };
        let now = self.last_turn;
        log::access(
            now.unix_ms,
            &AccessLine {
                remote: self.peer,
                method: &record.method,
                path: &record.target,
                status,
                bytes: self.produced().saturating_sub(record.produced_before),
                duration_ms: now.instant.saturating_duration_since(record.started).as_millis() as u64,
                transport,
                close_code: close_code.map(|code| code.0),
            },
        );
    }

    /// A response (or a stream's head, or a 101) with `status` is queued `at`: `/metrics`
    /// counts it and times its request, and the next request starts afresh.
    fn answered(&mut self, status: u16, at: Instant) {
        let (began, route) = std::mem::replace(&mut self.request, (None, RouteLabel::None));
        self.app.stats.responded(route, status, at.saturating_duration_since(began.unwrap_or(at)));
    }

    /// Answers a request whose head could not be read (so no CORS either), and closes.
    fn fail(&mut self, now: Now, response: Response) {
        self.respond(now, response, &Reply { framing: plain_framing(), cors: Cors::NotApplicable });
    }
}

/// Framing for a response to a request whose head could not be read: HTTP/1.1, close after.
fn plain_framing() -> Framing {
    Framing { version: Version::Http11, keep_alive: false, head_only: false }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.enter(State::Closing, self.last_turn.instant);
        self.app.stats.connection_closed(self.kind);
        self.app.budget.update(self.charged, 0);
    }
}
