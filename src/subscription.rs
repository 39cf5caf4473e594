//! A reader's place in one channel: what long polls, SSE streams and WebSocket subscribers
//! have in common.
//!
//! A subscription is a cursor plus a registered wake. Reading always means "the messages
//! after my cursor", then moving the cursor to the last one read, so a replay of the history
//! and the live stream are the same loop and there is no seam between them where a message
//! could be lost or sent twice.
//!
//! The order of the two steps matters. The wake is registered *before* the first read that
//! finds nothing: a message published between "read: nothing" and "register" would otherwise
//! wake nobody, and the reader would sleep past it (a lost wake-up).
//!
//! "Only new messages" (no cursor) starts at the channel's tail, which a Redis node may have to
//! ask Redis for: the subscription then resolves it at its first read, in the same turn as the
//! request on the memory broker, and when the answer lands on a Redis node (the read says
//! [`Batch::in_flight`] meanwhile). Reads never wait: a broker that has to fetch answers
//! "nothing yet" and wakes the reader later ([`crate::broker::Reader`]).

#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::broker::{Batch, Broker, Position, Reader, Since};
use crate::time::Instant;
use crate::wake::Wake;

#[derive(Debug)]
pub struct Subscription {
    /// Once registered, the broker's own copy of the name, which the channel's subscribers
    /// share ([`Broker::subscribe`]).
    channel: Arc<str>,
    /// Where the next read starts; `None` until the channel's tail is known.
    since: Option<Since>,
    /// Whether the broker holds our wake.
    registered: bool,
}

impl Subscription {
    /// A cursor in `channel`; `since: None` starts at the channel's tail ("only new
    /// messages"), resolved by the first read.
    pub fn new(channel: &str, since: Option<Since>) -> Subscription {
        Subscription { channel: channel.into(), since, registered: false }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Registers `wake` to be woken by every publish to the channel (idempotent).
    pub fn register(&mut self, broker: &dyn Broker, subscriber: u64, wake: &Wake, now: Instant) {
        if !self.registered {
            self.channel = broker.subscribe(&self.channel, subscriber, wake, now);
            self.registered = true;
        }
    }

    /// Up to `max` messages after the cursor, and a gap if some were lost to the history.
    /// The cursor moves past what is returned. An [`in_flight`](Batch::in_flight) batch says
    /// the broker is fetching (the tail, or a cold read) and will wake `reader`.
    pub fn read(&mut self, broker: &dyn Broker, max: usize, reader: Reader<'_>) -> Batch {
        if self.resolve_start(broker, reader).is_pending() {
            // The position is not used: the subscription keeps no cursor until the tail lands.
            return Batch::in_flight(Position::new(0));
        }
        let Some(since) = &self.since else { return Batch::in_flight(Position::new(0)) };
        let batch = broker.read(&self.channel, since, max, reader);
        if !batch.in_flight {
            self.since = Some(Since::After(batch.position));
        }
        batch
    }

    /// Makes sure the subscription knows where it starts: for "only new messages", the
    /// channel's tail, which the broker may have to ask for (`Pending`: `reader` is woken when
    /// it lands). A stream resolves it before its client sees it open (its head, its `101`):
    /// a message the client publishes once it sees that is then after the start, never skipped.
    pub fn resolve_start(&mut self, broker: &dyn Broker, reader: Reader<'_>) -> std::task::Poll<()> {
        if self.since.is_none() {
            match broker.tail(&self.channel, reader) {
                std::task::Poll::Ready(tail) => self.since = Some(Since::After(tail)),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
        std::task::Poll::Ready(())
    }

    /// Moves the cursor back to just after `position` (used when a batch is cut short).
    pub fn rewind_to(&mut self, position: Position) {
        self.since = Some(Since::After(position));
    }

    /// Where the subscriber stands, as an id a client could resume from (`None` before the
    /// first read has resolved the tail).
    pub fn cursor(&self, broker: &dyn Broker) -> Option<String> {
        match self.since.as_ref()? {
            Since::After(position) => Some(broker.cursor(*position)),
            Since::Unknown(cursor) => Some(cursor.clone()),
        }
    }

    /// Removes the wake at `now`, and drops whatever the broker was fetching for this
    /// reader; the subscription can be registered again later.
    pub fn unregister(&mut self, broker: &dyn Broker, subscriber: u64, now: Instant) {
        broker.forget(&self.channel, subscriber);
        if self.registered {
            broker.unsubscribe(&self.channel, subscriber, now);
            self.registered = false;
        }
    }
}
