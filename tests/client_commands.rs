//! `realtime sub` and `realtime pub`, the real binary against a real server on every model and,
//! for `sub`, every transport: what they print, in what order, how they resume and reconnect,
//! and their exit codes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{each_model, TestServer, PATIENCE};
use realtime::token::{sign, ChannelPattern, Claims};

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

/// The routes `realtime sub` follows a channel on, one per transport.
const ROUTES: [&str; 3] = ["sse", "ws", "poll"];

/// `realtime sub` running in the background; its stdout arrives line by line.
struct Sub {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Sub {
    fn start(args: &[&str]) -> Sub {
        let mut child = Command::new(BIN)
            .arg("sub")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(|line| drop(sender.send(line))));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Sub { child, lines, stderr }
    }

    /// The next line it printed.
    fn next_line(&self) -> String {
        let stderr = || self.stderr.lock().unwrap().clone();
        self.lines.recv_timeout(PATIENCE).unwrap_or_else(|_| panic!("no line from sub; stderr: {}", stderr()))
    }

    /// Waits for it to exit: its status, the rest of its stdout and its stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "sub did not exit; stderr: {}", self.stderr.lock().unwrap());
            thread::sleep(Duration::from_millis(10));
        };
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        thread::sleep(Duration::from_millis(50)); // the stderr reader's last bytes
        let stderr = self.stderr.lock().unwrap().clone();
        (status, lines, stderr)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url(addr: impl std::fmt::Display, route: &str, channel: &str) -> String {
    format!("http://{addr}/{route}/{channel}")
}

/// Whether a subscriber on `route` is registered with the server, so that what is published
/// next is owed to it.
fn subscribed(server: &TestServer, route: &str) -> bool {
    let stats = server.get("/stats").json();
    let count = match route {
        "poll" => stats.get("parked_polls"),
        kind => stats.get("connections").and_then(|c| c.get(kind)),
    };
    count.and_then(|v| v.as_u64()).unwrap_or(0) >= 1
}

#[test]
fn sub_count_prints_the_texts_published_after_it_connected_in_order_and_exits_0() {
    each_model(
        |_| {},
        |server| {
            for route in ROUTES {
                let channel = format!("count-{route}");
                server.publish(&channel, "published before it connected");
                let sub = Sub::start(&[&url(server.addr(), route, &channel), "--count", "3"]);
                common::eventually("sub subscribes", || subscribed(server, route));
                for text in ["one", "two", "three", "four"] {
                    server.publish(&channel, text);
                }
                let (status, lines, stderr) = sub.finish();
                assert!(status.success(), "{route}: {status}: {stderr}");
                assert_eq!(lines, ["one", "two", "three"], "{route}");
            }
        },
    );
}

#[test]
fn sub_since_replays_the_messages_after_the_id_and_json_prints_their_envelopes() {
    each_model(
        |_| {},
        |server| {
            for route in ROUTES {
                let channel = format!("since-{route}");
                let ids: Vec<String> = ["a", "b", "c"].iter().map(|text| server.publish(&channel, text)).collect();
                let sub =
                    Sub::start(&[&url(server.addr(), route, &channel), "--since", &ids[0], "--count=2", "--json"]);
                let (status, lines, stderr) = sub.finish();
                assert!(status.success(), "{route}: {status}: {stderr}");
                assert_eq!(lines.len(), 2, "{route}: {lines:?}");
                for (line, (id, text)) in lines.iter().zip([(&ids[1], "b"), (&ids[2], "c")]) {
                    let envelope = realtime::json::parse(line).unwrap();
                    assert_eq!(envelope.get("id").and_then(|v| v.as_str()), Some(id.as_str()), "{route}");
                    assert_eq!(envelope.get("text").and_then(|v| v.as_str()), Some(text), "{route}");
                    assert!(envelope.get("time").and_then(|v| v.as_u64()).is_some(), "{route}: {line}");
                }
                assert!(!stderr.contains("gap"), "{route}: {stderr}");
            }
        },
    );
}

#[test]
fn sub_reports_a_gap_on_stderr_when_the_history_no_longer_reaches_back() {
    each_model(
        |config| config.history = 2,
        |server| {
            for route in ROUTES {
                let channel = format!("gap-{route}");
                let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|text| server.publish(&channel, text)).collect();
                let sub = Sub::start(&[&url(server.addr(), route, &channel), "--since", &ids[0], "--count", "2"]);
                let (status, lines, stderr) = sub.finish();
                assert!(status.success(), "{route}: {status}: {stderr}");
                assert_eq!(lines, ["c", "d"], "{route}");
                assert!(stderr.contains(&format!("gap: the server no longer had every message after {}", ids[0])));
            }
        },
    );
}

/// A TCP relay in front of the server whose connections the test can cut, as a network or a
/// restarting proxy would.
struct Relay {
    addr: String,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let held = connections.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else { return };
                let mut held = held.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, connections }
    }

    /// Cuts every connection made so far.
    fn cut(&self) {
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn sub_reconnects_after_a_dropped_connection_and_resumes_from_the_last_id() {
    each_model(
        |config| config.sse_retry = Duration::from_millis(50),
        |server| {
            for route in ROUTES {
                let channel = format!("drop-{route}");
                let relay = Relay::start(server.addr());
                let sub = Sub::start(&[&url(&relay.addr, route, &channel), "--count", "3"]);
                common::eventually("sub subscribes", || subscribed(server, route));
                server.publish(&channel, "before the drop");
                assert_eq!(sub.next_line(), "before the drop", "{route}");
                relay.cut();
                // Published while the subscriber is away: owed to it when it resumes.
                server.publish(&channel, "while it was away");
                server.publish(&channel, "also while away");
                let (status, lines, stderr) = sub.finish();
                assert!(status.success(), "{route}: {status}: {stderr}");
                assert_eq!(lines, ["while it was away", "also while away"], "{route}: {stderr}");
                assert!(stderr.contains("reconnecting in"), "{route}: {stderr}");
            }
        },
    );
}

#[test]
fn sub_sends_its_token_and_a_refusal_ends_it_with_status_1() {
    let secret = "client-commands-secret-of-32-bytes!";
    each_model(
        |config| {
            config.token_secret = Some(realtime::config::Secret::new(secret.as_bytes().to_vec()).unwrap());
            config.publish_token = Some("publisher".into());
        },
        |server| {
            let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
            let claims =
                Claims { exp, sub: None, channels: vec![ChannelPattern::parse("private").unwrap()], publish: vec![] };
            let token = sign(&claims, secret.as_bytes());
            for route in ROUTES {
                let refused = Sub::start(&[&url(server.addr(), route, "private"), "--count", "1"]);
                let (status, lines, stderr) = refused.finish();
                assert_eq!(status.code(), Some(1), "{route}: {stderr}");
                assert!(lines.is_empty() && stderr.contains("401"), "{route}: {stderr}");

                let sub = Sub::start(&[&url(server.addr(), route, "private"), "--count", "1", "--token", &token]);
                common::eventually("sub subscribes", || subscribed(server, route));
                let text = format!("for the token holder on {route}");
                let published = server.request("POST", "/publish/private?token=publisher", Some(&text));
                assert_eq!(published.status, 201);
                let (status, lines, stderr) = sub.finish();
                assert!(status.success(), "{route}: {stderr}");
                assert_eq!(lines, [text]);
            }
        },
    );
}

#[test]
fn sub_that_cannot_connect_at_first_exits_1_instead_of_retrying() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (status, _, stderr) = Sub::start(&[&url(free, "sse", "c")]).finish();
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains(&format!("cannot connect to {free}")), "{stderr}");
}

/// Runs `realtime pub ARGS` with `stdin`: its status, stdout and stderr.
fn publish(args: &[&str], stdin: &str) -> (ExitStatus, String, String) {
    let mut child = Command::new(BIN)
        .arg("pub")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // With TEXT, pub may exit before it would read this: a failed write is no failure here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let output = child.wait_with_output().unwrap();
    (output.status, String::from_utf8(output.stdout).unwrap(), String::from_utf8_lossy(&output.stderr).into())
}

/// The (id, text) of every message in `channel` after `since`.
fn messages_after(server: &TestServer, channel: &str, since: &str) -> Vec<(String, String)> {
    let answer = server.get(&format!("/poll/{channel}?since={since}&timeout=0")).json();
    let messages = answer.get("messages").and_then(|m| m.as_array()).unwrap();
    let field = |message: &realtime::json::Value, name| message.get(name).and_then(|v| v.as_str()).unwrap().to_string();
    messages.iter().map(|message| (field(message, "id"), field(message, "text"))).collect()
}

#[test]
fn pub_publishes_its_text_or_each_line_of_stdin_and_prints_each_id() {
    each_model(
        |_| {},
        |server| {
            let marker = server.publish("pub", "marker");
            let endpoint = format!("http://{}/publish/pub", server.addr());
            let (status, stdout, stderr) = publish(&[&endpoint, "hello there"], "ignored: TEXT was given");
            assert!(status.success(), "{stderr}");
            let (status, more, stderr) = publish(&[&endpoint], "x\ny\r\nz");
            assert!(status.success(), "{stderr}");
            let ids: Vec<String> = stdout.lines().chain(more.lines()).map(String::from).collect();
            let texts = ["hello there", "x", "y", "z"];
            let expected: Vec<(String, String)> = ids.into_iter().zip(texts.map(String::from)).collect();
            assert_eq!(messages_after(server, "pub", &marker), expected);
        },
    );
}

#[test]
fn pub_sends_its_token_and_a_refused_publish_exits_1() {
    each_model(
        |config| config.publish_token = Some("publisher-secret".into()),
        |server| {
            let endpoint = format!("http://{}/publish/guarded", server.addr());
            let (status, stdout, stderr) = publish(&[&endpoint, "no token"], "");
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert!(stdout.is_empty() && stderr.contains("401") && stderr.contains(&endpoint), "{stderr}");
            let (status, stdout, stderr) = publish(&[&endpoint, "with the token", "--token", "publisher-secret"], "");
            assert!(status.success(), "{stderr}");
            assert_eq!(stdout.lines().count(), 1);
        },
    );
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [&["sub"][..], &["sub", "http://h:1/nope/c"], &["sub", "http://h:1/sse/c", "--count=x"], &["pub"]] {
        let output = Command::new(BIN).args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr).trim_end().lines().count(), 1, "{args:?}");
    }
}
