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
//! 3. **wake me when there is more**: a subscriber registers a [`Wake`]. The
//!    thread-per-connection server's wake unparks a thread; the event loop's queues a token
//!    on its worker. The broker does not know or care which.
//!
//! Subscribers *pull*: a wake-up carries no message, it only says "read again from your
//! cursor". That design has no seam between a replay and the live stream (the replay is the
//! stream), no per-subscriber queue to bound, and a slow reader costs the publisher nothing.
//!
//! ## Memory: one copy of each message, and bounds on everything
//!
//! A message is stored once (`Arc<Message>`) as its envelope, the JSON every transport
//! carries (`{"id":...,"text":...,"time":...}`), built at publish time. Nothing else in it
//! grows with the text: not the text itself (it is inside the envelope), not a transport's
//! encoding. Each transport writes its few bytes of framing around the shared envelope as it
//! delivers it (an SSE event: [`crate::sse::LineEvent`]; a WebSocket frame:
//! [`crate::ws::frame::encode_frame`]; an HTTP chunk: [`crate::http::response::write_chunk_pieces`]),
//! straight into the connection's output. A fan-out to N subscribers therefore costs N copies
//! of the envelope into N output buffers, which it would cost anyway, and the history costs
//! one envelope per retained message.
//!
//! What a broker keeps is bounded by its [`Limits`]:
//!
//! - a channel's **history** holds at most `--history` messages *and* at most
//!   `--history-bytes` bytes of envelopes ([`History`]), evicting the oldest first but always
//!   keeping the newest message, so a message of any size the publish limit allows can still
//!   be delivered;
//! - a channel with no subscriber that has had no news for `--channel-ttl` is **reclaimed**
//!   with its history, so `--max-channels` bounds the channels in use at once, not the names
//!   ever used. Time is passed in (`now` on [`Broker::publish`], [`Broker::subscribe`] and
//!   [`Broker::unsubscribe`]). No thread exists for it: the memory broker sweeps on those
//!   calls, the Redis broker's supervisor between the pub/sub messages it reads.
//!
//! A reader whose messages were evicted or reclaimed is told so with a [`Gap`], as always.

#![forbid(unsafe_code)]

pub mod memory;
pub mod pending;
pub mod redis;
pub mod resp;

use std::fmt;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::json;
use crate::time::{Instant, Now};
use crate::wake::Wake;

pub use pending::{Completer, Pending};

/// The longest channel name (`docs/PROTOCOL.md` §1: 1 to 64 characters).
pub const MAX_CHANNEL_NAME_BYTES: usize = 64;

/// Default number of messages a channel retains (`--history`): enough for a client that
/// reconnects after a short outage to miss nothing on a busy channel.
pub const DEFAULT_HISTORY: usize = 1000;

/// Default bytes of envelopes a channel retains (`--history-bytes`). 4 MiB holds the whole
/// `--history` of messages up to about 4 KiB (a chat line or a JSON event is well under that)
/// and still 64 messages at the 64 KiB publish limit; without it one channel of large messages
/// would keep 1000 × 64 KiB = 64 MiB. With `--max-channels` it bounds the history's memory:
/// 10,000 channels × 4 MiB is the worst case; lower either to fit a smaller machine.
pub const DEFAULT_HISTORY_BYTES: usize = 4 * 1024 * 1024;

/// Default limit on channels held at once (`--max-channels`). Each channel's history is
/// bounded, so this bounds the broker's memory: a client publishing to random names cannot
/// grow it without limit.
pub const DEFAULT_MAX_CHANNELS: usize = 10_000;

/// Default time an idle channel lives (`--channel-ttl`). Five minutes is far longer than a
/// client takes to come back (an EventSource's `retry` is 2 s, a phone between cells a minute),
/// so readers that are only reconnecting do not lose the history under them; and short enough
/// that channels used once (one per upload, per game, per request) leave within minutes.
pub const DEFAULT_CHANNEL_TTL: Duration = Duration::from_secs(300);

/// The longest `channel_ttl` a broker applies (one day, as `--channel-ttl` allows): past it, a
/// channel's life is as good as endless, and deadlines stay far from `Instant`'s range.
pub const MAX_CHANNEL_TTL: Duration = Duration::from_secs(86_400);

/// What a channel's history holds: its newest messages, at most `messages` of them and at
/// most `bytes` bytes of envelopes, and always at least the newest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    pub messages: usize,
    pub bytes: usize,
}

/// The bounds a broker keeps its memory within (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Per channel (`--history`, `--history-bytes`).
    pub history: History,
    /// Channels held at once (`--max-channels`).
    pub max_channels: usize,
    /// How long a channel with no subscriber and no news is kept (`--channel-ttl`; at most
    /// [`MAX_CHANNEL_TTL`]).
    pub channel_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            history: History { messages: DEFAULT_HISTORY, bytes: DEFAULT_HISTORY_BYTES },
            max_channels: DEFAULT_MAX_CHANNELS,
            channel_ttl: DEFAULT_CHANNEL_TTL,
        }
    }
}

impl Limits {
    /// The limits as a broker applies them: at least one message and one channel, and a TTL
    /// within [`MAX_CHANNEL_TTL`].
    pub fn sanitized(self) -> Limits {
        Limits {
            history: History { messages: self.history.messages.max(1), bytes: self.history.bytes },
            max_channels: self.max_channels.max(1),
            channel_ttl: self.channel_ttl.min(MAX_CHANNEL_TTL),
        }
    }
}

/// At most this many sweeps for idle channels per `channel_ttl`. A sweep locks every channel
/// in turn; eight per TTL keeps that rare (every 37 s by default) however publishes are timed,
/// and lets an idle channel outlive its TTL by at most an eighth.
pub const SWEEPS_PER_TTL: u32 = 8;

/// Whether a channel that has no subscriber and last had news (or lost its last subscriber)
/// at `active_at` has been idle for `ttl` at `now`.
pub(crate) fn is_idle_expired(active_at: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(active_at) >= ttl
}

/// When to sweep next, after a sweep at `now` that left idle channels expiring at
/// `earliest_expiry` at the soonest (`None`: none is idle). Not before then: a channel that
/// goes idle later expires later than `now + ttl`, and an idle one's expiry only moves later.
/// And not sooner than [`SWEEPS_PER_TTL`] allows.
pub(crate) fn next_sweep(now: Instant, ttl: Duration, earliest_expiry: Option<Instant>) -> Instant {
    let soonest_possible = earliest_expiry.map_or(now + ttl, |expiry| expiry.min(now + ttl));
    soonest_possible.max(now + ttl / SWEEPS_PER_TTL)
}

/// Is `name` a channel name? `docs/PROTOCOL.md` §1: 1 to 64 of `A-Z a-z 0-9 _ . -`. The
/// grammar keeps names safe to put in a URL path, a Redis key and a log line without escaping.
pub fn is_valid_channel_name(name: &str) -> bool {
    (1..=MAX_CHANNEL_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A place in a channel's log, totally ordered. The memory broker uses the sequence number; a
/// Redis stream id `ms-seq` fits as `ms << 64 | seq`. Clients never see it: they see ids.
///
/// A `u128` kept as two halves, high first (so that the derived order is the number's): a
/// `u128` is aligned to 16 bytes, which padded every cursor, and so every subscription, every
/// idle connection keeps, by 16 bytes (README, "What an idle connection costs").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    high: u64,
    low: u64,
}

impl Position {
    pub const fn new(value: u128) -> Position {
        Position { high: (value >> 64) as u64, low: value as u64 }
    }

    pub const fn get(self) -> u128 {
        ((self.high as u128) << 64) | self.low as u128
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position::new({})", self.get())
    }
}

/// One published message. Immutable once published and shared by every reader.
///
/// It holds the envelope and nothing else as long as the text: transports frame the envelope
/// as they write it (see the module docs), and whoever needs the text reads it from the
/// envelope.
pub struct Message {
    /// The opaque id clients use as a cursor (`k3f9-17`).
    pub id: Box<str>,
    pub position: Position,
    /// Server time of the publish, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `{"id":...,"text":...,"time":...}`, the same on every transport.
    envelope: Box<str>,
}

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
        // The only copy of the text; `into_boxed_str` gives back the capacity escaping did
        // not use, so the history holds exactly the envelope's bytes.
        Message { id: id.into(), position, time_ms, envelope: envelope.into_boxed_str() }
    }

    /// The JSON envelope: `{"id":"k3f9-17","text":"Hi","time":1678900000123}`.
    ///
    /// It is one line: [`json::write_string`] escapes every control character, CR and LF
    /// included (RFC 8259 §7), and the rest is fixed text and digits. That is what lets an SSE
    /// event carry it as a single `data:` line without looking at it again
    /// ([`crate::sse::LineEvent`]).
    pub fn envelope(&self) -> &str {
        &self.envelope
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("id", &self.id).field("envelope_bytes", &self.envelope.len()).finish()
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
    /// The broker is fetching what the reader asked for (a Redis broker's cold read) and will
    /// ring the reader's wake-up when it lands: nothing yet, read again then. Nothing is owed
    /// until then either, so a long poll keeps waiting, even past its timeout (the fetch ends
    /// within `--redis-timeout`).
    pub in_flight: bool,
}

impl Batch {
    /// Nothing after `position`, for now.
    pub fn empty(position: Position) -> Batch {
        Batch { messages: Vec::new(), gap: None, position, in_flight: false }
    }

    /// Nothing yet: the answer is on its way and the reader will be woken (see `in_flight`).
    pub fn in_flight(position: Position) -> Batch {
        Batch { in_flight: true, ..Batch::empty(position) }
    }
}

/// Who is reading: the subscriber key of its connection and the wake-up to ring when an answer
/// the broker had to fetch has landed ([`Batch::in_flight`]).
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    pub subscriber: u64,
    pub wake: &'a Wake,
}

/// Messages were owed but have left the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The cursor the reader asked with.
    pub since: String,
    /// The oldest id still retained, where the replay resumes (None: the log is empty).
    pub oldest: Option<String>,
}

/// What a broker holds now (`/stats`, `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Channels held (on a Redis node: mirrors).
    pub channels: usize,
    /// Bytes of envelopes their histories retain: what the history costs, give or take a few
    /// dozen bytes of bookkeeping per message.
    pub retained_bytes: usize,
}

/// The Redis broker's command link and subscription, as `/stats` and `/metrics` show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections in the link, and how many are up (accepting commands).
    pub connections: usize,
    pub connections_up: usize,
    /// Connections (re)opened after the first.
    pub reconnects: u64,
    /// Commands sent and not yet answered. A publish counts as one command, also when it goes
    /// to Redis in one call of the publish script with others (`redis::publish_batch`).
    pub in_flight: u64,
    /// Commands accepted, answered, and failed (the connection died, timed out, or was down).
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
    /// Sum and maximum of the time from queueing a command to its reply, in microseconds.
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
    /// Channels the subscription connection is subscribed to (one `SUBSCRIBE` per channel a
    /// local subscriber follows, kept for a linger after the last one leaves).
    pub channels_subscribed: usize,
    /// Pub/sub messages received: what the backplane costs this node.
    pub pubsub_messages: u64,
    /// Channel subscriptions Redis confirmed (resubscriptions after a reconnection included),
    /// and those that ended: unsubscribed, asked to or not (a cluster slot moved), or lost with
    /// their connection. Their churn; the first less the second is `channels_subscribed` once
    /// every confirmed channel is caught up.
    pub channel_subscribes: u64,
    pub channel_unsubscribes: u64,
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

    /// What the broker holds now: a look at every channel, so for `/stats`, not hot paths.
    fn usage(&self) -> Usage;

    /// Appends `text` to `channel` and wakes its subscribers. `now` stamps the message (the
    /// memory broker; Redis uses its own clock) and restarts the channel's idle time.
    ///
    /// The answer is a [`Pending`]: ready at once on the memory broker, filled by the link's
    /// thread when Redis answers on the Redis broker (the caller polls it with its wake and
    /// is woken then). The caller never waits on a socket.
    fn publish(&self, channel: &str, text: &str, now: Now) -> Pending<Arc<Message>>;

    /// Interprets a client's cursor (`?since=`, `Last-Event-ID`).
    fn parse_cursor(&self, cursor: &str) -> Result<Since, BrokerError>;

    /// The position just after the newest message: where "only what arrives from now on"
    /// starts. `Pending` while the broker asks for it (a Redis channel this node does not
    /// mirror yet): the reader is woken when the answer lands and asks again.
    fn tail(&self, channel: &str, reader: Reader<'_>) -> Poll<Position>;

    /// The id text of a position (the cursor a client should send back to resume from it).
    fn cursor(&self, position: Position) -> String;

    /// Up to `max` messages after `since`, oldest first; or, while the broker fetches them,
    /// an [`in_flight`](Batch::in_flight) batch and a wake-up of `reader` when they land.
    fn read(&self, channel: &str, since: &Since, max: usize, reader: Reader<'_>) -> Batch;

    /// Forgets whatever the broker is fetching for `subscriber` on `channel` (the reader moved
    /// on or went away): at most one fetch per reader is kept, and none past its reader.
    fn forget(&self, _channel: &str, _subscriber: u64) {}

    /// How the broker's link to its backing store is doing (`/stats`, `/metrics`); `None`
    /// for a broker without one.
    fn link_stats(&self) -> Option<LinkStats> {
        None
    }

    /// Registers `wake` to be woken on every publish to `channel` until unsubscribed.
    /// `subscriber` is a key unique per connection; subscribing again replaces the wake.
    /// A channel with a subscriber is never reclaimed.
    ///
    /// Returns the channel's name as the broker keeps it, for the subscriber to keep instead
    /// of a copy of its own: one allocation per channel rather than one per subscriber (32
    /// bytes of every idle connection; README, "What an idle connection costs").
    fn subscribe(&self, channel: &str, subscriber: u64, wake: &Wake, now: Instant) -> Arc<str>;

    /// Removes the wake. When the channel's last subscriber leaves at `now`, its idle time
    /// starts: a reader that is only reconnecting finds the channel still there.
    fn unsubscribe(&self, channel: &str, subscriber: u64, now: Instant);

    /// Whether the broker can serve publishes and subscriptions now, for `/readyz`: a load
    /// balancer sends new clients elsewhere while it cannot. Cheap and never blocking. The
    /// memory broker always can (this default); a Redis node while it is connected.
    fn is_ready(&self) -> bool {
        true
    }
}

/// The text of a message, read back from its envelope (tests only: nothing on a delivery path
/// needs the text apart from the envelope).
#[cfg(test)]
pub(crate) fn text(message: &Message) -> String {
    let envelope = json::parse(message.envelope()).unwrap_or(json::Value::Null);
    envelope.get("text").and_then(json::Value::as_str).unwrap_or_default().to_string()
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
    fn zero_on_redis_is_0_0_the_position_before_a_streams_first_entry() {
        // (The memory broker's `0` is tested in `memory`.) A Redis broker whose Redis refuses connections: it starts anyway (and keeps
        // retrying), and reading a cursor asks nothing of Redis.
        let refused = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap();
        let url = redis::RedisUrl::parse(&format!("redis://{refused}")).unwrap();
        let redis = redis::RedisBroker::start(url, Limits::default(), Duration::from_millis(100), 1).unwrap();
        assert_eq!(redis.parse_cursor("0"), redis.parse_cursor("0-0"));
        assert_eq!(redis.parse_cursor("0"), Ok(Since::After(Position::new(0))));
        for bad in ["00", "-0", "0-", "+0"] {
            assert_eq!(redis.parse_cursor(bad), Err(BrokerError::BadCursor), "{bad:?}");
        }
    }

    #[test]
    fn the_envelope_is_the_same_json_on_every_transport() {
        let message = Message::new("k3f9-17", Position::new(17), "Hi \"you\"\n", 1_678_900_000_123);
        assert_eq!(message.envelope(), r#"{"id":"k3f9-17","text":"Hi \"you\"\u000a","time":1678900000123}"#);
    }

    #[test]
    fn an_envelope_is_one_line_whatever_control_characters_the_text_holds() {
        let every_control: String = (0u8..0x20).map(char::from).chain(['\u{7f}', '\u{2028}']).collect();
        let message = Message::new("k3f9-1", Position::new(1), &format!("a\r\nb{every_control}"), 0);
        assert!(!message.envelope().contains(['\r', '\n', '\0']), "{}", message.envelope());
        assert_eq!(text(&message), format!("a\r\nb{every_control}"), "and the text comes back from it");
    }

    #[test]
    fn limits_are_sanitized_to_at_least_one_message_and_channel_and_at_most_a_day() {
        let limits = Limits {
            history: History { messages: 0, bytes: 0 },
            max_channels: 0,
            channel_ttl: Duration::from_secs(u64::MAX),
        };
        let sanitized = limits.sanitized();
        assert_eq!((sanitized.history.messages, sanitized.max_channels), (1, 1));
        assert_eq!(sanitized.channel_ttl, MAX_CHANNEL_TTL);
    }
}
