//! Structured: the input is a recipe for a packet built through the public API, loosely (a
//! recipe may ask for what a version cannot carry). Whatever the encoder accepts must decode,
//! whole or in two pieces, to the same packet, and `encoded_len` must agree with `encode`.

#![no_main]

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tinymqtt::codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    Decoder, Disconnect, DisconnectProperties, Encoder, Packet, PayloadFormat, PubAck, Publish,
    PublishProperties, RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperty, Will,
    WillProperties,
};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

/// Reads a recipe. `props` says whether property sets get filled (always in MQTT 5, rarely
/// before, so that most 3.1.x recipes are encodable).
struct Recipe<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    props: bool,
}

impl Recipe<'_, '_> {
    fn bool(&mut self) -> Result<bool> {
        self.u.arbitrary()
    }

    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        Ok(if self.bool()? { Some(f(self)?) } else { None })
    }

    fn u16(&mut self) -> Result<u16> {
        self.u.arbitrary()
    }

    fn u32(&mut self) -> Result<u32> {
        self.u.arbitrary()
    }

    fn nz16(&mut self) -> Result<NonZeroU16> {
        Ok(NonZeroU16::new(self.u16()?).unwrap_or(NonZeroU16::MIN))
    }

    fn nz32(&mut self) -> Result<NonZeroU32> {
        Ok(NonZeroU32::new(self.u32()?).unwrap_or(NonZeroU32::MIN))
    }

    fn qos(&mut self) -> Result<QoS> {
        Ok(QoS::from_u8(self.u.int_in_range(0..=2)?).unwrap_or_default())
    }

    fn packet_id(&mut self) -> Result<PacketId> {
        Ok(PacketId::new(self.u16()?).unwrap_or(PacketId::MIN))
    }

    /// Any defined reason code, Success half of the time.
    fn reason_code(&mut self) -> Result<ReasonCode> {
        if self.bool()? {
            return Ok(ReasonCode::Success);
        }
        Ok(ReasonCode::from_u8(self.u.arbitrary()?).unwrap_or(ReasonCode::UnspecifiedError))
    }

    /// Text with U+0000 replaced, so most strings are valid.
    fn text(&mut self) -> Result<String> {
        let s: &str = self.u.arbitrary()?;
        Ok(s.replace('\0', "0"))
    }

    fn byte_str(&mut self) -> Result<ByteStr> {
        Ok(ByteStr::try_from(self.text()?).unwrap_or_default())
    }

    fn bytes(&mut self) -> Result<Bytes> {
        let b: &[u8] = self.u.arbitrary()?;
        Ok(Bytes::copy_from_slice(b))
    }

    fn users(&mut self) -> Result<Vec<UserProperty>> {
        let n = self.u.int_in_range(0..=3)?;
        (0..n)
            .map(|_| Ok((self.byte_str()?, self.byte_str()?)))
            .collect()
    }

    fn topic(&mut self) -> Result<TopicName> {
        let s = self.text()?.replace(['+', '#'], "x");
        Ok(TopicName::new(&s).unwrap_or_else(|_| TopicName::from_static("t")))
    }

    /// A filter from random levels, `+`, `#` and `$share/`; invalid ones become `a/+`.
    fn filter(&mut self) -> Result<TopicFilter> {
        let n = self.u.int_in_range(0..=4)?;
        let mut levels = Vec::new();
        for _ in 0..n {
            levels.push(match self.u.int_in_range(0..=3)? {
                0 => "+".to_string(),
                1 => "#".to_string(),
                _ => self.text()?,
            });
        }
        let mut filter = levels.join("/");
        if self.u.ratio(1, 4)? {
            filter = format!("$share/{}/{filter}", self.text()?);
        }
        Ok(TopicFilter::new(&filter).unwrap_or_else(|_| TopicFilter::from_static("a/+")))
    }

    fn payload_format(&mut self) -> Result<PayloadFormat> {
        Ok(if self.bool()? {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        })
    }

    /// A property set from `f`, or the empty one.
    fn props<T: Default>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.props {
            f(self)
        } else {
            Ok(T::default())
        }
    }

    fn ack_props(&mut self) -> Result<AckProperties> {
        self.props(|r| {
            Ok(AckProperties {
                reason_string: r.opt(Self::byte_str)?,
                user_properties: r.users()?,
            })
        })
    }

    fn will(&mut self) -> Result<Will> {
        Ok(Will {
            topic: self.topic()?,
            payload: self.bytes()?,
            qos: self.qos()?,
            retain: self.bool()?,
            properties: self.props(|r| {
                Ok(WillProperties {
                    will_delay_interval: r.opt(Self::u32)?,
                    payload_format_indicator: r.opt(Self::payload_format)?,
                    message_expiry_interval: r.opt(Self::u32)?,
                    content_type: r.opt(Self::byte_str)?,
                    response_topic: r.opt(Self::topic)?,
                    correlation_data: r.opt(Self::bytes)?,
                    user_properties: r.users()?.into(),
                })
            })?,
        })
    }

    fn connect(&mut self, protocol: ProtocolVersion) -> Result<Packet> {
        Ok(Packet::from(Connect {
            protocol,
            clean_start: self.bool()?,
            keep_alive: self.u16()?,
            client_id: self.byte_str()?,
            will: self.opt(Self::will)?,
            username: self.opt(Self::byte_str)?,
            password: self.opt(Self::bytes)?,
            properties: self.props(|r| {
                Ok(ConnectProperties {
                    session_expiry_interval: r.opt(Self::u32)?,
                    receive_maximum: r.opt(Self::nz16)?,
                    maximum_packet_size: r.opt(Self::nz32)?,
                    topic_alias_maximum: r.opt(Self::u16)?,
                    request_response_information: r.opt(Self::bool)?,
                    request_problem_information: r.opt(Self::bool)?,
                    user_properties: r.users()?,
                    authentication_method: r.opt(Self::byte_str)?,
                    authentication_data: r.opt(Self::bytes)?,
                })
            })?,
        }))
    }

    fn connack(&mut self) -> Result<Packet> {
        Ok(Packet::from(ConnAck {
            session_present: self.bool()?,
            reason_code: self.reason_code()?,
            properties: self.props(|r| {
                Ok(ConnAckProperties {
                    session_expiry_interval: r.opt(Self::u32)?,
                    receive_maximum: r.opt(Self::nz16)?,
                    maximum_qos: r.opt(Self::qos)?,
                    retain_available: r.opt(Self::bool)?,
                    maximum_packet_size: r.opt(Self::nz32)?,
                    assigned_client_identifier: r.opt(Self::byte_str)?,
                    topic_alias_maximum: r.opt(Self::u16)?,
                    reason_string: r.opt(Self::byte_str)?,
                    user_properties: r.users()?,
                    wildcard_subscription_available: r.opt(Self::bool)?,
                    subscription_identifiers_available: r.opt(Self::bool)?,
                    shared_subscription_available: r.opt(Self::bool)?,
                    server_keep_alive: r.opt(Self::u16)?,
                    response_information: r.opt(Self::byte_str)?,
                    server_reference: r.opt(Self::byte_str)?,
                    authentication_method: r.opt(Self::byte_str)?,
                    authentication_data: r.opt(Self::bytes)?,
                })
            })?,
        }))
    }

    fn publish(&mut self) -> Result<Packet> {
        let qos = self.qos()?;
        let dup = self.bool()?;
        let retain = self.bool()?;
        let topic = if self.u.ratio(1, 8)? {
            TopicName::empty()
        } else {
            self.topic()?
        };
        // Mostly the packet id the QoS asks for; now and then any.
        let packet_id = if self.u.ratio(1, 8)? {
            self.opt(Self::packet_id)?
        } else if qos == QoS::AtMostOnce {
            None
        } else {
            Some(self.packet_id()?)
        };
        let properties = self.props(|r| {
            let n = r.u.int_in_range(0..=3)?;
            let mut subscription_identifiers = Vec::new();
            for _ in 0..n {
                // Some above the variable byte integer maximum, which the encoder refuses.
                subscription_identifiers.push(
                    NonZeroU32::new(r.u.int_in_range(1..=0x1000_0000)?).unwrap_or(NonZeroU32::MIN),
                );
            }
            Ok(PublishProperties {
                payload_format_indicator: r.opt(Self::payload_format)?,
                message_expiry_interval: r.opt(Self::u32)?,
                topic_alias: r.opt(Self::nz16)?,
                response_topic: r.opt(Self::topic)?,
                correlation_data: r.opt(Self::bytes)?,
                user_properties: r.users()?.into(),
                subscription_identifiers,
                content_type: r.opt(Self::byte_str)?,
            })
        })?;
        Ok(Packet::Publish(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: self.bytes()?,
        }))
    }

    fn pub_ack(&mut self) -> Result<PubAck> {
        Ok(PubAck {
            packet_id: self.packet_id()?,
            reason_code: self.reason_code()?,
            properties: self.ack_props()?,
        })
    }

    fn subscription(&mut self) -> Result<Subscription> {
        let filter = self.filter()?;
        let qos = self.qos()?;
        // Options beyond QoS only now and then, so 3.1.x subscriptions are mostly encodable.
        let options = if self.u.ratio(1, 2)? {
            SubscriptionOptions {
                qos,
                no_local: self.bool()?,
                retain_as_published: self.bool()?,
                retain_handling: match self.u.int_in_range(0..=2)? {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            }
        } else {
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            }
        };
        Ok(Subscription { filter, options })
    }

    fn codes(&mut self, max: usize) -> Result<Vec<ReasonCode>> {
        let n = self.u.int_in_range(0..=max)?;
        (0..n).map(|_| self.reason_code()).collect()
    }

    fn packet(&mut self, v: ProtocolVersion) -> Result<Packet> {
        Ok(match self.u.int_in_range(1..=15)? {
            1 => self.connect(v)?,
            2 => self.connack()?,
            3 => self.publish()?,
            4 => Packet::PubAck(self.pub_ack()?),
            5 => Packet::PubRec(self.pub_ack()?),
            6 => Packet::PubRel(self.pub_ack()?),
            7 => Packet::PubComp(self.pub_ack()?),
            8 => {
                let n = self.u.int_in_range(0..=4)?;
                Packet::Subscribe(Subscribe {
                    packet_id: self.packet_id()?,
                    properties: self.props(|r| {
                        Ok(SubscribeProperties {
                            subscription_identifier: r.opt(Self::nz32)?,
                            user_properties: r.users()?,
                        })
                    })?,
                    filters: (0..n).map(|_| self.subscription()).collect::<Result<_>>()?,
                })
            }
            9 => Packet::SubAck(SubAck {
                packet_id: self.packet_id()?,
                properties: self.ack_props()?,
                reason_codes: self.codes(4)?,
            }),
            10 => {
                let n = self.u.int_in_range(0..=4)?;
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: self.packet_id()?,
                    properties: self.props(|r| {
                        Ok(UnsubscribeProperties {
                            user_properties: r.users()?,
                        })
                    })?,
                    filters: (0..n).map(|_| self.filter()).collect::<Result<_>>()?,
                })
            }
            11 => Packet::UnsubAck(UnsubAck {
                packet_id: self.packet_id()?,
                properties: self.ack_props()?,
                reason_codes: self.codes(if v.is_v5() { 4 } else { 1 })?,
            }),
            12 => Packet::PingReq,
            13 => Packet::PingResp,
            14 => Packet::Disconnect(Disconnect {
                reason_code: self.reason_code()?,
                properties: self.props(|r| {
                    Ok(DisconnectProperties {
                        session_expiry_interval: r.opt(Self::u32)?,
                        reason_string: r.opt(Self::byte_str)?,
                        user_properties: r.users()?,
                        server_reference: r.opt(Self::byte_str)?,
                    })
                })?,
            }),
            _ => Packet::Auth(Auth {
                reason_code: self.reason_code()?,
                properties: self.props(|r| {
                    Ok(AuthProperties {
                        authentication_method: r.opt(Self::byte_str)?,
                        authentication_data: r.opt(Self::bytes)?,
                        reason_string: r.opt(Self::byte_str)?,
                        user_properties: r.users()?,
                    })
                })?,
            }),
        })
    }
}

fn build(data: &[u8]) -> Result<(ProtocolVersion, Packet, usize)> {
    let mut u = Unstructured::new(data);
    let v = match u.int_in_range(0..=2)? {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let props = v.is_v5() || u.ratio(1, 16)?;
    let split: usize = u.arbitrary()?;
    let packet = Recipe { u: &mut u, props }.packet(v)?;
    Ok((v, packet, split))
}

fuzz_target!(|data: &[u8]| {
    let Ok((v, packet, split)) = build(data) else {
        return;
    };
    let encoder = Encoder::new(v);
    let mut wire = BytesMut::new();
    let len = encoder.encoded_len(&packet);
    let written = match encoder.encode(&packet, &mut wire) {
        Ok(n) => n,
        Err(e) => {
            assert_eq!(len, Err(e), "encoded_len and encode disagree");
            assert!(wire.is_empty(), "a refused packet writes nothing");
            return;
        }
    };
    assert_eq!(len, Ok(written), "encoded_len is exact");
    assert_eq!(written, wire.len(), "encode returns the bytes written");

    // Whole.
    let decoder = Decoder::new(v);
    let mut whole = wire.clone();
    match decoder.decode(&mut whole) {
        Ok(Some(p)) => assert_eq!(p, packet, "decode(encode(p)) != p"),
        other => panic!("encoded packet does not decode: {other:?}\n{packet:?}"),
    }
    assert!(whole.is_empty());

    // In two pieces: nothing before the second.
    let cut = split % written;
    let mut buf = BytesMut::from(&wire[..cut]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(None),
        "decoded from {cut} of {written} bytes"
    );
    assert_eq!(buf.len(), cut);
    buf.extend_from_slice(&wire[cut..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(packet)));
    assert!(buf.is_empty());
});
