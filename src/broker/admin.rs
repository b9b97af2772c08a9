//! What the application that runs a broker may ask of it: publish a message, list who is
//! connected, a client's subscriptions and the offline sessions, disconnect a client, remove
//! an offline session.
//!
//! Requests are mail for the router like a connection's: give each [`AdminRequest`] to
//! [`Router::handle_admin`](super::Router::handle_admin) (or
//! [`Broker::handle_admin`](super::Broker::handle_admin)) with a tag of your choosing, and
//! drain [`Router::poll_admin`](super::Router::poll_admin) after every input: each request
//! gets exactly one answer, carrying its tag. Most are answered at once; a publish is
//! answered once it is routed, and durable when the broker persists with durable
//! acknowledgements (its answer then waits for the store, like a client's PUBACK). Nothing
//! here is queued but what the caller asked: one answer per request, waiting in
//! `poll_admin` until drained.
//!
//! ```
//! use std::time::Instant;
//! use tinymqtt::broker::{AdminReply, AdminRequest, AdminTag, Broker, BrokerConfig};
//! use tinymqtt::codec::Publish;
//! use tinymqtt::TopicName;
//!
//! # #[allow(clippy::disallowed_methods)]
//! let now = Instant::now();
//! let mut broker = Broker::new(BrokerConfig::default());
//! let conn = broker.accept(now);
//! // A 3.1.1 CONNECT with client id "a", then SUBSCRIBE to "t" at QoS 0.
//! let connect = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'a'];
//! broker.handle_input(now, conn, &connect);
//! broker.handle_input(now, conn, &[0x82, 6, 0, 1, 0, 1, b't', 0]);
//! while broker.poll_transmit().is_some() {} // CONNACK, SUBACK
//!
//! // The application publishes into the broker: the subscriber gets it.
//! let publish = Publish::new(TopicName::new("t").unwrap(), "hi");
//! broker.handle_admin(now, AdminTag(1), AdminRequest::Publish(publish));
//! assert_eq!(broker.poll_admin(), Some((AdminTag(1), Ok(AdminReply::Published))));
//! let (to, bytes) = broker.poll_transmit().expect("the PUBLISH");
//! assert_eq!((to, &bytes[..]), (conn, &[0x30, 5, 0, 1, b't', b'h', b'i'][..]));
//!
//! // Who is connected, then kick "a" (a 3.1.1 client is just closed).
//! broker.handle_admin(now, AdminTag(2), AdminRequest::Clients);
//! let Some((_, Ok(AdminReply::Clients(clients)))) = broker.poll_admin() else { panic!() };
//! assert_eq!(clients[0].client_id.as_str(), "a");
//! broker.handle_admin(now, AdminTag(3), AdminRequest::Disconnect(clients[0].client_id.clone()));
//! assert_eq!(broker.poll_admin(), Some((AdminTag(3), Ok(AdminReply::Disconnected))));
//! ```

use std::num::NonZeroU32;
use std::time::Instant;

use crate::codec::Publish;
use crate::types::{ByteStr, ProtocolVersion, TopicFilter};

use crate::codec::SubscriptionOptions;

/// The caller's name for one request, carried back with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdminTag(pub u64);

/// A request from the application that runs the broker.
#[derive(Debug, Clone)]
#[non_exhaustive]
// Requests are few (one per application call) and moved once into the router: boxing the
// message would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum AdminRequest {
    /// Route this message as if a client had published it: retained when its retain flag is
    /// set, to every matching subscription at the QoS both allow. `$SYS` topics are the
    /// broker's and refused; the memory budget, the maximum QoS and retain availability
    /// apply as to a client. Answered with [`AdminReply::Published`] once routed (once
    /// durable, with a store and durable acknowledgements); when a subscriber's queue is
    /// full a QoS 1/2 message waits for room as a client's acknowledgement does (for
    /// `max_publisher_wait` at most). Answers to publishes come in the order they were asked.
    Publish(Publish),
    /// The connected clients: [`AdminReply::Clients`].
    Clients,
    /// The subscriptions of one session, online or offline: [`AdminReply::Subscriptions`].
    Subscriptions(ByteStr),
    /// The sessions whose client is not connected: [`AdminReply::OfflineSessions`].
    OfflineSessions,
    /// Disconnect this client (MQTT 5: DISCONNECT 0x98 Administrative action; its will is
    /// published, as for any end the client did not ask for); its session stays, as its
    /// expiry says. Answered with [`AdminReply::Disconnected`] once the close is mailed.
    Disconnect(ByteStr),
    /// Remove this offline session with its subscriptions and queue (a pending will is
    /// published now, as at its expiry): [`AdminReply::Removed`].
    RemoveSession(ByteStr),
}

/// The answer to an [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminReply {
    /// The message is routed (and durable, with a store and durable acknowledgements).
    Published,
    /// The connected clients, by client identifier.
    Clients(Vec<ClientInfo>),
    /// The session's subscriptions, by filter.
    Subscriptions(Vec<SubscriptionInfo>),
    /// The offline sessions, by client identifier.
    OfflineSessions(Vec<SessionInfo>),
    /// The client's connection is told to close.
    Disconnected,
    /// The session is gone.
    Removed,
}

/// Why an [`AdminRequest`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No session has this client identifier.
    #[error("no session for client {0}")]
    NoSuchSession(ByteStr),
    /// The client is not connected (disconnect).
    #[error("client {0} is not connected")]
    NotConnected(ByteStr),
    /// The client is connected (remove its session after disconnecting it).
    #[error("client {0} is connected")]
    Connected(ByteStr),
    /// An empty topic (it only stands for a topic alias on a connection).
    #[error("a message needs a topic")]
    EmptyTopic,
    /// `$SYS` topics are the broker's own.
    #[error("$SYS topics are the broker's")]
    SysTopic,
    /// The memory budget (or the retained messages' budget) has no room for the message.
    #[error("memory limit reached")]
    QuotaExceeded,
    /// The message's QoS is above the broker's `maximum_qos`.
    #[error("QoS above the broker's maximum")]
    QoSNotSupported,
    /// A retained message, and the broker does not keep them (`retain_available`).
    #[error("retained messages are not available")]
    RetainNotAvailable,
}

/// A connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// Its client identifier.
    pub client_id: ByteStr,
    /// The user name it authenticated as.
    pub username: Option<ByteStr>,
    /// The listener it came through, as the runtime named it (see
    /// [`Router::set_listener`](super::Router::set_listener)).
    pub listener: Option<ByteStr>,
    /// The protocol version it speaks.
    pub protocol: ProtocolVersion,
    /// When its CONNECT reached the router.
    pub since: Instant,
}

/// A session whose client is not connected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Its client identifier.
    pub client_id: ByteStr,
    /// The user name it belongs to.
    pub username: Option<ByteStr>,
    /// The protocol version its client last spoke.
    pub protocol: ProtocolVersion,
    /// Seconds it outlives its connection (`u32::MAX`: forever).
    pub expiry: u32,
    /// Messages waiting in its queue.
    pub queued: usize,
    /// Its subscriptions.
    pub subscriptions: usize,
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionInfo {
    /// The filter.
    pub filter: TopicFilter,
    /// QoS, no local, retain as published, retain handling.
    pub options: SubscriptionOptions,
    /// The subscription identifier (MQTT 5).
    pub identifier: Option<NonZeroU32>,
}

/// Whether `p` is on one of the broker's own `$SYS` topics.
pub(crate) fn is_sys_topic(p: &Publish) -> bool {
    p.topic.as_str() == "$SYS" || p.topic.as_str().starts_with("$SYS/")
}
