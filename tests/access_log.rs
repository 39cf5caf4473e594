//! The access log (`--access-log`), read from the sans-I/O [`Connection`] that writes it: bytes
//! and made-up times go in, and the lines the connection logged on this thread come out
//! through a [`log::Capture`]. Both server models drive this same code, so what holds here holds
//! for both; the last test reads the same lines from the real binary, on both models.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use realtime::app::App;
use realtime::broker::memory::MemoryBroker;
use realtime::config::{Config, Secret};
use realtime::connection::Connection;
use realtime::json::{self, Value};
use realtime::log::{self, Format};
use realtime::time::{Instant, Now};
use realtime::ws::frame::{encode_frame, Opcode};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
/// 2023-11-14T22:13:20.000Z.
const UNIX_MS0: u64 = 1_700_000_000_000;
const TOKEN: &str = "abc.def.ghi";

/// One connection with `--access-log` on, a clock that moves only when told, and the lines it
/// logs. The capture is declared last so that it outlives the connection: a connection
/// dropped at the end of a test still logs into it.
struct Harness {
    app: Arc<App>,
    connection: Option<Connection>,
    t0: Instant,
    capture: log::Capture,
}

impl Harness {
    fn new(format: Format, configure: impl Fn(&mut Config)) -> Harness {
        let mut config = Config { access_log: true, ..Config::default() };
        configure(&mut config);
        let broker = Arc::new(MemoryBroker::with_epoch("test".into(), config.broker_limits()));
        let app = Arc::new(App::new(config, broker));
        let capture = log::capture(format);
        let t0 = Instant::now();
        let connection = Connection::new(app.clone(), CLIENT, Now { instant: t0, unix_ms: UNIX_MS0 });
        Harness { app, connection: Some(connection), t0, capture }
    }

    fn at(&self, after: Duration) -> Now {
        Now { instant: self.t0 + after, unix_ms: UNIX_MS0 + after.as_millis() as u64 }
    }

    fn connection(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("the connection is open")
    }

    fn send(&mut self, bytes: &[u8], after: Duration) {
        self.connection().receive(bytes);
        self.advance(after);
    }

    fn advance(&mut self, after: Duration) {
        let now = self.at(after);
        self.connection().advance(now, &no_wake());
    }

    /// Everything queued, taken by the client at `after`.
    fn take(&mut self, after: Duration) -> Vec<u8> {
        let t0 = self.t0;
        let connection = self.connection();
        let output = connection.output().to_vec();
        connection.consume_output(output.len(), t0 + after);
        output
    }

    fn publish(&self, channel: &str, text: &str, after: Duration) {
        let mut published = self.app.broker.publish(channel, text, self.at(after));
        // The memory broker answers a publish at once.
        assert!(matches!(published.poll(&no_wake()), std::task::Poll::Ready(Ok(_))), "publish");
    }

    fn lines(&self) -> Vec<String> {
        self.capture.lines()
    }

    /// The one JSON line logged so far, parsed.
    fn only_line(&self) -> Value {
        let lines = self.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        json::parse(lines[0].trim_end()).unwrap_or_else(|e| panic!("{e:?}: {}", lines[0]))
    }
}

/// The broker's wake-ups are not what these tests watch: they ring no bell and are never taken.
fn no_wake() -> realtime::wake::Wake {
    realtime::wake::WakeQueue::new(|| {}).wake_for(0)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn text(line: &Value, key: &str) -> String {
    line.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("no text {key} in {line:?}")).to_string()
}

fn number(line: &Value, key: &str) -> u64 {
    line.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("no number {key} in {line:?}"))
}

const SSE: &[u8] = b"GET /sse/e HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
const UPGRADE: &[u8] = b"GET /ws/w HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn a_plain_request_logs_one_line_with_every_field_when_its_response_is_queued() {
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(b"POST /publish/news HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", ms(1000));
    assert!(h.lines().is_empty(), "nothing is logged before the exchange ends");
    h.send(b"hello", ms(1250));
    let response = h.take(ms(1250));
    let line = h.only_line();
    assert_eq!(text(&line, "time"), "2023-11-14T22:13:21.250Z", "the time the connection was told");
    assert_eq!(text(&line, "level"), "info");
    assert_eq!(text(&line, "msg"), "access");
    assert_eq!(text(&line, "remote"), "192.0.2.7");
    assert_eq!(text(&line, "method"), "POST");
    assert_eq!(text(&line, "path"), "/publish/news");
    assert_eq!(number(&line, "status"), 201);
    assert_eq!(number(&line, "bytes"), response.len() as u64, "the whole response");
    assert_eq!(number(&line, "ms"), 250, "from the head to the response");
    assert_eq!(text(&line, "transport"), "http");
    assert_eq!(line.get("close"), None, "a close code is for WebSockets");
}

#[test]
fn pipelined_requests_log_one_line_each_with_their_own_bytes() {
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n", ms(5));
    let total = h.take(ms(5)).len() as u64;
    let lines: Vec<Value> = h.lines().iter().map(|l| json::parse(l.trim_end()).unwrap()).collect();
    let statuses: Vec<u64> = lines.iter().map(|l| number(l, "status")).collect();
    assert_eq!(statuses, [200, 404]);
    assert_eq!(lines.iter().map(|l| number(l, "bytes")).sum::<u64>(), total);
}

#[test]
fn a_long_poll_logs_when_it_is_answered_and_when_it_is_left_unanswered() {
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(b"GET /poll/news?timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n", ms(10));
    assert!(h.lines().is_empty(), "a parked poll has not ended");
    h.publish("news", "hello", ms(510));
    h.advance(ms(510));
    let answer = h.take(ms(510));
    let line = h.only_line();
    assert_eq!((text(&line, "transport"), number(&line, "status")), ("poll".into(), 200));
    assert_eq!(text(&line, "path"), "/poll/news?timeout=30");
    assert_eq!((number(&line, "ms"), number(&line, "bytes")), (500, answer.len() as u64));

    // The driver drops a connection whose client vanished while its poll was parked.
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(b"GET /poll/quiet?timeout=30 HTTP/1.1\r\nHost: x\r\n\r\n", ms(10));
    h.advance(ms(2010));
    h.connection = None;
    let line = h.only_line();
    assert_eq!(text(&line, "transport"), "poll");
    assert_eq!(line.get("status"), Some(&Value::Null), "no answer was sent");
    assert_eq!((number(&line, "ms"), number(&line, "bytes")), (2000, 0));
}

#[test]
fn an_sse_stream_ended_by_the_client_logs_its_whole_life() {
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(SSE, ms(0));
    let mut sent = h.take(ms(0)).len();
    h.publish("e", "one", ms(100));
    h.advance(ms(100));
    sent += h.take(ms(100)).len();
    assert!(h.lines().is_empty(), "an open stream has not ended");
    h.connection().receive_eof();
    h.advance(ms(2000));
    let line = h.only_line();
    assert_eq!((text(&line, "transport"), number(&line, "status")), ("sse".into(), 200));
    assert_eq!(text(&line, "path"), "/sse/e");
    assert_eq!((number(&line, "ms"), number(&line, "bytes")), (2000, sent as u64));
}

#[test]
fn a_websocket_closed_with_1000_logs_101_and_the_close_code() {
    let mut h = Harness::new(Format::Text, |_| {});
    h.send(UPGRADE, ms(0));
    let mut sent = h.take(ms(0)).len();
    let mut close = Vec::new();
    encode_frame(&mut close, true, Opcode::Close, &1000u16.to_be_bytes(), Some([1, 2, 3, 4]));
    h.send(&close, ms(3000));
    let echo = h.take(ms(3000));
    assert_eq!(echo, [0x88, 0x02, 0x03, 0xe8], "the server echoes 1000");
    sent += echo.len();
    let lines = h.lines();
    assert_eq!(
        lines,
        [format!(
            "2023-11-14T22:13:23.000Z INFO  access remote=192.0.2.7 method=GET path=/ws/w status=101 \
             bytes={sent} ms=3000 transport=ws close=1000\n"
        )]
    );
}

#[test]
fn a_websocket_that_vanishes_logs_1006_and_one_closed_by_the_server_logs_its_code() {
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(UPGRADE, ms(0));
    h.connection().receive_eof();
    h.advance(ms(5));
    assert_eq!(number(&h.only_line(), "close"), 1006, "RFC 6455 §7.1.5: no Close frame either way");

    let mut h = Harness::new(Format::Json, |_| {});
    h.send(UPGRADE, ms(0));
    h.app.begin_shutdown();
    h.advance(ms(5));
    h.connection().receive_eof();
    h.advance(ms(6));
    assert_eq!(number(&h.only_line(), "close"), 1001, "ours, though the peer never answered");
}

#[test]
fn a_token_in_the_query_or_a_header_never_reaches_the_log() {
    let requests = [
        format!("GET /healthz?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET /poll/p?since=&access_token={TOKEN}&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET /sse/s?%74oken={TOKEN} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"),
        format!("GET /poll/p?timeout=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
        format!("POST /publish/p?token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"),
    ];
    let secret = Secret::new(b"access-log-test-secret-of-32-bytes".to_vec()).unwrap();
    for format in [Format::Text, Format::Json] {
        // Open (the token is ignored), and with a secret (the token is refused): either way,
        // the exchange is logged and the token is not.
        for with_secret in [false, true] {
            for request in &requests {
                let mut h = Harness::new(format, |c| {
                    if with_secret {
                        c.token_secret = Some(secret.clone());
                    }
                });
                h.send(request.as_bytes(), ms(1));
                h.take(ms(1));
                h.connection = None;
                let lines = h.lines().concat();
                assert!(lines.contains(" access ") || lines.contains("\"access\""), "{format:?}: {lines}");
                assert!(!lines.contains(TOKEN) && !lines.contains("abc"), "{format:?} {request:?}: {lines}");
                assert!(!lines.contains("Bearer"), "no header is logged: {lines}");
            }
        }
    }
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(requests[1].as_bytes(), ms(1));
    assert_eq!(text(&h.only_line(), "path"), "/poll/p?since=&access_token=REDACTED&timeout=0");
}

#[test]
fn a_request_that_never_arrived_whole_is_logged_without_method_or_path() {
    let mut h = Harness::new(Format::Json, |c| c.header_timeout = Duration::from_secs(10));
    h.send(b"GET /healthz HTTP/1.1\r\n", ms(2000));
    h.advance(ms(10_000));
    let line = h.only_line();
    assert_eq!((text(&line, "method"), text(&line, "path")), ("-".into(), "-".into()));
    assert_eq!((number(&line, "status"), number(&line, "ms")), (408, 10_000), "timed from the accept");

    let mut h = Harness::new(Format::Json, |_| {});
    h.send(b"GET /a b HTTP/1.1\r\n\r\n", ms(3));
    assert_eq!(number(&h.only_line(), "status"), 400);
}

#[test]
fn without_the_flag_nothing_is_logged_and_with_it_the_level_does_not_matter() {
    let mut h = Harness::new(Format::Json, |c| c.access_log = false);
    h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ms(1));
    assert!(h.lines().is_empty());
    // Only access lines are written in this test binary: the level changes nothing else here.
    log::init(log::Level::Error, Format::Text);
    let mut h = Harness::new(Format::Json, |_| {});
    h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ms(1));
    assert_eq!(h.lines().len(), 1, "--access-log is the access log's own switch");
}

// --- The real binary ---------------------------------------------------------------------------

/// How long the binary may take to say something.
const PATIENCE: Duration = Duration::from_secs(20);

/// The binary, its stderr's lines as they come, and the address its startup line gave.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_realtime"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let mut server = Server { child, lines, addr: String::new() };
        let startup = server.next_json();
        let msg = text(&startup, "msg");
        server.addr = msg.strip_prefix("listening on http://").unwrap_or_else(|| panic!("{startup:?}")).to_string();
        assert_eq!(text(&startup, "version"), env!("CARGO_PKG_VERSION"));
        server
    }

    /// The next stderr line, which must be one JSON object.
    fn next_json(&self) -> Value {
        let line = self.lines.recv_timeout(PATIENCE).expect("a log line in time");
        json::parse(&line).unwrap_or_else(|e| panic!("not one JSON object ({e:?}): {line}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_binary_writes_json_lines_a_startup_line_and_one_access_line_per_request() {
    for model in ["epoll", "threads"] {
        let server = Server::start(&["--model", model, "--access-log", "--log-format", "json"]);
        let mut client = TcpStream::connect(&server.addr).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let request = format!("GET /healthz?token={TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        client.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        client.read_to_end(&mut response).unwrap();
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"), "{model}");
        let line = server.next_json();
        assert_eq!(text(&line, "msg"), "access", "{model}: {line:?}");
        assert_eq!(text(&line, "level"), "info");
        assert_eq!(text(&line, "remote"), "127.0.0.1");
        assert_eq!((text(&line, "method"), text(&line, "path")), ("GET".into(), "/healthz?token=REDACTED".into()));
        assert_eq!(number(&line, "status"), 200);
        assert_eq!(number(&line, "bytes"), response.len() as u64, "{model}: what the client received");
        assert!(number(&line, "ms") < PATIENCE.as_millis() as u64);
        assert_eq!(text(&line, "transport"), "http");
        let time = text(&line, "time");
        assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    }
}
