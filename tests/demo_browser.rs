//! The demo page in a real browser, for every server model: headless Chromium loads `/`, the
//! three panels connect (the WebSocket with permessage-deflate negotiated), messages published through the page and with `POST /publish` reach
//! every panel exactly once, "drop connection" on each panel resumes with nothing lost, and a
//! burst of 100 arrives everywhere. Screenshots go to `target/demo-<model>.png` (and
//! `-narrow.png`, the one-column layout), which CI keeps as artifacts.
//!
//! How Chromium is driven: the Chrome DevTools Protocol ([`common::browser`] says why). The
//! test does what a person does (types and presses Enter, clicks with the mouse, presses a
//! button with the keyboard) and reads the page's counters from `window.demo.snapshot()`, the
//! test hook `src/demo/index.html` documents. Every wait polls a condition until a deadline;
//! none sleeps and hopes.
//!
//! The page's "Six connections" experiment, twice: directly against the server (HTTP/1.1),
//! 6 of 8 extra `EventSource`s get a connection and 2 wait; through nginx
//! (`examples/nginx-h2.conf`, TLS and HTTP/2, with a certificate from
//! `scripts/self-signed-cert.sh`), all 8 open on one connection. Screenshots:
//! `target/demo-http1-streams-<model>.png`, `target/demo-h2-streams-<model>.png`.
//!
//! Chromium comes from Debian (`apt-get install chromium`). Without it the test says SKIPPED
//! loudly and passes, except under `REALTIME_REQUIRE_EXTERNAL=1` (CI), where it fails; the
//! same for nginx and openssl (Debian's `nginx` and `openssl`) in the HTTP/2 test.

mod common;

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::browser::{to_json, Browser, DevTools};
use common::nginx::Nginx;
use common::{each_model, TestServer};
use realtime::json::{self, Value};

/// The desktop viewport: three panels side by side.
const WIDE: (u32, u32) = (1280, 1000);
/// A phone-sized viewport: the panels must stack in one column.
const NARROW: (u32, u32) = (390, 844);
const PANELS: [&str; 3] = ["longpoll", "sse", "websocket"];

#[test]
fn the_demo_page_shows_every_message_on_all_three_transports_and_resumes_after_a_drop() {
    let Some(chromium) = common::external_program("chromium") else { return };
    each_model(
        |_| {},
        |server| {
            let started = Instant::now();
            let browser = Browser::launch(&chromium);
            let mut page = browser.open_page();
            run_scenario(server, &mut page);
            page.close_browser();
            eprintln!("model {}: done in {:.1} s", server.model.name(), started.elapsed().as_secs_f64());
        },
    );
}

fn run_scenario(server: &TestServer, page: &mut DevTools) {
    let model = server.model.name();
    page.set_viewport(WIDE);
    page.call("Page.navigate", &format!(r#"{{"url":"http://{}/"}}"#, server.addr()));

    // The page loads under its CSP, the style applies, and all three panels connect: the
    // WebSocket panel proves that `connect-src 'self'` covers ws:// to the same host.
    let snapshot =
        page.wait_for("all three panels connected", |s| PANELS.iter().all(|p| flag(panel(s, p), "connected")));
    assert_eq!(number(&snapshot, "cspViolations"), 0, "the page reported CSP violations");
    assert_eq!(page.evaluate("getComputedStyle(document.querySelector('.panels')).display"), "grid");
    assert_eq!(snapshot.get("channel").and_then(Value::as_str), Some("demo"));
    // Chromium offers permessage-deflate on every WebSocket and the server's default
    // (`--ws-deflate no-context`) accepts it: everything below travels compressed, through a
    // real browser's inflater (RFC 7692 interop).
    let extensions = snapshot.get("websocketExtensions").and_then(Value::as_str).unwrap_or_default();
    assert_eq!(
        extensions, "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "the 101 agreed to compression"
    );
    eprintln!("model {model}: all three panels connected");

    // Five messages typed into the page (Enter publishes), five with POST /publish.
    let mut expected = Vec::new();
    for i in 1..=5 {
        page.type_and_press_enter("#message", &format!("typed {i}"));
        page.wait_for("the page's publish to be answered", |s| ids(s, "published").len() == i);
    }
    for i in 1..=5 {
        expected.push(server.publish("demo", &format!("curl {i}")));
    }
    let snapshot = page.wait_for("10 messages on every panel", |s| all_panels_have(s, 10));
    expected.extend(ids(&snapshot, "published"));
    check_panels(&snapshot, &expected, model);
    eprintln!("model {model}: 10 messages on every panel, none twice");

    // Drop each connection: long polling and SSE with the mouse, the WebSocket with the
    // keyboard. Five messages published while all three are down must arrive through resume.
    let before = snapshot;
    let dropped_at = Instant::now();
    page.click(".panel#panel-longpoll .drop");
    page.click(".panel#panel-sse .drop");
    page.press_with_keyboard(".panel#panel-websocket .drop");
    let during_drop = page.evaluate(
        "Promise.all([1, 2, 3, 4, 5].map((i) => publish(`while dropped ${i}`))).then((ids) => ids.join(' '))",
    );
    let down = page.snapshot();
    eprintln!("model {model}: 5 published within {} ms of the first drop", dropped_at.elapsed().as_millis());
    for name in PANELS {
        // Still down, and nothing arrived meanwhile: the five can only come from the resume.
        // The page keeps a dropped transport down for 2 s, ample time for five publishes.
        assert_eq!(state(&down, name), "reconnecting", "{name} was not down while publishing: {down:?}");
        assert_eq!(number(panel(&down, name), "received"), 10, "{name} received while dropped: {down:?}");
    }
    expected.extend(during_drop.split(' ').map(str::to_string));
    let after = page.wait_for("15 messages on every panel after the drop", |s| {
        all_panels_have(s, 15) && PANELS.iter().all(|p| flag(panel(s, p), "connected"))
    });
    check_panels(&after, &expected, model);
    for name in PANELS {
        let requests = |s: &Value| number(panel(s, name), "requests");
        assert!(requests(&after) > requests(&before), "{name} did not make a new request after the drop");
    }
    for name in PANELS {
        let lost = page.evaluate(&format!("document.querySelector('#panel-{name} [data-field=lost]').textContent"));
        assert_eq!(lost, "0", "{name} shows messages lost: {lost}");
    }
    eprintln!("model {model}: dropped and resumed, 15 on every panel, messages lost: 0");

    // A burst of 100, pressed like a user would.
    page.click("#burst");
    // Both conditions: a message can reach the panels before the page has its publish answer.
    let burst = page.wait_for("the burst of 100 published and on every panel", |s| {
        ids(s, "published").len() == 110 && all_panels_have(s, 115)
    });
    expected.extend(ids(&burst, "published").into_iter().skip(10));
    check_panels(&burst, &expected, model);
    eprintln!("model {model}: a burst of 100 reached every panel");

    page.screenshot(&artifact(&format!("demo-{model}.png")));
    page.set_viewport(NARROW);
    let columns = page.evaluate("getComputedStyle(document.querySelector('.panels')).gridTemplateColumns");
    assert_eq!(columns.split(' ').count(), 1, "the narrow layout should have one column: {columns}");
    page.screenshot(&artifact(&format!("demo-{model}-narrow.png")));

    let problems = page.console_problems();
    assert!(problems.is_empty(), "the browser reported problems: {problems:#?}");
}

/// Extra `EventSource`s the connection tests open on one page: two more than the limit.
const EXTRA_STREAMS: usize = 8;
/// The most the page lets a learner open at once (`MAX_EXTRA_STREAMS` in the page).
const MAX_EXTRA_STREAMS: usize = 16;
/// HTTP/1.1 connections Chromium opens to one host (`g_max_sockets_per_group`, 6 for HTTP and
/// 255 for WebSockets, `net/socket/client_socket_pool_manager.cc`).
const CONNECTIONS_PER_HOST: usize = 6;
/// The server's count of open SSE streams is `Stats::open[SSE]`.
const SSE: usize = 1;

/// RFC 9112 §9.4: "A client ought to limit the number of simultaneous open connections that
/// it maintains to a given server"; Chromium's limit is six, and an `EventSource` keeps its
/// connection for as long as it is open. With the long-poll and SSE panels paused (the page
/// does that while the extra streams are open), 6 of 8 streams get a connection and receive a
/// publish; the other 2 wait, their requests unsent (the server holds 6 streams, not 8), while
/// the WebSocket, in a pool of its own, receives the same publish. Closing one open stream
/// gives its connection to a waiting one, which catches up from `?since=`.
#[test]
fn over_http1_six_of_eight_event_sources_get_a_connection_and_the_other_two_wait() {
    let Some(chromium) = common::external_program("chromium") else { return };
    each_model(
        |_| {},
        |server| {
            let model = server.model.name();
            let mut page = Browser::launch(&chromium).open_page();
            page.navigate(&format!("http://{}/", server.addr()));
            let before = start_extra_streams(server, &mut page);
            let opened = page.wait_for_connections("6 streams open and 2 waiting", |c| {
                states(c, "open") == CONNECTIONS_PER_HOST
                    && states(c, "waiting") == EXTRA_STREAMS - CONNECTIONS_PER_HOST
            });
            assert_eq!(opened.get("protocol").and_then(Value::as_str), Some("http/1.1"));
            // And the page says so, in words (drawn on the next frame).
            page.wait_for_text("#streams-summary", |t| {
                t.starts_with("6 of 8 open, 2 waiting for a connection. Over HTTP/1.1 ")
            });
            // The two waiting never reached the server: their requests were not sent.
            let open_at_server = || server.server.app().stats.snapshot().open[SSE];
            common::eventually("the server to hold the 6 open streams only", || {
                open_at_server() == CONNECTIONS_PER_HOST
            });
            eprintln!(
                "model {model}: {CONNECTIONS_PER_HOST} of {EXTRA_STREAMS} open, the server holds {}",
                open_at_server()
            );

            let id = server.publish("demo", "while two wait");
            let delivered = page.wait_for_connections("the 6 open streams to receive the publish", |c| {
                latest(c) == Some(id.as_str()) && with_latest(c) == CONNECTIONS_PER_HOST
            });
            page.wait_for("the WebSocket, outside the six, to receive it too", |s| {
                ids(panel(s, "websocket"), "ids").contains(&id)
            });
            let waiting = streams(&delivered).iter().filter(|s| state_of(s) == "waiting").count();
            assert_eq!(waiting, EXTRA_STREAMS - CONNECTIONS_PER_HOST, "{}", to_json(&delivered));
            for stream in streams(&delivered).iter().filter(|s| state_of(s) == "waiting") {
                assert_eq!(number(stream, "received"), 0, "a waiting stream received: {}", to_json(&delivered));
            }
            eprintln!("model {model}: the publish reached 6 streams and the WebSocket, not the 2 waiting");
            page.screenshot(&artifact(&format!("demo-http1-streams-{model}.png")));

            page.click("#streams-close-one");
            page.wait_for_connections("a waiting stream to take the freed connection and catch up", |c| {
                streams(c).len() == EXTRA_STREAMS - 1
                    && states(c, "open") == CONNECTIONS_PER_HOST
                    && states(c, "waiting") == EXTRA_STREAMS - CONNECTIONS_PER_HOST - 1
                    && with_latest(c) == CONNECTIONS_PER_HOST
            });
            eprintln!("model {model}: closed one, and one more received");

            finish_extra_streams(&mut page, &before, &id);
            page.close_browser();
        },
    );
}

/// The same page through `examples/nginx-h2.conf`: nginx speaks TLS and HTTP/2 with the
/// browser (RFC 9113 §3.2: "h2" by ALPN) and HTTP/1.1 with the node. All 8 streams open and
/// receive, the page's own publish goes out while they are open, the page says it came over
/// `h2`, and nginx's log shows every one of the page's requests on one connection (RFC 9113
/// §5: streams multiplexed on a connection), all but the WebSocket, which is not multiplexed.
#[test]
fn through_nginx_over_http2_all_eight_event_sources_receive_on_one_connection() {
    let Some(chromium) = common::external_program("chromium") else { return };
    let Some(nginx_binary) = common::external_program("nginx") else { return };
    let Some(_) = common::external_program("openssl") else { return };
    each_model(
        |_| {},
        |server| {
            let model = server.model.name();
            let dir = common::scratch_dir("nginx-h2");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/self-signed-cert.sh");
            let made = Command::new(&script).arg(&dir).output().expect("run scripts/self-signed-cert.sh");
            assert!(made.status.success(), "self-signed-cert.sh: {}", String::from_utf8_lossy(&made.stderr));
            let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
            let replace = [
                ("127.0.0.1:8443", addr.to_string()),
                ("127.0.0.1:8081", server.addr().to_string()),
                ("/tmp/realtime-h2", dir.display().to_string()),
            ];
            let nginx = Nginx::start(&nginx_binary, dir, "nginx-h2.conf", &replace, addr);

            // The certificate is self-signed: no authority vouches for it.
            let mut page = Browser::launch_with(&chromium, &["--ignore-certificate-errors"]).open_page();
            page.navigate(&format!("https://{addr}/"));
            let before = start_extra_streams(server, &mut page);
            let opened = page.wait_for_connections("all 8 streams open", |c| states(c, "open") == EXTRA_STREAMS);
            assert_eq!(opened.get("protocol").and_then(Value::as_str), Some("h2"), "{}", to_json(&opened));
            page.wait_for_text("#streams-summary", |t| {
                t == "All 8 open, as streams of one HTTP/2 connection: none waits for a connection."
            });
            page.wait_for_text("#protocol", |t| t == "h2");
            common::eventually("the node to hold all 8 streams", || {
                server.server.app().stats.snapshot().open[SSE] == EXTRA_STREAMS
            });

            // Published by the page itself: over HTTP/1.1 this request would wait too.
            let id = page.evaluate("publish('over HTTP/2')");
            page.wait_for_connections("all 8 streams to receive the page's publish", |c| {
                latest(c) == Some(id.as_str()) && with_latest(c) == EXTRA_STREAMS
            });
            let resources = page.connections();
            let resources = resources.get("resourceProtocols").expect("resourceProtocols");
            assert!(resources.get("h2").and_then(Value::as_u64).unwrap_or(0) >= 1, "{}", to_json(resources));
            assert!(resources.get("http/1.1").is_none(), "a request went over HTTP/1.1: {}", to_json(resources));
            eprintln!("model {model}: all {EXTRA_STREAMS} streams open and received the page's own publish, over h2");
            page.screenshot(&artifact(&format!("demo-h2-streams-{model}.png")));

            finish_extra_streams(&mut page, &before, &id);
            // Every request of the page, the 8 streams included (logged when they closed), on
            // one connection over HTTP/2; the WebSocket is still open, so not logged yet.
            let log_path = nginx.dir.join("access.log");
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            let sse_lines = |log: &str| log.lines().filter(|l| l.contains("\"GET /sse/")).count();
            // The panel's stream (closed when the page paused it) and the 8.
            common::eventually("nginx to log the closed streams", || sse_lines(&log()) > EXTRA_STREAMS);
            let log = log();
            let connections: HashSet<&str> =
                log.lines().filter_map(|line| line.split(' ').find(|w| w.starts_with("conn="))).collect();
            assert_eq!(connections.len(), 1, "the page's requests came on more than one connection:\n{log}");
            assert!(log.lines().all(|l| l.contains(" HTTP/2.0 ")), "a request not over HTTP/2:\n{log}");
            eprintln!("model {model}: nginx logged {} requests, all on {:?}", log.lines().count(), connections);
            page.close_browser();
        },
    );
}

/// Waits for the page's panels, publishes a first message (so the streams have an id to resume
/// from) and presses "Open" for [`EXTRA_STREAMS`]; returns the snapshot from before.
fn start_extra_streams(server: &TestServer, page: &mut DevTools) -> Value {
    page.set_viewport(WIDE);
    page.wait_for("all three panels connected", |s| PANELS.iter().all(|p| flag(panel(s, p), "connected")));
    let first = server.publish("demo", "before the extra streams");
    let before =
        page.wait_for("the SSE panel to receive the first message", |s| ids(panel(s, "sse"), "ids").contains(&first));
    // What the page offers a learner first: 8, two past the limit.
    assert_eq!(page.evaluate("document.querySelector('#streams-count').value"), EXTRA_STREAMS.to_string());
    page.click("#streams-form button[type=submit]");
    page.wait_for("the long-poll and SSE panels to pause", |s| {
        state(s, "longpoll") == "paused" && state(s, "sse") == "paused"
    });
    // A bound on what a learner can open: with 8 open, the form takes no more than 8 more.
    let room = (MAX_EXTRA_STREAMS - EXTRA_STREAMS).to_string();
    let input = "document.querySelector('#streams-count')";
    page.wait_until("the form's maximum to follow the streams", &format!("JSON.stringify({input}.max)"), |max| {
        max.as_str() == Some(room.as_str())
    });
    let accepts = |n: usize| format!("(() => {{ {input}.value = '{n}'; return {input}.checkValidity(); }})()");
    let (over, full) = (MAX_EXTRA_STREAMS - EXTRA_STREAMS + 1, MAX_EXTRA_STREAMS - EXTRA_STREAMS);
    assert_eq!(page.evaluate(&accepts(over)), "false", "the form allows more than {MAX_EXTRA_STREAMS} streams");
    assert_eq!(page.evaluate(&accepts(full)), "true");
    before
}

/// Presses "Close all": the paused panels resume with a new request, from their last message,
/// so that each receives what was `published` while it was paused, and none lost a message.
fn finish_extra_streams(page: &mut DevTools, before: &Value, published: &str) {
    page.click("#streams-close-all");
    let after = page.wait_for("the panels to resume and catch up", |s| {
        PANELS
            .iter()
            .all(|p| flag(panel(s, p), "connected") && ids(panel(s, p), "ids").iter().any(|id| id == published))
    });
    for name in PANELS {
        assert_eq!(number(panel(&after, name), "lost"), 0, "{name} lost messages while paused");
    }
    for name in ["longpoll", "sse"] {
        let requests = |s: &Value| number(panel(s, name), "requests");
        assert!(requests(&after) > requests(before), "{name} did not make a new request after the pause");
    }
    assert!(streams(&page.connections()).is_empty(), "Close all left streams open");
    let problems = page.console_problems();
    assert!(problems.is_empty(), "the browser reported problems: {problems:#?}");
}

fn streams(connections: &Value) -> &[Value] {
    connections.get("streams").and_then(Value::as_array).unwrap_or_else(|| panic!("no streams in {connections:?}"))
}

fn state_of(stream: &Value) -> &str {
    stream.get("state").and_then(Value::as_str).unwrap_or_default()
}

fn states(connections: &Value, wanted: &str) -> usize {
    streams(connections).iter().filter(|s| state_of(s) == wanted).count()
}

fn with_latest(connections: &Value) -> usize {
    streams(connections).iter().filter(|s| flag(s, "hasLatest")).count()
}

fn latest(connections: &Value) -> Option<&str> {
    connections.get("newestId").and_then(Value::as_str)
}

/// Every panel has exactly the `expected` ids, none twice, and shows no loss.
fn check_panels(snapshot: &Value, expected: &[String], model: &str) {
    let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected.sort_unstable();
    for name in PANELS {
        let panel = panel(snapshot, name);
        let mut got = ids(panel, "ids");
        got.sort_unstable();
        assert_eq!(got, expected, "model {model}: {name} did not receive exactly the published messages");
        assert_eq!(number(panel, "duplicates"), 0, "model {model}: {name} received duplicates");
        assert_eq!(number(panel, "lost"), 0, "model {model}: {name} counts lost messages");
        assert_eq!(number(panel, "gaps"), 0, "model {model}: {name} reported a gap");
    }
}

fn all_panels_have(snapshot: &Value, count: u64) -> bool {
    PANELS.iter().all(|name| number(panel(snapshot, name), "received") >= count)
}

fn panel<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot.get("panels").and_then(|p| p.get(name)).unwrap_or_else(|| panic!("no panel {name} in {snapshot:?}"))
}

fn state<'a>(snapshot: &'a Value, name: &str) -> &'a str {
    panel(snapshot, name).get("state").and_then(Value::as_str).unwrap_or_default()
}

fn number(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("no number {key} in {value:?}"))
}

fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn ids(value: &Value, key: &str) -> Vec<String> {
    let list = value.get(key).and_then(Value::as_array).unwrap_or_else(|| panic!("no list {key} in {value:?}"));
    list.iter().map(|id| id.as_str().expect("ids are strings").to_string()).collect()
}

/// `target/NAME` (or under `CARGO_TARGET_DIR`): where CI collects artifacts.
fn artifact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    fs::create_dir_all(&target).expect("create the target directory");
    target.join(name)
}

/// The demo page's test hook, `window.demo.snapshot()`, on a page driven over DevTools.
trait DemoPage {
    /// The page's counters, or `Null` before the page has set up its hook.
    fn snapshot(&mut self) -> Value;
    /// Polls the page's counters until `condition` holds, failing after `PATIENCE`.
    fn wait_for(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value;
    /// The extra streams of "Six connections" and the page's protocol.
    fn connections(&mut self) -> Value;
    /// Polls [`DemoPage::connections`] until `condition` holds, failing after `PATIENCE`.
    fn wait_for_connections(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value;
    /// Polls the text of the element `selector` matches until `condition` holds of it.
    fn wait_for_text(&mut self, selector: &str, condition: impl Fn(&str) -> bool) -> String;
}

const SNAPSHOT: &str = "window.demo ? JSON.stringify(window.demo.snapshot()) : 'null'";
const CONNECTIONS: &str = "window.demo ? JSON.stringify(window.demo.connections()) : 'null'";

impl DemoPage for DevTools {
    fn snapshot(&mut self) -> Value {
        let text = self.evaluate(SNAPSHOT);
        json::parse(&text).expect("the snapshot is JSON")
    }

    fn wait_for(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(what, SNAPSHOT, condition)
    }

    fn connections(&mut self) -> Value {
        json::parse(&self.evaluate(CONNECTIONS)).expect("the connections are JSON")
    }

    fn wait_for_connections(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(what, CONNECTIONS, condition)
    }

    fn wait_for_text(&mut self, selector: &str, condition: impl Fn(&str) -> bool) -> String {
        let mut quoted = String::new();
        json::write_string(&mut quoted, selector);
        let expression = format!("JSON.stringify(document.querySelector({quoted}).textContent)");
        let text = self.wait_until(selector, &expression, |v| v.as_str().is_some_and(&condition));
        text.as_str().unwrap_or_default().to_string()
    }
}
