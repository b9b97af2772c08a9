//! `ClientConfig`'s chainable setters.

use std::num::NonZeroU16;
use std::time::Duration;

use bytes::Bytes;

use super::config::{Backoff, ClientConfig};
use crate::codec::{ConnectProperties, Will};
use crate::types::{ByteStr, ProtocolVersion};

/// Chainable setters, so that a field added later is not a breaking change for code
/// that builds a [`ClientConfig`] from its default (`ClientConfig::new(..).with_keep_alive(30)`).
/// ```
/// use tinymqtt::client::ClientConfig;
/// use tinymqtt::{ByteStr, ProtocolVersion};
///
/// let config = ClientConfig::new(ProtocolVersion::V5, ByteStr::from_static("sensor-7"))
///     .with_keep_alive(30)
///     .with_manual_acks(true);
/// assert_eq!((config.keep_alive, config.manual_acks), (30, true));
/// ```
impl ClientConfig {
    /// Sets [`ClientConfig::protocol`].
    pub fn with_protocol(mut self, protocol: ProtocolVersion) -> ClientConfig {
        self.protocol = protocol;
        self
    }

    /// Sets [`ClientConfig::client_id`].
    pub fn with_client_id(mut self, client_id: ByteStr) -> ClientConfig {
        self.client_id = client_id;
        self
    }

    /// Sets [`ClientConfig::clean_start`].
    pub fn with_clean_start(mut self, clean_start: bool) -> ClientConfig {
        self.clean_start = clean_start;
        self
    }

    /// Sets [`ClientConfig::keep_alive`].
    pub fn with_keep_alive(mut self, keep_alive: u16) -> ClientConfig {
        self.keep_alive = keep_alive;
        self
    }

    /// Sets [`ClientConfig::username`].
    pub fn with_username(mut self, username: Option<ByteStr>) -> ClientConfig {
        self.username = username;
        self
    }

    /// Sets [`ClientConfig::password`].
    pub fn with_password(mut self, password: Option<Bytes>) -> ClientConfig {
        self.password = password;
        self
    }

    /// Sets [`ClientConfig::will`].
    pub fn with_will(mut self, will: Option<Will>) -> ClientConfig {
        self.will = will;
        self
    }

    /// Sets [`ClientConfig::properties`].
    pub fn with_properties(mut self, properties: ConnectProperties) -> ClientConfig {
        self.properties = properties;
        self
    }

    /// Sets [`ClientConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> ClientConfig {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`ClientConfig::ping_timeout`].
    pub fn with_ping_timeout(mut self, ping_timeout: Option<Duration>) -> ClientConfig {
        self.ping_timeout = ping_timeout;
        self
    }

    /// Sets [`ClientConfig::reconnect`].
    pub fn with_reconnect(mut self, reconnect: Option<Backoff>) -> ClientConfig {
        self.reconnect = reconnect;
        self
    }

    /// Sets [`ClientConfig::resubscribe`].
    pub fn with_resubscribe(mut self, resubscribe: bool) -> ClientConfig {
        self.resubscribe = resubscribe;
        self
    }

    /// Sets [`ClientConfig::manual_acks`].
    pub fn with_manual_acks(mut self, manual_acks: bool) -> ClientConfig {
        self.manual_acks = manual_acks;
        self
    }

    /// Sets [`ClientConfig::topic_aliases`].
    pub fn with_topic_aliases(mut self, topic_aliases: bool) -> ClientConfig {
        self.topic_aliases = topic_aliases;
        self
    }

    /// Sets [`ClientConfig::max_inflight`].
    pub fn with_max_inflight(mut self, max_inflight: Option<NonZeroU16>) -> ClientConfig {
        self.max_inflight = max_inflight;
        self
    }
}
