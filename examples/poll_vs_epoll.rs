//! Why epoll exists: the cost of one wait, poll(2) against epoll, as idle connections grow.
//!
//! Registers N idle Unix socket pairs (one end each, the other end kept open so nothing
//! hangs up) plus one pair with a byte waiting, then times `Poller::wait` for each backend.
//! Every wait returns that one ready socket (level-triggered: the byte is never read), so the
//! time measured is the backend's overhead alone: poll(2) hands the kernel all N + 1
//! descriptors and scans them all; epoll copies out one event.
//!
//! `cargo run --release --example poll_vs_epoll [N ...]` (default: 1000 9000). Each pair is
//! two descriptors; the open-file limit is raised to the hard limit first.

use std::io::{ErrorKind, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use realtime::config::Backend;
use realtime::server::poller::{Interest, Poller, Ready};
use realtime::server::sys::os;

/// Waits timed per backend and N; the median of these is reported.
const WAITS: usize = 200;
/// Untimed waits first, so that caches and the kernel's structures are warm.
const WARM_UP_WAITS: usize = 20;
/// Sizes measured when none are given on the command line.
const DEFAULT_IDLE_PAIRS: [usize; 2] = [1_000, 9_000];

fn main() -> std::io::Result<()> {
    let sizes: Vec<usize> =
        match std::env::args().skip(1).map(|arg| arg.parse::<usize>()).collect::<Result<Vec<_>, _>>() {
            Ok(sizes) if !sizes.is_empty() => sizes,
            Ok(_) => DEFAULT_IDLE_PAIRS.to_vec(),
            Err(_) => {
                eprintln!("usage: poll_vs_epoll [IDLE_PAIRS ...]");
                std::process::exit(2);
            }
        };
    let limit = os::raise_open_file_limit()?;
    println!("open-file limit: {limit}; median of {WAITS} waits, each returning 1 ready socket\n");
    println!("{:>11} {:>13} {:>14} {:>14} {:>8}", "idle pairs", "registered", "poll(2)", "epoll", "ratio");
    for idle_pairs in sizes {
        let (poll, epoll) = measure(idle_pairs)?;
        let (epoll_column, ratio_column) = match epoll {
            Some(epoll) => {
                (format!("{:.2} µs", micros(epoll)), format!("{:.0}x", poll.as_secs_f64() / epoll.as_secs_f64()))
            }
            None => ("n/a".to_string(), "".to_string()),
        };
        println!(
            "{:>11} {:>13} {:>14} {:>14} {:>8}",
            idle_pairs,
            idle_pairs + 1,
            format!("{:.2} µs", micros(poll)),
            epoll_column,
            ratio_column
        );
    }
    Ok(())
}

/// The median wait with each backend over `idle_pairs` idle sockets and one ready one. No
/// epoll figure off Linux.
fn measure(idle_pairs: usize) -> std::io::Result<(Duration, Option<Duration>)> {
    let idle: Vec<(UnixStream, UnixStream)> = (0..idle_pairs).map(|_| UnixStream::pair()).collect::<Result<_, _>>()?;
    let (busy, mut busy_peer) = UnixStream::pair()?;
    busy_peer.write_all(b"x")?;
    let poll = median_wait(Backend::Poll, &idle, &busy)?;
    let epoll = match median_wait(Backend::Epoll, &idle, &busy) {
        Ok(median) => Some(median),
        Err(error) if error.kind() == ErrorKind::Unsupported => None,
        Err(error) => return Err(error),
    };
    Ok((poll, epoll))
}

fn median_wait(backend: Backend, idle: &[(UnixStream, UnixStream)], busy: &UnixStream) -> std::io::Result<Duration> {
    let mut poller = Poller::new(backend)?;
    for (token, (socket, _peer)) in idle.iter().enumerate() {
        poller.register(socket.as_fd(), token, Interest::READABLE)?;
    }
    let busy_token = idle.len();
    poller.register(busy.as_fd(), busy_token, Interest::READABLE)?;

    let mut ready: Vec<Ready> = Vec::new();
    for _ in 0..WARM_UP_WAITS {
        poller.wait(&mut ready, None)?;
    }
    let mut times = Vec::with_capacity(WAITS);
    for _ in 0..WAITS {
        let started = Instant::now();
        poller.wait(&mut ready, None)?;
        times.push(started.elapsed());
        assert!(ready.len() == 1 && ready[0].token == busy_token, "{backend:?}: expected only the busy socket");
    }
    times.sort();
    Ok(times[WAITS / 2])
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
