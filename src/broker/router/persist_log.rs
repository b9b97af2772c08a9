//! The router's side of persistence: restoring from a store's snapshot and logging every
//! change to what is persisted (see [`crate::broker::persist`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Router;
use crate::broker::mail::{ConnId, Delivery, OutFlow, ToConnection};
use crate::broker::persist::{
    CompletedRecord, PacketIdRecord, QueuedRecord, RetainedRecord, SessionRecord, StoreOp,
    StoreSnapshot, StoredSubscription, StoredWill, Ticket,
};
use crate::broker::tree::SessionId;
use crate::broker::DropReason;
use crate::codec::Publish;
use crate::types::{ByteStr, PacketId};

/// The changes not yet drained, and the wall clock the runtime gave at restore.
#[derive(Debug)]
pub(super) struct StoreLog {
    ops: VecDeque<StoreOp>,
    /// The instant the runtime paired with `wall`.
    epoch: Instant,
    /// Wall-clock seconds since the Unix epoch at `epoch`.
    wall: u64,
    /// The sequence number the next queued message gets in the store.
    next_seq: u64,
}

impl StoreLog {
    /// Logs `op`.
    pub(super) fn push(&mut self, op: StoreOp) {
        self.ops.push_back(op);
    }

    /// Wall-clock seconds at `now`, counted from the pairing given at restore.
    pub(super) fn wall(&self, now: Instant) -> u64 {
        self.wall + now.saturating_duration_since(self.epoch).as_secs()
    }
}

/// What [`Router::restore`] brought back and what it left out as expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Retained messages restored.
    pub retained: usize,
    /// Sessions restored (each with its subscriptions).
    pub sessions: usize,
    /// Messages put back in the offline queues of restored sessions.
    pub queued: usize,
    /// Retained messages, sessions and queued messages whose expiry passed while the broker
    /// was down (their records are deleted through [`Router::poll_store`]).
    pub expired: usize,
}

impl Router {
    /// A ticket the store logged ([`StoreOp::Durable`](crate::broker::persist::StoreOp::Durable))
    /// is durable, with everything logged before it: its connection may send the acknowledgement it
    /// holds. Hand tickets back in the order they were drained.
    pub fn handle_durable(&mut self, now: Instant, ticket: Ticket) {
        if !ticket.delivery {
            if ticket.conn == super::admin::HOST {
                self.host_ticket();
            } else if self.conns.contains(&ticket.conn) {
                self.send_held(ticket.conn, 1);
            }
            return;
        }
        let Some((conn, sid, d)) = self.parked.unpark() else {
            return;
        };
        debug_assert_eq!(conn, ticket.conn, "tickets come back in order");
        if self.online.get(&conn) == Some(&sid) {
            self.send_to((conn, ToConnection::Deliver(d)));
        } else {
            // Its connection is gone: back to the session, as if never sent.
            self.returned_to(now, sid, d);
        }
    }

    /// Rebuilds retained messages and sessions from a store's snapshot, and from then on logs
    /// every change for the store (drain it with [`Router::poll_store`]).
    ///
    /// `wall` is the wall-clock time at `now`, in seconds since the Unix epoch: expiry keeps
    /// counting from the stored times. Call it once, on a router that has accepted nothing
    /// yet, with an empty snapshot for a new store. Restored sessions are offline and keep
    /// their subscriptions and their queued messages, in sequence order (an expired one, or
    /// one whose session is not restored, is deleted); a session stored while its client was
    /// connected counts its expiry from `now`. Records for a client id or topic already
    /// present are ignored.
    pub fn restore(&mut self, now: Instant, wall: u64, snapshot: StoreSnapshot) -> Restored {
        self.start_clock(now);
        self.store = Some(StoreLog {
            ops: VecDeque::new(),
            epoch: now,
            wall,
            next_seq: 0,
        });
        let mut done = Restored::default();
        for r in snapshot.retained {
            if is_sys(&r.publish) {
                continue;
            }
            let age = wall.saturating_sub(r.stored_at);
            let mut publish = r.publish;
            if let Some(interval) = publish.properties.message_expiry_interval {
                if age >= u64::from(interval) {
                    done.expired += 1;
                    self.log(StoreOp::DeleteRetained(publish.topic));
                    continue;
                }
                // What is left of its lifetime, counted from now.
                publish.properties.message_expiry_interval = Some(interval - age as u32);
            }
            if self.retained.get(&publish.topic).is_some() {
                continue;
            }
            let topic = publish.topic.clone();
            let message = Arc::new(publish);
            match self.retained_entry(&message, now) {
                Some(r) => {
                    self.retained.insert(&topic, r);
                    done.retained += 1;
                }
                // The limits shrank since it was stored.
                None => self.log(StoreOp::DeleteRetained(topic)),
            }
        }
        for s in snapshot.sessions {
            if self.by_client.contains_key(&s.client_id) {
                continue;
            }
            let age = s.disconnected_at.map_or(0, |at| wall.saturating_sub(at));
            if s.expiry == 0 || (s.expiry != u32::MAX && age >= u64::from(s.expiry)) {
                done.expired += 1;
                self.log(StoreOp::DeleteSession(s.client_id));
                continue;
            }
            self.restore_session(now, wall, age, s);
            done.sessions += 1;
        }
        self.restore_queued(now, wall, snapshot.queued, &mut done);
        self.restore_flows(snapshot.incoming, snapshot.released);
        self.restore_completed(snapshot.completed);
        self.restore_remote_routed(snapshot.remote_routed);
        done
    }

    /// Gives restored sessions their released inbound QoS 2 identifiers (see `replay`); those
    /// of a session not restored are deleted.
    fn restore_completed(&mut self, completed: Vec<CompletedRecord>) {
        for r in completed {
            let session = self
                .by_client
                .get(&r.client_id)
                .and_then(|sid| self.sessions.get_mut(sid))
                .filter(|s| s.persisted && s.conn.is_none());
            match session {
                // The order among them is lost: any of them may be the first forgotten.
                Some(s) => {
                    if let Some(gone) = s
                        .handover
                        .completed
                        .get_or_insert_with(Default::default)
                        .push(r.packet_id, r.digest)
                    {
                        let client_id = r.client_id.clone();
                        self.log(StoreOp::DeleteCompleted(PacketIdRecord {
                            client_id,
                            packet_id: gone,
                        }));
                    }
                }
                None => self.log(StoreOp::DeleteCompleted(PacketIdRecord {
                    client_id: r.client_id,
                    packet_id: r.packet_id,
                })),
            }
        }
    }

    /// The client of `conn` sent a QoS 2 message with `digest` under `packet_id`: its session
    /// remembers the pair (and the store, for a stored session) past the PUBREL, forgetting
    /// the oldest beyond the limit (see `replay`).
    pub(super) fn received_qos2(&mut self, conn: ConnId, packet_id: PacketId, digest: u64) {
        let Some(s) = self
            .online
            .get(&conn)
            .and_then(|s| self.sessions.get_mut(s))
        else {
            return;
        };
        let completed = s.handover.completed.get_or_insert_with(Default::default);
        let gone = completed.push(packet_id, digest);
        if !s.persisted {
            return;
        }
        let client_id = s.client_id.clone();
        if let Some(gone) = gone {
            self.log(StoreOp::DeleteCompleted(PacketIdRecord {
                client_id: client_id.clone(),
                packet_id: gone,
            }));
        }
        self.log(StoreOp::PutCompleted(CompletedRecord {
            client_id,
            packet_id,
            digest,
        }));
    }

    /// Gives restored sessions their QoS 2 flows: inbound packet identifiers waiting for
    /// PUBREL, and outbound flows waiting for PUBCOMP (resent as PUBREL on reconnect). Those
    /// of a session not restored are deleted.
    fn restore_flows(&mut self, incoming: Vec<PacketIdRecord>, released: Vec<PacketIdRecord>) {
        let flows = incoming
            .into_iter()
            .map(|r| (r, true))
            .chain(released.into_iter().map(|r| (r, false)));
        for (r, inbound) in flows {
            let session = self
                .by_client
                .get(&r.client_id)
                .and_then(|sid| self.sessions.get_mut(sid))
                .filter(|s| s.persisted && s.conn.is_none());
            let Some(s) = session else {
                self.log(if inbound {
                    StoreOp::DeleteIncoming(r)
                } else {
                    StoreOp::DeleteReleased(r)
                });
                continue;
            };
            let h = &mut s.handover;
            if inbound {
                if !h.incoming_qos2.contains(&r.packet_id) {
                    let mut ids = std::mem::take(&mut h.incoming_qos2).into_vec();
                    ids.push(r.packet_id);
                    ids.sort();
                    h.incoming_qos2 = ids.into_boxed_slice();
                }
            } else if !h.outbound.iter().any(|(id, _)| *id == r.packet_id) {
                s.last_packet_id = s.last_packet_id.max(r.packet_id.get());
                h.outbound
                    .push((r.packet_id, OutFlow::Released { stored: true }));
            }
        }
    }

    /// Puts stored messages back in their sessions' queues, in sequence order; those whose
    /// session is gone or whose expiry passed are deleted, and so are those beyond the
    /// queue's limits (counted as dropped).
    fn restore_queued(
        &mut self,
        now: Instant,
        wall: u64,
        mut queued: Vec<QueuedRecord>,
        done: &mut Restored,
    ) {
        queued.sort_by(|a, b| (&a.client_id, a.seq).cmp(&(&b.client_id, b.seq)));
        let max_msgs = self.config.max_queued_messages;
        let max_bytes = self.config.max_queued_bytes;
        for q in queued {
            if let Some(log) = &mut self.store {
                log.next_seq = log.next_seq.max(q.seq.saturating_add(1));
            }
            let session = self
                .by_client
                .get(&q.client_id)
                .and_then(|sid| self.sessions.get_mut(sid))
                .filter(|s| s.persisted && s.conn.is_none());
            let expired = q.expires_at.is_some_and(|at| at <= wall);
            let Some(s) = session.filter(|_| !expired) else {
                done.expired += usize::from(expired);
                unqueue(&mut self.store, &q.client_id, Some(q.seq));
                continue;
            };
            let d = Delivery {
                expires_at: q.expires_at.map(|at| now + Duration::from_secs(at - wall)),
                stored: Some(q.seq),
                packet_id: q.packet_id,
                ..Delivery::of(q.publish)
            };
            let size = crate::broker::budget::delivery_weight(&d);
            if s.queue.len() >= max_msgs || s.queue.bytes() + size > max_bytes {
                // The limits shrank since it was stored: the newest messages are dropped.
                s.dropped += 1;
                self.counts.dropped.count(DropReason::QueueFull);
                unqueue(&mut self.store, &q.client_id, Some(q.seq));
                continue;
            }
            if let Some(id) = q.packet_id {
                s.last_packet_id = s.last_packet_id.max(id.get());
            }
            s.queue.push(d);
            done.queued += 1;
        }
    }

    /// Logs the messages of a stored session's queue the store does not hold yet (offline,
    /// every one; online, those owed at QoS 1/2), keeping the queue's order in the sequence
    /// numbers. A QoS 1/2 message gets its packet identifier here, so the one it goes out
    /// with is stored with it.
    pub(super) fn persist_queued(&mut self, now: Instant, sid: SessionId) {
        let Some(log) = &mut self.store else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !s.persisted {
            return;
        }
        let online = s.conn.is_some();
        let wanted = |d: &Delivery| !(online && d.is_qos0());
        let Some(first) = s.queue.iter().position(|d| wanted(d) && d.stored.is_none()) else {
            return;
        };
        // New messages only at the end: they follow the stored ones. Otherwise (messages came
        // back to the front) the whole queue is stored again under new numbers.
        let from = if s.queue.iter().skip(first).all(|d| d.stored.is_none()) {
            first
        } else {
            0
        };
        let wall = log.wall(now);
        for d in s.queue.iter_mut().skip(from).filter(|d| wanted(d)) {
            store_delivery(log, &s.client_id, &mut s.last_packet_id, d, now, wall);
        }
    }

    /// Logs the message just queued at the back of a stored session's queue (offline, any;
    /// online, one owed at QoS 1/2): every message before it is stored already.
    pub(super) fn persist_last(&mut self, now: Instant, sid: SessionId) {
        let Some(log) = &mut self.store else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid).filter(|s| s.persisted) else {
            return;
        };
        let online = s.conn.is_some();
        let wall = log.wall(now);
        if let Some(d) = s.queue.back_mut() {
            if d.stored.is_none() && !(online && d.is_qos0()) {
                store_delivery(log, &s.client_id, &mut s.last_packet_id, d, now, wall);
            }
        }
    }

    /// Whether connections hold their acknowledgements until the store says what they
    /// promise is durable.
    pub(super) fn holds_acks(&self) -> bool {
        self.store.is_some() && self.config.durable_acks
    }

    /// Lets `conn` send the oldest acknowledgement it holds: once what is logged so far is
    /// durable (a ticket in the log) with durable acks, at once otherwise.
    pub(super) fn ticket(&mut self, conn: ConnId) {
        if self.holds_acks() {
            self.log(StoreOp::Durable(Ticket {
                conn,
                delivery: false,
            }));
        } else if conn == super::admin::HOST {
            self.host_ticket();
        } else if self.conns.contains(&conn) {
            self.send_held(conn, 1);
        }
    }

    /// Logs a change to a QoS 2 flow of the stored session `conn` serves.
    pub(super) fn log_flow(
        &mut self,
        conn: ConnId,
        packet_id: PacketId,
        op: fn(PacketIdRecord) -> StoreOp,
    ) {
        let Some(s) = self.online.get(&conn).and_then(|s| self.sessions.get(s)) else {
            return;
        };
        if !s.persisted {
            return;
        }
        let client_id = s.client_id.clone();
        self.log(op(PacketIdRecord {
            client_id,
            packet_id,
        }));
    }

    /// A change for the store, in order; yields after inputs, timeouts and [`Router::restore`]
    /// once a store is on (drain it after [`Router::poll_mail`] and write each drained batch
    /// in one transaction). Never yields without a store.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.store.as_mut()?.ops.pop_front()
    }

    /// Sets [`BrokerConfig::durable_acks`] from now on: whoever runs the store derives it from
    /// the store's sync policy (acknowledgements wait for durability only where each commit
    /// is synced). Set it before the first connection.
    ///
    /// [`BrokerConfig::durable_acks`]: crate::broker::BrokerConfig::durable_acks
    pub fn set_durable_acks(&mut self, durable_acks: bool) {
        if self.config.durable_acks != durable_acks {
            Arc::make_mut(&mut self.config).durable_acks = durable_acks;
        }
    }

    /// Logs `op` if a store is on.
    pub(super) fn log(&mut self, op: StoreOp) {
        if let Some(log) = &mut self.store {
            log.ops.push_back(op);
        }
    }

    /// Logs a retained message as the router keeps it (not the broker's own `$SYS` topics,
    /// which it republishes every round).
    pub(super) fn log_retained(&mut self, now: Instant, publish: &Publish) {
        if is_sys(publish) {
            return;
        }
        if let Some(log) = &mut self.store {
            let stored_at = log.wall(now);
            log.ops.push_back(StoreOp::PutRetained(RetainedRecord {
                publish: publish.clone(),
                stored_at,
            }));
        }
    }

    /// Logs a session's state after a change: stored while it outlives its connection,
    /// deleted once it no longer does.
    pub(super) fn persist_session(&mut self, sid: SessionId) {
        let Some(log) = &mut self.store else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.expiry == 0 {
            // The store drops the queue with the session.
            for d in s.queue.iter_mut() {
                d.stored = None;
            }
            if std::mem::take(&mut s.persisted) {
                log.ops
                    .push_back(StoreOp::DeleteSession(s.client_id.clone()));
            }
            return;
        }
        let mut subscriptions: Vec<StoredSubscription> = s
            .subscriptions
            .iter()
            .map(|(filter, sub)| StoredSubscription {
                filter: filter.clone(),
                options: sub.options,
                identifier: sub.identifier,
            })
            .collect();
        subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
        s.persisted = true;
        log.ops.push_back(StoreOp::PutSession(SessionRecord {
            client_id: s.client_id.clone(),
            protocol: s.protocol,
            expiry: s.expiry,
            disconnected_at: s.disconnected_at,
            subscriptions,
            will: s.will.as_deref().map(StoredWill::from),
            owner: s.stored_owner(),
        }));
    }
}

/// Logs `d` at the end of `client_id`'s stored queue (dropping its earlier record, if any)
/// under the next sequence number, with the next packet identifier of the session if it is
/// a QoS 1/2 message without one.
fn store_delivery(
    log: &mut StoreLog,
    client_id: &ByteStr,
    last_packet_id: &mut u16,
    d: &mut Delivery,
    now: Instant,
    wall: u64,
) {
    if let Some(seq) = d.stored.take() {
        log.ops.push_back(StoreOp::Dequeue {
            client_id: client_id.clone(),
            seq,
        });
    }
    let seq = log.next_seq;
    log.next_seq += 1;
    d.stored = Some(seq);
    if !d.is_qos0() && d.packet_id.is_none() {
        *last_packet_id = last_packet_id.checked_add(1).unwrap_or(1);
        d.packet_id = PacketId::new(*last_packet_id);
    }
    let expires_at = d.expires_at.map(|at| {
        let left = at.saturating_duration_since(now);
        wall + left.as_secs() + u64::from(left.subsec_nanos() > 0)
    });
    log.ops.push_back(StoreOp::Enqueue(QueuedRecord {
        client_id: client_id.clone(),
        seq,
        publish: d.publish(),
        packet_id: d.packet_id,
        stored_at: wall,
        expires_at,
    }));
}

/// Logs the removal of a message from a stored queue, if it was stored.
pub(super) fn unqueue(store: &mut Option<StoreLog>, client_id: &ByteStr, seq: Option<u64>) {
    if let (Some(log), Some(seq)) = (store, seq) {
        log.ops.push_back(StoreOp::Dequeue {
            client_id: client_id.clone(),
            seq,
        });
    }
}

/// Whether `p` is on a `$SYS` topic, which the broker rebuilds itself and never stores.
fn is_sys(p: &Publish) -> bool {
    p.topic.as_str().starts_with("$SYS")
}
