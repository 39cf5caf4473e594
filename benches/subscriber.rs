//! The load generator's subscriber alone, without sockets: `cargo bench --bench subscriber`.
//!
//! A plain program (no bench harness). It writes what a server sends one subscriber in a
//! fan-out (a response head, then many small messages whose text is `"SEQ NANOS"`, as
//! `realtime bench fanout` publishes them) once, as SSE and as WebSocket frames, and feeds
//! it to [`Subscriber::receive`] in 64 KiB reads (the bench engine's read buffer). It prints
//! deliveries per second on one core, the median of several timed runs, with two sinks:
//!
//! - **counting**: the fan-out's own sink ([`Tally`]): reads each message's text where it lies,
//!   marks its sequence number seen and times it. The most a `realtime bench fanout` client
//!   thread could count if the server and the kernel cost nothing;
//! - **copies** (`Vec<Delivery>`, drained after every read): an owned copy of each message,
//!   what `realtime sub` and the soak keep.

use std::hint::black_box;
use std::time::{Duration, Instant};

use realtime::bench::Tally;
use realtime::client::subscriber::{Delivery, Masks, Received, Sink, Subscriber};
use realtime::transport::Transport;

/// Messages in one synthetic stream, and how many timed runs give the median.
const MESSAGES: usize = 200_000;
const RUNS: usize = 7;
/// The bench engine reads into a buffer of this size (`crate::bench::engine`).
const READ_SIZE: usize = 64 * 1024;

/// `{"id":"k3f9-N","text":"N NANOS","time":MS}`, as the server writes it.
fn envelope(seq: usize) -> String {
    let nanos = 1_000_000_000 + seq as u64 * 1_000;
    format!(r#"{{"id":"k3f9-{}","text":"{seq} {nanos}","time":1796039893237}}"#, seq + 1)
}

fn sse_stream() -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nc\r\nretry:2000\n\n\r\n"
            .to_vec();
    for seq in 0..MESSAGES {
        let event = format!("id:k3f9-{}\ndata:{}\n\n", seq + 1, envelope(seq));
        out.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }
    out
}

fn ws_stream(key: &str) -> Vec<u8> {
    let accept = realtime::ws::handshake::accept_key(key.as_bytes());
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    for seq in 0..MESSAGES {
        let payload = envelope(seq);
        // RFC 6455 §5.2: FIN + text, unmasked (server to client), 7-bit length (< 126 here).
        out.extend_from_slice(&[0x81, payload.len() as u8]);
        out.extend_from_slice(payload.as_bytes());
    }
    out
}

/// Takes what one read delivered out of the sink; how many.
trait Drain: Sink {
    fn drain(&mut self) -> usize;
}

/// The fan-out's own sink: counts, marks the sequence number seen, times the message.
struct Counting {
    tally: Tally,
    taken: u64,
}

impl Sink for Counting {
    fn deliver(&mut self, message: Received<'_>) {
        self.tally.deliver(message);
    }
}

impl Drain for Counting {
    fn drain(&mut self) -> usize {
        let delivered = self.tally.delivered();
        let new = delivered - std::mem::replace(&mut self.taken, delivered);
        new as usize
    }
}

impl Drain for Vec<Delivery> {
    fn drain(&mut self) -> usize {
        self.drain(..).map(|delivery| black_box(delivery).text.len().min(1)).sum()
    }
}

/// One run: a fresh subscriber reads the whole stream; deliveries per second.
fn run<S: Drain>(transport: Transport, masks: &Masks, sink: S) -> f64 {
    let mut request = Vec::new();
    let subscriber = Subscriber::start(transport, "x", "c", Some("k3f9-0"), masks, &mut request);
    let mut subscriber = subscriber.with_sink(sink);
    let stream = match transport {
        Transport::WebSocket => ws_stream(subscriber.websocket_key()),
        _ => sse_stream(),
    };
    let mut out = Vec::new();
    let mut delivered = 0usize;
    let start = Instant::now();
    for read in stream.chunks(READ_SIZE) {
        subscriber.receive(read, &mut out, start).expect("the stream is well-formed");
        delivered += subscriber.deliveries.drain();
    }
    let elapsed = start.elapsed();
    assert_eq!(delivered, MESSAGES);
    MESSAGES as f64 / elapsed.max(Duration::from_nanos(1)).as_secs_f64()
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let masks = Masks::new().expect("/dev/urandom");
    println!("| transport | counting sink, deliveries/s | copies (Vec<Delivery>), deliveries/s |");
    println!("|---|---|---|");
    for transport in [Transport::Sse, Transport::WebSocket] {
        let counting = || Counting { tally: Tally::new(MESSAGES as u64, Instant::now(), 1000.0), taken: 0 };
        let counting = median((0..RUNS).map(|_| run(transport, &masks, counting())).collect());
        let copies = median((0..RUNS).map(|_| run(transport, &masks, Vec::new())).collect());
        println!("| {} | {counting:.0} | {copies:.0} |", transport.name());
    }
}
