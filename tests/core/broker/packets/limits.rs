//! The configured limits and their codes (connections, topic length and depth), server
//! redirection, response information, reason strings, and topic aliases towards clients.

use std::num::NonZeroU32;
use std::sync::Arc;

use tinymqtt::broker::{AllowAll, Authorizer, Broker, BrokerConfig, BrokerEvent, Redirect};
use tinymqtt::codec::{Connect, Packet, Publish, Will, WillProperties};
use tinymqtt::error::ProtocolViolation;
use tinymqtt::{ByteStr, QoS, ReasonCode, TopicFilter, TopicName};

use crate::broker::packets::{
    ack_of, publish, publishes, raw_with, refused, suback, subscribe, subscriber, V311, V5,
};
use crate::sim::raw::{hex, Raw};
use crate::sim::{s, sub, topic};

fn reason(p: &Option<ByteStr>) -> Option<&str> {
    p.as_ref().map(ByteStr::as_str)
}

// ---- maximum connections --------------------------------------------------------------------

#[test]
fn max_connections_refuses_one_more_with_0x97_and_return_code_3() {
    let mut r = raw_with(|c| c.max_connections = Some(2));
    let a = r.connect(V5, "a");
    let _b = r.connect(V311, "b");
    let c = r.accept();
    r.send_packet(c, V5, Connect::new(V5, s("c")));
    let ack = r.expect_connack(c, V5);
    assert_eq!(ack.reason_code, ReasonCode::QuotaExceeded);
    assert_eq!(
        reason(&ack.properties.reason_string),
        Some("quota exceeded")
    );
    r.expect_closed(c);
    let c3 = r.accept();
    r.send(c3, &hex("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'c'"));
    r.expect_bytes(c3, &hex("20 02 00 03"));
    r.expect_closed(c3);
    // A takeover replaces a connection: allowed at the limit.
    let a2 = r.connect(V5, "a");
    r.expect_disconnect(a, ReasonCode::SessionTakenOver);
    r.expect_open(a2);
    // A freed slot is taken again.
    r.close(a2);
    r.connect(V5, "c");
    assert_eq!(r.broker.stats().connections, 2);
}

#[test]
fn a_transport_beyond_the_limit_and_one_handshake_is_closed_before_anything_is_read() {
    let mut r = raw_with(|c| c.max_connections = Some(1));
    let _a = r.connect(V5, "a");
    let _handshake = r.accept(); // room for one more: a takeover may be under way
    let late = r.accept();
    r.expect_closed(late);
    r.expect_silence(late);
    r.expect_violation(late, ProtocolViolation::TooManyConnections);
}

// ---- server redirection ---------------------------------------------------------------------

#[test]
fn mqtt_4_11_v5_redirection_gets_0x9c_or_0x9d_with_server_reference_and_v311_code_3() {
    for (permanent, code) in [
        (false, ReasonCode::UseAnotherServer),
        (true, ReasonCode::ServerMoved),
    ] {
        let mut r = raw_with(|c| {
            c.redirect = Some(Redirect {
                server_reference: s("other.example:1883"),
                permanent,
            })
        });
        let c = r.accept();
        r.send_packet(c, V5, Connect::new(V5, s("x")));
        let ack = r.expect_connack(c, V5);
        assert_eq!(ack.reason_code, code);
        assert_eq!(
            ack.properties.server_reference,
            Some(s("other.example:1883"))
        );
        r.expect_closed(c);
        let c = r.accept();
        r.send(c, &hex("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'y'"));
        r.expect_bytes(c, &hex("20 02 00 03"));
        r.expect_closed(c);
        assert_eq!(r.broker.stats().sessions, 0, "nobody got a session");
    }
}

// ---- response information -------------------------------------------------------------------

#[test]
fn mqtt_3_1_2_28_v5_response_information_only_when_requested_and_configured() {
    let ask = |request: Option<bool>| {
        let mut c = Connect::new(V5, s("rr"));
        c.properties.request_response_information = request;
        c
    };
    let mut r = raw_with(|c| c.response_information = Some(s("reply/here")));
    for (request, expected) in [
        (Some(true), Some(s("reply/here"))),
        (Some(false), None),
        (None, None),
    ] {
        let (c, ack) = r.connect_with(ask(request));
        assert_eq!(ack.properties.response_information, expected, "{request:?}");
        r.close(c);
    }
    let mut r = raw_with(|_| {});
    let (_, ack) = r.connect_with(ask(Some(true)));
    assert_eq!(ack.properties.response_information, None, "none configured");
}

// ---- topic length and depth -----------------------------------------------------------------

fn limited() -> Raw {
    raw_with(|c| {
        c.max_topic_len = 16;
        c.max_topic_levels = 3;
    })
}

#[test]
fn v5_publish_above_topic_limits_gets_puback_and_pubrec_0x90_and_the_connection_goes_on() {
    let mut r = limited();
    let spy = subscriber(&mut r, V5, "spy", "#");
    let c = r.connect(V5, "p");
    for (t, id) in [("a/very/long/topic/name", 1), ("a/b/c/d", 2)] {
        let mut p = publish("x", "m", QoS::AtLeastOnce, id);
        p.topic = TopicName::new(t).expect("valid topic");
        r.send_packet(c, V5, p.clone());
        let (kind, a) = ack_of(r.expect_packet(c, V5));
        assert_eq!(
            (kind, a.reason_code),
            ("PUBACK", ReasonCode::TopicNameInvalid)
        );
        assert_eq!(
            reason(&a.properties.reason_string),
            Some("topic name invalid")
        );
        p.qos = QoS::ExactlyOnce;
        p.packet_id = crate::broker::packets::pid(id + 10).into();
        r.send_packet(c, V5, p.clone());
        let (kind, a) = ack_of(r.expect_packet(c, V5));
        assert_eq!(
            (kind, a.reason_code),
            ("PUBREC", ReasonCode::TopicNameInvalid)
        );
        p.qos = QoS::AtMostOnce;
        p.packet_id = None;
        r.send_packet(c, V5, p);
        r.expect_silence(c);
    }
    r.expect_open(c);
    // Within the limits: 16 bytes, 3 levels.
    r.send_packet(
        c,
        V5,
        publish("abcd/efgh/ijklmn", "ok", QoS::AtLeastOnce, 3),
    );
    let (_, a) = ack_of(r.expect_packet(c, V5));
    assert_eq!(a.reason_code, ReasonCode::Success);
    let got = publishes(&mut r, spy, V5);
    assert_eq!(got.len(), 1, "only the message within the limits: {got:?}");
    assert_eq!(got[0].topic.as_str(), "abcd/efgh/ijklmn");
}

#[test]
fn v311_publish_above_topic_limits_closes_the_connection() {
    let mut r = limited();
    let c = r.connect(V311, "p");
    r.send_packet(c, V311, publish("a/b/c/d", "m", QoS::AtLeastOnce, 1));
    r.expect_closed(c);
    r.expect_silence(c);
    r.expect_violation(c, ProtocolViolation::TopicAboveLimits);
}

#[test]
fn subscribe_above_topic_limits_gets_0x8f_in_v5_and_0x80_in_v311() {
    for (v, code) in [
        (V5, ReasonCode::TopicFilterInvalid),
        (V311, ReasonCode::UnspecifiedError),
    ] {
        let mut r = limited();
        let c = r.connect(v, "s");
        let filters = vec![
            sub("a/b/c/#", QoS::AtLeastOnce),
            sub("a/very/long/filter/+", QoS::AtLeastOnce),
            sub("a/b/#", QoS::AtLeastOnce),
            // The group prefix of a shared subscription does not count.
            sub("$share/group/a/b/+", QoS::AtLeastOnce),
        ];
        r.send_packet(c, v, subscribe(1, filters));
        let a = suback(&mut r, c, v);
        assert_eq!(
            a.reason_codes,
            vec![code, code, ReasonCode::GrantedQoS1, ReasonCode::GrantedQoS1],
            "{v:?}"
        );
        r.expect_open(c);
    }
}

#[test]
fn v5_will_topic_above_the_limits_gets_0x90_and_v311_return_code_5() {
    for (v, code) in [
        (V5, ReasonCode::TopicNameInvalid),
        (V311, ReasonCode::NotAuthorized),
    ] {
        let mut r = limited();
        let mut c = Connect::new(v, s("w"));
        c.will = Some(Will {
            topic: topic("will/a/b/c"),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties::default(),
        });
        assert_eq!(refused(&mut r, c), code, "{v:?}");
    }
}

// ---- reason strings -------------------------------------------------------------------------

struct DenyAll;

impl Authorizer for DenyAll {
    fn can_publish(&self, _: &ByteStr, _: Option<&ByteStr>, _: &TopicName) -> bool {
        false
    }
    fn can_subscribe(&self, _: &ByteStr, _: Option<&ByteStr>, _: &TopicFilter) -> bool {
        false
    }
}

#[test]
fn mqtt_3_1_2_29_v5_reason_strings_on_acks_only_when_problem_information_is_not_0() {
    for (request, expected) in [
        (None, Some("not authorized")),
        (Some(true), Some("not authorized")),
        (Some(false), None),
    ] {
        let mut r = Raw::with_broker(Broker::with_auth(
            BrokerConfig::default(),
            Arc::new(AllowAll),
            Arc::new(DenyAll),
        ));
        let mut connect = Connect::new(V5, s("rp"));
        connect.properties.request_problem_information = request;
        let (c, _) = r.connect_with(connect);
        r.send_packet(c, V5, publish("t", "m", QoS::AtLeastOnce, 1));
        let (_, a) = ack_of(r.expect_packet(c, V5));
        assert_eq!(a.reason_code, ReasonCode::NotAuthorized);
        assert_eq!(reason(&a.properties.reason_string), expected, "{request:?}");
        r.send_packet(c, V5, subscribe(2, vec![sub("t", QoS::AtMostOnce)]));
        let a = suback(&mut r, c, V5);
        assert_eq!(a.reason_codes, vec![ReasonCode::NotAuthorized]);
        assert_eq!(reason(&a.properties.reason_string), expected, "{request:?}");
    }
}

#[test]
fn mqtt_3_1_2_29_v5_connack_and_disconnect_carry_a_reason_string_even_without_problem_info() {
    let mut r = raw_with(|c| c.allow_anonymous = false);
    let mut connect = Connect::new(V5, s("anon"));
    connect.properties.request_problem_information = Some(false);
    let c = r.accept();
    r.send_packet(c, V5, connect);
    let ack = r.expect_connack(c, V5);
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert_eq!(
        reason(&ack.properties.reason_string),
        Some("not authorized")
    );
    let mut r = raw_with(|c| c.topic_alias_maximum = 2);
    let mut connect = Connect::new(V5, s("alias"));
    connect.properties.request_problem_information = Some(false);
    let (c, _) = r.connect_with(connect);
    let mut p = publish("t", "m", QoS::AtMostOnce, 0);
    p.properties.topic_alias = std::num::NonZeroU16::new(3);
    r.send_packet(c, V5, p);
    match r.expect_packet(c, V5) {
        Packet::Disconnect(d) => {
            assert_eq!(d.reason_code, ReasonCode::TopicAliasInvalid);
            let text = reason(&d.properties.reason_string).unwrap_or_default();
            assert!(text.contains("topic alias"), "reason string {text:?}");
        }
        p => panic!("expected DISCONNECT, got {p:?}"),
    }
}

#[test]
fn mqtt_3_2_2_19_and_3_14_2_3_v5_reason_string_left_out_when_it_would_not_fit() {
    let small = NonZeroU32::new(12);
    // CONNACK: with a 12-byte limit the refusal goes without its reason string.
    let mut r = raw_with(|c| c.allow_anonymous = false);
    let mut connect = Connect::new(V5, s("anon"));
    connect.properties.maximum_packet_size = small;
    let c = r.accept();
    r.send_packet(c, V5, connect);
    r.expect_bytes(c, &hex("20 03 00 87 00"));
    r.expect_closed(c);
    // DISCONNECT: the same, while a roomier limit lets the reason string through.
    // (The accepting CONNACK is 16 bytes, the DISCONNECT with its reason string over 40.)
    for (limit, with_reason) in [(NonZeroU32::new(20), false), (NonZeroU32::new(200), true)] {
        let mut r = raw_with(|c| c.topic_alias_maximum = 2);
        let mut connect = Connect::new(V5, s("alias"));
        connect.properties.maximum_packet_size = limit;
        let (c, _) = r.connect_with(connect);
        let mut p = publish("t", "m", QoS::AtMostOnce, 0);
        p.properties.topic_alias = std::num::NonZeroU16::new(3);
        r.send_packet(c, V5, p);
        if with_reason {
            match r.expect_packet(c, V5) {
                Packet::Disconnect(d) => {
                    assert_eq!(d.reason_code, ReasonCode::TopicAliasInvalid);
                    assert!(d.properties.reason_string.is_some());
                }
                p => panic!("expected DISCONNECT, got {p:?}"),
            }
        } else {
            r.expect_bytes(c, &hex("E0 01 94"));
        }
        r.expect_closed(c);
    }
}

// ---- topic aliases towards clients ----------------------------------------------------------

fn aliasing(broker_max: u16) -> Raw {
    raw_with(|c| c.outbound_topic_aliases = broker_max)
}

fn alias_subscriber(
    r: &mut Raw,
    id: &'static str,
    client_max: Option<u16>,
) -> tinymqtt::broker::ConnId {
    let mut connect = Connect::new(V5, s(id));
    connect.properties.topic_alias_maximum = client_max;
    let (c, _) = r.connect_with(connect);
    r.send_packet(c, V5, subscribe(1, vec![sub("t/#", QoS::AtMostOnce)]));
    suback(r, c, V5);
    c
}

fn topics_and_aliases(got: &[Publish]) -> Vec<(&str, Option<u16>)> {
    got.iter()
        .map(|p| {
            (
                p.topic.as_str(),
                p.properties.topic_alias.map(std::num::NonZeroU16::get),
            )
        })
        .collect()
}

#[test]
fn mqtt_3_1_2_26_v5_outbound_aliases_stay_within_the_clients_maximum() {
    let mut r = aliasing(10);
    let sub = alias_subscriber(&mut r, "sub", Some(2));
    let p = r.connect(V5, "pub");
    for t in ["t/a", "t/a", "t/b", "t/c", "t/a", "t/b"] {
        let mut m = publish("x", "m", QoS::AtMostOnce, 0);
        m.topic = TopicName::new(t).expect("valid");
        r.send_packet(p, V5, m);
    }
    let got = publishes(&mut r, sub, V5);
    assert_eq!(
        topics_and_aliases(&got),
        vec![
            ("t/a", Some(1)),
            ("", Some(1)),
            ("t/b", Some(2)),
            ("t/c", None),
            ("", Some(1)),
            ("", Some(2)),
        ]
    );
}

#[test]
fn mqtt_3_1_2_27_v5_no_outbound_aliases_when_the_client_allows_none_or_the_broker_is_off() {
    for (broker_max, client_max) in [(10, None), (10, Some(0)), (0, Some(10))] {
        let mut r = aliasing(broker_max);
        let sub = alias_subscriber(&mut r, "sub", client_max);
        let p = r.connect(V5, "pub");
        for _ in 0..2 {
            r.send_packet(p, V5, publish("t/a", "m", QoS::AtMostOnce, 0));
        }
        let got = publishes(&mut r, sub, V5);
        assert_eq!(
            topics_and_aliases(&got),
            vec![("t/a", None), ("t/a", None)],
            "broker {broker_max}, client {client_max:?}"
        );
    }
}

#[test]
fn mqtt_3_3_2_7_v5_outbound_aliases_start_afresh_on_a_new_connection_and_resends_name_the_topic() {
    let mut r = aliasing(4);
    let mut connect = Connect::new(V5, s("sub"));
    connect.clean_start = false;
    connect.properties.topic_alias_maximum = Some(4);
    connect.properties.session_expiry_interval = Some(600);
    let (c, _) = r.connect_with(connect.clone());
    r.send_packet(c, V5, subscribe(1, vec![sub("t/#", QoS::AtLeastOnce)]));
    suback(&mut r, c, V5);
    let p = r.connect(V5, "pub");
    for id in 1..=2 {
        r.send_packet(p, V5, publish("t/a", "m", QoS::AtLeastOnce, id));
    }
    let got = publishes(&mut r, c, V5);
    assert_eq!(
        topics_and_aliases(&got),
        vec![("t/a", Some(1)), ("", Some(1))]
    );
    // Unacknowledged; the session resumes on a new connection.
    r.close(c);
    let (c, ack) = r.connect_with(connect);
    assert!(ack.session_present);
    let got = publishes(&mut r, c, V5);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| p.dup), "resends carry DUP");
    assert_eq!(topics_and_aliases(&got), vec![("t/a", None), ("t/a", None)]);
    r.send_packet(p, V5, publish("t/a", "m", QoS::AtMostOnce, 0));
    let got = publishes(&mut r, c, V5);
    assert_eq!(
        topics_and_aliases(&got),
        vec![("t/a", Some(1))],
        "the old connection's alias is not carried over"
    );
}

#[test]
fn mqtt_3_1_2_24_v5_accepting_connack_above_the_clients_maximum_closes_instead_of_hanging() {
    let mut r = raw_with(|_| {});
    let mut connect = Connect::new(V5, s("tiny"));
    connect.properties.maximum_packet_size = NonZeroU32::new(12);
    let c = r.accept();
    r.send_packet(c, V5, connect);
    r.expect_silence(c);
    r.expect_closed(c);
    assert!(r.events().iter().any(|e| matches!(
        e,
        BrokerEvent::Closed { conn, reason } if *conn == c && reason.reason_code == ReasonCode::PacketTooLarge
    )));
    r.expect_violation(c, ProtocolViolation::ConnAckTooLarge);
}
