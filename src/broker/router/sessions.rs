//! Sessions: connect, takeover, close, expiry and wills.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::inflight::InFlight;
use super::queue::SessionQueue;
use super::{persist_log, remote, Router, Timer};
use crate::broker::budget::{self, Budget, Charge};
use crate::broker::mail::{ConnId, ConnectRequest, Delivery, Handover, ToConnection};
use crate::broker::persist::{SessionOwner, SessionRecord, StoreOp};
use crate::broker::tree::{SessionId, SubscriptionEntry};
use crate::broker::DropReason;
use crate::codec::{Publish, Will};
use crate::types::{ByteStr, ProtocolVersion, ReasonCode, TopicFilter};

#[derive(Debug)]
pub(super) struct Session {
    pub(super) client_id: ByteStr,
    /// The user name it belongs to (`None`: anonymous); boxed, to stay small. See `owner`.
    pub(super) owner: Option<Box<ByteStr>>,
    /// Whether `owner` is known: a session restored from a record without one (written
    /// before owners were stored) is claimed by its next connection.
    pub(super) claimed: bool,
    pub(super) protocol: ProtocolVersion,
    pub(super) conn: Option<ConnId>,
    /// Seconds the session outlives its connection; `u32::MAX` is forever.
    pub(super) expiry: u32,
    /// Ordered, and without a hasher's keys in every session.
    pub(super) subscriptions: BTreeMap<TopicFilter, SubscriptionEntry>,
    /// What waits to be released, with its counts.
    pub(super) queue: SessionQueue,
    /// QoS 1/2 deliveries the connection holds unfinished.
    pub(super) inflight: InFlight,
    pub(super) handover: Handover,
    /// Boxed: most sessions have none, and a will is large.
    pub(super) will: Option<Box<Will>>,
    /// Bumped whenever a timer of this session must no longer fire.
    pub(super) generation: u64,
    pub(super) dropped: u64,
    /// Mail for the connection could not be delivered: nothing more is released to it.
    pub(super) stalled: bool,
    /// Whether the store holds a record of this session.
    pub(super) persisted: bool,
    /// When its connection ended, in wall-clock seconds (only kept with a store).
    pub(super) disconnected_at: Option<u64>,
    /// The last packet identifier the router picked for a stored message of this session.
    pub(super) last_packet_id: u16,
    /// Publishers' connections waiting for their held acknowledgement until this online
    /// session's queue is below `max_queued_messages` again (one entry per held
    /// acknowledgement).
    pub(super) waiting: Vec<ConnId>,
    /// Its own weight and its subscriptions', in the broker's memory budget.
    pub(super) charge: Charge,
}

impl Session {
    /// Who owns the session, as the store (and a session image) keeps it.
    pub(super) fn stored_owner(&self) -> SessionOwner {
        match (self.claimed, self.owner.as_deref()) {
            (false, _) => SessionOwner::Unknown,
            (true, None) => SessionOwner::Anonymous,
            (true, Some(u)) => SessionOwner::User(u.clone()),
        }
    }

    /// Messages waiting to be sent: queued here, or released ahead of the window and waiting
    /// in the connection (see `prefetch`), which count against `max_queued_messages` alike.
    #[inline]
    pub(super) fn waiting_len(&self) -> usize {
        self.queue.len() + self.inflight.beyond_window()
    }

    /// A session with nothing in it yet: offline, no expiry, no subscriptions, not stored.
    pub(super) fn new(client_id: ByteStr, protocol: ProtocolVersion, budget: &Budget) -> Session {
        let weight = size_of::<Session>() + 2 * client_id.len() + 64;
        Session {
            charge: budget.charge(weight),
            client_id,
            owner: None,
            claimed: false,
            protocol,
            conn: None,
            expiry: 0,
            subscriptions: BTreeMap::new(),
            queue: SessionQueue::new(budget),
            inflight: InFlight::new(),
            handover: Handover::default(),
            will: None,
            generation: 0,
            dropped: 0,
            stalled: false,
            persisted: false,
            disconnected_at: None,
            last_packet_id: 0,
            waiting: Vec::new(),
        }
    }
}

impl Router {
    pub(super) fn connect(&mut self, now: Instant, conn: ConnId, req: ConnectRequest) {
        let existing = self.by_client.get(&req.client_id).copied();
        if let Some(sid) = existing {
            if !self.may_own(sid, &req) {
                // Another user's session: neither taken over, resumed nor discarded.
                self.send_to((conn, ToConnection::Refused(ReasonCode::NotAuthorized)));
                return;
            }
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
        let sessions_full = existing.is_none() && self.sessions.len() >= self.config.max_sessions;
        let weight = budget::CONNECTION_RESERVE + 2 * req.client_id.len();
        if !self.budget.has_room(weight) || sessions_full {
            // At the memory budget or the session limit: no new connection; those served
            // already go on.
            self.budget.count_refused();
            self.send_to((conn, ToConnection::Refused(ReasonCode::QuotaExceeded)));
            return;
        }
        self.complete_connect_to(now, conn, req, existing);
    }

    pub(super) fn complete_connect(&mut self, now: Instant, conn: ConnId, req: ConnectRequest) {
        let existing = self.by_client.get(&req.client_id).copied();
        self.complete_connect_to(now, conn, req, existing);
    }

    /// [`Router::complete_connect`] with the session the client identifier names now (looked
    /// up once per connect: the key is hashed with SipHash).
    fn complete_connect_to(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: ConnectRequest,
        existing: Option<SessionId>,
    ) {
        self.counts.connects += 1;
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
                    Box::new(Session::new(
                        req.client_id.clone(),
                        req.protocol,
                        &self.budget,
                    )),
                );
                self.by_client.insert(req.client_id.clone(), sid);
                sid
            }
        };
        self.set_owner(sid, req.username);
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        // Reconnecting within the will delay cancels the will ([MQTT-3.1.3-9]); stale timers
        // of this session stop counting, and go.
        s.generation += 1;
        s.stalled = false;
        s.will = req.will.map(Box::new);
        s.protocol = req.protocol;
        s.expiry = req.session_expiry;
        s.conn = Some(conn);
        s.disconnected_at = None;
        // The router keeps the inbound QoS 2 digests (see `replay`); the connection gets a copy.
        let completed = s.handover.completed.take();
        let mut handover = std::mem::take(&mut s.handover);
        handover.completed.clone_from(&completed);
        s.handover.completed = completed;
        // Every handed-over flow holds a window slot until its PUBACK or PUBCOMP.
        s.inflight.connected(req.window, handover.outbound.len());
        self.clear_session_timers(sid);
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

    pub(super) fn closed(
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
            s.inflight.disconnected();
            s.queue.reset_returned();
            // A stalled session keeps an undelivered hand-over if the connection never got it.
            if !(s.stalled && handover == Handover::default()) {
                let completed = s.handover.completed.take();
                s.handover = handover;
                s.handover.completed = completed;
            }
            if let Some(e) = session_expiry {
                s.expiry = e;
            }
            if !will {
                s.will = None;
            }
            s.disconnected_at = self.store.as_ref().map(|log| log.wall(now));
        }
        // A replay under way: what is left waits in the queue if the session lives on.
        self.replay_to_queue(sid);
        self.persist_session(sid);
        self.persist_queued(now, sid);
        self.schedule_end(now, sid);
        if self.exports.has(sid) {
            // On its way to another node: a CONNECT here that waited for it is refused.
            self.exports.closed(sid, now);
            if let Some((waiting, _)) = self.takeovers.remove(&sid) {
                let mail = ToConnection::Disconnect(ReasonCode::SessionTakenOver);
                self.send_to((waiting, mail));
            }
            return;
        }
        if let Some((new_conn, req)) = self.takeovers.remove(&sid) {
            self.complete_connect(now, new_conn, req);
        }
    }

    /// A delivery the closed connection `conn` never sent: back to the front of its session's
    /// queue, behind those returned before it (stored again if the session is offline, and
    /// released if a new connection took the session over).
    pub(super) fn returned(&mut self, now: Instant, conn: ConnId, d: Delivery) {
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
        // Counted when released, never sent.
        self.counts.sent.sub(d.qos, 1);
        self.counts.sent_bytes.sub(d.qos, d.payload_len() as u64);
        if s.conn.is_none() && d.is_qos0() && !self.config.queue_qos0_offline {
            // As if it had been routed to the offline session: not queued.
            s.dropped += 1;
            self.counts.dropped.count(DropReason::QueueFull);
            persist_log::unqueue(&mut self.store, &s.client_id, d.stored);
            return;
        }
        s.queue.put_back(d);
        self.persist_queued(now, sid);
        self.release(now, sid);
    }

    /// Plans the will and the end of a session whose connection just ended.
    pub(super) fn schedule_end(&mut self, now: Instant, sid: SessionId) {
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
    pub(super) fn end_session(&mut self, now: Instant, sid: SessionId) {
        self.wake_publishers(sid);
        self.replays.remove(&sid);
        self.clear_session_timers(sid);
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        for filter in s.subscriptions.keys() {
            remote::unsubscribe(&mut self.tree, self.remote.as_deref_mut(), filter, sid);
        }
        // One lookup: the identifier names another session only when a new one replaced this
        // one under it (then it is put back).
        if let Some(named) = self.by_client.remove(&s.client_id) {
            if named != sid {
                self.by_client.insert(s.client_id.clone(), named);
            }
        }
        if s.persisted {
            // The store removes the session's queue with it.
            self.log(StoreOp::DeleteSession(s.client_id.clone()));
        }
        if self.remote.is_some() {
            self.exports.ended(s.client_id.clone());
        }
        if let Some(w) = s.will {
            self.publish_will(now, w);
        }
    }

    pub(super) fn publish_will(&mut self, now: Instant, w: Box<Will>) {
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

    /// A session restored from the store: its subscriptions back in the tree, its expiry and
    /// will timers counted from when its connection ended (`age` seconds before `now`).
    pub(super) fn restore_session(&mut self, now: Instant, wall: u64, age: u64, r: SessionRecord) {
        let sid = SessionId(self.next_session);
        self.next_session += 1;
        let mut subscriptions = BTreeMap::new();
        for s in r.subscriptions {
            let sub = SubscriptionEntry {
                options: s.options,
                identifier: s.identifier,
            };
            remote::subscribe(
                &mut self.tree,
                self.remote.as_deref_mut(),
                &s.filter,
                sid,
                sub,
            );
            subscriptions.insert(s.filter, sub);
        }
        self.by_client.insert(r.client_id.clone(), sid);
        self.sessions.insert(
            sid,
            Box::new(Session {
                expiry: r.expiry,
                subscriptions,
                persisted: true,
                disconnected_at: Some(r.disconnected_at.unwrap_or(wall)),
                claimed: r.owner != SessionOwner::Unknown,
                owner: match r.owner {
                    SessionOwner::User(u) => Some(Box::new(u)),
                    _ => None,
                },
                ..Session::new(r.client_id, r.protocol, &self.budget)
            }),
        );
        if let Some(s) = self.sessions.get_mut(&sid) {
            let subs: usize = s
                .subscriptions
                .keys()
                .map(super::subscriptions::subscription_weight)
                .sum();
            s.charge.set(s.charge.bytes() + subs);
        }
        if r.expiry != u32::MAX {
            let left = u64::from(r.expiry) - age;
            self.set_timer(now + Duration::from_secs(left), Timer::Expire(sid, 0));
        }
        if let Some(w) = r.will {
            // The restart ended its connection if it was still online: the delay counts from
            // then, or from when the connection ended.
            let left = u64::from(w.delay).saturating_sub(age);
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.will = Some(Box::new(Will::from(w)));
            }
            self.set_timer(now + Duration::from_secs(left), Timer::Will(sid, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_session_stays_small() {
        // One per client, online or not (10k idle connections hold 10k of them): rare parts
        // such as the will are boxed. Its budget charges (its own, its queue's) take 32.
        let size = size_of::<super::Session>();
        assert!(size <= 320, "Session is {size} bytes");
    }
}
