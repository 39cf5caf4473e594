//! The standard process metrics, read from `/proc`.
//!
//! Prometheus asks every client library for the same few numbers under the same names
//! ("Process metrics", <https://prometheus.io/docs/instrumenting/writing_clientlibs/#process-metrics>),
//! so that one dashboard fits every program: `process_cpu_seconds_total`, `process_open_fds`,
//! `process_max_fds`, `process_virtual_memory_bytes`, `process_resident_memory_bytes`,
//! `process_start_time_seconds` and `process_threads`. They are read when `/metrics` is
//! scraped, from the files proc(5) describes:
//!
//! | metric | from | unit there |
//! |---|---|---|
//! | `process_cpu_seconds_total` | `/proc/self/stat` `utime` + `stime` (fields 14, 15) | clock ticks ([`USER_HZ`] a second) |
//! | `process_start_time_seconds` | `/proc/self/stat` `starttime` (field 22) + `/proc/stat` `btime` | ticks since boot + seconds since the epoch |
//! | `process_virtual_memory_bytes` | `/proc/self/stat` `vsize` (field 23) | bytes |
//! | `process_threads` | `/proc/self/stat` `num_threads` (field 20) | |
//! | `process_resident_memory_bytes` | `/proc/self/status` `VmRSS` | KiB (what `realtime_resident_memory_bytes` reads too) |
//! | `process_open_fds` | the entries of `/proc/self/fd` | |
//! | `process_max_fds` | `/proc/self/limits` `Max open files`, the soft limit (what `getrlimit(RLIMIT_NOFILE)` gives) | |
//!
//! Where a file cannot be read or parsed (no procfs: another Unix, a sandbox), the metrics it
//! gives are left out rather than shown as zero: a missing series says "unknown", a zero would
//! be a lie a dashboard believes.
//!
//! Everything comes from files, so this module is a foundation like [`crate::time`]: it imports
//! nothing from the crate (not even [`crate::server::sys::os`]: a file read needs no `unsafe`).

#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// Clock ticks per second in `/proc`: proc(5) says to "divide by sysconf(_SC_CLK_TCK)", which
/// returns the kernel's `USER_HZ`. That is an ABI constant, not a setting: 100 on every Linux
/// architecture (`include/asm-generic/param.h`) except Alpha and IA-64 (1024), for which Rust
/// has no target. So the constant, rather than a `sysconf` call through the one `unsafe`
/// module ([`crate::server::sys`]); a unit test checks it against `sysconf` all the same.
#[cfg(target_os = "linux")]
pub const USER_HZ: Option<u64> = Some(100);
/// Elsewhere there is no `/proc/self/stat` to read it from anyway.
#[cfg(not(target_os = "linux"))]
pub const USER_HZ: Option<u64> = None;

/// The numbers, as the kernel gives them; `None` where they could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Clock ticks per second, the unit of `cpu_ticks` and `start_ticks`.
    pub ticks_per_second: Option<u64>,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: Option<u64>,
    /// When the process started, in clock ticks after boot.
    pub start_ticks: Option<u64>,
    /// When the machine booted, in seconds since the epoch.
    pub boot_time: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub resident_memory_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// The fields of `/proc/self/stat` used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    pub starttime: u64,
    pub vsize: u64,
}

/// Parses `/proc/[pid]/stat`. Field 2, `comm`, is the executable's name in parentheses and
/// may itself hold spaces and parentheses, so the fields are counted from the *last* `)`;
/// field 3 (`state`) is the first one after it.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Field n (1-based, as proc(5) numbers them) is at index n - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        num_threads: field(20)?,
        starttime: field(22)?,
        vsize: field(23)?,
    })
}

/// The `btime` line of `/proc/stat`: "boot time, in seconds since the Epoch".
pub fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|line| line.strip_prefix("btime ")).and_then(|n| n.trim().parse().ok())
}

/// The `VmRSS:` line of `/proc/[pid]/status`, in bytes (the file says kB, meaning KiB).
pub fn parse_resident_bytes(status: &str) -> Option<u64> {
    let kib = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?.split_whitespace().next()?;
    kib.parse::<u64>().ok()?.checked_mul(1024)
}

/// The soft limit in the `Max open files` line of `/proc/[pid]/limits`.
pub fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Open descriptors: the entries of `/proc/self/fd`, less the one the listing itself holds
/// open while it is read.
fn count_open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

impl Sample {
    /// Reads this process's numbers now.
    pub fn read() -> Sample {
        let stat = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(parse_stat);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Sample {
            ticks_per_second: USER_HZ,
            cpu_ticks: stat.map(|s| s.utime.saturating_add(s.stime)),
            start_ticks: stat.map(|s| s.starttime),
            boot_time: std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(parse_boot_time),
            virtual_memory_bytes: stat.map(|s| s.vsize),
            resident_memory_bytes: parse_resident_bytes(&status),
            threads: stat.map(|s| s.num_threads),
            open_fds: count_open_fds(),
            max_fds: std::fs::read_to_string("/proc/self/limits").ok().as_deref().and_then(parse_max_open_files),
        }
    }

    /// Writes each metric that could be read, in the text exposition format.
    pub fn write_prometheus(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: Option<String>| {
            if let Some(value) = value {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
            }
        };
        let ticks = self.ticks_per_second;
        let in_seconds = |t: Option<u64>| Some(t? as f64 / ticks? as f64);
        let cpu = in_seconds(self.cpu_ticks);
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            cpu.map(float),
        );
        let started =
            in_seconds(self.start_ticks).zip(self.boot_time).map(|(after_boot, boot)| boot as f64 + after_boot);
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            started.map(float),
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_memory_bytes.map(|n| n.to_string()),
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_memory_bytes.map(|n| n.to_string()),
        );
        metric("process_threads", "gauge", "Number of OS threads in the process.", self.threads.map(|n| n.to_string()));
        metric("process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds.map(|n| n.to_string()));
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            self.max_fds.map(|n| n.to_string()),
        );
    }
}

/// A float as the exposition format takes it (Go's `ParseFloat`): Rust's shortest decimal
/// that reads back as the same value, never an exponent.
fn float(value: f64) -> String {
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from proc(5)'s layout, with a `comm` that holds a space and a parenthesis.
    const STAT: &str = "4670 (my (odd) prog) R 4664 4664 28910 0 -1 4194304 96 0 0 0 250 30 0 0 20 0 7 0 \
                        1100993 3133440 359 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis_of_comm() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat, Stat { utime: 250, stime: 30, num_threads: 7, starttime: 1100993, vsize: 3133440 });
        assert_eq!(parse_stat("12 (truncated) R 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn boot_time_and_resident_memory_come_from_their_lines() {
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1796020181\nprocesses 9\n"), Some(1796020181));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        assert_eq!(parse_resident_bytes("Name:\tx\nVmRSS:\t    2048 kB\n"), Some(2048 * 1024));
        assert_eq!(parse_resident_bytes("Name:\tx\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(parse_max_open_files("Max open files            unlimited            unlimited   files\n"), None);
    }

    #[test]
    fn cpu_and_start_time_are_ticks_over_the_clock_tick_and_missing_numbers_are_left_out() {
        let sample = Sample {
            ticks_per_second: Some(100),
            cpu_ticks: Some(280),
            start_ticks: Some(1050),
            boot_time: Some(1_796_020_181),
            threads: Some(3),
            ..Sample::default()
        };
        let mut out = String::new();
        sample.write_prometheus(&mut out);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 2.8\n"), "{out}");
        assert!(out.contains("\nprocess_start_time_seconds 1796020191.5\n"), "{out}");
        assert!(out.contains("\nprocess_threads 3\n"), "{out}");
        assert!(!out.contains("process_open_fds"), "unknown, so not shown: {out}");
        let mut nothing = String::new();
        Sample { ticks_per_second: None, ..sample }.write_prometheus(&mut nothing);
        assert!(!nothing.contains("process_cpu_seconds_total"), "no clock tick, no CPU seconds: {nothing}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn on_linux_every_number_is_read() {
        let sample = Sample::read();
        assert!(sample.ticks_per_second.is_some() && sample.cpu_ticks.is_some() && sample.start_ticks.is_some());
        assert!(sample.boot_time.is_some_and(|t| t > 1_000_000_000));
        assert!(sample.resident_memory_bytes.is_some_and(|n| n > 0));
        assert!(sample.virtual_memory_bytes.is_some_and(|n| n > 0));
        assert!(sample.threads.is_some_and(|n| n >= 1));
        assert!(sample.open_fds.is_some_and(|n| n >= 3), "stdin, stdout, stderr at least");
        assert!(sample.max_fds.is_some_and(|n| n >= sample.open_fds.unwrap_or(0)));
        let soft = crate::server::sys::os::open_file_limit().map(|limit| limit.soft).ok();
        assert_eq!(sample.max_fds, soft, "the soft limit, as getrlimit gives it");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn user_hz_is_what_sysconf_clk_tck_says() {
        assert_eq!(USER_HZ, crate::server::sys::os::clock_ticks_per_second());
    }
}
