//! The broker: the only state the connections share.
//!
//! Every transport asks the broker the same three questions, which is why all three can offer
//! the same guarantees:
//!
//! 1. **publish**: append a text to a channel's log; it gets the next id and a timestamp.
//! 2. **read after a cursor**: "which messages came after the last one I saw?" A cursor is the
//!    id of the last message a client received (`?since=`, `Last-Event-ID`). When some of the
//!    messages it is owed have already left the bounded history, the answer says so (a
//!    [`Gap`]), so nothing is ever lost silently.
//! 3. **wake me when there is more**: a subscriber registers a [`std::task::Waker`]. The
//!    thread-per-connection server's waker unparks a thread; the event loop's queues a token
//!    on its worker. The broker does not know or care which.
//!
//! Subscribers *pull*: a wake-up carries no message, it only says "read again from your
//! cursor". That design has no seam between a replay and the live stream (the replay is the
//! stream), no per-subscriber queue to bound, and a slow reader costs the publisher nothing.
//!
//! A message is stored once (`Arc<Message>`). Its envelope JSON is built once at publish time
//! and each transport's wire form (an SSE event, a WebSocket frame) is built the first time
//! any subscriber needs it and then shared by all of them ([`Message::wire_form`]).

#![forbid(unsafe_code)]

pub mod memory;
pub mod redis;
pub mod resp;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::task::Waker;

use crate::json;

/// The longest channel name (DESIGN.md: 1 to 64 characters).
pub const MAX_CHANNEL_NAME_BYTES: usize = 64;

/// Is `name` a channel name? DESIGN.md: 1 to 64 of `A-Z a-z 0-9 _ . -`. The grammar keeps
/// names safe to put in a URL path, a Redis key and a log line without escaping.
pub fn is_valid_channel_name(name: &str) -> bool {
    (1..=MAX_CHANNEL_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A place in a channel's log, totally ordered. The memory broker uses the sequence number; a
/// Redis stream id `ms-seq` fits as `ms << 64 | seq`. Clients never see it: they see ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u128);

/// One published message. Immutable once published and shared by every reader.
pub struct Message {
    /// The opaque id clients use as a cursor (`k3f9-17`).
    pub id: Box<str>,
    pub position: Position,
    pub text: Box<str>,
    /// Server time of the publish, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `{"id":...,"text":...,"time":...}`, the same on every transport.
    envelope: Box<str>,
    /// Each transport's encoding of this message, built on first use (see [`WireForm`]).
    wire_forms: [OnceLock<Box<[u8]>>; WIRE_FORMS],
}

/// The transports whose encoding of a message is cached on the message itself, so that a
/// fan-out to N subscribers encodes once, not N times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireForm {
    SseEvent = 0,
    WebSocketFrame = 1,
}

const WIRE_FORMS: usize = 2;

impl Message {
    pub fn new(id: &str, position: Position, text: &str, time_ms: u64) -> Message {
        let mut envelope = String::with_capacity(text.len() + id.len() + 40);
        envelope.push_str("{\"id\":");
        json::write_string(&mut envelope, id);
        envelope.push_str(",\"text\":");
        json::write_string(&mut envelope, text);
        envelope.push_str(",\"time\":");
        envelope.push_str(&time_ms.to_string());
        envelope.push('}');
        Message {
            id: id.into(),
            position,
            text: text.into(),
            time_ms,
            envelope: envelope.into(),
            wire_forms: Default::default(),
        }
    }

    /// The JSON envelope: `{"id":"k3f9-17","text":"Hi","time":1678900000123}`.
    pub fn envelope(&self) -> &str {
        &self.envelope
    }

    /// This message encoded for one transport; `encode` runs at most once per message.
    pub fn wire_form(&self, form: WireForm, encode: impl FnOnce(&Message) -> Vec<u8>) -> &[u8] {
        self.wire_forms[form as usize].get_or_init(|| encode(self).into_boxed_slice())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("id", &self.id).field("text", &self.text).finish()
    }
}

/// Where a reader starts, as understood by the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Since {
    /// After this position: the usual case.
    After(Position),
    /// A well-formed cursor this broker cannot place, e.g. from before a restart (another
    /// epoch). The reader gets the whole retained history and a gap: it may have missed some.
    Unknown(String),
}

/// The answer to "what came after my cursor?".
#[derive(Debug)]
pub struct Batch {
    /// At most the number asked for, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// Set when some messages after the cursor are no longer retained.
    pub gap: Option<Gap>,
    /// Where the reader stands after this batch: read again from here.
    pub position: Position,
}

/// Messages were owed but have left the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The cursor the reader asked with.
    pub since: String,
    /// The oldest id still retained, where the replay resumes (None: the log is empty).
    pub oldest: Option<String>,
}

/// Why a broker refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerError {
    /// The cursor is not an id this broker ever hands out (client fault: 400).
    BadCursor,
    /// Publishing would create a channel past `--max-channels` (503).
    TooManyChannels,
    /// The backing store cannot be reached (503): refused, never dropped silently.
    Unavailable(String),
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::BadCursor => f.write_str("malformed cursor"),
            BrokerError::TooManyChannels => f.write_str("too many channels"),
            BrokerError::Unavailable(why) => write!(f, "broker unavailable: {why}"),
        }
    }
}

impl std::error::Error for BrokerError {}

/// What every broker offers. Channel names are validated by the caller.
pub trait Broker: Send + Sync {
    /// `memory` or `redis`, for `/stats` and logs.
    fn kind(&self) -> &'static str;

    /// Appends `text` to `channel` and wakes its subscribers.
    fn publish(&self, channel: &str, text: &str) -> Result<Arc<Message>, BrokerError>;

    /// Interprets a client's cursor (`?since=`, `Last-Event-ID`).
    fn parse_cursor(&self, cursor: &str) -> Result<Since, BrokerError>;

    /// The position just after the newest message: where "only what arrives from now on" starts.
    fn tail(&self, channel: &str) -> Position;

    /// The id text of a position (the cursor a client should send back to resume from it).
    fn cursor(&self, position: Position) -> String;

    /// Up to `max` messages after `since`, oldest first.
    fn read(&self, channel: &str, since: &Since, max: usize) -> Batch;

    /// Registers `waker` to be woken on every publish to `channel` until unsubscribed.
    /// `subscriber` is a key unique per connection; subscribing again replaces the waker.
    fn subscribe(&self, channel: &str, subscriber: u64, waker: &Waker);

    fn unsubscribe(&self, channel: &str, subscriber: u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_design_grammar() {
        for ok in ["messages", "a", "A-Z_a.z-0.9", &"x".repeat(64)] {
            assert!(is_valid_channel_name(ok), "{ok}");
        }
        for bad in ["", &"x".repeat(65), "with space", "slash/", "ünï", "percent%20", "colon:"] {
            assert!(!is_valid_channel_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_envelope_is_the_same_json_on_every_transport() {
        let message = Message::new("k3f9-17", Position(17), "Hi \"you\"\n", 1_678_900_000_123);
        assert_eq!(message.envelope(), r#"{"id":"k3f9-17","text":"Hi \"you\"\u000a","time":1678900000123}"#);
    }

    #[test]
    fn a_wire_form_is_encoded_once_and_shared() {
        let message = Message::new("k3f9-1", Position(1), "Hi", 0);
        let mut calls = 0;
        let first = message.wire_form(WireForm::SseEvent, |m| {
            calls += 1;
            m.envelope().as_bytes().to_vec()
        });
        assert_eq!(first, message.envelope().as_bytes());
        let again = message.wire_form(WireForm::SseEvent, |_| unreachable!("encoded twice"));
        assert_eq!(again.as_ptr(), first.as_ptr());
        assert_eq!(calls, 1);
    }
}
