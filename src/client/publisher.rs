//! Publishing from the client side: `POST /publish/{channel}` on one keep-alive connection,
//! reading each `201 {"id":"..."}` (`docs/PROTOCOL.md` §5). `realtime pub` reads each answer
//! before sending the next ([`Publisher::publish`]); the load generator keeps several in
//! flight ([`Publisher::send`], then [`Publisher::read_published`]), HTTP/1.1 pipelining
//! (RFC 9112 §9.3.2: the server answers them in order), so that its publish rate is bounded by
//! the server and not by one round trip per message.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::http::grammar::Parsed;
use crate::http::request::Limits;
use crate::http::response_head::{parse_response, ResponseFraming};
use crate::json;

/// A keep-alive connection that publishes and reads each `201`, counting bytes.
pub struct Publisher {
    stream: TcpStream,
    host: String,
    /// `Authorization: Bearer` with every publish, if set.
    token: Option<String>,
    input: Vec<u8>,
    /// Bytes of responses read.
    pub bytes: u64,
}

impl Publisher {
    /// Connects to `addr`; `host` is the `Host` field to send.
    pub fn connect(addr: SocketAddr, host: &str) -> io::Result<Publisher> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Publisher { stream, host: host.to_string(), token: None, input: Vec::new(), bytes: 0 })
    }

    /// Shows `token` (`Authorization: Bearer`) with every publish. It must be visible ASCII,
    /// or the request would not be valid HTTP.
    pub fn with_token(mut self, token: Option<&str>) -> Publisher {
        self.token = token.map(str::to_string);
        self
    }

    /// Publishes `text` to `channel`; the new message's id.
    pub fn publish(&mut self, channel: &str, text: &str) -> io::Result<String> {
        self.send(channel, text)?;
        self.read_published()
    }

    /// Sends a publish of `text` to `channel` without waiting for its answer: each call owes
    /// one [`Publisher::read_published`], in the same order.
    pub fn send(&mut self, channel: &str, text: &str) -> io::Result<()> {
        let authorization = self.token.as_deref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!(
            "POST /publish/{channel} HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Length: {}\r\n\r\n{text}",
            self.host,
            text.len()
        );
        self.stream.write_all(request.as_bytes())
    }

    /// Reads the answer to the oldest publish sent and not yet answered: the new message's id.
    pub fn read_published(&mut self) -> io::Result<String> {
        let (status, body) = self.read_response()?;
        if status != 201 {
            return Err(io::Error::other(format!("publish answered {status}: {}", body.trim_end())));
        }
        json::parse(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(json::Value::as_str).map(str::to_string))
            .ok_or_else(|| io::Error::other(format!("publish answer without an id: {body}")))
    }

    /// Sends `request` as it is (the load generator measures other requests on it).
    pub fn send_raw(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request)
    }

    /// Reads one `Content-Length` response: its status and body.
    pub fn read_response(&mut self) -> io::Result<(u16, String)> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some((status, consumed)) = complete_response(&self.input)? {
                let body = String::from_utf8_lossy(&self.input[consumed.0..consumed.1]).into_owned();
                self.input.drain(..consumed.1);
                return Ok((status, body));
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.bytes += n as u64;
            self.input.extend_from_slice(&buf[..n]);
        }
    }
}

/// A whole `Content-Length` response at the start of `input`: its status and where its body
/// starts and ends.
fn complete_response(input: &[u8]) -> io::Result<Option<(u16, (usize, usize))>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    match parse_response(input, &Limits::default()).map_err(|e| invalid(e.message().to_string()))? {
        Parsed::Partial => Ok(None),
        Parsed::Complete { value, consumed } => {
            let length = match value.body_framing(false).map_err(|e| invalid(e.message().to_string()))? {
                ResponseFraming::None => 0,
                ResponseFraming::Length(length) => length as usize,
                other => return Err(invalid(format!("unexpected framing {other:?}"))),
            };
            Ok((input.len() >= consumed + length).then_some((value.status, (consumed, consumed + length))))
        }
    }
}
