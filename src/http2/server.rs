//! The routes over HTTP/2: each stream an exchange with [`App`], as an HTTP/1.1 connection
//! is one exchange at a time.
//!
//! # Theory of operation
//!
//! [`H2Server`] sits between the protocol ([`H2Connection`]) and the application. It is
//! driven by [`crate::connection::Connection`], which hands a connection to it when the first
//! octets are the HTTP/2 preface ([`super::frame::detect_preface`]); the server models never
//! see HTTP/2. On every turn ([`H2Server::advance`]):
//!
//! 1. the protocol parses what arrived and reports requests, body octets and resets;
//! 2. a request's head goes to [`App::handle`], the same route table, gate (origin, token,
//!    rate) and route code as HTTP/1.1 ([`super::message`] makes the
//!    [`crate::http::request::Request`]), as soon as it arrives: a refused request is answered
//!    before its body is read, as over HTTP/1.1, and an accepted publish is carried out once
//!    its body is complete (413, with the request's CORS fields, if it grows too long);
//! 3. every stream's exchange makes progress: a publish waits for the broker, a long poll
//!    for a message, an SSE stream pulls the channel into the stream's own buffer;
//! 4. the protocol moves the streams' buffers out as DATA frames, within the peer's windows.
//!
//! An SSE response is [`SseStream`] itself, unchanged, writing unchunked into its stream's
//! buffer: HTTP/2 frames it, and a stream that is never ended is what an event stream is.
//! Backpressure works as over HTTP/1.1, per stream: a stream stops pulling once
//! `max_outbound_bytes` wait in its buffer, and all streams stop while the connection's
//! buffers together hold twice that; a stream whose
//! window stays shut for `send_timeout` is reset (the slow-consumer policy).
//!
//! The WebSocket routes are the exception: a WebSocket over HTTP/2 needs RFC 8441's extended
//! CONNECT, which this server does not implement, so `/ws/` and `/echo` are answered 501.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;

use super::connection::{Event, H2Connection};
use super::error::ErrorCode;
use super::hpack::Field;
use super::message::{head_fields, response_fields, RequestHead};
use crate::app::{self, Action, App, Route};
use crate::broker::{Message, Pending, Reader};
use crate::gate::origin::Cors;
use crate::gate::{loggable_target, Grant};
use crate::http::response::{format_http_date, Response};
use crate::log::{self, AccessLine};
use crate::longpoll::LongPoll;
use crate::stats::{Kind, RouteLabel};
use crate::stream::{Io, Next, SseStream};
use crate::subscription::Subscription;
use crate::time::{Instant, Now};
use crate::transport::Transport;

/// What the connection does after a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go on.
    Continue,
    /// Flush the output (a GOAWAY is at its end), then close.
    Close,
    /// Close without flushing: the peer does not read what it asks for.
    Drop,
}

/// One stream's exchange.
enum Exchange {
    /// The gate let the request's head through and its body is arriving; what the gate
    /// decided goes on once the body is complete.
    Receiving { head: RequestHead, body: Vec<u8>, decided: app::Exchange },
    /// A publish the broker has not answered yet; 503 at `deadline` (as HTTP/1.1).
    Publishing { pending: Pending<Arc<Message>>, cors: Cors, deadline: Instant },
    /// A long poll waiting for a message or its timeout.
    Poll { poll: LongPoll, cors: Cors, subscriber: u64 },
    /// An SSE stream whose start in its channel the broker is still asking for.
    Opening { subscription: Subscription, grant: Grant, cors: Cors, subscriber: u64, deadline: Instant },
    /// A Server-Sent Events stream: its events go to the stream's buffer.
    Sse { stream: SseStream, subscriber: u64 },
    /// The response is complete and waits in the stream's buffer to be sent.
    Sending,
}

/// A stream's exchange, and what `/metrics` and the access log keep of it.
struct Metered {
    exchange: Exchange,
    route: RouteLabel,
    began: Instant,
    /// With `--access-log`: the request's method and target (tokens redacted), logged when
    /// the exchange ends, as an HTTP/1.1 exchange is.
    access: Option<(String, String)>,
    /// The answer's status, once sent.
    status: Option<u16>,
    /// Body octets queued for the client (DATA payloads; frame headers and HEADERS aside).
    bytes: u64,
    /// A long poll or an SSE stream, for the access log.
    transport: Option<Transport>,
}

/// The application side of one HTTP/2 connection.
pub struct H2Server {
    protocol: H2Connection,
    streams: BTreeMap<u32, Metered>,
    /// Since when no stream has been open: after `idle_timeout`, GOAWAY.
    idle_since: Instant,
    /// Always empty: what an SSE stream is lent as its input.
    no_input: Vec<u8>,
    /// The client's address, for the access log.
    peer: IpAddr,
}

impl H2Server {
    /// Begins the connection after the client's preface: our SETTINGS go to `output`.
    pub fn new(app: &App, peer: IpAddr, now: Instant, output: &mut Vec<u8>) -> H2Server {
        let protocol = H2Connection::new(app.config.limits.max_head_bytes, app.config.send_timeout, now, output);
        H2Server { protocol, streams: BTreeMap::new(), idle_since: now, no_input: Vec::new(), peer }
    }

    /// Octets held for the client: the streams' waiting body octets and request bodies.
    pub fn buffered_bytes(&self) -> usize {
        let bodies: usize = self
            .streams
            .values()
            .map(|metered| match &metered.exchange {
                Exchange::Receiving { body, .. } => body.len(),
                _ => 0,
            })
            .sum();
        self.protocol.pending_bytes() + bodies
    }

    /// When [`H2Server::advance`] must run even if nothing arrives.
    pub fn next_deadline(&self, app: &App) -> Option<Instant> {
        let exchanges = self.streams.values().filter_map(|metered| match &metered.exchange {
            Exchange::Publishing { deadline, .. } | Exchange::Opening { deadline, .. } => Some(*deadline),
            Exchange::Poll { poll, .. } => Some(poll.deadline()),
            Exchange::Sse { stream, .. } => Some(stream.next_deadline()),
            Exchange::Receiving { .. } | Exchange::Sending => None,
        });
        let idle = self.protocol.is_idle().then(|| self.idle_since + app.config.idle_timeout);
        exchanges.chain(idle).chain(self.protocol.next_deadline()).min()
    }

    /// One turn: input, exchanges, output. `io.subscriber` is unused: each stream that
    /// follows a channel has its own subscriber id, as a connection does.
    pub fn advance(&mut self, io: &mut Io<'_>) -> Outcome {
        let now = io.now;
        let events = self.protocol.receive(io.input, io.output, now.instant);
        for event in events {
            match event {
                Event::Request { stream_id, fields, end_stream } => self.request(stream_id, fields, end_stream, io),
                Event::HeaderListTooLarge { stream_id } => {
                    // RFC 9113 §10.5.1: "A server that receives a larger header section than
                    // it is willing to handle can send an HTTP 431 (Request Header Fields Too
                    // Large) status code".
                    let access = io.app.config.access_log.then(|| ("-".to_string(), "-".to_string()));
                    self.begin(stream_id, RouteLabel::None, now.instant, access);
                    let response = Response::text(431, "header list larger than SETTINGS_MAX_HEADER_LIST_SIZE");
                    self.respond(stream_id, response, &Cors::NotApplicable, false, io);
                }
                Event::Data { stream_id, data, end_stream } => self.body(stream_id, &data, end_stream, io),
                Event::Reset { stream_id } => self.end(stream_id, io.app, now),
                Event::Closed => {
                    self.stop_all(io.app, now);
                    return Outcome::Close;
                }
                Event::Flooded => {
                    self.stop_all(io.app, now);
                    return Outcome::Drop;
                }
            }
        }
        if io.app.is_shutting_down() || io.input_closed {
            // §6.8: a graceful shutdown; the open streams finish (an SSE stream ends itself
            // when the server shuts down, a long poll answers).
            self.protocol.go_away(io.output);
        }
        if self.protocol.is_idle() && now.instant >= self.idle_since + io.app.config.idle_timeout {
            self.protocol.go_away(io.output);
        }
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for stream_id in ids {
            self.progress(stream_id, io);
        }
        for event in self.protocol.flush(io.output, now.instant) {
            if let Event::Reset { stream_id } = event {
                io.app.stats.slow_consumer();
                self.end(stream_id, io.app, now);
            }
        }
        // A response sent in full closed its stream in the protocol.
        let gone: Vec<u32> = self
            .streams
            .iter()
            .filter(|(id, metered)| matches!(metered.exchange, Exchange::Sending) && !self.protocol.is_open(**id))
            .map(|(id, _)| *id)
            .collect();
        for stream_id in gone {
            self.end(stream_id, io.app, now);
        }
        if !self.streams.is_empty() {
            self.idle_since = now.instant;
        }
        if self.protocol.is_closed() || (io.input_closed && self.streams.is_empty()) {
            self.stop_all(io.app, now);
            return Outcome::Close;
        }
        Outcome::Continue
    }

    fn begin(&mut self, stream_id: u32, route: RouteLabel, at: Instant, access: Option<(String, String)>) {
        let metered =
            Metered { exchange: Exchange::Sending, route, began: at, access, status: None, bytes: 0, transport: None };
        self.streams.insert(stream_id, metered);
    }

    /// A request's header block arrived.
    fn request(&mut self, stream_id: u32, fields: Vec<Field>, end_stream: bool, io: &mut Io<'_>) {
        if self.buffered_bytes() >= output_limit(io.app) {
            // The client has not taken what it was sent: a new response (a 36 KiB page, say)
            // would queue behind it. HTTP/1.1 stops parsing pipelined requests for the same
            // reason; here the stream is refused (§8.7: REFUSED_STREAM, safe to retry).
            return self.reset(stream_id, ErrorCode::RefusedStream, io);
        }
        let mut head = match RequestHead::from_fields(fields) {
            Ok(head) => head,
            // §8.1.1: "Malformed requests or responses that are detected MUST be treated as a
            // stream error (Section 5.4.2) of type PROTOCOL_ERROR."
            Err(_) => return self.reset(stream_id, ErrorCode::ProtocolError, io),
        };
        let request = head.request();
        let route = app::route(request.path()).map_or(RouteLabel::None, Route::label);
        let access = io.app.config.access_log.then(|| (head.method.clone(), loggable_target(&request)));
        self.begin(stream_id, route, io.now.instant, access);
        if end_stream {
            if head.set_body_length(0).is_err() {
                // §8.1.1: malformed, a stream error of type PROTOCOL_ERROR.
                return self.reset(stream_id, ErrorCode::ProtocolError, io);
            }
        } else {
            // The body's length is known when END_STREAM comes, unless Content-Length says.
            head.body_follows();
        }
        let Some(decided) = self.gate(stream_id, &head, io) else { return };
        match decided.action {
            // A publish reads its body first; anything else is answered from the head, as
            // over HTTP/1.1, and DATA that still comes is dropped (flow control still counts
            // it).
            Action::Publish { .. } if !end_stream => {
                self.set(stream_id, Exchange::Receiving { head, body: Vec::new(), decided })
            }
            _ => self.go_on(stream_id, decided, Vec::new(), io),
        }
    }

    /// Request body octets of an accepted publish: kept up to `max_publish_bytes`.
    fn body(&mut self, stream_id: u32, data: &[u8], end_stream: bool, io: &mut Io<'_>) {
        let Some(Metered { exchange: Exchange::Receiving { body, decided, .. }, .. }) =
            self.streams.get_mut(&stream_id)
        else {
            return;
        };
        if body.len() + data.len() > io.app.config.max_publish_bytes {
            // As over HTTP/1.1, with the CORS fields the gate gave the request (an allowed
            // page may read why); §8.1: the response ends the stream and RST_STREAM(NO_ERROR)
            // asks the client to stop sending.
            let cors = decided.cors.clone();
            return self.respond(stream_id, Response::text(413, "message too large"), &cors, false, io);
        }
        body.extend_from_slice(data);
        if !end_stream {
            return;
        }
        let Some(Metered { exchange, .. }) = self.streams.get_mut(&stream_id) else { return };
        if let Exchange::Receiving { mut head, body, decided } = std::mem::replace(exchange, Exchange::Sending) {
            if head.set_body_length(body.len()).is_err() {
                // §8.1.1: malformed, a stream error of type PROTOCOL_ERROR.
                return self.reset(stream_id, ErrorCode::ProtocolError, io);
            }
            self.go_on(stream_id, decided, body, io);
        }
    }

    /// A request's head goes through the same route table and gate as over HTTP/1.1; `None`
    /// when the stream was answered here already.
    fn gate(&mut self, stream_id: u32, head: &RequestHead, io: &mut Io<'_>) -> Option<app::Exchange> {
        let request = head.request();
        if let Some(Route::WebSocket(_) | Route::Echo) = app::route(request.path()) {
            // RFC 8441 bootstraps WebSockets over HTTP/2 with an extended CONNECT; without it
            // a WebSocket needs HTTP/1.1 (RFC 9110 §15.6.2: 501 "does not support the
            // functionality required to fulfill the request").
            let response = Response::text(501, "WebSocket over HTTP/2 (RFC 8441) is not implemented: use HTTP/1.1");
            self.respond(stream_id, response, &Cors::NotApplicable, false, io);
            return None;
        }
        Some(io.app.handle(&request, io.peer, io.now))
    }

    /// What the gate decided is carried out, with the request's complete body.
    fn go_on(&mut self, stream_id: u32, exchange: app::Exchange, body: Vec<u8>, io: &mut Io<'_>) {
        let head_only = exchange.framing.head_only;
        let cors = exchange.cors;
        match exchange.action {
            Action::Respond(response) | Action::Reject(response) => {
                self.respond(stream_id, response, &cors, head_only, io)
            }
            Action::Publish { channel, .. } => match io.app.publish(&channel, &body, io.now) {
                Ok(pending) => {
                    let deadline = io.now.instant + io.app.config.redis_timeout;
                    self.set(stream_id, Exchange::Publishing { pending, cors, deadline });
                }
                Err(response) => self.respond(stream_id, response, &cors, false, io),
            },
            Action::Poll(poll) => {
                let subscriber = io.app.next_connection_id();
                self.set(stream_id, Exchange::Poll { poll, cors, subscriber });
                self.set_transport(stream_id, Transport::LongPoll);
            }
            Action::Sse(_) if head_only => self.sse_head(stream_id, &cors, true, io),
            Action::Sse(start) => {
                let subscription = Subscription::new(&start.channel, start.since);
                let deadline = io.now.instant + io.app.config.redis_timeout;
                let subscriber = io.app.next_connection_id();
                let opening = Exchange::Opening { subscription, grant: start.grant, cors, subscriber, deadline };
                self.set(stream_id, opening);
                self.set_transport(stream_id, Transport::Sse);
            }
            // Routed above; kept total so that a new upgrade route cannot slip through.
            Action::Upgrade(_) => self.respond(
                stream_id,
                Response::text(501, "WebSocket over HTTP/2 is not implemented"),
                &cors,
                false,
                io,
            ),
        }
    }

    fn set(&mut self, stream_id: u32, exchange: Exchange) {
        if let Some(metered) = self.streams.get_mut(&stream_id) {
            metered.exchange = exchange;
        }
    }

    fn set_transport(&mut self, stream_id: u32, transport: Transport) {
        if let Some(metered) = self.streams.get_mut(&stream_id) {
            metered.transport = Some(transport);
        }
    }

    /// One stream's exchange makes what progress it can.
    fn progress(&mut self, stream_id: u32, io: &mut Io<'_>) {
        let Some(metered) = self.streams.get_mut(&stream_id) else { return };
        let now = io.now;
        let app = io.app;
        match &mut metered.exchange {
            Exchange::Publishing { pending, cors, deadline } => {
                let response = match pending.poll(io.wake) {
                    Poll::Ready(result) => app.published(result),
                    Poll::Pending if now.instant < *deadline => return,
                    // As HTTP/1.1 (`Connection::finish_publish`): RFC 9110 §15.6.4.
                    Poll::Pending => Response::text(503, "broker did not answer in time, message may not be published")
                        .with_header("Retry-After", "1"),
                };
                let cors = cors.clone();
                self.respond(stream_id, response, &cors, false, io);
            }
            Exchange::Poll { poll, cors, subscriber } => {
                let was_parked = poll.is_parked();
                let give_up = app.is_shutting_down() || io.input_closed;
                let outcome = poll.poll(&*app.broker, *subscriber, io.wake, now.instant, give_up);
                match (was_parked, poll.is_parked()) {
                    (false, true) => app.stats.poll_parked(),
                    (true, false) => app.stats.poll_unparked(),
                    _ => {}
                }
                if let Poll::Ready(answer) = outcome {
                    app.stats.batch_delivered(Transport::LongPoll, &answer.batch, poll.live_from_ms(), now.unix_ms);
                    let cors = cors.clone();
                    let response = Response::json(200, answer.body).with_header("Cache-Control", "no-store");
                    self.respond(stream_id, response, &cors, false, io);
                }
            }
            Exchange::Opening { subscription, subscriber, deadline, .. } => {
                if app.is_shutting_down() || io.input_closed {
                    return self.reset(stream_id, ErrorCode::Cancel, io);
                }
                let reader = Reader { subscriber: *subscriber, wake: io.wake };
                if subscription.resolve_start(&*app.broker, reader).is_pending() {
                    if now.instant >= *deadline {
                        *deadline = now.instant + app.config.redis_timeout;
                    }
                    return;
                }
                let Exchange::Opening { subscription, grant, cors, subscriber, .. } =
                    std::mem::replace(&mut metered.exchange, Exchange::Sending)
                else {
                    return;
                };
                self.sse_head(stream_id, &cors, false, io);
                let Some(output) = self.protocol.pending_mut(stream_id) else { return };
                let before = output.len();
                let stream = SseStream::start(
                    subscription,
                    false,
                    grant,
                    &mut stream_io(io, subscriber, &mut self.no_input, output),
                );
                let written = output.len() - before;
                app.stats.connection_opened(Kind::Sse);
                if let Some(metered) = self.streams.get_mut(&stream_id) {
                    metered.exchange = Exchange::Sse { stream, subscriber };
                    metered.bytes += written as u64;
                }
                self.progress(stream_id, io);
            }
            Exchange::Sse { stream, subscriber } => {
                if self.protocol.pending_bytes() >= output_limit(app) {
                    // The connection holds enough for its client: pull once it has read.
                    return;
                }
                let Some(output) = self.protocol.pending_mut(stream_id) else { return };
                let before = output.len();
                let next = stream.advance(&mut stream_io(io, *subscriber, &mut self.no_input, output));
                metered.bytes += (output.len() - before) as u64;
                if next == Next::Close {
                    // The server shuts down or the token expired: END_STREAM ends the
                    // response cleanly (EventSource reconnects after `retry`) once what
                    // waits is sent.
                    release(std::mem::replace(&mut metered.exchange, Exchange::Sending), app, now.instant);
                    self.protocol.end_stream(stream_id);
                }
            }
            Exchange::Receiving { .. } | Exchange::Sending => {}
        }
    }

    /// An event stream's HEADERS: the fields HTTP/1.1 sends, without its framing fields.
    fn sse_head(&mut self, stream_id: u32, cors: &Cors, end_stream: bool, io: &mut Io<'_>) {
        let date = format_http_date(io.now.unix_secs());
        let cors_fields = cors.fields();
        let fields = head_fields(200, &SseStream::head_fields(&cors_fields), &date);
        self.protocol.send_headers(stream_id, &fields, end_stream, io.output);
        self.answered(stream_id, 200, io);
        if end_stream {
            self.end(stream_id, io.app, io.now);
        }
    }

    /// Queues a complete response on a stream: HEADERS now, the body as DATA once windows
    /// allow. A `HEAD` request gets the same fields without the body (RFC 9110 §9.3.2).
    fn respond(&mut self, stream_id: u32, mut response: Response, cors: &Cors, head_only: bool, io: &mut Io<'_>) {
        cors.apply(&mut response);
        let date = format_http_date(io.now.unix_secs());
        // RFC 9110 §8.6: no Content-Length on a 1xx or 204.
        let content_length = response.status >= 200 && response.status != 204;
        let fields = response_fields(&response, content_length, &date);
        let has_body = !head_only && !response.body.is_empty();
        self.protocol.send_headers(stream_id, &fields, !has_body, io.output);
        self.answered(stream_id, response.status, io);
        if has_body {
            self.protocol.send_data(stream_id, &response.body);
            self.protocol.end_stream(stream_id);
            self.set(stream_id, Exchange::Sending);
            if let Some(metered) = self.streams.get_mut(&stream_id) {
                metered.bytes += response.body.len() as u64;
            }
        } else {
            self.end(stream_id, io.app, io.now);
        }
    }

    /// `/metrics` counts the response and times its request.
    fn answered(&mut self, stream_id: u32, status: u16, io: &Io<'_>) {
        if let Some(metered) = self.streams.get_mut(&stream_id) {
            let took = io.now.instant.saturating_duration_since(metered.began);
            io.app.stats.responded(metered.route, status, took);
            metered.status = Some(status);
        }
    }

    /// Resets a stream and drops its exchange.
    fn reset(&mut self, stream_id: u32, code: ErrorCode, io: &mut Io<'_>) {
        let mut events = Vec::new();
        self.protocol.reset(stream_id, code, io.output, &mut events);
        self.end(stream_id, io.app, io.now);
    }

    /// A stream's exchange ends, answered or not: what it followed is released, and with
    /// `--access-log` its line is written.
    fn end(&mut self, stream_id: u32, app: &App, now: Now) {
        let Some(metered) = self.streams.remove(&stream_id) else { return };
        release(metered.exchange, app, now.instant);
        if let Some((method, path)) = &metered.access {
            let line = AccessLine {
                remote: self.peer,
                method,
                path,
                status: metered.status,
                bytes: metered.bytes,
                duration_ms: now.instant.saturating_duration_since(metered.began).as_millis() as u64,
                transport: metered.transport,
                close_code: None,
            };
            log::access(now.unix_ms, &line);
        }
    }

    /// Ends every exchange: the connection ends.
    pub fn stop_all(&mut self, app: &App, now: Now) {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for stream_id in ids {
            self.end(stream_id, app, now);
        }
    }
}

/// What leaving an exchange means: a poll is cancelled, a stream leaves its channel.
fn release(exchange: Exchange, app: &App, at: Instant) {
    match exchange {
        Exchange::Poll { mut poll, subscriber, .. } => {
            if poll.is_parked() {
                app.stats.poll_unparked();
            }
            poll.cancel(&*app.broker, subscriber, at);
        }
        Exchange::Opening { mut subscription, subscriber, .. } => {
            subscription.unregister(&*app.broker, subscriber, at);
        }
        Exchange::Sse { mut stream, subscriber } => {
            stream.stop(app, subscriber, at);
            app.stats.connection_closed(Kind::Sse);
        }
        Exchange::Receiving { .. } | Exchange::Publishing { .. } | Exchange::Sending => {}
    }
}

/// How many times `max_outbound_bytes` the streams of one connection may hold unsent before
/// its SSE streams stop pulling and new streams are refused: twice, what an HTTP/1.1
/// connection may owe its client before it stops reading from it.
const CONNECTION_OUTPUT_FACTOR: usize = 2;

fn output_limit(app: &App) -> usize {
    app.config.max_outbound_bytes.saturating_mul(CONNECTION_OUTPUT_FACTOR)
}

/// The context an SSE stream advances with: the connection's, with the stream's subscriber
/// id, its buffer for output, and no input (an event stream reads nothing from its client).
fn stream_io<'a>(io: &'a Io<'_>, subscriber: u64, input: &'a mut Vec<u8>, output: &'a mut Vec<u8>) -> Io<'a> {
    Io {
        app: io.app,
        subscriber,
        peer: io.peer,
        wake: io.wake,
        now: io.now,
        input,
        output,
        input_closed: io.input_closed,
    }
}
