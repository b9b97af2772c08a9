//! `Encoder`: packets out as bytes for one version within a size limit, and the one-shot
//! `encode` / `encoded_len`.

use bytes::BytesMut;

use super::primitives::{var_int_len, Counter, Sink};
use super::properties::Properties;
use super::{EncodeError, Packet, Publish, MAX_PACKET_SIZE, MAX_VAR_INT};
use crate::types::{PacketId, ProtocolVersion, ReasonCode};

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
