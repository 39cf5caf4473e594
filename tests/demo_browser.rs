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
//! Chromium comes from Debian (`apt-get install chromium`). Without it the test says SKIPPED
//! loudly and passes, except under `REALTIME_REQUIRE_EXTERNAL=1` (CI), where it fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::browser::{Browser, DevTools};
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
}

const SNAPSHOT: &str = "window.demo ? JSON.stringify(window.demo.snapshot()) : 'null'";

impl DemoPage for DevTools {
    fn snapshot(&mut self) -> Value {
        let text = self.evaluate(SNAPSHOT);
        json::parse(&text).expect("the snapshot is JSON")
    }

    fn wait_for(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(what, SNAPSHOT, condition)
    }
}
