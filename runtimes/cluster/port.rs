//! The router task's end of the link: where the router's remote outputs leave and the
//! cluster's messages come in.
//!
//! The router never waits on the link: [`Port::hand`] pushes without waiting into a channel of
//! [`ClusterConfig::max_pending`] entries; when it is full, a QoS 0 message is dropped and
//! counted, anything else (QoS 1/2 messages, interest) waits in `overflow`, in order, and
//! goes first at the next hand.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{ClusterConfig, Counters};
use crate::broker::cluster::RemoteOutput;
use crate::broker::Router;
use crate::codec::Publish;
use crate::types::{QoS, TopicFilter};

/// What the router task hands the link.
#[derive(Debug)]
pub(crate) enum ToLink {
    /// One of the router's remote outputs.
    Out(RemoteOutput),
    /// Every filter this node's sessions hold (the link subscribes to each).
    Interest(Vec<TopicFilter>),
}

/// What the link hands the router task.
#[derive(Debug)]
pub(crate) enum FromLink {
    /// A message another node published, checked.
    Message(Publish),
    /// From the cluster's shared state: sessions and retained messages (see `state.rs`).
    State(super::state::StateEvent),
}

/// The router task's end of the link.
#[derive(Debug)]
pub(crate) struct Port {
    to_link: async_channel::Sender<ToLink>,
    /// What did not fit in the channel and may not be dropped, in order.
    overflow: VecDeque<ToLink>,
    /// The link's messages for the router.
    pub(crate) from_link: async_channel::Receiver<FromLink>,
    pub(crate) counters: Arc<Counters>,
    /// Sessions claimed, exported and imported, and retained messages (see `claims.rs`).
    pub(crate) claims: super::claims::Claims,
}

impl Port {
    /// Starts the link task on the current tokio runtime and announces `router`'s interest
    /// to it (the sessions a store restored subscribe on NATS too).
    pub(crate) fn start(
        config: ClusterConfig,
        router: &Router,
        counters: Arc<Counters>,
    ) -> std::io::Result<Port> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            std::io::Error::other("the cluster needs the tokio runtime: bind the broker inside one")
        })?;
        let cap = config.max_pending.max(1);
        let (to_link, rx) = async_channel::bounded(cap);
        let (tx, from_link) = async_channel::bounded(cap);
        let max_packet_size = router.config().max_packet_size;
        let state = super::state::start(
            &handle,
            &config,
            router.config(),
            tx.clone(),
            counters.clone(),
        );
        let claims = super::claims::Claims::new(state, counters.clone());
        handle.spawn(super::link::run(
            config,
            max_packet_size,
            rx,
            tx,
            counters.clone(),
        ));
        let mut port = Port {
            to_link,
            overflow: VecDeque::new(),
            from_link,
            counters,
            claims,
        };
        port.push(ToLink::Interest(router.remote_interest()));
        Ok(port)
    }

    /// Hands the link what the router has for the other nodes (call it after each input, with
    /// the mail).
    pub(crate) fn hand(&mut self, router: &mut Router) {
        while let Some(o) = router.poll_remote() {
            if let RemoteOutput::Publish(p) = &o {
                self.claims.published(p);
            }
            self.push(ToLink::Out(o));
        }
    }

    /// A message of the link's, routed.
    pub(crate) fn input(&mut self, now: Instant, router: &mut Router, m: FromLink) {
        match m {
            FromLink::Message(p) => router.handle_remote(now, p),
            FromLink::State(e) => self.claims.input(now, router, e),
        }
        self.hand(router);
    }

    fn push(&mut self, item: ToLink) {
        // What overflowed goes first, in order.
        while let Some(first) = self.overflow.pop_front() {
            if let Err(e) = self.to_link.try_send(first) {
                self.overflow.push_front(e.into_inner());
                break;
            }
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        }
        let item = if self.overflow.is_empty() {
            match self.to_link.try_send(item) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            }
        } else {
            item
        };
        if let ToLink::Out(RemoteOutput::Publish(p)) = &item {
            if p.qos == QoS::AtMostOnce {
                Counters::bump(&self.counters.dropped);
                return;
            }
        }
        Counters::bump(&self.counters.queued);
        self.overflow.push_back(item);
    }
}
