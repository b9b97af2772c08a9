//! The [`Broker`] facade's side of moving sessions and retained messages between nodes: the
//! router's calls, with the connections' mail relayed after each.

use std::time::Instant;

use super::{Export, ImportError, SessionImage};
use crate::broker::Broker;
use crate::codec::Publish;
use crate::types::ByteStr;

impl Broker {
    /// Takes the session of `client_id` away for another node; see
    /// [`Router::export_session`](crate::broker::Router::export_session). The facade relays
    /// the connection's close at once, so an online session's image is ready in
    /// [`Broker::poll_export`] when this returns `Pending`.
    pub fn export_session(&mut self, now: Instant, client_id: &ByteStr) -> Export {
        let export = self.router.export_session(now, client_id);
        self.pump(now);
        export
    }

    /// An exported session whose connection has closed; see
    /// [`Router::poll_export`](crate::broker::Router::poll_export).
    pub fn poll_export(&mut self) -> Option<(ByteStr, Option<Box<SessionImage>>)> {
        self.router.poll_export()
    }

    /// A session that ended here, for the cluster to forget its owner; see
    /// [`Router::poll_ended_session`](crate::broker::Router::poll_ended_session).
    pub fn poll_ended_session(&mut self) -> Option<ByteStr> {
        self.router.poll_ended_session()
    }

    /// Gives this node a session exported from another; see
    /// [`Router::import_session`](crate::broker::Router::import_session).
    pub fn import_session(&mut self, now: Instant, image: SessionImage) -> Result<(), ImportError> {
        let done = self.router.import_session(now, image);
        self.pump(now);
        done
    }

    /// Sets or clears a retained message as the cluster's retained store holds it, without
    /// routing it; see
    /// [`Router::handle_remote_retained`](crate::broker::Router::handle_remote_retained).
    pub fn handle_remote_retained(&mut self, now: Instant, message: Publish) -> bool {
        self.router.handle_remote_retained(now, message)
    }
}
