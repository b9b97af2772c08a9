//! Negative codec tests: one per validation rule of the MQTT 3.1.1 and 5.0 specifications.
//!
//! Each decode test checks the exact [`DecodeError`] and the reason code it maps to (the code a
//! server would put in CONNACK or DISCONNECT). Normative statement numbers are MQTT 3.1.1's
//! unless marked v5; where the two differ both are cited. The encoder tests at the end check
//! what the encoder refuses to write.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use tinymqtt::codec::{
    encode, encoded_len, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, EncodeError,
    Encoder, Packet, PacketType, PropertyId, PubAck, Publish, PublishProperties, RetainHandling,
    SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck,
    Unsubscribe, UnsubscribeProperties, Will, WillProperties,
};
use tinymqtt::topic::TopicError;
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, StringError, TopicFilter, TopicName};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V3_1_1: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const ALL: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];
const V3X: [ProtocolVersion; 2] = [V3_1, V3_1_1];

const MALFORMED: ReasonCode = ReasonCode::MalformedPacket; // 0x81
const PROTOCOL: ReasonCode = ReasonCode::ProtocolError; // 0x82
const TOO_LARGE: ReasonCode = ReasonCode::PacketTooLarge; // 0x95
const TOPIC_NAME: ReasonCode = ReasonCode::TopicNameInvalid; // 0x90
const TOPIC_FILTER: ReasonCode = ReasonCode::TopicFilterInvalid; // 0x8F
const VERSION: ReasonCode = ReasonCode::UnsupportedProtocolVersion; // 0x84

/// Decodes `$bytes` as a whole with a `$v` decoder; asserts the error matches `$pat` and maps
/// to `$rc`.
macro_rules! assert_decode_err {
    ($v:expr, $bytes:expr, $pat:pat $(if $guard:expr)?, $rc:expr) => {{
        let v: ProtocolVersion = $v;
        let bytes: &[u8] = &$bytes;
        let got = Decoder::new(v).decode(&mut BytesMut::from(bytes));
        match got {
            Err(err) => {
                assert!(
                    matches!(err.clone(), $pat $(if $guard)?),
                    "{v}: {bytes:02X?} gave {err:?}, expected {}",
                    stringify!($pat)
                );
                assert_eq!(err.reason_code(), $rc, "{v}: reason code of {err:?}");
            }
            Ok(p) => panic!(
                "{v}: {bytes:02X?} decoded to {p:?}, expected {}",
                stringify!($pat)
            ),
        }
    }};
}

/// Asserts that `$packet` cannot be encoded for `$v`: the error matches `$pat`, nothing is
/// written, and `encoded_len` refuses the same way.
macro_rules! assert_encode_err {
    ($v:expr, $packet:expr, $pat:pat $(if $guard:expr)?) => {{
        let v: ProtocolVersion = $v;
        let packet: Packet = $packet;
        let mut buf = BytesMut::new();
        match encode(&packet, v, &mut buf) {
            Err(err) => {
                assert!(
                    matches!(err.clone(), $pat $(if $guard)?),
                    "{v}: {packet:?} gave {err:?}, expected {}",
                    stringify!($pat)
                );
                assert!(buf.is_empty(), "{v}: nothing is written on error");
                assert_eq!(encoded_len(&packet, v), Err(err), "{v}: encoded_len agrees");
            }
            Ok(n) => panic!(
                "{v}: {packet:?} encoded to {n} bytes, expected {}",
                stringify!($pat)
            ),
        }
    }};
}

fn decode(v: ProtocolVersion, bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    Decoder::new(v).decode(&mut BytesMut::from(bytes))
}

/// A packet with a one-byte remaining length: the first byte, the length, the body.
fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128, "one-byte remaining length");
    [&[first, body.len() as u8][..], body].concat()
}

/// Two-byte length and the bytes.
fn lp(b: &[u8]) -> Vec<u8> {
    [&(b.len() as u16).to_be_bytes()[..], b].concat()
}

/// A CONNECT: protocol name and level, connect flags, keep alive 60, then `rest` (properties,
/// client id and so on, as the version requires).
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    pkt(
        0x10,
        &[&lp(name)[..], &[level, flags, 0x00, 0x3C], rest].concat(),
    )
}

/// A 3.1.1 CONNECT with an empty client id after the given flags.
fn connect4(flags: u8, payload: &[u8]) -> Vec<u8> {
    connect(b"MQTT", 4, flags, &[&[0x00, 0x00][..], payload].concat())
}

/// A v5 CONNECT with the given properties (without their length) and an empty client id.
fn connect5(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    connect(
        b"MQTT",
        5,
        flags,
        &[&[props.len() as u8][..], props, &[0x00, 0x00], payload].concat(),
    )
}

/// A QoS 0 PUBLISH with this raw topic and payload "x"; under v5 with these properties.
fn publish(v: ProtocolVersion, topic: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = lp(topic);
    if v.is_v5() {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.push(b'x');
    pkt(0x30, &body)
}

/// A SUBSCRIBE (packet id 1) with one raw filter and options byte.
fn subscribe(v: ProtocolVersion, filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v.is_v5() {
        body.push(0x00);
    }
    body.extend_from_slice(&lp(filter));
    body.push(options);
    pkt(0x82, &body)
}

/// An UNSUBSCRIBE (packet id 1) with one raw filter.
fn unsubscribe(v: ProtocolVersion, filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v.is_v5() {
        body.push(0x00);
    }
    body.extend_from_slice(&lp(filter));
    pkt(0xA2, &body)
}

/// A v5 PUBACK (packet id 1, reason code 0) with these properties.
fn puback5(props: &[u8]) -> Vec<u8> {
    pkt(
        0x40,
        &[&[0x00, 0x01, 0x00, props.len() as u8][..], props].concat(),
    )
}

use crate::support::pid;

fn topic(v: &'static str) -> TopicName {
    TopicName::from_static(v)
}

fn filter(v: &'static str) -> TopicFilter {
    TopicFilter::from_static(v)
}

// =============================================================================================
// Fixed header
// =============================================================================================

/// Every non-PUBLISH packet type with wrong flag bits, and a body that would otherwise do.
fn wrong_flags() -> Vec<(u8, PacketType, Vec<u8>)> {
    vec![
        (0x11, PacketType::Connect, connect4(0x02, &[])),
        (0x28, PacketType::ConnAck, vec![0x00, 0x00]),
        (0x41, PacketType::PubAck, vec![0x00, 0x01]),
        (0x54, PacketType::PubRec, vec![0x00, 0x01]),
        (0x78, PacketType::PubComp, vec![0x00, 0x01]),
        (0x91, PacketType::SubAck, vec![0x00, 0x01, 0x00]),
        (0xB2, PacketType::UnsubAck, vec![0x00, 0x01]),
        (0xC1, PacketType::PingReq, vec![]),
        (0xDF, PacketType::PingResp, vec![]),
        (0xE2, PacketType::Disconnect, vec![]),
    ]
}

#[test]
fn mqtt_2_2_2_2_reserved_fixed_header_flags_are_malformed() {
    // [MQTT-2.2.2-1] reserved flags MUST be set to the listed values; [MQTT-2.2.2-2] invalid
    // flags close the connection. v5 [MQTT-2.1.3-1]: "If invalid flags are received it is a
    // Malformed Packet".
    for v in ALL {
        for (first, t, body) in wrong_flags() {
            let bytes = if t == PacketType::Connect {
                [&[first][..], &body[1..]].concat()
            } else {
                pkt(first, &body)
            };
            let flags = first & 0x0F;
            assert_decode_err!(
                v,
                bytes,
                DecodeError::InvalidFlags { packet, flags: f } if packet == t && f == flags,
                MALFORMED
            );
        }
    }
    assert_decode_err!(
        V5,
        [0xF1, 0x00],
        DecodeError::InvalidFlags {
            packet: PacketType::Auth,
            flags: 1
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_6_1_1_pubrel_subscribe_unsubscribe_flags_must_be_0010() {
    // [MQTT-3.6.1-1] PUBREL, [MQTT-3.8.1-1] SUBSCRIBE, [MQTT-3.10.1-1] UNSUBSCRIBE: bits 3-0
    // of the fixed header MUST be 0,0,1,0.
    for v in ALL {
        for flags in [0x0, 0x1, 0x3, 0x4, 0x6, 0xA, 0xF] {
            let cases = [
                (0x60, PacketType::PubRel, vec![0x00, 0x01]),
                (
                    0x80,
                    PacketType::Subscribe,
                    subscribe(v, b"a", 0)[2..].to_vec(),
                ),
                (
                    0xA0,
                    PacketType::Unsubscribe,
                    unsubscribe(v, b"a")[2..].to_vec(),
                ),
            ];
            for (base, t, body) in cases {
                assert_decode_err!(
                    v,
                    pkt(base | flags, &body),
                    DecodeError::InvalidFlags { packet, flags: f } if packet == t && f == flags,
                    MALFORMED
                );
            }
        }
    }
}

#[test]
fn mqtt_2_2_3_fifth_remaining_length_byte_is_malformed() {
    // MQTT 3.1.1 section 2.2.3 / v5 section 1.5.5: at most four bytes.
    for v in ALL {
        for bytes in [
            &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..],
            &[0xC0, 0x80, 0x80, 0x80, 0x80, 0x00],
            &[0x30, 0x80, 0x80, 0x80, 0x80], // known to be bad before the fifth byte ends
        ] {
            assert_decode_err!(v, bytes, DecodeError::MalformedRemainingLength, MALFORMED);
        }
    }
}

#[test]
fn mqtt_1_5_5_1_non_minimal_remaining_length_is_malformed_in_v5() {
    // v5 [MQTT-1.5.5-1] "The encoded value MUST use the minimum number of bytes necessary".
    assert_decode_err!(
        V5,
        [0xC0, 0x80, 0x00],
        DecodeError::MalformedRemainingLength,
        MALFORMED
    );
    assert_decode_err!(
        V5,
        [0x40, 0x82, 0x80, 0x00, 0x00, 0x01],
        DecodeError::MalformedRemainingLength,
        MALFORMED
    );
    // MQTT 3.1.1 section 2.2.3 does not forbid it: the same bytes decode.
    for v in V3X {
        assert_eq!(decode(v, &[0xC0, 0x80, 0x00]), Ok(Some(Packet::PingReq)));
        assert_eq!(
            decode(v, &[0x40, 0x82, 0x80, 0x00, 0x00, 0x01]),
            Ok(Some(Packet::PubAck(PubAck::new(pid(1)))))
        );
        // A non-minimal remaining length of 1 (`81 00`) is a one-byte body, too short for
        // an acknowledgement: not PUBACK 7 read from the length's second byte.
        for first in [0x40, 0x50, 0x62, 0x70] {
            assert!(
                matches!(
                    decode(v, &[first, 0x81, 0x00, 0x07]),
                    Err(DecodeError::Truncated { .. })
                ),
                "{first:#x}: {:?}",
                decode(v, &[first, 0x81, 0x00, 0x07])
            );
        }
    }
}

#[test]
fn mqtt_1_5_5_1_non_minimal_property_length_is_malformed() {
    // PUBACK: packet id 1, reason 0, property length 0 written as 0x80 0x00.
    assert_decode_err!(
        V5,
        pkt(0x40, &[0x00, 0x01, 0x00, 0x80, 0x00]),
        DecodeError::MalformedVarInt {
            field: "property length"
        },
        MALFORMED
    );
    // A v5 CONNECT follows v5 rules whatever the decoder's version.
    let bytes = connect(b"MQTT", 5, 0x02, &[0x80, 0x00, 0x00, 0x00]);
    for v in ALL {
        assert_decode_err!(
            v,
            bytes,
            DecodeError::MalformedVarInt {
                field: "property length"
            },
            MALFORMED
        );
    }
}

#[test]
fn mqtt_1_5_5_1_non_minimal_subscription_identifier_is_malformed() {
    // Subscription identifier 1 written as 0x81 0x00.
    let bytes = pkt(
        0x82,
        &[0x00, 0x01, 0x03, 0x0B, 0x81, 0x00, 0x00, 0x01, b'#', 0x00],
    );
    assert_decode_err!(
        V5,
        bytes,
        DecodeError::MalformedVarInt {
            field: "subscription identifier"
        },
        MALFORMED
    );
    assert_decode_err!(
        V5,
        publish(V5, b"a", &[0x0B, 0x81, 0x80, 0x00]),
        DecodeError::MalformedVarInt {
            field: "subscription identifier"
        },
        MALFORMED
    );
    // A property identifier is a variable byte integer too: 0x1F written as 0x9F 0x00.
    assert_decode_err!(
        V5,
        puback5(&[0x9F, 0x00, 0x00, 0x00]),
        DecodeError::MalformedVarInt {
            field: "property identifier"
        },
        MALFORMED
    );
}

#[test]
fn mqtt_2_2_1_packet_type_0_is_reserved() {
    // MQTT 3.1.1 table 2.1 / v5 table 2-1: 0 is "Reserved, Forbidden".
    for v in ALL {
        assert_decode_err!(
            v,
            [0x00, 0x00],
            DecodeError::ReservedPacketType(0),
            MALFORMED
        );
    }
}

#[test]
fn auth_packet_type_15_is_reserved_before_v5() {
    // MQTT 3.1.1 table 2.1: 15 is "Reserved, Forbidden"; AUTH exists only in v5.
    for v in V3X {
        assert_decode_err!(
            v,
            [0xF0, 0x00],
            DecodeError::ReservedPacketType(15),
            MALFORMED
        );
    }
    assert_eq!(
        decode(V5, &[0xF0, 0x00]),
        Ok(Some(Packet::Auth(Auth::default())))
    );
}

// =============================================================================================
// PUBLISH fixed header, packet identifiers
// =============================================================================================

#[test]
fn mqtt_3_3_1_4_publish_qos_3_is_malformed() {
    // [MQTT-3.3.1-4] "A PUBLISH Packet MUST NOT have both QoS bits set to 1".
    for v in ALL {
        for first in [0x36, 0x37, 0x3E] {
            let mut bytes = publish(v, b"a", &[]);
            bytes[0] = first;
            assert_decode_err!(
                v,
                bytes,
                DecodeError::InvalidQoS {
                    field: "publish qos"
                },
                MALFORMED
            );
        }
    }
}

#[test]
fn mqtt_3_3_1_2_dup_must_be_zero_on_qos0() {
    // [MQTT-3.3.1-2] "The DUP flag MUST be set to 0 for all QoS 0 messages".
    for v in ALL {
        for first in [0x38, 0x39] {
            let mut bytes = publish(v, b"a", &[]);
            bytes[0] = first;
            assert_decode_err!(v, bytes, DecodeError::DupOnQoS0, MALFORMED);
        }
    }
}

#[test]
fn mqtt_2_3_1_1_packet_identifier_must_be_non_zero() {
    // [MQTT-2.3.1-1] / v5 [MQTT-2.2.1-3]: SUBSCRIBE, UNSUBSCRIBE and PUBLISH (QoS > 0) MUST
    // contain a non-zero Packet Identifier; the acknowledgements echo one.
    for v in ALL {
        let props: &[u8] = if v.is_v5() { &[0x00] } else { &[] };
        let cases = [
            (
                0x32,
                PacketType::Publish,
                [&lp(b"a")[..], &[0, 0], props, b"x"].concat(),
            ),
            (
                0x34,
                PacketType::Publish,
                [&lp(b"a")[..], &[0, 0], props].concat(),
            ),
            (0x40, PacketType::PubAck, vec![0, 0]),
            (0x50, PacketType::PubRec, vec![0, 0]),
            (0x62, PacketType::PubRel, vec![0, 0]),
            (0x70, PacketType::PubComp, vec![0, 0]),
            (
                0x82,
                PacketType::Subscribe,
                [&[0, 0][..], props, &lp(b"a"), &[0]].concat(),
            ),
            (
                0x90,
                PacketType::SubAck,
                [&[0, 0][..], props, &[0]].concat(),
            ),
            (
                0xA2,
                PacketType::Unsubscribe,
                [&[0, 0][..], props, &lp(b"a")].concat(),
            ),
            (
                0xB0,
                PacketType::UnsubAck,
                [&[0, 0][..], props, if v.is_v5() { &[0] } else { &[] }].concat(),
            ),
        ];
        for (first, t, body) in cases {
            assert_decode_err!(
                v,
                pkt(first, &body),
                DecodeError::ZeroPacketId(p) if p == t,
                PROTOCOL
            );
        }
    }
}

// =============================================================================================
// UTF-8 strings
// =============================================================================================

#[test]
fn mqtt_1_5_3_1_ill_formed_utf8_is_malformed() {
    // [MQTT-1.5.3-1] / v5 [MQTT-1.5.4-1]: the character data MUST be well-formed UTF-8.
    for v in ALL {
        for bad in [
            &[0xFF][..],
            &[b'a', 0xC3, 0x28],
            &[0xC0, 0xAF],
            &[0xE2, 0x82],
        ] {
            assert_decode_err!(
                v,
                publish(v, bad, &[]),
                DecodeError::InvalidString {
                    field: "topic name",
                    error: StringError::InvalidUtf8
                },
                MALFORMED
            );
        }
    }
    assert_decode_err!(
        V3_1_1,
        connect(b"MQTT", 4, 0x02, &lp(&[0xFE])),
        DecodeError::InvalidString {
            field: "client identifier",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
    assert_decode_err!(
        V5,
        puback5(&[&[0x26][..], &lp(b"k"), &lp(&[0xFF])].concat()),
        DecodeError::InvalidString {
            field: "user property value",
            error: StringError::InvalidUtf8
        },
        MALFORMED
    );
}

#[test]
fn mqtt_1_5_3_1_encoded_surrogate_is_malformed() {
    // [MQTT-1.5.3-1]: "In particular this data MUST NOT include encodings of code points
    // between U+D800 and U+DFFF". 0xED 0xA0 0x80 would be U+D800.
    for v in ALL {
        assert_decode_err!(
            v,
            publish(v, &[0xED, 0xA0, 0x80], &[]),
            DecodeError::InvalidString {
                field: "topic name",
                error: StringError::InvalidUtf8
            },
            MALFORMED
        );
        assert_decode_err!(
            v,
            subscribe(v, &[b'a', 0xED, 0xBF, 0xBF], 0),
            DecodeError::InvalidString {
                field: "topic filter",
                error: StringError::InvalidUtf8
            },
            MALFORMED
        );
    }
}

#[test]
fn mqtt_1_5_3_2_null_character_is_malformed() {
    // [MQTT-1.5.3-2] / v5 [MQTT-1.5.4-2]: "MUST NOT include an encoding of the null character
    // U+0000".
    for v in ALL {
        assert_decode_err!(
            v,
            publish(v, b"a\0b", &[]),
            DecodeError::InvalidString {
                field: "topic name",
                error: StringError::NullCharacter
            },
            MALFORMED
        );
        assert_decode_err!(
            v,
            unsubscribe(v, b"\0"),
            DecodeError::InvalidString {
                field: "topic filter",
                error: StringError::NullCharacter
            },
            MALFORMED
        );
    }
    assert_decode_err!(
        V3_1_1,
        connect(b"MQTT", 4, 0x82, &[&lp(b"c")[..], &lp(b"u\0")].concat()),
        DecodeError::InvalidString {
            field: "user name",
            error: StringError::NullCharacter
        },
        MALFORMED
    );
}

#[test]
fn string_longer_than_the_packet_is_malformed() {
    // A length prefix that runs past the remaining length.
    for v in ALL {
        assert_decode_err!(
            v,
            pkt(0x30, &[0x00, 0x05, b'a', b'b']),
            DecodeError::Truncated {
                packet: PacketType::Publish
            },
            MALFORMED
        );
        assert_decode_err!(
            v,
            connect(b"MQTT", 4, 0x02, &[0x00, 0x04, b'a']),
            DecodeError::Truncated {
                packet: PacketType::Connect
            },
            MALFORMED
        );
        // Password: binary data, same rule.
        assert_decode_err!(
            v,
            connect(
                b"MQTT",
                4,
                0xC2,
                &[&lp(b"c")[..], &lp(b"u"), &[0x00, 0x09, 1]].concat()
            ),
            DecodeError::Truncated {
                packet: PacketType::Connect
            },
            MALFORMED
        );
    }
    // A string property running past the property length.
    assert_decode_err!(
        V5,
        puback5(&[0x1F, 0x00, 0x09, b'a']),
        DecodeError::Truncated {
            packet: PacketType::PubAck
        },
        MALFORMED
    );
}

#[test]
fn fields_cut_short_are_malformed() {
    for v in ALL {
        // PUBACK with a one-byte packet identifier.
        assert_decode_err!(
            v,
            [0x40, 0x01, 0x00],
            DecodeError::Truncated {
                packet: PacketType::PubAck
            },
            MALFORMED
        );
        // CONNECT that stops after the protocol level.
        assert_decode_err!(
            v,
            pkt(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04]),
            DecodeError::Truncated {
                packet: PacketType::Connect
            },
            MALFORMED
        );
        // CONNECT with the will flag but no will topic.
        assert_decode_err!(
            v,
            connect(b"MQTT", 4, 0x06, &lp(b"c")),
            DecodeError::Truncated {
                packet: PacketType::Connect
            },
            MALFORMED
        );
        // SUBSCRIBE whose last filter has no options byte.
        let mut bytes = subscribe(v, b"a/b", 0);
        bytes.pop();
        bytes[1] -= 1;
        assert_decode_err!(
            v,
            bytes,
            DecodeError::Truncated {
                packet: PacketType::Subscribe
            },
            MALFORMED
        );
    }
    // A property length longer than the packet, a four-byte property with two bytes.
    assert_decode_err!(
        V5,
        pkt(0x40, &[0x00, 0x01, 0x00, 0x05, 0x1F]),
        DecodeError::Truncated {
            packet: PacketType::PubAck
        },
        MALFORMED
    );
    assert_decode_err!(
        V5,
        publish(V5, b"a", &[0x02, 0x00, 0x00]),
        DecodeError::Truncated {
            packet: PacketType::Publish
        },
        MALFORMED
    );
}

// =============================================================================================
// Topic names and filters
// =============================================================================================

#[test]
fn mqtt_3_3_2_2_topic_name_must_not_contain_wildcards() {
    // [MQTT-3.3.2-2] "The Topic Name in the PUBLISH Packet MUST NOT contain wildcard
    // characters".
    for v in ALL {
        for name in [&b"a/+"[..], b"#", b"a/#", b"+/b", b"a+b"] {
            assert_decode_err!(
                v,
                publish(v, name, &[]),
                DecodeError::InvalidTopicName(TopicError::WildcardInName),
                TOPIC_NAME
            );
        }
    }
}

#[test]
fn mqtt_3_1_3_will_topic_must_not_contain_wildcards() {
    // The will topic is the topic name of the will PUBLISH ([MQTT-3.1.2-9], [MQTT-3.3.2-2]).
    let will = [&lp(b"c")[..], &lp(b"w/#"), &lp(b"")].concat();
    assert_decode_err!(
        V3_1_1,
        connect(b"MQTT", 4, 0x06, &will),
        DecodeError::InvalidTopicName(TopicError::WildcardInName),
        TOPIC_NAME
    );
    let will = [&[0x00][..], &lp(b"c"), &[0x00], &lp(b"+"), &lp(b"")].concat();
    assert_decode_err!(
        V5,
        connect(b"MQTT", 5, 0x06, &will),
        DecodeError::InvalidTopicName(TopicError::WildcardInName),
        TOPIC_NAME
    );
}

#[test]
fn mqtt_4_7_3_1_topic_name_must_not_be_empty_before_v5() {
    // [MQTT-4.7.3-1] "All Topic Names and Topic Filters MUST be at least one character long".
    for v in V3X {
        assert_decode_err!(
            v,
            publish(v, b"", &[]),
            DecodeError::InvalidTopicName(TopicError::Empty),
            TOPIC_NAME
        );
    }
    assert_decode_err!(
        V3_1_1,
        connect(
            b"MQTT",
            4,
            0x06,
            &[&lp(b"c")[..], &lp(b""), &lp(b"")].concat()
        ),
        DecodeError::InvalidTopicName(TopicError::Empty),
        TOPIC_NAME
    );
}

#[test]
fn mqtt_5_3_3_2_1_empty_topic_needs_a_topic_alias() {
    // v5 section 3.3.2.1: "It is a Protocol Error if the Topic Name is zero length and there
    // is no Topic Alias."
    assert_decode_err!(
        V5,
        publish(V5, b"", &[]),
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL
    );
    assert_decode_err!(
        V5,
        publish(V5, b"", &[0x02, 0x00, 0x00, 0x00, 0x05]),
        DecodeError::EmptyTopicWithoutAlias,
        PROTOCOL
    );
    let Ok(Some(Packet::Publish(p))) = decode(V5, &publish(V5, b"", &[0x23, 0x00, 0x01])) else {
        panic!("an empty topic with a topic alias is valid");
    };
    assert!(p.topic.is_empty());
    assert_eq!(p.properties.topic_alias, NonZeroU16::new(1));
}

#[test]
fn mqtt_4_7_1_2_multi_level_wildcard_must_be_last_and_alone() {
    // [MQTT-4.7.1-2] (v5 [MQTT-4.7.1-1]): '#' on its own or after '/', and last.
    for v in ALL {
        for f in [&b"a/b#"[..], b"#/a", b"a/#/b", b"##", b"a#"] {
            assert_decode_err!(
                v,
                subscribe(v, f, 0),
                DecodeError::InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard),
                TOPIC_FILTER
            );
            assert_decode_err!(
                v,
                unsubscribe(v, f),
                DecodeError::InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard),
                TOPIC_FILTER
            );
        }
    }
}

#[test]
fn mqtt_4_7_1_3_single_level_wildcard_must_be_a_whole_level() {
    // [MQTT-4.7.1-3] (v5 [MQTT-4.7.1-2]): '+' MUST occupy an entire level.
    for v in ALL {
        for f in [&b"+a"[..], b"a/b+", b"a/+b/c", b"++"] {
            assert_decode_err!(
                v,
                subscribe(v, f, 1),
                DecodeError::InvalidTopicFilter(TopicError::MisplacedSingleLevelWildcard),
                TOPIC_FILTER
            );
            assert_decode_err!(
                v,
                unsubscribe(v, f),
                DecodeError::InvalidTopicFilter(TopicError::MisplacedSingleLevelWildcard),
                TOPIC_FILTER
            );
        }
    }
}

#[test]
fn mqtt_4_7_3_1_topic_filter_must_not_be_empty() {
    for v in ALL {
        assert_decode_err!(
            v,
            subscribe(v, b"", 0),
            DecodeError::InvalidTopicFilter(TopicError::Empty),
            TOPIC_FILTER
        );
        assert_decode_err!(
            v,
            unsubscribe(v, b""),
            DecodeError::InvalidTopicFilter(TopicError::Empty),
            TOPIC_FILTER
        );
    }
}

#[test]
fn mqtt_4_8_2_1_shared_subscription_needs_a_share_name_and_a_filter() {
    // v5 [MQTT-4.8.2-1] a ShareName at least one character long; [MQTT-4.8.2-2] without '/',
    // '+' or '#', followed by '/' and a Topic Filter.
    assert_decode_err!(
        V5,
        subscribe(V5, b"$share//x", 0),
        DecodeError::InvalidTopicFilter(TopicError::InvalidShareName),
        TOPIC_FILTER
    );
    assert_decode_err!(
        V5,
        unsubscribe(V5, b"$share//x"),
        DecodeError::InvalidTopicFilter(TopicError::InvalidShareName),
        TOPIC_FILTER
    );
    assert_decode_err!(
        V5,
        subscribe(V5, b"$share/g+/x", 0),
        DecodeError::InvalidTopicFilter(TopicError::InvalidShareName),
        TOPIC_FILTER
    );
    for f in [&b"$share/g"[..], b"$share/g/"] {
        assert_decode_err!(
            V5,
            subscribe(V5, f, 0),
            DecodeError::InvalidTopicFilter(TopicError::EmptySharedFilter),
            TOPIC_FILTER
        );
    }
    assert_decode_err!(
        V5,
        subscribe(V5, b"$share/g/a#", 0),
        DecodeError::InvalidTopicFilter(TopicError::MisplacedMultiLevelWildcard),
        TOPIC_FILTER
    );
}

// =============================================================================================
// SUBSCRIBE, UNSUBSCRIBE payloads and subscription options
// =============================================================================================

#[test]
fn mqtt_3_8_3_3_subscribe_must_carry_a_filter() {
    // [MQTT-3.8.3-3] (v5 [MQTT-3.8.3-2]): at least one Topic Filter / options pair; v5:
    // "A SUBSCRIBE packet with no Payload is a Protocol Error."
    for v in V3X {
        assert_decode_err!(
            v,
            [0x82, 0x02, 0x00, 0x01],
            DecodeError::NoTopicFilters(PacketType::Subscribe),
            PROTOCOL
        );
    }
    assert_decode_err!(
        V5,
        [0x82, 0x03, 0x00, 0x01, 0x00],
        DecodeError::NoTopicFilters(PacketType::Subscribe),
        PROTOCOL
    );
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_must_carry_a_filter() {
    // [MQTT-3.10.3-2]; v5: "An UNSUBSCRIBE packet with no Payload is a Protocol Error."
    for v in V3X {
        assert_decode_err!(
            v,
            [0xA2, 0x02, 0x00, 0x01],
            DecodeError::NoTopicFilters(PacketType::Unsubscribe),
            PROTOCOL
        );
    }
    assert_decode_err!(
        V5,
        [0xA2, 0x03, 0x00, 0x01, 0x00],
        DecodeError::NoTopicFilters(PacketType::Unsubscribe),
        PROTOCOL
    );
}

#[test]
fn suback_and_v5_unsuback_must_carry_reason_codes() {
    // One return / reason code per filter of the request ([MQTT-3.8.4-6], v5 [MQTT-3.11.3-1]).
    for v in V3X {
        assert_decode_err!(
            v,
            [0x90, 0x02, 0x00, 0x01],
            DecodeError::NoReasonCodes(PacketType::SubAck),
            PROTOCOL
        );
    }
    assert_decode_err!(
        V5,
        [0x90, 0x03, 0x00, 0x01, 0x00],
        DecodeError::NoReasonCodes(PacketType::SubAck),
        PROTOCOL
    );
    assert_decode_err!(
        V5,
        [0xB0, 0x03, 0x00, 0x01, 0x00],
        DecodeError::NoReasonCodes(PacketType::UnsubAck),
        PROTOCOL
    );
}

#[test]
fn mqtt_3_8_3_4_subscribe_qos_3_and_reserved_bits_are_malformed_in_v311() {
    // [MQTT-3.8.3-4] "The Server MUST treat a SUBSCRIBE packet as malformed ... if any of
    // Reserved bits in the payload are non-zero, or QoS is not 0,1 or 2".
    for v in V3X {
        assert_decode_err!(
            v,
            subscribe(v, b"a", 0x03),
            DecodeError::InvalidQoS {
                field: "subscription options"
            },
            MALFORMED
        );
        for options in [0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
            assert_decode_err!(
                v,
                subscribe(v, b"a", options),
                DecodeError::InvalidSubscriptionOptions(_),
                MALFORMED
            );
        }
    }
}

#[test]
fn mqtt_3_8_3_5_reserved_subscription_option_bits_are_malformed_in_v5() {
    // v5 [MQTT-3.8.3-5] "The Server MUST treat a SUBSCRIBE packet as malformed if any of
    // Reserved bits in the Payload are non-zero".
    for options in [0x40, 0x80, 0xC1] {
        assert_decode_err!(
            V5,
            subscribe(V5, b"a", options),
            DecodeError::InvalidSubscriptionOptions(_),
            MALFORMED
        );
    }
}

#[test]
fn mqtt_5_3_8_3_1_subscription_maximum_qos_3_is_a_protocol_error() {
    // v5 section 3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3."
    assert_decode_err!(
        V5,
        subscribe(V5, b"a", 0x03),
        DecodeError::ForbiddenSubscriptionOptions(_),
        PROTOCOL
    );
}

#[test]
fn mqtt_5_3_8_3_1_retain_handling_3_is_a_protocol_error() {
    // v5 section 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3."
    assert_decode_err!(
        V5,
        subscribe(V5, b"a", 0x30),
        DecodeError::ForbiddenSubscriptionOptions(_),
        PROTOCOL
    );
}

#[test]
fn mqtt_3_8_3_4_no_local_on_a_shared_subscription_is_a_protocol_error() {
    // v5 [MQTT-3.8.3-4] "It is a Protocol Error to set the No Local bit to 1 on a Shared
    // Subscription".
    assert_decode_err!(
        V5,
        subscribe(V5, b"$share/g/a", 0x04),
        DecodeError::ForbiddenSubscriptionOptions(_),
        PROTOCOL
    );
    // No Local on a plain filter, and a shared filter without it, are fine.
    assert!(decode(V5, &subscribe(V5, b"a", 0x04)).unwrap().is_some());
    assert!(decode(V5, &subscribe(V5, b"$share/g/a", 0x09))
        .unwrap()
        .is_some());
}

// =============================================================================================
// Properties (v5 section 2.2.2)
// =============================================================================================

#[test]
fn mqtt_5_duplicate_property_is_a_protocol_error() {
    // v5: "It is a Protocol Error to include the <property> more than once" (each property).
    let dup = |property, packet| DecodeError::DuplicateProperty { property, packet };
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (
            publish(V5, b"a", &[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
            dup(PropertyId::MessageExpiryInterval, PacketType::Publish),
        ),
        (
            publish(V5, b"a", &[0x09, 0, 1, 7, 0x09, 0, 0]),
            dup(PropertyId::CorrelationData, PacketType::Publish),
        ),
        (
            publish(
                V5,
                b"a",
                &[&[0x08][..], &lp(b"r"), &[0x08], &lp(b"s")].concat(),
            ),
            dup(PropertyId::ResponseTopic, PacketType::Publish),
        ),
        (
            puback5(&[&[0x1F][..], &lp(b"a"), &[0x1F], &lp(b"b")].concat()),
            dup(PropertyId::ReasonString, PacketType::PubAck),
        ),
        (
            connect5(0x02, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1], &[]),
            dup(PropertyId::SessionExpiryInterval, PacketType::Connect),
        ),
        (
            pkt(0x82, &[0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0]),
            dup(PropertyId::SubscriptionIdentifier, PacketType::Subscribe),
        ),
        (
            pkt(0x20, &[0, 0, 4, 0x24, 0, 0x24, 1]),
            dup(PropertyId::MaximumQoS, PacketType::ConnAck),
        ),
    ];
    for (bytes, err) in cases {
        assert_decode_err!(V5, bytes, e if e == err, PROTOCOL);
    }
    // User properties may repeat, and PUBLISH may carry several subscription identifiers.
    assert!(decode(V5, &publish(V5, b"a", &[0x0B, 1, 0x0B, 2]))
        .unwrap()
        .is_some());
}

#[test]
fn mqtt_5_property_not_allowed_on_the_packet_is_a_protocol_error() {
    let not_allowed = |property, packet| DecodeError::PropertyNotAllowed { property, packet };
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        // Topic Alias in CONNECT properties.
        (
            connect5(0x02, &[0x23, 0x00, 0x01], &[]),
            not_allowed(PropertyId::TopicAlias, PacketType::Connect),
        ),
        // Will Delay Interval belongs in the will properties, not CONNECT's.
        (
            connect5(0x02, &[0x18, 0, 0, 0, 1], &[]),
            not_allowed(PropertyId::WillDelayInterval, PacketType::Connect),
        ),
        // Session Expiry Interval in the will properties.
        (
            connect5(
                0x06,
                &[],
                &[&[0x05, 0x11, 0, 0, 0, 1][..], &lp(b"w"), &lp(b"")].concat(),
            ),
            not_allowed(PropertyId::SessionExpiryInterval, PacketType::Connect),
        ),
        (
            publish(V5, b"a", &[0x11, 0, 0, 0, 1]),
            not_allowed(PropertyId::SessionExpiryInterval, PacketType::Publish),
        ),
        (
            puback5(&[0x23, 0x00, 0x01]),
            not_allowed(PropertyId::TopicAlias, PacketType::PubAck),
        ),
        (
            pkt(0xA2, &[0, 1, 2, 0x0B, 1, 0, 1, b'a']),
            not_allowed(PropertyId::SubscriptionIdentifier, PacketType::Unsubscribe),
        ),
        (
            pkt(0x20, &[0, 0, 2, 0x17, 1]),
            not_allowed(PropertyId::RequestProblemInformation, PacketType::ConnAck),
        ),
        (
            pkt(0xE0, &[0, 2, 0x24, 1]),
            not_allowed(PropertyId::MaximumQoS, PacketType::Disconnect),
        ),
        (
            pkt(0xF0, &[0x18, 5, 0x11, 0, 0, 0, 1]),
            not_allowed(PropertyId::SessionExpiryInterval, PacketType::Auth),
        ),
    ];
    for (bytes, err) in cases {
        assert_decode_err!(V5, bytes, e if e == err, PROTOCOL);
    }
}

#[test]
fn mqtt_5_unknown_property_identifier_is_malformed() {
    for id in [0x00, 0x04, 0x05, 0x0A, 0x2B, 0x7F] {
        assert_decode_err!(
            V5,
            puback5(&[id, 0x00]),
            DecodeError::UnknownProperty(got) if got == u32::from(id),
            MALFORMED
        );
    }
}

/// MQTT 5 section 3.3.2.3.4: a Topic Alias of 0 ([MQTT-3.3.2-8]) is answered with
/// DISCONNECT 0x94 (Topic Alias invalid).
#[test]
fn mqtt_3_3_2_8_topic_alias_zero_is_topic_alias_invalid() {
    assert_decode_err!(
        V5,
        publish(V5, b"a", &[0x23, 0, 0]),
        DecodeError::InvalidPropertyValue(PropertyId::TopicAlias),
        ReasonCode::TopicAliasInvalid
    );
}

#[test]
fn mqtt_5_invalid_property_values_are_protocol_errors() {
    use PropertyId::*;
    let cases: Vec<(Vec<u8>, PropertyId)> = vec![
        // "It is a Protocol Error to include the Receive Maximum value of 0" (3.1.2.11.3).
        (connect5(0x02, &[0x21, 0, 0], &[]), ReceiveMaximum),
        (pkt(0x20, &[0, 0, 3, 0x21, 0, 0]), ReceiveMaximum),
        // Maximum QoS: "a value other than 0 or 1" (3.2.2.3.4).
        (pkt(0x20, &[0, 0, 2, 0x24, 2]), MaximumQoS),
        // "It is a Protocol Error if the Subscription Identifier has a value of 0" (3.8.2.1.2).
        (
            pkt(0x82, &[0, 1, 2, 0x0B, 0, 0, 1, b'a', 0]),
            SubscriptionIdentifier,
        ),
        (publish(V5, b"a", &[0x0B, 0]), SubscriptionIdentifier),
        // Request Problem / Response Information: "a value other than 0 or 1".
        (connect5(0x02, &[0x17, 2], &[]), RequestProblemInformation),
        (connect5(0x02, &[0x19, 2], &[]), RequestResponseInformation),
        // "It is a Protocol Error to include ... the Maximum Packet Size ... value of zero".
        (connect5(0x02, &[0x27, 0, 0, 0, 0], &[]), MaximumPacketSize),
        (pkt(0x20, &[0, 0, 5, 0x27, 0, 0, 0, 0]), MaximumPacketSize),
        // Byte properties that are booleans.
        (pkt(0x20, &[0, 0, 2, 0x25, 2]), RetainAvailable),
        (
            pkt(0x20, &[0, 0, 2, 0x28, 2]),
            WildcardSubscriptionAvailable,
        ),
        (
            pkt(0x20, &[0, 0, 2, 0x29, 2]),
            SubscriptionIdentifierAvailable,
        ),
        (
            pkt(0x20, &[0, 0, 2, 0x2A, 0xFF]),
            SharedSubscriptionAvailable,
        ),
        (publish(V5, b"a", &[0x01, 2]), PayloadFormatIndicator),
        // "The Response Topic MUST NOT contain wildcard characters" ([MQTT-3.3.2-14]).
        (
            publish(V5, b"a", &[&[0x08][..], &lp(b"r/#")].concat()),
            ResponseTopic,
        ),
        // "It is a Protocol Error to include Authentication Data if there is no Authentication
        // Method" (3.1.2.11.10).
        (connect5(0x02, &[0x16, 0, 1, 9], &[]), AuthenticationData),
    ];
    for (bytes, id) in cases {
        assert_decode_err!(V5, bytes, DecodeError::InvalidPropertyValue(p) if p == id, PROTOCOL);
    }
}

// =============================================================================================
// Bytes left over
// =============================================================================================

#[test]
fn bytes_left_over_inside_a_packet_are_malformed() {
    let left = |packet, count| DecodeError::TrailingBytes { packet, count };
    for v in ALL {
        // PINGREQ and PINGRESP have no variable header (3.12, 3.13).
        assert_decode_err!(v, [0xC0, 0x01, 0x00], e if e == left(PacketType::PingReq, 1), MALFORMED);
        assert_decode_err!(
            v,
            [0xD0, 0x02, 0x00, 0x00],
            e if e == left(PacketType::PingResp, 2),
            MALFORMED
        );
        // CONNECT with a byte after the last field its flags announce.
        let bytes = if v.is_v5() {
            connect5(0x02, &[], &[0x00])
        } else {
            connect4(0x02, &[0x00])
        };
        assert_decode_err!(v, bytes, e if e == left(PacketType::Connect, 1), MALFORMED);
    }
    for v in V3X {
        // MQTT 3.1.1: PUBACK, CONNACK, UNSUBACK have a fixed remaining length of 2,
        // DISCONNECT of 0.
        for first in [0x40, 0x50, 0x62, 0x70, 0xB0] {
            assert_decode_err!(
                v,
                [first, 0x03, 0x00, 0x01, 0x00],
                DecodeError::TrailingBytes { count: 1, .. },
                MALFORMED
            );
        }
        assert_decode_err!(
            v,
            [0x20, 0x03, 0x00, 0x00, 0x00],
            e if e == left(PacketType::ConnAck, 1),
            MALFORMED
        );
        assert_decode_err!(v, [0xE0, 0x01, 0x00], e if e == left(PacketType::Disconnect, 1), MALFORMED);
    }
    // v5 PUBACK with a byte after its properties.
    assert_decode_err!(
        V5,
        [0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF],
        e if e == left(PacketType::PubAck, 1),
        MALFORMED
    );
}

// =============================================================================================
// CONNECT
// =============================================================================================

#[test]
fn mqtt_3_1_2_1_unknown_protocol_name() {
    // [MQTT-3.1.2-1]; v5: the server MAY answer 0x84 (Unsupported Protocol Version).
    for name in [&b"MQTX"[..], b"mqtt", b"MQIsdP", b"", b"MQTTT"] {
        assert_decode_err!(
            V3_1_1,
            connect(name, 4, 0x02, &lp(b"c")),
            DecodeError::InvalidProtocolName,
            VERSION
        );
    }
}

#[test]
fn mqtt_3_1_2_2_protocol_name_and_level_must_go_together() {
    // [MQTT-3.1.2-2]: an unsupported level is answered with 0x01 / 0x84.
    let cases: [(&[u8], u8); 7] = [
        (b"MQTT", 3),
        (b"MQIsdp", 4),
        (b"MQIsdp", 5),
        (b"MQTT", 6),
        (b"MQTT", 0),
        (b"MQTT", 0x84),
        (b"MQIsdp", 1),
    ];
    for (name, level) in cases {
        for v in ALL {
            assert_decode_err!(
                v,
                connect(name, level, 0x02, &lp(b"c")),
                DecodeError::UnsupportedProtocolLevel(l) if l == level,
                VERSION
            );
        }
    }
}

#[test]
fn mqtt_3_1_2_3_connect_reserved_flag_must_be_zero() {
    // [MQTT-3.1.2-3] "The Server MUST validate that the reserved flag in the CONNECT Control
    // Packet is set to zero"; v5: "If the reserved flag is not 0 it is a Malformed Packet".
    assert_decode_err!(
        V3_1,
        connect(b"MQIsdp", 3, 0x03, &lp(b"c")),
        DecodeError::InvalidConnectFlags(_),
        MALFORMED
    );
    assert_decode_err!(
        V3_1_1,
        connect4(0x03, &[]),
        DecodeError::InvalidConnectFlags(_),
        MALFORMED
    );
    assert_decode_err!(
        V5,
        connect5(0x01, &[], &[]),
        DecodeError::InvalidConnectFlags(_),
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_2_13_will_qos_must_be_zero_without_will_flag() {
    // [MQTT-3.1.2-13] (v5 [MQTT-3.1.2-11]) "If the Will Flag is set to 0, then the Will QoS
    // MUST be set to 0".
    for flags in [0x0A, 0x12] {
        assert_decode_err!(
            V3_1_1,
            connect4(flags, &[]),
            DecodeError::InvalidConnectFlags(_),
            MALFORMED
        );
        assert_decode_err!(
            V5,
            connect5(flags, &[], &[]),
            DecodeError::InvalidConnectFlags(_),
            MALFORMED
        );
    }
}

#[test]
fn mqtt_3_1_2_15_will_retain_must_be_zero_without_will_flag() {
    // [MQTT-3.1.2-15] (v5 [MQTT-3.1.2-13]) "If the Will Flag is set to 0, then the Will
    // Retain Flag MUST be set to 0".
    assert_decode_err!(
        V3_1_1,
        connect4(0x22, &[]),
        DecodeError::InvalidConnectFlags(_),
        MALFORMED
    );
    assert_decode_err!(
        V5,
        connect5(0x22, &[], &[]),
        DecodeError::InvalidConnectFlags(_),
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_2_14_will_qos_3_is_malformed() {
    // [MQTT-3.1.2-14] (v5 [MQTT-3.1.2-12]) "It MUST NOT be 3"; v5: "A value of 3 (0x03) is a
    // Malformed Packet".
    let will = [&lp(b"w")[..], &lp(b"")].concat();
    assert_decode_err!(
        V3_1_1,
        connect4(0x1E, &will),
        DecodeError::InvalidQoS {
            field: "connect will qos"
        },
        MALFORMED
    );
    let will5 = [&[0x00][..], &will].concat();
    assert_decode_err!(
        V5,
        connect5(0x1E, &[], &will5),
        DecodeError::InvalidQoS {
            field: "connect will qos"
        },
        MALFORMED
    );
}

#[test]
fn mqtt_3_1_2_22_password_needs_a_user_name_before_v5() {
    // [MQTT-3.1.2-22] "If the User Name Flag is set to 0, the Password Flag MUST be set to 0".
    assert_decode_err!(
        V3_1_1,
        connect4(0x42, &lp(b"pw")),
        DecodeError::InvalidConnectFlags(_),
        MALFORMED
    );
    // v5 section 3.1.2.9 allows a password without a user name.
    let Ok(Some(Packet::Connect(c))) = decode(V5, &connect5(0x42, &[], &lp(b"pw"))) else {
        panic!("a v5 password without user name is valid");
    };
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
    assert_eq!(c.username, None);
}

// =============================================================================================
// CONNACK
// =============================================================================================

#[test]
fn mqtt_3_2_2_1_connack_reserved_flag_bits_must_be_zero() {
    // v5 [MQTT-3.2.2-1] / 3.1.1 section 3.2.2.1: bits 7-1 of the acknowledge flags are
    // reserved and MUST be 0.
    for flags in [0x02, 0x80, 0xFE] {
        assert_decode_err!(
            V3_1_1,
            [0x20, 0x02, flags, 0x00],
            DecodeError::InvalidConnAckFlags(_),
            MALFORMED
        );
        assert_decode_err!(
            V5,
            [0x20, 0x03, flags, 0x00, 0x00],
            DecodeError::InvalidConnAckFlags(_),
            MALFORMED
        );
    }
    // MQTT 3.1 has no session present flag: the whole byte is reserved.
    assert_decode_err!(
        V3_1,
        [0x20, 0x02, 0x01, 0x00],
        DecodeError::InvalidConnAckFlags(_),
        MALFORMED
    );
}

#[test]
fn mqtt_3_2_2_4_session_present_must_be_zero_when_refusing() {
    // [MQTT-3.2.2-4] (v5 [MQTT-3.2.2-6]) "If a server sends a CONNACK packet containing a
    // non-zero return code it MUST set Session Present to 0".
    assert_decode_err!(
        V3_1_1,
        [0x20, 0x02, 0x01, 0x05],
        DecodeError::InvalidConnAckFlags(_),
        MALFORMED
    );
    assert_decode_err!(
        V5,
        [0x20, 0x03, 0x01, 0x87, 0x00],
        DecodeError::InvalidConnAckFlags(_),
        MALFORMED
    );
}

// =============================================================================================
// Reason codes
// =============================================================================================

#[test]
fn reason_codes_the_packet_may_not_carry_are_malformed() {
    let bad = |packet, code| DecodeError::InvalidReasonCode { packet, code };
    let cases: Vec<(ProtocolVersion, Vec<u8>, DecodeError)> = vec![
        // MQTT 3.1.1 CONNACK return codes are 0-5 (table 3.1).
        (
            V3_1_1,
            vec![0x20, 0x02, 0x00, 0x06],
            bad(PacketType::ConnAck, 6),
        ),
        (
            V3_1_1,
            vec![0x20, 0x02, 0x00, 0x80],
            bad(PacketType::ConnAck, 0x80),
        ),
        (
            V3_1,
            vec![0x20, 0x02, 0x00, 0x06],
            bad(PacketType::ConnAck, 6),
        ),
        // v5 CONNACK: 0x03 is no reason code; 0x8E (session taken over) is not a CONNACK's.
        (
            V5,
            vec![0x20, 0x03, 0x00, 0x03, 0x00],
            bad(PacketType::ConnAck, 0x03),
        ),
        (
            V5,
            vec![0x20, 0x03, 0x00, 0x8E, 0x00],
            bad(PacketType::ConnAck, 0x8E),
        ),
        (
            V5,
            vec![0x20, 0x03, 0x00, 0x01, 0x00],
            bad(PacketType::ConnAck, 0x01),
        ),
        // PUBACK / PUBREC (table 3-4): no 0x92; PUBREL / PUBCOMP (3-6, 3-7): only 0x00, 0x92.
        (
            V5,
            vec![0x40, 0x03, 0x00, 0x01, 0x92],
            bad(PacketType::PubAck, 0x92),
        ),
        (
            V5,
            vec![0x50, 0x03, 0x00, 0x01, 0x92],
            bad(PacketType::PubRec, 0x92),
        ),
        (
            V5,
            vec![0x62, 0x03, 0x00, 0x01, 0x10],
            bad(PacketType::PubRel, 0x10),
        ),
        (
            V5,
            vec![0x70, 0x03, 0x00, 0x01, 0x80],
            bad(PacketType::PubComp, 0x80),
        ),
        (
            V5,
            vec![0x40, 0x03, 0x00, 0x01, 0x03],
            bad(PacketType::PubAck, 0x03),
        ),
        // SUBACK: 3.1.1 allows 0x00-0x02 and 0x80 only (3.9.3); v5 table 3-8.
        (
            V3_1_1,
            vec![0x90, 0x03, 0x00, 0x01, 0x87],
            bad(PacketType::SubAck, 0x87),
        ),
        (
            V3_1_1,
            vec![0x90, 0x03, 0x00, 0x01, 0x03],
            bad(PacketType::SubAck, 0x03),
        ),
        (
            V5,
            vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x11],
            bad(PacketType::SubAck, 0x11),
        ),
        // UNSUBACK (table 3-9).
        (
            V5,
            vec![0xB0, 0x04, 0x00, 0x01, 0x00, 0x10],
            bad(PacketType::UnsubAck, 0x10),
        ),
        // DISCONNECT (table 3-10): no 0x18, no 0x84 (a CONNACK code).
        (
            V5,
            vec![0xE0, 0x01, 0x18],
            bad(PacketType::Disconnect, 0x18),
        ),
        (
            V5,
            vec![0xE0, 0x01, 0x84],
            bad(PacketType::Disconnect, 0x84),
        ),
        (
            V5,
            vec![0xE0, 0x01, 0x03],
            bad(PacketType::Disconnect, 0x03),
        ),
        // AUTH (table 3-11): 0x00, 0x18, 0x19 only.
        (V5, vec![0xF0, 0x01, 0x87], bad(PacketType::Auth, 0x87)),
    ];
    for (v, bytes, err) in cases {
        assert_decode_err!(v, bytes, e if e == err, MALFORMED);
    }
}

// =============================================================================================
// Packet size
// =============================================================================================

#[test]
fn mqtt_3_1_2_24_packet_too_large_fails_on_the_header_before_the_body() {
    // v5 [MQTT-3.1.2-24] / [MQTT-3.2.2-15]: packets above the Maximum Packet Size are refused
    // with 0x95. The decoder knows the size from the fixed header alone: only it is fed.
    for v in ALL {
        let d = Decoder::new(v).with_max_packet_size(16);
        let mut buf = BytesMut::from(&[0x30, 0x0F][..]); // 2 + 15 = 17 bytes
        let err = d.decode(&mut buf).unwrap_err();
        assert_eq!(err, DecodeError::PacketTooLarge { size: 17, max: 16 });
        assert_eq!(err.reason_code(), TOO_LARGE);
        // A three-byte header claiming 128 bytes of body.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x01][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { size: 131, max: 16 })
        );
        // Exactly the limit is fine: it waits for the body, then decodes.
        let mut buf = BytesMut::from(&[0xC0, 0x0E][..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        // Even a packet that would fail later fails on its size first.
        let mut buf = BytesMut::from(&[0x00, 0x7F][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { .. })
        ));
    }
    let d = Decoder::new(V3_1_1).with_max_packet_size(9);
    let mut buf = BytesMut::from(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'][..]);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Publish(_)))));
}

#[test]
fn incomplete_header_or_body_is_ok_none_and_untouched() {
    for v in ALL {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0xFF, 0xFF, 0xFF],
            &[0x82, 0x80, 0x80],
            &[0x30, 0x05, 0x00, 0x03, b'a'],
            &[0x00], // even a reserved type: its length is not known yet
        ] {
            let mut buf = BytesMut::from(bytes);
            assert_eq!(
                Decoder::new(v).decode(&mut buf),
                Ok(None),
                "{v}: {bytes:02X?}"
            );
            assert_eq!(&buf[..], bytes, "{v}: buffer untouched");
        }
    }
}

// =============================================================================================
// Encoder refusals
// =============================================================================================

fn qos0(name: &'static str) -> Publish {
    Publish::new(topic(name), Bytes::from_static(b"x"))
}

#[test]
fn encoder_refuses_properties_before_v5() {
    for v in V3X {
        let mut p = qos0("a");
        p.properties.message_expiry_interval = Some(1);
        assert_encode_err!(v, Packet::Publish(p), EncodeError::NotInVersion { version, .. } if version == v);

        let mut c = Connect::new(v, ByteStr::from_static("c"));
        c.properties.session_expiry_interval = Some(1);
        assert_encode_err!(v, Packet::from(c), EncodeError::NotInVersion { .. });

        let mut c = Connect::new(v, ByteStr::from_static("c"));
        c.will = Some(Will {
            topic: topic("w"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(5),
                ..WillProperties::default()
            },
        });
        assert_encode_err!(v, Packet::from(c), EncodeError::NotInVersion { .. });

        let mut a = ConnAck::accepted(false);
        a.properties.receive_maximum = NonZeroU16::new(5);
        assert_encode_err!(v, Packet::from(a), EncodeError::NotInVersion { .. });

        let ack_props = AckProperties {
            reason_string: Some(ByteStr::from_static("r")),
            user_properties: vec![],
        };
        let mut ack = PubAck::new(pid(1));
        ack.properties = ack_props.clone();
        assert_encode_err!(
            v,
            Packet::PubAck(ack.clone()),
            EncodeError::NotInVersion { .. }
        );
        assert_encode_err!(v, Packet::PubComp(ack), EncodeError::NotInVersion { .. });
        let sa = SubAck {
            packet_id: pid(1),
            properties: ack_props.clone(),
            reason_codes: vec![ReasonCode::Success],
        };
        assert_encode_err!(v, Packet::SubAck(sa), EncodeError::NotInVersion { .. });
        let ua = UnsubAck {
            packet_id: pid(1),
            properties: ack_props,
            reason_codes: vec![],
        };
        assert_encode_err!(v, Packet::UnsubAck(ua), EncodeError::NotInVersion { .. });

        let s = Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties {
                subscription_identifier: NonZeroU32::new(1),
                user_properties: vec![],
            },
            filters: vec![Subscription::new(filter("a"), QoS::AtMostOnce)],
        };
        assert_encode_err!(v, Packet::Subscribe(s), EncodeError::NotInVersion { .. });
        let u = Unsubscribe {
            packet_id: pid(1),
            properties: UnsubscribeProperties {
                user_properties: vec![(ByteStr::from_static("k"), ByteStr::from_static("v"))],
            },
            filters: vec![filter("a")],
        };
        assert_encode_err!(v, Packet::Unsubscribe(u), EncodeError::NotInVersion { .. });
        let d = Disconnect {
            reason_code: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                ..DisconnectProperties::default()
            },
        };
        assert_encode_err!(v, Packet::Disconnect(d), EncodeError::NotInVersion { .. });
    }
}

#[test]
fn encoder_refuses_reason_codes_before_v5() {
    for v in V3X {
        let mut ack = PubAck::new(pid(1));
        ack.reason_code = ReasonCode::NoMatchingSubscribers;
        assert_encode_err!(v, Packet::PubAck(ack), EncodeError::NotInVersion { .. });
        let mut rel = PubAck::new(pid(1));
        rel.reason_code = ReasonCode::PacketIdentifierNotFound;
        assert_encode_err!(v, Packet::PubRel(rel), EncodeError::NotInVersion { .. });
        assert_encode_err!(
            v,
            Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
            EncodeError::NotInVersion { .. }
        );
        let ua = UnsubAck {
            packet_id: pid(1),
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::Success],
        };
        assert_encode_err!(v, Packet::UnsubAck(ua), EncodeError::NotInVersion { .. });
        // CONNACK: only the six codes that have a 3.1.x return code.
        let a = ConnAck {
            session_present: false,
            reason_code: ReasonCode::QuotaExceeded,
            properties: ConnAckProperties::default(),
        };
        assert_encode_err!(
            v,
            Packet::from(a),
            EncodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code: ReasonCode::QuotaExceeded
            }
        );
        // SUBACK: 0x00-0x02 and 0x80 only.
        let sa = SubAck {
            packet_id: pid(1),
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::NotAuthorized],
        };
        assert_encode_err!(
            v,
            Packet::SubAck(sa),
            EncodeError::InvalidReasonCode {
                packet: PacketType::SubAck,
                code: ReasonCode::NotAuthorized
            }
        );
    }
}

#[test]
fn encoder_refuses_auth_before_v5() {
    for v in V3X {
        assert_encode_err!(
            v,
            Packet::Auth(Auth::default()),
            EncodeError::NotInVersion { version, .. } if version == v
        );
    }
}

#[test]
fn encoder_refuses_subscription_options_other_than_qos_before_v5() {
    let opts = [
        SubscriptionOptions {
            no_local: true,
            ..SubscriptionOptions::default()
        },
        SubscriptionOptions {
            retain_as_published: true,
            ..SubscriptionOptions::default()
        },
        SubscriptionOptions {
            retain_handling: RetainHandling::DoNotSend,
            ..SubscriptionOptions::default()
        },
    ];
    for v in V3X {
        for options in opts {
            let s = Subscribe {
                packet_id: pid(1),
                properties: SubscribeProperties::default(),
                filters: vec![Subscription {
                    filter: filter("a"),
                    options,
                }],
            };
            assert_encode_err!(v, Packet::Subscribe(s), EncodeError::NotInVersion { .. });
        }
    }
}

#[test]
fn encoder_refuses_an_empty_topic_name() {
    // Before v5 a topic name is never empty; in v5 only with a topic alias.
    for v in V3X {
        assert_encode_err!(
            v,
            Packet::Publish(Publish::new(TopicName::empty(), "x")),
            EncodeError::NotInVersion { .. }
        );
    }
    assert_encode_err!(
        V5,
        Packet::Publish(Publish::new(TopicName::empty(), "x")),
        EncodeError::Invalid {
            packet: PacketType::Publish,
            ..
        }
    );
    let mut p = Publish::new(TopicName::empty(), "x");
    p.properties.topic_alias = NonZeroU16::new(1);
    assert_eq!(encoded_len(&Packet::Publish(p), V5), Ok(2 + 2 + 4 + 1));
}

#[test]
fn mqtt_2_3_1_5_packet_id_only_and_always_on_qos_1_and_2() {
    // [MQTT-2.3.1-5] "A PUBLISH Packet MUST NOT contain a Packet Identifier if its QoS value
    // is set to 0"; QoS 1 and 2 need one ([MQTT-2.3.1-1]).
    for v in ALL {
        let mut p = qos0("a");
        p.packet_id = Some(pid(1));
        assert_encode_err!(
            v,
            Packet::Publish(p),
            EncodeError::Invalid {
                packet: PacketType::Publish,
                ..
            }
        );
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let mut p = qos0("a");
            p.qos = qos;
            assert_encode_err!(
                v,
                Packet::Publish(p),
                EncodeError::Invalid {
                    packet: PacketType::Publish,
                    ..
                }
            );
        }
        // DUP on QoS 0 ([MQTT-3.3.1-2]).
        let mut p = qos0("a");
        p.dup = true;
        assert_encode_err!(
            v,
            Packet::Publish(p),
            EncodeError::Invalid {
                packet: PacketType::Publish,
                ..
            }
        );
    }
}

#[test]
fn encoder_refuses_requests_and_acks_without_entries() {
    for v in ALL {
        let s = Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![],
        };
        assert_encode_err!(
            v,
            Packet::Subscribe(s),
            EncodeError::Invalid {
                packet: PacketType::Subscribe,
                ..
            }
        );
        let u = Unsubscribe {
            packet_id: pid(1),
            properties: UnsubscribeProperties::default(),
            filters: vec![],
        };
        assert_encode_err!(
            v,
            Packet::Unsubscribe(u),
            EncodeError::Invalid {
                packet: PacketType::Unsubscribe,
                ..
            }
        );
        let sa = SubAck {
            packet_id: pid(1),
            properties: AckProperties::default(),
            reason_codes: vec![],
        };
        assert_encode_err!(
            v,
            Packet::SubAck(sa),
            EncodeError::Invalid {
                packet: PacketType::SubAck,
                ..
            }
        );
    }
    let ua = UnsubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reason_codes: vec![],
    };
    assert_encode_err!(
        V5,
        Packet::UnsubAck(ua),
        EncodeError::Invalid {
            packet: PacketType::UnsubAck,
            ..
        }
    );
}

#[test]
fn encoder_refuses_maximum_qos_2() {
    // v5 section 3.2.2.3.4: Maximum QoS is 0 or 1; absence means 2.
    let mut a = ConnAck::accepted(false);
    a.properties.maximum_qos = Some(QoS::ExactlyOnce);
    assert_encode_err!(
        V5,
        Packet::from(a),
        EncodeError::Invalid {
            packet: PacketType::ConnAck,
            ..
        }
    );
}

#[test]
fn encoder_refuses_a_packet_over_its_max_packet_size() {
    // 30 07 00 03 'a/b' 'hi' is 9 bytes.
    let p = Packet::Publish(Publish::new(topic("a/b"), "hi"));
    let e = Encoder::new(V3_1_1).with_max_packet_size(8);
    let mut buf = BytesMut::new();
    assert_eq!(
        e.encode(&p, &mut buf),
        Err(EncodeError::PacketTooLarge { size: 9, max: 8 })
    );
    assert!(buf.is_empty());
    assert_eq!(
        e.encoded_len(&p),
        Err(EncodeError::PacketTooLarge { size: 9, max: 8 })
    );
}

#[test]
fn encoder_refuses_a_connect_of_another_version() {
    for packet_version in ALL {
        for encoder in ALL {
            if packet_version == encoder {
                continue;
            }
            let c = Connect::new(packet_version, ByteStr::from_static("c"));
            assert_encode_err!(
                encoder,
                Packet::from(c),
                EncodeError::VersionMismatch { packet, encoder: e } if packet == packet_version && e == encoder
            );
        }
    }
}

#[test]
fn encoder_refuses_what_the_decoder_refuses() {
    // Password without user name before v5 ([MQTT-3.1.2-22]).
    for v in V3X {
        let mut c = Connect::new(v, ByteStr::from_static("c"));
        c.password = Some(Bytes::from_static(b"pw"));
        assert_encode_err!(v, Packet::from(c), EncodeError::NotInVersion { .. });
    }
    // No Local on a shared subscription (v5 [MQTT-3.8.3-4]).
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![Subscription {
            filter: filter("$share/g/a"),
            options: SubscriptionOptions {
                no_local: true,
                ..SubscriptionOptions::default()
            },
        }],
    };
    assert_encode_err!(
        V5,
        Packet::Subscribe(s),
        EncodeError::Invalid {
            packet: PacketType::Subscribe,
            ..
        }
    );
    // Session present with a refusal ([MQTT-3.2.2-4], v5 [MQTT-3.2.2-6]).
    for v in ALL {
        let a = ConnAck {
            session_present: true,
            reason_code: ReasonCode::NotAuthorized,
            properties: ConnAckProperties::default(),
        };
        assert_encode_err!(
            v,
            Packet::from(a),
            EncodeError::Invalid {
                packet: PacketType::ConnAck,
                ..
            }
        );
    }
    // Authentication data without a method (v5 3.1.2.11.10).
    let mut c = Connect::new(V5, ByteStr::from_static("c"));
    c.properties = ConnectProperties {
        authentication_data: Some(Bytes::from_static(b"d")),
        ..ConnectProperties::default()
    };
    assert_encode_err!(
        V5,
        Packet::from(c),
        EncodeError::Invalid {
            packet: PacketType::Connect,
            ..
        }
    );
    // Binary data longer than its two-byte length can say.
    let mut c = Connect::new(V5, ByteStr::from_static("c"));
    c.username = Some(ByteStr::from_static("u"));
    c.password = Some(Bytes::from(vec![0u8; 65_536]));
    assert_encode_err!(
        V5,
        Packet::from(c),
        EncodeError::Invalid {
            packet: PacketType::Connect,
            ..
        }
    );
    let mut p = qos0("a");
    p.properties = PublishProperties {
        correlation_data: Some(Bytes::from(vec![0u8; 65_536])),
        ..PublishProperties::default()
    };
    assert_encode_err!(
        V5,
        Packet::Publish(p),
        EncodeError::Invalid {
            packet: PacketType::Publish,
            ..
        }
    );
    let a = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(ByteStr::from_static("m")),
            authentication_data: Some(Bytes::from(vec![0u8; 65_536])),
            ..AuthProperties::default()
        },
    };
    assert_encode_err!(
        V5,
        Packet::Auth(a),
        EncodeError::Invalid {
            packet: PacketType::Auth,
            ..
        }
    );
}

#[test]
fn encoder_refuses_reason_codes_the_packet_may_not_carry() {
    let cases: Vec<(Packet, PacketType, ReasonCode)> = vec![
        (
            Packet::PubRel(PubAck {
                reason_code: ReasonCode::NoMatchingSubscribers,
                ..PubAck::new(pid(1))
            }),
            PacketType::PubRel,
            ReasonCode::NoMatchingSubscribers,
        ),
        (
            Packet::PubAck(PubAck {
                reason_code: ReasonCode::PacketIdentifierNotFound,
                ..PubAck::new(pid(1))
            }),
            PacketType::PubAck,
            ReasonCode::PacketIdentifierNotFound,
        ),
        (
            Packet::Auth(Auth {
                reason_code: ReasonCode::NotAuthorized,
                ..Auth::default()
            }),
            PacketType::Auth,
            ReasonCode::NotAuthorized,
        ),
        (
            Packet::Disconnect(Disconnect::new(ReasonCode::GrantedQoS1)),
            PacketType::Disconnect,
            ReasonCode::GrantedQoS1,
        ),
        (
            Packet::from(ConnAck {
                session_present: false,
                reason_code: ReasonCode::SessionTakenOver,
                properties: ConnAckProperties::default(),
            }),
            PacketType::ConnAck,
            ReasonCode::SessionTakenOver,
        ),
        (
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
            }),
            PacketType::SubAck,
            ReasonCode::NoSubscriptionExisted,
        ),
        (
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::GrantedQoS1],
            }),
            PacketType::UnsubAck,
            ReasonCode::GrantedQoS1,
        ),
    ];
    for (packet, t, rc) in cases {
        assert_encode_err!(
            V5,
            packet,
            EncodeError::InvalidReasonCode { packet, code } if packet == t && code == rc
        );
    }
}
