//! The supervisor thread (the docs of [`super`], "One subscription per channel",
//! "Connections and faults" and "Cluster"): the subscription connections and the session
//! they make ([`Session`]), the workers' wishes granted, each channel's catch-up after its
//! confirmation, the sweep that ends what nobody follows, the command connection that
//! catch-ups and slot tables use, and the reconnection with backoff ([`supervise`]).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::channel::{newest_command, parse_entries, parse_newest, parse_payload, range_command};
use super::cluster::{key_slot, NodeAddr, Redirect, Topology};
use super::link::{Backoff, Link, RedisError, BACKOFF_MAX, COMMAND_TIMEOUT};
use super::mirror::{Accepted, Mirror};
use super::resp::{encode_command, Value};
use super::{
    next_sweep, Lanes, OnReplies, RedisUrl, Shared, CATCH_UP_PAGE, CATCH_UP_PIPELINE, CHANNELS_PER_COMMAND, PING_AFTER,
    PING_TIMEOUT, SUBSCRIPTION_LINGER, TICK, TOPOLOGY_REFRESH_EVERY, TOPOLOGY_REFRESH_MIN,
};
use crate::sync::{lock, try_lock};
use crate::time::Instant;

/// The command connection and what the supervisor needs to bring it back.
pub(super) struct CommandLink {
    /// `None` while Redis is unreachable: commands fail at once with `NotConnected`.
    link: Option<Link>,
    /// Where `link` was opened: on a cluster, the node a slot table is asked of, which its
    /// reply may call "the node you asked" ([`Topology::from_cluster_slots`]).
    opened_to: Option<NodeAddr>,
    /// When the supervisor may try to reconnect next.
    next_attempt: Instant,
    backoff: Backoff,
    /// When the connection went down, so that each outage is logged once.
    down_since: Option<Instant>,
}

impl CommandLink {
    /// Opened by the first catch-up or slot table that needs it.
    pub(super) fn not_opened() -> CommandLink {
        CommandLink {
            link: None,
            opened_to: None,
            next_attempt: Instant::now(),
            backoff: Backoff::new(),
            down_since: None,
        }
    }
}

/// What the supervisor thread waits for. One queue carries them all, so one wait covers the
/// subscription and the workers' wishes: std offers no `poll(2)` over a socket and a wake-up,
/// and the poller that does (`server::poller`) sits above the broker in the layers (README,
/// "Layout").
/// A reader thread of the subscription connection queues what Redis sends; a worker queues a
/// [`Event::Wake`] after it records a wish.
pub(super) enum Event {
    /// A value from subscription connection number `.0` ([`Shard::connection`]).
    Push(u64, Value),
    /// Subscription connection number `.0` failed or was shut down.
    Lost(u64, RedisError),
    /// The attempt to open subscription connection number `.0` ended
    /// ([`Shared::reconnect_shards`]).
    Connected(u64, Result<Link, RedisError>),
    /// A slot table asked for on a thread of its own ([`Shared::ask_topology`]).
    Topology(Result<Topology, RedisError>),
    /// Look at the wishes (or at the stop flag).
    Wake,
}

/// Where a channel's pub/sub subscription stands, as the supervisor asked Redis for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Topic {
    /// `SUBSCRIBE` sent, not confirmed yet.
    Subscribing,
    /// Confirmed, not caught up yet: its pub/sub messages are dropped, because the catch-up,
    /// which runs after them, reads them from the stream.
    Confirmed,
    /// Confirmed and caught up: its messages go into its mirror.
    Live,
    /// `UNSUBSCRIBE` sent (its mirror is forgotten): its messages are dropped.
    Unsubscribing,
}

/// Channels whose first local subscriber arrived (a new mirror), for the supervisor to
/// subscribe. Bounded: past [`super::MAX_WISHES`] the list is dropped and `everything` set, and the
/// supervisor looks at every mirror (what it does after a reconnect anyway).
#[derive(Default)]
pub(super) struct Wishes {
    pub(super) channels: Vec<Arc<str>>,
    pub(super) everything: bool,
}

/// The subscription connection while it is up, and what the supervisor has asked of it.
/// Supervisor thread only.
pub(super) struct Session {
    /// One subscription connection per master: one on one Redis; on a cluster one per master
    /// of `topology`, in its order.
    shards: Vec<Shard>,
    /// On a cluster: the slot table the shards were opened for, which says on which shard a
    /// channel is subscribed.
    topology: Option<Topology>,
    topics: HashMap<Arc<str>, Topic>,
    /// The [`Topic::Confirmed`] channels, in confirmation order.
    confirmed: Vec<Arc<str>>,
    /// Channels Redis unsubscribed because their slot moved to another master, with the
    /// shard that let them go and when: subscribed again on the new master once the slot
    /// table says which it is ([`Shared::follow_topology`]).
    moved: Vec<Moved>,
    /// `SUBSCRIBE` confirmations still to come.
    awaiting: usize,
    /// How many channels Redis last said the connection is subscribed to; shown in `/stats`
    /// once every confirmed channel is caught up, so that a channel counted there is served.
    subscribed_per_redis: usize,
}

impl Session {
    /// The master of shard `index`, on a cluster.
    fn master(&self, index: usize) -> Option<NodeAddr> {
        self.topology.as_ref()?.masters.get(index).cloned()
    }
}

/// A channel whose subscription ended without being asked to, because its slot moved or its
/// master's connection was lost ([`Session::moved`]).
pub(super) struct Moved {
    name: Arc<str>,
    /// The master that let it go (`None` on one Redis, where nothing moves).
    let_go_by: Option<NodeAddr>,
    at: Instant,
}

/// One subscription connection of a session.
pub(super) struct Shard {
    /// Numbers the connections of all sessions, so that what a replaced one's reader thread
    /// still queues is ignored.
    connection: u64,
    /// The socket's second handle: commands go out on it while the reader thread reads.
    /// `None` while a cluster master's connection is down ([`Shared::lose_shard`]).
    writer: Option<TcpStream>,
    /// When to try a connection that is down again, and how long to wait after that.
    retry_at: Instant,
    backoff: Backoff,
    /// An attempt to open the connection is under way, on a thread of its own.
    connecting: bool,
    /// Confirmations still to come on this connection.
    awaiting: usize,
    /// How many channels Redis last said this connection is subscribed to.
    subscribed: usize,
    /// When this connection last sent anything, and whether it has been pinged since: each
    /// master's connection is watched on its own, so that one half-open connection is found
    /// while the others are busy.
    last_heard: Instant,
    pinged: bool,
}

impl Shard {
    fn new(connection: u64, writer: Option<TcpStream>) -> Shard {
        let now = Instant::now();
        Shard {
            connection,
            writer,
            retry_at: now,
            backoff: Backoff::new(),
            connecting: false,
            awaiting: 0,
            subscribed: 0,
            last_heard: now,
            pinged: false,
        }
    }

    /// A connection to be opened ([`Shared::reconnect_shards`]).
    fn down(connection: u64) -> Shard {
        Shard::new(connection, None)
    }

    /// Pings the connection after [`PING_AFTER`] of silence; an error once a ping has gone
    /// [`PING_TIMEOUT`] unanswered (a half-open TCP connection never reports one itself).
    fn watch(&mut self, now: Instant) -> Result<(), RedisError> {
        let Some(writer) = &mut self.writer else { return Ok(()) };
        let silence = now.saturating_duration_since(self.last_heard);
        if silence >= PING_AFTER + PING_TIMEOUT {
            return Err(RedisError::Io(io::Error::new(io::ErrorKind::TimedOut, "PING not answered")));
        }
        if silence >= PING_AFTER && !self.pinged {
            let mut ping = Vec::new();
            encode_command(&mut ping, &[b"PING"]);
            writer.write_all(&ping)?;
            self.pinged = true;
        }
        Ok(())
    }
}

impl Drop for Shard {
    /// Ends the reader thread's read: the socket is closed both ways.
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            let _ = writer.shutdown(Shutdown::Both);
        }
    }
}

impl Shared {
    /// Runs `exchange` on the held command connection; a broken connection is dropped for the
    /// supervisor to replace.
    fn run<T>(
        &self,
        command: &mut CommandLink,
        exchange: impl FnOnce(&mut Link) -> Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        if command.link.as_ref().is_some_and(Link::closed_by_peer) {
            // Closed while idle: nothing has been sent on it, so opening a new one now and
            // sending there cannot run anything twice.
            command.link = None;
            self.reconnect(command);
        }
        let link = command.link.as_mut().ok_or(RedisError::NotConnected)?;
        match exchange(link) {
            Err(error) if error.breaks_connection() => {
                command.link = None;
                let node = command.opened_to.as_ref().map_or_else(|| self.url.to_string(), NodeAddr::to_string);
                self.command_lost(command, &node, &error);
                Err(error)
            }
            result => result,
        }
    }

    /// One attempt to open the command connection; on failure the next waits for the backoff.
    fn reconnect(&self, command: &mut CommandLink) -> bool {
        let url = self.command_url();
        match Link::open(&url, &self.clock_offset_ms) {
            Ok(link) => {
                if let Some(since) = command.down_since.take() {
                    crate::info!("redis: command connection restored"; down_ms = since.elapsed().as_millis() as u64);
                }
                command.link = Some(link);
                command.opened_to = Some(NodeAddr { host: url.host, port: url.port });
                command.backoff.reset();
                true
            }
            Err(error) => {
                self.command_lost(command, &url.to_string(), &error);
                self.command_target.fetch_add(1, Ordering::Relaxed);
                command.next_attempt = Instant::now() + command.backoff.next();
                false
            }
        }
    }

    /// Where the supervisor's command connection goes: the Redis, or on a cluster one of its
    /// seeds and known masters, the next one after each failed attempt.
    fn command_url(&self) -> RedisUrl {
        let (Some(cluster), Lanes::Cluster(router)) = (&self.cluster, &self.lanes) else { return self.url.clone() };
        let mut nodes = router.masters();
        for seed in &cluster.seeds {
            if !nodes.contains(seed) {
                nodes.push(seed.clone());
            }
        }
        let turn = self.command_target.load(Ordering::Relaxed) % nodes.len().max(1);
        nodes.get(turn).map_or_else(|| self.url.clone(), |node| cluster.node(node))
    }

    /// Asks the cluster for its slot table (`CLUSTER SLOTS`) on the command connection, trying
    /// each known node in turn, and hands it to the router. Only on a cluster.
    fn refresh_topology(&self) -> Result<Topology, RedisError> {
        let Lanes::Cluster(router) = &self.lanes else { return Err(RedisError::Unexpected("not a cluster")) };
        let attempts = router.masters().len() + self.cluster.as_ref().map_or(0, |c| c.seeds.len());
        let mut command = lock(&self.command);
        let mut last_error = RedisError::NotConnected;
        for _ in 0..attempts.max(1) {
            if command.link.is_none() && !self.reconnect(&mut command) {
                last_error = RedisError::NotConnected;
                continue;
            }
            // The slot table, and which masters have replicas (their publishes wait for one,
            // `WAIT`), from the same node.
            let replies = self.run(&mut command, |link| {
                Ok((link.call(&[b"CLUSTER", b"SLOTS"])?, link.call(&[b"CLUSTER", b"NODES"])?))
            });
            // "The node you asked" is where the connection was opened, not where the next one
            // would go (`command_url`, whose list the last table reordered).
            match (replies, &command.opened_to) {
                (Ok((slots, Value::Bulk(Some(nodes)))), Some(asked)) => {
                    match Topology::from_cluster_slots(&slots, asked) {
                        Ok(mut topology) => {
                            topology.count_replicas(&String::from_utf8_lossy(&nodes), asked);
                            router.set_topology(topology.clone());
                            return Ok(topology);
                        }
                        Err(why) => last_error = RedisError::Reply(format!("CLUSTER SLOTS: {why}")),
                    }
                }
                (Ok(_), _) => last_error = RedisError::Unexpected("CLUSTER NODES did not answer text"),
                (Err(error), _) => last_error = error,
            }
            // This node cannot tell: ask the next one.
            command.link = None;
            self.command_target.fetch_add(1, Ordering::Relaxed);
        }
        Err(last_error)
    }

    /// Sends one command per key, each answered by one reply, and waits for the replies (in
    /// the order of the commands): on one Redis pipelined on the supervisor's command
    /// connection; on a cluster through the router, each to the master of its key's slot,
    /// redirections followed. A reply that says the cluster is changing (`MOVED` or `ASK`
    /// past the router's retries, `TRYAGAIN`, `CLUSTERDOWN`) fails the whole exchange, so that
    /// a catch-up is tried again rather than skipped.
    fn exchange(
        &self,
        command: Option<&mut CommandLink>,
        commands: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<Value>, RedisError> {
        let count = commands.len();
        let Lanes::Cluster(router) = &self.lanes else {
            let command = command.ok_or(RedisError::NotConnected)?;
            let out: Vec<u8> = commands.into_iter().flat_map(|(_, command)| command).collect();
            return self.run(command, |link| link.pipeline(&out, count));
        };
        let (answers, answered) = mpsc::channel();
        for (index, (key, command)) in commands.iter().enumerate() {
            let answers = answers.clone();
            let on_replies: OnReplies = Box::new(move |replies| {
                let _ = answers.send((index, replies));
            });
            router
                .submit(key.as_bytes(), command, 1, false, on_replies)
                .map_err(|error| RedisError::Reply(error.to_string()))?;
        }
        drop(answers);
        let deadline = Instant::now() + self.timeout + COMMAND_TIMEOUT;
        let mut replies: Vec<Option<Value>> = (0..count).map(|_| None).collect();
        for _ in 0..count {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (index, result) = answered.recv_timeout(wait).map_err(|_| RedisError::TimedOut)?;
            let reply = result.map_err(|error| RedisError::Reply(error.to_string()))?.pop();
            let reply = reply.ok_or(RedisError::Unexpected("no reply"))?;
            if let Value::Error(text) = &reply {
                if ["MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"].iter().any(|kind| text.starts_with(kind)) {
                    return Err(RedisError::Reply(text.clone()));
                }
            }
            replies[index] = Some(reply);
        }
        Ok(replies.into_iter().flatten().collect())
    }

    /// The command connection to `node` failed (or could not be opened): logged once an
    /// outage. Publishes do not use it (they go by the link); what waits for it is catch-ups,
    /// and on a cluster the slot table.
    fn command_lost(&self, command: &mut CommandLink, node: &str, error: &RedisError) {
        if command.down_since.is_none() {
            command.down_since = Some(Instant::now());
            crate::warn!(
                "redis: command connection lost; catch-ups (and a cluster's slot table) wait until it is back";
                node = node,
                error = error.to_string(),
            );
        }
    }

    /// Ends the subscriptions nobody here needs any more: a mirror without local subscribers
    /// for [`SUBSCRIPTION_LINGER`] is forgotten and its channel unsubscribed, and so is a
    /// channel whose mirror [`Shared::evict`] forgot. Only a live subscription ends (one on its
    /// way is ended by a later sweep), so `UNSUBSCRIBE` never overtakes its `SUBSCRIBE`'s
    /// catch-up. Returns when the next sweep is due ([`next_sweep`]).
    fn sweep(&self, session: &mut Session, now: Instant) -> Result<Instant, RedisError> {
        let mut leaving: Vec<Arc<str>> = Vec::new();
        let mut earliest_expiry: Option<Instant> = None;
        {
            let mut channels = lock(&self.channels);
            for (name, topic) in &session.topics {
                if *topic == Topic::Live && !channels.contains_key(name) {
                    leaving.push(name.clone());
                }
            }
            channels.retain(|name, mirror| {
                let mirror = lock(mirror);
                let topic = session.topics.get(name).copied();
                let ending = matches!(topic, None | Some(Topic::Live));
                if ending && mirror.has_lingered(now, SUBSCRIPTION_LINGER) {
                    if topic.is_some() {
                        leaving.push(name.clone());
                    }
                    return false;
                }
                if mirror.is_idle() {
                    // A subscription on its way ends at a sweep after it is live.
                    let expiry = (mirror.idle_since + SUBSCRIPTION_LINGER).max(now);
                    earliest_expiry = Some(earliest_expiry.map_or(expiry, |earliest| earliest.min(expiry)));
                }
                true
            });
        }
        self.send_subscriptions(session, Verb::Unsubscribe, leaving)?;
        Ok(next_sweep(now, SUBSCRIPTION_LINGER, earliest_expiry))
    }

    /// Opens the subscription connection and subscribes every channel this node mirrors (the
    /// workers' wishes included), reads the confirmations, then catches every one of them up
    /// (in that order: see `catch_up`), and only then starts the reader thread that queues
    /// what Redis sends next. Returns the session and the number of messages caught up. On a
    /// cluster it fails only if no master can be reached: the channels of one that cannot
    /// wait for it ([`Shared::lose_shard`] says how).
    fn open_subscription(&self) -> Result<(Session, usize), RedisError> {
        // On a cluster: one connection per master of a fresh slot table.
        let (targets, topology) = match &self.cluster {
            None => (vec![self.url.clone()], None),
            Some(cluster) => {
                let topology = self.refresh_topology()?;
                (topology.masters.iter().map(|master| cluster.node(master)).collect(), Some(topology))
            }
        };
        // On a cluster a master that cannot be reached now (killed, its replica not promoted
        // yet) costs only its own channels, as when its connection is lost later.
        let mut links = Vec::with_capacity(targets.len());
        let mut shards = Vec::with_capacity(targets.len());
        let mut unreachable = None;
        for url in &targets {
            let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
            match Link::open(url, &self.clock_offset_ms) {
                Ok(link) => {
                    shards.push(Shard::new(connection, Some(link.stream.try_clone()?)));
                    links.push(Some(link));
                }
                Err(error) if self.cluster.is_some() => {
                    crate::warn!(
                        "redis: cannot subscribe on a master yet; its channels wait for it";
                        url = url.to_string(),
                        error = error.to_string(),
                    );
                    shards.push(Shard::down(connection));
                    links.push(None);
                    unreachable = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        if let (Some(error), true) = (unreachable, links.iter().all(Option::is_none)) {
            return Err(error);
        }
        let mut session = Session {
            shards,
            topology,
            topics: HashMap::new(),
            confirmed: Vec::new(),
            moved: Vec::new(),
            awaiting: 0,
            subscribed_per_redis: 0,
        };
        match self.subscribe_everything(&mut session, links) {
            Ok(caught_up) => Ok((session, caught_up)),
            Err(error) => {
                // What Redis confirmed before the failure ends with the connections.
                self.end_session(session);
                Err(error)
            }
        }
    }

    /// [`Shared::open_subscription`] once the connections are open: subscribes, reads the
    /// confirmations, catches up, starts the readers.
    fn subscribe_everything(&self, session: &mut Session, mut links: Vec<Option<Link>>) -> Result<usize, RedisError> {
        // Wishes first, then the table: a mirror made in between is in the table, and one
        // made after is a wish the listener grants.
        *lock(&self.wishes) = Wishes::default();
        let names: Vec<Arc<str>> = lock(&self.channels).keys().cloned().collect();
        self.send_subscriptions(session, Verb::Subscribe, names)?;
        for (shard, link) in links.iter_mut().enumerate() {
            let Some(link) = link else { continue };
            while session.shards[shard].awaiting > 0 {
                let value = link.receive()?;
                self.on_push(session, shard, &value)?;
            }
        }
        let caught_up = self.catch_up_confirmed(self.catch_up_connection().as_deref_mut(), session)?;
        // From now on the reader threads read.
        for (shard, link) in session.shards.iter().zip(links) {
            if let Some(link) = link {
                self.start_reading(link, shard.connection)?;
            }
        }
        Ok(caught_up)
    }

    /// A session is over (its connections failed, or failed while it opened): the
    /// subscriptions Redis confirmed on them ended with them (`/stats`
    /// `channel_unsubscribes`), and no channel is subscribed.
    fn end_session(&self, session: Session) {
        let ended: usize = session.shards.iter().map(|shard| shard.subscribed).sum();
        self.counters.unsubscribes.fetch_add(ended as u64, Ordering::Relaxed);
        drop(session);
        self.counters.channels.store(0, Ordering::Relaxed);
    }

    /// Starts the thread that reads subscription connection number `connection` and queues
    /// what Redis sends, without a timeout: the supervisor's pings notice a silent Redis, and
    /// shutting the socket down ends the read.
    fn start_reading(&self, link: Link, connection: u64) -> Result<(), RedisError> {
        link.stream.set_read_timeout(None)?;
        let events = self.events.clone();
        thread::Builder::new()
            .name("realtime-redis-sub".into())
            .spawn(move || read_subscription(link, connection, events))?;
        Ok(())
    }

    /// The shard (subscription connection) of `session` that carries `name`: the only one on
    /// one Redis; on a cluster the master of the slot of the channel's shard channel, which
    /// must be one the session has (else the table changed, and the session is opened again).
    fn shard_of(&self, session: &Session, name: &str) -> Result<usize, RedisError> {
        let Some(topology) = &session.topology else { return Ok(0) };
        let owner = topology.owner(key_slot(self.keys.topic(name).as_bytes()));
        owner
            .and_then(|owner| topology.masters.iter().position(|master| master == owner))
            .filter(|&shard| shard < session.shards.len())
            .ok_or(RedisError::Unexpected("a channel's slot has no master in the session's table"))
    }

    /// Sends `verb` for `names` on the subscription, and records what was asked. On one Redis
    /// [`CHANNELS_PER_COMMAND`] channels go to a command; on a cluster one channel to a
    /// command (`SSUBSCRIBE`'s channels "must belong to the same slot",
    /// <https://redis.io/docs/latest/commands/ssubscribe/>), each on its master's connection.
    /// All of a connection's commands go out in one write.
    fn send_subscriptions(&self, session: &mut Session, verb: Verb, names: Vec<Arc<str>>) -> Result<(), RedisError> {
        if names.is_empty() {
            return Ok(());
        }
        let sharded = self.keys.is_cluster();
        // A channel whose master's connection is down waits for it, or for a table that gives
        // its slot to another master, and so does one whose slot has no master in the table
        // (the cluster is down for it); one that was to be unsubscribed there already is.
        let now = Instant::now();
        let (mut sendable, mut shard_of) = (Vec::with_capacity(names.len()), Vec::with_capacity(names.len()));
        for name in names {
            match self.shard_of(session, &name) {
                Ok(shard) if session.shards[shard].writer.is_some() => {
                    sendable.push(name);
                    shard_of.push(shard);
                }
                on => {
                    session.topics.remove(&name);
                    if matches!(verb, Verb::Subscribe) {
                        let let_go_by = on.ok().and_then(|shard| session.master(shard));
                        session.moved.push(Moved { name, let_go_by, at: now });
                    }
                }
            }
        }
        let names = sendable;
        let mut out: Vec<Vec<u8>> = vec![Vec::new(); session.shards.len()];
        if sharded {
            for (name, &shard) in names.iter().zip(&shard_of) {
                let topic = self.keys.topic(name);
                encode_command(&mut out[shard], &[verb.command(true), topic.as_bytes()]);
            }
        } else {
            for group in names.chunks(CHANNELS_PER_COMMAND) {
                let topics: Vec<String> = group.iter().map(|name| self.keys.topic(name)).collect();
                let mut args: Vec<&[u8]> = vec![verb.command(false)];
                args.extend(topics.iter().map(|topic| topic.as_bytes()));
                encode_command(&mut out[0], &args);
            }
        }
        for (name, shard) in names.into_iter().zip(shard_of) {
            match verb {
                Verb::Subscribe => {
                    session.awaiting += 1;
                    session.shards[shard].awaiting += 1;
                    session.topics.insert(name, Topic::Subscribing);
                }
                Verb::Unsubscribe => {
                    session.topics.insert(name, Topic::Unsubscribing);
                }
            }
        }
        for (index, out) in out.iter().enumerate() {
            let Some(writer) = session.shards[index].writer.as_mut().filter(|_| !out.is_empty()) else { continue };
            if let Err(error) = writer.write_all(out) {
                if self.cluster.is_none() {
                    return Err(error.into());
                }
                self.lose_shard(session, index, &error.into(), now);
            }
        }
        Ok(())
    }

    /// A cluster master's subscription connection failed, or went silent. Only that master's
    /// channels are affected (the others' connections stay subscribed, and their news keep
    /// coming): each is set aside ([`Session::moved`]) until its connection is back
    /// ([`Shared::reconnect_shards`]) or a table gives its slot to another master (a replica
    /// promoted in its place: [`Shared::follow_topology`]), then subscribed there and caught
    /// up from its mirror's newest entry, the seam of every new subscription. Meanwhile its
    /// readers wait (and, if the master itself is gone, its publishes answer 503 until a
    /// replica takes over: the router's lanes to it are down too).
    fn lose_shard(&self, session: &mut Session, index: usize, error: &RedisError, now: Instant) {
        let master = session.master(index);
        let shard = &mut session.shards[index];
        let Some(writer) = shard.writer.take() else { return };
        let _ = writer.shutdown(Shutdown::Both);
        session.awaiting = session.awaiting.saturating_sub(shard.awaiting);
        shard.awaiting = 0;
        // Its subscriptions ended with it (`/stats`' `channel_unsubscribes`).
        self.counters.unsubscribes.fetch_add(shard.subscribed as u64, Ordering::Relaxed);
        shard.subscribed = 0;
        shard.pinged = false;
        shard.retry_at = now + shard.backoff.next();
        let lost: Vec<(Arc<str>, Topic)> = session
            .topics
            .iter()
            .filter(|(name, _)| self.shard_of(session, name).is_ok_and(|shard| shard == index))
            .map(|(name, &topic)| (name.clone(), topic))
            .collect();
        crate::warn!(
            "redis: lost a master's subscription connection; its channels wait for it or for its replica";
            master = master.as_ref().map(NodeAddr::to_string).unwrap_or_default(),
            channels = lost.len(),
            error = error.to_string(),
        );
        for (name, topic) in lost {
            session.topics.remove(&name);
            if topic != Topic::Unsubscribing {
                session.moved.push(Moved { name, let_go_by: master.clone(), at: now });
            }
        }
        session.confirmed.retain(|name| session.topics.contains_key(name));
        session.subscribed_per_redis = session.shards.iter().map(|shard| shard.subscribed).sum();
        if session.confirmed.is_empty() {
            self.counters.channels.store(session.subscribed_per_redis, Ordering::Relaxed);
        }
    }

    /// Starts an attempt to open each master's connection that is down, once its backoff has
    /// passed. The attempt runs on a thread of its own and reports to the supervisor's queue
    /// ([`Event::Connected`], then [`Shared::connected`]): a master that drops packets makes
    /// a connection attempt wait for its timeout, and the supervisor goes on serving the other
    /// masters' connections meanwhile. Each attempt gets a new connection number, so that the
    /// `Lost` a given-up connection's reader reports late is not taken for the new one's.
    fn reconnect_shards(&self, session: &mut Session, now: Instant) {
        let Some(cluster) = &self.cluster else { return };
        for index in 0..session.shards.len() {
            let Some(master) = session.master(index) else { continue };
            let shard = &mut session.shards[index];
            if shard.writer.is_some() || shard.connecting || now < shard.retry_at {
                continue;
            }
            shard.connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
            let (connection, url, events) = (shard.connection, cluster.node(&master), self.events.clone());
            let attempt = thread::Builder::new().name("realtime-redis-connect".into()).spawn(move || {
                // The clock offset it measures is not kept: the command connection's is.
                let result = Link::open(&url, &AtomicI64::new(0));
                let _ = events.send(Event::Connected(connection, result));
            });
            match attempt {
                Ok(_) => shard.connecting = true,
                Err(_) => shard.retry_at = now + shard.backoff.next(),
            }
        }
    }

    /// An attempt to open connection number `connection` ended: on success the connection
    /// reads, and the channels that wait for its master are subscribed on it; on failure it
    /// is tried again after the backoff. An attempt for a connection the session no longer
    /// has (its master left the table) is dropped, closing what it opened.
    fn connected(
        &self,
        session: &mut Session,
        connection: u64,
        result: Result<Link, RedisError>,
        now: Instant,
    ) -> Result<(), RedisError> {
        let Some(index) = session.shards.iter().position(|shard| shard.connection == connection && shard.connecting)
        else {
            return Ok(());
        };
        let master = session.master(index).map(|master| master.to_string()).unwrap_or_default();
        let shard = &mut session.shards[index];
        shard.connecting = false;
        let opened = result.and_then(|link| Ok((link.stream.try_clone()?, link)));
        let (writer, link) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                shard.retry_at = now + shard.backoff.next();
                crate::debug!("redis: a master's subscription connection is still down"; master = master, error = error.to_string());
                return Ok(());
            }
        };
        // The backoff is reset once the connection is heard from: one that fails at once
        // waits longer next time.
        shard.writer = Some(writer);
        shard.last_heard = now;
        shard.pinged = false;
        if let Err(error) = self.start_reading(link, connection) {
            self.lose_shard(session, index, &error, now);
            return Ok(());
        }
        crate::info!("redis: a master's subscription connection is up"; master = master);
        let (waiting, others): (Vec<Moved>, Vec<Moved>) = std::mem::take(&mut session.moved)
            .into_iter()
            .partition(|moved| self.shard_of(session, &moved.name).is_ok_and(|shard| shard == index));
        session.moved = others;
        let mut names: Vec<Arc<str>> = waiting.into_iter().map(|moved| moved.name).collect();
        names.sort_unstable();
        names.dedup();
        names.retain(|name| !session.topics.contains_key(name) && lock(&self.channels).contains_key(name));
        self.send_subscriptions(session, Verb::Subscribe, names)
    }

    /// Subscribes the channels whose first local subscriber arrived since the last look. A
    /// new mirror of a channel still subscribed (its old mirror was evicted) needs no
    /// `SUBSCRIBE`, only its load: it is caught up like a confirmed one.
    fn grant_wishes(&self, session: &mut Session) -> Result<(), RedisError> {
        let wishes = std::mem::take(&mut *lock(&self.wishes));
        if wishes.channels.is_empty() && !wishes.everything {
            return Ok(());
        }
        let mut subscribe = Vec::new();
        {
            let channels = lock(&self.channels);
            let mut names = if wishes.everything { channels.keys().cloned().collect() } else { wishes.channels };
            // A channel may be wished twice (made, evicted, made again).
            names.sort_unstable();
            names.dedup();
            for name in names {
                let Some(mirror) = channels.get(&name) else { continue };
                match session.topics.get(&name) {
                    None | Some(Topic::Unsubscribing) => subscribe.push(name),
                    Some(Topic::Live) if lock(mirror).loaded.is_none() => {
                        session.topics.insert(name.clone(), Topic::Confirmed);
                        session.confirmed.push(name);
                    }
                    Some(_) => {}
                }
            }
        }
        self.send_subscriptions(session, Verb::Subscribe, subscribe)
    }

    /// Catches up the confirmed channels, which makes them live. On failure (the command
    /// connection is down) they stay confirmed, their messages still dropped, and the next
    /// attempt reads everything after their newest entries all the same.
    fn catch_up_confirmed(
        &self,
        command: Option<&mut CommandLink>,
        session: &mut Session,
    ) -> Result<usize, RedisError> {
        if session.confirmed.is_empty() {
            return Ok(0);
        }
        let added = self.catch_up(command, &session.confirmed)?;
        self.confirmed_are_live(session);
        Ok(added)
    }

    /// The confirmed channels are caught up: their messages go to their mirrors from now on.
    fn confirmed_are_live(&self, session: &mut Session) {
        for name in session.confirmed.drain(..) {
            if let Some(topic) = session.topics.get_mut(&name) {
                if *topic == Topic::Confirmed {
                    *topic = Topic::Live;
                }
            }
        }
        self.counters.channels.store(session.subscribed_per_redis, Ordering::Relaxed);
    }

    /// Brings the mirrors of `names` up to date with their streams: loads the unloaded ones
    /// (`XREVRANGE ... COUNT 1`) and reads the others' streams past their newest entry. Called
    /// by the supervisor after their `SUBSCRIBE` is confirmed and before any later pub/sub
    /// message of theirs is applied: whatever was published before the subscription arrives
    /// from the stream, everything after from pub/sub, and an entry that comes both ways is
    /// skipped by position. Pub/sub messages of a channel heard before its catch-up are
    /// dropped (its topic is not live): Redis sent them before it ran the catch-up's read, so
    /// the read has them. Returns the number of messages added.
    fn catch_up(&self, mut command: Option<&mut CommandLink>, names: &[Arc<str>]) -> Result<usize, RedisError> {
        // On a cluster the catch-up goes through the router: `command` is `None`.
        if let Some(command) = command.as_deref_mut() {
            if command.link.is_none() && !self.reconnect(command) {
                return Err(RedisError::NotConnected);
            }
        }
        let mirrors: Vec<(Arc<str>, Arc<Mutex<Mirror>>)> = {
            let channels = lock(&self.channels);
            names.iter().filter_map(|name| channels.get(name).map(|mirror| (name.clone(), mirror.clone()))).collect()
        };
        let mut added = 0;
        for group in mirrors.chunks(CATCH_UP_PIPELINE) {
            let mut commands = Vec::with_capacity(group.len());
            // Whether each mirror was asked for its load (else for the entries after its newest).
            let mut asked_to_load = Vec::with_capacity(group.len());
            for (name, mirror) in group {
                let mirror = lock(mirror);
                let (key, mut out) = (self.keys.stream(name), Vec::new());
                asked_to_load.push(mirror.loaded.is_none());
                match mirror.loaded {
                    None => newest_command(&mut out, &self.keys, name),
                    Some(_) => range_command(&mut out, &key, mirror.newest, CATCH_UP_PAGE),
                }
                commands.push((key, out));
            }
            let replies = self.exchange(command.as_deref_mut(), commands)?;
            for (((name, mirror), reply), asked_to_load) in group.iter().zip(replies).zip(asked_to_load) {
                let result = if asked_to_load {
                    parse_newest(&reply).map(|newest| lock(mirror).load(newest))
                } else {
                    self.page_through(command.as_deref_mut(), name, mirror, &reply).map(|n| added += n)
                };
                if let Err(error) = result {
                    // A stream of the wrong type, say: that channel cannot be served from
                    // memory (its readers read the stream), others can.
                    if error.breaks_connection() {
                        return Err(error);
                    }
                    crate::warn!("redis: cannot catch up a channel"; channel = &**name, error = error.to_string());
                }
            }
        }
        // Wake their readers: a loaded mirror answers them now, and reads that failed while
        // Redis was away are tried again.
        for (_, mirror) in &mirrors {
            lock(mirror).subscribers.wake_all();
        }
        Ok(added)
    }

    /// Adds a catch-up page to a mirror, and reads on while pages come back full.
    fn page_through(
        &self,
        mut command: Option<&mut CommandLink>,
        name: &str,
        mirror: &Mutex<Mirror>,
        first_page: &Value,
    ) -> Result<usize, RedisError> {
        let mut page = parse_entries(first_page)?;
        let mut added = 0;
        loop {
            let full = page.len() == CATCH_UP_PAGE;
            let newest = {
                let mut mirror = lock(mirror);
                for message in page {
                    added += usize::from(mirror.accept(message, self.limits.history) == Accepted::New);
                }
                mirror.newest
            };
            if !full {
                return Ok(added);
            }
            let (key, mut out) = (self.keys.stream(name), Vec::new());
            range_command(&mut out, &key, newest, CATCH_UP_PAGE);
            let replies = self.exchange(command.as_deref_mut(), vec![(key, out)])?;
            page = parse_entries(replies.first().ok_or(RedisError::Unexpected("no reply"))?)?;
        }
    }

    /// Takes the subscription's values and the workers' wishes until the subscription fails
    /// or the broker stops; between them, tends the command connection, pings a silent Redis,
    /// catches up what was confirmed and ends the subscriptions that have lingered.
    fn listen(self: &Arc<Self>, session: &mut Session, events: &Receiver<Event>) -> RedisError {
        let mut next_sweep = Instant::now();
        let mut next_refresh = next_sweep;
        let mut refresh_anyway = next_sweep + TOPOLOGY_REFRESH_EVERY;
        loop {
            if self.is_stopping() {
                return RedisError::Closed;
            }
            let event = events.recv_timeout(TICK);
            let now = Instant::now();
            match event {
                Ok(Event::Push(connection, value)) => {
                    // What a connection given up (`lose_shard`) still had queued is ignored.
                    let up = |shard: &Shard| shard.connection == connection && shard.writer.is_some();
                    if let Some(shard) = session.shards.iter().position(up) {
                        let heard = &mut session.shards[shard];
                        heard.last_heard = now;
                        heard.pinged = false;
                        heard.backoff.reset();
                        if let Err(error) = self.on_push(session, shard, &value) {
                            return error;
                        }
                    }
                }
                Ok(Event::Lost(connection, error)) => {
                    if let Some(shard) = session.shards.iter().position(|shard| shard.connection == connection) {
                        if self.cluster.is_none() {
                            return error;
                        }
                        self.lose_shard(session, shard, &error, now);
                    }
                }
                Ok(Event::Connected(connection, result)) => {
                    if let Err(error) = self.connected(session, connection, result, now) {
                        return error;
                    }
                }
                Ok(Event::Topology(Ok(topology))) => {
                    if let Err(error) = self.follow_topology(session, topology, now) {
                        return error;
                    }
                }
                // No node could tell: asked again at the next turn that wants a table.
                Ok(Event::Topology(Err(_))) => {}
                // A wake-up (looked at below), or news from a connection already replaced.
                Ok(Event::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return RedisError::Closed,
            }
            if let Err(error) = self.grant_wishes(session) {
                return error;
            }
            // Once every confirmation asked for is in, so that one round of reads serves them
            // all; their messages meanwhile are dropped and read from the stream.
            let may_try = self.cluster.is_some() || self.command_may_try(now);
            if session.awaiting == 0 && !session.confirmed.is_empty() && may_try {
                let _ = self.catch_up_confirmed(self.catch_up_connection().as_deref_mut(), session);
            }
            if now >= next_sweep {
                match self.sweep(session, now) {
                    Ok(next) => next_sweep = next,
                    Err(error) => return error,
                }
            }
            let asked_for = now >= next_refresh && (self.lanes.wants_refresh() || !session.moved.is_empty());
            let asking = self.asking_topology.load(Ordering::SeqCst);
            if self.cluster.is_some() && !asking && (asked_for || now >= refresh_anyway) {
                // A redirection, a master whose lanes went down, a channel whose slot moved,
                // or time: the table is asked again, and the channels that moved are
                // subscribed again where they went once it comes (`Event::Topology`).
                next_refresh = now + TOPOLOGY_REFRESH_MIN;
                refresh_anyway = now + TOPOLOGY_REFRESH_EVERY;
                self.ask_topology();
            }
            self.tend_command_connection(now);
            for index in 0..session.shards.len() {
                if let Err(error) = session.shards[index].watch(now) {
                    if self.cluster.is_none() {
                        return error;
                    }
                    self.lose_shard(session, index, &error, now);
                }
            }
            self.reconnect_shards(session, now);
        }
    }

    /// Asks for the slot table ([`Shared::refresh_topology`]) on a thread of its own, which
    /// reports it to the supervisor's queue ([`Event::Topology`]). The node asked may be the
    /// one that hangs (a master stopped, or its host gone, is what makes a table wanted): its
    /// answer is waited for up to the command connection's timeout (two seconds) before the
    /// next node is asked, and the supervisor goes on delivering the other masters' messages
    /// meanwhile.
    fn ask_topology(self: &Arc<Self>) {
        self.asking_topology.store(true, Ordering::SeqCst);
        let shared = self.clone();
        let asked = thread::Builder::new().name("realtime-redis-slots".into()).spawn(move || {
            let table = shared.refresh_topology();
            shared.asking_topology.store(false, Ordering::SeqCst);
            let _ = shared.events.send(Event::Topology(table));
        });
        if asked.is_err() {
            // Asked again at the next turn that wants a table.
            self.asking_topology.store(false, Ordering::SeqCst);
        }
    }

    /// Takes a new slot table: each channel whose slot it gives to another master is
    /// subscribed again on that master's connection (and, once confirmed, caught up from its
    /// mirror's newest entry, like any new subscription), and every other channel is left as
    /// it is; so is a channel Redis let go of ([`Session::moved`]), unless the table still
    /// gives it to the master that let it go: the node asked has not heard of the move yet,
    /// and the next table (a [`TOPOLOGY_REFRESH_MIN`] later) will say. After
    /// [`TOPOLOGY_REFRESH_EVERY`] of that the channel is subscribed where the table says: if
    /// that master no longer serves it, it answers `MOVED`, and the channel waits for the
    /// next table again ([`Shared::redirected`]). A channel whose master's connection is down waits in
    /// [`Session::moved`] the same way ([`Shared::lose_shard`]), and a table whose masters
    /// changed has its connections made first ([`Shared::follow_masters`]).
    fn follow_topology(&self, session: &mut Session, topology: Topology, now: Instant) -> Result<(), RedisError> {
        let Some(old) = session.topology.take() else { return Ok(()) };
        if old.masters != topology.masters {
            self.follow_masters(session, &old, &topology, now);
        }
        // A slot the table gives to nobody (the cluster is down for it) keeps its channel
        // where it was until a table names a master for it.
        let owner_changed = |name: &str| {
            let slot = key_slot(self.keys.topic(name).as_bytes());
            topology.owner(slot).is_some_and(|owner| old.owner(slot) != Some(owner))
        };
        let mut again: Vec<Arc<str>> = session
            .topics
            .iter()
            .filter(|&(name, &topic)| topic != Topic::Unsubscribing && owner_changed(name))
            .map(|(name, _)| name.clone())
            .collect();
        session.topology = Some(topology);
        // A channel may have been set aside twice (wished again while its master was down):
        // it is kept, and subscribed, once.
        let mut seen = std::collections::HashSet::new();
        for moved in std::mem::take(&mut session.moved) {
            if session.topics.contains_key(&moved.name) || !seen.insert(moved.name.clone()) {
                // Subscribed again meanwhile (wished by a new mirror, or moved above), or a
                // second entry for it.
                continue;
            }
            let now_on = self.shard_of(session, &moved.name).ok().and_then(|shard| session.master(shard));
            let not_heard_of_yet = now_on == moved.let_go_by && now < moved.at + TOPOLOGY_REFRESH_EVERY;
            if now_on.is_none() || not_heard_of_yet {
                session.moved.push(moved);
            } else {
                again.push(moved.name);
            }
        }
        // Only channels still mirrored: a forgotten one needs no subscription.
        again.retain(|name| lock(&self.channels).contains_key(name));
        if !again.is_empty() {
            crate::info!("redis: slots moved; subscribing their channels on their new masters"; channels = again.len());
        }
        self.send_subscriptions(session, Verb::Subscribe, again)
    }

    /// The table's masters are not the session's (a replica promoted, a master added or
    /// removed): the connections to masters that stay are kept, with their subscriptions; a
    /// new master gets a connection, opened in the background ([`Shared::reconnect_shards`]);
    /// one no longer a master is closed, and its channels are set aside ([`Session::moved`])
    /// for [`Shared::follow_topology`] to subscribe where the new table puts them.
    fn follow_masters(&self, session: &mut Session, old: &Topology, new: &Topology, now: Instant) {
        let mut former: Vec<Option<Shard>> = std::mem::take(&mut session.shards).into_iter().map(Some).collect();
        for master in &new.masters {
            let kept = old.masters.iter().position(|m| m == master).and_then(|index| former[index].take());
            let shard = kept.unwrap_or_else(|| Shard::down(self.next_connection.fetch_add(1, Ordering::Relaxed)));
            session.shards.push(shard);
        }
        for gone in former.into_iter().flatten() {
            session.awaiting = session.awaiting.saturating_sub(gone.awaiting);
        }
        session.subscribed_per_redis = session.shards.iter().map(|shard| shard.subscribed).sum();
        let mut orphaned = Vec::new();
        session.topics.retain(|name, topic| {
            let slot = key_slot(self.keys.topic(name).as_bytes());
            let Some(master) = old.owner(slot).filter(|master| !new.masters.contains(master)) else { return true };
            if *topic != Topic::Unsubscribing {
                orphaned.push(Moved { name: name.clone(), let_go_by: Some(master.clone()), at: now });
            }
            false
        });
        session.moved.extend(orphaned);
        session.confirmed.retain(|name| session.topics.contains_key(name));
        crate::info!("redis: the cluster's masters changed"; masters = new.masters.len());
    }

    /// A value on the subscription: `["message", channel, payload]`, a confirmation
    /// (`["subscribe", channel, count]`, `["unsubscribe", channel, count]`, where `count` is
    /// how many channels the connection is subscribed to), or the answer to a `PING`. An error
    /// (a `SUBSCRIBE` refused, say by an ACL) ends the connection: it is tried again with
    /// backoff, and logged; on a cluster a redirection is not such an error
    /// ([`Shared::redirected`]).
    ///
    /// On a cluster the same come as `smessage`, `ssubscribe` and `sunsubscribe`, and a
    /// `sunsubscribe` nobody asked for is Redis saying the channel's slot moved to another
    /// master ("when a slot is migrated ... the client is unsubscribed", SSUBSCRIBE docs): the
    /// channel is set aside ([`Session::moved`]) and subscribed on its new master once a slot
    /// table says which ([`Shared::follow_topology`]), then caught up from its mirror's newest
    /// entry. When the table came first, the channel is already subscribed on its new master,
    /// and the old master's `sunsubscribe`, from a connection that is no longer the channel's,
    /// is ignored.
    fn on_push(&self, session: &mut Session, shard: usize, value: &Value) -> Result<(), RedisError> {
        if let Value::Error(message) = value {
            let redirect = session.master(shard).and_then(|answered_by| Redirect::parse(message, &answered_by));
            if let Some(Redirect::Moved { slot, .. } | Redirect::Ask { slot, .. }) = redirect {
                self.redirected(session, shard, slot);
                return Ok(());
            }
            return Err(RedisError::Reply(message.clone()));
        }
        let Some([kind, topic, third]) = value.as_array() else { return Ok(()) };
        let Some(name) = topic.as_bytes().and_then(|topic| self.keys.channel_of(topic)) else { return Ok(()) };
        let mut counted = |count: &Value| {
            if let (Some(count), Some(counted)) = (count.as_integer(), session.shards.get_mut(shard)) {
                counted.subscribed = usize::try_from(count).unwrap_or(0);
            }
            session.subscribed_per_redis = session.shards.iter().map(|shard| shard.subscribed).sum();
        };
        match kind.as_bytes() {
            Some(b"message" | b"smessage") => {
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
                if session.topics.get(name) == Some(&Topic::Live) {
                    if let Some(payload) = third.as_bytes() {
                        self.deliver(name, payload);
                    }
                }
            }
            Some(b"subscribe" | b"ssubscribe") => {
                counted(third);
                self.counters.subscribes.fetch_add(1, Ordering::Relaxed);
                session.awaiting = session.awaiting.saturating_sub(1);
                if let Some(shard) = session.shards.get_mut(shard) {
                    shard.awaiting = shard.awaiting.saturating_sub(1);
                }
                if let Some(topic) = session.topics.get_mut(name) {
                    if *topic == Topic::Subscribing {
                        *topic = Topic::Confirmed;
                        session.confirmed.push(name.into());
                    }
                }
                if session.confirmed.is_empty() {
                    self.counters.channels.store(session.subscribed_per_redis, Ordering::Relaxed);
                }
            }
            Some(b"unsubscribe" | b"sunsubscribe") => {
                counted(third);
                // Asked for or not (a moved slot), the connection no longer has the channel.
                self.counters.unsubscribes.fetch_add(1, Ordering::Relaxed);
                let topic = session.topics.get(name).copied();
                let from_its_master = self.shard_of(session, name).map_or(true, |on| on == shard);
                if topic != Some(Topic::Unsubscribing) && !from_its_master {
                    // The old master letting go of a channel since subscribed on its new one.
                    return Ok(());
                }
                if matches!(topic, Some(Topic::Live | Topic::Confirmed)) {
                    if self.cluster.is_none() {
                        return Err(RedisError::Unexpected("Redis unsubscribed a channel nobody asked to"));
                    }
                    // Its slot moved: subscribed again on its new master at the next table.
                    session.topics.remove(name);
                    let let_go_by = session.master(shard);
                    session.moved.push(Moved { name: name.into(), let_go_by, at: Instant::now() });
                    return Ok(());
                }
                // Subscribing again meanwhile: that subscription's confirmation is still to come.
                if session.topics.get(name) == Some(&Topic::Unsubscribing) {
                    session.topics.remove(name);
                }
                if session.confirmed.is_empty() {
                    self.counters.channels.store(session.subscribed_per_redis, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A master answered an `SSUBSCRIBE` of shard `shard` with a redirection (`MOVED` or
    /// `ASK` for `slot`) instead of its confirmation: the table it was sent by was stale (a
    /// node that had not heard of a slot's move yet, asked after one that had), or the slot
    /// is migrating. The channel is set aside like one Redis let go of ([`Session::moved`]),
    /// to be subscribed where the next tables say; the other subscriptions are not touched.
    fn redirected(&self, session: &mut Session, shard: usize, slot: u16) {
        session.awaiting = session.awaiting.saturating_sub(1);
        if let Some(refused) = session.shards.get_mut(shard) {
            refused.awaiting = refused.awaiting.saturating_sub(1);
        }
        let refused = session.topics.iter().find(|&(name, &topic)| {
            topic == Topic::Subscribing
                && key_slot(self.keys.topic(name).as_bytes()) == slot
                && self.shard_of(session, name).is_ok_and(|on| on == shard)
        });
        let Some(name) = refused.map(|(name, _)| name.clone()) else { return };
        crate::info!("redis: a master redirected a subscription; asking for the slot table"; channel = &*name);
        session.topics.remove(&name);
        let let_go_by = session.master(shard);
        session.moved.push(Moved { name, let_go_by, at: Instant::now() });
    }

    /// A message from pub/sub for a live channel: into its mirror, which
    /// wakes the subscribers. A channel without a mirror (evicted; its subscription ends at the
    /// next sweep) drops it: the stream has it.
    fn deliver(&self, name: &str, payload: &[u8]) {
        let Some(message) = parse_payload(payload) else {
            crate::warn!("redis: ignoring a malformed message"; channel = name);
            return;
        };
        let Some(mirror) = lock(&self.channels).get(name).cloned() else { return };
        let id = message.id.clone();
        if lock(&mirror).accept(message, self.limits.history) != Accepted::OutOfOrder {
            return;
        }
        crate::warn!(
            "redis: a channel went backwards (a failover or a restart lost entries); its readers past them get a gap";
            channel = name,
            id = &*id,
        );
        lock(&mirror).rewind();
        // Loaded again from the stream at once; if that fails its readers read the stream
        // until the next catch-up.
        if let Err(error) = self.catch_up(self.catch_up_connection().as_deref_mut(), &[name.into()]) {
            crate::warn!("redis: cannot reload a channel that went backwards"; channel = name, error = error.to_string());
        }
    }

    /// Whether a command may be tried on the supervisor's connection now: it is up, or its
    /// backoff allows a reconnection (so that a catch-up waiting for it does not hammer Redis).
    fn command_may_try(&self, now: Instant) -> bool {
        try_lock(&self.command).is_some_and(|command| command.link.is_some() || now >= command.next_attempt)
    }

    /// The connection a catch-up runs on: on one Redis the supervisor's command connection; on
    /// a cluster none, for catch-ups go through the router there, and the command connection
    /// may be busy for seconds asking a hung node for the slot table ([`Shared::ask_topology`]).
    fn catch_up_connection(&self) -> Option<MutexGuard<'_, CommandLink>> {
        self.cluster.is_none().then(|| lock(&self.command))
    }

    /// Reopens a broken command connection when the backoff allows.
    fn tend_command_connection(&self, now: Instant) {
        let Some(mut command) = try_lock(&self.command) else { return };
        if command.link.is_none() && now >= command.next_attempt {
            self.reconnect(&mut command);
        }
    }

    /// Waits for `wait`, or less if the broker stops; events of connections gone are dropped.
    fn pause(&self, wait: Duration, events: &Receiver<Event>) {
        let until = Instant::now() + wait;
        while !self.is_stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let _ = events.recv_timeout(left.min(TICK));
        }
    }
}

/// `SUBSCRIBE` or `UNSUBSCRIBE`.
#[derive(Clone, Copy)]
pub(super) enum Verb {
    Subscribe,
    Unsubscribe,
}

impl Verb {
    /// The command; `sharded` for a cluster's shard channels (`SSUBSCRIBE`, `SUNSUBSCRIBE`).
    fn command(self, sharded: bool) -> &'static [u8] {
        match (self, sharded) {
            (Verb::Subscribe, false) => b"SUBSCRIBE",
            (Verb::Unsubscribe, false) => b"UNSUBSCRIBE",
            (Verb::Subscribe, true) => b"SSUBSCRIBE",
            (Verb::Unsubscribe, true) => b"SUNSUBSCRIBE",
        }
    }
}

/// The subscription connection's reader thread: every value Redis sends, queued in order for
/// the supervisor, until the connection fails or the supervisor shuts it down (then it says
/// so, and ends). A full queue makes it wait (see [`super::EVENT_QUEUE`]).
pub(super) fn read_subscription(mut link: Link, connection: u64, events: SyncSender<Event>) {
    loop {
        let event = match link.receive() {
            Ok(value) => Event::Push(connection, value),
            Err(error) => {
                let _ = events.send(Event::Lost(connection, error));
                return;
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// The supervisor thread: subscribe, catch up, listen; on failure back off and start again.
pub(super) fn supervise(shared: Arc<Shared>, events: Receiver<Event>, first_attempt: mpsc::Sender<()>) {
    let mut first_attempt = Some(first_attempt);
    let mut backoff = Backoff::new();
    // Since when the subscription is down, and how many attempts failed since.
    let mut outage: Option<(Instant, u32)> = None;
    while !shared.is_stopping() {
        match shared.open_subscription() {
            Ok((mut session, caught_up)) => {
                // Before `start` is told: a node that starts with Redis up is ready at once.
                shared.subscribed.store(true, Ordering::SeqCst);
                if let Some((since, attempts)) = outage.take() {
                    crate::info!(
                        "redis: subscribed again, caught up from the streams";
                        down_ms = since.elapsed().as_millis() as u64,
                        failed_attempts = attempts,
                        caught_up = caught_up,
                    );
                }
                backoff.reset();
                if let Some(ready) = first_attempt.take() {
                    let _ = ready.send(());
                }
                let error = shared.listen(&mut session, &events);
                shared.subscribed.store(false, Ordering::SeqCst);
                shared.end_session(session);
                if shared.is_stopping() {
                    break;
                }
                crate::warn!("redis: subscription lost; reconnecting"; error = error.to_string());
                outage = Some((Instant::now(), 0));
            }
            Err(error) => {
                shared.counters.channels.store(0, Ordering::Relaxed);
                let (_, attempts) = outage.get_or_insert_with(|| {
                    crate::warn!(
                        "redis: cannot subscribe; retrying with backoff";
                        url = shared.url.to_string(),
                        error = error.to_string(),
                        max_backoff_ms = BACKOFF_MAX.as_millis() as u64,
                    );
                    (Instant::now(), 0)
                });
                *attempts += 1;
                if let Some(ready) = first_attempt.take() {
                    let _ = ready.send(());
                }
            }
        }
        shared.pause(backoff.next(), &events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::cluster::tests::slot_table;
    use crate::broker::redis::pipeline::Pipeline;
    use crate::broker::redis::router::Router;
    use crate::broker::redis::tests::{at, id, texts};
    use crate::broker::redis::{resp, ClusterUrl, Limits, CLUSTER_PUBLISH_SCRIPT, DEFAULT_PORT, DEFAULT_REDIS_TIMEOUT};
    use crate::wake::WakeQueue;
    use std::io::Read;
    use std::sync::atomic::AtomicU64;

    /// A broker's shared state with no connection to Redis: enough for the mirror table.
    fn offline(limits: Limits) -> Shared {
        let url = RedisUrl { host: "127.0.0.1".into(), port: DEFAULT_PORT, db: 0, user: None, password: None };
        // Nobody takes the queue: a wake-up finds it closed, which a stopping broker's does.
        let events = mpsc::sync_channel(1).0;
        Shared::new(url, limits, None, Lanes::Single(Pipeline::offline()), DEFAULT_REDIS_TIMEOUT, events)
    }

    /// A session whose commands go to a socket the test reads (`Peer`), standing in for Redis.
    fn session() -> (Session, Peer) {
        let (session, mut peers) = session_with_shards(1);
        (session, peers.remove(0))
    }

    /// A session with `shards` subscription connections (one per master of a cluster), each
    /// writing to its own `Peer`, in shard order.
    fn session_with_shards(shards: usize) -> (Session, Vec<Peer>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writers = Vec::with_capacity(shards);
        let mut peers = Vec::with_capacity(shards);
        for connection in 0..shards {
            // Numbered apart from the connections a `Shared` opens and numbers.
            let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            writers.push(Shard::new(u64::MAX - connection as u64, Some(stream)));
            let (peer, _) = listener.accept().unwrap();
            peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            peers.push(Peer { stream: peer, input: Vec::new() });
        }
        let session = Session {
            shards: writers,
            topology: None,
            topics: HashMap::new(),
            confirmed: Vec::new(),
            moved: Vec::new(),
            awaiting: 0,
            subscribed_per_redis: 0,
        };
        (session, peers)
    }

    /// What Redis would read of the subscription connection.
    struct Peer {
        stream: TcpStream,
        input: Vec<u8>,
    }

    impl Peer {
        /// The commands sent so far, each as its words (waits briefly for them to arrive).
        fn commands(&mut self) -> Vec<Vec<String>> {
            let mut chunk = [0u8; 65536];
            while let Ok(read) = self.stream.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                self.input.extend_from_slice(&chunk[..read]);
            }
            let mut commands = Vec::new();
            while let Ok(Some((value, used))) = resp::decode(&self.input, &resp::Limits::default()) {
                let words = value.as_array().unwrap_or_default().iter();
                commands.push(words.map(|w| String::from_utf8_lossy(w.as_bytes().unwrap()).into_owned()).collect());
                self.input.drain(..used);
            }
            commands
        }
    }

    /// A push as Redis sends it on a subscribed connection.
    fn push(kind: &str, topic: &str, third: Value) -> Value {
        let bulk = |s: &str| Value::Bulk(Some(s.as_bytes().to_vec()));
        Value::Array(Some(vec![bulk(kind), bulk(topic), third]))
    }

    fn payload(text: &str) -> Value {
        Value::Bulk(Some(text.as_bytes().to_vec()))
    }

    fn names(shared: &Shared) -> Vec<String> {
        let mut names: Vec<String> = lock(&shared.channels).keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_channel_is_subscribed_when_its_first_subscriber_arrives_and_unsubscribed_after_the_linger() {
        let shared = offline(Limits::default());
        let (mut session, mut redis) = session();
        let wake = WakeQueue::silent().wake_for(0);
        let (name, made) = shared.add_subscriber("news", 1, &wake, at(0));
        assert!(made, "the first subscriber makes the mirror");
        let (shared_name, made) = shared.add_subscriber("news", 2, &wake, at(0));
        assert!(!made, "the second finds it");
        assert!(Arc::ptr_eq(&name, &shared_name), "and the name it keeps: one copy per channel");
        shared.grant_wishes(&mut session).unwrap();
        shared.grant_wishes(&mut session).unwrap();
        assert_eq!(redis.commands(), [["SUBSCRIBE", "realtime:0:news"]], "once, by the supervisor");
        assert_eq!((session.topics.get("news"), session.awaiting), (Some(&Topic::Subscribing), 1));
        shared.on_push(&mut session, 0, &push("subscribe", "realtime:0:news", Value::Integer(1))).unwrap();
        assert_eq!((session.topics.get("news"), session.awaiting), (Some(&Topic::Confirmed), 0));
        assert_eq!(session.confirmed, [Arc::from("news")], "to be caught up");
        assert_eq!(shared.counters.channels.load(Ordering::Relaxed), 0, "not shown before it is caught up");
        // What the catch-up does, without Redis: load the mirror, make the topic live.
        lock(&lock(&shared.channels)["news"]).load(id("5-0"));
        shared.confirmed_are_live(&mut session);
        assert_eq!(session.topics.get("news"), Some(&Topic::Live));
        assert_eq!(shared.counters.channels.load(Ordering::Relaxed), 1, "Redis's count");

        // Both leave at 10 s; one comes back within the linger: nothing is sent.
        let mirror = |shared: &Shared| lock(&shared.channels).get("news").cloned().unwrap();
        for subscriber in [1, 2] {
            let mirror = mirror(&shared);
            let mut mirror = lock(&mirror);
            mirror.subscribers.remove(subscriber);
            mirror.idle_since = at(10);
        }
        assert!(!shared.add_subscriber("news", 3, &wake, at(12)).1, "the lingering mirror is found");
        shared.grant_wishes(&mut session).unwrap();
        shared.sweep(&mut session, at(100)).unwrap();
        assert!(redis.commands().is_empty(), "no churn for a subscriber that came back");

        // It leaves at 20 s: subscribed until 25 s, then unsubscribed and forgotten.
        lock(&mirror(&shared)).subscribers.remove(3);
        lock(&mirror(&shared)).idle_since = at(20);
        let next = shared.sweep(&mut session, at(24)).unwrap();
        assert_eq!(next, at(25), "the next sweep is due when the linger ends");
        assert_eq!(names(&shared), ["news"]);
        shared.sweep(&mut session, at(25)).unwrap();
        assert_eq!(redis.commands(), [["UNSUBSCRIBE", "realtime:0:news"]]);
        assert!(names(&shared).is_empty(), "forgotten: a mirror nothing feeds is not live");
        assert_eq!(session.topics.get("news"), Some(&Topic::Unsubscribing));
        shared.on_push(&mut session, 0, &push("unsubscribe", "realtime:0:news", Value::Integer(0))).unwrap();
        assert_eq!(session.topics.get("news"), None);
        assert_eq!(shared.counters.channels.load(Ordering::Relaxed), 0);
        let counters = &shared.counters;
        assert_eq!(
            (counters.subscribes.load(Ordering::Relaxed), counters.unsubscribes.load(Ordering::Relaxed)),
            (1, 1)
        );
    }

    #[test]
    fn a_subscriber_arriving_while_its_channel_is_being_unsubscribed_subscribes_it_again() {
        let shared = offline(Limits::default());
        let (mut session, mut redis) = session();
        let wake = WakeQueue::silent().wake_for(0);
        session.topics.insert("news".into(), Topic::Unsubscribing);
        shared.add_subscriber("news", 1, &wake, at(0));
        shared.grant_wishes(&mut session).unwrap();
        assert_eq!(redis.commands(), [["SUBSCRIBE", "realtime:0:news"]]);
        // Redis answers the UNSUBSCRIBE first: the subscription that follows stands.
        shared.on_push(&mut session, 0, &push("unsubscribe", "realtime:0:news", Value::Integer(0))).unwrap();
        assert_eq!(session.topics.get("news"), Some(&Topic::Subscribing));
        shared.on_push(&mut session, 0, &push("subscribe", "realtime:0:news", Value::Integer(1))).unwrap();
        assert_eq!(session.topics.get("news"), Some(&Topic::Confirmed));
    }

    #[test]
    fn pubsub_messages_reach_a_mirror_only_once_its_channel_is_caught_up() {
        let shared = offline(Limits::default());
        let (mut session, _redis) = session();
        let wake = WakeQueue::silent().wake_for(0);
        shared.add_subscriber("news", 1, &wake, at(0));
        lock(&lock(&shared.channels)["news"]).load(id("1-0"));
        let message = |n: u64| push("message", "realtime:0:news", payload(&format!("{n}-0 m{n}")));
        for topic in [Topic::Subscribing, Topic::Confirmed, Topic::Unsubscribing] {
            session.topics.insert("news".into(), topic);
            shared.on_push(&mut session, 0, &message(2)).unwrap();
        }
        let mirror = lock(&shared.channels)["news"].clone();
        assert_eq!(lock(&mirror).newest, id("1-0"), "dropped: the catch-up, which runs later, reads them");
        session.topics.insert("news".into(), Topic::Live);
        shared.on_push(&mut session, 0, &message(3)).unwrap();
        assert_eq!(texts(&lock(&mirror).read(id("1-0"), 10).unwrap()), ["m3"]);
        // A channel this node never subscribed, and one whose mirror is gone, make no mirror.
        shared.on_push(&mut session, 0, &push("message", "realtime:0:other", payload("4-0 x"))).unwrap();
        assert_eq!(names(&shared), ["news"]);
        assert_eq!(shared.counters.messages.load(Ordering::Relaxed), 5, "every message received is counted");
    }

    #[test]
    fn subscriptions_go_out_in_commands_of_at_most_a_thousand_channels() {
        let shared = offline(Limits::default());
        let (mut session, mut redis) = session();
        let names: Vec<Arc<str>> = (0..2500).map(|n| format!("c{n}").into()).collect();
        shared.send_subscriptions(&mut session, Verb::Subscribe, names).unwrap();
        let sizes: Vec<usize> = redis.commands().iter().map(|command| command.len() - 1).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(session.awaiting, 2500);
    }

    #[test]
    fn a_mirror_evicted_for_room_has_its_subscription_ended_by_the_next_sweep() {
        let shared = offline(Limits { max_channels: 1, ..Limits::default() });
        let (mut session, mut redis) = session();
        let wake = WakeQueue::silent().wake_for(0);
        shared.add_subscriber("old", 1, &wake, at(0));
        session.topics.insert("old".into(), Topic::Live);
        lock(&lock(&shared.channels)["old"]).subscribers.remove(1);
        shared.add_subscriber("new", 2, &wake, at(1));
        assert_eq!(names(&shared), ["new"], "the idle one made room");
        let _ = redis.commands();
        shared.sweep(&mut session, at(1)).unwrap();
        assert_eq!(redis.commands(), [["UNSUBSCRIBE", "realtime:0:old"]]);
    }

    /// A cluster broker's shared state with no connection to Redis: its router has no lanes
    /// until it is given a table, which these tests never do.
    fn offline_cluster(limits: Limits) -> Shared {
        offline_cluster_with_queue(limits).0
    }

    /// [`offline_cluster`] and the supervisor's queue, for a test that plays the supervisor.
    fn offline_cluster_with_queue(limits: Limits) -> (Shared, Receiver<Event>) {
        let cluster = ClusterUrl::parse("redis-cluster://127.0.0.1:7001").unwrap();
        let url = cluster.node(&cluster.seeds[0]);
        let router = Router::new(cluster.clone(), CLUSTER_PUBLISH_SCRIPT, 1, DEFAULT_REDIS_TIMEOUT, Arc::new(|| {}));
        let (events, queue) = mpsc::sync_channel(16);
        let shared =
            Shared::new(url, limits, Some(cluster), Lanes::Cluster(Arc::new(router)), DEFAULT_REDIS_TIMEOUT, events);
        (shared, queue)
    }

    /// A cluster node played by a socket, at 127.0.0.1 on its port: it answers a connection's
    /// opening (`SELECT`, `TIME`, `SCRIPT LOAD`), `CLUSTER SLOTS` with a table that gives
    /// slots 0-8191 to a master at 127.0.0.2 and the rest to "the node you asked" (an empty
    /// host, with its own port), and `CLUSTER NODES` with nothing.
    fn cluster_node_that_calls_itself_the_node_you_asked() -> u16 {
        fake_redis(|port| {
            let table = format!(
                "*2\r\n*3\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.2\r\n:7002\r\n$1\r\nb\r\n\
                 *3\r\n:8192\r\n:16383\r\n*3\r\n$0\r\n\r\n:{port}\r\n$1\r\na\r\n"
            );
            move |words: &[String]| {
                Some(match words[0].as_str() {
                    "SCRIPT" => format!("$40\r\n{}\r\n", "0".repeat(40)),
                    "CLUSTER" if words.get(1).is_some_and(|w| w == "SLOTS") => table.clone(),
                    "CLUSTER" => "$0\r\n\r\n".to_string(),
                    _ => "+OK\r\n".to_string(),
                })
            }
        })
    }

    /// A Redis on a port of its own that answers `TIME`, and every other command as the
    /// answerer that `connection(port)` makes for each connection says, closing the
    /// connection where it says `None`.
    fn fake_redis<A: FnMut(&[String]) -> Option<String> + Send + 'static>(
        connection: impl Fn(u16) -> A + Send + 'static,
    ) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut answer = connection(port);
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
                    let mut peer = Peer { stream, input: Vec::new() };
                    loop {
                        for words in peer.commands() {
                            let reply = match words.first().map(String::as_str) {
                                Some("TIME") => "*2\r\n$10\r\n1700000000\r\n$1\r\n0\r\n".to_string(),
                                _ => match answer(&words) {
                                    Some(reply) => reply,
                                    None => return,
                                },
                            };
                            if peer.stream.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                        }
                        let mut probe = [0u8; 1];
                        if peer.stream.peek(&mut probe).is_ok_and(|n| n == 0) {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// A Redis that confirms every `SUBSCRIBE` and closes any connection that asks for more
    /// (a catch-up's first read): a session that fails while it opens, after confirmations.
    fn redis_that_drops_the_catch_up() -> u16 {
        fake_redis(|_| {
            let mut subscribed = 0;
            move |words: &[String]| match words[0].as_str() {
                "SELECT" => Some("+OK\r\n".to_string()),
                "SUBSCRIBE" => Some(
                    words[1..]
                        .iter()
                        .map(|topic| {
                            subscribed += 1;
                            format!("*3\r\n$9\r\nsubscribe\r\n${}\r\n{topic}\r\n:{subscribed}\r\n", topic.len())
                        })
                        .collect(),
                ),
                _ => None,
            }
        })
    }

    /// `/stats` `channel_unsubscribes` counts the subscriptions lost with their connection,
    /// also when the session fails before it is up: here Redis confirms two channels and the
    /// catch-up after the confirmations fails.
    #[test]
    fn subscriptions_confirmed_by_a_session_that_fails_while_it_opens_are_counted_as_ended() {
        let port = redis_that_drops_the_catch_up();
        let url = RedisUrl { host: "127.0.0.1".into(), port, db: 0, user: None, password: None };
        let events = mpsc::sync_channel(1).0;
        let lanes = Lanes::Single(Pipeline::offline());
        let shared = Shared::new(url, Limits::default(), None, lanes, DEFAULT_REDIS_TIMEOUT, events);
        let wake = WakeQueue::silent().wake_for(0);
        shared.add_subscriber("news", 1, &wake, at(0));
        shared.add_subscriber("sport", 2, &wake, at(0));
        assert!(shared.open_subscription().is_err(), "the catch-up failed");
        let counters = &shared.counters;
        let counted = (counters.subscribes.load(Ordering::Relaxed), counters.unsubscribes.load(Ordering::Relaxed));
        assert_eq!(counted, (2, 2), "both confirmed, both ended with the connection");
        assert_eq!(counters.channels.load(Ordering::Relaxed), 0);
    }

    /// `CLUSTER SLOTS` may name a master by an empty host: "the node you asked". That is the
    /// node the command connection was opened to, also once a table has listed other masters
    /// before it (where the connection would go next, were it opened again).
    #[test]
    fn the_node_you_asked_is_the_one_the_command_connection_was_opened_to() {
        let port = cluster_node_that_calls_itself_the_node_you_asked();
        let cluster = ClusterUrl::parse(&format!("redis-cluster://127.0.0.1:{port}")).unwrap();
        let router = Router::new(cluster.clone(), CLUSTER_PUBLISH_SCRIPT, 1, DEFAULT_REDIS_TIMEOUT, Arc::new(|| {}));
        let (events, _queue) = mpsc::sync_channel(16);
        let url = cluster.node(&cluster.seeds[0]);
        let lanes = Lanes::Cluster(Arc::new(router));
        let shared = Shared::new(url, Limits::default(), Some(cluster), lanes, DEFAULT_REDIS_TIMEOUT, events);
        let other = NodeAddr { host: "127.0.0.2".into(), port: 7002 };
        let asked = NodeAddr { host: "127.0.0.1".into(), port };
        for ask in ["first", "second"] {
            let table = shared.refresh_topology().expect("a table");
            assert_eq!(table.masters, [other.clone(), asked.clone()], "the {ask} table");
        }
    }

    /// A slot moving from master A to master B reaches the node two ways, in either order:
    /// the new slot table, and A's unrequested `sunsubscribe` of the channel. The cluster test
    /// (tests/redis_cluster.rs) covers the `sunsubscribe` coming first; this covers the table
    /// coming first: the channel is subscribed on B at once, and A's `sunsubscribe`, arriving
    /// after B's confirmation, must not undo that subscription nor queue another one.
    #[test]
    fn a_late_sunsubscribe_from_the_old_master_is_ignored_once_the_new_table_has_moved_the_channel() {
        let shared = offline_cluster(Limits::default());
        let (mut session, mut peers) = session_with_shards(2);
        let (a, b) = (0, 1);
        let slot = |name: &str| key_slot(shared.keys.topic(name).as_bytes());
        let (moving, stays_on_a, stays_on_b) = (slot("news"), slot("alerts"), slot("sports"));
        assert!(moving < 8192 && stays_on_a < 8192 && stays_on_a != moving && stays_on_b >= 8192);
        // A (port 7001) serves 0..=8191 and B (7002) the rest; then B takes the slot of "news".
        let before = slot_table(&[(0, 8191, 7001), (8192, 16383, 7002)]);
        let after =
            slot_table(&[(0, moving - 1, 7001), (moving + 1, 8191, 7001), (moving, moving, 7002), (8192, 16383, 7002)]);
        assert_eq!(before.masters, after.masters, "the same masters, in the same order");
        session.topology = Some(before);

        // All three subscribed on their masters, confirmed and caught up.
        let wake = WakeQueue::silent().wake_for(0);
        for (subscriber, name) in ["news", "alerts", "sports"].into_iter().enumerate() {
            shared.add_subscriber(name, subscriber as u64, &wake, at(0));
        }
        shared.grant_wishes(&mut session).unwrap();
        let mut on_a = peers[a].commands();
        on_a.sort();
        assert_eq!(on_a, [["SSUBSCRIBE", "realtime:{alerts}:live"], ["SSUBSCRIBE", "realtime:{news}:live"]]);
        assert_eq!(peers[b].commands(), [["SSUBSCRIBE", "realtime:{sports}:live"]]);
        shared.on_push(&mut session, a, &push("ssubscribe", "realtime:{news}:live", Value::Integer(1))).unwrap();
        shared.on_push(&mut session, a, &push("ssubscribe", "realtime:{alerts}:live", Value::Integer(2))).unwrap();
        shared.on_push(&mut session, b, &push("ssubscribe", "realtime:{sports}:live", Value::Integer(1))).unwrap();
        for name in ["news", "alerts", "sports"] {
            lock(&lock(&shared.channels)[name]).load(id("5-0"));
        }
        shared.confirmed_are_live(&mut session);
        assert!(session.topics.values().all(|&topic| topic == Topic::Live));

        // The new table first: "news" is subscribed on B, and nothing else is sent anywhere.
        shared.follow_topology(&mut session, after.clone(), at(1)).unwrap();
        assert_eq!(peers[b].commands(), [["SSUBSCRIBE", "realtime:{news}:live"]]);
        assert!(peers[a].commands().is_empty(), "A is not asked to let go: it does so itself");
        assert_eq!(session.topics.get("news"), Some(&Topic::Subscribing));
        assert_eq!(
            (session.topics.get("alerts"), session.topics.get("sports")),
            (Some(&Topic::Live), Some(&Topic::Live))
        );

        // B confirms; then, late, A lets go of the channel it no longer serves.
        shared.on_push(&mut session, b, &push("ssubscribe", "realtime:{news}:live", Value::Integer(2))).unwrap();
        assert_eq!(session.topics.get("news"), Some(&Topic::Confirmed));
        shared.on_push(&mut session, a, &push("sunsubscribe", "realtime:{news}:live", Value::Integer(1))).unwrap();
        assert_eq!(session.topics.get("news"), Some(&Topic::Confirmed), "B's subscription stands");
        assert!(session.moved.is_empty(), "nothing to subscribe again");
        assert_eq!(shared.counters.unsubscribes.load(Ordering::Relaxed), 1, "A's subscription ended all the same");
        assert_eq!(session.confirmed, [Arc::from("news")], "still to be caught up, once");
        // The next table sends nothing either: the channel is where it belongs.
        shared.follow_topology(&mut session, after, at(2)).unwrap();
        assert!(peers[a].commands().is_empty());
        assert!(peers[b].commands().is_empty());
    }

    /// A table that is older than the one before it (asked of a node that has not heard of
    /// a slot's move yet) sends a channel back to the master that let it go, which answers
    /// the `SSUBSCRIBE` with `MOVED`: the channel waits for the next table, and the session,
    /// with every other subscription, stands.
    #[test]
    fn an_ssubscribe_redirected_by_a_stale_table_waits_for_the_next_table() {
        let shared = offline_cluster(Limits::default());
        let (mut session, mut peers) = session_with_shards(2);
        let slot = key_slot(shared.keys.topic("news").as_bytes());
        assert!(slot < 8192);
        let stale = slot_table(&[(0, 8191, 7001), (8192, 16383, 7002)]);
        let fresh = slot_table(&[(0, slot - 1, 7001), (slot, slot, 7002), (slot + 1, 8191, 7001), (8192, 16383, 7002)]);
        session.topology = Some(stale);
        let wake = WakeQueue::silent().wake_for(0);
        shared.add_subscriber("news", 0, &wake, at(0));
        shared.grant_wishes(&mut session).unwrap();
        assert_eq!(peers[0].commands(), [["SSUBSCRIBE", "realtime:{news}:live"]]);

        let moved = Value::Error(format!("MOVED {slot} 127.0.0.1:7002"));
        shared.on_push(&mut session, 0, &moved).expect("a redirection does not end the session");
        assert_eq!(session.topics.get("news"), None);
        assert_eq!((session.awaiting, session.shards[0].awaiting), (0, 0), "its answer came");
        assert_eq!(session.moved.len(), 1, "set aside for the next table");

        shared.follow_topology(&mut session, fresh, at(1)).unwrap();
        assert_eq!(peers[1].commands(), [["SSUBSCRIBE", "realtime:{news}:live"]]);
        assert!(peers[0].commands().is_empty());
        assert_eq!(session.topics.get("news"), Some(&Topic::Subscribing));
    }

    /// A master's connection that is down is opened again on a thread of its own, which
    /// reports to the supervisor's queue (a master that drops packets would hold the
    /// supervisor for the connect timeout), and the channels that wait for that master are
    /// then subscribed on the new connection. Redis is played by a socket that answers the
    /// connection's `SELECT` and `TIME`.
    #[test]
    fn a_masters_connection_is_opened_in_the_background_and_takes_the_channels_that_wait_for_it() {
        let (shared, queue) = offline_cluster_with_queue(Limits::default());
        let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = fake.local_addr().unwrap().port();
        let (mut session, mut peers) = session_with_shards(2);
        assert!(key_slot(shared.keys.topic("alerts").as_bytes()) < 8192);
        session.topology = Some(slot_table(&[(0, 8191, port), (8192, 16383, 7002)]));
        let a = session.topology.as_ref().unwrap().masters.iter().position(|m| m.port == port).unwrap();
        let wake = WakeQueue::silent().wake_for(0);
        shared.add_subscriber("alerts", 0, &wake, at(0));
        shared.grant_wishes(&mut session).unwrap();
        assert_eq!(peers[a].commands(), [["SSUBSCRIBE", "realtime:{alerts}:live"]]);
        shared.lose_shard(&mut session, a, &RedisError::Closed, at(1));
        let lost_connection = session.shards[a].connection;
        // Wished again while its master is down (every mirror, after too many wishes): it
        // waits a second time, and is still subscribed once.
        lock(&shared.wishes).everything = true;
        shared.grant_wishes(&mut session).unwrap();
        assert_eq!(session.moved.len(), 2);

        let redis = thread::spawn(move || {
            let (stream, _) = fake.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut peer = Peer { stream, input: Vec::new() };
            let mut heard = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while heard.len() < 2 && std::time::Instant::now() < deadline {
                heard.extend(peer.commands());
            }
            assert_eq!(heard, [vec!["SELECT", "0"], vec!["TIME"]]);
            peer.stream.write_all(b"+OK\r\n*2\r\n$10\r\n1700000000\r\n$1\r\n0\r\n").unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while heard.len() < 3 && std::time::Instant::now() < deadline {
                heard.extend(peer.commands());
            }
            // Whatever else comes within a moment: a second SSUBSCRIBE would be here.
            heard.extend(peer.commands());
            heard.split_off(2)
        });
        shared.reconnect_shards(&mut session, at(2));
        assert!(session.shards[a].connecting && session.shards[a].writer.is_none(), "under way, not waited for");
        assert_ne!(session.shards[a].connection, lost_connection, "a new number for the new connection");
        // The wish for "alerts" woke the supervisor first.
        let (connection, result) = loop {
            match queue.recv_timeout(Duration::from_secs(5)) {
                Ok(Event::Connected(connection, result)) => break (connection, result),
                Ok(_) => continue,
                Err(_) => panic!("the attempt reports to the supervisor's queue"),
            }
        };
        shared.connected(&mut session, connection, result, at(2)).unwrap();
        assert!(session.shards[a].writer.is_some());
        assert_eq!(session.topics.get("alerts"), Some(&Topic::Subscribing));
        assert!(session.moved.is_empty());
        assert_eq!(redis.join().unwrap(), [["SSUBSCRIBE", "realtime:{alerts}:live"]]);
        assert!(peers[1 - a].commands().is_empty(), "the other master is sent nothing");
    }

    /// A master's subscription connection lost (its Redis killed) costs only that master's
    /// channels: they wait, while the table still names it, and move to the master that
    /// replaces it, connection and all; the other master keeps its connection and its
    /// subscriptions, and is sent nothing.
    #[test]
    fn a_lost_masters_channels_wait_for_its_successor_and_the_other_masters_subscriptions_stand() {
        let shared = offline_cluster(Limits::default());
        let (mut session, mut peers) = session_with_shards(2);
        let slot = |name: &str| key_slot(shared.keys.topic(name).as_bytes());
        assert!(slot("alerts") < 8192 && slot("sports") >= 8192);
        // A (port 7001) serves 0..=8191 and B (7002) the rest; then C (port 1) takes A's place.
        let before = slot_table(&[(0, 8191, 7001), (8192, 16383, 7002)]);
        let after = slot_table(&[(0, 8191, 1), (8192, 16383, 7002)]);
        session.topology = Some(before.clone());
        let wake = WakeQueue::silent().wake_for(0);
        for (subscriber, name) in ["alerts", "sports"].into_iter().enumerate() {
            shared.add_subscriber(name, subscriber as u64, &wake, at(0));
        }
        shared.grant_wishes(&mut session).unwrap();
        assert_eq!(peers[0].commands(), [["SSUBSCRIBE", "realtime:{alerts}:live"]]);
        assert_eq!(peers[1].commands(), [["SSUBSCRIBE", "realtime:{sports}:live"]]);
        shared.on_push(&mut session, 0, &push("ssubscribe", "realtime:{alerts}:live", Value::Integer(1))).unwrap();
        shared.on_push(&mut session, 1, &push("ssubscribe", "realtime:{sports}:live", Value::Integer(1))).unwrap();
        for name in ["alerts", "sports"] {
            lock(&lock(&shared.channels)[name]).load(id("5-0"));
        }
        shared.confirmed_are_live(&mut session);
        let b_connection = session.shards[1].connection;

        shared.lose_shard(&mut session, 0, &RedisError::Closed, at(1));
        assert!(session.shards[0].writer.is_none(), "A's connection is down");
        assert_eq!(session.topics.get("alerts"), None);
        assert_eq!(session.topics.get("sports"), Some(&Topic::Live), "B's subscription stands");
        assert_eq!(session.moved.iter().map(|moved| &*moved.name).collect::<Vec<_>>(), ["alerts"]);
        assert_eq!(shared.counters.channels.load(Ordering::Relaxed), 1, "one channel is subscribed now");
        let counter = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        assert_eq!(
            (counter(&shared.counters.subscribes), counter(&shared.counters.unsubscribes)),
            (2, 1),
            "A's subscription ended with its connection: confirmed less ended is what is subscribed"
        );

        // Wished again while A is down (every mirror, after too many wishes): set aside twice.
        lock(&shared.wishes).everything = true;
        shared.grant_wishes(&mut session).unwrap();
        assert_eq!(session.moved.len(), 2);
        assert!(peers[1].commands().is_empty(), "B is sent nothing for it");
        // The same table again: the channel waits for A (or for its successor), once.
        shared.follow_topology(&mut session, before, at(2)).unwrap();
        assert_eq!(session.moved.len(), 1);
        // The table with C for A: B is kept as it was; C's connection is to be opened (in the
        // background, by the listener), and the channel waits for it.
        shared.follow_topology(&mut session, after, at(3)).unwrap();
        assert_eq!(session.shards.len(), 2);
        assert_eq!(session.master(0).map(|master| master.port), Some(1));
        assert!(session.shards[0].writer.is_none(), "C's connection is still to be opened");
        assert_eq!(session.shards[1].connection, b_connection, "B's connection is kept");
        let waiting: Vec<_> = session.moved.iter().map(|moved| (&*moved.name, moved.let_go_by.as_ref())).collect();
        assert_eq!(waiting, [("alerts", session.master(0).as_ref())], "waits for C now");
        assert_eq!(session.topics.get("sports"), Some(&Topic::Live));
        assert!(peers[1].commands().is_empty(), "B is sent nothing");
    }
}
