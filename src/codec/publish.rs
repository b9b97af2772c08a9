//! PUBLISH: an application message.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::primitives::not_in;
use super::primitives::{Reader, Sink};
use super::properties::{Properties, PublishProperties};
use super::{Packet, PacketType};
use crate::topic::TopicError;
use crate::types::{is_plain_ascii, ByteStr, PacketId, ProtocolVersion, QoS, TopicName};

const T: PacketType = PacketType::Publish;

/// PUBLISH: carries an application message either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Whether this is a redelivery (never on QoS 0).
    pub dup: bool,
    /// The delivery guarantee.
    pub qos: QoS,
    /// Whether the server keeps the message for future subscribers.
    pub retain: bool,
    /// The topic; empty only in MQTT 5 with a topic alias.
    pub topic: TopicName,
    /// Present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// MQTT 5 properties.
    pub properties: PublishProperties,
    /// The application message, shared with the received buffer.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message with no properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn first_byte(&self) -> u8 {
        0x30 | (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    /// Takes a whole PUBLISH of `total` bytes, body at `header`, off the front of `buf`.
    ///
    /// The common packet (an ASCII topic without U+0000 or wildcards, no MQTT 5 properties) is
    /// read straight from the received bytes and built in the returned value; anything else,
    /// errors included, goes through [`Publish::decode`], so both give the same answers.
    #[inline]
    pub(crate) fn decode_from(
        buf: &mut BytesMut,
        total: usize,
        header: usize,
        v: ProtocolVersion,
        flags: u8,
    ) -> Result<Option<Packet>, DecodeError> {
        let plain = plain_head(&buf[..total], header, v.is_v5(), flags);
        let frame = buf.split_to(total).freeze();
        let Some(h) = plain else {
            return Publish::decode(frame, header, v, flags).map(Some);
        };
        let topic = frame.slice(header + 2..h.topic_end);
        let mut payload = frame;
        payload.advance(h.payload_start);
        Ok(Some(Packet::Publish(Publish {
            dup: flags & 0x08 != 0,
            qos: h.qos,
            retain: flags & 0x01 != 0,
            topic: TopicName::from_checked(ByteStr::from_checked(topic)),
            packet_id: h.packet_id,
            properties: PublishProperties::default(),
            payload,
        })))
    }

    /// Decodes a whole PUBLISH frame whose body starts at `header`; `flags` are the fixed
    /// header's low four bits.
    ///
    /// The frame is taken by value so the payload can be the frame itself, advanced past the
    /// header fields: the hot path costs one shared-buffer clone (the topic), and the packet is
    /// built where it is returned.
    #[inline(never)]
    pub(crate) fn decode(
        frame: Bytes,
        header: usize,
        v: ProtocolVersion,
        flags: u8,
    ) -> Result<Packet, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS {
            field: "publish qos",
        })?;
        let dup = flags & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQoS0);
        }
        let mut r = Reader::new(&frame, header, T, v.is_v5());
        let (topic, wildcard) = r.topic_name()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId(T))?)
        };
        let properties = if v.is_v5() && !r.skip_empty_properties() {
            PublishProperties::read(&mut r)?
        } else {
            PublishProperties::default()
        };
        if wildcard {
            return Err(DecodeError::InvalidTopicName(TopicError::WildcardInName));
        }
        if topic.is_empty() {
            if !v.is_v5() {
                return Err(DecodeError::InvalidTopicName(TopicError::Empty));
            }
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
        }
        let start = r.position();
        let mut payload = frame;
        payload.advance(start);
        Ok(Packet::Publish(Publish {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic: TopicName::from_checked(topic),
            packet_id,
            properties,
            payload,
        }))
    }

    /// Whether it has no MQTT 5 property at all.
    #[inline]
    pub(crate) fn has_no_properties(&self) -> bool {
        self.properties.is_empty()
    }

    /// Whether [`Publish::check`] passes without looking further: no properties, a topic, and
    /// the flags and packet id agree. The encoder's fast path; the rest go through `check`.
    #[inline]
    pub(crate) fn is_plain(&self) -> bool {
        !self.topic.is_empty()
            && (self.qos == QoS::AtMostOnce) == self.packet_id.is_none()
            && !(self.dup && self.qos == QoS::AtMostOnce)
            && self.properties.is_empty()
    }

    pub(crate) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        let invalid = |reason| Err(EncodeError::Invalid { packet: T, reason });
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, Some(_)) => return invalid("qos 0 publish with a packet id"),
            (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
                return invalid("qos 1 or 2 publish without a packet id")
            }
            _ => {}
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return invalid("dup flag on a qos 0 publish");
        }
        if v.is_v5() {
            if self.topic.is_empty() && self.properties.topic_alias.is_none() {
                return invalid("empty topic name without a topic alias");
            }
        } else {
            if !self.properties.is_empty() {
                return Err(not_in(v, "publish properties"));
            }
            if self.topic.is_empty() {
                return Err(not_in(v, "an empty topic name"));
            }
        }
        self.properties.check(T)
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        s.put_str(self.topic.as_byte_str());
        if let Some(id) = self.packet_id {
            s.put_u16(id.get());
        }
        if v.is_v5() {
            self.properties.write_with_len(s);
        }
        s.put_slice(&self.payload);
    }
}

/// Where the fields of a plain PUBLISH lie in its frame.
struct PlainHead {
    qos: QoS,
    topic_end: usize,
    packet_id: Option<PacketId>,
    payload_start: usize,
}

/// Reads the variable header of the PUBLISH in `frame` (body at `header`) if it is plain: valid
/// flags, a non-empty ASCII topic without U+0000 or wildcards, a non-zero packet id where the
/// QoS needs one, and under MQTT 5 a zero property length. `None` for anything else, valid or
/// not; the full decoder then decides.
#[inline]
fn plain_head(frame: &[u8], header: usize, v5: bool, flags: u8) -> Option<PlainHead> {
    let qos = QoS::from_u8((flags >> 1) & 0x03)?;
    if flags & 0x08 != 0 && qos == QoS::AtMostOnce {
        return None;
    }
    let start = header + 2;
    let len = frame.get(header..start)?;
    let topic_end = start + usize::from(u16::from_be_bytes([len[0], len[1]]));
    let topic = frame.get(start..topic_end)?;
    if topic.is_empty() || !is_plain_ascii::<true>(topic) {
        return None;
    }
    let mut pos = topic_end;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        let id = frame.get(pos..pos + 2)?;
        pos += 2;
        Some(PacketId::new(u16::from_be_bytes([id[0], id[1]]))?)
    };
    if v5 {
        if *frame.get(pos)? != 0 {
            return None;
        }
        pos += 1;
    }
    Some(PlainHead {
        qos,
        topic_end,
        packet_id,
        payload_start: pos,
    })
}
