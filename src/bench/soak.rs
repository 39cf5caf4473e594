//! `realtime bench soak`: a long run of mixed, churning and misbehaving clients, and three
//! rules the server must keep through it.
//!
//! # The clients
//!
//! - **Followers**, the well-behaved: `--subs N` per transport (long poll, SSE, WebSocket),
//!   spread over `--channels C` channels. Each reads everything, and after a random lifetime
//!   it leaves (its connection is dropped, mid-stream or mid-request) and comes back at once,
//!   resuming from the id of the last message it received, as a browser does. A publisher
//!   thread sends `--rate R` messages per second round-robin over the channels and keeps the
//!   id the server answered for each, in order: per channel, that list is exactly what a
//!   follower is owed after the message it started from.
//! - **Abusers**, `--abusers N` of each kind `--abuse` names ([`super::abuse`]): slow readers
//!   on a busy channel of their own (the *firehose*), ping and echo floods that never read,
//!   partial heads, bodies and WebSocket messages, silent connections, and resets (a
//!   connection closed with the server's answer unread, which makes the kernel send an RST
//!   instead of a FIN: std cannot set `SO_LINGER`, and this needs nothing unsafe). Each has a
//!   lifetime too and is replaced by a fresh one when it ends, or when the server ends it.
//!
//! # The run
//!
//! ```text
//! server at rest ─► followers connect ─► publisher starts ─► baseline fds
//!   ─► abusers connect ─► main phase (--minutes M): churn, samples of RSS and fds
//!   ─► abusers leave ─► fds must come back (FD_GRACE) ─► publisher stops
//!   ─► followers catch up (DRAIN_GRACE) ─► the ledgers are settled
//! ```
//!
//! # The rules (any one broken: exit code 1, and the table says which)
//!
//! 1. **RSS levels off**: split the main phase into thirds by time; the highest RSS sampled in
//!    the last third may exceed the highest of the middle third by at most 10% plus 16 MiB
//!    ([`levels_off`]). The first third is left out: it holds the warm-up (allocator pools,
//!    buffers reaching their working size, the firehose's history filling), and a server
//!    whose memory is bounded has reached its plateau by the middle third, while one that
//!    keeps something per abusive connection keeps climbing. The slack absorbs the allocator's
//!    noise and the followers' channels' histories, which fill at `--rate` until each holds
//!    its last 1000 messages.
//! 2. **Descriptors come back**: once the abusers are gone, the server's open descriptors
//!    must be within [`FD_MARGIN`] of the baseline (taken with only the followers connected)
//!    before [`FD_GRACE`] has passed, polled four times a second.
//! 3. **Nothing lost, nothing duplicated**, for the followers ([`Ledger`]): every message
//!    published after a follower's starting point arrives exactly once. A message skipped
//!    after a gap notice (the server said it fell out of the history) counts as *told*, not
//!    lost, and the table shows how many.
//!
//! The load generator stays bounded too: connections end and are replaced in the same slot
//! (one descriptor each), a flooder is given more bytes only while fewer than `FLOOD_WINDOW`
//! wait in its buffer, deliveries are settled every tick, and what grows with the run's length
//! is one id per published message (the publisher's lists) and one sample per
//! `duration / SAMPLES`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::abuse::{Abuse, Abuser, Behaviour};
use super::engine::{Client, Engine, CLOSED_BY_CLIENT, CONNECT_FAILED};
use super::report::{Cell, Row};
use super::{fresh_channel, io_error, Options, Progress, Target};
use crate::client::subscriber::{Masks, Subscriber};
use crate::random::RandomSource;
use crate::sync::lock;
use crate::transport::Transport;

/// How often the harness looks at every connection: settles deliveries, gives slow readers
/// their trickle and flooders their next bytes, and ends and replaces connections.
const TICK: Duration = Duration::from_millis(100);

/// RSS samples per run (for the chart and the level-off rule), but never more often than
/// [`MIN_SAMPLE_INTERVAL`]: reading `/proc/PID/fd` of a server with thousands of connections
/// costs a millisecond or so.
const SAMPLES: u32 = 120;
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// Rule 1: RSS in the last third may exceed the middle third's peak by this factor plus
/// [`LEVEL_OFF_SLACK`]. 10% is well above the allocator's run-to-run noise; 16 MiB covers the
/// followers' histories, which fill for `1000 * channels / rate` seconds (200 s by default).
pub const LEVEL_OFF_FACTOR: f64 = 1.10;
pub const LEVEL_OFF_SLACK: u64 = 16 * 1024 * 1024;

/// Rule 2: how far above the baseline the server's descriptors may end, and how long they
/// have to get there. The margin covers connections in passing (a follower reconnecting, the
/// publisher's, a `/stats` request with `--url`). The grace covers the server's own timers
/// that outlive a client: a WebSocket waits 5 s for the answer to its Close, a thread-model
/// connection lingers 2 s after its last answer, and a thread parked on a channel learns that
/// its client left only when the next message wakes it.
pub const FD_MARGIN: u64 = 10;
pub const FD_GRACE: Duration = Duration::from_secs(15);
/// How often the descriptors are counted while they come back.
const FD_POLL: Duration = Duration::from_millis(250);

/// How long the followers get, once publishing stops, to receive everything before what is
/// missing counts as lost: far more than a delivery takes, enough for a reconnection.
const DRAIN_GRACE: Duration = Duration::from_secs(15);

/// How long each kind of client lives before it leaves and a fresh one takes its place:
/// uniformly between the two. Followers churn every few seconds; flooders live long enough
/// to fill buffers; resets come and go quickly.
const FOLLOWER_LIFE: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(20));
const SLOW_LIFE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(30));
const FLOOD_LIFE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(30));
const PARTIAL_LIFE: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(15));
const SILENT_LIFE: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(20));
const RST_LIFE: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(1000));

/// A flooder is given more to send only while fewer bytes than this wait in its buffer, so
/// it sends as fast as the server reads, at most this much per tick, and holds at most this
/// much itself.
const FLOOD_WINDOW: usize = 64 * 1024;

/// What a slow reader takes per tick: 1 KiB a second.
const TRICKLE: u64 = 1024 * TICK.as_millis() as u64 / 1000;

/// The firehose, the slow readers' channel: messages per second and their size, about 40 KiB/s,
/// forty times what a slow reader takes.
const FIREHOSE_RATE: f64 = 20.0;
const FIREHOSE_TEXT_BYTES: usize = 2048;

/// The size of a follower's message text: an ordinary chat line.
const TEXT_BYTES: usize = 64;

/// Rows of the per-kind table: the followers by transport, then the kinds of abuse.
const KINDS: usize = 3 + Abuse::ALL.len();

/// The client behind one engine connection of the soak (a subscriber is boxed: it is several
/// times the size of an abuser).
enum SoakClient {
    Subscriber(Box<Subscriber>),
    Abuser(Abuser),
}

impl Client for SoakClient {
    fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String> {
        match self {
            SoakClient::Subscriber(subscriber) => subscriber.receive(bytes, out, now),
            SoakClient::Abuser(abuser) => abuser.receive(bytes, out, now),
        }
    }
}

/// Who a slot is, for as long as the run lasts (its connections come and go).
enum Role {
    /// A well-behaved subscriber of follower channel `channel`.
    Follower { transport: Transport, channel: usize, ledger: Ledger },
    /// A subscriber of the firehose that reads a trickle.
    Slow { transport: Transport },
    /// A raw misbehaving client.
    Raw(Abuse),
}

impl Role {
    /// Its row in the per-kind table.
    fn kind(&self) -> usize {
        match self {
            Role::Follower { transport, .. } => Transport::ALL.iter().position(|t| t == transport).unwrap_or(0),
            Role::Slow { .. } => 3,
            Role::Raw(abuse) => 3 + Abuse::ALL.iter().position(|a| a == abuse).unwrap_or(0),
        }
    }
}

/// A client and its current connection (`None` while it could not connect).
struct Slot {
    role: Role,
    token: Option<usize>,
    /// When it leaves (churn).
    until: Instant,
    /// A subscriber's last message id, where its next connection resumes.
    cursor: Option<String>,
}

/// What one kind of client did over the run.
#[derive(Clone, Debug, Default)]
struct KindTally {
    /// Slots: how many of this kind are connected at once.
    conns: u64,
    /// Connections opened, replacements included.
    opened: u64,
    /// Connections the server ended (or refused), not the client.
    closed_by_server: u64,
    /// Connections that could not be opened.
    failed: u64,
    /// Why the server first ended one of them.
    first_close: Option<String>,
    bytes_sent: u64,
    bytes_read: u64,
    /// Messages received (followers and slow readers).
    delivered: u64,
}

/// What one well-behaved follower was owed and what it got, by the publisher's list of ids
/// for its channel (index 0 is the marker every follower starts after).
///
/// Deliveries are matched in order against the list: the next one owed is `next`. A delivery
/// of a later message means the ones between were skipped: *told* if a gap notice came just
/// before it, else *lost*. A delivery at or before the cursor is a duplicate. A delivery whose
/// id the publisher has not reported yet (its 201 is still on the way) waits in `pending`; if a
/// later one is known while it is not, its publish never got an answer and it is *unknown*
/// (delivered, but not on the list, so not owed either).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    next: usize,
    /// Ids not yet on the publisher's list, in arrival order, each with its `after_gap`.
    pending: VecDeque<(String, bool)>,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Messages skipped after a gap notice.
    pub told: u64,
    /// Deliveries whose publish never got its id back.
    pub unknown: u64,
}

impl Ledger {
    /// A follower owed every message from index `next` of its channel's list on.
    pub fn new(next: usize) -> Ledger {
        Ledger { next, ..Ledger::default() }
    }

    /// A delivery of message `id`; `after_gap` if a gap notice came just before it.
    /// `published` maps the channel's ids to their place in the list.
    pub fn record(&mut self, id: String, after_gap: bool, published: &HashMap<String, usize>) {
        self.pending.push_back((id, after_gap));
        self.resolve(published);
    }

    /// Settles the pending deliveries whose ids are on the list now.
    pub fn resolve(&mut self, published: &HashMap<String, usize>) {
        while let Some(known) = self.pending.iter().position(|(id, _)| published.contains_key(id)) {
            // Deliveries before a known one were published before it, and the publisher
            // reports ids in order: theirs will never come.
            self.unknown += known as u64;
            self.pending.drain(..known);
            let Some((id, after_gap)) = self.pending.pop_front() else { break };
            let index = published[&id];
            if index < self.next {
                self.duplicated += 1;
                continue;
            }
            let skipped = (index - self.next) as u64;
            if after_gap {
                self.told += skipped;
            } else {
                self.lost += skipped;
            }
            self.received += 1;
            self.next = index + 1;
        }
    }

    /// Whether every message of a list of `count` has been received or accounted for.
    pub fn caught_up(&self, count: usize) -> bool {
        self.pending.is_empty() && self.next >= count
    }

    /// The end of the run, once the list is complete (`count` ids): what is still pending is
    /// unknown, and what never came is lost.
    pub fn settle(&mut self, published: &HashMap<String, usize>, count: usize) {
        self.resolve(published);
        self.unknown += self.pending.len() as u64;
        self.pending.clear();
        self.lost += count.saturating_sub(self.next) as u64;
        self.next = self.next.max(count);
    }
}

/// Rule 1 on `samples` of (seconds into the main phase, RSS bytes) over a main phase of
/// `duration` seconds: `(middle third's peak, last third's peak, the limit)`, or `None` when a
/// third has no sample. It holds when the last peak is at most the limit.
pub fn levels_off(samples: &[(f64, u64)], duration: f64) -> Option<(u64, u64, u64)> {
    let peak = |from: f64, to: f64| samples.iter().filter(|(t, _)| *t >= from && *t <= to).map(|s| s.1).max();
    let middle = peak(duration / 3.0, 2.0 * duration / 3.0)?;
    let last = peak(2.0 * duration / 3.0, f64::INFINITY)?;
    let limit = (middle as f64 * LEVEL_OFF_FACTOR) as u64 + LEVEL_OFF_SLACK;
    Some((middle, last, limit))
}

/// One sample of the server: seconds since the main phase began, RSS and descriptors, and
/// the harness's open connections.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub t: f64,
    pub rss: Option<u64>,
    pub fds: Option<u64>,
    pub conns: usize,
}

/// What a soak found.
pub struct Outcome {
    pub title: String,
    /// One row per kind of client.
    pub kinds: Vec<Row>,
    /// One row per rule.
    pub rules: Vec<Row>,
    pub samples: Vec<Sample>,
    /// The main phase's length in seconds, and the level-off limit if it was computed (for
    /// the chart).
    pub duration: f64,
    pub rss_limit: Option<u64>,
    /// The rules that did not hold, each with what was measured.
    pub failures: Vec<String>,
}

/// The harness: the engine, its slots, and what the publisher has reported.
struct Soak<'a> {
    target: &'a Target,
    masks: Masks,
    random: RandomSource,
    engine: Engine<SoakClient>,
    slots: Vec<Slot>,
    /// Follower channels, the firehose, and a channel nobody publishes to (for the abusers
    /// whose requests name one).
    channels: Vec<String>,
    firehose: String,
    quiet: String,
    /// Per follower channel: id -> its place in the publisher's list.
    published: Vec<HashMap<String, usize>>,
    /// Ids the publisher thread has got back and the harness has not taken yet.
    incoming: Arc<Mutex<Vec<(usize, String)>>>,
    tallies: [KindTally; KINDS],
    /// Connections started so far of each kind of abuse: `Partial` and `Rst` alternate forms.
    turns: [usize; KINDS],
}

impl Soak<'_> {
    fn lifetime(&mut self, role: &Role) -> Duration {
        let (low, high) = match role {
            Role::Follower { .. } => FOLLOWER_LIFE,
            Role::Slow { .. } => SLOW_LIFE,
            Role::Raw(Abuse::Ping | Abuse::Echo) => FLOOD_LIFE,
            Role::Raw(Abuse::Partial) => PARTIAL_LIFE,
            Role::Raw(Abuse::Silent | Abuse::Slow) => SILENT_LIFE,
            Role::Raw(Abuse::Rst) => RST_LIFE,
        };
        let fraction = u32::from_le_bytes(self.random.next_u32_bytes()) as f64 / u32::MAX as f64;
        low + (high - low).mul_f64(fraction)
    }

    /// A new client for `role`: a follower resumes from `cursor`.
    fn client(&mut self, role: &Role, cursor: Option<&str>) -> (SoakClient, Vec<u8>) {
        let mut first = Vec::new();
        let host = &self.target.host;
        let client = match role {
            Role::Follower { transport, channel, .. } => SoakClient::Subscriber(Box::new(Subscriber::start(
                *transport,
                host,
                &self.channels[*channel],
                cursor,
                &self.masks,
                &mut first,
            ))),
            Role::Slow { transport } => SoakClient::Subscriber(Box::new(Subscriber::start(
                *transport,
                host,
                &self.firehose,
                cursor,
                &self.masks,
                &mut first,
            ))),
            Role::Raw(abuse) => {
                let kind = role.kind();
                self.turns[kind] += 1;
                let behaviour = Behaviour::of(*abuse, self.turns[kind]).unwrap_or(Behaviour::Silent);
                // Resets ask for a channel with traffic, so that a thread-model server writes to
                // the reset connection soon and learns it is gone; the others a quiet one.
                let channel = if behaviour.never_reads() { &self.channels[0] } else { &self.quiet };
                SoakClient::Abuser(Abuser::start(behaviour, host, channel, &self.masks, &mut first))
            }
        };
        (client, first)
    }

    /// Adds a client in a new slot; a subscriber starts after `cursor`.
    fn add(&mut self, role: Role, cursor: Option<String>) {
        let (client, first) = self.client(&role, cursor.as_deref());
        let kind = role.kind();
        self.tallies[kind].conns += 1;
        let until = Instant::now() + self.lifetime(&role);
        let token = match self.engine.open(self.target.addr, client, first) {
            Ok(token) => {
                self.tallies[kind].opened += 1;
                Some(token)
            }
            Err(_) => {
                self.tallies[kind].failed += 1;
                None
            }
        };
        self.slots.push(Slot { role, token, until, cursor });
        if let Some(token) = token {
            self.prepare(self.slots.len() - 1, token);
        }
    }

    /// A new connection's reading rights, from its first byte: a reset never reads, a slow
    /// reader a trickle (else the backlog it resumes into would come at full speed).
    fn prepare(&mut self, slot: usize, token: usize) {
        let never =
            matches!(&self.engine.connections[token].client, SoakClient::Abuser(a) if a.behaviour().never_reads());
        if never {
            self.engine.allow_reading(token, Some(0));
        } else if matches!(self.slots[slot].role, Role::Slow { .. }) {
            self.engine.allow_reading(token, Some(TRICKLE));
        }
    }

    /// Takes in the ids the publisher has got back since the last call.
    fn take_ids(&mut self) {
        let ids = std::mem::take(&mut *lock(&self.incoming));
        for (channel, id) in ids {
            let index = self.published[channel].len();
            self.published[channel].insert(id, index);
        }
    }

    /// Moves every subscriber's new deliveries into its ledger or its count.
    fn settle_deliveries(&mut self, slot: usize) {
        let Slot { role, token, .. } = &mut self.slots[slot];
        let Some(token) = *token else { return };
        let kind = role.kind();
        let SoakClient::Subscriber(subscriber) = &mut self.engine.connections[token].client else { return };
        self.tallies[kind].delivered += subscriber.deliveries.len() as u64;
        match role {
            Role::Follower { channel, ledger, .. } => {
                for delivery in subscriber.deliveries.drain(..) {
                    ledger.record(delivery.id, delivery.after_gap, &self.published[*channel]);
                }
                ledger.resolve(&self.published[*channel]);
            }
            _ => subscriber.deliveries.clear(),
        }
    }

    /// Counts a connection's bytes and how it ended, before it is replaced or dropped.
    fn account(&mut self, slot: usize) {
        let Some(token) = self.slots[slot].token else { return };
        let kind = self.slots[slot].role.kind();
        let connection = &self.engine.connections[token];
        let tally = &mut self.tallies[kind];
        tally.bytes_sent += connection.bytes_written;
        tally.bytes_read += connection.bytes_read;
        let by_server = |reason: &&str| *reason != CLOSED_BY_CLIENT && !reason.starts_with(CONNECT_FAILED);
        if let Some(reason) = connection.closed.as_deref().filter(by_server) {
            tally.closed_by_server += 1;
            tally.first_close.get_or_insert_with(|| reason.to_string());
        }
    }

    /// Ends slot `slot`'s connection and starts a fresh client in its place; a follower
    /// resumes from the last message it received.
    fn replace(&mut self, slot: usize) {
        self.settle_deliveries(slot);
        self.account(slot);
        if let Some(token) = self.slots[slot].token {
            if let SoakClient::Subscriber(subscriber) = &self.engine.connections[token].client {
                if let Some(cursor) = subscriber.cursor() {
                    self.slots[slot].cursor = Some(cursor.to_string());
                }
            }
        }
        // The role leaves its slot while `client` borrows the harness; any value holds its place.
        let role = std::mem::replace(&mut self.slots[slot].role, Role::Raw(Abuse::Silent));
        let (client, first) = self.client(&role, self.slots[slot].cursor.clone().as_deref());
        let kind = role.kind();
        self.slots[slot].until = Instant::now() + self.lifetime(&role);
        self.slots[slot].role = role;
        let result = match self.slots[slot].token {
            Some(token) => self.engine.reopen(token, self.target.addr, client, first).map(|()| token),
            None => self.engine.open(self.target.addr, client, first),
        };
        match result {
            Ok(token) => {
                self.tallies[kind].opened += 1;
                self.slots[slot].token = Some(token);
                self.prepare(slot, token);
            }
            Err(_) => self.tallies[kind].failed += 1,
        }
    }

    /// One tick: settle deliveries, replace what ended (and, with `churn`, what outlived its
    /// lifetime), give slow readers their trickle and flooders their next bytes.
    fn tick(&mut self, churn: bool) {
        self.take_ids();
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            self.settle_deliveries(slot);
            let Some(token) = self.slots[slot].token else {
                self.replace(slot);
                continue;
            };
            let ended = self.engine.connections[token].closed.is_some();
            if ended || (churn && now >= self.slots[slot].until) {
                self.replace(slot);
                continue;
            }
            let connection = &mut self.engine.connections[token];
            let waiting = connection.pending();
            match &mut connection.client {
                SoakClient::Subscriber(_) if matches!(self.slots[slot].role, Role::Slow { .. }) => {
                    self.engine.allow_reading(token, Some(TRICKLE));
                }
                SoakClient::Abuser(abuser) if abuser.behaviour().floods() && abuser.answered => {
                    let mut more = Vec::new();
                    abuser.flood(FLOOD_WINDOW.saturating_sub(waiting), &mut more);
                    self.engine.allow_reading(token, Some(0));
                    self.engine.send(token, &more);
                }
                _ => {}
            }
        }
    }

    /// Ends every abuser's connection and forgets its slot.
    fn retire_abusers(&mut self) {
        for slot in 0..self.slots.len() {
            if !matches!(self.slots[slot].role, Role::Follower { .. }) {
                self.settle_deliveries(slot);
                self.account(slot);
                if let Some(token) = self.slots[slot].token {
                    self.engine.close(token);
                }
            }
        }
        self.slots.retain(|slot| matches!(slot.role, Role::Follower { .. }));
    }

    fn open_connections(&self) -> usize {
        self.engine.connections.iter().filter(|c| c.closed.is_none()).count()
    }

    /// Turns the engine until `deadline` or `done`, ticking every [`TICK`].
    fn run_until(
        &mut self,
        deadline: Instant,
        churn: bool,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), String> {
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.tick(churn);
                next_tick = now + TICK;
                if done(self) {
                    return Ok(());
                }
            }
            if now >= deadline {
                return Ok(());
            }
            let wait = next_tick.min(deadline).saturating_duration_since(now);
            self.engine.turn(wait).map_err(io_error)?;
        }
    }

    fn sample(&self, t: f64) -> Sample {
        Sample {
            t,
            rss: self.target.memory().map(|(rss, _)| rss),
            fds: self.target.open_fds(),
            conns: self.open_connections(),
        }
    }
}

/// What the publisher thread did.
#[derive(Default)]
struct PublishCounts {
    ok: AtomicU64,
    refused: AtomicU64,
}

/// Publishes round-robin over `channels` at `rate` per second, and to `firehose` (if any) at
/// [`FIREHOSE_RATE`], until `stop`; reports each follower message's id to `ids` once the
/// server has answered. One connection, one publish at a time: the list's order is the
/// server's order.
fn publish(
    target: Target,
    channels: Vec<String>,
    rate: f64,
    firehose: Option<String>,
    stop: Arc<AtomicBool>,
    ids: Arc<Mutex<Vec<(usize, String)>>>,
    counts: Arc<PublishCounts>,
) {
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let hose_interval = Duration::from_secs_f64(1.0 / FIREHOSE_RATE);
    let (mut sent, mut hose_sent) = (0u32, 0u32);
    let hose_text = "f".repeat(FIREHOSE_TEXT_BYTES);
    let mut publisher = None;
    while !stop.load(Ordering::SeqCst) {
        let due = start + interval * sent;
        let hose_due = start + hose_interval * hose_sent;
        let to_hose = firehose.is_some() && hose_due < due;
        let wait = (if to_hose { hose_due } else { due }).saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait.min(Duration::from_millis(50)));
            continue;
        }
        let Some(connection) = publisher.as_mut() else {
            publisher = target.publisher().ok();
            if publisher.is_none() {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(100));
            }
            continue;
        };
        let result = if to_hose {
            hose_sent += 1;
            connection.publish(firehose.as_deref().unwrap_or_default(), &hose_text).map(|_| ())
        } else {
            let channel = sent as usize % channels.len();
            let text = format!("soak {sent:08} {}", "x".repeat(TEXT_BYTES - 14));
            sent += 1;
            connection.publish(&channels[channel], &text).map(|id| {
                lock(&ids).push((channel, id));
            })
        };
        match result {
            Ok(()) => counts.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                publisher = None;
                counts.refused.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Runs the soak against `target`; `Err` only when it could not run at all.
pub fn run(options: &Options, target: &Target, title: String) -> Result<Outcome, String> {
    let base = fresh_channel("soak");
    let channels: Vec<String> = (0..options.channels).map(|i| format!("{base}-{i}")).collect();
    let mut soak = Soak {
        target,
        masks: Masks::new().map_err(io_error)?,
        random: RandomSource::new().map_err(io_error)?,
        engine: Engine::new().map_err(io_error)?,
        slots: Vec::new(),
        firehose: format!("{base}-firehose"),
        quiet: format!("{base}-quiet"),
        published: vec![HashMap::new(); channels.len()],
        channels,
        incoming: Arc::default(),
        tallies: Default::default(),
        turns: [0; KINDS],
    };

    // Every follower starts after a marker on its channel: however late its subscription is
    // registered, it is owed everything after the marker.
    let mut marker_publisher = target.publisher().map_err(io_error)?;
    let mut markers = Vec::new();
    for (i, channel) in soak.channels.iter().enumerate() {
        let id = marker_publisher.publish(channel, "marker").map_err(io_error)?;
        soak.published[i].insert(id.clone(), 0);
        markers.push(id);
    }
    drop(marker_publisher);
    let at_rest = soak.sample(0.0);
    eprintln!("soak: {} followers per transport on {} channels", options.subs, options.channels);
    for &transport in &options.transports {
        for i in 0..options.subs {
            let channel = i % options.channels;
            let role = Role::Follower { transport, channel, ledger: Ledger::new(1) };
            soak.add(role, Some(markers[channel].clone()));
            if i % 100 == 99 {
                soak.engine.turn(Duration::ZERO).map_err(io_error)?; // read the answers as they come
            }
        }
    }
    // A long poll answers nothing until there is news: the streams' answers say when the
    // server has them all; give the polls the same moment.
    soak.run_until(Instant::now() + Duration::from_secs(30), false, |soak| {
        soak.engine.connections.iter().all(|c| {
            c.closed.is_some()
                || match &c.client {
                    SoakClient::Subscriber(s) => s.established || s.transport() == Transport::LongPoll,
                    SoakClient::Abuser(_) => true,
                }
        })
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(PublishCounts::default());
    let publisher = {
        let target = Target::at(&target.host)?;
        let (channels, stop, ids, counts) =
            (soak.channels.clone(), stop.clone(), soak.incoming.clone(), counts.clone());
        let firehose = options.abuse.contains(&Abuse::Slow).then(|| soak.firehose.clone());
        let rate = options.rate;
        thread::spawn(move || publish(target, channels, rate, firehose, stop, ids, counts))
    };
    soak.run_until(Instant::now() + Duration::from_millis(500), false, |_| false)?;
    let baseline = soak.sample(0.0);
    eprintln!(
        "soak: baseline {} fds, {} MiB (at rest: {} fds, {} MiB); abuse: {}",
        show(baseline.fds),
        show(baseline.rss.map(mib)),
        show(at_rest.fds),
        show(at_rest.rss.map(mib)),
        abuse_names(&options.abuse)
    );

    for &abuse in &options.abuse {
        for i in 0..options.abusers {
            let role = match abuse {
                Abuse::Slow => Role::Slow { transport: [Transport::Sse, Transport::WebSocket][i % 2] },
                _ => Role::Raw(abuse),
            };
            soak.add(role, None);
        }
    }

    // The main phase.
    let start = Instant::now();
    let end = start + options.duration;
    let every = (options.duration / SAMPLES).max(MIN_SAMPLE_INTERVAL);
    let mut samples = vec![Sample { t: 0.0, ..baseline }];
    let mut next_sample = start + every;
    let mut progress = Progress::new("soak");
    soak.run_until(end, true, |soak| {
        if Instant::now() >= next_sample {
            next_sample += every;
            let sample = soak.sample(start.elapsed().as_secs_f64());
            samples.push(sample);
            let lost: u64 = soak.ledgers().map(|l| l.lost).sum();
            progress.show(|| status(&sample, lost));
        }
        false
    })?;
    let lost: u64 = soak.ledgers().map(|l| l.lost).sum();
    progress.finish(&samples.last().map(|sample| status(sample, lost)).unwrap_or_default());
    let duration = start.elapsed().as_secs_f64();

    // The abusers leave; the server's descriptors must come back.
    soak.retire_abusers();
    let fd_limit = baseline.fds.map(|fds| fds + FD_MARGIN);
    let left = Instant::now();
    let mut fds_after = soak.sample(duration).fds;
    let mut next_poll = Instant::now();
    soak.run_until(left + FD_GRACE, false, |soak| {
        if Instant::now() < next_poll {
            return false;
        }
        next_poll += FD_POLL;
        fds_after = soak.target.open_fds();
        samples.push(soak.sample(start.elapsed().as_secs_f64()));
        matches!((fds_after, fd_limit), (Some(fds), Some(limit)) if fds <= limit) || fd_limit.is_none()
    })?;
    let fds_took = left.elapsed();

    // Publishing stops; the followers catch up.
    stop.store(true, Ordering::SeqCst);
    let _ = publisher.join();
    soak.take_ids();
    soak.run_until(Instant::now() + DRAIN_GRACE, false, |soak| {
        let published = &soak.published;
        soak.slots.iter().all(|slot| match &slot.role {
            Role::Follower { channel, ledger, .. } => ledger.caught_up(published[*channel].len()),
            _ => true,
        })
    })?;
    for slot in 0..soak.slots.len() {
        soak.settle_deliveries(slot);
        soak.account(slot);
        if let Role::Follower { channel, ledger, .. } = &mut soak.slots[slot].role {
            ledger.settle(&soak.published[*channel], soak.published[*channel].len());
        }
    }

    let kinds = soak.kind_rows();
    let owed: u64 = soak.ledgers().map(|l| l.received + l.lost + l.told).sum();
    let total = soak.ledgers().fold(Ledger::default(), |sum, l| Ledger {
        lost: sum.lost + l.lost,
        duplicated: sum.duplicated + l.duplicated,
        told: sum.told + l.told,
        unknown: sum.unknown + l.unknown,
        ..sum
    });
    let rss: Vec<(f64, u64)> = samples.iter().filter(|s| s.t <= duration).filter_map(|s| Some((s.t, s.rss?))).collect();
    let level = levels_off(&rss, duration);
    let mut rules = Vec::new();
    let mut failures = Vec::new();
    let mut rule = |name: &str, measured: String, limit: String, held: Option<bool>| {
        if held == Some(false) {
            failures.push(format!("{name}: {measured} (limit {limit})"));
        }
        let held = match held {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "not measured",
        };
        rules.push(vec![
            ("rule", Cell::Text(name.into())),
            ("measured", Cell::Text(measured)),
            ("limit", Cell::Text(limit)),
            ("held", Cell::Text(held.into())),
        ]);
    };
    let first_rss = rss.first().map(|s| s.1);
    let last_rss = rss.last().map(|s| s.1);
    match level {
        Some((middle, last, limit)) => rule(
            "RSS levels off",
            format!(
                "peak {:.1} MiB in the last third, {:.1} MiB in the middle third (start {} MiB, end {} MiB)",
                mib(last),
                mib(middle),
                show(first_rss.map(mib)),
                show(last_rss.map(mib))
            ),
            format!("{:.1} MiB: middle x {LEVEL_OFF_FACTOR:.2} + {} MiB", mib(limit), LEVEL_OFF_SLACK >> 20),
            Some(last <= limit),
        ),
        None => rule("RSS levels off", "too few samples".into(), "-".into(), None),
    }
    match (baseline.fds, fds_after, fd_limit) {
        (Some(base), Some(after), Some(limit)) => rule(
            "descriptors come back",
            format!(
                "{after} {} s after the abusers left (baseline {base}, peak {})",
                format_args!("{:.1}", fds_took.as_secs_f64()),
                show(samples.iter().filter_map(|s| s.fds).max())
            ),
            format!("{limit}: baseline + {FD_MARGIN}, within {} s", FD_GRACE.as_secs()),
            Some(after <= limit),
        ),
        _ => rule("descriptors come back", "no /proc/PID/fd and no /stats".into(), "-".into(), None),
    }
    let told = if total.told > 0 { format!(", {} told by a gap notice", total.told) } else { String::new() };
    let unknown =
        if total.unknown > 0 { format!(", {} unanswered publishes delivered", total.unknown) } else { String::new() };
    rule(
        "followers lose nothing",
        format!("{} of {owed} owed{told}{unknown}", total.lost),
        "0".into(),
        Some(total.lost == 0),
    );
    rule("followers get nothing twice", total.duplicated.to_string(), "0".into(), Some(total.duplicated == 0));
    eprintln!(
        "soak: {} publishes answered, {} failed",
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed)
    );
    Ok(Outcome {
        title: format!("{title}, {:.0} s, abuse: {}", duration, abuse_names(&options.abuse)),
        kinds,
        rules,
        samples,
        duration,
        rss_limit: level.map(|(_, _, limit)| limit),
        failures,
    })
}

impl Soak<'_> {
    fn ledgers(&self) -> impl Iterator<Item = &Ledger> {
        self.slots.iter().filter_map(|slot| match &slot.role {
            Role::Follower { ledger, .. } => Some(ledger),
            _ => None,
        })
    }

    /// The per-kind table, for the kinds that ran.
    fn kind_rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (kind, tally) in self.tallies.iter().enumerate() {
            if tally.conns == 0 {
                continue;
            }
            let name = match kind {
                0..=2 => Transport::ALL[kind].name(),
                _ => Abuse::ALL[kind - 3].name(),
            };
            let ledgers = self.slots.iter().filter_map(|slot| match &slot.role {
                Role::Follower { ledger, .. } if slot.role.kind() == kind => Some(ledger),
                _ => None,
            });
            let (lost, duplicated, told) =
                ledgers.fold((0, 0, 0), |(l, d, t), ledger| (l + ledger.lost, d + ledger.duplicated, t + ledger.told));
            let follower = kind < 3;
            let count = |n: u64| if follower { Cell::Count(n) } else { Cell::Text("-".into()) };
            rows.push(vec![
                ("kind", Cell::Text(if follower { format!("{name} (follower)") } else { name.to_string() })),
                ("conns", Cell::Count(tally.conns)),
                ("opened", Cell::Count(tally.opened)),
                ("failed", Cell::Count(tally.failed)),
                ("closed_by_server", Cell::Count(tally.closed_by_server)),
                ("delivered", Cell::Count(tally.delivered)),
                ("lost", count(lost)),
                ("duplicated", count(duplicated)),
                ("told_gap", count(told)),
                ("mib_sent", Cell::Number(mib(tally.bytes_sent))),
                ("mib_read", Cell::Number(mib(tally.bytes_read))),
                ("first_server_close", Cell::Text(tally.first_close.clone().unwrap_or_else(|| "-".into()))),
            ]);
        }
        rows
    }
}

/// The soak's progress line for a sample.
fn status(sample: &Sample, lost: u64) -> String {
    format!("{} conns, RSS {} MiB, {} fds, lost {lost}", sample.conns, show(sample.rss.map(mib)), show(sample.fds))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn show<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "?".into(), |v| format!("{v:.1}").trim_end_matches(".0").to_string())
}

/// `none`, or the kinds' names joined with commas.
pub fn abuse_names(abuse: &[Abuse]) -> String {
    if abuse.is_empty() {
        return "none".into();
    }
    abuse.iter().map(|a| a.name()).collect::<Vec<_>>().join(",")
}

/// The samples as rows, for `--json`.
pub fn sample_rows(samples: &[Sample]) -> Vec<Row> {
    samples
        .iter()
        .map(|s| {
            vec![
                ("t_s", Cell::Number(s.t)),
                ("rss_mib", Cell::Number(s.rss.map_or(f64::NAN, mib))),
                ("fds", s.fds.map_or(Cell::Number(f64::NAN), Cell::Count)),
                ("client_conns", Cell::Count(s.conns as u64)),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn list(ids: &[&str]) -> HashMap<String, usize> {
        ids.iter().enumerate().map(|(i, id)| (id.to_string(), i)).collect()
    }

    #[test]
    fn rss_that_plateaus_after_warm_up_levels_off() {
        // Climbs through the first third, then wobbles around 100 MiB.
        let samples: Vec<(f64, u64)> =
            (0..=90).map(|t| (t as f64, if t < 30 { t * 3 * MIB } else { (100 + t % 3) * MIB })).collect();
        let (middle, last, limit) = levels_off(&samples, 90.0).unwrap();
        assert_eq!((middle, last), (102 * MIB, 102 * MIB));
        assert!(last <= limit);
    }

    #[test]
    fn rss_that_keeps_climbing_does_not_level_off() {
        // 1 MiB a second: the last third's peak is 30 MiB above the middle's, over 10% + 16 MiB.
        let samples: Vec<(f64, u64)> = (0..=90).map(|t| (t as f64, (50 + t) * MIB)).collect();
        let (middle, last, limit) = levels_off(&samples, 90.0).unwrap();
        assert_eq!((middle, last), (110 * MIB, 140 * MIB));
        assert!(last > limit, "{last} <= {limit}");
    }

    #[test]
    fn level_off_allows_ten_percent_and_sixteen_mib_over_the_middle_peak() {
        let at = |middle: u64, last: u64| levels_off(&[(1.0, 0), (4.0, middle), (8.0, last)], 9.0).unwrap();
        let (_, last, limit) = at(200 * MIB, 236 * MIB);
        assert!(last <= limit, "200 * 1.1 + 16 = 236");
        let (_, last, limit) = at(200 * MIB, 237 * MIB);
        assert!(last > limit);
        assert_eq!(levels_off(&[(1.0, MIB), (8.0, MIB)], 9.0), None, "no sample in the middle third");
    }

    #[test]
    fn a_follower_that_gets_everything_once_lost_and_duplicated_nothing() {
        let published = list(&["m", "a-1", "a-2", "a-3"]);
        let mut ledger = Ledger::new(1);
        for id in ["a-1", "a-2", "a-3"] {
            ledger.record(id.into(), false, &published);
        }
        ledger.settle(&published, 4);
        assert_eq!((ledger.received, ledger.lost, ledger.duplicated, ledger.told), (3, 0, 0, 0));
    }

    #[test]
    fn a_skipped_message_is_lost_unless_a_gap_notice_told_of_it() {
        let published = list(&["m", "a-1", "a-2", "a-3", "a-4", "a-5"]);
        let mut ledger = Ledger::new(1);
        ledger.record("a-1".into(), false, &published);
        ledger.record("a-3".into(), false, &published); // a-2 skipped silently
        ledger.record("a-5".into(), true, &published); // a-4 skipped, but told
        ledger.settle(&published, 6);
        assert_eq!((ledger.received, ledger.lost, ledger.told), (3, 1, 1));
    }

    #[test]
    fn a_message_again_after_a_resume_is_a_duplicate_and_one_never_received_is_lost() {
        let published = list(&["m", "a-1", "a-2", "a-3"]);
        let mut ledger = Ledger::new(1);
        ledger.record("a-1".into(), false, &published);
        ledger.record("a-2".into(), false, &published);
        ledger.record("a-2".into(), false, &published); // resumed from a-1 by mistake
        assert!(!ledger.caught_up(4));
        ledger.settle(&published, 4); // a-3 never came
        assert_eq!((ledger.received, ledger.duplicated, ledger.lost), (2, 1, 1));
    }

    #[test]
    fn a_delivery_before_its_publish_is_answered_waits_and_an_unanswered_one_is_unknown() {
        let mut published = list(&["m", "a-1"]);
        let mut ledger = Ledger::new(1);
        ledger.record("a-1".into(), false, &published);
        ledger.record("a-2".into(), false, &published); // its 201 is still on the way
        ledger.record("a-3".into(), false, &published); // its publish never got an answer
        ledger.record("a-4".into(), false, &published);
        assert_eq!(ledger.received, 1);
        published.insert("a-2".into(), 2);
        ledger.resolve(&published);
        assert_eq!(ledger.received, 2);
        published.insert("a-4".into(), 3);
        ledger.settle(&published, 4);
        assert_eq!((ledger.received, ledger.unknown, ledger.lost, ledger.duplicated), (3, 1, 0, 0));
        assert!(ledger.caught_up(4));
    }
}
