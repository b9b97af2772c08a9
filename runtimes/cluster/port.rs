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

use super::channel::{AckId, FromLink, ToLink};
use super::{ClusterConfig, Counters};
use crate::broker::cluster::RemoteOutput;
use crate::broker::Router;
use crate::types::QoS;

/// The router task's end of the link.
#[derive(Debug)]
pub(crate) struct Port {
    to_link: async_channel::Sender<ToLink>,
    /// What did not fit in the channel and may not be dropped, in order.
    overflow: VecDeque<ToLink>,
    /// The link's messages for the router.
    pub(crate) from_link: async_channel::Receiver<FromLink>,
    pub(crate) counters: Arc<Counters>,
    /// Where the durable consumer hears which of its messages the router took.
    acks: async_channel::Sender<AckId>,
    /// Messages of the durable consumer the router took, each with the count of store
    /// batches that must be durable before JetStream hears of it (see `RouterCore`).
    taken: VecDeque<(u64, AckId)>,
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
        // Unbounded, yet bounded: one per message the consumer delivered and the router
        // took, which the consumer's max_ack_pending bounds.
        let (acks, acks_rx) = async_channel::unbounded();
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
            (rx, tx),
            acks_rx,
            counters.clone(),
        ));
        let mut port = Port {
            to_link,
            overflow: VecDeque::new(),
            from_link,
            counters,
            acks,
            taken: VecDeque::new(),
            claims,
        };
        port.push(ToLink::Interest(router.remote_interest()));
        Ok(port)
    }

    /// Hands the link what the router has for the other nodes (call it after each input, with
    /// the mail).
    pub(crate) fn hand(&mut self, router: &mut Router) {
        self.flush();
        while let Some(o) = router.poll_remote() {
            if let RemoteOutput::Publish(p) | RemoteOutput::Held { message: p, .. } = &o {
                self.claims.published(p);
            }
            self.push(ToLink::Out(o));
        }
    }

    /// A message of the link's, routed; for a message of the durable consumer, the id to
    /// acknowledge once what routing it changed is durable ([`Port::taken`]).
    pub(crate) fn input(
        &mut self,
        now: Instant,
        router: &mut Router,
        m: FromLink,
    ) -> Option<AckId> {
        let taken = match m {
            FromLink::Message(p) => {
                router.handle_remote(now, p);
                None
            }
            FromLink::Shared(f, p) => {
                router.handle_remote_shared(now, &f, p);
                None
            }
            FromLink::Durable(p, id, seq) => {
                // Routed once per sequence, across restarts too; acknowledged either way
                // once the store holds what the first routing changed.
                match seq {
                    Some(seq) => {
                        router.handle_remote_durable(now, p, seq);
                    }
                    None => router.handle_remote(now, p),
                }
                Some(id)
            }
            FromLink::Stored(ticket) => {
                router.handle_remote_ack(now, ticket);
                None
            }
            FromLink::State(e) => {
                self.claims.input(now, router, e);
                None
            }
        };
        self.hand(router);
        taken
    }

    /// The router took the durable consumer's message `id`; JetStream hears of it once the
    /// store made `batches` batches durable (at once without a store).
    pub(crate) fn taken(&mut self, id: AckId, batches: u64) {
        self.taken.push_back((batches, id));
    }

    /// The store made `done` batches durable: the messages that waited for them are
    /// acknowledged to JetStream.
    pub(crate) fn durable(&mut self, done: u64) {
        while let Some(&(batches, id)) = self.taken.front() {
            if batches > done {
                break;
            }
            self.taken.pop_front();
            // Closed only once the link is gone, and with it the consumer.
            let _ = self.acks.try_send(id);
        }
    }

    /// Moves what overflowed into the channel, in order, as far as it has room.
    fn flush(&mut self) {
        while let Some(first) = self.overflow.pop_front() {
            if let Err(e) = self.to_link.try_send(first) {
                self.overflow.push_front(e.into_inner());
                break;
            }
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether something waits for room in the link's channel (the router task then
    /// comes back to it soon: see `Server`'s loop).
    pub(crate) fn backlog(&self) -> bool {
        !self.overflow.is_empty()
    }

    fn push(&mut self, item: ToLink) {
        // What overflowed goes first, in order.
        self.flush();
        let item = if self.overflow.is_empty() {
            match self.to_link.try_send(item) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            }
        } else {
            item
        };
        // Held messages and interest wait; only QoS 0 may be dropped.
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
