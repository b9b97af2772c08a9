//! The MQTT 3.1 / 3.1.1 / 5.0 codec: one packet model for every version.
//!
//! [`Decoder::decode`] takes bytes as they arrive and returns whole packets; [`encode`] writes
//! them. v5-only fields are empty under 3.1.x, and the encoder refuses what a version cannot
//! carry. Payloads and strings come out as slices of the received buffer, without copies.
//!
//! This file holds the model ([`Packet`]); `decoder.rs` and `encoder.rs` the two directions,
//! one file per packet family its fields and wire form, `properties.rs` the MQTT 5 properties
//! (`user_properties.rs` a message's user properties, kept in wire form).

mod build;
mod connack;
mod connect;
mod decoder;
mod disconnect;
mod encoder;
mod error;
mod packet_type;
mod primitives;
mod properties;
mod property_id;
mod puback;
mod publish;
mod server;
mod suback;
mod subscribe;
mod unsubscribe;
mod user_properties;

pub(crate) use connack::valid_v5 as valid_connack;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use decoder::Decoder;
pub use disconnect::{Auth, Disconnect};
pub use encoder::{encode, encoded_len, Encoder};
pub use error::{DecodeError, EncodeError};
pub use packet_type::PacketType;
pub use primitives::MAX_VAR_INT;
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
pub use property_id::PropertyId;
pub use puback::{PubAck, PubComp, PubRec, PubRel};
pub use publish::Publish;
pub use server::ServerDecoder;
pub use suback::{SubAck, UnsubAck};
pub use subscribe::{RetainHandling, Subscribe, Subscription, SubscriptionOptions};
pub use unsubscribe::Unsubscribe;
pub use user_properties::{UserProperties, UserPropertiesIter, UserProperty};

use primitives::Sink;

use crate::types::ProtocolVersion;

/// The largest packet the protocol can express: 1 header byte, 4 length bytes, 268,435,455.
pub const MAX_PACKET_SIZE: u32 = 1 + 4 + MAX_VAR_INT;

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
