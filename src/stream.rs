//! The two connections that outlive a request: a Server-Sent Events stream and a WebSocket.
//!
//! Both follow a channel through a [`Subscription`] and *pull*: whenever the broker wakes the
//! connection (or its output has drained), they read the messages after their cursor and
//! append each one to the output, framing the broker's shared envelope
//! ([`crate::broker::Message::envelope`]) as they write it: an SSE event is a few bytes of
//! `id:`/`data:` around it ([`sse::LineEvent`]), in one HTTP chunk; a WebSocket
//! message is a frame header before it ([`encode_frame`]). A message is stored once, as its
//! envelope, and a fan-out to N clients copies it N times, once into each output.
//!
//! Backpressure: a stream stops pulling while [`crate::config::Config::max_outbound_bytes`]
//! wait to be sent. What a slow client has not read stays in the channel's history, not in a
//! per-connection queue, so memory per connection is bounded. A client that takes nothing for
//! `send_timeout` is disconnected (`Connection::advance`); it resumes from its last id, and if
//! it fell further behind than the history, it is told so with a gap.
//!
//! Authority: a stream opened with a signed token ([`crate::gate`]) ends when the token
//! expires (a WebSocket with 1008 "token expired", an SSE stream with its last chunk; the
//! client reconnects with a fresh token). A WebSocket that was not granted publishing is
//! receive-only: a text frame closes it with 1008 and is not published.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::app::App;
use crate::broker::{Batch, BrokerError, Gap, Message, Pending, Reader};
use crate::gate::Grant;
use crate::http::response::{write_chunk_pieces, write_head, write_last_chunk};
use crate::json;
use crate::sse;
use crate::subscription::Subscription;
use crate::time::{Instant, Now};
use crate::transport::Transport;
use crate::wake::Wake;
use crate::ws::close::CloseCode;
use crate::ws::frame::{encode_frame, Opcode};
use crate::ws::handshake;
use crate::ws::message::Message as WsMessage;
use crate::ws::session::{Event, Session, State as WsState};

/// Messages read from the broker at a time. Small enough that one read overshoots the
/// outbound limit by little, large enough that a fan-out does not lock the channel per message.
const PULL_BATCH: usize = 16;

/// How long a WebSocket waits for the peer's Close after sending its own (RFC 6455 §7.1.1:
/// the server closes TCP once the handshake is done; a peer that never answers must not hold
/// the connection).
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a stream may touch while it advances: the connection's buffers and context.
pub struct Io<'a> {
    pub app: &'a App,
    pub subscriber: u64,
    /// The client's address, for `--publish-rate`.
    pub peer: IpAddr,
    pub wake: &'a Wake,
    pub now: Now,
    pub input: &'a mut Vec<u8>,
    pub output: &'a mut Vec<u8>,
    /// The client closed its sending side.
    pub input_closed: bool,
}

impl Io<'_> {
    fn has_room(&self) -> bool {
        self.output.len() < self.app.config.max_outbound_bytes
    }
}

/// Whether a stream goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Flush the output, then close the connection.
    Close,
}

/// `{"since":"k3f9-1","oldest":"k3f9-3"}`: what a gap notice carries (`oldest` is null when
/// the history is empty).
fn gap_json(gap: &Gap, prefix: &str) -> String {
    let mut out = String::from(prefix);
    out.push_str("\"since\":");
    json::write_string(&mut out, &gap.since);
    out.push_str(",\"oldest\":");
    match &gap.oldest {
        Some(oldest) => json::write_string(&mut out, oldest),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// What a stream keeps of its [`Grant`]: when it must end, and whose it is. Boxed, and only
/// when a token opened the stream: a stream without one keeps a word, not 24 bytes (README,
/// "What an idle connection costs").
#[derive(Debug)]
struct Authority(Option<Box<Token>>);

#[derive(Debug)]
struct Token {
    /// When the token that opened the stream expires (`None`: once the stream has acted on it).
    expires: Option<Instant>,
    /// The token's `sub`, counted in `/stats` while the stream is open.
    subject: Option<Box<str>>,
}

impl Authority {
    fn start(grant: &Grant, io: &Io<'_>) -> Authority {
        if let Some(subject) = &grant.subject {
            io.app.stats.subject_opened(subject);
        }
        if grant.expires.is_none() && grant.subject.is_none() {
            return Authority(None);
        }
        Authority(Some(Box::new(Token {
            expires: grant.expires.map(|exp| io.now.instant_at_unix_secs(exp)),
            subject: grant.subject.as_deref().map(Box::from),
        })))
    }

    fn expires(&self) -> Option<Instant> {
        self.0.as_ref().and_then(|token| token.expires)
    }

    fn has_expired(&self, now: Instant) -> bool {
        self.expires().is_some_and(|expires| now >= expires)
    }

    /// The expiry has been acted on (the stream is closing): it is no longer a deadline.
    fn forget_expiry(&mut self) {
        if let Some(token) = &mut self.0 {
            token.expires = None;
        }
    }

    fn stop(&mut self, app: &App) {
        if let Some(subject) = self.0.as_mut().and_then(|token| token.subject.take()) {
            app.stats.subject_closed(&subject);
        }
    }
}

/// The earlier of a stream's own deadline and its token's expiry.
fn earliest(deadline: Instant, expires: Option<Instant>) -> Instant {
    expires.map_or(deadline, |expires| deadline.min(expires))
}

/// Reads the next batch if there is room for it, counting deliveries (and the latency of those
/// published since `live_from_ms`, when the stream started: [`crate::stats::Stats::batch_delivered`]).
fn pull(io: &mut Io<'_>, subscription: &mut Subscription, transport: Transport, live_from_ms: u64) -> Option<Batch> {
    if !io.has_room() {
        return None;
    }
    let reader = Reader { subscriber: io.subscriber, wake: io.wake };
    let batch = subscription.read(&*io.app.broker, PULL_BATCH, reader);
    // In flight: the broker wakes us when it lands.
    if batch.messages.is_empty() && batch.gap.is_none() {
        return None;
    }
    io.app.stats.batch_delivered(transport, &batch, live_from_ms, io.now.unix_ms);
    Some(batch)
}

/// A `text/event-stream` response (WHATWG HTML §9.2) following one channel.
#[derive(Debug)]
pub struct SseStream {
    subscription: Subscription,
    /// HTTP/1.1: every event is one chunk. HTTP/1.0: raw bytes; the close ends the stream.
    chunked: bool,
    next_keepalive: Instant,
    authority: Authority,
    /// When the stream started (wall clock, ms): what counts as a live message.
    live_from_ms: u64,
}

impl SseStream {
    /// The response head of an event stream: `text/event-stream`, never stored, never
    /// buffered by a proxy, with the exchange's CORS `fields`; chunked on HTTP/1.1, delimited
    /// by the connection's close on HTTP/1.0 (RFC 9112 §6.3 rule 8).
    pub fn write_head(output: &mut Vec<u8>, cors_fields: &[(&str, &str)], chunked: bool, date: &str) {
        let mut headers = SseStream::head_fields(cors_fields);
        headers.push(if chunked { ("Transfer-Encoding", "chunked") } else { ("Connection", "close") });
        write_head(output, 200, &headers, date);
    }

    /// The fields of an event stream's head whatever the HTTP version (HTTP/2 sends these,
    /// without HTTP/1.1's framing fields).
    pub fn head_fields<'a>(cors_fields: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut headers = vec![
            ("Content-Type", "text/event-stream"),
            // WHATWG HTML §9.2.7 recommends it; intermediaries must not store the stream.
            ("Cache-Control", "no-cache"),
            // nginx buffers upstream responses unless told not to; an event must go out at once.
            ("X-Accel-Buffering", "no"),
        ];
        // `Vary: Origin` always, `Access-Control-Allow-Origin` for an allowed page (the gate).
        headers.extend_from_slice(cors_fields);
        headers
    }

    /// Writes the stream's first bytes (`retry:`) and registers with the broker, so that
    /// nothing published from now on can be missed.
    pub fn start(mut subscription: Subscription, chunked: bool, grant: Grant, io: &mut Io<'_>) -> SseStream {
        subscription.register(&*io.app.broker, io.subscriber, io.wake, io.now.instant);
        let mut retry = Vec::new();
        sse::encode_retry(&mut retry, io.app.config.sse_retry.as_millis() as u64);
        let stream = SseStream {
            subscription,
            chunked,
            next_keepalive: io.now.instant + io.app.config.keepalive,
            authority: Authority::start(&grant, io),
            live_from_ms: io.now.unix_ms,
        };
        stream.write(io.output, &[&retry]);
        stream
    }

    /// Writes one block of the event stream, given as pieces: one chunk on HTTP/1.1, raw bytes
    /// on HTTP/1.0.
    fn write(&self, output: &mut Vec<u8>, pieces: &[&[u8]]) {
        if self.chunked {
            write_chunk_pieces(output, pieces);
        } else {
            for piece in pieces {
                output.extend_from_slice(piece);
            }
        }
    }

    pub fn next_deadline(&self) -> Instant {
        earliest(self.next_keepalive, self.authority.expires())
    }

    pub fn advance(&mut self, io: &mut Io<'_>) -> Next {
        if io.app.is_shutting_down() || self.authority.has_expired(io.now.instant) {
            // The last-chunk ends the response cleanly: the client sees the end of the stream,
            // not a broken connection (and EventSource reconnects after `retry`).
            if self.chunked {
                write_last_chunk(io.output);
            }
            return Next::Close;
        }
        if io.input_closed {
            return Next::Close;
        }
        while let Some(batch) = pull(io, &mut self.subscription, Transport::Sse, self.live_from_ms) {
            if let Some(gap) = &batch.gap {
                // Sent before the replay it precedes, so the client knows what it missed.
                let mut event = Vec::new();
                let data = gap_json(gap, "{");
                // A constant event type and a one-line JSON text cannot fail to encode.
                let _ = sse::encode_event(&mut event, None, Some("gap"), &data);
                self.write(io.output, &[&event]);
            }
            for message in &batch.messages {
                // `id:` the message id, `data:` the envelope, no `event:` (`message` is the
                // default type). Ids come from the broker and never hold CR, LF or NUL; the
                // envelope is one line.
                if let Ok(event) = sse::LineEvent::message(&message.id, message.envelope()) {
                    self.write(io.output, &event.pieces());
                }
            }
        }
        if io.now.instant >= self.next_keepalive {
            // WHATWG HTML §9.2.7: "Legacy proxy servers are known to, in certain cases, drop
            // HTTP connections after a short timeout. To protect against such proxy servers,
            // authors can include a comment line ... every 15 seconds or so."
            let mut comment = Vec::new();
            sse::encode_comment(&mut comment, "keepalive");
            self.write(io.output, &[&comment]);
            self.next_keepalive = io.now.instant + io.app.config.keepalive;
        }
        Next::Continue
    }

    /// Leaves the channel at `now`.
    pub fn stop(&mut self, app: &App, subscriber: u64, now: Instant) {
        self.subscription.unregister(&*app.broker, subscriber, now);
        self.authority.stop(app);
    }
}

/// An upgraded connection: `/echo`, or `/ws/{channel}` following a channel.
pub struct WebSocketStream {
    session: Session,
    /// `None` on `/echo`.
    subscription: Option<Subscription>,
    next_ping: Instant,
    /// When the oldest unanswered ping went out.
    ping_unanswered_since: Option<Instant>,
    /// After our Close: when we stop waiting for the peer's.
    close_deadline: Option<Instant>,
    /// Whether the client's text frames may be published (the gate's grant).
    may_publish: bool,
    /// The client's message being published, and when we stop waiting for the broker
    /// (`--redis-timeout`). No further frame is read meanwhile: the client's messages are
    /// published in the order it sent them, one at a time, and a client that sends faster
    /// than the broker answers is pushed back on by its socket, not buffered. Boxed: an idle
    /// WebSocket keeps one pointer, not 40 bytes (README, "Idle connections").
    publishing: Option<Box<(Pending<Arc<Message>>, Instant)>>,
    authority: Authority,
    /// The code of the first Close frame on the wire, ours or the peer's (for the access log).
    first_close: Option<CloseCode>,
    /// When the socket opened (wall clock, ms): what counts as a live message.
    live_from_ms: u64,
}

impl WebSocketStream {
    /// Answers the opening handshake (`101 Switching Protocols` with `accept`, RFC 6455 §4.2.2),
    /// then follows the channel, if any.
    pub fn start(
        accept: &handshake::Accepted,
        subscription: Option<Subscription>,
        grant: Grant,
        io: &mut Io<'_>,
    ) -> WebSocketStream {
        handshake::write_accept_response(io.output, accept);
        let mut subscription = subscription;
        if let Some(subscription) = &mut subscription {
            subscription.register(&*io.app.broker, io.subscriber, io.wake, io.now.instant);
        }
        // On a channel every message is published, so the publish limit is the message limit:
        // the session refuses a longer one with 1009 as soon as a frame header declares it, or
        // its fragments so far exceed it, instead of assembling it first. `/echo` keeps
        // `--max-message-bytes`.
        let config = &io.app.config;
        let max_message = match subscription {
            Some(_) => config.max_message_bytes.min(config.max_publish_bytes),
            None => config.max_message_bytes,
        };
        let mut session = Session::new_server(max_message);
        if let Some(agreement) = accept.deflate {
            session.use_deflate(agreement);
        }
        WebSocketStream {
            session,
            subscription,
            next_ping: io.now.instant + io.app.config.keepalive,
            ping_unanswered_since: None,
            close_deadline: None,
            may_publish: grant.may_publish,
            publishing: None,
            authority: Authority::start(&grant, io),
            first_close: None,
            live_from_ms: io.now.unix_ms,
        }
    }

    /// Why the WebSocket ended, for the access log: the code of the first Close frame sent
    /// or received; 1005 if that frame carried no code and 1006 if no Close went either way,
    /// the codes RFC 6455 §7.1.5 reserves for saying so ("considered to be 1005", "considered
    /// to be 1006").
    pub fn close_code(&self) -> CloseCode {
        self.first_close.unwrap_or(CloseCode(1006))
    }

    pub fn next_deadline(&self, keepalive: Duration) -> Instant {
        if let Some(close) = self.close_deadline {
            // Our Close is sent: no more pings or expiry, only the wait for the peer's Close.
            // (A ping deadline left in the past here would have a driver spin until then.)
            return close;
        }
        let mut deadline = self.next_ping;
        if let Some(since) = self.ping_unanswered_since {
            deadline = deadline.min(since + 2 * keepalive);
        }
        if let Some(publishing) = &self.publishing {
            deadline = deadline.min(publishing.1);
        }
        earliest(deadline, self.authority.expires())
    }

    /// Starts the closing handshake (RFC 6455 §7.1.2) and bounds the wait for the answer.
    fn close(&mut self, io: &mut Io<'_>, code: CloseCode, reason: &str) {
        if self.session.close(code, reason, io.output).is_ok() {
            self.first_close.get_or_insert(code);
            self.close_deadline = Some(io.now.instant + CLOSE_HANDSHAKE_TIMEOUT);
        }
    }

    pub fn advance(&mut self, io: &mut Io<'_>) -> Next {
        self.finish_publish(io);
        self.read_frames(io);
        match self.session.state() {
            // RFC 6455 §7.1.1: "the server SHOULD close [the TCP connection] first": after the
            // closing handshake, or after failing the connection, it does so at once.
            WsState::Closed => return Next::Close,
            WsState::CloseSent => {
                let expired = self.close_deadline.is_some_and(|deadline| io.now.instant >= deadline);
                return if expired || io.input_closed { Next::Close } else { Next::Continue };
            }
            WsState::Open => {}
        }
        if io.app.is_shutting_down() {
            // RFC 6455 §7.4.1: 1001 "indicates that an endpoint is "going away", such as a
            // server going down".
            self.close(io, CloseCode::GOING_AWAY, "server shutting down");
            return if io.input_closed { Next::Close } else { Next::Continue };
        }
        if io.input_closed {
            return Next::Close; // the peer went away without a closing handshake
        }
        if self.authority.has_expired(io.now.instant) {
            // RFC 6455 §7.4.1: 1008, "a message that violates its policy"; the policy is the
            // token's lifetime. The client reconnects with a fresh token and `?since=`.
            self.authority.forget_expiry();
            self.close(io, CloseCode::POLICY, "token expired");
            return Next::Continue;
        }
        let keepalive = io.app.config.keepalive;
        if self.ping_unanswered_since.is_some_and(|since| io.now.instant >= since + 2 * keepalive) {
            return Next::Close; // no pong within two intervals: the peer or the path is gone
        }
        if io.now.instant >= self.next_ping {
            // RFC 6455 §5.5.2: "A Ping frame MAY be sent ... as a means to verify that the
            // remote endpoint is still responsive." It also keeps proxies from timing out.
            let _ = self.session.send_ping(b"", io.output);
            self.ping_unanswered_since.get_or_insert(io.now.instant);
            self.next_ping = io.now.instant + keepalive;
        }
        if let Some(subscription) = &mut self.subscription {
            while let Some(batch) = pull(io, subscription, Transport::WebSocket, self.live_from_ms) {
                if let Some(gap) = &batch.gap {
                    let _ = self.session.send_text(&gap_json(gap, "{\"gap\":true,"), io.output);
                }
                for message in &batch.messages {
                    // An unmasked text frame carrying the envelope (RFC 6455 §5.1: "A server
                    // MUST NOT mask any frames that it sends to the client"): its header, then
                    // the envelope, copied from the history straight into the output.
                    // Compressed (RFC 7692) without context takeover, it is the same for every
                    // subscriber: compressed once, by the first delivery, and shared.
                    let envelope = message.envelope();
                    match self.session.shared_compression() {
                        Some(window_bits) => {
                            let compressed = io.app.ws_compressed.get(message, envelope.as_bytes(), window_bits);
                            let _ = self.session.send_compressed_text(envelope, compressed.as_deref(), io.output);
                        }
                        None if self.session.is_compressing() => {
                            let _ = self.session.send_text(envelope, io.output);
                        }
                        None => encode_frame(io.output, true, Opcode::Text, envelope.as_bytes(), None),
                    }
                }
            }
        }
        Next::Continue
    }

    /// Feeds the client's bytes to the session and acts on what they amount to; none while a
    /// message of the client's is being published. What the session took is removed from the
    /// input once, at the end: removing it after each message would move the rest of the input
    /// every time (a read often holds several messages), which was most of the server's
    /// `memmove` on a pipelined echo.
    fn read_frames(&mut self, io: &mut Io<'_>) {
        let mut taken = 0;
        loop {
            if self.publishing.is_some() {
                break;
            }
            let (consumed, event) = self.session.receive(&mut io.input[taken..], io.output);
            taken += consumed;
            match event {
                None if consumed == 0 => break,
                None => {}
                Some(Event::Message(message)) => self.on_message(io, message),
                Some(Event::Pong(_)) => self.ping_unanswered_since = None,
                // Closed and Failed leave the session Closed; a Close with no code is 1005.
                Some(Event::Closed(info)) => {
                    self.first_close.get_or_insert(info.code.unwrap_or(CloseCode(1005)));
                }
                Some(Event::Failed(error)) => {
                    self.first_close.get_or_insert(error.close_code());
                }
                // Pings are answered by the session.
                Some(Event::Ping(_)) => {}
            }
        }
        io.input.drain(..taken);
    }

    fn on_message(&mut self, io: &mut Io<'_>, message: WsMessage) {
        if self.subscription.is_none() {
            // `/echo`: every message goes back as it came (Autobahn's test target).
            let _ = match &message {
                WsMessage::Text(text) => self.session.send_text(text, io.output),
                WsMessage::Binary(data) => self.session.send_binary(data, io.output),
            };
            self.session.recycle(message);
            return;
        }
        let text = match message {
            WsMessage::Text(text) => text,
            // RFC 6455 §7.4.1: 1003 "indicates that an endpoint is terminating the connection
            // because it has received a type of data it cannot accept".
            WsMessage::Binary(_) => {
                return self.close(io, CloseCode::UNSUPPORTED_DATA, "binary messages are not published")
            }
        };
        if !self.may_publish {
            return self.close(io, CloseCode::POLICY, "this connection may not publish");
        }
        if io.app.gate.take_publish(io.peer, io.now.instant).is_err() {
            io.app.stats.refusal(crate::stats::Refusal::Rate);
            return self.close(io, CloseCode::POLICY, "rate limit");
        }
        let Some(subscription) = &self.subscription else { return };
        let pending = io.app.broker.publish(subscription.channel(), &text, io.now);
        self.session.recycle(WsMessage::Text(text));
        self.publishing = Some(Box::new((pending, io.now.instant + io.app.config.redis_timeout)));
        self.finish_publish(io);
    }

    /// Looks at the message being published, if any: once the broker has answered, frames are
    /// read again; if it refused, or did not answer within `--redis-timeout` (its late answer
    /// is then discarded), the socket is closed with 1011, as a refused publish always was.
    fn finish_publish(&mut self, io: &mut Io<'_>) {
        let Some(publishing) = &mut self.publishing else { return };
        let (pending, deadline) = &mut **publishing;
        let outcome = match pending.poll(io.wake) {
            Poll::Ready(result) => result,
            Poll::Pending if io.now.instant < *deadline => return,
            Poll::Pending => Err(BrokerError::Unavailable("no answer within --redis-timeout".into())),
        };
        self.publishing = None;
        match outcome {
            Ok(_) => io.app.stats.published(),
            Err(error) => {
                // 1011: "encountered an unexpected condition that prevented it from fulfilling
                // the request". The client can retry the message after reconnecting.
                let reason = match error {
                    BrokerError::TooManyChannels => "message not published: too many channels",
                    _ => "message not published: broker unavailable",
                };
                self.close(io, CloseCode::INTERNAL_ERROR, reason);
            }
        }
    }

    /// Bytes of a client message held until its last fragment arrives.
    pub fn buffered_bytes(&self) -> usize {
        self.session.buffered_bytes()
    }

    /// Bytes of memory the session keeps for the next message.
    pub fn spare_bytes(&self) -> usize {
        self.session.spare_bytes()
    }

    /// The connection has gone quiet: frees what the session keeps for the next message.
    pub fn release_spare(&mut self) {
        self.session.release_spare();
    }

    /// Queues a close frame behind whatever the client has not read yet, for a reason that
    /// comes from the server rather than from the client's frames: a slow consumer (1008), the
    /// memory budget (1009) or an overloaded server (1011). A partial message is dropped.
    pub fn close_now(&mut self, code: CloseCode, reason: &str, output: &mut Vec<u8>) {
        if self.session.close(code, reason, output).is_ok() {
            self.first_close.get_or_insert(code);
        }
    }

    /// Leaves the channel at `now`.
    pub fn stop(&mut self, app: &App, subscriber: u64, now: Instant) {
        if let Some(subscription) = &mut self.subscription {
            subscription.unregister(&*app.broker, subscriber, now);
        }
        self.authority.stop(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README, "What an idle connection costs": an idle stream's state is one allocation, of
    /// 224 bytes for a WebSocket and 96 for an SSE stream (glibc's chunks: the size plus an
    /// 8-byte header, in steps of 16). A field added inline can move every idle connection to
    /// the next size; box what only some streams use.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_streams_state_stays_within_its_allocation_size() {
        assert!(std::mem::size_of::<WebSocketStream>() <= 224 - 8);
        assert!(std::mem::size_of::<SseStream>() <= 96 - 8);
    }
}
