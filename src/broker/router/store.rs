//! The router's side of persistence: restoring from a store's snapshot and logging every
//! change to what is persisted (see [`crate::store`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::super::mail::Handover;
use super::super::tree::{SessionId, Subscription};
use super::{Retained, Router, Session, Timer};
use crate::codec::Publish;
use crate::store::{RetainedRecord, SessionRecord, StoreOp, StoreSnapshot, StoredSubscription};

/// The changes not yet drained, and the wall clock the runtime gave at restore.
#[derive(Debug)]
pub(super) struct StoreLog {
    ops: VecDeque<StoreOp>,
    /// The instant the runtime paired with `wall`.
    epoch: Instant,
    /// Wall-clock seconds since the Unix epoch at `epoch`.
    wall: u64,
}

impl StoreLog {
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
    /// Retained messages and sessions whose expiry passed while the broker was down (their
    /// records are deleted through [`Router::poll_store`]).
    pub expired: usize,
}

impl Router {
    /// Rebuilds retained messages and sessions from a store's snapshot, and from then on logs
    /// every change for the store (drain it with [`Router::poll_store`]).
    ///
    /// `wall` is the wall-clock time at `now`, in seconds since the Unix epoch: expiry keeps
    /// counting from the stored times. Call it once, on a router that has accepted nothing
    /// yet, with an empty snapshot for a new store. Restored sessions are offline and keep
    /// their subscriptions; a session stored while its client was connected counts its expiry
    /// from `now`. Records for a client id or topic already present are ignored.
    pub fn restore(&mut self, now: Instant, wall: u64, snapshot: StoreSnapshot) -> Restored {
        self.start_clock(now);
        self.store = Some(StoreLog {
            ops: VecDeque::new(),
            epoch: now,
            wall,
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
            self.retained.insert(&topic, Retained { publish, at: now });
            done.retained += 1;
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
        done
    }

    /// A change for the store, in order; yields after inputs, timeouts and [`Router::restore`]
    /// once a store is on (drain it after [`Router::poll_mail`] and write each drained batch
    /// in one transaction). Never yields without a store.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.store.as_mut()?.ops.pop_front()
    }

    fn restore_session(&mut self, now: Instant, wall: u64, age: u64, r: SessionRecord) {
        let sid = SessionId(self.next_session);
        self.next_session += 1;
        let mut subscriptions = HashMap::with_capacity(r.subscriptions.len());
        for s in r.subscriptions {
            let sub = Subscription {
                options: s.options,
                identifier: s.identifier,
            };
            self.tree.insert(&s.filter, sid, sub);
            subscriptions.insert(s.filter, sub);
        }
        self.by_client.insert(r.client_id.clone(), sid);
        self.sessions.insert(
            sid,
            Session {
                client_id: r.client_id,
                protocol: r.protocol,
                conn: None,
                expiry: r.expiry,
                subscriptions,
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
                persisted: true,
                disconnected_at: Some(r.disconnected_at.unwrap_or(wall)),
            },
        );
        if r.expiry != u32::MAX {
            let left = u64::from(r.expiry) - age;
            self.set_timer(now + Duration::from_secs(left), Timer::Expire(sid, 0));
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
        }));
    }
}

/// Whether `p` is on a `$SYS` topic, which the broker rebuilds itself and never stores.
fn is_sys(p: &Publish) -> bool {
    p.topic.as_str().starts_with("$SYS")
}
