//! The behaviour suite, mounted once per runtime: each `tests/behaviour_*.rs` provides a `rt`
//! shim (start a broker, connect a client, wait for events with a timeout) and includes this.
//!
//! Everything runs over 127.0.0.1 with port 0; every wait is bounded, so a failure fails fast.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};

use tinymqtt::broker::{BrokerConfig, BrokerEvent};
use tinymqtt::client::{Backoff, ClientConfig, Event};
use tinymqtt::codec::{encode, Connect, Packet, Publish, Subscription, Will};
use tinymqtt::runtimes::{BrokerOptions, Error};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

use crate::rt;

mod access;
mod client_api;
mod embed;
mod interop;
mod metrics;
mod ordering;
mod persistence;

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

/// Real sockets run on real time.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

#[allow(clippy::disallowed_methods)]
fn pause(d: Duration) {
    std::thread::sleep(d);
}

fn config(v: ProtocolVersion, id: &str) -> ClientConfig {
    let mut c = ClientConfig::new(v, ByteStr::try_from(id).unwrap());
    c.reconnect = None;
    c
}

fn broker() -> rt::Broker {
    rt::broker(BrokerConfig::default().with_sys_interval(None))
}

/// Options for a broker whose store is in `dir`.
fn broker_options_in(dir: &std::path::Path) -> BrokerOptions {
    BrokerOptions::default().with_persistence(Some(dir.to_path_buf()))
}

fn msg(topic: &str, payload: &'static str, qos: QoS, retain: bool) -> Publish {
    let mut p = Publish::new(
        TopicName::new(topic).unwrap(),
        Bytes::from_static(payload.as_bytes()),
    );
    p.qos = qos;
    p.retain = retain;
    p
}

fn sub(filter: &str, qos: QoS) -> Vec<Subscription> {
    vec![Subscription::new(TopicFilter::new(filter).unwrap(), qos)]
}

/// The next message, skipping other events; panics after `WAIT`.
fn next_message(c: &rt::Client) -> Publish {
    let end = clock() + WAIT;
    loop {
        let left = end.saturating_duration_since(clock());
        match c.next_event(left) {
            Some(Event::Message(m)) => return m.publish,
            Some(_) => continue,
            None => panic!("no message within {WAIT:?}"),
        }
    }
}

/// No message arrives within `wait`.
fn no_message(c: &rt::Client, wait: Duration) {
    let end = clock() + wait;
    while let Some(e) = c.next_event(end.saturating_duration_since(clock())) {
        if let Event::Message(m) = e {
            panic!("unexpected message on {}", m.publish.topic);
        }
    }
}

/// The next Disconnected event's reason code; panics after `WAIT`.
fn next_disconnect(c: &rt::Client) -> ReasonCode {
    let end = clock() + WAIT;
    loop {
        match c.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Disconnected { reason, .. }) => return reason.reason_code,
            Some(_) => continue,
            None => panic!("no disconnect within {WAIT:?}"),
        }
    }
}

/// A raw TCP peer that sends `connect` and reads the CONNACK.
fn raw_connect(addr: SocketAddr, connect: Connect) -> TcpStream {
    raw_connect_flag(addr, connect).0
}

/// [`raw_connect`], with the CONNACK's session present flag.
fn raw_connect_flag(addr: SocketAddr, connect: Connect) -> (TcpStream, bool) {
    let v = connect.protocol;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), v, &mut buf).unwrap();
    s.write_all(&buf).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x20, "CONNACK expected");
    let mut rest = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut rest).unwrap();
    assert_eq!(rest[1], 0, "connection refused");
    (s, rest[0] & 1 == 1)
}

/// Sends a 3.1.1 SUBSCRIBE (id 1, QoS 0) on a raw peer and reads its SUBACK.
fn raw_subscribe_v311(s: &mut TcpStream, filter: &str) {
    let mut subscribe = BytesMut::new();
    let packet = tinymqtt::codec::Subscribe {
        packet_id: tinymqtt::PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: sub(filter, QoS::AtMostOnce),
    };
    encode(
        &Packet::Subscribe(packet),
        ProtocolVersion::V3_1_1,
        &mut subscribe,
    )
    .unwrap();
    s.write_all(&subscribe).unwrap();
    let mut suback = [0u8; 5];
    s.read_exact(&mut suback).unwrap();
    assert_eq!(suback, [0x90, 3, 0, 1, 0], "SUBACK granting QoS 0");
}

#[test]
fn pub_sub_at_qos_0_1_2_in_every_version() {
    let b = broker();
    for v in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let s = rt::connect(b.addr, config(v, "sub")).unwrap();
        let granted = s.subscribe(sub("t/#", QoS::ExactlyOnce)).unwrap();
        assert_eq!(granted.reason_codes, vec![ReasonCode::GrantedQoS2]);
        let p = rt::connect(b.addr, config(v, "pub")).unwrap();
        for (qos, payload) in [
            (QoS::AtMostOnce, "zero"),
            (QoS::AtLeastOnce, "one"),
            (QoS::ExactlyOnce, "two"),
        ] {
            let ack = p.publish(msg("t/x", payload, qos, false)).unwrap();
            assert_eq!(ack.packet_id.is_some(), qos != QoS::AtMostOnce);
            assert_eq!(ack.reason_code, ReasonCode::Success);
            let got = next_message(&s);
            assert_eq!(
                (got.topic.as_str(), &got.payload[..], got.qos),
                ("t/x", payload.as_bytes(), qos),
                "{v:?}"
            );
        }
        // After UNSUBACK nothing more arrives.
        let gone = s
            .unsubscribe(vec![TopicFilter::new("t/#").unwrap()])
            .unwrap();
        assert_eq!(gone.reason_codes.len(), if v.is_v5() { 1 } else { 0 });
        p.publish(msg("t/x", "late", QoS::AtLeastOnce, false))
            .unwrap();
        no_message(&s, Duration::from_millis(100));
        p.disconnect();
        s.disconnect();
    }
    b.shutdown();
}

#[test]
fn many_qos1_publishes_wait_for_room_in_the_window() {
    let b = rt::broker(
        BrokerConfig::default()
            .with_receive_maximum(4)
            .with_sys_interval(None),
    );
    let s = rt::connect(b.addr, config(ProtocolVersion::V5, "sub")).unwrap();
    s.subscribe(sub("w", QoS::AtLeastOnce)).unwrap();
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    let acks = p.publish_many(
        (0..200)
            .map(|_| msg("w", "m", QoS::AtLeastOnce, false))
            .collect(),
    );
    assert_eq!(acks.len(), 200);
    assert!(acks.iter().all(|a| a.reason_code == ReasonCode::Success));
    for _ in 0..200 {
        next_message(&s);
    }
    b.shutdown();
}

#[test]
fn retained_message_reaches_a_later_subscriber_and_is_cleared() {
    let b = broker();
    let p = rt::connect(b.addr, config(ProtocolVersion::V3_1_1, "pub")).unwrap();
    p.publish(msg("r/1", "kept", QoS::AtLeastOnce, true))
        .unwrap();
    let s = rt::connect(b.addr, config(ProtocolVersion::V3_1_1, "sub")).unwrap();
    s.subscribe(sub("r/+", QoS::AtLeastOnce)).unwrap();
    let got = next_message(&s);
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"kept");
    let stats = b.stats();
    assert_eq!(
        (stats.retained, stats.connections, stats.subscriptions),
        (1, 2, 1)
    );
    // An empty retained payload clears it.
    p.publish(msg("r/1", "", QoS::AtLeastOnce, true)).unwrap();
    next_message(&s);
    let s2 = rt::connect(b.addr, config(ProtocolVersion::V3_1_1, "sub2")).unwrap();
    s2.subscribe(sub("r/+", QoS::AtLeastOnce)).unwrap();
    no_message(&s2, Duration::from_millis(200));
    b.shutdown();
}

#[test]
fn will_is_published_when_a_connection_is_killed() {
    let b = broker();
    let s = rt::connect(b.addr, config(ProtocolVersion::V5, "watcher")).unwrap();
    s.subscribe(sub("wills/#", QoS::AtLeastOnce)).unwrap();
    let mut c = Connect::new(ProtocolVersion::V3_1_1, ByteStr::from_static("doomed"));
    c.will = Some(Will {
        topic: TopicName::from_static("wills/doomed"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let raw = raw_connect(b.addr, c);
    drop(raw); // no DISCONNECT
    let got = next_message(&s);
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("wills/doomed", &b"gone"[..])
    );
    b.shutdown();
}

#[test]
fn a_second_connection_with_the_same_id_takes_over() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let options = BrokerOptions::default().with_on_event(Some(Arc::new(move |e: &BrokerEvent| {
        log.lock().unwrap().push(e.clone())
    })));
    let b = rt::broker_with(BrokerConfig::default().with_sys_interval(None), options);
    let first = rt::connect(b.addr, config(ProtocolVersion::V5, "same")).unwrap();
    let second = rt::connect(b.addr, config(ProtocolVersion::V5, "same")).unwrap();
    assert_eq!(next_disconnect(&first), ReasonCode::SessionTakenOver);
    // The new connection works.
    second.subscribe(sub("x", QoS::AtMostOnce)).unwrap();
    // The event hook saw both connects and the first connection's close.
    let events = seen.lock().unwrap().clone();
    let connected = events
        .iter()
        .filter(|e| matches!(e, BrokerEvent::Connected { client_id, .. } if client_id.as_str() == "same"))
        .count();
    assert_eq!(connected, 2, "{events:?}");
    // Each connect names the listener it came in on.
    let addr = b.addr.to_string();
    let named = events
        .iter()
        .filter(|e| matches!(e, BrokerEvent::Connected { info, .. } if info.listener.as_ref().map(|l| l.as_str()) == Some(addr.as_str())))
        .count();
    assert_eq!(named, 2, "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e, BrokerEvent::Closed { reason, .. } if reason.reason_code == ReasonCode::SessionTakenOver)),
        "{events:?}"
    );
    b.shutdown();
}

#[test]
fn persistent_session_gets_what_was_published_while_offline() {
    let b = broker();
    let mut c = config(ProtocolVersion::V5, "durable");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let s = rt::connect(b.addr, c.clone()).unwrap();
    s.subscribe(sub("d/#", QoS::AtLeastOnce)).unwrap();
    s.disconnect();
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    p.publish(msg("d/1", "while away", QoS::AtLeastOnce, false))
        .unwrap();
    let s = rt::connect(b.addr, c).unwrap();
    let got = next_message(&s);
    assert_eq!(&got.payload[..], b"while away");
    b.shutdown();
}

#[test]
fn a_silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let b = broker();
    let mut c = Connect::new(ProtocolVersion::V3_1_1, ByteStr::from_static("silent"));
    c.keep_alive = 1;
    let started = clock();
    let mut raw = raw_connect(b.addr, c);
    let mut byte = [0u8; 1];
    // The broker closes the socket: end of stream (or a reset), well before our 5 s timeout.
    match raw.read(&mut byte) {
        Ok(0) | Err(_) => {}
        Ok(_) => panic!("unexpected bytes from the broker"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(4000),
        "closed too late: {waited:?}"
    );
    b.shutdown();
}

#[test]
fn shutdown_sends_0x8b_to_v5_clients_and_publishes_no_will() {
    let b = broker();
    let watcher = rt::connect(b.addr, config(ProtocolVersion::V5, "watcher")).unwrap();
    watcher.subscribe(sub("wills/#", QoS::AtMostOnce)).unwrap();
    let mut c = config(ProtocolVersion::V5, "leaving");
    c.will = Some(Will {
        topic: TopicName::from_static("wills/leaving"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let client = rt::connect(b.addr, c).unwrap();
    let addr = b.addr;
    b.shutdown();
    assert_eq!(next_disconnect(&client), ReasonCode::ServerShuttingDown);
    // The watcher is told the same, and saw no will before it.
    let end = clock() + WAIT;
    loop {
        match watcher.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Disconnected { reason, .. }) => {
                assert_eq!(reason.reason_code, ReasonCode::ServerShuttingDown);
                break;
            }
            Some(Event::Message(m)) => panic!("a will was published: {}", m.publish.topic),
            Some(_) => {}
            None => panic!("the watcher saw no disconnect"),
        }
    }
    // The listener closes.
    let end = clock() + WAIT;
    while TcpStream::connect(addr).is_ok() {
        assert!(clock() < end, "the listener still accepts");
        pause(Duration::from_millis(20));
    }
}

#[test]
fn the_client_reconnects_with_its_backoff_after_losing_the_connection() {
    let b = broker();
    let mut c = config(ProtocolVersion::V3_1_1, "comeback");
    c.reconnect = Some(Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        jitter_percent: 0,
        seed: 1,
    });
    let client = rt::connect(b.addr, c).unwrap();
    client.subscribe(sub("back/#", QoS::AtLeastOnce)).unwrap();
    // A raw connection with the same client id takes the session over.
    let raw = raw_connect(
        b.addr,
        Connect::new(ProtocolVersion::V3_1_1, ByteStr::from_static("comeback")),
    );
    let end = clock() + WAIT;
    let mut disconnected = false;
    loop {
        match client.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Disconnected { .. }) => disconnected = true,
            Some(Event::Reconnected { .. }) if disconnected => break,
            Some(_) => {}
            None => panic!("no reconnect within {WAIT:?} (disconnected: {disconnected})"),
        }
    }
    drop(raw);
    // The session re-subscribes on its own (clean session: the broker had none); its SUBACK
    // reaches the events, as no call waits for it. Publishing before it would race.
    loop {
        match client.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Subscribed { reason_codes, .. }) => {
                assert_eq!(reason_codes, vec![ReasonCode::GrantedQoS1]);
                break;
            }
            Some(Event::Message(m)) => panic!("a message before the SUBACK: {m:?}"),
            Some(_) => {}
            None => panic!("no re-subscription within {WAIT:?}"),
        }
    }
    let p = rt::connect(b.addr, config(ProtocolVersion::V3_1_1, "pub")).unwrap();
    p.publish(msg("back/1", "again", QoS::AtLeastOnce, false))
        .unwrap();
    assert_eq!(&next_message(&client).payload[..], b"again");
    b.shutdown();
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_and_stalls_no_one() {
    let options = BrokerOptions::default().with_max_outbound_bytes(256 * 1024);
    let b = rt::broker_with(BrokerConfig::default().with_sys_interval(None), options);
    let reader = rt::connect(b.addr, config(ProtocolVersion::V5, "reader")).unwrap();
    reader.subscribe(sub("flood", QoS::AtMostOnce)).unwrap();
    // A raw subscriber that never reads what it is sent.
    let mut stuck = raw_connect(
        b.addr,
        Connect::new(ProtocolVersion::V3_1_1, ByteStr::from_static("stuck")),
    );
    raw_subscribe_v311(&mut stuck, "flood");

    // More than the kernel buffers on loopback plus the outbound cap.
    const N: usize = 320;
    static PAYLOAD: [u8; 64 * 1024] = [7u8; 64 * 1024];
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "flooder")).unwrap();
    // In rounds the reading subscriber keeps up with: only the stuck one falls behind.
    for _ in 0..N / 2 {
        let round: Vec<Publish> = (0..2)
            .map(|_| {
                let mut m = Publish::new(
                    TopicName::from_static("flood"),
                    Bytes::from_static(&PAYLOAD),
                );
                m.qos = QoS::AtMostOnce;
                m
            })
            .collect();
        p.publish_many(round);
        // The reading subscriber gets every message: the stuck one stalls no one.
        for _ in 0..2 {
            assert_eq!(next_message(&reader).payload.len(), PAYLOAD.len());
        }
    }
    // The stuck one was closed after far less than everything.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stuck.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the stuck subscriber was not closed: {e}")
            }
            // Closed with a reset: the broker dropped what it had queued.
            Err(_) => break,
        }
    }
    assert!(total < N * PAYLOAD.len(), "received all {total} bytes");
    b.shutdown();
}

#[test]
fn a_subscriber_whose_mail_queue_overflows_is_closed_with_its_will_and_others_keep_going() {
    // Few mail batches per connection: the stuck subscriber's queue overflows by count.
    let options = BrokerOptions::default().with_max_outbound_batches(8);
    let b = rt::broker_with(BrokerConfig::default().with_sys_interval(None), options);
    let watcher = rt::connect(b.addr, config(ProtocolVersion::V5, "watcher")).unwrap();
    watcher.subscribe(sub("wills/#", QoS::AtLeastOnce)).unwrap();
    let reader = rt::connect(b.addr, config(ProtocolVersion::V5, "reader")).unwrap();
    reader.subscribe(sub("flood", QoS::AtMostOnce)).unwrap();
    let mut c = Connect::new(ProtocolVersion::V3_1_1, ByteStr::from_static("stuck"));
    c.will = Some(Will {
        topic: TopicName::from_static("wills/stuck"),
        payload: Bytes::from_static(b"too slow"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let mut stuck = raw_connect(b.addr, c);
    raw_subscribe_v311(&mut stuck, "flood");
    assert_eq!(b.stats().connections, 3);

    // More than loopback's kernel buffers hold, one message per publish (one batch each).
    static PAYLOAD: [u8; 32 * 1024] = [5u8; 32 * 1024];
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "flooder")).unwrap();
    for _ in 0..600 {
        let m = Publish::new(
            TopicName::from_static("flood"),
            Bytes::from_static(&PAYLOAD),
        );
        p.publish_many(vec![m]);
        assert_eq!(next_message(&reader).payload.len(), PAYLOAD.len());
    }
    let will = next_message(&watcher);
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/stuck", &b"too slow"[..]),
        "closed as too slow: its will is published"
    );
    let end = clock() + WAIT;
    while b.stats().connections != 3 {
        assert!(clock() < end, "the stuck subscriber is still counted");
        pause(Duration::from_millis(10));
    }
    // Everyone else is still served.
    p.publish(msg("flood", "after", QoS::AtLeastOnce, false))
        .unwrap();
    assert_eq!(&next_message(&reader).payload[..], b"after");
    b.shutdown();
}

#[test]
fn an_idle_client_keeps_its_connection_alive_with_pings() {
    let b = broker();
    let mut c = config(ProtocolVersion::V5, "idle");
    c.keep_alive = 2;
    let client = rt::connect(b.addr, c).unwrap();
    // Idle for over 1.5 keep-alives (the broker's limit): only the driver's timer (PINGREQ)
    // keeps it open. A 2 s keep-alive leaves a second of slack for a loaded machine.
    let end = clock() + Duration::from_millis(3300);
    while let Some(e) = client.next_event(end.saturating_duration_since(clock())) {
        assert!(
            !matches!(e, Event::Disconnected { .. }),
            "disconnected while idle: {e:?}"
        );
    }
    client
        .subscribe(sub("still/here", QoS::AtLeastOnce))
        .unwrap();
    assert_eq!(b.stats().connections, 1);
    b.shutdown();
}

#[test]
fn a_refused_connection_is_an_error_from_connect() {
    let b = rt::broker(
        BrokerConfig::default()
            .with_allow_anonymous(false)
            .with_sys_interval(None),
    );
    match rt::connect(b.addr, config(ProtocolVersion::V5, "anon")) {
        Err(Error::ConnectFailed(reason)) => assert!(reason.reason_code.is_error(), "{reason:?}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an anonymous client was let in"),
    }
    b.shutdown();
}

#[test]
fn dropping_every_handle_disconnects_cleanly_without_the_will() {
    let b = broker();
    let watcher = rt::connect(b.addr, config(ProtocolVersion::V5, "watcher")).unwrap();
    watcher.subscribe(sub("wills/#", QoS::AtMostOnce)).unwrap();
    let mut c = config(ProtocolVersion::V3_1_1, "dropped");
    c.will = Some(Will {
        topic: TopicName::from_static("wills/dropped"),
        payload: Bytes::from_static(b"unexpected"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let client = rt::connect(b.addr, c).unwrap();
    assert_eq!(b.stats().connections, 2);
    drop(client);
    let end = clock() + WAIT;
    while b.stats().connections != 1 {
        assert!(clock() < end, "the dropped client is still connected");
        pause(Duration::from_millis(10));
    }
    no_message(&watcher, Duration::from_millis(200));
    b.shutdown();
}
