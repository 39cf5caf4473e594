//! The security boundary (`src/gate/`), on every server model: the origin policy and CORS on
//! every browser-reachable route, the publish token on every way to publish, signed channel
//! tokens (RFC 7519 HS256) with their claims and expiry, and the per-address limits.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{each_model, is_closed, read_response, HttpResponse, TestServer, PATIENCE};
use realtime::token::{self, ChannelPattern, Claims};
use realtime::ws::client::{Client, ClientError};
use realtime::ws::frame::{encode_frame, Opcode};
use realtime::ws::message::Message;
use realtime::ws::session::Event;

const ALLOWED: &str = "https://app.example";
const FOREIGN: &str = "http://evil.example";
const SECRET: &[u8] = b"an example secret of 32 bytes+++";
const PUBLISH_TOKEN: &str = "s3cret";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn patterns(list: &[&str]) -> Vec<ChannelPattern> {
    list.iter().map(|p| ChannelPattern::parse(p).unwrap()).collect()
}

/// A token signed with [`SECRET`], valid for an hour.
fn signed(sub: &str, channels: &[&str], publish: &[&str]) -> String {
    signed_until(unix_now() + 3600, sub, channels, publish)
}

fn signed_until(exp: u64, sub: &str, channels: &[&str], publish: &[&str]) -> String {
    let claims = Claims { exp, sub: Some(sub.into()), channels: patterns(channels), publish: patterns(publish) };
    token::sign(&claims, SECRET)
}

/// Sends one raw request (`Connection: close`) and reads the answer; `head_only` for streams
/// and upgrades, whose bodies never end.
fn send(server: &TestServer, request: &str, head_only: bool) -> HttpResponse {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream, head_only).unwrap_or_else(|e| panic!("no answer to {request:?}: {e}"))
}

/// A request to `route` with extra header lines (each ending in CRLF).
fn request_to(route: &str, extra: &str) -> (String, bool) {
    let (method, path) = route.split_once(' ').unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}");
    let stream = path.starts_with("/sse/") || path.starts_with("/ws/") || path == "/echo";
    if path.starts_with("/sse/") {
        head.push_str("Accept: text/event-stream\r\n");
    }
    if path.starts_with("/ws/") || path == "/echo" {
        head = head.replace("Connection: close\r\n", "");
        head.push_str(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n",
        );
    }
    if method == "POST" {
        head.push_str("Content-Length: 2\r\n\r\nhi");
    } else {
        head.push_str("\r\n");
    }
    (head, stream)
}

/// The guarded routes and the status each answers when let through.
const ROUTES: [(&str, u16); 5] = [
    ("POST /publish/o", 201),
    ("GET /poll/o?timeout=0", 200),
    ("GET /sse/o", 200),
    ("GET /ws/o", 101),
    ("GET /echo", 101),
];

fn latest_messages(server: &TestServer, channel: &str, since: &str) -> Vec<String> {
    let answer = server.get(&format!("/poll/{channel}?since={since}&timeout=0")).json();
    let messages = answer.get("messages").and_then(|m| m.as_array()).unwrap().to_vec();
    messages.iter().map(|m| m.get("text").and_then(|t| t.as_str()).unwrap().to_string()).collect()
}

/// `Vary: Origin` on every guarded answer a cache may keep; none on a `no-store` one (a long
/// poll's), which no cache keeps (RFC 9111 §5.2.2.5).
fn expected_vary(answer: &HttpResponse) -> Option<&'static str> {
    (answer.header("cache-control") != Some("no-store")).then_some("Origin")
}

#[test]
fn rfc6454_every_guarded_route_serves_its_own_and_allowed_origins_and_refuses_foreign_ones() {
    each_model(
        |config| config.allowed_origins = vec![ALLOWED.into()],
        |server| {
            let first = server.publish("o", "before");
            for (route, ok) in ROUTES {
                // No Origin, and the server's own: served, `Vary: Origin`, no grant needed.
                for origin in [String::new(), "Origin: http://127.0.0.1\r\n".to_string()] {
                    let (request, head_only) = request_to(route, &origin);
                    let answer = send(server, &request, head_only);
                    assert_eq!(answer.status, ok, "{route} {origin:?}: {}", answer.text());
                    assert_eq!(answer.header("access-control-allow-origin"), None, "{route}");
                    if ok != 101 {
                        assert_eq!(answer.header("vary"), expected_vary(&answer), "{route}");
                    }
                }
                // An allowed origin: served and named, so that the page can read the answer.
                let (request, head_only) = request_to(route, &format!("Origin: {ALLOWED}\r\n"));
                let answer = send(server, &request, head_only);
                assert_eq!(answer.status, ok, "{route} from {ALLOWED}");
                if ok != 101 {
                    assert_eq!(answer.header("access-control-allow-origin"), Some(ALLOWED), "{route}");
                    assert_eq!(answer.header("vary"), expected_vary(&answer), "{route}");
                    assert!(answer.header("access-control-expose-headers").is_some_and(|h| h.contains("Retry-After")));
                }
                // A foreign origin: 403 with a reason, and nothing the page may read.
                let (request, head_only) = request_to(route, &format!("Origin: {FOREIGN}\r\n"));
                let answer = send(server, &request, head_only);
                assert_eq!(answer.status, 403, "{route} from {FOREIGN}");
                assert_eq!(answer.header("access-control-allow-origin"), None, "{route}");
                assert!(!answer.body.is_empty() || head_only, "{route}: a one-line reason");
            }
            // The two publishes that were let through arrived; the foreign one did not.
            assert_eq!(latest_messages(server, "o", &first), ["hi", "hi", "hi"]);
            let metrics = server.get("/metrics").text();
            assert!(metrics.contains("realtime_refusals_total{reason=\"origin\"} 5\n"), "{metrics}");
        },
    );
}

#[test]
fn fetch_3_2_2_preflights_from_an_allowed_origin_are_204_and_foreign_ones_403_without_cors() {
    each_model(
        |config| config.allowed_origins = vec![ALLOWED.into()],
        |server| {
            for (path, methods) in [("/publish/o", "POST"), ("/poll/o", "GET, HEAD"), ("/sse/o", "GET, HEAD")] {
                let preflight = |origin: &str| {
                    format!(
                        "OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\
                         Access-Control-Request-Method: {}\r\n\
                         Access-Control-Request-Headers: authorization,content-type\r\nConnection: close\r\n\r\n",
                        &methods[..methods.find(',').unwrap_or(methods.len())]
                    )
                };
                let answer = send(server, &preflight(ALLOWED), false);
                assert_eq!(answer.status, 204, "{path}");
                assert_eq!(answer.header("content-length"), None, "RFC 9110 §8.6: no Content-Length on a 204");
                assert_eq!(answer.header("access-control-allow-origin"), Some(ALLOWED));
                for field in ["access-control-allow-origin", "vary", "access-control-allow-methods"] {
                    let count = answer.headers.iter().filter(|(name, _)| name.eq_ignore_ascii_case(field)).count();
                    assert_eq!(count, 1, "{path}: one {field}, or the browser refuses the preflight");
                }
                assert_eq!(answer.header("access-control-allow-methods"), Some(methods));
                let headers = answer.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
                for needed in ["content-type", "authorization", "last-event-id"] {
                    assert!(headers.contains(needed), "{path}: {headers}");
                }
                assert!(answer.header("access-control-max-age").is_some_and(|age| age.parse::<u32>().is_ok()));
                let answer = send(server, &preflight(FOREIGN), false);
                assert_eq!(answer.status, 403, "{path}");
                assert!(answer
                    .headers
                    .iter()
                    .all(|(name, _)| !name.to_ascii_lowercase().starts_with("access-control")));
            }
            // A plain OPTIONS (no CORS) is answered with what the route allows (RFC 9110 §9.3.7).
            let answer = send(server, "OPTIONS /poll/o HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
            assert_eq!((answer.status, answer.header("allow")), (204, Some("GET, HEAD, OPTIONS")));
        },
    );
}

#[test]
fn fetch_3_2_errors_to_an_allowed_origin_carry_cors_fields_so_the_page_can_read_them() {
    each_model(
        |config| {
            config.allowed_origins = vec![ALLOWED.into()];
            config.publish_token = Some(PUBLISH_TOKEN.into());
            config.max_publish_bytes = 4;
        },
        |server| {
            let origin = format!("Origin: {ALLOWED}\r\n");
            let token = format!("Authorization: Bearer {PUBLISH_TOKEN}\r\n");
            let cases: [(&str, String, &[u8], u16); 6] = [
                ("GET /poll/o?since=%zz", String::new(), b"", 400),
                ("POST /poll/o", "Content-Length: 0\r\n".into(), b"", 405),
                ("POST /publish/o", "Content-Length: 2\r\n".into(), b"hi", 401),
                ("POST /publish/o", format!("{token}Content-Length: 9\r\n"), b"", 413),
                ("POST /publish/o", format!("{token}Content-Length: 2\r\n"), &[0xff, 0xfe], 400),
                ("GET /sse/o", "Accept: text/html\r\n".into(), b"", 406),
            ];
            for (start, fields, body, status) in cases {
                let mut request =
                    format!("{start} HTTP/1.1\r\nHost: 127.0.0.1\r\n{origin}{fields}Connection: close\r\n\r\n")
                        .into_bytes();
                request.extend_from_slice(body);
                let mut stream = server.connect();
                stream.write_all(&request).unwrap();
                let answer = read_response(&mut stream, false).unwrap();
                assert_eq!(answer.status, status, "{start} {fields:?}: {}", answer.text());
                assert_eq!(answer.header("access-control-allow-origin"), Some(ALLOWED), "{start} {status}");
                assert_eq!(answer.header("vary"), Some("Origin"), "{start} {status}");
            }
        },
    );
}

fn ws(server: &TestServer, path: &str) -> Result<Client, ClientError> {
    let client = Client::connect(&server.addr().to_string(), path)?;
    client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
    Ok(client)
}

/// The close code and reason the server ends the connection with, skipping messages.
fn close_of(client: &mut Client) -> (u16, String) {
    loop {
        match client.next_event() {
            Ok(Event::Closed(info)) => return (info.code.map(|c| c.0).unwrap_or(0), info.reason.to_string()),
            Ok(Event::Failed(error)) => panic!("the server broke the protocol: {error:?}"),
            Ok(_) => {}
            Err(error) => panic!("connection ended without a close frame: {error}"),
        }
    }
}

fn text_of(message: Message) -> String {
    let Message::Text(envelope) = message else { panic!("expected text") };
    let value = realtime::json::parse(&envelope).unwrap();
    value.get("text").and_then(|t| t.as_str()).unwrap().to_string()
}

#[test]
fn rfc6750_2_the_publish_token_covers_post_and_websocket_as_header_or_query() {
    each_model(
        |config| config.publish_token = Some(PUBLISH_TOKEN.into()),
        |server| {
            let first = server.request("POST", &format!("/publish/p?token={PUBLISH_TOKEN}"), Some("by query")).status;
            assert_eq!(first, 201);
            let post = |extra: &str, path: &str| {
                send(
                    server,
                    &format!(
                        "POST {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nhi"
                    ),
                    false,
                )
            };
            assert_eq!(post(&format!("Authorization: Bearer {PUBLISH_TOKEN}\r\n"), "/publish/p").status, 201);
            assert_eq!(post(&format!("authorization: bearer {PUBLISH_TOKEN}\r\n"), "/publish/p").status, 201);
            let missing = post("", "/publish/p");
            assert_eq!(missing.status, 401);
            assert_eq!(
                missing.header("www-authenticate"),
                Some("Bearer realm=\"realtime\""),
                "RFC 6750 §3: no error code"
            );
            let wrong = post("Authorization: Bearer s3cre\r\n", "/publish/p");
            assert_eq!(wrong.status, 401);
            assert!(wrong.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
            assert_eq!(post("", "/publish/p?token=nope").status, 401);
            // RFC 6750 §2: "Clients MUST NOT use more than one method to transmit the token".
            let both = post(
                &format!("Authorization: Bearer {PUBLISH_TOKEN}\r\n"),
                &format!("/publish/p?token={PUBLISH_TOKEN}"),
            );
            assert_eq!(both.status, 400);
            assert_eq!(
                post("", &format!("/publish/p?access_token={PUBLISH_TOKEN}")).status,
                201,
                "RFC 6750 §2.3's name"
            );

            // A WebSocket with the token publishes its text frames.
            let mut publisher = ws(server, &format!("/ws/p?token={PUBLISH_TOKEN}")).unwrap();
            let mut reader = ws(server, "/ws/p").unwrap();
            publisher.send_text("from a socket").unwrap();
            assert_eq!(text_of(reader.next_message().unwrap()), "from a socket");
            // Without it, a socket is receive-only: a text frame closes it with 1008, unpublished.
            reader.send_text("sneaky").unwrap();
            assert_eq!(close_of(&mut reader), (1008, "this connection may not publish".into()));
            publisher.send_text("after").unwrap();
            assert_eq!(text_of(publisher.next_message().unwrap()), "from a socket");
            assert_eq!(text_of(publisher.next_message().unwrap()), "after", "'sneaky' was not published");
            // A non-browser client may show the token in the handshake's Authorization instead.
            let mut raw = server.connect();
            let (handshake, _) = request_to("GET /ws/p", &format!("Authorization: Bearer {PUBLISH_TOKEN}\r\n"));
            raw.write_all(handshake.as_bytes()).unwrap();
            assert_eq!(read_response(&mut raw, true).unwrap().status, 101);
            let mut frame = Vec::new();
            encode_frame(&mut frame, true, Opcode::Text, b"by header", Some([1, 2, 3, 4]));
            raw.write_all(&frame).unwrap();
            assert_eq!(text_of(publisher.next_message().unwrap()), "by header");
        },
    );
}

#[test]
fn rfc7519_signed_tokens_grant_channels_by_name_and_prefix_until_they_expire() {
    each_model(
        |config| {
            config.token_secret = Some(realtime::config::Secret::new(SECRET.to_vec()).unwrap());
            config.public_channels = patterns(&["lobby", "public.*"]);
        },
        |server| {
            let get = |path: &str, token: Option<&str>| {
                let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
                send(server, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"), false)
            };
            let alice = signed("alice", &["user.42.*", "room"], &["room"]);
            // Granted by name and by prefix; a neighbour of the prefix is not.
            assert_eq!(get("/poll/room?timeout=0", Some(&alice)).status, 200);
            assert_eq!(get("/poll/user.42.inbox?timeout=0", Some(&alice)).status, 200);
            let other = get("/poll/user.420?timeout=0", Some(&alice));
            assert_eq!(other.status, 403);
            assert!(other.header("www-authenticate").unwrap().contains("insufficient_scope"));
            assert_eq!(get(&format!("/poll/room?timeout=0&token={alice}"), None).status, 200, "?token= works too");
            // No token: 401 with a bare challenge; public channels need none.
            let missing = get("/poll/room?timeout=0", None);
            assert_eq!((missing.status, missing.header("www-authenticate")), (401, Some("Bearer realm=\"realtime\"")));
            assert_eq!(get("/poll/lobby?timeout=0", None).status, 200);
            assert_eq!(get("/poll/public.news?timeout=0", None).status, 200);
            // Publishing: `publish` rights, never `channels` ones, never a public channel.
            let post = |path: &str, token: Option<&str>| {
                let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
                send(
                    server,
                    &format!(
                        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\nConnection: close\r\n\r\nhi"
                    ),
                    false,
                )
                .status
            };
            assert_eq!(post("/publish/room", Some(&alice)), 201);
            assert_eq!(post("/publish/user.42.inbox", Some(&alice)), 403, "subscribe rights do not publish");
            assert_eq!(post("/publish/lobby", None), 401);
            assert_eq!(post("/publish/lobby", Some(&alice)), 403);

            // Every way a token can be bad is 401 invalid_token, also on a public channel.
            let expired = signed_until(unix_now() - 1, "alice", &["room"], &[]);
            let wrong_secret = token::sign(
                &Claims { exp: unix_now() + 60, sub: None, channels: patterns(&["room"]), publish: vec![] },
                b"another secret, also 32 bytes!!!",
            );
            let mut tampered = alice.clone().into_bytes();
            let last = tampered.len() - 1;
            tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            let payload = alice.split('.').nth(1).unwrap();
            let alg_none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
            for (what, bad) in [
                ("expired", expired),
                ("wrong secret", wrong_secret),
                ("tampered", tampered),
                ("alg none", alg_none),
                ("garbage", "x.y.z".into()),
            ] {
                for path in ["/poll/room?timeout=0", "/poll/lobby?timeout=0"] {
                    let answer = get(path, Some(&bad));
                    assert_eq!(answer.status, 401, "{what} on {path}");
                    let challenge = answer.header("www-authenticate").unwrap();
                    assert!(
                        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
                        "{what}"
                    );
                }
            }
            // Routes no token guards do not look at one (a proxy's, or a stale one).
            assert_eq!(get("/healthz", Some("x.y.z")).status, 200);
            assert_eq!(get("/stats", Some("x.y.z")).status, 200);
            // A WebSocket is refused at the handshake the same way.
            let refused = |path: &str| match ws(server, path) {
                Err(ClientError::Rejected { status, .. }) => status,
                Ok(_) => 101,
                Err(error) => panic!("{error}"),
            };
            assert_eq!(refused("/ws/room"), 401);
            assert_eq!(refused(&format!("/ws/user.420?token={alice}")), 403);
            // Granted to subscribe but not publish: receive-only.
            let bob = signed("bob", &["room"], &[]);
            let mut socket = ws(server, &format!("/ws/room?token={bob}")).unwrap();
            socket.send_text("no").unwrap();
            assert_eq!(close_of(&mut socket).0, 1008);
            let mut socket = ws(server, &format!("/ws/room?token={alice}")).unwrap();
            socket.send_text("yes").unwrap();
            assert_eq!(text_of(socket.next_message().unwrap()), "yes");
            // `sub` shows in /stats while the stream is open.
            let stats = server.get("/stats").json();
            assert_eq!(stats.get("subjects").and_then(|s| s.get("alice")).and_then(|n| n.as_u64()), Some(1));
            let metrics = server.get("/metrics").text();
            assert!(!metrics.contains("realtime_refusals_total{reason=\"token\"} 0\n"), "{metrics}");
            assert!(!metrics.contains("realtime_refusals_total{reason=\"forbidden\"} 0\n"), "{metrics}");
        },
    );
}

#[test]
fn rfc7519_4_1_4_an_open_stream_ends_when_its_token_expires() {
    each_model(
        |config| config.token_secret = Some(realtime::config::Secret::new(SECRET.to_vec()).unwrap()),
        |server| {
            let exp = unix_now() + 2;
            let short = signed_until(exp, "carol", &["room"], &[]);
            let mut socket = ws(server, &format!("/ws/room?token={short}")).unwrap();
            let mut sse = server.connect();
            sse.write_all(
                format!("GET /sse/room?token={short} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            assert_eq!(read_response(&mut sse, true).unwrap().status, 200);
            assert_eq!(close_of(&mut socket), (1008, "token expired".into()));
            assert!(unix_now() >= exp, "closed before the token expired");
            // The SSE stream ends with its last chunk, and the connection closes.
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut sse, &mut rest);
            assert!(rest.ends_with(b"0\r\n\r\n"), "{:?}", String::from_utf8_lossy(&rest));
            // A long poll waits no longer than its token lives.
            let short = signed_until(unix_now() + 1, "carol", &["room"], &[]);
            let answer = server.get(&format!("/poll/room?timeout=30&token={short}"));
            assert_eq!(answer.status, 200);
            assert_eq!(answer.json().get("messages").and_then(|m| m.as_array()).map(<[_]>::len), Some(0));
        },
    );
}

#[test]
fn rfc6585_4_publishing_faster_than_publish_rate_is_429_with_retry_after_or_a_1008_close() {
    each_model(
        |config| {
            config.publish_rate = Some(3);
            config.allowed_origins = vec![ALLOWED.into()];
        },
        |server| {
            let post = || {
                let request = format!(
                    "POST /publish/r HTTP/1.1\r\nHost: x\r\nOrigin: {ALLOWED}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
                );
                send(server, &request, false)
            };
            // A burst of 3, then the bucket is empty: 429 until it refills (one per 1/3 s).
            let statuses: Vec<u16> = (0..3).map(|_| post().status).collect();
            assert_eq!(statuses, [201, 201, 201]);
            let over = post();
            assert_eq!(over.status, 429);
            assert_eq!(over.header("retry-after"), Some("1"));
            assert_eq!(over.header("access-control-allow-origin"), Some(ALLOWED), "the page can read the 429");
            common::eventually("the bucket to refill", || post().status == 201);
            // A WebSocket that publishes too fast is closed with 1008.
            let mut socket = ws(server, "/ws/r").unwrap();
            for i in 0..10 {
                if socket.send_text(&format!("m{i}")).is_err() {
                    break;
                }
            }
            assert_eq!(close_of(&mut socket), (1008, "rate limit".into()));
            let metrics = server.get("/metrics").text();
            assert!(!metrics.contains("realtime_refusals_total{reason=\"rate\"} 0\n"), "{metrics}");
        },
    );
}

#[test]
fn max_conns_per_ip_refuses_the_next_connection_with_429_until_one_closes() {
    each_model(
        |config| config.max_conns_per_ip = Some(2),
        |server| {
            let mut first = server.connect();
            let mut second = server.connect();
            // Both are admitted: each answers a request (so the accept loop has seen them).
            for stream in [&mut first, &mut second] {
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                assert_eq!(read_response(stream, false).unwrap().status, 200);
            }
            let mut third = server.connect();
            let answer = read_response(&mut third, false).unwrap();
            assert_eq!(answer.status, 429);
            assert!(is_closed(&mut third));
            drop(first);
            common::eventually("a slot to be given back", || {
                let mut stream = TcpStream::connect(server.addr()).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_ok()
                    && read_response(&mut stream, false).is_ok_and(|r| r.status == 200)
            });
            drop(second);
            common::eventually("the refusal to be counted in /metrics", || {
                let mut stream = TcpStream::connect(server.addr()).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                read_response(&mut stream, false).is_ok_and(|r| {
                    r.status == 200 && !r.text().contains("realtime_refusals_total{reason=\"conns\"} 0\n")
                })
            });
        },
    );
}
