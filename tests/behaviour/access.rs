//! Access control on this runtime against a hostile client, with files written by
//! `mosquitto_passwd` and a Mosquitto ACL: a session cannot be taken over by another user,
//! `$SYS` is closed to publishers whatever the ACL, a client id cannot steer an ACL pattern,
//! and slow credentials checks neither stall routing nor queue without end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tinymqtt::broker::{AllowAll, Authenticator, BrokerConfig, Router as Core};
use tinymqtt::runtimes::access::{AclFile, PasswordFile};
use tinymqtt::runtimes::{BrokerOptions, Error};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode};

use super::{clock, config, msg, next_message, no_message, pause, sub};
use crate::rt;

const V5: ProtocolVersion = ProtocolVersion::V5;

const ACL: &str = "\
user alice
topic readwrite alice/#
topic readwrite $SYS/#
user bob
topic readwrite bob/#
pattern readwrite clients/%c/#
";

/// A password file written by `mosquitto_passwd` for alice and bob.
fn passwords() -> PasswordFile {
    static N: AtomicU32 = AtomicU32::new(0);
    let runtime = module_path!().split("::").next().unwrap_or("rt");
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "tinymqtt-{runtime}-access-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("passwd");
    for (i, (user, pw)) in [("alice", "a1ice"), ("bob", "b0b")].iter().enumerate() {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg("-b")
            .arg(&path)
            .args([user, pw])
            .status()
            .expect("mosquitto_passwd (make tools installs mosquitto)");
        assert!(status.success());
    }
    let f = PasswordFile::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    f
}

fn files_broker() -> rt::Broker {
    let bc = BrokerConfig::default()
        .with_allow_anonymous(false)
        .with_sys_interval(None);
    let acl = AclFile::parse(ACL).unwrap();
    let core = Core::with_auth(bc, Arc::new(passwords()), Arc::new(acl));
    rt::broker_core(core, BrokerOptions::default())
}

fn as_user(id: &str, user: &str, pw: &str) -> tinymqtt::client::ClientConfig {
    let mut c = config(V5, id);
    c.username = Some(ByteStr::try_from(user).unwrap());
    c.password = Some(Bytes::copy_from_slice(pw.as_bytes()));
    c
}

fn refusal(addr: SocketAddr, c: tinymqtt::client::ClientConfig) -> ReasonCode {
    match rt::connect(addr, c) {
        Err(Error::ConnectFailed(reason)) => reason.reason_code,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the client was let in"),
    }
}

#[test]
fn another_user_cannot_take_over_a_session() {
    let b = files_broker();
    let alice = rt::connect(b.addr, as_user("dev", "alice", "a1ice")).unwrap();
    alice.subscribe(sub("alice/#", QoS::AtLeastOnce)).unwrap();
    assert_eq!(
        refusal(b.addr, as_user("dev", "bob", "b0b")),
        ReasonCode::NotAuthorized
    );
    // Alice is still connected and served.
    let p = rt::connect(b.addr, as_user("p", "alice", "a1ice")).unwrap();
    p.publish(msg("alice/x", "still here", QoS::AtLeastOnce, false))
        .unwrap();
    assert_eq!(next_message(&alice).payload, "still here");
    b.shutdown();
}

#[test]
fn publishes_to_sys_are_refused_even_when_the_acl_allows_them() {
    let b = files_broker();
    let alice = rt::connect(b.addr, as_user("a", "alice", "a1ice")).unwrap();
    alice.subscribe(sub("$SYS/#", QoS::AtLeastOnce)).unwrap();
    let refused = alice
        .publish(msg("$SYS/broker/uptime", "0", QoS::AtLeastOnce, false))
        .unwrap_err();
    assert!(
        matches!(&refused, Error::PublishRefused(a) if a.reason_code == ReasonCode::NotAuthorized),
        "{refused:?}"
    );
    no_message(&alice, Duration::from_millis(100));
    b.shutdown();
}

#[test]
fn a_client_id_with_a_slash_cannot_reach_another_clients_pattern_topics() {
    let b = files_broker();
    let dev1 = rt::connect(b.addr, as_user("dev1", "bob", "b0b")).unwrap();
    dev1.subscribe(sub("clients/dev1/#", QoS::AtLeastOnce))
        .unwrap();
    let evil = rt::connect(b.addr, as_user("dev1/cmd", "alice", "a1ice")).unwrap();
    let refused = evil
        .publish(msg("clients/dev1/cmd/reboot", "x", QoS::AtLeastOnce, false))
        .unwrap_err();
    assert!(
        matches!(&refused, Error::PublishRefused(a) if a.reason_code == ReasonCode::NotAuthorized),
        "{refused:?}"
    );
    let refused = evil
        .subscribe(sub("clients/dev1/#", QoS::AtLeastOnce))
        .unwrap_err();
    assert!(
        matches!(&refused, Error::SubscribeRefused(a) if a.reason_codes == [ReasonCode::NotAuthorized]),
        "{refused:?}"
    );
    no_message(&dev1, Duration::from_millis(100));
    // dev1's own pattern works.
    let ack = dev1
        .publish(msg("clients/dev1/up", "ok", QoS::AtLeastOnce, false))
        .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(next_message(&dev1).payload, "ok");
    b.shutdown();
}

/// Lets "slow" in after `delay` (a blocking lookup); everyone else at once.
struct Slow(Duration);

impl Authenticator for Slow {
    fn authenticate(
        &self,
        _: &ByteStr,
        user: Option<&ByteStr>,
        _: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        if user.map(ByteStr::as_str) == Some("slow") {
            pause(self.0);
        }
        Ok(())
    }
    fn defers(&self) -> bool {
        true
    }
}

fn slow_broker(options: BrokerOptions) -> rt::Broker {
    slow_broker_for(Duration::from_millis(600), options)
}

fn slow_broker_for(delay: Duration, options: BrokerOptions) -> rt::Broker {
    let bc = BrokerConfig::default().with_sys_interval(None);
    let core = Core::with_auth(bc, Arc::new(Slow(delay)), Arc::new(AllowAll));
    rt::broker_core(core, options)
}

#[test]
fn a_shutdown_does_not_wait_for_a_slow_check() {
    let b = slow_broker_for(Duration::from_secs(3), BrokerOptions::default());
    let addr = b.addr;
    let slow = std::thread::spawn(move || {
        let mut c = config(V5, "slow");
        c.username = Some(ByteStr::from_static("slow"));
        rt::connect(addr, c).map(|_| ())
    });
    pause(Duration::from_millis(200)); // the check is running
    let start = clock();
    b.shutdown();
    let took = clock() - start;
    assert!(
        took < Duration::from_secs(2),
        "the shutdown waited {took:?}"
    );
    assert!(slow.join().unwrap().is_err(), "let in after the shutdown");
}

#[test]
fn slow_credentials_checks_do_not_stall_routing() {
    let b = slow_broker(BrokerOptions::default().with_check_threads(2));
    let s = rt::connect(b.addr, config(V5, "s")).unwrap();
    s.subscribe(sub("t", QoS::AtLeastOnce)).unwrap();
    let p = rt::connect(b.addr, config(V5, "p")).unwrap();
    let addr = b.addr;
    let slow: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = config(V5, &format!("slow{i}"));
                c.username = Some(ByteStr::from_static("slow"));
                rt::connect(addr, c).map(|_| ())
            })
        })
        .collect();
    pause(Duration::from_millis(100)); // the checks are running
    let start = clock();
    for i in 0..5 {
        p.publish(msg("t", "m", QoS::AtLeastOnce, false)).unwrap();
        assert_eq!(next_message(&s).payload, "m", "message {i}");
    }
    let took = clock() - start;
    assert!(
        took < Duration::from_millis(400),
        "routing waited for the checks: {took:?}"
    );
    for t in slow {
        t.join().unwrap().unwrap();
    }
    b.shutdown();
}

#[test]
fn checks_beyond_the_cap_are_refused_server_busy() {
    let b = slow_broker(
        BrokerOptions::default()
            .with_check_threads(1)
            .with_max_pending_checks(1),
    );
    let addr = b.addr;
    let tries: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = config(V5, &format!("slow{i}"));
                c.username = Some(ByteStr::from_static("slow"));
                match rt::connect(addr, c) {
                    Ok(_) => None,
                    Err(Error::ConnectFailed(r)) => Some(r.reason_code),
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let results: Vec<_> = tries.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.contains(&None), "{results:?}");
    assert!(
        results.contains(&Some(ReasonCode::ServerBusy)),
        "{results:?}"
    );
    b.shutdown();
}

#[test]
fn an_async_check_runs_as_a_future_on_the_connections_task() {
    let hook: tinymqtt::runtimes::CheckCredentials = Arc::new(|check| {
        Box::pin(async move {
            // A lookup elsewhere would await here; the verdict depends on the fields.
            match check.username.as_ref().map(ByteStr::as_str) {
                Some("slow") => Ok(()),
                _ => Err(ReasonCode::BadUserNameOrPassword),
            }
        })
    });
    let b = slow_broker(BrokerOptions::default().with_check_credentials(Some(hook)));
    let mut c = config(V5, "hooked");
    c.username = Some(ByteStr::from_static("slow"));
    let mut bad = config(V5, "other");
    bad.username = Some(ByteStr::from_static("someone"));
    let start = clock();
    rt::connect(b.addr, c).unwrap();
    // The hook answered, not the authenticator (which would sleep 600 ms).
    assert!(clock() - start < Duration::from_millis(500));
    assert_eq!(refusal(b.addr, bad), ReasonCode::BadUserNameOrPassword);
    b.shutdown();
}
