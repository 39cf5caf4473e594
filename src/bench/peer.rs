//! The load generator's own client: a WebSocket on `/echo` that keeps `k` messages in flight.
//! It is sans-I/O like [`Subscriber`](crate::client::subscriber::Subscriber), which follows a
//! channel and lives in [`crate::client`] because `realtime sub` follows channels too.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::Instant;

use crate::client::subscriber::{handshake_answer, Masks};
use crate::ws::handshake;
use crate::ws::session::{Event as WsEvent, Session};

/// A WebSocket on `/echo` keeping `in_flight` messages of `size` bytes outstanding: each echo
/// that comes back is timed and answered with a new message.
pub struct Echoer {
    /// Text frames (the server validates their UTF-8, as a browser's chat would make it) or
    /// binary ones.
    text: bool,
    key: String,
    input: Vec<u8>,
    session: Option<Box<Session>>,
    masks: Masks,
    /// `size` ASCII bytes: a valid text message, and the same bytes as a binary one.
    payload: String,
    in_flight: usize,
    /// Send times of the messages not yet echoed, oldest first (an echo keeps the order).
    sent: VecDeque<Instant>,
    /// Round trips completed and not yet taken by the scenario.
    pub round_trips: Vec<std::time::Duration>,
}

impl Echoer {
    pub fn start(host: &str, size: usize, in_flight: usize, text: bool, masks: &Masks, out: &mut Vec<u8>) -> Echoer {
        let key = masks.key();
        let _ = handshake::write_client_request(out, host, "/echo", &key, None);
        Echoer {
            text,
            key,
            input: Vec::new(),
            session: None,
            masks: masks.clone(),
            payload: "x".repeat(size),
            in_flight: in_flight.max(1),
            sent: VecDeque::new(),
            round_trips: Vec::new(),
        }
    }

    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>, now: Instant) -> Result<(), String> {
        self.input.extend_from_slice(bytes);
        let session = match &mut self.session {
            Some(session) => session,
            None => {
                let Some(answer) = handshake_answer(&self.input, &self.key)? else { return Ok(()) };
                let (status, consumed) = (answer.status_if_accepted(), answer.consumed);
                if status != 101 {
                    return Err(format!("echo handshake answered {status}"));
                }
                self.input.drain(..consumed);
                let session = self.session.insert(Box::new(self.masks.session()));
                // The first window of messages, all at once.
                for _ in 0..self.in_flight {
                    send(session, self.text, &self.payload, out)?;
                    self.sent.push_back(now);
                }
                session
            }
        };
        loop {
            let (consumed, event) = session.receive(&mut self.input, out);
            self.input.drain(..consumed);
            match event {
                Some(WsEvent::Message(_)) => {
                    if let Some(sent) = self.sent.pop_front() {
                        self.round_trips.push(now.saturating_duration_since(sent));
                    }
                    send(session, self.text, &self.payload, out)?;
                    self.sent.push_back(now);
                }
                Some(WsEvent::Ping(_) | WsEvent::Pong(_)) => {}
                Some(WsEvent::Closed(_) | WsEvent::Failed(_)) => return Err("echo connection closed".into()),
                None if consumed == 0 => return Ok(()),
                None => {}
            }
        }
    }
}

/// Sends `payload` as one text or binary message.
fn send(session: &mut Session, text: bool, payload: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let sent = if text { session.send_text(payload, out) } else { session.send_binary(payload.as_bytes(), out) };
    sent.map_err(|_| "cannot send".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first byte of each frame the echoer wrote once its handshake was answered: FIN and
    /// the opcode (RFC 6455 §5.2), 0x81 for text, 0x82 for binary.
    fn first_window(text: bool) -> Vec<u8> {
        let masks = Masks::new().unwrap();
        let mut out = Vec::new();
        let mut echoer = Echoer::start("x", 5, 3, text, &masks, &mut out);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            handshake::accept_key(echoer.key.as_bytes())
        );
        out.clear();
        echoer.receive(answer.as_bytes(), &mut out, Instant::now()).unwrap();
        // Three masked frames of 5 bytes: 2 header bytes, a 4-byte key, the payload.
        assert_eq!(out.len(), 3 * 11);
        out.chunks(11).map(|frame| frame[0]).collect()
    }

    #[test]
    fn the_echoer_sends_text_frames_when_asked_and_binary_ones_otherwise() {
        assert_eq!(first_window(true), [0x81; 3]);
        assert_eq!(first_window(false), [0x82; 3]);
    }
}
