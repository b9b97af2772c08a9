//! Routing: a PUBLISH to every matching session, each session's queue within its limits,
//! release into the in-flight window, and backpressure on publishers.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sessions::Session;
use super::{persist_log, Router};
use crate::broker::budget::{self, Charge};
use crate::broker::mail::{ConnectionMail, Delivery, ToConnection};
use crate::broker::persist::StoreOp;
use crate::broker::tree::{Match, SessionId, SubscriptionEntry};
use crate::broker::DropReason;
use crate::codec::Publish;
use crate::types::QoS;

/// The members of a shared subscription group.
type Members = Vec<(SessionId, SubscriptionEntry)>;

/// A retained message and when it arrived (for its expiry).
#[derive(Debug)]
pub(super) struct Retained {
    /// As routed: no packet identifier, topic alias or subscription identifier.
    pub(super) message: Arc<Publish>,
    pub(super) at: Instant,
    /// Its weight, in the broker's memory budget and in the retained messages' own.
    pub(super) _charges: [Charge; 2],
}

impl Retained {
    pub(super) fn expires_at(&self) -> Option<Instant> {
        expiry(&self.message, self.at)
    }
}

/// The delivery of the shared `message` to one session.
#[inline]
pub(super) fn delivery(
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

/// When a message routed at `at` expires, if it has an expiry interval.
#[inline]
pub(super) fn expiry(p: &Publish, at: Instant) -> Option<Instant> {
    p.properties
        .message_expiry_interval
        .map(|s| at + Duration::from_secs(u64::from(s)))
}

impl Router {
    /// What a retained `message` weighs: its content (against the retained limit) and with
    /// its entry in the store, the topic's levels kept again (against the memory budget).
    fn retained_weights(message: &Publish) -> (usize, usize) {
        let content = budget::content_weight(message);
        let weight = budget::message_weight(message) + 2 * message.topic.len() + 64;
        (content, weight)
    }

    /// Whether the retained store has room for `message` (it may replace its topic's
    /// message): within `max_retained_messages`, `max_retained_bytes` and the memory budget.
    pub(super) fn retained_fits(&self, message: &Publish) -> bool {
        let (content, weight) = Self::retained_weights(message);
        let (old_content, old_weight) = self
            .retained
            .get(&message.topic)
            .map_or((0, 0), |r| Self::retained_weights(&r.message));
        let new_topic = old_weight == 0;
        !(new_topic && self.retained.len() >= self.config.max_retained_messages)
            && self
                .retained_budget
                .has_room(content.saturating_sub(old_content))
            && self.budget.has_room(weight.saturating_sub(old_weight))
    }

    /// A retained entry for `message`, if the retained limits and the memory budget have
    /// room for it. A client's PUBLISH without room is refused before it is routed
    /// (`retained_fits`); a will or a `$SYS` message without room is routed but not
    /// retained, and counted as refused.
    pub(super) fn retained_entry(
        &mut self,
        message: &Arc<Publish>,
        at: Instant,
    ) -> Option<Retained> {
        if !self.retained_fits(message) {
            self.budget.count_refused();
            return None;
        }
        let (content, weight) = Self::retained_weights(message);
        Some(Retained {
            message: message.clone(),
            at,
            _charges: [
                self.budget.charge(weight),
                self.retained_budget.charge(content),
            ],
        })
    }

    /// Routes a PUBLISH to every matching session, once per session ([MQTT-3.3.4-2]);
    /// whether any subscription matched.
    pub(super) fn route(
        &mut self,
        now: Instant,
        publish: Arc<Publish>,
        from: Option<SessionId>,
    ) -> bool {
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
        let held = self.routing.is_some();
        if let Some(remote) = self.remote.as_deref_mut() {
            remote.forward(&message, held);
        }
        if retain && !self.routes_one_group() {
            if message.payload.is_empty() {
                // [MQTT-3.3.1-6]: an empty retained message clears the topic.
                if self.retained.remove(&message.topic).is_some() {
                    self.log(StoreOp::DeleteRetained(message.topic.clone()));
                }
            } else if let Some(r) = self.retained_entry(&message, now) {
                self.log_retained(now, &message);
                self.retained.insert(&message.topic, r);
            }
        }
        // Plain matches, then one delivery per session ([MQTT-3.3.4-2]): sorted by session, each
        // run merged into the highest QoS, retain-as-published if any asks, and every
        // subscription identifier. Sorting keeps this O(m log m) at any fan-out.
        // The matches go into a buffer kept between routes (no allocation per message).
        let mut plain = std::mem::take(&mut self.matches);
        plain.clear();
        let mut shared: Vec<(usize, (Option<String>, Members))> = Vec::new();
        let named = self.remote.is_some();
        // A message the cluster sent for one shared group goes to none of the plain ones.
        let group_only = named && self.routes_one_group();
        self.tree
            .for_each_match(message.topic.as_bytes(), |m| match m {
                Match::Plain(sid, sub) => {
                    if !(group_only || sub.options.no_local && Some(sid) == from) {
                        plain.push((sid, *sub)); // no-local: [MQTT-3.8.3-3]
                    }
                }
                Match::Shared { members, group } => {
                    // The group's name only matters (and is copied) in a cluster.
                    let m = (named.then(|| group.to_owned()), members.as_slice().to_vec());
                    shared.push((members.next_turn(), m));
                }
            });
        let matched = !plain.is_empty() || !shared.is_empty();
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
        for (turn, members) in shared {
            if let (Some(group), true) = (&members.0, named) {
                if self.leaves_group(group, &members.1) {
                    continue;
                }
            }
            let members = members.1;
            // Round-robin over the group's members that are online, else any member.
            // Members whose owner may not read the topic are passed over.
            let readers: Vec<&(SessionId, SubscriptionEntry)> = members
                .iter()
                .filter(|(sid, _)| self.owner_may_read(*sid, &message))
                .collect();
            let online: Vec<&(SessionId, SubscriptionEntry)> = readers
                .iter()
                .copied()
                .filter(|(sid, _)| self.sessions.get(sid).is_some_and(|s| s.conn.is_some()))
                .collect();
            let pool = if online.is_empty() { readers } else { online };
            let Some(&&(sid, sub)) = pool.get(turn % pool.len().max(1)) else {
                continue;
            };
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
        matched
    }

    /// Queues `d` for `sid`, behind a retained replay under way.
    pub(super) fn enqueue(&mut self, now: Instant, sid: SessionId, d: Delivery) {
        if !self.owner_may_read(sid, &d.message) {
            return; // never queued (nor stored) for a session that may not read it
        }
        if let Some(d) = self.behind_replay(sid, d) {
            self.enqueue_now(now, sid, d);
        }
    }

    /// Queues `d` at the back of `sid`'s queue, within its limits, and releases what fits.
    pub(super) fn enqueue_now(&mut self, now: Instant, sid: SessionId, d: Delivery) {
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
        let size = budget::delivery_weight(&d);
        let over = |s: &Session, n: usize| {
            s.waiting_len() >= max_msgs.saturating_mul(n)
                || s.queue.bytes() + size > max_bytes.saturating_mul(n)
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
            match s.queue.drop_oldest_qos0() {
                Some(old) => {
                    persist_log::unqueue(&mut self.store, &s.client_id, old.stored);
                    s.dropped += 1;
                    self.counts.dropped.count(DropReason::QueueFull);
                }
                None => {
                    s.dropped += 1;
                    self.counts.dropped.count(DropReason::QueueFull);
                    return;
                }
            }
        }
        s.queue.push(d);
        if s.persisted {
            // Offline, everything queued is stored; online, what is owed at QoS 1/2.
            self.persist_last(now, sid);
        }
        self.release(now, sid);
    }

    /// Hands queued messages to the session's connection while its window has room.
    pub(super) fn release(&mut self, now: Instant, sid: SessionId) {
        // One lookup of the session; the fields used beside it are borrowed apart.
        let Router {
            sessions,
            outbox,
            held_due,
            takeovers,
            store,
            config,
            parked,
            counts,
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
        let durable_acks = config.durable_acks;
        while let Some(front) = s.queue.front() {
            let qos0 = front.is_qos0();
            if !qos0 && !s.inflight.has_room() {
                break;
            }
            let Some(mut d) = s.queue.pop() else {
                break;
            };
            let expired = d.expires_at.is_some_and(|at| at <= now);
            if qos0 || expired {
                // A stored QoS 1/2 message stays stored until its flow ends.
                persist_log::unqueue(store, &s.client_id, d.stored.take());
            }
            if expired {
                counts.dropped.count(DropReason::Expired);
                continue; // [MQTT-3.3.2-5]: expired, not delivered
            }
            if !qos0 {
                s.inflight.released();
            }
            counts.sent.add(d.qos, 1);
            counts.sent_bytes.add(d.qos, d.payload_len() as u64);
            let stored_qos2 = d.stored.is_some() && d.qos == QoS::ExactlyOnce;
            match store {
                Some(log) if durable_acks && (stored_qos2 || parked.holds(sid)) => {
                    log.push(StoreOp::Durable(crate::broker::persist::Ticket {
                        conn,
                        delivery: true,
                    }));
                    parked.park(conn, sid, d);
                }
                _ => outbox.push_back((conn, ToConnection::Deliver(d))),
            }
        }
        let max_msgs = config.max_queued_messages;
        let max_bytes = config.max_queued_bytes;
        if !s.waiting.is_empty() && s.waiting_len() < max_msgs && s.queue.bytes() < max_bytes {
            self.wake_publishers(sid);
        }
    }

    /// Gives the publishers waiting for `sid`'s queue their held acknowledgements.
    pub(super) fn wake_publishers(&mut self, sid: SessionId) {
        let waiting = match self.sessions.get_mut(&sid) {
            Some(s) if !s.waiting.is_empty() => std::mem::take(&mut s.waiting),
            _ => return,
        };
        for conn in waiting {
            self.ticket(conn);
        }
    }

    /// Mail that could not reach its connection (its queue is full); the caller closes that
    /// connection as too slow.
    ///
    /// Nothing more is released to the session until its connection's close arrives. QoS 1
    /// and 2 deliveries go back to the front of the session's queue, in order; QoS 0
    /// deliveries and acknowledgements are dropped.
    pub fn handle_undelivered(&mut self, _now: Instant, mail: ConnectionMail) {
        let Some(&sid) = self.online.get(&mail.conn) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !s.stalled {
            s.stalled = true;
            s.queue.reset_returned();
        }
        if let ToConnection::Deliver(d) = &mail.mail {
            // Counted when released, never sent.
            self.counts.sent.sub(d.qos, 1);
            self.counts.sent_bytes.sub(d.qos, d.payload_len() as u64);
        }
        match mail.mail {
            ToConnection::Deliver(d) if !d.is_qos0() => {
                s.inflight.finished(1);
                s.queue.put_back(d);
            }
            ToConnection::Deliver(_) => {
                s.dropped += 1;
                self.counts.dropped.count(DropReason::QueueFull);
            }
            ToConnection::Accepted { handover, .. } => s.handover = handover,
            _ => {}
        }
    }
}
