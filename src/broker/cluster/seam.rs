//! What a router exchanges with the other nodes of its cluster, as values: the transport that
//! carries them (NATS, in the runtimes) is not the core's business.

use std::sync::Arc;

use crate::codec::Publish;
use crate::types::TopicFilter;

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
    /// The first of this node's sessions subscribed to `filter` (a shared subscription with
    /// its `$share/{group}/` prefix): this node now wants the messages it matches.
    Subscribe(TopicFilter),
    /// The last of this node's sessions subscribed to `filter` no longer is.
    Unsubscribe(TopicFilter),
}
