//! Authentication and authorization, behind two small traits.
//!
//! Plain CONNECT authentication asks [`Authenticator::authenticate`]. MQTT 5 enhanced
//! authentication (a CONNECT with an Authentication Method, then AUTH packets) asks
//! [`Authenticator::start_auth`] for an [`AuthExchange`] that runs one exchange, step by step;
//! the default supports no method, which refuses such a CONNECT with 0x8C.

use bytes::Bytes;

use crate::types::{ByteStr, ReasonCode, TopicFilter, TopicName};

/// What one step of an enhanced authentication exchange decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// Authenticated; the data, if any, goes to the client in CONNACK (or AUTH 0x00 after a
    /// re-authentication).
    Success(Option<Bytes>),
    /// More is needed: this data goes to the client in AUTH 0x18 and its answer comes back to
    /// [`AuthExchange::step`].
    Continue(Bytes),
    /// Refused with this reason code: CONNACK during the connect, DISCONNECT after a failed
    /// re-authentication (a code the packet cannot carry becomes 0x87 or 0x82).
    Failure(ReasonCode),
}

/// One enhanced authentication exchange (CONNECT or re-authentication), owned by the
/// connection for as long as it runs.
pub trait AuthExchange: Send {
    /// The next step, given the Authentication Data the client sent (in CONNECT, or in its
    /// AUTH packet).
    fn step(&mut self, data: Option<&Bytes>) -> AuthStep;
}

/// Decides whether a client may connect.
pub trait Authenticator: Send + Sync {
    /// `Ok` lets the client in; `Err` is the CONNACK reason code (MQTT 3.1.x clients get the
    /// matching return code: bad user name or password, or not authorized).
    fn authenticate(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        password: Option<&Bytes>,
    ) -> Result<(), ReasonCode>;

    /// Starts an MQTT 5 enhanced authentication exchange for `method`, at CONNECT and at
    /// every re-authentication; `None` means the method is not supported (CONNACK 0x8C).
    ///
    /// When the CONNECT names a method, this exchange alone decides: `authenticate` and the
    /// anonymous-access check are not consulted.
    fn start_auth(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        method: &ByteStr,
    ) -> Option<Box<dyn AuthExchange>> {
        let _ = (client_id, username, method);
        None
    }
}

/// Decides what a connected client may do.
pub trait Authorizer: Send + Sync {
    /// Whether the client may publish to `topic`.
    fn can_publish(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        topic: &TopicName,
    ) -> bool;
    /// Whether the client may subscribe with `filter`.
    fn can_subscribe(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        filter: &TopicFilter,
    ) -> bool;

    /// Whether a message published on `topic` may be delivered to the client, asked for each
    /// delivery (live, queued or retained) just before it is sent; a refused one is dropped
    /// as if never matched. The default allows everything that `can_subscribe` let in.
    fn can_receive(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        topic: &TopicName,
    ) -> bool {
        let _ = (client_id, username, topic);
        true
    }
}

/// What an access check refused (reported as [`BrokerEvent::Denied`](super::BrokerEvent::Denied),
/// for the logs; never a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The client identifier (as the client sent it, if the CONNECT was refused before one
    /// was settled).
    pub client_id: ByteStr,
    /// The user name, if any.
    pub username: Option<ByteStr>,
    /// What was refused.
    pub action: DeniedAction,
    /// Why, in a few words.
    pub reason: &'static str,
}

/// The request an access check refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeniedAction {
    /// The connection, with the CONNACK reason code it got.
    Connect(ReasonCode),
    /// A PUBLISH to this topic (MQTT 3.1.x: dropped; MQTT 5: PUBACK / PUBREC 0x87).
    Publish(TopicName),
    /// A subscription with this filter.
    Subscribe(TopicFilter),
}

/// Lets everyone in and allows everything (anonymous access is checked separately).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        _: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        Ok(())
    }
}

impl Authorizer for AllowAll {
    fn can_publish(&self, _: &ByteStr, _: Option<&ByteStr>, _: &TopicName) -> bool {
        true
    }
    fn can_subscribe(&self, _: &ByteStr, _: Option<&ByteStr>, _: &TopicFilter) -> bool {
        true
    }
}
