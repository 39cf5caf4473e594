//! Long polling end to end, for every server model: the five steps, resume, gaps, timeouts,
//! and a stress test that no message is lost or repeated between polls.

mod common;

use std::io::Write;
use std::thread;
use std::time::Duration;

use common::{each_model, read_response, TestServer};
use realtime::json::Value;

fn texts(answer: &Value) -> Vec<String> {
    answer
        .get("messages")
        .and_then(Value::as_array)
        .expect("a messages array")
        .iter()
        .map(|m| m.get("text").and_then(Value::as_str).unwrap().to_string())
        .collect()
}

fn cursor(answer: &Value) -> String {
    answer.get("cursor").and_then(Value::as_str).expect("a cursor").to_string()
}

fn parked_polls(server: &TestServer) -> usize {
    server.server.app().stats.snapshot().parked_polls
}

/// Sends a poll on a new connection without waiting for the answer.
fn start_poll(server: &TestServer, path: &str) -> std::net::TcpStream {
    let mut stream = server.connect();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    stream
}

#[test]
fn the_five_steps_of_long_polling() {
    each_model(
        |_| {},
        |server| {
            // Step 1: the client asks, with no cursor: only new messages.
            let mut client = start_poll(server, "/poll/messages");
            // Step 2: nothing new, so the request is held open.
            common::eventually("the poll parks", || parked_polls(server) == 1);
            // Step 3: a message is published.
            let id = server.publish("messages", "Hi");
            // Step 4: the held request is answered with it and a cursor.
            let answer = read_response(&mut client, false).unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.header("content-type"), Some("application/json"));
            let answer = answer.json();
            assert_eq!(texts(&answer), ["Hi"]);
            assert_eq!(cursor(&answer), id);
            let message = &answer.get("messages").unwrap().as_array().unwrap()[0];
            assert_eq!(message.get("id").and_then(Value::as_str), Some(id.as_str()));
            assert!(message.get("time").and_then(Value::as_u64).is_some());
            // Nothing but the messages and the cursor (no `gap` here): the server's clock is
            // the head's `Date`, not repeated in the body (docs/PROTOCOL.md §6).
            assert_eq!(answer.get("timestamp"), None);
            assert_eq!(answer.get("gap"), None);
            // Step 5: the client asks again from the cursor, on the same connection, and waits.
            write!(client, "GET /poll/messages?since={id} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            common::eventually("the next poll parks", || parked_polls(server) == 1);
            server.publish("messages", "again");
            assert_eq!(texts(&read_response(&mut client, false).unwrap().json()), ["again"]);
        },
    );
}

#[test]
fn messages_after_the_cursor_are_answered_at_once() {
    each_model(
        |_| {},
        |server| {
            let first = server.publish("resume", "one");
            server.publish("resume", "two");
            server.publish("resume", "three");
            let answer = server.get(&format!("/poll/resume?since={first}")).json();
            assert_eq!(texts(&answer), ["two", "three"]);
        },
    );
}

#[test]
fn a_timeout_answers_an_empty_list_with_the_same_cursor() {
    each_model(
        |_| {},
        |server| {
            let id = server.publish("quiet", "only");
            let answer = server.get(&format!("/poll/quiet?since={id}&timeout=1")).json();
            assert_eq!(texts(&answer), Vec::<String>::new());
            assert_eq!(cursor(&answer), id);
        },
    );
}

#[test]
fn timeout_zero_is_plain_polling() {
    each_model(
        |_| {},
        |server| {
            let answer = server.get("/poll/plain?timeout=0").json();
            assert_eq!(texts(&answer), Vec::<String>::new());
        },
    );
}

#[test]
fn a_cursor_older_than_the_history_answers_gap_true() {
    each_model(
        |config| config.history = 3,
        |server| {
            let first = server.publish("small", "1");
            for text in ["2", "3", "4", "5"] {
                server.publish("small", text);
            }
            let answer = server.get(&format!("/poll/small?since={first}")).json();
            assert_eq!(answer.get("gap").and_then(Value::as_bool), Some(true));
            assert_eq!(texts(&answer), ["3", "4", "5"]);
        },
    );
}

#[test]
fn since_0_answers_everything_retained_oldest_first_with_a_gap_once_the_start_is_gone() {
    each_model(
        |config| config.history = 3,
        |server| {
            let whole: Vec<String> = ["a", "b"].iter().map(|text| server.publish("whole", text)).collect();
            let answer = server.get("/poll/whole?since=0").json();
            assert_eq!(texts(&answer), ["a", "b"]);
            assert_eq!(answer.get("gap"), None, "nothing the channel had is gone");
            assert_eq!(cursor(&answer), whole[1]);

            let ids: Vec<String> = (1..=5).map(|i| server.publish("trimmed", &i.to_string())).collect();
            let answer = server.get("/poll/trimmed?since=0").json();
            assert_eq!(answer.get("gap").and_then(Value::as_bool), Some(true), "1 and 2 are gone");
            assert_eq!(texts(&answer), ["3", "4", "5"]);
            assert_eq!(cursor(&answer), ids[4]);
        },
    );
}

#[test]
fn idle_channels_are_reclaimed_so_max_channels_counts_channels_in_use_and_old_cursors_get_a_gap() {
    const TTL: Duration = Duration::from_millis(300);
    each_model(
        |config| {
            config.max_channels = 2;
            config.channel_ttl = TTL;
        },
        |server| {
            server.publish("one", "1");
            let seen = server.publish("two", "a");
            server.publish("two", "b");
            let refused = server.request("POST", "/publish/three", Some("x"));
            assert_eq!(refused.status, 503, "two channels in use: {}", refused.text());
            thread::sleep(TTL + TTL / 4);
            // Both channels have been idle for their TTL: this publish sweeps them away.
            server.publish("three", "x");
            let usage = server.server.app().broker.usage();
            assert_eq!(usage.channels, 1);
            // A reader of the dropped channel who had not seen "b" is told it missed something.
            let answer = server.get(&format!("/poll/two?since={seen}&timeout=0")).json();
            assert_eq!(answer.get("gap").and_then(Value::as_bool), Some(true));
            assert_eq!(texts(&answer), Vec::<String>::new());
        },
    );
}

#[test]
fn a_cursor_from_before_a_restart_answers_gap_true_with_the_history() {
    each_model(
        |_| {},
        |server| {
            let id = server.publish("restart", "new life");
            let foreign_epoch = if id.starts_with("zzzz") { "yyyy" } else { "zzzz" };
            let answer = server.get(&format!("/poll/restart?since={foreign_epoch}-41")).json();
            assert_eq!(answer.get("gap").and_then(Value::as_bool), Some(true));
            assert_eq!(texts(&answer), ["new life"]);
        },
    );
}

#[test]
fn malformed_cursors_and_timeouts_are_400() {
    each_model(
        |_| {},
        |server| {
            for path in ["/poll/c?since=nonsense", "/poll/c?since=%zz", "/poll/c?timeout=soon", "/poll/c?timeout=-1"] {
                assert_eq!(server.get(path).status, 400, "{path}");
            }
        },
    );
}

#[test]
fn a_poller_receives_every_one_of_2000_fast_messages_exactly_once_in_order() {
    const COUNT: usize = 2000;
    each_model(
        |_| {},
        |server| {
            let addr = server.addr();
            let start = server.publish("firehose", "start");
            let publisher = thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                // Small writes without TCP_NODELAY meet Nagle's algorithm and delayed ACKs,
                // which add 40 ms to every request.
                stream.set_nodelay(true).unwrap();
                for i in 0..COUNT {
                    let text = i.to_string();
                    let request = format!(
                        "POST /publish/firehose HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    stream.write_all(request.as_bytes()).unwrap();
                    assert_eq!(read_response(&mut stream, false).unwrap().status, 201);
                }
            });
            let mut stream = server.connect();
            let mut since = start;
            let mut received = Vec::with_capacity(COUNT);
            while received.len() < COUNT {
                write!(stream, "GET /poll/firehose?since={since} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let answer = read_response(&mut stream, false).unwrap().json();
                assert_eq!(answer.get("gap"), None, "the default history covers this test");
                received.extend(texts(&answer).into_iter().map(|t| t.parse::<usize>().unwrap()));
                since = cursor(&answer);
            }
            publisher.join().unwrap();
            let expected: Vec<usize> = (0..COUNT).collect();
            assert_eq!(received, expected);
        },
    );
}

#[test]
fn many_parked_polls_are_all_answered_by_one_publish() {
    each_model(
        |_| {},
        |server| {
            let mut clients: Vec<_> = (0..20).map(|_| start_poll(server, "/poll/crowd")).collect();
            common::eventually("all polls park", || parked_polls(server) == 20);
            server.publish("crowd", "everyone");
            for stream in &mut clients {
                assert_eq!(texts(&read_response(stream, false).unwrap().json()), ["everyone"]);
            }
        },
    );
}

/// A parked poll or an SSE stream whose client hangs up must free what it holds at once, on
/// both models: the event loop hears it from epoll (`EPOLLRDHUP`), the thread model looks at
/// the socket between naps. Before, a parked thread noticed only at the poll timeout (up to
/// 60 s) or at its next keepalive write, and reloading browsers piled up dead threads.
#[test]
fn clients_that_hang_up_on_parked_polls_and_streams_free_their_connections_and_threads() {
    const EACH: usize = 200;
    each_model(
        // Nothing else would end these waits before the test gives up (`PATIENCE`, 20 s): no
        // poll timeout, no keepalive write. Only noticing the hang-up frees them in time.
        |config| config.keepalive = Duration::from_secs(60),
        |server| {
            let app = server.server.app().clone();
            // Once it has answered a request, the server's own threads (workers) all exist.
            assert_eq!(server.get("/healthz").status, 200);
            let idle_threads = app.stats.snapshot().threads;
            let mut clients = Vec::new();
            for i in 0..EACH {
                let mut poll = server.connect();
                poll.write_all(format!("GET /poll/gone{i}?timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
                let mut sse = server.connect();
                sse.write_all(
                    format!("GET /sse/gone{i} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
                )
                .unwrap();
                clients.push(poll);
                clients.push(sse);
            }
            common::eventually("every poll parked and every stream open", || {
                let s = app.stats.snapshot();
                s.parked_polls == EACH && s.open[1] == EACH
            });
            let started = std::time::Instant::now();
            drop(clients);
            common::eventually("the server back to idle", || {
                let s = app.stats.snapshot();
                let idle = s.open.iter().sum::<usize>() == 0 && s.threads <= idle_threads;
                if !idle && std::time::Instant::now() > started + Duration::from_secs(15) {
                    eprintln!("not idle: open {:?}, threads {} (idle {idle_threads})", s.open, s.threads);
                }
                idle
            });
            eprintln!("model {}: {} connections released in {:?}", server.model.name(), 2 * EACH, started.elapsed());
        },
    );
}
