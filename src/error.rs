//! Why a connection closed, and why a command was refused.

use crate::codec::{DecodeError, EncodeError};
use crate::types::{InvalidTopic, QoS, ReasonCode};

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// This side: a command, or a fault this side detected in the peer's behaviour.
    Local,
    /// The peer, with a DISCONNECT (or a refusing CONNACK).
    Remote,
    /// The transport ended without a DISCONNECT.
    Transport,
}

/// A fatal problem on a connection: the peer's fault, a timeout, or the transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer sent bytes that are not a valid packet.
    #[error("invalid packet from peer: {0}")]
    Decode(#[from] DecodeError),
    /// The peer broke a named rule of the protocol or a limit this side set.
    #[error("{kind}: {0}", kind = .0.kind())]
    Violation(ProtocolViolation),
    /// No CONNACK arrived in time.
    #[error("no connack within the connect timeout")]
    ConnAckTimeout,
    /// Nothing arrived in time after a PINGREQ, or for 1.5x the keep-alive on a server.
    #[error("keep-alive timeout")]
    KeepAliveTimeout,
    /// The server refused the connection.
    #[error("connection refused: {0}")]
    Refused(ReasonCode),
    /// The peer sent DISCONNECT with an error reason code.
    #[error("disconnected by peer: {0}")]
    Disconnected(ReasonCode),
    /// The transport closed without a DISCONNECT.
    #[error("transport closed")]
    TransportClosed,
}

/// What a peer did wrong, one variant per rule, each with the reason code it closes the
/// connection with ([`ProtocolViolation::reason_code`]) and the normative statement it breaks
/// (MQTT 5 numbering; "section" where the rule has no number). The first group breaks the
/// protocol (Protocol Error, 0x82), the second a limit this side announced or set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// The first packet on a connection is not CONNECT ([MQTT-3.1.0-1]).
    #[error("first packet is not connect")]
    FirstPacketNotConnect,
    /// A second CONNECT on the same connection ([MQTT-3.1.0-2]).
    #[error("second connect")]
    SecondConnect,
    /// From a client: a packet was handled while the CONNECT was still being decided;
    /// pipelined packets wait in the buffer until then (section 3.1.4), so this is a
    /// safeguard. From a server: a packet other than AUTH before CONNACK ([MQTT-3.2.0-1]).
    #[error("packet before connack")]
    PacketBeforeConnAck,
    /// A packet other than AUTH or DISCONNECT during enhanced authentication
    /// ([MQTT-3.1.2-30]).
    #[error("packet other than auth during authentication")]
    NotAuthDuringAuthentication,
    /// A packet only servers send (CONNACK, SUBACK, UNSUBACK, PINGRESP) came from a client
    /// (section 2.1.2, the direction of each packet type).
    #[error("client sent a packet only servers send")]
    ServerOnlyPacket,
    /// AUTH on a connection whose CONNECT named no authentication method ([MQTT-4.12.0-7]).
    #[error("auth without an authentication method")]
    AuthWithoutMethod,
    /// AUTH with a method other than the CONNECT's ([MQTT-4.12.0-5], [MQTT-4.12.1-1]).
    #[error("auth with another authentication method")]
    AuthMethodChanged,
    /// AUTH with a reason code the exchange does not expect: Continue authentication outside
    /// an exchange, Re-authenticate during one or before CONNACK ([MQTT-4.12.0-3]).
    #[error("auth out of sequence")]
    AuthOutOfSequence,
    /// A packet only clients send (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ) came from a
    /// server (section 2.1.2).
    #[error("server sent a packet only clients send")]
    ClientOnlyPacket,
    /// A second CONNACK on the same connection ([MQTT-3.2.0-2]).
    #[error("second connack")]
    SecondConnAck,
    /// Session Present 1 in the CONNACK answering a clean start: the client has no session
    /// to resume ([MQTT-3.2.2-4]).
    #[error("session present after a clean start")]
    SessionPresentAfterCleanStart,
    /// DISCONNECT from a server before an accepting CONNACK ([MQTT-3.14.0-1]), or under
    /// MQTT 3.1.x, where only clients send it (section 3.14).
    #[error("disconnect not allowed here")]
    UnexpectedDisconnect,
    /// PUBACK for a packet identifier with no QoS 1 PUBLISH in flight (section 4.3.2).
    #[error("puback for no qos 1 publish in flight")]
    UnexpectedPubAck,
    /// PUBCOMP for a packet identifier with no PUBREL in flight (section 4.3.3).
    #[error("pubcomp for no pubrel in flight")]
    UnexpectedPubComp,
    /// PUBREC for a packet identifier with no QoS 2 PUBLISH in flight under MQTT 3.1.x
    /// (section 4.3.3; MQTT 5 answers it with PUBREL 0x92 instead).
    #[error("pubrec for no qos 2 publish in flight")]
    UnexpectedPubRec,
    /// SUBACK for a packet identifier with no SUBSCRIBE in flight ([MQTT-3.8.4-2]).
    #[error("suback for no subscribe in flight")]
    UnexpectedSubAck,
    /// A SUBACK without exactly one reason code per topic filter of its SUBSCRIBE
    /// ([MQTT-3.8.4-6], [MQTT-3.9.3-1]).
    #[error("suback reason codes do not match the filters")]
    SubAckCountMismatch,
    /// UNSUBACK for a packet identifier with no UNSUBSCRIBE in flight ([MQTT-3.10.4-4]).
    #[error("unsuback for no unsubscribe in flight")]
    UnexpectedUnsubAck,
    /// An MQTT 5 UNSUBACK without exactly one reason code per topic filter of its
    /// UNSUBSCRIBE ([MQTT-3.11.3-1]).
    #[error("unsuback reason codes do not match the filters")]
    UnsubAckCountMismatch,
    /// DISCONNECT sets a session expiry interval when the CONNECT's was zero
    /// ([MQTT-3.14.2-2]).
    #[error("session expiry set on disconnect after zero")]
    SessionExpiryAfterZero,
    /// PUBLISH from a client with a subscription identifier, which only servers send
    /// ([MQTT-3.3.4-6]).
    #[error("publish from a client with a subscription identifier")]
    SubscriptionIdentifierFromClient,
    /// PUBLISH with an empty topic and a topic alias this connection has no topic for
    /// (section 3.3.2.3.4).
    #[error("unknown topic alias")]
    UnknownTopicAlias,
    /// A topic alias above the Topic Alias Maximum this side announced (from a client
    /// [MQTT-3.2.2-17], from a server [MQTT-3.1.2-26]).
    #[error("topic alias above the maximum")]
    TopicAliasAboveMaximum,
    /// PUBLISH at a QoS above the Maximum QoS this side announced ([MQTT-3.2.2-11]).
    #[error("qos above the maximum")]
    QoSAboveMaximum,
    /// A retained PUBLISH when this side announced Retain Available 0 ([MQTT-3.2.2-14]).
    #[error("retain not supported")]
    RetainNotAvailable,
    /// More unacknowledged QoS 1/2 PUBLISHes than the Receive Maximum this side announced
    /// (from a client [MQTT-3.3.4-7], from a server [MQTT-3.3.4-9]).
    #[error("receive maximum exceeded")]
    ReceiveMaximumExceeded,
    /// A topic longer or deeper than this broker accepts, from a client that cannot be told
    /// with an acknowledgement (MQTT 3.1.x).
    #[error("topic above the broker's limits")]
    TopicAboveLimits,
    /// More topic filters in one SUBSCRIBE than this broker accepts.
    #[error("too many topic filters in one subscribe")]
    TooManyFilters,
    /// A connection beyond this broker's maximum number of connections.
    #[error("too many connections")]
    TooManyConnections,
    /// Even the accepting CONNACK is above the client's Maximum Packet Size
    /// ([MQTT-3.1.2-25]).
    #[error("connack above the client's maximum packet size")]
    ConnAckTooLarge,
    /// The server's Maximum Packet Size is too small for even the few bytes of this client's
    /// acknowledgements and PINGREQ, so the connection cannot work (section 3.2.2.3.6).
    #[error("server maximum packet size too small")]
    ServerMaximumPacketSizeTooSmall,
}

impl ProtocolViolation {
    /// The reason code the connection closes with (on DISCONNECT in MQTT 5, once connected).
    pub const fn reason_code(self) -> ReasonCode {
        use ProtocolViolation::*;
        match self {
            TopicAliasAboveMaximum => ReasonCode::TopicAliasInvalid,
            QoSAboveMaximum => ReasonCode::QoSNotSupported,
            RetainNotAvailable => ReasonCode::RetainNotSupported,
            ReceiveMaximumExceeded => ReasonCode::ReceiveMaximumExceeded,
            TopicAboveLimits => ReasonCode::TopicNameInvalid,
            TooManyFilters | TooManyConnections => ReasonCode::QuotaExceeded,
            ConnAckTooLarge => ReasonCode::PacketTooLarge,
            ServerMaximumPacketSizeTooSmall => ReasonCode::ImplementationSpecificError,
            FirstPacketNotConnect
            | SecondConnect
            | PacketBeforeConnAck
            | NotAuthDuringAuthentication
            | ServerOnlyPacket
            | AuthWithoutMethod
            | AuthMethodChanged
            | AuthOutOfSequence
            | UnexpectedPubAck
            | UnexpectedPubComp
            | SessionExpiryAfterZero
            | SubscriptionIdentifierFromClient
            | UnknownTopicAlias
            | ClientOnlyPacket
            | SecondConnAck
            | SessionPresentAfterCleanStart
            | UnexpectedDisconnect
            | UnexpectedPubRec
            | UnexpectedSubAck
            | SubAckCountMismatch
            | UnexpectedUnsubAck
            | UnsubAckCountMismatch => ReasonCode::ProtocolError,
        }
    }

    /// Whether it breaks a limit this side announced or set, rather than a rule of the
    /// protocol itself.
    pub const fn is_limit(self) -> bool {
        !matches!(self.reason_code(), ReasonCode::ProtocolError)
    }

    /// How a close reason introduces it.
    fn kind(self) -> &'static str {
        if self.is_limit() {
            "peer exceeded a limit"
        } else {
            "protocol violation by peer"
        }
    }
}

/// How a connection ended: who ended it, the reason code on the wire, and the error, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// Who ended it.
    pub initiator: Initiator,
    /// The reason code sent or received (Normal disconnection when none was).
    pub reason_code: ReasonCode,
    /// The fault, or `None` for a clean disconnect.
    pub error: Option<ConnectionError>,
}

impl CloseReason {
    /// Whether the connection ended without an error.
    pub fn is_clean(&self) -> bool {
        self.error.is_none()
    }
}

/// A command the client cannot carry out; the caller's own mistake or a limit the server set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// There is no accepted connection.
    #[error("not connected")]
    NotConnected,
    /// A connection is open or being opened already.
    #[error("already connected or connecting")]
    AlreadyConnected,
    /// The in-flight window of QoS 1/2 publishes (the server's receive maximum, or
    /// `ClientConfig::max_inflight` if lower) is full; retry after `Published`.
    #[error("the in-flight window of {0} publishes is full")]
    WindowFull(u16),
    /// All 65,535 packet identifiers are held by unacknowledged packets.
    #[error("no free packet identifier")]
    PacketIdsExhausted,
    /// The packet would exceed the server's maximum packet size.
    #[error("packet of {size} bytes exceeds the server's maximum of {max}")]
    PacketTooLarge {
        /// The packet's size.
        size: u64,
        /// The server's limit.
        max: u64,
    },
    /// A topic name or filter is invalid.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] InvalidTopic),
    /// The server's maximum QoS is lower.
    #[error("the server supports qos up to {max:?}")]
    QoSNotSupported {
        /// The server's maximum.
        max: QoS,
    },
    /// The server does not support retained messages.
    #[error("the server does not support retained messages")]
    RetainNotSupported,
    /// The server said in its CONNACK that it does not support this kind of subscription.
    #[error("the server does not support {0}")]
    FeatureNotSupported(ServerFeature),
    /// The packet cannot be encoded (for example, a field the protocol version cannot carry).
    #[error(transparent)]
    Encode(EncodeError),
    /// The acknowledgement token is unknown or belongs to an earlier connection.
    #[error("unknown or stale acknowledgement token")]
    UnknownAckToken,
    /// The client identifier cannot be used with this protocol version and session setting.
    #[error("invalid client id: {0}")]
    InvalidClientId(ClientIdRule),
    /// The command needs MQTT 5.
    #[error("{0} needs mqtt 5")]
    NeedsV5(V5Command),
}

/// A kind of subscription an MQTT 5 server may say it does not support; subscribing with it
/// anyway is a Protocol Error on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ServerFeature {
    /// Wildcard Subscription Available 0 (section 3.2.2.3.12).
    #[error("wildcard subscriptions")]
    WildcardSubscriptions,
    /// Subscription Identifiers Available 0 (section 3.2.2.3.13).
    #[error("subscription identifiers")]
    SubscriptionIdentifiers,
    /// Shared Subscription Available 0 (section 3.2.2.3.14).
    #[error("shared subscriptions")]
    SharedSubscriptions,
}

/// The rule a client identifier breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIdRule {
    /// MQTT 3.1 takes 1 to 23 bytes (MQTT 3.1, section 3.1, Client Identifier).
    #[error("mqtt 3.1 needs 1 to 23 bytes")]
    V31Length,
    /// An empty client identifier needs a clean session ([MQTT-3.1.3-7], 3.1.1).
    #[error("an empty client id needs a clean session")]
    EmptyNeedsCleanSession,
}

/// A command that MQTT 3.1.x cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum V5Command {
    /// AUTH, enhanced authentication (section 3.15).
    #[error("auth")]
    Auth,
}

impl From<EncodeError> for ClientError {
    fn from(e: EncodeError) -> ClientError {
        match e {
            EncodeError::PacketTooLarge { size, max } => ClientError::PacketTooLarge { size, max },
            e => ClientError::Encode(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_closes_with_its_rules_code_and_the_same_words_as_before() {
        let v = ProtocolViolation::UnknownTopicAlias;
        assert_eq!(v.reason_code(), ReasonCode::ProtocolError);
        assert!(!v.is_limit());
        assert_eq!(
            ConnectionError::Violation(v).to_string(),
            "protocol violation by peer: unknown topic alias"
        );
        for (v, code) in [
            (
                ProtocolViolation::TopicAliasAboveMaximum,
                ReasonCode::TopicAliasInvalid,
            ),
            (
                ProtocolViolation::QoSAboveMaximum,
                ReasonCode::QoSNotSupported,
            ),
            (
                ProtocolViolation::RetainNotAvailable,
                ReasonCode::RetainNotSupported,
            ),
            (
                ProtocolViolation::ReceiveMaximumExceeded,
                ReasonCode::ReceiveMaximumExceeded,
            ),
            (
                ProtocolViolation::TopicAboveLimits,
                ReasonCode::TopicNameInvalid,
            ),
            (ProtocolViolation::TooManyFilters, ReasonCode::QuotaExceeded),
            (
                ProtocolViolation::TooManyConnections,
                ReasonCode::QuotaExceeded,
            ),
            (
                ProtocolViolation::ConnAckTooLarge,
                ReasonCode::PacketTooLarge,
            ),
            (
                ProtocolViolation::ServerMaximumPacketSizeTooSmall,
                ReasonCode::ImplementationSpecificError,
            ),
        ] {
            assert_eq!(v.reason_code(), code, "{v:?}");
            assert!(v.is_limit(), "{v:?}");
            let text = ConnectionError::Violation(v).to_string();
            assert_eq!(text, format!("peer exceeded a limit: {v}"));
        }
    }
}
