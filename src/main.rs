//! The `realtime` command: `realtime [serve] [OPTIONS]`, `realtime bench SCENARIO ...` and
//! `realtime token ...`.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use realtime::bench;
use realtime::config::{self, Command};
use realtime::server::{sys, Server};
use realtime::token::{self, TokenCommand};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bench") {
        return bench(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("token") {
        return token(&args[1..]);
    }
    let config = match config::parse_args(&args) {
        Ok(Command::Serve(config)) => *config,
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("realtime: {error}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so that every thread inherits the blocked mask and the
    // signals wait for the one thread that sigwait()s for them.
    let signals = match sys::block_termination_signals() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("realtime: cannot set up signal handling: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Every connection is a file descriptor: lift the soft limit to the hard one (a shell's
    // default of 1024 would cap the server long before --max-connections).
    if let Err(error) = sys::raise_open_file_limit() {
        eprintln!("realtime: cannot raise the open-file limit: {error}");
    }
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("realtime: cannot listen: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = server.app();
    eprintln!(
        "realtime: listening on http://{} (model {}, broker {}); Ctrl-C stops",
        server.local_addr(),
        app.config.model.name(),
        app.broker.kind()
    );
    let shutdown = server.shutdown_handle();
    thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            eprintln!("realtime: {}: shutting down gracefully", sys::signal_name(signal));
            shutdown.shutdown();
        }
    });
    match server.run() {
        Ok(()) => {
            eprintln!("realtime: stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("realtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `realtime bench ...`: the load generator (see [`realtime::bench`]).
fn bench(args: &[String]) -> ExitCode {
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", bench::usage());
        return ExitCode::SUCCESS;
    }
    match bench::parse_args(args) {
        Ok(options) => bench::run(&options),
        Err(error) => {
            eprintln!("realtime: {error}");
            ExitCode::from(2)
        }
    }
}

/// `realtime token ...`: prints a signed channel token (see [`realtime::token`]).
fn token(args: &[String]) -> ExitCode {
    let request = match token::parse_token_args(args) {
        Ok(TokenCommand::Help) => {
            print!("{}", token::TOKEN_USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(TokenCommand::Sign(request)) => request,
        Err(error) => {
            eprintln!("realtime: {error}");
            return ExitCode::from(2);
        }
    };
    // The token module never reads a clock; its exp is counted from this one reading.
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        eprintln!("realtime: token: the system clock is set before 1970");
        return ExitCode::FAILURE;
    };
    match request.issue(now.as_secs()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("realtime: {error}");
            ExitCode::from(2)
        }
    }
}
