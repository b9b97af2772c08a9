//! The broker core: a [`Router`] (what connections share) and a [`ServerConnection`] per
//! transport (all of its protocol work), exchanging opaque [`RouterMail`] and
//! [`ConnectionMail`] tagged with a never-reused [`ConnId`]; [`Broker`] is a single-thread
//! facade owning both.
//!
//! Like every machine of this crate it is sans-IO: call [`Broker::accept`] when a transport
//! connects, feed its bytes to [`Broker::handle_input`], and after every input drain
//! [`Broker::poll_transmit`], then [`Broker::poll_timeout`], then [`Broker::poll_event`].
//!
//! A multi-task runtime splits it instead: each connection task owns the [`ServerConnection`]
//! that [`Router::accept`] made, and carries what its `poll_mail` yields to the task that owns
//! the [`Router`], which carries what [`Router::poll_mail`] yields back. Mail that cannot reach
//! its connection goes to [`Router::handle_undelivered`] (and that connection is closed).
//!
//! # Queues
//!
//! Each session queues what it cannot receive yet (it is offline, or its in-flight window is
//! full), at most [`BrokerConfig::max_queued_messages`] messages and
//! [`BrokerConfig::max_queued_bytes`] bytes of whole messages (topic, properties and
//! payload). Every QoS 1/2 PUBLISH from a client is acknowledged once the router has routed
//! it; one that finds an online session's queue full is queued anyway (up to twice the
//! limits) and its PUBACK / PUBREC waits until that queue has room (for
//! [`BrokerConfig::max_publisher_wait`] at most), so a fast publisher slows to its slowest
//! online subscriber instead of losing messages, and a subscriber that stops reading cannot
//! stall it for longer. Otherwise a message that does not fit makes room by dropping the
//! oldest queued QoS 0 message; when none is left, the new message is dropped. Every drop is
//! counted ([`Broker::dropped`]). QoS 0 messages are queued for offline sessions
//! only with [`BrokerConfig::queue_qos0_offline`], as in Mosquitto.
//!
//! # Memory
//!
//! Queued and retained messages, sessions and subscriptions are accounted at their real size
//! in one budget, [`BrokerConfig::memory_limit`]: at the limit new PUBLISHes, subscriptions
//! and connections are refused with Quota exceeded while existing sessions keep being served
//! ([`BrokerStats::memory_used`], [`BrokerStats::refused_over_limits`]). Retained messages
//! have their own limits ([`BrokerConfig::max_retained_messages`],
//! [`BrokerConfig::max_retained_bytes`]), and so do sessions
//! ([`BrokerConfig::max_sessions`]). Retained messages for a new subscription are replayed in
//! pieces through the subscriber's bounded queue.
//!
//! # Authentication and limits
//!
//! [`Broker::with_auth`] takes an [`Authenticator`] (plain CONNECT credentials, and MQTT 5
//! enhanced authentication through [`Authenticator::start_auth`]) and an [`Authorizer`].
//! Connections, topic length and depth, client identifiers and subscriptions are capped by
//! [`BrokerConfig`]; each field says which reason code a client gets beyond it.
//!
//! ```
//! use std::time::Instant;
//! use tinymqtt::broker::{Broker, BrokerConfig, BrokerEvent};
//!
//! # #[allow(clippy::disallowed_methods)]
//! let now = Instant::now();
//! let mut broker = Broker::new(BrokerConfig::default());
//! let conn = broker.accept(now);
//! // A 3.1.1 CONNECT with client id "a", clean session, keep-alive 60 s.
//! let connect = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'a'];
//! broker.handle_input(now, conn, &connect);
//! let connack = bytes::Bytes::from_static(&[0x20, 2, 0, 0]);
//! assert_eq!(broker.poll_transmit(), Some((conn, connack)));
//! assert!(matches!(broker.poll_event(), Some(BrokerEvent::Connected { .. })));
//! ```

pub mod admin;
pub mod auth;
mod budget;
pub mod cluster;
pub mod config;
mod config_with;
mod connection;
mod deadlines;
mod link;
mod mail;
pub mod persist;
mod replay;
// The subscription tree and the retained store are the router's own; the internal feature
// `_internals` makes them public (hidden from the docs) for the benches and property tests.
#[cfg(feature = "_internals")]
#[doc(hidden)]
pub mod retained;
#[cfg(not(feature = "_internals"))]
mod retained;
mod router;
mod stats;
mod sys;
#[cfg(feature = "_internals")]
#[doc(hidden)]
pub mod tree;
#[cfg(not(feature = "_internals"))]
mod tree;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use admin::{
    AdminError, AdminReply, AdminRequest, AdminTag, ClientInfo, SessionInfo, SubscriptionInfo,
};
pub use auth::{
    AllowAll, AuthExchange, AuthStep, Authenticator, Authorizer, CredentialCheck, Denied,
    DeniedAction,
};
pub use config::{BrokerConfig, Redirect};
pub use connection::ServerConnection;
pub use link::IN_PROCESS;
pub use mail::{ConnId, ConnectionMail, RouterMail};
#[cfg(feature = "_internals")]
#[doc(hidden)]
pub use retained::RetainedStore;
pub use router::{ListenerSource, Restored, Router};
pub use stats::{BrokerStats, ByQoS, DropCounts, DropReason, RefusedCounts};
#[cfg(feature = "_internals")]
#[doc(hidden)]
pub use tree::{Match, SessionId, Subscribers, SubscriptionEntry, SubscriptionTree};

use crate::codec::Publish;
use crate::error::CloseReason;
use crate::hash::{IdMap, IdSet};
use crate::types::{ByteStr, ProtocolVersion, TopicFilter};
use cluster::RemoteOutput;
use deadlines::{Deadlines, Slot};
use persist::{StoreOp, StoreSnapshot};

/// What the broker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// A client's CONNECT was accepted.
    #[non_exhaustive]
    Connected {
        /// The connection.
        conn: ConnId,
        /// The client identifier (assigned by the broker if the client sent none).
        client_id: ByteStr,
        /// Who connected and how, for the logs (boxed: once per connection).
        info: Box<ConnectInfo>,
    },
    /// A connection ended; reported once.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Who ended it and why.
        reason: CloseReason,
    },
    /// Write what `poll_transmit` gave for this connection, then close its transport.
    CloseTransport(ConnId),
    /// An access check refused a connection, a publish or a subscription (for the logs).
    Denied {
        /// The connection.
        conn: ConnId,
        /// Who asked, what, and why it was refused (boxed: rare).
        denied: Box<Denied>,
    },
}

/// What a [`BrokerEvent::Connected`] says about the client beside its identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectInfo {
    /// The user name the client authenticated as, if any.
    pub username: Option<ByteStr>,
    /// The listener it came in on: the runtimes fill in its bound address before they hand
    /// the event to their hook (the core knows no listeners: `None` from it).
    pub listener: Option<ByteStr>,
    /// The protocol version of its CONNECT.
    pub protocol: ProtocolVersion,
    /// The keep-alive in force, in seconds (the server's for MQTT 5 when it imposed one).
    pub keep_alive: u16,
    /// The CONNECT's clean start (clean session) flag.
    pub clean_start: bool,
    /// Whether the broker had a session for it.
    pub session_present: bool,
}

/// A single-thread MQTT broker: one [`Router`] and every [`ServerConnection`], as one sans-IO
/// machine that relays their mail.
pub struct Broker {
    router: Router,
    conns: IdMap<ConnId, Slot>,
    /// Connections touched since the last pump ended (to collect what they transmit and
    /// report), each once: `touched` says which are in.
    dirty: Vec<ConnId>,
    touched: IdSet<ConnId>,
    /// Connections with input or router mail since their mail for the router was last
    /// drained.
    todo: Vec<ConnId>,
    transmit: VecDeque<(ConnId, Bytes)>,
    events: VecDeque<BrokerEvent>,
    /// Every connection's next deadline, earliest first (each slot in `conns` says which it
    /// holds).
    deadlines: Deadlines,
    /// Clients in this process, joined to their connections by memory (see `link`).
    links: link::Links,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker that lets everyone in and allows everything (see [`Broker::with_auth`]).
    pub fn new(config: BrokerConfig) -> Broker {
        Broker::with_auth(config, Arc::new(AllowAll), Arc::new(AllowAll))
    }

    /// A broker that asks `authenticator` and `authorizer`.
    pub fn with_auth(
        config: BrokerConfig,
        authenticator: Arc<dyn Authenticator>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Broker {
        Broker::from_router(Router::with_auth(config, authenticator, authorizer))
    }

    /// A broker around `router` (which has no connections yet).
    pub fn from_router(router: Router) -> Broker {
        Broker {
            router,
            conns: IdMap::default(),
            dirty: Vec::new(),
            touched: IdSet::default(),
            todo: Vec::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            deadlines: Deadlines::default(),
            links: link::Links::default(),
        }
    }

    /// Gives up the facade for its router, to run connections elsewhere (connections this
    /// broker accepted are closed first, as by [`Broker::shutdown`]).
    pub fn into_router(mut self, now: Instant) -> Router {
        if !self.conns.is_empty() {
            self.shutdown(now);
        }
        self.router
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        self.router.config()
    }

    /// Sets where the random bits of assigned client identifiers come from; see
    /// [`Router::set_client_id_source`].
    pub fn set_client_id_source(&mut self, source: Box<dyn FnMut() -> u128 + Send>) {
        self.router.set_client_id_source(source);
    }

    /// Tells who the transport of `conn` says the peer is; see
    /// [`ServerConnection::set_peer_identity`].
    pub fn set_peer_identity(&mut self, conn: ConnId, identity: ByteStr) {
        if let Some(s) = self.conns.get_mut(&conn) {
            s.conn.set_peer_identity(identity);
        }
    }

    /// Counters.
    pub fn stats(&self) -> BrokerStats {
        self.router.stats()
    }

    /// Messages dropped for `client_id` because its queue was full.
    pub fn dropped(&self, client_id: &ByteStr) -> Option<u64> {
        self.router.dropped(client_id)
    }

    /// A transport connected; returns its identifier. It must send CONNECT within the
    /// configured connect timeout.
    pub fn accept(&mut self, now: Instant) -> ConnId {
        let conn = self.router.accept(now);
        let id = conn.id();
        let closed = conn.is_closed();
        let mut slot = Slot::new(conn);
        self.deadlines.record_now(id, &mut slot);
        self.conns.insert(id, slot);
        if closed {
            // Refused at once (no room): its close is drained now.
            self.touch(id);
            self.pump(now);
        }
        id
    }

    /// Bytes received on `conn`.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.router.record_traffic(data.len() as u64, 0);
        if let Some(s) = self.conns.get_mut(&conn) {
            s.conn.handle_input(now, data);
            self.touch(conn);
            self.pump(now);
        }
    }

    /// `conn`'s transport closed.
    pub fn handle_transport_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(s) = self.conns.get_mut(&conn) {
            s.conn.handle_transport_closed(now);
            self.touch(conn);
            self.pump(now);
        }
        if let Some(s) = self.conns.remove(&conn) {
            self.deadlines.forget(conn, &s);
        }
    }

    /// Acts on every deadline due at `now`; a spurious call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.router.handle_timeout(now);
        // Each due connection is taken out, handled, and put back with its next deadline.
        while let Some(id) = self.deadlines.pop_due(now) {
            if let Some(s) = self.conns.get_mut(&id) {
                Deadlines::taken(s);
                s.conn.handle_timeout(now);
                self.deadlines.record_now(id, s);
                self.touch(id);
            }
        }
        if !self.links.is_empty() {
            self.link_timeouts(now);
        }
        self.pump(now);
    }

    /// Closes every connection: DISCONNECT 0x8B to MQTT 5 clients, and no wills.
    pub fn shutdown(&mut self, now: Instant) {
        self.router.shutdown(now);
        self.pump(now);
    }

    /// Bytes to write to a connection; yields after inputs, timeouts and shutdown.
    pub fn poll_transmit(&mut self) -> Option<(ConnId, Bytes)> {
        let out = self.transmit.pop_front();
        if let Some((_, bytes)) = &out {
            self.router.record_traffic(0, bytes.len() as u64);
        }
        out
    }

    /// The earliest deadline: connect timeouts, keep-alives, will delays, session expiries.
    pub fn poll_timeout(&self) -> Option<Instant> {
        #[cfg(debug_assertions)]
        {
            // The index agrees with the connections (checked in every debug build's test).
            let scan = self.conns.values().filter_map(|s| s.conn.poll_timeout());
            debug_assert_eq!(self.deadlines.first(), scan.min());
            let with = self
                .conns
                .values()
                .filter(|s| s.conn.poll_timeout().is_some());
            debug_assert_eq!(self.deadlines.len(), with.count());
        }
        self.deadlines
            .first()
            .into_iter()
            .chain(self.router.poll_timeout())
            .chain(self.links.poll_timeout())
            .min()
    }

    /// The next event; yields after inputs, timeouts and shutdown.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    /// A request from the application that runs the broker (publish, list, disconnect,
    /// remove); its answer comes out of [`Broker::poll_admin`] with `tag`. See
    /// [`Router::handle_admin`].
    pub fn handle_admin(&mut self, now: Instant, tag: AdminTag, request: AdminRequest) {
        self.router.handle_admin(now, tag, request);
        self.pump(now);
    }

    /// The answer to a request of the application; yields after [`Broker::handle_admin`],
    /// and after inputs and timeouts for publishes that waited (drain it after
    /// [`Broker::poll_event`]).
    pub fn poll_admin(&mut self) -> Option<(AdminTag, Result<AdminReply, AdminError>)> {
        self.router.poll_admin()
    }

    /// A message another node of the cluster routed: routed here, never handed back; see
    /// [`Router::handle_remote`].
    pub fn handle_remote(&mut self, now: Instant, message: Publish) {
        self.router.handle_remote(now, message);
        self.pump(now);
    }

    /// A message of another node from the cluster's durable log at `position`, routed once
    /// per position (across restarts, with a store); see [`Router::handle_remote_durable`].
    pub fn handle_remote_durable(
        &mut self,
        now: Instant,
        message: Publish,
        position: persist::RemotePosition,
    ) -> bool {
        let routed = self.router.handle_remote_durable(now, message, position);
        self.pump(now);
        routed
    }

    /// A message of the cluster's for this node's shared subscription `filter`; see
    /// [`Router::handle_remote_shared`].
    pub fn handle_remote_shared(&mut self, now: Instant, filter: &TopicFilter, message: Publish) {
        self.router.handle_remote_shared(now, filter, message);
        self.pump(now);
    }

    /// The cluster holds the message of `ticket`; see [`Router::handle_remote_ack`].
    pub fn handle_remote_ack(&mut self, now: Instant, ticket: cluster::RemoteTicket) {
        self.router.handle_remote_ack(now, ticket);
        self.pump(now);
    }

    /// What goes to the other nodes of the cluster (with [`BrokerConfig::cluster`] on); yields
    /// after inputs, timeouts and commands (drain it after [`Broker::poll_event`]); see
    /// [`Router::poll_remote`].
    pub fn poll_remote(&mut self) -> Option<RemoteOutput> {
        self.router.poll_remote()
    }

    /// The filters this node's sessions hold, as the cluster last heard of them; see
    /// [`Router::remote_interest`].
    pub fn remote_interest(&self) -> Vec<TopicFilter> {
        self.router.remote_interest()
    }

    /// Names the listener `conn` came through (see [`Router::set_listener`]).
    pub fn set_listener(&mut self, conn: ConnId, listener: ByteStr) {
        self.router.set_listener(conn, listener);
    }

    /// Restores retained messages and sessions from a store and turns the change log on; see
    /// [`Router::restore`].
    pub fn restore(&mut self, now: Instant, wall: u64, snapshot: StoreSnapshot) -> Restored {
        self.router.restore(now, wall, snapshot)
    }

    /// A change for the store; yields after inputs, timeouts and [`Broker::restore`] once a
    /// store is on (drain it after [`Broker::poll_event`]); see [`Router::poll_store`].
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.router.poll_store()
    }

    /// A drained [`StoreOp::Durable`] ticket is durable, with everything before it; see
    /// [`Router::handle_durable`].
    pub fn handle_durable(&mut self, now: Instant, ticket: persist::Ticket) {
        self.router.handle_durable(now, ticket);
        self.pump(now);
    }

    /// Notes that `conn` got input or mail: its mail for the router is drained next, and what
    /// it transmits and reports is collected when the pump ends.
    fn touch(&mut self, conn: ConnId) {
        if self.todo.last() != Some(&conn) {
            self.todo.push(conn);
        }
        if self.touched.insert(conn) {
            self.dirty.push(conn);
        }
    }

    /// Relays mail between connections and the router until both are quiet, collects what
    /// the touched connections want to send and report, and moves the links' bytes.
    fn pump(&mut self, now: Instant) {
        self.pump_once(now);
        if !self.links.is_empty() {
            self.shuttle(now);
        }
    }

    /// Relays mail between connections and the router until both are quiet, then collects
    /// what the touched connections want to send and report, in order of identifier.
    fn pump_once(&mut self, now: Instant) {
        let mut todo = Vec::new();
        loop {
            // Only connections that got something since they were last drained can have mail.
            std::mem::swap(&mut todo, &mut self.todo);
            for id in todo.drain(..) {
                let Some(Slot { conn: c, .. }) = self.conns.get_mut(&id) else {
                    continue;
                };
                // A single thread has nowhere else to run a deferred check: inline.
                while let Some(check) = c.poll_credentials() {
                    c.handle_credentials(now, check.run());
                }
                while let Some(mail) = c.poll_mail() {
                    self.router.handle_mail(now, mail);
                }
            }
            while let Some(mail) = self.router.poll_mail() {
                let id = mail.conn();
                if let Some(s) = self.conns.get_mut(&id) {
                    s.conn.handle_mail(now, mail);
                    self.touch(id);
                }
            }
            if self.todo.is_empty() {
                break;
            }
        }
        self.todo = todo;
        let mut dirty = std::mem::take(&mut self.dirty);
        self.touched.clear();
        dirty.sort_unstable();
        for &id in &dirty {
            let Some(s) = self.conns.get_mut(&id) else {
                continue;
            };
            let link = self.links.holds(id);
            while let Some(bytes) = s.conn.poll_transmit() {
                if link {
                    self.links.transmitted(id, bytes);
                } else {
                    self.transmit.push_back((id, bytes));
                }
            }
            while let Some(e) = s.conn.poll_event() {
                match e {
                    BrokerEvent::CloseTransport(c) if link => self.links.close(c),
                    e => self.events.push_back(e),
                }
            }
            if s.conn.is_closed() {
                self.deadlines.forget(id, s);
                self.conns.remove(&id);
            } else {
                self.deadlines.record(id, s);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }
}
