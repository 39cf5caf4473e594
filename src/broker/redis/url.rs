//! Where Redis is and who this node is to it: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`
//! for one Redis, `redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]` for a
//! cluster's seeds (`--broker`). Parsed strictly (RFC 3986 §3.2 for the authority); the
//! password is shown nowhere, not in errors, logs or `Debug`.

#![forbid(unsafe_code)]

use std::fmt;

use super::cluster::NodeAddr;

/// Redis's port when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;

/// The seed nodes of a Redis Cluster and who this node is to it:
/// `redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]`. Any one reachable seed
/// is enough: it answers `CLUSTER SLOTS` for all. There is no `/DB`: "Redis Cluster does not
/// support multiple databases like the standalone version of Redis. We only support database
/// 0" (the cluster spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    pub seeds: Vec<NodeAddr>,
    pub user: Option<String>,
    pub password: Option<Password>,
}

impl ClusterUrl {
    /// Parses strictly, with [`RedisUrl::parse`]'s rules for the user information and each
    /// host; the error never repeats the user information.
    pub fn parse(text: &str) -> Result<ClusterUrl, String> {
        const FORM: &str = "redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]";
        let Some(rest) = text.strip_prefix("redis-cluster://") else {
            return Err(format!("expected {FORM}"));
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(parse_userinfo(userinfo)?), rest),
            None => (None, rest),
        };
        let (user, password) = credentials.unzip();
        if rest.contains('/') {
            return Err("a Redis Cluster has only database 0: no /DB in redis-cluster://".into());
        }
        let mut seeds = Vec::new();
        for seed in rest.split(',') {
            let url = RedisUrl::parse(&format!("redis://{seed}"))?;
            seeds.push(NodeAddr { host: url.host, port: url.port });
        }
        Ok(ClusterUrl { seeds, user: user.flatten(), password })
    }

    /// How to reach one node of the cluster.
    pub fn node(&self, addr: &NodeAddr) -> RedisUrl {
        RedisUrl {
            host: addr.host.clone(),
            port: addr.port,
            db: 0,
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }
}

impl fmt::Display for ClusterUrl {
    /// As logs show it: the password is `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis-cluster://")?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.user.as_deref().unwrap_or_default())?;
        }
        let seeds: Vec<String> = self.seeds.iter().map(NodeAddr::to_string).collect();
        f.write_str(&seeds.join(","))
    }
}

/// Where the Redis server is and who this node is to it:
/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    /// A host name, an IPv4 address, or an IPv6 address (written in brackets in the URL).
    pub host: String,
    pub port: u16,
    /// The database holding the streams (`SELECT`); 0 unless the URL has a path.
    pub db: u32,
    /// The ACL user to authenticate as (Redis 6 and later); `None` with a password is the
    /// `default` user, which is what `requirepass` sets the password of.
    pub user: Option<String>,
    /// The password `AUTH` sends on every new connection; shown nowhere.
    pub password: Option<Password>,
}

/// A password for `AUTH`: sent to Redis, written nowhere else. `Debug` prints `***`, so a
/// configuration printed whole (`{:?}`) does not leak it either.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Password {
        Password(bytes.into())
    }

    /// The bytes, for the `AUTH` command alone.
    pub(super) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl RedisUrl {
    /// Parses `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` strictly; the error says what is
    /// wrong, and never repeats the user information (it may hold the password).
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let Some(rest) = text.strip_prefix("redis://") else {
            return Err(if text.starts_with("rediss://") {
                "TLS (rediss://) is not supported: run Redis on a private network or behind a TLS tunnel".into()
            } else if text.contains('@') {
                "expected memory or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]".into()
            } else {
                format!("expected memory or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], got '{text}'")
            });
        };
        // RFC 3986 §3.2.1: `userinfo "@"` opens the authority, and `@` cannot occur in the
        // userinfo except percent-encoded. Everything before the *last* `@` is taken as user
        // information, so that a password holding a `/` or `@` by mistake is refused as such,
        // not split into a host or database that an error message would then repeat.
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(parse_userinfo(userinfo)?), rest),
            None => (None, rest),
        };
        let (user, password) = credentials.unzip();
        let (authority, db) = match rest.split_once('/') {
            Some((authority, db)) => (authority, db),
            None => (rest, ""),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or("unclosed '[' in the Redis host")?;
                if host.is_empty() || !host.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                    return Err(format!("'{host}' is not an IPv6 address"));
                }
                let port = match after {
                    "" => None,
                    after => {
                        Some(after.strip_prefix(':').ok_or_else(|| format!("unexpected '{after}' after the host"))?)
                    }
                };
                (host, port)
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        {
            return Err(format!("'{host}' is not a host name or address"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return Err(format!("'{text}' is not a port number (1-65535)")),
            },
        };
        let db = match db {
            "" => 0,
            db if db.bytes().all(|b| b.is_ascii_digit()) => {
                db.parse().map_err(|_| format!("'{db}' is not a database number"))?
            }
            db => return Err(format!("'{db}' is not a database number")),
        };
        Ok(RedisUrl { host: host.to_string(), port, db, user: user.flatten(), password })
    }
}

/// The user information of a Redis URL, `[USER]:PASSWORD`, percent-decoded: the user (if
/// any) and the password. RFC 3986 §3.2.1 allows `unreserved / pct-encoded / sub-delims /
/// ":"` there; the first `:` separates the user from the password (the Redis URI scheme's
/// `redis://[[username]:password@]host`, <https://www.iana.org/assignments/uri-schemes/prov/redis>).
/// Errors name the rule broken, never the text.
fn parse_userinfo(userinfo: &str) -> Result<(Option<String>, Password), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%".contains(&b);
    if let Some(bad) = userinfo.bytes().find(|&b| !allowed(b)) {
        let shown =
            if bad.is_ascii_graphic() { format!("'{}'", bad as char) } else { "a space or non-ASCII byte".into() };
        return Err(format!(
            "the user or password in the Redis URL holds {shown}: percent-encode it (%{bad:02X}), as RFC 3986 asks"
        ));
    }
    let Some((user, password)) = userinfo.split_once(':') else {
        return Err(if userinfo.is_empty() {
            "nothing before the '@' of the Redis URL: give redis://:PASSWORD@HOST or no '@'".into()
        } else {
            "a Redis user needs a password: redis://USER:PASSWORD@HOST".into()
        });
    };
    let user = match percent_decode(user)? {
        user if user.is_empty() => None,
        user => Some(String::from_utf8(user).map_err(|_| "the Redis user is not UTF-8 once percent-decoded")?),
    };
    let password = percent_decode(password)?;
    if password.is_empty() {
        return Err("the password in the Redis URL is empty".into());
    }
    Ok((user, Password(password)))
}

/// `%XX` (two hex digits) as the byte it names (RFC 3986 §2.1); every other byte as it is.
fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
            let byte = hex.filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
            let byte = byte.and_then(|hex| u8::from_str_radix(hex, 16).ok());
            decoded.push(byte.ok_or("a '%' in the Redis URL's user or password is not followed by two hex digits")?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    Ok(decoded)
}

impl fmt::Display for RedisUrl {
    /// The URL as logs show it: the password is `***` (the user is not a secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.user.as_deref().unwrap_or_default())?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::link::RedisError;

    #[test]
    fn redis_urls_name_a_host_a_port_and_a_database() {
        let parse = |text| RedisUrl::parse(text);
        let url = |host: &str, port, db| RedisUrl { host: host.into(), port, db, user: None, password: None };
        assert_eq!(parse("redis://127.0.0.1:6380"), Ok(url("127.0.0.1", 6380, 0)));
        assert_eq!(parse("redis://cache.internal:7000/3"), Ok(url("cache.internal", 7000, 3)));
        assert_eq!(parse("redis://localhost"), Ok(url("localhost", 6379, 0)));
        assert_eq!(parse("redis://[::1]:6379/1"), Ok(url("::1", 6379, 1)));
        assert_eq!(parse("redis://localhost:6379/").unwrap().db, 0);
        assert_eq!(parse("redis://[::1]:6379/1").unwrap().to_string(), "redis://[::1]:6379/1");
        for bad in [
            "localhost:6379",
            "http://localhost:6379",
            "rediss://localhost:6379",
            "redis://",
            "redis://:6379",
            "redis://host:0",
            "redis://host:65536",
            "redis://host:+1",
            "redis://host:port",
            "redis://host:6379/x",
            "redis://host:6379/-1",
            "redis://ho st:6379",
            "redis://[::1:6379",
            "redis://host:6379?db=1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn redis_urls_may_carry_a_user_and_a_password_percent_decoded() {
        let parse = |text| RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let both = parse("redis://alice:s3cret@cache.internal:7000/2");
        assert_eq!((both.user.as_deref(), both.password), (Some("alice"), Some(Password::new("s3cret"))));
        assert_eq!((both.host.as_str(), both.port, both.db), ("cache.internal", 7000, 2));
        // `:password@`: the default user, what `requirepass` protects.
        let password_only = parse("redis://:s3cret@localhost");
        assert_eq!((password_only.user, password_only.password), (None, Some(Password::new("s3cret"))));
        assert_eq!((password_only.host.as_str(), password_only.port), ("localhost", DEFAULT_PORT));
        // RFC 3986 §2.1: reserved characters travel percent-encoded, `@` and `:` included;
        // only the first raw `:` separates user from password.
        let encoded = parse("redis://ali%63e%3A1:p%40ss%3Aw%2Frd%25:x@[::1]:6380/1");
        assert_eq!(encoded.user.as_deref(), Some("alice:1"));
        assert_eq!(encoded.password, Some(Password::new("p@ss:w/rd%:x")));
        assert_eq!((encoded.host.as_str(), encoded.port, encoded.db), ("::1", 6380, 1));
        // Sub-delimiters are allowed as they are; a password may be any bytes.
        assert_eq!(parse("redis://:a!$&'()*+,;=~-._b@h").password, Some(Password::new("a!$&'()*+,;=~-._b")));
        assert_eq!(parse("redis://:%FF%00@h").password, Some(Password::new([0xff, 0])));
    }

    #[test]
    fn cluster_urls_name_seed_nodes_and_credentials_but_no_database() {
        let node = |host: &str, port| NodeAddr { host: host.into(), port };
        let url = ClusterUrl::parse("redis-cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002").unwrap();
        assert_eq!(url.seeds, [node("10.0.0.1", 7000), node("10.0.0.2", DEFAULT_PORT), node("::1", 7002)]);
        assert_eq!((url.user.as_deref(), url.password.is_none()), (None, true));
        let secret = ClusterUrl::parse("redis-cluster://alice:s%40cret@h:7000").unwrap();
        assert_eq!((secret.user.as_deref(), &secret.password), (Some("alice"), &Some(Password::new("s@cret"))));
        assert_eq!(secret.to_string(), "redis-cluster://alice:***@h:7000");
        let one = secret.node(&node("h", 7001));
        assert_eq!((one.host.as_str(), one.port, one.db), ("h", 7001, 0));
        assert_eq!(one.password, Some(Password::new("s@cret")), "every node gets the credentials");
        for bad in [
            "redis-cluster://",
            "redis-cluster://h:7000/0",
            "redis-cluster://h:7000,",
            "redis-cluster://h:port",
            "redis-cluster://a b:1",
            "redis://h:7000",
        ] {
            assert!(ClusterUrl::parse(bad).is_err(), "{bad:?} parsed");
        }
        let error = ClusterUrl::parse("redis-cluster://u:p w@h:1").unwrap_err();
        assert!(!error.contains("p w"), "{error}");
    }

    #[test]
    fn malformed_user_information_is_refused_without_repeating_it() {
        // The secrets here are made of "zq" and "xj", which no error message holds.
        for bad in [
            "redis://@host",            // nothing before '@'
            "redis://:@host",           // empty password
            "redis://zqxj@host",        // a user without a password
            "redis://zqxj:@host",       // the same
            "redis://:zq@xj@host",      // '@' must be %40
            "redis://:zq/xj@host",      // '/' must be %2F
            "redis://:zq xj@host",      // no spaces
            "redis://:zq\u{e9}xj@host", // no raw non-ASCII
            "redis://:zqxj%4@host",     // '%' without two hex digits
            "redis://:zqxj%zz@host",    // the same
            "redis://%ff%fe:zqxj@host", // a user that is not UTF-8
            "redis://:zqxj@",           // no host
            "redis://:zqxj@host:port",  // no port
            "redis://:zqxj@host/db",    // no database number
            "redis//:zqxj@host",        // not a Redis URL
        ] {
            let error = RedisUrl::parse(bad).expect_err(bad);
            assert!(!error.contains("zq") && !error.contains("xj"), "{bad:?} repeated in: {error}");
        }
    }

    #[test]
    fn the_password_never_shows_in_display_or_debug() {
        let url = RedisUrl::parse("redis://alice:hunter2@cache:7000/3").unwrap();
        assert_eq!(url.to_string(), "redis://alice:***@cache:7000/3");
        assert_eq!(RedisUrl::parse("redis://:hunter2@[::1]").unwrap().to_string(), "redis://:***@[::1]:6379/0");
        let debug = format!("{url:?}");
        assert!(!debug.contains("hunter2") && debug.contains("***"), "{debug}");
        let error = RedisError::Auth("WRONGPASS invalid username-password pair or user is disabled.".into());
        assert!(error.to_string().starts_with("Redis refused the credentials in --broker: WRONGPASS"), "{error}");
        let error = RedisError::Auth("NOAUTH Authentication required.".into());
        assert!(error.to_string().contains("redis://:PASSWORD@HOST"), "{error}");
    }
}
