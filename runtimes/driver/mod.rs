//! The poll loop, written once for every runtime.
//!
//! The sans-IO machines are wrapped by synchronous cores that know the drain order and the
//! waiters of pending commands: `ClientCore`, `RouterCore` (the broker's
//! [`Router`](crate::broker::Router) and a mailbox per connection) and the connection drain. The
//! async runtimes run them in the loops of this module, generic over a small `Runtime` trait
//! (connect, bind, read, write, sleep until, spawn); the blocking runtime runs the same cores on
//! threads. A runtime file only binds sockets and timers.
//!
//! The broker runs one task per connection, which owns its
//! [`ServerConnection`](crate::broker::ServerConnection): it reads the socket, feeds the
//! connection, writes what it transmits and keeps its deadlines, and sends the router task all
//! the mail one wake produced as one batch. On a wake it takes what is there (the mail in its
//! post and the bytes the socket has) before it writes once: fewer writes, and no read that
//! finds nothing. The router task owns the `Router` and only routes: it sends each connection
//! its mail as one batch per report (the blocking runtime's router thread routes every report
//! waiting before one drain: there each batch costs a channel send and a thread wake), never
//! waiting on a connection. Byte counts travel with the batches (or alone, at most once a
//! second), so `BrokerStats::bytes_*` can lag a connection until its next input, mail or close.
//!
//! With persistence, a store writer thread owns the store: the router task sends it each
//! drain's changes as one batch and goes on routing; the writer commits every batch waiting
//! in one transaction (group commit, synced as [`Fsync`] says) and hands the tickets back
//! through a channel, waking the router task through its inbox; the router then lets the
//! connections send the acknowledgements they held.
//!
//! # Queue caps and overflow policies
//!
//! Every queue between tasks is bounded:
//!
//! | queue | cap | when full |
//! | --- | --- | --- |
//! | client commands (publish, subscribe, ...): those waiting behind one that waits for room in the in-flight window or for a connection, and those carried out whose bytes the driver has not taken for writing yet (a command that can go at once is carried out by the caller, under the lock of the session it shares with the driver; the blocking runtime's commands wait in its session thread's input channel instead) | [`CLIENT_COMMANDS`] | the caller waits; the driver sends queued commands in order as acknowledgements free the window |
//! | client events ([`Events`]) | [`CLIENT_EVENTS`] | the driver waits, so it stops reading its socket (TCP backpressure to the server); a dropped [`Events`] discards events |
//! | events taken ahead for a callback (`Client::on_event`, `on_message`) while it runs | [`CALLBACK_EVENTS`] | the runner waits, so the client's own event queue fills, then the driver stops reading |
//! | bytes read from a socket, per connection in the blocking runtime (client and broker; the async client's driver and broker connection tasks read their sockets themselves, only when ready for more) | [`NET_CHUNKS`] reads of up to [`READ_CHUNK`] bytes | the reader stops reading the socket |
//! | broker router inbox (one for every connection: the mail batch of each wake, accepts) | [`ROUTER_INBOX`] batches | connection tasks wait, so they stop reading their sockets (backpressure); the router never waits on a connection |
//! | broker control ([`BrokerHandle`] requests: stats, publish, lists, kick, remove) | 16 | the caller waits |
//! | handle requests the router has not answered yet (a publish held for a full queue or for the store) | one per caller waiting on its answer | the caller waits |
//! | broker store writes (router to the store writer thread, with [`BrokerOptions::persistence`]): each router drain's changes as one batch | [`STORE_BATCHES`] batches in flight (sent, not yet handed back) | the router waits for the writer to commit (backpressure to every connection through the router inbox); the writer takes every waiting batch into one commit, so a slow disk makes commits bigger, not more |
//! | store hand-backs (writer to router: the tickets of each commit) | [`STORE_BATCHES`] | never full: each covers at least one batch in flight |
//! | broker mail, per connection (router to connection) | [`BrokerOptions::max_outbound_batches`] batches and [`BrokerOptions::max_outbound_bytes`] bytes (each mail's size with its topic and payload) | the connection is closed at once, unflushed (as if its transport failed, so its will is published); the batch that did not fit goes back to the router, which puts its QoS 1/2 messages back at the front of the session's queue and drops its QoS 0 ones (counted in `dropped`): a slow subscriber cannot grow the broker's memory nor stall the router |
//!
//! The broker core bounds each session's own queue as well (see the
//! [broker queue policy](crate::broker#queues)).

#[cfg(feature = "broker")]
mod admin;
mod answers;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod asyncrt;
#[cfg(feature = "broker")]
pub(crate) mod broker;
pub mod callback;
#[cfg(feature = "broker")]
pub(crate) mod link;
pub use callback::CALLBACK_EVENTS;
pub(crate) mod cause;
#[cfg(feature = "broker")]
pub(crate) mod checks;
pub(crate) mod client;
#[cfg(feature = "broker")]
pub(crate) mod connection;
#[cfg(feature = "broker")]
pub(crate) mod handle;
#[cfg(feature = "broker")]
pub(crate) mod mailbox;
#[cfg(feature = "broker")]
pub mod metrics;
mod oneshot;
#[cfg(feature = "broker")]
pub(crate) mod options;
#[cfg(feature = "broker")]
mod options_with;
mod park;
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
mod post;
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
mod server;
#[cfg(feature = "persistence")]
pub(crate) mod store;
pub mod transport;
#[cfg(feature = "broker")]
pub(crate) mod writer;

use std::io;
use std::time::Instant;

use crate::codec::AckProperties;
use crate::error::{ClientError, CloseReason};
use crate::{PacketId, ReasonCode};

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use client::Client;
pub use client::{AuthHandler, ConnectOptions};
#[cfg(feature = "broker")]
pub use handle::BrokerHandle;
#[cfg(feature = "broker")]
pub use link::Link;
#[cfg(feature = "broker")]
pub use options::Fsync;
#[cfg(feature = "broker")]
pub use options::{BrokerOptions, EventHook, TransportHook};
#[cfg(feature = "broker")]
pub use options::{CheckCredentials, Verdict};
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
pub use server::Server;
#[cfg(feature = "persistence")]
pub use store::STORE_FILE;

/// Commands a client may hold queued (behind a full in-flight window, or while it connects)
/// before callers wait.
pub const CLIENT_COMMANDS: usize = 64;
/// Events a client driver may queue before it stops reading its socket.
pub const CLIENT_EVENTS: usize = 256;
/// Reads a client connection may queue before its reader stops reading.
pub const NET_CHUNKS: usize = 16;
/// The largest single read from a socket, in bytes.
pub const READ_CHUNK: usize = 16 * 1024;
/// How long a client's event queue may stay full, untouched, while callers wait on the
/// client before they hear [`Error::EventsUnread`] instead of waiting on.
pub const EVENTS_STALL: std::time::Duration = std::time::Duration::from_secs(5);
/// Mail batches (from every connection) the broker router may queue before connection tasks
/// wait.
pub const ROUTER_INBOX: usize = 1024;

/// Batches of store changes the broker router may have in flight to its store writer (sent,
/// their tickets not handed back yet) before it waits for the disk.
pub const STORE_BATCHES: usize = 64;

/// Why a runtime command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session refused the command (invalid topic, packet too large, ...).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A socket operation failed.
    #[error("io error: {0}")]
    Io(#[from] io::Error),
    /// The first connection was refused or failed before CONNACK.
    #[error("connection failed: {0:?}")]
    ConnectFailed(CloseReason),
    /// The session ended without the acknowledgement (the server did not resume it).
    #[error("the session ended before the acknowledgement")]
    Lost,
    /// The client is stopped (disconnected and not reconnecting, or its driver ended).
    #[error("the client is stopped")]
    Stopped,
    /// The transport could not be opened or failed: the host name did not resolve, the
    /// connection was refused, a certificate was rejected (and why), the WebSocket upgrade
    /// was refused.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// The server asked for a step of enhanced authentication while `connect` waited for its
    /// CONNACK, and no [`ConnectOptions::with_auth`] handler answered it: the AUTH it sent.
    #[error("the server's AUTH challenge during connect went unanswered (see ConnectOptions::with_auth)")]
    AuthUnanswered(Box<crate::codec::Auth>),
    /// The server refused the publish: its PUBACK or PUBREC carried an error reason code
    /// (MQTT 5; a 3.1.x server cannot refuse a publish, it may only drop it).
    #[error("the server refused the publish: {:?}", .0.reason_code)]
    PublishRefused(Box<Ack>),
    /// The server refused one or more filters of a SUBSCRIBE: its whole SUBACK, a reason code
    /// per filter (the granted ones are subscribed).
    #[error("the server refused a subscription: {:?}", .0.reason_codes)]
    SubscribeRefused(Box<SubAck>),
    /// The server refused one or more filters of an UNSUBSCRIBE (MQTT 5): its whole UNSUBACK.
    #[error("the server refused an unsubscription: {:?}", .0.reason_codes)]
    UnsubscribeRefused(Box<SubAck>),
    /// The client's [`Events`] stayed full and unread for [`EVENTS_STALL`] while this call
    /// waited: the client stops reading its socket while its event queue is full, so no
    /// acknowledgement (and no room for queued commands) can arrive until someone reads the
    /// events. Every call waiting then hears this error rather than waiting forever (queued
    /// commands are abandoned; a publish already sent may still be delivered).
    ///
    /// It comes from a task that publishes more than the queues hold ([`CLIENT_COMMANDS`],
    /// [`CLIENT_EVENTS`]) and only reads its events afterwards, typically to a topic it is
    /// subscribed to: read the events in another task or thread (or drop them).
    #[error("the client's events went unread for too long while a call waited; read them in another task")]
    EventsUnread,
    /// The broker refused a request of its handle (a `$SYS` topic, no such session, a
    /// connected client's session to remove, ...).
    #[cfg(feature = "broker")]
    #[error(transparent)]
    Admin(#[from] crate::broker::AdminError),
}

/// How a publish ended: its acknowledgement (QoS 1 and 2), or its hand-over to the socket (QoS 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The packet identifier (`None` for QoS 0).
    pub packet_id: Option<PacketId>,
    /// The server's reason code (Success in 3.1.x and for QoS 0).
    pub reason_code: ReasonCode,
    /// The acknowledgement's properties.
    pub properties: AckProperties,
}

/// The answer to a SUBSCRIBE or UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The packet identifier.
    pub packet_id: PacketId,
    /// One per filter: the granted QoS or a failure (empty for a 3.1.x UNSUBACK).
    pub reason_codes: Vec<ReasonCode>,
    /// The acknowledgement's properties.
    pub properties: AckProperties,
}

/// A one-shot answer from the driver.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Where a [`Reply`] arrives.
pub(crate) type Answer<T> = oneshot::Receiver<Result<T, Error>>;

pub(crate) fn reply_channel<T>() -> (Reply<T>, Answer<T>) {
    oneshot::channel()
}

/// Answers a waiter; a waiter that went away does not matter.
pub(crate) fn answer<T>(reply: Reply<T>, value: Result<T, Error>) {
    reply.send(value);
}

pub use answers::{BlockingEvents, BlockingPending, Events, Pending};
#[cfg(feature = "blocking")]
pub(crate) use park::block_until;

/// The time, for the runtimes (the core never reads the clock).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub(crate) use asyncrt::{wait, Woke};
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
pub(crate) use asyncrt::{wait_fair, Alarm};
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use asyncrt::{Listener, Reader, Runtime, Writer};
