//! The packet model: `Packet`, one variant per packet type, and the fixed header's type.

use std::fmt;

use super::primitives::Sink;
use super::{
    Auth, ConnAck, Connect, Disconnect, EncodeError, PubAck, PubComp, PubRec, PubRel, Publish,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use crate::types::ProtocolVersion;

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
    pub(super) fn from_u8(v: u8) -> Option<PacketType> {
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
    pub(super) const fn required_flags(self) -> u8 {
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

    pub(super) fn first_byte(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.first_byte(),
            _ => {
                let t = self.packet_type();
                ((t as u8) << 4) | t.required_flags()
            }
        }
    }

    pub(super) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
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

    pub(super) fn write_body<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
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
