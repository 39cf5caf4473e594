//! `realtime bench`: a load generator that measures any server speaking the contract in
//! `docs/PROTOCOL.md` (§5-§8), and this crate's own two models.
//!
//! ```text
//! realtime bench idle     (--url URL | --spawn epoll|threads) [--transport ws,sse,poll] [--conns N] [--hold S]
//!                         [--ws-deflate off|no-context|context]
//! realtime bench fanout   ... [--transport ...] [--subs N] [--rate R] [--duration S]
//! realtime bench echo     ... [--conns C] [--in-flight K] [--size B] [--duration S] [--frames text|binary]
//! realtime bench overhead ... [--messages N]
//! realtime bench soak     ... [--minutes M | --seconds S] [--abuse none|all|KINDS] [--svg FILE]
//! common: [--json]  (one JSON line per scenario on stdout instead of the table)
//! ```
//!
//! The clients run on one thread, on the crate's own [`Poller`](crate::server::poller) and
//! clients ([`crate::client`], [`peer`], [`engine`]), so one process holds thousands of
//! connections. Every scenario ([`SCENARIOS`]) is bounded in count and time and stops by
//! itself. Progress goes to stderr, results to stdout.
//!
//! - **idle**: N idle subscriptions per transport; the server's RSS and threads before and
//!   after (from `/proc/PID/status` for a spawned server, else from `/stats`), KiB per
//!   connection, and how many are still open after the hold. With `--ws-deflate MODE` the
//!   WebSockets offer permessage-deflate as browsers do and a spawned server runs in that
//!   mode: what compression costs an idle connection.
//! - **fanout**: S subscribers on one channel per transport, all resuming from a marker
//!   message so a late registration loses nothing; a publisher thread sends R messages/s whose
//!   text is `"SEQ NANOS"` (its send time on this process's monotonic clock), 8 in flight.
//!   Each subscriber counts what it gets as it gets it ([`Tally`], its sink), without a copy.
//!   Reported: deliveries/s, latency percentiles, lost and duplicated messages (both must be
//!   0), and the CPU the client's thread and the (spawned) server used: which one was the limit.
//! - **echo**: C WebSockets on `/echo`, K messages of B bytes in flight each: round trips/s
//!   and latency percentiles.
//! - **overhead**: bytes on the wire (both directions, heads and framing included) per
//!   delivered 2-byte message, per transport, and per request of naive polling.
//! - **soak**: minutes of churning followers on every transport beside slow readers, floods,
//!   partial requests, silent connections and resets ([`soak`], [`abuse`]); exits with 1 if
//!   the server's RSS does not level off, its descriptors do not come back once the abusers
//!   leave, or a follower lost or got twice a message.

#![forbid(unsafe_code)]

pub mod abuse;
pub mod claims;
pub mod engine;
pub mod peer;
pub mod report;
pub mod soak;
pub mod svg;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::{self, Args};
use crate::client::publisher::Publisher;
use crate::client::subscriber::{Masks, Received, Sink, Subscriber};
use crate::json;
use crate::server::sys::os;
use crate::sync::lock;
use crate::transport::Transport;
use abuse::Abuse;
use engine::Engine;
use peer::Echoer;
use report::{percentile, Cell, Row};

/// A scenario `realtime bench` runs: the one list that its usage, `realtime --help` and the
/// parser read, so that none of them can leave a scenario out.
pub struct Scenario {
    pub name: &'static str,
    /// One line for the usage texts.
    pub summary: &'static str,
    /// Its options and rules for `realtime bench --help`, indented to follow the summary.
    pub details: &'static str,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "idle",
        summary: "idle subscriptions: server RSS and threads per connection",
        details: "--transport LIST (ws,sse,poll) --conns N [1000] --hold S [2] --ws-deflate off|no-context|context",
    },
    Scenario {
        name: "fanout",
        summary: "S subscribers, R msgs/s: deliveries/s, latency, lost, duplicated",
        details: "--transport LIST (ws,sse,poll) --subs N [100] --rate R [100] --duration S [5]",
    },
    Scenario {
        name: "echo",
        summary: "WebSocket /echo round trips",
        details: "--conns C [50] --in-flight K [1] --size B [32] --duration S [5]\n--frames text|binary [binary]: text is UTF-8 checked, as a browser's is",
    },
    Scenario {
        name: "overhead",
        summary: "bytes on the wire per delivered 2-byte message, per transport",
        details: "--messages N [20]",
    },
    Scenario {
        name: "soak",
        summary: "churning followers on every transport beside misbehaving clients;",
        details: "\
fails (exit code 1) if the server's RSS does not level off (the last
third's peak over the middle third's by more than 10% + 16 MiB), its
descriptors are not back within 10 of the baseline 15 s after the
misbehaving clients left, or a follower lost or got twice a message
--minutes M [5] | --seconds S   --subs N per transport [500]
--channels C [20] --rate R msgs/s [100] --transport LIST
--abuse none|all|LIST [all]: slow,ping,echo,partial,silent,rst
--abusers N of each kind [100]   --svg FILE (RSS and fds over time)",
    },
    Scenario {
        name: "pollers",
        summary: "the event loop on epoll vs poll(2): publish-to-event time for one",
        details: "\
stream among N idle ones, at 1,000 and N (starts its own servers)
--conns N [5000]",
    },
    Scenario {
        name: "claims",
        summary: "the seed's claims beside what this machine measures (starts its own",
        details: "\
servers, both models; a few minutes): --svg FILE writes the charts,
--quick runs tiny sizes",
    },
];

/// `idle, fanout, ..., claims`.
pub fn scenario_names() -> String {
    SCENARIOS.iter().map(|scenario| scenario.name).collect::<Vec<_>>().join(", ")
}

/// `realtime bench --help`.
pub fn usage() -> String {
    let mut text = String::from(
        "\
Usage: realtime bench SCENARIO (--url http://HOST:PORT | --spawn epoll|threads) [OPTIONS]
       realtime bench claims [--svg FILE] [--quick]

Scenarios (every one bounded in count and time):
",
    );
    for scenario in SCENARIOS {
        text.push_str(&format!("  {:<10} {}\n", scenario.name, scenario.summary));
        for line in scenario.details.lines() {
            text.push_str(&format!("  {:<10} {line}\n", ""));
        }
    }
    text.push_str(
        "
  --runs N   repeat the scenario N times: medians with (min-max), the worst count
  --json     one JSON line on stdout instead of the table
",
    );
    text
}

/// A scenario and its sizes, from the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub scenario: String,
    pub url: Option<String>,
    pub spawn: Option<String>,
    pub json: bool,
    pub transports: Vec<Transport>,
    pub conns: usize,
    pub hold: Duration,
    pub subs: usize,
    pub rate: f64,
    pub duration: Duration,
    pub in_flight: usize,
    pub size: usize,
    /// `echo`: text frames instead of binary ones.
    pub text: bool,
    pub messages: usize,
    /// Runs of the scenario; the table shows medians with min-max.
    pub runs: usize,
    /// `claims`, `soak`: where to write the charts.
    pub svg: Option<String>,
    /// `soak`: the kinds of misbehaving client, how many of each, and the followers' channels.
    pub abuse: Vec<Abuse>,
    pub abusers: usize,
    pub channels: usize,
    /// `claims`: tiny sizes (tests, a first look).
    pub quick: bool,
    /// `idle`: the WebSocket subscribers offer permessage-deflate as a browser does
    /// ([`DEFLATE_OFFER`]), and a spawned server runs with `--ws-deflate` this mode.
    pub ws_deflate: Option<String>,
}

impl Options {
    pub fn new(scenario: &str) -> Options {
        Options {
            scenario: scenario.to_string(),
            url: None,
            spawn: None,
            json: false,
            transports: Transport::ALL.to_vec(),
            conns: match scenario {
                "echo" => 50,
                "pollers" => 5000,
                _ => 1000,
            },
            hold: Duration::from_secs(2),
            subs: if scenario == "soak" { 500 } else { 100 },
            rate: 100.0,
            duration: Duration::from_secs(if scenario == "soak" { 300 } else { 5 }),
            in_flight: 1,
            size: 32,
            text: false,
            messages: 20,
            runs: 1,
            svg: None,
            quick: false,
            abuse: Abuse::ALL.to_vec(),
            abusers: 100,
            channels: 20,
            ws_deflate: None,
        }
    }
}

/// Parses `bench`'s arguments (after the word `bench`).
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let scenario = args.first().ok_or_else(|| format!("bench: which scenario? one of {}", scenario_names()))?;
    if !SCENARIOS.iter().any(|known| known.name == scenario) {
        return Err(format!("bench: unknown scenario '{scenario}' (one of {})", scenario_names()));
    }
    let soak = scenario == "soak";
    let mut options = Options::new(scenario);
    let mut rest = Args::new(&args[1..]);
    while let Some(flag) = rest.next_flag()? {
        if flag == "--json" || flag == "--quick" {
            options.json |= flag == "--json";
            options.quick |= flag == "--quick";
            continue;
        }
        let value = rest.value()?;
        let number = |value: &str| value.parse::<f64>().ok().filter(|n| *n > 0.0 && n.is_finite());
        let count = |value: &str| {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag}: expected a positive whole number, got '{value}'"))
        };
        let seconds = |value: &str| {
            number(value)
                .map(Duration::from_secs_f64)
                .ok_or(format!("{flag}: expected a positive number of seconds, got '{value}'"))
        };
        match flag {
            "--url" => options.url = Some(value.to_string()),
            "--svg" if options.scenario == "claims" || soak => options.svg = Some(value.to_string()),
            "--minutes" if soak => options.duration = Duration::from_secs_f64(seconds(value)?.as_secs_f64() * 60.0),
            "--seconds" if soak => options.duration = seconds(value)?,
            "--abuse" if soak => options.abuse = Abuse::parse_list(value)?,
            "--abusers" if soak => options.abusers = count(value)?,
            "--channels" if soak => options.channels = count(value)?,
            "--ws-deflate" if options.scenario == "idle" => match value {
                "off" | "no-context" | "context" => options.ws_deflate = Some(value.to_string()),
                _ => return Err(format!("--ws-deflate: expected off, no-context or context, got '{value}'")),
            },
            "--spawn" if value == "epoll" || value == "threads" => options.spawn = Some(value.to_string()),
            "--spawn" => return Err(format!("--spawn: expected epoll or threads, got '{value}'")),
            "--transport" => {
                options.transports = value
                    .split(',')
                    .map(|name| {
                        Transport::parse(name).ok_or(format!("--transport: expected ws, sse or poll, got '{name}'"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--conns" => options.conns = count(value)?,
            "--subs" => options.subs = count(value)?,
            "--in-flight" => options.in_flight = count(value)?,
            "--size" => options.size = count(value)?,
            "--frames" if options.scenario == "echo" => match value {
                "text" | "binary" => options.text = value == "text",
                _ => return Err(format!("--frames: expected text or binary, got '{value}'")),
            },
            "--messages" => options.messages = count(value)?,
            "--runs" => options.runs = count(value)?,
            "--rate" => {
                options.rate =
                    number(value).ok_or(format!("--rate: expected a positive number per second, got '{value}'"))?
            }
            "--hold" => options.hold = seconds(value)?,
            "--duration" => options.duration = seconds(value)?,
            _ => return Err(format!("bench {scenario}: unknown option {flag} (see realtime bench --help)")),
        }
    }
    if options.scenario == "claims" || options.scenario == "pollers" {
        if options.url.is_some() || options.spawn.is_some() {
            return Err(format!("bench {} starts its own servers: no --url or --spawn", options.scenario));
        }
        return Ok(options);
    }
    if soak && options.runs > 1 {
        return Err("bench soak runs once: no --runs".into());
    }
    if options.url.is_some() == options.spawn.is_some() {
        return Err("bench: give exactly one of --url http://HOST:PORT and --spawn epoll|threads".into());
    }
    Ok(options)
}

/// The server under test.
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header to send.
    pub host: String,
    /// A server this tool started: stopped when the target is dropped.
    child: Option<Child>,
}

impl Target {
    /// A server already running at `url` (`http://127.0.0.1:8080`).
    pub fn at(url: &str) -> Result<Target, String> {
        let host = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/').to_string();
        let addr =
            host.to_socket_addrs().map_err(|e| format!("{url}: {e}"))?.next().ok_or(format!("{url}: no address"))?;
        Ok(Target { addr, host, child: None })
    }

    /// Starts this binary's own server on a free port with `--model model`.
    pub fn spawn(model: &str) -> Result<Target, String> {
        Target::spawn_with(model, &[])
    }

    /// Starts this binary's own server with `--model model` and more options. On a machine
    /// with several cores the server gets the first and this process the last, so that the
    /// load generator does not steal the server's CPU (a child inherits the CPU affinity of
    /// the thread that starts it: pin, spawn, re-pin).
    pub fn spawn_with(model: &str, options: &[&str]) -> Result<Target, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let cpus = os::available_cpus().unwrap_or_default();
        let pinned = cpus.len() > 1 && os::pin_to_cpu(cpus[0]).is_ok();
        let mut command = Command::new(exe);
        // The server measured is the one these options describe: variables set for another
        // (REALTIME_MAX_CONNECTIONS, ...) would change it behind the table's back.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with(args::ENVIRONMENT_PREFIX) {
                command.env_remove(name);
            }
        }
        let spawned = command
            .args(["serve", "--addr", "127.0.0.1:0", "--model", model, "--max-connections", "19990"])
            .args(["--poll-timeout", "60", "--idle-timeout", "600"])
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        if pinned {
            let _ = os::pin_to_cpu(cpus[cpus.len() - 1]);
        }
        let mut child = spawned.map_err(|e| format!("cannot start the server: {e}"))?;
        let mut stderr = BufReader::new(child.stderr.take().ok_or("no stderr")?);
        let mut line = String::new();
        stderr.read_line(&mut line).map_err(|e| e.to_string())?;
        let url = line.split("http://").nth(1).and_then(|rest| rest.split_whitespace().next());
        let Some(url) = url else {
            let _ = child.kill();
            return Err(format!("the server did not start: {line}"));
        };
        // Pass on what the server says later (a limit reached), marked as its own.
        thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|line| eprintln!("  server: {line}")));
        let mut target = Target::at(url)?;
        target.child = Some(child);
        // Let the workers start, so that "before" measures a server at rest.
        thread::sleep(Duration::from_millis(300));
        Ok(target)
    }

    /// (RSS bytes, threads) of the server: from /proc for a spawned server, else `/stats`.
    pub fn memory(&self) -> Option<(u64, u64)> {
        if let Some(child) = &self.child {
            let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
            let field = |name: &str| {
                status.lines().find_map(|l| l.strip_prefix(name))?.split_whitespace().next()?.parse::<u64>().ok()
            };
            return Some((field("VmRSS:")? * 1024, field("Threads:")?));
        }
        let stats = json::parse(&self.get("/stats").ok()?).ok()?;
        Some((stats.get("rss_bytes")?.as_u64()?, stats.get("threads")?.as_u64()?))
    }

    /// CPU time the server has used (user and system, `/proc/PID/stat`), for a spawned server.
    pub fn cpu_time(&self) -> Option<Duration> {
        let child = self.child.as_ref()?;
        let stat = crate::process::parse_stat(&std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok()?)?;
        let ticks_per_second = crate::process::USER_HZ?;
        Some(Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks_per_second as f64))
    }

    /// Open file descriptors of the server: the entries of `/proc/PID/fd` for a spawned
    /// server, else the open connections `/stats` counts (each is one descriptor; the server's
    /// few others, its listener and poller, do not change while it runs).
    pub fn open_fds(&self) -> Option<u64> {
        if let Some(child) = &self.child {
            return std::fs::read_dir(format!("/proc/{}/fd", child.id())).ok().map(|entries| entries.count() as u64);
        }
        let stats = json::parse(&self.get("/stats").ok()?).ok()?;
        let connections = stats.get("connections")?;
        ["http", "sse", "ws"].iter().map(|kind| connections.get(kind).and_then(json::Value::as_u64)).sum()
    }

    /// A publisher on a new connection to the server.
    pub fn publisher(&self) -> io::Result<Publisher> {
        Publisher::connect(self.addr, &self.host)
    }

    /// Whether this tool started the server (and reads its numbers from `/proc`).
    pub fn is_spawned(&self) -> bool {
        self.child.is_some()
    }

    /// A GET on a fresh connection; the body.
    pub fn get(&self, path: &str) -> io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.host)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        Ok(text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The cores this machine gives the process, read before any pinning narrows it.
fn machine_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// What the results were measured on: cores and kernel.
fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} cores, Linux {}", machine_cores(), kernel.trim())
}

/// Runs the scenario in `options`; prints progress on stderr and results on stdout.
pub fn run(options: &Options) -> ExitCode {
    machine_cores();
    if let Err(error) = os::raise_open_file_limit() {
        eprintln!("bench: cannot raise the open-file limit: {error}");
    }
    let result = match options.scenario.as_str() {
        "soak" => return run_soak(options),
        "claims" => run_claims(options),
        "pollers" => pollers(options).map(|rows| (rows, format!("epoll vs poll(2), one worker ({})", machine()))),
        _ => run_against_target(options),
    };
    match result {
        Ok((rows, title)) => {
            if options.json {
                println!("{}", report::to_json(&options.scenario, &rows));
            } else {
                print!("{}", report::table(&title, &rows));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak, prints its tables (or one JSON line), writes the chart if asked, and fails
/// with exit code 1, naming the rule, if any rule did not hold.
fn run_soak(options: &Options) -> ExitCode {
    let outcome = match options.url.as_deref() {
        Some(url) => Target::at(url),
        None => Target::spawn(options.spawn.as_deref().unwrap_or("epoll")),
    }
    .and_then(|target| {
        let title = title(options, &target);
        soak::run(options, &target, title)
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    if options.json {
        let samples = soak::sample_rows(&outcome.samples);
        let sections = [("rows", &outcome.kinds), ("rules", &outcome.rules), ("samples", &samples)];
        println!("{}", report::to_json_sections(&options.scenario, &sections));
    } else {
        print!("{}", report::table(&outcome.title, &outcome.kinds));
        print!("{}", report::table("soak: the rules", &outcome.rules));
    }
    if let Some(path) = &options.svg {
        match std::fs::write(path, svg::render_soak(&outcome)) {
            Ok(()) => eprintln!("chart written to {path}"),
            Err(error) => eprintln!("bench: {path}: {error}"),
        }
    }
    if outcome.failures.is_empty() {
        eprintln!("soak: passed");
        return ExitCode::SUCCESS;
    }
    for failure in &outcome.failures {
        eprintln!("soak: FAILED: {failure}");
    }
    ExitCode::FAILURE
}

/// Measures every claim, writes the charts if asked, and returns the claims table.
fn run_claims(options: &Options) -> Result<(Vec<Row>, String), String> {
    let measured = claims::measure(options.quick)?;
    if let Some(path) = &options.svg {
        std::fs::write(path, svg::render(&measured)).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("charts written to {path}");
    }
    Ok((claims::rows(&measured), format!("The seed's claims, measured ({})", machine())))
}

/// Runs the scenario against `--url`, or against servers it spawns: one fresh server per
/// transport for `idle` (an allocator keeps what it once took, so every RSS baseline needs a
/// new process), one for the whole run otherwise.
fn run_against_target(options: &Options) -> Result<(Vec<Row>, String), String> {
    let target = |options: &Options| -> Result<Target, String> {
        match (&options.url, &options.spawn) {
            (Some(url), _) => Target::at(url),
            (None, Some(model)) => match &options.ws_deflate {
                Some(mode) => Target::spawn_with(model, &["--ws-deflate", mode]),
                None => Target::spawn(model),
            },
            (None, None) => Err("no target".into()),
        }
    };
    if options.scenario == "idle" && options.spawn.is_some() {
        let mut rows = Vec::new();
        let mut title = String::new();
        for &transport in &options.transports {
            let one = Options { transports: vec![transport], ..options.clone() };
            let mut runs = Vec::new();
            for _ in 0..options.runs {
                let target = target(&one)?; // a fresh server per run, too
                title = self::title(options, &target);
                runs.push(run_scenario(&one, &target)?);
            }
            rows.extend(report::merge_runs(&runs));
        }
        return Ok((rows, title));
    }
    let target = target(options)?;
    let runs = (0..options.runs).map(|_| run_scenario(options, &target)).collect::<Result<Vec<_>, _>>()?;
    Ok((report::merge_runs(&runs), title(options, &target)))
}

fn title(options: &Options, target: &Target) -> String {
    let deflate = options.ws_deflate.as_deref().map(|mode| format!(" --ws-deflate {mode}")).unwrap_or_default();
    let server = options.spawn.as_deref().map(|model| format!("realtime --model {model}{deflate}"));
    format!(
        "{} against {} ({}; {})",
        options.scenario,
        target.host,
        server.unwrap_or_else(|| "--url".into()),
        machine()
    )
}

/// Runs one scenario against `target` and returns its rows.
pub fn run_scenario(options: &Options, target: &Target) -> Result<Vec<Row>, String> {
    let masks = Masks::new().map_err(|e| e.to_string())?;
    match options.scenario.as_str() {
        "idle" => options.transports.iter().map(|&t| idle(options, target, t, &masks)).collect(),
        "fanout" => options.transports.iter().map(|&t| fanout(options, target, t, &masks)).collect(),
        "echo" => echo(options, target, &masks).map(|row| vec![row]),
        "overhead" => overhead(options, target, &masks),
        other => Err(format!("unknown scenario {other}")),
    }
}

fn io_error(error: io::Error) -> String {
    error.to_string()
}

/// A channel name of this run, so that runs against a long-lived server do not mix.
fn fresh_channel(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    let _ = crate::random::fill(&mut bytes);
    format!("{prefix}-{:08x}", u32::from_le_bytes(bytes))
}

/// The live line on stderr: rewritten in place on a terminal, a plain line every few seconds
/// otherwise (a CI log), and always a last line with the final counts. (The first line used
/// to come at once and the last one whenever the throttle allowed, so a short fan-out's only
/// line read "0 delivered, 0.0 s" above a table of 100,000.)
struct Progress {
    label: String,
    started: Instant,
    /// When a line was last written (the start, before the first).
    last: Instant,
    terminal: bool,
}

impl Progress {
    fn new(label: &str) -> Progress {
        let terminal = std::io::IsTerminal::is_terminal(&io::stderr());
        let now = Instant::now();
        Progress { label: label.to_string(), started: now, last: now, terminal }
    }

    fn every(&self) -> Duration {
        Duration::from_millis(if self.terminal { 250 } else { 5000 })
    }

    /// Shows `status` if the last line is old enough; `status` is only built then.
    fn show(&mut self, status: impl FnOnce() -> String) {
        if self.last.elapsed() < self.every() {
            return;
        }
        self.write(&status());
    }

    /// Shows the final `status`, whenever the last line was.
    fn finish(mut self, status: &str) {
        self.write(status);
        if self.terminal {
            eprintln!();
        }
    }

    fn write(&mut self, status: &str) {
        self.last = Instant::now();
        let line = format!("  {}: {status}, {:.1} s", self.label, self.started.elapsed().as_secs_f64());
        if self.terminal {
            eprint!("\r{line:<78}");
        } else {
            eprintln!("{line}");
        }
    }
}

/// Opens `n` subscribers on `channel`, each with the sink `sink` makes; stops early after
/// repeated connection failures.
fn open_subscribers<S: Sink>(
    engine: &mut Engine<Subscriber<S>>,
    target: &Target,
    (transport, channel, since): (Transport, &str, Option<&str>),
    n: usize,
    masks: &Masks,
    extensions: Option<&str>,
    mut sink: impl FnMut() -> S,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut progress = Progress::new(transport.name());
    for i in 0..n {
        let mut first = Vec::new();
        let subscriber =
            Subscriber::start(transport, &target.host, channel, since, masks, &mut first).with_sink(sink());
        if let (Transport::WebSocket, Some(extensions)) = (transport, extensions) {
            offer_extensions(&mut first, extensions);
        }
        if let Err(error) = engine.open(target.addr, subscriber, first) {
            failures.push(format!("connect: {error}"));
            if failures.len() >= 20 {
                failures.push(format!("gave up after {i} connections"));
                break;
            }
        }
        if i % 100 == 99 {
            let _ = engine.turn(Duration::ZERO); // read the answers as they come
        }
        progress.show(|| format!("{} connections open, {} failed", i + 1 - failures.len(), failures.len()));
    }
    let opened = engine.connections.len();
    progress.finish(&format!("{opened} connections open, {} failed", failures.len()));
    failures
}

/// What Chromium and Firefox offer on every WebSocket (RFC 7692 §7.1).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Adds `Sec-WebSocket-Extensions: extensions` to a WebSocket upgrade request (RFC 6455 §9.1).
/// For `idle` only: its subscribers receive no message, so none has to be decompressed.
fn offer_extensions(request: &mut Vec<u8>, extensions: &str) {
    let end = request.len() - b"\r\n".len(); // the blank line that ends the head
    let field = format!("Sec-WebSocket-Extensions: {extensions}\r\n");
    request.splice(end..end, field.bytes());
}

/// Waits until every SSE and WebSocket subscriber has its 200 or 101 (a long poll answers
/// nothing until there is news, so it is simply given a moment).
fn await_established<S: Sink>(
    engine: &mut Engine<Subscriber<S>>,
    transport: Transport,
    patience: Duration,
) -> io::Result<()> {
    if transport == Transport::LongPoll {
        let settle = Instant::now() + Duration::from_millis(300);
        return engine.run_until(settle, |_| false);
    }
    engine.run_until(Instant::now() + patience, |engine| {
        engine.connections.iter().all(|c| c.client.established || c.closed.is_some())
    })
}

fn idle(options: &Options, target: &Target, transport: Transport, masks: &Masks) -> Result<Row, String> {
    let before = target.memory();
    let mut engine = Engine::new().map_err(io_error)?;
    let channel = fresh_channel("idle");
    let started = Instant::now();
    let offer = options.ws_deflate.as_ref().map(|_| DEFLATE_OFFER);
    let failures =
        open_subscribers(&mut engine, target, (transport, &channel, None), options.conns, masks, offer, Vec::new);
    await_established(&mut engine, transport, Duration::from_secs(30)).map_err(io_error)?;
    let opened_in = started.elapsed();
    engine.run_until(Instant::now() + options.hold, |_| false).map_err(io_error)?;
    let after = target.memory();
    let open = engine.connections.iter().filter(|c| c.closed.is_none()).count();
    let (rss_before, threads_before) = before.unwrap_or_default();
    let (rss_after, threads_after) = after.unwrap_or_default();
    let kib_per_conn = rss_after.saturating_sub(rss_before) as f64 / 1024.0 / open.max(1) as f64;
    eprintln!("  {}: {open} open after {:.1} s", transport.name(), opened_in.as_secs_f64());
    let closed: Vec<&str> = engine.connections.iter().filter_map(|c| c.closed.as_deref()).take(1).collect();
    Ok(vec![
        ("transport", Cell::Text(transport.name().into())),
        ("attempted", Cell::Count(options.conns as u64)),
        ("open", Cell::Count(open as u64)),
        ("failed", Cell::Count((failures.len() + engine.connections.len() - open) as u64)),
        ("rss_before_mib", Cell::Number(rss_before as f64 / 1048576.0)),
        ("rss_after_mib", Cell::Number(rss_after as f64 / 1048576.0)),
        ("kib_per_conn", Cell::Number(kib_per_conn)),
        ("threads_before", Cell::Count(threads_before)),
        ("threads_after", Cell::Count(threads_after)),
        (
            "first_failure",
            Cell::Text(failures.first().map(String::as_str).or(closed.first().copied()).unwrap_or("-").into()),
        ),
    ])
}

/// CPU time this thread has used (`/proc/thread-self/schedstat`, first field, nanoseconds).
/// The engine runs on the calling thread, so its share of a window says whether the load
/// generator, not the server, was the limit.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// The calling thread's CPU use since `before` over `elapsed`, in percent (NaN if unknown).
fn cpu_percent(before: Option<Duration>, elapsed: Duration) -> f64 {
    match (before, thread_cpu()) {
        (Some(before), Some(after)) => after.saturating_sub(before).as_secs_f64() / elapsed.as_secs_f64() * 100.0,
        _ => f64::NAN,
    }
}

/// What the publisher thread did.
#[derive(Default)]
struct Published {
    /// Sequence numbers that got a 201.
    ok: Vec<u64>,
    refused: u64,
    elapsed: Duration,
}

/// Publishes the fan-out keeps in flight on its one connection. With one at a time, the
/// publish rate could not pass one per round trip, and a round trip grows with the fan-out the
/// server does meanwhile: the publisher, not the server, would set the ceiling. Eight is what
/// `../shared/bench`'s load generator keeps (as a pool of connections).
const PUBLISHES_IN_FLIGHT: usize = 8;

/// Sends `"SEQ NANOS"` to `channel` at `rate` for `duration`, up to [`PUBLISHES_IN_FLIGHT`]
/// at a time; NANOS is the send time as nanoseconds since `origin` (the same process reads
/// it back, so one clock serves both).
fn publish_at_rate(
    target: &Target,
    channel: &str,
    rate: f64,
    duration: Duration,
    origin: Instant,
) -> io::Result<Published> {
    let mut publisher = target.publisher()?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = planned_publishes(rate, duration);
    let mut published = Published::default();
    let mut in_flight = VecDeque::with_capacity(PUBLISHES_IN_FLIGHT);
    let start = Instant::now();
    for seq in 0..total {
        if in_flight.len() == PUBLISHES_IN_FLIGHT {
            settle_publish(&mut publisher, &mut in_flight, &mut published, target)?;
        }
        let due = start + interval.mul_f64(seq as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let text = format!("{seq} {}", origin.elapsed().as_nanos());
        in_flight.push_back(seq);
        if publisher.send(channel, &text).is_err() {
            // The answers owed on this connection are lost with it: count them all refused.
            published.refused += in_flight.len() as u64;
            in_flight.clear();
            publisher = target.publisher()?;
        }
    }
    while !in_flight.is_empty() {
        settle_publish(&mut publisher, &mut in_flight, &mut published, target)?;
    }
    published.elapsed = start.elapsed();
    Ok(published)
}

/// Reads the answer to the oldest publish in flight. A refusal, or a connection that broke
/// (whose other answers are then lost too), counts as refused; a broken one is replaced.
fn settle_publish(
    publisher: &mut Publisher,
    in_flight: &mut VecDeque<u64>,
    published: &mut Published,
    target: &Target,
) -> io::Result<()> {
    let Some(seq) = in_flight.pop_front() else { return Ok(()) };
    match publisher.read_published() {
        Ok(_) => published.ok.push(seq),
        Err(error) if error.kind() == io::ErrorKind::Other => published.refused += 1,
        Err(_) => {
            published.refused += 1 + in_flight.len() as u64;
            in_flight.clear();
            *publisher = target.publisher()?;
        }
    }
    Ok(())
}

/// `"SEQ NANOS"`, as [`publish_at_rate`] writes it. Cut at the space by a byte search: a
/// `char` pattern costs a searcher per call, at every delivery.
fn seq_and_nanos(text: &str) -> Option<(u64, u64)> {
    let space = text.bytes().position(|b| b == b' ')?;
    Some((text[..space].parse().ok()?, text[space + 1..].parse().ok()?))
}

/// How many messages `publish_at_rate` sends: `rate` a second for `duration`, at least one.
fn planned_publishes(rate: f64, duration: Duration) -> u64 {
    (rate * duration.as_secs_f64()).round().max(1.0) as u64
}

/// What one subscriber of a fan-out received, counted as each message arrives: its sink
/// ([`Sink`]), so that a delivery costs no copy, no allocation and no pass over the other
/// subscribers. (Public for `benches/subscriber.rs`, which measures a subscriber with it.)
pub struct Tally {
    origin: Instant,
    /// Messages below this sequence number are not timed (the first fifth of a second).
    warm_up: u64,
    /// The sequence numbers seen, one bit each, for the numbers the publisher will send
    /// (`0..published`): a text claiming a number beyond them is counted as delivered but
    /// cannot grow this (a server's bytes never size the client's memory).
    seen: Vec<u64>,
    published: u64,
    distinct: u64,
    duplicates: u64,
    delivered: u64,
    /// Latencies of the timed messages, in milliseconds.
    latencies: Vec<f64>,
}

impl Tally {
    /// A tally for the texts of a fan-out that publishes `published` messages at `rate` a
    /// second, timed from `origin`.
    pub fn new(published: u64, origin: Instant, rate: f64) -> Tally {
        Tally {
            origin,
            warm_up: (rate / 5.0) as u64,
            seen: vec![0; published.div_ceil(64) as usize],
            published,
            distinct: 0,
            duplicates: 0,
            delivered: 0,
            latencies: Vec::new(),
        }
    }

    /// Messages received with a `"SEQ NANOS"` text, duplicates included.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    fn has(&self, seq: u64) -> bool {
        seq < self.published && self.seen[(seq / 64) as usize] & (1 << (seq % 64)) != 0
    }
}

impl Sink for Tally {
    /// Reads a `"SEQ NANOS"` text; others (the marker) are not the publisher's, and ignored.
    fn deliver(&mut self, message: Received<'_>) {
        let Some((seq, sent)) = seq_and_nanos(message.text) else { return };
        self.delivered += 1;
        if seq < self.published {
            let (word, bit) = ((seq / 64) as usize, 1 << (seq % 64));
            if self.seen[word] & bit != 0 {
                self.duplicates += 1;
            } else {
                self.seen[word] |= bit;
                self.distinct += 1;
            }
        }
        if seq < self.warm_up {
            return; // counted for loss, not for latency: connections still warming
        }
        // Nanoseconds since `origin` fit a u64 for 584 years.
        let received = message.at.saturating_duration_since(self.origin).as_nanos() as u64;
        self.latencies.push(received.saturating_sub(sent) as f64 / 1e6);
    }
}

fn fanout(options: &Options, target: &Target, transport: Transport, masks: &Masks) -> Result<Row, String> {
    let channel = fresh_channel("fanout");
    // Every subscriber resumes after this marker: however late its registration, it is owed
    // every message that follows, so anything missing is a real loss.
    let marker = target.publisher().and_then(|mut p| p.publish(&channel, "marker")).map_err(io_error)?;
    let mut engine = Engine::new().map_err(io_error)?;
    let origin = Instant::now();
    let planned = planned_publishes(options.rate, options.duration);
    let tally = || Tally::new(planned, origin, options.rate);
    let failures =
        open_subscribers(&mut engine, target, (transport, &channel, Some(&marker)), options.subs, masks, None, tally);
    await_established(&mut engine, transport, Duration::from_secs(30)).map_err(io_error)?;
    let established = engine.connections.iter().filter(|c| c.closed.is_none()).count();
    eprintln!("  {}: {established} subscribers, publishing {} msgs/s", transport.name(), options.rate);

    let start = Instant::now();
    let cpu_before = thread_cpu();
    let server_cpu_before = target.cpu_time();
    let done = Arc::new(AtomicBool::new(false));
    let result = Arc::new(Mutex::new(None));
    let publisher = {
        let (target, channel, done, result) =
            (Target::at(&target.host)?, channel.clone(), done.clone(), result.clone());
        let (rate, duration) = (options.rate, options.duration);
        thread::spawn(move || {
            let published = publish_at_rate(&target, &channel, rate, duration, origin);
            *lock(&result) = Some(published);
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut progress = Progress::new(transport.name());
    let status = |engine: &Engine<Subscriber<Tally>>| {
        let delivered: u64 = engine.connections.iter().map(|c| c.client.deliveries.delivered).sum();
        let closed = engine.connections.iter().filter(|c| c.closed.is_some()).count();
        format!("{delivered} delivered, {closed} connections lost")
    };
    // Run while publishing, then until everyone has everything (or a grace period passes).
    let grace = Duration::from_secs(10);
    let hard_stop = Instant::now() + options.duration + grace + Duration::from_secs(5);
    engine
        .run_until(hard_stop, |engine| {
            progress.show(|| status(engine));
            done.load(Ordering::SeqCst)
        })
        .map_err(io_error)?;
    let _ = publisher.join();
    let server_cpu = match (server_cpu_before, target.cpu_time()) {
        (Some(before), Some(after)) => {
            after.saturating_sub(before).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0
        }
        _ => f64::NAN,
    };
    let published = lock(&result).take().ok_or("the publisher did not finish")?;
    let published = published.map_err(io_error)?;
    let expected = published.ok.len() as u64;
    let drain_deadline = Instant::now() + grace;
    while Instant::now() < drain_deadline {
        engine.turn(Duration::from_millis(20)).map_err(io_error)?;
        let everyone_done =
            engine.connections.iter().all(|c| c.closed.is_some() || c.client.deliveries.distinct >= expected);
        if everyone_done {
            break;
        }
    }
    progress.finish(&status(&engine));
    let client_cpu = cpu_percent(cpu_before, start.elapsed());
    let window = published.elapsed.max(Duration::from_millis(1)).as_secs_f64();
    let tallies = || engine.connections.iter().map(|c| &c.client.deliveries);
    let delivered: u64 = tallies().map(|tally| tally.delivered).sum();
    let duplicates: u64 = tallies().map(|tally| tally.duplicates).sum();
    let lost: u64 = tallies().map(|tally| published.ok.iter().filter(|&&seq| !tally.has(seq)).count() as u64).sum();
    let mut latencies: Vec<f64> = tallies().flat_map(|tally| tally.latencies.iter().copied()).collect();
    let gaps: usize = engine.connections.iter().map(|c| c.client.gaps).sum();
    let requests: usize = engine.connections.iter().map(|c| c.client.requests).sum();
    latencies.sort_by(f64::total_cmp);
    Ok(vec![
        ("transport", Cell::Text(transport.name().into())),
        ("subscribers", Cell::Count(established as u64)),
        ("failed", Cell::Count(failures.len() as u64 + (options.subs - established) as u64)),
        ("published", Cell::Count(expected)),
        ("refused", Cell::Count(published.refused)),
        ("publish_rate", Cell::Number(expected as f64 / window)),
        ("delivered", Cell::Count(delivered)),
        ("deliveries_per_s", Cell::Number(delivered as f64 / window)),
        ("lost", Cell::Count(lost)),
        ("duplicated", Cell::Count(duplicates)),
        ("gaps", Cell::Count(gaps as u64)),
        ("requests", Cell::Count(requests as u64)),
        ("p50_ms", Cell::Number(percentile(&latencies, 50.0))),
        ("p99_ms", Cell::Number(percentile(&latencies, 99.0))),
        ("max_ms", Cell::Number(latencies.last().copied().unwrap_or(f64::NAN))),
        // Near 100: the load generator was the limit, and the latencies are its own backlog.
        ("client_cpu_pct", Cell::Number(client_cpu)),
        // The server's processes, while publishing (a spawned server only): near 100 times its
        // cores, it was the limit.
        ("server_cpu_pct", Cell::Number(server_cpu)),
    ])
}

fn echo(options: &Options, target: &Target, masks: &Masks) -> Result<Row, String> {
    let mut engine = Engine::new().map_err(io_error)?;
    for _ in 0..options.conns {
        let mut first = Vec::new();
        let echoer = Echoer::start(&target.host, options.size, options.in_flight, options.text, masks, &mut first);
        engine.open(target.addr, echoer, first).map_err(io_error)?;
    }
    // Warm up (handshakes, first round trips), then measure a clean window.
    let warm_up = Duration::from_millis(500).min(options.duration / 2);
    engine.run_until(Instant::now() + warm_up, |_| false).map_err(io_error)?;
    for connection in &mut engine.connections {
        connection.client.round_trips.clear();
    }
    let start = Instant::now();
    let cpu_before = thread_cpu();
    let mut progress = Progress::new("echo");
    engine
        .run_until(start + options.duration, |engine| {
            let round_trips: usize = engine.connections.iter().map(|c| c.client.round_trips.len()).sum();
            let closed = engine.connections.iter().filter(|c| c.closed.is_some()).count();
            progress.show(|| format!("{round_trips} round trips, {closed} connections lost"));
            false
        })
        .map_err(io_error)?;
    let round_trips: usize = engine.connections.iter().map(|c| c.client.round_trips.len()).sum();
    let closed = engine.connections.iter().filter(|c| c.closed.is_some()).count();
    progress.finish(&format!("{round_trips} round trips, {closed} connections lost"));
    let client_cpu = cpu_percent(cpu_before, start.elapsed());
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = engine
        .connections
        .iter_mut()
        .flat_map(|c| c.client.round_trips.drain(..))
        .map(|rtt| rtt.as_secs_f64() * 1e6)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let closed = engine.connections.iter().filter(|c| c.closed.is_some()).count();
    Ok(vec![
        ("conns", Cell::Count(options.conns as u64)),
        ("in_flight", Cell::Count(options.in_flight as u64)),
        ("size", Cell::Count(options.size as u64)),
        ("frames", Cell::Text(if options.text { "text" } else { "binary" }.into())),
        ("msgs_per_s", Cell::Number(latencies.len() as f64 / elapsed)),
        ("p50_us", Cell::Number(percentile(&latencies, 50.0))),
        ("p99_us", Cell::Number(percentile(&latencies, 99.0))),
        ("max_us", Cell::Number(latencies.last().copied().unwrap_or(f64::NAN))),
        ("closed", Cell::Count(closed as u64)),
        ("client_cpu_pct", Cell::Number(client_cpu)),
    ])
}

/// Why epoll exists: the event loop with one worker on each readiness backend, N idle SSE
/// streams plus one on another channel, and the time from a publish to that stream's event
/// (median of 50 after 10 to warm up). poll(2) hands the kernel every descriptor on every
/// wait, epoll only reports the ready ones: the difference grows with N.
fn pollers(options: &Options) -> Result<Vec<Row>, String> {
    let masks = Masks::new().map_err(io_error)?;
    let mut rows = Vec::new();
    for poller in ["epoll", "poll"] {
        for n in [1_000.min(options.conns), options.conns] {
            let target = Target::spawn_with("epoll", &["--workers", "1", "--poller", poller, "--keepalive", "600"])?;
            let mut engine = Engine::new().map_err(io_error)?;
            let idle = (Transport::Sse, fresh_channel("idle"));
            let failures = open_subscribers(&mut engine, &target, (idle.0, &idle.1, None), n, &masks, None, Vec::new);
            await_established(&mut engine, Transport::Sse, Duration::from_secs(600)).map_err(io_error)?;
            let hot = fresh_channel("hot");
            let mut first = Vec::new();
            let subscriber = Subscriber::start(Transport::Sse, &target.host, &hot, None, &masks, &mut first);
            let token = engine.open(target.addr, subscriber, first).map_err(io_error)?;
            engine
                .run_until(Instant::now() + Duration::from_secs(30), |e| e.connections[token].client.established)
                .map_err(io_error)?;
            let mut publisher = target.publisher().map_err(io_error)?;
            let mut samples = Vec::new();
            for round in 0..60 {
                let start = Instant::now();
                publisher.publish(&hot, "hi").map_err(io_error)?;
                engine
                    .run_until(start + Duration::from_secs(30), |e| !e.connections[token].client.deliveries.is_empty())
                    .map_err(io_error)?;
                let Some(delivery) = engine.connections[token].client.deliveries.pop() else {
                    return Err(format!("{poller}: the event did not arrive"));
                };
                if round >= 10 {
                    samples.push(delivery.at.saturating_duration_since(start).as_secs_f64() * 1e6);
                }
            }
            samples.sort_by(f64::total_cmp);
            let idle = engine.connections.iter().filter(|c| c.closed.is_none()).count() - 1;
            eprintln!("  {poller}: {idle} idle streams");
            rows.push(vec![
                ("poller", Cell::Text(poller.into())),
                ("idle_streams", Cell::Count(idle as u64)),
                ("failed", Cell::Count(failures.len() as u64)),
                ("p50_us", Cell::Number(percentile(&samples, 50.0))),
                ("p90_us", Cell::Number(percentile(&samples, 90.0))),
            ]);
        }
    }
    Ok(rows)
}

/// Bytes per delivered 2-byte message: one subscriber per transport, one message published
/// at a time and awaited (so a long poll carries exactly one message per round trip, its
/// worst case), counted at the subscriber's socket in both directions after set-up. Plus
/// naive polling: one `?timeout=0` request per second whatever happens.
fn overhead(options: &Options, target: &Target, masks: &Masks) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut publisher = target.publisher().map_err(io_error)?;
    for transport in Transport::ALL {
        let channel = fresh_channel("overhead");
        let marker = publisher.publish(&channel, "go").map_err(io_error)?;
        let mut engine = Engine::new().map_err(io_error)?;
        let mut first = Vec::new();
        let subscriber = Subscriber::start(transport, &target.host, &channel, Some(&marker), masks, &mut first);
        engine.open(target.addr, subscriber, first).map_err(io_error)?;
        await_established(&mut engine, transport, Duration::from_secs(10)).map_err(io_error)?;
        let setup = engine.connections[0].bytes_read + engine.connections[0].bytes_written;
        for _ in 0..options.messages {
            publisher.publish(&channel, "hi").map_err(io_error)?;
            engine
                .run_until(Instant::now() + Duration::from_secs(10), |e| !e.connections[0].client.deliveries.is_empty())
                .map_err(io_error)?;
            if engine.connections[0].client.deliveries.drain(..).count() == 0 {
                return Err(format!("{}: a message did not arrive", transport.name()));
            }
        }
        let connection = &engine.connections[0];
        let total = connection.bytes_read + connection.bytes_written;
        rows.push(vec![
            ("transport", Cell::Text(transport.name().into())),
            ("setup_bytes", Cell::Count(setup)),
            ("bytes_per_message", Cell::Number(total.saturating_sub(setup) as f64 / options.messages as f64)),
            ("requests_per_message", Cell::Number((connection.client.requests - 1) as f64 / options.messages as f64)),
        ]);
    }
    // Naive polling: what one empty poll costs; an hour of them is 3,600 of these.
    let channel = fresh_channel("overhead");
    let mut poller = target.publisher().map_err(io_error)?;
    let request = format!("GET /poll/{channel}?timeout=0 HTTP/1.1\r\nHost: {}\r\n\r\n", target.host);
    poller.send_raw(request.as_bytes()).map_err(io_error)?;
    poller.read_response().map_err(io_error)?;
    rows.push(vec![
        ("transport", Cell::Text("naive poll (empty answer)".into())),
        ("setup_bytes", Cell::Count(0)),
        ("bytes_per_message", Cell::Number((request.len() as u64 + poller.bytes) as f64)),
        ("requests_per_message", Cell::Number(1.0)),
    ]);
    Ok(rows)
}
