//! The example broker's access control as users run it: defaults of the config file,
//! `--check-config` warnings, `broker passwd`'s file handling, `reload`, and the log lines of
//! refusals, against files written by Debian's `mosquitto_passwd`.
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

use std::path::{Path, PathBuf};

use peers::{example, free_port, run, run_ok, write, Peer};

fn scratch(name: &str) -> PathBuf {
    peers::scratch("access", name)
}

/// Runs `mosquitto_pub` once (with these credentials, if any); whether the broker let it in.
fn pub_ok(port: u16, user: Option<(&str, &str)>) -> bool {
    let port = port.to_string();
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "t",
        "-m",
        "m",
        "-q",
        "1",
    ];
    if let Some((u, p)) = user {
        args.extend(["-u", u, "-P", p]);
    }
    run("mosquitto_pub", &args).0.success()
}

/// A password file with `alice:pw` written by `mosquitto_passwd`.
fn passwd_file(dir: &Path) -> String {
    let pw = dir.join("passwd");
    run_ok(
        "mosquitto_passwd",
        &["-c", "-b", pw.to_str().unwrap(), "alice", "pw"],
    );
    pw.to_string_lossy().into_owned()
}

/// Starts the example broker with `config` (a listener on `port` is added) and waits for it.
fn start(dir: &Path, port: u16, config: &str) -> Peer {
    let conf = write(
        dir,
        "broker.toml",
        &format!("listeners = [\"127.0.0.1:{port}\"]\nsys_interval = 0\n{config}"),
    );
    let broker = Peer::spawn_with_stdin(
        &example("broker"),
        &["--config", &conf, "--runtime", "blocking"],
    );
    broker.line_where(|l| l.contains("listening on"));
    broker
}

#[test]
fn a_password_file_turns_anonymous_access_off_unless_the_config_says_otherwise() {
    let dir = scratch("anonymous");
    passwd_file(&dir);
    let conf = write(&dir, "only.toml", "password_file = \"passwd\"\n");
    let out = run_ok(&example("broker"), &["--check-config", &conf]);
    assert!(out.contains("anonymous clients refused"), "{out}");
    let conf = write(&dir, "none.toml", "sys_interval = 0\n");
    let out = run_ok(&example("broker"), &["--check-config", &conf]);
    assert!(out.contains("anonymous clients allowed"), "{out}");

    let port = free_port();
    let broker = start(&dir, port, "password_file = \"passwd\"\n");
    assert!(!pub_ok(port, None));
    assert!(pub_ok(port, Some(("alice", "pw"))));
    broker.kill();
    let port = free_port();
    let broker = start(
        &dir,
        port,
        "password_file = \"passwd\"\nallow_anonymous = true\n",
    );
    assert!(pub_ok(port, None));
    broker.kill();
}

#[test]
fn check_config_warns_about_an_acl_without_authentication() {
    let dir = scratch("warn");
    write(&dir, "acl", "user admin\ntopic readwrite #\n");
    let conf = write(&dir, "acl.toml", "acl_file = \"acl\"\n");
    let out = run_ok(&example("broker"), &["--check-config", &conf]);
    assert!(
        out.contains("warning: acl_file without password_file"),
        "{out}"
    );
    passwd_file(&dir);
    let conf = write(
        &dir,
        "both.toml",
        "acl_file = \"acl\"\npassword_file = \"passwd\"\n",
    );
    let out = run_ok(&example("broker"), &["--check-config", &conf]);
    assert!(!out.contains("warning"), "{out}");
    let conf = write(
        &dir,
        "identity.toml",
        "use_username_as_clientid = true\nallow_takeover_by_other_user = false\n",
    );
    run_ok(&example("broker"), &["--check-config", &conf]);
}

#[cfg(unix)]
#[test]
fn broker_passwd_never_writes_through_a_planted_temporary_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("passwd-tmp");
    let victim = write(&dir, "victim", "precious\n");
    let pw = dir.join("passwd");
    std::os::unix::fs::symlink(&victim, dir.join("passwd.tmp")).unwrap();
    run_ok(
        &example("broker"),
        &["passwd", pw.to_str().unwrap(), "alice", "--password", "pw"],
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let mode = std::fs::metadata(&pw).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Only the file, the victim and the planted link: no temporary left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
}

/// Publishes `payload` on `topic` as `user` with `mosquitto_pub` at QoS 1 (MQTT 5); whether
/// it was let in (a refused publish does not fail `mosquitto_pub`).
fn publish_as(port: u16, user: &str, password: &str, topic: &str, payload: &str) -> bool {
    let port = port.to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-i",
        "pub",
        "-u",
        user,
        "-P",
        password,
        "-t",
        topic,
        "-m",
        payload,
        "-q",
        "1",
    ];
    run("mosquitto_pub", &args).0.success()
}

#[test]
fn reload_and_sighup_read_the_files_again_and_refusals_are_logged() {
    let dir = scratch("reload");
    let pw = passwd_file(&dir); // alice:pw
    let acl = write(&dir, "acl", "user alice\ntopic readwrite a/#\n");
    let port = free_port();
    let mut broker = start(
        &dir,
        port,
        "password_file = \"passwd\"\nacl_file = \"acl\"\n",
    );
    let port_s = port.to_string();
    // A subscriber that stays connected through the reloads.
    let sub = peers::line_buffered(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port_s,
            "-V",
            "mqttv5",
            "-i",
            "watch",
            "-u",
            "alice",
            "-P",
            "pw",
            "-t",
            "#",
            "-v",
        ],
    );
    broker.line_where(|l| l.contains("client connected") && l.contains("watch"));

    assert!(publish_as(port, "alice", "pw", "b/x", "before"));
    let line = broker.line_where(|l| l.contains("publish denied"));
    assert!(
        line.contains("alice") && line.contains("b/x") && line.contains("pub"),
        "{line}"
    );
    assert!(!line.contains("pw\""), "{line}");

    // New rules and a new password, read on `reload`.
    std::fs::write(&acl, "user alice\ntopic readwrite #\n").unwrap();
    run_ok("mosquitto_passwd", &["-b", &pw, "alice", "s3cond"]);
    broker.send_line("reload");
    broker.line_where(|l| l.contains("reload: password and ACL files read"));
    assert!(publish_as(port, "alice", "s3cond", "b/x", "after"));
    // The connected subscriber gets it under the new rules.
    assert_eq!(sub.line_where(|l| l.starts_with("b/x")), "b/x after");
    assert!(!publish_as(port, "alice", "pw", "a/x", "old password"));
    let line = broker.line_where(|l| l.contains("connection refused"));
    assert!(line.contains("alice") && !line.contains("\"pw\""), "{line}");

    // A broken file is refused whole; the rules in use stay.
    std::fs::write(&acl, "usr alice\n").unwrap();
    broker.send_line("reload");
    broker.line_where(|l| l.contains("the rules in use are unchanged"));
    assert!(publish_as(port, "alice", "s3cond", "b/y", "still"));
    assert_eq!(sub.line_where(|l| l.starts_with("b/y")), "b/y still");

    // SIGHUP, as Mosquitto.
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
    run_ok("kill", &["-HUP", &broker.pid().to_string()]);
    broker.line_where(|l| l.contains("reload: password and ACL files read"));
    assert!(publish_as(port, "alice", "s3cond", "b/x", "again"));
    let line = broker.line_where(|l| l.contains("publish denied"));
    assert!(line.contains("b/x"), "{line}");
    assert!(publish_as(port, "alice", "s3cond", "a/x", "mine"));
    // Only what the rules let through reached the subscriber: "again" did not.
    assert_eq!(
        sub.line_where(|l| l.starts_with("a/x") || l.starts_with("b/x")),
        "a/x mine"
    );
    drop(sub);
    // SIGTERM still stops it cleanly (SIGHUP did not).
    run_ok("kill", &["-TERM", &broker.pid().to_string()]);
    broker.line_where(|l| l.contains("stopped"));
    broker.wait_success();
}
