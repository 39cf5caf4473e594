//! Where a request comes from, and what a browser may read of the answer (RFC 6454, WHATWG
//! Fetch §3.2 "CORS protocol").
//!
//! A browser tags every cross-origin request with `Origin`. Some cross-origin requests are
//! sent without asking (a form POST, an `EventSource`, a `WebSocket`): the *server* must
//! refuse them, or any page on the web can publish with its visitors' network position and
//! cookies (CSRF; RFC 6455 §10.2 calls the WebSocket form cross-site hijacking). Others are
//! *preflighted*: the browser first asks with `OPTIONS` whether the real request may follow.
//! And whatever the server answers, the page may read it only if the answer names its origin
//! in `Access-Control-Allow-Origin`.
//!
//! So the policy has three outcomes ([`Origin`]): not a cross-origin request (no `Origin`,
//! or the server's own); an allowed cross-origin one (`--allowed-origin`); a foreign one,
//! refused with 403 before anything else happens. And one value, [`Cors`], carries what every
//! answer to the request must say so that an allowed page can read it, errors included.

#![forbid(unsafe_code)]

use crate::http::response::Response;

/// Where a request comes from, as far as the origin policy is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// No `Origin` (not a browser, or a same-origin request that does not send one), or an
    /// `Origin` naming this server's own host and port.
    Own,
    /// A cross-origin request from an origin `--allowed-origin` lists (or any, with `*`).
    Allowed(String),
    /// Any other origin: refused.
    Foreign,
}

/// Classifies a request's `Origin` against the `Host` it was sent to and the allow list.
pub fn classify(origin: Option<&[u8]>, host: Option<&str>, allowed: &[String]) -> Origin {
    let Some(origin) = origin else { return Origin::Own };
    let Ok(origin) = std::str::from_utf8(origin) else { return Origin::Foreign };
    let serialized = origin.trim_end_matches('/').to_ascii_lowercase();
    if is_own(&serialized, host) {
        return Origin::Own;
    }
    if allowed.iter().any(|a| a == "*" || *a == serialized) {
        // Echo the origin as the browser sent it: Fetch compares it byte for byte.
        return Origin::Allowed(origin.to_string());
    }
    Origin::Foreign
}

/// RFC 6454 §6.2: an origin is serialized as scheme "://" host [ ":" port ], the port left out
/// when it is the scheme's default. It is our own when host and port are the request's `Host`.
fn is_own(origin: &str, host: Option<&str>) -> bool {
    let Some((scheme, origin_host)) = origin.split_once("://") else { return false };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let Some(host) = host else { return false };
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    origin_host == host
}

/// The request headers a page may set on a preflighted request: the ones this server reads.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID";

/// Response headers beyond the CORS-safelisted ones that a page needs: how long to wait
/// after a 429, and why a token was refused.
pub const EXPOSE_HEADERS: &str = "Retry-After, WWW-Authenticate";

/// How long a browser may cache a preflight's answer, in seconds. Chromium caps it at 7200;
/// ten minutes keeps a changed `--allowed-origin` from lingering in browsers for long.
pub const PREFLIGHT_MAX_AGE: &str = "600";

/// The CORS fields every answer to one request carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cors {
    /// A route whose answer does not depend on `Origin` (the page, `/stats`, `/healthz`,
    /// `/readyz`).
    #[default]
    NotApplicable,
    /// A guarded route answering its own origin: only `Vary: Origin`, because the same URL
    /// answers differently to other origins and caches must not mix them (RFC 9110 §12.5.5).
    Vary,
    /// An allowed cross-origin request: the page may read the answer. A `Box<str>`, not a
    /// `String`: a parked long poll keeps its reply's CORS fields, and the capacity word
    /// would be 8 of its bytes (README, "What an idle connection costs").
    Allow(Box<str>),
}

impl Cors {
    pub fn for_origin(origin: &Origin) -> Cors {
        match origin {
            Origin::Allowed(origin) => Cors::Allow(origin.as_str().into()),
            Origin::Own | Origin::Foreign => Cors::Vary,
        }
    }

    /// The header fields to add to an answer (WHATWG Fetch §3.2.3).
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            Cors::NotApplicable => Vec::new(),
            Cors::Vary => vec![("Vary", "Origin")],
            Cors::Allow(origin) => vec![
                ("Vary", "Origin"),
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
            ],
        }
    }

    /// Adds [`Cors::fields`] to a complete response, but `Vary` to one that no cache may
    /// store: `Vary` tells a cache which request fields select among stored answers (RFC 9111
    /// §4.1), and a cache "MUST NOT store any part of" an answer with `Cache-Control: no-store`
    /// (§5.2.2.5), so there it would tell nobody anything (14 bytes on every long-poll answer).
    pub fn apply(&self, response: &mut Response) {
        let no_store = response.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("Cache-Control")
                && value.split(',').any(|directive| directive.trim().eq_ignore_ascii_case("no-store"))
        });
        for (name, value) in self.fields() {
            if !(no_store && name == "Vary") {
                response.headers.push((name, value.to_string()));
            }
        }
    }
}

/// The answer to `OPTIONS` on a route that serves `methods` and lists `allow` (the same plus
/// `OPTIONS`). With `Origin` and `Access-Control-Request-Method` it is a CORS preflight (WHATWG
/// Fetch §3.2.2): 204 with the methods, headers and cache lifetime the real request may use.
/// Without them it is a plain `OPTIONS` (RFC 9110 §9.3.7), answered with `Allow`. The
/// exchange's own [`Cors`] fields are added when it is written, as to every answer.
pub fn preflight(cors: &Cors, methods: &str, allow: &str, requested_method: Option<&[u8]>) -> Response {
    let mut response = Response { status: 204, headers: vec![("Allow", allow.to_string())], body: Vec::new() };
    if let (Cors::Allow(_), Some(_)) = (cors, requested_method) {
        response.headers.push(("Access-Control-Allow-Methods", methods.to_string()));
        response.headers.push(("Access-Control-Allow-Headers", ALLOW_HEADERS.to_string()));
        response.headers.push(("Access-Control-Max-Age", PREFLIGHT_MAX_AGE.to_string()));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_default_to_same_origin_and_widen_with_the_allow_list() {
        let none: &[String] = &[];
        assert_eq!(classify(None, Some("localhost:8080"), none), Origin::Own);
        assert_eq!(classify(Some(b"http://localhost:8080"), Some("localhost:8080"), none), Origin::Own);
        assert_eq!(classify(Some(b"https://Example.com"), Some("example.com:443"), none), Origin::Own);
        assert_eq!(classify(Some(b"http://example.com"), Some("example.com"), none), Origin::Own);
        assert_eq!(classify(Some(b"http://evil.example"), Some("localhost:8080"), none), Origin::Foreign);
        assert_eq!(classify(Some(b"http://localhost:9999"), Some("localhost:8080"), none), Origin::Foreign);
        assert_eq!(classify(Some(b"null"), Some("localhost:8080"), none), Origin::Foreign);
        assert_eq!(classify(Some(b"http://x"), None, none), Origin::Foreign);
        assert_eq!(classify(Some(&[0xff]), Some("x"), &["*".to_string()]), Origin::Foreign);
        let list = ["https://app.example".to_string()];
        assert_eq!(
            classify(Some(b"https://App.example"), Some("localhost:8080"), &list),
            Origin::Allowed("https://App.example".into())
        );
        assert_eq!(classify(Some(b"https://other.example"), Some("localhost:8080"), &list), Origin::Foreign);
        assert_eq!(classify(Some(b"null"), Some("x"), &["*".to_string()]), Origin::Allowed("null".into()));
    }

    #[test]
    fn fetch_3_2_an_allowed_origin_is_named_and_every_guarded_answer_varies_on_origin() {
        let allow = Cors::Allow("https://app.example".into());
        let fields = allow.fields();
        assert!(fields.contains(&("Access-Control-Allow-Origin", "https://app.example")));
        assert!(fields.contains(&("Vary", "Origin")));
        assert!(fields.contains(&("Access-Control-Expose-Headers", EXPOSE_HEADERS)));
        assert_eq!(Cors::Vary.fields(), vec![("Vary", "Origin")]);
        assert!(Cors::NotApplicable.fields().is_empty());
        assert_eq!(Cors::for_origin(&Origin::Foreign), Cors::Vary, "a foreign origin is never named");
    }

    #[test]
    fn rfc9111_5_2_2_5_an_answer_no_cache_may_store_needs_no_vary() {
        let answer = |cache_control: Option<&str>, cors: &Cors| {
            let mut response = Response::json(200, "{}".into());
            if let Some(value) = cache_control {
                response = response.with_header("Cache-Control", value);
            }
            cors.apply(&mut response);
            response.headers.iter().map(|(name, _)| *name).collect::<Vec<_>>()
        };
        let allow = Cors::Allow("https://app.example".into());
        assert!(answer(None, &Cors::Vary).contains(&"Vary"));
        assert!(!answer(Some("no-store"), &Cors::Vary).contains(&"Vary"));
        assert!(!answer(Some("private, No-Store"), &allow).contains(&"Vary"), "directives are case-insensitive");
        assert!(answer(Some("no-store"), &allow).contains(&"Access-Control-Allow-Origin"), "still readable");
        assert!(answer(Some("no-cache"), &Cors::Vary).contains(&"Vary"), "no-cache answers may be stored");
    }

    #[test]
    fn fetch_3_2_2_a_preflight_from_an_allowed_origin_lists_methods_headers_and_lifetime() {
        let allow = Cors::Allow("https://app.example".into());
        let response = preflight(&allow, "POST", "POST, OPTIONS", Some(b"POST"));
        assert_eq!(response.status, 204);
        let field = |name: &str| response.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(field("Access-Control-Allow-Origin"), None, "added once, with every answer's");
        assert_eq!(field("Access-Control-Allow-Methods"), Some("POST"));
        assert_eq!(field("Access-Control-Allow-Headers"), Some(ALLOW_HEADERS));
        assert_eq!(field("Access-Control-Max-Age"), Some(PREFLIGHT_MAX_AGE));
        // A plain OPTIONS from our own origin: `Allow`, no CORS grant.
        let plain = preflight(&Cors::Vary, "GET, HEAD", "GET, HEAD, OPTIONS", None);
        assert!(plain.headers.iter().all(|(n, _)| !n.starts_with("Access-Control")));
        assert!(plain.headers.contains(&("Allow", "GET, HEAD, OPTIONS".to_string())));
    }
}
