//! The application: the route table and what each route does with a request head.
//!
//! Both server models call [`App::handle`] with a parsed request head and get back an owned
//! [`Exchange`]: how the response is framed and what to do next (answer now, read a body and
//! publish it, park a long poll). Nothing here knows whether a thread or an event loop is
//! driving the connection; that is what lets both models share one implementation.
//!
//! | route | methods | what |
//! |---|---|---|
//! | `/` | GET, HEAD | the demo page: the three transports side by side ([`crate::demo`]) |
//! | `/publish/{channel}` | POST | publish the body as a message: `201 {"id":...}` |
//! | `/poll/{channel}` | GET, HEAD | long poll ([`crate::longpoll`]) |
//! | `/sse/{channel}` | GET, HEAD | a Server-Sent Events stream ([`crate::sse`]) |
//! | `/ws/{channel}` | GET | a WebSocket on the channel ([`crate::ws`]) |
//! | `/echo` | GET | a WebSocket that echoes every message |
//! | `/stats` | GET, HEAD | counters as JSON |
//! | `/metrics` | GET, HEAD | counters in the Prometheus text format |
//! | `/healthz` | GET, HEAD | `200 ok`: the process is alive (liveness) |
//! | `/readyz` | GET, HEAD | `200 ready` while the broker can serve, else `503 broker unavailable`, and `503 shutting down` once a graceful shutdown has begun (readiness) |
//!
//! Every route also answers `OPTIONS` (CORS preflights, [`crate::gate::origin::preflight`]).
//! The WebSocket routes let `HEAD` through the method check like the other `GET` routes (their
//! `Allow` lists it), and [`App::handle`] then refuses a `HEAD` handshake with 405. The
//! contract, with every status each route answers, is `docs/PROTOCOL.md` (§3-§9).

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::broker::{self, Broker, BrokerError, Message, Pending, Since};
use crate::budget::MemoryBudget;
use crate::config::Config;
use crate::gate::origin::{self, Cors, Origin};
use crate::gate::{Access, Gate, Grant, Refusal};
use crate::http;
use crate::http::body::BodyFraming;
use crate::http::error::HttpError;
use crate::http::request::{Expectation, Request, Version};
use crate::http::response::{Framing, Response};
use crate::longpoll::{LongPoll, PollQuery};
use crate::stats::{Refusal as RefusalReason, RouteLabel, Stats};
use crate::time::Now;
use crate::ws::deflate::SharedCompression;
use crate::ws::handshake;

/// Everything the connections share: settings, the broker, the security gate, counters, the
/// shutdown flag.
pub struct App {
    pub config: Config,
    pub broker: Arc<dyn Broker>,
    pub gate: Gate,
    /// What all connections together may hold of client-controlled memory.
    pub budget: MemoryBudget,
    pub stats: Stats,
    /// Broadcast payloads compressed once for every WebSocket that negotiated
    /// permessage-deflate without server context takeover (issue 18).
    pub ws_compressed: SharedCompression<Message>,
    shutting_down: AtomicBool,
    next_connection_id: AtomicU64,
}

/// A route, with the channel name where the path has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Index,
    Publish(&'a str),
    Poll(&'a str),
    Sse(&'a str),
    WebSocket(&'a str),
    Echo,
    Stats,
    Metrics,
    Healthz,
    Readyz,
}

impl<'a> Route<'a> {
    /// The methods the route serves (`OPTIONS` aside, which every route answers).
    fn methods(self) -> &'static str {
        match self {
            Route::Publish(_) => "POST",
            _ => "GET, HEAD",
        }
    }

    /// The methods as the `Allow` field lists them (RFC 9110 §10.2.1; a 405 "MUST generate an
    /// Allow header field", §15.5.6).
    fn allow(self) -> &'static str {
        match self {
            Route::Publish(_) => "POST, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }

    /// Routes a page on another site could use against our users: they publish, follow a
    /// channel or hold a socket, so the origin policy guards them. The page, `/stats`,
    /// `/metrics`, `/healthz` and `/readyz` change nothing, and a foreign page cannot read
    /// their answers (they carry no `Access-Control-Allow-Origin`).
    fn is_guarded(self) -> bool {
        !matches!(self, Route::Index | Route::Stats | Route::Metrics | Route::Healthz | Route::Readyz)
    }

    /// The route's name in `/metrics` (`realtime_request_duration_seconds{route=...}`).
    pub fn label(self) -> RouteLabel {
        match self {
            Route::Index => RouteLabel::Index,
            Route::Publish(_) => RouteLabel::Publish,
            Route::Poll(_) => RouteLabel::Poll,
            Route::Sse(_) => RouteLabel::Sse,
            Route::WebSocket(_) => RouteLabel::WebSocket,
            Route::Echo => RouteLabel::Echo,
            Route::Stats => RouteLabel::Stats,
            Route::Metrics => RouteLabel::Metrics,
            Route::Healthz => RouteLabel::Healthz,
            Route::Readyz => RouteLabel::Readyz,
        }
    }

    /// What the route asks of a token.
    fn access(self) -> Access<'a> {
        match self {
            Route::Publish(channel) => Access::Publish(channel),
            Route::Poll(channel) | Route::Sse(channel) | Route::WebSocket(channel) => Access::Subscribe(channel),
            _ => Access::Open,
        }
    }
}

/// Maps a path to a route. `None` is 404; so is a channel name outside the grammar.
pub fn route(path: &str) -> Option<Route<'_>> {
    let channel_route = |prefix: &str| path.strip_prefix(prefix).filter(|name| broker::is_valid_channel_name(name));
    match path {
        "/" => Some(Route::Index),
        "/stats" => Some(Route::Stats),
        "/metrics" => Some(Route::Metrics),
        "/healthz" => Some(Route::Healthz),
        "/readyz" => Some(Route::Readyz),
        "/echo" => Some(Route::Echo),
        _ => channel_route("/publish/")
            .map(Route::Publish)
            .or_else(|| channel_route("/poll/").map(Route::Poll))
            .or_else(|| channel_route("/sse/").map(Route::Sse))
            .or_else(|| channel_route("/ws/").map(Route::WebSocket)),
    }
}

/// The methods this server knows (RFC 9110 §9.3). A known method on the wrong route is 405;
/// an unknown one is 501 (RFC 9110 §9.1: "An origin server that receives a request method
/// that is unrecognized or not implemented SHOULD respond with the 501 (Not Implemented)").
const KNOWN_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// What to do with one request.
#[derive(Debug)]
pub struct Exchange {
    pub framing: Framing,
    /// The CORS fields every answer to this request carries, errors included.
    pub cors: Cors,
    pub action: Action,
    /// The route, as `/metrics` names it.
    pub route: RouteLabel,
}

#[derive(Debug)]
pub enum Action {
    /// Send this response now.
    Respond(Response),
    /// Send this response and close: the request may have carried bytes we cannot frame.
    Reject(Response),
    /// Read the request body (sending `100 Continue` first if asked), then publish it.
    Publish { channel: String, body: BodyFraming, send_continue: bool },
    /// Park a long poll until it can be answered.
    Poll(LongPoll),
    /// Start a Server-Sent Events stream.
    Sse(SseStart),
    /// Switch to the WebSocket protocol (`101 Switching Protocols`).
    Upgrade(WebSocketStart),
}

/// What an SSE stream needs to begin.
#[derive(Debug)]
pub struct SseStart {
    pub channel: String,
    /// From `Last-Event-ID` or `?since=`; `None`: only new messages.
    pub since: Option<Since>,
    /// What the gate granted: the stream ends when its token expires.
    pub grant: Grant,
}

/// What a WebSocket needs to begin.
#[derive(Debug)]
pub struct WebSocketStart {
    /// What the 101 says: `Sec-WebSocket-Accept`, and permessage-deflate if agreed.
    pub accept: handshake::Accepted,
    pub mode: WebSocketMode,
    /// What the gate granted: whether text frames may publish, and when the token expires.
    pub grant: Grant,
}

#[derive(Debug)]
pub enum WebSocketMode {
    /// `/echo`: every message comes back.
    Echo,
    /// `/ws/{channel}`: the channel's messages go out, the client's text frames are published.
    Channel { channel: String, since: Option<Since> },
}

impl App {
    pub fn new(config: Config, broker: Arc<dyn Broker>) -> App {
        App {
            gate: Gate::new(&config),
            budget: MemoryBudget::new(config.memory_budget),
            config,
            broker,
            stats: Stats::default(),
            ws_compressed: SharedCompression::default(),
            shutting_down: AtomicBool::new(false),
            next_connection_id: AtomicU64::new(1),
        }
    }

    /// A key unique to one connection, used as its broker subscriber id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Graceful shutdown has begun: parked polls answer, idle connections close.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Decides what to do with a request from `client` whose head has arrived.
    pub fn handle(&self, request: &Request<'_>, client: IpAddr, now: Now) -> Exchange {
        let mut framing = Framing {
            version: request.version,
            keep_alive: request.keep_alive() && !self.is_shutting_down(),
            head_only: request.method == "HEAD",
        };
        let route = route(request.path());
        let label = route.map_or(RouteLabel::None, Route::label);
        let body = match request.body_framing() {
            Ok(body) => body,
            // RFC 9112 §6.3: when the framing is invalid "the server MUST respond with a 400
            // (Bad Request) status code and then close the connection".
            Err(error) => return Exchange { route: label, ..Exchange::failed(framing, error) },
        };
        let send_continue = match request.expectation() {
            // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an
            // HTTP/1.0 request MUST ignore that expectation."
            Ok(Expectation::Continue) => request.version == Version::Http11,
            Ok(Expectation::None) => false,
            Err(error) => return Exchange { route: label, ..Exchange::failed(framing, error) },
        };
        let (cors, action) = self.route_request(request, route, client, body, send_continue, now);
        // A body we are not going to read would be parsed as the next request: close instead
        // (RFC 9110 §10.1.1 allows closing rather than reading a body after a final status).
        let unread_body = !matches!(body, BodyFraming::None | BodyFraming::Length(0));
        if (unread_body && !matches!(action, Action::Publish { .. })) || matches!(action, Action::Reject(_)) {
            framing.keep_alive = false;
        }
        Exchange { framing, cors, action, route: label }
    }

    /// The route, then the security gate ([`crate::gate`], in its order), then the route's
    /// own checks. Returns the CORS fields that every answer to the request carries.
    fn route_request(
        &self,
        request: &Request<'_>,
        route: Option<Route<'_>>,
        client: IpAddr,
        body: BodyFraming,
        send_continue: bool,
        now: Now,
    ) -> (Cors, Action) {
        let Some(route) = route else {
            return (Cors::NotApplicable, Action::Respond(Response::text(404, "not found")));
        };
        // Gate step 1: the origin. A foreign page learns nothing from the answer: no CORS fields.
        let mut cors = Cors::NotApplicable;
        if route.is_guarded() {
            let origin = origin::classify(request.header("origin"), request.authority(), &self.config.allowed_origins);
            if origin == Origin::Foreign {
                self.stats.refusal(RefusalReason::Origin);
                return (Cors::NotApplicable, Action::Respond(Response::text(403, "origin not allowed")));
            }
            cors = Cors::for_origin(&origin);
        }
        // Gate step 2: a preflight carries no credentials, so it is answered before they are asked for.
        if request.method == "OPTIONS" {
            let requested = request.header("access-control-request-method");
            return (
                cors.clone(),
                Action::Respond(origin::preflight(&cors, route.methods(), route.allow(), requested)),
            );
        }
        if !route.methods().split(", ").any(|m| m == request.method) {
            if !KNOWN_METHODS.contains(&request.method) {
                return (cors, Action::Respond(Response::text(501, "method not implemented")));
            }
            return (
                cors,
                Action::Respond(Response::text(405, "method not allowed").with_header("Allow", route.allow())),
            );
        }
        // Gate steps 3 to 5: the token, what it grants, the publish rate. A route no token
        // guards does not look at one: a proxy's or a stale token there is no error.
        let grant = match route.access() {
            Access::Open => Ok(Grant::default()),
            access => self.gate.authorize(request, access, now.unix_secs()),
        };
        let grant = match grant {
            Ok(grant) => grant,
            Err(refusal) => return (cors, self.refuse(refusal)),
        };
        if let Route::Publish(_) = route {
            if let Err(refusal) = self.gate.take_publish(client, now.instant) {
                return (cors, self.refuse(refusal));
            }
        }
        let action = match route {
            Route::Index => Action::Respond(crate::demo::response()),
            // Liveness: the process answers. Restarting it would not bring Redis back.
            Route::Healthz => Action::Respond(Response::text(200, "ok")),
            // Readiness: whether to send clients here now (a load balancer's or Kubernetes'
            // readiness probe). 503 is "temporarily unable to handle the request" (RFC 9110
            // §15.6.4): publishes would be refused and streams would wait for news.
            // A server shutting down is not ready either: a probe on a kept-alive connection
            // must not see 200 while the server stops taking new ones.
            Route::Readyz if self.is_shutting_down() => Action::Respond(Response::text(503, "shutting down")),
            Route::Readyz if self.broker.is_ready() => Action::Respond(Response::text(200, "ready")),
            Route::Readyz => Action::Respond(Response::text(503, "broker unavailable")),
            Route::Stats => {
                let json = self.snapshot().to_json(self.config.model.name(), self.broker.kind(), self.broker.usage());
                Action::Respond(Response::json(200, json).with_header("Cache-Control", "no-store"))
            }
            Route::Metrics => {
                let mut response = Response::text(200, "");
                let mut text = self.snapshot().to_prometheus(self.config.model.name(), self.broker.usage());
                crate::process::Sample::read().write_prometheus(&mut text);
                response.body = text.into_bytes();
                response.headers = vec![("Content-Type", "text/plain; version=0.0.4; charset=utf-8".into())];
                Action::Respond(response)
            }
            Route::Publish(channel) => self.start_publish(channel, body, send_continue),
            Route::Poll(channel) => self.start_poll(request, channel, &grant, now),
            Route::Sse(channel) => self.start_sse(request, channel, grant),
            Route::WebSocket(channel) => self.start_websocket(request, Some(channel), grant),
            Route::Echo => self.start_websocket(request, None, grant),
        };
        (cors, action)
    }

    /// The counters, with the memory budget's.
    fn snapshot(&self) -> crate::stats::Snapshot {
        let mut snapshot = self.stats.snapshot();
        snapshot.memory_budget = [self.budget.limit() as u64, self.budget.used() as u64, self.budget.shed_count()];
        snapshot.redis = self.broker.link_stats();
        snapshot
    }

    /// Counts a refusal by its reason and answers it.
    fn refuse(&self, refusal: Refusal) -> Action {
        self.stats.refusal(refusal.reason);
        Action::Respond(refusal.response)
    }

    /// The cursor a client resumes from, if any: `Some(None)` for none, `None` if malformed.
    fn resume_cursor(&self, cursor: Option<&str>) -> Result<Option<Since>, Response> {
        match cursor.filter(|c| !c.is_empty()) {
            None => Ok(None),
            Some(cursor) => self.broker.parse_cursor(cursor).map(Some).map_err(|e| broker_error_response(&e)),
        }
    }

    /// `GET /sse/{channel}`: checks what the client accepts and where it resumes from.
    fn start_sse(&self, request: &Request<'_>, channel: &str, grant: Grant) -> Action {
        // RFC 9110 §15.5.7: 406 when the resource has no representation the client accepts.
        if !http::accepts(request.headers_named("accept"), "text/event-stream") {
            return Action::Respond(Response::text(406, "this resource is text/event-stream"));
        }
        // WHATWG HTML §9.2.4: a reconnecting EventSource sends the last id it saw as
        // `Last-Event-ID`; `?since=` serves clients that cannot set headers.
        let since_query = match http::query_param(request.query(), "since") {
            Ok(since) => since,
            Err(_) => return Action::Respond(Response::text(400, "malformed since parameter")),
        };
        let last_event_id = request.header("last-event-id").map(|v| String::from_utf8_lossy(v).into_owned());
        let since = match self.resume_cursor(last_event_id.as_deref().or(since_query.as_deref())) {
            Ok(since) => since,
            Err(response) => return Action::Respond(response),
        };
        Action::Sse(SseStart { channel: channel.to_string(), since, grant })
    }

    /// `GET /ws/{channel}` and `GET /echo`: the opening handshake (RFC 6455 §4.2). The origin
    /// was checked by the gate: RFC 6455 §10.2, servers "SHOULD" check `Origin` to refuse
    /// cross-site WebSocket hijacking (a page on another site opening a socket as its visitor).
    fn start_websocket(&self, request: &Request<'_>, channel: Option<&str>, grant: Grant) -> Action {
        let accept = match handshake::check_client_handshake(request, self.config.ws_deflate) {
            Ok(accept) => accept,
            Err(error) => {
                let response = Response::text(error.status(), error.message());
                return Action::Respond(match error.status() {
                    426 => response
                        .with_header("Upgrade", "websocket")
                        .with_header("Sec-WebSocket-Version", handshake::VERSION),
                    _ => response,
                });
            }
        };
        if request.method != "GET" {
            return Action::Respond(Response::text(405, "a WebSocket handshake is a GET").with_header("Allow", "GET"));
        }
        let mode = match channel {
            None => WebSocketMode::Echo,
            Some(channel) => {
                let since = match http::query_param(request.query(), "since") {
                    Ok(since) => since,
                    Err(_) => return Action::Respond(Response::text(400, "malformed since parameter")),
                };
                match self.resume_cursor(since.as_deref()) {
                    Ok(since) => WebSocketMode::Channel { channel: channel.to_string(), since },
                    Err(response) => return Action::Respond(response),
                }
            }
        };
        Action::Upgrade(WebSocketStart { accept, mode, grant })
    }

    /// `POST /publish/{channel}`, once the gate has let it through: is there a body to read?
    fn start_publish(&self, channel: &str, body: BodyFraming, send_continue: bool) -> Action {
        match body {
            // RFC 9110 §15.5.12: 411 "indicates that the server refuses to accept the request
            // without a defined Content-Length".
            // A POST without framing has an empty body by RFC 9112 §6.3, but a client that
            // sends one usually meant to send bytes after it; close rather than parse them.
            BodyFraming::None => {
                Action::Reject(Response::text(411, "publish needs a Content-Length or a chunked body"))
            }
            BodyFraming::Length(n) if n > self.config.max_publish_bytes as u64 => {
                Action::Respond(Response::text(413, "message too large"))
            }
            _ => Action::Publish { channel: channel.to_string(), body, send_continue },
        }
    }

    /// Publishes a complete request body at `now`: the broker's answer to come (see
    /// [`App::published`]), or at once the response for a body that is not a message.
    pub fn publish(&self, channel: &str, body: &[u8], now: Now) -> Result<Pending<Arc<Message>>, Response> {
        let Ok(text) = std::str::from_utf8(body) else {
            return Err(Response::text(400, "message is not valid UTF-8"));
        };
        Ok(self.broker.publish(channel, text, now))
    }

    /// The answer to a publish once the broker has given its own: `201 {"id":...}`, or 503.
    pub fn published(&self, result: Result<Arc<Message>, BrokerError>) -> Response {
        match result {
            Ok(message) => {
                self.stats.published();
                let mut json = String::from("{\"id\":");
                crate::json::write_string(&mut json, &message.id);
                json.push('}');
                Response::json(201, json)
            }
            Err(error) => broker_error_response(&error),
        }
    }

    /// Step 1 of long polling: read the query and set up the wait. A poll granted by a token
    /// waits no longer than the token lives: the next poll then needs a fresh one.
    fn start_poll(&self, request: &Request<'_>, channel: &str, grant: &Grant, now: Now) -> Action {
        let query = match PollQuery::parse(request.query(), self.config.poll_timeout) {
            Ok(query) => query,
            Err(why) => return Action::Respond(Response::text(400, why)),
        };
        let since = match query.since.as_deref().map(|cursor| self.broker.parse_cursor(cursor)).transpose() {
            Ok(since) => since,
            Err(error) => return Action::Respond(broker_error_response(&error)),
        };
        let mut deadline = now.instant + query.timeout;
        if let Some(expires) = grant.expires {
            deadline = deadline.min(now.instant_at_unix_secs(expires));
        }
        Action::Poll(LongPoll::new(channel, since, deadline, now.unix_ms))
    }
}

impl Exchange {
    /// The answer to a request whose framing cannot be trusted: the error and a close.
    pub fn failed(framing: Framing, error: HttpError) -> Exchange {
        Exchange {
            framing: Framing { keep_alive: false, ..framing },
            cors: Cors::NotApplicable,
            action: Action::Respond(error_response(error)),
            route: RouteLabel::None,
        }
    }
}

/// The response for a malformed request: its status and a one-line explanation.
pub fn error_response(error: HttpError) -> Response {
    Response::text(error.status(), error.message())
}

fn broker_error_response(error: &BrokerError) -> Response {
    match error {
        BrokerError::BadCursor => Response::text(400, "malformed cursor"),
        BrokerError::TooManyChannels => Response::text(503, "too many channels"),
        BrokerError::Unavailable(_) => {
            Response::text(503, "broker unavailable, message not published").with_header("Retry-After", "1")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_paths_and_channel_grammar() {
        assert_eq!(route("/"), Some(Route::Index));
        assert_eq!(route("/healthz"), Some(Route::Healthz));
        assert_eq!(route("/readyz"), Some(Route::Readyz));
        assert_eq!(route("/publish/news"), Some(Route::Publish("news")));
        assert_eq!(route("/poll/a.b-c_9"), Some(Route::Poll("a.b-c_9")));
        assert_eq!(route("/poll/"), None);
        assert_eq!(route("/poll/bad%20name"), None);
        assert_eq!(route("/poll/a/b"), None);
        assert_eq!(route("/nope"), None);
    }

    /// What `App::handle` decides for a raw request head, on a fresh in-memory broker.
    fn exchange_for(head: &[u8]) -> Exchange {
        let broker = Arc::new(crate::broker::memory::MemoryBroker::new(Default::default()));
        let app = App::new(Config::default(), broker);
        match crate::http::request::parse_request(head, &Default::default()) {
            Ok(crate::http::grammar::Parsed::Complete { value, .. }) => {
                app.handle(&value, std::net::Ipv4Addr::LOCALHOST.into(), crate::server::now())
            }
            other => panic!("test request did not parse: {other:?}"),
        }
    }

    /// The response `App::handle` gives a request head whose answer is immediate.
    fn respond(app: &App, head: &[u8]) -> (Framing, Response) {
        let exchange = match crate::http::request::parse_request(head, &Default::default()) {
            Ok(crate::http::grammar::Parsed::Complete { value, .. }) => {
                app.handle(&value, std::net::Ipv4Addr::LOCALHOST.into(), crate::server::now())
            }
            other => panic!("test request did not parse: {other:?}"),
        };
        match exchange.action {
            Action::Respond(response) => (exchange.framing, response),
            other => panic!("{} did not respond: {other:?}", String::from_utf8_lossy(head)),
        }
    }

    /// A memory broker that says it cannot serve, as a Redis node does while Redis is away.
    struct Unready(crate::broker::memory::MemoryBroker);

    impl Broker for Unready {
        fn kind(&self) -> &'static str {
            "unready"
        }
        fn usage(&self) -> broker::Usage {
            self.0.usage()
        }
        fn publish(&self, channel: &str, text: &str, now: Now) -> broker::Pending<Arc<Message>> {
            self.0.publish(channel, text, now)
        }
        fn parse_cursor(&self, cursor: &str) -> Result<Since, BrokerError> {
            self.0.parse_cursor(cursor)
        }
        fn tail(&self, channel: &str, reader: broker::Reader<'_>) -> std::task::Poll<broker::Position> {
            self.0.tail(channel, reader)
        }
        fn cursor(&self, position: broker::Position) -> String {
            self.0.cursor(position)
        }
        fn read(&self, channel: &str, since: &Since, max: usize, reader: broker::Reader<'_>) -> broker::Batch {
            self.0.read(channel, since, max, reader)
        }
        fn subscribe(
            &self,
            channel: &str,
            subscriber: u64,
            wake: &crate::wake::Wake,
            now: crate::time::Instant,
        ) -> Arc<str> {
            self.0.subscribe(channel, subscriber, wake, now)
        }
        fn unsubscribe(&self, channel: &str, subscriber: u64, now: crate::time::Instant) {
            self.0.unsubscribe(channel, subscriber, now)
        }
        fn is_ready(&self) -> bool {
            false
        }
    }

    #[test]
    fn readyz_is_200_ready_on_the_memory_broker_for_get_and_head_from_any_origin_without_a_token() {
        let config =
            Config { token_secret: Some(crate::config::Secret::new(vec![7; 32]).unwrap()), ..Config::default() };
        let app = App::new(config, Arc::new(crate::broker::memory::MemoryBroker::new(Default::default())));
        for method in ["GET", "HEAD"] {
            let head = format!("{method} /readyz HTTP/1.1\r\nHost: x\r\nOrigin: https://elsewhere.example\r\n\r\n");
            let (framing, response) = respond(&app, head.as_bytes());
            assert_eq!((response.status, response.body.as_slice()), (200, &b"ready\n"[..]), "{method}");
            assert_eq!(framing.head_only, method == "HEAD");
            assert!(response.headers.iter().all(|(name, _)| !name.starts_with("Access-Control")));
        }
        let (_, response) = respond(&app, b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(response.status, 405);
        assert!(response.headers.contains(&("Allow", "GET, HEAD, OPTIONS".into())), "{:?}", response.headers);
    }

    #[test]
    fn readyz_is_503_while_the_broker_cannot_serve_and_healthz_stays_200() {
        let app = App::new(
            Config::default(),
            Arc::new(Unready(crate::broker::memory::MemoryBroker::new(Default::default()))),
        );
        let (_, response) = respond(&app, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((response.status, response.body.as_slice()), (503, &b"broker unavailable\n"[..]));
        let (_, response) = respond(&app, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(response.status, 200, "liveness is not readiness");
    }

    #[test]
    fn readyz_is_503_once_the_server_is_shutting_down() {
        let app = App::new(Config::default(), Arc::new(crate::broker::memory::MemoryBroker::new(Default::default())));
        app.begin_shutdown();
        let (_, response) = respond(&app, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((response.status, response.body.as_slice()), (503, &b"shutting down\n"[..]));
    }

    #[test]
    fn the_index_serves_the_demo_page_with_its_security_headers_for_get_and_head() {
        for (method, head_only) in [("GET", false), ("HEAD", true)] {
            let exchange = exchange_for(format!("{method} /?channel=news HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            assert_eq!(exchange.framing.head_only, head_only);
            let Action::Respond(response) = exchange.action else { panic!("{method} / did not respond") };
            assert_eq!(response.status, 200);
            let header = |name: &str| response.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
            assert_eq!(header("Content-Type"), Some("text/html; charset=utf-8"));
            assert_eq!(header("Cache-Control"), Some("no-cache"));
            assert_eq!(header("X-Content-Type-Options"), Some("nosniff"));
            assert_eq!(header("Referrer-Policy"), Some("no-referrer"));
            let csp = header("Content-Security-Policy").expect("a CSP");
            assert!(csp.starts_with("default-src 'none';") && csp.contains("script-src 'sha256-"), "{csp}");
            // The body is the page; a HEAD answer drops it when written (`write_response`).
            assert_eq!(response.body, crate::demo::PAGE.as_bytes());
        }
        let Action::Respond(response) = exchange_for(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").action
        else {
            panic!("POST / did not respond")
        };
        assert_eq!(response.status, 405);
    }
}
