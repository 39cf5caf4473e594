//! `realtime sub URL`: follow a channel and print each message as it arrives.
//!
//! One [`Subscriber`] (the load generator's, sans-I/O) driven over one blocking socket. When
//! the connection drops, the command does what a browser's `EventSource` does: it waits, the
//! stream's `retry:` or a second, and reconnects from the last id it saw, so nothing is
//! printed twice and nothing is skipped silently. The wait doubles while reconnecting fails,
//! up to [`MAX_RETRY`]. When the server says that messages were lost to its history (a gap),
//! the command says so on stderr.
//!
//! What does not get a retry: a first connection that cannot be made (a wrong address should
//! not loop), and a refusal with a 4xx status (`EventSource` gives up on those too: the same
//! request would be refused again).

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use super::{check_token, print_line, usage_error, Endpoint, OutputError};
use crate::args::Args;
use crate::client::subscriber::{Delivery, Masks, Subscriber};
use crate::json;
use crate::transport::Transport;

pub const USAGE: &str = "\
Usage: realtime sub URL [OPTIONS]

Follows a channel and prints each message's text, one line per message, as it
arrives (a text containing line breaks spans several: --json keeps it to one).
URL is http://HOST:PORT/sse/CHANNEL, /ws/CHANNEL or /poll/CHANNEL: the
transport is the route (ws://HOST:PORT/ws/CHANNEL works too).

Without --since, only messages published from now on. When the connection
drops, it reconnects after the stream's retry: or 1 s (doubling to 30 s while
reconnecting fails) and resumes after the last message it printed; a gap (the
server no longer had some of the messages owed) is reported on stderr.

  --since ID       start after the message with this id (0: from the start,
                   everything the channel still retains)
  --count N        exit after N messages (0 status)
  --json           print each message's whole envelope: {\"id\",\"text\",\"time\"}
  --token T        send Authorization: Bearer T
  -h, --help       this text
";

/// The longest wait between two reconnection attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// The wait before reconnecting when the server has not said (`retry:` is SSE's only).
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// Silence after which the connection counts as dead: longer than a long poll's 60 s and
/// than several of the server's keepalives (15 s by default), each of which sends bytes.
const SILENCE_LIMIT: Duration = Duration::from_secs(90);

/// What `realtime sub` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub endpoint: Endpoint,
    pub transport: Transport,
    pub since: Option<String>,
    pub count: Option<u64>,
    pub json: bool,
    pub token: Option<String>,
}

/// `None`: `--help`.
pub fn parse_args(words: &[String]) -> Result<Option<Options>, String> {
    let mut args = Args::new(words);
    let (mut url, mut since, mut count, mut json, mut token) = (None, None, None, false, None);
    while let Some(flag) = args.next_flag()? {
        match flag {
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--since" => since = Some(args.value()?.to_string()),
            "--token" => token = Some(check_token(flag, args.value()?)?),
            "--count" => {
                let value = args.value()?;
                let n = value.parse::<u64>().ok().filter(|&n| n > 0);
                count = Some(n.ok_or(format!("--count: expected a positive whole number, got '{value}'"))?);
            }
            word if !word.starts_with('-') && url.is_none() => url = Some(word),
            word if !word.starts_with('-') => return Err(format!("sub: one URL only, got another: '{word}'")),
            other => return Err(format!("sub: unknown option '{other}' (see realtime sub --help)")),
        }
    }
    let url = url.ok_or("sub: which channel? give a URL like http://127.0.0.1:8080/sse/news")?;
    let endpoint = Endpoint::parse(url).map_err(|error| format!("sub: {error}"))?;
    let transport = match (endpoint.websocket_scheme, endpoint.route.as_str()) {
        (_, "ws") => Transport::WebSocket,
        (false, "sse") => Transport::Sse,
        (false, "poll") => Transport::LongPoll,
        _ => return Err(format!("sub: '{url}': expected /sse/, /ws/ or /poll/ before the channel (ws:// only /ws/)")),
    };
    Ok(Some(Options { endpoint, transport, since, count, json, token }))
}

/// Runs `realtime sub` with the words after `sub`.
pub fn run(words: &[String]) -> ExitCode {
    let options = match parse_args(words) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => return usage_error(&error),
    };
    let masks = match Masks::new() {
        Ok(masks) => masks,
        Err(error) => {
            eprintln!("realtime sub: cannot read the system's random numbers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut follower =
        Follower { cursor: options.since.clone(), options, masks, printed: 0, retry: None, connected_once: false };
    follower.run()
}

/// How one connection ended.
enum Ended {
    /// `--count` messages were printed, or the reader of stdout went away.
    Done,
    /// Stop with this message: trying again would not help.
    Fatal(String),
    /// The connection dropped; `established`: after its 200 or 101 (the next wait starts
    /// over from the first).
    Dropped { reason: String, established: bool },
}

struct Follower {
    options: Options,
    masks: Masks,
    /// The id to resume after: the last message printed, or a long poll's cursor.
    cursor: Option<String>,
    printed: u64,
    /// The reconnection time the last event stream asked for.
    retry: Option<Duration>,
    /// Whether a connection to the server was ever made: until one is, a failure to connect
    /// is a wrong address, not a dropped connection.
    connected_once: bool,
}

impl Follower {
    fn run(&mut self) -> ExitCode {
        let mut wait: Option<Duration> = None;
        loop {
            match self.follow_once() {
                Ended::Done => return ExitCode::SUCCESS,
                Ended::Fatal(message) => {
                    eprintln!("realtime sub: {message}");
                    return ExitCode::FAILURE;
                }
                Ended::Dropped { reason, established } => {
                    if !self.connected_once {
                        eprintln!("realtime sub: {reason}");
                        return ExitCode::FAILURE;
                    }
                    let first = self.retry.unwrap_or(DEFAULT_RETRY);
                    let next = match wait {
                        Some(previous) if !established => (previous * 2).min(MAX_RETRY),
                        _ => first,
                    };
                    wait = Some(next);
                    let from = self.cursor.as_deref().map(|id| format!(" after {id}")).unwrap_or_default();
                    eprintln!("realtime sub: {reason}; reconnecting in {:.1} s{from}", next.as_secs_f64());
                    thread::sleep(next);
                }
            }
        }
    }

    /// One connection: subscribe from the cursor and print until it ends.
    fn follow_once(&mut self) -> Ended {
        let endpoint = &self.options.endpoint;
        let dropped = |reason: String| Ended::Dropped { reason, established: false };
        let mut stream = match endpoint.connect(TcpStream::connect) {
            Ok(stream) => stream,
            Err(error) => return dropped(format!("cannot connect to {}: {error}", endpoint.authority)),
        };
        self.connected_once = true;
        let _ = stream.set_nodelay(true);
        if let Err(error) = stream.set_read_timeout(Some(SILENCE_LIMIT)) {
            return dropped(error.to_string());
        }
        let mut out = Vec::new();
        let mut subscriber = Subscriber::start_with_token(
            self.options.transport,
            &endpoint.authority,
            &endpoint.channel,
            self.cursor.as_deref(),
            self.options.token.as_deref(),
            &self.masks,
            &mut out,
        );
        let mut stdout = io::stdout().lock();
        let mut buffer = vec![0u8; 16 * 1024];
        let mut gaps_reported = 0;
        loop {
            let lost = |reason: String, subscriber: &Subscriber| Ended::Dropped {
                reason: format!("{}: {reason}", endpoint.authority),
                established: subscriber.established,
            };
            if let Err(error) = stream.write_all(&out) {
                return lost(error.to_string(), &subscriber);
            }
            out.clear();
            let read = match stream.read(&mut buffer) {
                Ok(0) => return lost("the server closed the connection".into(), &subscriber),
                Ok(read) => read,
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    let silence = SILENCE_LIMIT.as_secs();
                    return lost(format!("nothing received for {silence} s"), &subscriber);
                }
                Err(error) => return lost(error.to_string(), &subscriber),
            };
            let received = subscriber.receive(&buffer[..read], &mut out, Instant::now());
            if let Some(retry) = subscriber.retry() {
                self.retry = Some(Duration::from_millis(retry).min(MAX_RETRY));
            }
            if subscriber.gaps > gaps_reported {
                gaps_reported = subscriber.gaps;
                let after = self.cursor.as_deref().unwrap_or("the start");
                eprintln!("realtime sub: gap: the server no longer had every message after {after}; some were missed");
            }
            for delivery in subscriber.deliveries.drain(..) {
                self.cursor = Some(delivery.id.clone());
                let line = if self.options.json { envelope(&delivery) } else { delivery.text };
                match print_line(&mut stdout, &line) {
                    Ok(()) => {}
                    Err(OutputError::Closed) => return Ended::Done,
                    Err(OutputError::Failed(error)) => return Ended::Fatal(format!("cannot write to stdout: {error}")),
                }
                self.printed += 1;
                if Some(self.printed) == self.options.count {
                    return Ended::Done;
                }
            }
            // A long poll's answer moves the cursor even when it brings no message.
            if let Some(cursor) = subscriber.cursor() {
                self.cursor = Some(cursor.to_string());
            }
            if let Err(reason) = received {
                return match subscriber.refused {
                    Some(status) if (400..500).contains(&status) => {
                        Ended::Fatal(format!("{}: the server refused: {reason}", endpoint.authority))
                    }
                    _ => lost(reason, &subscriber),
                };
            }
        }
    }
}

/// A delivery as its envelope (`docs/PROTOCOL.md` §2.1): `{"id":...,"text":...,"time":...}`,
/// members in that order and no whitespace, as the server writes it.
fn envelope(delivery: &Delivery) -> String {
    let mut out = String::from("{\"id\":");
    json::write_string(&mut out, &delivery.id);
    out.push_str(",\"text\":");
    json::write_string(&mut out, &delivery.text);
    if let Some(time) = delivery.time {
        out.push_str(&format!(",\"time\":{time}"));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Option<Options>, String> {
        parse_args(&line.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn the_route_of_the_url_picks_the_transport() {
        let transport = |url: &str| parse(url).unwrap().unwrap().transport;
        assert_eq!(transport("http://h:1/sse/c"), Transport::Sse);
        assert_eq!(transport("http://h:1/poll/c"), Transport::LongPoll);
        assert_eq!(transport("http://h:1/ws/c"), Transport::WebSocket);
        assert_eq!(transport("ws://h:1/ws/c"), Transport::WebSocket);
        for bad in ["ws://h:1/sse/c", "http://h:1/publish/c", "http://h:1/echo/c"] {
            assert!(parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn options_take_their_values_either_way() {
        let options = parse("http://h:1/sse/c --since=k-3 --count 2 --json --token=abc").unwrap().unwrap();
        assert_eq!(
            (options.since.as_deref(), options.count, options.json, options.token.as_deref()),
            (Some("k-3"), Some(2), true, Some("abc"))
        );
    }

    #[test]
    fn bad_command_lines_are_one_line_errors() {
        for line in [
            "",
            "http://h:1/sse/c --count 0",
            "http://h:1/sse/c --count=",
            "http://h:1/sse/c --json=1",
            "http://h:1/sse/c --nope",
            "http://h:1/sse/c http://h:1/sse/d",
            "http://h:1/sse/c --since",
        ] {
            let error = parse(line).unwrap_err();
            assert!(!error.is_empty() && !error.contains('\n'), "{line}: {error}");
        }
    }

    #[test]
    fn the_json_form_is_the_envelope_as_the_server_writes_it() {
        let delivery = Delivery {
            id: "k-1".into(),
            text: "a \"quote\"\nand a line".into(),
            time: Some(1678900000123),
            at: Instant::now(),
            after_gap: false,
        };
        assert_eq!(envelope(&delivery), r#"{"id":"k-1","text":"a \"quote\"\u000aand a line","time":1678900000123}"#);
    }
}
