//! What the router task and the link's tasks hand each other.

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::broker::cluster::{RemoteOutput, RemoteTicket, SessionImage};
use crate::broker::ConnId;
use crate::codec::Publish;
use crate::types::{ByteStr, ReasonCode, TopicFilter};

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
    /// A message another node published, checked, for this node's plain subscriptions.
    Message(Publish),
    /// A message the cluster chose this node for among the members of the shared
    /// subscription `filter` (a NATS queue group; this node's own messages included).
    Shared(TopicFilter, Publish),
    /// A QoS 1/2 message another node published, from this node's durable consumer: the
    /// link acknowledges it to JetStream once the router task gives its id back; with
    /// its stream position, which the router routes once (kept in the store).
    Durable(Publish, AckId, Option<crate::store::RemotePosition>),
    /// JetStream stored a message of this node's: its publisher's acknowledgement may go.
    Stored(RemoteTicket),
    /// From the cluster's shared state: sessions and retained messages (see `state.rs`).
    State(StateEvent),
}

/// Acknowledgements the router task gives back: the id a delivered message was handed
/// over with ([`FromLink::Durable`]).
pub(crate) type AckId = u64;

/// What this task hands the router task (inside [`FromLink::State`]).
#[derive(Debug)]
pub(crate) enum StateEvent {
    /// The cluster's retained message of a topic changed (an empty payload clears it).
    Retained(Publish),
    /// The claim of the CONNECT waiting on `conn` ended.
    Claimed { conn: ConnId, outcome: Claimed },
    /// Another node claimed a session of this node: export it and answer with its image
    /// (empty: none here).
    Export {
        client_id: ByteStr,
        reply: oneshot::Sender<Bytes>,
    },
}

/// How a claim ended.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// This node owns the session; nothing to bring from elsewhere.
    Here,
    /// This node owns the session; here is what the previous owner held.
    Moved(Box<SessionImage>),
    /// The claim failed: the CONNECT is refused with this code.
    Refused(ReasonCode),
}
