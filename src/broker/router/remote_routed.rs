//! Exactly once for the cluster's durable deliveries, across a restart.
//!
//! A cluster binding reads the other nodes' QoS 1/2 messages from a log that delivers a
//! message again until the node acknowledges it, and acknowledges it only once the store
//! holds what routing it changed. A node killed between the two gets the message again
//! when it restarts. So a durable delivery comes with its position in that log
//! ([`Router::handle_remote_durable`]); the router logs the position in the same store batch
//! as the routing ([`StoreOp::PutRemoteRouted`]), restores it at start, and routes a
//! position it holds no more than once. A position is a sequence and a stamp: a log made
//! anew reuses sequences, with other stamps, and those messages are routed.
//!
//! **Cap.** The last [`REMOTE_ROUTED_CAP`] sequences are kept (in memory and in the store);
//! past it the lowest is forgotten (and deleted from the store): a delivery of a sequence
//! that old would be routed again. The binding's log delivers again only what waits for an
//! acknowledgement, which its own limits bound far below the cap.

use std::time::Instant;

use super::Router;
use crate::broker::persist::{RemotePosition, StoreOp};
use crate::codec::Publish;

/// How many routed cluster positions the router keeps (16 bytes each, and a row in the
/// store).
pub(crate) const REMOTE_ROUTED_CAP: usize = 65_536;

impl Router {
    /// A message of another node from the cluster's durable log at `position`: routed like
    /// [`Router::handle_remote`] unless this position was routed already, here or before a
    /// restart from the store (returns whether it was routed). The position goes to the
    /// store with what routing changed; the last 65,536 are kept. Without
    /// [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster) the position is not
    /// kept.
    pub fn handle_remote_durable(
        &mut self,
        now: Instant,
        message: Publish,
        position: RemotePosition,
    ) -> bool {
        let Some(remote) = self.remote.as_deref_mut() else {
            self.handle_remote(now, message);
            return true;
        };
        let old = remote.routed.insert(position.sequence, position.stamp);
        if old == Some(position.stamp) {
            return false;
        }
        let forgotten = if remote.routed.len() > REMOTE_ROUTED_CAP {
            remote.routed.pop_first()
        } else {
            None
        };
        self.log(StoreOp::PutRemoteRouted(position));
        if let Some((sequence, stamp)) = forgotten {
            self.log(StoreOp::DeleteRemoteRouted(RemotePosition {
                sequence,
                stamp,
            }));
        }
        self.handle_remote(now, message);
        true
    }

    /// Takes back the routed positions a store held (those past the cap, or all of them
    /// without a cluster, are deleted from it).
    pub(super) fn restore_remote_routed(&mut self, mut positions: Vec<RemotePosition>) {
        positions.sort_unstable();
        positions.dedup_by_key(|p| p.sequence);
        let keep = match self.remote.as_deref() {
            Some(_) => positions.len().saturating_sub(REMOTE_ROUTED_CAP),
            None => positions.len(),
        };
        let kept = positions.split_off(keep);
        for old in positions {
            self.log(StoreOp::DeleteRemoteRouted(old));
        }
        if let Some(remote) = self.remote.as_deref_mut() {
            remote
                .routed
                .extend(kept.into_iter().map(|p| (p.sequence, p.stamp)));
        }
    }
}
