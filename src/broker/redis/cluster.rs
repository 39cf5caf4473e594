//! Where a key lives in a Redis Cluster: its slot, the node that owns the slot, and what a node
//! says when it is asked about a slot it does not own.
//!
//! A cluster splits the key space into 16384 *slots*; every key belongs to one, computed from
//! its name alone, and each slot is served by one master at a time. A client keeps the table
//! slot → master, sends each command to the master of its key's slot, and learns of changes
//! from the redirections a node answers instead ("Redis Cluster Specification",
//! <https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/>):
//!
//! - the **slot** is `CRC16(key) mod 16384` ("Key distribution model"), where CRC16 is
//!   XMODEM, and only the *hash tag* is hashed when the key has one: the bytes between the
//!   first `{` and the first `}` after it, if there is at least one ("Hash tags"). The broker
//!   names a channel's stream `realtime:{CHANNEL}` and its shard channel
//!   `realtime:{CHANNEL}:live` so that both share the tag, and so the slot: the publish script
//!   touches the stream and publishes on the shard channel in one atomic run on one master;
//! - the **table** comes from `CLUSTER SLOTS`, asked of any node: ranges of slots, each with
//!   its master's address first (<https://redis.io/docs/latest/commands/cluster-slots/>);
//! - a **redirection** is an error reply: `-MOVED <slot> <host>:<port>` when the slot has a new
//!   owner for good (update the table, send the command there), `-ASK <slot> <host>:<port>`
//!   while the slot migrates and this key has already left (send that one command there,
//!   preceded by `ASKING`, and keep the table as it is) ("Redirection and resharding").
//!
//! Pure functions and data only: the connections that use them are in `super`.

#![forbid(unsafe_code)]

use std::fmt;

use super::super::resp::Value;

/// The number of hash slots in a cluster ("Key distribution model").
pub const SLOTS: u16 = 16384;

/// CRC16 as the cluster spec names it: XMODEM (polynomial 0x1021, initial value 0, no
/// reflection, no final xor); "Output for '123456789': 31C3".
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The part of `key` that is hashed: its hash tag when it has a non-empty one (between the
/// first `{` and the first `}` after it), else the whole key ("Hash tags").
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else { return key };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(length) if length > 0 => &key[open + 1..open + 1 + length],
        _ => key,
    }
}

/// The slot of `key`: `CRC16(hash_tag(key)) mod 16384`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// A node of the cluster, as the cluster names it to clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which master serves each slot, as one `CLUSTER SLOTS` answer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The masters, each once, in order of address.
    pub masters: Vec<NodeAddr>,
    /// For each slot, its master's index in `masters`; `None` for a slot nobody serves (the
    /// cluster is down for it: a command there is answered `CLUSTERDOWN`).
    owners: Vec<Option<u16>>,
    /// For each master, how many replicas not known to have failed follow it
    /// ([`Topology::count_replicas`]): whether a write can be confirmed by `WAIT`.
    replica_counts: Vec<usize>,
}

impl Topology {
    /// How many healthy replicas `master` has (0 for a node the table does not know).
    pub fn replicas(&self, master: &NodeAddr) -> usize {
        self.masters.iter().position(|m| m == master).map_or(0, |index| self.replica_counts[index])
    }

    /// The master serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&NodeAddr> {
        let index = (*self.owners.get(slot as usize)?)?;
        self.masters.get(index as usize)
    }

    /// Records that `slot` is now served by `addr` (a `MOVED` said so): "the client should
    /// update its table for that slot" before the whole table is asked for again.
    pub fn moved(&mut self, slot: u16, addr: NodeAddr) {
        if slot >= SLOTS {
            return;
        }
        let index = match self.masters.iter().position(|master| *master == addr) {
            Some(index) => index,
            None => {
                self.masters.push(addr);
                // Unknown until the next `CLUSTER SLOTS`.
                self.replica_counts.push(0);
                self.masters.len() - 1
            }
        };
        self.owners[slot as usize] = Some(index as u16);
    }

    /// Parses a `CLUSTER SLOTS` reply: an array of `[start, end, master, replica...]`, each
    /// node `[host, port, id, ...]`. An empty host means "the node you asked" (its address is
    /// not known to itself; the docs: "an empty string ... the endpoint is the same as the
    /// one used to send the command"), for which `asked` is put; a `?` host ("unknown
    /// endpoint") makes the range's slots unserved.
    pub fn from_cluster_slots(reply: &Value, asked: &NodeAddr) -> Result<Topology, String> {
        let ranges = reply.as_array().ok_or("CLUSTER SLOTS did not answer an array")?;
        let mut topology =
            Topology { masters: Vec::new(), owners: vec![None; SLOTS as usize], replica_counts: Vec::new() };
        for range in ranges {
            let fields = range.as_array().ok_or("a CLUSTER SLOTS range is not an array")?;
            let [start, end, master, ..] = fields else { return Err("a CLUSTER SLOTS range is too short".into()) };
            let slot = |value: &Value| value.as_integer().and_then(|n| u16::try_from(n).ok()).filter(|&n| n < SLOTS);
            let (Some(start), Some(end)) = (slot(start), slot(end)) else {
                return Err("a CLUSTER SLOTS range has no valid bounds".into());
            };
            let node = master.as_array().ok_or("a CLUSTER SLOTS node is not an array")?;
            let [host, port, ..] = node else { return Err("a CLUSTER SLOTS node has no address".into()) };
            let host = host.as_str().ok_or("a CLUSTER SLOTS host is not text")?;
            let port = port.as_integer().and_then(|p| u16::try_from(p).ok()).ok_or("bad port in CLUSTER SLOTS")?;
            let addr = match host {
                "?" => continue,
                "" => NodeAddr { host: asked.host.clone(), port },
                host => NodeAddr { host: host.to_string(), port },
            };
            for slot in start..=end {
                topology.moved(slot, addr.clone());
            }
        }
        if topology.masters.is_empty() {
            return Err("CLUSTER SLOTS names no master: is the cluster set up?".into());
        }
        Ok(topology)
    }

    /// Counts each master's replicas from a `CLUSTER NODES` reply: one line per node,
    /// `<id> <ip:port@cport[,hostname]> <flags> <master id or -> ...`, a replica's flags
    /// naming `slave` and a failed node's `fail`. Not from `CLUSTER SLOTS`, which leaves out
    /// a replica that has not replicated anything yet (an idle new cluster lists none).
    /// An empty ip (`:port`) is `asked`'s.
    pub fn count_replicas(&mut self, cluster_nodes: &str, asked: &NodeAddr) {
        let nodes: Vec<Vec<&str>> = cluster_nodes.lines().map(|line| line.split(' ').collect()).collect();
        let address = |id: &str| {
            let node = nodes.iter().find(|fields| fields.first() == Some(&id))?;
            let (host, port) = node.get(1)?.split(['@', ',']).next()?.rsplit_once(':')?;
            let host = if host.is_empty() { asked.host.clone() } else { host.to_string() };
            Some(NodeAddr { host, port: port.parse().ok()? })
        };
        self.replica_counts = vec![0; self.masters.len()];
        for fields in &nodes {
            let (Some(flags), Some(master)) = (fields.get(2), fields.get(3)) else { continue };
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"slave") || flags.contains(&"fail") {
                continue;
            }
            let Some(master) = address(master) else { continue };
            if let Some(index) = self.masters.iter().position(|m| *m == master) {
                self.replica_counts[index] += 1;
            }
        }
    }
}

/// A redirection: the error a node answers for a key whose slot it does not serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED`: the slot is served by `to` from now on.
    Moved { slot: u16, to: NodeAddr },
    /// `ASK`: the slot is migrating to `to` and this key is already there; send that command
    /// there once, after `ASKING`.
    Ask { slot: u16, to: NodeAddr },
}

impl Redirect {
    /// Parses `MOVED <slot> <host>:<port>` or `ASK <slot> <host>:<port>` (the text of an error
    /// reply, without its `-`). An empty host ("MOVED 3999 :6380", sent when the node does not
    /// know its own address) is the node that answered: `answered_by`'s host.
    pub fn parse(error: &str, answered_by: &NodeAddr) -> Option<Redirect> {
        let mut words = error.split(' ');
        let kind = words.next()?;
        let slot = words.next()?.parse::<u16>().ok().filter(|&slot| slot < SLOTS)?;
        let (host, port) = words.next()?.rsplit_once(':')?;
        if words.next().is_some() {
            return None;
        }
        let port = port.parse::<u16>().ok().filter(|&port| port > 0)?;
        let host = match host.trim_start_matches('[').trim_end_matches(']') {
            "" => answered_by.host.clone(),
            host => host.to_string(),
        };
        let to = NodeAddr { host, port };
        match kind {
            "MOVED" => Some(Redirect::Moved { slot, to }),
            "ASK" => Some(Redirect::Ask { slot, to }),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A slot table as `CLUSTER SLOTS` answers it: each range `(first, last, port)` served by
    /// the master `127.0.0.1:port`.
    pub(in crate::broker::redis) fn slot_table(ranges: &[(u16, u16, u16)]) -> Topology {
        let bulk = |s: &str| Value::Bulk(Some(s.as_bytes().to_vec()));
        let ranges = ranges.iter().map(|&(first, last, port)| {
            let master = Value::Array(Some(vec![bulk("127.0.0.1"), Value::Integer(port.into()), bulk("id")]));
            Value::Array(Some(vec![Value::Integer(first.into()), Value::Integer(last.into()), master]))
        });
        let asked = NodeAddr { host: "127.0.0.1".into(), port: 7001 };
        Topology::from_cluster_slots(&Value::Array(Some(ranges.collect())), &asked).unwrap()
    }

    fn addr(host: &str, port: u16) -> NodeAddr {
        NodeAddr { host: host.into(), port }
    }

    #[test]
    fn crc16_is_xmodem_with_the_specs_test_vector() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn keys_with_the_same_hash_tag_share_a_slot() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
        // Known slots, as `CLUSTER KEYSLOT` answers them.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1}.following"), 8106);
        assert_eq!(key_slot(b"abc"), 7638);
    }

    #[test]
    fn an_empty_or_unclosed_hash_tag_hashes_the_whole_key_and_the_first_braces_win() {
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"plain"), b"plain");
    }

    fn node(host: &str, port: i64, id: &str) -> Value {
        Value::Array(Some(vec![
            Value::Bulk(Some(host.as_bytes().to_vec())),
            Value::Integer(port),
            Value::Bulk(Some(id.as_bytes().to_vec())),
        ]))
    }

    fn range(start: i64, end: i64, nodes: Vec<Value>) -> Value {
        let mut fields = vec![Value::Integer(start), Value::Integer(end)];
        fields.extend(nodes);
        Value::Array(Some(fields))
    }

    #[test]
    fn cluster_slots_replies_map_every_slot_to_its_master() {
        let reply = Value::Array(Some(vec![
            range(0, 5460, vec![node("127.0.0.1", 7001, "a"), node("127.0.0.1", 7004, "d")]),
            range(5461, 10922, vec![node("", 7002, "b")]),
            range(10923, 16383, vec![node("127.0.0.1", 7003, "c")]),
        ]));
        let topology = Topology::from_cluster_slots(&reply, &addr("10.0.0.9", 7000)).unwrap();
        assert_eq!(topology.owner(0), Some(&addr("127.0.0.1", 7001)));
        assert_eq!(topology.owner(5460), Some(&addr("127.0.0.1", 7001)));
        assert_eq!(topology.owner(5461), Some(&addr("10.0.0.9", 7002)), "an empty host is the node asked");
        assert_eq!(topology.owner(16383), Some(&addr("127.0.0.1", 7003)));
        assert_eq!(topology.owner(16384), None);
        assert_eq!(topology.masters.len(), 3, "replicas are not masters");
    }

    #[test]
    fn cluster_nodes_lines_count_the_replicas_that_have_not_failed() {
        // As Redis 7.0 answered for a three-master cluster, 7104 marked failed.
        let nodes = "\
382c 127.0.0.1:7101@17101 myself,master - 0 1796040522000 1 connected 0-5460
c0c1 127.0.0.1:7102@17102 master - 0 1796040522542 2 connected 5461-10922
3fe7 127.0.0.1:7106@17106 slave 382c 0 1796040522744 1 connected
95c5 :7103@17103 master - 0 1796040522845 3 connected 10923-16383
5d98 127.0.0.1:7104@17104 slave,fail c0c1 0 1796040522643 2 disconnected
98ec 127.0.0.1:7105@17105,replica5.example slave 95c5 0 1796040522542 3 connected
";
        let reply = Value::Array(Some(vec![
            range(0, 5460, vec![node("127.0.0.1", 7101, "a")]),
            range(5461, 10922, vec![node("127.0.0.1", 7102, "b")]),
            range(10923, 16383, vec![node("127.0.0.1", 7103, "c")]),
        ]));
        let asked = addr("127.0.0.1", 7101);
        let mut topology = Topology::from_cluster_slots(&reply, &asked).unwrap();
        topology.count_replicas(nodes, &asked);
        assert_eq!(topology.replicas(&addr("127.0.0.1", 7101)), 1);
        assert_eq!(topology.replicas(&addr("127.0.0.1", 7102)), 0, "its only replica failed");
        assert_eq!(topology.replicas(&addr("127.0.0.1", 7103)), 1, "an empty ip is the node asked");
        assert_eq!(topology.replicas(&addr("127.0.0.1", 7106)), 0, "not a master");
    }

    #[test]
    fn a_cluster_slots_reply_with_holes_leaves_them_unserved_and_garbage_is_refused() {
        let reply =
            Value::Array(Some(vec![range(0, 99, vec![node("h", 1, "a")]), range(100, 199, vec![node("?", 2, "b")])]));
        let topology = Topology::from_cluster_slots(&reply, &addr("h", 1)).unwrap();
        assert_eq!(topology.owner(99), Some(&addr("h", 1)));
        assert_eq!(topology.owner(100), None);
        assert_eq!(topology.owner(200), None);
        for bad in [
            Value::Integer(1),
            Value::Array(Some(vec![])),
            Value::Array(Some(vec![range(0, 16384, vec![node("h", 1, "a")])])),
            Value::Array(Some(vec![range(0, 1, vec![])])),
        ] {
            assert!(Topology::from_cluster_slots(&bad, &addr("h", 1)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn moved_updates_one_slot_and_may_name_a_new_master() {
        let reply = Value::Array(Some(vec![range(0, 16383, vec![node("h", 1, "a")])]));
        let mut topology = Topology::from_cluster_slots(&reply, &addr("h", 1)).unwrap();
        topology.moved(42, addr("h", 2));
        assert_eq!(topology.owner(42), Some(&addr("h", 2)));
        assert_eq!(topology.owner(43), Some(&addr("h", 1)));
        assert_eq!(topology.masters.len(), 2);
    }

    #[test]
    fn moved_and_ask_errors_name_the_slot_and_the_node_to_ask() {
        let asked = addr("127.0.0.1", 7000);
        assert_eq!(
            Redirect::parse("MOVED 3999 127.0.0.1:6381", &asked),
            Some(Redirect::Moved { slot: 3999, to: addr("127.0.0.1", 6381) })
        );
        assert_eq!(
            Redirect::parse("ASK 3999 10.0.0.2:6380", &asked),
            Some(Redirect::Ask { slot: 3999, to: addr("10.0.0.2", 6380) })
        );
        assert_eq!(
            Redirect::parse("MOVED 1 :6380", &asked),
            Some(Redirect::Moved { slot: 1, to: addr("127.0.0.1", 6380) }),
            "an empty host is the node that answered"
        );
        assert_eq!(
            Redirect::parse("MOVED 1 ::1:6380", &asked),
            Some(Redirect::Moved { slot: 1, to: addr("::1", 6380) })
        );
        for bad in ["ERR unknown", "MOVED", "MOVED x h:1", "MOVED 16384 h:1", "MOVED 1 h", "MOVED 1 h:0", "ASK 1 h:1 x"]
        {
            assert_eq!(Redirect::parse(bad, &asked), None, "{bad:?}");
        }
    }
}
