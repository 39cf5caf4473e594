//! A blocking WebSocket client: the client role of [`Session`] driven over a `TcpStream`.
//!
//! This is the one file under `ws/` that does I/O. It exists for the tests, the benchmark and
//! anyone who wants to talk to the server from Rust: it sends the opening handshake with a
//! random key (RFC 6455 §4.1), checks the server's `Sec-WebSocket-Accept`, and masks every
//! frame with a fresh key from the OS (§5.3: the key "MUST be derived from a strong source of
//! entropy", so that a page's script cannot choose the bytes a proxy sees).

#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;

use super::close::CloseCode;
use super::extension::{self, Agreement};
use super::handshake;
use super::message::Message;
use super::session::{Event, Session};
use crate::http::grammar::Parsed;
use crate::http::request::Limits;
use crate::http::response_head::parse_response;
use crate::random::RandomSource;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The server answered the handshake with something other than a valid 101.
    Rejected {
        status: u16,
        reason: String,
    },
    /// The connection ended before the expected event.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "{error}"),
            ClientError::Rejected { status, reason } => write!(f, "handshake rejected: {status} ({reason})"),
            ClientError::Closed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> ClientError {
        ClientError::Io(error)
    }
}

pub struct Client {
    stream: TcpStream,
    session: Session,
    /// Received bytes the session has not consumed yet.
    input: Vec<u8>,
    /// Frames to send.
    output: Vec<u8>,
    /// permessage-deflate, if we offered it and the server agreed.
    deflate: Option<Agreement>,
}

impl Client {
    /// Connects to `addr` (`host:port`) and opens a WebSocket on `path` (`/ws/messages`).
    pub fn connect(addr: &str, path: &str) -> Result<Client, ClientError> {
        Client::connect_with(TcpStream::connect(addr)?, addr, path, None)
    }

    /// [`Client::connect`], offering permessage-deflate (RFC 7692) as browsers do; the
    /// server may decline ([`Client::deflate`] says).
    pub fn connect_compressed(addr: &str, path: &str) -> Result<Client, ClientError> {
        Client::open(TcpStream::connect(addr)?, addr, path, None, Some(extension::CLIENT_OFFER))
    }

    /// What the server agreed to about permessage-deflate, if anything.
    pub fn deflate(&self) -> Option<Agreement> {
        self.deflate
    }

    /// Opens a WebSocket over an existing connection, with an optional `Origin`.
    pub fn connect_with(
        stream: TcpStream,
        host: &str,
        path: &str,
        origin: Option<&str>,
    ) -> Result<Client, ClientError> {
        Client::open(stream, host, path, origin, None)
    }

    fn open(
        stream: TcpStream,
        host: &str,
        path: &str,
        origin: Option<&str>,
        offer: Option<&str>,
    ) -> Result<Client, ClientError> {
        let mut random = RandomSource::new()?;
        let mut nonce = [0u8; handshake::KEY_NONCE_LEN];
        for chunk in nonce.chunks_mut(4) {
            chunk.copy_from_slice(&random.next_u32_bytes());
        }
        let key = handshake::client_key(&nonce);
        let mut request = Vec::new();
        let fields: Vec<(&str, &str)> = offer.map(|offer| ("Sec-WebSocket-Extensions", offer)).into_iter().collect();
        handshake::write_client_request_with_fields(&mut request, host, path, &key, origin, &fields)
            .map_err(|bad| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid {}", bad.0)))?;
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream,
            session: Session::new_client(
                super::session::DEFAULT_MAX_MESSAGE,
                Box::new(move || random.next_u32_bytes()),
            ),
            input: Vec::new(),
            output: Vec::new(),
            deflate: None,
        };
        client.stream.write_all(&request)?;
        client.read_handshake_response(&key, offer.is_some())?;
        Ok(client)
    }

    /// Reads the 101 (RFC 6455 §4.2.2) and keeps any bytes after it: frames the server sent
    /// right away belong to the session.
    fn read_handshake_response(&mut self, key: &str, offered_deflate: bool) -> Result<(), ClientError> {
        let limits = Limits::default();
        loop {
            let parsed = parse_response(&self.input, &limits)
                .map_err(|error| ClientError::Rejected { status: 0, reason: error.message().to_string() })?;
            if let Parsed::Complete { value: head, consumed } = parsed {
                // §4.1: "If the status code received from the server is not 101, the client
                // handles the response per HTTP procedures"; and the client MUST check the
                // Upgrade, Connection and Sec-WebSocket-Accept fields.
                let accepted = head.status == 101
                    && head.has_token("upgrade", "websocket")
                    && head.has_token("connection", "upgrade")
                    && head.header("sec-websocket-accept").is_some_and(|v| handshake::check_server_accept(key, v));
                if !accepted {
                    return Err(ClientError::Rejected { status: head.status, reason: head.reason.to_string() });
                }
                // RFC 6455 §4.1: the client fails the connection if the response names an
                // extension it did not offer; RFC 7692 §5, if the parameters are not ones it
                // could have offered.
                if let Some(value) = head.header("sec-websocket-extensions") {
                    let Some(agreement) = Agreement::from_response(value).filter(|_| offered_deflate) else {
                        return Err(ClientError::Rejected { status: 101, reason: "unexpected extension".into() });
                    };
                    self.deflate = Some(agreement);
                    self.session.use_deflate(agreement);
                }
                self.input.drain(..consumed);
                return Ok(());
            }
            if self.fill()? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// The socket, e.g. to set a read timeout.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    fn fill(&mut self) -> io::Result<usize> {
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let read = self.stream.read(&mut self.input[start..]);
        self.input.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.output)?;
        self.output.clear();
        Ok(())
    }

    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.session.send_text(text, &mut self.output).map_err(send_error)?;
        self.flush()
    }

    pub fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.session.send_binary(data, &mut self.output).map_err(send_error)?;
        self.flush()
    }

    pub fn send_ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.session.send_ping(payload, &mut self.output).map_err(send_error)?;
        self.flush()
    }

    /// Starts the closing handshake; read on with [`Client::next_event`] for the answer.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> io::Result<()> {
        self.session.close(code, reason, &mut self.output).map_err(send_error)?;
        self.flush()
    }

    /// Writes raw bytes, bypassing the session (tests use it to send malformed frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next event: a message, a ping (already answered), a pong, the close or a failure.
    pub fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            let (consumed, event) = self.session.receive(&mut self.input, &mut self.output);
            self.input.drain(..consumed);
            if !self.output.is_empty() {
                // Pong, close echo: a failed write means the server is gone, which the next
                // read reports.
                let _ = self.flush();
            }
            if let Some(event) = event {
                return Ok(event);
            }
            if consumed == 0 && self.fill()? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// The next message, skipping pings and pongs. A close or failure is an error.
    pub fn next_message(&mut self) -> Result<Message, ClientError> {
        loop {
            match self.next_event()? {
                Event::Message(message) => return Ok(message),
                Event::Ping(_) | Event::Pong(_) => {}
                Event::Closed(_) | Event::Failed(_) => return Err(ClientError::Closed),
            }
        }
    }
}

fn send_error(error: super::session::SendError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{error:?}"))
}
