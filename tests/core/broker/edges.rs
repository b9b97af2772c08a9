//! Protocol edges of the broker, each named after the normative statement it checks: the
//! receiver's Maximum Packet Size for deliveries, the CONNACK's Maximum Packet Size when no
//! limit is configured, PUBACK / PUBREC 0x10 No matching subscribers, PUBREL for an unknown
//! packet identifier, and the `reason_strings` setting.

use std::num::{NonZeroU16, NonZeroU32};

use crate::sim::raw::Raw;
use crate::sim::{msg, s, sub};
use tinymqtt::broker::{BrokerConfig, ConnId};
use tinymqtt::codec::{Connect, Packet, PubAck, Subscribe, SubscribeProperties, MAX_PACKET_SIZE};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

use crate::support::pid;

fn subscribe(r: &mut Raw, conn: ConnId, v: ProtocolVersion, f: &'static str, qos: QoS) {
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![sub(f, qos)],
    };
    r.send_packet(conn, v, Packet::Subscribe(s));
    assert!(matches!(r.expect_packet(conn, v), Packet::SubAck(_)));
}

fn publish(r: &mut Raw, conn: ConnId, v: ProtocolVersion, id: u16, payload: &str, qos: QoS) {
    let mut p = msg("t", payload.to_owned(), qos);
    p.packet_id = (qos != QoS::AtMostOnce).then(|| pid(id));
    r.send_packet(conn, v, Packet::Publish(p));
}

/// The acknowledgement the broker sent `conn` for a QoS 1/2 PUBLISH.
fn ack(r: &mut Raw, conn: ConnId, v: ProtocolVersion) -> PubAck {
    match r.expect_packet(conn, v) {
        Packet::PubAck(a) | Packet::PubRec(a) => a,
        p => panic!("expected PUBACK or PUBREC, got {p:?}"),
    }
}

#[test]
fn mqtt_3_1_2_25_v5_an_oversized_delivery_is_discarded_as_if_acknowledged_and_frees_its_slot() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut r = Raw::new(BrokerConfig::default());
        // The subscriber takes packets of 64 bytes at most, one QoS 1/2 message at a time.
        let mut c = Connect::new(V5, s("small"));
        c.properties.maximum_packet_size = NonZeroU32::new(64);
        c.properties.receive_maximum = NonZeroU16::new(1);
        let (subr, _) = r.connect_with(c);
        subscribe(&mut r, subr, V5, "t", qos);
        let pubr = r.connect(V5, "pub");
        publish(&mut r, pubr, V5, 1, &"x".repeat(200), qos);
        publish(&mut r, pubr, V5, 2, "small-1", qos);
        publish(&mut r, pubr, V5, 3, "small-2", qos);
        let mut got = Vec::new();
        for _ in 0..2 {
            match r.expect_packet(subr, V5) {
                Packet::Publish(p) => {
                    got.push(String::from_utf8_lossy(&p.payload).into_owned());
                    let id = p.packet_id.expect("qos 1/2");
                    if qos == QoS::AtLeastOnce {
                        r.send_packet(subr, V5, Packet::PubAck(PubAck::new(id)));
                    } else {
                        r.send_packet(subr, V5, Packet::PubRec(PubAck::new(id)));
                        assert!(matches!(r.expect_packet(subr, V5), Packet::PubRel(_)));
                        r.send_packet(subr, V5, Packet::PubComp(PubAck::new(id)));
                    }
                }
                p => panic!("{qos:?}: expected PUBLISH, got {p:?}"),
            }
        }
        assert_eq!(got, vec!["small-1", "small-2"], "{qos:?}");
        r.expect_silence(subr);
        r.expect_open(subr);
    }
}

#[test]
fn mqtt_3_2_2_23_v5_connack_has_no_maximum_packet_size_without_a_limit() {
    // Absent means no limit ([MQTT-3.2.2-23]'s property is optional): a broker configured
    // without a limit (the largest packet MQTT can carry) announces none.
    let mut r = Raw::new(BrokerConfig::default().with_max_packet_size(MAX_PACKET_SIZE));
    let (_, ack) = r.connect_with(Connect::new(V5, s("a")));
    assert_eq!(ack.properties.maximum_packet_size, None);
    // A configured limit is announced.
    let mut r = Raw::new(BrokerConfig::default().with_max_packet_size(4096));
    let (_, ack) = r.connect_with(Connect::new(V5, s("a")));
    assert_eq!(ack.properties.maximum_packet_size, NonZeroU32::new(4096));
}

#[test]
fn mqtt_3_4_2_1_v5_puback_and_pubrec_say_no_matching_subscribers_when_nothing_matched() {
    let mut r = Raw::new(BrokerConfig::default());
    let pubr = r.connect(V5, "pub");
    publish(&mut r, pubr, V5, 1, "a", QoS::AtLeastOnce);
    assert_eq!(
        ack(&mut r, pubr, V5).reason_code,
        ReasonCode::NoMatchingSubscribers
    );
    publish(&mut r, pubr, V5, 2, "b", QoS::ExactlyOnce);
    let rec = ack(&mut r, pubr, V5);
    assert_eq!(rec.reason_code, ReasonCode::NoMatchingSubscribers);
    // 0x10 is a success: the flow goes on.
    r.send_packet(pubr, V5, Packet::PubRel(PubAck::new(pid(2))));
    match r.expect_packet(pubr, V5) {
        Packet::PubComp(c) => assert_eq!(c.reason_code, ReasonCode::Success),
        p => panic!("expected PUBCOMP, got {p:?}"),
    }
    // With a subscriber: success.
    let subr = r.connect(V5, "sub");
    subscribe(&mut r, subr, V5, "t", QoS::AtLeastOnce);
    publish(&mut r, pubr, V5, 3, "c", QoS::AtLeastOnce);
    assert_eq!(ack(&mut r, pubr, V5).reason_code, ReasonCode::Success);
    // A 3.1.1 publisher has no reason codes.
    let old = r.connect(V311, "old");
    publish(&mut r, old, V311, 1, "d", QoS::AtLeastOnce);
    publish(&mut r, old, V311, 2, "e", QoS::AtLeastOnce);
    assert_eq!(ack(&mut r, old, V311).reason_code, ReasonCode::Success);
}

#[test]
fn no_matching_subscribers_can_be_turned_off() {
    let mut r = Raw::new(BrokerConfig::default().with_no_matching_subscribers(false));
    let pubr = r.connect(V5, "pub");
    publish(&mut r, pubr, V5, 1, "a", QoS::AtLeastOnce);
    assert_eq!(ack(&mut r, pubr, V5).reason_code, ReasonCode::Success);
}

#[test]
fn mqtt_4_3_3_pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92_in_v5_and_pubcomp_in_3_1_1() {
    for v in [V5, V311] {
        let mut r = Raw::new(BrokerConfig::default());
        let mut c = Connect::new(v, s("c"));
        c.clean_start = false;
        if v.is_v5() {
            c.properties.session_expiry_interval = Some(60);
        }
        let (conn, _) = r.connect_with(c.clone());
        r.close(conn);
        // A resumed session: the broker knows nothing of packet id 7.
        let (conn, ack) = r.connect_with(c);
        assert!(ack.session_present);
        r.send_packet(conn, v, Packet::PubRel(PubAck::new(pid(7))));
        match r.expect_packet(conn, v) {
            Packet::PubComp(c) => {
                let want = if v.is_v5() {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                assert_eq!((c.packet_id, c.reason_code), (pid(7), want), "{v:?}");
            }
            p => panic!("{v:?}: expected PUBCOMP, got {p:?}"),
        }
        r.expect_open(conn);
    }
}

#[test]
fn mqtt_3_1_2_29_v5_reason_strings_off_sends_none_at_all() {
    let mut r = Raw::new(
        BrokerConfig::default()
            .with_reason_strings(false)
            .with_max_topic_levels(2),
    );
    let conn = r.connect(V5, "a");
    // A topic above the limits: PUBACK 0x90, with no reason string.
    let mut p = msg("a/b/c/d", "x", QoS::AtLeastOnce);
    p.packet_id = Some(pid(1));
    r.send_packet(conn, V5, Packet::Publish(p));
    let a = ack(&mut r, conn, V5);
    assert_eq!(a.reason_code, ReasonCode::TopicNameInvalid);
    assert_eq!(a.properties.reason_string, None);
    // A protocol error: DISCONNECT, with no reason string either.
    r.send_packet(
        conn,
        V5,
        Packet::Connect(Box::new(Connect::new(V5, s("a")))),
    );
    match r.expect_packet(conn, V5) {
        Packet::Disconnect(d) => {
            assert_eq!(d.reason_code, ReasonCode::ProtocolError);
            assert_eq!(d.properties.reason_string, None);
        }
        p => panic!("expected DISCONNECT, got {p:?}"),
    }
    // On by default.
    let mut r = Raw::new(BrokerConfig::default().with_max_topic_levels(2));
    let conn = r.connect(V5, "a");
    let mut p = msg("a/b/c/d", "x", QoS::AtLeastOnce);
    p.packet_id = Some(pid(1));
    r.send_packet(conn, V5, Packet::Publish(p));
    assert!(ack(&mut r, conn, V5).properties.reason_string.is_some());
}

#[test]
fn mqtt_3_1_2_25_v5_a_resend_above_a_new_maximum_packet_size_is_discarded_and_frees_its_slot() {
    // The message went out while the client took large packets; it reconnects taking only
    // small ones: the resend is discarded as if acknowledged, and later messages flow.
    let mut r = Raw::new(BrokerConfig::default());
    let mut c = Connect::new(V5, s("shrinks"));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    c.properties.receive_maximum = NonZeroU16::new(1);
    let (subr, _) = r.connect_with(c.clone());
    subscribe(&mut r, subr, V5, "t", QoS::AtLeastOnce);
    let pubr = r.connect(V5, "pub");
    publish(&mut r, pubr, V5, 1, &"x".repeat(200), QoS::AtLeastOnce);
    assert!(matches!(r.expect_packet(subr, V5), Packet::Publish(_)));
    r.close(subr);
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    let (subr, ack) = r.connect_with(c);
    assert!(ack.session_present);
    publish(&mut r, pubr, V5, 2, "small", QoS::AtLeastOnce);
    match r.expect_packet(subr, V5) {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"small"),
        p => panic!("expected PUBLISH, got {p:?}"),
    }
}

#[test]
fn mqtt_4_3_3_with_a_store_pubrel_for_an_unknown_packet_id_gets_its_pubcomp_once_durable() {
    use tinymqtt::broker::Broker;
    use tinymqtt::store::{StoreOp, StoreSnapshot};
    for v in [V5, V311] {
        let mut r = Raw::with_broker(Broker::new(BrokerConfig::default()));
        let now = r.now();
        r.broker
            .restore(now, 1_800_000_000, StoreSnapshot::default());
        let mut c = Connect::new(v, s("c"));
        c.clean_start = false;
        if v.is_v5() {
            c.properties.session_expiry_interval = Some(60);
        }
        let (conn, _) = r.connect_with(c);
        r.send_packet(conn, v, Packet::PubRel(PubAck::new(pid(9))));
        // Held in line behind what the store must write first, then sent: never silence.
        let tickets: Vec<_> = std::iter::from_fn(|| r.broker.poll_store())
            .filter_map(|op| match op {
                StoreOp::Durable(t) => Some(t),
                _ => None,
            })
            .collect();
        for t in tickets {
            r.broker.handle_durable(now, t);
        }
        match r.expect_packet(conn, v) {
            Packet::PubComp(c) => assert_eq!(c.packet_id, pid(9), "{v:?}"),
            p => panic!("{v:?}: expected PUBCOMP, got {p:?}"),
        }
    }
}
