//! The server's settings and the command line that sets them.
//!
//! Every limit in the product is here, with its default and the reason for it, so that one
//! file answers "what can I tune, and what happens if I don't?".

#![forbid(unsafe_code)]

use std::time::Duration;

use crate::args::{self, Args};
use crate::broker::redis::{self, ClusterUrl, RedisUrl};
use crate::broker::{self, History};
use crate::http::request::{Limits, MAX_HEADERS, MAX_HEAD_BYTES, MAX_TARGET_BYTES};
use crate::log;
use crate::token::{self, ChannelPattern};
use crate::ws::extension::DeflateMode;

/// The longest a client may ask a long poll to wait (`?timeout=`, capped to this). Proxies and
/// browsers commonly give up on a silent request after 60 to 120 s.
pub const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server model drives the connections (the sans-I/O core is the same for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// One OS thread per connection, blocking reads and writes: `src/server/threads.rs`.
    Threads,
    /// A few worker threads multiplexing non-blocking sockets: `src/server/event_loop.rs`.
    EventLoop,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Threads => "threads",
            Model::EventLoop => "epoll",
        }
    }
}

/// Which system call the event loop's poller ([`crate::server::poller::Poller`]) uses. Chosen
/// once, at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// epoll(7): Linux only; O(ready) per wait.
    Epoll,
    /// poll(2): any Unix; O(registered) per wait.
    Poll,
}

impl Backend {
    /// The best backend this platform has: epoll on Linux, poll(2) elsewhere.
    pub fn native() -> Backend {
        if cfg!(target_os = "linux") {
            Backend::Epoll
        } else {
            Backend::Poll
        }
    }
}

/// The key signed channel tokens are checked with (`--token-secret`). Its `Debug` form does
/// not show it, so that printing a `Config` cannot leak it into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// At least 32 bytes ([`token::check_secret`], RFC 7518 §3.2).
    pub fn new(bytes: Vec<u8>) -> Result<Secret, String> {
        token::check_secret(&bytes)?;
        Ok(Secret(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Where messages live (`--broker`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerUrl {
    /// In this process only: one node (`src/broker/memory.rs`).
    Memory,
    /// In a Redis server that several nodes share (`src/broker/redis.rs`).
    Redis(RedisUrl),
    /// In a Redis Cluster that several nodes share (`src/broker/redis.rs`, "Cluster").
    RedisCluster(ClusterUrl),
}

impl BrokerUrl {
    /// `memory`, `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or
    /// `redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]`.
    pub fn parse(text: &str) -> Result<BrokerUrl, String> {
        match text {
            "memory" => Ok(BrokerUrl::Memory),
            url if url.starts_with("redis-cluster://") => ClusterUrl::parse(url).map(BrokerUrl::RedisCluster),
            url => RedisUrl::parse(url).map(BrokerUrl::Redis),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub addr: String,
    /// Where messages live: this process, or a Redis server shared by several nodes.
    pub broker: BrokerUrl,
    /// The longest a request waits for Redis before it is answered 503 (a publish) and the
    /// longest a command may go unanswered before the link declares its connection dead
    /// ([`redis::DEFAULT_REDIS_TIMEOUT`]).
    pub redis_timeout: Duration,
    /// Connections of the Redis broker's command link, each pipelined
    /// ([`redis::pipeline::DEFAULT_CONNECTIONS`]).
    pub redis_connections: usize,
    pub model: Model,
    /// Event-loop workers (`0`: one per available core).
    pub workers: usize,
    /// The event loop's readiness API: epoll (Linux) or poll(2), kept to show why epoll exists.
    pub poller: Backend,
    /// Messages each channel retains for resume (`?since=`, `Last-Event-ID`).
    pub history: usize,
    /// Bytes of message envelopes each channel retains, whatever `history` allows: large
    /// messages cannot make a channel's history large ([`broker::DEFAULT_HISTORY_BYTES`]).
    /// The newest message is always kept. With Redis, this bounds each node's mirror; the
    /// stream in Redis keeps `history` entries.
    pub history_bytes: usize,
    /// Channels the broker may hold at once; bounds its memory with `history_bytes`.
    pub max_channels: usize,
    /// A channel with no subscriber and no publish for this long is dropped with its history
    /// ([`broker::DEFAULT_CHANNEL_TTL`]), so `max_channels` counts channels in use, not names
    /// ever used.
    pub channel_ttl: Duration,
    /// How long a long poll waits when the client does not say (`?timeout=`).
    pub poll_timeout: Duration,
    /// Open connections beyond this are answered 503 and closed, before any thread or buffer
    /// is spent on them. Keep it below the process's open-file limit.
    pub max_connections: usize,
    /// Connections the kernel completes and queues before `accept` takes them (the listen
    /// backlog; the kernel caps it at `net.core.somaxconn`). std's default of 128 makes a
    /// burst of connects wait a second for SYN retries.
    pub backlog: u32,
    /// `--model threads` only: how many threads may serve connections at once (a WebSocket
    /// takes two). `0`: as many as the kernel allows the process (`vm.max_map_count`,
    /// `kernel.threads-max`, `kernel.pid_max`); past the budget, 503 or a 1011 close.
    pub max_threads: usize,
    /// When set, publishing (`POST /publish`, a WebSocket text frame) needs this token, as
    /// `Authorization: Bearer <token>`, `?token=<token>` or `?access_token=<token>` (see
    /// [`crate::gate`]).
    pub publish_token: Option<String>,
    /// When set, subscribing and publishing need a token signed with it naming the channel
    /// ([`crate::token`]), except subscribing to a `public_channels` channel.
    pub token_secret: Option<Secret>,
    /// Channels anyone may subscribe to (never publish) while `token_secret` is set.
    pub public_channels: Vec<ChannelPattern>,
    /// Publishes per second per client address (a token bucket with a burst of as many);
    /// `None`: no limit. Off by default because benchmarks publish from one address.
    pub publish_rate: Option<u32>,
    /// Open connections per client address; `None`: no limit beyond `max_connections`.
    pub max_conns_per_ip: Option<usize>,
    /// The largest message text a client may publish, in bytes (413 beyond).
    pub max_publish_bytes: usize,
    /// A request head must arrive within this time once it has started, and a connection's
    /// first head within this time of the accept (408 after, or a silent close if nothing came):
    /// neither a slowloris client trickling bytes nor a silent one holds a slot for long.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Limits of the request head parser (431, 414).
    pub limits: Limits,
    /// How often an idle stream shows it is alive: an SSE `: keepalive` comment, a WebSocket
    /// ping. Proxies close connections that stay silent (nginx: 60 s by default).
    pub keepalive: Duration,
    /// The `retry:` an SSE stream starts with: how long a browser waits before reconnecting.
    pub sse_retry: Duration,
    /// The largest WebSocket message the server assembles (1009 beyond), after
    /// decompression when it came compressed.
    pub max_message_bytes: usize,
    /// permessage-deflate (RFC 7692): off, on without context takeover (nothing kept between
    /// messages, a broadcast compressed once), or on with it ([`crate::ws::extension`]).
    pub ws_deflate: DeflateMode,
    /// Origins allowed besides the server's own (`*`: any), with CORS. Applies to every route
    /// that publishes, follows a channel or holds a socket (`/publish`, `/poll`, `/sse`, `/ws`,
    /// `/echo`); any other origin is refused there with 403 ([`crate::gate::origin`]).
    pub allowed_origins: Vec<String>,
    /// Bytes a stream may have waiting to be sent before the server stops reading the broker
    /// for it. The channel's history, not a per-connection queue, holds what it has not read.
    pub max_outbound_bytes: usize,
    /// A client that takes no bytes for this long while some wait for it is a slow consumer
    /// and is disconnected (a WebSocket with 1008); it can resume from its last id.
    pub send_timeout: Duration,
    /// Client-controlled memory all connections together may hold (partial messages and
    /// bodies, queued output); past it the biggest holders give theirs up ([`crate::budget`]).
    pub memory_budget: usize,
    /// The least a log line must matter to be written ([`crate::log`]).
    pub log_level: log::Level,
    /// Log lines for people (text) or for a log shipper (JSON).
    pub log_format: log::Format,
    /// One line per finished exchange. Off by default: a busy server answers thousands of
    /// requests a second, and the counters in `/stats` already say how many.
    pub access_log: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: "127.0.0.1:8080".into(),
            broker: BrokerUrl::Memory,
            redis_timeout: redis::DEFAULT_REDIS_TIMEOUT,
            redis_connections: redis::pipeline::DEFAULT_CONNECTIONS,
            model: Model::EventLoop,
            workers: 0,
            poller: Backend::native(),
            history: broker::DEFAULT_HISTORY,
            history_bytes: broker::DEFAULT_HISTORY_BYTES,
            max_channels: broker::DEFAULT_MAX_CHANNELS,
            channel_ttl: broker::DEFAULT_CHANNEL_TTL,
            poll_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            // nginx's default on Linux is 511; 1024 absorbs a reconnect storm of a few thousand
            // clients within the kernel's default somaxconn (4096 since Linux 5.4).
            backlog: 1024,
            max_threads: 0,
            publish_token: None,
            token_secret: None,
            public_channels: Vec::new(),
            publish_rate: None,
            max_conns_per_ip: None,
            // 64 KiB: a chat message or an event, not a file upload.
            max_publish_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            // A little under nginx's 75 s keepalive_timeout default, so that the server, not
            // the proxy, decides when an idle upstream connection ends.
            idle_timeout: Duration::from_secs(60),
            limits: Limits {
                max_head_bytes: MAX_HEAD_BYTES,
                max_target_bytes: MAX_TARGET_BYTES,
                max_headers: MAX_HEADERS,
            },
            keepalive: Duration::from_secs(15),
            sse_retry: Duration::from_millis(2000),
            // 16 MiB: Autobahn|Testsuite's largest cases (9.1.6, 9.2.6) send 16 MiB messages.
            // Messages published to a channel still obey `max_publish_bytes`.
            max_message_bytes: crate::ws::session::DEFAULT_MAX_MESSAGE,
            ws_deflate: DeflateMode::NoContext,
            allowed_origins: Vec::new(),
            max_outbound_bytes: 256 * 1024,
            send_timeout: Duration::from_secs(10),
            memory_budget: crate::budget::default_budget(),
            log_level: log::Level::Info,
            log_format: log::Format::Text,
            access_log: false,
        }
    }
}

impl Config {
    /// The bounds the broker keeps its memory within.
    pub fn broker_limits(&self) -> broker::Limits {
        broker::Limits {
            history: History { messages: self.history, bytes: self.history_bytes },
            max_channels: self.max_channels,
            channel_ttl: self.channel_ttl,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve(Box<Config>),
    /// Print this text and exit 0.
    Help(String),
}

pub const SERVE_USAGE: &str = "\
Usage: realtime serve [OPTIONS]

Options (durations in seconds, fractions allowed):
  --addr HOST:PORT          listen address                        [127.0.0.1:8080]
  --broker URL              memory, or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
                            to share channels with other nodes    [memory]
                            (a Redis Cluster, 7.0 or later:
                            redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...])
  --redis-timeout SECS      longest wait for Redis before a publish
                            answers 503                           [2] (0.01 to 60)
  --redis-connections N     pipelined command connections to Redis, the
                            first up in use, the others standing by [2] (max 16)
  --model epoll|threads     event loop, or a thread per connection [epoll]
  --workers N               event-loop worker threads             [one per core]
  --poller epoll|poll       the event loop's readiness API        [epoll on Linux]
  --history N               messages kept per channel for resume  [1000]
  --history-bytes N         bytes of messages kept per channel    [4194304]
                            (the newest message is always kept)
  --max-channels N          channels the broker may hold at once  [10000]
  --channel-ttl SECS        drop a channel with no subscriber and
                            no publish for this long              [300]
                            (memory broker; a Redis node drops a
                            mirror 5 s after its last subscriber,
                            and Redis a stream this long after
                            its last publish)
  --poll-timeout SECS       long-poll wait without ?timeout=      [30] (max 60)
  --max-connections N       open connections before 503           [10000]
  --backlog N               listen backlog (capped by somaxconn)  [1024]
  --max-threads N           threads model: thread budget          [what the kernel allows]
  --publish-token TOKEN     publishing (POST or WebSocket) needs this token,
                            as Authorization: Bearer TOKEN or ?token=TOKEN
  --token-secret SECRET     subscribing and publishing need a token signed
                            with SECRET (HS256 JWT, 32+ bytes; realtime token)
  --token-secret-file PATH  the same, read from a file (keeps it out of ps)
  --public-channel PATTERN  with a secret: anyone may subscribe to these
                            channels (repeatable; name or prefix* )
  --allowed-origin URL      also accept this Origin, with CORS (repeatable;
                            * for any; default: same origin only)
  --publish-rate N          publishes per second per client IP (429)  [off]
  --max-conns-per-ip N      open connections per client IP (429)      [off]
  --max-publish-bytes N     largest message a client may publish  [65536]
  --header-timeout SECS     time to send a request head (408)     [10]
  --idle-timeout SECS       keep-alive connection idle limit      [60]
  --max-head-bytes N        request head limit (431)              [16384]
  --max-target-bytes N      request-target limit (414)            [8192]
  --max-headers N           header field count limit (431)        [100]
  --keepalive SECS          SSE keepalive comment / WebSocket ping [15]
  --sse-retry MILLIS        the retry: an SSE stream starts with  [2000]
  --max-message-bytes N     largest WebSocket message (1009)      [16777216]
  --ws-deflate MODE         permessage-deflate: off, no-context (no
                            state kept between messages) or context
                            (a window per connection)       [no-context]
  --max-outbound-bytes N    bytes queued per stream before it waits [262144]
  --send-timeout SECS       slow-consumer limit: no bytes taken   [10]
  --memory-budget BYTES     client-controlled memory, all connections
                            (suffix K, M or G)          [a quarter of RAM]
  --log-level LEVEL         error, warn, info or debug            [info]
  --log-format text|json    log lines for people or for machines  [text]
  --access-log              a line per finished request, long poll,
                            SSE stream or WebSocket               [off]
  -h, --help                this text
  -V, --version             print the version
";

/// Parses the arguments after the program name, ignoring the environment (as tests want).
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    parse_args_and_environment(args, &|_| None)
}

/// Parses the arguments after the program name; every flag the command line does not give is
/// read from its environment variable through `lookup` (`--addr` from `REALTIME_ADDR`, see
/// [`crate::args`]).
pub fn parse_args_and_environment(
    args: &[String],
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Command, String> {
    let words = match args.first().map(String::as_str) {
        Some("serve") => &args[1..],
        Some(other) if !other.starts_with('-') => {
            return Err(format!("unknown command '{other}' (see realtime --help)"));
        }
        _ => args,
    };
    let environment = args::read_environment(&args::documented_flags(SERVE_USAGE), lookup);
    let mut args = Args::with_environment(words, &environment);
    let command = parse_serve_flags(&mut args);
    command.map_err(|error| args.explain(error))
}

/// `realtime serve --help`: the options, then the environment variables that set them.
pub fn serve_usage() -> String {
    let environment = args::environment_help(&args::documented_flags(SERVE_USAGE));
    format!(
        "{SERVE_USAGE}\nA value may follow its option after '=': --addr=0.0.0.0:8080.\n\n{environment}\n{}",
        args::EXIT_STATUS_HELP
    )
}

/// Reads every flag into a [`Config`]: one arm per flag, the conventions (`--flag=value`,
/// the environment) being [`Args`]'s.
fn parse_serve_flags(args: &mut Args) -> Result<Command, String> {
    let mut config = Config::default();
    while let Some(flag) = args.next_flag()? {
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help(serve_usage()));
        }
        let mut value = || args.value();
        match flag {
            "--addr" => config.addr = value()?.to_string(),
            "--broker" => config.broker = BrokerUrl::parse(value()?).map_err(|why| format!("{flag}: {why}"))?,
            "--redis-timeout" => {
                config.redis_timeout = seconds(flag, value()?)?;
                if !(redis::MIN_REDIS_TIMEOUT..=redis::MAX_REDIS_TIMEOUT).contains(&config.redis_timeout) {
                    return Err(format!(
                        "{flag}: between {} and {} seconds",
                        redis::MIN_REDIS_TIMEOUT.as_secs_f64(),
                        redis::MAX_REDIS_TIMEOUT.as_secs()
                    ));
                }
            }
            "--redis-connections" => {
                config.redis_connections = positive(flag, value()?)?;
                if config.redis_connections > redis::MAX_REDIS_CONNECTIONS {
                    return Err(format!("{flag}: at most {}", redis::MAX_REDIS_CONNECTIONS));
                }
            }
            "--model" => {
                config.model = match value()? {
                    "threads" => Model::Threads,
                    "epoll" => Model::EventLoop,
                    other => return Err(format!("--model: unknown model '{other}' (expected epoll or threads)")),
                }
            }
            "--workers" => config.workers = positive(flag, value()?)?,
            "--ws-deflate" => {
                config.ws_deflate = DeflateMode::parse(value()?).map_err(|why| format!("{flag}: {why}"))?
            }
            "--poller" => {
                config.poller = match value()? {
                    "epoll" if cfg!(target_os = "linux") => Backend::Epoll,
                    "poll" => Backend::Poll,
                    other => return Err(format!("--poller: unsupported poller '{other}' (expected epoll or poll)")),
                }
            }
            "--history" => config.history = positive(flag, value()?)?,
            "--history-bytes" => config.history_bytes = positive(flag, value()?)?,
            "--max-channels" => config.max_channels = positive(flag, value()?)?,
            "--channel-ttl" => config.channel_ttl = seconds(flag, value()?)?,
            "--poll-timeout" => {
                config.poll_timeout = seconds(flag, value()?)?;
                if config.poll_timeout > MAX_POLL_TIMEOUT {
                    return Err(format!("{flag}: at most {} seconds", MAX_POLL_TIMEOUT.as_secs()));
                }
            }
            "--max-connections" => config.max_connections = positive(flag, value()?)?,
            "--backlog" => {
                config.backlog = u32::try_from(positive(flag, value()?)?).map_err(|_| format!("{flag}: too large"))?
            }
            "--max-threads" => config.max_threads = positive(flag, value()?)?,
            "--publish-token" => {
                let token = value()?;
                if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!("{flag}: expected visible ASCII characters"));
                }
                config.publish_token = Some(token.to_string());
            }
            "--token-secret" => {
                config.token_secret =
                    Some(Secret::new(value()?.as_bytes().to_vec()).map_err(|why| format!("{flag}: {why}"))?)
            }
            "--token-secret-file" => {
                let path = value()?;
                let mut bytes = std::fs::read(path).map_err(|error| format!("{flag}: cannot read {path}: {error}"))?;
                // A file written by `echo` or an editor ends in a newline that is not part of it.
                for ending in [&b"\r\n"[..], b"\n"] {
                    if bytes.ends_with(ending) {
                        bytes.truncate(bytes.len() - ending.len());
                        break;
                    }
                }
                config.token_secret = Some(Secret::new(bytes).map_err(|why| format!("{flag}: {why}"))?);
            }
            "--public-channel" => {
                config.public_channels.push(ChannelPattern::parse(value()?).map_err(|why| format!("{flag}: {why}"))?)
            }
            "--publish-rate" => {
                config.publish_rate =
                    Some(u32::try_from(positive(flag, value()?)?).map_err(|_| format!("{flag}: too large"))?)
            }
            "--max-conns-per-ip" => config.max_conns_per_ip = Some(positive(flag, value()?)?),
            "--max-publish-bytes" => config.max_publish_bytes = positive(flag, value()?)?,
            "--header-timeout" => config.header_timeout = seconds(flag, value()?)?,
            "--idle-timeout" => config.idle_timeout = seconds(flag, value()?)?,
            "--max-head-bytes" => config.limits.max_head_bytes = positive(flag, value()?)?,
            "--max-target-bytes" => config.limits.max_target_bytes = positive(flag, value()?)?,
            "--max-headers" => config.limits.max_headers = positive(flag, value()?)?,
            "--keepalive" => config.keepalive = seconds(flag, value()?)?,
            "--sse-retry" => config.sse_retry = Duration::from_millis(positive(flag, value()?)? as u64),
            "--max-message-bytes" => config.max_message_bytes = positive(flag, value()?)?,
            "--allowed-origin" => {
                let origin = value()?;
                if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                    return Err(format!("{flag}: expected * or an origin like https://example.com, got '{origin}'"));
                }
                config.allowed_origins.push(origin.trim_end_matches('/').to_ascii_lowercase());
            }
            "--max-outbound-bytes" => config.max_outbound_bytes = positive(flag, value()?)?,
            "--send-timeout" => config.send_timeout = seconds(flag, value()?)?,
            "--memory-budget" => config.memory_budget = bytes(flag, value()?)?,
            "--log-level" => config.log_level = log::Level::parse(value()?).map_err(|why| format!("{flag}: {why}"))?,
            "--log-format" => {
                config.log_format = log::Format::parse(value()?).map_err(|why| format!("{flag}: {why}"))?
            }
            "--access-log" => config.access_log = true,
            other => return Err(format!("unknown option '{other}' (see realtime serve --help)")),
        }
    }
    if !config.public_channels.is_empty() && config.token_secret.is_none() {
        return Err(
            "--public-channel: only means something with --token-secret (without it every channel is public)".into()
        );
    }
    if matches!(config.broker, BrokerUrl::Redis(_) | BrokerUrl::RedisCluster(_))
        && config.max_publish_bytes > redis::MAX_MESSAGE_BYTES
    {
        return Err(format!("--max-publish-bytes: at most {} with a Redis broker", redis::MAX_MESSAGE_BYTES));
    }
    Ok(Command::Serve(Box::new(config)))
}

fn positive(flag: &str, value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag}: expected a positive whole number, got '{value}'")),
    }
}

/// A positive size in bytes, with an optional binary suffix: `512M` is 512 MiB.
fn bytes(flag: &str, value: &str) -> Result<usize, String> {
    let (digits, unit) = match value.char_indices().last() {
        Some((at, 'K' | 'k')) => (&value[..at], 1 << 10),
        Some((at, 'M' | 'm')) => (&value[..at], 1 << 20),
        Some((at, 'G' | 'g')) => (&value[..at], 1 << 30),
        _ => (value, 1),
    };
    match digits.parse::<usize>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag}: expected a positive number of bytes like 268435456 or 256M, got '{value}'")),
    }
}

/// The range of a duration flag, in seconds: a millisecond to a day. Zero is refused, and the
/// message says so: every duration here is a timeout or an interval, and zero would be a
/// keepalive or a deadline due at every turn of the loop, not "off"; and a wait shorter than
/// a millisecond is zero to `epoll_wait` and `poll`, which count milliseconds.
const SECONDS_RANGE: (f64, f64) = (0.001, 86_400.0);

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let (min, max) = SECONDS_RANGE;
    match value.parse::<f64>() {
        Ok(secs) if (min..=max).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("{flag}: expected a number of seconds from {min} to {max}, got '{value}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse_args(&args)
    }

    #[test]
    fn no_subcommand_means_serve_with_defaults() {
        assert_eq!(parse(""), Ok(Command::Serve(Box::default())));
        assert_eq!(parse("serve"), Ok(Command::Serve(Box::default())));
    }

    #[test]
    fn flags_set_fields() {
        let Ok(Command::Serve(config)) =
            parse("--addr 0.0.0.0:9000 --history 5 --poll-timeout 0.5 --publish-token s3cret --max-threads 64")
        else {
            panic!("expected serve");
        };
        assert_eq!(config.addr, "0.0.0.0:9000");
        assert_eq!(config.history, 5);
        assert_eq!(config.poll_timeout, Duration::from_millis(500));
        assert_eq!(config.publish_token.as_deref(), Some("s3cret"));
        assert_eq!(config.max_threads, 64);
    }

    #[test]
    fn history_flags_bound_each_channel_by_count_bytes_and_idle_time() {
        let Ok(Command::Serve(config)) = parse("--history 50 --history-bytes 65536 --max-channels 7 --channel-ttl 30")
        else {
            panic!("expected serve");
        };
        let limits = config.broker_limits();
        assert_eq!(limits.history, History { messages: 50, bytes: 65536 });
        assert_eq!((limits.max_channels, limits.channel_ttl), (7, Duration::from_secs(30)));
        let defaults = Config::default().broker_limits();
        assert_eq!(defaults, broker::Limits::default(), "one set of defaults, with their reasons, in the broker");
        for bad in ["--history-bytes 0", "--history-bytes 1k", "--channel-ttl 0", "--channel-ttl 86401"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn security_flags_set_the_gate() {
        let secret = "0123456789abcdef0123456789abcdef";
        let line = format!(
            "--token-secret {secret} --public-channel news --public-channel lobby.* --publish-rate 20 \
             --max-conns-per-ip 50 --allowed-origin https://App.example/"
        );
        let Ok(Command::Serve(config)) = parse(&line) else { panic!("expected serve") };
        assert_eq!(config.token_secret.as_ref().map(Secret::bytes), Some(secret.as_bytes()));
        assert_eq!(format!("{:?}", config.token_secret), "Some(Secret(32 bytes))", "Debug never shows a secret");
        let patterns: Vec<&str> = config.public_channels.iter().map(ChannelPattern::as_str).collect();
        assert_eq!(patterns, ["news", "lobby.*"]);
        assert_eq!((config.publish_rate, config.max_conns_per_ip), (Some(20), Some(50)));
        assert_eq!(config.allowed_origins, ["https://app.example"]);
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        let budget = |line: &str| match parse(line) {
            Ok(Command::Serve(config)) => config.memory_budget,
            other => panic!("{other:?}"),
        };
        assert_eq!(budget("--memory-budget 1000"), 1000);
        assert_eq!(budget("--memory-budget 64K"), 64 << 10);
        assert_eq!(budget("--memory-budget 256M"), 256 << 20);
        assert_eq!(budget("--memory-budget 2g"), 2 << 30);
    }

    #[test]
    fn ws_deflate_is_no_context_by_default_and_takes_three_modes() {
        assert_eq!(Config::default().ws_deflate, DeflateMode::NoContext);
        for (line, mode) in [
            ("--ws-deflate off", DeflateMode::Off),
            ("--ws-deflate no-context", DeflateMode::NoContext),
            ("--ws-deflate context", DeflateMode::Context),
        ] {
            let Ok(Command::Serve(config)) = parse(line) else { panic!("{line}") };
            assert_eq!(config.ws_deflate, mode);
        }
        assert!(parse("--ws-deflate on").unwrap_err().starts_with("--ws-deflate: "));
    }

    #[test]
    fn log_flags_set_the_level_the_format_and_the_access_log() {
        let defaults = Config::default();
        assert_eq!(
            (defaults.log_level, defaults.log_format, defaults.access_log),
            (log::Level::Info, log::Format::Text, false)
        );
        let Ok(Command::Serve(config)) = parse("--log-level debug --log-format json --access-log") else {
            panic!("expected serve")
        };
        assert_eq!(
            (config.log_level, config.log_format, config.access_log),
            (log::Level::Debug, log::Format::Json, true)
        );
        for bad in ["--log-level loud", "--log-format xml", "--log-level"] {
            assert!(parse(bad).unwrap_err().starts_with(bad.split(' ').next().unwrap()), "{bad}");
        }
    }

    #[test]
    fn a_token_secret_file_loses_its_final_newline_only() {
        let path = std::env::temp_dir().join(format!("realtime-secret-{}", std::process::id()));
        std::fs::write(&path, "0123456789abcdef0123456789abcdef \n").unwrap();
        let Ok(Command::Serve(config)) = parse(&format!("--token-secret-file {}", path.display())) else {
            panic!("expected serve")
        };
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.token_secret.unwrap().bytes(), b"0123456789abcdef0123456789abcdef ");
    }

    #[test]
    fn help_is_not_an_error() {
        assert!(matches!(parse("--help"), Ok(Command::Help(_))));
        assert!(matches!(parse("serve --help"), Ok(Command::Help(text)) if text.contains("--history")));
    }

    #[test]
    fn broker_is_memory_or_a_redis_url() {
        let broker = |line: &str| match parse(line) {
            Ok(Command::Serve(config)) => config.broker,
            other => panic!("{other:?}"),
        };
        assert_eq!(broker(""), BrokerUrl::Memory);
        assert_eq!(broker("--broker memory"), BrokerUrl::Memory);
        assert_eq!(
            broker("--broker redis://127.0.0.1:6380/2"),
            BrokerUrl::Redis(RedisUrl { host: "127.0.0.1".into(), port: 6380, db: 2, user: None, password: None })
        );
        let error = parse("--broker redis://localhost:port").unwrap_err();
        assert!(error.starts_with("--broker: ") && error.contains("port"), "{error}");
        assert!(parse("--broker redis://x:1 --max-publish-bytes 99999999").is_err());
        assert!(parse("--max-publish-bytes 99999999").is_ok(), "the memory broker has no such limit");
    }

    #[test]
    fn a_value_may_follow_its_flag_after_an_equals_sign() {
        let Ok(Command::Serve(config)) = parse("--addr=127.0.0.1:0 --max-connections=5 --allowed-origin=*") else {
            panic!("expected serve");
        };
        assert_eq!((config.addr.as_str(), config.max_connections), ("127.0.0.1:0", 5));
        assert_eq!(config.allowed_origins, ["*"]);
        let error = parse("--max-connections=").unwrap_err();
        assert!(error.contains("--max-connections=") && error.contains("empty"), "{error}");
    }

    #[test]
    fn every_documented_flag_is_parsed_with_the_arity_its_usage_line_shows() {
        let flags = args::documented_flags(SERVE_USAGE);
        assert!(flags.len() > 30, "the usage text lists the flags");
        for flag in flags {
            let without = parse(flag.name).err().unwrap_or_default();
            assert!(!without.contains("unknown option"), "{} is documented but not parsed", flag.name);
            if flag.takes_value {
                assert_eq!(without, format!("{} needs a value", flag.name));
            } else {
                assert!(parse(&format!("{}=1", flag.name)).unwrap_err().contains("takes no value"));
            }
        }
    }

    /// Parses `line` with `environment` as the process's environment.
    fn parse_with(line: &str, environment: &[(&str, &str)]) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let lookup = |name: &str| environment.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).into());
        parse_args_and_environment(&args, &lookup)
    }

    #[test]
    fn every_flag_is_also_read_from_its_environment_variable_and_the_command_line_wins() {
        let environment = [
            ("REALTIME_ADDR", "0.0.0.0:9000"),
            ("REALTIME_MAX_CONNECTIONS", "77"),
            ("REALTIME_ALLOWED_ORIGIN", "https://a.example"),
            ("REALTIME_REQUIRE_EXTERNAL", "1"), // names no option: not ours, ignored
        ];
        let Ok(Command::Serve(config)) = parse_with("serve --max-connections 5", &environment) else {
            panic!("expected serve")
        };
        assert_eq!((config.addr.as_str(), config.max_connections), ("0.0.0.0:9000", 5));
        assert_eq!(config.allowed_origins, ["https://a.example"]);
        let Ok(Command::Serve(config)) = parse_with("--allowed-origin=https://b.example", &environment) else {
            panic!("expected serve")
        };
        assert_eq!(config.allowed_origins, ["https://b.example"], "a repeatable flag too: the command line wins");
    }

    #[test]
    fn an_invalid_environment_value_is_an_error_naming_the_variable() {
        let error = parse_with("", &[("REALTIME_MAX_CONNECTIONS", "lots")]).unwrap_err();
        assert_eq!(error, "REALTIME_MAX_CONNECTIONS: expected a positive whole number, got 'lots'");
        let error = parse_with("", &[("REALTIME_TOKEN_SECRET", "")]).unwrap_err();
        assert!(error.starts_with("REALTIME_TOKEN_SECRET is set but empty"), "{error}");
        let error = parse_with("--public-channel news", &[("REALTIME_MAX_CONNECTIONS", "5")]).unwrap_err();
        assert!(error.starts_with("--public-channel: "), "a check across flags names no variable: {error}");
    }

    #[test]
    fn help_lists_every_flags_environment_variable() {
        let Ok(Command::Help(text)) = parse("--help") else { panic!("expected help") };
        for flag in args::documented_flags(SERVE_USAGE) {
            assert!(text.contains(&args::environment_variable(flag.name)), "{} missing", flag.name);
        }
    }

    #[test]
    fn duration_flags_accept_exactly_the_range_their_message_states() {
        let error = parse("--keepalive 0").unwrap_err();
        assert_eq!(error, "--keepalive: expected a number of seconds from 0.001 to 86400, got '0'");
        for accepted in ["0.001", "0.5", "86400"] {
            assert!(parse(&format!("--keepalive {accepted}")).is_ok(), "{accepted}");
        }
        for refused in ["0.0009", "86400.5", "-1", "inf", "NaN"] {
            assert!(parse(&format!("--keepalive {refused}")).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_redis_timeout_is_seconds_within_bounds_and_two_by_default() {
        let timeout = |line: &str| match parse(line) {
            Ok(Command::Serve(config)) => Ok(config.redis_timeout),
            Ok(other) => panic!("{other:?}"),
            Err(error) => Err(error),
        };
        assert_eq!(timeout(""), Ok(Duration::from_secs(2)));
        assert_eq!(timeout("--redis-timeout 0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(timeout("--redis-timeout 60"), Ok(Duration::from_secs(60)));
        for bad in ["--redis-timeout 0", "--redis-timeout 0.001", "--redis-timeout 61", "--redis-timeout x"] {
            assert!(timeout(bad).unwrap_err().starts_with("--redis-timeout: "), "{bad}");
        }
        let Ok(Command::Serve(config)) = parse("--redis-connections 4") else { panic!("4 connections") };
        assert_eq!(config.redis_connections, 4);
        assert!(parse("--redis-connections 0").is_err() && parse("--redis-connections 17").is_err());
    }

    #[test]
    fn unknown_flags_and_bad_values_are_one_line_errors() {
        for line in [
            "--nope",
            "--history",
            "--history 0",
            "--history x",
            "--poll-timeout 61",
            "--model fibers",
            "--ws-deflate on",
            "frobnicate",
            "--broker",
            "--broker postgres://x",
            "--broker rediss://x:1",
            "--token-secret short",
            "--token-secret-file /nonexistent/secret",
            "--public-channel bad/name",
            "--public-channel news",
            "--publish-rate 0",
            "--max-conns-per-ip -1",
            "--memory-budget 0",
            "--memory-budget 12T",
            "--backlog 0",
        ] {
            let error = parse(line).unwrap_err();
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
