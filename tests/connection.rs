//! [`Connection`] tested the way smoltcp tests its sockets: no socket, no thread, no sleeping.
//! Bytes and made-up times go in; bytes, the connection's state and its next deadline come
//! out. Every rule about time (the header timeout, keep-alive, long-poll deadlines, keepalive
//! comments, the slow-consumer close and its grace, shutdown) is checked at the exact tick it
//! applies and one tick before.
//!
//! The drivers (`server::threads`, `server::event_loop`) only carry out what these decisions
//! say, so what is tested here holds for both.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use realtime::app::App;
use realtime::broker::memory::MemoryBroker;
use realtime::broker::{Batch, Broker, BrokerError, Completer, Message, Pending, Position, Reader, Since, Usage};
use realtime::config::Config;
use realtime::connection::{Connection, Waiting};
use realtime::time::{Instant, Now};
use realtime::wake::{Wake, WakeQueue};
use realtime::ws::frame::{encode_frame, Opcode};
use realtime::ws::session::{Event as WsEvent, Session};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
const TICK: Duration = Duration::from_millis(1);

/// One connection, its app, and a clock that only moves when the test says so.
struct Harness {
    app: Arc<App>,
    connection: Connection,
    /// The connection's wake-up queue, taken before every turn as a server's is.
    woken: Arc<WakeQueue>,
    wake: Wake,
    /// How many times its bell rang: the wake-ups of the connection.
    wakes: Arc<AtomicUsize>,
    t0: Instant,
    unix_ms0: u64,
}

impl Harness {
    fn new(configure: impl Fn(&mut Config)) -> Harness {
        Harness::with_broker(configure, |config| {
            Arc::new(MemoryBroker::with_epoch("test".into(), config.broker_limits()))
        })
    }

    fn with_broker(configure: impl Fn(&mut Config), broker: impl Fn(&Config) -> Arc<dyn Broker>) -> Harness {
        let mut config = Config::default();
        configure(&mut config);
        let broker = broker(&config);
        let app = Arc::new(App::new(config, broker));
        let (t0, unix_ms0) = (Instant::now(), 1_700_000_000_000);
        let connection = Connection::new(app.clone(), CLIENT, Now { instant: t0, unix_ms: unix_ms0 });
        let wakes = Arc::new(AtomicUsize::new(0));
        let rings = wakes.clone();
        let woken = WakeQueue::new(move || {
            rings.fetch_add(1, Ordering::SeqCst);
        });
        Harness { app, connection, wake: woken.wake_for(0), woken, wakes, t0, unix_ms0 }
    }

    fn at(&self, after: Duration) -> Now {
        Now { instant: self.t0 + after, unix_ms: self.unix_ms0 + after.as_millis() as u64 }
    }

    /// The client's bytes arrive at `after`; the connection advances.
    fn send(&mut self, bytes: &[u8], after: Duration) {
        self.connection.receive(bytes);
        self.advance(after);
    }

    fn advance(&mut self, after: Duration) {
        let now = self.at(after);
        self.woken.take(&mut Vec::new());
        self.connection.advance(now, &self.wake);
    }

    /// Everything the connection queued, taken by the client at `after`.
    fn take(&mut self, after: Duration) -> Vec<u8> {
        let output = self.connection.output().to_vec();
        self.connection.consume_output(output.len(), self.t0 + after);
        output
    }

    fn take_text(&mut self, after: Duration) -> String {
        String::from_utf8_lossy(&self.take(after)).into_owned()
    }

    fn deadline(&self) -> Option<Duration> {
        self.connection.next_deadline().map(|d| d - self.t0)
    }

    fn publish(&self, channel: &str, text: &str, after: Duration) {
        let mut published = self.app.broker.publish(channel, text, self.at(after));
        assert!(matches!(published.poll(&self.wake), std::task::Poll::Ready(Ok(_))), "publish");
    }
}

/// A broker whose publishes stay unanswered until the test answers them, as a Redis that is
/// slow or hung leaves them; everything else is the memory broker's.
struct Unanswered {
    memory: MemoryBroker,
    publishes: Mutex<Vec<(String, Completer<Arc<Message>>)>>,
    /// While `Some`, `tail` is `Pending`, as on a Redis node that must ask Redis for a channel
    /// it does not mirror; the readers asking wait here.
    tail_asked: Mutex<Option<Vec<Wake>>>,
}

impl Unanswered {
    fn new() -> Arc<Unanswered> {
        Arc::new(Unanswered {
            memory: MemoryBroker::with_epoch("test".into(), Default::default()),
            publishes: Mutex::default(),
            tail_asked: Mutex::new(None),
        })
    }

    /// Like `new`, but nobody knows the tail until `tell_tail`.
    fn with_unknown_tail() -> Arc<Unanswered> {
        let broker = Unanswered::new();
        *broker.tail_asked.lock().unwrap() = Some(Vec::new());
        broker
    }

    /// The tail is known from now on: the readers that asked are woken.
    fn tell_tail(&self) {
        for wake in self.tail_asked.lock().unwrap().take().unwrap_or_default() {
            wake.wake();
        }
    }

    /// Answers the oldest publish as the memory broker would.
    fn answer(&self, now: Now) {
        let (text, completer) = self.publishes.lock().unwrap().remove(0);
        completer.complete(self.memory.publish_now("ch", &text, now));
    }
}

impl Broker for Unanswered {
    fn kind(&self) -> &'static str {
        "unanswered"
    }
    fn usage(&self) -> Usage {
        Broker::usage(&self.memory)
    }
    fn publish(&self, _channel: &str, text: &str, _now: Now) -> Pending<Arc<Message>> {
        let (pending, completer) = Pending::later();
        self.publishes.lock().unwrap().push((text.to_string(), completer));
        pending
    }
    fn parse_cursor(&self, cursor: &str) -> Result<Since, BrokerError> {
        self.memory.parse_cursor(cursor)
    }
    fn tail(&self, channel: &str, reader: Reader<'_>) -> Poll<Position> {
        if let Some(asked) = self.tail_asked.lock().unwrap().as_mut() {
            asked.push(reader.wake.clone());
            return Poll::Pending;
        }
        self.memory.tail(channel, reader)
    }
    fn cursor(&self, position: Position) -> String {
        self.memory.cursor(position)
    }
    fn read(&self, channel: &str, since: &Since, max: usize, reader: Reader<'_>) -> Batch {
        self.memory.read(channel, since, max, reader)
    }
    fn subscribe(&self, channel: &str, subscriber: u64, wake: &Wake, now: Instant) -> Arc<str> {
        self.memory.subscribe(channel, subscriber, wake, now)
    }
    fn unsubscribe(&self, channel: &str, subscriber: u64, now: Instant) {
        self.memory.unsubscribe(channel, subscriber, now)
    }
}

const PUBLISH_HI: &[u8] = b"POST /publish/ch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";

#[test]
fn an_unanswered_publish_waits_for_the_broker_and_is_answered_503_with_retry_after_at_the_redis_timeout() {
    let broker = Unanswered::new();
    let shared = broker.clone();
    let mut h = Harness::with_broker(|config| config.redis_timeout = ms(500), move |_| shared.clone());
    h.send(PUBLISH_HI, ms(0));
    assert_eq!(h.connection.waiting_for(), Waiting::ForBroker);
    assert_eq!(h.deadline(), Some(ms(500)), "the deadline is --redis-timeout after the body");
    h.advance(ms(500) - TICK);
    assert!(h.take_text(ms(500)).is_empty(), "no answer one tick before");
    h.advance(ms(500));
    let answer = h.take_text(ms(500));
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("\r\nRetry-After: 1\r\n"), "{answer}");
    // The late answer is discarded; the connection serves the next request.
    broker.answer(h.at(ms(600)));
    assert_eq!(h.connection.waiting_for(), Waiting::ForInput);
}

#[test]
fn a_publish_answered_later_wakes_its_connection_and_gets_201() {
    let broker = Unanswered::new();
    let shared = broker.clone();
    let mut h = Harness::with_broker(|_| {}, move |_| shared.clone());
    h.send(PUBLISH_HI, ms(0));
    h.advance(ms(10));
    assert!(h.take_text(ms(10)).is_empty());
    broker.answer(h.at(ms(20)));
    assert_eq!(h.wakes.load(Ordering::SeqCst), 1, "the answer woke the connection");
    h.advance(ms(20));
    let answer = h.take_text(ms(20));
    assert_eq!(status_of(&answer), 201, "{answer}");
    assert!(answer.ends_with(r#"{"id":"test-1"}"#), "{answer}");
}

#[test]
fn a_stream_opens_only_once_its_start_is_known_so_what_its_client_then_publishes_is_delivered() {
    let broker = Unanswered::with_unknown_tail();
    let shared = broker.clone();
    let mut h = Harness::with_broker(|_| {}, move |_| shared.clone());
    h.send(b"GET /sse/ch HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", ms(0));
    assert!(h.take_text(ms(0)).is_empty(), "no head before the broker knows where the stream starts");
    assert_eq!(h.connection.waiting_for(), Waiting::ForBroker);
    broker.memory.publish_now("ch", "before the stream opened", h.at(ms(5))).unwrap();
    broker.tell_tail();
    assert_eq!(h.wakes.load(Ordering::SeqCst), 1, "the answer woke the connection");
    h.advance(ms(10));
    let head = h.take_text(ms(10));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("retry:"), "{head}");
    assert!(!head.contains("before the stream opened"), "only new messages: {head}");
    // The client saw the stream open, and publishes: that message is after the start.
    broker.memory.publish_now("ch", "after it opened", h.at(ms(20))).unwrap();
    h.advance(ms(20));
    assert!(h.take_text(ms(20)).contains(r#""text":"after it opened""#));
}

#[test]
fn a_client_that_leaves_a_stream_still_opening_is_closed_without_an_answer() {
    let broker = Unanswered::with_unknown_tail();
    let shared = broker.clone();
    let mut h = Harness::with_broker(|_| {}, move |_| shared.clone());
    h.send(b"GET /ws/ch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", ms(0));
    assert!(h.take_text(ms(0)).is_empty(), "no 101 before the start is known");
    h.connection.receive_eof();
    h.advance(ms(1));
    assert!(h.connection.is_finished());
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn status_of(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response:?}"))
}

// --- Waiting for a head ---------------------------------------------------------------------

#[test]
fn rfc9110_15_5_9_a_started_head_gets_408_exactly_at_the_header_timeout() {
    let mut h = Harness::new(|c| c.header_timeout = secs(10));
    h.send(b"GET /healthz HTTP/1.1\r\n", secs(2));
    assert_eq!(h.deadline(), Some(secs(10)), "counted from the accept, not from the first byte");
    h.advance(secs(10) - TICK);
    assert!(h.connection.output().is_empty(), "a tick before: still waiting");
    h.advance(secs(10));
    let answer = h.take_text(secs(10));
    assert_eq!(status_of(&answer), 408);
    assert!(answer.contains("Connection: close\r\n"));
    assert!(h.connection.is_finished());
}

#[test]
fn a_connection_that_sends_nothing_is_closed_silently_at_the_header_timeout() {
    let mut h = Harness::new(|c| c.header_timeout = secs(10));
    h.advance(secs(10) - TICK);
    assert!(!h.connection.is_finished());
    h.advance(secs(10));
    assert!(h.connection.output().is_empty(), "nothing was asked, nothing is answered");
    assert!(h.connection.is_finished());
}

#[test]
fn rfc9112_9_3_an_idle_keep_alive_connection_closes_at_the_idle_timeout() {
    let mut h = Harness::new(|c| c.idle_timeout = secs(60));
    h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", secs(1));
    assert_eq!(status_of(&h.take_text(secs(1))), 200);
    assert_eq!(h.deadline(), Some(secs(61)), "the idle timer starts at the response");
    h.advance(secs(61) - TICK);
    assert!(!h.connection.is_finished());
    h.advance(secs(61));
    assert!(h.connection.is_finished() && h.connection.output().is_empty());
}

#[test]
fn rfc9112_9_3_2_pipelined_requests_are_answered_in_order() {
    let mut h = Harness::new(|_| {});
    h.send(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /publish/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
          GET /poll/p?since=test-0&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n",
        ms(5),
    );
    let answers = h.take_text(ms(5));
    let statuses: Vec<u16> = answers.match_indices("HTTP/1.1 ").map(|(i, _)| status_of(&answers[i..])).collect();
    assert_eq!(statuses, [200, 404, 201, 200]);
    assert!(answers.ends_with(r#""text":"hi","time":1700000000005}],"cursor":"test-1"}"#), "{answers}");
}

#[test]
fn rfc9110_9_3_2_head_of_every_route_has_the_get_fields_and_no_content() {
    for path in ["/", "/healthz", "/stats", "/metrics", "/poll/h?timeout=0", "/sse/h"] {
        let mut h = Harness::new(|_| {});
        let request = format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
        h.send(request.as_bytes(), ms(1));
        let answer = h.take_text(ms(1));
        assert_eq!(status_of(&answer), 200, "{path}");
        assert!(answer.ends_with("\r\n\r\n"), "{path}: a head and nothing after it: {answer:?}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{path}");
        assert_eq!(h.connection.waiting_for(), Waiting::ForInput, "{path}: ready for the next request");
    }
}

// --- Long polling ------------------------------------------------------------------------------

#[test]
fn a_parked_poll_is_answered_by_a_publish_and_the_broker_wakes_it() {
    let mut h = Harness::new(|_| {});
    h.send(b"GET /poll/news?timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n", ms(10));
    assert!(h.connection.output().is_empty());
    assert_eq!(h.connection.waiting_for(), Waiting::ForBroker);
    assert_eq!(h.deadline(), Some(ms(10) + secs(30)), "the poll's own deadline");
    h.publish("news", "hello", ms(500));
    assert_eq!(h.wakes.load(Ordering::SeqCst), 1, "the publish woke the connection");
    h.advance(ms(500));
    let answer = h.take_text(ms(500));
    assert_eq!(status_of(&answer), 200);
    assert!(answer.contains(r#""text":"hello""#), "{answer}");
}

#[test]
fn a_parked_poll_answers_empty_exactly_at_its_deadline() {
    let mut h = Harness::new(|_| {});
    h.send(b"GET /poll/quiet?timeout=5 HTTP/1.1\r\nHost: x\r\n\r\n", secs(1));
    h.advance(secs(6) - TICK);
    assert!(h.connection.output().is_empty());
    h.advance(secs(6));
    let answer = h.take_text(secs(6));
    assert!(answer.contains(r#"{"messages":[],"cursor":"#), "{answer}");
}

// --- Server-Sent Events --------------------------------------------------------------------------

#[test]
fn whatwg_9_2_7_keepalive_comments_go_out_on_schedule() {
    let mut h = Harness::new(|c| c.keepalive = secs(15));
    h.send(b"GET /sse/k HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", secs(0));
    let head = h.take_text(secs(0));
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("retry:2000"), "{head}");
    assert_eq!(h.deadline(), Some(secs(15)));
    h.advance(secs(15) - TICK);
    assert!(h.connection.output().is_empty());
    h.advance(secs(15));
    assert_eq!(h.take_text(secs(15)), "d\r\n: keepalive\n\n\r\n", "one comment, in one chunk");
    assert_eq!(h.deadline(), Some(secs(30)));
}

#[test]
fn an_sse_stream_delivers_what_is_published_after_it_opened() {
    let mut h = Harness::new(|_| {});
    h.send(b"GET /sse/e HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", secs(0));
    h.take(secs(0));
    h.publish("e", "one", ms(100));
    h.advance(ms(100));
    let out = h.take(ms(100));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("id:test-1\ndata:{\"id\":\"test-1\",\"text\":\"one\""), "{text}");
}

// --- Slow consumers --------------------------------------------------------------------------------

#[test]
fn rfc6455_7_4_1_a_websocket_that_takes_nothing_gets_1008_then_a_grace_then_is_dropped() {
    let mut h = Harness::new(|c| {
        c.send_timeout = secs(10);
        c.max_outbound_bytes = 1024;
    });
    h.send(UPGRADE, secs(0));
    assert!(h.take_text(secs(0)).starts_with("HTTP/1.1 101"));
    h.publish("w", &"x".repeat(2000), secs(1));
    h.advance(secs(1));
    let queued = h.connection.output().len();
    assert!(queued > 2000);
    // The client takes nothing: the stall counts from the first turn with output waiting.
    assert_eq!(h.deadline(), Some(secs(11)));
    h.advance(secs(11) - TICK);
    assert_eq!(h.connection.output().len(), queued, "a tick before: nothing changes");
    h.advance(secs(11));
    let with_close = h.connection.output().to_vec();
    assert!(with_close.len() > queued, "a close frame queued behind the backlog");
    assert_eq!(close_code(&with_close), Some(1008), "the client that reads on finds why");
    assert!(!h.connection.is_finished(), "one more send timeout to read it");
    assert_eq!(h.deadline(), Some(secs(21)));
    h.advance(secs(21));
    assert!(h.connection.is_finished(), "it read nothing more: dropped with its output");
    assert!(h.connection.output().is_empty());
}

#[test]
fn an_sse_stream_that_takes_nothing_ends_at_the_send_timeout() {
    let mut h = Harness::new(|c| c.send_timeout = secs(10));
    h.send(b"GET /sse/slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", secs(0));
    h.advance(secs(10) - TICK);
    assert!(!h.connection.is_finished());
    h.advance(secs(10));
    assert!(h.connection.is_finished(), "the head was never taken: dropped");
}

// --- Shutdown and hang-ups -----------------------------------------------------------------------

#[test]
fn shutdown_answers_a_parked_poll_ends_a_stream_and_closes_a_websocket_with_1001() {
    let mut poll = Harness::new(|_| {});
    poll.send(b"GET /poll/s?timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n", secs(0));
    let mut sse = Harness::new(|_| {});
    sse.send(b"GET /sse/s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", secs(0));
    sse.take(secs(0));
    for h in [&mut poll, &mut sse] {
        h.app.begin_shutdown();
        h.advance(secs(1));
    }
    let answer = poll.take_text(secs(1));
    assert_eq!(status_of(&answer), 200);
    assert!(answer.contains("Connection: close"), "{answer}");
    assert_eq!(sse.take_text(secs(1)), "0\r\n\r\n", "the last chunk ends the stream cleanly");
    assert!(poll.connection.is_finished() && sse.connection.is_finished());
    // RFC 6455 §7.4.1: 1001 "indicates that an endpoint is "going away", such as a server
    // going down".
    let mut ws = Harness::new(|_| {});
    ws.send(UPGRADE, secs(0));
    ws.take(secs(0));
    ws.app.begin_shutdown();
    ws.advance(secs(1));
    assert_eq!(close_code(&ws.take(secs(1))), Some(1001));
    assert!(!ws.connection.is_finished(), "it waits for the client's Close (RFC 6455 §7.1.2)");
    // ... and for nothing else: a keepalive ping falling due meanwhile must not become a
    // deadline in the past, which a driver would spin on (found by the `connection` fuzz target).
    assert_eq!(ws.deadline(), Some(secs(1) + realtime::stream::CLOSE_HANDSHAKE_TIMEOUT));
    ws.advance(secs(5));
    assert!(ws.deadline().is_some_and(|d| d > secs(5)));
    ws.advance(secs(6));
    assert!(ws.connection.is_finished(), "no Close from the client within the wait: closed");
}

const UPGRADE: &[u8] = b"GET /ws/w HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The close code in the frames a server sent, read as a client would.
fn close_code(frames: &[u8]) -> Option<u16> {
    let mut client = Session::new_client(1 << 20, Box::new(|| [0; 4]));
    let mut bytes = frames.to_vec();
    loop {
        let mut replies = Vec::new();
        let (consumed, event) = client.receive(&mut bytes, &mut replies);
        bytes.drain(..consumed);
        match event {
            Some(WsEvent::Closed(info)) => return info.code.map(|c| c.0),
            None if consumed == 0 => return None,
            _ => {}
        }
    }
}

/// An idle connection holds no buffer: a buffer that empties is freed at once, unless it
/// emptied within the last second too (a busy connection keeps its buffers rather than
/// allocate them for every message), and then it is freed a second after it emptied.
#[test]
fn an_idle_websocket_holds_no_buffer_and_a_busy_one_keeps_its_own_for_a_second() {
    let mut ws = Harness::new(|_| {});
    ws.send(UPGRADE, ms(0));
    ws.take(ms(0));
    assert_eq!(ws.connection.buffer_capacity(), 0, "the handshake's request and answer are freed");
    let deliver = |ws: &mut Harness, text: &str, at: Duration| {
        ws.publish("w", text, at);
        ws.advance(at);
        assert!(!ws.take(at).is_empty(), "{text} delivered");
    };
    deliver(&mut ws, "quiet", ms(2000));
    assert_eq!(ws.connection.buffer_capacity(), 0, "a message after a quiet second: freed");
    deliver(&mut ws, "busy", ms(2100));
    assert!(ws.connection.buffer_capacity() > 0, "a second message within the second: kept");
    assert_eq!(ws.deadline(), Some(ms(3100)), "until a second after it emptied");
    ws.advance(ms(3099));
    assert!(ws.connection.buffer_capacity() > 0);
    ws.advance(ms(3100));
    assert_eq!(ws.connection.buffer_capacity(), 0);
}

/// The same for what a client sends: its input buffer, and the room the WebSocket keeps for
/// its next message, go when it goes quiet, by the same rule.
#[test]
fn a_websocket_that_stops_sending_keeps_no_room_for_its_next_message() {
    let mut ws = Harness::new(|_| {});
    ws.send(String::from_utf8_lossy(UPGRADE).replace("/ws/w", "/echo").as_bytes(), ms(0));
    ws.take(ms(0));
    let echo = |ws: &mut Harness, text: &str, at: Duration| {
        let mut frame = Vec::new();
        encode_frame(&mut frame, true, Opcode::Text, text.as_bytes(), Some([1, 2, 3, 4]));
        ws.send(&frame, at);
        assert!(!ws.take(at).is_empty(), "{text} echoed");
    };
    echo(&mut ws, "quiet", ms(2000));
    assert_eq!(ws.connection.buffer_capacity(), 0, "a message after a quiet second: nothing kept");
    echo(&mut ws, "busy", ms(2100));
    assert!(ws.connection.buffer_capacity() > 0, "a second message within the second: room kept");
    ws.advance(ms(3100));
    assert_eq!(ws.connection.buffer_capacity(), 0, "a second after: the room goes with the buffers");
}

#[test]
fn a_client_that_hangs_up_is_let_go_in_every_waiting_state() {
    let requests: [&[u8]; 4] = [
        b"GET /healthz HTTP/1.1\r\nHost",
        b"POST /publish/h HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        b"GET /poll/h?timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /sse/h HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
    ];
    for request in requests {
        let mut h = Harness::new(|_| {});
        h.send(request, ms(1));
        h.take(ms(1));
        h.connection.receive_eof();
        h.advance(ms(2));
        // Nothing more is waited for; whatever was queued (a poll's answer) goes, then the close.
        assert_eq!(h.connection.waiting_for(), Waiting::ForClose, "{:?}", String::from_utf8_lossy(request));
    }
    // A WebSocket whose peer leaves without a closing handshake.
    let mut h = Harness::new(|_| {});
    h.send(
        b"GET /ws/h HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ms(1),
    );
    h.take(ms(1));
    let mut frame = Vec::new();
    encode_frame(&mut frame, false, Opcode::Text, b"half", Some([1, 2, 3, 4]));
    h.connection.receive(&frame);
    h.connection.receive_eof();
    h.advance(ms(2));
    assert!(h.connection.is_finished());
}
