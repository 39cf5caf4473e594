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

use super::{Batch, Broker, BrokerError, Gap, History, Limits, Message, Position, Since, Usage};

/// Characters of the epoch: enough that two restarts colliding is a 1 in 1.7 million event.
const EPOCH_LEN: usize = 4;

pub struct MemoryBroker {
    epoch: String,
    limits: Limits,
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

    /// The bytes of envelopes retained.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
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
    pub fn new(limits: Limits) -> MemoryBroker {
        let mut bytes = [0u8; EPOCH_LEN];
        if crate::random::fill(&mut bytes).is_err() {
            // Without /dev/urandom the clock still differs between restarts.
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            bytes = nanos.to_le_bytes();
        }
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let epoch = bytes.iter().map(|b| DIGITS[*b as usize % 36] as char).collect();
        MemoryBroker::with_epoch(epoch, limits)
    }

    /// A broker with a chosen epoch (tests use this to simulate a restart).
    pub fn with_epoch(epoch: String, limits: Limits) -> MemoryBroker {
        MemoryBroker { epoch, limits: limits.sanitized(), channels: Mutex::default() }
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

    fn usage(&self) -> Usage {
        let channels = lock(&self.channels);
        let retained_bytes = channels.values().map(|channel| lock(channel).log.bytes()).sum();
        Usage { channels: channels.len(), retained_bytes }
    }

    fn publish(&self, channel_name: &str, text: &str) -> Result<Arc<Message>, BrokerError> {
        let channel = {
            let mut channels = lock(&self.channels);
            match channels.get(channel_name) {
                Some(channel) => channel.clone(),
                None => {
                    if channels.len() >= self.limits.max_channels {
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
        channel.log.push(message.clone(), self.limits.history);
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
    use crate::broker::{text, DEFAULT_HISTORY_BYTES};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// Limits with a count-only history of `history` messages.
    fn limits(history: usize) -> Limits {
        Limits { history: History { messages: history, bytes: usize::MAX }, ..Limits::default() }
    }

    fn broker(history: usize) -> MemoryBroker {
        MemoryBroker::with_epoch("k3f9".into(), limits(history))
    }

    fn publish(broker: &MemoryBroker, channel: &str, text: &str) -> Arc<Message> {
        broker.publish(channel, text).unwrap()
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
        assert_eq!(b.usage().channels, 0);
    }

    #[test]
    fn publishing_past_max_channels_is_refused() {
        let b = MemoryBroker::with_epoch("k3f9".into(), Limits { max_channels: 2, ..limits(10) });
        b.publish("a", "x").unwrap();
        b.publish("b", "x").unwrap();
        assert_eq!(b.publish("c", "x").unwrap_err(), BrokerError::TooManyChannels);
        b.publish("a", "still fine").unwrap();
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
        let batch = b.read("ch", &after(&b, "k3f9-2"), 100);
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
        assert_eq!(texts(&b.read("ch", &after(&b, "k3f9-1"), 100)), [big]);
        publish(&b, "ch", "after");
        assert_eq!(texts(&b.read("ch", &after(&b, "k3f9-0"), 100)), ["after"], "the big one left for the next");
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
        let batch = b.read("ch", &after(&b, "k3f9-1"), 100);
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
        let batch = b.read("big", &Since::After(Position(0)), 1000);
        println!("1000 messages of 64 KiB: {} retained, {retained} envelope bytes", batch.messages.len());
        assert!(retained <= DEFAULT_HISTORY_BYTES, "{retained}");
        assert_eq!(retained, batch.messages.iter().map(|m| m.envelope().len()).sum::<usize>());
        assert_eq!(batch.messages.len(), DEFAULT_HISTORY_BYTES / batch.messages[0].envelope().len());
        assert!(batch.gap.is_some());
    }
}
