//! The example broker's config file, `--check-config` and `broker passwd`, as users run them:
//! entries written by `broker passwd` are accepted by Debian's `mosquitto` and by our broker,
//! and mistakes in the config or the files it names are reported with their line.
//!
//! `cargo test` builds the examples before it runs this (they need every runtime feature).

#![cfg(all(
    feature = "tokio",
    feature = "smol",
    feature = "async-std",
    feature = "blocking"
))]

#[path = "support/interop.rs"]
mod peers;

use std::path::PathBuf;

use peers::{example, free_port, run, run_ok, wait_for_port, write, Peer};

fn scratch(name: &str) -> PathBuf {
    peers::scratch("config", name)
}

/// Runs `mosquitto_pub` once with these credentials; whether the broker let it in.
fn pub_ok(port: u16, user: &str, password: &str, version: &str) -> bool {
    let port = port.to_string();
    let (status, _) = run(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-u",
            user,
            "-P",
            password,
            "-t",
            "t",
            "-m",
            "m",
            "-q",
            "1",
        ],
    );
    status.success()
}

#[test]
fn check_config_accepts_a_good_file_and_names_the_line_of_a_bad_one() {
    let dir = scratch("check");
    let pw = dir.join("passwd");
    run_ok(
        "mosquitto_passwd",
        &["-c", "-b", pw.to_str().unwrap(), "alice", "pw"],
    );
    write(
        &dir,
        "acl",
        "user alice\ntopic readwrite alice/#\npattern read %c/#\n",
    );
    let good = write(
        &dir,
        "good.toml",
        "listeners = [\"127.0.0.1:0\"]\nallow_anonymous = false\npassword_file = \"passwd\"\n\
         acl_file = \"acl\"\nmax_connections = -1\nmax_queued_messages = 10\n\
         max_queued_bytes = 0\nmax_inflight_messages = 5\nmessage_size_limit = 4096\n\
         max_keepalive = 60\nsys_interval = 0\npersistence_location = \"data\"\n\
         metrics_listener = \"127.0.0.1:9464\"\n\
         persistence = true\nfsync = \"interval\"\nautosave_interval = 5\n\
         reason_strings = false\nno_matching_subscribers = false\n\
         memory_limit = 268435456\npersistent_client_expiration = \"14d\"\n\
         [limits]\nreceive_maximum = 10\nmax_retained_messages = 100\n\
         max_retained_bytes = 0\nmax_sessions = 1000\nmax_subscribe_filters = 16\n",
    );
    let out = run_ok(&example("broker"), &["--check-config", &good]);
    assert!(out.contains("good.toml: ok"), "{out}");
    assert!(
        out.contains("metrics on http://127.0.0.1:9464/metrics"),
        "{out}"
    );
    assert!(out.contains("1 users"), "{out}");
    assert!(out.contains("fsync interval, a sync every 5 s"), "{out}");
    // The folder given as `persistence = DIR`, and the default policy.
    let short = write(&dir, "short.toml", "persistence = \"there\"\n");
    let out = run_ok(&example("broker"), &["--check-config", &short]);
    assert!(out.contains("there: fsync always"), "{out}");

    // Every key's mistakes are unit tests of `runtimes::settings`; here, that the command line
    // reports each kind with its place: a TOML error, a value, a named file's line, a missing
    // file.
    let cases = [
        (
            "type.toml",
            "allow_anonymous = false\n\nmax_connections = \"many\"\n",
            ":3:19: ",
        ),
        ("range.toml", "# c\nmax_connections = -2\n", ":2:19: "),
        (
            "unknown.toml",
            "allow_anonymous = true\nmax_conections = 3\n",
            ":2:1: ",
        ),
        ("acl.toml", "acl_file = \"bad.acl\"\n", "bad.acl:2: "),
        ("pw.toml", "password_file = \"bad.pw\"\n", "bad.pw:1: "),
        (
            "missing.toml",
            "password_file = \"nothere\"\n",
            "cannot read",
        ),
    ];
    write(&dir, "bad.acl", "user alice\ntopick read a\n");
    write(&dir, "bad.pw", "alice:plaintext\n");
    for (name, text, expect) in cases {
        let path = write(&dir, name, text);
        let (status, out) = run(&example("broker"), &["--check-config", &path]);
        assert!(!status.success(), "{name} was accepted: {out}");
        assert_eq!(status.code(), Some(1), "{name}: {out}");
        assert!(out.contains(expect), "{name}: expected {expect:?} in {out}");
    }
    // The same mistakes stop the broker at start.
    let path = dir.join("range.toml");
    let (status, out) = run(&example("broker"), &["--config", path.to_str().unwrap()]);
    assert!(
        !status.success() && out.contains("range.toml:2:19: "),
        "{out}"
    );
}

#[test]
fn broker_passwd_entries_are_accepted_by_mosquitto_and_by_our_broker() {
    let dir = scratch("passwd");
    let pw = dir.join("passwd");
    let pw_s = pw.to_str().unwrap();
    run_ok(
        &example("broker"),
        &["passwd", pw_s, "alice", "--password", "a l1ce"],
    );
    let mut from_stdin = Peer::spawn_with_stdin(&example("broker"), &["passwd", pw_s, "bob"]);
    from_stdin.send_line("b0b");
    from_stdin.wait_success();
    // A second write replaces alice's entry and keeps bob's.
    run_ok(
        &example("broker"),
        &["passwd", pw_s, "alice", "--password", "w0nder"],
    );
    let text = std::fs::read_to_string(&pw).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    // mosquitto drops root for its own user: let it read the file
    #[cfg(unix)]
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    let port = free_port();
    let conf = write(
        &dir,
        "mosquitto.conf",
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n\
             log_dest none\npassword_file {pw_s}\n"
        ),
    );
    let mosquitto = Peer::spawn("mosquitto", &["-c", &conf]);
    wait_for_port(port);
    assert!(pub_ok(port, "alice", "w0nder", "mqttv311"));
    assert!(pub_ok(port, "bob", "b0b", "mqttv5"));
    assert!(!pub_ok(port, "alice", "a l1ce", "mqttv311"));
    mosquitto.kill();

    let port = free_port();
    let conf = write(
        &dir,
        "broker.toml",
        &format!(
            "listeners = [\"127.0.0.1:{port}\"]\nallow_anonymous = false\n\
             password_file = \"passwd\"\nsys_interval = 0\n"
        ),
    );
    let ours = Peer::spawn(
        &example("broker"),
        &["--config", &conf, "--runtime", "blocking"],
    );
    ours.line_where(|l| l.contains("listening on"));
    assert!(pub_ok(port, "alice", "w0nder", "mqttv311"));
    assert!(pub_ok(port, "bob", "b0b", "mqttv5"));
    assert!(!pub_ok(port, "bob", "b0b!", "mqttv5"));
    assert!(!pub_ok(port, "alice", "a l1ce", "mqttv311"));
    ours.kill();
}
