//! The broker's counters and gauges, as one snapshot ([`BrokerStats`]) that `$SYS`, the
//! runtimes' metrics endpoint and `status` read.
//!
//! Counting stays off the hot path's budget: the router and the connections add to plain
//! integers where things happen (an array indexed by QoS, never a map or a string per
//! message); everything derived (sums over sessions, the load averages) is computed when a
//! snapshot is taken.

use crate::types::{QoS, ReasonCode};

/// Counts by QoS level (indexed by [`QoS`] as `0..=2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByQoS(pub [u64; 3]);

impl ByQoS {
    /// The count for `qos`.
    pub fn get(&self, qos: QoS) -> u64 {
        self.0[qos as usize]
    }

    /// The sum over every QoS.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `n` to the count of `qos`.
    #[inline]
    pub(crate) fn add(&mut self, qos: QoS, n: u64) {
        self.0[qos as usize] += n;
    }

    /// Takes `n` back from the count of `qos` (something counted that did not happen).
    pub(crate) fn sub(&mut self, qos: QoS, n: u64) {
        let c = &mut self.0[qos as usize];
        *c = c.saturating_sub(n);
    }
}

/// Why a message was not delivered to a subscriber, or not taken from a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// A session's queue (or a connection's mail queue) was full.
    QueueFull,
    /// Its message expiry interval passed before it could be sent.
    Expired,
    /// Larger than the subscriber's maximum packet size.
    TooLarge,
    /// The authorizer refused it (a publish, or a subscriber that may not read it).
    NotAuthorized,
    /// The memory budget (or the retained budget) had no room for it.
    MemoryLimit,
}

impl DropReason {
    /// Every reason, in a fixed order.
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::Expired,
        DropReason::TooLarge,
        DropReason::NotAuthorized,
        DropReason::MemoryLimit,
    ];

    /// A short name (a metric label): `queue_full`, `expired`, `too_large`,
    /// `not_authorized`, `memory_limit`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::TooLarge => "too_large",
            DropReason::NotAuthorized => "not_authorized",
            DropReason::MemoryLimit => "memory_limit",
        }
    }
}

/// Messages dropped, by [`DropReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts([u64; 5]);

impl DropCounts {
    /// The count for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Every drop, whatever the reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Counts one more drop for `reason`.
    #[inline]
    pub(crate) fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    /// Counts `n` more drops for `reason`.
    pub(crate) fn add(&mut self, reason: DropReason, n: u64) {
        self.0[reason as usize] += n;
    }
}

/// CONNECTs refused, by the CONNACK reason code they got (MQTT 3.1.x return codes count
/// under the MQTT 5 code they map onto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefusedCounts([u64; 32]);

impl RefusedCounts {
    /// Refusals with `code` (0 for a code no CONNACK refusal carries).
    pub fn get(&self, code: ReasonCode) -> u64 {
        Self::slot(code).map_or(0, |i| self.0[i])
    }

    /// Every refusal, whatever the code.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The codes refused at least once, with their counts, by code.
    pub fn iter(&self) -> impl Iterator<Item = (ReasonCode, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(i, n)| {
                let code = ReasonCode::from_u8(0x80 + i as u8)?;
                Some((code, *n))
            })
    }

    /// Refusals for failed authentication or authorization: bad user name or password, not
    /// authorized, bad authentication method.
    pub fn auth_failures(&self) -> u64 {
        [
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
            ReasonCode::BadAuthenticationMethod,
        ]
        .into_iter()
        .map(|c| self.get(c))
        .sum()
    }

    /// Counts one more refusal with `code`.
    pub(crate) fn count(&mut self, code: ReasonCode) {
        let i = Self::slot(code).unwrap_or(0); // any other code: unspecified error
        self.0[i] += 1;
    }

    fn slot(code: ReasonCode) -> Option<usize> {
        let b = code.as_u8();
        (0x80..0xA0).contains(&b).then(|| usize::from(b - 0x80))
    }
}

/// What the router counts as things happen (the rest of [`BrokerStats`] is read from its
/// state when a snapshot is taken).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    /// Transports accepted.
    pub(crate) accepted: u64,
    /// The most connections open at once.
    pub(crate) max_connections: usize,
    /// CONNECTs that reached a verdict (accepted or refused).
    pub(crate) connects: u64,
    /// CONNECTs refused, by code.
    pub(crate) refused: RefusedCounts,
    /// Sessions ended by their expiry.
    pub(crate) expired: u64,
    /// PUBLISHes received from clients and their payload bytes, by QoS.
    pub(crate) received: ByQoS,
    pub(crate) received_bytes: ByQoS,
    /// Messages handed to connections to send and their payload bytes, by the QoS they go at.
    pub(crate) sent: ByQoS,
    pub(crate) sent_bytes: ByQoS,
    /// Messages dropped, by reason.
    pub(crate) dropped: DropCounts,
    /// PUBLISHes refused by the authorizer or for `$SYS`.
    pub(crate) denied: u64,
}

/// Counters and gauges of a broker, as one snapshot ([`Router::stats`](super::Router::stats),
/// [`Broker::stats`](super::Broker::stats)).
///
/// Counters (`u64`) only grow while the router lives; gauges (`usize`) say how things are now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Connections open now (from accept to their last mail, handshakes included).
    pub connections: usize,
    /// The most connections open at once.
    pub connections_maximum: usize,
    /// Transports accepted since the start.
    pub connections_total: u64,
    /// CONNECT packets that reached a verdict (accepted or refused).
    pub connects: u64,
    /// CONNECTs refused, by CONNACK reason code.
    pub refused: RefusedCounts,
    /// Sessions stored (online and offline).
    pub sessions: usize,
    /// Sessions with a connection now.
    pub sessions_online: usize,
    /// Sessions ended because their expiry interval passed while offline.
    pub sessions_expired: u64,
    /// Subscriptions in the tree (a session subscribed to two filters counts twice).
    pub subscriptions: usize,
    /// `$share` groups with at least one member (one per group name and filter).
    pub shared_groups: usize,
    /// Retained messages.
    pub retained: usize,
    /// Bytes of retained messages (topic, properties and payload).
    pub retained_bytes: usize,
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
    /// Messages handed to connections to send.
    pub messages_sent: u64,
    /// PUBLISHes received, by QoS.
    pub publish_received: ByQoS,
    /// Payload bytes of the PUBLISHes received, by QoS.
    pub publish_received_bytes: ByQoS,
    /// Messages handed to connections to send, by the QoS they are sent at.
    pub publish_sent: ByQoS,
    /// Payload bytes of the messages sent, by QoS.
    pub publish_sent_bytes: ByQoS,
    /// Bytes received from transports.
    pub bytes_received: u64,
    /// Bytes given to transports to write.
    pub bytes_sent: u64,
    /// Messages dropped because a session's queue was full.
    pub dropped: u64,
    /// Messages dropped, by reason (`queue_full` is [`BrokerStats::dropped`];
    /// `not_authorized` counts [`BrokerStats::publishes_denied`] and deliveries a subscriber
    /// may not read; `memory_limit` the PUBLISHes refused at the budgets).
    pub dropped_by: DropCounts,
    /// PUBLISH packets refused: by the authorizer, or for `$SYS` (MQTT 5 clients got 0x87;
    /// 3.1.x ones, which have no code for it, only this count and a
    /// [`BrokerEvent::Denied`](super::BrokerEvent::Denied)).
    pub publishes_denied: u64,
    /// QoS 1/2 messages handed to connections and not acknowledged yet.
    pub inflight: usize,
    /// Messages waiting in sessions' queues (offline, or beyond the in-flight window).
    pub queued: usize,
    /// Bytes of the messages waiting in sessions' queues.
    pub queued_bytes: usize,
    /// Bytes of the memory budget in use: queued and retained messages, sessions and
    /// subscriptions ([`BrokerConfig::memory_limit`](super::BrokerConfig::memory_limit)).
    pub memory_used: usize,
    /// PUBLISHes, retained messages, subscriptions and connections refused at the memory
    /// budget or the retained and session limits.
    pub refused_over_limits: u64,
    /// Inbound QoS 2 packet identifiers forgotten because their PUBREL did not come within
    /// [`BrokerConfig::await_rel_timeout`](super::BrokerConfig::await_rel_timeout) (their
    /// messages had been routed already).
    pub await_rel_expired: u64,
}

impl BrokerStats {
    /// Sessions without a connection (kept for a later reconnect).
    pub fn sessions_offline(&self) -> usize {
        self.sessions.saturating_sub(self.sessions_online)
    }

    /// Messages the broker holds: retained ones and those queued for sessions (Mosquitto's
    /// `store/messages/count`).
    pub fn stored_messages(&self) -> usize {
        self.retained + self.queued
    }

    /// Bytes of the messages the broker holds (Mosquitto's `store/messages/bytes`).
    pub fn stored_bytes(&self) -> usize {
        self.retained_bytes + self.queued_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_count_under_their_code_and_auth_failures_sum_three() {
        let mut r = RefusedCounts::default();
        r.count(ReasonCode::BadUserNameOrPassword);
        r.count(ReasonCode::BadUserNameOrPassword);
        r.count(ReasonCode::NotAuthorized);
        r.count(ReasonCode::QuotaExceeded);
        r.count(ReasonCode::Success); // not a refusal code: counted as unspecified
        assert_eq!(r.get(ReasonCode::BadUserNameOrPassword), 2);
        assert_eq!(r.get(ReasonCode::UnspecifiedError), 1);
        assert_eq!(r.total(), 5);
        assert_eq!(r.auth_failures(), 3);
        let listed: Vec<_> = r.iter().collect();
        assert_eq!(listed.len(), 4);
        assert!(listed.contains(&(ReasonCode::QuotaExceeded, 1)));
    }

    #[test]
    fn counts_by_qos_and_reason_are_indexed_by_their_value() {
        let mut q = ByQoS::default();
        q.add(QoS::ExactlyOnce, 3);
        q.sub(QoS::ExactlyOnce, 1);
        q.sub(QoS::AtMostOnce, 1);
        assert_eq!(q.get(QoS::ExactlyOnce), 2);
        assert_eq!(q.get(QoS::AtMostOnce), 0);
        let mut d = DropCounts::default();
        d.count(DropReason::TooLarge);
        d.add(DropReason::QueueFull, 4);
        assert_eq!(d.get(DropReason::TooLarge), 1);
        assert_eq!(d.total(), 5);
        assert_eq!(DropReason::ALL.map(|r| r as usize), [0, 1, 2, 3, 4]);
    }
}
