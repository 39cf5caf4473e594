//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by `tests/fuzz_corpus.rs`,
//! which replays every checked-in corpus file through them on each `cargo test`.
//!
//! Each function takes arbitrary bytes and panics only when an invariant is broken, which is
//! what a fuzzer looks for. Besides "never panic, never allocate past the limits", each checks
//! the property that makes a parser incremental: feeding the same bytes in two pieces (split
//! at a position taken from the input itself) gives the same answer as feeding them whole.
//! The token target, which parses no stream, checks instead that whatever verifies signs again
//! to a token that verifies to the same claims.

#![forbid(unsafe_code)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::broker::resp::{self, Limits as RespLimits};
use crate::deflate::{Deflater, InflateError, Inflater, Level};
use crate::http::body::{BodyDecoder, BodyFraming};
use crate::http::grammar::Parsed;
use crate::http::request::{parse_request, Limits};
use crate::server::sys::utf8_simd;
use crate::sse::{Event as SseEvent, EventStreamParser, ParseError};
use crate::token::{self, ChannelPattern, TokenError, MAX_NUMERIC_DATE, MAX_PATTERNS, MAX_TOKEN_BYTES};
use crate::ws::session::{Event as WsEvent, Session, State};
use crate::ws::utf8::{Utf8Error, Utf8Validator};

/// The body limit the chunked target decodes under: small enough that going past it is
/// common in fuzzed input, so the 413 path is exercised too.
const FUZZ_MAX_BODY: usize = 64 * 1024;

/// The message limit the WebSocket target runs under, for the same reason.
const FUZZ_MAX_MESSAGE: usize = 64 * 1024;

/// The output limit the inflate target decodes under: small enough that a fuzzed stream
/// often reaches it, so the decompression-bomb path is exercised too.
const FUZZ_MAX_INFLATED: usize = 64 * 1024;

/// The limits the RESP target decodes under: small, so that fuzzed input reaches each of them.
const FUZZ_RESP_LIMITS: RespLimits =
    RespLimits { max_bulk_bytes: 1024, max_array_len: 64, max_depth: 8, max_line_bytes: 256 };

/// The secret the token target verifies under: RFC 7515 appendix A.1's HS256 key (its JWK's
/// `k`, base64url), so that the RFC's own example token in the corpus verifies.
const FUZZ_TOKEN_KEY: &str = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

/// A split position taken from the input, so that the fuzzer explores split points too.
fn split_point(data: &[u8]) -> usize {
    match data.first() {
        Some(&byte) if !data.is_empty() => (byte as usize * 257) % (data.len() + 1),
        _ => 0,
    }
}

/// The request head parser: a complete head reparses identically from exactly its own bytes,
/// every strict prefix of it is `Partial`, and its accessors never panic.
pub fn http_request(data: &[u8]) {
    let limits = Limits::default();
    match parse_request(data, &limits) {
        Ok(Parsed::Complete { value, consumed }) => {
            assert!(consumed > 0 && consumed <= data.len());
            let _ = (value.path(), value.query(), value.authority(), value.keep_alive());
            let _ = (value.body_framing(), value.expectation(), value.has_token("connection", "close"));
            let again = parse_request(&data[..consumed], &limits);
            assert!(matches!(again, Ok(Parsed::Complete { consumed: c, .. }) if c == consumed));
            let prefix = split_point(data).min(consumed - 1);
            assert!(matches!(parse_request(&data[..prefix], &limits), Ok(Parsed::Partial)));
        }
        Ok(Parsed::Partial) => assert!(data.len() <= limits.max_head_bytes),
        Err(error) => assert!(error.status() >= 400),
    }
}

/// Decodes `pieces` in order as a chunked body; the result and the body.
fn decode_chunked(pieces: &[&[u8]]) -> (Result<bool, u16>, Vec<u8>) {
    // Chunked framing with a small limit cannot fail to build.
    let Ok(mut decoder) = BodyDecoder::new(BodyFraming::Chunked, FUZZ_MAX_BODY) else { unreachable!() };
    let mut body = Vec::new();
    let mut pending = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        match decoder.decode(&pending, &mut body) {
            Ok(progress) => {
                assert!(progress.consumed <= pending.len());
                pending.drain(..progress.consumed);
                if progress.done {
                    return (Ok(true), body);
                }
            }
            Err(error) => return (Err(error.status()), body),
        }
        assert!(body.len() <= FUZZ_MAX_BODY);
    }
    (Ok(false), body)
}

/// The chunked decoder: never over the limit, and the same outcome whole or in two pieces.
pub fn http_chunked(data: &[u8]) {
    let (whole, whole_body) = decode_chunked(&[data]);
    let (head, tail) = data.split_at(split_point(data));
    let (split, split_body) = decode_chunked(&[head, tail]);
    assert_eq!(whole, split);
    if whole.is_ok() {
        assert_eq!(whole_body, split_body);
    }
}

/// Runs a server session over `pieces`; the events, the replies and the final state.
fn run_session(pieces: &[&[u8]]) -> (Vec<WsEvent>, Vec<u8>, State) {
    let mut session = Session::new_server(FUZZ_MAX_MESSAGE);
    let (mut events, mut out, mut pending) = (Vec::new(), Vec::new(), Vec::new());
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let (consumed, event) = session.receive(&mut pending, &mut out);
            pending.drain(..consumed);
            let Some(event) = event else {
                if consumed == 0 {
                    break;
                }
                continue;
            };
            let terminal = matches!(event, WsEvent::Closed(_) | WsEvent::Failed(_));
            events.push(event);
            if terminal {
                assert_eq!(session.state(), State::Closed);
            }
        }
    }
    (events, out, session.state())
}

/// The WebSocket frame decoder, message assembly and UTF-8 validation behind a server
/// session: nothing happens after a failure or a close, and delivery in two pieces gives the
/// same events and the same replies.
pub fn ws_frame(data: &[u8]) {
    let whole = run_session(&[data]);
    if let Some(last) = whole.0.iter().position(|e| matches!(e, WsEvent::Closed(_) | WsEvent::Failed(_))) {
        assert_eq!(last + 1, whole.0.len(), "an event after the connection closed");
    }
    let (head, tail) = data.split_at(split_point(data));
    assert_eq!(run_session(&[head, tail]), whole);
}

/// UTF-8 validation, differentially: [`Utf8Validator`] fed in three pieces (cut at two
/// positions taken from the input) gives `std::str::from_utf8`'s verdict, the invalid byte
/// at the offset std's error implies ([`std_utf8_verdict`]), reported by the `feed` of the
/// piece that holds it (failing fast); the state machine alone (`feed_scalar`) and
/// [`crate::ws::utf8::into_string`] agree. `feed` takes the widest vector path the CPU has,
/// so the SSE4.1 path, which CPUs without AVX2 take, is held to its contract directly: it
/// vouches for at most the input, and only for valid UTF-8.
pub fn utf8(data: &[u8]) {
    let expected = std_utf8_verdict(data);
    assert_eq!(crate::ws::utf8::into_string(data.to_vec()).is_ok(), expected.is_ok(), "into_string");
    if let Some(vouched) = utf8_simd::sse41_validate_prefix_for_fuzzing(data) {
        assert!(vouched <= data.len(), "SSE4.1 vouched for {vouched} of {} bytes", data.len());
        assert!(std::str::from_utf8(&data[..vouched]).is_ok(), "SSE4.1 vouched for invalid bytes: {vouched}");
    }
    let mut scalar = Utf8Validator::new();
    assert_eq!(scalar.feed_scalar(data).and_then(|()| scalar.finish()), expected);
    let first = split_point(data);
    let second = first + data.get(1).map_or(0, |&byte| (byte as usize * 257) % (data.len() - first + 1));
    let mut validator = Utf8Validator::new();
    let mut start = 0;
    for end in [first, second, data.len()] {
        if let Err(error) = validator.feed(&data[start..end]) {
            assert_eq!(Err(error), expected, "cut at {first} and {second}");
            let Utf8Error::InvalidByte { position } = error else { panic!("feed reported a truncation") };
            assert!((start as u64..end as u64).contains(&position), "reported late: {error:?} in {start}..{end}");
            return;
        }
        start = end;
    }
    assert_eq!(validator.finish(), expected, "cut at {first} and {second}");
}

/// `std::str::from_utf8`'s verdict in [`Utf8Validator`]'s terms: where the first impossible
/// byte is. std reports the start of the bad sequence (`valid_up_to`) and the length of its
/// longest valid-looking prefix (`error_len`); the byte that breaks it is after that prefix,
/// unless the first byte itself can never start a sequence. No `error_len`: the input ends in
/// the middle of a sequence.
pub fn std_utf8_verdict(bytes: &[u8]) -> Result<(), Utf8Error> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(error) => match error.error_len() {
            None => Err(Utf8Error::Truncated),
            Some(len) => {
                let start = error.valid_up_to();
                let lead_is_valid = matches!(bytes[start], 0xC2..=0xF4);
                let position = if lead_is_valid { start + len } else { start };
                Err(Utf8Error::InvalidByte { position: position as u64 })
            }
        },
    }
}

/// Inflates `pieces` in order with a window of `window_bits` under [`FUZZ_MAX_INFLATED`].
fn inflate_pieces(pieces: &[&[u8]], window_bits: u8) -> (Result<bool, InflateError>, Vec<u8>) {
    let mut inflater = Inflater::new(window_bits);
    let mut out = Vec::new();
    for piece in pieces {
        match inflater.inflate(piece, &mut out, FUZZ_MAX_INFLATED) {
            Ok(crate::deflate::Progress::End) => return (Ok(true), out),
            Ok(crate::deflate::Progress::NeedInput) => {}
            Err(error) => return (Err(error), out),
        }
        assert!(out.len() <= FUZZ_MAX_INFLATED);
    }
    (Ok(false), out)
}

/// The DEFLATE decoder: never past its output limit, and the same outcome and output whole,
/// in two pieces and byte by byte. The first byte picks the window (8 to 15 bits).
pub fn inflate(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else { return };
    let window_bits = 8 + first % 8;
    let whole = inflate_pieces(&[stream], window_bits);
    assert!(whole.1.len() <= FUZZ_MAX_INFLATED);
    let (head, tail) = stream.split_at(split_point(data).min(stream.len()));
    assert_eq!(inflate_pieces(&[head, tail], window_bits), whole);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(inflate_pieces(&bytes, window_bits), whole);
}

/// The DEFLATE encoder: what it compresses decompresses to the input, at each level and
/// window, as one message or as several sharing the window (context takeover), and never
/// grows by more than block headers. The first byte picks the level, the window and how many
/// messages the rest is cut into.
pub fn deflate_roundtrip(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else { return };
    let level = if first & 1 == 0 { Level::Fast } else { Level::Default };
    let window_bits = 8 + (first >> 1) % 8;
    let messages = 1 + usize::from(first >> 4);
    let mut deflater = Deflater::new(level, window_bits);
    let mut inflater = Inflater::new(window_bits);
    for message in input.chunks(input.len().div_ceil(messages).max(1)) {
        let compressed = deflater.compress_to_vec(message);
        // A stored block's 5 header bytes per 16 K symbols or 64 KiB piece, and the flush.
        assert!(compressed.len() <= message.len() + 5 * (message.len() / 16384 + 2) + 5, "{}", compressed.len());
        let mut out = Vec::new();
        assert_eq!(inflater.inflate(&compressed, &mut out, message.len()), Ok(crate::deflate::Progress::NeedInput));
        assert_eq!(out, message);
        assert!(inflater.at_block_boundary());
    }
}

fn parse_sse(pieces: &[&[u8]]) -> (Vec<SseEvent>, Result<(), ParseError>, Option<u64>, String) {
    let mut parser = EventStreamParser::new();
    let mut events = Vec::new();
    let mut result = Ok(());
    for piece in pieces {
        result = result.and(parser.feed(piece, &mut events));
    }
    parser.finish();
    (events, result, parser.retry(), parser.last_event_id().to_string())
}

/// The event-stream parser: the same events, error, retry and last event ID whole, in two
/// pieces and byte by byte.
pub fn sse_stream(data: &[u8]) {
    let whole = parse_sse(&[data]);
    let (head, tail) = data.split_at(split_point(data));
    assert_eq!(parse_sse(&[head, tail]), whole);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(parse_sse(&bytes), whole);
}

/// The RESP decoder: a complete value is "need more" at every shorter length (checked at a
/// split point taken from the input) and the same from exactly its own bytes; encoding it
/// again gives bytes that decode to the same value; an incomplete input is incomplete at any
/// shorter length too. The resuming [`resp::Decoder`], fed the input in two pieces and a
/// byte at a time as a connection feeds it, gives exactly the one-shot answer: the same
/// value and length, the same "need more", the same error.
pub fn resp(data: &[u8]) {
    let limits = FUZZ_RESP_LIMITS;
    let prefix_len = split_point(data);
    let whole = resp::decode(data, &limits);
    let (head, tail) = data.split_at(prefix_len);
    assert_eq!(resp_in_pieces(&[head, tail], &limits), whole);
    let single_bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(resp_in_pieces(&single_bytes, &limits), whole);
    match whole {
        Ok(Some((value, consumed))) => {
            assert!(consumed > 0 && consumed <= data.len());
            assert_eq!(resp::decode(&data[..prefix_len.min(consumed - 1)], &limits), Ok(None));
            assert_eq!(resp::decode(&data[..consumed], &limits), Ok(Some((value.clone(), consumed))));
            let mut encoded = Vec::new();
            resp::encode(&mut encoded, &value);
            assert_eq!(resp::decode(&encoded, &RespLimits::default()), Ok(Some((value, encoded.len()))));
        }
        Ok(None) => assert_eq!(resp::decode(&data[..prefix_len], &limits), Ok(None)),
        // A shorter input may not have reached the fault yet, or may hit another limit first.
        Err(_) => assert!(!matches!(resp::decode(&data[..prefix_len], &limits), Ok(Some(_)))),
    }
}

/// Feeds `pieces` to one [`resp::Decoder`] the way `Link::receive` does (each piece appended
/// to what was not consumed, what was consumed dropped): the first value and the bytes it
/// took, `Ok(None)` if the pieces run out first, or the error.
fn resp_in_pieces(pieces: &[&[u8]], limits: &RespLimits) -> Result<Option<(resp::Value, usize)>, resp::RespError> {
    let mut decoder = resp::Decoder::new(*limits);
    let mut unconsumed = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        unconsumed.extend_from_slice(piece);
        let (used, value) = decoder.decode(&unconsumed)?;
        if let Some(value) = value {
            return Ok(Some((value, consumed + used)));
        }
        unconsumed.drain(..used);
        consumed += used;
    }
    Ok(None)
}

/// The token target's input: `NOW TOKEN` (leading decimal digits and a space give the time,
/// saturating at `u64::MAX`), or just `TOKEN` at time 0. The token is the rest, as lossy UTF-8.
fn token_input(data: &[u8]) -> (u64, String) {
    let digits = data.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digits > 0 && data.get(digits) == Some(&b' ') {
        let now = data[..digits]
            .iter()
            .fold(0u64, |now, digit| now.saturating_mul(10).saturating_add(u64::from(digit - b'0')));
        (now, String::from_utf8_lossy(&data[digits + 1..]).into_owned())
    } else {
        (0, String::from_utf8_lossy(data).into_owned())
    }
}

/// Token verification: never panics; refuses for length exactly when the text is longer than
/// the limit; anything that verifies is within the limits, is refused under any other secret,
/// and signs again to a token that verifies to the same claims at the same time.
pub fn token(data: &[u8]) {
    let Ok(secret) = URL_SAFE_NO_PAD.decode(FUZZ_TOKEN_KEY) else { unreachable!("a constant") };
    let (now, text) = token_input(data);
    let result = token::verify(&text, &secret, now);
    assert_eq!(result == Err(TokenError::TooLong), text.len() > MAX_TOKEN_BYTES);
    match result {
        Ok(claims) => {
            assert!(now < claims.exp && claims.exp <= MAX_NUMERIC_DATE);
            assert!(claims.channels.len() <= MAX_PATTERNS && claims.publish.len() <= MAX_PATTERNS);
            for pattern in claims.channels.iter().chain(&claims.publish) {
                assert_eq!(ChannelPattern::parse(pattern.as_str()).as_ref(), Ok(pattern));
            }
            let mut other_secret = secret.clone();
            other_secret[0] ^= 1;
            assert_eq!(token::verify(&text, &other_secret, now), Err(TokenError::BadSignature));
            let again = token::sign(&claims, &secret);
            assert!(again.len() <= MAX_TOKEN_BYTES, "re-signed to {} bytes", again.len());
            assert_eq!(token::verify(&again, &secret, now), Ok(claims));
        }
        Err(error) => assert!(!error.message().is_empty() && !error.message().contains('\n'), "{error:?}"),
    }
}

/// The limits the connection target runs under: small, so that fuzzed scripts reach the
/// timeouts, the output bound and the message limits in a few steps.
fn fuzz_connection_config() -> crate::config::Config {
    crate::config::Config {
        header_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(800),
        keepalive: Duration::from_millis(300),
        send_timeout: Duration::from_millis(400),
        poll_timeout: Duration::from_millis(600),
        max_outbound_bytes: 4096,
        max_message_bytes: FUZZ_MAX_MESSAGE,
        max_publish_bytes: 1024,
        memory_budget: 1 << 20,
        ..Default::default()
    }
}

/// The most a connection may hold queued for its client under [`fuzz_connection_config`]: the
/// input pause point (twice the outbound limit) plus what one turn can add past it (an echoed
/// message, a pulled batch, a response), with room to spare.
const FUZZ_MAX_OUTPUT: usize = 2 * 4096 + 2 * FUZZ_MAX_MESSAGE + 64 * 1024;

/// A [`Connection`](crate::connection::Connection) driven by a script of bytes and time steps,
/// as a driver would: the first byte of each step picks what happens (client bytes, time
/// passing, the client taking output, the client hanging up, a publish, shutdown). Checks that
/// it never panics, that its output stays bounded, that nothing is queued after it has
/// finished, and that after a turn its next deadline is never in the past (a driver would
/// spin on it).
pub fn connection(data: &[u8]) {
    drive_connection(&[], data);
}

/// [`connection`] for HTTP/2: the connection has received the client preface and an empty
/// SETTINGS first, so the script's bytes are frames. The same invariants, and the same output
/// bound: the flood rules and the drivers' backpressure keep an HTTP/2 connection within it.
pub fn h2_connection(data: &[u8]) {
    let mut hello = crate::http2::frame::PREFACE.to_vec();
    crate::http2::frame::encode_settings(&[], &mut hello);
    drive_connection(&hello, data);
}

/// Runs a connection script (see [`connection`]) after the client sent `first`.
fn drive_connection(first: &[u8], data: &[u8]) {
    use crate::app::App;
    use crate::broker::memory::MemoryBroker;
    use crate::connection::Connection;
    use crate::time::Instant;
    use crate::time::Now;
    use crate::wake::WakeQueue;
    use std::sync::Arc;

    let config = fuzz_connection_config();
    let broker = Arc::new(MemoryBroker::with_epoch("fuzz".into(), config.broker_limits()));
    let app = Arc::new(App::new(config, broker));
    let t0 = Instant::now();
    let mut elapsed = Duration::ZERO;
    let now =
        |elapsed: Duration| Now { instant: t0 + elapsed, unix_ms: 1_700_000_000_000 + elapsed.as_millis() as u64 };
    let peer = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let mut connection = Connection::new(app.clone(), peer, now(elapsed));
    // Nobody parks this connection: the script advances it at every step anyway, so its
    // wake-ups ring no bell and are never taken.
    let wake = WakeQueue::new(|| {}).wake_for(0);
    if !first.is_empty() {
        connection.receive(first);
        connection.advance(now(elapsed), &wake);
    }
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        // Every step but the last three takes one argument byte.
        let (arg, after) = match tail.split_first() {
            Some((&arg, after)) if op % 8 < 5 => (arg as usize, after),
            _ => (0, tail),
        };
        rest = after;
        match op % 8 {
            // Client bytes: the next `arg` bytes of the script, as one read (what fits).
            0..=2 => {
                let (bytes, after) = rest.split_at(arg.min(rest.len()));
                rest = after;
                let room = connection.input_room();
                if room > 0 && !connection.is_input_closed() {
                    connection.receive(&bytes[..bytes.len().min(room)]);
                }
            }
            // Time passes: up to a quarter of a second per step.
            3 => elapsed += Duration::from_millis(arg as u64),
            // The client takes some of the output.
            4 => {
                let n = connection.output().len().min(arg * 64);
                connection.consume_output(n, t0 + elapsed);
            }
            5 => connection.receive_eof(),
            6 => {
                let _ = app.broker.publish("f", "fuzz", now(elapsed));
            }
            _ => app.begin_shutdown(),
        }
        let finished_before = connection.is_finished();
        connection.advance(now(elapsed), &wake);
        assert!(connection.output().len() <= FUZZ_MAX_OUTPUT, "output grew to {}", connection.output().len());
        if finished_before {
            assert!(connection.output().is_empty(), "bytes queued after the connection finished");
        }
        if let Some(deadline) = connection.next_deadline() {
            assert!(deadline > t0 + elapsed, "a deadline in the past after a turn: the driver would spin");
        }
    }
}

/// The HPACK decoder's limits in the `hpack_decode` target: small, so that fuzzed blocks
/// reach the table size limit and the header list limit.
const FUZZ_HPACK_TABLE_SIZE: usize = 256;
const FUZZ_HPACK_MAX_LIST: usize = 2048;

/// The HPACK decoder, given the input as two header blocks on one connection (split at a
/// point taken from the input): never panics; its dynamic table stays within its maximum and
/// its accounting (§4.1) adds up; a list it accepts is within the list limit; every error
/// but the list limit is a COMPRESSION_ERROR. What it accepts, our encoder writes again (with
/// and without Huffman) in a block that a fresh decoder reads back to the same fields, with
/// both tables equal. A Huffman string that decodes encodes back to exactly its bytes: with
/// §5.2's padding rules the code leaves no choice.
pub fn hpack_decode(data: &[u8]) {
    use crate::http2::hpack::{Decoder, Encoder, HpackError};
    use crate::http2::huffman;

    let mut decoder = Decoder::new(FUZZ_HPACK_TABLE_SIZE, FUZZ_HPACK_MAX_LIST);
    let (head, tail) = data.split_at(split_point(data));
    for block in [head, tail] {
        let result = decoder.decode(block);
        let table = decoder.table();
        assert!(table.size() <= table.max_size() && table.max_size() <= FUZZ_HPACK_TABLE_SIZE);
        let sum: usize = table.entries().map(|(name, value)| name.len() + value.len() + 32).sum();
        assert_eq!(sum, table.size());
        match result {
            Ok(fields) => {
                assert!(fields.iter().map(|field| field.size()).sum::<usize>() <= FUZZ_HPACK_MAX_LIST);
                for huffman in [true, false] {
                    let mut encoder = Encoder::new(FUZZ_HPACK_TABLE_SIZE, huffman);
                    let mut again = Decoder::new(FUZZ_HPACK_TABLE_SIZE, usize::MAX);
                    let mut out = Vec::new();
                    encoder.encode(&fields, &mut out);
                    assert_eq!(again.decode(&out).as_ref(), Ok(&fields));
                    assert!(encoder.table().entries().eq(again.table().entries()));
                }
            }
            Err(HpackError::HeaderListTooLarge) => {}
            Err(error) => {
                assert!(error.connection_error().is_some(), "{error}");
                break;
            }
        }
    }
    let mut decoded = Vec::new();
    if huffman::decode(data, &mut decoded).is_ok() {
        let mut encoded = Vec::new();
        huffman::encode(&decoded, &mut encoded);
        assert_eq!(encoded, data);
    }
}

/// The frame limit in the `h2_frame` target: the RFC's smallest SETTINGS_MAX_FRAME_SIZE, or
/// a far smaller one so that short inputs reach the size check too.
fn fuzz_h2_frame_size(data: &[u8]) -> u32 {
    match data.first() {
        Some(byte) if byte & 1 == 1 => 64,
        _ => crate::http2::frame::DEFAULT_MAX_FRAME_SIZE,
    }
}

/// The header block limit in the `h2_frame` target: small, so that fuzzed CONTINUATIONs
/// reach it.
const FUZZ_H2_MAX_BLOCK: usize = 256;

/// Parses `pieces` as a driver would (each piece appended to what was not consumed): what
/// each frame parsed to, and the connection error that ended it, if one did.
fn parse_h2_frames(pieces: &[&[u8]], max_frame_size: u32) -> (Vec<String>, Option<crate::http2::error::H2Error>) {
    use crate::http2::frame::parse_frame;

    let mut pending = Vec::new();
    let mut frames = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            match parse_frame(&pending, max_frame_size) {
                Ok(Parsed::Complete { value, consumed }) => {
                    frames.push(format!("{value:?}"));
                    pending.drain(..consumed);
                }
                Ok(Parsed::Partial) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
        // A driver needs to hold at most one frame to make progress.
        assert!(pending.len() < crate::http2::frame::FRAME_HEADER_LEN + max_frame_size as usize);
    }
    (frames, None)
}

/// The HTTP/2 frame parser: the same frames and the same error whole, in two pieces and a
/// byte at a time; every error it returns is a connection error, every frame's length is
/// within the limit, and each frame it parses, encoded again, parses back to itself. The
/// frames go through [`FieldBlocks`](crate::http2::field_block::FieldBlocks), whose blocks
/// stay within its limit and whose errors end the connection. The preface check agrees with
/// a plain comparison.
pub fn h2_frame(data: &[u8]) {
    use crate::http2::error::H2Error;
    use crate::http2::field_block::{FieldBlocks, Step};
    use crate::http2::frame::{detect_preface, parse_frame, Frame, Preface, FRAME_HEADER_LEN, PREFACE};

    let max_frame_size = fuzz_h2_frame_size(data);
    let whole = parse_h2_frames(&[data], max_frame_size);
    let (head, tail) = data.split_at(split_point(data));
    assert_eq!(parse_h2_frames(&[head, tail], max_frame_size), whole);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    assert_eq!(parse_h2_frames(&bytes, max_frame_size), whole);
    assert!(matches!(whole.1, None | Some(H2Error::Connection(..))));

    let mut blocks = FieldBlocks::new(FUZZ_H2_MAX_BLOCK);
    let mut blocks_failed = false;
    let mut rest = data;
    while let Ok(Parsed::Complete { value, consumed }) = parse_frame(rest, max_frame_size) {
        if !blocks_failed {
            match blocks.receive(&value) {
                Ok(Step::Complete(block)) => assert!(block.block.len() <= FUZZ_H2_MAX_BLOCK),
                Ok(_) => {}
                Err(error) => {
                    assert!(matches!(error, H2Error::Connection(..)), "{error}");
                    blocks_failed = true;
                }
            }
        }
        assert!(consumed >= FRAME_HEADER_LEN && consumed - FRAME_HEADER_LEN <= max_frame_size as usize);
        let mut encoded = Vec::new();
        value.encode(&mut encoded);
        let again = parse_frame(&encoded, crate::http2::frame::MAX_FRAME_SIZE_LIMIT);
        match value {
            Frame::StreamError(error) => assert!(matches!(error, H2Error::Stream(..))),
            Frame::Data { stream_id, end_stream, data, flow_controlled_len } => {
                assert!(flow_controlled_len as usize >= data.len());
                let expected = Frame::Data { stream_id, end_stream, data, flow_controlled_len: data.len() as u32 };
                assert_eq!(again, Ok(Parsed::Complete { value: expected, consumed: encoded.len() }));
            }
            _ => assert_eq!(again, Ok(Parsed::Complete { value, consumed: encoded.len() })),
        }
        rest = &rest[consumed..];
    }

    match detect_preface(data) {
        Preface::Http2 => assert!(data.starts_with(PREFACE)),
        Preface::NeedMore => assert!(data.len() < PREFACE.len() && PREFACE.starts_with(data)),
        Preface::Http1 => assert!(!data.starts_with(PREFACE) && !PREFACE.starts_with(data)),
    }
}
