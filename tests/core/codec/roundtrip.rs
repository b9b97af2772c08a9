//! Property tests: `decode(encode(p)) == p` for every packet type in every protocol version,
//! whatever the chunks the bytes arrive in.
//!
//! The strategies build only valid packets: what a version cannot carry is left out (no
//! properties, reason codes or AUTH before MQTT 5), and reason codes come from the lists of the
//! specification, written out here on purpose rather than taken from the codec.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::TestCaseError;

use tinymqtt::codec::{
    encode, encoded_len, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, Decoder, Disconnect, DisconnectProperties, Encoder, Packet, PayloadFormat,
    PubAck, Publish, PublishProperties, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperty,
    Will, WillProperties, MAX_VAR_INT,
};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

// Reason codes allowed per packet, from the MQTT 5.0 specification.

/// 3.2.2.2 CONNACK.
const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// MQTT 3.1.1 3.2.2.3 CONNACK return codes 0-5, as the reason codes they map to.
const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
/// 3.4.2.1 PUBACK and 3.5.2.1 PUBREC.
const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// 3.6.2.1 PUBREL and 3.7.2.1 PUBCOMP.
const PUBREL_V5: &[u8] = &[0x00, 0x92];
/// 3.9.3 SUBACK.
const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// MQTT 3.1.1 3.9.3 SUBACK return codes.
const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
/// 3.11.3 UNSUBACK.
const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// 3.14.2.1 DISCONNECT.
const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// 3.15.2.1 AUTH.
const AUTH_V5: &[u8] = &[0x00, 0x18, 0x19];

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

// Building blocks.

fn reason_code(list: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(list).prop_map(|b| ReasonCode::from_u8(b).expect("a defined code"))
}

/// A code from `v5` under MQTT 5, from `v3` before (`None`: always Success).
fn reason_code_for(
    v: ProtocolVersion,
    v5: &'static [u8],
    v3: Option<&'static [u8]>,
) -> BoxedStrategy<ReasonCode> {
    match (v.is_v5(), v3) {
        (true, _) => reason_code(v5).boxed(),
        (false, Some(v3)) => reason_code(v3).boxed(),
        (false, None) => Just(ReasonCode::Success).boxed(),
    }
}

/// The strategy under MQTT 5; the default (empty properties) before.
fn v5_only<T>(v: ProtocolVersion, s: impl Strategy<Value = T> + 'static) -> BoxedStrategy<T>
where
    T: Default + Clone + std::fmt::Debug + 'static,
{
    if v.is_v5() {
        s.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

/// Any character but U+0000, mapping the ones in `banned` (and U+0000) to `x`.
fn chars(len: std::ops::Range<usize>, banned: &'static [char]) -> impl Strategy<Value = String> {
    vec(any::<char>(), len).prop_map(move |cs| {
        cs.into_iter()
            .map(|c| {
                if c == '\0' || banned.contains(&c) {
                    'x'
                } else {
                    c
                }
            })
            .collect()
    })
}

/// Random unicode without U+0000: mostly short, sometimes a few hundred bytes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![6 => chars(0..8, &[]), 1 => chars(0..200, &[])]
}

fn byte_str() -> impl Strategy<Value = ByteStr> {
    text().prop_map(|s| ByteStr::try_from(s).expect("no u+0000 and short"))
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => vec((byte_str(), byte_str()), 1..5),
    ]
}

/// Binary data (two-byte length).
fn binary() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..24),
        1 => vec(any::<u8>(), 0..400),
    ]
    .prop_map(Bytes::from)
}

/// A PUBLISH payload: mostly small, sometimes long enough for a three-byte remaining length.
fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        2 => vec(any::<u8>(), 64..400).prop_map(Bytes::from),
        1 => (16_384usize..17_000, any::<u64>()).prop_map(|(n, seed)| pseudo_random(n, seed)),
    ]
}

/// `n` bytes from a tiny xorshift generator: cheap large payloads.
fn pseudo_random(n: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    prop_oneof![
        Just(PacketId::MIN),
        Just(PacketId::MAX),
        (1u16..=u16::MAX).prop_map(|v| PacketId::new(v).expect("not zero")),
    ]
}

fn nonzero_u16() -> impl Strategy<Value = NonZeroU16> {
    (1u16..=u16::MAX).prop_map(|v| NonZeroU16::new(v).expect("not zero"))
}

fn nonzero_u32() -> impl Strategy<Value = NonZeroU32> {
    (1u32..=u32::MAX).prop_map(|v| NonZeroU32::new(v).expect("not zero"))
}

/// A subscription identifier, spread over the four variable byte integer lengths.
fn subscription_id() -> impl Strategy<Value = NonZeroU32> {
    prop_oneof![
        1u32..128,
        128u32..16_384,
        16_384u32..2_097_152,
        2_097_152u32..=MAX_VAR_INT,
    ]
    .prop_map(|v| NonZeroU32::new(v).expect("not zero"))
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    prop_oneof![Just(PayloadFormat::Unspecified), Just(PayloadFormat::Utf8)]
}

/// Authentication method and data: data only with a method.
fn auth_method_and_data() -> impl Strategy<Value = (Option<ByteStr>, Option<Bytes>)> {
    option::of((byte_str(), option::of(binary()))).prop_map(|m| match m {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

/// One topic level: no `/`, `+`, `#` or U+0000; may be empty.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => chars(0..6, &['/', '+', '#']),
        1 => prop::sample::select(&["a", "b", "", "$SYS", "sport", "ü"][..]).prop_map(String::from),
    ]
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    vec(level(), 1..5).prop_map(|levels| {
        let mut name = levels.join("/");
        if name.is_empty() {
            name.push('t');
        }
        TopicName::new(&name).expect("a valid topic name")
    })
}

/// A filter with `+` levels and maybe a final `#`, and maybe shared: `(filter, shared)`.
fn topic_filter() -> impl Strategy<Value = (TopicFilter, bool)> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_string())];
    let share = option::of(chars(1..6, &['/', '+', '#']));
    (vec(filter_level, 0..5), any::<bool>(), share).prop_map(|(mut levels, hash, share)| {
        if hash {
            levels.push("#".into());
        }
        let mut filter = levels.join("/");
        if filter.is_empty() {
            filter.push('+');
        }
        let shared = share.is_some();
        if let Some(group) = share {
            filter = format!("$share/{group}/{filter}");
        }
        (
            TopicFilter::new(&filter).expect("a valid topic filter"),
            shared,
        )
    })
}

// Properties.

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(nonzero_u32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        auth_method_and_data(),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, user, (am, ad))| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                authentication_method: am,
                authentication_data: ad,
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(byte_str()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(|(delay, pf, mei, ct, rt, cd, user)| WillProperties {
            will_delay_interval: delay,
            payload_format_indicator: pf,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user.into(),
        })
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let limits = (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(any::<bool>()),
        option::of(nonzero_u32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
    );
    let texts = (
        option::of(byte_str()),
        option::of(byte_str()),
        user_properties(),
        option::of(byte_str()),
        option::of(byte_str()),
        auth_method_and_data(),
    );
    (limits, texts).prop_map(
        |((sei, rm, mq, ra, mps, tam, wsa, sia, ssa, ska), (aci, rs, user, ri, sr, (am, ad)))| {
            ConnAckProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_qos: mq,
                retain_available: ra,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                topic_alias_maximum: tam,
                reason_string: rs,
                user_properties: user,
                wildcard_subscription_available: wsa,
                subscription_identifiers_available: sia,
                shared_subscription_available: ssa,
                server_keep_alive: ska,
                response_information: ri,
                server_reference: sr,
                authentication_method: am,
                authentication_data: ad,
            }
        },
    )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(payload_format()),
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(topic_name()),
        option::of(binary()),
        user_properties(),
        prop_oneof![Just(Vec::new()), vec(subscription_id(), 1..5)],
        option::of(byte_str()),
    )
        .prop_map(|(pf, mei, ta, rt, cd, user, ids, ct)| PublishProperties {
            payload_format_indicator: pf,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user.into(),
            subscription_identifiers: ids,
            content_type: ct,
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(byte_str()), user_properties()).prop_map(|(rs, user)| AckProperties {
        reason_string: rs,
        user_properties: user,
    })
}

fn subscribe_properties() -> impl Strategy<Value = SubscribeProperties> {
    (option::of(subscription_id()), user_properties()).prop_map(|(id, user)| SubscribeProperties {
        subscription_identifier: id,
        user_properties: user,
    })
}

fn unsubscribe_properties() -> impl Strategy<Value = UnsubscribeProperties> {
    user_properties().prop_map(|user| UnsubscribeProperties {
        user_properties: user,
    })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(byte_str()),
        user_properties(),
        option::of(byte_str()),
    )
        .prop_map(|(sei, rs, user, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: user,
            server_reference: sr,
        })
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        auth_method_and_data(),
        option::of(byte_str()),
        user_properties(),
    )
        .prop_map(|((am, ad), rs, user)| AuthProperties {
            authentication_method: am,
            authentication_data: ad,
            reason_string: rs,
            user_properties: user,
        })
}

// Packets.

fn will(v: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        v5_only(v, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        byte_str(),
        option::of(will(v)),
        option::of(byte_str()),
        option::of(binary()),
        v5_only(v, connect_properties()),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // Before MQTT 5 a password needs a user name.
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::from(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
        .boxed()
}

fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let code = if v.is_v5() {
        reason_code(CONNACK_V5).boxed()
    } else {
        reason_code(CONNACK_V3).boxed()
    };
    (any::<bool>(), code, v5_only(v, connack_properties()))
        .prop_map(move |(session_present, reason_code, properties)| {
            // Session present only on success, and never in MQTT 3.1.
            let session_present =
                session_present && reason_code == ReasonCode::Success && v != ProtocolVersion::V3_1;
            Packet::from(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn publish(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        v5_only(v, publish_properties()),
        payload(),
    )
        .prop_map(
            |(qos, dup, retain, topic, alias_only, id, properties, payload)| {
                let at_most_once = qos == QoS::AtMostOnce;
                // An empty topic name only stands with a topic alias (MQTT 5).
                let topic = if alias_only && properties.topic_alias.is_some() {
                    TopicName::empty()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: (!at_most_once).then_some(id),
                    properties,
                    payload,
                })
            },
        )
        .boxed()
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP, as `make` wraps it.
fn pub_ack(
    v: ProtocolVersion,
    codes: &'static [u8],
    make: fn(PubAck) -> Packet,
) -> BoxedStrategy<Packet> {
    (
        packet_id(),
        reason_code_for(v, codes, None),
        v5_only(v, ack_properties()),
    )
        .prop_map(move |(packet_id, reason_code, properties)| {
            make(PubAck {
                packet_id,
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn subscription(v: ProtocolVersion) -> impl Strategy<Value = Subscription> {
    let retain_handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend),
    ];
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling,
    )
        .prop_map(move |((filter, shared), qos, no_local, rap, rh)| {
            let options = if v.is_v5() {
                SubscriptionOptions {
                    qos,
                    // [MQTT-3.8.3-4]: no local is a protocol error on a shared subscription.
                    no_local: no_local && !shared,
                    retain_as_published: rap,
                    retain_handling: rh,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            };
            Subscription { filter, options }
        })
}

fn subscribe(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        packet_id(),
        v5_only(v, subscribe_properties()),
        vec(subscription(v), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
        .boxed()
}

fn suback(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        packet_id(),
        v5_only(v, ack_properties()),
        vec(reason_code_for(v, SUBACK_V5, Some(SUBACK_V3)), 1..6),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
        .boxed()
}

fn unsubscribe(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        packet_id(),
        v5_only(v, unsubscribe_properties()),
        vec(topic_filter().prop_map(|(f, _)| f), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
        .boxed()
}

fn unsuback(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    // MQTT 3.1.x UNSUBACK carries no reason codes.
    let codes = v5_only(v, vec(reason_code(UNSUBACK_V5), 1..6));
    (packet_id(), v5_only(v, ack_properties()), codes)
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
        .boxed()
}

fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        reason_code_for(v, DISCONNECT_V5, None),
        v5_only(v, disconnect_properties()),
    )
        .prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        })
        .boxed()
}

/// AUTH exists only in MQTT 5.
fn auth() -> BoxedStrategy<Packet> {
    (reason_code(AUTH_V5), auth_properties())
        .prop_map(|(reason_code, properties)| {
            Packet::Auth(Auth {
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn ping() -> BoxedStrategy<Packet> {
    prop_oneof![Just(Packet::PingReq), Just(Packet::PingResp)].boxed()
}

/// Any packet `v` can carry.
fn any_packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut all = vec![
        connect(v),
        connack(v),
        publish(v),
        pub_ack(v, PUBACK_V5, Packet::PubAck),
        pub_ack(v, PUBACK_V5, Packet::PubRec),
        pub_ack(v, PUBREL_V5, Packet::PubRel),
        pub_ack(v, PUBREL_V5, Packet::PubComp),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        ping(),
        disconnect(v),
    ];
    if v.is_v5() {
        all.push(auth());
    }
    Union::new(all).boxed()
}

/// How the bytes are cut: chunk sizes used in turn, over and over.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![1]),
        1 => Just(vec![usize::MAX]),
        2 => vec(1usize..=8, 1..8),
        2 => vec(1usize..=512, 1..8),
    ]
}

// Checks.

/// Encodes `packet`, checking that every way of asking for its size agrees.
fn encode_checked(v: ProtocolVersion, packet: &Packet) -> Result<BytesMut, TestCaseError> {
    let mut wire = BytesMut::from(&b"prefix"[..]);
    let written = Encoder::new(v)
        .encode(packet, &mut wire)
        .map_err(|e| TestCaseError::fail(format!("encoder refused {packet:?}: {e}")))?;
    let wire = wire.split_off(6);
    prop_assert_eq!(written, wire.len(), "bytes written");
    prop_assert_eq!(Encoder::new(v).encoded_len(packet), Ok(written));
    prop_assert_eq!(encoded_len(packet, v), Ok(written));
    let mut again = BytesMut::new();
    prop_assert_eq!(encode(packet, v, &mut again), Ok(written));
    prop_assert_eq!(&again, &wire, "encode and Encoder::encode agree");
    Ok(wire)
}

/// Feeds `wire` to a decoder in chunks and returns every packet it yields, in order.
fn decode_chunked(
    v: ProtocolVersion,
    wire: &[u8],
    chunks: &[usize],
) -> Result<Vec<(usize, Packet)>, TestCaseError> {
    let decoder = Decoder::new(v);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    for &size in chunks.iter().cycle() {
        if fed == wire.len() {
            break;
        }
        let n = size.min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(p)) => {
                    consumed += before - buf.len();
                    out.push((fed, p));
                }
                Ok(None) => {
                    prop_assert_eq!(buf.len(), before, "Ok(None) leaves the buffer untouched");
                    break;
                }
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "decode error {e} after {fed} of {} bytes",
                        wire.len()
                    )))
                }
            }
        }
        prop_assert_eq!(consumed + buf.len(), fed);
    }
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
    Ok(out)
}

/// One packet: encoded, cut into chunks and decoded only once the last chunk is in.
fn round_trip(v: ProtocolVersion, packet: &Packet, chunks: &[usize]) -> Result<(), TestCaseError> {
    let wire = encode_checked(v, packet)?;
    let decoded = decode_chunked(v, &wire, chunks)?;
    prop_assert_eq!(decoded.len(), 1, "exactly one packet");
    let (at, got) = &decoded[0];
    prop_assert_eq!(*at, wire.len(), "nothing before the last byte");
    prop_assert_eq!(got, packet);
    Ok(())
}

/// One test per packet type in one version.
macro_rules! round_trips {
    ($version:ident: $($name:ident => $strategy:expr;)*) => {
        #[allow(non_snake_case)]
        mod $version {
            use super::*;

            const V: ProtocolVersion = ProtocolVersion::$version;

            proptest! {
                $(
                    #[test]
                    fn $name(packet in $strategy, chunks in chunking()) {
                        round_trip(V, &packet, &chunks)?;
                    }
                )*

                #[test]
                fn concatenated(packets in vec(any_packet(V), 1..12), chunks in chunking()) {
                    let mut wire = BytesMut::new();
                    for p in &packets {
                        wire.extend_from_slice(&encode_checked(V, p)?);
                    }
                    let decoded: Vec<Packet> =
                        decode_chunked(V, &wire, &chunks)?.into_iter().map(|(_, p)| p).collect();
                    prop_assert_eq!(decoded, packets);
                }
            }
        }
    };
}

round_trips! { V3_1:
    connect => crate::codec::roundtrip::connect(V);
    connack => crate::codec::roundtrip::connack(V);
    publish => crate::codec::roundtrip::publish(V);
    puback => pub_ack(V, PUBACK_V5, Packet::PubAck);
    pubrec => pub_ack(V, PUBACK_V5, Packet::PubRec);
    pubrel => pub_ack(V, PUBREL_V5, Packet::PubRel);
    pubcomp => pub_ack(V, PUBREL_V5, Packet::PubComp);
    subscribe => crate::codec::roundtrip::subscribe(V);
    suback => crate::codec::roundtrip::suback(V);
    unsubscribe => crate::codec::roundtrip::unsubscribe(V);
    unsuback => crate::codec::roundtrip::unsuback(V);
    ping => crate::codec::roundtrip::ping();
    disconnect => crate::codec::roundtrip::disconnect(V);
}

round_trips! { V3_1_1:
    connect => crate::codec::roundtrip::connect(V);
    connack => crate::codec::roundtrip::connack(V);
    publish => crate::codec::roundtrip::publish(V);
    puback => pub_ack(V, PUBACK_V5, Packet::PubAck);
    pubrec => pub_ack(V, PUBACK_V5, Packet::PubRec);
    pubrel => pub_ack(V, PUBREL_V5, Packet::PubRel);
    pubcomp => pub_ack(V, PUBREL_V5, Packet::PubComp);
    subscribe => crate::codec::roundtrip::subscribe(V);
    suback => crate::codec::roundtrip::suback(V);
    unsubscribe => crate::codec::roundtrip::unsubscribe(V);
    unsuback => crate::codec::roundtrip::unsuback(V);
    ping => crate::codec::roundtrip::ping();
    disconnect => crate::codec::roundtrip::disconnect(V);
}

round_trips! { V5:
    connect => crate::codec::roundtrip::connect(V);
    connack => crate::codec::roundtrip::connack(V);
    publish => crate::codec::roundtrip::publish(V);
    puback => pub_ack(V, PUBACK_V5, Packet::PubAck);
    pubrec => pub_ack(V, PUBACK_V5, Packet::PubRec);
    pubrel => pub_ack(V, PUBREL_V5, Packet::PubRel);
    pubcomp => pub_ack(V, PUBREL_V5, Packet::PubComp);
    subscribe => crate::codec::roundtrip::subscribe(V);
    suback => crate::codec::roundtrip::suback(V);
    unsubscribe => crate::codec::roundtrip::unsubscribe(V);
    unsuback => crate::codec::roundtrip::unsuback(V);
    ping => crate::codec::roundtrip::ping();
    disconnect => crate::codec::roundtrip::disconnect(V);
    auth => crate::codec::roundtrip::auth();
}

/// A payload large enough for a four-byte remaining length, in every version.
#[test]
fn four_byte_remaining_length() {
    let payload = pseudo_random(2_097_152, 7);
    for v in VERSIONS {
        let mut publish = Publish::new(TopicName::from_static("big/ü"), payload.clone());
        publish.qos = QoS::ExactlyOnce;
        publish.packet_id = PacketId::new(9);
        let packet = Packet::Publish(publish);
        let wire = encode_checked(v, &packet).expect("encodes");
        assert_eq!(
            wire[1..5].iter().filter(|b| *b & 0x80 != 0).count(),
            3,
            "{v}"
        );
        // Byte by byte through the header, then in large pieces.
        let decoded = decode_chunked(v, &wire, &[1, 1, 1, 1, 1, 1, 65_536]).expect("decodes");
        assert_eq!(decoded.len(), 1, "{v}");
        assert_eq!(decoded[0].1, packet, "{v}");
    }
}

/// Writes seed inputs for the `decode` fuzz target from these strategies:
/// `cargo test --test core -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files under fuzz/corpus/decode"]
fn write_fuzz_seeds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let mut runner = TestRunner::deterministic();
    for (i, v) in VERSIONS.into_iter().enumerate() {
        let packets = vec(any_packet(v), 1..4);
        for n in 0..100 {
            // The decode target's first byte: version, no size limit, byte-sized chunks.
            let mut seed = vec![0x10 | i as u8];
            let tree = packets.new_tree(&mut runner).expect("a value");
            for p in tree.current() {
                seed.extend_from_slice(&encode_checked(v, &p).expect("encodes"));
            }
            if seed.len() <= 2048 {
                std::fs::write(dir.join(format!("seed-{v:?}-{n}")), seed).expect("write a seed");
            }
        }
    }
}
