//! `GET /` over plain HTTP, for every server model: the demo page arrives whole, with the
//! headers that keep it safe, also for `HEAD`, and it refers to nothing outside its own
//! origin. `tests/demo_browser.rs` checks that a browser agrees (the CSP hashes match, the
//! three transports work); this suite runs without one.

mod common;

use common::each_model;
use realtime::demo::{content_security_policy, PAGE};

const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

#[test]
fn get_serves_the_embedded_page_with_a_strict_csp() {
    each_model(
        |_| {},
        |server| {
            for path in ["/", "/?channel=news"] {
                let response = server.get(path);
                assert_eq!(response.status, 200, "{path}");
                assert_eq!(response.body, PAGE.as_bytes(), "{path}");
                for (name, value) in SECURITY_HEADERS {
                    assert_eq!(response.header(name), Some(value), "{name} on {path}");
                }
                assert_eq!(response.header("content-security-policy"), Some(content_security_policy()));
            }
        },
    );
}

#[test]
fn head_sends_the_same_fields_without_the_page() {
    each_model(
        |_| {},
        |server| {
            let get = server.get("/");
            let head = server.request("HEAD", "/", None);
            assert_eq!(head.status, 200);
            assert!(head.body.is_empty());
            // RFC 9110 §9.3.2: the same header fields as GET, Content-Length included.
            for name in ["content-length", "content-type", "cache-control", "content-security-policy"] {
                assert_eq!(head.header(name), get.header(name), "{name}");
            }
            assert_eq!(head.header("content-length"), Some(PAGE.len().to_string().as_str()));
        },
    );
}

#[test]
fn the_csp_allows_only_the_pages_own_script_style_and_origin() {
    let policy = content_security_policy();
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    assert_eq!(directives[0], "default-src 'none'");
    let directive = |name: &str| {
        let prefix = format!("{name} ");
        directives.iter().find_map(|d| d.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {name}"))
    };
    // One hash each: a single inline <script> and <style>, nothing else, no 'unsafe-inline'.
    for name in ["script-src", "style-src"] {
        let sources = directive(name);
        assert!(sources.starts_with("'sha256-") && !sources.contains(' '), "{name} {sources}");
    }
    assert_eq!(directive("connect-src"), "'self'");
    assert_eq!(directive("img-src"), "'self' data:");
    assert_eq!(directive("base-uri"), "'none'");
    assert_eq!(directive("form-action"), "'none'");
    assert_eq!(directive("frame-ancestors"), "'none'");
    assert!(!policy.contains("unsafe") && !policy.contains('*'), "{policy}");
}

#[test]
fn the_page_refers_to_nothing_outside_its_origin() {
    // No absolute URL anywhere: every request the page makes goes to the server it came from
    // (the WebSocket URL is built from `location.host`).
    assert!(!PAGE.contains("://"), "the page names an absolute URL");
    // Attributes that load something: only the empty data: favicon.
    for attribute in [" src=", " action=", " srcset=", " poster="] {
        assert!(!PAGE.contains(attribute), "the page loads something with{attribute}");
    }
    let hrefs: Vec<&str> = PAGE.match_indices(" href=\"").map(|(at, m)| &PAGE[at + m.len()..]).collect();
    for href in hrefs {
        assert!(href.starts_with("data:,\""), "unexpected href: {}", &href[..href.len().min(40)]);
    }
    assert!(!PAGE.contains("url(") && !PAGE.contains("@import"), "the style loads something");
    // The endpoints the script uses are relative paths on this origin.
    for endpoint in ["`/publish/${channel}`", "`/poll/${channel}", "`/sse/${channel}", "/ws/${channel}"] {
        assert!(PAGE.contains(endpoint), "{endpoint} is not used the expected way");
    }
}

#[test]
fn other_methods_on_the_page_are_refused() {
    each_model(
        |_| {},
        |server| {
            let response = server.request("POST", "/", Some("x"));
            assert_eq!(response.status, 405);
            assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
        },
    );
}
