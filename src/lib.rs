//! # realtime: three ways a web server pushes data to a browser
//!
//! HTTP was built for the browser to ask and the server to answer. To push, a server has
//! three options, and this crate implements all three from scratch on the standard library,
//! over one broker, with the same guarantees: every message arrives once, in order, or the
//! client is told it missed some (a *gap*).
//!
//! This page is a guided tour: each step of each protocol, the function that does it, and
//! the section of the specification it follows. Read it beside the RFCs. What the server
//! promises its clients, every route, id, status and close code, is written down in
//! `docs/PROTOCOL.md`, the product contract; this page shows where the code keeps each promise.
//!
//! ## The shape of the code
//!
//! ```text
//!  bytes in ─► sans-I/O protocol cores (http, ws, sse, longpoll) ─► bytes out
//!                       ▲ Connection: one client's whole life │
//!         driven by one of two server models (--model):       │
//!           server::event_loop  a few workers, epoll, non-blocking sockets (default)
//!           server::threads     a thread per connection, blocking reads, park/unpark
//!                       │                                    │
//!                       └──────────── broker (Arc<dyn Broker>) ┘
//! ```
//!
//! Protocol code never touches a socket, a thread or a clock: it takes bytes and the time
//! ([`time::Now`]), and returns bytes and its next deadline. [`connection::Connection`] is the
//! state machine for one client; a driver only moves bytes between it and a socket. That is
//! why one implementation serves both server models and why every parser can be fuzzed.
//!
//! ## HTTP/1.1, the ground everything stands on (RFC 9112, RFC 9110)
//!
//! | step | where | spec |
//! |---|---|---|
//! | parse a request head, incrementally and without copying | [`http::request::parse_request`] | RFC 9112 §2-§5 |
//! | decide how long the body is (and refuse smuggling) | [`http::request::Request::body_framing`] | RFC 9112 §6 |
//! | decode a `Content-Length` or chunked body | [`http::body::BodyDecoder`] | RFC 9112 §6.2, §7.1 |
//! | keep the connection open, or not | [`http::request::Request::keep_alive`] | RFC 9112 §9.3 |
//! | route the request, after the security gate (below) | [`app::App::handle`], [`app::route`] | RFC 9110 §15 (status codes) |
//! | write a response, or a chunked stream | [`http::response::write_response`], [`http::response::write_chunk`] | RFC 9112 §6.3, §7.1 |
//! | answer requests in order, one at a time (pipelining) | [`connection::Connection::advance`] | RFC 9112 §9.3.2 |
//!
//! ## Strategy 1: long polling, in five steps
//!
//! | step | where |
//! |---|---|
//! | 1. the client asks `GET /poll/{channel}?since=ID&timeout=S` | [`app::App::handle`] → [`longpoll::PollQuery::parse`] |
//! | 2. nothing new: the server holds the request. On the event loop (the default) a held poll is an entry in its worker's table, a wake-up and a timer; under `--model threads` a whole thread sleeps in `park_timeout` | [`longpoll::LongPoll::poll`] returns `Pending` after [`subscription::Subscription::register`]; the connection then waits for the broker ([`connection::Waiting::ForBroker`]) |
//! | 3. a message is published and wakes the waiting request | [`app::App::publish`] → [`broker::Broker::publish`] wakes every subscriber's [`wake::Wake`] |
//! | 4. the server answers with the messages and a cursor (and `"gap":true` if some were lost) | [`longpoll::LongPoll::poll`] → [`longpoll::answer_body`] |
//! | 5. the client asks again from the cursor; nothing is lost in between | the channel's history ([`broker::History`]): [`broker::memory`], or the Redis stream |
//!
//! ## Strategy 2: Server-Sent Events (WHATWG HTML §9.2)
//!
//! | step | where |
//! |---|---|
//! | negotiate: `Accept` must allow `text/event-stream`, or 406 (the gate checked `Origin`) | [`app::App::handle`], [`http::accepts`] (RFC 9110 §12.5.1) |
//! | resume: the cursor is `Last-Event-ID`, which a reconnecting `EventSource` sends, or `?since=` for a client that cannot set it; without one, only new messages | [`app::SseStart::since`], parsed by [`broker::Broker::parse_cursor`], where [`subscription::Subscription::new`] starts reading (§9.2.4) |
//! | the response head: `text/event-stream`, chunked, no buffering, `Vary: Origin` | [`stream::SseStream::write_head`] |
//! | `retry:`, then replay from the cursor, then live, one chunk per event | [`stream::SseStream::start`], [`stream::SseStream::advance`] |
//! | the history no longer reaches back to the cursor: `event:gap` with `{"since":...,"oldest":...}` and no `id:`, before the replay | the [`broker::Gap`] in a [`broker::Batch`], written by [`stream::SseStream::advance`] |
//! | encode an event (`id:`, `event:`, `data:` per line, blank line) | [`sse::encode_event`] (§9.2.5) |
//! | deliver a message: the event's few bytes around the shared envelope, as one chunk | [`sse::LineEvent`], [`http::response::write_chunk_pieces`] |
//! | `: keepalive` comments for proxies | [`sse::encode_comment`] (§9.2.7) |
//! | end the stream (shutdown, token expiry) with the last chunk; the browser reconnects after `retry` | [`stream::SseStream::advance`], [`http::response::write_last_chunk`] (RFC 9112 §7.1) |
//! | what a browser does with the bytes (our parser, used by tests) | [`sse::EventStreamParser`] (§9.2.6) |
//!
//! ## Strategy 3: WebSockets (RFC 6455)
//!
//! | step | where | spec |
//! |---|---|---|
//! | the opening handshake: check the request, compute `Sec-WebSocket-Accept` | [`ws::handshake::check_client_handshake`], [`ws::handshake::accept_key`]; the 101: [`stream::WebSocketStream::start`] | §4.2 |
//! | refuse cross-site hijacking | [`gate::origin::classify`], before the route | §10.2 |
//! | a receive-only socket: no right to publish, 1008 on a text frame | [`gate::Grant::may_publish`], checked by [`stream::WebSocketStream`] (`on_message`) | §7.4.1 |
//! | read a frame header: FIN, RSV, opcode, 7/16/64-bit length, mask | [`ws::frame::FrameDecoder`] | §5.2 |
//! | unmask the payload, a machine word at a time | [`ws::mask::apply_mask`] | §5.3 |
//! | reassemble fragments; control frames in between | [`ws::message::Assembler`] | §5.4 |
//! | validate text as UTF-8 as it arrives, failing fast; 64 bytes at a time with AVX2, or SSE4.1 without it, where the CPU has them | [`ws::utf8::Utf8Validator`], [`server::sys::utf8_simd::validate_prefix`] | §5.6, §8.1 |
//! | answer pings; fail the connection with the right code | [`ws::session::Session::receive`], [`ws::session::ProtocolError::close_code`] | §5.5.2, §7.1.7, §7.4 |
//! | follow a channel (a `{"gap":true,...}` frame first if the cursor is too old), publish the client's text, ping every `--keepalive` | [`stream::WebSocketStream::advance`] | §5.5.2, §7.4.1 |
//! | the closing handshake: whoever closes first sends Close and the other echoes its status code; after its own Close the server waits at most 5 s for the peer's; once Close has gone both ways, or the peer broke the protocol, the server closes TCP first, at once | [`ws::session::Session::close`] (our Close: `CloseSent`), [`ws::session::Session::receive`] (the peer's Close, echoed if we had sent none: `Closed`), [`stream::WebSocketStream::advance`] with [`stream::CLOSE_HANDSHAKE_TIMEOUT`], then [`connection::Connection::is_finished`] | §5.5.1, §7.1.1-§7.1.4 |
//! | close from the server's side, behind what the client has not read, without waiting for the echo: a slow consumer (1008), the memory budget (1009), overload (1011) | [`connection::Connection::advance`] → [`stream::WebSocketStream::close_now`] | §7.4.1 |
//! | the client side: random key, fresh mask per frame | [`ws::client::Client`] | §4.1, §5.3 |
//! | compression: take the first acceptable `permessage-deflate` offer (no context takeover by default, `--ws-deflate`) | [`ws::extension::negotiate`], answered in [`ws::handshake::write_accept_response`] | RFC 7692 §5, §7.1 |
//! | a compressed message: RSV1 on its first frame, `00 00 ff ff` removed and put back; decompressed within the message limit (1009) | [`ws::deflate::Compressor`], [`ws::deflate::Decompressor`], in the session from [`ws::session::Session::use_deflate`] | RFC 7692 §6, §7.2 |
//! | a broadcast compressed once for all its subscribers, like its envelope | [`ws::deflate::SharedCompression`], from [`stream::WebSocketStream::advance`] | |
//! | DEFLATE itself: Huffman codes, LZ77 with hash chains, a resumable bounded decoder | [`deflate`]: [`deflate::Deflater`], [`deflate::Inflater`] | RFC 1951 |
//!
//! ## HTTP/2 (RFC 9113, RFC 7541): h2c with prior knowledge, on the same port
//!
//! | step | where | spec |
//! |---|---|---|
//! | tell HTTP/2 prior knowledge from HTTP/1.1 by the first octets, and hand the connection over | [`http2::frame::detect_preface`], in [`connection::Connection`]'s first request | RFC 9113 §3.3, §3.4 |
//! | read a frame and check its type's rules; each error with its code and scope | [`http2::frame::parse_frame`], [`http2::error::H2Error`] | RFC 9113 §4, §5.4, §6 |
//! | the server's SETTINGS first; the client's acknowledged; PING answered | [`http2::connection::H2Connection::new`], [`http2::connection::H2Connection::receive`] | RFC 9113 §3.4, §6.5.3, §6.7 |
//! | stream states: idle, open, half-closed, closed; ids odd and increasing; REFUSED_STREAM past the limit | [`http2::connection::H2Connection::receive`] | RFC 9113 §5.1, §5.1.1, §5.1.2 |
//! | flow control: no DATA beyond the peer's windows, a new initial window applied to open streams, ours given back | [`http2::connection::H2Connection::flush`], [`http2::connection::H2Connection::receive`] | RFC 9113 §5.2, §6.9 |
//! | join HEADERS and its CONTINUATIONs into one header block, within a limit (the CONTINUATION flood) | [`http2::field_block::FieldBlocks`] | RFC 9113 §4.3, §6.10 |
//! | decode a header block against the static and dynamic tables, within the header list limit | [`http2::hpack::Decoder`] | RFC 7541 §2-§6 |
//! | encode a header block: indices where the tables have the field, Huffman where it is no longer | [`http2::hpack::Encoder`], [`http2::huffman`] | RFC 7541 §5.2, §6 |
//! | a request's fields checked (lowercase, no connection-specific fields, pseudo-headers) and made the HTTP/1.1 routes' request | [`http2::message::RequestHead`] | RFC 9113 §8.1.1, §8.2, §8.3 |
//! | each stream an exchange with the same routes: a response, a publish, a long poll, an SSE stream as DATA frames | [`http2::server::H2Server`] | RFC 9113 §8.1 |
//! | the floods: rapid reset, PING and SETTINGS answers unread, a window held at zero | [`http2::connection`] (its module docs) | CVE-2023-44487, RFC 9113 §10.5 |
//!
//! ## The security boundary: one gate before every route
//!
//! | step | where | spec |
//! |---|---|---|
//! | where does the request come from: own origin, allowed, foreign (403) | [`gate::origin::classify`] | RFC 6454 §6.2, RFC 6455 §10.2 |
//! | a CORS preflight: which methods and headers the page may use | [`gate::origin::preflight`] | WHATWG Fetch §3.2.2 |
//! | let an allowed page read every answer, errors included | [`gate::origin::Cors`] | WHATWG Fetch §3.2.3 |
//! | the token: `Authorization: Bearer`, or the query for browsers | [`gate::presented_token`] | RFC 6750 §2 |
//! | verify a signed token: HS256 only, signature first, then `exp` | [`token::verify`], [`crypto::hmac::hmac_sha256`] | RFC 7515, RFC 7519 §7.2, RFC 2104 |
//! | what the token grants: channels by name or prefix; 401 or 403 | [`gate::Gate::authorize`] | RFC 6750 §3.1 |
//! | publishes per second per address: a token bucket, 429 | [`gate::Gate::take_publish`], [`gate::rate::PublishRate`] | RFC 6585 §4 |
//! | connections per address, counted before a byte is read | [`gate::rate::ConnectionsPerAddress`] | |
//! | the order of it all, before any route code | [`app::App::handle`] | |
//!
//! ## Many nodes: the Redis backplane
//!
//! | step | where |
//! |---|---|
//! | speak Redis: encode a command, decode a reply as it arrives, resuming where the last read stopped (RESP2) | [`broker::resp::encode_command`], [`broker::resp::Decoder`] (one-shot: [`broker::resp::decode`]) |
//! | publish: one Lua script appends to the channel's stream (`XADD`) and publishes the entry (`PUBLISH`), atomically, so every node hears a channel in stream order | [`broker::redis::PUBLISH_SCRIPT`], sent by [`broker::redis::RedisBroker`] (`EVALSHA`, the script loaded on every connection as it opens), one call for the publishes queued together ([`broker::redis::pipeline::Pipeline::submit_publish`]) |
//! | never wait for Redis on a worker: commands go to a pipelined link with threads of its own; the answer comes back through the connection's wake-up | [`broker::redis::pipeline::Pipeline`], [`broker::Pending`] (a publish), [`broker::Batch::in_flight`] (a cold read), [never waiting](broker::redis#never-waiting-for-redis) |
//! | ids are stream ids, the same on every node | [`broker::redis::parse_stream_id`], [`broker::redis::stream_id`] |
//! | hear the publishes of the channels followed here: a channel's first local subscriber records a wish, the supervisor `SUBSCRIBE`s it (batched), catches it up from the stream after the confirmation, and `UNSUBSCRIBE`s it after a linger; each entry into the channel's mirror | [one subscription per channel](broker::redis#one-subscription-per-channel) ([`broker::redis::SUBSCRIPTION_LINGER`]; the supervisor thread, `redis/supervisor.rs`: `grant_wishes`, `catch_up`, `sweep`; `Mirror::accept` in `redis/mirror.rs`) |
//! | resume from a cursor: from the mirror, or older history from the stream with a gap check (trimmed after the cursor, or the cursor's own entry lost) | [`broker::redis::RedisBroker`] as a [`broker::Broker`] (`read`: `XRANGE` + `XINFO STREAM` + the cursor's entry, one `MULTI`; the gap rules, `gap_after` and `cursor_was_lost`, in `redis/channel.rs`) |
//! | Redis went away: refuse publishes (503), reconnect with backoff, subscribe every mirrored channel again (chunked), catch up by `XRANGE` | [connections and faults](broker::redis#connections-and-faults) (`supervise`, `open_subscription`, `catch_up` in `redis/supervisor.rs`) |
//! | a Redis Cluster (`--broker redis-cluster://...`): stream and shard channel share the channel as hash tag, `SPUBLISH`/`SSUBSCRIBE` on the slot's master, commands routed by slot with `MOVED`/`ASK` followed | [cluster](broker::redis#cluster), [`broker::redis::cluster::key_slot`], [`broker::redis::router::Router`], [`broker::redis::KeySpace`] |
//! | survive a failover: a publish on a master with replicas is answered once a replica has it (`WAIT 1`, one per batch), a mirror whose stream went backwards rewinds and tells its readers, and a lost master's connection costs only its own channels (the others' news go on) | [replicated writes](broker::redis::pipeline#replicated-writes) ([`broker::redis::cluster::Topology::count_replicas`]), [cluster](broker::redis#cluster) ("A master lost", "Failover") |
//!
//! ## Two server models: what waiting costs
//!
//! | step | thread per connection | event loop |
//! |---|---|---|
//! | take a connection | [`server::threads::run`]: a new thread (within a budget the kernel allows) | [`server::event_loop::run`]: round robin to a worker, a slot in its table |
//! | wait for bytes | a blocking `read` with the next deadline as its timeout | readiness from [`server::poller::Poller::wait`] (epoll, O(ready); or poll(2), O(n)) |
//! | read | one `read` | until a read comes back short, which drains the socket (`read_available`), while the connection has room ([`connection::Connection::input_room`]) |
//! | write | [`server::write::flush`], a slice copied out under the lock, each `write` blocking no later than the next deadline | the same [`server::write::flush`] until it would block; interest in writability ([`server::poller::Interest`]) only while bytes wait |
//! | a parked long poll ([`connection::Waiting::ForBroker`]) | a thread asleep in `park_timeout` | a slot, a wake-up and a timer-heap entry |
//! | the client hangs up while parked | the thread naps [`server::threads::HANGUP_CHECK_INTERVAL`] and polls its socket for `POLLRDHUP` | epoll reports `EPOLLRDHUP` at once |
//! | a client that reads too slowly | writes block until the connection's next deadline, then [`connection::Connection::advance`] decides | the socket stops taking bytes; the same `advance` decides |
//! | the broker wakes it | `Thread::unpark` | the slot's number is queued and the worker's [`server::notify::Notifier`] (an eventfd) is written |
//! | deadlines (header, idle, poll, keepalive, ping, close) from [`connection::Connection::next_deadline`] | the read or park timeout | one binary heap per worker; its earliest entry is the wait's timeout |
//!
//! Both call the same [`connection::Connection`] methods; neither parses anything.
//!
//! ## Shared pieces
//!
//! - [`broker`]: channels, ids, history, gaps and wake-ups; each message stored once, as its
//!   envelope ([`broker::Message::envelope`]), the history bounded by count and bytes, idle
//!   channels reclaimed ([`broker::Limits`]); [`broker::memory`] is the ring log.
//! - [`broker::redis`]: many nodes over one Redis (`--broker redis://...`): a stream per channel
//!   for history, a pub/sub channel per channel for news (subscribed only where a client
//!   follows it), a mirror of each followed channel; the link ([`broker::redis::pipeline`])
//!   carries commands off the workers;
//!   [`broker::resp`] is its sans-I/O wire codec (RESP2).
//! - [`subscription`]: a cursor in a channel plus a registered wake-up; pull, never push.
//! - [`wake`]: the wake-up itself: a connection's token on its worker's (or thread's) queue, 16
//!   bytes, where a `std::task::Waker` would be an allocation per connection; and a worker's
//!   [`wake::Turn`], which holds the wake-ups and sends it causes (the Redis link's) to its end.
//! - [`server`]: the two drivers ([`server::event_loop`], [`server::threads`]), the shared accept
//!   loop, the shared write and linger ([`server::write`]), and [`server::sys`], the one
//!   `unsafe` module, behind safe APIs: the OS calls std lacks ([`server::sys::os`]: epoll,
//!   poll, eventfd, signals, rlimit, CPU affinity, a send that never waits, for the Redis
//!   link) and UTF-8 validation with AVX2 or SSE4.1
//!   ([`server::sys::utf8_simd`], the Keiser-Lemire lookup algorithm on 32- or 16-byte
//!   vectors, used by [`ws::utf8`]).
//! - [`config`]: every limit, its default and why; [`stats`]: `/stats` and `/metrics`, with
//!   [`histogram`] (latency histograms, an atomic counter per bucket) and [`process`] (the
//!   standard `process_*` metrics, from `/proc`).
//! - [`log`]: lines on stderr with an RFC 3339 time and a level, as text or JSON
//!   ([`log::format_line`]; the date from [`time::civil_from_days`]); the access log, one line
//!   per finished exchange, is written by [`connection::Connection`] where the exchange ends
//!   (`end_exchange`), with tokens in the query redacted ([`gate::loggable_target`], RFC 6750 §5.3).
//! - [`budget`]: one memory budget for everything clients can make the server hold; with
//!   [`connection::Connection::input_room`] (reading pauses while a client owes us output),
//!   what keeps a flood from one client from becoming the server's problem.
//! - [`gate`]: the security boundary; [`token`]: signed channel tokens (`realtime token`);
//!   [`crypto`]: SHA-256 and HMAC, written out; [`time`]: the time as a value ([`time::Now`]);
//!   [`random`]: the OS's randomness (the broker's epoch, WebSocket keys and masks);
//!   [`sync`]: the one poison-tolerant `lock` every shared table uses.
//! - [`deflate`]: DEFLATE (RFC 1951) written out, sans-I/O, for permessage-deflate: a
//!   resumable decoder with an output limit ([`deflate::inflate`]) and a compressor of zlib's
//!   ratio ([`deflate::lz77`], [`deflate::block`]).
//! - [`json`]: JSON written by hand (the envelope's strings, `/stats`) and a small reader for
//!   clients.
//! - [`client`]: the client side of every protocol: a sans-I/O subscriber on any transport
//!   ([`client::subscriber`]) that hands each message to a sink without copying it, the
//!   envelope read where it lies ([`client::envelope`]), and a publisher
//!   ([`client::publisher`]).
//! - [`bench`](mod@bench): `realtime bench`, the load generator: many [`client`] subscribers on
//!   the server's own poller ([`bench::engine`]).
//! - [`cli`]: `realtime sub` and `realtime pub`, one subscriber or publisher from a shell, and
//!   the exit codes; [`args`]: the conventions every command's flags follow (`--flag=value`,
//!   switches, `REALTIME_*` environment variables).
//! - [`demo`]: the page at `/`, the three transports side by side in a browser, embedded with
//!   `include_str!` and served under a hash-based Content-Security-Policy.
//!
#![deny(unsafe_code)]

pub mod app;
pub mod args;
pub mod bench;
pub mod broker;
pub mod budget;
pub mod cli;
pub mod client;
pub mod config;
pub mod connection;
pub mod crypto;
pub mod decimal;
pub mod deflate;
pub mod demo;
#[doc(hidden)]
pub mod fuzz;
pub mod gate;
pub mod histogram;
pub mod http;
pub mod http2;
pub mod json;
pub mod log;
pub mod longpoll;
pub mod process;
pub mod random;
pub mod server;
pub mod sse;
pub mod stats;
pub mod stream;
pub mod subscription;
pub mod sync;
pub mod time;
pub mod token;
pub mod transport;
pub mod wake;
pub mod ws;
