//! Signed channel tokens: which channels a client may subscribe to and publish on, as a JSON
//! Web Token (RFC 7519) signed with HMAC-SHA-256 ("HS256", RFC 7518 §3.2) in the JWS Compact
//! Serialization (RFC 7515 §7.1).
//!
//! # Theory of operation
//!
//! The server and whoever issues tokens (the `realtime token` command, or an application
//! backend) share one secret. A token is three base64url segments joined by dots:
//!
//! ```text
//! eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 . eyJleHAiOjE3MDAwMDM2MDAsImNoYW5uZWxzIjpbIm5ld3MiXX0 . <43 characters>
//!  {"alg":"HS256","typ":"JWT"}             {"exp":1700003600,"channels":["news"]}                 HMAC-SHA-256(secret, first two segments and the dot)
//! ```
//!
//! The claims say what the bearer may do: `channels` lists the channels it may subscribe to,
//! `publish` the channels it may publish on (each a [`ChannelPattern`]: a name, or a prefix
//! ending in `*`), `exp` when the token stops working, and `sub`, optionally, whom it was
//! issued to. Nobody without the secret can produce a valid signature, so a client cannot
//! grant itself a channel, and the server needs no session store: the token carries the
//! rights, the signature vouches for them.
//!
//! # How [`verify`] checks a token, step by step
//!
//! The order follows RFC 7515 §5.2 and RFC 7519 §7.2, with one rule above them all (RFC 8725
//! §3.1): the *server* decides the algorithm, never the token. A token whose header says
//! `"alg":"none"` asks to be trusted unsigned; one that says `HS512` or `RS256` asks to be
//! checked some other way (the classic attack signs with HMAC using a public key as the
//! secret). This module knows exactly one algorithm and refuses every other name.
//!
//! 1. Length: at most [`MAX_TOKEN_BYTES`], before any work is spent on it.
//! 2. Shape: exactly three segments, each base64url without padding, whitespace or any
//!    other character (RFC 7515 §2, §7.1), all three decoded.
//! 3. Header: a JSON object with unique names, `"alg":"HS256"` exactly, and no `crit`
//!    (no extension is understood here, RFC 7515 §4.1.11). Other header parameters
//!    (`typ`, `kid`, `jku`, `jwk`, ...) are ignored: the key is configured, never looked up
//!    or fetched from what the token says.
//! 4. Signature: HMAC-SHA-256 of the signing input (the first two segments and the dot, as
//!    sent), compared in constant time ([`crate::crypto::hmac::constant_time_eq`]). The
//!    payload's bytes are not parsed before this passes.
//! 5. Claims: a JSON object with unique names; `exp` required, `nbf` honoured, `aud`
//!    refused, `sub`, `channels` and `publish` read; every other claim ignored (RFC 7519 §4).
//! 6. Time: `now < exp` and `now >= nbf`, with no leeway. The caller passes `now`: this module
//!    never reads a clock, so every rule is a plain function of its inputs and is tested as one.
//!
//! Every failure is a [`TokenError`] whose [`TokenError::message`] is one line for a 401 body.
//!
//! # Where tokens travel
//!
//! A token is a bearer token (RFC 6750): whoever holds it may use it, so it must travel over
//! TLS and live briefly. It goes in `Authorization: Bearer <token>` (RFC 6750 §2.1) where the
//! client can set headers, and in the query (`?token=`, or RFC 6750 §2.3's `access_token`) where it cannot:
//! a browser's `EventSource` and `WebSocket` send no custom headers. Both forms fit: a token is
//! made only of `A-Z a-z 0-9 - _ .`, which RFC 6750's `b64token` allows and which a URL carries
//! without percent-encoding.
//!
//! # Issuing tokens
//!
//! [`sign`] writes a token; `realtime token` ([`parse_token_args`], [`TokenRequest::issue`])
//! prints one from the command line. The limits ([`MAX_PATTERNS`], [`MAX_SUBJECT_BYTES`])
//! are chosen so that any claims that verify sign again to a token within [`MAX_TOKEN_BYTES`].

#![forbid(unsafe_code)]

use std::fmt;
use std::fmt::Write as _;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::args::Args;
use crate::broker::{is_valid_channel_name, MAX_CHANNEL_NAME_BYTES};
use crate::crypto::hmac::{constant_time_eq, hmac_sha256};
use crate::json::{self, Value};

/// RFC 7518 §3.2: "A key of the same size as the hash output (256 bits) or larger MUST be used
/// with this algorithm."
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest token [`verify`] reads. Tokens travel in an `Authorization` header and in a
/// query string (RFC 6750 §2.1, §2.3), where the request target is capped at
/// [`crate::http::request::MAX_TARGET_BYTES`] (8 KiB) and many proxies cap a URL or a header
/// line near 8 KiB too. Half of that leaves room for the path and the other parameters; 4 KiB
/// is also what browsers keep per cookie (RFC 6265 §6.1). Our own largest claims sign to under
/// 3.8 KB (tested).
pub const MAX_TOKEN_BYTES: usize = 4096;

// A token must fit in a request target beside its path, or the limit above means nothing.
const _: () = assert!(MAX_TOKEN_BYTES < crate::http::request::MAX_TARGET_BYTES);

/// The most patterns `channels` or `publish` may list. Every request carries the token, and
/// [`any_matches`] tries the patterns one by one; a client that follows many channels should
/// be given a prefix (`user.42.*`) instead. 16 of the longest patterns in each list still sign
/// within [`MAX_TOKEN_BYTES`].
pub const MAX_PATTERNS: usize = 16;

/// The longest `sub` (subject) accepted. A subject names a user or a client, and ends up in
/// log lines; 256 bytes holds any reasonable identifier, an email address or a URI, and keeps
/// the largest claims within [`MAX_TOKEN_BYTES`].
pub const MAX_SUBJECT_BYTES: usize = 256;

/// The latest NumericDate (RFC 7519 §2: seconds since the epoch) accepted: 2^53 - 1. The JSON
/// reader holds numbers as `f64` ([`crate::json::Value::as_u64`]), which are exact integers up
/// to 2^53; past that, two different dates could read as the same one.
pub const MAX_NUMERIC_DATE: u64 = (1 << 53) - 1;

/// How long a token from `realtime token` lives unless `--ttl` says otherwise: an hour, the
/// longest RFC 6750 §5.3 recommends ("Token servers SHOULD issue short-lived (one hour or less)
/// bearer tokens"). A client fetches a new one from its backend when it expires.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// The only header [`sign`] writes (RFC 7519 §5.1, `typ`; RFC 7518 §3.1, `alg`).
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The one algorithm this module knows (RFC 7518 §3.1: "HS256", HMAC using SHA-256).
const ALGORITHM: &str = "HS256";

/// A channel name (1-64 of A-Z a-z 0-9 _ . -) or a prefix of one ending in `*` ("user.42.*";
/// "*" alone: every channel).
///
/// A prefix pattern matches every channel name that starts with the prefix, the prefix itself
/// included when it is a name: `user.42.*` matches `user.42.inbox` and `user.42.`, not
/// `user.420` (the dot is part of the prefix). `*` may only end a pattern, and a pattern is at
/// most 64 characters, star included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPattern(String);

impl ChannelPattern {
    /// Parses a pattern; on error, a one-line reason.
    pub fn parse(text: &str) -> Result<ChannelPattern, String> {
        if text.is_empty() {
            return Err("empty channel pattern".into());
        }
        if text.len() > MAX_CHANNEL_NAME_BYTES {
            return Err(format!("channel pattern longer than {MAX_CHANNEL_NAME_BYTES} characters"));
        }
        let prefix = text.strip_suffix('*').unwrap_or(text);
        if prefix.contains('*') {
            return Err(format!("channel pattern {text:?}: '*' may only end a pattern"));
        }
        // The prefix is shorter than a whole name, so the channel grammar checks its characters.
        if !prefix.is_empty() && !is_valid_channel_name(prefix) {
            return Err(format!("channel pattern {text:?}: only A-Z a-z 0-9 _ . - and a final '*'"));
        }
        Ok(ChannelPattern(text.to_string()))
    }

    /// Whether this pattern grants `channel`. A string that is not a channel name is never
    /// granted, even by `*`.
    pub fn matches(&self, channel: &str) -> bool {
        if !is_valid_channel_name(channel) {
            return false;
        }
        match self.0.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => channel == self.0,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether any pattern grants `channel`.
pub fn any_matches(patterns: &[ChannelPattern], channel: &str) -> bool {
    patterns.iter().any(|pattern| pattern.matches(channel))
}

/// What a verified token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// When the token stops working: unix seconds (RFC 7519 §4.1.4). Required.
    pub exp: u64,
    /// Whom the token was issued to (RFC 7519 §4.1.2), for logs; grants nothing.
    pub sub: Option<String>,
    /// The channels the bearer may subscribe to (long poll, SSE, WebSocket).
    pub channels: Vec<ChannelPattern>,
    /// The channels the bearer may publish on.
    pub publish: Vec<ChannelPattern>,
}

impl Claims {
    /// Whether the bearer may follow `channel`.
    pub fn may_subscribe(&self, channel: &str) -> bool {
        any_matches(&self.channels, channel)
    }

    /// Whether the bearer may publish on `channel`.
    pub fn may_publish(&self, channel: &str) -> bool {
        any_matches(&self.publish, channel)
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a well-formed token of this profile; the text says what is wrong.
    Malformed(&'static str),
    /// The header names an algorithm other than HS256, or none.
    UnsupportedAlgorithm,
    /// The signature is not the HMAC of the token under this server's secret.
    BadSignature,
    /// The current time is at or after `exp`.
    Expired,
    /// The current time is before `nbf`.
    NotYetValid,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLong,
}

impl TokenError {
    /// One line for a 401 response body.
    pub fn message(&self) -> &'static str {
        match self {
            TokenError::Malformed(reason) => reason,
            TokenError::UnsupportedAlgorithm => "token algorithm is not HS256",
            TokenError::BadSignature => "token signature does not match",
            TokenError::Expired => "token has expired",
            TokenError::NotYetValid => "token is not valid yet (nbf)",
            TokenError::TooLong => "token is longer than 4096 bytes",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TokenError {}

/// Verifies a compact JWS and returns its claims. `now_unix_secs` is passed in: this module
/// never reads a clock.
pub fn verify(token: &str, secret: &[u8], now_unix_secs: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }

    // RFC 7515 §7.1: "BASE64URL(UTF8(JWS Protected Header)) || '.' || BASE64URL(JWS Payload)
    // || '.' || BASE64URL(JWS Signature)": exactly two dots.
    let mut segments = token.split('.');
    let (Some(header_segment), Some(payload_segment), Some(signature_segment), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(TokenError::Malformed("token is not three segments separated by '.'"));
    };

    // RFC 7515 §5.2 steps 2, 6 and 7: base64url-decode all three segments. Decoding the
    // payload is not yet reading it: it stays bytes until the signature has been checked.
    let header = decode_segment(header_segment)?;
    let payload = decode_segment(payload_segment)?;
    let signature = decode_segment(signature_segment)?;

    // RFC 7515 §5.2 steps 3-4: the header is "a completely valid JSON object".
    let header = json_object(&header, "token header is not a JSON object")?;
    // RFC 7515 §4: "The Header Parameter names within the JOSE Header MUST be unique; JWS
    // parsers MUST either reject JWSs with duplicate Header Parameter names or use a JSON
    // parser that returns only the lexically last duplicate member name". We reject.
    if has_duplicate_names(&header) {
        return Err(TokenError::Malformed("token header repeats a parameter name"));
    }
    // RFC 8725 §3.1: "Libraries MUST enable the caller to specify a supported set of
    // algorithms and MUST NOT use any other algorithms when performing cryptographic
    // operations." The set is {HS256}, compared exactly (RFC 7515 §4.1.1: case-sensitive).
    if header.get("alg").and_then(Value::as_str) != Some(ALGORITHM) {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    // RFC 7515 §5.2 step 5 and §4.1.11: "If any of the listed extension Header Parameters are
    // not understood and supported by the recipient, then the JWS is invalid." None is supported here, and
    // an empty list is itself forbidden, so any `crit` at all is refused.
    if header.get("crit").is_some() {
        return Err(TokenError::Malformed("token header has crit: no extension is supported"));
    }

    // RFC 7515 §5.2 step 8: validate the signature over the signing input exactly as sent.
    let signing_input = &token[..header_segment.len() + 1 + payload_segment.len()];
    let expected = hmac_sha256(secret, signing_input.as_bytes());
    // RFC 7518 §3.2: "The comparison of the computed HMAC value to the JWS Signature value
    // MUST be done in a constant-time manner to thwart timing attacks."
    if !constant_time_eq(&signature, &expected) {
        return Err(TokenError::BadSignature);
    }

    // Only now is the payload read. RFC 7519 §7.2 step 10: "Verify that the resulting octet
    // sequence is a UTF-8-encoded representation of a completely valid JSON object".
    let payload = json_object(&payload, "token payload is not a JSON object")?;
    // RFC 7519 §4: "The Claim Names within a JWT Claims Set MUST be unique; JWT parsers MUST
    // either reject JWTs with duplicate Claim Names or use a JSON parser that returns only the
    // lexically last duplicate member name". Our reader returns the first, so we reject.
    if has_duplicate_names(&payload) {
        return Err(TokenError::Malformed("token payload repeats a claim name"));
    }
    let (claims, not_before) = read_claims(&payload)?;

    // RFC 7519 §4.1.4: "The processing of the "exp" claim requires that the current date/time
    // MUST be before the expiration date/time listed in the "exp" claim."
    if now_unix_secs >= claims.exp {
        return Err(TokenError::Expired);
    }
    // RFC 7519 §4.1.5: "The processing of the "nbf" claim requires that the current date/time
    // MUST be after or equal to the not-before date/time listed in the "nbf" claim."
    if not_before.is_some_and(|nbf| now_unix_secs < nbf) {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Signs claims as a compact HS256 JWT (header `{"alg":"HS256","typ":"JWT"}`).
///
/// Empty lists and an absent `sub` are left out. The result verifies under the same secret
/// when the claims are within this module's limits ([`MAX_PATTERNS`], [`MAX_SUBJECT_BYTES`],
/// an `exp` of at most [`MAX_NUMERIC_DATE`]); `realtime token` keeps them there.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let mut payload = String::new();
    let _ = write!(payload, r#"{{"exp":{}"#, claims.exp);
    if let Some(sub) = &claims.sub {
        payload.push_str(r#","sub":"#);
        json::write_string(&mut payload, sub);
    }
    for (name, patterns) in [("channels", &claims.channels), ("publish", &claims.publish)] {
        if patterns.is_empty() {
            continue;
        }
        let _ = write!(payload, r#","{name}":["#);
        for (index, pattern) in patterns.iter().enumerate() {
            if index > 0 {
                payload.push(',');
            }
            json::write_string(&mut payload, pattern.as_str());
        }
        payload.push(']');
    }
    payload.push('}');

    // RFC 7515 §5.1 steps 2-6: encode the header and the payload, join them with a dot; that
    // is the signing input, and the signature's encoding follows another dot (§7.1).
    let mut token = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = hmac_sha256(secret, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// Checks that a secret is long enough to sign with (RFC 7518 §3.2); the reason on error. For
/// the server's configuration as much as for `realtime token`.
pub fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the token secret is {} bytes; HS256 needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2)",
            secret.len()
        ));
    }
    Ok(())
}

/// Checks a subject: 1 to [`MAX_SUBJECT_BYTES`] bytes and no control characters, which could
/// forge a line in a log that prints it. The reason names the claim (and the flag: `--sub`).
fn check_subject(sub: &str) -> Result<(), &'static str> {
    if sub.is_empty() || sub.len() > MAX_SUBJECT_BYTES {
        return Err("sub is empty or longer than 256 bytes");
    }
    if sub.chars().any(char::is_control) {
        return Err("sub contains a control character");
    }
    Ok(())
}

/// One segment, base64url-decoded.
fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    // RFC 7515 §2: base64url "with all trailing '=' characters omitted ... and without the
    // inclusion of any line breaks, whitespace, or other additional characters". The engine
    // refuses padding, any byte outside the alphabet, and non-zero unused trailing bits (so
    // each value has exactly one encoding).
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| TokenError::Malformed("token segment is not base64url without padding"))
}

/// Decoded bytes that must hold a JSON object: checked as UTF-8, parsed.
fn json_object(bytes: &[u8], not_an_object: &'static str) -> Result<Value, TokenError> {
    let text = std::str::from_utf8(bytes).map_err(|_| TokenError::Malformed(not_an_object))?;
    match json::parse(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(TokenError::Malformed(not_an_object)),
    }
}

/// Whether an object names a member twice.
fn has_duplicate_names(object: &Value) -> bool {
    let Value::Object(members) = object else { return false };
    let mut names: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
}

/// A NumericDate claim (RFC 7519 §2): this profile takes whole seconds from 0 to
/// [`MAX_NUMERIC_DATE`]. RFC 7519 allows fractions too; our issuers never write them, so
/// `1.5`, negative and huge numbers are refused rather than rounded.
fn numeric_date(value: &Value, refusal: &'static str) -> Result<u64, TokenError> {
    value.as_u64().filter(|&seconds| seconds <= MAX_NUMERIC_DATE).ok_or(TokenError::Malformed(refusal))
}

/// A list of patterns: absent is an empty list, anything else must be an array of at most
/// [`MAX_PATTERNS`] valid pattern strings.
fn pattern_claim(value: Option<&Value>, refusal: &'static str) -> Result<Vec<ChannelPattern>, TokenError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let items = value.as_array().filter(|items| items.len() <= MAX_PATTERNS).ok_or(TokenError::Malformed(refusal))?;
    items
        .iter()
        .map(|item| {
            item.as_str().and_then(|text| ChannelPattern::parse(text).ok()).ok_or(TokenError::Malformed(refusal))
        })
        .collect()
}

/// The claims this profile reads, and `nbf` if present; every other claim is ignored (RFC
/// 7519 §4: "all claims that are not understood by implementations MUST be ignored").
fn read_claims(payload: &Value) -> Result<(Claims, Option<u64>), TokenError> {
    // RFC 7519 §4.1.4 makes `exp` optional; a channel token without an end would be valid
    // forever, so this profile requires it.
    let exp = payload.get("exp").ok_or(TokenError::Malformed("token has no exp claim"))?;
    let exp = numeric_date(exp, "token exp is not a whole number of seconds")?;
    let not_before =
        payload.get("nbf").map(|nbf| numeric_date(nbf, "token nbf is not a whole number of seconds")).transpose()?;
    // RFC 7519 §4.1.3: "If the principal processing the claim does not identify itself with a
    // value in the "aud" claim when this claim is present, then the JWT MUST be rejected." This
    // server has no audience name, so a token meant for some audience is not meant for it.
    if payload.get("aud").is_some() {
        return Err(TokenError::Malformed("token has an aud claim, and this server is no audience"));
    }
    let sub = match payload.get("sub") {
        None => None,
        Some(value) => {
            // RFC 7519 §4.1.2: "The "sub" value is a case-sensitive string".
            let sub = value.as_str().ok_or(TokenError::Malformed("token sub is not a string"))?;
            check_subject(sub).map_err(TokenError::Malformed)?;
            Some(sub.to_string())
        }
    };
    let claims = Claims {
        exp,
        sub,
        channels: pattern_claim(payload.get("channels"), "token channels is not a list of up to 16 channel patterns")?,
        publish: pattern_claim(payload.get("publish"), "token publish is not a list of up to 16 channel patterns")?,
    };
    Ok((claims, not_before))
}

/// `realtime token --help`.
pub const TOKEN_USAGE: &str = "\
Usage: realtime token (--secret S | --secret-file PATH) [OPTIONS]

Prints a signed channel token (a JWT, HS256) and a newline. The server checks it
with the same secret.

  --secret S            the secret, at least 32 bytes (other users may see it in
                        the process list: prefer --secret-file)
  --secret-file PATH    read the secret from PATH; one trailing newline is dropped
  --sub NAME            whom the token is for, shown in logs (up to 256 bytes)
  --channels P,P,...    channels it may subscribe to: names, or prefixes ending
                        in * (user.42.*; * alone: every channel)          [none]
  --publish P,P,...     channels it may publish on, the same way          [none]
  --ttl SECS            seconds until it expires                          [3600]
";

/// What `realtime token ...` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenCommand {
    /// `--help`: print [`TOKEN_USAGE`].
    Help,
    /// Print a token.
    Sign(TokenRequest),
}

/// Where the secret comes from.
#[derive(PartialEq, Eq)]
pub enum SecretSource {
    /// `--secret S`, already checked with [`check_secret`].
    Inline(Vec<u8>),
    /// `--secret-file PATH`, read by [`TokenRequest::issue`].
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    /// Never prints the secret itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(secret) => write!(f, "Inline({} bytes)", secret.len()),
            SecretSource::File(path) => write!(f, "File({path:?})"),
        }
    }
}

/// A token to print: the secret and the claims, but for `exp`, which needs the clock.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub secret: SecretSource,
    pub sub: Option<String>,
    pub channels: Vec<ChannelPattern>,
    pub publish: Vec<ChannelPattern>,
    pub ttl_secs: u64,
}

impl TokenRequest {
    /// The token, `exp` being `now_unix_secs` plus the time to live; reads the secret file
    /// if there is one. On error, one line.
    pub fn issue(&self, now_unix_secs: u64) -> Result<String, String> {
        let secret = match &self.secret {
            SecretSource::Inline(secret) => secret.clone(),
            SecretSource::File(path) => {
                let contents =
                    std::fs::read(path).map_err(|error| format!("token: --secret-file {}: {error}", path.display()))?;
                let secret = strip_one_newline(contents);
                check_secret(&secret).map_err(|why| format!("token: --secret-file {}: {why}", path.display()))?;
                secret
            }
        };
        let exp = now_unix_secs
            .checked_add(self.ttl_secs)
            .filter(|&exp| exp <= MAX_NUMERIC_DATE)
            .ok_or("token: --ttl reaches past the latest date a token can carry")?;
        let claims =
            Claims { exp, sub: self.sub.clone(), channels: self.channels.clone(), publish: self.publish.clone() };
        let token = sign(&claims, &secret);
        // The limits on the parts keep every token short enough; this is the last guard.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("token: the token would be longer than {MAX_TOKEN_BYTES} bytes"));
        }
        Ok(token)
    }
}

/// A secret file's contents without one trailing `\n` or `\r\n`: what an editor or `echo`
/// adds is not part of the secret. Only one: a secret may end in other bytes.
fn strip_one_newline(mut contents: Vec<u8>) -> Vec<u8> {
    if contents.ends_with(b"\r\n") {
        contents.truncate(contents.len() - 2);
    } else if contents.ends_with(b"\n") {
        contents.truncate(contents.len() - 1);
    }
    contents
}

/// Parses `realtime token`'s arguments (after the word `token`). Errors are one line.
pub fn parse_token_args(args: &[String]) -> Result<TokenCommand, String> {
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        return Ok(TokenCommand::Help);
    }
    let (mut secret, mut sub, mut channels, mut publish, mut ttl_secs) = (None, None, None, None, None);
    let mut rest = Args::new(args);
    while let Some(flag) = rest.next_flag().map_err(|error| format!("token: {error}"))? {
        if !matches!(flag, "--secret" | "--secret-file" | "--sub" | "--channels" | "--publish" | "--ttl") {
            return Err(format!("token: unknown option {flag} (realtime token --help)"));
        }
        let value = rest.value().map_err(|error| format!("token: {error}"))?;
        match flag {
            "--secret" | "--secret-file" => {
                if secret.is_some() {
                    return Err("token: give one of --secret and --secret-file, once".into());
                }
                secret = Some(if flag == "--secret" {
                    check_secret(value.as_bytes()).map_err(|why| format!("token: --secret: {why}"))?;
                    SecretSource::Inline(value.as_bytes().to_vec())
                } else {
                    SecretSource::File(PathBuf::from(value))
                });
            }
            "--sub" => {
                check_subject(value).map_err(|why| format!("token: --{why}"))?;
                set_once(&mut sub, value.to_string(), flag)?;
            }
            "--channels" => set_once(&mut channels, pattern_list(flag, value)?, flag)?,
            "--publish" => set_once(&mut publish, pattern_list(flag, value)?, flag)?,
            _ => {
                let seconds = value.parse::<u64>().ok().filter(|&seconds| seconds > 0).ok_or_else(|| {
                    format!("token: --ttl: expected a positive whole number of seconds, got {value:?}")
                })?;
                set_once(&mut ttl_secs, seconds, flag)?;
            }
        }
    }
    let secret = secret.ok_or("token: give --secret S or --secret-file PATH (realtime token --help)")?;
    Ok(TokenCommand::Sign(TokenRequest {
        secret,
        sub,
        channels: channels.unwrap_or_default(),
        publish: publish.unwrap_or_default(),
        ttl_secs: ttl_secs.unwrap_or(DEFAULT_TTL_SECS),
    }))
}

/// Fills an option's slot, refusing a second value.
fn set_once<T>(slot: &mut Option<T>, value: T, flag: &str) -> Result<(), String> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(format!("token: {flag} given twice")),
    }
}

/// `P,P,...`: each a [`ChannelPattern`], at most [`MAX_PATTERNS`].
fn pattern_list(flag: &str, value: &str) -> Result<Vec<ChannelPattern>, String> {
    let patterns = value
        .split(',')
        .map(ChannelPattern::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| format!("token: {flag}: {why}"))?;
    if patterns.len() > MAX_PATTERNS {
        return Err(format!("token: {flag}: at most {MAX_PATTERNS} patterns (use a prefix: name.*)"));
    }
    Ok(patterns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7515 appendix A.1: the JWS, and its key (the JWK's `k`, base64url).
    const RFC7515_A1_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
        eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
        dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC7515_A1_KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const RFC7515_A1_EXP: u64 = 1_300_819_380;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_700_000_000;

    fn rfc7515_a1_key() -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(RFC7515_A1_KEY).unwrap()
    }

    fn patterns(list: &[&str]) -> Vec<ChannelPattern> {
        list.iter().map(|text| ChannelPattern::parse(text).unwrap()).collect()
    }

    fn claims() -> Claims {
        Claims {
            exp: NOW + 60,
            sub: Some("alice".into()),
            channels: patterns(&["user.42.*", "news"]),
            publish: patterns(&["chat"]),
        }
    }

    /// A token with this header and payload JSON, correctly signed with `SECRET`: so that a
    /// test of a header or claim rule reaches that rule, past the signature.
    fn signed(header: &str, payload: &str) -> String {
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(SECRET, signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    fn signed_payload(payload: &str) -> String {
        signed(HEADER_JSON, payload)
    }

    fn malformed(result: Result<Claims, TokenError>) -> bool {
        matches!(result, Err(TokenError::Malformed(_)))
    }

    #[test]
    fn rfc7515_appendix_a_1_example_verifies_and_its_other_claims_are_ignored() {
        // Its header is {"typ":"JWT",\r\n "alg":"HS256"}; its payload adds "iss" and
        // "http://example.com/is_root", which this profile ignores.
        let claims = verify(RFC7515_A1_TOKEN, &rfc7515_a1_key(), RFC7515_A1_EXP - 1).unwrap();
        assert_eq!(claims, Claims { exp: RFC7515_A1_EXP, sub: None, channels: vec![], publish: vec![] });
    }

    #[test]
    fn rfc7515_appendix_a_1_signature_is_the_hmac_of_the_signing_input() {
        let (signing_input, signature) = RFC7515_A1_TOKEN.rsplit_once('.').unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(hmac_sha256(&rfc7515_a1_key(), signing_input.as_bytes())), signature);
    }

    #[test]
    fn rfc7518_3_2_flipping_any_byte_of_the_signature_fails() {
        let (signing_input, signature) = RFC7515_A1_TOKEN.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        for index in 0..signature.len() {
            for bit in 0..8 {
                let mut tampered = signature.clone();
                tampered[index] ^= 1 << bit;
                let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&tampered));
                assert_eq!(verify(&token, &rfc7515_a1_key(), 0), Err(TokenError::BadSignature), "byte {index}");
            }
        }
    }

    #[test]
    fn rfc7518_3_2_a_truncated_or_extended_signature_fails() {
        let (signing_input, signature) = RFC7515_A1_TOKEN.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        for tampered in [&signature[..31], &[signature.as_slice(), &[0]].concat(), &[]] {
            let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tampered));
            assert_eq!(verify(&token, &rfc7515_a1_key(), 0), Err(TokenError::BadSignature));
        }
    }

    #[test]
    fn rfc7518_3_2_a_wrong_secret_fails() {
        let token = sign(&claims(), SECRET);
        assert_eq!(verify(&token, b"0123456789abcdef0123456789abcdeF", NOW), Err(TokenError::BadSignature));
        assert_eq!(verify(RFC7515_A1_TOKEN, SECRET, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn rfc7519_the_payload_is_covered_by_the_signature() {
        // Swap in another payload and keep the signature: granting oneself "*" must fail.
        let token = sign(&claims(), SECRET);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{},"channels":["*"]}}"#, NOW + 60));
        parts[1] = &forged;
        assert_eq!(verify(&parts.join("."), SECRET, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn rfc8725_3_1_alg_none_is_refused_even_with_an_empty_signature() {
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{},"channels":["*"]}}"#, NOW + 60))
        );
        assert_eq!(verify(&unsigned, SECRET, NOW), Err(TokenError::UnsupportedAlgorithm));
    }

    #[test]
    fn rfc8725_3_1_alg_hs512_is_refused_even_when_the_hs256_signature_is_right() {
        let payload = format!(r#"{{"exp":{}}}"#, NOW + 60);
        for header in [r#"{"alg":"HS512"}"#, r#"{"alg":"hs256"}"#, r#"{"alg":"RS256"}"#, r#"{"alg":"HS256 "}"#] {
            assert_eq!(
                verify(&signed(header, &payload), SECRET, NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{header}"
            );
        }
    }

    #[test]
    fn rfc7515_4_1_1_alg_missing_or_not_a_string_is_refused() {
        let payload = format!(r#"{{"exp":{}}}"#, NOW + 60);
        for header in [r#"{"typ":"JWT"}"#, r#"{"alg":null}"#, r#"{"alg":["HS256"]}"#, "{}"] {
            assert_eq!(
                verify(&signed(header, &payload), SECRET, NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{header}"
            );
        }
    }

    #[test]
    fn rfc7515_4_1_11_a_crit_header_parameter_is_refused() {
        let payload = format!(r#"{{"exp":{}}}"#, NOW + 60);
        for header in [r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, r#"{"alg":"HS256","crit":[]}"#] {
            assert!(malformed(verify(&signed(header, &payload), SECRET, NOW)), "{header}");
        }
    }

    #[test]
    fn rfc7515_4_other_header_parameters_are_ignored() {
        let header = r#"{"alg":"HS256","typ":"JWT","kid":"k1","jku":"https://attacker.example/keys"}"#;
        assert!(verify(&signed(header, &format!(r#"{{"exp":{}}}"#, NOW + 60)), SECRET, NOW).is_ok());
    }

    #[test]
    fn rfc7515_4_duplicate_header_parameter_names_are_refused() {
        let header = r#"{"alg":"HS256","alg":"none"}"#;
        assert!(malformed(verify(&signed(header, &format!(r#"{{"exp":{}}}"#, NOW + 60)), SECRET, NOW)));
    }

    #[test]
    fn rfc7519_4_duplicate_claim_names_are_refused() {
        let payload = format!(r#"{{"exp":{},"exp":{}}}"#, NOW - 1, NOW + 60);
        assert!(malformed(verify(&signed_payload(&payload), SECRET, NOW)));
    }

    #[test]
    fn rfc7515_5_2_the_header_must_be_a_json_object() {
        for header in ["[]", r#""HS256""#, "null", "{", r#"{"alg":"HS256"} x"#] {
            assert!(malformed(verify(&signed(header, &format!(r#"{{"exp":{}}}"#, NOW + 60)), SECRET, NOW)), "{header}");
        }
    }

    #[test]
    fn rfc7519_7_2_the_payload_must_be_a_json_object() {
        for payload in ["[]", r#""exp""#, "null", "1700000060", "{", ""] {
            assert!(malformed(verify(&signed_payload(payload), SECRET, NOW)), "{payload}");
        }
    }

    #[test]
    fn rfc7519_7_2_the_payload_must_be_utf8() {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER_JSON),
            URL_SAFE_NO_PAD.encode(b"{\"exp\":1,\"sub\":\"\xff\"}")
        );
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(SECRET, signing_input.as_bytes()));
        assert!(malformed(verify(&format!("{signing_input}.{signature}"), SECRET, 0)));
    }

    #[test]
    fn rfc7519_4_1_4_exp_is_required() {
        assert!(malformed(verify(&signed_payload(r#"{"sub":"alice"}"#), SECRET, NOW)));
    }

    #[test]
    fn rfc7519_4_1_4_expired_exactly_at_exp_and_valid_one_second_before() {
        let token = sign(&claims(), SECRET);
        let exp = claims().exp;
        assert_eq!(verify(&token, SECRET, exp - 1), Ok(claims()));
        assert_eq!(verify(&token, SECRET, exp), Err(TokenError::Expired));
        assert_eq!(verify(&token, SECRET, exp + 1), Err(TokenError::Expired));
        assert_eq!(verify(&token, SECRET, u64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn rfc7519_2_exp_must_be_a_whole_non_negative_number_of_seconds() {
        for exp in ["1.5", "-1", "1e400", "9007199254740992", "18446744073709551616", r#""1700000060""#, "null", "true"]
        {
            let token = signed_payload(&format!(r#"{{"exp":{exp}}}"#));
            assert!(malformed(verify(&token, SECRET, 0)), "exp {exp}");
        }
        // The largest accepted, and a whole number written with an exponent, are fine.
        assert_eq!(
            verify(&signed_payload(r#"{"exp":9007199254740991}"#), SECRET, NOW).map(|c| c.exp),
            Ok(MAX_NUMERIC_DATE)
        );
        assert_eq!(verify(&signed_payload(r#"{"exp":2e9}"#), SECRET, NOW).map(|c| c.exp), Ok(2_000_000_000));
    }

    #[test]
    fn rfc7519_4_1_5_not_valid_before_nbf_and_valid_at_nbf() {
        let token = signed_payload(&format!(r#"{{"exp":{},"nbf":{}}}"#, NOW + 60, NOW));
        assert_eq!(verify(&token, SECRET, NOW - 1), Err(TokenError::NotYetValid));
        assert_eq!(verify(&token, SECRET, NOW).map(|c| c.exp), Ok(NOW + 60));
        assert!(malformed(verify(&signed_payload(&format!(r#"{{"exp":{},"nbf":-5}}"#, NOW + 60)), SECRET, NOW)));
    }

    #[test]
    fn rfc7519_4_1_3_a_token_for_some_audience_is_refused() {
        for aud in [r#""realtime""#, r#"["realtime"]"#] {
            let token = signed_payload(&format!(r#"{{"exp":{},"aud":{aud}}}"#, NOW + 60));
            assert!(malformed(verify(&token, SECRET, NOW)), "aud {aud}");
        }
    }

    #[test]
    fn rfc7519_4_1_2_sub_is_a_short_string_without_control_characters() {
        let with = |sub: &str| signed_payload(&format!(r#"{{"exp":{},"sub":{sub}}}"#, NOW + 60));
        assert_eq!(verify(&with(r#""user:42 ü""#), SECRET, NOW).unwrap().sub.as_deref(), Some("user:42 ü"));
        let longest = format!("\"{}\"", "s".repeat(MAX_SUBJECT_BYTES));
        assert!(verify(&with(&longest), SECRET, NOW).is_ok());
        let too_long = format!("\"{}\"", "s".repeat(MAX_SUBJECT_BYTES + 1));
        for sub in ["42", "null", r#""""#, r#""a\nb""#, r#""a\u0000""#, &too_long] {
            assert!(malformed(verify(&with(sub), SECRET, NOW)), "sub {sub}");
        }
    }

    #[test]
    fn channels_and_publish_absent_grant_nothing() {
        let claims = verify(&signed_payload(&format!(r#"{{"exp":{}}}"#, NOW + 60)), SECRET, NOW).unwrap();
        assert!(claims.channels.is_empty() && claims.publish.is_empty());
        assert!(!claims.may_subscribe("news") && !claims.may_publish("news"));
    }

    #[test]
    fn channels_and_publish_must_be_arrays_of_valid_pattern_strings() {
        for list in [r#""news""#, "null", "{}", "[1]", r#"["news",null]"#, r#"["a*b"]"#, r#"[""]"#, r#"[["news"]]"#] {
            for claim in ["channels", "publish"] {
                let token = signed_payload(&format!(r#"{{"exp":{},"{claim}":{list}}}"#, NOW + 60));
                assert!(malformed(verify(&token, SECRET, NOW)), "{claim} {list}");
            }
        }
    }

    #[test]
    fn channels_and_publish_lists_are_bounded_by_max_patterns() {
        let list = |n: usize| format!("[{}]", vec![r#""news""#; n].join(","));
        for claim in ["channels", "publish"] {
            let at_limit = signed_payload(&format!(r#"{{"exp":{},"{claim}":{}}}"#, NOW + 60, list(MAX_PATTERNS)));
            assert!(verify(&at_limit, SECRET, NOW).is_ok());
            let over = signed_payload(&format!(r#"{{"exp":{},"{claim}":{}}}"#, NOW + 60, list(MAX_PATTERNS + 1)));
            assert!(malformed(verify(&over, SECRET, NOW)), "{claim}");
        }
    }

    #[test]
    fn rfc7515_7_1_a_token_is_exactly_three_segments() {
        let token = sign(&claims(), SECRET);
        let (a, rest) = token.split_once('.').unwrap();
        for bad in [
            String::new(),
            a.to_string(),
            rest.to_string(),
            format!("{token}."),
            format!("{token}.{a}"),
            format!(".{token}"),
        ] {
            assert!(malformed(verify(&bad, SECRET, NOW)), "{bad}");
        }
    }

    #[test]
    fn rfc7515_2_padding_is_refused() {
        let token = sign(&claims(), SECRET);
        let parts: Vec<&str> = token.split('.').collect();
        for index in 0..3 {
            let mut padded: Vec<String> = parts.iter().map(|part| part.to_string()).collect();
            padded[index].push('=');
            assert!(malformed(verify(&padded.join("."), SECRET, NOW)), "segment {index}");
        }
        // Standard (padded) base64 of the A.1 signature, as some encoders write it.
        let (signing_input, signature) = RFC7515_A1_TOKEN.rsplit_once('.').unwrap();
        assert!(malformed(verify(&format!("{signing_input}.{signature}="), &rfc7515_a1_key(), 0)));
    }

    #[test]
    fn rfc7515_2_whitespace_and_line_breaks_are_refused() {
        let token = sign(&claims(), SECRET);
        let middle = token.len() / 2;
        for bad in [
            format!(" {token}"),
            format!("{token}\n"),
            format!("{token}\r\n"),
            format!("{} {}", &token[..middle], &token[middle..]),
            token.replacen('.', ". ", 1),
        ] {
            assert!(malformed(verify(&bad, SECRET, NOW)), "{bad:?}");
        }
    }

    #[test]
    fn rfc7515_2_only_the_base64url_alphabet_is_accepted() {
        // '+' and '/' are base64's, not base64url's.
        let token = sign(&claims(), SECRET);
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        for character in ["+", "/", "%", "!"] {
            let bad = format!("{signing_input}.{character}{}", &signature[1..]);
            assert!(malformed(verify(&bad, SECRET, NOW)), "{character}");
        }
    }

    #[test]
    fn a_signature_has_one_encoding_non_zero_trailing_bits_are_refused() {
        // 32 bytes are 43 characters; the last carries 2 bits and 4 zero bits. Setting those
        // gives a different text for the same bytes, which is refused, not accepted.
        let (signing_input, signature) = RFC7515_A1_TOKEN.rsplit_once('.').unwrap();
        assert!(signature.ends_with('k'));
        let other_text = format!("{signing_input}.{}l", &signature[..signature.len() - 1]);
        assert!(malformed(verify(&other_text, &rfc7515_a1_key(), 0)));
    }

    #[test]
    fn a_token_longer_than_max_token_bytes_is_refused_before_anything_else() {
        let payload = format!(r#"{{"exp":{},"pad":"{}"}}"#, NOW + 60, "x".repeat(MAX_TOKEN_BYTES));
        assert_eq!(verify(&signed_payload(&payload), SECRET, NOW), Err(TokenError::TooLong));
        assert_eq!(verify(&"x".repeat(MAX_TOKEN_BYTES + 1), SECRET, NOW), Err(TokenError::TooLong));
        assert_ne!(verify(&"x".repeat(MAX_TOKEN_BYTES), SECRET, NOW), Err(TokenError::TooLong));
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let token = sign(&claims(), SECRET);
        assert_eq!(verify(&token, SECRET, NOW), Ok(claims()));
        let bare = Claims { exp: NOW + 1, sub: None, channels: vec![], publish: vec![] };
        assert_eq!(verify(&sign(&bare, SECRET), SECRET, NOW), Ok(bare));
        let quoted = Claims { sub: Some(r#"a "quoted" \ name"#.into()), ..claims() };
        assert_eq!(verify(&sign(&quoted, SECRET), SECRET, NOW), Ok(quoted));
    }

    #[test]
    fn sign_writes_the_hs256_jwt_header_and_compact_claims() {
        let token = sign(&claims(), SECRET);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), HEADER_JSON.as_bytes());
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload, r#"{"exp":1700000060,"sub":"alice","channels":["user.42.*","news"],"publish":["chat"]}"#);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
    }

    #[test]
    fn the_largest_claims_within_the_limits_sign_within_max_token_bytes() {
        // Every pattern 64 characters, both lists full, and a subject whose every character
        // needs escaping.
        let longest: Vec<ChannelPattern> =
            (0..MAX_PATTERNS).map(|i| ChannelPattern::parse(&format!("{i:0>64}")).unwrap()).collect();
        let claims = Claims {
            exp: MAX_NUMERIC_DATE,
            sub: Some("\"".repeat(MAX_SUBJECT_BYTES)),
            channels: longest.clone(),
            publish: longest,
        };
        let token = sign(&claims, SECRET);
        assert!(token.len() <= MAX_TOKEN_BYTES, "{} bytes", token.len());
        assert_eq!(verify(&token, SECRET, NOW), Ok(claims));
    }

    #[test]
    fn token_error_messages_are_one_line() {
        let errors = [
            TokenError::Malformed("token is not three segments separated by '.'"),
            TokenError::UnsupportedAlgorithm,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::TooLong,
        ];
        for error in errors {
            assert!(!error.message().is_empty() && !error.message().contains('\n'));
            assert_eq!(error.to_string(), error.message());
        }
    }

    #[test]
    fn messages_name_the_limits_they_enforce() {
        assert!(TokenError::TooLong.message().contains(&MAX_TOKEN_BYTES.to_string()));
        assert!(check_subject("").unwrap_err().contains(&MAX_SUBJECT_BYTES.to_string()));
        let over = format!(r#"{{"exp":{},"channels":[{}]}}"#, NOW + 60, vec![r#""a""#; MAX_PATTERNS + 1].join(","));
        let Err(TokenError::Malformed(reason)) = verify(&signed_payload(&over), SECRET, NOW) else { panic!() };
        assert!(reason.contains(&MAX_PATTERNS.to_string()), "{reason}");
    }

    #[test]
    fn pattern_user_42_star_matches_names_under_that_prefix_only() {
        let pattern = ChannelPattern::parse("user.42.*").unwrap();
        for channel in ["user.42.a", "user.42.inbox", "user.42.x.y", "user.42."] {
            assert!(pattern.matches(channel), "{channel}");
        }
        for channel in ["user.420", "user.42", "user.4", "user.43.a", "xuser.42.a", "user.42.a b"] {
            assert!(!pattern.matches(channel), "{channel}");
        }
    }

    #[test]
    fn pattern_star_alone_matches_every_channel_name_and_nothing_else() {
        let every = ChannelPattern::parse("*").unwrap();
        for channel in ["a", "news", "user.42.inbox", &"x".repeat(MAX_CHANNEL_NAME_BYTES)] {
            assert!(every.matches(channel), "{channel}");
        }
        for channel in ["", "bad name", "slash/", &"x".repeat(MAX_CHANNEL_NAME_BYTES + 1)] {
            assert!(!every.matches(channel), "{channel:?}");
        }
    }

    #[test]
    fn pattern_without_a_star_matches_exactly_that_channel() {
        let news = ChannelPattern::parse("news").unwrap();
        assert!(news.matches("news"));
        assert!(!news.matches("news2") && !news.matches("new") && !news.matches("News"));
    }

    #[test]
    fn pattern_star_may_only_end_a_pattern() {
        for text in ["a*b", "*a", "**", "a**", "user.*.inbox"] {
            assert!(ChannelPattern::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn pattern_empty_is_invalid() {
        assert!(ChannelPattern::parse("").is_err());
    }

    #[test]
    fn pattern_is_at_most_64_characters_star_included() {
        assert!(ChannelPattern::parse(&"x".repeat(64)).is_ok());
        assert!(ChannelPattern::parse(&format!("{}*", "x".repeat(63))).is_ok());
        assert!(ChannelPattern::parse(&"x".repeat(65)).is_err());
        assert!(ChannelPattern::parse(&format!("{}*", "x".repeat(64))).is_err());
    }

    #[test]
    fn pattern_uses_the_channel_name_alphabet() {
        for text in ["a b", "a/b", "ünï", "a:b", "a%20", "a?*"] {
            assert!(ChannelPattern::parse(text).is_err(), "{text}");
        }
        assert_eq!(ChannelPattern::parse("A-Z_a.z-0.9*").unwrap().as_str(), "A-Z_a.z-0.9*");
    }

    #[test]
    fn may_subscribe_and_may_publish_read_their_own_lists() {
        let claims = claims();
        assert!(claims.may_subscribe("user.42.inbox") && claims.may_subscribe("news"));
        assert!(!claims.may_subscribe("chat") && !claims.may_subscribe("user.43.inbox"));
        assert!(claims.may_publish("chat"));
        assert!(!claims.may_publish("news") && !claims.may_publish("user.42.inbox"));
        assert!(any_matches(&claims.channels, "news") && !any_matches(&[], "news"));
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    fn request(list: &[&str]) -> TokenRequest {
        match parse_token_args(&args(list)) {
            Ok(TokenCommand::Sign(request)) => request,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    const SECRET_ARG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn token_args_defaults() {
        let request = request(&["--secret", SECRET_ARG]);
        assert_eq!(request.secret, SecretSource::Inline(SECRET_ARG.as_bytes().to_vec()));
        assert_eq!((request.sub, request.channels, request.publish), (None, vec![], vec![]));
        assert_eq!(request.ttl_secs, DEFAULT_TTL_SECS);
    }

    #[test]
    fn token_args_every_option() {
        let request = request(&[
            "--secret-file",
            "/run/secret",
            "--sub",
            "alice",
            "--channels",
            "user.42.*,news",
            "--publish",
            "chat",
            "--ttl",
            "60",
        ]);
        assert_eq!(request.secret, SecretSource::File("/run/secret".into()));
        assert_eq!(request.sub.as_deref(), Some("alice"));
        assert_eq!(request.channels, patterns(&["user.42.*", "news"]));
        assert_eq!(request.publish, patterns(&["chat"]));
        assert_eq!(request.ttl_secs, 60);
    }

    #[test]
    fn token_args_help() {
        assert_eq!(parse_token_args(&args(&["--help"])), Ok(TokenCommand::Help));
        assert_eq!(parse_token_args(&args(&["--secret", "short", "-h"])), Ok(TokenCommand::Help));
    }

    #[test]
    fn token_args_rfc7518_3_2_a_secret_shorter_than_32_bytes_is_refused() {
        let short = &SECRET_ARG[..MIN_SECRET_BYTES - 1];
        let error = parse_token_args(&args(&["--secret", short])).unwrap_err();
        assert!(error.contains("RFC 7518"), "{error}");
    }

    #[test]
    fn token_args_errors_are_one_line() {
        let cases: &[&[&str]] = &[
            &[],
            &["--sub", "alice"],
            &["--secret"],
            &["--frobnicate", "x"],
            &["--secret", SECRET_ARG, "--secret-file", "/x"],
            &["--secret", SECRET_ARG, "--channels", "a*b"],
            &["--secret", SECRET_ARG, "--channels", "news,"],
            &["--secret", SECRET_ARG, "--channels", ""],
            &["--secret", SECRET_ARG, "--publish", "bad name"],
            &["--secret", SECRET_ARG, "--ttl", "0"],
            &["--secret", SECRET_ARG, "--ttl", "-5"],
            &["--secret", SECRET_ARG, "--ttl", "1.5"],
            &["--secret", SECRET_ARG, "--sub", ""],
            &["--secret", SECRET_ARG, "--sub", "a\nb"],
            &["--secret", SECRET_ARG, "--sub", "a", "--sub", "b"],
            &["--secret", SECRET_ARG, "--ttl", "5", "--ttl", "6"],
        ];
        for case in cases {
            let error = parse_token_args(&args(case)).unwrap_err();
            assert!(error.starts_with("token: ") && !error.contains('\n'), "{case:?}: {error}");
        }
    }

    #[test]
    fn token_args_at_most_max_patterns_per_list() {
        let list = vec!["news"; MAX_PATTERNS].join(",");
        assert_eq!(request(&["--secret", SECRET_ARG, "--channels", &list]).channels.len(), MAX_PATTERNS);
        let over = vec!["news"; MAX_PATTERNS + 1].join(",");
        assert!(parse_token_args(&args(&["--secret", SECRET_ARG, "--publish", &over])).is_err());
    }

    #[test]
    fn the_debug_form_of_a_request_never_shows_the_secret() {
        let shown = format!("{:?}", request(&["--secret", SECRET_ARG]));
        assert!(!shown.contains(SECRET_ARG), "{shown}");
    }

    #[test]
    fn issue_signs_the_requested_claims_with_exp_now_plus_ttl() {
        let request =
            request(&["--secret", SECRET_ARG, "--sub", "alice", "--channels", "user.42.*,news", "--publish", "chat"]);
        let token = request.issue(NOW).unwrap();
        let claims = verify(&token, SECRET_ARG.as_bytes(), NOW).unwrap();
        assert_eq!(claims, Claims { exp: NOW + DEFAULT_TTL_SECS, ..self::claims() });
    }

    #[test]
    fn issue_refuses_an_exp_past_the_latest_numeric_date() {
        let request = request(&["--secret", SECRET_ARG, "--ttl", "10"]);
        assert!(request.issue(MAX_NUMERIC_DATE - 10).is_ok());
        assert!(request.issue(MAX_NUMERIC_DATE - 9).is_err());
        assert!(request.issue(u64::MAX).is_err());
    }

    #[test]
    fn issue_reads_the_secret_file_without_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("realtime-token-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in [("lf", "\n"), ("crlf", "\r\n"), ("none", "")] {
            let path = dir.join(name);
            std::fs::write(&path, format!("{SECRET_ARG}{contents}")).unwrap();
            let token = request(&["--secret-file", path.to_str().unwrap()]).issue(NOW).unwrap();
            assert!(verify(&token, SECRET_ARG.as_bytes(), NOW).is_ok(), "{name}");
        }
        // Only one newline goes: with two, the secret keeps the first.
        let path = dir.join("two");
        std::fs::write(&path, format!("{SECRET_ARG}\n\n")).unwrap();
        let token = request(&["--secret-file", path.to_str().unwrap()]).issue(NOW).unwrap();
        assert!(verify(&token, format!("{SECRET_ARG}\n").as_bytes(), NOW).is_ok());
        // A short secret in a file is refused like one on the command line.
        let path = dir.join("short");
        std::fs::write(&path, "short\n").unwrap();
        let error = request(&["--secret-file", path.to_str().unwrap()]).issue(NOW).unwrap_err();
        assert!(error.contains("RFC 7518") && !error.contains('\n'), "{error}");
        let missing = request(&["--secret-file", dir.join("missing").to_str().unwrap()]).issue(NOW).unwrap_err();
        assert!(missing.starts_with("token: --secret-file") && !missing.contains('\n'), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
