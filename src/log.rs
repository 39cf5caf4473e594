//! Logs: one line per event on stderr, with a time and a level, as text or as JSON.
//!
//! ```text
//! 2026-11-30T09:17:00.123Z INFO  listening on http://127.0.0.1:8080 version=0.1.0 model=epoll workers=2 broker=memory ...
//! 2026-11-30T09:17:04.530Z WARN  redis: subscription lost; reconnecting error="connection reset by peer"
//! 2026-11-30T09:17:05.001Z INFO  access remote=192.0.2.7 method=GET path=/poll/news?token=REDACTED status=200 bytes=312 ms=4 transport=poll
//! ```
//!
//! ```json
//! {"time":"2026-11-30T09:17:05.001Z","level":"info","msg":"access","remote":"192.0.2.7","method":"GET","path":"/poll/news?token=REDACTED","status":200,"bytes":312,"ms":4,"transport":"poll"}
//! ```
//!
//! - **The time** is UTC, RFC 3339 with milliseconds ([`write_timestamp`]), from the wall clock.
//! - **Levels** (`--log-level`, default `info`): `error` (the server cannot do something it
//!   should: listen, accept, start a thread), `warn` (it carries on, degraded: Redis is away, the
//!   thread budget is spent), `info` (its life: started, stopping, stopped, and the access
//!   log), `debug`. A line below the level costs one atomic load: the macros check [`enabled`]
//!   before anything is formatted.
//! - **Text** (`--log-format text`, the default): time, level, message, then `key=value`
//!   fields; a value is quoted as a JSON string when it is empty or holds a space, a quote or a
//!   control character. **JSON** (`--log-format json`): one object per line,
//!   `time`, `level`, `msg`, then the fields; numbers are numbers, a missing value is `null`.
//!   Either way a control character is written `\u00XX`, so no message or value can break a
//!   line or forge one.
//! - **The access log** (`--access-log`, off by default): one line per finished exchange
//!   ([`AccessLine`]), written by the sans-I/O [`crate::connection::Connection`] where the
//!   exchange ends, at the time it was told, so that both server models log identically. It
//!   has its own switch and is written whatever `--log-level` says. A token in the query is
//!   written `REDACTED` ([`crate::gate::loggable_target`]); no header is ever logged.
//!
//! A line is formatted whole, then written with one `write_all` to the locked stderr: lines
//! from different threads never interleave, and a slow stderr holds up one line at a time.
//! Every message and value is cut at [`MAX_TEXT_BYTES`], so a line is bounded too.
//!
//! Level and format are set once, at startup ([`init`]). Tests read lines through a
//! [`Capture`] instead of stderr: it holds what the current thread logs, in the format it asks
//! for.
//!
//! A foundation: it imports only [`crate::time`] and [`crate::json`], so that every layer,
//! the broker included, can log.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json;
use crate::time::civil_from_days;
use crate::transport::Transport;

/// How much a line says: each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The server could not do something it should (listen, accept, start a thread).
    Error,
    /// It carries on, degraded (Redis is away, the thread budget is spent).
    Warn,
    /// Its life: started, stopping, stopped; and access lines.
    Info,
    /// Detail for a developer.
    Debug,
}

impl Level {
    const ALL: [Level; 4] = [Level::Error, Level::Warn, Level::Info, Level::Debug];

    /// `error`, `warn`, `info` or `debug`.
    pub fn parse(text: &str) -> Result<Level, String> {
        Level::ALL
            .into_iter()
            .find(|level| level.name() == text)
            .ok_or_else(|| format!("unknown level '{text}' (expected error, warn, info or debug)"))
    }

    /// As `--log-level` and the JSON `level` say it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// As a text line says it: upper case, padded to one width so that messages line up.
    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
        }
    }

    /// Whether a line at this level is written when the threshold is `threshold`.
    pub fn passes(self, threshold: Level) -> bool {
        self <= threshold
    }
}

/// How a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people: `TIME LEVEL message key=value ...`.
    Text,
    /// For machines: one JSON object per line.
    Json,
}

impl Format {
    /// `text` or `json`.
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format '{other}' (expected text or json)")),
        }
    }
}

/// The most a message or a field value keeps, in bytes; the rest is cut, marked with `...`.
/// Every value we log is short except a request's path, which `--max-target-bytes` bounds
/// (8 KiB by default); its first 2 KiB say what it was.
pub const MAX_TEXT_BYTES: usize = 2048;

/// The lowest level written, as a `Level` discriminant.
static THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// `0`: text, `1`: JSON.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the level and format for the rest of the process (at startup, before any thread).
pub fn init(level: Level, format: Format) {
    THRESHOLD.store(level as u8, Ordering::Relaxed);
    FORMAT.store(u8::from(format == Format::Json), Ordering::Relaxed);
}

/// Whether a line at `level` would be written: one atomic load, checked before formatting.
pub fn enabled(level: Level) -> bool {
    level as u8 <= THRESHOLD.load(Ordering::Relaxed)
}

fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == 1 {
        Format::Json
    } else {
        Format::Text
    }
}

/// A field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Text(Cow<'a, str>),
    Number(u64),
    /// Nothing to say (an exchange that ended without a status): `-` in text, `null` in JSON.
    Missing,
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Value<'a> {
        Value::Text(Cow::Borrowed(text))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(text: &'a String) -> Value<'a> {
        Value::Text(Cow::Borrowed(text))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Value<'static> {
        Value::Text(Cow::Owned(text))
    }
}

impl From<u64> for Value<'_> {
    fn from(n: u64) -> Value<'static> {
        Value::Number(n)
    }
}

impl From<usize> for Value<'_> {
    fn from(n: usize) -> Value<'static> {
        Value::Number(n as u64)
    }
}

impl From<u32> for Value<'_> {
    fn from(n: u32) -> Value<'static> {
        Value::Number(n.into())
    }
}

impl From<u16> for Value<'_> {
    fn from(n: u16) -> Value<'static> {
        Value::Number(n.into())
    }
}

/// `yes` or `no`: whether something is configured, never what it is (a secret, say).
impl From<bool> for Value<'_> {
    fn from(yes: bool) -> Value<'static> {
        Value::Text(Cow::Borrowed(if yes { "yes" } else { "no" }))
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(value: Option<T>) -> Value<'a> {
        value.map_or(Value::Missing, Into::into)
    }
}

/// Writes a line at `level` if the level is on. The macros ([`crate::info!`] and the others)
/// call this after checking [`enabled`]. It reads the wall clock for the line's time: these
/// lines come from outside the protocol code (which is told the time, and logs through
/// [`access`]).
pub fn write(level: Level, message: fmt::Arguments<'_>, fields: &[(&str, Value<'_>)]) {
    if !enabled(level) {
        return;
    }
    let message = match message.as_str() {
        Some(constant) => Cow::Borrowed(constant),
        None => Cow::Owned(message.to_string()),
    };
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
    emit(unix_ms, level, &message, fields);
}

/// Formats one line and hands it to the thread's [`Capture`], or else to stderr.
fn emit(unix_ms: u64, level: Level, message: &str, fields: &[(&str, Value<'_>)]) {
    let captured = CAPTURE.with(|capture| match capture.borrow_mut().as_mut() {
        Some(capture) => {
            capture.push(format_line(capture.format, unix_ms, level, message, fields));
            true
        }
        None => false,
    });
    if !captured {
        let line = format_line(format(), unix_ms, level, message, fields);
        // One write of the whole line under the lock: lines from threads never interleave. A
        // log that cannot be written is not worth failing a connection for.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// One whole line, `\n` included.
pub fn format_line(format: Format, unix_ms: u64, level: Level, message: &str, fields: &[(&str, Value<'_>)]) -> String {
    let mut line = String::with_capacity(128);
    match format {
        Format::Text => {
            write_timestamp(&mut line, unix_ms);
            line.push(' ');
            line.push_str(level.label());
            line.push(' ');
            push_escaped(&mut line, &bounded(message));
            for (key, value) in fields {
                line.push(' ');
                line.push_str(key);
                line.push('=');
                match value {
                    Value::Text(text) => push_text_value(&mut line, &bounded(text)),
                    Value::Number(n) => {
                        let _ = write!(line, "{n}");
                    }
                    Value::Missing => line.push('-'),
                }
            }
        }
        Format::Json => {
            line.push_str("{\"time\":\"");
            write_timestamp(&mut line, unix_ms);
            line.push_str("\",\"level\":");
            json::write_string(&mut line, level.name());
            line.push_str(",\"msg\":");
            json::write_string(&mut line, &bounded(message));
            for (key, value) in fields {
                line.push(',');
                json::write_string(&mut line, key);
                line.push(':');
                match value {
                    Value::Text(text) => json::write_string(&mut line, &bounded(text)),
                    Value::Number(n) => {
                        let _ = write!(line, "{n}");
                    }
                    Value::Missing => line.push_str("null"),
                }
            }
            line.push('}');
        }
    }
    line.push('\n');
    line
}

/// `2026-11-30T09:17:00.123Z`: RFC 3339 §5.6 `date-time` in UTC (`Z`), with milliseconds.
pub fn write_timestamp(out: &mut String, unix_ms: u64) {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        unix_ms % 1000
    );
}

/// `text`, or its first [`MAX_TEXT_BYTES`] (cut at a character boundary) and `...`.
fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_TEXT_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &text[..end]))
}

/// A text line's message: as is, but a control character is `\u00XX` and a backslash `\\`
/// (the escapes JSON uses), so a message cannot end the line or fake another.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A text line's field value: bare if it is one word without quotes (a path with `=` in its
/// query included: a reader splits a field at its first `=`), else a JSON string, so that a
/// reader can always tell where it ends.
fn push_text_value(out: &mut String, text: &str) {
    let plain = !text.is_empty() && text.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '"');
    if plain {
        out.push_str(text);
    } else {
        json::write_string(out, text);
    }
}

// --- Macros ------------------------------------------------------------------------------

/// Writes an `error` line: `realtime::error!("cannot listen"; addr = addr, error = e.to_string())`.
/// A format string with arguments, then optionally `;` and `key = value` fields (each value
/// anything [`Value`] converts from). Nothing is evaluated when the level is off.
#[macro_export]
macro_rules! error {
    ($($line:tt)+) => { $crate::log_at!($crate::log::Level::Error, $($line)+) };
}

/// Writes a `warn` line; see [`error!`](crate::error!).
#[macro_export]
macro_rules! warn {
    ($($line:tt)+) => { $crate::log_at!($crate::log::Level::Warn, $($line)+) };
}

/// Writes an `info` line; see [`error!`](crate::error!).
#[macro_export]
macro_rules! info {
    ($($line:tt)+) => { $crate::log_at!($crate::log::Level::Info, $($line)+) };
}

/// Writes a `debug` line; see [`error!`](crate::error!).
#[macro_export]
macro_rules! debug {
    ($($line:tt)+) => { $crate::log_at!($crate::log::Level::Debug, $($line)+) };
}

/// What the level macros expand to: the level check, then [`log::write`](crate::log::write).
#[doc(hidden)]
#[macro_export]
macro_rules! log_at {
    ($level:expr, $format:literal $(, $argument:expr)* $(; $($key:ident = $value:expr),+ $(,)?)?) => {
        if $crate::log::enabled($level) {
            $crate::log::write(
                $level,
                format_args!($format $(, $argument)*),
                &[$($((stringify!($key), $crate::log::Value::from($value))),+)?],
            );
        }
    };
}

// --- The access log ----------------------------------------------------------------------

/// What the access log says of one finished exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine<'a> {
    /// The client's address.
    pub remote: IpAddr,
    /// `-` when the request head could not be read.
    pub method: &'a str,
    /// Path and query, tokens redacted ([`crate::gate::loggable_target`]); `-` when unread.
    pub path: &'a str,
    /// `None`: the exchange ended without an answer (the client left a long poll, say).
    pub status: Option<u16>,
    /// Bytes written to the client for this exchange, or still queued when it was logged.
    pub bytes: u64,
    /// From the request head to the end of the exchange.
    pub duration_ms: u64,
    /// `None` for a request answered at once (a publish, `/stats`, any refusal): `http`.
    pub transport: Option<Transport>,
    /// A WebSocket's close code ([`crate::stream::WebSocketStream::close_code`]).
    pub close_code: Option<u16>,
}

/// Writes an access line at `unix_ms` (the time the connection was told), if `--access-log`
/// asked for them: the caller checks that.
pub fn access(unix_ms: u64, line: &AccessLine<'_>) {
    let remote = line.remote.to_string();
    let mut fields = vec![
        ("remote", Value::from(&remote)),
        ("method", Value::from(line.method)),
        ("path", Value::from(line.path)),
        ("status", Value::from(line.status)),
        ("bytes", Value::from(line.bytes)),
        ("ms", Value::from(line.duration_ms)),
        ("transport", Value::from(line.transport.map_or("http", Transport::name))),
    ];
    if line.transport == Some(Transport::WebSocket) {
        fields.push(("close", Value::from(line.close_code)));
    }
    emit(unix_ms, Level::Info, "access", &fields);
}

// --- Capture, for tests ------------------------------------------------------------------

/// The most lines a [`Capture`] keeps; older ones are dropped.
pub const CAPTURE_LINES: usize = 10_000;

struct Captured {
    format: Format,
    lines: VecDeque<String>,
}

impl Captured {
    fn push(&mut self, line: String) {
        if self.lines.len() == CAPTURE_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// While it lives, every line the current thread logs goes to it (in `format`, whatever
/// [`init`] set) instead of stderr: how the tests read the log of a `Connection` they drive.
/// Levels still apply; access lines are always written. A new capture replaces the thread's
/// previous one.
pub struct Capture {
    /// Bound to the thread whose lines it holds.
    _not_send: PhantomData<Rc<()>>,
}

/// Starts capturing the current thread's lines.
pub fn capture(format: Format) -> Capture {
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(Captured { format, lines: VecDeque::new() }));
    Capture { _not_send: PhantomData }
}

impl Capture {
    /// The lines so far, each with its `\n`.
    pub fn lines(&self) -> Vec<String> {
        CAPTURE.with(|capture| capture.borrow().as_ref().map(|c| c.lines.iter().cloned().collect()).unwrap_or_default())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURE.with(|capture| *capture.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Value as Json;

    /// 2026-11-30T09:17:00.123Z.
    const NOV_30: u64 = 1_796_030_220_123;

    fn timestamp(unix_ms: u64) -> String {
        let mut out = String::new();
        write_timestamp(&mut out, unix_ms);
        out
    }

    #[test]
    fn rfc3339_timestamps_are_utc_with_milliseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(NOV_30), "2026-11-30T09:17:00.123Z");
        assert_eq!(timestamp(951_782_400_007), "2000-02-29T00:00:00.007Z", "a leap day");
        assert_eq!(timestamp(1_709_251_199_999), "2024-02-29T23:59:59.999Z", "the last millisecond of one");
        assert_eq!(timestamp(4_107_542_400_000), "2100-03-01T00:00:00.000Z", "2100 has no leap day");
        assert_eq!(timestamp(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    /// The fields of a text line, as a reader splits it: time, level, then the message up to
    /// the first `key=value`, then the fields (a quoted value read as a JSON string).
    fn parse_text(line: &str) -> (String, String, String, Vec<(String, String)>) {
        let line = line.strip_suffix('\n').expect("a line ends with a newline");
        assert!(!line.contains('\n'), "one line: {line:?}");
        let (time, rest) = line.split_once(' ').unwrap();
        let (level, rest) = rest.split_at(5);
        let rest = rest.strip_prefix(' ').unwrap();
        let mut message = String::new();
        let mut fields = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            let word_end = rest.find(' ').unwrap_or(rest.len());
            let is_field = rest[..word_end]
                .split_once('=')
                .is_some_and(|(key, _)| !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            if !is_field {
                assert!(fields.is_empty(), "message text after a field: {line:?}");
                message.push_str(if message.is_empty() { "" } else { " " });
                message.push_str(&rest[..word_end]);
                rest = rest[word_end..].trim_start_matches(' ');
                continue;
            }
            let (key, after) = rest.split_once('=').unwrap();
            let (value, next) = if after.starts_with('"') {
                // The shortest prefix that is a whole JSON string.
                let end = after
                    .char_indices()
                    .map(|(at, c)| at + c.len_utf8())
                    .find(|&end| matches!(crate::json::parse(&after[..end]), Ok(Json::String(_))))
                    .unwrap_or_else(|| panic!("unterminated value in {line:?}"));
                (crate::json::parse(&after[..end]).unwrap().as_str().unwrap().to_string(), &after[end..])
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            };
            fields.push((key.to_string(), value));
            rest = next.trim_start_matches(' ');
        }
        (time.to_string(), level.trim_end().to_string(), message, fields)
    }

    const AWKWARD: &str = "say \"hi\"\nthen\tgo\\ = \u{1}é";

    fn sample(format: Format) -> String {
        let fields = [
            ("plain", Value::from("epoll")),
            ("awkward", Value::from(AWKWARD)),
            ("empty", Value::from("")),
            ("count", Value::from(42u64)),
            ("status", Value::Missing),
        ];
        format_line(format, NOV_30, Level::Warn, "listening on http://x \"quoted\" \n fake", &fields)
    }

    #[test]
    fn a_text_line_is_time_level_message_then_fields_and_reads_back() {
        let line = sample(Format::Text);
        assert!(
            line.starts_with(
                "2026-11-30T09:17:00.123Z WARN  listening on http://x \"quoted\" \\u000a fake plain=epoll "
            ),
            "{line}"
        );
        let (time, level, message, fields) = parse_text(&line);
        assert_eq!((time.as_str(), level.as_str()), ("2026-11-30T09:17:00.123Z", "WARN"));
        assert_eq!(message, "listening on http://x \"quoted\" \\u000a fake", "the newline is escaped, not written");
        let expected = [("plain", "epoll"), ("awkward", AWKWARD), ("empty", ""), ("count", "42"), ("status", "-")];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(fields, expected);
        assert!(line.contains(r#"awkward="say \"hi\"\u000athen\u0009go\\ = \u0001é""#), "{line}");
    }

    #[test]
    fn a_json_line_is_one_object_that_parses_back() {
        let line = sample(Format::Json);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        let object = crate::json::parse(line.trim_end()).expect("valid JSON");
        let Json::Object(members) = &object else { panic!("{object:?}") };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["time", "level", "msg", "plain", "awkward", "empty", "count", "status"]);
        let text = |key: &str| object.get(key).and_then(Json::as_str).map(str::to_string);
        assert_eq!(text("time").as_deref(), Some("2026-11-30T09:17:00.123Z"));
        assert_eq!(text("level").as_deref(), Some("warn"));
        assert_eq!(text("msg").as_deref(), Some("listening on http://x \"quoted\" \n fake"));
        assert_eq!(text("awkward").as_deref(), Some(AWKWARD));
        assert_eq!(text("empty").as_deref(), Some(""));
        assert_eq!(object.get("count").and_then(Json::as_u64), Some(42));
        assert_eq!(object.get("status"), Some(&Json::Null));
    }

    #[test]
    fn a_long_value_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let line = format_line(Format::Json, 0, Level::Info, &long, &[("v", Value::from(&long))]);
        let object = crate::json::parse(line.trim_end()).unwrap();
        for key in ["msg", "v"] {
            let value = object.get(key).and_then(Json::as_str).unwrap();
            assert!(value.ends_with("...") && value.len() <= MAX_TEXT_BYTES + 3, "{key}: {} bytes", value.len());
        }
    }

    #[test]
    fn a_level_passes_when_it_is_at_or_above_the_threshold() {
        assert!(Level::Error.passes(Level::Error) && Level::Error.passes(Level::Debug));
        assert!(Level::Info.passes(Level::Info) && Level::Warn.passes(Level::Info));
        assert!(!Level::Info.passes(Level::Warn) && !Level::Debug.passes(Level::Info));
        for level in Level::ALL {
            assert_eq!(Level::parse(level.name()), Ok(level));
        }
        assert!(Level::parse("verbose").is_err() && Level::parse("INFO").is_err());
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        assert!(Format::parse("yaml").is_err());
    }

    #[test]
    fn the_macros_write_through_the_capture_and_skip_what_the_level_hides() {
        // The process-wide level is `info` unless `init` changed it, which no unit test does.
        let capture = capture(Format::Json);
        let error = "refused";
        let mut evaluated = false;
        crate::warn!("cannot accept: {error}"; attempt = 3u64, why = error);
        crate::debug!("hidden"; costly = {
            evaluated = true;
            "x"
        });
        crate::info!("plain");
        let lines = capture.lines();
        assert!(!evaluated, "a field of a hidden line is never evaluated");
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = crate::json::parse(lines[0].trim_end()).unwrap();
        assert_eq!(first.get("msg").and_then(Json::as_str), Some("cannot accept: refused"));
        assert_eq!(first.get("attempt").and_then(Json::as_u64), Some(3));
        assert_eq!(first.get("why").and_then(Json::as_str), Some("refused"));
        assert_eq!(first.get("level").and_then(Json::as_str), Some("warn"));
        drop(capture);
        let again = super::capture(Format::Text);
        assert!(again.lines().is_empty(), "a new capture starts empty");
    }

    #[test]
    fn an_access_line_has_every_field_and_a_close_code_for_websockets_only() {
        let capture = capture(Format::Text);
        let mut line = AccessLine {
            remote: "192.0.2.7".parse().unwrap(),
            method: "GET",
            path: "/poll/news?token=REDACTED",
            status: Some(200),
            bytes: 312,
            duration_ms: 4,
            transport: Some(Transport::LongPoll),
            close_code: None,
        };
        access(NOV_30, &line);
        line.transport = Some(Transport::WebSocket);
        line.status = Some(101);
        line.close_code = Some(1000);
        access(NOV_30, &line);
        let lines = capture.lines();
        assert_eq!(
            lines[0],
            "2026-11-30T09:17:00.123Z INFO  access remote=192.0.2.7 method=GET path=/poll/news?token=REDACTED \
             status=200 bytes=312 ms=4 transport=poll\n"
        );
        assert!(lines[1].ends_with(" status=101 bytes=312 ms=4 transport=ws close=1000\n"), "{}", lines[1]);
    }
}
