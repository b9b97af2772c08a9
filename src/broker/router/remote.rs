//! The router's side of a cluster (with `BrokerConfig::cluster` on): each message published
//! here goes out once to the other nodes, a message from another node is routed here and never
//! handed back, and the filters this node's sessions hold go out as interest, a filter when
//! its first session subscribes and again when its last one leaves.
//!
//! What goes out waits in `out` until the caller drains it with `poll_remote`, after every
//! input like the mail; its size is what one input produces (a message, or the filters one
//! SUBSCRIBE, UNSUBSCRIBE or session end changes). The interest table holds one count per
//! distinct filter of this node's sessions, which the subscription limits and the memory
//! budget already bound.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::Router;
use crate::broker::cluster::RemoteOutput;
use crate::broker::tree::{SessionId, SubscriptionEntry, SubscriptionTree};
use crate::codec::Publish;
use crate::types::TopicFilter;

/// The cluster's state in a router.
#[derive(Debug, Default)]
pub(super) struct Remote {
    /// How many of this node's sessions hold each filter.
    interest: HashMap<TopicFilter, usize>,
    out: VecDeque<RemoteOutput>,
    /// While a message that must not leave this node is routed (another node's, `$SYS`).
    local_only: bool,
}

impl Remote {
    /// Hands a message routed here to the other nodes, unless it must stay here.
    #[inline]
    pub(super) fn forward(&mut self, message: &Arc<Publish>) {
        if !self.local_only {
            self.out.push_back(RemoteOutput::Publish(message.clone()));
        }
    }
}

/// Adds `sid`'s subscription to the tree, and the filter's interest if it is its first.
pub(super) fn subscribe(
    tree: &mut SubscriptionTree,
    remote: Option<&mut Remote>,
    filter: &TopicFilter,
    sid: SessionId,
    sub: SubscriptionEntry,
) {
    let replaced = tree.insert(filter, sid, sub);
    if let (None, Some(r)) = (replaced, remote) {
        let n = r.interest.entry(filter.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            r.out.push_back(RemoteOutput::Subscribe(filter.clone()));
        }
    }
}

/// Removes `sid`'s subscription from the tree, and the filter's interest if it was its last.
pub(super) fn unsubscribe(
    tree: &mut SubscriptionTree,
    remote: Option<&mut Remote>,
    filter: &TopicFilter,
    sid: SessionId,
) {
    let removed = tree.remove(filter, sid);
    if let (Some(_), Some(r)) = (removed, remote) {
        if let Some(n) = r.interest.get_mut(filter) {
            *n -= 1;
            if *n == 0 {
                r.interest.remove(filter);
                r.out.push_back(RemoteOutput::Unsubscribe(filter.clone()));
            }
        }
    }
}

impl Router {
    /// A message another node of the cluster routed: routed here like one published on this
    /// node by no session, retained here if it is retained, and never handed back to the
    /// cluster. Without [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster) it is
    /// routed here all the same.
    pub fn handle_remote(&mut self, now: Instant, message: Publish) {
        self.route_here_only(now, Arc::new(message));
    }

    /// What goes to the other nodes of the cluster: messages published here, and this node's
    /// interest. Yields after inputs, timeouts and commands, only with
    /// [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster) on (drain it after the
    /// mail).
    pub fn poll_remote(&mut self) -> Option<RemoteOutput> {
        self.remote.as_deref_mut()?.out.pop_front()
    }

    /// The filters this node's sessions hold, as the cluster last heard of them, each once
    /// (to announce them again to a new link); empty without
    /// [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster).
    pub fn remote_interest(&self) -> Vec<TopicFilter> {
        let mut filters: Vec<TopicFilter> = self
            .remote
            .as_deref()
            .map(|r| r.interest.keys().cloned().collect())
            .unwrap_or_default();
        filters.sort();
        filters
    }

    /// Routes a message here without handing it to the cluster.
    pub(super) fn route_here_only(&mut self, now: Instant, message: Arc<Publish>) {
        if let Some(r) = self.remote.as_deref_mut() {
            r.local_only = true;
        }
        self.route(now, message, None);
        if let Some(r) = self.remote.as_deref_mut() {
            r.local_only = false;
        }
    }
}
