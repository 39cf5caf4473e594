//! RFC 6455 against a real server, for every server model: the opening handshake (§4), the
//! framing rules (§5), the closing handshake (§7) and the channel and echo routes. Malformed
//! frames are written raw; answers are read with the crate's client session, whose own codec
//! is tested against the RFC's vectors in `src/ws/`.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{each_model, read_response, TestServer, PATIENCE};
use realtime::json::Value;
use realtime::ws::client::Client;
use realtime::ws::close::CloseCode;
use realtime::ws::frame::{encode_frame, Opcode};
use realtime::ws::message::Message;
use realtime::ws::session::Event;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn connect(server: &TestServer, path: &str) -> Client {
    let client = Client::connect(&server.addr().to_string(), path).expect("handshake");
    client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
    client
}

/// A masked client frame, as RFC 6455 §5.3 requires of clients.
fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]));
    out
}

/// The close code the server ends the connection with.
fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match client.next_event() {
            Ok(Event::Closed(info)) => return info.code.map(|c| c.0),
            Ok(Event::Failed(error)) => panic!("the server broke the protocol: {error:?}"),
            Ok(_) => {}
            Err(error) => panic!("connection ended without a close frame: {error}"),
        }
    }
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn handshake_status(server: &TestServer, request: &str) -> common::HttpResponse {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream, false).unwrap()
}

#[test]
fn rfc6455_4_2_2_the_server_accepts_with_the_rfc_example_key() {
    each_model(
        |_| {},
        |server| {
            let response = handshake_status(server, &upgrade_request("/echo", ""));
            assert_eq!(response.status, 101);
            // RFC 6455 §1.3's example: this key gives this accept value.
            assert_eq!(response.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
            assert!(response.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
            assert!(response.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
        },
    );
}

#[test]
fn rfc6455_4_2_1_bytes_after_the_handshake_belong_to_the_websocket() {
    each_model(
        |_| {},
        |server| {
            let mut stream = server.connect();
            let mut bytes = upgrade_request("/echo", "").into_bytes();
            bytes.extend_from_slice(&frame(true, Opcode::Text, b"early"));
            stream.write_all(&bytes).unwrap();
            let response = read_response(&mut stream, true).unwrap();
            assert_eq!(response.status, 101);
            let mut echo = [0u8; 7];
            std::io::Read::read_exact(&mut stream, &mut echo).unwrap();
            assert_eq!(&echo, b"\x81\x05early", "an unmasked text frame echoing the early frame");
        },
    );
}

#[test]
fn rfc6455_4_2_1_a_plain_get_is_426_with_upgrade_websocket() {
    each_model(
        |_| {},
        |server| {
            for path in ["/echo", "/ws/chat"] {
                let response = server.get(path);
                assert_eq!(response.status, 426, "{path}");
                assert_eq!(response.header("upgrade"), Some("websocket"));
                assert_eq!(response.header("sec-websocket-version"), Some("13"));
            }
        },
    );
}

#[test]
fn rfc6455_4_2_2_an_unsupported_version_is_426_with_sec_websocket_version_13() {
    each_model(
        |_| {},
        |server| {
            let request = upgrade_request("/echo", "").replace("Version: 13", "Version: 8");
            let response = handshake_status(server, &request);
            assert_eq!((response.status, response.header("sec-websocket-version")), (426, Some("13")));
        },
    );
}

#[test]
fn rfc6455_4_2_1_a_bad_key_or_missing_connection_upgrade_is_400() {
    each_model(
        |_| {},
        |server| {
            let short_key = upgrade_request("/echo", "").replace(KEY, "c2hvcnQ=");
            assert_eq!(handshake_status(server, &short_key).status, 400);
            let no_key = upgrade_request("/echo", "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
            assert_eq!(handshake_status(server, &no_key).status, 400);
            let no_connection = upgrade_request("/echo", "").replace("Connection: Upgrade", "Connection: keep-alive");
            assert_eq!(handshake_status(server, &no_connection).status, 400);
        },
    );
}

#[test]
fn rfc6455_10_2_cross_origin_handshakes_are_refused_unless_allowed() {
    each_model(
        |_| {},
        |server| {
            let foreign = handshake_status(server, &upgrade_request("/echo", "Origin: http://evil.example\r\n"));
            assert_eq!(foreign.status, 403);
            let same = handshake_status(server, &upgrade_request("/echo", "Origin: http://localhost\r\n"));
            assert_eq!(same.status, 101);
        },
    );
    each_model(
        |config| config.allowed_origins = vec!["https://app.example".into()],
        |server| {
            let allowed = handshake_status(server, &upgrade_request("/echo", "Origin: https://app.example\r\n"));
            assert_eq!(allowed.status, 101);
        },
    );
}

#[test]
fn rfc6455_5_1_an_unmasked_client_frame_is_closed_with_1002() {
    each_model(
        |_| {},
        |server| {
            let mut client = connect(server, "/echo");
            let mut unmasked = Vec::new();
            encode_frame(&mut unmasked, true, Opcode::Text, b"hi", None);
            client.send_raw(&unmasked).unwrap();
            assert_eq!(close_code(&mut client), Some(1002));
        },
    );
}

#[test]
fn rfc6455_5_2_reserved_bits_and_opcodes_are_closed_with_1002() {
    each_model(
        |_| {},
        |server| {
            let mut rsv = frame(true, Opcode::Text, b"x");
            rsv[0] |= 0x40;
            let mut opcode = frame(true, Opcode::Text, b"x");
            opcode[0] = (opcode[0] & 0xf0) | 0x3;
            for bad in [rsv, opcode] {
                let mut client = connect(server, "/echo");
                client.send_raw(&bad).unwrap();
                assert_eq!(close_code(&mut client), Some(1002));
            }
        },
    );
}

#[test]
fn rfc6455_5_5_control_frames_over_125_bytes_or_fragmented_are_closed_with_1002() {
    each_model(
        |_| {},
        |server| {
            for bad in [frame(true, Opcode::Ping, &[0; 126]), frame(false, Opcode::Ping, b"x")] {
                let mut client = connect(server, "/echo");
                client.send_raw(&bad).unwrap();
                assert_eq!(close_code(&mut client), Some(1002));
            }
        },
    );
}

#[test]
fn rfc6455_5_4_fragments_are_reassembled_with_control_frames_interleaved() {
    each_model(
        |_| {},
        |server| {
            let mut client = connect(server, "/echo");
            let mut bytes = frame(false, Opcode::Text, b"Hel");
            bytes.extend(frame(true, Opcode::Ping, b"mid"));
            bytes.extend(frame(true, Opcode::Continuation, b"lo"));
            client.send_raw(&bytes).unwrap();
            // §5.5.2: the pong carries the ping's payload; §5.4: the message arrives whole.
            assert_eq!(client.next_event().unwrap(), Event::Pong(b"mid".to_vec()));
            assert_eq!(client.next_message().unwrap(), Message::Text("Hello".into()));
        },
    );
}

#[test]
fn rfc6455_5_4_a_continuation_without_a_message_or_a_new_message_inside_one_is_1002() {
    each_model(
        |_| {},
        |server| {
            let mut inside = frame(false, Opcode::Text, b"a");
            inside.extend(frame(true, Opcode::Text, b"b"));
            for bad in [frame(true, Opcode::Continuation, b"x"), inside] {
                let mut client = connect(server, "/echo");
                client.send_raw(&bad).unwrap();
                assert_eq!(close_code(&mut client), Some(1002));
            }
        },
    );
}

#[test]
fn rfc6455_8_1_invalid_utf8_fails_fast_with_1007() {
    each_model(
        |_| {},
        |server| {
            let mut client = connect(server, "/echo");
            // The first fragment already holds a byte that can never be UTF-8; the message is
            // never finished, so only a validator that checks as bytes arrive can answer.
            client.send_raw(&frame(false, Opcode::Text, b"ok \xf4\x90")).unwrap();
            assert_eq!(close_code(&mut client), Some(1007));
        },
    );
}

#[test]
fn rfc6455_5_5_3_unsolicited_pongs_are_ignored() {
    each_model(
        |_| {},
        |server| {
            let mut client = connect(server, "/echo");
            client.send_raw(&frame(true, Opcode::Pong, b"heartbeat")).unwrap();
            client.send_text("still here").unwrap();
            assert_eq!(client.next_message().unwrap(), Message::Text("still here".into()));
        },
    );
}

#[test]
fn echo_returns_text_and_binary_messages_unchanged() {
    each_model(
        |_| {},
        |server| {
            let mut client = connect(server, "/echo");
            client.send_text("héllo ☃").unwrap();
            assert_eq!(client.next_message().unwrap(), Message::Text("héllo ☃".into()));
            let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
            client.send_binary(&big).unwrap();
            assert_eq!(client.next_message().unwrap(), Message::Binary(big));
        },
    );
}

#[test]
fn rfc6455_5_5_1_the_server_echoes_the_close_code_and_closes_tcp() {
    each_model(
        |_| {},
        |server| {
            let mut client = connect(server, "/echo");
            client.close(CloseCode::NORMAL, "bye").unwrap();
            assert_eq!(close_code(&mut client), Some(1000));
            let mut stream = client.stream().try_clone().unwrap();
            assert!(common::is_closed(&mut stream), "§7.1.1: the server closes the TCP connection first");
        },
    );
}

#[test]
fn rfc6455_7_4_bad_close_payloads_are_1002_or_1007() {
    each_model(
        |_| {},
        |server| {
            let cases: [(&[u8], u16); 3] = [(b"\x03", 1002), (b"\x03\xed", 1002), (b"\x03\xe8\xff", 1007)];
            for (payload, code) in cases {
                let mut client = connect(server, "/echo");
                client.send_raw(&frame(true, Opcode::Close, payload)).unwrap();
                assert_eq!(close_code(&mut client), Some(code), "{payload:?}");
            }
        },
    );
}

#[test]
fn rfc6455_7_4_1_a_frame_over_the_message_limit_is_1009() {
    each_model(
        |config| config.max_message_bytes = 1024,
        |server| {
            let mut client = connect(server, "/echo");
            client.send_raw(&frame(true, Opcode::Binary, &[0; 1025])).unwrap();
            assert_eq!(close_code(&mut client), Some(1009));
        },
    );
}

fn envelope(message: Message) -> Value {
    match message {
        Message::Text(text) => realtime::json::parse(&text).unwrap(),
        Message::Binary(_) => panic!("channel messages are text frames"),
    }
}

#[test]
fn channel_messages_arrive_as_text_frames_and_client_text_is_published() {
    each_model(
        |_| {},
        |server| {
            let mut alice = connect(server, "/ws/chat");
            let mut bob = connect(server, "/ws/chat");
            alice.send_text("hi bob").unwrap();
            for client in [&mut alice, &mut bob] {
                let message = envelope(client.next_message().unwrap());
                assert_eq!(message.get("text").and_then(Value::as_str), Some("hi bob"));
                assert!(message.get("id").and_then(Value::as_str).is_some());
            }
            server.publish("chat", "from http");
            let message = envelope(bob.next_message().unwrap());
            assert_eq!(message.get("text").and_then(Value::as_str), Some("from http"));
        },
    );
}

#[test]
fn channel_since_resumes_after_the_cursor() {
    each_model(
        |_| {},
        |server| {
            let first = server.publish("resume", "one");
            server.publish("resume", "two");
            let mut client = connect(server, &format!("/ws/resume?since={first}"));
            let message = envelope(client.next_message().unwrap());
            assert_eq!(message.get("text").and_then(Value::as_str), Some("two"));
        },
    );
}

#[test]
fn channel_resume_past_the_history_sends_a_gap_frame_first() {
    each_model(
        |config| config.history = 2,
        |server| {
            let first = server.publish("small", "1");
            for text in ["2", "3", "4"] {
                server.publish("small", text);
            }
            let mut client = connect(server, &format!("/ws/small?since={first}"));
            let gap = envelope(client.next_message().unwrap());
            assert_eq!(gap.get("gap").and_then(Value::as_bool), Some(true));
            assert_eq!(gap.get("since").and_then(Value::as_str), Some(first.as_str()));
            let texts: Vec<String> = (0..2)
                .map(|_| envelope(client.next_message().unwrap()).get("text").unwrap().as_str().unwrap().to_string())
                .collect();
            assert_eq!(texts, ["3", "4"]);
        },
    );
}

#[test]
fn channel_since_0_replays_everything_retained_with_a_gap_frame_once_the_start_is_gone() {
    let text = |message: Message| envelope(message).get("text").and_then(Value::as_str).unwrap().to_string();
    each_model(
        |config| config.history = 2,
        |server| {
            for message in ["a", "b"] {
                server.publish("whole", message);
            }
            let mut client = connect(server, "/ws/whole?since=0");
            assert_eq!([text(client.next_message().unwrap()), text(client.next_message().unwrap())], ["a", "b"]);

            let ids: Vec<String> = (1..=4).map(|i| server.publish("trimmed", &i.to_string())).collect();
            let mut client = connect(server, "/ws/trimmed?since=0");
            let gap = envelope(client.next_message().unwrap());
            assert_eq!(gap.get("gap").and_then(Value::as_bool), Some(true));
            assert_eq!(gap.get("oldest").and_then(Value::as_str), Some(ids[2].as_str()));
            assert_eq!([text(client.next_message().unwrap()), text(client.next_message().unwrap())], ["3", "4"]);
        },
    );
}

#[test]
fn channel_binary_messages_are_refused_with_1003_and_big_text_with_1009() {
    each_model(
        |config| config.max_publish_bytes = 8,
        |server| {
            let mut client = connect(server, "/ws/strict");
            client.send_binary(b"raw").unwrap();
            assert_eq!(close_code(&mut client), Some(1003));
            let mut client = connect(server, "/ws/strict");
            client.send_text("nine char").unwrap();
            assert_eq!(close_code(&mut client), Some(1009));
        },
    );
}

#[test]
fn keepalive_pings_are_sent_and_silent_peers_are_dropped() {
    each_model(
        |config| config.keepalive = Duration::from_millis(200),
        |server| {
            let mut client = connect(server, "/echo");
            assert_eq!(client.next_event().unwrap(), Event::Ping(Vec::new()));
            // A raw socket that never answers pings is closed after two intervals.
            let mut silent = server.connect();
            silent.write_all(upgrade_request("/echo", "").as_bytes()).unwrap();
            assert_eq!(read_response(&mut silent, true).unwrap().status, 101);
            let mut sink = Vec::new();
            let ended = std::io::Read::read_to_end(&mut silent, &mut sink);
            assert!(ended.is_ok(), "the server closes the connection: {ended:?}");
            assert!(sink.starts_with(b"\x89\x00"), "it was pinged before being dropped");
        },
    );
}

#[test]
fn rfc6455_7_4_1_shutdown_closes_with_1001() {
    for &model in common::MODELS {
        let server = TestServer::start(model, &|_| {});
        let mut client = connect(&server, "/ws/bye");
        let stopper = std::thread::spawn(move || server.server.stop());
        assert_eq!(close_code(&mut client), Some(1001));
        stopper.join().unwrap().unwrap();
    }
}

#[test]
fn stats_count_websockets() {
    each_model(
        |_| {},
        |server| {
            let _client = connect(server, "/ws/count");
            common::eventually("the socket is counted", || server.server.app().stats.snapshot().open[2] == 1);
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
            config.history = COUNT + 10;
            config.history_bytes = 64 << 20;
        },
        |server| {
            let start = server.publish("flood", "start");
            let mut client = connect(server, &format!("/ws/flood?since={start}"));
            // 16 KiB texts, 32 MiB in all: more than the socket buffers of both ends can hold
            // so a client that reads nothing stalls the server's writes.
            publish_flood(server, "flood", COUNT, 16 * 1024);
            let app = server.server.app().clone();
            common::eventually("the server drops the slow consumer", || app.stats.snapshot().open[2] == 0);
            let mut received = Vec::new();
            let mut cursor = start;
            // Read what was delivered before the disconnection, then resume from the last id.
            while let Ok(message) = client.next_message() {
                let message = envelope(message);
                cursor = message.get("id").and_then(Value::as_str).unwrap().to_string();
                let text = message.get("text").and_then(Value::as_str).unwrap();
                received.push(text.split(' ').next().unwrap().parse::<usize>().unwrap());
            }
            // Resume from the last id, as often as it takes: a test machine too loaded to
            // schedule this reader for `send_timeout` makes it a slow consumer again, and the
            // guarantee is the same each time: nothing lost, nothing twice.
            for _attempt in 0..20 {
                let mut client = connect(server, &format!("/ws/flood?since={cursor}"));
                while received.len() < COUNT {
                    let Ok(message) = client.next_message() else { break };
                    let message = envelope(message);
                    assert_eq!(message.get("gap"), None);
                    cursor = message.get("id").and_then(Value::as_str).unwrap().to_string();
                    let text = message.get("text").and_then(Value::as_str).unwrap();
                    received.push(text.split(' ').next().unwrap().parse::<usize>().unwrap());
                }
                if received.len() == COUNT {
                    break;
                }
            }
            assert_eq!(received, (0..COUNT).collect::<Vec<_>>());
        },
    );
}

/// Publishes `count` texts of `bytes` bytes to `channel` on one keep-alive connection.
fn publish_flood(server: &TestServer, channel: &str, count: usize, bytes: usize) {
    let padding = "x".repeat(bytes);
    let mut stream = server.connect();
    for i in 0..count {
        let text = format!("{i} {padding}");
        let request =
            format!("POST /publish/{channel} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{text}", text.len());
        stream.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response(&mut stream, false).unwrap().status, 201);
    }
}

#[test]
fn rfc6455_7_4_1_a_slow_consumer_that_reads_within_its_grace_finds_1008_behind_its_backlog() {
    each_model(
        |config| {
            config.max_outbound_bytes = 16 * 1024;
            config.send_timeout = Duration::from_secs(2);
        },
        |server| {
            let app = server.server.app().clone();
            let slow = || app.stats.snapshot().slow_consumers;
            let mut late_reader = connect(server, "/ws/slow");
            let never_reads = connect(server, "/ws/slow");
            // 32 MiB: more than the socket buffers between a client that reads nothing and the
            // server, so the server's writes stall and `send_timeout` runs out.
            publish_flood(server, "slow", 2000, 16 * 1024);
            common::eventually("both are found slow", || slow() == 2);
            // Told, the late reader gets one more `send_timeout` to take its backlog, and finds the
            // Close at its end (RFC 6455 §7.4.1: 1008, "a message that violates its policy").
            loop {
                match late_reader.next_event() {
                    Ok(Event::Closed(info)) => {
                        assert_eq!(info.code, Some(CloseCode::POLICY));
                        assert_eq!(info.reason, "slow consumer");
                        break;
                    }
                    Ok(Event::Failed(error)) => panic!("the server broke the protocol: {error:?}"),
                    Ok(_) => {}
                    Err(error) => panic!("connection ended without a close frame: {error}"),
                }
            }
            // The one that never reads is let go at the end of its grace, with what it was owed:
            // its connection, its output and its subscription are released.
            common::eventually("the server releases both", || app.stats.snapshot().open[2] == 0);
            assert_eq!(slow(), 2, "each slow consumer is counted once");
            assert!(server.get("/metrics").text().contains("realtime_slow_consumers_total 2\n"));
            drop(never_reads);
        },
    );
}

#[test]
fn the_thread_model_past_its_thread_budget_closes_a_websocket_with_1011_and_refuses_with_503() {
    // Only the thread model has a thread budget: a WebSocket needs two threads (one writes,
    // one blocks reading), a stream or a request one. Three allow one WebSocket and one more.
    let server = TestServer::start(realtime::config::Model::Threads, &|config| config.max_threads = 3);
    let mut first = connect(&server, "/ws/budget");
    // The second upgrade gets its 101 (its first thread was free) but no thread to read its
    // frames: 1011 (RFC 6455 §7.4.1, "an unexpected condition") instead of a silent drop.
    let mut second = connect(&server, "/ws/budget");
    assert_eq!(close_code(&mut second), Some(CloseCode::INTERNAL_ERROR.0));
    // Once its thread is gone the budget has one place (a request's thread may still be
    // finishing, so try until it is free): an SSE stream takes it, and the next gets 503.
    let mut stream = None;
    common::eventually("a place for an SSE stream", || {
        let mut candidate = server.connect();
        candidate.write_all(b"GET /sse/budget HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let head = common::read_until(&mut candidate, b"\r\n\r\n").unwrap_or_default();
        let open = head.starts_with(b"HTTP/1.1 200");
        stream = open.then_some(candidate);
        open
    });
    assert_eq!(server.get("/healthz").status, 503);
    assert!(stream.is_some(), "the stream holds the last place");
    // The first WebSocket was never disturbed (and can still publish: no new connection needed).
    first.send_text("still here").unwrap();
    let Message::Text(text) = first.next_message().unwrap() else { panic!("a text message") };
    assert!(text.contains("still here"));
}
