//! The demo page in a real browser, for every server model: headless Chromium loads `/`, the
//! three panels connect, messages published through the page and with `POST /publish` reach
//! every panel exactly once, "drop connection" on each panel resumes with nothing lost, and a
//! burst of 100 arrives everywhere. Screenshots go to `target/demo-<model>.png` (and
//! `-narrow.png`, the one-column layout), which CI keeps as artifacts.
//!
//! How Chromium is driven: the Chrome DevTools Protocol, JSON over a WebSocket, spoken by the
//! crate's own WebSocket client ([`realtime::ws::client`]) and JSON reader. The other option,
//! `--dump-dom` with a self-test in the page, only shows the DOM at one moment: it cannot type,
//! click, wait for a condition or take a screenshot mid-test, and it would put test code in
//! the page. With the protocol the test does what a person does (types and presses Enter,
//! clicks with the mouse, presses a button with the keyboard) and reads the page's counters
//! from `window.demo.snapshot()`, the test hook `src/demo/index.html` documents. Every wait
//! polls a condition until a deadline; none sleeps and hopes.
//!
//! Chromium comes from Debian (`apt-get install chromium`). Without it the test says SKIPPED
//! loudly and passes, except under `REALTIME_REQUIRE_EXTERNAL=1` (CI), where it fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{each_model, TestServer, PATIENCE};
use realtime::json::{self, Value};
use realtime::ws::client::Client;
use realtime::ws::message::Message;

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

/// A headless Chromium with a fresh profile, killed and cleaned up when dropped (also when
/// the test panics).
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn launch(program: &Path) -> Browser {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let profile = std::env::temp_dir().join(format!("realtime-demo-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&profile).expect("create a Chromium profile directory");
        let child = Command::new(program)
            .args([
                "--headless",
                // Root (CI, containers) cannot use Chromium's sandbox; this browser only ever
                // loads our own page from 127.0.0.1.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        Browser { child, profile }
    }

    /// Chromium picks a free port and writes it, and the browser target's WebSocket path, to
    /// `DevToolsActivePort` in the profile.
    fn devtools_endpoint(&mut self) -> (u16, String) {
        let file = self.profile.join("DevToolsActivePort");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(Ok(port)), Some(path)) = (lines.next().map(str::parse), lines.next()) {
                    return (port, path.to_string());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited at start-up: {status}");
            }
            assert!(Instant::now() < deadline, "chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connects to the browser and opens a page target to drive.
    fn open_page(mut self) -> DevTools {
        let (port, path) = self.devtools_endpoint();
        let client = Client::connect(&format!("127.0.0.1:{port}"), &path).expect("DevTools WebSocket");
        client.stream().set_read_timeout(Some(PATIENCE)).unwrap();
        let mut devtools = DevTools { client, next_id: 0, session: None, events: Vec::new(), browser: self };
        let target = devtools.call("Target.createTarget", r#"{"url":"about:blank"}"#);
        let target_id = target.get("targetId").and_then(Value::as_str).expect("a targetId").to_string();
        // flatten: the page's messages travel on this same socket, tagged with a sessionId.
        let attached =
            devtools.call("Target.attachToTarget", &format!(r#"{{"targetId":"{target_id}","flatten":true}}"#));
        devtools.session = Some(attached.get("sessionId").and_then(Value::as_str).expect("a sessionId").to_string());
        for domain in ["Page", "Runtime", "Log"] {
            devtools.call(&format!("{domain}.enable"), "{}");
        }
        devtools
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Give a Browser.close a moment to finish, then make sure.
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.profile);
    }
}

/// One DevTools protocol connection, attached to one page.
struct DevTools {
    client: Client,
    next_id: u64,
    /// The page's session on the browser connection (`Target.attachToTarget`).
    session: Option<String>,
    /// Events that arrived while waiting for answers: console messages and log entries.
    events: Vec<Value>,
    /// Dropped after the connection, so that the browser outlives the socket.
    browser: Browser,
}

impl DevTools {
    /// Sends a command and returns its `result`, keeping the events that arrive meanwhile.
    fn call(&mut self, method: &str, params: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = format!(r#"{{"id":{id},"method":"{method}","params":{params}"#);
        if let Some(session) = &self.session {
            command.push_str(&format!(r#","sessionId":"{session}""#));
        }
        command.push('}');
        self.client.send_text(&command).expect("send a DevTools command");
        loop {
            let text = match self.client.next_message() {
                Ok(Message::Text(text)) => text,
                Ok(Message::Binary(_)) => continue,
                Err(error) => panic!("DevTools connection failed waiting for {method}: {error}"),
            };
            let message = json::parse(&text).unwrap_or_else(|e| panic!("DevTools sent bad JSON ({e})"));
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                self.events.push(message);
                continue;
            }
            if let Some(error) = message.get("error") {
                panic!("{method} failed: {error:?}");
            }
            return message.get("result").cloned().unwrap_or(Value::Null);
        }
    }

    /// Evaluates an expression in the page (awaiting a promise) and returns it as a string.
    fn evaluate(&mut self, expression: &str) -> String {
        let mut params = String::from(r#"{"expression":"#);
        json::write_string(&mut params, &format!("(async () => String(await ({expression})))()"));
        params.push_str(r#","awaitPromise":true,"returnByValue":true}"#);
        let result = self.call("Runtime.evaluate", &params);
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception:?}");
        }
        let value = result.get("result").and_then(|r| r.get("value")).and_then(Value::as_str);
        value.unwrap_or_else(|| panic!("{expression} gave no string: {result:?}")).to_string()
    }

    /// The page's counters, from the test hook.
    fn snapshot(&mut self) -> Value {
        let text = self.evaluate("window.demo ? JSON.stringify(window.demo.snapshot()) : 'null'");
        json::parse(&text).expect("the snapshot is JSON")
    }

    /// Polls the page's counters until `condition` holds, failing after `PATIENCE`.
    fn wait_for(&mut self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let snapshot = self.snapshot();
            if snapshot != Value::Null && condition(&snapshot) {
                return snapshot;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the page shows {snapshot:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn set_viewport(&mut self, (width, height): (u32, u32)) {
        let params = format!(r#"{{"width":{width},"height":{height},"deviceScaleFactor":1,"mobile":{}}}"#, width < 800);
        self.call("Emulation.setDeviceMetricsOverride", &params);
    }

    /// The centre of the element `selector` matches, scrolled into view.
    fn centre_of(&mut self, selector: &str) -> (f64, f64) {
        let mut quoted = String::new();
        json::write_string(&mut quoted, selector);
        let point = self.evaluate(&format!(
            "(() => {{ const e = document.querySelector({quoted}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return `${{r.x + r.width / 2}} ${{r.y + r.height / 2}}`; }})()"
        ));
        let (x, y) = point.split_once(' ').expect("two coordinates");
        (x.parse().expect("x"), y.parse().expect("y"))
    }

    /// A left click, as the mouse makes it: press and release at the element's centre.
    fn click(&mut self, selector: &str) {
        let (x, y) = self.centre_of(selector);
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                &format!(r#"{{"type":"{kind}","x":{x},"y":{y},"button":"left","clickCount":1}}"#),
            );
        }
    }

    fn press_enter(&mut self) {
        self.call(
            "Input.dispatchKeyEvent",
            r#"{"type":"keyDown","key":"Enter","code":"Enter","windowsVirtualKeyCode":13,"text":"\r"}"#,
        );
        self.call(
            "Input.dispatchKeyEvent",
            r#"{"type":"keyUp","key":"Enter","code":"Enter","windowsVirtualKeyCode":13}"#,
        );
    }

    fn focus(&mut self, selector: &str) {
        let mut quoted = String::new();
        json::write_string(&mut quoted, selector);
        self.evaluate(&format!("document.querySelector({quoted}).focus()"));
    }

    /// Focuses a button and presses Enter on it: the page must work without a mouse.
    fn press_with_keyboard(&mut self, selector: &str) {
        self.focus(selector);
        self.press_enter();
    }

    /// Types into a text field as a keyboard would, then presses Enter.
    fn type_and_press_enter(&mut self, selector: &str, text: &str) {
        self.focus(selector);
        let mut params = String::from(r#"{"text":"#);
        json::write_string(&mut params, text);
        params.push('}');
        self.call("Input.insertText", &params);
        self.press_enter();
    }

    fn screenshot(&mut self, path: &Path) {
        let result = self.call("Page.captureScreenshot", r#"{"format":"png","captureBeyondViewport":true}"#);
        let data = result.get("data").and_then(Value::as_str).expect("screenshot data");
        let png = STANDARD.decode(data).expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        fs::write(path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
    }

    /// Console errors and warnings and browser log entries at warning level or above: a CSP
    /// violation, a failed load or an uncaught exception shows up here.
    fn console_problems(&mut self) -> Vec<String> {
        self.call("Runtime.evaluate", r#"{"expression":"0"}"#); // collect whatever is pending
        let mut problems = Vec::new();
        for event in &self.events {
            let params = event.get("params");
            let method = event.get("method").and_then(Value::as_str).unwrap_or_default();
            let (level, text) = match method {
                "Runtime.consoleAPICalled" => {
                    let args = params.and_then(|p| p.get("args")).and_then(Value::as_array).unwrap_or_default();
                    let text = args.iter().filter_map(|a| a.get("value").and_then(Value::as_str)).collect::<Vec<_>>();
                    (params.and_then(|p| p.get("type")).and_then(Value::as_str), text.join(" "))
                }
                "Log.entryAdded" => {
                    let entry = params.and_then(|p| p.get("entry"));
                    let text = entry.and_then(|e| e.get("text")).and_then(Value::as_str).unwrap_or_default();
                    (entry.and_then(|e| e.get("level")).and_then(Value::as_str), text.to_string())
                }
                "Runtime.exceptionThrown" => (Some("error"), format!("{params:?}")),
                _ => continue,
            };
            if matches!(level, Some("error" | "warning")) {
                problems.push(format!("{method}: {text}"));
            }
        }
        problems
    }

    /// Asks the browser to quit; the `Browser` guard waits for it, and kills it if need be.
    fn close_browser(mut self) {
        self.client.send_text(r#"{"id":0,"method":"Browser.close","params":{}}"#).ok();
        drop(self.client);
        drop(self.browser);
    }
}
