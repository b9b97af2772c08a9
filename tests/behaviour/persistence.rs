//! The broker with a store directory on this runtime: what it kept is there after a restart
//! (retained messages, persistent sessions with their subscriptions and offline queues), and a
//! store file it cannot read stops the start with an error naming the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{broker_options_in, config, msg, next_message, no_message, sub, WAIT};
use super::{clock, Event};
use crate::rt;
use tinymqtt::broker::BrokerConfig;
use tinymqtt::runtimes::driver::STORE_FILE;
use tinymqtt::runtimes::Fsync;
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

/// A fresh directory for one test's store, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let runtime = module_path!().split("::").next().unwrap_or("rt");
        let dir = std::env::temp_dir().join(format!(
            "tinymqtt-{runtime}-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stored_broker(dir: &Dir) -> rt::Broker {
    rt::broker_with(BrokerConfig::default(), broker_options_in(&dir.0))
}

/// A broker on the store in `dir` that syncs as `fsync` says (its acknowledgements follow
/// the policy: the default config's `durable_acks` is derived from it).
fn stored_broker_with(dir: &Path, fsync: Fsync) -> rt::Broker {
    let options = broker_options_in(dir).with_fsync(fsync);
    rt::broker_with(BrokerConfig::default(), options)
}

/// A persistent session's config.
fn durable_config(id: &str) -> tinymqtt::client::ClientConfig {
    let mut c = config(ProtocolVersion::V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// Waits until the broker counts `n` connections.
fn until_connections(b: &rt::Broker, n: usize) {
    let end = clock() + WAIT;
    while b.stats().connections != n {
        assert!(clock() < end, "never {n} connections");
        std::thread::yield_now();
    }
}

/// The session present flag of a client's first connection.
fn session_present(c: &rt::Client) -> bool {
    let end = clock() + WAIT;
    loop {
        match c.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Connected {
                session_present, ..
            }) => return session_present,
            Some(_) => continue,
            None => panic!("no connected event within {WAIT:?}"),
        }
    }
}

#[test]
fn retained_messages_and_persistent_sessions_survive_a_restart() {
    let dir = Dir::new("restart");
    let mut durable = config(ProtocolVersion::V5, "durable");
    durable.clean_start = false;
    durable.properties.session_expiry_interval = Some(3600);
    let mut old = config(ProtocolVersion::V3_1_1, "old");
    old.clean_start = false;

    let b = stored_broker(&dir);
    let s = rt::connect(b.addr, durable.clone()).unwrap();
    assert!(!session_present(&s));
    s.subscribe(sub("d/#", QoS::AtLeastOnce)).unwrap();
    s.disconnect();
    let o = rt::connect(b.addr, old.clone()).unwrap();
    o.subscribe(sub("o/+", QoS::ExactlyOnce)).unwrap();
    o.disconnect();
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    p.publish(msg("r/1", "kept", QoS::AtLeastOnce, true))
        .unwrap();
    p.publish(msg("r/2", "cleared", QoS::AtLeastOnce, true))
        .unwrap();
    p.publish(msg("r/2", "", QoS::AtLeastOnce, true)).unwrap();
    p.disconnect();
    b.shutdown();
    assert!(dir.0.join(STORE_FILE).is_file());

    let b = stored_broker(&dir);
    let stats = b.stats();
    assert_eq!((stats.sessions, stats.subscriptions), (2, 2), "{stats:?}");
    let fresh = rt::connect(b.addr, config(ProtocolVersion::V5, "fresh")).unwrap();
    fresh.subscribe(sub("r/#", QoS::AtLeastOnce)).unwrap();
    let got = next_message(&fresh);
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("r/1", &b"kept"[..])
    );
    assert!(got.retain);
    no_message(&fresh, Duration::from_millis(200));

    let s = rt::connect(b.addr, durable).unwrap();
    assert!(session_present(&s), "the v5 session was restored");
    let o = rt::connect(b.addr, old).unwrap();
    assert!(session_present(&o), "the 3.1.1 session was restored");
    fresh
        .publish(msg("d/x", "to durable", QoS::AtLeastOnce, false))
        .unwrap();
    fresh
        .publish(msg("o/y", "to old", QoS::ExactlyOnce, false))
        .unwrap();
    assert_eq!(&next_message(&s).payload[..], b"to durable");
    let got = next_message(&o);
    assert_eq!(
        (got.qos, &got.payload[..]),
        (QoS::ExactlyOnce, &b"to old"[..])
    );
    b.shutdown();
}

#[test]
fn a_corrupt_store_file_stops_the_start_naming_the_file() {
    let dir = Dir::new("corrupt");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join(STORE_FILE);
    std::fs::write(
        &file,
        b"this is not a redb database, only garbage bytes".repeat(100),
    )
    .unwrap();
    let err = match rt::try_broker_with(BrokerConfig::default(), broker_options_in(&dir.0)) {
        Ok(b) => {
            b.shutdown();
            panic!("a broker started on a corrupt store");
        }
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()), "{text}");
}

#[test]
fn a_truncated_store_file_stops_the_start_naming_the_file() {
    let dir = Dir::new("truncated");
    let b = stored_broker(&dir);
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    p.publish(msg("t", "x", QoS::AtLeastOnce, true)).unwrap();
    p.disconnect();
    b.shutdown();
    let file = dir.0.join(STORE_FILE);
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    match rt::try_broker_with(BrokerConfig::default(), broker_options_in(&dir.0)) {
        Ok(b) => {
            b.shutdown();
            panic!("a broker started on a truncated store");
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&file.display().to_string()), "{text}");
        }
    }
}

#[test]
fn an_offline_queue_survives_a_restart_in_order() {
    let dir = Dir::new("queue");
    let mut durable = config(ProtocolVersion::V5, "queued");
    durable.clean_start = false;
    durable.properties.session_expiry_interval = Some(3600);

    let b = stored_broker(&dir);
    let s = rt::connect(b.addr, durable.clone()).unwrap();
    assert!(!session_present(&s));
    s.subscribe(sub("q", QoS::AtLeastOnce)).unwrap();
    s.disconnect();
    // The subscriber's close reaches the router before anything is published.
    let end = clock() + WAIT;
    while b.stats().connections > 0 {
        assert!(clock() < end, "the subscriber never left");
        std::thread::yield_now();
    }
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    for payload in ["m0", "m1", "m2", "m3", "m4"] {
        p.publish(msg("q", payload, QoS::AtLeastOnce, false))
            .unwrap();
    }
    p.disconnect();
    let end = clock() + WAIT;
    while b.stats().connections > 0 {
        assert!(clock() < end, "the publisher never left");
        std::thread::yield_now();
    }
    b.shutdown();

    let b = stored_broker(&dir);
    let s = rt::connect(b.addr, durable).unwrap();
    assert!(session_present(&s), "the session was restored");
    for i in 0..5 {
        let got = next_message(&s);
        assert_eq!(
            (got.qos, got.payload.to_vec()),
            (QoS::AtLeastOnce, format!("m{i}").into_bytes()),
            "message {i}"
        );
    }
    no_message(&s, Duration::from_millis(200));
    b.shutdown();
}

#[test]
fn qos_1_and_2_acknowledgements_arrive_with_either_fsync_policy() {
    for (name, fsync) in [
        ("always", Fsync::Always),
        ("interval", Fsync::Interval(Duration::from_millis(50))),
    ] {
        let dir = Dir::new(name);
        let b = stored_broker_with(&dir.0, fsync);
        // A persistent subscriber online: each publish is stored before its acknowledgement.
        let s = rt::connect(b.addr, durable_config("sub")).unwrap();
        s.subscribe(sub("a/#", QoS::ExactlyOnce)).unwrap();
        let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
        // The client completes a QoS 1 publish on PUBACK, a QoS 2 one on PUBCOMP (after the
        // PUBREC it answered with PUBREL).
        let one = p
            .publish(msg("a/1", "one", QoS::AtLeastOnce, false))
            .unwrap();
        let two = p
            .publish(msg("a/2", "two", QoS::ExactlyOnce, false))
            .unwrap();
        assert_eq!(one.reason_code, ReasonCode::Success, "{name}");
        assert_eq!(two.reason_code, ReasonCode::Success, "{name}");
        // Many at once: group commit hands every ticket back, in order.
        let many: Vec<_> = (0..50)
            .map(|i| {
                let qos = [QoS::AtLeastOnce, QoS::ExactlyOnce][i % 2];
                msg("a/many", "m", qos, false)
            })
            .collect();
        let acks = p.publish_many(many);
        assert_eq!(acks.len(), 50, "{name}");
        assert!(acks.iter().all(|a| a.reason_code == ReasonCode::Success));
        assert_eq!(&next_message(&s).payload[..], b"one", "{name}");
        assert_eq!(&next_message(&s).payload[..], b"two", "{name}");
        for _ in 0..50 {
            assert_eq!(&next_message(&s).payload[..], b"m", "{name}");
        }
        b.shutdown();
    }
}

#[test]
fn a_message_acknowledged_with_fsync_always_is_on_disk_when_the_broker_dies_right_after() {
    let dir = Dir::new("always");
    let crashed = Dir::new("always-crash");
    let b = stored_broker_with(&dir.0, Fsync::Always);
    let s = rt::connect(b.addr, durable_config("kept")).unwrap();
    assert!(!session_present(&s));
    s.subscribe(sub("k", QoS::AtLeastOnce)).unwrap();
    s.disconnect();
    until_connections(&b, 0);
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    p.publish(msg("k", "acknowledged", QoS::AtLeastOnce, false))
        .unwrap();
    // The PUBACK is here: the file as it is on disk at this instant is what a crash (kill -9,
    // power cut) would leave.
    std::fs::create_dir_all(&crashed.0).unwrap();
    std::fs::copy(dir.0.join(STORE_FILE), crashed.0.join(STORE_FILE)).unwrap();
    b.shutdown();

    let b = stored_broker_with(&crashed.0, Fsync::Always);
    let s = rt::connect(b.addr, durable_config("kept")).unwrap();
    assert!(session_present(&s), "the session was on disk");
    let got = next_message(&s);
    assert_eq!(
        (got.qos, &got.payload[..]),
        (QoS::AtLeastOnce, &b"acknowledged"[..])
    );
    b.shutdown();
}

#[test]
fn the_fsync_policy_decides_the_acknowledgements_whatever_the_config_says() {
    // Each policy with a config that says the opposite: the broker starts, its acknowledgements
    // follow the policy (derived when the store opens), and what it acknowledged is kept.
    let dir = Dir::new("derived");
    for (durable_acks, fsync) in [
        (true, Fsync::Interval(Duration::from_secs(1))),
        (false, Fsync::Always),
    ] {
        let bc = BrokerConfig::default().with_durable_acks(durable_acks);
        let options = broker_options_in(&dir.0).with_fsync(fsync);
        let b = rt::try_broker_with(bc, options)
            .unwrap_or_else(|e| panic!("{fsync:?} with durable_acks = {durable_acks}: {e}"));
        let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
        let topic = format!("kept/{durable_acks}");
        let ack = p.publish(msg(&topic, "x", QoS::AtLeastOnce, true)).unwrap();
        // No subscriber: MQTT 5's success code for that.
        assert_eq!(
            ack.reason_code,
            ReasonCode::NoMatchingSubscribers,
            "{fsync:?}"
        );
        b.shutdown();
    }
    // Both retained messages are in the store (a graceful shutdown syncs the interval policy's
    // last writes too).
    let b = stored_broker(&dir);
    let s = rt::connect(b.addr, config(ProtocolVersion::V5, "reader")).unwrap();
    s.subscribe(sub("kept/#", QoS::AtLeastOnce)).unwrap();
    let mut topics = vec![
        next_message(&s).topic.to_string(),
        next_message(&s).topic.to_string(),
    ];
    topics.sort();
    assert_eq!(topics, ["kept/false", "kept/true"]);
    b.shutdown();
}
