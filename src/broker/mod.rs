//! The broker core (issue 4, being built): so far the two shared structures the router owns,
//! the subscription tree and the retained-message store.
//!
//! The rest of the shape (DESIGN.md): a `ServerConnection` per socket, one `Router` owning
//! what is shared, opaque mail between them, and a single-thread `Broker` facade.

pub mod retained;
pub mod tree;

pub use retained::RetainedStore;
pub use tree::{Match, SessionId, Subscribers, Subscription, SubscriptionTree};
