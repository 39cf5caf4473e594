//! The demo page at `/`: the three transports side by side, live, in one browser tab.
//!
//! # What the page shows
//!
//! Three panels, long polling, Server-Sent Events and a WebSocket, follow the same channel
//! (`demo`, or `?channel=NAME`). A message typed into the page is published with
//! `POST /publish/{channel}` and each panel shows it arrive, with its own latency: the time
//! from the page sending the publish to that panel receiving the message, both read from the
//! page's one clock (`performance.now()`), so no clock skew enters. Each panel counts messages,
//! requests (long polling makes one per round trip, the others one per connection), payload
//! bytes, duplicates and losses, and says in a line of text what is happening on the wire.
//! "Drop connection" kills one transport's connection to show how it resumes without loss:
//! long polling asks again with `since=`, SSE opens a new `EventSource` with `?since=` (a page
//! cannot trigger the browser's own reconnect, which would send `Last-Event-ID`), and the
//! WebSocket reconnects with `?since=`. "Burst" publishes 100 messages.
//!
//! # Six connections, and HTTP/2
//!
//! Under the SSE panel, "More streams on this channel" opens N more `EventSource`s (at most
//! 16) on the same channel, each listed with its state and whether it has the newest message
//! any `EventSource` on the page has seen. Over HTTP/1.1 a stream holds a connection for as
//! long as it is open, and a browser opens at most six per host (RFC 9112 §9.4 leaves the
//! number to the client; Chromium's is `g_max_sockets_per_group`, 6, and 255 for WebSockets,
//! which have a pool of their own): the seventh waits, its request unsent, until one closes.
//! So that the count starts from zero, the long-poll and SSE panels are paused while the
//! streams are open (each holds a connection too) and resume from their last message after.
//! A stream resumes from the newest id the page knew when it was opened (`?since=`), so one
//! that waited catches up once it connects: late, not lost. Over HTTP/2 (`examples/nginx-h2.conf`
//! in front) all of them open, as streams of one connection. The section "Six connections,
//! and HTTP/2" under the panels says this in words and shows the page's `nextHopProtocol`
//! (`http/1.1` or `h2`) and its requests'.
//!
//! The page publishes one message at a time, so the order in which it sends its messages is
//! their order in the channel. That is what lets a panel tell a lost message (a later one of
//! ours arrived, this one never did) from a late one without comparing ids, which clients
//! must treat as opaque.
//!
//! The page's script is meant to be read: one section per browser API (`fetch` in a long-poll
//! loop with an `AbortController`, `EventSource`, `WebSocket` with capped exponential backoff
//! and jitter), and one for the extra streams. It also exposes `window.demo`, the hook
//! `tests/demo_browser.rs` reads.
//!
//! # How it is served
//!
//! [`PAGE`] is `index.html`, one self-contained file (no build step, no external assets)
//! embedded in the binary with `include_str!`, so `cargo run` needs nothing beside the binary.
//! [`response`] answers it with:
//!
//! - `Content-Type: text/html; charset=utf-8`: the page is UTF-8 and says so before the
//!   browser has to guess;
//! - `Cache-Control: no-cache`: a browser may keep the page but must revalidate, so a rebuilt
//!   binary's page is never hidden behind a stale copy (the page is small; we send no
//!   validators, so revalidating is simply fetching it again);
//! - `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`;
//! - the Content-Security-Policy below.
//!
//! # Why the CSP is what it is
//!
//! ```text
//! default-src 'none'; script-src 'sha256-…'; style-src 'sha256-…'; connect-src 'self';
//! img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'
//! ```
//!
//! The page holds one inline `<script>` and one inline `<style>`. Allowing them with
//! `'unsafe-inline'` would also allow any script an injection managed to put in the page,
//! which is what a CSP exists to stop. Instead each is allowed by the SHA-256 of its exact
//! text (a CSP Level 3 "hash-source"): a browser runs an inline script only if its hash is
//! listed, so an injected one, or an `onclick=` attribute, does not run. The hashes are
//! computed once, at the first request, from the embedded file itself ([`content_security_policy`],
//! a `OnceLock`), so editing the page can never leave a stale hash behind.
//!
//! The other choice was to serve the two sections as `/demo.js` and `/demo.css` and allow
//! `'self'`. Hashing keeps the page one response and one file, and is the stricter policy:
//! `'self'` would allow any script the origin serves, hashes allow exactly these bytes.
//!
//! The rest denies everything the page does not use: `default-src 'none'` (no frames, fonts,
//! workers, objects), `connect-src 'self'` for `fetch`, `EventSource` and `WebSocket` to this
//! server only (CSP Level 3 §6.7.2.8 lets `'self'` match `ws:` and `wss:` on the page's host,
//! as current Chromium and Firefox do; the browser test checks the WebSocket panel connects),
//! `img-src 'self' data:` for the empty `data:` favicon that stops a `/favicon.ico` request,
//! `base-uri 'none'` so an injected `<base>` cannot redirect relative URLs, `form-action
//! 'none'` (the publish form is handled by script and never submitted), and `frame-ancestors
//! 'none'` so no other site can frame the page to trick clicks on "burst".

#![forbid(unsafe_code)]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::crypto::sha256::sha256;
use crate::http::response::Response;

/// The page: HTML, CSS and JavaScript in one file, embedded at compile time.
pub const PAGE: &str = include_str!("index.html");

/// The page's `Content-Security-Policy`, with the hashes of its inline script and style.
pub fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| policy_for(PAGE))
}

/// The policy for a page: each inline element is allowed by its hash, or not at all.
fn policy_for(page: &str) -> String {
    let allow = |tag: &str| inline_element(page, tag).map_or_else(|| "'none'".to_string(), hash_source);
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        allow("script"),
        allow("style")
    )
}

/// The text between `<tag>` and `</tag>`: exactly what a browser hashes (CSP Level 3, "Does
/// element match source list for type and source?": the element's text content, as UTF-8).
/// The page writes both tags bare, without attributes, and has one of each; a page with none
/// gets no hash.
fn inline_element<'a>(page: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = page.find(&open)? + open.len();
    let length = page[start..].find(&close)?;
    Some(&page[start..start + length])
}

/// A CSP hash-source: `'sha256-` base64(SHA-256(text)) `'`.
fn hash_source(text: &str) -> String {
    format!("'sha256-{}'", STANDARD.encode(sha256(text.as_bytes())))
}

/// `GET /` and `HEAD /`: the page and the headers that keep it safe.
pub fn response() -> Response {
    Response {
        status: 200,
        headers: vec![
            ("Content-Type", "text/html; charset=utf-8".into()),
            ("Cache-Control", "no-cache".into()),
            ("Content-Security-Policy", content_security_policy().into()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("Referrer-Policy", "no-referrer".into()),
        ],
        body: PAGE.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_hashes_the_exact_text_of_each_inline_element() {
        let page = "<style>p{}</style><script>go()</script>";
        let policy = policy_for(page);
        assert!(policy.contains(&format!("script-src {};", hash_source("go()"))), "{policy}");
        assert!(policy.contains(&format!("style-src {};", hash_source("p{}"))), "{policy}");
        // The example in the CSP Level 3 specification: `<script>alert('Hello, world.');</script>`.
        assert_eq!(hash_source("alert('Hello, world.');"), "'sha256-qznLcsROx4GACP2dm0UCKCzCG+HiZ1guq6ZZDob/Tng='");
    }

    #[test]
    fn a_page_without_inline_elements_allows_none() {
        let policy = policy_for("<p>static</p>");
        assert!(policy.contains("script-src 'none';") && policy.contains("style-src 'none';"), "{policy}");
    }

    #[test]
    fn the_policy_denies_by_default_and_never_allows_inline_code_wholesale() {
        let policy = content_security_policy();
        assert!(policy.starts_with("default-src 'none';"));
        for directive in ["connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"] {
            assert!(policy.contains(directive), "{directive} missing from {policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(std::ptr::eq(policy, content_security_policy()), "computed once");
    }

    #[test]
    fn the_page_has_one_bare_script_and_style_and_no_inline_handlers() {
        // A second <script>, or one with attributes, would not match the one hash we send.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(inline_element(PAGE, "script").is_some_and(|s| s.contains("EventSource")));
        assert!(inline_element(PAGE, "style").is_some());
        // Hashes do not cover attributes: `style="..."` and `onclick="..."` would be blocked.
        assert!(!PAGE.contains(" style="), "inline style attribute");
        assert!(!PAGE.contains(" onclick="), "inline event handler");
        // An HTML parser turns CR LF into LF before the browser hashes the script, so a file
        // checked out with CR LF would get a hash no browser agrees with.
        assert!(!PAGE.contains('\r'));
    }

    #[test]
    fn the_response_carries_the_page_and_its_headers() {
        let response = response();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, PAGE.as_bytes());
        let header = |name: &str| response.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("Content-Type"), Some("text/html; charset=utf-8"));
        assert_eq!(header("Cache-Control"), Some("no-cache"));
        assert_eq!(header("Content-Security-Policy"), Some(content_security_policy()));
        assert_eq!(header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(header("Referrer-Policy"), Some("no-referrer"));
    }
}
