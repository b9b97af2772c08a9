//! The router: what every connection shares. Sessions and their queues, the subscription
//! tree, retained messages, wills with their delay, session expiry and takeover.
//!
//! Queue policy, per session: at most `max_queued_messages` messages and `max_queued_bytes`
//! bytes of whole messages wait (offline, or beyond the in-flight window). A client's QoS 1/2
//! PUBLISH that finds an online session's queue full is queued anyway, up to twice those
//! limits, and its publisher's PUBACK / PUBREC waits until that queue is below its limits
//! again, or for `max_publisher_wait` at most (backpressure: a publisher's window stops it).
//! Otherwise, when a new message does not fit, the oldest queued QoS 0 message is dropped to
//! make room; if none is left to drop, the new message is dropped. Either way the session's
//! drop count grows. QoS 0 messages for an offline session are queued only with
//! `queue_qos0_offline`.
//!
//! One file per job: this one holds the state, the front door (accepting connections, mail
//! in and out, timers, `$SYS`, statistics, shutdown) and the dispatch of a connection's
//! mail; `sessions` connects, takes over, closes and expires sessions and sends wills;
//! `routing` routes, queues, releases and holds publishers back; `subscriptions` subscribes
//! and unsubscribes, and `replay` replays retained messages to new subscriptions; `owner`
//! says whose a session is; `queue` is a session's queue and `inflight` what its connection
//! holds; `parked` the deliveries waiting for the store's word; `persist_log` turns the
//! router's changes into the store's log and restores from a snapshot; `admin` answers the
//! application's requests (publish, list, kick, remove); `remote` is the cluster's side (what
//! goes to the other nodes, what comes from them), and `export` moves sessions between nodes
//! and takes retained messages from the cluster. The memory budget, which
//! connections check too, is `broker/budget.rs`.

mod admin;
mod export;
mod inflight;
mod owner;
mod parked;
mod persist_log;
mod queue;
mod remote;
mod remote_routed;
mod replay;
mod routing;
mod sessions;
mod subscriptions;

pub use persist_log::Restored;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::auth::{AllowAll, Authenticator, Authorizer};
use crate::broker::budget::Budget;
use crate::broker::config::BrokerConfig;
use crate::broker::connection::ServerConnection;
use crate::broker::mail::{
    ConnId, ConnectRequest, ConnectionMail, RouterMail, ToConnection, ToRouter,
};
use crate::broker::persist::StoreOp;
use crate::broker::retained::RetainedStore;
use crate::broker::stats::Counters;
use crate::broker::tree::{SessionId, SubscriptionEntry, SubscriptionTree};
use crate::broker::{sys, BrokerStats, DropReason};
use crate::hash::IdMap;
use crate::types::{ByteStr, QoS, ReasonCode};
use routing::Retained;
use sessions::Session;

/// Where `$SYS` reads each listener's open connections: (name, count) per listener
/// ([`Router::set_listener_source`]).
pub type ListenerSource = Box<dyn Fn() -> Vec<(String, usize)> + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Will(SessionId, u64),
    Expire(SessionId, u64),
    /// The publishers waiting for a session's queue have waited long enough.
    Waited(SessionId),
    /// The next piece of a session's retained replay.
    Replay(SessionId),
}

/// What every connection of a broker shares: sessions and their queues, the subscription
/// tree, retained messages, wills, expiry, takeover, `$SYS` and the statistics.
///
/// It hands out connections ([`Router::accept`]) and talks to them only through mail: give it
/// each [`RouterMail`](super::RouterMail) with [`Router::handle_mail`], and after every input
/// drain [`Router::poll_mail`], then [`Router::poll_timeout`].
pub struct Router {
    config: Arc<BrokerConfig>,
    authenticator: Arc<dyn Authenticator>,
    authorizer: Arc<dyn Authorizer>,
    /// Connections accepted and not yet reported closed.
    conns: BTreeSet<ConnId>,
    next_conn: u64,
    /// The first instant the router was given, for uptime.
    started: Option<Instant>,
    /// When `$SYS` statistics are next published.
    next_sys: Option<Instant>,
    bytes_received: u64,
    bytes_sent: u64,
    tree: SubscriptionTree,
    retained: RetainedStore<Retained>,
    by_client: HashMap<ByteStr, SessionId>,
    /// Boxed: the map's buckets stay small (a table keeps up to twice the slots it uses).
    sessions: IdMap<SessionId, Box<Session>>,
    online: IdMap<ConnId, SessionId>,
    /// A CONNECT waiting for the session's previous connection to hand it over.
    takeovers: IdMap<SessionId, (ConnId, ConnectRequest)>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    next_session: u64,
    outbox: VecDeque<(ConnId, ToConnection)>,
    /// Held acknowledgements a connection may send, not mailed yet: consecutive ones for the
    /// same connection (a read's worth of PUBLISHes) go as one `SendHeld`. Mailed before any
    /// other mail for that connection, and when the outbox is drained.
    held_due: Option<(ConnId, u32)>,
    /// What is counted as it happens (for statistics).
    counts: Counters,
    /// The load averages `$SYS` publishes, updated each round.
    load: sys::Load,
    /// Per-listener counts for `$SYS`, read from the runtime at each round.
    listener_source: Option<ListenerSource>,
    /// Inbound QoS 2 identifiers forgotten for want of a PUBREL (for statistics).
    await_rel_expired: u64,
    /// The change log for a store, once [`Router::restore`] turned it on.
    store: Option<persist_log::StoreLog>,
    /// The connection whose `Closed` came last, and its session: deliveries it returns
    /// (mail right behind its `Closed`) go back to that session.
    last_closed: Option<(ConnId, SessionId)>,
    /// QoS 2 deliveries of stored messages held back until their record is durable (with
    /// durable acks), and those behind them (see `parked`).
    parked: parked::Parked,
    /// The plain matches of the message being routed (kept to reuse its allocation).
    matches: Vec<(SessionId, SubscriptionEntry)>,
    /// While a client's QoS 1/2 PUBLISH is routed: its acknowledgement may wait for a full
    /// queue, and the first online session whose queue it took over the limit.
    routing: Option<Option<SessionId>>,
    /// Where the random bits of assigned client identifiers come from.
    id_source: Option<Box<dyn FnMut() -> u128 + Send>>,
    /// The memory every owner's bytes count in (`memory_limit`).
    budget: Budget,
    /// The bytes of retained messages (`max_retained_bytes`).
    retained_budget: Budget,
    /// Both, for the connections to ask before they take a PUBLISH.
    budgets: Arc<[Budget; 2]>,
    /// Retained messages still to be replayed to new subscriptions, per session.
    replays: IdMap<SessionId, replay::Replay>,
    /// The will and expiry timers of each offline session, removed when it reconnects or
    /// ends (a session that comes and goes leaves no timers behind).
    session_timers: IdMap<SessionId, Vec<(Instant, u64)>>,
    /// The application's requests (see `admin`).
    admin: admin::Admin,
    /// The cluster's side, with `BrokerConfig::cluster` on (see `remote`).
    remote: Option<Box<remote::Remote>>,
    /// Sessions on their way to another node of the cluster (see `export`).
    exports: export::Exports,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("connections", &self.conns.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    fn build(
        config: Arc<BrokerConfig>,
        authenticator: Arc<dyn Authenticator>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Router {
        let budget = Budget::new(config.memory_limit);
        let retained_budget = Budget::new(config.max_retained_bytes);
        Router {
            budgets: Arc::new([budget.clone(), retained_budget.clone()]),
            budget,
            retained_budget,
            replays: IdMap::default(),
            session_timers: IdMap::default(),
            admin: admin::Admin::default(),
            remote: config.cluster.then(Box::default),
            exports: export::Exports::default(),
            config,
            authenticator,
            authorizer,
            conns: BTreeSet::new(),
            next_conn: 0,
            started: None,
            next_sys: None,
            bytes_received: 0,
            bytes_sent: 0,
            tree: SubscriptionTree::new(),
            retained: RetainedStore::new(),
            by_client: HashMap::new(),
            sessions: IdMap::default(),
            online: IdMap::default(),
            takeovers: IdMap::default(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            next_session: 0,
            outbox: VecDeque::new(),
            held_due: None,
            counts: Counters::default(),
            load: sys::Load::default(),
            listener_source: None,
            await_rel_expired: 0,
            store: None,
            last_closed: None,
            parked: parked::Parked::default(),
            routing: None,
            matches: Vec::new(),
            id_source: None,
        }
    }

    /// A router that lets everyone in and allows everything (see [`Router::with_auth`]).
    pub fn new(config: BrokerConfig) -> Router {
        Router::with_auth(config, Arc::new(AllowAll), Arc::new(AllowAll))
    }

    /// A router whose connections ask `authenticator` and `authorizer`.
    pub fn with_auth(
        config: BrokerConfig,
        authenticator: Arc<dyn Authenticator>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Router {
        Router::build(Arc::new(config), authenticator, authorizer)
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// A transport connected: its connection, with an identifier never used before.
    ///
    /// It counts towards [`BrokerStats::connections`] until its last mail (the one its close
    /// produces) reaches [`Router::handle_mail`]. Connections still in their handshake count
    /// against [`BrokerConfig::max_connections`] too: with that many open and one more (room
    /// for a takeover), the new one comes back closed, before anything is read from it.
    pub fn accept(&mut self, now: Instant) -> ServerConnection {
        self.start_clock(now);
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let full = self
            .config
            .max_connections
            .is_some_and(|max| self.conns.len() > max);
        self.conns.insert(id);
        self.counts.accepted += 1;
        self.counts.max_connections = self.counts.max_connections.max(self.conns.len());
        let mut conn = ServerConnection::new(
            id,
            now,
            self.config.clone(),
            self.authenticator.clone(),
            self.authorizer.clone(),
            self.budgets.clone(),
        );
        if full {
            conn.refuse_transport();
        }
        conn.set_id_nonce(self.next_nonce());
        conn
    }

    /// Sets where the random bits of assigned client identifiers come from (the runtimes
    /// give a system random source). Without one they come from a fixed sequence that a
    /// client can predict: a broker that assigns identifiers should set one.
    pub fn set_client_id_source(&mut self, source: Box<dyn FnMut() -> u128 + Send>) {
        self.id_source = Some(source);
    }

    /// The next random bits for an assigned client identifier.
    fn next_nonce(&mut self) -> u128 {
        match &mut self.id_source {
            Some(source) => source(),
            None => {
                // SplitMix64 over the connection counter: distinct, not secret.
                let mut z = self.next_conn.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                u128::from(z ^ (z >> 31))
            }
        }
    }

    /// Mail from a connection.
    pub fn handle_mail(&mut self, now: Instant, mail: RouterMail) {
        self.handle(now, mail.conn, mail.mail);
    }

    /// Acts on every deadline due at `now` (will delays, session expiries, `$SYS`); a
    /// spurious call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_clock(now);
        self.fire_timers(now);
        if self.next_sys.is_some_and(|at| at <= now) {
            let uptime = self.started.map_or(Duration::ZERO, |s| now - s);
            let stats = self.stats();
            self.load.update(&stats, uptime);
            let listeners = self
                .listener_source
                .as_ref()
                .map(|f| f())
                .unwrap_or_default();
            for p in sys::messages(&stats, uptime, &self.load, &listeners) {
                // Each node's own: never handed to a cluster.
                self.route_here_only(now, Arc::new(p));
            }
            self.next_sys = self.config.sys_interval.map(|i| now + i);
        }
    }

    /// Sets where `$SYS` reads each listener's open connections at every round (name, count):
    /// each becomes `$SYS/broker/listener/{name}/clients/connected`. The runtimes give their
    /// listeners' gauges; the router only calls it.
    pub fn set_listener_source(&mut self, source: ListenerSource) {
        self.listener_source = Some(source);
    }

    /// Counts bytes the connections read from and wrote to their transports (for statistics).
    pub fn record_traffic(&mut self, received: u64, sent: u64) {
        self.bytes_received += received;
        self.bytes_sent += sent;
    }

    /// Mails every connection to close for a server shutdown: DISCONNECT 0x8B to MQTT 5
    /// clients, and no wills.
    pub fn shutdown(&mut self, _now: Instant) {
        let conns: Vec<ConnId> = self.conns.iter().copied().collect();
        for conn in conns {
            let mail = ToConnection::Disconnect(ReasonCode::ServerShuttingDown);
            self.send_to((conn, mail));
        }
    }

    /// Mail for a connection; yields after inputs, timeouts and shutdown.
    pub fn poll_mail(&mut self) -> Option<ConnectionMail> {
        let (conn, mail) = match self.outbox.pop_front() {
            Some(m) => m,
            None => {
                let (conn, n) = self.held_due.take()?;
                (conn, ToConnection::SendHeld(n))
            }
        };
        Some(ConnectionMail { conn, mail })
    }

    /// The earliest deadline: will delays, session expiries, publishers' waits for a full
    /// queue, the next `$SYS` round.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().into_iter().chain(self.next_sys).min()
    }

    /// Counters.
    pub fn stats(&self) -> BrokerStats {
        let c = &self.counts;
        let (mut inflight, mut queued, mut queued_bytes) = (0, 0, 0);
        for s in self.sessions.values() {
            inflight += s.inflight.held();
            queued += s.queue.len();
            queued_bytes += s.queue.bytes();
        }
        let mut dropped_by = c.dropped;
        dropped_by.add(DropReason::NotAuthorized, c.denied);
        dropped_by.add(DropReason::MemoryLimit, self.budget.refused());
        BrokerStats {
            connections: self.conns.len(),
            connections_maximum: c.max_connections,
            connections_total: c.accepted,
            connects: c.connects,
            refused: c.refused,
            sessions: self.sessions.len(),
            sessions_online: self.online.len(),
            sessions_expired: c.expired,
            subscriptions: self.tree.len(),
            shared_groups: self.tree.shared_groups(),
            retained: self.retained.len(),
            retained_bytes: self.retained_budget.used(),
            messages_received: c.received.total(),
            messages_sent: c.sent.total(),
            publish_received: c.received,
            publish_received_bytes: c.received_bytes,
            publish_sent: c.sent,
            publish_sent_bytes: c.sent_bytes,
            bytes_received: self.bytes_received,
            bytes_sent: self.bytes_sent,
            dropped: c.dropped.get(DropReason::QueueFull),
            dropped_by,
            publishes_denied: c.denied,
            inflight,
            queued,
            queued_bytes,
            memory_used: self.budget.used(),
            refused_over_limits: self.budget.refused(),
            await_rel_expired: self.await_rel_expired,
        }
    }

    /// Messages dropped for `client_id` because its queue was full.
    pub fn dropped(&self, client_id: &ByteStr) -> Option<u64> {
        let sid = self.by_client.get(client_id)?;
        self.sessions.get(sid).map(|s| s.dropped)
    }

    /// Starts the uptime and the `$SYS` timer at the first instant the router is given.
    pub(super) fn start_clock(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
            self.next_sys = self.config.sys_interval.map(|i| now + i);
        }
    }

    /// Queues mail for a connection (behind the acknowledgements it may already send).
    fn send_to(&mut self, (conn, mail): (ConnId, ToConnection)) {
        self.flush_held(conn);
        self.outbox.push_back((conn, mail));
    }

    /// Mails the acknowledgements `conn` may send, if any wait, so later mail follows them.
    fn flush_held(&mut self, conn: ConnId) {
        if let Some((due, n)) = self.held_due {
            if due == conn {
                self.held_due = None;
                self.outbox.push_back((conn, ToConnection::SendHeld(n)));
            }
        }
    }

    /// Lets `conn` send its `n` oldest held acknowledgements.
    pub(super) fn send_held(&mut self, conn: ConnId, n: u32) {
        match &mut self.held_due {
            Some((due, k)) if *due == conn => *k += n,
            due => {
                if let Some((other, k)) = due.replace((conn, n)) {
                    self.outbox.push_back((other, ToConnection::SendHeld(k)));
                }
            }
        }
    }

    /// The next will-delay or session-expiry deadline.
    fn next_timer(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    fn set_timer(&mut self, at: Instant, t: Timer) {
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, t);
        if let Timer::Will(sid, _) | Timer::Expire(sid, _) = t {
            self.session_timers.entry(sid).or_default().push(key);
        }
    }

    /// Removes the will and expiry timers of `sid` (it reconnected or ended).
    fn clear_session_timers(&mut self, sid: SessionId) {
        for key in self.session_timers.remove(&sid).unwrap_or_default() {
            self.timers.remove(&key);
        }
    }

    /// Fires will delays and session expiries due at `now`.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Will(sid, gen) => {
                    let will = match self.sessions.get_mut(&sid) {
                        Some(s) if s.generation == gen && s.conn.is_none() => s.will.take(),
                        _ => None,
                    };
                    if let Some(w) = will {
                        self.publish_will(now, w);
                        self.persist_session(sid); // the store forgets the will
                    }
                }
                Timer::Waited(sid) => self.wake_publishers(sid),
                Timer::Replay(sid) => self.replay_due(now, sid),
                Timer::Expire(sid, gen) => {
                    if self
                        .sessions
                        .get(&sid)
                        .is_some_and(|s| s.generation == gen && s.conn.is_none())
                    {
                        self.counts.expired += 1;
                        self.end_session(now, sid);
                    }
                }
            }
        }
    }

    /// Mail from a connection.
    fn handle(&mut self, now: Instant, conn: ConnId, mail: ToRouter) {
        match mail {
            ToRouter::Gone { refused } => {
                self.conns.remove(&conn);
                self.admin_gone(conn);
                if let Some(code) = refused {
                    self.counts.refused.count(code);
                    self.counts.connects += 1;
                }
            }
            ToRouter::Connect(req) => {
                self.admin_connecting(now, conn);
                self.connect(now, conn, *req);
            }
            ToRouter::Publish(p, digest) => {
                self.counts.received.add(p.qos, 1);
                self.counts
                    .received_bytes
                    .add(p.qos, p.payload.len() as u64);
                if p.retain && !p.payload.is_empty() && !self.retained_fits(&p) {
                    // Neither retained nor routed ([MQTT-3.3.1-5]: a retained message is
                    // stored): its error acknowledgement says the message was not taken.
                    self.budget.count_refused();
                    if let Some(id) = p.packet_id {
                        self.send_to((conn, ToConnection::RetainRefused(id)));
                        self.ticket(conn);
                    }
                    return;
                }
                let from = self.online.get(&conn).copied();
                let (qos, packet_id) = (p.qos, p.packet_id);
                if qos == QoS::AtMostOnce {
                    self.route(now, p, from);
                    return;
                }
                self.routing = Some(None);
                let matched = self.route(now, p, from);
                let full = self.routing.take().flatten();
                let v5 = from
                    .and_then(|sid| self.sessions.get(&sid))
                    .is_some_and(|s| s.protocol.is_v5());
                if let (false, true, true, Some(id)) = (
                    matched,
                    v5,
                    self.config.no_matching_subscribers && self.remote.is_none(),
                    packet_id,
                ) {
                    // Before the acknowledgement may go: PUBACK / PUBREC 0x10.
                    self.send_to((conn, ToConnection::NoSubscribers(id)));
                }
                if let (QoS::ExactlyOnce, Some(packet_id)) = (qos, packet_id) {
                    self.log_flow(conn, packet_id, StoreOp::PutIncoming);
                    if let Some(digest) = digest {
                        self.received_qos2(conn, packet_id, digest);
                    }
                }
                if self.hold_for_remote(conn, full) {
                    return; // until the cluster holds it (`remote`)
                }
                match full.and_then(|sid| Some(sid).zip(self.sessions.get_mut(&sid))) {
                    // Backpressure: the publisher hears back once that queue has room, or
                    // after `max_publisher_wait`.
                    Some((sid, s)) => {
                        s.waiting.push(conn);
                        if s.waiting.len() == 1 {
                            let at = now + self.config.max_publisher_wait;
                            self.set_timer(at, Timer::Waited(sid));
                        }
                    }
                    None => self.ticket(conn),
                }
            }
            ToRouter::Delivered { seq } => {
                if let Some(s) = self.online.get(&conn).and_then(|s| self.sessions.get(s)) {
                    persist_log::unqueue(&mut self.store, &s.client_id, Some(seq));
                }
            }
            ToRouter::Received { seq, packet_id } => {
                if let Some(s) = self.online.get(&conn).and_then(|s| self.sessions.get(s)) {
                    persist_log::unqueue(&mut self.store, &s.client_id, Some(seq));
                }
                self.log_flow(conn, packet_id, StoreOp::PutReleased);
                // The connection holds its PUBREL only with durable acks: a ticket otherwise
                // would let another held acknowledgement go before its time.
                if self.holds_acks() {
                    self.ticket(conn);
                }
            }
            ToRouter::Completed { packet_id } => {
                self.log_flow(conn, packet_id, StoreOp::DeleteReleased);
            }
            ToRouter::Released { packet_id } => {
                self.log_flow(conn, packet_id, StoreOp::DeleteIncoming);
                // Likewise its PUBCOMP.
                if self.holds_acks() {
                    self.ticket(conn);
                }
            }
            ToRouter::AwaitRelExpired { packet_id } => {
                self.await_rel_expired += 1;
                self.log_flow(conn, packet_id, StoreOp::DeleteIncoming);
            }
            ToRouter::Hold => self.ticket(conn),
            ToRouter::Dropped { reason, qos, bytes } => {
                self.counts.dropped.count(reason);
                // Counted when released, never sent.
                self.counts.sent.sub(qos, 1);
                self.counts.sent_bytes.sub(qos, u64::from(bytes));
            }
            ToRouter::Denied { held, memory } => {
                if !memory {
                    self.counts.denied += 1;
                }
                if held {
                    self.ticket(conn);
                }
            }
            ToRouter::Returned(d) => self.returned(now, conn, d),
            ToRouter::Subscribe {
                packet_id,
                subscription_id,
                filters,
            } => self.subscribe(now, conn, packet_id, subscription_id, filters),
            ToRouter::Unsubscribe { packet_id, filters } => {
                self.unsubscribe(conn, packet_id, filters)
            }
            ToRouter::Credit(n) => {
                if let Some(&sid) = self.online.get(&conn) {
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.inflight.finished(n as usize);
                    }
                    self.release(now, sid);
                    if self.replays.contains_key(&sid) {
                        self.replay_piece(now, sid);
                    }
                }
            }
            ToRouter::Closed {
                will,
                session_expiry,
                handover,
            } => {
                self.conns.remove(&conn);
                self.admin_gone(conn);
                self.closed(now, conn, will, session_expiry, handover);
            }
        }
    }
}
