//! HTTP/2 (RFC 9113) from scratch, sans-I/O: the codecs, so far. Split the way the RFCs are:
//!
//! | file | spec | what it does |
//! |---|---|---|
//! | [`frame`] | RFC 9113 §3.4, §4, §6 | the connection preface; frame headers; each frame type's payload and its rules |
//! | [`field_block`] | RFC 9113 §4.3, §6.2, §6.10 | HEADERS and its CONTINUATIONs joined into one header block, within a limit |
//! | [`hpack`] | RFC 7541 §2-§6, Appendix A | header blocks: integers, strings, the static and dynamic tables, decoder and encoder |
//! | [`huffman`] | RFC 7541 §5.2, Appendix B | the static Huffman code HPACK strings may use |
//! | [`error`] | RFC 9113 §5.4, §7 | error codes, and whether an error ends a stream or the connection |
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
//! ## Not built yet
//!
//! These are codecs: bytes in, values out, and back, and nothing serves HTTP/2 yet. Still to
//! come: the connection state machine (stream states, RFC 9113 §5.1; SETTINGS exchange and
//! acknowledgement, §6.5.3); flow control for the connection and each stream (§5.2, §6.9);
//! the bounds on the known floods (rapid reset, SETTINGS and PING floods, a window held at
//! zero; the CONTINUATION flood is bounded by [`field_block`] already); and the server
//! integration: prior-knowledge h2c on the same port as HTTP/1.1, under both server models,
//! with every route but the WebSocket upgrade.

#![forbid(unsafe_code)]

pub mod connection;
pub mod error;
pub mod field_block;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod message;
pub mod server;
