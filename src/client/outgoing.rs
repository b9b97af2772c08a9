//! Outgoing flows: one packet-id allocator shared by PUBLISH, SUBSCRIBE and UNSUBSCRIBE, and
//! the unfinished flows in the order they started.

use std::collections::VecDeque;

use crate::codec::{Publish, SubscribeProperties, Subscription};
use crate::hash::IdMap;
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
    /// Each flow with the sequence number it started with.
    by_id: IdMap<PacketId, (u64, Flow)>,
    /// Start order: `(seq, id)`, oldest first. An entry whose flow has ended (or was replaced)
    /// stays until it reaches the front or the queue is compacted, so ending a flow costs no
    /// search; the queue holds at most about twice the live flows.
    order: VecDeque<(u64, PacketId)>,
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
        // Restoring a session can name an id twice; the later entry wins (the earlier one's
        // place in `order` goes stale).
        self.by_id.insert(id, (seq, flow));
        self.order.push_back((seq, id));
        if self.order.len() > 2 * self.by_id.len() + 32 {
            let by_id = &self.by_id;
            self.order.retain(|&(seq, id)| is_live(by_id, seq, id));
        }
    }

    pub(crate) fn get(&self, id: PacketId) -> Option<&Flow> {
        self.by_id.get(&id).map(|(_, f)| f)
    }

    /// Ends the flow on `id`.
    pub(crate) fn remove(&mut self, id: PacketId) -> Option<Flow> {
        let (_, flow) = self.by_id.remove(&id)?;
        while let Some(&(seq, id)) = self.order.front() {
            if is_live(&self.by_id, seq, id) {
                break;
            }
            self.order.pop_front();
        }
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
            .iter()
            .filter_map(|&(seq, id)| match self.by_id.get(&id) {
                Some((s, f)) if *s == seq => Some((id, f)),
                _ => None,
            })
    }

    /// Removes and returns every flow, in start order.
    pub(crate) fn drain(&mut self) -> Vec<(PacketId, Flow)> {
        let order = std::mem::take(&mut self.order);
        let mut by_id = std::mem::take(&mut self.by_id);
        order
            .into_iter()
            .filter_map(|(seq, id)| match by_id.remove(&id) {
                Some((s, f)) if s == seq => Some((id, f)),
                Some(other) => {
                    // A stale entry: the flow's own entry comes later.
                    by_id.insert(id, other);
                    None
                }
                None => None,
            })
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

/// Whether the `order` entry `(seq, id)` is the place of a flow still running.
fn is_live(by_id: &IdMap<PacketId, (u64, Flow)>, seq: u64, id: PacketId) -> bool {
    by_id.get(&id).is_some_and(|(s, _)| *s == seq)
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
    fn flows_keep_their_start_order_when_ending_out_of_order() {
        let mut f = Flows::default();
        for n in 1..=5 {
            f.insert(pid(n), Flow::PubRel);
        }
        f.remove(pid(3));
        f.remove(pid(1));
        // A restored session naming an id twice: the later entry takes the later place.
        f.insert(pid(2), Flow::Unsubscribe(Vec::new()));
        let order: Vec<u16> = f.in_order().map(|(id, _)| id.get()).collect();
        assert_eq!(order, vec![4, 5, 2]);
        // Many flows ending behind one that stays: the order queue is compacted, not grown.
        for n in 0..1_000u16 {
            let id = pid(10 + n % 100);
            f.insert(id, Flow::PubRel);
            f.remove(id);
        }
        assert!(f.order.len() <= 2 * f.by_id.len() + 33, "{}", f.order.len());
        let drained: Vec<u16> = f.drain().into_iter().map(|(id, _)| id.get()).collect();
        assert_eq!(drained, vec![4, 5, 2]);
        assert!(f.in_order().next().is_none());
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
