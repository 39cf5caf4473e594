//! Nodes over a real Redis Cluster (`--broker redis-cluster://...`), for every server model: six
//! `redis-server --cluster-enabled yes` (three masters, a replica each) made one cluster with
//! `redis-cli --cluster create`; a publish on one node reaches a follower on another for
//! channels on all three masters; a channel whose slot moves to another master
//! (`CLUSTER SETSLOT ... MIGRATING/IMPORTING`, `MIGRATE`, `SETSLOT ... NODE`) keeps being
//! delivered; a master killed loses nothing silently, and costs only its own channels a new
//! subscription while the others' are delivered live throughout; a master that hangs while
//! the slot table is asked of it holds back none of the other masters' news.
//!
//! Skips loudly when `redis-server` or `redis-cli` is not installed
//! (`common::external_program`; `.ci/run` installs both and makes a skip a failure). Every wait
//! is bounded; the `Cluster` guard kills every `redis-server` it started, even when a test fails.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{TestServer, MODELS, PATIENCE};
use realtime::broker::redis::cluster::{key_slot, NodeAddr, Topology};
use realtime::broker::redis::ClusterUrl;
use realtime::broker::resp::{self, Value};
use realtime::config::{BrokerUrl, Model};

/// Six redis-server processes made one cluster; every one killed when dropped.
struct Cluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command on a fresh connection; `None` if the node does not answer.
fn command(port: u16, args: &[&str]) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut out = Vec::new();
    resp::encode_command(&mut out, &args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>());
    stream.write_all(&out).ok()?;
    let mut input = Vec::new();
    loop {
        if let Ok(Some((value, _))) = resp::decode(&input, &resp::Limits::default()) {
            return Some(value);
        }
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => input.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A free port for a cluster node: one whose cluster bus port, 10,000 higher (Redis's
/// default), is in range and free too. Redis refuses a higher one at start ("Your Redis port
/// number must be 55535 or less"), and the kernel hands out ports up to 60999 here.
fn free_cluster_port() -> u16 {
    for _ in 0..1000 {
        let port = common::free_port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port with a free cluster bus port in 1000 tries");
}

fn text(value: &Value) -> String {
    value.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
}

/// Waits (at most `PATIENCE`) for `condition`.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// `None` (after a loud SKIP) when redis-server or redis-cli is missing.
    fn start() -> Option<Cluster> {
        // Long enough that a replica stopped for the two publishes of
        // `killing_a_master_loses_nothing_silently` (a second each) is not yet marked failed,
        // which would let its master answer publishes without it.
        Cluster::start_with_node_timeout("3000")
    }

    /// [`Cluster::start`] with `--cluster-node-timeout` of `millis`: how long a node may be
    /// silent before the cluster marks it failed (and, with no replica to take over, stops
    /// serving every slot: `CLUSTERDOWN`).
    fn start_with_node_timeout(millis: &str) -> Option<Cluster> {
        let server = common::external_program("redis-server")?;
        let cli = common::external_program("redis-cli")?;
        let dir = common::scratch_dir("cluster");
        let mut cluster = Cluster { ports: Vec::new(), children: Vec::new(), dir };
        for _ in 0..6 {
            let port = free_cluster_port();
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let log = std::fs::File::create(node_dir.join("redis.log")).unwrap();
            let child = Command::new(&server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--daemonize", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", millis, "--save", "", "--appendonly", "no"])
                // A replica whose master is killed takes over however long ago it last heard
                // from it (an idle test cluster replicates nothing for seconds at a time).
                .args(["--cluster-replica-validity-factor", "0"])
                .arg("--dir")
                .arg(&node_dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn redis-server");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            wait_for("redis-server to answer PING", || command(port, &["PING"]).is_some());
        }
        let addresses: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        for &port in &cluster.ports {
            wait_for("cluster_state:ok", || {
                command(port, &["CLUSTER", "INFO"]).is_some_and(|info| text(&info).contains("cluster_state:ok"))
            });
            // Every node knows every master's replica: the nodes under test count them once,
            // as they start, to decide which publishes wait for one.
            wait_for("three replicas known", || {
                let nodes = command(port, &["CLUSTER", "NODES"]).map(|nodes| text(&nodes)).unwrap_or_default();
                let flags = nodes.lines().filter_map(|line| line.split(' ').nth(2));
                flags.filter(|flags| flags.split(',').any(|flag| flag == "slave")).count() == 3
            });
        }
        Some(cluster)
    }

    /// Every node as a seed, as a deployment should: a node started while one of them is
    /// down asks another for the slot table.
    fn url(&self) -> ClusterUrl {
        let seeds: Vec<String> = self.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        ClusterUrl::parse(&format!("redis-cluster://{}", seeds.join(","))).unwrap()
    }

    /// The slot table as node `port` sees it.
    fn topology(&self, port: u16) -> Topology {
        let reply = command(port, &["CLUSTER", "SLOTS"]).expect("CLUSTER SLOTS");
        Topology::from_cluster_slots(&reply, &NodeAddr { host: "127.0.0.1".into(), port }).unwrap()
    }

    /// The process of the node at `port`.
    fn pid(&self, port: u16) -> u32 {
        self.children[self.ports.iter().position(|&p| p == port).expect("a node of this cluster")].id()
    }

    /// The port of a replica of the master at `port` (`CLUSTER REPLICAS`: one node per line,
    /// `<id> <ip:port@cport> ...`).
    fn replica_of(&self, master: u16) -> u16 {
        let lines = command(master, &["CLUSTER", "REPLICAS", &Cluster::node_id(master)]).expect("CLUSTER REPLICAS");
        let line = lines.as_array().and_then(|lines| lines.first().map(text)).expect("a replica");
        let address = line.split(' ').nth(1).expect("an address");
        address.split(['@', ':']).nth(1).and_then(|port| port.parse().ok()).expect("a port")
    }

    /// Kills the node at `port` at once (SIGKILL): no goodbye to its replica or its clients.
    fn kill(&mut self, port: u16) {
        let index = self.ports.iter().position(|&p| p == port).expect("a node of this cluster");
        let _ = self.children[index].kill();
        let _ = self.children[index].wait();
    }

    fn node_id(port: u16) -> String {
        text(&command(port, &["CLUSTER", "MYID"]).expect("CLUSTER MYID"))
    }
}

/// One channel name whose slot is served by each master, in the masters' order.
fn channel_per_master(topology: &Topology) -> Vec<String> {
    topology
        .masters
        .iter()
        .map(|master| {
            (0..10_000)
                .map(|i| format!("ch{i}"))
                .find(|name| topology.owner(key_slot(name.as_bytes())) == Some(master))
                .expect("a channel on every master")
        })
        .collect()
}

fn node(model: Model, cluster: &Cluster) -> TestServer {
    let url = cluster.url();
    TestServer::start(model, &|config| config.broker = BrokerUrl::RedisCluster(url.clone()))
}

/// A long poll: the texts after `since`, the new cursor, and whether a gap was reported.
fn poll(server: &TestServer, channel: &str, since: &str) -> (Vec<String>, String, bool) {
    let response = server.get(&format!("/poll/{channel}?since={since}&timeout=5"));
    assert_eq!(response.status, 200, "poll: {}", response.text());
    let body = response.json();
    let texts = body
        .get("messages")
        .and_then(|m| m.as_array())
        .map(|messages| {
            messages.iter().filter_map(|m| m.get("text").and_then(|t| t.as_str()).map(str::to_string)).collect()
        })
        .unwrap_or_default();
    let cursor = body.get("cursor").and_then(|c| c.as_str()).unwrap_or(since).to_string();
    let gap = body.get("gap").and_then(|g| g.as_bool()).unwrap_or(false);
    (texts, cursor, gap)
}

/// Publishes `text` on `publisher` (retrying a 503 while the cluster settles) and waits until
/// `follower`'s long poll from `cursor` returns it; returns the new cursor.
fn publish_and_follow(
    publisher: &TestServer,
    follower: &TestServer,
    channel: &str,
    cursor: &str,
    text: &str,
) -> String {
    wait_for("a publish to be accepted", || {
        publisher.request("POST", &format!("/publish/{channel}"), Some(text)).status == 201
    });
    let mut cursor = cursor.to_string();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (texts, next, gap) = poll(follower, channel, &cursor);
        assert!(!gap, "no gap on {channel} while nothing was lost");
        cursor = next;
        if texts.iter().any(|t| t == text) {
            return cursor;
        }
        assert!(Instant::now() < deadline, "{text} did not reach the other node on {channel}");
    }
}

/// The stream's newest id of `channel`, asked of its master: where a follower starts.
fn tail(server: &TestServer, channel: &str) -> String {
    let (_, cursor, _) = poll_now(server, channel);
    cursor
}

/// A subscriber that holds `channel` on `server`: an SSE stream nobody reads. A node hears a
/// channel only while a client of its own follows it (a long poll that finds its message at
/// once never does), so this is what makes news reach `server` by sharded pub/sub.
fn hold(server: &TestServer, channel: &str) -> TcpStream {
    let mut stream = server.connect();
    write!(stream, "GET /sse/{channel} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    common::read_until(&mut stream, b"\r\n\r\n").expect("the stream's head");
    stream
}

/// A number from the `redis` object of `server`'s `/stats`.
fn link_stat(server: &TestServer, name: &str) -> u64 {
    let stats = server.get("/stats").json();
    stats.get("redis").and_then(|redis| redis.get(name)).and_then(|n| n.as_u64()).unwrap_or(0)
}

fn poll_now(server: &TestServer, channel: &str) -> (Vec<String>, String, bool) {
    let response = server.get(&format!("/poll/{channel}?timeout=0"));
    let body = response.json();
    (Vec::new(), body.get("cursor").and_then(|c| c.as_str()).unwrap_or("0").to_string(), false)
}

#[test]
fn publishes_on_one_node_reach_followers_on_another_for_channels_on_every_master() {
    let Some(cluster) = Cluster::start() else { return };
    let channels = channel_per_master(&cluster.topology(cluster.ports[0]));
    for &model in MODELS {
        let (a, b) = (node(model, &cluster), node(model, &cluster));
        let _held: Vec<TcpStream> = channels.iter().map(|channel| hold(&b, channel)).collect();
        wait_for("b to subscribe every channel", || link_stat(&b, "channels_subscribed") == channels.len() as u64);
        for channel in &channels {
            let mut cursor = tail(&b, channel);
            for i in 0..3 {
                cursor = publish_and_follow(&a, &b, channel, &cursor, &format!("{model:?} {channel} {i}"));
            }
        }
        let heard = link_stat(&b, "pubsub_messages");
        assert!(heard >= 3 * channels.len() as u64, "every publish came by sharded pub/sub: {heard}");
    }
}

#[test]
fn a_channel_whose_slot_moves_to_another_master_keeps_being_delivered_and_no_other_is_subscribed_again() {
    let Some(cluster) = Cluster::start() else { return };
    let topology = cluster.topology(cluster.ports[0]);
    let channels = channel_per_master(&topology);
    for (round, &model) in MODELS.iter().enumerate() {
        let (a, b) = (node(model, &cluster), node(model, &cluster));
        // `channel` moves; `staying`, on another master, does not.
        let (channel, staying) = (&channels[0], &channels[1]);
        let _held = [hold(&b, channel), hold(&b, staying)];
        wait_for("b to subscribe both channels", || link_stat(&b, "channels_subscribed") == 2);
        let mut cursor = tail(&b, channel);
        cursor = publish_and_follow(&a, &b, channel, &cursor, &format!("before the move {round}"));
        let mut staying_cursor = tail(&b, staying);

        let subscribes = link_stat(&b, "channel_subscribes");
        // Move the channel's slot from its master to the next one, the way
        // `redis-cli --cluster reshard` does (the cluster spec, "Live resharding").
        let now = cluster.topology(cluster.ports[0]);
        let slot = key_slot(channel.as_bytes());
        let source = now.owner(slot).unwrap().port;
        let target = now.masters.iter().find(|m| m.port != source).unwrap().port;
        let (source_id, target_id) = (Cluster::node_id(source), Cluster::node_id(target));
        let slot_text = slot.to_string();
        assert_eq!(
            command(target, &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id]).map(|v| text(&v)),
            Some("OK".into())
        );
        assert_eq!(
            command(source, &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id]).map(|v| text(&v)),
            Some("OK".into())
        );
        let keys = command(source, &["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"]).unwrap();
        let keys: Vec<String> = keys.as_array().unwrap_or_default().iter().map(text).collect();
        if !keys.is_empty() {
            let target_port = target.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &target_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let migrated = command(source, &args).unwrap();
            assert_eq!(text(&migrated), "OK", "MIGRATE: {migrated:?}");
        }
        for &port in &cluster.ports {
            // Replicas refuse SETSLOT; the masters are what matters.
            let _ = command(port, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id]);
        }
        wait_for("every node to agree on the slot's new master", || {
            now.masters.iter().all(|m| cluster.topology(m.port).owner(slot).map(|o| o.port) == Some(target))
        });

        // Redis ends a shard channel's subscription when its slot moves (`sunsubscribe`); the
        // node subscribes it again, on the new master, and hears what follows from there.
        wait_for("b to subscribe the channel again", || link_stat(&b, "channel_subscribes") > subscribes);
        let heard = link_stat(&b, "pubsub_messages");
        for i in 0..3 {
            cursor = publish_and_follow(&a, &b, channel, &cursor, &format!("after the move {round} {i}"));
            let text = format!("beside the move {round} {i}");
            staying_cursor = publish_and_follow(&a, &b, staying, &staying_cursor, &text);
        }
        assert!(link_stat(&b, "pubsub_messages") >= heard + 6, "what follows the move comes by pub/sub");
        assert_eq!(
            link_stat(&b, "channel_subscribes"),
            subscribes + 1,
            "only the channel that moved was subscribed again, on its new master"
        );
    }
}

/// What a follower saw, in order: a message's number, or a gap.
#[derive(Debug, PartialEq)]
enum Seen {
    Text(usize),
    Gap,
}

/// Checks the product's promise across a failover: every message whose publish was answered
/// 201 reached the follower, in order and once, unless a gap was reported where it would
/// have been.
fn assert_nothing_lost_silently(acknowledged: &[usize], seen: &[Seen]) {
    let mut last = None::<usize>;
    let mut gap_open = false;
    for event in seen {
        match *event {
            Seen::Gap => gap_open = true,
            Seen::Text(number) => {
                assert!(last.is_none_or(|last| number > last), "{number} after {last:?}: out of order or doubled");
                let skipped: Vec<usize> =
                    acknowledged.iter().copied().filter(|&a| last.is_none_or(|last| a > last) && a < number).collect();
                assert!(
                    skipped.is_empty() || gap_open,
                    "acknowledged {skipped:?} skipped without a gap before {number}"
                );
                last = Some(number);
                gap_open = false;
            }
        }
    }
}

/// Long-polls `server` on `channel` from `cursor` until the message "last" arrives (or
/// three times `PATIENCE` pass), and returns what it saw.
fn follow_to_the_end(server: &TestServer, channel: &str, mut cursor: String) -> Vec<Seen> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE * 3;
    while Instant::now() < deadline && seen.last() != Some(&Seen::Text(LAST)) {
        let response = server.get(&format!("/poll/{channel}?since={cursor}&timeout=5"));
        if response.status != 200 {
            // 503 while the cluster elects a new master: ask again.
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        let body = response.json();
        if body.get("gap").and_then(|g| g.as_bool()) == Some(true) {
            seen.push(Seen::Gap);
        }
        for message in body.get("messages").and_then(|m| m.as_array()).unwrap_or_default() {
            let text = message.get("text").and_then(|t| t.as_str()).unwrap_or_default();
            seen.push(Seen::Text(if text == "last" { LAST } else { text.parse().unwrap() }));
        }
        if let Some(next) = body.get("cursor").and_then(|c| c.as_str()) {
            cursor = next.to_string();
        }
    }
    seen
}

/// The number the follower reads for the message "last".
const LAST: usize = usize::MAX;

/// The cluster spec, "Replication and failover": Redis replicates asynchronously, so a master
/// killed before its replica has a write takes the write with it, and the replica promoted in
/// its place never had it. Here that is made certain: the replica is stopped (SIGSTOP) while
/// the master takes two publishes, then the master is killed (SIGKILL) and the replica
/// continued, and it takes over without them. Those two were never acknowledged (no replica
/// confirmed them: 503); every publish answered 201 reaches a follower that was there all
/// along and one on a node started after the failover, which reads the new master's stream.
#[test]
fn killing_a_master_loses_nothing_silently() {
    for &model in MODELS {
        let Some(mut cluster) = Cluster::start() else { return };
        let topology = cluster.topology(cluster.ports[0]);
        let channel = channel_per_master(&topology).swap_remove(0);
        let master = topology.owner(key_slot(channel.as_bytes())).unwrap().port;
        let replica = cluster.replica_of(master);
        let (a, b) = (node(model, &cluster), node(model, &cluster));
        let start = tail(&b, &channel);
        let publish = |text: &str| a.request("POST", &format!("/publish/{channel}"), Some(text)).status;

        thread::scope(|scope| {
            let witness = scope.spawn(|| follow_to_the_end(&b, &channel, start.clone()));
            // Each attempt publishes a new number: one refused may still be in the stream, and
            // the followers check that every number comes once, in order.
            let mut acknowledged = Vec::new();
            let publish_until = |mut number: usize, count: usize, acknowledged: &mut Vec<usize>| {
                let deadline = Instant::now() + PATIENCE * 2;
                while acknowledged.len() < count && Instant::now() < deadline {
                    match publish(&number.to_string()) {
                        201 => acknowledged.push(number),
                        // 503 while the replica catches up or the cluster elects a new master.
                        _ => thread::sleep(Duration::from_millis(20)),
                    }
                    number += 1;
                }
                assert_eq!(acknowledged.len(), count, "publishes are acknowledged in time");
                number
            };
            let next = publish_until(0, 50, &mut acknowledged);

            let stopped = cluster.pid(replica);
            assert!(common::signal(stopped, "STOP"), "kill -STOP the replica");
            for n in next..next + 2 {
                assert_eq!(publish(&n.to_string()), 503, "a publish no replica confirmed is not acknowledged");
            }
            cluster.kill(master);
            assert!(common::signal(stopped, "CONT"), "kill -CONT the replica");
            publish_until(next + 2, 100, &mut acknowledged);
            wait_for("the last publish to be accepted", || publish("last") == 201);

            let latecomer = node(model, &cluster);
            for (who, seen) in [
                ("witness", witness.join().unwrap()),
                ("latecomer", follow_to_the_end(&latecomer, &channel, start.clone())),
            ] {
                assert_eq!(seen.last(), Some(&Seen::Text(LAST)), "the {who} reached the end: {seen:?}");
                assert_nothing_lost_silently(&acknowledged, &seen);
            }
        });
    }
}

/// Each master has its own subscription connection on a node, and losing one costs only that
/// master's channels. A connection the master drops is opened again and its channel
/// subscribed again, alone. When a master is killed (its replica held stopped meanwhile, so
/// that no failover comes first), the other masters' channels keep being delivered by
/// pub/sub, and a node started meanwhile subscribes on the masters that are up;
/// after the failover only the dead master's channel is subscribed again, on the replica
/// promoted in its place, where its news go on.
#[test]
fn killing_a_master_leaves_the_other_masters_channels_live_and_moves_only_its_own() {
    for &model in MODELS {
        let Some(mut cluster) = Cluster::start() else { return };
        let topology = cluster.topology(cluster.ports[0]);
        let channels = channel_per_master(&topology);
        let master_of = |channel: &str| topology.owner(key_slot(channel.as_bytes())).unwrap().port;
        let (victim, survivor) = (master_of(&channels[0]), master_of(&channels[1]));
        let (a, b) = (node(model, &cluster), node(model, &cluster));
        let _held: Vec<TcpStream> = channels.iter().map(|channel| hold(&b, channel)).collect();
        wait_for("b to subscribe every channel", || link_stat(&b, "channels_subscribed") == 3);
        let mut cursors: Vec<String> = channels.iter().map(|channel| tail(&b, channel)).collect();
        let subscribes = link_stat(&b, "channel_subscribes");

        // The master drops b's subscription connection: b opens another to it and subscribes
        // that master's channel again, and only that one.
        let killed = command(victim, &["CLIENT", "KILL", "TYPE", "pubsub"]).and_then(|n| n.as_integer());
        assert_eq!(killed, Some(1), "b's subscription connection to the master");
        cursors[0] = publish_and_follow(&a, &b, &channels[0], &cursors[0], "across a lost connection");
        wait_for("b to subscribe the channel again", || link_stat(&b, "channel_subscribes") == subscribes + 1);
        cursors[0] = publish_and_follow(&a, &b, &channels[0], &cursors[0], "on the new connection");
        let ended = link_stat(&b, "channel_unsubscribes");
        assert_eq!(link_stat(&b, "channel_subscribes") - ended, 3, "the lost connection's subscription ended");
        let heard = link_stat(&b, "pubsub_messages");

        // The master's replica is held stopped while the master is dead, so that no failover
        // can come before the checks below, however slow the machine: the dead master's slots
        // stay its own, and only a node that does without it passes them.
        let replica = cluster.pid(cluster.replica_of(victim));
        assert!(common::signal(replica, "STOP"), "kill -STOP the replica");
        cluster.kill(victim);
        for (channel, cursor) in channels.iter().zip(&mut cursors).skip(1) {
            *cursor = publish_and_follow(&a, &b, channel, cursor, "while the master is down");
        }
        assert!(link_stat(&b, "pubsub_messages") >= heard + 2, "the other masters' news came by pub/sub");
        // A node started now subscribes what the masters still up serve.
        let c = node(model, &cluster);
        let _also_held = hold(&c, &channels[1]);
        wait_for("c to subscribe a live master's channel", || link_stat(&c, "channels_subscribed") == 1);
        assert!(
            cluster.topology(survivor).masters.iter().any(|master| master.port == victim),
            "all of it before the failover: the cluster still names the dead master"
        );

        assert!(common::signal(replica, "CONT"), "kill -CONT the replica");
        wait_for("a replica to take over", || {
            cluster.topology(survivor).masters.iter().all(|master| master.port != victim)
        });
        for (channel, cursor) in channels.iter().zip(&mut cursors) {
            *cursor = publish_and_follow(&a, &b, channel, cursor, "after the failover");
        }
        assert_eq!(
            link_stat(&b, "channel_subscribes"),
            subscribes + 2,
            "only the dead master's channel was subscribed again, on its replica"
        );
    }
}

/// A node asks for the slot table when a master's connections fail, and the node it asks may
/// be that very master, hung (stopped, or its host gone): the ask waits two seconds for it
/// (the command connection's timeout) before asking the next node. The ask runs beside the
/// node's subscriptions, so the other masters' news are delivered meanwhile, not after it.
/// What "meanwhile" means is told by another node's clock, not the test's: a publish on node
/// a to the hung master, which a's `--redis-timeout` (1.2 s) refuses before b's ask gives up.
#[test]
fn a_hung_master_asked_for_the_slot_table_does_not_hold_back_the_other_masters_news() {
    for &model in MODELS {
        // The test's few seconds with a master stopped pass before the cluster marks it failed:
        // with no replica to take over, every master would then answer `CLUSTERDOWN`.
        let Some(cluster) = Cluster::start_with_node_timeout("15000") else { return };
        let topology = cluster.topology(cluster.ports[0]);
        let channels = channel_per_master(&topology);
        let hung = topology.owner(key_slot(channels[0].as_bytes())).unwrap().port;
        // b's first seed is the master that will hang: b asks its slot tables there.
        let seeds: Vec<String> = std::iter::once(hung)
            .chain(cluster.ports.iter().copied().filter(|&port| port != hung))
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let url = ClusterUrl::parse(&format!("redis-cluster://{}", seeds.join(","))).unwrap();
        let b = TestServer::start(model, &|config| config.broker = BrokerUrl::RedisCluster(url.clone()));
        wait_for("b's slot tables to be asked of the master that will hang", || {
            command(hung, &["CLIENT", "LIST"]).is_some_and(|clients| text(&clients).contains("cmd=cluster|"))
        });
        let all = cluster.url();
        let a = TestServer::start(model, &|config| {
            config.broker = BrokerUrl::RedisCluster(all.clone());
            config.redis_timeout = Duration::from_millis(1200);
        });
        let mut news = hold(&b, &channels[1]);
        news.set_read_timeout(Some(PATIENCE)).unwrap();
        wait_for("b to subscribe", || link_stat(&b, "channels_subscribed") == 1);
        wait_for("a's link to every master", || link_stat(&a, "connections_up") >= 3);

        // The master hangs, and its replica with it, so that no failover changes the table.
        let replica = cluster.pid(cluster.replica_of(hung));
        assert!(common::signal(replica, "STOP"), "kill -STOP the replica");
        assert!(common::signal(cluster.pid(hung), "STOP"), "kill -STOP the master");
        // A publish to its channel fails at `--redis-timeout` (2 s), so b asks for the table:
        // of the hung master first, which holds the ask for two seconds more.
        let refused = b.request("POST", &format!("/publish/{}", channels[0]), Some("to the hung master"));
        assert_eq!(refused.status, 503, "{}", refused.text());
        thread::sleep(TICK_AND_MORE);
        let (delivered, clock) = thread::scope(|scope| {
            let clock = scope.spawn(|| {
                let refused = a.request("POST", &format!("/publish/{}", channels[0]), Some("the clock"));
                (refused.status, Instant::now())
            });
            // On b, whose link to the other master is up (a 503 here is that master's replica
            // slow to confirm on a loaded machine).
            wait_for("a publish to be accepted", || {
                b.request("POST", &format!("/publish/{}", channels[1]), Some("meanwhile")).status == 201
            });
            let delivered = common::read_until(&mut news, b"meanwhile").map(|_| Instant::now());
            (delivered, clock.join().unwrap())
        });
        assert!(common::signal(cluster.pid(hung), "CONT"), "kill -CONT the master");
        assert!(common::signal(replica, "CONT"), "kill -CONT the replica");
        let delivered = delivered.expect("the other master's news");
        assert_eq!(clock.0, 503, "a's publish to the hung master is refused at its timeout");
        assert!(
            delivered < clock.1,
            "{model:?}: the other master's news came after a gave up on the hung master, so it waited for b's ask"
        );
    }
}

/// Long enough for the node to start asking for the table once its publish failed (it looks
/// every 100 ms), short of the 2 s the ask then waits for the hung master.
const TICK_AND_MORE: Duration = Duration::from_millis(500);
