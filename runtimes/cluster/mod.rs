//! Several brokers acting as one over NATS with JetStream (the `cluster` feature, on tokio).
//!
//! Each node is a complete broker whose router has its remote side on
//! ([`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster)); this module binds that
//! side to NATS with `async-nats`. [`BrokerOptions::cluster`](crate::runtimes::BrokerOptions)
//! names the NATS servers and the node; the broker's `bind` starts the link, a task of the
//! tokio runtime beside the router task (a broker with a cluster must be bound inside a tokio
//! runtime: `bind` fails otherwise).
//!
//! - **Out.** The router task hands the link what [`Router::poll_remote`] yields after each
//!   input (`port.rs`). A message published here goes to NATS once, under
//!   `{prefix}.{subject}` ([`topic_to_subject`](crate::broker::cluster::topic_to_subject)),
//!   its body the MQTT 5 PUBLISH as encoded (properties intact), a `Tinymqtt-Origin` header
//!   naming this node (`envelope.rs`).
//! - **Interest.** A filter this node's sessions hold becomes NATS subscriptions to its
//!   subject filters ([`filter_to_subjects`](crate::broker::cluster::filter_to_subjects)),
//!   dropped when the last session leaves it; a `$share/{group}/{filter}` becomes a queue
//!   subscription, one queue per group and filter, so that each message reaches one node.
//!   The NATS client subscribes again by itself after a reconnect.
//! - **In.** A message from NATS is checked like a client's packet (a malformed one is
//!   dropped and counted, never trusted) and handed to the router, which routes it here and
//!   never hands it back: no loop, no echo (this node's own messages are recognised by their
//!   origin header and dropped).
//!
//! [`Router::poll_remote`]: crate::broker::Router::poll_remote

mod channel;
mod claims;
mod config;
mod durable;
mod envelope;
mod inbound;
mod keys;
mod link;
mod once;
mod port;
mod state;

pub(crate) use channel::FromLink;
pub use config::{ClusterConfig, ClusterConfigError};
pub(crate) use port::Port;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::broker::Router;
use crate::runtimes::BrokerOptions;

/// Starts the link of a broker with [`BrokerOptions::cluster`] (at bind), if it has one.
pub(crate) fn start(options: &BrokerOptions, router: &Router) -> io::Result<Option<Port>> {
    let Some(config) = &options.cluster else {
        return Ok(None);
    };
    let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()));
    if !router.config().cluster {
        return invalid("BrokerOptions::cluster needs a router with BrokerConfig::cluster on");
    }
    if let Err(e) = config.check() {
        return invalid(&e.to_string());
    }
    Port::start(config.clone(), router, Arc::default()).map(Some)
}

/// What a node's link to the cluster counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Messages handed to NATS.
    pub sent: u64,
    /// Messages received from the other nodes and handed to the router.
    pub received: u64,
    /// QoS 0 messages dropped because the link's queue was full.
    pub dropped: u64,
    /// Messages from NATS dropped as malformed (subject, body or topic).
    pub malformed: u64,
    /// Messages and interest changes waiting for the link now.
    pub queued: u64,
    /// Times the link (re)connected to NATS.
    pub connects: u64,
}

/// Reads a running node's [`ClusterStats`] (from
/// [`Server::cluster_monitor`](crate::runtimes::driver::Server::cluster_monitor)).
#[derive(Debug, Clone)]
pub struct ClusterMonitor(pub(crate) Arc<Counters>);

impl ClusterMonitor {
    /// The counts now.
    pub fn stats(&self) -> ClusterStats {
        self.0.snapshot()
    }
}

/// The link's counters, shared by the router task and the link task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) connects: AtomicU64,
}

impl Counters {
    /// Adds one to `c`.
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> ClusterStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClusterStats {
            sent: r(&self.sent),
            received: r(&self.received),
            dropped: r(&self.dropped),
            malformed: r(&self.malformed),
            queued: r(&self.queued),
            connects: r(&self.connects),
        }
    }
}
