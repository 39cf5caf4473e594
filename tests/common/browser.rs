//! Headless Chromium driven over the Chrome DevTools Protocol: JSON over a WebSocket, spoken by
//! the crate's own WebSocket client ([`realtime::ws::client`]) and JSON reader. Shared by the
//! browser tests (`tests/demo_browser.rs`, `tests/cross_origin_browser.rs`).
//!
//! Why the protocol rather than `--dump-dom` with a self-test in the page: a dump only shows the
//! DOM at one moment. It cannot type, click, wait for a condition or take a screenshot
//! mid-test, and it would put test code in the page. With the protocol the test does what a
//! person does, and evaluates script in the page, awaiting its promises. Every wait polls a
//! condition until a deadline; none sleeps and hopes.
//!
//! Chromium comes from Debian (`apt-get install chromium`); find it with
//! `common::external_program("chromium")`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use realtime::json::{self, Value};
use realtime::ws::client::Client;
use realtime::ws::message::Message;

use super::PATIENCE;

/// How long the DevTools connection waits for one answer. Longer than [`PATIENCE`], so that an
/// expression whose own wait in the page is bounded by `PATIENCE` can still report that it
/// timed out, instead of the protocol connection giving up first.
const DEVTOOLS_PATIENCE: Duration = Duration::from_secs(PATIENCE.as_secs() * 2);

/// A headless Chromium with a fresh profile, killed and cleaned up when dropped (also when
/// the test panics).
pub struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    pub fn launch(program: &Path) -> Browser {
        Browser::launch_with(program, &[])
    }

    /// [`Browser::launch`] with more command-line switches (`--ignore-certificate-errors` for
    /// a test's self-signed certificate).
    pub fn launch_with(program: &Path, extra: &[&str]) -> Browser {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let profile = std::env::temp_dir().join(format!("realtime-browser-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&profile).expect("create a Chromium profile directory");
        let child = Command::new(program)
            .args([
                "--headless",
                // Root (CI, containers) cannot use Chromium's sandbox; this browser only ever
                // loads pages the tests serve themselves from 127.0.0.1.
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
            .args(extra)
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
    pub fn open_page(mut self) -> DevTools {
        let (port, path) = self.devtools_endpoint();
        let client = Client::connect(&format!("127.0.0.1:{port}"), &path).expect("DevTools WebSocket");
        client.stream().set_read_timeout(Some(DEVTOOLS_PATIENCE)).unwrap();
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
pub struct DevTools {
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
    pub fn call(&mut self, method: &str, params: &str) -> Value {
        self.try_call(method, params).unwrap_or_else(|error| panic!("{method} failed: {error:?}"))
    }

    /// Like [`DevTools::call`], but a protocol error (say, "Execution context was destroyed"
    /// while a navigation replaces the page) is returned rather than fatal.
    pub fn try_call(&mut self, method: &str, params: &str) -> Result<Value, Value> {
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
                return Err(error.clone());
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// Evaluates an expression in the page (awaiting a promise) and returns it as a string.
    pub fn evaluate(&mut self, expression: &str) -> String {
        let value = self.evaluate_async(&format!("(async () => String(await ({expression})))()"));
        value.as_str().unwrap_or_else(|| panic!("{expression} gave no string: {value:?}")).to_string()
    }

    /// Evaluates an expression in the page with `Runtime.evaluate`, awaiting it if it is a
    /// promise (`awaitPromise`), and returns its value as JSON (`returnByValue`): objects,
    /// arrays, strings, numbers, booleans; `undefined` is `Null`. An exception, or a rejected
    /// promise, fails the test with the page's description of it.
    pub fn evaluate_async(&mut self, expression: &str) -> Value {
        let mut params = String::from(r#"{"expression":"#);
        json::write_string(&mut params, expression);
        params.push_str(r#","awaitPromise":true,"returnByValue":true}"#);
        let result = self.call("Runtime.evaluate", &params);
        if let Some(exception) = result.get("exceptionDetails") {
            let description = exception.get("exception").and_then(|e| e.get("description")).and_then(Value::as_str);
            let text = exception.get("text").and_then(Value::as_str);
            panic!("{expression} threw: {}", description.or(text).unwrap_or("(no description)"));
        }
        result.get("result").and_then(|r| r.get("value")).cloned().unwrap_or(Value::Null)
    }

    /// Polls `expression` (which must give a JSON text, or `'null'` for "not yet") until
    /// `condition` holds of its value, failing after `PATIENCE`; returns the value.
    pub fn wait_until(&mut self, what: &str, expression: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.evaluate(expression);
            let value = json::parse(&text).unwrap_or_else(|e| panic!("{expression} is not JSON ({e}): {text}"));
            if value != Value::Null && condition(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the page shows {value:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Loads `url` in the page and waits until it has loaded (`document.readyState` is
    /// `complete` at that address).
    pub fn navigate(&mut self, url: &str) {
        let mut params = String::from(r#"{"url":"#);
        json::write_string(&mut params, url);
        params.push('}');
        let result = self.call("Page.navigate", &params);
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url} failed: {error}");
        }
        let probe = r#"{"expression":"location.href + ' ' + document.readyState","returnByValue":true}"#;
        let loaded = format!("{url} complete");
        let deadline = Instant::now() + PATIENCE;
        loop {
            // While the old document is replaced, an evaluation can fail: that is "not yet".
            let state = self.try_call("Runtime.evaluate", probe).ok();
            let state = state.as_ref().and_then(|r| r.get("result")).and_then(|r| r.get("value"));
            let state = state.and_then(Value::as_str).unwrap_or_default().to_string();
            if state == loaded {
                return;
            }
            assert!(Instant::now() < deadline, "{url} did not load; the page is at {state:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn set_viewport(&mut self, (width, height): (u32, u32)) {
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
    pub fn click(&mut self, selector: &str) {
        let (x, y) = self.centre_of(selector);
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                &format!(r#"{{"type":"{kind}","x":{x},"y":{y},"button":"left","clickCount":1}}"#),
            );
        }
    }

    pub fn press_enter(&mut self) {
        self.call(
            "Input.dispatchKeyEvent",
            r#"{"type":"keyDown","key":"Enter","code":"Enter","windowsVirtualKeyCode":13,"text":"\r"}"#,
        );
        self.call(
            "Input.dispatchKeyEvent",
            r#"{"type":"keyUp","key":"Enter","code":"Enter","windowsVirtualKeyCode":13}"#,
        );
    }

    pub fn focus(&mut self, selector: &str) {
        let mut quoted = String::new();
        json::write_string(&mut quoted, selector);
        self.evaluate(&format!("document.querySelector({quoted}).focus()"));
    }

    /// Focuses a button and presses Enter on it: the page must work without a mouse.
    pub fn press_with_keyboard(&mut self, selector: &str) {
        self.focus(selector);
        self.press_enter();
    }

    /// Types into a text field as a keyboard would, then presses Enter.
    pub fn type_and_press_enter(&mut self, selector: &str, text: &str) {
        self.focus(selector);
        let mut params = String::from(r#"{"text":"#);
        json::write_string(&mut params, text);
        params.push('}');
        self.call("Input.insertText", &params);
        self.press_enter();
    }

    pub fn screenshot(&mut self, path: &Path) {
        let result = self.call("Page.captureScreenshot", r#"{"format":"png","captureBeyondViewport":true}"#);
        let data = result.get("data").and_then(Value::as_str).expect("screenshot data");
        let png = STANDARD.decode(data).expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        fs::write(path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
    }

    /// Console errors and warnings and browser log entries at warning level or above: a CSP
    /// violation, a failed load, a request blocked by CORS or an uncaught exception shows up
    /// here.
    pub fn console_problems(&mut self) -> Vec<String> {
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

    /// Forgets the events collected so far, so that [`DevTools::console_problems`] reports
    /// only what happens from now on.
    pub fn clear_events(&mut self) {
        self.call("Runtime.evaluate", r#"{"expression":"0"}"#);
        self.events.clear();
    }

    /// Asks the browser to quit; the `Browser` guard waits for it, and kills it if need be.
    pub fn close_browser(mut self) {
        self.client.send_text(r#"{"id":0,"method":"Browser.close","params":{}}"#).ok();
        drop(self.client);
        drop(self.browser);
    }
}

/// `value` as compact JSON text, for failure messages that show what the page saw.
pub fn to_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => json::write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json::write_string(out, key);
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
    }
}
