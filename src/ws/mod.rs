//! WebSockets (RFC 6455) from scratch, sans-I/O. Split the way the RFC is:
//!
//! | file | RFC 6455 | what it does |
//! |---|---|---|
//! | [`handshake`] | §1.3, §4 | the accept key, the 101 response, the client's request |
//! | [`mask`] | §5.3 | the XOR that every client payload goes through, a word at a time |
//! | [`frame`] | §5.1, §5.2, §5.5 | frame headers; a streaming decoder that checks them |
//! | [`utf8`] | §5.6, §8.1 | an incremental UTF-8 validator that fails at the first bad byte |
//! | [`close`] | §7.4 | close status codes: why a connection ended |
//! | [`message`] | §5.4, §5.5.1 | fragments into messages; close bodies |
//! | [`session`] | §5.5, §6, §7 | one connection's state machine: bytes in, events and bytes out |
//! | [`extension`] | §9.1; RFC 7692 §5, §7.1 | negotiating `permessage-deflate` in the handshake |
//! | [`deflate`] | RFC 7692 §6, §7.2 | compressing and decompressing messages; compressing a broadcast once |
//! | [`client`] | §4.1 | a blocking client over `TcpStream` (tests, benchmarks) |
//!
//! Bytes flow up through the layers and replies flow down:
//!
//! ```text
//!  socket bytes ─► FrameDecoder ─► headers, unmasked payload pieces ─► Session
//!                                                  data frames ─► Assembler ─► Message
//!                                                  control frames ─► pong / close echo
//!  socket bytes ◄─ encode_frame ◄───────────── send_text, close, automatic replies
//! ```
//!
//! Nothing here touches a socket: the drivers feed [`session::Session::receive`] whatever they
//! read (starting with any bytes read past the HTTP handshake) and write what it returns.

#![forbid(unsafe_code)]

pub mod client;
pub mod close;
pub mod deflate;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod session;
pub mod utf8;
