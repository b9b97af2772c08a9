//! Real peers for the interop tests: mosquitto, mosquitto_pub/sub and paho-mqtt, on 127.0.0.1.
//!
//! Every child process is killed when its handle drops, and every wait has a deadline, so a
//! failing peer fails the test instead of hanging it or leaving a process behind.

// Real processes run on real time: this harness may read the clock and sleep.
#![allow(dead_code, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// The path of an example program built by this `cargo test` (`target/<profile>/examples/`).
pub(crate) fn example(name: &str) -> String {
    let mut dir: PathBuf = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built (`cargo test --all-features` builds it; alone: `cargo build --examples --all-features`)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// How long any single wait may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test that binds it next).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub(crate) fn wait_for_port(port: u16) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {WAIT:?}");
}

/// A child process killed on drop, with its stdout and stderr lines on one channel (stderr
/// lines prefixed with `stderr: `).
pub(crate) struct Peer {
    name: String,
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Peer {
    /// Starts `program args...` with stdout and stderr captured line by line.
    pub(crate) fn spawn(program: &str, args: &[&str]) -> Peer {
        Peer::start(program, args, false)
    }

    /// Like [`Peer::spawn`], with a pipe to its stdin for [`Peer::send_line`].
    pub(crate) fn spawn_with_stdin(program: &str, args: &[&str]) -> Peer {
        Peer::start(program, args, true)
    }

    fn start(program: &str, args: &[&str], stdin: bool) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e} (make test installs it)"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        forward(stdout, "", tx.clone());
        forward(stderr, "stderr: ", tx);
        Peer {
            name: format!("{program} {}", args.join(" ")),
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Writes one line to its stdin.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("started with spawn_with_stdin");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .expect("write to stdin");
    }

    /// The next stdout line that satisfies `pred`, skipping others; panics after [`WAIT`].
    pub(crate) fn line_where(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => skipped.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: no expected line in {WAIT:?}; it printed {skipped:#?}",
                        self.name
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: exited before the expected line; it printed {skipped:#?}",
                        self.name
                    )
                }
            }
        }
    }

    /// Lines arriving within `quiet` that satisfy `pred` (for "nothing more arrives").
    pub(crate) fn lines_within(&self, quiet: Duration, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + quiet;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => out.push(line),
                Ok(_) => {}
                Err(_) => return out,
            }
        }
    }

    /// Waits for the process to exit by itself; its exit status must be success.
    pub(crate) fn wait_success(mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => {
                    assert!(status.success(), "{} exited with {status}", self.name);
                    return;
                }
                None if Instant::now() > deadline => {
                    panic!("{} did not exit in {WAIT:?}", self.name)
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Kills the process without a goodbye (SIGKILL): its broker sees the connection drop.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends each line of `from` to `tx`, with `prefix`, until the pipe closes.
fn forward(from: impl std::io::Read + Send + 'static, prefix: &'static str, tx: Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(format!("{prefix}{line}")).is_err() {
                break;
            }
        }
    });
}

/// Runs a program to completion within [`WAIT`]; returns its exit status and output lines.
pub(crate) fn run(program: &str, args: &[&str]) -> (ExitStatus, String) {
    let mut peer = Peer::spawn(program, args);
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        while let Ok(line) = peer.lines.try_recv() {
            out.push(line);
        }
        match peer.child.try_wait().expect("try_wait") {
            Some(status) => {
                // Both pipes close at exit: this ends as soon as the last line is read.
                while let Ok(line) = peer.lines.recv_timeout(WAIT) {
                    out.push(line);
                }
                return (status, out.join("\n"));
            }
            None if Instant::now() > deadline => panic!("{} did not finish in {WAIT:?}", peer.name),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Runs a program to completion; it must succeed within [`WAIT`]. Returns its output.
pub(crate) fn run_ok(program: &str, args: &[&str]) -> String {
    let (status, out) = run(program, args);
    assert!(
        status.success(),
        "{program} {} exited with {status}: {out}",
        args.join(" ")
    );
    out
}

/// A `mosquitto` broker on a free 127.0.0.1 port, with anonymous access; killed on drop.
pub(crate) struct Mosquitto {
    /// Its port.
    pub(crate) port: u16,
    _peer: Peer,
    conf: PathBuf,
}

impl Mosquitto {
    /// Starts one and waits until it listens.
    pub(crate) fn start() -> Mosquitto {
        let port = free_port();
        let conf = std::env::temp_dir().join(format!(
            "tinymqtt-interop-{}-{port}.conf",
            std::process::id()
        ));
        let mut f = std::fs::File::create(&conf).expect("mosquitto config");
        writeln!(
            f,
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none"
        )
        .unwrap();
        let peer = Peer::spawn("mosquitto", &["-c", conf.to_str().unwrap()]);
        wait_for_port(port);
        Mosquitto {
            port,
            _peer: peer,
            conf,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.conf);
    }
}

/// A `mosquitto_sub` that prints `MSG <retain> <qos> <topic> <payload>` per message and has
/// been told SUBACK (waited for through its debug output).
pub(crate) fn mosquitto_sub(port: u16, extra: &[&str]) -> Peer {
    let port = port.to_string();
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-d",
        "-F",
        "MSG %r %q %t %p",
    ];
    args.extend_from_slice(extra);
    let peer = line_buffered("mosquitto_sub", &args);
    peer.line_where(|l| l.contains("SUBACK"));
    peer
}

/// Starts `program` with its stdout line-buffered (C programs buffer a pipe in blocks).
pub(crate) fn line_buffered(program: &str, args: &[&str]) -> Peer {
    let mut all = vec!["-oL", program];
    all.extend_from_slice(args);
    Peer::spawn("stdbuf", &all)
}

/// Runs `mosquitto_pub` with these arguments against 127.0.0.1:`port`; it must succeed.
pub(crate) fn mosquitto_pub(port: u16, extra: &[&str]) {
    let port = port.to_string();
    let mut args = vec!["-h", "127.0.0.1", "-p", &port];
    args.extend_from_slice(extra);
    run_ok("mosquitto_pub", &args);
}

/// The next `MSG` line of a [`mosquitto_sub`] peer, as (retain, qos, topic, payload).
pub(crate) fn next_msg(sub: &Peer) -> (bool, u8, String, String) {
    let line = sub.line_where(|l| l.starts_with("MSG "));
    let mut it = line.splitn(5, ' ').skip(1);
    let retain = it.next() == Some("1");
    let qos = it.next().and_then(|q| q.parse().ok()).expect("qos field");
    let topic = it.next().expect("topic field").to_string();
    let payload = it.next().unwrap_or("").to_string();
    (retain, qos, topic, payload)
}

/// An empty scratch folder for one test: `tinymqtt-{kind}-{pid}-{name}` under the temp dir.
pub(crate) fn scratch(kind: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinymqtt-{kind}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `dir/name`; returns the file's path.
pub(crate) fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}
