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
    /// The peer sent a valid packet at the wrong time or with the wrong content.
    #[error("protocol violation by peer: {0}")]
    Protocol(&'static str),
    /// The peer broke a limit this side announced (receive maximum, topic alias maximum...).
    #[error("peer exceeded a limit: {0}")]
    LimitExceeded(&'static str),
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
    /// The server does not support this kind of subscription (wildcard, shared, identifier).
    #[error("the server does not support {0}")]
    FeatureNotSupported(&'static str),
    /// The packet cannot be encoded (for example, a field the protocol version cannot carry).
    #[error(transparent)]
    Encode(EncodeError),
    /// The acknowledgement token is unknown or belongs to an earlier connection.
    #[error("unknown or stale acknowledgement token")]
    UnknownAckToken,
    /// The client identifier cannot be used with this protocol version and session setting.
    #[error("invalid client id: {0}")]
    InvalidClientId(&'static str),
    /// The command needs MQTT 5.
    #[error("{0} needs mqtt 5")]
    NeedsV5(&'static str),
}

impl From<EncodeError> for ClientError {
    fn from(e: EncodeError) -> ClientError {
        match e {
            EncodeError::PacketTooLarge { size, max } => ClientError::PacketTooLarge { size, max },
            e => ClientError::Encode(e),
        }
    }
}
