//! The in-memory broker: one process, a ring log per channel.
//!
//! Each channel keeps the last `history` messages in a `VecDeque` (a ring: push at the back,
//! evict at the front). Sequence numbers increase by one per message, so the position of the
//! front is always `last_seq - len + 1` and "messages after seq N" is an index computation,
//! not a search. A reader whose cursor is older than the front has missed messages: the
//! [`Batch`] says so with a [`Gap`].
//!
//! Ids are `{epoch}-{seq}`. The epoch is four random base-36 characters drawn at start-up, so a
//! cursor handed out before a restart (when every log was lost) is recognised as foreign and
//! answered with the retained history and a gap, never with a silent skip. `{epoch}-0` is the
//! position before the first message of a channel.
//!
//! Locking: one mutex over the map of channels and one per channel. A publish holds its
//! channel's lock only to append and wake subscribers; readers of other channels never wait.
//! Lock order is always map, then channel.
//!
//! The two pieces a channel is made of, the `Ring` of retained messages and the set of
//! `Subscribers`, are shared with the Redis broker, whose per-channel mirror is the same
//! ring fed from Redis instead of from local publishes.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Batch, Broker, BrokerError, Gap, Message, Position, Since};

/// Default number of messages a channel retains (`--history`).
pub const DEFAULT_HISTORY: usize = 1000;

/// Default limit on channels that hold messages (`--max-channels`). Each channel's log is
/// bounded, so this bounds the broker's memory: a client publishing to random names cannot
/// grow it without limit.
pub const DEFAULT_MAX_CHANNELS: usize = 10_000;

/// Characters of the epoch: enough that two restarts colliding is a 1 in 1.7 million event.
const EPOCH_LEN: usize = 4;

pub struct MemoryBroker {
    epoch: String,
    history: usize,
    max_channels: usize,
    channels: Mutex<HashMap<Box<str>, Arc<Mutex<Channel>>>>,
}

#[derive(Default)]
struct Channel {
    /// The retained messages, oldest first; the newest has sequence `last_seq`.
    log: Ring,
    /// Sequence number of the newest message ever published (0: none yet).
    last_seq: u64,
    subscribers: Subscribers,
}

impl Channel {
    /// Sequence number of the oldest retained message (`last_seq + 1` when the log is empty).
    fn first_seq(&self) -> u64 {
        self.last_seq + 1 - self.log.len() as u64
    }
}

/// A channel's retained messages, oldest first, positions increasing: a ring with a fixed
/// capacity (push at the back, evict at the front).
#[derive(Default)]
pub(crate) struct Ring {
    messages: VecDeque<Arc<Message>>,
}

impl Ring {
    /// Appends `message`, whose position must be above every retained one. With `capacity`
    /// messages already retained the oldest leaves first, and is returned.
    pub(crate) fn push(&mut self, message: Arc<Message>, capacity: usize) -> Option<Arc<Message>> {
        debug_assert!(self.newest().is_none_or(|newest| newest.position < message.position));
        let evicted = if self.messages.len() >= capacity { self.messages.pop_front() } else { None };
        self.messages.push_back(message);
        evicted
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
            self.messages.pop_front();
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
}

/// The wakers registered on a channel, by subscriber key.
#[derive(Default)]
pub(crate) struct Subscribers {
    wakers: HashMap<u64, Waker>,
}

impl Subscribers {
    /// Registers `waker` for `subscriber`, replacing its previous waker (cloned only if it
    /// would wake a different task).
    pub(crate) fn insert(&mut self, subscriber: u64, waker: &Waker) {
        match self.wakers.get_mut(&subscriber) {
            Some(existing) if existing.will_wake(waker) => {}
            Some(existing) => existing.clone_from(waker),
            None => {
                self.wakers.insert(subscriber, waker.clone());
            }
        }
    }

    pub(crate) fn remove(&mut self, subscriber: u64) {
        self.wakers.remove(&subscriber);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.wakers.is_empty()
    }

    /// Wakes every subscriber: "read again from your cursor".
    pub(crate) fn wake_all(&self) {
        for waker in self.wakers.values() {
            waker.wake_by_ref();
        }
    }
}

/// Locks a mutex, recovering the data if a thread panicked while holding it: every update
/// below leaves the data consistent at each step, so poisoning carries no meaning here.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryBroker {
    /// A broker whose epoch is drawn from the OS's randomness.
    pub fn new(history: usize, max_channels: usize) -> MemoryBroker {
        let mut bytes = [0u8; EPOCH_LEN];
        if crate::random::fill(&mut bytes).is_err() {
            // Without /dev/urandom the clock still differs between restarts.
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            bytes = nanos.to_le_bytes();
        }
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let epoch = bytes.iter().map(|b| DIGITS[*b as usize % 36] as char).collect();
        MemoryBroker::with_epoch(epoch, history, max_channels)
    }

    /// A broker with a chosen epoch (tests use this to simulate a restart).
    pub fn with_epoch(epoch: String, history: usize, max_channels: usize) -> MemoryBroker {
        MemoryBroker { epoch, history: history.max(1), max_channels, channels: Mutex::default() }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn channel(&self, name: &str) -> Option<Arc<Mutex<Channel>>> {
        lock(&self.channels).get(name).cloned()
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{}", self.epoch, seq)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn publish(&self, channel_name: &str, text: &str) -> Result<Arc<Message>, BrokerError> {
        let channel = {
            let mut channels = lock(&self.channels);
            match channels.get(channel_name) {
                Some(channel) => channel.clone(),
                None => {
                    if channels.len() >= self.max_channels {
                        return Err(BrokerError::TooManyChannels);
                    }
                    let channel = Arc::new(Mutex::new(Channel::default()));
                    channels.insert(channel_name.into(), channel.clone());
                    channel
                }
            }
        };
        let mut channel = lock(&channel);
        channel.last_seq += 1;
        let seq = channel.last_seq;
        let message = Arc::new(Message::new(&self.id(seq), Position(seq as u128), text, now_ms()));
        channel.log.push(message.clone(), self.history);
        channel.subscribers.wake_all();
        Ok(message)
    }

    fn parse_cursor(&self, cursor: &str) -> Result<Since, BrokerError> {
        let (epoch, seq) = cursor.split_once('-').ok_or(BrokerError::BadCursor)?;
        let well_formed_epoch =
            epoch.len() == EPOCH_LEN && epoch.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        // `u64::from_str` accepts a leading '+'; an id never has one.
        if !well_formed_epoch || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BrokerError::BadCursor);
        }
        let seq: u64 = seq.parse().map_err(|_| BrokerError::BadCursor)?;
        if epoch == self.epoch {
            Ok(Since::After(Position(seq as u128)))
        } else {
            Ok(Since::Unknown(cursor.to_string()))
        }
    }

    fn tail(&self, channel: &str) -> Position {
        let last_seq = self.channel(channel).map(|c| lock(&c).last_seq).unwrap_or(0);
        Position(last_seq as u128)
    }

    fn cursor(&self, position: Position) -> String {
        self.id(position.0 as u64)
    }

    fn read(&self, channel_name: &str, since: &Since, max: usize) -> Batch {
        let Some(channel) = self.channel(channel_name) else {
            // Nothing was ever published here: nothing is owed, unless the cursor is foreign.
            let gap = match since {
                Since::Unknown(cursor) => Some(Gap { since: cursor.clone(), oldest: None }),
                Since::After(_) => None,
            };
            return Batch { messages: Vec::new(), gap, position: Position(0) };
        };
        let channel = lock(&channel);
        let first_seq = channel.first_seq();
        // A position from the future (same epoch, beyond the newest id) cannot have come from
        // this broker: treat it like a foreign cursor rather than skip what comes next.
        let (after_seq, cursor_text) = match since {
            Since::After(Position(p)) if *p <= channel.last_seq as u128 => (*p as u64, None),
            Since::After(Position(p)) => (0, Some(self.id(*p as u64))),
            Since::Unknown(cursor) => (0, Some(cursor.clone())),
        };
        let oldest = channel.log.oldest().map(|m| m.id.to_string());
        let gap = match cursor_text {
            Some(cursor) => Some(Gap { since: cursor, oldest }),
            // Messages after_seq+1 .. first_seq-1 were evicted: the reader missed them.
            None if after_seq + 1 < first_seq => Some(Gap { since: self.id(after_seq), oldest }),
            None => None,
        };
        let messages = channel.log.after(Position(after_seq as u128), max);
        let position = match messages.last() {
            Some(last) => last.position,
            None => Position(channel.last_seq as u128),
        };
        Batch { messages, gap, position }
    }

    fn subscribe(&self, channel_name: &str, subscriber: u64, waker: &Waker) {
        let mut channels = lock(&self.channels);
        // Created on demand so that a publish finds the waker; removed again on unsubscribe if
        // nothing was published (see below), so subscriptions cannot leak channels.
        let channel = channels.entry(channel_name.into()).or_default().clone();
        lock(&channel).subscribers.insert(subscriber, waker);
    }

    fn unsubscribe(&self, channel_name: &str, subscriber: u64) {
        let mut channels = lock(&self.channels);
        let Some(channel) = channels.get(channel_name).cloned() else { return };
        let mut guard = lock(&channel);
        guard.subscribers.remove(subscriber);
        if guard.subscribers.is_empty() && guard.last_seq == 0 {
            drop(guard);
            channels.remove(channel_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::text;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    fn broker(history: usize) -> MemoryBroker {
        MemoryBroker::with_epoch("k3f9".into(), history, DEFAULT_MAX_CHANNELS)
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
        assert_eq!(&*b.publish("a", "1").unwrap().id, "k3f9-1");
        assert_eq!(&*b.publish("a", "2").unwrap().id, "k3f9-2");
        assert_eq!(&*b.publish("other", "x").unwrap().id, "k3f9-1");
    }

    #[test]
    fn read_returns_the_messages_after_the_cursor_in_order() {
        let b = broker(10);
        for text in ["a", "b", "c"] {
            b.publish("ch", text).unwrap();
        }
        let batch = b.read("ch", &after(&b, "k3f9-1"), 100);
        assert_eq!(texts(&batch), ["b", "c"]);
        assert_eq!(batch.gap, None);
        assert_eq!(b.cursor(batch.position), "k3f9-3");
    }

    #[test]
    fn read_honours_the_maximum_and_resumes_from_its_position() {
        let b = broker(10);
        for text in ["a", "b", "c"] {
            b.publish("ch", text).unwrap();
        }
        let first = b.read("ch", &after(&b, "k3f9-0"), 2);
        assert_eq!(texts(&first), ["a", "b"]);
        let rest = b.read("ch", &Since::After(first.position), 2);
        assert_eq!(texts(&rest), ["c"]);
    }

    #[test]
    fn the_ring_keeps_only_the_last_history_messages() {
        let b = broker(3);
        for i in 1..=5 {
            b.publish("ch", &i.to_string()).unwrap();
        }
        let batch = b.read("ch", &after(&b, "k3f9-2"), 100);
        assert_eq!(texts(&batch), ["3", "4", "5"]);
        assert_eq!(batch.gap, None, "message 3 is the next one owed and is retained");
    }

    #[test]
    fn a_cursor_older_than_the_history_gets_a_gap_and_what_is_retained() {
        let b = broker(3);
        for i in 1..=5 {
            b.publish("ch", &i.to_string()).unwrap();
        }
        let batch = b.read("ch", &after(&b, "k3f9-1"), 100);
        assert_eq!(texts(&batch), ["3", "4", "5"]);
        assert_eq!(batch.gap, Some(Gap { since: "k3f9-1".into(), oldest: Some("k3f9-3".into()) }));
    }

    #[test]
    fn a_cursor_from_another_epoch_gets_a_gap_and_the_whole_history() {
        let b = broker(10);
        b.publish("ch", "a").unwrap();
        let since = after(&b, "zzzz-40");
        assert_eq!(since, Since::Unknown("zzzz-40".into()));
        let batch = b.read("ch", &since, 100);
        assert_eq!(texts(&batch), ["a"]);
        assert_eq!(batch.gap.map(|g| g.since), Some("zzzz-40".to_string()));
    }

    #[test]
    fn a_cursor_from_the_future_is_treated_as_foreign_not_skipped() {
        let b = broker(10);
        b.publish("ch", "a").unwrap();
        let batch = b.read("ch", &after(&b, "k3f9-99"), 100);
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
    fn tail_is_the_newest_position_so_reading_from_it_waits_for_new_messages() {
        let b = broker(10);
        assert_eq!(b.tail("ch"), Position(0));
        b.publish("ch", "old").unwrap();
        let tail = b.tail("ch");
        assert!(b.read("ch", &Since::After(tail), 10).messages.is_empty());
        b.publish("ch", "new").unwrap();
        assert_eq!(texts(&b.read("ch", &Since::After(tail), 10)), ["new"]);
    }

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn publish_wakes_every_subscriber_until_it_unsubscribes() {
        let b = broker(10);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        b.subscribe("ch", 1, &waker);
        b.subscribe("ch", 2, &waker);
        b.publish("ch", "x").unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        b.unsubscribe("ch", 1);
        b.publish("ch", "y").unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn subscriptions_alone_do_not_leave_channels_behind() {
        let b = broker(10);
        let waker = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
        b.subscribe("ephemeral", 1, &waker);
        b.unsubscribe("ephemeral", 1);
        assert!(lock(&b.channels).is_empty());
    }

    #[test]
    fn publishing_past_max_channels_is_refused() {
        let b = MemoryBroker::with_epoch("k3f9".into(), 10, 2);
        b.publish("a", "x").unwrap();
        b.publish("b", "x").unwrap();
        assert_eq!(b.publish("c", "x").unwrap_err(), BrokerError::TooManyChannels);
        b.publish("a", "still fine").unwrap();
    }

    #[test]
    fn the_random_epoch_is_four_base36_characters() {
        let b = MemoryBroker::new(10, 10);
        assert_eq!(b.epoch().len(), 4);
        assert!(b.parse_cursor(&format!("{}-0", b.epoch())).is_ok());
    }
}
