//! A reader's place in one channel: what long polls, SSE streams and WebSocket subscribers
//! have in common.
//!
//! A subscription is a cursor plus a registered waker. Reading always means "the messages
//! after my cursor", then moving the cursor to the last one read, so a replay of the history
//! and the live stream are the same loop and there is no seam between them where a message
//! could be lost or sent twice.
//!
//! The order of the two steps matters. The waker is registered *before* the first read that
//! finds nothing: a message published between "read: nothing" and "register" would otherwise
//! wake nobody, and the reader would sleep past it (a lost wake-up).

#![forbid(unsafe_code)]

use std::task::Waker;
use std::time::Instant;

use crate::broker::{Batch, Broker, Since};

#[derive(Debug)]
pub struct Subscription {
    channel: Box<str>,
    /// Where the next read starts.
    since: Since,
    /// Whether the broker holds our waker.
    registered: bool,
}

impl Subscription {
    /// A cursor in `channel`; `since: None` starts at the current tail ("only new messages").
    pub fn new(broker: &dyn Broker, channel: &str, since: Option<Since>) -> Subscription {
        let since = since.unwrap_or_else(|| Since::After(broker.tail(channel)));
        Subscription { channel: channel.into(), since, registered: false }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Registers `waker` to be woken by every publish to the channel (idempotent).
    pub fn register(&mut self, broker: &dyn Broker, subscriber: u64, waker: &Waker, now: Instant) {
        if !self.registered {
            broker.subscribe(&self.channel, subscriber, waker, now);
            self.registered = true;
        }
    }

    /// Up to `max` messages after the cursor, and a gap if some were lost to the history.
    /// The cursor moves past what is returned.
    pub fn read(&mut self, broker: &dyn Broker, max: usize) -> Batch {
        let batch = broker.read(&self.channel, &self.since, max);
        self.since = Since::After(batch.position);
        batch
    }

    /// Moves the cursor back to just after `position` (used when a batch is cut short).
    pub fn rewind_to(&mut self, position: crate::broker::Position) {
        self.since = Since::After(position);
    }

    /// Where the subscriber stands, as an id a client could resume from.
    pub fn cursor(&self, broker: &dyn Broker) -> String {
        match &self.since {
            Since::After(position) => broker.cursor(*position),
            Since::Unknown(cursor) => cursor.clone(),
        }
    }

    /// Removes the waker at `now`; the subscription can be registered again later.
    pub fn unregister(&mut self, broker: &dyn Broker, subscriber: u64, now: Instant) {
        if self.registered {
            broker.unsubscribe(&self.channel, subscriber, now);
            self.registered = false;
        }
    }
}
