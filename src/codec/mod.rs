//! The MQTT 3.1 / 3.1.1 / 5.0 codec: one packet model for every version.
//!
//! [`Decoder::decode`] takes bytes as they arrive and returns whole packets; [`encode`] writes
//! them. v5-only fields are empty under 3.1.x, and the encoder refuses what a version cannot
//! carry. Payloads and strings come out as slices of the received buffer, without copies.

mod build;
mod connack;
mod connect;
mod decoder;
mod disconnect;
mod encoder;
mod error;
mod packet;
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
pub use decoder::Decoder;
pub(crate) use disconnect::valid_disconnect;
pub use disconnect::{Auth, Disconnect};
pub use encoder::{encode, encoded_len, Encoder};
pub use error::{DecodeError, EncodeError};
pub use packet::{Packet, PacketType};
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

/// The largest packet the protocol can express: 1 header byte, 4 length bytes, 268,435,455.
pub const MAX_PACKET_SIZE: u32 = 1 + 4 + MAX_VAR_INT;
