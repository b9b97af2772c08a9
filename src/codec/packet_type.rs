//! The packet type in a fixed header, and the flags each type requires.

use std::fmt;

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
