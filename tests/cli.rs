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
    let mut child = Command::new(BIN).args(["serve", "--addr", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn().unwrap();
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
