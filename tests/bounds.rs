//! Bounded by construction (`src/budget.rs`, `Connection::input_room`, the header timeout and
//! the listen backlog), on every server model: what a client sends can never make the server
//! buffer without limit, and a connection slot cannot be held for free.
//!
//! Each test is one row of the probe that found the problems (a WebSocket client flooding pings
//! and never reading took 1.2-1.6 GB in 10 s; 1 MiB echoes never read, 3.3 GB; unfinished 15 MiB
//! messages on a channel socket, 606 MiB for 40 clients; a silent connection held for 60 s; a
//! burst of connects waiting a second for SYN retries).

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{each_model, is_closed, read_response, TestServer, PATIENCE};
use realtime::json::Value;
use realtime::ws::client::Client;
use realtime::ws::frame::{encode_frame, Opcode};
use realtime::ws::session::Event;

/// How long a flood goes on. Before the fix, this much flooding grew the server by hundreds of
/// megabytes; after it, the client's writes block within milliseconds.
const FLOOD_TIME: Duration = Duration::from_secs(3);

/// What the server may hold for one flooding client: twice `max_outbound_bytes` (256 KiB) of
/// replies, a read buffer and one message, with room to spare.
const HELD_BOUND: u64 = 4 << 20;

/// The growth in resident memory a flood may cause (the test process's own allocations
/// included); the unbounded server grew by hundreds of megabytes in the same time.
const RSS_GROWTH_BOUND: u64 = 96 << 20;

fn stats(server: &TestServer) -> Value {
    server.get("/stats").json()
}

fn number(value: &Value, path: &[&str]) -> u64 {
    path.iter().fold(value, |v, key| v.get(key).unwrap_or_else(|| panic!("no {key}"))).as_u64().unwrap()
}

fn ws(server: &TestServer, path: &str) -> Client {
    let client = Client::connect(&server.addr().to_string(), path).expect("handshake");
    client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
    client
}

/// Writes `unit` over and over without ever reading, until `FLOOD_TIME` passes or the server
/// stops taking bytes for a second (its reading has stopped and the kernel's buffers are
/// full). Returns the bytes the server took.
fn flood(stream: &TcpStream, unit: &[u8]) -> usize {
    stream.set_nonblocking(true).unwrap();
    let mut stream = stream;
    let (started, mut last_progress, mut sent, mut offset) = (Instant::now(), Instant::now(), 0, 0);
    while started.elapsed() < FLOOD_TIME && last_progress.elapsed() < Duration::from_secs(1) {
        match stream.write(&unit[offset..]) {
            Ok(n) => {
                sent += n;
                offset = (offset + n) % unit.len();
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("the server dropped the flooding client: {e}"),
        }
    }
    sent
}

fn masked(opcode: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, payload, Some([0x11, 0x22, 0x33, 0x44]));
    out
}

#[test]
fn clients_that_flood_pings_or_echoes_and_never_read_are_paused_not_buffered() {
    each_model(
        |_| {},
        |server| {
            let rss_before = number(&stats(server), &["rss_bytes"]);
            // RFC 6455 §5.5.2: every ping is owed a pong. A client that never reads them must
            // not make the server queue them: it stops reading the client instead.
            let pinger = ws(server, "/echo");
            let pings: Vec<u8> = (0..512).flat_map(|_| masked(Opcode::Ping, true, &[0x55; 125])).collect();
            let sent = flood(pinger.stream(), &pings);
            let during = stats(server);
            eprintln!(
                "pings: the server took {} KiB; held {} bytes",
                sent / 1024,
                number(&during, &["memory_budget", "held"])
            );
            assert!(number(&during, &["memory_budget", "held"]) <= HELD_BOUND, "{during:?}");
            // Echoes of 1 MiB messages, never read: the same.
            let echoer = ws(server, "/echo");
            let message = masked(Opcode::Binary, true, &vec![0xaa; 1 << 20]);
            let sent = flood(echoer.stream(), &message);
            let during = stats(server);
            eprintln!(
                "echoes: the server took {} KiB; held {} bytes",
                sent / 1024,
                number(&during, &["memory_budget", "held"])
            );
            assert!(number(&during, &["memory_budget", "held"]) <= HELD_BOUND * 2, "{during:?}");
            // The same while reading 4 KiB/s: the client takes enough for the send timeout
            // never to fire, and far too little for what it asks; the replies still wait in
            // the kernel, not in the server.
            let trickler = ws(server, "/echo");
            let reader = trickler.stream().try_clone().unwrap();
            let trickle = std::thread::spawn(move || {
                let mut reader = reader;
                let mut buf = [0u8; 4096];
                let started = Instant::now();
                while started.elapsed() < FLOOD_TIME + Duration::from_secs(1) {
                    let _ = std::io::Read::read(&mut reader, &mut buf);
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            let sent = flood(trickler.stream(), &message);
            let during = stats(server);
            let held = number(&during, &["memory_budget", "held"]);
            eprintln!("echoes read at 4 KiB/s: the server took {} KiB; held {held} bytes", sent / 1024);
            assert!(held <= HELD_BOUND * 3, "{during:?}");
            trickle.join().unwrap();
            let rss_after = number(&during, &["rss_bytes"]);
            assert!(
                rss_after.saturating_sub(rss_before) < RSS_GROWTH_BOUND,
                "RSS grew from {rss_before} to {rss_after} bytes"
            );
            drop((pinger, echoer, trickler));
            common::eventually("the flooders' memory to be given back", || {
                number(&stats(server), &["memory_budget", "held"]) < 64 * 1024
            });
        },
    );
}

#[test]
fn rfc6455_10_4_a_channel_message_over_the_publish_limit_is_1009_as_soon_as_it_is_declared() {
    each_model(
        |_| {},
        |server| {
            // A first fragment that announces 1 MiB on a channel whose publish limit is 64 KiB:
            // refused at its header, before any of the payload is sent.
            let mut client = ws(server, "/ws/big");
            let mut header = Vec::new();
            encode_frame(&mut header, false, Opcode::Text, &[], Some([1, 2, 3, 4]));
            header[1] = 0x80 | 127;
            header.splice(2..2, (1u64 << 20).to_be_bytes());
            client.send_raw(&header).unwrap();
            assert_eq!(close_code(&mut client), 1009);
            // Fragments that are each small but together exceed it: refused at the one that does.
            let mut client = ws(server, "/ws/big");
            let piece = vec![b'a'; 60 * 1024];
            client.send_raw(&masked(Opcode::Text, false, &piece)).unwrap();
            client.send_raw(&masked(Opcode::Continuation, false, &piece)).unwrap();
            assert_eq!(close_code(&mut client), 1009);
            // /echo keeps --max-message-bytes: the same message is fine there.
            let mut echo = ws(server, "/echo");
            echo.send_raw(&masked(Opcode::Text, false, &piece)).unwrap();
            echo.send_raw(&masked(Opcode::Continuation, true, &piece)).unwrap();
            assert!(
                matches!(echo.next_message().unwrap(), realtime::ws::message::Message::Text(t) if t.len() == 120 * 1024)
            );
        },
    );
}

fn close_code(client: &mut Client) -> u16 {
    loop {
        match client.next_event() {
            Ok(Event::Closed(info)) => return info.code.map_or(0, |c| c.0),
            Ok(_) => {}
            Err(error) => panic!("connection ended without a close frame: {error}"),
        }
    }
}

#[test]
fn past_the_memory_budget_the_connection_holding_the_most_is_closed_with_1009() {
    each_model(
        |config| config.memory_budget = 1 << 20,
        |server| {
            // Two unfinished messages on /echo: 300 KiB and then 900 KiB, 1.2 MiB together.
            let mut small = ws(server, "/echo");
            small.send_raw(&masked(Opcode::Binary, false, &vec![1; 300 * 1024])).unwrap();
            common::eventually("the small one to be held", || {
                number(&stats(server), &["memory_budget", "held"]) >= 300 * 1024
            });
            let mut big = ws(server, "/echo");
            big.send_raw(&masked(Opcode::Binary, false, &vec![2; 900 * 1024])).unwrap();
            assert_eq!(close_code(&mut big), 1009, "the biggest holder gives up what it holds");
            // The smaller one was under its share and carries on.
            small.send_raw(&masked(Opcode::Continuation, true, b"end")).unwrap();
            assert!(
                matches!(small.next_message().unwrap(), realtime::ws::message::Message::Binary(d) if d.len() == 300 * 1024 + 3)
            );
            let metrics = server.get("/metrics").text();
            assert!(metrics.contains(&format!("realtime_memory_budget_bytes {}\n", 1 << 20)), "{metrics}");
            assert!(!metrics.contains("realtime_memory_shed_total 0\n"), "{metrics}");
        },
    );
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout_from_its_accept() {
    each_model(
        |config| config.header_timeout = Duration::from_millis(500),
        |server| {
            let started = Instant::now();
            let mut silent = server.connect();
            assert!(is_closed(&mut silent), "closed without an answer: nothing was asked");
            let held = started.elapsed();
            assert!(held >= Duration::from_millis(500), "closed after {held:?}, before the header timeout");
            // A head that starts late still has to finish within the timeout of the accept.
            let mut late = server.connect();
            std::thread::sleep(Duration::from_millis(300));
            late.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(400));
            let _ = late.write_all(b"Host: x\r\n\r\n");
            match read_response(&mut late, false) {
                Ok(response) => assert_eq!(response.status, 408),
                Err(closed) => panic!("expected 408, the connection closed: {closed}"),
            }
        },
    );
}

/// The kernel's count of connections dropped because a listen queue was full (Linux,
/// `TcpExt: ListenOverflows` in `/proc/net/netstat`, per network namespace).
fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut tcp_ext = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
    let at = names.split_whitespace().position(|name| name == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[test]
fn a_burst_of_connects_is_queued_by_the_listen_backlog_not_dropped() {
    each_model(
        |_| {},
        |server| {
            // 900 connects at once, from 9 threads, while the accept loop catches up: with std's
            // backlog of 128 the kernel drops SYNs (and each such client waits a second for its
            // retransmission); with a backlog of 1024 it queues them all. The kernel counts
            // every drop, so the test asks it rather than timing the connects.
            let Some(before) = listen_overflows() else {
                eprintln!("no /proc/net/netstat: the kernel's drop count cannot be read here");
                return;
            };
            let addr = server.addr();
            let threads: Vec<_> = (0..9)
                .map(|_| {
                    std::thread::spawn(move || {
                        (0..100).map(|_| TcpStream::connect(addr).expect("connect")).collect::<Vec<_>>()
                    })
                })
                .collect();
            let streams: Vec<TcpStream> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            assert_eq!(streams.len(), 900);
            let after = listen_overflows().unwrap_or(before);
            assert_eq!(
                after - before,
                0,
                "the kernel dropped {} connects: the listen queue overflowed",
                after - before
            );
        },
    );
}
