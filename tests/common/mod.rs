//! What every integration suite shares: a real server on 127.0.0.1:0 for each server model,
//! and a deliberately simple HTTP/1.1 client written independently of the crate's parser (a
//! test that used the parser under test to read the answers could not catch its bugs).

#![allow(dead_code)] // each test file uses a different part of this module

/// Headless Chromium over the DevTools protocol, for the browser tests.
pub mod browser;
/// nginx in front of test servers, from a configuration in `examples/`.
pub mod nginx;
/// A strict parser of the Prometheus text format, for `/metrics`.
pub mod prometheus;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use realtime::config::{Config, Model};
use realtime::server::{RunningServer, Server};

/// Every server model; each integration test body runs against all of them.
pub const MODELS: &[Model] = &[Model::Threads, Model::EventLoop];

/// How long a test waits for an answer that should come: generous, so that a loaded CI
/// machine does not fail a correct server. Tests never assert that something was fast.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub model: Model,
    pub server: RunningServer,
}

impl TestServer {
    pub fn start(model: Model, configure: &dyn Fn(&mut Config)) -> TestServer {
        let mut config = Config { addr: "127.0.0.1:0".into(), model, ..Config::default() };
        configure(&mut config);
        let server = Server::bind(config).expect("bind 127.0.0.1:0").spawn().expect("start server");
        TestServer { model, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// A raw connection with a read timeout, so that a missing answer fails the test instead
    /// of hanging it.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr()).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// One request on a fresh connection (`Connection: close`), one response.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        let mut stream = self.connect();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr());
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        stream.write_all(head.as_bytes()).unwrap();
        read_response(&mut stream, method == "HEAD").expect("a response")
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, None)
    }

    /// Publishes `text` and returns the new message's id.
    pub fn publish(&self, channel: &str, text: &str) -> String {
        let response = self.request("POST", &format!("/publish/{channel}"), Some(text));
        assert_eq!(response.status, 201, "publish failed: {}", response.text());
        let value = realtime::json::parse(&response.text()).expect("publish answers JSON");
        value.get("id").and_then(|v| v.as_str()).expect("an id").to_string()
    }
}

/// Runs `body` once per server model, each with a fresh server configured by `configure`.
pub fn each_model(configure: impl Fn(&mut Config), body: impl Fn(&TestServer)) {
    for &model in MODELS {
        eprintln!("--- model {}", model.name());
        let server = TestServer::start(model, &configure);
        body(&server);
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header field (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> realtime::json::Value {
        realtime::json::parse(&self.text()).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Reads one response. `Err` with the bytes seen so far if the connection closed first.
pub fn read_response(stream: &mut TcpStream, head_only: bool) -> Result<HttpResponse, String> {
    let head = read_until(stream, b"\r\n\r\n")?;
    let head = String::from_utf8(head).map_err(|_| "head is not UTF-8".to_string())?;
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert_eq!(version, "HTTP/1.1", "status line {status_line:?}");
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or(format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line has a colon");
            (name.to_string(), value.trim().to_string())
        })
        .collect();
    let mut response = HttpResponse { status, headers, body: Vec::new() };
    if head_only || status < 200 || status == 204 || status == 304 {
        return Ok(response);
    }
    if response.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            let size_line = String::from_utf8(read_until(stream, b"\r\n")?).unwrap();
            let size =
                usize::from_str_radix(size_line.trim_end(), 16).map_err(|_| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                read_until(stream, b"\r\n")?; // empty trailer section
                break;
            }
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = response.header("content-length") {
        let mut body = vec![0; length.parse().unwrap()];
        stream.read_exact(&mut body).map_err(|e| e.to_string())?;
        response.body = body;
    } else {
        stream.read_to_end(&mut response.body).map_err(|e| e.to_string())?;
    }
    Ok(response)
}

/// Reads byte by byte up to and including `delimiter` (slow, simple, and never reads past
/// the end of the response).
pub fn read_until(stream: &mut TcpStream, delimiter: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(delimiter) {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("connection closed after {:?}", String::from_utf8_lossy(&out))),
            Ok(_) => out.push(byte[0]),
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&out))),
        }
    }
    Ok(out)
}

/// True if the server closed the connection (EOF or reset) without sending anything more.
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
    }
}

/// Polls `condition` until it holds or `PATIENCE` runs out.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `kill -NAME pid` (`STOP`, `CONT`); whether it was delivered.
pub fn signal(pid: u32, name: &str) -> bool {
    std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().is_ok_and(|s| s.success())
}

/// The path of an outside program a test needs (`redis-server`, `nginx`, `chromium`), found on
/// `PATH`. When it is missing the test says so loudly and the caller skips (returns early);
/// with `REALTIME_REQUIRE_EXTERNAL=1` (set by `.ci/run`, which installs them) it fails instead.
pub fn external_program(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var("REALTIME_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{name} is not installed, and REALTIME_REQUIRE_EXTERNAL=1 forbids skipping");
        }
        // Straight to the process's stderr: the test harness captures `eprintln!` and shows
        // it only for failing tests, and a skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {name} is not installed; this test did not run ***\n");
    }
    found
}

/// A port free on 127.0.0.1 now, for an outside program that cannot be told to pick its own.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A scratch directory under the system's temporary directory, removed by its owner's Drop.
pub fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "realtime-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}
