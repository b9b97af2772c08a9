//! Retained messages replayed to a new subscription, in pieces, through the session's
//! bounded queue.
//!
//! A SUBSCRIBE's filters are merged first (a filter repeated in one SUBSCRIBE replays once).
//! Its retained matches wait in the session's replay as light references to the stored
//! messages (at most `max_retained_messages` of them, each charged to the memory budget;
//! beyond either they are dropped and counted, as a full queue would). They move to the
//! session's queue a piece at a time, only while the queue has room; between pieces the
//! router serves everyone else (the next piece is a timer a moment later, or the subscriber's
//! credit when its queue was full). While a replay is under way, new messages for the session
//! wait behind it (at most `max_queued_messages`), so the subscriber sees them in order. When
//! the subscriber's connection closes, a session that lives on queues what is left (within
//! its queue's limits) for the client's return.

use std::collections::{BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::routing::delivery;
use super::{Router, Timer};
use crate::broker::budget::{delivery_weight, Charge, DELIVERY_OVERHEAD};
use crate::broker::mail::Delivery;
use crate::broker::tree::SessionId;
use crate::broker::DropReason;
use crate::codec::Publish;
use crate::types::{QoS, TopicFilter};

/// Deliveries moved from a replay to the queue at once.
const PIECE: usize = 64;

/// A retained message to replay: the stored message, the QoS to deliver it with, when it
/// expires, and the subscription identifier.
type Pending = (Arc<Publish>, QoS, Option<Instant>, Option<NonZeroU32>);

/// What a replay's entry costs the budget (the message itself is the retained store's).
const PENDING_WEIGHT: usize = size_of::<Pending>();

/// The retained messages a session still waits for, and the new ones behind them.
#[derive(Debug, Default)]
pub(super) struct Replay {
    retained: VecDeque<Pending>,
    behind: VecDeque<Delivery>,
    /// The weight of `behind` (as a queue counts it).
    behind_bytes: usize,
    /// A timer for the next piece is set.
    scheduled: bool,
    /// What it holds, in the broker's memory budget.
    charge: Option<Charge>,
}

impl Replay {
    fn is_empty(&self) -> bool {
        self.retained.is_empty() && self.behind.is_empty()
    }

    fn recharge(&mut self) {
        let bytes = self.retained.len() * PENDING_WEIGHT + self.behind_bytes;
        if let Some(c) = &mut self.charge {
            c.set(bytes);
        }
    }

    /// The next delivery: retained messages first, then those that came behind them.
    fn pop(&mut self) -> Option<Delivery> {
        let d = match self.retained.pop_front() {
            // Sent with the retain flag, whatever "retain as published" says ([MQTT-3.3.1-8]).
            Some((message, qos, expires_at, id)) => {
                delivery(&message, qos, true, id.into_iter().collect(), expires_at)
            }
            None => {
                let d = self.behind.pop_front()?;
                self.behind_bytes -= delivery_weight(&d) + DELIVERY_OVERHEAD;
                d
            }
        };
        self.recharge();
        Some(d)
    }
}

impl Router {
    /// Replays the retained messages matching `filters` (each with its granted QoS) to `sid`.
    pub(super) fn replay_retained(
        &mut self,
        now: Instant,
        sid: SessionId,
        filters: Vec<(TopicFilter, QoS)>,
        subscription_id: Option<NonZeroU32>,
    ) {
        // A filter repeated in one SUBSCRIBE replays once, with the QoS granted last.
        let mut seen = BTreeSet::new();
        let mut merged: Vec<(TopicFilter, QoS)> = Vec::with_capacity(filters.len());
        for (filter, qos) in filters.into_iter().rev() {
            if seen.insert(filter.clone()) {
                merged.push((filter, qos));
            }
        }
        merged.reverse();
        let mut replay = self.replays.remove(&sid).unwrap_or_default();
        if replay.charge.is_none() {
            replay.charge = Some(self.budget.charge(0));
        }
        let cap = self.config.max_retained_messages;
        let budget = &self.budget;
        let mut dropped = 0u64;
        for (filter, qos) in merged {
            let retained = &mut replay.retained;
            let mut added = 0;
            self.retained.for_each_match(&filter, |r| {
                let expires_at = r.expires_at();
                if expires_at.is_some_and(|at| at <= now) {
                    return;
                }
                if retained.len() < cap && budget.has_room((added + 1) * PENDING_WEIGHT) {
                    added += 1;
                    let qos = r.message.qos.min(qos);
                    retained.push_back((r.message.clone(), qos, expires_at, subscription_id));
                } else {
                    dropped += 1;
                }
            });
            replay.recharge();
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.dropped += dropped;
            self.counts.dropped.add(DropReason::QueueFull, dropped);
        }
        if !replay.is_empty() {
            self.replays.insert(sid, replay);
            self.replay_piece(now, sid);
        }
    }

    /// While `sid` waits for a replay, a new delivery waits behind it (dropped and counted
    /// once `max_queued_messages` wait there). Gives `d` back when no replay is under way.
    pub(super) fn behind_replay(&mut self, sid: SessionId, d: Delivery) -> Option<Delivery> {
        if self.replays.is_empty() {
            return Some(d); // the usual case, without a lookup
        }
        let Some(replay) = self.replays.get_mut(&sid) else {
            return Some(d);
        };
        if replay.behind.len() < self.config.max_queued_messages {
            replay.behind_bytes += delivery_weight(&d) + DELIVERY_OVERHEAD;
            replay.behind.push_back(d);
            replay.recharge();
        } else if let Some(s) = self.sessions.get_mut(&sid) {
            s.dropped += 1;
            self.counts.dropped.count(DropReason::QueueFull);
        }
        None
    }

    /// Moves the next piece of `sid`'s replay to its queue, as far as the queue has room,
    /// and plans the next piece.
    pub(super) fn replay_piece(&mut self, now: Instant, sid: SessionId) {
        let (max_msgs, max_bytes) = (
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        let mut moved = 0;
        while moved < PIECE {
            let room = self.sessions.get(&sid).is_some_and(|s| {
                s.conn.is_some() && s.waiting_len() < max_msgs && s.queue.bytes() < max_bytes
            });
            if !room {
                break;
            }
            let Some(d) = self.replays.get_mut(&sid).and_then(Replay::pop) else {
                break;
            };
            self.enqueue_now(now, sid, d);
            moved += 1;
        }
        let online = self.sessions.get(&sid).is_some_and(|s| s.conn.is_some());
        let Some(replay) = self.replays.get_mut(&sid) else {
            return;
        };
        if replay.is_empty() || !online {
            // Done, or the subscriber left: what is left is not replayed to it.
            self.replays.remove(&sid);
        } else if moved == PIECE && !replay.scheduled {
            // More to come: after the router served the others.
            replay.scheduled = true;
            let at = now + Duration::from_micros(1);
            self.set_timer(at, Timer::Replay(sid));
        }
        // Otherwise the queue is full: the subscriber's credit brings the next piece.
    }

    /// The connection of `sid` closed with a replay under way. A session that lives on keeps
    /// what is left of it: it joins the session's queue, retained messages first and then
    /// what came behind them, within the queue's limits (beyond them dropped and counted), so
    /// the client gets it when it resumes, as messages matched while it was online (whatever
    /// their QoS: `queue_qos0_offline` is about messages routed while it is offline), and a
    /// stored session stores them with the rest of its queue. A session that ends drops it.
    pub(super) fn replay_to_queue(&mut self, sid: SessionId) {
        let Some(mut replay) = self.replays.remove(&sid) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid).filter(|s| s.expiry != 0) else {
            return;
        };
        let (max_msgs, max_bytes) = (
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        while let Some(d) = replay.pop() {
            let size = delivery_weight(&d);
            if s.waiting_len() >= max_msgs || s.queue.bytes() + size > max_bytes {
                s.dropped += 1;
            } else {
                s.queue.push(d);
            }
        }
    }

    /// The timer for `sid`'s next piece fired.
    pub(super) fn replay_due(&mut self, now: Instant, sid: SessionId) {
        if let Some(r) = self.replays.get_mut(&sid) {
            r.scheduled = false;
            self.replay_piece(now, sid);
        }
    }
}
