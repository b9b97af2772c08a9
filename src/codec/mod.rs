//! The MQTT 3.1 / 3.1.1 / 5.0 codec: one packet model for every version.
//!
//! [`Decoder::decode`] takes bytes as they arrive and returns whole packets; [`encode`] writes
//! them. v5-only fields are empty under 3.1.x, and the encoder refuses what a version cannot
//! carry. Payloads and strings come out as slices of the received buffer, without copies.

use std::fmt;

use bytes::BytesMut;

mod build;
mod connack;
mod connect;
mod disconnect;
mod error;
mod primitives;
mod properties;
mod puback;
mod publish;
mod server;
mod suback;
mod subscribe;
mod unsubscribe;

pub(crate) use connack::valid_v5 as valid_connack;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub(crate) use disconnect::valid_disconnect;
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use primitives::MAX_VAR_INT;
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PropertyId, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    UserProperty, WillProperties,
};
pub use puback::{PubAck, PubComp, PubRec, PubRel};
pub use publish::Publish;
pub use server::ServerDecoder;
pub use suback::{SubAck, UnsubAck};
pub use subscribe::{RetainHandling, Subscribe, Subscription, SubscriptionOptions};
pub use unsubscribe::Unsubscribe;

use primitives::{read_var_int, var_int_len, Counter, Reader, Sink, VarIntError};
use properties::Properties;

use crate::types::{PacketId, ProtocolVersion, ReasonCode};

/// The largest packet the protocol can express: 1 header byte, 4 length bytes, 268,435,455.
pub const MAX_PACKET_SIZE: u32 = 1 + 4 + MAX_VAR_INT;

/// The type in a packet's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PacketType {
    /// 1.
    Connect = 1,
    /// 2.
    ConnAck = 2,
    /// 3.
    Publish = 3,
    /// 4.
    PubAck = 4,
    /// 5.
    PubRec = 5,
    /// 6.
    PubRel = 6,
    /// 7.
    PubComp = 7,
    /// 8.
    Subscribe = 8,
    /// 9.
    SubAck = 9,
    /// 10.
    Unsubscribe = 10,
    /// 11.
    UnsubAck = 11,
    /// 12.
    PingReq = 12,
    /// 13.
    PingResp = 13,
    /// 14.
    Disconnect = 14,
    /// 15 (MQTT 5 only).
    Auth = 15,
}

impl PacketType {
    fn from_u8(v: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match v {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The specification's name, such as `PUBLISH`.
    pub const fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }

    /// The fixed-header flags this type requires (PUBLISH's are variable).
    const fn required_flags(self) -> u8 {
        match self {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: large and rare).
    Connect(Box<Connect>),
    /// CONNACK (boxed: large and rare).
    ConnAck(Box<ConnAck>),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5).
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    fn first_byte(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.first_byte(),
            _ => {
                let t = self.packet_type();
                ((t as u8) << 4) | t.required_flags()
            }
        }
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        match self {
            Packet::Connect(p) => p.check(v),
            Packet::ConnAck(p) => p.check(v),
            Packet::Publish(p) => p.check(v),
            Packet::PubAck(p) => p.check(v, PacketType::PubAck),
            Packet::PubRec(p) => p.check(v, PacketType::PubRec),
            Packet::PubRel(p) => p.check(v, PacketType::PubRel),
            Packet::PubComp(p) => p.check(v, PacketType::PubComp),
            Packet::Subscribe(p) => p.check(v),
            Packet::SubAck(p) => p.check(v),
            Packet::Unsubscribe(p) => p.check(v),
            Packet::UnsubAck(p) => p.check(v),
            Packet::PingReq | Packet::PingResp => Ok(()),
            Packet::Disconnect(p) => p.check(v),
            Packet::Auth(p) => p.check(v),
        }
    }

    fn write_body<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        match self {
            Packet::Connect(p) => p.write(s),
            Packet::ConnAck(p) => p.write(s, v),
            Packet::Publish(p) => p.write(s, v),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.write(s, v)
            }
            Packet::Subscribe(p) => p.write(s, v),
            Packet::SubAck(p) => p.write(s, v),
            Packet::Unsubscribe(p) => p.write(s, v),
            Packet::UnsubAck(p) => p.write(s, v),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.write(s, v),
            Packet::Auth(p) => p.write(s),
        }
    }
}

impl From<Publish> for Packet {
    fn from(p: Publish) -> Packet {
        Packet::Publish(p)
    }
}

impl From<Connect> for Packet {
    fn from(p: Connect) -> Packet {
        Packet::Connect(Box::new(p))
    }
}

impl From<ConnAck> for Packet {
    fn from(p: ConnAck) -> Packet {
        Packet::ConnAck(Box::new(p))
    }
}

/// Turns a byte stream into packets.
///
/// ```
/// use bytes::BytesMut;
/// use tinymqtt::codec::{Decoder, Packet};
/// use tinymqtt::ProtocolVersion;
///
/// let decoder = Decoder::new(ProtocolVersion::V3_1_1);
/// let mut buf = BytesMut::from(&[0xC0][..]); // the first byte of a PINGREQ
/// assert_eq!(decoder.decode(&mut buf), Ok(None)); // wait for more
/// buf.extend_from_slice(&[0x00]);
/// assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    /// The version to decode; CONNECT carries and uses its own.
    pub version: ProtocolVersion,
    /// The largest whole packet accepted, in bytes; larger ones fail before being buffered.
    pub max_packet_size: u32,
}

impl Decoder {
    /// A decoder for `version` with the protocol's own size limit.
    pub fn new(version: ProtocolVersion) -> Decoder {
        Decoder {
            version,
            max_packet_size: MAX_PACKET_SIZE,
        }
    }

    /// Sets the maximum packet size.
    pub fn with_max_packet_size(mut self, max: u32) -> Decoder {
        self.max_packet_size = max;
        self
    }

    /// Takes the next whole packet off the front of `buf`.
    ///
    /// Returns `Ok(None)` while the packet is incomplete, leaving `buf` untouched. The size limit
    /// is checked as soon as the fixed header is complete, before the body is waited for. After
    /// an error the stream cannot be resynchronised: close the connection with
    /// [`DecodeError::reason_code`].
    ///
    /// Inlined into the caller's loop (the fixed header and the plain-PUBLISH path are small), so
    /// a PUBLISH is built where the caller keeps it; other packets are read out of line.
    #[inline]
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let v5 = self.version.is_v5();
        let (remaining, len_bytes) = match read_var_int(&buf[1..], v5) {
            Ok(r) => r,
            Err(VarIntError::Incomplete) => return Ok(None),
            Err(VarIntError::Malformed) => return Err(DecodeError::MalformedRemainingLength),
        };
        let header = 1 + len_bytes;
        let total = header as u64 + u64::from(remaining);
        if total > u64::from(self.max_packet_size) {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: self.max_packet_size,
            });
        }
        let t = PacketType::from_u8(first >> 4)
            .filter(|t| *t != PacketType::Auth || v5)
            .ok_or(DecodeError::ReservedPacketType(first >> 4))?;
        let flags = first & 0x0F;
        if t != PacketType::Publish && flags != t.required_flags() {
            return Err(DecodeError::InvalidFlags { packet: t, flags });
        }
        let total = total as usize;
        if buf.len() < total {
            return Ok(None);
        }
        let v = self.version;
        if t == PacketType::Publish {
            return Publish::decode_from(buf, total, header, v, flags);
        }
        if total == 4 && header == 2 {
            // The usual PUBACK / PUBREC / PUBREL / PUBCOMP: a one-byte remaining length of 2
            // and a packet identifier alone (a zero one, or a longer length encoding that 3.1.x
            // allows, takes the general path).
            let id = PacketId::new(u16::from_be_bytes([buf[2], buf[3]]));
            let ack = |id| match t {
                PacketType::PubAck => Some(Packet::PubAck(PubAck::new(id))),
                PacketType::PubRec => Some(Packet::PubRec(PubAck::new(id))),
                PacketType::PubRel => Some(Packet::PubRel(PubAck::new(id))),
                PacketType::PubComp => Some(Packet::PubComp(PubAck::new(id))),
                _ => None,
            };
            if let Some(packet) = id.and_then(ack) {
                bytes::Buf::advance(buf, 4);
                return Ok(Some(packet));
            }
        }
        self.decode_other(buf, t, header, total, flags).map(Some)
    }

    /// Every packet but PUBLISH, whole in `buf`: split off and read.
    #[inline(never)]
    fn decode_other(
        &self,
        buf: &mut BytesMut,
        t: PacketType,
        header: usize,
        total: usize,
        flags: u8,
    ) -> Result<Packet, DecodeError> {
        let (v, v5) = (self.version, self.version.is_v5());
        let frame = buf.split_to(total).freeze();
        let mut r = Reader::new(&frame, header, t, v5);
        let packet = match t {
            PacketType::Connect => Packet::Connect(Box::new(Connect::read(&mut r)?)),
            PacketType::ConnAck => Packet::ConnAck(Box::new(ConnAck::read(&mut r, v)?)),
            // Taken by the early return above; kept exact rather than unreachable.
            PacketType::Publish => return Publish::decode(frame.clone(), header, v, flags),
            PacketType::PubAck => Packet::PubAck(PubAck::read(&mut r, v, t)?),
            PacketType::PubRec => Packet::PubRec(PubAck::read(&mut r, v, t)?),
            PacketType::PubRel => Packet::PubRel(PubAck::read(&mut r, v, t)?),
            PacketType::PubComp => Packet::PubComp(PubAck::read(&mut r, v, t)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::read(&mut r, v)?),
            PacketType::SubAck => Packet::SubAck(SubAck::read(&mut r, v)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::read(&mut r, v)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::read(&mut r, v)?),
            PacketType::PingReq => Packet::PingReq,
            PacketType::PingResp => Packet::PingResp,
            PacketType::Disconnect => Packet::Disconnect(Disconnect::read(&mut r, v)?),
            PacketType::Auth => Packet::Auth(Auth::read(&mut r)?),
        };
        r.finish()?;
        Ok(packet)
    }
}

/// Turns packets into bytes for one protocol version, within a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    /// The version to encode.
    pub version: ProtocolVersion,
    /// The largest packet the peer accepts (its Maximum Packet Size).
    pub max_packet_size: u32,
}

impl Encoder {
    /// An encoder for `version` with the protocol's own size limit.
    pub fn new(version: ProtocolVersion) -> Encoder {
        Encoder {
            version,
            max_packet_size: MAX_PACKET_SIZE,
        }
    }

    /// Sets the maximum packet size.
    pub fn with_max_packet_size(mut self, max: u32) -> Encoder {
        self.max_packet_size = max;
        self
    }

    /// The exact number of bytes [`Encoder::encode`] would write, or why it would refuse.
    pub fn encoded_len(&self, packet: &Packet) -> Result<usize, EncodeError> {
        self.prepare(packet).map(|(_, total)| total)
    }

    /// Checks the packet and returns its remaining length and whole size.
    fn prepare(&self, packet: &Packet) -> Result<(u32, usize), EncodeError> {
        packet.check(self.version)?;
        let mut c = Counter::default();
        packet.write_body(&mut c, self.version);
        let remaining = c.0;
        let too_large = |size: usize, max: u64| EncodeError::PacketTooLarge {
            size: size as u64,
            max,
        };
        if remaining > MAX_VAR_INT as usize {
            return Err(too_large(remaining + 5, u64::from(MAX_PACKET_SIZE)));
        }
        let remaining = remaining as u32;
        let total = 1 + var_int_len(remaining) + remaining as usize;
        if total as u64 > u64::from(self.max_packet_size) {
            return Err(too_large(total, u64::from(self.max_packet_size)));
        }
        Ok((remaining, total))
    }

    /// Appends the packet to `buf` and returns the number of bytes written.
    ///
    /// On error nothing is written.
    #[inline]
    pub fn encode(&self, packet: &Packet, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        match packet {
            Packet::Publish(p) => self.encode_publish(p, buf),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a)
                if a.reason_code == ReasonCode::Success
                    && a.properties.is_empty()
                    && self.max_packet_size >= 4 =>
            {
                // The usual acknowledgement: a packet identifier alone, in every version.
                let [hi, lo] = a.packet_id.get().to_be_bytes();
                buf.extend_from_slice(&[packet.first_byte(), 2, hi, lo]);
                Ok(4)
            }
            _ => self.encode_other(packet, buf),
        }
    }

    /// Every packet but PUBLISH: checked and sized by a counting pass, then written.
    #[inline(never)]
    fn encode_other(&self, packet: &Packet, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        let (remaining, total) = self.prepare(packet)?;
        buf.reserve(total);
        buf.put_u8(packet.first_byte());
        buf.put_var_int(remaining);
        packet.write_body(buf, self.version);
        Ok(total)
    }
}

impl Encoder {
    /// PUBLISH, the hot path: a plain packet (no properties, flags and packet id that agree,
    /// see [`Publish::is_plain`]) is sized by arithmetic and written in five appends at most,
    /// with no other check; the rest go through the general path. The bytes are the same
    /// either way (the spec vectors and round trips check both).
    #[inline(never)]
    fn encode_publish(&self, p: &Publish, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        if !p.is_plain() {
            return self.encode_publish_with_properties(p, buf);
        }
        let topic = p.topic.as_bytes();
        match self.encode_plain_publish(p.first_byte(), topic, p.packet_id, &p.payload, buf) {
            Some(n) => Ok(n),
            // The general path reports the error.
            None => self.encode_publish_with_properties(p, buf),
        }
    }

    /// Appends a PUBLISH without properties from its parts: the fixed header's first byte
    /// (flags that agree with `packet_id`), a non-empty topic of at most 65535 bytes, and the
    /// payload. `None` (nothing written) when it is larger than the peer accepts or the
    /// protocol allows; [`Encoder::encode`] of the same packet says which.
    #[inline]
    pub(crate) fn encode_plain_publish(
        &self,
        first_byte: u8,
        topic: &[u8],
        packet_id: Option<PacketId>,
        payload: &[u8],
        buf: &mut BytesMut,
    ) -> Option<usize> {
        debug_assert!(!topic.is_empty() && topic.len() <= usize::from(u16::MAX));
        debug_assert_eq!(first_byte & 0x06 == 0, packet_id.is_none());
        let v5 = self.version.is_v5();
        let id_len = if packet_id.is_some() { 2 } else { 0 };
        let remaining = 2 + topic.len() + id_len + usize::from(v5) + payload.len();
        let total = 1 + var_int_len(remaining as u32) + remaining;
        if remaining > MAX_VAR_INT as usize || total as u64 > u64::from(self.max_packet_size) {
            return None;
        }
        buf.reserve(total);
        // `put_u8` is BytesMut's own inlined store; its `put_u16` and small `extend_from_slice`
        // calls end in `memcpy`.
        let [topic_hi, topic_lo] = (topic.len() as u16).to_be_bytes();
        bytes::BufMut::put_u8(buf, first_byte);
        let mut rem = remaining as u32;
        while rem > 0x7F {
            bytes::BufMut::put_u8(buf, (rem & 0x7F) as u8 | 0x80);
            rem >>= 7;
        }
        bytes::BufMut::put_u8(buf, rem as u8);
        bytes::BufMut::put_u8(buf, topic_hi);
        bytes::BufMut::put_u8(buf, topic_lo);
        buf.extend_from_slice(topic);
        if let Some(id) = packet_id {
            let [hi, lo] = id.get().to_be_bytes();
            bytes::BufMut::put_u8(buf, hi);
            bytes::BufMut::put_u8(buf, lo);
        }
        if v5 {
            bytes::BufMut::put_u8(buf, 0);
        }
        buf.extend_from_slice(payload);
        Some(total)
    }

    /// PUBLISH with properties, or one the checks refuse.
    #[inline(never)]
    fn encode_publish_with_properties(
        &self,
        p: &Publish,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        p.check(self.version)?;
        let v5 = self.version.is_v5();
        let props = if v5 && !p.properties.is_empty() {
            let len = p.properties.len();
            var_int_len(len as u32) + len
        } else {
            usize::from(v5)
        };
        let id_len = if p.packet_id.is_some() { 2 } else { 0 };
        let remaining = 2 + p.topic.len() + id_len + props + p.payload.len();
        if remaining > MAX_VAR_INT as usize {
            return Err(EncodeError::PacketTooLarge {
                size: remaining as u64 + 5,
                max: u64::from(MAX_PACKET_SIZE),
            });
        }
        let total = 1 + var_int_len(remaining as u32) + remaining;
        if total as u64 > u64::from(self.max_packet_size) {
            return Err(EncodeError::PacketTooLarge {
                size: total as u64,
                max: u64::from(self.max_packet_size),
            });
        }
        buf.reserve(total);
        // First byte, remaining length (at most 4 bytes), topic length.
        let mut head = [0u8; 7];
        head[0] = p.first_byte();
        let mut n = 1;
        let mut rem = remaining as u32;
        loop {
            let mut b = (rem & 0x7F) as u8;
            rem >>= 7;
            if rem > 0 {
                b |= 0x80;
            }
            head[n] = b;
            n += 1;
            if rem == 0 {
                break;
            }
        }
        head[n..n + 2].copy_from_slice(&(p.topic.len() as u16).to_be_bytes());
        buf.extend_from_slice(&head[..n + 2]);
        buf.extend_from_slice(p.topic.as_bytes());
        // put_u16/put_u8 store in place; extend_from_slice would call memcpy for 1-2 bytes.
        if let Some(id) = p.packet_id {
            Sink::put_u16(buf, id.get());
        }
        if v5 {
            if p.properties.is_empty() {
                Sink::put_u8(buf, 0);
            } else {
                p.properties.write_with_len(buf);
            }
        }
        buf.extend_from_slice(&p.payload);
        Ok(total)
    }
}

/// Appends `packet` encoded for `version` to `buf`; see [`Encoder::encode`].
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<usize, EncodeError> {
    Encoder::new(version).encode(packet, buf)
}

/// The exact encoded size of `packet` for `version`; see [`Encoder::encoded_len`].
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    Encoder::new(version).encoded_len(packet)
}
