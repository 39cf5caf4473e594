//! One blocking connection to Redis ([`Link`]): open it (`AUTH`, `SELECT`, `TIME`), send
//! commands and read their replies with a decoder that resumes where a read stopped, and
//! the ways such a conversation fails ([`RedisError`]). The supervisor's connections are
//! links (its subscriptions and its command connection); the link's lanes
//! ([`super::pipeline`]) open theirs with [`Link::open`] too.

#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::resp::{self, encode_command, RespError, Value};
use super::RedisUrl;

/// How long opening a connection may take. Redis is normally one hop away; a host that does
/// not answer at all should not hold the supervisor longer than this.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one command on the supervisor's connection (and while opening any connection)
/// may wait for its reply before the connection is declared dead. A reply that arrives later
/// could be taken for the next command's, so a timed-out connection is never reused.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnection backoff: the first retry after this, doubling...
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// ...up to this: a Redis that comes back is noticed within two seconds.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Bytes read from a socket at a time.
pub(super) const READ_CHUNK: usize = 64 * 1024;

/// The most a single reply may take before the connection is dropped as broken: an `XRANGE`
/// of 1000 messages of 64 KiB is 64 MiB.
pub(super) const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// The wall clock in Unix milliseconds, the unit of stream ids and of Redis's `TIME`.
pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Why a conversation with Redis failed.
#[derive(Debug)]
pub(super) enum RedisError {
    /// Connecting, reading or writing failed (refused, reset, a command timed out).
    Io(io::Error),
    /// Nothing arrived within the read timeout (on the subscription: the supervisor's tick).
    TimedOut,
    /// Redis closed the connection.
    Closed,
    /// The bytes are not RESP2.
    Protocol(RespError),
    /// A reply larger than [`MAX_REPLY_BYTES`].
    ReplyTooLarge,
    /// Redis refused the command (`-ERR ...`); the connection is still in step.
    Reply(String),
    /// A reply of a shape the command does not give.
    Unexpected(&'static str),
    /// The command connection is down and waiting for the supervisor.
    NotConnected,
    /// Redis refused the URL's credentials, or wants some and the URL has none: Redis's
    /// answer (`WRONGPASS ...`, `NOAUTH ...`), which never holds the password.
    Auth(String),
}

impl RedisError {
    /// Whether the connection is unusable afterwards. After a timeout it is too: the late
    /// reply would be read as the answer to the next command.
    pub(super) fn breaks_connection(&self) -> bool {
        !matches!(self, RedisError::Reply(_) | RedisError::NotConnected)
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Io(error) => write!(f, "{error}"),
            RedisError::TimedOut => f.write_str("timed out"),
            RedisError::Closed => f.write_str("connection closed by Redis"),
            RedisError::Protocol(error) => write!(f, "{error}"),
            RedisError::ReplyTooLarge => f.write_str("reply too large"),
            RedisError::Reply(message) => write!(f, "Redis answered: {message}"),
            RedisError::Unexpected(what) => write!(f, "unexpected reply: {what}"),
            RedisError::NotConnected => f.write_str("not connected to Redis"),
            RedisError::Auth(message) if message.starts_with("NOAUTH") => {
                write!(f, "Redis wants a password and --broker gives none (redis://:PASSWORD@HOST): {message}")
            }
            RedisError::Auth(message) => write!(f, "Redis refused the credentials in --broker: {message}"),
        }
    }
}

impl From<io::Error> for RedisError {
    fn from(error: io::Error) -> RedisError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RedisError::TimedOut,
            _ => RedisError::Io(error),
        }
    }
}

impl From<RespError> for RedisError {
    fn from(error: RespError) -> RedisError {
        RedisError::Protocol(error)
    }
}

/// One connection to Redis: a blocking socket, the bytes received but not yet decoded, and
/// the decoder, which keeps what it has read of a reply still arriving.
pub(super) struct Link {
    pub(super) stream: TcpStream,
    /// What has been read: `input[decoded..filled]` is what the decoder has not consumed,
    /// and `input[filled..]` is room for the next read. The room is zeroed when the buffer
    /// grows, not before every read: a read into a `Vec` grown by `resize` for it wrote
    /// [`READ_CHUNK`] zeros each time, 64 KiB per batch of replies or pushes.
    input: Vec<u8>,
    decoded: usize,
    filled: usize,
    pub(super) decoder: resp::Decoder,
}

impl Link {
    /// A link over a connected socket, nothing read yet.
    fn over(stream: TcpStream) -> Link {
        Link { stream, input: Vec::new(), decoded: 0, filled: 0, decoder: resp::Decoder::new(resp::Limits::default()) }
    }

    /// Connects, authenticates if the URL has a password, selects the database and measures
    /// Redis's clock against ours (`TIME`), so that [`super::Shared::estimated_now`] can speak
    /// Redis's time while Redis is away.
    pub(super) fn open(url: &RedisUrl, clock_offset_ms: &AtomicI64) -> Result<Link, RedisError> {
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, format!("{} resolves to no address", url.host));
        let mut connected = None;
        for addr in (url.host.as_str(), url.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(error) => last_error = error,
            }
        }
        let stream = connected.ok_or(RedisError::Io(last_error))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        let mut link = Link::over(stream);
        let mut commands = Vec::new();
        // AUTH first, in the same write: Redis answers the commands in order, and refuses
        // every command before it with NOAUTH. Plain AUTH, not HELLO 2 AUTH: `AUTH password`
        // is what Redis 5 knows, and `AUTH user password` what Redis 6's ACLs add ("Redis
        // versions prior of Redis 6 were only able to understand the one argument version",
        // https://redis.io/docs/latest/commands/auth/).
        let auth = url.password.as_ref().map(|password| match &url.user {
            Some(user) => encode_command(&mut commands, &[b"AUTH", user.as_bytes(), password.expose()]),
            None => encode_command(&mut commands, &[b"AUTH", password.expose()]),
        });
        let db = url.db.to_string();
        encode_command(&mut commands, &[b"SELECT", db.as_bytes()]);
        encode_command(&mut commands, &[b"TIME"]);
        let sent = now_ms();
        let mut replies = link.pipeline(&commands, 2 + usize::from(auth.is_some()))?;
        let received = now_ms();
        if auth.is_some() {
            if let Value::Error(error) = replies.remove(0) {
                return Err(RedisError::Auth(error));
            }
        }
        match &replies[0] {
            Value::Error(error) if error.starts_with("NOAUTH") => return Err(RedisError::Auth(error.clone())),
            Value::Error(error) => return Err(RedisError::Reply(error.clone())),
            _ => {}
        }
        // TIME answers two bulk strings: Unix time in seconds, and microseconds.
        let number = |v: &Value| v.as_str().and_then(|s| s.parse::<i64>().ok());
        if let Some([seconds, micros]) = replies[1].as_array() {
            if let (Some(seconds), Some(micros)) = (number(seconds), number(micros)) {
                let redis_ms = seconds * 1000 + micros / 1000;
                clock_offset_ms.store(redis_ms - (sent + received) / 2, Ordering::Relaxed);
            }
        }
        Ok(link)
    }

    /// Sends `commands` (already encoded) in one write and reads `replies` replies. Errors
    /// from Redis come back as [`Value::Error`] values, in place.
    pub(super) fn pipeline(&mut self, commands: &[u8], replies: usize) -> Result<Vec<Value>, RedisError> {
        self.stream.write_all(commands)?;
        (0..replies).map(|_| self.receive()).collect()
    }

    /// One command, one reply; a Redis error is an `Err`.
    pub(super) fn call(&mut self, args: &[&[u8]]) -> Result<Value, RedisError> {
        let mut command = Vec::new();
        encode_command(&mut command, args);
        match self.pipeline(&command, 1)?.pop() {
            Some(Value::Error(message)) => Err(RedisError::Reply(message)),
            Some(value) => Ok(value),
            None => Err(RedisError::Unexpected("no reply")),
        }
    }

    /// The next value Redis sends, reading as much as it takes. The decoder resumes where it
    /// stopped, so each byte of a long reply is read once whatever the number of reads (and
    /// a read that times out, on the subscription's tick, loses nothing of a reply begun).
    pub(super) fn receive(&mut self) -> Result<Value, RedisError> {
        loop {
            let (used, value) = self.decoder.decode(&self.input[self.decoded..self.filled])?;
            self.decoded += used;
            if let Some(value) = value {
                if self.decoded == self.filled {
                    (self.decoded, self.filled) = (0, 0);
                }
                return Ok(value);
            }
            // What is left is an unfinished line or bulk string: move it to the front.
            self.input.copy_within(self.decoded..self.filled, 0);
            self.filled -= self.decoded;
            self.decoded = 0;
            if self.decoder.consumed_of_value() + self.filled > MAX_REPLY_BYTES {
                return Err(RedisError::ReplyTooLarge);
            }
            if self.input.len() < self.filled + READ_CHUNK {
                self.input.resize(self.filled + READ_CHUNK, 0);
            }
            match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Err(RedisError::Closed),
                Ok(read) => self.filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Whether Redis has closed this idle connection (or sent something nobody asked for,
    /// which leaves it out of step): a non-blocking peek, before a command is sent on it.
    pub(super) fn closed_by_peer(&self) -> bool {
        if self.decoded < self.filled || self.decoder.is_mid_value() || self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let closed = match self.stream.peek(&mut byte) {
            // EOF, or unsolicited bytes.
            Ok(_) => true,
            Err(error) => error.kind() != io::ErrorKind::WouldBlock,
        };
        self.stream.set_nonblocking(false).is_err() || closed
    }
}

/// Capped exponential backoff between reconnection attempts.
pub(super) struct Backoff {
    pub(super) next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }

    /// The wait before the next attempt; each call doubles the one after, up to the cap.
    pub(super) fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(BACKOFF_MAX);
        wait
    }

    pub(super) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A link, and the socket at Redis's end of it.
    fn linked() -> (Link, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (redis, _) = listener.accept().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (Link::over(ours), redis)
    }

    fn bulk(text: &str) -> Value {
        Value::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn replies_that_share_a_read_or_are_cut_between_reads_come_out_whole_and_in_order() {
        let (mut link, mut redis) = linked();
        redis.write_all(b"+OK\r\n:7\r\n$5\r\nhel").unwrap();
        assert_eq!(link.receive().unwrap(), Value::Simple("OK".into()));
        assert_eq!(link.receive().unwrap(), Value::Integer(7));
        redis.write_all(b"lo\r\n$2\r\nhi\r\n").unwrap();
        assert_eq!(link.receive().unwrap(), bulk("hello"));
        assert_eq!(link.receive().unwrap(), bulk("hi"));
        drop(redis);
        assert!(matches!(link.receive(), Err(RedisError::Closed)));
    }

    #[test]
    fn a_reply_longer_than_a_read_comes_out_whole() {
        let (mut link, mut redis) = linked();
        let text = "x".repeat(3 * READ_CHUNK + 17);
        let writer = thread::spawn(move || {
            let reply = format!("${}\r\n{text}\r\n+NEXT\r\n", text.len());
            for piece in reply.as_bytes().chunks(10_000) {
                redis.write_all(piece).unwrap();
            }
            redis
        });
        let Value::Bulk(Some(bytes)) = link.receive().unwrap() else { panic!("a bulk string") };
        assert!(bytes.len() == 3 * READ_CHUNK + 17 && bytes.iter().all(|&b| b == b'x'));
        assert_eq!(link.receive().unwrap(), Value::Simple("NEXT".into()));
        drop(writer.join());
    }

    #[test]
    fn the_room_for_reads_is_kept_from_one_read_to_the_next() {
        let (mut link, mut redis) = linked();
        for i in 0..50 {
            redis.write_all(format!(":{i}\r\n").as_bytes()).unwrap();
            assert_eq!(link.receive().unwrap(), Value::Integer(i));
            // Emptied by decoding, not shrunk: the next read goes into the same zeroed room.
            assert_eq!((link.input.len(), link.filled), (READ_CHUNK, 0));
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..8).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next(), BACKOFF_MIN);
    }
}
