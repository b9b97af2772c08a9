//! The router: what every connection shares. Sessions and their queues, the subscription
//! tree, retained messages, wills with their delay, session expiry and takeover.
//!
//! Queue policy, per session: at most `max_queued_messages` messages and `max_queued_bytes`
//! payload bytes wait (offline, or beyond the in-flight window). A client's QoS 1/2 PUBLISH
//! that finds an online session's queue full is queued anyway, up to twice those limits, and
//! its publisher's PUBACK / PUBREC waits until that queue is below its limits again, or for
//! `max_publisher_wait` at most (backpressure: a publisher's window stops it). Otherwise,
//! when a new message does not fit, the oldest queued QoS 0 message is dropped to make room;
//! if none is left to drop, the new message is dropped. Either way the session's drop count grows. QoS 0 messages for an
//! offline session are queued only with `queue_qos0_offline`.
//!
//! The public surface (accepting connections, mail, timers, statistics, shutdown) is in
//! `public`.

mod public;
mod store;

pub use store::Restored;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::{Authenticator, Authorizer};
use super::config::BrokerConfig;
use super::mail::{prefetch, ConnId, ConnectRequest, Delivery, Handover, ToConnection, ToRouter};
use super::retained::RetainedStore;
use super::tree::{Match, SessionId, SubscriptionEntry, SubscriptionTree};
use crate::codec::{Publish, RetainHandling, Will};
use crate::hash::IdMap;
use crate::store::StoreOp;
use crate::types::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter};

/// The members of a shared subscription group.
type Members = Vec<(SessionId, SubscriptionEntry)>;

/// A retained message and when it arrived (for its expiry).
#[derive(Debug, Clone)]
struct Retained {
    /// As routed: no packet identifier, topic alias or subscription identifier.
    message: Arc<Publish>,
    at: Instant,
}

impl Retained {
    fn expires_at(&self) -> Option<Instant> {
        expiry(&self.message, self.at)
    }
}

/// The delivery of the shared `message` to one session.
fn delivery(
    message: &Arc<Publish>,
    qos: QoS,
    retain: bool,
    ids: Vec<NonZeroU32>,
    expires_at: Option<Instant>,
) -> Delivery {
    Delivery {
        message: message.clone(),
        qos,
        retain,
        subscription_ids: ids.into_boxed_slice(),
        expires_at,
        stored: None,
        packet_id: None,
    }
}

fn expiry(p: &Publish, at: Instant) -> Option<Instant> {
    p.properties
        .message_expiry_interval
        .map(|s| at + Duration::from_secs(u64::from(s)))
}

#[derive(Debug)]
struct Session {
    client_id: ByteStr,
    protocol: ProtocolVersion,
    conn: Option<ConnId>,
    /// Seconds the session outlives its connection; `u32::MAX` is forever.
    expiry: u32,
    /// Ordered, and without a hasher's keys in every session.
    subscriptions: BTreeMap<TopicFilter, SubscriptionEntry>,
    queue: VecDeque<Delivery>,
    queued_bytes: usize,
    /// QoS 1/2 deliveries the connection holds unfinished.
    inflight: usize,
    window: usize,
    handover: Handover,
    /// Boxed: most sessions have none, and a will is large.
    will: Option<Box<Will>>,
    /// Bumped whenever a timer of this session must no longer fire.
    generation: u64,
    dropped: u64,
    /// Mail for the connection could not be delivered: nothing more is released to it.
    stalled: bool,
    /// Where the next undelivered message goes back into the queue while stalled.
    returned: usize,
    /// Whether the store holds a record of this session.
    persisted: bool,
    /// When its connection ended, in wall-clock seconds (only kept with a store).
    disconnected_at: Option<u64>,
    /// The last packet identifier the router picked for a stored message of this session.
    last_packet_id: u16,
    /// Publishers' connections waiting for their held acknowledgement until this online
    /// session's queue is below `max_queued_messages` again (one entry per held
    /// acknowledgement).
    waiting: Vec<ConnId>,
    /// QoS 0 messages in `queue` (the first to go when it overflows).
    queued_qos0: usize,
    /// Deliveries to its connection held back in the router's `parked` (those behind a
    /// stored QoS 2 one wait too, so the connection gets them in order).
    parked: usize,
}

impl Session {
    /// Puts a delivery that was never sent back at the front of the queue, behind those put
    /// back before it (since the connection stalled or ended).
    fn put_back(&mut self, d: Delivery) {
        self.queued_bytes += d.payload_len();
        let at = self.returned.min(self.queue.len());
        self.queue.insert(at, d);
        self.returned = at + 1;
    }

    /// Messages waiting to be sent: queued here, or released ahead of the window and waiting
    /// in the connection (see `prefetch`), which count against `max_queued_messages` alike.
    fn waiting_len(&self) -> usize {
        self.queue.len() + self.inflight.saturating_sub(self.window)
    }

    /// A session with nothing in it yet: offline, no expiry, no subscriptions, not stored.
    fn new(client_id: ByteStr, protocol: ProtocolVersion) -> Session {
        Session {
            client_id,
            protocol,
            conn: None,
            expiry: 0,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: 0,
            window: 1,
            handover: Handover::default(),
            will: None,
            generation: 0,
            dropped: 0,
            stalled: false,
            returned: 0,
            persisted: false,
            disconnected_at: None,
            last_packet_id: 0,
            waiting: Vec::new(),
            queued_qos0: 0,
            parked: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Will(SessionId, u64),
    Expire(SessionId, u64),
    /// The publishers waiting for a session's queue have waited long enough.
    Waited(SessionId),
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
    shared_cursor: HashMap<Box<str>, usize>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    next_session: u64,
    outbox: VecDeque<(ConnId, ToConnection)>,
    /// Held acknowledgements a connection may send, not mailed yet: consecutive ones for the
    /// same connection (a read's worth of PUBLISHes) go as one `SendHeld`. Mailed before any
    /// other mail for that connection, and when the outbox is drained.
    held_due: Option<(ConnId, u32)>,
    /// PUBLISH packets received from clients (for statistics).
    received: u64,
    /// Messages handed to connections to send (for statistics).
    sent: u64,
    /// The change log for a store, once [`Router::restore`] turned it on.
    store: Option<store::StoreLog>,
    /// The connection whose `Closed` came last, and its session: deliveries it returns
    /// (mail right behind its `Closed`) go back to that session.
    last_closed: Option<(ConnId, SessionId)>,
    /// QoS 2 deliveries of stored messages held back until their record is durable (with
    /// durable acks), oldest first, each with a ticket in the log: a receiver that delivers
    /// a QoS 2 message on PUBLISH must never see one the store may forget, or it could get
    /// it again under another packet identifier after a crash.
    parked: VecDeque<(ConnId, SessionId, Delivery)>,
    /// The plain matches of the message being routed (kept to reuse its allocation).
    matches: Vec<(SessionId, SubscriptionEntry)>,
    /// While a client's QoS 1/2 PUBLISH is routed: its acknowledgement may wait for a full
    /// queue, and the first online session whose queue it took over the limit.
    routing: Option<Option<SessionId>>,
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
        Router {
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
            shared_cursor: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            next_session: 0,
            outbox: VecDeque::new(),
            held_due: None,
            received: 0,
            sent: 0,
            store: None,
            last_closed: None,
            parked: VecDeque::new(),
            routing: None,
            matches: Vec::new(),
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
        self.timers.insert((at, self.timer_seq), t);
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
                Timer::Expire(sid, gen) => {
                    if self
                        .sessions
                        .get(&sid)
                        .is_some_and(|s| s.generation == gen && s.conn.is_none())
                    {
                        self.end_session(now, sid);
                    }
                }
            }
        }
    }

    /// Mail from a connection.
    fn handle(&mut self, now: Instant, conn: ConnId, mail: ToRouter) {
        match mail {
            ToRouter::Gone => {
                self.conns.remove(&conn);
            }
            ToRouter::Connect(req) => self.connect(now, conn, *req),
            ToRouter::Publish(p) => {
                self.received += 1;
                let from = self.online.get(&conn).copied();
                let (qos, packet_id) = (p.qos, p.packet_id);
                if qos == QoS::AtMostOnce {
                    return self.route(now, p, from);
                }
                self.routing = Some(None);
                self.route(now, p, from);
                let full = self.routing.take().flatten();
                if let (QoS::ExactlyOnce, Some(packet_id)) = (qos, packet_id) {
                    self.log_flow(conn, packet_id, StoreOp::PutIncoming);
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
                    store::unqueue(&mut self.store, &s.client_id, Some(seq));
                }
            }
            ToRouter::Received { seq, packet_id } => {
                if let Some(s) = self.online.get(&conn).and_then(|s| self.sessions.get(s)) {
                    store::unqueue(&mut self.store, &s.client_id, Some(seq));
                }
                self.log_flow(conn, packet_id, StoreOp::PutReleased);
                self.ticket(conn);
            }
            ToRouter::Completed { packet_id } => {
                self.log_flow(conn, packet_id, StoreOp::DeleteReleased);
            }
            ToRouter::Released { packet_id } => {
                self.log_flow(conn, packet_id, StoreOp::DeleteIncoming);
                self.ticket(conn);
            }
            ToRouter::Hold => self.ticket(conn),
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
                        s.inflight = s.inflight.saturating_sub(n as usize);
                    }
                    self.release(now, sid);
                }
            }
            ToRouter::Closed {
                will,
                session_expiry,
                handover,
            } => {
                self.conns.remove(&conn);
                self.closed(now, conn, will, session_expiry, handover);
            }
        }
    }

    fn connect(&mut self, now: Instant, conn: ConnId, req: ConnectRequest) {
        if let Some(&sid) = self.by_client.get(&req.client_id) {
            if let Some(old) = self.sessions.get(&sid).and_then(|s| s.conn) {
                // [MQTT-3.1.4-3]: the existing connection is closed first; it hands the session
                // over, then this CONNECT completes (see `closed`). A connection still waiting
                // for an earlier takeover of the same session is itself taken over.
                if let Some((displaced, _)) = self.takeovers.insert(sid, (conn, req)) {
                    self.send_to((
                        displaced,
                        ToConnection::Disconnect(ReasonCode::SessionTakenOver),
                    ));
                }
                self.send_to((old, ToConnection::Disconnect(ReasonCode::SessionTakenOver)));
                return;
            }
        }
        if self
            .config
            .max_connections
            .is_some_and(|max| self.online.len() >= max)
        {
            // Not a takeover, and every slot is taken: refused with quota exceeded.
            self.send_to((conn, ToConnection::Refused(ReasonCode::QuotaExceeded)));
            return;
        }
        self.complete_connect(now, conn, req);
    }

    fn complete_connect(&mut self, now: Instant, conn: ConnId, req: ConnectRequest) {
        let existing = self.by_client.get(&req.client_id).copied();
        if let (Some(sid), true) = (existing, req.clean_start) {
            // [MQTT-3.1.2-4]: clean start discards the stored session (its will goes out now).
            self.end_session(now, sid);
        }
        let resumed = if req.clean_start { None } else { existing };
        let sid = match resumed {
            Some(sid) => sid,
            None => {
                let sid = SessionId(self.next_session);
                self.next_session += 1;
                self.sessions.insert(
                    sid,
                    Box::new(Session::new(req.client_id.clone(), req.protocol)),
                );
                self.by_client.insert(req.client_id.clone(), sid);
                sid
            }
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        // Reconnecting within the will delay cancels the will ([MQTT-3.1.3-9]); stale timers
        // of this session stop counting.
        s.generation += 1;
        s.stalled = false;
        s.will = req.will.map(Box::new);
        s.protocol = req.protocol;
        s.expiry = req.session_expiry;
        s.conn = Some(conn);
        s.window = usize::from(req.window.max(1));
        s.disconnected_at = None;
        let handover = std::mem::take(&mut s.handover);
        // Every handed-over flow holds a window slot until its PUBACK or PUBCOMP.
        s.inflight = handover.outbound.len();
        self.online.insert(conn, sid);
        let hold_flows = self.holds_acks();
        self.persist_session(sid);
        let stored = self.store.is_some() && self.sessions.get(&sid).is_some_and(|s| s.persisted);
        self.send_to((
            conn,
            ToConnection::Accepted {
                session_present: resumed.is_some(),
                handover,
                hold_flows,
                stored,
            },
        ));
        self.release(now, sid);
    }

    fn closed(
        &mut self,
        now: Instant,
        conn: ConnId,
        will: bool,
        session_expiry: Option<u32>,
        handover: Handover,
    ) {
        let Some(sid) = self.online.remove(&conn) else {
            return;
        };
        self.last_closed = Some((conn, sid));
        // An offline session's queue holds publishers back no more: it drops at its limits.
        self.wake_publishers(sid);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.conn = None;
            s.generation += 1;
            s.inflight = 0;
            s.returned = 0;
            // A stalled session keeps an undelivered hand-over if the connection never got it.
            if !(s.stalled && handover == Handover::default()) {
                s.handover = handover;
            }
            if let Some(e) = session_expiry {
                s.expiry = e;
            }
            if !will {
                s.will = None;
            }
            s.disconnected_at = self.store.as_ref().map(|log| log.wall(now));
        }
        self.persist_session(sid);
        self.persist_queued(now, sid);
        self.schedule_end(now, sid);
        if let Some((new_conn, req)) = self.takeovers.remove(&sid) {
            self.complete_connect(now, new_conn, req);
        }
    }

    /// A delivery the closed connection `conn` never sent: back to the front of its session's
    /// queue, behind those returned before it (stored again if the session is offline, and
    /// released if a new connection took the session over).
    fn returned(&mut self, now: Instant, conn: ConnId, d: Delivery) {
        match self.last_closed {
            Some((closed, sid)) if closed == conn => self.returned_to(now, sid, d),
            _ => {}
        }
    }

    /// Puts a delivery that was never sent back at the front of `sid`'s queue, behind those
    /// returned before it since its last connection ended.
    pub(super) fn returned_to(&mut self, now: Instant, sid: SessionId, d: Delivery) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.put_back(d);
        self.sent = self.sent.saturating_sub(1); // counted when released, never sent
        self.persist_queued(now, sid);
        self.release(now, sid);
    }

    /// Plans the will and the end of a session whose connection just ended.
    fn schedule_end(&mut self, now: Instant, sid: SessionId) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let gen = s.generation;
        let expiry = s.expiry;
        if let Some(w) = &s.will {
            // The will goes out after its delay or when the session ends, whichever is first
            // ([MQTT-3.1.3-9]).
            let delay = w.properties.will_delay_interval.unwrap_or(0).min(expiry);
            if delay == 0 {
                if let Some(w) = self.sessions.get_mut(&sid).and_then(|s| s.will.take()) {
                    self.publish_will(now, w);
                    self.persist_session(sid); // the store forgets the will
                }
            } else {
                let at = now + Duration::from_secs(u64::from(delay));
                self.set_timer(at, Timer::Will(sid, gen));
            }
        }
        match expiry {
            0 => self.end_session(now, sid),
            u32::MAX => {}
            secs => {
                let at = now + Duration::from_secs(u64::from(secs));
                self.set_timer(at, Timer::Expire(sid, gen));
            }
        }
    }

    /// Removes a session: its subscriptions, queue and state; a pending will goes out now.
    fn end_session(&mut self, now: Instant, sid: SessionId) {
        self.wake_publishers(sid);
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        for filter in s.subscriptions.keys() {
            self.tree.remove(filter, sid);
        }
        if self.by_client.get(&s.client_id) == Some(&sid) {
            self.by_client.remove(&s.client_id);
        }
        if s.persisted {
            // The store removes the session's queue with it.
            self.log(StoreOp::DeleteSession(s.client_id.clone()));
        }
        if let Some(w) = s.will {
            self.publish_will(now, w);
        }
    }

    fn publish_will(&mut self, now: Instant, w: Box<Will>) {
        let w = *w;
        let mut p = Publish::new(w.topic, w.payload);
        p.qos = w.qos.min(self.config.maximum_qos);
        p.retain = w.retain && self.config.retain_available;
        let wp = w.properties;
        p.properties.payload_format_indicator = wp.payload_format_indicator;
        p.properties.message_expiry_interval = wp.message_expiry_interval;
        p.properties.content_type = wp.content_type;
        p.properties.response_topic = wp.response_topic;
        p.properties.correlation_data = wp.correlation_data;
        p.properties.user_properties = wp.user_properties;
        self.route(now, Arc::new(p), None);
    }

    /// Routes a PUBLISH to every matching session, once per session ([MQTT-3.3.4-2]).
    fn route(&mut self, now: Instant, publish: Arc<Publish>, from: Option<SessionId>) {
        let expires_at = expiry(&publish, now);
        let qos = publish.qos;
        let retain = publish.retain;
        // One shared copy for every subscriber (and the retained store), as routed: what
        // belongs to the publisher's connection cleared (the mail's is not shared yet, so this
        // changes it in place).
        let mut message = publish;
        let routed = |p: &Publish| {
            !p.dup
                && p.packet_id.is_none()
                && p.properties.topic_alias.is_none()
                && p.properties.subscription_identifiers.is_empty()
        };
        if !routed(&message) {
            let m = Arc::make_mut(&mut message);
            m.dup = false;
            m.packet_id = None;
            m.properties.topic_alias = None;
            m.properties.subscription_identifiers = Vec::new();
        }
        if retain {
            if message.payload.is_empty() {
                // [MQTT-3.3.1-6]: an empty retained message clears the topic.
                if self.retained.remove(&message.topic).is_some() {
                    self.log(StoreOp::DeleteRetained(message.topic.clone()));
                }
            } else {
                self.log_retained(now, &message);
                let r = Retained {
                    message: message.clone(),
                    at: now,
                };
                self.retained.insert(&message.topic, r);
            }
        }
        // Plain matches, then one delivery per session ([MQTT-3.3.4-2]): sorted by session, each
        // run merged into the highest QoS, retain-as-published if any asks, and every
        // subscription identifier. Sorting keeps this O(m log m) at any fan-out.
        // The matches go into a buffer kept between routes (no allocation per message).
        let mut plain = std::mem::take(&mut self.matches);
        plain.clear();
        let mut shared: Vec<(Box<str>, Members)> = Vec::new();
        self.tree
            .for_each_match(message.topic.as_bytes(), |m| match m {
                Match::Plain(sid, sub) => {
                    if !(sub.options.no_local && Some(sid) == from) {
                        plain.push((sid, *sub)); // no-local: [MQTT-3.8.3-3]
                    }
                }
                Match::Shared { group, members } => {
                    shared.push((group.into(), members.as_slice().to_vec()));
                }
            });
        plain.sort_by_key(|(sid, _)| *sid);
        let mut i = 0;
        while i < plain.len() {
            let sid = plain[i].0;
            let (mut max_qos, mut rap, mut ids) = (QoS::AtMostOnce, false, Vec::new());
            while let Some((_, sub)) = plain.get(i).filter(|(s, _)| *s == sid) {
                max_qos = max_qos.max(sub.options.qos);
                rap |= sub.options.retain_as_published;
                ids.extend(sub.identifier);
                i += 1;
            }
            let d = delivery(&message, qos.min(max_qos), retain && rap, ids, expires_at);
            self.enqueue(now, sid, d);
        }
        plain.clear();
        self.matches = plain;
        for (group, members) in shared {
            // Round-robin over the group's members that are online, else any member.
            let online: Vec<&(SessionId, SubscriptionEntry)> = members
                .iter()
                .filter(|(sid, _)| self.sessions.get(sid).is_some_and(|s| s.conn.is_some()))
                .collect();
            let pool: Vec<&(SessionId, SubscriptionEntry)> = if online.is_empty() {
                members.iter().collect()
            } else {
                online
            };
            let cursor = self.shared_cursor.entry(group).or_insert(0);
            let Some(&&(sid, sub)) = pool.get(*cursor % pool.len().max(1)) else {
                continue;
            };
            *cursor = cursor.wrapping_add(1);
            let ids = sub.identifier.into_iter().collect();
            let qos = qos.min(sub.options.qos);
            let d = delivery(
                &message,
                qos,
                retain && sub.options.retain_as_published,
                ids,
                expires_at,
            );
            self.enqueue(now, sid, d);
        }
    }

    fn enqueue(&mut self, now: Instant, sid: SessionId, d: Delivery) {
        let max_msgs = self.config.max_queued_messages;
        let max_bytes = self.config.max_queued_bytes;
        let queue_qos0 = self.config.queue_qos0_offline;
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let qos0 = d.is_qos0();
        if s.conn.is_none() && qos0 && !queue_qos0 {
            return;
        }
        let size = d.payload_len();
        let over = |s: &Session, n: usize| {
            s.waiting_len() >= max_msgs.saturating_mul(n)
                || s.queued_bytes + size > max_bytes.saturating_mul(n)
        };
        // A client's QoS 1/2 PUBLISH to an online session with a full queue is queued anyway
        // (up to twice the limits) and its publisher waits for its acknowledgement instead.
        let deferred = self.routing.is_some() && s.conn.is_some() && over(s, 1) && !over(s, 2);
        if deferred {
            if let Some(first @ None) = &mut self.routing {
                *first = Some(sid);
            }
        }
        while !deferred && over(s, 1) {
            // Make room by dropping the oldest QoS 0 message; otherwise refuse the new one.
            let oldest_qos0 = (s.queued_qos0 > 0)
                .then(|| s.queue.iter().position(Delivery::is_qos0))
                .flatten();
            match oldest_qos0 {
                Some(i) => {
                    if let Some(old) = s.queue.remove(i) {
                        s.queued_bytes -= old.payload_len();
                        s.queued_qos0 -= 1;
                        store::unqueue(&mut self.store, &s.client_id, old.stored);
                    }
                    s.dropped += 1;
                }
                None => {
                    s.dropped += 1;
                    return;
                }
            }
        }
        s.queued_qos0 += usize::from(qos0);
        s.queued_bytes += size;
        s.queue.push_back(d);
        if s.persisted {
            // Offline, everything queued is stored; online, what is owed at QoS 1/2.
            self.persist_last(now, sid);
        }
        self.release(now, sid);
    }

    /// Hands queued messages to the session's connection while its window has room.
    fn release(&mut self, now: Instant, sid: SessionId) {
        // One lookup of the session; the fields used beside it are borrowed apart.
        let Router {
            sessions,
            outbox,
            held_due,
            takeovers,
            store,
            config,
            parked,
            sent,
            ..
        } = self;
        let Some(s) = sessions.get_mut(&sid) else {
            return;
        };
        let Some(conn) = s.conn else {
            return;
        };
        if s.stalled || takeovers.contains_key(&sid) {
            return;
        }
        if let Some((due, n)) = *held_due {
            // What follows for this connection comes after the acknowledgements it may send.
            if due == conn {
                *held_due = None;
                outbox.push_back((conn, ToConnection::SendHeld(n)));
            }
        }
        // The window, and as much again that waits in the connection (see `prefetch`).
        let limit = s.window + prefetch(s.window);
        let durable_acks = config.durable_acks;
        while let Some(front) = s.queue.front() {
            let qos0 = front.is_qos0();
            if !qos0 && s.inflight >= limit {
                break;
            }
            let Some(mut d) = s.queue.pop_front() else {
                break;
            };
            s.queued_qos0 -= usize::from(qos0);
            s.queued_bytes -= d.payload_len();
            let expired = d.expires_at.is_some_and(|at| at <= now);
            if qos0 || expired {
                // A stored QoS 1/2 message stays stored until its flow ends.
                store::unqueue(store, &s.client_id, d.stored.take());
            }
            if expired {
                continue; // [MQTT-3.3.2-5]: expired, not delivered
            }
            if !qos0 {
                s.inflight += 1;
            }
            *sent += 1;
            let stored_qos2 = d.stored.is_some() && d.qos == QoS::ExactlyOnce;
            match store {
                Some(log) if durable_acks && (stored_qos2 || s.parked > 0) => {
                    log.push(StoreOp::Durable(crate::store::Ticket {
                        conn,
                        delivery: true,
                    }));
                    s.parked += 1;
                    parked.push_back((conn, sid, d));
                }
                _ => outbox.push_back((conn, ToConnection::Deliver(d))),
            }
        }
        let max_msgs = config.max_queued_messages;
        let max_bytes = config.max_queued_bytes;
        if !s.waiting.is_empty() && s.waiting_len() < max_msgs && s.queued_bytes < max_bytes {
            self.wake_publishers(sid);
        }
    }

    /// Gives the publishers waiting for `sid`'s queue their held acknowledgements.
    fn wake_publishers(&mut self, sid: SessionId) {
        let waiting = match self.sessions.get_mut(&sid) {
            Some(s) if !s.waiting.is_empty() => std::mem::take(&mut s.waiting),
            _ => return,
        };
        for conn in waiting {
            self.ticket(conn);
        }
    }

    fn subscribe(
        &mut self,
        now: Instant,
        conn: ConnId,
        packet_id: PacketId,
        subscription_id: Option<NonZeroU32>,
        filters: Vec<(crate::codec::Subscription, Option<ReasonCode>)>,
    ) {
        let Some(&sid) = self.online.get(&conn) else {
            return;
        };
        let max_qos = self.config.maximum_qos;
        let max_subs = self.config.max_subscriptions_per_client;
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained_for: Vec<(TopicFilter, QoS)> = Vec::new();
        for (req, verdict) in filters {
            if let Some(code) = verdict {
                codes.push(code);
                continue;
            }
            let Some(s) = self.sessions.get_mut(&sid) else {
                return;
            };
            let exists = s.subscriptions.contains_key(&req.filter);
            if !exists && s.subscriptions.len() >= max_subs {
                codes.push(if s.protocol.is_v5() {
                    ReasonCode::QuotaExceeded
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let mut options = req.options;
            options.qos = options.qos.min(max_qos);
            let sub = SubscriptionEntry {
                options,
                identifier: subscription_id,
            };
            s.subscriptions.insert(req.filter.clone(), sub);
            self.tree.insert(&req.filter, sid, sub);
            codes.push(ReasonCode::granted(options.qos));
            // [MQTT-3.3.1-9]/[MQTT-3.3.1-10]/[MQTT-3.3.1-11]: retained messages per retain
            // handling; none for shared subscriptions.
            let send = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !exists,
                RetainHandling::DoNotSend => false,
            };
            if send && req.filter.shared().is_none() {
                retained_for.push((req.filter, options.qos));
            }
        }
        self.send_to((conn, ToConnection::SubAck { packet_id, codes }));
        self.persist_session(sid);
        for (filter, qos) in retained_for {
            let mut found: Vec<(Arc<Publish>, Option<Instant>)> = Vec::new();
            self.retained.for_each_match(&filter, |r| {
                found.push((r.message.clone(), r.expires_at()));
            });
            for (message, expires_at) in found {
                if expires_at.is_some_and(|at| at <= now) {
                    continue;
                }
                // Sent with the retain flag, whatever "retain as published" says ([MQTT-3.3.1-8]).
                let ids = subscription_id.into_iter().collect();
                let qos = message.qos.min(qos);
                let d = delivery(&message, qos, true, ids, expires_at);
                self.enqueue(now, sid, d);
            }
        }
    }

    fn unsubscribe(&mut self, conn: ConnId, packet_id: PacketId, filters: Vec<TopicFilter>) {
        let Some(&sid) = self.online.get(&conn) else {
            return;
        };
        let mut codes = Vec::with_capacity(filters.len());
        for f in filters {
            let existed = self
                .sessions
                .get_mut(&sid)
                .and_then(|s| s.subscriptions.remove(&f))
                .is_some();
            self.tree.remove(&f, sid);
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        self.send_to((conn, ToConnection::UnsubAck { packet_id, codes }));
        self.persist_session(sid);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_stays_small() {
        // One per client, online or not (10k idle connections hold 10k of them): rare parts
        // such as the will are boxed.
        let size = size_of::<super::Session>();
        assert!(size <= 288, "Session is {size} bytes");
    }
}
