//! Following a channel from the client side, sans-I/O like the server's core: a
//! [`Subscriber`] takes the bytes its socket received and returns the bytes to send, and
//! records each message it got and when. It follows one channel over one transport: a long
//! poll that asks again from its cursor, an SSE stream read with the WHATWG parser, or a
//! WebSocket.
//!
//! What it received goes to a [`Sink`]: by default a `Vec<Delivery>` of owned copies, for
//! `realtime sub`, the soak and the tests; `realtime bench fanout` gives each subscriber a
//! sink that counts and times a delivery as it arrives ([`crate::bench`]). Between the socket
//! and the sink nothing is allocated per message on SSE: the event-stream parser lends its
//! buffers ([`EventStreamParser::feed_with`]), the envelope is scanned where it lies
//! ([`super::envelope`]), and the cursor is one `String` overwritten in place. (A WebSocket
//! message still arrives as a `String` from [`Session::receive`].)
//!
//! It uses the crate's own client-side codecs (the response head parser, the chunked decoder,
//! the event-stream parser, the WebSocket session in its client role), so it follows any
//! server that speaks the contract in `docs/PROTOCOL.md`, not just this one. The load
//! generator drives thousands of them on one thread (`crate::bench::engine`); `realtime sub`
//! drives one over a blocking socket (`crate::cli::subscribe`).

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::envelope;
use crate::http::body::{BodyDecoder, BodyFraming};
use crate::http::grammar::Parsed;
use crate::http::request::Limits;
use crate::http::response_head::{parse_response, ResponseFraming};
use crate::json;
use crate::random::RandomSource;
use crate::sse::EventStreamParser;
use crate::sync::lock;
use crate::ws::handshake;
use crate::ws::message::Message as WsMessage;
use crate::ws::session::{Event as WsEvent, Session, DEFAULT_MAX_MESSAGE};

use crate::transport::Transport;

/// A message as a subscriber received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub text: String,
    /// The envelope's `time`: when it was published, in milliseconds since the Unix epoch.
    pub time: Option<u64>,
    pub at: Instant,
    /// A gap notice came just before this message: the server said that messages between the
    /// subscriber's cursor and this one were lost to its history.
    pub after_gap: bool,
}

/// A message as a subscriber lends it to its [`Sink`], borrowed from its buffers.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    pub id: &'a str,
    pub text: &'a str,
    /// The envelope's `time`: when it was published, in milliseconds since the Unix epoch.
    pub time: Option<u64>,
    pub at: Instant,
    /// A gap notice came just before this message (see [`Delivery::after_gap`]).
    pub after_gap: bool,
}

/// Where a [`Subscriber`] puts each message it receives.
pub trait Sink {
    fn deliver(&mut self, message: Received<'_>);
}

/// Keeps a copy of every message, to be taken (`drain`) by the caller.
impl Sink for Vec<Delivery> {
    fn deliver(&mut self, message: Received<'_>) {
        self.push(Delivery {
            id: message.id.to_string(),
            text: message.text.to_string(),
            time: message.time,
            at: message.at,
            after_gap: message.after_gap,
        });
    }
}

/// Largest long-poll answer a client accepts. The answers this tool provokes are small (its
/// texts are a few bytes; an answer holds at most 1000 of them); the bound is what a
/// misbehaving server can make each of thousands of clients buffer.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Masking keys for every client WebSocket of the process, from one `/dev/urandom` reader
/// (one file descriptor, not one per connection).
#[derive(Clone)]
pub struct Masks(Arc<Mutex<RandomSource>>);

impl Masks {
    pub fn new() -> std::io::Result<Masks> {
        Ok(Masks(Arc::new(Mutex::new(RandomSource::new()?))))
    }

    pub fn session(&self) -> Session {
        let source = self.0.clone();
        Session::new_client(DEFAULT_MAX_MESSAGE, Box::new(move || lock(&source).next_u32_bytes()))
    }

    pub fn key(&self) -> String {
        let mut source = lock(&self.0);
        let mut nonce = [0u8; handshake::KEY_NONCE_LEN];
        for chunk in nonce.chunks_mut(4) {
            chunk.copy_from_slice(&source.next_u32_bytes());
        }
        handshake::client_key(&nonce)
    }
}

/// Where a client is in its connection.
enum Phase {
    /// Request sent, waiting for the response head.
    Head,
    /// A long poll's answer, being read.
    PollBody { decoder: BodyDecoder, body: Vec<u8> },
    /// An event stream, forever.
    Stream { decoder: Option<BodyDecoder>, parser: EventStreamParser, body: Vec<u8> },
    /// After the 101.
    WebSocket(Box<Session>),
}

/// Follows one channel over one transport, putting what it receives into `S`.
pub struct Subscriber<S = Vec<Delivery>> {
    transport: Transport,
    host: String,
    channel: String,
    /// The id of the last message received: where a long poll asks again from.
    cursor: Option<String>,
    /// Sent as `Authorization: Bearer` with every request.
    token: Option<String>,
    /// Expected `Sec-WebSocket-Accept` input: the key sent.
    key: String,
    masks: Masks,
    /// Bytes received and not yet decoded: `input[read..]`. Moved to the front once per
    /// [`Subscriber::receive`], not after each message.
    input: Vec<u8>,
    read: usize,
    phase: Phase,
    /// Where received messages go (by default, kept until the scenario takes them).
    pub deliveries: S,
    /// `gap` notices received (messages the server says were lost to its history).
    pub gaps: usize,
    /// A gap notice has come and no message since: the next delivery is marked `after_gap`.
    gap_pending: bool,
    /// Requests sent (a long poll counts each round trip).
    pub requests: usize,
    /// Whether the subscription is established (the 200 or 101 has arrived).
    pub established: bool,
    /// The status the server answered instead of the 200 or 101, if it refused.
    pub refused: Option<u16>,
}

impl Subscriber {
    /// A subscriber to `channel` on `host`, resuming after `since` if given; its request is
    /// appended to `out`.
    pub fn start(
        transport: Transport,
        host: &str,
        channel: &str,
        since: Option<&str>,
        masks: &Masks,
        out: &mut Vec<u8>,
    ) -> Subscriber {
        Subscriber::start_with_token(transport, host, channel, since, None, masks, out)
    }

    /// [`Subscriber::start`], showing `token` (`Authorization: Bearer`) with every request.
    pub fn start_with_token(
        transport: Transport,
        host: &str,
        channel: &str,
        since: Option<&str>,
        token: Option<&str>,
        masks: &Masks,
        out: &mut Vec<u8>,
    ) -> Subscriber {
        let mut subscriber = Subscriber {
            transport,
            host: host.to_string(),
            channel: channel.to_string(),
            cursor: since.map(str::to_string),
            token: token.map(str::to_string),
            key: String::new(),
            masks: masks.clone(),
            input: Vec::new(),
            read: 0,
            phase: Phase::Head,
            deliveries: Vec::new(),
            gaps: 0,
            gap_pending: false,
            requests: 0,
            established: false,
            refused: None,
        };
        subscriber.write_request(out);
        subscriber
    }

    /// The same subscriber, putting what it receives into `sink` from now on.
    pub fn with_sink<T>(self, sink: T) -> Subscriber<T> {
        let Subscriber {
            transport,
            host,
            channel,
            cursor,
            token,
            key,
            masks,
            input,
            read,
            phase,
            deliveries: _,
            gaps,
            gap_pending,
            requests,
            established,
            refused,
        } = self;
        Subscriber {
            transport,
            host,
            channel,
            cursor,
            token,
            key,
            masks,
            input,
            read,
            phase,
            deliveries: sink,
            gaps,
            gap_pending,
            requests,
            established,
            refused,
        }
    }
}

impl<S: Sink> Subscriber<S> {
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The id of the last message received (where to resume from).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The `Sec-WebSocket-Key` the WebSocket handshake sent (empty on other transports): what
    /// a test standing in for the server answers with.
    pub fn websocket_key(&self) -> &str {
        &self.key
    }

    /// The reconnection time an event stream asked for (`retry:`), once it has arrived.
    pub fn retry(&self) -> Option<u64> {
        match &self.phase {
            Phase::Stream { parser, .. } => parser.retry(),
            _ => None,
        }
    }

    fn write_request(&mut self, out: &mut Vec<u8>) {
        self.requests += 1;
        let (host, channel) = (&self.host, &self.channel);
        let since = self.cursor.as_deref().map(|id| format!("?since={id}")).unwrap_or_default();
        let authorization = self.token.as_deref().map(|token| format!("Bearer {token}"));
        let authorization_field =
            authorization.as_deref().map(|value| format!("Authorization: {value}\r\n")).unwrap_or_default();
        match self.transport {
            Transport::LongPoll => {
                let query = self.cursor.as_deref().map(|id| format!("&since={id}")).unwrap_or_default();
                out.extend_from_slice(
                    format!(
                        "GET /poll/{channel}?timeout=60{query} HTTP/1.1\r\nHost: {host}\r\n{authorization_field}\r\n"
                    )
                    .as_bytes(),
                );
            }
            Transport::Sse => {
                let resume = self.cursor.as_deref().map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
                out.extend_from_slice(
                    format!(
                        "GET /sse/{channel} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
                         {resume}{authorization_field}\r\n"
                    )
                    .as_bytes(),
                );
            }
            Transport::WebSocket => {
                self.key = self.masks.key();
                let path = format!("/ws/{channel}{since}");
                let fields: Vec<(&str, &str)> =
                    authorization.as_deref().map(|value| ("Authorization", value)).into_iter().collect();
                // Host and path come from the command line and a channel name: visible ASCII.
                let _ = handshake::write_client_request_with_fields(out, host, &path, &self.key, None, &fields);
            }
        }
    }

    /// Takes bytes from the socket; appends any reply (the next poll, a pong) to `out`.
    /// An error means the connection is of no further use.
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String> {
        // What the last call decoded goes; what it left (a partial frame, head or chunk) moves
        // to the front: one move per read, of a partial message at most, not one per message.
        self.input.drain(..self.read);
        self.read = 0;
        self.input.extend_from_slice(bytes);
        // The phase is taken out while it works, so that it can hand messages to `self`; it
        // is put back on every path but an error, after which nothing more is read.
        let mut phase = std::mem::replace(&mut self.phase, Phase::Head);
        loop {
            let progressed = match &mut phase {
                Phase::Head => match self.read_head()? {
                    Some(next) => {
                        phase = next;
                        true
                    }
                    None => false,
                },
                Phase::PollBody { decoder, body } => {
                    let progress =
                        decoder.decode(&self.input[self.read..], body).map_err(|e| e.message().to_string())?;
                    self.read += progress.consumed;
                    if progress.done {
                        let body = std::mem::take(body);
                        self.read_poll_answer(&body, now)?;
                        phase = Phase::Head;
                        self.write_request(out);
                        true
                    } else {
                        false
                    }
                }
                Phase::Stream { decoder, parser, body } => {
                    let text = match decoder {
                        Some(decoder) => {
                            let progress =
                                decoder.decode(&self.input[self.read..], body).map_err(|e| e.message().to_string())?;
                            self.read += progress.consumed;
                            if progress.done {
                                return Err("the event stream ended".into());
                            }
                            &body[..]
                        }
                        None => {
                            body.extend_from_slice(&self.input[self.read..]);
                            self.read = self.input.len();
                            &body[..]
                        }
                    };
                    let mut failed = None;
                    let fed = parser.feed_with(text, |event| {
                        if failed.is_none() {
                            let outcome = match event.event_type {
                                "gap" => {
                                    note_gap(&mut self.gaps, &mut self.gap_pending);
                                    Ok(())
                                }
                                _ => self.deliver(event.data, now),
                            };
                            failed = outcome.err();
                        }
                    });
                    body.clear();
                    fed.map_err(|e| e.to_string())?;
                    if let Some(error) = failed {
                        return Err(error);
                    }
                    false
                }
                Phase::WebSocket(session) => {
                    let (consumed, event) = session.receive(&mut self.input[self.read..], out);
                    self.read += consumed;
                    match event {
                        Some(WsEvent::Message(WsMessage::Text(text))) => {
                            self.deliver(&text, now)?;
                            true
                        }
                        Some(WsEvent::Message(WsMessage::Binary(_))) => return Err("binary frame on a channel".into()),
                        Some(WsEvent::Ping(_) | WsEvent::Pong(_)) => true,
                        Some(WsEvent::Closed(info)) => return Err(format!("closed by the server: {:?}", info.code)),
                        Some(WsEvent::Failed(error)) => return Err(format!("protocol error: {}", error.describe())),
                        None => consumed > 0,
                    }
                }
            };
            if !progressed {
                self.phase = phase;
                return Ok(());
            }
        }
    }

    /// Parses the response head; the phase it begins, once it is complete.
    fn read_head(&mut self) -> Result<Option<Phase>, String> {
        let input = &self.input[self.read..];
        let head = match parse_response(input, &Limits::default()).map_err(|e| e.message().to_string())? {
            Parsed::Partial => return Ok(None),
            Parsed::Complete { value, consumed } => (value, consumed),
        };
        let (head, consumed) = head;
        let expected = if self.transport == Transport::WebSocket { 101 } else { 200 };
        if head.status != expected {
            self.refused = Some(head.status);
            return Err(format!("answered {} {}", head.status, head.reason));
        }
        let framing = head.body_framing(false).map_err(|e| e.message().to_string())?;
        let phase = match self.transport {
            Transport::WebSocket => {
                let accepted =
                    head.header("sec-websocket-accept").is_some_and(|v| handshake::check_server_accept(&self.key, v));
                if !accepted {
                    return Err("wrong Sec-WebSocket-Accept".into());
                }
                Phase::WebSocket(Box::new(self.masks.session()))
            }
            Transport::LongPoll => Phase::PollBody { decoder: body_decoder(framing)?, body: Vec::new() },
            Transport::Sse => Phase::Stream {
                decoder: match framing {
                    ResponseFraming::UntilClose => None,
                    // An event stream never ends, so its total length has no bound; what one
                    // read decodes is handed to the parser (which bounds lines and events) and
                    // cleared at once, so nothing accumulates.
                    ResponseFraming::Chunked => {
                        Some(BodyDecoder::new(BodyFraming::Chunked, usize::MAX).map_err(|e| e.message().to_string())?)
                    }
                    framing => Some(body_decoder(framing)?),
                },
                parser: EventStreamParser::new(),
                body: Vec::new(),
            },
        };
        self.read += consumed;
        self.established = true;
        Ok(Some(phase))
    }

    /// `{"messages":[...],"cursor":"ID",...,"gap":true?}`
    fn read_poll_answer(&mut self, body: &[u8], now: Instant) -> Result<(), String> {
        let text = std::str::from_utf8(body).map_err(|_| "poll answer is not UTF-8")?;
        let answer = json::parse(text).map_err(|e| format!("poll answer: {e}"))?;
        if answer.get("gap").and_then(json::Value::as_bool) == Some(true) {
            note_gap(&mut self.gaps, &mut self.gap_pending);
        }
        for message in answer.get("messages").and_then(json::Value::as_array).unwrap_or_default() {
            let field =
                |name| message.get(name).and_then(json::Value::as_str).ok_or(format!("envelope without {name}"));
            self.push(field("id")?, field("text")?, message.get("time").and_then(json::Value::as_u64), now);
        }
        if let Some(cursor) = answer.get("cursor").and_then(json::Value::as_str) {
            self.cursor = Some(cursor.to_string());
        }
        Ok(())
    }

    /// One envelope, `{"id":...,"text":...,"time":...}`, or a WebSocket's gap notice.
    fn deliver(&mut self, envelope: &str, now: Instant) -> Result<(), String> {
        let envelope = envelope::read(envelope).map_err(|e| format!("envelope: {e}"))?;
        if envelope.gap {
            note_gap(&mut self.gaps, &mut self.gap_pending);
            return Ok(());
        }
        let id = envelope.id.ok_or("envelope without id")?;
        let text = envelope.text.ok_or("envelope without text")?;
        self.push(&id, &text, envelope.time, now);
        Ok(())
    }

    /// Hands one message to the sink; its id becomes the cursor (overwritten in place).
    fn push(&mut self, id: &str, text: &str, time: Option<u64>, at: Instant) {
        let after_gap = std::mem::take(&mut self.gap_pending);
        self.deliveries.deliver(Received { id, text, time, at, after_gap });
        match &mut self.cursor {
            Some(cursor) => {
                cursor.clear();
                cursor.push_str(id);
            }
            None => self.cursor = Some(id.to_string()),
        }
    }
}

/// A gap notice: counted, and the next message is marked as coming after it.
fn note_gap(gaps: &mut usize, gap_pending: &mut bool) {
    *gaps += 1;
    *gap_pending = true;
}

/// The server's answer to a client's WebSocket handshake, once its head has arrived.
pub struct HandshakeAnswer {
    pub status: u16,
    pub reason: String,
    /// `Sec-WebSocket-Accept` matches the key sent (RFC 6455 §4.1: the client MUST check it).
    pub accepted: bool,
    /// Bytes of the head; what follows is already the server's frames.
    pub consumed: usize,
}

impl HandshakeAnswer {
    /// The status, or 0 for a 101 whose accept key is wrong (not a WebSocket after all).
    pub fn status_if_accepted(&self) -> u16 {
        if self.accepted {
            self.status
        } else {
            0
        }
    }
}

/// Reads the answer to a WebSocket handshake sent with `key`; `None` while it is incomplete.
pub fn handshake_answer(input: &[u8], key: &str) -> Result<Option<HandshakeAnswer>, String> {
    match parse_response(input, &Limits::default()).map_err(|e| e.message().to_string())? {
        Parsed::Partial => Ok(None),
        Parsed::Complete { value, consumed } => Ok(Some(HandshakeAnswer {
            status: value.status,
            reason: value.reason.to_string(),
            accepted: value.header("sec-websocket-accept").is_some_and(|v| handshake::check_server_accept(key, v)),
            consumed,
        })),
    }
}

fn body_decoder(framing: ResponseFraming) -> Result<BodyDecoder, String> {
    let framing = match framing {
        ResponseFraming::None => BodyFraming::None,
        ResponseFraming::Length(length) => BodyFraming::Length(length),
        ResponseFraming::Chunked => BodyFraming::Chunked,
        ResponseFraming::UntilClose => return Err("a response without a length".into()),
    };
    BodyDecoder::new(framing, MAX_BODY_BYTES).map_err(|e| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(payload: &str) -> Vec<u8> {
        format!("{:x}\r\n{payload}\r\n", payload.len()).into_bytes()
    }

    #[test]
    fn an_event_stream_longer_than_any_body_limit_is_read_to_the_end() {
        let masks = Masks::new().unwrap();
        let mut out = Vec::new();
        let mut sse = Subscriber::start(Transport::Sse, "x", "c", None, &masks, &mut out);
        let now = Instant::now();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        sse.receive(head.as_bytes(), &mut out, now).unwrap();
        let text = "x".repeat(64 * 1024);
        let events = MAX_BODY_BYTES / text.len() + 10; // more bytes in all than MAX_BODY_BYTES
        for i in 0..events {
            let event = format!("id: a-{i}\ndata: {{\"id\":\"a-{i}\",\"text\":\"{text}\",\"time\":1}}\n\n");
            sse.receive(&chunk(&event), &mut out, now).unwrap();
        }
        assert_eq!(sse.deliveries.len(), events);
        assert_eq!(sse.cursor(), Some(format!("a-{}", events - 1).as_str()));
    }

    #[test]
    fn what_is_decoded_leaves_the_input_so_a_stream_read_mid_frame_does_not_pile_up() {
        let masks = Masks::new().unwrap();
        let mut out = Vec::new();
        let mut ws = Subscriber::start(Transport::WebSocket, "x", "c", None, &masks, &mut out);
        let accept = handshake::accept_key(ws.websocket_key().as_bytes());
        let head = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        let now = Instant::now();
        ws.receive(head.as_bytes(), &mut out, now).unwrap();
        let envelope = r#"{"id":"a-1","text":"hi","time":1}"#;
        let frame = [&[0x81, envelope.len() as u8][..], envelope.as_bytes()].concat();
        // Every read ends in the middle of a frame, so the input is never empty after one.
        let stream = frame.repeat(1000);
        for read in stream.chunks(frame.len() + 3) {
            ws.receive(read, &mut out, now).unwrap();
            assert!(ws.input.len() - ws.read < 2 * frame.len(), "{} bytes held", ws.input.len());
            assert!(ws.input.len() < 3 * frame.len(), "{} bytes held", ws.input.len());
        }
        assert_eq!(ws.deliveries.len(), 1000);
    }

    #[test]
    fn a_long_poll_answer_is_delivered_and_the_next_request_asks_from_its_cursor() {
        let masks = Masks::new().unwrap();
        let mut out = Vec::new();
        let mut poll = Subscriber::start(Transport::LongPoll, "x", "c", Some("a-1"), &masks, &mut out);
        assert!(String::from_utf8_lossy(&out).starts_with("GET /poll/c?timeout=60&since=a-1 HTTP/1.1\r\n"));
        out.clear();
        let body = r#"{"messages":[{"id":"a-2","text":"hi","time":1}],"cursor":"a-2"}"#;
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        poll.receive(answer.as_bytes(), &mut out, Instant::now()).unwrap();
        assert_eq!(poll.deliveries.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(), ["hi"]);
        assert!(String::from_utf8_lossy(&out).starts_with("GET /poll/c?timeout=60&since=a-2 HTTP/1.1\r\n"));
        assert_eq!(poll.requests, 2);
    }
}
