//! Inbound QoS 2 identifiers waiting for a PUBREL that never comes: forgotten after
//! `await_rel_timeout`, so a client cannot pin its receive-maximum slots for ever.

use std::time::Duration;

use tinymqtt::codec::{Connect, Packet, PubAck};
use tinymqtt::error::ProtocolViolation;
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode};

use crate::broker::packets::{ack_of, pid, publish, publishes, raw_with, subscriber, V311, V5};
use crate::sim::raw::Raw;

/// A broker whose clients may hold 2 QoS 2 identifiers, each for 10 s at most.
fn broker() -> Raw {
    raw_with(|c| {
        c.receive_maximum = 2;
        c.await_rel_timeout = Duration::from_secs(10);
    })
}

/// Sends a QoS 2 PUBLISH with `id` and expects a successful PUBREC.
fn publish_qos2(r: &mut Raw, c: tinymqtt::broker::ConnId, v: ProtocolVersion, id: u16) {
    r.send_packet(c, v, publish("a", "x", QoS::ExactlyOnce, id));
    let (kind, ack) = ack_of(r.expect_packet(c, v));
    assert_eq!((kind, ack.packet_id), ("PUBREC", pid(id)));
    assert!(!ack.reason_code.is_error(), "{:?}", ack.reason_code);
}

#[test]
fn mqtt_4_3_3_unreleased_qos2_ids_are_forgotten_after_await_rel_timeout() {
    for v in [V5, V311] {
        let mut r = broker();
        let s = subscriber(&mut r, V5, "s", "a");
        let c = r.connect(v, "p");
        publish_qos2(&mut r, c, v, 1);
        publish_qos2(&mut r, c, v, 2);
        // Routed at PUBLISH: the subscriber has both already.
        assert_eq!(publishes(&mut r, s, V5).len(), 2);
        r.advance(Duration::from_secs(9));
        assert_eq!(r.broker.stats().await_rel_expired, 0);
        r.advance(Duration::from_secs(2));
        assert_eq!(r.broker.stats().await_rel_expired, 2);
        // Their slots are free again: two new identifiers are taken.
        r.send(c, &[0xC0, 0]); // a PINGREQ keeps the connection alive
        assert_eq!(r.expect_packet(c, v), Packet::PingResp);
        publish_qos2(&mut r, c, v, 3);
        publish_qos2(&mut r, c, v, 4);
        assert_eq!(publishes(&mut r, s, V5).len(), 2);
        // A late PUBREL of a forgotten one completes as if it had come in time.
        r.send_packet(c, v, Packet::PubRel(PubAck::new(pid(1))));
        let (kind, ack) = ack_of(r.expect_packet(c, v));
        assert_eq!(
            (kind, ack.packet_id, ack.reason_code),
            ("PUBCOMP", pid(1), ReasonCode::Success)
        );
        // A late resend of the other is answered and not routed twice.
        let mut again = publish("a", "x", QoS::ExactlyOnce, 2);
        again.dup = true;
        r.send_packet(c, v, again);
        let (kind, ack) = ack_of(r.expect_packet(c, v));
        assert_eq!((kind, ack.packet_id), ("PUBREC", pid(2)));
        assert!(publishes(&mut r, s, V5).is_empty(), "routed twice");
        r.expect_open(c);
    }
}

#[test]
fn mqtt_3_3_4_9_ids_held_within_await_rel_timeout_still_count_against_receive_maximum() {
    let mut r = broker();
    let c = r.connect(V5, "p");
    publish_qos2(&mut r, c, V5, 1);
    publish_qos2(&mut r, c, V5, 2);
    r.advance(Duration::from_secs(9));
    r.send_packet(c, V5, publish("a", "x", QoS::ExactlyOnce, 3));
    r.expect_disconnect(c, ReasonCode::ReceiveMaximumExceeded);
    r.expect_violation(c, ProtocolViolation::ReceiveMaximumExceeded);
    assert_eq!(r.broker.stats().await_rel_expired, 0);
}

#[test]
fn ids_of_an_earlier_connection_wait_afresh_from_the_reconnect() {
    let mut r = broker();
    let resume = || {
        let mut c = Connect::new(V5, ByteStr::from_static("p"));
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
        c
    };
    let (c, _) = r.connect_with(resume());
    publish_qos2(&mut r, c, V5, 1);
    r.advance(Duration::from_secs(8));
    r.close(c);
    r.advance(Duration::from_secs(8));
    // 16 s after its PUBLISH, but offline: the identifier is still the session's.
    let (c, ack) = r.connect_with(resume());
    assert!(ack.session_present);
    assert_eq!(r.broker.stats().await_rel_expired, 0);
    r.advance(Duration::from_secs(9));
    assert_eq!(r.broker.stats().await_rel_expired, 0);
    r.send_packet(c, V5, Packet::PubRel(PubAck::new(pid(1))));
    let (kind, ack) = ack_of(r.expect_packet(c, V5));
    assert_eq!((kind, ack.reason_code), ("PUBCOMP", ReasonCode::Success));
    // Released in time: nothing expires later.
    r.advance(Duration::from_secs(20));
    assert_eq!(r.broker.stats().await_rel_expired, 0);
    // Held again past the timeout on this connection: forgotten 10 s later.
    publish_qos2(&mut r, c, V5, 5);
    r.advance(Duration::from_secs(11));
    assert_eq!(r.broker.stats().await_rel_expired, 1);
}

#[test]
fn a_client_that_releases_at_once_never_has_an_id_expire() {
    let mut r = broker();
    let c = r.connect(V5, "p");
    for n in 1..=50u16 {
        publish_qos2(&mut r, c, V5, n);
        r.send_packet(c, V5, Packet::PubRel(PubAck::new(pid(n))));
        let (kind, _) = ack_of(r.expect_packet(c, V5));
        assert_eq!(kind, "PUBCOMP");
        r.advance(Duration::from_secs(1));
    }
    r.advance(Duration::from_secs(30));
    assert_eq!(r.broker.stats().await_rel_expired, 0);
    r.expect_open(c);
}
