//! Replays every checked-in fuzz corpus file (`fuzz/corpus/<target>/*`) through the same
//! function its cargo-fuzz target calls, so that `cargo test` alone proves the seeds, and any
//! crash inputs added to the corpus, still pass.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("{}", path.display());
        check(&data);
        files += 1;
    }
    assert!(files >= 10, "{target}: only {files} corpus files");
}

#[test]
fn http_request_corpus() {
    replay("http_request", realtime::fuzz::http_request);
}

#[test]
fn http_chunked_corpus() {
    replay("http_chunked", realtime::fuzz::http_chunked);
}

#[test]
fn ws_frame_corpus() {
    replay("ws_frame", realtime::fuzz::ws_frame);
}

#[test]
fn sse_stream_corpus() {
    replay("sse_stream", realtime::fuzz::sse_stream);
}

#[test]
fn resp_corpus() {
    replay("resp", realtime::fuzz::resp);
}

#[test]
fn token_corpus() {
    replay("token", realtime::fuzz::token);
}

#[test]
fn connection_corpus() {
    replay("connection", realtime::fuzz::connection);
}

#[test]
fn utf8_corpus() {
    replay("utf8", realtime::fuzz::utf8);
}

#[test]
fn inflate_corpus() {
    replay("inflate", realtime::fuzz::inflate);
}

#[test]
fn deflate_roundtrip_corpus() {
    replay("deflate_roundtrip", realtime::fuzz::deflate_roundtrip);
}

#[test]
fn hpack_decode_corpus() {
    replay("hpack_decode", realtime::fuzz::hpack_decode);
}

#[test]
fn h2_frame_corpus() {
    replay("h2_frame", realtime::fuzz::h2_frame);
}

#[test]
fn h2_connection_corpus() {
    replay("h2_connection", realtime::fuzz::h2_connection);
}
