//! One channel in Redis (the docs of [`super`], "One channel in Redis" and "Channels
//! expire"): what its keys are called ([`KeySpace`]), the scripts that publish to it and
//! read its newest id, stream ids as positions, and the commands that read its stream and
//! what their replies mean, a gap among them ([`gap_after`]).

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use super::link::RedisError;
use super::resp::{encode_command, Value};
use super::{Batch, Gap, Message, Position, Since};

/// How much longer than its stream a channel's newest id is remembered (the docs of [`super`],
/// "Channels expire"): a reader who had read everything and comes back within it is not told
/// of a gap, and the next publish still names that id as its `prev`. A key of a few dozen
/// bytes per channel, for a day.
pub const NEWEST_OUTLIVES_STREAM: Duration = Duration::from_secs(24 * 60 * 60);

/// The publish script's two lifetimes, in milliseconds: the stream's (`--channel-ttl`, renewed
/// by every publish) and its newest id's.
pub(super) fn lifetimes_ms(channel_ttl: Duration) -> (String, String) {
    let stream = channel_ttl.as_millis().max(1);
    (stream.to_string(), (stream + NEWEST_OUTLIVES_STREAM.as_millis()).to_string())
}

/// A channel's newest id, for a mirror's load and a new reader's tail: `KEYS[1]` the stream,
/// `KEYS[2]` the key [`PUBLISH_SCRIPT`] keeps the newest id in. It answers both, `[key,
/// stream's newest entry]` (`0-0` for what is missing), and the node takes the larger: the key
/// outlives an expired stream, and a stream written by an older version has no key (or one a
/// publish of that version did not move on). One command with one reply, sent with `EVAL`
/// (it is rare: no `NOSCRIPT` to handle).
pub const NEWEST_SCRIPT: &str = concat!(
    "local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]\n",
    "return {redis.call('GET', KEYS[2]) or '0-0', newest and newest[1] or '0-0'}\n",
);

/// The publish script, with the command that tells the nodes (`PUBLISH`, or `SPUBLISH` on a
/// cluster) as its one variable.
macro_rules! publish_script {
    ($publish:literal) => {
        concat!(
            "local n, ids, prev, moved = #KEYS, nil, nil, false\n",
            "for i = 1, n, 2 do\n",
            "  local stream, newest, text = KEYS[i], KEYS[i + 1], ARGV[i + 4]\n",
            "  if newest ~= KEYS[i - 1] then\n",
            "    moved, prev = false, redis.pcall('GET', newest)\n",
            "    if not prev then\n",
            "      local last = redis.pcall('XREVRANGE', stream, '+', '-', 'COUNT', 1)\n",
            "      prev = last.err and last or last[1] and last[1][1] or '0-0'\n",
            "    end\n",
            "  end\n",
            "  local id = prev\n",
            "  if type(prev) == 'string' then\n",
            "    id = redis.pcall('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'text', text, 'prev', prev)\n",
            "    if type(id) == 'string' then\n",
            "      redis.call('",
            $publish,
            "', ARGV[i + 3], id .. ' ' .. text)\n",
            "      prev, moved = id, true\n",
            "    end\n",
            "  end\n",
            "  if moved and newest ~= KEYS[i + 3] then\n",
            "    redis.pcall('PEXPIRE', stream, ARGV[2])\n",
            "    redis.pcall('SET', newest, prev, 'PX', ARGV[3])\n",
            "  end\n",
            "  if n == 2 then\n",
            "    return id\n",
            "  end\n",
            "  ids = ids or {}\n",
            "  ids[(i + 1) / 2] = id\n",
            "end\n",
            "return ids\n",
        )
    };
}

/// The publish script: one Lua script that Redis runs for a batch of publishes, one or more
/// ([`super::RedisBroker`] sends it with `EVALSHA`, one call for the publishes of a batch:
/// [`super::publish_batch`]).
///
/// For each publish, in order, `KEYS` holds two names: the channel's stream
/// `realtime:{channel}` and the key that keeps the id of its newest entry
/// ([`KeySpace::newest`]); `ARGV` holds three for the whole batch, the history length
/// (`MAXLEN ~`) and how long the stream and the newest id live after a publish, in
/// milliseconds (the docs of [`super`], "Channels expire"), then two for each publish, the
/// pub/sub channel `realtime:{db}:{channel}` and the text. For each publish it appends the
/// text (`XADD`) with the id of the entry before it as `prev` (what a cold read uses to tell a
/// trimmed stream from a lost one: the docs of [`super`], "One channel on a node") and
/// publishes `<id> <text>` to every node (`PUBLISH`); after the last of a run of publishes to
/// one channel it sets the stream's expiry (`PEXPIRE`) and records the run's last id as the
/// newest, with its own expiry. It answers an array with one element per publish: its id,
/// which is the message's id, or the error that refused it; a call of one publish, that
/// element alone (no table is built for it). The whole script runs atomically
/// (EVAL: "Redis guarantees the script's atomic execution"), so no other publish falls between
/// an `XADD` and its `PUBLISH`, and every node hears a channel's messages in stream order.
///
/// Batched, because what Redis spends on a script call (reading and parsing the command,
/// entering Lua, the reply) is much of a publish's cost. Redis's time per publish on this
/// machine (`redis-benchmark -P 16 -c 8`, Redis and the benchmark on a core each, two runs,
/// 2026-12-01 23:22), publishes to as many channels / to one channel:
///
/// | publishes per call | 1 | 2 | 4 | 8 | 16 |
/// |---|---|---|---|---|---|
/// | µs per publish | 6.4-6.5 / 6.2-6.5 | 5.8-5.9 / 4.8-5.1 | 5.0-5.4 / 3.6-3.9 | 4.7-5.0 / 3.2-3.3 | 4.6-4.9 / 2.7-2.8 |
///
/// The script before batching, one publish per call, took 6.2-6.3 µs in the same runs: a
/// call of one costs about what it did (a first version that answered an array of one cost
/// 0.7 µs more), two or more cost less. A run is publishes to one channel that are next to
/// each other in the batch, with one `GET`, `PEXPIRE` and `SET` for the run; the same channel
/// again later in the batch starts a run of its own, which reads the newest id the run before
/// it recorded.
///
/// One publish's failure is its own: `redis.pcall` turns an error (a key of the wrong type,
/// Redis out of memory) into that publish's element of the answer, so it answers 503 and the
/// others of the batch go on. A failed `PEXPIRE` or `SET` is left: a stream that keeps an
/// older expiry, or a newest id that lags, which can only make a false gap, never hide one
/// (below).
///
/// The newest id is kept in a key of its own because asking the stream for it (`XREVRANGE
/// ... COUNT 1`) made Lua build tables of the whole newest entry, text included: 14.3 µs of
/// Redis per publish against 10.6 µs with the key (`INFO commandstats`, `redis-benchmark -P
/// 8` on this machine, loaded). Without the key (a stream written by an older version, or a
/// key lost) the script asks the stream, as before. A key left behind by a stream deleted
/// by hand, or not moved on by an older version's publishes during a rolling upgrade, names
/// an older `prev` than the truth: that can only make a false gap, never hide one.
pub const PUBLISH_SCRIPT: &str = publish_script!("PUBLISH");

/// The publish script on a Redis Cluster: [`PUBLISH_SCRIPT`] with `SPUBLISH` (sharded pub/sub,
/// Redis 7) for `PUBLISH`. `KEYS[1]` is the stream `realtime:{channel}`, `ARGV[3]` the shard
/// channel `realtime:{channel}:live`: the same hash tag, so the same slot, the one master that
/// runs the script. Redis 7.0 does not check that a script's shard channel is in its key's
/// slot (a `SPUBLISH` for another slot would reach only this shard's subscribers), so the two
/// names are made by one function ([`KeySpace`]) and a test holds them to one slot. `SPUBLISH`
/// reaches the subscribers of the shard that owns the slot, "unlike PUBLISH, which propagates
/// to the whole cluster" (<https://redis.io/docs/latest/commands/spublish/>).
pub const CLUSTER_PUBLISH_SCRIPT: &str = publish_script!("SPUBLISH");

/// The names a channel has in Redis. On one Redis they are what they always were (a node of
/// this version shares a Redis with nodes of the last one); on a cluster both carry the
/// channel as a hash tag, so that a channel's stream and its shard channel share a slot
/// ([`super::cluster::key_slot`]). Channel names have no braces (`docs/PROTOCOL.md` §1), so the tag
/// is the whole channel name. The two layouts do not meet: a deployment moved from one Redis
/// to a cluster starts with empty streams, and an old cursor is answered with a gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpace {
    /// Stream `realtime:CHANNEL`, pub/sub channel `realtime:DB:CHANNEL` (pub/sub ignores
    /// `SELECT`, so the database is in the name).
    Single { db: u32 },
    /// Stream `realtime:{CHANNEL}`, shard channel `realtime:{CHANNEL}:live`.
    Cluster,
}

impl KeySpace {
    pub fn stream(&self, channel: &str) -> String {
        match self {
            KeySpace::Single { .. } => format!("realtime:{channel}"),
            KeySpace::Cluster => format!("realtime:{{{channel}}}"),
        }
    }

    /// The key that holds the id of the newest entry of a channel's stream (see
    /// [`PUBLISH_SCRIPT`]): `realtime:CHANNEL:newest`, which no channel's stream can be named
    /// (channel names have no `:`), or `realtime:{CHANNEL}:newest` in the stream's slot.
    pub fn newest(&self, channel: &str) -> String {
        KeySpace::newest_of(&self.stream(channel))
    }

    /// [`KeySpace::newest`] of the channel whose stream is `stream`.
    pub(super) fn newest_of(stream: &str) -> String {
        format!("{stream}:newest")
    }

    /// The pub/sub (or shard) channel that carries a channel's news.
    pub fn topic(&self, channel: &str) -> String {
        match self {
            KeySpace::Single { db } => format!("realtime:{db}:{channel}"),
            KeySpace::Cluster => format!("realtime:{{{channel}}}:live"),
        }
    }

    /// The channel a topic carries, if it is one of ours.
    pub fn channel_of<'a>(&self, topic: &'a [u8]) -> Option<&'a str> {
        let name = match self {
            KeySpace::Single { db } => topic.strip_prefix(format!("realtime:{db}:").as_bytes())?,
            KeySpace::Cluster => topic.strip_prefix(b"realtime:{")?.strip_suffix(b"}:live")?,
        };
        std::str::from_utf8(name).ok()
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, KeySpace::Cluster)
    }
}

/// The stream id of a position: `<ms>-<seq>`.
pub fn stream_id(position: Position) -> String {
    format!("{}-{}", position.get() >> 64, position.get() as u64)
}

/// A stream id `<ms>-<seq>` as a position: `ms << 64 | seq`, so positions order as ids do.
pub fn parse_stream_id(text: &str) -> Option<Position> {
    let (ms, seq) = text.split_once('-')?;
    // `u64::from_str` would accept a leading '+'; an id never has one.
    let number = |s: &str| if s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
    Some(Position::new(((number(ms)? as u128) << 64) | number(seq)? as u128))
}

/// The position just after every entry of millisecond `ms`. Real ids never get there (it
/// would take 2^64 entries in one millisecond), so such a position names no entry.
pub(super) fn end_of_millisecond(ms: u64) -> Position {
    Position::new(((ms as u128) << 64) | u64::MAX as u128)
}

pub(super) fn is_end_of_millisecond(position: Position) -> bool {
    position.get() as u64 == u64::MAX
}

pub(super) fn millis(position: Position) -> u64 {
    (position.get() >> 64) as u64
}

/// What `XINFO STREAM` says about a stream, as far as gaps are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StreamInfo {
    /// The id of the last entry ever added (trimmed or not).
    last_generated: Position,
    /// The oldest entry still in the stream: its id and its `prev` field, the id of the entry
    /// that came before it (`None` if another program wrote it without one).
    first: Option<(Position, Option<Position>)>,
}

impl StreamInfo {
    /// `XINFO STREAM` answers a flat list of field names and values; `first-entry` is an
    /// entry like `XRANGE`'s, `[id, [field, value, ...]]`.
    fn parse(reply: &Value) -> Result<StreamInfo, RedisError> {
        let fields = reply.as_array().ok_or(RedisError::Unexpected("XINFO STREAM is not an array"))?;
        let mut info = StreamInfo { last_generated: Position::new(0), first: None };
        for pair in fields.chunks(2) {
            let [name, value] = pair else { break };
            match name.as_bytes() {
                Some(b"last-generated-id") => {
                    info.last_generated = value.as_str().and_then(parse_stream_id).unwrap_or(Position::new(0))
                }
                Some(b"first-entry") if !value.is_null() => {
                    let [id, fields] = value.as_array().unwrap_or_default() else { continue };
                    let Some(id) = id.as_str().and_then(parse_stream_id) else { continue };
                    let prev = field(fields, b"prev").and_then(|v| v.as_str()).and_then(parse_stream_id);
                    info.first = Some((id, prev));
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// The value of `name` in an entry's `[field, value, ...]` list.
pub(super) fn field<'a>(fields: &'a Value, name: &[u8]) -> Option<&'a Value> {
    let fields = fields.as_array()?;
    fields.chunks(2).find(|pair| pair[0].as_bytes() == Some(name)).and_then(|pair| pair.get(1))
}

/// Did a reader at `cursor` miss entries the stream no longer has? `info` is `None` when
/// there is no stream at all; `remembered` is the newest id the stream ever had, when the key
/// beside it still says ([`NEWEST_SCRIPT`]).
///
/// Trimming removes the oldest entries, so the stream has forgotten exactly the entries up to
/// the `prev` of its oldest entry. A reader owed one of them (`cursor < prev`) missed it. A
/// cursor strictly between `prev` and the oldest entry names no entry of this stream: the
/// stream it came from was lost (Redis restarted without persistence) and everything after it
/// went with it, unless the cursor never named an entry to begin with.
pub(super) fn gap_after(cursor: Position, info: Option<&StreamInfo>, remembered: Option<Position>) -> bool {
    // `0-0` is "before the first entry"; an end-of-millisecond position is a tail handed out
    // while Redis was unreachable ([`super::Shared::estimated_now`]). Neither names an entry.
    let names_an_entry = names_an_entry(cursor);
    let Some(info) = info else {
        // No stream: if the cursor named one of its entries, the stream is gone, with
        // whatever came after the cursor; unless the cursor is the newest entry it ever had
        // (`remembered`): the stream expired with nothing the reader had not read.
        return names_an_entry && remembered != Some(cursor);
    };
    match info.first {
        // The reader is inside what the stream holds (or past it, waiting): nothing trimmed.
        Some((first, _)) if cursor >= first => false,
        Some((_, Some(prev))) => cursor < prev || (cursor > prev && names_an_entry),
        // An oldest entry without `prev`: what was trimmed before it is unknown, so a gap is
        // assumed (perhaps a false alarm; never the reverse).
        Some((_, None)) => true,
        // Empty (every entry deleted): whatever the reader had not seen is gone.
        None => cursor < info.last_generated,
    }
}

/// Whether a cursor is the id of an entry: not `0-0` ("before the first entry") and not an
/// end-of-millisecond position, a tail handed out while Redis was unreachable
/// ([`super::Shared::estimated_now`]).
pub(super) fn names_an_entry(cursor: Position) -> bool {
    cursor != Position::new(0) && !is_end_of_millisecond(cursor)
}

/// Did the stream lose the cursor's own entry? A cursor that names an entry no older than the
/// stream's oldest, yet is not in it (`present`: `XRANGE key C C` found it), names an entry
/// this stream does not have: lost with the master that had it (a failover promoted a
/// replica that never received it; its publisher was not told 201, `pipeline`'s "Replicated
/// writes"), or deleted. The reader read that entry, so entries the stream has with smaller
/// ids than its cursor (written since, on a machine whose clock is behind) may be ones it
/// never saw: a gap, never a wait past them.
pub(super) fn cursor_was_lost(cursor: Position, info: Option<&StreamInfo>, present: bool) -> bool {
    let at_or_after_oldest = info.and_then(|info| info.first).is_some_and(|(first, _)| cursor >= first);
    names_an_entry(cursor) && at_or_after_oldest && !present
}

/// One `XRANGE` entry, `[id, [field, value, ...]]`, as a message. Its text is the `text`
/// field; an entry another program wrote without one is delivered with an empty text rather
/// than stall every reader behind it.
pub(super) fn parse_entry(entry: &Value) -> Result<Arc<Message>, RedisError> {
    let [id, fields] = entry.as_array().ok_or(RedisError::Unexpected("stream entry is not an array"))? else {
        return Err(RedisError::Unexpected("stream entry is not [id, fields]"));
    };
    let id = id.as_str().ok_or(RedisError::Unexpected("stream id is not text"))?;
    let position = parse_stream_id(id).ok_or(RedisError::Unexpected("malformed stream id"))?;
    let text = field(fields, b"text").and_then(Value::as_bytes).map(String::from_utf8_lossy).unwrap_or_default();
    Ok(Arc::new(Message::new(id, position, &text, millis(position))))
}

pub(super) fn parse_entries(reply: &Value) -> Result<Vec<Arc<Message>>, RedisError> {
    match reply {
        Value::Error(message) => Err(RedisError::Reply(message.clone())),
        reply => {
            reply.as_array().ok_or(RedisError::Unexpected("XRANGE is not an array"))?.iter().map(parse_entry).collect()
        }
    }
}

/// A pub/sub payload, `<id> <text>`, as a message.
pub(super) fn parse_payload(payload: &[u8]) -> Option<Arc<Message>> {
    let space = payload.iter().position(|&b| b == b' ')?;
    let id = std::str::from_utf8(&payload[..space]).ok()?;
    let text = std::str::from_utf8(&payload[space + 1..]).ok()?;
    let position = parse_stream_id(id)?;
    Some(Arc::new(Message::new(id, position, text, millis(position))))
}

pub(super) fn newest_command(out: &mut Vec<u8>, keys: &KeySpace, channel: &str) {
    let (stream, newest) = (keys.stream(channel), keys.newest(channel));
    encode_command(out, &[b"EVAL", NEWEST_SCRIPT.as_bytes(), b"2", stream.as_bytes(), newest.as_bytes()]);
}

pub(super) fn range_command(out: &mut Vec<u8>, key: &str, after: Position, count: usize) {
    // XRANGE's start is inclusive: the entry after `after` starts one past it (an exclusive
    // `(id` start needs Redis 6.2). Past the largest position there is nothing to read.
    let start = stream_id(Position::new(after.get().saturating_add(1)));
    encode_command(out, &[b"XRANGE", key.as_bytes(), start.as_bytes(), b"+", b"COUNT", count.to_string().as_bytes()]);
}

/// The newest position of a [`NEWEST_SCRIPT`] reply, the larger of its two ids (`0-0`:
/// nothing was published, or so long ago that both are gone).
pub(super) fn parse_newest(reply: &Value) -> Result<Position, RedisError> {
    if let Value::Error(message) = reply {
        return Err(RedisError::Reply(message.clone()));
    }
    let ids = reply.as_array().ok_or(RedisError::Unexpected("the newest id is not an array"))?;
    let ids = ids.iter().map(|id| id.as_str().and_then(parse_stream_id));
    ids.map(|id| id.ok_or(RedisError::Unexpected("malformed stream id")))
        .try_fold(Position::new(0), |a, b| Ok(a.max(b?)))
}

/// The replies to [`cold_read_command`]: `OK`, four `QUEUED`, the `EXEC` array.
pub(super) const COLD_READ_REPLIES: usize = 6;

/// A read from the stream itself: the entries after the cursor, what the stream says about
/// its trimming, the cursor's own entry (is it still there?) and the newest id remembered
/// beside the stream (which outlives it: "Channels expire" in the docs of [`super`]), in one
/// `MULTI`/`EXEC` (one round trip, one consistent snapshot): six replies, the last of which
/// holds the four results.
pub(super) fn cold_read_command(out: &mut Vec<u8>, keys: &KeySpace, channel: &str, since: &Since, max: usize) {
    let (key, newest) = (keys.stream(channel), keys.newest(channel));
    let cursor = stream_id(cold_read_cursor(since));
    encode_command(out, &[b"MULTI"]);
    range_command(out, &key, cold_read_cursor(since), max);
    encode_command(out, &[b"XINFO", b"STREAM", key.as_bytes()]);
    encode_command(out, &[b"XRANGE", key.as_bytes(), cursor.as_bytes(), cursor.as_bytes()]);
    encode_command(out, &[b"GET", newest.as_bytes()]);
    encode_command(out, &[b"EXEC"]);
}

/// Where a cold read starts: after the cursor, or from the beginning for a cursor this broker
/// never produced (every well-formed id has a place in a stream); the latter is answered like
/// the memory broker answers a foreign one: everything retained, and a gap.
pub(super) fn cold_read_cursor(since: &Since) -> Position {
    match since {
        Since::After(position) => *position,
        Since::Unknown(_) => Position::new(0),
    }
}

/// The batch a cold read's replies ([`cold_read_command`]) make, with a gap exactly when an
/// entry after the cursor was trimmed ([`gap_after`]).
pub(super) fn parse_cold_read(since: &Since, mut replies: Vec<Value>) -> Result<Batch, RedisError> {
    let cursor = cold_read_cursor(since);
    let foreign = match since {
        Since::After(_) => None,
        Since::Unknown(cursor) => Some(cursor.clone()),
    };
    let exec = replies.pop().unwrap_or(Value::Array(None));
    let [xrange, xinfo, own_entry, remembered] = match exec {
        Value::Array(Some(results)) => {
            <[Value; 4]>::try_from(results).map_err(|_| RedisError::Unexpected("EXEC did not answer four results"))?
        }
        Value::Error(message) => return Err(RedisError::Reply(message)),
        _ => return Err(RedisError::Unexpected("EXEC did not answer four results")),
    };
    let messages = parse_entries(&xrange)?;
    let info = match xinfo {
        // "ERR no such key": nothing was ever published, or the stream is gone.
        Value::Error(message) if message.contains("no such key") => None,
        Value::Error(message) => return Err(RedisError::Reply(message)),
        reply => Some(StreamInfo::parse(&reply)?),
    };
    let present = !parse_entries(&own_entry)?.is_empty();
    let remembered = remembered.as_str().and_then(parse_stream_id);
    let missed = foreign.is_some()
        || gap_after(cursor, info.as_ref(), remembered)
        || cursor_was_lost(cursor, info.as_ref(), present);
    let gap = missed.then(|| Gap {
        since: foreign.unwrap_or_else(|| stream_id(cursor)),
        oldest: info.as_ref().and_then(|i| i.first).map(|(first, _)| stream_id(first)),
    });
    let position = match messages.last() {
        Some(last) => last.position,
        // Told about the gap, the reader goes on from the end of what is there.
        None if missed => {
            info.map_or(Position::new(0), |i| i.last_generated).max(remembered.unwrap_or(Position::new(0)))
        }
        None => cursor,
    };
    Ok(Batch { messages, gap, position, in_flight: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::cluster::key_slot;
    use crate::broker::redis::tests::id;
    use crate::broker::text;

    #[test]
    fn stream_ids_map_to_positions_that_order_as_redis_orders_ids() {
        assert_eq!(id("0-0"), Position::new(0));
        assert_eq!(id("1-0"), Position::new(1 << 64));
        assert_eq!(id("1700000000000-3"), Position::new((1_700_000_000_000u128 << 64) | 3));
        assert!(id("5-18446744073709551615") < id("6-0"));
        assert!(id("99-1") < id("100-0"), "ids compare as numbers, not as text");
        for text in ["0-0", "1700000000000-3", "18446744073709551615-18446744073709551615"] {
            assert_eq!(stream_id(id(text)), text);
        }
    }

    #[test]
    fn malformed_stream_ids_are_refused() {
        for bad in
            ["", "5", "5-", "-5", "a-1", "1-b", "+1-1", "1-+1", "1--1", "1-1-1", "18446744073709551616-0", " 1-1"]
        {
            assert_eq!(parse_stream_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn one_redis_keeps_its_names_and_a_cluster_puts_a_channels_stream_and_topic_in_one_slot() {
        let single = KeySpace::Single { db: 3 };
        assert_eq!((single.stream("news"), single.topic("news")), ("realtime:news".into(), "realtime:3:news".into()));
        assert_eq!(single.channel_of(b"realtime:3:news"), Some("news"));
        assert_eq!(single.channel_of(b"realtime:4:news"), None);
        let cluster = KeySpace::Cluster;
        assert_eq!(cluster.stream("news"), "realtime:{news}");
        assert_eq!(cluster.topic("news"), "realtime:{news}:live");
        assert_eq!(cluster.channel_of(b"realtime:{news}:live"), Some("news"));
        assert_eq!(cluster.channel_of(b"realtime:3:news"), None);
        assert_eq!(single.newest("news"), "realtime:news:newest");
        assert_eq!(cluster.newest("news"), "realtime:{news}:newest");
        for channel in ["news", "a", "user.42.inbox", "A-Z_09", &"x".repeat(64)] {
            let slot = key_slot(cluster.stream(channel).as_bytes());
            assert_eq!(slot, key_slot(cluster.topic(channel).as_bytes()), "{channel}");
            assert_eq!(slot, key_slot(cluster.newest(channel).as_bytes()), "{channel}");
            assert_eq!(slot, key_slot(channel.as_bytes()), "the channel is the hash tag");
        }
    }

    /// A stream whose oldest entry is `first`, recorded as coming after `prev`.
    fn info(last: &str, first: Option<(&str, Option<&str>)>) -> StreamInfo {
        StreamInfo { last_generated: id(last), first: first.map(|(first, prev)| (id(first), prev.map(id))) }
    }

    #[test]
    fn a_gap_is_reported_exactly_when_an_entry_after_the_cursor_was_trimmed() {
        // Entries 1..=300 were added, 1..=200 trimmed: 201..=300 remain, 201 after 200.
        let trimmed = info("300-0", Some(("201-0", Some("200-0"))));
        assert!(gap_after(id("1-0"), Some(&trimmed), None));
        assert!(gap_after(id("199-0"), Some(&trimmed), None));
        assert!(!gap_after(id("200-0"), Some(&trimmed), None), "the last trimmed entry is the cursor itself");
        assert!(!gap_after(id("250-0"), Some(&trimmed), None));
        assert!(!gap_after(id("300-0"), Some(&trimmed), None));
        assert!(gap_after(id("0-0"), Some(&trimmed), None), "from the beginning, 1..=200 were missed");
        let untrimmed = info("3-0", Some(("1-0", Some("0-0"))));
        assert!(!gap_after(id("0-0"), Some(&untrimmed), None));
        assert!(!gap_after(id("1-0"), Some(&untrimmed), None));
    }

    #[test]
    fn a_cursor_whose_stream_was_lost_gets_a_gap() {
        // Redis restarted without persistence: the stream is absent, or new (its first entry
        // came after nothing), and the cursor's entry is not in it.
        assert!(gap_after(id("100-4"), None, None));
        assert!(gap_after(id("100-4"), Some(&info("500-0", Some(("500-0", Some("0-0"))))), None));
        assert!(!gap_after(id("0-0"), None, None), "nothing was ever published: nothing owed");
    }

    #[test]
    fn a_cursor_at_the_newest_id_of_an_expired_stream_waits_and_any_other_gets_a_gap() {
        // Every publish renews the stream's expiry, and the key that remembers its newest id
        // lives a day longer: the stream of a channel quiet for `--channel-ttl` is gone.
        let remembered = Some(id("500-3"));
        assert!(!gap_after(id("500-3"), None, remembered), "it had read everything: nothing owed");
        assert!(gap_after(id("450-0"), None, remembered), "it had not read up to 500-3: missed");
        assert!(gap_after(id("600-0"), None, remembered), "an id the stream never gave out");
        assert!(!gap_after(end_of_millisecond(400), None, remembered), "a tail names no entry");
        // The next publish names the remembered id as its `prev`: the chain is unbroken.
        let started_again = info("900-0", Some(("900-0", Some("500-3"))));
        assert!(!gap_after(id("500-3"), Some(&started_again), remembered));
        assert!(gap_after(id("450-0"), Some(&started_again), remembered));
    }

    #[test]
    fn a_channel_lives_channel_ttl_after_its_last_publish_and_its_newest_id_a_day_longer() {
        assert_eq!(lifetimes_ms(Duration::from_secs(300)), ("300000".to_string(), "86700000".to_string()));
        let script = PUBLISH_SCRIPT;
        assert!(script.contains("'PEXPIRE', stream, ARGV[2]") && script.contains("'PX', ARGV[3]"));
    }

    #[test]
    fn the_newest_id_is_the_larger_of_the_key_and_the_stream() {
        let ids = |a: &str, b: &str| Value::Array(Some(vec![Value::Bulk(Some(a.into())), Value::Bulk(Some(b.into()))]));
        assert_eq!(parse_newest(&ids("500-3", "0-0")).unwrap(), id("500-3"), "the stream expired");
        assert_eq!(parse_newest(&ids("0-0", "400-0")).unwrap(), id("400-0"), "an older version's stream");
        assert_eq!(parse_newest(&ids("0-0", "0-0")).unwrap(), Position::new(0), "nothing, or long ago");
        assert!(parse_newest(&ids("x", "0-0")).is_err());
        assert!(parse_newest(&Value::Error("WRONGTYPE".into())).is_err());
    }

    #[test]
    fn a_cursor_whose_own_entry_the_stream_lost_gets_a_gap() {
        // The cursor's entry was on a master that died before its replica had it: the
        // promoted replica's stream holds 1-0..=300-0 and may go on with ids below 305-2.
        let failed_over = info("300-0", Some(("1-0", Some("0-0"))));
        assert!(cursor_was_lost(id("305-2"), Some(&failed_over), false), "past the newest");
        assert!(cursor_was_lost(id("250-1"), Some(&failed_over), false), "among the entries");
        assert!(!cursor_was_lost(id("250-0"), Some(&failed_over), true), "its entry is there");
        assert!(
            !cursor_was_lost(end_of_millisecond(400), Some(&failed_over), false),
            "a tail estimated while Redis was away"
        );
        assert!(!cursor_was_lost(id("0-0"), Some(&failed_over), false), "before the first entry");
        let trimmed = info("300-0", Some(("201-0", Some("200-0"))));
        assert!(!cursor_was_lost(id("150-0"), Some(&trimmed), false), "trimmed, not lost: gap_after's case");
    }

    #[test]
    fn cursors_that_name_no_entry_are_not_taken_for_lost_streams() {
        let tail_while_redis_was_down = end_of_millisecond(400);
        assert!(!gap_after(tail_while_redis_was_down, None, None));
        assert!(!gap_after(tail_while_redis_was_down, Some(&info("500-0", Some(("450-0", Some("300-0"))))), None));
        assert!(gap_after(tail_while_redis_was_down, Some(&info("500-0", Some(("421-0", Some("420-0"))))), None));
        // Past every id the stream gave out: not trimmed (whether it was lost is
        // `cursor_was_lost`'s question).
        assert!(!gap_after(id("900-0"), Some(&info("500-0", Some(("1-0", Some("0-0"))))), None));
    }

    #[test]
    fn an_oldest_entry_without_prev_or_an_empty_stream_errs_towards_a_gap() {
        let foreign_writer = info("300-0", Some(("201-0", None)));
        assert!(gap_after(id("200-0"), Some(&foreign_writer), None), "maybe a false alarm, never a silent loss");
        assert!(!gap_after(id("201-0"), Some(&foreign_writer), None));
        let emptied = info("300-0", None);
        assert!(gap_after(id("299-0"), Some(&emptied), None));
        assert!(!gap_after(id("300-0"), Some(&emptied), None));
    }

    #[test]
    fn xinfo_stream_replies_are_read_by_field_name() {
        let bulk = |s: &str| Value::Bulk(Some(s.as_bytes().to_vec()));
        let fields = Value::Array(Some(vec![bulk("text"), bulk("x"), bulk("prev"), bulk("200-0")]));
        let entry = Value::Array(Some(vec![bulk("201-0"), fields]));
        let reply = Value::Array(Some(vec![
            bulk("length"),
            Value::Integer(100),
            bulk("last-generated-id"),
            bulk("300-0"),
            bulk("max-deleted-entry-id"),
            bulk("0-0"),
            bulk("first-entry"),
            entry,
            bulk("last-entry"),
            Value::Bulk(None),
        ]));
        assert_eq!(StreamInfo::parse(&reply).unwrap(), info("300-0", Some(("201-0", Some("200-0")))));
        let empty =
            Value::Array(Some(vec![bulk("last-generated-id"), bulk("7-0"), bulk("first-entry"), Value::Bulk(None)]));
        assert_eq!(StreamInfo::parse(&empty).unwrap(), info("7-0", None));
    }

    #[test]
    fn stream_entries_and_pubsub_payloads_become_messages_with_redis_time() {
        let bulk = |s: &[u8]| Value::Bulk(Some(s.to_vec()));
        let entry = Value::Array(Some(vec![
            bulk(b"1700000000123-4"),
            Value::Array(Some(vec![bulk(b"other"), bulk(b"x"), bulk(b"text"), bulk(b"Hi")])),
        ]));
        let parsed = parse_entry(&entry).unwrap();
        assert_eq!((&*parsed.id, text(&parsed).as_str(), parsed.time_ms), ("1700000000123-4", "Hi", 1_700_000_000_123));
        let from_pubsub = parse_payload(b"1700000000123-4 Hi there").unwrap();
        assert_eq!((&*from_pubsub.id, text(&from_pubsub).as_str()), ("1700000000123-4", "Hi there"));
        assert_eq!(from_pubsub.envelope(), parsed.envelope().replace("\"Hi\"", "\"Hi there\""));
        assert!(parse_payload(b"no-id-here").is_none());
        assert!(parse_payload(b"x-1 text").is_none());
        assert!(parse_payload(b"1-1 \xff").is_none());
    }

    #[test]
    fn the_publish_script_is_addressed_by_its_sha1() {
        let sha = sha1_smol::Sha1::from(PUBLISH_SCRIPT).digest().to_string();
        assert_eq!(sha.len(), 40);
        assert!(sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "EVALSHA wants lowercase hex");
    }
}
