//! Malformed packets and protocol errors after CONNECT: the exact DISCONNECT reason code in
//! MQTT 5, a plain close in 3.1.1.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use tinymqtt::codec::{
    Auth, ConnAck, Connect, Disconnect, DisconnectProperties, Packet, PubAck, Publish,
};
use tinymqtt::error::ProtocolViolation;
use tinymqtt::{QoS, ReasonCode, TopicName};

use crate::broker::packets::{
    ack_of, pid, publish, publishes, raw, raw_with, suback, subscribe, subscriber, V311, V5,
};
use crate::sim::raw::hex;
use crate::sim::{s, sub, topic};

#[test]
fn mqtt_4_13_malformed_packet_gets_disconnect_0x81_in_v5_and_a_close_in_v311() {
    for bad in [
        "36 07 00 01 'a' 00 01 00 'x'", // PUBLISH QoS 3 [MQTT-3.3.1-4]
        "00 00",                        // reserved packet type 0
        "38 05 00 01 'a' 00 'x'",       // DUP on QoS 0 [MQTT-3.3.1-2]
        "60 02 00 01",                  // PUBREL with flags 0000 [MQTT-2.2.2-2]
        "C0 80 80 80 80 01",            // remaining length of five bytes
    ] {
        let mut r = raw();
        let c = r.connect(V5, "m");
        r.send(c, &hex(bad));
        r.expect_disconnect(c, ReasonCode::MalformedPacket);
        r.expect_silence(c);
    }
    for bad in ["36 06 00 01 'a' 00 01 'x'", "00 00", "60 02 00 01"] {
        let mut r = raw();
        let c = r.connect(V311, "m");
        r.send(c, &hex(bad));
        r.expect_closed(c);
        r.expect_silence(c);
    }
}

#[test]
fn mqtt_3_3_2_2_v5_publish_topic_with_wildcard_gets_0x90() {
    let mut r = raw();
    let c = r.connect(V5, "w");
    r.send(c, &hex("30 07 00 03 'a/+' 00 'x'"));
    r.expect_disconnect(c, ReasonCode::TopicNameInvalid);
}

#[test]
fn mqtt_2_2_1_3_v5_publish_with_packet_id_0_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "z");
    r.send(c, &hex("32 07 00 01 'a' 00 00 00 'x'"));
    r.expect_disconnect(c, ReasonCode::ProtocolError);
}

#[test]
fn packet_too_large_gets_disconnect_0x95_in_v5_and_a_close_in_v311() {
    let big = Publish::new(topic("big"), Bytes::from(vec![b'x'; 100]));
    let mut r = raw_with(|c| c.max_packet_size = 64);
    let c = r.connect(V5, "big5");
    r.send_packet(c, V5, big.clone());
    r.expect_disconnect(c, ReasonCode::PacketTooLarge);
    let c = r.connect(V311, "big3");
    r.send_packet(c, V311, big);
    r.expect_closed(c);
    r.expect_silence(c);
}

#[test]
fn mqtt_3_1_2_25_v5_no_packet_above_the_clients_maximum_packet_size_is_sent() {
    let mut r = raw();
    let mut connect = Connect::new(V5, s("small"));
    connect.properties.maximum_packet_size = NonZeroU32::new(40);
    let (small, _) = r.connect_with(connect);
    r.send_packet(small, V5, subscribe(1, vec![sub("s/#", QoS::AtMostOnce)]));
    suback(&mut r, small, V5);
    let p = r.connect(V5, "pub");
    r.send_packet(
        p,
        V5,
        Publish::new(topic("s/big"), Bytes::from(vec![b'x'; 100])),
    );
    r.send_packet(p, V5, Publish::new(topic("s/small"), "ok"));
    let got = publishes(&mut r, small, V5);
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["s/small"],
        "v5 [MQTT-3.1.2-25]: the oversized message is not sent"
    );
    r.expect_open(small);
}

#[test]
fn mqtt_3_3_2_v5_topic_alias_above_the_maximum_or_zero_gets_0x94() {
    let mut r = raw_with(|c| c.topic_alias_maximum = 2);
    let c = r.connect(V5, "alias");
    let mut p = Publish::new(topic("t"), "x");
    p.properties.topic_alias = NonZeroU16::new(3);
    r.send_packet(c, V5, p);
    r.expect_disconnect(c, ReasonCode::TopicAliasInvalid);
    r.expect_violation(c, ProtocolViolation::TopicAliasAboveMaximum);

    let c = r.connect(V5, "alias0");
    r.send(c, &hex("30 08 00 01 'a' 03 23 00 00 'x'"));
    r.expect_disconnect(c, ReasonCode::TopicAliasInvalid);
}

#[test]
fn mqtt_3_3_2_v5_any_topic_alias_is_invalid_when_the_maximum_is_0() {
    let mut r = raw_with(|c| c.topic_alias_maximum = 0);
    let (c, ack) = r.connect_with(Connect::new(V5, s("noalias")));
    assert!(
        matches!(ack.properties.topic_alias_maximum, None | Some(0)),
        "{:?}",
        ack.properties
    );
    let mut p = Publish::new(topic("t"), "x");
    p.properties.topic_alias = NonZeroU16::new(1);
    r.send_packet(c, V5, p);
    r.expect_disconnect(c, ReasonCode::TopicAliasInvalid);
}

#[test]
fn mqtt_3_3_2_v5_unknown_topic_alias_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "alias");
    let mut p = Publish::new(TopicName::empty(), "x");
    p.properties.topic_alias = NonZeroU16::new(1);
    r.send_packet(c, V5, p);
    r.expect_disconnect(c, ReasonCode::ProtocolError);
    r.expect_violation(c, ProtocolViolation::UnknownTopicAlias);
}

#[test]
fn mqtt_3_3_2_v5_topic_alias_names_the_topic_of_later_publishes() {
    let mut r = raw();
    let s_conn = subscriber(&mut r, V311, "sub", "al/#");
    let c = r.connect(V5, "alias");
    let mut first = Publish::new(topic("al/long/topic"), "1");
    first.properties.topic_alias = NonZeroU16::new(1);
    r.send_packet(c, V5, first);
    let mut second = Publish::new(TopicName::empty(), "2");
    second.properties.topic_alias = NonZeroU16::new(1);
    r.send_packet(c, V5, second);
    let mut remap = Publish::new(topic("al/other"), "3");
    remap.properties.topic_alias = NonZeroU16::new(1);
    r.send_packet(c, V5, remap);
    let mut third = Publish::new(TopicName::empty(), "4");
    third.properties.topic_alias = NonZeroU16::new(1);
    r.send_packet(c, V5, third);
    let got: Vec<(String, Bytes)> = publishes(&mut r, s_conn, V311)
        .into_iter()
        .map(|p| (p.topic.to_string(), p.payload))
        .collect();
    assert_eq!(
        got,
        vec![
            ("al/long/topic".into(), Bytes::from("1")),
            ("al/long/topic".into(), Bytes::from("2")),
            ("al/other".into(), Bytes::from("3")),
            ("al/other".into(), Bytes::from("4")),
        ]
    );
    r.expect_open(c);
}

#[test]
fn mqtt_3_3_4_6_v5_publish_from_a_client_with_a_subscription_identifier_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "p");
    // PUBLISH "a", properties: subscription identifier (0x0B) 1.
    r.send(c, &hex("30 07 00 01 'a' 02 0B 01 'x'"));
    r.expect_disconnect(c, ReasonCode::ProtocolError);
    r.expect_violation(c, ProtocolViolation::SubscriptionIdentifierFromClient);
}

#[test]
fn mqtt_3_3_4_7_v5_receive_maximum_exceeded_gets_0x93() {
    let mut r = raw_with(|c| c.receive_maximum = 2);
    let c = r.connect(V5, "eager");
    for id in 1..=3 {
        r.send_packet(c, V5, publish("rm", "x", QoS::ExactlyOnce, id));
    }
    for id in 1..=2 {
        let (kind, a) = ack_of(r.expect_packet(c, V5));
        assert_eq!((kind, a.packet_id.get()), ("PUBREC", id));
    }
    r.expect_disconnect(c, ReasonCode::ReceiveMaximumExceeded);
    r.expect_violation(c, ProtocolViolation::ReceiveMaximumExceeded);
}

#[test]
fn receive_maximum_counts_only_unfinished_flows() {
    let mut r = raw_with(|c| c.receive_maximum = 1);
    let c = r.connect(V5, "paced");
    for id in 1..=5 {
        r.send_packet(c, V5, publish("rm", "x", QoS::ExactlyOnce, id));
        let (kind, _) = ack_of(r.expect_packet(c, V5));
        assert_eq!(kind, "PUBREC");
        r.send_packet(c, V5, Packet::PubRel(PubAck::new(pid(id))));
        let (kind, a) = ack_of(r.expect_packet(c, V5));
        assert_eq!((kind, a.reason_code), ("PUBCOMP", ReasonCode::Success));
    }
    r.expect_open(c);
}

#[test]
fn mqtt_3_2_2_11_v5_publish_above_maximum_qos_gets_0x9b() {
    let mut r = raw_with(|c| c.maximum_qos = QoS::AtLeastOnce);
    let c = r.connect(V5, "q2");
    r.send_packet(c, V5, publish("q", "x", QoS::ExactlyOnce, 1));
    r.expect_disconnect(c, ReasonCode::QoSNotSupported);
    r.expect_violation(c, ProtocolViolation::QoSAboveMaximum);
}

#[test]
fn mqtt_3_2_2_14_v5_retain_when_unavailable_gets_0x9a() {
    let mut r = raw_with(|c| c.retain_available = false);
    let c = r.connect(V5, "ret");
    let mut p = publish("r", "x", QoS::AtMostOnce, 0);
    p.retain = true;
    r.send_packet(c, V5, p);
    r.expect_disconnect(c, ReasonCode::RetainNotSupported);
    r.expect_violation(c, ProtocolViolation::RetainNotAvailable);
}

#[test]
fn mqtt_4_13_v5_server_only_packet_from_a_client_is_a_protocol_error() {
    for bad in [Packet::from(ConnAck::accepted(false)), Packet::PingResp] {
        let mut r = raw();
        let c = r.connect(V5, "confused");
        r.send_packet(c, V5, bad);
        r.expect_disconnect(c, ReasonCode::ProtocolError);
        r.expect_violation(c, ProtocolViolation::ServerOnlyPacket);
    }
}

#[test]
fn mqtt_3_14_2_v5_disconnect_setting_session_expiry_after_zero_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "sneaky");
    let d = Disconnect {
        properties: DisconnectProperties {
            session_expiry_interval: Some(60),
            ..DisconnectProperties::default()
        },
        ..Disconnect::default()
    };
    r.send_packet(c, V5, Packet::Disconnect(d));
    r.expect_disconnect(c, ReasonCode::ProtocolError);
    r.expect_violation(c, ProtocolViolation::SessionExpiryAfterZero);
}

#[test]
fn mqtt_4_12_v5_auth_without_an_authentication_method_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "auth");
    r.send_packet(
        c,
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: Default::default(),
        }),
    );
    r.expect_disconnect(c, ReasonCode::ProtocolError);
    r.expect_violation(c, ProtocolViolation::AuthWithoutMethod);
}
