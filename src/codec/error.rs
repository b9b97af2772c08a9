//! Codec errors: what was wrong, where, and the reason code to answer with.

use super::property_id::PropertyId;
use super::PacketType;
use crate::topic::TopicError;
use crate::types::{ProtocolVersion, ReasonCode, StringError};

/// Why bytes from a peer are not a valid packet; the connection is over.
///
/// [`DecodeError::reason_code`] gives the code to put in CONNACK or DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet is larger than the configured maximum ([MQTT-3.1.2-24], [MQTT-3.2.2-15]).
    #[error("packet of {size} bytes exceeds the maximum packet size of {max}")]
    PacketTooLarge {
        /// The whole packet's size, header included.
        size: u64,
        /// The configured maximum.
        max: u32,
    },
    /// The remaining length has a fifth byte, or is not minimal under MQTT 5.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// A variable byte integer inside the packet is malformed.
    #[error("malformed variable byte integer in {field}")]
    MalformedVarInt {
        /// The field it encodes.
        field: &'static str,
    },
    /// Packet type 0, or 15 (AUTH) before MQTT 5.
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    /// The fixed header's flag bits are not the ones the packet type requires ([MQTT-2.2.2-2]).
    #[error("invalid fixed header flags {flags:#06b} for {packet}")]
    InvalidFlags {
        /// The packet type.
        packet: PacketType,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A QoS field holds 3 ([MQTT-3.3.1-4]).
    #[error("qos 3 in {field}")]
    InvalidQoS {
        /// The field.
        field: &'static str,
    },
    /// A QoS 0 PUBLISH has DUP set ([MQTT-3.3.1-2]).
    #[error("dup flag set on a qos 0 publish")]
    DupOnQoS0,
    /// A packet identifier is zero ([MQTT-2.2.1-3]).
    #[error("packet identifier 0 in {0}")]
    ZeroPacketId(PacketType),
    /// The packet ends in the middle of a field.
    #[error("{packet} ends in the middle of a field")]
    Truncated {
        /// The packet type.
        packet: PacketType,
    },
    /// Bytes are left over after the last field.
    #[error("{count} bytes left over at the end of {packet}")]
    TrailingBytes {
        /// The packet type.
        packet: PacketType,
        /// How many.
        count: usize,
    },
    /// A string is not a valid MQTT UTF-8 string ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
    #[error("{field}: {error}")]
    InvalidString {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        error: StringError,
    },
    /// A topic name is invalid ([MQTT-3.3.2-2], [MQTT-4.7.3-1]).
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A topic filter is invalid ([MQTT-4.7.1-2], [MQTT-4.7.1-3]).
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// An MQTT 5 PUBLISH has an empty topic name and no topic alias.
    #[error("publish has an empty topic name and no topic alias")]
    EmptyTopicWithoutAlias,
    /// SUBSCRIBE or UNSUBSCRIBE without a topic filter ([MQTT-3.8.3-3], [MQTT-3.10.3-2]).
    #[error("{0} has no topic filter")]
    NoTopicFilters(PacketType),
    /// SUBACK or MQTT 5 UNSUBACK without a reason code.
    #[error("{0} has no reason code")]
    NoReasonCodes(PacketType),
    /// A property identifier the specification does not define.
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    /// A property that this packet may not carry.
    #[error("property {property} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property.
        property: PropertyId,
        /// The packet type.
        packet: PacketType,
    },
    /// A property that may appear only once appears twice.
    #[error("property {property} appears more than once in {packet}")]
    DuplicateProperty {
        /// The property.
        property: PropertyId,
        /// The packet type.
        packet: PacketType,
    },
    /// A property has a value the specification forbids (0 receive maximum, 2 maximum QoS...).
    #[error("invalid value for property {0}")]
    InvalidPropertyValue(PropertyId),
    /// CONNECT names a protocol other than `MQTT` or `MQIsdp` ([MQTT-3.1.2-1]).
    #[error("unknown protocol name in connect")]
    InvalidProtocolName,
    /// CONNECT has a protocol level this name does not go with ([MQTT-3.1.2-2]).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags break a rule ([MQTT-3.1.2-3], [MQTT-3.1.2-11], [MQTT-3.1.2-22], ...).
    #[error("invalid connect flags: {0}")]
    InvalidConnectFlags(&'static str),
    /// CONNACK flags break a rule ([MQTT-3.2.2-1]).
    #[error("invalid connack flags: {0}")]
    InvalidConnAckFlags(&'static str),
    /// Subscription options have reserved bits set, or QoS 3 before MQTT 5 ([MQTT-3.8.3-5]).
    #[error("invalid subscription options: {0}")]
    InvalidSubscriptionOptions(&'static str),
    /// Subscription options MQTT 5 calls a protocol error: QoS 3, retain handling 3, or no
    /// local on a shared subscription ([MQTT-3.8.3-4]).
    #[error("forbidden subscription options: {0}")]
    ForbiddenSubscriptionOptions(&'static str),
    /// A reason or return code this packet may not carry.
    #[error("invalid reason code {code:#04x} in {packet}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The byte found.
        code: u8,
    },
    /// A client's first packet was not CONNECT ([MQTT-3.1.0-1];
    /// [`ServerDecoder`](super::ServerDecoder)).
    #[error("expected CONNECT first, got {0}")]
    ExpectedConnect(PacketType),
}

impl DecodeError {
    /// The reason code that tells the peer what went wrong.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            // MQTT 5 section 3.3.2.3.4: a Topic Alias of 0 is answered with 0x94.
            InvalidPropertyValue(PropertyId::TopicAlias) => ReasonCode::TopicAliasInvalid,
            InvalidProtocolName | UnsupportedProtocolLevel(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            ZeroPacketId(_)
            | EmptyTopicWithoutAlias
            | NoTopicFilters(_)
            | NoReasonCodes(_)
            | PropertyNotAllowed { .. }
            | DuplicateProperty { .. }
            | InvalidPropertyValue(_)
            | ForbiddenSubscriptionOptions(_)
            | ExpectedConnect(_) => ReasonCode::ProtocolError,
            MalformedRemainingLength
            | MalformedVarInt { .. }
            | ReservedPacketType(_)
            | InvalidFlags { .. }
            | InvalidQoS { .. }
            | DupOnQoS0
            | Truncated { .. }
            | TrailingBytes { .. }
            | InvalidString { .. }
            | UnknownProperty(_)
            | InvalidConnectFlags(_)
            | InvalidConnAckFlags(_)
            | InvalidSubscriptionOptions(_)
            | InvalidReasonCode { .. } => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be encoded: the caller asked for something the version or the limits
/// do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet would exceed the maximum packet size (or the protocol's 268,435,455-byte
    /// remaining length).
    #[error("packet of {size} bytes exceeds the maximum packet size of {max}")]
    PacketTooLarge {
        /// The size the packet would have.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The protocol version cannot carry this packet or field.
    #[error("{version} cannot carry {what}")]
    NotInVersion {
        /// What was refused.
        what: &'static str,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// CONNECT names a protocol version other than the encoder's.
    #[error("connect is for {packet} but the encoder speaks {encoder}")]
    VersionMismatch {
        /// The version in the CONNECT.
        packet: ProtocolVersion,
        /// The encoder's version.
        encoder: ProtocolVersion,
    },
    /// This packet type may not carry this reason code.
    #[error("{packet} cannot carry reason code {code}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The reason code.
        code: ReasonCode,
    },
    /// A field value breaks a rule of the specification.
    #[error("invalid {packet}: {reason}")]
    Invalid {
        /// The packet type.
        packet: PacketType,
        /// The rule broken.
        reason: &'static str,
    },
}
