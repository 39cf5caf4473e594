//! The request head parser against httparse: `cargo bench --bench http_parse`.
//!
//! A plain program (no bench harness): for each head, ns per parse of
//! [`realtime::http::request::parse_request`] and of `httparse::Request::parse` (with one
//! headers array reused across parses, as a server would), and their ratio. Each figure is the
//! median of several timed runs, so one run disturbed by the other core's work does not move
//! it. httparse is a dev-dependency for this comparison only.
//!
//! The two do not do the same work. httparse checks the syntax (tokens, field-vchar, CRLF;
//! by default it also refuses obs-fold and whitespace before a colon) and hands out slices.
//! `parse_request` does that and also, with no httparse counterpart: the request-target limit
//! (414), the head limit (431 at once, even while the head is still partial), the exact
//! header-count limit (431, where httparse's answer is `TooManyHeaders` for a full array), the
//! HTTP version's 400-or-505 split, the request-target form each method allows (RFC 9112
//! §3.2: origin, absolute with an http(s) authority, authority for CONNECT, `*` for OPTIONS)
//! and no fragment, the Host rules (RFC 9112 §3.2: required on HTTP/1.1, exactly one, a valid
//! `uri-host [":" port]`), at most one skipped empty line before the request-line, and OWS
//! trimmed from both ends of each value.

use std::hint::black_box;
use std::time::{Duration, Instant};

use realtime::http::grammar::Parsed;
use realtime::http::request::{parse_request, Limits};

/// How long one timed run lasts, and how many runs of each parser give the medians.
const RUN_TIME: Duration = Duration::from_millis(100);
const RUNS: usize = 9;

/// A browser's navigation request: Firefox's fields, a Referer and a few cookies (703 bytes).
const BROWSER: &[u8] = b"GET /sse/news?since=k3f9-17&channel=sports HTTP/1.1\r\n\
Host: www.example.com:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/news/today?section=sports&page=2\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=\"analytics,ads\"; lang=en\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-User: ?1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
Priority: u=0, i\r\n\r\n";

const MINIMAL: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// RFC 6455 §1.3's opening handshake, as a browser sends it to this server.
const WEBSOCKET: &[u8] = b"GET /ws/messages HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://127.0.0.1:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";

/// ns per call of `parse`, over one run of [`RUN_TIME`].
fn one_run(parse: &mut impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < RUN_TIME {
        for _ in 0..1000 {
            parse();
        }
        calls += 1000;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// Median ns per call of `ours` and of `theirs` over [`RUNS`] runs each. The runs alternate,
/// so that whatever else the machine does slows both alike and the ratio stays fair.
fn ns_per_parse(mut ours: impl FnMut(), mut theirs: impl FnMut()) -> (f64, f64) {
    for _ in 0..10_000 {
        ours(); // warm caches and branch predictors
        theirs();
    }
    let (mut ours_ns, mut theirs_ns) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours_ns.push(one_run(&mut ours));
        theirs_ns.push(one_run(&mut theirs));
    }
    let median = |mut runs: Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[RUNS / 2]
    };
    (median(ours_ns), median(theirs_ns))
}

/// `parse_request` and httparse on `head`: median ns per parse of each.
fn compare(head: &[u8]) -> (f64, f64) {
    let limits = Limits::default();
    let ours = || {
        let parsed = parse_request(black_box(head), &limits);
        let Ok(Parsed::Complete { value: request, .. }) = parsed else { panic!("{parsed:?}") };
        // As the server does once it has answered, and as httparse's headers array is reused.
        black_box(&request);
        request.recycle();
    };
    let mut headers = [httparse::EMPTY_HEADER; 100]; // our MAX_HEADERS
    let theirs = || {
        let mut request = httparse::Request::new(&mut headers);
        let parsed = request.parse(black_box(head));
        assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
        black_box((parsed.ok(), request.method, request.path, request.headers.len()));
    };
    ns_per_parse(ours, theirs)
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    println!("| head | bytes | fields | parse_request ns | httparse ns | ratio |");
    println!("|---|---|---|---|---|---|");
    for (name, head) in [("browser GET", BROWSER), ("minimal GET", MINIMAL), ("WebSocket upgrade", WEBSOCKET)] {
        if !filters.is_empty() && !filters.iter().any(|filter| name.contains(filter.as_str())) {
            continue;
        }
        let fields = head.windows(2).filter(|w| w == b"\r\n").count() - 2;
        let (ours, theirs) = compare(head);
        println!("| {name} | {} | {fields} | {ours:.0} | {theirs:.0} | {:.2}x |", head.len(), ours / theirs);
    }
}
