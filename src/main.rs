//! The `realtime` command: `realtime [serve] [OPTIONS]`, `realtime sub URL`, `realtime pub URL`,
//! `realtime bench SCENARIO ...` and `realtime token ...`. Exit status: 0 success, 1 a failure
//! at run time, 2 a usage error ([`realtime::cli`]).

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use realtime::bench;
use realtime::cli::{self, usage_error};
use realtime::config::{self, BrokerUrl, Command, Config, Model};
use realtime::server::sys::os;
use realtime::server::Server;
use realtime::token::{self, TokenCommand};
use realtime::{error, info, log, warn};

fn main() -> ExitCode {
    let mut args = Vec::new();
    for (position, arg) in std::env::args_os().skip(1).enumerate() {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => return usage_error(&format!("argument {} is not valid UTF-8: {arg:?}", position + 1)),
        }
    }
    // Every command answers --version the same way, wherever it comes, as each answers --help.
    if args.iter().any(|arg| arg == "--version" || arg == "-V") {
        println!("realtime {}", cli::VERSION);
        return ExitCode::SUCCESS;
    }
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("bench") => bench(rest),
        Some("token") => token(rest),
        Some("sub") => cli::subscribe::run(rest),
        Some("pub") => cli::publish::run(rest),
        Some("-h" | "--help" | "help") => {
            print!("{}", cli::usage());
            ExitCode::SUCCESS
        }
        _ => serve(&args),
    }
}

/// `realtime [serve] [OPTIONS]`: the push server, until SIGINT or SIGTERM.
fn serve(args: &[String]) -> ExitCode {
    let lookup = |name: &str| std::env::var_os(name);
    let config = match config::parse_args_and_environment(args, &lookup) {
        Ok(Command::Serve(config)) => *config,
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => return usage_error(&error),
    };
    // From here on the server speaks through the log (usage errors above stay plain lines).
    log::init(config.log_level, config.log_format);
    // Before any thread exists, so that every thread inherits the blocked mask and the
    // signals wait for the one thread that sigwait()s for them.
    let signals = match os::block_termination_signals() {
        Ok(signals) => signals,
        Err(error) => {
            error!("cannot set up signal handling"; error = error.to_string());
            return ExitCode::FAILURE;
        }
    };
    // Every connection is a file descriptor: lift the soft limit to the hard one (a shell's
    // default of 1024 would cap the server long before --max-connections).
    if let Err(error) = os::raise_open_file_limit() {
        warn!("cannot raise the open-file limit"; error = error.to_string());
    }
    let addr = config.addr.clone();
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(error) => {
            error!("cannot listen on {}: {}", addr, error);
            return ExitCode::FAILURE;
        }
    };
    log_startup(&server);
    let shutdown = server.shutdown_handle();
    thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            info!("shutting down gracefully"; signal = os::signal_name(signal));
            shutdown.shutdown();
        }
    });
    match server.run() {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            error!("the server failed"; error = error.to_string());
            ExitCode::FAILURE
        }
    }
}

/// The one line that says what is running: the version, where, how, and the limits an operator
/// asks about first. Whether a token or secret is configured, never what it is. Tests and the
/// benchmark read the address from it (`http://` up to the next space, or the end of `msg`).
fn log_startup(server: &Server) {
    let config: &Config = &server.app().config;
    let workers = match config.model {
        // What `server::event_loop::run` will start.
        Model::EventLoop if config.workers == 0 => Some(thread::available_parallelism().map_or(1, |n| n.get())),
        Model::EventLoop => Some(config.workers),
        // A thread per connection: no fixed set of workers (`workers=-`).
        Model::Threads => None,
    };
    let broker = match &config.broker {
        BrokerUrl::Memory => "memory".to_string(),
        // Host, port and database: a RedisUrl holds nothing secret.
        BrokerUrl::Redis(url) => url.to_string(),
        // The seeds; the password is shown as `***`.
        BrokerUrl::RedisCluster(url) => url.to_string(),
    };
    info!("listening on http://{}", server.local_addr();
        version = env!("CARGO_PKG_VERSION"),
        model = config.model.name(),
        workers = workers,
        broker = broker,
        max_connections = config.max_connections,
        memory_budget = config.memory_budget,
        send_timeout_ms = config.send_timeout.as_millis() as u64,
        publish_token = config.publish_token.is_some(),
        token_secret = config.token_secret.is_some(),
        access_log = config.access_log,
    );
}

/// `realtime bench ...`: the load generator (see [`realtime::bench`]).
fn bench(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", bench::usage());
        return ExitCode::SUCCESS;
    }
    if args.is_empty() {
        // Asked for nothing: a usage error, so that a script that forgot the scenario fails.
        eprint!("realtime: bench: which scenario?\n\n{}", bench::usage());
        return ExitCode::from(cli::USAGE_ERROR);
    }
    match bench::parse_args(args) {
        Ok(options) => bench::run(&options),
        Err(error) => usage_error(&error),
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
        Err(error) => return usage_error(&error),
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
        Err(error) => usage_error(&error),
    }
}
