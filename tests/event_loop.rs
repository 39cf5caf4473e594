//! What only the event-loop model has: per-worker statistics and a choice of readiness
//! backend. (Everything else is tested against both models in the other suites.)

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use common::{is_closed, read_response, TestServer};
use realtime::config::{Backend, Model};
use realtime::json::Value;
use realtime::ws::client::Client;
use realtime::ws::message::Message;

#[test]
fn stats_report_every_worker_with_its_connections_and_parked_polls() {
    let server = TestServer::start(Model::EventLoop, &|config| config.workers = 2);
    let mut poll = server.connect();
    poll.write_all(b"GET /poll/stats HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let app = server.server.app().clone();
    common::eventually("the poll parks", || app.stats.snapshot().parked_polls == 1);
    let stats = server.get("/stats").json();
    let workers = stats.get("workers").and_then(Value::as_array).expect("a workers array");
    assert_eq!(workers.len(), 2);
    let sum = |field: &str| workers.iter().map(|w| w.get(field).and_then(Value::as_u64).unwrap()).sum::<u64>();
    // The parked poll, and the connection asking for /stats.
    assert_eq!(sum("connections"), 2);
    assert_eq!(sum("parked_polls"), 1);
    assert!(sum("iterations") > 0);
    assert!(workers.iter().all(|w| w.get("bytes_queued").and_then(Value::as_u64).is_some()));
}

#[test]
fn the_poll_backend_serves_every_transport() {
    let server = TestServer::start(Model::EventLoop, &|config| config.poller = Backend::Poll);
    let mut poll = server.connect();
    poll.write_all(b"GET /poll/p HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let app = server.server.app().clone();
    common::eventually("the poll parks", || app.stats.snapshot().parked_polls == 1);
    let mut ws = Client::connect(&server.addr().to_string(), "/ws/p").unwrap();
    ws.stream().set_read_timeout(Some(common::PATIENCE)).unwrap();
    server.publish("p", "via poll(2)");
    let answer = read_response(&mut poll, false).unwrap().json();
    assert!(answer.get("messages").and_then(Value::as_array).is_some_and(|m| m.len() == 1));
    let Message::Text(text) = ws.next_message().unwrap() else { panic!("a text frame") };
    assert!(text.contains("via poll(2)"));
}

/// A worker stops reading a socket at the first read that comes back short (that read drained
/// it) and leaves what arrives later to the level-triggered readiness: a FIN right behind a
/// request must still be seen. A long poll whose client half-closed as it asked is answered at
/// once, empty, and its connection closed, long before its 60 s deadline (which a missed FIN
/// would wait for: the read below gives up at 20 s), on both backends.
#[test]
fn a_fin_right_behind_a_request_is_seen_after_the_short_read_that_took_the_request() {
    for backend in [Backend::Epoll, Backend::Poll] {
        let server = TestServer::start(Model::EventLoop, &|config| {
            config.poller = backend;
            config.poll_timeout = Duration::from_secs(60);
        });
        let mut client = server.connect();
        client.write_all(b"GET /poll/fin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let answer = read_response(&mut client, false).unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        assert_eq!(answer.status, 200, "{backend:?}");
        assert_eq!(answer.json().get("messages").and_then(Value::as_array).map(<[Value]>::len), Some(0));
        assert!(is_closed(&mut client), "{backend:?}: closed after the answer");
    }
}
