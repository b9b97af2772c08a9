//! Mosquitto's password and ACL files enforced by a running broker (blocking runtime, real
//! sockets on 127.0.0.1): the password file is written by `mosquitto_passwd`, the ACL file in
//! Mosquitto's format, and clients in MQTT 3.1.1 and 5 check what gets in and what is refused.

// Real sockets on real time: waits may read the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tinymqtt::broker::{BrokerConfig, Router};
use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{encode, Connect, Packet, Publish, Subscription};
use tinymqtt::runtimes::access::{AclFile, PasswordFile};
use tinymqtt::runtimes::{blocking, BrokerHandle, BrokerOptions, Error};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

const WAIT: Duration = Duration::from_secs(5);

const ACL: &str = "\
# anonymous clients may only read the news
topic read news/#

user alice
topic readwrite alice/#
topic read shared/#

user bob
topic readwrite shared/#
topic deny shared/secret

# every client: its own device topic, every user: their own tree
pattern write devices/%c/up
pattern readwrite users/%u/#
";

/// A folder of its own for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinymqtt-access-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A password file written by `mosquitto_passwd` with these users.
fn mosquitto_password_file(dir: &std::path::Path, users: &[(&str, &str)]) -> PasswordFile {
    let path = dir.join("passwd");
    for (i, (user, pw)) in users.iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg("-b")
            .arg(&path)
            .args([user, pw])
            .status()
            .expect("mosquitto_passwd (make test installs mosquitto)");
        assert!(status.success(), "mosquitto_passwd failed");
    }
    PasswordFile::load(&path).unwrap()
}

struct Running {
    addr: SocketAddr,
    handle: BrokerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A broker with `mosquitto_passwd`'s file for alice, bob and carol, and [`ACL`].
fn broker(name: &str, allow_anonymous: bool) -> Running {
    let dir = scratch(name);
    let users = [("alice", "wonder land"), ("bob", "b0b"), ("carol", "c4r0l")];
    let passwords = mosquitto_password_file(&dir, &users);
    assert_eq!(passwords.len(), 3);
    let config = BrokerConfig::default()
        .with_allow_anonymous(allow_anonymous)
        .with_sys_interval(None);
    let acl = AclFile::parse(ACL).unwrap();
    let core = Router::with_auth(config, Arc::new(passwords), Arc::new(acl));
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = blocking::Server::bind_with(core, BrokerOptions::default(), &[addr]).unwrap();
    let addr = server.local_addrs()[0];
    let handle = server.handle();
    let thread = Some(std::thread::spawn(move || server.run()));
    Running {
        addr,
        handle,
        thread,
    }
}

fn config(v: ProtocolVersion, id: &str, user: Option<(&str, &str)>) -> ClientConfig {
    let mut c = ClientConfig::new(v, ByteStr::try_from(id).unwrap());
    c.reconnect = None;
    if let Some((u, p)) = user {
        c.username = Some(ByteStr::try_from(u).unwrap());
        c.password = Some(Bytes::copy_from_slice(p.as_bytes()));
    }
    c
}

fn connect(
    addr: SocketAddr,
    c: ClientConfig,
) -> Result<(blocking::Client, blocking::Events), Error> {
    blocking::Client::connect(addr, c)
}

fn refusal(addr: SocketAddr, c: ClientConfig) -> ReasonCode {
    match connect(addr, c) {
        Err(Error::ConnectFailed(reason)) => reason.reason_code,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the client was let in"),
    }
}

/// The CONNACK return code (3.1.x) or reason code (5) a raw CONNECT gets.
fn raw_connack_code(addr: SocketAddr, c: ClientConfig) -> u8 {
    let mut connect = Connect::new(c.protocol, c.client_id.clone());
    connect.username = c.username.clone();
    connect.password = c.password.clone();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), c.protocol, &mut buf).unwrap();
    s.write_all(&buf).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x20, "CONNACK expected");
    head[3]
}

fn msg(topic: &str, payload: &'static str, qos: QoS) -> Publish {
    let mut p = Publish::new(
        TopicName::new(topic).unwrap(),
        Bytes::from_static(payload.as_bytes()),
    );
    p.qos = qos;
    p
}

fn sub(filter: &str) -> Vec<Subscription> {
    vec![Subscription::new(
        TopicFilter::new(filter).unwrap(),
        QoS::AtLeastOnce,
    )]
}

fn next_message(events: &blocking::Events) -> Publish {
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no message within {WAIT:?}");
        match events.try_recv() {
            Some(Event::Message(m)) => return m.publish,
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The publish's reason code: a refusal is an error carrying the PUBACK.
fn publish_code(c: &blocking::Client, topic: &str) -> ReasonCode {
    match c.publish(msg(topic, "x", QoS::AtLeastOnce)).unwrap().wait() {
        Ok(ack) => ack.reason_code,
        Err(Error::PublishRefused(ack)) => {
            assert!(ack.reason_code.is_error(), "{ack:?}");
            ack.reason_code
        }
        Err(e) => panic!("publish failed: {e}"),
    }
}

/// The subscription's reason code: a refusal is an error carrying the SUBACK.
fn suback(c: &blocking::Client, filter: &str) -> ReasonCode {
    match c.subscribe(sub(filter)) {
        Ok(ack) => ack.reason_codes[0],
        Err(Error::SubscribeRefused(ack)) => {
            assert!(ack.reason_codes[0].is_error(), "{ack:?}");
            ack.reason_codes[0]
        }
        Err(e) => panic!("subscribe failed: {e}"),
    }
}

#[test]
fn mosquitto_passwd_users_get_in_and_bad_passwords_get_0x86_in_v5() {
    let b = broker("v5pw", true);
    let v5 = ProtocolVersion::V5;
    let (c, _e) = connect(b.addr, config(v5, "a1", Some(("alice", "wonder land")))).unwrap();
    c.disconnect().unwrap();
    for wrong in [
        ("alice", "wonder"),
        ("alice", ""),
        ("mallory", "wonder land"),
    ] {
        let code = refusal(b.addr, config(v5, "a2", Some(wrong)));
        assert_eq!(code, ReasonCode::BadUserNameOrPassword, "{wrong:?}");
    }
    assert_eq!(
        raw_connack_code(b.addr, config(v5, "a3", Some(("bob", "bob")))),
        0x86
    );
}

#[test]
fn bad_passwords_get_return_code_4_in_v311() {
    let b = broker("v3pw", true);
    let v3 = ProtocolVersion::V3_1_1;
    assert_eq!(
        raw_connack_code(b.addr, config(v3, "b1", Some(("bob", "nope")))),
        4
    );
    assert_eq!(
        raw_connack_code(b.addr, config(v3, "b2", Some(("bob", "b0b")))),
        0
    );
}

#[test]
fn anonymous_clients_are_refused_when_allow_anonymous_is_false() {
    let b = broker("anon-off", false);
    let code = refusal(b.addr, config(ProtocolVersion::V5, "anon", None));
    assert_eq!(code, ReasonCode::NotAuthorized);
    assert_eq!(
        raw_connack_code(b.addr, config(ProtocolVersion::V3_1_1, "anon", None)),
        5
    );
    // and let in when it is true, with the anonymous section of the ACL
    let b = broker("anon-on", true);
    let (c, _e) = connect(b.addr, config(ProtocolVersion::V5, "anon", None)).unwrap();
    assert_eq!(suback(&c, "news/#"), ReasonCode::GrantedQoS1);
    assert_eq!(suback(&c, "shared/#"), ReasonCode::NotAuthorized);
    assert_eq!(publish_code(&c, "news/today"), ReasonCode::NotAuthorized);
}

#[test]
fn a_publish_the_acl_denies_gets_puback_0x87_in_v5_and_is_dropped_in_v311() {
    let b = broker("acl-pub", true);
    let (bob, bob_events) = connect(
        b.addr,
        config(ProtocolVersion::V5, "bob1", Some(("bob", "b0b"))),
    )
    .unwrap();
    // (shared/# overlaps bob's deny on shared/secret: he subscribes to each topic)
    for t in ["shared/x", "shared/y", "shared/ok"] {
        assert_eq!(suback(&bob, t), ReasonCode::GrantedQoS1);
    }
    // alice may read shared/# but not write it
    let (alice5, _e) = connect(
        b.addr,
        config(
            ProtocolVersion::V5,
            "alice5",
            Some(("alice", "wonder land")),
        ),
    )
    .unwrap();
    assert_eq!(publish_code(&alice5, "shared/x"), ReasonCode::NotAuthorized);
    // Allowed; nobody subscribes to it: 0x10 No matching subscribers, a success.
    assert_eq!(
        publish_code(&alice5, "alice/x"),
        ReasonCode::NoMatchingSubscribers
    );
    let (alice3, _e) = connect(
        b.addr,
        config(
            ProtocolVersion::V3_1_1,
            "alice3",
            Some(("alice", "wonder land")),
        ),
    )
    .unwrap();
    // 3.1.1 has no code for it: acknowledged, and dropped
    assert_eq!(publish_code(&alice3, "shared/y"), ReasonCode::Success);
    // deny wins over bob's readwrite on shared/#
    assert_eq!(
        publish_code(&bob, "shared/secret"),
        ReasonCode::NotAuthorized
    );
    assert_eq!(publish_code(&bob, "shared/ok"), ReasonCode::Success);
    // Nothing denied reached bob: the first message he gets is his own allowed one.
    assert_eq!(next_message(&bob_events).topic.as_str(), "shared/ok");
}

#[test]
fn a_subscription_the_acl_denies_gets_suback_0x87_in_v5_and_0x80_in_v311() {
    let b = broker("acl-sub", true);
    let (bob, _e) = connect(
        b.addr,
        config(ProtocolVersion::V5, "bob2", Some(("bob", "b0b"))),
    )
    .unwrap();
    // retained on a topic alice may not read
    bob.publish({
        let mut p = msg("shared/retained", "r", QoS::AtLeastOnce);
        p.retain = true;
        p
    })
    .unwrap()
    .wait()
    .unwrap();
    let (alice5, _e) = connect(
        b.addr,
        config(
            ProtocolVersion::V5,
            "alice6",
            Some(("alice", "wonder land")),
        ),
    )
    .unwrap();
    // Nothing alice may read matches bob/#; `#` overlaps her grants, so it is granted and
    // filtered message by message (see the next test), as Mosquitto does.
    assert_eq!(suback(&alice5, "bob/#"), ReasonCode::NotAuthorized);
    assert_eq!(suback(&alice5, "alice/+"), ReasonCode::GrantedQoS1);
    assert_eq!(suback(&alice5, "#"), ReasonCode::GrantedQoS1);
    // bob's deny covers shared/secret whole; shared/# only overlaps it
    assert_eq!(suback(&bob, "shared/secret"), ReasonCode::NotAuthorized);
    assert_eq!(suback(&bob, "shared/#"), ReasonCode::GrantedQoS1);
    let (alice3, alice3_events) = connect(
        b.addr,
        config(
            ProtocolVersion::V3_1_1,
            "alice7",
            Some(("alice", "wonder land")),
        ),
    )
    .unwrap();
    assert_eq!(suback(&alice3, "news/#"), ReasonCode::UnspecifiedError); // 0x80
    assert_eq!(ReasonCode::UnspecifiedError as u8, 0x80);
    assert_eq!(suback(&alice3, "shared/retained"), ReasonCode::GrantedQoS1);
    assert_eq!(
        next_message(&alice3_events).topic.as_str(),
        "shared/retained"
    );
}

#[test]
fn each_delivery_live_and_retained_is_checked_against_read() {
    let b = broker("acl-deliver", true);
    let (bob, _e) = connect(
        b.addr,
        config(ProtocolVersion::V5, "bob3", Some(("bob", "b0b"))),
    )
    .unwrap();
    // alice reads shared/#, and may not read bob/... (bob can write shared/ but not shared/secret)
    for (topic, payload) in [("shared/kept", "yes"), ("users/bob/kept", "no")] {
        let mut p = msg(topic, payload, QoS::AtLeastOnce);
        p.retain = true;
        bob.publish(p).unwrap().wait().unwrap();
    }
    let (alice, events) = connect(
        b.addr,
        config(
            ProtocolVersion::V3_1_1,
            "alice8",
            Some(("alice", "wonder land")),
        ),
    )
    .unwrap();
    assert_eq!(suback(&alice, "#"), ReasonCode::GrantedQoS1);
    // Retained: only the readable one.
    let first = next_message(&events);
    assert_eq!(
        (first.topic.as_str(), &first.payload[..]),
        ("shared/kept", &b"yes"[..])
    );
    // Live: bob's own tree is not readable by alice, shared/ is.
    assert_eq!(publish_code(&bob, "users/bob/live"), ReasonCode::Success);
    assert_eq!(publish_code(&bob, "shared/live"), ReasonCode::Success);
    assert_eq!(next_message(&events).topic.as_str(), "shared/live");
    let quiet = events.try_recv();
    assert!(
        !matches!(quiet, Some(Event::Message(_))),
        "an unreadable message reached alice: {quiet:?}"
    );
}

#[test]
fn user_and_client_id_patterns_grant_each_client_its_own_topics() {
    let b = broker("acl-patterns", true);
    let (carol, _e) = connect(
        b.addr,
        config(ProtocolVersion::V5, "dev7", Some(("carol", "c4r0l"))),
    )
    .unwrap();
    assert_eq!(suback(&carol, "users/carol/#"), ReasonCode::GrantedQoS1);
    assert_eq!(suback(&carol, "users/alice/#"), ReasonCode::NotAuthorized);
    assert_eq!(publish_code(&carol, "users/carol/x"), ReasonCode::Success);
    // Allowed, and no subscriber: 0x10 No matching subscribers (a success).
    assert_eq!(
        publish_code(&carol, "devices/dev7/up"),
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(
        publish_code(&carol, "devices/dev8/up"),
        ReasonCode::NotAuthorized
    );
    // write-only: no subscription to it
    assert_eq!(suback(&carol, "devices/dev7/up"), ReasonCode::NotAuthorized);
    // %c applies to anonymous clients too, %u does not
    let (anon, _e) = connect(b.addr, config(ProtocolVersion::V5, "dev9", None)).unwrap();
    assert_eq!(
        publish_code(&anon, "devices/dev9/up"),
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(publish_code(&anon, "users//x"), ReasonCode::NotAuthorized);
}
