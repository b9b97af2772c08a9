//! Positive codec vectors written by hand from the MQTT 3.1, 3.1.1 and 5.0 specifications.
//!
//! Every vector is a byte string typed from the spec's packet layouts (never produced by the
//! encoder) and the packet value it must decode to. For each one we check that decoding gives
//! exactly that value, that encoding the value gives exactly those bytes, that `encoded_len`
//! agrees, and that the decoder handles the bytes arriving one at a time.
//!
//! Properties in the v5 vectors are listed in the order the encoder writes them (the
//! specification allows any order), so that the bytes survive a re-encode.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use tinymqtt::codec::{
    encode, encoded_len, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, Decoder, Disconnect, DisconnectProperties, EncodeError, Encoder, Packet,
    PayloadFormat, PubAck, Publish, PublishProperties, RetainHandling, SubAck, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
    UnsubscribeProperties, Will, WillProperties, MAX_PACKET_SIZE, MAX_VAR_INT,
};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V3_1_1: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const ALL: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn s(v: &'static str) -> ByteStr {
    ByteStr::from_static(v)
}

fn topic(v: &'static str) -> TopicName {
    TopicName::from_static(v)
}

fn filter(v: &'static str) -> TopicFilter {
    TopicFilter::from_static(v)
}

use crate::support::pid;

fn nz16(v: u16) -> NonZeroU16 {
    NonZeroU16::new(v).expect("non-zero")
}

fn nz32(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).expect("non-zero")
}

fn user(k: &'static str, v: &'static str) -> (ByteStr, ByteStr) {
    (s(k), s(v))
}

/// Concatenates hand-written pieces (header bytes, string bytes) into one vector.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Feeds `bytes` one at a time: `Ok(None)` until the last byte, then `expected`, buffer empty.
fn check_streaming(version: ProtocolVersion, bytes: &[u8], expected: &Packet) {
    let decoder = Decoder::new(version);
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = decoder.decode(&mut buf);
        if i + 1 < bytes.len() {
            assert_eq!(got, Ok(None), "{version}: byte {i} of {}", bytes.len());
            assert_eq!(
                buf.len(),
                i + 1,
                "{version}: an incomplete packet is left in place"
            );
        } else {
            assert_eq!(got, Ok(Some(expected.clone())), "{version}: last byte");
        }
    }
    assert!(buf.is_empty(), "{version}: the packet is consumed");
}

/// The whole contract of one vector: decode, encode, encoded_len, streaming.
fn check(version: ProtocolVersion, bytes: &[u8], expected: Packet) {
    let decoder = Decoder::new(version);
    let mut buf = BytesMut::from(bytes);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(expected.clone())),
        "{version}: decode {bytes:02X?}"
    );
    assert!(
        buf.is_empty(),
        "{version}: decode consumes the whole packet"
    );

    let mut out = BytesMut::new();
    assert_eq!(
        encode(&expected, version, &mut out),
        Ok(bytes.len()),
        "{version}: encode {expected:?}"
    );
    assert_eq!(&out[..], bytes, "{version}: encoded bytes of {expected:?}");
    assert_eq!(
        encoded_len(&expected, version),
        Ok(bytes.len()),
        "{version}: encoded_len"
    );

    check_streaming(version, bytes, &expected);
}

/// Decodes a non-canonical but valid form: the value must match, the bytes need not re-encode.
fn check_decode_only(version: ProtocolVersion, bytes: &[u8], expected: Packet) {
    let mut buf = BytesMut::from(bytes);
    assert_eq!(
        Decoder::new(version).decode(&mut buf),
        Ok(Some(expected.clone())),
        "{version}: decode {bytes:02X?}"
    );
    assert!(buf.is_empty());
    check_streaming(version, bytes, &expected);
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

/// MQTT 3.1.1 section 3.1.2.10 (variable header example): name "MQTT", level 4, flags 0xCE
/// (user name, password, will QoS 1, will, clean session), keep alive 10.
fn connect_v311_spec_example() -> (Vec<u8>, Packet) {
    let bytes = cat(&[
        &[0x10, 0x25], // CONNECT, remaining length 37
        &[0x00, 0x04], // protocol name length
        b"MQTT",       // protocol name
        &[0x04],       // protocol level 4
        &[0xCE],       // connect flags
        &[0x00, 0x0A], // keep alive 10
        &[0x00, 0x03], // client id length
        b"abc",        // client id
        &[0x00, 0x03], // will topic length
        b"w/t",        // will topic
        &[0x00, 0x03], // will payload length
        b"bye",        // will payload
        &[0x00, 0x04], // user name length
        b"user",       // user name
        &[0x00, 0x04], // password length
        b"pass",       // password
    ]);
    let packet = Packet::from(Connect {
        protocol: V3_1_1,
        clean_start: true,
        keep_alive: 10,
        client_id: s("abc"),
        will: Some(Will {
            topic: topic("w/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"pass")),
        properties: ConnectProperties::default(),
    });
    (bytes, packet)
}

#[test]
fn mqtt_3_1_1_connect_spec_example_3_1_2_10() {
    let (bytes, packet) = connect_v311_spec_example();
    check(V3_1_1, &bytes, packet);
}

#[test]
fn mqtt_3_1_1_connect_minimal_empty_client_id() {
    // [MQTT-3.1.3-6] a server may accept a zero-byte client id (with clean session).
    let bytes = cat(&[
        &[0x10, 0x0C],
        &[0x00, 0x04],
        b"MQTT",
        &[0x04, 0x02, 0x00, 0x3C], // level 4, clean session, keep alive 60
        &[0x00, 0x00],             // empty client id
    ]);
    let mut c = Connect::new(V3_1_1, ByteStr::new());
    c.keep_alive = 60;
    check(V3_1_1, &bytes, Packet::from(c));
}

#[test]
fn mqtt_3_1_connect_mqisdp_level_3() {
    // MQTT 3.1: protocol name "MQIsdp", version 3.
    let bytes = cat(&[
        &[0x10, 0x11],
        &[0x00, 0x06],
        b"MQIsdp",
        &[0x03, 0x02, 0x00, 0x3C], // level 3, clean session, keep alive 60
        &[0x00, 0x03],
        b"cli",
    ]);
    check(V3_1, &bytes, Packet::from(Connect::new(V3_1, s("cli"))));
}

#[test]
fn mqtt_3_1_connect_with_retained_qos2_will_and_user_name() {
    // Flags 0xB6: user name, will retain, will QoS 2, will, clean session.
    let bytes = cat(&[
        &[0x10, 0x29],
        &[0x00, 0x06],
        b"MQIsdp",
        &[0x03, 0xB6, 0x00, 0x1E], // level 3, flags, keep alive 30
        &[0x00, 0x03],
        b"cli",
        &[0x00, 0x0A],
        b"status/cli",
        &[0x00, 0x07],
        b"offline",
        &[0x00, 0x01],
        b"u",
    ]);
    let packet = Packet::from(Connect {
        protocol: V3_1,
        clean_start: true,
        keep_alive: 30,
        client_id: s("cli"),
        will: Some(Will {
            topic: topic("status/cli"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some(s("u")),
        password: None,
        properties: ConnectProperties::default(),
    });
    check(V3_1, &bytes, packet);
}

#[test]
fn mqtt_5_connect_spec_example_3_1_2_12() {
    // MQTT 5 section 3.1.2.12: flags 0xCE, keep alive 10, properties length 5,
    // Session Expiry Interval (17 = 0x11) = 10.
    let bytes = cat(&[
        &[0x10, 0x2C],
        &[0x00, 0x04],
        b"MQTT",
        &[0x05, 0xCE, 0x00, 0x0A], // level 5, flags, keep alive 10
        &[0x05, 0x11, 0x00, 0x00, 0x00, 0x0A], // properties: session expiry 10
        &[0x00, 0x03],
        b"abc",
        &[0x00], // will properties length 0
        &[0x00, 0x03],
        b"w/t",
        &[0x00, 0x03],
        b"bye",
        &[0x00, 0x04],
        b"user",
        &[0x00, 0x04],
        b"pass",
    ]);
    let packet = Packet::from(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 10,
        client_id: s("abc"),
        will: Some(Will {
            topic: topic("w/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        }),
        username: Some(s("user")),
        password: Some(Bytes::from_static(b"pass")),
        properties: ConnectProperties {
            session_expiry_interval: Some(10),
            ..ConnectProperties::default()
        },
    });
    check(V5, &bytes, packet);
}

/// A v5 CONNECT with every CONNECT property and every will property (byte, two-byte,
/// four-byte, string, binary and user-property kinds), retained QoS 2 will, user name and a
/// binary password; remaining length 140 takes two bytes.
fn connect_v5_full() -> (Vec<u8>, Packet) {
    let bytes = cat(&[
        &[0x10, 0x8C, 0x01], // remaining length 140
        &[0x00, 0x04],
        b"MQTT",
        &[0x05],                         // level 5
        &[0xF4],       // user name, password, will retain, will QoS 2, will; no clean start
        &[0x01, 0x2C], // keep alive 300
        &[0x29],       // properties length 41
        &[0x11, 0x00, 0x00, 0x00, 0x0A], // session expiry interval 10
        &[0x21, 0x00, 0x14], // receive maximum 20
        &[0x27, 0x00, 0x00, 0x04, 0x00], // maximum packet size 1024
        &[0x22, 0x00, 0x05], // topic alias maximum 5
        &[0x19, 0x01], // request response information 1
        &[0x17, 0x00], // request problem information 0
        &[0x15, 0x00, 0x05],
        b"SCRAM",                              // authentication method
        &[0x16, 0x00, 0x03, 0x01, 0x02, 0x03], // authentication data
        &[0x26, 0x00, 0x01],
        b"k",
        &[0x00, 0x01],
        b"v", // user property
        &[0x00, 0x08],
        b"client-1",                     // client id
        &[0x2F],                         // will properties length 47
        &[0x18, 0x00, 0x00, 0x00, 0x1E], // will delay interval 30
        &[0x01, 0x01],                   // payload format indicator: UTF-8
        &[0x02, 0x00, 0x00, 0x0E, 0x10], // message expiry interval 3600
        &[0x03, 0x00, 0x0A],
        b"text/plain", // content type
        &[0x08, 0x00, 0x05],
        b"reply",                        // response topic
        &[0x09, 0x00, 0x02, 0xCA, 0xFE], // correlation data
        &[0x26, 0x00, 0x02],
        b"k1",
        &[0x00, 0x02],
        b"v1", // user property
        &[0x00, 0x0A],
        b"will/topic",
        &[0x00, 0x04],
        b"gone",
        &[0x00, 0x05],
        b"alice",
        &[0x00, 0x03, 0x00, 0xFF, 0x10], // password: binary, not UTF-8
    ]);
    let packet = Packet::from(Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 300,
        client_id: s("client-1"),
        will: Some(Will {
            topic: topic("will/topic"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                payload_format_indicator: Some(PayloadFormat::Utf8),
                message_expiry_interval: Some(3600),
                content_type: Some(s("text/plain")),
                response_topic: Some(topic("reply")),
                correlation_data: Some(Bytes::from_static(&[0xCA, 0xFE])),
                user_properties: vec![user("k1", "v1")].into(),
            },
        }),
        username: Some(s("alice")),
        password: Some(Bytes::from_static(&[0x00, 0xFF, 0x10])),
        properties: ConnectProperties {
            session_expiry_interval: Some(10),
            receive_maximum: Some(nz16(20)),
            maximum_packet_size: Some(nz32(1024)),
            topic_alias_maximum: Some(5),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: vec![user("k", "v")],
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
        },
    });
    (bytes, packet)
}

#[test]
fn mqtt_5_connect_with_every_property_and_will_properties() {
    let (bytes, packet) = connect_v5_full();
    assert_eq!(bytes.len(), 3 + 140);
    check(V5, &bytes, packet);
}

#[test]
fn mqtt_5_3_1_2_9_password_without_user_name_is_allowed() {
    // MQTT 5 section 3.1.2.9: "This version of the protocol allows the sending of a Password
    // with no User Name, where MQTT v3.1.1 did not."
    let bytes = cat(&[
        &[0x10, 0x11],
        &[0x00, 0x04],
        b"MQTT",
        &[0x05, 0x42, 0x00, 0x3C], // level 5, password + clean start, keep alive 60
        &[0x00],                   // no properties
        &[0x00, 0x00],             // empty client id
        &[0x00, 0x02],
        b"pw",
    ]);
    let mut c = Connect::new(V5, ByteStr::new());
    c.password = Some(Bytes::from_static(b"pw"));
    check(V5, &bytes, Packet::from(c));
}

#[test]
fn connect_is_decoded_by_its_own_version_whatever_the_decoder_version() {
    // A server does not know the version before CONNECT: any decoder reads any CONNECT.
    let (v311, v311_packet) = connect_v311_spec_example();
    let (v5, v5_packet) = connect_v5_full();
    for decoder_version in ALL {
        let d = Decoder::new(decoder_version);
        assert_eq!(
            d.decode(&mut BytesMut::from(&v311[..])),
            Ok(Some(v311_packet.clone()))
        );
        assert_eq!(
            d.decode(&mut BytesMut::from(&v5[..])),
            Ok(Some(v5_packet.clone()))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_1_connack_return_codes_0_to_5() {
    // MQTT 3.1.1 section 3.2.2.3, table 3.1: return codes 0-5.
    let codes = [
        ReasonCode::Success,
        ReasonCode::UnsupportedProtocolVersion,
        ReasonCode::ClientIdentifierNotValid,
        ReasonCode::ServerUnavailable,
        ReasonCode::BadUserNameOrPassword,
        ReasonCode::NotAuthorized,
    ];
    for version in [V3_1, V3_1_1] {
        for (byte, rc) in codes.iter().enumerate() {
            let ack = ConnAck {
                session_present: false,
                reason_code: *rc,
                properties: ConnAckProperties::default(),
            };
            assert_eq!(ack.return_code(), Some(byte as u8));
            check(version, &[0x20, 0x02, 0x00, byte as u8], Packet::from(ack));
        }
    }
}

#[test]
fn mqtt_3_1_1_connack_session_present() {
    // MQTT 3.1.1 section 3.2.2.2: bit 0 of the acknowledge flags.
    check(
        V3_1_1,
        &[0x20, 0x02, 0x01, 0x00],
        Packet::from(ConnAck::accepted(true)),
    );
}

#[test]
fn mqtt_5_connack_minimal() {
    check(
        V5,
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        Packet::from(ConnAck::accepted(false)),
    );
}

#[test]
fn mqtt_5_connack_refused_not_authorized() {
    let ack = ConnAck {
        session_present: false,
        reason_code: ReasonCode::NotAuthorized,
        properties: ConnAckProperties::default(),
    };
    check(V5, &[0x20, 0x03, 0x00, 0x87, 0x00], Packet::from(ack));
}

#[test]
fn mqtt_5_connack_with_every_property() {
    let bytes = cat(&[
        &[0x20, 0x4C],                   // remaining length 76
        &[0x01, 0x00],                   // session present, success
        &[0x49],                         // properties length 73
        &[0x11, 0x00, 0x00, 0x00, 0x78], // session expiry interval 120
        &[0x21, 0x00, 0x0A],             // receive maximum 10
        &[0x24, 0x01],                   // maximum QoS 1
        &[0x25, 0x00],                   // retain available 0
        &[0x27, 0x00, 0x01, 0x00, 0x00], // maximum packet size 65536
        &[0x12, 0x00, 0x04],
        b"auto",             // assigned client identifier
        &[0x22, 0x00, 0x0A], // topic alias maximum 10
        &[0x1F, 0x00, 0x02],
        b"ok",               // reason string
        &[0x28, 0x00],       // wildcard subscription available 0
        &[0x29, 0x01],       // subscription identifiers available 1
        &[0x2A, 0x00],       // shared subscription available 0
        &[0x13, 0x00, 0x1E], // server keep alive 30
        &[0x1A, 0x00, 0x04],
        b"resp", // response information
        &[0x1C, 0x00, 0x03],
        b"srv", // server reference
        &[0x15, 0x00, 0x05],
        b"SCRAM",                  // authentication method
        &[0x16, 0x00, 0x01, 0x07], // authentication data
        &[0x26, 0x00, 0x01],
        b"a",
        &[0x00, 0x01],
        b"b", // user property
    ]);
    let ack = ConnAck {
        session_present: true,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(nz16(10)),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(nz32(65_536)),
            assigned_client_identifier: Some(s("auto")),
            topic_alias_maximum: Some(10),
            reason_string: Some(s("ok")),
            user_properties: vec![user("a", "b")],
            wildcard_subscription_available: Some(false),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(30),
            response_information: Some(s("resp")),
            server_reference: Some(s("srv")),
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[0x07])),
        },
    };
    check(V5, &bytes, Packet::from(ack));
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

fn publish(topic_name: &'static str, qos: QoS, id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic(topic_name),
        packet_id: id.map(pid),
        properties: PublishProperties::default(),
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn mqtt_3_1_1_publish_qos0() {
    let bytes = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    for v in [V3_1, V3_1_1] {
        check(
            v,
            &bytes,
            Packet::Publish(publish("a/b", QoS::AtMostOnce, None, b"hi")),
        );
    }
}

#[test]
fn mqtt_3_1_1_publish_qos0_empty_payload() {
    // MQTT 3.1.1 section 3.3.3: "A zero length payload is valid."
    let p = Packet::Publish(publish("a/b", QoS::AtMostOnce, None, b""));
    let bytes = cat(&[&[0x30, 0x05, 0x00, 0x03], b"a/b"]);
    for v in [V3_1, V3_1_1] {
        check(v, &bytes, p.clone());
    }
    let bytes = cat(&[&[0x30, 0x06, 0x00, 0x03], b"a/b", &[0x00]]);
    check(V5, &bytes, p);
}

#[test]
fn mqtt_3_1_1_publish_qos1_retain() {
    // First byte 0x33: PUBLISH, QoS 1, RETAIN.
    let bytes = cat(&[&[0x33, 0x08, 0x00, 0x03], b"a/b", &[0x00, 0x0A], b"x"]);
    let mut p = publish("a/b", QoS::AtLeastOnce, Some(10), b"x");
    p.retain = true;
    for v in [V3_1, V3_1_1] {
        check(v, &bytes, Packet::Publish(p.clone()));
    }
}

#[test]
fn mqtt_3_1_1_publish_qos2_dup() {
    // First byte 0x3C: PUBLISH, DUP, QoS 2.
    let bytes = cat(&[&[0x3C, 0x09, 0x00, 0x03], b"a/b", &[0xFF, 0xFF], b"yz"]);
    let mut p = publish("a/b", QoS::ExactlyOnce, Some(65_535), b"yz");
    p.dup = true;
    for v in [V3_1, V3_1_1] {
        check(v, &bytes, Packet::Publish(p.clone()));
    }
}

#[test]
fn mqtt_3_1_1_publish_utf8_topic_and_binary_payload() {
    // "é" is 0xC3 0xA9: the string length counts bytes, not characters.
    let bytes = cat(&[&[0x30, 0x08, 0x00, 0x04], "t/é".as_bytes(), &[0x00, 0xFF]]);
    let mut p = publish("a", QoS::AtMostOnce, None, &[0x00, 0xFF]);
    p.topic = TopicName::new("t/é").unwrap();
    check(V3_1_1, &bytes, Packet::Publish(p));
}

#[test]
fn mqtt_5_publish_qos0_no_properties() {
    let bytes = cat(&[&[0x30, 0x08, 0x00, 0x03], b"a/b", &[0x00], b"hi"]);
    check(
        V5,
        &bytes,
        Packet::Publish(publish("a/b", QoS::AtMostOnce, None, b"hi")),
    );
}

#[test]
fn mqtt_5_publish_with_every_property() {
    let bytes = cat(&[
        &[0x33, 0x41], // PUBLISH QoS 1 RETAIN, remaining length 65
        &[0x00, 0x03],
        b"t/1",
        &[0x00, 0x07],                   // packet id 7
        &[0x37],                         // properties length 55
        &[0x01, 0x01],                   // payload format indicator: UTF-8
        &[0x02, 0x00, 0x00, 0x00, 0x3C], // message expiry interval 60
        &[0x23, 0x00, 0x01],             // topic alias 1
        &[0x08, 0x00, 0x05],
        b"reply",                              // response topic
        &[0x09, 0x00, 0x03, 0x01, 0x02, 0x03], // correlation data
        &[0x0B, 0x01],                         // subscription identifier 1 (one-byte varint)
        &[0x0B, 0x80, 0x01],                   // subscription identifier 128 (two bytes)
        &[0x0B, 0xFF, 0xFF, 0xFF, 0x7F],       // subscription identifier 268435455 (four)
        &[0x03, 0x00, 0x04],
        b"json", // content type
        &[0x26, 0x00, 0x01],
        b"k",
        &[0x00, 0x01],
        b"v", // user property k=v
        &[0x26, 0x00, 0x01],
        b"k",
        &[0x00, 0x01],
        b"w", // user property k=w: repeats and order are kept
        b"{}",
    ]);
    let p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: topic("t/1"),
        packet_id: Some(pid(7)),
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(60),
            topic_alias: Some(nz16(1)),
            response_topic: Some(topic("reply")),
            correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
            user_properties: vec![user("k", "v"), user("k", "w")].into(),
            subscription_identifiers: vec![nz32(1), nz32(128), nz32(MAX_VAR_INT)],
            content_type: Some(s("json")),
        },
        payload: Bytes::from_static(b"{}"),
    };
    check(V5, &bytes, Packet::Publish(p));
}

#[test]
fn mqtt_5_3_3_2_3_4_empty_topic_with_topic_alias() {
    // MQTT 5 section 3.3.2.3.4: a zero-length topic name with a Topic Alias.
    let bytes = [0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x02, b'p'];
    let p = Publish {
        topic: TopicName::empty(),
        properties: PublishProperties {
            topic_alias: Some(nz16(2)),
            ..PublishProperties::default()
        },
        ..publish("a", QoS::AtMostOnce, None, b"p")
    };
    check(V5, &bytes, Packet::Publish(p));
}

#[test]
fn mqtt_5_publish_qos2_dup_with_payload_format_unspecified() {
    let bytes = cat(&[
        &[0x3D, 0x09, 0x00, 0x01],
        b"x",
        &[0x12, 0x34, 0x02, 0x01, 0x00],
        b"z",
    ]);
    let p = Publish {
        dup: true,
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Unspecified),
            ..PublishProperties::default()
        },
        ..publish("x", QoS::ExactlyOnce, Some(0x1234), b"z")
    };
    check(V5, &bytes, Packet::Publish(p));
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_1_puback_pubrec_pubrel_pubcomp() {
    // PUBREL's fixed header flags are 0b0010 (MQTT 3.1.1 section 3.6.1).
    for v in [V3_1, V3_1_1] {
        check(
            v,
            &[0x40, 0x02, 0x00, 0x01],
            Packet::PubAck(PubAck::new(pid(1))),
        );
        check(
            v,
            &[0x50, 0x02, 0x00, 0x02],
            Packet::PubRec(PubAck::new(pid(2))),
        );
        check(
            v,
            &[0x62, 0x02, 0x00, 0x03],
            Packet::PubRel(PubAck::new(pid(3))),
        );
        check(
            v,
            &[0x70, 0x02, 0xFF, 0xFF],
            Packet::PubComp(PubAck::new(pid(65_535))),
        );
    }
}

fn ack(id: u16, rc: ReasonCode) -> PubAck {
    PubAck {
        packet_id: pid(id),
        reason_code: rc,
        properties: AckProperties::default(),
    }
}

#[test]
fn mqtt_5_3_4_2_1_puback_short_forms() {
    // MQTT 5 section 3.4.2.1: "The Reason Code and Property Length can be omitted if the
    // Reason Code is 0x00 (Success) and there are no Properties. In this case the PUBACK has a
    // Remaining Length of 2." and with a Reason Code but no properties, Remaining Length 3.
    check(
        V5,
        &[0x40, 0x02, 0x00, 0x01],
        Packet::PubAck(PubAck::new(pid(1))),
    );
    check(
        V5,
        &[0x40, 0x03, 0x00, 0x01, 0x10],
        Packet::PubAck(ack(1, ReasonCode::NoMatchingSubscribers)),
    );
}

#[test]
fn mqtt_5_puback_non_canonical_forms_decode() {
    // Success written out, and an explicit zero property length: valid, though the encoder
    // uses the short forms.
    check_decode_only(
        V5,
        &[0x40, 0x03, 0x00, 0x01, 0x00],
        Packet::PubAck(PubAck::new(pid(1))),
    );
    check_decode_only(
        V5,
        &[0x40, 0x04, 0x00, 0x01, 0x00, 0x00],
        Packet::PubAck(PubAck::new(pid(1))),
    );
    check_decode_only(
        V5,
        &[0x40, 0x04, 0x00, 0x01, 0x80, 0x00],
        Packet::PubAck(ack(1, ReasonCode::UnspecifiedError)),
    );
}

#[test]
fn mqtt_5_puback_with_reason_string_and_user_property() {
    let bytes = cat(&[
        &[0x40, 0x10, 0x00, 0x01, 0x80, 0x0C],
        &[0x1F, 0x00, 0x02],
        b"no",
        &[0x26, 0x00, 0x01],
        b"a",
        &[0x00, 0x01],
        b"b",
    ]);
    let p = PubAck {
        packet_id: pid(1),
        reason_code: ReasonCode::UnspecifiedError,
        properties: AckProperties {
            reason_string: Some(s("no")),
            user_properties: vec![user("a", "b")],
        },
    };
    check(V5, &bytes, Packet::PubAck(p));
}

#[test]
fn mqtt_5_puback_every_reason_code() {
    // MQTT 5 section 3.4.2.1, table 3-4.
    for code in [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
        let rc = ReasonCode::from_u8(code).unwrap();
        let bytes: &[u8] = if code == 0 {
            &[0x40, 0x02, 0x00, 0x05]
        } else {
            &[0x40, 0x03, 0x00, 0x05, code]
        };
        check(V5, bytes, Packet::PubAck(ack(5, rc)));
        let rec: Vec<u8> = [&[0x50], &bytes[1..]].concat();
        check(V5, &rec, Packet::PubRec(ack(5, rc)));
    }
}

#[test]
fn mqtt_5_pubrec_pubrel_pubcomp() {
    check(
        V5,
        &[0x50, 0x03, 0x00, 0x02, 0x91],
        Packet::PubRec(ack(2, ReasonCode::PacketIdentifierInUse)),
    );
    check(
        V5,
        &[0x62, 0x02, 0x00, 0x03],
        Packet::PubRel(PubAck::new(pid(3))),
    );
    check(
        V5,
        &[0x62, 0x03, 0x00, 0x03, 0x92],
        Packet::PubRel(ack(3, ReasonCode::PacketIdentifierNotFound)),
    );
    check(
        V5,
        &[0x70, 0x02, 0x00, 0x04],
        Packet::PubComp(PubAck::new(pid(4))),
    );
    check(
        V5,
        &[0x70, 0x03, 0x00, 0x04, 0x92],
        Packet::PubComp(ack(4, ReasonCode::PacketIdentifierNotFound)),
    );
    // Success with properties: the reason code byte must be written.
    let bytes = cat(&[
        &[0x62, 0x09, 0x00, 0x03, 0x00, 0x05, 0x1F, 0x00, 0x02],
        b"hm",
    ]);
    let p = PubAck {
        packet_id: pid(3),
        reason_code: ReasonCode::Success,
        properties: AckProperties {
            reason_string: Some(s("hm")),
            user_properties: vec![],
        },
    };
    check(V5, &bytes, Packet::PubRel(p));
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_1_subscribe_three_filters() {
    let bytes = cat(&[
        &[0x82, 0x12, 0x00, 0x0A],
        &[0x00, 0x03],
        b"a/b",
        &[0x01],
        &[0x00, 0x03],
        b"c/#",
        &[0x02],
        &[0x00, 0x01],
        b"+",
        &[0x00],
    ]);
    let p = Subscribe {
        packet_id: pid(10),
        properties: SubscribeProperties::default(),
        filters: vec![
            Subscription::new(filter("a/b"), QoS::AtLeastOnce),
            Subscription::new(filter("c/#"), QoS::ExactlyOnce),
            Subscription::new(filter("+"), QoS::AtMostOnce),
        ],
    };
    check(V3_1_1, &bytes, Packet::Subscribe(p));
}

#[test]
fn mqtt_3_1_subscribe_one_filter() {
    let bytes = [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'#', 0x00];
    let p = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![Subscription::new(filter("#"), QoS::AtMostOnce)],
    };
    check(V3_1, &bytes, Packet::Subscribe(p));
}

#[test]
fn mqtt_5_subscribe_minimal() {
    let bytes = [0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'#', 0x01];
    let p = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![Subscription::new(filter("#"), QoS::AtLeastOnce)],
    };
    check(V5, &bytes, Packet::Subscribe(p));
}

#[test]
fn mqtt_5_3_8_3_1_subscribe_options_and_properties() {
    // MQTT 5 section 3.8.3.1: bits 0-1 QoS, bit 2 No Local, bit 3 Retain As Published,
    // bits 4-5 Retain Handling. Section 3.8.2.1.2: subscription identifier, a varint.
    let bytes = cat(&[
        &[0x82, 0x25, 0x00, 0x0B],
        &[0x0B],                   // properties length 11
        &[0x0B, 0x80, 0x80, 0x01], // subscription identifier 16384 (three-byte varint)
        &[0x26, 0x00, 0x01],
        b"k",
        &[0x00, 0x01],
        b"v",
        &[0x00, 0x03],
        b"a/+",
        &[0x2D], // QoS 1, no local, retain as published, retain handling 2
        &[0x00, 0x0A],
        b"$share/g/x",
        &[0x12], // QoS 2, retain handling 1
        &[0x00, 0x01],
        b"b",
        &[0x00], // defaults
    ]);
    let p = Subscribe {
        packet_id: pid(11),
        properties: SubscribeProperties {
            subscription_identifier: Some(nz32(16_384)),
            user_properties: vec![user("k", "v")],
        },
        filters: vec![
            Subscription {
                filter: filter("a/+"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            },
            Subscription {
                filter: filter("$share/g/x"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendIfNew,
                },
            },
            Subscription::new(filter("b"), QoS::AtMostOnce),
        ],
    };
    check(V5, &bytes, Packet::Subscribe(p));
}

#[test]
fn mqtt_3_1_1_suback() {
    // MQTT 3.1.1 section 3.9.3: 0x00, 0x01, 0x02 granted, 0x80 failure.
    let p = SubAck {
        packet_id: pid(10),
        properties: AckProperties::default(),
        reason_codes: vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
            ReasonCode::GRANTED_QOS_0,
        ],
    };
    check(
        V3_1_1,
        &[0x90, 0x06, 0x00, 0x0A, 0x01, 0x02, 0x80, 0x00],
        Packet::SubAck(p),
    );
    let p = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::GRANTED_QOS_0],
    };
    check(V3_1, &[0x90, 0x03, 0x00, 0x01, 0x00], Packet::SubAck(p));
}

#[test]
fn mqtt_5_suback_every_reason_code() {
    // MQTT 5 section 3.9.3, table 3-8.
    let codes = [
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    let bytes = cat(&[
        &[0x90, 0x14, 0x00, 0x0B, 0x05, 0x1F, 0x00, 0x02],
        b"ok",
        &codes,
    ]);
    let p = SubAck {
        packet_id: pid(11),
        properties: AckProperties {
            reason_string: Some(s("ok")),
            user_properties: vec![],
        },
        reason_codes: codes
            .iter()
            .map(|c| ReasonCode::from_u8(*c).unwrap())
            .collect(),
    };
    check(V5, &bytes, Packet::SubAck(p));
    let p = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::Success],
    };
    check(V5, &[0x90, 0x04, 0x00, 0x01, 0x00, 0x00], Packet::SubAck(p));
}

// ---------------------------------------------------------------------------------------------
// UNSUBSCRIBE, UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_1_unsubscribe() {
    let bytes = cat(&[
        &[0xA2, 0x0A, 0x00, 0x0C, 0x00, 0x03],
        b"a/b",
        &[0x00, 0x01],
        b"#",
    ]);
    let p = Unsubscribe {
        packet_id: pid(12),
        properties: UnsubscribeProperties::default(),
        filters: vec![filter("a/b"), filter("#")],
    };
    check(V3_1_1, &bytes, Packet::Unsubscribe(p));
    let bytes = cat(&[&[0xA2, 0x07, 0x00, 0x01, 0x00, 0x03], b"a/+"]);
    let p = Unsubscribe {
        packet_id: pid(1),
        properties: UnsubscribeProperties::default(),
        filters: vec![filter("a/+")],
    };
    check(V3_1, &bytes, Packet::Unsubscribe(p));
}

#[test]
fn mqtt_5_unsubscribe_with_user_property() {
    let bytes = cat(&[
        &[0xA2, 0x0F, 0x00, 0x0D, 0x07, 0x26, 0x00, 0x01],
        b"k",
        &[0x00, 0x01],
        b"v",
        &[0x00, 0x03],
        b"a/b",
    ]);
    let p = Unsubscribe {
        packet_id: pid(13),
        properties: UnsubscribeProperties {
            user_properties: vec![user("k", "v")],
        },
        filters: vec![filter("a/b")],
    };
    check(V5, &bytes, Packet::Unsubscribe(p));
}

#[test]
fn mqtt_3_1_1_unsuback_has_only_a_packet_id() {
    let p = UnsubAck {
        packet_id: pid(12),
        properties: AckProperties::default(),
        reason_codes: vec![],
    };
    for v in [V3_1, V3_1_1] {
        check(v, &[0xB0, 0x02, 0x00, 0x0C], Packet::UnsubAck(p.clone()));
    }
}

#[test]
fn mqtt_5_unsuback_every_reason_code() {
    // MQTT 5 section 3.11.3, table 3-9.
    let codes = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    let bytes = cat(&[&[0xB0, 0x0A, 0x00, 0x0D, 0x00], &codes]);
    let p = UnsubAck {
        packet_id: pid(13),
        properties: AckProperties::default(),
        reason_codes: codes
            .iter()
            .map(|c| ReasonCode::from_u8(*c).unwrap())
            .collect(),
    };
    check(V5, &bytes, Packet::UnsubAck(p));
    let bytes = cat(&[
        &[0xB0, 0x09, 0x00, 0x0D, 0x05, 0x1F, 0x00, 0x02],
        b"no",
        &[0x11],
    ]);
    let p = UnsubAck {
        packet_id: pid(13),
        properties: AckProperties {
            reason_string: Some(s("no")),
            user_properties: vec![],
        },
        reason_codes: vec![ReasonCode::NoSubscriptionExisted],
    };
    check(V5, &bytes, Packet::UnsubAck(p));
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn pingreq_pingresp_every_version() {
    for v in ALL {
        check(v, &[0xC0, 0x00], Packet::PingReq);
        check(v, &[0xD0, 0x00], Packet::PingResp);
    }
}

#[test]
fn mqtt_3_1_1_disconnect() {
    for v in [V3_1, V3_1_1] {
        check(v, &[0xE0, 0x00], Packet::Disconnect(Disconnect::default()));
    }
}

#[test]
fn mqtt_5_3_14_2_1_disconnect_short_forms() {
    // MQTT 5 section 3.14.2.1: "The Reason Code and Property Length can be omitted if the
    // Reason Code is 0x00 (Normal disconnection) and there are no Properties. In this case the
    // DISCONNECT has a Remaining Length of 0." With a reason code only: Remaining Length 1.
    check(V5, &[0xE0, 0x00], Packet::Disconnect(Disconnect::default()));
    check(
        V5,
        &[0xE0, 0x01, 0x04],
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
    );
    check(
        V5,
        &[0xE0, 0x01, 0x8E],
        Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver)),
    );
    check_decode_only(
        V5,
        &[0xE0, 0x01, 0x00],
        Packet::Disconnect(Disconnect::default()),
    );
    check_decode_only(
        V5,
        &[0xE0, 0x02, 0x00, 0x00],
        Packet::Disconnect(Disconnect::default()),
    );
}

#[test]
fn mqtt_5_disconnect_with_every_property() {
    let bytes = cat(&[
        &[0xE0, 0x1A, 0x9C, 0x18],
        &[0x11, 0x00, 0x00, 0x00, 0x00], // session expiry interval 0
        &[0x1F, 0x00, 0x03],
        b"bye", // reason string
        &[0x1C, 0x00, 0x03],
        b"srv", // server reference
        &[0x26, 0x00, 0x01],
        b"k",
        &[0x00, 0x01],
        b"v",
    ]);
    let p = Disconnect {
        reason_code: ReasonCode::UseAnotherServer,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: Some(s("bye")),
            user_properties: vec![user("k", "v")],
            server_reference: Some(s("srv")),
        },
    };
    check(V5, &bytes, Packet::Disconnect(p));
}

#[test]
fn mqtt_5_3_15_2_1_auth() {
    // MQTT 5 section 3.15.2.1: Remaining Length 0 means Success without properties.
    check(V5, &[0xF0, 0x00], Packet::Auth(Auth::default()));
    let bytes = cat(&[&[0xF0, 0x0A, 0x19, 0x08, 0x15, 0x00, 0x05], b"SCRAM"]);
    let p = Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            ..AuthProperties::default()
        },
    };
    check(V5, &bytes, Packet::Auth(p));
    let bytes = cat(&[
        &[0xF0, 0x1D, 0x18, 0x1B],
        &[0x15, 0x00, 0x05],
        b"SCRAM",
        &[0x16, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04],
        &[0x1F, 0x00, 0x02],
        b"go",
        &[0x26, 0x00, 0x01],
        b"k",
        &[0x00, 0x01],
        b"v",
    ]);
    let p = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(Bytes::from_static(&[1, 2, 3, 4])),
            reason_string: Some(s("go")),
            user_properties: vec![user("k", "v")],
        },
    };
    check(V5, &bytes, Packet::Auth(p));
}

// ---------------------------------------------------------------------------------------------
// Remaining length boundaries (MQTT 3.1.1 section 2.2.3, MQTT 5 section 1.5.5)
// ---------------------------------------------------------------------------------------------

/// A QoS 0 PUBLISH to "t" whose remaining length is exactly `remaining`, written by hand:
/// the given header bytes, then the topic, then a patterned payload.
fn publish_with_remaining(header: &[u8], remaining: usize) -> (Vec<u8>, Packet) {
    let payload_len = remaining - 3; // 0x00 0x01 't'
    let payload: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
    let bytes = cat(&[header, &[0x00, 0x01, b't'], &payload]);
    assert_eq!(bytes.len(), header.len() + remaining);
    let p = Publish::new(topic("t"), Bytes::from(payload));
    (bytes, Packet::Publish(p))
}

#[test]
fn remaining_length_0() {
    for v in ALL {
        check(v, &[0xC0, 0x00], Packet::PingReq);
    }
}

#[test]
fn remaining_length_boundaries_with_real_publish_packets() {
    let cases: [(&[u8], usize); 6] = [
        (&[0x30, 0x7F], 127),
        (&[0x30, 0x80, 0x01], 128),
        (&[0x30, 0xFF, 0x7F], 16_383),
        (&[0x30, 0x80, 0x80, 0x01], 16_384),
        (&[0x30, 0xFF, 0xFF, 0x7F], 2_097_151),
        (&[0x30, 0x80, 0x80, 0x80, 0x01], 2_097_152),
    ];
    for (header, remaining) in cases {
        let (bytes, packet) = publish_with_remaining(header, remaining);
        for v in [V3_1_1, V5] {
            if v.is_v5() {
                // v5 adds a property length byte: rebuild with one byte less of payload.
                let mut b = bytes.clone();
                b.insert(header.len() + 3, 0x00);
                b.pop();
                let Packet::Publish(mut p) = packet.clone() else {
                    unreachable!()
                };
                p.payload = p.payload.slice(..p.payload.len() - 1);
                check_big(v, &b, Packet::Publish(p));
            } else {
                check_big(v, &bytes, packet.clone());
            }
        }
    }
}

/// [`check`], with byte-at-a-time streaming only for packets small enough to make it quick.
fn check_big(version: ProtocolVersion, bytes: &[u8], expected: Packet) {
    if bytes.len() <= 20_000 {
        check(version, bytes, expected);
        return;
    }
    let mut buf = BytesMut::from(bytes);
    assert_eq!(
        Decoder::new(version).decode(&mut buf),
        Ok(Some(expected.clone()))
    );
    assert!(buf.is_empty());
    let mut out = BytesMut::new();
    assert_eq!(encode(&expected, version, &mut out), Ok(bytes.len()));
    assert!(
        out[..] == *bytes,
        "{version}: encoded bytes of a {}-byte packet",
        bytes.len()
    );
    assert_eq!(encoded_len(&expected, version), Ok(bytes.len()));
    // Everything but the last byte: still waiting, nothing consumed.
    let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
    assert_eq!(Decoder::new(version).decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), bytes.len() - 1);
}

#[test]
fn remaining_length_268435455_header_is_read_without_allocating() {
    // 0xFF 0xFF 0xFF 0x7F is the largest remaining length (MQTT 3.1.1 section 2.2.3).
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    for v in ALL {
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            Decoder::new(v).decode(&mut buf),
            Ok(None),
            "{v}: fits the default limit"
        );
        assert_eq!(buf.len(), 5, "{v}: nothing consumed");
        assert!(
            buf.capacity() < 1024,
            "{v}: the decoder did not reserve the body"
        );
        let small = Decoder::new(v).with_max_packet_size(1_000);
        let err = small.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            tinymqtt::codec::DecodeError::PacketTooLarge {
                size: 268_435_460,
                max: 1_000
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    }
    assert_eq!(MAX_PACKET_SIZE, 268_435_460);
}

/// A v5 PUBLISH whose remaining length is `MAX_VAR_INT + extra`, cheap to build: 2047 user
/// properties share one 65,535-byte string, so only the counter sees 256 MiB.
fn huge_publish(extra: usize) -> Packet {
    let big = ByteStr::try_from("x".repeat(65_535)).unwrap();
    let pair_len = 1 + (2 + 65_535) + (2 + 65_535);
    let pairs = 2_047;
    let props_len = pairs * pair_len;
    assert_eq!(props_len, 268_310_525, "a four-byte property length");
    let topic_len = 3; // 0x00 0x01 'a'
    let payload_len = MAX_VAR_INT as usize - topic_len - 4 - props_len + extra;
    assert_eq!(payload_len, 124_923 + extra);
    let mut p = Publish::new(topic("a"), vec![0u8; payload_len]);
    p.properties.user_properties = vec![(big.clone(), big); pairs].into();
    Packet::Publish(p)
}

#[test]
fn remaining_length_268435455_encoded_len_and_encoder_limit() {
    // Exactly the largest remaining length: 1 + 4 + 268,435,455 bytes (not written).
    let p = huge_publish(0);
    assert_eq!(encoded_len(&p, V5), Ok(268_435_460));
    // One byte more cannot be expressed: the encoder refuses, and writes nothing.
    let p = huge_publish(1);
    let err = encoded_len(&p, V5).unwrap_err();
    assert!(
        matches!(err, EncodeError::PacketTooLarge { max, .. } if max == u64::from(MAX_PACKET_SIZE)),
        "{err:?}"
    );
    let mut buf = BytesMut::new();
    assert_eq!(encode(&p, V5, &mut buf), Err(err));
    assert!(buf.is_empty());
}

#[test]
fn encoder_max_packet_size_is_inclusive() {
    // 30 07 00 03 'a/b' 'hi' is 9 bytes.
    let p = Packet::Publish(publish("a/b", QoS::AtMostOnce, None, b"hi"));
    let e = Encoder::new(V3_1_1).with_max_packet_size(9);
    assert_eq!(e.encoded_len(&p), Ok(9));
    let mut buf = BytesMut::new();
    assert_eq!(e.encode(&p, &mut buf), Ok(9));
    let d = Decoder::new(V3_1_1).with_max_packet_size(9);
    assert_eq!(d.decode(&mut buf), Ok(Some(p)));
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// Every hand-made vector of one version, for the stream tests.
fn stream_vectors(v: ProtocolVersion) -> Vec<(Vec<u8>, Packet)> {
    let mut out = vec![
        (vec![0xC0, 0x00], Packet::PingReq),
        (vec![0xD0, 0x00], Packet::PingResp),
        (
            vec![0x62, 0x02, 0x00, 0x03],
            Packet::PubRel(PubAck::new(pid(3))),
        ),
        (
            cat(&[&[0x33, 0x08, 0x00, 0x03], b"a/b", &[0x00, 0x0A], b"x"]),
            Packet::Publish(Publish {
                retain: true,
                ..publish("a/b", QoS::AtLeastOnce, Some(10), b"x")
            }),
        ),
    ];
    if v.is_v5() {
        out[3].0.insert(9, 0x00);
        out[3].0[1] += 1;
        out.push(connect_v5_full());
        out.push((
            vec![0xE0, 0x01, 0x04],
            Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
        ));
        out.push((vec![0xF0, 0x00], Packet::Auth(Auth::default())));
    } else {
        out.push(connect_v311_spec_example());
        out.push((vec![0xE0, 0x00], Packet::Disconnect(Disconnect::default())));
    }
    out
}

#[test]
fn two_packets_in_one_buffer_come_out_one_after_the_other() {
    for v in ALL {
        let d = Decoder::new(v);
        let vectors = stream_vectors(v);
        for (a, pa) in &vectors {
            for (b, pb) in &vectors {
                let mut buf = BytesMut::from(&cat(&[a, b])[..]);
                assert_eq!(d.decode(&mut buf), Ok(Some(pa.clone())), "{v}");
                assert_eq!(&buf[..], &b[..], "{v}: the second packet is left untouched");
                assert_eq!(d.decode(&mut buf), Ok(Some(pb.clone())), "{v}");
                assert!(buf.is_empty());
                assert_eq!(
                    d.decode(&mut buf),
                    Ok(None),
                    "{v}: an empty buffer needs more"
                );
            }
        }
    }
}

#[test]
fn a_whole_stream_fed_in_every_chunk_size() {
    for v in ALL {
        let d = Decoder::new(v);
        let vectors = stream_vectors(v);
        let wire: Vec<u8> = vectors.iter().flat_map(|(b, _)| b.clone()).collect();
        let expected: Vec<Packet> = vectors.into_iter().map(|(_, p)| p).collect();
        for chunk in 1..=wire.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(p) = d.decode(&mut buf).unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(got, expected, "{v}: chunks of {chunk}");
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn decoded_payload_shares_the_received_buffer() {
    // The design promises payloads leave as `Bytes` split from the input, without a copy.
    let bytes = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = Decoder::new(V3_1_1).decode(&mut buf).unwrap() else {
        panic!("expected a publish");
    };
    assert_eq!(p.payload.as_ptr() as usize, start + 7);
    assert_eq!(p.topic.as_ptr() as usize, start + 4);
}
