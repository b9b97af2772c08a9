//! Authentication and authorization, behind two small traits.

use bytes::Bytes;

use crate::types::{ByteStr, ReasonCode, TopicFilter, TopicName};

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
