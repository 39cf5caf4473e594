//! The `realtime` binary: its command line and its graceful shutdown on SIGTERM/SIGINT.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
