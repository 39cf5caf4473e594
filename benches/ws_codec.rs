//! Throughput of the WebSocket codec's hot paths: `cargo bench --bench codec`.
//!
//! A plain program (no bench harness, std only): each case runs for a fixed time and prints
//! payload bytes processed per second. Inputs are built once; the timed loops only decode,
//! unmask, validate or (for a delivery) write a frame. Decoding unmasks in place, so each pass
//! over the same buffer toggles the payload between masked and unmasked: the work is the same
//! every pass.

use std::hint::black_box;
use std::time::{Duration, Instant};

use realtime::server::sys::utf8_simd;
use realtime::ws::frame::{encode_frame, Decoded, FrameDecoder, Opcode, Role};
use realtime::ws::mask::apply_mask;
use realtime::ws::session::Session;
use realtime::ws::utf8::Utf8Validator;

/// How long each case runs; long enough to make timer noise irrelevant.
const RUN_TIME: Duration = Duration::from_millis(700);

/// Bytes of frames per decode buffer: big enough to fall out of L1, small enough for L2/L3.
const DECODE_BUFFER_BYTES: usize = 4 << 20;

const KIB: usize = 1024;

/// Work timed at once when looking for the fastest stretch: long enough that reading the
/// clock costs little, far shorter than a scheduler's time slice.
const BATCH_TIME: Duration = Duration::from_micros(20);

/// Runs `pass` repeatedly for `RUN_TIME`; each pass processes `bytes_per_pass` payload bytes.
/// Prints two rates: the mean over the whole run, and the fastest batch of passes (about
/// `BATCH_TIME` of work each). On a machine shared with other work the mean drops whenever
/// another process takes the core; the fastest batch is what the core does undisturbed.
/// Arguments that don't start with `-` select cases by substring: `cargo bench --bench codec
/// -- "16 B"`.
fn measure(name: &str, bytes_per_pass: usize, mut pass: impl FnMut()) {
    let filters: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|filter| name.contains(filter.as_str())) {
        return;
    }
    pass(); // warm caches and branch predictors
    let probe = Instant::now();
    pass();
    let batch = (BATCH_TIME.as_nanos() / probe.elapsed().as_nanos().max(1)).max(1) as u64;
    let start = Instant::now();
    let mut passes = 0u64;
    let mut fastest = Duration::MAX;
    while start.elapsed() < RUN_TIME {
        let batch_start = Instant::now();
        for _ in 0..batch {
            pass();
        }
        fastest = fastest.min(batch_start.elapsed());
        passes += batch;
    }
    let mean = (bytes_per_pass as f64 * passes as f64) / 1e9 / start.elapsed().as_secs_f64();
    let best = (bytes_per_pass as f64 * batch as f64) / 1e9 / fastest.as_secs_f64();
    println!("{name:<52} {mean:>7.2} GB/s   fastest batch {best:>7.2} GB/s");
}

/// Masked client frames of `payload_len` bytes, back to back.
fn masked_frames(payload_len: usize) -> (Vec<u8>, usize) {
    let payload: Vec<u8> = (0..payload_len).map(|i| b'a' + (i % 26) as u8).collect();
    let frames = (DECODE_BUFFER_BYTES / (payload_len + 14)).max(1);
    let mut buffer = Vec::new();
    for i in 0..frames {
        encode_frame(&mut buffer, true, Opcode::Binary, &payload, Some([i as u8, 0x5A, 0xC3, 0x96]));
    }
    (buffer, frames * payload_len)
}

fn bench_decode(payload_len: usize) {
    let (mut buffer, payload_bytes) = masked_frames(payload_len);
    let name = format!("decode + unmask, {} frames", size_name(payload_len));
    measure(&name, payload_bytes, || {
        let mut decoder = FrameDecoder::new(Role::Server, u64::MAX >> 1);
        let mut start = 0;
        loop {
            let (used, decoded) = decoder.decode(&mut buffer[start..]).expect("valid frames");
            start += used;
            match decoded {
                None => break,
                Some(Decoded::Payload { data, .. }) => {
                    black_box(data);
                }
                Some(Decoded::Header(header)) => {
                    black_box(header);
                }
            }
        }
    });
}

fn bench_session(payload_len: usize) {
    let (mut buffer, payload_bytes) = masked_frames(payload_len);
    let name = format!("session receive (messages), {} frames", size_name(payload_len));
    let mut out = Vec::new();
    measure(&name, payload_bytes, || {
        let mut session = Session::new_server(64 * KIB);
        let mut start = 0;
        loop {
            let (used, event) = session.receive(&mut buffer[start..], &mut out);
            start += used;
            if used == 0 && event.is_none() {
                break;
            }
            black_box(event);
        }
    });
}

/// A delivery: a server's unmasked text frame around a message's envelope, written into a
/// connection's output, as a WebSocket subscriber receives every message.
fn bench_deliver(payload_len: usize) {
    let envelope: Vec<u8> = (0..payload_len).map(|i| b'a' + (i % 26) as u8).collect();
    // A connection's output buffer: room for several messages (`--max-outbound-bytes`, 256 KiB).
    // Sized to one frame, the allocator put it just past the envelope, and copies whose source
    // and destination addresses differ by a little over a multiple of 4 KiB stall on false
    // store-to-load dependencies (4K aliasing): 64 KiB delivered at 2 GB/s instead of 30.
    let mut output = Vec::with_capacity(256 * KIB + payload_len);
    let name = format!("deliver: text frame around an envelope, {}", size_name(payload_len));
    measure(&name, payload_len, || {
        output.clear();
        encode_frame(&mut output, true, Opcode::Text, black_box(&envelope), None);
        black_box(&output);
    });
}

fn bench_mask() {
    let mut payload = vec![0x42u8; 64 * KIB];
    measure("apply_mask, 64 KiB", payload.len(), || {
        apply_mask(black_box(&mut payload), [0x37, 0xFA, 0x21, 0x3D], 0);
    });
}

/// UTF-8 validation of `text`, by `feed` (the AVX2 path where the CPU has it), by the SSE4.1
/// path (which `feed` takes on a CPU without AVX2) followed by the state machine on what it
/// left, as `feed` does, and, in the same run, by `feed_scalar` (the state machine alone, what
/// `feed` was before the vector paths).
fn bench_utf8(what: &str, text: &[u8]) {
    measure(&format!("utf8 validate, {what}"), text.len(), || {
        let mut validator = Utf8Validator::new();
        validator.feed(black_box(text)).expect("valid");
        validator.finish().expect("complete");
    });
    if utf8_simd::sse41_validate_prefix_for_fuzzing(b"").is_some() {
        measure(&format!("utf8 validate (SSE4.1), {what}"), text.len(), || {
            let text = black_box(text);
            let vouched = utf8_simd::sse41_validate_prefix_for_fuzzing(text).expect("this CPU has SSE4.1");
            let mut validator = Utf8Validator::new();
            validator.feed_scalar(&text[vouched..]).expect("valid");
            validator.finish().expect("complete");
        });
    }
    measure(&format!("utf8 validate (scalar), {what}"), text.len(), || {
        let mut validator = Utf8Validator::new();
        validator.feed_scalar(black_box(text)).expect("valid");
        validator.finish().expect("complete");
    });
}

fn size_name(len: usize) -> String {
    if len >= KIB {
        format!("{} KiB", len / KIB)
    } else {
        format!("{len} B")
    }
}

fn main() {
    for payload_len in [16, KIB, 64 * KIB] {
        bench_decode(payload_len);
    }
    bench_mask();
    let ascii: Vec<u8> = (0..64 * KIB).map(|i| b' ' + (i % 95) as u8).collect();
    bench_utf8("64 KiB ASCII", &ascii);
    // Mixed: mostly ASCII words with 2-, 3- and 4-byte characters between them.
    let pattern = "Hello, wörld! Grüße, κόσμε — 10 € for 😀. ";
    let mixed: String = pattern
        .chars()
        .cycle()
        .scan(0, |len, c| {
            *len += c.len_utf8();
            (*len <= 64 * KIB).then_some(c)
        })
        .collect();
    bench_utf8("64 KiB mixed text", mixed.as_bytes());
    let greek: String = "κόσμε ".chars().cycle().take(64 * KIB / 2).collect();
    bench_utf8("64 KiB Greek (no ASCII runs)", greek.as_bytes());
    for payload_len in [16, KIB, 64 * KIB] {
        bench_session(payload_len);
    }
    for payload_len in [16, KIB, 64 * KIB] {
        bench_deliver(payload_len);
    }
}
