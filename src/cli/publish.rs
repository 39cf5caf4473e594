//! `realtime pub URL [TEXT]`: publish TEXT, or each line of standard input, and print the id
//! of each message.
//!
//! The URL is the publish endpoint itself, `http://HOST:PORT/publish/CHANNEL`, the one
//! `curl -d` posts to, so that a URL copied from the README or the protocol works unchanged.
//! The messages go out one after another on one keep-alive connection, each acknowledged
//! (`201`) before the next, so their order on the channel is the order of the lines.

#![forbid(unsafe_code)]

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{check_token, print_line, usage_error, Endpoint, OutputError};
use crate::args::Args;
use crate::client::publisher::Publisher;

pub const USAGE: &str = "\
Usage: realtime pub URL [TEXT] [OPTIONS]

Publishes TEXT to the channel, or, without TEXT, each line of standard input as
one message, and prints the id of each. URL is http://HOST:PORT/publish/CHANNEL
(what curl -d posts to). Stops at the first message the server refuses (exit 1).

  --token T        send Authorization: Bearer T (a publish token or a signed
                   token granting publish on the channel)
  -h, --help       this text
";

/// A connection idle for longer than this is replaced before the next publish: the server
/// may have closed it meanwhile (`--idle-timeout`), and a publish is not safe to retry, since
/// the first attempt may have been stored.
const IDLE_REUSE_LIMIT: Duration = Duration::from_secs(5);

/// What `realtime pub` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub endpoint: Endpoint,
    /// `None`: the lines of standard input.
    pub text: Option<String>,
    pub token: Option<String>,
}

/// `None`: `--help`.
pub fn parse_args(words: &[String]) -> Result<Option<Options>, String> {
    let mut args = Args::new(words);
    let (mut url, mut text, mut token) = (None, None, None);
    while let Some(flag) = args.next_flag()? {
        match flag {
            "-h" | "--help" => return Ok(None),
            "--token" => token = Some(check_token(flag, args.value()?)?),
            word if !word.starts_with('-') && url.is_none() => url = Some(word),
            word if !word.starts_with('-') && text.is_none() => text = Some(word.to_string()),
            word if !word.starts_with('-') => {
                return Err(format!("pub: one TEXT only, got another: '{word}' (quote a text with spaces)"));
            }
            other => return Err(format!("pub: unknown option '{other}' (see realtime pub --help)")),
        }
    }
    let url = url.ok_or("pub: which channel? give a URL like http://127.0.0.1:8080/publish/news")?;
    let endpoint = Endpoint::parse(url).map_err(|error| format!("pub: {error}"))?;
    if endpoint.websocket_scheme || endpoint.route != "publish" {
        return Err(format!("pub: '{url}': expected http://HOST:PORT/publish/CHANNEL"));
    }
    Ok(Some(Options { endpoint, text, token }))
}

/// Runs `realtime pub` with the words after `pub`.
pub fn run(words: &[String]) -> ExitCode {
    let options = match parse_args(words) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => return usage_error(&error),
    };
    match publish_all(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("realtime pub: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Publishes TEXT or every line of stdin, printing each id; stops at the first failure.
fn publish_all(options: &Options) -> Result<(), String> {
    let mut connection = Connection { options, publisher: None, last_used: Instant::now() };
    let mut stdout = io::stdout().lock();
    let mut print = |id: &str| match print_line(&mut stdout, id) {
        Ok(()) | Err(OutputError::Closed) => Ok(()),
        Err(OutputError::Failed(error)) => Err(format!("cannot write to stdout: {error}")),
    };
    if let Some(text) = &options.text {
        return print(&connection.publish(text)?);
    }
    for (number, line) in io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|error| format!("stdin, line {}: {error}", number + 1))?;
        print(&connection.publish(line.strip_suffix('\r').unwrap_or(&line))?)?;
    }
    Ok(())
}

/// The publishing connection, opened on first use and replaced after sitting idle.
struct Connection<'a> {
    options: &'a Options,
    publisher: Option<Publisher>,
    last_used: Instant,
}

impl Connection<'_> {
    fn publish(&mut self, text: &str) -> Result<String, String> {
        let endpoint = &self.options.endpoint;
        if self.last_used.elapsed() > IDLE_REUSE_LIMIT {
            self.publisher = None;
        }
        let publisher = match &mut self.publisher {
            Some(publisher) => publisher,
            None => {
                let cannot = |error: io::Error| format!("cannot connect to {}: {error}", endpoint.authority);
                let publisher =
                    endpoint.connect(|addr| Publisher::connect(addr, &endpoint.authority)).map_err(cannot)?;
                self.publisher.insert(publisher.with_token(self.options.token.as_deref()))
            }
        };
        let id = publisher
            .publish(&endpoint.channel, text)
            .map_err(|error| format!("http://{}/publish/{}: {error}", endpoint.authority, endpoint.channel));
        self.last_used = Instant::now();
        if id.is_err() {
            self.publisher = None;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Option<Options>, String> {
        parse_args(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_url_is_the_publish_endpoint_and_text_is_optional() {
        let options = parse(&["http://h:1/publish/news", "hello there", "--token=t"]).unwrap().unwrap();
        assert_eq!(options.endpoint.channel, "news");
        assert_eq!((options.text.as_deref(), options.token.as_deref()), (Some("hello there"), Some("t")));
        assert_eq!(parse(&["http://h:1/publish/news"]).unwrap().unwrap().text, None);
        for bad in [&["http://h:1/sse/news"][..], &["ws://h:1/publish/news"], &["http://h:1/news"], &[]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&["http://h:1/publish/news", "a", "b"]).is_err());
        assert!(parse(&["http://h:1/publish/news", "--token", "two words"]).is_err());
    }
}
