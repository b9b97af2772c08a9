//! SUBACK, UNSUBACK, PUBACK, PUBREC and PUBCOMP: every reason code, and exact bytes where
//! 3.1.1 fixes them.

use std::sync::Arc;

use tinymqtt::broker::{AllowAll, Authorizer, Broker, BrokerConfig};
use tinymqtt::codec::{Packet, PubAck, UnsubAck, Unsubscribe, UnsubscribeProperties};
use tinymqtt::{ByteStr, QoS, ReasonCode, TopicFilter, TopicName};

use crate::broker::packets::{
    ack_of, pid, publish, publishes, raw, raw_with, suback, subscribe, subscriber, V311, V5,
};
use crate::sim::raw::{hex, Raw};
use crate::sim::{filter, sub};

// ---- SUBSCRIBE and UNSUBSCRIBE --------------------------------------------------------------

#[test]
fn mqtt_3_9_3_v311_suback_grants_each_requested_qos_exact_bytes() {
    let mut r = raw();
    let c = r.connect(V311, "s");
    r.send(
        c,
        &hex("82 0E 00 0A 00 01 'a' 00 00 01 'b' 01 00 01 'c' 02"),
    );
    r.expect_bytes(c, &hex("90 05 00 0A 00 01 02"));
}

#[test]
fn mqtt_3_2_2_10_subscribe_above_maximum_qos_is_granted_the_maximum() {
    for v in [V311, V5] {
        let mut r = raw_with(|c| c.maximum_qos = QoS::AtLeastOnce);
        let c = r.connect(v, "s");
        r.send_packet(c, v, subscribe(3, vec![sub("x", QoS::ExactlyOnce)]));
        let a = suback(&mut r, c, v);
        assert_eq!(a.reason_codes, vec![ReasonCode::GrantedQoS1], "{v:?}");
    }
}

#[test]
fn subscriptions_beyond_the_limit_get_0x97_in_v5_and_0x80_in_v311() {
    for (v, code) in [
        (V5, ReasonCode::QuotaExceeded),
        (V311, ReasonCode::UnspecifiedError),
    ] {
        let mut r = raw_with(|c| c.max_subscriptions_per_client = 2);
        let c = r.connect(v, "greedy");
        r.send_packet(
            c,
            v,
            subscribe(
                1,
                vec![
                    sub("a", QoS::AtMostOnce),
                    sub("b", QoS::AtLeastOnce),
                    sub("c", QoS::AtLeastOnce),
                ],
            ),
        );
        let a = suback(&mut r, c, v);
        assert_eq!(
            a.reason_codes,
            vec![ReasonCode::Success, ReasonCode::GrantedQoS1, code],
            "{v:?}"
        );
        // Re-subscribing an existing filter is a replacement, not a new subscription.
        r.send_packet(c, v, subscribe(2, vec![sub("a", QoS::ExactlyOnce)]));
        let a = suback(&mut r, c, v);
        assert_eq!(a.reason_codes, vec![ReasonCode::GrantedQoS2], "{v:?}");
    }
}

#[test]
fn not_authorized_subscribe_gets_0x87_in_v5_and_0x80_in_v311() {
    struct Deny;
    impl Authorizer for Deny {
        fn can_publish(&self, _: &ByteStr, _: Option<&ByteStr>, t: &TopicName) -> bool {
            !t.as_str().starts_with("deny/")
        }
        fn can_subscribe(&self, _: &ByteStr, _: Option<&ByteStr>, f: &TopicFilter) -> bool {
            !f.as_str().starts_with("deny/")
        }
    }
    let broker = || Broker::with_auth(BrokerConfig::default(), Arc::new(AllowAll), Arc::new(Deny));
    for (v, code) in [
        (V5, ReasonCode::NotAuthorized),
        (V311, ReasonCode::UnspecifiedError),
    ] {
        let mut r = Raw::with_broker(broker());
        let c = r.connect(v, "s");
        r.send_packet(
            c,
            v,
            subscribe(
                1,
                vec![sub("deny/#", QoS::AtMostOnce), sub("ok", QoS::AtLeastOnce)],
            ),
        );
        let a = suback(&mut r, c, v);
        assert_eq!(a.reason_codes, vec![code, ReasonCode::GrantedQoS1], "{v:?}");
    }
    // PUBLISH: v5 answers 0x87 in PUBACK / PUBREC; 3.1.1 acknowledges and drops.
    let mut r = Raw::with_broker(broker());
    let spy = subscriber(&mut r, V311, "spy", "#");
    let c = r.connect(V5, "p");
    r.send_packet(c, V5, publish("deny/a", "x", QoS::AtLeastOnce, 1));
    let (kind, a) = ack_of(r.expect_packet(c, V5));
    assert_eq!((kind, a.reason_code), ("PUBACK", ReasonCode::NotAuthorized));
    r.send_packet(c, V5, publish("deny/a", "x", QoS::ExactlyOnce, 2));
    let (kind, a) = ack_of(r.expect_packet(c, V5));
    assert_eq!((kind, a.reason_code), ("PUBREC", ReasonCode::NotAuthorized));
    let c3 = r.connect(V311, "p3");
    r.send_packet(c3, V311, publish("deny/a", "x", QoS::AtLeastOnce, 1));
    r.expect_bytes(c3, &hex("40 02 00 01"));
    assert!(
        publishes(&mut r, spy, V311).is_empty(),
        "a refused message reaches nobody"
    );
}

#[test]
fn mqtt_3_8_3_4_v5_no_local_on_a_shared_subscription_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "s");
    // Options 0x05: QoS 1, no local.
    r.send(c, &hex("82 10 00 01 00 00 0A '$share/g/a' 05"));
    r.expect_disconnect(c, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_3_8_3_v5_subscribe_with_retain_handling_3_or_no_filter_is_a_protocol_error() {
    for bad in ["82 07 00 01 00 00 01 'a' 30", "82 03 00 01 00"] {
        let mut r = raw();
        let c = r.connect(V5, "s");
        r.send(c, &hex(bad));
        r.expect_disconnect(c, ReasonCode::ProtocolError);
    }
}

#[test]
fn mqtt_3_8_2_v5_subscription_identifier_0_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "s");
    r.send(c, &hex("82 08 00 01 02 0B 00 00 01 'a' 00"));
    r.expect_disconnect(c, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_3_8_3_v311_subscribe_with_reserved_bits_or_no_filter_closes() {
    for bad in ["82 06 00 01 00 01 'a' 04", "82 02 00 01"] {
        let mut r = raw();
        let c = r.connect(V311, "s");
        r.send(c, &hex(bad));
        r.expect_closed(c);
        r.expect_silence(c);
    }
}

#[test]
fn mqtt_4_7_v5_invalid_topic_filter_gets_0x8f() {
    for bad in [
        "82 0B 00 01 00 00 05 'a/#/b' 00",
        "82 09 00 01 00 00 03 'a+b' 00",
    ] {
        let mut r = raw();
        let c = r.connect(V5, "s");
        r.send(c, &hex(bad));
        r.expect_disconnect(c, ReasonCode::TopicFilterInvalid);
    }
    let mut r = raw();
    let c = r.connect(V311, "s");
    r.send(c, &hex("82 0A 00 01 00 05 'a/#/b' 00"));
    r.expect_closed(c);
    r.expect_silence(c);
}

#[test]
fn mqtt_3_10_4_4_unsuback_answers_every_unsubscribe() {
    let mut r = raw();
    let c = r.connect(V311, "u");
    r.send(c, &hex("A2 05 00 07 00 01 'x'"));
    r.expect_bytes(c, &hex("B0 02 00 07"));
    let c = r.connect(V5, "u5");
    r.send_packet(c, V5, subscribe(1, vec![sub("x", QoS::AtMostOnce)]));
    suback(&mut r, c, V5);
    r.send_packet(
        c,
        V5,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            properties: UnsubscribeProperties::default(),
            filters: vec![filter("x"), filter("y")],
        }),
    );
    match r.expect_packet(c, V5) {
        Packet::UnsubAck(UnsubAck {
            packet_id,
            reason_codes,
            ..
        }) => {
            assert_eq!(packet_id, pid(2));
            assert_eq!(
                reason_codes,
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            );
        }
        p => panic!("expected UNSUBACK, got {p:?}"),
    }
}

// ---- PUBLISH acknowledgements ---------------------------------------------------------------

#[test]
fn mqtt_4_3_2_v311_qos1_publish_gets_puback_exact_bytes() {
    let mut r = raw();
    let c = r.connect(V311, "p");
    r.send(c, &hex("32 06 00 01 'a' 00 09 'x'"));
    r.expect_bytes(c, &hex("40 02 00 09"));
}

#[test]
fn mqtt_4_3_3_v311_qos2_handshake_exact_bytes() {
    let mut r = raw();
    let c = r.connect(V311, "p");
    r.send(c, &hex("34 06 00 01 'a' 00 09 'x'"));
    r.expect_bytes(c, &hex("50 02 00 09"));
    r.send(c, &hex("62 02 00 09"));
    r.expect_bytes(c, &hex("70 02 00 09"));
}

#[test]
fn v5_puback_without_subscribers_is_success_or_no_matching_subscribers() {
    let mut r = raw();
    let c = r.connect(V5, "p");
    r.send_packet(c, V5, publish("nobody", "x", QoS::AtLeastOnce, 1));
    let (kind, a) = ack_of(r.expect_packet(c, V5));
    assert_eq!((kind, a.packet_id), ("PUBACK", pid(1)));
    // 0x10 is a MAY (Mosquitto sends it); 0x00 is as right.
    assert!(
        matches!(
            a.reason_code,
            ReasonCode::Success | ReasonCode::NoMatchingSubscribers
        ),
        "{:?}",
        a.reason_code
    );
    let s = subscriber(&mut r, V5, "s", "somebody");
    r.send_packet(c, V5, publish("somebody", "x", QoS::AtLeastOnce, 2));
    let (_, a) = ack_of(r.expect_packet(c, V5));
    assert_eq!(a.reason_code, ReasonCode::Success);
    assert_eq!(publishes(&mut r, s, V5).len(), 1);
}

#[test]
fn mqtt_4_3_3_v5_pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92() {
    let mut r = raw();
    let c = r.connect(V5, "p");
    r.send_packet(c, V5, Packet::PubRel(PubAck::new(pid(42))));
    let (kind, a) = ack_of(r.expect_packet(c, V5));
    assert_eq!(
        (kind, a.packet_id, a.reason_code),
        ("PUBCOMP", pid(42), ReasonCode::PacketIdentifierNotFound)
    );
    r.expect_open(c);
    let c = r.connect(V311, "p3");
    r.send(c, &hex("62 02 00 2A"));
    r.expect_bytes(c, &hex("70 02 00 2A"));
}

#[test]
fn mqtt_4_3_3_v5_pubrec_for_an_unknown_packet_id_gets_pubrel_0x92() {
    let mut r = raw();
    let c = r.connect(V5, "p");
    r.send_packet(c, V5, Packet::PubRec(PubAck::new(pid(7))));
    let (kind, a) = ack_of(r.expect_packet(c, V5));
    assert_eq!(
        (kind, a.packet_id, a.reason_code),
        ("PUBREL", pid(7), ReasonCode::PacketIdentifierNotFound)
    );
    r.expect_open(c);
    let c = r.connect(V311, "p3");
    r.send(c, &hex("50 02 00 07"));
    r.expect_bytes(c, &hex("62 02 00 07"));
    r.expect_open(c);
}

#[test]
fn mqtt_4_3_3_2_qos2_publish_repeated_before_pubrel_is_delivered_once() {
    for v in [V311, V5] {
        let mut r = raw();
        let s = subscriber(&mut r, v, "s", "dup");
        let c = r.connect(v, "p");
        let p = publish("dup", "once", QoS::ExactlyOnce, 7);
        r.send_packet(c, v, p.clone());
        let mut again = p;
        again.dup = true;
        r.send_packet(c, v, again);
        for _ in 0..2 {
            let (kind, a) = ack_of(r.expect_packet(c, v));
            assert_eq!((kind, a.packet_id), ("PUBREC", pid(7)), "{v:?}");
        }
        r.send_packet(c, v, Packet::PubRel(PubAck::new(pid(7))));
        let (kind, _) = ack_of(r.expect_packet(c, v));
        assert_eq!(kind, "PUBCOMP");
        let got = publishes(&mut r, s, v);
        assert_eq!(
            got.len(),
            1,
            "{v:?}: [MQTT-4.3.3-2] delivered once, got {got:?}"
        );
        // A new PUBLISH with the released id is a new message.
        r.send_packet(c, v, publish("dup", "twice", QoS::ExactlyOnce, 7));
        let (kind, _) = ack_of(r.expect_packet(c, v));
        assert_eq!(kind, "PUBREC");
        r.send_packet(c, v, Packet::PubRel(PubAck::new(pid(7))));
        let (kind, _) = ack_of(r.expect_packet(c, v));
        assert_eq!(kind, "PUBCOMP");
        let got = publishes(&mut r, s, v);
        assert_eq!(got.len(), 1, "{v:?}: the new message is delivered: {got:?}");
    }
}
