//! The operating-system calls the standard library does not offer, behind a safe API.
//!
//! This is the only module in the crate allowed to use `unsafe` (the crate root denies it
//! everywhere else). Each foreign function is declared by hand with `extern "C"` — no `libc`
//! crate — and each wrapper checks the call's result and turns failures into `io::Error`.
//!
//! Graceful shutdown: the process blocks SIGINT and SIGTERM in every thread (the mask is
//! inherited by threads spawned afterwards, so [`block_termination_signals`] must run first in
//! `main`) and one thread takes them synchronously with `sigwait(3)`. Compared with a signal
//! handler, nothing runs in async-signal context, so the shutdown code is ordinary Rust.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io;

/// Room for a `sigset_t`: glibc's is 128 bytes, musl's 128, macOS's and the BSDs' smaller. The
/// set is only ever touched through `sigemptyset`/`sigaddset`, so a larger buffer is safe.
#[repr(C)]
struct SigSet {
    bits: [u64; 16],
}

extern "C" {
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, signum: c_int) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const SigSet, oldset: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int;
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const SIG_BLOCK: c_int = 0;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SIG_BLOCK: c_int = 1;

/// Interrupt from the terminal (Ctrl-C).
pub const SIGINT: c_int = 2;
/// The polite request to stop (`kill`, systemd, docker stop).
pub const SIGTERM: c_int = 15;

/// SIGINT and SIGTERM, blocked in this thread and every thread it spawns afterwards.
pub struct TerminationSignals {
    set: SigSet,
}

/// Blocks SIGINT and SIGTERM so that they wait for [`TerminationSignals::wait`] instead of
/// killing the process. Call it before spawning any thread.
pub fn block_termination_signals() -> io::Result<TerminationSignals> {
    let mut set = SigSet { bits: [0; 16] };
    // SAFETY: `set` is a valid, writable buffer at least as large as the platform's sigset_t.
    unsafe {
        if sigemptyset(&mut set) != 0 || sigaddset(&mut set, SIGINT) != 0 || sigaddset(&mut set, SIGTERM) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: `set` was initialised by sigemptyset/sigaddset; a null `oldset` is allowed.
    let error = unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) };
    if error != 0 {
        // pthread functions return the error number instead of setting errno.
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(TerminationSignals { set })
}

impl TerminationSignals {
    /// Sleeps until SIGINT or SIGTERM arrives and returns its number.
    pub fn wait(&self) -> io::Result<c_int> {
        let mut signal: c_int = 0;
        // SAFETY: `self.set` is an initialised signal set and `signal` a valid out-pointer.
        let error = unsafe { sigwait(&self.set, &mut signal) };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(signal)
    }
}

/// A signal's conventional name, for the log line.
pub fn signal_name(signal: c_int) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
