//! permessage-deflate (RFC 7692) against a real server, for every server model: the
//! negotiation in the handshake (§5, §7.1), compressed messages both ways (§6, §7.2), the
//! rules about RSV1 and limits, a broadcast to compressed subscribers, and interoperability
//! with the clients users run: Python's `websockets` and Node's `ws`, both of which offer
//! the extension by default.
//!
//! Frames the server sends are read raw here, with the crate's frame decoder (whose codec is
//! tested against RFC 6455's vectors in `src/ws/`), so that RSV1 and the compressed bytes can
//! be seen; messages are checked with the crate's own client, which decompresses.
//!
//! Python's `websockets` and Node's `ws` are installed by `.ci/run` (pip and npm). Without
//! them those two tests say SKIPPED loudly and pass, except under `REALTIME_REQUIRE_EXTERNAL=1`
//! (CI), where they fail.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::{each_model, read_response, HttpResponse, TestServer, PATIENCE};
use realtime::deflate::{Deflater, Level};
use realtime::ws::client::Client;
use realtime::ws::extension::DeflateMode;
use realtime::ws::frame::{encode_compressed_frame, encode_frame, Decoded, FrameDecoder, FrameHeader, Opcode, Role};
use realtime::ws::message::Message;
use realtime::ws::session::Event;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A text long and repetitive enough that compressing it pays.
fn compressible_text() -> String {
    "{\"id\":\"k3f9-17\",\"text\":\"the quick brown fox jumps over the lazy dog\",\"time\":1700000000000}".repeat(20)
}

/// RFC 7692 §7.2.1 applied by hand: the payload of a compressed message.
fn compress(text: &[u8]) -> Vec<u8> {
    let mut compressed = Deflater::new(Level::Default, 15).compress_to_vec(text);
    compressed.truncate(compressed.len() - 4);
    compressed
}

/// Opens a WebSocket on `path` with `extensions` as the offer (none if empty) and returns the
/// stream and the 101.
fn open(server: &TestServer, path: &str, extensions: &str) -> (std::net::TcpStream, HttpResponse) {
    let mut stream = server.connect();
    let offer =
        if extensions.is_empty() { String::new() } else { format!("Sec-WebSocket-Extensions: {extensions}\r\n") };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let response = read_response(&mut stream, true).expect("a 101");
    assert_eq!(response.status, 101);
    (stream, response)
}

/// Reads the next whole frame the server sends: its header and payload as on the wire.
fn read_frame(stream: &mut std::net::TcpStream) -> (FrameHeader, Vec<u8>) {
    let mut decoder = FrameDecoder::new(Role::Client, 1 << 26);
    decoder.allow_compressed();
    let mut header = None;
    let mut payload = Vec::new();
    loop {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).expect("a frame");
        let (_, decoded) = decoder.decode(&mut byte).expect("a valid frame");
        match decoded {
            Some(Decoded::Header(h)) => {
                header = Some(h);
                if h.payload_len == 0 {
                    return (h, payload);
                }
            }
            Some(Decoded::Payload { data, frame_done }) => {
                payload.extend_from_slice(data);
                if frame_done {
                    return (header.expect("header first"), payload);
                }
            }
            None => {}
        }
    }
}

/// The code of the Close frame the server sends next.
fn close_code_of(stream: &mut std::net::TcpStream) -> u16 {
    loop {
        let (header, payload) = read_frame(stream);
        if header.opcode == Opcode::Close {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

fn masked(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, payload, Some(MASK));
    out
}

fn masked_compressed(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_compressed_frame(&mut out, fin, opcode, payload, Some(MASK));
    out
}

#[test]
fn rfc7692_5_an_offer_is_answered_with_no_context_takeover_both_ways_by_default() {
    each_model(
        |_| {},
        |server| {
            let (_, response) = open(server, "/echo", "permessage-deflate; client_max_window_bits");
            assert_eq!(
                response.header("sec-websocket-extensions"),
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
            );
        },
    );
}

#[test]
fn rfc7692_5_without_an_offer_the_response_names_no_extension() {
    each_model(
        |_| {},
        |server| {
            let (_, response) = open(server, "/echo", "");
            assert_eq!(response.header("sec-websocket-extensions"), None);
        },
    );
}

#[test]
fn rfc7692_5_an_unacceptable_offer_is_declined_and_the_connection_goes_on_uncompressed() {
    each_model(
        |_| {},
        |server| {
            let (mut stream, response) = open(server, "/echo", "permessage-deflate; server_max_window_bits=16");
            assert_eq!(response.header("sec-websocket-extensions"), None);
            stream.write_all(&masked(true, Opcode::Text, b"plain")).unwrap();
            let (header, payload) = read_frame(&mut stream);
            assert!(!header.compressed);
            assert_eq!(payload, b"plain");
        },
    );
}

#[test]
fn rfc7692_7_1_2_1_server_max_window_bits_is_echoed_and_the_server_keeps_within_it() {
    each_model(
        |_| {},
        |server| {
            let (mut stream, response) = open(server, "/echo", "permessage-deflate; server_max_window_bits=9");
            assert!(response.header("sec-websocket-extensions").unwrap().ends_with("; server_max_window_bits=9"));
            // Repeats 300 bytes apart: a 2^9 window reaches them, and the server may use it.
            let text: String = (0..3000).map(|i| char::from(b'a' + (i * 7 % 300 % 26) as u8)).collect();
            stream.write_all(&masked(true, Opcode::Text, text.as_bytes())).unwrap();
            let (header, payload) = read_frame(&mut stream);
            assert!(header.compressed);
            let mut inflater = realtime::deflate::Inflater::new(9);
            let mut out = Vec::new();
            inflater.inflate(&[&payload[..], &[0, 0, 0xff, 0xff]].concat(), &mut out, 1 << 20).unwrap();
            assert_eq!(out, text.as_bytes());
        },
    );
}

#[test]
fn ws_deflate_off_declines_every_offer() {
    each_model(
        |config| config.ws_deflate = DeflateMode::Off,
        |server| {
            let (_, response) = open(server, "/echo", "permessage-deflate");
            assert_eq!(response.header("sec-websocket-extensions"), None);
        },
    );
}

#[test]
fn rfc7692_7_2_3_1_a_compressed_hello_is_received_and_echoed() {
    each_model(
        |_| {},
        |server| {
            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            // RFC 7692 §7.2.3.1's "Hello", in two fragments with RSV1 on the first only.
            stream.write_all(&masked_compressed(false, Opcode::Text, &[0xf2, 0x48, 0xcd])).unwrap();
            stream.write_all(&masked(true, Opcode::Continuation, &[0xc9, 0xc9, 0x07, 0x00])).unwrap();
            // 5 bytes do not get smaller: the echo goes uncompressed (RFC 7692 §6 lets the
            // sender choose per message).
            let (header, payload) = read_frame(&mut stream);
            assert_eq!((header.compressed, payload.as_slice()), (false, &b"Hello"[..]));
        },
    );
}

#[test]
fn rfc7692_6_a_message_that_compresses_is_sent_with_rsv1_and_the_tail_removed() {
    each_model(
        |_| {},
        |server| {
            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            let text = compressible_text();
            stream.write_all(&masked_compressed(true, Opcode::Text, &compress(text.as_bytes()))).unwrap();
            let (header, payload) = read_frame(&mut stream);
            assert!(header.compressed && header.fin && header.opcode == Opcode::Text);
            assert!(payload.len() < text.len() / 4, "{} bytes", payload.len());
            assert!(!payload.ends_with(&[0, 0, 0xff, 0xff]), "RFC 7692 §7.2.1: the tail is removed");
            // Control frames never compressed: the ping's pong comes back plain.
            stream.write_all(&masked(true, Opcode::Ping, &[b'p'; 100])).unwrap();
            let (header, payload) = read_frame(&mut stream);
            assert_eq!((header.opcode, header.compressed, payload.len()), (Opcode::Pong, false, 100));
        },
    );
}

/// `ws_deflate_bytes` of `/stats`: sent payload, sent compressed, received compressed,
/// received payload.
fn deflate_bytes(server: &TestServer) -> [u64; 4] {
    let stats = realtime::json::parse(&String::from_utf8_lossy(&server.get("/stats").body)).expect("JSON");
    let bytes = stats.get("ws_deflate_bytes").expect("ws_deflate_bytes");
    ["sent_payload", "sent_compressed", "received_compressed", "received_payload"]
        .map(|name| bytes.get(name).and_then(|n| n.as_u64()).expect(name))
}

#[test]
fn stats_count_the_bytes_compression_saved_both_ways() {
    // Issue 18: a page cannot see wire bytes, so /stats says what permessage-deflate saved:
    // payload bytes before and after, both directions. The count is the process's, which
    // other tests share: each only grows, by at least this message.
    each_model(
        |_| {},
        |server| {
            let before = deflate_bytes(server);
            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            let text = compressible_text();
            let compressed = compress(text.as_bytes());
            stream.write_all(&masked_compressed(true, Opcode::Text, &compressed)).unwrap();
            let (header, echoed) = read_frame(&mut stream);
            assert!(header.compressed);
            let after = deflate_bytes(server);
            let grew: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
            let at_least = [text.len(), echoed.len(), compressed.len(), text.len()].map(|n| n as u64);
            assert!(grew.iter().zip(at_least).all(|(grew, n)| *grew >= n), "{grew:?} < {at_least:?}");
            let metrics = String::from_utf8_lossy(&server.get("/metrics").body).into_owned();
            for line in [
                "realtime_ws_deflate_payload_bytes_total{direction=\"sent\"}",
                "realtime_ws_deflate_compressed_bytes_total{direction=\"received\"}",
            ] {
                assert!(metrics.contains(line), "{line}");
            }
        },
    );
}

#[test]
fn rfc6455_5_2_rsv1_without_the_extension_closes_with_1002() {
    each_model(
        |_| {},
        |server| {
            let (mut stream, _) = open(server, "/echo", "");
            stream
                .write_all(&masked_compressed(true, Opcode::Text, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]))
                .unwrap();
            assert_eq!(close_code_of(&mut stream), 1002);
        },
    );
}

#[test]
fn rfc7692_6_1_rsv1_on_a_control_frame_or_a_continuation_closes_with_1002() {
    each_model(
        |_| {},
        |server| {
            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            let mut ping = masked(true, Opcode::Ping, b"");
            ping[0] |= 0x40;
            stream.write_all(&ping).unwrap();
            assert_eq!(close_code_of(&mut stream), 1002);

            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            let mut continuation = masked(true, Opcode::Continuation, &[0x00]);
            continuation[0] |= 0x40;
            stream.write_all(&masked_compressed(false, Opcode::Text, &[0xf2, 0x48, 0xcd])).unwrap();
            stream.write_all(&continuation).unwrap();
            assert_eq!(close_code_of(&mut stream), 1002);
        },
    );
}

#[test]
fn rfc6455_10_4_a_compressed_message_inflating_past_the_message_limit_closes_with_1009() {
    each_model(
        |config| config.max_message_bytes = 64 * 1024,
        |server| {
            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            // About a kilobyte that inflates to 16 MiB.
            let bomb = compress(&vec![b'a'; 16 << 20]);
            assert!(bomb.len() < 32 * 1024);
            stream.write_all(&masked_compressed(true, Opcode::Binary, &bomb)).unwrap();
            assert_eq!(close_code_of(&mut stream), 1009);
        },
    );
}

#[test]
fn rfc7692_7_2_2_corrupt_compressed_data_closes_with_1007() {
    each_model(
        |_| {},
        |server| {
            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            // BTYPE 11 is reserved.
            stream.write_all(&masked_compressed(true, Opcode::Text, &[0x07, 0x00])).unwrap();
            assert_eq!(close_code_of(&mut stream), 1007);
        },
    );
}

#[test]
fn rfc7692_7_1_1_context_takeover_shares_the_window_across_messages_when_configured() {
    each_model(
        |config| config.ws_deflate = DeflateMode::Context,
        |server| {
            let mut client = Client::connect_compressed(&server.addr().to_string(), "/echo").expect("handshake");
            client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
            let agreement = client.deflate().expect("agreed");
            assert!(!agreement.server.no_context_takeover && !agreement.client.no_context_takeover);
            let text = compressible_text();
            for _ in 0..3 {
                client.send_text(&text).unwrap();
                assert_eq!(client.next_message().unwrap(), Message::Text(text.clone()));
            }
            // RFC 7692 §7.2.3.2: the server's second identical message refers back to the first.
            let (mut stream, _) = open(server, "/echo", "permessage-deflate");
            let mut sizes = Vec::new();
            for _ in 0..2 {
                stream.write_all(&masked(true, Opcode::Text, text.as_bytes())).unwrap();
                let (header, payload) = read_frame(&mut stream);
                assert!(header.compressed);
                sizes.push(payload.len());
            }
            assert!(sizes[1] * 2 < sizes[0], "{sizes:?}");
        },
    );
}

#[test]
fn a_broadcast_reaches_compressed_and_plain_subscribers_alike() {
    each_model(
        |_| {},
        |server| {
            let mut compressed: Vec<_> = (0..2)
                .map(|_| {
                    let (stream, response) = open(server, "/ws/deflated", "permessage-deflate");
                    assert!(response.header("sec-websocket-extensions").is_some());
                    stream
                })
                .collect();
            let (mut plain, _) = open(server, "/ws/deflated", "");
            let mut client = Client::connect_compressed(&server.addr().to_string(), "/ws/deflated").unwrap();
            client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
            let text = compressible_text();
            server.publish("deflated", &text);
            // Compressed once: every compressed subscriber gets the very same bytes.
            let frames: Vec<_> = compressed.iter_mut().map(read_frame).collect();
            assert!(frames[0].0.compressed);
            assert_eq!(frames[0], frames[1]);
            let (header, envelope) = read_frame(&mut plain);
            assert!(!header.compressed);
            let mut inflated = Vec::new();
            realtime::deflate::Inflater::new(15)
                .inflate(&[&frames[0].1[..], &[0, 0, 0xff, 0xff]].concat(), &mut inflated, 1 << 20)
                .unwrap();
            assert_eq!(inflated, envelope);
            match client.next_message().unwrap() {
                Message::Text(received) => assert_eq!(received.as_bytes(), envelope),
                other => panic!("{other:?}"),
            }
        },
    );
}

#[test]
fn the_crate_client_and_server_agree_and_round_trip_every_size() {
    each_model(
        |_| {},
        |server| {
            let mut client = Client::connect_compressed(&server.addr().to_string(), "/echo").expect("handshake");
            client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
            assert!(client.deflate().is_some());
            for size in [0, 1, 100, 65_535, 65_536, 1 << 20] {
                let text: String = (0..size).map(|i| char::from(b'a' + (i % 23 + i / 1000 % 3) as u8)).collect();
                client.send_text(&text).unwrap();
                assert_eq!(client.next_message().unwrap(), Message::Text(text), "{size} bytes");
            }
            client.send_binary(&[0, 1, 2, 3]).unwrap();
            assert!(matches!(client.next_event().unwrap(), Event::Message(Message::Binary(b)) if b == [0, 1, 2, 3]));
        },
    );
}

/// Whether `check` (a shell command that imports a module) succeeds; otherwise a loud skip,
/// or a failure under `REALTIME_REQUIRE_EXTERNAL=1`, as `common::external_program` does.
fn external_module(what: &str, program: &str, args: &[&str]) -> bool {
    let found = Command::new(program).args(args).output().is_ok_and(|output| output.status.success());
    if !found {
        if std::env::var("REALTIME_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{what} is not installed, and REALTIME_REQUIRE_EXTERNAL=1 forbids skipping");
        }
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {what} is not installed; this test did not run ***\n");
    }
    found
}

/// Node finds global modules (`npm install -g ws`) through `NODE_PATH`.
fn node_path() -> String {
    Command::new("npm")
        .args(["root", "-g"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Runs a client script; its stdout, after checking it exited 0.
fn run_client(mut command: Command) -> String {
    let output = command.output().expect("run the client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    stdout
}

const PYTHON_CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect

async def main(url):
    async with connect(url, max_size=2**24) as ws:
        print(ws.response.headers.get("Sec-WebSocket-Extensions"))
        for size in (10, 1000, 100000):
            text = ("hello websockets " * (size // 17 + 1))[:size]
            await ws.send(text)
            assert await ws.recv() == text, size
        print("ok")

asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn interop_python_websockets_negotiates_and_round_trips() {
    if !external_module("Python's websockets (pip install websockets)", "python3", &["-c", "import websockets"]) {
        return;
    }
    each_model(
        |_| {},
        |server| {
            let url = format!("ws://{}/echo", server.addr());
            let mut command = Command::new("python3");
            command.args(["-c", PYTHON_CLIENT, &url]);
            let stdout = run_client(command);
            assert!(stdout.starts_with("permessage-deflate; server_no_context_takeover"), "{stdout}");
            assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
        },
    );
}

const NODE_CLIENT: &str = r#"
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1]);
const sizes = [10, 1000, 100000];
let i = 0;
const text = (n) => 'hello ws '.repeat(n / 9 + 1).slice(0, n);
ws.on('open', () => { console.log(ws.extensions); ws.send(text(sizes[0])); });
ws.on('message', (data) => {
  if (data.toString() !== text(sizes[i])) { console.log('mismatch at ' + sizes[i]); process.exit(1); }
  i += 1;
  if (i === sizes.length) { console.log('ok'); ws.close(1000); } else { ws.send(text(sizes[i])); }
});
ws.on('close', () => process.exit(i === sizes.length ? 0 : 1));
ws.on('error', (e) => { console.log(String(e)); process.exit(1); });
"#;

#[test]
fn interop_node_ws_negotiates_and_round_trips() {
    let node_path = node_path();
    let found = external_module(
        "Node's ws (npm install -g ws)",
        "node",
        &["-e", &format!("module.paths.push({node_path:?}); require('ws')")],
    );
    if !found {
        return;
    }
    each_model(
        |_| {},
        |server| {
            let url = format!("ws://{}/echo", server.addr());
            let mut command = Command::new("node");
            command.env("NODE_PATH", &node_path).args(["-e", NODE_CLIENT, &url]);
            let stdout = run_client(command);
            assert!(stdout.starts_with("permessage-deflate"), "{stdout}");
            assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
        },
    );
}
