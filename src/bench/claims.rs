//! `realtime bench claims`: the seed's claims about the three strategies, each beside what
//! this machine measures, and whether it held.
//!
//! It starts its own servers (both models, fresh processes where memory is measured) and
//! runs the other scenarios at modest sizes, so it finishes in a few minutes on two cores:
//!
//! - a. "every hung request consumed one OS thread and roughly 2 MB of RAM; 10,000 idle users
//!   consumed 20 GB": KiB per idle long poll on each model at 1,000, 5,000 and 10,000, and per
//!   idle SSE stream and WebSocket at 5,000;
//! - b. "polling every second for an hour is 3,600 handshakes just to find out no new
//!   messages": requests and bytes in an idle hour, per strategy, from one measured empty
//!   exchange of each kind scaled to the default intervals;
//! - c. "framing overhead drops from roughly 800 bytes to 2 to 14 bytes": bytes per delivered
//!   message per transport, and a naive poll carrying a browser's real request headers;
//! - d. "WebSockets: lowest latency": publish-to-receive p50/p99 per transport;
//! - e. "SSE: built-in reconnection": drop a stream, publish while it is down, reconnect after
//!   the stream's `retry` with `Last-Event-ID` as a browser does; time to resume, messages lost.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use super::engine::Engine;
use super::report::{number, Cell, Row};
use super::{fanout, fresh_channel, idle, io_error, overhead, Options, Target};
use crate::client::subscriber::{Masks, Subscriber};
use crate::transport::Transport;

/// What one run of `claims` measured, for the table and the charts.
#[derive(Default)]
pub struct Measured {
    /// (model, transport, connections, KiB per connection, threads after)
    pub memory: Vec<(String, Transport, usize, f64, u64)>,
    /// (strategy, requests per idle hour, bytes per idle hour)
    pub idle_hour: Vec<(String, f64, f64)>,
    /// (strategy, bytes on the wire per 2-byte message, of which framing)
    pub per_message: Vec<(String, f64, f64)>,
    /// (transport, p50 ms, p99 ms)
    pub latency: Vec<(Transport, f64, f64)>,
    /// (retry the stream asked for in ms, time from reconnecting to the last missed message
    /// in ms, messages missed while down, messages lost)
    pub reconnect: Option<(u64, f64, usize, usize)>,
}

/// Request headers a desktop Chromium sends with a same-origin `fetch` (cookies excluded):
/// what every long-poll request carries besides its request line.
pub const BROWSER_HEADERS: &str = "\
Connection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
sec-ch-ua: \"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
Accept: */*\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: cors\r\n\
Sec-Fetch-Dest: empty\r\n\
Referer: http://localhost:8080/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n";

/// Intervals the idle hour is scaled to: the defaults of `--poll-timeout` and `--keepalive`.
const LONG_POLL_SECONDS: f64 = 30.0;
const KEEPALIVE_SECONDS: f64 = 15.0;

/// Runs every claim; progress on stderr.
pub fn measure(quick: bool) -> Result<Measured, String> {
    let masks = Masks::new().map_err(io_error)?;
    let mut measured = Measured::default();
    let sizes: &[usize] = if quick { &[200] } else { &[1_000, 5_000, 10_000] };
    let streams_at = if quick { 200 } else { 5_000 };
    for model in ["threads", "epoll"] {
        for &n in sizes {
            eprintln!("claims a: {n} idle long polls, model {model}");
            measured.memory.push(idle_memory(model, Transport::LongPoll, n, &masks)?);
        }
        for transport in [Transport::Sse, Transport::WebSocket] {
            eprintln!("claims a: {streams_at} idle {} connections, model {model}", transport.name());
            measured.memory.push(idle_memory(model, transport, streams_at, &masks)?);
        }
    }

    eprintln!("claims b, c: an idle hour and bytes per message");
    let target = Target::spawn_with("epoll", &["--keepalive", "1"])?;
    measured.idle_hour = idle_hour(&target, &masks)?;
    // A message on the wire is at least its envelope: {"id":"xxxx-N","text":"hi","time":13
    // digits}; the rest is framing.
    let envelope = r#"{"id":"abcd-12","text":"hi","time":1700000000000}"#.len() as f64;
    let mut options = Options::new("overhead");
    options.messages = 20;
    for row in overhead(&options, &target, &masks)? {
        let Some(Cell::Text(name)) = row.first().map(|(_, cell)| cell.clone()) else { continue };
        if name.starts_with("naive") {
            continue;
        }
        let bytes = number(&row, "bytes_per_message").unwrap_or(f64::NAN);
        measured.per_message.push((name, bytes, bytes - envelope));
    }
    let browser = browser_poll_bytes(&target).map_err(io_error)?;
    measured.per_message.insert(0, ("a poll with a browser's headers".into(), browser, browser - envelope));

    eprintln!("claims d: latency per transport");
    let mut options = Options::new("fanout");
    (options.subs, options.rate) = if quick { (10, 50.0) } else { (100, 100.0) };
    options.duration = Duration::from_secs(if quick { 1 } else { 3 });
    let target = Target::spawn("epoll")?;
    for transport in Transport::ALL {
        let row = fanout(&options, &target, transport, &masks)?;
        let (p50, p99) = (number(&row, "p50_ms").unwrap_or(f64::NAN), number(&row, "p99_ms").unwrap_or(f64::NAN));
        if number(&row, "lost") != Some(0.0) || number(&row, "duplicated") != Some(0.0) {
            return Err(format!("{}: messages lost or duplicated in the latency run", transport.name()));
        }
        measured.latency.push((transport, p50, p99));
    }

    eprintln!("claims e: SSE reconnection with Last-Event-ID");
    measured.reconnect = Some(sse_reconnect(&target, &masks)?);
    Ok(measured)
}

fn idle_memory(
    model: &str,
    transport: Transport,
    n: usize,
    masks: &Masks,
) -> Result<(String, Transport, usize, f64, u64), String> {
    let target = Target::spawn(model)?;
    let mut options = Options::new("idle");
    options.conns = n;
    options.hold = Duration::from_secs(1);
    let row = idle(&options, &target, transport, masks)?;
    let open = number(&row, "open").unwrap_or(0.0) as usize;
    Ok((
        model.to_string(),
        transport,
        open,
        number(&row, "kib_per_conn").unwrap_or(f64::NAN),
        number(&row, "threads_after").unwrap_or(0.0) as u64,
    ))
}

/// One request and its whole answer on a fresh connection; bytes both ways.
fn exchange(target: &Target, request: &str) -> io::Result<u64> {
    let mut stream = TcpStream::connect(target.addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok((request.len() + answer.len()) as u64)
}

/// A naive poll (`?timeout=0`) that finds nothing, with `headers`.
fn naive_poll_bytes(target: &Target, headers: &str) -> io::Result<f64> {
    let channel = fresh_channel("naive");
    // `Connection: close` only so that read_to_end ends; it is counted like any header.
    let request = format!(
        "GET /poll/{channel}?timeout=0 HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n",
        target.host
    );
    exchange(target, &request).map(|bytes| bytes as f64)
}

/// A poll that fetches one 2-byte message, sent with the headers a browser adds.
fn browser_poll_bytes(target: &Target) -> io::Result<f64> {
    let channel = fresh_channel("browser");
    let mut publisher = target.publisher()?;
    let since = publisher.publish(&channel, "go")?;
    publisher.publish(&channel, "hi")?;
    let request = format!(
        "GET /poll/{channel}?timeout=0&since={since} HTTP/1.1\r\nHost: {}\r\n{BROWSER_HEADERS}Connection: close\r\n\r\n",
        target.host
    );
    exchange(target, &request).map(|bytes| bytes as f64)
}

/// Requests and bytes of an idle hour: naive polling every second, long polling at the
/// default timeout, and an SSE stream and a WebSocket at the default keepalive interval.
/// The server under test runs with `--keepalive 1`, so a few seconds show the per-interval
/// cost, which is then scaled to the defaults.
fn idle_hour(target: &Target, masks: &Masks) -> Result<Vec<(String, f64, f64)>, String> {
    let naive = naive_poll_bytes(target, "").map_err(io_error)?;
    let channel = fresh_channel("quiet");
    let request =
        format!("GET /poll/{channel}?timeout=1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target.host);
    let long_poll = exchange(target, &request).map_err(io_error)? as f64;
    let mut engine = Engine::new().map_err(io_error)?;
    for transport in [Transport::Sse, Transport::WebSocket] {
        let mut first = Vec::new();
        let subscriber = Subscriber::start(transport, &target.host, &channel, None, masks, &mut first);
        engine.open(target.addr, subscriber, first).map_err(io_error)?;
    }
    engine
        .run_until(Instant::now() + Duration::from_secs(10), |e| e.connections.iter().all(|c| c.client.established))
        .map_err(io_error)?;
    let baseline: Vec<u64> = engine.connections.iter().map(|c| c.bytes_read + c.bytes_written).collect();
    // At `--keepalive 1` the streams' keepalives come 1 s, 2 s, ... after they opened: a
    // window of 4.5 s from the opening holds exactly four of them.
    const INTERVALS: f64 = 4.0;
    engine.run_until(Instant::now() + Duration::from_millis(4500), |_| false).map_err(io_error)?;
    let per_interval: Vec<f64> = engine
        .connections
        .iter()
        .zip(&baseline)
        .map(|(c, base)| (c.bytes_read + c.bytes_written - base) as f64 / INTERVALS)
        .collect();
    let keepalives_per_hour = 3600.0 / KEEPALIVE_SECONDS;
    Ok(vec![
        ("naive polling every second".into(), 3600.0, 3600.0 * naive),
        (
            format!("long polling ({LONG_POLL_SECONDS} s timeout)"),
            3600.0 / LONG_POLL_SECONDS,
            3600.0 / LONG_POLL_SECONDS * long_poll,
        ),
        (format!("SSE ({KEEPALIVE_SECONDS} s keepalive)"), 0.0, keepalives_per_hour * per_interval[0]),
        (format!("WebSocket ({KEEPALIVE_SECONDS} s ping)"), 0.0, keepalives_per_hour * per_interval[1]),
    ])
}

/// A browser's reconnection, done by hand: read a stream, drop it, let messages be published
/// while it is down, wait the stream's `retry`, reconnect with `Last-Event-ID`.
fn sse_reconnect(target: &Target, masks: &Masks) -> Result<(u64, f64, usize, usize), String> {
    const MISSED: usize = 5;
    let channel = fresh_channel("reconnect");
    let mut publisher = target.publisher().map_err(io_error)?;
    let mut engine = Engine::new().map_err(io_error)?;
    let mut first = Vec::new();
    let subscriber = Subscriber::start(Transport::Sse, &target.host, &channel, None, masks, &mut first);
    engine.open(target.addr, subscriber, first).map_err(io_error)?;
    engine
        .run_until(Instant::now() + Duration::from_secs(10), |e| e.connections[0].client.established)
        .map_err(io_error)?;
    publisher.publish(&channel, "before").map_err(io_error)?;
    engine
        .run_until(Instant::now() + Duration::from_secs(10), |e| !e.connections[0].client.deliveries.is_empty())
        .map_err(io_error)?;
    let old = &engine.connections[0].client;
    let last_id = old.cursor().ok_or("no message before the drop")?.to_string();
    let retry = old.retry().unwrap_or(3000);
    drop(engine); // the connection drops
    for i in 0..MISSED {
        publisher.publish(&channel, &format!("missed {i}")).map_err(io_error)?;
    }
    thread::sleep(Duration::from_millis(retry));
    let reconnecting = Instant::now();
    let mut engine = Engine::new().map_err(io_error)?;
    let mut first = Vec::new();
    let subscriber = Subscriber::start(Transport::Sse, &target.host, &channel, Some(&last_id), masks, &mut first);
    engine.open(target.addr, subscriber, first).map_err(io_error)?;
    engine
        .run_until(Instant::now() + Duration::from_secs(10), |e| e.connections[0].client.deliveries.len() >= MISSED)
        .map_err(io_error)?;
    let deliveries = &engine.connections[0].client.deliveries;
    let resumed = deliveries.last().map(|d| d.at.saturating_duration_since(reconnecting)).unwrap_or_default();
    let received = deliveries.iter().filter(|d| d.text.starts_with("missed ")).count();
    Ok((retry, resumed.as_secs_f64() * 1e3, MISSED, MISSED.saturating_sub(received)))
}

/// The claims, each with its measured value and a verdict.
pub fn rows(measured: &Measured) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut claim = |id: &str, claim: &str, measured: String, held: &str| {
        rows.push(vec![
            ("claim", Cell::Text(id.into())),
            ("the seed says", Cell::Text(claim.into())),
            ("measured here", Cell::Text(measured)),
            ("held?", Cell::Text(held.into())),
        ]);
    };
    let memory = |model: &'static str, transport: Transport| {
        measured.memory.iter().filter(move |m| m.0 == model && m.1 == transport)
    };
    let polls = |model: &'static str| {
        memory(model, Transport::LongPoll)
            .map(|m| format!("{:.1} KiB x {} ({} threads)", m.3, m.2, m.4))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let thread_kib = memory("threads", Transport::LongPoll).map(|m| m.3).fold(f64::NAN, f64::max);
    claim(
        "a",
        "a hung request costs one OS thread and ~2 MB of RAM; 10,000 idle users 20 GB",
        format!("threads: {}; event loop: {}", polls("threads"), polls("epoll")),
        if thread_kib < 1024.0 {
            "one thread each: yes; 2 MB: no, the 2 MB is reserved address space, not RAM"
        } else {
            "yes"
        },
    );
    let hour =
        |i: usize| measured.idle_hour.get(i).map(|h| format!("{}: {:.0} requests, {:.0} KB", h.0, h.1, h.2 / 1000.0));
    claim(
        "b",
        "polling every second for an hour is 3,600 handshakes to learn nothing",
        (0..measured.idle_hour.len()).filter_map(hour).collect::<Vec<_>>().join("; "),
        "yes: 3,600 requests; long polling 120, SSE and WebSocket none",
    );
    let framing = measured
        .per_message
        .iter()
        .map(|(name, bytes, framing)| format!("{name}: {bytes:.0} B ({framing:.0} B framing)"))
        .collect::<Vec<_>>()
        .join("; ");
    let ws_framing = measured.per_message.iter().find(|m| m.0 == "ws").map(|m| m.2).unwrap_or(f64::NAN);
    let browser = measured.per_message.first().map(|m| m.1).unwrap_or(f64::NAN);
    claim(
        "c",
        "framing overhead drops from ~800 bytes to 2 to 14 bytes",
        framing,
        if browser > 500.0 && ws_framing <= 14.0 { "yes" } else { "partly: see the numbers" },
    );
    let latency = measured
        .latency
        .iter()
        .map(|(t, p50, p99)| format!("{}: p50 {p50:.2} ms, p99 {p99:.2} ms", t.name()))
        .collect::<Vec<_>>()
        .join("; ");
    // Held only if WebSocket's median beats the others by a margin larger than the run-to-run
    // noise of this measurement (about 20% here).
    let p50 = |wanted: Transport| measured.latency.iter().find(|l| l.0 == wanted).map(|l| l.1).unwrap_or(f64::NAN);
    let others = p50(Transport::Sse).min(p50(Transport::LongPoll));
    claim(
        "d",
        "WebSockets have the lowest latency",
        latency,
        if p50(Transport::WebSocket) < 0.8 * others {
            "yes"
        } else {
            "not measurably here: on loopback all three push at once; the gap is a network's round trips (a long poll's new request), not framing"
        },
    );
    if let Some((retry, resumed, missed, lost)) = measured.reconnect {
        claim(
            "e",
            "SSE has built-in reconnection",
            format!("retry {retry} ms, then {resumed:.1} ms to receive the {missed} missed messages; lost {lost}"),
            if lost == 0 { "yes: Last-Event-ID resumed with nothing lost" } else { "no: messages were lost" },
        );
    }
    rows
}
