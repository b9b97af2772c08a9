//! Vocabulary shared by the codec, the client and the broker: quality of service, protocol
//! versions, packet identifiers and reason codes. MQTT strings are in `string`, topic names
//! and filters in `topic`; both are re-exported here.

use std::fmt;
use std::num::NonZeroU16;

pub(crate) use crate::string::{check_mqtt_bytes, check_scanned, is_plain_ascii, scan};
pub use crate::string::{ByteStr, StringError};
pub use crate::topic::{InvalidTopic, TopicFilter, TopicName};

/// Quality of service of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK, may be delivered more than once.
    AtLeastOnce = 1,
    /// QoS 2: four-way handshake, delivered exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Returns the QoS for a two-bit value, or `None` for 3.
    pub const fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The protocol revision spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte carried in CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name carried in CONNECT.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// Whether this is MQTT 5.0 (properties, reason codes, AUTH).
    pub const fn is_v5(self) -> bool {
        matches!(self, ProtocolVersion::V5)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V3_1 => "MQTT 3.1",
            ProtocolVersion::V3_1_1 => "MQTT 3.1.1",
            ProtocolVersion::V5 => "MQTT 5.0",
        })
    }
}

/// A packet identifier: never zero ([MQTT-2.2.1-3]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// The smallest identifier, 1.
    pub const MIN: PacketId = PacketId(NonZeroU16::MIN);
    /// The largest identifier, 65535.
    pub const MAX: PacketId = PacketId(NonZeroU16::MAX);

    /// Returns the identifier for `value`, or `None` for zero.
    pub const fn new(value: u16) -> Option<PacketId> {
        match NonZeroU16::new(value) {
            Some(v) => Some(PacketId(v)),
            None => None,
        }
    }

    /// The identifier as a number in `1..=65535`.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal; )*) => {
        /// An MQTT 5 reason code; MQTT 3.1.x return codes map onto the same values.
        ///
        /// One value can have several names in the specification (0x00 is Success, Normal
        /// disconnection and Granted QoS 0); the associated constants give those names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum ReasonCode {
            $( $(#[$doc])* $name = $value, )*
        }

        impl ReasonCode {
            /// Returns the reason code for a byte, or `None` if the specification defines none.
            pub const fn from_u8(value: u8) -> Option<ReasonCode> {
                match value {
                    $( $value => Some(ReasonCode::$name), )*
                    _ => None,
                }
            }

            /// The specification's name for this code (the first one, where it has several).
            pub const fn description(self) -> &'static str {
                match self {
                    $( ReasonCode::$name => $text, )*
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00: Success, Normal disconnection, Granted QoS 0.
    Success = 0x00, "success";
    /// 0x01: Granted QoS 1.
    GrantedQoS1 = 0x01, "granted qos 1";
    /// 0x02: Granted QoS 2.
    GrantedQoS2 = 0x02, "granted qos 2";
    /// 0x04: Disconnect with Will Message.
    DisconnectWithWillMessage = 0x04, "disconnect with will message";
    /// 0x10: No matching subscribers.
    NoMatchingSubscribers = 0x10, "no matching subscribers";
    /// 0x11: No subscription existed.
    NoSubscriptionExisted = 0x11, "no subscription existed";
    /// 0x18: Continue authentication.
    ContinueAuthentication = 0x18, "continue authentication";
    /// 0x19: Re-authenticate.
    ReAuthenticate = 0x19, "re-authenticate";
    /// 0x80: Unspecified error (also the MQTT 3.1.1 SUBACK failure code).
    UnspecifiedError = 0x80, "unspecified error";
    /// 0x81: Malformed Packet.
    MalformedPacket = 0x81, "malformed packet";
    /// 0x82: Protocol Error.
    ProtocolError = 0x82, "protocol error";
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83, "implementation specific error";
    /// 0x84: Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84, "unsupported protocol version";
    /// 0x85: Client Identifier not valid.
    ClientIdentifierNotValid = 0x85, "client identifier not valid";
    /// 0x86: Bad User Name or Password.
    BadUserNameOrPassword = 0x86, "bad user name or password";
    /// 0x87: Not authorized.
    NotAuthorized = 0x87, "not authorized";
    /// 0x88: Server unavailable.
    ServerUnavailable = 0x88, "server unavailable";
    /// 0x89: Server busy.
    ServerBusy = 0x89, "server busy";
    /// 0x8A: Banned.
    Banned = 0x8A, "banned";
    /// 0x8B: Server shutting down.
    ServerShuttingDown = 0x8B, "server shutting down";
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8C, "bad authentication method";
    /// 0x8D: Keep Alive timeout.
    KeepAliveTimeout = 0x8D, "keep alive timeout";
    /// 0x8E: Session taken over.
    SessionTakenOver = 0x8E, "session taken over";
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8F, "topic filter invalid";
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90, "topic name invalid";
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91, "packet identifier in use";
    /// 0x92: Packet Identifier not found.
    PacketIdentifierNotFound = 0x92, "packet identifier not found";
    /// 0x93: Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93, "receive maximum exceeded";
    /// 0x94: Topic Alias invalid.
    TopicAliasInvalid = 0x94, "topic alias invalid";
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95, "packet too large";
    /// 0x96: Message rate too high.
    MessageRateTooHigh = 0x96, "message rate too high";
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97, "quota exceeded";
    /// 0x98: Administrative action.
    AdministrativeAction = 0x98, "administrative action";
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99, "payload format invalid";
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A, "retain not supported";
    /// 0x9B: QoS not supported.
    QoSNotSupported = 0x9B, "qos not supported";
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C, "use another server";
    /// 0x9D: Server moved.
    ServerMoved = 0x9D, "server moved";
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E, "shared subscriptions not supported";
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F, "connection rate exceeded";
    /// 0xA0: Maximum connect time.
    MaximumConnectTime = 0xA0, "maximum connect time";
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1, "subscription identifiers not supported";
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2, "wildcard subscriptions not supported";
}

impl ReasonCode {
    /// 0x00 in DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 in SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The byte on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether the code reports a failure (0x80 and above).
    pub const fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// This code if DISCONNECT may carry it, else Protocol Error: a fault found while decoding
    /// can map to a code only CONNACK knows (0x84, 0x85...), and DISCONNECT needs one it allows.
    pub fn for_disconnect(self) -> ReasonCode {
        if self.allowed_in_disconnect() {
            self
        } else {
            ReasonCode::ProtocolError
        }
    }

    /// Whether a DISCONNECT may carry this code (MQTT 5, 3.14.2.1): not one that only SUBACK,
    /// UNSUBACK, AUTH, CONNACK or the publish acknowledgements use.
    pub(crate) fn allowed_in_disconnect(self) -> bool {
        use ReasonCode::*;
        !matches!(
            self,
            GrantedQoS1
                | GrantedQoS2
                | NoMatchingSubscribers
                | NoSubscriptionExisted
                | ContinueAuthentication
                | ReAuthenticate
                | UnsupportedProtocolVersion
                | ClientIdentifierNotValid
                | BadUserNameOrPassword
                | ServerUnavailable
                | Banned
                | BadAuthenticationMethod
                | PacketIdentifierInUse
                | PacketIdentifierNotFound
        )
    }

    /// The SUBACK code granting `qos`.
    pub const fn granted(qos: QoS) -> ReasonCode {
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }
}

impl Default for ReasonCode {
    /// Success / Normal disconnection.
    fn default() -> ReasonCode {
        ReasonCode::Success
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.description(), self.as_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip_through_bytes() {
        for b in 0..=255u8 {
            if let Some(rc) = ReasonCode::from_u8(b) {
                assert_eq!(rc.as_u8(), b);
            }
        }
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(
            ReasonCode::from_u8(0xA2),
            Some(ReasonCode::WildcardSubscriptionsNotSupported)
        );
        assert!(ReasonCode::NotAuthorized.is_error());
        assert!(!ReasonCode::GrantedQoS2.is_error());
    }

    #[test]
    fn disconnect_gets_a_code_it_may_carry() {
        assert_eq!(
            ReasonCode::KeepAliveTimeout.for_disconnect(),
            ReasonCode::KeepAliveTimeout
        );
        assert_eq!(
            ReasonCode::MalformedPacket.for_disconnect(),
            ReasonCode::MalformedPacket
        );
        for connack_only in [
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::PacketIdentifierNotFound,
        ] {
            assert_eq!(connack_only.for_disconnect(), ReasonCode::ProtocolError);
        }
    }

    #[test]
    fn packet_id_is_never_zero() {
        assert_eq!(PacketId::new(0), None);
        assert_eq!(PacketId::new(7).map(PacketId::get), Some(7));
        assert_eq!(PacketId::MAX.get(), 65_535);
    }
}
