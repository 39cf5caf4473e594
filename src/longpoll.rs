//! HTTP long polling: an ordinary request that the server answers late.
//!
//! Plain polling asks "anything new?" every few seconds and is mostly told "no". Long polling
//! asks once and the server *holds the question* until it has an answer. Five steps, and where
//! each happens in this crate:
//!
//! 1. **The client asks**: `GET /poll/{channel}?since=ID&timeout=S`. The request is parsed by
//!    [`crate::http::request`], routed by [`crate::app::App::handle`], and its query read by
//!    [`PollQuery::parse`]. `since` is the id of the last message the client has; without it
//!    the client wants only what arrives from now on.
//! 2. **Nothing new, so the server waits**: [`LongPoll::poll`] finds no message after the
//!    cursor, registers the connection's wake with the broker and returns `Pending`. Under the
//!    thread-per-connection model a whole OS thread now sleeps in `park_timeout`; under the
//!    event loop the request is one entry in a table plus a timer.
//! 3. **A message arrives**: `POST /publish/{channel}` appends to the channel's log and the
//!    broker wakes every registered wake ([`crate::broker::Broker::publish`]).
//! 4. **The server answers**: the woken connection calls [`LongPoll::poll`] again, which now
//!    reads the messages after the cursor and answers `200` with
//!    `{"messages":[...],"cursor":"ID"}` ([`answer_body`]). If nothing arrives
//!    before the timeout, the answer is `{"messages":[],...}` with the same cursor.
//! 5. **The client asks again** at once with `since=` the returned cursor. Messages published
//!    between two polls wait in the channel's history, so the client misses nothing, and if it
//!    ever falls further behind than the history reaches, the answer says `"gap":true`.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::broker::{Batch, Broker, Message, Reader, Since};
use crate::config::MAX_POLL_TIMEOUT;
use crate::http::{self, BadQuery};
use crate::json;
use crate::subscription::Subscription;
use crate::time::Instant;
use crate::wake::Wake;

/// Most messages in one answer. A client that is further behind gets the rest on its next
/// poll, which it sends at once (step 5).
pub const MAX_MESSAGES_PER_ANSWER: usize = 1000;

/// Soft limit on the size of one answer's messages: once passed, the answer is sent and the
/// client polls again for the rest. Keeps one answer from holding megabytes in memory.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The query of a poll request: `since=ID&timeout=S`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollQuery {
    pub since: Option<String>,
    pub timeout: Duration,
}

impl PollQuery {
    /// Reads `since` and `timeout` (whole seconds, capped at [`MAX_POLL_TIMEOUT`]; `0` answers
    /// at once, which is plain polling). The error is the 400 response text.
    pub fn parse(query: Option<&str>, default_timeout: Duration) -> Result<PollQuery, &'static str> {
        let since = http::query_param(query, "since").map_err(|BadQuery| "malformed since parameter")?;
        let timeout = match http::query_param(query, "timeout").map_err(|BadQuery| "malformed timeout parameter")? {
            None => default_timeout,
            Some(text) if !text.is_empty() && text.len() <= 6 && text.bytes().all(|b| b.is_ascii_digit()) => {
                // At most six digits, so the parse cannot overflow.
                Duration::from_secs(text.parse().unwrap_or(u64::MAX)).min(MAX_POLL_TIMEOUT)
            }
            Some(_) => return Err("timeout must be a whole number of seconds"),
        };
        Ok(PollQuery { since: since.filter(|s| !s.is_empty()), timeout })
    }
}

/// How long a poll whose broker read is in flight waits before it looks again, should the
/// wake-up never come. The broker's link answers or fails every command within
/// `--redis-timeout`, so the wake-up comes first; this only keeps a lost one from holding the
/// poll forever, and a deadline in the past from making a driver spin.
pub const IN_FLIGHT_RECHECK: Duration = Duration::from_secs(1);

/// One parked (or about to be parked) poll request.
#[derive(Debug)]
pub struct LongPoll {
    subscription: Subscription,
    /// When the poll answers "nothing new": the request's `timeout` after its arrival.
    deadline: Instant,
    /// When to look again at a broker read still in flight past `deadline`
    /// ([`IN_FLIGHT_RECHECK`]). Kept apart from `deadline`, which must not move: the read
    /// landing past the deadline is answered at once, never parked for the recheck's time.
    recheck: Option<Instant>,
    /// When the request arrived (wall clock, ms): messages published since are live ones,
    /// whose delivery latency `/metrics` records ([`crate::stats::Stats::batch_delivered`]).
    live_from_ms: u64,
}

impl LongPoll {
    /// `since: None` means "from now": the cursor is the channel's tail, resolved by the
    /// first poll. `live_from_ms` is the wall-clock time of the request's arrival.
    pub fn new(channel: &str, since: Option<Since>, deadline: Instant, live_from_ms: u64) -> LongPoll {
        LongPoll { subscription: Subscription::new(channel, since), deadline, recheck: None, live_from_ms }
    }

    /// When the request arrived, in milliseconds since the epoch.
    pub fn live_from_ms(&self) -> u64 {
        self.live_from_ms
    }

    /// When the driver must call [`LongPoll::poll`] again if nothing wakes it: the deadline,
    /// or the recheck of a read in flight past it.
    pub fn deadline(&self) -> Instant {
        self.recheck.unwrap_or(self.deadline)
    }

    /// Whether the poll waits for the broker (step 2).
    pub fn is_parked(&self) -> bool {
        self.subscription.is_registered()
    }

    /// Steps 2 to 4: answers when there are messages after the cursor (or a gap to report),
    /// when the deadline has passed, or when `give_up` (the server is shutting down);
    /// otherwise makes sure the broker will wake `wake` and returns `Pending`.
    ///
    /// While the broker fetches what the poll asked for ([`Batch::in_flight`]: the tail, or
    /// history older than a Redis node's mirror), the poll waits for it even past its deadline
    /// or when giving up: the answer is owed and lands within `--redis-timeout`, and without it
    /// there is no cursor to answer with.
    pub fn poll(
        &mut self,
        broker: &dyn Broker,
        subscriber: u64,
        wake: &Wake,
        now: Instant,
        give_up: bool,
    ) -> Poll<Answer> {
        let reader = Reader { subscriber, wake };
        let mut batch = self.subscription.read(broker, MAX_MESSAGES_PER_ANSWER, reader);
        if batch.in_flight {
            return self.wait_in_flight(now);
        }
        self.recheck = None;
        let nothing = |batch: &Batch| batch.messages.is_empty() && batch.gap.is_none();
        if nothing(&batch) && !give_up && now < self.deadline {
            if self.is_parked() {
                return Poll::Pending;
            }
            // Register first, then look again (see `crate::subscription`).
            self.subscription.register(broker, subscriber, wake, now);
            batch = self.subscription.read(broker, MAX_MESSAGES_PER_ANSWER, reader);
            if batch.in_flight {
                return self.wait_in_flight(now);
            }
            if nothing(&batch) {
                return Poll::Pending;
            }
        }
        self.cancel(broker, subscriber, now);
        if truncate_to_budget(&mut batch, MAX_ANSWER_BYTES) {
            self.subscription.rewind_to(batch.position);
        }
        let cursor = broker.cursor(batch.position);
        let body = answer_body(&batch, &cursor);
        Poll::Ready(Answer { body, delivered: batch.messages.len(), batch })
    }

    /// The broker will wake us when its fetch lands; past the deadline the driver looks again
    /// [`IN_FLIGHT_RECHECK`] from now, so that it does not wake up at once, again and again,
    /// for a deadline that cannot be acted on yet.
    fn wait_in_flight(&mut self, now: Instant) -> Poll<Answer> {
        if self.deadline <= now && self.recheck.is_none_or(|recheck| recheck <= now) {
            self.recheck = Some(now + IN_FLIGHT_RECHECK);
        }
        Poll::Pending
    }

    /// Stops waiting (answered, or the connection is going away) at `now`.
    pub fn cancel(&mut self, broker: &dyn Broker, subscriber: u64, now: Instant) {
        self.subscription.unregister(broker, subscriber, now);
    }
}

/// The `200` body for a poll, and how many messages it carries.
#[derive(Debug)]
pub struct Answer {
    pub body: String,
    pub delivered: usize,
    /// The messages and the gap the body carries, for the counters.
    pub batch: Batch,
}

/// Keeps the first messages whose envelopes fit in `budget` bytes (always at least one) and
/// moves the batch's position back to the last one kept; `true` if it cut anything.
fn truncate_to_budget(batch: &mut Batch, budget: usize) -> bool {
    let mut used = 0;
    let keep = batch
        .messages
        .iter()
        .position(|m| {
            used += m.envelope().len();
            used > budget
        })
        .map_or(batch.messages.len(), |over| over.max(1));
    if keep == batch.messages.len() {
        return false;
    }
    batch.messages.truncate(keep);
    batch.position = batch.messages[keep - 1].position;
    true
}

/// `{"messages":[...],"cursor":"ID"}`, plus `"gap":true` when messages the client was owed
/// have left the history.
///
/// Nothing else: a client pays for every member at every round trip, once per message in the
/// worst case (one message per poll). The server's clock is not repeated in the body: it is
/// in the head's `Date`, to the second (RFC 9110 §6.6.1: an origin server with a clock must
/// send it).
pub fn answer_body(batch: &Batch, cursor: &str) -> String {
    let size: usize = batch.messages.iter().map(|m| m.envelope().len() + 1).sum();
    let mut body = String::with_capacity(size + 80);
    body.push_str("{\"messages\":[");
    for (i, message) in batch.messages.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(Arc::<Message>::as_ref(message).envelope());
    }
    body.push_str("],\"cursor\":");
    json::write_string(&mut body, cursor);
    if batch.gap.is_some() {
        body.push_str(",\"gap\":true");
    }
    body.push('}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::memory::MemoryBroker;
    use crate::broker::{History, Limits, Position};
    use crate::time::Now;
    use crate::wake::WakeQueue;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A broker, a wake for the poll and the queue that shows whether it was woken.
    fn setup() -> (MemoryBroker, Wake, Arc<WakeQueue>, Instant) {
        let queue = WakeQueue::silent();
        (MemoryBroker::with_epoch("k3f9".into(), history(100)), queue.wake_for(0), queue, Instant::now())
    }

    /// Limits with a history of `messages` messages, however large.
    fn history(messages: usize) -> Limits {
        Limits { history: History { messages, bytes: usize::MAX }, ..Limits::default() }
    }

    /// Step 3: a message published on "ch".
    fn publish(broker: &MemoryBroker, text: &str) -> Arc<Message> {
        broker.publish_now("ch", text, Now { instant: Instant::now(), unix_ms: 1_678_900_000_123 }).unwrap()
    }

    #[test]
    fn query_defaults_and_caps() {
        let default = Duration::from_secs(30);
        assert_eq!(PollQuery::parse(None, default), Ok(PollQuery { since: None, timeout: default }));
        let q = PollQuery::parse(Some("since=k3f9-4&timeout=5"), default).unwrap();
        assert_eq!((q.since.as_deref(), q.timeout), (Some("k3f9-4"), Duration::from_secs(5)));
        assert_eq!(PollQuery::parse(Some("timeout=600"), default).unwrap().timeout, MAX_POLL_TIMEOUT);
        assert_eq!(PollQuery::parse(Some("timeout=0"), default).unwrap().timeout, Duration::ZERO);
        for bad in ["timeout=-1", "timeout=1.5", "timeout=", "timeout=9999999", "since=%zz"] {
            assert!(PollQuery::parse(Some(bad), default).is_err(), "{bad}");
        }
    }

    #[test]
    fn step_2_nothing_new_parks_and_registers_its_wake() {
        let (broker, wake, count, now) = setup();
        let mut poll = LongPoll::new("ch", None, now + Duration::from_secs(30), 0);
        assert!(poll.poll(&broker, 1, &wake, now, false).is_pending());
        assert!(poll.is_parked());
        publish(&broker, "Hi"); // step 3
        assert_eq!(count.woken(), [0]);
    }

    #[test]
    fn step_4_the_woken_poll_answers_with_the_message_and_its_cursor() {
        let (broker, wake, _, now) = setup();
        let mut poll = LongPoll::new("ch", None, now + Duration::from_secs(30), 0);
        assert!(poll.poll(&broker, 1, &wake, now, false).is_pending());
        let message = publish(&broker, "Hi");
        let Poll::Ready(answer) = poll.poll(&broker, 1, &wake, now, false) else {
            panic!("expected an answer");
        };
        assert_eq!(
            answer.body,
            format!(r#"{{"messages":[{{"id":"k3f9-1","text":"Hi","time":{}}}],"cursor":"k3f9-1"}}"#, message.time_ms)
        );
        assert_eq!(answer.delivered, 1);
        assert!(!poll.is_parked(), "answered polls unsubscribe");
    }

    #[test]
    fn messages_already_after_the_cursor_are_answered_at_once() {
        let (broker, wake, _, now) = setup();
        publish(&broker, "a");
        publish(&broker, "b");
        let since = broker.parse_cursor("k3f9-1").unwrap();
        let mut poll = LongPoll::new("ch", Some(since), now + Duration::from_secs(30), 0);
        let Poll::Ready(answer) = poll.poll(&broker, 1, &wake, now, false) else { panic!() };
        assert!(answer.body.contains(r#""text":"b""#) && !answer.body.contains(r#""text":"a""#));
        assert!(answer.body.contains(r#""cursor":"k3f9-2""#));
    }

    #[test]
    fn the_timeout_answers_an_empty_list_with_the_same_cursor() {
        let (broker, wake, _, now) = setup();
        publish(&broker, "old");
        let deadline = now + Duration::from_secs(30);
        let mut poll = LongPoll::new("ch", None, deadline, 0);
        assert!(poll.poll(&broker, 1, &wake, now, false).is_pending());
        let Poll::Ready(answer) = poll.poll(&broker, 1, &wake, deadline, false) else { panic!() };
        assert_eq!(answer.body, r#"{"messages":[],"cursor":"k3f9-1"}"#);
    }

    /// A memory broker that, like a Redis node on a cold read, has to fetch before it can
    /// answer: its reads are in flight until `landed`.
    struct Fetching {
        memory: MemoryBroker,
        landed: AtomicBool,
    }

    impl Broker for Fetching {
        fn kind(&self) -> &'static str {
            "fetching"
        }
        fn usage(&self) -> crate::broker::Usage {
            self.memory.usage()
        }
        fn publish(&self, channel: &str, text: &str, now: Now) -> crate::broker::Pending<Arc<Message>> {
            self.memory.publish(channel, text, now)
        }
        fn parse_cursor(&self, cursor: &str) -> Result<Since, crate::broker::BrokerError> {
            self.memory.parse_cursor(cursor)
        }
        fn tail(&self, channel: &str, reader: Reader<'_>) -> Poll<Position> {
            self.memory.tail(channel, reader)
        }
        fn cursor(&self, position: Position) -> String {
            self.memory.cursor(position)
        }
        fn read(&self, channel: &str, since: &Since, max: usize, reader: Reader<'_>) -> Batch {
            match self.landed.load(Ordering::SeqCst) {
                true => self.memory.read(channel, since, max, reader),
                false => Batch::in_flight(Position::new(0)),
            }
        }
        fn subscribe(&self, channel: &str, subscriber: u64, wake: &Wake, now: Instant) -> Arc<str> {
            self.memory.subscribe(channel, subscriber, wake, now)
        }
        fn unsubscribe(&self, channel: &str, subscriber: u64, now: Instant) {
            self.memory.unsubscribe(channel, subscriber, now)
        }
    }

    /// `timeout=0` where the broker must fetch first: the poll waits for the read, which the
    /// recheck only guards against a lost wake-up, and answers the moment it lands, even with
    /// nothing new. Parking it then would make `timeout=0` a one-second poll that subscribes.
    #[test]
    fn a_read_that_lands_past_the_deadline_is_answered_at_once_not_parked() {
        let (memory, wake, _, now) = setup();
        publish(&memory, "old");
        let broker = Fetching { memory, landed: AtomicBool::new(false) };
        let since = broker.parse_cursor("k3f9-1").unwrap();
        let mut poll = LongPoll::new("ch", Some(since), now, 0);
        assert!(poll.poll(&broker, 1, &wake, now, false).is_pending(), "the read is in flight");
        assert_eq!(poll.deadline(), now + IN_FLIGHT_RECHECK, "looked at again should the wake-up be lost");
        broker.landed.store(true, Ordering::SeqCst);
        let landed = now + Duration::from_millis(10);
        let Poll::Ready(answer) = poll.poll(&broker, 1, &wake, landed, false) else {
            panic!("a read landing past the deadline is answered");
        };
        assert_eq!(answer.body, r#"{"messages":[],"cursor":"k3f9-1"}"#);
        assert!(!poll.is_parked(), "it never subscribed");
    }

    #[test]
    fn shutting_down_answers_parked_polls() {
        let (broker, wake, _, now) = setup();
        let mut poll = LongPoll::new("ch", None, now + Duration::from_secs(30), 0);
        assert!(poll.poll(&broker, 1, &wake, now, false).is_pending());
        assert!(poll.poll(&broker, 1, &wake, now, true).is_ready());
    }

    #[test]
    fn a_cursor_older_than_the_history_answers_with_gap_true() {
        let broker = MemoryBroker::with_epoch("k3f9".into(), history(2));
        let (_, wake, _, now) = setup();
        for text in ["1", "2", "3"] {
            publish(&broker, text);
        }
        let since = broker.parse_cursor("k3f9-0").unwrap();
        let mut poll = LongPoll::new("ch", Some(since), now, 0);
        let Poll::Ready(answer) = poll.poll(&broker, 1, &wake, now, false) else { panic!() };
        assert!(answer.body.ends_with(r#","gap":true}"#), "{}", answer.body);
    }

    #[test]
    fn large_backlogs_are_split_across_answers() {
        let (broker, wake, _, now) = setup();
        let big = "x".repeat(MAX_ANSWER_BYTES / 2);
        for _ in 0..3 {
            publish(&broker, &big);
        }
        let mut poll = LongPoll::new("ch", Some(Since::After(Position::new(0))), now, 0);
        let Poll::Ready(answer) = poll.poll(&broker, 1, &wake, now, false) else { panic!() };
        assert_eq!(answer.delivered, 1);
        assert!(answer.body.contains(r#""cursor":"k3f9-1""#));
    }
}
