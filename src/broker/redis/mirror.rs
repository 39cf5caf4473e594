//! One channel on a node ([`Mirror`]; the docs of [`super`], "One channel on a node: the
//! mirror"): the ring of its newest messages, fed by pub/sub and catch-ups, and the base
//! after which it holds every entry of the stream.

#![forbid(unsafe_code)]

use std::sync::Arc;

use std::time::Duration;

use super::channel::names_an_entry;
use super::{History, Message, Position, Ring, Subscribers};
use crate::broker::{is_idle_expired, Batch};
use crate::time::Instant;

/// One channel as this node knows it (see the docs of [`super`]: "the mirror").
pub(super) struct Mirror {
    /// The stream's newest position when the mirror was loaded; `None` until then. Every
    /// entry after `base()` is in `ring` or on its way from pub/sub. Only the supervisor
    /// loads a mirror, once its channel's `SUBSCRIBE` is confirmed (the docs of [`super`], "One
    /// subscription per channel"), so a loaded mirror is a live one.
    pub(super) loaded: Option<Position>,
    /// The position of the newest message the ring evicted (0: none yet).
    pub(super) evicted: Position,
    pub(super) ring: Ring,
    /// The newest position known: the last message, or the load position.
    pub(super) newest: Position,
    pub(super) subscribers: Subscribers,
    /// When the mirror was made or lost its last local subscriber: where its linger starts.
    /// Messages do not move it: a busy channel nobody here follows is not kept for them.
    pub(super) idle_since: Instant,
}

/// What became of an entry offered to a mirror.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Accepted {
    New,
    /// Already in the ring, or older than what the mirror covers.
    Duplicate,
    /// Older than the newest entry yet never seen: the stream went backwards (Redis lost the
    /// stream and its clock is behind, or someone wrote ids by hand).
    OutOfOrder,
}

impl Mirror {
    /// A mirror that knows nothing yet: reads go to Redis until the supervisor loads it.
    pub(super) fn unloaded(now: Instant) -> Mirror {
        Mirror {
            loaded: None,
            evicted: Position::new(0),
            ring: Ring::default(),
            newest: Position::new(0),
            subscribers: Subscribers::default(),
            idle_since: now,
        }
    }

    /// The stream went backwards (an entry older than the newest, never seen, arrived): what
    /// the mirror holds is no longer what the stream holds. It forgets it all and is loaded
    /// again; until then its readers read the stream (see the docs of [`super`], "the mirror").
    pub(super) fn rewind(&mut self) {
        self.loaded = None;
        self.evicted = Position::new(0);
        self.ring = Ring::default();
        self.newest = Position::new(0);
        self.subscribers.wake_all();
    }

    /// A mirror that covers everything after `base`.
    #[cfg(test)]
    pub(super) fn starting_after(base: Position, now: Instant) -> Mirror {
        Mirror { loaded: Some(base), newest: base, ..Mirror::unloaded(now) }
    }

    pub(super) fn base(&self) -> Option<Position> {
        self.loaded.map(|loaded| loaded.max(self.evicted))
    }

    /// Sets where the mirror starts: the stream's newest position, read after the channel's
    /// subscription was confirmed. Anything collected up to it is older news.
    pub(super) fn load(&mut self, newest_in_stream: Position) {
        if self.loaded.is_none() {
            self.loaded = Some(newest_in_stream);
            self.ring.drop_through(newest_in_stream);
            self.newest = self.newest.max(newest_in_stream);
        }
    }

    /// Appends an entry if it is newer than everything here, and wakes the subscribers.
    pub(super) fn accept(&mut self, message: Arc<Message>, history: History) -> Accepted {
        let position = message.position;
        if position <= self.newest {
            let covered = self.ring.contains(position) || self.base().is_none_or(|base| position <= base);
            return if covered { Accepted::Duplicate } else { Accepted::OutOfOrder };
        }
        if let Some(evicted) = self.ring.push(message, history) {
            self.evicted = evicted;
        }
        self.newest = position;
        self.subscribers.wake_all();
        Accepted::New
    }

    /// Whether the mirror's linger is over at `now`: no local subscriber for `linger`.
    pub(super) fn has_lingered(&self, now: Instant, linger: Duration) -> bool {
        self.is_idle() && is_idle_expired(self.idle_since, now, linger)
    }

    /// Without local subscribers: the mirror only spares a returning reader a round trip.
    pub(super) fn is_idle(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// The messages after `cursor`, if the mirror can vouch for the cursor: at its base, on
    /// an entry it holds, or naming no entry (`0-0`, a tail estimated while Redis was away).
    /// Any other cursor is answered by the stream (a cold read), which can tell the cases
    /// the mirror cannot: older than the base; an entry this node has not heard of yet (a
    /// cursor from another node, whose news is on its way here); an entry the stream lost (a
    /// failover, a stream that went backwards) or that expired with its stream; an id of
    /// another deployment. Answered from here, the last three would wait for newer ids and
    /// skip, without a gap, whatever the reader had missed.
    pub(super) fn read(&self, cursor: Position, max: usize) -> Option<Batch> {
        let base = self.base()?;
        let vouched = cursor == base || !names_an_entry(cursor) || self.ring.contains(cursor);
        if cursor < base || !vouched {
            return None;
        }
        let messages = self.ring.after(cursor, max);
        // Nothing newer here: the reader stays where it is.
        let position = messages.last().map_or(cursor, |m| m.position);
        Some(Batch { messages, gap: None, position, in_flight: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::channel::end_of_millisecond;
    use crate::broker::redis::tests::{at, count, id, message, texts};

    #[test]
    fn a_mirror_answers_cursors_at_or_after_its_base_and_leaves_older_ones_to_the_stream() {
        let mut mirror = Mirror::starting_after(id("10-0"), at(0));
        for (position, text) in [("11-0", "a"), ("11-1", "b"), ("12-0", "c")] {
            assert_eq!(mirror.accept(message(position, text), count(10)), Accepted::New);
        }
        assert_eq!(texts(&mirror.read(id("10-0"), 10).unwrap()), ["a", "b", "c"]);
        assert_eq!(texts(&mirror.read(id("11-0"), 10).unwrap()), ["b", "c"]);
        let batch = mirror.read(id("11-0"), 1).unwrap();
        assert_eq!((texts(&batch), batch.position), (vec!["b".to_string()], id("11-1")));
        assert!(mirror.read(id("9-0"), 10).is_none(), "older than the base: the stream knows");
    }

    #[test]
    fn a_cursor_the_mirror_cannot_vouch_for_is_read_from_the_stream() {
        let mut mirror = Mirror::starting_after(id("10-0"), at(0));
        mirror.accept(message("12-0", "c"), count(10));
        // From another node before pub/sub brought it here, or lost, or expired: the stream
        // tells (`XRANGE C C`), not the mirror.
        assert!(mirror.read(id("13-0"), 10).is_none(), "past the newest");
        assert!(mirror.read(id("11-5"), 10).is_none(), "between entries, never heard here");
        // A tail estimated while Redis was away names no entry: it waits where it is.
        let batch = mirror.read(end_of_millisecond(13), 10).unwrap();
        assert!(batch.messages.is_empty() && batch.gap.is_none());
        assert_eq!(batch.position, end_of_millisecond(13));
        assert_eq!(mirror.read(id("10-0"), 10).unwrap().position, id("12-0"), "the base");
    }

    #[test]
    fn entries_at_or_before_the_newest_are_duplicates_and_skipped() {
        let mut mirror = Mirror::starting_after(id("10-0"), at(0));
        assert_eq!(mirror.accept(message("11-0", "a"), count(10)), Accepted::New);
        assert_eq!(mirror.accept(message("11-0", "a"), count(10)), Accepted::Duplicate);
        assert_eq!(mirror.accept(message("9-0", "old"), count(10)), Accepted::Duplicate);
        assert_eq!(mirror.accept(message("12-0", "b"), count(10)), Accepted::New);
        assert_eq!(mirror.accept(message("11-5", "never seen"), count(10)), Accepted::OutOfOrder);
        assert_eq!(texts(&mirror.read(id("10-0"), 10).unwrap()), ["a", "b"]);
    }

    #[test]
    fn a_stream_that_went_backwards_rewinds_the_mirror_and_readers_past_the_new_base_read_the_stream() {
        // 11-0 and 12-0 were handed out; the stream lost 12-0 (a failover) and the new master,
        // on a clock behind, wrote 11-5: never seen, older than the newest.
        let mut mirror = Mirror::starting_after(id("10-0"), at(0));
        mirror.accept(message("11-0", "a"), count(10));
        mirror.accept(message("12-0", "lost"), count(10));
        assert_eq!(mirror.accept(message("11-5", "new"), count(10)), Accepted::OutOfOrder);
        mirror.rewind();
        assert!(mirror.read(id("12-0"), 10).is_none(), "unloaded: its readers read the stream");
        mirror.load(id("11-5"));
        assert_eq!(mirror.accept(message("11-7", "newer"), count(10)), Accepted::New);
        // A cursor that named the lost entry is answered by the stream, which no longer has
        // it: a gap (`cursor_was_lost`), and the new entries below it.
        assert!(mirror.read(id("12-0"), 10).is_none(), "a lost entry: the stream tells");
        let inside = mirror.read(id("11-7"), 10).unwrap();
        assert!(inside.gap.is_none() && inside.messages.is_empty(), "a cursor the new stream gave out");
        assert_eq!(texts(&mirror.read(id("11-5"), 10).unwrap()), ["newer"], "the new base");
        assert!(mirror.read(id("11-0"), 10).is_none(), "older than the new base: read from the stream");
    }

    #[test]
    fn the_ring_keeps_history_messages_and_its_base_follows_evictions() {
        let mut mirror = Mirror::starting_after(id("0-0"), at(0));
        for seq in 1..=5 {
            mirror.accept(message(&format!("1-{seq}"), &seq.to_string()), count(3));
        }
        assert_eq!(mirror.base(), Some(id("1-2")));
        assert_eq!(texts(&mirror.read(id("1-2"), 10).unwrap()), ["3", "4", "5"]);
        assert!(mirror.read(id("1-1"), 10).is_none(), "message 2 left the ring: ask the stream");
    }

    #[test]
    fn a_mirror_keeps_at_most_history_bytes_and_its_base_follows_byte_evictions() {
        let two_envelopes = 2 * message("1-1", "1xxxxxxxxx").envelope().len();
        let history = History { messages: 100, bytes: two_envelopes };
        let mut mirror = Mirror::starting_after(id("0-0"), at(0));
        for seq in 1..=5 {
            mirror.accept(message(&format!("1-{seq}"), &format!("{seq}xxxxxxxxx")), history);
        }
        assert_eq!(mirror.base(), Some(id("1-3")));
        let retained: Vec<String> = texts(&mirror.read(id("1-3"), 10).unwrap());
        assert_eq!(retained.iter().map(|t| &t[..1]).collect::<Vec<_>>(), ["4", "5"]);
        assert!(mirror.read(id("1-2"), 10).is_none(), "message 3 left the ring: ask the stream");
    }

    #[test]
    fn an_unloaded_mirror_keeps_only_what_comes_after_its_load_position() {
        let mut mirror = Mirror::unloaded(at(0));
        mirror.accept(message("5-0", "before the load"), count(10));
        mirror.accept(message("7-0", "after the load"), count(10));
        assert!(mirror.read(id("0-0"), 10).is_none(), "unloaded: reads go to Redis");
        mirror.load(id("6-0"));
        assert_eq!(texts(&mirror.read(id("6-0"), 10).unwrap()), ["after the load"]);
        assert_eq!(mirror.newest, id("7-0"));
        mirror.load(id("9-0"));
        assert_eq!(mirror.loaded, Some(id("6-0")), "loaded once");
    }
}
