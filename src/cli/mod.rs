//! The `realtime` command beyond the server's own flags: the overview that `realtime --help`
//! prints, and the two client commands that let a user follow the README without another
//! tool:
//!
//! - `realtime sub URL` ([`subscribe`]) follows a channel over long polling, SSE or a
//!   WebSocket, prints each message as it arrives, and reconnects and resumes like a
//!   browser's `EventSource`;
//! - `realtime pub URL [TEXT]` ([`publish`]) publishes TEXT, or each line of its input.
//!
//! Both are thin: the protocol work is [`crate::client`]'s, the command-line conventions
//! (`--flag=value`, switches) [`crate::args`]'s. What is here is the part only a terminal
//! needs: URLs, printing, exit codes, and waiting before a reconnection.
//!
//! Every command exits 0 on success, 2 on a usage error (an unknown option, a bad value, a
//! missing argument: the command line has to change) and 1 on a failure at run time (the
//! server cannot be reached or refused: trying again may work).

#![forbid(unsafe_code)]

pub mod publish;
pub mod subscribe;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use crate::args;
use crate::bench;
use crate::broker::is_valid_channel_name;

/// The version `--version` prints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The status of a command line that has to change (`realtime --help` documents it).
pub const USAGE_ERROR: u8 = 2;

/// `realtime --help`: every command, with the scenarios of `bench` from its one table.
pub fn usage() -> String {
    format!(
        "\
realtime {VERSION}: long polling, Server-Sent Events and WebSockets from scratch

Usage:
  realtime [serve] [OPTIONS]    run the push server (the default command)
  realtime sub URL [OPTIONS]    follow a channel, print each message as it
                                arrives; URL: http://HOST:PORT/sse/CHANNEL,
                                /ws/CHANNEL or /poll/CHANNEL
  realtime pub URL [TEXT]       publish TEXT, or each line of stdin, and print
                                each id; URL: http://HOST:PORT/publish/CHANNEL
  realtime bench SCENARIO ...   measure a server; SCENARIO is one of
{scenarios}
  realtime token --secret-file PATH [--channels P,...] [--publish P,...] ...
                                print a signed channel token
  realtime COMMAND --help       a command's options (serve's also list their
                                REALTIME_* environment variables)
  realtime -h, --help           this text
  realtime -V, --version        print the version

Every option that takes a value takes it as the next word or after '=':
--addr 0.0.0.0:8080 and --addr=0.0.0.0:8080 are the same.

{exit}",
        scenarios = wrap(&bench::scenario_names(), 32, 79),
        exit = args::EXIT_STATUS_HELP,
    )
}

/// `text` broken at spaces into lines of at most `width` characters, each indented by
/// `indent` spaces.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(format!("{:indent$}{word}", "")),
        }
    }
    lines.join("\n")
}

/// Prints `error` as the one line a usage error is, and returns its exit status.
pub fn usage_error(error: &str) -> ExitCode {
    eprintln!("realtime: {error}");
    ExitCode::from(USAGE_ERROR)
}

/// Where a URL given to `sub` or `pub` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `ws://` rather than `http://`.
    pub websocket_scheme: bool,
    /// `HOST[:PORT]` as written: the `Host` field of every request.
    pub authority: String,
    /// The route: `ws`, `sse`, `poll` or `publish`.
    pub route: String,
    pub channel: String,
}

impl Endpoint {
    /// `http://HOST[:PORT]/ROUTE/CHANNEL` or `ws://HOST[:PORT]/ROUTE/CHANNEL`. The options
    /// (`--since`, `--token`) are flags, not a query, so that there is one way to give each.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (websocket_scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (true, rest)
        } else if url.starts_with("https://") || url.starts_with("wss://") {
            return Err(format!("'{url}': TLS is not supported here; the server speaks plain HTTP"));
        } else {
            return Err(format!("'{url}': expected a URL starting with http:// or ws://"));
        };
        if rest.contains(['?', '#']) {
            return Err(format!("'{url}': no query or fragment, please; --since and --token are options"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') || !authority.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("'{url}': expected HOST:PORT after the scheme, got '{authority}'"));
        }
        let Some((route, channel)) = path.split_once('/') else {
            return Err(format!("'{url}': expected /ROUTE/CHANNEL after the address"));
        };
        if !is_valid_channel_name(channel) {
            return Err(format!("'{url}': '{channel}' is not a channel name (1 to 64 of A-Z a-z 0-9 _ . -)"));
        }
        Ok(Endpoint {
            websocket_scheme,
            authority: authority.to_string(),
            route: route.to_string(),
            channel: channel.to_string(),
        })
    }

    /// Every address the authority resolves to (port 80 if it names none), in the resolver's
    /// order.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        // An IPv6 address is bracketed, and its port follows the bracket.
        let has_port = match self.authority.strip_prefix('[') {
            Some(bracketed) => bracketed.contains("]:"),
            None => self.authority.contains(':'),
        };
        let target = if has_port { self.authority.clone() } else { format!("{}:80", self.authority) };
        Ok(target.to_socket_addrs()?.collect())
    }

    /// `connect` to each address the authority resolves to in turn, until one answers: a name
    /// like `localhost` may resolve to `::1` first while the server listens on `127.0.0.1`.
    /// The last address's error if none does.
    pub fn connect<T>(&self, connect: impl FnMut(SocketAddr) -> io::Result<T>) -> io::Result<T> {
        connect_first(self.resolve()?, connect)
    }
}

/// The first of `addrs` that `connect` succeeds with, or the last one's error.
fn connect_first<T>(
    addrs: impl IntoIterator<Item = SocketAddr>,
    mut connect: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = io::Error::other("the name resolves to no address");
    for addr in addrs {
        match connect(addr) {
            Ok(connected) => return Ok(connected),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// A token given with `--token`: it goes into a header field, so it must be visible ASCII.
pub fn check_token(flag: &str, token: &str) -> Result<String, String> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(token.to_string())
    } else {
        Err(format!("{flag}: expected visible ASCII characters (a token), got '{token}'"))
    }
}

/// What ended writing to stdout.
pub enum OutputError {
    /// The reader went away (`realtime sub URL | head -3`): not a failure, the reader has what
    /// it wanted.
    Closed,
    Failed(io::Error),
}

/// Writes `line` and a newline to `out` and flushes, so that a reader sees each message as it
/// arrives, not when a buffer fills.
pub fn print_line(out: &mut impl Write, line: &str) -> Result<(), OutputError> {
    let written = writeln!(out, "{line}").and_then(|()| out.flush());
    written.map_err(|error| match error.kind() {
        io::ErrorKind::BrokenPipe => OutputError::Closed,
        _ => OutputError::Failed(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_a_scheme_an_address_a_route_and_a_channel() {
        let endpoint = Endpoint::parse("http://127.0.0.1:8080/sse/news").unwrap();
        assert_eq!(
            endpoint,
            Endpoint {
                websocket_scheme: false,
                authority: "127.0.0.1:8080".into(),
                route: "sse".into(),
                channel: "news".into()
            }
        );
        assert!(Endpoint::parse("ws://localhost:8080/ws/a.b-c_d").unwrap().websocket_scheme);
        for bad in [
            "localhost:8080/sse/news",
            "https://example.com/sse/news",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/sse",
            "http://127.0.0.1:8080/sse/",
            "http://127.0.0.1:8080/sse/a/b",
            "http://127.0.0.1:8080/sse/news?since=1",
            "http:///sse/news",
            "http://user@host/sse/news",
        ] {
            let error = Endpoint::parse(bad).unwrap_err();
            assert!(error.contains(bad) && !error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn every_address_a_name_resolves_to_is_tried_in_turn() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        // A port just freed: nothing listens there, so the connection is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let connected = connect_first([closed, open], std::net::TcpStream::connect).unwrap();
        assert_eq!(connected.peer_addr().unwrap(), open);
        let refused = connect_first([closed], std::net::TcpStream::connect).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        assert!(connect_first([], std::net::TcpStream::connect).is_err(), "no address at all");
    }

    #[test]
    fn an_address_without_a_port_is_port_80() {
        let resolve = |authority: &str| {
            let endpoint = Endpoint {
                websocket_scheme: false,
                authority: authority.into(),
                route: "sse".into(),
                channel: "c".into(),
            };
            endpoint.resolve().unwrap()[0].to_string()
        };
        assert_eq!(resolve("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(resolve("127.0.0.1"), "127.0.0.1:80");
        assert_eq!(resolve("[::1]:8080"), "[::1]:8080");
        assert_eq!(resolve("[::1]"), "[::1]:80");
    }

    #[test]
    fn the_overview_lists_every_bench_scenario_and_the_exit_codes() {
        let text = usage();
        for scenario in bench::SCENARIOS {
            assert!(text.contains(scenario.name), "{} missing", scenario.name);
        }
        assert!(text.contains("Exit status") && text.contains(VERSION));
        assert!(text.lines().all(|line| line.chars().count() < 80), "{text}");
    }
}
