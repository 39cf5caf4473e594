//! HTTP/2 (RFC 9113) from scratch, sans-I/O, served as h2c with prior knowledge on the same
//! port as HTTP/1.1. Split the way the RFCs are:
//!
//! | file | spec | what it does |
//! |---|---|---|
//! | [`frame`] | RFC 9113 §3.4, §4, §6 | the connection preface; frame headers; each frame type's payload and its rules |
//! | [`field_block`] | RFC 9113 §4.3, §6.2, §6.10 | HEADERS and its CONTINUATIONs joined into one header block, within a limit |
//! | [`hpack`] | RFC 7541 §2-§6, Appendix A | header blocks: integers, strings, the static and dynamic tables, decoder and encoder |
//! | [`huffman`] | RFC 7541 §5.2, Appendix B | the static Huffman code HPACK strings may use |
//! | [`error`] | RFC 9113 §5.4, §7 | error codes, and whether an error ends a stream or the connection |
//! | [`connection`] | RFC 9113 §3.4, §5, §6.5, §6.9 | the server connection: settings, stream states, flow control, the flood bounds |
//! | [`message`] | RFC 9113 §8 | a request's fields checked and made the routes' request; a response's fields |
//! | [`server`] | RFC 9113 §8.1 | each stream an exchange with the application's routes |
//!
//! ## Why HTTP/2 matters for Server-Sent Events
//!
//! Over HTTP/1.1 a response owns its connection until it ends, and an SSE response never
//! ends: every `EventSource` holds one TCP connection for as long as the page is open. A
//! browser opens at most six connections per host, so the seventh stream on a page (or in
//! a seventh tab) waits for one of the first six to close. HTTP/2 multiplexes: one TCP
//! connection carries any number of *streams* (up to the server's
//! SETTINGS_MAX_CONCURRENT_STREAMS), each a request and its response, their frames
//! interleaved. An SSE response becomes a HEADERS frame and then DATA frames on one stream
//! that is never ended; a publish costs a 9-octet frame header instead of a chunk's size
//! line, and a thousand subscribers behind one proxy can be a handful of connections.
//!
//! ## The pieces
//!
//! **Frames** ([`frame`]). After a 24-octet preface that no HTTP/1.1 server would accept
//! (which is how one port can serve both: [`frame::detect_preface`]), everything is a frame:
//! 9 octets of header (length, type, flags, stream) and a payload. HEADERS and CONTINUATION
//! carry a compressed header block, DATA carries body octets, and the rest manage the
//! connection: SETTINGS (each side's limits), PING, GOAWAY, RST_STREAM (end one stream),
//! WINDOW_UPDATE (flow control). [`frame::parse_frame`] reads one frame from the bytes
//! received so far and checks every rule RFC 9113 gives for it alone.
//!
//! **HPACK** ([`hpack`]). Headers are no longer text: each side keeps a table of the
//! fields sent so far, and a field already in it costs an index, often one octet. A
//! request's `:method: GET`, `:path`, `user-agent` and cookie shrink to a few octets
//! after the first request. Because both ends must keep identical tables, a block that
//! cannot be decoded poisons the whole connection: COMPRESSION_ERROR, and GOAWAY. Strings may
//! also be Huffman-coded ([`huffman`]): in RFC 7541's examples `www.example.com` takes 12
//! octets instead of 15.
//!
//! **The connection** ([`connection`]). Each stream is a request and its response, in
//! states (§5.1) that its frames move it through; both ends keep flow-control windows per
//! stream and for the connection (§6.9), so that one slow stream cannot hold another's
//! memory. [`connection::H2Connection`] is the protocol alone: frames in, events out
//! (a request, body octets, a reset), and answers queued per stream and sent as DATA as the
//! peer's windows allow.
//!
//! **Serving** ([`server`], [`message`]). [`crate::connection::Connection`] hands a connection
//! whose first octets are the preface to [`server::H2Server`]; the server models never see
//! HTTP/2, and run it as they run a WebSocket (reading and following the broker at once).
//! A request's fields become the same [`crate::http::request::Request`] an HTTP/1.1 head does,
//! so one route table, gate and set of routes serve both; an SSE response is the HTTP/1.1
//! [`crate::stream::SseStream`] itself, writing into its stream's buffer unchunked.
//!
//! ## Not built
//!
//! TLS (so no `h2` for browsers: a TLS proxy in front speaks it), the `Upgrade: h2c` dance
//! (RFC 9113 §3.1 deprecates it), WebSockets over HTTP/2 (RFC 8441's extended CONNECT: the
//! WebSocket routes answer 501), server push, priorities (§5.3.2: ignored), request trailers
//! (accepted and dropped), and sending our own PINGs.

#![forbid(unsafe_code)]

pub mod connection;
pub mod error;
pub mod field_block;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod message;
pub mod server;
