//! nginx in front of test servers: a configuration from `examples/`, its addresses replaced by
//! the test's, run as one process in a scratch directory and killed when dropped. Used by
//! `tests/redis_nodes.rs` (`examples/nginx.conf`) and `tests/demo_browser.rs`
//! (`examples/nginx-h2.conf`).
//!
//! nginx comes from Debian (`apt-get install nginx`, in `/usr/sbin`); find it with
//! `common::external_program("nginx")`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

pub struct Nginx {
    /// Where nginx listens: the first address the caller named.
    pub addr: SocketAddr,
    child: Child,
    /// The prefix (`-p`): the configuration, its log and anything put beside it (certificates).
    pub dir: PathBuf,
}

impl Nginx {
    /// Runs `binary` on `example` (a file in `examples/`) with each `(from, to)` of `replace`
    /// applied, in `dir` (a [`scratch_dir`](super::scratch_dir), which may already hold
    /// files the configuration names, such as a certificate), and waits until it accepts
    /// connections on `addr`. The directory goes when the `Nginx` does.
    pub fn start(binary: &Path, dir: PathBuf, example: &str, replace: &[(&str, String)], addr: SocketAddr) -> Nginx {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example);
        let mut config = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (from, to) in replace {
            assert!(config.contains(from), "{example} no longer contains {from}");
            config = config.replace(from, to);
        }
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let log = std::fs::File::create(dir.join("nginx.log")).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-g")
            // One process (no master and workers): killing it leaves no orphaned worker.
            .arg(format!("daemon off; master_process off; pid {}; error_log stderr;", dir.join("nginx.pid").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { addr, child, dir };
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(nginx.addr).is_err() {
            assert!(nginx.child.try_wait().ok().flatten().is_none(), "nginx exited: {}", nginx.log());
            assert!(Instant::now() < deadline, "nginx did not listen: {}", nginx.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    }

    /// What nginx wrote to stderr (its error log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nginx.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
