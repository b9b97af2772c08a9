//! Inbound QoS 2 packet identifiers answered with PUBREC and waiting for the client's PUBREL,
//! each with the deadline after which it is forgotten
//! ([`BrokerConfig::await_rel_timeout`](crate::broker::BrokerConfig::await_rel_timeout)).
//!
//! The message itself was routed when its PUBLISH arrived: only the identifier waits here, so
//! a client that never sends PUBREL holds nothing but its own receive-maximum slots, and only
//! until the deadline.

use std::collections::VecDeque;
use std::time::Instant;

use crate::hash::IdMap;
use crate::types::PacketId;

/// Identifiers waiting for PUBREL, found by identifier in O(1) and expired oldest first.
///
/// Deadlines are handed out in time order, so they live in a queue; an identifier released
/// early leaves a stale entry behind, skipped when it reaches the front. Once stale entries
/// outnumber the waiting identifiers the queue is compacted (amortized O(1) per identifier),
/// so a client that releases quickly cannot grow it.
///
/// Boxed and made at first use: most connections never receive a QoS 2 message.
#[derive(Debug, Default)]
pub(super) struct AwaitingRel(Option<Box<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    /// Each waiting identifier: its deadline (`None`: never) and its message's digest, when
    /// this connection received it (see `replay`).
    ids: IdMap<PacketId, (Option<Instant>, Option<u64>)>,
    /// Deadlines in the order they were given, with stale entries.
    order: VecDeque<(Instant, PacketId)>,
}

impl AwaitingRel {
    /// Identifiers waiting.
    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |a| a.ids.len())
    }

    /// Whether `id` waits for its PUBREL.
    pub(super) fn contains(&self, id: PacketId) -> bool {
        self.0.as_ref().is_some_and(|a| a.ids.contains_key(&id))
    }

    /// `id` waits for its PUBREL until `deadline` (`None`: for ever); `digest` is its
    /// message's, when known. Deadlines must not go backwards from one call to the next.
    pub(super) fn insert(&mut self, id: PacketId, deadline: Option<Instant>, digest: Option<u64>) {
        let a = self.0.get_or_insert_with(Default::default);
        a.ids.insert(id, (deadline, digest));
        if let Some(at) = deadline {
            debug_assert!(a.order.back().is_none_or(|(last, _)| *last <= at));
            a.order.push_back((at, id));
        }
    }

    /// The PUBREL of `id` came; whether it was waiting.
    pub(super) fn remove(&mut self, id: PacketId) -> bool {
        let Some(a) = &mut self.0 else {
            return false;
        };
        let known = a.ids.remove(&id).is_some();
        if a.order.len() > 2 * a.ids.len() + 32 {
            let ids = &a.ids;
            a.order
                .retain(|(at, id)| ids.get(id).is_some_and(|(d, _)| *d == Some(*at)));
        }
        known
    }

    /// The earliest deadline of a waiting identifier.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        let a = self.0.as_mut()?;
        // Entries of identifiers released (or given again later) are stale.
        while let Some((at, id)) = a.order.front() {
            if a.ids.get(id).is_some_and(|(d, _)| *d == Some(*at)) {
                return Some(*at);
            }
            a.order.pop_front();
        }
        None
    }

    /// Forgets the identifiers whose deadline is at or before `now`, oldest first, with their
    /// digests.
    pub(super) fn take_expired(&mut self, now: Instant) -> Vec<(PacketId, Option<u64>)> {
        let mut expired = Vec::new();
        while let Some(at) = self.next_deadline() {
            if at > now {
                break;
            }
            let Some(a) = self.0.as_mut() else { break };
            if let Some((_, id)) = a.order.pop_front() {
                if let Some((_, digest)) = a.ids.remove(&id) {
                    expired.push((id, digest));
                }
            }
        }
        expired
    }

    /// Every waiting identifier, leaving none.
    pub(super) fn take_all(&mut self) -> Vec<PacketId> {
        self.0
            .take()
            .map_or_else(Vec::new, |a| a.ids.into_keys().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn forgets_identifiers_oldest_first_once_their_deadline_passes() {
        let t0 = crate::test_instant();
        let s = Duration::from_secs(1);
        let mut a = AwaitingRel::default();
        a.insert(id(1), Some(t0 + s), Some(11));
        a.insert(id(2), Some(t0 + 2 * s), None);
        a.insert(id(3), None, None);
        a.insert(id(4), Some(t0 + 3 * s), Some(44));
        assert!(a.remove(id(2)) && !a.remove(id(2)));
        assert_eq!(a.next_deadline(), Some(t0 + s));
        assert_eq!(a.take_expired(t0), vec![]);
        assert_eq!(a.take_expired(t0 + 2 * s), vec![(id(1), Some(11))]);
        // The released one's stale entry is skipped.
        assert_eq!(a.next_deadline(), Some(t0 + 3 * s));
        assert_eq!(a.take_expired(t0 + 10 * s), vec![(id(4), Some(44))]);
        // Without a deadline it waits for ever.
        assert_eq!((a.len(), a.next_deadline()), (1, None));
        assert!(a.contains(id(3)));
        assert_eq!(a.take_all(), vec![id(3)]);
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn an_identifier_given_again_keeps_only_its_new_deadline() {
        let t0 = crate::test_instant();
        let s = Duration::from_secs(1);
        let mut a = AwaitingRel::default();
        a.insert(id(7), Some(t0 + s), None);
        a.insert(id(7), Some(t0 + 5 * s), None);
        assert_eq!(a.take_expired(t0 + 2 * s), vec![]);
        assert_eq!(a.next_deadline(), Some(t0 + 5 * s));
    }

    #[test]
    fn a_client_that_releases_at_once_does_not_grow_the_queue() {
        // One identifier is never released; every other one is, at once.
        let t0 = crate::test_instant();
        let mut a = AwaitingRel::default();
        a.insert(id(1), Some(t0), None);
        for round in 0..10_000u32 {
            let n = 2 + (round % 1000) as u16;
            a.insert(
                id(n),
                Some(t0 + Duration::from_millis(u64::from(round))),
                None,
            );
            assert!(a.remove(id(n)));
            let queued = a.0.as_ref().unwrap().order.len();
            assert!(queued <= 2 * a.len() + 33, "queue {queued}");
        }
        assert_eq!(a.len(), 1);
    }
}
