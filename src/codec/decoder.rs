//! `Decoder`: bytes in, whole packets out, the size limit checked before buffering.

use bytes::BytesMut;

use super::primitives::{read_var_int, Reader, VarIntError};
use super::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, PacketType, PubAck, Publish, SubAck,
    Subscribe, UnsubAck, Unsubscribe, MAX_PACKET_SIZE,
};
use crate::types::{PacketId, ProtocolVersion};

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
