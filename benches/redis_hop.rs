//! What a Redis hop costs: two `realtime` nodes over a real `redis-server`, against one node
//! with the in-memory broker. Numbers are printed, not asserted.
//!
//! ```sh
//! cargo bench --bench redis_hop                      # all four parts
//! cargo bench --bench redis_hop -- --subs 1000 --rate 500 --seconds 5
//! cargo bench --bench redis_hop -- --part 2               # one part only
//! cargo bench --bench redis_hop -- --part 2 --rounds 5    # part 2's setups in turn 5 times
//! cargo bench --bench redis_hop -- --part 2 --redis-cpu 1 --publishers 256
//! cargo bench --bench redis_hop -- --part 2 --channels 1  # every publisher on one channel
//! ```
//!
//! `--redis-cpu N` gives redis-server CPU N to itself and puts the nodes and the load
//! generator on another CPU, as when Redis runs on a machine of its own: the publish rate is
//! then what one core of node and load gets through Redis, against what the same core does
//! with the memory broker. Without it every process shares every core, and Redis's CPU is
//! taken from the nodes' (part 2 prints how far that alone caps the ratio).
//!
//! 1. **Latency of one message**: a WebSocket subscriber on node A, a publisher that sends one
//!    message at a time (each after the last one arrived); the time from sending the `POST`
//!    to reading the message, p50 and p99 over `--messages`. Three paths: the memory broker
//!    on one node; Redis, published and received on the same node; Redis, published on B and
//!    received on A (the cross-node path a load balancer creates).
//! 2. **Publishes per second**: `--publishers` (64) keep-alive connections publishing as fast
//!    as they are answered for `--seconds`, to one memory node, to node A alone, then spread
//!    over A and B; the Redis rate as a fraction of the memory broker's. Publisher `i`
//!    publishes to channel `rate{i}`, or, with `--channels N`, to `rate{i mod N}` (a busy
//!    channel: `--channels 1`). The three take turns
//!    `--rounds` times (3), and each is reported by its median and range: on a 2-core machine
//!    the memory broker's rate alone swings by a third from run to run of the same binary.
//!    Beside the CPU each process spent per publish, the share of the machine's CPU left
//!    idle: the processes waiting on one another (README, "What the hop costs": a convoy).
//!    Then the ratio the shared cores allow at most (`ceiling`): Redis's own CPU per publish
//!    added to what the memory run spent, with no core idle.
//! 3. **Fan-out across two nodes**: `--subs` WebSocket subscribers, half on A and half on B,
//!    all following one channel; `--rate` messages per second published on B for
//!    `--seconds`. Deliveries per second, latency p50/p99 (publish sent to message read),
//!    lost and duplicated (both must be 0); and the same subscribers on one memory node.
//! 4. **A hung Redis**: node H (`--workers 1`, `--redis-timeout 2`); Redis is stopped
//!    (SIGSTOP) with one publish in flight on H; WebSocket echoes on H meanwhile, p50, p99 and
//!    max, and when and how the publish was answered. Redis is continued (SIGCONT) after.
//!
//! Every process runs on this machine and they share its cores: on a 2-core machine redis,
//! two nodes and the load generator compete, so read the numbers as relative to the
//! single-node line printed beside them. Needs `redis-server` on PATH (else it says so and
//! exits).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use realtime::bench::engine::Engine;
use realtime::bench::Target;
use realtime::client::subscriber::{Masks, Subscriber};
use realtime::server::sys::os;
use realtime::transport::Transport;
use realtime::ws::client::Client;
use realtime::ws::message::Message;

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

struct Options {
    messages: usize,
    publishers: usize,
    subs: usize,
    rate: u64,
    seconds: u64,
    /// Only this part (0: all).
    part: u64,
    /// `--redis-connections` of nodes A and B.
    connections: u64,
    /// Turns of part 2.
    rounds: usize,
    /// Part 2's channels: `0`, one per publisher.
    channels: usize,
    /// `--redis-cpu`: redis-server pinned to this CPU, the nodes and the load generator to
    /// another; `None`: every process on every core.
    redis_cpu: Option<usize>,
}

fn options() -> Options {
    let mut options = Options {
        messages: 2000,
        publishers: 64,
        subs: 200,
        rate: 200,
        seconds: 5,
        part: 0,
        connections: 2,
        rounds: 3,
        channels: 0,
        redis_cpu: None,
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| {
            eprintln!("{flag} needs a number");
            std::process::exit(2)
        });
        match flag.as_str() {
            "--messages" => options.messages = value as usize,
            "--publishers" => options.publishers = value as usize,
            "--subs" => options.subs = value as usize,
            "--rate" => options.rate = value,
            "--seconds" => options.seconds = value,
            "--part" => options.part = value,
            "--redis-connections" => options.connections = value,
            "--rounds" => options.rounds = (value as usize).max(1),
            "--channels" => options.channels = value as usize,
            "--redis-cpu" => options.redis_cpu = Some(value as usize),
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2)
            }
        }
    }
    options
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> Option<(Process, String)> {
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let mut pong = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut pong).is_ok() && &pong == b"+PONG\r\n" {
                return Some((process, format!("redis://127.0.0.1:{port}")));
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A node started from the built binary, with `more` options; its address from its first log
/// line.
fn node(broker: &str, more: &[&str]) -> (Process, Target) {
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--broker", broker, "--max-connections", "19990"])
        .args(more)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a node");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("the node's first line");
    thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|line| eprintln!("  node: {line}")));
    let url = line.split("http://").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("an address");
    (Process(child), Target::at(url).expect("a target"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

/// Part 1: one message at a time, published on `publish_on`, received on `receive_on`.
fn latency(publish_on: &Target, receive_on: &Target, channel: &str, messages: usize) -> (Duration, Duration) {
    let mut subscriber = Client::connect(&receive_on.host, &format!("/ws/{channel}")).expect("a WebSocket");
    subscriber.stream().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut publisher = publish_on.publisher().expect("a publisher");
    let mut times = Vec::with_capacity(messages);
    for i in 0..messages {
        let sent = Instant::now();
        publisher.publish(channel, &i.to_string()).expect("publish");
        match subscriber.next_message().expect("the message") {
            Message::Text(text) => assert!(text.contains(&format!("\"text\":\"{i}\"")), "{text}"),
            Message::Binary(_) => panic!("a binary frame"),
        }
        times.push(sent.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// Part 2: publishes answered per second, `publishers` connections spread over `targets`.
/// A throughput run: publishes per second, and the CPU each side spent per publish.
struct Throughput {
    rate: f64,
    /// Microseconds of CPU per publish: the nodes published to, Redis, this process.
    nodes_us: f64,
    redis_us: f64,
    publishers_us: f64,
    /// The share of the machine's CPU time left idle during the run (`/proc/stat`): what the
    /// processes could not use, waiting on one another.
    idle: f64,
}

/// The median of `values` (of an odd count, the middle one; of an even count, the upper).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// One setup's throughput runs, as the table shows them: the median rate and the range, and
/// each side's median CPU per publish.
struct Runs(Vec<Throughput>);

impl Runs {
    fn rate(&self) -> f64 {
        median(&self.0.iter().map(|run| run.rate).collect::<Vec<_>>())
    }

    fn rates(&self) -> String {
        let rates: Vec<f64> = self.0.iter().map(|run| run.rate).collect();
        let (low, high) = (rates.iter().copied().fold(f64::MAX, f64::min), rates.iter().copied().fold(0.0, f64::max));
        format!("{:.0} ({low:.0}-{high:.0})", self.rate())
    }

    /// The median of one measure over the runs.
    fn median_of(&self, of: fn(&Throughput) -> f64) -> f64 {
        median(&self.0.iter().map(of).collect::<Vec<_>>())
    }

    fn costs(&self) -> String {
        format!(
            "{:.1} µs | {:.1} µs | {:.1} µs | {:.0}%",
            self.median_of(|run| run.nodes_us),
            self.median_of(|run| run.redis_us),
            self.median_of(|run| run.publishers_us),
            self.median_of(|run| run.idle) * 100.0
        )
    }
}

/// The most a Redis setup's rate can be of the memory broker's when every process shares the
/// same cores: its publishes cost Redis's CPU on top of what the nodes and the publishers
/// spend, so even if those cost what they do on the memory broker and no core ever idled, the
/// ratio is `memory's (nodes + publishers) / (the same + Redis's)`. The rate is the cores'
/// busy share over the CPU per publish, so a measured ratio falls below this by the extra CPU
/// the nodes and publishers spend through Redis and by the idle time.
fn ceiling(memory: &Runs, redis: &Runs) -> f64 {
    let spent = memory.median_of(|run| run.nodes_us + run.publishers_us);
    spent / (spent + redis.median_of(|run| run.redis_us))
}

/// The machine's idle and total CPU time so far, in clock ticks: `/proc/stat`'s `cpu` line,
/// `user nice system idle iowait irq softirq steal ...` (idle counts `iowait` too).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().find(|line| line.starts_with("cpu ")).unwrap_or_default();
    let fields: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (idle, fields.iter().sum())
}

/// CPU time a process has used so far, in clock ticks (`utime` + `stime`).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(realtime::process::parse_stat)
        .map_or(0, |stat| stat.utime + stat.stime)
}

/// Part 2's load: `publishers` connections spread over `targets`, publisher `i` on channel
/// `rate{i}`, or `rate{i mod channels}` when `channels` is not 0.
struct Load<'a> {
    targets: &'a [&'a Target],
    publishers: usize,
    channels: usize,
    seconds: u64,
}

fn throughput(load: &Load, node_pids: &[u32], redis_pid: u32) -> Throughput {
    let Load { targets, publishers, channels, seconds } = *load;
    let ticks = || {
        let nodes: u64 = node_pids.iter().map(|&pid| cpu_ticks(pid)).sum();
        (nodes, cpu_ticks(redis_pid), cpu_ticks(std::process::id()))
    };
    let before = ticks();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..publishers)
        .map(|i| {
            let mut publisher = targets[i % targets.len()].publisher().expect("a publisher");
            let (stop, count) = (stop.clone(), count.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let channel = if channels == 0 { i } else { i % channels };
                    publisher.publish(&format!("rate{channel}"), "x").expect("publish");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let machine_before = machine_ticks();
    thread::sleep(Duration::from_secs(seconds));
    let machine_after = machine_ticks();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = ticks();
    let published = count.load(Ordering::Relaxed).max(1) as f64;
    let hz = realtime::process::USER_HZ.unwrap_or(100) as f64;
    let per_publish = |ticks: u64| ticks as f64 / hz * 1e6 / published;
    Throughput {
        rate: published / elapsed,
        nodes_us: per_publish(after.0 - before.0),
        redis_us: per_publish(after.1 - before.1),
        publishers_us: per_publish(after.2 - before.2),
        idle: (machine_after.0 - machine_before.0) as f64 / (machine_after.1 - machine_before.1).max(1) as f64,
    }
}

struct Fanout {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    lost: usize,
    duplicated: usize,
}

/// Part 3: subscribers spread over `subscribe_on`, messages published on `publish_on`.
fn fanout(publish_on: &Target, subscribe_on: &[&Target], channel: &str, options: &Options) -> Fanout {
    let mut marker = publish_on.publisher().expect("a publisher");
    let since = marker.publish(channel, "marker").expect("the marker");
    let masks = Masks::new().expect("randomness");
    let mut engine: Engine<Subscriber> = Engine::new().expect("a poller");
    for i in 0..options.subs {
        let target = subscribe_on[i % subscribe_on.len()];
        let mut request = Vec::new();
        let subscriber =
            Subscriber::start(Transport::WebSocket, &target.host, channel, Some(&since), &masks, &mut request);
        engine.open(target.addr, subscriber, request).expect("connect a subscriber");
    }
    engine
        .run_until(Instant::now() + Duration::from_secs(30), |e| e.connections.iter().all(|c| c.client.established))
        .expect("the engine");
    let total = (options.rate * options.seconds) as usize;
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let publisher = {
        let (mut publisher, sent) = (publish_on.publisher().expect("a publisher"), sent.clone());
        let (channel, rate) = (channel.to_string(), options.rate);
        thread::spawn(move || {
            let start = Instant::now();
            for seq in 0..total {
                let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
                thread::sleep(due.saturating_duration_since(Instant::now()));
                sent.lock().unwrap().push(Instant::now());
                publisher.publish(&channel, &seq.to_string()).expect("publish");
            }
        })
    };
    let started = Instant::now();
    let expected = total * options.subs;
    let delivered =
        |engine: &Engine<Subscriber>| engine.connections.iter().map(|c| c.client.deliveries.len()).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(options.seconds + 30);
    engine.run_until(deadline, |e| delivered(e) >= expected).expect("the engine");
    let elapsed = started.elapsed();
    publisher.join().unwrap();
    let sent = sent.lock().unwrap();
    let mut latencies = Vec::with_capacity(expected);
    let (mut lost, mut duplicated) = (0, 0);
    for connection in &engine.connections {
        let mut seen = HashSet::new();
        for delivery in &connection.client.deliveries {
            let Ok(seq) = delivery.text.parse::<usize>() else { continue };
            if !seen.insert(seq) {
                duplicated += 1;
            } else if let Some(at) = sent.get(seq) {
                latencies.push(delivery.at.saturating_duration_since(*at));
            }
        }
        lost += total - seen.len().min(total);
    }
    latencies.sort();
    Fanout {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        lost,
        duplicated,
    }
}

/// Part 4: echoes on `node` while a publish waits for a stopped Redis (`redis_pid`).
fn hung(node: &Target, redis_pid: u32, echoes: usize) {
    let signal = |name: &str| {
        let _ = Command::new("kill").arg(format!("-{name}")).arg(redis_pid.to_string()).status();
    };
    let mut echo = Client::connect(&node.host, "/echo").expect("a WebSocket");
    echo.stream().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    signal("STOP");
    let host = node.host.clone();
    let publish = thread::spawn(move || {
        let mut stream = TcpStream::connect(&host).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let sent = Instant::now();
        let request = format!("POST /publish/hung HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\n\r\nx");
        stream.write_all(request.as_bytes()).expect("send");
        let mut head = [0u8; 12];
        let status = match stream.read_exact(&mut head) {
            Ok(()) => String::from_utf8_lossy(&head[9..12]).into_owned(),
            Err(error) => format!("no answer ({error})"),
        };
        (status, sent.elapsed())
    });
    // Let the publish reach the node's link before timing echoes beside it.
    thread::sleep(Duration::from_millis(100));
    let mut times = Vec::with_capacity(echoes);
    for i in 0..echoes {
        let sent = Instant::now();
        echo.send_text(&i.to_string()).expect("send");
        echo.next_message().expect("the echo");
        times.push(sent.elapsed());
    }
    let (status, answered_after) = publish.join().unwrap();
    signal("CONT");
    times.sort();
    println!(
        "| {echoes} echoes while a publish waits for the stopped Redis | {} | {} | {} | {status} after {:.0} ms |",
        micros(percentile(&times, 0.5)),
        micros(percentile(&times, 0.99)),
        micros(*times.last().unwrap_or(&Duration::ZERO)),
        answered_after.as_secs_f64() * 1e3
    );
}

/// With `--redis-cpu`, pins this thread to `redis_cpu` (so that the redis-server started
/// next inherits it) and returns the CPU for everything else, to pin to once Redis runs.
/// Exits on a CPU this process may not use, or on a machine with one.
fn give_redis_its_cpu(redis_cpu: usize) -> usize {
    let cpus = os::available_cpus().unwrap_or_default();
    let other = cpus.iter().copied().find(|&cpu| cpu != redis_cpu);
    match other {
        Some(other) if cpus.contains(&redis_cpu) && os::pin_to_cpu(redis_cpu).is_ok() => other,
        _ => {
            eprintln!("--redis-cpu {redis_cpu}: not a CPU this process may use, or no other CPU left ({cpus:?})");
            std::process::exit(2)
        }
    }
}

fn main() {
    let options = options();
    let others = options.redis_cpu.map(give_redis_its_cpu);
    let Some((redis, url)) = redis_server() else {
        println!("redis_hop: redis-server is not installed (or did not start); nothing measured");
        return;
    };
    // The nodes and the publishers' threads are started from this thread and inherit its CPU.
    if let Some(cpu) = others {
        os::pin_to_cpu(cpu).expect("pin to the CPU left");
    }
    let (memory_process, memory) = node("memory", &[]);
    let connections = options.connections.to_string();
    let (a_process, a) = node(&url, &["--redis-connections", &connections]);
    let (b_process, b) = node(&url, &["--redis-connections", &connections]);
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "redis_hop: {cores} cores; redis-server, nodes A and B (Redis, --redis-connections {connections}) and M (memory) on this machine"
    );
    match (options.redis_cpu, others) {
        (Some(redis_cpu), Some(cpu)) => {
            println!("redis-server on CPU {redis_cpu}, the nodes and the load generator on CPU {cpu} (--redis-cpu)\n")
        }
        _ => println!("every process on every core\n"),
    }

    let runs = |part: u64| options.part == 0 || options.part == part;
    if runs(1) {
        println!("1. one message at a time, POST sent -> WebSocket message read ({} messages)", options.messages);
        println!("| path | p50 | p99 |\n|---|---|---|");
        for (name, publish_on, receive_on, channel) in [
            ("memory broker, one node", &memory, &memory, "hop-memory"),
            ("Redis, same node", &a, &a, "hop-same"),
            ("Redis, publish on B, receive on A", &b, &a, "hop-cross"),
        ] {
            let (p50, p99) = latency(publish_on, receive_on, channel, options.messages);
            println!("| {name} | {} | {} |", micros(p50), micros(p99));
        }
    }
    if runs(2) {
        println!(
            "\n2. publishes per second, {} keep-alive publishers on {} channels, {} s, the three setups in turn {} times",
            options.publishers,
            if options.channels == 0 { options.publishers } else { options.channels },
            options.seconds,
            options.rounds
        );
        println!("Publishes/s: the median and the range. CPU per publish: what each process spent (user + system,");
        println!("/proc/PID/stat) over a run, divided by its publishes, and the machine's CPU left idle; the medians.");
        println!(
            "| broker | publishes/s | of the memory broker's | CPU per publish: nodes | Redis | publishers | idle |"
        );
        println!("|---|---|---|---|---|---|---|");
        let redis_pid = redis.0.id();
        let setups: [(&str, Vec<&Target>, Vec<u32>); 3] = [
            ("memory, one node", vec![&memory], vec![memory_process.0.id()]),
            ("Redis, node A alone", vec![&a], vec![a_process.0.id()]),
            ("Redis, spread over A and B", vec![&a, &b], vec![a_process.0.id(), b_process.0.id()]),
        ];
        let mut results: Vec<Runs> = setups.iter().map(|_| Runs(Vec::new())).collect();
        for _ in 0..options.rounds {
            for ((_, targets, pids), runs) in setups.iter().zip(&mut results) {
                let load = Load {
                    targets,
                    publishers: options.publishers,
                    channels: options.channels,
                    seconds: options.seconds,
                };
                runs.0.push(throughput(&load, pids, redis_pid));
            }
        }
        let memory_rate = results[0].rate();
        for ((name, _, _), runs) in setups.iter().zip(&results) {
            println!("| {name} | {} | {:.2}x | {} |", runs.rates(), runs.rate() / memory_rate, runs.costs());
        }
        if options.redis_cpu.is_none() {
            println!(
                "The most the shared cores allow (Redis's CPU added to the memory run's, no core idle): \
                 {:.2}x A alone, {:.2}x spread.",
                ceiling(&results[0], &results[1]),
                ceiling(&results[0], &results[2])
            );
        }
    }
    if runs(3) {
        println!(
            "\n3. fan-out: {} WebSocket subscribers, {} msg/s for {} s",
            options.subs, options.rate, options.seconds
        );
        println!("| setup | deliveries/s | p50 | p99 | lost | duplicated |\n|---|---|---|---|---|---|");
        for (name, publish_on, subscribe_on, channel) in [
            ("memory, one node", &memory, vec![&memory], "fan-memory"),
            ("Redis, subs on A and B, publish on B", &b, vec![&a, &b], "fan-redis"),
        ] {
            let result = fanout(publish_on, &subscribe_on, channel, &options);
            println!(
                "| {name} | {:.0} | {} | {} | {} | {} |",
                result.per_second,
                micros(result.p50),
                micros(result.p99),
                result.lost,
                result.duplicated
            );
        }
    }
    if runs(4) {
        // Started only now: every node hears every publish, so an idle node would share the
        // machine's cores with the parts above.
        let (_h, h) = node(&url, &["--workers", "1", "--redis-timeout", "2"]);
        println!("\n4. a hung Redis (SIGSTOP), node H with --workers 1 --redis-timeout 2");
        println!("| what | p50 | p99 | max | the publish |\n|---|---|---|---|---|");
        hung(&h, redis.0.id(), 200);
    }
}
