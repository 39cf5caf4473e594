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
//! by the same client's next one. Publishes go to their master's lanes as publishes
//! ([`Router::submit_publish`]), where those of one slot share a call of the publish script;
//! a redirection refuses the whole call before it runs, and each of its publishes follows it
//! alone. A command whose master's lanes are all down fails at once
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
use super::publish_batch::{Publish, PublishArgs, PublishBatch};
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

    /// Queues a publish on the master of its slot, where it joins the publishes of that slot
    /// waiting for the lane's next send ([`Pipeline::submit_publish`]); answered once a
    /// replica has it while the master has any. A redirection of its batch is followed by
    /// this publish alone ([`super::publish_batch`]). Refused at once, as [`Router::submit`].
    pub fn submit_publish(
        self: &Arc<Self>,
        publish: &Publish,
        args: &Arc<PublishArgs>,
        on_replies: OnReplies,
    ) -> Result<(), BrokerError> {
        let slot = key_slot(publish.stream.as_bytes());
        let to = lock(&self.topology).as_ref().and_then(|t| t.owner(slot).cloned());
        let Some(to) = to else {
            self.unrouted.fetch_add(1, Ordering::Relaxed);
            self.refresh.store(true, Ordering::SeqCst);
            return Err(BrokerError::Unavailable(format!("no Redis Cluster master known for slot {slot}")));
        };
        let publish = Publish { slot: Some(slot), ..*publish };
        let mut alone = Vec::with_capacity(publish.text.len() + 200);
        PublishBatch::encode_alone(&publish, args, &mut alone);
        // Sent again alone if its batch is redirected: a call of one publish is answered with
        // its id alone, the shape the batch's answer reaches this publish's wrapper in.
        let command = Command { bytes: Arc::new(alone), replies: 1, replicated: true };
        let pipeline = self.pipeline(&to);
        let (on_answer, _) = self.following_redirects(to, false, command, on_replies, MAX_REDIRECTS);
        pipeline
            .submit_publish(&publish, args, true, on_answer)
            .inspect_err(|_| self.refresh.store(true, Ordering::SeqCst))
    }

    /// The lanes of master `to`. A node named by a redirection before the table knew it gets
    /// lanes now, and its command is refused (503) unless they come up at once; the
    /// supervisor's refresh keeps them.
    fn pipeline(&self, to: &NodeAddr) -> Arc<Pipeline> {
        let pipeline = lock(&self.pipelines).get(to).cloned();
        pipeline.unwrap_or_else(|| {
            let pipeline = Arc::new(self.start(to, Duration::ZERO));
            lock(&self.pipelines).entry(to.clone()).or_insert(pipeline).clone()
        })
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
        let pipeline = self.pipeline(&to);
        let mut out = Vec::with_capacity(command.bytes.len() + 20);
        if asking {
            encode_command(&mut out, &[b"ASKING"]);
        }
        out.extend_from_slice(&command.bytes);
        let (replies, replicated) = (command.replies + usize::from(asking), command.replicated);
        let (on_answer, callback) = self.following_redirects(to, asking, command, on_replies, redirects_left);
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

    /// Wraps `on_replies` for a command sent to `to` (after `ASKING` if `asking`): a
    /// redirection in its answer sends `command` again where it says, at most
    /// `redirects_left` more times; any other answer goes to `on_replies`. Also returns the
    /// caller's callback as the wrapper holds it, so that a refusal can hand it back.
    fn following_redirects(
        self: &Arc<Self>,
        to: NodeAddr,
        asking: bool,
        command: Command,
        on_replies: OnReplies,
        redirects_left: usize,
    ) -> (OnReplies, Arc<Mutex<Option<OnReplies>>>) {
        let router = self.clone();
        let answered_by = to;
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
        (on_answer, callback)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::cluster::tests::slot_table;
    use crate::broker::redis::pipeline::tests::{fake_redis, script_texts, texts_as_ids};
    use crate::broker::redis::{CLUSTER_PUBLISH_SCRIPT, DEFAULT_REDIS_TIMEOUT};
    use crate::broker::Limits;
    use std::sync::atomic::AtomicU16;
    use std::sync::mpsc;

    /// The port of the master a slot moved to, for [`old_master`]'s `MOVED`.
    static NEW_MASTER: AtomicU16 = AtomicU16::new(0);
    /// The calls of the publish script each master was sent: `old TEXTS`, `new TEXTS`.
    static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// A master that no longer serves any slot: it refuses every call of the publish script
    /// with `MOVED` to [`NEW_MASTER`].
    fn old_master(args: &[Vec<u8>]) -> Option<Vec<u8>> {
        let texts = script_texts(args)?;
        lock(&CALLS).push(format!("old {}", texts.join(" ")));
        let slot = key_slot(&args[3]);
        Some(format!("-MOVED {slot} 127.0.0.1:{}\r\n", NEW_MASTER.load(Ordering::SeqCst)).into_bytes())
    }

    /// The master it moved to: it publishes, answering each publish's text as its id.
    fn new_master(args: &[Vec<u8>]) -> Option<Vec<u8>> {
        let texts = script_texts(args)?;
        lock(&CALLS).push(format!("new {}", texts.join(" ")));
        Some(texts_as_ids(&texts))
    }

    /// `super::super::publish_batch`: a batch is one slot's publishes, so a `MOVED` refuses
    /// all of them before any runs, and each follows the redirection alone: published once,
    /// answered with its own id.
    #[test]
    fn a_batch_refused_with_moved_is_sent_again_publish_by_publish_to_the_new_master() {
        let (old, _) = fake_redis(old_master);
        let (new, _) = fake_redis(new_master);
        NEW_MASTER.store(new.port, Ordering::SeqCst);
        let stream = "realtime:{moving}";
        let slot = key_slot(stream.as_bytes());
        assert!(slot > 0 && slot < 16383);
        let cluster = ClusterUrl::parse(&format!("redis-cluster://127.0.0.1:{}", old.port)).unwrap();
        let router = Arc::new(Router::new(cluster, CLUSTER_PUBLISH_SCRIPT, 1, DEFAULT_REDIS_TIMEOUT, Arc::new(|| {})));
        // The table still gives the channel's slot to the old master.
        router.set_topology(slot_table(&[(0, slot - 1, new.port), (slot, 16383, old.port)]));
        let args = Arc::new(PublishArgs::new(CLUSTER_PUBLISH_SCRIPT, &Limits::default()));
        let (answers, answered) = mpsc::channel();
        let publish = |text: &'static str| {
            let answers = answers.clone();
            let on_replies: OnReplies = Box::new(move |replies| {
                let id = replies.ok().and_then(|mut r| r.pop()).and_then(|v| v.as_str().map(str::to_string));
                let _ = answers.send((text, id));
            });
            let publish = Publish {
                stream,
                newest: "realtime:{moving}:newest",
                topic: "realtime:{moving}:live",
                text,
                slot: None,
            };
            router.submit_publish(&publish, &args, on_replies).expect("the master's lanes are up");
        };
        // Its writer asleep, so that the turn's publishes leave together as the turn ends.
        router.pipeline(&NodeAddr { host: "127.0.0.1".into(), port: old.port }).wait_for_writers_asleep();
        let turn = crate::wake::Turn::begin();
        for text in ["moving-1", "moving-2", "moving-3"] {
            publish(text);
        }
        drop(turn);
        let mut told: Vec<_> = (0..3).map(|_| answered.recv_timeout(Duration::from_secs(5)).expect("told")).collect();
        told.sort();
        assert_eq!(
            told,
            [
                ("moving-1", Some("moving-1".into())),
                ("moving-2", Some("moving-2".into())),
                ("moving-3", Some("moving-3".into()))
            ]
        );
        let mut calls: Vec<String> = lock(&CALLS).clone();
        calls[1..].sort();
        assert_eq!(calls, ["old moving-1 moving-2 moving-3", "new moving-1", "new moving-2", "new moving-3"]);
        assert_eq!(router.redirects.load(Ordering::Relaxed), 3, "one redirection followed per publish");
        assert_eq!(
            lock(&router.topology).as_ref().and_then(|t| t.owner(slot)).map(|a| a.port),
            Some(new.port),
            "the table took the move"
        );
        // So the next publish goes to the new master at once, in a batch of its own.
        publish("moving-4");
        assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok(("moving-4", Some("moving-4".into()))));
        assert_eq!(lock(&CALLS).last().map(String::as_str), Some("new moving-4"));
    }
}
