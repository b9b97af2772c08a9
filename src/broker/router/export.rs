//! Sessions moving between the nodes of a cluster, and retained messages coming from the
//! cluster's retained store.
//!
//! A session is exported from the node that holds it when a client reconnects to another
//! node: an offline session leaves at once, an online one once its connection, told to close
//! with 0x8E Session taken over, has handed its unfinished flows back (`closed`). Its image is
//! imported on the other node before that client's CONNECT is handled there. Pending exports
//! are at most one per session (a second request for the same session waits with the
//! first), so the list is bounded by the session count.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{remote, Router, Timer};
use crate::broker::cluster::{Export, ImportError, SessionImage, MAX_ENDED};
use crate::broker::mail::{Delivery, OutFlow, RouterMail, ToConnection};
use crate::broker::persist::{
    CompletedRecord, PacketIdRecord, QueuedRecord, SessionRecord, StoreOp, StoredSubscription,
    StoredWill,
};
use crate::broker::tree::{SessionId, SubscriptionEntry};
use crate::broker::DropReason;
use crate::codec::Publish;
use crate::types::{ByteStr, ReasonCode};

/// The exports waiting for their session's connection to close, and the sessions that ended.
#[derive(Debug, Default)]
pub(super) struct Exports {
    /// By session: its client id, and the instant its connection closed (once it has).
    pending: BTreeMap<SessionId, (ByteStr, Option<Instant>)>,
    /// Client ids whose session ended here, oldest first (with a cluster only).
    ended: VecDeque<ByteStr>,
}

impl Exports {
    /// The session of `client_id` ended here.
    pub(super) fn ended(&mut self, client_id: ByteStr) {
        if self.ended.len() >= MAX_ENDED {
            self.ended.pop_front();
        }
        self.ended.push_back(client_id);
    }

    /// Whether `sid` is on its way out.
    pub(super) fn has(&self, sid: SessionId) -> bool {
        self.pending.contains_key(&sid)
    }

    /// The connection of `sid`, on its way out, closed at `now`.
    pub(super) fn closed(&mut self, sid: SessionId, now: Instant) {
        if let Some((_, at)) = self.pending.get_mut(&sid) {
            *at = Some(now);
        }
    }
}

/// Whole seconds from `now` to `at`, rounded up (0 if past).
fn secs_until(now: Instant, at: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

impl Router {
    /// Takes the session of `client_id` away from this node for another node of the cluster
    /// (a client of that id is connecting there). Offline, it leaves at once: its image is
    /// returned and the session, its subscriptions and its queue are gone from here (and from
    /// the store), its will with it (the image carries it). Online, its connection is told to
    /// close with 0x8E Session taken over (MQTT 5; 3.1.x connections are closed), nothing
    /// more is released to it, a CONNECT here waiting to take it over is refused the same
    /// way, and the image comes out of [`Router::poll_export`] once the connection has handed
    /// back what it held. A connection that closes on takeover publishes its will as on any
    /// takeover; a session with an expiry of 0 ends with its connection (`poll_export` then
    /// says so).
    pub fn export_session(&mut self, now: Instant, client_id: &ByteStr) -> Export {
        let Some(&sid) = self.by_client.get(client_id) else {
            return Export::Absent;
        };
        if self.exports.has(sid) {
            return Export::Pending;
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return Export::Absent;
        };
        let Some(conn) = s.conn else {
            return match self.take_image(now, sid) {
                Some(image) => Export::Ready(Box::new(image)),
                None => Export::Absent,
            };
        };
        // Nothing more goes to the connection: what it holds comes back with its close.
        s.stalled = true;
        self.exports.pending.insert(sid, (client_id.clone(), None));
        if let Some((waiting, _)) = self.takeovers.remove(&sid) {
            self.send_to((
                waiting,
                ToConnection::Disconnect(ReasonCode::SessionTakenOver),
            ));
        }
        self.send_to((conn, ToConnection::Disconnect(ReasonCode::SessionTakenOver)));
        Export::Pending
    }

    /// A session [`Router::export_session`] answered `Pending` for, once its connection has
    /// closed: its client id and its image (`None`: the session ended with its connection).
    /// Yields after inputs (drain it after [`Router::poll_mail`]).
    pub fn poll_export(&mut self) -> Option<(ByteStr, Option<Box<SessionImage>>)> {
        let (sid, at) = self.exports.pending.iter().find_map(|(sid, (_, at))| {
            let gone = !self.sessions.contains_key(sid);
            // Deliveries held for the store's word come back first.
            let closed = at.filter(|_| !self.parked.holds(*sid));
            match (gone, closed) {
                (true, _) => Some((*sid, None)),
                (false, Some(at)) => Some((*sid, Some(at))),
                _ => None,
            }
        })?;
        let (client_id, _) = self.exports.pending.remove(&sid)?;
        let image = at.and_then(|at| self.take_image(at, sid)).map(Box::new);
        Some((client_id, image))
    }

    /// The client id of a session that ended on this node (it expired, a clean start
    /// discarded it, it ended with its connection, the application removed it) and that this
    /// node has not started again since: the cluster forgets that this node owns it. Yields
    /// after inputs and timeouts, only with
    /// [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster) on; at most
    /// [`MAX_ENDED`] wait (the oldest is forgotten first).
    pub fn poll_ended_session(&mut self) -> Option<ByteStr> {
        while let Some(id) = self.exports.ended.pop_front() {
            if !self.by_client.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Gives this node a session exported from another node, before the CONNECT of its client
    /// is handled here: the session is offline until then, its expiry and will delay counting
    /// from when it went offline; its subscriptions are in the tree (and announced to the
    /// cluster); its queue, in order, and its unfinished flows go to its next connection,
    /// which resumes it (session present) unless it asks for a clean start. An offline session
    /// of the same client id here is replaced without its will; an online one refuses the
    /// image. Messages beyond this node's queue limits are dropped (the newest, counted).
    pub fn import_session(&mut self, now: Instant, image: SessionImage) -> Result<(), ImportError> {
        let SessionImage {
            session: mut record,
            offline_for,
            queued,
            outbound,
            incoming_qos2,
            completed,
        } = image;
        let age = u64::from(offline_for);
        if record.expiry == 0 || (record.expiry != u32::MAX && age >= u64::from(record.expiry)) {
            return Err(ImportError::Expired);
        }
        if record.subscriptions.len() > self.config.max_subscriptions_per_client {
            return Err(ImportError::NoRoom);
        }
        let local = self.by_client.get(&record.client_id).copied();
        if let Some(sid) = local {
            let online = self.sessions.get(&sid).is_some_and(|s| s.conn.is_some());
            if online || self.exports.has(sid) || self.takeovers.contains_key(&sid) {
                return Err(ImportError::Online);
            }
        }
        let full = local.is_none() && self.sessions.len() >= self.config.max_sessions;
        let weight = crate::broker::budget::CONNECTION_RESERVE + 2 * record.client_id.len();
        if full || !self.budget.has_room(weight) {
            self.budget.count_refused();
            return Err(ImportError::NoRoom);
        }
        if let Some(sid) = local {
            // Replaced: the image is the session's newer state.
            self.take_image(now, sid);
        }
        let client_id = record.client_id.clone();
        let wall = self.store.as_ref().map_or(0, |log| log.wall(now));
        record.disconnected_at = None;
        self.restore_session(now, wall, age, record);
        let Some(&sid) = self.by_client.get(&client_id) else {
            return Ok(());
        };
        let (max_msgs, max_bytes) = (
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        let delivery = |q: QueuedRecord| Delivery {
            expires_at: q.expires_at.map(|s| now + Duration::from_secs(s)),
            packet_id: q.packet_id,
            ..Delivery::of(q.publish)
        };
        let mut dropped = 0;
        let with_store = self.store.is_some();
        let mut flows = Vec::new();
        if let Some(s) = self.sessions.get_mut(&sid) {
            // Restored sessions are stored already; this one is not, yet.
            s.persisted = false;
            s.disconnected_at = with_store.then(|| wall.saturating_sub(age));
            for q in queued {
                let d = delivery(q);
                let size = crate::broker::budget::delivery_weight(&d);
                if s.queue.len() >= max_msgs || s.queue.bytes() + size > max_bytes {
                    dropped += 1;
                    continue;
                }
                if let Some(id) = d.packet_id {
                    s.last_packet_id = s.last_packet_id.max(id.get());
                }
                s.queue.push(d);
            }
            s.dropped += dropped;
            let h = &mut s.handover;
            for (id, flow) in outbound {
                s.last_packet_id = s.last_packet_id.max(id.get());
                let flow = match flow {
                    Some(q) => OutFlow::Publish(delivery(q)),
                    None => {
                        flows.push(StoreOp::PutReleased(PacketIdRecord {
                            client_id: client_id.clone(),
                            packet_id: id,
                        }));
                        OutFlow::Released { stored: with_store }
                    }
                };
                h.outbound.push((id, flow));
            }
            for &packet_id in &incoming_qos2 {
                flows.push(StoreOp::PutIncoming(PacketIdRecord {
                    client_id: client_id.clone(),
                    packet_id,
                }));
            }
            h.incoming_qos2 = incoming_qos2.into_boxed_slice();
            if !completed.is_empty() {
                let c = h.completed.get_or_insert_with(Default::default);
                for (packet_id, digest) in completed {
                    c.push(packet_id, digest);
                    flows.push(StoreOp::PutCompleted(CompletedRecord {
                        client_id: client_id.clone(),
                        packet_id,
                        digest,
                    }));
                }
            }
        }
        for _ in 0..dropped {
            self.counts.dropped.count(DropReason::QueueFull);
        }
        // With a store, the session and what it holds are stored as this node's own.
        self.persist_session(sid);
        self.persist_queued(now, sid);
        if self.sessions.get(&sid).is_some_and(|s| s.persisted) {
            for op in flows {
                self.log(op);
            }
        }
        Ok(())
    }

    /// Refuses a CONNECT (`mail`, see [`RouterMail::connect_request`]) without looking at
    /// its session: CONNACK with `code` (0x88 Server unavailable, 0x89 Server busy, ...), then
    /// the connection closes. For a cluster that could not claim the session for this node.
    /// Any other mail is handled as [`Router::handle_mail`] would.
    pub fn refuse_connect(&mut self, now: Instant, mail: RouterMail, code: ReasonCode) {
        if mail.connect_request().is_some() {
            self.send_to((mail.conn, ToConnection::Refused(code)));
        } else {
            self.handle_mail(now, mail);
        }
    }

    /// Sets (or, with an empty payload, clears) the retained message of `message`'s topic as
    /// the cluster's retained store holds it: only this node's retained store changes (and
    /// its store, if it persists); the message is neither routed nor handed to the cluster.
    /// Its retain flag is set, and what belongs to a connection (packet identifier, DUP,
    /// topic alias, subscription identifiers) cleared. Returns whether the message is kept:
    /// `false` if it was a clear, or the retained limits or the memory budget had no room
    /// (counted as refused). `$SYS` topics are this node's own and are left alone.
    pub fn handle_remote_retained(&mut self, now: Instant, message: Publish) -> bool {
        if message.topic.as_str().starts_with("$SYS") {
            return false;
        }
        let mut m = message;
        m.retain = true;
        m.dup = false;
        m.packet_id = None;
        m.properties.topic_alias = None;
        m.properties.subscription_identifiers = Vec::new();
        if m.payload.is_empty() {
            if self.retained.remove(&m.topic).is_some() {
                self.log(StoreOp::DeleteRetained(m.topic));
            }
            return false;
        }
        let message = Arc::new(m);
        match self.retained_entry(&message, now) {
            Some(r) => {
                self.log_retained(now, &message);
                self.retained.insert(&message.topic, r);
                true
            }
            None => false,
        }
    }

    /// Removes `sid` from this node without its will (an image carries it) and returns its
    /// image, taken at `now`; `None` if it is not here.
    fn take_image(&mut self, now: Instant, sid: SessionId) -> Option<SessionImage> {
        self.wake_publishers(sid);
        self.replay_to_queue(sid);
        self.replays.remove(&sid);
        // How long it has been offline: what its expiry (or will delay) timer has left.
        let mut offline_for = 0;
        if let Some(s) = self.sessions.get(&sid) {
            for key in self.session_timers.get(&sid).into_iter().flatten() {
                let span = match self.timers.get(key) {
                    Some(Timer::Expire(..)) => Some(s.expiry),
                    Some(Timer::Will(..)) => s
                        .will
                        .as_ref()
                        .map(|w| w.properties.will_delay_interval.unwrap_or(0)),
                    _ => None,
                };
                if let Some(span) = span {
                    let left = secs_until(now, key.0);
                    let gone = u64::from(span).saturating_sub(left);
                    offline_for = offline_for.max(u32::try_from(gone).unwrap_or(u32::MAX));
                }
            }
        }
        self.clear_session_timers(sid);
        let mut s = self.sessions.remove(&sid)?;
        for filter in s.subscriptions.keys() {
            remote::unsubscribe(&mut self.tree, self.remote.as_deref_mut(), filter, sid);
        }
        if self.by_client.get(&s.client_id) == Some(&sid) {
            self.by_client.remove(&s.client_id);
        }
        if s.persisted {
            // The store removes the session's queue and flows with it.
            self.log(StoreOp::DeleteSession(s.client_id.clone()));
        }
        let client_id = s.client_id.clone();
        let record = |seq: u64, d: &Delivery| QueuedRecord {
            client_id: client_id.clone(),
            seq,
            publish: d.publish(),
            packet_id: d.packet_id,
            stored_at: 0,
            expires_at: d.expires_at.map(|at| secs_until(now, at)),
        };
        let mut queued = Vec::with_capacity(s.queue.len());
        while let Some(d) = s.queue.pop() {
            if d.expires_at.is_some_and(|at| at <= now) {
                self.counts.dropped.count(DropReason::Expired);
                continue;
            }
            queued.push(record(queued.len() as u64, &d));
        }
        let handover = std::mem::take(&mut s.handover);
        let outbound = handover
            .outbound
            .iter()
            .map(|(id, flow)| match flow {
                OutFlow::Publish(d) => (*id, Some(record(0, d))),
                OutFlow::Released { .. } => (*id, None),
            })
            .collect();
        let completed = handover
            .completed
            .as_deref()
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let subscriptions = s
            .subscriptions
            .iter()
            .map(
                |(filter, sub): (_, &SubscriptionEntry)| StoredSubscription {
                    filter: filter.clone(),
                    options: sub.options,
                    identifier: sub.identifier,
                },
            )
            .collect();
        let session = SessionRecord {
            client_id: s.client_id.clone(),
            protocol: s.protocol,
            expiry: s.expiry,
            disconnected_at: None,
            subscriptions,
            will: s.will.as_deref().map(StoredWill::from),
            owner: s.stored_owner(),
        };
        Some(SessionImage {
            session,
            offline_for,
            queued,
            outbound,
            incoming_qos2: handover.incoming_qos2.into_vec(),
            completed,
        })
    }
}
