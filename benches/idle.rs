//! What an idle connection costs: the seed's "every hung request consumed one OS thread and
//! roughly 2 MB of RAM", measured on both server models.
//!
//! ```sh
//! cargo bench --bench idle                          # 19,000 of each transport, both models
//! cargo bench --bench idle -- --conns 5000 --models epoll --transports sse
//! cargo bench --bench idle -- --latency-only        # poll(2) vs epoll delivery latency
//! ```
//!
//! Part 1: for each model and transport, a fresh server process, its RSS and thread count
//! (from /proc/PID/status) before and after opening N idle subscriptions from this process,
//! as KiB per connection. RSS is user-space memory only; the kernel's socket buffers are not
//! in it.
//!
//! Part 2: the event loop with each readiness backend, one worker: N idle SSE streams plus
//! one subscriber on another channel; the time from a publish to that subscriber's event,
//! median of 50. poll(2) scans every registered descriptor on each wait, epoll only the ready
//! ones: the difference grows with N.
//!
//! The machine allows 20,000 open files per process, so N stays at 19,000: this process holds
//! every client socket, the server every server socket.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

struct Options {
    conns: usize,
    models: Vec<String>,
    transports: Vec<String>,
    memory: bool,
    latency: bool,
}

fn options() -> Options {
    let mut options = Options {
        conns: 19_000,
        models: vec!["epoll".into(), "threads".into()],
        transports: vec!["ws".into(), "sse".into(), "poll".into()],
        memory: true,
        latency: true,
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut list =
            || -> Vec<String> { args.next().map(|v| v.split(',').map(String::from).collect()).unwrap_or_default() };
        match flag.as_str() {
            "--conns" => options.conns = list().first().and_then(|n: &String| n.parse().ok()).unwrap_or(19_000),
            "--models" => options.models = list(),
            "--transports" => options.transports = list(),
            "--latency-only" => options.memory = false,
            "--memory-only" => options.latency = false,
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    options
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--max-connections", "19990", "--keepalive", "600"])
            .args(["--idle-timeout", "600", "--poll-timeout", "60"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("address").to_string();
        // Pass on what the server says (a limit reached, an error), marked as its own.
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|line| eprintln!("  server: {line}")));
        Server { child, addr }
    }

    /// (RSS bytes, threads) of the server process.
    fn status(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:") * 1024, field("Threads:"))
    }

    fn request(&self, raw: &str) -> String {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out);
        out
    }

    /// `None` when `/stats` cannot be had (a thread model out of threads refuses it too).
    fn parked_polls(&self) -> Option<u64> {
        let stats = self.request("GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let body = stats.split("\r\n\r\n").nth(1).unwrap_or("");
        realtime::json::parse(body).ok().and_then(|v| v.get("parked_polls").and_then(|p| p.as_u64()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request_for(transport: &str, channel: &str) -> String {
    match transport {
        "ws" => format!(
            "GET /ws/{channel} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        "sse" => format!("GET /sse/{channel} HTTP/1.1\r\nHost: x\r\n\r\n"),
        _ => format!("GET /poll/{channel}?timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n"),
    }
}

/// Reads a response head; `true` if it is a 200 or 101 (the subscription is established).
fn read_head(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen.starts_with(b"HTTP/1.1 200") || seen.starts_with(b"HTTP/1.1 101")
}

/// Whether the server still holds the connection open: reading what it sent so far ends in
/// "would block", not in an end of stream (a 503, or a WebSocket closed with 1013).
fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Opens up to `n` subscriptions; returns the open sockets and how many failed, by cause.
fn open_idle(server: &Server, transport: &str, channel: &str, n: usize) -> (Vec<TcpStream>, Vec<String>) {
    let mut open = Vec::with_capacity(n);
    let mut failures = Vec::new();
    let request = request_for(transport, channel);
    let mut consecutive_failures = 0;
    for _ in 0..n {
        // Where a model breaks down, report it rather than wait out every remaining attempt.
        if consecutive_failures == 20 {
            failures.push("gave up after 20 failures in a row".into());
            break;
        }
        consecutive_failures += 1;
        let mut stream = match TcpStream::connect(&server.addr) {
            Ok(stream) => stream,
            Err(error) => {
                failures.push(format!("connect: {}", error.kind()));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream.write_all(request.as_bytes()).is_err() || (transport != "poll" && !read_head(&mut stream)) {
            failures.push("no answer".into());
            continue;
        }
        open.push(stream);
        consecutive_failures = 0;
    }
    if transport == "poll" {
        // A parked poll answers nothing until a message or its timeout: count them instead.
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(parked) = server.parked_polls() {
            if parked as usize >= open.len() || Instant::now() >= deadline {
                if (parked as usize) < open.len() {
                    failures.push(format!("{} polls not parked", open.len() - parked as usize));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (open, failures)
}

fn memory(options: &Options) {
    println!("\n## Idle connections: server memory and threads ({} per run)\n", options.conns);
    println!("| model | transport | established | RSS before | RSS after | KiB/conn | threads before | threads after | failures |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for model in &options.models {
        for transport in &options.transports {
            let server = Server::start(&["--model", model]);
            std::thread::sleep(Duration::from_millis(300));
            let (rss_before, threads_before) = server.status();
            let started = Instant::now();
            let (mut open, mut failures) = open_idle(&server, transport, "idle", options.conns);
            std::thread::sleep(Duration::from_secs(2)); // settle
            let (rss_after, threads_after) = server.status();
            let answered = open.len();
            open.retain_mut(still_open);
            let established = open.len();
            if established < answered {
                failures.push(format!("{} closed by the server (503 or WebSocket close)", answered - established));
            }
            let per_conn = (rss_after.saturating_sub(rss_before)) as f64 / 1024.0 / established.max(1) as f64;
            let mut causes: Vec<String> = failures.clone();
            causes.dedup();
            println!(
                "| {model} | {transport} | {established} | {:.1} MiB | {:.1} MiB | {per_conn:.2} | {threads_before} | {threads_after} | {} |",
                rss_before as f64 / 1048576.0,
                rss_after as f64 / 1048576.0,
                if failures.is_empty() { "0".to_string() } else { format!("{} ({})", failures.len(), causes.join(", ")) }
            );
            eprintln!("  ({model}/{transport}: opened in {:.1} s)", started.elapsed().as_secs_f64());
            drop(open);
            drop(server);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Reads from an SSE stream until a data line arrives.
fn await_event(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(6).position(|w| w == b"data: ") {
            if let Some(nl) = buf[end..].iter().position(|&b| b == b'\n') {
                buf.drain(..end + nl + 1);
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!("stream ended"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn latency(options: &Options) {
    println!("\n## Delivering one message among N idle connections (event loop, 1 worker)\n");
    println!("| poller | idle connections | publish-to-event p50 | p90 |");
    println!("|---|---|---|---|");
    for poller in ["epoll", "poll"] {
        for n in [1_000, options.conns] {
            let server = Server::start(&["--model", "epoll", "--workers", "1", "--poller", poller]);
            let (idle, _) = open_idle(&server, "sse", "idle", n);
            let mut subscriber = TcpStream::connect(&server.addr).unwrap();
            subscriber.write_all(request_for("sse", "hot").as_bytes()).unwrap();
            read_head(&mut subscriber);
            let mut publisher = TcpStream::connect(&server.addr).unwrap();
            publisher.set_nodelay(true).unwrap();
            let publish = "POST /publish/hot HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
            let mut buf = Vec::new();
            let mut samples = Vec::new();
            let mut reply = [0u8; 1024];
            for round in 0..60 {
                let start = Instant::now();
                publisher.write_all(publish.as_bytes()).unwrap();
                await_event(&mut subscriber, &mut buf);
                let elapsed = start.elapsed();
                let _ = publisher.read(&mut reply); // the 201
                if round >= 10 {
                    samples.push(elapsed); // the first ten warm up
                }
            }
            samples.sort();
            let pct = |p: usize| samples[samples.len() * p / 100].as_secs_f64() * 1e6;
            println!("| {poller} | {} | {:.0} µs | {:.0} µs |", idle.len(), pct(50), pct(90));
            drop(idle);
            drop(server);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn main() {
    let options = options();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("machine: {cores} cores, Linux {}", kernel.trim());
    if let Err(error) = realtime::server::sys::raise_open_file_limit() {
        eprintln!("cannot raise the open-file limit: {error}");
    }
    if options.memory {
        memory(&options);
    }
    if options.latency {
        latency(&options);
    }
}
