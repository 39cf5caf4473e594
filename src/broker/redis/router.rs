//! The link on a Redis Cluster: one [`Pipeline`] (a lane set) per master, and each command
//! sent to the master of its key's slot.
//!
//! The table slot → master ([`Topology`]) is the supervisor's: it asks `CLUSTER SLOTS` when it
//! (re)opens its subscriptions and whenever the router asks for a refresh
//! ([`Router::wants_refresh`]), and hands the answer over with [`Router::set_topology`], which
//! starts the lanes of a new master (and waits a moment for them) and stops those of a node
//! that serves no slot any more.
//!
//! A command that meets a redirection ([`Redirect`]) is sent again, on the lane thread that
//! read the redirection, at most [`MAX_REDIRECTS`] times: after `MOVED` to the node named,
//! whose slot the table takes at once (the cluster spec: "the client should update its table
//! for that slot"), and a full refresh is asked for; after `ASK` to the node named, preceded
//! by `ASKING`, and the table is left as it is ("the next query for that slot should still go
//! to the old node"). A redirection means the node did not run the command, so sending it
//! again cannot run a publish twice; and since a client has one publish in flight at a time
//! (the broker module docs, "Never waiting for Redis"), a retried publish cannot be overtaken
//! by the same client's next one. A command whose master's lanes are all down fails at once
//! (503), as on one Redis, and asks for a refresh: after a failover the new master is found by
//! the next `CLUSTER SLOTS`, not by a redirection (the old master is not there to send one).
//!
//! Lock order: `topology`, then `pipelines`, never both at once with a lane's lock held;
//! callers may hold a mirror's lock (as with [`Pipeline::submit`]).
//!
//! [`Redirect`]: super::cluster::Redirect

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cluster::{key_slot, NodeAddr, Redirect, Topology};
use super::pipeline::{OnReplies, OnUp, Pipeline};
use super::resp::{encode_command, Value};
use super::ClusterUrl;
use crate::broker::{BrokerError, LinkStats};
use crate::sync::lock;

/// How many times one command follows a redirection: a `MOVED` then an `ASK` (a slot that
/// moved, and is moving again) is two; more means the table and the cluster disagree, and the
/// command fails (503) rather than bounce.
pub const MAX_REDIRECTS: usize = 3;

/// How long [`Router::set_topology`] waits for a new master's lanes to come up.
const NEW_MASTER_WAIT: Duration = Duration::from_secs(1);

/// A command as the router sends it, and again after a redirection.
#[derive(Clone)]
struct Command {
    bytes: Arc<Vec<u8>>,
    replies: usize,
    /// Answered once a replica has it ([`Pipeline::submit_or_return`]).
    replicated: bool,
}

/// See the module docs.
pub struct Router {
    url: ClusterUrl,
    script: &'static str,
    connections: usize,
    timeout: Duration,
    on_up: OnUp,
    /// `None` until the supervisor's first `CLUSTER SLOTS`: commands fail at once until then.
    topology: Mutex<Option<Topology>>,
    pipelines: Mutex<HashMap<NodeAddr, Arc<Pipeline>>>,
    refresh: AtomicBool,
    /// Commands refused because no master serves their slot (yet).
    unrouted: AtomicU64,
    /// Redirections followed.
    redirects: AtomicU64,
}

impl Router {
    pub fn new(url: ClusterUrl, script: &'static str, connections: usize, timeout: Duration, on_up: OnUp) -> Router {
        Router {
            url,
            script,
            connections,
            timeout,
            on_up,
            topology: Mutex::new(None),
            pipelines: Mutex::default(),
            refresh: AtomicBool::new(true),
            unrouted: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
        }
    }

    /// The masters as last known, for a supervisor looking for a node to ask.
    pub fn masters(&self) -> Vec<NodeAddr> {
        lock(&self.topology).as_ref().map(|t| t.masters.clone()).unwrap_or_default()
    }

    /// Whether a command met a redirection or a master that is down since the last call: the
    /// supervisor should ask for the table again.
    pub fn wants_refresh(&self) -> bool {
        self.refresh.swap(false, Ordering::SeqCst)
    }

    /// Takes the table `CLUSTER SLOTS` answered: starts lanes for masters not seen before
    /// (waiting up to a second for them, on the supervisor's thread) and stops the lanes of
    /// nodes that are masters no more.
    pub fn set_topology(&self, topology: Topology) {
        let mut new = Vec::new();
        {
            let pipelines = lock(&self.pipelines);
            for master in &topology.masters {
                if !pipelines.contains_key(master) {
                    new.push(master.clone());
                }
            }
        }
        // Started outside the lock: each waits for its lanes' first attempts.
        let started: Vec<(NodeAddr, Arc<Pipeline>)> =
            new.into_iter().map(|addr| (addr.clone(), Arc::new(self.start(&addr, NEW_MASTER_WAIT)))).collect();
        let retired: Vec<Arc<Pipeline>> = {
            let mut pipelines = lock(&self.pipelines);
            pipelines.extend(started);
            for (addr, pipeline) in pipelines.iter() {
                pipeline.set_replicas(topology.replicas(addr));
            }
            let gone: Vec<NodeAddr> =
                pipelines.keys().filter(|addr| !topology.masters.contains(addr)).cloned().collect();
            gone.iter().filter_map(|addr| pipelines.remove(addr)).collect()
        };
        *lock(&self.topology) = Some(topology);
        for pipeline in retired {
            pipeline.stop();
        }
    }

    fn start(&self, addr: &NodeAddr, wait: Duration) -> Pipeline {
        Pipeline::start(&self.url.node(addr), self.script, self.connections, self.timeout, self.on_up.clone(), wait)
    }

    /// Sends `commands` (about `key`) to the master of `key`'s slot; like [`Pipeline::submit`],
    /// a command refused at once is an error and its callback is dropped uncalled. A
    /// `replicated` write is answered once a replica of its master has it (the pipeline's
    /// module docs, "Replicated writes").
    pub fn submit(
        self: &Arc<Self>,
        key: &[u8],
        commands: &[u8],
        replies: usize,
        replicated: bool,
        on_replies: OnReplies,
    ) -> Result<(), BrokerError> {
        let slot = key_slot(key);
        let to = lock(&self.topology).as_ref().and_then(|t| t.owner(slot).cloned());
        let Some(to) = to else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            self.refresh.store(true, Ordering::SeqCst);
            return Err(BrokerError::Unavailable(format!("no Redis Cluster master known for slot {slot}")));
        };
        let command = Command { bytes: Arc::new(commands.to_vec()), replies, replicated };
        self.send(to, false, command, on_replies, MAX_REDIRECTS).map_err(|(error, _)| error)
    }

    /// Sends to `to` (after `ASKING` if `asking`), following at most `redirects_left` more
    /// redirections from its answer.
    fn send(
        self: &Arc<Self>,
        to: NodeAddr,
        asking: bool,
        command: Command,
        on_replies: OnReplies,
        redirects_left: usize,
    ) -> Result<(), (BrokerError, OnReplies)> {
        let pipeline = lock(&self.pipelines).get(&to).cloned();
        let pipeline = match pipeline {
            Some(pipeline) => pipeline,
            None => {
                // A node named by a redirection before the table knew it: its lanes start now,
                // and this command is refused (503) unless they come up at once; the
                // supervisor's refresh keeps them.
                let pipeline = Arc::new(self.start(&to, Duration::ZERO));
                lock(&self.pipelines).entry(to.clone()).or_insert(pipeline).clone()
            }
        };
        let mut out = Vec::with_capacity(command.bytes.len() + 20);
        if asking {
            encode_command(&mut out, &[b"ASKING"]);
        }
        out.extend_from_slice(&command.bytes);
        let (replies, replicated) = (command.replies + usize::from(asking), command.replicated);
        let router = self.clone();
        let answered_by = to.clone();
        // Shared with the wrapper so that a refusal can hand the caller's callback back.
        let callback = Arc::new(Mutex::new(Some(on_replies)));
        let held = callback.clone();
        let on_answer: OnReplies = Box::new(move |result| {
            let Some(on_replies) = lock(&held).take() else { return };
            let result = result.map(|mut values| {
                if asking && !values.is_empty() {
                    values.remove(0);
                }
                values
            });
            let redirect = match &result {
                Ok(values) if redirects_left > 0 => values.iter().find_map(|value| match value {
                    Value::Error(text) => Redirect::parse(text, &answered_by),
                    _ => None,
                }),
                _ => None,
            };
            let Some(redirect) = redirect else {
                if result.is_err() {
                    // The master's connection failed: perhaps it is gone (a failover).
                    router.refresh.store(true, Ordering::SeqCst);
                }
                return on_replies(result);
            };
            router.redirects.fetch_add(1, Ordering::Relaxed);
            let (to, asking) = match redirect {
                Redirect::Moved { slot, to } => {
                    if let Some(topology) = lock(&router.topology).as_mut() {
                        topology.moved(slot, to.clone());
                    }
                    router.refresh.store(true, Ordering::SeqCst);
                    (to, false)
                }
                Redirect::Ask { to, .. } => (to, true),
            };
            if let Err((error, on_replies)) = router.send(to, asking, command, on_replies, redirects_left - 1) {
                on_replies(Err(error));
            }
        });
        match pipeline.submit_or_return(&out, replies, replicated, on_answer) {
            Ok(()) => Ok(()),
            Err((error, wrapper)) => {
                drop(wrapper);
                self.refresh.store(true, Ordering::SeqCst);
                let on_replies = lock(&callback).take();
                Err((error, on_replies.unwrap_or_else(|| Box::new(|_| {}))))
            }
        }
    }

    /// Loads the publish script again on every master's lanes (after a `NOSCRIPT`).
    pub fn reload_script(&self) {
        for pipeline in lock(&self.pipelines).values() {
            pipeline.reload_script();
        }
    }

    /// The lanes of every master, summed.
    pub fn stats(&self) -> LinkStats {
        let mut total = LinkStats { failed: self.unrouted.load(Ordering::Relaxed), ..LinkStats::default() };
        for pipeline in lock(&self.pipelines).values() {
            let stats = pipeline.stats();
            total.connections += stats.connections;
            total.connections_up += stats.connections_up;
            total.in_flight += stats.in_flight;
            total.sent += stats.sent;
            total.answered += stats.answered;
            total.failed += stats.failed;
            total.reconnects += stats.reconnects;
            total.latency_sum_us += stats.latency_sum_us;
            total.latency_max_us = total.latency_max_us.max(stats.latency_max_us);
        }
        total
    }

    pub fn stop(&self) {
        for pipeline in lock(&self.pipelines).values() {
            pipeline.stop();
        }
    }
}
