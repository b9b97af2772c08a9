//! Raw-packet tests of the broker: bytes written by hand (or encoded with the codec for the
//! setup packets) go straight into `Broker::handle_input`, and every CONNACK, SUBACK, PUBACK,
//! PUBREC, PUBCOMP and DISCONNECT reason code the broker can send is checked exactly, with
//! whether it closes the transport. Tests are named after the normative statement they check
//! (3.1.1 numbering unless it says v5). This file covers CONNECT, keep-alive and shutdown;
//! `packets/errors.rs` the errors after CONNECT, `packets/acks.rs` the
//! acknowledgements, `packets/auth.rs` enhanced authentication and
//! `packets/limits.rs` the configured limits, redirection, response information,
//! reason strings and outbound topic aliases.

mod access;
mod acks;
mod auth;
mod await_rel;
mod budget;
mod errors;
mod flow;
mod limits;
mod stats;

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::Duration;

use crate::sim::raw::{hex, Raw};
use crate::sim::{msg, s, secs, sub, topic};
use bytes::Bytes;
use tinymqtt::broker::{AllowAll, Authorizer, Broker, BrokerConfig, ConnId};
use tinymqtt::codec::{
    Connect, Packet, PubAck, Publish, SubAck, Subscribe, SubscribeProperties, Subscription, Will,
    WillProperties,
};
use tinymqtt::error::ProtocolViolation;
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

use crate::support::pid;

fn raw() -> Raw {
    Raw::new(BrokerConfig::default())
}

fn raw_with(f: impl FnOnce(&mut BrokerConfig)) -> Raw {
    let mut bc = BrokerConfig::default();
    f(&mut bc);
    Raw::new(bc)
}

/// A CONNECT that the broker refuses: the CONNACK's reason code, with the transport closed.
fn refused(r: &mut Raw, connect: Connect) -> ReasonCode {
    let v = connect.protocol;
    let conn = r.accept();
    r.send_packet(conn, v, connect);
    let ack = r.expect_connack(conn, v);
    r.expect_closed(conn);
    r.expect_silence(conn);
    ack.reason_code
}

fn publish(t: &'static str, payload: &'static str, qos: QoS, id: u16) -> Publish {
    let mut p = msg(t, payload, qos);
    if qos != QoS::AtMostOnce {
        p.packet_id = Some(pid(id));
    }
    p
}

fn subscribe(id: u16, subs: Vec<Subscription>) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: SubscribeProperties::default(),
        filters: subs,
    })
}

fn suback(r: &mut Raw, conn: ConnId, v: ProtocolVersion) -> SubAck {
    match r.expect_packet(conn, v) {
        Packet::SubAck(a) => a,
        p => panic!("expected SUBACK, got {p:?}"),
    }
}

fn ack_of(p: Packet) -> (&'static str, PubAck) {
    match p {
        Packet::PubAck(a) => ("PUBACK", a),
        Packet::PubRec(a) => ("PUBREC", a),
        Packet::PubRel(a) => ("PUBREL", a),
        Packet::PubComp(a) => ("PUBCOMP", a),
        p => panic!("expected an acknowledgement, got {p:?}"),
    }
}

/// A connected client that subscribed to `f` at QoS 2.
fn subscriber(r: &mut Raw, v: ProtocolVersion, id: &'static str, f: &'static str) -> ConnId {
    let conn = r.connect(v, id);
    r.send_packet(conn, v, subscribe(1, vec![sub(f, QoS::ExactlyOnce)]));
    suback(r, conn, v);
    conn
}

fn publishes(r: &mut Raw, conn: ConnId, v: ProtocolVersion) -> Vec<Publish> {
    r.packets(conn, v)
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            p => panic!("expected only PUBLISH, got {p:?}"),
        })
        .collect()
}

// ---- CONNECT and CONNACK --------------------------------------------------------------------

#[test]
fn mqtt_3_2_2_v311_and_v31_connack_accepted_exact_bytes() {
    let mut r = raw();
    let c = r.accept();
    r.send(c, &hex("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'a'"));
    r.expect_bytes(c, &hex("20 02 00 00"));
    r.expect_open(c);
    let c = r.accept();
    r.send(c, &hex("10 0F 00 06 'MQIsdp' 03 02 00 3C 00 01 'b'"));
    r.expect_bytes(c, &hex("20 02 00 00"));
    r.expect_open(c);
}

#[test]
fn connect_delivered_one_byte_at_a_time_is_accepted() {
    let mut r = raw();
    let c = r.accept();
    r.send_bytewise(c, &hex("10 0E 00 04 'MQTT' 05 02 00 3C 00 00 01 'a'"));
    let ack = r.expect_connack(c, V5);
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(!ack.session_present);
}

#[test]
fn mqtt_3_2_2_v5_connack_announces_the_brokers_limits() {
    let mut r = raw_with(|c| {
        c.max_packet_size = 1000;
        c.receive_maximum = 7;
        c.maximum_qos = QoS::AtLeastOnce;
        c.retain_available = false;
        c.topic_alias_maximum = 3;
    });
    let (_, ack) = r.connect_with(Connect::new(V5, s("limits")));
    let p = ack.properties;
    assert_eq!(p.receive_maximum, NonZeroU16::new(7), "{p:?}");
    assert_eq!(p.maximum_qos, Some(QoS::AtLeastOnce), "v5 [MQTT-3.2.2-9]");
    assert_eq!(p.retain_available, Some(false), "v5 [MQTT-3.2.2-13]");
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(1000));
    assert_eq!(p.topic_alias_maximum, Some(3));
}

#[test]
fn mqtt_3_1_0_1_first_packet_other_than_connect_closes_the_connection() {
    for first in ["C0 00", "30 04 00 01 'a' 'x'", "82 06 00 01 00 01 'a' 00"] {
        let mut r = raw();
        let c = r.accept();
        r.send(c, &hex(first));
        assert!(
            r.close_requested(c),
            "[MQTT-3.1.0-1]: {first} before CONNECT is not closed"
        );
        r.expect_violation(c, ProtocolViolation::FirstPacketNotConnect);
        r.expect_silence(c);
    }
}

#[test]
fn mqtt_3_1_0_2_second_connect_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "twice");
    r.send_packet(c, V5, Connect::new(V5, s("twice")));
    r.expect_disconnect(c, ReasonCode::ProtocolError);
    r.expect_violation(c, ProtocolViolation::SecondConnect);

    let c = r.connect(V311, "twice3");
    r.send_packet(c, V311, Connect::new(V311, s("twice3")));
    r.expect_closed(c);
    r.expect_silence(c);
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_gets_return_code_1_and_close() {
    for bytes in [
        "10 0D 00 04 'MQTT' 06 02 00 3C 00 01 'a'",
        "10 0D 00 04 'MQTT' 03 02 00 3C 00 01 'a'",
        "10 0F 00 06 'MQIsdp' 04 02 00 3C 00 01 'a'",
    ] {
        let mut r = raw();
        let c = r.accept();
        r.send(c, &hex(bytes));
        r.expect_bytes(c, &hex("20 02 00 01"));
        r.expect_closed(c);
        r.expect_silence(c);
    }
}

#[test]
fn mqtt_3_1_2_1_unknown_protocol_name_closes_without_accepting() {
    let mut r = raw();
    let c = r.accept();
    r.send(c, &hex("10 0D 00 04 'MQTX' 04 02 00 3C 00 01 'a'"));
    r.expect_closed(c);
    let left = r.pending(c);
    assert!(
        left.is_empty() || left == hex("20 02 00 01"),
        "[MQTT-3.1.2-1]: at most a refusal, got {left:02X?}"
    );
}

#[test]
fn mqtt_3_1_2_3_reserved_connect_flag_closes_without_accepting() {
    let mut r = raw();
    let c = r.accept();
    r.send(c, &hex("10 0D 00 04 'MQTT' 04 03 00 3C 00 01 'a'"));
    r.expect_closed(c);
    r.expect_silence(c);
    let c = r.accept();
    r.send(c, &hex("10 0E 00 04 'MQTT' 05 03 00 3C 00 00 01 'a'"));
    r.expect_closed(c);
    if let Some(p) = r.try_packet(c, V5) {
        match p {
            Packet::ConnAck(a) => assert_eq!(a.reason_code, ReasonCode::MalformedPacket),
            p => panic!("v5 [MQTT-3.1.2-3]: only a CONNACK 0x81 may precede the close: {p:?}"),
        }
    }
}

#[test]
fn mqtt_3_2_0_1_v31_resumed_session_gets_connack_before_queued_messages() {
    // MQTT 3.1, clean session 0: the session outlives the connection.
    let connect = hex("10 13 00 06 'MQIsdp' 03 00 00 3C 00 05 'old31'");
    let mut r = raw();
    let c = r.accept();
    r.send(c, &connect);
    r.expect_bytes(c, &hex("20 02 00 00"));
    r.send(c, &hex("82 08 00 01 00 03 'q31' 01"));
    r.expect_bytes(c, &hex("90 03 00 01 01"));
    r.close(c);
    let p = r.connect(V311, "pub");
    r.send(p, &hex("32 0A 00 03 'q31' 00 01 'hey'"));
    r.expect_bytes(p, &hex("40 02 00 01"));
    let c = r.accept();
    r.send(c, &connect);
    // 3.1 has no session present flag: the CONNACK is 20 02 00 00, and it comes first.
    r.expect_bytes(c, &hex("20 02 00 00"));
    match r.expect_packet(c, V311) {
        Packet::Publish(m) => assert_eq!(
            (m.topic.as_str(), &m.payload[..], m.qos),
            ("q31", &b"hey"[..], QoS::AtLeastOnce)
        ),
        p => panic!("expected the queued PUBLISH, got {p:?}"),
    }
}

#[test]
fn mqtt_3_1_3_8_v311_empty_client_id_without_clean_session_gets_return_code_2() {
    let mut r = raw();
    let c = r.accept();
    r.send(c, &hex("10 0C 00 04 'MQTT' 04 00 00 3C 00 00"));
    r.expect_bytes(c, &hex("20 02 00 02"));
    r.expect_closed(c);
}

#[test]
fn mqtt_3_1_empty_client_id_gets_return_code_2() {
    let mut r = raw();
    let c = r.accept();
    r.send(c, &hex("10 0E 00 06 'MQIsdp' 03 02 00 3C 00 00"));
    r.expect_bytes(c, &hex("20 02 00 02"));
    r.expect_closed(c);
}

#[test]
fn mqtt_3_1_3_5_client_id_longer_than_allowed_is_rejected() {
    let mut r = raw_with(|c| c.max_client_id_len = 8);
    let c = r.accept();
    r.send(c, &hex("10 15 00 04 'MQTT' 04 02 00 3C 00 09 'ninechars'"));
    r.expect_bytes(c, &hex("20 02 00 02"));
    r.expect_closed(c);
    assert_eq!(
        refused(&mut r, Connect::new(V5, s("ninechars"))),
        ReasonCode::ClientIdentifierNotValid,
        "v5 CONNACK 0x85"
    );
    r.connect(V5, "eight-ch");
}

use crate::sim::Passwords;

fn with_credentials(v: ProtocolVersion, user: &'static str, pass: &'static [u8]) -> Connect {
    let mut c = Connect::new(v, s("who"));
    c.username = Some(s(user));
    c.password = Some(Bytes::from_static(pass));
    c
}

#[test]
fn mqtt_3_2_2_bad_credentials_get_0x86_and_return_code_4() {
    let bc = BrokerConfig::default().with_allow_anonymous(false);
    let mut r = Raw::with_broker(Broker::with_auth(
        bc,
        Arc::new(Passwords),
        Arc::new(AllowAll),
    ));
    let c = r.accept();
    // 3.1.1, user "alice", password "guess".
    r.send(
        c,
        &hex("10 1D 00 04 'MQTT' 04 C2 00 3C 00 03 'who' 00 05 'alice' 00 05 'guess'"),
    );
    r.expect_bytes(c, &hex("20 02 00 04"));
    r.expect_closed(c);
    assert_eq!(
        refused(&mut r, with_credentials(V5, "alice", b"guess")),
        ReasonCode::BadUserNameOrPassword
    );
    r.connect_with(with_credentials(V5, "alice", b"secret"));
    r.connect_with(with_credentials(V311, "alice", b"secret"));
}

#[test]
fn mqtt_3_2_2_anonymous_client_gets_0x87_and_return_code_5() {
    let mut r = raw_with(|c| c.allow_anonymous = false);
    let c = r.accept();
    r.send(c, &hex("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'a'"));
    r.expect_bytes(c, &hex("20 02 00 05"));
    r.expect_closed(c);
    assert_eq!(
        refused(&mut r, Connect::new(V5, s("anon"))),
        ReasonCode::NotAuthorized
    );
}

fn with_will(v: ProtocolVersion, qos: QoS, retain: bool) -> Connect {
    let mut c = Connect::new(v, s("willing"));
    c.will = Some(Will {
        topic: topic("will/x"),
        payload: Bytes::from_static(b"bye"),
        qos,
        retain,
        properties: WillProperties::default(),
    });
    c
}

#[test]
fn mqtt_3_2_2_12_v5_will_qos_above_maximum_qos_gets_0x9b() {
    let mut r = raw_with(|c| c.maximum_qos = QoS::AtMostOnce);
    assert_eq!(
        refused(&mut r, with_will(V5, QoS::AtLeastOnce, false)),
        ReasonCode::QoSNotSupported
    );
    r.connect_with(with_will(V5, QoS::AtMostOnce, false));
}

/// 3.1.1 has no code for these: the refusal is return code 5 (before, the broker tried to
/// encode the MQTT 5 code for a 3.1.1 client, which the encoder refuses).
#[test]
fn v311_will_the_broker_cannot_honour_gets_return_code_5() {
    let mut r = raw_with(|c| {
        c.maximum_qos = QoS::AtMostOnce;
        c.retain_available = false;
    });
    for (qos, retain) in [(QoS::AtLeastOnce, false), (QoS::AtMostOnce, true)] {
        assert_eq!(
            refused(&mut r, with_will(V311, qos, retain)),
            ReasonCode::NotAuthorized,
            "{qos:?} retain {retain}"
        );
    }
}

#[test]
fn mqtt_3_2_2_13_v5_will_retain_without_retain_available_gets_0x9a() {
    let mut r = raw_with(|c| c.retain_available = false);
    assert_eq!(
        refused(&mut r, with_will(V5, QoS::AtMostOnce, true)),
        ReasonCode::RetainNotSupported
    );
}

#[test]
fn mqtt_4_12_0_1_v5_unsupported_authentication_method_gets_0x8c() {
    let mut r = raw();
    let mut c = Connect::new(V5, s("scram"));
    c.properties.authentication_method = Some(s("SCRAM-SHA-1"));
    assert_eq!(refused(&mut r, c), ReasonCode::BadAuthenticationMethod);
}

#[test]
fn connect_timeout_closes_a_silent_transport() {
    let mut r = raw_with(|c| c.connect_timeout = secs(10));
    let c = r.accept();
    r.advance(Duration::from_millis(9_999));
    r.expect_open(c);
    r.advance(Duration::from_millis(1));
    r.expect_closed(c);
    r.expect_silence(c);
}

// ---- keep-alive and shutdown ----------------------------------------------------------------

#[test]
fn mqtt_3_1_2_22_v5_any_packet_restarts_the_keep_alive_and_silence_gets_0x8d() {
    let mut r = raw();
    let mut connect = Connect::new(V5, s("ka"));
    connect.keep_alive = 10;
    let (c, _) = r.connect_with(connect);
    r.advance(secs(14));
    r.send(c, &hex("C0 00"));
    r.expect_bytes(c, &hex("D0 00"));
    r.advance(secs(14));
    r.expect_open(c);
    r.advance(secs(1));
    r.expect_disconnect(c, ReasonCode::KeepAliveTimeout);
}

#[test]
fn mqtt_3_1_2_10_keep_alive_zero_never_times_out() {
    let mut r = raw();
    let mut connect = Connect::new(V311, s("forever"));
    connect.keep_alive = 0;
    let (c, _) = r.connect_with(connect);
    r.advance(secs(86_400));
    r.expect_open(c);
    r.expect_silence(c);
}

#[test]
fn mqtt_3_12_4_1_pingreq_gets_pingresp() {
    let mut r = raw();
    let c = r.connect(V311, "ping");
    r.send(c, &hex("C0 00"));
    r.expect_bytes(c, &hex("D0 00"));
}

#[test]
fn shutdown_sends_disconnect_0x8b_to_v5_and_closes_v311() {
    let mut r = raw();
    let five = r.connect(V5, "five");
    let three = r.connect(V311, "three");
    r.shutdown();
    r.expect_disconnect(five, ReasonCode::ServerShuttingDown);
    r.expect_closed(three);
    r.expect_silence(three);
}

#[test]
fn will_to_a_forbidden_topic_is_refused_with_0x87_and_return_code_5() {
    struct NoWills;
    impl Authorizer for NoWills {
        fn can_publish(&self, _: &ByteStr, _: Option<&ByteStr>, t: &TopicName) -> bool {
            !t.as_str().starts_with("will/")
        }
        fn can_subscribe(&self, _: &ByteStr, _: Option<&ByteStr>, _: &TopicFilter) -> bool {
            true
        }
    }
    for (v, code) in [
        (V5, ReasonCode::NotAuthorized),
        (V311, ReasonCode::NotAuthorized),
    ] {
        let mut r = Raw::with_broker(Broker::with_auth(
            BrokerConfig::default(),
            Arc::new(AllowAll),
            Arc::new(NoWills),
        ));
        assert_eq!(
            refused(&mut r, with_will(v, QoS::AtMostOnce, false)),
            code,
            "{v:?}"
        );
    }
}
