//! Persistence, sans-IO: the records a broker keeps across restarts, the changes its router
//! asks a store to write, and the byte format of each record.
//!
//! The core does no IO and reads no clock. A runtime that persists calls
//! [`Router::restore`](crate::broker::Router::restore) once at start with what its store
//! holds and the wall-clock time; from then on the router logs every change to what is
//! persisted as a [`StoreOp`], drained with
//! [`Router::poll_store`](crate::broker::Router::poll_store) after its mail, and the runtime
//! writes each drained batch in one transaction. Records carry wall-clock seconds (since the
//! Unix epoch, as the runtime says) so expiry keeps counting across a restart.
//!
//! Persisted so far: retained messages, and sessions that outlive their connection (client
//! id, protocol, expiry, when the connection ended, subscriptions with their options and
//! identifiers), and the offline queues of those sessions (each message a [`QueuedRecord`]
//! keyed by client id and a sequence number that keeps the queue's order). Not yet: inflight
//! messages, QoS 2 receive state, wills.
//!
//! Planned, not wired yet: with `fsync = always` a QoS 1/2 PUBLISH is acknowledged only once
//! what it changed is durable. The connection will hold its PUBACK/PUBREC and mail the router
//! the PUBLISH as now; the router logs the publish's ops followed by a ticket naming the
//! connection and packet id; the runtime writes every op it drained in one transaction (one
//! fsync for all the writers of that batch: the group commit), then hands the tickets back with
//! `Router::handle_durable`, which mails each connection the acknowledgements it may send.

mod format;

use std::num::NonZeroU32;

use crate::codec::{Publish, SubscriptionOptions};
use crate::types::{ByteStr, ProtocolVersion, TopicFilter, TopicName};

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
    /// Remove the session of a client id and every message of its queue.
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
            }
            StoreOp::Enqueue(q) => {
                self.queued
                    .retain(|o| (&o.client_id, o.seq) != (&q.client_id, q.seq));
                self.queued.push(q);
            }
            StoreOp::Dequeue { client_id, seq } => self
                .queued
                .retain(|o| (&o.client_id, o.seq) != (&client_id, seq)),
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
