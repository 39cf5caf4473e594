//! The soak's misbehaving clients ([`super::soak`]), sans-I/O like the others in [`super::peer`]:
//! each writes its opening bytes, takes what its socket received and says what to send.
//!
//! What each does to the server, and what a server that bounds its resources does back:
//!
//! | kind | the client | a bounded server |
//! |---|---|---|
//! | `slow` | an SSE or WebSocket subscriber that reads a trickle ([`crate::client::subscriber::Subscriber`] held back by the engine) | stops pulling at `--max-outbound-bytes`; the history holds the rest |
//! | `ping` | a WebSocket that sends pings and never reads the pongs | stops reading while its answers wait |
//! | `echo` | a WebSocket on `/echo` that sends messages and never reads the echoes | the same |
//! | `partial` | a request head, a request body or a WebSocket message whose first part comes and the rest never does | times the head and the body out (408), bounds the message (1009) |
//! | `silent` | connects and sends nothing | times the connection out |
//! | `rst` | asks for a stream and ends the connection before reading the answer, which makes the kernel send a reset | forgets the connection at once |
//!
//! The engine decides when a client may read ([`super::engine::Engine::allow_reading`]); the
//! flooders stop reading once their handshake is answered, and `rst` never reads at all.

use std::time::Instant;

use crate::ws::handshake;
use crate::ws::session::{Event as WsEvent, Session};

use crate::client::subscriber::{handshake_answer, Masks};

/// The kinds of abuse `--abuse` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abuse {
    Slow,
    Ping,
    Echo,
    Partial,
    Silent,
    Rst,
}

impl Abuse {
    pub const ALL: [Abuse; 6] = [Abuse::Slow, Abuse::Ping, Abuse::Echo, Abuse::Partial, Abuse::Silent, Abuse::Rst];

    /// `none`, `all`, or a comma-separated list of kinds.
    pub fn parse_list(text: &str) -> Result<Vec<Abuse>, String> {
        match text {
            "none" => Ok(Vec::new()),
            "all" => Ok(Abuse::ALL.to_vec()),
            list => {
                let mut kinds = Vec::new();
                for name in list.split(',') {
                    let kind = Abuse::ALL.into_iter().find(|kind| kind.name() == name).ok_or(format!(
                        "--abuse: {name:?} (none, all, or some of slow,ping,echo,partial,silent,rst)"
                    ))?;
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                Ok(kinds)
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Abuse::Slow => "slow",
            Abuse::Ping => "ping",
            Abuse::Echo => "echo",
            Abuse::Partial => "partial",
            Abuse::Silent => "silent",
            Abuse::Rst => "rst",
        }
    }
}

/// Payload of each flood ping: the most a control frame may carry (RFC 6455 §5.5).
const PING_PAYLOAD: [u8; 125] = [b'p'; 125];

/// Size of each message an echo flooder sends: large enough that the flood costs the load
/// generator few frames, small enough to be an ordinary message.
const ECHO_MESSAGE_BYTES: usize = 4 * 1024;

/// What a partial WebSocket message sends before it stalls: two fragments of this size.
const PARTIAL_FRAGMENT_BYTES: usize = 1024;

/// The `Content-Length` a partial body announces, and how much of it comes.
const PARTIAL_BODY_ANNOUNCED: usize = 1024;
const PARTIAL_BODY_SENT: usize = 100;

/// What one abusive connection does; `Partial` and `Rst` take turns between their forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// A WebSocket that floods pings.
    PingFlood,
    /// A WebSocket on `/echo` that floods messages.
    EchoFlood,
    /// A request head without its blank line.
    PartialHead,
    /// A publish whose body stops short of its `Content-Length`.
    PartialBody,
    /// A WebSocket whose text message never gets its last fragment.
    PartialMessage,
    /// Nothing at all.
    Silent,
    /// An SSE request, then a close before reading the answer.
    ResetSse,
    /// A WebSocket upgrade, then a close before reading the answer.
    ResetWebSocket,
}

impl Behaviour {
    /// The `turn`-th connection of `kind` (`Slow` is a subscriber, not an `Abuser`).
    pub fn of(kind: Abuse, turn: usize) -> Option<Behaviour> {
        Some(match kind {
            Abuse::Slow => return None,
            Abuse::Ping => Behaviour::PingFlood,
            Abuse::Echo => Behaviour::EchoFlood,
            Abuse::Partial => [Behaviour::PartialHead, Behaviour::PartialBody, Behaviour::PartialMessage][turn % 3],
            Abuse::Silent => Behaviour::Silent,
            Abuse::Rst => [Behaviour::ResetSse, Behaviour::ResetWebSocket][turn % 2],
        })
    }

    /// Whether it floods once its handshake is answered (and reads nothing from then on).
    pub fn floods(self) -> bool {
        matches!(self, Behaviour::PingFlood | Behaviour::EchoFlood)
    }

    /// Whether it reads nothing, ever.
    pub fn never_reads(self) -> bool {
        matches!(self, Behaviour::ResetSse | Behaviour::ResetWebSocket)
    }

    fn is_websocket(self) -> bool {
        matches!(
            self,
            Behaviour::PingFlood | Behaviour::EchoFlood | Behaviour::PartialMessage | Behaviour::ResetWebSocket
        )
    }
}

/// One misbehaving connection.
pub struct Abuser {
    behaviour: Behaviour,
    key: String,
    masks: Masks,
    input: Vec<u8>,
    /// The client side of the WebSocket, once the 101 has come.
    session: Option<Box<Session>>,
    /// The server has answered the request head (a 101 for the WebSockets).
    pub answered: bool,
}

impl Abuser {
    /// Starts `behaviour` against `host`: `channel` is where the WebSockets and requests go
    /// (the flooders and partial requests use a channel nobody publishes to, the resets one
    /// that has traffic). Its opening bytes are appended to `out`.
    pub fn start(behaviour: Behaviour, host: &str, channel: &str, masks: &Masks, out: &mut Vec<u8>) -> Abuser {
        let mut key = String::new();
        let request = |out: &mut Vec<u8>, text: String| out.extend_from_slice(text.as_bytes());
        match behaviour {
            Behaviour::PingFlood | Behaviour::PartialMessage | Behaviour::ResetWebSocket | Behaviour::EchoFlood => {
                key = masks.key();
                let path = if behaviour == Behaviour::EchoFlood { "/echo".to_string() } else { format!("/ws/{channel}") };
                // Host and path come from the command line and a channel name: visible ASCII.
                let _ = handshake::write_client_request(out, host, &path, &key, None);
            }
            Behaviour::PartialHead => request(out, format!("GET /poll/{channel}?timeout=60 HTTP/1.1\r\nHost: {host}\r\n")),
            Behaviour::PartialBody => request(
                out,
                format!(
                    "POST /publish/{channel} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {PARTIAL_BODY_ANNOUNCED}\r\n\r\n{}",
                    "b".repeat(PARTIAL_BODY_SENT)
                ),
            ),
            Behaviour::ResetSse => request(
                out,
                format!("GET /sse/{channel} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"),
            ),
            Behaviour::Silent => {}
        }
        Abuser { behaviour, key, masks: masks.clone(), input: Vec::new(), session: None, answered: false }
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// Takes bytes from the socket. The WebSockets wait for their 101 (then a partial message
    /// sends its first fragments and stalls); anything else the server says to a partial or
    /// silent request ends it, with what the server answered as the reason.
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, _now: Instant) -> Result<(), String> {
        self.input.extend_from_slice(bytes);
        if !self.answered {
            let Some(answer) = handshake_answer(&self.input, &self.key)? else { return Ok(()) };
            let status = if self.behaviour.is_websocket() { answer.status_if_accepted() } else { answer.status };
            let (reason, consumed) = (answer.reason, answer.consumed);
            self.answered = true;
            if !self.behaviour.is_websocket() || status != 101 {
                return Err(format!("answered {status} {reason}"));
            }
            self.input.drain(..consumed);
            let session = self.session.insert(Box::new(self.masks.session()));
            if self.behaviour == Behaviour::PartialMessage {
                let fragment = "m".repeat(PARTIAL_FRAGMENT_BYTES);
                for _ in 0..2 {
                    session.send_text_fragment(&fragment, false, out).map_err(|_| "cannot send")?;
                }
            }
        }
        let Some(session) = &mut self.session else { return Ok(()) };
        loop {
            let (consumed, event) = session.receive(&mut self.input, out);
            self.input.drain(..consumed);
            match event {
                Some(WsEvent::Closed(info)) => return Err(format!("closed by the server: {:?}", info.code)),
                Some(WsEvent::Failed(error)) => return Err(format!("protocol error: {}", error.describe())),
                Some(_) => {}
                None if consumed == 0 => return Ok(()),
                None => {}
            }
        }
    }

    /// A flooder's next `bytes` (or a little more: whole frames) of pings or messages.
    pub fn flood(&mut self, bytes: usize, out: &mut Vec<u8>) {
        let Some(session) = &mut self.session else { return };
        let start = out.len();
        let message = [b'e'; ECHO_MESSAGE_BYTES];
        while out.len() - start < bytes {
            let sent = match self.behaviour {
                Behaviour::PingFlood => session.send_ping(&PING_PAYLOAD, out),
                Behaviour::EchoFlood => session.send_binary(&message, out),
                _ => return,
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abuse_lists_parse_none_all_and_names_once_each() {
        assert_eq!(Abuse::parse_list("none").unwrap(), []);
        assert_eq!(Abuse::parse_list("all").unwrap(), Abuse::ALL);
        assert_eq!(Abuse::parse_list("rst,ping,rst").unwrap(), [Abuse::Rst, Abuse::Ping]);
        assert!(Abuse::parse_list("ping,bogus").is_err());
    }

    #[test]
    fn a_partial_head_never_ends_and_a_partial_body_stops_short() {
        let masks = Masks::new().unwrap();
        let mut out = Vec::new();
        Abuser::start(Behaviour::PartialHead, "h", "c", &masks, &mut out);
        let head = String::from_utf8(out).unwrap();
        assert!(head.starts_with("GET /poll/c") && !head.contains("\r\n\r\n"), "{head:?}");
        let mut out = Vec::new();
        Abuser::start(Behaviour::PartialBody, "h", "c", &masks, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(body.len() < PARTIAL_BODY_ANNOUNCED && text.contains("Content-Length: 1024"));
    }

    #[test]
    fn a_flooder_floods_only_after_its_handshake_and_an_answer_ends_a_partial_request() {
        let masks = Masks::new().unwrap();
        let mut out = Vec::new();
        let mut ping = Abuser::start(Behaviour::PingFlood, "h", "c", &masks, &mut out);
        let mut flood = Vec::new();
        ping.flood(1000, &mut flood);
        assert!(flood.is_empty(), "no 101 yet");
        let accept = handshake::accept_key(ping.key.as_bytes());
        let answer = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        ping.receive(answer.as_bytes(), &mut out, Instant::now()).unwrap();
        ping.flood(1000, &mut flood);
        assert!(flood.len() >= 1000 && flood.len() < 1000 + 131, "whole frames: {}", flood.len());

        let mut silent = Abuser::start(Behaviour::Silent, "h", "c", &masks, &mut Vec::new());
        let timeout = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            silent.receive(timeout.as_bytes(), &mut out, Instant::now()).unwrap_err(),
            "answered 408 Request Timeout"
        );
    }
}
