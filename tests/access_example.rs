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

use peers::{example, free_port, run, run_ok, Peer};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinymqtt-access-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
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
