//! HTTP/1.1 conformance (RFC 9112, RFC 9110) against a real server over raw TCP, for every
//! server model. Each rejection test also sends a valid request in the same bytes and checks
//! that it is *not* answered: what follows a request whose framing is in doubt must never be
//! read as a second request (request smuggling).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{each_model, is_closed, read_response, HttpResponse, TestServer};

/// Sends `bytes` on a fresh connection and reads responses until the server closes it.
fn exchange(server: &TestServer, bytes: &[u8]) -> Vec<HttpResponse> {
    let mut stream = server.connect();
    stream.write_all(bytes).unwrap();
    let mut responses = Vec::new();
    while let Ok(response) = read_response(&mut stream, false) {
        let close = response.header("connection") == Some("close");
        responses.push(response);
        if close {
            assert!(is_closed(&mut stream), "the server said close, then kept the connection open");
            break;
        }
    }
    responses
}

const VALID: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// `bad` is answered with `status` and `Connection: close`, and the valid request that
/// follows it in the same bytes is never answered.
fn assert_rejected(server: &TestServer, bad: &[u8], status: u16) {
    let mut bytes = bad.to_vec();
    bytes.extend_from_slice(VALID.as_bytes());
    let responses = exchange(server, &bytes);
    assert_eq!(responses.len(), 1, "expected exactly one response to {:?}", String::from_utf8_lossy(bad));
    assert_eq!(responses[0].status, status, "{:?}: {}", String::from_utf8_lossy(bad), responses[0].text());
    assert_eq!(responses[0].header("connection"), Some("close"));
    assert!(!responses[0].body.is_empty(), "errors carry a short text body");
}

fn reject_all(cases: &[(&str, u16)]) {
    each_model(
        |_| {},
        |server| {
            for (bad, status) in cases {
                assert_rejected(server, bad.as_bytes(), *status);
            }
        },
    );
}

#[test]
fn rfc9112_9_3_http11_connections_persist_by_default() {
    each_model(
        |_| {},
        |server| {
            let mut stream = server.connect();
            for _ in 0..3 {
                stream.write_all(VALID.as_bytes()).unwrap();
                let response = read_response(&mut stream, false).unwrap();
                assert_eq!((response.status, response.text().as_str()), (200, "ok\n"));
                assert_eq!(response.header("connection"), None);
            }
        },
    );
}

#[test]
fn rfc9112_9_3_2_pipelined_requests_are_answered_in_order() {
    each_model(
        |_| {},
        |server| {
            let pipeline = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
                            GET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
                            POST /publish/pipe HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
                            GET /poll/pipe?since=&timeout=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            let responses = exchange(server, pipeline.as_bytes());
            let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
            assert_eq!(statuses, [200, 404, 201, 200]);
        },
    );
}

#[test]
fn rfc9112_9_6_connection_close_closes_after_the_response() {
    each_model(
        |_| {},
        |server| {
            let responses = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            assert_eq!(responses.len(), 1);
            assert_eq!(responses[0].header("connection"), Some("close"));
        },
    );
}

#[test]
fn rfc9112_9_3_http10_closes_unless_keep_alive_is_asked() {
    each_model(
        |_| {},
        |server| {
            let responses = exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n");
            assert_eq!(responses.len(), 1);
            assert_eq!(responses[0].header("connection"), Some("close"));

            let mut stream = server.connect();
            for _ in 0..2 {
                stream.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
                let response = read_response(&mut stream, false).unwrap();
                assert_eq!(response.status, 200);
                assert_eq!(response.header("connection"), Some("keep-alive"));
            }
        },
    );
}

#[test]
fn rfc9112_7_1_chunked_uploads_with_extensions_and_trailers_are_decoded() {
    each_model(
        |_| {},
        |server| {
            let request = "POST /publish/chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                           5;note=\"first\"\r\nHello\r\n7\r\n, world\r\n0\r\nX-Checksum: none\r\n\r\n";
            let mut stream = server.connect();
            stream.write_all(request.as_bytes()).unwrap();
            assert_eq!(read_response(&mut stream, false).unwrap().status, 201);
            let answer = server.get(&format!("/poll/chunks?since={}-0&timeout=0", epoch(server)));
            let messages = answer.json();
            let first = &messages.get("messages").unwrap().as_array().unwrap()[0];
            assert_eq!(first.get("text").and_then(|t| t.as_str()), Some("Hello, world"));
        },
    );
}

/// The broker's epoch, read from the id of a throwaway message.
fn epoch(server: &TestServer) -> String {
    let id = server.publish("epoch-probe", "x");
    id.split('-').next().unwrap().to_string()
}

#[test]
fn rfc9110_10_1_1_expect_100_continue_gets_an_interim_response() {
    each_model(
        |_| {},
        |server| {
            let mut stream = server.connect();
            stream
                .write_all(
                    b"POST /publish/cont HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
                )
                .unwrap();
            let interim = read_response(&mut stream, false).unwrap();
            assert_eq!(interim.status, 100);
            stream.write_all(b"hi").unwrap();
            assert_eq!(read_response(&mut stream, false).unwrap().status, 201);
        },
    );
}

#[test]
fn rfc9110_10_1_1_a_rejected_expect_100_continue_gets_the_final_status_instead() {
    each_model(
        |config| config.max_publish_bytes = 10,
        |server| {
            let responses = exchange(
                server,
                b"POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
            );
            assert_eq!(responses.iter().map(|r| r.status).collect::<Vec<_>>(), [413]);
        },
    );
}

#[test]
fn rfc9110_10_1_1_unknown_expectations_are_417() {
    reject_all(&[("POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx", 417)]);
}

#[test]
fn rfc9110_9_3_2_head_sends_the_get_headers_without_content() {
    each_model(
        |_| {},
        |server| {
            let mut stream = server.connect();
            stream
                .write_all(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let head = read_response(&mut stream, true).unwrap();
            assert_eq!((head.status, head.header("content-length")), (200, Some("3")));
            // Had the HEAD response carried a body, this would read it as a status line.
            let get = read_response(&mut stream, false).unwrap();
            assert_eq!((get.status, get.text().as_str()), (200, "ok\n"));
        },
    );
}

#[test]
fn rfc9110_15_5_5_unknown_paths_and_bad_channel_names_are_404() {
    each_model(
        |_| {},
        |server| {
            assert_eq!(server.get("/nope").status, 404);
            assert_eq!(server.get("/poll/has%20space").status, 404);
            assert_eq!(server.get(&format!("/poll/{}", "x".repeat(65))).status, 404);
            assert_eq!(server.request("POST", "/publish/a/b", Some("x")).status, 404);
        },
    );
}

#[test]
fn rfc9110_15_5_6_wrong_methods_are_405_with_allow() {
    each_model(
        |_| {},
        |server| {
            let response = server.get("/publish/ch");
            assert_eq!((response.status, response.header("allow")), (405, Some("POST, OPTIONS")));
            let response = server.request("DELETE", "/healthz", None);
            assert_eq!((response.status, response.header("allow")), (405, Some("GET, HEAD, OPTIONS")));
        },
    );
}

#[test]
fn rfc9110_9_1_unknown_methods_are_501() {
    each_model(|_| {}, |server| assert_eq!(server.request("BREW", "/healthz", None).status, 501));
}

#[test]
fn rfc9112_2_3_versions_other_than_1_0_and_1_1_are_505() {
    reject_all(&[("GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505), ("GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n", 505)]);
}

#[test]
fn rfc9112_3_malformed_request_lines_are_400() {
    reject_all(&[
        ("GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /healthz\r\nHost: x\r\n\r\n", 400),
        ("GET /healthz HTTP/1.x\r\nHost: x\r\n\r\n", 400),
        ("G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /heal thz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ]);
}

#[test]
fn rfc9112_5_field_syntax_violations_are_400() {
    reject_all(&[
        // §5.1: no whitespace between the field name and the colon
        ("GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        // §5.2: obs-fold
        ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
        // RFC 9110 §5.5: NUL and other controls in a value
        ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400),
        // a field name that is not a token
        ("GET /healthz HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", 400),
        // strict line endings: a bare LF
        ("GET /healthz HTTP/1.1\nHost: x\r\n\r\n", 400),
    ]);
}

#[test]
fn rfc9112_3_2_http11_requests_need_exactly_one_host() {
    reject_all(&[("GET /healthz HTTP/1.1\r\n\r\n", 400), ("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)]);
}

#[test]
fn limits_request_target_too_long_is_414() {
    let target = format!("/{}", "a".repeat(9000));
    reject_all(&[(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"), 414)]);
}

#[test]
fn limits_head_too_large_and_too_many_fields_are_431() {
    let big = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(17_000));
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    reject_all(&[(&big, 431), (&many, 431)]);
}

#[test]
fn rfc9112_6_3_content_length_must_be_one_valid_number() {
    reject_all(&[
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\nabc", 400),
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab", 400),
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ]);
}

#[test]
fn rfc9112_6_1_content_length_with_transfer_encoding_is_400() {
    reject_all(&[(
        "POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )]);
}

#[test]
fn rfc9112_6_1_transfer_codings_other_than_a_final_chunked_are_501() {
    reject_all(&[
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
    ]);
}

#[test]
fn rfc9112_7_1_malformed_chunks_are_400() {
    reject_all(&[
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("POST /publish/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400),
    ]);
}

#[test]
fn rfc9110_15_5_12_publish_without_a_length_is_411() {
    reject_all(&[("POST /publish/c HTTP/1.1\r\nHost: x\r\n\r\n", 411)]);
}

#[test]
fn rfc9110_15_5_14_bodies_over_the_limit_are_413() {
    each_model(
        |config| config.max_publish_bytes = 8,
        |server| {
            assert_rejected(server, b"POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n123456789", 413);
            let chunked = b"POST /publish/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n";
            assert_rejected(server, chunked, 413);
            assert_eq!(server.request("POST", "/publish/c", Some("12345678")).status, 201);
        },
    );
}

#[test]
fn publish_rejects_text_that_is_not_utf8() {
    each_model(
        |_| {},
        |server| {
            let responses = exchange(
                server,
                b"POST /publish/c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\xff\xfe",
            );
            assert_eq!(responses[0].status, 400);
        },
    );
}

#[test]
fn rfc9110_15_5_9_a_head_not_finished_in_time_is_408() {
    each_model(
        |config| config.header_timeout = Duration::from_millis(300),
        |server| {
            let mut stream = server.connect();
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost:").unwrap();
            let response = read_response(&mut stream, false).unwrap();
            assert_eq!(response.status, 408);
            assert!(is_closed(&mut stream));
        },
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_silently() {
    each_model(
        |config| config.idle_timeout = Duration::from_millis(300),
        |server| {
            let mut stream = server.connect();
            stream.write_all(VALID.as_bytes()).unwrap();
            assert_eq!(read_response(&mut stream, false).unwrap().status, 200);
            assert!(is_closed(&mut stream), "an idle connection is closed without a response");
        },
    );
}

#[test]
fn connections_over_max_connections_get_503() {
    each_model(
        |config| config.max_connections = 2,
        |server| {
            let mut held: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
            for stream in &mut held {
                stream.write_all(VALID.as_bytes()).unwrap();
                assert_eq!(read_response(stream, false).unwrap().status, 200);
            }
            let mut third = server.connect();
            let response = read_response(&mut third, false).unwrap();
            assert_eq!(response.status, 503);
            drop(held);
            common::eventually("a slot frees up", || {
                let mut stream = server.connect();
                stream.write_all(VALID.as_bytes()).unwrap();
                read_response(&mut stream, false).map(|r| r.status == 200).unwrap_or(false)
            });
        },
    );
}

#[test]
fn rfc6750_publish_token_is_required_when_set() {
    each_model(
        |config| config.publish_token = Some("s3cret".into()),
        |server| {
            let response = server.request("POST", "/publish/c", Some("hi"));
            assert_eq!(response.status, 401);
            assert!(response.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
            let responses = exchange(
                server,
                b"POST /publish/c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
            );
            assert_eq!(responses[0].status, 201);
            let responses = exchange(
                server,
                b"POST /publish/c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 2\r\n\r\nhi",
            );
            assert_eq!(responses.iter().map(|r| r.status).collect::<Vec<_>>(), [401]);
        },
    );
}

#[test]
fn rfc9110_6_6_1_responses_carry_a_date() {
    each_model(
        |_| {},
        |server| {
            let date = server.get("/healthz").header("date").map(String::from).unwrap();
            assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        },
    );
}

#[test]
fn stats_and_metrics_report_the_model_and_counters() {
    each_model(
        |_| {},
        |server| {
            server.publish("s", "x");
            let stats = server.get("/stats").json();
            assert_eq!(stats.get("model").and_then(|v| v.as_str()), Some(server.model.name()));
            let published = stats.get("messages").and_then(|m| m.get("published")).and_then(|v| v.as_u64());
            assert_eq!(published, Some(1));
            assert!(stats.get("rss_bytes").and_then(|v| v.as_u64()).unwrap() > 0);
            let metrics = server.get("/metrics");
            assert!(metrics.text().contains("realtime_messages_published_total 1\n"));
        },
    );
}

#[test]
fn graceful_shutdown_answers_parked_polls_and_closes_idle_connections() {
    for &model in common::MODELS {
        let server = TestServer::start(model, &|_| {});
        let mut idle = server.connect();
        idle.write_all(VALID.as_bytes()).unwrap();
        assert_eq!(read_response(&mut idle, false).unwrap().status, 200);
        let mut parked = server.connect();
        parked.write_all(b"GET /poll/bye HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let app = server.server.app().clone();
        common::eventually("the poll parks", || app.stats.snapshot().parked_polls == 1);
        let stopper = thread::spawn(move || server.server.stop());
        let answer = read_response(&mut parked, false).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(is_closed(&mut idle));
        stopper.join().unwrap().unwrap();
    }
}
