//! Counters for `/stats` (JSON) and `/metrics` (Prometheus text format).
//!
//! Plain atomics updated with `Relaxed` ordering: each number is a tally read by a human or a
//! scraper, never used to synchronise anything, so no ordering between them is needed.
//! Memory and threads come from `/proc/self/status`, which is what `ps` and `top` read too.
//! The broker's channels and the bytes their histories retain are asked of the broker
//! ([`crate::broker::Broker::usage`]) when a report is made: what the RSS is mostly made of.
//!
//! [`Traffic`] adds what `/metrics` alone shows: how long deliveries and requests take (two
//! [`crate::histogram`]s), the gap notices sent, and every response by status. The standard
//! `process_*` metrics are [`crate::process`]'s. What permessage-deflate saved is counted
//! where messages are compressed and inflated ([`crate::ws::deflate::TALLY`]) and read here.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use crate::broker::{Batch, LinkStats, Usage};
use crate::histogram::{self, Histogram, HistogramSnapshot};
use crate::sync::lock;
use crate::transport::Transport;
use crate::ws::deflate::{TallySnapshot, TALLY};

/// What an open connection is currently used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Plain HTTP requests, including long polls.
    Http = 0,
    /// A Server-Sent Events stream.
    Sse = 1,
    /// An upgraded WebSocket.
    WebSocket = 2,
}

const KINDS: [(Kind, &str); 3] = [(Kind::Http, "http"), (Kind::Sse, "sse"), (Kind::WebSocket, "ws")];

/// Why the security boundary ([`crate::gate`]) turned a request or a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A foreign `Origin` (403).
    Origin = 0,
    /// No token, or one that is malformed, expired or badly signed (401, or 400 for two).
    Token = 1,
    /// A valid token that does not grant the channel (403).
    Forbidden = 2,
    /// Over `--publish-rate` (429, or a WebSocket closed with 1008).
    Rate = 3,
    /// Over `--max-conns-per-ip` (429).
    Conns = 4,
}

const REFUSALS: [(Refusal, &str); 5] = [
    (Refusal::Origin, "origin"),
    (Refusal::Token, "token"),
    (Refusal::Forbidden, "forbidden"),
    (Refusal::Rate, "rate"),
    (Refusal::Conns, "conns"),
];

/// Subjects (`sub` of a token) listed in `/stats`, the ones with the most streams first: enough
/// to see who is connected, bounded so that ten thousand users do not make a megabyte of JSON.
pub const SUBJECTS_SHOWN: usize = 100;

#[derive(Default)]
pub struct Stats {
    open: [AtomicUsize; 3],
    parked_polls: AtomicUsize,
    published: AtomicU64,
    delivered: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Connections refused with 503 because `--max-connections` was reached.
    refused: AtomicU64,
    /// Connections ended because their client did not take what it was owed within
    /// `--send-timeout` (a WebSocket's 1008, an SSE stream cut off, a response dropped).
    slow_consumers: AtomicU64,
    /// Requests and connections the security gate refused, by [`Refusal`].
    refusals: [AtomicU64; 5],
    /// Open streams and parked polls per token subject; an entry goes when its count is zero,
    /// so the table never holds more entries than there are connections.
    subjects: Mutex<HashMap<String, usize>>,
    /// One entry per event-loop worker (empty under the thread model).
    workers: Mutex<Vec<Arc<WorkerStats>>>,
    /// Latencies, gaps and response statuses, for `/metrics`.
    pub traffic: Traffic,
}

/// What one event-loop worker reports about itself.
#[derive(Default)]
pub struct WorkerStats {
    pub connections: AtomicUsize,
    pub parked_polls: AtomicUsize,
    /// Bytes waiting in its connections' output buffers.
    pub bytes_queued: AtomicUsize,
    /// Turns of the loop (one readiness wait each).
    pub iterations: AtomicU64,
}

/// A worker's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub connections: usize,
    pub parked_polls: usize,
    pub bytes_queued: usize,
    pub iterations: u64,
}

/// A point-in-time copy of the counters plus the process's own numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub open: [usize; 3],
    pub parked_polls: usize,
    pub published: u64,
    pub delivered: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub refused: u64,
    pub slow_consumers: u64,
    pub refusals: [u64; 5],
    /// The [`SUBJECTS_SHOWN`] subjects with the most open streams, most first.
    pub subjects: Vec<(String, usize)>,
    /// The memory budget ([`crate::budget`]): its limit, what connections hold of it, and how
    /// many connections gave up what they held. Filled in by the app, which owns the budget.
    pub memory_budget: [u64; 3],
    pub rss_bytes: u64,
    pub threads: u64,
    pub workers: Vec<WorkerSnapshot>,
    pub traffic: TrafficSnapshot,
    /// The Redis broker's command link ([`crate::broker::Broker::link_stats`]); filled in by
    /// the app, `None` on the memory broker.
    pub redis: Option<LinkStats>,
    /// What permessage-deflate saved, both ways ([`crate::ws::deflate::Tally`]).
    pub ws_deflate: TallySnapshot,
}

impl Stats {
    pub fn connection_opened(&self, kind: Kind) {
        self.open[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self, kind: Kind) {
        self.open[kind as usize].fetch_sub(1, Relaxed);
    }

    pub fn open_connections(&self) -> usize {
        self.open.iter().map(|n| n.load(Relaxed)).sum()
    }

    pub fn poll_parked(&self) {
        self.parked_polls.fetch_add(1, Relaxed);
    }

    pub fn poll_unparked(&self) {
        self.parked_polls.fetch_sub(1, Relaxed);
    }

    pub fn published(&self) {
        self.published.fetch_add(1, Relaxed);
    }

    pub fn delivered(&self, messages: u64) {
        self.delivered.fetch_add(messages, Relaxed);
    }

    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Relaxed);
    }

    pub fn refusal(&self, reason: Refusal) {
        self.refusals[reason as usize].fetch_add(1, Relaxed);
    }

    /// A stream authenticated as `subject` opened.
    pub fn subject_opened(&self, subject: &str) {
        *lock(&self.subjects).entry(subject.to_string()).or_insert(0) += 1;
    }

    /// A stream authenticated as `subject` closed.
    pub fn subject_closed(&self, subject: &str) {
        let mut subjects = lock(&self.subjects);
        if let Some(count) = subjects.get_mut(subject) {
            *count -= 1;
            if *count == 0 {
                subjects.remove(subject);
            }
        }
    }

    /// Adds an event-loop worker's counters to the report.
    pub fn register_worker(&self) -> Arc<WorkerStats> {
        let worker = Arc::new(WorkerStats::default());
        lock(&self.workers).push(worker.clone());
        worker
    }

    pub fn snapshot(&self) -> Snapshot {
        let (rss_bytes, threads) = process_status();
        Snapshot {
            open: [0, 1, 2].map(|i| self.open[i].load(Relaxed)),
            parked_polls: self.parked_polls.load(Relaxed),
            published: self.published.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            refused: self.refused.load(Relaxed),
            slow_consumers: self.slow_consumers.load(Relaxed),
            refusals: [0, 1, 2, 3, 4].map(|i| self.refusals[i].load(Relaxed)),
            subjects: {
                let mut subjects: Vec<(String, usize)> =
                    lock(&self.subjects).iter().map(|(s, n)| (s.clone(), *n)).collect();
                subjects.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                subjects.truncate(SUBJECTS_SHOWN);
                subjects
            },
            memory_budget: [0; 3],
            rss_bytes,
            threads,
            workers: lock(&self.workers)
                .iter()
                .map(|w| WorkerSnapshot {
                    connections: w.connections.load(Relaxed),
                    parked_polls: w.parked_polls.load(Relaxed),
                    bytes_queued: w.bytes_queued.load(Relaxed),
                    iterations: w.iterations.load(Relaxed),
                })
                .collect(),
            traffic: self.traffic.snapshot(),
            redis: None,
            ws_deflate: TALLY.snapshot(),
        }
    }
}

/// Resident memory in bytes and thread count of this process, from `/proc/self/status`
/// (zeros where there is no procfs).
pub fn process_status() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

impl Snapshot {
    /// `/stats`: `{"model":"threads","broker":"memory","channels":3,"retained_bytes":512,
    /// "connections":{...},...}`; `usage` is what the broker holds.
    pub fn to_json(&self, model: &str, broker: &str, usage: Usage) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "{{\"model\":\"{model}\",\"broker\":\"{broker}\",\"channels\":{},\"retained_bytes\":{},\"connections\":{{",
            usage.channels, usage.retained_bytes
        );
        for (i, (kind, name)) in KINDS.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            let _ = write!(out, "{separator}\"{name}\":{}", self.open[*kind as usize]);
        }
        let _ = write!(
            out,
            "}},\"parked_polls\":{},\"messages\":{{\"published\":{},\"delivered\":{}}},\
             \"bytes\":{{\"in\":{},\"out\":{}}},\"refused_connections\":{},\"slow_consumers\":{},\"rss_bytes\":{},\"threads\":{},\"refusals\":{{",
            self.parked_polls,
            self.published,
            self.delivered,
            self.bytes_in,
            self.bytes_out,
            self.refused,
            self.slow_consumers,
            self.rss_bytes,
            self.threads
        );
        for (i, (reason, name)) in REFUSALS.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            let _ = write!(out, "{separator}\"{name}\":{}", self.refusals[*reason as usize]);
        }
        out.push_str("},\"subjects\":{");
        for (i, (subject, count)) in self.subjects.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::json::write_string(&mut out, subject);
            let _ = write!(out, ":{count}");
        }
        let [limit, held, shed] = self.memory_budget;
        let _ = write!(out, "}},\"memory_budget\":{{\"limit\":{limit},\"held\":{held},\"shed\":{shed}}},\"workers\":[");
        for (i, worker) in self.workers.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            let _ = write!(
                out,
                "{separator}{{\"connections\":{},\"parked_polls\":{},\"bytes_queued\":{},\"iterations\":{}}}",
                worker.connections, worker.parked_polls, worker.bytes_queued, worker.iterations
            );
        }
        out.push(']');
        let deflate = &self.ws_deflate;
        let _ = write!(
            out,
            ",\"ws_deflate_bytes\":{{\"sent_payload\":{},\"sent_compressed\":{},\"received_compressed\":{},\"received_payload\":{}}}",
            deflate.sent_payload, deflate.sent_compressed, deflate.received_compressed, deflate.received_payload
        );
        if let Some(link) = &self.redis {
            let mean_us = link.latency_sum_us.checked_div(link.answered).unwrap_or(0);
            let _ = write!(
                out,
                ",\"redis\":{{\"state\":\"{}\",\"connections\":{},\"connections_up\":{},\"reconnects\":{},\
                 \"in_flight\":{},\"commands_sent\":{},\"commands_answered\":{},\"commands_failed\":{},\
                 \"latency_mean_us\":{mean_us},\"latency_max_us\":{},\"channels_subscribed\":{},\"pubsub_messages\":{},\
                 \"channel_subscribes\":{},\"channel_unsubscribes\":{}}}",
                if link.connections_up > 0 { "up" } else { "down" },
                link.connections,
                link.connections_up,
                link.reconnects,
                link.in_flight,
                link.sent,
                link.answered,
                link.failed,
                link.latency_max_us,
                link.channels_subscribed,
                link.pubsub_messages,
                link.channel_subscribes,
                link.channel_unsubscribes
            );
        }
        out.push('}');
        out
    }

    /// `/metrics`: the same numbers in the Prometheus text exposition format.
    pub fn to_prometheus(&self, model: &str, usage: Usage) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP realtime_{name} {help}\n# TYPE realtime_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "realtime_{name}{labels} {value}");
            }
        };
        let open: Vec<(String, u64)> = KINDS
            .iter()
            .map(|(kind, name)| (format!("{{model=\"{model}\",kind=\"{name}\"}}"), self.open[*kind as usize] as u64))
            .collect();
        let open: Vec<(&str, u64)> = open.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric("connections", "gauge", "Open connections by use.", &open);
        metric("parked_polls", "gauge", "Long polls waiting for a message.", &[("", self.parked_polls as u64)]);
        metric("messages_published_total", "counter", "Messages published.", &[("", self.published)]);
        metric("messages_delivered_total", "counter", "Messages handed to clients.", &[("", self.delivered)]);
        metric("bytes_received_total", "counter", "Bytes read from clients.", &[("", self.bytes_in)]);
        metric("bytes_sent_total", "counter", "Bytes written to clients.", &[("", self.bytes_out)]);
        metric("connections_refused_total", "counter", "Connections refused at the limit.", &[("", self.refused)]);
        metric(
            "slow_consumers_total",
            "counter",
            "Connections ended because the client did not read what it was owed within --send-timeout.",
            &[("", self.slow_consumers)],
        );
        metric(
            "channels",
            "gauge",
            "Channels the broker holds (mirrors, on a Redis node).",
            &[("", usage.channels as u64)],
        );
        metric(
            "retained_bytes",
            "gauge",
            "Bytes of message envelopes the channels' histories retain.",
            &[("", usage.retained_bytes as u64)],
        );
        let refusals: Vec<(String, u64)> = REFUSALS
            .iter()
            .map(|(reason, name)| (format!("{{reason=\"{name}\"}}"), self.refusals[*reason as usize]))
            .collect();
        let refusals: Vec<(&str, u64)> = refusals.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "refusals_total",
            "counter",
            "Requests and connections the security gate refused, by reason.",
            &refusals,
        );
        let [limit, held, shed] = self.memory_budget;
        metric("memory_budget_bytes", "gauge", "Client-controlled memory the connections may hold.", &[("", limit)]);
        metric("memory_held_bytes", "gauge", "Client-controlled memory the connections hold.", &[("", held)]);
        metric("memory_shed_total", "counter", "Connections that gave up what they held to the budget.", &[("", shed)]);
        let deflate = &self.ws_deflate;
        metric(
            "ws_deflate_payload_bytes_total",
            "counter",
            "Payload bytes of the WebSocket messages that travelled compressed (permessage-deflate), before compressing or after inflating.",
            &[("{direction=\"sent\"}", deflate.sent_payload), ("{direction=\"received\"}", deflate.received_payload)],
        );
        metric(
            "ws_deflate_compressed_bytes_total",
            "counter",
            "The same messages' payload bytes as they travelled, compressed.",
            &[
                ("{direction=\"sent\"}", deflate.sent_compressed),
                ("{direction=\"received\"}", deflate.received_compressed),
            ],
        );
        metric("resident_memory_bytes", "gauge", "Resident set size.", &[("", self.rss_bytes)]);
        metric("threads", "gauge", "OS threads in the process.", &[("", self.threads)]);
        if let Some(link) = &self.redis {
            let up = u64::from(link.connections_up > 0);
            metric("redis_up", "gauge", "Whether a connection of the Redis command link is up.", &[("", up)]);
            metric(
                "redis_connections_up",
                "gauge",
                "Connections of the Redis command link that are up.",
                &[("", link.connections_up as u64)],
            );
            metric(
                "redis_reconnects_total",
                "counter",
                "Redis command connections opened again.",
                &[("", link.reconnects)],
            );
            metric(
                "redis_commands_in_flight",
                "gauge",
                "Commands sent to Redis, not answered.",
                &[("", link.in_flight)],
            );
            metric("redis_commands_sent_total", "counter", "Commands queued on the Redis link.", &[("", link.sent)]);
            metric(
                "redis_commands_failed_total",
                "counter",
                "Commands refused (link down) or failed (connection lost or timed out).",
                &[("", link.failed)],
            );
            metric(
                "redis_channels_subscribed",
                "gauge",
                "Channels this node is subscribed to on Redis pub/sub (those its clients follow, and lingering ones).",
                &[("", link.channels_subscribed as u64)],
            );
            metric(
                "redis_pubsub_messages_total",
                "counter",
                "Messages received on the Redis subscription connection.",
                &[("", link.pubsub_messages)],
            );
            metric(
                "redis_channel_subscribes_total",
                "counter",
                "Channel subscriptions Redis confirmed (resubscriptions after a reconnection included).",
                &[("", link.channel_subscribes)],
            );
            metric(
                "redis_channel_unsubscribes_total",
                "counter",
                "Channel subscriptions that ended: unsubscriptions Redis confirmed, on a cluster those of slots that moved, and those lost with their connection.",
                &[("", link.channel_unsubscribes)],
            );
        }
        if let Some(link) = &self.redis {
            // A summary without quantiles (the exposition format allows it): the mean is
            // rate(_sum) / rate(_count). Seconds, Prometheus's base unit.
            let _ = writeln!(
                out,
                "# HELP realtime_redis_command_duration_seconds From queueing a command on the Redis link to its reply.\n\
                 # TYPE realtime_redis_command_duration_seconds summary\n\
                 realtime_redis_command_duration_seconds_sum {}\n\
                 realtime_redis_command_duration_seconds_count {}\n\
                 # HELP realtime_redis_command_duration_max_seconds The longest a command has waited for its reply.\n\
                 # TYPE realtime_redis_command_duration_max_seconds gauge\n\
                 realtime_redis_command_duration_max_seconds {}",
                link.latency_sum_us as f64 / 1e6,
                link.answered,
                link.latency_max_us as f64 / 1e6
            );
        }
        self.traffic.write_prometheus(&mut out);
        write_build_info(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic: delivery latency, request duration, gap notices, responses by status (`/metrics`)
// ---------------------------------------------------------------------------------------------

/// Which route answered a request: the `route` label of request durations. Route names, never
/// paths or channels, so the label has these eleven values however many channels there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteLabel {
    Index = 0,
    Publish = 1,
    Poll = 2,
    Sse = 3,
    WebSocket = 4,
    Echo = 5,
    Stats = 6,
    Metrics = 7,
    Healthz = 8,
    Readyz = 9,
    /// No route: a 404, or a request whose head could not be read (400, 408, 431, ...).
    None = 10,
}

const ROUTE_LABELS: [(RouteLabel, &str); 11] = [
    (RouteLabel::Index, "index"),
    (RouteLabel::Publish, "publish"),
    (RouteLabel::Poll, "poll"),
    (RouteLabel::Sse, "sse"),
    (RouteLabel::WebSocket, "ws"),
    (RouteLabel::Echo, "echo"),
    (RouteLabel::Stats, "stats"),
    (RouteLabel::Metrics, "metrics"),
    (RouteLabel::Healthz, "healthz"),
    (RouteLabel::Readyz, "readyz"),
    (RouteLabel::None, "none"),
];

/// Every final status the server sends (`docs/PROTOCOL.md` §11), and 101: the `code` label's
/// values, all shown from the start (at zero) so that `rate()` sees the first one. The interim
/// `100 Continue` is not a response to count: the final one follows it.
pub const STATUSES: [u16; 22] =
    [101, 200, 201, 204, 400, 401, 403, 404, 405, 406, 408, 411, 413, 414, 417, 426, 429, 431, 500, 501, 503, 505];

/// What `/metrics` shows beyond the counters above: how long things take and how they end.
pub struct Traffic {
    /// By [`Transport`]: publish time to queued for writing, live messages only
    /// ([`Stats::batch_delivered`]).
    delivery_latency: [Histogram; 3],
    /// By [`RouteLabel`]: first byte of the head to the response (or its head) queued.
    request_duration: [Histogram; 11],
    /// Gap notices sent, by [`Transport`].
    gaps: [AtomicU64; 3],
    /// Responses sent, by status, in [`STATUSES`] order.
    responses: [AtomicU64; 22],
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            delivery_latency: std::array::from_fn(|_| Histogram::new(histogram::DELIVERY_LATENCY)),
            request_duration: std::array::from_fn(|_| Histogram::new(histogram::REQUEST_DURATION)),
            gaps: Default::default(),
            responses: Default::default(),
        }
    }
}

/// [`Traffic`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// By [`Transport`].
    pub delivery_latency: Vec<HistogramSnapshot>,
    /// By [`RouteLabel`].
    pub request_duration: Vec<HistogramSnapshot>,
    pub gaps: [u64; 3],
    /// In [`STATUSES`] order.
    pub responses: Vec<u64>,
}

impl Stats {
    /// A batch read from the broker went into a subscriber's output by `transport` at
    /// `now_ms` (the wall clock of the turn, [`crate::time::Now::unix_ms`]): its messages are
    /// delivered, its gap (if any) is a gap notice sent, and each *live* message's latency is
    /// recorded, one atomic add per message.
    ///
    /// Live means published at or after `live_from_ms`, when the subscriber began to follow
    /// the channel (the stream's start, the poll request's arrival). A replay from a cursor
    /// measures how long the client was away, not how fast the server is: counted, one replay
    /// of a thousand old messages would put a thousand observations in `+Inf` and drown the
    /// live ones. So the histogram answers "how long after a publish does a subscriber that is
    /// waiting for it get it queued". For long polling that leaves out what is published
    /// between two polls (the client's round trip, not the server's wait).
    ///
    /// `time_ms` is the publishing node's clock on the memory broker and Redis's (the stream
    /// id) on a Redis node, compared here with this node's: a skew between the two shifts the
    /// latencies by as much, and a message that seems to arrive before it was published counts
    /// as zero.
    pub fn batch_delivered(&self, transport: Transport, batch: &Batch, live_from_ms: u64, now_ms: u64) {
        self.delivered(batch.messages.len() as u64);
        if batch.gap.is_some() {
            self.traffic.gaps[transport as usize].fetch_add(1, Relaxed);
        }
        let live = batch.messages.iter().filter(|message| message.time_ms >= live_from_ms);
        let latencies = live.map(|message| now_ms.saturating_sub(message.time_ms).saturating_mul(1000));
        self.traffic.delivery_latency[transport as usize].record_batch(latencies);
    }

    /// A response with `status` was queued for a request on `route`, `took` after its head
    /// began to arrive.
    pub fn responded(&self, route: RouteLabel, status: u16, took: Duration) {
        self.traffic.request_duration[route as usize].record(took);
        self.response_sent(status);
    }

    /// A response with `status` was sent outside any request (the accept loop's 429 and 503,
    /// written before a byte is read), or by [`Stats::responded`].
    pub fn response_sent(&self, status: u16) {
        if let Some(i) = STATUSES.iter().position(|&s| s == status) {
            self.traffic.responses[i].fetch_add(1, Relaxed);
        }
    }
}

impl Traffic {
    fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            delivery_latency: self.delivery_latency.iter().map(Histogram::snapshot).collect(),
            request_duration: self.request_duration.iter().map(Histogram::snapshot).collect(),
            gaps: [0, 1, 2].map(|i| self.gaps[i].load(Relaxed)),
            responses: self.responses.iter().map(|n| n.load(Relaxed)).collect(),
        }
    }
}

impl TrafficSnapshot {
    /// `realtime_delivery_latency_seconds`, `realtime_request_duration_seconds`,
    /// `realtime_gaps_total` and `realtime_http_responses_total`.
    fn write_prometheus(&self, out: &mut String) {
        let by_transport: Vec<(String, HistogramSnapshot)> = Transport::ALL
            .iter()
            .filter_map(|t| {
                Some((format!("transport=\"{}\"", t.name()), self.delivery_latency.get(*t as usize)?.clone()))
            })
            .collect();
        histogram::write_family(
            out,
            "realtime_delivery_latency_seconds",
            "Publish time to queued for writing, for messages published while their subscriber followed the channel.",
            &by_transport,
        );
        let by_route: Vec<(String, HistogramSnapshot)> = ROUTE_LABELS
            .iter()
            .filter_map(|(r, name)| {
                Some((format!("route=\"{name}\""), self.request_duration.get(*r as usize)?.clone()))
            })
            .collect();
        histogram::write_family(
            out,
            "realtime_request_duration_seconds",
            "First byte of a request head to its response queued (a long poll's wait included).",
            &by_route,
        );
        let _ = writeln!(
            out,
            "# HELP realtime_gaps_total Gap notices sent: messages a subscriber was owed had left the history.\n\
             # TYPE realtime_gaps_total counter"
        );
        for transport in Transport::ALL {
            let name = transport.name();
            let _ = writeln!(out, "realtime_gaps_total{{transport=\"{name}\"}} {}", self.gaps[transport as usize]);
        }
        let _ = writeln!(
            out,
            "# HELP realtime_http_responses_total HTTP responses sent, by status code.\n\
             # TYPE realtime_http_responses_total counter"
        );
        for (status, count) in STATUSES.iter().zip(&self.responses) {
            let _ = writeln!(out, "realtime_http_responses_total{{code=\"{status}\"}} {count}");
        }
    }
}

/// `realtime_build_info{version="0.1.0"} 1`: the version as a label, the usual way to put a
/// string on a dashboard or join it onto other series.
fn write_build_info(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP realtime_build_info The running version, as a label.\n# TYPE realtime_build_info gauge\n\
         realtime_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_json_parses_and_counts_by_kind() {
        let stats = Stats::default();
        stats.connection_opened(Kind::Http);
        stats.connection_opened(Kind::Sse);
        stats.connection_closed(Kind::Http);
        stats.published();
        let json = stats.snapshot().to_json("threads", "memory", Usage { channels: 3, retained_bytes: 512 });
        let value = crate::json::parse(&json).unwrap();
        assert_eq!(value.get("model").and_then(|v| v.as_str()), Some("threads"));
        assert_eq!(value.get("channels").and_then(|v| v.as_u64()), Some(3));
        assert_eq!(value.get("retained_bytes").and_then(|v| v.as_u64()), Some(512));
        let connections = value.get("connections").unwrap();
        assert_eq!(connections.get("sse").and_then(|v| v.as_u64()), Some(1));
        assert_eq!(connections.get("http").and_then(|v| v.as_u64()), Some(0));
        assert!(value.get("rss_bytes").and_then(|v| v.as_u64()).unwrap() > 0);
        assert!(value.get("threads").and_then(|v| v.as_u64()).unwrap() >= 1);
    }

    #[test]
    fn prometheus_text_has_help_type_and_samples() {
        let text = Stats::default().snapshot().to_prometheus("threads", Usage { channels: 2, retained_bytes: 7 });
        assert!(text.contains("# TYPE realtime_connections gauge\n"));
        assert!(text.contains("realtime_connections{model=\"threads\",kind=\"ws\"} 0\n"));
        assert!(text.contains("realtime_messages_published_total 0\n"));
        assert!(text.contains("realtime_refusals_total{reason=\"origin\"} 0\n"));
        assert!(text.contains("# TYPE realtime_channels gauge\nrealtime_channels 2\n"));
        assert!(text.contains("realtime_retained_bytes 7\n"));
    }

    #[test]
    fn the_redis_link_is_reported_only_for_a_redis_broker() {
        let mut snapshot = Stats::default().snapshot();
        assert!(!snapshot.to_json("epoll", "memory", Usage::default()).contains("\"redis\""));
        assert!(!snapshot.to_prometheus("epoll", Usage::default()).contains("realtime_redis"));
        snapshot.redis = Some(LinkStats {
            connections: 2,
            connections_up: 1,
            reconnects: 3,
            in_flight: 4,
            sent: 10,
            answered: 5,
            failed: 1,
            latency_sum_us: 500,
            latency_max_us: 300,
            channels_subscribed: 6,
            pubsub_messages: 7,
            channel_subscribes: 8,
            channel_unsubscribes: 2,
        });
        let json = crate::json::parse(&snapshot.to_json("epoll", "redis", Usage::default())).unwrap();
        let redis = json.get("redis").expect("a redis object");
        assert_eq!(redis.get("state").and_then(|v| v.as_str()), Some("up"));
        assert_eq!(redis.get("in_flight").and_then(|v| v.as_u64()), Some(4));
        assert_eq!(redis.get("latency_mean_us").and_then(|v| v.as_u64()), Some(100));
        assert_eq!(redis.get("channels_subscribed").and_then(|v| v.as_u64()), Some(6));
        assert_eq!(redis.get("pubsub_messages").and_then(|v| v.as_u64()), Some(7));
        assert_eq!(redis.get("channel_subscribes").and_then(|v| v.as_u64()), Some(8));
        assert_eq!(redis.get("channel_unsubscribes").and_then(|v| v.as_u64()), Some(2));
        let text = snapshot.to_prometheus("epoll", Usage::default());
        assert!(text.contains("realtime_redis_up 1\n"), "{text}");
        assert!(text.contains("realtime_redis_reconnects_total 3\n"));
        assert!(text.contains("realtime_redis_commands_in_flight 4\n"));
        assert!(
            text.contains("# TYPE realtime_redis_channels_subscribed gauge\nrealtime_redis_channels_subscribed 6\n")
        );
        assert!(text
            .contains("# TYPE realtime_redis_pubsub_messages_total counter\nrealtime_redis_pubsub_messages_total 7\n"));
        assert!(text.contains("realtime_redis_channel_subscribes_total 8\n"));
        assert!(text.contains("realtime_redis_channel_unsubscribes_total 2\n"));
        assert!(text.contains("realtime_redis_command_duration_seconds_count 5\n"));
        assert!(text.contains("realtime_redis_command_duration_seconds_sum 0.0005\n"), "{text}");
    }

    #[test]
    fn refusals_are_counted_by_reason_and_subjects_by_open_streams() {
        let stats = Stats::default();
        stats.refusal(Refusal::Rate);
        stats.refusal(Refusal::Rate);
        stats.subject_opened("bob");
        stats.subject_opened("alice");
        stats.subject_opened("alice");
        stats.subject_opened("carol");
        stats.subject_closed("carol");
        let snapshot = stats.snapshot();
        assert!(snapshot
            .to_prometheus("epoll", Usage::default())
            .contains("realtime_refusals_total{reason=\"rate\"} 2\n"));
        let json = crate::json::parse(&snapshot.to_json("epoll", "memory", Usage::default())).unwrap();
        assert_eq!(json.get("refusals").and_then(|r| r.get("rate")).and_then(|v| v.as_u64()), Some(2));
        assert_eq!(snapshot.subjects, vec![("alice".to_string(), 2), ("bob".to_string(), 1)]);
        assert_eq!(json.get("subjects").and_then(|r| r.get("alice")).and_then(|v| v.as_u64()), Some(2));
    }

    /// A batch of messages on `ch`, published at these wall-clock times.
    fn batch(times_ms: &[u64], gap: bool) -> Batch {
        let messages = times_ms
            .iter()
            .enumerate()
            .map(|(i, &time)| {
                let position = crate::broker::Position::new(i as u128 + 1);
                Arc::new(crate::broker::Message::new(&format!("e-{i}"), position, "x", time))
            })
            .collect();
        let gap = gap.then(|| crate::broker::Gap { since: "e-0".into(), oldest: None });
        Batch { messages, gap, position: crate::broker::Position::new(times_ms.len() as u128), in_flight: false }
    }

    #[test]
    fn delivery_latency_counts_live_messages_only_and_every_delivery_and_gap() {
        let stats = Stats::default();
        // Following since t=10,000 ms, now t=10,030: one replayed message (t=9,000), two live.
        stats.batch_delivered(Transport::Sse, &batch(&[9_000, 10_000, 10_020], true), 10_000, 10_030);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.delivered, 3, "replays are deliveries");
        let sse = &snapshot.traffic.delivery_latency[Transport::Sse as usize];
        assert_eq!(sse.count(), 2, "but not live ones");
        assert_eq!(sse.sum_micros, 30_000 + 10_000);
        assert_eq!(snapshot.traffic.delivery_latency[Transport::LongPoll as usize].count(), 0);
        assert_eq!(snapshot.traffic.gaps, [0, 1, 0]);
        let text = snapshot.to_prometheus("epoll", Usage::default());
        assert!(
            text.contains("realtime_delivery_latency_seconds_bucket{transport=\"sse\",le=\"0.005\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("realtime_delivery_latency_seconds_bucket{transport=\"sse\",le=\"0.01\"} 1\n"),
            "le is inclusive"
        );
        assert!(text.contains("realtime_delivery_latency_seconds_bucket{transport=\"sse\",le=\"0.025\"} 1\n"));
        assert!(text.contains("realtime_delivery_latency_seconds_bucket{transport=\"sse\",le=\"0.05\"} 2\n"));
        assert!(text.contains("realtime_delivery_latency_seconds_sum{transport=\"sse\"} 0.04\n"));
        assert!(text.contains("realtime_gaps_total{transport=\"sse\"} 1\n"));
    }

    #[test]
    fn a_message_stamped_after_now_by_another_clock_counts_as_zero_latency() {
        let stats = Stats::default();
        stats.batch_delivered(Transport::WebSocket, &batch(&[5_000], false), 0, 4_990);
        let ws = &stats.snapshot().traffic.delivery_latency[Transport::WebSocket as usize];
        assert_eq!((ws.cumulative[0], ws.sum_micros), (1, 0));
    }

    #[test]
    fn responses_are_counted_by_status_and_requests_timed_by_route() {
        let stats = Stats::default();
        stats.responded(RouteLabel::Publish, 201, Duration::from_micros(300));
        stats.responded(RouteLabel::Poll, 200, Duration::from_secs(30));
        stats.response_sent(429);
        stats.response_sent(999); // not a status this server sends: not counted, and no panic
        let snapshot = stats.snapshot();
        let text = snapshot.to_prometheus("threads", Usage::default());
        assert!(text.contains("realtime_http_responses_total{code=\"201\"} 1\n"), "{text}");
        assert!(text.contains("realtime_http_responses_total{code=\"429\"} 1\n"));
        assert!(text.contains("realtime_http_responses_total{code=\"503\"} 0\n"));
        assert!(!text.contains("code=\"999\""));
        assert!(text.contains("realtime_request_duration_seconds_bucket{route=\"publish\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("realtime_request_duration_seconds_bucket{route=\"poll\",le=\"10\"} 0\n"));
        assert!(text.contains("realtime_request_duration_seconds_bucket{route=\"poll\",le=\"30\"} 1\n"));
        assert!(text.contains("realtime_request_duration_seconds_count{route=\"none\"} 0\n"));
        assert!(text.contains(&format!("realtime_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))));
    }

    #[test]
    fn every_final_status_with_a_reason_phrase_has_a_code_label() {
        for status in 101..600 {
            if status != 100 && !crate::http::response::reason_phrase(status).is_empty() {
                assert!(STATUSES.contains(&status), "{status} is sent but not counted");
            }
        }
        for status in STATUSES {
            assert!(!crate::http::response::reason_phrase(status).is_empty(), "{status} has no reason phrase");
        }
    }

    #[test]
    fn the_label_tables_follow_their_enums() {
        assert!(Transport::ALL.iter().enumerate().all(|(i, t)| *t as usize == i));
        assert!(ROUTE_LABELS.iter().enumerate().all(|(i, (r, _))| *r as usize == i));
    }
}
