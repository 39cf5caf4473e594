//! What only the event-loop model has: per-worker statistics and a choice of readiness
//! backend. (Everything else is tested against both models in the other suites.)

mod common;

use std::io::Write;

use common::{read_response, TestServer};
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
