//! Authentication and authorization, behind two small traits.
//!
//! Plain CONNECT authentication asks [`Authenticator::authenticate`]. MQTT 5 enhanced
//! authentication (a CONNECT with an Authentication Method, then AUTH packets) asks
//! [`Authenticator::start_auth`] for an [`AuthExchange`] that runs one exchange, step by step;
//! the default supports no method, which refuses such a CONNECT with 0x8C.

use std::sync::Arc;

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
///
/// A check that takes time (password hashing, a lookup in a database or over HTTP) must not
/// run where connections are served or messages routed: such an authenticator says so with
/// [`Authenticator::defers`], and each connection then hands its check out as a
/// [`CredentialCheck`]
/// ([`ServerConnection::poll_credentials`](super::ServerConnection::poll_credentials)) for its
/// driver to run elsewhere and answer
/// ([`ServerConnection::handle_credentials`](super::ServerConnection::handle_credentials)).
/// The runtimes run them on a small pool of threads of their own, with a cap on the checks
/// waiting (see `BrokerOptions`); the single-thread [`Broker`](super::Broker) runs them
/// inline.
pub trait Authenticator: Send + Sync {
    /// `Ok` lets the client in; `Err` is the CONNACK reason code (MQTT 3.1.x clients get the
    /// matching return code: bad user name or password, or not authorized).
    fn authenticate(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        password: Option<&Bytes>,
    ) -> Result<(), ReasonCode>;

    /// Whether [`Authenticator::authenticate`] may take long, so that connections hand their
    /// checks out instead of calling it themselves (see the trait's documentation). `false`
    /// by default.
    fn defers(&self) -> bool {
        false
    }

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

/// A plain CONNECT's credentials, waiting for a deferring [`Authenticator`]'s verdict.
///
/// [`CredentialCheck::run`] asks the authenticator (for a thread that may block); an async
/// driver may instead answer from a check of its own (a database or HTTP client) with the
/// fields. Its `Debug` never shows the password.
pub struct CredentialCheck {
    /// The client identifier (the settled one: assigned, or the user name when the
    /// configuration says so).
    pub client_id: ByteStr,
    /// The user name.
    pub username: Option<ByteStr>,
    /// The password.
    pub password: Option<Bytes>,
    pub(crate) authenticator: Arc<dyn Authenticator>,
}

impl CredentialCheck {
    /// Asks the authenticator ([`Authenticator::authenticate`]); may block.
    pub fn run(&self) -> Result<(), ReasonCode> {
        self.authenticator.authenticate(
            &self.client_id,
            self.username.as_ref(),
            self.password.as_ref(),
        )
    }
}

impl std::fmt::Debug for CredentialCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCheck")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
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
