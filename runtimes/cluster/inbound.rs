//! What every reader of the cluster's messages (a NATS subscription, the durable consumer)
//! needs to check a message and hand it to the router task.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use super::channel::FromLink;
use super::Counters;
use crate::topic::matches;
use crate::types::TopicFilter;

/// What every subscription reader needs.
#[derive(Clone)]
pub(super) struct Inbound {
    pub(super) prefix: Arc<str>,
    pub(super) node_id: Arc<str>,
    pub(super) max_packet_size: u32,
    pub(super) to_router: async_channel::Sender<FromLink>,
    pub(super) counters: Arc<Counters>,
    /// The plain filters subscribed: NATS delivers a message once per subscription it
    /// matches, so a message matching several is routed by the reader of the least of them
    /// only.
    pub(super) plain: Arc<RwLock<BTreeSet<TopicFilter>>>,
}

impl Inbound {
    /// Whether `topic`'s message, delivered to the subscription of the plain `filter`, is
    /// this subscription's to route (no other subscribed filter before it matches).
    pub(super) fn routes(&self, filter: &TopicFilter, topic: &str) -> bool {
        let plain = self.plain.read().unwrap_or_else(|e| e.into_inner());
        plain
            .iter()
            .find(|f| matches(f.as_str(), topic))
            .is_none_or(|first| first == filter)
    }
}
