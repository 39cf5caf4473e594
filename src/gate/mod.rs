//! The security boundary: one gate that every request passes before it reaches its route.
//!
//! A check called from each handler is how a new route misses it; so the checks run here, in
//! one order, from [`crate::app::App::handle`], before any route-specific code:
//!
//! | step | refuses with | where |
//! |---|---|---|
//! | 1. where does the request come from? | 403, no CORS fields | [`origin::classify`] |
//! | 2. `OPTIONS`: a CORS preflight (no credentials yet) | (204) | [`origin::preflight`] |
//! | 3. which token, if any, did it present? | 400 (two tokens) | [`presented_token`] |
//! | 4. does the token grant this channel? | 401 invalid, 403 not granted | [`Gate::authorize`] |
//! | 5. is this address publishing too fast? | 429 with `Retry-After` | [`Gate::take_publish`] |
//!
//! The connection count per address is checked even earlier, by the accept loop
//! ([`rate::ConnectionsPerAddress`]), before a byte is read.
//!
//! Two kinds of token, both presented as `Authorization: Bearer T` (RFC 6750 §2.1) or as
//! `?token=T` (or `?access_token=T`, RFC 6750 §2.3; browsers cannot set headers on
//! `EventSource` or `WebSocket`):
//!
//! - `--publish-token`: a shared secret that lets its holder publish to any channel, by POST
//!   or by WebSocket text frame. It grants nothing else.
//! - `--token-secret`: signed tokens ([`crate::token`], HS256 JWT) naming the channels their
//!   holder may subscribe to (`channels`) and publish to (`publish`), until `exp`. With a secret
//!   set, every subscription needs one, except to channels `--public-channel` opens to anyone.
//!
//! With neither, the server is open: anyone may subscribe and publish (the demo's default).
//! A WebSocket is granted publishing or not at its handshake: without the right it is
//! receive-only, and a text frame from it closes it with 1008.

#![forbid(unsafe_code)]

pub mod origin;
pub mod rate;

use std::net::IpAddr;

use crate::config::Config;
use crate::crypto::hmac::constant_time_eq;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::stats::Refusal as RefusalReason;
use crate::time::Instant;
use crate::token::{self, ChannelPattern, Claims};
use rate::PublishRate;

/// The query parameters a token may come in (RFC 6750 §2.3 names `access_token`; `token` is
/// the shorter one browsers' pages use). One list, so that what the access log redacts
/// ([`loggable_target`]) is exactly what the gate reads.
pub const TOKEN_PARAMETERS: [&str; 2] = ["token", "access_token"];

/// What a request asks to do, as far as credentials are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// Nothing a token guards (`/`, `/echo`, `/stats`, `/metrics`, `/healthz`, `/readyz`). A token
    /// presented there is still read and, with `--token-secret`, verified by
    /// [`Gate::authorize`]: two tokens are 400 and an invalid one 401 there too.
    Open,
    /// Follow a channel (`/poll`, `/sse`, `/ws`); a WebSocket may also publish if granted.
    Subscribe(&'a str),
    /// Publish to a channel (`POST /publish`).
    Publish(&'a str),
}

/// What a request that passed the gate may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// May publish to the channel (a WebSocket's text frames).
    pub may_publish: bool,
    /// When the token that granted this expires (Unix seconds): an open stream ends then.
    pub expires: Option<u64>,
    /// The token's `sub`, for `/stats`.
    pub subject: Option<String>,
}

/// A request the gate turned away: the status, the reason counted in `/metrics`, and the
/// header fields that explain it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub response: Response,
}

impl Refusal {
    fn new(reason: RefusalReason, status: u16, message: &str) -> Refusal {
        Refusal { reason, response: Response::text(status, message) }
    }

    /// The same with a `WWW-Authenticate` challenge (RFC 6750 §3): `Bearer realm="realtime"`
    /// and, when the request's token is the trouble, `error` and `error_description` saying
    /// how. The values are our own constants: none holds a quote or a backslash.
    fn challenging(mut self, params: &[(&str, &str)]) -> Refusal {
        let mut challenge = String::from("Bearer realm=\"realtime\"");
        for (name, value) in params {
            challenge.push_str(&format!(", {name}=\"{value}\""));
        }
        self.response.headers.push(("WWW-Authenticate", challenge));
        self
    }

    /// RFC 6750 §3: a 401 carries a `Bearer` challenge. "If the request lacks any
    /// authentication information ... the resource server SHOULD NOT include an error code";
    /// a token that was presented and failed is `invalid_token` (§3.1).
    fn unauthorized(error: Option<&str>) -> Refusal {
        let message = error.unwrap_or("this needs a token: Authorization: Bearer <token> or ?token=<token>");
        // RFC 9110 §11.6.1: a 401 "MUST send a WWW-Authenticate header field".
        let refusal = Refusal::new(RefusalReason::Token, 401, message);
        match error {
            None => refusal.challenging(&[]),
            Some(why) => refusal.challenging(&[("error", "invalid_token"), ("error_description", why)]),
        }
    }

    /// RFC 6750 §3.1: `insufficient_scope`, "The request requires higher privileges than
    /// provided by the access token. The resource server SHOULD respond with the HTTP 403".
    fn forbidden(message: &str) -> Refusal {
        Refusal::new(RefusalReason::Forbidden, 403, message).challenging(&[("error", "insufficient_scope")])
    }
}

/// The checks and the state they keep (the publish-rate buckets).
pub struct Gate {
    publish_token: Option<String>,
    token_secret: Option<Vec<u8>>,
    public_channels: Vec<ChannelPattern>,
    publish_rate: Option<PublishRate>,
}

impl Gate {
    pub fn new(config: &Config) -> Gate {
        Gate {
            publish_token: config.publish_token.clone(),
            token_secret: config.token_secret.as_ref().map(|secret| secret.bytes().to_vec()),
            public_channels: config.public_channels.clone(),
            publish_rate: config.publish_rate.map(PublishRate::new),
        }
    }

    /// Steps 3 and 4: what the request's token, if any, lets it do with `access`.
    pub fn authorize(&self, request: &Request<'_>, access: Access<'_>, now_unix_secs: u64) -> Result<Grant, Refusal> {
        let presented = presented_token(request)?;
        let is_publish_token = match (&self.publish_token, &presented) {
            (Some(expected), Some(given)) => constant_time_eq(given.as_bytes(), expected.as_bytes()),
            _ => false,
        };
        let claims = match (&self.token_secret, &presented) {
            (Some(secret), Some(given)) if !is_publish_token => Some(
                token::verify(given, secret, now_unix_secs)
                    .map_err(|error| Refusal::unauthorized(Some(error.message())))?,
            ),
            _ => None,
        };
        // Nothing configured: the server is open to everyone.
        let open = self.publish_token.is_none() && self.token_secret.is_none();
        let may_publish =
            |channel: &str| open || is_publish_token || claims.as_ref().is_some_and(|c| c.may_publish(channel));
        let grant = |may_publish: bool, claims: &Option<Claims>| Grant {
            may_publish,
            expires: claims.as_ref().map(|c| c.exp),
            subject: claims.as_ref().and_then(|c| c.sub.clone()),
        };
        match access {
            Access::Open => Ok(Grant::default()),
            Access::Publish(channel) if may_publish(channel) => Ok(grant(true, &claims)),
            Access::Publish(_) => Err(match (&presented, &claims) {
                (None, _) => Refusal::unauthorized(None),
                // A valid signed token that does not name the channel.
                (Some(_), Some(_)) => Refusal::forbidden("this token does not grant publishing to this channel"),
                // Without a secret, any token but the publish token is simply wrong.
                (Some(_), None) if self.token_secret.is_none() => Refusal::unauthorized(Some("wrong publish token")),
                (Some(_), None) => Refusal::forbidden("this token does not grant publishing to this channel"),
            }),
            Access::Subscribe(channel) => {
                let may_subscribe = self.token_secret.is_none()
                    || token::any_matches(&self.public_channels, channel)
                    || claims.as_ref().is_some_and(|c| c.may_subscribe(channel));
                if may_subscribe {
                    Ok(grant(may_publish(channel), &claims))
                } else if presented.is_none() {
                    Err(Refusal::unauthorized(None))
                } else {
                    Err(Refusal::forbidden("this token does not grant subscribing to this channel"))
                }
            }
        }
    }

    /// Step 5: one publish from `address`, if `--publish-rate` allows it now.
    pub fn take_publish(&self, address: IpAddr, now: Instant) -> Result<(), Refusal> {
        let Some(rate) = &self.publish_rate else { return Ok(()) };
        rate.take(address, now).map_err(|wait| {
            // RFC 6585 §4: 429 "indicates that the user has sent too many requests in a given
            // amount of time"; "The response representations SHOULD include details explaining
            // the condition, and MAY include a Retry-After header".
            let mut refusal = Refusal::new(RefusalReason::Rate, 429, "publishing too fast; see Retry-After");
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            refusal.response.headers.push(("Retry-After", seconds.max(1).to_string()));
            refusal
        })
    }
}

/// What a log may show of a request's target: the path, and the query with the value of every
/// token parameter ([`TOKEN_PARAMETERS`], however its name is encoded) replaced by `REDACTED`.
/// RFC 6750 §5.3: "Bearer tokens SHOULD NOT be passed in page URLs"; since browsers must, the
/// server at least keeps them out of its logs. (The `Authorization` header is never logged.)
pub fn loggable_target(request: &Request<'_>) -> String {
    match request.query() {
        None => request.path().to_string(),
        Some(query) => {
            format!("{}?{}", request.path(), crate::http::redact_query(query, &TOKEN_PARAMETERS, "REDACTED"))
        }
    }
}

/// Step 3: the token a request presents, from `Authorization: Bearer T` (RFC 6750 §2.1; the
/// scheme is case-insensitive, RFC 9110 §11.1) or the query: `?token=T`, or `?access_token=T`,
/// the name RFC 6750 §2.3 gives it. RFC 6750 §2: "Clients
/// MUST NOT use more than one method to transmit the token in each request", so both at once
/// is 400 (`invalid_request`, §3.1). Another `Authorization` scheme (`Basic` for a proxy in front)
/// is not ours and counts as no token.
pub fn presented_token(request: &Request<'_>) -> Result<Option<String>, Refusal> {
    let invalid =
        |message: &str| Refusal::new(RefusalReason::Token, 400, message).challenging(&[("error", "invalid_request")]);
    let header = match request.header("authorization") {
        None => None,
        Some(value) => {
            let text = std::str::from_utf8(value).map_err(|_| invalid("malformed Authorization header"))?;
            match text.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim().to_string()),
                // Another scheme (a proxy's `Basic`, say) is not for us: no token.
                _ => None,
            }
        }
    };
    let query =
        |name: &str| crate::http::query_param(request.query(), name).map_err(|_| invalid("malformed token parameter"));
    let [token, access_token] = TOKEN_PARAMETERS;
    let presented: Vec<String> = [header, query(token)?, query(access_token)?].into_iter().flatten().collect();
    match &presented[..] {
        [] => Ok(None),
        [token] => Ok(Some(token.clone()).filter(|t| !t.is_empty())),
        _ => Err(invalid("a token in more than one place (Authorization, ?token=, ?access_token=)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::grammar::Parsed;
    use crate::http::request::parse_request;

    fn target(head: &str) -> String {
        match parse_request(head.as_bytes(), &Default::default()) {
            Ok(Parsed::Complete { value, .. }) => loggable_target(&value),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc6750_5_3_a_loggable_target_keeps_the_path_and_hides_every_token_parameter() {
        assert_eq!(target("GET /sse/news HTTP/1.1\r\nHost: x\r\n\r\n"), "/sse/news");
        assert_eq!(
            target("GET /sse/news?since=a-1&token=abc.def.ghi&access_token=x HTTP/1.1\r\nHost: x\r\n\r\n"),
            "/sse/news?since=a-1&token=REDACTED&access_token=REDACTED"
        );
        assert_eq!(
            target("GET http://x/poll/p?%74oken=abc HTTP/1.1\r\nHost: x\r\n\r\n"),
            "/poll/p?%74oken=REDACTED",
            "absolute-form: the path and query only, names decoded before they are compared"
        );
    }
}
