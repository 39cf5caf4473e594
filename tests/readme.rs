//! The README's shell walkthroughs, run as a new user would run them: in order, in one shell,
//! each command's output checked against the lines the README shows under it.
//!
//! **How the README marks them.** A fenced `sh` block right after
//! `<!-- walkthrough: NAME -->` is a transcript: a line starting with `$ ` is a command, and the
//! lines under it, up to the next command, are what it prints. A command ending in `&` runs in
//! the background (a terminal of its own, for a reader), and the lines under it are what it has
//! printed by the end. Blocks with the same NAME run in one `bash`, in the README's order. A
//! transcript that cannot run here says why instead: `<!-- not run: REASON -->`.
//!
//! **What is substituted.** The built binary is on `PATH` as `realtime`, and also at
//! `target/release/realtime` in the scratch directory the shell starts in (standing for the
//! repository root, with `examples/nginx.conf`); `cargo build --release` is a no-op and
//! `cargo run --release --` is `realtime`. The fixed ports (8080 to 8083 and Redis's 6379) become
//! free ones, so that the test runs beside anything else on the machine, the nginx config
//! included, and `/tmp/realtime-nginx` a directory of the scratch one. Ids and times differ on
//! every run: an id printed where the README shows one is paired with it (the README's
//! `07ni-2` is whatever the server answered in its place, the same one every time it appears,
//! commands included), and `"time"` values are not compared.
//!
//! **Where a person is slower than a script.** A reader starts a server and then uses it; a
//! reader's background subscriber is following before the next command is typed. The test
//! waits for the same: after a server (`/readyz` answers 200), Redis or nginx (the port
//! accepts) starts, and after a follower starts (`realtime sub`, `curl` on `/sse/` or
//! `/poll/`), until a node's `/metrics` shows one more stream opened or poll parked. Before a
//! `kill`, it waits for the background commands' output to be complete. Every wait is bounded.
//!
//! **What runs before.** The single-node walkthroughs talk to the server of "Two commands"
//! (`cargo run --release`, not a transcript: its other line is `cargo test`), which the test
//! starts first: on the memory broker, and once more with `--broker redis://...` against a
//! `redis-server` of its own, since the README's promises hold on both. The Redis walkthrough
//! starts its own processes. A test needing `curl`, `redis-server` or `nginx` skips loudly
//! without them (`common::external_program`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::PATIENCE;

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

/// The ports the README uses, each replaced by a free one.
const README_PORTS: [u16; 5] = [8080, 8081, 8082, 8083, 6379];

/// One command of a transcript and the lines the README shows under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The transcripts of the README marked `<!-- walkthrough: NAME -->`, in order, as steps.
fn walkthrough(readme: &str, name: &str) -> Vec<Step> {
    let marker = format!("<!-- walkthrough: {name} -->");
    let mut steps = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != marker {
            continue;
        }
        assert_eq!(lines.next().map(str::trim), Some("```sh"), "{marker} must be followed by a ```sh block");
        for line in lines.by_ref().take_while(|line| line.trim() != "```") {
            match line.strip_prefix("$ ") {
                Some(command) => {
                    assert!(!command.ends_with('\\'), "one line per command: {command}");
                    steps.push(Step { command: command.to_string(), expected: Vec::new() });
                }
                None => steps
                    .last_mut()
                    .unwrap_or_else(|| panic!("{marker}: output before any command: {line:?}"))
                    .expected
                    .push(line.to_string()),
            }
        }
    }
    assert!(!steps.is_empty(), "no block marked {marker} in README.md");
    steps
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md")
}

/// The command without its comment and its trailing `&`, and whether it had one.
fn split_background(command: &str) -> (String, bool) {
    // A comment starts at ` # ` (no command in the README has one inside quotes).
    let code = command.find(" # ").map_or(command, |at| &command[..at]).trim_end();
    match code.strip_suffix('&') {
        Some(code) if !code.ends_with('&') => (code.trim_end().to_string(), true),
        _ => (code.to_string(), false),
    }
}

/// Where an id starts and ends in `text`: a memory id (`{4 of 0-9 a-z}-{seq}`) or a Redis stream
/// id (`{ms}-{seq}`, at least 10 digits of milliseconds), not inside a longer word.
fn ids(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if i > 0 && word(bytes[i - 1]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j].is_ascii_lowercase()) {
            j += 1;
        }
        let mut k = j + 1;
        while k < bytes.len() && bytes[k].is_ascii_digit() {
            k += 1;
        }
        let prefix = &bytes[i..j];
        let is_id = j < bytes.len()
            && bytes[j] == b'-'
            && k > j + 1
            && (k == bytes.len() || !word(bytes[k]))
            && (prefix.len() == 4 || (prefix.len() >= 10 && prefix.iter().all(u8::is_ascii_digit)));
        if is_id {
            found.push((i, k));
            i = k;
        } else {
            i += 1;
        }
    }
    found
}

/// `"time":N` with N left out: it is the clock's, not the README's.
fn without_times(line: &str) -> String {
    const KEY: &str = "\"time\":";
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        out.push('T');
        rest = rest[at + KEY.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// The README's ids paired with the ones the servers answered, both ways, so that a README id
/// stands for one real id and no real id for two README ids.
#[derive(Default)]
struct Ids {
    real: HashMap<String, String>,
    readme: HashMap<String, String>,
}

impl Ids {
    fn pair(&mut self, readme_id: &str, real_id: &str) -> Result<(), String> {
        if let Some(known) = self.real.get(readme_id).filter(|known| *known != real_id) {
            return Err(format!("the README's {readme_id} was {known} before, and is {real_id} here"));
        }
        if let Some(back) = self.readme.get(real_id).filter(|back| *back != readme_id) {
            return Err(format!("{real_id} stood for the README's {back} before, and for {readme_id} here"));
        }
        self.real.insert(readme_id.to_string(), real_id.to_string());
        self.readme.insert(real_id.to_string(), readme_id.to_string());
        Ok(())
    }

    /// `text` with every README id replaced by its real one.
    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut last = 0;
        for (start, end) in ids(text) {
            let id = &text[start..end];
            let real = self.real.get(id).ok_or(format!("{id} is used before any output showed it"))?;
            out.push_str(&text[last..start]);
            out.push_str(real);
            last = end;
        }
        out.push_str(&text[last..]);
        Ok(out)
    }

    /// Checks `actual` against `expected` (all of it, or its first lines for a background
    /// command that may go on printing), pairing the ids they show.
    fn check(&mut self, step: &Step, actual: &str, prefix: bool) -> Result<(), String> {
        let actual: Vec<String> = actual.lines().map(without_times).collect();
        let expected: Vec<String> = step.expected.iter().map(|line| without_times(line)).collect();
        let compared = if prefix { actual.len().min(expected.len()) } else { actual.len() };
        let mismatch = || {
            format!(
                "`{}` printed\n{}\nwhere the README shows\n{}",
                step.command,
                actual.join("\n"),
                expected.join("\n")
            )
        };
        if compared != expected.len() {
            return Err(mismatch());
        }
        for (want, got) in expected.iter().zip(&actual) {
            let (want_ids, got_ids) = (ids(want), ids(got));
            if want_ids.len() != got_ids.len() {
                return Err(mismatch());
            }
            for (&(ws, we), &(gs, ge)) in want_ids.iter().zip(&got_ids) {
                self.pair(&want[ws..we], &got[gs..ge]).map_err(|why| format!("{why}\n{}", mismatch()))?;
            }
            if self.substitute(want)? != *got {
                return Err(mismatch());
            }
        }
        Ok(())
    }
}

/// A port nobody listens on now, for each of the README's.
fn free_ports() -> HashMap<u16, u16> {
    let listeners: Vec<TcpListener> = README_PORTS.iter().map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    README_PORTS.iter().zip(&listeners).map(|(&port, l)| (port, l.local_addr().unwrap().port())).collect()
}

/// `text` with each of the README's ports, as a whole number, replaced by its free one.
fn with_ports(text: &str, ports: &HashMap<u16, u16>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        let starts_number = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric());
        if starts_number {
            let end = (i..text.len()).find(|&j| !bytes[j].is_ascii_digit()).unwrap_or(text.len());
            let number = &text[i..end];
            let after_ok = end == text.len() || !bytes[end].is_ascii_alphanumeric() && bytes[end] != b'-';
            match number.parse::<u16>().ok().and_then(|n| ports.get(&n)).filter(|_| after_ok) {
                Some(free) => out.push_str(&free.to_string()),
                None => out.push_str(number),
            }
            i = end;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// A plain GET on a fresh connection: the status and the body, or `None` if nothing answered.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let response = common::read_response(&mut stream, false).ok()?;
    Some((response.status, response.text()))
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Streams opened (SSE heads and WebSocket 101s sent) and polls parked, over `nodes`: what
/// grows by one when a follower has started following.
fn followers(nodes: &[u16]) -> u64 {
    let mut sum = 0;
    for &node in nodes {
        let Some((200, metrics)) = get(node, "/metrics") else { continue };
        for line in metrics.lines() {
            let counted = line.starts_with("realtime_request_duration_seconds_count{route=\"sse\"}")
                || line.starts_with("realtime_request_duration_seconds_count{route=\"ws\"}")
                || line.starts_with("realtime_parked_polls ");
            if counted {
                sum += line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    sum
}

fn wait_for(what: &str, log: &dyn Fn() -> String, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A background command, to be checked once the walkthrough is over.
struct Background {
    step: usize,
    output: PathBuf,
}

/// One `bash`, in a scratch directory, in a process group of its own: every process a
/// walkthrough starts is in it, and dropping the shell ends them all.
struct Shell {
    dir: PathBuf,
    bash: Child,
    stdin: ChildStdin,
    markers: Receiver<String>,
    ports: HashMap<u16, u16>,
    /// The realtime servers started so far, by port.
    nodes: Vec<u16>,
    background: Vec<Background>,
    steps: Vec<Step>,
    ids: Ids,
}

impl Shell {
    fn start(name: &str) -> Shell {
        let dir = std::env::temp_dir().join(format!("realtime-readme-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["out", "bin", "target/release", "examples", "nginx"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for link in ["bin/realtime", "target/release/realtime"] {
            std::os::unix::fs::symlink(BIN, dir.join(link)).unwrap();
        }
        let ports = free_ports();
        let nginx_conf = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nginx.conf"));
        std::fs::write(dir.join("examples/nginx.conf"), with_ports(&nginx_conf.expect("examples/nginx.conf"), &ports))
            .unwrap();
        let path = format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut bash = Command::new("bash");
        // The servers read REALTIME_* variables: none of the test's own may reach them.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REALTIME_") {
                bash.env_remove(name);
            }
        }
        let mut bash = bash
            .args(["--noprofile", "--norc"])
            .current_dir(&dir)
            .env("PATH", path)
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("bash.stderr")).unwrap())
            .process_group(0)
            .spawn()
            .expect("bash");
        let stdin = bash.stdin.take().unwrap();
        let stdout = BufReader::new(bash.stdout.take().unwrap());
        let (sender, markers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Shell {
            dir,
            bash,
            stdin,
            markers,
            ports,
            nodes: Vec::new(),
            background: Vec::new(),
            steps: Vec::new(),
            ids: Ids::default(),
        }
    }

    fn send(&mut self, text: &str) {
        self.stdin.write_all(text.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn marker(&mut self, want: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.markers.recv_timeout(left) {
                Ok(line) if line.starts_with(want) => return line,
                Ok(_) => {}
                Err(_) => panic!("the shell did not finish a command in {PATIENCE:?}\n{}", self.log()),
            }
        }
    }

    fn output(&self, step: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("out/{step}"))).unwrap_or_default()
    }

    /// Every command so far and what it printed, for a failure's message.
    fn log(&self) -> String {
        let mut log = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            let output = self.output(i);
            let end = if output.is_empty() || output.ends_with('\n') { "" } else { "\n" };
            log.push_str(&format!("$ {}\n{output}{end}", step.command));
        }
        let stderr = std::fs::read_to_string(self.dir.join("bash.stderr")).unwrap_or_default();
        format!("--- the walkthrough so far:\n{log}--- bash's stderr:\n{stderr}")
    }

    /// Runs one step of a transcript, as the README writes it.
    fn run(&mut self, step: Step) {
        let command = with_ports(&step.command, &self.ports)
            .replace("cargo build --release", "true")
            .replace("cargo run -q --release --", "realtime")
            .replace("cargo run --release --", "realtime")
            .replace("/tmp/realtime-nginx", &self.dir.join("nginx").display().to_string());
        let command = self.ids.substitute(&command).unwrap_or_else(|why| panic!("{why}\n{}", self.log()));
        let (code, background) = split_background(&command);
        let i = self.steps.len();
        let words: Vec<&str> = code.split_whitespace().collect();
        let follower = background
            && (code.contains("realtime sub ")
                || (words[0] == "curl" && (code.contains("/sse/") || code.contains("/poll/"))));
        let before = if follower { followers(&self.nodes) } else { 0 };
        if words[0] == "kill" {
            self.await_background();
        }
        self.steps.push(step);
        // Braces, not a subshell: a variable the command sets (`T=$(...)`) stays set.
        if background {
            self.send(&format!("{{ {code}\n}} >out/{i} 2>&1 &\necho @@done {i}\n"));
            self.marker(&format!("@@done {i}"));
            self.background.push(Background { step: i, output: self.dir.join(format!("out/{i}")) });
        } else {
            self.send(&format!("{{ {code}\n}} >out/{i} 2>&1\necho @@done {i} $?\n"));
            let done = self.marker(&format!("@@done {i} "));
            assert!(done.ends_with(" 0"), "`{command}` failed ({done})\n{}", self.log());
            let (step, output) = (&self.steps[i], self.output(i));
            if let Err(why) = self.ids.check(step, &output, false) {
                panic!("{why}\n{}", self.log());
            }
        }
        if !background {
            return;
        }
        let log = || self.log();
        let port_after = |flag: &str| -> Option<u16> {
            let at = words.iter().position(|w| *w == flag)?;
            words.get(at + 1)?.rsplit(':').next()?.parse().ok()
        };
        if words.contains(&"serve") {
            let port = port_after("--addr").unwrap_or(self.ports[&8080]);
            wait_for("a server to be ready", &log, || get(port, "/readyz").is_some_and(|(status, _)| status == 200));
            self.nodes.push(port);
        } else if words[0] == "redis-server" {
            let port = port_after("--port").expect("redis-server --port");
            wait_for("redis-server to listen", &log, || accepts(port));
        } else if words[0] == "nginx" {
            let port = self.ports[&8080];
            wait_for("nginx to listen", &log, || accepts(port));
        } else if follower {
            let nodes = self.nodes.clone();
            wait_for("the follower to follow", &log, || followers(&nodes) > before);
        }
    }

    /// Waits until every background command has printed as many lines as the README shows
    /// under it.
    fn await_background(&self) {
        for background in &self.background {
            let want = self.steps[background.step].expected.len();
            let log = || self.log();
            wait_for(&format!("the output of `{}`", self.steps[background.step].command), &log, || {
                std::fs::read_to_string(&background.output).unwrap_or_default().lines().count() >= want
            });
        }
    }

    /// Checks what every background command printed.
    fn finish(mut self) {
        self.await_background();
        for background in std::mem::take(&mut self.background) {
            let output = self.output(background.step);
            if let Err(why) = self.ids.check(&self.steps[background.step], &output, true) {
                panic!("{why}\n{}", self.log());
            }
        }
    }
}

impl Drop for Shell {
    /// Ends the whole process group: the shell, the servers, Redis, nginx, any follower.
    fn drop(&mut self) {
        let group = format!("-{}", self.bash.id());
        let signal = |name: &str| Command::new("kill").args([name, "--", &group]).stderr(Stdio::null()).status();
        let _ = signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while signal("-0").is_ok_and(|status| status.success()) && Instant::now() < deadline {
            let _ = self.bash.try_wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = signal("-KILL");
        let _ = self.bash.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs the single-node walkthroughs against the server of "Two commands", started with
/// `extra` options (a broker).
fn run_single_node(name: &str, prelude: &[&str]) {
    let mut shell = Shell::start(name);
    for command in prelude {
        shell.run(Step { command: command.to_string(), expected: Vec::new() });
    }
    for step in walkthrough(&readme(), "single-node") {
        shell.run(step);
    }
    shell.finish();
}

#[test]
fn the_single_node_walkthroughs_print_what_the_readme_shows_on_the_memory_broker() {
    if common::external_program("curl").is_none() {
        return;
    }
    run_single_node("memory", &["realtime serve --addr 127.0.0.1:8080 &"]);
}

#[test]
fn the_single_node_walkthroughs_print_what_the_readme_shows_on_the_redis_broker() {
    if common::external_program("curl").is_none() || common::external_program("redis-server").is_none() {
        return;
    }
    run_single_node(
        "redis-single",
        &[
            "redis-server --port 6379 --save '' --appendonly no --logfile redis.log &",
            "realtime serve --addr 127.0.0.1:8080 --broker redis://127.0.0.1:6379 &",
        ],
    );
}

#[test]
fn the_redis_and_nginx_walkthrough_prints_what_the_readme_shows() {
    for program in ["curl", "redis-server", "nginx"] {
        if common::external_program(program).is_none() {
            return;
        }
    }
    let mut shell = Shell::start("redis-nginx");
    for step in walkthrough(&readme(), "redis") {
        shell.run(step);
    }
    shell.finish();
}

#[test]
fn every_transcript_in_the_readme_is_run_or_says_why_not() {
    let readme = readme();
    let lines: Vec<&str> = readme.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "```sh" {
            continue;
        }
        let body = lines[i + 1..].iter().take_while(|l| l.trim() != "```");
        let is_transcript = body.clone().any(|l| l.starts_with("$ "));
        let marker = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).copied().unwrap_or_default();
        let marked = marker.starts_with("<!-- walkthrough: ") || marker.starts_with("<!-- not run: ");
        assert!(
            !is_transcript || marked,
            "README.md line {}: a transcript needs <!-- walkthrough: NAME --> or <!-- not run: REASON --> before it",
            i + 1
        );
    }
}

#[test]
fn ids_in_output_are_recognised_as_the_brokers_write_them() {
    let text = r#"{"id":"07ni-2","cursor":"1795868883511-0"} since=k3f9-17 user.42.inbox 8080 -w '%{http_code}'"#;
    let found: Vec<&str> = ids(text).into_iter().map(|(s, e)| &text[s..e]).collect();
    assert_eq!(found, ["07ni-2", "1795868883511-0", "k3f9-17"]);
    assert_eq!(without_times(r#"[{"time":1795868883503},{"time":1}]"#), r#"[{"time":T},{"time":T}]"#);
    let ports = HashMap::from([(8080, 40001), (6379, 40002)]);
    assert_eq!(
        with_ports("127.0.0.1:8080/x redis://127.0.0.1:6379 18080 8080a 1795868880800-0", &ports),
        "127.0.0.1:40001/x redis://127.0.0.1:40002 18080 8080a 1795868880800-0"
    );
}
