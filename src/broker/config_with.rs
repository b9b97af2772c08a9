//! `BrokerConfig`'s chainable setters.

use std::time::Duration;

use super::config::{BrokerConfig, Redirect};
use crate::types::{ByteStr, QoS};

/// Chainable setters, so that a field added later is not a breaking change for code that builds a
/// [`BrokerConfig`] from its default (`BrokerConfig::default().with_sys_interval(None)`).
/// ```
/// use tinymqtt::broker::BrokerConfig;
///
/// let config = BrokerConfig::default()
///     .with_max_connections(Some(1000))
///     .with_sys_interval(None);
/// assert_eq!((config.max_connections, config.sys_interval), (Some(1000), None));
/// ```
impl BrokerConfig {
    /// Sets [`BrokerConfig::max_packet_size`].
    pub fn with_max_packet_size(mut self, max_packet_size: u32) -> BrokerConfig {
        self.max_packet_size = max_packet_size;
        self
    }

    /// Sets [`BrokerConfig::receive_maximum`].
    pub fn with_receive_maximum(mut self, receive_maximum: u16) -> BrokerConfig {
        self.receive_maximum = receive_maximum;
        self
    }

    /// Sets [`BrokerConfig::maximum_qos`].
    pub fn with_maximum_qos(mut self, maximum_qos: QoS) -> BrokerConfig {
        self.maximum_qos = maximum_qos;
        self
    }

    /// Sets [`BrokerConfig::retain_available`].
    pub fn with_retain_available(mut self, retain_available: bool) -> BrokerConfig {
        self.retain_available = retain_available;
        self
    }

    /// Sets [`BrokerConfig::topic_alias_maximum`].
    pub fn with_topic_alias_maximum(mut self, topic_alias_maximum: u16) -> BrokerConfig {
        self.topic_alias_maximum = topic_alias_maximum;
        self
    }

    /// Sets [`BrokerConfig::server_keep_alive`].
    pub fn with_server_keep_alive(mut self, server_keep_alive: Option<u16>) -> BrokerConfig {
        self.server_keep_alive = server_keep_alive;
        self
    }

    /// Sets [`BrokerConfig::max_keep_alive`].
    pub fn with_max_keep_alive(mut self, max_keep_alive: u16) -> BrokerConfig {
        self.max_keep_alive = max_keep_alive;
        self
    }

    /// Sets [`BrokerConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> BrokerConfig {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`BrokerConfig::allow_anonymous`].
    pub fn with_allow_anonymous(mut self, allow_anonymous: bool) -> BrokerConfig {
        self.allow_anonymous = allow_anonymous;
        self
    }

    /// Sets [`BrokerConfig::max_client_id_len`].
    pub fn with_max_client_id_len(mut self, max_client_id_len: usize) -> BrokerConfig {
        self.max_client_id_len = max_client_id_len;
        self
    }

    /// Sets [`BrokerConfig::max_subscriptions_per_client`].
    pub fn with_max_subscriptions_per_client(
        mut self,
        max_subscriptions_per_client: usize,
    ) -> BrokerConfig {
        self.max_subscriptions_per_client = max_subscriptions_per_client;
        self
    }

    /// Sets [`BrokerConfig::max_queued_messages`].
    pub fn with_max_queued_messages(mut self, max_queued_messages: usize) -> BrokerConfig {
        self.max_queued_messages = max_queued_messages;
        self
    }

    /// Sets [`BrokerConfig::max_queued_bytes`].
    pub fn with_max_queued_bytes(mut self, max_queued_bytes: usize) -> BrokerConfig {
        self.max_queued_bytes = max_queued_bytes;
        self
    }

    /// Sets [`BrokerConfig::queue_qos0_offline`].
    pub fn with_queue_qos0_offline(mut self, queue_qos0_offline: bool) -> BrokerConfig {
        self.queue_qos0_offline = queue_qos0_offline;
        self
    }

    /// Sets [`BrokerConfig::persistent_session_expiry`].
    pub fn with_persistent_session_expiry(
        mut self,
        persistent_session_expiry: Option<u32>,
    ) -> BrokerConfig {
        self.persistent_session_expiry = persistent_session_expiry;
        self
    }

    /// Sets [`BrokerConfig::max_inflight_v3`].
    pub fn with_max_inflight_v3(mut self, max_inflight_v3: u16) -> BrokerConfig {
        self.max_inflight_v3 = max_inflight_v3;
        self
    }

    /// Sets [`BrokerConfig::sys_interval`].
    pub fn with_sys_interval(mut self, sys_interval: Option<Duration>) -> BrokerConfig {
        self.sys_interval = sys_interval;
        self
    }

    /// Sets [`BrokerConfig::max_connections`].
    pub fn with_max_connections(mut self, max_connections: Option<usize>) -> BrokerConfig {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`BrokerConfig::max_topic_len`].
    pub fn with_max_topic_len(mut self, max_topic_len: usize) -> BrokerConfig {
        self.max_topic_len = max_topic_len;
        self
    }

    /// Sets [`BrokerConfig::max_topic_levels`].
    pub fn with_max_topic_levels(mut self, max_topic_levels: usize) -> BrokerConfig {
        self.max_topic_levels = max_topic_levels;
        self
    }

    /// Sets [`BrokerConfig::outbound_topic_aliases`].
    pub fn with_outbound_topic_aliases(mut self, outbound_topic_aliases: u16) -> BrokerConfig {
        self.outbound_topic_aliases = outbound_topic_aliases;
        self
    }

    /// Sets [`BrokerConfig::response_information`].
    pub fn with_response_information(
        mut self,
        response_information: Option<ByteStr>,
    ) -> BrokerConfig {
        self.response_information = response_information;
        self
    }

    /// Sets [`BrokerConfig::redirect`].
    pub fn with_redirect(mut self, redirect: Option<Redirect>) -> BrokerConfig {
        self.redirect = redirect;
        self
    }

    /// Sets [`BrokerConfig::max_publisher_wait`].
    pub fn with_max_publisher_wait(mut self, max_publisher_wait: Duration) -> BrokerConfig {
        self.max_publisher_wait = max_publisher_wait;
        self
    }

    /// Sets [`BrokerConfig::await_rel_timeout`].
    pub fn with_await_rel_timeout(mut self, await_rel_timeout: Duration) -> BrokerConfig {
        self.await_rel_timeout = await_rel_timeout;
        self
    }

    /// Sets [`BrokerConfig::durable_acks`].
    pub fn with_durable_acks(mut self, durable_acks: bool) -> BrokerConfig {
        self.durable_acks = durable_acks;
        self
    }

    /// Sets [`BrokerConfig::max_connect_size`].
    pub fn with_max_connect_size(mut self, max_connect_size: u32) -> BrokerConfig {
        self.max_connect_size = max_connect_size;
        self
    }

    /// Sets [`BrokerConfig::allow_takeover_by_other_user`].
    pub fn with_allow_takeover_by_other_user(
        mut self,
        allow_takeover_by_other_user: bool,
    ) -> BrokerConfig {
        self.allow_takeover_by_other_user = allow_takeover_by_other_user;
        self
    }

    /// Sets [`BrokerConfig::use_username_as_clientid`].
    pub fn with_use_username_as_clientid(mut self, use_username_as_clientid: bool) -> BrokerConfig {
        self.use_username_as_clientid = use_username_as_clientid;
        self
    }

    /// Sets [`BrokerConfig::use_identity_as_username`].
    pub fn with_use_identity_as_username(mut self, use_identity_as_username: bool) -> BrokerConfig {
        self.use_identity_as_username = use_identity_as_username;
        self
    }

    /// Sets [`BrokerConfig::memory_limit`].
    pub fn with_memory_limit(mut self, memory_limit: usize) -> BrokerConfig {
        self.memory_limit = memory_limit;
        self
    }

    /// Sets [`BrokerConfig::max_retained_messages`].
    pub fn with_max_retained_messages(mut self, max_retained_messages: usize) -> BrokerConfig {
        self.max_retained_messages = max_retained_messages;
        self
    }

    /// Sets [`BrokerConfig::max_retained_bytes`].
    pub fn with_max_retained_bytes(mut self, max_retained_bytes: usize) -> BrokerConfig {
        self.max_retained_bytes = max_retained_bytes;
        self
    }

    /// Sets [`BrokerConfig::max_sessions`].
    pub fn with_max_sessions(mut self, max_sessions: usize) -> BrokerConfig {
        self.max_sessions = max_sessions;
        self
    }

    /// Sets [`BrokerConfig::max_subscribe_filters`].
    pub fn with_max_subscribe_filters(mut self, max_subscribe_filters: usize) -> BrokerConfig {
        self.max_subscribe_filters = max_subscribe_filters;
        self
    }

    /// Sets [`BrokerConfig::no_matching_subscribers`].
    pub fn with_no_matching_subscribers(mut self, no_matching_subscribers: bool) -> BrokerConfig {
        self.no_matching_subscribers = no_matching_subscribers;
        self
    }

    /// Sets [`BrokerConfig::reason_strings`].
    pub fn with_reason_strings(mut self, reason_strings: bool) -> BrokerConfig {
        self.reason_strings = reason_strings;
        self
    }

    /// Sets [`BrokerConfig::cluster`].
    pub fn with_cluster(mut self, cluster: bool) -> BrokerConfig {
        self.cluster = cluster;
        self
    }
}
