//! Outgoing flows: one packet-id allocator shared by PUBLISH, SUBSCRIBE and UNSUBSCRIBE, and
//! the unfinished flows in the order they started.

use std::collections::{BTreeMap, HashMap};

use crate::codec::{Publish, SubscribeProperties, Subscription};
use crate::types::{PacketId, TopicFilter};

/// What an identifier is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Flow {
    /// QoS 1: PUBACK; QoS 2: PUBREC.
    Publish(Publish),
    /// QoS 2: PUBCOMP.
    PubRel,
    /// SUBACK.
    Subscribe(Vec<Subscription>, SubscribeProperties),
    /// UNSUBACK.
    Unsubscribe(Vec<TopicFilter>),
}

/// The unfinished flows, by identifier and in start order.
#[derive(Debug, Default)]
pub(crate) struct Flows {
    by_id: HashMap<PacketId, (u64, Flow)>,
    order: BTreeMap<u64, PacketId>,
    next_seq: u64,
    /// The last identifier handed out; the next search starts after it.
    cursor: u16,
}

impl Flows {
    /// The next identifier not held by any flow, going round 1..=65535
    /// ([MQTT-2.2.1-3] in 5.0, [MQTT-2.3.1-2] in 3.1.1).
    pub(crate) fn next_free_id(&self) -> Option<PacketId> {
        if self.by_id.len() >= usize::from(u16::MAX) {
            return None;
        }
        let mut id = self.cursor;
        loop {
            id = if id == u16::MAX { 1 } else { id + 1 };
            let pid = PacketId::new(id)?;
            if !self.by_id.contains_key(&pid) {
                return Some(pid);
            }
        }
    }

    /// Starts a flow on `id` (from [`Flows::next_free_id`]).
    pub(crate) fn insert(&mut self, id: PacketId, flow: Flow) {
        self.cursor = id.get();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, id);
        if let Some((old_seq, _)) = self.by_id.insert(id, (seq, flow)) {
            // Restoring a session can name an id twice; the later entry wins.
            self.order.remove(&old_seq);
        }
    }

    pub(crate) fn get(&self, id: PacketId) -> Option<&Flow> {
        self.by_id.get(&id).map(|(_, f)| f)
    }

    /// Ends the flow on `id`.
    pub(crate) fn remove(&mut self, id: PacketId) -> Option<Flow> {
        let (seq, flow) = self.by_id.remove(&id)?;
        self.order.remove(&seq);
        Some(flow)
    }

    /// Moves a QoS 2 flow from waiting for PUBREC to waiting for PUBCOMP, keeping its place.
    pub(crate) fn release(&mut self, id: PacketId) {
        if let Some((_, flow)) = self.by_id.get_mut(&id) {
            *flow = Flow::PubRel;
        }
    }

    /// The flows in start order.
    pub(crate) fn in_order(&self) -> impl Iterator<Item = (PacketId, &Flow)> {
        self.order
            .values()
            .filter_map(|id| self.by_id.get(id).map(|(_, f)| (*id, f)))
    }

    /// Removes and returns every flow, in start order.
    pub(crate) fn drain(&mut self) -> Vec<(PacketId, Flow)> {
        let order = std::mem::take(&mut self.order);
        let mut by_id = std::mem::take(&mut self.by_id);
        order
            .into_values()
            .filter_map(|id| by_id.remove(&id).map(|(_, f)| (id, f)))
            .collect()
    }

    /// Removes SUBSCRIBE and UNSUBSCRIBE flows (never resent on a new connection).
    pub(crate) fn drain_requests(&mut self) -> Vec<(PacketId, Flow)> {
        let ids: Vec<PacketId> = self
            .in_order()
            .filter(|(_, f)| matches!(f, Flow::Subscribe(..) | Flow::Unsubscribe(_)))
            .map(|(id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|f| (id, f)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn ids_wrap_past_65535_and_skip_held_ones() {
        let mut f = Flows {
            cursor: 65_533,
            ..Flows::default()
        };
        f.insert(pid(1), Flow::PubRel);
        f.insert(pid(2), Flow::PubRel);
        f.cursor = 65_533;
        let mut got = Vec::new();
        for _ in 0..3 {
            let id = f.next_free_id().unwrap();
            f.insert(id, Flow::PubRel);
            got.push(id.get());
        }
        assert_eq!(got, vec![65_534, 65_535, 3]);
        let order: Vec<u16> = f.in_order().map(|(id, _)| id.get()).collect();
        assert_eq!(order, vec![1, 2, 65_534, 65_535, 3]);
    }

    #[test]
    fn exhaustion_is_reported_not_looped() {
        let mut f = Flows::default();
        for n in 1..=u16::MAX {
            f.insert(pid(n), Flow::Unsubscribe(Vec::new()));
        }
        assert_eq!(f.next_free_id(), None);
        f.remove(pid(40_000));
        assert_eq!(f.next_free_id(), Some(pid(40_000)));
    }
}
