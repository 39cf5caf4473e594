//! Publishes that travel together: the publishes queued on a lane of the link before it next
//! sends ([`super::pipeline`]) become one call of the publish script ([`PUBLISH_SCRIPT`]),
//! and its answer, one element per publish, is handed back to each publish's caller as if it
//! had been sent alone.
//!
//! A script call costs Redis something of its own beyond the publishes in it (reading and
//! parsing the command, entering Lua, writing the reply: [`PUBLISH_SCRIPT`]'s docs have the
//! measures), and Redis runs on one core: what a call costs bounds the publishes a Redis (or
//! a cluster's shard) can take from every node together. A batch is only what was waiting
//! anyway (a worker's turn of publishes, or what queued while the lane's writer was
//! writing): nothing is held back to make one.
//!
//! On a cluster the keys of one script call must hash to one slot (Redis answers `CROSSSLOT`
//! otherwise), so a batch holds publishes of one slot: a busy channel's publishes go
//! together, and publishes to channels of other slots start calls of their own. A slot that
//! moved refuses the whole call before it runs (`MOVED`, `ASK`: every publish of the batch
//! gets the redirection as its reply), and each publish then follows the redirection alone
//! (`super::router`): a publish sent again is never run twice.
//!
//! Under `--model threads` a connection thread sends its publish at once (it has no turn to
//! hold the send to), so a call carries one publish unless another thread's send or the
//! lane's writer is on its way: there a call carries 1.04 publishes on average and batching
//! gains little (README, "What the hop costs").
//!
//! [`PUBLISH_SCRIPT`]: super::PUBLISH_SCRIPT

#![forbid(unsafe_code)]

use std::sync::Arc;

use super::channel::lifetimes_ms;
use super::resp::{encode_bulk, Value};
use super::Limits;
use super::OnReplies;
use crate::broker::BrokerError;
use crate::decimal::push_decimal;
use crate::time::Instant;

/// Publishes in one script call at most. With the worker sending its turn's commands every 16
/// (`SEND_EARLY_AFTER`) a batch rarely reaches it; it bounds what queues while the lane's
/// writer waits on a slow Redis, and how long one script holds Redis (some 4 µs a publish).
pub const MAX_PUBLISHES: usize = 64;

/// Bytes of names and texts past which a batch takes no more publishes (a publish larger
/// than this still goes, alone): one script call is a unit for Redis, read whole before it
/// runs, so a few large texts do not ride with many small ones.
pub const MAX_BYTES: usize = 256 * 1024;

/// The arguments of the publish script's `EVALSHA` that are the same for every call, written
/// once per broker rather than per call (a string each).
pub struct PublishArgs {
    /// SHA-1 of the script ([`super::PUBLISH_SCRIPT`] or [`super::CLUSTER_PUBLISH_SCRIPT`]).
    sha: String,
    /// `ARGV[1]`: the history length the stream is trimmed to.
    history: String,
    /// `ARGV[2]` and `ARGV[3]`: the stream's and the newest-id key's lifetimes, in ms.
    stream_ttl: String,
    newest_ttl: String,
}

impl PublishArgs {
    pub(super) fn new(script: &str, limits: &Limits) -> PublishArgs {
        let (stream_ttl, newest_ttl) = lifetimes_ms(limits.channel_ttl);
        PublishArgs {
            sha: sha1_smol::Sha1::from(script).digest().to_string(),
            history: limits.history.messages.to_string(),
            stream_ttl,
            newest_ttl,
        }
    }
}

/// One publish's names in Redis and its text.
#[derive(Clone, Copy)]
pub struct Publish<'a> {
    /// The channel's stream and the key of its newest id ([`super::KeySpace`]).
    pub stream: &'a str,
    pub newest: &'a str,
    /// The pub/sub (or shard) channel its news goes out on.
    pub topic: &'a str,
    pub text: &'a str,
    /// On a cluster, the slot of its keys (the channel's hash tag): a batch holds publishes of
    /// one slot. `None` on one Redis.
    pub slot: Option<u16>,
}

impl Publish<'_> {
    /// What it adds to a batch's size ([`MAX_BYTES`]).
    fn size(&self) -> usize {
        self.stream.len() + self.newest.len() + self.topic.len() + self.text.len()
    }
}

/// Publishes gathered for one call of the publish script: each one's two `KEYS` and two
/// `ARGV` already encoded as RESP bulk strings (the text is copied once, here), and each
/// one's caller.
pub(super) struct PublishBatch {
    args: Arc<PublishArgs>,
    /// The slot of its publishes on a cluster ([`Publish::slot`]).
    slot: Option<u16>,
    keys: Vec<u8>,
    argv: Vec<u8>,
    callers: Vec<OnReplies>,
    /// When the first publish joined: the batch's age is its oldest publish's.
    first_queued: Instant,
}

impl PublishBatch {
    pub(super) fn new(args: Arc<PublishArgs>) -> PublishBatch {
        PublishBatch {
            args,
            slot: None,
            keys: Vec::new(),
            argv: Vec::new(),
            callers: Vec::new(),
            first_queued: Instant::now(),
        }
    }

    /// Publishes in the batch.
    pub(super) fn len(&self) -> usize {
        self.callers.len()
    }

    /// When the first of its publishes was queued.
    pub(super) fn first_queued(&self) -> Instant {
        self.first_queued
    }

    /// Whether `publish` may join: it is for the batch's slot, and the batch is under
    /// [`MAX_PUBLISHES`], and under [`MAX_BYTES`] with it (an empty batch takes any publish).
    pub(super) fn has_room_for(&self, publish: &Publish) -> bool {
        self.callers.is_empty()
            || (publish.slot == self.slot
                && self.callers.len() < MAX_PUBLISHES
                && self.keys.len() + self.argv.len() + publish.size() <= MAX_BYTES)
    }

    /// Adds a publish; `on_replies` is called once with its own reply, as for a command sent
    /// alone (`[id]`, or `[error]`), or with why there is none.
    pub(super) fn push(&mut self, publish: &Publish, on_replies: OnReplies) {
        if self.callers.is_empty() {
            (self.first_queued, self.slot) = (Instant::now(), publish.slot);
        }
        encode_bulk(&mut self.keys, Some(publish.stream.as_bytes()));
        encode_bulk(&mut self.keys, Some(publish.newest.as_bytes()));
        encode_bulk(&mut self.argv, Some(publish.topic.as_bytes()));
        encode_bulk(&mut self.argv, Some(publish.text.as_bytes()));
        self.callers.push(on_replies);
    }

    /// Appends the script call of `publish` alone to `out`: what a publish is sent as again
    /// when its batch was redirected.
    pub(super) fn encode_alone(publish: &Publish, args: &Arc<PublishArgs>, out: &mut Vec<u8>) {
        let mut alone = PublishBatch::new(args.clone());
        alone.push(publish, Box::new(|_| {}));
        let _ = alone.encode(out);
    }

    /// Appends the batch's `EVALSHA` to `out` and returns the callback its one reply goes to,
    /// which hands each publish its own element ([`split_reply`]).
    pub(super) fn encode(self, out: &mut Vec<u8>) -> OnReplies {
        let PublishBatch { args, keys, argv, callers, .. } = self;
        let publishes = callers.len();
        // EVALSHA, the SHA-1, the number of keys, two keys a publish, three common
        // arguments, two arguments a publish.
        out.push(b'*');
        push_decimal(out, 6 + 4 * publishes);
        out.extend_from_slice(b"\r\n");
        encode_bulk(out, Some(b"EVALSHA"));
        encode_bulk(out, Some(args.sha.as_bytes()));
        let mut count = Vec::with_capacity(8);
        push_decimal(&mut count, 2 * publishes);
        encode_bulk(out, Some(&count));
        out.extend_from_slice(&keys);
        encode_bulk(out, Some(args.history.as_bytes()));
        encode_bulk(out, Some(args.stream_ttl.as_bytes()));
        encode_bulk(out, Some(args.newest_ttl.as_bytes()));
        out.extend_from_slice(&argv);
        Box::new(move |replies| split_reply(callers, replies))
    }
}

/// Hands each publish of a batch its element of the script's answer, in order (a call of one
/// publish is answered with that element alone, not an array). An error for the whole call
/// (`NOSCRIPT`, a script Redis killed) is every publish's reply; an answer of another shape
/// fails them all, as does a link that failed.
fn split_reply(callers: Vec<OnReplies>, replies: Result<Vec<Value>, BrokerError>) {
    let answer = replies.map(|mut replies| replies.pop());
    match answer {
        Ok(Some(Value::Array(Some(ids)))) if ids.len() == callers.len() => {
            for (caller, id) in callers.into_iter().zip(ids) {
                caller(Ok(vec![id]));
            }
        }
        Ok(Some(id @ Value::Bulk(Some(_)))) if callers.len() == 1 => {
            if let Some(caller) = callers.into_iter().next() {
                caller(Ok(vec![id]));
            }
        }
        Ok(Some(Value::Error(message))) => {
            for caller in callers {
                caller(Ok(vec![Value::Error(message.clone())]));
            }
        }
        Ok(_) => {
            let error = BrokerError::Unavailable("the publish script answered something else".into());
            for caller in callers {
                caller(Err(error.clone()));
            }
        }
        Err(error) => {
            for caller in callers {
                caller(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::tests::count;
    use crate::broker::redis::PUBLISH_SCRIPT;
    use crate::broker::resp::{decode, Limits as RespLimits};
    use std::sync::mpsc;
    use std::time::Duration;

    fn args() -> Arc<PublishArgs> {
        let limits = Limits { history: count(100), channel_ttl: Duration::from_secs(300), ..Limits::default() };
        Arc::new(PublishArgs::new(PUBLISH_SCRIPT, &limits))
    }

    fn publish<'a>(names: &'a [String; 3], text: &'a str) -> Publish<'a> {
        Publish { stream: &names[0], newest: &names[1], topic: &names[2], text, slot: None }
    }

    fn names(channel: &str) -> [String; 3] {
        [format!("realtime:{channel}"), format!("realtime:{channel}:newest"), format!("realtime:0:{channel}")]
    }

    /// What caller `index` of a batch was told.
    type Told = (usize, Result<Vec<Value>, BrokerError>);

    /// A batch whose callers report what they were told on the returned channel.
    fn batch_of(texts: &[(&str, &str)]) -> (PublishBatch, mpsc::Receiver<Told>) {
        let (tell, told) = mpsc::channel();
        let mut batch = PublishBatch::new(args());
        for (i, (channel, text)) in texts.iter().enumerate() {
            let names = names(channel);
            let tell = tell.clone();
            batch.push(&publish(&names, text), Box::new(move |replies| tell.send((i, replies)).unwrap()));
        }
        (batch, told)
    }

    fn bulk(text: &str) -> Value {
        Value::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn a_batch_is_one_evalsha_with_two_keys_and_two_arguments_per_publish_after_three_common_ones() {
        let (batch, _told) = batch_of(&[("a", "one"), ("b", "two"), ("a", "three")]);
        let mut out = Vec::new();
        let _ = batch.encode(&mut out);
        let (command, used) = decode(&out, &RespLimits::default()).unwrap().unwrap();
        assert_eq!(used, out.len(), "one command");
        let args: Vec<&str> = command.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let sha = sha1_smol::Sha1::from(PUBLISH_SCRIPT).digest().to_string();
        assert_eq!(
            args,
            [
                "EVALSHA",
                sha.as_str(),
                "6",
                "realtime:a",
                "realtime:a:newest",
                "realtime:b",
                "realtime:b:newest",
                "realtime:a",
                "realtime:a:newest",
                "100",
                "300000",
                "86700000",
                "realtime:0:a",
                "one",
                "realtime:0:b",
                "two",
                "realtime:0:a",
                "three",
            ]
        );
    }

    #[test]
    fn each_publish_gets_its_own_element_of_the_answer_in_order_errors_included() {
        let (batch, told) = batch_of(&[("a", "one"), ("b", "two"), ("a", "three")]);
        let on_reply = batch.encode(&mut Vec::new());
        let wrong_type = Value::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into());
        on_reply(Ok(vec![Value::Array(Some(vec![bulk("5-0"), wrong_type.clone(), bulk("5-1")]))]));
        let answers: Vec<_> = told.try_iter().collect();
        assert_eq!(
            answers,
            [(0, Ok(vec![bulk("5-0")])), (1, Ok(vec![wrong_type])), (2, Ok(vec![bulk("5-1")]))],
            "one reply each, as if sent alone"
        );
    }

    #[test]
    fn an_error_for_the_whole_call_or_a_failed_link_is_every_publishs_answer() {
        let (batch, told) = batch_of(&[("a", "one"), ("b", "two")]);
        let noscript = Value::Error("NOSCRIPT No matching script.".into());
        batch.encode(&mut Vec::new())(Ok(vec![noscript.clone()]));
        assert_eq!(told.try_iter().collect::<Vec<_>>(), [(0, Ok(vec![noscript.clone()])), (1, Ok(vec![noscript]))]);

        let (batch, told) = batch_of(&[("a", "one"), ("b", "two")]);
        let lost = BrokerError::Unavailable("connection lost".into());
        batch.encode(&mut Vec::new())(Err(lost.clone()));
        assert_eq!(told.try_iter().collect::<Vec<_>>(), [(0, Err(lost.clone())), (1, Err(lost))]);
    }

    #[test]
    fn an_answer_with_an_element_too_few_fails_every_publish_rather_than_misattribute_one() {
        let (batch, told) = batch_of(&[("a", "one"), ("b", "two")]);
        batch.encode(&mut Vec::new())(Ok(vec![Value::Array(Some(vec![bulk("5-0")]))]));
        let answers: Vec<_> = told.try_iter().collect();
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(|(_, answer)| matches!(answer, Err(BrokerError::Unavailable(_)))), "{answers:?}");
    }

    #[test]
    fn a_batch_takes_publishes_up_to_its_count_and_its_bytes_and_an_empty_one_takes_any() {
        let names = names("a");
        let small = publish(&names, "x");
        let mut batch = PublishBatch::new(args());
        for _ in 0..MAX_PUBLISHES {
            assert!(batch.has_room_for(&small));
            batch.push(&small, Box::new(|_| {}));
        }
        assert!(!batch.has_room_for(&small), "{MAX_PUBLISHES} publishes at most");

        let large_text = "y".repeat(MAX_BYTES);
        let large = publish(&names, &large_text);
        let mut batch = PublishBatch::new(args());
        assert!(batch.has_room_for(&large), "a publish larger than a batch goes alone");
        batch.push(&large, Box::new(|_| {}));
        assert!(!batch.has_room_for(&small), "and nothing rides with it");
        let mut batch = PublishBatch::new(args());
        batch.push(&small, Box::new(|_| {}));
        assert!(!batch.has_room_for(&large), "nor does it ride with others");
    }

    #[test]
    fn on_a_cluster_a_batch_takes_publishes_of_its_own_slot_only() {
        let (a, b) = (names("a"), names("b"));
        let in_slot = |names, slot| Publish { slot: Some(slot), ..publish(names, "x") };
        let mut batch = PublishBatch::new(args());
        assert!(batch.has_room_for(&in_slot(&a, 15495)));
        batch.push(&in_slot(&a, 15495), Box::new(|_| {}));
        assert!(batch.has_room_for(&in_slot(&a, 15495)), "the same channel");
        assert!(!batch.has_room_for(&in_slot(&b, 3300)), "another slot: a call of its own");
        assert!(batch.has_room_for(&in_slot(&b, 15495)), "another channel of the same slot");
    }

    #[test]
    fn a_call_of_one_publish_is_answered_with_its_id_alone() {
        let (batch, told) = batch_of(&[("a", "one")]);
        batch.encode(&mut Vec::new())(Ok(vec![bulk("5-0")]));
        assert_eq!(told.try_iter().collect::<Vec<_>>(), [(0, Ok(vec![bulk("5-0")]))]);

        let (batch, told) = batch_of(&[("a", "one"), ("b", "two")]);
        batch.encode(&mut Vec::new())(Ok(vec![bulk("5-0")]));
        let answers: Vec<_> = told.try_iter().collect();
        assert!(answers.iter().all(|(_, answer)| answer.is_err()), "two publishes want two ids: {answers:?}");
    }
}
