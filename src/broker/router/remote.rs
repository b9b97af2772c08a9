//! The router's side of a cluster (with `BrokerConfig::cluster` on): each message published
//! here goes out once to the other nodes, a message from another node is routed here and never
//! handed back, and the filters this node's sessions hold go out as interest, a filter when
//! its first session subscribes and again when its last one leaves.
//!
//! A client's QoS 1/2 message goes out with a ticket ([`RemoteOutput::Held`]): its
//! publisher's acknowledgement waits until the ticket comes back (`handle_remote_ack`), then
//! for the node's own conditions. Shared subscription groups are left to the cluster: a
//! node routes none of its own messages to them, and routes to one group the messages the
//! cluster chose this node for (`handle_remote_shared`).
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
use crate::broker::cluster::{RemoteOutput, RemoteTicket};
use crate::broker::mail::ConnId;
use crate::broker::tree::{SessionId, SubscriptionEntry, SubscriptionTree};
use crate::codec::Publish;
use crate::types::TopicFilter;

/// The cluster's state in a router.
#[derive(Debug, Default)]
pub(super) struct Remote {
    /// How many of this node's sessions hold each filter.
    interest: HashMap<TopicFilter, usize>,
    out: VecDeque<RemoteOutput>,
    /// What the message being routed is.
    pub(super) mode: Mode,
    /// The last ticket issued.
    tickets: u64,
    /// The ticket of the client's message being routed, once forwarded.
    issued: Option<RemoteTicket>,
    /// The publishers whose acknowledgement waits for the cluster, by ticket: the
    /// connection, and the session whose full queue it waits for next (if any). One entry
    /// per held acknowledgement, which the publishers' receive windows bound.
    held: HashMap<RemoteTicket, (ConnId, Option<SessionId>)>,
    /// The cluster positions of the durable deliveries routed here (sequence to stamp),
    /// the last [`REMOTE_ROUTED_CAP`](super::remote_routed::REMOTE_ROUTED_CAP) (see
    /// `remote_routed.rs`).
    pub(super) routed: std::collections::BTreeMap<u64, u64>,
}

/// What a message routed with a cluster is, and so where it goes.
///
/// Shared subscriptions are the cluster's business: a message published here goes to the
/// other nodes and comes back to one node per group (a NATS queue group, this one
/// included), so routing here leaves the groups out, except for the one group a message
/// came back for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) enum Mode {
    /// Published here: to the cluster, and to this node's plain subscriptions.
    #[default]
    Out,
    /// This node's own (`$SYS`): to every subscription here, shared ones included, never to
    /// the cluster.
    Here,
    /// Another node's, for plain subscriptions: to this node's plain subscriptions.
    Plain,
    /// A message for the shared subscription `filter` (`$share/{group}/{filter}`): to one
    /// member of that group here, and nowhere else (neither retained nor handed on).
    Group(TopicFilter),
}

impl Remote {
    /// Hands a message routed here to the other nodes, unless it must stay here.
    #[inline]
    pub(super) fn forward(&mut self, message: &Arc<Publish>, held: bool) {
        if self.mode != Mode::Out {
            return;
        }
        if held {
            self.tickets += 1;
            let ticket = RemoteTicket(self.tickets);
            self.issued = Some(ticket);
            self.out.push_back(RemoteOutput::Held {
                message: message.clone(),
                ticket,
            });
        } else {
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
    /// A message another node of the cluster routed: routed to this node's plain
    /// subscriptions like one published here by no session, retained here if it is
    /// retained, and never handed back to the cluster (its shared subscriptions get theirs
    /// through [`Router::handle_remote_shared`]). Without
    /// [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster) it is routed here all
    /// the same, shared subscriptions included.
    pub fn handle_remote(&mut self, now: Instant, message: Publish) {
        self.route_as(now, Arc::new(message), Mode::Plain);
    }

    /// A message of the cluster's for this node's shared subscription `filter`
    /// (`$share/{group}/{filter}`, as [`RemoteOutput::Subscribe`] named it): the cluster
    /// chose this node for it (a queue group), so it goes to one member of that group here,
    /// and nowhere else: not to plain subscriptions (they have it through
    /// [`Router::handle_remote`]), not to the retained store, not back to the cluster. A
    /// filter this node has no members of drops it; so does a filter that is not shared.
    pub fn handle_remote_shared(&mut self, now: Instant, filter: &TopicFilter, message: Publish) {
        if crate::topic::split_shared(filter.as_str()).is_none() {
            return;
        }
        self.route_as(now, Arc::new(message), Mode::Group(filter.clone()));
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

    /// The cluster holds the message of `ticket` ([`RemoteOutput::Held`]): its publisher's
    /// acknowledgement goes out once the node's own conditions hold too (the queue it
    /// filled has room, the store has it with durable acks). A ticket not held (handed back
    /// twice, or never issued) is ignored, as is one whose connection has gone.
    pub fn handle_remote_ack(&mut self, now: Instant, ticket: RemoteTicket) {
        let Some((conn, full)) = self
            .remote
            .as_deref_mut()
            .and_then(|r| r.held.remove(&ticket))
        else {
            return;
        };
        let (max_msgs, max_bytes) = (
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        let still_full = full.and_then(|sid| {
            let s = self.sessions.get_mut(&sid)?;
            let over = s.waiting_len() >= max_msgs || s.queue.bytes() >= max_bytes;
            over.then_some((sid, s))
        });
        match still_full {
            // As for a full queue without a cluster: until it has room, or for
            // `max_publisher_wait` at most.
            Some((sid, s)) => {
                s.waiting.push(conn);
                if s.waiting.len() == 1 {
                    let at = now + self.config.max_publisher_wait;
                    self.set_timer(at, super::Timer::Waited(sid));
                }
            }
            None => self.ticket(conn),
        }
    }

    /// Holds `conn`'s acknowledgement for the cluster if the message just routed was handed
    /// to it as [`RemoteOutput::Held`]; `full` is the session whose full queue it waits for
    /// next.
    pub(super) fn hold_for_remote(&mut self, conn: ConnId, full: Option<SessionId>) -> bool {
        let Some(r) = self.remote.as_deref_mut() else {
            return false;
        };
        match r.issued.take() {
            Some(ticket) => {
                r.held.insert(ticket, (conn, full));
                true
            }
            None => false,
        }
    }

    /// Routes a message here without handing it to the cluster.
    pub(super) fn route_here_only(&mut self, now: Instant, message: Arc<Publish>) {
        self.route_as(now, message, Mode::Here);
    }

    /// Routes a message published by no session in `mode`.
    fn route_as(&mut self, now: Instant, message: Arc<Publish>, mode: Mode) {
        if let Some(r) = self.remote.as_deref_mut() {
            r.mode = mode;
        }
        self.route(now, message, None);
        if let Some(r) = self.remote.as_deref_mut() {
            r.mode = Mode::Out;
        }
    }

    /// Whether the router leaves the shared subscription group `group` (matched by the
    /// message being routed, its members `members`) to the cluster.
    pub(super) fn leaves_group(
        &self,
        group: &str,
        members: &[(SessionId, SubscriptionEntry)],
    ) -> bool {
        match self.remote.as_deref().map(|r| &r.mode) {
            None | Some(Mode::Here) => false,
            Some(Mode::Out | Mode::Plain) => true,
            Some(Mode::Group(filter)) => {
                // The group is the one the message came for if its name is and its members
                // hold that very filter (two groups of one name on two filters both match
                // only a topic both filters match, and then go to the same members here).
                let named =
                    crate::topic::split_shared(filter.as_str()).is_some_and(|(g, _)| g == group);
                !(named
                    && members.iter().any(|(sid, _)| {
                        self.sessions
                            .get(sid)
                            .is_some_and(|s| s.subscriptions.contains_key(filter))
                    }))
            }
        }
    }

    /// Whether the message being routed came for one shared subscription only (it is then
    /// not retained here).
    pub(super) fn routes_one_group(&self) -> bool {
        matches!(
            self.remote.as_deref().map(|r| &r.mode),
            Some(Mode::Group(_))
        )
    }
}
