//! Subscriptions: SUBSCRIBE and UNSUBSCRIBE against the session and the subscription tree
//! (shared groups included), within the per-client limit and the memory budget; retained
//! messages for new subscriptions are replayed by `replay`.

use std::num::NonZeroU32;
use std::time::Instant;

use super::{remote, Router};
use crate::broker::mail::{ConnId, ToConnection};
use crate::broker::tree::SubscriptionEntry;
use crate::codec::RetainHandling;
use crate::types::{PacketId, QoS, ReasonCode, TopicFilter};

/// What one subscription of a session weighs beside its filter's bytes (its entry in the
/// session's map and in the subscription tree).
const SUBSCRIPTION_WEIGHT: usize = 2 * size_of::<SubscriptionEntry>() + 96;

/// What a subscription to `filter` weighs.
pub(super) fn subscription_weight(filter: &TopicFilter) -> usize {
    2 * filter.as_str().len() + SUBSCRIPTION_WEIGHT
}

impl Router {
    pub(super) fn subscribe(
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
            let room = self.budget.has_room(subscription_weight(&req.filter));
            if !exists && (s.subscriptions.len() >= max_subs || !room) {
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
            if !exists {
                let weight = s.charge.bytes() + subscription_weight(&req.filter);
                s.charge.set(weight);
            }
            s.subscriptions.insert(req.filter.clone(), sub);
            remote::subscribe(
                &mut self.tree,
                self.remote.as_deref_mut(),
                &req.filter,
                sid,
                sub,
            );
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
        if !retained_for.is_empty() {
            self.replay_retained(now, sid, retained_for, subscription_id);
        }
    }

    pub(super) fn unsubscribe(
        &mut self,
        conn: ConnId,
        packet_id: PacketId,
        filters: Vec<TopicFilter>,
    ) {
        let Some(&sid) = self.online.get(&conn) else {
            return;
        };
        let mut codes = Vec::with_capacity(filters.len());
        for f in filters {
            let mut existed = false;
            if let Some(s) = self.sessions.get_mut(&sid) {
                if s.subscriptions.remove(&f).is_some() {
                    let weight = s.charge.bytes() - subscription_weight(&f);
                    s.charge.set(weight);
                    existed = true;
                }
            }
            remote::unsubscribe(&mut self.tree, self.remote.as_deref_mut(), &f, sid);
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
