//! The outbound QoS 1/2 flows of one connection, by packet identifier and in start order.

use std::collections::VecDeque;

use crate::broker::mail::OutFlow;
use crate::hash::IdMap;
use crate::types::PacketId;

/// Outbound flows in the order they started, found by packet identifier in O(1).
///
/// Flows usually end in the order they started, so they live in a ring: a new one goes at the
/// back, an ended one leaves a hole that is dropped once it reaches the front. A client that
/// leaves an old flow open while later ones end cannot grow the ring without bound: once holes
/// outnumber the open flows it is compacted (amortized O(1) per flow).
#[derive(Debug, Default)]
pub(crate) struct OutFlows {
    /// Flows in start order; `None` where one ended.
    ring: VecDeque<Option<(PacketId, OutFlow)>>,
    /// The sequence number of `ring[0]`.
    base: u64,
    /// Where each open flow is: its sequence number.
    ids: IdMap<PacketId, u64>,
}

impl OutFlows {
    /// Open flows.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether `id` is in use by an open flow.
    pub(crate) fn contains(&self, id: PacketId) -> bool {
        self.ids.contains_key(&id)
    }

    fn slot(&self, id: PacketId) -> Option<usize> {
        let seq = *self.ids.get(&id)?;
        usize::try_from(seq - self.base).ok()
    }

    /// The open flow of `id`.
    pub(crate) fn get(&self, id: PacketId) -> Option<&OutFlow> {
        let i = self.slot(id)?;
        self.ring.get(i)?.as_ref().map(|(_, f)| f)
    }

    /// The open flow of `id`, to change its state.
    pub(crate) fn get_mut(&mut self, id: PacketId) -> Option<&mut OutFlow> {
        let i = self.slot(id)?;
        self.ring.get_mut(i)?.as_mut().map(|(_, f)| f)
    }

    /// Starts a flow with `id` (not in use) after every other.
    pub(crate) fn push(&mut self, id: PacketId, flow: OutFlow) {
        debug_assert!(!self.contains(id), "packet id {id:?} in use");
        let seq = self.base + self.ring.len() as u64;
        self.ring.push_back(Some((id, flow)));
        self.ids.insert(id, seq);
    }

    /// Ends the flow of `id`.
    pub(crate) fn remove(&mut self, id: PacketId) -> Option<OutFlow> {
        let i = self.slot(id)?;
        self.ids.remove(&id);
        let (_, flow) = self.ring.get_mut(i)?.take()?;
        while matches!(self.ring.front(), Some(None)) {
            self.ring.pop_front();
            self.base += 1;
        }
        if self.ring.len() > 2 * self.ids.len() + 32 {
            self.compact();
        }
        Some(flow)
    }

    /// Drops every hole, numbering the open flows again from `base`.
    fn compact(&mut self) {
        self.ring.retain(Option::is_some);
        for (i, (id, _)) in self.ring.iter().flatten().enumerate() {
            self.ids.insert(*id, self.base + i as u64);
        }
    }

    /// Every open flow in start order, leaving none.
    pub(crate) fn take_all(&mut self) -> Vec<(PacketId, OutFlow)> {
        self.ids = IdMap::default();
        self.base += self.ring.len() as u64;
        std::mem::take(&mut self.ring)
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn released(n: u16) -> OutFlow {
        // `stored` carries a bit per flow, enough to tell them apart here.
        OutFlow::Released { stored: n % 2 == 0 }
    }

    #[test]
    fn keeps_start_order_whatever_order_flows_end_in() {
        let mut f = OutFlows::default();
        for n in 1..=6 {
            f.push(id(n), released(n));
        }
        assert_eq!(f.remove(id(3)), Some(released(3)));
        assert_eq!(f.remove(id(1)), Some(released(1)));
        assert_eq!(f.remove(id(1)), None);
        assert!(f.get(id(2)).is_some() && f.get(id(3)).is_none());
        f.push(id(1), released(1));
        let order: Vec<u16> = f.take_all().iter().map(|(i, _)| i.get()).collect();
        assert_eq!(order, vec![2, 4, 5, 6, 1]);
        assert_eq!(f.ids.len(), 0);
        assert!(f.get(id(2)).is_none());
    }

    #[test]
    fn an_old_open_flow_does_not_grow_the_ring() {
        // The client never ends flow 1 and ends every later one: holes stay bounded.
        let mut f = OutFlows::default();
        f.push(id(1), released(1));
        for round in 0..10_000u32 {
            let n = 2 + (round % 1000) as u16;
            f.push(id(n), released(n));
            assert_eq!(f.remove(id(n)), Some(released(n)));
            assert!(
                f.ring.len() <= 2 * f.ids.len() + 33,
                "ring {}",
                f.ring.len()
            );
        }
        assert_eq!(f.ids.len(), 1);
        assert_eq!(f.get(id(1)), Some(&released(1)));
        f.push(id(9), released(9));
        let order: Vec<u16> = f.take_all().iter().map(|(i, _)| i.get()).collect();
        assert_eq!(order, vec![1, 9]);
    }

    #[test]
    fn get_mut_changes_the_flow_in_place() {
        let mut f = OutFlows::default();
        f.push(id(5), released(1));
        *f.get_mut(id(5)).unwrap() = released(2);
        assert_eq!(f.remove(id(5)), Some(released(2)));
    }
}
