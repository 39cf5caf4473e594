//! The in-memory broker: one process, a ring log per channel.
//!
//! Each channel keeps its newest messages in a `VecDeque` (a ring: push at the back, evict at
//! the front), at most `--history` of them and at most `--history-bytes` bytes of envelopes,
//! but always the newest one. Sequence numbers increase by one per message, so the position
//! of the front is always `last_seq - len + 1` and "messages after seq N" is an index
//! computation, not a search. A reader whose cursor is older than the front has missed
//! messages: the [`Batch`] says so with a [`Gap`].
//!
//! Ids are `{epoch}-{seq}`. The epoch is four random base-36 characters drawn at start-up, so a
//! cursor handed out before a restart (when every log was lost) is recognised as foreign and
//! answered with the retained history and a gap, never with a silent skip. `{epoch}-0` is the
//! position before the first message of a channel, until channels are reclaimed (below).
//!
//! `0` is the cursor a client sends for "everything the channel still retains": it has no id
//! yet, and cannot know the epoch. It reads from the channel's start, the position before the
//! first message of the channel as it is now (after a reclaim, below, that is not `{epoch}-0`),
//! and when the oldest of those messages have been evicted the reader is told so with a gap
//! naming the oldest retained id, as any reader behind the history is: a reader that asked for
//! everything and silently got the newest thousand would take them for the whole story. What
//! a channel held before it was reclaimed is not owed to a reader that starts from `0`: that
//! channel was dropped with its history, and this is a new one.
//!
//! ## Reclaiming idle channels
//!
//! A channel with no subscriber and no publish for `--channel-ttl` is dropped with its
//! history. There is no sweeper thread: `publish` and `subscribe`, which are told the time,
//! sweep the table when a sweep is due. A sweep visits every channel, so it runs at most
//! [`super::SWEEPS_PER_TTL`] times per TTL, and never before the earliest moment a channel could
//! have expired. An idle channel therefore leaves between one TTL and one TTL and an eighth
//! after its last activity, and `--max-channels` bounds the channels in use at once.
//!
//! Dropping a channel must not let a cursor from it be misread. Sequence numbers restart with
//! each channel, so a channel made again under the same name could hand out the very ids the
//! old one did, and a reader at `k3f9-2` of the old channel would silently skip the new
//! channel's first two messages. So the table remembers the highest sequence number any
//! reclaimed channel reached (`reclaimed_through`) and a new channel numbers its messages
//! after it. A cursor from a reclaimed channel is then at most `reclaimed_through`: a reader
//! that had seen everything of the old channel is at most as far as the new channel's start,
//! and every reader behind it is told it has a gap. (One number for all names is the price
//! of remembering nothing per name: a reader who had everything of a channel that reached a
//! lower number than another is told of a gap it does not have. Never the reverse.)
//!
//! Locking: one mutex over the table of channels and one per channel. A publish holds its
//! channel's lock only to append and wake subscribers; readers of other channels never wait.
//! Lock order is always table, then channel. A channel leaves the table with both locks held
//! and is marked `reclaimed`, so a publish that found it just before, and locks it just
//! after, knows to look it up again rather than append to a channel nobody can read.
//!
//! The two pieces a channel is made of, the `Ring` of retained messages and the set of
//! `Subscribers`, are shared with the Redis broker, whose per-channel mirror is the same
//! ring fed from Redis instead of from local publishes.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::task::Poll;

use super::{
    is_idle_expired, next_sweep, Batch, Broker, BrokerError, Gap, History, Limits, Message, Pending, Position, Reader,
    Since, Usage,
};
use crate::sync::lock;
use crate::time::{Instant, Now};
use crate::wake::Wake;

/// Characters of the epoch: enough that two restarts colliding is a 1 in 1.7 million event.
const EPOCH_LEN: usize = 4;

/// The cursor that means "from the start" on every broker (`docs/PROTOCOL.md` §2.3): a client
/// that has nothing yet cannot know this broker's epoch, so `{epoch}-0` is no cursor it can send.
const FROM_THE_START: &str = "0";

/// How `0` is passed to [`MemoryBroker::read_now`]: a position no id of this broker parses to
/// (sequence numbers fit in 64 bits), read as the start of whichever channel is read. Not
/// `{epoch}-0`, which a reader may hold from before a reclaim and is then owed a gap.
const START: Position = Position::new(1 << 64);

pub struct MemoryBroker {
    epoch: String,
    limits: Limits,
    table: Mutex<Table>,
}

/// The channels, and what the broker remembers of those it reclaimed.
#[derive(Default)]
struct Table {
    /// Keyed by the name its subscribers share ([`Broker::subscribe`]).
    channels: HashMap<Arc<str>, Arc<Mutex<Channel>>>,
    /// The highest sequence number a reclaimed channel reached; new channels number their
    /// messages after it (see the module docs).
    reclaimed_through: u64,
    /// When the next sweep may run: never before a channel could have expired. `None` until
    /// the first call that is told the time.
    next_sweep: Option<Instant>,
}

struct Channel {
    /// The retained messages, oldest first; the newest has sequence `last_seq`.
    log: Ring,
    /// Sequence number of the newest message ever published (or, before the first publish,
    /// the number the channel starts after).
    last_seq: u64,
    /// The number the channel started after: where `0`, "from the start", reads from.
    start_seq: u64,
    subscribers: Subscribers,
    /// The last publish, or the last subscriber leaving: where the channel's idle time starts.
    active_at: Instant,
    /// Set when the channel leaves the table; whoever still holds it must look again.
    reclaimed: bool,
}

impl Channel {
    fn new(after_seq: u64, now: Instant) -> Channel {
        Channel {
            log: Ring::default(),
            last_seq: after_seq,
            start_seq: after_seq,
            subscribers: Subscribers::default(),
            active_at: now,
            reclaimed: false,
        }
    }

    /// Sequence number of the oldest retained message (`last_seq + 1` when the log is empty).
    fn first_seq(&self) -> u64 {
        self.last_seq + 1 - self.log.len() as u64
    }

    fn is_idle_expired(&self, now: Instant, ttl: Duration) -> bool {
        self.subscribers.is_empty() && is_idle_expired(self.active_at, now, ttl)
    }

    /// Marks the channel as gone from the table, and returns how far it numbered. Called
    /// with its lock held while it is taken out, so no publish can slip in between.
    fn reclaim(&mut self) -> u64 {
        self.reclaimed = true;
        self.last_seq
    }
}

impl Table {
    /// Sweeps if a sweep is due; the first call only learns the time (nothing can have
    /// expired before a channel exists).
    fn sweep_if_due(&mut self, now: Instant, ttl: Duration) {
        match self.next_sweep {
            Some(due) if now < due => {}
            Some(_) => self.sweep(now, ttl),
            None => self.next_sweep = Some(now + ttl),
        }
    }

    /// Drops every idle-expired channel and sets the next sweep ([`next_sweep`]).
    fn sweep(&mut self, now: Instant, ttl: Duration) {
        let mut earliest_expiry: Option<Instant> = None;
        let mut reclaimed_through = self.reclaimed_through;
        self.channels.retain(|_, channel| {
            let mut channel = lock(channel);
            if channel.is_idle_expired(now, ttl) {
                reclaimed_through = reclaimed_through.max(channel.reclaim());
                return false;
            }
            if channel.subscribers.is_empty() {
                let expiry = channel.active_at + ttl;
                earliest_expiry = Some(earliest_expiry.map_or(expiry, |earliest| earliest.min(expiry)));
            }
            true
        });
        self.reclaimed_through = reclaimed_through;
        self.next_sweep = Some(next_sweep(now, ttl, earliest_expiry));
    }
}

/// A channel's retained messages, oldest first, positions increasing: a ring bounded by a
/// number of messages and a number of envelope bytes (push at the back, evict at the front).
#[derive(Default)]
pub(crate) struct Ring {
    messages: VecDeque<Arc<Message>>,
    /// The sum of the retained envelopes' lengths.
    bytes: usize,
}

impl Ring {
    /// Appends `message`, whose position must be above every retained one, then evicts the
    /// oldest messages while more than `history` allows are retained; the newest message always
    /// stays, however large. Returns the position of the newest message evicted, if any.
    pub(crate) fn push(&mut self, message: Arc<Message>, history: History) -> Option<Position> {
        debug_assert!(self.newest().is_none_or(|newest| newest.position < message.position));
        self.bytes += message.envelope().len();
        self.messages.push_back(message);
        let mut evicted = None;
        while self.messages.len() > 1 && (self.messages.len() > history.messages || self.bytes > history.bytes) {
            evicted = self.pop_oldest().map(|m| m.position);
        }
        evicted
    }

    fn pop_oldest(&mut self) -> Option<Arc<Message>> {
        let oldest = self.messages.pop_front()?;
        self.bytes -= oldest.envelope().len();
        Some(oldest)
    }

    /// Up to `max` messages positioned after `position`, oldest first (a binary search: the
    /// positions increase).
    pub(crate) fn after(&self, position: Position, max: usize) -> Vec<Arc<Message>> {
        let start = self.messages.partition_point(|m| m.position <= position);
        self.messages.range(start..).take(max).cloned().collect()
    }

    /// Drops the messages positioned at or before `position`.
    pub(crate) fn drop_through(&mut self, position: Position) {
        while self.messages.front().is_some_and(|m| m.position <= position) {
            self.pop_oldest();
        }
    }

    pub(crate) fn contains(&self, position: Position) -> bool {
        self.messages.binary_search_by(|m| m.position.cmp(&position)).is_ok()
    }

    pub(crate) fn oldest(&self) -> Option<&Arc<Message>> {
        self.messages.front()
    }

    pub(crate) fn newest(&self) -> Option<&Arc<Message>> {
        self.messages.back()
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The bytes of envelopes retained.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The wakes registered on a channel, by subscriber key.
#[derive(Default)]
pub(crate) struct Subscribers {
    wakes: HashMap<u64, Wake>,
}

impl Subscribers {
    /// Registers `wake` for `subscriber`, replacing its previous wake (cloned only if it
    /// would wake a different connection).
    pub(crate) fn insert(&mut self, subscriber: u64, wake: &Wake) {
        match self.wakes.get_mut(&subscriber) {
            Some(existing) if existing == wake => {}
            Some(existing) => existing.clone_from(wake),
            None => {
                self.wakes.insert(subscriber, wake.clone());
            }
        }
    }

    pub(crate) fn remove(&mut self, subscriber: u64) {
        self.wakes.remove(&subscriber);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.wakes.is_empty()
    }

    /// Wakes every subscriber: "read again from your cursor".
    pub(crate) fn wake_all(&self) {
        for wake in self.wakes.values() {
            wake.wake();
        }
    }
}

impl MemoryBroker {
    /// A broker whose epoch is drawn from the OS's randomness.
    pub fn new(limits: Limits) -> MemoryBroker {
        let mut bytes = [0u8; EPOCH_LEN];
        if crate::random::fill(&mut bytes).is_err() {
            // Without /dev/urandom the clock still differs between restarts. (The one clock
            // this broker reads, once, at start-up; everything else is told the time.)
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            bytes = nanos.to_le_bytes();
        }
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let epoch = bytes.iter().map(|b| DIGITS[*b as usize % 36] as char).collect();
        MemoryBroker::with_epoch(epoch, limits)
    }

    /// A broker with a chosen epoch (tests use this to simulate a restart).
    pub fn with_epoch(epoch: String, limits: Limits) -> MemoryBroker {
        MemoryBroker { epoch, limits: limits.sanitized(), table: Mutex::default() }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{}", self.epoch, seq)
    }

    /// The channel a publish at `now` goes to, made if needed (and if `max_channels` allows,
    /// once idle channels are swept).
    fn channel_to_publish(&self, name: &str, now: Instant) -> Result<Arc<Mutex<Channel>>, BrokerError> {
        let mut table = lock(&self.table);
        table.sweep_if_due(now, self.limits.channel_ttl);
        if let Some(channel) = table.channels.get(name) {
            return Ok(channel.clone());
        }
        if table.channels.len() >= self.limits.max_channels {
            return Err(BrokerError::TooManyChannels);
        }
        let channel = Arc::new(Mutex::new(Channel::new(table.reclaimed_through, now)));
        table.channels.insert(name.into(), channel.clone());
        Ok(channel)
    }

    /// Appends `text` to `channel` and wakes its subscribers; `None` if the channel has left
    /// the table since it was looked up (the message would be appended where nobody reads).
    fn append(&self, channel: &Mutex<Channel>, text: &str, now: Now) -> Option<Arc<Message>> {
        let mut channel = lock(channel);
        if channel.reclaimed {
            return None;
        }
        channel.last_seq += 1;
        let seq = channel.last_seq;
        let message = Arc::new(Message::new(&self.id(seq), Position::new(seq as u128), text, now.unix_ms));
        channel.log.push(message.clone(), self.limits.history);
        channel.active_at = now.instant;
        channel.subscribers.wake_all();
        Some(message)
    }
}

impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn usage(&self) -> Usage {
        let table = lock(&self.table);
        let retained_bytes = table.channels.values().map(|channel| lock(channel).log.bytes()).sum();
        Usage { channels: table.channels.len(), retained_bytes }
    }

    fn publish(&self, channel: &str, text: &str, now: Now) -> Pending<Arc<Message>> {
        // Answered at once: the memory path costs no allocation and no lock beyond the channel's.
        Pending::ready(self.publish_now(channel, text, now))
    }

    fn parse_cursor(&self, cursor: &str) -> Result<Since, BrokerError> {
        self.parse_cursor_text(cursor)
    }

    fn tail(&self, channel: &str, _reader: Reader<'_>) -> Poll<Position> {
        Poll::Ready(self.tail_now(channel))
    }

    fn cursor(&self, position: Position) -> String {
        self.id(position.get() as u64)
    }

    fn read(&self, channel: &str, since: &Since, max: usize, _reader: Reader<'_>) -> Batch {
        self.read_now(channel, since, max)
    }

    fn subscribe(&self, channel_name: &str, subscriber: u64, wake: &Wake, now: Instant) -> Arc<str> {
        self.subscribe_now(channel_name, subscriber, wake, now)
    }

    fn unsubscribe(&self, channel_name: &str, subscriber: u64, now: Instant) {
        self.unsubscribe_now(channel_name, subscriber, now)
    }
}

/// The broker's answers, all synchronous: nothing here waits for anything but a lock. The
/// [`Broker`] methods above hand them out ([`Pending::ready`], `Poll::Ready`).
impl MemoryBroker {
    /// [`Broker::publish`], answered now.
    pub fn publish_now(&self, channel_name: &str, text: &str, now: Now) -> Result<Arc<Message>, BrokerError> {
        loop {
            let channel = self.channel_to_publish(channel_name, now.instant)?;
            if let Some(message) = self.append(&channel, text, now) {
                return Ok(message);
            }
            // Swept between the lookup and the lock: the next lookup makes the channel again.
        }
    }

    fn parse_cursor_text(&self, cursor: &str) -> Result<Since, BrokerError> {
        if cursor == FROM_THE_START {
            return Ok(Since::After(START));
        }
        let (epoch, seq) = cursor.split_once('-').ok_or(BrokerError::BadCursor)?;
        let well_formed_epoch =
            epoch.len() == EPOCH_LEN && epoch.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        // `u64::from_str` accepts a leading '+'; an id never has one.
        if !well_formed_epoch || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BrokerError::BadCursor);
        }
        let seq: u64 = seq.parse().map_err(|_| BrokerError::BadCursor)?;
        if epoch == self.epoch {
            Ok(Since::After(Position::new(seq as u128)))
        } else {
            Ok(Since::Unknown(cursor.to_string()))
        }
    }

    /// [`Broker::tail`], answered now.
    pub fn tail_now(&self, channel: &str) -> Position {
        let table = lock(&self.table);
        // A channel not held now starts, when it is made, after `reclaimed_through`.
        let last_seq = table.channels.get(channel).map_or(table.reclaimed_through, |c| lock(c).last_seq);
        Position::new(last_seq as u128)
    }

    /// [`Broker::read`], answered now (never in flight).
    pub fn read_now(&self, channel_name: &str, since: &Since, max: usize) -> Batch {
        let (channel, reclaimed_through) = {
            let table = lock(&self.table);
            (table.channels.get(channel_name).cloned(), table.reclaimed_through)
        };
        let Some(channel) = channel else {
            // No channel: nothing was ever published here, or it was reclaimed. A reader at
            // `reclaimed_through` had everything any reclaimed channel held (and it is where a
            // channel that was never made starts); one behind it may have missed messages, and
            // a cursor past it, or a foreign one, names no message this broker can place.
            let gap = match since {
                // From the start of a channel that has nothing: nothing is owed yet.
                Since::After(START) => None,
                Since::After(p) if p.get() == reclaimed_through as u128 => None,
                Since::After(p) => Some(Gap { since: self.id(p.get() as u64), oldest: None }),
                Since::Unknown(cursor) => Some(Gap { since: cursor.clone(), oldest: None }),
            };
            return Batch { gap, ..Batch::empty(Position::new(reclaimed_through as u128)) };
        };
        let channel = lock(&channel);
        let first_seq = channel.first_seq();
        // A position from the future (same epoch, beyond the newest id) cannot have come from
        // this channel: treat it like a foreign cursor rather than skip what comes next.
        let (after_seq, cursor_text) = match since {
            Since::After(START) => (channel.start_seq, None),
            Since::After(p) if p.get() <= channel.last_seq as u128 => (p.get() as u64, None),
            Since::After(p) => (0, Some(self.id(p.get() as u64))),
            Since::Unknown(cursor) => (0, Some(cursor.clone())),
        };
        let oldest = channel.log.oldest().map(|m| m.id.to_string());
        let gap = match cursor_text {
            Some(cursor) => Some(Gap { since: cursor, oldest }),
            // Messages after_seq+1 .. first_seq-1 were evicted, or numbered by a reclaimed
            // channel before this one: the reader missed them.
            None if after_seq + 1 < first_seq => Some(Gap { since: self.id(after_seq), oldest }),
            None => None,
        };
        let messages = channel.log.after(Position::new(after_seq as u128), max);
        let position = match messages.last() {
            Some(last) => last.position,
            None => Position::new(channel.last_seq as u128),
        };
        Batch { messages, gap, position, in_flight: false }
    }

    fn subscribe_now(&self, channel_name: &str, subscriber: u64, wake: &Wake, now: Instant) -> Arc<str> {
        let mut table = lock(&self.table);
        table.sweep_if_due(now, self.limits.channel_ttl);
        // Made on demand so that a publish finds the wake (subscribers are bounded by
        // connections, so this ignores `max_channels`); removed again on unsubscribe if
        // nothing was published (see below), so subscriptions cannot leak channels.
        let (name, channel) = match table.channels.get_key_value(channel_name) {
            Some((name, channel)) => (name.clone(), channel.clone()),
            None => {
                let channel = Arc::new(Mutex::new(Channel::new(table.reclaimed_through, now)));
                let name: Arc<str> = channel_name.into();
                table.channels.insert(name.clone(), channel.clone());
                (name, channel)
            }
        };
        lock(&channel).subscribers.insert(subscriber, wake);
        name
    }

    fn unsubscribe_now(&self, channel_name: &str, subscriber: u64, now: Instant) {
        let mut table = lock(&self.table);
        let Some(channel) = table.channels.get(channel_name).cloned() else { return };
        let mut guard = lock(&channel);
        guard.subscribers.remove(subscriber);
        if guard.subscribers.is_empty() {
            guard.active_at = now;
            if guard.log.is_empty() {
                // Nothing was published: nothing to keep for anyone.
                table.reclaimed_through = table.reclaimed_through.max(guard.reclaim());
                table.channels.remove(channel_name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{text, DEFAULT_CHANNEL_TTL, DEFAULT_HISTORY_BYTES, DEFAULT_MAX_CHANNELS};
    use crate::wake::WakeQueue;
    use std::sync::OnceLock;

    /// Limits with a count-only history of `history` messages.
    fn limits(history: usize) -> Limits {
        Limits { history: History { messages: history, bytes: usize::MAX }, ..Limits::default() }
    }

    fn broker(history: usize) -> MemoryBroker {
        MemoryBroker::with_epoch("k3f9".into(), limits(history))
    }

    /// Made-up time: `secs` after an origin fixed for the whole test run.
    fn at(secs: f64) -> Now {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        Now { instant: origin + Duration::from_secs_f64(secs), unix_ms: 1_700_000_000_000 + (secs * 1000.0) as u64 }
    }

    /// A publish at the start of made-up time.
    fn publish(broker: &MemoryBroker, channel: &str, text: &str) -> Arc<Message> {
        broker.publish_now(channel, text, at(0.0)).unwrap()
    }

    fn texts(batch: &Batch) -> Vec<String> {
        batch.messages.iter().map(|m| text(m)).collect()
    }

    fn after(broker: &MemoryBroker, cursor: &str) -> Since {
        broker.parse_cursor(cursor).unwrap()
    }

    #[test]
    fn ids_carry_the_epoch_and_increase_by_one_per_channel() {
        let b = broker(10);
        assert_eq!(&*publish(&b, "a", "1").id, "k3f9-1");
        assert_eq!(&*publish(&b, "a", "2").id, "k3f9-2");
        assert_eq!(&*publish(&b, "other", "x").id, "k3f9-1");
    }

    #[test]
    fn read_returns_the_messages_after_the_cursor_in_order() {
        let b = broker(10);
        for text in ["a", "b", "c"] {
            publish(&b, "ch", text);
        }
        let batch = b.read_now("ch", &after(&b, "k3f9-1"), 100);
        assert_eq!(texts(&batch), ["b", "c"]);
        assert_eq!(batch.gap, None);
        assert_eq!(b.cursor(batch.position), "k3f9-3");
    }

    #[test]
    fn read_honours_the_maximum_and_resumes_from_its_position() {
        let b = broker(10);
        for text in ["a", "b", "c"] {
            publish(&b, "ch", text);
        }
        let first = b.read_now("ch", &after(&b, "k3f9-0"), 2);
        assert_eq!(texts(&first), ["a", "b"]);
        let rest = b.read_now("ch", &Since::After(first.position), 2);
        assert_eq!(texts(&rest), ["c"]);
    }

    #[test]
    fn the_ring_keeps_only_the_last_history_messages() {
        let b = broker(3);
        for i in 1..=5 {
            publish(&b, "ch", &i.to_string());
        }
        let batch = b.read_now("ch", &after(&b, "k3f9-2"), 100);
        assert_eq!(texts(&batch), ["3", "4", "5"]);
        assert_eq!(batch.gap, None, "message 3 is the next one owed and is retained");
    }

    #[test]
    fn a_cursor_older_than_the_history_gets_a_gap_and_what_is_retained() {
        let b = broker(3);
        for i in 1..=5 {
            publish(&b, "ch", &i.to_string());
        }
        let batch = b.read_now("ch", &after(&b, "k3f9-1"), 100);
        assert_eq!(texts(&batch), ["3", "4", "5"]);
        assert_eq!(batch.gap, Some(Gap { since: "k3f9-1".into(), oldest: Some("k3f9-3".into()) }));
    }

    #[test]
    fn a_cursor_from_another_epoch_gets_a_gap_and_the_whole_history() {
        let b = broker(10);
        publish(&b, "ch", "a");
        let since = after(&b, "zzzz-40");
        assert_eq!(since, Since::Unknown("zzzz-40".into()));
        let batch = b.read_now("ch", &since, 100);
        assert_eq!(texts(&batch), ["a"]);
        assert_eq!(batch.gap.map(|g| g.since), Some("zzzz-40".to_string()));
    }

    #[test]
    fn a_cursor_from_the_future_is_treated_as_foreign_not_skipped() {
        let b = broker(10);
        publish(&b, "ch", "a");
        let batch = b.read_now("ch", &after(&b, "k3f9-99"), 100);
        assert_eq!(texts(&batch), ["a"]);
        assert!(batch.gap.is_some());
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let b = broker(10);
        for bad in ["", "k3f9", "k3f9-", "k3f9-x", "k3f9-+1", "K3F9-1", "k3f-1", "k3f9-99999999999999999999999"] {
            assert_eq!(b.parse_cursor(bad), Err(BrokerError::BadCursor), "{bad:?}");
        }
    }

    #[test]
    fn zero_is_the_start_everything_retained_oldest_first() {
        let b = broker(10);
        for text in ["a", "b", "c"] {
            publish(&b, "ch", text);
        }
        let batch = b.read_now("ch", &after(&b, "0"), 100);
        assert_eq!(texts(&batch), ["a", "b", "c"]);
        assert_eq!(batch.gap, None, "nothing the channel had is gone");
        assert_eq!(b.cursor(batch.position), "k3f9-3");
    }

    #[test]
    fn zero_on_a_trimmed_channel_is_a_gap_naming_the_oldest_retained_id() {
        let b = broker(3);
        for i in 1..=5 {
            publish(&b, "ch", &i.to_string());
        }
        let batch = b.read_now("ch", &after(&b, "0"), 100);
        assert_eq!(texts(&batch), ["3", "4", "5"]);
        assert_eq!(batch.gap, Some(Gap { since: "k3f9-0".into(), oldest: Some("k3f9-3".into()) }));
    }

    #[test]
    fn zero_on_a_channel_with_nothing_yet_waits_for_its_first_message() {
        let b = broker(10);
        let empty = b.read_now("ch", &after(&b, "0"), 100);
        assert_eq!((empty.messages.len(), empty.gap), (0, None));
        publish(&b, "ch", "first");
        assert_eq!(texts(&b.read_now("ch", &Since::After(empty.position), 100)), ["first"]);
    }

    #[test]
    fn zero_on_a_channel_made_after_a_reclaim_starts_at_that_channel_without_a_gap() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits::default());
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        b.publish_now("ch", "of the old channel", at(0.0)).unwrap();
        b.publish_now("elsewhere", "sweep", at(ttl)).unwrap();
        assert_eq!(b.read_now("ch", &after(&b, "0"), 10).gap, None, "no channel: nothing owed yet");
        b.publish_now("ch", "first of the new", at(ttl)).unwrap();
        let batch = b.read_now("ch", &after(&b, "0"), 10);
        assert_eq!((texts(&batch), batch.gap), (vec!["first of the new".to_string()], None));
        // Unlike a cursor a reader kept from before the reclaim, which is owed a gap.
        assert!(b.read_now("ch", &after(&b, "k3f9-0"), 10).gap.is_some());
    }

    #[test]
    fn zero_on_a_trimmed_channel_made_after_a_reclaim_is_a_gap_from_its_own_start() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits { history: limits(2).history, ..Limits::default() });
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        b.publish_now("old", "x", at(0.0)).unwrap();
        b.publish_now("elsewhere", "sweep", at(ttl)).unwrap();
        for text in ["1", "2", "3"] {
            b.publish_now("new", text, at(ttl)).unwrap();
        }
        let batch = b.read_now("new", &after(&b, "0"), 10);
        assert_eq!(texts(&batch), ["2", "3"]);
        assert_eq!(batch.gap, Some(Gap { since: "k3f9-1".into(), oldest: Some("k3f9-3".into()) }));
    }

    #[test]
    fn zero_is_the_only_cursor_without_an_epoch() {
        let b = broker(10);
        for bad in ["00", "-0", "0-0", "+0", " 0"] {
            assert_eq!(b.parse_cursor(bad), Err(BrokerError::BadCursor), "{bad:?}");
        }
    }

    #[test]
    fn tail_is_the_newest_position_so_reading_from_it_waits_for_new_messages() {
        let b = broker(10);
        assert_eq!(b.tail_now("ch"), Position::new(0));
        publish(&b, "ch", "old");
        let tail = b.tail_now("ch");
        assert!(b.read_now("ch", &Since::After(tail), 10).messages.is_empty());
        publish(&b, "ch", "new");
        assert_eq!(texts(&b.read_now("ch", &Since::After(tail), 10)), ["new"]);
    }

    #[test]
    fn publish_wakes_every_subscriber_until_it_unsubscribes() {
        let b = broker(10);
        let queue = WakeQueue::silent();
        b.subscribe("ch", 1, &queue.wake_for(1), at(0.0).instant);
        b.subscribe("ch", 2, &queue.wake_for(2), at(0.0).instant);
        publish(&b, "ch", "x");
        let mut woken = queue.woken();
        woken.sort();
        assert_eq!(woken, [1, 2]);
        b.unsubscribe("ch", 1, at(0.0).instant);
        publish(&b, "ch", "y");
        assert_eq!(queue.woken(), [2]);
    }

    #[test]
    fn the_subscribers_of_a_channel_share_one_copy_of_its_name() {
        let b = broker(10);
        let wake = WakeQueue::silent().wake_for(0);
        let first = b.subscribe("room", 1, &wake, at(0.0).instant);
        let second = b.subscribe("room", 2, &wake, at(0.0).instant);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(&*first, "room");
    }

    #[test]
    fn subscriptions_alone_do_not_leave_channels_behind() {
        let b = broker(10);
        let wake = WakeQueue::silent().wake_for(0);
        b.subscribe("ephemeral", 1, &wake, at(0.0).instant);
        b.unsubscribe("ephemeral", 1, at(0.0).instant);
        assert_eq!(b.usage().channels, 0);
    }

    #[test]
    fn publishing_past_max_channels_is_refused() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits { max_channels: 2, ..limits(10) });
        publish(&b, "a", "x");
        publish(&b, "b", "x");
        assert_eq!(b.publish_now("c", "x", at(0.0)).unwrap_err(), BrokerError::TooManyChannels);
        publish(&b, "a", "still fine");
    }

    #[test]
    fn the_random_epoch_is_four_base36_characters() {
        let b = MemoryBroker::new(Limits::default());
        assert_eq!(b.epoch().len(), 4);
        assert!(b.parse_cursor(&format!("{}-0", b.epoch())).is_ok());
    }

    #[test]
    fn the_ring_keeps_at_most_history_bytes_of_envelopes_evicting_the_oldest() {
        // Each envelope here is {"id":"k3f9-N","text":"xxxxxxxxxx","time":T}: 60 bytes.
        let envelope_len = publish(&broker(1), "probe", &"x".repeat(10)).envelope().len();
        let b = MemoryBroker::with_epoch(
            "k3f9".into(),
            Limits { history: History { messages: 100, bytes: 3 * envelope_len }, ..Limits::default() },
        );
        for i in 0..5 {
            publish(&b, "ch", &format!("{i}{}", "x".repeat(9)));
        }
        assert_eq!(b.usage().retained_bytes, 3 * envelope_len);
        let batch = b.read_now("ch", &after(&b, "k3f9-2"), 100);
        assert_eq!(texts(&batch).iter().map(|t| &t[..1]).collect::<Vec<_>>(), ["2", "3", "4"]);
        assert_eq!(batch.gap, None, "message 3 is the next one owed and is retained");
    }

    #[test]
    fn a_message_larger_than_history_bytes_is_kept_alone_so_it_can_be_delivered() {
        let b = MemoryBroker::with_epoch(
            "k3f9".into(),
            Limits { history: History { messages: 100, bytes: 100 }, ..Limits::default() },
        );
        publish(&b, "ch", "small");
        let big = "x".repeat(1000);
        publish(&b, "ch", &big);
        assert_eq!(texts(&b.read_now("ch", &after(&b, "k3f9-1"), 100)), [big]);
        publish(&b, "ch", "after");
        assert_eq!(texts(&b.read_now("ch", &after(&b, "k3f9-0"), 100)), ["after"], "the big one left for the next");
    }

    #[test]
    fn a_cursor_that_fell_off_the_byte_bound_gets_a_gap_and_what_is_retained() {
        let b = MemoryBroker::with_epoch(
            "k3f9".into(),
            Limits { history: History { messages: 1000, bytes: 200 }, ..Limits::default() },
        );
        for i in 1..=5 {
            publish(&b, "ch", &format!("{i}{}", "x".repeat(50)));
        }
        let batch = b.read_now("ch", &after(&b, "k3f9-1"), 100);
        assert_eq!(batch.messages.first().map(|m| &*m.id), Some("k3f9-4"), "two envelopes of 97 bytes fit in 200");
        assert_eq!(batch.gap, Some(Gap { since: "k3f9-1".into(), oldest: Some("k3f9-4".into()) }));
    }

    #[test]
    fn a_thousand_64_kib_messages_retain_at_most_the_default_history_bytes() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits::default());
        let text = "x".repeat(64 * 1024);
        for _ in 0..1000 {
            publish(&b, "big", &text);
        }
        let retained = b.usage().retained_bytes;
        let batch = b.read_now("big", &Since::After(Position::new(0)), 1000);
        println!("1000 messages of 64 KiB: {} retained, {retained} envelope bytes", batch.messages.len());
        assert!(retained <= DEFAULT_HISTORY_BYTES, "{retained}");
        assert_eq!(retained, batch.messages.iter().map(|m| m.envelope().len()).sum::<usize>());
        assert_eq!(batch.messages.len(), DEFAULT_HISTORY_BYTES / batch.messages[0].envelope().len());
        assert!(batch.gap.is_some());
    }

    #[test]
    fn idle_channels_are_reclaimed_after_the_ttl_so_max_channels_bounds_channels_in_use() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits::default());
        for i in 0..DEFAULT_MAX_CHANNELS {
            b.publish_now(&format!("once-{i}"), "x", at(0.0)).unwrap();
        }
        assert_eq!(b.publish_now("new", "x", at(1.0)).unwrap_err(), BrokerError::TooManyChannels);
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        assert_eq!(
            b.publish_now("new", "x", at(ttl - 1.0)).unwrap_err(),
            BrokerError::TooManyChannels,
            "not idle long enough"
        );
        b.publish_now("new", "x", at(ttl)).unwrap();
        assert_eq!(b.usage().channels, 1);
        assert_eq!(
            b.usage().retained_bytes,
            b.read_now("new", &Since::After(Position::new(0)), 10).messages[0].envelope().len()
        );
    }

    #[test]
    fn a_channel_with_a_live_subscriber_is_never_reclaimed() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits { max_channels: 2, ..Limits::default() });
        let wake = WakeQueue::silent().wake_for(0);
        b.subscribe("watched", 1, &wake, at(0.0).instant);
        b.publish_now("watched", "kept", at(0.0)).unwrap();
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        for day in 1..=10 {
            b.publish_now(&format!("passing-{day}"), "x", at(day as f64 * 10.0 * ttl)).unwrap();
        }
        assert_eq!(texts(&b.read_now("watched", &after(&b, "k3f9-0"), 10)), ["kept"]);
        assert_eq!(b.usage().channels, 2, "the watched channel and the latest passing one");
    }

    #[test]
    fn the_idle_time_starts_when_the_last_subscriber_leaves() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits::default());
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        let wake = WakeQueue::silent().wake_for(0);
        b.subscribe("room", 1, &wake, at(0.0).instant);
        b.publish_now("room", "hello", at(0.0)).unwrap();
        // Quiet for ten TTLs while the reader stays; it leaves, to reconnect a moment later.
        b.unsubscribe("room", 1, at(10.0 * ttl).instant);
        b.publish_now("other", "x", at(10.0 * ttl + 2.0)).unwrap();
        assert_eq!(texts(&b.read_now("room", &after(&b, "k3f9-0"), 10)), ["hello"], "still there for the reconnect");
        b.publish_now("other", "x", at(11.0 * ttl + 2.0)).unwrap();
        assert_eq!(b.usage().channels, 1, "gone one TTL after the reader left");
    }

    #[test]
    fn a_cursor_from_a_reclaimed_channel_gets_a_gap_not_a_silent_skip() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits::default());
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        for text in ["1", "2", "3"] {
            b.publish_now("ch", text, at(0.0)).unwrap();
        }
        b.publish_now("elsewhere", "sweep", at(ttl)).unwrap();
        // The reader saw message 1 of the old channel. Before and after the channel is made
        // again, it is told it missed something, and never handed "message 2" of the new one.
        let before = b.read_now("ch", &after(&b, "k3f9-1"), 10);
        assert_eq!((before.messages.len(), before.gap.as_ref().map(|g| &*g.since)), (0, Some("k3f9-1")));
        let new = b.publish_now("ch", "first of the new channel", at(ttl)).unwrap();
        assert_eq!(&*new.id, "k3f9-4", "numbered after every reclaimed channel");
        let batch = b.read_now("ch", &after(&b, "k3f9-1"), 10);
        assert_eq!(texts(&batch), ["first of the new channel"]);
        assert_eq!(batch.gap, Some(Gap { since: "k3f9-1".into(), oldest: Some("k3f9-4".into()) }));
    }

    #[test]
    fn a_reader_that_had_everything_of_a_reclaimed_channel_misses_nothing() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits::default());
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        for text in ["1", "2", "3"] {
            b.publish_now("ch", text, at(0.0)).unwrap();
        }
        b.publish_now("elsewhere", "sweep", at(ttl)).unwrap();
        let waiting = b.read_now("ch", &after(&b, "k3f9-3"), 10);
        assert_eq!((waiting.messages.len(), waiting.gap), (0, None));
        assert_eq!(b.cursor(b.tail_now("ch")), "k3f9-3", "a new reader starts where the next channel will");
        b.publish_now("ch", "next", at(ttl)).unwrap();
        let batch = b.read_now("ch", &Since::After(waiting.position), 10);
        assert_eq!((texts(&batch), batch.gap), (vec!["next".to_string()], None));
    }

    #[test]
    fn a_publish_that_loses_its_channel_to_a_sweep_does_not_append_where_nobody_reads() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits::default());
        let ttl = DEFAULT_CHANNEL_TTL.as_secs_f64();
        let found = b.channel_to_publish("ch", at(0.0).instant).unwrap();
        // Another publish sweeps "ch" (idle, never published) before this one locks it.
        b.publish_now("elsewhere", "x", at(ttl)).unwrap();
        assert!(b.append(&found, "lost?", at(ttl)).is_none());
        b.publish_now("ch", "found again", at(ttl)).unwrap();
        assert_eq!(texts(&b.read_now("ch", &after(&b, "k3f9-0"), 10)), ["found again"]);
    }
}
