//! Prior-knowledge h2c (RFC 9113 §3.3) against a real server, on both server models: the
//! routes over HTTP/2 streams, and the known HTTP/2 floods, each bounded.
//!
//! The client here is small and written for the tests: frames are read with a hand-written
//! 9-octet header parser and built with the crate's frame encoder; header blocks go through
//! the crate's HPACK encoder and decoder, which are checked against every RFC 7541 Appendix C
//! example on their own. The independent clients (curl, nghttp, Python h2) are in the interop
//! tests at the end, which skip loudly when the program is missing.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{each_model, external_program, TestServer, PATIENCE};
use realtime::config::{Config, Model};
use realtime::http2::connection::{MAX_CONCURRENT_STREAMS, RESET_BURST};
use realtime::http2::error::ErrorCode;
use realtime::http2::frame::{self, flag, kind, Frame, Setting, PREFACE};
use realtime::http2::hpack::{Decoder, Encoder, Field};

/// One frame as read: type, flags, stream, payload.
#[derive(Debug)]
struct Raw {
    kind: u8,
    flags: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

/// A response, as far as it came.
#[derive(Clone, Debug, Default)]
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
    /// END_STREAM arrived.
    ended: bool,
    /// The stream was reset with this code.
    reset: Option<ErrorCode>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Client {
    stream: TcpStream,
    encoder: Encoder,
    decoder: Decoder,
    next_stream: u32,
    /// What has come on each stream so far.
    answers: HashMap<u32, Answer>,
    /// The code of the server's GOAWAY, once one came.
    goaway: Option<ErrorCode>,
}

impl Client {
    /// Connects, sends the preface and `settings`, and waits for the server's SETTINGS.
    fn connect(server: &TestServer, settings: &[Setting]) -> Client {
        let stream = server.connect();
        let mut client = Client {
            stream,
            encoder: Encoder::new(4096, false),
            decoder: Decoder::new(4096, 1 << 20),
            next_stream: 1,
            answers: HashMap::new(),
            goaway: None,
        };
        let mut hello = PREFACE.to_vec();
        frame::encode_settings(settings, &mut hello);
        client.stream.write_all(&hello).unwrap();
        let first = client.read_frame().expect("the server's SETTINGS");
        // RFC 9113 §3.4: the server's preface is a SETTINGS frame, first.
        assert_eq!((first.kind, first.flags, first.stream_id), (kind::SETTINGS, 0, 0));
        client.send(Frame::Settings { ack: true, settings: empty_settings() });
        client
    }

    fn send(&mut self, frame: Frame<'_>) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        self.stream.write_all(&bytes).unwrap();
    }

    /// Sends what the protocol asks of a reader (window updates, acknowledgements); a server
    /// that has closed after its last frame no longer wants them.
    fn answer(&mut self, frame: Frame<'_>) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        let _ = self.stream.write_all(&bytes);
    }

    fn read_frame(&mut self) -> std::io::Result<Raw> {
        let mut header = [0u8; 9];
        self.stream.read_exact(&mut header)?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0; length];
        self.stream.read_exact(&mut payload)?;
        let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        Ok(Raw { kind: header[3], flags: header[4], stream_id, payload })
    }

    /// Sends a request's HEADERS (and its body as one DATA frame); returns its stream id.
    fn request(&mut self, method: &str, path: &str, extra: &[(&str, &str)], body: Option<&[u8]>) -> u32 {
        let stream_id = self.next_stream;
        self.next_stream += 2;
        let mut fields = vec![
            Field::new(":method", method),
            Field::new(":scheme", "http"),
            Field::new(":path", path),
            Field::new(":authority", "localhost"),
        ];
        fields.extend(extra.iter().map(|(n, v)| Field::new(*n, *v)));
        let mut block = Vec::new();
        self.encoder.encode(&fields, &mut block);
        let mut bytes = Vec::new();
        frame::encode_header_block(stream_id, body.is_none(), &block, 16_384, &mut bytes);
        if let Some(body) = body {
            Frame::Data { stream_id, end_stream: true, data: body, flow_controlled_len: 0 }.encode(&mut bytes);
        }
        self.stream.write_all(&bytes).unwrap();
        stream_id
    }

    fn get(&mut self, path: &str) -> u32 {
        self.request("GET", path, &[], None)
    }

    /// Reads frames until `done` says the answer on `stream_id` is enough (or it ended),
    /// answering SETTINGS and giving back every window it uses; frames of other streams are
    /// kept for them.
    fn read_answer(&mut self, stream_id: u32, done: impl Fn(&Answer) -> bool) -> Answer {
        loop {
            let answer = self.answers.entry(stream_id).or_default();
            if answer.ended || answer.reset.is_some() || done(answer) {
                return answer.clone();
            }
            let goaway = self.goaway;
            let frame = self
                .read_frame()
                .unwrap_or_else(|e| panic!("{e} while waiting on stream {stream_id} (GOAWAY: {goaway:?})"));
            let answer = self.answers.entry(frame.stream_id).or_default();
            match frame.kind {
                kind::HEADERS => {
                    assert!(frame.flags & flag::END_HEADERS != 0, "our server's blocks fit in a frame");
                    let fields = self.decoder.decode(&frame.payload).expect("a valid header block");
                    for field in fields {
                        let (name, value) =
                            (String::from_utf8(field.name).unwrap(), String::from_utf8(field.value).unwrap());
                        if name == ":status" {
                            answer.status = value.parse().unwrap();
                        } else {
                            answer.fields.push((name, value));
                        }
                    }
                    answer.ended |= frame.flags & flag::END_STREAM != 0;
                }
                kind::DATA => {
                    answer.body.extend_from_slice(&frame.payload);
                    answer.ended |= frame.flags & flag::END_STREAM != 0;
                    if !frame.payload.is_empty() {
                        let increment = frame.payload.len() as u32;
                        self.answer(Frame::WindowUpdate { stream_id: 0, increment });
                        self.answer(Frame::WindowUpdate { stream_id: frame.stream_id, increment });
                    }
                }
                kind::RST_STREAM => {
                    answer.reset =
                        Some(ErrorCode::from_code(u32::from_be_bytes(frame.payload[..4].try_into().unwrap())));
                }
                kind::SETTINGS if frame.flags & flag::ACK == 0 => {
                    self.answer(Frame::Settings { ack: true, settings: empty_settings() })
                }
                kind::GOAWAY => self.goaway = Some(goaway_code(&frame)),
                _ => {}
            }
        }
    }

    fn response(&mut self, stream_id: u32) -> Answer {
        self.read_answer(stream_id, |_| false)
    }

    /// Reads until the server's GOAWAY, and returns its code; `None` if the connection
    /// closed without one.
    fn read_goaway(&mut self) -> Option<ErrorCode> {
        loop {
            match self.read_frame() {
                Ok(frame) if frame.kind == kind::GOAWAY => return Some(goaway_code(&frame)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

fn goaway_code(frame: &Raw) -> ErrorCode {
    ErrorCode::from_code(u32::from_be_bytes(frame.payload[4..8].try_into().unwrap()))
}

fn empty_settings() -> frame::Settings<'static> {
    frame::Settings::EMPTY
}

#[test]
fn one_port_serves_http2_with_prior_knowledge_and_http11_rfc9113_3_3() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            let id = client.get("/healthz");
            let answer = client.response(id);
            assert_eq!((answer.status, answer.text().as_str()), (200, "ok\n"));
            assert_eq!(answer.field("content-length"), Some("3"));
            assert!(answer.field("connection").is_none(), "RFC 9113 §8.2.2: no connection-specific fields");
            // The same port, HTTP/1.1.
            assert_eq!(server.get("/healthz").status, 200);
            // Several requests on one connection, each its own stream.
            for path in ["/readyz", "/stats", "/metrics", "/"] {
                let id = client.get(path);
                assert_eq!(client.response(id).status, 200, "{path}");
            }
        },
    );
}

#[test]
fn head_gets_the_fields_without_the_body_rfc9110_9_3_2() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            let id = client.request("HEAD", "/healthz", &[], None);
            let answer = client.response(id);
            assert_eq!((answer.status, answer.body.len(), answer.field("content-length")), (200, 0, Some("3")));
        },
    );
}

#[test]
fn an_sse_stream_is_data_frames_on_a_stream_that_does_not_end() {
    each_model(
        |config| config.keepalive = Duration::from_secs(1),
        |server| {
            let mut client = Client::connect(server, &[]);
            let sse = client.request("GET", "/sse/news", &[("accept", "text/event-stream")], None);
            let opened = client.read_answer(sse, |a| a.body.starts_with(b"retry:"));
            assert_eq!(opened.status, 200);
            assert_eq!(opened.field("content-type"), Some("text/event-stream"));
            // Published on the same connection, another stream.
            let publish = client.request("POST", "/publish/news", &[], Some(b"hello"));
            let event = client.read_answer(sse, |a| a.text().contains("hello"));
            assert!(!event.ended, "an event stream is never ended");
            assert!(event.text().contains("\ndata:{\"id\":"), "{}", event.text());
            assert_eq!(client.response(publish).status, 201);
            // WHATWG HTML §9.2.7: the keepalive comment, as over HTTP/1.1.
            let comment = client.read_answer(sse, |a| a.text().contains(": keepalive"));
            assert!(!comment.ended);
        },
    );
}

#[test]
fn last_event_id_resumes_an_sse_stream_after_that_message() {
    each_model(
        |_| {},
        |server| {
            let first = server.publish("resume", "one");
            server.publish("resume", "two");
            let mut client = Client::connect(server, &[]);
            let headers = [("accept", "text/event-stream"), ("last-event-id", first.as_str())];
            let sse = client.request("GET", "/sse/resume", &headers, None);
            let answer = client.read_answer(sse, |a| a.text().contains("two"));
            assert!(!answer.text().contains("\"one\""), "{}", answer.text());
        },
    );
}

#[test]
fn a_cursor_older_than_the_history_gets_a_gap_event_over_h2c() {
    each_model(
        |config| config.history = 3,
        |server| {
            let ids: Vec<String> = (1..=5).map(|i| server.publish("small", &format!("m{i}"))).collect();
            let mut client = Client::connect(server, &[]);
            let headers = [("accept", "text/event-stream"), ("last-event-id", ids[0].as_str())];
            let sse = client.request("GET", "/sse/small", &headers, None);
            let text = client.read_answer(sse, |a| a.text().contains("m5")).text();
            let gap = format!("event:gap\ndata:{{\"since\":\"{}\",\"oldest\":\"{}\"}}", ids[0], ids[2]);
            assert!(text.contains(&gap), "{text}");
            assert!(text.find("event:gap") < text.find("m3") && !text.contains("\"m2\""), "{text}");
        },
    );
}

#[test]
fn a_long_poll_is_answered_when_a_message_arrives() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            let poll = client.get("/poll/lp?timeout=20");
            // Another stream on the same connection goes on while the poll waits.
            let health = client.get("/healthz");
            assert_eq!(client.response(health).status, 200);
            server.publish("lp", "news");
            let answer = client.response(poll);
            assert_eq!(answer.status, 200);
            assert!(answer.text().contains("\"text\":\"news\""), "{}", answer.text());
            assert_eq!(answer.field("cache-control"), Some("no-store"));
        },
    );
}

#[test]
fn publishes_pass_the_same_gate_as_http11() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            let foreign = client.request("POST", "/publish/a", &[("origin", "http://evil.example")], Some(b"x"));
            assert_eq!(client.response(foreign).status, 403, "a foreign Origin");
            let same = client.request("POST", "/publish/a", &[("origin", "http://localhost")], Some(b"x"));
            let answer = client.response(same);
            assert_eq!(answer.status, 201, "{}", answer.text());
            assert_eq!(answer.field("vary"), Some("Origin"), "the CORS fields of HTTP/1.1");
            let big = vec![b'a'; 16_384];
            let mut client = Client::connect(server, &[]);
            let id = client.next_stream;
            client.next_stream += 2;
            let mut block = Vec::new();
            let fields = [
                Field::new(":method", "POST"),
                Field::new(":scheme", "http"),
                Field::new(":path", "/publish/a"),
                Field::new(":authority", "localhost"),
            ];
            client.encoder.encode(&fields, &mut block);
            client.send(Frame::Headers { stream_id: id, end_stream: false, end_headers: true, fragment: &block });
            // 64 KiB is the limit; the fifth frame passes it (the server gives the windows back
            // as they are used, so a client may send this much).
            for _ in 0..5 {
                client.send(Frame::Data {
                    stream_id: id,
                    end_stream: false,
                    data: &big[..16_384],
                    flow_controlled_len: 0,
                });
            }
            assert_eq!(client.response(id).status, 413, "a body past --max-publish-bytes");
        },
    );
}

/// Over HTTP/1.1 the gate judges a publish by its head, before a byte of its body is read;
/// over HTTP/2 too: a foreign page's publish is refused while its body has not even been sent,
/// a declared `Content-Length` past the limit gets 413 at once, and a body that grows past it
/// gets 413 with the CORS fields the gate gave the request, so that the allowed page that sent
/// it can read why (RFC 9110 §15.5.14; the Fetch standard's CORS check needs
/// `Access-Control-Allow-Origin` on every answer a page reads).
#[test]
fn a_publish_is_judged_by_its_head_before_its_body_as_over_http11() {
    const ALLOWED: &str = "http://app.example";
    each_model(
        |config| config.allowed_origins = vec![ALLOWED.into()],
        |server| {
            let mut client = Client::connect(server, &[]);
            let headers_only = |client: &mut Client, extra: &[(&str, &str)]| {
                let id = client.next_stream;
                client.next_stream += 2;
                let mut fields = vec![
                    Field::new(":method", "POST"),
                    Field::new(":scheme", "http"),
                    Field::new(":path", "/publish/judged"),
                    Field::new(":authority", "localhost"),
                ];
                fields.extend(extra.iter().map(|(n, v)| Field::new(*n, *v)));
                let mut block = Vec::new();
                client.encoder.encode(&fields, &mut block);
                client.send(Frame::Headers { stream_id: id, end_stream: false, end_headers: true, fragment: &block });
                id
            };
            let foreign = headers_only(&mut client, &[("origin", "http://evil.example")]);
            assert_eq!(client.response(foreign).status, 403, "refused before any DATA was sent");

            let declared = headers_only(&mut client, &[("origin", ALLOWED), ("content-length", "100000")]);
            let answer = client.response(declared);
            assert_eq!(answer.status, 413, "a declared length past --max-publish-bytes, before any DATA");
            assert_eq!(answer.field("access-control-allow-origin"), Some(ALLOWED));

            let growing = headers_only(&mut client, &[("origin", ALLOWED)]);
            let piece = vec![b'a'; 16_384];
            // 64 KiB is the limit; the fifth frame passes it.
            for _ in 0..5 {
                client.send(Frame::Data {
                    stream_id: growing,
                    end_stream: false,
                    data: &piece,
                    flow_controlled_len: 0,
                });
            }
            let answer = client.response(growing);
            assert_eq!(answer.status, 413, "a body that grew past --max-publish-bytes");
            assert_eq!(answer.field("access-control-allow-origin"), Some(ALLOWED), "readable by the page that sent it");

            let fine = headers_only(&mut client, &[("origin", ALLOWED)]);
            client.send(Frame::Data {
                stream_id: fine,
                end_stream: true,
                data: b"judged, then read",
                flow_controlled_len: 0,
            });
            assert_eq!(client.response(fine).status, 201, "an accepted head's body is published");
        },
    );
}

#[test]
fn publishes_and_streams_need_a_token_as_over_http11() {
    use realtime::token::{self, ChannelPattern, Claims};
    const SECRET: &[u8] = b"an example secret of 32 bytes+++";
    let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = Claims {
        exp: unix_now + 3600,
        sub: Some("h2".into()),
        channels: vec![ChannelPattern::parse("room").unwrap()],
        publish: vec![ChannelPattern::parse("room").unwrap()],
    };
    let signed = token::sign(&claims, SECRET);
    each_model(
        |config| config.token_secret = Some(realtime::config::Secret::new(SECRET.to_vec()).unwrap()),
        |server| {
            let mut client = Client::connect(server, &[]);
            let bare = client.request("POST", "/publish/room", &[], Some(b"x"));
            assert_eq!(client.response(bare).status, 401, "no token");
            let bearer = format!("Bearer {signed}");
            let granted = client.request("POST", "/publish/room", &[("authorization", &bearer)], Some(b"x"));
            assert_eq!(client.response(granted).status, 201);
            let other = client.request("POST", "/publish/other", &[("authorization", &bearer)], Some(b"x"));
            assert_eq!(client.response(other).status, 403, "a channel the token does not grant");
            let sse = client.request("GET", "/sse/room", &[("accept", "text/event-stream")], None);
            assert_eq!(client.response(sse).status, 401, "streams too");
        },
    );
}

#[test]
fn the_websocket_routes_say_they_need_http11() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            for path in ["/ws/news", "/echo"] {
                let id = client.get(path);
                let answer = client.response(id);
                assert_eq!(answer.status, 501, "{path}");
                assert!(answer.text().contains("HTTP/1.1"), "{}", answer.text());
            }
        },
    );
}

#[test]
fn a_malformed_request_resets_its_stream_and_the_connection_goes_on_rfc9113_8_1_1() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            let bad = client.request("GET", "/healthz", &[("connection", "close")], None);
            assert_eq!(client.response(bad).reset, Some(ErrorCode::ProtocolError));
            let good = client.get("/healthz");
            assert_eq!(client.response(good).status, 200);
        },
    );
}

#[test]
fn shutdown_says_goaway_and_lets_the_open_streams_finish_rfc9113_6_8() {
    for &model in common::MODELS {
        eprintln!("--- model {}", model.name());
        let server = TestServer::start(model, &|_| {});
        let mut client = Client::connect(&server, &[]);
        let sse = client.request("GET", "/sse/bye", &[("accept", "text/event-stream")], None);
        client.read_answer(sse, |a| a.body.starts_with(b"retry:"));
        let poll = client.get("/poll/bye?timeout=30");
        common::eventually("the poll parked", || {
            server.get("/stats").json().get("parked_polls").and_then(|n| n.as_u64()) == Some(1)
        });
        let stopper = std::thread::spawn(move || server.server.stop());
        let ended = client.response(sse);
        assert!(ended.ended, "an SSE stream ends with END_STREAM at shutdown");
        let answered = client.response(poll);
        assert_eq!(answered.status, 200, "a parked poll is answered");
        assert_eq!(client.goaway, Some(ErrorCode::NoError));
        stopper.join().unwrap().unwrap();
    }
}

#[test]
fn rapid_reset_is_cut_off_with_enhance_your_calm_cve_2023_44487() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            let fields = [
                Field::new(":method", "GET"),
                Field::new(":scheme", "http"),
                Field::new(":path", "/sse/reset"),
                Field::new("accept", "text/event-stream"),
            ];
            let mut bytes = Vec::new();
            // Each stream opens an SSE subscription the broker keeps, then is cancelled.
            for n in 0..(2 * RESET_BURST) {
                let stream_id = 2 * n + 1;
                let mut block = Vec::new();
                client.encoder.encode(&fields, &mut block);
                Frame::Headers { stream_id, end_stream: true, end_headers: true, fragment: &block }.encode(&mut bytes);
                Frame::RstStream { stream_id, code: ErrorCode::Cancel }.encode(&mut bytes);
            }
            // Written from another thread: the server's answers are read here meanwhile.
            let mut writer = client.stream.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                let _ = writer.write_all(&bytes);
            });
            assert_eq!(client.read_goaway(), Some(ErrorCode::EnhanceYourCalm));
            sender.join().unwrap();
        },
    );
}

#[test]
fn streams_beyond_max_concurrent_streams_are_refused_rfc9113_5_1_2() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            let mut last = 0;
            for _ in 0..=MAX_CONCURRENT_STREAMS {
                last = client.get("/poll/many?timeout=30");
            }
            assert_eq!(client.response(last).reset, Some(ErrorCode::RefusedStream));
        },
    );
}

#[test]
fn a_continuation_flood_ends_the_connection_rfc9113_6_10() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect(server, &[]);
            client.send(Frame::Headers { stream_id: 1, end_stream: true, end_headers: false, fragment: b"" });
            let mut writer = client.stream.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                let mut bytes = Vec::new();
                for _ in 0..1000 {
                    Frame::Continuation { stream_id: 1, end_headers: false, fragment: &[0x40; 1000] }
                        .encode(&mut bytes);
                }
                let _ = writer.write_all(&bytes);
            });
            assert_eq!(client.read_goaway(), Some(ErrorCode::EnhanceYourCalm));
            sender.join().unwrap();
        },
    );
}

/// The octets the server holds for its clients (`/stats`, `memory_budget.held`).
fn held(server: &TestServer) -> u64 {
    let stats = server.get("/stats").json();
    stats.get("memory_budget").and_then(|b| b.get("held")).and_then(|u| u.as_u64()).expect("memory_budget.held")
}

/// Writes `frame` over and over from another thread without reading anything, and watches
/// what the server holds meanwhile (through `/stats`) until it closes the connection. Returns
/// the most it held. A server that answered every frame into a buffer would hold megabytes;
/// this one stops at [`realtime::http2::connection::OUTPUT_HIGH_WATER`] of answers (and ends
/// the connection), or stops reading (the drivers' backpressure) until the slow-consumer
/// policy ends it.
fn flood_without_reading(server: &TestServer, frame: Frame<'_>) -> u64 {
    let mut client = Client::connect(server, &[]);
    let mut one = Vec::new();
    frame.encode(&mut one);
    let batch = one.repeat(64 * 1024 / one.len());
    let flooder = std::thread::spawn(move || {
        client.stream.set_write_timeout(Some(PATIENCE)).unwrap();
        loop {
            match client.stream.write(&batch) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the server kept a connection that stopped reading for {PATIENCE:?}")
                }
                Err(_) => return, // closed by the server
            }
        }
    });
    let mut most = 0;
    while !flooder.is_finished() {
        most = most.max(held(server));
        std::thread::sleep(Duration::from_millis(10));
    }
    flooder.join().unwrap();
    most
}

/// Twice the output bound, with room for the input a driver reads before it stops.
const FLOOD_HOLD_LIMIT: u64 = 1 << 20;

/// Checks who ended a flooding connection. The event loop reads on while the answers wait
/// unsent, so the flood rule must be what ends it, as soon as
/// [`realtime::http2::connection::OUTPUT_HIGH_WATER`] octets of answers wait: a server
/// without the rule would read until its drivers' backpressure stopped it, and hold the
/// connection for the slow-consumer policy's `send_timeout`, which `/stats` counts in
/// `slow_consumers`. A connection's thread blocks in its write before that many answers wait,
/// so under `--model threads` either may end it; the bound on what it held is the test there.
fn assert_ended_by_the_flood_rule(server: &TestServer) {
    if server.model == Model::EventLoop {
        let stats = server.get("/stats").json();
        let slow = stats.get("slow_consumers").and_then(|n| n.as_u64());
        assert_eq!(slow, Some(0), "ended by the flood rule, not as a slow consumer");
    }
}

/// The slow-consumer timeout for the flood tests. On the event loop it is longer than the
/// flooder waits ([`PATIENCE`]), so that only the flood rule can end the connection in time,
/// however slow the machine; under `--model threads` the thread blocks in its write first,
/// and the slow-consumer policy is what ends it, after 2 s.
fn flood_send_timeout(config: &mut Config) {
    config.send_timeout = match config.model {
        Model::EventLoop => PATIENCE * 2,
        Model::Threads => Duration::from_secs(2),
    };
}

#[test]
fn a_ping_flood_whose_answers_are_not_read_is_bounded_and_closed() {
    each_model(flood_send_timeout, |server| {
        let most = flood_without_reading(server, Frame::Ping { ack: false, opaque: [7; 8] });
        assert!(most < FLOOD_HOLD_LIMIT, "held {most} octets");
        assert_ended_by_the_flood_rule(server);
    });
}

#[test]
fn a_settings_flood_whose_acks_are_not_read_is_bounded_and_closed() {
    each_model(flood_send_timeout, |server| {
        let most = flood_without_reading(server, Frame::Settings { ack: false, settings: empty_settings() });
        assert!(most < FLOOD_HOLD_LIMIT, "held {most} octets");
        assert_ended_by_the_flood_rule(server);
    });
}

#[test]
fn a_stream_whose_window_is_held_at_zero_is_reset_and_the_connection_goes_on() {
    each_model(
        |config| config.send_timeout = Duration::from_secs(1),
        |server| {
            let mut client = Client::connect(server, &[Setting::InitialWindowSize(0)]);
            let sse = client.request("GET", "/sse/held", &[("accept", "text/event-stream")], None);
            let text = "x".repeat(4000);
            for _ in 0..100 {
                server.publish("held", &text);
            }
            let answer = client.read_answer(sse, |_| false);
            assert_eq!(answer.reset, Some(ErrorCode::Cancel), "the slow-consumer policy, per stream");
            // What it held was freed, and the connection serves on.
            let health = client.request("GET", "/healthz", &[], None);
            client.send(Frame::WindowUpdate { stream_id: health, increment: 100 });
            assert_eq!(client.response(health).status, 200);
            assert!(held(server) < 64 * 1024);
        },
    );
}

/// `REALTIME_REQUIRE_EXTERNAL=1` (CI) turns a missing program into a failure.
fn require(name: &str) -> Option<std::path::PathBuf> {
    external_program(name)
}

#[test]
fn curl_http2_prior_knowledge_follows_an_sse_stream_and_a_long_poll() {
    let Some(curl) = require("curl") else { return };
    each_model(
        |_| {},
        |server| {
            let base = format!("http://{}", server.addr());
            // Resumed from a cursor, so that nothing depends on when curl subscribes.
            let before = server.publish("curl", "before");
            server.publish("curl", "via-curl");
            let poll = Command::new(&curl)
                .args(["-s", "--http2-prior-knowledge", "--max-time", "20", "-w", "\n%{http_version}"])
                .arg(format!("{base}/poll/curl?since={before}"))
                .output()
                .unwrap();
            let poll = String::from_utf8(poll.stdout).unwrap();
            assert!(poll.contains("via-curl") && poll.ends_with("\n2"), "{poll}");
            // An event stream does not end: curl stops it after a few seconds.
            let sse = Command::new(&curl)
                .args(["-sN", "--http2-prior-knowledge", "--max-time", "3", "-H", "Accept: text/event-stream"])
                .args(["-H", &format!("Last-Event-ID: {before}")])
                .arg(format!("{base}/sse/curl"))
                .output()
                .unwrap();
            let sse = String::from_utf8(sse.stdout).unwrap();
            assert!(sse.contains("via-curl"), "{sse}");
        },
    );
}

#[test]
fn nghttp_follows_an_sse_stream_and_a_long_poll() {
    let Some(nghttp) = require("nghttp") else { return };
    each_model(
        |_| {},
        |server| {
            let base = format!("http://{}", server.addr());
            let before = server.publish("nghttp", "before");
            server.publish("nghttp", "via-nghttp");
            // nghttp speaks h2c with prior knowledge to an http:// URI.
            let poll = Command::new(&nghttp).arg(format!("{base}/poll/nghttp?since={before}")).output().unwrap();
            let poll = String::from_utf8(poll.stdout).unwrap();
            assert!(poll.contains("via-nghttp") && !poll.contains("\"before\""), "{poll}");
            let sse = Command::new(&nghttp)
                .args(["-t", "2", "-H", "accept: text/event-stream", "-H", &format!("last-event-id: {before}")])
                .arg(format!("{base}/sse/nghttp"))
                .output()
                .unwrap();
            let sse = String::from_utf8(sse.stdout).unwrap();
            assert!(sse.starts_with("retry:") && sse.contains("via-nghttp"), "{sse}");
        },
    );
}

#[test]
fn h2load_gets_every_healthz_answered() {
    let Some(h2load) = require("h2load") else { return };
    each_model(
        |_| {},
        |server| {
            let output = Command::new(&h2load)
                .args(["-n", "500", "-c", "4", "-m", "10"])
                .arg(format!("http://{}/healthz", server.addr()))
                .output()
                .unwrap();
            let text = String::from_utf8(output.stdout).unwrap();
            assert!(text.contains("500 succeeded, 0 failed, 0 errored"), "{text}");
        },
    );
}

/// A client written with Python's `h2` (hyper-h2): one GET, read until `until` is in the body
/// or the stream ends; prints the status and the body.
const PYTHON_H2_CLIENT: &str = r#"
import socket, sys
import h2.config, h2.connection, h2.events
host, port, path, until = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
extra = [tuple(pair.split("=", 1)) for pair in sys.argv[5:]]
sock = socket.create_connection((host, port), timeout=20)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", f"{host}:{port}"), (":path", path)] + extra, end_stream=True)
sock.sendall(conn.data_to_send())
status, body, ended = None, b"", False
while until not in body and not ended:
    data = sock.recv(65536)
    if not data:
        break
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ResponseReceived):
            status = dict(event.headers)[b":status"].decode()
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            ended = True
    sock.sendall(conn.data_to_send())
print(status)
print(body.decode())
"#;

#[test]
fn python_h2_follows_an_sse_stream_and_a_long_poll() {
    let has_h2 = Command::new("python3").args(["-c", "import h2"]).output().is_ok_and(|o| o.status.success());
    if !has_h2 {
        // As `common::external_program`: loud, and a failure under REALTIME_REQUIRE_EXTERNAL=1.
        assert!(
            std::env::var("REALTIME_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "Python's h2 is not installed, and REALTIME_REQUIRE_EXTERNAL=1 forbids skipping"
        );
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: Python's h2 (pip install h2) is not installed ***\n");
        return;
    }
    each_model(
        |_| {},
        |server| {
            let (host, port) = (server.addr().ip().to_string(), server.addr().port().to_string());
            let before = server.publish("py", "before");
            server.publish("py", "via-python");
            let run = |path: &str, extra: &[&str]| {
                let output = Command::new("python3")
                    .args(["-c", PYTHON_H2_CLIENT, &host, &port, path, "via-python"])
                    .args(extra)
                    .output()
                    .unwrap();
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                String::from_utf8(output.stdout).unwrap()
            };
            let poll = run(&format!("/poll/py?since={before}"), &[]);
            assert!(poll.starts_with("200\n") && poll.contains("via-python"), "{poll}");
            let last_event_id = format!("last-event-id={before}");
            let sse = run("/sse/py", &["accept=text/event-stream", &last_event_id]);
            assert!(sse.starts_with("200\nretry:") && sse.contains("via-python"), "{sse}");
        },
    );
}

#[test]
fn new_streams_are_refused_while_the_connection_holds_its_limit_unsent() {
    each_model(
        |config| config.max_outbound_bytes = 64 * 1024,
        |server| {
            // Window 0: nothing the server answers can leave; each page is 36 KiB.
            let mut client = Client::connect(server, &[Setting::InitialWindowSize(0)]);
            let mut ids = Vec::new();
            for _ in 0..50 {
                ids.push(client.get("/"));
            }
            let last = client.read_answer(*ids.last().unwrap(), |_| false);
            assert_eq!(last.reset, Some(ErrorCode::RefusedStream), "{last:?}");
            assert!(held(server) < 256 * 1024, "50 pages would be 1.8 MB");
        },
    );
}

/// A child process killed when dropped (a test that fails must not leave it running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `port` accepts a connection.
fn wait_for_port(port: u16, what: &str) {
    common::eventually(what, || TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// An SSE client's bytes after the response head, de-chunked (HAProxy speaks HTTP/1.1 to it).
struct ChunkedReader {
    stream: TcpStream,
    raw: Vec<u8>,
    head_done: bool,
    body: Vec<u8>,
}

impl ChunkedReader {
    /// Reads until the body holds `count` occurrences of `needle`.
    fn read_until_count(&mut self, needle: &str, count: usize) {
        let mut buf = [0u8; 16 * 1024];
        while String::from_utf8_lossy(&self.body).matches(needle).count() < count {
            let n = self.stream.read(&mut buf).expect("an SSE client's read");
            assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&self.body));
            self.raw.extend_from_slice(&buf[..n]);
            if !self.head_done {
                let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&self.raw[..end]).to_string();
                assert!(
                    head.starts_with("HTTP/1.1 200")
                        && head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
                    "{head}"
                );
                self.raw.drain(..end + 4);
                self.head_done = true;
            }
            // chunk = chunk-size CRLF chunk-data CRLF (RFC 9112 §7.1)
            while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
                if self.raw.len() < line_end + 2 + size + 2 {
                    break;
                }
                self.body.extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
                self.raw.drain(..line_end + 2 + size + 2);
            }
        }
    }
}

/// A connection of `server`'s kind (`http` counts h2c connections, `sse` SSE streams).
fn connections(server: &TestServer, kind: &str) -> u64 {
    let stats = server.get("/stats").json();
    stats.get("connections").and_then(|c| c.get(kind)).and_then(|n| n.as_u64()).expect("connections")
}

#[test]
fn haproxy_proto_h2_brings_a_thousand_sse_clients_to_two_nodes_as_a_few_connections() {
    const CLIENTS: usize = 1000;
    const EVENTS: usize = 5;
    let Some(haproxy) = require("haproxy").or_else(|| {
        let sbin = std::path::PathBuf::from("/usr/sbin/haproxy");
        sbin.is_file().then_some(sbin)
    }) else {
        return;
    };
    let Some(redis_server) = require("redis-server") else { return };
    for &model in common::MODELS {
        eprintln!("--- model {}", model.name());
        let redis_port = free_port();
        let _redis = Child(
            Command::new(&redis_server)
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(redis_port, "redis-server");
        let url = format!("redis://127.0.0.1:{redis_port}");
        let node = || {
            TestServer::start(model, &|config| {
                config.broker = realtime::config::BrokerUrl::parse(&url).expect("a Redis URL");
            })
        };
        let nodes = [node(), node()];
        let front = free_port();
        let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/haproxy.cfg"))
            .unwrap()
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
            .replace("127.0.0.1:8081", &nodes[0].addr().to_string())
            .replace("127.0.0.1:8082", &nodes[1].addr().to_string());
        let path = std::env::temp_dir().join(format!("realtime-haproxy-{front}.cfg"));
        std::fs::write(&path, config).unwrap();
        let _haproxy = Child(
            Command::new(&haproxy)
                .arg("-f")
                .arg(&path)
                .arg("-db")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(front, "haproxy");
        let mut clients: Vec<ChunkedReader> = (0..CLIENTS)
            .map(|_| {
                let mut stream = TcpStream::connect(("127.0.0.1", front)).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                stream
                    .write_all(b"GET /sse/fan HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
                    .unwrap();
                ChunkedReader { stream, raw: Vec::new(), head_done: false, body: Vec::new() }
            })
            .collect();
        // Every stream has begun (its `retry:` came) before anything is published.
        for client in &mut clients {
            client.read_until_count("retry:", 1);
        }
        let streams: u64 = nodes.iter().map(|node| connections(node, "sse")).sum();
        assert_eq!(streams, CLIENTS as u64, "every client is a stream on a node");
        // The /stats request itself is one HTTP/1.1 connection on each node.
        let links: Vec<u64> = nodes.iter().map(|node| connections(node, "http") - 1).collect();
        eprintln!("{CLIENTS} SSE clients reached the nodes as {links:?} connections");
        assert!(links.iter().all(|&n| n <= 10), "{links:?} connections for {CLIENTS} clients");
        for n in 0..EVENTS {
            let mut publisher = TcpStream::connect(("127.0.0.1", front)).unwrap();
            let body = format!("event-{n}");
            let request = format!(
                "POST /publish/fan HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            publisher.write_all(request.as_bytes()).unwrap();
            let answer = common::read_response(&mut publisher, false).expect("a publish answer");
            assert_eq!(answer.status, 201, "{}", answer.text());
        }
        for client in &mut clients {
            client.read_until_count("event-", EVENTS);
            for n in 0..EVENTS {
                assert_eq!(String::from_utf8_lossy(&client.body).matches(&format!("event-{n}\"")).count(), 1);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn with_access_log_each_stream_is_an_exchange_of_its_own() {
    use realtime::log::{self, Format};
    use realtime::time::Now;
    use std::sync::Arc;

    let config = realtime::config::Config { access_log: true, ..Default::default() };
    let broker = Arc::new(realtime::broker::memory::MemoryBroker::with_epoch("t".into(), config.broker_limits()));
    let app = Arc::new(realtime::app::App::new(config, broker));
    let capture = log::capture(Format::Json);
    let t0 = realtime::time::Instant::now();
    let now = Now { instant: t0, unix_ms: 1_700_000_000_000 };
    let peer = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    let mut connection = realtime::connection::Connection::new(app, peer, now);
    // The test drives the connection itself and advances it at every step: its wake-ups ring
    // no bell and are never taken.
    let wake = realtime::wake::WakeQueue::new(|| {}).wake_for(0);
    let mut encoder = Encoder::new(4096, false);
    let mut bytes = PREFACE.to_vec();
    frame::encode_settings(&[], &mut bytes);
    for (stream_id, path) in [(1, "/healthz"), (3, "/poll/a?timeout=30&token=secret")] {
        let fields = [
            Field::new(":method", "GET"),
            Field::new(":scheme", "http"),
            Field::new(":path", path),
            Field::new(":authority", "x"),
        ];
        let mut block = Vec::new();
        encoder.encode(&fields, &mut block);
        Frame::Headers { stream_id, end_stream: true, end_headers: true, fragment: &block }.encode(&mut bytes);
    }
    Frame::RstStream { stream_id: 3, code: ErrorCode::Cancel }.encode(&mut bytes);
    connection.receive(&bytes);
    connection.advance(now, &wake);
    let lines = capture.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    // The cancelled poll ends as its RST_STREAM is read; /healthz once its body is sent.
    let line = |path: &str| lines.iter().find(|line| line.contains(path)).unwrap_or_else(|| panic!("{lines:?}"));
    let health = line("\"path\":\"/healthz\"");
    assert!(health.contains("\"status\":200") && health.contains("\"bytes\":3"), "{health}");
    let poll = line("\"path\":\"/poll/a");
    assert!(poll.contains("\"transport\":\"poll\"") && poll.contains("\"status\":null"), "{poll}");
    assert!(!poll.contains("secret"), "tokens are redacted: {poll}");
}
