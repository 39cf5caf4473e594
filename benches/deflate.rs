//! Our DEFLATE (`src/deflate`) against zlib: `cargo bench --bench deflate`.
//!
//! A plain program (no bench harness): for each corpus and each compressor it prints the
//! compression ratio (compressed / original: smaller is better) and the speed of compressing
//! and of decompressing, in MB/s of original bytes. zlib is the C library itself, through the
//! `flate2` dev-dependency with its `zlib` feature, at level 1 (fast) and 6 (its default),
//! raw DEFLATE with a sync flush per message, exactly what permessage-deflate asks of it.
//!
//! The corpora:
//! - **envelopes, per message**: 5000 JSON envelopes as the broker writes them, each compressed
//!   on its own (no context takeover, this server's default): what a broadcast costs;
//! - **envelopes, one stream**: the same envelopes as one stream of messages sharing the window
//!   (context takeover);
//! - **mixed text**: this crate's sources and docs, one message;
//! - **the Autobahn corpora**: the five files Autobahn|Testsuite slices its section 12
//!   payloads from (JSON, a bitmap, English text, HTML, a PDF), each one message, when
//!   `scripts/autobahn.sh` has installed the suite (or `AUTOBAHN_TESTDATA` names the folder).
//!
//! Each case runs for about [`RUN_TIME`] and reports its fastest pass; every decompression is
//! checked against the input.
//!
//! Last, the memory one connection keeps between messages with context takeover
//! (`--ws-deflate context`): the compressor's and the decompressor's `retained_bytes` after
//! 1 and after 1000 envelopes. Without context takeover (the default) both are 0 by
//! construction: nothing outlives a message.

use std::hint::black_box;
use std::time::{Duration, Instant};

use realtime::broker::{Message, Position};
use realtime::deflate::{Deflater, Inflater, Level};

const RUN_TIME: Duration = Duration::from_millis(1000);

/// A compressor under test: compress a list of messages as a stream (sharing the window
/// between messages or not), and decompress what it made.
#[derive(Clone, Copy)]
enum Codec {
    Ours(Level),
    Zlib(u32),
}

impl Codec {
    fn name(self) -> String {
        match self {
            Codec::Ours(Level::Fast) => "ours, fast".into(),
            Codec::Ours(Level::Default) => "ours, default".into(),
            Codec::Zlib(level) => format!("zlib {level}"),
        }
    }

    /// Each message compressed and sync-flushed; with `shared_window` the stream carries on
    /// from message to message, otherwise it starts afresh for each.
    fn compress(self, messages: &[Vec<u8>], shared_window: bool) -> Vec<Vec<u8>> {
        match self {
            Codec::Ours(level) => {
                let mut deflater = Deflater::new(level, 15);
                messages
                    .iter()
                    .map(|message| {
                        let out = deflater.compress_to_vec(message);
                        if !shared_window {
                            deflater.reset();
                        }
                        out
                    })
                    .collect()
            }
            Codec::Zlib(level) => {
                let mut zlib = flate2::Compress::new(flate2::Compression::new(level), false);
                messages
                    .iter()
                    .map(|message| {
                        if !shared_window {
                            zlib.reset();
                        }
                        let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 64);
                        zlib.compress_vec(message, &mut out, flate2::FlushCompress::Sync).expect("zlib deflate");
                        out
                    })
                    .collect()
            }
        }
    }

    fn decompress(self, compressed: &[Vec<u8>], sizes: &[usize], shared_window: bool) -> Vec<Vec<u8>> {
        match self {
            Codec::Ours(_) => {
                let mut inflater = Inflater::new(15);
                compressed
                    .iter()
                    .zip(sizes)
                    .map(|(message, &size)| {
                        // Room for the output up front, as zlib's `decompress_vec` needs.
                        let mut out = Vec::with_capacity(size);
                        inflater.inflate(message, &mut out, usize::MAX).expect("our inflate");
                        if !shared_window {
                            inflater.reset();
                        }
                        out
                    })
                    .collect()
            }
            Codec::Zlib(_) => {
                let mut zlib = flate2::Decompress::new(false);
                compressed
                    .iter()
                    .zip(sizes)
                    .map(|(message, &size)| {
                        if !shared_window {
                            zlib.reset(false);
                        }
                        let mut out = Vec::with_capacity(size + 1);
                        zlib.decompress_vec(message, &mut out, flate2::FlushDecompress::Sync).expect("zlib inflate");
                        out
                    })
                    .collect()
            }
        }
    }
}

/// Runs `pass` for about `RUN_TIME`; MB/s for `bytes` per pass, from the fastest pass: on a
/// machine shared with other work, the pass that was interrupted least is the closest to what
/// the code costs (the median moves with the neighbours' load).
fn rate(bytes: usize, mut pass: impl FnMut()) -> f64 {
    pass();
    let start = Instant::now();
    let mut fastest = Duration::MAX;
    while start.elapsed() < RUN_TIME {
        let pass_start = Instant::now();
        pass();
        fastest = fastest.min(pass_start.elapsed());
    }
    bytes as f64 / fastest.as_secs_f64() / 1e6
}

fn bench(corpus: &str, messages: &[Vec<u8>], shared_window: bool) {
    let total: usize = messages.iter().map(Vec::len).sum();
    let sizes: Vec<usize> = messages.iter().map(Vec::len).collect();
    for codec in [Codec::Ours(Level::Fast), Codec::Ours(Level::Default), Codec::Zlib(1), Codec::Zlib(6)] {
        let compressed = codec.compress(messages, shared_window);
        assert_eq!(codec.decompress(&compressed, &sizes, shared_window), messages, "{}", codec.name());
        let ratio = compressed.iter().map(Vec::len).sum::<usize>() as f64 / total as f64;
        let deflate = rate(total, || {
            black_box(codec.compress(messages, shared_window));
        });
        let inflate = rate(total, || {
            black_box(codec.decompress(&compressed, &sizes, shared_window));
        });
        println!("| {corpus} | {} | {ratio:.3} | {deflate:.0} | {inflate:.0} |", codec.name());
    }
}

/// Envelopes as the broker writes them ([`Message::new`]): chat-like texts of varied length,
/// ids and times that advance.
fn envelopes(count: usize) -> Vec<Vec<u8>> {
    let words = ["price", "update", "the", "order", "filled", "at", "market", "user", "joined", "room", "hello", "ok"];
    (0..count)
        .map(|i| {
            let text: Vec<&str> = (0..3 + i % 17).map(|w| words[(i * 7 + w * 3) % words.len()]).collect();
            let id = format!("k3f9-{}", 1000 + i);
            let text = format!("{} #{}", text.join(" "), i * 31 % 1000);
            Message::new(&id, Position::new(i as u128), &text, 1_700_000_000_000 + i as u64 * 137)
                .envelope()
                .as_bytes()
                .to_vec()
        })
        .collect()
}

/// This crate's own sources and docs, concatenated: a few hundred KiB of mixed text.
fn mixed_text() -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("docs/PROTOCOL.md")];
    for dir in ["src", "src/ws", "src/http", "src/broker", "src/deflate"] {
        let mut entries: Vec<_> =
            std::fs::read_dir(root.join(dir)).expect("source dir").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        files.extend(entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")));
    }
    files.iter().flat_map(|path| std::fs::read(path).expect("source file")).collect()
}

/// The suite's `testdata` folder: `AUTOBAHN_TESTDATA`, or where `scripts/autobahn.sh` puts it.
fn autobahn_corpora() -> Vec<(String, Vec<u8>)> {
    let dir = std::env::var_os("AUTOBAHN_TESTDATA").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        std::path::Path::new(&home)
            .join(".cache/realtime-autobahn/lib/python2.7/site-packages/autobahntestsuite/testdata")
    });
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("(the Autobahn corpora: {} not found; run scripts/autobahn.sh once)", dir.display());
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(&path).ok()?))
        })
        .collect()
}

/// `-- --once FILTER`: each corpus whose name holds FILTER compressed by our default and by
/// zlib 6, then decompressed exactly once by each, untimed: a fixed amount of work to count
/// under `valgrind --tool=callgrind` (instruction counts repeat where times on a shared machine
/// do not), e.g. `--toggle-collect='*Inflater::inflate*'` against `--toggle-collect=inflate`.
fn once(filter: &str, corpora: &[(String, Vec<Vec<u8>>)]) {
    for (name, messages) in corpora.iter().filter(|(name, _)| name.contains(filter)) {
        let sizes: Vec<usize> = messages.iter().map(Vec::len).collect();
        for codec in [Codec::Ours(Level::Default), Codec::Zlib(6)] {
            let compressed = codec.compress(messages, false);
            let out = black_box(codec.decompress(&compressed, &sizes, false));
            println!("{name}, {}: {} bytes inflated once", codec.name(), out.iter().map(Vec::len).sum::<usize>());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--once") {
        let filter = args.get(at + 1).map_or("", String::as_str);
        let mut corpora =
            vec![("envelopes".to_string(), envelopes(5000)), ("mixed text".to_string(), vec![mixed_text()])];
        corpora.extend(autobahn_corpora().into_iter().map(|(name, bytes)| (name, vec![bytes])));
        once(filter, &corpora);
        return;
    }
    // `-- WORD`: only the corpora whose name holds WORD (`--bench`, which cargo adds, is not one).
    let filter = args.iter().skip(1).find(|a| !a.starts_with("--")).map_or("", String::as_str);
    let bench = |corpus: &str, messages: &[Vec<u8>], shared_window: bool| {
        if corpus.contains(filter) {
            bench(corpus, messages, shared_window);
        }
    };
    let envelopes = envelopes(5000);
    let mixed = vec![mixed_text()];
    println!("| corpus | compressor | ratio | deflate MB/s | inflate MB/s |");
    println!("|---|---|---|---|---|");
    bench("envelopes, per message", &envelopes, false);
    bench("envelopes, one stream", &envelopes, true);
    bench(&format!("mixed text ({} KiB)", mixed[0].len() / 1024), &mixed, false);
    for (name, bytes) in autobahn_corpora() {
        bench(&format!("Autobahn {name} ({} KiB)", bytes.len() / 1024), &[bytes], false);
    }
    println!();
    println!("| context takeover, kept per connection | after 1 envelope | after 1000 envelopes |");
    println!("|---|---|---|");
    let (mut deflater, mut inflater) = (Deflater::new(Level::Default, 15), Inflater::new(15));
    let mut kept = Vec::new();
    for (i, message) in envelopes.iter().take(1000).enumerate() {
        let compressed = deflater.compress_to_vec(message);
        inflater.inflate(&compressed, &mut Vec::new(), usize::MAX).expect("our inflate");
        if i == 0 || i == 999 {
            kept.push((deflater.retained_bytes(), inflater.retained_bytes()));
        }
    }
    println!("| compressor (window, hash chains) | {} KiB | {} KiB |", kept[0].0 / 1024, kept[1].0 / 1024);
    println!("| decompressor (window) | {} KiB | {} KiB |", kept[0].1 / 1024, kept[1].1 / 1024);
}
