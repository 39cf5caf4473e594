//! The `realtime` binary: its command line and its graceful shutdown on SIGTERM/SIGINT.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use realtime::token::verify;

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

#[test]
fn help_prints_usage_and_exits_0() {
    for args in [&["--help"][..], &["serve", "--help"]] {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage:"));
    }
}

#[test]
fn bad_flags_are_a_one_line_error_and_exit_2() {
    for args in [&["--frobnicate"][..], &["serve", "--history", "lots"], &["dance"]] {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

/// Starts the binary on a free port and returns it with the address it printed.
fn spawn_server() -> (Child, String) {
    spawn_server_with(&["serve", "--addr", "127.0.0.1:0"], &[])
}

/// Starts the binary with `args` and `environment` and returns it with the address it printed.
fn spawn_server_with(args: &[&str], environment: &[(&str, &str)]) -> (Child, String) {
    let mut child =
        Command::new(BIN).args(args).envs(environment.iter().copied()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, addr)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_answers_parked_polls_and_exits_0() {
    for name in ["TERM", "INT"] {
        let (mut child, addr) = spawn_server();
        let mut poll = TcpStream::connect(&addr).unwrap();
        poll.set_read_timeout(Some(common::PATIENCE)).unwrap();
        poll.write_all(b"GET /poll/bye HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        common::eventually("the poll parks", || {
            let Ok(mut stats) = TcpStream::connect(&addr) else { return false };
            stats.set_read_timeout(Some(common::PATIENCE)).unwrap();
            stats.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let stats = common::read_response(&mut stats, false).unwrap().json();
            stats.get("parked_polls").and_then(|v| v.as_u64()) == Some(1)
        });
        signal(&child, name);
        let answer = common::read_response(&mut poll, false).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection"), Some("close"));
        let mut waited = Duration::ZERO;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(waited < common::PATIENCE, "the server did not exit after SIG{name}");
            std::thread::sleep(Duration::from_millis(20));
            waited += Duration::from_millis(20);
        };
        assert!(status.success(), "SIG{name}: {status}");
    }
}

/// A secret long enough for HS256 (RFC 7518 §3.2: at least 32 bytes).
const TOKEN_SECRET: &str = "cli-test-secret-at-least-32-bytes";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Runs `realtime token ARGS`; the token it printed, checked to be one line.
fn print_token(args: &[&str]) -> String {
    let output = Command::new(BIN).arg("token").args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.strip_suffix('\n').unwrap_or_else(|| panic!("no newline after {stdout:?}"));
    assert!(!token.is_empty() && !token.contains('\n'), "{stdout:?}");
    token.to_string()
}

#[test]
fn token_prints_a_token_that_verifies_with_the_claims_asked_for() {
    let before = unix_now();
    let args = [
        "--secret",
        TOKEN_SECRET,
        "--sub",
        "alice",
        "--channels",
        "user.42.*,news",
        "--publish",
        "chat",
        "--ttl",
        "120",
    ];
    let token = print_token(&args);
    let after = unix_now();
    let claims = verify(&token, TOKEN_SECRET.as_bytes(), after).unwrap();
    assert!((before + 120..=after + 120).contains(&claims.exp), "exp {} not now + 120", claims.exp);
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    assert_eq!(claims.channels.iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["user.42.*", "news"]);
    assert_eq!(claims.publish.iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["chat"]);
    assert!(claims.may_subscribe("user.42.inbox") && !claims.may_subscribe("user.420"));
    assert!(claims.may_publish("chat") && !claims.may_publish("news"));
    assert!(verify(&token, b"another-secret-of-at-least-32-bytes", after).is_err());
}

#[test]
fn token_reads_its_secret_from_a_file_and_lives_an_hour_by_default() {
    let path = std::env::temp_dir().join(format!("realtime-cli-token-secret-{}", std::process::id()));
    std::fs::write(&path, format!("{TOKEN_SECRET}\n")).unwrap();
    let before = unix_now();
    let token = print_token(&["--secret-file", path.to_str().unwrap()]);
    let after = unix_now();
    std::fs::remove_file(&path).unwrap();
    let claims = verify(&token, TOKEN_SECRET.as_bytes(), after).unwrap();
    assert!((before + 3600..=after + 3600).contains(&claims.exp));
    assert_eq!((claims.sub, claims.channels, claims.publish), (None, vec![], vec![]));
}

#[test]
fn token_help_prints_usage_and_exits_0() {
    let output = Command::new(BIN).args(["token", "--help"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("Usage: realtime token"));
}

#[test]
fn token_bad_flags_are_a_one_line_error_and_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["--secret", "too-short"],
        &["--secret", TOKEN_SECRET, "--channels", "a*b"],
        &["--secret", TOKEN_SECRET, "--publish", "bad name"],
        &["--secret", TOKEN_SECRET, "--ttl", "0"],
        &["--secret", TOKEN_SECRET, "--frobnicate", "x"],
        &["--secret-file", "/nonexistent/realtime-secret"],
    ];
    for args in cases {
        let output = Command::new(BIN).arg("token").args(*args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// A server the test started, stopped when the test ends however it ends.
struct Running(Child, String);

impl Running {
    fn start(args: &[&str], environment: &[(&str, &str)]) -> Running {
        let (child, addr) = spawn_server_with(args, environment);
        Running(child, addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the binary to its end with `args` and `environment`.
fn run(args: &[&str], environment: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN).args(args).envs(environment.iter().copied()).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn version_and_v_print_the_version_and_exit_0_for_every_command() {
    let expected = format!("realtime {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["-V"], &["serve", "--version"], &["bench", "-V"], &["token", "--version"]] {
        let output = run(args, &[]);
        assert!(output.status.success(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected, "{args:?}");
    }
}

#[test]
fn a_value_may_follow_its_flag_after_an_equals_sign() {
    let server = Running::start(&["--addr=127.0.0.1:0", "--max-connections=5"], &[]);
    assert!(!server.1.ends_with(":0"), "it listens on a port the kernel chose: {}", server.1);
}

#[test]
fn an_empty_value_after_the_equals_sign_is_a_usage_error_that_says_so() {
    let output = run(&["--max-connections="], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-connections=") && stderr.contains("empty"), "{stderr}");
}

/// Whether the server at `addr` answers a new connection, while `held` is open, with 503.
fn refuses_a_second_connection(addr: &str) -> bool {
    let mut held = TcpStream::connect(addr).unwrap();
    held.set_read_timeout(Some(common::PATIENCE)).unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(common::read_response(&mut held, false).unwrap().status, 200);
    let mut second = TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(common::PATIENCE)).unwrap();
    second.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    common::read_response(&mut second, false).unwrap().status == 503
}

#[test]
fn environment_variables_set_the_flags_and_the_command_line_wins() {
    let one = [("REALTIME_ADDR", "127.0.0.1:0"), ("REALTIME_MAX_CONNECTIONS", "1")];
    let server = Running::start(&[], &one);
    assert!(refuses_a_second_connection(&server.1), "REALTIME_MAX_CONNECTIONS=1 is a limit of one");
    let server = Running::start(&["serve", "--max-connections", "10"], &one);
    assert!(!refuses_a_second_connection(&server.1), "--max-connections 10 wins over the variable");
}

#[test]
fn an_invalid_environment_value_is_a_usage_error_naming_the_variable() {
    let output = run(&["--addr", "127.0.0.1:0"], &[("REALTIME_MAX_CONNECTIONS", "lots")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REALTIME_MAX_CONNECTIONS") && stderr.contains("'lots'"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn bench_without_a_scenario_prints_its_usage_on_stderr_and_exits_2() {
    let output = run(&["bench"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage: realtime bench"));
}

#[test]
fn an_address_in_use_exits_1_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&["--addr", &addr], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {addr}: ")), "{stderr}");
}

#[test]
fn help_lists_every_bench_scenario() {
    for args in [&["--help"][..], &["bench", "--help"]] {
        let stdout = String::from_utf8(run(args, &[]).stdout).unwrap();
        for scenario in realtime::bench::SCENARIOS {
            assert!(stdout.contains(scenario.name), "{args:?} leaves out {}", scenario.name);
        }
    }
}

#[test]
fn help_documents_the_exit_codes_and_the_environment() {
    let overview = String::from_utf8(run(&["--help"], &[]).stdout).unwrap();
    assert!(overview.contains("Exit status: 0 success; 1 ") && overview.contains("2 a usage error"), "{overview}");
    let serve = String::from_utf8(run(&["serve", "--help"], &[]).stdout).unwrap();
    assert!(serve.contains("REALTIME_<OPTION>") && serve.contains("REALTIME_MAX_CONNECTIONS"), "{serve}");
}

#[test]
fn keepalive_accepts_exactly_the_range_its_message_states() {
    let output = run(&["--keepalive", "0"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("from 0.001 to 86400, got '0'"), "{stderr}");
    // Both ends of the stated range start a server.
    for keepalive in ["0.001", "86400"] {
        let _server = Running::start(&["--addr", "127.0.0.1:0", "--keepalive", keepalive], &[]);
    }
}
