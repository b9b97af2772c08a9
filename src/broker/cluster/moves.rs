//! What a router answers when a session moves between the nodes of a cluster (the moving
//! itself is the router's, in `router/export.rs`).

use super::SessionImage;
#[cfg(doc)]
use crate::broker::Router;

/// What [`Router::export_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Export {
    /// The session was offline: here is its image; it is gone from this node.
    Ready(Box<SessionImage>),
    /// The session's connection was told to close (0x8E Session taken over): the image
    /// comes out of [`Router::poll_export`] once it has closed.
    Pending,
    /// No session of that client id here.
    Absent,
}

/// Why [`Router::import_session`] refused an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A session of that client id is online here, or on its way out to another node.
    #[error("the session is online on this node")]
    Online,
    /// The session expired before it arrived (or has an expiry of 0, which no offline
    /// session has).
    #[error("the session expired")]
    Expired,
    /// The session limit, the memory budget or the subscription limit has no room for it.
    #[error("no room for the session")]
    NoRoom,
}

/// The most ended sessions kept for [`Router::poll_ended_session`]; beyond it the oldest is
/// forgotten (the cluster then keeps a stale owner entry, which the next claim overwrites).
pub const MAX_ENDED: usize = 10_000;
