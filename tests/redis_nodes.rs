//! Several nodes over a real Redis (`--broker redis://...`), for every server model: a message
//! published on one node reaches subscribers on the other, clients switch nodes and resume
//! without loss, history and gaps come from the Redis stream, faults (Redis restarted, the
//! nodes' connections cut) lose nothing Redis stored, a hung Redis (SIGSTOP) holds up only the
//! requests that need it, many publishers pipelined on the link keep their order, nginx in
//! front (`examples/nginx.conf`) carries all three transports, a Redis with a password is
//! reached with the URL's credentials (and refused without them), and `/readyz` follows Redis.
//!
//! Each test starts its own `redis-server` on a free port (and `nginx`), and skips loudly when
//! the program is not installed (`common::external_program`; `.ci/run` installs both and makes
//! a skip a failure). Nodes run in this process, two or three per test, each with its own
//! connections to Redis, exactly as separate processes would.

mod common;

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::{free_port, read_response, scratch_dir, HttpResponse, TestServer, MODELS, PATIENCE};
use realtime::broker::redis::parse_stream_id;
use realtime::broker::resp::{self, Value};
use realtime::config::{BrokerUrl, Config, Model};
use realtime::json;
use realtime::sse::{Event, EventStreamParser};
use realtime::ws::client::Client;
use realtime::ws::message::Message;

/// A port nobody listens on right now (the OS picks it; a tiny race with other processes
/// remains, which `Redis::start` absorbs by trying again).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// `--save '' --appendonly no`: a restart loses every stream.
    None,
    /// `--appendonly yes --appendfsync always`: every acknowledged write survives a kill -9.
    AppendFsyncAlways,
}

/// A `redis-server` child process on a free port; killed when dropped.
struct Redis {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    /// `--requirepass`: clients must `AUTH` with it first.
    password: Option<String>,
    child: Option<Child>,
}

impl Redis {
    /// `None` (after a loud SKIP) when `redis-server` is not installed.
    fn start(persistence: Persistence) -> Option<Redis> {
        Redis::start_with_password(persistence, None)
    }

    /// A Redis that refuses every command until the connection authenticates with `password`.
    fn start_with_password(persistence: Persistence, password: Option<&str>) -> Option<Redis> {
        let binary = common::external_program("redis-server")?;
        let password = password.map(str::to_string);
        let mut redis = Redis { binary, port: 0, dir: scratch_dir("redis"), persistence, password, child: None };
        for _ in 0..5 {
            redis.port = free_port();
            if redis.spawn() {
                return Some(redis);
            }
        }
        panic!("redis-server did not start; see {}", redis.dir.join("redis.log").display());
    }

    /// Starts redis-server on `self.port` and waits until it answers PING; false if it
    /// exited (the port was taken).
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::options().create(true).append(true).open(self.dir.join("redis.log")).unwrap();
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        match self.persistence {
            Persistence::None => command.args(["--appendonly", "no"]),
            Persistence::AppendFsyncAlways => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let mut child = command.spawn().expect("spawn redis-server");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.try_command(&["PING"]).is_some_and(|v| v == Value::Simple("PONG".into())) {
                self.child = Some(child);
                return true;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The URL nodes connect with: with the server's password, percent-encoded, if it has one.
    fn url(&self) -> String {
        match &self.password {
            Some(password) => self.url_with_credentials("", password),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `redis://USER:PASSWORD@...` (`USER` may be empty: the default user), both
    /// percent-encoded (RFC 3986 §2.1) but for unreserved characters.
    fn url_with_credentials(&self, user: &str, password: &str) -> String {
        let encode = |text: &str| -> String {
            text.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        format!("redis://{}:{}@127.0.0.1:{}", encode(user), encode(password), self.port)
    }

    /// SIGSTOP: Redis hangs with its sockets open, as a frozen or partitioned host would. The
    /// guard sends SIGCONT when dropped, so a failing test leaves nothing stopped.
    fn hang(&self) -> Hung {
        let pid = self.child.as_ref().expect("a running redis-server").id();
        assert!(common::signal(pid, "STOP"), "kill -STOP {pid}");
        Hung { pid }
    }

    /// kill -9: no goodbye to the clients, no final save.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command on a fresh connection (so `CLIENT KILL` skips it), with the crate's codec.
    fn command(&self, args: &[&str]) -> Value {
        self.try_command(args).unwrap_or_else(|| panic!("redis-server did not answer {args:?}"))
    }

    /// The command's reply; on a Redis with a password, after `AUTH` in the same write.
    fn try_command(&self, args: &[&str]) -> Option<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(PATIENCE)).ok()?;
        let mut out = Vec::new();
        if let Some(password) = &self.password {
            resp::encode_command(&mut out, &[b"AUTH", password.as_bytes()]);
        }
        resp::encode_command(&mut out, &args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>());
        stream.write_all(&out).ok()?;
        let mut input = Vec::new();
        let mut replies_to_skip = usize::from(self.password.is_some());
        loop {
            while let Ok(Some((value, used))) = resp::decode(&input, &resp::Limits::default()) {
                if replies_to_skip == 0 {
                    return Some(value);
                }
                replies_to_skip -= 1;
                input.drain(..used);
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => input.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stopped redis-server, continued when dropped.
struct Hung {
    pid: u32,
}

impl Drop for Hung {
    fn drop(&mut self) {
        common::signal(self.pid, "CONT");
    }
}

/// A node of `model` on 127.0.0.1:0 whose broker is `redis`.
fn node(model: Model, redis: &Redis, configure: impl Fn(&mut Config)) -> TestServer {
    let url = redis.url();
    TestServer::start(model, &|config| {
        config.broker = BrokerUrl::parse(&url).expect("a Redis URL");
        configure(config);
    })
}

/// One request on a fresh connection to any address (a node or nginx).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream, false).expect("a response")
}

/// Publishes and returns the id (201 required).
fn publish(addr: SocketAddr, channel: &str, text: &str) -> String {
    let response = http(addr, "POST", &format!("/publish/{channel}"), Some(text));
    assert_eq!(response.status, 201, "publish on {addr}: {}", response.text());
    response.json().get("id").and_then(json::Value::as_str).expect("an id").to_string()
}

/// A delivered message: its id and text, from the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Delivered {
    id: String,
    text: String,
}

fn delivered(envelope: &json::Value) -> Delivered {
    let field =
        |name| envelope.get(name).and_then(json::Value::as_str).unwrap_or_else(|| panic!("{name} in {envelope:?}"));
    Delivered { id: field("id").to_string(), text: field("text").to_string() }
}

fn texts(messages: &[Delivered]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

/// Ids strictly increase: in stream order, nothing twice.
fn assert_in_stream_order(messages: &[Delivered]) {
    for pair in messages.windows(2) {
        let (a, b) = (parse_stream_id(&pair[0].id).unwrap(), parse_stream_id(&pair[1].id).unwrap());
        assert!(a < b, "{} then {}: out of order or repeated", pair[0].id, pair[1].id);
    }
}

/// A WebSocket subscriber on `path`.
fn websocket(addr: SocketAddr, path: &str) -> Client {
    let client = Client::connect(&addr.to_string(), path).expect("WebSocket handshake");
    client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
    client
}

fn next_ws(client: &mut Client) -> Delivered {
    match client.next_message().expect("a message") {
        Message::Text(text) => delivered(&json::parse(&text).expect("an envelope")),
        Message::Binary(_) => panic!("channel messages are text frames"),
    }
}

/// Reads WebSocket messages until one has `last_id` (bounded by `PATIENCE`).
fn ws_until(client: &mut Client, last_id: &str) -> Vec<Delivered> {
    let deadline = Instant::now() + PATIENCE;
    let mut received = Vec::new();
    while received.last().is_none_or(|m: &Delivered| m.id != last_id) {
        assert!(Instant::now() < deadline, "{last_id} never arrived; got {} messages", received.len());
        received.push(next_ws(client));
    }
    received
}

/// An SSE stream read as a browser would: head, chunks, the WHATWG parser.
struct EventSource {
    reader: BufReader<TcpStream>,
    parser: EventStreamParser,
    events: VecDeque<Event>,
}

impl EventSource {
    fn open(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> EventSource {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let head = String::from_utf8(common::read_until(&mut stream, b"\r\n\r\n").expect("a head")).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
        EventSource { reader: BufReader::new(stream), parser: EventStreamParser::new(), events: VecDeque::new() }
    }

    /// The next `message` event (keepalive comments dispatch nothing; a gap is an error here).
    fn next(&mut self) -> Delivered {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.events.pop_front() {
                assert_eq!(event.event_type, "message", "{event:?}");
                return delivered(&json::parse(&event.data).expect("an envelope"));
            }
            assert!(Instant::now() < deadline, "no event within {PATIENCE:?}");
            let mut size_line = String::new();
            self.reader.read_line(&mut size_line).expect("a chunk");
            let size = usize::from_str_radix(size_line.trim_end(), 16).expect("a chunk size");
            assert!(size > 0, "the stream ended");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            let mut events = Vec::new();
            self.parser.feed(&chunk[..size], &mut events).unwrap();
            self.events.extend(events);
        }
    }

    fn take(&mut self, n: usize) -> Vec<Delivered> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// One long poll: the messages, the cursor and whether a gap was reported.
fn poll(addr: SocketAddr, channel: &str, since: &str, timeout_secs: u64) -> (Vec<Delivered>, String, bool) {
    let response = http(addr, "GET", &format!("/poll/{channel}?since={since}&timeout={timeout_secs}"), None);
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    let messages =
        answer.get("messages").and_then(json::Value::as_array).expect("messages").iter().map(delivered).collect();
    let cursor = answer.get("cursor").and_then(json::Value::as_str).expect("a cursor").to_string();
    let gap = answer.get("gap").and_then(json::Value::as_bool) == Some(true);
    (messages, cursor, gap)
}

/// The cursor for "from now on": a poll without `since` that answers at once.
fn tail_cursor(addr: SocketAddr, channel: &str) -> String {
    let response = http(addr, "GET", &format!("/poll/{channel}?timeout=0"), None);
    response.json().get("cursor").and_then(json::Value::as_str).expect("a cursor").to_string()
}

fn published_on(server: &TestServer) -> u64 {
    server.server.app().stats.snapshot().published
}

/// The node's Redis link and subscription, as `/stats` shows them.
fn link(server: &TestServer) -> realtime::broker::LinkStats {
    server.server.app().broker.link_stats().expect("a Redis broker")
}

/// Waits until the node has subscribed `n` channels and caught them up: from then on what is
/// published on them is in its mirrors (before, its readers read the stream).
fn wait_subscribed(server: &TestServer, n: usize) {
    common::eventually(&format!("{n} channels subscribed"), || link(server).channels_subscribed == n);
}

#[test]
fn a_websocket_subscriber_on_node_a_receives_what_node_b_publishes_in_order() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let channel = format!("chat-{}", model.name());
        let mut subscriber = websocket(a.addr(), &format!("/ws/{channel}"));
        let ids: Vec<String> = (0..20).map(|i| publish(b.addr(), &channel, &format!("from b {i}"))).collect();
        let received = ws_until(&mut subscriber, ids.last().unwrap());
        assert_eq!(received.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
        assert_eq!(received[0].text, "from b 0");
        assert_in_stream_order(&received);
        // The other way: the WebSocket client publishes on A; a long poll on B gets it.
        subscriber.send_text("from the socket on a").unwrap();
        let (messages, _, gap) = poll(b.addr(), &channel, ids.last().unwrap(), 10);
        assert_eq!((texts(&messages), gap), (vec!["from the socket on a"], false));
        assert_eq!(next_ws(&mut subscriber).text, "from the socket on a");
    }
}

#[test]
fn an_sse_client_resumes_on_the_other_node_with_last_event_id_and_loses_nothing() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let channel = format!("feed-{}", model.name());
        let mut on_a = EventSource::open(a.addr(), &format!("/sse/{channel}"), None);
        for i in 0..5 {
            publish(b.addr(), &channel, &i.to_string());
        }
        let first = on_a.take(5);
        drop(on_a);
        // Published while the client is away, on both nodes.
        for i in 5..10 {
            publish(if i % 2 == 0 { a.addr() } else { b.addr() }, &channel, &i.to_string());
        }
        let last_seen = first.last().unwrap().id.clone();
        let mut on_b = EventSource::open(b.addr(), &format!("/sse/{channel}"), Some(&last_seen));
        for i in 10..15 {
            publish(a.addr(), &channel, &i.to_string());
        }
        let rest = on_b.take(10);
        let all: Vec<Delivered> = first.into_iter().chain(rest).collect();
        let expected: Vec<String> = (0..15).map(|i| i.to_string()).collect();
        assert_eq!(texts(&all), expected.iter().map(String::as_str).collect::<Vec<_>>());
        assert_in_stream_order(&all);
    }
}

#[test]
fn a_long_poll_client_alternating_between_nodes_gets_every_message_once() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let nodes = [a.addr(), b.addr()];
        let channel = format!("poll-{}", model.name());
        let total = 100;
        let mut cursor = tail_cursor(a.addr(), &channel);
        let publisher = {
            let channel = channel.clone();
            thread::spawn(move || {
                for i in 0..total {
                    publish(nodes[i % 2], &channel, &i.to_string());
                }
            })
        };
        let mut received = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        for turn in 0.. {
            if received.len() >= total {
                break;
            }
            assert!(Instant::now() < deadline, "only {} of {total} messages arrived", received.len());
            // The client asks the other node each time, from the cursor the last one gave.
            let (messages, next, gap) = poll(nodes[(turn + 1) % 2], &channel, &cursor, 5);
            assert!(!gap);
            received.extend(messages);
            cursor = next;
        }
        publisher.join().unwrap();
        let expected: Vec<String> = (0..total).map(|i| i.to_string()).collect();
        assert_eq!(texts(&received), expected.iter().map(String::as_str).collect::<Vec<_>>());
        assert_in_stream_order(&received);
    }
}

#[test]
fn history_older_than_a_nodes_ring_comes_from_the_stream_and_trimmed_history_is_a_gap() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let history = |config: &mut Config| config.history = 5;
        let b = node(model, &redis, history);
        let channel = format!("history-{}", model.name());
        // MAXLEN ~ 5 trims whole radix-tree nodes (100 entries each): Redis keeps more than
        // 5, fewer than 300.
        let ids: Vec<String> = (0..300).map(|i| publish(b.addr(), &channel, &i.to_string())).collect();
        common::eventually("node b has heard every message", || tail_cursor(b.addr(), &channel) == ids[299]);
        // A node that saw every message but keeps 5, and a node started afterwards: both
        // answer an older cursor from the stream, without a gap.
        let c = node(model, &redis, history);
        for server in [&b, &c] {
            let (messages, cursor, gap) = poll(server.addr(), &channel, &ids[250], 0);
            assert!(!gap);
            assert_eq!(messages.len(), 49);
            assert_eq!(messages[0].id, ids[251]);
            assert_eq!(cursor, ids[299]);
        }
        // From the first message: the stream no longer has what came right after it.
        let (messages, _, gap) = poll(c.addr(), &channel, &ids[0], 0);
        assert!(gap, "messages after {} were trimmed", ids[0]);
        let oldest = ids.iter().position(|id| *id == messages[0].id).expect("the oldest retained message");
        assert!((5..300).contains(&(300 - oldest)), "{oldest}");
        assert_eq!(messages.len(), 300 - oldest);
        // From the last trimmed message: nothing after it was trimmed, so no gap.
        let (messages, _, gap) = poll(c.addr(), &channel, &ids[oldest - 1], 0);
        assert!(!gap, "the reader at {} missed nothing", ids[oldest - 1]);
        assert_eq!(messages[0].id, ids[oldest]);
    }
}

/// A cursor whose own entry the stream no longer has, though it is newer than the oldest
/// entry, was lost (a Redis Cluster failover, `tests/redis_cluster.rs`; here `XDEL` stands in
/// for it): entries with smaller ids may follow that the reader never saw, so it is told.
#[test]
fn a_cursor_whose_entry_the_stream_lost_is_answered_with_a_gap() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        let channel = format!("lost-{}", model.name());
        let a = node(model, &redis, |_| {});
        let ids: Vec<String> = (0..3).map(|i| publish(a.addr(), &channel, &i.to_string())).collect();
        redis.command(&["XDEL", &format!("realtime:{channel}"), &ids[1]]);
        // A node that never mirrored the channel reads the stream.
        let fresh = node(model, &redis, |_| {});
        let (messages, _, gap) = poll(fresh.addr(), &channel, &ids[1], 0);
        assert!(gap, "the reader at {} is told its entry is gone", ids[1]);
        assert_eq!(texts(&messages), ["2"]);
        let (messages, _, gap) = poll(fresh.addr(), &channel, &ids[0], 0);
        assert!(!gap, "a reader whose entry is there missed only a deleted one");
        assert_eq!(texts(&messages), ["2"]);
    }
}

/// The publish script records each entry's predecessor (`prev`, what tells a trimmed stream
/// from a lost one) from the key that holds the newest id, and from the stream itself when
/// that key is missing (a stream an older version wrote, or the key deleted).
#[test]
fn every_entry_records_the_id_before_it_with_or_without_the_newest_key() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    let server = node(Model::EventLoop, &redis, |_| {});
    let ids: Vec<String> = (0..2).map(|i| publish(server.addr(), "prev", &i.to_string())).collect();
    assert_eq!(text_of(&redis.command(&["GET", "realtime:prev:newest"])), ids[1]);
    redis.command(&["DEL", "realtime:prev:newest"]);
    let third = publish(server.addr(), "prev", "2");
    let entries = redis.command(&["XRANGE", "realtime:prev", "-", "+"]);
    let prevs: Vec<String> = entries
        .as_array()
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let fields = entry.as_array().unwrap_or_default()[1].as_array().unwrap_or_default();
            let at = fields.iter().position(|f| f.as_bytes() == Some(b"prev")).expect("a prev field");
            text_of(&fields[at + 1])
        })
        .collect();
    assert_eq!(prevs, ["0-0", ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(text_of(&redis.command(&["GET", "realtime:prev:newest"])), third);
}

/// The publish script as a node sends a batch (`PUBLISH_SCRIPT`'s docs): one call publishes
/// each message in order, channels' runs interleaved, each entry naming the one before it in
/// its own stream; a key of the wrong type fails its own publish and no other, wherever the
/// script meets it (reading the newest id from its key or from the stream, or appending), and
/// every channel's newest id and expiry are set once its publishes are in. A call of one
/// publish is answered with its id alone.
#[test]
fn one_script_call_publishes_a_batch_in_order_and_a_broken_channel_fails_only_its_own_publishes() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    // No newest-id key, and a stream that is not one: `XREVRANGE` fails.
    redis.command(&["SET", "realtime:no-stream", "not a stream"]);
    // A newest id, and a stream that is not one: `XADD` fails.
    redis.command(&["SET", "realtime:bad-stream", "not a stream"]);
    redis.command(&["SET", "realtime:bad-stream:newest", "1-0"]);
    // A newest-id key that is not a string: `GET` fails.
    redis.command(&["HSET", "realtime:bad-newest:newest", "field", "value"]);
    let script = realtime::broker::redis::PUBLISH_SCRIPT;
    let batch = [
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("no-stream", "x"),
        ("bad-stream", "y"),
        ("a", "a3"),
        ("bad-newest", "z"),
        ("b", "b2"),
    ];
    let names: Vec<[String; 3]> = batch
        .iter()
        .map(|(channel, _)| {
            [format!("realtime:{channel}"), format!("realtime:{channel}:newest"), format!("realtime:0:{channel}")]
        })
        .collect();
    let keys = (2 * batch.len()).to_string();
    let mut args = vec!["EVAL", script, &keys];
    for [stream, newest, _] in &names {
        args.extend([stream.as_str(), newest.as_str()]);
    }
    args.extend(["100", "60000", "86460000"]);
    for ([_, _, topic], (_, text)) in names.iter().zip(&batch) {
        args.extend([topic.as_str(), *text]);
    }
    let reply = redis.command(&args);
    let answers = reply.as_array().expect("an array, one element per publish");
    assert_eq!(answers.len(), batch.len());
    for failed in [3, 4, 6] {
        assert!(matches!(&answers[failed], Value::Error(e) if e.starts_with("WRONGTYPE")), "{:?}", answers[failed]);
    }
    let ids: Vec<String> = answers.iter().filter(|a| !matches!(a, Value::Error(_))).map(text_of).collect();
    assert!(ids.iter().all(|id| parse_stream_id(id).is_some()), "{ids:?}");

    // Each stream: its texts in order, each entry's `prev` the entry before it.
    let entries = |stream: &str| -> Vec<(String, String, String)> {
        let reply = redis.command(&["XRANGE", stream, "-", "+"]);
        reply
            .as_array()
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                let entry = entry.as_array().unwrap_or_default();
                let fields = entry[1].as_array().unwrap_or_default();
                let field = |name: &[u8]| {
                    let at = fields.iter().position(|f| f.as_bytes() == Some(name)).expect("the field");
                    text_of(&fields[at + 1])
                };
                (text_of(&entry[0]), field(b"text"), field(b"prev"))
            })
            .collect()
    };
    let (a1, a2, b1, a3, b2) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);
    let own = |id: &String, text: &str, prev: &str| (id.clone(), text.to_string(), prev.to_string());
    assert_eq!(entries("realtime:a"), [own(a1, "a1", "0-0"), own(a2, "a2", a1), own(a3, "a3", a2)]);
    assert_eq!(entries("realtime:b"), [own(b1, "b1", "0-0"), own(b2, "b2", b1)]);
    assert_eq!(text_of(&redis.command(&["GET", "realtime:a:newest"])), *a3);
    assert_eq!(text_of(&redis.command(&["GET", "realtime:b:newest"])), *b2);
    for stream in ["realtime:a", "realtime:b"] {
        let left = redis.command(&["PTTL", stream]).as_integer().expect("PTTL answers a number");
        assert!(left > 0 && left <= 60_000, "{stream} expires a --channel-ttl after its last publish: {left}");
    }
    for key in ["realtime:no-stream", "realtime:bad-stream", "realtime:bad-stream:newest"] {
        assert_eq!(redis.command(&["TYPE", key]), Value::Simple("string".into()), "{key} left as it was");
    }
    assert_eq!(text_of(&redis.command(&["GET", "realtime:bad-stream:newest"])), "1-0");
    assert_eq!(redis.command(&["EXISTS", "realtime:no-stream:newest"]).as_integer(), Some(0));
    assert_eq!(redis.command(&["TYPE", "realtime:bad-newest:newest"]), Value::Simple("hash".into()));
    assert_eq!(redis.command(&["EXISTS", "realtime:bad-newest"]).as_integer(), Some(0), "nothing appended");

    // A call of one publish is answered with its id alone, not an array of one.
    let alone =
        ["EVAL", script, "2", "realtime:a", "realtime:a:newest", "100", "60000", "86460000", "realtime:0:a", "a4"];
    let id = text_of(&redis.command(&alone));
    assert!(parse_stream_id(&id).is_some(), "{id:?}");
    assert_eq!(entries("realtime:a").last(), Some(&own(&id, "a4", a3)));
}

/// A channel's stream lives `--channel-ttl` after its last publish (Redis keeps what no node
/// reclaims; without it every channel name ever published to would stay in Redis), and the
/// id of its newest entry a day longer: a reader who had read everything is not told of a gap,
/// one who had not is, through a node's mirror or from the stream alike, and the next publish
/// goes on from the remembered id.
#[test]
fn a_stream_expires_channel_ttl_after_its_last_publish_and_readers_are_told_exactly_what_they_missed() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let channel = format!("expiring-{}", model.name());
        let (stream, newest) = (format!("realtime:{channel}"), format!("realtime:{channel}:newest"));
        let short = |config: &mut Config| config.channel_ttl = Duration::from_secs(1);
        let a = node(model, &redis, short);
        let ids: Vec<String> = (0..3).map(|i| publish(a.addr(), &channel, &i.to_string())).collect();
        let ttl = |key: &str| redis.command(&["PTTL", key]).as_integer().expect("PTTL answers a number");
        // At most a --channel-ttl left (or already gone, on a slow machine), never "no expiry" (-1).
        let left = ttl(&stream);
        assert!(left <= 1000 && left != -1, "the stream expires a --channel-ttl after the publish: {left}");
        assert!(ttl(&newest) > 86_400_000, "the newest id is remembered a day longer");
        common::eventually("the stream expired", || redis.command(&["EXISTS", &stream]).as_integer() == Some(0));
        assert_eq!(text_of(&redis.command(&["GET", &newest])), ids[2]);

        // From the stream: a node that never mirrored the channel. The readers keep the
        // default --channel-ttl, and the publish below goes through one of them, so the
        // stream cannot expire again while the checks after it run on a slow machine.
        let b = node(model, &redis, |_| {});
        assert_eq!(poll(b.addr(), &channel, &ids[2], 0), (vec![], ids[2].clone(), false), "it had read everything");
        let (messages, _, gap) = poll(b.addr(), &channel, &ids[1], 0);
        assert!(gap && messages.is_empty(), "the reader at {} missed {}, which expired", ids[1], ids[2]);
        // `timeout=0` answered once each read landed: neither waited, so neither subscribed
        // (a mirror made here would answer the reads below before pub/sub fed it).
        assert_eq!(link(&b).channel_subscribes, 0);

        // Through a mirror made after the expiry: its base is the remembered id.
        let c = node(model, &redis, |_| {});
        let mut subscriber = websocket(c.addr(), &format!("/ws/{channel}"));
        wait_subscribed(&c, 1);
        assert_eq!(poll(c.addr(), &channel, &ids[2], 0), (vec![], ids[2].clone(), false));
        assert!(poll(c.addr(), &channel, &ids[1], 0).2, "older than the mirror's base: the stream says gap");

        // The next publish names the remembered id as its predecessor: no gap for a reader at it.
        let after = publish(b.addr(), &channel, "after");
        assert_eq!(next_ws(&mut subscriber).id, after);
        let entries = redis.command(&["XRANGE", &stream, "-", "+"]);
        let fields = entries.as_array().unwrap_or_default()[0].as_array().unwrap_or_default()[1].clone();
        let fields = fields.as_array().unwrap_or_default().to_vec();
        let at = fields.iter().position(|f| f.as_bytes() == Some(b"prev")).expect("a prev field");
        assert_eq!(text_of(&fields[at + 1]), ids[2]);
        for reader in [&b, &c] {
            let (messages, _, gap) = poll(reader.addr(), &channel, &ids[2], 0);
            assert!(!gap, "nothing expired that the reader at the newest id had not read");
            assert_eq!(texts(&messages), ["after"]);
            let (messages, _, gap) = poll(reader.addr(), &channel, &ids[1], 0);
            assert!(gap);
            assert_eq!(texts(&messages), ["after"]);
        }

        // A day later both are gone (or Redis restarted empty): a mirror made now starts from
        // nothing, and a reader whose cursor it never heard of is told, not left waiting to
        // skip what it missed.
        redis.command(&["DEL", &stream, &newest]);
        let d = node(model, &redis, |_| {});
        let _subscriber = websocket(d.addr(), &format!("/ws/{channel}"));
        wait_subscribed(&d, 1);
        let (messages, _, gap) = poll(d.addr(), &channel, &after, 0);
        assert!(gap && messages.is_empty(), "the entry at {after} is gone");
    }
}

fn text_of(value: &Value) -> String {
    value.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
}

#[test]
fn a_cursor_from_a_stream_redis_lost_in_a_restart_is_answered_with_a_gap() {
    let Some(mut redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let b = node(model, &redis, |_| {});
        let channel = format!("lost-{}", model.name());
        // A subscriber on b: once its channel is subscribed, what it receives is in b's mirror.
        let mut subscriber = websocket(b.addr(), &format!("/ws/{channel}"));
        wait_subscribed(&b, 1);
        let ids: Vec<String> = (0..3).map(|i| publish(b.addr(), &channel, &format!("before {i}"))).collect();
        assert_eq!(ws_until(&mut subscriber, &ids[2]).len(), 3);
        // Without persistence a restart loses the stream (Redis's loss, not the nodes').
        redis.kill();
        assert!(redis.spawn());
        let after = publish_retrying(b.addr(), &channel, "after the restart", &AtomicUsize::new(0)).0;
        assert_eq!(next_ws(&mut subscriber).id, after, "the socket stayed open through the restart");
        // A node that never saw the lost messages cannot deliver them, and says so.
        let c = node(model, &redis, |_| {});
        let (messages, _, gap) = poll(c.addr(), &channel, &ids[1], 0);
        assert!(gap, "the messages after {} are gone", ids[1]);
        assert_eq!(texts(&messages), ["after the restart"]);
        // Node b still holds what it mirrored: its reader misses nothing.
        let (messages, _, gap) = poll(b.addr(), &channel, &ids[1], 0);
        assert!(!gap);
        assert_eq!(texts(&messages), ["before 2", "after the restart"]);
    }
}

/// Publishes, retrying 503s until the deadline (each one counted in `refusals` as it
/// happens); the id and how many attempts were refused.
fn publish_retrying(addr: SocketAddr, channel: &str, text: &str, refusals: &AtomicUsize) -> (String, usize) {
    let deadline = Instant::now() + PATIENCE;
    let mut refused = 0;
    loop {
        let response = http(addr, "POST", &format!("/publish/{channel}"), Some(text));
        match response.status {
            201 => {
                let id = response.json().get("id").and_then(json::Value::as_str).expect("an id").to_string();
                return (id, refused);
            }
            503 => {
                refused += 1;
                refusals.fetch_add(1, Ordering::SeqCst);
                assert!(Instant::now() < deadline, "publishes were refused for {PATIENCE:?}");
                thread::sleep(Duration::from_millis(5));
            }
            status => panic!("publish answered {status}: {}", response.text()),
        }
    }
}

/// What a publisher thread saw: the number and id of each accepted publish, and the numbers
/// that were refused (503) at least once before they were accepted.
struct PublishLog {
    accepted: Vec<(usize, String)>,
    refused: HashSet<usize>,
}

/// Publishes `0..total` on `addr`, each retried until accepted; `progress` counts accepted
/// ones and `refusals` the 503s, for the test to act on mid-stream.
fn numbered_stream(
    addr: SocketAddr,
    channel: &str,
    total: usize,
    progress: Arc<AtomicUsize>,
    refusals: Arc<AtomicUsize>,
) -> thread::JoinHandle<PublishLog> {
    let channel = channel.to_string();
    thread::spawn(move || {
        let mut log = PublishLog { accepted: Vec::new(), refused: HashSet::new() };
        for n in 0..total {
            let (id, refused) = publish_retrying(addr, &channel, &n.to_string(), &refusals);
            if refused > 0 {
                log.refused.insert(n);
            }
            log.accepted.push((n, id));
            progress.store(n + 1, Ordering::SeqCst);
        }
        log
    })
}

/// The guarantee under faults: the subscriber received every accepted id, once, in order.
/// A message whose publish was refused may also have been stored (Redis ran the script, the
/// reply was lost): such a copy may arrive too, before the accepted one.
fn assert_received_what_redis_stored(received: &[Delivered], log: &PublishLog) {
    assert_in_stream_order(received);
    let accepted: HashSet<&str> = log.accepted.iter().map(|(_, id)| id.as_str()).collect();
    let received_ids: HashSet<&str> = received.iter().map(|m| m.id.as_str()).collect();
    let missing: Vec<_> = log.accepted.iter().filter(|(_, id)| !received_ids.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "accepted but never delivered: {missing:?}");
    for message in received.iter().filter(|m| !accepted.contains(m.id.as_str())) {
        let n: usize = message.text.parse().unwrap();
        assert!(log.refused.contains(&n), "{message:?} was neither accepted nor refused");
    }
    let numbers: Vec<usize> = received.iter().map(|m| m.text.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] <= w[1]), "numbers out of order: {numbers:?}");
}

#[test]
fn a_redis_restart_mid_stream_loses_nothing_redis_stored() {
    // With appendfsync always, every publish Redis acknowledged is on disk before the 201:
    // the kill -9 below loses nothing, so anything missing would be the nodes' fault.
    let Some(mut redis) = Redis::start(Persistence::AppendFsyncAlways) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let channel = format!("restart-{}", model.name());
        let mut subscriber = websocket(a.addr(), &format!("/ws/{channel}"));
        let (progress, refusals) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let total = 150;
        let publisher = numbered_stream(b.addr(), &channel, total, progress.clone(), refusals.clone());
        common::eventually("a third of the stream is published", || progress.load(Ordering::SeqCst) >= total / 3);
        redis.kill();
        common::eventually("a publish is refused while Redis is down", || refusals.load(Ordering::SeqCst) > 0);
        assert!(redis.spawn(), "redis-server restarts on its port");
        let log = publisher.join().unwrap();
        assert!(!log.refused.is_empty());
        // The same WebSocket, open through the outage, gets everything.
        let received = ws_until(&mut subscriber, &log.accepted.last().unwrap().1);
        assert_received_what_redis_stored(&received, &log);
    }
}

#[test]
fn cutting_the_nodes_connections_mid_stream_loses_nothing() {
    // CLIENT KILL drops connections without losing data: first every subscription (the
    // nodes catch up from the stream), then every command connection (the next publish
    // finds it closed and reconnects before sending).
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let channel = format!("cut-{}", model.name());
        let mut subscriber = websocket(a.addr(), &format!("/ws/{channel}"));
        let mut on_b = EventSource::open(b.addr(), &format!("/sse/{channel}"), None);
        let (progress, refusals) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let total = 300;
        let publisher = numbered_stream(b.addr(), &channel, total, progress.clone(), refusals.clone());
        common::eventually("a quarter of the stream is published", || progress.load(Ordering::SeqCst) >= total / 4);
        let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert!(killed.as_integer().is_some_and(|n| n >= 2), "both nodes' subscriptions: {killed:?}");
        common::eventually("half of the stream is published", || progress.load(Ordering::SeqCst) >= total / 2);
        let killed = redis.command(&["CLIENT", "KILL", "TYPE", "normal"]);
        assert!(killed.as_integer().is_some_and(|n| n >= 2), "both nodes' command connections: {killed:?}");
        let log = publisher.join().unwrap();
        let received = ws_until(&mut subscriber, &log.accepted.last().unwrap().1);
        assert_received_what_redis_stored(&received, &log);
        let mut on_b_received = Vec::new();
        while on_b_received.last().is_none_or(|m: &Delivered| m.id != log.accepted.last().unwrap().1) {
            on_b_received.push(on_b.next());
        }
        assert_received_what_redis_stored(&on_b_received, &log);
        // `/stats`: the subscriptions the killed connections took count as ended, so the
        // confirmed less the ended are the channels subscribed now.
        for node in [&a, &b] {
            wait_subscribed(node, 1);
            let stats = link(node);
            assert_eq!(stats.channel_subscribes - stats.channel_unsubscribes, 1, "{stats:?}");
        }
    }
}

#[test]
fn with_the_right_password_nodes_publish_and_subscribe_and_with_a_wrong_one_publishes_answer_503() {
    // A password with every kind of character a URL must escape.
    let password = "s3cr@t:/?#% pass";
    let Some(redis) = Redis::start_with_password(Persistence::None, Some(password)) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let channel = format!("private-{}", model.name());
        let mut subscriber = websocket(a.addr(), &format!("/ws/{channel}"));
        let ids: Vec<String> = (0..5).map(|i| publish(b.addr(), &channel, &format!("secret {i}"))).collect();
        let received = ws_until(&mut subscriber, ids.last().unwrap());
        assert_eq!(texts(&received), ["secret 0", "secret 1", "secret 2", "secret 3", "secret 4"]);
        // The password is in no answer: /stats names the broker's kind only.
        let stats = http(a.addr(), "GET", "/stats", None).text();
        assert!(!stats.contains("s3cr") && !stats.contains("pass"), "{stats}");

        // An ACL user (Redis 6 and later): `AUTH user password`.
        let acl = redis.command(&["ACL", "SETUSER", "alice", "on", ">p@ss:w/rd", "~*", "&*", "+@all"]);
        if acl == Value::Simple("OK".into()) {
            let url = redis.url_with_credentials("alice", "p@ss:w/rd");
            let as_alice = TestServer::start(model, &|config| config.broker = BrokerUrl::parse(&url).expect("a URL"));
            let id = publish(as_alice.addr(), &channel, "from alice");
            assert_eq!(next_ws(&mut subscriber).id, id);
        } else {
            eprintln!("this Redis has no ACL users ({acl:?}): AUTH with a user name not tried");
        }

        // A node with the wrong password keeps trying and refuses publishes meanwhile, as
        // while Redis is down; so does a node with none.
        for wrong in [redis.url_with_credentials("", "not the password"), format!("redis://127.0.0.1:{}", redis.port)] {
            let refused = TestServer::start(model, &|config| {
                config.broker = BrokerUrl::parse(&wrong).expect("a Redis URL");
            });
            let response = http(refused.addr(), "POST", &format!("/publish/{channel}"), Some("never stored"));
            assert_eq!(response.status, 503, "{}", response.text());
            assert_eq!(http(refused.addr(), "GET", "/readyz", None).status, 503, "not ready without Redis");
        }
        // Nothing the refused nodes were asked to publish reached the channel.
        let (messages, _, gap) = poll(a.addr(), &channel, &ids[4], 0);
        assert!(!gap);
        assert!(messages.iter().all(|m| m.text != "never stored"), "{messages:?}");
    }
}

#[test]
fn readyz_is_503_while_redis_is_down_and_200_again_once_the_node_is_back_while_healthz_stays_200() {
    let Some(mut redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let node = node(model, &redis, |_| {});
        let probe = |path| {
            let response = http(node.addr(), "GET", path, None);
            (response.status, response.text())
        };
        assert_eq!(probe("/readyz"), (200, "ready\n".to_string()));
        // kill -9: the subscription's socket reports the end at once, which is what the
        // supervisor notices first (a silent Redis would take its ping timeout).
        redis.kill();
        common::eventually("readyz says 503 with Redis down", || probe("/readyz").0 == 503);
        assert_eq!(probe("/readyz"), (503, "broker unavailable\n".to_string()));
        assert_eq!(probe("/healthz"), (200, "ok\n".to_string()), "the process is alive: no restart wanted");
        assert!(redis.spawn(), "redis-server restarts on its port");
        // Back once the supervisor's backoff (at most 2 s) brings the subscription back.
        common::eventually("readyz says 200 with Redis back", || probe("/readyz").0 == 200);
        publish(node.addr(), &format!("ready-{}", model.name()), "the node serves again");
    }
}

/// nginx with `examples/nginx.conf`, its three addresses replaced by a free port and the nodes'.
fn start_nginx(binary: &Path, a: SocketAddr, b: SocketAddr) -> Nginx {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let replace =
        [("127.0.0.1:8080", addr.to_string()), ("127.0.0.1:8081", a.to_string()), ("127.0.0.1:8082", b.to_string())];
    Nginx::start(binary, scratch_dir("nginx"), "nginx.conf", &replace, addr)
}

/// The node of the two that does *not* hold the one open connection of `kind` (the stats
/// index: 1 SSE, 2 WebSocket), once nginx has placed it.
fn other_node(nodes: [&TestServer; 2], kind: usize) -> &TestServer {
    let open = |server: &TestServer| server.server.app().stats.snapshot().open[kind];
    common::eventually("one node holds the connection", || open(nodes[0]) + open(nodes[1]) == 1);
    if open(nodes[0]) == 1 {
        nodes[1]
    } else {
        nodes[0]
    }
}

#[test]
fn nginx_round_robin_carries_all_three_transports_with_publishes_on_the_other_node() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    let Some(nginx_binary) = common::external_program("nginx") else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let nginx = start_nginx(&nginx_binary, a.addr(), b.addr());
        let channel = format!("proxied-{}", model.name());

        // WebSocket through nginx (the Upgrade headers pass); publishes go directly to the
        // node that does not hold the socket, and through nginx (round robin: both nodes).
        let mut socket = websocket(nginx.addr, &format!("/ws/{channel}"));
        let other = other_node([&a, &b], 2);
        let mut ids = Vec::new();
        for i in 0..10 {
            let target = if i % 2 == 0 { other.addr() } else { nginx.addr };
            ids.push(publish(target, &channel, &format!("ws {i}")));
        }
        let received = ws_until(&mut socket, ids.last().unwrap());
        assert_eq!(received.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
        assert!(published_on(&a) > 0 && published_on(&b) > 0, "round robin reached both nodes");
        drop(socket);
        common::eventually("the socket is closed", || {
            a.server.app().stats.snapshot().open[2] + b.server.app().stats.snapshot().open[2] == 0
        });

        // SSE through nginx: unbuffered, and resumed with Last-Event-ID on whichever node
        // nginx picks next.
        let sse_channel = format!("{channel}-sse");
        let mut events = EventSource::open(nginx.addr, &format!("/sse/{sse_channel}"), None);
        let other = other_node([&a, &b], 1);
        for i in 0..4 {
            publish(other.addr(), &sse_channel, &format!("sse {i}"));
        }
        let first = events.take(4);
        drop(events);
        for i in 4..8 {
            publish(nginx.addr, &sse_channel, &format!("sse {i}"));
        }
        let mut events = EventSource::open(nginx.addr, &format!("/sse/{sse_channel}"), Some(&first[3].id));
        let rest = events.take(4);
        let all: Vec<Delivered> = first.into_iter().chain(rest).collect();
        assert_eq!(texts(&all), (0..8).map(|i| format!("sse {i}")).collect::<Vec<_>>());
        assert_in_stream_order(&all);

        // Long polling through nginx: each poll may land on either node.
        let poll_channel = format!("{channel}-poll");
        let mut cursor = tail_cursor(nginx.addr, &poll_channel);
        for i in 0..6 {
            let target = if i % 2 == 0 { a.addr() } else { b.addr() };
            publish(target, &poll_channel, &format!("poll {i}"));
        }
        let mut received = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while received.len() < 6 {
            assert!(Instant::now() < deadline, "only {} of 6 polled messages", received.len());
            let (messages, next, gap) = poll(nginx.addr, &poll_channel, &cursor, 5);
            assert!(!gap);
            received.extend(messages);
            cursor = next;
        }
        assert_eq!(texts(&received), (0..6).map(|i| format!("poll {i}")).collect::<Vec<_>>());
        assert_in_stream_order(&received);
    }
}

/// Commands the node's link has sent to Redis and not had answered.
fn in_flight(server: &TestServer) -> u64 {
    server.server.app().broker.link_stats().expect("a Redis broker").in_flight
}

#[test]
fn a_hung_redis_holds_up_only_the_publish_that_waits_for_it_which_answers_503_at_the_redis_timeout() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        // One worker: on the event loop, everything below shares the thread a blocking
        // publish used to hold.
        let a = node(model, &redis, |config| {
            config.workers = 1;
            config.redis_timeout = Duration::from_millis(500);
        });
        let channel = format!("hung-{}", model.name());
        let mut subscriber = websocket(a.addr(), &format!("/ws/{channel}"));
        wait_subscribed(&a, 1);
        let ids: Vec<String> = (0..3).map(|i| publish(a.addr(), &channel, &format!("before {i}"))).collect();
        ws_until(&mut subscriber, &ids[2]);

        let hung = redis.hang();
        let mut publisher = TcpStream::connect(a.addr()).expect("connect");
        publisher.set_read_timeout(Some(PATIENCE)).unwrap();
        let body = "while redis hangs";
        let request =
            format!("POST /publish/{channel} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        publisher.write_all(request.as_bytes()).unwrap();
        common::eventually("the publish is sent to Redis", || in_flight(&a) >= 1);

        // A WebSocket echo needs no Redis: answered while the publish still waits.
        let mut echo = websocket(a.addr(), "/echo");
        echo.send_text("ping").unwrap();
        assert_eq!(echo.next_message().expect("the echo"), Message::Text("ping".into()));
        publisher.set_nonblocking(true).unwrap();
        let unanswered = publisher.peek(&mut [0u8; 1]).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock);
        publisher.set_nonblocking(false).unwrap();
        assert!(unanswered, "the echo came back before the publish was answered");

        // History the node mirrors is replayed without Redis.
        let mut replay = EventSource::open(a.addr(), &format!("/sse/{channel}"), Some(&ids[0]));
        assert_eq!(texts(&replay.take(2)), ["before 1", "before 2"]);

        // The publish is told, after --redis-timeout: refused, not lost silently.
        let response = read_response(&mut publisher, false).expect("an answer to the publish");
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.header("retry-after"), Some("1"));

        // SIGCONT: publishes are accepted and delivered again. The refused publish may have
        // run once Redis woke (it had the command): it may arrive too, once, in order.
        drop(hung);
        let (after, _) = publish_retrying(a.addr(), &channel, "after the hang", &AtomicUsize::new(0));
        let received = ws_until(&mut subscriber, &after);
        assert_in_stream_order(&received);
        assert!(received.iter().all(|m| m.text == body || m.id == after), "{received:?}");
        let (messages, _, gap) = poll(a.addr(), &channel, &ids[2], 0);
        assert!(!gap);
        assert_eq!(messages.last().map(|m| m.id.as_str()), Some(after.as_str()));
    }
}

#[test]
fn sixty_four_pipelined_publishers_are_each_delivered_once_and_in_their_own_order() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let deep_history = |config: &mut Config| config.history = 10_000;
        let (a, b) = (node(model, &redis, deep_history), node(model, &redis, deep_history));
        let channel = format!("many-{}", model.name());
        let mut subscriber = websocket(a.addr(), &format!("/ws/{channel}"));
        let (publishers, each) = (64, 20);
        let threads: Vec<_> = (0..publishers)
            .map(|p| {
                let target = if p % 2 == 0 { a.addr() } else { b.addr() };
                let channel = channel.clone();
                thread::spawn(move || {
                    // One keep-alive connection per publisher, publishing one at a time.
                    let mut publisher =
                        realtime::client::publisher::Publisher::connect(target, &target.to_string()).expect("connect");
                    (0..each).map(|n| publisher.publish(&channel, &format!("{p} {n}")).expect("publish")).last()
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a publisher");
        }
        let received: Vec<Delivered> = (0..publishers * each).map(|_| next_ws(&mut subscriber)).collect();
        assert_in_stream_order(&received);
        let mut next = vec![0; publishers];
        for message in &received {
            let (p, n) = message.text.split_once(' ').expect("'publisher number'");
            let (p, n): (usize, usize) = (p.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[p], "publisher {p}: {n} arrived when {} was due", next[p]);
            next[p] += 1;
        }
        assert!(next.iter().all(|&n| n == each), "{next:?}");
        // The link says what it did: node A answered its half of the publishes through it.
        let stats = http(a.addr(), "GET", "/stats", None).json();
        let link = stats.get("redis").expect("a redis object in /stats");
        assert_eq!(link.get("state").and_then(json::Value::as_str), Some("up"));
        let answered = link.get("commands_answered").and_then(json::Value::as_u64).unwrap_or(0);
        assert!(answered >= (publishers / 2 * each) as u64, "{answered} commands answered");
        let metrics = http(a.addr(), "GET", "/metrics", None).text();
        assert!(metrics.contains("\nrealtime_redis_up 1\n"), "{metrics}");
        // Every family, the link's included, follows the exposition format to the letter.
        let exposition = common::prometheus::parse(&metrics).unwrap_or_else(|error| panic!("{error}\n{metrics}"));
        let commands = exposition.value("realtime_redis_command_duration_seconds_count", &[]).unwrap_or(0.0);
        assert!(commands >= answered as f64, "{commands} commands timed");
    }
}

/// One subscriber's turn on a channel: how many publishes had started on it when the
/// subscriber's stream was open (every later one is owed), and what it received.
struct Turn {
    started_before: usize,
    received: Vec<Delivered>,
}

/// What a subscriber that joined after `started_before` publishes had started is owed: every
/// message from one no later than that one on, once, in order, each with the id its publish
/// was answered with (the publisher numbers its messages: the text is the index in `log`).
fn assert_everything_after_its_start(turn: &Turn, log: &[String], what: &str) {
    assert_in_stream_order(&turn.received);
    let numbers: Vec<usize> = turn.received.iter().map(|m| m.text.parse().expect("a number")).collect();
    let first = numbers[0];
    assert!(first <= turn.started_before, "{what}: began at {first}, after {} was published", turn.started_before);
    for (offset, (number, message)) in numbers.iter().zip(&turn.received).enumerate() {
        assert_eq!(*number, first + offset, "{what}: {numbers:?} skips or repeats");
        assert_eq!(message.id, log[*number], "{what}: message {number} has another id");
    }
}

#[test]
fn subscribers_joining_and_leaving_during_a_publish_stream_get_every_message_after_their_start_once_in_order() {
    // The seam of a new subscription: the node subscribes a channel when its first subscriber
    // arrives, and catches up from the stream after the confirmation, while node B publishes
    // without pause. Each (transport, round) takes a channel of its own, so each first join is
    // a new subscription; the second join on it comes back within the linger.
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let rounds = 3;
        let channels: Vec<String> = (0..rounds * 3).map(|i| format!("seam-{}-{i}", model.name())).collect();
        let started: Arc<Vec<AtomicUsize>> = Arc::new(channels.iter().map(|_| AtomicUsize::new(0)).collect());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let publisher = {
            let (channels, started, stop, target) = (channels.clone(), started.clone(), stop.clone(), b.addr());
            thread::spawn(move || {
                let mut publisher =
                    realtime::client::publisher::Publisher::connect(target, &target.to_string()).expect("connect");
                let mut logs: Vec<Vec<String>> = channels.iter().map(|_| Vec::new()).collect();
                while !stop.load(Ordering::SeqCst) {
                    for (c, channel) in channels.iter().enumerate() {
                        let n = logs[c].len();
                        started[c].store(n + 1, Ordering::SeqCst);
                        logs[c].push(publisher.publish(channel, &n.to_string()).expect("publish"));
                    }
                }
                logs
            })
        };
        let owed = 15;
        let number = |m: &Delivered| m.text.parse::<usize>().unwrap();
        let mut turns: Vec<(usize, &str, Turn)> = Vec::new();
        for c in 0..channels.len() {
            let channel = &channels[c];
            for _join in 0..2 {
                let (transport, turn) = match c % 3 {
                    0 => {
                        let mut events = EventSource::open(a.addr(), &format!("/sse/{channel}"), None);
                        let started_before = started[c].load(Ordering::SeqCst);
                        let mut received = vec![events.next()];
                        while number(received.last().unwrap()) < started_before + owed {
                            received.push(events.next());
                        }
                        ("sse", Turn { started_before, received })
                    }
                    1 => {
                        let mut socket = websocket(a.addr(), &format!("/ws/{channel}"));
                        let started_before = started[c].load(Ordering::SeqCst);
                        let mut received = vec![next_ws(&mut socket)];
                        while number(received.last().unwrap()) < started_before + owed {
                            received.push(next_ws(&mut socket));
                        }
                        ("ws", Turn { started_before, received })
                    }
                    _ => {
                        let mut cursor = tail_cursor(a.addr(), channel);
                        let started_before = started[c].load(Ordering::SeqCst);
                        let mut received: Vec<Delivered> = Vec::new();
                        let deadline = Instant::now() + PATIENCE;
                        while received.last().is_none_or(|m| number(m) < started_before + owed) {
                            assert!(Instant::now() < deadline, "the polls got {} messages", received.len());
                            let (messages, next, gap) = poll(a.addr(), channel, &cursor, 5);
                            assert!(!gap, "a gap on {channel}");
                            received.extend(messages);
                            cursor = next;
                        }
                        ("poll", Turn { started_before, received })
                    }
                };
                turns.push((c, transport, turn));
            }
        }
        stop.store(true, Ordering::SeqCst);
        let logs = publisher.join().expect("the publisher");
        for (c, transport, turn) in &turns {
            assert_everything_after_its_start(turn, &logs[*c], &format!("{transport} on {}", channels[*c]));
        }
        let stats = link(&a);
        assert!(stats.channel_subscribes >= channels.len() as u64, "one subscription per channel at least");
    }
}

#[test]
fn a_node_receives_no_message_of_a_channel_none_of_its_clients_follows() {
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let (x, y) = (format!("unfollowed-{}", model.name()), format!("followed-{}", model.name()));
        let mut on_y = websocket(a.addr(), &format!("/ws/{y}"));
        wait_subscribed(&a, 1);
        let heard_before = link(&a).pubsub_messages;
        let mut publisher = realtime::client::publisher::Publisher::connect(b.addr(), &b.addr().to_string()).unwrap();
        let (mut x_ids, mut y_ids) = (Vec::new(), Vec::new());
        for i in 0..1000 {
            x_ids.push(publisher.publish(&x, &format!("x {i}")).expect("publish on x"));
            if i % 100 == 99 {
                y_ids.push(publisher.publish(&y, &format!("y {i}")).expect("publish on y"));
            }
        }
        // Y's last message was published after all of X's: had A been subscribed to X, pub/sub
        // (one connection, in order) would have brought X's messages before it.
        let received = ws_until(&mut on_y, y_ids.last().unwrap());
        assert_eq!(received.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), y_ids);
        assert_eq!(link(&a).pubsub_messages - heard_before, y_ids.len() as u64, "only Y's messages reached A");
        assert_eq!(link(&b).pubsub_messages, 0, "B follows nothing and hears nothing");

        // A subscriber for X arrives on A: X's new messages, and its history on request.
        let mut on_x = websocket(a.addr(), &format!("/ws/{x}"));
        wait_subscribed(&a, 2);
        let news: Vec<String> = (0..5).map(|i| publisher.publish(&x, &format!("x new {i}")).unwrap()).collect();
        let received = ws_until(&mut on_x, news.last().unwrap());
        assert_eq!(received.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), news, "from its start on");
        let (history, _, gap) = poll(a.addr(), &x, &x_ids[989], 0);
        assert!(!gap);
        let expected: Vec<&String> = x_ids[990..].iter().chain(&news).collect();
        assert_eq!(history.iter().map(|m| &m.id).collect::<Vec<_>>(), expected, "?since= reads the stream");
    }
}

#[test]
fn a_channel_stays_subscribed_for_the_linger_after_its_last_subscriber_leaves_and_a_returning_one_causes_no_churn() {
    use realtime::broker::redis::SUBSCRIPTION_LINGER;
    let Some(redis) = Redis::start(Persistence::None) else { return };
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let (a, b) = (node(model, &redis, |_| {}), node(model, &redis, |_| {}));
        let channel = format!("linger-{}", model.name());
        let open_sse = |server: &TestServer| server.server.app().stats.snapshot().open[1];
        let mut events = EventSource::open(a.addr(), &format!("/sse/{channel}"), None);
        wait_subscribed(&a, 1);
        let before = link(&a);
        let id = publish(b.addr(), &channel, "first visit");
        assert_eq!(events.next().id, id);
        drop(events);
        common::eventually("the stream is closed", || open_sse(&a) == 0);

        // Back within the linger (as an EventSource reconnects): no UNSUBSCRIBE, no SUBSCRIBE.
        let mut events = EventSource::open(a.addr(), &format!("/sse/{channel}"), None);
        let id = publish(b.addr(), &channel, "back again");
        assert_eq!(events.next().id, id);
        let during = link(&a);
        assert_eq!(during.channels_subscribed, 1);
        assert_eq!(
            (during.channel_subscribes, during.channel_unsubscribes),
            (before.channel_subscribes, before.channel_unsubscribes),
            "no churn"
        );
        drop(events);
        common::eventually("the stream is closed", || open_sse(&a) == 0);
        let left = Instant::now();

        // Gone for good: unsubscribed once the linger is over, not before.
        common::eventually("the channel is unsubscribed", || link(&a).channels_subscribed == 0);
        let lingered = left.elapsed();
        assert!(lingered >= SUBSCRIPTION_LINGER - Duration::from_millis(100), "unsubscribed after {lingered:?}");
        let after = link(&a);
        assert_eq!(after.channel_unsubscribes, before.channel_unsubscribes + 1);
        assert_eq!(after.channel_subscribes, before.channel_subscribes);
        publish(b.addr(), &channel, "nobody on A follows this");
        let heard = link(&a).pubsub_messages;
        thread::sleep(Duration::from_millis(200));
        assert_eq!(link(&a).pubsub_messages, heard, "A no longer hears the channel");

        // A subscriber after that subscribes again, and is served.
        let mut socket = websocket(a.addr(), &format!("/ws/{channel}"));
        wait_subscribed(&a, 1);
        let id = publish(b.addr(), &channel, "a new visit");
        assert_eq!(next_ws(&mut socket), Delivered { id, text: "a new visit".into() });
        assert_eq!(link(&a).channel_subscribes, before.channel_subscribes + 1);
    }
}
