//! Scripted-peer tests of the client session, named after the normative statements of MQTT 3.1.1
//! and 5.0 they cover (`mqtt_3_1_2_23_...` is `[MQTT-3.1.2-23]`; the version is in the name where
//! the two specifications number a statement differently).
//!
//! A test plays the server: it feeds packets to the client (encoded by the codec, or written by
//! hand), checks the exact bytes the client answers with for the key packets (typed from the
//! specifications' packet layouts, never produced by the encoder), and moves a fake clock only by
//! adding durations. Events are found by kind and content, never by position.

use std::num::{NonZeroU16, NonZeroU32};

use crate::sim::peer::*;
use bytes::Bytes;
use tinymqtt::client::{ClientSession, ClientState, Event, Outgoing};
use tinymqtt::codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    DecodeError, Disconnect, DisconnectProperties, Packet, PacketType, PayloadFormat, PubAck,
    Publish, PublishProperties, RetainHandling, SubAck, SubscribeProperties, Subscription,
    SubscriptionOptions, UnsubAck, UnsubscribeProperties, Will, WillProperties,
};
use tinymqtt::error::{
    ClientError, ClientIdRule, ConnectionError, Initiator, ProtocolViolation, ServerFeature,
    V5Command,
};
use tinymqtt::topic::TopicError;
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A v5 configuration whose session outlives the connection (so reconnects resume it).
fn v5_session_config(id: &'static str) -> tinymqtt::client::ClientConfig {
    let mut c = config(V5, id);
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// A v5 CONNACK accepting with these properties.
fn connack_with(session_present: bool, properties: ConnAckProperties) -> ConnAck {
    ConnAck {
        session_present,
        reason_code: ReasonCode::Success,
        properties,
    }
}

fn suback(id: u16, codes: &[ReasonCode]) -> Packet {
    Packet::SubAck(SubAck {
        packet_id: pid(id),
        properties: AckProperties::default(),
        reason_codes: codes.to_vec(),
    })
}

fn unsuback(id: u16, codes: &[ReasonCode]) -> Packet {
    Packet::UnsubAck(UnsubAck {
        packet_id: pid(id),
        properties: AckProperties::default(),
        reason_codes: codes.to_vec(),
    })
}

fn publish_id(p: &Packet) -> (u8, u16) {
    match p {
        Packet::Publish(p) => (
            0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain),
            p.packet_id.map_or(0, |id| id.get()),
        ),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.1.2-9], [MQTT-3.1.2-14], [MQTT-3.1.2-19], [MQTT-3.1.2-21], [MQTT-3.1.3-1] (3.1.1):
/// will, user name and password are flagged and appear in the payload in that order.
#[test]
fn mqtt_3_1_3_1_v311_connect_with_every_option_exact_bytes() {
    let mut c = config(V311, "c1");
    c.clean_start = false;
    c.keep_alive = 30;
    c.will = Some(Will {
        topic: topic("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties::default(),
    });
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"pw"));
    let mut p = Peer::new(c);
    p.client.connect(p.now).unwrap();
    #[rustfmt::skip]
    p.expect_bytes(&[
        0x10, 0x1F,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04,
        0xEC, // user name, password, will retain, will qos 1, will, clean session 0
        0x00, 0x1E,
        0x00, 0x02, b'c', b'1',
        0x00, 0x03, b'w', b'/', b't',
        0x00, 0x03, b'b', b'y', b'e',
        0x00, 0x01, b'u',
        0x00, 0x02, b'p', b'w',
    ]);
    p.expect_silence();
    assert_eq!(p.client.state(), ClientState::Connecting);
    assert_eq!(p.deadline(), Some(secs(10)), "the connect timeout is armed");
}

/// MQTT 3.1 (protocol name `MQIsdp`, level 3): the CONNECT and its acceptance.
#[test]
fn mqtt_3_1_connect_uses_mqisdp_level_3() {
    let mut p = Peer::new(config(V3_1, "c31"));
    p.client.connect(p.now).unwrap();
    #[rustfmt::skip]
    p.expect_bytes(&[
        0x10, 0x11,
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03,
        0x02, // clean session
        0x00, 0x3C,
        0x00, 0x03, b'c', b'3', b'1',
    ]);
    p.send_raw(&hex("20 02 00 00"));
    let present = p.expect_event("connected", |e| match e {
        Event::Connected {
            session_present, ..
        } => Some(*session_present),
        _ => None,
    });
    assert!(!present);
    assert_eq!(p.client.state(), ClientState::Connected);
    // The whole QoS 1 flow works on 3.1 too.
    let id = p
        .publish(message("a", b"x", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    p.expect_bytes(&hex("32 06 00 01 'a' 00 01 'x'"));
    p.send_raw(&hex("40 02 00 01"));
    assert_eq!(p.published(id.get()).0, ReasonCode::Success);
}

/// [MQTT-3.1.2-11], [MQTT-3.1.2-17], [MQTT-3.1.3-1] (5.0): CONNECT properties, will properties
/// and user name, in the layout of section 3.1.
#[test]
fn mqtt_3_1_3_1_v5_connect_with_properties_exact_bytes() {
    let mut c = config(V5, "c5");
    c.keep_alive = 30;
    c.properties = ConnectProperties {
        session_expiry_interval: Some(120),
        receive_maximum: NonZeroU16::new(10),
        maximum_packet_size: NonZeroU32::new(1024),
        topic_alias_maximum: Some(5),
        request_problem_information: Some(false),
        user_properties: vec![(s("k"), s("v"))],
        ..ConnectProperties::default()
    };
    c.will = Some(Will {
        topic: topic("w"),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(5),
            ..WillProperties::default()
        },
    });
    c.username = Some(s("u"));
    let mut p = Peer::new(c);
    p.client.connect(p.now).unwrap();
    #[rustfmt::skip]
    p.expect_bytes(&[
        0x10, 0x37,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        0x86, // user name, will, clean start
        0x00, 0x1E,
        0x19, // properties: 25 bytes
        0x11, 0x00, 0x00, 0x00, 0x78, // session expiry interval 120
        0x21, 0x00, 0x0A, // receive maximum 10
        0x27, 0x00, 0x00, 0x04, 0x00, // maximum packet size 1024
        0x22, 0x00, 0x05, // topic alias maximum 5
        0x17, 0x00, // request problem information 0
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        0x00, 0x02, b'c', b'5',
        0x05, 0x18, 0x00, 0x00, 0x00, 0x05, // will properties: will delay interval 5
        0x00, 0x01, b'w',
        0x00, 0x01, b'x',
        0x00, 0x01, b'u',
    ]);
    p.expect_silence();
}

/// [MQTT-3.1.0-1]: nothing but CONNECT before a connection exists; commands are refused.
#[test]
fn mqtt_3_1_0_1_commands_before_connect_are_refused() {
    let mut p = Peer::new(config(V311, "c"));
    let now = p.now;
    assert_eq!(
        p.publish(message("a", b"x", QoS::AtMostOnce)),
        Err(ClientError::NotConnected)
    );
    assert_eq!(
        p.subscribe(
            vec![Subscription::new(filter("a"), QoS::AtMostOnce)],
            SubscribeProperties::default()
        ),
        Err(ClientError::NotConnected)
    );
    assert_eq!(
        p.client.disconnect(now, Disconnect::default()),
        Err(ClientError::NotConnected)
    );
    p.expect_silence();
    p.connect();
    // Still connecting: no other packet may go out yet.
    assert_eq!(
        p.publish(message("a", b"x", QoS::AtMostOnce)),
        Err(ClientError::NotConnected)
    );
    assert_eq!(p.client.connect(now), Err(ClientError::AlreadyConnected));
    p.expect_silence();
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.2.2-5] (3.1.1): every refusing return code (1-5) closes the connection; the client
/// reports it once, sends nothing, and ignores later bytes.
#[test]
fn mqtt_3_2_2_5_v311_every_refusing_return_code_is_reported() {
    let codes = [
        (1, ReasonCode::UnsupportedProtocolVersion),
        (2, ReasonCode::ClientIdentifierNotValid),
        (3, ReasonCode::ServerUnavailable),
        (4, ReasonCode::BadUserNameOrPassword),
        (5, ReasonCode::NotAuthorized),
    ];
    for (rc, code) in codes {
        let mut p = Peer::new(config(V311, "c"));
        p.connect();
        p.send_raw(&[0x20, 0x02, 0x00, rc]);
        let (reason, _) = p.disconnected();
        assert_eq!(reason.initiator, Initiator::Remote, "return code {rc}");
        assert_eq!(reason.reason_code, code);
        assert_eq!(reason.error, Some(ConnectionError::Refused(code)));
        p.no_event("connected", |e| matches!(e, Event::Connected { .. }));
        p.expect_silence();
        assert_eq!(p.client.state(), ClientState::Reconnecting);
        // Later input is a no-op.
        p.send_raw(&hex("20 02 00 00"));
        p.expect_silence();
        assert!(p.take_events().is_empty());
    }
}

/// [MQTT-3.2.2-7] (5.0): every CONNACK reason code of 0x80 or above refuses the connection and
/// is reported once; a reconnect is planned and later input is a no-op.
#[test]
fn mqtt_3_2_2_7_v5_every_refusing_reason_code_is_reported() {
    let codes: [u8; 21] = [
        0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
        0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ];
    for rc in codes {
        let code = ReasonCode::from_u8(rc).unwrap();
        let mut p = Peer::new(config(V5, "c"));
        p.connect();
        p.send_raw(&[0x20, 0x03, 0x00, rc, 0x00]);
        let (reason, _) = p.disconnected();
        assert_eq!(reason.initiator, Initiator::Remote, "reason code {rc:#04X}");
        assert_eq!(reason.reason_code, code);
        assert_eq!(reason.error, Some(ConnectionError::Refused(code)));
        p.expect_silence();
        assert_eq!(p.deadline(), Some(secs(1)), "a reconnect is planned");
        p.send_raw(&hex("20 03 00 00 00"));
        assert!(
            p.take_events().is_empty(),
            "input after the close is a no-op"
        );
        p.expect_silence();
    }
}

/// [MQTT-3.2.2-4] (5.0): a client without session state that gets Session Present 1 closes the
/// connection (here with DISCONNECT 0x82, Protocol Error).
#[test]
fn mqtt_3_2_2_4_session_present_after_clean_start_closes() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.accept(ConnAck::accepted(true));
    p.expect_bytes(&hex("E0 01 82"));
    p.expect_silence();
    let (reason, _) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Local);
    assert_eq!(reason.reason_code, ReasonCode::ProtocolError);
    assert_eq!(
        reason.error,
        Some(ConnectionError::Violation(
            ProtocolViolation::SessionPresentAfterCleanStart
        ))
    );
    p.no_event("connected", |e| matches!(e, Event::Connected { .. }));
}

/// [MQTT-3.2.2-16] (5.0): the Assigned ClientSession Identifier replaces the empty one, for the
/// session export and the next CONNECT.
#[test]
fn mqtt_3_2_2_16_assigned_client_identifier_is_used_afterwards() {
    let mut p = Peer::new(v5_session_config(""));
    let Packet::Connect(c) = p.connect() else {
        unreachable!()
    };
    assert!(c.client_id.is_empty());
    p.accept(connack_with(
        false,
        ConnAckProperties {
            assigned_client_identifier: Some(s("srv-42")),
            ..ConnAckProperties::default()
        },
    ));
    let props = p.expect_event("connected", |e| match e {
        Event::Connected { properties, .. } => Some(properties.clone()),
        _ => None,
    });
    assert_eq!(props.assigned_client_identifier, Some(s("srv-42")));
    assert_eq!(p.client.client_id(), "srv-42");
    assert_eq!(p.client.session().client_id, "srv-42");
    p.close_transport();
    let Packet::Connect(c) = p.reconnect() else {
        unreachable!()
    };
    assert_eq!(c.client_id, "srv-42");
    assert!(
        !c.clean_start,
        "the session is resumed under the assigned id"
    );
}

/// [MQTT-3.2.2-11] (5.0): no PUBLISH above the server's Maximum QoS.
#[test]
fn mqtt_3_2_2_11_publish_above_maximum_qos_is_refused() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            maximum_qos: Some(QoS::AtLeastOnce),
            ..ConnAckProperties::default()
        },
    ));
    assert_eq!(
        p.publish(message("a", b"x", QoS::ExactlyOnce)),
        Err(ClientError::QoSNotSupported {
            max: QoS::AtLeastOnce
        })
    );
    p.expect_silence();
    let id = p.publish(message("a", b"x", QoS::AtLeastOnce)).unwrap();
    assert_eq!(id, Some(pid(1)), "the refused publish used no packet id");
    let (first, _) = publish_id(&p.expect_packet());
    assert_eq!(first, 0x32);
}

/// [MQTT-3.2.2-14] (5.0): no retained PUBLISH when Retain Available is 0.
#[test]
fn mqtt_3_2_2_14_retain_is_refused_when_unavailable() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            retain_available: Some(false),
            ..ConnAckProperties::default()
        },
    ));
    let mut m = message("a", b"x", QoS::AtMostOnce);
    m.retain = true;
    assert_eq!(p.publish(m), Err(ClientError::RetainNotSupported));
    p.expect_silence();
}

/// [MQTT-3.2.2-15] (5.0): no packet above the server's Maximum Packet Size; the refused publish
/// holds no packet id.
#[test]
fn mqtt_3_2_2_15_packet_above_server_maximum_is_refused() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            maximum_packet_size: NonZeroU32::new(32),
            ..ConnAckProperties::default()
        },
    ));
    let big = Publish {
        qos: QoS::AtLeastOnce,
        ..Publish::new(topic("a"), vec![0u8; 64])
    };
    assert!(matches!(
        p.publish(big),
        Err(ClientError::PacketTooLarge { max: 32, .. })
    ));
    p.expect_silence();
    assert_eq!(p.client.window().0, 0);
    let id = p.publish(message("a", b"small", QoS::AtLeastOnce)).unwrap();
    assert_eq!(id, Some(pid(1)));
}

/// [MQTT-3.2.2-21] (5.0), with [MQTT-3.1.2-22]: the Server Keep Alive replaces the client's.
#[test]
fn mqtt_3_2_2_21_server_keep_alive_overrides_the_clients() {
    let mut c = config(V5, "c");
    c.keep_alive = 60;
    let mut p = Peer::new(c);
    p.connect();
    p.advance(ms(20));
    p.accept(connack_with(
        false,
        ConnAckProperties {
            server_keep_alive: Some(5),
            ..ConnAckProperties::default()
        },
    ));
    // Measured from the CONNECT, the last packet sent.
    assert_eq!(p.deadline(), Some(secs(5)));
    p.run_until(secs(5) - ms(1));
    p.expect_silence();
    p.run_until(secs(5));
    p.expect_bytes(&hex("C0 00"));
}

// ---------------------------------------------------------------------------------------------
// Keep alive and timeouts
// ---------------------------------------------------------------------------------------------

fn pingreq_after_keep_alive_of_silence(v: ProtocolVersion) {
    let mut c = config(v, "c");
    c.keep_alive = 10;
    let mut p = Peer::new(c);
    p.connect();
    p.advance(ms(100));
    p.accept(ConnAck::accepted(false));
    assert_eq!(p.deadline(), Some(secs(10)));

    // Silence for the keep alive exactly: PINGREQ, not a millisecond earlier.
    p.run_until(ms(9_999));
    p.expect_silence();
    p.run_until(secs(10));
    p.expect_bytes(&hex("C0 00"));
    p.advance(ms(500));
    p.send_raw(&hex("D0 00"));

    // Sending postpones the next ping to a keep alive after the last packet sent...
    p.run_until(secs(12));
    p.publish(message("a", b"x", QoS::AtMostOnce)).unwrap();
    p.expect_packet();
    assert_eq!(p.deadline(), Some(secs(22)));
    // ...and receiving does not.
    p.run_until(secs(15));
    p.send(server_publish("a", b"y", QoS::AtMostOnce, 0));
    p.message();
    assert_eq!(p.deadline(), Some(secs(22)));
    p.run_until(ms(21_999));
    p.expect_silence();
    p.run_until(secs(22));
    p.expect_bytes(&hex("C0 00"));
    p.no_event("disconnected", |e| matches!(e, Event::Disconnected { .. }));
}

/// [MQTT-3.1.2-23] (3.1.1): in the absence of other packets the client sends PINGREQ (C0 00)
/// every keep alive, to the millisecond.
#[test]
fn mqtt_3_1_2_23_v311_pingreq_after_keep_alive_of_silence() {
    pingreq_after_keep_alive_of_silence(V311);
}

/// [MQTT-3.1.2-22] (5.0): as in 3.1.1.
#[test]
fn mqtt_3_1_2_22_v5_pingreq_after_keep_alive_of_silence() {
    pingreq_after_keep_alive_of_silence(V5);
}

/// Keep alive 0 turns the mechanism off: no PINGREQ ever.
#[test]
fn mqtt_3_1_2_10_keep_alive_zero_never_pings() {
    let mut c = config(V311, "c");
    c.keep_alive = 0;
    let mut p = Peer::connected(c);
    assert_eq!(p.deadline(), None);
    p.run_until(secs(100_000));
    p.expect_silence();
}

/// Section 3.1.2.10 (3.1.1 and 5.0): a client that gets no PINGRESP within a reasonable time
/// closes the connection; any packet from the server counts as an answer.
#[test]
fn mqtt_3_1_2_10_no_pingresp_closes_with_keep_alive_timeout() {
    for v in [V311, V5] {
        let mut c = config(v, "c");
        c.keep_alive = 10;
        c.ping_timeout = Some(secs(2));
        let mut p = Peer::connected(c);
        p.run_until(secs(10));
        p.expect_bytes(&hex("C0 00"));
        assert_eq!(p.deadline(), Some(secs(12)));
        p.run_until(ms(11_999));
        p.no_event("disconnected", |e| matches!(e, Event::Disconnected { .. }));
        p.run_until(secs(12));
        let (reason, _) = p.disconnected();
        assert_eq!(reason.initiator, Initiator::Local);
        assert_eq!(reason.reason_code, ReasonCode::KeepAliveTimeout);
        assert_eq!(reason.error, Some(ConnectionError::KeepAliveTimeout));
        p.expect_silence();
        assert_eq!(p.client.state(), ClientState::Reconnecting);
        assert_eq!(p.deadline(), Some(secs(13)), "reconnect after the backoff");
        // A late PINGRESP changes nothing.
        p.send_raw(&hex("D0 00"));
        assert!(p
            .take_events()
            .iter()
            .all(|e| !matches!(e, Event::Disconnected { .. })));

        // Any packet proves the server alive.
        let mut c = config(v, "c");
        c.keep_alive = 10;
        c.ping_timeout = Some(secs(2));
        let mut p = Peer::connected(c);
        p.run_until(secs(10));
        p.expect_bytes(&hex("C0 00"));
        p.run_until(secs(11));
        p.send(server_publish("a", b"y", QoS::AtMostOnce, 0));
        p.message();
        p.run_until(secs(15));
        p.no_event("disconnected", |e| matches!(e, Event::Disconnected { .. }));
        assert_eq!(p.client.state(), ClientState::Connected);
    }
}

/// Section 3.2 (3.1.1 and 5.0): a client that gets no CONNACK within a reasonable time closes
/// the connection.
#[test]
fn mqtt_3_2_connack_timeout_closes_the_connection() {
    let mut c = config(V5, "c");
    c.connect_timeout = secs(3);
    let mut p = Peer::new(c);
    p.connect();
    assert_eq!(p.deadline(), Some(secs(3)));
    p.run_until(ms(2_999));
    assert!(p.take_events().is_empty());
    p.run_until(secs(3));
    let (reason, _) = p.disconnected();
    assert_eq!(reason.error, Some(ConnectionError::ConnAckTimeout));
    assert_eq!(reason.initiator, Initiator::Local);
    p.expect_silence();
    // A CONNACK after the timeout is ignored.
    p.accept(ConnAck::accepted(false));
    p.no_event("connected", |e| matches!(e, Event::Connected { .. }));
    assert_eq!(p.client.state(), ClientState::Reconnecting);
    assert_eq!(p.deadline(), Some(secs(4)));
    p.run_until(secs(4));
    p.expect_event("reconnect due", |e| {
        matches!(e, Event::ReconnectDue).then_some(())
    });
    assert_eq!(p.deadline(), None);
}

/// Reconnect delays double from the initial delay up to the maximum, restart after an accepted
/// connection, and with jitter follow the seeded generator exactly.
#[test]
fn reconnect_backoff_doubles_then_resets_and_jitter_is_seeded() {
    let mut c = config(V311, "c");
    c.connect_timeout = secs(1);
    c.reconnect = Some(fixed_backoff(ms(100), ms(1_000)));
    let mut p = Peer::new(c);
    let mut delays = Vec::new();
    p.connect();
    for _ in 0..6 {
        p.close_transport();
        p.disconnected();
        let closed_at = p.elapsed();
        let due = p.deadline().unwrap();
        delays.push((due - closed_at).as_millis());
        p.run_until(due);
        p.expect_event("reconnect due", |e| {
            matches!(e, Event::ReconnectDue).then_some(())
        });
        p.connect();
    }
    assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);

    // A CONNACK timeout counts as a failed attempt too.
    p.run_for(secs(1));
    p.disconnected();
    assert_eq!(p.deadline().unwrap() - p.elapsed(), ms(1_000));
    p.reconnect();

    // An accepted connection starts the sequence again.
    p.accept(ConnAck::accepted(false));
    p.take_events();
    p.close_transport();
    assert_eq!(p.deadline().unwrap() - p.elapsed(), ms(100));

    // Jitter: the same seed gives the same delays, each within `jitter_percent` of the base.
    let jittered = |seed: u64| {
        let mut c = config(V311, "c");
        c.reconnect = Some(tinymqtt::client::Backoff {
            initial: ms(1_000),
            max: secs(64),
            jitter_percent: 50,
            seed,
        });
        let mut p = Peer::new(c);
        let mut out = Vec::new();
        for _ in 0..7 {
            p.connect();
            p.close_transport();
            let d = p.deadline().unwrap() - p.elapsed();
            out.push(d);
            p.run_until(p.deadline().unwrap());
            p.take_events();
        }
        out
    };
    let a = jittered(7);
    assert_eq!(a, jittered(7));
    assert_ne!(a, jittered(8));
    for (n, d) in a.iter().enumerate() {
        let base = ms(1_000) * (1u32 << n);
        assert!(
            *d <= base && *d * 2 >= base,
            "attempt {n}: {d:?} vs {base:?}"
        );
    }
    let mut rng = 7;
    let b = tinymqtt::client::Backoff {
        initial: ms(1_000),
        max: secs(64),
        jitter_percent: 50,
        seed: 7,
    };
    let expected: Vec<_> = (0..7).map(|n| b.delay(n, &mut rng)).collect();
    assert_eq!(a, expected);
}

// ---------------------------------------------------------------------------------------------
// QoS 0, 1 and 2, client to server
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.3.1-2], [MQTT-2.3.1-5] (3.1.1), [MQTT-4.3.1-1] (5.0): QoS 0 carries no packet id and
/// no DUP, and ends at once.
#[test]
fn mqtt_4_3_1_1_qos0_publish_has_no_packet_id() {
    let mut p = Peer::connected(config(V311, "c"));
    let mut m = message("a/b", b"hi", QoS::AtMostOnce);
    m.dup = true; // the client decides DUP, not the caller
    m.packet_id = Some(pid(9));
    assert_eq!(p.publish(m), Ok(None));
    p.expect_bytes(&hex("30 07 00 03 'a/bhi'"));
    assert_eq!(p.client.window().0, 0);
    p.no_event("published", |e| matches!(e, Event::Published { .. }));
}

/// [MQTT-4.3.2-1] (3.1.1; 4.3.2-1..3 in 5.0): QoS 1 with a fresh id and DUP 0, unacknowledged
/// until PUBACK, then `Published`.
#[test]
fn mqtt_4_3_2_1_qos1_publish_then_published_on_puback() {
    let mut p = Peer::connected(config(V311, "c"));
    let id = p
        .publish(message("a/b", b"hi", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert_eq!(id, pid(1));
    p.expect_bytes(&hex("32 09 00 03 'a/b' 00 01 'hi'"));
    assert_eq!(p.client.window().0, 1);
    p.no_event("published", |e| matches!(e, Event::Published { .. }));
    p.send_raw(&hex("40 02 00 01"));
    assert_eq!(p.published(1).0, ReasonCode::Success);
    assert_eq!(p.client.window().0, 0);
    p.expect_silence();
}

/// [MQTT-4.3.2-2] (5.0): the PUBLISH has a property length; `Published` carries the PUBACK's
/// reason code and properties.
#[test]
fn mqtt_4_3_2_2_v5_qos1_published_carries_reason_code_and_properties() {
    let mut p = Peer::connected(config(V5, "c"));
    p.publish(message("a/b", b"hi", QoS::AtLeastOnce)).unwrap();
    p.expect_bytes(&hex("32 0A 00 03 'a/b' 00 01 00 'hi'"));
    p.send(Packet::PubAck(PubAck {
        packet_id: pid(1),
        reason_code: ReasonCode::NoMatchingSubscribers,
        properties: AckProperties {
            reason_string: Some(s("nobody")),
            user_properties: vec![(s("a"), s("1"))],
        },
    }));
    let (rc, props) = p.published(1);
    assert_eq!(rc, ReasonCode::NoMatchingSubscribers);
    assert_eq!(props.reason_string, Some(s("nobody")));
    assert_eq!(props.user_properties, vec![(s("a"), s("1"))]);
}

/// [MQTT-4.3.3-1] (3.1.1; 4.3.3-1..5 in 5.0), [MQTT-3.6.1-1]: QoS 2 goes PUBLISH, PUBREC,
/// PUBREL (flags 0010), PUBCOMP; `Published` only at the end.
#[test]
fn mqtt_4_3_3_1_qos2_publish_pubrec_pubrel_pubcomp() {
    for v in [V311, V5] {
        let mut p = Peer::connected(config(v, "c"));
        p.publish(message("a/b", b"hi", QoS::ExactlyOnce)).unwrap();
        if v == V5 {
            p.expect_bytes(&hex("34 0A 00 03 'a/b' 00 01 00 'hi'"));
        } else {
            p.expect_bytes(&hex("34 09 00 03 'a/b' 00 01 'hi'"));
        }
        p.send_raw(&hex("50 02 00 01"));
        p.expect_bytes(&hex("62 02 00 01"));
        p.no_event("published", |e| matches!(e, Event::Published { .. }));
        assert_eq!(p.client.window().0, 1, "PUBREL still holds its slot");
        // A repeated PUBREC is answered with the same PUBREL, nothing else.
        p.send_raw(&hex("50 02 00 01"));
        p.expect_bytes(&hex("62 02 00 01"));
        p.send_raw(&hex("70 02 00 01"));
        assert_eq!(p.published(1).0, ReasonCode::Success);
        assert_eq!(p.client.window().0, 0);
        p.expect_silence();
    }
}

/// [MQTT-4.3.3-4], [MQTT-4.4.0-2] (5.0): a PUBREC of 0x80 or above ends the flow: no PUBREL,
/// `Published` with that code, never resent.
#[test]
fn mqtt_4_4_0_2_pubrec_error_ends_the_flow_without_pubrel() {
    let mut p = Peer::connected(v5_session_config("c"));
    p.publish(message("a", b"x", QoS::ExactlyOnce)).unwrap();
    p.expect_packet();
    p.send_raw(&hex("50 03 00 01 87"));
    assert_eq!(p.published(1).0, ReasonCode::NotAuthorized);
    p.expect_silence();
    assert_eq!(p.client.window().0, 0);
    p.close_transport();
    p.reconnect();
    p.accept(ConnAck::accepted(true));
    p.expect_silence();
}

/// [MQTT-2.2.1-5] (5.0): a PUBREC or PUBREL for an unknown id is answered with reason code
/// 0x92 (Packet Identifier not found).
#[test]
fn mqtt_2_2_1_5_unknown_pubrec_and_pubrel_get_packet_identifier_not_found() {
    let mut p = Peer::connected(config(V5, "c"));
    p.send_raw(&hex("50 02 00 63"));
    p.expect_bytes(&hex("62 03 00 63 92"));
    p.send_raw(&hex("62 02 00 64"));
    p.expect_bytes(&hex("70 03 00 64 92"));
    assert_eq!(p.client.state(), ClientState::Connected);
}

/// [MQTT-4.6.0-4] (both): PUBREL goes out in the order the PUBRECs arrived.
#[test]
fn mqtt_4_6_0_4_pubrel_in_the_order_of_pubrec() {
    let mut p = Peer::connected(config(V311, "c"));
    for _ in 0..3 {
        p.publish(message("a", b"x", QoS::ExactlyOnce)).unwrap();
    }
    assert_eq!(p.packets().len(), 3);
    p.send_raw(&hex("50 02 00 03 50 02 00 01 50 02 00 02"));
    p.expect_bytes(&hex("62 02 00 03 62 02 00 01 62 02 00 02"));
}

// ---------------------------------------------------------------------------------------------
// Packet identifiers and the window
// ---------------------------------------------------------------------------------------------

/// [MQTT-2.3.1-1], [MQTT-2.3.1-2] (3.1.1): PUBLISH, SUBSCRIBE and UNSUBSCRIBE share one
/// allocator of non-zero ids, and an id in use is never handed out again.
#[test]
fn mqtt_2_3_1_2_one_allocator_for_publish_subscribe_unsubscribe() {
    let mut p = Peer::connected(config(V311, "c"));
    let a = p
        .publish(message("a", b"x", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    let b = p
        .subscribe(
            vec![Subscription::new(filter("s"), QoS::AtLeastOnce)],
            SubscribeProperties::default(),
        )
        .unwrap();
    let c = p
        .unsubscribe(vec![filter("s")], UnsubscribeProperties::default())
        .unwrap();
    let d = p
        .publish(message("a", b"x", QoS::ExactlyOnce))
        .unwrap()
        .unwrap();
    let ids: Vec<u16> = [a, b, c, d].iter().map(|i| i.get()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    let sent = p.packets();
    assert_eq!(sent.len(), 4);
    assert!(matches!(&sent[1], Packet::Subscribe(s) if s.packet_id == b));
    assert!(matches!(&sent[2], Packet::Unsubscribe(u) if u.packet_id == c));
    // SUBACK frees 2; the allocator moves on rather than reusing it at once.
    p.send(suback(2, &[ReasonCode::GrantedQoS1]));
    p.expect_event("subscribed", |e| {
        matches!(e, Event::Subscribed { packet_id, .. } if *packet_id == b).then_some(())
    });
    let e = p
        .publish(message("a", b"x", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert_eq!(e, pid(5));
}

/// [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-2] (3.1.1): after 65535 the ids wrap to 1, skipping the
/// ids still held by unacknowledged packets.
#[test]
fn mqtt_2_2_1_3_packet_ids_wrap_past_65535_skipping_held_ones() {
    let mut p = Peer::connected(config(V311, "c"));
    let now = p.now;
    // Ids 1 and 2 stay unacknowledged throughout.
    let held_pub = p
        .publish(message("a", b"x", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    let held_sub = p
        .subscribe(
            vec![Subscription::new(filter("s"), QoS::AtMostOnce)],
            SubscribeProperties::default(),
        )
        .unwrap();
    assert_eq!((held_pub.get(), held_sub.get()), (1, 2));
    p.packets();
    let mut last = 2;
    while last < u16::MAX {
        let id = p
            .publish(message("a", b"x", QoS::AtLeastOnce))
            .unwrap()
            .unwrap();
        assert_eq!(id.get(), last + 1);
        last = id.get();
        let _ = p.client.poll_transmit();
        let [hi, lo] = last.to_be_bytes();
        p.client.handle_input(now, &[0x40, 0x02, hi, lo]);
        let _ = p.client.poll_event();
    }
    let next = p
        .publish(message("a", b"x", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert_eq!(next, pid(3), "1 and 2 are still held");
    let sub = p
        .subscribe(
            vec![Subscription::new(filter("t"), QoS::AtMostOnce)],
            SubscribeProperties::default(),
        )
        .unwrap();
    assert_eq!(sub, pid(4));
    // The held ones still complete normally.
    p.send_raw(&hex("40 02 00 01"));
    p.published(1);
    p.send(suback(2, &[ReasonCode::Success]));
    p.expect_event("subscribed 2", |e| {
        matches!(e, Event::Subscribed { packet_id, .. } if packet_id.get() == 2).then_some(())
    });
}

/// [MQTT-3.3.4-7], [MQTT-4.9.0-2], [MQTT-3.3.4-8] (5.0): at most Receive Maximum QoS 1/2
/// publishes are unacknowledged (PUBREL waiting for PUBCOMP counts); the next one is refused
/// with `WindowFull`, while QoS 0 and other packets still go out.
#[test]
fn mqtt_3_3_4_7_window_is_the_server_receive_maximum() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(2),
            ..ConnAckProperties::default()
        },
    ));
    assert_eq!(p.client.window(), (0, 2));
    p.publish(message("a", b"1", QoS::AtLeastOnce)).unwrap();
    p.publish(message("a", b"2", QoS::ExactlyOnce)).unwrap();
    assert_eq!(p.packets().len(), 2);
    assert_eq!(p.client.window(), (2, 2));
    assert_eq!(
        p.publish(message("a", b"3", QoS::AtLeastOnce)),
        Err(ClientError::WindowFull(2))
    );
    p.expect_silence();
    // QoS 0, SUBSCRIBE and UNSUBSCRIBE are not held back.
    assert_eq!(p.publish(message("a", b"0", QoS::AtMostOnce)), Ok(None));
    p.subscribe(
        vec![Subscription::new(filter("s"), QoS::AtMostOnce)],
        SubscribeProperties::default(),
    )
    .unwrap();
    assert_eq!(p.packets().len(), 2);
    // PUBREC moves id 2 to PUBREL: still in the window.
    p.send_raw(&hex("50 02 00 02"));
    p.expect_bytes(&hex("62 02 00 02"));
    assert_eq!(
        p.publish(message("a", b"3", QoS::AtLeastOnce)),
        Err(ClientError::WindowFull(2))
    );
    // PUBACK frees a slot.
    p.send_raw(&hex("40 02 00 01"));
    p.published(1);
    assert_eq!(p.client.window(), (1, 2));
    let id = p
        .publish(message("a", b"3", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert_eq!(id, pid(4));
    // PUBCOMP frees the other.
    p.send_raw(&hex("70 02 00 02"));
    p.published(2);
    assert_eq!(p.client.window(), (1, 2));
}

/// `ClientConfig::max_inflight` narrows the window below the server's Receive Maximum (and
/// under 3.1.x, where the server sets none); a larger one leaves the server's limit.
#[test]
fn max_inflight_narrows_the_window_below_the_receive_maximum() {
    let mut c = config(V311, "c");
    c.max_inflight = NonZeroU16::new(2);
    let mut p = Peer::connected(c);
    assert_eq!(p.client.window(), (0, 2));
    assert!(p.client.window_open());
    p.publish(message("a", b"1", QoS::AtLeastOnce)).unwrap();
    p.publish(message("a", b"2", QoS::AtLeastOnce)).unwrap();
    assert!(!p.client.window_open());
    assert_eq!(
        p.publish(message("a", b"3", QoS::AtLeastOnce)),
        Err(ClientError::WindowFull(2))
    );
    assert_eq!(p.packets().len(), 2);
    p.send_raw(&hex("40 02 00 01"));
    p.published(1);
    assert!(p.client.window_open());
    p.publish(message("a", b"3", QoS::AtLeastOnce)).unwrap();

    let mut c = config(V5, "c");
    c.max_inflight = NonZeroU16::new(50);
    let mut p = Peer::new(c);
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(10),
            ..ConnAckProperties::default()
        },
    ));
    assert_eq!(p.client.window(), (0, 10));
}

// ---------------------------------------------------------------------------------------------
// Server to client
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.3.4-1] (both): QoS 0 from the server is delivered and answered with nothing.
#[test]
fn mqtt_3_3_4_1_incoming_qos0_is_delivered_without_answer() {
    let mut p = Peer::connected(config(V311, "c"));
    p.send_raw(&hex("30 05 00 01 'ahi'"));
    let m = p.message();
    assert_eq!(m.publish.topic, "a");
    assert_eq!(&m.publish.payload[..], b"hi");
    assert_eq!(m.ack, None);
    p.expect_silence();
}

/// [MQTT-4.3.2-2] (3.1.1; 4.3.2-4 in 5.0): an incoming QoS 1 PUBLISH is delivered and
/// acknowledged with PUBACK carrying its id.
#[test]
fn mqtt_4_3_2_2_incoming_qos1_is_answered_with_puback() {
    for v in [V311, V5] {
        let mut p = Peer::connected(config(v, "c"));
        p.send(server_publish("a/b", b"hi", QoS::AtLeastOnce, 7));
        let m = p.message();
        assert_eq!(m.publish.packet_id, Some(pid(7)));
        p.expect_bytes(&hex("40 02 00 07"));
        // [MQTT-4.3.2-5] (5.0): after PUBACK the same id is a new message.
        p.send(server_publish("a/b", b"again", QoS::AtLeastOnce, 7));
        assert_eq!(&p.message().publish.payload[..], b"again");
        p.expect_bytes(&hex("40 02 00 07"));
    }
}

/// [MQTT-4.3.3-2] (3.1.1; 4.3.3-8 and 4.3.3-11 in 5.0): an incoming QoS 2 PUBLISH is answered
/// with PUBREC, and PUBREL with PUBCOMP.
#[test]
fn mqtt_4_3_3_2_incoming_qos2_pubrec_then_pubcomp() {
    for v in [V311, V5] {
        let mut p = Peer::connected(config(v, "c"));
        p.send(server_publish("a", b"hi", QoS::ExactlyOnce, 9));
        assert_eq!(p.message().publish.qos, QoS::ExactlyOnce);
        p.expect_bytes(&hex("50 02 00 09"));
        p.send_raw(&hex("62 02 00 09"));
        p.expect_bytes(&hex("70 02 00 09"));
        p.expect_silence();
    }
}

fn duplicate_qos2_not_delivered_twice(v: ProtocolVersion) {
    let mut p = Peer::connected(config(v, "c"));
    p.send(server_publish("a", b"once", QoS::ExactlyOnce, 9));
    p.message();
    p.expect_bytes(&hex("50 02 00 09"));
    // The PUBREC was lost: the server sends the PUBLISH again, with DUP.
    let mut dup = server_publish("a", b"once", QoS::ExactlyOnce, 9);
    dup.dup = true;
    p.send(dup.clone());
    p.no_message();
    p.expect_bytes(&hex("50 02 00 09"));
    // Even without DUP the id is still the same message until PUBREL.
    dup.dup = false;
    p.send(dup);
    p.no_message();
    p.expect_bytes(&hex("50 02 00 09"));
    p.send_raw(&hex("62 02 00 09"));
    p.expect_bytes(&hex("70 02 00 09"));
    // After PUBCOMP the id is new ([MQTT-4.3.3-12] in 5.0).
    p.send(server_publish("a", b"new", QoS::ExactlyOnce, 9));
    assert_eq!(&p.message().publish.payload[..], b"new");
    p.expect_bytes(&hex("50 02 00 09"));
}

/// [MQTT-4.3.3-2] (3.1.1): until PUBREL, a PUBLISH with the same id is answered with PUBREC
/// and not delivered again.
#[test]
fn mqtt_4_3_3_2_v311_duplicate_qos2_publish_not_delivered_twice() {
    duplicate_qos2_not_delivered_twice(V311);
}

/// [MQTT-4.3.3-10], [MQTT-4.3.3-12] (5.0): as in 3.1.1.
#[test]
fn mqtt_4_3_3_10_v5_duplicate_qos2_publish_not_delivered_twice() {
    duplicate_qos2_not_delivered_twice(V5);
}

/// [MQTT-4.6.0-2], [MQTT-4.6.0-3] (both): with manual acks, PUBACK and PUBREC go out in the
/// order the PUBLISH packets arrived, whatever order the application acknowledges them in.
#[test]
fn mqtt_4_6_0_2_manual_acks_are_released_in_receipt_order() {
    let mut c = config(V5, "c");
    c.manual_acks = true;
    let mut p = Peer::connected(c);
    p.send(server_publish("a", b"1", QoS::AtLeastOnce, 11));
    p.send(server_publish("a", b"2", QoS::ExactlyOnce, 12));
    p.send(server_publish("a", b"3", QoS::AtLeastOnce, 13));
    p.send(server_publish("a", b"q0", QoS::AtMostOnce, 0));
    let mut tokens = std::collections::HashMap::new();
    for e in p.take_events() {
        if let Event::Message(m) = e {
            match m.ack {
                Some(t) => {
                    assert_eq!(Some(t.packet_id()), m.publish.packet_id);
                    tokens.insert(t.packet_id().get(), t);
                }
                None => assert_eq!(m.publish.qos, QoS::AtMostOnce),
            }
        }
    }
    assert_eq!(tokens.len(), 3);
    p.expect_silence();
    // A redelivery of a message still held by the application is not delivered again.
    let mut dup = server_publish("a", b"1", QoS::AtLeastOnce, 11);
    dup.dup = true;
    p.send(dup);
    p.no_message();
    p.expect_silence();

    let now = p.now;
    p.client.ack(now, tokens[&13].clone()).unwrap();
    p.expect_silence();
    p.client.ack(now, tokens[&12].clone()).unwrap();
    p.expect_silence();
    assert_eq!(
        p.client.ack(now, tokens[&13].clone()),
        Err(ClientError::UnknownAckToken),
        "acked twice"
    );
    p.client.ack(now, tokens[&11].clone()).unwrap();
    p.expect_bytes(&hex("40 02 00 0B 50 02 00 0C 40 02 00 0D"));
    p.expect_silence();

    // A token of an earlier connection is refused.
    p.send(server_publish("a", b"4", QoS::AtLeastOnce, 14));
    let stale = p.message().ack.unwrap();
    p.close_transport();
    p.reconnect();
    p.accept(ConnAck::accepted(false));
    assert_eq!(
        p.client.ack(p.now, stale),
        Err(ClientError::UnknownAckToken)
    );
    p.expect_silence();
}

/// [MQTT-3.3.2-10], [MQTT-3.3.2-7] (5.0): the client accepts topic aliases up to the maximum it
/// announced, resolves them, and forgets them with the connection.
#[test]
fn mqtt_3_3_2_10_incoming_topic_aliases_are_resolved() {
    let mut c = config(V5, "c");
    c.properties.topic_alias_maximum = Some(5);
    let mut p = Peer::connected(c);
    let mut first = server_publish("x/y", b"1", QoS::AtMostOnce, 0);
    first.properties.topic_alias = NonZeroU16::new(5);
    p.send(first);
    assert_eq!(p.message().publish.topic, "x/y");
    // Empty topic + alias 5 (written by hand): 30 len 00 00 | props 03 23 00 05 | "2".
    p.send_raw(&hex("30 07 00 00 03 23 00 05 '2'"));
    let m = p.message();
    assert_eq!(m.publish.topic, "x/y");
    assert_eq!(&m.publish.payload[..], b"2");
    p.expect_silence();
    // A new connection starts without mappings: the alias is unknown now (Protocol Error).
    p.close_transport();
    p.reconnect();
    p.accept(ConnAck::accepted(false));
    p.take_events();
    p.send_raw(&hex("30 07 00 00 03 23 00 05 '3'"));
    p.no_message();
    p.expect_bytes(&hex("E0 01 82"));
    let (reason, _) = p.disconnected();
    assert_eq!(reason.reason_code, ReasonCode::ProtocolError);
    assert_eq!(
        reason.error,
        Some(ConnectionError::Violation(
            ProtocolViolation::UnknownTopicAlias
        ))
    );
}

/// [MQTT-3.1.2-29] (5.0, server side), section 3.3.2.3.4: an alias above the client's Topic
/// Alias Maximum is answered with DISCONNECT 0x94 (Topic Alias invalid).
#[test]
fn mqtt_3_1_2_29_topic_alias_above_the_clients_maximum_closes() {
    for (max, alias) in [(Some(2), 3), (None, 1)] {
        let mut c = config(V5, "c");
        c.properties.topic_alias_maximum = max;
        let mut p = Peer::connected(c);
        let mut m = server_publish("x", b"1", QoS::AtMostOnce, 0);
        m.properties.topic_alias = NonZeroU16::new(alias);
        p.send(m);
        p.no_message();
        p.expect_bytes(&hex("E0 01 94"));
        let (reason, _) = p.disconnected();
        assert_eq!(reason.reason_code, ReasonCode::TopicAliasInvalid);
        assert_eq!(
            reason.error,
            Some(ConnectionError::Violation(
                ProtocolViolation::TopicAliasAboveMaximum
            ))
        );
        assert_eq!(reason.initiator, Initiator::Local);
    }
}

/// [MQTT-3.3.2-9], [MQTT-3.2.2-17], [MQTT-3.3.2-8] (5.0): outgoing aliases are assigned from 1
/// up to the server's Topic Alias Maximum, then the topic is replaced by the alias alone; a new
/// connection starts over ([MQTT-3.3.2-7]).
#[test]
fn mqtt_3_3_2_9_outgoing_topic_aliases_within_the_servers_maximum() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            topic_alias_maximum: Some(2),
            ..ConnAckProperties::default()
        },
    ));
    let send = |p: &mut Peer, t: &'static str| {
        p.publish(message(t, b"v", QoS::AtMostOnce)).unwrap();
    };
    send(&mut p, "t/1");
    // 30 len 00 03 "t/1" | props 03 23 00 01 | "v"
    p.expect_bytes(&hex("30 0A 00 03 't/1' 03 23 00 01 'v'"));
    send(&mut p, "t/1");
    p.expect_bytes(&hex("30 07 00 00 03 23 00 01 'v'"));
    send(&mut p, "t/2");
    p.expect_bytes(&hex("30 0A 00 03 't/2' 03 23 00 02 'v'"));
    // The maximum is reached: no alias for a third topic.
    send(&mut p, "t/3");
    p.expect_bytes(&hex("30 07 00 03 't/3' 00 'v'"));
    send(&mut p, "t/2");
    p.expect_bytes(&hex("30 07 00 00 03 23 00 02 'v'"));
    // A caller's own alias is ignored.
    let mut m = message("t/3", b"v", QoS::AtMostOnce);
    m.properties.topic_alias = NonZeroU16::new(9);
    p.publish(m).unwrap();
    p.expect_bytes(&hex("30 07 00 03 't/3' 00 'v'"));

    p.close_transport();
    p.reconnect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            topic_alias_maximum: Some(2),
            ..ConnAckProperties::default()
        },
    ));
    p.publish(message("t/2", b"v", QoS::AtMostOnce)).unwrap();
    p.expect_bytes(&hex("30 0A 00 03 't/2' 03 23 00 01 'v'"));
}

/// [MQTT-3.3.2-7], [MQTT-3.2.2-15] (5.0): a QoS 1/2 publish that fits only thanks to its
/// topic alias is refused, since its resend on a new connection must carry the whole topic (it
/// would otherwise close every resumed connection with "packet too large").
#[test]
fn mqtt_3_3_2_7_aliased_publish_must_fit_without_its_alias() {
    let mut p = Peer::new(v5_session_config("c"));
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            topic_alias_maximum: Some(1),
            maximum_packet_size: NonZeroU32::new(40),
            ..ConnAckProperties::default()
        },
    ));
    let long = "sensors/kitchen/temperature";
    p.publish(message(long, b"", QoS::AtMostOnce)).unwrap();
    p.expect_packet();
    // 2 + 2 + 27 (topic) + 2 (id) + 1 (properties) + 8 = 42 > 40; by alias alone it is 19.
    assert!(matches!(
        p.publish(message(long, b"12345678", QoS::AtLeastOnce)),
        Err(ClientError::PacketTooLarge { max: 40, .. })
    ));
    p.expect_silence();
    // QoS 0 is never resent: the alias alone may make it fit.
    assert_eq!(
        p.publish(message(long, b"12345678", QoS::AtMostOnce)),
        Ok(None)
    );
    p.expect_bytes(&hex("30 0E 00 00 03 23 00 01 '12345678'"));
    // A QoS 1 publish that fits either way goes out by alias and is resent in full.
    let id = p
        .publish(message(long, b"1", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    p.expect_bytes(&hex("32 09 00 00 00 01 03 23 00 01 '1'"));
    p.close_transport();
    p.disconnected();
    p.reconnect();
    p.accept(connack_with(
        true,
        ConnAckProperties {
            maximum_packet_size: NonZeroU32::new(40),
            ..ConnAckProperties::default()
        },
    ));
    let Packet::Publish(resent) = p.expect_packet() else {
        panic!("expected the resend")
    };
    assert_eq!((resent.packet_id, resent.dup), (Some(id), true));
    assert_eq!(resent.topic, long);
    p.no_event("disconnected", |e| matches!(e, Event::Disconnected { .. }));
}

/// [MQTT-3.2.2-18] (5.0): without a Topic Alias Maximum from the server, no alias is sent; a
/// QoS 1 publish resent after reconnect carries its full topic.
#[test]
fn mqtt_3_2_2_18_no_aliases_without_the_servers_maximum() {
    let mut p = Peer::connected(config(V5, "c"));
    for _ in 0..2 {
        p.publish(message("t/1", b"v", QoS::AtMostOnce)).unwrap();
        p.expect_bytes(&hex("30 07 00 03 't/1' 00 'v'"));
    }
    let mut c = v5_session_config("c");
    c.topic_aliases = true;
    let mut p = Peer::new(c);
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            topic_alias_maximum: Some(4),
            ..ConnAckProperties::default()
        },
    ));
    p.publish(message("t/1", b"v", QoS::AtMostOnce)).unwrap();
    p.publish(message("t/1", b"v", QoS::AtLeastOnce)).unwrap();
    let sent = p.packets();
    let Packet::Publish(aliased) = &sent[1] else {
        unreachable!()
    };
    assert!(aliased.topic.is_empty(), "the second uses the alias alone");
    p.close_transport();
    p.reconnect();
    p.accept(ConnAck::accepted(true));
    let Packet::Publish(resent) = p.expect_packet() else {
        panic!("expected the resend")
    };
    assert!(resent.dup);
    assert_eq!(resent.topic, "t/1");
    assert_eq!(resent.properties.topic_alias, None);
}

/// [MQTT-3.3.2-15], [MQTT-3.3.2-16], [MQTT-3.3.2-17], [MQTT-3.3.2-18], [MQTT-3.3.4-3]
/// (5.0, the server's duties that the client must not undo): subscription identifiers, user
/// properties (order and repeats), message expiry, response topic, correlation data, content
/// type and payload format reach the application intact, and go out intact.
#[test]
fn mqtt_3_3_2_16_properties_pass_through_intact() {
    let mut c = config(V5, "c");
    c.properties.topic_alias_maximum = Some(3);
    let mut p = Peer::connected(c);
    let props = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(30),
        topic_alias: None,
        response_topic: Some(topic("reply/here")),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xFF])),
        user_properties: vec![(s("b"), s("2")), (s("a"), s("1")), (s("b"), s("3"))].into(),
        subscription_identifiers: vec![
            NonZeroU32::new(7).unwrap(),
            NonZeroU32::new(268_435_455).unwrap(),
        ],
        content_type: Some(s("text/plain")),
    };
    let mut incoming = server_publish("in/x", b"payload", QoS::AtLeastOnce, 3);
    incoming.properties = props.clone();
    incoming.retain = true;
    p.send(incoming.clone());
    let m = p.message();
    assert_eq!(m.publish, incoming);
    p.expect_bytes(&hex("40 02 00 03"));

    // Through an alias too: the delivered message carries the topic and keeps the alias.
    let mut aliased = incoming.clone();
    aliased.properties.topic_alias = NonZeroU16::new(2);
    aliased.packet_id = Some(pid(4));
    p.send(aliased.clone());
    let mut by_alias = aliased.clone();
    by_alias.topic = tinymqtt::TopicName::empty();
    by_alias.packet_id = Some(pid(5));
    p.send(by_alias);
    p.message();
    let m = p.message();
    assert_eq!(m.publish.topic, "in/x");
    assert_eq!(m.publish.properties, aliased.properties);
    assert_eq!(m.publish.payload, aliased.payload);

    // Outgoing: everything but the subscription identifiers, which a client must not send
    // ([MQTT-3.3.4-6]).
    let mut out = message("out/x", b"payload", QoS::AtLeastOnce);
    out.properties = props.clone();
    p.packets();
    p.publish(out).unwrap();
    let Packet::Publish(sent) = p.expect_packet() else {
        unreachable!()
    };
    let expected = PublishProperties {
        subscription_identifiers: Vec::new(),
        ..props
    };
    assert_eq!(sent.properties, expected);
    assert_eq!(&sent.payload[..], b"payload");
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE and UNSUBSCRIBE
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.8.1-1], [MQTT-3.10.1-1], [MQTT-3.8.4-5] (3.1.1): SUBSCRIBE and UNSUBSCRIBE have
/// flags 0010; SUBACK and UNSUBACK complete them.
#[test]
fn mqtt_3_8_1_1_v311_subscribe_and_unsubscribe_exact_bytes() {
    let mut p = Peer::connected(config(V311, "c"));
    let id = p
        .subscribe(
            vec![
                Subscription::new(filter("a/#"), QoS::AtLeastOnce),
                Subscription::new(filter("+/b"), QoS::ExactlyOnce),
            ],
            SubscribeProperties::default(),
        )
        .unwrap();
    #[rustfmt::skip]
    p.expect_bytes(&hex("82 0E 00 01 00 03 'a/#' 01 00 03 '+/b' 02"));
    p.send_raw(&hex("90 04 00 01 01 80"));
    let codes = p.expect_event("subscribed", |e| match e {
        Event::Subscribed {
            packet_id,
            reason_codes,
            ..
        } if *packet_id == id => Some(reason_codes.clone()),
        _ => None,
    });
    assert_eq!(
        codes,
        vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError]
    );
    let subs = p.client.session().subscriptions;
    assert_eq!(
        subs.len(),
        1,
        "the refused filter is not part of the session"
    );
    assert_eq!(subs[0].0.filter, "a/#");

    let id = p
        .unsubscribe(vec![filter("a/#")], UnsubscribeProperties::default())
        .unwrap();
    p.expect_bytes(&hex("A2 07 00 02 00 03 'a/#'"));
    p.send_raw(&hex("B0 02 00 02"));
    p.expect_event("unsubscribed", |e| {
        matches!(e, Event::Unsubscribed { packet_id, .. } if *packet_id == id).then_some(())
    });
    assert!(p.client.session().subscriptions.is_empty());
}

/// [MQTT-3.8.1-1], [MQTT-3.8.3-3], [MQTT-3.9.3-1] (5.0): SUBSCRIBE with a subscription
/// identifier and every option; the SUBACK's reason codes arrive in filter order.
#[test]
fn mqtt_3_8_1_1_v5_subscribe_with_identifier_and_options_exact_bytes() {
    let mut p = Peer::connected(config(V5, "c"));
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    p.subscribe(
        vec![Subscription {
            filter: filter("a/#"),
            options,
        }],
        SubscribeProperties {
            subscription_identifier: NonZeroU32::new(5),
            user_properties: Vec::new(),
        },
    )
    .unwrap();
    #[rustfmt::skip]
    p.expect_bytes(&[
        0x82, 0x0B, 0x00, 0x01,
        0x02, 0x0B, 0x05, // subscription identifier 5
        0x00, 0x03, b'a', b'/', b'#',
        0x2E, // retain handling 2, retain as published, no local, qos 2
    ]);
    p.send_raw(&hex("90 04 00 01 00 01"));
    let codes = p.expect_event("subscribed", |e| match e {
        Event::Subscribed { reason_codes, .. } => Some(reason_codes.clone()),
        _ => None,
    });
    assert_eq!(codes, vec![ReasonCode::GrantedQoS1]);
    let subs = p.client.session().subscriptions;
    assert_eq!(
        subs[0].0.options.qos,
        QoS::AtLeastOnce,
        "the granted QoS is kept"
    );
    assert_eq!(subs[0].1, NonZeroU32::new(5));

    // UNSUBACK in 5.0 has one reason code per filter.
    p.unsubscribe(
        vec![filter("a/#"), filter("zz")],
        UnsubscribeProperties::default(),
    )
    .unwrap();
    p.expect_bytes(&hex("A2 0C 00 02 00 00 03 'a/#' 00 02 'zz'"));
    p.send(unsuback(
        2,
        &[ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
    ));
    let codes = p.expect_event("unsubscribed", |e| match e {
        Event::Unsubscribed { reason_codes, .. } => Some(reason_codes.clone()),
        _ => None,
    });
    assert_eq!(
        codes,
        vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
}

/// [MQTT-3.8.4-6] (5.0), [MQTT-3.8.4-5] (3.1.1): a SUBACK without one code per filter is a
/// protocol error.
#[test]
fn mqtt_3_8_4_6_suback_with_the_wrong_number_of_codes_closes() {
    let mut p = Peer::connected(config(V5, "c"));
    p.subscribe(
        vec![
            Subscription::new(filter("a"), QoS::AtMostOnce),
            Subscription::new(filter("b"), QoS::AtMostOnce),
        ],
        SubscribeProperties::default(),
    )
    .unwrap();
    p.packets();
    p.send(suback(1, &[ReasonCode::Success]));
    p.expect_bytes(&hex("E0 01 82"));
    p.no_event("subscribed", |e| matches!(e, Event::Subscribed { .. }));
    p.disconnected();
}

/// The server's limits on subscriptions (5.0, section 3.2.2.3): wildcard, shared and
/// identifier subscriptions it does not support are refused before anything is sent.
#[test]
fn mqtt_3_2_2_subscription_features_the_server_lacks_are_refused() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.accept(connack_with(
        false,
        ConnAckProperties {
            wildcard_subscription_available: Some(false),
            subscription_identifiers_available: Some(false),
            shared_subscription_available: Some(false),
            ..ConnAckProperties::default()
        },
    ));
    let sub = |f: &'static str| vec![Subscription::new(filter(f), QoS::AtMostOnce)];
    assert!(matches!(
        p.subscribe(sub("a/+"), SubscribeProperties::default()),
        Err(ClientError::FeatureNotSupported(
            ServerFeature::WildcardSubscriptions
        ))
    ));
    assert!(matches!(
        p.subscribe(sub("$share/g/a"), SubscribeProperties::default()),
        Err(ClientError::FeatureNotSupported(
            ServerFeature::SharedSubscriptions
        ))
    ));
    assert!(matches!(
        p.subscribe(
            sub("a"),
            SubscribeProperties {
                subscription_identifier: NonZeroU32::new(1),
                user_properties: Vec::new()
            }
        ),
        Err(ClientError::FeatureNotSupported(
            ServerFeature::SubscriptionIdentifiers
        ))
    ));
    p.expect_silence();
    assert_eq!(
        p.subscribe(sub("a"), SubscribeProperties::default()),
        Ok(pid(1))
    );
}

// ---------------------------------------------------------------------------------------------
// Reconnect and session
// ---------------------------------------------------------------------------------------------

/// Publishes Q1, Q2 (PUBREC'd), Q1, Q2 and returns the peer with the transport closed.
fn session_with_flows(c: tinymqtt::client::ClientConfig) -> Peer {
    let mut p = Peer::connected(c);
    for (payload, qos) in [
        (&b"1"[..], QoS::AtLeastOnce),
        (&b"2"[..], QoS::ExactlyOnce),
        (&b"3"[..], QoS::AtLeastOnce),
        (&b"4"[..], QoS::ExactlyOnce),
    ] {
        let mut m = Publish::new(topic("a"), Bytes::copy_from_slice(payload));
        m.qos = qos;
        p.publish(m).unwrap();
    }
    assert_eq!(p.packets().len(), 4);
    p.send_raw(&hex("50 02 00 02"));
    p.expect_bytes(&hex("62 02 00 02"));
    p.close_transport();
    let (reason, _) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Transport);
    assert_eq!(reason.error, Some(ConnectionError::TransportClosed));
    p
}

fn resend_unacked_in_order_with_dup(c: tinymqtt::client::ClientConfig) {
    let mut p = session_with_flows(c);
    let Packet::Connect(connect) = p.reconnect() else {
        unreachable!()
    };
    assert!(
        !connect.clean_start,
        "the reconnect asks to resume the session"
    );
    p.accept(ConnAck::accepted(true));
    // Original order, original ids, DUP set; the PUBREL keeps the place of its PUBLISH.
    let v5 = p.v.is_v5();
    let prop = if v5 { &hex("00")[..] } else { &[][..] };
    let len = 6 + prop.len() as u8;
    let mut expected = Vec::new();
    expected.extend_from_slice(&[0x3A, len, 0x00, 0x01, b'a', 0x00, 0x01]);
    expected.extend_from_slice(prop);
    expected.push(b'1');
    expected.extend_from_slice(&hex("62 02 00 02"));
    expected.extend_from_slice(&[0x3A, len, 0x00, 0x01, b'a', 0x00, 0x03]);
    expected.extend_from_slice(prop);
    expected.push(b'3');
    expected.extend_from_slice(&[0x3C, len, 0x00, 0x01, b'a', 0x00, 0x04]);
    expected.extend_from_slice(prop);
    expected.push(b'4');
    p.expect_bytes(&expected);
    p.expect_silence();
    let (present, lost) = p.expect_event("reconnected", |e| match e {
        Event::Reconnected {
            session_present,
            lost,
            ..
        } => Some((*session_present, lost.clone())),
        _ => None,
    });
    assert!(present);
    assert!(lost.is_empty());
    // The flows complete on the new connection.
    p.send_raw(&hex("40 02 00 01 70 02 00 02 40 02 00 03"));
    p.send_raw(&hex("50 02 00 04"));
    p.expect_bytes(&hex("62 02 00 04"));
    p.send_raw(&hex("70 02 00 04"));
    for id in 1..=4 {
        assert_eq!(p.published(id).0, ReasonCode::Success);
    }
    assert_eq!(p.client.window().0, 0);
}

/// [MQTT-4.4.0-1], [MQTT-4.6.0-1], [MQTT-3.3.1-1], [MQTT-2.3.1-3] (3.1.1): with Session Present
/// the client resends unacknowledged PUBLISH (DUP, 0x3A / 0x3C) and PUBREL in the original
/// order with the original ids.
#[test]
fn mqtt_4_4_0_1_v311_resend_unacked_in_order_with_dup() {
    let mut c = config(V311, "c");
    c.clean_start = false;
    resend_unacked_in_order_with_dup(c);
}

/// [MQTT-4.4.0-1], [MQTT-4.6.0-1], [MQTT-3.3.1-1], [MQTT-3.3.1-3] (5.0): as in 3.1.1, when the
/// session expiry interval keeps the session.
#[test]
fn mqtt_4_4_0_1_v5_resend_unacked_in_order_with_dup() {
    resend_unacked_in_order_with_dup(v5_session_config("c"));
}

/// [MQTT-4.4.0-1], [MQTT-3.3.4-7], [MQTT-4.9.0-1] (5.0): the resends of a resumed session
/// respect the new connection's Receive Maximum: the rest follow, in order, as acknowledgements
/// free the quota, and new publishes wait behind them.
#[test]
fn mqtt_3_3_4_7_resends_stay_within_the_new_receive_maximum() {
    let mut p = Peer::connected(v5_session_config("c"));
    for _ in 0..3 {
        p.publish(message("a", b"x", QoS::AtLeastOnce)).unwrap();
    }
    p.publish(message("a", b"y", QoS::ExactlyOnce)).unwrap();
    assert_eq!(p.packets().len(), 4);
    p.send_raw(&hex("50 02 00 04"));
    p.expect_bytes(&hex("62 02 00 04"));
    p.close_transport();
    p.reconnect();
    p.accept(connack_with(
        true,
        ConnAckProperties {
            receive_maximum: NonZeroU16::new(2),
            ..ConnAckProperties::default()
        },
    ));
    p.expect_bytes(&hex(
        "3A 07 00 01 'a' 00 01 00 'x' 3A 07 00 01 'a' 00 02 00 'x'",
    ));
    p.expect_silence();
    assert_eq!(p.client.window(), (2, 2));
    assert_eq!(
        p.publish(message("a", b"z", QoS::AtLeastOnce)),
        Err(ClientError::WindowFull(2))
    );
    // PUBACK 1 frees a slot: PUBLISH 3, then the PUBREL behind it.
    p.send_raw(&hex("40 02 00 01"));
    p.published(1);
    p.expect_bytes(&hex("3A 07 00 01 'a' 00 03 00 'x' 62 02 00 04"));
    p.expect_silence();
    p.send_raw(&hex("40 02 00 02 40 02 00 03 70 02 00 04"));
    for id in 2..=4 {
        p.published(id);
    }
    assert_eq!(p.client.window(), (0, 2));
    assert_eq!(
        p.publish(message("a", b"z", QoS::AtLeastOnce)),
        Ok(Some(pid(5)))
    );
}

/// [MQTT-3.2.2-5] (5.0), [MQTT-3.1.2-6] (3.1.1): when the server has no session the client
/// discards its own, reports what is lost, and re-subscribes its acknowledged subscriptions.
#[test]
fn mqtt_3_2_2_5_no_session_present_discards_reports_lost_and_resubscribes() {
    let mut p = Peer::connected(v5_session_config("c"));
    p.subscribe(
        vec![Subscription::new(filter("a/#"), QoS::AtLeastOnce)],
        SubscribeProperties {
            subscription_identifier: NonZeroU32::new(3),
            user_properties: Vec::new(),
        },
    )
    .unwrap();
    p.send(suback(1, &[ReasonCode::GrantedQoS1]));
    p.subscribe(
        vec![Subscription::new(filter("b"), QoS::AtMostOnce)],
        SubscribeProperties::default(),
    )
    .unwrap();
    p.unsubscribe(vec![filter("zz")], UnsubscribeProperties::default())
        .unwrap();
    let q1 = p
        .publish(message("p", b"1", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    let q2 = p
        .publish(message("p", b"2", QoS::ExactlyOnce))
        .unwrap()
        .unwrap();
    p.packets();
    p.send_raw(&[0x50, 0x02, 0x00, q2.get() as u8]);
    p.packets();
    // An incoming QoS 2 in the middle of its handshake.
    p.send(server_publish("in", b"x", QoS::ExactlyOnce, 77));
    p.message();
    p.packets();
    p.close_transport();
    p.take_events();
    p.reconnect();
    p.accept(ConnAck::accepted(false));
    // Only the re-subscription goes out, with its subscription identifier (id 6: 1-5 were used).
    #[rustfmt::skip]
    p.expect_bytes(&hex("82 0B 00 06 02 0B 03 00 03 'a/#' 01"));
    p.expect_silence();
    let (present, lost) = p.expect_event("reconnected", |e| match e {
        Event::Reconnected {
            session_present,
            lost,
            ..
        } => Some((*session_present, lost.clone())),
        _ => None,
    });
    assert!(!present);
    assert_eq!(lost.publishes.len(), 1);
    assert_eq!(lost.publishes[0].packet_id, Some(q1));
    assert_eq!(&lost.publishes[0].payload[..], b"1");
    assert_eq!(lost.released, vec![q2]);
    assert_eq!(lost.subscribes, vec![pid(2)]);
    assert_eq!(lost.unsubscribes, vec![pid(3)]);
    assert_eq!(p.client.window().0, 0);
    // The incoming QoS 2 state went with the session: the same id is a new message.
    p.send(server_publish("in", b"y", QoS::ExactlyOnce, 77));
    assert_eq!(&p.message().publish.payload[..], b"y");
}

/// [MQTT-4.1.0-1] (5.0), [MQTT-3.1.2-4] (3.1.1): the session state exported from one client
/// and restored into another resumes the outbox and the incoming QoS 2 handshakes.
#[test]
fn mqtt_3_1_2_4_session_export_and_restore_resumes_the_outbox() {
    let c = v5_session_config("dev-1");
    let mut p = Peer::connected(c.clone());
    p.subscribe(
        vec![Subscription::new(filter("cmd/#"), QoS::ExactlyOnce)],
        SubscribeProperties::default(),
    )
    .unwrap();
    p.send(suback(1, &[ReasonCode::GrantedQoS2]));
    p.publish(message("a", b"1", QoS::AtLeastOnce)).unwrap();
    p.publish(message("a", b"2", QoS::ExactlyOnce)).unwrap();
    p.packets();
    p.send_raw(&hex("50 02 00 03"));
    p.send(server_publish("cmd/x", b"go", QoS::ExactlyOnce, 40));
    p.message();
    assert_eq!(p.packets().len(), 2, "PUBREL 3 and PUBREC 40");

    let state = p.client.session();
    assert_eq!(state.client_id, "dev-1");
    assert_eq!(state.outgoing.len(), 2);
    assert!(matches!(&state.outgoing[0], Outgoing::Publish(m) if m.packet_id == Some(pid(2))));
    assert_eq!(state.outgoing[1], Outgoing::PubRel(pid(3)));
    assert_eq!(state.incoming_qos2, vec![pid(40)]);
    assert_eq!(state.subscriptions.len(), 1);

    // The process restarts.
    let restored = ClientSession::with_session(c, state.clone());
    assert_eq!(restored.session(), state);
    assert_eq!(
        restored.window().0,
        0,
        "nothing is on the wire before a connection"
    );
    let mut p = Peer::with_client(restored);
    let Packet::Connect(connect) = p.connect() else {
        unreachable!()
    };
    assert!(!connect.clean_start);
    assert_eq!(connect.client_id, "dev-1");
    p.accept(ConnAck::accepted(true));
    #[rustfmt::skip]
    p.expect_bytes(&hex("3A 07 00 01 'a' 00 02 00 '1' 62 02 00 03"));
    p.expect_silence();
    // The incoming handshake continues: no second delivery, PUBCOMP on PUBREL.
    let mut dup = server_publish("cmd/x", b"go", QoS::ExactlyOnce, 40);
    dup.dup = true;
    p.send(dup);
    p.no_message();
    p.expect_bytes(&hex("50 02 00 28"));
    p.send_raw(&hex("62 02 00 28"));
    p.expect_bytes(&hex("70 02 00 28"));
    p.send_raw(&hex("40 02 00 02 70 02 00 03"));
    p.published(2);
    p.published(3);
    // New ids do not collide with restored ones.
    let id = p
        .publish(message("a", b"x", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert!(id.get() > 3);
}

/// [MQTT-3.2.2-5] (5.0): a restored session the server no longer has is discarded, and what
/// it held is reported lost rather than dropped silently.
#[test]
fn mqtt_3_2_2_5_restored_session_without_server_session_reports_lost() {
    let c = v5_session_config("dev-2");
    let mut p = Peer::connected(c.clone());
    p.publish(message("a", b"1", QoS::AtLeastOnce)).unwrap();
    let state = p.client.session();
    let mut p = Peer::with_client(ClientSession::with_session(c, state));
    p.connect();
    p.accept(ConnAck::accepted(false));
    p.expect_silence();
    let lost = p.expect_event("reconnected with lost", |e| match e {
        Event::Reconnected { lost, .. } => Some(lost.clone()),
        _ => None,
    });
    assert_eq!(lost.publishes.len(), 1);
    assert_eq!(p.client.window().0, 0);
}

// ---------------------------------------------------------------------------------------------
// DISCONNECT, AUTH and peer faults
// ---------------------------------------------------------------------------------------------

/// [MQTT-3.14.4-1] (3.1.1): DISCONNECT is E0 00 and the last packet; nothing follows, no
/// reconnect is planned, later inputs are no-ops.
#[test]
fn mqtt_3_14_4_1_v311_disconnect_is_the_last_packet() {
    let mut p = Peer::connected(config(V311, "c"));
    let now = p.now;
    assert!(p
        .client
        .disconnect(now, Disconnect::new(ReasonCode::ProtocolError))
        .is_err());
    p.expect_silence();
    p.client.disconnect(now, Disconnect::default()).unwrap();
    p.expect_bytes(&hex("E0 00"));
    let (reason, _) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Local);
    assert!(reason.is_clean());
    assert_eq!(p.client.state(), ClientState::Idle);
    assert_eq!(p.deadline(), None);
    p.send(server_publish("a", b"x", QoS::AtLeastOnce, 1));
    p.run_for(secs(1_000));
    p.close_transport();
    p.expect_silence();
    assert!(p.take_events().is_empty());
    assert_eq!(
        p.publish(message("a", b"x", QoS::AtMostOnce)),
        Err(ClientError::NotConnected)
    );
}

/// [MQTT-3.14.2-1], [MQTT-3.14.4-1] (5.0): DISCONNECT with a reason code and properties.
#[test]
fn mqtt_3_14_2_1_v5_disconnect_with_reason_code_and_properties() {
    let mut p = Peer::connected(v5_session_config("c"));
    let props = DisconnectProperties {
        session_expiry_interval: Some(0),
        reason_string: Some(s("bye")),
        user_properties: vec![(s("k"), s("v"))],
        server_reference: None,
    };
    p.client
        .disconnect(
            p.now,
            Disconnect {
                reason_code: ReasonCode::DisconnectWithWillMessage,
                properties: props.clone(),
            },
        )
        .unwrap();
    #[rustfmt::skip]
    p.expect_bytes(&hex("E0 14 04 12 11 00 00 00 00 1F 00 03 'bye' 26 00 01 'k' 00 01 'v'"));
    p.expect_silence();
    let (reason, sent) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Local);
    assert_eq!(reason.reason_code, ReasonCode::DisconnectWithWillMessage);
    assert_eq!(reason.error, None);
    assert_eq!(sent, props);
    assert_eq!(p.deadline(), None);
    p.send_raw(&hex("E0 01 8B"));
    assert!(p.take_events().is_empty());
}

/// [MQTT-3.14.4-1] (5.0, the server as sender): a server DISCONNECT is reported once with its
/// reason code and properties, answered with nothing, and followed by a reconnect.
#[test]
fn mqtt_3_14_4_1_server_disconnect_is_reported_with_its_reason() {
    let mut p = Peer::connected(config(V5, "c"));
    let props = DisconnectProperties {
        reason_string: Some(s("maintenance")),
        server_reference: Some(s("other:1883")),
        ..DisconnectProperties::default()
    };
    let mut bytes = wire(
        &Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::ServerShuttingDown,
            properties: props.clone(),
        }),
        V5,
    )
    .to_vec();
    // A packet after DISCONNECT is never read.
    bytes.extend_from_slice(&hex("30 04 00 01 'ax'"));
    p.send_raw(&bytes);
    p.expect_silence();
    p.no_message();
    let (reason, got) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Remote);
    assert_eq!(reason.reason_code, ReasonCode::ServerShuttingDown);
    assert_eq!(
        reason.error,
        Some(ConnectionError::Disconnected(
            ReasonCode::ServerShuttingDown
        ))
    );
    assert_eq!(got, props);
    p.close_transport();
    p.no_event("second disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    });
    assert_eq!(p.client.state(), ClientState::Reconnecting);
    p.reconnect();
}

/// Checks a peer fault: the DISCONNECT the client sends (if any), one `Disconnected` with the
/// exact error, and that later input is a no-op.
fn fault(p: &mut Peer, bytes: &[u8], wire_reply: &[u8], code: ReasonCode, error: ConnectionError) {
    p.send_raw(bytes);
    p.expect_bytes(wire_reply);
    p.expect_silence();
    let (reason, _) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Local, "{bytes:02X?}");
    assert_eq!(reason.reason_code, code, "{bytes:02X?}");
    assert_eq!(reason.error, Some(error), "{bytes:02X?}");
    p.no_event("second disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    });
    p.send(server_publish("a", b"x", QoS::AtLeastOnce, 1));
    p.send_raw(&hex("FF FF"));
    p.close_transport();
    p.expect_silence();
    assert!(p
        .take_events()
        .iter()
        .all(|e| !matches!(e, Event::Disconnected { .. } | Event::Message(_))));
}

fn violation(v: ProtocolViolation) -> ConnectionError {
    ConnectionError::Violation(v)
}

fn decode(e: DecodeError) -> ConnectionError {
    ConnectionError::Decode(e)
}

/// [MQTT-4.13.2-1] (5.0): every fault of the server closes the connection with the right
/// reason code on the wire, reported once; later inputs are no-ops.
#[test]
fn mqtt_4_13_2_1_v5_peer_faults_close_with_the_right_reason_code() {
    let mut c = config(V5, "c");
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    c.properties.receive_maximum = NonZeroU16::new(1);
    let fresh = || Peer::connected(c.clone());

    // Malformed: a PUBLISH with both QoS bits set ([MQTT-3.3.1-4]).
    fault(
        &mut fresh(),
        &hex("36 06 00 01 'a' 00 01 00"),
        &hex("E0 01 81"),
        ReasonCode::MalformedPacket,
        decode(DecodeError::InvalidQoS {
            field: "publish qos",
        }),
    );
    // Malformed: PUBREL with flags 0000 ([MQTT-3.6.1-1]).
    fault(
        &mut fresh(),
        &hex("60 02 00 01"),
        &hex("E0 01 81"),
        ReasonCode::MalformedPacket,
        decode(DecodeError::InvalidFlags {
            packet: PacketType::PubRel,
            flags: 0,
        }),
    );
    // Protocol error: a second CONNACK ([MQTT-3.2.0-2]).
    fault(
        &mut fresh(),
        &hex("20 03 00 00 00"),
        &hex("E0 01 82"),
        ReasonCode::ProtocolError,
        violation(ProtocolViolation::SecondConnAck),
    );
    // Protocol error: PUBACK for nothing in flight ([MQTT-2.2.1-5]).
    fault(
        &mut fresh(),
        &hex("40 02 00 05"),
        &hex("E0 01 82"),
        ReasonCode::ProtocolError,
        violation(ProtocolViolation::UnexpectedPubAck),
    );
    // Protocol error: a packet only clients send.
    fault(
        &mut fresh(),
        &hex("C0 00"),
        &hex("E0 01 82"),
        ReasonCode::ProtocolError,
        violation(ProtocolViolation::ClientOnlyPacket),
    );
    // Packet too large for the client's Maximum Packet Size ([MQTT-3.1.2-27]): refused from the
    // header alone.
    fault(
        &mut fresh(),
        &hex("30 7F"),
        &hex("E0 01 95"),
        ReasonCode::PacketTooLarge,
        decode(DecodeError::PacketTooLarge { size: 129, max: 64 }),
    );
    // Receive Maximum exceeded ([MQTT-3.3.4-9]): a second QoS 2 before PUBREL of the first.
    let mut p = fresh();
    p.send(server_publish("a", b"1", QoS::ExactlyOnce, 1));
    p.message();
    p.expect_bytes(&hex("50 02 00 01"));
    let second = wire(
        &Packet::Publish(server_publish("a", b"2", QoS::ExactlyOnce, 2)),
        V5,
    );
    fault(
        &mut p,
        &second,
        &hex("E0 01 93"),
        ReasonCode::ReceiveMaximumExceeded,
        violation(ProtocolViolation::ReceiveMaximumExceeded),
    );
    // Invalid topic name: a wildcard in a PUBLISH ([MQTT-3.3.2-2]).
    fault(
        &mut fresh(),
        &hex("30 04 00 01 '#' 00"),
        &hex("E0 01 90"),
        ReasonCode::TopicNameInvalid,
        decode(DecodeError::InvalidTopicName(TopicError::WildcardInName)),
    );
}

/// [MQTT-3.8.4-2], [MQTT-3.8.4-6], [MQTT-3.10.4-4], [MQTT-3.11.3-1] (5.0), section 4.3: an
/// acknowledgement for nothing in flight, or whose reason codes do not match the request's
/// filters one for one, closes the connection with Protocol Error, naming the rule broken.
#[test]
fn mqtt_3_8_4_6_acknowledgements_that_match_no_request_are_protocol_errors() {
    let c = config(V5, "c");
    let fresh = || Peer::connected(c.clone());
    let two = || {
        vec![
            Subscription::new(filter("a"), QoS::AtLeastOnce),
            Subscription::new(filter("b"), QoS::AtLeastOnce),
        ]
    };
    let rule = |v: ProtocolViolation| (ReasonCode::ProtocolError, violation(v));
    let cases: [(&str, (ReasonCode, ConnectionError)); 3] = [
        // SUBACK, UNSUBACK, PUBCOMP for packet identifier 7, never used.
        (
            "90 04 00 07 00 00",
            rule(ProtocolViolation::UnexpectedSubAck),
        ),
        (
            "B0 04 00 07 00 00",
            rule(ProtocolViolation::UnexpectedUnsubAck),
        ),
        ("70 02 00 07", rule(ProtocolViolation::UnexpectedPubComp)),
    ];
    for (bytes, (code, error)) in cases {
        fault(&mut fresh(), &hex(bytes), &hex("E0 01 82"), code, error);
    }
    // One reason code for a SUBSCRIBE of two filters.
    let mut p = fresh();
    let id = p.subscribe(two(), SubscribeProperties::default()).unwrap();
    assert_eq!(id.get(), 1);
    p.packets();
    let (code, error) = rule(ProtocolViolation::SubAckCountMismatch);
    fault(
        &mut p,
        &hex("90 04 00 01 00 01"),
        &hex("E0 01 82"),
        code,
        error,
    );
    // Three reason codes for an UNSUBSCRIBE of two filters.
    let mut p = fresh();
    let filters = vec![filter("a"), filter("b")];
    let id = p.unsubscribe(filters, Default::default()).unwrap();
    assert_eq!(id.get(), 1);
    p.packets();
    let (code, error) = rule(ProtocolViolation::UnsubAckCountMismatch);
    fault(
        &mut p,
        &hex("B0 06 00 01 00 00 00 00"),
        &hex("E0 01 82"),
        code,
        error,
    );
}

/// [MQTT-3.2.2-15] (5.0), section 3.2.2.3.6: the client never sends a packet above the
/// server's Maximum Packet Size; when even its 4-byte PUBACK is too large, the connection
/// cannot work and is closed, naming the server's limit.
#[test]
fn a_server_maximum_packet_size_too_small_for_an_ack_closes_the_connection() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    let properties = ConnAckProperties {
        maximum_packet_size: NonZeroU32::new(3),
        ..Default::default()
    };
    p.accept(connack_with(false, properties));
    p.take_events();
    p.send(server_publish("a", b"x", QoS::AtLeastOnce, 1));
    let (reason, _) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Local);
    assert_eq!(reason.reason_code, ReasonCode::ImplementationSpecificError);
    assert_eq!(
        reason.error,
        Some(violation(
            ProtocolViolation::ServerMaximumPacketSizeTooSmall
        ))
    );
}

/// Section 4.3.3 (3.1.1): PUBREC for no QoS 2 PUBLISH in flight closes the connection (MQTT 5
/// answers it with PUBREL 0x92 instead).
#[test]
fn v311_pubrec_for_nothing_in_flight_is_a_protocol_violation() {
    let mut p = Peer::connected(config(V311, "c"));
    fault(
        &mut p,
        &hex("50 02 00 07"),
        &[],
        ReasonCode::ProtocolError,
        violation(ProtocolViolation::UnexpectedPubRec),
    );
}

/// [MQTT-4.8.0-1], [MQTT-2.2.2-2], [MQTT-3.3.1-4] (3.1.1): a fault closes the connection (no
/// reason codes on the 3.1.1 wire, so nothing is sent) and is reported once.
#[test]
fn mqtt_4_8_0_1_v311_peer_faults_close_the_connection() {
    let fresh = || Peer::connected(config(V311, "c"));
    fault(
        &mut fresh(),
        &hex("36 05 00 01 'a' 00 01"),
        &[],
        ReasonCode::MalformedPacket,
        decode(DecodeError::InvalidQoS {
            field: "publish qos",
        }),
    );
    // Invalid fixed-header flags ([MQTT-2.2.2-2]): PUBACK with flags 0001.
    fault(
        &mut fresh(),
        &hex("41 02 00 01"),
        &[],
        ReasonCode::MalformedPacket,
        decode(DecodeError::InvalidFlags {
            packet: PacketType::PubAck,
            flags: 1,
        }),
    );
    // AUTH does not exist before 5.0.
    fault(
        &mut fresh(),
        &hex("F0 00"),
        &[],
        ReasonCode::MalformedPacket,
        decode(DecodeError::ReservedPacketType(15)),
    );
    fault(
        &mut fresh(),
        &hex("40 02 00 05"),
        &[],
        ReasonCode::ProtocolError,
        violation(ProtocolViolation::UnexpectedPubAck),
    );
    // [MQTT-3.2.0-1]: the first packet from the server must be CONNACK.
    let mut p = Peer::new(config(V311, "c"));
    p.connect();
    fault(
        &mut p,
        &hex("D0 00"),
        &[],
        ReasonCode::ProtocolError,
        violation(ProtocolViolation::PacketBeforeConnAck),
    );
}

/// [MQTT-4.12.0-3], [MQTT-3.1.2-33] (5.0): enhanced authentication: the server's AUTH is an
/// event, the client answers with AUTH, and sends nothing else before CONNACK.
#[test]
fn mqtt_4_12_0_3_enhanced_authentication_round_trip() {
    let mut c = config(V5, "c");
    c.properties.authentication_method = Some(s("X"));
    let mut p = Peer::new(c);
    p.connect();
    let challenge = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("X")),
            authentication_data: Some(Bytes::from_static(b"n")),
            ..AuthProperties::default()
        },
    };
    p.send(Packet::Auth(challenge.clone()));
    let got = p.expect_event("auth", |e| match e {
        Event::Auth(a) => Some(a.clone()),
        _ => None,
    });
    assert_eq!(got, challenge);
    assert_eq!(
        p.publish(message("a", b"x", QoS::AtMostOnce)),
        Err(ClientError::NotConnected)
    );
    p.client
        .auth(
            p.now,
            Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: AuthProperties {
                    authentication_method: Some(s("X")),
                    authentication_data: Some(Bytes::from_static(b"r")),
                    ..AuthProperties::default()
                },
            },
        )
        .unwrap();
    // F0 len 18 | props 08: 15 00 01 'X' 16 00 01 'r'
    p.expect_bytes(&hex("F0 0A 18 08 15 00 01 'X' 16 00 01 'r'"));
    p.accept(ConnAck::accepted(false));
    p.expect_event("connected", |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    });

    let mut p = Peer::connected(config(V311, "c"));
    assert_eq!(
        p.client.auth(p.now, Auth::default()),
        Err(ClientError::NeedsV5(V5Command::Auth))
    );
}

/// [MQTT-3.1.2-6] (3.1.1): a client configured for a clean session starts every connection
/// clean; one configured for a persistent session asks to resume it on every reconnect.
#[test]
fn mqtt_3_1_2_6_clean_session_flag_on_each_connection() {
    let mut p = Peer::connected(config(V311, "c"));
    p.close_transport();
    let Packet::Connect(c) = p.reconnect() else {
        unreachable!()
    };
    assert!(c.clean_start);

    let mut cfg = config(V311, "c");
    cfg.clean_start = false;
    let mut p = Peer::new(cfg);
    let Packet::Connect(c) = p.connect() else {
        unreachable!()
    };
    assert!(!c.clean_start);
    p.accept(ConnAck::accepted(false));
    p.close_transport();
    let Packet::Connect(c) = p.reconnect() else {
        unreachable!()
    };
    assert!(!c.clean_start);
    let expected = Connect {
        clean_start: false,
        ..Connect::new(V311, s("c"))
    };
    assert_eq!(*c, expected);
}

/// [MQTT-3.1.3-7] (3.1.1): "If the ClientSession supplies a zero-byte ClientId, the ClientSession MUST also
/// set CleanSession to 1"; MQTT 3.1 allows 1 to 23 bytes. The client refuses before sending.
#[test]
fn mqtt_3_1_3_7_empty_client_id_needs_a_clean_session() {
    let mut c = config(V311, "");
    c.clean_start = false;
    let mut client = ClientSession::new(c);
    assert!(matches!(
        client.connect(t0()),
        Err(ClientError::InvalidClientId(
            ClientIdRule::EmptyNeedsCleanSession
        ))
    ));
    assert_eq!(client.poll_transmit(), None, "nothing goes out");
    assert_eq!(client.state(), ClientState::Idle);

    let mut clean = Peer::new(config(V311, ""));
    clean.connect();

    let mut v31 = ClientSession::new(config(V3_1, "a-client-id-of-24-bytes!"));
    assert!(matches!(
        v31.connect(t0()),
        Err(ClientError::InvalidClientId(ClientIdRule::V31Length))
    ));
    let mut v31_empty = ClientSession::new(config(V3_1, ""));
    assert!(matches!(
        v31_empty.connect(t0()),
        Err(ClientError::InvalidClientId(ClientIdRule::V31Length))
    ));
}

/// [MQTT-3.14.0-1] (5.0): "The Server MUST NOT send a DISCONNECT until after it has sent a
/// CONNACK with Reason Code of less than 0x80"; a DISCONNECT before CONNACK is a protocol error.
#[test]
fn mqtt_3_14_0_1_v5_server_disconnect_before_connack_is_a_protocol_error() {
    let mut p = Peer::new(config(V5, "c"));
    p.connect();
    p.send(Packet::Disconnect(Disconnect::new(ReasonCode::ServerBusy)));
    let (reason, _) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Local);
    assert_eq!(reason.reason_code, ReasonCode::ProtocolError);
    assert_eq!(
        reason.error,
        Some(ConnectionError::Violation(
            ProtocolViolation::UnexpectedDisconnect
        ))
    );
}

/// MQTT 3.1.1 section 3.14: DISCONNECT is sent by the client only; one from the server is a
/// protocol violation that closes the connection.
#[test]
fn v311_server_disconnect_is_a_protocol_violation() {
    let mut p = Peer::connected(config(V311, "c"));
    p.send_raw(&hex("E0 00"));
    p.expect_silence();
    let (reason, _) = p.disconnected();
    assert_eq!(reason.initiator, Initiator::Local);
    assert_eq!(
        reason.error,
        Some(ConnectionError::Violation(
            ProtocolViolation::UnexpectedDisconnect
        ))
    );
}

/// MQTT 3.1 section 3.1 (Clean session flag): with clean session 0 the server keeps the
/// session, and 3.1's CONNACK carries no session present flag. The client takes the session
/// as kept and resends its unacknowledged PUBLISH with DUP set, instead of reporting it lost.
#[test]
fn v31_persistent_session_is_resumed_without_a_session_present_flag() {
    let mut c = config(V3_1, "c31");
    c.clean_start = false;
    let mut p = Peer::new(c);
    p.connect();
    p.accept(ConnAck::accepted(false));
    let present = p.expect_event("connected", |e| match e {
        Event::Connected {
            session_present, ..
        } => Some(*session_present),
        _ => None,
    });
    assert!(present, "taken as present in 3.1");
    let id = p
        .publish(message("t", b"m", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert!(matches!(p.expect_packet(), Packet::Publish(_)));
    p.close_transport();
    p.disconnected();
    p.reconnect();
    p.accept(ConnAck::accepted(false));
    match p.expect_packet() {
        Packet::Publish(resent) => {
            assert!(resent.dup, "resent with DUP");
            assert_eq!(resent.packet_id, Some(id));
        }
        other => panic!("expected the resent PUBLISH, got {other:?}"),
    }
    let lost = p.expect_event("reconnected", |e| match e {
        Event::Reconnected { lost, .. } => Some(lost.clone()),
        _ => None,
    });
    assert!(lost.is_empty(), "nothing lost: {lost:?}");
}
