//! The three ways a server pushes, as every part of the crate names them: the server's metrics
//! and access log, the clients and the load generator.

#![forbid(unsafe_code)]

/// How a subscriber follows a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `GET /poll/{channel}?since=ID`, asked again after every answer ([`crate::longpoll`]).
    LongPoll = 0,
    /// `GET /sse/{channel}`, resumed with `Last-Event-ID` ([`crate::sse`]).
    Sse = 1,
    /// `GET /ws/{channel}?since=ID` ([`crate::ws`]).
    WebSocket = 2,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::LongPoll, Transport::Sse, Transport::WebSocket];

    /// The short name (`poll`, `sse`, `ws`): labels, log fields, command-line values.
    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPoll => "poll",
            Transport::Sse => "sse",
            Transport::WebSocket => "ws",
        }
    }

    pub fn parse(name: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|transport| transport.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_transport() {
        for transport in Transport::ALL {
            assert_eq!(Transport::parse(transport.name()), Some(transport));
        }
        assert_eq!(Transport::parse("http"), None);
    }
}
