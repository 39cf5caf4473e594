//! Server-Sent Events against a real server, for every server model: the response head and the
//! event stream format (WHATWG HTML §9.2.3, §9.2.5, §9.2.6), keepalive comments (§9.2.7),
//! resuming with `Last-Event-ID` (§9.2.4) or `?since=`, gaps, content negotiation and origins
//! (RFC 9110), the end of a stream (RFC 9112), and the two guarantees the broker's pull design
//! exists for: a slow consumer loses nothing, and a reconnect has no seam.
//!
//! Each stream is read the way a browser reads it: the HTTP head, then the body de-chunked by
//! [`EventStream`] below (written independently of the crate's HTTP code), then the bytes fed
//! to the crate's WHATWG parser, [`EventStreamParser`], which `src/sse.rs` tests against the
//! spec's own examples.

mod common;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{each_model, read_response, read_until, HttpResponse, TestServer, PATIENCE};
use realtime::config::Config;
use realtime::json::Value;
use realtime::sse::{Event, EventStreamParser};

/// How an event stream's body ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The last-chunk, `0\r\n\r\n`: the server ended the response on purpose (RFC 9112 §7.1).
    LastChunk,
    /// The connection closed (EOF or reset), perhaps in the middle of a chunk.
    Closed,
}

/// One `text/event-stream` response, read incrementally: the head at once, then the body one
/// chunk at a time (HTTP/1.1) or one read at a time (HTTP/1.0, where the close ends the body),
/// each piece fed to the WHATWG parser as it arrives.
struct EventStream {
    head: HttpResponse,
    reader: BufReader<TcpStream>,
    chunked: bool,
    parser: EventStreamParser,
    /// Events parsed and not yet taken by the test.
    pending: VecDeque<Event>,
    /// The body as it arrived, without the chunk framing: one entry per chunk (HTTP/1.1) or
    /// per read (HTTP/1.0). What the raw checks look at.
    pieces: Vec<Vec<u8>>,
    end: Option<End>,
}

impl EventStream {
    /// `GET path` with `headers` on a new connection; the answer must be a stream (200).
    fn open(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> EventStream {
        EventStream::send(server, &request(server, path, headers))
    }

    /// Sends a raw request and reads the head of the stream that answers it.
    fn send(server: &TestServer, request: &str) -> EventStream {
        let mut stream = server.connect();
        stream.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut stream);
        assert_eq!(head.status, 200, "{request:?} was not answered with a stream: {:?}", head.headers);
        let chunked = head.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        EventStream {
            head,
            reader: BufReader::new(stream),
            chunked,
            parser: EventStreamParser::new(),
            pending: VecDeque::new(),
            pieces: Vec::new(),
            end: None,
        }
    }

    /// The next event, reading as much as it takes; `None` once the stream has ended.
    ///
    /// The socket's read timeout alone would not stop a test waiting for an event that never
    /// comes: keepalive comments arrive more often than `PATIENCE` and reset it.
    fn next_event(&mut self) -> Option<Event> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            assert!(Instant::now() < deadline, "no event arrived within {PATIENCE:?}");
            if !self.read_more() {
                return None;
            }
        }
    }

    /// The next `n` events; the stream must not end before them.
    fn take(&mut self, n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| self.next_event().unwrap_or_else(|| panic!("the stream ended after {i} of {n} events")))
            .collect()
    }

    /// Every event up to the end of the stream, and how it ended.
    fn rest(&mut self) -> (Vec<Event>, End) {
        let events = std::iter::from_fn(|| self.next_event()).collect();
        (events, self.end.expect("next_event returns None only at the end"))
    }

    /// Reads until `count` keepalive comments have arrived in all.
    fn wait_for_keepalives(&mut self, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.pieces.iter().filter(|piece| piece.starts_with(b": keepalive\n")).count() < count {
            assert!(Instant::now() < deadline, "no keepalive arrived within {PATIENCE:?}");
            assert!(self.read_more(), "the stream ended while waiting for a keepalive");
        }
    }

    /// The body so far, de-chunked.
    fn body(&self) -> Vec<u8> {
        self.pieces.concat()
    }

    /// Reads the next piece of the body and parses it. `false` once the stream has ended.
    fn read_more(&mut self) -> bool {
        if self.end.is_some() {
            return false;
        }
        let piece = if self.chunked { self.read_chunk() } else { self.read_some() };
        let Some(piece) = piece else { return false };
        let mut events = Vec::new();
        self.parser.feed(&piece, &mut events).expect("the server's stream is within the parser's limits");
        self.pending.extend(events);
        self.pieces.push(piece);
        true
    }

    /// RFC 9112 §7.1: `chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF`, and a
    /// `last-chunk` (size 0) followed by the trailer section ends the body.
    fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let mut size_line = Vec::new();
        let read = self.reader.read_until(b'\n', &mut size_line);
        if !read_ok(read) || !size_line.ends_with(b"\r\n") {
            return self.ended(End::Closed);
        }
        let size_text = std::str::from_utf8(&size_line[..size_line.len() - 2]).expect("a chunk size is ASCII");
        let size = usize::from_str_radix(size_text, 16).unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        if size == 0 {
            let mut trailer = Vec::new();
            let read = self.reader.read_until(b'\n', &mut trailer);
            assert!(read_ok(read), "the connection closed inside the last-chunk");
            assert_eq!(trailer, b"\r\n", "an SSE stream has no trailer fields");
            return self.ended(End::LastChunk);
        }
        let mut data = Vec::with_capacity(size + 2);
        let read = (&mut self.reader).take(size as u64 + 2).read_to_end(&mut data);
        if !read_ok(read) || data.len() < size + 2 {
            // A chunk cut short holds an event cut short: §9.2.6 discards it at the end of the
            // stream, and so do we, by never feeding it.
            return self.ended(End::Closed);
        }
        assert!(data.ends_with(b"\r\n"), "chunk-data must be followed by CRLF");
        data.truncate(size);
        Some(data)
    }

    /// HTTP/1.0: whatever one read returns; the close ends the body.
    fn read_some(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0; 64 * 1024];
        let read = self.reader.read(&mut buf);
        match read {
            Ok(n) if n > 0 => Some(buf[..n].to_vec()),
            other => {
                read_ok(other);
                self.ended(End::Closed)
            }
        }
    }

    fn ended(&mut self, end: End) -> Option<Vec<u8>> {
        self.end = Some(end);
        None
    }
}

/// `true` if a read succeeded; `false` if the peer reset the connection. A read timeout fails
/// the test: whatever it waited for did not come within `PATIENCE`.
fn read_ok<T>(read: io::Result<T>) -> bool {
    match read {
        Ok(_) => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("nothing more arrived on the stream within {PATIENCE:?}")
        }
        Err(_) => false,
    }
}

/// A GET request for `path` with extra header fields.
fn request(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", server.addr());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// A request that is not answered with a stream: its whole (length-delimited) response.
fn refused(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut stream = server.connect();
    let mut headers = headers.to_vec();
    headers.push(("Connection", "close"));
    stream.write_all(request(server, path, &headers).as_bytes()).unwrap();
    read_response(&mut stream, false).expect("a response")
}

/// Reads a response head, leaving the body unread.
fn read_head(stream: &mut TcpStream) -> HttpResponse {
    let head = read_until(stream, b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(head).expect("the head is ASCII");
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line has a colon");
            (name.to_string(), value.trim().to_string())
        })
        .collect();
    HttpResponse { status, headers, body: Vec::new() }
}

/// The envelope an event carries: `{"id":..,"text":..,"time":..}`.
fn envelope(event: &Event) -> Value {
    assert_eq!(event.event_type, "message", "expected a message, got {event:?}");
    realtime::json::parse(&event.data).unwrap_or_else(|e| panic!("{e}: {:?}", event.data))
}

fn text(event: &Event) -> String {
    envelope(event).get("text").and_then(Value::as_str).expect("a text").to_string()
}

/// The number a test message starts with (`"17"` or `"17 xxxx..."`).
fn number(event: &Event) -> usize {
    let text = text(event);
    text.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("not a numbered message: {text:?}"))
}

/// A publisher on one keep-alive connection, for tests that publish thousands of messages.
struct Publisher {
    stream: TcpStream,
}

impl Publisher {
    fn connect(addr: SocketAddr) -> Publisher {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        // Small writes without TCP_NODELAY meet Nagle's algorithm and delayed ACKs, which add
        // 40 ms to every request; so does a request written in several pieces.
        stream.set_nodelay(true).unwrap();
        Publisher { stream }
    }

    /// Publishes `text` and returns the new message's id.
    fn publish(&mut self, channel: &str, text: &str) -> String {
        let request =
            format!("POST /publish/{channel} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{text}", text.len());
        self.stream.write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut self.stream, false).unwrap();
        assert_eq!(response.status, 201, "publish failed: {}", response.text());
        response.json().get("id").and_then(Value::as_str).expect("an id").to_string()
    }
}

/// Like [`each_model`], for tests that shut the server down: the body owns the server.
fn each_model_until_shutdown(configure: impl Fn(&mut Config), body: impl Fn(TestServer)) {
    for &model in common::MODELS {
        eprintln!("--- model {}", model.name());
        body(TestServer::start(model, &configure));
    }
}

#[test]
fn whatwg_9_2_3_the_response_is_an_uncached_event_stream_that_starts_with_retry() {
    each_model(
        |_| {},
        |server| {
            let mut stream = EventStream::open(server, "/sse/head", &[]);
            // §9.2.3: only a 200 with `Content-Type: text/event-stream` is read as events.
            assert_eq!(stream.head.header("content-type"), Some("text/event-stream"));
            // §9.2.7: intermediaries must not cache or buffer the stream.
            assert_eq!(stream.head.header("cache-control"), Some("no-cache"));
            assert_eq!(stream.head.header("x-accel-buffering"), Some("no"));
            // RFC 9112 §6.1: an HTTP/1.1 stream is chunked, so that it can end cleanly.
            assert_eq!(stream.head.header("transfer-encoding"), Some("chunked"));
            assert_eq!(stream.head.header("content-length"), None);
            assert_eq!(stream.head.header("access-control-allow-origin"), None, "no Origin, no CORS");
            // §9.2.6: `retry` sets the reconnection time; the server sends it first.
            assert!(stream.read_more());
            assert_eq!(stream.pieces[0], b"retry:2000\n\n");
            assert_eq!(stream.parser.retry(), Some(2000));
            assert!(stream.pending.is_empty(), "retry dispatches no event");
        },
    );
}

#[test]
fn whatwg_9_2_6_each_message_is_one_event_with_its_id_type_and_envelope() {
    each_model(
        |_| {},
        |server| {
            let mut stream = EventStream::open(server, "/sse/ids", &[]);
            let ids: Vec<String> = ["one", "two", "three"].iter().map(|t| server.publish("ids", t)).collect();
            let events = stream.take(3);
            for ((event, id), expected) in events.iter().zip(&ids).zip(["one", "two", "three"]) {
                // `id:` sets the last event ID: what the client will resume from.
                assert_eq!(&*event.last_event_id, id.as_str());
                let envelope = envelope(event);
                assert_eq!(envelope.get("id").and_then(Value::as_str), Some(id.as_str()));
                assert_eq!(envelope.get("text").and_then(Value::as_str), Some(expected));
                assert!(envelope.get("time").and_then(Value::as_u64).is_some());
            }
            // One chunk per event, each a complete block: `id`, `data`, blank line. No `event:`
            // line (dispatch steps 5 and 6: the type is `message` unless one is given) and no
            // space after the colons (ids and envelopes never start with one): bytes every
            // subscriber would pay for every message.
            let id = &ids[0];
            let data = events[0].data.as_str();
            assert_eq!(stream.pieces[1], format!("id:{id}\ndata:{data}\n\n").into_bytes());
            assert_eq!(stream.pieces.len(), 4, "retry and three events");
        },
    );
}

#[test]
fn whatwg_9_2_6_a_text_with_cr_lf_and_crlf_arrives_intact_on_one_data_line() {
    each_model(
        |_| {},
        |server| {
            let mut stream = EventStream::open(server, "/sse/lines", &[]);
            let original = "one\rtwo\nthree\r\nfour\n";
            server.publish("lines", original);
            let event = stream.next_event().unwrap();
            // §9.2.6 cuts lines at CR, LF and CRLF and joins `data` lines with LF, so a raw text
            // would come back altered; the JSON envelope escapes the line breaks instead.
            assert_eq!(text(&event), original);
            let block = String::from_utf8(stream.pieces[1].clone()).unwrap();
            assert!(!block.contains('\r'), "{block:?}");
            assert_eq!(block.lines().filter(|line| line.starts_with("data:")).count(), 1, "{block:?}");
        },
    );
}

#[test]
fn whatwg_9_2_7_keepalive_comments_are_sent_and_dispatch_nothing() {
    each_model(
        |config| config.keepalive = Duration::from_millis(200),
        |server| {
            let mut stream = EventStream::open(server, "/sse/quiet", &[]);
            stream.wait_for_keepalives(1);
            assert!(stream.pending.is_empty(), "a comment is not an event");
            server.publish("quiet", "between");
            assert_eq!(text(&stream.next_event().unwrap()), "between");
            stream.wait_for_keepalives(2);
            assert!(stream.pending.is_empty(), "a comment is not an event");
        },
    );
}

#[test]
fn whatwg_9_2_4_last_event_id_replays_what_came_after_it_then_goes_live() {
    each_model(
        |_| {},
        |server| {
            let first = server.publish("resume", "one");
            server.publish("resume", "two");
            server.publish("resume", "three");
            let mut stream = EventStream::open(server, "/sse/resume", &[("Last-Event-ID", &first)]);
            assert_eq!(stream.take(2).iter().map(text).collect::<Vec<_>>(), ["two", "three"]);
            server.publish("resume", "four");
            assert_eq!(text(&stream.next_event().unwrap()), "four");
        },
    );
}

#[test]
fn since_query_replays_what_came_after_it_for_clients_that_cannot_set_headers() {
    each_model(
        |_| {},
        |server| {
            let first = server.publish("query", "one");
            server.publish("query", "two");
            let mut stream = EventStream::open(server, &format!("/sse/query?since={first}"), &[]);
            assert_eq!(text(&stream.next_event().unwrap()), "two");
            server.publish("query", "three");
            assert_eq!(text(&stream.next_event().unwrap()), "three");
        },
    );
}

#[test]
fn whatwg_9_2_4_last_event_id_wins_over_the_since_query() {
    each_model(
        |_| {},
        |server| {
            // A reconnecting EventSource keeps its URL (with the `since` it was first opened
            // with) and adds the header: the header is the newer cursor.
            let first = server.publish("both", "one");
            let second = server.publish("both", "two");
            server.publish("both", "three");
            let path = format!("/sse/both?since={second}");
            let mut stream = EventStream::open(server, &path, &[("Last-Event-ID", &first)]);
            assert_eq!(stream.take(2).iter().map(text).collect::<Vec<_>>(), ["two", "three"]);
        },
    );
}

#[test]
fn only_new_messages_without_a_cursor() {
    each_model(
        |_| {},
        |server| {
            server.publish("fresh", "old");
            let mut stream = EventStream::open(server, "/sse/fresh", &[]);
            server.publish("fresh", "new");
            assert_eq!(text(&stream.next_event().unwrap()), "new");
        },
    );
}

#[test]
fn a_cursor_older_than_the_history_gets_a_gap_event_then_what_is_retained() {
    each_model(
        |config| config.history = 3,
        |server| {
            let ids: Vec<String> = (1..=5).map(|i| server.publish("small", &i.to_string())).collect();
            let mut stream = EventStream::open(server, "/sse/small", &[("Last-Event-ID", &ids[0])]);
            let gap = stream.next_event().unwrap();
            assert_eq!(gap.event_type, "gap");
            let data = realtime::json::parse(&gap.data).unwrap();
            assert_eq!(data.get("since").and_then(Value::as_str), Some(ids[0].as_str()));
            assert_eq!(data.get("oldest").and_then(Value::as_str), Some(ids[2].as_str()));
            // The notice has no `id:`, so it does not move the client's resume cursor.
            assert!(!String::from_utf8_lossy(&stream.pieces[1]).contains("id:"));
            assert_eq!(stream.take(3).iter().map(text).collect::<Vec<_>>(), ["3", "4", "5"]);
        },
    );
}

#[test]
fn since_0_replays_everything_retained_with_a_gap_event_once_the_start_is_gone() {
    each_model(
        |config| config.history = 3,
        |server| {
            for text in ["a", "b"] {
                server.publish("whole", text);
            }
            let mut stream = EventStream::open(server, "/sse/whole?since=0", &[]);
            assert_eq!(stream.take(2).iter().map(text).collect::<Vec<_>>(), ["a", "b"], "no gap first");
            // The same from Last-Event-ID, which is where a browser's EventSource puts it.
            let mut stream = EventStream::open(server, "/sse/whole", &[("Last-Event-ID", "0")]);
            assert_eq!(stream.take(2).iter().map(text).collect::<Vec<_>>(), ["a", "b"]);

            let ids: Vec<String> = (1..=5).map(|i| server.publish("trimmed", &i.to_string())).collect();
            let mut stream = EventStream::open(server, "/sse/trimmed?since=0", &[]);
            let gap = stream.next_event().unwrap();
            assert_eq!(gap.event_type, "gap");
            let data = realtime::json::parse(&gap.data).unwrap();
            assert_eq!(data.get("oldest").and_then(Value::as_str), Some(ids[2].as_str()));
            assert_eq!(stream.take(3).iter().map(text).collect::<Vec<_>>(), ["3", "4", "5"]);
        },
    );
}

#[test]
fn a_cursor_from_another_epoch_gets_a_gap_event_then_the_whole_history() {
    each_model(
        |_| {},
        |server| {
            let id = server.publish("restart", "new life");
            // Ids are `{epoch}-{seq}`; another 4-character epoch is a cursor from before a restart.
            let foreign = if id.starts_with("zzzz") { "yyyy-41" } else { "zzzz-41" };
            let mut stream = EventStream::open(server, "/sse/restart", &[("Last-Event-ID", foreign)]);
            let gap = stream.next_event().unwrap();
            assert_eq!(gap.event_type, "gap");
            let data = realtime::json::parse(&gap.data).unwrap();
            assert_eq!(data.get("since").and_then(Value::as_str), Some(foreign));
            assert_eq!(data.get("oldest").and_then(Value::as_str), Some(id.as_str()));
            assert_eq!(text(&stream.next_event().unwrap()), "new life");
        },
    );
}

#[test]
fn rfc9110_15_5_1_malformed_cursors_are_400() {
    each_model(
        |_| {},
        |server| {
            for cursor in ["nonsense", "abcd-x1", "toolong-1", "ABCD-1", "abcd-+1"] {
                let response = refused(server, "/sse/c", &[("Last-Event-ID", cursor)]);
                assert_eq!(response.status, 400, "Last-Event-ID: {cursor}");
                let response = refused(server, &format!("/sse/c?since={cursor}"), &[]);
                assert_eq!(response.status, 400, "?since={cursor}");
            }
            assert_eq!(refused(server, "/sse/c?since=%zz", &[]).status, 400);
        },
    );
}

#[test]
fn rfc9112_6_3_an_http10_stream_is_not_chunked_and_ends_with_the_connection() {
    each_model_until_shutdown(
        |config| config.sse_retry = Duration::from_millis(750),
        |server| {
            // HTTP/1.0 has no chunked coding: the body runs until the server closes.
            let mut stream = EventStream::send(&server, "GET /sse/old HTTP/1.0\r\n\r\n");
            assert_eq!(stream.head.header("connection"), Some("close"));
            assert_eq!(stream.head.header("transfer-encoding"), None);
            assert_eq!(stream.head.header("content-length"), None);
            let id = server.publish("old", "over 1.0");
            let event = stream.next_event().unwrap();
            assert_eq!((text(&event), &*event.last_event_id), ("over 1.0".to_string(), id.as_str()));
            assert_eq!(stream.parser.retry(), Some(750));
            let stopper = thread::spawn(move || server.server.stop());
            let (rest, end) = stream.rest();
            assert_eq!((rest.len(), end), (0, End::Closed));
            // No chunk sizes and no last-chunk anywhere: the raw body is blocks only.
            let body = String::from_utf8(stream.body()).unwrap();
            assert!(body.starts_with("retry:750\n\nid:"), "{body:?}");
            assert!(body.ends_with("}\n\n"), "{body:?}");
            stopper.join().unwrap().unwrap();
        },
    );
}

#[test]
fn rfc9110_15_5_7_an_accept_that_excludes_text_event_stream_is_406() {
    each_model(
        |_| {},
        |server| {
            for accept in ["application/json", "text/event-stream;q=0", "text/html, application/json", "*/*;q=0"] {
                assert_eq!(refused(server, "/sse/neg", &[("Accept", accept)]).status, 406, "Accept: {accept}");
            }
        },
    );
}

#[test]
fn rfc9110_12_5_1_accept_event_stream_wildcards_or_none_get_the_stream() {
    each_model(
        |_| {},
        |server| {
            // §9.2.3: an EventSource sends `Accept: text/event-stream`.
            let accepts: [&[(&str, &str)]; 5] = [
                &[("Accept", "text/event-stream")],
                &[("Accept", "*/*")],
                &[("Accept", "text/*")],
                &[("Accept", "application/json, text/event-stream")],
                &[],
            ];
            for headers in accepts {
                let stream = EventStream::open(server, "/sse/neg", headers);
                assert_eq!(stream.head.header("content-type"), Some("text/event-stream"), "{headers:?}");
            }
        },
    );
}

#[test]
fn rfc6454_an_origin_from_another_site_is_403_and_the_same_origin_is_served() {
    each_model(
        |_| {},
        |server| {
            // A page elsewhere could read the stream with the user's cookies (the threat of
            // RFC 6455 §10.2, which applies as much to an event stream).
            for origin in ["http://evil.example", "http://127.0.0.1:1", "null"] {
                assert_eq!(refused(server, "/sse/o", &[("Origin", origin)]).status, 403, "Origin: {origin}");
            }
            // RFC 6454 §5: same scheme, host and port as the request's `Host` is the same origin.
            let same = format!("http://{}", server.addr());
            let stream = EventStream::open(server, "/sse/o", &[("Origin", &same)]);
            // The answer depended on `Origin`: caches must key on it (RFC 9110 §12.5.5).
            assert_eq!(stream.head.header("vary"), Some("Origin"));
        },
    );
}

#[test]
fn fetch_cors_an_allowed_origin_is_served_with_access_control_allow_origin() {
    each_model(
        |config| config.allowed_origins = vec!["https://app.example".into()],
        |server| {
            let stream = EventStream::open(server, "/sse/cors", &[("Origin", "https://app.example")]);
            assert_eq!(stream.head.header("access-control-allow-origin"), Some("https://app.example"));
            // RFC 9110 §12.5.5: the answer depends on `Origin`, so caches must key on it.
            assert_eq!(stream.head.header("vary"), Some("Origin"));
            assert_eq!(refused(server, "/sse/cors", &[("Origin", "https://other.example")]).status, 403);
        },
    );
}

#[test]
fn rfc9112_7_1_graceful_shutdown_ends_a_stream_with_the_last_chunk() {
    each_model_until_shutdown(
        |_| {},
        |server| {
            let mut stream = EventStream::open(&server, "/sse/bye", &[]);
            server.publish("bye", "last words");
            assert_eq!(text(&stream.next_event().unwrap()), "last words");
            let stopper = thread::spawn(move || server.server.stop());
            // A clean end, not a broken connection: EventSource reconnects after `retry`.
            assert_eq!(stream.rest(), (Vec::new(), End::LastChunk));
            assert!(common::is_closed(stream.reader.get_mut()));
            stopper.join().unwrap().unwrap();
        },
    );
}

#[test]
fn stats_count_open_streams() {
    each_model(
        // A client that leaves is noticed when a write to it fails: keepalives make that soon.
        |config| config.keepalive = Duration::from_millis(100),
        |server| {
            let app = server.server.app().clone();
            let streams: Vec<EventStream> = (0..3).map(|_| EventStream::open(server, "/sse/counted", &[])).collect();
            assert_eq!(app.stats.snapshot().open[1], 3);
            let stats = server.get("/stats").json();
            let sse = stats.get("connections").and_then(|c| c.get("sse")).and_then(Value::as_u64);
            assert_eq!(sse, Some(3));
            drop(streams);
            common::eventually("closed streams stop counting", || app.stats.snapshot().open[1] == 0);
        },
    );
}

#[test]
fn a_slow_consumer_is_disconnected_and_resumes_without_loss() {
    const COUNT: usize = 2000;
    each_model(
        |config| {
            config.max_outbound_bytes = 16 * 1024;
            config.send_timeout = Duration::from_millis(500);
            config.history = 20_000;
            config.history_bytes = 64 << 20;
        },
        |server| {
            let start = server.publish("flood", "start");
            let mut stream = EventStream::open(server, &format!("/sse/flood?since={start}"), &[]);
            // 4 KiB texts, 8 MiB in all: more than the socket buffers between a client that
            // reads nothing and the server can hold, so the server's writes stall.
            let padding = "x".repeat(4 * 1024);
            let mut publisher = Publisher::connect(server.addr());
            for i in 0..COUNT {
                publisher.publish("flood", &format!("{i} {padding}"));
            }
            let app = server.server.app().clone();
            common::eventually("the server drops the slow consumer", || app.stats.snapshot().open[1] == 0);
            assert_eq!(app.stats.snapshot().slow_consumers, 1, "dropped as a slow consumer, counted once");
            // Read what was delivered before the disconnection, then resume from the last id.
            let (events, end) = stream.rest();
            assert_eq!(end, End::Closed, "a slow consumer is cut off, not ended cleanly");
            let mut received: Vec<usize> = events.iter().map(number).collect();
            let cursor = events.last().map_or(start, |event| event.last_event_id.to_string());
            let mut stream = EventStream::open(server, "/sse/flood", &[("Last-Event-ID", &cursor)]);
            received.extend(stream.take(COUNT - received.len()).iter().map(number));
            assert_eq!(received, (0..COUNT).collect::<Vec<_>>());
        },
    );
}

#[test]
fn whatwg_9_2_4_twenty_reconnects_during_a_firehose_have_no_seam() {
    const COUNT: usize = 3000;
    const RECONNECTS: usize = 20;
    each_model(
        |config| config.history = 2 * COUNT,
        |server| {
            let start = server.publish("seam", "start");
            let addr = server.addr();
            let publisher = thread::spawn(move || {
                let mut publisher = Publisher::connect(addr);
                for i in 0..COUNT {
                    publisher.publish("seam", &i.to_string());
                }
            });
            let mut received = Vec::with_capacity(COUNT);
            let mut cursor = start;
            for round in 0..RECONNECTS {
                // A few events, then the connection drops mid-stream; the client resumes with the
                // last event ID it saw dispatched, as an EventSource does.
                let mut stream = EventStream::open(server, "/sse/seam", &[("Last-Event-ID", &cursor)]);
                for event in stream.take(1 + round % 5) {
                    received.push(number(&event));
                    cursor = event.last_event_id.to_string();
                }
            }
            let mut stream = EventStream::open(server, "/sse/seam", &[("Last-Event-ID", &cursor)]);
            while received.len() < COUNT {
                received.push(number(&stream.next_event().expect("the stream stays open")));
            }
            publisher.join().unwrap();
            assert_eq!(received, (0..COUNT).collect::<Vec<_>>());
        },
    );
}
