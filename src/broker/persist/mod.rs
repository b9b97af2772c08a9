//! Persistence, sans-IO: the records a broker keeps across restarts, the changes its router
//! asks a store to write, and the byte format of each record. (Also at its older path,
//! `tinymqtt::store`.) The router's side of it is `router/persist_log.rs`; the disk's side,
//! the runtimes' redb store and its writer thread, is `runtimes/driver/store.rs` and
//! `writer.rs`.
//!
//! The core does no IO and reads no clock. A runtime that persists calls
//! [`Router::restore`](crate::broker::Router::restore) once at start with what its store
//! holds and the wall-clock time; from then on the router logs every change to what is
//! persisted as a [`StoreOp`], drained with
//! [`Router::poll_store`](crate::broker::Router::poll_store) after its mail, and the runtime
//! writes each drained batch in one transaction. Records carry wall-clock seconds (since the
//! Unix epoch, as the runtime says) so expiry keeps counting across a restart.
//!
//! Persisted: retained messages; sessions that outlive their connection (client id,
//! protocol, expiry, when the connection ended, subscriptions with their options and
//! identifiers, and a will still to be published); every QoS 1/2 message owed to such a
//! session, queued or in flight, as a [`QueuedRecord`] with the packet identifier it goes out
//! with (the router picks it when it stores the message, so a resend after a restart uses
//! the same one); outbound QoS 2 flows that got their PUBREC and wait for PUBCOMP; inbound
//! QoS 2 packet identifiers answered with PUBREC and waiting for PUBREL, and the last ones with
//! a digest of their message (to answer a client's replay without routing it twice); in a
//! cluster, the positions of the other nodes' durable messages routed here (to route a
//! message the cluster delivers again after a crash once).
//!
//! Acknowledging only what is durable: with
//! [`BrokerConfig::durable_acks`](crate::broker::BrokerConfig::durable_acks) (the default),
//! a connection holds each PUBACK, PUBREC, PUBREL and PUBCOMP that promises something the
//! store must keep, and the router logs a [`StoreOp::Durable`] ticket right after the ops that
//! promise covers. The runtime writes every op it drained in one transaction (one fsync for
//! all the writers of that batch: the group commit), then hands each ticket back with
//! [`Router::handle_durable`](crate::broker::Router::handle_durable), in order; the router
//! mails the connection, which sends its oldest held packet. A ticket needs no write of its
//! own: a batch of tickets alone is handed back as soon as the batches before it are durable.

mod format;

use std::num::NonZeroU32;

use crate::broker::ConnId;
use crate::codec::{Publish, SubscriptionOptions, Will, WillProperties};
use crate::types::{ByteStr, PacketId, ProtocolVersion, TopicFilter, TopicName};

/// A retained message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedRecord {
    /// The message (retain flag set, no packet id, no topic alias).
    pub publish: Publish,
    /// When it arrived, in wall-clock seconds since the Unix epoch (its expiry counts from
    /// here).
    pub stored_at: u64,
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The filter, `$share/{group}/...` for a shared subscription.
    pub filter: TopicFilter,
    /// The options granted (QoS already capped by the broker).
    pub options: SubscriptionOptions,
    /// The subscription identifier (MQTT 5).
    pub identifier: Option<NonZeroU32>,
}

/// A session that outlives its connection, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client identifier (the record's key).
    pub client_id: ByteStr,
    /// The protocol version of its last connection.
    pub protocol: ProtocolVersion,
    /// Seconds the session outlives its connection; `u32::MAX` is forever.
    pub expiry: u32,
    /// When its connection ended, in wall-clock seconds; `None` while connected (a restart
    /// counts the expiry from the restart).
    pub disconnected_at: Option<u64>,
    /// Its subscriptions, sorted by filter.
    pub subscriptions: Vec<StoredSubscription>,
    /// The will of its last connection, while it may still be published.
    pub will: Option<StoredWill>,
    /// The user name the session belongs to.
    pub owner: SessionOwner,
}

/// Who a stored session belongs to: the user name it was made under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionOwner {
    /// Not known (a record written before owners were kept): its next connection claims it.
    #[default]
    Unknown,
    /// A client without a user name.
    Anonymous,
    /// This user name.
    User(ByteStr),
}

/// A session's will, as stored: published after its delay once the session's connection is
/// gone (a restart counts as the end of every connection), or when the session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// The message as it will be published (topic, payload, QoS, retain flag and the will's
    /// properties; no packet id).
    pub publish: Publish,
    /// The will delay interval, in seconds.
    pub delay: u32,
}

impl From<&Will> for StoredWill {
    /// A will as the store keeps it.
    fn from(w: &Will) -> StoredWill {
        let mut p = Publish::new(w.topic.clone(), w.payload.clone());
        p.qos = w.qos;
        p.retain = w.retain;
        let (wp, pp) = (&w.properties, &mut p.properties);
        pp.payload_format_indicator = wp.payload_format_indicator;
        pp.message_expiry_interval = wp.message_expiry_interval;
        pp.content_type = wp.content_type.clone();
        pp.response_topic = wp.response_topic.clone();
        pp.correlation_data = wp.correlation_data.clone();
        pp.user_properties = wp.user_properties.clone();
        StoredWill {
            publish: p,
            delay: wp.will_delay_interval.unwrap_or(0),
        }
    }
}

impl From<StoredWill> for Will {
    /// The will a stored one came from.
    fn from(w: StoredWill) -> Will {
        let p = w.publish;
        let pp = p.properties;
        Will {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: WillProperties {
                will_delay_interval: (w.delay > 0).then_some(w.delay),
                payload_format_indicator: pp.payload_format_indicator,
                message_expiry_interval: pp.message_expiry_interval,
                content_type: pp.content_type,
                response_topic: pp.response_topic,
                correlation_data: pp.correlation_data,
                user_properties: pp.user_properties,
            },
        }
    }
}

/// A packet identifier of a stored session's QoS 2 flow: inbound (PUBREC sent, waiting for
/// PUBREL) or outbound (PUBREL sent, waiting for PUBCOMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIdRecord {
    /// The client identifier of the session.
    pub client_id: ByteStr,
    /// The packet identifier.
    pub packet_id: PacketId,
}

/// An inbound QoS 2 packet identifier of a stored session and the digest of the message it
/// carried, kept past its PUBREL: a client that sends that PUBLISH again after its PUBREL (a
/// replay some clients make after a reconnect) is answered without routing it twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedRecord {
    /// The client identifier of the session.
    pub client_id: ByteStr,
    /// The packet identifier.
    pub packet_id: PacketId,
    /// The digest of the message's topic, payload, QoS and retain flag.
    pub digest: u64,
}

/// Proof that everything logged before it is to be made durable; handed back to
/// [`Router::handle_durable`](crate::broker::Router::handle_durable) once it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub(crate) conn: ConnId,
    /// For a delivery the router holds back until its record is durable, not for an
    /// acknowledgement.
    pub(crate) delivery: bool,
}

impl Ticket {
    /// The connection waiting for it.
    pub fn conn(&self) -> ConnId {
        self.conn
    }
}

/// A message waiting in the offline queue of a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    /// The client identifier of the session (the first half of the key).
    pub client_id: ByteStr,
    /// The message's place in the queue (the second half of the key): later messages have
    /// higher numbers.
    pub seq: u64,
    /// The message as it will be delivered (QoS, retain flag and subscription identifiers
    /// set; no packet id, no topic alias).
    pub publish: Publish,
    /// The packet identifier it goes out with (QoS 1 and 2).
    pub packet_id: Option<PacketId>,
    /// When it was queued, in wall-clock seconds since the Unix epoch.
    pub stored_at: u64,
    /// When it expires (MQTT 5 message expiry), in wall-clock seconds, if it does.
    pub expires_at: Option<u64>,
}

/// A change for the store to write, in the order the router made it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// Store (or replace) the retained message of its topic.
    PutRetained(RetainedRecord),
    /// Remove the retained message of a topic.
    DeleteRetained(TopicName),
    /// Store (or replace) a session.
    PutSession(SessionRecord),
    /// Remove the session of a client id, every message of its queue and its QoS 2 flows.
    DeleteSession(ByteStr),
    /// Store a message at the end of a session's offline queue.
    Enqueue(QueuedRecord),
    /// Remove a message from a session's queue (delivered, dropped or expired).
    Dequeue {
        /// The client identifier of the session.
        client_id: ByteStr,
        /// The message's sequence number.
        seq: u64,
    },
    /// Store an inbound QoS 2 packet identifier answered with PUBREC.
    PutIncoming(PacketIdRecord),
    /// Remove an inbound QoS 2 packet identifier (its PUBREL arrived).
    DeleteIncoming(PacketIdRecord),
    /// Store an outbound QoS 2 flow whose PUBREC arrived (PUBREL sent, waiting for PUBCOMP).
    PutReleased(PacketIdRecord),
    /// Remove an outbound QoS 2 flow (its PUBCOMP arrived).
    DeleteReleased(PacketIdRecord),
    /// Store (or replace) an inbound QoS 2 packet identifier with its message's digest.
    PutCompleted(CompletedRecord),
    /// Forget an inbound QoS 2 packet identifier's digest (the oldest of too many).
    DeleteCompleted(PacketIdRecord),
    /// Store the cluster position of a message of another node that was routed here
    /// ([`Router::handle_remote_durable`](crate::broker::Router::handle_remote_durable)),
    /// in the batch of what routing it changed.
    PutRemoteRouted(RemotePosition),
    /// Forget a routed cluster position (the lowest sequence of too many).
    DeleteRemoteRouted(RemotePosition),
    /// Nothing to write: hand the ticket back once every op before it is durable.
    Durable(Ticket),
}

/// Everything a store holds, read at start and given to
/// [`Router::restore`](crate::broker::Router::restore).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSnapshot {
    /// Retained messages, one per topic.
    pub retained: Vec<RetainedRecord>,
    /// Sessions, one per client id.
    pub sessions: Vec<SessionRecord>,
    /// Queued messages, in any order (restore sorts them by client id and sequence number).
    pub queued: Vec<QueuedRecord>,
    /// Inbound QoS 2 packet identifiers waiting for PUBREL.
    pub incoming: Vec<PacketIdRecord>,
    /// Outbound QoS 2 flows waiting for PUBCOMP.
    pub released: Vec<PacketIdRecord>,
    /// The last inbound QoS 2 packet identifiers with the digests of their messages.
    pub completed: Vec<CompletedRecord>,
    /// The cluster positions of the other nodes' messages routed here, the last ones.
    pub remote_routed: Vec<RemotePosition>,
}

/// Where a message of another node sits in the cluster's durable log: its sequence there,
/// and a stamp that tells a delivery again of the same message from another message at a
/// reused sequence (the log was made anew), such as the time the log stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemotePosition {
    /// The message's sequence number in the log.
    pub sequence: u64,
    /// The same for every delivery of the message (its store time in the log, say).
    pub stamp: u64,
}

impl StoreSnapshot {
    /// Applies `op` as a store would (tests and in-memory stores use this).
    pub fn apply(&mut self, op: StoreOp) {
        match op {
            StoreOp::PutRetained(r) => {
                self.retained.retain(|o| o.publish.topic != r.publish.topic);
                self.retained.push(r);
            }
            StoreOp::DeleteRetained(t) => self.retained.retain(|o| o.publish.topic != t),
            StoreOp::PutSession(s) => {
                self.sessions.retain(|o| o.client_id != s.client_id);
                self.sessions.push(s);
            }
            StoreOp::DeleteSession(id) => {
                self.sessions.retain(|o| o.client_id != id);
                self.queued.retain(|q| q.client_id != id);
                self.incoming.retain(|q| q.client_id != id);
                self.released.retain(|q| q.client_id != id);
                self.completed.retain(|q| q.client_id != id);
            }
            StoreOp::Enqueue(q) => {
                self.queued
                    .retain(|o| (&o.client_id, o.seq) != (&q.client_id, q.seq));
                self.queued.push(q);
            }
            StoreOp::Dequeue { client_id, seq } => self
                .queued
                .retain(|o| (&o.client_id, o.seq) != (&client_id, seq)),
            StoreOp::PutIncoming(r) => {
                if !self.incoming.contains(&r) {
                    self.incoming.push(r);
                }
            }
            StoreOp::DeleteIncoming(r) => self.incoming.retain(|o| *o != r),
            StoreOp::PutReleased(r) => {
                if !self.released.contains(&r) {
                    self.released.push(r);
                }
            }
            StoreOp::DeleteReleased(r) => self.released.retain(|o| *o != r),
            StoreOp::PutCompleted(r) => {
                self.completed
                    .retain(|o| (&o.client_id, o.packet_id) != (&r.client_id, r.packet_id));
                self.completed.push(r);
            }
            StoreOp::DeleteCompleted(r) => self
                .completed
                .retain(|o| (&o.client_id, o.packet_id) != (&r.client_id, r.packet_id)),
            StoreOp::PutRemoteRouted(p) => {
                self.remote_routed.retain(|o| o.sequence != p.sequence);
                self.remote_routed.push(p);
            }
            StoreOp::DeleteRemoteRouted(p) => self.remote_routed.retain(|o| *o != p),
            StoreOp::Durable(_) => {}
        }
    }
}

/// What went wrong reading or writing a stored record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored record is not in the format this version writes (corrupt or truncated).
    #[error("corrupt {record} record: {reason}")]
    Corrupt {
        /// Which kind of record (`retained`, `session`, `queued`).
        record: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A record could not be encoded.
    #[error("cannot encode a {record} record: {reason}")]
    Encode {
        /// Which kind of record.
        record: &'static str,
        /// Why.
        reason: &'static str,
    },
}
