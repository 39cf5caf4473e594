//! The Redis backplane: several `realtime` nodes behind one load balancer, one Redis between
//! them.
//!
//! Behind a round-robin balancer the node that receives a publish is usually not the node
//! that holds the subscriber's socket. Every node therefore sends its publishes to Redis and
//! hears, from Redis, the publishes of the channels its own clients follow:
//!
//! ```text
//!  browser ─► nginx ─┬─► node A ─┐  publish: EVALSHA (XADD + PUBLISH, one script)
//!                    └─► node B ─┤  live:    SUBSCRIBE realtime:{db}:{channel}, per channel
//!                                │           followed here (one connection)
//!                                └─ Redis ─ history: XRANGE on the stream realtime:{channel}
//! ```
//!
//! ## One channel in Redis
//!
//! - A **stream** `realtime:{channel}` holds the history. [XADD] gives every entry an id
//!   `<ms>-<seq>` from Redis's clock, increasing within the stream. That id is the message id
//!   clients see (opaque to them) and, as `ms << 64 | seq`, its [`Position`]. The envelope's
//!   `time` is the id's milliseconds: Redis's clock, the same for every node. `MAXLEN ~
//!   <history>` trims the stream as it grows; `~` lets Redis trim whole radix-tree nodes, so
//!   it keeps at least `history` entries and sometimes up to a node's worth (100) more.
//! - A string key `realtime:{channel}:newest` holds the id of the stream's newest entry, so
//!   that the publish script can record each entry's predecessor without reading the stream
//!   back ([`PUBLISH_SCRIPT`]).
//! - A **pub/sub channel** `realtime:{db}:{channel}` carries each new entry as `<id> <text>`
//!   to every node subscribed to it, so a node needs no round trip to deliver it. The database number is in
//!   the name because pub/sub ignores `SELECT`: "Pub/Sub has no relation to the key space ...
//!   publishing on db 10 will be heard by a subscriber on db 1" (Redis pub/sub docs).
//!
//! **Publish** is one Lua script, run with [EVALSHA]; every connection of the link loads it
//! (`SCRIPT LOAD`) when it opens, before it takes a command, so a restart that emptied Redis's
//! script cache cannot make `EVALSHA` fail. A script runs atomically, so no other publish to
//! the channel can fall between its `XADD` and its `PUBLISH`: the order in which nodes hear a
//! channel's messages is the stream's order. The publishes a node queued on a connection of
//! the link since it last sent go in one call of the script, each answered with its own id
//! ([`publish_batch`]): a call costs Redis something of its own beyond the publishes in
//! it.
//!
//! ## One channel on a node: the mirror
//!
//! A node's reads must not wait for Redis and cannot fail, so a node keeps a *mirror* of each
//! channel its clients follow (and, for a linger, followed): the ring log the memory broker
//! keeps (`memory::Ring`), fed by pub/sub instead of local publishes, plus a *base*, the
//! position after which the mirror holds every entry of the stream (or will, once pub/sub
//! delivers it). Then:
//!
//! - `read` after a cursor the mirror can vouch for (its base, an entry it holds, or a
//!   position that names no entry) is answered from memory, like the memory broker. Any
//!   other cursor is a *cold read*: one older than the base (history from before the node
//!   knew the channel, or older than its ring), and one the mirror never heard of (news from
//!   another node not here yet, or an entry the stream lost or that expired with it: only the
//!   stream can tell those apart). A cold read is one round trip that runs [XRANGE] and
//!   [XINFO] `STREAM` (and `XRANGE` of the cursor's own entry, and `GET` of the newest id
//!   remembered beside the stream) in a `MULTI`/`EXEC` transaction, so the entries and what
//!   the stream says about its own trimming are one consistent snapshot. It runs on the link for that reader
//!   (below, "Never waiting for Redis"). A **gap** is reported exactly when
//!   trimming removed an entry after the cursor. Redis does not record what `MAXLEN` trimmed
//!   (`max-deleted-entry-id` counts only `XDEL`), so each entry records the id of the entry
//!   before it (a `prev` field, written by the publish script): the oldest entry left says
//!   where the forgotten part of the stream ends. A cursor between that `prev` and the oldest
//!   entry names an entry that never was in this stream: the stream was lost and made again
//!   (Redis restarted without persistence), and the reader is told so with a gap, like the
//!   memory broker's foreign epoch. So is a cursor that names an entry no older than the
//!   oldest one yet not in the stream (`cursor_was_lost`): the entry was lost with a Redis
//!   Cluster master, or deleted.
//! - `tail` is a loaded mirror's newest position, else the stream's newest id, asked on the
//!   link. A mirror is made by a channel's first local subscriber and *loaded* by the
//!   supervisor once the channel's subscription is confirmed: the channel's newest id
//!   ([`NEWEST_SCRIPT`]: the remembered one, or the stream's newest entry) becomes the base. Until then its readers read the stream (cold reads), so
//!   a mirror that is loaded is live: every entry after its base is in it or on its way.
//! - The mirror only ever grows at the back: an entry at or before its newest position is a
//!   duplicate (catch-up and pub/sub overlap) and is skipped. An entry older than the newest
//!   that the mirror never had means the stream went backwards: it lost entries the mirror
//!   holds (a failover promoted a replica that never had them, on a clock behind the old
//!   master's) and goes on with smaller ids. The mirror is then *rewound*: emptied and
//!   loaded again from the stream. A reader whose cursor names a lost entry is one the new
//!   mirror cannot vouch for: the stream answers it, with a gap (`cursor_was_lost`) and the
//!   new entries below its cursor, which would otherwise never reach it.
//!
//! ## Channels expire
//!
//! Redis keeps what nobody deletes, so a node that reclaimed nothing would leave every channel
//! name ever published to in Redis, with its history. Each publish sets the stream to expire
//! `--channel-ttl` later (`PEXPIRE`; the memory broker drops a channel after as long without
//! news and without subscribers): a channel quiet that long loses its history in Redis, like
//! a reclaimed channel of the memory broker (its subscribers lose nothing: nothing was
//! published meanwhile). The key that remembers the newest id lives a day longer
//! ([`NEWEST_OUTLIVES_STREAM`]), a few dozen bytes, so that a reader who had read everything
//! is answered "nothing new" rather than a gap, a mirror made meanwhile starts from that id,
//! and the next publish records it as its `prev`: the chain is unbroken. A reader who had not
//! read everything gets a gap. When both are gone (or Redis restarted empty), every cursor
//! that names an entry gets a gap: a false alarm at worst, never a silent skip. Centrifugo does
//! the same with its `history_ttl` and a `history_meta_ttl` that "must be much larger" (30
//! days by default there), for the same reason.
//!
//! ## One subscription per channel
//!
//! A node hears a channel only while a client of its own follows it: one `SUBSCRIBE` per
//! channel ([SUBSCRIBE]), not one `PSUBSCRIBE realtime:{db}:*` for all. With a pattern every
//! node receives every message of every channel, so N nodes cost the backplane N times the
//! publish rate even for channels nobody on most nodes follows (what users of
//! socket.io-redis-adapter run into: socketio/socket.io-redis-adapter#420). The price is a
//! round trip before a new channel's first live message and a catch-up read to close the seam
//! between the subscription and the stream, which is what follows.
//!
//! 1. **Wish.** A channel's first local subscriber ([`Broker::subscribe`]) makes its mirror
//!    (unloaded) and records a *wish*, and wakes the supervisor; the worker goes on at once.
//! 2. **Subscribe.** The supervisor, which owns the subscription connection, sends one
//!    `SUBSCRIBE` naming every channel wished since it last looked (`CHANNELS_PER_COMMAND`
//!    at most per command).
//! 3. **Confirm, then catch up.** Redis confirms each channel (`["subscribe", topic,
//!    count]`) and from then on sends its messages. The supervisor drops a channel's messages
//!    until its catch-up has run, after the confirmation, on the supervisor's own command
//!    connection: an unloaded mirror is loaded (`XREVRANGE ... COUNT 1`), a loaded one (after
//!    a reconnect) reads its stream on from its newest entry (`XRANGE`). A message dropped
//!    before the catch-up was sent by Redis before the catch-up's read ran, so the read has
//!    it; a message after the read comes by pub/sub; one that comes both ways is skipped by
//!    position. Nothing is lost or doubled at the seam, and readers meanwhile read the stream.
//! 4. **Linger, unsubscribe.** When the last local subscriber leaves, the mirror stays, live,
//!    for [`SUBSCRIPTION_LINGER`] (5 s): a client coming back (an `EventSource` reconnecting,
//!    a long poll asking again) finds it as it was and costs no command. After that the
//!    supervisor's sweep forgets the mirror and sends `UNSUBSCRIBE`: a mirror nothing feeds
//!    any more must not answer reads as if it were current. A subscriber arriving meanwhile
//!    makes a new mirror and subscribes again, from step 1.
//!
//! Workers never touch the subscription: they record wishes, and the supervisor does every
//! `SUBSCRIBE`, `UNSUBSCRIBE` and catch-up. To wake at once for a wish while it waits for
//! Redis, the supervisor waits on one queue (`Event`) fed by a reader thread of the
//! subscription connection (each value Redis sends) and by the workers (a wake-up): std has
//! no `poll(2)` over a socket and a wake-up, and the poller built on [`crate::server::sys`]'s calls
//! (`server::poller`) sits above the broker in the layers. The queue is bounded (`EVENT_QUEUE`): a supervisor that falls
//! behind holds the reader back, and Redis's `client-output-buffer-limit` for pub/sub then
//! drops the connection, after which the node reconnects and catches up.
//!
//! Memory: each mirror keeps at most `--history` messages and `--history-bytes` bytes of
//! envelopes (always the newest message), the same bound as the memory broker's ring; the
//! stream in Redis keeps its `--history` entries whatever their size, so a reader who fell off
//! a mirror is answered from the stream (a cold read). A mirror lives while its channel is
//! subscribed: its local subscribers and the linger (`--channel-ttl` is the memory broker's).
//! Nothing is lost with it (Redis has the stream; a reader is answered by a cold read, a
//! subscriber makes the mirror again), so unlike the memory broker's channels no cursor needs
//! protecting. At most `--max-channels` mirrors are kept: past that, the quietest channel
//! without local subscribers is forgotten at once, and unsubscribed at the next sweep.
//!
//! ## Connections and faults
//!
//! Each node holds, `std::net` only: the **link** ([`pipeline`]), a few pipelined command
//! connections with threads of their own, for the workers' publishes, loads and cold reads;
//! and a **subscription connection** and a command connection of its own owned by a
//! **supervisor** thread, which reads pub/sub messages, catches up and sweeps:
//!
//! - A publish that cannot reach Redis answers 503 at once ([`BrokerError::Unavailable`]):
//!   refused, never queued and never dropped silently; one that Redis does not answer within
//!   `--redis-timeout` answers 503 with `Retry-After: 1`. Existing client connections stay open.
//! - The supervisor reconnects with capped exponential backoff (50 ms doubling to 2 s). On the
//!   new connection it subscribes every mirrored channel *first* (one `SUBSCRIBE` per
//!   `CHANNELS_PER_COMMAND` channels), reads the confirmations, and then catches every one
//!   up from its newest entry with `XRANGE`, before it applies any pub/sub message (step 3
//!   above): whatever was published while the node was away arrives from the stream, and
//!   everything after arrives from pub/sub; entries that come both ways are skipped by
//!   position. Subscribers receive every message Redis stored, once, in order.
//! - Redis closing a command connection of the link (a restart, `CLIENT KILL`, its `timeout`
//!   setting) is noticed by the lane's reader at once: what was in flight on it fails (503),
//!   and the lane reconnects at once, then with backoff. The supervisor's own command
//!   connection is checked before each use and opened again if Redis closed it while idle:
//!   nothing was sent on the dead one, so nothing can run twice.
//! - A silent subscription connection is pinged after 5 s and abandoned if the ping is not
//!   answered within 5 s more (a half-open TCP connection never reports an error); on a
//!   cluster each master's connection on its own.
//! - Each connection opens with `AUTH` when the URL has a password ([`RedisUrl`]), in the
//!   same write as its `SELECT`. Credentials Redis refuses (`WRONGPASS`, or `NOAUTH` for a URL
//!   without a password) are an outage like any other: logged once, the password shown as
//!   `***`, and retried with the same backoff.
//!
//! What is *not* guaranteed: a publish whose reply was lost (the connection broke after Redis
//! ran the script) or came after `--redis-timeout` answers 503 though the message was stored,
//! so a client that retries may publish it twice. Messages a Redis without persistence loses in a restart are lost to
//! readers who did not already have them; those readers are told so with a gap.
//!
//! ## Cluster
//!
//! With `--broker redis-cluster://HOST:PORT[,HOST:PORT...]` (Redis 7.0 or later) the same
//! design runs on a Redis Cluster (the spec:
//! <https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/>):
//!
//! - **Names.** A channel's stream is `realtime:{CHANNEL}` and its news go on the *shard
//!   channel* `realtime:{CHANNEL}:live`: the channel name is the hash tag of both, so both are
//!   in one slot, on one master ([`KeySpace`], [`cluster::key_slot`]). On one Redis the names
//!   stay what they were (`realtime:CHANNEL`, `realtime:DB:CHANNEL`).
//! - **Publish** is [`CLUSTER_PUBLISH_SCRIPT`]: the same script with `SPUBLISH`, which reaches
//!   only the subscribers of the master that owns the slot, not the whole cluster as `PUBLISH`
//!   would. Atomic on one master as before, so stream order is pub/sub order. A call of it
//!   holds publishes of one slot ([`publish_batch`]).
//! - **The link** is a [`router::Router`]: a lane set per master, each command sent to its
//!   key's master, `MOVED` and `ASK` followed a bounded number of times (see there).
//! - **Subscriptions**: the supervisor asks `CLUSTER SLOTS` ([`cluster::Topology`]), opens one
//!   subscription connection per master, and `SSUBSCRIBE`s each channel on its master's, with
//!   the same wish → confirmation → catch-up seam per channel; catch-up reads go through the
//!   router. When a channel's slot moves, Redis unsubscribes it (an `sunsubscribe` nobody asked
//!   for), or a redirection makes the router ask for the table again: the supervisor asks for
//!   the table (on a thread of its own, `Shared::ask_topology`: the node asked may be the one
//!   that hangs, and the other masters' news must not wait behind it) and subscribes the
//!   channels whose slots went to another master on that master's connection, each caught
//!   up from its mirror's newest entry once confirmed (the same seam as a new channel's), and
//!   leaves every other channel alone: resharding a slot costs its own channels one
//!   `SSUBSCRIBE` each, not every channel of the node. Between the move and
//!   that catch-up (a quarter of a second or so, the table being asked for again that often
//!   while a channel waits; at most ten seconds if the nodes asked have not heard of the
//!   move) the channel's mirror hears nothing: its readers wait, and what was published
//!   meanwhile reaches them with the catch-up, late but neither lost nor doubled.
//! - **A master lost.** Each master's subscription connection stands alone. When one fails
//!   (Redis closed it, or killed, or silent past a ping), only that master's channels are set
//!   aside, the same way: they wait until the connection is opened again (after a backoff,
//!   by a thread of its own: a master that drops packets does not hold the supervisor) or
//!   a table gives their slots to another master (its replica promoted), and are subscribed
//!   and caught up there. The other masters' channels keep their subscriptions and their
//!   news go on meanwhile, through the failover; a node that starts while a master is down
//!   subscribes on the others the same way. A table whose masters are not the session's
//!   keeps the connections of the masters that stay, opens one to each new master and closes
//!   those to masters gone (`Shared::follow_masters`).
//! - **Failover.** Redis replicates asynchronously: a master killed before its replica has a
//!   write takes it along, and the replica promoted in its place never had it. So a publish
//!   on a master with replicas (`CLUSTER NODES`, [`cluster::Topology::count_replicas`]) is
//!   answered only after a `WAIT 1` says a replica has it, and 503 if none does in time
//!   (`pipeline`, "Replicated writes"): what a publisher was told is published is in the
//!   copy that takes over. What the old master published but never confirmed may have been
//!   delivered by nodes that heard it; a reader whose cursor names such an entry is told
//!   with a gap by a read from the stream (`cursor_was_lost`: its entry is not in the
//!   stream). A mirror that heard such an entry keeps it, and a reader past it waits for newer ids;
//!   if the new master's ids come out smaller (its clock behind the old master's by more
//!   than the failover took), the mirror hears an entry older than its newest and rewinds
//!   (above, "the mirror"), and those readers get a gap.
//!
//! ## Never waiting for Redis
//!
//! No worker thread does Redis I/O. What a request needs from Redis goes to the link and
//! comes back through the waiting connection's [`Wake`], the way a broker message does:
//!
//! - **Publish** queues `EVALSHA` on the link and returns a [`Pending`]; the connection waits
//!   in its `Publishing` state (`Waiting::ForBroker`) until the link's thread fills it in, or
//!   answers 503 at `--redis-timeout` and discards the late reply. A WebSocket reads no further
//!   frame while its message is being published. A single client's publishes therefore stay in
//!   order however many connections the link has: an HTTP client has one request answered at a
//!   time (the next is not parsed before the answer), and a WebSocket one message at a time.
//! - **Reads** ([`Broker::read`]) are answered from the mirror whenever it covers the
//!   cursor. A cold read goes on the link *for that reader* (its subscriber key and wake): the
//!   read answers "nothing yet" ([`Batch::in_flight`], the cursor unchanged) and the result is
//!   kept for the reader, who is woken when it lands and reads it with its next read. One
//!   request per reader at most: a different one replaces it, and [`Broker::forget`] (the
//!   reader left) drops it, so the table is bounded by connections.
//! - **The tail** of a channel the node does not mirror yet ([`Broker::tail`]) is asked of
//!   the stream the same way (`XREVRANGE ... COUNT 1`) while the mirror's load starts; a reader
//!   that asked keeps its answer as its start even if the mirror loads meanwhile (the mirror's
//!   newest could by then include a message published after the reader came). If Redis cannot
//!   answer, the tail is "now" on Redis's clock, as before. An SSE stream or a WebSocket
//!   writes its head (its `101`) only once its tail is known (the connection's `Opening`
//!   state): a message its client publishes on seeing the stream open is then after the
//!   tail, as when the tail was a blocking round trip before the head.
//! - **Subscribe** makes the mirror and records a wish for the supervisor; it never waits
//!   for the subscription (see "One subscription per channel").
//!
//! The invariants above hold as they did: a subscriber registers before it reads, reads always
//! start from its cursor (the mirror, or the stream with a gap check), and a mirror only grows
//! at the back, so there is no seam between subscribing and catching up, nothing twice and
//! nothing skipped. The supervisor thread, not a worker, still blocks on its own connection
//! for catch-up after a new subscription; sweeps need no connection. Lock order: the
//! supervisor's `command`, then `channels`, then one mirror, then the per-reader `requests` or
//! a lane of the link; the link calls back with none of its locks held. The `wishes` are a
//! leaf: taken with no other lock held, and none taken under them.
//!
//! ## Where each part lives
//!
//! This file holds the broker ([`RedisBroker`]): what the workers call (publish, read, tail,
//! subscribe) and the state it shares with its supervisor thread. Beside it, in `redis/`:
//! `supervisor.rs`, the supervisor (the subscriptions and their session, the wishes granted,
//! the catch-ups, the sweep, the command connection and reconnection); `channel.rs`, a
//! channel in Redis (its key names [`KeySpace`], the publish script [`PUBLISH_SCRIPT`],
//! stream ids, the reads of a stream and the gap rules); `mirror.rs`, a channel on a node
//! (the mirror above);
//! `link.rs`, one blocking connection to Redis and how a conversation fails; `url.rs`, the
//! `--broker` URLs ([`RedisUrl`], [`ClusterUrl`]); [`pipeline`], the link that carries the
//! workers' commands; [`router`] and [`cluster`], a Redis Cluster's slots.
//!
//! Redis documentation: [XADD], [XRANGE], [XREVRANGE], [XINFO] `STREAM`, [SUBSCRIBE],
//! [UNSUBSCRIBE], [EVALSHA], transactions (<https://redis.io/docs/latest/develop/interact/transactions/>),
//! pub/sub (<https://redis.io/docs/latest/develop/interact/pubsub/>); the wire protocol is
//! [`super::resp`].
//!
//! [XADD]: https://redis.io/docs/latest/commands/xadd/
//! [XRANGE]: https://redis.io/docs/latest/commands/xrange/
//! [XREVRANGE]: https://redis.io/docs/latest/commands/xrevrange/
//! [XINFO]: https://redis.io/docs/latest/commands/xinfo-stream/
//! [SUBSCRIBE]: https://redis.io/docs/latest/commands/subscribe/
//! [UNSUBSCRIBE]: https://redis.io/docs/latest/commands/unsubscribe/
//! [EVALSHA]: https://redis.io/docs/latest/commands/evalsha/
//! [EVAL]: https://redis.io/docs/latest/commands/eval/

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use super::memory::{Ring, Subscribers};
use super::resp::{self, Value};
use super::{
    next_sweep, Batch, Broker, BrokerError, Gap, History, Limits, LinkStats, Message, Pending, Position, Reader, Since,
    Usage,
};
use crate::sync::lock;
use crate::time::{Instant, Now};
use crate::wake::Wake;

mod channel;
pub mod cluster;
mod link;
mod mirror;
pub mod pipeline;
pub mod publish_batch;
pub mod router;
mod supervisor;
mod url;

use pipeline::{OnReplies, OnUp, Pipeline};
use router::Router;

pub use channel::{
    parse_stream_id, stream_id, KeySpace, CLUSTER_PUBLISH_SCRIPT, NEWEST_OUTLIVES_STREAM, NEWEST_SCRIPT, PUBLISH_SCRIPT,
};
pub use url::{ClusterUrl, Password, RedisUrl, DEFAULT_PORT};

use channel::{
    cold_read_command, cold_read_cursor, end_of_millisecond, millis, newest_command, parse_cold_read, parse_newest,
    COLD_READ_REPLIES,
};
use link::{now_ms, Backoff, Link, RedisError};
use mirror::Mirror;
use publish_batch::{Publish, PublishArgs};
use supervisor::{supervise, CommandLink, Event, Wishes};

/// The largest message text this broker carries. A message crosses pub/sub as one bulk
/// string with its id in front, and the decoder refuses bulk strings past
/// [`resp::DEFAULT_MAX_BULK_BYTES`]; `--max-publish-bytes` may not exceed this.
pub const MAX_MESSAGE_BYTES: usize = resp::DEFAULT_MAX_BULK_BYTES - 64;

/// `--redis-timeout`: the longest a request waits for Redis before it is answered 503, and
/// the longest a command on the link may go unanswered before its connection is declared dead
/// ([`pipeline`]). Redis answers in well under a millisecond; two seconds rides out a fork for
/// a snapshot or a slow disk without letting a client wait much longer than a person would.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The shortest `--redis-timeout`: below it, a busy loopback Redis would be taken for a dead one.
pub const MIN_REDIS_TIMEOUT: Duration = Duration::from_millis(10);

/// The longest `--redis-timeout`: a client waiting a minute for a publish has long given up.
pub const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(60);

/// The most connections `--redis-connections` may give the link: each costs two threads, and
/// one already carries tens of thousands of commands a second.
pub const MAX_REDIS_CONNECTIONS: usize = 16;

/// The supervisor's heartbeat: the longest it waits for an event (a pub/sub value, a wish)
/// before it looks at the command connection, its pings and the shutdown flag.
const TICK: Duration = Duration::from_millis(100);

/// How long a channel stays subscribed after its last local subscriber leaves. Clients come
/// back quickly: a long-poll client asks again within milliseconds of its answer, an
/// `EventSource` reconnects after its `retry` (2 s, `--sse-retry`), a page reloads in a second
/// or two. Without the linger each return would cost an `UNSUBSCRIBE`, a `SUBSCRIBE` and a
/// catch-up read, and the returning reader's first reads would go to the stream. Five seconds
/// of a channel's traffic is what an idle node pays for that.
pub const SUBSCRIPTION_LINGER: Duration = Duration::from_secs(5);

/// Channels named in one `SUBSCRIBE` or `UNSUBSCRIBE`. Redis has no limit of its own on how
/// many a command names, but a command is one multibulk request, and Redis refuses one of more
/// than 1024 * 1024 arguments ("invalid multibulk length") and buffers at most
/// `client-query-buffer-limit` (1 GB) of it; a thousand channel names of at most 64 bytes
/// keep each command under 80 KB, so a node with many channels sends a few such commands.
const CHANNELS_PER_COMMAND: usize = 1000;

/// Pub/sub values queued between the subscription's reader thread and the supervisor. When
/// the supervisor falls behind (it is catching up), the reader waits, the socket fills, and
/// Redis holds the rest up to its `client-output-buffer-limit pubsub` (32 MB) before it
/// drops the connection; the node then reconnects and catches up from the streams.
const EVENT_QUEUE: usize = 1024;

/// Channels whose subscription workers may ask for between two looks of the supervisor; past
/// it, the supervisor looks at every mirror instead (see [`Wishes`]).
const MAX_WISHES: usize = 1024;

/// A subscription silent this long is sent a `PING`...
const PING_AFTER: Duration = Duration::from_secs(5);

/// ...and abandoned if nothing arrives this much later.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `start` waits for the first subscription before it lets the server run without
/// one (a node may start before Redis; it keeps trying).
const FIRST_SUBSCRIPTION_WAIT: Duration = Duration::from_secs(5);

/// On a cluster, the shortest time between two `CLUSTER SLOTS` the link asks for (after a
/// redirection or a master's lanes going down): a resharding answers many commands `MOVED`,
/// and one table a quarter second serves them all.
const TOPOLOGY_REFRESH_MIN: Duration = Duration::from_millis(250);

/// On a cluster, the longest time between two looks at the table even when nothing asks for
/// one: a replica added or back from a failure is seen within it, and publishes on its
/// master wait for it again (`WAIT`) from then on.
const TOPOLOGY_REFRESH_EVERY: Duration = Duration::from_secs(10);

/// Entries read per `XRANGE` while catching up after a reconnect.
const CATCH_UP_PAGE: usize = 256;

/// Channels whose catch-up commands go out in one pipelined write.
const CATCH_UP_PIPELINE: usize = 64;

/// How far before "now" a channel's tail is put when its newest entry cannot be read (see
/// [`Shared::estimated_now`]): generous against clock error, at the price of perhaps
/// repeating a second of messages.
const TAIL_MARGIN_MS: i64 = 1000;

/// What `/stats` and `/metrics` show of the subscription connection.
#[derive(Default)]
struct SubscriptionCounters {
    /// Channels subscribed, as Redis counted them in its last confirmation, once those it
    /// confirmed are caught up (0 while the connection is down).
    channels: AtomicUsize,
    /// `message` pushes received: this node's share of the backplane's traffic.
    messages: AtomicU64,
    /// Confirmations of `SUBSCRIBE` and of `UNSUBSCRIBE`, one per channel.
    subscribes: AtomicU64,
    unsubscribes: AtomicU64,
}

/// What a reader asked Redis for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Want {
    /// The stream's newest id: where "only new messages" starts ([`Broker::tail`]).
    Tail,
    /// A cold read ([`cold_read_command`]).
    Read { since: Since, max: usize },
}

/// A reader's request on the link, and its answer once it has landed.
struct Request {
    serial: u64,
    channel: Box<str>,
    want: Want,
    replies: Option<Result<Vec<Value>, BrokerError>>,
    /// Who to wake when the answer lands.
    wake: Option<Wake>,
}

/// The workers' link: one [`Pipeline`] on one Redis, a [`Router`] of pipelines (one per
/// master) on a cluster.
enum Lanes {
    Single(Pipeline),
    Cluster(Arc<Router>),
}

impl Lanes {
    /// Queues `commands` about `key` (the stream they read or write), as [`Pipeline::submit`].
    fn submit(&self, key: &[u8], commands: &[u8], replies: usize, on_replies: OnReplies) -> Result<(), BrokerError> {
        match self {
            Lanes::Single(pipeline) => pipeline.submit(commands, replies, on_replies),
            Lanes::Cluster(router) => router.submit(key, commands, replies, false, on_replies),
        }
    }

    /// Queues a publish: it joins the publishes waiting for the lane's next send
    /// ([`Pipeline::submit_publish`], [`Router::submit_publish`]). On one Redis it is answered
    /// at once (a replica there is not promoted by anything this node knows of); on a cluster
    /// whose master has replicas, once one of them has it.
    fn submit_publish(
        &self,
        publish: &Publish,
        args: &Arc<PublishArgs>,
        on_replies: OnReplies,
    ) -> Result<(), BrokerError> {
        match self {
            Lanes::Single(pipeline) => pipeline.submit_publish(publish, args, false, on_replies),
            Lanes::Cluster(router) => router.submit_publish(publish, args, on_replies),
        }
    }

    fn reload_script(&self) {
        match self {
            Lanes::Single(pipeline) => pipeline.reload_script(),
            Lanes::Cluster(router) => router.reload_script(),
        }
    }

    fn stats(&self) -> LinkStats {
        match self {
            Lanes::Single(pipeline) => pipeline.stats(),
            Lanes::Cluster(router) => router.stats(),
        }
    }

    fn stop(&self) {
        match self {
            Lanes::Single(pipeline) => pipeline.stop(),
            Lanes::Cluster(router) => router.stop(),
        }
    }

    /// Whether the router asks for a new slot table (never on one Redis).
    fn wants_refresh(&self) -> bool {
        matches!(self, Lanes::Cluster(router) if router.wants_refresh())
    }
}

/// What the broker and its supervisor thread share.
struct Shared {
    url: RedisUrl,
    limits: Limits,
    /// What a channel's stream and pub/sub channel are called.
    keys: KeySpace,
    /// What every publish script's `EVALSHA` says the same way, written once.
    publish_args: Arc<PublishArgs>,
    /// The workers' link to Redis: publishes, loads and cold reads, pipelined, never waited for.
    lanes: Lanes,
    /// On a cluster: its URL (the seeds, the credentials), for the nodes the supervisor opens.
    cluster: Option<ClusterUrl>,
    /// Counts the supervisor's failed attempts at a command connection, so that on a cluster
    /// each attempt goes to the next node (seeds and masters in turn).
    command_target: AtomicUsize,
    /// `--redis-timeout`.
    timeout: Duration,
    /// The supervisor's own connection, for catch-up; only the supervisor thread uses it.
    /// Lock order: `command`, then `channels`, then one mirror, then `requests` or a lane of
    /// the pipeline.
    command: Mutex<CommandLink>,
    /// Keyed by the name the channel's local subscribers share ([`Broker::subscribe`]).
    channels: Mutex<HashMap<Arc<str>, Arc<Mutex<Mirror>>>>,
    /// What each reader is waiting for from Redis (its tail, or a cold read), by subscriber
    /// key: at most one each, dropped when the reader moves on ([`Broker::forget`]). Shared
    /// with the link's callbacks, which fill them in.
    requests: Arc<Mutex<HashMap<u64, Request>>>,
    /// Numbers requests, so that an answer to a replaced one is not taken for its successor's.
    next_request: AtomicU64,
    /// Numbers subscription connections ([`supervisor::Shard::connection`]).
    next_connection: AtomicU64,
    /// Redis's clock minus ours, in milliseconds, as last measured.
    clock_offset_ms: AtomicI64,
    stopping: AtomicBool,
    /// Whether the supervisor is subscribed and caught up (it is listening): half of what
    /// [`Broker::is_ready`] reports.
    subscribed: AtomicBool,
    /// A slot table is being asked for ([`Shared::ask_topology`]): one ask at a time.
    asking_topology: AtomicBool,
    /// Channels to subscribe, recorded by workers for the supervisor (a leaf lock).
    wishes: Mutex<Wishes>,
    /// The supervisor's queue: a worker wakes it here after a wish ([`Event`]).
    events: SyncSender<Event>,
    counters: SubscriptionCounters,
}

impl Shared {
    /// The state of a broker for `url` whose commands go to `pipeline` and whose supervisor
    /// is woken through `events`: no mirror, no wish, nothing connected yet.
    fn new(
        url: RedisUrl,
        limits: Limits,
        cluster: Option<ClusterUrl>,
        lanes: Lanes,
        timeout: Duration,
        events: SyncSender<Event>,
    ) -> Shared {
        let (keys, script) = match cluster {
            None => (KeySpace::Single { db: url.db }, PUBLISH_SCRIPT),
            Some(_) => (KeySpace::Cluster, CLUSTER_PUBLISH_SCRIPT),
        };
        Shared {
            wishes: Mutex::default(),
            events,
            counters: SubscriptionCounters::default(),
            keys,
            publish_args: Arc::new(PublishArgs::new(script, &limits.sanitized())),
            lanes,
            cluster,
            command_target: AtomicUsize::new(0),
            timeout,
            url,
            limits: limits.sanitized(),
            command: Mutex::new(CommandLink::not_opened()),
            channels: Mutex::default(),
            requests: Arc::default(),
            next_request: AtomicU64::new(0),
            next_connection: AtomicU64::new(0),
            clock_offset_ms: AtomicI64::new(0),
            stopping: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            asking_topology: AtomicBool::new(false),
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Adds a local subscriber to the channel's mirror, made if there is none; with the table
    /// locked, so that no sweep or eviction can forget the mirror meanwhile (a subscriber added
    /// to a forgotten mirror would never be woken). A new mirror is a wish: the supervisor is
    /// told to subscribe its channel, and loads it once the subscription is confirmed; its
    /// readers read from the stream until then. Returns the name the subscribers share, and
    /// whether the mirror is new.
    fn add_subscriber(&self, name: &str, subscriber: u64, wake: &Wake, now: Instant) -> (Arc<str>, bool) {
        let mut channels = lock(&self.channels);
        let (shared_name, mirror, made) = match channels.get_key_value(name) {
            Some((shared_name, mirror)) => (shared_name.clone(), mirror.clone(), false),
            None => {
                self.evict(&mut channels);
                let mirror = Arc::new(Mutex::new(Mirror::unloaded(now)));
                let shared_name: Arc<str> = name.into();
                channels.insert(shared_name.clone(), mirror.clone());
                (shared_name, mirror, true)
            }
        };
        lock(&mirror).subscribers.insert(subscriber, wake);
        drop(channels);
        if made {
            self.wish(name);
        }
        (shared_name, made)
    }

    /// Asks the supervisor to subscribe `name`, and wakes it. A full queue needs no wake-up:
    /// the supervisor looks at the wishes after every event it takes.
    fn wish(&self, name: &str) {
        {
            let mut wishes = lock(&self.wishes);
            if wishes.channels.len() >= MAX_WISHES {
                wishes.channels.clear();
                wishes.everything = true;
            }
            if !wishes.everything {
                wishes.channels.push(name.into());
            }
        }
        // Full: the supervisor has events to take, and looks at the wishes after each.
        // Disconnected: the broker is stopping.
        let _: Result<(), TrySendError<Event>> = self.events.try_send(Event::Wake);
    }

    /// A connection of the link came up: wakes every subscriber, so that readers whose reads
    /// failed while Redis was away read again.
    fn on_link_up(&self) {
        let mirrors: Vec<Arc<Mutex<Mirror>>> = lock(&self.channels).values().cloned().collect();
        for mirror in mirrors {
            lock(&mirror).subscribers.wake_all();
        }
    }

    /// Whether `subscriber` has asked Redis for `want` on `channel` (answered or not).
    fn is_asking(&self, subscriber: u64, channel: &str, want: &Want) -> bool {
        lock(&self.requests).get(&subscriber).is_some_and(|r| &*r.channel == channel && r.want == *want)
    }

    /// `reader`'s request for `want` on `channel`: its replies once they have landed, else
    /// `Pending` (and `reader` is woken when they land). A reader has one request at most: a
    /// different one replaces it, and its late answer is dropped. When the link cannot take
    /// the command the answer is an error at once, and nothing wakes the reader for it.
    fn request(&self, reader: Reader<'_>, channel: &str, want: Want) -> Poll<Result<Vec<Value>, BrokerError>> {
        let mut requests = lock(&self.requests);
        if let Some(request) = requests.get_mut(&reader.subscriber) {
            if &*request.channel == channel && request.want == want {
                if let Some(replies) = request.replies.take() {
                    requests.remove(&reader.subscriber);
                    return Poll::Ready(replies);
                }
                if !request.wake.as_ref().is_some_and(|w| w == reader.wake) {
                    request.wake = Some(reader.wake.clone());
                }
                return Poll::Pending;
            }
        }
        let mut out = Vec::new();
        let key = self.keys.stream(channel);
        let replies = match &want {
            Want::Tail => {
                newest_command(&mut out, &self.keys, channel);
                1
            }
            Want::Read { since, max } => {
                cold_read_command(&mut out, &self.keys, channel, since, *max);
                COLD_READ_REPLIES
            }
        };
        let serial = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (subscriber, answers) = (reader.subscriber, self.requests.clone());
        let on_replies: OnReplies = Box::new(move |replies| {
            let wake = {
                let mut requests = lock(&answers);
                let Some(request) = requests.get_mut(&subscriber).filter(|r| r.serial == serial) else { return };
                request.replies = Some(replies);
                request.wake.take()
            };
            if let Some(wake) = wake {
                wake.wake();
            }
        });
        // The requests stay locked while the command is queued, so its answer cannot be
        // filled in before the request exists.
        match self.lanes.submit(key.as_bytes(), &out, replies, on_replies) {
            Ok(()) => {
                let wake = Some(reader.wake.clone());
                requests.insert(subscriber, Request { serial, channel: channel.into(), want, replies: None, wake });
                Poll::Pending
            }
            Err(error) => {
                requests.remove(&subscriber);
                Poll::Ready(Err(error))
            }
        }
    }

    /// Makes room for a new mirror by forgetting the channels that have been quiet longest
    /// and have no local subscribers; their messages stay in Redis, and the supervisor ends
    /// their subscriptions at its next sweep.
    fn evict(&self, channels: &mut HashMap<Arc<str>, Arc<Mutex<Mirror>>>) {
        while channels.len() >= self.limits.max_channels {
            let quietest = channels
                .iter()
                .filter_map(|(name, mirror)| {
                    let mirror = lock(mirror);
                    // Positions are Redis timestamps: the smallest newest position is the
                    // channel whose last message is oldest.
                    mirror.is_idle().then(|| (mirror.newest, name.clone()))
                })
                .min();
            match quietest {
                Some((_, name)) => channels.remove(&name),
                None => return,
            };
        }
    }

    /// "Now" as a stream position, for a channel whose newest entry cannot be read because
    /// Redis is unreachable: the end of the millisecond [`TAIL_MARGIN_MS`] ago on Redis's
    /// clock (ours corrected by the offset measured at the last connection). Every message
    /// published from now on gets a later id; a few from just before the outage may be
    /// delivered too, which errs towards repeating news rather than skipping it.
    fn estimated_now(&self) -> Position {
        let redis_ms = now_ms() + self.clock_offset_ms.load(Ordering::Relaxed) - TAIL_MARGIN_MS;
        end_of_millisecond(redis_ms.max(0) as u64)
    }
}

/// The broker of a node in a cluster: Redis holds the history, pub/sub carries the news.
pub struct RedisBroker {
    shared: Arc<Shared>,
}

impl RedisBroker {
    /// Starts the link and the supervisor and waits (a few seconds at most) for the link's
    /// first connections and the first subscription, so that a node that starts with Redis up
    /// serves from its first request. If Redis is down the node runs anyway, answers publishes
    /// with 503 and keeps trying. `timeout` is `--redis-timeout`, `connections` the link's
    /// (`--redis-connections`).
    pub fn start(url: RedisUrl, limits: Limits, timeout: Duration, connections: usize) -> io::Result<RedisBroker> {
        RedisBroker::start_on(url, None, limits, timeout, connections)
    }

    /// [`RedisBroker::start`] on a Redis Cluster (the module docs, "Cluster"): the link is a
    /// router with lanes per master, the supervisor one subscription connection per master.
    pub fn start_cluster(
        url: ClusterUrl,
        limits: Limits,
        timeout: Duration,
        connections: usize,
    ) -> io::Result<RedisBroker> {
        let first = url.seeds.first().cloned().ok_or_else(|| io::Error::other("no seed node"))?;
        RedisBroker::start_on(url.node(&first), Some(url), limits, timeout, connections)
    }

    fn start_on(
        url: RedisUrl,
        cluster: Option<ClusterUrl>,
        limits: Limits,
        timeout: Duration,
        connections: usize,
    ) -> io::Result<RedisBroker> {
        let (events, queued) = mpsc::sync_channel(EVENT_QUEUE);
        let shared = Arc::new_cyclic(|shared: &Weak<Shared>| {
            let shared = shared.clone();
            // Upgraded only once the broker exists; a lane that comes up before has nothing to do.
            let on_up: OnUp = Arc::new(move || {
                if let Some(shared) = shared.upgrade() {
                    shared.on_link_up();
                }
            });
            let lanes = match &cluster {
                None => Lanes::Single(Pipeline::start(
                    &url,
                    PUBLISH_SCRIPT,
                    connections,
                    timeout,
                    on_up,
                    FIRST_SUBSCRIPTION_WAIT,
                )),
                // The router has no lanes until the supervisor's first `CLUSTER SLOTS`.
                Some(cluster) => Lanes::Cluster(Arc::new(Router::new(
                    cluster.clone(),
                    CLUSTER_PUBLISH_SCRIPT,
                    connections,
                    timeout,
                    on_up,
                ))),
            };
            Shared::new(url, limits, cluster, lanes, timeout, events.clone())
        });
        let (ready, first_attempt) = mpsc::channel();
        let supervisor = shared.clone();
        thread::Builder::new().name("realtime-redis".into()).spawn(move || supervise(supervisor, queued, ready))?;
        let _ = first_attempt.recv_timeout(FIRST_SUBSCRIPTION_WAIT);
        Ok(RedisBroker { shared })
    }

    /// The cluster this broker works on, if it does.
    pub fn cluster_url(&self) -> Option<&ClusterUrl> {
        self.shared.cluster.as_ref()
    }

    pub fn url(&self) -> &RedisUrl {
        &self.shared.url
    }
}

/// What the publish script's reply makes: the message, or why there is none. `NOSCRIPT`
/// ("when you run a Lua script with EVALSHA, but the server doesn't have the script in its
/// script cache", Redis docs) means the cache was flushed while the link's connections stayed
/// up: the publish answers 503 and the script is loaded again for the next one. (Running it
/// with `EVAL` now instead would put this publish behind later ones of the same channel.)
fn published(
    shared: &Shared,
    replies: Result<Vec<Value>, BrokerError>,
    text: &str,
) -> Result<Arc<Message>, BrokerError> {
    let unavailable = |why: &str| BrokerError::Unavailable(why.to_string());
    match replies?.pop() {
        Some(Value::Error(message)) if message.starts_with("NOSCRIPT") => {
            shared.lanes.reload_script();
            Err(unavailable("Redis had lost the publish script; it is being loaded again"))
        }
        Some(Value::Error(message)) => Err(BrokerError::Unavailable(format!("Redis answered: {message}"))),
        Some(reply) => {
            let id = reply.as_str().ok_or_else(|| unavailable("the publish script returned no id"))?;
            let position = parse_stream_id(id).ok_or_else(|| unavailable("malformed stream id"))?;
            // Subscribers on this node get the message the way every node does, from pub/sub in
            // stream order; adding it to the mirror here could put it before an earlier message
            // another node published that pub/sub has not delivered yet.
            Ok(Arc::new(Message::new(id, position, text, millis(position))))
        }
        None => Err(unavailable("no reply")),
    }
}

impl Drop for RedisBroker {
    /// Stops the supervisor (at once, or within a tick if its queue is full) and the link; the connections close when their
    /// threads exit, and commands in flight fail.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.shared.events.try_send(Event::Wake);
        self.shared.lanes.stop();
    }
}

impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn usage(&self) -> Usage {
        let channels = lock(&self.shared.channels);
        let retained_bytes = channels.values().map(|mirror| lock(mirror).ring.bytes()).sum();
        Usage { channels: channels.len(), retained_bytes }
    }

    /// Sends the publish script on the link and returns at once; the link's thread fills the
    /// answer in. `now` is not used: a message's time is its stream id's, Redis's clock, the
    /// same for every node; and a mirror's idle time runs from when this node hears the message.
    fn publish(&self, channel: &str, text: &str, _now: Now) -> Pending<Arc<Message>> {
        let keys = &self.shared.keys;
        let stream = keys.stream(channel);
        let (newest, topic) = (KeySpace::newest_of(&stream), keys.topic(channel));
        let publish = Publish { stream: &stream, newest: &newest, topic: &topic, text, slot: None };
        let (pending, completer) = Pending::later();
        let (shared, text) = (self.shared.clone(), text.to_string());
        let on_replies: OnReplies = Box::new(move |replies| completer.complete(published(&shared, replies, &text)));
        match self.shared.lanes.submit_publish(&publish, &self.shared.publish_args, on_replies) {
            Ok(()) => pending,
            // Refused at once, never queued: the caller answers 503.
            Err(error) => Pending::ready(Err(error)),
        }
    }

    fn parse_cursor(&self, cursor: &str) -> Result<Since, BrokerError> {
        // `0`, "from the start" on every broker (`docs/PROTOCOL.md` §2.3), is `0-0` here, the
        // position before a stream's first entry: the whole stream, with a gap if it was trimmed.
        let id = if cursor == "0" { "0-0" } else { cursor };
        parse_stream_id(id).map(Since::After).ok_or(BrokerError::BadCursor)
    }

    /// A loaded mirror's newest position (a loaded mirror is live: its channel is subscribed
    /// and caught up); otherwise the stream's newest id, asked for this reader on the link.
    /// Once a reader has asked, its answer is the tail even if a mirror loads meanwhile: the
    /// mirror's newest could by then include a message published after the reader came, which
    /// it would skip. If Redis cannot answer, "now" on Redis's clock (`Shared::estimated_now`).
    /// No mirror is made here: only a subscriber makes one (and the subscription with it).
    fn tail(&self, channel: &str, reader: Reader<'_>) -> Poll<Position> {
        if !self.shared.is_asking(reader.subscriber, channel, &Want::Tail) {
            let mirror = lock(&self.shared.channels).get(channel).cloned();
            let known = mirror.and_then(|mirror| {
                let mirror = lock(&mirror);
                mirror.loaded.map(|_| mirror.newest)
            });
            if let Some(newest) = known {
                return Poll::Ready(newest);
            }
        }
        match self.shared.request(reader, channel, Want::Tail) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(replies) => {
                let newest = replies.ok().and_then(|replies| replies.first().and_then(|r| parse_newest(r).ok()));
                Poll::Ready(newest.unwrap_or_else(|| self.shared.estimated_now()))
            }
        }
    }

    fn cursor(&self, position: Position) -> String {
        stream_id(position)
    }

    /// From the mirror when it covers the cursor; otherwise a cold read on the link, for this
    /// reader: in flight until it lands. If Redis cannot answer, nothing is returned and the
    /// cursor stays: the reader is woken to try again when the link or the subscription is
    /// back (or by the next message).
    fn read(&self, channel: &str, since: &Since, max: usize, reader: Reader<'_>) -> Batch {
        if let Since::After(cursor) = since {
            let mirror = lock(&self.shared.channels).get(channel).cloned();
            if let Some(batch) = mirror.and_then(|mirror| lock(&mirror).read(*cursor, max)) {
                return batch;
            }
        }
        let stays = cold_read_cursor(since);
        match self.shared.request(reader, channel, Want::Read { since: since.clone(), max }) {
            Poll::Pending => Batch::in_flight(stays),
            Poll::Ready(Ok(replies)) => parse_cold_read(since, replies).unwrap_or_else(|_| Batch::empty(stays)),
            Poll::Ready(Err(_)) => Batch::empty(stays),
        }
    }

    /// Registers the subscriber in the channel's mirror; the first one (a new mirror) asks
    /// the supervisor to subscribe the channel, and never waits for it.
    fn subscribe(&self, channel: &str, subscriber: u64, wake: &Wake, now: Instant) -> Arc<str> {
        self.shared.add_subscriber(channel, subscriber, wake, now).0
    }

    fn forget(&self, channel: &str, subscriber: u64) {
        let mut requests = lock(&self.shared.requests);
        if requests.get(&subscriber).is_some_and(|request| &*request.channel == channel) {
            requests.remove(&subscriber);
        }
    }

    fn link_stats(&self) -> Option<LinkStats> {
        let counters = &self.shared.counters;
        Some(LinkStats {
            channels_subscribed: counters.channels.load(Ordering::Relaxed),
            pubsub_messages: counters.messages.load(Ordering::Relaxed),
            channel_subscribes: counters.subscribes.load(Ordering::Relaxed),
            channel_unsubscribes: counters.unsubscribes.load(Ordering::Relaxed),
            ..self.shared.lanes.stats()
        })
    }

    fn unsubscribe(&self, channel: &str, subscriber: u64, now: Instant) {
        if let Some(mirror) = lock(&self.shared.channels).get(channel) {
            let mut mirror = lock(mirror);
            mirror.subscribers.remove(subscriber);
            if mirror.subscribers.is_empty() {
                // The linger starts: the supervisor unsubscribes the channel after it.
                mirror.idle_since = now;
            }
        }
    }

    /// Ready while the subscription is up (news arrives) and the command connection is
    /// (publishes and reads can be sent). A dropped subscription is seen at once when Redis
    /// closes it, within `PING_AFTER` + `PING_TIMEOUT` (10 s) when it goes silent. A command
    /// connection in use by a command counts as up: a probe never waits behind a round trip.
    /// Subscribed (news arrives) and a connection of the link up (publishes and reads go).
    fn is_ready(&self) -> bool {
        self.shared.subscribed.load(Ordering::SeqCst) && self.shared.lanes.stats().connections_up > 0
    }
}

#[cfg(test)]
mod tests {
    //! Helpers for the tests of this module's files.
    use super::*;
    use crate::broker::text;
    use std::sync::OnceLock;

    /// A history of `messages` messages, however large.
    pub(super) fn count(messages: usize) -> History {
        History { messages, bytes: usize::MAX }
    }

    /// Made-up time: `secs` after an origin fixed for the whole test run.
    pub(super) fn at(secs: u64) -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_secs(secs)
    }

    pub(super) fn id(text: &str) -> Position {
        parse_stream_id(text).unwrap()
    }

    pub(super) fn message(position: &str, text: &str) -> Arc<Message> {
        Arc::new(Message::new(position, id(position), text, millis(id(position))))
    }

    pub(super) fn texts(batch: &Batch) -> Vec<String> {
        batch.messages.iter().map(|m| text(m)).collect()
    }
}
