//! What a router exchanges with the other nodes of its cluster, as values: the transport that
//! carries them (NATS, in the runtimes) is not the core's business.

use std::sync::Arc;

use crate::codec::Publish;
use crate::types::TopicFilter;

/// What holds a publisher's acknowledgement until the cluster holds its message
/// ([`RemoteOutput::Held`]); unique among a router's tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteTicket(pub(crate) u64);

impl RemoteTicket {
    /// Its number: counts up from 1 in the order the router issues them (a binding may name
    /// the message after it, with something unique to the router's run).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What a router hands to the other nodes ([`Router::poll_remote`]), with
/// [`BrokerConfig::cluster`] on.
///
/// [`Router::poll_remote`]: crate::broker::Router::poll_remote
/// [`BrokerConfig::cluster`]: crate::broker::BrokerConfig::cluster
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteOutput {
    /// A message published on this node (by a client, a will or the application), routed
    /// here: the other nodes route it to their own sessions. Each is handed over once; a
    /// message that came from another node ([`Router::handle_remote`]) and the node's own
    /// `$SYS` messages never are.
    ///
    /// [`Router::handle_remote`]: crate::broker::Router::handle_remote
    Publish(Arc<Publish>),
    /// A client's QoS 1/2 message, published on this node and routed here, whose
    /// publisher's PUBACK / PUBREC waits until the cluster holds it too: hand `ticket` back
    /// with [`Router::handle_remote_ack`] once it does (the binding's durable store, such as
    /// JetStream, acknowledged it). Otherwise like [`RemoteOutput::Publish`].
    ///
    /// [`Router::handle_remote_ack`]: crate::broker::Router::handle_remote_ack
    Held {
        /// The message, as routed.
        message: Arc<Publish>,
        /// What releases its publisher's acknowledgement.
        ticket: RemoteTicket,
    },
    /// The first of this node's sessions subscribed to `filter` (a shared subscription with
    /// its `$share/{group}/` prefix): this node now wants the messages it matches.
    Subscribe(TopicFilter),
    /// The last of this node's sessions subscribed to `filter` no longer is.
    Unsubscribe(TopicFilter),
}
